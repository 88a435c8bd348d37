// Build a ModelPlan from a parsed GGUF file of architecture `llama`: hyperparameters from the
// `llama.*` keys, tensor names `blk.N.attn_q.weight` -> `blk.N.attn_q`, GGUF dims (ne0 = row
// length) -> plan shape [rows, rowLength], and an absent `output.weight` meaning tied output.

import { ModelFormatError, UnsupportedError } from "../errors.js";
import { planTensorType } from "../formats/ggml-types.js";
import {
  getOptionalNumber,
  getOptionalString,
  getOptionalStringArray,
  getOptionalU32,
  getString,
  getU32,
  type GgufFile,
  type GgufTensorInfo,
} from "../formats/gguf.js";
import { BLOCK_TENSORS, checkPlanTensors } from "./info.js";
import type { ModelHparams, ModelPlan, TensorRef } from "./plan.js";

/** The one GGUF architecture this engine runs. */
export const GGUF_SUPPORTED_ARCHITECTURE = "llama";

const GLOBAL_TENSORS = new Set(["token_embd", "output_norm", "output"]);
const BLOCK_TENSOR_SET: ReadonlySet<string> = new Set(BLOCK_TENSORS);
const BLOCK_NAME = /^blk\.(\d+)\.([a-z_]+)\.weight$/;

/** A plan built from a GGUF file, with the facts `info` needs. */
export interface GgufPlan {
  plan: ModelPlan;
  tiedOutput: boolean;
  name?: string;
}

/** Return the plan shape of a GGUF tensor: `ne` reversed, with trailing unit dims dropped. */
export function ggufPlanShape(ne: readonly number[]): number[] {
  const dims = [...ne];
  while (dims.length > 1 && dims[dims.length - 1] === 1) dims.pop();
  return dims.reverse();
}

/** Map a GGUF tensor name to its plan name, or `undefined` when it is not part of the llama layout. */
export function ggufPlanName(name: string, nLayer: number): string | undefined {
  if (name.endsWith(".weight") && GLOBAL_TENSORS.has(name.slice(0, -".weight".length))) return name.slice(0, -".weight".length);
  const match = BLOCK_NAME.exec(name);
  if (match === null) return undefined;
  const layer = Number(match[1]);
  if (layer >= nLayer || !BLOCK_TENSOR_SET.has(match[2])) return undefined;
  return `blk.${layer}.${match[2]}`;
}

/** Read the llama hyperparameters of a GGUF file, rejecting features the engine does not implement. */
function readLlamaHparams(gguf: GgufFile, tokenEmbedding: GgufTensorInfo): ModelHparams {
  const path = gguf.path;
  const key = (suffix: string): string => `${GGUF_SUPPORTED_ARCHITECTURE}.${suffix}`;

  const experts = getOptionalU32(gguf, key("expert_count")) ?? 0;
  if (experts > 0) {
    throw new UnsupportedError(`GGUF model is a mixture of experts (${key("expert_count")} = ${experts}), which geb-cpu does not run.`, { path });
  }
  const scaling = getOptionalString(gguf, key("rope.scaling.type"));
  if (scaling !== undefined && scaling !== "none") {
    throw new UnsupportedError(`GGUF model uses RoPE scaling "${scaling}", which geb-cpu does not implement.`, { path, received: scaling });
  }

  const nLayer = getU32(gguf, key("block_count"));
  const nEmbd = getU32(gguf, key("embedding_length"));
  const nHead = getU32(gguf, key("attention.head_count"));
  const nHeadKv = getOptionalU32(gguf, key("attention.head_count_kv")) ?? nHead;
  const keyLength = getOptionalU32(gguf, key("attention.key_length"));
  const valueLength = getOptionalU32(gguf, key("attention.value_length"));
  const nFf = getU32(gguf, key("feed_forward_length"));
  const nCtxTrain = getU32(gguf, key("context_length"));
  const rmsEps = getOptionalNumber(gguf, key("attention.layer_norm_rms_epsilon"));

  const positive: Record<string, number> = { block_count: nLayer, embedding_length: nEmbd, "attention.head_count": nHead, "attention.head_count_kv": nHeadKv, feed_forward_length: nFf, context_length: nCtxTrain };
  for (const [suffix, value] of Object.entries(positive)) {
    if (value <= 0) throw new ModelFormatError(`GGUF key ${key(suffix)} is ${value}; it must be positive.`, { path, received: value });
  }
  if (nHead % nHeadKv !== 0) {
    throw new ModelFormatError(`GGUF head counts do not divide: ${nHead} query heads, ${nHeadKv} key/value heads.`, { path, received: { nHead, nHeadKv } });
  }
  if (keyLength === undefined && nEmbd % nHead !== 0) {
    throw new ModelFormatError(`GGUF embedding_length ${nEmbd} is not a multiple of head_count ${nHead}, and attention.key_length is missing.`, { path });
  }
  const headDim = keyLength ?? nEmbd / nHead;
  if (valueLength !== undefined && valueLength !== headDim) {
    throw new UnsupportedError(`GGUF model has key length ${headDim} but value length ${valueLength}; geb-cpu needs them equal.`, { path });
  }
  if (rmsEps === undefined || !(rmsEps > 0)) {
    throw new ModelFormatError(`GGUF key ${key("attention.layer_norm_rms_epsilon")} is missing or not positive; llama models need an RMSNorm epsilon.`, {
      path,
      received: rmsEps,
    });
  }
  const ropeDim = getOptionalU32(gguf, key("rope.dimension_count")) ?? headDim;
  if (ropeDim === 0 || ropeDim > headDim || ropeDim % 2 !== 0) {
    throw new ModelFormatError(`GGUF rope.dimension_count ${ropeDim} must be even and between 2 and the head size ${headDim}.`, { path, received: ropeDim });
  }
  const ropeBase = getOptionalNumber(gguf, key("rope.freq_base")) ?? 10000;

  // Vocabulary rows come from the embedding; the token list may be shorter (padded rows), never longer.
  const nVocab = tokenEmbedding.ne[1] ?? 1;
  const tokens = getOptionalStringArray(gguf, "tokenizer.ggml.tokens");
  if (tokens !== undefined && tokens.length > nVocab) {
    throw new ModelFormatError(`GGUF vocabulary lists ${tokens.length} tokens, but token_embd has only ${nVocab} rows.`, {
      path,
      expected: `<= ${nVocab}`,
      received: tokens.length,
    });
  }
  const declaredVocab = getOptionalU32(gguf, key("vocab_size"));
  if (declaredVocab !== undefined && declaredVocab !== nVocab) {
    throw new ModelFormatError(`GGUF ${key("vocab_size")} is ${declaredVocab}, but token_embd has ${nVocab} rows.`, { path, expected: nVocab, received: declaredVocab });
  }

  return { arch: "llama", nLayer, nEmbd, nHead, nHeadKv, headDim, nFf, nVocab, nCtxTrain, rmsEps, ropeBase, ropeDim };
}

/**
 * Build the plan of a llama-architecture GGUF file. `fileIndex` is the index of the file in
 * `plan.files` (always 0 for a single GGUF).
 *
 * Throws ModelFormatError for a vocabulary-only file, a missing or misshapen tensor or key;
 * UnsupportedError for another architecture, a tensor type without a kernel or a tensor outside
 * the llama layout.
 */
export function planFromGguf(gguf: GgufFile): GgufPlan {
  const path = gguf.path;
  if (gguf.tensors.length === 0) {
    throw new ModelFormatError(
      "GGUF file contains no weights (no tensors) because it is a vocabulary-only file. Use it as a tokenizer, and load a model GGUF that contains weights.",
      { path },
    );
  }
  const architecture = getString(gguf, "general.architecture");
  if (architecture !== GGUF_SUPPORTED_ARCHITECTURE) {
    throw new UnsupportedError(`GGUF architecture "${architecture}" is not supported; geb-cpu runs "llama" GGUF files and GEB model directories.`, {
      path,
      expected: GGUF_SUPPORTED_ARCHITECTURE,
      received: architecture,
    });
  }
  const tokenEmbedding = gguf.tensors.find((t) => t.name === "token_embd.weight");
  if (tokenEmbedding === undefined) {
    throw new ModelFormatError('GGUF model is missing tensor "token_embd.weight".', { path, expected: "token_embd.weight" });
  }
  const hparams = readLlamaHparams(gguf, tokenEmbedding);

  // Each block has 9 tensors. Checking the count first also keeps a corrupt block_count from
  // driving a loop over billions of expected names.
  const minimumTensors = hparams.nLayer * BLOCK_TENSORS.length + 2;
  if (gguf.tensors.length < minimumTensors) {
    throw new ModelFormatError(
      `GGUF ${GGUF_SUPPORTED_ARCHITECTURE}.block_count is ${hparams.nLayer}, which needs at least ${minimumTensors} tensors, but the file has ${gguf.tensors.length}.`,
      { path, expected: minimumTensors, received: gguf.tensors.length },
    );
  }

  const tensors: TensorRef[] = [];
  for (const t of gguf.tensors) {
    const name = ggufPlanName(t.name, hparams.nLayer);
    if (name === undefined) {
      throw new UnsupportedError(`GGUF tensor "${t.name}" is not part of the llama layout geb-cpu runs (biases, extra layers and rope_freqs are not supported).`, {
        path,
        received: t.name,
      });
    }
    const type = planTensorType(t.type);
    if (type === undefined) {
      throw new UnsupportedError(`GGUF tensor "${t.name}" is stored as ${t.type.name}; geb-cpu runs F32, F16, BF16, Q8_0 and Q4_0 tensors. Convert or requantize the model.`, {
        path,
        expected: "F32, F16, BF16, Q8_0 or Q4_0",
        received: t.type.name,
      });
    }
    tensors.push({ name, file: 0, offset: t.offset, nbytes: t.nbytes, type, shape: ggufPlanShape(t.ne) });
  }

  const tiedOutput = !tensors.some((t) => t.name === "output");
  const plan: ModelPlan = { hparams, files: [path], tensors };
  checkPlanTensors(plan, tiedOutput, path);
  for (const ref of tensors) {
    if (ref.shape.length === 1 && (ref.type === "q8_0" || ref.type === "q4_0")) {
      throw new UnsupportedError(`GGUF norm tensor "${ref.name}" is quantized (${ref.type}); geb-cpu needs norm weights in F32, F16 or BF16.`, {
        path,
        received: ref.type,
      });
    }
  }
  return { plan, tiedOutput, name: getOptionalString(gguf, "general.name") };
}
