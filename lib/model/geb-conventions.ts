// Every convention of GEB-1.3B checkpoints (ChatGLM3-family layout) in one place: config.json
// keys and their defaults, tensor names, the row layout of the fused `key_value` and
// `dense_h_to_4h` matrices, the rotary layout, and the special-token order. The loader and the
// random checkpoint writer both read these tables, so the two cannot drift apart.
//
// Forward pass conventions the plan encodes (the engine implements them for arch "geb"):
// - RMSNorm everywhere (no mean subtraction, no bias); the residual adds the block input.
// - Rotary embedding on the first half of each head only (ropeDim = headDim / 2), rotating
//   ADJACENT pairs (d[2i], d[2i+1]) with theta_i = 10000^(-2i / ropeDim); the second half passes through.
// - SwiGLU: silu(gate) * up, with gate = rows [0, F) and up = rows [F, 2F) of dense_h_to_4h.
// - Query head j reads key/value head j / (heads / kvHeads) (grouped-query attention).

import { ModelFormatError, UnsupportedError } from "../errors.js";
import { corruptHparamError, isValidRmsEps, MAX_TRAINING_CONTEXT } from "./info.js";
import type { ModelHparams } from "./plan.js";

/** RoPE base of ChatGLM3-family models. Their config has no key for it. */
export const GEB_ROPE_BASE = 10000;

/** RMSNorm epsilon used when config.json has no `layernorm_epsilon`. */
export const GEB_DEFAULT_RMS_EPS = 1e-5;

/** File names inside a GEB model directory. */
export const GEB_FILES = {
  config: "config.json",
  weights: "model.safetensors",
  weightsIndex: "model.safetensors.index.json",
  /** SentencePiece model as GEB publishes it; `tokenizer.model` is accepted as a second name. */
  tokenizer: "GEBtokenizer.model",
  tokenizerAlternative: "tokenizer.model",
  tokenizerConfig: "tokenizer_config.json",
} as const;

/**
 * Special tokens that follow the SentencePiece vocabulary, in id order: token k has id
 * `spVocabSize + k`. They are not pieces of the SentencePiece model and plain text never
 * encodes to them (ChatGLM3 appends the same list in the same order).
 */
export const GEB_SPECIAL_TOKENS = [
  "[MASK]",
  "[gMASK]",
  "[sMASK]",
  "sop",
  "eop",
  "<|system|>",
  "<|user|>",
  "<|assistant|>",
  "<|observation|>",
] as const;

/** Tokens every prompt starts with. */
export const GEB_PREFIX_TOKENS = ["[gMASK]", "sop"] as const;

/** Special tokens that end a reply, besides the SentencePiece `</s>` (eos). */
export const GEB_STOP_SPECIAL_TOKENS = ["<|user|>", "<|observation|>"] as const;

/** Map each GEB special token to its id, given the SentencePiece vocabulary size. */
export function gebSpecialTokenIds(spVocabSize: number): Map<string, number> {
  return new Map(GEB_SPECIAL_TOKENS.map((token, k) => [token, spVocabSize + k]));
}

/** Source tensor names (safetensors keys) of a GEB checkpoint. */
export const GEB_TENSOR_NAMES = {
  tokenEmbedding: "transformer.embedding.word_embeddings.weight",
  finalNorm: "transformer.encoder.final_layernorm.weight",
  output: "transformer.output_layer.weight",
  inputNorm: (layer: number) => `transformer.encoder.layers.${layer}.input_layernorm.weight`,
  query: (layer: number) => `transformer.encoder.layers.${layer}.self_attention.query.weight`,
  keyValue: (layer: number) => `transformer.encoder.layers.${layer}.self_attention.key_value.weight`,
  attentionDense: (layer: number) => `transformer.encoder.layers.${layer}.self_attention.dense.weight`,
  postAttentionNorm: (layer: number) => `transformer.encoder.layers.${layer}.post_attention_layernorm.weight`,
  mlpUp: (layer: number) => `transformer.encoder.layers.${layer}.mlp.dense_h_to_4h.weight`,
  mlpDown: (layer: number) => `transformer.encoder.layers.${layer}.mlp.dense_4h_to_h.weight`,
} as const;

/**
 * Source tensors that some ChatGLM-family exports carry and the engine recomputes, so the loader
 * skips them: the rotary inverse frequencies follow from GEB_ROPE_BASE and ropeDim.
 */
export const GEB_IGNORED_TENSORS: ReadonlySet<string> = new Set(["transformer.rotary_pos_emb.inv_freq"]);

/**
 * One source tensor and the plan tensors it becomes. `parts` split the source's rows in order:
 * `key_value` gives `attn_k` (rows [0, kvHeads*D)) then `attn_v`; `dense_h_to_4h` gives
 * `ffn_gate` (rows [0, F)) then `ffn_up`. A single part is the whole tensor.
 */
export interface GebTensorMapping {
  source: string;
  /** Expected source shape in PyTorch order. */
  shape: number[];
  parts: { name: string; rows: number }[];
}

/** List every source tensor a GEB checkpoint with these hparams must contain, with its plan names. */
export function gebTensorMappings(hparams: ModelHparams, tiedOutput: boolean): GebTensorMapping[] {
  const { nEmbd: H, nHead, nHeadKv, headDim: D, nFf: F, nVocab: V } = hparams;
  const whole = (name: string, shape: number[]): GebTensorMapping["parts"] => [{ name, rows: shape.length === 1 ? 1 : shape[0] }];
  const mappings: GebTensorMapping[] = [
    { source: GEB_TENSOR_NAMES.tokenEmbedding, shape: [V, H], parts: whole("token_embd", [V, H]) },
  ];
  for (let i = 0; i < hparams.nLayer; i++) {
    const blk = `blk.${i}.`;
    mappings.push(
      { source: GEB_TENSOR_NAMES.inputNorm(i), shape: [H], parts: whole(blk + "attn_norm", [H]) },
      { source: GEB_TENSOR_NAMES.query(i), shape: [nHead * D, H], parts: whole(blk + "attn_q", [nHead * D, H]) },
      {
        source: GEB_TENSOR_NAMES.keyValue(i),
        shape: [2 * nHeadKv * D, H],
        parts: [
          { name: blk + "attn_k", rows: nHeadKv * D },
          { name: blk + "attn_v", rows: nHeadKv * D },
        ],
      },
      { source: GEB_TENSOR_NAMES.attentionDense(i), shape: [H, nHead * D], parts: whole(blk + "attn_output", [H, nHead * D]) },
      { source: GEB_TENSOR_NAMES.postAttentionNorm(i), shape: [H], parts: whole(blk + "ffn_norm", [H]) },
      {
        source: GEB_TENSOR_NAMES.mlpUp(i),
        shape: [2 * F, H],
        parts: [
          { name: blk + "ffn_gate", rows: F },
          { name: blk + "ffn_up", rows: F },
        ],
      },
      { source: GEB_TENSOR_NAMES.mlpDown(i), shape: [H, F], parts: whole(blk + "ffn_down", [H, F]) },
    );
  }
  mappings.push({ source: GEB_TENSOR_NAMES.finalNorm, shape: [H], parts: whole("output_norm", [H]) });
  if (!tiedOutput) mappings.push({ source: GEB_TENSOR_NAMES.output, shape: [V, H], parts: whole("output", [V, H]) });
  return mappings;
}

/** A GEB config.json mapped to engine terms. */
export interface GebConfig {
  hparams: ModelHparams;
  /** True when `tie_word_embeddings` is set: the output matrix is the token embedding. */
  tiedOutput: boolean;
  /** `torch_dtype` as written (informative: the tensor headers decide the storage type). */
  torchDtype?: string;
}

type RawConfig = Record<string, unknown>;

/**
 * Keys that published GEB configs set to null to mean "not used": GEB-1.3B's config.json has
 * `"pre_seq_len": null`. A null anywhere else is a corrupt value, because reading it as absent
 * would silently take a default or another key's value.
 */
const NULLABLE_KEYS: ReadonlySet<string> = new Set(["pre_seq_len"]);

/** Return `config[key]`, undefined when absent (or null for a NULLABLE_KEYS key); throw for any other null. */
function configValue(config: RawConfig, key: string, rule: string, path: string): unknown {
  const value = config[key];
  if (value === null) {
    if (NULLABLE_KEYS.has(key)) return undefined;
    throw corruptHparamError(`GEB config.json "${key}"`, value, rule, path);
  }
  return value;
}

/** Read an optional positive integer; undefined when the key is absent. */
function optionalPositiveInteger(config: RawConfig, key: string, path: string): number | undefined {
  const value = configValue(config, key, "a positive integer", path);
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
    throw corruptHparamError(`GEB config.json "${key}"`, value, "a positive integer", path);
  }
  return value;
}

/**
 * Read a required positive integer. When the key is absent, `fallback` is used: a number derived
 * from other keys, or another key read in the same way, whose errors then name that key.
 */
function positiveInteger(config: RawConfig, key: string, path: string, fallback?: number | { key: string }): number {
  const value = optionalPositiveInteger(config, key, path);
  if (value !== undefined) return value;
  if (typeof fallback === "number") return fallback;
  const fallbackValue = fallback === undefined ? undefined : optionalPositiveInteger(config, fallback.key, path);
  if (fallbackValue !== undefined) return fallbackValue;
  const names = fallback === undefined ? `"${key}"` : `"${key}" or "${fallback.key}"`;
  throw new ModelFormatError(`GEB config.json has no ${names}; it must be a positive integer.`, { path, expected: "a positive integer" });
}

function optionalBoolean(config: RawConfig, key: string, fallback: boolean, path: string): boolean {
  const value = configValue(config, key, "true or false", path);
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw new ModelFormatError(`GEB config.json "${key}" must be true or false, but it is ${JSON.stringify(value)}.`, { path, received: value });
  }
  return value;
}

/** Reject a config flag whose value changes the forward pass in a way the engine does not implement. */
function rejectFlag(config: RawConfig, key: string, fallback: boolean, supported: boolean, path: string, consequence: string): void {
  if (optionalBoolean(config, key, fallback, path) !== supported) {
    throw new UnsupportedError(`GEB config.json sets "${key}": ${!supported}, ${consequence}; geb-cpu supports only ${key} = ${supported}.`, {
      path,
      expected: supported,
      received: !supported,
    });
  }
}

/**
 * Map a parsed GEB config.json to hparams. Keys missing from the published GEB-1.3B config take
 * the values the model uses: no `rmsnorm` means RMSNorm, no `add_qkv_bias` means no biases,
 * no `num_key_value_heads` falls back to ChatGLM3's `multi_query_group_num` or to full attention.
 *
 * Throws ModelFormatError for missing or mistyped sizes and for a null value (accepted only for
 * `pre_seq_len`, where published configs write it), and UnsupportedError for settings the
 * engine does not implement (LayerNorm, linear biases, post-norm residuals, no final norm,
 * prefix tuning, scaled rotary embeddings).
 */
export function mapGebConfig(raw: unknown, path: string): GebConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ModelFormatError("GEB config.json must contain a JSON object.", { path });
  }
  const config = raw as RawConfig;

  // Features the engine does not implement.
  rejectFlag(config, "rmsnorm", true, true, path, "which asks for LayerNorm");
  rejectFlag(config, "add_bias_linear", false, false, path, "which adds biases to every linear layer");
  rejectFlag(config, "add_qkv_bias", false, false, path, "which adds biases to the query/key/value projections");
  rejectFlag(config, "apply_residual_connection_post_layernorm", false, false, path, "which adds the normed input to the residual");
  rejectFlag(config, "post_layer_norm", true, true, path, "which drops the final RMSNorm");
  if (configValue(config, "pre_seq_len", "null or absent", path) !== undefined) {
    throw new UnsupportedError(`GEB config.json sets "pre_seq_len": ${JSON.stringify(config.pre_seq_len)} (prefix tuning), which geb-cpu does not support.`, {
      path,
      received: config.pre_seq_len,
    });
  }
  const ropeRatio = configValue(config, "rope_ratio", "a positive number", path);
  if (ropeRatio !== undefined && (typeof ropeRatio !== "number" || !(ropeRatio > 0) || !Number.isFinite(ropeRatio))) {
    throw corruptHparamError('GEB config.json "rope_ratio"', ropeRatio, "a positive number", path);
  }
  if (ropeRatio !== undefined && ropeRatio !== 1) {
    throw new UnsupportedError(`GEB config.json sets "rope_ratio": ${JSON.stringify(config.rope_ratio)}; geb-cpu supports only the unscaled RoPE base ${GEB_ROPE_BASE}.`, {
      path,
      received: config.rope_ratio,
    });
  }

  // Sizes.
  const nLayer = positiveInteger(config, "num_layers", path);
  const nEmbd = positiveInteger(config, "hidden_size", path);
  const nHead = positiveInteger(config, "num_attention_heads", path);
  const defaultHeadDim = nEmbd % nHead === 0 ? nEmbd / nHead : undefined;
  const headDim = positiveInteger(config, "kv_channels", path, defaultHeadDim);
  const multiQuery = optionalBoolean(config, "multi_query_attention", false, path);
  const kvFallback = multiQuery ? positiveInteger(config, "multi_query_group_num", path) : nHead;
  const nHeadKv = positiveInteger(config, "num_key_value_heads", path, kvFallback);
  const nFf = positiveInteger(config, "ffn_hidden_size", path);
  const nVocab = positiveInteger(config, "padded_vocab_size", path, { key: "vocab_size" });
  // The training context is seq_length, or max_position_embeddings without it. Both are checked
  // when present, so a corrupt one is reported even when the other one is used.
  for (const key of ["seq_length", "max_position_embeddings"]) {
    const positions = optionalPositiveInteger(config, key, path);
    if (positions !== undefined && positions > MAX_TRAINING_CONTEXT) {
      throw corruptHparamError(`GEB config.json "${key}"`, positions, `at most ${MAX_TRAINING_CONTEXT} positions`, path);
    }
  }
  const nCtxTrain = positiveInteger(config, "seq_length", path, { key: "max_position_embeddings" });

  if (nHead % nHeadKv !== 0) {
    throw new ModelFormatError(`GEB config.json: num_attention_heads (${nHead}) must be a multiple of num_key_value_heads (${nHeadKv}).`, {
      path,
      received: { num_attention_heads: nHead, num_key_value_heads: nHeadKv },
    });
  }
  if (headDim % 4 !== 0) {
    throw new ModelFormatError(`GEB config.json: kv_channels (${headDim}) must be a multiple of 4, so that half of each head splits into rotary pairs.`, {
      path,
      received: headDim,
    });
  }

  const epsRule = "a number above 0 (in float32) and below 1";
  const epsValue = configValue(config, "layernorm_epsilon", epsRule, path) ?? GEB_DEFAULT_RMS_EPS;
  if (typeof epsValue !== "number" || !isValidRmsEps(epsValue)) {
    throw corruptHparamError('GEB config.json "layernorm_epsilon"', epsValue, epsRule, path);
  }

  const hparams: ModelHparams = {
    arch: "geb",
    nLayer,
    nEmbd,
    nHead,
    nHeadKv,
    headDim,
    nFf,
    nVocab,
    nCtxTrain,
    rmsEps: epsValue,
    ropeBase: GEB_ROPE_BASE,
    ropeDim: headDim / 2,
  };
  const tiedOutput = optionalBoolean(config, "tie_word_embeddings", false, path);
  const torchDtype = typeof config.torch_dtype === "string" ? config.torch_dtype : undefined;
  return { hparams, tiedOutput, torchDtype };
}
