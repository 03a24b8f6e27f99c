/**
 * Typed channels: an item schema (`{ i: "i32", x: "f64", tag: "string" }`) compiled once into a
 * writer and a reader that put a record field by field into bytes, with no generic encoding.
 *
 * Why: the generic codec (`reduction.ts`) must discover each value's shape, tag it and walk it;
 * for a stream of small records of one known shape that is most of the cost of a queue. A
 * compiled schema writes each field at its place (little-endian numbers, strings and bytes as a
 * `u32` length then the bytes), checks each value on the way (a value that does not fit is a
 * `SerializationError` naming the field), and reads it back the same way. A batch
 * ({@link Schema.encodeMany}) is a run of length-prefixed records, 4-aligned: the form a ring
 * copies as one frame per record in one publication (see `Ring.postFrames`).
 *
 * A schema is plain JSON, so it travels with a queue in shared memory and compiles to the same
 * reader in every worker (compiled once per process: {@link compileSchema} caches by text).
 *
 * @module
 */

import { SerializationError, ValueError } from "../core/errors.ts";

/** The numeric field types: read and written as JavaScript `number`s. */
export type NumberField = "i8" | "u8" | "i16" | "u16" | "i32" | "u32" | "f32" | "f64";

/**
 * A field's type: a number type, `i64`/`u64` (`bigint`), `bool`, `string` (UTF-8), `bytes`
 * (`Uint8Array`), or a fixed-length array of a number type, e.g. `"f64[3]"` (`number[]`).
 */
export type FieldType =
  | NumberField
  | "i64"
  | "u64"
  | "bool"
  | "string"
  | "bytes"
  | `${NumberField}[${number}]`;

/** An item schema: field name → field type, in the order the fields are written. */
export type SchemaSpec = { readonly [field: string]: FieldType };

/** The JavaScript type of a field of type `F`. */
export type ValueOf<F> = F extends NumberField ? number
  : F extends "i64" | "u64" ? bigint
  : F extends "bool" ? boolean
  : F extends "string" ? string
  : F extends "bytes" ? Uint8Array
  : F extends `${NumberField}[${number}]` ? number[]
  : never;

/** The item type a schema describes: `ItemOf<{ i: "i32" }>` is `{ i: number }`. */
export type ItemOf<S extends SchemaSpec> = { -readonly [K in keyof S]: ValueOf<S[K]> };

/** The field types that can carry a value of type `V`. */
export type FieldFor<V> = V extends number ? NumberField
  : V extends bigint ? "i64" | "u64"
  : V extends boolean ? "bool"
  : V extends string ? "string"
  : V extends Uint8Array ? "bytes"
  : V extends readonly number[] ? `${NumberField}[${number}]`
  : never;

/** A schema for items of type `T` (any schema while `T` is `unknown`). */
export type SchemaFor<T> = unknown extends T ? SchemaSpec
  : { readonly [K in keyof T]-?: FieldFor<T[K]> };

// ---------------------------------------------------------------------------------------------
// The writer: a private, growable buffer of records.

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

/** The bytes a record or batch is written into (private memory, grown as needed). */
class Out {
  u8 = new Uint8Array(4096);
  dv = new DataView(this.u8.buffer);
  pos = 0;

  /** Makes room for `n` more bytes. */
  need(n: number): void {
    if (this.pos + n <= this.u8.length) return;
    let size = this.u8.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.u8.subarray(0, this.pos));
    this.u8 = next;
    this.dv = new DataView(next.buffer);
  }
}

/** The reader's cursor: a view of the bytes and a position in them. */
interface In {
  u8: Uint8Array;
  dv: DataView;
  pos: number;
  /** The `data` last read from (a ring's data area, mostly), and where it starts in `u8`. */
  src: Uint8Array;
  base: number;
}

/**
 * A reader's views of the whole buffer of `data` (the shared heap, mostly): one per buffer, not
 * one per item. Fixed-length, not length-tracking: the shared heap is a growable
 * SharedArrayBuffer, and a length-tracking view of it pays a length check on every access (a W2
 * item's 11-byte string read in 107 ns through one, 20 ns through a fixed-length view).
 */
function inOf(data: Uint8Array): In {
  const buf = data.buffer, size = buf.byteLength;
  return {
    u8: new Uint8Array(buf, 0, size),
    dv: new DataView(buf, 0, size),
    pos: 0,
    src: data,
    base: data.byteOffset,
  };
}

/**
 * Writes one field's value; false (nothing to undo: the record is dropped whole) when the value
 * does not fit. The path of an error is built only then: a string per field per item would
 * cost more than the write.
 */
type Put = (v: unknown, o: Out) => boolean;
type Get = (i: In) => unknown;
/** A compiled field: its writer, its reader, and what it expects (for the error). */
interface Field {
  put: Put;
  get: Get;
  what: string;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "string") return `a string (${JSON.stringify(v.slice(0, 40))})`;
  if (typeof v === "object") return `an object (${v.constructor?.name ?? "null prototype"})`;
  return `${typeof v === "undefined" ? "undefined (missing)" : `a ${typeof v} (${String(v)})`}`;
}

/**
 * An item's path in errors: `path`, or `path[k]` for the `k`th of a batch. Built only for an
 * error: a template string per item cost 6% of a typed put+get.
 */
const pathOf = (path: string, k: number): string => k < 0 ? path : `${path}[${k}]`;

function refuse(path: string, what: string, v: unknown): never {
  throw new SerializationError(path, `expected ${what}: got ${describe(v)}`);
}

/** Size, range and the DataView accessors of each number type. */
const NUMBERS: Record<NumberField, { size: number; min: number; max: number; int: boolean }> = {
  i8: { size: 1, min: -0x80, max: 0x7f, int: true },
  u8: { size: 1, min: 0, max: 0xff, int: true },
  i16: { size: 2, min: -0x8000, max: 0x7fff, int: true },
  u16: { size: 2, min: 0, max: 0xffff, int: true },
  i32: { size: 4, min: -0x80000000, max: 0x7fffffff, int: true },
  u32: { size: 4, min: 0, max: 0xffffffff, int: true },
  f32: { size: 4, min: -Infinity, max: Infinity, int: false },
  f64: { size: 8, min: -Infinity, max: Infinity, int: false },
};

/** Writes and reads one number of type `t` at a position (no checks). */
function numberIo(t: NumberField): {
  set: (dv: DataView, at: number, v: number) => void;
  get: (dv: DataView, at: number) => number;
} {
  switch (t) {
    case "i8":
      return { set: (dv, at, v) => dv.setInt8(at, v), get: (dv, at) => dv.getInt8(at) };
    case "u8":
      return { set: (dv, at, v) => dv.setUint8(at, v), get: (dv, at) => dv.getUint8(at) };
    case "i16":
      return {
        set: (dv, at, v) => dv.setInt16(at, v, true),
        get: (dv, at) => dv.getInt16(at, true),
      };
    case "u16":
      return {
        set: (dv, at, v) => dv.setUint16(at, v, true),
        get: (dv, at) => dv.getUint16(at, true),
      };
    case "i32":
      return {
        set: (dv, at, v) => dv.setInt32(at, v, true),
        get: (dv, at) => dv.getInt32(at, true),
      };
    case "u32":
      return {
        set: (dv, at, v) => dv.setUint32(at, v, true),
        get: (dv, at) => dv.getUint32(at, true),
      };
    case "f32":
      return {
        set: (dv, at, v) => dv.setFloat32(at, v, true),
        get: (dv, at) => dv.getFloat32(at, true),
      };
    case "f64":
      return {
        set: (dv, at, v) => dv.setFloat64(at, v, true),
        get: (dv, at) => dv.getFloat64(at, true),
      };
  }
}

function numberField(t: NumberField): Field {
  const { size, min, max, int } = NUMBERS[t], { set, get } = numberIo(t);
  return {
    what: int ? `${t} (an integer in [${min}, ${max}])` : `${t} (a number)`,
    put(v, o) {
      if (typeof v !== "number" || (int && !(Number.isInteger(v) && v >= min && v <= max))) {
        return false;
      }
      o.need(size);
      set(o.dv, o.pos, v);
      o.pos += size;
      return true;
    },
    get(i) {
      const v = get(i.dv, i.pos);
      i.pos += size;
      return v;
    },
  };
}

function arrayField(t: NumberField, n: number): Field {
  const el = numberField(t);
  return {
    what: `${t}[${n}] (an array of ${n} ${el.what.slice(t.length + 1)})`,
    put(v, o) {
      if (!Array.isArray(v) || v.length !== n) return false;
      for (let k = 0; k < n; k++) if (!el.put(v[k], o)) return false;
      return true;
    },
    get(i) {
      const a = new Array<unknown>(n);
      for (let k = 0; k < n; k++) a[k] = el.get(i);
      return a;
    },
  };
}

function bigField(t: "i64" | "u64"): Field {
  const signed = t === "i64";
  return {
    what: `${t} (a bigint in ${signed ? "[-2^63, 2^63)" : "[0, 2^64)"})`,
    put(v, o) {
      if (typeof v !== "bigint" || (signed ? BigInt.asIntN(64, v) : BigInt.asUintN(64, v)) !== v) {
        return false;
      }
      o.need(8);
      if (signed) o.dv.setBigInt64(o.pos, v, true);
      else o.dv.setBigUint64(o.pos, v, true);
      o.pos += 8;
      return true;
    },
    get(i) {
      const v = signed ? i.dv.getBigInt64(i.pos, true) : i.dv.getBigUint64(i.pos, true);
      i.pos += 8;
      return v;
    },
  };
}

const boolField: Field = {
  what: "bool (a boolean)",
  put(v, o) {
    if (typeof v !== "boolean") return false;
    o.need(1);
    o.u8[o.pos++] = v ? 1 : 0;
    return true;
  },
  get(i) {
    return i.u8[i.pos++] !== 0;
  },
};

/**
 * Strings up to this many bytes are read without TextDecoder when ASCII, {@link TINY} bytes at a
 * time: a `TextDecoder` call (on a copy: it refuses shared views) costs about 400 ns whatever
 * the length, 16 bytes by `asciiShort` about 20 ns.
 */
const SHORT = 512;

/**
 * ASCII strings up to this many bytes are read by {@link asciiShort}. Its size grows with the
 * square of this: at 32 (528 loads), reading 200,000 W2 strings in a fresh isolate took 10-11 ms
 * of CPU against 6-9 ms at 16 (4.2 ms either way once optimized), and a fresh worker reads most
 * of a short stream before V8 has optimized it.
 */
const TINY = 16;

/**
 * Reads the ASCII string of `len` (at most {@link TINY}) bytes at `u8[at]`, else null (a byte
 * of 0x80 or more: UTF-8 to decode). One case per length, each loading the bytes into locals and
 * passing them to `String.fromCharCode` as arguments: 20 ns of CPU for W2's 11-byte strings in
 * shared memory, where a pooled array through `fromCharCode.apply` took 33 ns and a
 * `TextDecoder` call on a copy about 400 ns.
 */
const asciiShort = new Function(
  "u8",
  "at",
  "len",
  'switch (len) { case 0: return ""; ' +
    Array.from({ length: TINY }, (_, n) => {
      const a = Array.from({ length: n + 1 }, (_, k) => `a${k}`);
      const loads = a.map((v, k) => `${v} = u8[at + ${k}]`).join(", ");
      return `case ${n + 1}: { const ${loads}; ` +
        `return (${a.join(" | ")}) < 0x80 ? String.fromCharCode(${a.join(", ")}) : null; }`;
    }).join(" ") + " } return null;",
) as (u8: Uint8Array, at: number, len: number) => string | null;

/**
 * Every case of {@link asciiShort} is run twice at load, in a view of the kind the heap's are
 * (a fixed-length view of a growable SharedArrayBuffer), so that each has type feedback before
 * V8 optimizes the function. A length first met after that deoptimized it, and it is large to
 * compile again: W2's strings grow from 6 to 11 bytes during the stream, and each new length cost
 * each consumer a deoptimization and a recompile (`--trace-deopt`). About 10 µs per isolate.
 */
function warmAsciiShort(): void {
  const sab = new SharedArrayBuffer(TINY, { maxByteLength: 2 * TINY });
  const u8 = new Uint8Array(sab, 0, TINY).fill(0x61);
  for (let pass = 0; pass < 2; pass++) for (let n = 0; n <= TINY; n++) asciiShort(u8, 0, n);
}
warmAsciiShort();

const stringField: Field = {
  what: "string",
  put(v, o) {
    if (typeof v !== "string") return false;
    const n = v.length;
    o.need(4 + 3 * n); // UTF-8 takes at most 3 bytes per UTF-16 unit
    const u8 = o.u8, at = o.pos + 4;
    let k = 0;
    for (; k < n; k++) { // ASCII, the common case, without a call
      const c = v.charCodeAt(k);
      if (c >= 0x80) break;
      u8[at + k] = c;
    }
    const len = k === n ? n : utf8.encodeInto(v, u8.subarray(at)).written;
    o.dv.setUint32(o.pos, len, true);
    o.pos = at + len;
    return true;
  },
  get(i) {
    const len = i.dv.getUint32(i.pos, true), at = i.pos + 4, u8 = i.u8;
    i.pos = at + len;
    if (len <= TINY) {
      const v = asciiShort(u8, at, len);
      if (v !== null) return v;
    } else if (len <= SHORT) {
      let v = "";
      for (let k = 0; k < len; k += TINY) {
        const part = asciiShort(u8, at + k, Math.min(TINY, len - k));
        if (part === null) return utf8d.decode(u8.slice(at, at + len)); // not ASCII
        v += part;
      }
      return v;
    }
    return utf8d.decode(u8.slice(at, at + len));
  },
};

const bytesField: Field = {
  what: "bytes (a Uint8Array)",
  put(v, o) {
    if (!(v instanceof Uint8Array)) return false;
    o.need(4 + v.length);
    o.dv.setUint32(o.pos, v.length, true);
    o.u8.set(v, o.pos + 4);
    o.pos += 4 + v.length;
    return true;
  },
  get(i) {
    const len = i.dv.getUint32(i.pos, true), at = i.pos + 4;
    i.pos = at + len;
    return i.u8.slice(at, at + len);
  },
};

function fieldOf(name: string, t: unknown): Field {
  if (typeof t === "string") {
    if (t in NUMBERS) return numberField(t as NumberField);
    if (t === "i64" || t === "u64") return bigField(t);
    if (t === "bool") return boolField;
    if (t === "string") return stringField;
    if (t === "bytes") return bytesField;
    const m = /^([iuf](?:8|16|32|64))\[(\d+)\]$/.exec(t);
    if (m && m[1] in NUMBERS && Number(m[2]) > 0 && Number(m[2]) <= 0xffff) {
      return arrayField(m[1] as NumberField, Number(m[2]));
    }
  }
  throw new ValueError(
    `schema field '${name}': unknown type ${JSON.stringify(t)} (one of i8 u8 i16 u16 i32 u32 ` +
      `f32 f64 i64 u64 bool string bytes, or a fixed array such as "f64[3]")`,
  );
}

// ---------------------------------------------------------------------------------------------

/**
 * A compiled item schema: writes items of type `T` field by field and reads them back. Make one
 * with {@link schema} (which infers `T`) or {@link compileSchema}.
 *
 * @example
 * ```ts
 * import { schema } from "jsr:@denomp/multiprocessing";
 * const s = schema({ i: "i32", tag: "string" });
 * const bytes = s.encode({ i: 7, tag: "seven" });
 * console.assert(s.decode(bytes).tag === "seven");
 * ```
 */
export class Schema<T = unknown> {
  /** The field types, in the order they are written. */
  readonly spec: SchemaSpec;
  /** The schema as JSON (what travels in shared memory). */
  readonly text: string;
  readonly #names: string[];
  readonly #fields: Field[];
  /** Writes a record's fields in order; the index of the first that does not fit, else -1. */
  readonly #write: (rec: Record<string, unknown>, o: Out) => number;
  /** Writes a batch in one loop (see `batchWriter`). */
  readonly #writeMany: WriteMany;
  readonly #out = new Out();
  /** Only for type inference: never set. */
  declare readonly __item?: T;

  /** Compiles `spec` (a `ValueError` names a field of unknown type). */
  constructor(spec: SchemaSpec) {
    if (typeof spec !== "object" || spec === null || Array.isArray(spec)) {
      throw new ValueError(`a schema is an object of field types: got ${describe(spec)}`);
    }
    this.#names = Object.keys(spec);
    if (!this.#names.length) throw new ValueError("a schema needs at least one field");
    if (this.#names.includes("__proto__")) {
      throw new ValueError("schema field '__proto__': not a name a record can have");
    }
    const fields = this.#fields = this.#names.map((n) => fieldOf(n, spec[n]));
    this.#write = writer(this.#names, fields.map((f) => f.put));
    this.decodeAt = reader(spec, this.#names, fields.map((f) => f.get), (len) => {
      throw new SerializationError(
        "item",
        `a record of ${len} bytes does not match the schema ${this.text}`,
      );
    }) as (data: Uint8Array, at: number, len: number) => T;
    this.#writeMany = batchWriter(spec, this.#names, fields.map((f) => f.put));
    this.spec = Object.freeze(Object.fromEntries(this.#names.map((n) => [n, spec[n]])));
    this.text = JSON.stringify(this.spec);
  }

  /** Writes one record at `o.pos` (no length prefix); `path` names the item in errors. */
  #put(item: unknown, o: Out, path: string, k = -1): void {
    if (typeof item !== "object" || item === null) refuse(pathOf(path, k), "an object", item);
    const names = this.#names, rec = item as Record<string, unknown>;
    let own = 0;
    for (const _ in rec) own++;
    if (own !== names.length) this.#extra(rec, pathOf(path, k));
    const f = this.#write(rec, o);
    if (f >= 0) refuse(`${pathOf(path, k)}.${names[f]}`, this.#fields[f].what, rec[names[f]]);
  }

  /** An item with fields the schema lacks (they would be lost): names the first. */
  #extra(rec: Record<string, unknown>, path: string): void {
    for (const k in rec) {
      if (!(k in this.spec)) {
        throw new SerializationError(`${path}.${k}`, "not a field of the queue's schema");
      }
    }
  }

  /**
   * Encodes one item; the bytes are valid until the next encode of this schema (copy what you
   * keep). Throws `SerializationError` naming the field that does not fit, e.g. `item.i`.
   */
  encode(item: T, path = "item"): Uint8Array {
    const o = this.#out;
    o.pos = 0;
    this.#put(item, o, path);
    return o.u8.subarray(0, o.pos);
  }

  /**
   * Encodes `items` as a run of records, each a `u32` length then its bytes, padded to 4 (see
   * the module doc); `starts[k]` is where record `k` begins. Valid until the next encode. Every
   * item is checked before anything is returned: one that does not fit refuses the whole batch
   * (`SerializationError` naming it, e.g. `items[3].tag`). `maxRecord` bounds a record's bytes.
   */
  encodeMany(items: readonly T[], maxRecord: number): { bytes: Uint8Array; starts: number[] } {
    if (!Array.isArray(items)) refuse("items", "an array of items", items);
    const o = this.#out, starts = new Array<number>(items.length);
    o.pos = 0;
    const bad = this.#writeMany(items, o, starts, maxRecord);
    if (bad >= 0) this.#refuse(items[bad], bad, maxRecord);
    return { bytes: o.u8.subarray(0, o.pos), starts };
  }

  /** Item `k` of a batch did not fit: encodes it alone, which throws the error that says why. */
  #refuse(item: unknown, k: number, max: number): never {
    const o = this.#out;
    o.pos = 0;
    this.#put(item, o, "items", k);
    if (o.pos > max) this.#tooBig(`items[${k}]`, o.pos, max);
    throw new SerializationError(`items[${k}]`, `does not match the schema ${this.text}`);
  }

  #tooBig(path: string, len: number, max: number): never {
    throw new SerializationError(
      path,
      `encodes to ${len} bytes: a typed queue item must fit in one frame (at most ${max} bytes)`,
    );
  }

  /** Checks that one encoded item fits in one frame (see {@link Schema.encodeMany}). */
  checkSize(bytes: Uint8Array, max: number, path = "item"): void {
    if (bytes.length > max) this.#tooBig(path, bytes.length, max);
  }

  /** Reads one item from `payload` (a record without its length prefix; may view shared memory). */
  decode(payload: Uint8Array): T {
    return this.decodeAt(payload, 0, payload.length);
  }

  /**
   * Reads one item from the `len` bytes at `data[at]`: {@link Schema.decode} without a view per
   * item (a reader taking a batch out of a ring passes the ring's data area). Bound: pass it on.
   */
  readonly decodeAt: (data: Uint8Array, at: number, len: number) => T;
}

/** The DataView accessor of each number type (`get`/`set` + this). */
const ACCESSOR: Record<NumberField, string> = {
  i8: "Int8",
  u8: "Uint8",
  i16: "Int16",
  u16: "Uint16",
  i32: "Int32",
  u32: "Uint32",
  f32: "Float32",
  f64: "Float64",
};

/** The number type of a field written inline by the generated code, else null. */
const numberType = (t: FieldType): NumberField | null => t in NUMBERS ? t as NumberField : null;

/** Reads one item from the `len` bytes at `data[at]` (see `Schema.decodeAt`). */
type ReadAt = (data: Uint8Array, at: number, len: number) => unknown;

/**
 * A function that reads one record into an object literal of the schema's shape: one hidden
 * class from the start, where adding keys one by one to `{}` would go through a chain of them
 * per item. Numbers and ASCII strings up to {@link TINY} bytes are read inline, other fields by
 * their {@link Field.get}: one call per record, where a call per field through closures (and one
 * more to a reader behind `decodeAt`) was what a fresh worker paid for most of a 200,000-item
 * stream, run before V8 has optimized anything. It keeps views of the last buffer read from (see
 * {@link inOf}), checked per call against `data`, not per field. Generated once per schema;
 * names enter it only as JSON strings.
 */
function reader(
  spec: SchemaSpec,
  names: string[],
  gets: Get[],
  mismatch: (len: number) => never,
): ReadAt {
  const lines = names.map((n, f) => {
    const t = numberType(spec[n]);
    if (t) return `const f${f} = dv.get${ACCESSOR[t]}(p, true); p += ${NUMBERS[t].size};`;
    if (spec[n] === "string") {
      return `let f${f} = null; { const len = dv.getUint32(p, true); ` +
        `if (len <= ${TINY}) f${f} = ascii(u8, p + 4, len); ` +
        `if (f${f} === null) { i.pos = p; f${f} = g[${f}](i); p = i.pos; } else p += 4 + len; }`;
    }
    return `i.pos = p; const f${f} = g[${f}](i); p = i.pos;`;
  });
  const obj = names.map((n, f) => `${JSON.stringify(n)}: f${f}`).join(", ");
  return new Function(
    "g",
    "ascii",
    "inOf",
    "mismatch",
    `let i = inOf(new Uint8Array(0)); return function readRecord(data, at, len) { ` +
      // The views are kept for the `data` last seen with another buffer (a ring's data area):
      // another `data` of the same buffer (a blocking get's view of one record) is only read
      // at its offset, so the batch path, back to the area, finds its views unchanged. When
      // `data` changing on the same buffer switched the kept views, each queue's first wait
      // (a get between two batches) deoptimized the batch loop this is inlined in, and its
      // recompile (`--trace-deopt`). Comparing only `data`, not buffers, per item: 29 against
      // 47 ns per W2 record. The heap may have grown past the views.
      `let b = i.base; if (i.src !== data) { if (i.u8.buffer !== data.buffer) i = inOf(data); ` +
      `b = data.byteOffset; } ` +
      `const start = b + at; if (start + len > i.u8.length) i = inOf(data); ` +
      `const u8 = i.u8, dv = i.dv; let p = start; ${lines.join(" ")} ` +
      `if (p !== start + len) mismatch(len); return { ${obj} }; };`,
  )(gets, asciiShort, inOf, mismatch) as ReadAt;
}

/** Writes a batch's records (see {@link batchWriter}); the index of the first refused, else -1. */
type WriteMany = (items: readonly unknown[], o: Out, starts: number[], max: number) => number;

/**
 * A function that writes a whole batch (see `Schema.encodeMany`) in one loop: each item's
 * shape checked, numbers and strings written inline (ASCII byte by byte, else `encodeInto`),
 * other fields by their {@link Field.put}. It only finds the first item that does not fit (or
 * encodes to more than `max` bytes) and returns its index: `encodeMany` then encodes that item
 * the slow way, which says why. One function with its loop is what V8 compiles first (on-stack
 * replacement), where a call per field through closures stays slow for the first ~100,000 items
 * of a fresh worker.
 */
function batchWriter(spec: SchemaSpec, names: string[], puts: Put[]): WriteMany {
  const v = (f: number) => `v${f}`;
  /** The bytes the inline fields from `f` on may take, plus 3 of padding. */
  const need = (f: number) =>
    names.slice(f).map((n, g) => {
      const t = numberType(spec[n]);
      return t ? `${NUMBERS[t].size}` : spec[n] === "string" ? `(4 + 3 * ${v(f + g)}.length)` : "0";
    }).concat("3").join(" + ");
  const loads = names.map((n, f) => `${v(f)} = rec[${JSON.stringify(n)}]`).join(", ");
  const checks = names.map((n, f) => {
    const t = numberType(spec[n]), x = v(f);
    if (spec[n] === "string") return `if (typeof ${x} !== "string") return k;`;
    if (!t) return "";
    const { min, max, int } = NUMBERS[t];
    if (!int) return `if (typeof ${x} !== "number") return k;`;
    const whole = t === "u32" ? `(${x} >>> 0) !== ${x}` : `(${x} | 0) !== ${x}`;
    const range = t === "i32" || t === "u32" ? "" : ` || ${x} < ${min} || ${x} > ${max}`;
    return `if (typeof ${x} !== "number" || ${whole}${range}) return k;`;
  });
  const writes = names.map((n, f) => {
    const t = numberType(spec[n]), x = v(f);
    if (t) return `dv.set${ACCESSOR[t]}(p, ${x}, true); p += ${NUMBERS[t].size};`;
    if (spec[n] === "string") {
      return `{ const m = ${x}.length, s = p + 4; let j = 0; ` +
        `for (; j < m; j++) { const c = ${x}.charCodeAt(j); if (c >= 0x80) break; u8[s + j] = c; } ` +
        `const len = j === m ? m : utf8.encodeInto(${x}, u8.subarray(s)).written; ` +
        `dv.setUint32(p, len, true); p = s + len; }`;
    }
    return `o.pos = p; if (!P[${f}](${x}, o)) return k; p = o.pos; ` +
      `o.need(${need(f + 1)}); u8 = o.u8; dv = o.dv;`;
  });
  return new Function(
    "P",
    "utf8",
    `return function writeBatch(items, o, starts, max) { for (let k = 0; k < items.length; k++) { ` +
      `const rec = items[k]; if (typeof rec !== "object" || rec === null) return k; ` +
      `let own = 0; for (const _ in rec) own++; if (own !== ${names.length}) return k; ` +
      `const ${loads}; ${checks.join(" ")} ` +
      `const at = o.pos; o.need(4 + ${need(0)}); let u8 = o.u8, dv = o.dv, p = at + 4; ` +
      `${writes.join(" ")} ` +
      `const len = p - at - 4; if (len > max) return k; dv.setUint32(at, len, true); ` +
      `starts[k] = at; o.pos = (p + 3) & ~3; } return -1; };`,
  )(puts, utf8) as WriteMany;
}

/**
 * A function that writes the fields in order with a named load each (`rec["i"]`: one shape at
 * each site, where `rec[names[f]]` in a loop is a megamorphic keyed load). Returns the index of
 * the first field that does not fit, else -1.
 */
function writer(names: string[], puts: Put[]): (rec: Record<string, unknown>, o: Out) => number {
  const body = names.map((n, f) => `if (!p[${f}](rec[${JSON.stringify(n)}], o)) return ${f};`);
  return new Function("p", `return (rec, o) => { ${body.join(" ")} return -1; };`)(puts) as (
    rec: Record<string, unknown>,
    o: Out,
  ) => number;
}

const compiled = new Map<string, Schema<unknown>>();

/**
 * The compiled form of `spec`: a {@link Schema} as is, else compiled (once per process for each
 * distinct schema text).
 *
 * @example
 * ```ts
 * import { compileSchema } from "jsr:@denomp/multiprocessing";
 * console.assert(compileSchema({ x: "f64" }) === compileSchema('{"x":"f64"}'));
 * ```
 */
export function compileSchema<T = unknown>(spec: Schema<T> | SchemaSpec | string): Schema<T> {
  if (spec instanceof Schema) return spec;
  const text = typeof spec === "string" ? spec : JSON.stringify(spec);
  let s = compiled.get(text);
  if (!s) {
    s = new Schema(typeof spec === "string" ? JSON.parse(spec) : spec);
    compiled.set(text, s);
    compiled.set(s.text, s);
  }
  return s as Schema<T>;
}

/**
 * Declares an item schema and infers the item type from it: `new Queue({ schema: schema({ i:
 * "i32", tag: "string" }) })` is a `Queue<{ i: number; tag: string }>`.
 *
 * @example
 * ```ts
 * import { schema } from "jsr:@denomp/multiprocessing";
 * const point = schema({ x: "f64", y: "f64", id: "u64", ok: "bool", v: "f32[3]" });
 * const p = point.decode(point.encode({ x: 1.5, y: -2, id: 9n, ok: true, v: [1, 2, 3] }));
 * console.assert(p.id === 9n && p.v[2] === 3);
 * ```
 */
export function schema<const S extends SchemaSpec>(spec: S): Schema<ItemOf<S>> {
  return compileSchema<ItemOf<S>>(spec);
}
