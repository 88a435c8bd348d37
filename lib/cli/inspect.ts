// `geb-cpu inspect <path> [--json]`: print what a GGUF file or GEB directory contains: the model
// summary when geb-cpu can load it (or why not), the metadata or config, and the tensor table.
// Works without the native addon and on files the engine cannot run, such as vocabulary-only
// GGUFs or K-quant models, because it reads headers only.

import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

import { GebError, InternalError, InvalidArgumentError } from "../errors.js";
import { printError, type CliCommand } from "./base.js";
import { readGguf, type GgufFile, type GgufValue } from "../formats/gguf.js";
import { readSafetensorsModel } from "../formats/safetensors.js";
import { GEB_FILES } from "../model/geb-conventions.js";
import { readGebConfig } from "../model/geb-plan.js";
import type { ModelFileInfo } from "../model/info.js";
import { openModelFiles, rejectCheckpointFile } from "../model/load-plan.js";
import { loadTokenizer } from "../tokenizer/index.js";

/** One row of the tensor table. */
export interface InspectTensor {
  name: string;
  /** ggml type name (GGUF) or dtype (safetensors). */
  type: string;
  /** GGUF: `ne` in GGUF order (row length first). safetensors: shape in PyTorch order. */
  dims: number[];
  /** Absolute byte offset in its file. */
  offset: number;
  nbytes: number;
  /** File holding the tensor (sharded checkpoints have several). */
  file: string;
}

/** One metadata entry, with long arrays shortened. */
export interface InspectMetadataEntry {
  key: string;
  /** Stored type (`"u32"`, `"array<string>"`...). */
  type: string;
  /** The value; arrays longer than 8 elements keep their first 8 elements. */
  value: unknown;
  /** Element count of an array value. */
  length?: number;
}

/** Everything `inspect` prints. */
export interface InspectReport {
  path: string;
  format: "gguf" | "geb";
  /** GGUF version, alignment and data offset; for GEB, the weight files. */
  container: Record<string, unknown>;
  metadata: InspectMetadataEntry[];
  tensors: InspectTensor[];
  /** Present when geb-cpu can load the model. */
  info?: ModelFileInfo;
  /** The typed error that prevents loading, when geb-cpu cannot load the model. */
  loadError?: { code: string; message: string };
}

const PREVIEW_ELEMENTS = 8;

/** Make a metadata value printable and JSON-safe: bigints become strings, long arrays are cut. */
function previewValue(value: GgufValue | unknown): { value: unknown; length?: number } {
  if (typeof value === "bigint") return { value: value.toString() };
  if (Array.isArray(value) || ArrayBuffer.isView(value)) {
    const items = Array.from(value as ArrayLike<unknown>);
    const shown = items.slice(0, PREVIEW_ELEMENTS).map((item) => previewValue(item).value);
    return { value: shown, length: items.length };
  }
  return { value };
}

function ggufMetadata(gguf: GgufFile): InspectMetadataEntry[] {
  return [...gguf.metadata].map(([key, value]) => ({ key, type: gguf.metadataTypes.get(key) ?? "?", ...previewValue(value) }));
}

/** Try to open the model fully; return its info or the typed reason it cannot be loaded. */
async function tryOpen(path: string): Promise<Pick<InspectReport, "info" | "loadError">> {
  try {
    const opened = await openModelFiles(path);
    // loadModel also needs a tokenizer it can run, so an unsupported vocabulary makes the model
    // unloadable even when every tensor is fine.
    const source = opened.tokenizerSource;
    await loadTokenizer(source.kind === "gguf" ? source.path : source.dir);
    return { info: opened.info };
  } catch (error) {
    if (error instanceof GebError) return { loadError: { code: error.code, message: error.message } };
    throw error;
  }
}

/** Find the weights file or index of a GEB directory for the tensor table. */
async function gebWeightsPath(dir: string): Promise<string | undefined> {
  for (const name of [GEB_FILES.weights, GEB_FILES.weightsIndex]) {
    try {
      await stat(join(dir, name));
      return join(dir, name);
    } catch {
      // Try the next name.
    }
  }
  return undefined;
}

/**
 * Read config.json of a GEB directory as a JSON object. A config that is missing or is not a
 * JSON object throws readGebConfig's typed error. One whose values are invalid is returned, so
 * inspect still lists it and reports the reason in `loadError`.
 */
async function readConfigObject(dir: string): Promise<Record<string, unknown>> {
  try {
    const parsed = JSON.parse(await readFile(join(dir, GEB_FILES.config), "utf8")) as unknown;
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // readGebConfig below explains what is wrong.
  }
  await readGebConfig(dir);
  throw new InternalError(`readGebConfig accepted ${join(dir, GEB_FILES.config)}, which is not a JSON object.`, { path: dir });
}

/**
 * Inspect a GGUF file or GEB directory. Throws the reader's typed error when the headers
 * themselves cannot be parsed, and ModelFormatError asking for the folder when `path` is a
 * `.safetensors` or `.json` file of a GEB checkpoint. A model that parses but cannot be loaded,
 * including a GEB config.json with invalid values, gets `loadError`.
 */
export async function inspectModel(path: string): Promise<InspectReport> {
  const absolute = resolve(path);
  const entry = await stat(absolute).catch(() => undefined);
  const isDirectory = entry?.isDirectory() ?? false;

  if (!isDirectory) {
    // A missing path gets the reader's "does not exist" error instead.
    if (entry !== undefined) rejectCheckpointFile(absolute);
    const gguf = await readGguf(absolute);
    const tensors = gguf.tensors.map((t) => ({ name: t.name, type: t.type.name, dims: t.ne, offset: t.offset, nbytes: t.nbytes, file: absolute }));
    return {
      path: absolute,
      format: "gguf",
      container: { version: gguf.version, alignment: gguf.alignment, dataOffset: gguf.dataOffset, fileSize: gguf.fileSize },
      metadata: ggufMetadata(gguf),
      tensors,
      ...(await tryOpen(absolute)),
    };
  }

  // GEB directory: config keys as metadata, safetensors headers as the tensor table.
  const rawConfig = await readConfigObject(absolute);
  const metadata = Object.entries(rawConfig).map(([key, value]) => ({ key, type: value === null ? "null" : typeof value, ...previewValue(value) }));
  const weightsPath = await gebWeightsPath(absolute);
  const weights = weightsPath === undefined ? undefined : await readSafetensorsModel(weightsPath);
  const tensors: InspectTensor[] = [];
  for (const t of weights?.tensors.values() ?? []) {
    tensors.push({ name: t.name, type: t.dtype, dims: t.shape, offset: t.offset, nbytes: t.nbytes, file: weights!.files[t.fileIndex].path });
  }
  return {
    path: absolute,
    format: "geb",
    container: { weights: weights?.files.map((f) => ({ path: f.path, headerLength: f.headerLength, fileSize: f.fileSize })) ?? [] },
    metadata,
    tensors,
    ...(await tryOpen(absolute)),
  };
}

function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(2)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

function formatValue(entry: InspectMetadataEntry): string {
  const text = JSON.stringify(entry.value);
  const shown = text.length > 100 ? text.slice(0, 97) + "..." : text;
  return entry.length !== undefined && entry.length > PREVIEW_ELEMENTS ? `${shown.replace(/\]$/, "")}, ...] (${entry.length} elements)` : shown;
}

/** Render a report as the text `inspect` prints. */
export function formatInspectReport(report: InspectReport): string {
  const lines: string[] = [];
  lines.push(`path: ${report.path}`);
  if (report.format === "gguf") {
    const c = report.container;
    lines.push(`format: GGUF v${c.version}, alignment ${c.alignment}, data at offset ${c.dataOffset}, ${formatBytes(c.fileSize as number)}`);
  } else {
    const files = report.container.weights as { path: string; fileSize: number }[];
    lines.push(`format: GEB directory, ${files.length} safetensors file(s), ${formatBytes(files.reduce((a, f) => a + f.fileSize, 0))}`);
  }

  if (report.info !== undefined) {
    const i = report.info;
    const types = Object.entries(i.tensorTypes).map(([type, count]) => `${type} x${count}`).join(", ");
    lines.push(
      `loadable: yes`,
      `model: ${i.name ?? "(unnamed)"}, architecture ${i.architecture}, ${i.parameterCount.toLocaleString("en-US")} parameters`,
      `layers ${i.layers}, embedding ${i.embeddingSize}, heads ${i.heads}, kv heads ${i.kvHeads}, head dim ${i.headDim}, ffn ${i.ffnSize}`,
      `vocabulary rows ${i.vocabSize}, context ${i.contextLength}, rope dims ${i.ropeDim} base ${i.ropeBase}, rms eps ${i.rmsEps}, tied output ${i.tiedOutput}`,
      `tensor types: ${types}; header parse ${i.loadTimeMs.toFixed(1)} ms`,
    );
  } else if (report.loadError !== undefined) {
    lines.push(`loadable: no (${report.loadError.code}): ${report.loadError.message}`);
  }

  lines.push("", `${report.format === "gguf" ? "metadata" : "config.json"} (${report.metadata.length} entries):`);
  for (const entry of report.metadata) lines.push(`  ${entry.key} [${entry.type}] = ${formatValue(entry)}`);

  lines.push("", `tensors (${report.tensors.length}):`);
  if (report.tensors.length > 0) {
    const dimsLabel = report.format === "gguf" ? "ne (GGUF order)" : "shape";
    const rows = report.tensors.map((t) => [t.name, t.type, `[${t.dims.join(", ")}]`, String(t.offset), String(t.nbytes)]);
    const header = ["name", "type", dimsLabel, "offset", "bytes"];
    const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
    const render = (r: string[]): string => "  " + r.map((cell, c) => (c >= 3 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join("  ");
    lines.push(render(header));
    for (const r of rows) lines.push(render(r));
  }
  return lines.join("\n") + "\n";
}

/** JSON replacer: bigints as strings. */
function jsonSafe(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

const usage = `Usage: geb-cpu inspect <path> [--json]

Print what a GGUF file or GEB model directory contains: the model summary (or why geb-cpu
cannot load it), the metadata or config.json, and the tensor table. Reads headers only.

Options:
      --json    print one JSON object instead of text
  -h, --help    show this help`;

async function run(argv: string[]): Promise<number> {
  try {
    let parsed;
    try {
      parsed = parseArgs({ args: argv, options: { json: { type: "boolean" }, help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: true });
    } catch (error) {
      throw new InvalidArgumentError(`${(error as Error).message}\n${usage}`);
    }
    if (parsed.values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    if (parsed.positionals.length !== 1) throw new InvalidArgumentError(`inspect needs exactly one path.\n${usage}`);
    const report = await inspectModel(parsed.positionals[0]);
    process.stdout.write(parsed.values.json ? `${JSON.stringify(report, jsonSafe, 2)}\n` : formatInspectReport(report));
    return 0;
  } catch (error) {
    if (error instanceof InvalidArgumentError) return printError(error, true);
    if (error instanceof GebError) return printError(error);
    throw error;
  }
}

/** The `inspect` subcommand. */
export const command: CliCommand = { name: "inspect", summary: "show a model file's metadata and tensors", usage, run };

export const { name, summary } = command;
export { usage, run };
export default command;
