// Paths to the shared test data. The `shared` folder sits beside the repository checkout
// (CI clones the repository elsewhere and puts shared/ next to it), so paths are resolved
// relative to this file, never absolute.

import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** The shared test data folder. */
export const SHARED_DIR = resolve(here, "../../shared");

/** Resolve a path inside the shared folder; throws when it is missing, so a test never silently skips. */
export function sharedPath(...parts: string[]): string {
  const path = resolve(SHARED_DIR, ...parts);
  if (!existsSync(path)) throw new Error(`Test fixture not found: ${path}. Put the shared folder beside the repository.`);
  return path;
}

export const MODELS_DIR = resolve(SHARED_DIR, "models");
export const GEB_TINY_DIR = resolve(MODELS_DIR, "geb-tiny");
export const LLAMA_TINY_DIR = resolve(MODELS_DIR, "llama-tiny");
export const LLAMA_TINY_GGUF = resolve(LLAMA_TINY_DIR, "llama-tiny.gguf");
export const LLAMA_TINY_F16_GGUF = resolve(LLAMA_TINY_DIR, "llama-tiny-f16.gguf");
export const STORIES260K_DIR = resolve(MODELS_DIR, "stories260K");
export const STORIES260K_GGUF = resolve(STORIES260K_DIR, "stories260K.gguf");
export const GEB_1_3B_DIR = resolve(MODELS_DIR, "geb-1.3b");
export const TOKENIZER_SUITES_DIR = resolve(SHARED_DIR, "tokenizer-suites");
