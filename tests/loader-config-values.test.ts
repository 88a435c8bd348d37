// config.json values that must not pass as absent: a null (except `pre_seq_len`, which the
// published GEB-1.3B config sets to null), a bad `max_position_embeddings`, a bad fallback key.
// Also the default cache folder, which ignores a relative XDG_CACHE_HOME as the XDG Base
// Directory Specification requires.

import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterEach, describe, expect, it } from "vitest";

import { loadModel } from "../lib/model.js";
import { mapGebConfig } from "../lib/model/geb-conventions.js";
import { GEB_1_3B_DIR, GEB_TINY_DIR } from "./fixtures.js";
import { TINY_GEB_CONFIG } from "./loader-helpers.js";

/** Runs mapGebConfig on the tiny config with `change` applied and returns what it threw. */
function mapError(change: Record<string, unknown>): { code?: string; message: string; received?: unknown } {
  try {
    mapGebConfig({ ...TINY_GEB_CONFIG, ...change }, "config.json");
  } catch (error) {
    return error as { code?: string; message: string };
  }
  throw new Error(`mapGebConfig accepted ${JSON.stringify(change)}`);
}

describe("GEB config null values", () => {
  // Keys read with a default or a fallback key, where a null used to pass as absent.
  const nullKeys = [
    "num_layers",
    "kv_channels",
    "num_key_value_heads",
    "padded_vocab_size",
    "seq_length",
    "max_position_embeddings",
    "layernorm_epsilon",
    "rope_ratio",
    "rmsnorm",
    "add_qkv_bias",
    "multi_query_attention",
    "tie_word_embeddings",
  ];
  it.each(nullKeys)("rejects null %s", (key) => {
    const error = mapError({ [key]: null });
    expect(error.code).toBe("ERR_GEB_MODEL_FORMAT");
    expect(error.message).toContain(`"${key}" is null, but it must be`);
    expect(error.received).toBeNull();
  });

  it("rejects a null fallback key", () => {
    const { padded_vocab_size: _unused, ...rest } = TINY_GEB_CONFIG;
    let caught: { code?: string; message: string } | undefined;
    try {
      mapGebConfig({ ...rest, vocab_size: null }, "config.json");
    } catch (error) {
      caught = error as { code?: string; message: string };
    }
    expect(caught?.code).toBe("ERR_GEB_MODEL_FORMAT");
    expect(caught?.message).toContain('"vocab_size" is null');
  });

  it("accepts null pre_seq_len as in GEB-1.3B", async () => {
    const raw = JSON.parse(await readFile(join(GEB_1_3B_DIR, "config.json"), "utf8")) as Record<string, unknown>;
    expect(raw.pre_seq_len).toBeNull();
    expect(mapGebConfig(raw, "config.json").hparams.nLayer).toBe(24);
    expect(mapGebConfig({ ...TINY_GEB_CONFIG, pre_seq_len: null }, "c").hparams.nLayer).toBe(2);
  });
});

describe("GEB config max_position_embeddings", () => {
  const cases: [unknown, RegExp][] = [
    [0, /"max_position_embeddings" is 0, but it must be a positive integer; the model file is corrupt/],
    ["4096", /"max_position_embeddings" is "4096", but it must be a positive integer/],
    [2 ** 30, /"max_position_embeddings" is 1073741824, but it must be at most 16777216 positions/],
  ];
  it.each(cases)("rejects %s beside seq_length", (value, message) => {
    const error = mapError({ max_position_embeddings: value });
    expect(error.code).toBe("ERR_GEB_MODEL_FORMAT");
    expect(error.message).toMatch(message);
  });

  it("is the training context without seq_length", () => {
    const { seq_length: _unused, ...rest } = TINY_GEB_CONFIG;
    expect(mapGebConfig({ ...rest, max_position_embeddings: 32 }, "c").hparams.nCtxTrain).toBe(32);
    expect(mapGebConfig({ ...TINY_GEB_CONFIG, max_position_embeddings: 32 }, "c").hparams.nCtxTrain).toBe(64);
  });

  it("names vocab_size when that fallback is invalid", () => {
    const { padded_vocab_size: _unused, ...rest } = TINY_GEB_CONFIG;
    expect(() => mapGebConfig({ ...rest, vocab_size: "128" }, "c")).toThrow(/"vocab_size" is "128"/);
    expect(() => mapGebConfig(rest, "c")).toThrow(/no "padded_vocab_size" or "vocab_size"/);
  });
});

describe("default cache folder", () => {
  const saved = { HOME: process.env.HOME, XDG_CACHE_HOME: process.env.XDG_CACHE_HOME };
  let home = "";
  afterEach(async () => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
    if (home !== "") await rm(home, { recursive: true, force: true });
  });

  it("ignores a relative XDG_CACHE_HOME", async () => {
    home = await mkdtemp(join(tmpdir(), "geb-xdg-"));
    // os.homedir() reads HOME on POSIX systems, so the default folder lands in the test's folder.
    process.env.HOME = home;
    const relative = `geb-xdg-relative-${process.pid}`;
    process.env.XDG_CACHE_HOME = relative;
    const model = await loadModel(GEB_TINY_DIR, { weightType: "q8_0", threads: 1, contextSize: 16 });
    await model.dispose();

    const cacheFiles = await readdir(join(home, ".cache", "geb-cpu"));
    expect(cacheFiles.filter((name) => name.endsWith(".q8_0.bin")).length).toBe(1);
    expect(await readdir(process.cwd())).not.toContain(relative);
  });

  it("uses an absolute XDG_CACHE_HOME", async () => {
    home = await mkdtemp(join(tmpdir(), "geb-xdg-"));
    process.env.HOME = join(home, "unused-home");
    process.env.XDG_CACHE_HOME = join(home, "xdg");
    const model = await loadModel(GEB_TINY_DIR, { weightType: "q8_0", threads: 1, contextSize: 16 });
    await model.dispose();
    expect((await readdir(join(home, "xdg", "geb-cpu"))).length).toBe(1);
  });
});
