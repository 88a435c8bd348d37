// Typed errors: stable codes, class names, optional details present only when given.

import { inspect } from "node:util";

import { describe, expect, it } from "vitest";

import {
  AbortError,
  ContextOverflowError,
  CpuFeatureError,
  DisposedError,
  GebError,
  InternalError,
  InvalidArgumentError,
  IoError,
  ModelFormatError,
  NativeLoadError,
  UnsupportedError,
} from "../lib/errors.js";

const cases = [
  [InvalidArgumentError, "ERR_GEB_INVALID_ARGUMENT"],
  [ModelFormatError, "ERR_GEB_MODEL_FORMAT"],
  [UnsupportedError, "ERR_GEB_UNSUPPORTED"],
  [ContextOverflowError, "ERR_GEB_CONTEXT_OVERFLOW"],
  [DisposedError, "ERR_GEB_DISPOSED"],
  [AbortError, "ERR_GEB_ABORTED"],
  [NativeLoadError, "ERR_GEB_NATIVE_LOAD"],
  [CpuFeatureError, "ERR_GEB_CPU_FEATURE"],
  [IoError, "ERR_GEB_IO"],
  [InternalError, "ERR_GEB_INTERNAL"],
] as const;

describe("error classes", () => {
  it.each(cases)("%o carries its code and name", (ErrorClass, code) => {
    const error = new ErrorClass("something failed");
    expect(error).toBeInstanceOf(GebError);
    expect(error).toBeInstanceOf(Error);
    expect(error.code).toBe(code);
    expect(error.name).toBe(ErrorClass.name);
    expect(Object.keys(error)).not.toContain("name");
  });

  it("omits details that were not given", () => {
    const error = new InvalidArgumentError("bad value");
    expect(Object.keys(error)).toEqual(["code"]);
    expect(inspect(error)).not.toContain("undefined");
  });

  it("keeps the details and cause that were given", () => {
    const cause = new Error("inner");
    const error = new ModelFormatError("bad file", { path: "/m.gguf", expected: 3, received: 9, cause });
    expect(error.path).toBe("/m.gguf");
    expect(error.expected).toBe(3);
    expect(error.received).toBe(9);
    expect(error.cause).toBe(cause);
  });
});
