// Public entry of the tokenizer module: load a tokenizer and use it to encode and decode.

export { loadTokenizer, GEB_SPECIAL_TOKENS, GEB_TOKENIZER_FILE } from "./load.js";
export { Tokenizer } from "./tokenizer.js";
export type { TokenizerFamily, EncodeOptions, DecodeOptions, StreamDecoder } from "./tokenizer.js";
