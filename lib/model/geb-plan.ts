// Build a ModelPlan from a GEB Hugging Face directory. config.json is mapped through the GEB
// conventions, and safetensors headers (single file or sharded index) are read. Every expected
// tensor is checked by name, dtype and shape. The fused `key_value` and `dense_h_to_4h` matrices
// become two refs into the same bytes, so nothing is copied.

import { readFile, stat } from "node:fs/promises";
import { basename, join } from "node:path";

import { IoError, ModelFormatError, UnsupportedError } from "../errors.js";
import { readSafetensorsModel, type SafetensorsModel } from "../formats/safetensors.js";
import { GEB_FILES, GEB_IGNORED_TENSORS, gebTensorMappings, mapGebConfig, type GebConfig } from "./geb-conventions.js";
import { checkPlanTensors, sameShape } from "./info.js";
import type { ModelPlan, TensorRef, TensorType } from "./plan.js";

const SAFETENSORS_PLAN_TYPES: Readonly<Record<string, TensorType>> = { F32: "f32", F16: "f16", BF16: "bf16" };

/** A plan built from a GEB directory, with the facts `info` needs. */
export interface GebPlan {
  plan: ModelPlan;
  config: GebConfig;
  /** Parsed safetensors headers. */
  weights: SafetensorsModel;
  /** Path of the SentencePiece model file. */
  tokenizerPath: string;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Read and parse config.json of a GEB directory. */
export async function readGebConfig(dir: string): Promise<GebConfig> {
  const path = join(dir, GEB_FILES.config);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new ModelFormatError(`Not a GEB model directory: ${dir} has no config.json. Pass a GEB checkpoint folder or a .gguf file.`, { path: dir });
    }
    throw new IoError(`Could not read ${path}: ${(error as Error).message}.`, { path, cause: error });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ModelFormatError(`GEB config.json is not valid JSON: ${(error as Error).message}.`, { path, cause: error });
  }
  return mapGebConfig(raw, path);
}

/** Find the weights of a GEB directory: `model.safetensors`, else the sharded index. */
async function findWeights(dir: string): Promise<string> {
  const single = join(dir, GEB_FILES.weights);
  if (await exists(single)) return single;
  const index = join(dir, GEB_FILES.weightsIndex);
  if (await exists(index)) return index;
  if (await exists(join(dir, "pytorch_model.bin")) || (await exists(join(dir, "pytorch_model.bin.index.json")))) {
    throw new UnsupportedError(
      `GEB directory ${dir} contains only PyTorch pickle weights, which geb-cpu cannot read. Convert them to model.safetensors first.`,
      { path: dir },
    );
  }
  throw new ModelFormatError(`GEB directory ${dir} has no ${GEB_FILES.weights} and no ${GEB_FILES.weightsIndex}.`, { path: dir });
}

/** Find the SentencePiece model of a GEB directory. */
async function findTokenizer(dir: string): Promise<string> {
  for (const name of [GEB_FILES.tokenizer, GEB_FILES.tokenizerAlternative]) {
    const path = join(dir, name);
    if (await exists(path)) return path;
  }
  throw new ModelFormatError(`GEB directory ${dir} has no tokenizer: ${GEB_FILES.tokenizer} is missing.`, { path: dir, expected: GEB_FILES.tokenizer });
}

/**
 * Map the safetensors tensors of a GEB checkpoint to plan tensors, checking names, dtypes and
 * shapes against the config. Every source tensor must be used, except GEB_IGNORED_TENSORS.
 */
export function planFromGebWeights(config: GebConfig, weights: SafetensorsModel, dir: string): ModelPlan {
  const files = weights.files.map((f) => f.path);
  const errorPath = weights.index?.path ?? files[0];
  const tensors: TensorRef[] = [];
  const used = new Set<string>();

  // Each layer has 7 source tensors. Checking the count first also keeps a corrupt num_layers
  // from driving a loop over billions of expected names.
  const minimumTensors = config.hparams.nLayer * 7 + 2;
  if (weights.tensors.size < minimumTensors) {
    throw new ModelFormatError(
      `GEB config.json sets num_layers = ${config.hparams.nLayer}, which needs at least ${minimumTensors} tensors, but the checkpoint has ${weights.tensors.size}.`,
      { path: errorPath, expected: minimumTensors, received: weights.tensors.size },
    );
  }

  for (const mapping of gebTensorMappings(config.hparams, config.tiedOutput)) {
    const source = weights.tensors.get(mapping.source);
    if (source === undefined) {
      throw new ModelFormatError(`GEB checkpoint is missing tensor "${mapping.source}" (expected shape [${mapping.shape.join(", ")}]).`, {
        path: errorPath,
        expected: mapping.source,
      });
    }
    used.add(mapping.source);
    const type = SAFETENSORS_PLAN_TYPES[source.dtype];
    if (type === undefined) {
      throw new UnsupportedError(`GEB tensor "${mapping.source}" has dtype ${source.dtype}; geb-cpu reads F32, F16 and BF16 safetensors.`, {
        path: weights.files[source.fileIndex].path,
        expected: "F32, F16 or BF16",
        received: source.dtype,
      });
    }
    if (!sameShape(source.shape, mapping.shape)) {
      throw new ModelFormatError(
        `GEB tensor "${mapping.source}" has shape [${source.shape.join(", ")}], but config.json needs [${mapping.shape.join(", ")}].`,
        { path: weights.files[source.fileIndex].path, expected: mapping.shape, received: source.shape },
      );
    }

    // Split fused matrices by rows: each part is a contiguous run of whole rows.
    const rowLength = mapping.shape.length === 1 ? mapping.shape[0] : mapping.shape[1];
    const rowBytes = mapping.shape.length === 1 ? source.nbytes : source.nbytes / mapping.shape[0];
    let offset = source.offset;
    for (const part of mapping.parts) {
      const shape = mapping.shape.length === 1 ? [rowLength] : [part.rows, rowLength];
      const nbytes = mapping.shape.length === 1 ? source.nbytes : part.rows * rowBytes;
      tensors.push({ name: part.name, file: source.fileIndex, offset, nbytes, type, shape });
      offset += nbytes;
    }
  }

  for (const name of weights.tensors.keys()) {
    if (used.has(name) || GEB_IGNORED_TENSORS.has(name)) continue;
    if (name.endsWith(".bias")) {
      throw new UnsupportedError(`GEB checkpoint contains bias tensor "${name}"; geb-cpu runs GEB models without biases.`, { path: errorPath, received: name });
    }
    throw new ModelFormatError(`GEB checkpoint contains tensor "${name}", which is not part of a ${config.hparams.nLayer}-layer GEB model.`, {
      path: errorPath,
      received: name,
    });
  }

  const plan: ModelPlan = { hparams: config.hparams, files, tensors };
  checkPlanTensors(plan, config.tiedOutput, dir);
  return plan;
}

/** Open a GEB directory: config, weights headers and tokenizer path, and build its plan. */
export async function planFromGebDirectory(dir: string): Promise<GebPlan> {
  const config = await readGebConfig(dir);
  const weightsPath = await findWeights(dir);
  const tokenizerPath = await findTokenizer(dir);
  const weights = await readSafetensorsModel(weightsPath);
  const plan = planFromGebWeights(config, weights, dir);
  return { plan, config, weights, tokenizerPath };
}

/** Name a GEB checkpoint after its directory. */
export function gebModelName(dir: string): string {
  return basename(dir);
}
