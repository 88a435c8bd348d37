// Model file summary shown by `inspect` and returned with every loaded plan, plus the shape and
// type checks the GGUF and GEB plan builders share.

import { ModelFormatError } from "../errors.js";
import type { Architecture, ModelHparams, ModelPlan, TensorRef } from "./plan.js";

/** Summary of a model file or directory, named as in the public API (see docs/glossary.md). */
export interface ModelFileInfo {
  /** `"gguf"` for a GGUF file, `"geb"` for a GEB Hugging Face directory. */
  format: "gguf" | "geb";
  /** The file or directory that was opened (absolute). */
  path: string;
  /** `general.name` of a GGUF file, or the directory name of a GEB checkpoint. */
  name?: string;
  architecture: Architecture;
  /** Weights in the checkpoint (elements of every tensor the plan uses). */
  parameterCount: number;
  layers: number;
  /** Residual width (`n_embd`). */
  embeddingSize: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffnSize: number;
  /** Rows of the embedding and output matrices. */
  vocabSize: number;
  /** Context length the model was trained with. */
  contextLength: number;
  ropeDim: number;
  ropeBase: number;
  rmsEps: number;
  /** True when the output matrix is the token embedding. */
  tiedOutput: boolean;
  /** Source tensors in the file(s), before fused matrices are split. */
  tensorCount: number;
  /** Source tensors per stored type name (`"F32"`, `"BF16"`, `"Q8_0"`...). */
  tensorTypes: Record<string, number>;
  /** Bytes of all model files together. */
  fileSize: number;
  /** The files the plan's tensors point into. */
  files: string[];
  /** Milliseconds spent reading and validating headers (no tensor data is read). */
  loadTimeMs: number;
}

/**
 * Progress of `openModelFiles`. Only headers are read, so `loadedBytes` counts the bytes of the
 * files whose headers have been checked, not bytes read.
 */
export interface LoadProgress {
  /** `"header"` after each file's header is parsed, `"plan"` once the plan is complete. */
  phase: "header" | "plan";
  /** Bytes of the model files whose headers have been read and checked. */
  loadedBytes: number;
  /** Bytes of all model files. */
  totalBytes: number;
}

/** Build the info fields that follow from hparams. */
export function hparamsInfo(hparams: ModelHparams): Pick<
  ModelFileInfo,
  "architecture" | "layers" | "embeddingSize" | "heads" | "kvHeads" | "headDim" | "ffnSize" | "vocabSize" | "contextLength" | "ropeDim" | "ropeBase" | "rmsEps"
> {
  return {
    architecture: hparams.arch,
    layers: hparams.nLayer,
    embeddingSize: hparams.nEmbd,
    heads: hparams.nHead,
    kvHeads: hparams.nHeadKv,
    headDim: hparams.headDim,
    ffnSize: hparams.nFf,
    vocabSize: hparams.nVocab,
    contextLength: hparams.nCtxTrain,
    ropeDim: hparams.ropeDim,
    ropeBase: hparams.ropeBase,
    rmsEps: hparams.rmsEps,
  };
}

/** Plan tensor names of one transformer block, in forward-pass order. */
export const BLOCK_TENSORS = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"] as const;

/** Return the expected plan shape of every tensor (`[rows, rowLength]` or `[length]`), by plan name. */
export function expectedPlanShapes(hparams: ModelHparams, tiedOutput: boolean): Map<string, number[]> {
  const { nEmbd: H, nHead, nHeadKv, headDim: D, nFf: F, nVocab: V } = hparams;
  const shapes = new Map<string, number[]>([["token_embd", [V, H]]]);
  for (let i = 0; i < hparams.nLayer; i++) {
    const blk = `blk.${i}.`;
    shapes.set(blk + "attn_norm", [H]);
    shapes.set(blk + "attn_q", [nHead * D, H]);
    shapes.set(blk + "attn_k", [nHeadKv * D, H]);
    shapes.set(blk + "attn_v", [nHeadKv * D, H]);
    shapes.set(blk + "attn_output", [H, nHead * D]);
    shapes.set(blk + "ffn_norm", [H]);
    shapes.set(blk + "ffn_gate", [F, H]);
    shapes.set(blk + "ffn_up", [F, H]);
    shapes.set(blk + "ffn_down", [H, F]);
  }
  shapes.set("output_norm", [H]);
  if (!tiedOutput) shapes.set("output", [V, H]);
  return shapes;
}

/**
 * Largest training context a model file may declare. Positions above 2^24 are not exact in
 * float32, where the engine computes RoPE angles, so a larger value means a corrupt file.
 */
export const MAX_TRAINING_CONTEXT = 2 ** 24;

/** Return true when `value` is a valid RMSNorm epsilon: below 1 and positive in float32. */
export function isValidRmsEps(value: number): boolean {
  return Math.fround(value) > 0 && value < 1;
}

/** Return true when `value` is a valid RoPE frequency base: above 1 and finite in float32. */
export function isValidRopeBase(value: number): boolean {
  return value > 1 && Number.isFinite(Math.fround(value));
}

/**
 * Build the error for a hyperparameter whose value no model geb-cpu runs can have. `setting`
 * names the key as the file spells it, such as `GGUF key llama.rope.freq_base`.
 */
export function corruptHparamError(setting: string, value: unknown, rule: string, path: string): ModelFormatError {
  const valueText = typeof value === "number" ? String(value) : JSON.stringify(value);
  return new ModelFormatError(`${setting} is ${valueText}, but it must be ${rule}; the model file is corrupt or not one geb-cpu can run.`, {
    path,
    expected: rule,
    received: value,
  });
}

/** Check that a finished plan has exactly the expected tensors with the expected shapes. */
export function checkPlanTensors(plan: ModelPlan, tiedOutput: boolean, path: string): void {
  const expected = expectedPlanShapes(plan.hparams, tiedOutput);
  const byName = new Map<string, TensorRef>();
  for (const ref of plan.tensors) byName.set(ref.name, ref);
  for (const [name, shape] of expected) {
    const ref = byName.get(name);
    if (ref === undefined) {
      throw new ModelFormatError(`Model is missing tensor "${name}" (expected shape [${shape.join(", ")}]).`, { path, expected: name });
    }
    if (!sameShape(ref.shape, shape)) {
      throw new ModelFormatError(
        `Tensor "${name}" has shape [${ref.shape.join(", ")}], but the model's hyperparameters need [${shape.join(", ")}].`,
        { path, expected: shape, received: ref.shape },
      );
    }
  }
}

/** Compare two shapes element by element. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((size, i) => size === b[i]);
}
