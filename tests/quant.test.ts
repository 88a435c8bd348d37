// Tests of Q8_0 / Q4_0 quantization: the block layouts and error bounds of the encoders and
// decoders, which tensors quantize-at-load converts, the cache file, and end-to-end accuracy of the
// quantized matmuls against F32 on the reference evaluation windows of llama-tiny (F32 GGUF) and
// geb-tiny (BF16 safetensors): top-1 agreement and perplexity.

import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Engine } from "../lib/engine.js";
import { cpuInfo } from "../lib/native.js";
import { decodeTensorValues, encodeTensorValues, quantizedTypeFor, quantizePlan, type QuantizedType } from "../lib/formats/quantize.js";
import { CACHE_TRAILER_BYTES, crc32, crc32Portable } from "../lib/formats/weight-cache.js";
import { loadModel } from "../lib/model.js";
import { openModelFiles } from "../lib/model/load-plan.js";
import type { ModelPlan } from "../lib/model/plan.js";
import { GEB_TINY_DIR, LLAMA_TINY_GGUF, STORIES260K_GGUF } from "./fixtures.js";

let cacheDir = "";
beforeAll(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), "geb-quant-"));
});
afterAll(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

// Deterministic values with a few large outliers, like real weight rows.
function sampleValues(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let state = seed >>> 0;
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const u = state / 2 ** 32 - 0.5;
    out[i] = i % 37 === 0 ? u * 4 : u * 0.1;
  }
  return out;
}

describe("Q8_0 and Q4_0 block layouts", () => {
  it("decodes a hand-built Q8_0 block as d * qs[j]", () => {
    const block = new Uint8Array(34);
    block[0] = 0x00;
    block[1] = 0x38; // half 0.5
    for (let j = 0; j < 32; j++) block[2 + j] = (j - 16) & 0xff;
    const values = decodeTensorValues("q8_0", block);
    expect(values[0]).toBe(-8);
    expect(values[16]).toBe(0);
    expect(values[31]).toBe(7.5);
  });

  // low nibbles are elements 0-15, high nibbles elements 16-31, and the value is (q - 8) * d
  it("decodes a hand-built Q4_0 block", () => {
    const block = new Uint8Array(18);
    block[1] = 0x40; // half 2.0
    block[2] = 0x0f | (0x01 << 4); // element 0: q = 15, element 16: q = 1
    block[17] = 0x08 | (0x00 << 4); // element 15: q = 8, element 31: q = 0
    const values = decodeTensorValues("q4_0", block);
    expect(values[0]).toBe(14);
    expect(values[16]).toBe(-14);
    expect(values[15]).toBe(0);
    expect(values[31]).toBe(-16);
  });

  it("quantizes within half a step of every block's scale (a full step at Q4_0's clamped +8)", () => {
    const values = sampleValues(32 * 50, 1);
    // Q4_0 maps the block's extreme to -8, so values near +amax on the other side clamp to +7
    for (const [type, steps, maxSteps] of [
      ["q8_0", 127, 0.5],
      ["q4_0", 8, 1],
    ] as const) {
      const decoded = decodeTensorValues(type, encodeTensorValues(type, values));
      for (let b = 0; b < 50; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[b * 32 + j]));
        // the scale is stored as a half, so allow its rounding (2^-11 relative) on top of half a step
        const step = amax / steps;
        for (let j = 0; j < 32; j++) {
          expect(Math.abs(decoded[b * 32 + j] - values[b * 32 + j])).toBeLessThanOrEqual(step * maxSteps + amax * 2 ** -10);
        }
      }
    }
  });

  it("decodes F16 and BF16 exactly", () => {
    const bytes = new Uint8Array([0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00]); // 1, -2, smallest subnormal
    expect(Array.from(decodeTensorValues("f16", bytes))).toEqual([1, -2, 2 ** -24]);
    const bf = new Uint8Array([0x80, 0x3f, 0x40, 0xc0]); // 1, -3
    expect(Array.from(decodeTensorValues("bf16", bf))).toEqual([1, -3]);
  });
});

describe("quantizedTypeFor", () => {
  it("converts float matrices with whole blocks and keeps everything else", () => {
    expect(quantizedTypeFor({ type: "bf16", shape: [64, 256] }, "q4_0")).toBe("q4_0");
    expect(quantizedTypeFor({ type: "f32", shape: [64, 172] }, "q8_0")).toBe("f32");
    expect(quantizedTypeFor({ type: "f32", shape: [256] }, "q8_0")).toBe("f32");
    expect(quantizedTypeFor({ type: "q8_0", shape: [64, 256] }, "q4_0")).toBe("q8_0");
  });
});

describe("quantizePlan", () => {
  it("keeps stories260K's 172-wide ffn_down rows in F32, converts the rest, and reuses its cache file", async () => {
    const { plan } = await openModelFiles(STORIES260K_GGUF);
    const first = await quantizePlan(plan, { weightType: "q8_0", cacheDir });
    expect(first.reused).toBe(false);
    expect(first.kept.map((k) => k.name).sort()).toEqual(
      plan.tensors.filter((t) => t.name.endsWith("ffn_down")).map((t) => t.name).sort(),
    );
    expect(first.converted.some((c) => c.name === "blk.0.ffn_gate" && c.to === "q8_0")).toBe(true);
    for (const tensor of first.plan.tensors) {
      const original = plan.tensors.find((t) => t.name === tensor.name)!;
      expect(tensor.type).toBe(quantizedTypeFor(original, "q8_0"));
    }
    const second = await quantizePlan(plan, { weightType: "q8_0", cacheDir });
    expect(second.reused).toBe(true);
    expect(second.cacheFile).toBe(first.cacheFile);

    // the cache contains exactly the encoder's bytes for a converted tensor
    const ref = first.plan.tensors.find((t) => t.name === "blk.0.attn_q")!;
    const source = plan.tensors.find((t) => t.name === "blk.0.attn_q")!;
    const sourceBytes = (await readFile(plan.files[source.file])).subarray(source.offset, source.offset + source.nbytes);
    const cached = (await readFile(first.cacheFile!)).subarray(ref.offset, ref.offset + ref.nbytes);
    expect(Buffer.from(cached).equals(Buffer.from(encodeTensorValues("q8_0", decodeTensorValues(source.type, sourceBytes))))).toBe(true);
    expect((await stat(first.cacheFile!)).size).toBeGreaterThanOrEqual(ref.offset + ref.nbytes);
  });

  // Each edit keeps the file's size; none of them may be mapped.
  const corruptions: [string, (bytes: Buffer) => void, RegExp][] = [
    ["a payload byte", (bytes) => void (bytes[Math.floor((bytes.length - CACHE_TRAILER_BYTES) / 2)] ^= 0x40), /does not match its checksum/],
    ["the stored checksum", (bytes) => void (bytes[bytes.length - CACHE_TRAILER_BYTES + 12] ^= 0x01), /does not match its checksum/],
    ["the trailer magic", (bytes) => void bytes.write("XXXX", bytes.length - CACHE_TRAILER_BYTES, "latin1"), /no GEBCACHE magic/],
    ["the source key", (bytes) => void (bytes[bytes.length - CACHE_TRAILER_BYTES + 30] ^= 0xff), /other source files/],
  ];
  for (const [part, corrupt, reason] of corruptions) {
    it(`rebuilds a cache file after an in-place edit of ${part}`, async () => {
      const { plan } = await openModelFiles(LLAMA_TINY_GGUF);
      const dir = await mkdtemp(join(cacheDir, "corrupt-"));
      const first = await quantizePlan(plan, { weightType: "q8_0", cacheDir: dir });
      const good = await readFile(first.cacheFile!);
      const bad = Buffer.from(good);
      corrupt(bad);
      expect(bad.equals(good)).toBe(false);
      await writeFile(first.cacheFile!, bad);

      const second = await quantizePlan(plan, { weightType: "q8_0", cacheDir: dir });
      expect(second.reused).toBe(false);
      expect(second.rebuiltReason).toMatch(reason);
      expect((await readFile(first.cacheFile!)).equals(good)).toBe(true);
      expect(await readdir(dir)).toEqual([basename(first.cacheFile!)]);
      const third = await quantizePlan(plan, { weightType: "q8_0", cacheDir: dir });
      expect(third.reused).toBe(true);
      expect(third.rebuiltReason).toBeUndefined();
    });
  }

  it("rejects a bad cache path it cannot replace with ERR_GEB_IO", async () => {
    const { plan } = await openModelFiles(LLAMA_TINY_GGUF);
    const dir = await mkdtemp(join(cacheDir, "blocked-"));
    const { cacheFile } = await quantizePlan(plan, { weightType: "q4_0", cacheDir: dir });
    await rm(cacheFile!);
    // A non-empty folder at the cache file's path cannot be renamed over.
    await mkdir(cacheFile!);
    await writeFile(join(cacheFile!, "keep"), "keep me");
    await expect(quantizePlan(plan, { weightType: "q4_0", cacheDir: dir })).rejects.toMatchObject({
      code: "ERR_GEB_IO",
      message: expect.stringMatching(/failed its check \(it is not a regular file\)/),
    });
    expect(await readFile(join(cacheFile!, "keep"), "utf8")).toBe("keep me");
  });

  it("names the failed check when unwritable", async () => {
    const { plan } = await openModelFiles(LLAMA_TINY_GGUF);
    const good = await quantizePlan(plan, { weightType: "q8_0", cacheDir: await mkdtemp(join(cacheDir, "unwritable-")) });
    const bad = await readFile(good.cacheFile!);
    bad[Math.floor((bad.length - CACHE_TRAILER_BYTES) / 2)] ^= 0x40;
    // The temporary file's name is about 50 bytes longer than the cache file's. This folder's path
    // leaves room for the cache file's path only, within Linux's 4096-byte PATH_MAX. So the
    // temporary file cannot be created, as in a read-only folder (which root could still write).
    const name = basename(good.cacheFile!);
    const folderLength = 4095 - 1 - name.length - 10;
    let dir = dirname(good.cacheFile!);
    while (dir.length < folderLength) dir = join(dir, "d".repeat(Math.min(200, folderLength - dir.length - 1)));
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, name), bad);
    await expect(quantizePlan(plan, { weightType: "q8_0", cacheDir: dir })).rejects.toMatchObject({
      code: "ERR_GEB_IO",
      message: expect.stringMatching(/^Cannot write a weight cache file in .*ENAMETOOLONG.* The existing cache file failed its check \(.*checksum.*\) and is not used\. Pass a writable cacheDir .* XDG_CACHE_HOME/),
    });
    expect((await readFile(join(dir, name))).equals(bad)).toBe(true);
  });

  it("loads with the clean logits after the cache was corrupted", async () => {
    const dir = await mkdtemp(join(cacheDir, "load-"));
    const ids = [1, 20, 300, 47, 5];
    const logits = async (): Promise<Float32Array[]> => {
      const model = await loadModel(LLAMA_TINY_GGUF, { weightType: "q8_0", cacheDir: dir, threads: 1 });
      try {
        return (await model.evaluate(ids)).map((row) => row.slice());
      } finally {
        await model.dispose();
      }
    };
    const clean = await logits();
    const [name] = await readdir(dir);
    const file = join(dir, name!);
    const bytes = await readFile(file);
    // A Q8_0 scale of 0x7c00 is an infinite half, so the first 64 blocks decode to infinity or NaN.
    for (let block = 0; block < 64; block++) bytes.writeUInt16LE(0x7c00, block * 34);
    await writeFile(file, bytes);
    expect(await logits()).toEqual(clean);
  });

  it("computes the zlib CRC-32 without zlib", () => {
    const data = Uint8Array.from({ length: 100_003 }, (_, i) => (i * 2654435761) >>> 24);
    expect(crc32Portable(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
    expect(crc32Portable(data)).toBe(crc32(data));
    expect(crc32Portable(data.subarray(500), crc32Portable(data.subarray(0, 500)))).toBe(crc32(data));
  });

  it("rejects an unknown weight type with a typed error", async () => {
    const { plan } = await openModelFiles(STORIES260K_GGUF);
    await expect(quantizePlan(plan, { weightType: "q5_0" as QuantizedType, cacheDir })).rejects.toMatchObject({
      code: "ERR_GEB_INVALID_ARGUMENT",
    });
  });
});

describe("Q4_0 and Q8_0 repacked at load", () => {
  // Logits of a 9-token prefill and one decode step, with the engine's info.
  async function run(plan: ModelPlan, tier: string, threads: number) {
    const engine = await Engine.create(plan, { tier, threads, contextSize: 32 });
    try {
      const n = 9;
      const tokens = Int32Array.from({ length: n }, (_, i) => (i * 37 + 5) % plan.hparams.nVocab);
      const prefill = await engine.forward(
        new Int32Array(n),
        Int32Array.from({ length: n }, (_, i) => i),
        tokens,
        new Uint8Array(n).fill(1),
      );
      const decode = await engine.forward(new Int32Array(1), Int32Array.of(n), Int32Array.of(7), Uint8Array.of(1));
      return { logits: [...prefill, ...decode], info: engine.info() };
    } finally {
      await engine.dispose();
    }
  }

  // stories260K's ffn_gate and ffn_up have 172 rows, so their last group of 8 rows is partial,
  // and 1 or 2 threads split the rows differently.
  for (const type of ["q4_0", "q8_0"] as const) {
    it(`matches the scalar tier on ${type} partial groups`, async () => {
      const { plan } = await openModelFiles(STORIES260K_GGUF);
      const { plan: quantized } = await quantizePlan(plan, { weightType: type, cacheDir });
      const reference = await run(quantized, "scalar", 1);
      expect(reference.info.repackedBytes).toBe(0);
      const tier = cpuInfo().bestTier;
      for (const threads of [1, 2]) {
        const { logits, info } = await run(quantized, tier, threads);
        // AVX2 is the tier with kernels for the repacked layouts; other tiers keep the file's layout.
        const matmulNames = /^blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)$/;
        const blockBytes = type === "q4_0" ? 18 : 34;
        let expected = 0;
        for (const t of info.tensors) {
          const isMatmul = matmulNames.test(t.name) || t.name === (info.outputTied ? "token_embd" : "output");
          if (!isMatmul || t.type !== type) continue;
          const bytes = Math.ceil(t.shape[0]! / 8) * 8 * (t.shape[1]! / 32) * blockBytes;
          expected += Math.ceil(bytes / 64) * 64;
        }
        expect(expected).toBeGreaterThan(0);
        expect(info.repackedBytes).toBe(tier === "avx2" ? expected : 0);

        let maxDiff = 0;
        let maxAbs = 0;
        for (let i = 0; i < logits.length; i++) {
          maxDiff = Math.max(maxDiff, Math.abs(logits[i]! - reference.logits[i]!));
          maxAbs = Math.max(maxAbs, Math.abs(reference.logits[i]!));
        }
        // the integer block dots are exact, so only the F32 summation order differs
        expect(maxDiff).toBeLessThan(1e-3 * maxAbs);
      }
    });
  }
});

interface EvalScore {
  meanNll: number;
  top1: Int32Array;
}

// Runs each reference window from position 0 and scores its next-token predictions, following the
// reference's eval_perplexity definition.
async function scoreWindows(plan: ModelPlan, ids: number[], window: number): Promise<EvalScore> {
  const engine = await Engine.create(plan, { threads: 2, contextSize: window });
  const nVocab = plan.hparams.nVocab;
  const top1: number[] = [];
  let nll = 0;
  let count = 0;
  try {
    for (let start = 0; start + window <= ids.length; start += window) {
      const tokens = Int32Array.from(ids.slice(start, start + window));
      const positions = Int32Array.from({ length: window }, (_, i) => i);
      const wants = new Uint8Array(window).fill(1);
      engine.clearSequence(0);
      const logits = await engine.forward(new Int32Array(window), positions, tokens, wants);
      for (let p = 0; p + 1 < window; p++) {
        const row = logits.subarray(p * nVocab, (p + 1) * nVocab);
        let best = 0;
        let max = -Infinity;
        for (let v = 0; v < nVocab; v++) {
          if (row[v] > max) {
            max = row[v];
            best = v;
          }
        }
        let sum = 0;
        for (let v = 0; v < nVocab; v++) sum += Math.exp(row[v] - max);
        nll += Math.log(sum) + max - row[tokens[p + 1]];
        count++;
        top1.push(best);
      }
    }
  } finally {
    await engine.dispose();
  }
  return { meanNll: nll / count, top1: Int32Array.from(top1) };
}

for (const [label, modelPath] of [
  ["llama-tiny (F32 GGUF)", LLAMA_TINY_GGUF],
  ["geb-tiny (BF16 safetensors)", GEB_TINY_DIR],
] as const) {
  describe(`quantized accuracy on ${label}`, () => {
    // Q8_0: top-1 equal to F32 on >= 98% of positions and perplexity within 1%. Q4_0: perplexity within 5%.
    it("keeps top-1 and perplexity close to F32", async () => {
      const referencePath = join(modelPath.endsWith(".gguf") ? join(modelPath, "..") : modelPath, "reference.json");
      const reference = JSON.parse(await readFile(referencePath, "utf8")) as {
        eval_perplexity: { eval_ids: number[]; window: number; ppl: number };
      };
      const { eval_ids: ids, window, ppl } = reference.eval_perplexity;
      const { plan } = await openModelFiles(modelPath);
      const full = await scoreWindows(plan, ids, window);
      // the F32 path itself reproduces the reference perplexity
      expect(Math.abs(Math.exp(full.meanNll) / ppl - 1)).toBeLessThan(1e-3);

      for (const [type, agreement, pplTolerance] of [
        ["q8_0", 0.98, 0.01],
        ["q4_0", 0, 0.05],
      ] as const) {
        const quantized = await quantizePlan(plan, { weightType: type, cacheDir });
        expect(quantized.converted.length).toBeGreaterThan(0);
        const score = await scoreWindows(quantized.plan, ids, window);
        let same = 0;
        for (let i = 0; i < full.top1.length; i++) if (score.top1[i] === full.top1[i]) same++;
        const pplRatio = Math.exp(score.meanNll - full.meanNll);
        console.log(`${label} ${type}: top-1 agreement ${(same / full.top1.length).toFixed(4)}, ppl ratio ${pplRatio.toFixed(4)}`);
        expect(same / full.top1.length).toBeGreaterThanOrEqual(agreement);
        expect(Math.abs(pplRatio - 1)).toBeLessThanOrEqual(pplTolerance);
      }
    }, 60_000);
  });
}
