// Typed wrapper of the native engine: validates and defaults the options, maps native errors to
// the classes of lib/errors.ts with the caller's stack, and checks arguments before they cross
// into C++. The public Model API (lib/model.ts) is built on this class. It must run one step at
// a time, because the native engine rejects a step that starts while another runs.

import {
  ContextOverflowError,
  DisposedError,
  GebError,
  InvalidArgumentError,
} from "./errors.js";
import { binding, fromNativeError, resolveTier } from "./native.js";
import type { KvCacheType, NativeEngine, NativeEngineInfo } from "./native-types.js";
import type { ModelPlan } from "./model/plan.js";

export type { KvCacheType, NativeEngineInfo as EngineInfo } from "./native-types.js";

/** Options of `Engine.create`. Every field is optional. */
export interface EngineOptions {
  /** Threads of the engine's pool, the calling worker included. Default: physical cores. */
  threads?: number;
  /** Kernel tier (`"scalar"`, `"avx2"`, `"avx512"`, ...). Default: GEB_CPU_ISA, else the best tier. */
  tier?: string;
  /** KV cache storage. Default `"f32"`; `"f16"` halves its memory and moves logits by about 1e-3. */
  kvType?: KvCacheType;
  /** Positions per sequence. Default: the model's training context (`nCtxTrain`). */
  contextSize?: number;
  /** Number of sequences in the KV cache (ids 0 .. nSeqMax - 1). Default 1. */
  nSeqMax?: number;
}

// Upper bounds that catch a wrong unit or a typo rather than a real machine's limit.
const MAX_THREADS = 1024;
const MAX_SEQUENCES = 4096;

function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, received ${String(value)}.`, {
      expected: `integer in [${min}, ${max}]`,
      received: value,
    });
  }
  return value;
}

function checkObject(name: string, value: unknown): void {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`${name} must be an object, received ${value === null ? "null" : typeof value}.`, {
      expected: "object",
      received: value,
    });
  }
}

// The native engine stores these hyperparameters as float32: a double that is finite here but
// overflows float32 (1e300) would silently become Infinity there.
function checkFloat32Positive(name: string, value: unknown): void {
  if (typeof value !== "number" || !Number.isFinite(Math.fround(value)) || !(Math.fround(value) > 0)) {
    throw new InvalidArgumentError(
      `${name} must be a positive number that fits a 32-bit float, received ${String(value)}. Check the model's config.`,
      { expected: "positive finite float32", received: value },
    );
  }
}

type TypedArrayClass = typeof Int32Array | typeof Uint8Array;

function checkTypedArray(name: string, value: unknown, type: TypedArrayClass): void {
  if (!(value instanceof type)) {
    let received: string = typeof value;
    if (value === null) received = "null";
    else if (typeof value === "object") received = value.constructor?.name ?? "object";
    throw new InvalidArgumentError(`${name} must be an ${type.name}, received ${received}.`, {
      expected: type.name,
      received,
    });
  }
}

// Replaces the stack of a mapped native error with the stack captured where the caller entered,
// so an async rejection points at the caller's line instead of the event loop.
function withCallerStack(error: GebError, site: Error): GebError {
  const frames = (site.stack ?? "").split("\n").slice(1).join("\n");
  error.stack = `${error.name}: ${error.message}\n${frames}`;
  return error;
}

/**
 * A model loaded into the native engine, with its KV cache and thread pool. Create it with
 * `Engine.create`, release it with `dispose()`.
 *
 * @example
 * const { plan } = await openModelFiles("models/llama-tiny.gguf");
 * const engine = await Engine.create(plan, { nSeqMax: 1 });
 * const logits = await engine.forward(
 *   Int32Array.of(0, 0), Int32Array.of(0, 1), Int32Array.of(1, 450), Uint8Array.of(0, 1));
 * // logits contains nVocab floats: the next-token logits after token 450 at position 1
 * await engine.dispose();
 */
export class Engine {
  readonly #native: NativeEngine;
  readonly #contextSize: number;
  readonly #nSeqMax: number;
  readonly #nVocab: number;
  #disposed = false;

  private constructor(native: NativeEngine, info: NativeEngineInfo) {
    this.#native = native;
    this.#contextSize = info.contextSize;
    this.#nSeqMax = info.nSeqMax;
    this.#nVocab = info.nVocab;
  }

  /**
   * Maps the plan's files and allocates the KV cache and scratch buffers.
   * @throws InvalidArgumentError for invalid options, a plan that is not an object, or an rmsEps or
   *   ropeBase that does not fit a positive 32-bit float.
   * @throws CpuFeatureError for a tier this CPU cannot run.
   * @throws ModelFormatError for a plan whose tensors are missing, misshapen or outside their files.
   * @throws UnsupportedError for a weight type or architecture the engine cannot run.
   * @throws IoError when a file cannot be mapped or the KV cache cannot be reserved.
   */
  static async create(plan: ModelPlan, options: EngineOptions = {}): Promise<Engine> {
    checkObject("plan", plan);
    checkObject("plan.hparams", plan.hparams);
    checkFloat32Positive("plan.hparams.rmsEps", plan.hparams.rmsEps);
    checkFloat32Positive("plan.hparams.ropeBase", plan.hparams.ropeBase);
    checkObject("options", options);
    const addon = binding();
    const threads =
      options.threads === undefined ? addon.defaultThreads() : checkInteger("threads", options.threads, 1, MAX_THREADS);
    const tier = resolveTier(options.tier);
    const kvType = options.kvType ?? "f32";
    if (kvType !== "f32" && kvType !== "f16") {
      throw new InvalidArgumentError(`kvType must be "f32" or "f16", received ${JSON.stringify(kvType)}.`, {
        expected: ["f32", "f16"],
        received: kvType,
      });
    }
    const contextSize =
      options.contextSize === undefined ? undefined : checkInteger("contextSize", options.contextSize, 1, 2 ** 31 - 1);
    const nSeqMax = options.nSeqMax === undefined ? 1 : checkInteger("nSeqMax", options.nSeqMax, 1, MAX_SEQUENCES);

    let native: NativeEngine;
    try {
      native = new addon.Engine(plan, {
        threads,
        tier,
        kvType,
        nSeqMax,
        ...(contextSize === undefined ? {} : { contextSize }),
      });
    } catch (error) {
      throw fromNativeError(error);
    }
    return new Engine(native, native.info());
  }

  /** Maximum positions per sequence. */
  get contextSize(): number {
    return this.#contextSize;
  }

  /** Number of sequences (ids 0 .. nSeqMax - 1). */
  get nSeqMax(): number {
    return this.#nSeqMax;
  }

  /** Logits per row returned by `forward`. */
  get nVocab(): number {
    return this.#nVocab;
  }

  /**
   * Runs one step over a batch given as four arrays of equal length. Entries of one sequence must
   * continue its cache in order (`sequenceLength(seqId)`, then +1 per entry); several sequences
   * may share a step. Resolves to `nVocab` logits for each entry whose `wantsLogits` is non-zero,
   * concatenated in batch order. Setting `abortFlag[0]` (an Int32Array over a SharedArrayBuffer)
   * to non-zero stops the step between layers. A failed step leaves every sequence's cached length
   * as it was.
   * @throws ContextOverflowError when a position reaches `contextSize`; InvalidArgumentError for
   *   mismatched arrays, unknown sequence ids or tokens, positions that skip ahead, or a step
   *   started while another runs; AbortError when aborted; DisposedError after `dispose()`.
   */
  async forward(
    seqIds: Int32Array,
    positions: Int32Array,
    tokens: Int32Array,
    wantsLogits: Uint8Array,
    abortFlag?: Int32Array,
  ): Promise<Float32Array> {
    const site = new Error();
    this.#checkUsable("forward");
    checkTypedArray("seqIds", seqIds, Int32Array);
    checkTypedArray("positions", positions, Int32Array);
    checkTypedArray("tokens", tokens, Int32Array);
    checkTypedArray("wantsLogits", wantsLogits, Uint8Array);
    if (abortFlag !== undefined) {
      checkTypedArray("abortFlag", abortFlag, Int32Array);
      // The native step reads the flag from another thread until it ends; a plain ArrayBuffer
      // could be transferred or shrunk meanwhile, a SharedArrayBuffer cannot.
      if (!(abortFlag.buffer instanceof SharedArrayBuffer) || abortFlag.length < 1) {
        throw new InvalidArgumentError(
          "abortFlag must be a non-empty Int32Array over a SharedArrayBuffer, such as new Int32Array(new SharedArrayBuffer(4)).",
          { expected: "Int32Array over SharedArrayBuffer", received: abortFlag.buffer.constructor.name },
        );
      }
    }
    const n = seqIds.length;
    if (n === 0 || positions.length !== n || tokens.length !== n || wantsLogits.length !== n) {
      throw new InvalidArgumentError(
        `forward() needs non-empty seqIds, positions, tokens and wantsLogits of equal length, received lengths ` +
          `${n}, ${positions.length}, ${tokens.length}, ${wantsLogits.length}.`,
      );
    }
    for (let i = 0; i < n; i++) {
      const pos = positions[i]!;
      if (pos >= this.#contextSize) {
        throw new ContextOverflowError(
          `Position ${pos} of sequence ${seqIds[i]} is past the context size ${this.#contextSize}; ` +
            `shift or truncate the sequence, or create the engine with a larger contextSize.`,
          { expected: `position < ${this.#contextSize}`, received: pos },
        );
      }
    }
    try {
      return await this.#native.forward(seqIds, positions, tokens, wantsLogits, abortFlag);
    } catch (error) {
      throw withCallerStack(fromNativeError(error), site);
    }
  }

  /** Drops every cached position of a sequence. */
  clearSequence(seqId: number): void {
    this.#checkUsable("clearSequence");
    this.#call(() => this.#native.clearSequence(seqId));
  }

  /** Keeps positions [0, nKeep) of a sequence and drops the rest (no-op past its length). */
  truncateSequence(seqId: number, nKeep: number): void {
    this.#checkUsable("truncateSequence");
    this.#call(() => this.#native.truncateSequence(seqId, nKeep));
  }

  /**
   * Context shift: drops positions [nKeep, nKeep + nDiscard), moves the later ones down and
   * re-rotates their cached keys, so generation continues at `length - nDiscard`.
   * @throws InvalidArgumentError when nKeep + nDiscard exceeds the cached length.
   */
  shiftSequence(seqId: number, nKeep: number, nDiscard: number): void {
    this.#checkUsable("shiftSequence");
    this.#call(() => this.#native.shiftSequence(seqId, nKeep, nDiscard));
  }

  /** Cached positions of a sequence: the position its next token must have. During a step, the length before or after it. */
  sequenceLength(seqId: number): number {
    this.#checkUsable("sequenceLength");
    return this.#call(() => this.#native.sequenceLength(seqId));
  }

  /** Tier, threads, KV cache size and type, tensors with their types, and load-time conversions. */
  info(): NativeEngineInfo {
    this.#checkUsable("info");
    return this.#call(() => this.#native.info());
  }

  /** Waits for a running step, then unmaps the model. Later calls throw DisposedError. Idempotent. */
  async dispose(): Promise<void> {
    this.#disposed = true;
    await this.#native.dispose();
  }

  #checkUsable(method: string): void {
    if (this.#disposed) throw new DisposedError(`Engine.${method}() was called after dispose().`);
  }

  #call<T>(fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      throw fromNativeError(error);
    }
  }
}
