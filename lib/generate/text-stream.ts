// Turns a running generation into an async iterable of text pieces with a `result` promise.
// Generation starts at once and does not wait for the reader: pieces queue up until read.
// Leaving the loop early (break, return, throw) aborts the generation and frees its sequence.
// A stream has one reader: a second `for await` throws InvalidArgumentError.

import { InvalidArgumentError } from "../errors.js";
import type { GenerateResult } from "./generation.js";

/** Text pieces of a generation, plus its final result. */
export interface GenerateStream extends AsyncIterable<string> {
  /**
   * The final result. Resolves when generation ends, also when the loop was left early
   * (finishReason "abort"); rejects with the generation's error.
   */
  readonly result: Promise<GenerateResult>;
  /** Stop generation; `result` then resolves with finishReason "abort" and the partial text. */
  abort(): void;
}

/**
 * Start `run` with an abort signal that fires when the caller's `signal` does or when the
 * stream is aborted, and expose its pieces as a stream.
 */
export function createTextStream(
  signal: AbortSignal | undefined,
  run: (signal: AbortSignal, onText: (piece: string) => void) => Promise<GenerateResult>,
): GenerateStream {
  const controller = new AbortController();
  const forwardAbort = (): void => controller.abort(signal?.reason);
  if (signal?.aborted) controller.abort(signal.reason);
  else signal?.addEventListener("abort", forwardAbort, { once: true });

  const pieces: string[] = [];
  let finished = false;
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  let result: Promise<GenerateResult>;
  try {
    result = run(controller.signal, (piece) => {
      pieces.push(piece);
      notify();
    });
  } catch (error) {
    // Option validation throws synchronously inside run(); surface it through the stream.
    result = Promise.reject(error);
  }
  result = result.finally(() => {
    signal?.removeEventListener("abort", forwardAbort);
  });
  result.then(
    () => {
      finished = true;
      notify();
    },
    (error: unknown) => {
      finished = true;
      failure = { error };
      notify();
    },
  );
  // The error is delivered through the iterator and through `result`; a caller that only
  // iterates must not also get an unhandled rejection.
  result.catch(() => undefined);

  async function* iterate(): AsyncGenerator<string, void, undefined> {
    try {
      for (;;) {
        if (pieces.length > 0) {
          yield pieces.shift()!;
          continue;
        }
        if (finished) {
          if (failure !== undefined) throw failure.error;
          return;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    } finally {
      if (!finished) {
        controller.abort();
        await result.catch(() => undefined);
      }
    }
  }

  // Pieces are handed out once, so a second reader would wait forever for pieces the first took.
  let iterated = false;
  return {
    result,
    abort: () => controller.abort(),
    [Symbol.asyncIterator]: () => {
      if (iterated) {
        throw new InvalidArgumentError("This stream was already iterated, and a stream has one reader. Await stream.result for the final text.");
      }
      iterated = true;
      return iterate();
    },
  };
}
