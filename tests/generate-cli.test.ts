// The `generate` and `chat` subcommands, run in-process with stdout and stderr captured, and in a
// child process that receives SIGINT or SIGTERM or whose stdout fails (a closed pipe, a full disk).

import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it, vi } from "vitest";
import chatCommand from "../lib/cli/chat.js";
import generateCommand from "../lib/cli/generate.js";
import { GEB_TINY_DIR } from "./fixtures.js";

/** Run a command and capture what it writes. */
async function capture(run: () => Promise<number>): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const out = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const code = await run();
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

afterEach(() => vi.restoreAllMocks());

const CLI_FROM_SOURCE = fileURLToPath(new URL("./cli-from-source.mjs", import.meta.url));

/** Run `geb-cpu` in a child process and send it `signal` once its first stdout bytes arrive. */
function runAndSignal(args: string[], signal: NodeJS.Signals): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_FROM_SOURCE, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let sent = false;
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      if (!sent) {
        sent = true;
        child.kill(signal);
      }
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** A child `geb-cpu` process from the TypeScript sources, with what it printed so far. */
interface CliChild {
  output: { stdout: string; stderr: string };
  /** Resolves once stdout contains `text`; with no text, once stdout has its first bytes. */
  waitFor(text?: string): Promise<void>;
  /** Writes a line to the command's stdin (started with `input: true`). */
  send(line: string): void;
  /** Closes the reading end of the command's stdout, as `head` does once it has enough. */
  closeStdout(): void;
  kill(signal: NodeJS.Signals): void;
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start `geb-cpu args`; `stdout` is a file descriptor to write to instead of a pipe. */
function startCli(args: string[], options: { input?: boolean; stdout?: number } = {}): CliChild {
  const child = spawn(process.execPath, [CLI_FROM_SOURCE, ...args], {
    stdio: [options.input === true ? "pipe" : "ignore", options.stdout ?? "pipe", "pipe"],
  });
  const output = { stdout: "", stderr: "" };
  const waiting: Array<{ text: string; resolve: () => void }> = [];
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    output.stdout += chunk;
    for (const entry of [...waiting]) {
      if (!output.stdout.includes(entry.text)) continue;
      waiting.splice(waiting.indexOf(entry), 1);
      entry.resolve();
    }
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output.stderr += chunk));
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal }));
  });
  return {
    output,
    waitFor: (text = "") =>
      output.stdout.length > 0 && output.stdout.includes(text) ? Promise.resolve() : new Promise((resolve) => waiting.push({ text, resolve })),
    send: (line) => child.stdin?.write(`${line}\n`),
    closeStdout: () => child.stdout?.destroy(),
    kill: (signal) => child.kill(signal),
    closed,
  };
}

/** Run `geb-cpu args` with stdout on /dev/full, where every write fails with ENOSPC. */
async function runIntoFullDevice(args: string[], input?: string): Promise<{ code: number | null; stderr: string }> {
  const full = openSync("/dev/full", "w");
  try {
    const child = startCli(args, { stdout: full, input: input !== undefined });
    if (input !== undefined) child.send(input);
    const { code } = await child.closed;
    return { code, stderr: child.output.stderr };
  } finally {
    closeSync(full);
  }
}

// Each would run until the test times out if a failed write did not stop it.
const ENDLESS_GENERATE = ["generate", "-m", GEB_TINY_DIR, "-p", "你好", "--ignore-eos", "--context-shift", "-n", "1000000"];
const ENDLESS_CHAT = ["chat", "-m", GEB_TINY_DIR, "--ignore-eos", "-n", "1000000"];

describe("geb-cpu output that cannot be written", () => {
  it("exits 141 on a closed pipe", async () => {
    for (const [args, input] of [
      [ENDLESS_GENERATE, undefined],
      [ENDLESS_CHAT, "你好"],
    ] as const) {
      const child = startCli([...args], { input: input !== undefined });
      if (input !== undefined) child.send(input);
      await child.waitFor();
      child.closeStdout();
      const { code, signal } = await child.closed;
      expect(signal, args[0]).toBeNull();
      expect(code, args[0]).toBe(141);
      expect(child.output.stderr, args[0]).toBe("");
    }
  });

  it("exits 1 with ERR_GEB_IO on a full disk", async () => {
    for (const [args, input] of [
      [ENDLESS_GENERATE, undefined],
      [ENDLESS_CHAT, "你好"],
      [["info"], undefined],
      [["inspect", GEB_TINY_DIR], undefined],
    ] as const) {
      const { code, stderr } = await runIntoFullDevice([...args], input);
      expect(code, args[0]).toBe(1);
      expect(stderr.trimEnd().split("\n"), args[0]).toEqual([expect.stringMatching(/^geb-cpu: Cannot write to standard output: ENOSPC.*\(ERR_GEB_IO\)$/)]);
    }
  });
});

describe("geb-cpu generate", () => {
  it("streams greedy text to stdout", async () => {
    const args = ["--model", GEB_TINY_DIR, "--prompt", "床前明月光", "--temperature", "0", "--max-tokens", "12", "--ignore-eos"];
    const first = await capture(() => generateCommand.run(args));
    expect(first.code).toBe(0);
    expect(first.stdout.length).toBeGreaterThan(1);
    const again = await capture(() => generateCommand.run(args));
    expect(again.stdout).toBe(first.stdout);
  });

  it("prints JSON and timings with --json --verbose", async () => {
    const args = ["-m", GEB_TINY_DIR, "-p", "Hello", "--seed", "3", "-n", "5", "--ignore-eos", "--json", "--verbose"];
    const { code, stdout, stderr } = await capture(() => generateCommand.run(args));
    expect(code).toBe(0);
    const parsed = JSON.parse(stdout) as { tokens: number[]; seed: number; finishReason: string };
    expect(parsed.tokens.length).toBe(5);
    expect(parsed.seed).toBe(3);
    expect(parsed.finishReason).toBe("length");
    expect(stderr).toMatch(/tokens\/s/);
  });

  // Without a stop, the command would generate until the test times out.
  for (const [signal, exitCode] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    it(`stops on ${signal} with exit code ${exitCode}`, async () => {
      const maxTokens = 1_000_000;
      const args = ["generate", "-m", GEB_TINY_DIR, "-p", "床前明月光", "-n", String(maxTokens), "--ignore-eos", "--context-shift", "--seed", "1"];
      const { code, stdout, stderr } = await runAndSignal(args, signal);
      expect(code).toBe(exitCode);
      expect(stdout.length).toBeGreaterThan(0);
      expect(stdout.endsWith("\n")).toBe(true);
      const stopped = new RegExp(`stopped by ${signal} after (\\d+) tokens?\\.`).exec(stderr);
      expect(stopped, stderr).not.toBeNull();
      expect(Number(stopped![1])).toBeGreaterThan(0);
      expect(Number(stopped![1])).toBeLessThan(maxTokens);
    });
  }

  it("exits 2 on usage errors", async () => {
    const missing = await capture(() => generateCommand.run(["--model", GEB_TINY_DIR]));
    expect(missing.code).toBe(2);
    // One line that points at the help, with the code at its end (not glued to the help text).
    expect(missing.stderr).toBe('geb-cpu: generate needs --prompt TEXT; run "geb-cpu generate --help" for the options. (ERR_GEB_INVALID_ARGUMENT)\n');
    const badNumber = await capture(() => generateCommand.run(["-m", GEB_TINY_DIR, "-p", "x", "--top-k", "many"]));
    expect(badNumber.code).toBe(2);
    expect(badNumber.stderr).toContain("--top-k");
    const unknown = await capture(() => generateCommand.run(["--frobnicate"]));
    expect(unknown.code).toBe(2);
  });

  it("explains a prompt too long for --context-shift", async () => {
    const prompt = "床前明月光，疑是地上霜。".repeat(40);
    const shifted = await capture(() => generateCommand.run(["-m", GEB_TINY_DIR, "-p", prompt, "-n", "2", "--context-shift"]));
    expect(shifted.code).toBe(1);
    expect(shifted.stderr).toContain("ERR_GEB_CONTEXT_OVERFLOW");
    expect(shifted.stderr).toContain("--context-shift makes room for new tokens only and cannot fit a prompt longer than the context");
    const plain = await capture(() => generateCommand.run(["-m", GEB_TINY_DIR, "-p", prompt, "-n", "2"]));
    expect(plain.code).toBe(1);
    expect(plain.stderr).toContain("--context-shift drops old tokens and goes on");
  });

  it("says 1 token in the singular", async () => {
    let stderr = "";
    let signalled = false;
    vi.spyOn(process.stdout, "write").mockImplementation(() => {
      // Ctrl-C right after the first piece. With -n 1 the count is 1 however far decoding ran ahead.
      if (!signalled) {
        signalled = true;
        process.emit("SIGINT");
      }
      return true;
    });
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      stderr += String(chunk);
      return true;
    });
    const code = await generateCommand.run(["-m", GEB_TINY_DIR, "-p", "你好", "-n", "1", "--ignore-eos", "--temperature", "0"]);
    vi.restoreAllMocks();
    expect(code).toBe(130);
    expect(stderr).toBe("geb-cpu: generation stopped by SIGINT after 1 token.\n");
  });

  it("exits 1 with the error code on invalid values", async () => {
    const { code, stderr } = await capture(() => generateCommand.run(["-m", GEB_TINY_DIR, "-p", "x", "--temperature=-2"]));
    expect(code).toBe(1);
    expect(stderr).toContain("ERR_GEB_INVALID_ARGUMENT");
    expect(stderr).toContain("temperature");
  });

  it("uses the bundled demo model without --model", async () => {
    const { code, stdout } = await capture(() => generateCommand.run(["--prompt", "你好", "-n", "4", "--ignore-eos", "--json"]));
    expect(code).toBe(0);
    expect((JSON.parse(stdout) as { tokens: number[] }).tokens.length).toBe(4);
  });

  it("prints help", async () => {
    const { code, stdout } = await capture(() => generateCommand.run(["--help"]));
    expect(code).toBe(0);
    expect(stdout).toContain("--max-tokens");
  });
});

describe("geb-cpu chat", () => {
  it("answers each line of piped input", async () => {
    const input = Readable.from(["你好\n", "/reset\n", "What does unzip do?\n"]);
    const stdin = Object.getOwnPropertyDescriptor(process, "stdin")!;
    Object.defineProperty(process, "stdin", { value: Object.assign(input, { isTTY: false }), configurable: true });
    try {
      const { code, stdout } = await capture(() =>
        chatCommand.run(["--model", GEB_TINY_DIR, "--temperature", "0", "--max-tokens", "8"]),
      );
      expect(code).toBe(0);
      expect(stdout).toContain("(conversation cleared)");
      // Two replies, each ended by a newline, around the reset notice.
      expect(stdout.split("\n").length).toBeGreaterThanOrEqual(3);
    } finally {
      Object.defineProperty(process, "stdin", stdin);
    }
  });

  it("cancels a piped reply on SIGINT", async () => {
    const child = startCli([...ENDLESS_CHAT], { input: true });
    child.send("你好");
    await child.waitFor();
    child.kill("SIGINT");
    await child.waitFor(" [cancelled]\n");
    expect(child.output.stdout.length).toBeGreaterThan(" [cancelled]\n".length);
    child.send("/reset");
    await child.waitFor("(conversation cleared)\n");
    child.send("/exit");
    const { code } = await child.closed;
    expect(code).toBe(0);
    expect(child.output.stderr).not.toContain("stopped by");
  });

  it("exits 143 on SIGTERM mid-reply", async () => {
    const child = startCli([...ENDLESS_CHAT], { input: true });
    child.send("你好");
    await child.waitFor();
    child.kill("SIGTERM");
    const { code, signal } = await child.closed;
    expect(signal).toBeNull();
    expect(code).toBe(143);
    expect(child.output.stdout.endsWith("\n")).toBe(true);
    expect(child.output.stdout).not.toContain("[cancelled]");
    expect(child.output.stderr.trimEnd().split("\n").at(-1)).toBe("geb-cpu: chat stopped by SIGTERM.");
  });

  it("exits 130 on piped SIGINT between replies", async () => {
    const child = startCli([...ENDLESS_CHAT], { input: true });
    child.send("/reset");
    await child.waitFor("(conversation cleared)\n");
    // stdin stays open: the command must not wait for its writer.
    child.kill("SIGINT");
    const { code, signal } = await child.closed;
    expect(signal).toBeNull();
    expect(code).toBe(130);
    expect(child.output.stderr).toBe("geb-cpu: chat stopped by SIGINT.\n");
  });
});
