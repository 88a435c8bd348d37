// Build a ModelPlan from a parsed GGUF file of architecture `llama`, `geb` or `chatglm`:
// hyperparameters from the `<architecture>.*` keys, tensor names `blk.N.attn_q.weight` ->
// `blk.N.attn_q`, GGUF dims (ne0 = row length) -> plan shape [rows, rowLength], and an absent
// `output.weight` meaning tied output. The architectures share keys and tensor names. `geb` and
// `chatglm` files run GEB's forward pass (lib/model/geb-conventions.ts), and a `geb` file's
// rope.dimension_count defaults to half a head instead of the whole head. A `chatglm` file (the
// layout llama.cpp runs) stores gate and up as one `ffn_up` of 2F rows and may fuse `attn_qkv`.
// The plan splits such tensors into refs into the same bytes.

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
import { BLOCK_TENSORS, checkPlanTensors, corruptHparamError, isValidRmsEps, isValidRopeBase, MAX_TRAINING_CONTEXT } from "./info.js";
import type { Architecture, ModelHparams, ModelPlan, TensorRef } from "./plan.js";

/** The llama GGUF architecture. */
export const GGUF_SUPPORTED_ARCHITECTURE = "llama";

/** GGUF architectures this engine runs; `geb` is geb-cpu's own (docs/model-files.md). */
export const GGUF_ARCHITECTURES = ["llama", "geb", "chatglm"] as const;

/** A GGUF `general.architecture` value geb-cpu runs. */
export type GgufArchitecture = (typeof GGUF_ARCHITECTURES)[number];

/** The forward pass each GGUF architecture runs. */
const PLAN_ARCHITECTURE: Readonly<Record<GgufArchitecture, Architecture>> = { llama: "llama", geb: "geb", chatglm: "geb" };

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

/** Read the hyperparameters of a llama, geb or chatglm GGUF file, rejecting features the engine does not implement. */
function readHparams(gguf: GgufFile, arch: GgufArchitecture, tokenEmbedding: GgufTensorInfo): ModelHparams {
  const path = gguf.path;
  const key = (suffix: string): string => `${arch}.${suffix}`;

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
  if (nCtxTrain > MAX_TRAINING_CONTEXT) {
    throw corruptHparamError(`GGUF key ${key("context_length")}`, nCtxTrain, `at most ${MAX_TRAINING_CONTEXT} positions`, path);
  }
  if (rmsEps === undefined) {
    throw new ModelFormatError(`GGUF key ${key("attention.layer_norm_rms_epsilon")} is missing; ${arch} models need an RMSNorm epsilon.`, { path });
  }
  if (!isValidRmsEps(rmsEps)) {
    throw corruptHparamError(`GGUF key ${key("attention.layer_norm_rms_epsilon")}`, rmsEps, "above 0 (in float32) and below 1", path);
  }
  const ropeDim = getOptionalU32(gguf, key("rope.dimension_count")) ?? (arch === "geb" ? headDim / 2 : headDim);
  if (ropeDim === 0 || ropeDim > headDim || ropeDim % 2 !== 0) {
    throw new ModelFormatError(`GGUF rope.dimension_count ${ropeDim} must be even and between 2 and the head size ${headDim}.`, { path, received: ropeDim });
  }
  const ropeBase = getOptionalNumber(gguf, key("rope.freq_base")) ?? 10000;
  if (!isValidRopeBase(ropeBase)) {
    throw corruptHparamError(`GGUF key ${key("rope.freq_base")}`, ropeBase, "a finite float32 above 1", path);
  }

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

  return { arch: PLAN_ARCHITECTURE[arch], nLayer, nEmbd, nHead, nHeadKv, headDim, nFf, nVocab, nCtxTrain, rmsEps, ropeBase, ropeDim };
}

/**
 * Return the plan tensors a fused chatglm tensor splits into, in row order, or undefined when
 * `name` is not fused: `blk.N.ffn_up` of 2F rows is the gate then the up projection, and
 * `blk.N.attn_qkv` is the query, key and value rows.
 */
function chatglmParts(name: string, hparams: ModelHparams): { name: string; rows: number }[] | undefined {
  const match = /^blk\.(\d+)\.(ffn_up|attn_qkv)\.weight$/.exec(name);
  if (match === null || Number(match[1]) >= hparams.nLayer) return undefined;
  const blk = `blk.${match[1]}.`;
  if (match[2] === "ffn_up") {
    return [
      { name: blk + "ffn_gate", rows: hparams.nFf },
      { name: blk + "ffn_up", rows: hparams.nFf },
    ];
  }
  return [
    { name: blk + "attn_q", rows: hparams.nHead * hparams.headDim },
    { name: blk + "attn_k", rows: hparams.nHeadKv * hparams.headDim },
    { name: blk + "attn_v", rows: hparams.nHeadKv * hparams.headDim },
  ];
}

/**
 * Build the plan of a llama-, geb- or chatglm-architecture GGUF file.
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
  const arch = GGUF_ARCHITECTURES.find((name) => name === architecture);
  if (arch === undefined) {
    throw new UnsupportedError(`GGUF architecture "${architecture}" is not supported; geb-cpu runs "llama", "geb" and "chatglm" GGUF files and GEB model directories.`, {
      path,
      expected: GGUF_ARCHITECTURES.join(" or "),
      received: architecture,
    });
  }
  const tokenEmbedding = gguf.tensors.find((t) => t.name === "token_embd.weight");
  if (tokenEmbedding === undefined) {
    throw new ModelFormatError('GGUF model is missing tensor "token_embd.weight".', { path, expected: "token_embd.weight" });
  }
  const hparams = readHparams(gguf, arch, tokenEmbedding);

  // Each block has 9 tensors (6 in a chatglm file with fused attn_qkv and ffn_up). Checking the
  // count first also keeps a corrupt block_count from driving a loop over billions of expected names.
  const minimumTensors = hparams.nLayer * (arch === "chatglm" ? 6 : BLOCK_TENSORS.length) + 2;
  if (gguf.tensors.length < minimumTensors) {
    throw new ModelFormatError(
      `GGUF ${arch}.block_count is ${hparams.nLayer}, which needs at least ${minimumTensors} tensors, but the file has ${gguf.tensors.length}.`,
      { path, expected: minimumTensors, received: gguf.tensors.length },
    );
  }

  const tensors: TensorRef[] = [];
  for (const t of gguf.tensors) {
    const parts = arch === "chatglm" ? chatglmParts(t.name, hparams) : undefined;
    const name = parts === undefined ? ggufPlanName(t.name, hparams.nLayer) : t.name;
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
    const shape = ggufPlanShape(t.ne);
    if (parts === undefined) {
      tensors.push({ name, file: 0, offset: t.offset, nbytes: t.nbytes, type, shape });
      continue;
    }

    // A fused matrix: each part is a contiguous run of whole rows.
    const rows = parts.reduce((sum, part) => sum + part.rows, 0);
    if (shape.length !== 2 || shape[0] !== rows) {
      throw new ModelFormatError(`GGUF tensor "${t.name}" has shape [${shape.join(", ")}], but the hyperparameters need ${rows} rows.`, {
        path,
        expected: rows,
        received: shape,
      });
    }
    let offset = t.offset;
    for (const part of parts) {
      const nbytes = (t.nbytes / rows) * part.rows;
      tensors.push({ name: part.name, file: 0, offset, nbytes, type, shape: [part.rows, shape[1]] });
      offset += nbytes;
    }
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
