// One generation from prompt ids to a finished result: take a sequence slot, prefill the prompt
// in chunks, then sample, decode and feed back one token per step until a stop condition.
// Text goes out through a callback as UTF-8-safe pieces; aborting keeps what was produced so far.

import { AbortError, ContextOverflowError, InvalidArgumentError } from "../errors.js";
import { Sampler, type ResolvedSampling } from "./sampler.js";
import type { BatchScheduler } from "./scheduler.js";
import type { SlotPool } from "./slots.js";
import { StopStringFilter, type ResolvedStop } from "./stop.js";

/** Reason a generation ended. */
export type FinishReason = "stop" | "length" | "abort";

/**
 * Timing of one generation, measured with `performance.now()`. When an abort stops the prompt
 * pass, all the time counts as prefill and `decodeMs` is 0.
 */
export interface GenerateTimings {
  /** Wall time of the prompt pass, in milliseconds (includes waiting for other sequences' steps). */
  prefillMs: number;
  /** Wall time from the first sampled token to the end, in milliseconds. */
  decodeMs: number;
  /** Prompt tokens per second of prefill time; after an abort, only the prompt chunks that finished count. */
  prefillTokensPerSecond: number;
  /** Decode steps (one token fed back each) per second of decode time. */
  decodeTokensPerSecond: number;
}

/** The outcome of `generate()`, `chat()`, or a stream's `result`. */
export interface GenerateResult {
  /** Generated text, without stop strings, stop tokens or the chat format's reply prefix. */
  text: string;
  /** Generated token ids; a stop token that ended generation is not included. */
  tokens: number[];
  finishReason: FinishReason;
  /** The stop token or stop string that ended generation, when `finishReason` is "stop". */
  stoppedBy?: { token: number } | { text: string };
  /** Number of prompt tokens. */
  promptTokens: number;
  timings: GenerateTimings;
  /** Natural-log probability of each generated token (see `SampledToken.logprob`), when `logprobs: true`. */
  logprobs?: number[];
  /** Set when the context was shifted: how many cached tokens were dropped in total. */
  contextShift?: { droppedTokens: number };
  /** The PRNG seed used, so a random-seeded run can be repeated. */
  seed: number;
}

/** The engine's sequence operations, as the generation uses them. */
export interface SequenceOps {
  clearSequence(seqId: number): unknown;
  shiftSequence(seqId: number, nKeep: number, nDiscard: number): unknown;
}

/** Model parts a generation uses. */
export interface GenerationContext {
  scheduler: BatchScheduler;
  slots: SlotPool;
  sequences: SequenceOps;
  createStreamDecoder(): { push(id: number): string; flush(): string };
  contextSize: number;
  nVocab: number;
  /** Maximum prompt tokens per step. */
  batchSize: number;
  /** Tokens at the start of every sequence that a context shift keeps (BOS, or GEB's `[gMASK] sop`). */
  keepPrefix: number;
}

/** Validated settings of one generation. */
export interface GenerationSettings {
  sampling: ResolvedSampling;
  stop: ResolvedStop;
  logprobs: boolean;
  contextShift: boolean;
  /**
   * Text a reply starts with by the chat format's convention, removed from the output: the
   * longest one that matches. Empty for plain generation.
   */
  replyPrefixes: string[];
  /**
   * Last prompt token, decoded first and thrown away, so that the continuation keeps its leading
   * space (a fresh SentencePiece decode drops the first one). Unset for chat replies.
   */
  primeToken?: number;
  signal?: AbortSignal;
}

/** Removes the longest of several prefixes from the start of streamed text, if one matches. */
class PrefixStripper {
  private pending = "";
  private done: boolean;
  private readonly prefixes: readonly string[];

  constructor(prefixes: readonly string[]) {
    this.prefixes = [...prefixes].sort((a, b) => b.length - a.length);
    this.done = this.prefixes.every((p) => p === "");
  }

  push(piece: string): string {
    if (this.done) return piece;
    this.pending += piece;
    // Wait while a longer prefix could still match.
    if (this.prefixes.some((p) => p.length > this.pending.length && p.startsWith(this.pending))) return "";
    return this.flush();
  }

  flush(): string {
    this.done = true;
    const match = this.prefixes.find((p) => this.pending.startsWith(p)) ?? "";
    const text = this.pending.slice(match.length);
    this.pending = "";
    return text;
  }
}

function isAbort(error: unknown): boolean {
  return error instanceof AbortError || (error as { code?: unknown } | null)?.code === "ERR_GEB_ABORTED";
}

/**
 * Run one generation. `onText` receives each piece of text as soon as it is final; the pieces
 * joined equal the result's `text`. Resolves with finishReason "abort" when `settings.signal`
 * fires. Rejects with ContextOverflowError when the sequence outgrows the context (unless
 * `contextShift`), DisposedError when the model is disposed meanwhile.
 */
export async function runGeneration(
  context: GenerationContext,
  promptIds: readonly number[],
  settings: GenerationSettings,
  onText?: (piece: string) => void,
): Promise<GenerateResult> {
  const { sampling, stop, signal } = settings;
  if (promptIds.length === 0) {
    throw new InvalidArgumentError("The prompt is empty; generation needs at least one prompt token.", {
      expected: "at least one token",
      received: 0,
    });
  }
  if (promptIds.length > context.contextSize) {
    throw new ContextOverflowError(
      `The prompt has ${promptIds.length} tokens but the context size is ${context.contextSize}; shorten the prompt or load the model with a larger contextSize.`,
      { expected: `<= ${context.contextSize} tokens`, received: promptIds.length },
    );
  }

  const started = performance.now();
  const tokens: number[] = [];
  const logprobs: number[] = [];
  let text = "";
  let finishReason: FinishReason = "length";
  let stoppedBy: GenerateResult["stoppedBy"];
  let droppedTokens = 0;
  // Both stay unset until the prompt pass finishes, so an abort during it is timed as prefill.
  let prefillEnd: number | undefined;
  let prefilledTokens = 0;
  let decodeSteps = 0;

  const emit = (piece: string): void => {
    if (piece === "") return;
    text += piece;
    onText?.(piece);
  };

  let slot: number;
  try {
    slot = await context.slots.acquire(signal);
  } catch (error) {
    if (!isAbort(error)) throw error;
    finishReason = "abort";
    return finish();
  }

  const decoder = context.createStreamDecoder();
  // NOTE: a prompt that ends inside a UTF-8 character leaves its bytes in the decoder, and they
  // then come out with the first generated character.
  if (settings.primeToken !== undefined) decoder.push(settings.primeToken);
  const prefix = new PrefixStripper(settings.replyPrefixes);
  const stopFilter = new StopStringFilter(stop.stopStrings);
  const sampler = new Sampler(sampling, context.nVocab);
  const history = [...promptIds];

  try {
    await context.scheduler.runExclusive(() => context.sequences.clearSequence(slot));

    // Prefill: the prompt in chunks of at most batchSize tokens; logits of the last position only.
    let nPast = 0;
    let logits: Float32Array = new Float32Array(0);
    while (nPast < promptIds.length) {
      const chunk = promptIds.slice(nPast, nPast + context.batchSize);
      logits = await context.scheduler.submit({ seqId: slot, startPos: nPast, tokens: chunk, logits: "last", signal });
      nPast += chunk.length;
      prefilledTokens = nPast;
    }
    prefillEnd = performance.now();

    for (let step = 0; step < stop.maxTokens; step++) {
      const { token, logprob } = sampler.sample(logits, history, settings.logprobs);
      if (stop.stopTokens.has(token) && !stop.ignoreEos) {
        finishReason = "stop";
        stoppedBy = { token };
        break;
      }
      tokens.push(token);
      history.push(token);
      if (settings.logprobs) logprobs.push(logprob);

      const filtered = stopFilter.push(prefix.push(decoder.push(token)));
      emit(filtered.text);
      if (filtered.stoppedBy !== undefined) {
        finishReason = "stop";
        stoppedBy = { text: filtered.stoppedBy };
        break;
      }
      if (step === stop.maxTokens - 1) break;

      // Feed the token back; make room first when the cache is full.
      if (nPast >= context.contextSize) {
        const dropped = await shiftContext(context, slot, nPast, settings.contextShift);
        nPast -= dropped;
        droppedTokens += dropped;
        history.splice(context.keepPrefix, dropped);
      }
      logits = await context.scheduler.submit({ seqId: slot, startPos: nPast, tokens: [token], logits: "last", signal });
      nPast++;
      decodeSteps++;
    }

    // Text still held back (an incomplete stop string, a partial UTF-8 character) is final now.
    // When maxTokens cut the output inside a character, its leading bytes are left out, as on
    // abort: they are not yet text. Bytes that stay invalid before a stop token become U+FFFD.
    if (stoppedBy === undefined || "token" in stoppedBy) {
      const decoderTail = finishReason === "length" ? "" : decoder.flush();
      const tail = stopFilter.push(prefix.push(decoderTail) + prefix.flush());
      emit(tail.text);
      if (tail.stoppedBy !== undefined && stoppedBy === undefined) {
        finishReason = "stop";
        stoppedBy = { text: tail.stoppedBy };
      }
      emit(stopFilter.flush());
    }
  } catch (error) {
    if (!isAbort(error)) throw error;
    // The partial output keeps all complete text; only a partial UTF-8 character is left out.
    finishReason = "abort";
    emit(stopFilter.push(prefix.flush()).text);
    emit(stopFilter.flush());
  } finally {
    // The slot is cleared before reuse; a disposed engine needs no clearing.
    await context.scheduler.runExclusive(() => context.sequences.clearSequence(slot)).catch(() => undefined);
    context.slots.release(slot);
  }
  return finish();

  function finish(): GenerateResult {
    const end = performance.now();
    const prefillMs = (prefillEnd ?? end) - started;
    const decodeMs = prefillEnd === undefined ? 0 : end - prefillEnd;
    const result: GenerateResult = {
      text,
      tokens,
      finishReason,
      promptTokens: promptIds.length,
      timings: {
        prefillMs,
        decodeMs,
        prefillTokensPerSecond: prefillMs > 0 ? (prefilledTokens * 1000) / prefillMs : 0,
        decodeTokensPerSecond: decodeMs > 0 ? (decodeSteps * 1000) / decodeMs : 0,
      },
      seed: sampling.seed,
    };
    if (stoppedBy !== undefined) result.stoppedBy = stoppedBy;
    if (settings.logprobs) result.logprobs = logprobs;
    if (droppedTokens > 0) result.contextShift = { droppedTokens };
    return result;
  }
}

/**
 * Make room in a full sequence: keep the first `keepPrefix` tokens, drop the oldest half of the
 * rest. Returns how many tokens were dropped. Throws ContextOverflowError when shifting is off.
 */
async function shiftContext(context: GenerationContext, slot: number, nPast: number, enabled: boolean): Promise<number> {
  const keep = Math.min(context.keepPrefix, nPast);
  const discard = Math.floor((nPast - keep) / 2);
  if (!enabled || discard === 0) {
    throw new ContextOverflowError(
      `The sequence reached the context size of ${context.contextSize} tokens; pass contextShift: true to drop old tokens and go on, lower maxTokens, or load the model with a larger contextSize.`,
      { expected: `<= ${context.contextSize} tokens`, received: nPast + 1 },
    );
  }
  await context.scheduler.runExclusive(() => context.sequences.shiftSequence(slot, keep, discard));
  return discard;
}
