/**
 * A manager's served `dict`, `list`, `Namespace`, `Value` and `Array`, and the Python semantics
 * their methods need (`==` and `<` for `list.index`/`sort`, `dict` keys that are not strings).
 *
 * @module
 */

import { IndexError, KeyError } from "../../core/lookup_errors.ts";
import { callerIfAny } from "./caller.ts";
import { ValueError } from "../../core/errors.ts";
import { dumps } from "../../core/reduction.ts";
import { type CInput, RawArray, RawValue, type Typecode } from "../../memory/sharedctypes.ts";

// ---------------------------------------------------------------------------------------------
// dict, list, Namespace, Value, Array

const latin1 = (b: Uint8Array): string => {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) {
    s += String.fromCharCode(...b.subarray(i, i + 8192));
  }
  return s;
};

/**
 * The Map key of a dict key. Keys arrive as copies, so an array key (Python's tuple) or an
 * object key would never be found again by identity: such keys are looked up by their encoded
 * form instead. Strings starting with NUL are escaped so they cannot collide with those.
 */
function keyOf(k: unknown): unknown {
  if (typeof k === "string") return k.charCodeAt(0) === 0 ? "\0" + k : k;
  if (k === null || typeof k !== "object") return k;
  return "\0o" + latin1(dumps(k));
}

/** A served `dict`: insertion-ordered, keys of any kind that can be sent. */
export class ServedDict {
  #m = new Map<unknown, [unknown, unknown]>();

  constructor(init?: unknown) {
    if (init !== undefined && init !== null) this.update(init);
  }

  get(key: unknown, dflt?: unknown): unknown {
    const e = this.#m.get(keyOf(key));
    return e ? e[1] : dflt;
  }

  set(key: unknown, value: unknown): void {
    const k = keyOf(key), e = this.#m.get(k);
    if (e) e[1] = value;
    else this.#m.set(k, [key, value]);
  }

  delete(key: unknown): boolean {
    return this.#m.delete(keyOf(key));
  }

  has(key: unknown): boolean {
    return this.#m.has(keyOf(key));
  }

  keys(): unknown[] {
    return Array.from(this.#m.values(), (e) => e[0]);
  }

  values(): unknown[] {
    return Array.from(this.#m.values(), (e) => e[1]);
  }

  items(): [unknown, unknown][] {
    return Array.from(this.#m.values(), (e) => [e[0], e[1]]);
  }

  update(other: unknown): void {
    const c = callerIfAny();
    const o = c ? c.resolve(other) : other;
    if (o instanceof ServedDict) {
      for (const [k, v] of o.items()) this.set(k, v);
    } else if (o instanceof Map) {
      for (const [k, v] of o) this.set(k, v);
    } else if (Array.isArray(o)) {
      o.forEach((pair, i) => {
        if (!Array.isArray(pair) || pair.length !== 2) {
          throw new ValueError(
            `dictionary update sequence element #${i} has length ${
              Array.isArray(pair) ? pair.length : "(not a pair)"
            }; 2 is required`,
          );
        }
        this.set(pair[0], pair[1]);
      });
    } else if (o !== null && typeof o === "object") {
      for (const [k, v] of Object.entries(o)) this.set(k, v);
    } else {
      throw new TypeError(`cannot update a dict from ${o === null ? "null" : typeof o}`);
    }
  }

  pop(key: unknown, ...dflt: unknown[]): unknown {
    const k = keyOf(key), e = this.#m.get(k);
    if (e) {
      this.#m.delete(k);
      return e[1];
    }
    if (dflt.length) return dflt[0];
    throw new KeyError(key);
  }

  setdefault(key: unknown, dflt?: unknown): unknown {
    const k = keyOf(key), e = this.#m.get(k);
    if (e) return e[1];
    this.#m.set(k, [key, dflt]);
    return dflt;
  }

  clear(): void {
    this.#m.clear();
  }

  len(): number {
    return this.#m.size;
  }

  copy(): Map<unknown, unknown> {
    return new Map(Array.from(this.#m.values(), (e) => [e[0], e[1]]));
  }
}

/** A served `list`, with Python's indexing (negative indices count from the end). */
export class ServedList {
  #a: unknown[];

  constructor(init?: unknown) {
    this.#a = init === undefined || init === null ? [] : iterate(init);
  }

  #index(i: unknown, what = "list index out of range"): number {
    if (typeof i !== "number" || !Number.isInteger(i)) {
      throw new TypeError(`list indices must be integers: current value is ${String(i)}`);
    }
    const j = i < 0 ? i + this.#a.length : i;
    if (j < 0 || j >= this.#a.length) throw new IndexError(what);
    return j;
  }

  get(i: number): unknown {
    return this.#a[this.#index(i)];
  }

  set(i: number, v: unknown): void {
    this.#a[this.#index(i, "list assignment index out of range")] = v;
  }

  append(v: unknown): void {
    this.#a.push(v);
  }

  extend(xs: unknown): void {
    const c = callerIfAny();
    const o = c ? c.resolve(xs) : xs;
    for (const x of o instanceof ServedList ? o.slice() : iterate(o)) this.#a.push(x);
  }

  insert(i: number, v: unknown): void {
    if (typeof i !== "number" || !Number.isInteger(i)) {
      throw new TypeError(`list indices must be integers: current value is ${String(i)}`);
    }
    const n = this.#a.length, j = i < 0 ? Math.max(0, i + n) : Math.min(i, n);
    this.#a.splice(j, 0, v);
  }

  pop(i = -1): unknown {
    if (this.#a.length === 0) throw new IndexError("pop from empty list");
    const j = this.#index(i, "pop index out of range");
    return this.#a.splice(j, 1)[0];
  }

  remove(v: unknown): void {
    const j = this.#a.findIndex((x) => equal(x, v));
    if (j < 0) throw new ValueError("list.remove(x): x not in list");
    this.#a.splice(j, 1);
  }

  index(v: unknown, start = 0, end?: number): number {
    const n = this.#a.length;
    const norm = (x: number) => (x < 0 ? Math.max(0, x + n) : Math.min(x, n));
    for (let j = norm(start), e = end === undefined ? n : norm(end); j < e; j++) {
      if (equal(this.#a[j], v)) return j;
    }
    throw new ValueError(`${describe(v)} is not in list`);
  }

  count(v: unknown): number {
    let n = 0;
    for (const x of this.#a) if (equal(x, v)) n++;
    return n;
  }

  sort(options?: { reverse?: boolean }): void {
    const sign = options?.reverse ? -1 : 1;
    this.#a.sort((x, y) => sign * compare(x, y));
  }

  reverse(): void {
    this.#a.reverse();
  }

  len(): number {
    return this.#a.length;
  }

  slice(start?: number, end?: number): unknown[] {
    return this.#a.slice(start, end);
  }
}

/** A served `Namespace`: named attributes. */
export class ServedNamespace {
  #m = new Map<string, unknown>();

  constructor(init?: unknown) {
    if (init !== undefined && init !== null) {
      if (typeof init !== "object") {
        throw new TypeError(`a Namespace is made from an object: got ${typeof init}`);
      }
      for (const [k, v] of Object.entries(init)) this.#m.set(k, v);
    }
  }

  get(name: string): unknown {
    return this.#m.get(String(name));
  }

  set(name: string, value: unknown): void {
    this.#m.set(String(name), value);
  }

  delete(name: string): boolean {
    return this.#m.delete(String(name));
  }

  has(name: string): boolean {
    return this.#m.has(String(name));
  }

  keys(): string[] {
    return [...this.#m.keys()];
  }

  toObject(): Record<string, unknown> {
    const o: Record<string, unknown> = {};
    for (const [k, v] of this.#m) {
      Object.defineProperty(o, k, {
        value: v,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return o;
  }
}

/** A served `Value`: one typed element, checked as sharedctypes checks it. */
export class ServedValue {
  #v: RawValue<Typecode>;

  constructor(typecode: Typecode, value?: unknown) {
    this.#v = new RawValue(typecode, value as CInput<Typecode>);
  }

  get(): unknown {
    return this.#v.value;
  }

  set(v: unknown): void {
    this.#v.value = v as CInput<Typecode>;
  }

  typecode(): Typecode {
    return this.#v.typecode;
  }
}

/** A served `Array` of one typecode. */
export class ServedArray {
  #a: RawArray<Typecode>;

  constructor(typecode: Typecode, sizeOrValues: unknown) {
    this.#a = new RawArray(typecode, sizeOrValues as number);
  }

  len(): number {
    return this.#a.length;
  }

  get(i: number): unknown {
    return this.#a.get(i);
  }

  set(i: number, v: unknown): void {
    this.#a.set(i, v as CInput<Typecode>);
  }

  slice(start?: number, end?: number): unknown[] {
    return this.#a.slice(start, end);
  }

  typecode(): Typecode {
    return this.#a.typecode;
  }
}

/** The built-in types every server serves, with the methods a proxy may call. */

// ---------------------------------------------------------------------------------------------
// Python's == and < for list methods

function iterate(x: unknown): unknown[] {
  if (Array.isArray(x)) return [...x];
  if (typeof x === "string") return [...x];
  if (x !== null && typeof x === "object" && Symbol.iterator in x) {
    return Array.from(x as Iterable<unknown>);
  }
  throw new TypeError(`'${x === null ? "null" : typeof x}' object is not iterable`);
}

function describe(v: unknown): string {
  return typeof v === "string" ? `'${v}'` : typeof v === "bigint" ? `${v}` : String(v);
}

/** Python's `==` on values that arrived as copies: structural for containers. */
export function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  const ta = typeof a, tb = typeof b;
  if ((ta === "number" || ta === "bigint") && (tb === "number" || tb === "bigint")) {
    // deno-lint-ignore eqeqeq
    return a == b; // 1 == 1n, as Python's ints and floats compare
  }
  if (ta !== "object" || tb !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => equal(x, b[i]));
  }
  if (a instanceof Date) return b instanceof Date && a.getTime() === b.getTime();
  if (a instanceof Map) {
    if (!(b instanceof Map) || a.size !== b.size) return false;
    for (const [k, v] of a) {
      if (
        b.has(k) ? !equal(v, b.get(k)) : ![...b].some(([k2, v2]) => equal(k, k2) && equal(v, v2))
      ) {
        return false;
      }
    }
    return true;
  }
  if (a instanceof Set) {
    if (!(b instanceof Set) || a.size !== b.size) return false;
    for (const x of a) if (!b.has(x) && ![...b].some((y) => equal(x, y))) return false;
    return true;
  }
  if (ArrayBuffer.isView(a)) {
    if (!ArrayBuffer.isView(b) || a.constructor !== b.constructor) return false;
    const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  }
  const pa = Object.getPrototypeOf(a), pb = Object.getPrototypeOf(b);
  if ((pa === Object.prototype || pa === null) && (pb === Object.prototype || pb === null)) {
    const ka = Object.keys(a as object), kb = Object.keys(b as object);
    return ka.length === kb.length &&
      ka.every((k) =>
        Object.hasOwn(b as object, k) &&
        equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])
      );
  }
  return false;
}

function kind(v: unknown): string {
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") return "number";
  if (typeof v === "string") return "string";
  if (Array.isArray(v)) return "array";
  if (v instanceof Date) return "Date";
  return v === null
    ? "null"
    : v === undefined
    ? "undefined"
    : typeof v === "object"
    ? (v.constructor?.name ?? "object")
    : typeof v;
}

/** Python's `<` ordering: numbers, strings, arrays (element by element), Dates; else TypeError. */
export function compare(a: unknown, b: unknown): number {
  const ka = kind(a), kb = kind(b);
  if (ka !== kb || !["number", "string", "array", "Date"].includes(ka)) {
    throw new TypeError(`'<' not supported between instances of '${ka}' and '${kb}'`);
  }
  if (ka === "array") {
    const x = a as unknown[], y = b as unknown[];
    for (let i = 0; i < x.length && i < y.length; i++) {
      if (!equal(x[i], y[i])) return compare(x[i], y[i]);
    }
    return x.length - y.length;
  }
  const x = ka === "Date" ? (a as Date).getTime() : ka === "number" ? Number(a) : a;
  const y = kb === "Date" ? (b as Date).getTime() : kb === "number" ? Number(b) : b;
  if (typeof a === "bigint" || typeof b === "bigint") {
    // Mixed number/bigint compare exactly with < and > (typed as number only for the checker).
    const p = a as number, q = b as number;
    return p < q ? -1 : p > q ? 1 : 0;
  }
  return (x as number) < (y as number) ? -1 : (x as number) > (y as number) ? 1 : 0;
}
