// SentencePiece Unigram segmentation: Viterbi search for the segmentation with the highest total
// piece score. A character no piece starts with gets the unknown id with the score
// (lowest NORMAL score - 10), and user-defined symbols get (UTF-8 length * highest NORMAL score
// - 0.1) so they always win. Sums are rounded to float32 as the library's float arithmetic does.

import { PieceType } from "./sentencepiece-model.js";

const UNKNOWN_PENALTY = 10;
const FLT_MIN = 1.1754943508222875e-38;
const utf8Encoder = new TextEncoder();

/** A character trie over UTF-16 code units with a piece id at nodes that end a piece. */
class PieceTrie {
  private readonly children = new Map<number, number>();
  private readonly ids: number[] = [-1];

  insert(text: string, id: number): void {
    let node = 0;
    for (let i = 0; i < text.length; i++) {
      const key = node * 0x10000 + text.charCodeAt(i);
      let child = this.children.get(key);
      if (child === undefined) {
        child = this.ids.length;
        this.ids.push(-1);
        this.children.set(key, child);
      }
      node = child;
    }
    this.ids[node] = id;
  }

  /** Returns the child of `node` for code unit `code`, or -1. */
  child(node: number, code: number): number {
    return this.children.get(node * 0x10000 + code) ?? -1;
  }

  idAt(node: number): number {
    return this.ids[node]!;
  }
}

/** One piece of a Unigram segmentation: its id (the unknown id for uncovered characters) and text. */
export interface UnigramPiece {
  id: number;
  text: string;
}

/** Unigram segmenter over a SentencePiece vocabulary. */
export class UnigramSegmenter {
  private readonly trie = new PieceTrie();
  private readonly types: Uint8Array;
  private readonly scores: Float32Array;
  private readonly utf8Lengths: Int32Array;
  private readonly minScore: number;
  private readonly maxScore: number;

  constructor(
    pieces: readonly string[],
    scores: Float32Array,
    types: Uint8Array,
    private readonly unkId: number,
  ) {
    this.types = types;
    this.scores = scores;
    this.utf8Lengths = new Int32Array(pieces.length);
    let minScore = Number.MAX_VALUE;
    let maxScore = FLT_MIN;
    for (let id = 0; id < pieces.length; id++) {
      const type = types[id]!;
      if (type === PieceType.NORMAL) {
        minScore = Math.min(minScore, scores[id]!);
        maxScore = Math.max(maxScore, scores[id]!);
      }
      if (type === PieceType.NORMAL || type === PieceType.USER_DEFINED || type === PieceType.UNUSED) {
        this.trie.insert(pieces[id]!, id);
        this.utf8Lengths[id] = utf8Encoder.encode(pieces[id]!).length;
      }
    }
    this.minScore = Math.fround(minScore);
    this.maxScore = Math.fround(maxScore);
  }

  /** Returns the best segmentation of normalized text. */
  segment(text: string): UnigramPiece[] {
    const size = text.length;
    if (size === 0) return [];
    const unknownScore = Math.fround(this.minScore - UNKNOWN_PENALTY);
    // Best path ending at each UTF-16 position: its score, where its last piece starts, and that piece.
    const bestScore = new Float64Array(size + 1);
    const bestStart = new Int32Array(size + 1).fill(-1);
    const bestId = new Int32Array(size + 1).fill(-1);

    let start = 0;
    while (start < size) {
      const scoreSoFar = bestScore[start]!;
      const charLength = isHighSurrogate(text.charCodeAt(start)) && start + 1 < size ? 2 : 1;
      let hasSingleCharPiece = false;
      let node = 0;
      for (let end = start; end < size; ) {
        node = this.trie.child(node, text.charCodeAt(end));
        if (node < 0) break;
        end++;
        const id = this.trie.idAt(node);
        if (id < 0 || this.types[id] === PieceType.UNUSED) continue;
        if (end < size && isLowSurrogate(text.charCodeAt(end))) continue;
        const score =
          this.types[id] === PieceType.USER_DEFINED ? this.utf8Lengths[id]! * this.maxScore - 0.1 : this.scores[id]!;
        const candidate = Math.fround(score + scoreSoFar);
        if (bestStart[end] === -1 || candidate > bestScore[end]!) {
          bestScore[end] = candidate;
          bestStart[end] = start;
          bestId[end] = id;
        }
        if (end - start === charLength) hasSingleCharPiece = true;
      }
      if (!hasSingleCharPiece) {
        const end = start + charLength;
        const candidate = Math.fround(unknownScore + scoreSoFar);
        if (bestStart[end] === -1 || candidate > bestScore[end]!) {
          bestScore[end] = candidate;
          bestStart[end] = start;
          bestId[end] = this.unkId;
        }
      }
      start += charLength;
    }

    const result: UnigramPiece[] = [];
    for (let end = size; end > 0; end = bestStart[end]!) {
      result.push({ id: bestId[end]!, text: text.slice(bestStart[end]!, end) });
    }
    return result.reverse();
  }
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code < 0xdc00;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code < 0xe000;
}
