/**
 * The pickle machine's state (`pickletools` calls it that): the input and the position in it,
 * the stack with its marks, and the memo — and the primitive steps every opcode is made of,
 * each checked before it acts: a length against the bytes left, a pop against the innermost
 * `MARK`, a memo key against what was stored. What the opcodes mean is `unpickler.ts`'s.
 *
 * @module
 */

import * as op from "./ops.ts";
import { fail, isDict } from "./globals.ts";

/** The pickle machine: input, stack, marks and memo, and the checked steps over them. */
export class PickleMachine {
  data: Uint8Array = new Uint8Array(0);
  encoding = "ascii";
  pos = 0;
  /** Start of the opcode being run, for error messages. */
  opAt = 0;
  stack: unknown[] = [];
  marks: number[] = [];
  /** Where the values after the innermost `MARK` start: nothing below it may be popped. */
  fence = 0;
  memo: unknown[] = [];
  /** The memo once a `PUT` skipped indices (Python's memo is a dict). */
  memoMap: Map<number, unknown> | null = null;
  /** Dicts handed out by GET/DUP: if one later becomes a Map, other references need fixing. */
  fetched: Set<object> | null = null;
  replaced: Map<object, Map<unknown, unknown>> | null = null;
  needsWalk = false;

  need(k: number): void {
    if (k > this.data.length - this.pos) {
      fail(`truncated: needs ${k} bytes, ${this.data.length - this.pos} left`);
    }
  }

  /** A length field: checked against what is left before anyone allocates for it. */
  len(bytes: 1 | 4 | 8, signed = false): number {
    this.need(bytes);
    const p = this.pos;
    let n: number;
    if (bytes === 1) n = this.data[p];
    else if (bytes === 4) n = signed ? i32(this.data, p) : u32(this.data, p);
    else {
      const big = BigInt(u32(this.data, p)) + (BigInt(u32(this.data, p + 4)) << 32n); // exact
      if (big > BigInt(this.data.length - p - 8)) {
        fail(`claims ${big} bytes, only ${this.data.length - p - 8} left`);
      }
      n = Number(big);
    }
    this.pos += bytes;
    if (n < 0) fail(`negative length ${n}`);
    if (n > this.data.length - this.pos) {
      fail(`claims ${n} bytes, only ${this.data.length - this.pos} left`);
    }
    return n;
  }

  line(): [number, number] {
    const end = this.data.indexOf(0x0a, this.pos);
    if (end < 0) fail("truncated: no end of line");
    const start = this.pos;
    this.pos = end + 1;
    return [start, end];
  }

  lineText(): string {
    const [s, e] = this.line();
    return op.decodeLatin1(this.data, s, e);
  }

  pop(): unknown {
    if (this.stack.length <= this.fence) fail("stack underflow");
    return this.stack.pop();
  }

  top(): unknown {
    if (this.stack.length <= this.fence) fail("stack underflow");
    return this.stack[this.stack.length - 1];
  }

  /** The value just below the values of a popped `MARK` at `k` (the list, dict or set). */
  below(k: number): unknown {
    if (k - 1 < this.fence) fail("stack underflow");
    return this.stack[k - 1];
  }

  popMark(): number {
    const k = this.marks.pop();
    if (k === undefined) fail("no MARK before it");
    this.fence = this.marks.length ? this.marks[this.marks.length - 1] : 0;
    return k;
  }

  /** The decimal memo key of protocol 0's `GET` and `PUT`. */
  memoKey(): number {
    const t = this.lineText();
    if (!/^\d{1,15}$/.test(t)) fail(`bad memo key ${JSON.stringify(t)}`);
    return Number(t);
  }

  memoGet(i: number): unknown {
    let v = this.memoMap ? this.memoMap.get(i) : this.memo[i];
    if (v === undefined) fail(`memo key ${i} was never stored`);
    if (this.replaced !== null) v = this.replaced.get(v as object) ?? v;
    if (isDict(v)) (this.fetched ??= new Set()).add(v);
    this.stack.push(v);
    return v;
  }

  memoPut(i: number): void {
    const v = this.top();
    if (!Number.isSafeInteger(i) || i < 0) fail(`bad memo key ${i}`);
    if (this.memoMap === null && i <= this.memo.length) {
      this.memo[i] = v;
      return;
    }
    this.memoMap ??= new Map(this.memo.map((x, k) => [k, x]));
    this.memoMap.set(i, v);
  }

  memoSize(): number {
    return this.memoMap ? this.memoMap.size : this.memo.length;
  }

  str(start: number, end: number): string {
    this.pos = end;
    return op.decodeUtf8(this.data, start, end);
  }

  /** A Python 2 `str`, read as the `encoding` option says. */
  str2(bytes: Uint8Array): string | Uint8Array {
    switch (this.encoding) {
      case "bytes":
        return bytes.slice();
      case "latin1":
        return op.decodeLatin1(bytes, 0, bytes.length);
      case "utf-8":
        return op.decodeUtf8(bytes, 0, bytes.length);
      default: {
        const i = bytes.findIndex((b) => b >= 0x80);
        if (i >= 0) {
          fail(
            `byte 0x${bytes[i].toString(16)} of a Python 2 str is not ASCII ` +
              `(pass { encoding: "latin1" | "utf-8" | "bytes" })`,
          );
        }
        return op.decodeLatin1(bytes, 0, bytes.length);
      }
    }
  }

  bytes(n: number): Uint8Array {
    const b = this.data.slice(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  /**
   * A dict got a key that is not a str: from now on it is a `Map`. Nothing is scanned here (a
   * pickle converting many dicts must not cost quadratic time): the memo and later `SETITEMS`
   * look the new `Map` up in `replaced`, and if the old object was handed out by `GET`/`DUP`
   * before, the result is walked once at `STOP` to replace it wherever it got to.
   */
  toMap(d: Record<string, unknown>): Map<unknown, unknown> {
    const m = new Map<unknown, unknown>(Object.entries(d));
    (this.replaced ??= new Map()).set(d, m);
    if (this.fetched?.has(d)) this.needsWalk = true;
    return m;
  }

  /** Replaces converted dicts inside the result (only when one was referenced before). */
  fixUp(root: unknown): unknown {
    const rep = this.replaced!;
    const swap = (v: unknown) => rep.get(v as object) ?? v;
    root = swap(root);
    const seen = new Set<unknown>([root]);
    const todo: unknown[] = [root];
    const visit = (v: unknown) => {
      if (typeof v === "object" && v !== null && !seen.has(v)) {
        seen.add(v);
        todo.push(v);
      }
    };
    while (todo.length) {
      const o = todo.pop();
      if (Array.isArray(o)) {
        for (let i = 0; i < o.length; i++) visit(o[i] = swap(o[i]));
      } else if (o instanceof Map) {
        for (const [k, v] of o) {
          if (rep.has(v as object)) o.set(k, swap(v));
          visit(k);
          visit(swap(v));
        }
      } else if (o instanceof Set) {
        for (const v of o) visit(v);
      } else if (isDict(o)) {
        for (const k of Object.keys(o)) visit(o[k] = swap(o[k]));
      }
    }
    return root;
  }
}

// Fixed-width fields read by hand: no DataView to make per call.
/** A little-endian signed 32-bit field at `p`. */
export const i32 = (d: Uint8Array, p: number): number =>
  d[p] | (d[p + 1] << 8) | (d[p + 2] << 16) | (d[p + 3] << 24);
/** A little-endian unsigned 32-bit field at `p`. */
export const u32 = (d: Uint8Array, p: number): number => i32(d, p) >>> 0;
