#!/usr/bin/env node
// The `geb-cpu` command: dispatches to one subcommand per file in lib/cli/. To add one, write
// lib/cli/<name>.ts exporting `command: CliCommand` (lib/cli/base.ts) and add it to COMMANDS.
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { packageVersion, printError, runWatchingStdout, type CliCommand } from "./cli/base.js";
import { command as chat } from "./cli/chat.js";
import { command as convert } from "./cli/convert.js";
import { command as generate } from "./cli/generate.js";
import { command as info } from "./cli/info.js";
import { command as inspect } from "./cli/inspect.js";

export type { CliCommand } from "./cli/base.js";

/** Subcommands in the order `--help` lists them. */
export const COMMANDS: readonly CliCommand[] = [info, inspect, generate, chat, convert];

function mainUsage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const list = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n");
  return `Usage: geb-cpu <command> [options]

Run GEB-1.3B and llama-family GGUF language models on the CPU.

Commands:
${list}

Options:
  -h, --help     show this help, or a command's help: geb-cpu <command> --help
  -v, --version  print the geb-cpu version

Environment:
  GEB_CPU_ISA     force a lower kernel tier: scalar, avx2, avx512, avx512vnni, neon, neondot
  GEB_CPU_BINARY  path of a geb_cpu.node addon to load instead of the bundled one`;
}

/**
 * Runs `geb-cpu` with the given arguments (without `node` and the script path) and resolves to
 * the exit code: 0 on success, 1 on an error, 2 on a usage error, 130 or 143 when SIGINT or SIGTERM
 * stopped a command, 141 when the reader of standard output went away. Never throws.
 */
export async function runCli(argv: readonly string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    process.stderr.write(`${mainUsage()}\n`);
    return 2;
  }
  if (first === "-h" || first === "--help") {
    process.stdout.write(`${mainUsage()}\n`);
    return 0;
  }
  if (first === "-v" || first === "--version") {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  if (first === "help") {
    const topic = rest[0];
    const target = COMMANDS.find((c) => c.name === topic);
    if (topic !== undefined && target === undefined) {
      return printError(new Error(`unknown command "${topic}"; run "geb-cpu --help" for the list`), true);
    }
    process.stdout.write(`${target ? target.usage : mainUsage()}\n`);
    return 0;
  }

  const command = COMMANDS.find((c) => c.name === first);
  if (command === undefined) {
    const problem = first.startsWith("-") ? `unknown option "${first}"` : `unknown command "${first}"`;
    return printError(new Error(`${problem}; run "geb-cpu --help" for usage`), true);
  }
  return runWatchingStdout(async () => {
    try {
      return await command.run(rest);
    } catch (error) {
      return printError(error);
    }
  });
}

// True when this file is the program node runs, also through npm's bin symlink.
function isMainModule(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMainModule()) {
  runCli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
