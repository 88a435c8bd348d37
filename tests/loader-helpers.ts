// Shared helpers of the loader tests: a tiny GEB config, temporary folders, byte patching,
// assertions on typed errors and a captured run of `geb-cpu inspect`.

import { mkdtempSync, rmSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { expect } from "vitest";

import inspectCommand from "../lib/cli/inspect.js";
import { GebError } from "../lib/errors.js";

/** A small GEB config (2 layers, GQA 4:2, head 16, vocab 128) whose rows suit every block type. */
export const TINY_GEB_CONFIG = {
  num_layers: 2,
  hidden_size: 64,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  kv_channels: 16,
  ffn_hidden_size: 96,
  padded_vocab_size: 128,
  seq_length: 64,
  layernorm_epsilon: 1e-5,
  tie_word_embeddings: false,
};

/** Create a temporary folder; the returned function removes it. */
export function makeTempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `geb-loader-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Apply `edit` to a copy of the bytes of `source` and write it to `target`. */
export async function patchFile(source: string, target: string, edit: (bytes: Buffer) => Buffer | void): Promise<void> {
  const bytes = await readFile(source);
  const edited = edit(bytes) ?? bytes;
  await writeFile(target, edited);
}

/** Find the byte offset of an ASCII string in a buffer (first match), failing the test when absent. */
export function offsetOf(bytes: Buffer, text: string, from = 0): number {
  const at = bytes.indexOf(Buffer.from(text, "utf8"), from);
  expect(at, `"${text}" not found in the file`).toBeGreaterThanOrEqual(0);
  return at;
}

/** Await a promise that must reject with a GebError of `code`; return the error for more checks. */
export async function expectGebError(promise: Promise<unknown>, code: string, message?: RegExp): Promise<GebError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, "expected a rejection").toBeInstanceOf(GebError);
  const error = caught as GebError;
  expect(error.code).toBe(code);
  if (message !== undefined) expect(error.message).toMatch(message);
  return error;
}

/** Run the command with stdout and stderr captured. */
export async function runInspect(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const out = process.stdout.write;
  const err = process.stderr.write;
  process.stdout.write = ((chunk: string) => ((stdout += chunk), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => ((stderr += chunk), true)) as typeof process.stderr.write;
  try {
    const code = await inspectCommand.run(argv);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}
