/**
 * The handle codec: how values cross a worker boundary (CPython's `reduction.py`).
 *
 * One binary format carries every value denomp sends — process arguments, queue items, pipe
 * messages, pool tasks, manager calls, actor messages. It keeps structured-clone fidelity
 * (`Map`, `Set`, `Date`, `RegExp`, `BigInt`, typed arrays, `ArrayBuffer`, errors, cycles and
 * shared references) and adds **handles**: every handle class (queues, locks, connections, shared
 * memory, proxies, mailboxes) registers here once with `registerHandle`, saying how an instance
 * reduces to a small plain descriptor (numbers, strings) and how the descriptor rebuilds a live
 * object on the other side. Because handles reduce to plain data, any handle can travel inside
 * any message through any channel.
 *
 * What cannot cross throws {@link SerializationError} naming the path inside the value
 * (`args[1].callback: functions cannot be sent`): functions, symbols, `WeakMap`/`WeakSet`/
 * `WeakRef`, promises, instances of unregistered classes (which would arrive as plain objects
 * without their methods), and values nested more than 1000 objects deep. Nothing is ever
 * silently dropped, and encoding is all or nothing: the whole value is written, or nothing is.
 * That holds for an `Error`'s fields too (its own enumerable ones and `cause`), with one
 * exception: an error being *reported* (`encode(err, root, { reportError: true })`, as a pool
 * worker sends a task's throw) still arrives, without the fields that cannot be sent, and its
 * `stack` ends with a line naming them — the user's error says more than a SerializationError
 * about one of its fields would.
 *
 * Fidelity follows structuredClone: strings with lone surrogates, named properties of arrays,
 * holes, errors of any name (built as real errors: `Error.isError` holds).
 *
 * Handles whose module the receiving worker has not loaded (its code only did `import type`):
 * a message that holds handles starts with a table of their kinds and registering modules, read
 * before any handle is rebuilt. {@link loadsAsync} imports the missing modules and decodes;
 * {@link loads}, which cannot wait, throws a SerializationError naming `import type` as the
 * likely cause. The same split holds for a handle whose object needs something that only a
 * message brings (a big shared block's buffer, see _bigblock): its rebuild says so with
 * {@link pendingUntil}, `loadsAsync` waits for it, `loads` throws a SerializationError saying why.
 *
 * @module
 */

import { ERROR_CLASSES, SerializationError } from "./errors.ts";

/**
 * How one kind of handle crosses a boundary: `reduce` turns a live object into a plain descriptor
 * (made of numbers, strings, booleans, arrays and plain objects); `rebuild` makes a live object
 * from it on the other side. `reduce` is called once per send: a handle that counts references
 * should take one there, and `rebuild` adopt it.
 */
export interface HandleKind<T extends object, D> {
  /** A name unique among handle kinds, e.g. `"Lock"`. */
  readonly name: string;
  /** The class whose instances (and subclasses' instances, unless registered themselves) this covers. */
  // deno-lint-ignore no-explicit-any
  readonly cls: abstract new (...args: any[]) => T;
  /** Live object to descriptor. */
  reduce(obj: T): D;
  /** Descriptor to live object. */
  rebuild(desc: D): T;
  /**
   * The module that registers the kind (its `import.meta.url`): a worker imports it before
   * decoding a message holding such a handle. Found from the call stack when left out, which
   * costs ~0.3 ms per registration (stack traces are source-mapped): the library passes it.
   */
  readonly module?: string;
  /**
   * Undoes a `reduce` whose message is not sent after all (its encoding failed further on, or
   * the error field holding it was left out): a kind whose `reduce` takes a reference releases
   * it here. Left out, nothing is undone.
   */
  discard?(desc: D): void;
}

// deno-lint-ignore no-explicit-any
type AnyKind = HandleKind<any, any>;
const kindsByName = new Map<string, AnyKind>();
const kindsByClass = new Map<unknown, AnyKind>();
const kindList: AnyKind[] = [];

/**
 * Registers a handle kind with the codec. Call it once, at module level, next to the class.
 *
 * @example
 * ```ts
 * import { dumps, loads, registerHandle } from "jsr:@denomp/multiprocessing";
 * class Token {
 *   constructor(readonly id: number) {}
 * }
 * registerHandle({ name: "Token", cls: Token, reduce: (t) => t.id, rebuild: (id: number) => new Token(id) });
 * const back = loads<Token>(dumps(new Token(7)));
 * console.assert(back instanceof Token && back.id === 7);
 * ```
 */
export function registerHandle<T extends object, D>(kind: HandleKind<T, D>): void {
  const old = kindsByName.get(kind.name);
  if (old && old.cls !== kind.cls) {
    throw new Error(`a handle kind named '${kind.name}' is already registered`);
  }
  kindsByName.set(kind.name, kind);
  kindsByClass.set(kind.cls, kind);
  if (!old) kindList.push(kind);
  const from = kind.module ?? registrant();
  if (from) moduleOfKind.set(kind.name, from);
}

/** Where each kind was registered: a worker imports these modules before decoding its arguments. */
const moduleOfKind = new Map<string, string>();
let kindSink: Set<string> | undefined;

function registrant(): string | undefined {
  for (const line of (new Error().stack ?? "").split("\n").slice(1)) {
    const m = line.match(/((?:file|https?|jsr|npm):[^\s()]+?):\d+:\d+\)?\s*$/);
    if (m && m[1] !== import.meta.url) return m[1];
  }
  return undefined;
}

/**
 * Runs `encode` and returns, with its result, the modules that registered the handle kinds it
 * encoded. A worker imports exactly those before decoding, instead of the whole library: start-up
 * time matters (W1-spawn), and most targets carry few kinds of handle.
 */
export function withHandleModules<T>(encode: () => T): { result: T; modules: string[] } {
  const outer = kindSink;
  const sink = (kindSink = new Set());
  try {
    const result = encode();
    const modules = new Set<string>();
    for (const k of sink) {
      const m = moduleOfKind.get(k);
      if (m) modules.add(m);
    }
    return { result, modules: [...modules] };
  } finally {
    kindSink = outer;
    if (outer) { for (const k of sink) outer.add(k); }
  }
}

function kindOf(v: object): AnyKind | undefined {
  const exact = kindsByClass.get(v.constructor);
  if (exact) return exact;
  // Most specific registered superclass: the one registered last among matches is not reliable,
  // so pick the match whose prototype is nearest.
  let best: AnyKind | undefined, bestDepth = Infinity;
  for (const k of kindList) {
    if (!(v instanceof k.cls)) continue;
    let d = 0;
    for (
      let p = Object.getPrototypeOf(v);
      p && p !== k.cls.prototype;
      p = Object.getPrototypeOf(p)
    ) d++;
    if (d < bestDepth) (best = k), (bestDepth = d);
  }
  return best;
}

// Tags of the format.
const T_UNDEF = 0,
  T_NULL = 1,
  T_TRUE = 2,
  T_FALSE = 3,
  T_INT = 4,
  T_F64 = 5,
  T_STR8 = 6,
  T_STR16 = 7,
  T_UTF8 = 8,
  T_BIGINT = 9,
  T_ARRAY = 10,
  T_OBJECT = 11,
  T_MAP = 12,
  T_SET = 13,
  T_DATE = 14,
  T_REGEXP = 15,
  T_ABUF = 16,
  T_TYPED = 17,
  T_DVIEW = 18,
  T_ERROR = 19,
  T_REF = 20,
  T_HANDLE = 21,
  T_BOXED = 22,
  T_HOLE = 23,
  T_ARRAY_PROPS = 24,
  T_KINDS = 25;

const TYPED_CTORS = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
] as const;
type Typed = InstanceType<(typeof TYPED_CTORS)[number]>;
const typedIndex = new Map<unknown, number>(TYPED_CTORS.map((c, i) => [c, i]));

const ERROR_PROTOS = new Set<unknown>([
  Error.prototype,
  TypeError.prototype,
  RangeError.prototype,
  SyntaxError.prototype,
  ReferenceError.prototype,
  EvalError.prototype,
  URIError.prototype,
]);

/** Thrown inside the encoder; carries the path from the failing value up to the root. */
class PathError extends Error {
  keys: string[] = [];
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** `root` and the keys from the root down, as `item[0].cause`; the middle of a very deep one cut. */
function formatPath(root: string, keys: (string | number)[]): string {
  if (keys.length > 24) {
    const mid = `…(${keys.length - 16} more)…`;
    return root + keys.slice(0, 8).map(keyPath).join("") + mid +
      keys.slice(-8).map(keyPath).join("");
  }
  return root + keys.map(keyPath).join("");
}

function isStackOverflow(e: unknown): boolean {
  return e instanceof RangeError && e.message.includes("call stack");
}

function keyPath(key: string | number): string {
  if (typeof key === "number") return `[${key}]`;
  if (key.startsWith("<")) return key; // already formatted (Map/Set entries)
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

/**
 * Options of an {@link Encoder} or {@link Decoder}. `handles` restricts which handle kinds may
 * cross: a channel to another program (a manager's TCP connection) allows only the kinds that
 * mean something there, since every other handle is an offset into this program's shared heap.
 */
export interface CodecOptions {
  /**
   * Called with a handle kind's name; false makes that handle a `SerializationError`, and a
   * string does too, with that string as the reason (say why the channel refuses it).
   */
  handles?: (kind: string) => boolean | string;
}

/**
 * Options of one {@link Encoder.encode} call.
 *
 * @example
 * ```ts
 * import { Encoder, loads } from "jsr:@denomp/multiprocessing";
 * const err = Object.assign(new RangeError("boom"), { retry: () => {}, orderId: 42 });
 * const back = loads<RangeError & { orderId: number }>(
 *   new Encoder().encode(err, "error", { reportError: true }),
 * );
 * console.assert(back instanceof RangeError && back.orderId === 42 && !("retry" in back));
 * console.assert(back.stack!.includes("retry (functions cannot be sent)"));
 * ```
 */
export interface EncodeOptions {
  /**
   * The value is an error being reported (a pool task's throw): fields of an `Error` (anywhere
   * in it) that cannot be sent are left out, and named at the end of its `stack`, so the error
   * still arrives. Without it (the default) they are refused, as any value is.
   */
  reportError?: boolean;
}

/**
 * Encodes values into the binary format. One encoder reuses its buffer: the bytes returned by
 * `encode` are valid until its next call (copy them, or write them somewhere, before that).
 *
 * @example
 * ```ts
 * import { Decoder, Encoder } from "jsr:@denomp/multiprocessing";
 * const bytes = new Encoder().encode({ when: new Date(0), tags: new Set(["a"]) });
 * const back = new Decoder().decode(bytes) as { when: Date; tags: Set<string> };
 * console.assert(back.tags.has("a") && back.when.getTime() === 0);
 * ```
 */
export class Encoder {
  #allow: ((kind: string) => boolean | string) | undefined;
  #buf = new Uint8Array(256);
  #dv = new DataView(this.#buf.buffer);
  #pos = 0;
  // Objects already written (for cycles and shared references), by reference number: the first
  // few in a small array searched linearly, the rest in a Map. Most values hold a handful of
  // objects, and a Map get+set+clear per message costs more than encoding a small item.
  #few: object[] = [];
  #seen = new Map<object, number>();
  #nextRef = 0;
  /** How many objects deep the encoder is (see MAX_DEPTH). */
  #depth = 0;
  /** The current call's `reportError` option. */
  #report = false;
  /** The handle kinds written by the current call, in first-use order. */
  #kinds: AnyKind[] = [];
  /** Kind, descriptor, kind, ... of the handles reduced by the current call that can be undone. */
  #reduced: unknown[] = [];

  /** Creates an encoder; `options.handles` restricts the handle kinds it accepts. */
  constructor(options?: CodecOptions) {
    this.#allow = options?.handles;
  }

  /**
   * Encodes `value`; `root` names it in error paths (`args`, `item`, ...). All or nothing: it
   * returns the whole value's bytes, or throws {@link SerializationError} naming the path of the
   * first part that cannot be sent (and the bytes of a failed call are never returned).
   */
  encode(value: unknown, root = "value", options?: EncodeOptions): Uint8Array {
    this.#pos = 0;
    this.#nextRef = 0;
    this.#depth = 0;
    this.#report = options?.reportError === true;
    if (this.#kinds.length) this.#kinds.length = 0;
    try {
      this.#value(value);
    } catch (e) {
      this.#discard(0);
      if (e instanceof PathError) {
        throw new SerializationError(formatPath(root, e.keys.reverse()), e.reason);
      }
      if (isStackOverflow(e)) {
        // The depth limit keeps values the decoder can rebuild; this is the caller's own stack
        // running out first (encode called from deep recursion).
        throw new SerializationError(root, "the value is nested too deeply to encode here", {
          cause: e,
        });
      }
      throw e;
    } finally {
      const few = this.#few, n = Math.min(this.#nextRef, FEW);
      for (let i = 0; i < n; i++) few[i] = EMPTY; // do not keep the caller's objects alive
      if (this.#seen.size) this.#seen.clear();
      if (this.#reduced.length) this.#reduced.length = 0;
    }
    if (this.#kinds.length) return this.#withKinds();
    return this.#buf.subarray(0, this.#pos);
  }

  /**
   * Puts the table of the handle kinds this message holds (name and registering module) in front
   * of it, so a receiver can load the modules it lacks before rebuilding any handle (see
   * {@link loadsAsync}). Only messages that hold handles pay for it (a copy of their bytes).
   */
  #withKinds(): Uint8Array {
    const end = this.#pos, kinds = this.#kinds;
    this.#u8(T_KINDS);
    this.#u32(kinds.length);
    for (const k of kinds) {
      this.#str(k.name);
      this.#str(moduleOfKind.get(k.name) ?? "");
    }
    const head = this.#pos - end;
    this.#room(end);
    // [value][table] -> [value][table][value]: the message is the last two parts.
    this.#buf.copyWithin(this.#pos, 0, end);
    return this.#buf.subarray(end, end + head + end);
  }

  /** Undoes the reductions of handles from the `from`th on (a message that is not sent). */
  #discard(from: number): void {
    const r = this.#reduced;
    for (let i = r.length - 2; i >= from; i -= 2) {
      try {
        (r[i] as AnyKind).discard!(r[i + 1]);
      } catch {
        // Undoing is best effort: the failure being reported matters more.
      }
    }
    r.length = from;
  }

  /** Back to where the encoder was: a field that cannot be sent (`reportError` mode) is dropped. */
  #rollback(pos: number, ref: number, depth: number, reduced: number): void {
    this.#discard(reduced);
    this.#pos = pos;
    const few = this.#few;
    for (let i = ref, n = Math.min(this.#nextRef, FEW); i < n; i++) few[i] = EMPTY;
    if (this.#nextRef > FEW) {
      for (const [o, id] of this.#seen) if (id >= ref) this.#seen.delete(o);
    }
    this.#nextRef = ref;
    this.#depth = depth;
  }

  #room(n: number): void {
    const need = this.#pos + n;
    if (need <= this.#buf.length) return;
    let cap = this.#buf.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.#buf.subarray(0, this.#pos));
    this.#buf = next;
    this.#dv = new DataView(next.buffer);
  }

  #u8(b: number): void {
    this.#room(1);
    this.#buf[this.#pos++] = b;
  }

  #u32(n: number): void {
    this.#room(4);
    this.#dv.setUint32(this.#pos, n, true);
    this.#pos += 4;
  }

  #str(s: string): void {
    const n = s.length;
    if (n > 64) {
      // Long strings: UTF-8 through the native encoder (at most 3 bytes per UTF-16 unit), unless
      // they hold a lone surrogate, which UTF-8 cannot carry (it would arrive as U+FFFD). Only a
      // string with non-ASCII text can hold one: an all-ASCII one is one byte per unit.
      this.#room(5 + n * 3);
      const r = utf8.encodeInto(s, this.#buf.subarray(this.#pos + 5));
      if (r.written === n || s.isWellFormed()) {
        this.#buf[this.#pos] = T_UTF8;
        this.#dv.setUint32(this.#pos + 1, r.written, true);
        this.#pos += 5 + r.written;
        return;
      }
      return this.#str16(s, this.#pos);
    }
    this.#room(5 + n * 2);
    const buf = this.#buf, start = this.#pos;
    let p = start + 5;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0xff) return this.#str16(s, start);
      buf[p++] = c;
    }
    buf[start] = T_STR8;
    this.#dv.setUint32(start + 1, n, true);
    this.#pos = p;
  }

  #str16(s: string, start: number): void {
    const n = s.length, dv = this.#dv;
    this.#buf[start] = T_STR16;
    dv.setUint32(start + 1, n, true);
    let p = start + 5;
    for (let i = 0; i < n; i++, p += 2) dv.setUint16(p, s.charCodeAt(i), true);
    this.#pos = p;
  }

  #value(v: unknown): void {
    switch (typeof v) {
      case "number":
        if ((v | 0) === v && !Object.is(v, -0)) {
          this.#room(5);
          this.#buf[this.#pos] = T_INT;
          this.#dv.setInt32(this.#pos + 1, v, true);
          this.#pos += 5;
        } else {
          this.#room(9);
          this.#buf[this.#pos] = T_F64;
          this.#dv.setFloat64(this.#pos + 1, v, true);
          this.#pos += 9;
        }
        return;
      case "string":
        return this.#str(v);
      case "boolean":
        return this.#u8(v ? T_TRUE : T_FALSE);
      case "undefined":
        return this.#u8(T_UNDEF);
      case "bigint":
        this.#u8(T_BIGINT);
        return this.#str(v.toString(16));
      case "object":
        if (v === null) return this.#u8(T_NULL);
        // Left unbalanced when a throw unwinds: encode() and #rollback() reset it.
        if (++this.#depth > MAX_DEPTH) {
          throw new PathError(
            `nested more than ${MAX_DEPTH} objects deep (the codec, like structuredClone, recurses)`,
          );
        }
        this.#object(v);
        this.#depth--;
        return;
      case "function":
        throw new PathError("functions cannot be sent");
      case "symbol":
        throw new PathError("symbols cannot be sent");
    }
  }

  #remember(v: object): void {
    const id = this.#nextRef++;
    if (id < FEW) this.#few[id] = v;
    else this.#seen.set(v, id);
  }

  #object(v: object): void {
    const few = this.#few, n = Math.min(this.#nextRef, FEW);
    let ref: number | undefined;
    for (let i = 0; i < n; i++) {
      if (few[i] === v) {
        ref = i;
        break;
      }
    }
    if (ref === undefined && this.#nextRef > FEW) ref = this.#seen.get(v);
    if (ref !== undefined) {
      this.#u8(T_REF);
      return this.#u32(ref);
    }
    const proto = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null) {
      this.#remember(v);
      this.#u8(T_OBJECT);
      return this.#props(v as Record<string, unknown>, Object.keys(v), 0);
    }
    if (Array.isArray(v)) {
      this.#remember(v);
      const n = v.length, at = this.#pos;
      this.#u8(T_ARRAY);
      this.#u32(n);
      let i = 0, holes = 0;
      try {
        for (; i < n; i++) {
          if (!(i in v)) this.#u8(T_HOLE), holes++;
          else this.#value(v[i]);
        }
      } catch (e) {
        if (e instanceof PathError) e.keys.push(i as unknown as string);
        throw e;
      }
      // Named properties (`arr.total = 3`) follow the indices in Object.keys: structuredClone
      // keeps them, so they go as a T_ARRAY_PROPS tail.
      const keys = Object.keys(v);
      if (keys.length > n - holes) {
        this.#buf[at] = T_ARRAY_PROPS;
        this.#props(v as unknown as Record<string, unknown>, keys, n - holes);
      }
      return;
    }
    const kind = kindOf(v);
    if (kind) {
      // Checked before reduce(), which may take a reference for the message in flight.
      const allowed = this.#allow?.(kind.name) ?? true;
      if (allowed !== true) {
        throw new PathError(allowed || `a ${kind.name} cannot be sent over this channel`);
      }
      this.#remember(v);
      kindSink?.add(kind.name);
      if (!this.#kinds.includes(kind)) this.#kinds.push(kind);
      this.#u8(T_HANDLE);
      this.#str(kind.name);
      const desc = kind.reduce(v);
      if (kind.discard) this.#reduced.push(kind, desc);
      return this.#value(desc);
    }
    if (v instanceof Map) {
      this.#remember(v);
      this.#u8(T_MAP);
      this.#u32(v.size);
      let key: unknown;
      try {
        for (const [k, val] of v) {
          key = k;
          this.#value(k);
          this.#value(val);
        }
      } catch (e) {
        if (e instanceof PathError) e.keys.push(`<Map entry ${describeKey(key)}>`);
        throw e;
      }
      return;
    }
    if (v instanceof Set) {
      this.#remember(v);
      this.#u8(T_SET);
      this.#u32(v.size);
      let i = 0;
      try {
        for (const x of v) {
          this.#value(x);
          i++;
        }
      } catch (e) {
        if (e instanceof PathError) e.keys.push(`<Set item ${i}>`);
        throw e;
      }
      return;
    }
    if (v instanceof Date) {
      this.#remember(v);
      this.#room(9);
      this.#buf[this.#pos] = T_DATE;
      this.#dv.setFloat64(this.#pos + 1, v.getTime(), true);
      this.#pos += 9;
      return;
    }
    if (v instanceof RegExp) {
      this.#remember(v);
      this.#u8(T_REGEXP);
      this.#str(v.source);
      return this.#str(v.flags);
    }
    if (ArrayBuffer.isView(v)) {
      this.#remember(v);
      const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      if (v instanceof DataView) {
        this.#u8(T_DVIEW);
      } else {
        const t = typedIndex.get(v.constructor);
        if (t === undefined) throw new PathError(`${v.constructor.name} cannot be sent`);
        this.#u8(T_TYPED);
        this.#u8(t);
      }
      return this.#bytes(bytes);
    }
    if (v instanceof ArrayBuffer) {
      this.#remember(v);
      if (v.detached) throw new PathError("a detached ArrayBuffer cannot be sent");
      this.#u8(T_ABUF);
      return this.#bytes(new Uint8Array(v));
    }
    if (v instanceof Error) {
      this.#remember(v);
      return this.#error(v);
    }
    if (v instanceof Number || v instanceof String || v instanceof Boolean || v instanceof BigInt) {
      this.#remember(v);
      this.#u8(T_BOXED);
      return this.#value(v.valueOf());
    }
    throw new PathError(unsendable(v));
  }

  /** Count, then key/value pairs of `keys` from index `from` on. */
  #props(v: Record<string, unknown>, keys: string[], from: number): void {
    this.#u32(keys.length - from);
    let k = "";
    try {
      for (let i = from; i < keys.length; i++) {
        k = keys[i];
        this.#str(k);
        this.#value(v[k]);
      }
    } catch (e) {
      if (e instanceof PathError) e.keys.push(k);
      throw e;
    }
  }

  #bytes(b: Uint8Array): void {
    this.#u32(b.length);
    this.#room(b.length);
    this.#buf.set(b, this.#pos);
    this.#pos += b.length;
  }

  #error(e: Error): void {
    this.#u8(T_ERROR);
    this.#str(String(e.name ?? "Error"));
    this.#str(String(e.message ?? ""));
    this.#str(String(e.stack ?? ""));
    // Its own enumerable fields, then `cause` (structuredClone's one non-enumerable extra).
    const keys = Object.keys(e).filter((k) => k !== "name" && k !== "message" && k !== "stack");
    if ("cause" in e && !keys.includes("cause")) keys.push("cause");
    const countAt = this.#pos;
    this.#u32(keys.length);
    let written = 0, left: string[] | undefined;
    for (const k of keys) {
      const pos = this.#pos, ref = this.#nextRef, depth = this.#depth, red = this.#reduced.length;
      try {
        this.#str(k);
        this.#value((e as unknown as Record<string, unknown>)[k]);
        written++;
      } catch (err) {
        if (!(err instanceof PathError)) throw err;
        err.keys.push(k);
        if (!this.#report) throw err;
        // An error being reported still arrives: the field is left out, and said so in its stack.
        this.#rollback(pos, ref, depth, red);
        const path = formatPath("", err.keys.reverse());
        (left ??= []).push(`${path.startsWith(".") ? path.slice(1) : path} (${err.reason})`);
      }
    }
    if (written !== keys.length) this.#dv.setUint32(countAt, written, true);
    if (left) this.#str(`[denomp] fields left out when sending this error: ${left.join(", ")}`);
    else this.#u8(T_UNDEF);
  }
}

function describeKey(k: unknown): string {
  return typeof k === "string"
    ? JSON.stringify(k)
    : typeof k === "object"
    ? "(object key)"
    : String(k);
}

function unsendable(v: object): string {
  if (v instanceof WeakMap) return "a WeakMap cannot be sent";
  if (v instanceof WeakSet) return "a WeakSet cannot be sent";
  if (v instanceof WeakRef) return "a WeakRef cannot be sent";
  if (v instanceof Promise) return "a Promise cannot be sent (await it first)";
  if (v instanceof SharedArrayBuffer) {
    return "a SharedArrayBuffer cannot be sent through denomp channels (use SharedMemory, RawArray or Value)";
  }
  if (typeof MessagePort !== "undefined" && v instanceof MessagePort) {
    return "a MessagePort cannot be sent (use Pipe)";
  }
  const name = (v.constructor as { name?: string } | undefined)?.name || "an anonymous class";
  return `an instance of ${name} cannot be sent: it would arrive as a plain object without its class (send plain data, or a denomp handle)`;
}

/**
 * Decodes the binary format written by {@link Encoder}. Reading copies everything out of the
 * input, so the input may be shared memory that is reused right after.
 *
 * @example
 * ```ts
 * import { Decoder, Encoder } from "jsr:@denomp/multiprocessing";
 * const m = new Decoder().decode(new Encoder().encode(new Map([[1, 2n]]))) as Map<number, bigint>;
 * console.assert(m.get(1) === 2n);
 * ```
 */
export class Decoder {
  #allow: ((kind: string) => boolean | string) | undefined;
  // Numbers are read from the bytes directly rather than through a DataView: making a DataView
  // per message costs more than decoding a small item, above all over shared memory.
  #b: Uint8Array = new Uint8Array(0);
  #p = 0;
  #refs: unknown[] = [];

  /** Creates a decoder; `options.handles` restricts the handle kinds it rebuilds. */
  constructor(options?: CodecOptions) {
    this.#allow = options?.handles;
  }

  /** Decodes one value from `bytes` (which must hold exactly what one `encode` wrote). */
  decode(bytes: Uint8Array): unknown {
    this.#b = bytes;
    this.#p = 0;
    // No allocation here for `pendingUntil`: a mark into one shared list (this is the hot path).
    const mark = pendingReady.length;
    decodeDepth++;
    try {
      if (bytes[0] === T_KINDS) this.#kinds();
      const v = this.#value();
      if (pendingReady.length > mark && waitingDepth === 0) {
        throw new SerializationError("value", pendingWhy);
      }
      return v;
    } catch (e) {
      if (pendingReady.length > mark) pendingReady.length = mark;
      throw e;
    } finally {
      decodeDepth--;
      this.#refs.length = 0;
      this.#b = EMPTY;
    }
  }

  #u32(): number {
    return this.#i32() >>> 0;
  }

  /**
   * The message's table of handle kinds: every kind must be registered here before any handle
   * is rebuilt (a rebuild adopts the reference its message carried, so a decode must not stop
   * half-way through its handles and be tried again).
   */
  #kinds(): void {
    this.#p++;
    let missing: string[] | undefined, names: string[] | undefined;
    for (let n = this.#count(2); n > 0; n--) {
      const name = this.#str(), module = this.#str();
      if (kindsByName.has(name) || (this.#allow && this.#allow(name) !== true)) continue;
      (names ??= []).push(name);
      if (module) (missing ??= []).push(module);
    }
    if (names) throw new MissingHandleModule(names, missing ?? []);
  }

  /**
   * A length or count read from the input, checked against the bytes left (each element takes
   * at least `unit` bytes): corrupt or hostile input must fail fast, not loop or allocate for
   * billions of elements it does not contain.
   */
  #count(unit: number): number {
    const n = this.#u32();
    if (n * unit > this.#b.length - this.#p) {
      throw new SerializationError(
        "value",
        `corrupt message: a length of ${n} at byte ${this.#p - 4} runs past its end`,
      );
    }
    return n;
  }

  #i32(): number {
    const b = this.#b, p = this.#p;
    this.#p = p + 4;
    return b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24);
  }

  #f64(): number {
    const b = this.#b, p = this.#p;
    for (let i = 0; i < 8; i++) F64_BYTES[i] = b[p + i]; // little-endian, as written
    this.#p = p + 8;
    return F64[0];
  }

  #strBody(tag: number): string {
    const n = this.#count(tag === T_STR16 ? 2 : 1), b = this.#b;
    let p = this.#p;
    if (tag === T_STR8) {
      this.#p = p + n;
      if (n < 32) {
        let s = "";
        for (let i = 0; i < n; i++) s += String.fromCharCode(b[p++]);
        return s;
      }
      let s = "";
      for (let i = 0; i < n; i += 8192) {
        s += String.fromCharCode.apply(
          null,
          b.slice(p + i, p + Math.min(n, i + 8192)) as unknown as number[],
        );
      }
      return s;
    }
    if (tag === T_STR16) {
      let s = "";
      for (let i = 0; i < n; i++, p += 2) s += String.fromCharCode(b[p] | (b[p + 1] << 8));
      this.#p = p;
      return s;
    }
    // UTF-8: copy out first (TextDecoder refuses views of shared memory).
    this.#p = p + n;
    return utf8d.decode(b.slice(p, p + n));
  }

  #str(): string {
    return this.#strBody(this.#b[this.#p++]);
  }

  #value(): unknown {
    const tag = this.#b[this.#p++];
    switch (tag) {
      case T_INT:
        return this.#i32();
      case T_STR8:
      case T_STR16:
      case T_UTF8:
        return this.#strBody(tag);
      case T_OBJECT: {
        const o: Record<string, unknown> = {};
        this.#refs.push(o);
        return this.#props(o);
      }
      case T_UNDEF:
      case T_HOLE:
        return undefined;
      case T_NULL:
        return null;
      case T_TRUE:
        return true;
      case T_FALSE:
        return false;
      case T_F64:
        return this.#f64();
      case T_BIGINT: {
        const s = this.#str();
        return s.startsWith("-") ? -BigInt("0x" + s.slice(1)) : BigInt("0x" + s);
      }
      case T_ARRAY:
      case T_ARRAY_PROPS: {
        const n = this.#count(1), a = new Array(n);
        this.#refs.push(a);
        for (let i = 0; i < n; i++) {
          if (this.#b[this.#p] === T_HOLE) this.#p++;
          else a[i] = this.#value();
        }
        return tag === T_ARRAY ? a : this.#props(a as unknown as Record<string, unknown>);
      }
      case T_MAP: {
        const m = new Map();
        this.#refs.push(m);
        for (let n = this.#count(2); n > 0; n--) {
          const k = this.#value();
          m.set(k, this.#value());
        }
        return m;
      }
      case T_SET: {
        const s = new Set();
        this.#refs.push(s);
        for (let n = this.#count(1); n > 0; n--) s.add(this.#value());
        return s;
      }
      case T_DATE: {
        const d = new Date(this.#f64());
        this.#refs.push(d);
        return d;
      }
      case T_REGEXP: {
        const i = this.#refs.push(null) - 1;
        const src = this.#str();
        return (this.#refs[i] = new RegExp(src, this.#str()));
      }
      case T_ABUF: {
        const ab = this.#bytesOut().buffer;
        this.#refs.push(ab);
        return ab;
      }
      case T_TYPED: {
        const Ctor = TYPED_CTORS[this.#b[this.#p++]];
        const ab = this.#bytesOut().buffer as ArrayBuffer;
        const t: Typed = new (Ctor as new (b: ArrayBuffer) => Typed)(ab);
        this.#refs.push(t);
        return t;
      }
      case T_DVIEW: {
        const d = new DataView(this.#bytesOut().buffer);
        this.#refs.push(d);
        return d;
      }
      case T_ERROR:
        return this.#error();
      case T_REF:
        return this.#refs[this.#u32()];
      case T_HANDLE: {
        const i = this.#refs.push(null) - 1;
        const name = this.#str();
        const kind = kindsByName.get(name);
        const desc = this.#value();
        if (this.#allow && this.#allow(name) !== true) {
          throw new SerializationError("value", `a '${name}' handle cannot be received here`);
        }
        if (!kind) throw new MissingHandleModule([name], []);
        return (this.#refs[i] = kind.rebuild(desc));
      }
      case T_BOXED: {
        const i = this.#refs.push(null) - 1;
        return (this.#refs[i] = Object(this.#value()));
      }
    }
    throw new SerializationError(
      "value",
      `corrupt message: unknown tag ${tag} at byte ${this.#p - 1}`,
    );
  }

  /** Reads a count, then that many key/value pairs into `o`. */
  #props<O extends Record<string, unknown>>(o: O): O {
    for (let n = this.#count(2); n > 0; n--) {
      const k = this.#str();
      // An own "__proto__" key is data: assigning it would set the object's prototype.
      if (k === "__proto__") {
        Object.defineProperty(o, k, {
          value: this.#value(),
          writable: true,
          enumerable: true,
          configurable: true,
        });
      } else (o as Record<string, unknown>)[k] = this.#value();
    }
    return o;
  }

  #bytesOut(): Uint8Array {
    const n = this.#count(1);
    const out = this.#b.slice(this.#p, this.#p + n);
    this.#p += n;
    return out;
  }

  #error(): Error {
    const i = this.#refs.push(null) - 1;
    const name = this.#str(), message = this.#str(), stack = this.#str();
    // Own properties only: an error named `toString` or `constructor` is no class of ours.
    const Known = Object.hasOwn(ERROR_CLASSES, name)
      ? ERROR_CLASSES[name]
      : Object.hasOwn(globalThis, name) &&
          ERROR_PROTOS.has(
            (globalThis as unknown as Record<string, { prototype?: unknown } | undefined>)[name]
              ?.prototype,
          )
      ? (globalThis as unknown as Record<string, new (m: string) => Error>)[name]
      : Error;
    // A real error object (`Error.isError` holds, as after structuredClone) of the right class,
    // made without running that class's constructor (which may want other arguments).
    const e: Error = Reflect.construct(Error, [message], Known);
    Object.defineProperty(e, "name", { value: name, writable: true, configurable: true });
    Object.defineProperty(e, "stack", { value: stack, writable: true, configurable: true });
    this.#refs[i] = e;
    for (let n = this.#count(2); n > 0; n--) {
      const k = this.#str();
      Object.defineProperty(e, k, {
        value: this.#value(),
        writable: true,
        configurable: true,
        enumerable: k !== "cause",
      });
    }
    const left = this.#value();
    if (typeof left === "string") e.stack = `${stack}\n${left}`;
    return e;
  }
}

/**
 * A message holds handles of kinds not registered in this worker. `modules` are the modules that
 * registered them where the message was sent: {@link loadsAsync} imports them and decodes again.
 */
class MissingHandleModule extends SerializationError {
  constructor(readonly kinds: string[], readonly modules: string[]) {
    const which = (kinds.length > 1 ? "handles of kinds " : "a handle of kind ") +
      kinds.map((k) => `'${k}'`).join(", ");
    const from = modules.length ? ` (registered by ${modules.join(", ")})` : "";
    super(
      "value",
      `${which} arrived but its module was not loaded in this worker${from}. ` +
        "The usual cause is a module that only does `import type { ... }` (erased at run time): " +
        `import the class for real (\`import { ${
          kinds[0]
        } } from "jsr:@denomp/multiprocessing"\`, ` +
        "or from its module), " +
        "or receive with the async API (`await q.get()`), which loads the module itself",
    );
  }
}

const EMPTY = new Uint8Array(0);
/**
 * How many objects deep a value may be. The encoder and decoder recurse (as structuredClone
 * does, which fails at a few thousand): past this a value is refused with its path, well before
 * any worker's stack runs out, instead of a bare `RangeError`.
 */
const MAX_DEPTH = 1000;
/** How many objects per message an Encoder tracks in its small array before using a Map. */
const FEW = 8;
const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("denomp: the codec assumes a little-endian platform");
}
const sharedEncoder = new Encoder();
const sharedDecoder = new Decoder();
// A handle's reduce/rebuild may itself encode or decode: nested calls get their own instance.
let encoding = 0, decoding = 0;

/**
 * Whether encoded `bytes` hold handles (a message with handles starts with the table of their
 * kinds): a relay that forwards messages to another program checks this without decoding.
 *
 * @example
 * ```ts
 * import { dumps, holdsHandles } from "./reduction.ts";
 * console.assert(!holdsHandles(dumps({ n: 1 })));
 * ```
 */
export function holdsHandles(bytes: Uint8Array): boolean {
  return bytes[0] === T_KINDS;
}

/**
 * Encodes `value` into a new `Uint8Array` (Python's `pickle.dumps`); `root` names the value in
 * error paths.
 *
 * @example
 * ```ts
 * import { dumps, loads } from "jsr:@denomp/multiprocessing";
 * console.assert(loads<number[]>(dumps([1, 2]))[1] === 2);
 * ```
 */
export function dumps(value: unknown, root = "value"): Uint8Array {
  const e = encoding++ ? new Encoder() : sharedEncoder;
  try {
    return e.encode(value, root).slice();
  } finally {
    encoding--;
  }
}

/**
 * Decodes bytes written by {@link dumps} or an {@link Encoder} (Python's `pickle.loads`).
 *
 * @example
 * ```ts
 * import { dumps, loads } from "jsr:@denomp/multiprocessing";
 * console.assert(loads<{ a: number }>(dumps({ a: 1 })).a === 1);
 * ```
 */
export function loads<T = unknown>(bytes: Uint8Array): T {
  const d = decoding++ ? new Decoder() : sharedDecoder;
  try {
    return d.decode(bytes) as T;
  } finally {
    decoding--;
  }
}

/**
 * {@link loads} for receivers that can wait: a message holding a handle whose module is not
 * loaded in this worker (its target only did `import type`) gets that module imported, then
 * decoded. Returns the value itself when nothing is missing (the hot path makes no promise); else
 * a promise, having copied `bytes` first, so the caller may reuse them as soon as this returns.
 * It imports only modules named by the message's sender, so use it on the library's in-program
 * channels, never on bytes from another program.
 *
 * @example
 * ```ts
 * import { dumps, loadsAsync } from "jsr:@denomp/multiprocessing";
 * const v = await loadsAsync<number[]>(dumps([1, 2]));
 * console.assert(v[1] === 2);
 * ```
 */
export function loadsAsync<T = unknown>(bytes: Uint8Array): T | Promise<T> {
  try {
    return loadsWaiting<T>(bytes);
  } catch (e) {
    if (!(e instanceof MissingHandleModule) || !e.modules.length) throw e;
    return importThenLoad<T>(bytes.slice(), e);
  }
}

/**
 * The promises of {@link pendingUntil} of the decodes under way (each owns the part after its
 * mark), the reason of the last, and how deep in decodes and in {@link loadsAsync} this is.
 */
const pendingReady: Promise<unknown>[] = [];
let pendingWhy = "", decodeDepth = 0, waitingDepth = 0;

/**
 * For a handle kind's `rebuild` whose object becomes usable only once `ready` settles (a big
 * shared block, whose `SharedArrayBuffer` is still on its way from another worker):
 * {@link loadsAsync} waits for it before returning the value; {@link loads}, which cannot wait,
 * throws a SerializationError saying `whyNotSync`. Outside a decode it does nothing.
 *
 * @example
 * ```ts
 * import { dumps, loads, loadsAsync, pendingUntil, registerHandle } from "./reduction.ts";
 * class Later {
 *   ready = false;
 * }
 * registerHandle<Later, number>({
 *   name: "Later",
 *   module: import.meta.url,
 *   cls: Later,
 *   reduce: () => 0,
 *   rebuild: () => {
 *     const l = new Later();
 *     pendingUntil(Promise.resolve().then(() => (l.ready = true)), "Later needs await");
 *     return l;
 *   },
 * });
 * console.assert((await loadsAsync<Later>(dumps(new Later()))).ready);
 * try {
 *   loads(dumps(new Later()));
 * } catch (e) {
 *   console.assert((e as Error).message.includes("Later needs await"));
 * }
 * ```
 */
export function pendingUntil(ready: Promise<unknown>, whyNotSync: string): void {
  if (decodeDepth === 0) return;
  // A decode that fails (or cannot wait) drops the promise: its failure must not be unhandled.
  ready.catch(() => {});
  pendingReady.push(ready);
  pendingWhy = whyNotSync;
}

/** {@link loads}, then (when rebuilds made promises) a promise of the value once they settle. */
function loadsWaiting<T>(bytes: Uint8Array): T | Promise<T> {
  const mark = pendingReady.length;
  waitingDepth++;
  try {
    const v = loads<T>(bytes);
    if (pendingReady.length === mark) return v;
    return Promise.all(pendingReady.splice(mark)).then(() => v);
  } finally {
    waitingDepth--;
  }
}

async function importThenLoad<T>(bytes: Uint8Array, missing: MissingHandleModule): Promise<T> {
  const seen = new Set<string>();
  for (let e = missing;;) {
    const fresh = e.modules.filter((m) => !seen.has(m));
    // Each module imported at most once per message: one that registers nothing (or another
    // kind) ends the loop with the decoder's error rather than looping.
    if (!fresh.length) throw e;
    for (const m of fresh) seen.add(m);
    await Promise.all(fresh.map((m) => import(m)));
    try {
      return await loadsWaiting<T>(bytes);
    } catch (err) {
      if (!(err instanceof MissingHandleModule)) throw err;
      e = err;
    }
  }
}
