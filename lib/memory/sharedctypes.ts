/**
 * Shared C-typed values and arrays (Python's `multiprocessing.sharedctypes`): `Value`, `Array`,
 * `RawValue`, `RawArray`, with the typecodes of Python's `array` module.
 *
 * The elements live in a block of the shared heap, so a handle crosses to a worker (in `args`
 * or inside any Queue/Pipe message) as an offset and every copy sees the same memory. An array
 * of 64 MiB or more gets a `SharedArrayBuffer` of its own instead (a big block, see _bigblock:
 * as large as the machine's memory allows), which reaches a worker that has not had it only by
 * message: in its `args`, or through an async receiver (`await q.get()`); a synchronous
 * receiver gets an error saying so.
 *
 * Each read and each write of one element is atomic on its own (elements are aligned, so they
 * are never torn; 64-bit integers go through `Atomics`), as in Python where `.value` takes the
 * lock for each access. A read-modify-write such as `v.value += 1` is two accesses: hold
 * `getLock()` around it, as in Python. (Plain accesses, not `Atomics.store`, keep a write at
 * the cost of a store: the lock's own atomic operations order them for the other processes.)
 *
 * Every write passes the zombie fence first (see _heap "Zombies"): a worker terminated while
 * running synchronous code throws there instead of writing shared memory.
 *
 * @module
 */

import { Attaching } from "../core/attach.ts";
import { optionsOf } from "../core/args.ts";
import {
  adopt,
  alloc,
  checkFence,
  checkNotTerminated,
  fenceView,
  heap,
  release,
  retain,
} from "../core/heap.ts";
import {
  allocBig,
  BIG_BLOCK_BYTES,
  bigBuffer,
  bigBufferAsync,
  forget,
  isBig,
  notHereMessage,
} from "../core/bigblock.ts";
import { ValueError } from "../core/errors.ts";
import { pendingUntil, registerHandle } from "../core/reduction.ts";
import { Lock, RLock } from "../sync/lock.ts";

/**
 * A typecode of Python's `array` module: `b`/`B` (8-bit), `h`/`H` (16-bit), `i`/`I` and
 * `l`/`L` (32-bit), `q`/`Q` (64-bit, as `bigint`), `f` (float32), `d` (float64), `c` (one
 * Latin-1 character). Upper case is unsigned. (`l`/`L` are 32-bit, the C minimum; use `q`/`Q`
 * for 64-bit integers.)
 */
export type Typecode = "b" | "B" | "h" | "H" | "i" | "I" | "l" | "L" | "q" | "Q" | "f" | "d" | "c";

/** The JavaScript type of an element: `bigint` for `q`/`Q`, `string` for `c`, else `number`. */
export type CType<T extends Typecode> = T extends "q" | "Q" ? bigint
  : T extends "c" ? string
  : number;

/** What an element accepts: its own type; `q`/`Q` also take integral numbers. */
export type CInput<T extends Typecode> = T extends "q" | "Q" ? bigint | number : CType<T>;

/** Options of `Value` and `Array`. */
export interface SynchronizedOptions {
  /**
   * `true` (default): a new `RLock` guards the object, as in Python; `false`: none (then
   * `getLock()` throws); or an existing `Lock`/`RLock` to share.
   */
  lock?: boolean | Lock | RLock;
}

type Typed =
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/** How one typecode is stored, read and checked. */
interface Spec {
  readonly code: Typecode;
  readonly size: number;
  view(sab: SharedArrayBuffer, off: number, n: number): Typed;
  read(a: Typed, i: number): unknown;
  write(a: Typed, i: number, v: unknown): void;
  /** The zero value, as returned by `read`. */
  readonly zero: unknown;
}

function intSpec(
  code: Typecode,
  Ctor: new (b: SharedArrayBuffer, off: number, n: number) => Typed,
  min: number,
  max: number,
): Spec {
  const size = (Ctor as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
  return {
    code,
    size,
    zero: 0,
    view: (sab, off, n) => new Ctor(sab, off, n),
    read: (a, i) => a[i],
    write: (a, i, v) => {
      if (typeof v === "boolean") v = +v;
      if (typeof v !== "number" || !Number.isInteger(v)) {
        throw new TypeError(
          `typecode '${code}' needs an integer: current value is ${describe(v)}`,
        );
      }
      if (v < min || v > max) {
        throw new RangeError(`${v} is out of range for typecode '${code}' (${min}..${max})`);
      }
      a[i] = v;
    },
  };
}

function bigSpec(code: "q" | "Q"): Spec {
  const signed = code === "q";
  const min = signed ? -(1n << 63n) : 0n, max = signed ? (1n << 63n) - 1n : (1n << 64n) - 1n;
  return {
    code,
    size: 8,
    zero: 0n,
    view: (sab, off, n) =>
      signed ? new BigInt64Array(sab, off, n) : new BigUint64Array(sab, off, n),
    read: (a, i) => Atomics.load(a as BigInt64Array, i),
    write: (a, i, v) => {
      if (typeof v === "number" && Number.isInteger(v)) v = BigInt(v);
      if (typeof v !== "bigint") {
        throw new TypeError(
          `typecode '${code}' needs a bigint (or an integral number): current value is ${
            describe(v)
          }`,
        );
      }
      if (v < min || v > max) {
        throw new RangeError(`${v} is out of range for typecode '${code}' (${min}..${max})`);
      }
      Atomics.store(a as BigInt64Array, i, v);
    },
  };
}

function floatSpec(code: "f" | "d"): Spec {
  const Ctor = code === "f" ? Float32Array : Float64Array;
  return {
    code,
    size: Ctor.BYTES_PER_ELEMENT,
    zero: 0,
    view: (sab, off, n) =>
      code === "f" ? new Float32Array(sab, off, n) : new Float64Array(sab, off, n),
    read: (a, i) => a[i],
    write: (a, i, v) => {
      if (typeof v !== "number") {
        throw new TypeError(`typecode '${code}' needs a number: current value is ${describe(v)}`);
      }
      a[i] = v;
    },
  };
}

const charSpec: Spec = {
  code: "c",
  size: 1,
  zero: "\0",
  view: (sab, off, n) => new Uint8Array(sab, off, n),
  read: (a, i) => String.fromCharCode(a[i] as number),
  write: (a, i, v) => {
    if (typeof v !== "string" || v.length !== 1 || v.charCodeAt(0) > 0xff) {
      throw new TypeError(
        `typecode 'c' needs a one-character Latin-1 string: current value is ${describe(v)}`,
      );
    }
    a[i] = v.charCodeAt(0);
  },
};

const SPECS: Record<Typecode, Spec> = {
  b: intSpec("b", Int8Array, -0x80, 0x7f),
  B: intSpec("B", Uint8Array, 0, 0xff),
  h: intSpec("h", Int16Array, -0x8000, 0x7fff),
  H: intSpec("H", Uint16Array, 0, 0xffff),
  i: intSpec("i", Int32Array, -0x80000000, 0x7fffffff),
  I: intSpec("I", Uint32Array, 0, 0xffffffff),
  l: intSpec("l", Int32Array, -0x80000000, 0x7fffffff),
  L: intSpec("L", Uint32Array, 0, 0xffffffff),
  q: bigSpec("q"),
  Q: bigSpec("Q"),
  f: floatSpec("f"),
  d: floatSpec("d"),
  c: charSpec,
};

function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "bigint") return `${v}n`;
  return typeof v === "object" && v !== null ? Object.prototype.toString.call(v) : String(v);
}

function specOf(typecode: unknown): Spec {
  const spec = typeof typecode === "string" && Object.hasOwn(SPECS, typecode)
    ? SPECS[typecode as Typecode]
    : undefined;
  if (!spec) {
    throw new ValueError(
      `bad typecode (must be b, B, h, H, i, I, l, L, q, Q, f, d or c): current value is ${
        describe(typecode)
      }`,
    );
  }
  return spec;
}

function lockFor(lock: SynchronizedOptions["lock"]): Lock | RLock | null {
  if (lock === undefined || lock === true) return new RLock();
  if (lock === false) return null;
  if (lock instanceof Lock || lock instanceof RLock) return lock;
  throw new TypeError(
    `'lock' must be true, false, a Lock or an RLock: current value is ${describe(lock)}`,
  );
}

const probes = new Map<Spec, Typed>();

/** A scratch element of `spec`'s type, to validate values before allocating shared memory. */
function probe(spec: Spec): Typed {
  let p = probes.get(spec);
  if (!p) probes.set(spec, p = spec.view(new SharedArrayBuffer(8), 0, 1));
  return p;
}

function noLock(): never {
  throw new ValueError("this object has no lock (it was created with lock: false)");
}

/** Set while the codec rebuilds a handle: the constructor attaches to this block. */
const attaching = new Attaching();

function attach<T>(off: number, make: () => T): T {
  return attaching.run(off, make);
}

/**
 * The elements of a new object: an attached block, or a fresh one (zeroed). A big block whose
 * buffer has not reached this worker gets an empty view, and `arrive` replaces it once the
 * buffer is here: the codec waits for that (or, decoding synchronously, fails) before anybody
 * sees the object.
 */
function cells(
  self: object,
  spec: Spec,
  n: number,
  arrive: (a: Typed) => void,
): { off: number; a: Typed; fresh: boolean } {
  const attached = attaching.take();
  const fresh = attached === undefined;
  const bytes = Math.max(1, n) * spec.size;
  if (fresh) checkNotTerminated();
  let off = attached ?? 0, sab: SharedArrayBuffer | undefined;
  if (fresh && bytes >= BIG_BLOCK_BYTES) ({ off, sab } = allocBig(bytes));
  else if (fresh) off = alloc(bytes);
  if (!isBig(off)) {
    adopt(self, off);
    return { off, a: spec.view(heap().sab, off, n), fresh };
  }
  adopt(self, off, forget);
  if ((sab ??= bigBuffer(off))) return { off, a: spec.view(sab, 0, n), fresh };
  pendingUntil(
    bigBufferAsync(off).then((b) => arrive(spec.view(b, 0, n))),
    notHereMessage(`a shared Array of ${bytes} bytes`),
  );
  return { off, a: spec.view(new SharedArrayBuffer(0), 0, 0), fresh };
}

// ---------------------------------------------------------------------------------------------
// Values

let valueOf!: (v: RawValue) => { off: number; code: Typecode };
let valueLock!: (v: Value) => Lock | RLock | null;

/**
 * One C-typed value in shared memory, without a lock (Python's `RawValue`).
 *
 * @example
 * ```ts
 * import { RawValue } from "jsr:@denomp/multiprocessing";
 * const v = new RawValue("d", 1.5);
 * v.value *= 2;
 * console.assert(v.value === 3);
 * ```
 */
export class RawValue<T extends Typecode = Typecode> {
  #off: number;
  #spec: Spec;
  #a: Typed;
  /** This process's fence word (core/heap.ts `fenceView`), read by every write. */
  #fence: Int32Array = fenceView();

  /** A value of type `typecode`, initially `init` (default zero). */
  constructor(typecode: T, init?: CInput<T>) {
    const spec = specOf(typecode);
    if (init !== undefined) spec.write(probe(spec), 0, init); // validate before allocating
    const c = cells(this, spec, 1, () => {});
    this.#off = c.off;
    this.#spec = spec;
    this.#a = c.a;
    if (c.fresh && init !== undefined) spec.write(c.a, 0, init);
  }

  static {
    valueOf = (v) => ({ off: v.#off, code: v.#spec.code });
  }

  /** The typecode. */
  get typecode(): T {
    return this.#spec.code as T;
  }

  /** The current value (each read and each write is atomic on its own). */
  get value(): CType<T> {
    return this.#spec.read(this.#a, 0) as CType<T>;
  }
  set value(v: CInput<T>) {
    checkFence(this.#fence);
    this.#spec.write(this.#a, 0, v);
  }

  /** A short description, like Python's repr. */
  toString(): string {
    return `${this.constructor.name}('${this.#spec.code}', ${describe(this.value)})`;
  }
}

/**
 * One C-typed value in shared memory with a lock (Python's `Value`): a new `RLock` by default,
 * an existing `Lock`/`RLock`, or none with `lock: false`.
 *
 * @example
 * ```ts
 * import { Value } from "jsr:@denomp/multiprocessing";
 * const counter = new Value("i", 0);
 * {
 *   using _ = await counter.getLock().acquire();
 *   counter.value += 1; // read-modify-write: under the lock
 * }
 * console.assert(counter.value === 1);
 * ```
 */
export class Value<T extends Typecode = Typecode> extends RawValue<T> {
  #lock: Lock | RLock | null;

  /** A value of type `typecode`, initially `init` (default zero), with a lock. */
  constructor(typecode: T, init?: CInput<T>, options?: SynchronizedOptions) {
    const o = optionsOf(options, "new Value", `new Value("i", 0, { lock: false })`);
    super(typecode, init);
    this.#lock = rebuiltLock === undefined ? lockFor(o.lock) : rebuiltLock;
  }

  /** The lock that guards this value (throws `ValueError` if created with `lock: false`). */
  getLock(): Lock | RLock {
    return this.#lock ?? noLock();
  }

  static {
    valueLock = (v) => v.#lock;
  }
}

/** The lock of the handle being rebuilt (null: none), set around the constructor. */
let rebuiltLock: Lock | RLock | null | undefined;

function rebuildSynchronized<T>(lock: Lock | RLock | null, make: () => T): T {
  rebuiltLock = lock;
  try {
    return make();
  } finally {
    rebuiltLock = undefined;
  }
}

registerHandle<RawValue, [number, Typecode]>({
  name: "RawValue",
  module: import.meta.url,
  cls: RawValue,
  reduce: (v) => {
    const { off, code } = valueOf(v);
    retain(off);
    return [off, code];
  },
  rebuild: ([off, code]) => attach(off, () => new RawValue(code)),
  discard: ([off]) => dropBlock(off),
});
registerHandle<Value, [number, Typecode, Lock | RLock | null]>({
  name: "Value",
  module: import.meta.url,
  cls: Value,
  reduce: (v) => {
    const { off, code } = valueOf(v);
    retain(off);
    return [off, code, valueLock(v)];
  },
  rebuild: ([off, code, lock]) =>
    rebuildSynchronized(lock, () => attach(off, () => new Value(code))),
  discard: ([off]) => dropBlock(off),
});

// ---------------------------------------------------------------------------------------------
// Arrays

let arrayOf!: (a: RawArray) => { off: number; code: Typecode; length: number };
let arrayLock!: (a: SharedArray) => Lock | RLock | null;

function initialLength(spec: Spec, init: unknown): number {
  if (typeof init === "number") {
    if (!Number.isInteger(init) || init < 0) {
      throw new ValueError(`an array size must be an integer >= 0: current value is ${init}`);
    }
    return init;
  }
  if (typeof init === "string" && spec.code === "c") return init.length;
  if (init !== null && typeof init === "object" && Symbol.iterator in init) {
    return -1; // known once materialized
  }
  throw new TypeError(
    `an array needs a size or the initial values: current value is ${describe(init)}`,
  );
}

/**
 * A fixed-length C-typed array in shared memory, without a lock (Python's `RawArray`).
 *
 * @example
 * ```ts
 * import { RawArray } from "jsr:@denomp/multiprocessing";
 * const a = new RawArray("i", [1, 2, 3]);
 * a.set(0, 10);
 * console.assert(a.length === 3 && a.get(-1) === 3);
 * console.assert([...a].join() === "10,2,3" && a.slice(1).join() === "2,3");
 * ```
 */
export class RawArray<T extends Typecode = Typecode> {
  #off: number;
  #spec: Spec;
  #a: Typed;
  #length: number;

  /**
   * An array of `typecode`: `sizeOrValues` is a length (zero-filled) or the initial values
   * (any iterable, or a string for `c`).
   */
  constructor(
    typecode: T,
    sizeOrValues: number | Iterable<CInput<T>> | (T extends "c" ? string : never),
  ) {
    const spec = specOf(typecode);
    let n = attaching.offered ? (sizeOrValues as number) : initialLength(spec, sizeOrValues);
    let values: unknown[] | undefined;
    if (n < 0 || typeof sizeOrValues === "string") {
      values = Array.from(sizeOrValues as Iterable<unknown>);
      n = values.length;
      const p = probe(spec);
      values.forEach((v, i) => {
        try {
          spec.write(p, 0, v); // validate before allocating
        } catch (e) {
          (e as Error).message = `item ${i}: ${(e as Error).message}`;
          throw e;
        }
      });
    }
    const c = cells(this, spec, n, (a) => (this.#a = a));
    this.#off = c.off;
    this.#spec = spec;
    this.#a = c.a;
    this.#length = n;
    if (c.fresh && values) values.forEach((v, i) => spec.write(c.a, i, v));
  }

  static {
    arrayOf = (a) => ({ off: a.#off, code: a.#spec.code, length: a.#length });
  }

  /** The typecode. */
  get typecode(): T {
    return this.#spec.code as T;
  }

  /** The number of elements. */
  get length(): number {
    return this.#length;
  }

  #index(i: number): number {
    const n = this.#length;
    if (!Number.isInteger(i)) {
      throw new TypeError(`array indices must be integers: current value is ${describe(i)}`);
    }
    const j = i < 0 ? i + n : i;
    if (j < 0 || j >= n) throw new RangeError(`array index out of range: ${i} (length ${n})`);
    return j;
  }

  /** The element at `i` (negative counts from the end). */
  get(i: number): CType<T> {
    return this.#spec.read(this.#a, this.#index(i)) as CType<T>;
  }

  /** Sets the element at `i` (negative counts from the end). */
  set(i: number, v: CInput<T>): void {
    checkNotTerminated();
    this.#spec.write(this.#a, this.#index(i), v);
  }

  /** The elements from `start` to `end` (exclusive), as `Array.prototype.slice` takes them. */
  slice(start?: number, end?: number): CType<T>[] {
    const n = this.#length;
    const norm = (x: number | undefined, d: number) =>
      x === undefined ? d : x < 0 ? Math.max(0, n + x) : Math.min(n, x);
    const from = norm(start, 0), to = norm(end, n), out: CType<T>[] = [];
    for (let i = from; i < to; i++) out.push(this.#spec.read(this.#a, i) as CType<T>);
    return out;
  }

  /** Iterates over the elements. */
  *[Symbol.iterator](): Iterator<CType<T>> {
    for (let i = 0; i < this.#length; i++) yield this.#spec.read(this.#a, i) as CType<T>;
  }

  /** A short description, like Python's repr. */
  toString(): string {
    return `${this.constructor.name}('${this.#spec.code}', [${
      this.slice().map(describe).join(", ")
    }])`;
  }
}

/**
 * A fixed-length C-typed array in shared memory with a lock (Python's `Array`; exported as
 * `Array`, so import it under another name if the global `Array` is needed in the same module).
 *
 * @example
 * ```ts
 * import { Array as SharedArray } from "jsr:@denomp/multiprocessing";
 * const a = new SharedArray("d", 3);
 * {
 *   using _ = await a.getLock().acquire();
 *   for (let i = 0; i < a.length; i++) a.set(i, a.get(i) + i / 2);
 * }
 * console.assert(a.slice().join() === "0,0.5,1");
 * ```
 */
class SharedArray<T extends Typecode = Typecode> extends RawArray<T> {
  #lock: Lock | RLock | null;

  /** Like `RawArray`, with a lock (see {@link SynchronizedOptions}). */
  constructor(
    typecode: T,
    sizeOrValues: number | Iterable<CInput<T>> | (T extends "c" ? string : never),
    options?: SynchronizedOptions,
  ) {
    const o = optionsOf(options, "new Array", `new Array("i", 10, { lock: false })`);
    super(typecode, sizeOrValues);
    this.#lock = rebuiltLock === undefined ? lockFor(o.lock) : rebuiltLock;
  }

  /** The lock that guards this array (throws `ValueError` if created with `lock: false`). */
  getLock(): Lock | RLock {
    return this.#lock ?? noLock();
  }

  static {
    arrayLock = (a) => a.#lock;
  }
}

registerHandle<RawArray, [number, Typecode, number]>({
  name: "RawArray",
  module: import.meta.url,
  cls: RawArray,
  reduce: (a) => {
    const { off, code, length } = arrayOf(a);
    retain(off);
    return [off, code, length];
  },
  rebuild: ([off, code, length]) => attach(off, () => new RawArray(code, length)),
  discard: ([off]) => dropBlock(off),
});
registerHandle<SharedArray, [number, Typecode, number, Lock | RLock | null]>({
  name: "Array",
  module: import.meta.url,
  cls: SharedArray,
  reduce: (a) => {
    const { off, code, length } = arrayOf(a);
    retain(off);
    return [off, code, length, arrayLock(a)];
  },
  rebuild: ([off, code, length, lock]) =>
    rebuildSynchronized(lock, () => attach(off, () => new SharedArray(code, length))),
  discard: ([off]) => dropBlock(off),
});

/**
 * The `discard` of these kinds: the reference of a message not sent after all would keep the
 * block (a big array's: its gigabytes, in the main thread) for the rest of the run.
 */
function dropBlock(off: number): void {
  release(off, isBig(off) ? forget : undefined);
}

export { SharedArray as Array };
