// The tokenizers of the tiny models against their reference.json files: ids from the sentencepiece
// library, decoded text, prompt layouts and greedy texts. Also GEB's special tokens by both routes
// (listed in tokenizer_config.json, or numbered after the SentencePiece pieces), and the API rules
// for special tokens, padding rows and invalid ids.

import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, describe, expect, it } from "vitest";

import { GEB_SPECIAL_TOKENS, loadTokenizer, type Tokenizer } from "../lib/tokenizer/index.js";
import { createModelOutputDecoder } from "../lib/tokenizer/tokenizer.js";
import { GEB_TINY_DIR, LLAMA_TINY_GGUF, sharedPath } from "./fixtures.js";
import { streamPieces } from "./tokenizer-helpers.js";

interface TokenizerCase {
  text: string;
  ids: number[];
  pieces: string[];
  decoded: string;
}

interface Greedy {
  ids: number[];
  text: string;
}

interface ReferencePrompt {
  name: string;
  kind?: "plain" | "chat";
  text: string | null;
  turns: [string, string][] | null;
  prompt_ids: number[];
  rendered?: string;
  greedy: Greedy;
}

interface Reference {
  tokenizer_cases: TokenizerCase[];
  prompts: ReferencePrompt[];
  special_token_ids?: Record<string, number>;
  stop_token_ids?: number[];
  eval_perplexity: { eval_ids: number[] };
}

function readReference(...parts: string[]): Reference {
  return JSON.parse(readFileSync(sharedPath(...parts), "utf8")) as Reference;
}

const gebReference = readReference("models", "geb-tiny", "reference.json");
const llamaReference = readReference("models", "llama-tiny", "reference.json");
const gebLoaded = loadTokenizer(sharedPath("models", "geb-tiny"));
const llamaLoaded = loadTokenizer(sharedPath("models", "llama-tiny", "llama-tiny.gguf"));

const temporaryDirs: string[] = [];
afterAll(() => {
  for (const dir of temporaryDirs) rmSync(dir, { recursive: true, force: true });
});

/** Copies GEBtokenizer.model into a new directory with the given tokenizer_config.json. */
function gebDirWithConfig(config: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), "geb-tokenizer-"));
  temporaryDirs.push(dir);
  copyFileSync(join(GEB_TINY_DIR, "GEBtokenizer.model"), join(dir, "GEBtokenizer.model"));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config));
  return dir;
}

function checkCases(name: string, loaded: Promise<Tokenizer>, reference: Reference): void {
  describe(`${name} tokenizer_cases`, () => {
    it("has cases", () => {
      expect(reference.tokenizer_cases.length).toBe(57);
    });

    it("encodes to the reference ids and pieces", async () => {
      const tokenizer = await loaded;
      for (const c of reference.tokenizer_cases) {
        const ids = tokenizer.encode(c.text);
        expect(ids, JSON.stringify(c.text)).toEqual(c.ids);
        expect(ids.map((id) => tokenizer.idToPiece(id)), JSON.stringify(c.text)).toEqual(c.pieces);
      }
    });

    it("decodes to the reference text", async () => {
      const tokenizer = await loaded;
      for (const c of reference.tokenizer_cases) expect(tokenizer.decode(c.ids), JSON.stringify(c.text)).toBe(c.decoded);
    });

    it("streams the same text without U+FFFD", async () => {
      const tokenizer = await loaded;
      for (const c of reference.tokenizer_cases) {
        const pieces = streamPieces(tokenizer, c.ids);
        expect(pieces.join(""), JSON.stringify(c.text)).toBe(c.decoded);
        expect(pieces.some((p) => p.includes("\ufffd")), JSON.stringify(c.text)).toBe(false);
      }
    });

    it("streams greedy outputs like the full decode", async () => {
      const tokenizer = await loaded;
      for (const prompt of reference.prompts) {
        const ids = [...prompt.prompt_ids, ...prompt.greedy.ids];
        expect(streamPieces(tokenizer, ids).join(""), prompt.name).toBe(tokenizer.decode(ids));
        expect(tokenizer.decode(prompt.greedy.ids), prompt.name).toBe(prompt.greedy.text);
      }
    });
  });
}

checkCases("geb-tiny", gebLoaded, gebReference);
checkCases("llama-tiny", llamaLoaded, llamaReference);

describe("geb-tiny prompts", () => {
  it("builds plain prompts with [gMASK] sop", async () => {
    const tokenizer = await gebLoaded;
    const plain = gebReference.prompts.filter((p) => p.kind === "plain");
    expect(plain.length).toBe(4);
    for (const prompt of plain) expect(tokenizer.encodePrompt(prompt.text!), prompt.name).toEqual(prompt.prompt_ids);
  });

  it("builds chat prompts from specials and separate encodes", async () => {
    const tokenizer = await gebLoaded;
    const chats = gebReference.prompts.filter((p) => p.kind === "chat");
    expect(chats.length).toBe(2);
    for (const prompt of chats) {
      const ids = tokenizer.encodePrompt("");
      for (const [role, text] of prompt.turns!) {
        ids.push(tokenizer.specialTokens[`<|${role}|>`]!, ...tokenizer.encode("\n"), ...tokenizer.encode(text));
      }
      ids.push(tokenizer.specialTokens["<|assistant|>"]!);
      expect(ids, prompt.name).toEqual(prompt.prompt_ids);
    }
  });

  it("renders prompts with special text", async () => {
    const tokenizer = await gebLoaded;
    for (const prompt of gebReference.prompts) expect(tokenizer.decode(prompt.prompt_ids), prompt.name).toBe(prompt.rendered);
  });

  it("decodes the eval stream run by run", async () => {
    const tokenizer = await gebLoaded;
    const ids = gebReference.eval_perplexity.eval_ids;
    const text = tokenizer.decode(ids);
    expect(text.startsWith("[gMASK]sop《")).toBe(true);
    expect(streamPieces(tokenizer, ids).join("")).toBe(text);
  });
});

describe("llama-tiny prompts", () => {
  it("starts prompts with <s>", async () => {
    const tokenizer = await llamaLoaded;
    for (const prompt of llamaReference.prompts) expect(tokenizer.encodePrompt(prompt.text!), prompt.name).toEqual(prompt.prompt_ids);
  });

  it("reports llama ids and stop tokens", async () => {
    const tokenizer = await llamaLoaded;
    expect(tokenizer.family).toBe("llama");
    expect(tokenizer.vocabSize).toBe(4000);
    expect([tokenizer.bosId, tokenizer.eosId, tokenizer.unkId]).toEqual([1, 2, 0]);
    expect(tokenizer.stopTokenIds).toEqual([2]);
    expect(tokenizer.specialTokens).toEqual({ "<s>": 1, "</s>": 2 });
    expect(tokenizer.chatTemplate).toBeUndefined();
  });

  it("encodes <s> text as a token only with specials", async () => {
    const tokenizer = await llamaLoaded;
    expect(tokenizer.encode("<s>")).not.toContain(1);
    expect(tokenizer.encode("<s>hi</s>", { specials: "all" })).toEqual([1, ...tokenizer.encode("hi"), 2]);
    expect(tokenizer.isSpecial(1)).toBe(true);
    expect(tokenizer.isSpecial(578)).toBe(false);
    expect(tokenizer.decode([1, 578, 448, 337, 2])).toBe("Hello");
  });
});

describe("GEB special tokens", () => {
  it("match the reference ids and stop tokens", async () => {
    const tokenizer = await gebLoaded;
    expect(tokenizer.family).toBe("geb");
    expect(tokenizer.specialTokens).toEqual(gebReference.special_token_ids);
    expect(tokenizer.stopTokenIds).toEqual(gebReference.stop_token_ids);
    expect(tokenizer.vocabSize).toBe(4009);
    expect(tokenizer.encodePrompt("")).toEqual([4001, 4003]);
  });

  it("are derived when the config lists none", async () => {
    const dir = gebDirWithConfig({ tokenizer_class: "GEBTokenizer", auto_map: { AutoTokenizer: ["tokenization_geb.GEBTokenizer", null] } });
    const tokenizer = await loadTokenizer(dir);
    GEB_SPECIAL_TOKENS.forEach((name, i) => expect(tokenizer.specialTokens[name], name).toBe(4000 + i));
    expect(tokenizer.stopTokenIds).toEqual([2, 4006, 4008]);
    expect(tokenizer.vocabSize).toBe(4009);
  });

  it("are derived when the model file is given directly", async () => {
    const dir = gebDirWithConfig({ tokenizer_class: "GEBTokenizer" });
    const tokenizer = await loadTokenizer(join(dir, "GEBtokenizer.model"));
    expect(tokenizer.family).toBe("geb");
    expect(tokenizer.specialTokens["<|observation|>"]).toBe(4008);
  });

  it("follow the ids a config lists", async () => {
    const listed = Object.fromEntries(GEB_SPECIAL_TOKENS.map((name, i) => [name, 5000 + 2 * i]));
    const tokenizer = await loadTokenizer(gebDirWithConfig({ special_tokens: listed }));
    expect(tokenizer.specialTokens).toEqual(listed);
    expect(tokenizer.encodePrompt("")).toEqual([5002, 5006]);
    expect(tokenizer.vocabSize).toBe(5017);
    expect(tokenizer.decode([5012, 5016])).toBe("<|user|><|observation|>");
  });

  it("reject a config id inside the piece range", async () => {
    const listed = Object.fromEntries(GEB_SPECIAL_TOKENS.map((name, i) => [name, 3990 + i]));
    const error = await loadTokenizer(gebDirWithConfig({ special_tokens: listed })).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_GEB_MODEL_FORMAT" });
    expect((error as Error).message).toContain("[MASK]");
  });

  it("reject a config with a missing token", async () => {
    const error = await loadTokenizer(gebDirWithConfig({ special_tokens: { "[gMASK]": 4001 } })).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_GEB_MODEL_FORMAT" });
  });

  it("are plain text unless specials are on", async () => {
    const tokenizer = await gebLoaded;
    expect(tokenizer.encode("<|user|>")).toEqual([379, 2575, 1375, 2575, 2524]);
    expect(tokenizer.encode("<|user|>", { specials: "all" })).toEqual([4006]);
    expect(tokenizer.encode("[gMASK]sop<|user|>\nhi", { specials: "all" })).toEqual([
      4001,
      4003,
      4006,
      ...tokenizer.encode("\nhi"),
    ]);
  });

  it("decode as text or not at all", async () => {
    const tokenizer = await gebLoaded;
    const ids = [4001, 4003, 578, 448, 337, 4006];
    expect(tokenizer.decode(ids)).toBe("[gMASK]sopHello<|user|>");
    expect(tokenizer.decode(ids, { skipSpecial: true })).toBe("Hello");
    expect(streamPieces(tokenizer, ids, true).join("")).toBe("Hello");
    expect(tokenizer.isSpecial(4006)).toBe(true);
    expect(tokenizer.isSpecial(2)).toBe(true);
    expect(tokenizer.isSpecial(578)).toBe(false);
    expect(tokenizer.idToPiece(4007)).toBe("<|assistant|>");
    expect(tokenizer.pieceToId("<|assistant|>")).toBe(4007);
    expect(tokenizer.pieceToId("sop")).toBe(4003);
    expect(tokenizer.pieceToId("\u2581H")).toBe(578);
    expect(tokenizer.pieceToId("no such piece")).toBeUndefined();
  });
});

describe("tokenizer immutability", () => {
  it("freezes the vocabulary facts", async () => {
    for (const tokenizer of [await gebLoaded, await loadTokenizer(LLAMA_TINY_GGUF)]) {
      const stops = [...tokenizer.stopTokenIds];
      const specials = { ...tokenizer.specialTokens };
      expect(Object.isFrozen(tokenizer)).toBe(true);
      expect(() => (tokenizer.stopTokenIds as number[]).push(5)).toThrow(TypeError);
      expect(() => ((tokenizer.specialTokens as Record<string, number>)["<|assistant|>"] = 5)).toThrow(TypeError);
      expect(() => ((tokenizer as { stopTokenIds: number[] }).stopTokenIds = [])).toThrow(TypeError);
      expect(tokenizer.stopTokenIds).toEqual(stops);
      expect(tokenizer.specialTokens).toEqual(specials);
    }
  });
});

describe("decode edge cases", () => {
  it("rejects ids past the vocabulary", async () => {
    const tokenizer = await gebLoaded;
    expect(tokenizer.vocabSize).toBe(4009);
    for (const id of [4009, 4020, 99999]) {
      expect(() => tokenizer.decode([578, id]), String(id)).toThrow(
        expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT", message: expect.stringContaining(`${id}`) }),
      );
      expect(() => tokenizer.decode([id])).toThrow(/the vocabulary has 4009 ids/);
      expect(() => tokenizer.idToPiece(id), String(id)).toThrow(expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" }));
      expect(() => tokenizer.createStreamDecoder().push(id), String(id)).toThrow(
        expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" }),
      );
    }
    expect(tokenizer.idToPiece(4008)).toBe("<|observation|>");
  });

  it("writes model padding rows as <pad:ID> in generation", async () => {
    const tokenizer = await gebLoaded;
    const decoder = createModelOutputDecoder(tokenizer);
    expect([578, 4020, 448].map((id) => decoder.push(id)).join("") + decoder.flush()).toBe("H<pad:4020>el");
  });

  it("decodes llama and GEB control pieces to nothing", async () => {
    const geb = await gebLoaded;
    const llama = await loadTokenizer(LLAMA_TINY_GGUF);
    // <s> and </s> are control pieces in both vocabularies; GEB's chat tokens are written out.
    expect(geb.decode([1, 578, 2])).toBe("H");
    expect(llama.decode([llama.bosId!, ...llama.encode("Hi"), llama.eosId!])).toBe("Hi");
    expect(geb.decode([4001, 578])).toBe("[gMASK]H");
  });

  it("rejects ids that are not non-negative integers", async () => {
    const tokenizer = await gebLoaded;
    for (const id of [-1, 1.5, Number.NaN]) {
      expect(() => tokenizer.decode([id]), String(id)).toThrow(expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" }));
      expect(() => tokenizer.createStreamDecoder().push(id), String(id)).toThrow(
        expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" }),
      );
    }
  });

  it("holds split characters until complete", async () => {
    const tokenizer = await gebLoaded;
    // 😀 is F0 9F 98 80, the byte pieces 243 162 155 131 after a "▁" piece.
    const decoder = tokenizer.createStreamDecoder();
    expect([2445, 243, 162, 155].map((id) => decoder.push(id))).toEqual(["", "", "", ""]);
    expect(decoder.push(131)).toBe("\u{1f600}");
    expect(decoder.flush()).toBe("");
  });

  it("writes U+FFFD for broken byte runs like the full decode", async () => {
    const tokenizer = await gebLoaded;
    const ids = [243, 162, 578, 232, 65 + 3, 243];
    const decoded = tokenizer.decode(ids);
    // 578 is "▁H": its space stays because text came before it.
    expect(decoded).toBe("\ufffd\ufffd H\ufffdA\ufffd");
    expect(streamPieces(tokenizer, ids).join("")).toBe(decoded);
  });

  it("drops only the first leading space", async () => {
    const tokenizer = await gebLoaded;
    // 2445 is "▁" and 578 is "▁H".
    expect(tokenizer.decode([578])).toBe("H");
    expect(tokenizer.decode([2445, 578])).toBe(" H");
    expect(tokenizer.decode([2445, 2445, 578])).toBe("  H");
    expect(tokenizer.decode([578, 2445])).toBe("H ");
    expect(tokenizer.decode([1, 578])).toBe("H");
  });

  it("rejects a non-string text", async () => {
    const tokenizer = await gebLoaded;
    expect(() => tokenizer.encode(42 as unknown as string)).toThrow(expect.objectContaining({ code: "ERR_GEB_INVALID_ARGUMENT" }));
  });
});

describe("loadTokenizer errors", () => {
  it("reports a missing path", async () => {
    const missing = join(tmpdir(), "no-such-tokenizer.model");
    await expect(loadTokenizer(missing)).rejects.toMatchObject({ code: "ERR_GEB_IO", path: missing });
  });

  it("reports a file that is not a model", async () => {
    const dir = mkdtempSync(join(tmpdir(), "geb-tokenizer-"));
    temporaryDirs.push(dir);
    const path = join(dir, "broken.model");
    writeFileSync(path, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    await expect(loadTokenizer(path)).rejects.toMatchObject({ code: "ERR_GEB_MODEL_FORMAT", path });
  });

  it("reads a GGUF chat template", async () => {
    const tokenizer = await loadTokenizer(sharedPath("tokenizer-suites", "ggml-vocab-phi-3.gguf"));
    expect(tokenizer.chatTemplate).toContain("<|user|>");
    expect(tokenizer.eosId).toBe(32000);
    expect(tokenizer.encode("<|user|>\nHi<|end|>", { specials: "all" })).toEqual([32010, ...tokenizer.encode("\nHi", {}), 32007]);
  });

  it("loads a full model GGUF's vocabulary", async () => {
    const tokenizer = await loadTokenizer(LLAMA_TINY_GGUF);
    expect(tokenizer.encode("Hello world")).toEqual([578, 448, 337, 290, 268, 599]);
  });
});

describe("stories260K", () => {
  interface StoriesResult {
    prompt: string;
    prompt_ids: number[];
    greedy_ids: number[];
    greedy_text: string;
  }
  const results = (JSON.parse(readFileSync(sharedPath("models", "stories260K", "reference.json"), "utf8")) as { results: StoriesResult[] })
    .results;

  it("matches llama.cpp prompts and detokenized text via the GGUF", async () => {
    const tokenizer = await loadTokenizer(sharedPath("models", "stories260K", "stories260K.gguf"));
    expect(results.length).toBe(6);
    for (const result of results) {
      expect(tokenizer.encodePrompt(result.prompt), result.prompt).toEqual(result.prompt_ids);
      expect(tokenizer.decode(result.greedy_ids), result.prompt).toBe(result.greedy_text);
      expect(streamPieces(tokenizer, result.greedy_ids).join(""), result.prompt).toBe(result.greedy_text);
    }
  });

  it("gives the same prompt ids from tok512.model", async () => {
    const tokenizer = await loadTokenizer(sharedPath("models", "stories260K", "tok512.model"));
    expect(tokenizer.family).toBe("sentencepiece");
    expect(tokenizer.encodePrompt("x")).toEqual(tokenizer.encode("x"));
    for (const result of results) expect([tokenizer.bosId, ...tokenizer.encode(result.prompt)], result.prompt).toEqual(result.prompt_ids);
  });
});

describe("llama-tiny tokenizer.model", () => {
  it("agrees with the GGUF vocabulary", async () => {
    const tokenizer = await loadTokenizer(sharedPath("models", "llama-tiny", "tokenizer.model"));
    for (const c of llamaReference.tokenizer_cases) {
      expect(tokenizer.encode(c.text), JSON.stringify(c.text)).toEqual(c.ids);
      expect(tokenizer.decode(c.ids), JSON.stringify(c.text)).toBe(c.decoded);
    }
  });
});
