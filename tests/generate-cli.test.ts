// The `generate` and `chat` subcommands, run in-process with stdout and stderr captured, and
// `generate` in a child process that receives SIGINT or SIGTERM.

import { spawn } from "node:child_process";
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
      const stopped = new RegExp(`stopped by ${signal} after (\\d+) tokens`).exec(stderr);
      expect(stopped, stderr).not.toBeNull();
      expect(Number(stopped![1])).toBeGreaterThan(0);
      expect(Number(stopped![1])).toBeLessThan(maxTokens);
    });
  }

  it("exits 2 on usage errors", async () => {
    const missing = await capture(() => generateCommand.run(["--model", GEB_TINY_DIR]));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("--prompt");
    const badNumber = await capture(() => generateCommand.run(["-m", GEB_TINY_DIR, "-p", "x", "--top-k", "many"]));
    expect(badNumber.code).toBe(2);
    expect(badNumber.stderr).toContain("--top-k");
    const unknown = await capture(() => generateCommand.run(["--frobnicate"]));
    expect(unknown.code).toBe(2);
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
});
