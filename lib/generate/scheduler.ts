// Batches forward requests from concurrent generations into one engine step. Each generation
// owns one sequence slot and has at most one request waiting at a time. Requests that arrive
// while a step runs are merged into the next step, so two generations decode side by side.
// The scheduler only needs `forward` and `truncateSequence`, so tests can drive it with a fake.

import { AbortError, DisposedError, GebError, InternalError } from "../errors.js";

/** The part of the native engine the scheduler drives. */
export interface ForwardEngine {
  forward(
    seqIds: Int32Array,
    positions: Int32Array,
    tokens: Int32Array,
    wantsLogits: Uint8Array,
    abortFlag?: Int32Array,
  ): Promise<Float32Array>;
  truncateSequence(seqId: number, nKeep: number): unknown;
}

/** Tokens of one sequence to run through the model. */
export interface StepRequest {
  seqId: number;
  /** Position of the first token; the sequence's cache must hold exactly this many positions. */
  startPos: number;
  tokens: readonly number[];
  /** Positions that return logits: only the last one, or every one (for evaluate()). */
  logits: "last" | "all";
  /** Cancels the request, also in the middle of a step. */
  signal?: AbortSignal;
}

interface Pending {
  request: StepRequest;
  resolve(rows: Float32Array): void;
  reject(error: unknown): void;
}

function isAbortError(error: unknown): boolean {
  return error instanceof AbortError || (error as { code?: unknown } | null)?.code === "ERR_GEB_ABORTED";
}

/** Runs step requests in batches of at most `maxBatchTokens` tokens, one engine call at a time. */
export class BatchScheduler {
  private readonly engine: ForwardEngine;
  private readonly nVocab: number;
  private readonly maxBatchTokens: number;
  private queue: Pending[] = [];
  private running: Promise<void> | undefined;
  private flushScheduled = false;
  private closed = false;
  // Abort flag of the step in flight, shared with the native engine. Steps run one at a time, so
  // one flag serves them all: runStep clears it before each step.
  private readonly abortFlag = new Int32Array(new SharedArrayBuffer(4));
  private readonly activeSequences: () => number;

  /**
   * `activeSequences` counts the sequences that may submit requests. When all of them have a
   * request queued, the next step starts without waiting for a later macrotask.
   */
  constructor(engine: ForwardEngine, nVocab: number, maxBatchTokens: number, activeSequences: () => number = () => Infinity) {
    this.engine = engine;
    this.nVocab = nVocab;
    this.maxBatchTokens = maxBatchTokens;
    this.activeSequences = activeSequences;
  }

  /**
   * Queue a request. Resolves to its logits rows (one row of nVocab floats, or one per token for
   * `logits: "all"`). Rejects with AbortError when its signal fires, with DisposedError after close().
   */
  submit(request: StepRequest): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new DisposedError("The model was disposed; load it again to use it."));
    if (request.tokens.length === 0 || request.tokens.length > this.maxBatchTokens) {
      return Promise.reject(
        new InternalError(`Step request of ${request.tokens.length} tokens; expected 1 to ${this.maxBatchTokens}.`),
      );
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      this.scheduleFlush();
    });
  }

  /**
   * Run `operation` (a sequence edit such as clear or shift) while no step runs, so it never
   * races with native work on the cache. Rejects with DisposedError after close().
   */
  async runExclusive<T>(operation: () => T | Promise<T>): Promise<T> {
    while (this.running !== undefined) await this.running;
    if (this.closed) throw new DisposedError("The model was disposed; load it again to use it.");
    const result = Promise.resolve().then(operation);
    this.running = result.then(
      () => undefined,
      () => undefined,
    ).finally(() => {
      this.running = undefined;
      if (this.queue.length > 0) this.scheduleFlush();
    });
    return result;
  }

  /** Reject queued requests with DisposedError and wait for the step in flight to finish. */
  async close(): Promise<void> {
    this.closed = true;
    const queued = this.queue;
    this.queue = [];
    for (const pending of queued) pending.reject(new DisposedError("The model was disposed while this call (a generation or evaluate) ran."));
    while (this.running !== undefined) await this.running;
  }

  // A step starts on a later macrotask, so generations whose previous step just resolved (their
  // continuations run as microtasks) can queue their next token and share the step.
  private scheduleFlush(): void {
    if (this.flushScheduled || this.running !== undefined) return;
    this.flushScheduled = true;
    const everyoneQueued = this.queue.length >= this.activeSequences();
    (everyoneQueued ? queueMicrotask : setImmediate)(() => {
      this.flushScheduled = false;
      if (this.running === undefined && this.queue.length > 0) {
        this.running = this.runStep().finally(() => {
          this.running = undefined;
          if (this.queue.length > 0) this.scheduleFlush();
        });
      }
    });
  }

  private takeBatch(): Pending[] {
    const batch: Pending[] = [];
    let tokens = 0;
    const rest: Pending[] = [];
    for (const pending of this.queue) {
      const { request } = pending;
      if (request.signal?.aborted) {
        pending.reject(new AbortError("The call was aborted by its AbortSignal."));
        continue;
      }
      const fits = tokens + request.tokens.length <= this.maxBatchTokens;
      const seqTaken = batch.some((p) => p.request.seqId === request.seqId);
      if (fits && !seqTaken) {
        batch.push(pending);
        tokens += request.tokens.length;
      } else {
        rest.push(pending);
      }
    }
    this.queue = rest;
    return batch;
  }

  private async runStep(): Promise<void> {
    const batch = this.takeBatch();
    if (batch.length === 0) return;

    // Lay out the batch entries: one per token, in request order.
    let total = 0;
    for (const { request } of batch) total += request.tokens.length;
    const seqIds = new Int32Array(total);
    const positions = new Int32Array(total);
    const tokens = new Int32Array(total);
    const wantsLogits = new Uint8Array(total);
    let at = 0;
    for (const { request } of batch) {
      const n = request.tokens.length;
      for (let i = 0; i < n; i++) {
        seqIds[at + i] = request.seqId;
        positions[at + i] = request.startPos + i;
        tokens[at + i] = request.tokens[i]!;
        wantsLogits[at + i] = request.logits === "all" || i === n - 1 ? 1 : 0;
      }
      at += n;
    }

    // Any request's signal stops the whole step through the shared flag; the others run again.
    const abortFlag = this.abortFlag;
    Atomics.store(abortFlag, 0, 0);
    const onAbort = (): void => void Atomics.store(abortFlag, 0, 1);
    for (const { request } of batch) request.signal?.addEventListener("abort", onAbort);

    let output: Float32Array;
    try {
      output = await this.engine.forward(seqIds, positions, tokens, wantsLogits, abortFlag);
    } catch (error) {
      this.recoverFromFailedStep(batch, error);
      return;
    } finally {
      for (const { request } of batch) request.signal?.removeEventListener("abort", onAbort);
    }

    // Hand each request its rows.
    let row = 0;
    for (const { request, resolve } of batch) {
      const rows = request.logits === "all" ? request.tokens.length : 1;
      resolve(output.subarray(row * this.nVocab, (row + rows) * this.nVocab));
      row += rows;
    }
  }

  // After an aborted step the cache rows it wrote are invalid: every sequence in the batch is cut
  // back to where its request started. Requests whose own signal fired fail; the others requeue.
  private recoverFromFailedStep(batch: Pending[], error: unknown): void {
    if (!isAbortError(error) || this.closed) {
      for (const { reject } of batch) reject(error);
      return;
    }
    const retry: Pending[] = [];
    for (const pending of batch) {
      try {
        this.engine.truncateSequence(pending.request.seqId, pending.request.startPos);
      } catch (truncateError) {
        pending.reject(truncateError instanceof GebError ? truncateError : error);
        continue;
      }
      if (pending.request.signal?.aborted) pending.reject(new AbortError("The call was aborted by its AbortSignal."));
      else retry.push(pending);
    }
    this.queue = [...retry, ...this.queue];
  }
}
