// The public Model API: load a GEB directory or a llama GGUF file, then evaluate, generate,
// stream and chat. Options are validated here; the native engine does the forward passes.
// Concurrent generations share the engine through the batch scheduler, one sequence slot each.

import { checkMessages, detectChatFormat, renderChat, CHAT_FORMAT_NAMES, type ChatFormatName, type ChatMessage } from "./chat/templates.js";
import { Engine, type EngineInfo } from "./engine.js";
import { AbortError, ContextOverflowError, DisposedError, InvalidArgumentError, IoError, ModelFormatError } from "./errors.js";
import { runGeneration, type GenerateResult, type GenerationContext, type GenerationSettings } from "./generate/generation.js";
import { GEB_SAMPLING_DEFAULTS, LLAMA_SAMPLING_DEFAULTS, resolveSampling, type SamplingOptions } from "./generate/sampler.js";
import { BatchScheduler } from "./generate/scheduler.js";
import { SlotPool } from "./generate/slots.js";
import { resolveStop, type StopOptions } from "./generate/stop.js";
import { createTextStream, type GenerateStream } from "./generate/text-stream.js";
import { checkBoolean, checkChoice, checkKnownKeys, checkNumber, checkOptionsObject, checkTokenId, showValue } from "./generate/validate.js";
import { homedir } from "node:os";
import { isAbsolute, join } from "node:path";
import { QUANTIZED_TYPES, quantizePlan, WEIGHT_TYPES, type WeightConversion, type WeightType } from "./formats/quantize.js";
import { openModelFiles, type ModelFileInfo } from "./model/load-plan.js";
import { binding, resolveTier } from "./native.js";
import { loadTokenizer, type Tokenizer } from "./tokenizer/index.js";
import { createModelOutputDecoder } from "./tokenizer/tokenizer.js";

export type { GenerateResult, GenerateTimings, FinishReason } from "./generate/generation.js";
export type { GenerateStream } from "./generate/text-stream.js";
export type { ChatMessage, ChatRole, ChatFormatName } from "./chat/templates.js";
export type { SamplingOptions } from "./generate/sampler.js";
export type { StopOptions } from "./generate/stop.js";

/** Progress of `loadModel`, reported through `onProgress`. */
export interface LoadProgress {
  /**
   * Current step: the loader's "header" and "plan", "quantize" (`weightType` q8_0 or q4_0) or
   * "convert" (`weightType` bf16, f16 or f32), "tokenizer", "engine", "ready".
   */
  phase: string;
  /** Bytes processed so far in this phase, when the phase counts bytes. */
  loadedBytes?: number;
  /** Bytes this phase processes in total, when known. */
  totalBytes?: number;
}

/** Options of `loadModel`. */
export interface LoadModelOptions {
  /** Worker threads for the forward pass, an integer >= 1. Default: the number of physical cores. */
  threads?: number;
  /**
   * Context length in tokens per sequence, an integer from 1 to 1048576 (2^20). Default: the
   * model's training context, capped at 1048576.
   */
  contextSize?: number;
  /** Element type of the KV cache. "f16" halves its memory at a small accuracy cost. Default "f32". */
  kvCacheType?: "f32" | "f16";
  /**
   * Kernel tier: "scalar", "avx2", "avx512", "avx512vnni" (x86-64) or "neon", "neondot" (arm64).
   * Default: the `GEB_CPU_ISA` environment variable, else the best tier this CPU supports.
   * A tier the CPU lacks throws CpuFeatureError (ERR_GEB_CPU_FEATURE).
   */
  tier?: string;
  /** Alias of `tier`. */
  isa?: string;
  /**
   * When a sequence fills the context, keep its prefix tokens (BOS, or GEB's `[gMASK] sop`), drop
   * the oldest half of the rest and go on, instead of throwing ContextOverflowError. Default false;
   * `generate()` can override it per call.
   */
  contextShift?: boolean;
  /**
   * Sequences that can generate at the same time; more concurrent calls wait for a free one.
   * Each sequence has its own KV cache of contextSize tokens. Default 1.
   */
  sequences?: number;
  /** Maximum tokens per forward step (prompt chunks are this long). Default 512. */
  batchSize?: number;
  /**
   * Convert the weight matrices at load: "q8_0" or "q4_0" quantize F32/F16/BF16 matrices whose
   * rows are whole 32-weight blocks; "bf16", "f16" or "f32" convert every matrix of another type.
   * The converted matrices go to a cache file that later loads of the same model reuse. Matrices
   * already of the requested type are used in place, with no copy. Default: run the weights as
   * stored. `geb-cpu convert` writes the same conversion to a GGUF file once.
   */
  weightType?: WeightType;
  /** Folder of convert-at-load cache files. Default: `$XDG_CACHE_HOME/geb-cpu` or `~/.cache/geb-cpu`. */
  cacheDir?: string;
  /** Called as loading progresses. */
  onProgress?: (progress: LoadProgress) => void;
  /** Cancels loading; `loadModel` then rejects with AbortError (ERR_GEB_ABORTED). */
  signal?: AbortSignal;
}

/** Options of `generate()` and `stream()`. Sampling defaults depend on the model family. */
export interface GenerateOptions extends SamplingOptions, StopOptions {
  /** Return the log-probability of every generated token in `result.logprobs`. Default false. */
  logprobs?: boolean;
  /** Overrides the model's `contextShift` setting for this call. */
  contextShift?: boolean;
  /** Cancels generation, also during the prompt pass; the result then has finishReason "abort". */
  signal?: AbortSignal;
}

/** Options of `chat()` and `chatStream()`. */
export interface ChatOptions extends GenerateOptions {
  /**
   * Prompt format. Default "auto": GEB's own layout for GEB models; for GGUF files, the format
   * their `tokenizer.chat_template` matches, else "llama-2".
   */
  chatFormat?: ChatFormatName | "auto";
  /**
   * Token ids that end the reply, in addition to the chat format's end-of-turn tokens (which
   * always stop a chat reply unless `ignoreEos` is set). Default: none besides those.
   */
  stopTokens?: number[];
  /** Text that ends the reply, in addition to the format's end-of-turn text when it has one. */
  stop?: string | string[];
}

const GENERATE_OPTION_KEYS = [
  "temperature",
  "topK",
  "topP",
  "minP",
  "repetitionPenalty",
  "repeatLastN",
  "presencePenalty",
  "frequencyPenalty",
  "logitBias",
  "seed",
  "maxTokens",
  "stop",
  "stopTokens",
  "ignoreEos",
  "logprobs",
  "contextShift",
  "signal",
] as const;
const CHAT_OPTION_KEYS = [...GENERATE_OPTION_KEYS, "chatFormat"] as const;
const EVALUATE_OPTION_KEYS = ["signal"] as const;
const LOAD_OPTION_KEYS = [
  "threads",
  "contextSize",
  "kvCacheType",
  "tier",
  "isa",
  "contextShift",
  "sequences",
  "batchSize",
  "weightType",
  "cacheDir",
  "onProgress",
  "signal",
] as const;

/** A prompt: text (the tokenizer's prompt prefix is added) or token ids (used as they are). */
export type Prompt = string | readonly number[] | Int32Array;

/**
 * Description of a loaded model, from `Model.info()`: the loader's file facts (layers, heads,
 * `vocabSize` = logits rows, parameter count, tensor types...) plus the settings in use.
 */
export interface ModelInfo extends ModelFileInfo {
  /** Context length per sequence in tokens. */
  contextSize: number;
  threads: number;
  tier: string;
  kvCacheType: "f32" | "f16";
  sequences: number;
  batchSize: number;
  contextShift: boolean;
  /** Matrices convert-at-load converted (empty without `weightType`). */
  weightConversions: WeightConversion[];
  /**
   * Temporary cache files that earlier loads of this model left when they were killed while
   * converting, removed by this load when it wrote or reused the cache file. Usually empty.
   */
  removedTemporaryFiles: string[];
  /**
   * Engine report: memory use and conversions done at load. `engine.tensors` gives each tensor's
   * type as the engine computes with it, so a norm weight listed in `engine.conversions`
   * (`"blk.0.attn_norm: bf16 -> f32"`) is listed as `f32`. `tensorTypes` counts the types in the files.
   */
  engine: EngineInfo;
}

interface ModelParts {
  path: string;
  engine: Engine;
  tokenizer: Tokenizer;
  fileInfo: ModelFileInfo;
  architecture: string;
  nVocab: number;
  contextSize: number;
  threads: number;
  tier: string;
  kvCacheType: "f32" | "f16";
  sequences: number;
  batchSize: number;
  contextShift: boolean;
  weightConversions: WeightConversion[];
  removedTemporaryFiles: string[];
}

/**
 * A loaded model. Create one with `loadModel()`; release its memory with `dispose()` or
 * `await using model = await loadModel(...)`.
 */
export class Model {
  /** The model's tokenizer. */
  readonly tokenizer: Tokenizer;
  private readonly parts: ModelParts;
  private readonly engine: Engine;
  private readonly scheduler: BatchScheduler;
  private readonly slots: SlotPool;
  private disposing: Promise<void> | undefined;

  /** @internal Use `loadModel()`. */
  constructor(parts: ModelParts) {
    this.parts = parts;
    this.engine = parts.engine;
    this.tokenizer = parts.tokenizer;
    this.slots = new SlotPool(parts.sequences);
    this.scheduler = new BatchScheduler(parts.engine, parts.nVocab, parts.batchSize, () => this.slots.inUse);
  }

  /** Sequence slots held by running generations or evaluations (0 when idle). */
  get activeSequences(): number {
    return this.slots.inUse;
  }

  /** True once `dispose()` was called. */
  get disposed(): boolean {
    return this.disposing !== undefined;
  }

  /**
   * Describe the model and the settings it was loaded with, as a fresh copy that the caller may
   * change. Throws DisposedError after dispose().
   */
  info(): ModelInfo {
    this.checkOpen();
    const p = this.parts;
    return {
      ...structuredClone(p.fileInfo),
      contextSize: p.contextSize,
      threads: p.threads,
      tier: p.tier,
      kvCacheType: p.kvCacheType,
      sequences: p.sequences,
      batchSize: p.batchSize,
      contextShift: p.contextShift,
      weightConversions: structuredClone(p.weightConversions),
      removedTemporaryFiles: [...p.removedTemporaryFiles],
      engine: withConvertedTypes(this.engine.info()),
    };
  }

  /**
   * Run token ids through the model from position 0 and return the logits after every position:
   * row i (nVocab floats) predicts token i + 1. For perplexity and scoring.
   * Throws InvalidArgumentError for an empty or invalid id list or invalid options,
   * ContextOverflowError when the list is longer than the context, AbortError when `signal`
   * fires, DisposedError after dispose().
   *
   * @example
   * const rows = await model.evaluate(model.tokenizer.encodePrompt("Hello"));
   */
  async evaluate(ids: readonly number[] | Int32Array, options: { signal?: AbortSignal } = {}): Promise<Float32Array[]> {
    this.checkOpen();
    const checked = this.checkOptions(options, EVALUATE_OPTION_KEYS);
    const signal = checkSignal(checked.signal);
    const tokens = this.checkIds("ids", ids);
    if (tokens.length === 0) throw new InvalidArgumentError("evaluate() needs at least one token id.", { received: 0 });
    if (tokens.length > this.parts.contextSize) {
      throw new ContextOverflowError(
        `evaluate() got ${tokens.length} tokens but the context size is ${this.parts.contextSize}; evaluate shorter windows.`,
        { expected: `<= ${this.parts.contextSize}`, received: tokens.length },
      );
    }
    const slot = await this.slots.acquire(signal);
    const rows: Float32Array[] = [];
    try {
      await this.scheduler.runExclusive(() => this.engine.clearSequence(slot));
      for (let start = 0; start < tokens.length; start += this.parts.batchSize) {
        const chunk = tokens.slice(start, start + this.parts.batchSize);
        const out = await this.scheduler.submit({ seqId: slot, startPos: start, tokens: chunk, logits: "all", signal });
        for (let i = 0; i < chunk.length; i++) rows.push(out.subarray(i * this.parts.nVocab, (i + 1) * this.parts.nVocab));
      }
    } finally {
      await this.scheduler.runExclusive(() => this.engine.clearSequence(slot)).catch(() => undefined);
      this.slots.release(slot);
    }
    return rows;
  }

  /**
   * Generate a continuation of `prompt`. A string gets the tokenizer's prompt prefix
   * (`[gMASK] sop` for GEB, `<s>` for llama); token ids are used as they are.
   * Resolves with the text, token ids, finish reason and timings; on abort it resolves with the
   * partial output and finishReason "abort". Throws InvalidArgumentError (ERR_GEB_INVALID_ARGUMENT)
   * for invalid options, ContextOverflowError (ERR_GEB_CONTEXT_OVERFLOW), DisposedError (ERR_GEB_DISPOSED).
   *
   * @example
   * const model = await loadModel("models/geb-tiny");
   * const { text } = await model.generate("床前明月光", { maxTokens: 32, temperature: 0 });
   */
  async generate(prompt: Prompt, options: GenerateOptions = {}): Promise<GenerateResult> {
    this.checkOpen();
    const ids = this.promptIds(prompt);
    const settings = this.generationSettings(this.checkOptions(options, GENERATE_OPTION_KEYS), [], []);
    this.primeDecoder(settings, ids);
    return runGeneration(this.generationContext(), ids, settings);
  }

  /**
   * Like `generate()`, but returns an async iterable of text pieces as they are produced. The
   * pieces never split a UTF-8 character and, joined, equal `result.text`. Leaving the
   * `for await` loop early stops generation and frees its sequence. `stream.result` resolves with
   * the final result (finishReason "abort" when stopped early).
   *
   * @example
   * const stream = model.stream("Once upon a time", { maxTokens: 64 });
   * for await (const piece of stream) process.stdout.write(piece);
   * console.log((await stream.result).timings.decodeTokensPerSecond);
   */
  stream(prompt: Prompt, options: GenerateOptions = {}): GenerateStream {
    this.checkOpen();
    const ids = this.promptIds(prompt);
    const settings = this.generationSettings(this.checkOptions(options, GENERATE_OPTION_KEYS), [], []);
    this.primeDecoder(settings, ids);
    return createTextStream(settings.signal, (signal, onText) =>
      runGeneration(this.generationContext(), ids, { ...settings, signal }, onText),
    );
  }

  /**
   * Reply to a conversation. Messages are rendered in the model's chat format (see
   * `ChatOptions.chatFormat`) and generation stops at the end of the assistant's turn.
   *
   * @example
   * const { text } = await model.chat([{ role: "user", content: "你好" }]);
   */
  async chat(messages: ChatMessage[], options: ChatOptions = {}): Promise<GenerateResult> {
    this.checkOpen();
    const checked = this.checkOptions(options, CHAT_OPTION_KEYS);
    const rendered = this.renderChat(messages, checked);
    const settings = this.generationSettings(checked, rendered.stopStrings, rendered.replyPrefixes, rendered.stopTokens);
    return runGeneration(this.generationContext(), rendered.ids, settings);
  }

  /** Like `chat()`, streaming the reply as `stream()` does. */
  chatStream(messages: ChatMessage[], options: ChatOptions = {}): GenerateStream {
    this.checkOpen();
    const checked = this.checkOptions(options, CHAT_OPTION_KEYS);
    const rendered = this.renderChat(messages, checked);
    const settings = this.generationSettings(checked, rendered.stopStrings, rendered.replyPrefixes, rendered.stopTokens);
    return createTextStream(settings.signal, (signal, onText) =>
      runGeneration(this.generationContext(), rendered.ids, { ...settings, signal }, onText),
    );
  }

  /**
   * Free the model. Generations still running end with DisposedError; native work in flight
   * finishes first. Calling it again returns the same promise.
   */
  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      this.slots.close();
      await this.scheduler.close();
      await this.engine.dispose();
    })();
    return this.disposing;
  }

  /** Same as `dispose()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  private checkOptions<T extends object>(options: T | undefined, known: readonly string[]): Partial<T> {
    const checked = checkOptionsObject("options", options);
    checkKnownKeys("options", checked, known);
    return checked;
  }

  private checkOpen(): void {
    if (this.disposing !== undefined) throw new DisposedError("The model was disposed; load it again to use it.");
  }

  private checkIds(name: string, ids: unknown): number[] {
    if (!Array.isArray(ids) && !(ids instanceof Int32Array)) {
      throw new InvalidArgumentError(`${name} must be an array of token ids, received ${showValue(ids)}.`, {
        expected: "number[] | Int32Array",
        received: ids,
      });
    }
    const out: number[] = [];
    for (let i = 0; i < ids.length; i++) out.push(checkTokenId(`${name}[${i}]`, ids[i], this.parts.nVocab));
    return out;
  }

  private promptIds(prompt: Prompt): number[] {
    if (typeof prompt === "string") return this.tokenizer.encodePrompt(prompt);
    return this.checkIds("prompt", prompt);
  }

  private renderChat(messages: ChatMessage[], options: ChatOptions) {
    const checked = checkMessages(messages);
    const choice = checkChoice("chatFormat", options.chatFormat, ["auto", ...CHAT_FORMAT_NAMES], "auto");
    const format = choice === "auto" ? detectChatFormat(this.tokenizer) : choice;
    return renderChat(format, checked, this.tokenizer);
  }

  /**
   * Resolves the sampling and stop options of one call. `turnStopTokens` and `turnStopStrings`
   * end a chat format's assistant turn: they are added to the caller's `stopTokens` and `stop`,
   * never replaced by them, so a chat reply cannot run on into an invented next turn. Without
   * them (generate, stream), a caller's `stopTokens` replaces the tokenizer's stop tokens.
   */
  private generationSettings(
    options: GenerateOptions,
    turnStopStrings: string[],
    replyPrefixes: string[],
    turnStopTokens?: number[],
  ): GenerationSettings {
    const defaults = this.parts.architecture === "geb" ? GEB_SAMPLING_DEFAULTS : LLAMA_SAMPLING_DEFAULTS;
    const sampling = resolveSampling(options, defaults, this.parts.nVocab);
    const stop = resolveStop(options, turnStopTokens ?? this.tokenizer.stopTokenIds, this.parts.nVocab);
    for (const id of turnStopTokens ?? []) stop.stopTokens.add(id);
    for (const text of turnStopStrings) if (!stop.stopStrings.includes(text)) stop.stopStrings.push(text);
    const settings: GenerationSettings = {
      sampling,
      stop,
      logprobs: checkBoolean("logprobs", options.logprobs, false),
      contextShift: checkBoolean("contextShift", options.contextShift, this.parts.contextShift),
      replyPrefixes,
    };
    const signal = checkSignal(options.signal);
    if (signal !== undefined) settings.signal = signal;
    return settings;
  }

  // A continuation's text starts as it would inside the full decoded text, leading space
  // included, unless the prompt ends with a special token (then decoding starts afresh anyway).
  private primeDecoder(settings: GenerationSettings, ids: readonly number[]): void {
    const last = ids[ids.length - 1];
    if (last !== undefined && last < this.tokenizer.vocabSize && !this.tokenizer.isSpecial(last)) settings.primeToken = last;
  }

  private generationContext(): GenerationContext {
    return {
      scheduler: this.scheduler,
      slots: this.slots,
      sequences: this.engine,
      createStreamDecoder: () => createModelOutputDecoder(this.tokenizer),
      contextSize: this.parts.contextSize,
      nVocab: this.parts.nVocab,
      batchSize: this.parts.batchSize,
      keepPrefix: this.tokenizer.encodePrompt("").length,
    };
  }
}

/** Check an optional `signal` option: undefined or an AbortSignal. */
function checkSignal(value: unknown): AbortSignal | undefined {
  if (value === undefined || value instanceof AbortSignal) return value;
  throw new InvalidArgumentError(`Option signal must be an AbortSignal, received ${showValue(value)}.`, {
    expected: "AbortSignal",
    received: value,
  });
}

/**
 * Load a model: a GEB Hugging Face directory (config.json, model.safetensors,
 * GEBtokenizer.model), a llama-architecture GGUF file, or a GEB model as a `geb` or `chatglm`
 * GGUF file written by `geb-cpu convert`.
 * Throws InvalidArgumentError for invalid options, ModelFormatError / UnsupportedError /
 * IoError for files it cannot use, CpuFeatureError for a tier this CPU lacks, AbortError when
 * `signal` fires.
 *
 * @example
 * import { loadModel } from "geb-cpu";
 * const model = await loadModel("./models/geb-tiny", { threads: 2 });
 * console.log((await model.generate("你好", { maxTokens: 16 })).text);
 * await model.dispose();
 */
export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<Model> {
  if (typeof path !== "string" || path === "") {
    throw new InvalidArgumentError(`The model path must be a non-empty string, received ${showValue(path)}.`, {
      expected: "path to a GEB directory or a GGUF file",
      received: path,
    });
  }

  // Validate every option before touching any file.
  const o = checkOptionsObject("options", options);
  checkKnownKeys("loadModel options", o, LOAD_OPTION_KEYS);
  const threads = checkNumber("threads", o.threads, { min: 1, max: 1024, integer: true }, binding().defaultThreads());
  const kvCacheType = checkChoice("kvCacheType", o.kvCacheType, ["f32", "f16"], "f32");
  const contextShift = checkBoolean("contextShift", o.contextShift, false);
  const sequences = checkNumber("sequences", o.sequences, { min: 1, max: 64, integer: true }, 1);
  const batchSize = checkNumber("batchSize", o.batchSize, { min: 1, max: 65536, integer: true }, 512);
  if (o.onProgress !== undefined && typeof o.onProgress !== "function") {
    throw new InvalidArgumentError(`Option onProgress must be a function, received ${showValue(o.onProgress)}.`, {
      expected: "function",
      received: o.onProgress,
    });
  }
  if (o.tier !== undefined && o.isa !== undefined && o.tier !== o.isa) {
    throw new InvalidArgumentError(`Options tier (${showValue(o.tier)}) and isa (${showValue(o.isa)}) disagree; pass only one.`, {
      received: { tier: o.tier, isa: o.isa },
    });
  }
  const weightType = o.weightType === undefined ? undefined : checkChoice("weightType", o.weightType, WEIGHT_TYPES, "q8_0");
  if (o.cacheDir !== undefined && (typeof o.cacheDir !== "string" || o.cacheDir === "")) {
    throw new InvalidArgumentError(`Option cacheDir must be a non-empty path, received ${showValue(o.cacheDir)}.`, {
      expected: "directory path",
      received: o.cacheDir,
    });
  }
  const signal = checkSignal(o.signal);
  const tier = resolveTier(o.tier ?? o.isa ?? process.env.GEB_CPU_ISA);

  const progress = (p: LoadProgress): void => o.onProgress?.(p);
  const checkAborted = (): void => {
    if (signal?.aborted) throw new AbortError(`Loading ${path} was aborted.`);
  };

  // Read and check the headers, then convert when asked.
  checkAborted();
  const opened = await openModelFiles(path, { onProgress: progress });
  checkAborted();

  let plan = opened.plan;
  let weightConversions: WeightConversion[] = [];
  let removedTemporaryFiles: string[] = [];
  if (weightType !== undefined) {
    const quantizedPhase = (QUANTIZED_TYPES as readonly string[]).includes(weightType);
    const cacheDir = o.cacheDir ?? defaultCacheDir();
    const quantized = await quantizePlan(plan, {
      weightType,
      cacheDir,
      onProgress: (loadedBytes, totalBytes) => progress({ phase: quantizedPhase ? "quantize" : "convert", loadedBytes, totalBytes }),
      ...(signal === undefined ? {} : { signal }),
    });
    plan = quantized.plan;
    weightConversions = quantized.converted;
    removedTemporaryFiles = quantized.removedTemporaryFiles;
    checkAborted();
  }

  progress({ phase: "tokenizer" });
  const source = opened.tokenizerSource;
  const tokenizer = await loadTokenizer(source.kind === "gguf" ? source.path : source.dir);
  checkAborted();
  // A text id past the embedding's rows would fail the forward step that meets it, so the
  // mismatched pair fails here, at load.
  if (tokenizer.vocabSize > plan.hparams.nVocab) {
    throw new ModelFormatError(
      `The tokenizer of ${path} has ${tokenizer.vocabSize} token ids, but the model has only ${plan.hparams.nVocab} vocabulary rows; use the tokenizer that was trained with these weights.`,
      { path, expected: `<= ${plan.hparams.nVocab}`, received: tokenizer.vocabSize },
    );
  }

  const hparams = plan.hparams;
  // A training context past the option's maximum is valid in the file, so the default is capped
  // instead of failing as if the caller had passed it.
  const maxContextSize = 1 << 20;
  const contextSize = checkNumber("contextSize", o.contextSize, { min: 1, max: maxContextSize, integer: true }, Math.min(hparams.nCtxTrain, maxContextSize));

  progress({ phase: "engine" });
  const engine = await Engine.create(plan, { threads, tier, kvType: kvCacheType, contextSize, nSeqMax: sequences }).catch(
    (error: unknown) => {
      throw withPublicSizeNames(error, contextSize, sequences);
    },
  );
  if (signal?.aborted) {
    await engine.dispose();
    checkAborted();
  }
  progress({ phase: "ready" });

  return new Model({
    path,
    engine,
    tokenizer,
    fileInfo: opened.info,
    architecture: hparams.arch,
    nVocab: hparams.nVocab,
    contextSize,
    threads,
    tier,
    kvCacheType,
    sequences,
    batchSize,
    contextShift,
    weightConversions,
    removedTemporaryFiles,
  });
}

// One entry of EngineInfo.conversions: "<tensor name>: <file type> -> <type in memory>".
const CONVERSION_PATTERN = /^(.+): (\S+) -> (\S+)$/;

/**
 * Returns the engine report with each converted tensor listed under the type the engine
 * converted it to. The native report lists the file's type, which contradicts its own
 * `conversions` list.
 */
function withConvertedTypes(info: EngineInfo): EngineInfo {
  const convertedTo = new Map<string, string>();
  for (const conversion of info.conversions) {
    const match = CONVERSION_PATTERN.exec(conversion);
    if (match !== null) convertedTo.set(match[1]!, match[3]!);
  }
  if (convertedTo.size === 0) return info;
  const tensors = info.tensors.map((tensor) => {
    const type = convertedTo.get(tensor.name);
    return type === undefined ? tensor : { ...tensor, type: type as typeof tensor.type };
  });
  return { ...info, tensors };
}

// The engine's memory errors end with this advice in the engine's option names.
const ENGINE_SIZE_ADVICE = /;\s*lower contextSize or nSeqMax\.?$/;

/**
 * Rewrites an engine memory error (the KV cache or the scratch buffers could not be reserved)
 * in loadModel's option names: the engine calls `sequences` nSeqMax. Other errors pass unchanged.
 */
function withPublicSizeNames(error: unknown, contextSize: number, sequences: number): unknown {
  if (!(error instanceof IoError) || !ENGINE_SIZE_ADVICE.test(error.message)) return error;
  const nativeReason = error.message.replace(ENGINE_SIZE_ADVICE, "");
  const reason = nativeReason.charAt(0).toUpperCase() + nativeReason.slice(1);
  return new IoError(
    `${reason} (contextSize ${contextSize}, sequences ${sequences}). Lower the contextSize or sequences option of loadModel.`,
    { cause: error },
  );
}

/**
 * Returns the default weight cache folder: `$XDG_CACHE_HOME/geb-cpu`, or `~/.cache/geb-cpu` when
 * XDG_CACHE_HOME is unset, empty or relative. The XDG Base Directory Specification requires a
 * relative path in these variables to be ignored as invalid.
 */
function defaultCacheDir(): string {
  const xdgCacheHome = process.env.XDG_CACHE_HOME;
  const base = xdgCacheHome !== undefined && isAbsolute(xdgCacheHome) ? xdgCacheHome : join(homedir(), ".cache");
  return join(base, "geb-cpu");
}
