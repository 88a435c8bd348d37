// GGUF reader and writer: real fixtures, every metadata type through a write/read round trip,
// typed metadata getters, and one corrupt file per validation rule with its error code.

import { readdirSync } from "node:fs";
import { readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { afterAll, describe, expect, it } from "vitest";

import { GebError } from "../lib/errors.js";
import { GGML_TYPES, ggmlTypeByName } from "../lib/formats/ggml-types.js";
import {
  GGUF_LIMITS,
  getBool,
  getInteger,
  getNumber,
  getNumberArray,
  getOptionalString,
  getString,
  getStringArray,
  getU32,
  readGguf,
} from "../lib/formats/gguf.js";
import { writeGguf, type GgufWriteValue } from "../lib/formats/gguf-writer.js";
import { LLAMA_TINY_F16_GGUF, LLAMA_TINY_GGUF, STORIES260K_GGUF, TOKENIZER_SUITES_DIR } from "./fixtures.js";
import { expectGebError, makeTempDir, offsetOf, patchFile } from "./loader-helpers.js";

const temp = makeTempDir("gguf");
afterAll(() => temp.remove());

describe("readGguf on fixtures", () => {
  it("reads llama-tiny metadata and tensors", async () => {
    const gguf = await readGguf(LLAMA_TINY_GGUF);
    expect(gguf.version).toBe(3);
    expect(gguf.alignment).toBe(32);
    expect(gguf.fileSize).toBe(19_558_752);
    expect(gguf.tensors).toHaveLength(39);
    expect(getString(gguf, "general.architecture")).toBe("llama");
    expect(getU32(gguf, "llama.block_count")).toBe(4);
    expect(gguf.metadataTypes.get("llama.attention.layer_norm_rms_epsilon")).toBe("f32");
    expect(getNumber(gguf, "llama.attention.layer_norm_rms_epsilon")).toBeCloseTo(1e-5, 10);
    expect(getBool(gguf, "tokenizer.ggml.add_bos_token")).toBe(true);

    const tokens = getStringArray(gguf, "tokenizer.ggml.tokens");
    expect(tokens).toHaveLength(4000);
    expect(tokens.slice(0, 4)).toEqual(["<unk>", "<s>", "</s>", "<0x00>"]);
    expect(gguf.metadata.get("tokenizer.ggml.scores")).toBeInstanceOf(Float32Array);
    expect(gguf.metadata.get("tokenizer.ggml.token_type")).toBeInstanceOf(Int32Array);
    expect(getNumberArray(gguf, "tokenizer.ggml.token_type").slice(0, 4)).toEqual([2, 3, 3, 6]);

    const embd = gguf.tensors[0];
    expect(embd.name).toBe("token_embd.weight");
    expect(embd.type.name).toBe("F32");
    expect(embd.ne).toEqual([256, 4000]);
    expect(embd.nbytes).toBe(256 * 4000 * 4);
    expect(embd.offset).toBe(gguf.dataOffset + embd.relativeOffset);
    expect(gguf.dataOffset % 32).toBe(0);
    const last = gguf.tensors[gguf.tensors.length - 1];
    expect(last.offset + last.nbytes).toBeLessThanOrEqual(gguf.fileSize);
  });

  it("reads F16 types from llama-tiny-f16", async () => {
    const gguf = await readGguf(LLAMA_TINY_F16_GGUF);
    const types = new Set(gguf.tensors.map((t) => t.type.name));
    expect(types).toEqual(new Set(["F16", "F32"]));
    const q = gguf.tensors.find((t) => t.name === "blk.0.attn_q.weight");
    expect(q?.nbytes).toBe(256 * 256 * 2);
  });

  it("reads stories260K", async () => {
    const gguf = await readGguf(STORIES260K_GGUF);
    expect(gguf.tensors).toHaveLength(47);
    expect(gguf.tensors.some((t) => t.name === "output.weight")).toBe(false);
  });

  it("gives the same result with tiny read chunks", async () => {
    const whole = await readGguf(STORIES260K_GGUF);
    const chunked = await readGguf(STORIES260K_GGUF, { chunkBytes: 7 });
    expect(chunked.tensors).toEqual(whole.tensors);
    expect([...chunked.metadata.keys()]).toEqual([...whole.metadata.keys()]);
    expect(chunked.metadata.get("tokenizer.ggml.tokens")).toEqual(whole.metadata.get("tokenizer.ggml.tokens"));
    expect(chunked.metadata.get("tokenizer.ggml.scores")).toEqual(whole.metadata.get("tokenizer.ggml.scores"));
  });

  const vocabFiles = readdirSync(TOKENIZER_SUITES_DIR).filter((f) => f.endsWith(".gguf"));
  it.each(vocabFiles)("parses vocabulary-only %s", async (file) => {
    const gguf = await readGguf(join(TOKENIZER_SUITES_DIR, file));
    expect(gguf.tensors).toHaveLength(0);
    const tokens = getStringArray(gguf, "tokenizer.ggml.tokens");
    expect(tokens.length).toBeGreaterThan(1000);
    expect(getOptionalString(gguf, "tokenizer.ggml.model")).toMatch(/^(llama|gpt2)$/);
  });
});

describe("ggml type table", () => {
  it("has unique ids and names with sizes", () => {
    expect(new Set(GGML_TYPES.map((t) => t.id)).size).toBe(GGML_TYPES.length);
    expect(new Set(GGML_TYPES.map((t) => t.name)).size).toBe(GGML_TYPES.length);
    for (const t of GGML_TYPES) {
      expect(t.blockSize).toBeGreaterThan(0);
      expect(t.typeSize).toBeGreaterThan(0);
    }
  });

  it("knows the common block sizes", () => {
    expect(ggmlTypeByName("Q8_0")).toMatchObject({ id: 8, blockSize: 32, typeSize: 34 });
    expect(ggmlTypeByName("Q4_0")).toMatchObject({ id: 2, blockSize: 32, typeSize: 18 });
    expect(ggmlTypeByName("Q4_K")).toMatchObject({ id: 12, blockSize: 256, typeSize: 144 });
    expect(ggmlTypeByName("Q6_K")).toMatchObject({ id: 14, blockSize: 256, typeSize: 210 });
    expect(ggmlTypeByName("BF16")).toMatchObject({ id: 30, blockSize: 1, typeSize: 2 });
    expect(ggmlTypeByName("TQ2_0")).toMatchObject({ id: 35, blockSize: 256, typeSize: 66 });
    expect(ggmlTypeByName("IQ4_XS")).toMatchObject({ id: 23, blockSize: 256, typeSize: 136 });
  });
});

/** Metadata covering every value type, nested arrays included. */
const ALL_TYPES_METADATA: [string, GgufWriteValue][] = [
  ["t.u8", { type: "u8", value: 200 }],
  ["t.i8", { type: "i8", value: -100 }],
  ["t.u16", { type: "u16", value: 60000 }],
  ["t.i16", { type: "i16", value: -30000 }],
  ["t.u32", { type: "u32", value: 4_000_000_000 }],
  ["t.i32", { type: "i32", value: -2_000_000_000 }],
  ["t.f32", { type: "f32", value: 0.5 }],
  ["t.f64", { type: "f64", value: Math.PI }],
  ["t.u64", { type: "u64", value: 2n ** 60n }],
  ["t.i64", { type: "i64", value: -(2n ** 40n) }],
  ["t.bool", { type: "bool", value: true }],
  ["t.string", { type: "string", value: "中文 and ▁spaces" }],
  ["t.empty", { type: "string", value: "" }],
  ["a.u8", { type: "array", elementType: "u8", value: [1, 2, 255] }],
  ["a.i16", { type: "array", elementType: "i16", value: [-1, 2] }],
  ["a.u32", { type: "array", elementType: "u32", value: [7, 8] }],
  ["a.i32", { type: "array", elementType: "i32", value: [-7] }],
  ["a.f32", { type: "array", elementType: "f32", value: [0.25, -1.5] }],
  ["a.f64", { type: "array", elementType: "f64", value: [1e300] }],
  ["a.u64", { type: "array", elementType: "u64", value: [1n, 2n ** 63n] }],
  ["a.i64", { type: "array", elementType: "i64", value: [-5n] }],
  ["a.bool", { type: "array", elementType: "bool", value: [true, false] }],
  ["a.string", { type: "array", elementType: "string", value: ["a", "", "字"] }],
  ["a.empty", { type: "array", elementType: "u8", value: [] }],
  [
    "a.nested",
    {
      type: "array",
      elementType: "array",
      value: [
        { type: "array", elementType: "u8", value: [1, 2] },
        { type: "array", elementType: "u8", value: [3] },
      ],
    },
  ],
];

describe("writeGguf round trip", () => {
  it("preserves every metadata type", async () => {
    const path = join(temp.dir, "all-types.gguf");
    await writeGguf(path, { metadata: ALL_TYPES_METADATA, tensors: [] });
    const gguf = await readGguf(path);
    const m = gguf.metadata;
    expect(m.get("t.u8")).toBe(200);
    expect(m.get("t.i8")).toBe(-100);
    expect(m.get("t.u16")).toBe(60000);
    expect(m.get("t.i16")).toBe(-30000);
    expect(m.get("t.u32")).toBe(4_000_000_000);
    expect(m.get("t.i32")).toBe(-2_000_000_000);
    expect(m.get("t.f32")).toBe(0.5);
    expect(m.get("t.f64")).toBe(Math.PI);
    expect(m.get("t.u64")).toBe(2n ** 60n);
    expect(m.get("t.i64")).toBe(-(2n ** 40n));
    expect(m.get("t.bool")).toBe(true);
    expect(m.get("t.string")).toBe("中文 and ▁spaces");
    expect(m.get("t.empty")).toBe("");
    expect(m.get("a.u8")).toEqual(new Uint8Array([1, 2, 255]));
    expect(m.get("a.i16")).toEqual(new Int16Array([-1, 2]));
    expect(m.get("a.u32")).toEqual(new Uint32Array([7, 8]));
    expect(m.get("a.i32")).toEqual(new Int32Array([-7]));
    expect(m.get("a.f32")).toEqual(new Float32Array([0.25, -1.5]));
    expect(m.get("a.f64")).toEqual(new Float64Array([1e300]));
    expect(m.get("a.u64")).toEqual(new BigUint64Array([1n, 2n ** 63n]));
    expect(m.get("a.i64")).toEqual(new BigInt64Array([-5n]));
    expect(m.get("a.bool")).toEqual([true, false]);
    expect(m.get("a.string")).toEqual(["a", "", "字"]);
    expect(m.get("a.empty")).toEqual(new Uint8Array([]));
    expect(m.get("a.nested")).toEqual([new Uint8Array([1, 2]), new Uint8Array([3])]);
    expect(gguf.metadataTypes.get("a.nested")).toBe("array<array<u8>>");
    expect(gguf.metadataTypes.get("t.u64")).toBe("u64");
  });

  it("places tensors at aligned offsets", async () => {
    const path = join(temp.dir, "tensors.gguf");
    const result = await writeGguf(path, {
      metadata: [["general.architecture", { type: "string", value: "test" }]],
      alignment: 64,
      tensors: [
        { name: "a", type: "F32", ne: [3], data: () => [new Uint8Array(new Float32Array([1, 2, 3]).buffer)] },
        { name: "b", type: "Q8_0", ne: [32, 2], data: () => [new Uint8Array(68).fill(1)] },
        { name: "c", type: "F16", ne: [5, 1, 1] },
      ],
    });
    const gguf = await readGguf(path);
    expect(gguf.alignment).toBe(64);
    expect(gguf.metadata.get("general.alignment")).toBe(64);
    expect(gguf.tensors.map((t) => t.offset)).toEqual(result.tensors.map((t) => t.offset));
    for (const t of gguf.tensors) expect(t.offset % 64).toBe(0);
    expect(gguf.tensors[1].nbytes).toBe(68);
    expect(gguf.tensors[2].ne).toEqual([5, 1, 1]);
    const bytes = await readFile(path);
    expect(new Float32Array(bytes.buffer.slice(bytes.byteOffset + gguf.tensors[0].offset, bytes.byteOffset + gguf.tensors[0].offset + 12))).toEqual(
      new Float32Array([1, 2, 3]),
    );
    expect(gguf.fileSize).toBe(result.fileSize);
  });

  it("rejects a data source of the wrong size", async () => {
    const write = writeGguf(join(temp.dir, "short.gguf"), {
      metadata: [],
      tensors: [{ name: "a", type: "F32", ne: [4], data: () => [new Uint8Array(8)] }],
    });
    await expectGebError(write, "ERR_GEB_INVALID_ARGUMENT", /produced 8 bytes/);
  });

  it("rejects duplicate tensor names", async () => {
    const write = writeGguf(join(temp.dir, "dup.gguf"), {
      metadata: [],
      tensors: [
        { name: "a", type: "F32", ne: [4] },
        { name: "a", type: "F32", ne: [4] },
      ],
    });
    await expectGebError(write, "ERR_GEB_INVALID_ARGUMENT", /twice/);
  });
});

describe("typed metadata getters", () => {
  it("name the key on wrong types and missing keys", async () => {
    const path = join(temp.dir, "getters.gguf");
    await writeGguf(path, { metadata: ALL_TYPES_METADATA, tensors: [] });
    const gguf = await readGguf(path);
    expect(getInteger(gguf, "t.i64")).toBe(-(2 ** 40));
    expect(() => getInteger(gguf, "t.u64")).toThrow(/below 2\^53/);
    expect(getU32(gguf, "t.u32")).toBe(4_000_000_000);
    expect(() => getU32(gguf, "t.i32")).toThrow(/t\.i32.*unsigned 32-bit/);
    expect(() => getString(gguf, "t.u8")).toThrow(/"t\.u8" must be a string/);
    expect(() => getInteger(gguf, "t.f32")).toThrow(/must be an integer/);
    expect(() => getString(gguf, "no.such.key")).toThrow(/"no\.such\.key" is missing/);
    expect(() => getStringArray(gguf, "a.u8")).toThrow(/array of strings/);
    expect(getOptionalString(gguf, "no.such.key")).toBeUndefined();
    try {
      getBool(gguf, "t.string");
      expect.unreachable();
    } catch (error) {
      expect((error as GebError).code).toBe("ERR_GEB_MODEL_FORMAT");
    }
  });
});

describe("readGguf rejects corrupt files", () => {
  const base = join(temp.dir, "base.gguf");
  const prepare = async (): Promise<Buffer> => {
    await writeGguf(base, {
      metadata: [
        ["general.architecture", { type: "string", value: "llama" }],
        ["tokenizer.ggml.tokens", { type: "array", elementType: "string", value: ["a", "b", "c"] }],
        ["x.flag", { type: "bool", value: true }],
        ["x.flah", { type: "u32", value: 1 }],
      ],
      tensors: [
        { name: "blk.0.attn_q.weight", type: "F32", ne: [8, 4], data: () => [new Uint8Array(128)] },
        { name: "blk.0.attn_k.weight", type: "F32", ne: [8, 2], data: () => [new Uint8Array(64)] },
      ],
    });
    return readFile(base);
  };

  /** Write the edited base file and expect `code` from the reader. */
  const check = async (label: string, edit: (b: Buffer) => Buffer | void, code: string, message?: RegExp): Promise<void> => {
    await prepare();
    const path = join(temp.dir, `corrupt-${label}.gguf`);
    await patchFile(base, path, edit);
    await expectGebError(readGguf(path), code, message);
  };

  it("bad magic", () => check("magic", (b) => void b.write("GGUX", 0), "ERR_GEB_MODEL_FORMAT", /Not a GGUF file/));
  it("too short", () => check("short", (b) => b.subarray(0, 5), "ERR_GEB_MODEL_FORMAT", /shorter than/));
  it("version 1", () => check("v1", (b) => void b.writeUInt32LE(1, 4), "ERR_GEB_UNSUPPORTED", /version 1/));
  it("version 4", () => check("v4", (b) => void b.writeUInt32LE(4, 4), "ERR_GEB_UNSUPPORTED", /version 4/));
  it("big-endian version", () => check("be", (b) => void b.writeUInt32BE(3, 4), "ERR_GEB_UNSUPPORTED", /big-endian/));
  it("absurd tensor count", () => check("tcount", (b) => void b.writeBigUInt64LE(10n ** 12n, 8), "ERR_GEB_MODEL_FORMAT", /tensors/));
  it("tensor count above 2^53", () => check("tcount2", (b) => void b.writeBigUInt64LE(2n ** 63n, 8), "ERR_GEB_MODEL_FORMAT", /corrupt/));
  it("absurd metadata count", () => check("kvcount", (b) => void b.writeBigUInt64LE(5_000_000n, 16), "ERR_GEB_MODEL_FORMAT", /metadata entries/));
  it("absurd key length", () => check("keylen", (b) => void b.writeBigUInt64LE(1n << 40n, 24), "ERR_GEB_MODEL_FORMAT", /length/));
  it("absurd array length", async () => {
    await check(
      "arrlen",
      (b) => {
        const at = offsetOf(b, "tokenizer.ggml.tokens") + "tokenizer.ggml.tokens".length + 4 + 4;
        b.writeBigUInt64LE(BigInt(GGUF_LIMITS.maxArrayLength) + 1n, at);
      },
      "ERR_GEB_MODEL_FORMAT",
      /elements/,
    );
  });
  it("unknown value type", async () => {
    await check("vtype", (b) => void b.writeUInt32LE(99, offsetOf(b, "general.architecture") + "general.architecture".length), "ERR_GEB_MODEL_FORMAT", /value type 99/);
  });
  it("bool byte 2", async () => {
    await check("bool", (b) => void b.writeUInt8(2, offsetOf(b, "x.flag") + "x.flag".length + 4), "ERR_GEB_MODEL_FORMAT", /bool stored as 2/);
  });
  it("duplicate metadata key", async () => {
    await check("dupkey", (b) => void b.write("x.flag", offsetOf(b, "x.flah")), "ERR_GEB_MODEL_FORMAT", /"x\.flag" appears twice/);
  });
  it("duplicate tensor", async () => {
    await check("duptensor", (b) => void b.write("attn_q", offsetOf(b, "attn_k")), "ERR_GEB_MODEL_FORMAT", /tensor "blk\.0\.attn_q\.weight" twice/);
  });
  it("unknown tensor type", async () => {
    await check(
      "ttype",
      (b) => {
        const at = offsetOf(b, "blk.0.attn_k.weight") + "blk.0.attn_k.weight".length + 4 + 16;
        b.writeUInt32LE(4, at);
      },
      "ERR_GEB_MODEL_FORMAT",
      /type id 4/,
    );
  });
  it("too many dimensions", async () => {
    await check("ndims", (b) => void b.writeUInt32LE(9, offsetOf(b, "blk.0.attn_q.weight") + "blk.0.attn_q.weight".length), "ERR_GEB_MODEL_FORMAT", /dimensions/);
  });
  it("row not a whole block", async () => {
    await check(
      "block",
      (b) => {
        const at = offsetOf(b, "blk.0.attn_q.weight") + "blk.0.attn_q.weight".length + 4 + 16;
        b.writeUInt32LE(8, at);
      },
      "ERR_GEB_MODEL_FORMAT",
      /block size 32/,
    );
  });
  it("misaligned offset", async () => {
    await check(
      "align",
      (b) => {
        const at = offsetOf(b, "blk.0.attn_k.weight") + "blk.0.attn_k.weight".length + 4 + 16 + 4;
        b.writeBigUInt64LE(b.readBigUInt64LE(at) + 4n, at);
      },
      "ERR_GEB_MODEL_FORMAT",
      /alignment/,
    );
  });
  it("overlapping tensors", async () => {
    await check(
      "overlap",
      (b) => {
        const at = offsetOf(b, "blk.0.attn_k.weight") + "blk.0.attn_k.weight".length + 4 + 16 + 4;
        b.writeBigUInt64LE(96n, at);
      },
      "ERR_GEB_MODEL_FORMAT",
      /overlap/,
    );
  });
  it("tensor data past the end", async () => {
    await prepare();
    const path = join(temp.dir, "truncated.gguf");
    await writeFile(path, await readFile(base));
    const gguf = await readGguf(path);
    await truncate(path, gguf.fileSize - 1);
    await expectGebError(readGguf(path), "ERR_GEB_MODEL_FORMAT", /truncated.*attn_k/);
  });
  it("header cut short", async () => {
    await prepare();
    const path = join(temp.dir, "cut.gguf");
    await writeFile(path, (await readFile(base)).subarray(0, 60));
    await expectGebError(readGguf(path), "ERR_GEB_MODEL_FORMAT", /truncated|more than the file can hold/);
  });
  it("bad general.alignment", async () => {
    const path = join(temp.dir, "align-key.gguf");
    await writeGguf(path, { metadata: [["general.alignment", { type: "u32", value: 48 }]], tensors: [] });
    await expectGebError(readGguf(path), "ERR_GEB_MODEL_FORMAT", /power-of-two/);
  });
  it("missing file", async () => {
    await expectGebError(readGguf(join(temp.dir, "does-not-exist.gguf")), "ERR_GEB_IO", /does not exist/);
  });
});
