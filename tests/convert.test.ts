// Tests of `geb-cpu convert` and of loadModel's weightType: GEB directories written as `geb` GGUF
// files and llama GGUF files re-typed must load in place (no conversion at load), give the same
// logits as the source converted at load with the same encoder, and carry a tokenizer that
// encodes like GEBtokenizer.model. Also the error cases of the command and its output file rules.

import { execFileSync } from "node:child_process";
import { copyFile, link, lstat, mkdir, mkdtemp, open, readdir, readFile, rm, stat, symlink, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";

import convertCommand from "../lib/cli/convert.js";
import { readGguf } from "../lib/formats/gguf.js";
import type { WeightType } from "../lib/formats/quantize.js";
import { loadModel, type LoadModelOptions, type Model } from "../lib/model.js";
import { convertModel } from "../lib/model/convert.js";
import { loadTokenizer } from "../lib/tokenizer/index.js";
import { GEB_TINY_DIR, LLAMA_TINY_GGUF, STORIES260K_GGUF, sharedPath } from "./fixtures.js";

// F16 weights against the F32 source: the largest logit difference seen on geb-tiny and
// llama-tiny was below 2e-3; this bound leaves room for other kernel tiers.
const F16_LOGIT_TOLERANCE = 2e-2;

interface TokenizerCase {
  text: string;
  ids: number[];
  decoded: string;
}
interface ReferencePrompt {
  name: string;
  prompt_ids: number[];
}
const gebReference = JSON.parse(await readFile(sharedPath("models/geb-tiny/reference.json"), "utf8")) as {
  tokenizer_cases: TokenizerCase[];
  prompts: ReferencePrompt[];
};
const PROMPT_IDS = gebReference.prompts[0]!.prompt_ids;
const LLAMA_PROMPT_IDS = (JSON.parse(await readFile(sharedPath("models/llama-tiny/reference.json"), "utf8")) as { prompts: ReferencePrompt[] }).prompts[0]!
  .prompt_ids;

let workDir = "";
let cacheDir = "";
const gebFiles = new Map<WeightType, string>();

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), "geb-convert-"));
  cacheDir = join(workDir, "cache");
  for (const type of ["f32", "f16", "bf16", "q8_0", "q4_0"] as const) {
    const output = join(workDir, `geb-tiny-${type}.gguf`);
    await convertModel(GEB_TINY_DIR, output, { type });
    gebFiles.set(type, output);
  }
}, 60_000);

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

afterEach(() => vi.restoreAllMocks());

/** Load a model, run `fn` on it, and dispose of it. */
async function withModel<T>(path: string, options: LoadModelOptions, fn: (model: Model) => Promise<T>): Promise<T> {
  const model = await loadModel(path, { threads: 2, ...options });
  try {
    return await fn(model);
  } finally {
    await model.dispose();
  }
}

/** Logits after every position of `ids`. */
async function logitsOf(path: string, options: LoadModelOptions, ids: readonly number[]): Promise<Float32Array[]> {
  return withModel(path, options, async (model) => (await model.evaluate(ids)).map((row) => row.slice()));
}

function maxDifference(a: Float32Array[], b: Float32Array[]): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    expect(a[i]!.length).toBe(b[i]!.length);
    for (let j = 0; j < a[i]!.length; j++) max = Math.max(max, Math.abs(a[i]![j]! - b[i]![j]!));
  }
  return max;
}

/** Run the convert command and capture what it writes. */
async function runConvert(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const code = await convertCommand.run(args);
    return { code, stdout, stderr };
  } finally {
    vi.restoreAllMocks();
  }
}

/** Files in the work folder whose names mark them as temporary conversion outputs. */
async function temporaryFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith(".tmp"));
}

describe("geb GGUF from geb-tiny", () => {
  it("f32 gives the logits of the BF16 directory exactly", async () => {
    const direct = await logitsOf(GEB_TINY_DIR, {}, PROMPT_IDS);
    const converted = await logitsOf(gebFiles.get("f32")!, {}, PROMPT_IDS);
    expect(maxDifference(direct, converted)).toBe(0);
  });

  it("bf16 gives the logits of the directory exactly", async () => {
    const direct = await logitsOf(GEB_TINY_DIR, {}, PROMPT_IDS);
    const converted = await logitsOf(gebFiles.get("bf16")!, {}, PROMPT_IDS);
    expect(maxDifference(direct, converted)).toBe(0);
  });

  for (const type of ["q8_0", "q4_0", "f16"] as const) {
    it(`${type} gives the logits of convert-at-load`, async () => {
      const atLoad = await logitsOf(GEB_TINY_DIR, { weightType: type, cacheDir }, PROMPT_IDS);
      const converted = await logitsOf(gebFiles.get(type)!, {}, PROMPT_IDS);
      expect(maxDifference(atLoad, converted)).toBe(0);
    });
  }

  for (const type of ["f32", "f16", "bf16", "q8_0", "q4_0"] as const) {
    it(`${type} file is mapped in place`, async () => {
      const path = gebFiles.get(type)!;
      const phases: string[] = [];
      await withModel(path, { onProgress: (p) => phases.push(p.phase) }, async (model) => {
        const info = model.info();
        expect(phases).not.toContain("quantize");
        expect(phases).not.toContain("convert");
        expect(info.weightConversions).toEqual([]);
        expect(info.engine.conversions).toEqual([]);
        expect(info.files).toEqual([path]);
        expect(info.engine.mappedBytes).toBe((await stat(path)).size);
        expect(info.architecture).toBe("geb");
        expect(info.tensorTypes).toEqual(type === "f32" ? { F32: 39 } : { [type.toUpperCase()]: 30, F32: 9 });
        expect(model.tokenizer.family).toBe("geb");
      });
    });
  }

  it("stores the documented geb keys", async () => {
    const gguf = await readGguf(gebFiles.get("q4_0")!);
    expect(gguf.metadata.get("general.architecture")).toBe("geb");
    expect(gguf.metadata.get("general.file_type")).toBe(2);
    expect(gguf.metadata.get("geb.block_count")).toBe(4);
    expect(gguf.metadata.get("geb.rope.dimension_count")).toBe(16);
    expect(gguf.metadata.get("geb.attention.head_count_kv")).toBe(2);
    expect(Array.from(gguf.metadata.get("geb.tokenizer.special_token_ids") as Uint32Array)).toEqual([4000, 4001, 4002, 4003, 4004, 4005, 4006, 4007, 4008]);
    expect((gguf.metadata.get("tokenizer.ggml.tokens") as string[]).length).toBe(4032);
    expect(gguf.tensors.map((t) => t.name)).toContain("blk.3.ffn_gate.weight");
  });
});

describe("tokenizer embedded in a geb GGUF", () => {
  it("encodes the reference cases like GEBtokenizer.model", async () => {
    const fromFile = await loadTokenizer(gebFiles.get("q8_0")!);
    const fromDirectory = await loadTokenizer(GEB_TINY_DIR);
    expect(gebReference.tokenizer_cases.length).toBeGreaterThan(5);
    for (const testCase of gebReference.tokenizer_cases) {
      expect(fromFile.encode(testCase.text), testCase.text).toEqual(testCase.ids);
      expect(fromFile.decode(testCase.ids), testCase.text).toBe(testCase.decoded);
    }
    for (const prompt of gebReference.prompts) {
      expect(fromFile.decode(prompt.prompt_ids), prompt.name).toBe(fromDirectory.decode(prompt.prompt_ids));
    }
  });

  it("encodes the evaluation documents like the directory", async () => {
    const fromFile = await loadTokenizer(gebFiles.get("f16")!);
    const fromDirectory = await loadTokenizer(GEB_TINY_DIR);
    const lines = (await readFile(join(GEB_TINY_DIR, "eval_split.jsonl"), "utf8")).split("\n").filter((line) => line !== "");
    for (const line of lines.slice(0, 20)) {
      const record = JSON.parse(line) as Record<string, unknown>;
      const text = String(record.text ?? Object.values(record).find((v) => typeof v === "string"));
      expect(fromFile.encode(text)).toEqual(fromDirectory.encode(text));
    }
  });

  it("keeps the special tokens, prompt prefix and stop tokens", async () => {
    const fromFile = await loadTokenizer(gebFiles.get("bf16")!);
    const fromDirectory = await loadTokenizer(GEB_TINY_DIR);
    expect(fromFile.vocabSize).toBe(fromDirectory.vocabSize);
    expect(fromFile.specialTokens).toEqual(fromDirectory.specialTokens);
    expect(fromFile.stopTokenIds).toEqual(fromDirectory.stopTokenIds);
    expect(fromFile.encodePrompt("你好")).toEqual(fromDirectory.encodePrompt("你好"));
    expect(fromFile.eosId).toBe(2);
  });

  it("rejects a piece count that disagrees with the token list", async () => {
    const source = gebFiles.get("q4_0")!;
    const key = "geb.tokenizer.sentencepiece.piece_count";
    const pieceCount = (await readGguf(source)).metadata.get(key) as number;
    const withPieceCount = async (count: number): Promise<string> => {
      const bytes = await readFile(source);
      // The u32 value follows the key's name and its 4-byte type id.
      const at = bytes.indexOf(Buffer.from(key, "latin1"));
      expect(at).toBeGreaterThan(0);
      expect(bytes.readUInt32LE(at + key.length + 4)).toBe(pieceCount);
      bytes.writeUInt32LE(count, at + key.length + 4);
      const path = join(workDir, `piece-count-${count}.gguf`);
      await writeFile(path, bytes);
      return path;
    };
    const fewer = await withPieceCount(pieceCount - 1);
    await expect(loadTokenizer(fewer)).rejects.toMatchObject({
      code: "ERR_GEB_MODEL_FORMAT",
      message: expect.stringMatching(new RegExp(`piece_count is ${pieceCount - 1}, but token ${pieceCount - 1} after the pieces is .* disagree`)),
    });
    await expect(loadModel(fewer)).rejects.toMatchObject({ code: "ERR_GEB_MODEL_FORMAT" });
    const more = await withPieceCount(pieceCount + 1);
    await expect(loadTokenizer(more)).rejects.toMatchObject({
      code: "ERR_GEB_MODEL_FORMAT",
      message: expect.stringMatching(new RegExp(`piece_count is ${pieceCount + 1}, but the special token \\S+ has id ${pieceCount}, inside the pieces`)),
    });
  });

  it("renders the GEB chat layout", async () => {
    const messages = [{ role: "user" as const, content: "你好" }];
    const fromFile = await withModel(gebFiles.get("q4_0")!, {}, async (model) => model.chat(messages, { temperature: 0, maxTokens: 4 }));
    const fromDirectory = await withModel(GEB_TINY_DIR, { weightType: "q4_0", cacheDir }, async (model) => model.chat(messages, { temperature: 0, maxTokens: 4 }));
    expect(fromFile.tokens).toEqual(fromDirectory.tokens);
  });
});

describe("GGUF input re-typed", () => {
  it("llama-tiny q8_0 matches quantize-at-load and keeps the metadata", async () => {
    const output = join(workDir, "llama-tiny-q8_0.gguf");
    const result = await convertModel(LLAMA_TINY_GGUF, output, { type: "q8_0" });
    expect(result.architecture).toBe("llama");
    const source = await readGguf(LLAMA_TINY_GGUF);
    const converted = await readGguf(output);
    for (const [key, value] of source.metadata) {
      if (key === "general.file_type") continue;
      expect(converted.metadata.get(key), key).toEqual(value);
    }
    expect(converted.metadata.get("general.file_type")).toBe(7);
    const ids = LLAMA_PROMPT_IDS;
    const atLoad = await logitsOf(LLAMA_TINY_GGUF, { weightType: "q8_0", cacheDir }, ids);
    expect(maxDifference(atLoad, await logitsOf(output, {}, ids))).toBe(0);
  });

  it("geb f32 to q4_0 matches directory", async () => {
    const output = join(workDir, "geb-tiny-from-gguf-q4_0.gguf");
    await convertModel(gebFiles.get("f32")!, output, { type: "q4_0" });
    const fromGguf = await readFile(output);
    const fromDirectory = await readFile(gebFiles.get("q4_0")!);
    expect(fromGguf.equals(fromDirectory)).toBe(true);
  });

  it("keeps matrices whose rows are not whole blocks and says so", async () => {
    const output = join(workDir, "stories-q4_0.gguf");
    const { code, stdout } = await runConvert([STORIES260K_GGUF, output, "--type", "q4_0"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/kept blk\.0\.ffn_down as f32: rows of 172 weights are not whole 32-weight blocks/);
    const gguf = await readGguf(output);
    expect(gguf.tensors.find((t) => t.name === "blk.0.ffn_down.weight")!.type.name).toBe("F32");
    expect(gguf.tensors.find((t) => t.name === "blk.0.attn_q.weight")!.type.name).toBe("Q4_0");
  });
});

describe("chatglm GGUF (llama.cpp's layout)", () => {
  it("fuses gate and up into one ffn_up and uses chatglm keys", async () => {
    const output = join(workDir, "geb-tiny-chatglm-q8_0.gguf");
    const result = await convertModel(GEB_TINY_DIR, output, { type: "q8_0", architecture: "chatglm" });
    expect(result.architecture).toBe("chatglm");
    const gguf = await readGguf(output);
    expect(gguf.metadata.get("general.architecture")).toBe("chatglm");
    expect(gguf.metadata.get("chatglm.feed_forward_length")).toBe(704);
    expect(gguf.metadata.get("chatglm.rope.dimension_count")).toBe(16);
    expect([...gguf.metadata.keys()].some((key) => key.startsWith("geb.") && !key.startsWith("geb.tokenizer."))).toBe(false);
    const names = gguf.tensors.map((t) => t.name);
    expect(names).not.toContain("blk.0.ffn_gate.weight");
    expect(gguf.tensors.find((t) => t.name === "blk.0.ffn_up.weight")!.ne).toEqual([256, 2 * 704]);
    expect(gguf.tensors.length).toBe(4 * 8 + 3);
  });

  it("loads in place with the logits of the geb file", async () => {
    const output = join(workDir, "geb-tiny-chatglm-q4_0.gguf");
    await convertModel(GEB_TINY_DIR, output, { type: "q4_0", architecture: "chatglm" });
    const phases: string[] = [];
    await withModel(output, { onProgress: (p) => phases.push(p.phase) }, async (model) => {
      expect(model.info().architecture).toBe("geb");
      expect(model.tokenizer.family).toBe("geb");
      expect(phases).not.toContain("quantize");
    });
    const geb = await logitsOf(gebFiles.get("q4_0")!, {}, PROMPT_IDS);
    expect(maxDifference(geb, await logitsOf(output, {}, PROMPT_IDS))).toBe(0);
  });

  it("converts back to geb with the same tensors", async () => {
    const chatglm = join(workDir, "geb-tiny-chatglm-f32.gguf");
    await convertModel(gebFiles.get("f32")!, chatglm, { type: "f32", architecture: "chatglm" });
    const back = join(workDir, "geb-tiny-back.gguf");
    const result = await convertModel(chatglm, back, { type: "q8_0", architecture: "geb" });
    expect(result.architecture).toBe("geb");
    const roundTrip = await readGguf(back);
    const direct = await readGguf(gebFiles.get("q8_0")!);
    expect(roundTrip.metadata.get("general.architecture")).toBe("geb");
    expect(roundTrip.metadata.get("geb.block_count")).toBe(4);
    expect(roundTrip.tensors.map((t) => [t.name, t.type.name, t.ne])).toEqual(direct.tensors.map((t) => [t.name, t.type.name, t.ne]));
    const roundTripBytes = await readFile(back);
    const directBytes = await readFile(gebFiles.get("q8_0")!);
    for (const [i, tensor] of roundTrip.tensors.entries()) {
      const other = direct.tensors[i]!;
      const a = roundTripBytes.subarray(tensor.offset, tensor.offset + tensor.nbytes);
      const b = directBytes.subarray(other.offset, other.offset + other.nbytes);
      expect(a.equals(b), tensor.name).toBe(true);
    }
  });

  it("rejects --arch for a llama model", async () => {
    await expect(convertModel(LLAMA_TINY_GGUF, join(workDir, "llama-chatglm.gguf"), { type: "f16", architecture: "chatglm" })).rejects.toMatchObject({
      code: "ERR_GEB_INVALID_ARGUMENT",
    });
    const badArch = await runConvert([GEB_TINY_DIR, join(workDir, "x.gguf"), "--type", "q8_0", "--arch", "glm4"]);
    expect(badArch.code).toBe(2);
    expect(badArch.stderr).toContain("--arch must be geb or chatglm");
  });
});

describe("convert errors", () => {
  it("rejects an existing output without --force", async () => {
    const output = join(workDir, "exists.gguf");
    await writeFile(output, "keep me");
    await expect(convertModel(GEB_TINY_DIR, output, { type: "q8_0" })).rejects.toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT" });
    expect(await readFile(output, "utf8")).toBe("keep me");
    const cli = await runConvert([GEB_TINY_DIR, output, "--type", "q8_0"]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain("--force");
    expect(cli.stderr).toContain("ERR_GEB_INVALID_ARGUMENT");
    const forced = await runConvert([GEB_TINY_DIR, output, "--type", "q8_0", "--force"]);
    expect(forced.code).toBe(0);
    expect((await readGguf(output)).metadata.get("general.architecture")).toBe("geb");
  });

  it("replaces a symbolic link output only with --force, never its target", async () => {
    const target = join(workDir, "link-target.gguf");
    const dangling = join(workDir, "dangling-link.gguf");
    await symlink(target, dangling);
    await expect(convertModel(GEB_TINY_DIR, dangling, { type: "q8_0" })).rejects.toMatchObject({
      code: "ERR_GEB_INVALID_ARGUMENT",
      message: expect.stringMatching(/is a symbolic link to .*link-target\.gguf, which does not exist; pass --force/),
    });
    const cli = await runConvert([GEB_TINY_DIR, dangling, "--type", "q8_0"]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain("symbolic link");
    expect((await lstat(dangling)).isSymbolicLink()).toBe(true);
    expect(await temporaryFiles(workDir)).toEqual([]);

    const forced = await runConvert([GEB_TINY_DIR, dangling, "--type", "q8_0", "--force"]);
    expect(forced.code).toBe(0);
    expect((await lstat(dangling)).isFile()).toBe(true);
    await expect(lstat(target)).rejects.toMatchObject({ code: "ENOENT" });

    // A link to an existing file: the link is replaced and the file keeps its bytes.
    await writeFile(target, "keep me");
    const live = join(workDir, "live-link.gguf");
    await symlink(target, live);
    await expect(convertModel(GEB_TINY_DIR, live, { type: "q8_0" })).rejects.toMatchObject({
      message: expect.stringMatching(/is a symbolic link to .*link-target\.gguf; pass --force/),
    });
    await convertModel(GEB_TINY_DIR, live, { type: "q8_0", force: true });
    expect((await lstat(live)).isFile()).toBe(true);
    expect(await readFile(target, "utf8")).toBe("keep me");
    await rm(target);
  });

  it("never writes over its input, even with --force", async () => {
    const input = join(workDir, "input-copy.gguf");
    await copyFile(gebFiles.get("q8_0")!, input);
    const before = await readFile(input);
    await expect(convertModel(input, input, { type: "q4_0", force: true })).rejects.toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT" });
    expect((await readFile(input)).equals(before)).toBe(true);
    const weights = join(GEB_TINY_DIR, "model.safetensors");
    await expect(convertModel(GEB_TINY_DIR, weights, { type: "q4_0", force: true })).rejects.toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT" });
  });

  it("rejects every input file as output", async () => {
    const dir = join(workDir, "geb-copy");
    await mkdir(dir);
    for (const name of await readdir(GEB_TINY_DIR)) await copyFile(join(GEB_TINY_DIR, name), join(dir, name));
    await writeFile(join(dir, "model.safetensors.index.json"), "not read: model.safetensors is there");
    const names = ["config.json", "GEBtokenizer.model", "tokenizer_config.json", "model.safetensors.index.json", "model.safetensors"];
    await link(join(dir, "config.json"), join(workDir, "config-hard-link.gguf"));
    await symlink(join(dir, "GEBtokenizer.model"), join(workDir, "tokenizer-link.gguf"));
    const outputs = [...names.map((name) => join(dir, name)), join(workDir, "config-hard-link.gguf"), join(workDir, "tokenizer-link.gguf"), dir];
    const before = new Map<string, Buffer>();
    for (const name of names) before.set(name, await readFile(join(dir, name)));
    for (const output of outputs) {
      for (const force of [true, false]) {
        await expect(convertModel(dir, output, { type: "q8_0", force }), output).rejects.toMatchObject({
          code: "ERR_GEB_INVALID_ARGUMENT",
          message: expect.stringContaining("is the input model or one of its files"),
        });
      }
      const cli = await runConvert([dir, output, "--type", "q8_0"]);
      expect(cli.code).toBe(1);
      expect(cli.stderr).toContain("convert never overwrites its input");
      expect(cli.stderr).not.toContain("--force");
    }
    for (const name of names) expect((await readFile(join(dir, name))).equals(before.get(name)!), name).toBe(true);
    expect((await lstat(join(workDir, "tokenizer-link.gguf"))).isSymbolicLink()).toBe(true);
    expect(await temporaryFiles(dir)).toEqual([]);
    await rm(dir, { recursive: true });
    await rm(join(workDir, "config-hard-link.gguf"));
    await rm(join(workDir, "tokenizer-link.gguf"));
  });

  it("rejects a device or FIFO output", async () => {
    const fifo = join(workDir, "pipe.gguf");
    execFileSync("mkfifo", [fifo]);
    for (const output of [fifo, "/dev/null"]) {
      for (const force of [true, false]) {
        await expect(convertModel(GEB_TINY_DIR, output, { type: "q8_0", force })).rejects.toMatchObject({
          code: "ERR_GEB_INVALID_ARGUMENT",
          message: expect.stringMatching(/is (a named pipe \(FIFO\)|a character device), not a regular file/),
        });
      }
    }
    expect((await lstat(fifo)).isFIFO()).toBe(true);
    expect((await lstat("/dev/null")).isCharacterDevice()).toBe(true);
    expect(await temporaryFiles(workDir)).toEqual([]);
    await rm(fifo);
  });

  it("replaces a directory link with --force", async () => {
    const folder = join(workDir, "a-folder");
    await mkdir(folder);
    const linkPath = join(workDir, "folder-link.gguf");
    await symlink(folder, linkPath);
    const plain = await runConvert([GEB_TINY_DIR, linkPath, "--type", "q8_0"]);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toContain("symbolic link");
    const forced = await runConvert([GEB_TINY_DIR, linkPath, "--type", "q8_0", "--force"]);
    expect(forced.stderr).toBe("");
    expect(forced.code).toBe(0);
    expect((await lstat(linkPath)).isFile()).toBe(true);
    expect(await readdir(folder)).toEqual([]);
    await rm(linkPath);
    await rm(folder, { recursive: true });
  });

  it("rejects a bad type and missing arguments with usage errors", async () => {
    await expect(convertModel(GEB_TINY_DIR, join(workDir, "x.gguf"), { type: "q5_0" as WeightType })).rejects.toMatchObject({
      code: "ERR_GEB_INVALID_ARGUMENT",
    });
    const badType = await runConvert([GEB_TINY_DIR, join(workDir, "x.gguf"), "--type", "q5_0"]);
    expect(badType.code).toBe(2);
    expect(badType.stderr).toContain("--type must be one of q4_0, q8_0, bf16, f16, f32");
    const noType = await runConvert([GEB_TINY_DIR, join(workDir, "x.gguf")]);
    expect(noType.code).toBe(2);
    expect(noType.stderr).toContain("--type");
    const onePath = await runConvert([GEB_TINY_DIR, "--type", "q8_0"]);
    expect(onePath.code).toBe(2);
    expect(onePath.stderr).toContain("ERR_GEB_INVALID_ARGUMENT");
    const unknownFlag = await runConvert([GEB_TINY_DIR, join(workDir, "x.gguf"), "--type", "q8_0", "--frobnicate"]);
    expect(unknownFlag.code).toBe(2);
    await expect(stat(join(workDir, "x.gguf"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("rejects an architecture other than geb or chatglm", async () => {
    const output = join(workDir, "llama-arch.gguf");
    const run = convertModel(GEB_TINY_DIR, output, { type: "q8_0", architecture: "llama" as "geb" });
    await expect(run).rejects.toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT" });
    await expect(stat(output)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("rejects missing options and paths with codes", async () => {
    const output = join(workDir, "no-options.gguf");
    const noOptions = (convertModel as (input: unknown, output: unknown, options?: unknown) => Promise<unknown>)(GEB_TINY_DIR, output);
    await expect(noOptions).rejects.toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT" });
    const noOutput = (convertModel as (input: unknown, output: unknown, options?: unknown) => Promise<unknown>)(GEB_TINY_DIR, undefined, { type: "q8_0" });
    await expect(noOutput).rejects.toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT" });
  });

  it("lets only one of two conversions create the same output", async () => {
    const output = join(workDir, "race.gguf");
    const results = await Promise.allSettled([
      convertModel(GEB_TINY_DIR, output, { type: "q4_0" }),
      convertModel(LLAMA_TINY_GGUF, output, { type: "q8_0" }),
    ]);
    const fulfilled = results.filter((result) => result.status === "fulfilled");
    const rejected = results.filter((result): result is PromiseRejectedResult => result.status === "rejected");
    expect(fulfilled).toHaveLength(1);
    expect(rejected).toHaveLength(1);
    expect(rejected[0].reason).toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT" });
    expect(await temporaryFiles(workDir)).toEqual([]);
    await rm(output);
  });

  it("rejects f16 for a weight above the F16 range", async () => {
    const input = join(workDir, "big-weight.gguf");
    await copyFile(LLAMA_TINY_GGUF, input);
    const gguf = await readGguf(input);
    const matrix = gguf.tensors.find((tensor) => tensor.name === "blk.0.ffn_down.weight")!;
    expect(matrix.type.name).toBe("F32");
    const handle = await open(input, "r+");
    await handle.write(Buffer.from(new Float32Array([1e5]).buffer), 0, 4, matrix.offset);
    await handle.close();
    const output = join(workDir, "big-weight-f16.gguf");
    await expect(convertModel(input, output, { type: "f16" })).rejects.toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT" });
    await expect(stat(output)).rejects.toMatchObject({ code: "ENOENT" });
    const bf16 = await convertModel(input, join(workDir, "big-weight-bf16.gguf"), { type: "bf16" });
    expect(bf16.fileSize).toBeGreaterThan(0);
  });

  it("prints help", async () => {
    const { code, stdout } = await runConvert(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("Usage: geb-cpu convert");
    expect(stdout).toContain("--force");
  });

  it("rejects a missing or truncated input and leaves no partial file", async () => {
    await expect(convertModel(join(workDir, "missing.gguf"), join(workDir, "out.gguf"), { type: "q8_0" })).rejects.toMatchObject({
      code: "ERR_GEB_IO",
    });
    const truncated = join(workDir, "truncated.gguf");
    await copyFile(gebFiles.get("f32")!, truncated);
    await truncate(truncated, (await stat(truncated)).size - 4096);
    await expect(convertModel(truncated, join(workDir, "out.gguf"), { type: "q8_0" })).rejects.toMatchObject({ code: "ERR_GEB_MODEL_FORMAT" });
    await expect(stat(join(workDir, "out.gguf"))).rejects.toMatchObject({ code: "ENOENT" });
    expect(await temporaryFiles(workDir)).toEqual([]);
  });

  it("removes the temporary file when aborted", async () => {
    const controller = new AbortController();
    const output = join(workDir, "aborted.gguf");
    const run = convertModel(GEB_TINY_DIR, output, {
      type: "q4_0",
      signal: controller.signal,
      onProgress: () => controller.abort(),
    });
    await expect(run).rejects.toMatchObject({ code: "ERR_GEB_ABORTED" });
    await expect(stat(output)).rejects.toMatchObject({ code: "ENOENT" });
    expect(await temporaryFiles(workDir)).toEqual([]);
  });
});

describe("loadModel weightType bf16, f16 and f32", () => {
  it("converts geb-tiny's BF16 matrices to f32 and f16, and keeps bf16 in place", async () => {
    const direct = await logitsOf(GEB_TINY_DIR, {}, PROMPT_IDS);
    await withModel(GEB_TINY_DIR, { weightType: "f32", cacheDir }, async (model) => {
      expect(model.info().weightConversions).toHaveLength(30);
      expect(model.info().weightConversions.every((c) => c.from === "bf16" && c.to === "f32")).toBe(true);
      expect(maxDifference(direct, (await model.evaluate(PROMPT_IDS)).map((r) => r.slice()))).toBe(0);
    });
    await withModel(GEB_TINY_DIR, { weightType: "f16", cacheDir }, async (model) => {
      expect(model.info().weightConversions.every((c) => c.to === "f16")).toBe(true);
      expect(maxDifference(direct, (await model.evaluate(PROMPT_IDS)).map((r) => r.slice()))).toBeLessThan(F16_LOGIT_TOLERANCE);
    });
    const phases: string[] = [];
    const unusedCache = join(workDir, "cache-bf16");
    await withModel(GEB_TINY_DIR, { weightType: "bf16", cacheDir: unusedCache, onProgress: (p) => phases.push(p.phase) }, async (model) => {
      expect(model.info().weightConversions).toEqual([]);
      expect(phases).not.toContain("convert");
    });
    await expect(stat(unusedCache)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("converts llama-tiny's F32 matrices to bf16 and f16", async () => {
    const ids = LLAMA_PROMPT_IDS;
    const direct = await logitsOf(LLAMA_TINY_GGUF, {}, ids);
    for (const type of ["bf16", "f16"] as const) {
      const phases: string[] = [];
      await withModel(LLAMA_TINY_GGUF, { weightType: type, cacheDir, onProgress: (p) => phases.push(p.phase) }, async (model) => {
        expect(phases).toContain("convert");
        expect(model.info().weightConversions.length).toBeGreaterThan(0);
        expect(model.info().weightConversions.every((c) => c.from === "f32" && c.to === type)).toBe(true);
        const difference = maxDifference(direct, (await model.evaluate(ids)).map((r) => r.slice()));
        expect(difference).toBeGreaterThan(0);
        expect(difference).toBeLessThan(type === "f16" ? F16_LOGIT_TOLERANCE : 0.1);
      });
    }
    await withModel(LLAMA_TINY_GGUF, { weightType: "f32", cacheDir }, async (model) => {
      expect(model.info().weightConversions).toEqual([]);
    });
  });

  it("rejects an unknown weightType", async () => {
    await expect(loadModel(GEB_TINY_DIR, { weightType: "q5_0" as WeightType })).rejects.toMatchObject({ code: "ERR_GEB_INVALID_ARGUMENT" });
  });
});
