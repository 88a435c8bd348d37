// GGUF writer (version 3): serializes typed metadata and tensor infos, then streams each
// tensor's bytes from a producer, padding every tensor to the alignment. Tensor data is never
// held whole in memory. A tensor without a producer is left as a hole of zeros (a sparse file),
// which tests use to build full-size files that cost no disk.

import { open, type FileHandle } from "node:fs/promises";

import { InvalidArgumentError, IoError } from "../errors.js";
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufValueType } from "./gguf.js";
import { ggmlTypeByName, type GgmlTypeInfo } from "./ggml-types.js";

/** Scalar value type names the writer accepts. */
export type GgufScalarTypeName = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64" | "u64" | "i64" | "bool" | "string";

/** A metadata value with its GGUF type spelled out. */
export type GgufWriteValue =
  | { type: "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64"; value: number }
  | { type: "u64" | "i64"; value: number | bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; elementType: Exclude<GgufScalarTypeName, "string" | "bool">; value: ArrayLike<number | bigint> }
  | { type: "array"; elementType: "string"; value: readonly string[] }
  | { type: "array"; elementType: "bool"; value: readonly boolean[] }
  /** An array of arrays: every element is itself an `array` value. */
  | { type: "array"; elementType: "array"; value: readonly GgufWriteValue[] };

/** Producer of a tensor's bytes, in order. The chunks must add up to the tensor's byte size. */
export type TensorDataSource = () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** One tensor to write. */
export interface GgufWriteTensor {
  /** GGUF name, such as `blk.0.attn_q.weight`. */
  name: string;
  /** ggml type name (`"F32"`, `"Q8_0"`...) or a type from the ggml table. */
  type: string | GgmlTypeInfo;
  /** Dimensions in GGUF order (`ne[0]` = row length). */
  ne: number[];
  /** Bytes of the tensor. When absent, the tensor is a hole of zeros (sparse file). */
  data?: TensorDataSource;
}

/** Contents of a GGUF file to write. */
export interface GgufWriteOptions {
  /** Metadata in the order to write. `general.alignment` is added when `alignment` is not 32. */
  metadata: Iterable<[string, GgufWriteValue]>;
  tensors: GgufWriteTensor[];
  /** Data alignment in bytes, a power of two. Default 32. */
  alignment?: number;
}

/** Layout of a written GGUF file. */
export interface GgufWriteResult {
  dataOffset: number;
  fileSize: number;
  tensors: { name: string; offset: number; nbytes: number }[];
}

const TYPE_IDS: Record<GgufScalarTypeName | "array", number> = {
  u8: GgufValueType.UINT8,
  i8: GgufValueType.INT8,
  u16: GgufValueType.UINT16,
  i16: GgufValueType.INT16,
  u32: GgufValueType.UINT32,
  i32: GgufValueType.INT32,
  f32: GgufValueType.FLOAT32,
  bool: GgufValueType.BOOL,
  string: GgufValueType.STRING,
  array: GgufValueType.ARRAY,
  u64: GgufValueType.UINT64,
  i64: GgufValueType.INT64,
  f64: GgufValueType.FLOAT64,
};

/** Growable little-endian byte builder for the header. */
class ByteBuilder {
  private buffer = Buffer.alloc(1 << 16);
  length = 0;

  // Grows the buffer when needed, so callers must call it before reading `this.buffer`.
  private reserve(n: number): number {
    if (this.length + n > this.buffer.length) {
      const grown = Buffer.alloc(Math.max(this.buffer.length * 2, this.length + n));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  u8(v: number): void {
    const at = this.reserve(1);
    this.buffer.writeUInt8(v, at);
  }
  i8(v: number): void {
    const at = this.reserve(1);
    this.buffer.writeInt8(v, at);
  }
  u16(v: number): void {
    const at = this.reserve(2);
    this.buffer.writeUInt16LE(v, at);
  }
  i16(v: number): void {
    const at = this.reserve(2);
    this.buffer.writeInt16LE(v, at);
  }
  u32(v: number): void {
    const at = this.reserve(4);
    this.buffer.writeUInt32LE(v, at);
  }
  i32(v: number): void {
    const at = this.reserve(4);
    this.buffer.writeInt32LE(v, at);
  }
  f32(v: number): void {
    const at = this.reserve(4);
    this.buffer.writeFloatLE(v, at);
  }
  f64(v: number): void {
    const at = this.reserve(8);
    this.buffer.writeDoubleLE(v, at);
  }
  u64(v: number | bigint): void {
    const at = this.reserve(8);
    this.buffer.writeBigUInt64LE(BigInt(v), at);
  }
  i64(v: number | bigint): void {
    const at = this.reserve(8);
    this.buffer.writeBigInt64LE(BigInt(v), at);
  }
  string(s: string): void {
    const bytes = Buffer.from(s, "utf8");
    this.u64(bytes.length);
    const at = this.reserve(bytes.length);
    bytes.copy(this.buffer, at);
  }
  toBuffer(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

function writeScalar(out: ByteBuilder, type: GgufScalarTypeName, value: number | bigint | boolean | string): void {
  switch (type) {
    case "u8":
      return out.u8(Number(value));
    case "i8":
      return out.i8(Number(value));
    case "u16":
      return out.u16(Number(value));
    case "i16":
      return out.i16(Number(value));
    case "u32":
      return out.u32(Number(value));
    case "i32":
      return out.i32(Number(value));
    case "f32":
      return out.f32(Number(value));
    case "f64":
      return out.f64(Number(value));
    case "u64":
      return out.u64(value as number | bigint);
    case "i64":
      return out.i64(value as number | bigint);
    case "bool":
      return out.u8(value ? 1 : 0);
    case "string":
      return out.string(String(value));
  }
}

/** Serialize one value without its type id (the caller wrote it). */
function writeValueBody(out: ByteBuilder, value: GgufWriteValue): void {
  if (value.type !== "array") {
    writeScalar(out, value.type, value.value);
    return;
  }
  out.u32(TYPE_IDS[value.elementType]);
  out.u64(value.value.length);
  if (value.elementType === "array") {
    for (const inner of value.value as readonly GgufWriteValue[]) {
      if (inner.type !== "array") throw new InvalidArgumentError("Every element of a GGUF array of arrays must itself be an array value.");
      writeValueBody(out, inner);
    }
    return;
  }
  const elementType = value.elementType;
  const items = value.value as ArrayLike<number | bigint | string | boolean>;
  for (let i = 0; i < items.length; i++) writeScalar(out, elementType, items[i]);
}

function resolveType(type: string | GgmlTypeInfo, tensorName: string): GgmlTypeInfo {
  if (typeof type !== "string") return type;
  const found = ggmlTypeByName(type);
  if (found === undefined) throw new InvalidArgumentError(`Tensor "${tensorName}" has unknown ggml type "${type}".`, { received: type });
  return found;
}

/** Write all chunks of a data source at `position`; return the bytes written. */
export async function writeTensorData(handle: FileHandle, source: TensorDataSource, position: number, path: string): Promise<number> {
  let written = 0;
  for await (const chunk of source()) {
    let done = 0;
    while (done < chunk.byteLength) {
      const { bytesWritten } = await handle.write(chunk, done, chunk.byteLength - done, position + written + done);
      if (bytesWritten === 0) throw new IoError(`Writing ${path} made no progress at offset ${position + written + done}.`, { path });
      done += bytesWritten;
    }
    written += chunk.byteLength;
  }
  return written;
}

/**
 * Write a GGUF version 3 file. Tensor data comes from each tensor's producer and is written in
 * order, each tensor starting at a multiple of the alignment.
 *
 * Throws InvalidArgumentError for unknown types, duplicate or misshapen tensors, or a producer
 * that yields the wrong number of bytes; IoError when the file cannot be written.
 */
export async function writeGguf(path: string, options: GgufWriteOptions): Promise<GgufWriteResult> {
  const alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new InvalidArgumentError(`GGUF alignment must be a power of two, but it is ${alignment}.`, { received: alignment });
  }

  // Metadata, with general.alignment first when it differs from the default.
  const metadata = [...options.metadata];
  const keys = new Set<string>();
  for (const [key] of metadata) {
    if (keys.has(key)) throw new InvalidArgumentError(`GGUF metadata key "${key}" is given twice.`, { received: key });
    keys.add(key);
  }
  if (alignment !== GGUF_DEFAULT_ALIGNMENT && !keys.has("general.alignment")) {
    metadata.unshift(["general.alignment", { type: "u32", value: alignment }]);
  }

  // Tensor layout: sizes and aligned relative offsets.
  const names = new Set<string>();
  let relative = 0;
  const layout = options.tensors.map((tensor) => {
    if (names.has(tensor.name)) throw new InvalidArgumentError(`GGUF tensor "${tensor.name}" is given twice.`, { received: tensor.name });
    names.add(tensor.name);
    const type = resolveType(tensor.type, tensor.name);
    if (tensor.ne.length < 1 || tensor.ne.length > 4 || !tensor.ne.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new InvalidArgumentError(`GGUF tensor "${tensor.name}" has invalid dimensions [${tensor.ne.join(", ")}].`, { received: tensor.ne });
    }
    if (tensor.ne[0] % type.blockSize !== 0) {
      throw new InvalidArgumentError(`GGUF tensor "${tensor.name}" rows of ${tensor.ne[0]} are not a multiple of the ${type.name} block size ${type.blockSize}.`, {
        received: tensor.ne,
      });
    }
    const elements = tensor.ne.reduce((a, b) => a * b, 1);
    const nbytes = (elements / type.blockSize) * type.typeSize;
    const entry = { tensor, type, nbytes, relativeOffset: relative };
    relative = Math.ceil((relative + nbytes) / alignment) * alignment;
    return entry;
  });

  // Header: preamble, metadata, tensor infos, padding.
  const header = new ByteBuilder();
  header.u32(GGUF_MAGIC);
  header.u32(3);
  header.u64(layout.length);
  header.u64(metadata.length);
  for (const [key, value] of metadata) {
    header.string(key);
    header.u32(TYPE_IDS[value.type]);
    writeValueBody(header, value);
  }
  for (const { tensor, type, relativeOffset } of layout) {
    header.string(tensor.name);
    header.u32(tensor.ne.length);
    for (const d of tensor.ne) header.u64(d);
    header.u32(type.id);
    header.u64(relativeOffset);
  }
  const dataOffset = Math.ceil(header.length / alignment) * alignment;
  const lastEnd = layout.length === 0 ? 0 : layout[layout.length - 1].relativeOffset + layout[layout.length - 1].nbytes;
  const fileSize = layout.length === 0 ? header.length : dataOffset + lastEnd;

  let handle: FileHandle;
  try {
    handle = await open(path, "w");
  } catch (error) {
    throw new IoError(`Could not create ${path}: ${(error as Error).message}.`, { path, cause: error });
  }
  try {
    await handle.write(header.toBuffer(), 0, header.length, 0);
    for (const { tensor, nbytes, relativeOffset } of layout) {
      if (tensor.data === undefined) continue;
      const written = await writeTensorData(handle, tensor.data, dataOffset + relativeOffset, path);
      if (written !== nbytes) {
        throw new InvalidArgumentError(`GGUF tensor "${tensor.name}" data source produced ${written} bytes; its type and shape need ${nbytes}.`, {
          expected: nbytes,
          received: written,
        });
      }
    }
    // Sets the size and leaves unwritten tensors and padding as holes of zeros.
    await handle.truncate(fileSize);
  } finally {
    await handle.close();
  }
  return {
    dataOffset,
    fileSize,
    tensors: layout.map(({ tensor, nbytes, relativeOffset }) => ({ name: tensor.name, offset: dataOffset + relativeOffset, nbytes })),
  };
}
