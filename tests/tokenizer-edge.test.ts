// Invalid arguments to the public tokenizer methods and to loadTokenizer: each must fail with a
// typed GebError and a code, never a TypeError from deep inside the tokenizer.

import { describe, expect, it } from "vitest";

import { GebError } from "../lib/errors.js";
import { loadTokenizer, type Tokenizer } from "../lib/tokenizer/index.js";
import { sharedPath } from "./fixtures.js";

const gebTiny = loadTokenizer(sharedPath("models", "geb-tiny"));
const llamaTiny = loadTokenizer(sharedPath("models", "llama-tiny", "llama-tiny.gguf"));

async function expectCode(action: () => unknown, code: string): Promise<void> {
  try {
    await action();
  } catch (error) {
    expect(error).toBeInstanceOf(GebError);
    expect((error as GebError).code).toBe(code);
    return;
  }
  expect.unreachable(`expected an error with code ${code}`);
}

const INVALID = "ERR_GEB_INVALID_ARGUMENT";

for (const [name, load] of [
  ["geb-tiny", gebTiny],
  ["llama-tiny", llamaTiny],
] as const) {
  describe(`${name} tokenizer argument checks`, () => {
    let tokenizer: Tokenizer;
    it("loads", async () => {
      tokenizer = await load;
      expect(tokenizer.vocabSize).toBeGreaterThan(0);
    });

    it("rejects invalid encode options", async () => {
      await expectCode(() => tokenizer.encode("hi", null as never), INVALID);
      await expectCode(() => tokenizer.encode("hi", "all" as never), INVALID);
    });

    it("rejects decode input that is not an id list", async () => {
      for (const ids of [null, undefined, 5, {}, "abc"]) await expectCode(() => tokenizer.decode(ids as never), INVALID);
    });

    it("rejects invalid decode options", async () => {
      await expectCode(() => tokenizer.decode([1], null as never), INVALID);
      await expectCode(() => tokenizer.createStreamDecoder(null as never), INVALID);
      await expectCode(() => tokenizer.decode([1], { skipSpecial: "yes" } as never), INVALID);
    });

    it("decodes an Int32Array like an array", () => {
      const ids = tokenizer.encode("你好 world");
      expect(tokenizer.decode(Int32Array.from(ids))).toBe(tokenizer.decode(ids));
    });
  });
}

describe("loadTokenizer path checks", () => {
  for (const path of [null, undefined, 5, ""]) {
    it(`rejects path ${JSON.stringify(path)}`, async () => {
      await expectCode(() => loadTokenizer(path as never), INVALID);
    });
  }
});
