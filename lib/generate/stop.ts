// When generation stops: stop tokens (by default the tokenizer's end-of-text and turn tokens),
// stop strings, and the token limit. Stop strings may span several tokens, so the text filter
// holds back any tail that could still grow into one, and never lets a stop string reach the output.

import { InvalidArgumentError } from "../errors.js";
import { checkBoolean, checkNumber, checkTokenId, showValue } from "./validate.js";

/** Default limit on generated tokens. */
export const DEFAULT_MAX_TOKENS = 256;

/** Options that end a generation. */
export interface StopOptions {
  /** Maximum number of tokens to generate, an integer >= 0. Default 256. */
  maxTokens?: number;
  /**
   * Text that ends generation when it appears in the output. The stop string and anything after
   * it are left out of the result. Empty strings are not allowed.
   */
  stop?: string | string[];
  /** Token ids that end generation. Default: the tokenizer's stop tokens (`tokenizer.stopTokenIds`). */
  stopTokens?: number[];
  /** Keep generating through stop tokens (they are then decoded into the text like any token). Default false. */
  ignoreEos?: boolean;
}

/** Stop settings after validation. */
export interface ResolvedStop {
  maxTokens: number;
  stopStrings: string[];
  stopTokens: Set<number>;
  ignoreEos: boolean;
}

/** Validate stop options; throws InvalidArgumentError (ERR_GEB_INVALID_ARGUMENT) naming the option. */
export function resolveStop(options: StopOptions, defaultStopTokens: readonly number[], vocabSize: number): ResolvedStop {
  const maxTokens = checkNumber("maxTokens", options.maxTokens, { min: 0, integer: true }, DEFAULT_MAX_TOKENS);
  const ignoreEos = checkBoolean("ignoreEos", options.ignoreEos, false);

  let stopStrings: string[] = [];
  if (options.stop !== undefined) {
    const list: unknown[] = Array.isArray(options.stop) ? options.stop : [options.stop];
    for (const item of list) {
      if (typeof item !== "string" || item.length === 0) {
        throw new InvalidArgumentError(
          `Option stop must be a non-empty string or an array of them, received ${showValue(item)}.`,
          { expected: "non-empty string", received: item },
        );
      }
    }
    stopStrings = [...new Set(list as string[])];
  }

  let stopTokens: Set<number>;
  if (options.stopTokens === undefined) {
    stopTokens = new Set(defaultStopTokens);
  } else {
    if (!Array.isArray(options.stopTokens)) {
      throw new InvalidArgumentError(
        `Option stopTokens must be an array of token ids, received ${showValue(options.stopTokens)}.`,
        { expected: "number[]", received: options.stopTokens },
      );
    }
    stopTokens = new Set(options.stopTokens.map((id, i) => checkTokenId(`Option stopTokens[${i}]`, id, vocabSize)));
  }
  return { maxTokens, stopStrings, stopTokens, ignoreEos };
}

/** Output of `StopStringFilter.push`. */
export interface FilteredText {
  /** Text that can be shown now. */
  text: string;
  /** The stop string that matched, or undefined while generation goes on. */
  stoppedBy?: string;
}

/**
 * Streams text through a set of stop strings. Text that could be the start of a stop string is
 * held back until later pieces show whether it is one. `flush()` releases it at the end.
 */
export class StopStringFilter {
  private readonly stops: readonly string[];
  private held = "";
  private stopped = false;

  constructor(stops: readonly string[]) {
    this.stops = stops;
  }

  /** Add decoded text; returns what may be emitted, and the stop string if one completed. */
  push(piece: string): FilteredText {
    if (this.stopped) return { text: "" };
    if (this.stops.length === 0) return { text: piece };
    const buffer = this.held + piece;

    // The earliest match wins; on the same start, the longer stop string.
    let matchAt = -1;
    let matched = "";
    for (const stop of this.stops) {
      const at = buffer.indexOf(stop);
      if (at >= 0 && (matchAt < 0 || at < matchAt || (at === matchAt && stop.length > matched.length))) {
        matchAt = at;
        matched = stop;
      }
    }
    if (matchAt >= 0) {
      this.stopped = true;
      this.held = "";
      return { text: buffer.slice(0, matchAt), stoppedBy: matched };
    }

    const keep = this.partialMatchLength(buffer);
    this.held = buffer.slice(buffer.length - keep);
    return { text: buffer.slice(0, buffer.length - keep) };
  }

  /** Release text held back at the end of generation (no stop string can complete any more). */
  flush(): string {
    const rest = this.stopped ? "" : this.held;
    this.held = "";
    return rest;
  }

  /** Length of the longest tail of `buffer` that is a proper prefix of some stop string. */
  private partialMatchLength(buffer: string): number {
    let best = 0;
    for (const stop of this.stops) {
      const limit = Math.min(stop.length - 1, buffer.length);
      for (let length = limit; length > best; length--) {
        if (buffer.endsWith(stop.slice(0, length))) {
          best = length;
          break;
        }
      }
    }
    return best;
  }
}
