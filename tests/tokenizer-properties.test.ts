// Properties of the tokenizers over seeded random text. decode(encode(s)) gives s back after the
// model's normalization, and the stream decoder agrees with the full decode for any id sequence.
// Long inputs without spaces, or made of one repeated character, must finish: a quadratic
// segmenter would time the suite out. Synthetic SentencePiece models, written with a small protobuf
// encoder, cover piece types and settings the real models do not use.

import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { loadTokenizer, type Tokenizer } from "../lib/tokenizer/index.js";
import { Normalizer } from "../lib/tokenizer/normalizer.js";
import { ModelType, parseSentencePieceModel, PieceType } from "../lib/tokenizer/sentencepiece-model.js";
import { Tokenizer as TokenizerClass, type TokenizerConfig } from "../lib/tokenizer/tokenizer.js";
import { sharedPath } from "./fixtures.js";
import { seededRandom, streamPieces } from "./tokenizer-helpers.js";

const chatglm3 = loadTokenizer(sharedPath("tokenizer-suites", "chatglm3", "tokenizer.model"));
const unigram = loadTokenizer(sharedPath("tokenizer-suites", "unigram", "unigram.model"));
const unigramNfkcPath = sharedPath("tokenizer-suites", "unigram", "unigram-nfkc.model");
const unigramNfkc = loadTokenizer(unigramNfkcPath);
const llamaSpm = loadTokenizer(sharedPath("tokenizer-suites", "ggml-vocab-llama-spm.gguf"));
const gebTiny = loadTokenizer(sharedPath("models", "geb-tiny"));

/** Character classes the random strings draw from. */
const CHARACTER_POOLS: string[][] = [
  [..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"],
  [..."的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年你好世界龘"],
  ["\u{1f600}", "\u{1f44d}", "\u{1f3fd}", "\u200d", "\u{1f468}", "\u2764", "\ufe0f", "\u{20000}", "\u{2a6d6}"],
  ["\u0301", "\u0308", "\u0323", "e", "a", "\u00e9", "\u00fc", "\u0130"],
  ["\u0000", "\u0001", "\u0007", "\u001b", "\u007f", "\u0085", "\u200b", "\ufeff", "\ufffd"],
  [" ", " ", "  ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "\u2028"],
  [..."，。！？、；：“”《》（）【】…—～·,.;:!?'\"()[]{}<>|/\\-_=+*&^%$#@~`"],
  ["\uff21", "\uff11", "\u2460", "\u3251", "\ufb01", "\u2126", "\u212b", "\u00bd"],
];

function randomText(random: () => number, maxLength: number): string {
  const length = Math.floor(random() * maxLength);
  let text = "";
  for (let i = 0; i < length; i++) {
    const pool = CHARACTER_POOLS[Math.floor(random() * CHARACTER_POOLS.length)]!;
    text += pool[Math.floor(random() * pool.length)]!;
  }
  return text;
}

/** What decode(encode(text)) must give for a model without a character map: U+2581 reads as a space. */
function identityRoundTrip(text: string): string {
  return text.replaceAll("\u2581", " ");
}

describe.each([
  ["chatglm3 (BPE)", chatglm3, 11],
  ["unigram", unigram, 12],
  ["llama-spm GGUF", llamaSpm, 13],
  ["geb-tiny", gebTiny, 14],
] as const)("random text on %s", (_name, loaded, seed) => {
  it("round-trips through encode and decode", async () => {
    const tokenizer = await loaded;
    const random = seededRandom(seed);
    for (let i = 0; i < 400; i++) {
      const text = randomText(random, 40);
      const ids = tokenizer.encode(text);
      expect(tokenizer.decode(ids), JSON.stringify(text)).toBe(identityRoundTrip(text));
      const pieces = streamPieces(tokenizer, ids);
      expect(pieces.join(""), JSON.stringify(text)).toBe(identityRoundTrip(text));
      expect(pieces.some((p) => p.includes("\ufffd")) && !text.includes("\ufffd"), JSON.stringify(text)).toBe(false);
    }
  });

  it("streams random id sequences like the full decode", async () => {
    const tokenizer = await loaded;
    const random = seededRandom(seed + 100);
    for (let i = 0; i < 200; i++) {
      const ids = Array.from({ length: Math.floor(random() * 30) }, () =>
        // Half of the ids are byte pieces (3..258 in these vocabularies), to split characters.
        random() < 0.5 ? 3 + Math.floor(random() * 256) : Math.floor(random() * tokenizer.vocabSize),
      );
      expect(streamPieces(tokenizer, ids).join(""), JSON.stringify(ids)).toBe(tokenizer.decode(ids));
    }
  });
});

describe("BPE segment cuts", () => {
  it("give the same ids as whole-text BPE", async () => {
    const { BpeSegmenter } = await import("../lib/tokenizer/bpe.js");
    const { PieceType: Types } = await import("../lib/tokenizer/sentencepiece-model.js");
    const model = parseSentencePieceModel(readFileSync(sharedPath("tokenizer-suites", "chatglm3", "tokenizer.model")));
    const mergeable = new Map<string, number>();
    model.pieces.forEach((piece, id) => {
      if (model.types[id] === Types.NORMAL) mergeable.set(piece, id);
    });
    const segmenter = new BpeSegmenter({ mergeable, scores: model.scores });
    const unknown = (text: string, out: number[]): void => {
      out.push(-text.codePointAt(0)!);
    };
    const random = seededRandom(41);
    for (let i = 0; i < 300; i++) {
      const text = "\u2581" + randomText(random, 80).replaceAll(" ", "\u2581");
      const cut: number[] = [];
      const whole: number[] = [];
      segmenter.encode(text, cut, unknown);
      segmenter.encodeUncut(text, whole, unknown);
      expect(cut, JSON.stringify(text)).toEqual(whole);
    }
  });
});

describe("random text on unigram-nfkc", () => {
  it("round-trips to the normalized text", async () => {
    const tokenizer = await unigramNfkc;
    const model = parseSentencePieceModel(readFileSync(unigramNfkcPath));
    const normalizer = new Normalizer(model.normalizerSpec, [], false);
    const random = seededRandom(21);
    for (let i = 0; i < 400; i++) {
      const text = randomText(random, 40);
      const expected = normalizer.normalize(text).replaceAll("\u2581", " ").replace(/^ +/, "");
      const ids = tokenizer.encode(text);
      expect(tokenizer.decode(ids), JSON.stringify(text)).toBe(expected);
      expect(streamPieces(tokenizer, ids).join(""), JSON.stringify(text)).toBe(expected);
    }
  });
});

describe("long inputs", () => {
  it("encodes 1 MB without spaces", async () => {
    const tokenizer = await chatglm3;
    const random = seededRandom(5);
    let text = "";
    const letters = "abcdefghijklmnopqrstuvwxyz中文字符测试";
    while (text.length < 1_000_000) text += letters[Math.floor(random() * letters.length)]!;
    const ids = tokenizer.encode(text);
    expect(ids.length).toBeGreaterThan(100_000);
    expect(tokenizer.decode(ids)).toBe(text);
  });

  it("encodes long runs of one character", async () => {
    const tokenizer = await chatglm3;
    for (const [unit, count] of [["a", 300_000], ["哈", 200_000], [" ", 200_000], ["\n", 100_000], ["\u{1f600}", 50_000]] as const) {
      const text = unit.repeat(count);
      expect(tokenizer.decode(tokenizer.encode(text)), `${JSON.stringify(unit)} x ${count}`).toBe(text);
    }
  });

  it("encodes long runs on unigram and GGUF vocabularies", async () => {
    const text = "ab".repeat(100_000) + "龘".repeat(50_000);
    for (const loaded of [unigram, llamaSpm]) {
      const tokenizer = await loaded;
      expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Synthetic SentencePiece models.

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value < 0 ? BigInt.asUintN(64, BigInt(value)) : BigInt(value);
  do {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? byte | 0x80 : byte);
  } while (v > 0n);
  return out;
}

function field(number: number, payload: number[] | string | Uint8Array): number[] {
  const bytes = typeof payload === "string" ? [...new TextEncoder().encode(payload)] : [...payload];
  return [...varint(number * 8 + 2), ...varint(bytes.length), ...bytes];
}

function varintField(number: number, value: number): number[] {
  return [...varint(number * 8), ...varint(value)];
}

function floatField(number: number, value: number): number[] {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setFloat32(0, value, true);
  return [...varint(number * 8 + 5), ...bytes];
}

interface SyntheticModel {
  pieces: [string, number, number][];
  modelType?: number;
  byteFallback?: boolean;
  addDummyPrefix?: boolean;
  removeExtraWhitespaces?: boolean;
}

/** Serializes a ModelProto with the given pieces (text, score, type) and settings. */
function modelBytes(model: SyntheticModel): Uint8Array {
  const bytes: number[] = [];
  for (const [piece, score, type] of model.pieces) {
    bytes.push(...field(1, [...field(1, piece), ...floatField(2, score), ...varintField(3, type)]));
  }
  bytes.push(
    ...field(2, [
      ...varintField(3, model.modelType ?? ModelType.BPE),
      ...varintField(35, model.byteFallback ? 1 : 0),
      ...varintField(43, -1),
    ]),
  );
  bytes.push(
    ...field(3, [
      ...field(1, "identity"),
      ...varintField(3, model.addDummyPrefix ? 1 : 0),
      ...varintField(4, model.removeExtraWhitespaces ? 1 : 0),
    ]),
  );
  return Uint8Array.from(bytes);
}

/** Builds a tokenizer straight from synthetic model bytes, as loadTokenizer does for a .model file. */
function syntheticTokenizer(model: SyntheticModel, userDefinedWithSpace = false): Tokenizer {
  const parsed = parseSentencePieceModel(modelBytes(model));
  const userDefined = parsed.pieces.filter((_, id) => parsed.types[id] === PieceType.USER_DEFINED);
  if (userDefinedWithSpace) userDefined.push("\u0001 \u0001");
  const config: TokenizerConfig = {
    family: "sentencepiece",
    pieces: parsed.pieces,
    scores: parsed.scores,
    types: parsed.types,
    segmentation: {
      kind: "sentencepiece",
      modelType: parsed.trainerSpec.modelType === ModelType.BPE ? "bpe" : "unigram",
      normalizer: new Normalizer(parsed.normalizerSpec, userDefined, false),
      byteFallback: parsed.trainerSpec.byteFallback,
    },
    unkId: 0,
    unkSurface: parsed.trainerSpec.unkSurface,
    stripLeadingSpace: parsed.normalizerSpec.addDummyPrefix,
    stripAllLeadingSpaces: parsed.normalizerSpec.removeExtraWhitespaces,
    promptPrefix: [],
    stopTokenIds: [],
  };
  return new TokenizerClass(config);
}

const { NORMAL, UNKNOWN, USER_DEFINED, UNUSED } = PieceType;

describe("synthetic SentencePiece models", () => {
  it("parses settings and negative ids", () => {
    const parsed = parseSentencePieceModel(modelBytes({ pieces: [["<unk>", 0, UNKNOWN], ["a", -1, NORMAL]], addDummyPrefix: false }));
    expect(parsed.pieces).toEqual(["<unk>", "a"]);
    expect([...parsed.types]).toEqual([UNKNOWN, NORMAL]);
    expect(parsed.scores[1]).toBe(-1);
    expect(parsed.trainerSpec.padId).toBe(-1);
    expect(parsed.trainerSpec.modelType).toBe(ModelType.BPE);
    expect(parsed.normalizerSpec.addDummyPrefix).toBe(false);
    expect(parsed.normalizerSpec.escapeWhitespaces).toBe(true);
  });

  it("merges through UNUSED pieces but never outputs them", () => {
    const tokenizer = syntheticTokenizer({
      pieces: [["<unk>", 0, UNKNOWN], ["a", -10, NORMAL], ["b", -10, NORMAL], ["c", -10, NORMAL], ["ab", -1, UNUSED], ["abc", -2, NORMAL]],
    });
    expect(tokenizer.encode("abc")).toEqual([5]);
    expect(tokenizer.encode("ab")).toEqual([1, 2]);
    expect(tokenizer.encode("abab")).toEqual([1, 2, 1, 2]);
  });

  it("prefers the higher score, then the leftmost pair", () => {
    const tokenizer = syntheticTokenizer({
      pieces: [["<unk>", 0, UNKNOWN], ["a", -10, NORMAL], ["b", -10, NORMAL], ["ab", -3, NORMAL], ["ba", -2, NORMAL], ["aa", -3, NORMAL]],
    });
    expect(tokenizer.encode("aba")).toEqual([1, 4]);
    expect(tokenizer.encode("aaa")).toEqual([5, 1]);
  });

  it("keeps user-defined symbols whole", () => {
    const tokenizer = syntheticTokenizer({
      pieces: [["<unk>", 0, UNKNOWN], ["a", -10, NORMAL], ["<x>", 0, USER_DEFINED], ["a<", -1, NORMAL], ["<", -10, NORMAL], ["x", -10, NORMAL], [">", -10, NORMAL]],
    });
    expect(tokenizer.encode("a<x>a")).toEqual([1, 2, 1]);
    expect(tokenizer.encode("a<y")).toEqual([3, 0]);
  });

  it("writes one unknown id for a run without byte fallback", () => {
    const tokenizer = syntheticTokenizer({ pieces: [["<unk>", 0, UNKNOWN], ["a", -1, NORMAL]] });
    expect(tokenizer.encode("zz\u{1f600}a?a")).toEqual([0, 1, 0, 1]);
    expect(tokenizer.decode([0, 1])).toBe(" \u2047 a");
  });

  it("removes extra spaces the same way on both normalizer paths", () => {
    const model: SyntheticModel = {
      pieces: [["<unk>", 0, UNKNOWN], ["\u2581", -1, NORMAL], ["a", -1, NORMAL]],
      addDummyPrefix: true,
      removeExtraWhitespaces: true,
    };
    const stringPath = new Normalizer(parseSentencePieceModel(modelBytes(model)).normalizerSpec, [], false);
    const bytePath = new Normalizer(parseSentencePieceModel(modelBytes(model)).normalizerSpec, ["\u0001 \u0001"], false);
    expect(stringPath.normalize("  a   b  ")).toBe("\u2581a\u2581b");
    expect(stringPath.normalize("   ")).toBe("");
    const random = seededRandom(31);
    for (let i = 0; i < 300; i++) {
      const text = randomText(random, 20);
      expect(bytePath.normalize(text), JSON.stringify(text)).toBe(stringPath.normalize(text));
    }
  });

  it("rejects WORD models", async () => {
    const bytes = modelBytes({ pieces: [["<unk>", 0, UNKNOWN]], modelType: ModelType.WORD });
    const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "geb-tokenizer-"));
    try {
      writeFileSync(join(dir, "word.model"), bytes);
      await expect(loadTokenizer(join(dir, "word.model"))).rejects.toMatchObject({ code: "ERR_GEB_UNSUPPORTED" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("rejects truncated and mistyped protobuf", () => {
    const bytes = modelBytes({ pieces: [["<unk>", 0, UNKNOWN], ["a", -1, NORMAL]] });
    expect(() => parseSentencePieceModel(bytes.subarray(0, bytes.length - 3))).toThrow(
      expect.objectContaining({ code: "ERR_GEB_MODEL_FORMAT" }),
    );
    expect(() => parseSentencePieceModel(Uint8Array.from(varintField(1, 5)))).toThrow(
      expect.objectContaining({ code: "ERR_GEB_MODEL_FORMAT" }),
    );
    expect(() => parseSentencePieceModel(new Uint8Array(0))).toThrow(expect.objectContaining({ code: "ERR_GEB_MODEL_FORMAT" }));
  });
});
