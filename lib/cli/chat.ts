// `geb-cpu chat`: an interactive conversation in the terminal. Replies stream as they are
// generated; Ctrl-C during a reply cancels it, Ctrl-C twice at the prompt exits. With stdin not
// a terminal, every input line is one user message and gets a reply, until end of input.
// A conversation may outgrow the context: the oldest turns are then dropped from the prompt, and
// a reply that fills the context shifts it instead of failing.

import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { ContextOverflowError } from "../errors.js";
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
conversation, /exit quits. Ctrl-C cancels a reply in progress; Ctrl-C twice at the prompt exits.
When the conversation no longer fits the context, the oldest turns are left out of the prompt
(the system message stays).

Options:
      --system TEXT       system message at the start of the conversation
${SHARED_OPTIONS_HELP}`;

async function run(argv: string[]): Promise<number> {
  let model: Model | undefined;
  try {
    const { values } = parseOrUsageError(() =>
      parseArgs({ args: argv, options: { ...MODEL_AND_SAMPLING_OPTIONS, system: { type: "string" } }, strict: true }),
    );
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const options = generateOptionsFromFlags(values);
    model = await loadModelFromFlags(values);
    const loaded = model;

    const start: ChatMessage[] = values.system !== undefined ? [{ role: "system", content: values.system }] : [];
    let history: ChatMessage[] = [...start];
    const interactive = process.stdin.isTTY === true;
    const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: interactive });
    let reply: AbortController | undefined;
    let interruptedAtPrompt = false;

    rl.on("SIGINT", () => {
      if (reply !== undefined) {
        reply.abort();
        return;
      }
      if (interruptedAtPrompt) {
        rl.close();
        return;
      }
      interruptedAtPrompt = true;
      process.stdout.write("\n(press Ctrl-C again to exit)\n");
      rl.prompt();
    });

    if (interactive) process.stdout.write("geb-cpu chat: type a message, /reset to start over, /exit or Ctrl-C twice to quit.\n");
    rl.setPrompt("> ");
    if (interactive) rl.prompt();

    for await (const line of rl) {
      interruptedAtPrompt = false;
      const text = line.trim();
      if (text === "/exit") break;
      if (text === "/reset") {
        history = [...start];
        process.stdout.write("(conversation cleared)\n");
      } else if (text !== "") {
        history.push({ role: "user", content: text });
        reply = new AbortController();
        const result = await streamFittingReply(loaded, history, start.length, { ...options, contextShift: true, signal: reply.signal });
        reply = undefined;
        if (result === undefined) {
          // The message alone is longer than the context; it is left out of the conversation.
          history.pop();
        } else {
          process.stdout.write(result.finishReason === "abort" ? " [cancelled]\n" : "\n");
          history.push({ role: "assistant", content: result.text });
          if (values.verbose) printTimings(result);
        }
      }
      if (interactive) rl.prompt();
    }
    rl.close();
    return 0;
  } catch (error) {
    return reportError(error);
  } finally {
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
