// safetensors reader for single files and for the `model.safetensors.index.json` map of sharded
// checkpoints. The header length, JSON header, dtypes, shapes and data_offsets are validated
// against the file size before a caller may trust an offset. Only headers are read, never tensor data.
//
// File layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data buffer.
// The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} with offsets
// relative to the first byte after the header, plus an optional "__metadata__" map of strings.

import { open, readFile, stat, type FileHandle } from "node:fs/promises";
import { dirname, isAbsolute, relative, resolve } from "node:path";

import { GebError, IoError, ModelFormatError, UnsupportedError } from "../errors.js";

/** Bytes per element of every safetensors dtype this reader can size. Model loading accepts only F32, F16 and BF16. */
export const SAFETENSORS_DTYPE_SIZES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

/** Largest header accepted. Real headers are well under 1 MB; this bounds a corrupt length. */
export const SAFETENSORS_MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** One tensor of a safetensors file. */
export interface SafetensorsTensorInfo {
  name: string;
  /** dtype string as stored (`"BF16"`, `"F32"`...). */
  dtype: string;
  /** Shape in PyTorch order (row-major, last index fastest). */
  shape: number[];
  /** `[begin, end)` relative to the data buffer, as stored. */
  dataOffsets: [number, number];
  /** Absolute byte offset of the first element in the file. */
  offset: number;
  /** Byte length (`end - begin`). */
  nbytes: number;
}

/** A parsed safetensors header. */
export interface SafetensorsFile {
  path: string;
  /** Length of the JSON header in bytes (the N of the 8-byte prefix). */
  headerLength: number;
  /** Absolute offset of the data buffer (`8 + headerLength`). */
  dataOffset: number;
  fileSize: number;
  /** The `__metadata__` map, empty when the file has none. */
  metadata: Record<string, string>;
  /** Tensors in header order. */
  tensors: SafetensorsTensorInfo[];
}

/** A parsed `model.safetensors.index.json`. */
export interface SafetensorsIndex {
  path: string;
  /** The index's `metadata` object (usually `{ total_size }`), empty when absent. */
  metadata: Record<string, unknown>;
  /** Tensor name -> absolute shard path. */
  weightMap: Map<string, string>;
  /** Absolute shard paths, in first-use order. */
  shards: string[];
}

/** The tensors of a whole checkpoint, single-file or sharded. */
export interface SafetensorsModel {
  /** Parsed files; `fileIndex` of each tensor points into this list. */
  files: SafetensorsFile[];
  /** Every tensor by name, with the index of the file that contains it. */
  tensors: Map<string, SafetensorsTensorInfo & { fileIndex: number }>;
  /** The index file for a sharded checkpoint. */
  index?: SafetensorsIndex;
}

function ioError(error: unknown, path: string, action: string): IoError {
  const code = (error as NodeJS.ErrnoException)?.code;
  const reason = code === "ENOENT" ? "the file does not exist" : code === "EACCES" ? "permission denied" : String((error as Error)?.message ?? error);
  return new IoError(`Could not ${action} ${path}: ${reason}.`, { path, cause: error });
}

/** Read exactly `length` bytes at `position`. */
async function readExactly(handle: FileHandle, length: number, position: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buffer.subarray(0, filled);
}

/**
 * Return the keys of the top-level JSON object in `text` in order, including repeated ones,
 * which `JSON.parse` would silently merge. Assumes `text` already parsed as JSON.
 */
export function topLevelJsonKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      // Scan to the closing quote, stepping over escapes.
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === "{" || c === "[") {
      depth++;
      expectKey = c === "{" && depth === 1;
    } else if (c === "}" || c === "]") {
      depth--;
    } else if (c === "," && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

function isNonNegativeSafeInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** Validate one header entry and turn it into a tensor info. */
function parseTensorEntry(name: string, entry: unknown, dataOffset: number, dataLength: number, path: string): SafetensorsTensorInfo {
  const bad = (what: string, received?: unknown): ModelFormatError =>
    new ModelFormatError(`safetensors tensor "${name}" has ${what}; the file is corrupt.`, { path, received });
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) throw bad("a header entry that is not an object", entry);
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;

  if (typeof dtype !== "string") throw bad("no dtype string", dtype);
  const elementSize = SAFETENSORS_DTYPE_SIZES[dtype];
  if (elementSize === undefined) {
    throw new UnsupportedError(`safetensors tensor "${name}" has dtype "${dtype}", which geb-cpu does not support. Use F32, F16 or BF16 weights.`, {
      path,
      expected: Object.keys(SAFETENSORS_DTYPE_SIZES).join(", "),
      received: dtype,
    });
  }

  if (!Array.isArray(shape) || shape.length > 8 || !shape.every(isNonNegativeSafeInteger)) throw bad("an invalid shape", shape);
  let elements = 1;
  for (const size of shape as number[]) elements *= size;
  if (!Number.isSafeInteger(elements)) throw bad("a shape with too many elements", shape);

  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeSafeInteger)) {
    throw bad("invalid data_offsets (expected [begin, end] byte offsets)", offsets);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) throw bad(`data_offsets [${begin}, ${end}] with begin after end`, offsets);
  if (end > dataLength) {
    throw new ModelFormatError(
      `safetensors file is truncated: tensor "${name}" ends at data offset ${end}, but the data buffer is ${dataLength} bytes long. ` +
        "Download or convert the model again.",
      { path, expected: dataOffset + end, received: dataOffset + dataLength },
    );
  }
  if (end - begin !== elements * elementSize) {
    throw bad(`${end - begin} data bytes, but shape [${(shape as number[]).join(", ")}] of ${dtype} needs ${elements * elementSize}`, offsets);
  }
  return { name, dtype, shape: [...(shape as number[])], dataOffsets: [begin, end], offset: dataOffset + begin, nbytes: end - begin };
}

/**
 * Parse the header of a safetensors file and check every tensor's offsets against the file.
 *
 * Throws ModelFormatError (`ERR_GEB_MODEL_FORMAT`) when the file is not safetensors or is corrupt:
 * an absurd header length, invalid JSON, offsets outside the file, sizes that do not
 * match the shape, overlapping tensors or repeated names; UnsupportedError (`ERR_GEB_UNSUPPORTED`)
 * for a dtype missing from SAFETENSORS_DTYPE_SIZES; IoError (`ERR_GEB_IO`) when the file
 * cannot be read.
 */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    throw ioError(error, path, "open");
  }
  try {
    const fileSize = (await handle.stat()).size;
    if (fileSize < 8) {
      throw new ModelFormatError(`Not a safetensors file: it is ${fileSize} bytes long, shorter than the 8-byte header length.`, { path });
    }

    // Header length: bounded by the hard limit and by the file size.
    const prefix = await readExactly(handle, 8, 0);
    const headerLengthBig = prefix.readBigUInt64LE(0);
    const maxHeader = Math.min(SAFETENSORS_MAX_HEADER_BYTES, fileSize - 8);
    if (headerLengthBig < 2n || headerLengthBig > BigInt(maxHeader)) {
      throw new ModelFormatError(
        `Not a valid safetensors file: the header length is ${headerLengthBig} bytes, outside the valid range 2..${maxHeader} ` +
          `(at most ${SAFETENSORS_MAX_HEADER_BYTES} and within the ${fileSize}-byte file).`,
        { path, expected: `2..${maxHeader}`, received: headerLengthBig },
      );
    }
    const headerLength = Number(headerLengthBig);
    const headerBytes = await readExactly(handle, headerLength, 8);
    if (headerBytes[0] !== 0x7b) {
      throw new ModelFormatError(`Not a valid safetensors file: the JSON header does not start with "{".`, { path, received: headerBytes[0] });
    }

    // JSON header.
    const text = new TextDecoder("utf-8", { fatal: false }).decode(headerBytes);
    let header: unknown;
    try {
      header = JSON.parse(text);
    } catch (error) {
      throw new ModelFormatError(`safetensors header is not valid JSON: ${(error as Error).message}.`, { path, cause: error });
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) {
      throw new ModelFormatError("safetensors header must be a JSON object.", { path });
    }
    const keys = topLevelJsonKeys(text);
    const seen = new Set<string>();
    for (const key of keys) {
      if (seen.has(key)) throw new ModelFormatError(`safetensors header lists "${key}" twice; the file is corrupt.`, { path, received: key });
      seen.add(key);
    }

    // Metadata and tensors.
    const dataOffset = 8 + headerLength;
    const dataLength = fileSize - dataOffset;
    let metadata: Record<string, string> = {};
    const tensors: SafetensorsTensorInfo[] = [];
    for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") {
        metadata = parseMetadata(entry, path);
        continue;
      }
      tensors.push(parseTensorEntry(name, entry, dataOffset, dataLength, path));
    }

    // Tensors must not share bytes (empty tensors take none).
    const byBegin = tensors.filter((t) => t.nbytes > 0).sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0]);
    for (let i = 1; i < byBegin.length; i++) {
      if (byBegin[i].dataOffsets[0] < byBegin[i - 1].dataOffsets[1]) {
        throw new ModelFormatError(`safetensors tensors "${byBegin[i - 1].name}" and "${byBegin[i].name}" overlap; the file is corrupt.`, {
          path,
        });
      }
    }
    return { path, headerLength, dataOffset, fileSize, metadata, tensors };
  } catch (error) {
    if (error instanceof GebError) throw error;
    throw ioError(error, path, "read");
  } finally {
    await handle.close();
  }
}

function parseMetadata(entry: unknown, path: string): Record<string, string> {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    throw new ModelFormatError('safetensors "__metadata__" must be an object of strings.', { path, received: entry });
  }
  for (const [key, value] of Object.entries(entry)) {
    if (typeof value !== "string") {
      throw new ModelFormatError(`safetensors "__metadata__" value "${key}" must be a string, but it is ${typeof value}.`, { path, received: value });
    }
  }
  return { ...(entry as Record<string, string>) };
}

/**
 * Parse a `model.safetensors.index.json` file. Shard names must resolve inside the index's
 * folder, so an index cannot point the loader at arbitrary files.
 */
export async function readSafetensorsIndex(path: string): Promise<SafetensorsIndex> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (error) {
    throw ioError(error, path, "open");
  }
  if (size > SAFETENSORS_MAX_HEADER_BYTES) {
    throw new ModelFormatError(`safetensors index is ${size} bytes, over the limit of ${SAFETENSORS_MAX_HEADER_BYTES}.`, { path, received: size });
  }
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw ioError(error, path, "read");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ModelFormatError(`safetensors index is not valid JSON: ${(error as Error).message}.`, { path, cause: error });
  }
  const weightMapValue = (parsed as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMapValue !== "object" || weightMapValue === null || Array.isArray(weightMapValue)) {
    throw new ModelFormatError('safetensors index has no "weight_map" object mapping tensor names to shard files.', { path });
  }

  const folder = dirname(resolve(path));
  const weightMap = new Map<string, string>();
  const shards: string[] = [];
  for (const [name, shard] of Object.entries(weightMapValue as Record<string, unknown>)) {
    if (typeof shard !== "string" || shard.length === 0) {
      throw new ModelFormatError(`safetensors index maps "${name}" to ${JSON.stringify(shard)}, not a file name.`, { path, received: shard });
    }
    const shardPath = resolve(folder, shard);
    const inside = relative(folder, shardPath);
    if (inside.startsWith("..") || isAbsolute(inside)) {
      throw new ModelFormatError(`safetensors index maps "${name}" to "${shard}", which is outside the model folder.`, { path, received: shard });
    }
    weightMap.set(name, shardPath);
    if (!shards.includes(shardPath)) shards.push(shardPath);
  }
  const metadataValue = (parsed as { metadata?: unknown }).metadata;
  const metadata = typeof metadataValue === "object" && metadataValue !== null ? (metadataValue as Record<string, unknown>) : {};
  return { path, metadata, weightMap, shards };
}

/**
 * Read every header of a checkpoint: one safetensors file, or the shards named by an index file
 * (`*.index.json`). Checks that each tensor appears once and sits in the shard the index names.
 */
export async function readSafetensorsModel(path: string): Promise<SafetensorsModel> {
  if (!path.endsWith(".json")) {
    const file = await readSafetensors(path);
    const tensors = new Map<string, SafetensorsTensorInfo & { fileIndex: number }>();
    for (const t of file.tensors) tensors.set(t.name, { ...t, fileIndex: 0 });
    return { files: [file], tensors };
  }

  const index = await readSafetensorsIndex(path);
  const files: SafetensorsFile[] = [];
  const tensors = new Map<string, SafetensorsTensorInfo & { fileIndex: number }>();
  for (const shard of index.shards) {
    const file = await readSafetensors(shard);
    const fileIndex = files.push(file) - 1;
    for (const t of file.tensors) {
      const previous = tensors.get(t.name);
      if (previous !== undefined) {
        throw new ModelFormatError(`Tensor "${t.name}" appears in two shards: ${files[previous.fileIndex].path} and ${shard}.`, {
          path: index.path,
          received: t.name,
        });
      }
      tensors.set(t.name, { ...t, fileIndex });
    }
  }
  for (const [name, shard] of index.weightMap) {
    const found = tensors.get(name);
    if (found === undefined || files[found.fileIndex].path !== shard) {
      throw new ModelFormatError(`safetensors index places tensor "${name}" in ${shard}, but that shard does not contain it.`, {
        path: index.path,
        received: name,
      });
    }
  }
  return { files, tensors, index };
}
