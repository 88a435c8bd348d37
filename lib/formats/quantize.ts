// Conversion of model weights between plan types: quantization to Q8_0 or Q4_0 (GGUF block
// layouts, encoders in tensor-encode.ts), re-typing to F32, F16 or BF16, decoding of every plan
// type back to F32, and convert-at-load: a plan is rewritten so its converted matrices point into
// a cache file. The native engine memory-maps that file like any other model file, so the
// converted weights cost no heap and a second load reuses the file without converting again.
// `geb-cpu convert` (lib/model/convert.ts) streams the same chunks into a GGUF file instead.
//
// Tensors that are not converted keep their stored type: vectors (norm weights), matrices that
// already have the requested type, and for a quantized target, matrices whose rows are not a
// whole number of 32-element blocks (stories260K's 172-wide FFN, for example) and matrices already
// stored as Q8_0 or Q4_0 (they are never re-quantized).

import { createHash } from "node:crypto";
import { mkdir, open, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { basename, join } from "node:path";

import { AbortError, InvalidArgumentError, IoError } from "../errors.js";
import type { ModelPlan, TensorRef, TensorType } from "../model/plan.js";
import { binding, fromNativeError } from "../native.js";
import type { NativeConvertBinding } from "../native-types.js";
import { encodeTensorValues, PLAN_TYPE_BLOCK } from "./tensor-encode.js";
import { removeStaleTemporaryFiles, temporaryFileName } from "./temporary-files.js";
import { CACHE_TRAILER_BYTES, checkCacheFile, crc32, encodeCacheTrailer } from "./weight-cache.js";

/** Weight types a model can be quantized to at load. */
export type QuantizedType = "q8_0" | "q4_0";

export const QUANTIZED_TYPES: readonly QuantizedType[] = ["q8_0", "q4_0"];

/** Weight types a model can be converted to at load or by `geb-cpu convert`. */
export type WeightType = QuantizedType | "bf16" | "f16" | "f32";

export const WEIGHT_TYPES: readonly WeightType[] = ["q4_0", "q8_0", "bf16", "f16", "f32"];

function isQuantizedType(type: TensorType): type is QuantizedType {
  return type === "q8_0" || type === "q4_0";
}

/** Elements per block of Q8_0 and Q4_0. */
export const QUANT_BLOCK = 32;

/** Bytes per 32-element block: f16 scale + 32 int8 (Q8_0) or 16 bytes of nibbles (Q4_0). */
export const QUANT_BLOCK_BYTES: Readonly<Record<QuantizedType, number>> = { q8_0: 34, q4_0: 18 };

/** Bytes of `elements` values stored as `type` (elements must be a multiple of the type's block). */
export function tensorBytes(type: TensorType, elements: number): number {
  switch (type) {
    case "f32":
      return elements * 4;
    case "f16":
    case "bf16":
      return elements * 2;
    case "q8_0":
    case "q4_0":
      return (elements / QUANT_BLOCK) * QUANT_BLOCK_BYTES[type];
  }
}

// Every IEEE half value widened to F32, so decoding F16 is one table lookup per element.
let halfTable: Float32Array | undefined;
function halfToFloatTable(): Float32Array {
  if (halfTable !== undefined) return halfTable;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) table[h] = sign * mantissa * 2 ** -24;
    else if (exponent === 0x1f) table[h] = mantissa === 0 ? sign * Infinity : NaN;
    else table[h] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  halfTable = table;
  return table;
}

/** Decode `bytes` stored as `type` (little-endian, GGUF block layouts) to F32 values. */
export function decodeTensorValues(type: TensorType, bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const half = halfToFloatTable();
  switch (type) {
    case "f32": {
      const out = new Float32Array(bytes.byteLength / 4);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    }
    case "f16": {
      const out = new Float32Array(bytes.byteLength / 2);
      for (let i = 0; i < out.length; i++) out[i] = half[view.getUint16(i * 2, true)];
      return out;
    }
    case "bf16": {
      const out = new Float32Array(bytes.byteLength / 2);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < out.length; i++) bits[i] = view.getUint16(i * 2, true) << 16;
      return out;
    }
    case "q8_0": {
      const blocks = bytes.byteLength / 34;
      const out = new Float32Array(blocks * QUANT_BLOCK);
      for (let b = 0; b < blocks; b++) {
        const d = half[view.getUint16(b * 34, true)];
        for (let j = 0; j < QUANT_BLOCK; j++) out[b * QUANT_BLOCK + j] = d * view.getInt8(b * 34 + 2 + j);
      }
      return out;
    }
    case "q4_0": {
      const blocks = bytes.byteLength / 18;
      const out = new Float32Array(blocks * QUANT_BLOCK);
      for (let b = 0; b < blocks; b++) {
        const d = half[view.getUint16(b * 18, true)];
        for (let j = 0; j < 16; j++) {
          const q = bytes[b * 18 + 2 + j];
          out[b * QUANT_BLOCK + j] = d * ((q & 0x0f) - 8);
          out[b * QUANT_BLOCK + j + 16] = d * ((q >> 4) - 8);
        }
      }
      return out;
    }
  }
}

/**
 * Return the type a tensor gets when a model is converted to `requested`. Vectors keep their
 * type. For Q8_0 or Q4_0: a F32, F16 or BF16 matrix whose rows are whole 32-element blocks gets
 * `requested`, any other matrix keeps its type. For F32, F16 or BF16: every matrix gets
 * `requested`, and a quantized matrix is decoded to it.
 */
export function quantizedTypeFor(tensor: Pick<TensorRef, "type" | "shape">, requested: WeightType): TensorType {
  if (tensor.shape.length !== 2) return tensor.type;
  if (!isQuantizedType(requested)) return requested;
  if (isQuantizedType(tensor.type)) return tensor.type;
  if (tensor.shape[1] % QUANT_BLOCK !== 0) return tensor.type;
  return requested;
}

// Rows are read, decoded and encoded in groups of about this many source bytes.
const CHUNK_BYTES = 16 * 2 ** 20;

type NativeEncoder = NativeConvertBinding["encodeWeights"];
let nativeEncoder: NativeEncoder | null | undefined;

/**
 * Return the addon's weight encoder, or null when the addon cannot be loaded. Conversion then
 * uses the JS encoders of tensor-encode.ts, which write the same bytes 3 to 5 times slower
 * (Q4_0 and Q8_0 on 32M values, 2-core x86-64 VM).
 */
function nativeEncodeWeights(): NativeEncoder | null {
  if (nativeEncoder === undefined) {
    try {
      const addon = binding();
      nativeEncoder = typeof addon.encodeWeights === "function" ? addon.encodeWeights.bind(addon) : null;
    } catch {
      nativeEncoder = null;
    }
  }
  return nativeEncoder;
}

/** Encode `bytes` stored as `from` as `to`: natively when the addon is loaded, else in JS. */
export async function encodeStoredValues(from: TensorType, bytes: Uint8Array, to: TensorType): Promise<Uint8Array> {
  if (from === to) return bytes;
  const encode = nativeEncodeWeights();
  if (encode === null || from === "q8_0" || from === "q4_0") return encodeTensorValues(to, decodeTensorValues(from, bytes));
  const elements = bytes.byteLength / tensorBytes(from, 1);
  if (elements % PLAN_TYPE_BLOCK[to] !== 0) {
    throw new InvalidArgumentError(`Cannot encode ${elements} values as ${to}: the count must be a multiple of ${PLAN_TYPE_BLOCK[to]}.`, {
      received: elements,
    });
  }
  const out = new Uint8Array(tensorBytes(to, elements));
  try {
    return await encode(from, bytes, to, out);
  } catch (error) {
    throw fromNativeError(error);
  }
}

/**
 * Read the tensor `tensor` from `source` (the open file at `sourcePath`) and yield its rows
 * encoded as `to`, in order, a group of rows per chunk. The chunks add up to
 * `tensorBytes(to, elements)`. A source already of type `to` is copied unchanged. The next
 * group is read while the current one is encoded.
 *
 * Throws IoError when the file ends inside the tensor, AbortError when `signal` fires between
 * chunks.
 */
export async function* convertTensorChunks(
  source: FileHandle,
  sourcePath: string,
  tensor: TensorRef,
  to: TensorType,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array> {
  const rows = tensor.shape.length === 2 ? tensor.shape[0] : 1;
  const rowLength = tensor.shape[tensor.shape.length - 1];
  const sourceRowBytes = tensorBytes(tensor.type, rowLength);
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / sourceRowBytes));
  const readRows = async (row: number): Promise<Uint8Array> => {
    const count = Math.min(rowsPerChunk, rows - row);
    const bytes = new Uint8Array(count * sourceRowBytes);
    const { bytesRead } = await source.read(bytes, 0, bytes.byteLength, tensor.offset + row * sourceRowBytes);
    if (bytesRead !== bytes.byteLength) {
      throw new IoError(`${sourcePath} ended inside tensor ${tensor.name}; the model file is truncated.`, { path: sourcePath });
    }
    return bytes;
  };

  let next: Promise<Uint8Array> | undefined = readRows(0);
  try {
    for (let row = 0; row < rows; row += rowsPerChunk) {
      const bytes: Uint8Array = await next!;
      next = row + rowsPerChunk < rows ? readRows(row + rowsPerChunk) : undefined;
      // A read that fails while the consumer has stopped must not become an unhandled rejection.
      next?.catch(() => undefined);
      if (signal?.aborted) throw new AbortError(`Converting the weights of ${sourcePath} was aborted.`);
      const encoded = await encodeStoredValues(tensor.type, bytes, to);
      if (to === "f16" && tensor.type !== "f16") checkHalfRange(encoded, tensor, sourcePath);
      yield encoded;
    }
  } finally {
    // Let a prefetch still in flight finish before the caller closes the file handle.
    await next?.catch(() => undefined);
  }
}

/**
 * Throw when an F16 encoding contains an infinity or NaN. F16 tops out at 65504, and a larger weight
 * would become infinite and turn every later logit into NaN, so the conversion stops instead.
 */
function checkHalfRange(encoded: Uint8Array, tensor: TensorRef, sourcePath: string): void {
  const aligned = encoded.byteOffset % 2 === 0 ? encoded : encoded.slice();
  const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >> 1);
  for (let i = 0; i < halves.length; i++) {
    if ((halves[i]! & 0x7c00) === 0x7c00) {
      throw new InvalidArgumentError(
        `Tensor ${tensor.name} of ${sourcePath} has a value that F16 cannot hold (above 65504 in magnitude, infinite or NaN); choose bf16 or f32 instead of f16.`,
        { path: sourcePath, received: tensor.name },
      );
    }
  }
}

/** One tensor whose storage type quantize-at-load changed, or kept with the reason. */
export interface WeightConversion {
  name: string;
  from: TensorType;
  to: TensorType;
}

/** Options of `quantizePlan`. */
export interface QuantizePlanOptions {
  weightType: WeightType;
  /** Folder of the cache files (created when missing). */
  cacheDir: string;
  /** Called after each tensor with the bytes of quantized output written so far. */
  onProgress?: (writtenBytes: number, totalBytes: number) => void;
  /** Stops converting between chunks with AbortError; the partial cache file is removed. */
  signal?: AbortSignal;
}

/** Result of `quantizePlan`. */
export interface QuantizedPlan {
  /** The input plan with the quantized matrices pointing into `cacheFile`. */
  plan: ModelPlan;
  /** Matrices whose type changed. */
  converted: WeightConversion[];
  /** Matrices that stayed in their stored type (already that type, rows not whole blocks, or already quantized). */
  kept: WeightConversion[];
  /** The cache file of converted tensors, or undefined when nothing needed converting. */
  cacheFile?: string;
  /** True when a cache file from an earlier load passed its check and was reused. */
  reused: boolean;
  /** Reason an existing cache file failed its check and was rebuilt; undefined when none existed or it was reused. */
  rebuiltReason?: string;
  /**
   * Temporary files of earlier writes of the same cache file whose process no longer runs
   * (killed, or the machine lost power), removed before this write or when the cache file was
   * reused. Empty when nothing was left over.
   */
  removedTemporaryFiles: string[];
}

// Bumped whenever the encoders or the cache layout change, so stale files are never reused.
// Version 3 added the checked trailer of weight-cache.ts.
const CACHE_FORMAT_VERSION = 3;
// Each tensor starts on a 64-byte boundary of the cache file (a cache line; more than the 2-byte
// alignment the kernels need).
const CACHE_ALIGNMENT = 64;
/**
 * Convert the matrices of `plan` to `options.weightType` (as `quantizedTypeFor` decides per
 * tensor) into a cache file under `options.cacheDir`, and return a plan that points at it. A plan
 * whose matrices already have that type is returned as it is, with no cache file. The cache file's
 * name is a hash of the source files (path, size, modification time), the tensors and the type, so
 * an unchanged model reuses its file. A file is reused only after its trailer and the CRC-32 of
 * its content pass `checkCacheFile`. Otherwise it is rebuilt in place, and `rebuiltReason`
 * contains the reason. Checking reads the whole file once: about 0.6 s for a 1.4 GB file in the
 * page cache on a 2-core Zen 3 VM, and disk speed when it is not. The engine reads those pages at
 * load or at its first step anyway, so a cold file costs little extra.
 *
 * Throws InvalidArgumentError for an unknown weight type, IoError when a file cannot be read or
 * the cache cannot be written (also when a cache file that failed its check cannot be replaced),
 * AbortError when `options.signal` fires.
 */
export async function quantizePlan(plan: ModelPlan, options: QuantizePlanOptions): Promise<QuantizedPlan> {
  const weightType = options.weightType;
  if (!WEIGHT_TYPES.includes(weightType)) {
    throw new InvalidArgumentError(`weightType must be one of ${WEIGHT_TYPES.join(", ")}, received ${String(weightType)}.`, {
      expected: WEIGHT_TYPES.join(" | "),
      received: weightType,
    });
  }

  // lay out the cache file: one aligned region per converted tensor
  const converted: WeightConversion[] = [];
  const kept: WeightConversion[] = [];
  const regions = new Map<TensorRef, number>();
  let cacheSize = 0;
  for (const tensor of plan.tensors) {
    const to = quantizedTypeFor(tensor, weightType);
    if (to === tensor.type) {
      if (tensor.shape.length === 2) kept.push({ name: tensor.name, from: tensor.type, to });
      continue;
    }
    cacheSize = Math.ceil(cacheSize / CACHE_ALIGNMENT) * CACHE_ALIGNMENT;
    regions.set(tensor, cacheSize);
    cacheSize += tensorBytes(to, tensor.shape[0] * tensor.shape[1]);
    converted.push({ name: tensor.name, from: tensor.type, to });
  }
  if (converted.length === 0) return { plan, converted, kept, reused: false, removedTemporaryFiles: [] };

  const key = createHash("sha256");
  key.update(JSON.stringify({ version: CACHE_FORMAT_VERSION, weightType }));
  for (const file of plan.files) {
    const info = await statOrThrow(file);
    key.update(JSON.stringify([file, info.size, info.mtimeMs]));
  }
  for (const tensor of plan.tensors) key.update(JSON.stringify([tensor.name, tensor.file, tensor.offset, tensor.nbytes, tensor.type, tensor.shape]));
  const keyDigest = key.digest();
  const cacheFile = join(options.cacheDir, `${keyDigest.toString("hex").slice(0, 32)}.${weightType}.bin`);

  const files = [...plan.files, cacheFile];
  const cacheIndex = plan.files.length;
  const tensors = plan.tensors.map((tensor): TensorRef => {
    const offset = regions.get(tensor);
    if (offset === undefined) return tensor;
    const type = quantizedTypeFor(tensor, weightType);
    return { ...tensor, file: cacheIndex, offset, type, nbytes: tensorBytes(type, tensor.shape[0] * tensor.shape[1]) };
  });
  const result = { plan: { hparams: plan.hparams, files, tensors }, converted, kept, cacheFile };

  let rebuiltReason: string | undefined;
  if ((await stat(cacheFile).catch(() => undefined)) !== undefined) {
    rebuiltReason = await checkCacheFile(cacheFile, CACHE_FORMAT_VERSION, cacheSize, keyDigest);
    if (rebuiltReason === undefined) {
      // A reused file is never written again, so its leftovers are cleaned here: a folder that
      // only reuses its cache file would otherwise keep a killed writer's file forever.
      const removedTemporaryFiles = await removeStaleTemporaryFiles(options.cacheDir, basename(cacheFile));
      return { ...result, reused: true, removedTemporaryFiles };
    }
  }
  const rebuilt = rebuiltReason === undefined ? {} : { rebuiltReason };

  await mkdir(options.cacheDir, { recursive: true }).catch((cause: unknown) => {
    throw new IoError(`Cannot create the weight cache folder ${options.cacheDir}: ${String(cause)}. Pass a writable cacheDir.`, {
      path: options.cacheDir,
      cause,
    });
  });
  // write under a temporary name and rename at the end, so a crash never leaves a cache file
  // of the right size with missing tensors. The name is unique per call: concurrent loads of one
  // model in one process must not truncate each other's file. The last rename wins, and a
  // finished load keeps the file it mapped. A killed writer's file stays behind until the next
  // write or reuse of the same cache file removes it.
  const removedTemporaryFiles = await removeStaleTemporaryFiles(options.cacheDir, basename(cacheFile));
  const partial = join(options.cacheDir, temporaryFileName(basename(cacheFile)));
  const failedCheck = rebuiltReason === undefined ? "" : ` The existing cache file failed its check (${rebuiltReason}) and is not used.`;
  // The CLI has no cacheDir flag; it takes the default folder, which XDG_CACHE_HOME moves.
  const writableHint = " Pass a writable cacheDir (loadModel option), or set XDG_CACHE_HOME to the absolute path of a writable folder for the default one.";
  const sources = await Promise.all(plan.files.map((file) => openOrThrow(file, "r")));
  let output: FileHandle;
  try {
    output = await open(partial, "w");
  } catch (cause) {
    await Promise.all(sources.map((handle) => handle.close()));
    throw new IoError(`Cannot write a weight cache file in ${options.cacheDir}: ${String(cause)}.${failedCheck}${writableHint}`, {
      path: options.cacheDir,
      cause,
    });
  }
  try {
    // The regions are written in file order, so the CRC-32 of the payload, including the zero
    // padding between regions, is computed as the bytes go out.
    let written = 0;
    let crc = 0;
    let crcEnd = 0;
    for (const tensor of plan.tensors) {
      const offset = regions.get(tensor);
      if (offset === undefined) continue;
      crc = crc32(new Uint8Array(offset - crcEnd), crc);
      let position = offset;
      const chunks = convertTensorChunks(sources[tensor.file], plan.files[tensor.file], tensor, quantizedTypeFor(tensor, weightType), options.signal);
      for await (const encoded of chunks) {
        await output.write(encoded, 0, encoded.byteLength, position);
        crc = crc32(encoded, crc);
        position += encoded.byteLength;
        written += encoded.byteLength;
      }
      crcEnd = position;
      options.onProgress?.(written, cacheSize);
    }
    await output.write(encodeCacheTrailer(CACHE_FORMAT_VERSION, crc, cacheSize, keyDigest), 0, CACHE_TRAILER_BYTES, cacheSize);
    await output.truncate(cacheSize + CACHE_TRAILER_BYTES);
    await output.close();
    await rename(partial, cacheFile).catch((cause: unknown) => {
      throw new IoError(`Cannot move the weight cache file into place at ${cacheFile}: ${String(cause)}.${failedCheck}${writableHint}`, {
        path: cacheFile,
        cause,
      });
    });
  } catch (error) {
    await output.close().catch(() => undefined);
    await rm(partial, { force: true });
    throw error;
  } finally {
    await Promise.all(sources.map((handle) => handle.close()));
  }
  return { ...result, ...rebuilt, reused: false, removedTemporaryFiles };
}

async function statOrThrow(path: string) {
  try {
    return await stat(path);
  } catch (cause) {
    throw new IoError(`Cannot read ${path}: ${String(cause)}.`, { path, cause });
  }
}

async function openOrThrow(path: string, flags: "r" | "w") {
  try {
    return await open(path, flags);
  } catch (cause) {
    const action = flags === "r" ? "read" : "write";
    throw new IoError(`Cannot ${action} ${path}: ${String(cause)}.`, { path, cause });
  }
}

// Re-exported so callers that quantize single tensors need one module.
export { encodeTensorValues, PLAN_TYPE_BLOCK };
