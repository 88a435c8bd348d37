// Token sampling over one row of logits: penalties and logit bias, temperature, top-k, top-p,
// min-p, then a draw from a seeded PRNG. Stages run in that order, as Hugging Face's generate()
// applies them, so GEB's published settings behave as they were tuned. The full vocabulary
// (64,896 rows for GEB-1.3B) is not sorted: top-k keeps a heap of k entries, and top-p without
// top-k bisects for the logit threshold of the kept set and sorts only the tokens near it.

import { InvalidArgumentError, ModelFormatError } from "../errors.js";
import { checkNumber, showValue } from "./validate.js";

/** Sampling options, as accepted by `generate()` and `chat()`. */
export interface SamplingOptions {
  /**
   * Softmax temperature, >= 0. 0 selects greedy decoding (argmax; ties go to the lowest id).
   * Default: the model family's default (GEB 0.3, llama 0.8).
   */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 turns the stage off. Default: GEB 5, llama 40. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability sum reaches p, in (0, 1]. Default: GEB 0.5, llama 0.95. */
  topP?: number;
  /** Drop tokens whose probability is below minP times the top token's, in [0, 1]. Default: GEB 0, llama 0.05. */
  minP?: number;
  /**
   * Hugging Face repetition penalty, > 0: the logit of every token seen in the penalty window is
   * divided by it when positive and multiplied by it when negative. 1 turns it off.
   * Default: GEB 1.15, llama 1.
   */
  repetitionPenalty?: number;
  /** Penalty window: the last N tokens of the context (prompt included). Default: the whole context. */
  repeatLastN?: number;
  /** Subtracted once from the logit of every token present in the penalty window. Default 0. */
  presencePenalty?: number;
  /** Subtracted from a token's logit once per occurrence in the penalty window. Default 0. */
  frequencyPenalty?: number;
  /** Added to the logits of the given token ids before any other stage; `-Infinity` bans a token. */
  logitBias?: Record<number, number> | Map<number, number>;
  /** PRNG seed, an integer in [0, 2^53). Same seed, options and model give the same output. Default: random. */
  seed?: number;
}

/** Sampling settings after validation, with every default filled in. */
export interface ResolvedSampling {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  /** 0 means the whole context. */
  repeatLastN: number;
  presencePenalty: number;
  frequencyPenalty: number;
  logitBias: Map<number, number>;
  seed: number;
}

/** Family defaults for the options a caller leaves out. */
export type SamplingDefaults = Pick<ResolvedSampling, "temperature" | "topK" | "topP" | "minP" | "repetitionPenalty">;

/** GEB-1.3B's published generation settings (its config.json). */
export const GEB_SAMPLING_DEFAULTS: SamplingDefaults = {
  temperature: 0.3,
  topK: 5,
  topP: 0.5,
  minP: 0,
  repetitionPenalty: 1.15,
};

/** Defaults for llama-family GGUF models (llama.cpp's common settings). */
export const LLAMA_SAMPLING_DEFAULTS: SamplingDefaults = {
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repetitionPenalty: 1,
};

/** Pick a random seed from the operating system's generator. */
export function randomSeed(): number {
  const words = new Uint32Array(2);
  globalThis.crypto.getRandomValues(words);
  // 53 bits: 21 from the first word, 32 from the second.
  return (words[0]! & 0x1fffff) * 0x100000000 + words[1]!;
}

/**
 * Validate sampling options against a vocabulary of `vocabSize` ids and fill in defaults.
 * Throws InvalidArgumentError (ERR_GEB_INVALID_ARGUMENT) naming the first invalid option.
 */
export function resolveSampling(options: SamplingOptions, defaults: SamplingDefaults, vocabSize: number): ResolvedSampling {
  const temperature = checkNumber("temperature", options.temperature, { min: 0 }, defaults.temperature);
  const topK = checkNumber("topK", options.topK, { min: 0, integer: true }, defaults.topK);
  const topP = checkNumber("topP", options.topP, { min: 0, max: 1, minExclusive: true }, defaults.topP);
  const minP = checkNumber("minP", options.minP, { min: 0, max: 1 }, defaults.minP);
  const repetitionPenalty = checkNumber(
    "repetitionPenalty",
    options.repetitionPenalty,
    { min: 0, minExclusive: true },
    defaults.repetitionPenalty,
  );
  const repeatLastN = checkNumber("repeatLastN", options.repeatLastN, { min: 1, integer: true }, 0);
  const presencePenalty = checkNumber("presencePenalty", options.presencePenalty, {}, 0);
  const frequencyPenalty = checkNumber("frequencyPenalty", options.frequencyPenalty, {}, 0);
  const seed =
    options.seed === undefined
      ? randomSeed()
      : checkNumber("seed", options.seed, { min: 0, max: Number.MAX_SAFE_INTEGER, integer: true }, 0);
  const logitBias = resolveLogitBias(options.logitBias, vocabSize);
  return { temperature, topK, topP, minP, repetitionPenalty, repeatLastN, presencePenalty, frequencyPenalty, logitBias, seed };
}

function resolveLogitBias(value: unknown, vocabSize: number): Map<number, number> {
  const bias = new Map<number, number>();
  if (value === undefined) return bias;
  let entries: Iterable<[unknown, unknown]>;
  if (value instanceof Map) {
    entries = value.entries();
  } else if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    entries = Object.entries(value).map(([key, v]) => [key.trim() === "" ? NaN : Number(key), v] as [unknown, unknown]);
  } else {
    throw new InvalidArgumentError(
      `Option logitBias must be a Map or an object from token id to number, received ${showValue(value)}.`,
      { expected: "Map<number, number> | Record<number, number>", received: value },
    );
  }
  for (const [id, amount] of entries) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new InvalidArgumentError(
        `Option logitBias has key ${showValue(id)}, but keys must be token ids in [0, ${vocabSize - 1}].`,
        { expected: `integer in [0, ${vocabSize - 1}]`, received: id },
      );
    }
    // -Infinity is allowed: it bans the token. NaN and +Infinity are not meaningful.
    if (typeof amount !== "number" || Number.isNaN(amount) || amount === Infinity) {
      throw new InvalidArgumentError(
        `Option logitBias[${id}] must be a finite number or -Infinity, received ${showValue(amount)}.`,
        { expected: "finite number or -Infinity", received: amount },
      );
    }
    bias.set(id, amount);
  }
  let banned = 0;
  for (const amount of bias.values()) if (amount === -Infinity) banned++;
  if (banned === vocabSize) {
    throw new InvalidArgumentError(
      `Option logitBias bans all ${vocabSize} tokens with -Infinity, so no token can be sampled; leave at least one token allowed.`,
      { expected: "at least one token not set to -Infinity", received: banned },
    );
  }
  return bias;
}

/**
 * xoshiro128** PRNG (Blackman and Vigna, 2018) seeded through splitmix32. Small, fast, and the
 * same sequence on every platform, unlike Math.random.
 */
export class Random {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  constructor(seed: number) {
    let x = (seed >>> 0) ^ Math.imul(Math.floor(seed / 0x100000000) >>> 0, 0x9e3779b9);
    const splitmix = (): number => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = splitmix();
    this.s1 = splitmix();
    this.s2 = splitmix();
    this.s3 = splitmix();
  }

  /** Next 32 random bits as an unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  next(): number {
    const high = this.nextUint32() >>> 5;
    const low = this.nextUint32() >>> 6;
    return (high * 67108864 + low) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** One sampled token. */
export interface SampledToken {
  token: number;
  /**
   * Natural-log probability of `token` after penalties and logit bias, before temperature and
   * truncation (the model's own distribution). NaN unless the caller asked for it.
   */
  logprob: number;
}

/** True when `a` ranks before `b`: higher logit first, the lower id on equal logits. */
function ranksBefore(logitA: number, idA: number, logitB: number, idB: number): boolean {
  return logitA > logitB || (logitA === logitB && idA < idB);
}

/**
 * Draws tokens from logits rows. One sampler serves one generation: it owns the PRNG state and
 * scratch buffers of the vocabulary's size.
 */
export class Sampler {
  readonly settings: ResolvedSampling;
  private readonly random: Random;
  // Scratch buffers, sized once: penalised logits, and candidate ids with their scaled logits.
  private work: Float32Array;
  private candidateIds: Int32Array;
  private candidateLogits: Float64Array;
  private candidateCount = 0;
  // Scaled logits and their exp() over the whole vocabulary, for sampling without top-k.
  private scaledAll: Float64Array;
  private weightsAll: Float64Array;
  // Occurrences per id in the penalty window; all zero between calls.
  private counts: Uint32Array;

  constructor(settings: ResolvedSampling, vocabSize: number) {
    this.settings = settings;
    this.random = new Random(settings.seed);
    this.work = new Float32Array(vocabSize);
    this.candidateIds = new Int32Array(vocabSize);
    this.candidateLogits = new Float64Array(vocabSize);
    this.scaledAll = new Float64Array(vocabSize);
    this.weightsAll = new Float64Array(vocabSize);
    this.counts = new Uint32Array(vocabSize);
  }

  /**
   * Pick the next token from `logits` (one row, the model's vocabulary size). `context` is the
   * sequence so far (prompt and generated tokens), used by the penalties.
   */
  sample(logits: Float32Array, context: ArrayLike<number>, wantLogprob = false): SampledToken {
    // Plain greedy decoding reads the row once, with no copy: the result equals the stages below,
    // which would leave every logit unchanged before the argmax.
    if (this.settings.temperature === 0 && !wantLogprob && this.leavesLogitsUnchanged()) {
      return { token: greedyToken(logits), logprob: NaN };
    }
    if (logits.length !== this.work.length) this.resize(logits.length);
    const work = this.work;
    work.set(logits);
    this.applyPenalties(work, context);
    for (const [id, amount] of this.settings.logitBias) {
      if (id < work.length) work[id] = work[id]! + amount;
    }

    try {
      limitToSampleable(work);
    } catch (error) {
      // blame the settings only when the model's own row had a finite logit
      throw hasFiniteOrPositiveLogit(logits) ? error : nonFiniteModelOutput();
    }

    const token = this.settings.temperature === 0 ? argmax(work) : this.draw(work);
    const logprob = wantLogprob ? work[token]! - logSumExp(work) : NaN;
    return { token, logprob };
  }

  private leavesLogitsUnchanged(): boolean {
    const { repetitionPenalty, presencePenalty, frequencyPenalty, logitBias } = this.settings;
    return repetitionPenalty === 1 && presencePenalty === 0 && frequencyPenalty === 0 && logitBias.size === 0;
  }

  private resize(vocabSize: number): void {
    this.work = new Float32Array(vocabSize);
    this.candidateIds = new Int32Array(vocabSize);
    this.candidateLogits = new Float64Array(vocabSize);
    this.scaledAll = new Float64Array(vocabSize);
    this.weightsAll = new Float64Array(vocabSize);
    this.counts = new Uint32Array(vocabSize);
  }

  private applyPenalties(work: Float32Array, context: ArrayLike<number>): void {
    const { repetitionPenalty, presencePenalty, frequencyPenalty, repeatLastN } = this.settings;
    if (repetitionPenalty === 1 && presencePenalty === 0 && frequencyPenalty === 0) return;

    // Count each id of the window once, in a vocabulary-sized array reset after use.
    const start = repeatLastN > 0 ? Math.max(0, context.length - repeatLastN) : 0;
    const counts = this.counts;
    const seen: number[] = [];
    for (let i = start; i < context.length; i++) {
      const id = context[i]!;
      if (id < 0 || id >= work.length) continue;
      if (counts[id] === 0) seen.push(id);
      counts[id]!++;
    }

    for (const id of seen) {
      let logit = work[id]!;
      if (repetitionPenalty !== 1) logit = logit > 0 ? logit / repetitionPenalty : logit * repetitionPenalty;
      logit -= presencePenalty + frequencyPenalty * counts[id]!;
      work[id] = logit;
      counts[id] = 0;
    }
  }

  /** Temperature, top-k, top-p, min-p, then one draw. */
  private draw(work: Float32Array): number {
    const maxLogit = work[argmax(work)]!;
    if (maxLogit === -Infinity) return argmax(work);
    const { topK } = this.settings;
    if (topK > 0 && topK < work.length) return this.drawFromTopK(work, maxLogit);
    return this.drawByThreshold(work, maxLogit);
  }

  /** With top-k the candidates are few, so they are sorted and top-p and min-p walk them in rank order. */
  private drawFromTopK(work: Float32Array, maxLogit: number): number {
    const { temperature, topK, topP, minP } = this.settings;
    this.collectTopK(work, topK, maxLogit, temperature);

    // Candidates hold (logit - max) / temperature, sorted best first.
    const count = this.candidateCount;
    const ids = this.candidateIds;
    const scaled = this.candidateLogits;
    let total = 0;
    for (let i = 0; i < count; i++) total += Math.exp(scaled[i]!);

    // top-p: keep token i while the mass strictly before it is below p; the first always stays.
    let kept = count;
    if (topP < 1) {
      let before = 0;
      for (let i = 0; i < count; i++) {
        if (i > 0 && before >= topP * total) {
          kept = i;
          break;
        }
        before += Math.exp(scaled[i]!);
      }
    }

    // min-p: probabilities relative to the top token are exp(scaled) because scaled[0] = 0.
    if (minP > 0) {
      const floor = Math.log(minP);
      let i = 1;
      while (i < kept && scaled[i]! >= floor) i++;
      kept = i;
    }

    let mass = 0;
    for (let i = 0; i < kept; i++) mass += Math.exp(scaled[i]!);
    let target = this.random.next() * mass;
    for (let i = 0; i < kept; i++) {
      target -= Math.exp(scaled[i]!);
      if (target < 0) return ids[i]!;
    }
    // Rounding left a sliver of mass past the last candidate.
    return ids[kept - 1]!;
  }

  /**
   * Without top-k, top-p and min-p keep every token above some scaled-logit threshold, plus part
   * of the tokens right at it. Bisection over the threshold finds a narrow band that contains the
   * top-p boundary, and only the tokens inside that band are sorted.
   */
  private drawByThreshold(work: Float32Array, maxLogit: number): number {
    const { temperature, topP, minP } = this.settings;
    const n = work.length;
    const scaled = this.scaledAll;
    const weights = this.weightsAll;
    let total = 0;
    let lowest = 0;
    for (let i = 0; i < n; i++) {
      const value = (work[i]! - maxLogit) / temperature;
      scaled[i] = value;
      weights[i] = Math.exp(value);
      total += weights[i]!;
      if (value < lowest && value !== -Infinity) lowest = value;
    }
    // min-p: probabilities relative to the top token are exp(scaled) because the top one is 0.
    const floor = minP > 0 ? Math.log(minP) : -Infinity;

    // Tokens at or above `above` are kept whole; `boundary` lists the kept tokens below it.
    let above = -Infinity;
    const boundary: number[] = [];
    if (topP < 1) {
      const target = topP * total;
      // Invariant: mass(scaled >= hi) = massHi < target <= mass(scaled >= lo).
      let lo = lowest;
      let hi = 1;
      let massHi = 0;
      for (let iteration = 0; iteration < 100; iteration++) {
        const mid = lo + (hi - lo) / 2;
        if (mid <= lo || mid >= hi) break; // the band cannot shrink further (ties)
        let massMid = 0;
        let lower = 0;
        let upper = 0;
        for (let i = 0; i < n; i++) {
          const value = scaled[i]!;
          if (value >= mid) {
            massMid += weights[i]!;
            if (value < hi) upper++;
          } else if (value >= lo) {
            lower++;
          }
        }
        let bandCount: number;
        if (massMid >= target) {
          lo = mid;
          bandCount = upper;
        } else {
          hi = mid;
          massHi = massMid;
          bandCount = lower;
        }
        if (bandCount <= 512) break;
      }

      // Walk the band [lo, hi) in rank order, keeping a token while the mass before it is below p.
      const ids = this.candidateIds;
      let count = 0;
      for (let i = 0; i < n; i++) {
        const value = scaled[i]!;
        if (value >= lo && value < hi) ids[count++] = i;
      }
      const band = Array.from(ids.subarray(0, count)).sort((a, b) => scaled[b]! - scaled[a]! || a - b);
      let before = massHi;
      for (const id of band) {
        if (before >= target) break;
        boundary.push(id);
        before += weights[id]!;
      }
      above = hi;
    }

    // Draw among the kept tokens: those at or above `above` in id order, then the boundary ones.
    const keeps = (id: number): boolean => scaled[id]! >= floor;
    let mass = 0;
    for (let i = 0; i < n; i++) if (scaled[i]! >= above && keeps(i)) mass += weights[i]!;
    for (const id of boundary) if (keeps(id)) mass += weights[id]!;
    let target = this.random.next() * mass;
    let last = -1;
    for (let i = 0; i < n; i++) {
      if (scaled[i]! < above || !keeps(i) || weights[i] === 0) continue;
      last = i;
      target -= weights[i]!;
      if (target < 0) return i;
    }
    for (const id of boundary) {
      if (!keeps(id) || weights[id] === 0) continue;
      last = id;
      target -= weights[id]!;
      if (target < 0) return id;
    }
    // Rounding left a sliver of mass past the last kept token.
    return last >= 0 ? last : argmax(work);
  }

  /** Keep the k best tokens with a min-heap (worst candidate at the root), then sort those k. */
  private collectTopK(work: Float32Array, k: number, maxLogit: number, temperature: number): void {
    const heapIds = this.candidateIds;
    const heapLogits = this.candidateLogits;
    let size = 0;
    for (let id = 0; id < work.length; id++) {
      const logit = work[id]!;
      if (logit === -Infinity) continue;
      if (size < k) {
        // Sift up: a parent must rank after its children.
        let i = size++;
        while (i > 0) {
          const parent = (i - 1) >> 1;
          if (!ranksBefore(heapLogits[parent]!, heapIds[parent]!, logit, id)) break;
          heapIds[i] = heapIds[parent]!;
          heapLogits[i] = heapLogits[parent]!;
          i = parent;
        }
        heapIds[i] = id;
        heapLogits[i] = logit;
      } else if (ranksBefore(logit, id, heapLogits[0]!, heapIds[0]!)) {
        // Replace the root (the worst kept candidate) and sift down.
        let i = 0;
        for (;;) {
          const left = 2 * i + 1;
          if (left >= size) break;
          const right = left + 1;
          let worse = left;
          if (right < size && ranksBefore(heapLogits[left]!, heapIds[left]!, heapLogits[right]!, heapIds[right]!)) {
            worse = right;
          }
          if (!ranksBefore(logit, id, heapLogits[worse]!, heapIds[worse]!)) break;
          heapIds[i] = heapIds[worse]!;
          heapLogits[i] = heapLogits[worse]!;
          i = worse;
        }
        heapIds[i] = id;
        heapLogits[i] = logit;
      }
    }
    this.candidateCount = size;
    this.sortAndScale(maxLogit, temperature);
  }

  /** Sort the candidates best first (ties: lower id first) and turn logits into (logit - max) / T. */
  private sortAndScale(maxLogit: number, temperature: number): void {
    const count = this.candidateCount;
    const order = Array.from({ length: count }, (_, i) => i);
    const ids = this.candidateIds;
    const logits = this.candidateLogits;
    order.sort((a, b) => {
      const la = logits[a]!;
      const lb = logits[b]!;
      if (la !== lb) return lb - la;
      return ids[a]! - ids[b]!;
    });
    const sortedIds = order.map((i) => ids[i]!);
    const sortedScaled = order.map((i) => (logits[i]! - maxLogit) / temperature);
    for (let i = 0; i < count; i++) {
      ids[i] = sortedIds[i]!;
      logits[i] = sortedScaled[i]!;
    }
  }
}

/**
 * Greedy choice over an unpenalised row in one pass, the same token as limitToSampleable followed
 * by argmax: the first +Infinity if there is one, else the first largest finite logit. NaN never
 * wins. Throws ModelFormatError when every logit is -Infinity or NaN: the row is the model's own.
 */
function greedyToken(logits: Float32Array): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const value = logits[i]!;
    if (value > bestValue) {
      bestValue = value;
      best = i;
    }
  }
  if (best < 0) throw nonFiniteModelOutput();
  return best;
}

/** Return true when the row has a logit that sampling can pick: finite or +Infinity. */
function hasFiniteOrPositiveLogit(logits: Float32Array): boolean {
  for (let i = 0; i < logits.length; i++) if (logits[i]! > -Infinity) return true;
  return false;
}

function nonFiniteModelOutput(): ModelFormatError {
  return new ModelFormatError(
    "The model produced no finite logit (every one is NaN or -Infinity), which points at corrupt weights: reconvert or redownload the model file, and delete geb-cpu's cache of converted weights if one is used.",
    { expected: "at least one finite logit" },
  );
}

function noSampleableToken(): InvalidArgumentError {
  return new InvalidArgumentError(
    "Every token's logit is -Infinity or NaN after the penalties and logitBias, so no token can be sampled; ban fewer tokens or use smaller penalties.",
    { expected: "at least one finite logit", received: 0 },
  );
}

/**
 * Prepare a penalised row for the stages, which assume a finite maximum. A logit that overflowed
 * float32 to +Infinity (a bias of 1e40, a repetition penalty of 1e-300) outranks every finite
 * one, so only the +Infinity tokens stay, as equal logits of 0. NaN becomes -Infinity.
 * Throws InvalidArgumentError when no token is left, because every logit is -Infinity or NaN.
 */
function limitToSampleable(work: Float32Array): void {
  let infinite = 0;
  let finite = 0;
  for (let i = 0; i < work.length; i++) {
    const value = work[i]!;
    if (value === Infinity) infinite++;
    else if (Number.isNaN(value)) work[i] = -Infinity;
    else if (value !== -Infinity) finite++;
  }
  if (infinite > 0) {
    for (let i = 0; i < work.length; i++) work[i] = work[i] === Infinity ? 0 : -Infinity;
    return;
  }
  if (finite === 0) throw noSampleableToken();
}

/** Index of the largest value; the lowest index wins ties. NaN never wins. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

/** log(sum(exp(values))), computed stably. */
export function logSumExp(values: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) if (values[i]! > max) max = values[i]!;
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += Math.exp(values[i]! - max);
  return max + Math.log(sum);
}
