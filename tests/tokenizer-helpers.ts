// Shared helpers of the tokenizer tests: reading the conformance suites and checking the stream
// decoder against the full decode.

import { readFileSync } from "node:fs";

import type { Tokenizer } from "../lib/tokenizer/index.js";

/** One text of a conformance suite with its expected ids. */
export interface SuiteCase {
  index: number;
  text: string;
  ids: number[];
}

/** Reads a `.inp`/`.out` pair: texts separated by the llama.cpp separator line, ids one line per text. */
export function readSuite(inputPath: string, outputPath: string): SuiteCase[] {
  const texts = readFileSync(inputPath, "utf8").split("\n__ggml_vocab_test__\n");
  if (texts.at(-1) !== "") throw new Error(`${inputPath} does not end with the separator line`);
  texts.pop();
  const lines = readFileSync(outputPath, "utf8").split("\n");
  return texts.map((text, index) => {
    const line = lines[index];
    if (line === undefined) throw new Error(`${outputPath} has no line ${index + 1}`);
    const trimmed = line.trim();
    return { index, text, ids: trimmed === "" ? [] : trimmed.split(" ").map(Number) };
  });
}

/** Decodes ids one at a time through a stream decoder and returns every piece of output. */
export function streamPieces(tokenizer: Tokenizer, ids: readonly number[], skipSpecial = false): string[] {
  const decoder = tokenizer.createStreamDecoder({ skipSpecial });
  const out = ids.map((id) => decoder.push(id));
  out.push(decoder.flush());
  return out;
}

/** A small seeded generator (mulberry32), so property tests are repeatable. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
