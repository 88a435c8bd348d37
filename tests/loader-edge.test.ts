// Quantize-at-load under concurrency and abort. Several loads of one model in one process write
// the same cache file at the same time: each must succeed, and the file they leave must equal the
// one a single load writes. An abort during quantization stops it and leaves no file behind.

import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { quantizePlan } from "../lib/formats/quantize.js";
import { loadModel } from "../lib/model.js";
import { openModelFiles } from "../lib/model/load-plan.js";
import { GEB_TINY_DIR, LLAMA_TINY_GGUF } from "./fixtures.js";

describe("quantizePlan run concurrently", () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "geb-quant-race-"));
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  for (const [name, modelPath] of [
    ["geb-tiny", GEB_TINY_DIR],
    ["llama-tiny", LLAMA_TINY_GGUF],
  ] as const) {
    it(`writes one correct cache file for ${name}`, async () => {
      const { plan } = await openModelFiles(modelPath);
      const single = join(root, `${name}-single`);
      const shared = join(root, `${name}-shared`);
      const reference = await quantizePlan(plan, { weightType: "q4_0", cacheDir: single });

      const results = await Promise.allSettled([0, 1, 2, 3].map(() => quantizePlan(plan, { weightType: "q4_0", cacheDir: shared })));
      for (const result of results) expect(result.status).toBe("fulfilled");

      // Only the finished cache file is left: no temporary files.
      const files = await readdir(shared);
      expect(files).toHaveLength(1);
      const written = await readFile(join(shared, files[0]!));
      expect(written.equals(await readFile(reference.cacheFile!))).toBe(true);
    });
  }
});

describe("quantize-at-load abort", () => {
  let cacheDir: string;
  beforeAll(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), "geb-quant-abort-"));
  });
  afterAll(() => rm(cacheDir, { recursive: true, force: true }));

  it("stops quantizing and leaves no cache file", async () => {
    const controller = new AbortController();
    let quantizeEvents = 0;
    const loading = loadModel(LLAMA_TINY_GGUF, {
      weightType: "q8_0",
      cacheDir,
      signal: controller.signal,
      onProgress: (progress) => {
        if (progress.phase !== "quantize") return;
        quantizeEvents++;
        controller.abort();
      },
    });
    await expect(loading).rejects.toMatchObject({ code: "ERR_GEB_ABORTED" });
    // llama-tiny has about 30 matrices to quantize; the abort after the first one ends the pass.
    expect(quantizeEvents).toBe(1);
    expect(await readdir(cacheDir)).toEqual([]);
  });
});
