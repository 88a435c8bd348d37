// Chat prompt formats: turn a list of messages into prompt token ids, plus the tokens and
// strings that end the reply. GEB uses ChatGLM3's layout. For llama-family GGUF files the
// `tokenizer.chat_template` (a Jinja template) is recognised by characteristic substrings. The
// known formats are rendered by hand-written code because there is no Jinja engine.
// Template text may name special tokens, which become their ids. Message text is always encoded
// as plain text, so a user cannot inject control tokens.

import { InvalidArgumentError } from "../errors.js";
import { showValue } from "../generate/validate.js";

/** Author of a message. `observation` is GEB's role for tool results. */
export type ChatRole = "system" | "user" | "assistant" | "observation";

/** One turn of a conversation. */
export interface ChatMessage {
  role: ChatRole;
  content: string;
}

/** The tokenizer methods the chat formats need. */
export interface ChatTokenizer {
  family: string;
  specialTokens: Readonly<Record<string, number>>;
  stopTokenIds: readonly number[];
  eosId?: number;
  bosId?: number;
  chatTemplate?: string;
  encode(text: string, options?: { specials?: "none" | "all" }): number[];
  encodePrompt(text: string): number[];
  isSpecial(id: number): boolean;
}

/** Names of the chat formats geb-cpu can render. */
export const CHAT_FORMAT_NAMES = ["geb", "llama-2", "chatml", "zephyr", "llama-3", "gemma", "phi-3"] as const;
export type ChatFormatName = (typeof CHAT_FORMAT_NAMES)[number];

/** A prompt ready for generation, with what ends the reply. */
export interface RenderedChat {
  format: ChatFormatName;
  ids: number[];
  /** Token ids that end the assistant's turn. */
  stopTokens: number[];
  /** Text that ends the turn when the format's end marker is not a single token in this vocabulary. */
  stopStrings: string[];
  /** Text the format puts at the start of every reply, which the reply text leaves out (the longest match). */
  replyPrefixes: string[];
}

/**
 * Pick the chat format for a tokenizer: GEB tokenizers use GEB's layout, llama tokenizers the
 * format their GGUF chat template matches, or llama-2 when there is none or it is not recognised.
 */
export function detectChatFormat(tokenizer: ChatTokenizer): ChatFormatName {
  if (tokenizer.family === "geb") return "geb";
  const template = tokenizer.chatTemplate;
  if (template === undefined || template === "") return "llama-2";
  return detectTemplate(template) ?? "llama-2";
}

/** Recognise a Jinja chat template by the marker tokens it writes; undefined when none matches. */
export function detectTemplate(template: string): ChatFormatName | undefined {
  if (template.includes("<|start_header_id|>")) return "llama-3";
  if (template.includes("<|im_start|>")) return "chatml";
  if (template.includes("<start_of_turn>")) return "gemma";
  // phi-3 and zephyr both write <|user|> and <|assistant|>; phi-3 closes turns with <|end|>.
  if (template.includes("<|end|>") && template.includes("<|assistant|>")) return "phi-3";
  if (template.includes("<|user|>") && template.includes("<|assistant|>")) return "zephyr";
  if (template.includes("[INST]")) return "llama-2";
  if (template.includes("[gMASK]") || template.includes("<|observation|>")) return "geb";
  return undefined;
}

/** Check a messages argument: a non-empty array of `{ role, content }` with known roles. */
export function checkMessages(messages: unknown): ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new InvalidArgumentError(`messages must be a non-empty array of { role, content }, received ${showValue(messages)}.`, {
      expected: "ChatMessage[]",
      received: messages,
    });
  }
  messages.forEach((message: unknown, i) => {
    const m = message as Partial<ChatMessage> | null;
    if (typeof m !== "object" || m === null || typeof m.content !== "string") {
      throw new InvalidArgumentError(`messages[${i}] must be an object with a string content, received ${showValue(message)}.`, {
        expected: "{ role, content: string }",
        received: message,
      });
    }
    if (!["system", "user", "assistant", "observation"].includes(m.role as string)) {
      throw new InvalidArgumentError(
        `messages[${i}].role must be "system", "user", "assistant" or "observation", received ${showValue(m.role)}.`,
        { expected: ["system", "user", "assistant", "observation"], received: m.role },
      );
    }
  });
  return messages as ChatMessage[];
}

/**
 * Render messages in the given format, ending with the request for an assistant reply.
 * Throws InvalidArgumentError when the format needs a token the vocabulary lacks (GEB) or a
 * role the format has no place for (`observation` outside GEB).
 */
export function renderChat(format: ChatFormatName, messages: ChatMessage[], tokenizer: ChatTokenizer): RenderedChat {
  if (format === "geb") return renderGeb(messages, tokenizer);
  for (const [i, m] of messages.entries()) {
    if (m.role === "observation") {
      throw new InvalidArgumentError(
        `messages[${i}] has role "observation", which only the GEB chat format supports (format in use: ${format}).`,
        { expected: ["system", "user", "assistant"], received: m.role },
      );
    }
  }
  const layout = LAYOUTS[format](messages);
  return encodeSegments(format, layout, tokenizer);
}

// GEB (ChatGLM3 layout): [gMASK] sop, then per turn <|role|> encode("\n") encode(text), then
// <|assistant|>. The newline and the text are separate encode calls, so each gets its own dummy
// prefix, as ChatGLM3's tokenizer does. A reply is generated the same way, as encode("\n") +
// encode(reply), so its decoded text begins "\n" and then the dummy-prefix space; both go.
function renderGeb(messages: ChatMessage[], tokenizer: ChatTokenizer): RenderedChat {
  const special = (name: string): number => {
    const id = tokenizer.specialTokens[name];
    if (id === undefined) {
      throw new InvalidArgumentError(`The tokenizer has no ${name} token, which the GEB chat format needs.`, {
        expected: name,
      });
    }
    return id;
  };
  const ids = [special("[gMASK]"), special("sop")];
  const newline = tokenizer.encode("\n");
  for (const m of messages) {
    ids.push(special(`<|${m.role}|>`), ...newline, ...tokenizer.encode(m.content));
  }
  ids.push(special("<|assistant|>"));
  return { format: "geb", ids, stopTokens: [...tokenizer.stopTokenIds], stopStrings: [], replyPrefixes: ["\n ", "\n"] };
}

/** Split template text into special-token texts (longest name first) and the plain text between them. */
function splitSpecials(text: string, specialNames: readonly string[]): Array<{ text: string; special: boolean }> {
  const parts: Array<{ text: string; special: boolean }> = [];
  let plain = "";
  let i = 0;
  while (i < text.length) {
    const name = specialNames.find((n) => n !== "" && text.startsWith(n, i));
    if (name === undefined) {
      plain += text[i];
      i++;
      continue;
    }
    if (plain !== "") parts.push({ text: plain, special: false });
    plain = "";
    parts.push({ text: name, special: true });
    i += name.length;
  }
  if (plain !== "") parts.push({ text: plain, special: false });
  return parts;
}

/** A piece of a rendered prompt: template text with special tokens, or a message's plain text. */
type Segment = { template: string } | { message: string } | { bos: true } | { eos: true };

interface Layout {
  segments: Segment[];
  /** The end-of-turn marker: a special token's text in most formats. */
  endOfTurn?: string;
}

const LAYOUTS: Record<Exclude<ChatFormatName, "geb">, (messages: ChatMessage[]) => Layout> = {
  // <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {reply} </s><s>[INST] {user} [/INST]
  // The format has no system turn of its own: system text goes into the <<SYS>> block of the
  // next user turn. When an assistant message or the end of the list comes first, the system
  // text gets an [INST] turn of its own with an empty user part, so no text is dropped.
  "llama-2": (messages) => {
    const segments: Segment[] = [];
    let system: string | undefined;
    let first = true;
    const pushInstruction = (user: string): void => {
      if (!first) segments.push({ bos: true });
      segments.push({ template: "[INST] " });
      if (system !== undefined) {
        segments.push({ template: "<<SYS>>\n" }, { message: system }, { template: "\n<</SYS>>\n\n" });
        system = undefined;
      }
      segments.push({ message: user }, { template: " [/INST]" });
      first = false;
    };
    for (const m of messages) {
      if (m.role === "system") {
        system = system === undefined ? m.content : `${system}\n${m.content}`;
      } else if (m.role === "user") {
        pushInstruction(m.content.trim());
      } else {
        if (system !== undefined) pushInstruction("");
        segments.push({ template: " " }, { message: m.content.trim() }, { template: " " }, { eos: true });
      }
    }
    if (system !== undefined) pushInstruction("");
    return { segments };
  },

  // <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
  chatml: (messages) => {
    const segments: Segment[] = [];
    for (const m of messages) {
      segments.push({ template: `<|im_start|>${m.role}\n` }, { message: m.content }, { template: "<|im_end|>\n" });
    }
    segments.push({ template: "<|im_start|>assistant\n" });
    return { segments, endOfTurn: "<|im_end|>" };
  },

  // <|{role}|>\n{content}</s>\n ... <|assistant|>\n
  zephyr: (messages) => {
    const segments: Segment[] = [];
    for (const m of messages) {
      segments.push({ template: `<|${m.role}|>\n` }, { message: m.content }, { eos: true }, { template: "\n" });
    }
    segments.push({ template: "<|assistant|>\n" });
    return { segments };
  },

  // <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|> ... assistant header
  "llama-3": (messages) => {
    const segments: Segment[] = [];
    for (const m of messages) {
      segments.push(
        { template: `<|start_header_id|>${m.role}<|end_header_id|>\n\n` },
        { message: m.content.trim() },
        { template: "<|eot_id|>" },
      );
    }
    segments.push({ template: "<|start_header_id|>assistant<|end_header_id|>\n\n" });
    return { segments, endOfTurn: "<|eot_id|>" };
  },

  // <start_of_turn>user\n{content}<end_of_turn>\n ... <start_of_turn>model\n. Gemma has no system
  // role: system text is put in front of the next user message. When a model message or the end
  // of the list comes first, the system text becomes a user turn of its own, so none is dropped.
  gemma: (messages) => {
    const segments: Segment[] = [];
    let system: string | undefined;
    const pushTurn = (role: "user" | "model", content: string): void => {
      segments.push({ template: `<start_of_turn>${role}\n` }, { message: content }, { template: "<end_of_turn>\n" });
    };
    for (const m of messages) {
      if (m.role === "system") {
        system = system === undefined ? m.content : `${system}\n${m.content}`;
        continue;
      }
      if (m.role === "assistant") {
        if (system !== undefined) pushTurn("user", system);
        system = undefined;
        pushTurn("model", m.content.trim());
        continue;
      }
      const content = m.content.trim();
      pushTurn("user", system === undefined ? content : `${system}\n\n${content}`);
      system = undefined;
    }
    if (system !== undefined) pushTurn("user", system);
    segments.push({ template: "<start_of_turn>model\n" });
    return { segments, endOfTurn: "<end_of_turn>" };
  },

  // <|{role}|>\n{content}<|end|>\n ... <|assistant|>\n
  "phi-3": (messages) => {
    const segments: Segment[] = [];
    for (const m of messages) {
      segments.push({ template: `<|${m.role}|>\n` }, { message: m.content }, { template: "<|end|>\n" });
    }
    segments.push({ template: "<|assistant|>\n" });
    return { segments, endOfTurn: "<|end|>" };
  },
};

/**
 * Encode segments into ids. The prompt starts with the tokenizer's own prefix (`<s>` when the
 * vocabulary sets add_bos). Special-token text inside template segments becomes its id through
 * `encode(text, { specials: "all" })`. All other text, template and message text alike, is joined
 * into runs between special tokens, and each run is one `encode` call with specials off.
 */
function encodeSegments(format: ChatFormatName, layout: Layout, tokenizer: ChatTokenizer): RenderedChat {
  // Joining a run before encoding keeps SentencePiece's dummy-prefix space to one per run,
  // instead of one per segment ("[INST]  hi" with two spaces).
  // NOTE: a run that follows a special token still starts with that dummy-prefix space when the
  // tokenizer adds one there, which llama.cpp's tokenization of the whole string may not do.
  const ids = tokenizer.encodePrompt("");
  let run = "";
  const flushRun = (): void => {
    if (run !== "") ids.push(...tokenizer.encode(run, { specials: "none" }));
    run = "";
  };
  const specialNames = Object.keys(tokenizer.specialTokens).sort((a, b) => b.length - a.length);

  for (const segment of layout.segments) {
    if ("message" in segment) {
      run += segment.message;
    } else if ("template" in segment) {
      for (const part of splitSpecials(segment.template, specialNames)) {
        if (!part.special) {
          run += part.text;
          continue;
        }
        flushRun();
        ids.push(...tokenizer.encode(part.text, { specials: "all" }));
      }
    } else {
      const id = "bos" in segment ? tokenizer.bosId : tokenizer.eosId;
      if (id !== undefined) {
        flushRun();
        ids.push(id);
      }
    }
  }
  flushRun();

  const stopTokens = new Set(tokenizer.stopTokenIds);
  const stopStrings: string[] = [];
  if (layout.endOfTurn !== undefined) {
    const marker = tokenizer.encode(layout.endOfTurn, { specials: "all" });
    if (marker.length === 1 && tokenizer.isSpecial(marker[0]!)) stopTokens.add(marker[0]!);
    else stopStrings.push(layout.endOfTurn);
  }
  return { format, ids, stopTokens: [...stopTokens], stopStrings, replyPrefixes: [] };
}
