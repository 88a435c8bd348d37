// safetensors writer: lays tensors out back to back in the given order, writes the JSON header
// (padded with spaces to a multiple of 8 bytes) and streams each tensor's bytes from a producer.
// A tensor without a producer stays a hole of zeros, so full-size test files cost no disk.

import { open, type FileHandle } from "node:fs/promises";

import { InvalidArgumentError, IoError } from "../errors.js";
import { writeTensorData, type TensorDataSource } from "./gguf-writer.js";
import { SAFETENSORS_DTYPE_SIZES } from "./safetensors.js";

/** One tensor to write. */
export interface SafetensorsWriteTensor {
  name: string;
  /** dtype string, such as `"BF16"`. */
  dtype: string;
  /** Shape in PyTorch order. */
  shape: number[];
  /** Bytes of the tensor. When absent, the tensor is a hole of zeros (sparse file). */
  data?: TensorDataSource;
}

/** Layout of a written safetensors file. */
export interface SafetensorsWriteResult {
  headerLength: number;
  fileSize: number;
  tensors: { name: string; offset: number; nbytes: number }[];
}

/**
 * Write a safetensors file with an optional `__metadata__` map of strings.
 *
 * Throws InvalidArgumentError for unknown dtypes, repeated names, bad shapes or a producer that
 * yields the wrong number of bytes; IoError when the file cannot be written.
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly SafetensorsWriteTensor[],
  metadata: Record<string, string> = {},
): Promise<SafetensorsWriteResult> {
  // Layout: tensors back to back in the given order.
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let end = 0;
  const layout = tensors.map((tensor) => {
    const size = SAFETENSORS_DTYPE_SIZES[tensor.dtype];
    if (size === undefined) throw new InvalidArgumentError(`safetensors tensor "${tensor.name}" has unknown dtype "${tensor.dtype}".`, { received: tensor.dtype });
    if (tensor.name === "__metadata__" || Object.hasOwn(header, tensor.name)) {
      throw new InvalidArgumentError(`safetensors tensor name "${tensor.name}" is reserved or given twice.`, { received: tensor.name });
    }
    if (!tensor.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new InvalidArgumentError(`safetensors tensor "${tensor.name}" has an invalid shape [${tensor.shape.join(", ")}].`, { received: tensor.shape });
    }
    const nbytes = tensor.shape.reduce((a, b) => a * b, 1) * size;
    header[tensor.name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [end, end + nbytes] };
    const entry = { tensor, begin: end, nbytes };
    end += nbytes;
    return entry;
  });

  // Header: JSON padded with spaces so the data buffer starts at a multiple of 8.
  let json = JSON.stringify(header);
  const padded = Math.ceil(Buffer.byteLength(json, "utf8") / 8) * 8;
  json += " ".repeat(padded - Buffer.byteLength(json, "utf8"));
  const headerBytes = Buffer.from(json, "utf8");
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  const dataOffset = 8 + headerBytes.length;

  let handle: FileHandle;
  try {
    handle = await open(path, "w");
  } catch (error) {
    throw new IoError(`Could not create ${path}: ${(error as Error).message}.`, { path, cause: error });
  }
  try {
    await handle.write(prefix, 0, 8, 0);
    await handle.write(headerBytes, 0, headerBytes.length, 8);
    for (const { tensor, begin, nbytes } of layout) {
      if (tensor.data === undefined) continue;
      const written = await writeTensorData(handle, tensor.data, dataOffset + begin, path);
      if (written !== nbytes) {
        throw new InvalidArgumentError(`safetensors tensor "${tensor.name}" data source produced ${written} bytes; its dtype and shape need ${nbytes}.`, {
          expected: nbytes,
          received: written,
        });
      }
    }
    // Sets the size and leaves tensors without data as holes of zeros.
    await handle.truncate(dataOffset + end);
  } finally {
    await handle.close();
  }
  return {
    headerLength: headerBytes.length,
    fileSize: dataOffset + end,
    tensors: layout.map(({ tensor, begin, nbytes }) => ({ name: tensor.name, offset: dataOffset + begin, nbytes })),
  };
}
