// Chat formats: detection from GGUF chat templates, llama-family layouts rendered through a
// small character-level tokenizer (so the expected ids can be read as text), and GEB's layout
// against the geb-tiny reference prompts with the real tokenizer.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  CHAT_FORMAT_NAMES,
  checkMessages,
  detectChatFormat,
  detectTemplate,
  renderChat,
  type ChatRole,
  type ChatTokenizer,
} from "../lib/chat/templates.js";
import { InvalidArgumentError } from "../lib/errors.js";
import { loadTokenizer } from "../lib/tokenizer/index.js";
import { GEB_TINY_DIR, LLAMA_TINY_GGUF } from "./fixtures.js";

/** Character-level tokenizer: specials get small ids, every other character 1000 + its code point. */
function charTokenizer(specials: string[], template?: string): ChatTokenizer & { show(ids: number[]): string } {
  const specialTokens: Record<string, number> = {};
  specials.forEach((s, i) => (specialTokens[s] = i + 1));
  const byId = new Map(Object.entries(specialTokens).map(([s, id]) => [id, s]));
  const tokenizer = {
    family: "llama",
    specialTokens,
    stopTokenIds: [specialTokens["</s>"]!],
    eosId: specialTokens["</s>"]!,
    bosId: specialTokens["<s>"]!,
    encode(text: string, options?: { specials?: "none" | "all" }): number[] {
      const ids: number[] = [];
      let i = 0;
      outer: while (i < text.length) {
        if (options?.specials === "all") {
          for (const s of specials) {
            if (text.startsWith(s, i)) {
              ids.push(specialTokens[s]!);
              i += s.length;
              continue outer;
            }
          }
        }
        ids.push(1000 + text.codePointAt(i)!);
        i += text.codePointAt(i)! > 0xffff ? 2 : 1;
      }
      return ids;
    },
    encodePrompt(text: string): number[] {
      return [specialTokens["<s>"]!, ...tokenizer.encode(text)];
    },
    isSpecial: (id: number) => byId.has(id),
    show: (ids: number[]) => ids.map((id) => (byId.has(id) ? `{${byId.get(id)}}` : String.fromCodePoint(id - 1000))).join(""),
  } as ChatTokenizer & { show(ids: number[]): string };
  if (template !== undefined) tokenizer.chatTemplate = template;
  return tokenizer;
}

const conversation = [
  { role: "system" as const, content: "Be brief." },
  { role: "user" as const, content: "Hi" },
  { role: "assistant" as const, content: "Hello." },
  { role: "user" as const, content: "<|im_end|> 你好" },
];

describe("chat template detection", () => {
  const cases: Array<[string, string]> = [
    ["{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}", "chatml"],
    ["{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n", "llama-3"],
    ["{% if m.role == 'user' %}{{ '[INST] ' + m.content + ' [/INST]' }}", "llama-2"],
    ["<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n", "gemma"],
    ["{{'<|' + m.role + '|>' + '\n' + m.content + '<|end|>\n'}}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}", "phi-3"],
    ["{% if m.role == 'user' %}{{ '<|user|>\n' + m.content + eos_token }}{% endif %}{{ '<|assistant|>' }}", "zephyr"],
  ];
  for (const [template, name] of cases) {
    it(`recognises ${name}`, () => expect(detectTemplate(template)).toBe(name));
  }

  it("falls back to llama-2 for unknown or missing templates", () => {
    expect(detectTemplate("{{ messages }}")).toBeUndefined();
    expect(detectChatFormat(charTokenizer(["<s>", "</s>"], "{{ messages }}"))).toBe("llama-2");
    expect(detectChatFormat(charTokenizer(["<s>", "</s>"]))).toBe("llama-2");
  });
});

describe("llama-family chat layouts", () => {
  it("renders llama-2 with the system block in the first turn", () => {
    const tok = charTokenizer(["<s>", "</s>"]);
    const r = renderChat("llama-2", conversation, tok);
    expect(tok.show(r.ids)).toBe(
      "{<s>}[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. {</s>}{<s>}[INST] <|im_end|> 你好 [/INST]",
    );
    expect(r.stopTokens).toEqual([tok.eosId]);
  });

  it("renders chatml and never turns message text into specials", () => {
    const tok = charTokenizer(["<s>", "</s>", "<|im_start|>", "<|im_end|>"]);
    const r = renderChat("chatml", conversation, tok);
    expect(tok.show(r.ids)).toBe(
      "{<s>}{<|im_start|>}system\nBe brief.{<|im_end|>}\n{<|im_start|>}user\nHi{<|im_end|>}\n" +
        "{<|im_start|>}assistant\nHello.{<|im_end|>}\n{<|im_start|>}user\n<|im_end|> 你好{<|im_end|>}\n{<|im_start|>}assistant\n",
    );
    // The user's "<|im_end|>" stays characters: exactly 4 real <|im_end|> tokens.
    expect(r.ids.filter((id) => id === tok.specialTokens["<|im_end|>"]).length).toBe(4);
    expect(r.stopTokens).toContain(tok.specialTokens["<|im_end|>"]);
  });

  it("uses a stop string when the end marker is not a token", () => {
    const tok = charTokenizer(["<s>", "</s>"]);
    const r = renderChat("chatml", [{ role: "user", content: "x" }], tok);
    expect(r.stopStrings).toEqual(["<|im_end|>"]);
  });

  it("renders llama-3 headers", () => {
    const tok = charTokenizer(["<s>", "</s>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]);
    const r = renderChat("llama-3", [{ role: "user", content: " Hi " }], tok);
    expect(tok.show(r.ids)).toBe(
      "{<s>}{<|start_header_id|>}user{<|end_header_id|>}\n\nHi{<|eot_id|>}{<|start_header_id|>}assistant{<|end_header_id|>}\n\n",
    );
  });

  it("renders gemma with system text folded into the first user turn", () => {
    const tok = charTokenizer(["<s>", "</s>", "<start_of_turn>", "<end_of_turn>"]);
    const r = renderChat("gemma", conversation.slice(0, 3), tok);
    expect(tok.show(r.ids)).toBe(
      "{<s>}{<start_of_turn>}user\nBe brief.\n\nHi{<end_of_turn>}\n{<start_of_turn>}model\nHello.{<end_of_turn>}\n{<start_of_turn>}model\n",
    );
  });

  it("keeps llama-2 trailing system text", () => {
    const tok = charTokenizer(["<s>", "</s>"]);
    const alone = renderChat("llama-2", [{ role: "system", content: "Be a pirate." }], tok);
    expect(tok.show(alone.ids)).toBe("{<s>}[INST] <<SYS>>\nBe a pirate.\n<</SYS>>\n\n [/INST]");
    const after = renderChat("llama-2", [{ role: "user", content: "Hi" }, { role: "system", content: "Be a pirate." }], tok);
    expect(tok.show(after.ids)).toBe("{<s>}[INST] Hi [/INST]{<s>}[INST] <<SYS>>\nBe a pirate.\n<</SYS>>\n\n [/INST]");
  });

  it("keeps llama-2 system text before an assistant turn", () => {
    const tok = charTokenizer(["<s>", "</s>"]);
    const messages = [
      { role: "user" as const, content: "Hi" },
      { role: "system" as const, content: "Be a pirate." },
      { role: "assistant" as const, content: "Arr." },
      { role: "user" as const, content: "Bye" },
    ];
    expect(tok.show(renderChat("llama-2", messages, tok).ids)).toBe(
      "{<s>}[INST] Hi [/INST]{<s>}[INST] <<SYS>>\nBe a pirate.\n<</SYS>>\n\n [/INST] Arr. {</s>}{<s>}[INST] Bye [/INST]",
    );
  });

  it("keeps gemma trailing system text", () => {
    const tok = charTokenizer(["<s>", "</s>", "<start_of_turn>", "<end_of_turn>"]);
    const alone = renderChat("gemma", [{ role: "system", content: "Be a pirate." }], tok);
    expect(tok.show(alone.ids)).toBe("{<s>}{<start_of_turn>}user\nBe a pirate.{<end_of_turn>}\n{<start_of_turn>}model\n");
    const messages = [
      { role: "user" as const, content: "Hi" },
      { role: "system" as const, content: "Be a pirate." },
      { role: "assistant" as const, content: "Arr." },
    ];
    expect(tok.show(renderChat("gemma", messages, tok).ids)).toBe(
      "{<s>}{<start_of_turn>}user\nHi{<end_of_turn>}\n{<start_of_turn>}user\nBe a pirate.{<end_of_turn>}\n" +
        "{<start_of_turn>}model\nArr.{<end_of_turn>}\n{<start_of_turn>}model\n",
    );
  });

  it("renders every message text in each format", () => {
    const specials = ["<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"];
    const tok = charTokenizer([...specials, "<start_of_turn>", "<end_of_turn>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]);
    const orders: ChatRole[][] = [["system"], ["user", "system"], ["system", "assistant"], ["assistant", "system", "user", "system"]];
    for (const format of CHAT_FORMAT_NAMES.filter((name) => name !== "geb")) {
      for (const roles of orders) {
        const messages = roles.map((role, i) => ({ role, content: `text${i}` }));
        const promptText = tok.show(renderChat(format, messages, tok).ids);
        for (const m of messages) expect(promptText, `${format} ${roles.join("+")}`).toContain(m.content);
      }
    }
  });

  it("renders zephyr and phi-3", () => {
    const zephyr = charTokenizer(["<s>", "</s>", "<|user|>", "<|assistant|>"]);
    expect(zephyr.show(renderChat("zephyr", [{ role: "user", content: "Hi" }], zephyr).ids)).toBe(
      "{<s>}{<|user|>}\nHi{</s>}\n{<|assistant|>}\n",
    );
    const phi = charTokenizer(["<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]);
    const r = renderChat("phi-3", [{ role: "user", content: "Hi" }], phi);
    expect(phi.show(r.ids)).toBe("{<s>}{<|user|>}\nHi{<|end|>}\n{<|assistant|>}\n");
    expect(r.stopTokens).toContain(phi.specialTokens["<|end|>"]);
  });

  it("rejects the observation role outside GEB", () => {
    const tok = charTokenizer(["<s>", "</s>"]);
    expect(() => renderChat("chatml", [{ role: "observation", content: "{}" }], tok)).toThrow(InvalidArgumentError);
  });
});

describe("message validation", () => {
  const bad: unknown[] = [[], "hi", [{ role: "user" }], [{ role: "bot", content: "x" }], [null]];
  for (const messages of bad) {
    it(`rejects ${JSON.stringify(messages)}`, () => {
      expect(() => checkMessages(messages)).toThrow(InvalidArgumentError);
    });
  }
});

describe("GEB chat layout", () => {
  const reference = JSON.parse(readFileSync(`${GEB_TINY_DIR}/reference.json`, "utf8")) as {
    prompts: Array<{ name: string; kind: string; turns?: Array<[string, string]>; prompt_ids: number[] }>;
  };
  const chats = reference.prompts.filter((p) => p.kind === "chat");

  it("has chat prompts to compare with", () => expect(chats.length).toBe(2));

  for (const prompt of chats) {
    it(`renders ${prompt.name} exactly as the reference`, async () => {
      const tokenizer = await loadTokenizer(GEB_TINY_DIR);
      const messages = prompt.turns!.map(([role, content]) => ({ role: role as "user", content }));
      const rendered = renderChat(detectChatFormat(tokenizer), messages, tokenizer);
      expect(rendered.format).toBe("geb");
      expect(rendered.ids).toEqual(prompt.prompt_ids);
      expect(rendered.stopTokens.sort()).toEqual([2, 4006, 4008]);
    });
  }

  it("renders system and assistant turns with their role tokens", async () => {
    const tokenizer = await loadTokenizer(GEB_TINY_DIR);
    const ids = renderChat(
      "geb",
      [
        { role: "system", content: "S" },
        { role: "user", content: "U" },
        { role: "assistant", content: "A" },
        { role: "observation", content: "O" },
      ],
      tokenizer,
    ).ids;
    const newline = tokenizer.encode("\n");
    const expected = [4001, 4003];
    for (const [role, text] of [[4005, "S"], [4006, "U"], [4007, "A"], [4008, "O"]] as const) {
      expected.push(role, ...newline, ...tokenizer.encode(text));
    }
    expected.push(4007);
    expect(ids).toEqual(expected);
  });
});

describe("llama-tiny chat prompt", () => {
  it("uses llama-2 with one BOS and plain user text", async () => {
    const tokenizer = await loadTokenizer(LLAMA_TINY_GGUF);
    expect(detectChatFormat(tokenizer)).toBe("llama-2");
    const rendered = renderChat("llama-2", [{ role: "user", content: "<s></s> hi" }], tokenizer);
    expect(rendered.ids[0]).toBe(tokenizer.bosId);
    // The user's "<s></s>" stays text: the only control token is the leading BOS.
    expect(rendered.ids.filter((id) => tokenizer.isSpecial(id))).toEqual([tokenizer.bosId]);
    expect(tokenizer.decode(rendered.ids, { skipSpecial: true })).toContain("[INST] <s></s> hi [/INST]");
    expect(rendered.stopTokens).toEqual([tokenizer.eosId]);
  });
});
