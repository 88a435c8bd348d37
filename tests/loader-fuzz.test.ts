// Seeded mutation test of the loaders. It corrupts small GGUF files and GEB directories at random
// (byte flips, large counts, cut files, removed or repeated slices). Loading and inspecting must
// end in a successful result or a typed GebError, never in another exception or a hang.

import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { inspectModel } from "../lib/cli/inspect.js";
import { GebError } from "../lib/errors.js";
import { readGguf } from "../lib/formats/gguf.js";
import { readSafetensors } from "../lib/formats/safetensors.js";
import { openModelFiles } from "../lib/model/load-plan.js";
import { writeRandomCheckpoint } from "../lib/tools/random-checkpoint.js";
import { GEB_TINY_DIR } from "./fixtures.js";
import { TINY_GEB_CONFIG, makeTempDir } from "./loader-helpers.js";

const temp = makeTempDir("fuzz");
afterAll(() => temp.remove());

/** Per-call limit: a loader call on these small files takes milliseconds, so this only catches hangs. */
const CALL_TIMEOUT_MS = 5000;

/** Small seeded generator (xorshift32) so every run mutates the same way. */
function makeRandom(seed: number): (n: number) => number {
  let state = seed >>> 0 || 1;
  return (n: number) => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state % n;
  };
}

/** Apply one random mutation inside `[0, hot)` most of the time; return the bytes and a description. */
function mutate(source: Buffer, hot: number, random: (n: number) => number): { bytes: Buffer; what: string } {
  const bytes = Buffer.from(source);
  const at = random(10) < 8 ? random(Math.max(1, hot)) : random(bytes.length);
  switch (random(7)) {
    case 0: {
      const bit = 1 << random(8);
      bytes[at] ^= bit;
      return { bytes, what: `flip bit ${bit} at ${at}` };
    }
    case 1: {
      const value = random(2 ** 31) * 2;
      if (at + 4 <= bytes.length) bytes.writeUInt32LE(value >>> 0, at);
      return { bytes, what: `u32 ${value} at ${at}` };
    }
    case 2: {
      const value = 1n << BigInt(random(64));
      if (at + 8 <= bytes.length) bytes.writeBigUInt64LE(value, at);
      return { bytes, what: `u64 2^${value.toString(2).length - 1} at ${at}` };
    }
    case 3:
      return { bytes: bytes.subarray(0, at), what: `cut at ${at}` };
    case 4: {
      const length = 1 + random(16);
      return { bytes: Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + length)]), what: `remove ${length} at ${at}` };
    }
    case 5: {
      const length = 1 + random(32);
      return { bytes: Buffer.concat([bytes.subarray(0, at + length), bytes.subarray(at)]), what: `repeat ${length} at ${at}` };
    }
    default: {
      bytes[at] = random(256);
      return { bytes, what: `byte ${bytes[at]} at ${at}` };
    }
  }
}

/** Run `call`; fail the test on a non-GebError exception or a timeout. Return "ok" or the error code. */
async function outcome(call: () => Promise<unknown>, what: string): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${CALL_TIMEOUT_MS} ms: ${what}`)), CALL_TIMEOUT_MS);
  });
  // A synchronous loop would block the timer, so the elapsed time is checked as well.
  const started = Date.now();
  const checkTime = (): void => {
    if (Date.now() - started > CALL_TIMEOUT_MS) throw new Error(`took ${Date.now() - started} ms: ${what}`);
  };
  try {
    await Promise.race([call(), timeout]);
    checkTime();
    return "ok";
  } catch (error) {
    checkTime();
    if (error instanceof GebError) return error.code;
    throw new Error(`mutation "${what}" ended in ${(error as Error)?.name}: ${(error as Error)?.message}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
}

describe("loader mutation test", () => {
  let ggufPath: string;
  let gebDir: string;
  beforeAll(async () => {
    ggufPath = join(temp.dir, "base.gguf");
    await writeRandomCheckpoint({
      config: TINY_GEB_CONFIG,
      out: ggufPath,
      format: "gguf",
      type: "q8_0",
      vocabulary: { tokens: ["<unk>", "<s>", "</s>", "▁a", "中"] },
    });
    gebDir = join(temp.dir, "base-geb");
    await writeRandomCheckpoint({ config: TINY_GEB_CONFIG, out: gebDir, format: "geb", tokenizerModel: join(GEB_TINY_DIR, "GEBtokenizer.model") });
  });

  it("ends GGUF mutations in success or a typed error", async () => {
    const source = await readFile(ggufPath);
    const { dataOffset } = await readGguf(ggufPath);
    const random = makeRandom(20261204);
    const target = join(temp.dir, "mutated.gguf");
    const codes = new Map<string, number>();
    const rssBefore = process.memoryUsage().rss;
    for (let i = 0; i < 300; i++) {
      const { bytes, what } = mutate(source, dataOffset, random);
      await writeFile(target, bytes);
      const code = await outcome(() => openModelFiles(target), `#${i} ${what}`);
      codes.set(code, (codes.get(code) ?? 0) + 1);
      if (i % 3 === 0) await outcome(() => inspectModel(target), `inspect #${i} ${what}`);
    }
    // The mutations must exercise both outcomes, and memory must stay bounded.
    expect(codes.get("ERR_GEB_MODEL_FORMAT") ?? 0).toBeGreaterThan(50);
    expect(codes.get("ok") ?? 0).toBeGreaterThan(0);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(512 * 1024 * 1024);
  });

  it("ends GEB mutations in success or a typed error", async () => {
    const weights = join(gebDir, "model.safetensors");
    const source = await readFile(weights);
    const { dataOffset } = await readSafetensors(weights);
    const configSource = await readFile(join(gebDir, "config.json"));
    const random = makeRandom(42);
    const target = join(temp.dir, "mutated-geb");
    await mkdir(target, { recursive: true });
    await copyFile(join(gebDir, "GEBtokenizer.model"), join(target, "GEBtokenizer.model"));
    const codes = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const mutateConfig = random(4) === 0;
      const weightsMutation = mutateConfig ? { bytes: source, what: "none" } : mutate(source, dataOffset, random);
      const configMutation = mutateConfig ? mutate(configSource, configSource.length, random) : { bytes: configSource, what: "none" };
      await writeFile(join(target, "model.safetensors"), weightsMutation.bytes);
      await writeFile(join(target, "config.json"), configMutation.bytes);
      const what = `#${i} weights: ${weightsMutation.what}; config: ${configMutation.what}`;
      const code = await outcome(() => openModelFiles(target), what);
      codes.set(code, (codes.get(code) ?? 0) + 1);
      if (i % 4 === 0) await outcome(() => inspectModel(target), `inspect ${what}`);
    }
    expect(codes.get("ERR_GEB_MODEL_FORMAT") ?? 0).toBeGreaterThan(30);
    expect(codes.get("ok") ?? 0).toBeGreaterThan(0);
  });
});
