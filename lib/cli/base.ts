// Pieces every `geb-cpu` subcommand shares: the command shape the dispatcher in lib/cli.ts
// expects, the package version and the one way errors are printed.
import { createRequire } from "node:module";

import { GebError, InvalidArgumentError } from "../errors.js";

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
