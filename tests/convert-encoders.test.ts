// The native weight encoder (encodeWeights, used by convert-at-load and `geb-cpu convert`) must
// write exactly the bytes of the JS encoders in lib/formats/tensor-encode.ts, which stay the
// reference. Checked on random rows at several scales and on hand-made edge cases: zero blocks,
// rounding ties, subnormals, values past the half range, infinities and NaN.

import { describe, expect, it } from "vitest";

import { decodeTensorValues, encodeStoredValues, tensorBytes } from "../lib/formats/quantize.js";
import { encodeTensorValues } from "../lib/formats/tensor-encode.js";
import type { TensorType } from "../lib/model/plan.js";
import { binding } from "../lib/native.js";

const SOURCE_TYPES = ["f32", "f16", "bf16"] as const;
const TARGET_TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0"] as const;

/** Deterministic pseudo-random values: most near `scale`, every 37th four times larger. */
function randomValues(count: number, seed: number, scale: number): Float32Array {
  const out = new Float32Array(count);
  let state = seed >>> 0;
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const u = state / 2 ** 32 - 0.5;
    out[i] = (i % 37 === 0 ? 4 : 1) * u * scale;
  }
  return out;
}

/** Blocks of 32 values that exercise the encoders' edge cases. */
function edgeCaseValues(): Float32Array {
  const blocks: number[][] = [];
  blocks.push(new Array(32).fill(0));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j - 16) * 0.25)); // Q4_0 and Q8_0 rounding ties
  blocks.push(Array.from({ length: 32 }, (_, j) => (j % 2 === 0 ? 1 : -1) * (j + 1) * 0.5)); // +/- extremes
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 5 ? -2 : j === 9 ? 2 : j * 0.01))); // equal magnitudes: first wins
  blocks.push(Array.from({ length: 32 }, (_, j) => j * 1e-42)); // F32 subnormals
  blocks.push(Array.from({ length: 32 }, (_, j) => (j + 1) * 3e-9)); // scale below the half range
  blocks.push(Array.from({ length: 32 }, (_, j) => (j + 1) * 6e-6)); // subnormal half scales
  blocks.push(Array.from({ length: 32 }, (_, j) => 65504 + j * 8)); // around the half maximum
  blocks.push(Array.from({ length: 32 }, (_, j) => (j - 16) * 1e6)); // half scale overflows
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 3 ? Infinity : j === 4 ? -Infinity : j)));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 7 ? NaN : j - 3)));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 0 ? -0 : 1 / (j + 1))));
  return Float32Array.from(blocks.flat());
}

/** Run the native encoder on `bytes` stored as `from`. */
async function nativeEncode(from: TensorType, bytes: Uint8Array, to: TensorType): Promise<Uint8Array> {
  const elements = bytes.byteLength / tensorBytes(from, 1);
  const out = new Uint8Array(tensorBytes(to, elements));
  return binding().encodeWeights(from, bytes, to, out);
}

/** Index of the first differing byte, or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  expect(a.byteLength).toBe(b.byteLength);
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return i;
  return -1;
}

describe("native weight encoder", () => {
  const inputs: [string, Float32Array][] = [
    ["random 1e-2", randomValues(32 * 500, 1, 1e-2)],
    ["random 1", randomValues(32 * 500, 2, 1)],
    ["random 1e3", randomValues(32 * 500, 3, 1e3)],
    ["edge cases", edgeCaseValues()],
  ];
  for (const [label, values] of inputs) {
    for (const from of SOURCE_TYPES) {
      it(`matches the JS encoders from ${from} (${label})`, async () => {
        const source = from === "f32" ? new Uint8Array(values.buffer.slice(0)) : encodeTensorValues(from, values);
        const decoded = decodeTensorValues(from, source);
        for (const to of TARGET_TYPES) {
          const expected = encodeTensorValues(to, decoded);
          const actual = await nativeEncode(from, source, to);
          expect(firstDifference(actual, expected), `from=${from} to=${to}`).toBe(-1);
        }
      });
    }
  }

  it("is what encodeStoredValues uses", async () => {
    const values = randomValues(32 * 64, 4, 0.5);
    const source = encodeTensorValues("bf16", values);
    const encoded = await encodeStoredValues("bf16", source, "q4_0");
    expect(firstDifference(encoded, encodeTensorValues("q4_0", decodeTensorValues("bf16", source)))).toBe(-1);
    // A source already of the target type comes back as it is.
    expect(await encodeStoredValues("bf16", source, "bf16")).toBe(source);
  });

  it("decodes quantized sources in JS", async () => {
    const values = randomValues(32 * 8, 5, 1);
    const q8 = encodeTensorValues("q8_0", values);
    const expected = encodeTensorValues("f16", decodeTensorValues("q8_0", q8));
    expect(firstDifference(await encodeStoredValues("q8_0", q8, "f16"), expected)).toBe(-1);
  });

  it("rejects partial blocks, wrong sizes and quantized sources", async () => {
    const values = new Uint8Array(new Float32Array(40).buffer);
    await expect(encodeStoredValues("f32", values, "q8_0")).rejects.toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT" });
    expect(() => binding().encodeWeights("f32", values, "q8_0", new Uint8Array(34))).toThrow(expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" }));
    const whole = new Uint8Array(new Float32Array(32).buffer);
    expect(() => binding().encodeWeights("f32", whole, "q4_0", new Uint8Array(17))).toThrow(expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" }));
    expect(() => binding().encodeWeights("q8_0", new Uint8Array(34), "f32", new Uint8Array(128))).toThrow(
      expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" }),
    );
    expect(() => binding().encodeWeights("f32", whole, "q5_0" as TensorType, new Uint8Array(18))).toThrow(
      expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" }),
    );
  });
});
