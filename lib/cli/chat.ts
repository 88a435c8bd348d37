// `geb-cpu chat`: an interactive conversation in the terminal. Replies stream as they are
// generated; Ctrl-C during a reply cancels it, Ctrl-C twice at the prompt exits (130), SIGTERM
// exits (143). With stdin not a terminal, every input line is one user message and gets a reply,
// until end of input or a Ctrl-C between replies.
// A conversation may outgrow the context: the oldest turns are then dropped from the prompt, and
// a reply that fills the context shifts it instead of failing.

import { createInterface, type Interface } from "node:readline";
import { parseArgs } from "node:util";
import { AbortError, ContextOverflowError } from "../errors.js";
import type { ChatMessage, ChatOptions, GenerateResult, Model } from "../model.js";
import type { CliCommand } from "./base.js";
import {
  MODEL_AND_SAMPLING_OPTIONS,
  SHARED_OPTIONS_HELP,
  generateOptionsFromFlags,
  loadModelFromFlags,
  parseOrUsageError,
  printTimings,
  reportError,
} from "./generate.js";

const usage = `Usage: geb-cpu chat [--model PATH] [options]

Chat with a model in the terminal. Type a message and press Enter. Commands: /reset clears the
conversation, /exit quits, /help lists the commands. A line is a command when it starts with /
followed at once by ASCII letters and then a space or its end (/foo, /foo bar). An unknown
command prints a note and changes nothing. Every other line is a message, also one that starts
with / otherwise ("/ 你好", "//", "/usr/bin"). Ctrl-C cancels a reply in progress, and its text
so far stays in the conversation; Ctrl-C twice at the prompt exits. With input from a pipe or a
file, every line is one message or command, and Ctrl-C between replies exits. When Ctrl-C or
SIGTERM ends chat, the exit code is 130 for SIGINT, 143 for SIGTERM. When the conversation no
longer fits the context, the oldest turns are left out of the prompt (the system message stays).

Options:
      --system TEXT       system message at the start of the conversation
${SHARED_OPTIONS_HELP}`;

/** The chat commands, as `/help` lists them. */
const CHAT_COMMANDS: Readonly<Record<string, string>> = {
  reset: "clears the conversation",
  exit: "quits",
  help: "lists the commands",
};

// A command is "/" and a word of ASCII letters, then whitespace or the end of the line.
const COMMAND_PATTERN = /^\/([A-Za-z]+)(?:\s|$)/;

/**
 * Returns the command word of a trimmed input line ("reset" for "/reset"), or undefined when the
 * line is a message. See the help text for the rule.
 */
export function chatCommandWord(text: string): string | undefined {
  return COMMAND_PATTERN.exec(text)?.[1];
}

// The shell's exit statuses for a command stopped by SIGINT and SIGTERM, as `geb-cpu generate` uses.
const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;
type StopSignal = keyof typeof SIGNAL_EXIT_CODES;

async function run(argv: string[]): Promise<number> {
  let model: Model | undefined;
  // Reasons to end the program: a signal (exit 130 or 143) or a failed write to stdout, whose exit
  // code runWatchingStdout in lib/cli/base.ts picks. Ctrl-C during a reply only cancels the reply.
  let stoppedBy: StopSignal | undefined;
  let outputFailed = false;
  let reply: AbortController | undefined;
  let rl: Interface | undefined;
  const loading = new AbortController();
  let interactive = false;
  let interruptedAtPrompt = false;
  let stoppedAtPrompt = false;
  const stop = (reason: StopSignal | "output"): void => {
    if (reason === "output") outputFailed = true;
    else stoppedBy ??= reason;
    stoppedAtPrompt = rl !== undefined && reply === undefined;
    loading.abort();
    reply?.abort();
    rl?.close();
    // Closing readline only pauses a pipe, which would keep the process waiting for its writer.
    if (rl !== undefined && !interactive) process.stdin.destroy();
  };
  // On a terminal, readline reads Ctrl-C as a key in raw mode and emits its own 'SIGINT' event.
  // With stdin a pipe or a file, Ctrl-C is a real SIGINT. Both come here.
  const onInterrupt = (): void => {
    if (reply !== undefined) {
      reply.abort();
      return;
    }
    // A piped conversation has no prompt to warn at, so Ctrl-C between replies ends it.
    if (rl === undefined || !interactive || interruptedAtPrompt) {
      stop("SIGINT");
      return;
    }
    interruptedAtPrompt = true;
    process.stdout.write("\n(press Ctrl-C again to exit)\n");
    rl.prompt();
  };
  const onSigterm = (): void => stop("SIGTERM");
  const onStdoutError = (): void => stop("output");
  process.on("SIGINT", onInterrupt);
  process.on("SIGTERM", onSigterm);
  process.stdout.on("error", onStdoutError);
  try {
    const { values } = parseOrUsageError(() =>
      parseArgs({ args: argv, options: { ...MODEL_AND_SAMPLING_OPTIONS, system: { type: "string" } }, strict: true }),
    );
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const options = generateOptionsFromFlags(values);
    model = await loadModelFromFlags(values, loading.signal);
    const loaded = model;

    const start: ChatMessage[] = values.system !== undefined ? [{ role: "system", content: values.system }] : [];
    let history: ChatMessage[] = [...start];
    interactive = process.stdin.isTTY === true;
    const lines = createInterface({ input: process.stdin, output: process.stdout, terminal: interactive });
    rl = lines;
    lines.on("SIGINT", onInterrupt);
    // A signal or a failed write that came during the load leaves no conversation to run, and a
    // readline interface closed before its loop starts would never end the loop.
    const stoppedEarly = stoppedBy !== undefined || outputFailed;
    if (!stoppedEarly) {
      if (interactive) process.stdout.write("geb-cpu chat: type a message, /reset to start over, /exit or Ctrl-C twice to quit, /help for the commands.\n");
      lines.setPrompt("> ");
      if (interactive) lines.prompt();

      for await (const line of lines) {
        interruptedAtPrompt = false;
        const text = line.trim();
        const command = chatCommandWord(text);
        if (text === "/exit") break;
        if (text === "/reset") {
          history = [...start];
          process.stdout.write("(conversation cleared)\n");
        } else if (text === "/help") {
          const list = Object.entries(CHAT_COMMANDS).map(([word, effect]) => `/${word} ${effect}`);
          process.stdout.write(`(commands: ${list.join(", ")}; other lines are messages)\n`);
        } else if (command !== undefined) {
          // Also a known command with extra words, which none of them takes.
          process.stdout.write(`(unknown command: ${text}; /help lists the commands)\n`);
        } else if (text !== "") {
          history.push({ role: "user", content: text });
          reply = new AbortController();
          const result = await streamFittingReply(loaded, history, start.length, { ...options, contextShift: true, signal: reply.signal });
          reply = undefined;
          if (outputFailed) return 1;
          if (result === undefined) {
            // The message alone is longer than the context; it is left out of the conversation.
            history.pop();
          } else {
            // A reply cut short by a signal that ends the program gets only its newline.
            const cancelled = result.finishReason === "abort" && stoppedBy === undefined;
            process.stdout.write(cancelled ? " [cancelled]\n" : "\n");
            history.push({ role: "assistant", content: result.text });
            if (values.verbose) printTimings(result);
          }
        }
        if (stoppedBy !== undefined) break;
        if (interactive) lines.prompt();
      }
    }
    lines.close();
    if (outputFailed) return 1;
    if (stoppedBy !== undefined) {
      // At a terminal prompt the cursor sits after "> ", so end that line before the message.
      if (interactive && stoppedAtPrompt) process.stdout.write("\n");
      process.stderr.write(`geb-cpu: chat stopped by ${stoppedBy}.\n`);
      return SIGNAL_EXIT_CODES[stoppedBy];
    }
    return 0;
  } catch (error) {
    if (outputFailed && error instanceof AbortError) return 1;
    const code = reportError(error);
    if (error instanceof AbortError && stoppedBy !== undefined) return SIGNAL_EXIT_CODES[stoppedBy];
    return code;
  } finally {
    process.removeListener("SIGINT", onInterrupt);
    process.removeListener("SIGTERM", onSigterm);
    process.stdout.removeListener("error", onStdoutError);
    rl?.close();
    await model?.dispose();
  }
}

/**
 * Stream a reply to `history` on stdout. While the prompt is longer than the context, drop the
 * oldest turn after the first `keep` messages (the system message) and try again. Returns
 * undefined, after printing the error, when the newest message alone does not fit.
 */
async function streamFittingReply(
  model: Model,
  history: ChatMessage[],
  keep: number,
  options: ChatOptions,
): Promise<GenerateResult | undefined> {
  for (;;) {
    const stream = model.chatStream(history, options);
    let printed = false;
    try {
      for await (const piece of stream) {
        process.stdout.write(piece);
        printed = true;
      }
      return await stream.result;
    } catch (error) {
      if (!(error instanceof ContextOverflowError) || printed) throw error;
      // A turn runs from one user message to the next.
      const nextTurn = history.findIndex((message, i) => i > keep && message.role === "user");
      if (nextTurn < 0) {
        reportError(error);
        return undefined;
      }
      const dropped = nextTurn - keep;
      history.splice(keep, dropped);
      process.stderr.write(`geb-cpu: the conversation no longer fits the context; dropped its oldest ${dropped} messages.\n`);
    }
  }
}

/** The `chat` subcommand. */
export const command: CliCommand = {
  name: "chat",
  summary: "chat with a model in the terminal",
  usage,
  run,
};

export default command;
