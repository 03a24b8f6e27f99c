/**
 * At-least-once for `JoinableQueue`: a consumer worker keeps a copy of each item it got in its
 * own small ring (its "held" items, {@link Held}) until `taskDone()`; when it dies, whoever next
 * looks at the queue puts those items back for the next consumer ({@link Holders}, the table of
 * who holds what in the queue's header), so `join()` does not wait for a dead consumer. The main
 * thread never dies and keeps no copy.
 *
 * @module
 */

import { alloc, heap, isAlive, release } from "../core/heap.ts";
import type { Ring, SendOptions } from "../core/ring.ts";
import { HOLD_ENTRIES, HOLD_ENTRY, HOLD_TABLE, HOLDERS, PUTS, TASKS_DONE } from "./layout.ts";

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

/** Test hooks: `holdSpin` runs in `hold` once a big item's copy is taken, before it is kept. */
export const __testHooks: { holdSpin: (() => void) | null } = { holdSpin: null };

/**
 * How long a holder is seen dead before its items are put back (ms). Deno stops a terminated
 * worker only at its next interrupt check, so a consumer terminated in the middle of a `get`
 * runs on for a moment while the others already see it dead: reaped at once, it then kept its
 * copy of the item it was taking where nobody looks any more, and the item was lost (the soak
 * test of queues_midmessage_test.ts: 3 of 120 items in about one run in eight). A grace period
 * covers a zombie finishing a get (a 1 MiB copy is well under a millisecond); it does not cover a
 * zombie stuck in synchronous code inside one (see the branch soak-zombie for a full fence).
 */
const REAP_GRACE_MS = 200;

/**
 * The holders table of a FIFO `JoinableQueue` (see `layout.ts`): per consumer process, its slot
 * (negated once dead and being reaped), its held items' block, the slot of the process putting
 * them back, and whether their tasks were counted done. One per handle: it keeps this process's
 * {@link Held} items once it got one.
 */
export class Holders {
  /** The queue's header (see `Shared.i32`). */
  readonly #i32: Int32Array;
  readonly #ring: Ring;
  readonly #sendOptions: SendOptions;
  /** This handle's held items: undefined until the first get, null when not keeping copies. */
  #held: Held | null | undefined;
  /** Dead holders this handle has seen, by entry and slot: since when (see REAP_GRACE_MS). */
  readonly #deadSince = new Map<number, number>();

  constructor(i32: Int32Array, ring: Ring, sendOptions: SendOptions) {
    this.#i32 = i32;
    this.#ring = ring;
    this.#sendOptions = sendOptions;
  }

  /** Keeps a copy of an item this process got until its `taskDone`. */
  hold(payload: Uint8Array): void {
    const held = this.#held === undefined ? (this.#held = this.#register()) : this.#held;
    if (!held) return;
    if (payload.length <= HELD_INLINE) {
      held.push(payload); // false when full (a consumer that never calls taskDone): no copy
      return;
    }
    if (!held.fits(12)) return;
    const blk = alloc(payload.length, "queue item"); // too big to keep inline: a block
    heap().u8.set(payload, blk);
    __testHooks.holdSpin?.();
    const ptr = new Uint8Array(new Uint32Array([HELD_PTR, blk, payload.length]).buffer);
    if (!held.push(ptr)) release(blk); // full (thousands held): this one goes uncopied
  }

  /** Claims an entry of the holders table for this process, with its held items' block. */
  #register(): Held | null {
    const i32 = this.#i32, me = heap().slot;
    for (let i = 0; i < HOLD_ENTRIES; i++) {
      const e = HOLD_TABLE + HOLD_ENTRY * i;
      if (Atomics.compareExchange(i32, e, 0, me) !== 0) continue;
      Atomics.add(i32, HOLDERS, 1);
      const off = alloc(HELD_BYTES, "queue"); // if this throws, the entry is reaped when we die
      Atomics.store(i32, e + 1, off);
      return new Held(off);
    }
    return null; // more consumers than entries: this one keeps no copies (as in Python)
  }

  /** `taskDone` of this process: the oldest item it holds is done with. */
  drop(): void {
    const blk = this.#held?.drop();
    if (blk) release(blk);
  }

  /**
   * Puts back the items that consumers dead for {@link REAP_GRACE_MS} held; true when one
   * is dead for less and must be looked at again. Each dead entry is claimed by one
   * reaper at a time, and freed only once every item it put back is written into the ring: a
   * reaper that dies first leaves the entry to the next one (who may put some items back twice:
   * at-least-once). Counts: each item put back is a put; the dead consumer's tasks are done
   * once (the `ACCOUNTED` word).
   */
  reap(): boolean {
    const i32 = this.#i32, me = heap().slot;
    let again = false;
    for (let i = 0; i < HOLD_ENTRIES; i++) {
      const e = HOLD_TABLE + HOLD_ENTRY * i, slot = Atomics.load(i32, e);
      if (slot === 0) continue;
      if (slot > 0) {
        if (isAlive(slot)) continue;
        if (!this.#deadLongEnough(e, slot)) {
          again = true; // a zombie may still be keeping a copy: look again soon
          continue;
        }
        if (Atomics.compareExchange(i32, e, slot, -slot) !== slot) continue;
      }
      const reaper = Atomics.load(i32, e + 2); // 0 counts as alive: its claimer is on its way
      if (reaper === me || (reaper && isAlive(reaper))) continue;
      if (Atomics.compareExchange(i32, e + 2, reaper, me) !== reaper) continue;
      this.#putBack(e);
    }
    return again;
  }

  /** Whether this handle has seen the holder `slot` of entry `e` dead for {@link REAP_GRACE_MS}. */
  #deadLongEnough(e: number, slot: number): boolean {
    const now = performance.now(), key = e * 65536 + slot, seen = this.#deadSince.get(key);
    if (seen === undefined) this.#deadSince.set(key, now);
    else if (now - seen >= REAP_GRACE_MS) {
      this.#deadSince.delete(key);
      return true;
    }
    return false;
  }

  #putBack(e: number): void {
    const i32 = this.#i32, off = Atomics.load(i32, e + 1);
    const items: Uint8Array[] = [];
    if (off) new Held(off).forEach((b) => items.push(copyHeld(b)));
    Atomics.add(i32, PUTS, items.length); // before TASKS_DONE: `join` never sees too few
    if (Atomics.compareExchange(i32, e + 3, 0, 1) === 0) {
      Atomics.add(i32, TASKS_DONE, items.length);
    }
    const sent = items.map((b) => this.#ring.post(b, this.#sendOptions));
    void Promise.all(sent).then(() => {
      if (Atomics.load(i32, e + 2) !== heap().slot) return; // taken over: not ours to free
      if (off) {
        new Held(off).forEach(dropBlock);
        release(off);
      }
      for (const w of [1, 2, 3]) Atomics.store(i32, e + w, 0);
      Atomics.store(i32, e, 0);
      Atomics.sub(i32, HOLDERS, 1);
    });
  }

  /** Frees every consumer's held items of the queue at `off` (its last handle is gone). */
  static free(off: number): void {
    const i32 = heap().i32, q = off >> 2;
    for (let i = 0; i < HOLD_ENTRIES; i++) {
      const held = i32[q + HOLD_TABLE + HOLD_ENTRY * i + 1];
      if (held) {
        new Held(held).forEach(dropBlock);
        release(held);
      }
    }
  }
}
