// Benchmark model files: GEB-1.3B-shaped checkpoints with random weights, generated once into a
// cache folder (GEB_CPU_BENCH_CACHE, default ~/.cache/geb-cpu/bench) by the package's random
// checkpoint writer (lib/tools/random-checkpoint.ts, compiled to dist/). The shapes are GEB-1.3B's
// published config.json: 24 layers, hidden 2048, 16 heads, 4 KV heads, head dim 128, FFN 5632 and
// vocab 64896. The GGUF vocabulary is ChatGLM3's SentencePiece pieces padded to 64896 rows, so
// llama.cpp accepts it. Test data only: never shipped.
//
// llama.cpp's llama architecture rejects a rotary dimension other than the head dimension
// ("invalid n_rot: 64, expected 128"), so the GGUF files rotate whole heads (rope.dimension_count
// 128) instead of GEB's first half. Both engines then do the same work on the same file.
import { existsSync } from "node:fs";
import { mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..");
const shared = path.resolve(repo, "../shared");

export const GGUF_TYPES = ["f32", "f16", "q8_0", "q4_0"];

export function benchCacheDir() {
  return process.env.GEB_CPU_BENCH_CACHE ?? path.join(os.homedir(), ".cache", "geb-cpu", "bench");
}

async function gebConfig() {
  const configPath = path.join(shared, "models/geb-1.3b/config.json");
  return { configPath, config: JSON.parse(await readFile(configPath, "utf8")) };
}

const tokenizerModelPath = () => path.join(shared, "tokenizer-suites/chatglm3/tokenizer.model");

// Writes `target` through a temporary name, so an interrupted run never leaves a file that looks
// complete.
async function writeOnce(target, write, log) {
  if (existsSync(target)) return target;
  const partial = `${target}.partial`;
  await rm(partial, { recursive: true, force: true });
  const t = performance.now();
  log(`generating ${path.basename(target)} ...`);
  await write(partial);
  await rename(partial, target);
  const size = (await stat(target)).isDirectory() ? "" : ` (${((await stat(target)).size / 2 ** 30).toFixed(2)} GiB)`;
  log(`generated ${path.basename(target)}${size} in ${((performance.now() - t) / 1000).toFixed(0)} s`);
  return target;
}

const ROPE_KEY = "llama.rope.dimension_count";

// Sets the u32 value of `llama.rope.dimension_count` in a GGUF header to `value`, in place. The
// value is a fixed-size u32, so no other byte of the file moves.
export async function patchRopeDimension(file, value) {
  const handle = await open(file, "r+");
  try {
    const header = Buffer.alloc(4 * 2 ** 20);
    const { bytesRead } = await handle.read(header, 0, header.length, 0);
    const key = Buffer.from(ROPE_KEY, "utf8");
    const at = header.subarray(0, bytesRead).indexOf(key);
    // the key string is followed by the value type (u32, 4 = UINT32) and the value
    if (at < 0 || header.readUInt32LE(at + key.length) !== 4) throw new Error(`${file} has no u32 ${ROPE_KEY}`);
    const patched = Buffer.alloc(4);
    patched.writeUInt32LE(value);
    await handle.write(patched, 0, 4, at + key.length + 4);
  } finally {
    await handle.close();
  }
}

/**
 * Returns the paths of the GEB-1.3B-shaped GGUF files of `types` (and of the BF16 GEB directory
 * when `gebDir` is true), generating the missing ones.
 */
export async function ensureBenchModels(types, { gebDir = false, log = console.log } = {}) {
  const dist = (p) => pathToFileURL(path.join(repo, "dist", p)).href;
  const { writeRandomCheckpoint } = await import(dist("tools/random-checkpoint.js"));
  const { parseSentencePieceModel } = await import(dist("tokenizer/sentencepiece-model.js"));
  const cache = benchCacheDir();
  await mkdir(cache, { recursive: true });
  const { config, configPath } = await gebConfig();
  const sp = parseSentencePieceModel(new Uint8Array(await readFile(tokenizerModelPath())));
  const vocabulary = { tokens: sp.pieces, scores: Array.from(sp.scores), types: Array.from(sp.types), bosId: 1, eosId: 2, unknownId: 0 };

  const out = {};
  for (const type of types) {
    const target = path.join(cache, `geb-1.3b-random-${type}.gguf`);
    out[type] = await writeOnce(
      target,
      async (partial) => {
        await writeRandomCheckpoint({ config, configPath, out: partial, format: "gguf", type, vocabulary, name: `geb-1.3b-random-${type}` });
        await patchRopeDimension(partial, config.kv_channels);
      },
      log,
    );
  }
  if (gebDir) {
    const target = path.join(cache, "geb-1.3b-random-bf16");
    out.gebDir = await writeOnce(
      target,
      (partial) => writeRandomCheckpoint({ config, configPath, out: partial, format: "geb", type: "bf16", tokenizerModel: tokenizerModelPath() }),
      log,
    );
  }
  return out;
}
