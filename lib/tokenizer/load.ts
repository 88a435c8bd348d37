// Loading a tokenizer from disk: a SentencePiece `.model` file, a GGUF file (only its header is
// read, never the weights) or a GEB directory (`GEBtokenizer.model` plus `tokenizer_config.json`).
// GEB's nine chat tokens are not pieces of its SentencePiece model. Their ids come from
// tokenizer_config.json `special_tokens` when it lists them, else they follow the pieces in order.

import { open, readFile, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

import { GebError, InvalidArgumentError, IoError, ModelFormatError, UnsupportedError } from "../errors.js";
import {
  getOptionalBool,
  getOptionalFloat32Array,
  getOptionalInt32Array,
  getOptionalInteger,
  getOptionalString,
  getOptionalStringArray,
  readGguf,
  type GgufFile,
} from "../formats/gguf.js";
import { GEB_FILES, GEB_SPECIAL_TOKENS } from "../model/geb-conventions.js";
import { isGebGguf, readGebGgufTokenizer } from "../model/geb-gguf.js";
import { Normalizer } from "./normalizer.js";
import { ModelType, parseSentencePieceModel, PieceType, type SentencePieceModel } from "./sentencepiece-model.js";
import { Tokenizer, type TokenizerConfig } from "./tokenizer.js";

export { GEB_SPECIAL_TOKENS };

/** File name of GEB's SentencePiece model. */
export const GEB_TOKENIZER_FILE = GEB_FILES.tokenizer;

const GGUF_MAGIC_BYTES = "GGUF";

/**
 * Loads a tokenizer from a SentencePiece `.model` file, a GGUF file (vocab-only or full; only the
 * header is read) or a GEB model directory.
 *
 * Throws InvalidArgumentError (`ERR_GEB_INVALID_ARGUMENT`) when `path` is not a non-empty string,
 * IoError (`ERR_GEB_IO`) when the path cannot be read, ModelFormatError
 * (`ERR_GEB_MODEL_FORMAT`) for a malformed file and UnsupportedError (`ERR_GEB_UNSUPPORTED`) for a
 * tokenizer type this package does not implement (such as GGUF `tokenizer.ggml.model` = `gpt2`).
 *
 * @example
 * const tokenizer = await loadTokenizer("models/geb-1.3b");
 * const ids = tokenizer.encodePrompt("你好");
 */
export async function loadTokenizer(path: string): Promise<Tokenizer> {
  if (typeof path !== "string" || path === "") {
    const shown = typeof path === "string" ? '""' : path === null ? "null" : typeof path;
    throw new InvalidArgumentError(`loadTokenizer() needs a non-empty path string, received ${shown}.`, {
      expected: "path to a tokenizer file, a GGUF file or a GEB directory",
      received: path,
    });
  }
  const info = await statOrThrow(path);
  if (info.isDirectory()) return loadGebDirectory(path);
  if (await startsWithGgufMagic(path)) return loadGgufTokenizer(path);
  if (basename(path) === GEB_TOKENIZER_FILE) return loadGeb(path, join(dirname(path), GEB_FILES.tokenizerConfig));
  return tokenizerFromSentencePiece(await readSentencePiece(path), path);
}

async function statOrThrow(path: string) {
  try {
    return await stat(path);
  } catch (error) {
    throw new IoError(`Cannot read tokenizer path ${path}: ${(error as Error).message}. Check that the path exists.`, {
      path,
      cause: error,
    });
  }
}

async function startsWithGgufMagic(path: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(path, "r");
    const head = Buffer.alloc(4);
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    return bytesRead === 4 && head.toString("latin1") === GGUF_MAGIC_BYTES;
  } catch (error) {
    throw new IoError(`Cannot read tokenizer file ${path}: ${(error as Error).message}.`, { path, cause: error });
  } finally {
    await handle?.close();
  }
}

async function readSentencePiece(path: string): Promise<SentencePieceModel> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new IoError(`Cannot read SentencePiece model ${path}: ${(error as Error).message}.`, { path, cause: error });
  }
  try {
    return parseSentencePieceModel(bytes);
  } catch (error) {
    if (error instanceof GebError && error.path === undefined) {
      throw new ModelFormatError(`${error.message} (file ${path})`, { path, cause: error });
    }
    throw error;
  }
}

/** Settings shared by every tokenizer built from a SentencePiece model. */
function sentencePieceConfig(model: SentencePieceModel, path: string): TokenizerConfig {
  const trainer = model.trainerSpec;
  let modelType: "bpe" | "unigram";
  if (trainer.modelType === ModelType.BPE) modelType = "bpe";
  else if (trainer.modelType === ModelType.UNIGRAM) modelType = "unigram";
  else {
    const names: Record<number, string> = { [ModelType.WORD]: "WORD", [ModelType.CHAR]: "CHAR" };
    const name = names[trainer.modelType] ?? String(trainer.modelType);
    throw new UnsupportedError(`SentencePiece model type ${name} is not supported; only BPE and UNIGRAM models are.`, { path });
  }
  if (model.denormalizerSpec !== undefined && model.denormalizerSpec.precompiledCharsmap.length > 0) {
    // TODO: apply the denormalizer's character map when decoding.
    throw new UnsupportedError("SentencePiece models with a denormalizer character map are not supported.", { path });
  }

  const count = model.pieces.length;
  const idOrUndefined = (id: number): number | undefined => (id >= 0 && id < count ? id : undefined);
  const unkFromType = model.types.indexOf(PieceType.UNKNOWN);
  const unkId = unkFromType >= 0 ? unkFromType : idOrUndefined(trainer.unkId);
  const userDefined = model.pieces.filter((_, id) => model.types[id] === PieceType.USER_DEFINED);
  const normalizer = new Normalizer(model.normalizerSpec, userDefined, trainer.treatWhitespaceAsSuffix);
  const eosId = idOrUndefined(trainer.eosId);

  const config: TokenizerConfig = {
    family: "sentencepiece",
    pieces: model.pieces,
    scores: model.scores,
    types: model.types,
    segmentation: { kind: "sentencepiece", modelType, normalizer, byteFallback: trainer.byteFallback },
    unkSurface: trainer.unkSurface,
    stripLeadingSpace: model.normalizerSpec.addDummyPrefix || model.normalizerSpec.removeExtraWhitespaces,
    stripAllLeadingSpaces: model.normalizerSpec.removeExtraWhitespaces,
    promptPrefix: [],
    stopTokenIds: eosId === undefined ? [] : [eosId],
  };
  if (unkId !== undefined) config.unkId = unkId;
  const bosId = idOrUndefined(trainer.bosId);
  if (bosId !== undefined) config.bosId = bosId;
  if (eosId !== undefined) config.eosId = eosId;
  const padId = idOrUndefined(trainer.padId);
  if (padId !== undefined) config.padId = padId;
  return config;
}

function tokenizerFromSentencePiece(model: SentencePieceModel, path: string): Tokenizer {
  return new Tokenizer(sentencePieceConfig(model, path));
}

async function loadGebDirectory(directory: string): Promise<Tokenizer> {
  const configPath = join(directory, "tokenizer_config.json");
  const config = await readJsonIfPresent(configPath);
  const vocabFile = typeof config?.["vocab_file"] === "string" ? config["vocab_file"] : GEB_TOKENIZER_FILE;
  return loadGeb(join(directory, vocabFile), configPath, config);
}

async function readJsonIfPresent(path: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new IoError(`Cannot read ${path}: ${(error as Error).message}.`, { path, cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ModelFormatError(`Invalid JSON in ${path}: ${(error as Error).message}.`, { path, cause: error });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ModelFormatError(`Invalid ${path}: expected a JSON object.`, { path });
  }
  return parsed as Record<string, unknown>;
}

async function loadGeb(modelPath: string, configPath: string, knownConfig?: Record<string, unknown>): Promise<Tokenizer> {
  const tokenizerConfig = knownConfig ?? (await readJsonIfPresent(configPath));
  await statOrThrow(modelPath);
  const model = await readSentencePiece(modelPath);
  const specials = gebSpecialIds(tokenizerConfig?.["special_tokens"], model.pieces.length, configPath);
  return gebTokenizer(model, specials, modelPath);
}

/** Build GEB's tokenizer from its SentencePiece model and the ids of its nine special tokens. */
function gebTokenizer(model: SentencePieceModel, specials: Record<string, number>, path: string): Tokenizer {
  const config = sentencePieceConfig(model, path);
  config.family = "geb";
  config.extraSpecials = specials;
  config.promptPrefix = [specials["[gMASK]"]!, specials["sop"]!];
  config.stopTokenIds = [...(config.eosId === undefined ? [] : [config.eosId]), specials["<|user|>"]!, specials["<|observation|>"]!];
  return new Tokenizer(config);
}

/**
 * Returns GEB's special-token ids: from `special_tokens` when the config lists them (all nine,
 * each at or past the SentencePiece vocabulary), else the piece count + 0..8 in the fixed order.
 */
function gebSpecialIds(listed: unknown, pieceCount: number, configPath: string): Record<string, number> {
  const ids: Record<string, number> = {};
  if (listed === undefined) {
    GEB_SPECIAL_TOKENS.forEach((name, i) => (ids[name] = pieceCount + i));
    return ids;
  }
  if (typeof listed !== "object" || listed === null || Array.isArray(listed)) {
    throw new ModelFormatError(`Invalid "special_tokens" in ${configPath}: expected an object of token name to id.`, {
      path: configPath,
    });
  }
  const table = listed as Record<string, unknown>;
  const seen = new Set<number>();
  for (const name of GEB_SPECIAL_TOKENS) {
    const id = table[name];
    if (typeof id !== "number" || !Number.isInteger(id) || id < pieceCount || seen.has(id)) {
      throw new ModelFormatError(
        `Invalid "special_tokens" in ${configPath}: "${name}" must be a distinct integer id of at least ${pieceCount} (the SentencePiece vocabulary size), found ${JSON.stringify(id)}.`,
        { path: configPath, expected: `integer >= ${pieceCount}`, received: id },
      );
    }
    seen.add(id);
    ids[name] = id;
  }
  return ids;
}

/** GGUF token types (`tokenizer.ggml.token_type`) use the same numbers as SentencePiece piece types. */
async function loadGgufTokenizer(path: string): Promise<Tokenizer> {
  const file = await readGguf(path);
  // A `geb` GGUF file carries the whole GEB SentencePiece model (lib/model/geb-gguf.ts).
  if (isGebGguf(file)) {
    const { model, specialIds } = readGebGgufTokenizer(file);
    return gebTokenizer(model, specialIds, path);
  }
  const modelName = getOptionalString(file, "tokenizer.ggml.model");
  if (modelName === undefined) {
    throw new ModelFormatError(`GGUF file ${path} has no "tokenizer.ggml.model" key, so it carries no tokenizer.`, { path });
  }
  if (modelName !== "llama") {
    // TODO: byte-level BPE vocabularies (gpt2 and its pre-tokenizers) and other tokenizer types.
    throw new UnsupportedError(
      `GGUF tokenizer.ggml.model "${modelName}" is not supported; only "llama" (SentencePiece-style) vocabularies are.`,
      { path, expected: "llama", received: modelName },
    );
  }
  return new Tokenizer(llamaConfig(file));
}

function llamaConfig(file: GgufFile): TokenizerConfig {
  const path = file.path;
  const pieces = getOptionalStringArray(file, "tokenizer.ggml.tokens");
  if (pieces === undefined || pieces.length === 0) {
    throw new ModelFormatError(`GGUF file ${path} has no "tokenizer.ggml.tokens".`, { path });
  }
  const count = pieces.length;
  const scores = getOptionalFloat32Array(file, "tokenizer.ggml.scores") ?? new Float32Array(count);
  const tokenTypes = getOptionalInt32Array(file, "tokenizer.ggml.token_type");
  for (const [key, length] of [
    ["tokenizer.ggml.scores", scores.length],
    ["tokenizer.ggml.token_type", tokenTypes?.length ?? count],
  ] as const) {
    if (length !== count) {
      throw new ModelFormatError(`GGUF key "${key}" has ${length} entries but there are ${count} tokens.`, { path });
    }
  }
  const types = new Uint8Array(count).fill(PieceType.NORMAL);
  if (tokenTypes !== undefined) {
    for (let i = 0; i < count; i++) {
      const type = tokenTypes[i]!;
      if (type < PieceType.NORMAL || type > PieceType.BYTE) {
        throw new ModelFormatError(`GGUF token ${i} has unknown token_type ${type}.`, { path, received: type });
      }
      types[i] = type;
    }
  }

  // llama.cpp's defaults for SentencePiece-style vocabularies.
  const tokenId = (key: string, fallback: number | undefined): number | undefined => {
    const value = getOptionalInteger(file, key) ?? fallback;
    if (value === undefined || value < 0) return undefined;
    if (value >= count) {
      throw new ModelFormatError(`GGUF key "${key}" is ${value}, past the ${count} tokens.`, { path, received: value });
    }
    return value;
  };
  const bosId = tokenId("tokenizer.ggml.bos_token_id", 1);
  const eosId = tokenId("tokenizer.ggml.eos_token_id", 2);
  const unkId = tokenId("tokenizer.ggml.unknown_token_id", 0);
  const padId = tokenId("tokenizer.ggml.padding_token_id", undefined);
  const addBos = getOptionalBool(file, "tokenizer.ggml.add_bos_token") ?? true;
  const addSpacePrefix = getOptionalBool(file, "tokenizer.ggml.add_space_prefix") ?? true;

  const config: TokenizerConfig = {
    family: "llama",
    pieces,
    scores,
    types,
    segmentation: { kind: "llama.cpp", addSpacePrefix },
    // NOTE: llama.cpp prints an unknown token differently; this follows SentencePiece's " ⁇ ".
    unkSurface: " \u2047 ",
    stripLeadingSpace: addSpacePrefix,
    stripAllLeadingSpaces: false,
    promptPrefix: addBos && bosId !== undefined ? [bosId] : [],
    stopTokenIds: eosId === undefined ? [] : [eosId],
  };
  if (bosId !== undefined) config.bosId = bosId;
  if (eosId !== undefined) config.eosId = eosId;
  if (unkId !== undefined) config.unkId = unkId;
  if (padId !== undefined) config.padId = padId;
  const chatTemplate = getOptionalString(file, "tokenizer.chat_template");
  if (chatTemplate !== undefined) config.chatTemplate = chatTemplate;
  return config;
}
