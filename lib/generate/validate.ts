// Option checks shared by the sampler, the stop rules and the public Model API. Every check
// throws InvalidArgumentError naming the option, the value received and the allowed range.

import { InvalidArgumentError } from "../errors.js";

/** Range rules for one numeric option. */
export interface NumberRule {
  min?: number;
  max?: number;
  /** When true, `min` itself is not allowed. */
  minExclusive?: boolean;
  integer?: boolean;
}

function describeRange(rule: NumberRule): string {
  const kind = rule.integer ? "an integer" : "a finite number";
  if (rule.min !== undefined && rule.max !== undefined) {
    const open = rule.minExclusive ? "(" : "[";
    return `${kind} in ${open}${rule.min}, ${rule.max}]`;
  }
  if (rule.min !== undefined) return `${kind} ${rule.minExclusive ? ">" : ">="} ${rule.min}`;
  if (rule.max !== undefined) return `${kind} <= ${rule.max}`;
  return kind;
}

/** Show a received value in a message without dumping large objects. */
export function showValue(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? value.slice(0, 40) + "..." : value);
  if (typeof value === "number" || typeof value === "boolean" || value === null || value === undefined) {
    return String(value);
  }
  if (typeof value === "bigint") return `${value}n`;
  return Object.prototype.toString.call(value);
}

/**
 * Check an optional numeric option and return it, or `fallback` when it is undefined.
 * Throws InvalidArgumentError (ERR_GEB_INVALID_ARGUMENT) when the value is not a number in range.
 */
export function checkNumber(name: string, value: unknown, rule: NumberRule, fallback: number): number {
  if (value === undefined) return fallback;
  const range = describeRange(rule);
  const fail = (): never => {
    throw new InvalidArgumentError(`Option ${name} must be ${range}, received ${showValue(value)}.`, {
      expected: range,
      received: value,
    });
  };
  if (typeof value !== "number" || !Number.isFinite(value)) return fail();
  if (rule.integer && !Number.isInteger(value)) return fail();
  if (rule.min !== undefined && (value < rule.min || (rule.minExclusive && value === rule.min))) return fail();
  if (rule.max !== undefined && value > rule.max) return fail();
  return value;
}

/** Check an optional boolean option and return it, or `fallback` when it is undefined. */
export function checkBoolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw new InvalidArgumentError(`Option ${name} must be true or false, received ${showValue(value)}.`, {
      expected: "boolean",
      received: value,
    });
  }
  return value;
}

/** Check that an option is one of a fixed set of strings. */
export function checkChoice<T extends string>(name: string, value: unknown, choices: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== "string" || !(choices as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(
      `Option ${name} must be one of ${choices.map((c) => JSON.stringify(c)).join(", ")}, received ${showValue(value)}.`,
      { expected: choices, received: value },
    );
  }
  return value as T;
}

/** Check that a token id is an integer in [0, vocabSize). */
export function checkTokenId(name: string, value: unknown, vocabSize: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value >= vocabSize) {
    throw new InvalidArgumentError(
      `${name} must be a token id, an integer in [0, ${vocabSize - 1}], received ${showValue(value)}.`,
      { expected: `integer in [0, ${vocabSize - 1}]`, received: value },
    );
  }
  return value;
}

/**
 * Reject keys outside `known`, so a misspelt option (`max_tokens`) fails instead of being
 * silently ignored.
 */
export function checkKnownKeys(name: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new InvalidArgumentError(`${name} has an unknown option ${JSON.stringify(key)}; known options: ${known.join(", ")}.`, {
        expected: known,
        received: key,
      });
    }
  }
}

/** Check an options argument: undefined becomes `{}`, anything else must be a plain object. */
export function checkOptionsObject<T extends object>(name: string, value: T | undefined): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`${name} must be an object, received ${showValue(value)}.`, {
      expected: "object",
      received: value,
    });
  }
  return value;
}
