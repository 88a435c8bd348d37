// Tests of how forward steps are run: the engine's step thread and thread pool. Logits must not
// depend on the thread count or on whether the threads slept between steps, and the step thread
// must keep the process alive while a step runs but not while the engine is idle.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Engine } from "../lib/engine.js";
import { openModelFiles } from "../lib/model/load-plan.js";
import type { ModelPlan } from "../lib/model/plan.js";
import { bindingPath } from "../lib/native.js";
import { LLAMA_TINY_GGUF } from "./fixtures.js";

let plan: ModelPlan;
let workDir: string;

beforeAll(async () => {
  plan = (await openModelFiles(LLAMA_TINY_GGUF)).plan;
  workDir = mkdtempSync(path.join(tmpdir(), "geb-step-"));
});

afterAll(() => {
  rmSync(workDir, { recursive: true, force: true });
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// Decodes `steps` tokens greedily after a 5-token prompt and returns the logits of every step.
// With `pauses`, every third step waits 3 ms first, long enough for the step thread and the pool
// workers to stop polling and sleep, so the wake-up path runs too.
async function decode(threads: number, steps: number, pauses: boolean): Promise<Float32Array[]> {
  const engine = await Engine.create(plan, { threads, contextSize: 64 });
  try {
    const prompt = [1, 450, 2046, 310, 3999];
    const n = prompt.length;
    let logits = await engine.forward(new Int32Array(n), Int32Array.from(prompt, (_, i) => i), Int32Array.from(prompt), Uint8Array.from(prompt, (_, i) => (i === n - 1 ? 1 : 0)));
    const rows = [logits];
    for (let step = 0; step < steps; step++) {
      if (pauses && step % 3 === 0) await sleep(3);
      let token = 0;
      for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[token]!) token = i;
      logits = await engine.forward(Int32Array.of(0), Int32Array.of(n + step), Int32Array.of(token), Uint8Array.of(1));
      rows.push(logits);
    }
    return rows;
  } finally {
    await engine.dispose();
  }
}

describe("forward steps across threads", () => {
  // Each output row and each attention head is computed by exactly one thread, in the same order
  // whatever the thread count, so the logits are bit-for-bit equal.
  it("logits identical across thread counts", async () => {
    const reference = await decode(1, 24, false);
    for (const [threads, pauses] of [
      [2, false],
      [2, true],
      [3, true],
    ] as const) {
      const rows = await decode(threads, 24, pauses);
      expect(rows.length).toBe(reference.length);
      for (let i = 0; i < rows.length; i++) {
        expect(Buffer.from(rows[i]!.buffer).equals(Buffer.from(reference[i]!.buffer)), `threads=${threads} pauses=${pauses} step ${i}`).toBe(true);
      }
    }
  });
});

describe("process lifetime", () => {
  // Runs an ESM script in a child node process that loads the addon directly.
  function runChild(source: string): { status: number | null; out: string } {
    const script = path.join(workDir, `child-${Math.random().toString(36).slice(2)}.mjs`);
    const planFile = path.join(workDir, "plan.json");
    writeFileSync(planFile, JSON.stringify(plan));
    writeFileSync(
      script,
      `import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
const addon = createRequire(import.meta.url)(process.argv[2]);
const plan = JSON.parse(readFileSync(process.argv[3], "utf8"));
const engine = new addon.Engine(plan, { threads: 2, tier: addon.bestTier(), kvType: "f32", nSeqMax: 1, contextSize: 64 });
const step = () => engine.forward(Int32Array.of(0), Int32Array.of(0), Int32Array.of(1), Uint8Array.of(1));
${source}`,
    );
    const result = spawnSync(process.execPath, [script, bindingPath(), planFile], { encoding: "utf8", timeout: 30_000 });
    return { status: result.status, out: `${result.stdout}${result.stderr}${result.signal ? ` signal ${result.signal}` : ""}` };
  }

  it("keeps the process alive until a step that nothing awaits settles", () => {
    const { status, out } = runChild(`step().then((logits) => console.log("settled", logits.length));`);
    expect(out).toContain("settled 4000");
    expect(status).toBe(0);
  });

  it("lets the process exit while an engine that was never disposed is idle", () => {
    const { status, out } = runChild(`console.log("steps", (await step()).length, (await step().catch((e) => e.code)));`);
    // the second step is at position 0 again, which the cache already contains
    expect(out).toContain("steps 4000 ERR_GEB_INVALID_ARGUMENT");
    expect(status).toBe(0);
  });
});
