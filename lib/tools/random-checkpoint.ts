// Random checkpoint writer for tests and benchmarks: given a GEB config.json, write a GEB
// directory (safetensors, config.json, tokenizer files) or a llama-architecture GGUF of the same
// shapes, filled with seeded pseudo-random weights. Data is generated and written in chunks, so a
// full-size GEB-1.3B stand-in (2.7 GB) never sits in memory. Such files are test data only.
//
// Both formats of one config and seed hold the same values before encoding. Each plan tensor
// (`blk.0.attn_k`...) is generated from its own name, and GEB's fused matrices are the
// concatenation of their parts. Values are BF16-representable, so a BF16 GEB directory and an F32
// or BF16 GGUF hold exactly the same weights. The GGUF sets rope.dimension_count = headDim / 2,
// which makes the llama forward pass (adjacent-pair RoPE on the first dims of each head) the GEB
// one, so the two files describe the same model.
//
// CLI: node dist/tools/random-checkpoint.js --config C --out DIR|FILE --format geb|gguf [--type T]
//      [--seed N] [--std X] [--zeros] [--tokenizer FILE] [--vocab FILE] [--name NAME]

import { chmod, copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { GebError, InvalidArgumentError, ModelFormatError } from "../errors.js";
import { writeGguf, type GgufWriteTensor, type GgufWriteValue, type TensorDataSource } from "../formats/gguf-writer.js";
import { ggmlTypeForPlanType } from "../formats/ggml-types.js";
import { writeSafetensors, type SafetensorsWriteTensor } from "../formats/safetensors-writer.js";
import { encodeTensorValues } from "../formats/tensor-encode.js";
import { GEB_FILES, GEB_SPECIAL_TOKENS, gebTensorMappings, mapGebConfig } from "../model/geb-conventions.js";
import { expectedPlanShapes } from "../model/info.js";
import type { ModelHparams, TensorType } from "../model/plan.js";
import { parseSentencePieceModel } from "../tokenizer/sentencepiece-model.js";

/** A tokenizer vocabulary to store in a GGUF file. */
export interface GgufVocabulary {
  tokens: string[];
  /** SentencePiece scores, one per token. Default 0 for every token. */
  scores?: number[];
  /** GGUF token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte). Default 1. */
  types?: number[];
  bosId?: number;
  eosId?: number;
  unknownId?: number;
}

/** Options of `writeRandomCheckpoint`. */
export interface RandomCheckpointOptions {
  /** Parsed GEB config.json. */
  config: unknown;
  /** Path of the config, used in error messages. */
  configPath?: string;
  /** Output directory (format "geb") or file (format "gguf"). */
  out: string;
  format: "geb" | "gguf";
  /** Storage type of the matrices. GEB directories take f32, f16 or bf16 (default bf16); GGUF files any plan type (default f32). */
  type?: TensorType;
  /** Seed of the generator. Default 1. */
  seed?: number;
  /** Standard deviation of the weights (norm weights are 1 plus this noise). Default 0.02. */
  std?: number;
  /** Write headers only and leave all tensor data as zeros in a sparse file. Default false. */
  zeros?: boolean;
  /**
   * SentencePiece model: copied into a GEB directory as GEBtokenizer.model (required for "geb");
   * for "gguf", its pieces become the vocabulary unless `vocabulary` is given.
   */
  tokenizerModel?: string;
  /** Vocabulary stored in a GGUF file (GEB's special tokens and padding rows are appended). */
  vocabulary?: GgufVocabulary;
  /** Model name (GGUF `general.name`). Default: the output's base name. */
  name?: string;
  /** Called after each tensor is written. */
  onProgress?: (writtenBytes: number, totalBytes: number) => void;
}

/** Paths and hyperparameters of a written checkpoint. */
export interface RandomCheckpointResult {
  /** The directory or GGUF file. */
  path: string;
  /** Every file written. */
  files: string[];
  hparams: ModelHparams;
}

const CHUNK_ELEMENTS = 1 << 20;
/** llama.cpp `general.file_type` values for the types this writer produces. */
const GGUF_FILE_TYPES: Record<TensorType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, bf16: 32 };
const SAFETENSORS_DTYPES: Partial<Record<TensorType, string>> = { f32: "F32", f16: "F16", bf16: "BF16" };

/** Return a 32-bit seed for one tensor: FNV-1a of its name mixed with the global seed. */
function tensorSeed(seed: number, name: string): number {
  let hash = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193);
  hash >>>= 0;
  return hash === 0 ? 0x9e3779b9 : hash;
}

/**
 * Yield `count` pseudo-random values in chunks: `mean` plus a triangular variate of standard
 * deviation `std` (the sum of two uniforms, a cheap bell-shaped stand-in for a normal).
 * Values are rounded to BF16 precision, as in a real GEB checkpoint, so F32 and BF16 files of one
 * seed hold exactly the same weights.
 */
function* randomValues(seed: number, count: number, mean: number, std: number): Generator<Float32Array> {
  let state = seed >>> 0;
  const scale = (std * Math.sqrt(6)) / 65535;
  for (let start = 0; start < count; start += CHUNK_ELEMENTS) {
    const chunk = new Float32Array(Math.min(CHUNK_ELEMENTS, count - start));
    for (let i = 0; i < chunk.length; i++) {
      // xorshift32
      state ^= state << 13;
      state >>>= 0;
      state ^= state >>> 17;
      state ^= state << 5;
      state >>>= 0;
      chunk[i] = mean + ((state & 0xffff) + (state >>> 16) - 65535) * scale;
    }
    // Round to nearest even at bit 16. The values are small and finite, so no NaN case arises.
    const bits = new Uint32Array(chunk.buffer);
    for (let i = 0; i < bits.length; i++) bits[i] = (bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) & 0xffff0000;
    yield chunk;
  }
}

/** Data source of one or more plan tensors written back to back (a fused source tensor). */
function tensorSource(parts: { name: string; elements: number; isNorm: boolean }[], type: TensorType, seed: number, std: number): TensorDataSource {
  return function* () {
    for (const part of parts) {
      for (const values of randomValues(tensorSeed(seed, part.name), part.elements, part.isNorm ? 1 : 0, std)) {
        yield encodeTensorValues(type, values);
      }
    }
  };
}

/** Write a GEB directory: config.json, model.safetensors, the tokenizer files. */
async function writeGebDirectory(options: RandomCheckpointOptions, hparams: ModelHparams, tiedOutput: boolean): Promise<string[]> {
  const type = options.type ?? "bf16";
  const dtype = SAFETENSORS_DTYPES[type];
  if (dtype === undefined) {
    throw new InvalidArgumentError(`GEB directories store f32, f16 or bf16 weights, not ${type}.`, { expected: "f32, f16 or bf16", received: type });
  }
  if (options.tokenizerModel === undefined) {
    throw new InvalidArgumentError("A GEB directory needs a SentencePiece tokenizer model: pass tokenizerModel (--tokenizer FILE).");
  }
  await mkdir(options.out, { recursive: true });

  const seed = options.seed ?? 1;
  const std = options.std ?? 0.02;
  const tensors: SafetensorsWriteTensor[] = gebTensorMappings(hparams, tiedOutput).map((mapping) => {
    const rowLength = mapping.shape[mapping.shape.length - 1];
    const parts = mapping.parts.map((part) => ({
      name: part.name,
      elements: mapping.shape.length === 1 ? rowLength : part.rows * rowLength,
      isNorm: mapping.shape.length === 1,
    }));
    return { name: mapping.source, dtype, shape: mapping.shape, data: options.zeros ? undefined : tensorSource(parts, type, seed, std) };
  });

  const weightsPath = join(options.out, GEB_FILES.weights);
  await writeSafetensors(weightsPath, tensors, { format: "pt" });
  const configPath = join(options.out, GEB_FILES.config);
  await writeFile(configPath, JSON.stringify(options.config, null, 2) + "\n");
  const tokenizerPath = join(options.out, GEB_FILES.tokenizer);
  await copyFile(options.tokenizerModel, tokenizerPath);
  await chmod(tokenizerPath, 0o644);
  const tokenizerConfigPath = join(options.out, GEB_FILES.tokenizerConfig);
  await writeFile(tokenizerConfigPath, JSON.stringify({ tokenizer_class: "GEBTokenizer", vocab_file: GEB_FILES.tokenizer }, null, 2) + "\n");
  options.onProgress?.(1, 1);
  return [configPath, weightsPath, tokenizerPath, tokenizerConfigPath];
}

/** GGUF tokenizer metadata: the given vocabulary, GEB's special tokens, then unused padding rows. */
function vocabularyMetadata(vocabulary: GgufVocabulary, nVocab: number): [string, GgufWriteValue][] {
  const tokens = [...vocabulary.tokens];
  const scores = vocabulary.scores ? [...vocabulary.scores] : tokens.map(() => 0);
  const types = vocabulary.types ? [...vocabulary.types] : tokens.map(() => 1);
  for (const special of GEB_SPECIAL_TOKENS) {
    tokens.push(special);
    scores.push(0);
    types.push(3);
  }
  while (tokens.length < nVocab) {
    tokens.push(`<pad:${tokens.length}>`);
    scores.push(0);
    types.push(5);
  }
  if (tokens.length > nVocab) {
    throw new InvalidArgumentError(`The vocabulary has ${tokens.length} tokens with GEB's special tokens, more than the ${nVocab} embedding rows.`, {
      expected: `<= ${nVocab}`,
      received: tokens.length,
    });
  }
  return [
    ["tokenizer.ggml.model", { type: "string", value: "llama" }],
    ["tokenizer.ggml.tokens", { type: "array", elementType: "string", value: tokens }],
    ["tokenizer.ggml.scores", { type: "array", elementType: "f32", value: Float32Array.from(scores) }],
    ["tokenizer.ggml.token_type", { type: "array", elementType: "i32", value: Int32Array.from(types) }],
    ["tokenizer.ggml.bos_token_id", { type: "u32", value: vocabulary.bosId ?? 1 }],
    ["tokenizer.ggml.eos_token_id", { type: "u32", value: vocabulary.eosId ?? 2 }],
    ["tokenizer.ggml.unknown_token_id", { type: "u32", value: vocabulary.unknownId ?? 0 }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: false }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: false }],
    ["tokenizer.ggml.add_space_prefix", { type: "bool", value: true }],
  ];
}

/** Write a llama-architecture GGUF with the shapes of a GEB config. */
async function writeGgufFile(options: RandomCheckpointOptions, hparams: ModelHparams, tiedOutput: boolean): Promise<string[]> {
  const type = options.type ?? "f32";
  const seed = options.seed ?? 1;
  const std = options.std ?? 0.02;
  const { nEmbd, nHead, headDim } = hparams;

  const metadata: [string, GgufWriteValue][] = [
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: options.name ?? basename(options.out).replace(/\.gguf$/, "") }],
    ["general.file_type", { type: "u32", value: GGUF_FILE_TYPES[type] }],
    ["llama.context_length", { type: "u32", value: hparams.nCtxTrain }],
    ["llama.embedding_length", { type: "u32", value: nEmbd }],
    ["llama.block_count", { type: "u32", value: hparams.nLayer }],
    ["llama.feed_forward_length", { type: "u32", value: hparams.nFf }],
    ["llama.rope.dimension_count", { type: "u32", value: hparams.ropeDim }],
    ["llama.attention.head_count", { type: "u32", value: nHead }],
    ["llama.attention.head_count_kv", { type: "u32", value: hparams.nHeadKv }],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: hparams.rmsEps }],
    ["llama.rope.freq_base", { type: "f32", value: hparams.ropeBase }],
    ["llama.vocab_size", { type: "u32", value: hparams.nVocab }],
  ];
  if (headDim * nHead !== nEmbd) {
    metadata.push(["llama.attention.key_length", { type: "u32", value: headDim }], ["llama.attention.value_length", { type: "u32", value: headDim }]);
  }
  const vocabulary = options.vocabulary ?? (options.tokenizerModel === undefined ? undefined : await readSentencePieceVocabulary(options.tokenizerModel));
  if (vocabulary !== undefined) metadata.push(...vocabularyMetadata(vocabulary, hparams.nVocab));

  // Norm vectors stay F32, as llama.cpp stores them in F16 and quantized files.
  const tensors: GgufWriteTensor[] = [];
  for (const [name, shape] of expectedPlanShapes(hparams, tiedOutput)) {
    const isNorm = shape.length === 1;
    const tensorType: TensorType = isNorm ? "f32" : type;
    const elements = shape.reduce((a, b) => a * b, 1);
    tensors.push({
      name: name + ".weight",
      type: ggmlTypeForPlanType(tensorType),
      ne: [...shape].reverse(),
      data: options.zeros ? undefined : tensorSource([{ name, elements, isNorm }], tensorType, seed, std),
    });
  }
  await writeGguf(options.out, { metadata, tensors });
  options.onProgress?.(1, 1);
  return [options.out];
}

/**
 * Write a random checkpoint with the shapes of a GEB config.json.
 *
 * Throws ModelFormatError or UnsupportedError for configs the loader would reject,
 * InvalidArgumentError for bad options, IoError when writing fails.
 */
export async function writeRandomCheckpoint(options: RandomCheckpointOptions): Promise<RandomCheckpointResult> {
  const { hparams, tiedOutput } = mapGebConfig(options.config, options.configPath ?? "config.json");
  const files = options.format === "geb" ? await writeGebDirectory(options, hparams, tiedOutput) : await writeGgufFile(options, hparams, tiedOutput);
  return { path: options.out, files, hparams };
}

/**
 * Read the pieces, scores and types of a SentencePiece model as a GGUF vocabulary. SentencePiece
 * piece types use the same numbers as GGUF token types (1 normal ... 6 byte).
 */
export async function readSentencePieceVocabulary(path: string): Promise<GgufVocabulary> {
  const model = parseSentencePieceModel(await readFile(path));
  const { unkId, bosId, eosId } = model.trainerSpec;
  return {
    tokens: model.pieces,
    scores: Array.from(model.scores),
    types: Array.from(model.types),
    unknownId: unkId,
    bosId: bosId >= 0 ? bosId : undefined,
    eosId: eosId >= 0 ? eosId : undefined,
  };
}

/**
 * Read a vocabulary list: a JSON file `{ "tokens": [...], "scores"?: [...], "types"?: [...] }`
 * or a text file with one token per line.
 */
export async function readVocabularyFile(path: string): Promise<GgufVocabulary> {
  const text = await readFile(path, "utf8");
  if (!path.endsWith(".json")) return { tokens: text.split("\n").filter((line, i, all) => i < all.length - 1 || line !== "") };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ModelFormatError(`Vocabulary file is not valid JSON: ${(error as Error).message}.`, { path, cause: error });
  }
  const tokens = (parsed as { tokens?: unknown })?.tokens;
  if (!Array.isArray(tokens) || !tokens.every((t) => typeof t === "string")) {
    throw new ModelFormatError('Vocabulary JSON must have a "tokens" array of strings.', { path });
  }
  return parsed as GgufVocabulary;
}

const USAGE = `Usage: node dist/tools/random-checkpoint.js --config FILE --out PATH --format geb|gguf [options]

Write a checkpoint of random weights with the shapes of a GEB config.json (test data only).

Options:
  --config FILE     GEB config.json giving the shapes (required)
  --out PATH        output directory (geb) or .gguf file (gguf) (required)
  --format F        geb: directory with BF16 safetensors; gguf: llama-architecture GGUF (required)
  --type T          matrix storage type: f32, f16, bf16 (geb and gguf), q8_0, q4_0 (gguf only).
                    Default bf16 for geb, f32 for gguf
  --seed N          generator seed (default 1)
  --std X           standard deviation of the weights (default 0.02)
  --zeros           write headers only; tensor data stays zeros in a sparse file
  --tokenizer FILE  SentencePiece model: copied into a GEB directory (required for geb); for gguf,
                    its pieces, scores and types become the GGUF vocabulary
  --vocab FILE      GGUF vocabulary instead of --tokenizer: JSON {"tokens", "scores", "types"}
                    or one token per line
  --name NAME       model name stored in the GGUF (default: the file name)
`;

/** Run the command line; return the exit code. */
export async function main(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: "string" },
        out: { type: "string" },
        format: { type: "string" },
        type: { type: "string" },
        seed: { type: "string" },
        std: { type: "string" },
        zeros: { type: "boolean" },
        tokenizer: { type: "string" },
        vocab: { type: "string" },
        name: { type: "string" },
        help: { type: "boolean" },
      },
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const { config, out, format } = values as Record<string, string | undefined>;
  if (config === undefined || out === undefined || (format !== "geb" && format !== "gguf")) {
    process.stderr.write(`--config, --out and --format geb|gguf are required.\n\n${USAGE}`);
    return 2;
  }
  const type = values.type as string | undefined;
  if (type !== undefined && !["f32", "f16", "bf16", "q8_0", "q4_0"].includes(type)) {
    process.stderr.write(`--type must be f32, f16, bf16, q8_0 or q4_0, not "${type}".\n`);
    return 2;
  }
  const seed = values.seed === undefined ? 1 : Number(values.seed);
  const std = values.std === undefined ? 0.02 : Number(values.std);
  if (!Number.isInteger(seed) || !(std >= 0)) {
    process.stderr.write("--seed must be an integer and --std a number >= 0.\n");
    return 2;
  }

  try {
    const configText = await readFile(config, "utf8");
    let parsedConfig: unknown;
    try {
      parsedConfig = JSON.parse(configText);
    } catch (error) {
      throw new ModelFormatError(`GEB config.json is not valid JSON: ${(error as Error).message}.`, { path: config, cause: error });
    }
    const started = performance.now();
    const result = await writeRandomCheckpoint({
      config: parsedConfig,
      configPath: config,
      out,
      format,
      type: type as TensorType | undefined,
      seed,
      std,
      zeros: values.zeros === true,
      tokenizerModel: values.tokenizer as string | undefined,
      vocabulary: values.vocab === undefined ? undefined : await readVocabularyFile(values.vocab as string),
      name: values.name as string | undefined,
    });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    process.stdout.write(`Wrote ${result.files.join(", ")} in ${seconds} s.\n`);
    return 0;
  } catch (error) {
    const code = error instanceof GebError ? ` [${error.code}]` : "";
    process.stderr.write(`random-checkpoint failed${code}: ${(error as Error).message}\n`);
    return 1;
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main(process.argv.slice(2));
}
