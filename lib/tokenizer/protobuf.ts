// A minimal protobuf wire-format reader, enough to parse SentencePiece's ModelProto: varints,
// 32-bit and 64-bit fixed fields and length-delimited fields. Group wire types (3 and 4), which
// ModelProto never uses, are rejected. Errors are ModelFormatError with the byte offset.

import { ModelFormatError } from "../errors.js";

/** Protobuf wire types. */
export const WireType = {
  VARINT: 0,
  FIXED64: 1,
  LENGTH_DELIMITED: 2,
  FIXED32: 5,
} as const;

/** One field as read from the wire. */
export interface ProtoField {
  fieldNumber: number;
  wireType: number;
  /** Varint fields: the low 35 bits of the value, enough for every int32, uint32, bool and enum. */
  varint: number;
  /** FIXED32 / FIXED64 / LENGTH_DELIMITED fields: start and end offsets of the payload. */
  start: number;
  end: number;
}

/** Sequential reader over one protobuf message (a byte range of a buffer). */
export class ProtoReader {
  private pos: number;

  constructor(
    private readonly bytes: Uint8Array,
    start = 0,
    private readonly end = bytes.length,
    private readonly what = "protobuf message",
  ) {
    this.pos = start;
  }

  /** Returns true when every byte of the message has been read. */
  done(): boolean {
    return this.pos >= this.end;
  }

  /** Reads the next field header and payload; the caller decides how to interpret it. */
  next(): ProtoField {
    const key = this.readVarint();
    const fieldNumber = Math.floor(key / 8);
    const wireType = key % 8;
    if (fieldNumber === 0) this.fail("field number 0");
    const field: ProtoField = { fieldNumber, wireType, varint: 0, start: this.pos, end: this.pos };
    switch (wireType) {
      case WireType.VARINT:
        field.varint = this.readVarint();
        break;
      case WireType.FIXED64:
        this.skip(8);
        break;
      case WireType.FIXED32:
        this.skip(4);
        break;
      case WireType.LENGTH_DELIMITED: {
        const length = this.readVarint();
        field.start = this.pos;
        this.skip(length);
        break;
      }
      default:
        this.fail(`unsupported wire type ${wireType} on field ${fieldNumber}`);
    }
    field.end = this.pos;
    return field;
  }

  /** Reads a varint and keeps its low 35 bits, which is exact for every 32-bit field. */
  private readVarint(): number {
    let value = 0;
    let multiplier = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail("truncated varint");
      const byte = this.bytes[this.pos++]!;
      if (i < 5) value += (byte & 0x7f) * multiplier;
      multiplier *= 128;
      if ((byte & 0x80) === 0) return value;
    }
    this.fail("varint longer than 10 bytes");
  }

  private skip(length: number): void {
    if (length > this.end - this.pos) this.fail(`field of ${length} bytes runs past the end`);
    this.pos += length;
  }

  private fail(what: string): never {
    throw new ModelFormatError(`Invalid ${this.what}: ${what} at byte ${this.pos}. The file is corrupt or not a SentencePiece model.`);
  }
}

/** Interprets a varint field as a signed 32-bit integer (int32 and enum fields). */
export function fieldInt32(field: ProtoField): number {
  return field.varint | 0;
}

/** Interprets a varint field as a boolean. */
export function fieldBool(field: ProtoField): boolean {
  return field.varint !== 0;
}

/** Reads a FIXED32 field as a little-endian float32. */
export function fieldFloat(bytes: Uint8Array, field: ProtoField): number {
  return new DataView(bytes.buffer, bytes.byteOffset + field.start, 4).getFloat32(0, true);
}

const utf8 = new TextDecoder("utf-8");

/** Reads a LENGTH_DELIMITED field as a UTF-8 string (invalid bytes become U+FFFD). */
export function fieldString(bytes: Uint8Array, field: ProtoField): string {
  return utf8.decode(bytes.subarray(field.start, field.end));
}
