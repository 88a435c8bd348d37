// Tests of the single-kernel `kernels` export: every tier this CPU supports against a
// double-precision reference written here, on sizes that are not multiples of any vector width.
// The C++ suite (native/tests/test_kernels.cpp) covers more shapes; these tests check the JS
// entry points and that each tier is reachable from JS.

import { describe, expect, it } from "vitest";

import { binding } from "../lib/native.js";
import type { KernelTier } from "../lib/native-types.js";

const addon = binding();
const kernels = addon.kernels;
const TIERS = addon.kernelTiers();

// Relative to the sum of |terms| of each output: F32 accumulation in another order.
const MATMUL_TOLERANCE = 2e-6;
const ELEMENTWISE_TOLERANCE = 2e-6;

// Deterministic values in [lo, hi) from a linear congruential generator.
function randomFloats(n: number, lo: number, hi: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let state = seed >>> 0;
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((state >>> 8) / 2 ** 24) * (hi - lo);
  }
  return out;
}

// F32 values to bfloat16 bytes (truncation) and the values those bytes hold.
function toBf16(values: Float32Array): { bytes: Uint8Array; exact: Float32Array } {
  const bits = new Uint32Array(values.buffer.slice(0));
  const halves = new Uint16Array(values.length);
  const exact = new Float32Array(values.length);
  const exactBits = new Uint32Array(exact.buffer);
  for (let i = 0; i < values.length; i++) {
    halves[i] = bits[i]! >>> 16;
    exactBits[i] = (bits[i]! >>> 16) << 16;
  }
  return { bytes: new Uint8Array(halves.buffer), exact };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

describe.each(TIERS)("kernels on tier %s", (tier: KernelTier) => {
  it("matmul f32 and bf16 match the reference", () => {
    for (const [rows, k, nTokens] of [
      [1, 1, 1],
      [7, 33, 1],
      [19, 70, 5],
      [4, 256, 9],
      // prefill GEMM: two panels of k, and token and row counts off the tile sizes
      [37, 1100, 13],
    ] as const) {
      const w = randomFloats(rows * k, -1, 1, rows * 31 + k);
      const x = randomFloats(nTokens * k, -1, 1, k * 7 + nTokens);
      const bf16 = toBf16(w);
      for (const [type, bytes, exact] of [
        ["f32", new Uint8Array(w.buffer), w],
        ["bf16", bf16.bytes, bf16.exact],
      ] as const) {
        const y = kernels.matmul(type, bytes, rows, k, x, nTokens, tier);
        expect(y.length).toBe(rows * nTokens);
        for (let t = 0; t < nTokens; t++) {
          for (let r = 0; r < rows; r++) {
            let want = 0;
            let scale = 0;
            for (let i = 0; i < k; i++) {
              const term = exact[r * k + i]! * x[t * k + i]!;
              want += term;
              scale += Math.abs(term);
            }
            expect(Math.abs(y[t * rows + r]! - want), `${type} rows=${rows} k=${k} t=${t} r=${r}`).toBeLessThanOrEqual(
              MATMUL_TOLERANCE * scale + 1e-7,
            );
          }
        }
      }
    }
  });

  it("rmsnorm matches the reference", () => {
    const x = randomFloats(37, -3, 3, 5);
    const w = randomFloats(37, 0.5, 1.5, 6);
    const y = kernels.rmsnorm(x, w, 1e-5, tier);
    const scale = 1 / Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length + 1e-5);
    const want = Array.from(x, (v, i) => v * scale * w[i]!);
    expect(maxAbsDiff(y, want)).toBeLessThan(1e-5);
  });

  it("rope rotations compose", () => {
    const x = randomFloats(3 * 40, -1, 1, 9);
    // rotating to position 9 then by -4 equals rotating to position 5
    const rotated = kernels.rope(x, 3, 40, 20, 9, 10000, tier);
    const back = kernels.rope(rotated, 3, 40, 20, -4, 10000, tier);
    const direct = kernels.rope(x, 3, 40, 20, 5, 10000, tier);
    expect(maxAbsDiff(back, direct)).toBeLessThan(1e-5);
    // position 0 is the identity, and dims past ropeDim never move
    expect(maxAbsDiff(kernels.rope(x, 3, 40, 20, 0, 10000, tier), x)).toBe(0);
    for (let h = 0; h < 3; h++) {
      for (let i = 20; i < 40; i++) expect(rotated[h * 40 + i]).toBe(x[h * 40 + i]);
    }
  });

  it("attention matches the reference", () => {
    const nGroup = 3;
    const headDim = 24;
    const nKeys = 70;
    const q = randomFloats(nGroup * headDim, -2, 2, 11);
    const k = randomFloats(nKeys * headDim, -1, 1, 12);
    const v = randomFloats(nKeys * headDim, -1, 1, 13);
    const scale = 1 / Math.sqrt(headDim);
    const want: number[] = [];
    for (let g = 0; g < nGroup; g++) {
      const scores = Array.from({ length: nKeys }, (_, j) => {
        let dot = 0;
        for (let i = 0; i < headDim; i++) dot += q[g * headDim + i]! * k[j * headDim + i]!;
        return dot * scale;
      });
      const max = Math.max(...scores);
      const p = scores.map((s) => Math.exp(s - max));
      const sum = p.reduce((a, b) => a + b, 0);
      for (let i = 0; i < headDim; i++) {
        let acc = 0;
        for (let j = 0; j < nKeys; j++) acc += p[j]! * v[j * headDim + i]!;
        want.push(acc / sum);
      }
    }
    expect(maxAbsDiff(kernels.attention(q, k, v, nGroup, headDim, nKeys, "f32", tier), want)).toBeLessThan(1e-5);
    // half-rounded keys and values move the output by about 2^-11 of the value range
    expect(maxAbsDiff(kernels.attention(q, k, v, nGroup, headDim, nKeys, "f16", tier), want)).toBeLessThan(2e-3);
  });

  it("swiglu and softmax match the reference", () => {
    const a = randomFloats(45, -20, 20, 21);
    const b = randomFloats(45, -2, 2, 22);
    const y = kernels.swiglu(a, b, tier);
    a.forEach((ai, i) => {
      const want = (ai / (1 + Math.exp(-ai))) * b[i]!;
      expect(Math.abs(y[i]! - want), `i=${i} a=${ai}`).toBeLessThanOrEqual(ELEMENTWISE_TOLERANCE * Math.abs(want) + 1e-30);
    });

    const x = randomFloats(45, -10, 10, 23);
    const max = Math.max(...x);
    const sum = x.reduce((s, v) => s + Math.exp(v - max), 0);
    expect(maxAbsDiff(kernels.softmax(x, tier), Array.from(x, (v) => Math.exp(v - max) / sum))).toBeLessThan(1e-6);
  });
});

describe("kernels argument checks", () => {
  it("rejects unknown and unsupported tiers", () => {
    const x = new Float32Array(4);
    expect(() => kernels.softmax(x, "sse9" as KernelTier)).toThrow(expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" }));
    const missing = (["avx2", "avx512", "neon"] as const).find((t) => !TIERS.includes(t));
    if (missing !== undefined) {
      expect(() => kernels.softmax(x, missing)).toThrow(expect.objectContaining({ code: "ERR_GEB_CPU_FEATURE" }));
    }
  });

  it("rejects size mismatches", () => {
    expect(() => kernels.matmul("f32", new Uint8Array(12), 2, 2, new Float32Array(2), 1, "scalar")).toThrow(
      expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" }),
    );
    expect(() => kernels.rmsnorm(new Float32Array(3), new Float32Array(4), 1e-5, "scalar")).toThrow(
      expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" }),
    );
  });
});

describe("kernels.readBandwidth", () => {
  it("reads a buffer with one and two threads and reports the rate", () => {
    for (const threads of [1, 2]) {
      const r = kernels.readBandwidth(4 * 2 ** 20, threads, 2, TIERS[TIERS.length - 1]!);
      expect(r.threads).toBe(threads);
      expect(r.bestMs).toBeGreaterThan(0);
      // any machine that runs the tests reads faster than 10 MB/s
      expect(r.bytesPerSecond).toBeGreaterThan(1e7);
      expect(r.bytesPerSecond).toBeCloseTo((4 * 2 ** 20) / (r.bestMs / 1000), -3);
    }
  });

  it("rejects sizes below 1 MiB and zero threads or passes", () => {
    const invalid = expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" });
    expect(() => kernels.readBandwidth(1000, 1, 1, "scalar")).toThrow(invalid);
    expect(() => kernels.readBandwidth(2 ** 20, 0, 1, "scalar")).toThrow(invalid);
    expect(() => kernels.readBandwidth(2 ** 20, 1, 0, "scalar")).toThrow(invalid);
  });
});
