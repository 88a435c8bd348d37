// Entry point of model loading on the TypeScript side. It opens a GGUF file or a GEB directory
// and reads and validates its headers. It returns the ModelPlan the native engine maps, a summary
// for `inspect` and `Model.info()`, and the tokenizer's location. No tensor data is read here.

import { stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";

import { IoError, ModelFormatError } from "../errors.js";
import { readGguf } from "../formats/gguf.js";
import { GEB_IGNORED_TENSORS } from "./geb-conventions.js";
import { gebModelName, planFromGebDirectory } from "./geb-plan.js";
import { planFromGguf } from "./gguf-plan.js";
import { hparamsInfo, type LoadProgress, type ModelFileInfo } from "./info.js";
import type { ModelPlan } from "./plan.js";

export type { LoadProgress, ModelFileInfo } from "./info.js";

/** Location of an opened model's tokenizer. */
export type TokenizerSource =
  | { kind: "gguf"; path: string }
  /** `modelFile` is the SentencePiece model found in `dir` (GEBtokenizer.model or tokenizer.model). */
  | { kind: "geb-dir"; dir: string; modelFile: string };

/** Options of `openModelFiles`. */
export interface OpenModelOptions {
  /** Called after each file's header is read and once the plan is complete. */
  onProgress?: (progress: LoadProgress) => void;
}

/** Result of `openModelFiles`. */
export interface OpenedModel {
  plan: ModelPlan;
  info: ModelFileInfo;
  tokenizerSource: TokenizerSource;
}

/** Count source tensors per stored type name. */
function countTypes(names: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of names) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

/**
 * Open a model: a `.gguf` file (architecture `llama`, `geb` or `chatglm`) or a GEB directory (config.json,
 * model.safetensors or a sharded index, GEBtokenizer.model). Reads only headers, checks every
 * tensor against the hyperparameters, and builds the plan.
 *
 * Throws ModelFormatError (`ERR_GEB_MODEL_FORMAT`) for files that are not models, truncated,
 * corrupt or inconsistent (a missing tensor is named); UnsupportedError (`ERR_GEB_UNSUPPORTED`)
 * for other architectures, tensor types or config features; IoError (`ERR_GEB_IO`) when the
 * path cannot be read.
 *
 * @example
 * const { plan, info } = await openModelFiles("models/llama-tiny.gguf");
 * console.log(info.layers, info.parameterCount, plan.tensors.length);
 */
export async function openModelFiles(path: string, options: OpenModelOptions = {}): Promise<OpenedModel> {
  const started = performance.now();
  const absolute = resolve(path);
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(absolute)).isDirectory();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === "ENOENT" ? "no such file or directory" : (error as Error).message;
    throw new IoError(`Could not open model ${absolute}: ${reason}.`, { path: absolute, cause: error });
  }
  if (isDirectory) return openGebDirectory(absolute, started, options);

  rejectCheckpointFile(absolute);
  return openGgufFile(absolute, started, options);
}

/**
 * Throw ModelFormatError, asking for the folder, when `absolute` names a file of a GEB
 * checkpoint (a `.safetensors` weights file or a `.json` config or index) instead of its folder.
 */
export function rejectCheckpointFile(absolute: string): void {
  if (/(\.safetensors|\.json)$/.test(absolute)) {
    throw new ModelFormatError(`${absolute} is part of a GEB checkpoint; pass the directory that contains it, not the file.`, {
      path: absolute,
      expected: dirname(absolute),
    });
  }
}

async function openGebDirectory(dir: string, started: number, options: OpenModelOptions): Promise<OpenedModel> {
  const { plan, config, weights, tokenizerPath } = await planFromGebDirectory(dir);
  const totalBytes = weights.files.reduce((sum, f) => sum + f.fileSize, 0);
  let loadedBytes = 0;
  for (const file of weights.files) {
    loadedBytes += file.fileSize;
    options.onProgress?.({ phase: "header", loadedBytes, totalBytes });
  }

  // Every source tensor is used by the plan except the ignored ones (unknown names throw).
  let parameterCount = 0;
  const sourceTypes: string[] = [];
  for (const t of weights.tensors.values()) {
    if (GEB_IGNORED_TENSORS.has(t.name)) continue;
    parameterCount += t.shape.reduce((a, b) => a * b, 1);
    sourceTypes.push(t.dtype);
  }
  options.onProgress?.({ phase: "plan", loadedBytes: totalBytes, totalBytes });

  const info: ModelFileInfo = {
    format: "geb",
    path: dir,
    name: gebModelName(dir),
    ...hparamsInfo(plan.hparams),
    parameterCount,
    tiedOutput: config.tiedOutput,
    tensorCount: sourceTypes.length,
    tensorTypes: countTypes(sourceTypes),
    fileSize: totalBytes,
    files: plan.files,
    loadTimeMs: performance.now() - started,
  };
  return { plan, info, tokenizerSource: { kind: "geb-dir", dir, modelFile: tokenizerPath } };
}

async function openGgufFile(path: string, started: number, options: OpenModelOptions): Promise<OpenedModel> {
  const gguf = await readGguf(path);
  options.onProgress?.({ phase: "header", loadedBytes: gguf.fileSize, totalBytes: gguf.fileSize });
  const { plan, tiedOutput, name } = planFromGguf(gguf);
  options.onProgress?.({ phase: "plan", loadedBytes: gguf.fileSize, totalBytes: gguf.fileSize });

  const info: ModelFileInfo = {
    format: "gguf",
    path,
    name,
    ...hparamsInfo(plan.hparams),
    parameterCount: gguf.tensors.reduce((sum, t) => sum + t.elements, 0),
    tiedOutput,
    tensorCount: gguf.tensors.length,
    tensorTypes: countTypes(gguf.tensors.map((t) => t.type.name)),
    fileSize: gguf.fileSize,
    files: plan.files,
    loadTimeMs: performance.now() - started,
  };
  return { plan, info, tokenizerSource: { kind: "gguf", path } };
}
