// SPDX-License-Identifier: MIT
// Checks that llama.cpp (node-llama-cpp, the bench peer) runs a GEB model written by
// `geb-cpu convert --arch chatglm`, and compares it with geb-cpu on the same file: greedy tokens
// until geb-cpu's first stop token, and the next-token probabilities after each prompt. This
// is a correctness check only; it times nothing.
//
// Usage: node bench/chatglm-peer.mjs [--model DIR] [--type f32|f16|bf16|q8_0|q4_0] [--steps N]
// Needs `npm run build` and the bench dependencies (`cd bench && npm ci --ignore-scripts`).

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..");

const PROMPTS = ["《静夜思》\n作者：李白\n", "床前明月光，", "The quick brown fox", "Hello world", "你好", "Once upon a time"];

const { values } = parseArgs({
  options: { model: { type: "string" }, type: { type: "string" }, steps: { type: "string" } },
});
const source = path.resolve(values.model ?? path.join(repo, "models/geb-tiny"));
const type = values.type ?? "f32";
const steps = Number(values.steps ?? 24);

const { convertModel } = await import(path.join(repo, "dist/model/convert.js"));
const { loadModel } = await import(path.join(repo, "dist/index.js"));
const { getLlama } = await import("node-llama-cpp");

const workDir = await mkdtemp(path.join(tmpdir(), "geb-chatglm-peer-"));
try {
  const file = path.join(workDir, `model-${type}.gguf`);
  await convertModel(source, file, { type, architecture: "chatglm" });

  const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
  const peerModel = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const context = await peerModel.createContext({ contextSize: 256, threads: 1, sequences: 1 });
  const sequence = context.getSequence();
  // F16 KV cache on both sides: node-llama-cpp's default.
  const ours = await loadModel(file, { threads: 1, kvCacheType: "f16" });

  let compared = 0;
  let identical = 0;
  let maxProbabilityDifference = 0;
  for (const text of PROMPTS) {
    const ids = ours.tokenizer.encodePrompt(text);

    // geb-cpu: greedy, no repetition penalty, stopping at its stop tokens
    const ourResult = await ours.generate(ids, { temperature: 0, maxTokens: steps, repetitionPenalty: 1 });
    const rows = await ours.evaluate(ids);
    const last = rows[rows.length - 1];
    let max = -Infinity;
    for (const logit of last) max = Math.max(max, logit);
    let sum = 0;
    for (const logit of last) sum += Math.exp(logit - max);

    // llama.cpp: greedy on the same ids, as many tokens as geb-cpu produced before stopping
    const peerTokens = [];
    let firstProbabilities;
    const tokenCount = Math.max(1, ourResult.tokens.length);
    for await (const output of sequence.evaluateWithMetadata(ids, { probabilities: true }, { temperature: 0 })) {
      firstProbabilities ??= output.probabilities;
      peerTokens.push(output.token);
      if (peerTokens.length >= tokenCount) break;
    }
    await sequence.clearHistory();

    for (const [token, probability] of firstProbabilities) {
      maxProbabilityDifference = Math.max(maxProbabilityDifference, Math.abs(probability - Math.exp(last[token] - max) / sum));
    }
    let prefix = 0;
    while (prefix < ourResult.tokens.length && peerTokens[prefix] === ourResult.tokens[prefix]) prefix++;
    compared += ourResult.tokens.length;
    identical += prefix;
    console.log(`${JSON.stringify(text)}: ${prefix}/${ourResult.tokens.length} greedy tokens identical (finish: ${ourResult.finishReason})`);
  }
  console.log(`${type}: ${identical}/${compared} greedy tokens identical; max next-token probability difference ${maxProbabilityDifference.toExponential(2)}`);

  await ours.dispose();
  await context.dispose();
  await peerModel.dispose();
  await llama.dispose();
  process.exitCode = identical === compared ? 0 : 1;
} finally {
  await rm(workDir, { recursive: true, force: true });
}
