// Conformance of the tokenizers with the shared suites: SentencePiece models (ChatGLM3's BPE
// vocabulary, two Unigram models, one with an NFKC character map) against the sentencepiece
// library's ids, and llama-family GGUF vocabularies against llama.cpp's ids. Every case is also
// decoded in full and through the stream decoder.

import { readFileSync } from "node:fs";
import { resolve } from "node:path";

import { describe, expect, it } from "vitest";

import { loadTokenizer } from "../lib/tokenizer/index.js";
import { Normalizer } from "../lib/tokenizer/normalizer.js";
import { parseSentencePieceModel } from "../lib/tokenizer/sentencepiece-model.js";
import { TOKENIZER_SUITES_DIR, sharedPath } from "./fixtures.js";
import { readSuite, streamPieces } from "./tokenizer-helpers.js";

interface Suite {
  name: string;
  model: string;
  input: string;
  output: string;
  /** Whether decode(encode(text)) gives the text back (false for the NFKC model, which rewrites text). */
  roundTrips: boolean;
}

const suites: Suite[] = [
  { name: "chatglm3", model: "chatglm3/tokenizer.model", input: "chatglm3/chatglm3.inp", output: "chatglm3/chatglm3.out", roundTrips: true },
  { name: "unigram", model: "unigram/unigram.model", input: "unigram/unigram.inp", output: "unigram/unigram.out", roundTrips: true },
  {
    name: "unigram-nfkc",
    model: "unigram/unigram-nfkc.model",
    input: "unigram/unigram-nfkc.inp",
    output: "unigram/unigram-nfkc.out",
    roundTrips: false,
  },
  ...["llama-spm", "phi-3", "baichuan"].map((name) => ({
    name,
    model: `ggml-vocab-${name}.gguf`,
    input: `ggml-vocab-${name}.gguf.inp`,
    output: `ggml-vocab-${name}.gguf.out`,
    roundTrips: true,
  })),
];

let nfkcNormalizer: Normalizer | undefined;

/**
 * Returns the text the NFKC model's decode gives back: the normalized text with U+2581 as spaces and the
 * leading spaces dropped. The ids come from the sentencepiece library, so this checks the
 * normalizer against the library.
 */
function nfkcModelText(text: string): string {
  nfkcNormalizer ??= new Normalizer(
    parseSentencePieceModel(readFileSync(sharedPath("tokenizer-suites", "unigram/unigram-nfkc.model"))).normalizerSpec,
    [],
    false,
  );
  return nfkcNormalizer.normalize(text).replaceAll("\u2581", " ").replace(/^ +/, "");
}

describe.each(suites)("suite $name", (suite) => {
  const cases = readSuite(sharedPath("tokenizer-suites", suite.input), sharedPath("tokenizer-suites", suite.output));
  const loaded = loadTokenizer(sharedPath("tokenizer-suites", suite.model));

  it("has its cases", () => {
    expect(cases.length).toBeGreaterThanOrEqual(46);
  });

  it("encodes every case exactly", async () => {
    const tokenizer = await loaded;
    for (const c of cases) {
      expect(tokenizer.encode(c.text), `case ${c.index} ${JSON.stringify(c.text)}`).toEqual(c.ids);
    }
  });

  it("stream decode equals full decode", async () => {
    const tokenizer = await loaded;
    for (const c of cases) {
      const full = tokenizer.decode(c.ids);
      const pieces = streamPieces(tokenizer, c.ids);
      expect(pieces.join(""), `case ${c.index}`).toBe(full);
      expect(full.includes("\ufffd"), `case ${c.index} decodes to U+FFFD`).toBe(false);
      for (const piece of pieces) expect(piece.includes("\ufffd"), `case ${c.index} streams U+FFFD`).toBe(false);
    }
  });

  it("decodes every case back to its normalized text", async () => {
    const tokenizer = await loaded;
    const normalize = suite.roundTrips ? (text: string) => text : nfkcModelText;
    for (const c of cases) expect(tokenizer.decode(c.ids), `case ${c.index}`).toBe(normalize(c.text));
  });
});

describe("suite unigram-nfkc normalization", () => {
  it("folds full-width forms and extra spaces", async () => {
    const tokenizer = await loadTokenizer(sharedPath("tokenizer-suites", "unigram/unigram-nfkc.model"));
    expect(tokenizer.decode(tokenizer.encode("  ＡＢＣ１２３   x  "))).toBe("ABC123 x");
    expect(tokenizer.encode("ＡＢＣ")).toEqual(tokenizer.encode("ABC"));
    expect(tokenizer.encode("   ")).toEqual([]);
  });
});

describe("byte-level BPE GGUF vocabularies", () => {
  it.each(["gpt-2", "deepseek-llm", "falcon"])("rejects %s", async (name) => {
    const path = resolve(TOKENIZER_SUITES_DIR, `ggml-vocab-${name}.gguf`);
    const error = await loadTokenizer(sharedPath("tokenizer-suites", `ggml-vocab-${name}.gguf`)).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_GEB_UNSUPPORTED", name: "UnsupportedError", path });
    expect((error as Error).message).toContain("tokenizer.ggml.model");
  });
});
