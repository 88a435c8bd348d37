// One benchmark run in its own process: loads one model file with one engine (ours or
// node-llama-cpp's llama.cpp) at one thread count, times the requested cases and prints one JSON
// line. bench/run.mjs spawns it, alternating the engines, so RSS and load time belong to a
// single engine and neither engine warms the other's caches in the same process.
//
//   node bench/worker.mjs '{"engine":"ours","file":"/path/model.gguf","threads":2,
//                           "contextSize":1024,"prefill":[128,512],"decode":128}'
//
// Both engines see the same token ids (a fixed pseudo-random prompt), greedy decoding, the same
// thread count and context size, and one sequence. Decode is timed after `decodeWarmup` untimed
// steps (default 8) on both engines, so neither pays for waking its threads or warming caches
// inside the timed steps. Engine "ours-api" times decode through the public generate() call
// (sampling, detokenization and stop checks included), the path an application takes.
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..");

// Token ids of a fixed prompt of length n, inside [lo, hi): both engines get the same ids.
export function promptTokens(n, lo, hi) {
  const out = [];
  let state = 12345;
  for (let i = 0; i < n; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    out.push(lo + (state % (hi - lo)));
  }
  return out;
}

function argmax(values, offset, length) {
  let best = 0;
  for (let i = 1; i < length; i++) if (values[offset + i] > values[offset + best]) best = i;
  return best;
}

const rssMiB = () => process.memoryUsage().rss / 2 ** 20;

// Prompt ids stay below the vocabulary size and below 30000, read from the GGUF header.
async function promptIdLimit(file) {
  const { readGgufFileInfo } = await import("node-llama-cpp");
  const info = await readGgufFileInfo(file, { readTensorInfo: false });
  return Math.min(info.metadata.tokenizer.ggml.tokens.length, 30000);
}

async function runOurs(job) {
  const { openModelFiles } = await import(pathToFileURL(path.join(repo, "dist/model/load-plan.js")).href);
  const { Engine } = await import(pathToFileURL(path.join(repo, "dist/engine.js")).href);
  const t0 = performance.now();
  let { plan } = await openModelFiles(job.file);
  if (job.weightType) {
    // quantize-at-load: the first run writes the cache file, later runs reuse it
    const { quantizePlan } = await import(pathToFileURL(path.join(repo, "dist/formats/quantize.js")).href);
    ({ plan } = await quantizePlan(plan, { weightType: job.weightType, cacheDir: job.quantCacheDir }));
  }
  const engine = await Engine.create(plan, { threads: job.threads, contextSize: job.contextSize, nSeqMax: 1 });
  const loadMs = performance.now() - t0;
  const rssAfterLoad = rssMiB();
  const nVocab = plan.hparams.nVocab;

  // Evaluates `tokens` at positions [start, ...) with logits for the last one only.
  const step = async (tokens, start) => {
    const n = tokens.length;
    const wants = new Uint8Array(n);
    wants[n - 1] = 1;
    return engine.forward(new Int32Array(n), Int32Array.from({ length: n }, (_, i) => start + i), Int32Array.from(tokens), wants);
  };
  // a GEB directory has no GGUF header to read; its plan's vocabulary bounds the ids
  const vocabHi = job.file.endsWith(".gguf") ? Math.min(nVocab, await promptIdLimit(job.file)) : Math.min(nVocab, 30000);
  const result = { loadMs, rssAfterLoadMiB: rssAfterLoad, prefill: {}, decode: null, top1: null };

  const probe = await step(promptTokens(16, 3, vocabHi), 0);
  result.top1 = argmax(probe, 0, nVocab);
  engine.clearSequence(0);

  for (const n of job.prefill) {
    const tokens = promptTokens(n, 3, vocabHi);
    const t = performance.now();
    await step(tokens, 0);
    result.prefill[n] = n / ((performance.now() - t) / 1000);
    engine.clearSequence(0);
  }
  if (job.decode > 0) {
    const warmup = job.decodeWarmup ?? 8;
    let logits = await step(promptTokens(16, 3, vocabHi), 0);
    let token = argmax(logits, 0, nVocab);
    let t = performance.now();
    for (let i = 0; i < warmup + job.decode; i++) {
      if (i === warmup) t = performance.now();
      logits = await step([token], 16 + i);
      token = argmax(logits, 0, nVocab);
    }
    result.decode = job.decode / ((performance.now() - t) / 1000);
  }
  result.rssAfterRunMiB = rssMiB();
  await engine.dispose();
  return result;
}

// Decode through Model.generate(): greedy, stop tokens ignored, so every run decodes the same
// number of tokens. The first call warms up; the second is timed by generate()'s own timings,
// which start after the prompt pass.
async function runOursApi(job) {
  const { loadModel } = await import(pathToFileURL(path.join(repo, "dist/index.js")).href);
  const t0 = performance.now();
  const model = await loadModel(job.file, { threads: job.threads, contextSize: job.contextSize, sequences: 1 });
  const loadMs = performance.now() - t0;
  const result = { loadMs, rssAfterLoadMiB: rssMiB(), prefill: {}, decode: null, top1: null };
  const nVocab = model.info().engine.nVocab;
  const prompt = promptTokens(16, 3, Math.min(nVocab, await promptIdLimit(job.file)));
  const options = { temperature: 0, ignoreEos: true };
  const warm = await model.generate(prompt, { ...options, maxTokens: 1 + (job.decodeWarmup ?? 8) });
  result.top1 = warm.tokens[0];
  if (job.decode > 0) {
    const timed = await model.generate(prompt, { ...options, maxTokens: job.decode + 1 });
    result.decode = timed.timings.decodeTokensPerSecond;
  }
  result.rssAfterRunMiB = rssMiB();
  await model.dispose();
  return result;
}

async function runPeer(job) {
  const { getLlama } = await import("node-llama-cpp");
  const t0 = performance.now();
  // build: "never" makes a missing prebuilt binary an error instead of a source build
  const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
  const model = await llama.loadModel({ modelPath: job.file, gpuLayers: 0 });
  const context = await model.createContext({
    contextSize: job.contextSize,
    batchSize: Math.max(...job.prefill, 16),
    threads: job.threads,
    sequences: 1,
  });
  const loadMs = performance.now() - t0;
  const result = { loadMs, rssAfterLoadMiB: rssMiB(), prefill: {}, decode: null, top1: null };
  const sequence = context.getSequence();
  const vocabHi = await promptIdLimit(job.file);

  // top-1 after the 16-token probe: the first greedy token
  for await (const token of sequence.evaluate(promptTokens(16, 3, vocabHi), { temperature: 0 })) {
    result.top1 = token;
    break;
  }
  await sequence.clearHistory();

  for (const n of job.prefill) {
    const tokens = promptTokens(n, 3, vocabHi);
    const t = performance.now();
    await sequence.evaluateWithoutGeneratingNewTokens(tokens);
    result.prefill[n] = n / ((performance.now() - t) / 1000);
    await sequence.clearHistory();
  }
  if (job.decode > 0) {
    await sequence.evaluateWithoutGeneratingNewTokens(promptTokens(16, 3, vocabHi));
    // the first generated token still needs the prompt's logits; time the job.decode steps after
    // the warm-up ones
    const warmup = job.decodeWarmup ?? 8;
    let produced = 0;
    let t = 0;
    for await (const token of sequence.evaluate([promptTokens(17, 3, vocabHi)[16]], { temperature: 0 })) {
      void token;
      if (produced === warmup) t = performance.now();
      if (++produced > warmup + job.decode) break;
    }
    result.decode = job.decode / ((performance.now() - t) / 1000);
  }
  result.rssAfterRunMiB = rssMiB();
  await context.dispose();
  await model.dispose();
  await llama.dispose();
  return result;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const job = JSON.parse(process.argv[2]);
  try {
    const run = { ours: runOurs, "ours-api": runOursApi, peer: runPeer }[job.engine];
    if (!run) throw new Error(`unknown engine "${job.engine}"; expected ours, ours-api or peer`);
    const result = await run(job);
    process.stdout.write(JSON.stringify({ ok: true, ...result }) + "\n");
  } catch (error) {
    process.stdout.write(JSON.stringify({ ok: false, error: `${error?.code ?? ""} ${error?.message ?? error}`.trim() }) + "\n");
  }
  process.exit(0);
}
