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
 * `WeakRef`, promises, and instances of unregistered classes (which would arrive as plain objects
 * without their methods). Nothing is ever silently dropped.
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
 * import { dumps, loads, registerHandle } from "./reduction.ts";
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
  T_HOLE = 23;

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
  /** Called with a handle kind's name; false makes that handle a `SerializationError`. */
  handles?: (kind: string) => boolean;
}

/**
 * Encodes values into the binary format. One encoder reuses its buffer: the bytes returned by
 * `encode` are valid until its next call (copy them, or write them somewhere, before that).
 *
 * @example
 * ```ts
 * import { Decoder, Encoder } from "./reduction.ts";
 * const bytes = new Encoder().encode({ when: new Date(0), tags: new Set(["a"]) });
 * const back = new Decoder().decode(bytes) as { when: Date; tags: Set<string> };
 * console.assert(back.tags.has("a") && back.when.getTime() === 0);
 * ```
 */
export class Encoder {
  #allow: ((kind: string) => boolean) | undefined;
  #buf = new Uint8Array(256);
  #dv = new DataView(this.#buf.buffer);
  #pos = 0;
  // Objects already written (for cycles and shared references), by reference number: the first
  // few in a small array searched linearly, the rest in a Map. Most values hold a handful of
  // objects, and a Map get+set+clear per message costs more than encoding a small item.
  #few: object[] = [];
  #seen = new Map<object, number>();
  #nextRef = 0;

  /** Creates an encoder; `options.handles` restricts the handle kinds it accepts. */
  constructor(options?: CodecOptions) {
    this.#allow = options?.handles;
  }

  /** Encodes `value`; `root` names it in error paths (`args`, `item`, ...). */
  encode(value: unknown, root = "value"): Uint8Array {
    this.#pos = 0;
    this.#nextRef = 0;
    try {
      this.#value(value);
    } catch (e) {
      if (e instanceof PathError) {
        throw new SerializationError(root + e.keys.reverse().map(keyPath).join(""), e.reason);
      }
      throw e;
    } finally {
      const few = this.#few, n = Math.min(this.#nextRef, FEW);
      for (let i = 0; i < n; i++) few[i] = EMPTY; // do not keep the caller's objects alive
      if (this.#seen.size) this.#seen.clear();
    }
    return this.#buf.subarray(0, this.#pos);
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
      // Long strings: UTF-8 through the native encoder (at most 3 bytes per UTF-16 unit).
      this.#room(5 + n * 3);
      this.#buf[this.#pos] = T_UTF8;
      const r = utf8.encodeInto(s, this.#buf.subarray(this.#pos + 5));
      this.#dv.setUint32(this.#pos + 1, r.written, true);
      this.#pos += 5 + r.written;
      return;
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
        return this.#object(v);
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
      const keys = Object.keys(v);
      this.#u8(T_OBJECT);
      this.#u32(keys.length);
      let k = "";
      try {
        for (k of keys) {
          this.#str(k);
          this.#value((v as Record<string, unknown>)[k]);
        }
      } catch (e) {
        if (e instanceof PathError) e.keys.push(k);
        throw e;
      }
      return;
    }
    if (Array.isArray(v)) {
      this.#remember(v);
      const n = v.length;
      this.#u8(T_ARRAY);
      this.#u32(n);
      let i = 0;
      try {
        for (; i < n; i++) {
          if (!(i in v)) this.#u8(T_HOLE);
          else this.#value(v[i]);
        }
      } catch (e) {
        if (e instanceof PathError) e.keys.push(i as unknown as string);
        throw e;
      }
      return;
    }
    const kind = kindOf(v);
    if (kind) {
      // Checked before reduce(), which may take a reference for the message in flight.
      if (this.#allow && !this.#allow(kind.name)) {
        throw new PathError(`a ${kind.name} cannot be sent over this channel`);
      }
      this.#remember(v);
      kindSink?.add(kind.name);
      this.#u8(T_HANDLE);
      this.#str(kind.name);
      return this.#value(kind.reduce(v));
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
    const extra: Record<string, unknown> = {};
    for (const k of Object.keys(e)) {
      if (k !== "name" && k !== "message" && k !== "stack") extra[k] = (e as never)[k];
    }
    if ("cause" in e) extra.cause = e.cause;
    try {
      this.#value(extra);
    } catch (err) {
      // An error's extra fields are best effort: an unsendable cause must not hide the error.
      if (!(err instanceof PathError)) throw err;
      this.#u8(T_UNDEF);
    }
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
 * import { Decoder, Encoder } from "./reduction.ts";
 * const m = new Decoder().decode(new Encoder().encode(new Map([[1, 2n]]))) as Map<number, bigint>;
 * console.assert(m.get(1) === 2n);
 * ```
 */
export class Decoder {
  #allow: ((kind: string) => boolean) | undefined;
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
    try {
      return this.#value();
    } finally {
      this.#refs.length = 0;
      this.#b = EMPTY;
    }
  }

  #u32(): number {
    return this.#i32() >>> 0;
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
          } else o[k] = this.#value();
        }
        return o;
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
      case T_ARRAY: {
        const n = this.#count(1), a = new Array(n);
        this.#refs.push(a);
        for (let i = 0; i < n; i++) {
          if (this.#b[this.#p] === T_HOLE) this.#p++;
          else a[i] = this.#value();
        }
        return a;
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
        if (this.#allow && !this.#allow(name)) {
          throw new SerializationError("value", `a '${name}' handle cannot be received here`);
        }
        if (!kind) {
          throw new SerializationError(
            "value",
            `a '${name}' handle arrived but its module was not loaded here (import it from denomp's mod.ts)`,
          );
        }
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

  #bytesOut(): Uint8Array {
    const n = this.#count(1);
    const out = this.#b.slice(this.#p, this.#p + n);
    this.#p += n;
    return out;
  }

  #error(): Error {
    const i = this.#refs.push(null) - 1;
    const name = this.#str(), message = this.#str(), stack = this.#str();
    const Known = ERROR_CLASSES[name] ??
      (ERROR_PROTOS.has(
          (globalThis as unknown as Record<string, { prototype?: unknown } | undefined>)[name]
            ?.prototype,
        )
        ? (globalThis as unknown as Record<string, new (m: string) => Error>)[name]
        : undefined);
    let e: Error;
    if (Known) {
      e = Object.create(Known.prototype);
      Object.defineProperty(e, "message", { value: message, writable: true, configurable: true });
    } else {
      e = new Error(message);
      Object.defineProperty(e, "name", { value: name, writable: true, configurable: true });
    }
    if (Known) {
      Object.defineProperty(e, "name", { value: name, writable: true, configurable: true });
    }
    Object.defineProperty(e, "stack", { value: stack, writable: true, configurable: true });
    this.#refs[i] = e;
    const extra = this.#value() as Record<string, unknown> | undefined;
    if (extra) {
      for (const k of Object.keys(extra)) {
        Object.defineProperty(e, k, {
          value: extra[k],
          writable: true,
          configurable: true,
          enumerable: k !== "cause",
        });
      }
    }
    return e;
  }
}

const EMPTY = new Uint8Array(0);
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
 * Encodes `value` into a new `Uint8Array` (Python's `pickle.dumps`); `root` names the value in
 * error paths.
 *
 * @example
 * ```ts
 * import { dumps, loads } from "./reduction.ts";
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
 * import { dumps, loads } from "./reduction.ts";
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
