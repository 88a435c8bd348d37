// Behaviour of the public Model API on geb-tiny: defaults, seeding, stop strings, streaming,
// abort and leaks, concurrency, dispose, chat, context overflow and option validation.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { loadModel, type Model } from "../lib/model.js";
import { Engine } from "../lib/engine.js";
import { DisposedError, GebError, IoError } from "../lib/errors.js";
import { GEB_TINY_DIR } from "./fixtures.js";

const reference = JSON.parse(readFileSync(`${GEB_TINY_DIR}/reference.json`, "utf8")) as {
  prompts: Array<{ name: string; lang: string; kind: string; text?: string; prompt_ids: number[]; greedy: { ids: number[] } }>;
};
const zhPrompts = reference.prompts.filter((p) => p.lang === "zh");
const GREEDY = { temperature: 0, repetitionPenalty: 1, ignoreEos: true } as const;

async function expectCode(promise: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (error) {
    expect(error).toBeInstanceOf(GebError);
    expect((error as GebError).code).toBe(code);
    return;
  }
  expect.unreachable(`expected an error with code ${code}`);
}

describe("Model API on geb-tiny", () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(GEB_TINY_DIR, { threads: 1, sequences: 2 });
  });
  afterAll(() => model?.dispose());

  it("describes itself", () => {
    const info = model.info();
    expect(info.architecture).toBe("geb");
    expect(info.contextSize).toBe(256);
    expect(info.vocabSize).toBe(4032);
    expect(info.sequences).toBe(2);
    expect(info.layers).toBe(4);
  });

  it("hands out info copies", () => {
    const first = model.info();
    const types = { ...first.tensorTypes };
    first.weightConversions.push({ name: "x", from: "bf16", to: "q8_0" });
    first.removedTemporaryFiles.push("/x");
    first.tensorTypes.BF16 = -1;
    first.engine.tensors.length = 0;
    const second = model.info();
    expect(second.weightConversions).toEqual([]);
    expect(second.removedTemporaryFiles).toEqual([]);
    expect(second.tensorTypes).toEqual(types);
    expect(second.engine.tensors.length).toBeGreaterThan(0);
  });

  it("lists converted norm weights as f32", () => {
    const { conversions, tensors } = model.info().engine;
    expect(conversions).toContain("blk.0.attn_norm: bf16 -> f32");
    for (const conversion of conversions) {
      const [name, types] = conversion.split(": ");
      const tensor = tensors.find((t) => t.name === name);
      expect(tensor, name).toBeDefined();
      expect(tensor!.type, name).toBe(types!.split(" -> ")[1]);
    }
    expect(model.info().tensorTypes).toHaveProperty("BF16");
  });

  it("encodes a string prompt with the GEB prefix", async () => {
    const plain = reference.prompts.find((p) => p.kind === "plain")!;
    const fromText = await model.generate(plain.text!, { ...GREEDY, maxTokens: 8 });
    const fromIds = await model.generate(plain.prompt_ids, { ...GREEDY, maxTokens: 8 });
    expect(fromText.promptTokens).toBe(plain.prompt_ids.length);
    expect(fromText.tokens).toEqual(fromIds.tokens);
  });

  it("reports timings and log-probabilities", async () => {
    const result = await model.generate("你好", { maxTokens: 8, ignoreEos: true, logprobs: true, seed: 1 });
    expect(result.tokens.length).toBe(8);
    expect(result.logprobs?.length).toBe(8);
    for (const lp of result.logprobs!) expect(lp).toBeLessThanOrEqual(0);
    expect(result.timings.prefillMs).toBeGreaterThan(0);
    expect(result.timings.decodeTokensPerSecond).toBeGreaterThan(0);
  });

  it("greedy log-probabilities agree with evaluate()", async () => {
    const prompt = reference.prompts[0]!.prompt_ids;
    const result = await model.generate(prompt, { ...GREEDY, maxTokens: 4, logprobs: true });
    const rows = await model.evaluate([...prompt, ...result.tokens.slice(0, 3)]);
    for (let i = 0; i < 4; i++) {
      const row = rows[prompt.length - 1 + i]!;
      let max = -Infinity;
      for (const v of row) max = Math.max(max, v);
      let sum = 0;
      for (const v of row) sum += Math.exp(v - max);
      expect(result.logprobs![i]).toBeCloseTo(row[result.tokens[i]!]! - max - Math.log(sum), 3);
    }
  });

  it("reproduces seeded sampling", async () => {
    const options = { maxTokens: 24, ignoreEos: true, temperature: 1, topK: 0, topP: 1 };
    const a = await model.generate("床前明月光", { ...options, seed: 1234 });
    const b = await model.generate("床前明月光", { ...options, seed: 1234 });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.seed).toBe(1234);
    const others = await Promise.all([1, 2, 3].map((seed) => model.generate("床前明月光", { ...options, seed })));
    expect(others.some((r) => r.tokens.join() !== a.tokens.join())).toBe(true);
  });

  it("stops at a stop string spanning tokens and leaves it out", async () => {
    const free = await model.generate(reference.prompts[0]!.prompt_ids, { ...GREEDY, maxTokens: 32 });
    // Take a stop string from the middle of the greedy text, crossing a token boundary.
    const cut = Math.floor(free.text.length / 2);
    const stop = free.text.slice(cut, cut + 3);
    expect(stop.length).toBe(3);
    const stopped = await model.generate(reference.prompts[0]!.prompt_ids, { ...GREEDY, maxTokens: 32, stop });
    expect(stopped.finishReason).toBe("stop");
    expect(stopped.stoppedBy).toEqual({ text: stop });
    expect(stopped.text).toBe(free.text.slice(0, free.text.indexOf(stop)));
  });

  it("stops at the tokenizer's stop tokens unless ignoreEos", async () => {
    // Ban everything except token 2 (</s>): the first sampled token is a stop token.
    const onlyEos: Record<number, number> = { 2: 100 };
    const stopped = await model.generate("x", { temperature: 0, logitBias: onlyEos });
    expect(stopped.finishReason).toBe("stop");
    expect(stopped.stoppedBy).toEqual({ token: 2 });
    expect(stopped.tokens).toEqual([]);
    const ignored = await model.generate("x", { temperature: 0, logitBias: onlyEos, ignoreEos: true, maxTokens: 3 });
    expect(ignored.tokens).toEqual([2, 2, 2]);
    expect(ignored.finishReason).toBe("length");
  });

  it("streams Chinese without U+FFFD from split characters", async () => {
    for (const prompt of zhPrompts) {
      for (const seed of [1, 2, 3]) {
        const stream = model.stream(prompt.prompt_ids, { maxTokens: 48, ignoreEos: true, seed, temperature: 0.8 });
        const pieces: string[] = [];
        for await (const piece of stream) pieces.push(piece);
        const result = await stream.result;
        expect(pieces.join("")).toBe(result.text);
        // A U+FFFD may only appear where the model itself produced invalid bytes.
        const full = model.tokenizer.decode(result.tokens);
        if (!full.includes("\uFFFD")) for (const piece of pieces) expect(piece).not.toContain("\uFFFD");
        // The continuation keeps the leading space that a decode of the new ids alone drops, and
        // a character cut by maxTokens is left out rather than shown as U+FFFD.
        const complete = result.finishReason === "length" ? full.replace(/\uFFFD+$/, "") : full;
        expect([complete, ` ${complete}`]).toContain(result.text);
      }
    }
  });

  it("leaves out a character cut by maxTokens", async () => {
    const prompt = zhPrompts[0]!.prompt_ids;
    const whole = await model.generate(prompt, { ...GREEDY, maxTokens: 32, ignoreEos: true });
    let cutInsideCharacter = 0;
    for (let n = 1; n < 32; n++) {
      const part = await model.generate(prompt, { ...GREEDY, maxTokens: n, ignoreEos: true });
      expect(part.tokens).toEqual(whole.tokens.slice(0, n));
      expect(part.text.endsWith("\uFFFD")).toBe(false);
      expect(whole.text.startsWith(part.text)).toBe(true);
      if (model.tokenizer.decode(part.tokens).endsWith("\uFFFD")) cutInsideCharacter++;
    }
    // The greedy continuation has byte-fallback characters, so some cut falls inside one.
    expect(cutInsideCharacter).toBeGreaterThan(0);
  });

  it("runs two generations at once with the same results as one by one", async () => {
    const [p, q] = [reference.prompts[0]!.prompt_ids, reference.prompts[3]!.prompt_ids];
    const alone = [await model.generate(p, { ...GREEDY, maxTokens: 24 }), await model.generate(q, { ...GREEDY, maxTokens: 24 })];
    const together = await Promise.all([
      model.generate(p, { ...GREEDY, maxTokens: 24 }),
      model.generate(q, { ...GREEDY, maxTokens: 24 }),
      model.generate(p, { ...GREEDY, maxTokens: 24 }),
    ]);
    expect(together[0]!.tokens).toEqual(alone[0]!.tokens);
    expect(together[1]!.tokens).toEqual(alone[1]!.tokens);
    expect(together[2]!.tokens).toEqual(alone[0]!.tokens);
    expect(model.activeSequences).toBe(0);
  });

  it("keeps the partial output when aborted", async () => {
    const controller = new AbortController();
    const stream = model.stream("床前明月光", { maxTokens: 200, ignoreEos: true, signal: controller.signal, seed: 5 });
    const pieces: string[] = [];
    for await (const piece of stream) {
      pieces.push(piece);
      if (pieces.length === 3) controller.abort();
    }
    const result = await stream.result;
    expect(result.finishReason).toBe("abort");
    expect(result.text).toBe(pieces.join(""));
    expect(result.tokens.length).toBeGreaterThanOrEqual(3);
    expect(result.tokens.length).toBeLessThan(200);
  });

  it("aborts during a long prompt pass and stays correct", async () => {
    const prompt = reference.prompts[4]!.prompt_ids;
    const long = [4001, 4003, ...Array.from({ length: 240 }, (_, i) => prompt[2 + (i % (prompt.length - 2))]!)];
    for (const delayMs of [0, 1, 3, 10]) {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), delayMs);
      const result = await model.generate(long, { ...GREEDY, maxTokens: 5, signal: controller.signal });
      expect(["abort", "length"]).toContain(result.finishReason);
      expect(model.activeSequences).toBe(0);
    }
    // Cache rows an aborted step wrote must not leak into the next generation.
    const check = await model.generate(prompt, { ...GREEDY, maxTokens: 8 });
    expect(check.tokens).toEqual(reference.prompts[4]!.greedy.ids.slice(0, 8));
  });

  it("returns an abort result for an already aborted signal", async () => {
    const result = await model.generate("你好", { signal: AbortSignal.abort() });
    expect(result.finishReason).toBe("abort");
    expect(result.tokens).toEqual([]);
  });

  it("leaks no sequences or memory over 200 aborted streams", async () => {
    const run = async (i: number): Promise<void> => {
      const controller = new AbortController();
      const stream = model.stream(reference.prompts[i % 6]!.prompt_ids, {
        maxTokens: 64,
        ignoreEos: true,
        seed: i,
        signal: controller.signal,
      });
      if (i % 3 === 0) controller.abort(); // aborted before or during the prompt pass
      let seen = 0;
      for await (const _piece of stream) {
        if (++seen >= 1 + (i % 4)) break; // leaving the loop aborts too
      }
      const result = await stream.result;
      expect(["abort", "length", "stop"]).toContain(result.finishReason);
      expect(model.activeSequences).toBe(0);
    };
    for (let i = 0; i < 20; i++) await run(i);
    globalThis.gc?.();
    const before = process.memoryUsage().rss;
    for (let i = 20; i < 220; i++) await run(i);
    globalThis.gc?.();
    const growth = process.memoryUsage().rss - before;
    expect(growth).toBeLessThan(64 * 1024 * 1024);
    // The model still generates the reference continuation afterwards.
    const check = await model.generate(reference.prompts[0]!.prompt_ids, { ...GREEDY, maxTokens: 8 });
    expect(check.tokens).toEqual(reference.prompts[0]!.greedy.ids.slice(0, 8));
  });

  it("chats in the GEB layout and strips the reply prefix", async () => {
    const chatPrompt = reference.prompts.find((p) => p.name === "zh_chat")!;
    const result = await model.chat([{ role: "user", content: "请背诵李白的《早发白帝城》。" }], { ...GREEDY, maxTokens: 16 });
    expect(result.promptTokens).toBe(chatPrompt.prompt_ids.length);
    expect(result.tokens).toEqual(chatPrompt.greedy.ids.slice(0, 16));
    expect(result.text.startsWith("\n")).toBe(false);
    const full = model.tokenizer.decode(result.tokens);
    expect(full.startsWith("\n")).toBe(true);
    // maxTokens may cut the last character; the result leaves its bytes out.
    expect(full.replace(/\uFFFD+$/, "").endsWith(result.text)).toBe(true);
  });

  it("chat stopTokens add to the end of turn", async () => {
    const messages = [
      { role: "user" as const, content: "《静夜思》的作者是谁？" },
      { role: "assistant" as const, content: "李白。" },
      { role: "user" as const, content: "请背诵这首诗。" },
    ];
    const plain = await model.chat(messages, { temperature: 0, maxTokens: 60 });
    expect(plain.finishReason).toBe("stop");
    // An id the reply never produces, so only the format's end-of-turn tokens can stop it.
    const unused = [...Array(100).keys()].find((id) => id > 0 && !plain.tokens.includes(id))!;
    const withTokens = await model.chat(messages, { temperature: 0, maxTokens: 60, stopTokens: [unused] });
    expect(withTokens.tokens).toEqual(plain.tokens);
    expect(withTokens.finishReason).toBe("stop");
    expect(withTokens.stoppedBy).toEqual(plain.stoppedBy);
    const withText = await model.chat(messages, { temperature: 0, maxTokens: 60, stop: "never appears" });
    expect(withText.tokens).toEqual(plain.tokens);
    expect(withText.finishReason).toBe("stop");
  });

  it("streams a chat reply", async () => {
    const stream = model.chatStream([{ role: "user", content: "What does unzip do?" }], { maxTokens: 24, seed: 3 });
    let joined = "";
    for await (const piece of stream) joined += piece;
    expect(joined).toBe((await stream.result).text);
  });

  it("throws ContextOverflowError past the context, or shifts when asked", async () => {
    const prompt = new Array(250).fill(reference.prompts[0]!.prompt_ids[2]!);
    prompt[0] = 4001;
    prompt[1] = 4003;
    await expectCode(model.generate(prompt, { ...GREEDY, maxTokens: 20 }), "ERR_GEB_CONTEXT_OVERFLOW");
    expect(model.activeSequences).toBe(0);
    const shifted = await model.generate(prompt, { ...GREEDY, maxTokens: 20, contextShift: true });
    expect(shifted.tokens.length).toBe(20);
    expect(shifted.contextShift?.droppedTokens).toBeGreaterThan(0);
    await expectCode(model.generate(new Array(300).fill(5)), "ERR_GEB_CONTEXT_OVERFLOW");
  });

  it("validates options with ERR_GEB_INVALID_ARGUMENT", async () => {
    const bad: object[] = [
      { temperature: -1 },
      { topK: 0.5 },
      { topP: 0 },
      { minP: -0.1 },
      { repetitionPenalty: 0 },
      { maxTokens: -5 },
      { seed: 1.5 },
      { stop: "" },
      { logitBias: { 5000: 1 } },
      { logprobs: "yes" },
      { signal: "abort" },
      { max_tokens: 5 },
    ];
    for (const options of bad) await expectCode(model.generate("x", options), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(model.generate([1, 99999]), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(model.generate([]), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(model.evaluate([]), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(model.chat([]), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(model.chat([{ role: "user", content: "x" }], { chatFormat: "jinja" as "geb" }), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(() => model.stream("x", { topK: -1 }), "ERR_GEB_INVALID_ARGUMENT");
  });
});

describe("loadModel", () => {
  it("words evaluate errors without generation", async () => {
    const model = await loadModel(GEB_TINY_DIR, { threads: 1 });
    const ids = reference.prompts[0]!.prompt_ids;
    const controller = new AbortController();
    controller.abort();
    const aborted = (await model.evaluate(ids, { signal: controller.signal }).catch((e: unknown) => e)) as GebError;
    expect(aborted.code).toBe("ERR_GEB_ABORTED");
    expect(aborted.message).not.toMatch(/generat/i);

    const running = model.evaluate(ids).catch((e: unknown) => e);
    await model.dispose();
    const disposed = (await running) as GebError;
    expect(disposed.code).toBe("ERR_GEB_DISPOSED");
    expect(disposed.message).not.toMatch(/generat/i);
  });

  it("names public options when the KV cache cannot be reserved", async () => {
    const nativeError = new IoError("cannot reserve 137438953472 bytes for the KV cache: Cannot allocate memory; lower contextSize or nSeqMax");
    const create = vi.spyOn(Engine, "create").mockRejectedValueOnce(nativeError);
    try {
      const error = await loadModel(GEB_TINY_DIR, { threads: 1, contextSize: 200, sequences: 3 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IoError);
      expect((error as IoError).code).toBe("ERR_GEB_IO");
      expect((error as IoError).cause).toBe(nativeError);
      const message = (error as Error).message;
      expect(message).toContain("Cannot reserve 137438953472 bytes for the KV cache: Cannot allocate memory");
      expect(message).toContain("(contextSize 200, sequences 3)");
      expect(message).toContain("Lower the contextSize or sequences option of loadModel.");
      expect(message).not.toContain("nSeqMax");
    } finally {
      create.mockRestore();
    }
  });

  it("validates load options", async () => {
    await expectCode(loadModel(GEB_TINY_DIR, { threads: 0 }), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(loadModel(GEB_TINY_DIR, { thread: 2 } as object), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(loadModel(GEB_TINY_DIR, { kvCacheType: "f8" as "f16" }), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(loadModel(GEB_TINY_DIR, { contextSize: 0 }), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(loadModel(GEB_TINY_DIR, { sequences: 0 }), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(loadModel(GEB_TINY_DIR, { tier: "sse9" }), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(loadModel(GEB_TINY_DIR, { weightType: "q2_k" as "q8_0" }), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(loadModel(GEB_TINY_DIR, { weightType: "q8_0", cacheDir: "" }), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(loadModel(""), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(loadModel(GEB_TINY_DIR, { signal: AbortSignal.abort() }), "ERR_GEB_ABORTED");
  });

  it("reports progress and honours an F16 KV cache", async () => {
    const phases: string[] = [];
    const model = await loadModel(GEB_TINY_DIR, { kvCacheType: "f16", contextSize: 128, onProgress: (p) => phases.push(p.phase) });
    try {
      expect(phases).toContain("engine");
      expect(phases.at(-1)).toBe("ready");
      expect(model.info().kvCacheType).toBe("f16");
      expect(model.info().contextSize).toBe(128);
      const prompt = reference.prompts[0]!;
      const result = await model.generate(prompt.prompt_ids, { ...GREEDY, maxTokens: 4 });
      expect(result.tokens).toEqual(prompt.greedy.ids.slice(0, 4));
    } finally {
      await model.dispose();
    }
  });

  it("quantizes at load with weightType", async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), "geb-cpu-quant-"));
    try {
      const model = await loadModel(GEB_TINY_DIR, { threads: 1, weightType: "q8_0", cacheDir });
      try {
        expect(model.info().weightConversions.length).toBeGreaterThan(0);
        expect(model.info().weightConversions.every((c) => c.to === "q8_0")).toBe(true);
        const prompt = reference.prompts[0]!;
        const result = await model.generate(prompt.prompt_ids, { ...GREEDY, maxTokens: 4 });
        // Q8_0 moves logits slightly; the first steps of this prompt have wide margins.
        expect(result.tokens).toEqual(prompt.greedy.ids.slice(0, 4));
      } finally {
        await model.dispose();
      }
    } finally {
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  it("ends a running generation with DisposedError on dispose", async () => {
    const model = await loadModel(GEB_TINY_DIR, { threads: 1 });
    const stream = model.stream("床前明月光", { maxTokens: 250, ignoreEos: true, seed: 1 });
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next(); // generation is running
    const disposing = model.dispose();
    await expect(stream.result).rejects.toBeInstanceOf(DisposedError);
    await disposing;
    expect(model.disposed).toBe(true);
    await expectCode(model.generate("x"), "ERR_GEB_DISPOSED");
    await expectCode(() => model.info(), "ERR_GEB_DISPOSED");
    await model.dispose(); // a second call is harmless
  });

  it("supports await using", async () => {
    let seen: Model | undefined;
    {
      await using model = await loadModel(GEB_TINY_DIR);
      seen = model;
      expect((await model.generate("你好", { maxTokens: 2 })).tokens.length).toBeLessThanOrEqual(2);
    }
    expect(seen.disposed).toBe(true);
  });
});
