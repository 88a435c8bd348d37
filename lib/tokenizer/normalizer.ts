// SentencePiece text normalization: the precompiled character map (a Darts-clone double-array trie
// over UTF-8 bytes whose values point into a blob of NUL-terminated replacement strings),
// user-defined symbols kept as they are, extra-whitespace removal, whitespace escaping to U+2581
// and the dummy prefix. It follows the order of operations of SentencePiece's Normalizer::Normalize.
// Models without a character map take a faster path on JavaScript strings with the same result.

import { ModelFormatError, UnsupportedError } from "../errors.js";
import type { NormalizerSpec } from "./sentencepiece-model.js";

/** U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible space. */
export const SPACE_SYMBOL = "\u2581";

const SPACE_SYMBOL_BYTES = [0xe2, 0x96, 0x81];

/** Payload bits of a UTF-8 lead byte, by sequence length (index 1..4). */
export const UTF8_LEAD_MASKS = [0, 0x7f, 0x1f, 0x0f, 0x07] as const;

/** Smallest code point each sequence length may encode; smaller ones are overlong forms. */
const UTF8_MINIMUM_CODE_POINTS = [0, 0, 0x80, 0x800, 0x10000] as const;
const REPLACEMENT_BYTES = [0xef, 0xbf, 0xbd];

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8");

/** Replaces lone UTF-16 surrogates by U+FFFD, as encoding the text to UTF-8 would. */
export function toWellFormed(text: string): string {
  const wellFormed = (text as { toWellFormed?: () => string }).toWellFormed;
  if (wellFormed !== undefined) return wellFormed.call(text);
  return utf8Decoder.decode(utf8Encoder.encode(text));
}

/**
 * Byte length of the UTF-8 sequence that `lead` starts, or 0 when `lead` cannot start one.
 * Matches SentencePiece's lead-byte masks (0xC0, 0xE0, 0xF0 patterns).
 */
export function utf8SequenceLength(lead: number): number {
  if (lead < 0x80) return 1;
  if ((lead & 0xe0) === 0xc0) return 2;
  if ((lead & 0xf0) === 0xe0) return 3;
  if ((lead & 0xf8) === 0xf0) return 4;
  return 0;
}

/**
 * Returns the length of the valid UTF-8 character at `bytes[pos..end)`, or 0 when the bytes there
 * are not a valid character (bad lead or trail byte, overlong form, surrogate, above U+10FFFF or
 * cut off by `end`). SentencePiece then consumes one byte as U+FFFD.
 */
export function validUtf8Length(bytes: ArrayLike<number>, pos: number, end: number): number {
  const lead = bytes[pos]!;
  const length = utf8SequenceLength(lead);
  if (length === 1) return 1;
  if (length === 0 || pos + length > end) return 0;
  let codePoint = lead & UTF8_LEAD_MASKS[length]!;
  for (let i = 1; i < length; i++) {
    const trail = bytes[pos + i]!;
    if ((trail & 0xc0) !== 0x80) return 0;
    codePoint = (codePoint << 6) | (trail & 0x3f);
  }
  if (codePoint < UTF8_MINIMUM_CODE_POINTS[length]! || codePoint > 0x10ffff || (codePoint >= 0xd800 && codePoint < 0xe000)) return 0;
  return length;
}

/**
 * The precompiled character map: `<u32 trie size in bytes><double-array units><replacement blob>`.
 * Each trie unit is a little-endian u32 in Darts-clone's layout.
 */
class CharsMap {
  private readonly units: Uint32Array;
  private readonly blob: Uint8Array;
  private readonly replacements = new Map<number, Uint8Array>();

  constructor(bytes: Uint8Array) {
    if (bytes.length < 4) throw this.invalid(`it has ${bytes.length} bytes, fewer than the 4-byte header`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const trieBytes = view.getUint32(0, true);
    if (trieBytes % 4 !== 0 || trieBytes === 0 || trieBytes > bytes.length - 4) {
      throw this.invalid(`its trie size ${trieBytes} does not fit the ${bytes.length - 4} bytes that follow`);
    }
    this.units = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < this.units.length; i++) this.units[i] = view.getUint32(4 + i * 4, true);
    this.blob = bytes.subarray(4 + trieBytes);
  }

  /**
   * Finds the longest key of the trie that prefixes `input[pos..end)`.
   * Returns its byte length (0 when none) and stores its replacement in `this.lastReplacement`.
   */
  longestPrefix(input: Uint8Array, pos: number, end: number): number {
    const units = this.units;
    let longest = 0;
    let longestValue = -1;
    let nodePos = unitOffset(units[0]!);
    for (let i = pos; i < end; i++) {
      const label = input[i]!;
      nodePos ^= label;
      if (nodePos >= units.length) break;
      const unit = units[nodePos]!;
      // The label check also fails for the leaf flag bit (bit 31) set, as in Darts-clone.
      if ((unit & 0x800000ff) >>> 0 !== label) break;
      nodePos ^= unitOffset(unit);
      if (((unit >>> 8) & 1) === 1) {
        if (nodePos >= units.length) break;
        longest = i + 1 - pos;
        longestValue = units[nodePos]! & 0x7fffffff;
      }
    }
    if (longest > 0) this.lastReplacement = this.replacementAt(longestValue);
    return longest;
  }

  lastReplacement: Uint8Array = new Uint8Array(0);

  private replacementAt(offset: number): Uint8Array {
    let replacement = this.replacements.get(offset);
    if (replacement !== undefined) return replacement;
    if (offset >= this.blob.length) throw this.invalid(`a trie value points at byte ${offset}, past the ${this.blob.length}-byte string blob`);
    let end = offset;
    while (end < this.blob.length && this.blob[end] !== 0) end++;
    replacement = this.blob.subarray(offset, end);
    this.replacements.set(offset, replacement);
    return replacement;
  }

  private invalid(what: string): ModelFormatError {
    return new ModelFormatError(`Invalid SentencePiece precompiled_charsmap: ${what}. The model file is corrupt.`);
  }
}

function unitOffset(unit: number): number {
  return (unit >>> 10) << ((unit & 0x200) >>> 6);
}

/** A growable byte buffer for the normalized output. */
class ByteSink {
  bytes = new Uint8Array(256);
  length = 0;

  push(byte: number): void {
    if (this.length === this.bytes.length) this.grow(1);
    this.bytes[this.length++] = byte;
  }

  pushAll(source: ArrayLike<number>, start = 0, end = source.length): void {
    const count = end - start;
    if (this.length + count > this.bytes.length) this.grow(count);
    for (let i = start; i < end; i++) this.bytes[this.length++] = source[i]!;
  }

  endsWith(suffix: readonly number[]): boolean {
    if (this.length < suffix.length) return false;
    for (let i = 0; i < suffix.length; i++) if (this.bytes[this.length - suffix.length + i] !== suffix[i]) return false;
    return true;
  }

  private grow(extra: number): void {
    const next = new Uint8Array(Math.max(this.bytes.length * 2, this.length + extra));
    next.set(this.bytes.subarray(0, this.length));
    this.bytes = next;
  }
}

/** Normalizes text as a SentencePiece model's NormalizerSpec specifies. */
export class Normalizer {
  private readonly charsMap: CharsMap | undefined;
  /** User-defined symbols as UTF-8, grouped by first byte, longest first. */
  private readonly userDefinedByFirstByte = new Map<number, Uint8Array[]>();
  private readonly useStringPath: boolean;
  private readonly spaceBytes: readonly number[];

  constructor(
    private readonly spec: NormalizerSpec,
    userDefinedSymbols: readonly string[],
    treatWhitespaceAsSuffix: boolean,
  ) {
    if (treatWhitespaceAsSuffix) {
      // TODO: support treat_whitespace_as_suffix (the space symbol goes at the end of words).
      throw new UnsupportedError("SentencePiece models with treat_whitespace_as_suffix are not supported.");
    }
    this.charsMap = spec.precompiledCharsmap.length > 0 ? new CharsMap(spec.precompiledCharsmap) : undefined;
    for (const symbol of userDefinedSymbols) {
      const bytes = utf8Encoder.encode(symbol);
      if (bytes.length === 0) continue;
      const list = this.userDefinedByFirstByte.get(bytes[0]!) ?? [];
      list.push(bytes);
      list.sort((a, b) => b.length - a.length);
      this.userDefinedByFirstByte.set(bytes[0]!, list);
    }
    // The string path treats every character as mapping to itself, which is exact unless a
    // character map exists or a user-defined symbol contains a space.
    this.useStringPath = this.charsMap === undefined && !userDefinedSymbols.some((s) => s.includes(" "));
    this.spaceBytes = spec.escapeWhitespaces ? SPACE_SYMBOL_BYTES : [0x20];
  }

  /** Normalizes `text`; the result is what the BPE or Unigram model segments. */
  normalize(text: string): string {
    if (text.length === 0) return "";
    const wellFormed = toWellFormed(text);
    return this.useStringPath ? this.normalizeString(wellFormed) : this.normalizeBytes(utf8Encoder.encode(wellFormed));
  }

  private normalizeString(text: string): string {
    const space = this.spec.escapeWhitespaces ? SPACE_SYMBOL : " ";
    let body = text;
    if (this.spec.removeExtraWhitespaces) {
      body = body.replace(/ +/g, " ");
      if (body.startsWith(" ")) body = body.slice(1);
      if (body.length === 0) return "";
    }
    if (this.spec.escapeWhitespaces) body = body.replaceAll(" ", SPACE_SYMBOL);
    let normalized = this.spec.addDummyPrefix ? space + body : body;
    if (this.spec.removeExtraWhitespaces) {
      while (normalized.endsWith(space)) normalized = normalized.slice(0, normalized.length - space.length);
    }
    return normalized;
  }

  private normalizeBytes(input: Uint8Array): string {
    const spec = this.spec;
    const end = input.length;
    let pos = 0;
    const prefix = { bytes: input as ArrayLike<number>, start: 0, end: 0, consumed: 0 };

    // Leading whitespace goes first when extra whitespace is removed.
    if (spec.removeExtraWhitespaces) {
      while (pos < end) {
        this.normalizePrefix(input, pos, prefix);
        if (!(prefix.end - prefix.start === 1 && prefix.bytes[prefix.start] === 0x20)) break;
        pos += prefix.consumed;
      }
      if (pos >= end) return "";
    }

    const out = new ByteSink();
    if (spec.addDummyPrefix) out.pushAll(this.spaceBytes);

    let isPrevSpace = spec.removeExtraWhitespaces;
    while (pos < end) {
      this.normalizePrefix(input, pos, prefix);
      let start = prefix.start;
      // After a space, the spaces that start this replacement are dropped.
      while (isPrevSpace && start < prefix.end && prefix.bytes[start] === 0x20) start++;
      if (start < prefix.end) {
        for (let i = start; i < prefix.end; i++) {
          const byte = prefix.bytes[i]!;
          if (byte === 0x20 && spec.escapeWhitespaces) out.pushAll(SPACE_SYMBOL_BYTES);
          else out.push(byte);
        }
        isPrevSpace = prefix.bytes[prefix.end - 1] === 0x20;
      }
      pos += prefix.consumed;
      if (!spec.removeExtraWhitespaces) isPrevSpace = false;
    }

    if (spec.removeExtraWhitespaces) {
      while (out.endsWith(this.spaceBytes)) out.length -= this.spaceBytes.length;
    }
    return utf8Decoder.decode(out.bytes.subarray(0, out.length));
  }

  /**
   * Normalizes the longest prefix of `input[pos..)` that one rule covers: a user-defined symbol
   * (kept as is), a character-map key (replaced) or one UTF-8 character (kept as is, or U+FFFD
   * for a malformed byte). Writes the replacement range and the input bytes consumed to `result`.
   */
  private normalizePrefix(
    input: Uint8Array,
    pos: number,
    result: { bytes: ArrayLike<number>; start: number; end: number; consumed: number },
  ): void {
    const end = input.length;
    const candidates = this.userDefinedByFirstByte.get(input[pos]!);
    if (candidates !== undefined) {
      for (const symbol of candidates) {
        if (symbol.length <= end - pos && symbol.every((b, i) => input[pos + i] === b)) {
          result.bytes = input;
          result.start = pos;
          result.end = pos + symbol.length;
          result.consumed = symbol.length;
          return;
        }
      }
    }
    if (this.charsMap !== undefined) {
      const matched = this.charsMap.longestPrefix(input, pos, end);
      if (matched > 0) {
        result.bytes = this.charsMap.lastReplacement;
        result.start = 0;
        result.end = this.charsMap.lastReplacement.length;
        result.consumed = matched;
        return;
      }
    }
    const length = validUtf8Length(input, pos, end);
    if (length === 0) {
      result.bytes = REPLACEMENT_BYTES;
      result.start = 0;
      result.end = 3;
      result.consumed = 1;
      return;
    }
    result.bytes = input;
    result.start = pos;
    result.end = pos + length;
    result.consumed = length;
  }
}
