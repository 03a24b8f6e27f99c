/**
 * The held items of a `JoinableQueue` consumer: the copies a consumer worker keeps of the items
 * it got until their `taskDone()`, so that when it dies they go back to the queue for the next
 * consumer (at-least-once; see the holders table in `layout.ts` and `Shared` for who puts them
 * back).
 *
 * @module
 */

import { heap, release } from "../core/heap.ts";

/** Bytes of a consumer's held items: small items inline, larger ones as a pointer to a block. */
export const HELD_BYTES = 8 << 10;
const HELD_HEAD = 0, HELD_TAIL = 1, HELD_USED = 2, HELD_DATA = 16;
const HELD_CAP = HELD_BYTES - HELD_DATA;
/** Items larger than this are kept in a block of their own. */
export const HELD_INLINE = HELD_CAP >> 2;
/**
 * First word of a held message that points to a block (then offset, length). No encoded item
 * starts so: the codec's first byte is a small type tag.
 */
export const HELD_PTR = 0xffffffff;

/** A held message that points to a block: its offset, else 0. */
export function heldBlock(b: Uint8Array): number {
  const dv = heap().dv; // `b` views the heap, so its byteOffset is a heap offset
  return b.length === 12 && dv.getUint32(b.byteOffset, true) === HELD_PTR
    ? dv.getUint32(b.byteOffset + 4, true)
    : 0;
}

/**
 * A consumer's copies of the items it got and has not marked done, oldest first: a byte ring in
 * a heap block of its own. No lock: only its owner touches it while alive (a zombie meets its
 * fence in `taskDone` first), and one reaper after its death. Records are an int32 length and
 * the bytes padded to 4; a length of -1 (or no room for one) means "go on at 0". `HEAD`,
 * `TAIL` and `USED` are stored last, so a record is in or out as a whole.
 */
export class Held {
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  /** The data area as words: records start 4-aligned, so their lengths are words. */
  readonly #d32: Int32Array;

  constructor(off: number) {
    const sab = heap().sab;
    this.#i32 = new Int32Array(sab, off, 4);
    this.#u8 = new Uint8Array(sab, off + HELD_DATA, HELD_CAP);
    this.#d32 = new Int32Array(sab, off + HELD_DATA, HELD_CAP >> 2);
  }

  /** True when a record of `n` bytes would fit now. */
  fits(n: number): boolean {
    const need = 4 + ((n + 3) & ~3), tail = this.#i32[HELD_TAIL], used = this.#i32[HELD_USED];
    return tail + need > HELD_CAP
      ? used + (HELD_CAP - tail) + need <= HELD_CAP
      : used + need <= HELD_CAP;
  }

  /** Appends a copy of `bytes`; false (nothing kept) when too big or full. */
  push(bytes: Uint8Array): boolean {
    const need = 4 + ((bytes.length + 3) & ~3);
    if (bytes.length > HELD_INLINE) return false;
    const i32 = this.#i32;
    let tail = i32[HELD_TAIL], used = i32[HELD_USED];
    if (tail + need > HELD_CAP) {
      if (used + (HELD_CAP - tail) + need > HELD_CAP) return false;
      if (HELD_CAP - tail >= 4) this.#d32[tail >> 2] = -1;
      used += HELD_CAP - tail;
      tail = 0;
    }
    if (used + need > HELD_CAP) return false;
    const n = bytes.length;
    this.#d32[tail >> 2] = n;
    if (n > 32) this.#u8.set(bytes, tail + 4);
    else for (let i = 0, u8 = this.#u8, at = tail + 4; i < n; i++) u8[at + i] = bytes[i]; // cheaper
    i32[HELD_USED] = used + need;
    Atomics.store(i32, HELD_TAIL, tail + need); // publishes the record (and USED) to a reaper
    return true;
  }

  /** Removes the oldest record, if any; returns the block it points to, else 0. */
  drop(): number {
    const at = this.#next();
    if (at < 0) return 0;
    const d32 = this.#d32, n = d32[at >> 2];
    const blk = n === 12 && d32[(at >> 2) + 1] === (HELD_PTR | 0) ? d32[(at >> 2) + 2] : 0;
    this.#remove(at, n);
    return blk;
  }

  /** Where the oldest record starts, or -1 when there is none. */
  #next(): number {
    const i32 = this.#i32, head = i32[HELD_HEAD], used = i32[HELD_USED];
    if (used === 0) return -1;
    if (HELD_CAP - head < 4 || this.#d32[head >> 2] === -1) {
      i32[HELD_USED] = used - (HELD_CAP - head);
      return 0;
    }
    return head;
  }

  #remove(at: number, n: number): void {
    const i32 = this.#i32, size = 4 + ((n + 3) & ~3);
    i32[HELD_USED] -= size;
    Atomics.store(i32, HELD_HEAD, at + size === HELD_CAP ? 0 : at + size);
  }

  /** Calls `fn` with a view of each record's bytes, oldest first, changing nothing. */
  forEach(fn: (b: Uint8Array) => void): void {
    const d32 = this.#d32;
    let head = this.#i32[HELD_HEAD], used = this.#i32[HELD_USED];
    while (used > 0) {
      if (HELD_CAP - head < 4 || d32[head >> 2] === -1) {
        used -= HELD_CAP - head;
        head = 0;
        continue;
      }
      const n = d32[head >> 2], size = 4 + ((n + 3) & ~3);
      fn(this.#u8.subarray(head + 4, head + 4 + n));
      used -= size;
      head = head + size === HELD_CAP ? 0 : head + size;
    }
  }
}

/** A copy of the item bytes of a held record (its block, if any, stays). */
export const copyHeld = (b: Uint8Array): Uint8Array => {
  const blk = heldBlock(b);
  return blk ? heap().u8.slice(blk, blk + heap().dv.getUint32(b.byteOffset + 8, true)) : b.slice();
};

/** Frees the block a held record points to, if any. */
export const dropBlock = (b: Uint8Array): void => {
  const blk = heldBlock(b);
  if (blk) release(blk);
};
