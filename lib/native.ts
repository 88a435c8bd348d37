// Loads the native addon (the only module that does) and chooses the kernel tier.
// Lookup order: the GEB_CPU_BINARY override alone when it is set; otherwise node-gyp-build's
// choice for the package root (build/Release, build/Debug, then prebuilds/<platform>-<arch>),
// and, if that file fails to load, every other candidate in the same order. All failures are
// kept and reported together in one NativeLoadError.
import { existsSync, readdirSync, realpathSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

import {
  AbortError,
  ContextOverflowError,
  CpuFeatureError,
  DisposedError,
  GebError,
  InternalError,
  InvalidArgumentError,
  IoError,
  ModelFormatError,
  NativeLoadError,
  UnsupportedError,
  type GebErrorCode,
  type GebErrorDetails,
} from "./errors.js";
import { KERNEL_TIERS, type CpuFeatures, type KernelTier, type NativeBinding } from "./native-types.js";

export { KERNEL_TIERS, type CpuFeatures, type KernelTier, type NativeBinding } from "./native-types.js";

const require = createRequire(import.meta.url);

/** Root of the installed package: the folder holding package.json, binding.gyp and build/. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Environment variable naming an explicit addon file; when set, nothing else is tried. */
export const BINARY_ENV = "GEB_CPU_BINARY";

/** Environment variable forcing a (lower) kernel tier, e.g. `GEB_CPU_ISA=scalar`. */
export const TIER_ENV = "GEB_CPU_ISA";

interface LoadAttempt {
  /** Origin of the candidate, e.g. "GEB_CPU_BINARY" or "build/Release". */
  source: string;
  /** File tried, when there was one. */
  file?: string;
  /** Failure reason. */
  reason: string;
}

let cachedBinding: NativeBinding | undefined;
let cachedPath: string | undefined;

/**
 * Returns the native addon, loading it on the first call.
 * @throws NativeLoadError (`ERR_GEB_NATIVE_LOAD`) when no candidate file loads.
 */
export function binding(): NativeBinding {
  if (cachedBinding === undefined) {
    const loaded = loadAddon();
    cachedBinding = loaded.binding;
    cachedPath = loaded.file;
  }
  return cachedBinding;
}

/** Returns the absolute path of the addon file in use, loading it first if needed. */
export function bindingPath(): string {
  binding();
  return cachedPath as string;
}

/** CPU and kernel-tier information, as `geb-cpu info` prints it. */
export interface CpuInfo {
  /** Package version the addon was built from. */
  addonVersion: string;
  /** Absolute path of the loaded addon file. */
  addonPath: string;
  features: CpuFeatures;
  /** Tiers this CPU supports, lowest first. */
  tiers: KernelTier[];
  /** Highest supported tier. */
  bestTier: KernelTier;
  /** Tier used by default: GEB_CPU_ISA when set, else `bestTier`. */
  selectedTier: KernelTier;
  /** Source of `selectedTier`. */
  tierSource: "GEB_CPU_ISA" | "best";
  /** Physical cores this process may use: the default worker thread count. */
  defaultThreads: number;
}

/**
 * Reports the detected CPU features, the supported kernel tiers, the tier in use and the default
 * thread count.
 * @throws NativeLoadError when the addon cannot load; CpuFeatureError or InvalidArgumentError
 *   when GEB_CPU_ISA names a tier this CPU lacks or no tier at all.
 */
export function cpuInfo(): CpuInfo {
  const addon = binding();
  const fromEnv = process.env[TIER_ENV];
  const hasEnvTier = fromEnv !== undefined && fromEnv.trim() !== "";
  return {
    addonVersion: addon.version,
    addonPath: bindingPath(),
    features: addon.cpuFeatures(),
    tiers: addon.kernelTiers(),
    bestTier: addon.bestTier(),
    selectedTier: resolveTier(),
    tierSource: hasEnvTier ? "GEB_CPU_ISA" : "best",
    defaultThreads: addon.defaultThreads(),
  };
}

/**
 * Chooses the kernel tier: `requested` when given, else the GEB_CPU_ISA environment variable,
 * else the best tier this CPU supports. Names are case-insensitive; surrounding spaces are
 * ignored, and an empty string counts as not given.
 * @throws InvalidArgumentError (`ERR_GEB_INVALID_ARGUMENT`) for a value that names no tier.
 * @throws CpuFeatureError (`ERR_GEB_CPU_FEATURE`) for a tier this CPU cannot run.
 */
export function resolveTier(requested?: string): KernelTier {
  const addon = binding();
  let value: unknown = requested;
  let source = "tier";
  if (value === undefined || (typeof value === "string" && value.trim() === "")) {
    value = process.env[TIER_ENV];
    source = TIER_ENV;
  }
  if (value === undefined || (typeof value === "string" && value.trim() === "")) {
    return addon.bestTier();
  }
  if (typeof value !== "string") {
    throw new InvalidArgumentError(`${source} must be a string naming a kernel tier, received ${typeof value}.`, {
      expected: KERNEL_TIERS,
      received: value,
    });
  }

  const name = value.trim().toLowerCase();
  const supported = addon.kernelTiers();
  if (!(KERNEL_TIERS as readonly string[]).includes(name)) {
    throw new InvalidArgumentError(
      `${source} ${JSON.stringify(value)} is not a kernel tier; use one of: ${supported.join(", ")}.`,
      { expected: supported, received: value },
    );
  }
  if (!(supported as string[]).includes(name)) {
    throw new CpuFeatureError(
      `kernel tier "${name}" (from ${source}) needs instructions this CPU does not have; ` +
        `this CPU supports: ${supported.join(", ")}. Choose one of those or unset ${TIER_ENV}.`,
      { expected: supported, received: name },
    );
  }
  return name as KernelTier;
}

const ERROR_CLASSES: Record<GebErrorCode, new (message: string, details?: GebErrorDetails) => GebError> = {
  ERR_GEB_INVALID_ARGUMENT: InvalidArgumentError,
  ERR_GEB_MODEL_FORMAT: ModelFormatError,
  ERR_GEB_UNSUPPORTED: UnsupportedError,
  ERR_GEB_CONTEXT_OVERFLOW: ContextOverflowError,
  ERR_GEB_DISPOSED: DisposedError,
  ERR_GEB_ABORTED: AbortError,
  ERR_GEB_NATIVE_LOAD: NativeLoadError,
  ERR_GEB_CPU_FEATURE: CpuFeatureError,
  ERR_GEB_IO: IoError,
  ERR_GEB_INTERNAL: InternalError,
};

/**
 * Converts an error thrown by the addon into the geb-cpu error class its `code` names (the
 * native side sets `code` to one of the ERR_GEB_* strings). The original error becomes `cause`.
 * Errors without a known code become InternalError, because every error the addon raises on
 * purpose carries a code.
 * GebError instances pass through unchanged.
 */
export function fromNativeError(error: unknown): GebError {
  if (error instanceof GebError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code in ERROR_CLASSES) {
    const ErrorClass = ERROR_CLASSES[code as GebErrorCode];
    return new ErrorClass(message, { cause: error });
  }
  return new InternalError(`native addon failed without an error code: ${message}`, { cause: error });
}

function describeError(error: unknown): string {
  if (error instanceof Error) return error.message.split("\n")[0] ?? error.message;
  return String(error);
}

function isBinding(value: unknown): value is NativeBinding {
  const candidate = value as Partial<NativeBinding> | null;
  return (
    typeof candidate === "object" &&
    candidate !== null &&
    typeof candidate.version === "string" &&
    typeof candidate.cpuFeatures === "function" &&
    typeof candidate.kernelTiers === "function"
  );
}

// Tries one file; returns the binding or records why it failed. require() picks its loader by
// the extension of the file's real path, so only a regular file whose real path ends in `.node`
// is passed to it: require() then loads it with process.dlopen, as a native addon. Any other
// name (a `.js` file, a folder, a symbolic link to a script) would run as JavaScript.
function tryLoad(source: string, file: string, attempts: LoadAttempt[]): NativeBinding | undefined {
  if (!existsSync(file)) {
    attempts.push({ source, file, reason: "file not found" });
    return undefined;
  }
  const notAddon = checkAddonFile(file);
  if (notAddon !== undefined) {
    attempts.push({ source, file, reason: notAddon });
    return undefined;
  }
  try {
    const loaded: unknown = require(file);
    if (!isBinding(loaded)) {
      attempts.push({ source, file, reason: "loaded, but it is not a geb-cpu addon (no cpuFeatures export)" });
      return undefined;
    }
    return loaded;
  } catch (error) {
    attempts.push({ source, file, reason: describeError(error) });
    return undefined;
  }
}

/** Returns why `file` cannot be a native addon file, or undefined when it can. */
function checkAddonFile(file: string): string | undefined {
  const fix = "it must be a Node-API addon file (geb_cpu.node) built for this package";
  let real: string;
  try {
    real = realpathSync(file);
    if (!statSync(real).isFile()) return `not a regular file; ${fix}`;
  } catch (error) {
    return describeError(error);
  }
  if (path.extname(file) !== ".node" || path.extname(real) !== ".node") {
    const target = real === file ? "" : ` (it resolves to ${real})`;
    return `the file name does not end in .node${target}; ${fix}`;
  }
  return undefined;
}

// Candidate files after node-gyp-build's choice, in its order.
function fallbackCandidates(): Array<{ source: string; file: string }> {
  const candidates = [
    { source: "build/Release", file: path.join(PACKAGE_ROOT, "build", "Release", "geb_cpu.node") },
    { source: "build/Debug", file: path.join(PACKAGE_ROOT, "build", "Debug", "geb_cpu.node") },
  ];
  const prebuildDir = path.join(PACKAGE_ROOT, "prebuilds", `${process.platform}-${process.arch}`);
  if (existsSync(prebuildDir)) {
    for (const name of readdirSync(prebuildDir).sort()) {
      if (name.endsWith(".node")) candidates.push({ source: "prebuilds", file: path.join(prebuildDir, name) });
    }
  }
  return candidates;
}

function loadAddon(): { binding: NativeBinding; file: string } {
  const attempts: LoadAttempt[] = [];

  const override = process.env[BINARY_ENV];
  if (override !== undefined && override !== "") {
    const file = path.resolve(override);
    const loaded = tryLoad(BINARY_ENV, file, attempts);
    if (loaded) return { binding: loaded, file };
    throw loadError(attempts);
  }

  const tried = new Set<string>();
  try {
    const nodeGypBuild = require("node-gyp-build") as { resolve(dir: string): string };
    const file = nodeGypBuild.resolve(PACKAGE_ROOT);
    tried.add(file);
    const loaded = tryLoad("node-gyp-build", file, attempts);
    if (loaded) return { binding: loaded, file };
  } catch (error) {
    attempts.push({ source: "node-gyp-build", reason: describeError(error) });
  }

  for (const { source, file } of fallbackCandidates()) {
    if (tried.has(file)) continue;
    tried.add(file);
    const loaded = tryLoad(source, file, attempts);
    if (loaded) return { binding: loaded, file };
  }
  throw loadError(attempts);
}

function loadError(attempts: LoadAttempt[]): NativeLoadError {
  const target =
    `${process.platform}-${process.arch}, Node ${process.version} ` +
    `(ABI ${process.versions.modules}, N-API ${process.versions.napi ?? "unknown"})`;
  const lines = attempts.map((a) => `  - ${a.source}${a.file ? ` ${a.file}` : ""}: ${a.reason}`);
  const message =
    `geb-cpu could not load its native addon for ${target}.\n` +
    `Tried:\n${lines.join("\n")}\n` +
    `To fix: run \`npm rebuild geb-cpu\` to compile it for this platform (needs a C++17 compiler, ` +
    `make and Python 3), or set ${BINARY_ENV} to the path of a built geb_cpu.node.`;
  return new NativeLoadError(message, { path: PACKAGE_ROOT, received: attempts });
}
