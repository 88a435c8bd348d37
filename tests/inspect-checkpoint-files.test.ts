// `geb-cpu inspect` on the files of a GEB checkpoint instead of its folder (its error names the
// folder to pass, as loading does), and on GEB folders whose config.json is missing or invalid.

import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { afterAll, describe, expect, it } from "vitest";

import { inspectModel } from "../lib/cli/inspect.js";
import { GEB_TINY_DIR } from "./fixtures.js";
import { makeTempDir, runInspect } from "./loader-helpers.js";

const temp = makeTempDir("inspect-files");
afterAll(() => temp.remove());

/** Copies geb-tiny's model files into a new folder, with config.json changed by `edit`. */
async function gebCopy(name: string, edit: (config: Record<string, unknown>) => Record<string, unknown> | undefined): Promise<string> {
  const dir = join(temp.dir, name);
  await mkdir(dir);
  for (const file of ["model.safetensors", "GEBtokenizer.model", "tokenizer_config.json"]) await copyFile(join(GEB_TINY_DIR, file), join(dir, file));
  const config = edit(JSON.parse(await readFile(join(GEB_TINY_DIR, "config.json"), "utf8")) as Record<string, unknown>);
  if (config !== undefined) await writeFile(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

describe("inspect on checkpoint files", () => {
  for (const file of ["model.safetensors", "config.json"]) {
    it(`asks for the folder of ${file}`, async () => {
      const path = join(GEB_TINY_DIR, file);
      const { code, stdout, stderr } = await runInspect([path]);
      expect(code).toBe(1);
      expect(stdout).toBe("");
      expect(stderr).toBe(`geb-cpu: ${path} is part of a GEB checkpoint; pass the directory that contains it, not the file. (ERR_GEB_MODEL_FORMAT)\n`);
      await expect(inspectModel(path)).rejects.toMatchObject({ code: "ERR_GEB_MODEL_FORMAT", expected: GEB_TINY_DIR });
    });
  }

  it("reports a missing safetensors path as missing", async () => {
    const { code, stderr } = await runInspect([join(temp.dir, "absent.safetensors")]);
    expect(code).toBe(1);
    expect(stderr).toContain("does not exist");
    expect(stderr).toContain("(ERR_GEB_IO)");
  });
});

describe("inspect on GEB folders", () => {
  it("lists a config with a null size", async () => {
    const dir = await gebCopy("null-layers", (config) => ({ ...config, num_layers: null }));
    const report = await inspectModel(dir);
    expect(report.format).toBe("geb");
    expect(report.info).toBeUndefined();
    expect(report.loadError?.code).toBe("ERR_GEB_MODEL_FORMAT");
    expect(report.loadError?.message).toContain('"num_layers" is null');
    expect(report.metadata.find((entry) => entry.key === "num_layers")).toEqual({ key: "num_layers", type: "null", value: null });
    expect(report.tensors).toHaveLength(31);
  });

  it("rejects a folder without config.json", async () => {
    const dir = await gebCopy("no-config", () => undefined);
    await expect(inspectModel(dir)).rejects.toMatchObject({ code: "ERR_GEB_MODEL_FORMAT", message: expect.stringMatching(/has no config\.json/) });
  });

  it("rejects a config that is not an object", async () => {
    const dir = await gebCopy("array-config", () => undefined);
    await writeFile(join(dir, "config.json"), "[1, 2]");
    await expect(inspectModel(dir)).rejects.toMatchObject({ code: "ERR_GEB_MODEL_FORMAT", message: expect.stringMatching(/must contain a JSON object/) });
    await writeFile(join(dir, "config.json"), "{ not json");
    await expect(inspectModel(dir)).rejects.toMatchObject({ code: "ERR_GEB_MODEL_FORMAT", message: expect.stringMatching(/not valid JSON/) });
  });
});
