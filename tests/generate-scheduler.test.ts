// The generation loop, batch scheduler, slots and text streams driven by a fake engine, so
// concurrency, abort and dispose paths are checked exactly, without the native addon.
// The fake model always predicts (last token + 1) mod V, and the fake engine checks that every
// step continues its sequence's cache where it ended, as the real KV cache requires.

import { describe, expect, it } from "vitest";
import { DisposedError, ContextOverflowError } from "../lib/errors.js";
import { runGeneration, type GenerationContext, type GenerationSettings } from "../lib/generate/generation.js";
import { LLAMA_SAMPLING_DEFAULTS, resolveSampling } from "../lib/generate/sampler.js";
import { BatchScheduler, type ForwardEngine } from "../lib/generate/scheduler.js";
import { SlotPool } from "../lib/generate/slots.js";
import { resolveStop } from "../lib/generate/stop.js";
import { createTextStream } from "../lib/generate/text-stream.js";

const V = 26;

class FakeEngine implements ForwardEngine {
  cacheLength = new Map<number, number>();
  batches: number[][] = [];
  stepMs: number;
  constructor(stepMs = 1) {
    this.stepMs = stepMs;
  }

  async forward(seqIds: Int32Array, positions: Int32Array, tokens: Int32Array, wants: Uint8Array, abortFlag?: Int32Array) {
    this.batches.push([...new Set(seqIds)]);
    for (let i = 0; i < seqIds.length; i++) {
      const seq = seqIds[i]!;
      const expected = this.cacheLength.get(seq) ?? 0;
      if (positions[i] !== expected) throw new Error(`seq ${seq}: position ${positions[i]} but cache holds ${expected}`);
      this.cacheLength.set(seq, expected + 1);
    }
    // Long steps poll the abort flag, as the native engine does between layers.
    for (let t = 0; t < this.stepMs; t++) {
      await new Promise((r) => setTimeout(r, 1));
      if (abortFlag !== undefined && Atomics.load(abortFlag, 0) !== 0) {
        throw Object.assign(new Error("aborted"), { code: "ERR_GEB_ABORTED" });
      }
    }
    const rows: number[] = [];
    for (let i = 0; i < tokens.length; i++) if (wants[i]) rows.push(tokens[i]!);
    const out = new Float32Array(rows.length * V);
    rows.forEach((t, r) => (out[r * V + ((t + 1) % V)] = 10));
    return out;
  }
  truncateSequence(seq: number, nKeep: number) {
    this.cacheLength.set(seq, Math.min(nKeep, this.cacheLength.get(seq) ?? 0));
  }
  clearSequence(seq: number) {
    this.cacheLength.set(seq, 0);
  }
  shiftSequence(seq: number, nKeep: number, nDiscard: number) {
    this.cacheLength.set(seq, (this.cacheLength.get(seq) ?? 0) - nDiscard);
    expect(nKeep).toBeGreaterThanOrEqual(0);
  }
}

function setup(options: { sequences?: number; stepMs?: number; contextSize?: number; batchSize?: number } = {}) {
  const engine = new FakeEngine(options.stepMs ?? 1);
  const scheduler = new BatchScheduler(engine, V, options.batchSize ?? 64);
  const slots = new SlotPool(options.sequences ?? 2);
  const context: GenerationContext = {
    scheduler,
    slots,
    sequences: engine,
    createStreamDecoder: () => ({ push: (id: number) => String.fromCharCode(97 + id), flush: () => "" }),
    contextSize: options.contextSize ?? 64,
    nVocab: V,
    batchSize: options.batchSize ?? 64,
    keepPrefix: 1,
  };
  return { engine, scheduler, slots, context };
}

function settings(
  options: Partial<Omit<GenerationSettings, "stop">> & { maxTokens?: number; stop?: string[] } = {},
): GenerationSettings {
  const { maxTokens, stop, ...rest } = options;
  return {
    sampling: resolveSampling({ temperature: 0 }, LLAMA_SAMPLING_DEFAULTS, V),
    stop: resolveStop({ maxTokens: maxTokens ?? 5, stop: stop ?? [] }, [25], V),
    logprobs: false,
    contextShift: false,
    replyPrefixes: [],
    ...rest,
  };
}

describe("runGeneration with a fake engine", () => {
  it("generates greedily and stops at maxTokens", async () => {
    const { context, slots } = setup();
    const result = await runGeneration(context, [0, 1, 2], settings({ maxTokens: 4 }));
    expect(result.tokens).toEqual([3, 4, 5, 6]);
    expect(result.text).toBe("defg");
    expect(result.finishReason).toBe("length");
    expect(result.promptTokens).toBe(3);
    expect(slots.inUse).toBe(0);
  });

  it("stops at a stop token without emitting it", async () => {
    const { context } = setup();
    const result = await runGeneration(context, [22], settings({ maxTokens: 10 }));
    expect(result.tokens).toEqual([23, 24]);
    expect(result.finishReason).toBe("stop");
    expect(result.stoppedBy).toEqual({ token: 25 });
  });

  it("stops at a stop string spread over tokens", async () => {
    const { context } = setup();
    const result = await runGeneration(context, [0], settings({ maxTokens: 10, stop: ["def"] }));
    expect(result.text).toBe("bc");
    expect(result.stoppedBy).toEqual({ text: "def" });
  });

  it("strips the reply prefix", async () => {
    const { context } = setup();
    const result = await runGeneration(context, [0], settings({ maxTokens: 3, replyPrefixes: ["bc", "b"] }));
    expect(result.text).toBe("d");
    const other = await runGeneration(context, [0], settings({ maxTokens: 3, replyPrefixes: ["bx", "b"] }));
    expect(other.text).toBe("cd");
  });

  it("prefills long prompts in chunks", async () => {
    const { context, engine } = setup({ batchSize: 4 });
    const result = await runGeneration(context, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], settings({ maxTokens: 2 }));
    expect(result.tokens).toEqual([10, 11]);
    expect(engine.batches.length).toBe(4);
  });

  it("throws ContextOverflowError without context shift", async () => {
    const { context, slots } = setup({ contextSize: 8 });
    await expect(runGeneration(context, [0, 1, 2, 3], settings({ maxTokens: 10 }))).rejects.toBeInstanceOf(ContextOverflowError);
    expect(slots.inUse).toBe(0);
    await expect(runGeneration(context, new Array(9).fill(0), settings())).rejects.toMatchObject({
      code: "ERR_GEB_CONTEXT_OVERFLOW",
    });
  });

  it("shifts the context when asked and reports dropped tokens", async () => {
    const { context } = setup({ contextSize: 8 });
    const result = await runGeneration(context, [0, 1, 2, 3], settings({ maxTokens: 12, contextShift: true }));
    expect(result.tokens).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(result.contextShift?.droppedTokens).toBeGreaterThan(0);
  });

  it("runs two generations in shared batches", async () => {
    const { context, engine } = setup({ sequences: 2 });
    const [a, b] = await Promise.all([
      runGeneration(context, [0], settings({ maxTokens: 8 })),
      runGeneration(context, [10], settings({ maxTokens: 8 })),
    ]);
    expect(a.tokens).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(b.tokens).toEqual([11, 12, 13, 14, 15, 16, 17, 18]);
    expect(engine.batches.some((batch) => batch.length === 2)).toBe(true);
  });

  it("queues generations beyond the slot count", async () => {
    const { context, slots } = setup({ sequences: 1 });
    const results = await Promise.all([0, 5, 10].map((t) => runGeneration(context, [t], settings({ maxTokens: 3 }))));
    expect(results.map((r) => r.tokens)).toEqual([
      [1, 2, 3],
      [6, 7, 8],
      [11, 12, 13],
    ]);
    expect(slots.inUse).toBe(0);
  });

  it("aborts during a long prefill step and keeps the other sequence going", async () => {
    const { context, slots } = setup({ sequences: 2, stepMs: 30 });
    const controller = new AbortController();
    const aborted = runGeneration(context, [0, 1, 2], settings({ maxTokens: 5, signal: controller.signal }));
    const other = runGeneration(context, [10], settings({ maxTokens: 3 }));
    setTimeout(() => controller.abort(), 10);
    const [a, b] = await Promise.all([aborted, other]);
    expect(a.finishReason).toBe("abort");
    expect(b.tokens).toEqual([11, 12, 13]);
    expect(slots.inUse).toBe(0);
  });

  it("times an abort during prefill as prefill", async () => {
    const { context, engine } = setup({ stepMs: 20, batchSize: 2 });
    const controller = new AbortController();
    // Abort once the second of three prompt chunks is running, so exactly one chunk finished.
    const watcher = setInterval(() => {
      if (engine.batches.length >= 2) controller.abort();
    }, 1);
    const result = await runGeneration(context, [0, 1, 2, 3, 4], settings({ maxTokens: 5, signal: controller.signal }));
    clearInterval(watcher);

    expect(result.finishReason).toBe("abort");
    expect(result.tokens).toEqual([]);
    expect(engine.batches.length).toBe(2);
    expect(result.timings.decodeMs).toBe(0);
    expect(result.timings.decodeTokensPerSecond).toBe(0);
    // The first chunk alone waited 20 timer turns of at least 1 ms.
    expect(result.timings.prefillMs).toBeGreaterThanOrEqual(20);
    expect(result.timings.prefillTokensPerSecond).toBeCloseTo((2 * 1000) / result.timings.prefillMs, 6);
  });

  it("returns an abort result for a signal aborted before the start", async () => {
    const { context } = setup();
    const result = await runGeneration(context, [0], settings({ signal: AbortSignal.abort() }));
    expect(result.finishReason).toBe("abort");
    expect(result.tokens).toEqual([]);
  });

  it("rejects running generations with DisposedError on close", async () => {
    const { context, scheduler, slots } = setup({ stepMs: 5 });
    const running = runGeneration(context, [0], settings({ maxTokens: 50 }));
    await new Promise((r) => setTimeout(r, 20));
    slots.close();
    await scheduler.close();
    await expect(running).rejects.toBeInstanceOf(DisposedError);
  });
});

describe("createTextStream", () => {
  it("streams pieces that join to the result text", async () => {
    const { context } = setup();
    const stream = createTextStream(undefined, (signal, onText) =>
      runGeneration(context, [0], settings({ maxTokens: 6, signal }), onText),
    );
    const pieces: string[] = [];
    for await (const piece of stream) pieces.push(piece);
    const result = await stream.result;
    expect(pieces.join("")).toBe(result.text);
    expect(pieces.length).toBe(6);
  });

  it("aborts and frees the slot when the loop is left", async () => {
    const { context, slots } = setup();
    for (let round = 0; round < 20; round++) {
      const stream = createTextStream(undefined, (signal, onText) =>
        runGeneration(context, [0], settings({ maxTokens: 50, signal }), onText),
      );
      let seen = 0;
      for await (const _piece of stream) if (++seen === 2) break;
      const result = await stream.result;
      expect(result.finishReason).toBe("abort");
      expect(result.text.length).toBeGreaterThanOrEqual(2);
      expect(slots.inUse).toBe(0);
    }
  });

  it("delivers errors through the iterator and result", async () => {
    const stream = createTextStream(undefined, () => Promise.reject(new DisposedError("gone")));
    await expect(stream.result).rejects.toBeInstanceOf(DisposedError);
    await expect((async () => {
      for await (const _piece of stream) void _piece;
    })()).rejects.toBeInstanceOf(DisposedError);
  });
});
