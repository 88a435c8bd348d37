// Sequence slots of the engine's KV cache. A generation keeps one slot from its prompt to its
// last token, and callers beyond the number of slots wait in FIFO order.

import { AbortError, DisposedError } from "../errors.js";

interface Waiter {
  resolve(slot: number): void;
  reject(error: unknown): void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/** A FIFO pool of sequence ids 0..count-1. */
export class SlotPool {
  private readonly free: number[];
  private readonly waiters: Waiter[] = [];
  private closed = false;
  readonly size: number;

  constructor(count: number) {
    this.size = count;
    this.free = Array.from({ length: count }, (_, i) => i);
  }

  /** Slots currently held by generations. */
  get inUse(): number {
    return this.size - this.free.length;
  }

  /** Wait for a free slot. Rejects with AbortError if `signal` fires first, DisposedError after close(). */
  acquire(signal?: AbortSignal): Promise<number> {
    if (this.closed) return Promise.reject(new DisposedError("The model was disposed; load it again to use it."));
    if (signal?.aborted) return Promise.reject(new AbortError("The call was aborted by its AbortSignal before it started."));
    const slot = this.free.shift();
    if (slot !== undefined) return Promise.resolve(slot);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject };
      if (signal !== undefined) {
        waiter.signal = signal;
        waiter.onAbort = () => {
          const index = this.waiters.indexOf(waiter);
          if (index >= 0) this.waiters.splice(index, 1);
          reject(new AbortError("The call was aborted by its AbortSignal while it waited for a free sequence slot."));
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.waiters.push(waiter);
    });
  }

  /** Return a slot; the longest-waiting caller gets it. */
  release(slot: number): void {
    const waiter = this.waiters.shift();
    if (waiter === undefined) {
      this.free.push(slot);
      return;
    }
    if (waiter.onAbort !== undefined) waiter.signal?.removeEventListener("abort", waiter.onAbort);
    waiter.resolve(slot);
  }

  /** Reject every waiting caller with DisposedError; later acquire() calls reject too. */
  close(): void {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) {
      if (waiter.onAbort !== undefined) waiter.signal?.removeEventListener("abort", waiter.onAbort);
      waiter.reject(new DisposedError("The model was disposed while this call (a generation or evaluate) waited for a sequence slot."));
    }
  }
}
