// Pieces every `geb-cpu` subcommand shares: the command shape the dispatcher in lib/cli.ts
// expects, the package version, the one way errors and removed leftover files are printed, and
// the handling of a standard output that can no longer be written.
import { createRequire } from "node:module";
import { setImmediate as nextTurn } from "node:timers/promises";

import { GebError, InvalidArgumentError, IoError } from "../errors.js";

/** One subcommand of `geb-cpu`, exported as `command` from lib/cli/<name>.ts. */
export interface CliCommand {
  /** Word that selects it: `geb-cpu <name>`. */
  name: string;
  /** One line for the command list in `geb-cpu --help`. */
  summary: string;
  /** Full help text, printed by `geb-cpu <name> --help` and `geb-cpu help <name>`. */
  usage: string;
  /** Runs the command with the arguments after its name; resolves to the exit code. */
  run(argv: string[]): Promise<number>;
}

const require = createRequire(import.meta.url);

/** Returns the package version from package.json (two folders above lib/cli/ and dist/cli/). */
export function packageVersion(): string {
  return (require("../../package.json") as { version: string }).version;
}

/**
 * Prints an error as `geb-cpu: <message> (<code>)` on stderr and returns the exit code: 2 when
 * `usageError` is set, else 1.
 */
export function printError(error: unknown, usageError = false): number {
  // node:util parseArgs throws plain errors with ERR_PARSE_ARGS_* codes; report them under the
  // package's own code so scripts see one code for every bad command line.
  const nodeCode = (error as { code?: unknown } | null)?.code;
  if (!(error instanceof GebError) && error instanceof Error && typeof nodeCode === "string" && nodeCode.startsWith("ERR_PARSE_ARGS")) {
    error = new InvalidArgumentError(error.message, { cause: error });
  }
  if (error instanceof GebError) {
    process.stderr.write(`geb-cpu: ${error.message} (${error.code})\n`);
  } else if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    process.stderr.write(`geb-cpu: ${error.message}${typeof code === "string" ? ` (${code})` : ""}\n`);
  } else {
    process.stderr.write(`geb-cpu: ${String(error)}\n`);
  }
  return usageError ? 2 : 1;
}

/**
 * Prints one line on stderr naming the temporary files of killed runs that a conversion or a
 * load removed (see lib/formats/temporary-files.ts). Prints nothing when the list is empty.
 */
export function printRemovedTemporaryFiles(paths: readonly string[]): void {
  if (paths.length === 0) return;
  const files = paths.length === 1 ? "1 temporary file" : `${paths.length} temporary files`;
  process.stderr.write(`geb-cpu: removed ${files} left by an interrupted run: ${paths.join(", ")}\n`);
}

/**
 * Exit code after the reader of standard output went away (EPIPE), as in `geb-cpu generate ... |
 * head`: 141 = 128 + SIGPIPE, the status bash reports for a program that SIGPIPE ended, as for
 * `yes | head -1`. Node.js ignores SIGPIPE, so the CLI returns that status itself.
 */
export const BROKEN_PIPE_EXIT_CODE = 141;

/**
 * Runs `run` while watching standard output for write errors, which Node.js reports as an
 * 'error' event that would otherwise crash the process with a stack trace. A closed pipe (EPIPE)
 * ends quietly with BROKEN_PIPE_EXIT_CODE; any other failure (ENOSPC on a full disk, EIO...)
 * prints one ERR_GEB_IO line on stderr and gives 1. Commands that run long (generate, chat)
 * listen to the same event to stop their work at once.
 */
export async function runWatchingStdout(run: () => Promise<number>): Promise<number> {
  let failure: NodeJS.ErrnoException | undefined;
  const onError = (error: NodeJS.ErrnoException): void => {
    failure ??= error;
  };
  process.stdout.on("error", onError);
  let code: number;
  try {
    code = await run();
    // Wait until what was written has left the buffer, so that a failed last write is seen here
    // and not after the listener is gone. Node.js emits the 'error' of a write on a later tick.
    if (process.stdout.writableLength > 0 && !process.stdout.destroyed) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          process.stdout.removeListener("drain", done).removeListener("error", done).removeListener("close", done);
          resolve();
        };
        process.stdout.on("drain", done).on("error", done).on("close", done);
      });
    }
    await nextTurn();
  } finally {
    process.stdout.removeListener("error", onError);
  }
  if (failure === undefined) return code;
  if (failure.code === "EPIPE") return BROKEN_PIPE_EXIT_CODE;
  return printError(
    new IoError(`Cannot write to standard output: ${failure.message}. Check the free space and permissions where the output goes.`, {
      cause: failure,
    }),
  );
}
