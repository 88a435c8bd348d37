// Slash commands of `geb-cpu chat`: which lines are commands, and an unknown command printing a
// note without reaching the model or changing the conversation.

import { Readable } from "node:stream";

import { afterEach, describe, expect, it, vi } from "vitest";

import chatCommand, { chatCommandWord } from "../lib/cli/chat.js";
import { GEB_TINY_DIR } from "./fixtures.js";

afterEach(() => vi.restoreAllMocks());

/** Runs `geb-cpu chat` on geb-tiny, greedy, with `lines` as piped input; returns its exit code and stdout. */
async function chatWithInput(lines: string[]): Promise<{ code: number; stdout: string }> {
  let stdout = "";
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  const input = Readable.from(lines.map((line) => `${line}\n`));
  const stdin = Object.getOwnPropertyDescriptor(process, "stdin")!;
  Object.defineProperty(process, "stdin", { value: Object.assign(input, { isTTY: false }), configurable: true });
  try {
    const code = await chatCommand.run(["--model", GEB_TINY_DIR, "--temperature", "0", "--max-tokens", "6", "--threads", "1"]);
    return { code, stdout };
  } finally {
    Object.defineProperty(process, "stdin", stdin);
    vi.restoreAllMocks();
  }
}

describe("chat command rule", () => {
  const cases: [string, string | undefined][] = [
    ["/reset", "reset"],
    ["/foo", "foo"],
    ["/Foo bar", "Foo"],
    ["/exit now", "exit"],
    ["/ 你好", undefined],
    ["//", undefined],
    ["/", undefined],
    ["/usr/bin", undefined],
    ["/foo1", undefined],
    ["/你好", undefined],
    ["你好 /foo", undefined],
  ];
  it.each(cases)("reads %j as %j", (line, word) => {
    expect(chatCommandWord(line)).toBe(word);
  });
});

describe("chat unknown commands", () => {
  it("leaves the conversation unchanged", async () => {
    const plain = await chatWithInput(["你好"]);
    const withCommand = await chatWithInput(["/foo", "你好"]);
    expect(plain.code).toBe(0);
    expect(withCommand.code).toBe(0);
    expect(plain.stdout).not.toBe("");
    expect(withCommand.stdout).toBe(`(unknown command: /foo; /help lists the commands)\n${plain.stdout}`);
  });

  it("sends slash lines that are not commands", async () => {
    const { code, stdout } = await chatWithInput(["//", "/help"]);
    expect(code).toBe(0);
    expect(stdout).not.toContain("unknown command");
    // The reply to "//" comes before the command list, which ends the output.
    const help = "(commands: /reset clears the conversation, /exit quits, /help lists the commands; other lines are messages)\n";
    expect(stdout.endsWith(help)).toBe(true);
    expect(stdout.length).toBeGreaterThan(help.length + 1);
  });
});
