// Full-size GEB-1.3B stand-in. It writes a 2.7 GB directory of random BF16 weights with the
// published config.json and the ChatGLM3 tokenizer. Opening it must read headers only, so the
// process does not grow by the file's size, and the engine must map the weights, not copy them.
// Run with `npm run test:large`. It needs about 3 GB of free disk and takes a few minutes.

import { rmSync } from "node:fs";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Engine } from "../../lib/engine.js";
import { openModelFiles } from "../../lib/model/load-plan.js";
import { writeRandomCheckpoint } from "../../lib/tools/random-checkpoint.js";
import { GEB_1_3B_DIR, sharedPath } from "../fixtures.js";

const MIB = 1024 * 1024;

describe("GEB-1.3B full-size checkpoint", () => {
  let dir: string;
  let seconds: number;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "geb-1.3b-large-"));
    const config = JSON.parse(await readFile(join(GEB_1_3B_DIR, "config.json"), "utf8"));
    const started = performance.now();
    await writeRandomCheckpoint({
      config,
      out: dir,
      format: "geb",
      seed: 1,
      tokenizerModel: sharedPath("tokenizer-suites", "chatglm3", "tokenizer.model"),
    });
    seconds = (performance.now() - started) / 1000;
  });
  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("opens with matching info and without reading weights", async () => {
    const rssBefore = process.memoryUsage().rss;
    const { plan, info } = await openModelFiles(dir);
    const growth = process.memoryUsage().rss - rssBefore;
    console.log(`wrote ${(info.fileSize / 1e9).toFixed(2)} GB in ${seconds.toFixed(1)} s; open took ${info.loadTimeMs.toFixed(1)} ms, RSS +${(growth / MIB).toFixed(1)} MiB`);

    expect(info).toMatchObject({
      architecture: "geb",
      layers: 24,
      embeddingSize: 2048,
      heads: 16,
      kvHeads: 4,
      headDim: 128,
      ffnSize: 5632,
      vocabSize: 64896,
      contextLength: 4096,
      ropeDim: 64,
      tensorTypes: { BF16: 171 },
      parameterCount: 1_348_044_800,
    });
    expect(info.fileSize).toBeGreaterThan(2.69e9);
    expect(plan.tensors).toHaveLength(24 * 9 + 3);
    expect(growth).toBeLessThan(64 * MIB);
  });

  it("creates the engine without copying the weights", async () => {
    const { plan, info } = await openModelFiles(dir);
    const rssBefore = process.memoryUsage().rss;
    const engine = await Engine.create(plan, { threads: 2, contextSize: 64 });
    try {
      const growth = process.memoryUsage().rss - rssBefore;
      console.log(`engine created: RSS +${(growth / MIB).toFixed(1)} MiB for a ${(info.fileSize / MIB).toFixed(0)} MiB checkpoint`);
      expect(growth).toBeLessThan(info.fileSize / 4);

      // First use touches the weights; the logits must be finite.
      const logits = await engine.forward(Int32Array.of(0), Int32Array.of(0), Int32Array.of(64790), Uint8Array.of(1));
      expect(logits.length).toBe(64896);
      expect(logits.every((x) => Number.isFinite(x))).toBe(true);
    } finally {
      await engine.dispose();
    }
  });

  it("writes and opens the same shapes as a Q8_0 GGUF", async () => {
    const path = join(dir, "geb-1.3b-random-q8_0.gguf");
    const config = JSON.parse(await readFile(join(GEB_1_3B_DIR, "config.json"), "utf8"));
    const started = performance.now();
    await writeRandomCheckpoint({
      config,
      out: path,
      format: "gguf",
      type: "q8_0",
      seed: 1,
      tokenizerModel: sharedPath("tokenizer-suites", "chatglm3", "tokenizer.model"),
    });
    const rssBefore = process.memoryUsage().rss;
    const { plan, info } = await openModelFiles(path);
    const growth = process.memoryUsage().rss - rssBefore;
    console.log(`wrote ${(info.fileSize / 1e9).toFixed(2)} GB Q8_0 GGUF in ${((performance.now() - started) / 1000).toFixed(1)} s; RSS +${(growth / MIB).toFixed(1)} MiB`);

    expect(info).toMatchObject({
      architecture: "llama",
      layers: 24,
      heads: 16,
      kvHeads: 4,
      headDim: 128,
      ropeDim: 64,
      vocabSize: 64896,
      tensorTypes: { Q8_0: 24 * 7 + 2, F32: 24 * 2 + 1 },
      parameterCount: 1_348_044_800,
    });
    expect(plan.tensors.find((t) => t.name === "blk.0.attn_k")?.shape).toEqual([512, 2048]);
    expect(growth).toBeLessThan(64 * MIB);

    const engine = await Engine.create(plan, { threads: 2, contextSize: 64 });
    try {
      const logits = await engine.forward(Int32Array.of(0), Int32Array.of(0), Int32Array.of(64790), Uint8Array.of(1));
      expect(logits.every((x) => Number.isFinite(x))).toBe(true);
    } finally {
      await engine.dispose();
    }
  });
});
