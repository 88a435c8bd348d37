// Typed errors for every failure a caller can meet. Each class has a stable `code`
// string that callers can switch on; messages say what failed, on which value, and what to do.

/** Stable error codes, one per kind of failure. */
export type GebErrorCode =
  | "ERR_GEB_INVALID_ARGUMENT"
  | "ERR_GEB_MODEL_FORMAT"
  | "ERR_GEB_UNSUPPORTED"
  | "ERR_GEB_CONTEXT_OVERFLOW"
  | "ERR_GEB_DISPOSED"
  | "ERR_GEB_ABORTED"
  | "ERR_GEB_NATIVE_LOAD"
  | "ERR_GEB_CPU_FEATURE"
  | "ERR_GEB_IO"
  | "ERR_GEB_INTERNAL";

/** Structured details attached to an error; every field is optional. */
export interface GebErrorDetails {
  /** File or directory the error is about. */
  path?: string;
  /** The expected value, or a description of it. */
  expected?: unknown;
  /** The value found instead. */
  received?: unknown;
  /** The underlying error, when this one wraps another. */
  cause?: unknown;
}

/** Base class of every error geb-cpu throws. */
export class GebError extends Error {
  readonly code: GebErrorCode;
  // Declared only, so an error without these details has no such own properties and prints cleanly.
  declare readonly path?: string;
  declare readonly expected?: unknown;
  declare readonly received?: unknown;

  constructor(code: GebErrorCode, message: string, details: GebErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    const self = this as { path?: string; expected?: unknown; received?: unknown };
    if (details.path !== undefined) self.path = details.path;
    if (details.expected !== undefined) self.expected = details.expected;
    if (details.received !== undefined) self.received = details.received;
    Object.defineProperty(this, "name", { value: new.target.name, enumerable: false, configurable: true });
  }
}

/** An argument or option has an invalid type or value. */
export class InvalidArgumentError extends GebError {
  constructor(message: string, details?: GebErrorDetails) {
    super("ERR_GEB_INVALID_ARGUMENT", message, details);
  }
}

/** A model or tokenizer file is not in the expected format, or is truncated or corrupt. */
export class ModelFormatError extends GebError {
  constructor(message: string, details?: GebErrorDetails) {
    super("ERR_GEB_MODEL_FORMAT", message, details);
  }
}

/** A valid file uses an architecture, tensor type or feature that geb-cpu does not support. */
export class UnsupportedError extends GebError {
  constructor(message: string, details?: GebErrorDetails) {
    super("ERR_GEB_UNSUPPORTED", message, details);
  }
}

/** A sequence would grow past the context length. */
export class ContextOverflowError extends GebError {
  constructor(message: string, details?: GebErrorDetails) {
    super("ERR_GEB_CONTEXT_OVERFLOW", message, details);
  }
}

/** An object was used after `dispose()`, or was disposed while the call ran. */
export class DisposedError extends GebError {
  constructor(message: string, details?: GebErrorDetails) {
    super("ERR_GEB_DISPOSED", message, details);
  }
}

/** An operation was cancelled through its `AbortSignal`. */
export class AbortError extends GebError {
  constructor(message: string, details?: GebErrorDetails) {
    super("ERR_GEB_ABORTED", message, details);
  }
}

/** The native addon could not be loaded. */
export class NativeLoadError extends GebError {
  constructor(message: string, details?: GebErrorDetails) {
    super("ERR_GEB_NATIVE_LOAD", message, details);
  }
}

/** A requested kernel tier needs an instruction set this CPU does not have. */
export class CpuFeatureError extends GebError {
  constructor(message: string, details?: GebErrorDetails) {
    super("ERR_GEB_CPU_FEATURE", message, details);
  }
}

/** Reading or writing a file failed at the operating-system level. */
export class IoError extends GebError {
  constructor(message: string, details?: GebErrorDetails) {
    super("ERR_GEB_IO", message, details);
  }
}

/** A bug in geb-cpu: an invariant failed. Please report it. */
export class InternalError extends GebError {
  constructor(message: string, details?: GebErrorDetails) {
    super("ERR_GEB_INTERNAL", message, details);
  }
}
