// Types of everything the native addon (build/Release/geb_cpu.node or a prebuild) exports.
// lib/native.ts is the only module that loads the addon; it returns a `NativeBinding`.
// Sections: CPU detection (native/binding/addon.cpp, native/cpu) and the engine
// (native/binding/engine_binding.cpp). Keep each part in its own section.

// Plans cross the boundary as the plain objects of lib/model/plan.ts.
import type { ModelPlan, TensorType } from "./model/plan.js";

// ---------------------------------------------------------------------------------------------
// CPU part: version, feature detection, kernel tiers and the default thread count.
// ---------------------------------------------------------------------------------------------

/** Names of the kernel tiers, lowest first within each architecture. */
export const KERNEL_TIERS = ["scalar", "avx2", "avx512", "avx512vnni", "neon", "neondot"] as const;

/**
 * A set of kernels compiled for one instruction-set level. `scalar` runs everywhere. On x86-64
 * there are `avx2` (AVX2 + FMA + F16C), `avx512` (AVX-512 F/BW/VL/DQ) and `avx512vnni`. On
 * aarch64 there are `neon` and `neondot` (NEON with the dot-product extension).
 */
export type KernelTier = (typeof KERNEL_TIERS)[number];

/**
 * Instruction-set extensions found at run time. A flag is true only when the CPU has the
 * extension and the OS saves the registers it uses (XCR0 on x86-64).
 */
export interface CpuFeatures {
  /** Architecture the addon was compiled for. */
  arch: "x64" | "arm64" | "other";
  sse42: boolean;
  avx: boolean;
  avx2: boolean;
  fma: boolean;
  f16c: boolean;
  avx512f: boolean;
  avx512bw: boolean;
  avx512vl: boolean;
  avx512dq: boolean;
  avx512vnni: boolean;
  avx512bf16: boolean;
  /** The OS saves YMM state (XCR0 bits 1-2). */
  osYmm: boolean;
  /** The OS saves opmask and ZMM state (XCR0 bits 5-7). */
  osZmm: boolean;
  neon: boolean;
  dotprod: boolean;
  fp16: boolean;
}

/** Exports added by `RegisterCpu` in native/binding/addon.cpp. */
export interface NativeCpuBinding {
  /** Package version the addon was built from (package.json `version` at build time). */
  readonly version: string;
  /** Detected CPU features (detected once per process, then cached). */
  cpuFeatures(): CpuFeatures;
  /** Tiers this CPU supports, lowest first; always starts with `scalar`. */
  kernelTiers(): KernelTier[];
  /** Highest tier this CPU supports. */
  bestTier(): KernelTier;
  /** Physical cores this process may run on (hyper-threads count once); at least 1. */
  defaultThreads(): number;
}

// ---------------------------------------------------------------------------------------------
// Engine part: filled in by the engine code (native/binding/engine_binding.cpp).
// ---------------------------------------------------------------------------------------------

/** Storage type of the KV cache: F32, or IEEE half (half the memory, logits move by ~1e-3). */
export type KvCacheType = "f32" | "f16";

/** Options of the native `Engine` constructor, already validated and defaulted by lib/engine.ts. */
export interface NativeEngineOptions {
  /** Threads of the engine's pool, including the thread that runs each step. */
  threads: number;
  tier: KernelTier;
  kvType: KvCacheType;
  /** Positions per sequence; omitted means the model's `nCtxTrain`. */
  contextSize?: number;
  /** Sequences the KV cache holds; ids are 0 .. nSeqMax - 1. */
  nSeqMax: number;
}

/** One tensor as the engine runs it. */
export interface NativeTensorInfo {
  name: string;
  type: TensorType;
  /** PyTorch order: `[rows, rowLength]` or `[length]`. */
  shape: number[];
}

/** Engine description returned by `info()`. Byte counts are reservations, not resident memory. */
export interface NativeEngineInfo {
  arch: "llama" | "geb";
  tier: KernelTier;
  threads: number;
  kvType: KvCacheType;
  contextSize: number;
  nSeqMax: number;
  nVocab: number;
  /** Bytes reserved for keys and values of every sequence (pages are committed on first use). */
  kvCacheBytes: number;
  /** Bytes of the per-step scratch buffers. */
  scratchBytes: number;
  /** Total size of the memory-mapped model files. */
  mappedBytes: number;
  /**
   * Bytes of weights copied at load into a layout the tier's kernels read faster (Q4_0 and Q8_0
   * in groups of 8 rows on AVX2), 0 when none. The file pages of those weights are released after
   * the copy.
   */
  repackedBytes: number;
  /** True when the LM head reuses `token_embd` (no `output` tensor in the plan). */
  outputTied: boolean;
  tensors: NativeTensorInfo[];
  /** Conversions done at load, e.g. `"blk.0.attn_norm: bf16 -> f32"` (norm weights only). */
  conversions: string[];
}

/** An engine instance of the addon. Errors carry an `ERR_GEB_*` `code`. */
export interface NativeEngine {
  /**
   * Runs one step over a batch (arrays of equal length). Positions of each sequence must continue
   * its cache (`sequenceLength(seq)`, then +1 per entry). Resolves to `nVocab` logits per entry
   * whose `wantsLogits` is non-zero, in batch order. When `abortFlag[0]` becomes non-zero the step
   * stops between layers and rejects with ERR_GEB_ABORTED; cache lengths change only on success.
   * Rejects a call made while another step runs (ERR_GEB_INVALID_ARGUMENT).
   */
  forward(
    seqIds: Int32Array,
    positions: Int32Array,
    tokens: Int32Array,
    wantsLogits: Uint8Array,
    abortFlag?: Int32Array,
  ): Promise<Float32Array>;
  clearSequence(seqId: number): void;
  truncateSequence(seqId: number, nKeep: number): void;
  shiftSequence(seqId: number, nKeep: number, nDiscard: number): void;
  sequenceLength(seqId: number): number;
  info(): NativeEngineInfo;
  /** Waits for a running step, then unmaps the model; later calls throw ERR_GEB_DISPOSED. */
  dispose(): Promise<void>;
}

/** Weight types the single-kernel `matmul` export accepts. */
export type KernelMatmulType = "f32" | "f16" | "bf16";

/**
 * Single kernels on a chosen tier, for tests and benchmarks. Each call copies its inputs and
 * returns a new array. Throws ERR_GEB_INVALID_ARGUMENT on size mismatches and ERR_GEB_CPU_FEATURE
 * for a tier this CPU cannot run.
 */
export interface NativeKernels {
  /** y[t][r] = sum_i W[r][i] * x[t][i]; `w` is (rows, k) row-major, `x` is (nTokens, k); returns (nTokens, rows). */
  matmul(type: KernelMatmulType, w: Uint8Array, rows: number, k: number, x: Float32Array, nTokens: number, tier: KernelTier): Float32Array;
  /** x / sqrt(mean(x^2) + eps) * w. */
  rmsnorm(x: Float32Array, w: Float32Array, eps: number, tier: KernelTier): Float32Array;
  /** RoPE on adjacent pairs of the first `ropeDim` dims of each of `nHeads` heads at position `pos`. */
  rope(x: Float32Array, nHeads: number, headDim: number, ropeDim: number, pos: number, base: number, tier: KernelTier): Float32Array;
  /**
   * Softmax attention of `nGroup` query heads over `nKeys` keys and values of one KV head, with
   * scale 1/sqrt(headDim). With `kvType` "f16", k and v are rounded to half first, as in the F16 KV cache.
   */
  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    nGroup: number,
    headDim: number,
    nKeys: number,
    kvType: KvCacheType,
    tier: KernelTier,
  ): Float32Array;
  /** silu(a) * b. */
  swiglu(a: Float32Array, b: Float32Array, tier: KernelTier): Float32Array;
  softmax(x: Float32Array, tier: KernelTier): Float32Array;
  /**
   * Memory read bandwidth probe: reads a `bytes`-byte buffer (1 MiB to 1 TiB; use several times
   * the last-level cache) `passes` times with a pool of `threads` threads and the tier's read
   * loop, and reports the best pass. Blocks the calling thread while it runs; for benchmarks.
   */
  readBandwidth(bytes: number, threads: number, passes: number, tier: KernelTier): ReadBandwidthResult;
}

/** Result of `kernels.readBandwidth`. */
export interface ReadBandwidthResult {
  /** Bytes read per second in the best pass, all threads together. */
  bytesPerSecond: number;
  /** Wall time of the best pass in milliseconds. */
  bestMs: number;
  threads: number;
}

/** Exports added by `RegisterEngine` in native/binding/engine_binding.cpp. */
export interface NativeEngineBinding {
  Engine: new (plan: ModelPlan, options: NativeEngineOptions) => NativeEngine;
  kernels: NativeKernels;
}

// ---------------------------------------------------------------------------------------------

/** Exports added by `RegisterConvert` in native/binding/convert_binding.cpp. */
export interface NativeConvertBinding {
  /**
   * Re-encodes the values in `src` (stored as `from`: f32, f16 or bf16) as `to` into `dst`, on a
   * worker thread, bit for bit as lib/formats/tensor-encode.ts does. `dst` must have exactly the
   * bytes of the encoded values; resolves to `dst`. Throws ERR_GEB_INVALID_ARGUMENT for a
   * quantized `from`, a partial 32-value block or a wrong `dst` size.
   */
  encodeWeights(from: TensorType, src: Uint8Array, to: TensorType, dst: Uint8Array): Promise<Uint8Array>;
}

/** The whole addon as lib/native.ts returns it. */
export type NativeBinding = NativeCpuBinding & NativeEngineBinding & NativeConvertBinding;
