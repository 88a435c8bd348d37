// Sampler tests that need no model: greedy ties, each truncation stage against a brute-force
// reference that sorts the whole vocabulary, penalties, logit bias, seeding and validation.

import { describe, expect, it } from "vitest";
import {
  GEB_SAMPLING_DEFAULTS,
  LLAMA_SAMPLING_DEFAULTS,
  Random,
  Sampler,
  argmax,
  logSumExp,
  resolveSampling,
  type SamplingOptions,
} from "../lib/generate/sampler.js";
import { InvalidArgumentError, ModelFormatError } from "../lib/errors.js";

function makeSampler(options: SamplingOptions, vocab: number): Sampler {
  return new Sampler(resolveSampling(options, LLAMA_SAMPLING_DEFAULTS, vocab), vocab);
}

function randomLogits(vocab: number, seed: number, scale = 4): Float32Array {
  const random = new Random(seed);
  const logits = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) logits[i] = (random.next() * 2 - 1) * scale;
  return logits;
}

/** Set of ids the stages keep, computed by sorting everything (the slow, obvious way). */
function referenceCandidates(logits: Float32Array, o: { temperature: number; topK: number; topP: number; minP: number }): Set<number> {
  let order = Array.from(logits, (l, id) => ({ id, l: l / o.temperature })).sort((a, b) => b.l - a.l || a.id - b.id);
  if (o.topK > 0) order = order.slice(0, o.topK);
  const max = order[0]!.l;
  const total = order.reduce((s, c) => s + Math.exp(c.l - max), 0);
  if (o.topP < 1) {
    let before = 0;
    let kept = order.length;
    for (let i = 0; i < order.length; i++) {
      if (i > 0 && before >= o.topP * total) {
        kept = i;
        break;
      }
      before += Math.exp(order[i]!.l - max);
    }
    order = order.slice(0, kept);
  }
  if (o.minP > 0) order = order.filter((c, i) => i === 0 || Math.exp(c.l - max) >= o.minP);
  return new Set(order.map((c) => c.id));
}

describe("greedy sampling", () => {
  it("picks the largest logit", () => {
    const logits = randomLogits(5000, 1);
    const sampler = makeSampler({ temperature: 0 }, 5000);
    expect(sampler.sample(logits, []).token).toBe(argmax(logits));
  });

  it("breaks ties toward the lowest id", () => {
    const logits = new Float32Array([0, 3, 1, 3, 3]);
    expect(makeSampler({ temperature: 0 }, 5).sample(logits, []).token).toBe(1);
  });

  it("reports the log-probability of the model's distribution", () => {
    const logits = randomLogits(300, 2);
    const { token, logprob } = makeSampler({ temperature: 0 }, 300).sample(logits, [], true);
    expect(logprob).toBeCloseTo(logits[token]! - logSumExp(logits), 5);
    expect(Number.isNaN(makeSampler({ temperature: 0 }, 300).sample(logits, []).logprob)).toBe(true);
  });

  // Without logprobs or penalties, greedy takes a one-pass path; with logprobs it runs every
  // stage. Both must pick the same token on rows with NaN, infinities and ties.
  it("picks the same token on the one-pass path as through the stages", () => {
    const rows = [
      [NaN, 1, 2, 2, NaN],
      [-Infinity, NaN, -5, -Infinity],
      [1, Infinity, 3, Infinity],
      [NaN, -Infinity, Infinity],
      [5, 5, 5],
    ].map((row) => Float32Array.from(row));
    rows.push(randomLogits(4000, 9));
    for (const row of rows) {
      const fast = makeSampler({ temperature: 0 }, row.length).sample(row, []);
      const staged = makeSampler({ temperature: 0 }, row.length).sample(row, [], true);
      expect(fast.token, `row ${Array.from(row.slice(0, 6)).join(",")}`).toBe(staged.token);
      expect(Number.isNaN(fast.logprob)).toBe(true);
    }
  });

  it("blames the model for a row of only -Infinity and NaN", () => {
    const row = Float32Array.from([-Infinity, NaN, -Infinity]);
    expect(() => makeSampler({ temperature: 0 }, 3).sample(row, [])).toThrow(ModelFormatError);
    expect(() => makeSampler({ temperature: 0 }, 3).sample(row, [], true)).toThrow(ModelFormatError);
    expect(() => makeSampler({ temperature: 0.8 }, 3).sample(row, [])).toThrow(ModelFormatError);
  });

  it("blames the settings when a finite row is banned away", () => {
    const row = Float32Array.from([1, 2, -Infinity]);
    const banned = makeSampler({ temperature: 0, logitBias: new Map([[0, -Infinity], [1, -Infinity]]) }, 3);
    expect(() => banned.sample(row, [])).toThrow(InvalidArgumentError);
  });
});

describe("truncation stages", () => {
  const cases: Array<{ temperature: number; topK: number; topP: number; minP: number }> = [
    { temperature: 1, topK: 5, topP: 1, minP: 0 },
    { temperature: 0.7, topK: 40, topP: 0.9, minP: 0 },
    { temperature: 0.3, topK: 5, topP: 0.5, minP: 0 },
    { temperature: 1, topK: 0, topP: 0.6, minP: 0 },
    { temperature: 2, topK: 0, topP: 0.95, minP: 0 },
    { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05 },
    { temperature: 1, topK: 0, topP: 1, minP: 0.2 },
  ];
  for (const c of cases) {
    it(`draws only reference candidates for ${JSON.stringify(c)}`, () => {
      const vocab = 2000;
      const logits = randomLogits(vocab, 7, 6);
      const allowed = referenceCandidates(logits, c);
      const sampler = makeSampler({ ...c, seed: 11 }, vocab);
      const seen = new Set<number>();
      for (let i = 0; i < 400; i++) {
        const { token } = sampler.sample(logits, []);
        expect(allowed.has(token)).toBe(true);
        seen.add(token);
      }
      // With hundreds of draws from a handful of candidates, most of them show up.
      if (allowed.size <= 5) expect(seen.size).toBe(allowed.size);
    });
  }

  it("matches the softmax frequencies with no truncation", () => {
    const logits = new Float32Array([0, Math.log(2), Math.log(3), -Infinity]);
    const sampler = makeSampler({ temperature: 1, topK: 0, topP: 1, minP: 0, seed: 5 }, 4);
    const counts = [0, 0, 0, 0];
    const n = 30000;
    for (let i = 0; i < n; i++) counts[sampler.sample(logits, []).token]!++;
    expect(counts[3]).toBe(0);
    expect(counts[0]! / n).toBeCloseTo(1 / 6, 1);
    expect(counts[1]! / n).toBeCloseTo(2 / 6, 1);
    expect(counts[2]! / n).toBeCloseTo(3 / 6, 1);
  });

  it("breaks top-p ties toward lower ids", () => {
    // Ten equal logits: top-p 0.5 keeps exactly the five lowest ids, with or without top-k.
    const logits = new Float32Array(10).fill(1.5);
    for (const topK of [0, 10 - 1]) {
      const sampler = makeSampler({ temperature: 1, topK, topP: 0.5, minP: 0, seed: 2 }, 10);
      const seen = new Set<number>();
      for (let i = 0; i < 300; i++) seen.add(sampler.sample(logits, []).token);
      expect([...seen].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4]);
    }
  });

  it("keeps only the top token at top-k 1", () => {
    const logits = randomLogits(1000, 3);
    const sampler = makeSampler({ temperature: 5, topK: 1, seed: 1 }, 1000);
    for (let i = 0; i < 50; i++) expect(sampler.sample(logits, []).token).toBe(argmax(logits));
  });
});

describe("penalties and bias", () => {
  it("applies Hugging Face repetition penalty by sign", () => {
    // Token 0 is positive and seen: 2 / 4 = 0.5. Token 1 is negative and seen: -1 * 4 = -4.
    // Token 2 (unseen, 1.0) then wins; without the penalty token 0 would.
    const logits = new Float32Array([2, -1, 1]);
    const penalised = makeSampler({ temperature: 0, repetitionPenalty: 4 }, 3);
    expect(penalised.sample(logits, [0, 1]).token).toBe(2);
    expect(makeSampler({ temperature: 0, repetitionPenalty: 1 }, 3).sample(logits, [0, 1]).token).toBe(0);
  });

  it("penalises only the last repeatLastN tokens", () => {
    const logits = new Float32Array([2, 1.5, 0]);
    const context = [0, 2, 2];
    expect(makeSampler({ temperature: 0, repetitionPenalty: 4, repeatLastN: 2 }, 3).sample(logits, context).token).toBe(0);
    expect(makeSampler({ temperature: 0, repetitionPenalty: 4 }, 3).sample(logits, context).token).toBe(1);
  });

  it("applies presence and frequency penalties per count", () => {
    const logits = new Float32Array([3, 2.5, 2]);
    // Token 0 seen twice: 3 - 0.2 - 2 * 0.5 = 1.8, below token 2's 2.
    const sampler = makeSampler({ temperature: 0, presencePenalty: 0.2, frequencyPenalty: 0.5 }, 3);
    const { token, logprob } = sampler.sample(logits, [0, 0, 1], true);
    expect(token).toBe(2);
    const adjusted = [1.8, 2.5 - 0.2 - 0.5, 2];
    expect(logprob).toBeCloseTo(2 - logSumExp(adjusted), 5);
  });

  it("adds logit bias from a Map or a Record, and -Infinity bans", () => {
    const logits = new Float32Array([1, 0, 0]);
    expect(makeSampler({ temperature: 0, logitBias: { 2: 5 } }, 3).sample(logits, []).token).toBe(2);
    expect(makeSampler({ temperature: 0, logitBias: new Map([[1, 2]]) }, 3).sample(logits, []).token).toBe(1);
    const banned = makeSampler({ temperature: 1, topK: 0, topP: 1, minP: 0, logitBias: { 0: -Infinity }, seed: 3 }, 3);
    for (let i = 0; i < 200; i++) expect(banned.sample(logits, []).token).not.toBe(0);
  });
});

describe("seeding", () => {
  it("gives the same tokens for the same seed", () => {
    const vocab = 4032;
    const rows = Array.from({ length: 20 }, (_, i) => randomLogits(vocab, 100 + i));
    const run = (seed: number): number[] => {
      const sampler = new Sampler(resolveSampling({ seed, temperature: 1 }, GEB_SAMPLING_DEFAULTS, vocab), vocab);
      const out: number[] = [];
      for (const row of rows) out.push(sampler.sample(row, out).token);
      return out;
    };
    expect(run(42)).toEqual(run(42));
    expect(run(42)).not.toEqual(run(43));
  });

  it("picks a random seed when none is given", () => {
    const a = resolveSampling({}, GEB_SAMPLING_DEFAULTS, 10).seed;
    const b = resolveSampling({}, GEB_SAMPLING_DEFAULTS, 10).seed;
    expect(Number.isSafeInteger(a)).toBe(true);
    expect(a).not.toBe(b);
  });

  it("produces uniform doubles in [0, 1)", () => {
    const random = new Random(9);
    let sum = 0;
    for (let i = 0; i < 10000; i++) {
      const x = random.next();
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
      sum += x;
    }
    expect(sum / 10000).toBeCloseTo(0.5, 1);
  });
});

describe("sampling option validation", () => {
  const bad: Array<[string, SamplingOptions]> = [
    ["temperature", { temperature: -0.1 }],
    ["temperature", { temperature: NaN }],
    ["topK", { topK: 1.5 }],
    ["topK", { topK: -1 }],
    ["topP", { topP: 0 }],
    ["topP", { topP: 1.01 }],
    ["minP", { minP: 2 }],
    ["repetitionPenalty", { repetitionPenalty: 0 }],
    ["repeatLastN", { repeatLastN: 0 }],
    ["seed", { seed: -1 }],
    ["seed", { seed: "7" as unknown as number }],
    ["logitBias", { logitBias: { 99: 1 } }],
    ["logitBias", { logitBias: { 1: NaN } }],
    ["logitBias", { logitBias: [1, 2] as unknown as Record<number, number> }],
  ];
  for (const [name, options] of bad) {
    it(`rejects ${name} = ${String(Object.values(options)[0])}`, () => {
      try {
        resolveSampling(options, LLAMA_SAMPLING_DEFAULTS, 10);
        expect.unreachable("resolveSampling accepted an invalid option");
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidArgumentError);
        expect((error as InvalidArgumentError).code).toBe("ERR_GEB_INVALID_ARGUMENT");
        expect((error as Error).message).toContain(name);
      }
    });
  }

  it("fills in family defaults", () => {
    const geb = resolveSampling({}, GEB_SAMPLING_DEFAULTS, 10);
    expect([geb.temperature, geb.topK, geb.topP, geb.repetitionPenalty]).toEqual([0.3, 5, 0.5, 1.15]);
    const llama = resolveSampling({ topK: 0 }, LLAMA_SAMPLING_DEFAULTS, 10);
    expect([llama.temperature, llama.topK, llama.topP, llama.minP]).toEqual([0.8, 0, 0.95, 0.05]);
  });
});
