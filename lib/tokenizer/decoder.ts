// Turning ids back into text, in one pass that both `decode` and the stream decoder use, so a
// stream joined together always equals the full decode. Pieces follow SentencePiece's DecodeIds.
// U+2581 becomes a space, and the first U+2581 of a sequence is dropped (the dummy prefix).
// Control pieces print nothing and the unknown piece prints the unknown surface. Runs of byte
// pieces are reassembled as UTF-8, with U+FFFD for each byte that is not part of a valid character.

import { SPACE_SYMBOL, UTF8_LEAD_MASKS, utf8SequenceLength, validUtf8Length } from "./normalizer.js";
import { PieceType } from "./sentencepiece-model.js";

/** Vocabulary data the decoder needs. */
export interface DecoderVocabulary {
  pieces: readonly string[];
  types: Uint8Array;
  /** Byte value of each BYTE piece, -1 for other pieces. */
  byteValues: Int16Array;
  unkSurface: string;
  /** Whether a leading U+2581 is dropped (SentencePiece: add_dummy_prefix or remove_extra_whitespaces). */
  stripLeadingSpace: boolean;
  /** Whether every leading U+2581 is dropped, not only the first (remove_extra_whitespaces). */
  stripAllLeadingSpaces: boolean;
  /**
   * Text of ids past the piece list (GEB's special tokens), or undefined when `id` is not one.
   * These ids end a SentencePiece run: the next piece starts a new sequence.
   */
  extraTokenText(id: number): string | undefined;
  /** Whether `extraTokenText` of `id` is a special token (omitted when skipping specials). */
  isExtraSpecial(id: number): boolean;
}

/** Incremental decoder state; `push` returns the text that became final with this id. */
export class DecodeState {
  private bytes: number[] = [];
  /** A leading U+2581 may still be dropped. */
  private atSequenceStart = true;
  /** The previous non-byte piece had its leading U+2581 dropped. */
  private droppedLeadingSpace = false;
  /** Text has been produced since the sequence started. */
  private producedText = false;

  constructor(
    private readonly vocabulary: DecoderVocabulary,
    private readonly skipSpecial: boolean,
  ) {}

  /** Adds one id (already validated as a non-negative integer) and returns newly final text. */
  push(id: number): string {
    const vocabulary = this.vocabulary;
    if (id >= vocabulary.pieces.length) {
      const text = this.drainBytes(true);
      this.startSequence();
      const extra = vocabulary.extraTokenText(id) ?? `<pad:${id}>`;
      if (this.skipSpecial && vocabulary.isExtraSpecial(id)) return text;
      return text + extra;
    }

    const byte = vocabulary.byteValues[id]!;
    if (byte >= 0) {
      this.bytes.push(byte);
      return this.drainBytes(false);
    }

    const text = this.drainBytes(true);
    return text + this.decodePiece(id);
  }

  /** Returns what is still held back (incomplete UTF-8 at the end), as U+FFFD per byte. */
  flush(): string {
    return this.drainBytes(true);
  }

  private startSequence(): void {
    this.atSequenceStart = true;
    this.droppedLeadingSpace = false;
    this.producedText = false;
  }

  private decodePiece(id: number): string {
    const vocabulary = this.vocabulary;
    if (this.droppedLeadingSpace || this.producedText) this.atSequenceStart = false;
    const type = vocabulary.types[id]!;
    if (type === PieceType.CONTROL) {
      this.droppedLeadingSpace = false;
      return "";
    }
    if (type === PieceType.UNKNOWN) {
      this.droppedLeadingSpace = false;
      return this.produce(vocabulary.unkSurface);
    }
    let piece = vocabulary.pieces[id]!;
    let dropped = false;
    if (this.atSequenceStart && vocabulary.stripLeadingSpace && piece.startsWith(SPACE_SYMBOL)) {
      piece = piece.slice(SPACE_SYMBOL.length);
      dropped = !vocabulary.stripAllLeadingSpaces;
    }
    this.droppedLeadingSpace = dropped;
    return this.produce(piece.replaceAll(SPACE_SYMBOL, " "));
  }

  private produce(text: string): string {
    if (text.length > 0) this.producedText = true;
    return text;
  }

  /**
   * Decodes the held bytes as far as possible. Unless `final`, a character whose bytes have not
   * all arrived is kept for later. So every decision made here is one the full byte run would make.
   */
  private drainBytes(final: boolean): string {
    const bytes = this.bytes;
    if (bytes.length === 0) return "";
    let text = "";
    let offset = 0;
    while (offset < bytes.length) {
      const length = validUtf8Length(bytes, offset, bytes.length);
      if (length > 0) {
        text += decodeUtf8(bytes, offset, length);
        offset += length;
        continue;
      }
      const expected = utf8SequenceLength(bytes[offset]!);
      if (!final && expected > 1 && offset + expected > bytes.length) break;
      text += "\ufffd";
      offset += 1;
    }
    this.bytes = offset === bytes.length ? [] : bytes.slice(offset);
    return this.produce(text);
  }
}

function decodeUtf8(bytes: readonly number[], offset: number, length: number): string {
  const lead = bytes[offset]!;
  if (length === 1) return String.fromCharCode(lead);
  let codePoint = lead & UTF8_LEAD_MASKS[length]!;
  for (let i = 1; i < length; i++) codePoint = (codePoint << 6) | (bytes[offset + i]! & 0x3f);
  return String.fromCodePoint(codePoint);
}
