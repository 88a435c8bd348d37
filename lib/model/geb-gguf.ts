// The `geb` GGUF architecture: how a GEB model is stored as one GGUF file that geb-cpu maps in
// place. Hyperparameters are `geb.*` keys, and tensors use the split llama names (`attn_k`,
// `attn_v`, `ffn_gate`, `ffn_up`). The tokenizer is the GEB SentencePiece model written as
// `tokenizer.ggml.*` arrays, plus `geb.tokenizer.*` keys for what llama.cpp's keys cannot
// express (normalizer, model type, GEB's special-token ids). docs/model-files.md lists every key.
//
// This module writes that metadata and reads the tokenizer part back. Hyperparameters are read by
// gguf-plan.ts, which handles `llama` and `geb` files with one reader.

import { ModelFormatError } from "../errors.js";
import type { GgufWriteValue } from "../formats/gguf-writer.js";
import {
  getBool,
  getNumberArray,
  getOptionalFloat32Array,
  getOptionalInt32Array,
  getOptionalInteger,
  getOptionalString,
  getString,
  getStringArray,
  getU32,
  type GgufFile,
} from "../formats/gguf.js";
import { ModelType, PieceType, type SentencePieceModel } from "../tokenizer/sentencepiece-model.js";
import { GEB_SPECIAL_TOKENS } from "./geb-conventions.js";
import type { ModelHparams } from "./plan.js";

/** `general.architecture` of a GEB GGUF file. */
export const GEB_GGUF_ARCHITECTURE = "geb";

/** Keys of the GEB SentencePiece settings, under `geb.tokenizer.`. */
export const GEB_TOKENIZER_KEYS = {
  pieceCount: "geb.tokenizer.sentencepiece.piece_count",
  modelType: "geb.tokenizer.sentencepiece.model_type",
  byteFallback: "geb.tokenizer.sentencepiece.byte_fallback",
  normalizerName: "geb.tokenizer.sentencepiece.normalizer_name",
  precompiledCharsmap: "geb.tokenizer.sentencepiece.precompiled_charsmap",
  addDummyPrefix: "geb.tokenizer.sentencepiece.add_dummy_prefix",
  removeExtraWhitespaces: "geb.tokenizer.sentencepiece.remove_extra_whitespaces",
  escapeWhitespaces: "geb.tokenizer.sentencepiece.escape_whitespaces",
  treatWhitespaceAsSuffix: "geb.tokenizer.sentencepiece.treat_whitespace_as_suffix",
  unknownSurface: "geb.tokenizer.sentencepiece.unknown_surface",
  specialTokenIds: "geb.tokenizer.special_token_ids",
} as const;

/**
 * Jinja chat template stored in `tokenizer.chat_template`: ChatGLM3's layout, which geb-cpu's
 * own "geb" chat format renders (the text is informative; geb-cpu recognizes it by `[gMASK]`).
 */
export const GEB_CHAT_TEMPLATE =
  "[gMASK]sop{% for message in messages %}<|{{ message['role'] }}|>\n {{ message['content'] }}{% endfor %}" +
  "{% if add_generation_prompt %}<|assistant|>{% endif %}";

/**
 * Build the hyperparameter keys of a GEB model under `prefix`: `geb` for geb-cpu's own layout,
 * `chatglm` for llama.cpp's, which reads the same key names.
 */
export function gebHparamsMetadata(hparams: ModelHparams, prefix: "geb" | "chatglm" = GEB_GGUF_ARCHITECTURE): [string, GgufWriteValue][] {
  const key = (suffix: string): string => `${prefix}.${suffix}`;
  return [
    [key("context_length"), { type: "u32", value: hparams.nCtxTrain }],
    [key("embedding_length"), { type: "u32", value: hparams.nEmbd }],
    [key("block_count"), { type: "u32", value: hparams.nLayer }],
    [key("feed_forward_length"), { type: "u32", value: hparams.nFf }],
    [key("attention.head_count"), { type: "u32", value: hparams.nHead }],
    [key("attention.head_count_kv"), { type: "u32", value: hparams.nHeadKv }],
    [key("attention.key_length"), { type: "u32", value: hparams.headDim }],
    [key("attention.value_length"), { type: "u32", value: hparams.headDim }],
    [key("attention.layer_norm_rms_epsilon"), { type: "f32", value: hparams.rmsEps }],
    [key("rope.dimension_count"), { type: "u32", value: hparams.ropeDim }],
    [key("rope.freq_base"), { type: "f32", value: hparams.ropeBase }],
    [key("vocab_size"), { type: "u32", value: hparams.nVocab }],
  ];
}

/**
 * Build the tokenizer metadata of a GEB GGUF file: the SentencePiece pieces, GEB's special tokens at
 * their ids (type CONTROL), unused rows up to `nVocab` named `<pad:ID>` (type UNUSED), and the
 * SentencePiece settings. `specialIds` maps each name of GEB_SPECIAL_TOKENS to its id.
 *
 * Throws ModelFormatError when a special id collides with a piece or another special token, or
 * lies past the `nVocab` embedding rows.
 */
export function gebTokenizerMetadata(model: SentencePieceModel, specialIds: Readonly<Record<string, number>>, nVocab: number): [string, GgufWriteValue][] {
  const pieceCount = model.pieces.length;
  const tokens: (string | undefined)[] = [...model.pieces];
  const scores = Array.from(model.scores);
  const types = Array.from(model.types);
  for (const name of GEB_SPECIAL_TOKENS) {
    const id = specialIds[name];
    if (id === undefined || id < pieceCount || id >= nVocab || tokens[id] !== undefined) {
      throw new ModelFormatError(`GEB special token ${name} has id ${String(id)}, which must be unique and between ${pieceCount} and ${nVocab - 1}.`, {
        received: id,
      });
    }
    tokens[id] = name;
    scores[id] = 0;
    types[id] = PieceType.CONTROL;
  }
  for (let id = 0; id < nVocab; id++) {
    if (tokens[id] !== undefined) continue;
    tokens[id] = `<pad:${id}>`;
    scores[id] = 0;
    types[id] = PieceType.UNUSED;
  }

  const { trainerSpec, normalizerSpec } = model;
  let modelType = String(trainerSpec.modelType);
  if (trainerSpec.modelType === ModelType.BPE) modelType = "bpe";
  if (trainerSpec.modelType === ModelType.UNIGRAM) modelType = "unigram";
  const metadata: [string, GgufWriteValue][] = [
    ["tokenizer.ggml.model", { type: "string", value: "llama" }],
    ["tokenizer.ggml.tokens", { type: "array", elementType: "string", value: tokens as string[] }],
    ["tokenizer.ggml.scores", { type: "array", elementType: "f32", value: Float32Array.from(scores) }],
    ["tokenizer.ggml.token_type", { type: "array", elementType: "i32", value: Int32Array.from(types) }],
  ];
  const optionalId = (key: string, id: number): void => {
    if (id >= 0 && id < pieceCount) metadata.push([key, { type: "u32", value: id }]);
  };
  optionalId("tokenizer.ggml.bos_token_id", trainerSpec.bosId);
  optionalId("tokenizer.ggml.eos_token_id", trainerSpec.eosId);
  optionalId("tokenizer.ggml.unknown_token_id", trainerSpec.unkId);
  optionalId("tokenizer.ggml.padding_token_id", trainerSpec.padId);
  metadata.push(
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: false }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: false }],
    ["tokenizer.ggml.add_space_prefix", { type: "bool", value: normalizerSpec.addDummyPrefix }],
    ["tokenizer.chat_template", { type: "string", value: GEB_CHAT_TEMPLATE }],
    [GEB_TOKENIZER_KEYS.pieceCount, { type: "u32", value: pieceCount }],
    [GEB_TOKENIZER_KEYS.modelType, { type: "string", value: modelType }],
    [GEB_TOKENIZER_KEYS.byteFallback, { type: "bool", value: trainerSpec.byteFallback }],
    [GEB_TOKENIZER_KEYS.normalizerName, { type: "string", value: normalizerSpec.name }],
  );
  if (normalizerSpec.precompiledCharsmap.length > 0) {
    metadata.push([GEB_TOKENIZER_KEYS.precompiledCharsmap, { type: "array", elementType: "u8", value: normalizerSpec.precompiledCharsmap }]);
  }
  metadata.push(
    [GEB_TOKENIZER_KEYS.addDummyPrefix, { type: "bool", value: normalizerSpec.addDummyPrefix }],
    [GEB_TOKENIZER_KEYS.removeExtraWhitespaces, { type: "bool", value: normalizerSpec.removeExtraWhitespaces }],
    [GEB_TOKENIZER_KEYS.escapeWhitespaces, { type: "bool", value: normalizerSpec.escapeWhitespaces }],
    [GEB_TOKENIZER_KEYS.treatWhitespaceAsSuffix, { type: "bool", value: trainerSpec.treatWhitespaceAsSuffix }],
    [GEB_TOKENIZER_KEYS.unknownSurface, { type: "string", value: trainerSpec.unkSurface }],
    [GEB_TOKENIZER_KEYS.specialTokenIds, { type: "array", elementType: "u32", value: GEB_SPECIAL_TOKENS.map((name) => specialIds[name]!) }],
  );
  return metadata;
}

/** The GEB tokenizer stored in a GEB GGUF file. */
export interface GebGgufTokenizer {
  /** The SentencePiece model rebuilt from the file: its pieces and settings. */
  model: SentencePieceModel;
  /** Id of each GEB special token, by name. */
  specialIds: Record<string, number>;
}

/**
 * Read the GEB tokenizer of a `geb` GGUF file back into a SentencePiece model and the special-token
 * ids, so it encodes exactly as the GEBtokenizer.model it was written from.
 *
 * Throws ModelFormatError when a key is missing, mistyped or inconsistent with the token list.
 */
export function readGebGgufTokenizer(file: GgufFile): GebGgufTokenizer {
  const path = file.path;
  const tokens = getStringArray(file, "tokenizer.ggml.tokens");
  const pieceCount = getU32(file, GEB_TOKENIZER_KEYS.pieceCount);
  if (pieceCount === 0 || pieceCount > tokens.length) {
    throw new ModelFormatError(`GGUF ${GEB_TOKENIZER_KEYS.pieceCount} is ${pieceCount}; it must be between 1 and the ${tokens.length} tokens. The file is corrupt.`, {
      path,
      received: pieceCount,
    });
  }
  const allScores = getOptionalFloat32Array(file, "tokenizer.ggml.scores") ?? new Float32Array(tokens.length);
  const allTypes = getOptionalInt32Array(file, "tokenizer.ggml.token_type");
  if (allScores.length !== tokens.length || (allTypes !== undefined && allTypes.length !== tokens.length)) {
    throw new ModelFormatError(`GGUF tokenizer.ggml.scores and token_type must have one entry per token (${tokens.length}).`, { path });
  }
  const types = new Uint8Array(pieceCount).fill(PieceType.NORMAL);
  for (let id = 0; id < pieceCount && allTypes !== undefined; id++) {
    const type = allTypes[id]!;
    if (type < PieceType.NORMAL || type > PieceType.BYTE) {
      throw new ModelFormatError(`GGUF token ${id} has unknown token_type ${type}.`, { path, received: type });
    }
    types[id] = type;
  }

  const modelTypeName = getString(file, GEB_TOKENIZER_KEYS.modelType);
  let modelType = Number(modelTypeName);
  if (modelTypeName === "bpe") modelType = ModelType.BPE;
  if (modelTypeName === "unigram") modelType = ModelType.UNIGRAM;
  if (!Number.isInteger(modelType)) {
    throw new ModelFormatError(`GGUF ${GEB_TOKENIZER_KEYS.modelType} is "${modelTypeName}"; expected "bpe" or "unigram".`, { path, received: modelTypeName });
  }
  const charsmapValue = file.metadata.get(GEB_TOKENIZER_KEYS.precompiledCharsmap);
  if (charsmapValue !== undefined && !(charsmapValue instanceof Uint8Array)) {
    throw new ModelFormatError(`GGUF ${GEB_TOKENIZER_KEYS.precompiledCharsmap} must be an array of u8.`, { path });
  }
  const tokenId = (key: string): number => {
    const id = getOptionalInteger(file, key);
    if (id !== undefined && (id < 0 || id >= pieceCount)) {
      throw new ModelFormatError(`GGUF ${key} is ${id}, outside the ${pieceCount} SentencePiece pieces.`, { path, received: id });
    }
    return id ?? -1;
  };

  const model: SentencePieceModel = {
    pieces: tokens.slice(0, pieceCount),
    scores: allScores.slice(0, pieceCount),
    types,
    trainerSpec: {
      modelType,
      vocabSize: pieceCount,
      byteFallback: getBool(file, GEB_TOKENIZER_KEYS.byteFallback),
      // Not used by the encoder: SentencePiece's own encoder applies them only while training.
      splitByWhitespace: true,
      splitDigits: false,
      treatWhitespaceAsSuffix: getBool(file, GEB_TOKENIZER_KEYS.treatWhitespaceAsSuffix),
      allowWhitespaceOnlyPieces: false,
      unkId: tokenId("tokenizer.ggml.unknown_token_id"),
      bosId: tokenId("tokenizer.ggml.bos_token_id"),
      eosId: tokenId("tokenizer.ggml.eos_token_id"),
      padId: tokenId("tokenizer.ggml.padding_token_id"),
      unkSurface: getOptionalString(file, GEB_TOKENIZER_KEYS.unknownSurface) ?? " \u2047 ",
    },
    normalizerSpec: {
      name: getOptionalString(file, GEB_TOKENIZER_KEYS.normalizerName) ?? "identity",
      precompiledCharsmap: charsmapValue ?? new Uint8Array(0),
      addDummyPrefix: getBool(file, GEB_TOKENIZER_KEYS.addDummyPrefix),
      removeExtraWhitespaces: getBool(file, GEB_TOKENIZER_KEYS.removeExtraWhitespaces),
      escapeWhitespaces: getBool(file, GEB_TOKENIZER_KEYS.escapeWhitespaces),
    },
  };

  const ids = getNumberArray(file, GEB_TOKENIZER_KEYS.specialTokenIds);
  if (ids.length !== GEB_SPECIAL_TOKENS.length) {
    throw new ModelFormatError(`GGUF ${GEB_TOKENIZER_KEYS.specialTokenIds} has ${ids.length} ids; GEB has ${GEB_SPECIAL_TOKENS.length} special tokens.`, {
      path,
      expected: GEB_SPECIAL_TOKENS.length,
      received: ids.length,
    });
  }
  const specialIds: Record<string, number> = {};
  GEB_SPECIAL_TOKENS.forEach((name, k) => {
    const id = ids[k]!;
    if (!Number.isInteger(id) || id < 0 || id >= tokens.length || tokens[id] !== name) {
      throw new ModelFormatError(`GGUF ${GEB_TOKENIZER_KEYS.specialTokenIds} gives ${name} the id ${id}, but that token is not "${name}".`, {
        path,
        received: id,
      });
    }
    if (id < pieceCount) throw pieceCountError(file, pieceCount, `the special token ${name} has id ${id}, inside the pieces`);
    specialIds[name] = id;
  });

  // gebTokenizerMetadata writes the pieces, then only special tokens and `<pad:ID>` rows, so any
  // other token past the piece count is a piece that the count leaves out.
  const specialIdSet = new Set(Object.values(specialIds));
  for (let id = pieceCount; id < tokens.length; id++) {
    if (specialIdSet.has(id) || tokens[id] === `<pad:${id}>`) continue;
    throw pieceCountError(file, pieceCount, `token ${id} after the pieces is ${JSON.stringify(tokens[id])}, which is neither a GEB special token nor padding`);
  }
  return { model, specialIds };
}

/** Build the error for a piece count that disagrees with the token list. */
function pieceCountError(file: GgufFile, pieceCount: number, conflict: string): ModelFormatError {
  return new ModelFormatError(
    `GGUF ${GEB_TOKENIZER_KEYS.pieceCount} is ${pieceCount}, but ${conflict}; the piece count and the token list disagree, so the file is corrupt.`,
    { path: file.path, received: pieceCount },
  );
}

/**
 * True when a parsed GGUF header carries the GEB tokenizer: a `geb` file, or a `chatglm` file
 * that geb-cpu wrote (it has `geb.tokenizer.special_token_ids`).
 */
// NOTE: a chatglm file without these keys (one from llama.cpp's own converter) is read as a
// llama-style vocabulary, with BOS and without the `[gMASK] sop` prefix ChatGLM models expect.
export function isGebGguf(file: GgufFile): boolean {
  const architecture = getOptionalString(file, "general.architecture");
  if (architecture === GEB_GGUF_ARCHITECTURE) return true;
  return architecture === "chatglm" && file.metadata.has(GEB_TOKENIZER_KEYS.specialTokenIds);
}
