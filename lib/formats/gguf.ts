// GGUF reader (format versions 2 and 3): parses the header, the metadata key/value pairs and the
// tensor infos with bounded reads at file offsets, and never reads tensor data. Every count and
// length is checked against hard limits and against the bytes left in the file before anything
// is allocated, so a corrupt header ends in ModelFormatError, never in a huge allocation.
//
// Value mapping (GGUF type -> JavaScript):
//   u8, i8, u16, i16, u32, i32, f32, f64 -> number;  u64, i64 -> bigint;  bool -> boolean;
//   string -> string (UTF-8, invalid bytes become U+FFFD);
//   array of string -> string[];  array of bool -> boolean[];  array of array -> GgufArray[];
//   numeric arrays -> the matching typed array (Uint8Array, Int8Array, Uint16Array, Int16Array,
//   Uint32Array, Int32Array, Float32Array, Float64Array, BigUint64Array, BigInt64Array).
// NOTE: numeric arrays are copied as little-endian bytes, which is right on every platform Node
// supports today (x86-64 and arm64 are little-endian). Big-endian GGUF files are rejected.

import { open, type FileHandle } from "node:fs/promises";

import { GebError, IoError, ModelFormatError, UnsupportedError } from "../errors.js";
import { ggmlTypeById, type GgmlTypeInfo } from "./ggml-types.js";

/** Value type ids of GGUF metadata (`gguf_type`). */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** A GGUF metadata value type id. */
export type GgufValueTypeId = (typeof GgufValueType)[keyof typeof GgufValueType];

/** A metadata array as this reader returns it (see the file header for the mapping). */
export type GgufArray =
  | string[]
  | boolean[]
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | GgufArray[];

/** A metadata value as this reader returns it. */
export type GgufValue = number | bigint | boolean | string | GgufArray;

/** One tensor info record of a GGUF file. */
export interface GgufTensorInfo {
  /** Name as stored, such as `blk.0.attn_q.weight`. */
  name: string;
  /** Storage type: GGUF id, ggml name, block size and bytes per block. */
  type: GgmlTypeInfo;
  /** Dimensions in GGUF order: `ne[0]` is the row length (the fastest-moving index). */
  ne: number[];
  /** Element count (product of `ne`). */
  elements: number;
  /** Byte offset of the data relative to the start of the data section, as stored. */
  relativeOffset: number;
  /** Absolute byte offset of the data in the file. */
  offset: number;
  /** Byte length of the data. */
  nbytes: number;
}

/** A parsed GGUF header. */
export interface GgufFile {
  path: string;
  /** Format version (2 or 3). */
  version: number;
  /** Metadata in file order. */
  metadata: Map<string, GgufValue>;
  /**
   * Stored type of each metadata value: `"u32"`, `"string"`, `"array<f32>"`,
   * `"array<array<u8>>"` and so on. Readers of `metadata` rarely need it; `inspect` and the
   * writer's round-trip tests do.
   */
  metadataTypes: Map<string, string>;
  /** Tensor infos in file order. */
  tensors: GgufTensorInfo[];
  /** Alignment of tensor data in bytes (`general.alignment`, default 32). */
  alignment: number;
  /** Absolute offset of the data section. */
  dataOffset: number;
  /** Size of the file in bytes. */
  fileSize: number;
}

/** The 4-byte magic "GGUF" read as a little-endian u32. */
export const GGUF_MAGIC = 0x46554747;

/** Alignment used when a file has no `general.alignment` key. */
export const GGUF_DEFAULT_ALIGNMENT = 32;

/**
 * Hard limits on header contents. They are far above what real models use (a 256k-token vocabulary,
 * a few thousand tensors, chat templates of some kilobytes) and still keep a corrupt header from
 * asking for gigabytes.
 */
export const GGUF_LIMITS = {
  /** Metadata key/value pairs. */
  maxMetadataCount: 1_000_000,
  /** Tensor infos. */
  maxTensorCount: 1_000_000,
  /** Bytes of one metadata key or tensor name. */
  maxKeyBytes: 65_536,
  /** Bytes of one string value. */
  maxStringBytes: 16 * 1024 * 1024,
  /** Elements of one metadata array (bounds a numeric array at 128 MiB). */
  maxArrayLength: 16 * 1024 * 1024,
  /** Nesting depth of arrays of arrays. */
  maxArrayDepth: 8,
  /** Dimensions of one tensor (ggml's GGML_MAX_DIMS). */
  maxDims: 4,
} as const;

/** Options for `readGguf`. */
export interface ReadGgufOptions {
  /** Bytes read per refill of the header buffer. Default 1 MiB. Tests use small values. */
  chunkBytes?: number;
}

const DEFAULT_CHUNK_BYTES = 1024 * 1024;

const SCALAR_NAMES: Record<number, string> = {
  0: "u8",
  1: "i8",
  2: "u16",
  3: "i16",
  4: "u32",
  5: "i32",
  6: "f32",
  7: "bool",
  8: "string",
  9: "array",
  10: "u64",
  11: "i64",
  12: "f64",
};

/** Byte size of each fixed-size value type (strings and arrays are variable). */
const FIXED_SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** Return the short name of a GGUF value type id (`"u32"`, `"string"`...), or `"type N"` when unknown. */
export function ggufValueTypeName(type: number): string {
  return SCALAR_NAMES[type] ?? `type ${type}`;
}

const utf8 = new TextDecoder("utf-8", { fatal: false });

/**
 * Buffered cursor over the header region of a file. It refills its window with positioned
 * reads, so the header is read once from the start and tensor data is never touched.
 */
class HeaderCursor {
  private buffer: Buffer;
  private bufferStart = 0;
  private bufferLength = 0;
  /** Absolute file position of the next byte to consume. */
  position = 0;

  constructor(
    private readonly handle: FileHandle,
    readonly path: string,
    readonly fileSize: number,
    private readonly chunkBytes: number,
  ) {
    this.buffer = Buffer.alloc(Math.min(chunkBytes, Math.max(fileSize, 1)));
  }

  /** Bytes between the cursor and the end of the file. */
  get remaining(): number {
    return this.fileSize - this.position;
  }

  /** Check whether `n` bytes after the cursor are already buffered. */
  private buffered(n: number): boolean {
    return this.position >= this.bufferStart && this.position + n <= this.bufferStart + this.bufferLength;
  }

  /** Make `n` bytes after the cursor available, or throw a truncation error naming `field`. */
  async need(n: number, field: string): Promise<void> {
    if (this.buffered(n)) return;
    if (n > this.remaining) {
      throw new ModelFormatError(
        `GGUF file is truncated: reading ${field} needs ${n} bytes at offset ${this.position}, but the file ends at ${this.fileSize}. ` +
          "Download or convert the model again.",
        { path: this.path, expected: this.position + n, received: this.fileSize },
      );
    }
    const want = Math.min(Math.max(n, this.chunkBytes), this.remaining);
    if (want > this.buffer.length) this.buffer = Buffer.alloc(want);
    let filled = 0;
    while (filled < want) {
      const { bytesRead } = await this.handle.read(this.buffer, filled, want - filled, this.position + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    this.bufferStart = this.position;
    this.bufferLength = filled;
    if (filled < n) {
      throw new ModelFormatError(`GGUF file ended early while reading ${field} at offset ${this.position}; it may be changing on disk.`, {
        path: this.path,
      });
    }
  }

  /** Consume `n` buffered bytes and return the index of the first one in `this.buffer`. */
  private take(n: number): number {
    const at = this.position - this.bufferStart;
    this.position += n;
    return at;
  }

  async u8(field: string): Promise<number> {
    await this.need(1, field);
    return this.buffer.readUInt8(this.take(1));
  }

  async u32(field: string): Promise<number> {
    await this.need(4, field);
    return this.buffer.readUInt32LE(this.take(4));
  }

  /** Read a u64 that must fit a JavaScript number exactly. */
  async u64(field: string): Promise<number> {
    await this.need(8, field);
    const value = this.buffer.readBigUInt64LE(this.take(8));
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new ModelFormatError(`GGUF ${field} is ${value}, which is not a plausible size or count; the file is corrupt.`, {
        path: this.path,
        received: value,
      });
    }
    return Number(value);
  }

  /** Read `n` raw bytes (copied, so the caller may keep them). */
  async bytes(n: number, field: string): Promise<Uint8Array> {
    await this.need(n, field);
    const at = this.take(n);
    return Uint8Array.prototype.slice.call(this.buffer, at, at + n);
  }

  /**
   * Read a length-prefixed string without awaiting when it is already buffered and valid;
   * return `undefined` (consuming nothing) otherwise. Vocabularies hold 10^5 strings, so
   * skipping the promise machinery matters there.
   */
  stringIfBuffered(maxBytes: number): string | undefined {
    if (!this.buffered(8)) return undefined;
    const at = this.position - this.bufferStart;
    const length = Number(this.buffer.readBigUInt64LE(at));
    if (length > maxBytes || !this.buffered(8 + length)) return undefined;
    this.position += 8 + length;
    return utf8.decode(this.buffer.subarray(at + 8, at + 8 + length));
  }

  /** Read a length-prefixed UTF-8 string of at most `maxBytes` bytes. */
  async string(maxBytes: number, field: string): Promise<string> {
    const length = await this.u64(`${field} length`);
    if (length > maxBytes || length > this.remaining) {
      throw new ModelFormatError(
        `GGUF ${field} claims a length of ${length} bytes at offset ${this.position - 8}, over the limit of ` +
          `${Math.min(maxBytes, this.remaining)} bytes; the file is corrupt.`,
        { path: this.path, expected: `<= ${Math.min(maxBytes, this.remaining)}`, received: length },
      );
    }
    await this.need(length, field);
    const at = this.take(length);
    return utf8.decode(this.buffer.subarray(at, at + length));
  }

  /** Read one fixed-size scalar of a numeric or bool type. */
  async scalar(type: number, field: string): Promise<number | bigint | boolean> {
    const size = FIXED_SIZES[type];
    await this.need(size, field);
    const at = this.take(size);
    const b = this.buffer;
    switch (type) {
      case GgufValueType.UINT8:
        return b.readUInt8(at);
      case GgufValueType.INT8:
        return b.readInt8(at);
      case GgufValueType.UINT16:
        return b.readUInt16LE(at);
      case GgufValueType.INT16:
        return b.readInt16LE(at);
      case GgufValueType.UINT32:
        return b.readUInt32LE(at);
      case GgufValueType.INT32:
        return b.readInt32LE(at);
      case GgufValueType.FLOAT32:
        return b.readFloatLE(at);
      case GgufValueType.FLOAT64:
        return b.readDoubleLE(at);
      case GgufValueType.UINT64:
        return b.readBigUInt64LE(at);
      case GgufValueType.INT64:
        return b.readBigInt64LE(at);
      case GgufValueType.BOOL: {
        const byte = b.readUInt8(at);
        if (byte > 1) {
          throw new ModelFormatError(`GGUF ${field} is a bool stored as ${byte}; only 0 and 1 are valid.`, { path: this.path, received: byte });
        }
        return byte === 1;
      }
      default:
        throw new ModelFormatError(`GGUF ${field} has unknown value type ${type}.`, { path: this.path, received: type });
    }
  }
}

/** Build a typed array of `count` elements of a numeric value type from little-endian bytes. */
function typedArrayFromBytes(type: number, bytes: Uint8Array, count: number): GgufArray {
  // Copy into a fresh, aligned buffer so every view type can be created on it.
  const copy = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(copy).set(bytes);
  switch (type) {
    case GgufValueType.UINT8:
      return new Uint8Array(copy, 0, count);
    case GgufValueType.INT8:
      return new Int8Array(copy, 0, count);
    case GgufValueType.UINT16:
      return new Uint16Array(copy, 0, count);
    case GgufValueType.INT16:
      return new Int16Array(copy, 0, count);
    case GgufValueType.UINT32:
      return new Uint32Array(copy, 0, count);
    case GgufValueType.INT32:
      return new Int32Array(copy, 0, count);
    case GgufValueType.FLOAT32:
      return new Float32Array(copy, 0, count);
    case GgufValueType.FLOAT64:
      return new Float64Array(copy, 0, count);
    case GgufValueType.UINT64:
      return new BigUint64Array(copy, 0, count);
    default:
      return new BigInt64Array(copy, 0, count);
  }
}

/** Read one metadata value of type `type`; `typeName` collects the stored type for `metadataTypes`. */
async function readValue(cursor: HeaderCursor, type: number, field: string, depth: number): Promise<{ value: GgufValue; typeName: string }> {
  if (type === GgufValueType.STRING) {
    return { value: await cursor.string(GGUF_LIMITS.maxStringBytes, field), typeName: "string" };
  }
  if (type !== GgufValueType.ARRAY) {
    if (FIXED_SIZES[type] === undefined) {
      throw new ModelFormatError(`GGUF ${field} has unknown value type ${type} (valid types are 0 to 12); the file is corrupt.`, {
        path: cursor.path,
        received: type,
      });
    }
    return { value: await cursor.scalar(type, field), typeName: ggufValueTypeName(type) };
  }

  // Arrays: element type, u64 count, then the elements.
  if (depth >= GGUF_LIMITS.maxArrayDepth) {
    throw new ModelFormatError(`GGUF ${field} nests arrays deeper than ${GGUF_LIMITS.maxArrayDepth} levels; the file is corrupt.`, {
      path: cursor.path,
    });
  }
  const elementType = await cursor.u32(`${field} element type`);
  const count = await cursor.u64(`${field} element count`);
  // The smallest possible encoding of one element bounds the count by the bytes left in the file.
  let minElementBytes: number | undefined = FIXED_SIZES[elementType];
  if (elementType === GgufValueType.STRING) minElementBytes = 8;
  if (elementType === GgufValueType.ARRAY) minElementBytes = 12;
  if (minElementBytes === undefined) {
    throw new ModelFormatError(`GGUF ${field} is an array of unknown value type ${elementType}; the file is corrupt.`, {
      path: cursor.path,
      received: elementType,
    });
  }
  if (count > GGUF_LIMITS.maxArrayLength || count * minElementBytes > cursor.remaining) {
    throw new ModelFormatError(
      `GGUF ${field} claims ${count} elements, more than the limit of ${GGUF_LIMITS.maxArrayLength} or than the ${cursor.remaining} bytes ` +
        "left in the file can hold; the file is corrupt.",
      { path: cursor.path, received: count },
    );
  }

  if (elementType === GgufValueType.STRING) {
    const strings: string[] = new Array(count);
    for (let i = 0; i < count; i++) {
      strings[i] = cursor.stringIfBuffered(GGUF_LIMITS.maxStringBytes) ?? (await cursor.string(GGUF_LIMITS.maxStringBytes, `${field}[${i}]`));
    }
    return { value: strings, typeName: "array<string>" };
  }
  if (elementType === GgufValueType.BOOL) {
    const bools: boolean[] = new Array(count);
    for (let i = 0; i < count; i++) bools[i] = (await cursor.scalar(GgufValueType.BOOL, `${field}[${i}]`)) as boolean;
    return { value: bools, typeName: "array<bool>" };
  }
  if (elementType === GgufValueType.ARRAY) {
    const items: GgufArray[] = [];
    let innerName = "array<?>";
    for (let i = 0; i < count; i++) {
      const inner = await readValue(cursor, GgufValueType.ARRAY, `${field}[${i}]`, depth + 1);
      items.push(inner.value as GgufArray);
      innerName = inner.typeName;
    }
    return { value: items, typeName: `array<${innerName}>` };
  }
  const bytes = await cursor.bytes(count * minElementBytes, field);
  return { value: typedArrayFromBytes(elementType, bytes, count), typeName: `array<${ggufValueTypeName(elementType)}>` };
}

/** Check the magic and version; return the version. */
async function readPreamble(cursor: HeaderCursor): Promise<number> {
  if (cursor.fileSize < 8) {
    throw new ModelFormatError(`Not a GGUF file: it is ${cursor.fileSize} bytes long, shorter than the 8-byte GGUF preamble.`, {
      path: cursor.path,
    });
  }
  const magic = await cursor.u32("magic");
  if (magic !== GGUF_MAGIC) {
    throw new ModelFormatError(
      `Not a GGUF file: it starts with bytes 0x${magic.toString(16).padStart(8, "0")} (little-endian), not "GGUF". ` +
        "Pass a .gguf model file or a GEB model directory.",
      { path: cursor.path, expected: "GGUF", received: magic },
    );
  }
  const version = await cursor.u32("version");
  if (version === 2 || version === 3) return version;
  if (version === 1) {
    throw new UnsupportedError("GGUF version 1 is not supported (it used 32-bit counts); convert the model again with a current converter.", {
      path: cursor.path,
      expected: "2 or 3",
      received: version,
    });
  }
  const hint = (version & 0xffff) === 0 ? " The file looks big-endian, which geb-cpu does not read." : "";
  throw new UnsupportedError(`GGUF version ${version} is not supported; geb-cpu reads versions 2 and 3.${hint}`, {
    path: cursor.path,
    expected: "2 or 3",
    received: version,
  });
}

/** Read the `general.alignment` value, checking that it is a power-of-two u32. */
function alignmentOf(metadata: Map<string, GgufValue>, metadataTypes: Map<string, string>, path: string): number {
  if (!metadata.has("general.alignment")) return GGUF_DEFAULT_ALIGNMENT;
  const value = metadata.get("general.alignment");
  const ok = metadataTypes.get("general.alignment") === "u32" && typeof value === "number" && value > 0 && (value & (value - 1)) === 0;
  if (!ok) {
    throw new ModelFormatError(`GGUF key general.alignment must be a power-of-two u32, but it is ${String(value)}.`, {
      path,
      received: value,
    });
  }
  return value as number;
}

/** Read the tensor infos; offsets are still relative and unchecked. */
async function readTensorInfos(cursor: HeaderCursor, count: number): Promise<Omit<GgufTensorInfo, "offset">[]> {
  const infos: Omit<GgufTensorInfo, "offset">[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) {
    const name = await cursor.string(GGUF_LIMITS.maxKeyBytes, `tensor ${i} name`);
    if (seen.has(name)) {
      throw new ModelFormatError(`GGUF file lists tensor "${name}" twice; the file is corrupt.`, { path: cursor.path, received: name });
    }
    seen.add(name);

    const nDims = await cursor.u32(`tensor "${name}" dimension count`);
    if (nDims < 1 || nDims > GGUF_LIMITS.maxDims) {
      throw new ModelFormatError(`GGUF tensor "${name}" has ${nDims} dimensions; valid counts are 1 to ${GGUF_LIMITS.maxDims}.`, {
        path: cursor.path,
        received: nDims,
      });
    }
    const ne: number[] = [];
    let elements = 1;
    for (let d = 0; d < nDims; d++) {
      const size = await cursor.u64(`tensor "${name}" dimension ${d}`);
      ne.push(size);
      elements *= size;
    }
    if (!Number.isSafeInteger(elements)) {
      throw new ModelFormatError(`GGUF tensor "${name}" has dimensions [${ne.join(", ")}], too many elements to be real.`, {
        path: cursor.path,
        received: ne,
      });
    }

    const typeId = await cursor.u32(`tensor "${name}" type`);
    const type = ggmlTypeById(typeId);
    if (type === undefined) {
      throw new ModelFormatError(
        `GGUF tensor "${name}" has ggml type id ${typeId}, which geb-cpu does not know; it cannot tell the tensor's size. ` +
          "Convert the model to F32, F16, BF16, Q8_0 or Q4_0.",
        { path: cursor.path, received: typeId },
      );
    }
    if (ne[0] % type.blockSize !== 0) {
      throw new ModelFormatError(
        `GGUF tensor "${name}" has rows of ${ne[0]} elements, not a multiple of the ${type.name} block size ${type.blockSize}.`,
        { path: cursor.path, received: ne },
      );
    }
    const nbytes = (elements / type.blockSize) * type.typeSize;
    const relativeOffset = await cursor.u64(`tensor "${name}" data offset`);
    infos.push({ name, type, ne, elements, relativeOffset, nbytes });
  }
  return infos;
}

/** Check tensor offsets against alignment, file size and each other; fill in absolute offsets. */
function placeTensors(infos: Omit<GgufTensorInfo, "offset">[], dataOffset: number, alignment: number, fileSize: number, path: string): GgufTensorInfo[] {
  const tensors = infos.map((info) => ({ ...info, offset: dataOffset + info.relativeOffset }));
  for (const t of tensors) {
    if (t.relativeOffset % alignment !== 0) {
      throw new ModelFormatError(`GGUF tensor "${t.name}" starts at data offset ${t.relativeOffset}, not a multiple of the alignment ${alignment}.`, {
        path,
        received: t.relativeOffset,
      });
    }
    if (t.offset + t.nbytes > fileSize) {
      throw new ModelFormatError(
        `GGUF file is truncated: tensor "${t.name}" needs bytes ${t.offset}..${t.offset + t.nbytes}, but the file is ${fileSize} bytes long. ` +
          "Download or convert the model again.",
        { path, expected: t.offset + t.nbytes, received: fileSize },
      );
    }
  }
  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < byOffset.length; i++) {
    const previous = byOffset[i - 1];
    const current = byOffset[i];
    if (previous.nbytes > 0 && current.nbytes > 0 && current.offset < previous.offset + previous.nbytes) {
      throw new ModelFormatError(`GGUF tensors "${previous.name}" and "${current.name}" overlap in the file; the file is corrupt.`, { path });
    }
  }
  return tensors;
}

/**
 * Parse the header of a GGUF file (versions 2 and 3): metadata and tensor infos, with every
 * offset checked against the file size. Reads only the header region.
 *
 * Throws ModelFormatError (`ERR_GEB_MODEL_FORMAT`) for a file that is not GGUF, truncated or
 * corrupt; UnsupportedError (`ERR_GEB_UNSUPPORTED`) for GGUF version 1 or above 3; IoError
 * (`ERR_GEB_IO`) when the file cannot be opened or read.
 *
 * @example
 * const gguf = await readGguf("model.gguf");
 * console.log(gguf.metadata.get("general.architecture"), gguf.tensors.length);
 */
export async function readGguf(path: string, options: ReadGgufOptions = {}): Promise<GgufFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    throw ioError(error, path, "open");
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) {
      throw new ModelFormatError(`Not a GGUF file: ${path} is not a regular file.`, { path });
    }
    const cursor = new HeaderCursor(handle, path, stat.size, options.chunkBytes ?? DEFAULT_CHUNK_BYTES);
    const version = await readPreamble(cursor);

    // Counts: each tensor info takes at least 32 bytes and each key/value pair at least 13,
    // so the bytes left in the file bound both before any allocation.
    const tensorCount = await cursor.u64("tensor count");
    const metadataCount = await cursor.u64("metadata count");
    if (tensorCount > GGUF_LIMITS.maxTensorCount || tensorCount * 32 > cursor.remaining) {
      throw new ModelFormatError(`GGUF header claims ${tensorCount} tensors, more than the file can hold; the file is corrupt.`, {
        path,
        received: tensorCount,
      });
    }
    if (metadataCount > GGUF_LIMITS.maxMetadataCount || metadataCount * 13 > cursor.remaining) {
      throw new ModelFormatError(`GGUF header claims ${metadataCount} metadata entries, more than the file can hold; the file is corrupt.`, {
        path,
        received: metadataCount,
      });
    }

    // Metadata key/value pairs.
    const metadata = new Map<string, GgufValue>();
    const metadataTypes = new Map<string, string>();
    for (let i = 0; i < metadataCount; i++) {
      const key = await cursor.string(GGUF_LIMITS.maxKeyBytes, `metadata key ${i}`);
      if (metadata.has(key)) {
        throw new ModelFormatError(`GGUF metadata key "${key}" appears twice; the file is corrupt.`, { path, received: key });
      }
      const type = await cursor.u32(`metadata "${key}" type`);
      const { value, typeName } = await readValue(cursor, type, `metadata "${key}"`, 0);
      metadata.set(key, value);
      metadataTypes.set(key, typeName);
    }
    const alignment = alignmentOf(metadata, metadataTypes, path);

    // Tensor infos, then the data section starts at the next multiple of the alignment.
    const infos = await readTensorInfos(cursor, tensorCount);
    const dataOffset = Math.ceil(cursor.position / alignment) * alignment;
    const tensors = placeTensors(infos, dataOffset, alignment, stat.size, path);

    return { path, version, metadata, metadataTypes, tensors, alignment, dataOffset, fileSize: stat.size };
  } catch (error) {
    if (error instanceof GebError) throw error;
    throw ioError(error, path, "read");
  } finally {
    await handle.close();
  }
}

/** Wrap an operating-system error in IoError. */
function ioError(error: unknown, path: string, action: string): IoError {
  const code = (error as NodeJS.ErrnoException)?.code;
  const reason = code === "ENOENT" ? "the file does not exist" : code === "EACCES" ? "permission denied" : String((error as Error)?.message ?? error);
  return new IoError(`Could not ${action} ${path}: ${reason}.`, { path, cause: error });
}

// ---------------------------------------------------------------------------------------------
// Typed metadata access. Each getter throws ModelFormatError naming the key when the key is
// missing (for the `get*` forms) or contains a value of the wrong type; `getOptional*` return
// `undefined` for a missing key.

function describe(value: GgufValue | undefined): string {
  if (value === undefined) return "missing";
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + "..." : value)}`;
  if (typeof value === "object") return `an array of ${(value as { length: number }).length} elements`;
  return `${typeof value} ${String(value)}`;
}

function wrongType(file: GgufFile, key: string, expected: string): ModelFormatError {
  const value = file.metadata.get(key);
  const stored = file.metadataTypes.get(key);
  return new ModelFormatError(
    `GGUF metadata key "${key}" must be ${expected}, but it is ${describe(value)}${stored ? ` (stored as ${stored})` : ""}.`,
    { path: file.path, expected, received: value === undefined ? undefined : stored },
  );
}

function required<T>(file: GgufFile, key: string, expected: string, read: (file: GgufFile, key: string) => T | undefined): T {
  const value = read(file, key);
  if (value === undefined) {
    throw new ModelFormatError(`GGUF metadata key "${key}" is missing; it must be ${expected}.`, { path: file.path, expected });
  }
  return value;
}

/** Return the string at `key`, or `undefined` when the key is absent. */
export function getOptionalString(file: GgufFile, key: string): string | undefined {
  const value = file.metadata.get(key);
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw wrongType(file, key, "a string");
  return value;
}

/** Return the string at `key`. */
export function getString(file: GgufFile, key: string): string {
  return required(file, key, "a string", getOptionalString);
}

/** Return the integer at `key` (any GGUF integer type, bigint values included when they are safe integers). */
export function getOptionalInteger(file: GgufFile, key: string): number | undefined {
  const value = file.metadata.get(key);
  if (value === undefined) return undefined;
  if (typeof value === "bigint") {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) throw wrongType(file, key, "an integer below 2^53");
    return Number(value);
  }
  const stored = file.metadataTypes.get(key);
  if (typeof value !== "number" || stored === "f32" || stored === "f64") throw wrongType(file, key, "an integer");
  return value;
}

/** Return the integer at `key`. */
export function getInteger(file: GgufFile, key: string): number {
  return required(file, key, "an integer", getOptionalInteger);
}

/** Return the integer at `key`, checked to lie in [0, 2^32). */
export function getOptionalU32(file: GgufFile, key: string): number | undefined {
  const value = getOptionalInteger(file, key);
  if (value === undefined) return undefined;
  if (value < 0 || value > 0xffffffff) throw wrongType(file, key, "an unsigned 32-bit integer");
  return value;
}

/** Return the integer at `key`, checked to lie in [0, 2^32). */
export function getU32(file: GgufFile, key: string): number {
  return required(file, key, "an unsigned 32-bit integer", getOptionalU32);
}

/** Return the number at `key` (any numeric type; 64-bit integers must be safe integers). */
export function getOptionalNumber(file: GgufFile, key: string): number | undefined {
  const value = file.metadata.get(key);
  if (value === undefined) return undefined;
  if (typeof value === "bigint") return getOptionalInteger(file, key);
  if (typeof value !== "number") throw wrongType(file, key, "a number");
  return value;
}

/** Return the number at `key`. */
export function getNumber(file: GgufFile, key: string): number {
  return required(file, key, "a number", getOptionalNumber);
}

/** Return the bool at `key`, or `undefined` when absent. */
export function getOptionalBool(file: GgufFile, key: string): boolean | undefined {
  const value = file.metadata.get(key);
  if (value === undefined) return undefined;
  if (typeof value !== "boolean") throw wrongType(file, key, "a bool");
  return value;
}

/** Return the bool at `key`. */
export function getBool(file: GgufFile, key: string): boolean {
  return required(file, key, "a bool", getOptionalBool);
}

/** Return the string array at `key`, or `undefined` when absent. */
export function getOptionalStringArray(file: GgufFile, key: string): string[] | undefined {
  const value = file.metadata.get(key);
  if (value === undefined) return undefined;
  if (file.metadataTypes.get(key) !== "array<string>") throw wrongType(file, key, "an array of strings");
  return value as string[];
}

/** Return the string array at `key`. */
export function getStringArray(file: GgufFile, key: string): string[] {
  return required(file, key, "an array of strings", getOptionalStringArray);
}

/**
 * Return the numeric array at `key` as plain numbers (any numeric element type; 64-bit
 * elements must be safe integers), or `undefined` when absent.
 */
export function getOptionalNumberArray(file: GgufFile, key: string): number[] | undefined {
  const value = file.metadata.get(key);
  if (value === undefined) return undefined;
  const stored = file.metadataTypes.get(key) ?? "";
  if (!ArrayBuffer.isView(value) || !stored.startsWith("array<")) throw wrongType(file, key, "an array of numbers");
  const out: number[] = new Array((value as { length: number }).length);
  let i = 0;
  for (const element of value as Iterable<number | bigint>) {
    if (typeof element === "bigint") {
      if (element > BigInt(Number.MAX_SAFE_INTEGER) || element < BigInt(Number.MIN_SAFE_INTEGER)) {
        throw wrongType(file, key, "an array of numbers below 2^53");
      }
      out[i++] = Number(element);
    } else {
      out[i++] = element;
    }
  }
  return out;
}

/** Return the numeric array at `key` as plain numbers. */
export function getNumberArray(file: GgufFile, key: string): number[] {
  return required(file, key, "an array of numbers", getOptionalNumberArray);
}

/** Return the numeric array at `key` as a Float32Array, or `undefined` when absent. */
export function getOptionalFloat32Array(file: GgufFile, key: string): Float32Array | undefined {
  const value = file.metadata.get(key);
  if (value === undefined) return undefined;
  if (value instanceof Float32Array) return value;
  const numbers = getOptionalNumberArray(file, key);
  return numbers === undefined ? undefined : Float32Array.from(numbers);
}

/** Return the numeric array at `key` as an Int32Array, or `undefined` when absent. */
export function getOptionalInt32Array(file: GgufFile, key: string): Int32Array | undefined {
  const value = file.metadata.get(key);
  if (value === undefined) return undefined;
  if (value instanceof Int32Array) return value;
  const numbers = getOptionalNumberArray(file, key);
  return numbers === undefined ? undefined : Int32Array.from(numbers);
}
