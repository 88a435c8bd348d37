// Edge cases of the Model API, the sampler and the CLI, found by using the package as a new user
// would. They cover invalid evaluate() options, logit bias that overflows float32, a vocabulary
// with every token banned, a tokenizer larger than the model and a chat that outgrows its context.

import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import chatCommand from "../lib/cli/chat.js";
import generateCommand from "../lib/cli/generate.js";
import { GebError } from "../lib/errors.js";
import { LLAMA_SAMPLING_DEFAULTS, Random, Sampler, resolveSampling, type SamplingOptions } from "../lib/generate/sampler.js";
import { loadModel, type Model } from "../lib/model.js";
import { GEB_TINY_DIR, sharedPath } from "./fixtures.js";

async function expectCode(action: Promise<unknown> | (() => unknown), code: string): Promise<GebError> {
  try {
    await (typeof action === "function" ? action() : action);
  } catch (error) {
    expect(error).toBeInstanceOf(GebError);
    expect((error as GebError).code).toBe(code);
    return error as GebError;
  }
  return expect.unreachable(`expected an error with code ${code}`);
}

function makeSampler(options: SamplingOptions, vocab: number): Sampler {
  return new Sampler(resolveSampling(options, LLAMA_SAMPLING_DEFAULTS, vocab), vocab);
}

function randomLogits(vocab: number, seed: number): Float32Array {
  const random = new Random(seed);
  return Float32Array.from({ length: vocab }, () => random.next() * 8 - 4);
}

describe("sampler overflow and bans", () => {
  const vocab = 300;

  // 1e40 and 1e300 are finite doubles but overflow the float32 logits row to +Infinity.
  // top-p 0.5 and min-p 0 (GEB's defaults) keep more than one candidate, so a wrong draw shows.
  for (const bias of [1e40, 1e300, Number.MAX_VALUE]) {
    for (const topK of [0, 5]) {
      it(`forces the token with logitBias ${bias}, topK ${topK}`, () => {
        for (let seed = 0; seed < 20; seed++) {
          const sampler = makeSampler({ logitBias: { 17: bias }, topK, topP: 0.5, minP: 0, seed }, vocab);
          expect(sampler.sample(randomLogits(vocab, seed), []).token).toBe(17);
        }
      });
    }
  }

  it("shares the draw between tokens that both overflow", () => {
    const seen = new Set<number>();
    for (let seed = 0; seed < 40; seed++) {
      const sampler = makeSampler({ logitBias: { 17: 1e300, 201: 1e300 }, topP: 1, minP: 0, seed }, vocab);
      const token = sampler.sample(randomLogits(vocab, seed), []).token;
      expect([17, 201]).toContain(token);
      seen.add(token);
    }
    expect(seen.size).toBe(2);
  });

  it("forces the token when a tiny repetition penalty overflows", () => {
    const logits = randomLogits(vocab, 3);
    logits[42] = 2;
    const sampler = makeSampler({ repetitionPenalty: 1e-300, topP: 0.5, minP: 0, seed: 1 }, vocab);
    expect(sampler.sample(logits, [42]).token).toBe(42);
  });

  it("gives an overflowing token a finite log-probability", () => {
    const sampler = makeSampler({ logitBias: { 17: 1e300 }, seed: 1 }, vocab);
    const { logprob } = sampler.sample(randomLogits(vocab, 1), [], true);
    expect(logprob).toBe(0);
  });

  it("rejects a logitBias that bans every token", () => {
    const bias: Record<number, number> = {};
    for (let id = 0; id < vocab; id++) bias[id] = -Infinity;
    expect(() => resolveSampling({ logitBias: bias }, LLAMA_SAMPLING_DEFAULTS, vocab)).toThrow(
      expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" }),
    );
  });

  for (const temperature of [0, 0.8]) {
    it(`fails when no token is left to sample, temperature ${temperature}`, async () => {
      // Finite biases of -1e300 become -Infinity in the float32 row, so no token stays possible.
      const bias: Record<number, number> = {};
      for (let id = 0; id < vocab; id++) bias[id] = -1e300;
      const sampler = makeSampler({ logitBias: bias, temperature, seed: 1 }, vocab);
      await expectCode(() => sampler.sample(randomLogits(vocab, 1), []), "ERR_GEB_INVALID_ARGUMENT");
    });
  }

  it("never draws a NaN logit", () => {
    const logits = randomLogits(vocab, 5);
    logits[9] = NaN;
    for (let seed = 0; seed < 50; seed++) {
      const sampler = makeSampler({ topK: 0, topP: 1, minP: 0, temperature: 50, seed }, vocab);
      expect(sampler.sample(logits, []).token).not.toBe(9);
    }
  });
});

describe("Model API edge cases on geb-tiny", () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(GEB_TINY_DIR, { threads: 1 });
  });
  afterAll(() => model?.dispose());

  it("validates evaluate() options", async () => {
    const ids = model.tokenizer.encodePrompt("你好");
    await expectCode(model.evaluate(ids, null as never), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(model.evaluate(ids, "fast" as never), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(model.evaluate(ids, { signal: 5 } as never), "ERR_GEB_INVALID_ARGUMENT");
    await expectCode(model.evaluate(ids, { singal: AbortSignal.abort() } as never), "ERR_GEB_INVALID_ARGUMENT");
    // The model still works after the rejected calls.
    expect((await model.evaluate(ids)).length).toBe(ids.length);
    expect(model.activeSequences).toBe(0);
  });

  it("honours a huge logitBias in generate()", async () => {
    const result = await model.generate("床前明月光", { logitBias: { 100: 1e300 }, maxTokens: 4, seed: 7, ignoreEos: true });
    expect(result.tokens).toEqual([100, 100, 100, 100]);
  });

  it("rejects a second reader of one stream", async () => {
    const stream = model.stream("床前明月光", { maxTokens: 12, seed: 1, ignoreEos: true });
    const read = async (): Promise<string> => {
      let text = "";
      for await (const piece of stream) text += piece;
      return text;
    };
    const [first, second] = await Promise.allSettled([read(), read()]);
    expect(first.status).toBe("fulfilled");
    expect(second.status).toBe("rejected");
    expect((second as PromiseRejectedResult).reason).toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT" });
    expect((first as PromiseFulfilledResult<string>).value).toBe((await stream.result).text);
  });

  it("rejects a generate() that bans every token", async () => {
    const bias = new Map<number, number>();
    for (let id = 0; id < model.info().vocabSize; id++) bias.set(id, -Infinity);
    await expectCode(model.generate("你好", { logitBias: bias, maxTokens: 2 }), "ERR_GEB_INVALID_ARGUMENT");
  });
});

describe("loadModel vocabulary check", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "geb-edge-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("rejects a tokenizer with more ids than the model has rows", async () => {
    // ChatGLM3's 64,798-id tokenizer in front of geb-tiny's 4,032-row embedding.
    const modelDir = join(dir, "big-tokenizer");
    cpSync(GEB_TINY_DIR, modelDir, { recursive: true });
    cpSync(sharedPath("tokenizer-suites", "chatglm3", "tokenizer.model"), join(modelDir, "GEBtokenizer.model"));
    rmSync(join(modelDir, "tokenizer_config.json"), { force: true });
    const error = await expectCode(loadModel(modelDir, { threads: 1 }), "ERR_GEB_MODEL_FORMAT");
    expect(error.message).toContain("4032");
  });
});

/** Run a command with stdout and stderr captured. */
async function capture(run: () => Promise<number>): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const out = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    return { code: await run(), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

async function withStdin<T>(lines: string[], run: () => Promise<T>): Promise<T> {
  const stdin = Object.getOwnPropertyDescriptor(process, "stdin")!;
  const input = Object.assign(Readable.from(lines), { isTTY: false });
  Object.defineProperty(process, "stdin", { value: input, configurable: true });
  try {
    return await run();
  } finally {
    Object.defineProperty(process, "stdin", stdin);
  }
}

describe("geb-cpu chat and generate past the context", () => {
  it("keeps chatting when the conversation outgrows the context", async () => {
    // A turn is about 22 prompt tokens (19 of text) and a 16-token reply, so a 64-token context
    // holds under two turns.
    const lines = Array.from({ length: 4 }, (_, i) => `第${i}句：床前明月光，疑是地上霜。\n`);
    const { code, stdout, stderr } = await withStdin(lines, () =>
      capture(() =>
        chatCommand.run(["--model", GEB_TINY_DIR, "--context-size", "64", "--temperature", "0", "--max-tokens", "16", "--ignore-eos"]),
      ),
    );
    expect(stderr).not.toContain("ERR_GEB");
    expect(code).toBe(0);
    expect(stdout.split("\n").length).toBeGreaterThanOrEqual(4);
    expect(stderr).toContain("dropped");
  });

  it("reports a single message longer than the context and goes on", async () => {
    const lines = ["床前明月光".repeat(40) + "\n", "你好\n"];
    const { code, stdout, stderr } = await withStdin(lines, () =>
      capture(() => chatCommand.run(["--model", GEB_TINY_DIR, "--context-size", "64", "--temperature", "0", "--max-tokens", "4"])),
    );
    expect(code).toBe(0);
    expect(stderr).toContain("ERR_GEB_CONTEXT_OVERFLOW");
    expect(stdout.length).toBeGreaterThan(0);
  });

  it("shifts the context in generate with --context-shift", async () => {
    const args = ["--model", GEB_TINY_DIR, "--context-size", "32", "--prompt", "你好", "--max-tokens", "80", "--ignore-eos", "--json"];
    const overflow = await capture(() => generateCommand.run(args));
    expect(overflow.code).toBe(1);
    expect(overflow.stderr).toContain("--context-shift");
    const shifted = await capture(() => generateCommand.run([...args, "--context-shift"]));
    expect(shifted.code).toBe(0);
    expect((JSON.parse(shifted.stdout) as { tokens: number[] }).tokens.length).toBe(80);
  });
});
