// `geb-cpu generate`: stream a continuation of one prompt to stdout. Also contains the option
// parsing, model loading with progress, and error printing that `geb-cpu chat` shares.

import { existsSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { demoModelPath } from "../demo-model.js";
import { AbortError, ContextOverflowError, InvalidArgumentError } from "../errors.js";
import { loadModel, type GenerateOptions, type GenerateResult, type LoadProgress, type Model } from "../model.js";
import { printError, printRemovedTemporaryFiles, type CliCommand } from "./base.js";

/** Demo model shipped in the package, used when no --model is given. */
export const DEMO_MODEL_PATH = demoModelPath;

/** Options shared by `generate` and `chat`, in node:util parseArgs form. */
export const MODEL_AND_SAMPLING_OPTIONS = {
  model: { type: "string", short: "m" },
  threads: { type: "string", short: "t" },
  tier: { type: "string" },
  "context-size": { type: "string" },
  "weight-type": { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  "min-p": { type: "string" },
  "repeat-penalty": { type: "string" },
  "repeat-last-n": { type: "string" },
  seed: { type: "string" },
  "max-tokens": { type: "string", short: "n" },
  stop: { type: "string", multiple: true },
  "ignore-eos": { type: "boolean" },
  verbose: { type: "boolean", short: "v" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

/** Help lines for the shared options. */
export const SHARED_OPTIONS_HELP = `  -m, --model PATH        GEB directory or GGUF file (default: the bundled demo model models/geb-tiny)
  -t, --threads N         worker threads (default: physical cores)
      --tier NAME         kernel tier: scalar, avx2, avx512, avx512vnni (default: GEB_CPU_ISA, else best)
      --context-size N    context length in tokens (default: the model's)
      --weight-type TYPE  convert weights at load: q4_0, q8_0, bf16, f16 or f32 (cached for later runs)
      --temperature T     sampling temperature, 0 = greedy (default: GEB 0.3, llama 0.8)
      --top-k K           keep the K most likely tokens, 0 = off (default: GEB 5, llama 40)
      --top-p P           nucleus sampling mass in (0, 1] (default: GEB 0.5, llama 0.95)
      --min-p P           drop tokens below P x the top probability (default: GEB 0, llama 0.05)
      --repeat-penalty R  repetition penalty, 1 = off (default: GEB 1.15, llama 1)
      --repeat-last-n N   penalty window in tokens (default: the whole context)
      --seed N            random seed for reproducible sampling
  -n, --max-tokens N      maximum tokens to generate (default 256)
      --stop TEXT         stop when TEXT appears; repeat for several
      --ignore-eos        keep generating past end-of-text tokens
  -v, --verbose           print load and speed statistics on stderr
  -h, --help              show this help`;

type SharedValues = { [K in keyof typeof MODEL_AND_SAMPLING_OPTIONS]?: (typeof MODEL_AND_SAMPLING_OPTIONS)[K] extends { multiple: true } ? string[] : (typeof MODEL_AND_SAMPLING_OPTIONS)[K] extends { type: "boolean" } ? boolean : string };

/** A command-line usage error: the command prints it and exits with code 2. */
export class UsageError extends InvalidArgumentError {}

function parseNumberFlag(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value)) {
    throw new UsageError(`--${flag} expects a number, received ${JSON.stringify(text)}.`, { received: text });
  }
  return value;
}

/** Turn the shared flags into generation options (validated later by the Model API). */
export function generateOptionsFromFlags(values: SharedValues): GenerateOptions {
  const options: GenerateOptions = {};
  const numeric: Array<[keyof SharedValues, keyof GenerateOptions]> = [
    ["temperature", "temperature"],
    ["top-k", "topK"],
    ["top-p", "topP"],
    ["min-p", "minP"],
    ["repeat-penalty", "repetitionPenalty"],
    ["repeat-last-n", "repeatLastN"],
    ["seed", "seed"],
    ["max-tokens", "maxTokens"],
  ];
  for (const [flag, key] of numeric) {
    const value = parseNumberFlag(flag, values[flag] as string | undefined);
    if (value !== undefined) (options as Record<string, unknown>)[key] = value;
  }
  if (values.stop !== undefined) options.stop = values.stop;
  if (values["ignore-eos"]) options.ignoreEos = true;
  return options;
}

/**
 * Load the model named by --model (or the demo model). Loading that takes longer than a second
 * shows its phase on stderr. `signal` stops the load with AbortError.
 */
export async function loadModelFromFlags(values: SharedValues, signal?: AbortSignal): Promise<Model> {
  const path = values.model ?? DEMO_MODEL_PATH;
  if (values.model === undefined && !existsSync(path)) {
    throw new UsageError(`The bundled demo model is missing at ${path}; pass --model PATH.`, { path });
  }
  const started = Date.now();
  let current: LoadProgress = { phase: "start" };
  let shownPhase = "";
  const show = (): void => {
    if (current.phase === shownPhase || current.phase === "ready") return;
    shownPhase = current.phase;
    const share =
      current.totalBytes !== undefined && current.loadedBytes !== undefined && current.totalBytes > 0
        ? ` ${Math.round((100 * current.loadedBytes) / current.totalBytes)}%`
        : "";
    process.stderr.write(`geb-cpu: loading ${path}: ${current.phase}${share}\n`);
  };
  // Quick loads print nothing; after a second, every new phase gets a line.
  const timer = setTimeout(show, 1000);
  timer.unref();
  const onProgress = (progress: LoadProgress): void => {
    current = progress;
    if (Date.now() - started >= 1000) show();
  };
  const options: Parameters<typeof loadModel>[1] = { onProgress, ...(signal === undefined ? {} : { signal }) };
  const threads = parseNumberFlag("threads", values.threads);
  if (threads !== undefined) options.threads = threads;
  const contextSize = parseNumberFlag("context-size", values["context-size"]);
  if (contextSize !== undefined) options.contextSize = contextSize;
  if (values.tier !== undefined) options.tier = values.tier;
  if (values["weight-type"] !== undefined) options.weightType = values["weight-type"] as NonNullable<typeof options.weightType>;
  let model: Model;
  try {
    model = await loadModel(path, options);
  } finally {
    clearTimeout(timer);
  }
  printRemovedTemporaryFiles(model.info().removedTemporaryFiles);
  if (values.verbose) {
    const info = model.info();
    process.stderr.write(
      `geb-cpu: loaded ${path} in ${Date.now() - started} ms (${info.architecture}, tier ${info.tier}, ${info.threads} threads, context ${info.contextSize})\n`,
    );
  }
  return model;
}

/** Print generation speed on stderr (for --verbose). */
export function printTimings(result: GenerateResult): void {
  const t = result.timings;
  process.stderr.write(
    `geb-cpu: prompt ${result.promptTokens} tokens in ${t.prefillMs.toFixed(1)} ms (${t.prefillTokensPerSecond.toFixed(1)} tokens/s), ` +
      `generated ${result.tokens.length} tokens in ${t.decodeMs.toFixed(1)} ms (${t.decodeTokensPerSecond.toFixed(1)} tokens/s), ` +
      `finish: ${result.finishReason}, seed ${result.seed}\n`,
  );
}

/** Print an error the way every geb-cpu command does, and return the exit code (2 for usage errors). */
export function reportError(error: unknown): number {
  return printError(error, error instanceof UsageError);
}

/** Run an argument parser, turning its failures (unknown or malformed flags) into usage errors. */
export function parseOrUsageError<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

const usage = `Usage: geb-cpu generate [--model PATH] --prompt TEXT [options]

Stream a continuation of TEXT to stdout. Ctrl-C (SIGINT) or SIGTERM stops generation: the text
generated so far stays printed (with --json, the JSON object is printed with finishReason
"abort"), and the exit code is 130 for SIGINT, 143 for SIGTERM. A second Ctrl-C ends the process
at once. When the reader of stdout goes away (as with | head), generation stops, nothing more
is printed and the exit code is 141.

Options:
  -p, --prompt TEXT       the prompt (required)
      --json              print one JSON object with the text, tokens and timings instead of streaming
      --context-shift     when the context is full, drop the oldest half of the generated tokens and
                          go on (default: stop with ERR_GEB_CONTEXT_OVERFLOW)
${SHARED_OPTIONS_HELP}`;

// The shell's exit statuses for a command stopped by SIGINT and SIGTERM.
const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;

async function run(argv: string[]): Promise<number> {
  let model: Model | undefined;
  // Ctrl-C or SIGTERM stops the load or the generation, and text already printed stays printed.
  // Each handler runs once, so the same signal a second time gets Node.js's default action and
  // ends the process at once.
  const controller = new AbortController();
  let stoppedBy: keyof typeof SIGNAL_EXIT_CODES | undefined;
  const stopOn = (signal: keyof typeof SIGNAL_EXIT_CODES) => (): void => {
    stoppedBy = signal;
    controller.abort();
  };
  const onSigint = stopOn("SIGINT");
  const onSigterm = stopOn("SIGTERM");
  // A failed write to stdout (the reader of a pipe went away, a full disk) stops generation at
  // once. runWatchingStdout in lib/cli/base.ts picks the exit code and the message.
  let outputFailed = false;
  let contextShift = false;
  const onStdoutError = (): void => {
    outputFailed = true;
    controller.abort();
  };
  process.stdout.on("error", onStdoutError);
  try {
    const { values } = parseOrUsageError(() =>
      parseArgs({
        args: argv,
        options: {
          ...MODEL_AND_SAMPLING_OPTIONS,
          prompt: { type: "string", short: "p" },
          json: { type: "boolean" },
          "context-shift": { type: "boolean" },
        },
        strict: true,
      }),
    );
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    if (values.prompt === undefined) throw new UsageError('generate needs --prompt TEXT; run "geb-cpu generate --help" for the options.');
    const options = generateOptionsFromFlags(values);
    contextShift = values["context-shift"] === true;
    if (contextShift) options.contextShift = true;
    process.once("SIGINT", onSigint);
    process.once("SIGTERM", onSigterm);
    model = await loadModelFromFlags(values, controller.signal);

    let result: GenerateResult;
    if (values.json) {
      result = await model.generate(values.prompt, { ...options, signal: controller.signal });
      process.stdout.write(
        `${JSON.stringify({
          text: result.text,
          tokens: result.tokens,
          finishReason: result.finishReason,
          promptTokens: result.promptTokens,
          timings: result.timings,
          seed: result.seed,
        })}\n`,
      );
    } else {
      const stream = model.stream(values.prompt, { ...options, signal: controller.signal });
      let printed = false;
      try {
        for await (const piece of stream) {
          process.stdout.write(piece);
          printed = true;
        }
      } catch (error) {
        if (outputFailed) return 1;
        // End the partial line, so the error message on stderr starts on a line of its own.
        if (printed) process.stdout.write("\n");
        throw error;
      }
      result = await stream.result;
      if (outputFailed) return 1;
      process.stdout.write("\n");
    }
    if (values.verbose) printTimings(result);
    if (stoppedBy !== undefined) {
      const count = result.tokens.length;
      process.stderr.write(`geb-cpu: generation stopped by ${stoppedBy} after ${count} ${count === 1 ? "token" : "tokens"}.\n`);
      return SIGNAL_EXIT_CODES[stoppedBy];
    }
    return 0;
  } catch (error) {
    if (outputFailed && error instanceof AbortError) return 1;
    const code = reportError(error);
    if (error instanceof AbortError && stoppedBy !== undefined) return SIGNAL_EXIT_CODES[stoppedBy];
    // The message names the API options, so name the flags that set them. With --context-shift,
    // only a prompt longer than the context can overflow, and shifting does not apply to a prompt.
    if (error instanceof ContextOverflowError) {
      process.stderr.write(
        contextShift
          ? "geb-cpu: --context-shift makes room for new tokens only and cannot fit a prompt longer than the context; shorten the prompt or pass --context-size N.\n"
          : "geb-cpu: --context-shift drops old tokens and goes on, --context-size N sets a larger context; for a prompt longer than the context, shorten it or pass --context-size N.\n",
      );
    }
    return code;
  } finally {
    process.removeListener("SIGINT", onSigint);
    process.removeListener("SIGTERM", onSigterm);
    process.stdout.removeListener("error", onStdoutError);
    await model?.dispose();
  }
}

/** The `generate` subcommand. */
export const command: CliCommand = {
  name: "generate",
  summary: "generate text from a prompt",
  usage,
  run,
};

export default command;
