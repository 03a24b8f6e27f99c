/**
 * The globals a pickle may name when read by `pickle.loads` (`lib/pickle/unpickler.ts`), and how each
 * is rebuilt by hand from its `REDUCE` arguments: nothing is ever looked up by name, so a pickle
 * cannot reach any code but these few builders. Also the dict helpers both share (a dict with
 * str keys is a plain object, any other a `Map`).
 *
 * @module
 */

import * as op from "./ops.ts";
import { PickleFormatError } from "./ops.ts";

/** Values that exist only while loading: a global, a `datetime.timezone`. */
export abstract class Internal {}
export class PyGlobal extends Internal {
  constructor(
    readonly qualname: string,
    readonly build: (args: unknown[]) => unknown,
    /** Allowed by the caller's `globals` option: may also be `NEWOBJ`'s class, then `BUILD`. */
    readonly extra: boolean,
  ) {
    super();
  }
}
class FixedOffset extends Internal {
  constructor(readonly seconds: number) {
    super();
  }
}

export function fail(reason: string): never {
  throw new PickleFormatError(reason);
}

const bad = (name: string, args: unknown[]): never =>
  fail(`REDUCE ${name}${pyRepr(args)}: unexpected arguments`);

function pyRepr(args: unknown[]): string {
  return "(" + args.map((a) => pyType(a)).join(", ") + ")";
}

/** The Python type a loaded value came from, for messages. */
export function pyType(v: unknown): string {
  if (v === null) return "None";
  if (Array.isArray(v)) return "list";
  if (v instanceof Uint8Array) return "bytes";
  if (v instanceof Set) return "set";
  if (v instanceof Map || isDict(v)) return "dict";
  if (v instanceof PyGlobal) return v.qualname;
  if (v instanceof FixedOffset) return "datetime.timezone";
  if (v instanceof Date) return "datetime.datetime";
  if (typeof v === "number") return Number.isInteger(v) ? "int" : "float";
  return { string: "str", bigint: "int", boolean: "bool" }[typeof v as string] ?? typeof v;
}

export function isDict(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

function encodeText(s: unknown, encoding: unknown, name: string): Uint8Array {
  if (typeof s !== "string") return bad(name, [s, encoding]);
  const e = String(encoding).toLowerCase().replace("_", "-");
  if (e === "utf-8" || e === "utf8") {
    const out = new Uint8Array(3 * s.length);
    return out.slice(0, op.encodeUtf8Into(s, out, 0));
  }
  if (e !== "latin1" && e !== "latin-1" && e !== "iso-8859-1") {
    return fail(`REDUCE ${name}: encoding ${JSON.stringify(encoding)} is not supported`);
  }
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255) fail(`REDUCE ${name}: ${JSON.stringify(s[i])} is not latin-1`);
    out[i] = c;
  }
  return out;
}

function toBytes(name: string) {
  return (args: unknown[]): Uint8Array => {
    if (args.length === 0) return new Uint8Array(0);
    const [a, enc] = args;
    if (args.length === 1 && a instanceof Uint8Array) return a.slice();
    if (args.length === 1 && Array.isArray(a) && a.every((b) => b === (b & 0xff))) {
      return Uint8Array.from(a as number[]);
    }
    if (args.length === 2) return encodeText(a, enc, name);
    return bad(name, args);
  };
}

function toSet(name: string) {
  return (args: unknown[]): Set<unknown> => {
    if (args.length === 0) return new Set();
    if (args.length === 1 && (Array.isArray(args[0]) || args[0] instanceof Set)) {
      return new Set(args[0] as Iterable<unknown>);
    }
    return bad(name, args);
  };
}

/** A datetime's 10 state bytes (Python's `datetime.__reduce__`), with an optional tzinfo. */
function toDate(args: unknown[]): Date {
  const [state, tz] = args;
  let b: ArrayLike<number> | null = null;
  if (state instanceof Uint8Array) b = state;
  else if (typeof state === "string") b = Array.from(state, (c) => c.charCodeAt(0));
  if (b === null || b.length !== 10 || args.length > 2) return bad("datetime.datetime", args);
  if (tz !== undefined && tz !== null && !(tz instanceof FixedOffset)) {
    return bad("datetime.datetime", args);
  }
  const year = b[0] * 256 + b[1], month = b[2] & 0x7f; // the high bit is `fold`
  const us = (b[7] << 16) | (b[8] << 8) | b[9];
  const d = new Date(Date.UTC(2000, month - 1, b[3], b[4], b[5], b[6], Math.floor(us / 1000)));
  d.setUTCFullYear(year); // Date.UTC reads years 0-99 as 1900-1999
  if (tz instanceof FixedOffset) d.setTime(d.getTime() - tz.seconds * 1000);
  if (Number.isNaN(d.getTime()) || month < 1 || month > 12) return bad("datetime.datetime", args);
  return d;
}

/**
 * The globals a pickle may name, and how each is rebuilt from its `REDUCE` arguments. Keys are
 * `module.name`. Nothing outside this table is ever looked up.
 */
export const ALLOWLIST: Readonly<Record<string, (args: unknown[]) => unknown>> = {
  "builtins.set": toSet("builtins.set"),
  "builtins.frozenset": toSet("builtins.frozenset"),
  "builtins.bytes": toBytes("builtins.bytes"),
  "builtins.bytearray": toBytes("builtins.bytearray"),
  "_codecs.encode": (args) =>
    args.length === 2
      ? encodeText(args[0], args[1], "_codecs.encode")
      : bad("_codecs.encode", args),
  "collections.OrderedDict": (args) => {
    if (args.length === 0) return {};
    const pairs = args[0];
    if (args.length !== 1 || !Array.isArray(pairs)) return bad("collections.OrderedDict", args);
    const flat: unknown[] = [];
    for (const p of pairs) {
      if (!Array.isArray(p) || p.length !== 2) return bad("collections.OrderedDict", args);
      flat.push(p[0], p[1]);
    }
    return dictOf(flat, 0, flat.length);
  },
  "datetime.datetime": toDate,
  "datetime.timedelta": (args) => {
    const [days = 0, seconds = 0, us = 0] = args;
    if (args.length > 3 || ![days, seconds, us].every((x) => typeof x === "number")) {
      return bad("datetime.timedelta", args);
    }
    return (days as number) * 86400 + (seconds as number) + (us as number) / 1e6;
  },
  "datetime.timezone": (args) => {
    const [offset, name] = args;
    if (
      typeof offset !== "number" || args.length > 2 ||
      (name !== undefined && typeof name !== "string")
    ) {
      return bad("datetime.timezone", args);
    }
    return new FixedOffset(offset);
  },
};

/** A dict from `items[from, to)` (key, value, key, value ...): a plain object or a `Map`. */
export function dictOf(
  items: unknown[],
  from: number,
  to: number,
): Record<string, unknown> | Map<unknown, unknown> {
  let d: Record<string, unknown> | Map<unknown, unknown> = {};
  for (let i = from; i < to; i += 2) {
    const k = items[i];
    if (typeof k === "string" && !(d instanceof Map)) setKey(d, k, items[i + 1]);
    else {
      if (!(d instanceof Map)) d = new Map(Object.entries(d));
      d.set(k, items[i + 1]);
    }
  }
  return d;
}

/** `d[k] = v`, except that a key `__proto__` becomes an own property, not the prototype. */
export function setKey(d: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__") {
    Object.defineProperty(d, k, { value: v, enumerable: true, writable: true, configurable: true });
  } else d[k] = v;
}
