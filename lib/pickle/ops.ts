/**
 * The pickle wire format's building blocks, shared by `pickle.dumps` and `pickle.loads`
 * (`lib/pickle/pickle.ts`): the opcodes of protocols 0–5 (CPython's `Lib/pickle.py`), the UTF-8 codec
 * with Python's `surrogatepass` (a Python `str` may hold lone surrogates, and pickle writes them
 * as 3-byte sequences rather than failing), two's-complement integers of any size (`LONG1`,
 * `LONG4`), and the text forms of protocol 0 (`STRING`'s escapes, `UNICODE`'s
 * raw-unicode-escape).
 *
 * Every function that reads takes its bounds from its caller, which has already checked them
 * against the input: nothing here allocates more than the bytes it is given.
 *
 * @module
 */

// Opcodes, named as in Lib/pickle.py.
export const MARK = 0x28, STOP = 0x2e, POP = 0x30, POP_MARK = 0x31, DUP = 0x32;
export const FLOAT = 0x46, INT = 0x49, BININT = 0x4a, BININT1 = 0x4b, LONG = 0x4c;
export const BININT2 = 0x4d, NONE = 0x4e, PERSID = 0x50, BINPERSID = 0x51, REDUCE = 0x52;
export const STRING = 0x53, BINSTRING = 0x54, SHORT_BINSTRING = 0x55, UNICODE = 0x56;
export const BINUNICODE = 0x58, APPEND = 0x61, BUILD = 0x62, GLOBAL = 0x63, DICT = 0x64;
export const EMPTY_DICT = 0x7d, APPENDS = 0x65, GET = 0x67, BINGET = 0x68, INST = 0x69;
export const LONG_BINGET = 0x6a, LIST = 0x6c, EMPTY_LIST = 0x5d, OBJ = 0x6f, PUT = 0x70;
export const BINPUT = 0x71, LONG_BINPUT = 0x72, SETITEM = 0x73, TUPLE = 0x74;
export const EMPTY_TUPLE = 0x29, SETITEMS = 0x75, BINFLOAT = 0x47;
// Protocol 2.
export const PROTO = 0x80, NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83, EXT4 = 0x84;
export const TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89;
export const LONG1 = 0x8a, LONG4 = 0x8b;
// Protocol 3.
export const BINBYTES = 0x42, SHORT_BINBYTES = 0x43;
// Protocol 4.
export const SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e, EMPTY_SET = 0x8f;
export const ADDITEMS = 0x90, FROZENSET = 0x91, NEWOBJ_EX = 0x92, STACK_GLOBAL = 0x93;
export const MEMOIZE = 0x94, FRAME = 0x95;
// Protocol 5.
export const BYTEARRAY8 = 0x96, NEXT_BUFFER = 0x97, READONLY_BUFFER = 0x98;

/** Opcode names for error messages, e.g. `OPCODE_NAMES[0x52] === "REDUCE"`. */
export const OPCODE_NAMES: Readonly<Record<number, string>> = {
  [MARK]: "MARK",
  [STOP]: "STOP",
  [POP]: "POP",
  [POP_MARK]: "POP_MARK",
  [DUP]: "DUP",
  [FLOAT]: "FLOAT",
  [INT]: "INT",
  [BININT]: "BININT",
  [BININT1]: "BININT1",
  [LONG]: "LONG",
  [BININT2]: "BININT2",
  [NONE]: "NONE",
  [PERSID]: "PERSID",
  [BINPERSID]: "BINPERSID",
  [REDUCE]: "REDUCE",
  [STRING]: "STRING",
  [BINSTRING]: "BINSTRING",
  [SHORT_BINSTRING]: "SHORT_BINSTRING",
  [UNICODE]: "UNICODE",
  [BINUNICODE]: "BINUNICODE",
  [APPEND]: "APPEND",
  [BUILD]: "BUILD",
  [GLOBAL]: "GLOBAL",
  [DICT]: "DICT",
  [EMPTY_DICT]: "EMPTY_DICT",
  [APPENDS]: "APPENDS",
  [GET]: "GET",
  [BINGET]: "BINGET",
  [INST]: "INST",
  [LONG_BINGET]: "LONG_BINGET",
  [LIST]: "LIST",
  [EMPTY_LIST]: "EMPTY_LIST",
  [OBJ]: "OBJ",
  [PUT]: "PUT",
  [BINPUT]: "BINPUT",
  [LONG_BINPUT]: "LONG_BINPUT",
  [SETITEM]: "SETITEM",
  [TUPLE]: "TUPLE",
  [EMPTY_TUPLE]: "EMPTY_TUPLE",
  [SETITEMS]: "SETITEMS",
  [BINFLOAT]: "BINFLOAT",
  [PROTO]: "PROTO",
  [NEWOBJ]: "NEWOBJ",
  [EXT1]: "EXT1",
  [EXT2]: "EXT2",
  [EXT4]: "EXT4",
  [TUPLE1]: "TUPLE1",
  [TUPLE2]: "TUPLE2",
  [TUPLE3]: "TUPLE3",
  [NEWTRUE]: "NEWTRUE",
  [NEWFALSE]: "NEWFALSE",
  [LONG1]: "LONG1",
  [LONG4]: "LONG4",
  [BINBYTES]: "BINBYTES",
  [SHORT_BINBYTES]: "SHORT_BINBYTES",
  [SHORT_BINUNICODE]: "SHORT_BINUNICODE",
  [BINUNICODE8]: "BINUNICODE8",
  [BINBYTES8]: "BINBYTES8",
  [EMPTY_SET]: "EMPTY_SET",
  [ADDITEMS]: "ADDITEMS",
  [FROZENSET]: "FROZENSET",
  [NEWOBJ_EX]: "NEWOBJ_EX",
  [STACK_GLOBAL]: "STACK_GLOBAL",
  [MEMOIZE]: "MEMOIZE",
  [FRAME]: "FRAME",
  [BYTEARRAY8]: "BYTEARRAY8",
  [NEXT_BUFFER]: "NEXT_BUFFER",
  [READONLY_BUFFER]: "READONLY_BUFFER",
};

/** A malformed-input error raised by the helpers below; the loader adds the byte offset. */
export class PickleFormatError extends Error {}

/**
 * Writes `s` as UTF-8 into `out` at `pos` (room for `3 * s.length` bytes must be there) and
 * returns the new position. A lone surrogate becomes its 3-byte form, as Python's
 * `surrogatepass` writes it, so a Python `str` holding one round-trips unchanged.
 */
export function encodeUtf8Into(s: string, out: Uint8Array, pos: number): number {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[pos++] = c;
    } else if (c < 0x800) {
      out[pos++] = 0xc0 | (c >> 6);
      out[pos++] = 0x80 | (c & 0x3f);
    } else {
      if (c >= 0xd800 && c < 0xdc00 && i + 1 < n) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d < 0xe000) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
          out[pos++] = 0xf0 | (c >> 18);
          out[pos++] = 0x80 | ((c >> 12) & 0x3f);
          out[pos++] = 0x80 | ((c >> 6) & 0x3f);
          out[pos++] = 0x80 | (c & 0x3f);
          continue;
        }
      }
      out[pos++] = 0xe0 | (c >> 12);
      out[pos++] = 0x80 | ((c >> 6) & 0x3f);
      out[pos++] = 0x80 | (c & 0x3f);
    }
  }
  return pos;
}

const CACHE_SIZE = 4096;
const cache: (string | undefined)[] = new Array(CACHE_SIZE);
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Reads `data[start, end)` as UTF-8 with `surrogatepass`: strict otherwise (overlong forms,
 * code points past U+10FFFF and truncated sequences are errors, as in CPython).
 */
export function decodeUtf8(data: Uint8Array, start: number, end: number): string {
  const n = end - start;
  if (n <= 16) {
    // Short strings (dict keys above all): looked up in a small cache by a hash of their bytes,
    // so that a key read again is the same (already internalized) string, which makes storing
    // it as a property much cheaper than a fresh string would.
    let h = n;
    for (let i = start; i < end; i++) {
      const c = data[i];
      if (c >= 0x80) return decodeSlow(data, start, end);
      h = Math.imul(h ^ c, 0x01000193);
    }
    const slot = (h >>> 0) & (CACHE_SIZE - 1);
    const hit = cache[slot];
    if (hit !== undefined && hit.length === n) {
      let i = 0;
      while (i < n && hit.charCodeAt(i) === data[start + i]) i++;
      if (i === n) return hit;
    }
    const s = n === 1
      ? String.fromCharCode(data[start])
      : String.fromCharCode.apply(null, data.subarray(start, end) as unknown as number[]);
    cache[slot] = s;
    return s;
  }
  if (n < 24) {
    let s = "";
    for (let i = start; i < end; i++) {
      const c = data[i];
      if (c >= 0x80) return decodeSlow(data, start, end);
      s += String.fromCharCode(c);
    }
    return s;
  }
  try {
    return utf8.decode(data.subarray(start, end));
  } catch {
    return decodeSlow(data, start, end);
  }
}

function decodeSlow(data: Uint8Array, start: number, end: number): string {
  const units: number[] = [];
  let s = "";
  let i = start;
  const bad = () => {
    throw new PickleFormatError(`invalid UTF-8 at string byte ${i - start}`);
  };
  const cont = (k: number) => {
    if (k >= end || (data[k] & 0xc0) !== 0x80) bad();
    return data[k] & 0x3f;
  };
  while (i < end) {
    const b = data[i];
    let c: number;
    if (b < 0x80) {
      c = b;
      i += 1;
    } else if (b >= 0xc2 && b < 0xe0) {
      c = ((b & 0x1f) << 6) | cont(i + 1);
      i += 2;
    } else if (b >= 0xe0 && b < 0xf0) {
      c = ((b & 0x0f) << 12) | (cont(i + 1) << 6) | cont(i + 2);
      if (c < 0x800) bad(); // overlong; surrogates (ED A0..BF) pass, as with surrogatepass
      i += 3;
    } else if (b >= 0xf0 && b < 0xf5) {
      c = ((b & 0x07) << 18) | (cont(i + 1) << 12) | (cont(i + 2) << 6) | cont(i + 3);
      if (c < 0x10000 || c > 0x10ffff) bad();
      i += 4;
      c -= 0x10000;
      units.push(0xd800 + (c >> 10));
      c = 0xdc00 + (c & 0x3ff);
    } else {
      bad();
      c = 0;
    }
    units.push(c);
    if (units.length > 4096) {
      s += String.fromCharCode(...units);
      units.length = 0;
    }
  }
  return s + String.fromCharCode(...units);
}

/** `data[start, end)` as Latin-1 (one char per byte). */
export function decodeLatin1(data: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i += 4096) {
    s += String.fromCharCode(...data.subarray(i, Math.min(end, i + 4096)));
  }
  return s;
}

/** Reads a little-endian two's-complement integer (`LONG1`/`LONG4`): a number when safe. */
export function decodeLong(data: Uint8Array, start: number, end: number): number | bigint {
  const n = end - start;
  if (n === 0) return 0;
  if (n <= 6) {
    // At most 48 bits: exact in a double.
    let v = 0;
    for (let i = end - 1; i >= start; i--) v = v * 256 + data[i];
    return data[end - 1] & 0x80 ? v - 2 ** (8 * n) : v;
  }
  let hex = "";
  for (let i = end - 1; i >= start; i--) hex += HEX[data[i]];
  let v = BigInt("0x" + hex);
  if (data[end - 1] & 0x80) v -= 1n << BigInt(8 * n);
  return narrow(v);
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** A `bigint` as a number when it is a safe integer (the int ↔ number rule). */
export function narrow(v: bigint): number | bigint {
  return v >= -MAX_SAFE && v <= MAX_SAFE ? Number(v) : v;
}
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * The `LONG1`/`LONG4` bytes of `x`: little-endian two's complement, as short as Python's
 * `encode_long` makes them (so our pickles match CPython's byte for byte).
 */
export function encodeLong(x: bigint): Uint8Array {
  if (x === 0n) return new Uint8Array(0);
  const neg = x < 0n;
  const bitLength = (neg ? -x : x).toString(2).length;
  let nbytes = (bitLength >> 3) + 1;
  const v = neg ? (1n << BigInt(nbytes * 8)) + x : x;
  const hex = v.toString(16).padStart(nbytes * 2, "0");
  if (neg && nbytes > 1 && hex.startsWith("ff") && parseInt(hex[2], 16) >= 8) nbytes--;
  const out = new Uint8Array(nbytes);
  for (let i = 0; i < nbytes; i++) {
    const j = hex.length - 2 * (i + 1);
    out[i] = parseInt(hex.slice(j, j + 2), 16);
  }
  return out;
}

/** Python's limit on decimal digits in an int's text (`sys.int_info.str_digits_check_threshold`). */
const MAX_DIGITS = 4300;

/** The argument of protocol 0's `INT`/`LONG`: decimal text, an optional sign, `L` suffix. */
export function parseIntText(text: string): number | bigint {
  const m = /^\s*([+-]?)(\d+)L?\s*$/.exec(text);
  if (m === null) throw new PickleFormatError(`not an integer: ${JSON.stringify(text)}`);
  if (m[2].length > MAX_DIGITS) {
    throw new PickleFormatError(`integer text has ${m[2].length} digits, more than ${MAX_DIGITS}`);
  }
  return narrow(BigInt(m[1] + m[2]));
}

/** The argument of protocol 0's `FLOAT`: Python's `repr` of a float (`nan`, `inf` included). */
export function parseFloatText(text: string): number {
  const t = text.trim().toLowerCase();
  const sign = t.startsWith("-") ? -1 : 1;
  const body = t.replace(/^[+-]/, "");
  if (body === "nan") return NaN;
  if (body === "inf" || body === "infinity") return sign * Infinity;
  if (!/^(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(body)) {
    throw new PickleFormatError(`not a float: ${JSON.stringify(text)}`);
  }
  return sign * Number(body);
}

/** Python's `codecs.escape_decode`, for protocol 0's quoted `STRING` argument. */
export function escapeDecode(data: Uint8Array, start: number, end: number): Uint8Array {
  const out = new Uint8Array(end - start);
  let n = 0;
  const simple: Record<number, number> = {
    0x5c: 0x5c,
    0x27: 0x27,
    0x22: 0x22,
    0x61: 7,
    0x62: 8,
    0x66: 12,
    0x6e: 10,
    0x72: 13,
    0x74: 9,
    0x76: 11,
  };
  for (let i = start; i < end; i++) {
    const b = data[i];
    if (b !== 0x5c || i + 1 >= end) {
      out[n++] = b;
      continue;
    }
    const e = data[++i];
    if (e in simple) out[n++] = simple[e];
    else if (e === 0x0a) continue; // backslash-newline: a line continuation
    else if (e === 0x78) {
      const hex = String.fromCharCode(data[i + 1] ?? 0, data[i + 2] ?? 0);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new PickleFormatError("invalid \\x escape");
      out[n++] = parseInt(hex, 16);
      i += 2;
    } else if (e >= 0x30 && e <= 0x37) {
      let v = e - 0x30;
      for (let k = 0; k < 2 && i + 1 < end && data[i + 1] >= 0x30 && data[i + 1] <= 0x37; k++) {
        v = v * 8 + data[++i] - 0x30;
      }
      out[n++] = v & 0xff;
    } else {
      out[n++] = 0x5c;
      out[n++] = e;
    }
  }
  return out.subarray(0, n);
}

/** Python's `raw-unicode-escape` decoding, for protocol 0's `UNICODE` argument. */
export function rawUnicodeEscapeDecode(data: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i++) {
    const b = data[i];
    if (b !== 0x5c) {
      s += String.fromCharCode(b);
      continue;
    }
    // Only an odd run of backslashes before `u`/`U` starts an escape.
    let run = 1;
    while (i + run < end && data[i + run] === 0x5c) run++;
    const next = data[i + run];
    if (run % 2 === 1 && (next === 0x75 || next === 0x55) && i + run < end) {
      s += "\\".repeat(run - 1);
      const digits = next === 0x75 ? 4 : 8;
      const at = i + run + 1;
      const hex = at + digits <= end ? decodeLatin1(data, at, at + digits) : "";
      if (!/^[0-9a-fA-F]+$/.test(hex)) {
        throw new PickleFormatError("truncated \\uXXXX escape in UNICODE");
      }
      const cp = parseInt(hex, 16);
      if (cp > 0x10ffff) throw new PickleFormatError(`\\U escape out of range: ${hex}`);
      s += String.fromCodePoint(cp);
      i = at + digits - 1;
    } else {
      s += "\\".repeat(run);
      i += run - 1;
    }
  }
  return s;
}
