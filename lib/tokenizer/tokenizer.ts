// The Tokenizer: text to ids and back for SentencePiece models (BPE and Unigram), GEB's
// tokenizer (a SentencePiece model plus nine special tokens numbered after its pieces) and the
// SentencePiece-style vocabularies of llama-family GGUF files, which follow llama.cpp's SPM
// tokenizer. Special tokens come from text only when the caller asks (`specials: "all"`).

import { InvalidArgumentError } from "../errors.js";
import { BpeSegmenter } from "./bpe.js";
import { DecodeState, type DecoderVocabulary } from "./decoder.js";
import { Normalizer, SPACE_SYMBOL, toWellFormed } from "./normalizer.js";
import { PieceType } from "./sentencepiece-model.js";
import { UnigramSegmenter } from "./unigram.js";

/** Family of conventions a tokenizer follows: prompt prefix, special tokens and GGUF rules. */
export type TokenizerFamily = "geb" | "llama" | "sentencepiece";

/** Options of `Tokenizer.encode`. */
export interface EncodeOptions {
  /**
   * `"none"` (default): special-token text is ordinary text. `"all"`: the text of every special
   * token (the keys of `specialTokens`) becomes that token's id. Use `"all"` only for trusted
   * template text, never for user input.
   */
  specials?: "none" | "all";
}

/** Options of `Tokenizer.decode`. */
export interface DecodeOptions {
  /** Leave special tokens out of the text. Default false (they are written as their text). */
  skipSpecial?: boolean;
}

/** Incremental decoder for generated ids. */
export interface StreamDecoder {
  /** Adds one id; returns the text that is complete now (possibly ""). */
  push(id: number): string;
  /** Returns text still held back; call once at the end. */
  flush(): string;
}

/** Segmentation settings of one tokenizer, built by the loader. */
export type Segmentation =
  | {
      kind: "sentencepiece";
      modelType: "bpe" | "unigram";
      normalizer: Normalizer;
      byteFallback: boolean;
    }
  | {
      kind: "llama.cpp";
      /** Add a space before text at the start and after a special token (`tokenizer.ggml.add_space_prefix`). */
      addSpacePrefix: boolean;
    };

/** Everything the Tokenizer constructor needs; `loadTokenizer` fills it from a file. */
export interface TokenizerConfig {
  family: TokenizerFamily;
  pieces: string[];
  scores: Float32Array;
  /** `PieceType` of each piece (GGUF token types use the same numbers). */
  types: Uint8Array;
  segmentation: Segmentation;
  unkId?: number;
  bosId?: number;
  eosId?: number;
  padId?: number;
  /** Text that decoding writes for the unknown piece. */
  unkSurface: string;
  /** Decoding drops the first U+2581 of a sequence. */
  stripLeadingSpace: boolean;
  /** Decoding drops every leading U+2581 (SentencePiece remove_extra_whitespaces). */
  stripAllLeadingSpaces: boolean;
  /** Special tokens numbered after the pieces (GEB), name to id. */
  extraSpecials?: Record<string, number>;
  /** Ids `encodePrompt` puts before the text. */
  promptPrefix: number[];
  stopTokenIds: number[];
  chatTemplate?: string;
}

/** Decoders for model output, by tokenizer; see `createModelOutputDecoder`. */
const outputDecoders = new WeakMap<Tokenizer, () => DecodeState>();

/**
 * Creates a stream decoder for ids a model samples. A model's output can have more rows than
 * the tokenizer has ids (GEB pads its vocabulary to a multiple of 64). Such padding ids have no
 * text, and this decoder writes them as `<pad:ID>` where the public decoders throw.
 * Not exported from the package.
 *
 * NOTE: the sampler does not mask padding rows, so a result's `tokens` can contain such an id,
 * and `decode(result.tokens)` then throws.
 */
export function createModelOutputDecoder(tokenizer: Tokenizer): StreamDecoder {
  const state = outputDecoders.get(tokenizer)!();
  return {
    push: (id: number) => state.push(id),
    flush: () => state.flush(),
  };
}

/** A loaded tokenizer. Create one with `loadTokenizer`. Frozen: its fields never change. */
export class Tokenizer {
  /** Family of conventions this tokenizer follows. */
  readonly family: TokenizerFamily;
  /** Number of ids the tokenizer can produce, special tokens included. */
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly unkId?: number;
  readonly padId?: number;
  /**
   * Special tokens by text: GEB's nine chat tokens, or the control and user-defined pieces.
   * Frozen, because chat prompts are built from it.
   */
  readonly specialTokens: Readonly<Record<string, number>>;
  /** Ids that end generation by default. Frozen: pass `stopTokens` to a call to change them. */
  readonly stopTokenIds: readonly number[];
  /** The GGUF `tokenizer.chat_template`, when the file has one. */
  readonly chatTemplate?: string;

  private readonly pieces: string[];
  private readonly types: Uint8Array;
  private readonly segmentation: Segmentation;
  private readonly bpe: BpeSegmenter | undefined;
  private readonly unigram: UnigramSegmenter | undefined;
  /** Piece text to id as the library looks it up (SentencePiece: control, unknown and byte pieces first). */
  private readonly idsByPiece: Map<string, number>;
  /** Texts that are cut out of raw text before segmentation, longest first, for each `specials` mode. */
  private readonly partitionAll: string[];
  private readonly partitionNone: string[];
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly decoderVocabulary: DecoderVocabulary;
  private readonly extraById = new Map<number, string>();
  private readonly promptPrefix: number[];

  constructor(config: TokenizerConfig) {
    this.family = config.family;
    this.pieces = config.pieces;
    this.types = config.types;
    this.segmentation = config.segmentation;
    if (config.bosId !== undefined) this.bosId = config.bosId;
    if (config.eosId !== undefined) this.eosId = config.eosId;
    if (config.unkId !== undefined) this.unkId = config.unkId;
    if (config.padId !== undefined) this.padId = config.padId;
    if (config.chatTemplate !== undefined) this.chatTemplate = config.chatTemplate;
    this.stopTokenIds = Object.freeze([...config.stopTokenIds]);
    this.promptPrefix = [...config.promptPrefix];

    const pieces = config.pieces;
    const types = config.types;
    const isLlama = config.segmentation.kind === "llama.cpp";

    // Lookup tables. SentencePiece keeps control/unknown/byte pieces and the others in two maps and
    // searches the first one first; llama.cpp keeps one map where a later duplicate wins.
    const reserved = new Map<string, number>();
    const mergeable = new Map<string, number>();
    const byteValues = new Int16Array(pieces.length).fill(-1);
    for (let id = 0; id < pieces.length; id++) {
      const type = types[id]!;
      const piece = pieces[id]!;
      if (type === PieceType.BYTE) {
        const value = parseBytePiece(piece);
        if (value >= 0) {
          byteValues[id] = value;
          if (this.byteIds[value] === -1 || isLlama) this.byteIds[value] = id;
        }
      }
      if (isLlama) {
        mergeable.set(piece, id);
      } else if (type === PieceType.NORMAL || type === PieceType.USER_DEFINED || type === PieceType.UNUSED) {
        if (!mergeable.has(piece)) mergeable.set(piece, id);
      } else if (!reserved.has(piece)) {
        reserved.set(piece, id);
      }
    }
    this.idsByPiece = isLlama ? mergeable : new Map([...mergeable, ...reserved]);

    // Special tokens and partition lists.
    const specialTokens: Record<string, number> = {};
    const userDefined: string[] = [];
    for (let id = 0; id < pieces.length; id++) {
      const type = types[id]!;
      if ((type === PieceType.CONTROL || type === PieceType.USER_DEFINED) && pieces[id]!.length > 0) {
        if (config.extraSpecials === undefined) specialTokens[pieces[id]!] = id;
        if (type === PieceType.USER_DEFINED) userDefined.push(pieces[id]!);
      }
    }
    for (const [name, id] of Object.entries(config.extraSpecials ?? {})) {
      specialTokens[name] = id;
      this.extraById.set(id, name);
    }
    this.specialTokens = Object.freeze(specialTokens);
    const byLengthDesc = (a: string, b: string): number => b.length - a.length;
    this.partitionAll = Object.keys(this.specialTokens).sort(byLengthDesc);
    // llama.cpp cuts user-defined tokens out of the text even when special tokens are not parsed.
    this.partitionNone = isLlama ? [...new Set(userDefined)].sort(byLengthDesc) : [];

    let vocabSize = pieces.length;
    for (const id of this.extraById.keys()) vocabSize = Math.max(vocabSize, id + 1);
    this.vocabSize = vocabSize;

    if (config.segmentation.kind === "llama.cpp" || config.segmentation.modelType === "bpe") {
      const unusedFlags = isLlama ? undefined : Uint8Array.from(types, (t) => (t === PieceType.UNUSED ? 1 : 0));
      const vocabulary: ConstructorParameters<typeof BpeSegmenter>[0] = { mergeable, scores: config.scores };
      if (unusedFlags !== undefined && unusedFlags.includes(1)) vocabulary.isUnused = (id) => unusedFlags[id] === 1;
      if (!isLlama && userDefined.length > 0) vocabulary.userDefined = [...userDefined].sort(byLengthDesc);
      this.bpe = new BpeSegmenter(vocabulary);
    } else {
      this.unigram = new UnigramSegmenter(pieces, config.scores, types, config.unkId ?? 0);
    }

    const extraById = this.extraById;
    this.decoderVocabulary = {
      pieces,
      types,
      byteValues,
      unkSurface: config.unkSurface,
      stripLeadingSpace: config.stripLeadingSpace,
      stripAllLeadingSpaces: config.stripAllLeadingSpaces,
      extraTokenText: (id) => extraById.get(id),
      isExtraSpecial: (id) => extraById.has(id),
    };
    outputDecoders.set(this, () => new DecodeState(this.decoderVocabulary, false));
    // Callers share this object with every generation of the model, so none may replace a field.
    Object.freeze(this);
  }

  /**
   * Encodes text to ids without any prefix token (no `<s>`, no `[gMASK] sop`); SentencePiece's
   * dummy-prefix space is part of the encoding. See `EncodeOptions.specials`.
   * Throws InvalidArgumentError (`ERR_GEB_INVALID_ARGUMENT`) when `text` is not a string or the
   * options are invalid.
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== "string") {
      throw new InvalidArgumentError(`encode() expects a string, received ${typeof text}.`, { received: typeof text });
    }
    const specials = checkOptionsObject("encode", options).specials ?? "none";
    if (specials !== "none" && specials !== "all") {
      throw new InvalidArgumentError(`Invalid specials option "${String(specials)}": use "none" or "all".`, {
        expected: ["none", "all"],
        received: specials,
      });
    }
    const out: number[] = [];
    if (text.length === 0) return out;
    const partition = specials === "all" ? this.partitionAll : this.partitionNone;
    const fragments = partitionText(text, partition);
    let afterSpecial = true;
    for (const fragment of fragments) {
      if (typeof fragment === "number") {
        out.push(this.specialTokens[partition[fragment]!]!);
        afterSpecial = true;
      } else {
        this.encodeRaw(fragment, afterSpecial, out);
        afterSpecial = false;
      }
    }
    return out;
  }

  /** Encodes text as a prompt: the family's prefix ids (`<s>` for llama, `[gMASK] sop` for GEB), then `encode(text)`. */
  encodePrompt(text: string): number[] {
    return [...this.promptPrefix, ...this.encode(text)];
  }

  /**
   * Decodes ids to text as SentencePiece's DecodeIds does: control pieces of the vocabulary
   * (`<s>`, `</s>`) decode to nothing. GEB's chat tokens (`[gMASK]`, `sop`, `<|user|>`...),
   * which are numbered after the SentencePiece pieces, are written as their text unless
   * `skipSpecial`, as ChatGLM3's tokenizer writes them. Throws InvalidArgumentError when `ids`
   * is not an array or contains an id that is not an integer in [0, vocabSize), and for invalid
   * options.
   */
  decode(ids: readonly number[] | Int32Array, options: DecodeOptions = {}): string {
    if (!Array.isArray(ids) && !(ids instanceof Int32Array)) {
      throw new InvalidArgumentError(`decode() expects an array of token ids, received ${describeValue(ids)}.`, {
        expected: "number[] | Int32Array",
        received: ids,
      });
    }
    const state = new DecodeState(this.decoderVocabulary, checkSkipSpecial("decode", options));
    let text = "";
    for (const id of ids) text += state.push(this.checkId(id));
    return text + state.flush();
  }

  /**
   * Creates a decoder for ids that arrive one at a time. It returns text only once whole UTF-8
   * characters are known, and its outputs joined equal `decode` of the same ids.
   */
  createStreamDecoder(options: DecodeOptions = {}): StreamDecoder {
    const state = new DecodeState(this.decoderVocabulary, checkSkipSpecial("createStreamDecoder", options));
    return {
      push: (id: number) => state.push(this.checkId(id)),
      flush: () => state.flush(),
    };
  }

  /**
   * Returns the piece text of an id (special tokens by name). Throws InvalidArgumentError for an
   * id outside [0, vocabSize).
   */
  idToPiece(id: number): string {
    this.checkId(id);
    if (id < this.pieces.length) return this.pieces[id]!;
    // Ids between the pieces and vocabSize that are no GEB chat token are gaps in the numbering.
    return this.extraById.get(id) ?? `<pad:${id}>`;
  }

  /**
   * Returns the id of a special-token or piece text, or undefined when there is none. A special
   * token wins over a piece with the same text (GEB's `sop` could also be a piece).
   */
  pieceToId(piece: string): number | undefined {
    return Object.hasOwn(this.specialTokens, piece) ? this.specialTokens[piece] : this.idsByPiece.get(piece);
  }

  /** Returns true when an id is a special token: a control piece or one of GEB's chat tokens. */
  isSpecial(id: number): boolean {
    if (this.extraById.has(id)) return true;
    return Number.isInteger(id) && id >= 0 && id < this.pieces.length && this.types[id] === PieceType.CONTROL;
  }

  private checkId(id: number): number {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new InvalidArgumentError(
        `Invalid token id ${String(id)}: the vocabulary has ${this.vocabSize} ids, so ids are integers in [0, ${this.vocabSize - 1}].`,
        { expected: `integer in [0, ${this.vocabSize - 1}]`, received: id },
      );
    }
    return id;
  }

  /** Encodes text that contains no special token. */
  private encodeRaw(text: string, atStartOrAfterSpecial: boolean, out: number[]): void {
    const segmentation = this.segmentation;
    if (segmentation.kind === "llama.cpp") {
      let escaped = toWellFormed(text).replaceAll(" ", SPACE_SYMBOL);
      if (segmentation.addSpacePrefix && atStartOrAfterSpecial) escaped = SPACE_SYMBOL + escaped;
      this.bpe!.encode(escaped, out, this.unknownToBytes);
      return;
    }

    const normalized = segmentation.normalizer.normalize(text);
    if (normalized.length === 0) return;
    const start = out.length;
    const onUnknown = segmentation.byteFallback ? this.unknownToBytes : this.unknownToId;
    if (this.bpe !== undefined) {
      this.bpe.encode(normalized, out, onUnknown);
    } else {
      for (const piece of this.unigram!.segment(normalized)) {
        if (piece.id === this.unkId) onUnknown(piece.text, out);
        else out.push(piece.id);
      }
    }
    if (!segmentation.byteFallback && this.unkId !== undefined) collapseUnknownRuns(out, start, this.unkId);
  }

  /** An unknown character becomes its UTF-8 bytes as byte pieces (the unknown id for a missing byte piece). */
  private readonly unknownToBytes = (text: string, out: number[]): void => {
    const reservedId = this.reservedId(text);
    if (reservedId !== undefined) {
      out.push(reservedId);
      return;
    }
    // Unknown symbols are almost always one BMP character, which is cheaper to encode by hand.
    const codePoint = text.charCodeAt(0);
    const single = text.length === 1;
    if (single && codePoint < 0x80) {
      this.pushByte(codePoint, out);
    } else if (single && codePoint < 0x800) {
      this.pushByte(0xc0 | (codePoint >> 6), out);
      this.pushByte(0x80 | (codePoint & 0x3f), out);
    } else if (single) {
      this.pushByte(0xe0 | (codePoint >> 12), out);
      this.pushByte(0x80 | ((codePoint >> 6) & 0x3f), out);
      this.pushByte(0x80 | (codePoint & 0x3f), out);
    } else {
      for (const byte of utf8Encoder.encode(text)) this.pushByte(byte, out);
    }
  };

  private pushByte(byte: number, out: number[]): void {
    const id = this.byteIds[byte]!;
    out.push(id >= 0 ? id : (this.unkId ?? 0));
  }

  /** An unknown character becomes the unknown id. */
  private readonly unknownToId = (text: string, out: number[]): void => {
    out.push(this.reservedId(text) ?? this.unkId ?? 0);
  };

  /** SentencePiece looks a final symbol up among control, unknown and byte pieces as well. */
  private reservedId(text: string): number | undefined {
    if (this.segmentation.kind === "llama.cpp") return undefined;
    const id = this.idsByPiece.get(text);
    return id !== undefined && id !== this.unkId ? id : undefined;
  }
}

const utf8Encoder = new TextEncoder();

/** Names a value's type for a message without printing large objects. */
function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return Object.prototype.toString.call(value);
  return typeof value;
}

/** Checks an options argument of `method`: undefined or a plain object. */
function checkOptionsObject<T extends object>(method: string, options: T | undefined): Partial<T> {
  if (options === undefined) return {};
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new InvalidArgumentError(`${method}() options must be an object, received ${describeValue(options)}.`, {
      expected: "object",
      received: options,
    });
  }
  return options;
}

/** Returns the `skipSpecial` decode option, checked to be a boolean when given. */
function checkSkipSpecial(method: string, options: DecodeOptions | undefined): boolean {
  const skipSpecial = checkOptionsObject(method, options).skipSpecial;
  if (skipSpecial !== undefined && typeof skipSpecial !== "boolean") {
    throw new InvalidArgumentError(`${method}() option skipSpecial must be true or false, received ${describeValue(skipSpecial)}.`, {
      expected: "boolean",
      received: skipSpecial,
    });
  }
  return skipSpecial ?? false;
}

/** Returns the byte value of a `<0xNN>` piece, or -1. */
function parseBytePiece(piece: string): number {
  if (piece.length !== 6 || !piece.startsWith("<0x") || !piece.endsWith(">")) return -1;
  const value = Number.parseInt(piece.slice(3, 5), 16);
  return Number.isNaN(value) ? -1 : value;
}

/**
 * Cuts the texts in `specials` (sorted longest first) out of `text`, as llama.cpp does: each
 * special in turn splits every remaining raw fragment at its leftmost occurrences.
 * Returns raw strings and, for special matches, their index in `specials`.
 * NOTE: llama.cpp also strips whitespace next to some special tokens (lstrip/rstrip attributes,
 * which it sets for Phi-3's tokens by model name). That is not done here, so text with spaces
 * beside a special token can encode differently from llama.cpp.
 */
function partitionText(text: string, specials: readonly string[]): (string | number)[] {
  let fragments: (string | number)[] = [text];
  for (let s = 0; s < specials.length; s++) {
    const special = specials[s]!;
    if (!text.includes(special)) continue;
    const next: (string | number)[] = [];
    for (const fragment of fragments) {
      if (typeof fragment === "number") {
        next.push(fragment);
        continue;
      }
      let from = 0;
      for (let at = fragment.indexOf(special); at >= 0; at = fragment.indexOf(special, from)) {
        if (at > from) next.push(fragment.slice(from, at));
        next.push(s);
        from = at + special.length;
      }
      if (from < fragment.length) next.push(from === 0 ? fragment : fragment.slice(from));
    }
    fragments = next;
  }
  return fragments;
}

/** SentencePiece without byte fallback writes a run of unknown characters as one unknown id. */
function collapseUnknownRuns(ids: number[], start: number, unkId: number): void {
  let write = start;
  for (let read = start; read < ids.length; read++) {
    if (ids[read] === unkId && write > start && ids[write - 1] === unkId) continue;
    ids[write++] = ids[read]!;
  }
  ids.length = write;
}
