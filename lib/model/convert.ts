// Model conversion to one GGUF file that geb-cpu maps in place: a GEB directory becomes a `geb`
// GGUF (lib/model/geb-gguf.ts) with its tokenizer embedded, and a `llama`, `geb` or `chatglm` GGUF
// is re-typed with its metadata kept. A GEB model can also be written as llama.cpp's `chatglm`
// architecture, which differs from `geb` in its key prefix and in storing gate and up as one
// `ffn_up` tensor of 2F rows. Matrices are converted with the same chunk encoder as
// convert-at-load (lib/formats/quantize.ts), so a converted file contains exactly the bytes that
// `loadModel(source, { weightType })` would compute. Norm vectors are stored as F32.
//
// The output is written to a temporary file in the output's folder and renamed at the end, so an
// error or an abort never leaves a partial file under the output name. A killed process leaves
// its temporary file, and the next conversion to the same output removes it.

import type { Stats } from "node:fs";
import { link, lstat, open, readFile, readlink, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";

import { InvalidArgumentError, IoError } from "../errors.js";
import { writeGguf, type GgufScalarTypeName, type GgufWriteTensor, type GgufWriteValue } from "../formats/gguf-writer.js";
import { readGguf, type GgufFile, type GgufValue } from "../formats/gguf.js";
import { ggmlTypeForPlanType } from "../formats/ggml-types.js";
import { convertTensorChunks, quantizedTypeFor, tensorBytes, WEIGHT_TYPES, type WeightConversion, type WeightType } from "../formats/quantize.js";
import { removeStaleTemporaryFiles, temporaryFileName } from "../formats/temporary-files.js";
import { loadTokenizer } from "../tokenizer/load.js";
import { parseSentencePieceModel } from "../tokenizer/sentencepiece-model.js";
import { GEB_GGUF_ARCHITECTURE, gebHparamsMetadata, gebTokenizerMetadata } from "./geb-gguf.js";
import { GEB_FILES } from "./geb-conventions.js";
import { openModelFiles, type TokenizerSource } from "./load-plan.js";
import type { TensorRef, TensorType } from "./plan.js";

/** llama.cpp's `general.file_type` value for a file whose matrices are mostly of each type. */
export const GGUF_FILE_TYPES: Readonly<Record<WeightType, number>> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, bf16: 32 };

/** Output architectures of a GEB model. */
export type GebOutputArchitecture = "geb" | "chatglm";

const OUTPUT_ARCHITECTURES: readonly GebOutputArchitecture[] = ["geb", "chatglm"];

/** Options of `convertModel`. */
export interface ConvertOptions {
  /** Storage type of the weight matrices. */
  type: WeightType;
  /**
   * Architecture of the output for a GEB model: "geb" (default for a directory) or "chatglm"
   * (llama.cpp's layout, which geb-cpu also runs). Default for a GGUF input: its own. A llama
   * input rejects this option.
   */
  architecture?: GebOutputArchitecture;
  /**
   * Replace an existing output file. Default false. A symbolic link at the output path, even one
   * to a missing file or to a directory, counts as an existing output. `force` replaces the link
   * itself with the converted file and never writes the link's target. Never replaced, even with
   * `force`: the input and every file read for it, a directory, a device, a FIFO or a socket.
   * These checks run before the conversion and again right before the output is moved into place.
   */
  force?: boolean;
  /** `general.name` of a GGUF written from a GEB directory. Default: the directory name. */
  name?: string;
  /** Called after each chunk with the tensor bytes written so far. */
  onProgress?: (writtenBytes: number, totalBytes: number) => void;
  /** Stops the conversion between chunks with AbortError; the temporary file is removed. */
  signal?: AbortSignal;
}

/** Result of `convertModel`. */
export interface ConvertResult {
  /** Absolute path of the written GGUF file. */
  output: string;
  /** `general.architecture` of the output. */
  architecture: string;
  /** Matrices whose stored type changed. */
  converted: WeightConversion[];
  /** Matrices that kept a type other than the requested one, with the reason. */
  kept: (WeightConversion & { reason: string })[];
  /** Vectors (norm weights) converted to F32. */
  vectorsToF32: number;
  fileSize: number;
  /**
   * Temporary files of earlier conversions to the same output whose process no longer runs
   * (killed, or the machine lost power), removed before writing. Usually empty.
   */
  removedTemporaryFiles: string[];
}

/** Explain why a matrix keeps its type instead of `requested`. */
function keptReason(tensor: TensorRef, requested: WeightType): string {
  if (tensor.type === "q8_0" || tensor.type === "q4_0") return `already quantized as ${tensor.type}; geb-cpu never re-quantizes`;
  return `rows of ${tensor.shape[1]} weights are not whole 32-weight blocks, so ${requested} cannot store them`;
}

/** Turn a value read from a GGUF header back into a value the writer accepts. */
function writableValue(value: GgufValue, storedType: string): GgufWriteValue {
  if (storedType.startsWith("array<array")) {
    const inner = storedType.slice("array<".length, -1);
    return { type: "array", elementType: "array", value: (value as GgufValue[]).map((element) => writableValue(element, inner)) };
  }
  if (storedType.startsWith("array<")) {
    const elementType = storedType.slice("array<".length, -1) as GgufScalarTypeName;
    return { type: "array", elementType, value: value as never };
  }
  return { type: storedType as GgufScalarTypeName, value: value as never } as GgufWriteValue;
}

/**
 * Copy the metadata of a GGUF file with `general.file_type` set to the new type. With `rename`,
 * the source architecture's hyperparameter keys are replaced by `rename.hparams`, written under
 * the new `general.architecture`. Keys under `<source>.tokenizer.` are kept either way.
 */
function retypedMetadata(gguf: GgufFile, type: WeightType, rename?: { from: string; to: string; hparams: [string, GgufWriteValue][] }): [string, GgufWriteValue][] {
  const metadata: [string, GgufWriteValue][] = [];
  let hasFileType = false;
  for (const [key, value] of gguf.metadata) {
    if (rename !== undefined) {
      if (key === "general.architecture") {
        metadata.push([key, { type: "string", value: rename.to }], ...rename.hparams);
        continue;
      }
      if (key.startsWith(`${rename.from}.`) && !key.startsWith(`${rename.from}.tokenizer.`)) continue;
    }
    if (key === "general.file_type") {
      metadata.push([key, { type: "u32", value: GGUF_FILE_TYPES[type] }]);
      hasFileType = true;
      continue;
    }
    metadata.push([key, writableValue(value, gguf.metadataTypes.get(key) ?? "")]);
  }
  if (!hasFileType) metadata.push(["general.file_type", { type: "u32", value: GGUF_FILE_TYPES[type] }]);
  return metadata;
}

/**
 * Lists every path the loader reads for the input: the input itself, the files of the tensors
 * and, for a GEB directory, its config, shard index and tokenizer files (existing or not).
 */
function inputFiles(source: string, tokenizer: TokenizerSource, tensorFiles: readonly string[]): string[] {
  const files = [source, ...tensorFiles];
  if (tokenizer.kind === "geb-dir") {
    files.push(tokenizer.modelFile, ...Object.values(GEB_FILES).map((name) => join(tokenizer.dir, name)));
  }
  return files;
}

/** Device and inode of `path` after following links, or undefined when it does not exist. */
async function fileIdentity(path: string): Promise<string | undefined> {
  const info = await stat(path).catch(() => undefined);
  return info === undefined ? undefined : `${info.dev}:${info.ino}`;
}

/** Words for an existing output that is not a regular file, or undefined for a regular file. */
function specialFileKind(entry: Stats): string | undefined {
  if (entry.isCharacterDevice()) return "a character device";
  if (entry.isBlockDevice()) return "a block device";
  if (entry.isFIFO()) return "a named pipe (FIFO)";
  if (entry.isSocket()) return "a socket";
  return undefined;
}

/**
 * Reject an output that is the input or one of the files the loader reads for it, that is not a
 * regular file, or that exists (as a file or a symbolic link) without `force`. Files are compared
 * by device and inode, so a hard link or a symbolic link to an input file counts as the input.
 */
async function checkOutput(output: string, inputPaths: string[], force: boolean): Promise<void> {
  const folder = dirname(output);
  const folderInfo = await stat(folder).catch(() => undefined);
  if (folderInfo === undefined || !folderInfo.isDirectory()) {
    throw new IoError(`Cannot write ${output}: the folder ${folder} does not exist. Create it first.`, { path: folder });
  }
  const entry = await lstat(output).catch(() => undefined);
  if (entry === undefined) return;
  // Checked before anything that suggests --force, since --force does not lift it.
  const identity = await fileIdentity(output);
  if (identity !== undefined) {
    for (const input of inputPaths) {
      if (identity === (await fileIdentity(input))) {
        const sameAs = input === output ? "" : ` (the same file as ${input})`;
        throw new InvalidArgumentError(
          `The output ${output} is the input model or one of its files${sameAs}; choose another output path (convert never overwrites its input).`,
          { path: output, received: input },
        );
      }
    }
  }
  // The output is renamed into place, which replaces a link instead of writing through it. Users
  // who named a link may expect its target to be written, so a link needs --force, whether its
  // target exists or not, and whatever it points to.
  if (entry.isSymbolicLink()) {
    if (force) return;
    const target = await readlink(output).catch(() => "an unreadable target");
    const dangling = identity === undefined ? ", which does not exist" : "";
    throw new InvalidArgumentError(
      `The output ${output} is a symbolic link to ${target}${dangling}; pass --force (force: true) to replace the link itself with the converted file, or name the target as the output.`,
      { path: output, received: target },
    );
  }
  if (entry.isDirectory()) {
    throw new InvalidArgumentError(`The output ${output} is a directory; pass a file path ending in .gguf.`, { path: output });
  }
  const kind = specialFileKind(entry);
  if (kind !== undefined) {
    throw new InvalidArgumentError(`The output ${output} is ${kind}, not a regular file, and convert never replaces one; pass the path of a new or existing .gguf file.`, {
      path: output,
      received: kind,
    });
  }
  if (!force) {
    throw new InvalidArgumentError(`The output ${output} already exists; pass --force (force: true) to replace it.`, { path: output });
  }
}

/**
 * Convert a GEB directory or a llama, geb or chatglm GGUF file to a GGUF file whose weight matrices are
 * stored as `options.type` (as `quantizedTypeFor` decides per matrix), ready for geb-cpu to map
 * without conversion at load.
 *
 * Throws InvalidArgumentError for an unknown type, an output that is the input or that exists
 * (as a file or as a symbolic link) without `force`; ModelFormatError, UnsupportedError or IoError for an input geb-cpu cannot load
 * or read; IoError when the output cannot be written; AbortError when `options.signal` fires.
 *
 * @example
 * await convertModel("models/geb-tiny", "/tmp/geb-tiny-q8_0.gguf", { type: "q8_0" });
 */
export async function convertModel(input: string, output: string, options: ConvertOptions): Promise<ConvertResult> {
  if (typeof input !== "string" || input === "") throw new InvalidArgumentError("The input must be a path: a GEB directory or a GGUF file.", { received: input });
  if (typeof output !== "string" || output === "") throw new InvalidArgumentError("The output must be the path of the GGUF file to write.", { received: output });
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError("The options must be an object with at least `type`, such as { type: \"q8_0\" }.", { received: options });
  }
  if (options.architecture !== undefined && !OUTPUT_ARCHITECTURES.includes(options.architecture)) {
    throw new InvalidArgumentError(`The architecture must be one of ${OUTPUT_ARCHITECTURES.join(", ")}, received ${JSON.stringify(options.architecture)}.`, {
      expected: OUTPUT_ARCHITECTURES.join(" | "),
      received: options.architecture,
    });
  }
  const type = options.type;
  if (!WEIGHT_TYPES.includes(type)) {
    throw new InvalidArgumentError(`The weight type must be one of ${WEIGHT_TYPES.join(", ")}, received ${JSON.stringify(type)}.`, {
      expected: WEIGHT_TYPES.join(" | "),
      received: type,
    });
  }
  const source = resolve(input);
  const target = resolve(output);

  // read the source headers and pick each tensor's output type
  const opened = await openModelFiles(source);
  const plan = opened.plan;
  const inputPaths = inputFiles(source, opened.tokenizerSource, plan.files);
  await checkOutput(target, inputPaths, options.force === true);
  const converted: WeightConversion[] = [];
  const kept: ConvertResult["kept"] = [];
  let vectorsToF32 = 0;
  const outputTypes = plan.tensors.map((tensor): TensorType => {
    if (tensor.shape.length === 1) {
      if (tensor.type !== "f32") vectorsToF32++;
      return "f32";
    }
    const to = quantizedTypeFor(tensor, type);
    if (to !== tensor.type) converted.push({ name: tensor.name, from: tensor.type, to });
    if (to !== type) kept.push({ name: tensor.name, from: tensor.type, to, reason: keptReason(tensor, type) });
    return to;
  });

  // metadata: GEB directories get the geb (or chatglm) architecture and the embedded tokenizer
  let metadata: [string, GgufWriteValue][];
  let alignment: number | undefined;
  let outputArchitecture: string;
  if (opened.tokenizerSource.kind === "geb-dir") {
    outputArchitecture = options.architecture ?? GEB_GGUF_ARCHITECTURE;
    const spModel = parseSentencePieceModel(await readFileOrThrow(opened.tokenizerSource.modelFile));
    const tokenizer = await loadTokenizer(opened.tokenizerSource.dir);
    metadata = [
      ["general.architecture", { type: "string", value: outputArchitecture }],
      ["general.name", { type: "string", value: options.name ?? opened.info.name ?? basename(source) }],
      ["general.file_type", { type: "u32", value: GGUF_FILE_TYPES[type] }],
      ...gebHparamsMetadata(plan.hparams, options.architecture ?? GEB_GGUF_ARCHITECTURE),
      ...gebTokenizerMetadata(spModel, tokenizer.specialTokens, plan.hparams.nVocab),
    ];
  } else {
    const gguf = await readGguf(source);
    const sourceArchitecture = String(gguf.metadata.get("general.architecture"));
    outputArchitecture = options.architecture ?? sourceArchitecture;
    if (options.architecture !== undefined && plan.hparams.arch !== "geb") {
      throw new InvalidArgumentError(`Only GEB models can be written as "${options.architecture}"; ${source} is a ${sourceArchitecture} model.`, {
        path: source,
        received: options.architecture,
      });
    }
    const rename =
      outputArchitecture === sourceArchitecture
        ? undefined
        : { from: sourceArchitecture, to: outputArchitecture, hparams: gebHparamsMetadata(plan.hparams, outputArchitecture as GebOutputArchitecture) };
    metadata = retypedMetadata(gguf, type, rename);
    alignment = gguf.alignment;
    if (options.name !== undefined) {
      const index = metadata.findIndex(([key]) => key === "general.name");
      const entry: [string, GgufWriteValue] = ["general.name", { type: "string", value: options.name }];
      if (index >= 0) metadata[index] = entry;
      else metadata.unshift(entry);
    }
  }

  // stream every tensor through the converter into a temporary file, then rename it
  const temporaryPrefix = `.${basename(target)}`;
  const removedTemporaryFiles = await removeStaleTemporaryFiles(dirname(target), temporaryPrefix);
  const temporary = join(dirname(target), temporaryFileName(temporaryPrefix));
  const totalBytes = plan.tensors.reduce((sum, tensor, i) => sum + tensorBytes(outputTypes[i], tensor.shape.reduce((a, b) => a * b, 1)), 0);
  let writtenBytes = 0;
  const handles: FileHandle[] = [];
  try {
    for (const file of plan.files) handles.push(await openForReading(file));
    const partsData = (parts: number[]) =>
      async function* (): AsyncGenerator<Uint8Array> {
        for (const i of parts) {
          const tensor = plan.tensors[i];
          for await (const chunk of convertTensorChunks(handles[tensor.file], plan.files[tensor.file], tensor, outputTypes[i], options.signal)) {
            writtenBytes += chunk.byteLength;
            options.onProgress?.(writtenBytes, totalBytes);
            yield chunk;
          }
        }
      };
    const tensors: GgufWriteTensor[] = outputTensorGroups(plan.tensors, outputArchitecture === "chatglm").map((group) => {
      const first = plan.tensors[group.parts[0]];
      const rows = group.parts.reduce((sum, i) => sum + (plan.tensors[i].shape.length === 2 ? plan.tensors[i].shape[0] : 1), 0);
      return {
        name: `${group.name}.weight`,
        type: ggmlTypeForPlanType(outputTypes[group.parts[0]]),
        ne: first.shape.length === 2 ? [first.shape[1], rows] : [first.shape[0]],
        data: partsData(group.parts),
      };
    });
    const written = await writeGguf(temporary, { metadata, tensors, ...(alignment === undefined ? {} : { alignment }) });
    // The output path may have changed during the conversion (a file, link, FIFO or device put
    // there), so it passes the same checks again before it is replaced.
    // NOTE: a change between this check and the rename below still goes unnoticed.
    await checkOutput(target, inputPaths, options.force === true);
    await moveIntoPlace(temporary, target, options.force === true);
    return { output: target, architecture: outputArchitecture, converted, kept, vectorsToF32, fileSize: written.fileSize, removedTemporaryFiles };
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  } finally {
    await Promise.all(handles.map((handle) => handle.close()));
  }
}

/**
 * Move the finished temporary file to `target`. Without `force` a hard link creates the target
 * only if it does not exist yet, so of two conversions to the same new path the second one fails
 * instead of replacing the first one's file. File systems without hard links fall back to rename.
 */
async function moveIntoPlace(temporary: string, target: string, force: boolean): Promise<void> {
  const failed = (cause: unknown): never => {
    throw new IoError(`Cannot move the converted file into place at ${target}: ${String(cause)}. Check the folder's permissions and free space.`, {
      path: target,
      cause,
    });
  };
  if (!force) {
    try {
      await link(temporary, target);
      await rm(temporary, { force: true });
      return;
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      if (code === "EEXIST") {
        throw new InvalidArgumentError(`The output ${target} already exists; pass --force (force: true) to replace it.`, { path: target });
      }
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") failed(cause);
    }
  }
  await rename(temporary, target).catch(failed);
}

/**
 * Group plan tensors into output tensors, in plan order. Each group is one GGUF tensor made of the
 * rows of its parts (indexes into `tensors`). For chatglm, `blk.N.ffn_gate` and `blk.N.ffn_up`
 * become one `blk.N.ffn_up` of 2F rows, gate first, which is the order llama.cpp's SwiGLU
 * splits it in (silu of the first half times the second half).
 */
function outputTensorGroups(tensors: readonly TensorRef[], fuseGateUp: boolean): { name: string; parts: number[] }[] {
  const index = new Map(tensors.map((tensor, i) => [tensor.name, i]));
  const groups: { name: string; parts: number[] }[] = [];
  for (const [i, tensor] of tensors.entries()) {
    if (!fuseGateUp) {
      groups.push({ name: tensor.name, parts: [i] });
      continue;
    }
    if (tensor.name.endsWith(".ffn_up")) continue;
    if (tensor.name.endsWith(".ffn_gate")) {
      const block = tensor.name.slice(0, -".ffn_gate".length);
      groups.push({ name: `${block}.ffn_up`, parts: [i, index.get(`${block}.ffn_up`)!] });
      continue;
    }
    groups.push({ name: tensor.name, parts: [i] });
  }
  return groups;
}

async function openForReading(path: string): Promise<FileHandle> {
  try {
    return await open(path, "r");
  } catch (cause) {
    throw new IoError(`Cannot read ${path}: ${String(cause)}.`, { path, cause });
  }
}

async function readFileOrThrow(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (cause) {
    throw new IoError(`Cannot read ${path}: ${String(cause)}.`, { path, cause });
  }
}
