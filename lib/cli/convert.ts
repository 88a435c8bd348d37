// `geb-cpu convert <hf-dir|file.gguf> <out.gguf> --type T`: write a GGUF file that geb-cpu maps
// without conversion at load (lib/model/convert.ts does the work). Prints a summary on stdout,
// and progress on stderr only when stderr is a terminal. Ctrl-C removes the partial file.

import { parseArgs } from "node:util";

import { AbortError, InvalidArgumentError } from "../errors.js";
import { WEIGHT_TYPES, type WeightType } from "../formats/quantize.js";
import { convertModel, type ConvertResult, type GebOutputArchitecture } from "../model/convert.js";
import { printError, printRemovedTemporaryFiles, type CliCommand } from "./base.js";

const ARCHITECTURES: readonly GebOutputArchitecture[] = ["geb", "chatglm"];

const usage = `Usage: geb-cpu convert <input> <output.gguf> --type TYPE [--arch ARCH] [--force] [--name NAME]

Write a GGUF file that geb-cpu loads without converting anything. The input is a GEB model
directory (config.json, model.safetensors, GEBtokenizer.model), which becomes a "geb" GGUF with
the tokenizer embedded, or a "llama", "geb" or "chatglm" GGUF file, which keeps its metadata.
The file is written under a temporary name and renamed when complete. Temporary files that a
killed conversion to the same output left are removed first, and one line on stderr names them.

Options:
  -t, --type TYPE   storage type of the weight matrices: ${WEIGHT_TYPES.join(", ")} (required).
                    Norm vectors are stored as f32. For q4_0 and q8_0, matrices whose rows are
                    not whole 32-weight blocks keep their stored type, and so do matrices that
                    are already quantized; the summary lists them.
      --arch ARCH   architecture of a GEB model's output: geb (geb-cpu's layout, the default for a
                    directory) or chatglm (llama.cpp's layout, which geb-cpu also runs)
  -f, --force       replace the output file when it exists. An output that is a symbolic link
                    needs --force too, which replaces the link itself with the new file and
                    leaves the link's target untouched, even when the target is a directory.
                    Never replaced, even with --force: the input and every file of it
                    (also through a hard or symbolic link), a directory, a device, a FIFO.
                    The output is checked before converting and again before the rename.
      --name NAME   general.name of a GGUF written from a GEB directory (default: the folder name)
  -h, --help        show this help`;

function formatBytes(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(2)} MiB`;
}

function formatSummary(input: string, type: WeightType, result: ConvertResult, seconds: number): string {
  const lines = [
    `converted ${input} to ${result.output}`,
    `architecture ${result.architecture}, ${result.converted.length} matrices converted to ${type}, ${result.vectorsToF32} norm vectors converted to f32`,
  ];
  for (const entry of result.kept) lines.push(`kept ${entry.name} as ${entry.to}: ${entry.reason}`);
  lines.push(`wrote ${formatBytes(result.fileSize)} in ${seconds.toFixed(1)} s`);
  return lines.join("\n") + "\n";
}

async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        type: { type: "string", short: "t" },
        arch: { type: "string" },
        force: { type: "boolean", short: "f" },
        name: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    return printError(new InvalidArgumentError(`${(error as Error).message}\n${usage}`), true);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  if (positionals.length !== 2) {
    return printError(new InvalidArgumentError(`convert needs an input and an output path, received ${positionals.length} path(s).\n${usage}`), true);
  }
  if (values.type === undefined) {
    return printError(new InvalidArgumentError(`convert needs --type, one of ${WEIGHT_TYPES.join(", ")}.`), true);
  }
  const type = values.type as WeightType;
  if (!WEIGHT_TYPES.includes(type)) {
    return printError(
      new InvalidArgumentError(`--type must be one of ${WEIGHT_TYPES.join(", ")}, received ${JSON.stringify(values.type)}.`, {
        expected: WEIGHT_TYPES.join(" | "),
        received: values.type,
      }),
      true,
    );
  }
  const architecture = values.arch as GebOutputArchitecture | undefined;
  if (architecture !== undefined && !ARCHITECTURES.includes(architecture)) {
    return printError(
      new InvalidArgumentError(`--arch must be geb or chatglm, received ${JSON.stringify(values.arch)}.`, { expected: "geb | chatglm", received: values.arch }),
      true,
    );
  }
  const [input, output] = positionals as [string, string];

  // Ctrl-C or SIGTERM aborts between chunks; convertModel then removes its temporary file.
  const controller = new AbortController();
  let stoppedBy: "SIGINT" | "SIGTERM" | undefined;
  const onSigint = (): void => {
    stoppedBy = "SIGINT";
    controller.abort();
  };
  const onSigterm = (): void => {
    stoppedBy = "SIGTERM";
    controller.abort();
  };
  process.once("SIGINT", onSigint);
  process.once("SIGTERM", onSigterm);
  const showProgress = process.stderr.isTTY === true;
  let lastPercent = -1;
  const started = performance.now();
  try {
    const result = await convertModel(input, output, {
      type,
      force: values.force === true,
      ...(architecture === undefined ? {} : { architecture }),
      ...(values.name === undefined ? {} : { name: values.name }),
      signal: controller.signal,
      onProgress: (written, total) => {
        if (!showProgress) return;
        const percent = total === 0 ? 100 : Math.floor((written / total) * 100);
        if (percent === lastPercent) return;
        lastPercent = percent;
        process.stderr.write(`\rconverting: ${percent}%`);
      },
    });
    if (showProgress) process.stderr.write("\n");
    printRemovedTemporaryFiles(result.removedTemporaryFiles);
    process.stdout.write(formatSummary(input, type, result, (performance.now() - started) / 1000));
    return 0;
  } catch (error) {
    if (showProgress && lastPercent >= 0) process.stderr.write("\n");
    const code = printError(error);
    // 130 and 143 are the shell's exit statuses for a command stopped by SIGINT and SIGTERM.
    if (error instanceof AbortError) return stoppedBy === "SIGTERM" ? 143 : 130;
    return code;
  } finally {
    process.removeListener("SIGINT", onSigint);
    process.removeListener("SIGTERM", onSigterm);
  }
}

/** The `convert` subcommand. */
export const command: CliCommand = { name: "convert", summary: "write a GGUF file in another weight type", usage, run };

export default command;
