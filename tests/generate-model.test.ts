// End-to-end generation through the public Model API on the tiny fixture models: greedy
// continuations against the PyTorch and llama.cpp references on every kernel tier this CPU has,
// held-out perplexity through evaluate(), and the F16 file against its own reference.

import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "../lib/model.js";
import { cpuInfo } from "../lib/native.js";
import { GEB_TINY_DIR, LLAMA_TINY_DIR, LLAMA_TINY_F16_GGUF, LLAMA_TINY_GGUF, STORIES260K_DIR, STORIES260K_GGUF } from "./fixtures.js";

/** The F32 kernel tiers the greedy tests run on, where this CPU supports them. */
const TIERS = cpuInfo().tiers.filter((tier: string) => ["scalar", "avx2", "avx512", "neon"].includes(tier));
const GREEDY = { temperature: 0, repetitionPenalty: 1, ignoreEos: true } as const;

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (const v of row) if (v > max) max = v;
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return max + Math.log(sum);
}

/** Top-1 minus top-2 of one logits row. */
function margin(row: Float32Array): number {
  let first = -Infinity;
  let second = -Infinity;
  for (const v of row) {
    if (v > first) {
      second = first;
      first = v;
    } else if (v > second) second = v;
  }
  return first - second;
}

/** Number of leading steps to compare: up to (not including) the first step with a margin below `limit`. */
function trustedSteps(margins: number[], limit: number, end = margins.length): number {
  const low = margins.findIndex((m) => m < limit);
  return Math.min(low < 0 ? margins.length : low, end);
}

interface GebReference {
  prompts: Array<{ name: string; prompt_ids: number[]; greedy: { ids: number[]; top1_minus_top2: number[] } }>;
  eval_perplexity: { eval_ids: number[]; window: number; ppl: number };
}

interface LlamaReference {
  prompts: Array<{
    name: string;
    prompt_ids: number[];
    greedy: { ids: number[]; top1_minus_top2: number[]; first_eos_index: number | null };
  }>;
  f16: { prompts: Array<{ name: string; greedy_ids: number[]; greedy_top1_minus_top2: number[] }> };
  eval_perplexity: { eval_ids: number[]; window: number; ppl: number };
}

interface StoriesReference {
  results: Array<{ prompt: string; prompt_ids: number[]; greedy_ids: number[] }>;
}

/** exp(mean next-token NLL) over windows evaluated independently from position 0. */
async function perplexity(model: Model, ids: number[], window: number): Promise<number> {
  let nll = 0;
  let count = 0;
  for (let start = 0; start + window <= ids.length; start += window) {
    const tokens = ids.slice(start, start + window);
    const rows = await model.evaluate(tokens);
    for (let i = 0; i + 1 < tokens.length; i++) {
      nll -= rows[i]![tokens[i + 1]!]! - logSumExp(rows[i]!);
      count++;
    }
  }
  return Math.exp(nll / count);
}

it("finds at least the scalar tier", () => {
  expect(TIERS).toContain("scalar");
});

describe.each(TIERS)("geb-tiny on tier %s", (tier) => {
  const reference = readJson<GebReference>(`${GEB_TINY_DIR}/reference.json`);
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(GEB_TINY_DIR, { tier, threads: 1 });
  });
  afterAll(() => model?.dispose());

  for (const prompt of reference.prompts) {
    it(`greedy continuation of ${prompt.name} matches PyTorch`, async () => {
      const result = await model.generate(prompt.prompt_ids, { ...GREEDY, maxTokens: 32 });
      const steps = trustedSteps(prompt.greedy.top1_minus_top2, 1e-3);
      expect(steps).toBeGreaterThan(0);
      expect(result.tokens.slice(0, steps)).toEqual(prompt.greedy.ids.slice(0, steps));
      expect(result.tokens.length).toBe(32);
      expect(result.finishReason).toBe("length");
    });
  }

});

describe.each(TIERS)("llama-tiny on tier %s", (tier) => {
  const reference = readJson<LlamaReference>(`${LLAMA_TINY_DIR}/reference.json`);
  let f32: Model;
  let f16: Model;
  beforeAll(async () => {
    f32 = await loadModel(LLAMA_TINY_GGUF, { tier, threads: 1 });
    f16 = await loadModel(LLAMA_TINY_F16_GGUF, { tier, threads: 1 });
  });
  afterAll(async () => {
    await f32?.dispose();
    await f16?.dispose();
  });

  for (const prompt of reference.prompts) {
    it(`greedy ${prompt.name} matches PyTorch up to the first </s> (F32 file)`, async () => {
      const { ids, top1_minus_top2, first_eos_index } = prompt.greedy;
      const result = await f32.generate(prompt.prompt_ids, { ...GREEDY, maxTokens: 32 });
      const steps = trustedSteps(top1_minus_top2, 1e-3, first_eos_index === null ? ids.length : first_eos_index + 1);
      expect(steps).toBeGreaterThan(0);
      expect(result.tokens.slice(0, steps)).toEqual(ids.slice(0, steps));
    });

    it(`greedy ${prompt.name} matches PyTorch on F16 weights (F16 file)`, async () => {
      const ref = reference.f16.prompts.find((p) => p.name === prompt.name)!;
      const result = await f16.generate(prompt.prompt_ids, { ...GREEDY, maxTokens: 32 });
      const eos = ref.greedy_ids.indexOf(2);
      const steps = trustedSteps(ref.greedy_top1_minus_top2, 1e-3, eos < 0 ? ref.greedy_ids.length : eos + 1);
      expect(steps).toBeGreaterThan(0);
      expect(result.tokens.slice(0, steps)).toEqual(ref.greedy_ids.slice(0, steps));
    });
  }

});

// Perplexity runs 2048 tokens per model, so it runs once, on the default (best) tier. The
// engine tests compare the kernel tiers with each other.
describe("held-out perplexity on the default tier", () => {
  const cases: Array<[string, string, string]> = [
    ["geb-tiny", GEB_TINY_DIR, `${GEB_TINY_DIR}/reference.json`],
    ["llama-tiny", LLAMA_TINY_GGUF, `${LLAMA_TINY_DIR}/reference.json`],
  ];
  for (const [name, path, referencePath] of cases) {
    it(`${name} is within 0.5% of PyTorch`, async () => {
      const { eval_ids, window, ppl } = readJson<GebReference>(referencePath).eval_perplexity;
      const model = await loadModel(path, { threads: 1 });
      try {
        const ours = await perplexity(model, eval_ids, window);
        expect(Math.abs(ours / ppl - 1)).toBeLessThan(0.005);
      } finally {
        await model.dispose();
      }
    });
  }
});

describe.each(TIERS)("stories260K on tier %s", (tier) => {
  const reference = readJson<StoriesReference>(`${STORIES260K_DIR}/reference.json`);
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(STORIES260K_GGUF, { tier, threads: 1 });
  });
  afterAll(() => model?.dispose());

  const compared: number[] = [];

  it("has six prompts", () => expect(reference.results.length).toBe(6));

  for (const [index, entry] of reference.results.entries()) {
    it(`greedy prompt ${index} (${JSON.stringify(entry.prompt)}) matches llama.cpp`, async () => {
      const result = await model.generate(entry.prompt_ids, { ...GREEDY, maxTokens: 64 });
      expect(result.tokens.length).toBe(64);
      // Our own margins decide where a legitimate divergence may start.
      const rows = await model.evaluate([...entry.prompt_ids, ...result.tokens.slice(0, -1)]);
      const margins = result.tokens.map((_, i) => margin(rows[entry.prompt_ids.length - 1 + i]!));
      const steps = trustedSteps(margins, 0.05);
      compared.push(steps);
      expect(result.tokens.slice(0, steps)).toEqual(entry.greedy_ids.slice(0, steps));
    });
  }

  it("compared a meaningful number of steps", () => {
    // Guards against every prompt stopping at step 0 because of a low margin.
    expect(compared.length).toBe(6);
    expect(compared.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(32);
  });
});
