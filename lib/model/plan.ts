// The model plan: the contract between the file loaders (TypeScript, which parse and validate
// GGUF and safetensors headers) and the native engine (which memory-maps the files and runs
// the forward pass). A plan names every weight by its GGUF-style name and points at its bytes
// inside a file; the engine never parses a model file itself.

/** Weight storage types the engine supports. Quantized types use GGUF's block layouts. */
export type TensorType = "f32" | "f16" | "bf16" | "q8_0" | "q4_0";

/** Model families with their own forward-pass conventions. */
export type Architecture = "llama" | "geb";

/** Hyperparameters of a decoder-only transformer, in GGUF / llama.cpp terms. */
export interface ModelHparams {
  arch: Architecture;
  /** Transformer blocks. */
  nLayer: number;
  /** Residual width (hidden size). */
  nEmbd: number;
  /** Query heads. */
  nHead: number;
  /** Key/value heads (grouped-query attention when smaller than nHead). */
  nHeadKv: number;
  /** Width of every attention head (query, key and value). */
  headDim: number;
  /** Width of the gated feed-forward layer. */
  nFf: number;
  /** Rows of the embedding and output matrices. */
  nVocab: number;
  /** Context length the model was trained with. */
  nCtxTrain: number;
  /** RMSNorm epsilon. */
  rmsEps: number;
  /** RoPE frequency base (theta_i = ropeBase^(-2i/ropeDim)). */
  ropeBase: number;
  /**
   * Leading dimensions of each head that RoPE rotates, as adjacent pairs (d[2i], d[2i+1]).
   * llama GGUF files: the whole head. GEB: the first half of each head.
   */
  ropeDim: number;
}

/** One weight as the engine reads it: a row-major matrix or vector inside a mapped file. */
export interface TensorRef {
  /** GGUF-style name: `token_embd`, `blk.N.attn_q`, ..., `output_norm`, `output`. */
  name: string;
  /** Index into `ModelPlan.files`. */
  file: number;
  /** Absolute byte offset of the first element in that file. */
  offset: number;
  /** Byte length of the tensor data. */
  nbytes: number;
  type: TensorType;
  /** Shape in PyTorch order: `[rows, rowLength]` for matrices, `[length]` for vectors. */
  shape: number[];
}

/**
 * Everything the native engine needs to build a model. Tensor names per block are
 * `attn_norm`, `attn_q`, `attn_k`, `attn_v`, `attn_output`, `ffn_norm`, `ffn_gate`, `ffn_up`,
 * `ffn_down`; global ones are `token_embd`, `output_norm` and `output` (absent when the output
 * matrix is tied to `token_embd`). Fused source tensors such as GEB's `key_value` appear as two
 * refs into the same bytes.
 */
export interface ModelPlan {
  hparams: ModelHparams;
  /** Absolute paths of the files the tensors point into. */
  files: string[];
  tensors: TensorRef[];
}
