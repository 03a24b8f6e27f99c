/**
 * Order-preserving sort keys for `PriorityQueue`: an item's key is bytes that compare (byte by
 * byte) as Python compares the items.
 *
 * @module
 */

/** Sort keys longer than this are cut (ties beyond it go by arrival order). */
const MAX_KEY = 1024;

// Order-preserving sort keys for PriorityQueue: comparing two keys byte by byte orders the items
// as Python orders tuples — element by element, shorter first on a tie. Where Python would raise
// TypeError (values of kinds that do not compare), kinds rank None < numbers < strings < bytes
// < dates < arrays < anything else, and items that tie go out in arrival order.

const K_END = 0x00, K_NONE = 0x01, K_NUM = 0x10, K_STR = 0x20, K_BYTES = 0x28, K_DATE = 0x30;
const K_ARRAY = 0x40, K_OTHER = 0x7f;

class KeyWriter {
  buf = new Uint8Array(64);
  n = 0;
  #f64 = new Float64Array(1);
  #u8 = new Uint8Array(this.#f64.buffer);
  full = false;

  byte(b: number): void {
    if (this.n >= MAX_KEY) {
      this.full = true;
      return;
    }
    if (this.n === this.buf.length) {
      const next = new Uint8Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.n++] = b;
  }

  number(x: number): void {
    this.byte(K_NUM);
    if (Number.isNaN(x)) x = Infinity; // NaN last (Python leaves it unordered)
    this.#f64[0] = x === 0 ? 0 : x; // -0 equals 0
    const u = this.#u8, neg = u[7] & 0x80;
    // Big-endian IEEE bits; negatives inverted, positives with the sign bit set.
    for (let i = 7; i >= 0; i--) this.byte(neg ? ~u[i] & 0xff : i === 7 ? u[i] | 0x80 : u[i]);
  }

  value(v: unknown, depth: number): boolean {
    if (this.full) return false;
    if (v === null || v === undefined) return this.byte(K_NONE), true;
    switch (typeof v) {
      case "number":
        return this.number(v), true;
      case "boolean":
        return this.number(v ? 1 : 0), true;
      case "bigint":
        return this.number(Number(v)), true;
      case "string": {
        this.byte(K_STR);
        for (const ch of v) {
          const cp = ch.codePointAt(0)! + 1; // 0 terminates
          this.byte(cp >> 16);
          this.byte((cp >> 8) & 0xff);
          this.byte(cp & 0xff);
        }
        this.byte(0), this.byte(0), this.byte(0);
        return true;
      }
    }
    if (v instanceof Date) {
      this.byte(K_DATE);
      const t = v.getTime();
      this.number(t);
      return true;
    }
    if (v instanceof Uint8Array) {
      this.byte(K_BYTES);
      for (const b of v) {
        if (b === 0) this.byte(0), this.byte(0xff);
        else this.byte(b);
        if (this.full) return false;
      }
      this.byte(0), this.byte(0);
      return true;
    }
    if (Array.isArray(v) && depth < 32) {
      this.byte(K_ARRAY);
      for (const x of v) if (!this.value(x, depth + 1)) return false;
      this.byte(K_END);
      return true;
    }
    this.byte(K_OTHER); // nothing after this compares
    return false;
  }
}

/** The sort key of `item` (at most `MAX_KEY` bytes). */
export function sortKey(item: unknown): Uint8Array {
  const k = new KeyWriter();
  k.value(item, 0);
  return k.buf.subarray(0, k.n);
}
