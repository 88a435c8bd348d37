// Leftover temporary files of killed writers. The next time `geb-cpu convert` or convert-at-load
// writes the same file (or convert-at-load reuses it), it removes the leftovers whose pid no process has. It keeps a live
// writer's file and every file that does not match the exact name pattern.

import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";

import convertCommand from "../lib/cli/convert.js";
import { loadModelFromFlags } from "../lib/cli/generate.js";
import { quantizePlan } from "../lib/formats/quantize.js";
import { STALE_AFTER_MS } from "../lib/formats/temporary-files.js";
import { convertModel } from "../lib/model/convert.js";
import { openModelFiles } from "../lib/model/load-plan.js";
import { GEB_TINY_DIR } from "./fixtures.js";

let workDir = "";
let deadPid = 0;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), "geb-leftovers-"));
  // A child that has exited and been reaped leaves a pid that no process has.
  deadPid = spawnSync(process.execPath, ["-e", ""]).pid!;
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

afterEach(() => vi.restoreAllMocks());

/** Returns a temporary file name in the writers' pattern for `prefix` and `pid`. */
function leftoverName(prefix: string, pid: number): string {
  return `${prefix}.${pid}.${randomUUID()}.tmp`;
}

/** Writes a partial file last written to twice STALE_AFTER_MS ago, as a killed writer leaves it. */
async function writeLeftover(path: string): Promise<void> {
  await writeFile(path, "partial");
  const then = new Date(Date.now() - 2 * STALE_AFTER_MS);
  await utimes(path, then, then);
}

/**
 * Creates, in `folder`, one leftover of a dead writer, one of a live writer (this process) and
 * files that only look similar. Returns the name of the dead writer's file and the names that
 * must survive.
 */
async function plantFiles(folder: string, prefix: string): Promise<{ dead: string; kept: string[] }> {
  const dead = leftoverName(prefix, deadPid);
  const live = leftoverName(prefix, process.pid);
  const similar = [
    // another target's leftover, a longer prefix, extra or missing name parts, a non-UUID
    leftoverName(`${prefix}x`, deadPid),
    `${leftoverName(prefix, deadPid)}.bak`,
    `${prefix}.${deadPid}.tmp`,
    `${prefix}.${deadPid}.not-a-uuid.tmp`,
    `${prefix}.0${deadPid}.${randomUUID()}.tmp`,
    `x${leftoverName(prefix, deadPid)}`,
    "notes.txt",
  ];
  for (const name of [dead, live, ...similar]) await writeLeftover(join(folder, name));
  // A directory and a symbolic link with a matching name are not files a writer leaves.
  const directory = leftoverName(prefix, deadPid);
  await mkdir(join(folder, directory));
  const link = leftoverName(prefix, deadPid);
  await symlink(join(folder, "notes.txt"), join(folder, link));
  return { dead, kept: [live, ...similar, directory, link] };
}

/** Checks that `folder` lost the dead writer's file and kept every other one, and returns its names. */
async function expectOnlyLeftoverRemoved(folder: string, dead: string, kept: readonly string[]): Promise<string[]> {
  const names = await readdir(folder);
  expect(names).not.toContain(dead);
  for (const name of kept) expect(names).toContain(name);
  return names;
}

function isDeadPid(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}

describe("leftover temporary files", () => {
  it("uses a pid that no process has", () => {
    expect(isDeadPid(deadPid)).toBe(true);
  });

  it("convert removes a dead writer's leftover only", async () => {
    const folder = join(workDir, "convert");
    await mkdir(folder);
    const output = join(folder, "geb-tiny.gguf");
    const { dead, kept } = await plantFiles(folder, `.${basename(output)}`);

    const result = await convertModel(GEB_TINY_DIR, output, { type: "f16" });

    expect(result.removedTemporaryFiles).toEqual([join(folder, dead)]);
    const names = await expectOnlyLeftoverRemoved(folder, dead, kept);
    expect(names).toContain(basename(output));
    expect(names.length).toBe(kept.length + 1);
  });

  it("convert keeps a dead pid's file written to within STALE_AFTER_MS", async () => {
    // A writer in another pid namespace looks dead here but keeps writing its file.
    const folder = join(workDir, "convert-recent");
    await mkdir(folder);
    const output = join(folder, "out.gguf");
    const recent = leftoverName(`.${basename(output)}`, deadPid);
    await writeFile(join(folder, recent), "partial");

    const result = await convertModel(GEB_TINY_DIR, output, { type: "f16" });

    expect(result.removedTemporaryFiles).toEqual([]);
    expect((await readdir(folder)).sort()).toEqual([recent, "out.gguf"].sort());
  });

  it("convert without leftovers removes nothing", async () => {
    const folder = join(workDir, "convert-clean");
    await mkdir(folder);
    const result = await convertModel(GEB_TINY_DIR, join(folder, "out.gguf"), { type: "f16" });
    expect(result.removedTemporaryFiles).toEqual([]);
    expect(await readdir(folder)).toEqual(["out.gguf"]);
  });

  it("convert-at-load removes a dead writer's leftover only", async () => {
    const cacheDir = join(workDir, "cache");
    const { plan } = await openModelFiles(GEB_TINY_DIR);
    const first = await quantizePlan(plan, { weightType: "q8_0", cacheDir });
    expect(first.removedTemporaryFiles).toEqual([]);
    const cacheFile = first.cacheFile!;

    // Without the cache file, the next load writes it again.
    await rm(cacheFile);
    const { dead, kept } = await plantFiles(cacheDir, basename(cacheFile));
    const second = await quantizePlan(plan, { weightType: "q8_0", cacheDir });

    expect(second.reused).toBe(false);
    expect(second.removedTemporaryFiles).toEqual([join(cacheDir, dead)]);
    const names = await expectOnlyLeftoverRemoved(cacheDir, dead, kept);
    expect(names).toContain(basename(cacheFile));
  });

  it("convert-at-load reusing its file removes leftovers", async () => {
    const cacheDir = join(workDir, "cache-reuse");
    const { plan } = await openModelFiles(GEB_TINY_DIR);
    const first = await quantizePlan(plan, { weightType: "q4_0", cacheDir });
    const { dead, kept } = await plantFiles(cacheDir, basename(first.cacheFile!));

    // The cache file is valid, so nothing is written, but a killed writer's file still goes.
    const second = await quantizePlan(plan, { weightType: "q4_0", cacheDir });
    expect(second.reused).toBe(true);
    expect(second.removedTemporaryFiles).toEqual([join(cacheDir, dead)]);
    const names = await expectOnlyLeftoverRemoved(cacheDir, dead, kept);
    expect(names).toContain(basename(first.cacheFile!));

    const third = await quantizePlan(plan, { weightType: "q4_0", cacheDir });
    expect(third.removedTemporaryFiles).toEqual([]);
  });

  it("CLI convert prints one line per cleanup", async () => {
    const folder = join(workDir, "cli");
    await mkdir(folder);
    const output = join(folder, "out.gguf");
    const dead = leftoverName(`.${basename(output)}`, deadPid);
    await writeLeftover(join(folder, dead));
    let stderr = "";
    vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      stderr += String(chunk);
      return true;
    });

    expect(await convertCommand.run([GEB_TINY_DIR, output, "--type", "f16"])).toBe(0);
    expect(stderr).toBe(`geb-cpu: removed 1 temporary file left by an interrupted run: ${join(folder, dead)}\n`);

    stderr = "";
    expect(await convertCommand.run([GEB_TINY_DIR, output, "--type", "f16", "--force"])).toBe(0);
    expect(stderr).toBe("");
  });

  it("CLI load prints one line per cleanup", async () => {
    const saved = process.env.XDG_CACHE_HOME;
    const cacheDir = join(workDir, "xdg", "geb-cpu");
    process.env.XDG_CACHE_HOME = join(workDir, "xdg");
    let stderr = "";
    let leftover = "";
    try {
      const flags = { model: GEB_TINY_DIR, "weight-type": "q4_0", threads: "1", "context-size": "16" };
      await (await loadModelFromFlags(flags)).dispose();
      const [cacheName] = await readdir(cacheDir);
      await rm(join(cacheDir, cacheName!));
      leftover = join(cacheDir, leftoverName(cacheName!, deadPid));
      await writeLeftover(leftover);
      vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
        stderr += String(chunk);
        return true;
      });

      const model = await loadModelFromFlags(flags);
      expect(model.info().removedTemporaryFiles).toEqual([leftover]);
      await model.dispose();
    } finally {
      if (saved === undefined) delete process.env.XDG_CACHE_HOME;
      else process.env.XDG_CACHE_HOME = saved;
    }
    expect(stderr).toBe(`geb-cpu: removed 1 temporary file left by an interrupted run: ${leftover}\n`);
  });
});
