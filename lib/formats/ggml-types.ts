// Table of ggml tensor types as they appear in GGUF files: id, name, block size and bytes per
// block. The reader needs every type's size to bound tensor data, even for types the engine
// cannot run, so `inspect` can list any file. `planTensorType` returns the ones a plan may use.

import { InternalError } from "../errors.js";
import type { TensorType } from "../model/plan.js";

/** One ggml storage type: `blockSize` elements are stored in `typeSize` bytes. */
export interface GgmlTypeInfo {
  /** The `ggml_type` enum value stored in the GGUF tensor info. */
  id: number;
  /** ggml's name for the type, such as `F32`, `Q8_0` or `IQ4_XS`. */
  name: string;
  /** Elements per block. Row length (`ne0`) must be a multiple of it. */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
}

// Ids 4 and 5 (Q4_2, Q4_3) were removed from ggml before GGUF existed and are unknown here.
// Ids 31-33 and 36-38 are interleaved repackings of Q4_0 and IQ4_NL that ggml no longer writes
// to files. They keep the size of their base type, so old files still parse.
const TYPES: readonly GgmlTypeInfo[] = [
  { id: 0, name: "F32", blockSize: 1, typeSize: 4 },
  { id: 1, name: "F16", blockSize: 1, typeSize: 2 },
  { id: 2, name: "Q4_0", blockSize: 32, typeSize: 18 },
  { id: 3, name: "Q4_1", blockSize: 32, typeSize: 20 },
  { id: 6, name: "Q5_0", blockSize: 32, typeSize: 22 },
  { id: 7, name: "Q5_1", blockSize: 32, typeSize: 24 },
  { id: 8, name: "Q8_0", blockSize: 32, typeSize: 34 },
  { id: 9, name: "Q8_1", blockSize: 32, typeSize: 36 },
  { id: 10, name: "Q2_K", blockSize: 256, typeSize: 84 },
  { id: 11, name: "Q3_K", blockSize: 256, typeSize: 110 },
  { id: 12, name: "Q4_K", blockSize: 256, typeSize: 144 },
  { id: 13, name: "Q5_K", blockSize: 256, typeSize: 176 },
  { id: 14, name: "Q6_K", blockSize: 256, typeSize: 210 },
  { id: 15, name: "Q8_K", blockSize: 256, typeSize: 292 },
  { id: 16, name: "IQ2_XXS", blockSize: 256, typeSize: 66 },
  { id: 17, name: "IQ2_XS", blockSize: 256, typeSize: 74 },
  { id: 18, name: "IQ3_XXS", blockSize: 256, typeSize: 98 },
  { id: 19, name: "IQ1_S", blockSize: 256, typeSize: 50 },
  { id: 20, name: "IQ4_NL", blockSize: 32, typeSize: 18 },
  { id: 21, name: "IQ3_S", blockSize: 256, typeSize: 110 },
  { id: 22, name: "IQ2_S", blockSize: 256, typeSize: 82 },
  { id: 23, name: "IQ4_XS", blockSize: 256, typeSize: 136 },
  { id: 24, name: "I8", blockSize: 1, typeSize: 1 },
  { id: 25, name: "I16", blockSize: 1, typeSize: 2 },
  { id: 26, name: "I32", blockSize: 1, typeSize: 4 },
  { id: 27, name: "I64", blockSize: 1, typeSize: 8 },
  { id: 28, name: "F64", blockSize: 1, typeSize: 8 },
  { id: 29, name: "IQ1_M", blockSize: 256, typeSize: 56 },
  { id: 30, name: "BF16", blockSize: 1, typeSize: 2 },
  { id: 31, name: "Q4_0_4_4", blockSize: 32, typeSize: 18 },
  { id: 32, name: "Q4_0_4_8", blockSize: 32, typeSize: 18 },
  { id: 33, name: "Q4_0_8_8", blockSize: 32, typeSize: 18 },
  { id: 34, name: "TQ1_0", blockSize: 256, typeSize: 54 },
  { id: 35, name: "TQ2_0", blockSize: 256, typeSize: 66 },
  { id: 36, name: "IQ4_NL_4_4", blockSize: 32, typeSize: 18 },
  { id: 37, name: "IQ4_NL_4_8", blockSize: 32, typeSize: 18 },
  { id: 38, name: "IQ4_NL_8_8", blockSize: 32, typeSize: 18 },
  { id: 39, name: "MXFP4", blockSize: 32, typeSize: 17 },
];

const BY_ID = new Map<number, GgmlTypeInfo>(TYPES.map((t) => [t.id, t]));
const BY_NAME = new Map<string, GgmlTypeInfo>(TYPES.map((t) => [t.name, t]));

/** Every ggml type in this table, in id order. */
export const GGML_TYPES: readonly GgmlTypeInfo[] = TYPES;

/** Look a type up by its GGUF id; `undefined` for ids this table does not know. */
export function ggmlTypeById(id: number): GgmlTypeInfo | undefined {
  return BY_ID.get(id);
}

/** Look a type up by its ggml name (`"Q8_0"`); `undefined` when unknown. */
export function ggmlTypeByName(name: string): GgmlTypeInfo | undefined {
  return BY_NAME.get(name);
}

const PLAN_TYPES: ReadonlyMap<string, TensorType> = new Map<string, TensorType>([
  ["F32", "f32"],
  ["F16", "f16"],
  ["BF16", "bf16"],
  ["Q8_0", "q8_0"],
  ["Q4_0", "q4_0"],
]);

/** Return the plan type the engine runs for a ggml type, or `undefined` when the engine has no kernel for it. */
export function planTensorType(type: GgmlTypeInfo): TensorType | undefined {
  return PLAN_TYPES.get(type.name);
}

/** Return the ggml type stored for a plan type (the inverse of `planTensorType`). */
export function ggmlTypeForPlanType(type: TensorType): GgmlTypeInfo {
  for (const [name, planType] of PLAN_TYPES) {
    if (planType === type) return BY_NAME.get(name) as GgmlTypeInfo;
  }
  throw new InternalError(`No ggml type is mapped to the plan tensor type ${type}.`);
}
