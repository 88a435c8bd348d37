// Stop-string filtering across piece boundaries, and stop option validation.

import { describe, expect, it } from "vitest";
import { StopStringFilter, resolveStop } from "../lib/generate/stop.js";
import { InvalidArgumentError } from "../lib/errors.js";

/** Feed pieces through a filter; return the emitted text and the stop string that matched. */
function run(stops: string[], pieces: string[]): { text: string; stoppedBy?: string; emitted: string[] } {
  const filter = new StopStringFilter(stops);
  const emitted: string[] = [];
  for (const piece of pieces) {
    const out = filter.push(piece);
    emitted.push(out.text);
    if (out.stoppedBy !== undefined) return { text: emitted.join(""), stoppedBy: out.stoppedBy, emitted };
  }
  emitted.push(filter.flush());
  return { text: emitted.join(""), emitted };
}

describe("StopStringFilter", () => {
  it("stops on a string split over pieces", () => {
    const out = run(["###"], ["Hello #", "#", "# world"]);
    expect(out.text).toBe("Hello ");
    expect(out.stoppedBy).toBe("###");
  });

  it("holds back a possible start and releases it when it fails", () => {
    const filter = new StopStringFilter(["<end>"]);
    expect(filter.push("a <e").text).toBe("a ");
    expect(filter.push("nd").text).toBe("");
    expect(filter.push("x").text).toBe("<endx");
  });

  it("releases held text at the end", () => {
    expect(run(["STOP"], ["abc S", "TO"]).text).toBe("abc STO");
  });

  it("stops at the earliest of several stop strings", () => {
    const out = run(["world", "lo w"], ["hello", " world"]);
    expect(out.text).toBe("hel");
    expect(out.stoppedBy).toBe("lo w");
  });

  it("handles Chinese stop strings", () => {
    const out = run(["。"], ["床前明月光", "，疑是地上霜", "。举头"]);
    expect(out.text).toBe("床前明月光，疑是地上霜");
  });

  it("passes text through with no stop strings", () => {
    expect(run([], ["a", "b"]).emitted).toEqual(["a", "b", ""]);
  });

  it("emits nothing after a stop", () => {
    const filter = new StopStringFilter(["x"]);
    expect(filter.push("axb").text).toBe("a");
    expect(filter.push("more").text).toBe("");
    expect(filter.flush()).toBe("");
  });

  it("never emits any part of the stop string, piece by piece", () => {
    const text = "one two three four five";
    for (const stop of ["three", "e f", "five", "o t"]) {
      const chars = [...text];
      const out = run([stop], chars);
      expect(out.text).toBe(text.slice(0, text.indexOf(stop)));
    }
  });
});

describe("resolveStop", () => {
  it("uses the tokenizer's stop tokens and 256 tokens by default", () => {
    const stop = resolveStop({}, [2, 4006], 4032);
    expect([...stop.stopTokens]).toEqual([2, 4006]);
    expect(stop.maxTokens).toBe(256);
    expect(stop.stopStrings).toEqual([]);
  });

  it("accepts one string or a list", () => {
    expect(resolveStop({ stop: "\n" }, [], 10).stopStrings).toEqual(["\n"]);
    expect(resolveStop({ stop: ["a", "b", "a"] }, [], 10).stopStrings).toEqual(["a", "b"]);
  });

  const bad: Array<[string, object]> = [
    ["maxTokens", { maxTokens: -1 }],
    ["maxTokens", { maxTokens: 2.5 }],
    ["stop", { stop: "" }],
    ["stop", { stop: [1] }],
    ["stopTokens", { stopTokens: [10] }],
    ["stopTokens", { stopTokens: 3 }],
    ["ignoreEos", { ignoreEos: "yes" }],
  ];
  for (const [name, options] of bad) {
    it(`rejects invalid ${name} (${JSON.stringify(options)})`, () => {
      expect(() => resolveStop(options, [], 10)).toThrow(InvalidArgumentError);
      try {
        resolveStop(options, [], 10);
      } catch (error) {
        expect((error as InvalidArgumentError).code).toBe("ERR_GEB_INVALID_ARGUMENT");
        expect((error as Error).message).toContain(name);
      }
    });
  }
});
