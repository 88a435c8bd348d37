// safetensors reader and writer: the geb-tiny checkpoint, write/read round trips, sharded
// indexes, and one corrupt file per validation rule with its error code.

import { readFile, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { afterAll, describe, expect, it } from "vitest";

import { readSafetensors, readSafetensorsModel, topLevelJsonKeys } from "../lib/formats/safetensors.js";
import { writeSafetensors } from "../lib/formats/safetensors-writer.js";
import { GEB_TINY_DIR } from "./fixtures.js";
import { expectGebError, makeTempDir } from "./loader-helpers.js";

const temp = makeTempDir("safetensors");
afterAll(() => temp.remove());

/** Write a safetensors file from a raw header string and `dataLength` zero bytes. */
async function rawSafetensors(name: string, header: string, dataLength: number, declaredLength?: number): Promise<string> {
  const json = Buffer.from(header, "utf8");
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(declaredLength ?? json.length));
  const path = join(temp.dir, name);
  await writeFile(path, Buffer.concat([prefix, json, Buffer.alloc(dataLength)]));
  return path;
}

const entry = (dtype: string, shape: number[], begin: number, end: number): Record<string, unknown> => ({ dtype, shape, data_offsets: [begin, end] });

describe("readSafetensors on geb-tiny", () => {
  it("lists all 31 BF16 tensors with checked offsets", async () => {
    const file = await readSafetensors(join(GEB_TINY_DIR, "model.safetensors"));
    expect(file.tensors).toHaveLength(31);
    expect(new Set(file.tensors.map((t) => t.dtype))).toEqual(new Set(["BF16"]));
    expect(file.dataOffset).toBe(8 + file.headerLength);
    const embd = file.tensors.find((t) => t.name === "transformer.embedding.word_embeddings.weight");
    expect(embd?.shape).toEqual([4032, 256]);
    expect(embd?.nbytes).toBe(4032 * 256 * 2);
    const kv = file.tensors.find((t) => t.name === "transformer.encoder.layers.0.self_attention.key_value.weight");
    expect(kv?.shape).toEqual([128, 256]);
    for (const t of file.tensors) expect(t.offset + t.nbytes).toBeLessThanOrEqual(file.fileSize);
  });
});

describe("writeSafetensors round trip", () => {
  it("writes data, metadata and sparse holes", async () => {
    const path = join(temp.dir, "round.safetensors");
    const values = new Float32Array([1, -2, 3.5]);
    const result = await writeSafetensors(
      path,
      [
        { name: "a", dtype: "F32", shape: [3], data: () => [new Uint8Array(values.buffer)] },
        { name: "b", dtype: "BF16", shape: [1000, 1000] },
        { name: "中文", dtype: "F16", shape: [2, 1] , data: () => [new Uint8Array([0, 60, 0, 188])] },
      ],
      { format: "pt" },
    );
    const file = await readSafetensors(path);
    expect(file.metadata).toEqual({ format: "pt" });
    expect(file.headerLength % 8).toBe(0);
    expect(file.tensors.map((t) => t.name)).toEqual(["a", "b", "中文"]);
    expect(file.tensors.map((t) => t.offset)).toEqual(result.tensors.map((t) => t.offset));
    const bytes = await readFile(path);
    const a = file.tensors[0];
    expect(new Float32Array(bytes.buffer.slice(bytes.byteOffset + a.offset, bytes.byteOffset + a.offset + 12))).toEqual(values);
    expect((await stat(path)).size).toBe(file.dataOffset + 12 + 2_000_000 + 4);
  });

  it("rejects repeated names", async () => {
    const write = writeSafetensors(join(temp.dir, "dup.safetensors"), [
      { name: "a", dtype: "F32", shape: [1] },
      { name: "a", dtype: "F32", shape: [1] },
    ]);
    await expectGebError(write, "ERR_GEB_INVALID_ARGUMENT", /twice/);
  });
});

describe("topLevelJsonKeys", () => {
  it("keeps repeats and skips nested keys", () => {
    expect(topLevelJsonKeys('{"a": {"x": 1, "y": [1, {"z": 2}]}, "b\\"q": "v", "a": 3}')).toEqual(["a", 'b"q', "a"]);
  });
});

describe("readSafetensors rejects corrupt files", () => {
  it("too short", async () => {
    const path = join(temp.dir, "short.safetensors");
    await writeFile(path, Buffer.from([1, 2, 3]));
    await expectGebError(readSafetensors(path), "ERR_GEB_MODEL_FORMAT", /shorter than/);
  });
  it("header length past the file", async () => {
    const path = await rawSafetensors("len-past.safetensors", "{}", 0, 1000);
    await expectGebError(readSafetensors(path), "ERR_GEB_MODEL_FORMAT", /header length is 1000/);
  });
  it("absurd header length", async () => {
    const path = await rawSafetensors("len-huge.safetensors", "{}", 0, 2 ** 40);
    await expectGebError(readSafetensors(path), "ERR_GEB_MODEL_FORMAT", /header length/);
  });
  it("header not an object", async () => {
    const path = await rawSafetensors("array.safetensors", "[1, 2]  ", 0);
    await expectGebError(readSafetensors(path), "ERR_GEB_MODEL_FORMAT", /does not start with/);
  });
  it("invalid JSON", async () => {
    const path = await rawSafetensors("badjson.safetensors", '{"a": {"dtype": "F32",', 0);
    await expectGebError(readSafetensors(path), "ERR_GEB_MODEL_FORMAT", /not valid JSON/);
  });
  it("repeated tensor name", async () => {
    const path = await rawSafetensors("dupkey.safetensors", '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', 8);
    await expectGebError(readSafetensors(path), "ERR_GEB_MODEL_FORMAT", /"a" twice/);
  });
  it("unknown dtype", async () => {
    const path = await rawSafetensors("dtype.safetensors", JSON.stringify({ a: entry("F4_E2M1", [2], 0, 1) }), 1);
    await expectGebError(readSafetensors(path), "ERR_GEB_UNSUPPORTED", /F4_E2M1/);
  });
  it("negative shape", async () => {
    const path = await rawSafetensors("shape.safetensors", JSON.stringify({ a: entry("F32", [-1], 0, 4) }), 4);
    await expectGebError(readSafetensors(path), "ERR_GEB_MODEL_FORMAT", /invalid shape/);
  });
  it("size not matching the shape", async () => {
    const path = await rawSafetensors("size.safetensors", JSON.stringify({ a: entry("F32", [3], 0, 8) }), 8);
    await expectGebError(readSafetensors(path), "ERR_GEB_MODEL_FORMAT", /needs 12/);
  });
  it("begin after end", async () => {
    const path = await rawSafetensors("order.safetensors", JSON.stringify({ a: entry("F32", [0], 8, 4) }), 8);
    await expectGebError(readSafetensors(path), "ERR_GEB_MODEL_FORMAT", /begin after end/);
  });
  it("data past the end", async () => {
    const path = await rawSafetensors("past.safetensors", JSON.stringify({ a: entry("F32", [4], 0, 16) }), 15);
    await expectGebError(readSafetensors(path), "ERR_GEB_MODEL_FORMAT", /truncated/);
  });
  it("overlapping tensors", async () => {
    const path = await rawSafetensors("overlap.safetensors", JSON.stringify({ a: entry("F32", [2], 0, 8), b: entry("F32", [2], 4, 12) }), 12);
    await expectGebError(readSafetensors(path), "ERR_GEB_MODEL_FORMAT", /overlap/);
  });
  it("non-string metadata", async () => {
    const path = await rawSafetensors("meta.safetensors", JSON.stringify({ __metadata__: { format: 1 } }), 0);
    await expectGebError(readSafetensors(path), "ERR_GEB_MODEL_FORMAT", /must be a string/);
  });
  it("truncated geb-tiny copy", async () => {
    const path = join(temp.dir, "geb-tiny-cut.safetensors");
    await writeFile(path, await readFile(join(GEB_TINY_DIR, "model.safetensors")));
    await truncate(path, 9_000_000);
    await expectGebError(readSafetensors(path), "ERR_GEB_MODEL_FORMAT", /truncated/);
  });
});

describe("sharded checkpoints", () => {
  const shardA = "model-00001-of-00002.safetensors";
  const shardB = "model-00002-of-00002.safetensors";
  const writeShards = async (dir: string): Promise<void> => {
    await writeSafetensors(join(dir, shardA), [{ name: "x", dtype: "F32", shape: [2] }]);
    await writeSafetensors(join(dir, shardB), [{ name: "y", dtype: "BF16", shape: [4] }]);
  };
  const writeIndex = async (dir: string, weightMap: unknown): Promise<string> => {
    const path = join(dir, "model.safetensors.index.json");
    await writeFile(path, JSON.stringify({ metadata: { total_size: 16 }, weight_map: weightMap }));
    return path;
  };

  it("merges shards through the index", async () => {
    await writeShards(temp.dir);
    const index = await writeIndex(temp.dir, { x: shardA, y: shardB });
    const model = await readSafetensorsModel(index);
    expect(model.files).toHaveLength(2);
    expect(model.tensors.get("x")?.fileIndex).toBe(0);
    expect(model.tensors.get("y")?.fileIndex).toBe(1);
    expect(model.index?.metadata).toEqual({ total_size: 16 });
  });
  it("rejects a tensor placed in the wrong shard", async () => {
    await writeShards(temp.dir);
    const index = await writeIndex(temp.dir, { x: shardB, y: shardB });
    await expectGebError(readSafetensorsModel(index), "ERR_GEB_MODEL_FORMAT", /"x" in .*does not contain it/);
  });
  it("rejects a tensor in two shards", async () => {
    await writeSafetensors(join(temp.dir, shardA), [{ name: "x", dtype: "F32", shape: [2] }]);
    await writeSafetensors(join(temp.dir, shardB), [{ name: "x", dtype: "F32", shape: [2] }]);
    const index = await writeIndex(temp.dir, { x: shardA, z: shardB });
    await expectGebError(readSafetensorsModel(index), "ERR_GEB_MODEL_FORMAT", /appears in two shards/);
  });
  it("rejects a shard outside the folder", async () => {
    const index = await writeIndex(temp.dir, { x: "../elsewhere.safetensors" });
    await expectGebError(readSafetensorsModel(index), "ERR_GEB_MODEL_FORMAT", /outside the model folder/);
  });
  it("rejects an index without weight_map", async () => {
    const path = join(temp.dir, "model.safetensors.index.json");
    await writeFile(path, JSON.stringify({ metadata: {} }));
    await expectGebError(readSafetensorsModel(path), "ERR_GEB_MODEL_FORMAT", /weight_map/);
  });
  it("rejects an index that is not JSON", async () => {
    const path = join(temp.dir, "model.safetensors.index.json");
    await writeFile(path, "{ nope");
    await expectGebError(readSafetensorsModel(path), "ERR_GEB_MODEL_FORMAT", /not valid JSON/);
  });
  it("reports a missing shard as an I/O error", async () => {
    const index = await writeIndex(temp.dir, { x: "model-missing.safetensors" });
    await expectGebError(readSafetensorsModel(index), "ERR_GEB_IO", /does not exist/);
  });
});
