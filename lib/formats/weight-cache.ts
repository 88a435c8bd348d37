// The trailer that makes a convert-at-load cache file (lib/formats/quantize.ts) check itself. The
// converted tensors fill bytes [0, payloadBytes) of the file, and a 64-byte trailer follows them:
//
//   offset  size  field
//        0     8  magic "GEBCACHE"
//        8     4  u32 cache format version
//       12     4  u32 CRC-32 (the zlib polynomial) of the payload bytes
//       16     8  u64 payload bytes
//       24    32  SHA-256 key of the source files, tensors and weight type (it also names the file)
//       56     8  zero
//
// A later load reuses the file only when the trailer matches and the payload's CRC-32 is right, so
// a file corrupted in place, even one that kept its size, is rebuilt instead of being mapped.
// CRC-32 detects every burst error up to 32 bits and misses other random damage with probability
// 2^-32; it guards against accidents, not against someone forging a cache file.

import * as zlib from "node:zlib";
import { open } from "node:fs/promises";

/** Bytes of the trailer at the end of a cache file. */
export const CACHE_TRAILER_BYTES = 64;

const MAGIC = Buffer.from("GEBCACHE", "latin1");
// Bytes read per CRC-32 step when a cache file is checked.
const CHECK_CHUNK_BYTES = 16 * 2 ** 20;

type Crc32 = (data: Uint8Array, value: number) => number;

// zlib.crc32 exists from Node.js 20.15 and 22.2. Older Node.js versions use the table version
// below, which computes the same CRC-32.
// NOTE: the table version is about 14 times slower (0.3 GB/s against 4.2 GB/s for zlib on a
// 2-core Zen 3 VM), so on Node.js before 20.15 checking a 1.4 GB cache file takes about 5 s.
const zlibCrc32 = (zlib as { crc32?: Crc32 }).crc32;

let crcTable: Uint32Array | undefined;

/** Update a CRC-32 (the polynomial of zlib, gzip and PNG) with `data`, one table step per byte. */
export function crc32Portable(data: Uint8Array, value = 0): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = ~value >>> 0;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

/** Update a CRC-32 with `data`: through zlib when Node.js has it, else `crc32Portable`. */
export function crc32(data: Uint8Array, value = 0): number {
  return zlibCrc32 === undefined ? crc32Portable(data, value) : zlibCrc32(data, value) >>> 0;
}

/** Build the trailer of a cache file whose payload has `payloadBytes` bytes with CRC-32 `payloadCrc`. */
export function encodeCacheTrailer(version: number, payloadCrc: number, payloadBytes: number, key: Uint8Array): Buffer {
  const trailer = Buffer.alloc(CACHE_TRAILER_BYTES);
  MAGIC.copy(trailer, 0);
  trailer.writeUInt32LE(version, 8);
  trailer.writeUInt32LE(payloadCrc >>> 0, 12);
  trailer.writeBigUInt64LE(BigInt(payloadBytes), 16);
  trailer.set(key.subarray(0, 32), 24);
  return trailer;
}

/**
 * Check the cache file at `path` against the trailer it must have: format `version`,
 * `payloadBytes` bytes of payload, the `key` it was written for, and the CRC-32 of its payload.
 * Reads the whole payload once, sequentially. Returns undefined when the file is good, else the
 * reason it cannot be used. A file that cannot be read also gets a reason, not an error, because
 * the caller rebuilds it either way.
 */
export async function checkCacheFile(path: string, version: number, payloadBytes: number, key: Uint8Array): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (cause) {
    return `it cannot be opened (${String(cause)})`;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return "it is not a regular file";
    const expectedSize = payloadBytes + CACHE_TRAILER_BYTES;
    if (info.size !== expectedSize) return `it has ${info.size} bytes instead of ${expectedSize}`;

    const trailer = Buffer.alloc(CACHE_TRAILER_BYTES);
    await handle.read(trailer, 0, CACHE_TRAILER_BYTES, payloadBytes);
    if (!trailer.subarray(0, 8).equals(MAGIC)) return "its trailer has no GEBCACHE magic";
    if (trailer.readUInt32LE(8) !== version) return `its format version is ${trailer.readUInt32LE(8)}, not ${version}`;
    if (trailer.readBigUInt64LE(16) !== BigInt(payloadBytes)) return "its trailer records another payload size";
    if (!trailer.subarray(24, 56).equals(Buffer.from(key.subarray(0, 32)))) return "its trailer names other source files";

    const chunk = Buffer.alloc(Math.min(CHECK_CHUNK_BYTES, Math.max(1, payloadBytes)));
    let crc = 0;
    for (let position = 0; position < payloadBytes; ) {
      const length = Math.min(chunk.byteLength, payloadBytes - position);
      const { bytesRead } = await handle.read(chunk, 0, length, position);
      if (bytesRead !== length) return `it ended at byte ${position + bytesRead} while being read`;
      crc = crc32(chunk.subarray(0, length), crc);
      position += length;
    }
    const stored = trailer.readUInt32LE(12);
    if (crc !== stored) return `its content does not match its checksum (CRC-32 ${hex(crc)}, stored ${hex(stored)})`;
    return undefined;
  } catch (cause) {
    return `it cannot be read (${String(cause)})`;
  } finally {
    await handle.close().catch(() => undefined);
  }
}

function hex(value: number): string {
  return value.toString(16).padStart(8, "0");
}
