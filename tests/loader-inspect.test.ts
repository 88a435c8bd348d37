// `geb-cpu inspect`: reports for loadable models, vocabulary-only GGUFs and models the engine
// cannot run, text and JSON output, and exit codes.

import { readdirSync } from "node:fs";
import { join } from "node:path";

import { afterAll, describe, expect, it } from "vitest";

import { formatInspectReport, inspectModel } from "../lib/cli/inspect.js";
import { writeGguf } from "../lib/formats/gguf-writer.js";
import { GEB_TINY_DIR, LLAMA_TINY_F16_GGUF, STORIES260K_GGUF, TOKENIZER_SUITES_DIR } from "./fixtures.js";
import { makeTempDir, offsetOf, patchFile, runInspect } from "./loader-helpers.js";
import { openModelFiles } from "../lib/model/load-plan.js";

const temp = makeTempDir("inspect");
afterAll(() => temp.remove());

describe("inspectModel", () => {
  it("summarizes llama-tiny-f16", async () => {
    const report = await inspectModel(LLAMA_TINY_F16_GGUF);
    expect(report.format).toBe("gguf");
    expect(report.loadError).toBeUndefined();
    expect(report.info?.tensorTypes).toEqual({ F16: 30, F32: 9 });
    expect(report.tensors).toHaveLength(39);
    expect(report.tensors[0]).toMatchObject({ name: "token_embd.weight", type: "F16", dims: [256, 4000], nbytes: 2_048_000 });
    const tokens = report.metadata.find((m) => m.key === "tokenizer.ggml.tokens");
    expect(tokens?.length).toBe(4000);
    expect((tokens?.value as string[]).length).toBe(8);
  });

  it("summarizes the geb-tiny directory", async () => {
    const report = await inspectModel(GEB_TINY_DIR);
    expect(report.format).toBe("geb");
    expect(report.info?.architecture).toBe("geb");
    expect(report.tensors).toHaveLength(31);
    expect(report.metadata.find((m) => m.key === "num_layers")?.value).toBe(4);
    const text = formatInspectReport(report);
    expect(text).toContain("loadable: yes");
    expect(text).toContain("transformer.encoder.layers.0.self_attention.key_value.weight");
    expect(text).toContain("kv heads 2");
  });

  const vocabFiles = readdirSync(TOKENIZER_SUITES_DIR).filter((f) => f.endsWith(".gguf"));
  it.each(vocabFiles)("inspects vocabulary-only %s cleanly", async (file) => {
    const report = await inspectModel(join(TOKENIZER_SUITES_DIR, file));
    expect(report.tensors).toHaveLength(0);
    expect(report.loadError?.code).toBe("ERR_GEB_MODEL_FORMAT");
    expect(report.loadError?.message).toMatch(/contains no weights/);
    expect(report.metadata.some((m) => m.key === "tokenizer.ggml.tokens")).toBe(true);
  });

  it("lists tensors of types the engine cannot run", async () => {
    const path = join(temp.dir, "kquant.gguf");
    await writeGguf(path, {
      metadata: [["general.architecture", { type: "string", value: "llama" }]],
      tensors: [
        { name: "token_embd.weight", type: "Q6_K", ne: [256, 4] },
        { name: "output.weight", type: "IQ4_XS", ne: [256, 4] },
      ],
    });
    const report = await inspectModel(path);
    expect(report.tensors.map((t) => [t.type, t.nbytes])).toEqual([
      ["Q6_K", 4 * 210],
      ["IQ4_XS", 4 * 136],
    ]);
    expect(report.loadError?.code).toBeDefined();
    expect(formatInspectReport(report)).toContain("loadable: no");
  });

  it("marks a model with an unusable vocabulary as not loadable", async () => {
    const path = join(temp.dir, "bogus-vocab.gguf");
    await patchFile(STORIES260K_GGUF, path, (bytes) => {
      const key = offsetOf(bytes, "tokenizer.ggml.model");
      // Key, then a u32 value type and a u64 string length, then the 5-byte value "llama".
      const value = key + "tokenizer.ggml.model".length + 4 + 8;
      expect(bytes.toString("utf8", value, value + 5)).toBe("llama");
      bytes.write("bogus", value, "utf8");
    });
    await expect(openModelFiles(path)).resolves.toBeDefined();
    const report = await inspectModel(path);
    expect(report.loadError?.code).toBe("ERR_GEB_UNSUPPORTED");
    expect(report.loadError?.message).toContain("bogus");
    expect(formatInspectReport(report)).toContain("loadable: no");
  });

  it("keeps 64-bit values JSON-safe", async () => {
    const path = join(temp.dir, "u64.gguf");
    await writeGguf(path, { metadata: [["general.parameter_count", { type: "u64", value: 2n ** 60n }]], tensors: [] });
    const report = await inspectModel(path);
    expect(report.metadata[0]).toMatchObject({ key: "general.parameter_count", type: "u64", value: "1152921504606846976" });
  });
});

describe("inspect command", () => {
  it("prints text", async () => {
    const { code, stdout } = await runInspect([STORIES260K_GGUF]);
    expect(code).toBe(0);
    expect(stdout).toContain("loadable: yes");
    expect(stdout).toContain("tied output true");
    expect(stdout).toMatch(/blk\.4\.ffn_down\.weight\s+F32\s+\[172, 64\]/);
  });

  it("prints JSON", async () => {
    const { code, stdout } = await runInspect([STORIES260K_GGUF, "--json"]);
    expect(code).toBe(0);
    const parsed = JSON.parse(stdout);
    expect(parsed.info.layers).toBe(5);
    expect(parsed.tensors).toHaveLength(47);
  });

  it("exits 1 with the code on a corrupt file", async () => {
    const { code, stderr } = await runInspect([join(GEB_TINY_DIR, "config.json")]);
    expect(code).toBe(1);
    expect(stderr).toContain("ERR_GEB_MODEL_FORMAT");
  });

  it("exits 2 on usage errors", async () => {
    expect((await runInspect([])).code).toBe(2);
    expect((await runInspect(["a", "b"])).code).toBe(2);
    expect((await runInspect(["--nope", "a"])).code).toBe(2);
  });

  it("prints help", async () => {
    const { code, stdout } = await runInspect(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("Usage: geb-cpu inspect");
  });
});
