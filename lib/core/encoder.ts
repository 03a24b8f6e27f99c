/**
 * `Encoder`: writes a value in the codec's format into a reused buffer, all or nothing, refusing
 * what cannot be sent with a `SerializationError` naming its path.
 *
 * @module
 */

import { type AnyKind, kindOf, kindSink, moduleOfKind } from "./handles.ts";
import {
  type CodecOptions,
  EMPTY,
  FEW,
  formatPath,
  isStackOverflow,
  MAX_DEPTH,
  PathError,
  T_ABUF,
  T_ARRAY,
  T_ARRAY_PROPS,
  T_BIGINT,
  T_BOXED,
  T_DATE,
  T_DVIEW,
  T_ERROR,
  T_F64,
  T_FALSE,
  T_HANDLE,
  T_HOLE,
  T_INT,
  T_KINDS,
  T_MAP,
  T_NULL,
  T_OBJECT,
  T_REF,
  T_REGEXP,
  T_SET,
  T_STR16,
  T_STR8,
  T_TRUE,
  T_TYPED,
  T_UNDEF,
  T_UTF8,
  typedIndex,
  utf8,
} from "./wire.ts";
import { SerializationError } from "./errors.ts";

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
  /**
   * The value is an array used as a list of items (a pool's chunk of arguments or of results):
   * properties set on the array itself, beside its items, are not looked for nor sent. Finding
   * them means listing every index (`Object.keys`, ~25 ns an item: 300 µs for 12,500 numbers,
   * whose encoding takes 65 µs). Items that are arrays are still checked.
   */
  list?: boolean;
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
  #swap: ((handle: object, kind: string) => object | undefined) | undefined;
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
  /** The current call's root array when its `list` option is set (see `EncodeOptions.list`). */
  #list: unknown = null;
  /** The handle kinds written by the current call, in first-use order. */
  #kinds: AnyKind[] = [];
  /** Kind, descriptor, kind, ... of the handles reduced by the current call that can be undone. */
  #reduced: unknown[] = [];

  /** Creates an encoder; `options.handles` restricts the handle kinds it accepts. */
  constructor(options?: CodecOptions) {
    this.#allow = options?.handles;
    this.#swap = options?.swap;
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
    this.#list = options?.list === true ? value : null;
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
      this.#list = null;
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
      // keeps them, so they go as a T_ARRAY_PROPS tail (a list's are not looked for).
      if (v === this.#list) return;
      const keys = Object.keys(v);
      if (keys.length > n - holes) {
        this.#buf[at] = T_ARRAY_PROPS;
        this.#props(v as unknown as Record<string, unknown>, keys, n - holes);
      }
      return;
    }
    const kind = kindOf(v);
    if (kind) {
      const stand = this.#swap?.(v, kind.name);
      if (stand !== undefined) return this.#value(stand);
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
