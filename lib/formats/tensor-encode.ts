// Encoders from float32 values to the stored tensor types the writers produce: F32, F16, BF16
// (round to nearest even) and the ggml block formats Q8_0 and Q4_0. Adding a type means adding
// one encoder here and one entry in ENCODERS.
//
// Block layouts (32 elements per block, little-endian):
//   Q8_0: d (f16), then qs[32] int8;           x = d * qs[j]
//   Q4_0: d (f16), then qs[16] bytes; element j is the low nibble of qs[j], element j + 16 the
//         high nibble;                           x = d * (nibble - 8)

import { InvalidArgumentError } from "../errors.js";
import type { TensorType } from "../model/plan.js";

const scratchFloat = new Float32Array(1);
const scratchBits = new Uint32Array(scratchFloat.buffer);

/** Convert a float to IEEE half-precision bits, rounding to nearest even. */
export function float32ToFloat16Bits(value: number): number {
  scratchFloat[0] = value;
  const bits = scratchBits[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;

  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;

  // Subnormal halves: value = m * 2^-24 with m = (1.mantissa << 23) >> (14 - halfExponent).
  if (halfExponent <= 0) {
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - halfExponent;
    let half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }

  // Normal halves; a carry out of the mantissa correctly bumps the exponent.
  let half = (halfExponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

/** Convert a float to bfloat16 bits (the upper half of the float32), rounding to nearest even. */
export function float32ToBfloat16Bits(value: number): number {
  scratchFloat[0] = value;
  const bits = scratchBits[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Convert IEEE half-precision bits to a number (exact). */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Round a block scale to F16 and return its bits and the value the decoder will see. */
function halfScale(d: number): { bits: number; value: number } {
  const bits = float32ToFloat16Bits(d);
  return { bits, value: float16BitsToFloat32(bits) };
}

function encodeF32(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
}

function encodeF16(values: Float32Array): Uint8Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16Bits(values[i]);
  return new Uint8Array(out.buffer);
}

function encodeBf16(values: Float32Array): Uint8Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float32ToBfloat16Bits(values[i]);
  return new Uint8Array(out.buffer);
}

function encodeQ8_0(values: Float32Array): Uint8Array {
  const blocks = values.length / 32;
  const out = new Uint8Array(blocks * 34);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const base = b * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[base + j]));
    // A block with a NaN stores the quiet NaN half 0x7e00 as its scale and zeros, whatever NaN
    // bit pattern the engine would produce (the native encoder writes the same).
    if (Number.isNaN(amax)) {
      view.setUint16(b * 34, 0x7e00, true);
      continue;
    }
    // Quantize against the F16-rounded scale, which is what the decoder multiplies by.
    const d = halfScale(amax / 127);
    const inverse = d.value === 0 ? 0 : 1 / d.value;
    view.setUint16(b * 34, d.bits, true);
    for (let j = 0; j < 32; j++) {
      const x = values[base + j] * inverse;
      view.setInt8(b * 34 + 2 + j, Math.max(-127, Math.min(127, Math.sign(x) * Math.round(Math.abs(x)))));
    }
  }
  return out;
}

function encodeQ4_0(values: Float32Array): Uint8Array {
  const blocks = values.length / 32;
  const out = new Uint8Array(blocks * 18);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const base = b * 32;
    // The value of largest magnitude maps to -8, so the full range [-8, 7] is used on its side.
    let extreme = 0;
    for (let j = 0; j < 32; j++) if (Math.abs(values[base + j]) > Math.abs(extreme)) extreme = values[base + j];
    const d = halfScale(extreme / -8);
    const inverse = d.value === 0 ? 0 : 1 / d.value;
    view.setUint16(b * 18, d.bits, true);
    const nibble = (x: number): number => Math.min(15, Math.max(0, Math.round(x * inverse) + 8));
    for (let j = 0; j < 16; j++) out[b * 18 + 2 + j] = nibble(values[base + j]) | (nibble(values[base + j + 16]) << 4);
  }
  return out;
}

const ENCODERS: Record<TensorType, (values: Float32Array) => Uint8Array> = {
  f32: encodeF32,
  f16: encodeF16,
  bf16: encodeBf16,
  q8_0: encodeQ8_0,
  q4_0: encodeQ4_0,
};

/** Elements per block of each plan type: chunks handed to `encodeTensorValues` must be whole blocks. */
export const PLAN_TYPE_BLOCK: Readonly<Record<TensorType, number>> = { f32: 1, f16: 1, bf16: 1, q8_0: 32, q4_0: 32 };

/** Encode float32 values as `type`. The length must be a multiple of the type's block size. */
export function encodeTensorValues(type: TensorType, values: Float32Array): Uint8Array {
  if (values.length % PLAN_TYPE_BLOCK[type] !== 0) {
    throw new InvalidArgumentError(`Cannot encode ${values.length} values as ${type}: the count must be a multiple of ${PLAN_TYPE_BLOCK[type]}.`, {
      received: values.length,
    });
  }
  return ENCODERS[type](values);
}
