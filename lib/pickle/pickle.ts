/**
 * A pickle codec for talking to CPython that never executes anything: `pickle.dumps` writes
 * protocol 4 (or 5), which Python 3.8+ reads; `pickle.loads` reads protocols 0–5.
 *
 * Python's own `pickle.loads` runs whatever callable a pickle names (`os.system` included), so a
 * pickle from an untrusted peer is code. This codec only ever builds data: a pickle that names a
 * global (`GLOBAL`, `STACK_GLOBAL`, then `REDUCE`, `NEWOBJ`, `BUILD`, `INST`, `OBJ`, `EXT*`,
 * `PERSID`) is refused with a {@link SerializationError} naming the opcode and the global, except
 * for a short allowlist of globals that old protocols need for plain data or that map to a
 * JavaScript type — each rebuilt here by hand, never by looking a name up:
 *
 * | global | as | why |
 * |---|---|---|
 * | `builtins.set`, `builtins.frozenset` | `Set` | protocols 0–3 have no set opcodes |
 * | `builtins.bytes`, `builtins.bytearray`, `_codecs.encode` (`latin1`/`utf-8`) | `Uint8Array` | protocols 0–2 have no bytes opcodes |
 * | `collections.OrderedDict` | like a dict | common in Python data |
 * | `datetime.datetime` (naive: read as UTC; with a `datetime.timezone` tzinfo) | `Date` (milliseconds: microseconds are truncated) | the `Date` mapping |
 * | `datetime.timedelta` | number of seconds | as Python's `total_seconds()` |
 * | `datetime.timezone` | only as a datetime's tzinfo | |
 *
 * (`__builtin__` is read as `builtins`, as Python's `fix_imports` does.)
 *
 * The mapping (API.md "Python"): dict with str keys ↔ plain object; any other dict ↔ `Map`;
 * None ↔ `null`; True/False ↔ booleans; int ↔ number when a safe integer (|n| ≤ 2^53 − 1), else
 * `bigint`; float ↔ number (a JS number that is an integer is written as int, except `-0`,
 * written as the float `-0.0`); str ↔ string (lone surrogates both ways, as Python's
 * `surrogatepass`); bytes ↔ `Uint8Array`; bytearray → `Uint8Array`; set and frozenset → `Set`,
 * `Set` → set; list and tuple → array, array → list (an array made by {@link tuple} → tuple). Dict keys and set members must be hashable
 * in Python, so there an array is written as a tuple and a `Set` as a frozenset (a plain object
 * or `Map` there is refused). The rest: `undefined` → None; `Date` → an aware UTC
 * `datetime.datetime`; `ArrayBuffer`, `DataView` and `Uint8ClampedArray` → bytes; other typed
 * arrays → a list of their numbers (bigints for `BigInt64Array`); functions, symbols and class
 * instances are refused.
 *
 * Beyond that, a caller can allow more globals, each with a function that builds the value from
 * the call's arguments (`loads(bytes, { globals })`), and write instances of its own classes as
 * calls of a Python global (`dumps(value, { reduce })`): what a connection layer talking to
 * Python's managers needs (a `multiprocessing.managers.Token`, a `builtins.KeyError`).
 *
 * Shared references and cycles survive both ways (through the pickle memo): a JS array that
 * contains itself arrives as a Python list that contains itself. Reading is a loop over opcodes,
 * never recursion, and never allocates more than a constant times the input's size: every
 * claimed length is checked against the bytes that are left before anything is allocated.
 *
 * @example
 * ```ts
 * import { pickle } from "jsr:@denomp/multiprocessing";
 * const bytes = pickle.dumps({ i: 1, xs: [1, 2n ** 70n], s: new Set(["a"]) });
 * const back = pickle.loads(bytes) as { i: number; xs: unknown[]; s: Set<string> };
 * console.assert(back.i === 1 && back.xs[1] === 2n ** 70n && back.s.has("a"));
 * ```
 *
 * @module
 */

import { optionsOf } from "../core/args.ts";
import { SerializationError } from "../core/errors.ts";
import * as op from "./ops.ts";
import { unpickle } from "./unpickler.ts";

/** Options of {@link dumps}. */
export interface DumpsOptions {
  /** The pickle protocol to write: 4 (default; what `multiprocessing` uses) or 5. */
  protocol?: 4 | 5;
  /** Deepest nesting written, beyond which a `SerializationError` is thrown. Default 1000. */
  maxDepth?: number;
  /** Largest pickle produced, in bytes; a bigger one throws `SerializationError`. */
  maxBytes?: number;
  /**
   * How to write instances of classes (which are refused otherwise), as Python's `__reduce__`:
   * return `{ global: "module.name", args, state?, newobj? }` to write "call this Python global
   * with `args`" (`REDUCE`, or `NEWOBJ` for `cls.__new__(cls, *args)`), then `BUILD` with
   * `state` when given; return `undefined` to refuse the value. For a connection layer that
   * needs to send, say, a `multiprocessing.managers.Token`.
   */
  reduce?: (value: object) => Reduced | undefined;
}

/** What {@link DumpsOptions.reduce} returns for an instance: a Python global and its arguments. */
export interface Reduced {
  /** The Python global, `module.name` (e.g. `"multiprocessing.managers.Token"`). */
  global: string;
  /** Its arguments, written as a tuple. */
  args: unknown[];
  /** Written with `BUILD` after the call when given (the object's `__setstate__` argument). */
  state?: unknown;
  /** `NEWOBJ` (`cls.__new__(cls, *args)`) instead of `REDUCE` (`global(*args)`). */
  newobj?: boolean;
}

/** Options of {@link loads}. */
export interface LoadsOptions {
  /** Deepest nesting of `MARK`s accepted (a bigger one throws `SerializationError`). Default 1000. */
  maxDepth?: number;
  /**
   * How a Python 2 `str` (`STRING`, `BINSTRING`, `SHORT_BINSTRING`) is read, as Python's
   * `pickle.loads(encoding=...)`: `"ascii"` (default, as Python's), `"latin1"`, `"utf-8"`, or
   * `"bytes"` (a `Uint8Array`).
   */
  encoding?: "ascii" | "latin1" | "utf-8" | "bytes";
  /**
   * Globals to accept besides the built-in allowlist, by `module.name`: each is a function that
   * builds the value from the arguments of `REDUCE` (or of `NEWOBJ`, for a class). A later
   * `BUILD` on what it returned calls its `__setstate__(state)` method if it has one, else
   * assigns a dict state to it. Only these functions run: nothing is looked up by name.
   */
  globals?: Readonly<Record<string, (args: unknown[]) => unknown>>;
}

/**
 * Writes `value` as a pickle of protocol 4 (or 5) that CPython 3.8+ reads with `pickle.loads`.
 * The mapping is in the module doc. Throws {@link SerializationError} naming the path inside the
 * value (e.g. `value.a[2]: functions cannot be pickled`) for what has no Python counterpart.
 *
 * @example
 * ```ts
 * import { pickle } from "jsr:@denomp/multiprocessing";
 * const b = pickle.dumps(null);
 * console.assert(b[0] === 0x80 && b[1] === 4 && b[b.length - 1] === 0x2e); // PROTO 4 ... STOP
 * ```
 */
export function dumps(value: unknown, options?: DumpsOptions): Uint8Array {
  const o = optionsOf(options, "pickle.dumps", "pickle.dumps(value, { protocol: 5 })");
  const w = busy ? new Pickler() : shared;
  busy = true;
  try {
    return w.dump(value, o);
  } catch (e) {
    if (e instanceof PathError) {
      throw new SerializationError("value" + e.path.reverse().join(""), e.message);
    }
    if (e instanceof RangeError && /call stack/i.test(e.message)) {
      // Only with a `maxDepth` above what the stack holds (the default is well below it).
      throw new SerializationError("value", "nested too deeply for the JS stack (lower maxDepth)", {
        cause: e,
      });
    }
    throw e;
  } finally {
    if (w === shared) busy = false;
    w.reset();
  }
}

/**
 * Reads a pickle of any protocol 0–5 into JavaScript values (the mapping is in the module doc),
 * executing nothing. A malformed pickle, or one naming a global outside the allowlist, throws
 * {@link SerializationError} whose message says where (`pickle byte 12: ...`) and what (the
 * opcode, and the global, e.g. `STACK_GLOBAL os.system is refused`). Bytes after `STOP` are
 * ignored, as by Python.
 *
 * @example
 * ```ts
 * import { pickle } from "jsr:@denomp/multiprocessing";
 * // Python: pickle.dumps({"a": (1, 2.5), 3: None}, 2)
 * const p = new Uint8Array([
 *   0x80, 2, 0x7d, 0x71, 0, 0x28, 0x58, 1, 0, 0, 0, 0x61, 0x71, 1, 0x4b, 1, 0x47,
 *   0x40, 4, 0, 0, 0, 0, 0, 0, 0x86, 0x71, 2, 0x4b, 3, 0x4e, 0x75, 0x2e,
 * ]);
 * const m = pickle.loads(p) as Map<unknown, unknown>;
 * console.assert(m instanceof Map && m.get(3) === null && (m.get("a") as number[])[1] === 2.5);
 * ```
 */
export function loads(bytes: Uint8Array, options?: LoadsOptions): unknown {
  const o = optionsOf(options, "pickle.loads", 'pickle.loads(bytes, { encoding: "latin1" })');
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(`pickle.loads() takes a Uint8Array, not ${typeof bytes}`);
  }
  return unpickle(bytes, o.maxDepth ?? 1000, o.encoding ?? "ascii", o.globals ?? null);
}

/**
 * An array that {@link dumps} writes as a Python tuple rather than a list (frozen: a tuple does
 * not change). For the places where Python code checks for a tuple, e.g. an `(host, port)`
 * address. `loads` reads tuples back as plain arrays, as API.md says.
 *
 * @example
 * ```ts
 * import { pickle } from "jsr:@denomp/multiprocessing";
 * const address = pickle.tuple("127.0.0.1", 5000);
 * const b = pickle.dumps(address);
 * console.assert(b[b.length - 3] === 0x86); // TUPLE2, then MEMOIZE and STOP
 * console.assert((pickle.loads(b) as unknown[])[1] === 5000);
 * ```
 */
export function tuple<T extends unknown[]>(...items: T): Readonly<T> {
  Object.defineProperty(items, TUPLE, { value: true });
  return Object.freeze(items);
}
const TUPLE = Symbol("pickle.tuple");

/** An error on the way down, collecting the path on the way up (no cost when nothing fails). */
class PathError extends Error {
  path: string[] = [];
}

const BATCH = 1000; // items per APPENDS/SETITEMS/ADDITEMS, as Python writes them
const enc = new TextEncoder();
const HASHABLE = "cannot be a dict key or set member (Python: unhashable type";

/** The Python bytes of a `Date`: an aware UTC `datetime.datetime`, as Python pickles one. */
const DT_HEAD = latin1Bytes("\x8c\x08datetime\x8c\x08datetime\x93C\n");
const DT_TAIL = latin1Bytes(
  "\x8c\x08datetime\x8c\x08timezone\x93\x8c\x08datetime\x8c\x09timedelta\x93" +
    "K\x00K\x00K\x00\x87R\x85R\x86R",
);
function latin1Bytes(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

class Pickler {
  buf = new Uint8Array(1 << 16);
  view = new DataView(this.buf.buffer);
  pos = 0;
  memo = new Map<object, number>();
  keyStack: object[] = []; // arrays and sets being written as tuples/frozensets (cycle check)
  maxDepth = 1000;
  maxBytes = Infinity;
  reducer: ((value: object) => Reduced | undefined) | null = null;

  reset(): void {
    if (this.buf.length > 1 << 20) {
      // Do not keep a big message's buffer for ever.
      this.buf = new Uint8Array(1 << 16);
      this.view = new DataView(this.buf.buffer);
    }
    this.reducer = null;
    this.memo.clear();
    this.keyStack.length = 0;
    this.pos = 0;
  }

  dump(value: unknown, o: DumpsOptions): Uint8Array {
    const protocol = o.protocol ?? 4;
    if (protocol !== 4 && protocol !== 5) {
      throw new TypeError(`pickle.dumps(): protocol must be 4 or 5, not ${String(protocol)}`);
    }
    this.maxDepth = o.maxDepth ?? 1000;
    this.maxBytes = o.maxBytes ?? Infinity;
    this.reducer = o.reduce ?? null;
    // PROTO p, then one FRAME holding the rest (its length is filled in at the end).
    this.buf[0] = op.PROTO;
    this.buf[1] = protocol;
    this.buf[2] = op.FRAME;
    this.pos = 11;
    this.save(value, 0);
    this.ensure(1);
    this.buf[this.pos++] = op.STOP;
    if (this.pos > this.maxBytes) this.tooBig();
    const frame = this.pos - 11; // FRAME's u64 length, without a BigInt
    this.view.setUint32(3, frame % 2 ** 32, true);
    this.view.setUint32(7, Math.floor(frame / 2 ** 32), true);
    return this.buf.slice(0, this.pos);
  }

  tooBig(): never {
    throw new PathError(`the pickle is larger than maxBytes (${this.maxBytes})`);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    if (this.pos > this.maxBytes) this.tooBig();
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.pos));
    this.buf = b;
    this.view = new DataView(b.buffer);
  }

  byte(b: number): void {
    if (this.pos >= this.buf.length) this.ensure(1);
    this.buf[this.pos++] = b;
  }

  save(v: unknown, depth: number): void {
    switch (typeof v) {
      case "number":
        return this.saveNumber(v);
      case "string":
        return this.saveStr(v);
      case "boolean":
        return this.byte(v ? op.NEWTRUE : op.NEWFALSE);
      case "bigint":
        return v >= -0x80000000n && v <= 0x7fffffffn ? this.saveNumber(Number(v)) : this.long(v);
      case "undefined":
        return this.byte(op.NONE);
      case "object":
        if (v === null) return this.byte(op.NONE);
        return this.saveObject(v, depth + 1);
      default:
        throw new PathError(`${typeof v}s cannot be pickled`);
    }
  }

  saveNumber(v: number): void {
    if (Number.isInteger(v)) {
      if (v >= 0) {
        if (v < 256) {
          if (v === 0 && 1 / v < 0) return this.float(v); // -0 keeps its sign as a float
          this.ensure(2);
          this.buf[this.pos++] = op.BININT1;
          this.buf[this.pos++] = v;
          return;
        }
        if (v < 65536) {
          this.ensure(3);
          this.buf[this.pos++] = op.BININT2;
          this.view.setUint16(this.pos, v, true);
          this.pos += 2;
          return;
        }
      }
      if (v >= -0x80000000 && v <= 0x7fffffff) {
        this.ensure(5);
        this.buf[this.pos++] = op.BININT;
        this.view.setInt32(this.pos, v, true);
        this.pos += 4;
        return;
      }
      return this.long(BigInt(v));
    }
    this.float(v);
  }

  float(v: number): void {
    this.ensure(9);
    this.buf[this.pos++] = op.BINFLOAT;
    this.view.setFloat64(this.pos, v, false);
    this.pos += 8;
  }

  long(v: bigint): void {
    const b = op.encodeLong(v);
    this.ensure(b.length + 5);
    if (b.length < 256) {
      this.buf[this.pos++] = op.LONG1;
      this.buf[this.pos++] = b.length;
    } else {
      this.buf[this.pos++] = op.LONG4;
      this.view.setUint32(this.pos, b.length, true);
      this.pos += 4;
    }
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  saveStr(s: string): void {
    const n = s.length;
    if (n <= 85) {
      // At most 255 bytes of UTF-8: SHORT_BINUNICODE, ASCII copied inline.
      this.ensure(2 + 3 * n);
      const buf = this.buf;
      let p = this.pos;
      buf[p++] = op.SHORT_BINUNICODE;
      const lenAt = p++;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[p++] = c;
      }
      if (i < n) p = op.encodeUtf8Into(s.slice(i), buf, p);
      buf[lenAt] = p - lenAt - 1;
      this.pos = p;
      return;
    }
    this.ensure(9 + 3 * n);
    const at = this.pos + 5;
    const end = s.isWellFormed()
      ? at + enc.encodeInto(s, this.buf.subarray(at)).written
      : op.encodeUtf8Into(s, this.buf, at);
    const len = end - at;
    if (len < 256) {
      this.buf.copyWithin(this.pos + 2, at, end);
      this.buf[this.pos] = op.SHORT_BINUNICODE;
      this.buf[this.pos + 1] = len;
      this.pos += 2 + len;
    } else {
      this.buf[this.pos] = op.BINUNICODE;
      this.view.setUint32(this.pos + 1, len, true);
      this.pos = end;
    }
  }

  bytes(b: Uint8Array | Uint8ClampedArray): void {
    this.ensure(b.length + 9);
    if (b.length < 256) {
      this.buf[this.pos++] = op.SHORT_BINBYTES;
      this.buf[this.pos++] = b.length;
    } else {
      this.buf[this.pos++] = op.BINBYTES;
      this.view.setUint32(this.pos, b.length, true);
      this.pos += 4;
    }
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** Writes `GET` for an object already written, or records it in the memo (`MEMOIZE`). */
  memoize(o: object): void {
    this.memo.set(o, this.memo.size);
    this.byte(op.MEMOIZE);
  }

  saveObject(o: object, depth: number): void {
    const seen = this.memo.get(o);
    if (seen !== undefined) {
      this.ensure(5);
      if (seen < 256) {
        this.buf[this.pos++] = op.BINGET;
        this.buf[this.pos++] = seen;
      } else {
        this.buf[this.pos++] = op.LONG_BINGET;
        this.view.setUint32(this.pos, seen, true);
        this.pos += 4;
      }
      return;
    }
    if (depth > this.maxDepth) {
      throw new PathError(`nested deeper than maxDepth (${this.maxDepth})`);
    }
    if (Array.isArray(o)) {
      return (o as { [TUPLE]?: true })[TUPLE] ? this.tuple(o, depth) : this.list(o, depth);
    }
    const proto = Object.getPrototypeOf(o);
    if (proto === Object.prototype || proto === null) return this.dict(o, depth);
    if (o instanceof Uint8Array || o instanceof Uint8ClampedArray) {
      this.bytes(o);
      return this.memoize(o);
    }
    if (o instanceof Map) return this.map(o, depth);
    if (o instanceof Set) return this.set(o, depth);
    if (o instanceof Date) return this.date(o);
    if (o instanceof ArrayBuffer || o instanceof SharedArrayBuffer) {
      return this.bytes(new Uint8Array(o));
    }
    if (o instanceof DataView) {
      return this.bytes(new Uint8Array(o.buffer, o.byteOffset, o.byteLength));
    }
    if (ArrayBuffer.isView(o)) {
      return this.list(Array.from(o as unknown as ArrayLike<unknown>), depth);
    }
    const r = this.reducer?.(o);
    if (r !== undefined) return this.reduced(o, r, depth);
    const name = (proto?.constructor as { name?: string } | undefined)?.name ?? "object";
    throw new PathError(`instances of ${name} cannot be pickled (only plain data)`);
  }

  /** An instance as the caller's `reduce` said: global, arguments, then maybe its state. */
  reduced(o: object, r: Reduced, depth: number): void {
    const dot = r.global.lastIndexOf(".");
    if (dot <= 0 || !Array.isArray(r.args)) {
      throw new PathError(`reduce() returned no "module.name" global and args array`);
    }
    this.saveStr(r.global.slice(0, dot));
    this.saveStr(r.global.slice(dot + 1));
    this.byte(op.STACK_GLOBAL);
    const n = r.args.length;
    if (n > 3) this.byte(op.MARK);
    for (const a of r.args) this.save(a, depth);
    this.byte(n === 0 ? op.EMPTY_TUPLE : n <= 3 ? op.TUPLE1 + n - 1 : op.TUPLE);
    this.byte(r.newobj ? op.NEWOBJ : op.REDUCE);
    this.memoize(o);
    if (r.state !== undefined) {
      this.save(r.state, depth);
      this.byte(op.BUILD);
    }
  }

  list(a: unknown[], depth: number): void {
    this.byte(op.EMPTY_LIST);
    this.memoize(a);
    const n = a.length;
    if (n === 0) return;
    let i = 0;
    try {
      if (n === 1) {
        this.save(a[0], depth);
        return this.byte(op.APPEND);
      }
      for (let start = 0; start < n; start += BATCH) {
        this.byte(op.MARK);
        const end = Math.min(n, start + BATCH);
        for (i = start; i < end; i++) this.save(a[i], depth);
        this.byte(op.APPENDS);
      }
    } catch (e) {
      throw at(e, `[${i}]`);
    }
  }

  /** A {@link tuple}: its items, then `TUPLE1`-`TUPLE3` or `MARK`...`TUPLE`, then the memo. */
  tuple(t: unknown[], depth: number): void {
    const n = t.length;
    if (n === 0) return this.byte(op.EMPTY_TUPLE);
    if (this.keyStack.includes(t)) {
      throw new PathError(
        "a tuple that contains itself (through a list or dict) cannot be pickled",
      );
    }
    this.keyStack.push(t);
    if (n > 3) this.byte(op.MARK);
    let i = 0;
    try {
      for (; i < n; i++) this.save(t[i], depth);
    } catch (e) {
      throw at(e, `[${i}]`);
    }
    this.keyStack.pop();
    this.byte(n <= 3 ? op.TUPLE1 + n - 1 : op.TUPLE);
    this.memoize(t);
  }

  dict(o: object, depth: number): void {
    this.byte(op.EMPTY_DICT);
    this.memoize(o);
    const keys = Object.keys(o);
    const n = keys.length;
    if (n === 0) return;
    const rec = o as Record<string, unknown>;
    let k = "";
    try {
      if (n === 1) {
        k = keys[0];
        this.saveStr(k);
        this.save(rec[k], depth);
        return this.byte(op.SETITEM);
      }
      for (let start = 0; start < n; start += BATCH) {
        this.byte(op.MARK);
        const end = Math.min(n, start + BATCH);
        for (let i = start; i < end; i++) {
          k = keys[i];
          this.saveStr(k);
          this.save(rec[k], depth);
        }
        this.byte(op.SETITEMS);
      }
    } catch (e) {
      throw at(e, /^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`);
    }
  }

  map(m: Map<unknown, unknown>, depth: number): void {
    this.byte(op.EMPTY_DICT);
    this.memoize(m);
    let i = 0;
    try {
      for (const [k, v] of m) {
        if (i % BATCH === 0) {
          if (i > 0) this.byte(op.SETITEMS);
          this.byte(op.MARK);
        }
        this.key(k, depth);
        this.save(v, depth);
        i++;
      }
      if (i > 0) this.byte(op.SETITEMS);
    } catch (e) {
      throw at(e, `<Map entry ${i}>`);
    }
  }

  set(s: Set<unknown>, depth: number): void {
    this.byte(op.EMPTY_SET);
    this.memoize(s);
    let i = 0;
    try {
      for (const v of s) {
        if (i % BATCH === 0) {
          if (i > 0) this.byte(op.ADDITEMS);
          this.byte(op.MARK);
        }
        this.key(v, depth);
        i++;
      }
      if (i > 0) this.byte(op.ADDITEMS);
    } catch (e) {
      throw at(e, `<Set member ${i}>`);
    }
  }

  /** A dict key or set member: arrays become tuples and sets frozensets (Python hashes them). */
  key(v: unknown, depth: number): void {
    if (typeof v !== "object" || v === null) return this.save(v, depth);
    if (depth + 1 > this.maxDepth) {
      throw new PathError(`nested deeper than maxDepth (${this.maxDepth})`);
    }
    const isArray = Array.isArray(v);
    if (isArray || v instanceof Set) {
      if (this.keyStack.includes(v)) {
        throw new PathError(`a ${isArray ? "array" : "Set"} that contains itself ${HASHABLE})`);
      }
      this.keyStack.push(v);
      const items = isArray ? v : [...(v as Set<unknown>)];
      if (!isArray || items.length > 3) this.byte(op.MARK);
      let i = 0;
      try {
        for (; i < items.length; i++) this.key(items[i], depth + 1);
      } catch (e) {
        throw at(e, `[${i}]`);
      }
      this.keyStack.pop();
      const n = items.length;
      if (!isArray) return this.byte(op.FROZENSET);
      return this.byte(
        n === 0
          ? op.EMPTY_TUPLE
          : n === 1
          ? op.TUPLE1
          : n === 2
          ? op.TUPLE2
          : n === 3
          ? op.TUPLE3
          : op.TUPLE,
      );
    }
    const proto = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null || v instanceof Map) {
      throw new PathError(`a ${v instanceof Map ? "Map" : "plain object"} ${HASHABLE} 'dict')`);
    }
    this.save(v, depth);
  }

  date(d: Date): void {
    const t = d.getTime();
    const year = d.getUTCFullYear();
    if (Number.isNaN(t) || year < 1 || year > 9999) {
      throw new PathError(`a Date outside Python's datetime range (years 1-9999): ${d}`);
    }
    this.ensure(DT_HEAD.length + 10 + DT_TAIL.length);
    this.buf.set(DT_HEAD, this.pos);
    let p = this.pos + DT_HEAD.length;
    const us = d.getUTCMilliseconds() * 1000;
    const state = [
      year >> 8,
      year & 0xff,
      d.getUTCMonth() + 1,
      d.getUTCDate(),
      d.getUTCHours(),
      d.getUTCMinutes(),
      d.getUTCSeconds(),
      us >> 16,
      (us >> 8) & 0xff,
      us & 0xff,
    ];
    for (const b of state) this.buf[p++] = b;
    this.buf.set(DT_TAIL, p);
    this.pos = p + DT_TAIL.length;
  }
}

/** Adds a path segment to an error raised below, on its way up. */
function at(e: unknown, segment: string): unknown {
  if (e instanceof PathError) e.path.push(segment);
  return e;
}

const shared = new Pickler();
let busy = false; // a getter calling dumps re-entrantly gets its own Pickler
