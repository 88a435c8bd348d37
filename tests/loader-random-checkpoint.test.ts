// Tensor encoders (F16, BF16, Q8_0, Q4_0) and the random checkpoint writer: determinism, scale,
// every output type loading back, and the GEB and GGUF outputs of one config holding the same
// weights.

import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { afterAll, describe, expect, it } from "vitest";

import { encodeTensorValues, float32ToBfloat16Bits, float32ToFloat16Bits } from "../lib/formats/tensor-encode.js";
import { openModelFiles } from "../lib/model/load-plan.js";
import type { TensorRef, TensorType } from "../lib/model/plan.js";
import { main as randomCheckpointMain, readVocabularyFile, writeRandomCheckpoint } from "../lib/tools/random-checkpoint.js";
import { readGguf, getStringArray } from "../lib/formats/gguf.js";
import { GEB_TINY_DIR } from "./fixtures.js";
import { TINY_GEB_CONFIG, expectGebError, makeTempDir } from "./loader-helpers.js";

const temp = makeTempDir("random");
afterAll(() => temp.remove());

const TOKENIZER = join(GEB_TINY_DIR, "GEBtokenizer.model");

/** Decode IEEE half bits (test reference, written independently of the encoder). */
function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function bf16ToFloat(bits: number): number {
  return new Float32Array(new Uint32Array([bits << 16]).buffer)[0];
}

describe("float encoders", () => {
  it("converts known F16 values", () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.1, 0x2e66],
      [65504, 0x7bff],
      [65520, 0x7c00],
      [1e9, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400],
      [2 ** -24, 0x0001],
      [2 ** -26, 0x0000],
      [1 + 2 ** -11, 0x3c00],
      [1 + 3 * 2 ** -11, 0x3c02],
    ];
    for (const [value, bits] of cases) expect(float32ToFloat16Bits(value), `value=${value}`).toBe(bits);
    expect(float32ToFloat16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(float32ToFloat16Bits(NaN) & 0x3ff).not.toBe(0);
  });

  it("rounds F16 to the nearest value", () => {
    let state = 12345;
    for (let i = 0; i < 2000; i++) {
      state = (state * 1103515245 + 12345) >>> 0;
      const value = Math.fround(((state / 2 ** 32) * 2 - 1) * 2 ** ((i % 40) - 25));
      const decoded = halfToFloat(float32ToFloat16Bits(value));
      const step = Math.max(2 ** -24, 2 ** (Math.floor(Math.log2(Math.abs(value))) - 10));
      expect(Math.abs(decoded - value), `value=${value}`).toBeLessThanOrEqual(step / 2);
    }
  });

  it("converts known BF16 values", () => {
    expect(float32ToBfloat16Bits(1)).toBe(0x3f80);
    expect(float32ToBfloat16Bits(-2)).toBe(0xc000);
    expect(float32ToBfloat16Bits(bf16ToFloat(0x3f81) + 2 ** -9)).toBe(0x3f81);
    expect(float32ToBfloat16Bits(bf16ToFloat(0x3f81) + 2 ** -8 + 2 ** -12)).toBe(0x3f82);
    expect(float32ToBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(float32ToBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(bf16ToFloat(float32ToBfloat16Bits(0.02))).toBeCloseTo(0.02, 3);
  });

  it("quantizes Q8_0 within half a step", () => {
    const values = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 0.7) * (i < 32 ? 0.05 : 3));
    const bytes = encodeTensorValues("q8_0", values);
    expect(bytes.length).toBe(2 * 34);
    const view = new DataView(bytes.buffer);
    for (let b = 0; b < 2; b++) {
      const d = halfToFloat(view.getUint16(b * 34, true));
      for (let j = 0; j < 32; j++) {
        const x = d * view.getInt8(b * 34 + 2 + j);
        expect(Math.abs(x - values[b * 32 + j]), `block=${b} j=${j}`).toBeLessThanOrEqual(d * 0.51);
      }
    }
  });

  it("quantizes Q4_0 within one step", () => {
    const values = Float32Array.from({ length: 32 }, (_, i) => Math.cos(i) * 0.1);
    const bytes = encodeTensorValues("q4_0", values);
    expect(bytes.length).toBe(18);
    const d = halfToFloat(new DataView(bytes.buffer).getUint16(0, true));
    for (let j = 0; j < 32; j++) {
      const nibble = j < 16 ? bytes[2 + j] & 0x0f : bytes[2 + j - 16] >> 4;
      const x = d * (nibble - 8);
      expect(Math.abs(x - values[j]), `j=${j}`).toBeLessThanOrEqual(Math.abs(d) * 1.01);
    }
  });

  it("rejects partial blocks", () => {
    expect(() => encodeTensorValues("q8_0", new Float32Array(31))).toThrow(/multiple of 32/);
  });
});

/** Read the bytes of one plan tensor. */
async function tensorBytes(files: string[], ref: TensorRef): Promise<Buffer> {
  const bytes = await readFile(files[ref.file]);
  return bytes.subarray(ref.offset, ref.offset + ref.nbytes);
}

describe("writeRandomCheckpoint", () => {
  it("writes a GEB directory that loads", async () => {
    const out = join(temp.dir, "geb");
    const result = await writeRandomCheckpoint({ config: TINY_GEB_CONFIG, out, format: "geb", tokenizerModel: TOKENIZER });
    expect(result.files.map((f) => f.slice(out.length + 1)).sort()).toEqual(["GEBtokenizer.model", "config.json", "model.safetensors", "tokenizer_config.json"]);
    const { plan, info, tokenizerSource } = await openModelFiles(out);
    expect(info.tensorTypes).toEqual({ BF16: 17 });
    expect(tokenizerSource.kind).toBe("geb-dir");
    expect(JSON.parse(await readFile(join(out, "config.json"), "utf8"))).toEqual(TINY_GEB_CONFIG);

    // Matrices: mean near 0, standard deviation near 0.02. Norm weights: near 1.
    const q = new Uint16Array(new Uint8Array(await tensorBytes(plan.files, plan.tensors.find((t) => t.name === "blk.0.attn_q")!)).buffer);
    const values = Array.from(q, bf16ToFloat);
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
    expect(Math.abs(mean)).toBeLessThan(0.002);
    expect(std).toBeGreaterThan(0.018);
    expect(std).toBeLessThan(0.022);
    const norm = new Uint16Array(new Uint8Array(await tensorBytes(plan.files, plan.tensors.find((t) => t.name === "output_norm")!)).buffer);
    for (const bits of norm) expect(Math.abs(bf16ToFloat(bits) - 1)).toBeLessThan(0.1);
  });

  it("is deterministic per seed", async () => {
    const a = join(temp.dir, "seed-a.gguf");
    const b = join(temp.dir, "seed-b.gguf");
    const c = join(temp.dir, "seed-c.gguf");
    await writeRandomCheckpoint({ config: TINY_GEB_CONFIG, out: a, format: "gguf", seed: 7, name: "same" });
    await writeRandomCheckpoint({ config: TINY_GEB_CONFIG, out: b, format: "gguf", seed: 7, name: "same" });
    await writeRandomCheckpoint({ config: TINY_GEB_CONFIG, out: c, format: "gguf", seed: 8, name: "same" });
    const [bytesA, bytesB, bytesC] = await Promise.all([readFile(a), readFile(b), readFile(c)]);
    expect(bytesA.equals(bytesB)).toBe(true);
    expect(bytesA.equals(bytesC)).toBe(false);
    expect(bytesA.length).toBe(bytesC.length);
  });

  it("stores the same weights in BF16 GEB and F32 GGUF form", async () => {
    const gebDir = join(temp.dir, "same-f32-geb");
    const ggufPath = join(temp.dir, "same-f32.gguf");
    await writeRandomCheckpoint({ config: TINY_GEB_CONFIG, out: gebDir, format: "geb", tokenizerModel: TOKENIZER, seed: 9 });
    await writeRandomCheckpoint({ config: TINY_GEB_CONFIG, out: ggufPath, format: "gguf", type: "f32", seed: 9 });
    const geb = await openModelFiles(gebDir);
    const gguf = await openModelFiles(ggufPath);
    for (const ref of geb.plan.tensors) {
      const other = gguf.plan.tensors.find((t) => t.name === ref.name)!;
      const bf16 = new Uint16Array(new Uint8Array(await tensorBytes(geb.plan.files, ref)).buffer);
      const f32 = new Float32Array(new Uint8Array(await tensorBytes(gguf.plan.files, other)).buffer);
      expect(f32.length, ref.name).toBe(bf16.length);
      expect(f32.every((x, i) => x === bf16ToFloat(bf16[i])), ref.name).toBe(true);
    }
  });

  it("stores the same weights in GEB and GGUF form", async () => {
    const gebDir = join(temp.dir, "same-geb");
    const ggufPath = join(temp.dir, "same.gguf");
    await writeRandomCheckpoint({ config: TINY_GEB_CONFIG, out: gebDir, format: "geb", tokenizerModel: TOKENIZER, seed: 3 });
    await writeRandomCheckpoint({ config: TINY_GEB_CONFIG, out: ggufPath, format: "gguf", type: "bf16", seed: 3 });
    const geb = await openModelFiles(gebDir);
    const gguf = await openModelFiles(ggufPath);
    expect(gguf.plan.hparams).toEqual({ ...geb.plan.hparams, arch: "llama", rmsEps: Math.fround(1e-5) });
    for (const ref of geb.plan.tensors) {
      if (ref.shape.length === 1) continue; // GGUF norms are F32
      const other = gguf.plan.tensors.find((t) => t.name === ref.name)!;
      expect(other.type, ref.name).toBe("bf16");
      expect((await tensorBytes(geb.plan.files, ref)).equals(await tensorBytes(gguf.plan.files, other)), ref.name).toBe(true);
    }
  });

  const ggufTypes: TensorType[] = ["f32", "f16", "bf16", "q8_0", "q4_0"];
  it.each(ggufTypes)("writes a %s GGUF that loads", async (type) => {
    const out = join(temp.dir, `type-${type}.gguf`);
    await writeRandomCheckpoint({ config: TINY_GEB_CONFIG, out, format: "gguf", type });
    const { plan } = await openModelFiles(out);
    expect(plan.tensors.find((t) => t.name === "blk.1.ffn_down")?.type).toBe(type);
    expect(plan.tensors.find((t) => t.name === "blk.1.ffn_norm")?.type).toBe("f32");
  });

  it("stores a vocabulary with GEB special tokens and padding", async () => {
    const vocabPath = join(temp.dir, "vocab.txt");
    const { writeFile } = await import("node:fs/promises");
    await writeFile(vocabPath, ["<unk>", "<s>", "</s>", "▁a", "b"].join("\n") + "\n");
    const vocabulary = await readVocabularyFile(vocabPath);
    expect(vocabulary.tokens).toEqual(["<unk>", "<s>", "</s>", "▁a", "b"]);
    const out = join(temp.dir, "vocab.gguf");
    await writeRandomCheckpoint({ config: TINY_GEB_CONFIG, out, format: "gguf", vocabulary, zeros: true });
    const file = await readGguf(out);
    const tokens = getStringArray(file, "tokenizer.ggml.tokens");
    expect(tokens).toHaveLength(128);
    expect(tokens.slice(4, 7)).toEqual(["b", "[MASK]", "[gMASK]"]);
    expect(tokens[14]).toBe("<pad:14>");
    expect(Array.from(file.metadata.get("tokenizer.ggml.token_type") as Int32Array).slice(4, 7)).toEqual([1, 3, 3]);
  });

  it("takes the GGUF vocabulary from a SentencePiece model", async () => {
    const out = join(temp.dir, "sp-vocab.gguf");
    await writeRandomCheckpoint({ config: { ...TINY_GEB_CONFIG, padded_vocab_size: 4032 }, out, format: "gguf", tokenizerModel: TOKENIZER, zeros: true });
    const file = await readGguf(out);
    const tokens = getStringArray(file, "tokenizer.ggml.tokens");
    expect(tokens).toHaveLength(4032);
    expect(tokens.slice(0, 4)).toEqual(["<unk>", "<s>", "</s>", "<0x00>"]);
    expect(tokens.slice(4000, 4002)).toEqual(["[MASK]", "[gMASK]"]);
    expect(tokens[4009]).toBe("<pad:4009>");
    const types = file.metadata.get("tokenizer.ggml.token_type") as Int32Array;
    expect(Array.from(types.slice(0, 4))).toEqual([2, 3, 3, 6]);
    expect((file.metadata.get("tokenizer.ggml.scores") as Float32Array)[300]).toBeLessThan(0);
    expect(file.metadata.get("tokenizer.ggml.eos_token_id")).toBe(2);
  });

  it("rejects quantized GEB directories", async () => {
    await expectGebError(
      writeRandomCheckpoint({ config: TINY_GEB_CONFIG, out: join(temp.dir, "q"), format: "geb", type: "q8_0", tokenizerModel: TOKENIZER }),
      "ERR_GEB_INVALID_ARGUMENT",
      /f32, f16 or bf16/,
    );
  });

  it("rejects configs the loader rejects", async () => {
    await expectGebError(writeRandomCheckpoint({ config: { ...TINY_GEB_CONFIG, add_bias_linear: true }, out: join(temp.dir, "b.gguf"), format: "gguf" }), "ERR_GEB_UNSUPPORTED");
  });

  it("runs from the command line", async () => {
    const configPath = join(temp.dir, "cli-config.json");
    const { writeFile } = await import("node:fs/promises");
    await writeFile(configPath, JSON.stringify(TINY_GEB_CONFIG));
    const out = join(temp.dir, "cli.gguf");
    const write = process.stdout.write;
    process.stdout.write = (() => true) as typeof process.stdout.write;
    let code: number;
    try {
      code = await randomCheckpointMain(["--config", configPath, "--out", out, "--format", "gguf", "--type", "q8_0", "--seed", "5"]);
    } finally {
      process.stdout.write = write;
    }
    expect(code).toBe(0);
    expect((await openModelFiles(out)).info.tensorTypes).toEqual({ Q8_0: 16, F32: 5 });
    const stderr = process.stderr.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      expect(await randomCheckpointMain(["--config", configPath, "--out", out, "--format", "zip"])).toBe(2);
    } finally {
      process.stderr.write = stderr;
    }
  });
});
