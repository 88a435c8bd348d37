// `convertModel` checks the output path again right before moving the converted file into
// place: a file, link or FIFO put at the output during the conversion gets the same rules as one
// that was there at the start, and the temporary file is removed.

import { execFileSync } from "node:child_process";
import { linkSync, symlinkSync, writeFileSync } from "node:fs";
import { copyFile, lstat, mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { convertModel } from "../lib/model/convert.js";
import { STORIES260K_GGUF } from "./fixtures.js";

let workDir = "";
let input = "";

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), "geb-convert-swap-"));
  // A copy in the same folder, so the output path can become a hard link to it.
  input = join(workDir, "stories260K.gguf");
  await copyFile(STORIES260K_GGUF, input);
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/**
 * Converts the input to `<folder>/out.gguf` and calls `swap(output)` at the first progress
 * report, while the temporary file is being written. Returns the output path and the error.
 */
async function convertWithSwap(name: string, force: boolean, swap: (output: string) => void): Promise<{ folder: string; output: string; error: unknown }> {
  const folder = join(workDir, name);
  await mkdir(folder);
  const output = join(folder, "out.gguf");
  let swapped = false;
  const error = await convertModel(input, output, {
    type: "f16",
    force,
    onProgress: () => {
      if (swapped) return;
      swapped = true;
      swap(output);
    },
  }).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(swapped).toBe(true);
  return { folder, output, error };
}

describe("convert output swapped during conversion", () => {
  it("keeps a hard link to the input, even with force", async () => {
    const { folder, output, error } = await convertWithSwap("input-link", true, (path) => linkSync(input, path));
    expect(error).toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT", message: expect.stringContaining("is the input model or one of its files") });
    expect((await lstat(output)).ino).toBe((await lstat(input)).ino);
    expect((await readFile(input)).equals(await readFile(STORIES260K_GGUF))).toBe(true);
    expect(await readdir(folder)).toEqual([basename(output)]);
  });

  it("keeps a FIFO, even with force", async () => {
    const { folder, output, error } = await convertWithSwap("fifo", true, (path) => execFileSync("mkfifo", [path]));
    expect(error).toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT", message: expect.stringContaining("is a named pipe (FIFO), not a regular file") });
    expect((await lstat(output)).isFIFO()).toBe(true);
    expect(await readdir(folder)).toEqual([basename(output)]);
  });

  it("keeps a new file without force", async () => {
    const { folder, output, error } = await convertWithSwap("new-file", false, (path) => writeFileSync(path, "someone else's file"));
    expect(error).toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT", message: expect.stringContaining("already exists; pass --force") });
    expect(await readFile(output, "utf8")).toBe("someone else's file");
    expect(await readdir(folder)).toEqual([basename(output)]);
  });

  it("keeps a new symbolic link without force", async () => {
    const target = join(workDir, "link-target.txt");
    const { folder, output, error } = await convertWithSwap("new-link", false, (path) => {
      writeFileSync(target, "target");
      symlinkSync(target, path);
    });
    expect(error).toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT", message: expect.stringContaining("is a symbolic link to") });
    expect((await lstat(output)).isSymbolicLink()).toBe(true);
    expect(await readFile(target, "utf8")).toBe("target");
    expect(await readdir(folder)).toEqual([basename(output)]);
  });

  it("replaces a new regular file with force", async () => {
    const { output, error } = await convertWithSwap("forced", true, (path) => writeFileSync(path, "old"));
    expect(error).toBeUndefined();
    expect((await lstat(output)).size).toBeGreaterThan(1000);
  });
});
