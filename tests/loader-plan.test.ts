// openModelFiles: plans and info for every fixture model, the published GEB-1.3B config on a
// sparse full-size checkpoint, GEB config mapping, and one broken model per validation rule.

import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { readGguf } from "../lib/formats/gguf.js";
import { writeGguf, type GgufWriteTensor, type GgufWriteValue } from "../lib/formats/gguf-writer.js";
import { readSafetensors } from "../lib/formats/safetensors.js";
import { writeSafetensors, type SafetensorsWriteTensor } from "../lib/formats/safetensors-writer.js";
import { GEB_SPECIAL_TOKENS, gebSpecialTokenIds, gebTensorMappings, mapGebConfig } from "../lib/model/geb-conventions.js";
import { expectedPlanShapes, type LoadProgress } from "../lib/model/info.js";
import { loadModel } from "../lib/model.js";
import { openModelFiles } from "../lib/model/load-plan.js";
import type { ModelPlan, TensorRef } from "../lib/model/plan.js";
import { writeRandomCheckpoint } from "../lib/tools/random-checkpoint.js";
import { GEB_1_3B_DIR, GEB_TINY_DIR, LLAMA_TINY_F16_GGUF, LLAMA_TINY_GGUF, STORIES260K_GGUF, sharedPath } from "./fixtures.js";
import { TINY_GEB_CONFIG, expectGebError, makeTempDir, offsetOf, patchFile } from "./loader-helpers.js";

const temp = makeTempDir("plan");
afterAll(() => temp.remove());

const GEB_TINY_TOKENIZER = join(GEB_TINY_DIR, "GEBtokenizer.model");

function ref(plan: ModelPlan, name: string): TensorRef {
  const found = plan.tensors.find((t) => t.name === name);
  expect(found, `plan tensor ${name}`).toBeDefined();
  return found as TensorRef;
}

describe("GGUF fixtures", () => {
  it("plans llama-tiny", async () => {
    const { plan, info, tokenizerSource } = await openModelFiles(LLAMA_TINY_GGUF);
    expect(plan.hparams).toEqual({
      arch: "llama",
      nLayer: 4,
      nEmbd: 256,
      nHead: 8,
      nHeadKv: 2,
      headDim: 32,
      nFf: 704,
      nVocab: 4000,
      nCtxTrain: 256,
      rmsEps: Math.fround(1e-5),
      ropeBase: 10000,
      ropeDim: 32,
    });
    expect(plan.files).toEqual([LLAMA_TINY_GGUF]);
    expect(plan.tensors).toHaveLength(39);
    expect(tokenizerSource).toEqual({ kind: "gguf", path: LLAMA_TINY_GGUF });

    // Names lose ".weight", shapes become [rows, rowLength], offsets stay absolute.
    const gguf = await readGguf(LLAMA_TINY_GGUF);
    const k = ref(plan, "blk.0.attn_k");
    const source = gguf.tensors.find((t) => t.name === "blk.0.attn_k.weight");
    expect(k.shape).toEqual([64, 256]);
    expect(k.offset).toBe(source?.offset);
    expect(k.nbytes).toBe(64 * 256 * 4);
    expect(k.type).toBe("f32");
    expect(ref(plan, "token_embd").shape).toEqual([4000, 256]);
    expect(ref(plan, "output").shape).toEqual([4000, 256]);
    expect(ref(plan, "blk.3.ffn_down").shape).toEqual([256, 704]);
    expect(ref(plan, "output_norm").shape).toEqual([256]);

    expect(info).toMatchObject({
      format: "gguf",
      architecture: "llama",
      name: "llama-tiny",
      layers: 4,
      embeddingSize: 256,
      heads: 8,
      kvHeads: 2,
      headDim: 32,
      ffnSize: 704,
      vocabSize: 4000,
      contextLength: 256,
      tiedOutput: false,
      tensorCount: 39,
      tensorTypes: { F32: 39 },
      fileSize: 19_558_752,
    });
    expect(info.parameterCount).toBe(4_868_352);
    expect(info.loadTimeMs).toBeGreaterThan(0);
  });

  it("plans llama-tiny-f16", async () => {
    const { plan, info } = await openModelFiles(LLAMA_TINY_F16_GGUF);
    expect(info.tensorTypes).toEqual({ F16: 30, F32: 9 });
    expect(ref(plan, "blk.0.attn_q").type).toBe("f16");
    expect(ref(plan, "blk.0.attn_norm").type).toBe("f32");
    expect(ref(plan, "blk.0.attn_q").nbytes).toBe(256 * 256 * 2);
  });

  it("plans stories260K with tied output", async () => {
    const { plan, info } = await openModelFiles(STORIES260K_GGUF);
    expect(info.tiedOutput).toBe(true);
    expect(plan.tensors.some((t) => t.name === "output")).toBe(false);
    expect(plan.hparams).toMatchObject({ nLayer: 5, nEmbd: 64, nHead: 8, nHeadKv: 4, headDim: 8, nFf: 172, nVocab: 512, nCtxTrain: 512, ropeDim: 8 });
  });

  it("reports progress up to the file size", async () => {
    const events: LoadProgress[] = [];
    await openModelFiles(LLAMA_TINY_GGUF, { onProgress: (p) => events.push(p) });
    expect(events.map((e) => e.phase)).toEqual(["header", "plan"]);
    for (const e of events) expect(e.loadedBytes).toBeLessThanOrEqual(e.totalBytes);
    expect(events[events.length - 1].loadedBytes).toBe(19_558_752);
  });
});

describe("GEB directory fixtures", () => {
  it("plans geb-tiny with split fused matrices", async () => {
    const { plan, info, tokenizerSource } = await openModelFiles(GEB_TINY_DIR);
    expect(plan.hparams).toEqual({
      arch: "geb",
      nLayer: 4,
      nEmbd: 256,
      nHead: 8,
      nHeadKv: 2,
      headDim: 32,
      nFf: 704,
      nVocab: 4032,
      nCtxTrain: 256,
      rmsEps: 1e-5,
      ropeBase: 10000,
      ropeDim: 16,
    });
    expect(plan.tensors).toHaveLength(4 * 9 + 3);
    expect(tokenizerSource).toEqual({ kind: "geb-dir", dir: GEB_TINY_DIR, modelFile: GEB_TINY_TOKENIZER });

    const file = await readSafetensors(join(GEB_TINY_DIR, "model.safetensors"));
    const kv = file.tensors.find((t) => t.name === "transformer.encoder.layers.2.self_attention.key_value.weight");
    const k = ref(plan, "blk.2.attn_k");
    const v = ref(plan, "blk.2.attn_v");
    expect(k.offset).toBe(kv?.offset);
    expect(k.shape).toEqual([64, 256]);
    expect(v.offset).toBe(k.offset + 64 * 256 * 2);
    expect(k.nbytes + v.nbytes).toBe(kv?.nbytes);

    const up = file.tensors.find((t) => t.name === "transformer.encoder.layers.1.mlp.dense_h_to_4h.weight");
    const gate = ref(plan, "blk.1.ffn_gate");
    expect(gate.offset).toBe(up?.offset);
    expect(ref(plan, "blk.1.ffn_up").offset).toBe(gate.offset + 704 * 256 * 2);
    expect(ref(plan, "blk.1.ffn_up").shape).toEqual([704, 256]);
    expect(ref(plan, "blk.1.ffn_down").shape).toEqual([256, 704]);
    expect(ref(plan, "output").type).toBe("bf16");

    expect(info).toMatchObject({ format: "geb", architecture: "geb", name: "geb-tiny", tensorCount: 31, tensorTypes: { BF16: 31 }, ropeDim: 16 });
    expect(info.parameterCount).toBe(file.tensors.reduce((sum, t) => sum + t.nbytes / 2, 0));
  });

  it("covers every source byte exactly once", async () => {
    const { plan } = await openModelFiles(GEB_TINY_DIR);
    const file = await readSafetensors(join(GEB_TINY_DIR, "model.safetensors"));
    const ranges = plan.tensors.map((t) => [t.offset, t.offset + t.nbytes]).sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i][0]).toBe(ranges[i - 1][1]);
    expect(ranges[0][0]).toBe(file.dataOffset);
    expect(ranges[ranges.length - 1][1]).toBe(file.fileSize);
  });
});

describe("published GEB-1.3B config", () => {
  let dir: string;
  beforeAll(async () => {
    dir = join(temp.dir, "geb-1.3b-sparse");
    const config = JSON.parse(await readFile(join(GEB_1_3B_DIR, "config.json"), "utf8"));
    await writeRandomCheckpoint({
      config,
      out: dir,
      format: "geb",
      zeros: true,
      tokenizerModel: sharedPath("tokenizer-suites", "chatglm3", "tokenizer.model"),
    });
  });

  it("loads a sparse full-size checkpoint with matching info", async () => {
    const { plan, info } = await openModelFiles(dir);
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
      ropeBase: 10000,
      rmsEps: 1e-5,
      tiedOutput: false,
      tensorCount: 24 * 7 + 3,
      tensorTypes: { BF16: 24 * 7 + 3 },
    });
    // 1.35 billion weights: 2 x 64896 x 2048 (embedding, output) + 24 layers + final norm.
    expect(info.parameterCount).toBe(1_348_044_800);
    expect(info.fileSize).toBeGreaterThan(2 * 1_348_044_800);
    expect(plan.tensors).toHaveLength(24 * 9 + 3);
    expect(ref(plan, "blk.23.attn_k").shape).toEqual([512, 2048]);
    expect(ref(plan, "blk.23.attn_v").offset).toBe(ref(plan, "blk.23.attn_k").offset + 512 * 2048 * 2);
    expect(ref(plan, "blk.0.ffn_up").shape).toEqual([5632, 2048]);
  });

  it("stores the sparse file without its data", async () => {
    const weights = await stat(join(dir, "model.safetensors"));
    expect(weights.size).toBeGreaterThan(2.6e9);
    expect(weights.blocks * 512).toBeLessThan(64 * 1024 * 1024);
  });

  it("maps missing keys to the model's defaults", async () => {
    const raw = JSON.parse(await readFile(join(GEB_1_3B_DIR, "config.json"), "utf8"));
    expect(raw.rmsnorm).toBeUndefined();
    expect(raw.add_qkv_bias).toBeUndefined();
    const { hparams, tiedOutput } = mapGebConfig(raw, "config.json");
    expect(hparams.arch).toBe("geb");
    expect(tiedOutput).toBe(false);
    expect(gebSpecialTokenIds(64789).get("[gMASK]")).toBe(64790);
    expect(gebSpecialTokenIds(64789).get("<|observation|>")).toBe(64797);
    expect(64789 + GEB_SPECIAL_TOKENS.length).toBeLessThanOrEqual(hparams.nVocab);
  });
});

describe("GEB config mapping", () => {
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    ["add_bias_linear", { add_bias_linear: true }, "ERR_GEB_UNSUPPORTED", /add_bias_linear/],
    ["rmsnorm false", { rmsnorm: false }, "ERR_GEB_UNSUPPORTED", /LayerNorm/],
    ["add_qkv_bias", { add_qkv_bias: true }, "ERR_GEB_UNSUPPORTED", /add_qkv_bias/],
    ["post-norm residual", { apply_residual_connection_post_layernorm: true }, "ERR_GEB_UNSUPPORTED", /residual/],
    ["no final norm", { post_layer_norm: false }, "ERR_GEB_UNSUPPORTED", /final RMSNorm/],
    ["prefix tuning", { pre_seq_len: 128 }, "ERR_GEB_UNSUPPORTED", /prefix tuning/],
    ["scaled rope", { rope_ratio: 50 }, "ERR_GEB_UNSUPPORTED", /rope_ratio/],
    ["missing num_layers", { num_layers: undefined }, "ERR_GEB_MODEL_FORMAT", /no "num_layers"/],
    ["string size", { hidden_size: "64" }, "ERR_GEB_MODEL_FORMAT", /"hidden_size" is "64", but it must be a positive integer/],
    ["heads not divisible", { num_key_value_heads: 3 }, "ERR_GEB_MODEL_FORMAT", /multiple of num_key_value_heads/],
    ["odd head size", { kv_channels: 18 }, "ERR_GEB_MODEL_FORMAT", /multiple of 4/],
    ["bad epsilon", { layernorm_epsilon: "1e-5" }, "ERR_GEB_MODEL_FORMAT", /layernorm_epsilon/],
    ["bool as string", { rmsnorm: "true" }, "ERR_GEB_MODEL_FORMAT", /true or false/],
  ];
  it.each(cases)("rejects %s", (_label, change, code, message) => {
    let caught: unknown;
    try {
      mapGebConfig({ ...TINY_GEB_CONFIG, ...change }, "config.json");
    } catch (error) {
      caught = error;
    }
    expect((caught as { code?: string })?.code).toBe(code);
    expect((caught as Error).message).toMatch(message);
  });

  it("falls back to ChatGLM3 multi-query keys", () => {
    const { num_key_value_heads: _unused, ...rest } = TINY_GEB_CONFIG;
    expect(mapGebConfig({ ...rest, multi_query_attention: true, multi_query_group_num: 1 }, "c").hparams.nHeadKv).toBe(1);
    expect(mapGebConfig(rest, "c").hparams.nHeadKv).toBe(4);
  });

  it("drops the output matrix when tied", () => {
    const { hparams, tiedOutput } = mapGebConfig({ ...TINY_GEB_CONFIG, tie_word_embeddings: true }, "c");
    expect(tiedOutput).toBe(true);
    expect(gebTensorMappings(hparams, tiedOutput).some((m) => m.parts[0].name === "output")).toBe(false);
  });
});

/** Write a tiny GEB directory whose tensor list passes through `edit`. */
async function tinyGebDir(name: string, edit: (tensors: SafetensorsWriteTensor[]) => SafetensorsWriteTensor[] = (t) => t, config: object = TINY_GEB_CONFIG): Promise<string> {
  const dir = join(temp.dir, name);
  await mkdir(dir, { recursive: true });
  const { hparams, tiedOutput } = mapGebConfig(config, "c");
  const tensors = gebTensorMappings(hparams, tiedOutput).map((m) => ({ name: m.source, dtype: "BF16", shape: m.shape }));
  await writeSafetensors(join(dir, "model.safetensors"), edit(tensors));
  await writeFile(join(dir, "config.json"), JSON.stringify(config));
  await writeFile(join(dir, "GEBtokenizer.model"), await readFile(GEB_TINY_TOKENIZER));
  return dir;
}

describe("broken GEB directories", () => {
  const query0 = "transformer.encoder.layers.0.self_attention.query.weight";

  it("accepts the unedited tiny directory", async () => {
    const { info } = await openModelFiles(await tinyGebDir("ok"));
    expect(info.layers).toBe(2);
  });
  it("no config.json", async () => {
    const dir = join(temp.dir, "empty");
    await mkdir(dir, { recursive: true });
    await expectGebError(openModelFiles(dir), "ERR_GEB_MODEL_FORMAT", /no config\.json/);
  });
  it("config.json not JSON", async () => {
    const dir = await tinyGebDir("badconfig");
    await writeFile(join(dir, "config.json"), "{ num_layers: 2 ");
    await expectGebError(openModelFiles(dir), "ERR_GEB_MODEL_FORMAT", /config\.json is not valid JSON/);
  });
  it("no weights", async () => {
    const dir = join(temp.dir, "noweights");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "config.json"), JSON.stringify(TINY_GEB_CONFIG));
    await expectGebError(openModelFiles(dir), "ERR_GEB_MODEL_FORMAT", /no model\.safetensors/);
  });
  it("pickle weights only", async () => {
    const dir = join(temp.dir, "pickle");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "config.json"), JSON.stringify(TINY_GEB_CONFIG));
    await writeFile(join(dir, "pytorch_model.bin"), "x");
    await expectGebError(openModelFiles(dir), "ERR_GEB_UNSUPPORTED", /safetensors/);
  });
  it("no tokenizer", async () => {
    const dir = await tinyGebDir("notok");
    const { rm } = await import("node:fs/promises");
    await rm(join(dir, "GEBtokenizer.model"));
    await expectGebError(openModelFiles(dir), "ERR_GEB_MODEL_FORMAT", /GEBtokenizer\.model is missing/);
  });
  it("missing tensor is named", async () => {
    const dir = await tinyGebDir("missing", (t) => t.filter((x) => x.name !== "transformer.encoder.layers.1.mlp.dense_4h_to_h.weight"));
    await expectGebError(openModelFiles(dir), "ERR_GEB_MODEL_FORMAT", /missing tensor "transformer\.encoder\.layers\.1\.mlp\.dense_4h_to_h\.weight"/);
  });
  it("wrong shape", async () => {
    const dir = await tinyGebDir("shape", (t) => t.map((x) => (x.name === query0 ? { ...x, shape: [64, 32] } : x)));
    await expectGebError(openModelFiles(dir), "ERR_GEB_MODEL_FORMAT", /shape \[64, 32\].*needs \[64, 64\]/);
  });
  it("fused matrix of the wrong height", async () => {
    const kv = "transformer.encoder.layers.0.self_attention.key_value.weight";
    const dir = await tinyGebDir("kvshape", (t) => t.map((x) => (x.name === kv ? { ...x, shape: [32, 64] } : x)));
    await expectGebError(openModelFiles(dir), "ERR_GEB_MODEL_FORMAT", /key_value/);
  });
  it("unsupported dtype", async () => {
    const dir = await tinyGebDir("dtype", (t) => t.map((x) => (x.name === query0 ? { ...x, dtype: "I8" } : x)));
    await expectGebError(openModelFiles(dir), "ERR_GEB_UNSUPPORTED", /dtype I8/);
  });
  it("bias tensor", async () => {
    const dir = await tinyGebDir("bias", (t) => [...t, { name: "transformer.encoder.layers.0.self_attention.query.bias", dtype: "BF16", shape: [64] }]);
    await expectGebError(openModelFiles(dir), "ERR_GEB_UNSUPPORTED", /bias/);
  });
  it("unknown extra tensor", async () => {
    const dir = await tinyGebDir("extra", (t) => [...t, { name: "transformer.encoder.layers.2.input_layernorm.weight", dtype: "BF16", shape: [64] }]);
    await expectGebError(openModelFiles(dir), "ERR_GEB_MODEL_FORMAT", /layers\.2\.input_layernorm.*not part of a 2-layer/);
  });
  it("ignores rotary inverse frequencies and accepts F32", async () => {
    const dir = await tinyGebDir("invfreq", (t) => [...t.map((x) => ({ ...x, dtype: "F32" })), { name: "transformer.rotary_pos_emb.inv_freq", dtype: "F32", shape: [4] }]);
    const { plan, info } = await openModelFiles(dir);
    expect(info.tensorTypes).toEqual({ F32: 2 * 7 + 3 });
    expect(ref(plan, "blk.0.attn_q").type).toBe("f32");
  });
  it("config contradicting the weights", async () => {
    const dir = await tinyGebDir("contradiction", (t) => t, { ...TINY_GEB_CONFIG, ffn_hidden_size: 128 });
    await writeFile(join(dir, "config.json"), JSON.stringify({ ...TINY_GEB_CONFIG, ffn_hidden_size: 160 }));
    await expectGebError(openModelFiles(dir), "ERR_GEB_MODEL_FORMAT", /dense_h_to_4h.*\[256, 64\].*\[320, 64\]/);
  });
  it("absurd num_layers", async () => {
    const dir = await tinyGebDir("layers");
    await writeFile(join(dir, "config.json"), JSON.stringify({ ...TINY_GEB_CONFIG, num_layers: 2 ** 40 }));
    await expectGebError(openModelFiles(dir), "ERR_GEB_MODEL_FORMAT", /num_layers = 1099511627776, which needs at least/);
  });
  // Values no model can have: each error names the key and its value and calls the file corrupt.
  const corruptConfigs: [string, number, RegExp][] = [
    ["rope_ratio", 0, /"rope_ratio" is 0, but it must be a positive number; the model file is corrupt/],
    ["seq_length", -1, /"seq_length" is -1, but it must be a positive integer; the model file is corrupt/],
    ["seq_length", 2 ** 30, /"seq_length" is 1073741824, but it must be at most 16777216 positions; the model file is corrupt/],
    ["num_layers", 0, /"num_layers" is 0, but it must be a positive integer; the model file is corrupt/],
    ["layernorm_epsilon", 5, /"layernorm_epsilon" is 5, but it must be .* below 1; the model file is corrupt/],
  ];
  for (const [key, value, message] of corruptConfigs) {
    it(`corrupt ${key} ${value}`, async () => {
      const dir = await tinyGebDir(`corrupt-${key}-${value}`);
      await writeFile(join(dir, "config.json"), JSON.stringify({ ...TINY_GEB_CONFIG, [key]: value }));
      const error = await expectGebError(openModelFiles(dir), "ERR_GEB_MODEL_FORMAT", message);
      expect(error.received).toBe(value);
    });
  }
  it("scaled rope_ratio stays unsupported", async () => {
    const dir = await tinyGebDir("rope-ratio-2");
    await writeFile(join(dir, "config.json"), JSON.stringify({ ...TINY_GEB_CONFIG, rope_ratio: 2 }));
    await expectGebError(openModelFiles(dir), "ERR_GEB_UNSUPPORTED", /rope_ratio/);
  });
  it("sharded index", async () => {
    const dir = join(temp.dir, "sharded");
    await mkdir(dir, { recursive: true });
    const { hparams } = mapGebConfig(TINY_GEB_CONFIG, "c");
    const all = gebTensorMappings(hparams, false).map((m) => ({ name: m.source, dtype: "BF16", shape: m.shape }));
    const half = Math.floor(all.length / 2);
    await writeSafetensors(join(dir, "model-00001-of-00002.safetensors"), all.slice(0, half));
    await writeSafetensors(join(dir, "model-00002-of-00002.safetensors"), all.slice(half));
    const weightMap = Object.fromEntries(all.map((t, i) => [t.name, i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors"]));
    await writeFile(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    await writeFile(join(dir, "config.json"), JSON.stringify(TINY_GEB_CONFIG));
    await writeFile(join(dir, "tokenizer.model"), await readFile(GEB_TINY_TOKENIZER));
    const { plan, info } = await openModelFiles(dir);
    expect(plan.files).toHaveLength(2);
    expect(new Set(plan.tensors.map((t) => t.file))).toEqual(new Set([0, 1]));
    expect(info.files).toHaveLength(2);
  });
});

/** Write a tiny llama GGUF from TINY_GEB_CONFIG shapes, with metadata and tensors passed through edits. */
async function tinyLlamaGguf(
  name: string,
  editMetadata: (m: [string, GgufWriteValue][]) => [string, GgufWriteValue][] = (m) => m,
  editTensors: (t: GgufWriteTensor[]) => GgufWriteTensor[] = (t) => t,
): Promise<string> {
  const base = join(temp.dir, "tiny-base.gguf");
  await writeRandomCheckpoint({ config: TINY_GEB_CONFIG, out: base, format: "gguf", zeros: true });
  const gguf = await readGguf(base);
  const metadata = [...gguf.metadata].map(([key, value]): [string, GgufWriteValue] => {
    const type = gguf.metadataTypes.get(key) as "u32" | "f32" | "string";
    return [key, { type, value } as GgufWriteValue];
  });
  const { hparams } = mapGebConfig(TINY_GEB_CONFIG, "c");
  const tensors: GgufWriteTensor[] = [...expectedPlanShapes(hparams, false)].map(([n, shape]) => ({
    name: n + ".weight",
    type: "F32",
    ne: [...shape].reverse(),
  }));
  const path = join(temp.dir, name + ".gguf");
  await writeGguf(path, { metadata: editMetadata(metadata), tensors: editTensors(tensors) });
  return path;
}

describe("broken GGUF models", () => {
  const setKey = (key: string, value: GgufWriteValue) => (m: [string, GgufWriteValue][]) => [...m.filter(([k]) => k !== key), [key, value] as [string, GgufWriteValue]];
  const dropKey = (key: string) => (m: [string, GgufWriteValue][]) => m.filter(([k]) => k !== key);

  it("accepts the unedited tiny file", async () => {
    const { info } = await openModelFiles(await tinyLlamaGguf("ok"));
    expect(info).toMatchObject({ architecture: "llama", layers: 2, ropeDim: 8, vocabSize: 128 });
  });
  it("vocabulary-only file", async () => {
    await expectGebError(openModelFiles(sharedPath("tokenizer-suites", "ggml-vocab-llama-spm.gguf")), "ERR_GEB_MODEL_FORMAT", /contains no weights/);
  });
  it("other architecture", async () => {
    const path = await tinyLlamaGguf("gpt2", setKey("general.architecture", { type: "string", value: "gpt2" }));
    await expectGebError(openModelFiles(path), "ERR_GEB_UNSUPPORTED", /architecture "gpt2"/);
  });
  it("K-quant tensor", async () => {
    // The type check comes before the shape check, so any row length that is a whole Q4_K block works.
    const path = await tinyLlamaGguf("q4k", undefined, (t) => t.map((x) => (x.name === "blk.0.ffn_gate.weight" ? { ...x, type: "Q4_K", ne: [256, 96] } : x)));
    await expectGebError(openModelFiles(path), "ERR_GEB_UNSUPPORTED", /"blk\.0\.ffn_gate\.weight" is stored as Q4_K/);
  });
  it("missing tensor is named", async () => {
    const path = await tinyLlamaGguf("missing", undefined, (t) => t.filter((x) => x.name !== "blk.1.ffn_up.weight"));
    await expectGebError(openModelFiles(path), "ERR_GEB_MODEL_FORMAT", /missing tensor "blk\.1\.ffn_up"/);
  });
  it("wrong shape", async () => {
    const path = await tinyLlamaGguf("shape", undefined, (t) => t.map((x) => (x.name === "blk.0.attn_k.weight" ? { ...x, ne: [64, 16] } : x)));
    await expectGebError(openModelFiles(path), "ERR_GEB_MODEL_FORMAT", /"blk\.0\.attn_k" has shape \[16, 64\].*\[32, 64\]/);
  });
  it("tensor outside the layout", async () => {
    const path = await tinyLlamaGguf("ropefreqs", undefined, (t) => [...t, { name: "rope_freqs.weight", type: "F32", ne: [8] }]);
    await expectGebError(openModelFiles(path), "ERR_GEB_UNSUPPORTED", /rope_freqs\.weight/);
  });
  it("block beyond block_count", async () => {
    const path = await tinyLlamaGguf("extrablock", undefined, (t) => [...t, { name: "blk.2.attn_norm.weight", type: "F32", ne: [64] }]);
    await expectGebError(openModelFiles(path), "ERR_GEB_UNSUPPORTED", /blk\.2\.attn_norm/);
  });
  it("missing hyperparameter key", async () => {
    const path = await tinyLlamaGguf("nokey", dropKey("llama.block_count"));
    await expectGebError(openModelFiles(path), "ERR_GEB_MODEL_FORMAT", /"llama\.block_count" is missing/);
  });
  it("mistyped hyperparameter key", async () => {
    const path = await tinyLlamaGguf("badkey", setKey("llama.embedding_length", { type: "string", value: "64" }));
    await expectGebError(openModelFiles(path), "ERR_GEB_MODEL_FORMAT", /llama\.embedding_length/);
  });
  it("mixture of experts", async () => {
    const path = await tinyLlamaGguf("moe", setKey("llama.expert_count", { type: "u32", value: 8 }));
    await expectGebError(openModelFiles(path), "ERR_GEB_UNSUPPORTED", /mixture of experts/);
  });
  it("rope scaling", async () => {
    const path = await tinyLlamaGguf("scaling", setKey("llama.rope.scaling.type", { type: "string", value: "yarn" }));
    await expectGebError(openModelFiles(path), "ERR_GEB_UNSUPPORTED", /yarn/);
  });
  it("quantized norm", async () => {
    const path = await tinyLlamaGguf("qnorm", undefined, (t) => t.map((x) => (x.name === "output_norm.weight" ? { ...x, type: "Q8_0" } : x)));
    await expectGebError(openModelFiles(path), "ERR_GEB_UNSUPPORTED", /output_norm.*quantized/);
  });
  it("more tokens than embedding rows", async () => {
    const tokens = Array.from({ length: 129 }, (_, i) => `t${i}`);
    const path = await tinyLlamaGguf("vocab", setKey("tokenizer.ggml.tokens", { type: "array", elementType: "string", value: tokens }));
    await expectGebError(openModelFiles(path), "ERR_GEB_MODEL_FORMAT", /129 tokens/);
  });
  it("head counts that do not divide", async () => {
    const path = await tinyLlamaGguf("heads", setKey("llama.attention.head_count_kv", { type: "u32", value: 3 }));
    await expectGebError(openModelFiles(path), "ERR_GEB_MODEL_FORMAT", /do not divide/);
  });
  it("absurd block_count", async () => {
    const path = await tinyLlamaGguf("layers", setKey("llama.block_count", { type: "u32", value: 2 ** 31 }));
    await expectGebError(openModelFiles(path), "ERR_GEB_MODEL_FORMAT", /block_count is 2147483648, which needs at least/);
  });
  const corruptKeys: [string, GgufWriteValue, RegExp][] = [
    ["llama.rope.freq_base", { type: "f32", value: 0 }, /llama\.rope\.freq_base is 0, but it must be a finite float32 above 1; the model file is corrupt/],
    ["llama.rope.freq_base", { type: "f32", value: NaN }, /llama\.rope\.freq_base is NaN/],
    ["llama.context_length", { type: "u32", value: 2 ** 32 - 1 }, /llama\.context_length is 4294967295, but it must be at most 16777216 positions; the model file is corrupt/],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: 1e30 }, /layer_norm_rms_epsilon is 1\.00\d*e\+30, but it must be above 0 \(in float32\) and below 1/],
  ];
  for (const [key, value, message] of corruptKeys) {
    it(`corrupt ${key} ${String(value.value)}`, async () => {
      const path = await tinyLlamaGguf(`corrupt-${key}-${String(value.value)}`, setKey(key, value));
      await expectGebError(openModelFiles(path), "ERR_GEB_MODEL_FORMAT", message);
    });
  }
  it("corrupt geb.rope.freq_base in a geb file", async () => {
    const asGeb = (m: [string, GgufWriteValue][]): [string, GgufWriteValue][] =>
      m.map(([key, value]): [string, GgufWriteValue] => (key === "general.architecture" ? [key, { type: "string", value: "geb" }] : [key.replace(/^llama\./, "geb."), value]));
    const path = await tinyLlamaGguf("corrupt-geb-rope", (m) => setKey("geb.rope.freq_base", { type: "f32", value: 0 })(asGeb(m)));
    await expectGebError(openModelFiles(path), "ERR_GEB_MODEL_FORMAT", /GGUF key geb\.rope\.freq_base is 0/);
  });
  it("loadModel names a corrupt key, not an option", async () => {
    // Patch stories260K in place: each key's value follows its name and a 4-byte type id.
    const patched = async (name: string, key: string, write: (bytes: Buffer, at: number) => void): Promise<string> => {
      const path = join(temp.dir, name);
      await patchFile(STORIES260K_GGUF, path, (bytes) => write(bytes, offsetOf(bytes, key) + key.length + 4));
      return path;
    };
    const hugeContext = await patched("context.gguf", "llama.context_length", (bytes, at) => void bytes.writeUInt32LE(2 ** 31, at));
    await expectGebError(loadModel(hugeContext), "ERR_GEB_MODEL_FORMAT", /llama\.context_length is 2147483648/);
    const zeroBase = await patched("base.gguf", "llama.rope.freq_base", (bytes, at) => void bytes.writeFloatLE(0, at));
    await expectGebError(loadModel(zeroBase), "ERR_GEB_MODEL_FORMAT", /llama\.rope\.freq_base is 0/);

    // A valid context past contextSize's maximum is capped by default instead of failing as an option.
    const longContext = await patched("long.gguf", "llama.context_length", (bytes, at) => void bytes.writeUInt32LE(2 ** 21, at));
    const model = await loadModel(longContext, { threads: 1 });
    try {
      expect(model.info().contextSize).toBe(2 ** 20);
    } finally {
      await model.dispose();
    }
  });
  it("missing path", async () => {
    await expectGebError(openModelFiles(join(temp.dir, "nothing-here.gguf")), "ERR_GEB_IO", /no such file/);
  });
  it("a file that is not a model", async () => {
    await expectGebError(openModelFiles(join(GEB_TINY_DIR, "GEBtokenizer.model")), "ERR_GEB_MODEL_FORMAT", /Not a GGUF file/);
  });
  it("a file inside a GEB directory", async () => {
    const error = await expectGebError(openModelFiles(join(GEB_TINY_DIR, "model.safetensors")), "ERR_GEB_MODEL_FORMAT", /pass the directory/);
    expect(error.expected).toBe(GEB_TINY_DIR);
  });
});
