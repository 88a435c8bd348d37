// SentencePiece-style BPE segmentation. It starts from single characters (and whole user-defined
// symbols, which never merge), then repeatedly merges the adjacent pair whose concatenation is the
// piece with the highest score. Among equal scores the leftmost pair wins. A binary heap of
// candidate pairs over a doubly linked list of symbols makes this O(n log n) in the input length.
// llama.cpp's SPM tokenizer for GGUF vocabularies runs the same algorithm, so one class serves both.

/**
 * Open-addressing hash table from a pair of piece ids to the id of their concatenation. Each slot
 * is three adjacent Int32 values (left, right, merged), so a probe touches one cache line.
 */
class PairTable {
  private readonly slots: Int32Array;
  private readonly mask: number;

  constructor(capacityHint: number) {
    let capacity = 16;
    while (capacity < capacityHint * 2) capacity *= 2;
    this.slots = new Int32Array(capacity * 3).fill(-1);
    this.mask = capacity - 1;
  }

  private slot(left: number, right: number): number {
    let h = Math.imul(left, 0x9e3779b1) ^ Math.imul(right + 0x7f4a7c15, 0x85ebca77);
    h ^= h >>> 15;
    return h & this.mask;
  }

  set(left: number, right: number, value: number): void {
    const slots = this.slots;
    let i = this.slot(left, right);
    while (slots[i * 3] !== -1 && !(slots[i * 3] === left && slots[i * 3 + 1] === right)) i = (i + 1) & this.mask;
    slots[i * 3] = left;
    slots[i * 3 + 1] = right;
    slots[i * 3 + 2] = value;
  }

  get(left: number, right: number): number {
    const slots = this.slots;
    let i = this.slot(left, right);
    for (;;) {
      const base = i * 3;
      const stored = slots[base]!;
      if (stored === -1) return -1;
      if (stored === left && slots[base + 1] === right) return slots[base + 2]!;
      i = (i + 1) & this.mask;
    }
  }
}

/** Set of pairs of adjacent UTF-16 code units, as an open-addressing hash table of 32-bit keys. */
class BigramSet {
  private readonly keys: Int32Array;
  private readonly used: Uint8Array;
  private readonly mask: number;

  constructor(capacityHint: number) {
    let capacity = 16;
    while (capacity < capacityHint * 2) capacity *= 2;
    this.keys = new Int32Array(capacity);
    this.used = new Uint8Array(capacity);
    this.mask = capacity - 1;
  }

  private slot(key: number): number {
    const h = Math.imul(key, 0x9e3779b1);
    return (h ^ (h >>> 16)) & this.mask;
  }

  add(first: number, second: number): void {
    const key = (first << 16) | second;
    let i = this.slot(key);
    while (this.used[i] === 1 && this.keys[i] !== key) i = (i + 1) & this.mask;
    this.keys[i] = key;
    this.used[i] = 1;
  }

  has(first: number, second: number): boolean {
    const key = (first << 16) | second;
    for (let i = this.slot(key); this.used[i] === 1; i = (i + 1) & this.mask) {
      if (this.keys[i] === key) return true;
    }
    return false;
  }
}

/** Vocabulary data the BPE segmenter needs. */
export interface BpeVocabulary {
  /** Texts that merges may produce, with their ids. */
  mergeable: ReadonlyMap<string, number>;
  /** Merge priority of each id (higher merges first). */
  scores: Float32Array;
  /** Ids that merges may pass through but that never appear in the output (SentencePiece UNUSED). */
  isUnused?: (id: number) => boolean;
  /** Symbols matched whole, longest first, before merging; they never merge with neighbours. */
  userDefined?: readonly string[];
}

/** Called for a final symbol that is not in the vocabulary (one character). */
export type UnknownHandler = (text: string, out: number[]) => void;

const MAX_CACHED_SEGMENT = 48;
const MAX_CACHE_ENTRIES = 65_536;

/** BPE segmenter over a fixed vocabulary. Reuses its scratch buffers, so it is not reentrant. */
export class BpeSegmenter {
  private readonly mergeable: ReadonlyMap<string, number>;
  private readonly scores: Float32Array;
  private readonly isUnused: ((id: number) => boolean) | undefined;
  private readonly pairs: PairTable;
  /** Ids of single BMP characters, -1 when the character is not mergeable. */
  private readonly bmpIds = new Int32Array(0x10000).fill(-1);
  /** 1 for each UTF-16 code unit that occurs in a mergeable text longer than one code unit. */
  private readonly inLongerPiece = new Uint8Array(0x10000);
  private readonly userDefinedByFirst = new Map<string, string[]>();
  /**
   * Adjacent code-unit pairs that occur in some mergeable text. Every symbol BPE builds is a
   * mergeable text, so no symbol can span two neighbours that form no such pair. The text is cut
   * there into segments that are segmented on their own, with the same result.
   */
  private readonly bigrams: BigramSet;
  private readonly cache = new Map<string, number[]>();

  // Symbols of the current segment, as a doubly linked list over parallel arrays.
  private symStart = new Int32Array(64);
  private symLength = new Int32Array(64);
  private symId = new Int32Array(64);
  private symPrev = new Int32Array(64);
  private symNext = new Int32Array(64);
  private symFrozen = new Uint8Array(64);

  // Candidate merges. Each candidate is an entry in the parallel `entry*` arrays; `heap` is a
  // binary max-heap of entry indices ordered by (score desc, left symbol asc).
  private entryScore = new Float64Array(64);
  private entryLeft = new Int32Array(64);
  private entryRight = new Int32Array(64);
  private entrySize = new Int32Array(64);
  private entryMerged = new Int32Array(64);
  private entryCount = 0;
  private heap = new Int32Array(64);
  private heapCount = 0;

  private revMerges: Map<string, [string, string]> | undefined;

  constructor(vocabulary: BpeVocabulary) {
    this.mergeable = vocabulary.mergeable;
    this.scores = vocabulary.scores;
    this.isUnused = vocabulary.isUnused;

    let pairCount = 0;
    for (const [text, id] of this.mergeable) {
      if (text.length === 1) this.bmpIds[text.charCodeAt(0)] = id;
      else for (let i = 0; i < text.length; i++) this.inLongerPiece[text.charCodeAt(i)] = 1;
      pairCount += text.length - 1;
    }
    // User-defined symbols are matched whole, so the text must not be cut inside one either.
    const userDefined = vocabulary.userDefined ?? [];
    this.bigrams = new BigramSet(pairCount + userDefined.reduce((sum, symbol) => sum + symbol.length, 0));
    for (const text of [...this.mergeable.keys(), ...userDefined]) {
      for (let i = 1; i < text.length; i++) this.bigrams.add(text.charCodeAt(i - 1), text.charCodeAt(i));
    }

    // Every way of cutting a mergeable text into two mergeable texts is a possible merge.
    this.pairs = new PairTable(pairCount);
    for (const [text, id] of this.mergeable) {
      for (let cut = 1; cut < text.length; cut++) {
        if (isLowSurrogate(text.charCodeAt(cut))) continue;
        const left = this.mergeable.get(text.slice(0, cut));
        if (left === undefined) continue;
        const right = this.mergeable.get(text.slice(cut));
        if (right !== undefined) this.pairs.set(left, right, id);
      }
    }

    for (const symbol of userDefined) {
      if (symbol.length === 0) continue;
      const first = symbol[0]!;
      const list = this.userDefinedByFirst.get(first) ?? [];
      list.push(symbol);
      list.sort((a, b) => b.length - a.length);
      this.userDefinedByFirst.set(first, list);
    }
  }

  /** Segments normalized text and appends the ids to `out`; unknown characters go to `onUnknown`. */
  encode(text: string, out: number[], onUnknown: UnknownHandler): void {
    let start = 0;
    let previous = text.charCodeAt(0);
    for (let i = 1; i < text.length; i++) {
      const code = text.charCodeAt(i);
      // A surrogate pair is one character, so it is never cut.
      if (!isLowSurrogate(code) && !this.bigrams.has(previous, code)) {
        this.encodePart(text, start, i, out, onUnknown);
        start = i;
      }
      previous = code;
    }
    if (start < text.length) this.encodePart(text, start, text.length, out, onUnknown);
  }

  /** Encodes `text[start..end)`, with shortcuts for the one- and two-unit segments common in CJK text. */
  private encodePart(text: string, start: number, end: number, out: number[], onUnknown: UnknownHandler): void {
    const simple = this.userDefinedByFirst.size === 0 && this.isUnused === undefined;
    if (simple && end - start <= 2) {
      const first = this.bmpIds[text.charCodeAt(start)]!;
      if (end - start === 1) {
        if (first >= 0) out.push(first);
        else onUnknown(text[start]!, out);
        return;
      }
      const second = this.bmpIds[text.charCodeAt(start + 1)]!;
      // Two BMP characters that are both pieces: they merge if their pair is a piece.
      if (first >= 0 && second >= 0) {
        const merged = this.pairs.get(first, second);
        if (merged >= 0) out.push(merged);
        else out.push(first, second);
        return;
      }
    }
    this.encodeCached(start === 0 && end === text.length ? text : text.slice(start, end), out, onUnknown);
  }

  /**
   * Segments the whole text as one segment, without cuts or the cache. It gives the same ids as
   * `encode`, only slower; tests compare the two.
   */
  encodeUncut(text: string, out: number[], onUnknown: UnknownHandler): void {
    this.encodeSegment(text, out, onUnknown);
  }

  private encodeCached(segment: string, out: number[], onUnknown: UnknownHandler): void {
    if (segment.length > MAX_CACHED_SEGMENT) {
      this.encodeSegment(segment, out, onUnknown);
      return;
    }
    let ids = this.cache.get(segment);
    if (ids === undefined) {
      ids = [];
      this.encodeSegment(segment, ids, onUnknown);
      if (this.cache.size >= MAX_CACHE_ENTRIES) this.cache.clear();
      this.cache.set(segment, ids);
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
  }

  private encodeSegment(text: string, out: number[], onUnknown: UnknownHandler): void {
    const count = this.splitSymbols(text);
    if (count === 0) return;
    this.heapCount = 0;
    this.entryCount = 0;
    this.revMerges = undefined;
    for (let i = 1; i < count; i++) this.addCandidate(text, i - 1, i);

    while (this.heapCount > 0) {
      const top = this.heapPop();
      const left = this.entryLeft[top]!;
      const right = this.entryRight[top]!;
      const size = this.entrySize[top]!;
      const merged = this.entryMerged[top]!;
      // A candidate is stale when either side has merged with something else since it was queued.
      const leftLength = this.symLength[left]!;
      const rightLength = this.symLength[right]!;
      if (leftLength === 0 || rightLength === 0 || leftLength + rightLength !== size) continue;

      this.symLength[left] = size;
      this.symId[left] = merged;
      const next = this.symNext[right]!;
      this.symNext[left] = next;
      if (next >= 0) this.symPrev[next] = left;
      this.symLength[right] = 0;

      this.addCandidate(text, this.symPrev[left]!, left);
      this.addCandidate(text, left, next);
    }

    for (let s = 0; s !== -1; s = this.symNext[s]!) {
      const id = this.symId[s]!;
      if (id >= 0 && (this.isUnused === undefined || !this.isUnused(id))) {
        out.push(id);
        continue;
      }
      const piece = text.substr(this.symStart[s]!, this.symLength[s]!);
      if (id < 0) onUnknown(piece, out);
      else this.resegment(piece, out, onUnknown);
    }
  }

  /** Splits `text` into initial symbols and returns their count. */
  private splitSymbols(text: string): number {
    this.ensureSymbolCapacity(text.length);
    let count = 0;
    let i = 0;
    while (i < text.length) {
      let length = isHighSurrogate(text.charCodeAt(i)) && i + 1 < text.length ? 2 : 1;
      let frozen = 0;
      let id: number;
      const userDefined = this.userDefinedByFirst.size > 0 ? this.userDefinedByFirst.get(text[i]!) : undefined;
      const symbol = userDefined?.find((s) => text.startsWith(s, i));
      if (symbol !== undefined) {
        length = symbol.length;
        frozen = 1;
        id = this.mergeable.get(symbol) ?? -1;
      } else if (length === 1) {
        id = this.bmpIds[text.charCodeAt(i)]!;
      } else {
        id = this.mergeable.get(text.substr(i, 2)) ?? -1;
      }
      this.symStart[count] = i;
      this.symLength[count] = length;
      this.symId[count] = id;
      this.symFrozen[count] = frozen;
      this.symPrev[count] = count - 1;
      this.symNext[count] = count + 1;
      count++;
      i += length;
    }
    if (count > 0) this.symNext[count - 1] = -1;
    return count;
  }

  private addCandidate(text: string, left: number, right: number): void {
    if (left < 0 || right < 0 || this.symFrozen[left] === 1 || this.symFrozen[right] === 1) return;
    const leftId = this.symId[left]!;
    const rightId = this.symId[right]!;
    let merged: number;
    if (leftId >= 0 && rightId >= 0) {
      merged = this.pairs.get(leftId, rightId);
    } else {
      // A character outside the vocabulary can still be part of a longer piece, but most (such as
      // "\n" in vocabularies with byte fallback) occur in none, and then the lookup is skipped.
      const unknown = leftId < 0 ? left : right;
      if (this.inLongerPiece[text.charCodeAt(this.symStart[unknown]!)] === 0) return;
      merged = this.mergeable.get(text.substr(this.symStart[left]!, this.symLength[left]! + this.symLength[right]!)) ?? -1;
    }
    if (merged < 0) return;
    const size = this.symLength[left]! + this.symLength[right]!;
    if (this.isUnused !== undefined && this.isUnused(merged)) {
      // Unused pieces are split back into the two symbols that formed them at output time.
      this.revMerges ??= new Map();
      const start = this.symStart[left]!;
      this.revMerges.set(text.substr(start, size), [
        text.substr(start, this.symLength[left]!),
        text.substr(this.symStart[right]!, this.symLength[right]!),
      ]);
    }
    this.heapPush(this.scores[merged]!, left, right, size, merged);
  }

  private resegment(piece: string, out: number[], onUnknown: UnknownHandler): void {
    const id = this.mergeable.get(piece);
    if (id === undefined) {
      onUnknown(piece, out);
      return;
    }
    const parts = this.isUnused !== undefined && this.isUnused(id) ? this.revMerges?.get(piece) : undefined;
    if (parts === undefined) {
      out.push(id);
      return;
    }
    this.resegment(parts[0], out, onUnknown);
    this.resegment(parts[1], out, onUnknown);
  }

  /** Returns true when entry `a` is merged before entry `b`. */
  private before(a: number, b: number): boolean {
    const scoreA = this.entryScore[a]!;
    const scoreB = this.entryScore[b]!;
    return scoreA > scoreB || (scoreA === scoreB && this.entryLeft[a]! < this.entryLeft[b]!);
  }

  private heapPush(score: number, left: number, right: number, size: number, merged: number): void {
    if (this.entryCount === this.entryScore.length) this.growEntries();
    const entry = this.entryCount++;
    this.entryScore[entry] = score;
    this.entryLeft[entry] = left;
    this.entryRight[entry] = right;
    this.entrySize[entry] = size;
    this.entryMerged[entry] = merged;

    if (this.heapCount === this.heap.length) this.heap = grown(this.heap, new Int32Array(this.heap.length * 2));
    const heap = this.heap;
    let i = this.heapCount++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(entry, heap[parent]!)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = entry;
  }

  /** Removes and returns the first entry of the heap. */
  private heapPop(): number {
    const heap = this.heap;
    const top = heap[0]!;
    const last = --this.heapCount;
    if (last === 0) return top;
    const moved = heap[last]!;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= last) break;
      const r = l + 1;
      const best = r < last && this.before(heap[r]!, heap[l]!) ? r : l;
      if (!this.before(heap[best]!, moved)) break;
      heap[i] = heap[best]!;
      i = best;
    }
    heap[i] = moved;
    return top;
  }

  private growEntries(): void {
    const capacity = this.entryScore.length * 2;
    this.entryScore = grown(this.entryScore, new Float64Array(capacity));
    this.entryLeft = grown(this.entryLeft, new Int32Array(capacity));
    this.entryRight = grown(this.entryRight, new Int32Array(capacity));
    this.entrySize = grown(this.entrySize, new Int32Array(capacity));
    this.entryMerged = grown(this.entryMerged, new Int32Array(capacity));
  }

  private ensureSymbolCapacity(count: number): void {
    if (count <= this.symStart.length) return;
    let capacity = this.symStart.length;
    while (capacity < count) capacity *= 2;
    this.symStart = new Int32Array(capacity);
    this.symLength = new Int32Array(capacity);
    this.symId = new Int32Array(capacity);
    this.symPrev = new Int32Array(capacity);
    this.symNext = new Int32Array(capacity);
    this.symFrozen = new Uint8Array(capacity);
  }
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code < 0xdc00;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code < 0xe000;
}

function grown<T extends Float64Array | Int32Array>(old: T, next: T): T {
  next.set(old);
  return next;
}
