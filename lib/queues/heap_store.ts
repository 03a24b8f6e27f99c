/**
 * The store of a `LifoQueue` or `PriorityQueue`: each encoded item in its own heap block, and a
 * shared array of block offsets — a stack, or a binary heap ordered by the item's sort key (see
 * `sort_key.ts`) — under one robust lock in the queue's header. Every mutation records the
 * entries it moves first (`PENDING`, `POPPED`), so a process killed inside the lock leaves a
 * store the next one repairs (nothing lost, nothing duplicated).
 *
 * @module
 */

import {
  deadlineOf,
  LIVENESS_SLICE_MS,
  mutexAcquireRecovering,
  mutexAcquireSync,
  mutexLockWaits,
  mutexRelease,
  OWNER_DIED,
  remainingMs,
  runAsync,
  runSync,
  type Waits,
} from "../core/atomics.ts";
import { alloc, DEAD_STEP_GRACE_MS, heap, release } from "../core/heap.ts";
import { checkNotTerminated, EOF, TIMEOUT } from "../core/ring.ts";
import {
  ARR,
  GET_WAITERS,
  ITEM_HEADER,
  type Kind,
  LEN,
  LIFO,
  NEXT_SEQ,
  PENDING,
  POPPED,
  PRIO,
  SEQ,
  SLOCK,
} from "./layout.ts";
import { decodeItem } from "./items.ts";
import { sortKey } from "./sort_key.ts";
import type { Counter, Store } from "./store.ts";

/** Test hooks: `inPush` runs inside a push, the store lock held and `PENDING` written. */
export const __storeHooks: { inPush: (() => void) | null } = { inPush: null };

/** A LIFO or priority queue's items, in the heap (see the module doc). */
export class HeapStore implements Store {
  /** The queue's header (see `Shared.i32`). */
  readonly i32: Int32Array;
  readonly kind: Kind;
  readonly #counts: Counter;

  constructor(i32: Int32Array, kind: Kind, counts: Counter) {
    this.i32 = i32;
    this.kind = kind;
    this.#counts = counts;
  }

  #slots(): number {
    return Atomics.load(this.i32, ARR); // block: [capacity, slot 0, slot 1, ...]
  }

  #lockStoreSync(): void {
    const i32 = this.i32, idx = SLOCK;
    if (Atomics.compareExchange(i32, idx, 0, heap().slot) === 0) return;
    if (mutexAcquireSync(i32, idx, undefined, DEAD_STEP_GRACE_MS) === OWNER_DIED) this.#repair();
  }

  #lockStore(): void | Promise<void> {
    const i32 = this.i32, idx = SLOCK;
    if (Atomics.compareExchange(i32, idx, 0, heap().slot) === 0) return;
    return mutexAcquireRecovering(i32, idx, () => this.#repair(), DEAD_STEP_GRACE_MS);
  }

  #unlockStore(): void {
    // Only while we own it: a terminated-but-running worker's lock may have been taken over.
    const me = heap().slot, i32 = this.i32, idx = SLOCK;
    if (Atomics.compareExchange(i32, idx, me, 0) === me) return;
    mutexRelease(i32, idx, me);
  }

  /** Compares two item blocks by key (memcmp). */
  #cmp(a: number, b: number): number {
    const u8 = heap().u8, dv = heap().dv;
    const la = dv.getUint32(a, true), lb = dv.getUint32(b, true);
    const n = Math.min(la, lb);
    for (let i = 0; i < n; i++) {
      const d = u8[a + ITEM_HEADER + i] - u8[b + ITEM_HEADER + i];
      if (d) return d;
    }
    return la - lb;
  }

  /** Makes room for one more slot (store lock held). */
  #ensureSlot(len: number): number {
    const h32 = heap().i32;
    let arr = this.#slots();
    const cap = arr ? h32[arr >> 2] : 0;
    if (len + 1 <= cap) return arr;
    const ncap = Math.max(64, cap * 2);
    const next = alloc(4 + ncap * 4, "queue");
    h32[next >> 2] = ncap;
    if (arr) heap().u8.copyWithin(next + 4, arr + 4, arr + 4 + cap * 4);
    Atomics.store(this.i32, ARR, next); // the commit point: a crash before it leaks `next` only
    if (arr) release(arr);
    arr = next;
    return arr;
  }

  /** Pushes item block `item` (store lock held). */
  #push(item: number): void {
    checkNotTerminated(); // a terminated worker still running must not touch the store
    const i32 = this.i32, h32 = heap().i32;
    const len = i32[LEN];
    const s = (this.#ensureSlot(len) >> 2) + 1;
    Atomics.store(i32, PENDING, item); // written first: what a repair must not lose
    __storeHooks.inPush?.();
    if (this.kind === LIFO) {
      h32[s + len] = item;
    } else {
      let i = len;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (this.#cmp(h32[s + p], item) <= 0) break;
        h32[s + i] = h32[s + p];
        i = p;
      }
      h32[s + i] = item;
    }
    Atomics.store(i32, LEN, len + 1);
    Atomics.store(i32, PENDING, 0);
  }

  /** Pops the next item block (store lock held, not empty). */
  #pop(): number {
    const i32 = this.i32, h32 = heap().i32;
    const len = i32[LEN], s = (this.#slots() >> 2) + 1, n = len - 1;
    if (this.kind === LIFO) {
      const top = h32[s + n];
      Atomics.store(i32, POPPED, top);
      h32[s + n] = 0;
      Atomics.store(i32, LEN, n);
      Atomics.store(i32, POPPED, 0);
      return top;
    }
    const top = h32[s], last = h32[s + n];
    Atomics.store(i32, POPPED, top);
    Atomics.store(i32, PENDING, last);
    if (n > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && this.#cmp(h32[s + c + 1], h32[s + c]) < 0) c++;
        if (this.#cmp(h32[s + c], last) >= 0) break;
        h32[s + i] = h32[s + c];
        i = c;
      }
      h32[s + i] = last;
    }
    h32[s + n] = 0;
    Atomics.store(i32, LEN, n);
    Atomics.store(i32, PENDING, 0);
    Atomics.store(i32, POPPED, 0);
    return top;
  }

  /**
   * The previous holder of the store lock died inside it: rebuild the stack or heap from every
   * entry it could have been moving (slots, the entry being inserted, and the one being removed,
   * which its dead taker never got). Duplicates left by a half-done sift collapse in the set.
   */
  #repair(): void {
    const i32 = this.i32, arr = this.#slots(), h32 = heap().i32;
    if (!arr) return;
    const s = (arr >> 2) + 1, cap = h32[arr >> 2];
    const len = Math.min(cap, i32[LEN] + 1);
    const set = new Set<number>();
    for (let i = 0; i < len; i++) if (h32[s + i]) set.add(h32[s + i]);
    for (const w of [PENDING, POPPED]) if (i32[w]) set.add(i32[w]);
    const items = [...set];
    if (this.kind === PRIO) items.sort((a, b) => this.#cmp(a, b)); // sorted is a valid heap
    for (let i = 0; i < cap; i++) h32[s + i] = i < items.length ? items[i] : 0;
    Atomics.store(i32, LEN, items.length);
    Atomics.store(i32, PENDING, 0);
    Atomics.store(i32, POPPED, 0);
  }

  /** Encodes an item into its own heap block (outside the lock). */
  #makeItem(bytes: Uint8Array, key: Uint8Array | null): number {
    const kl = key ? key.length + 4 : 0;
    const off = alloc(ITEM_HEADER + kl + bytes.length, "queue item");
    const h = heap();
    h.dv.setUint32(off, kl, true);
    h.dv.setUint32(off + 4, bytes.length, true);
    if (key) {
      h.u8.set(key, off + ITEM_HEADER);
      // Arrival order breaks ties (big-endian, so it compares bytewise).
      h.dv.setUint32(off + ITEM_HEADER + key.length, Atomics.add(this.i32, NEXT_SEQ, 1));
    }
    h.u8.set(bytes, off + ITEM_HEADER + kl);
    return off;
  }

  #stored(): void {
    const i32 = this.i32;
    Atomics.add(i32, SEQ, 1);
    if (Atomics.load(i32, GET_WAITERS)) Atomics.notify(i32, SEQ);
  }

  /** The item's block (made outside the lock): its sort key, if any, and its bytes. */
  #stage(bytes: Uint8Array, item: unknown): number {
    return this.#makeItem(bytes, this.kind === PRIO ? sortKey(item) : null);
  }

  putSync(bytes: Uint8Array, value: unknown): void {
    const item = this.#stage(bytes, value);
    this.#lockStoreSync();
    try {
      this.#push(item);
    } finally {
      this.#unlockStore();
    }
    this.#stored();
  }

  put(bytes: Uint8Array, value: unknown): Promise<void> {
    return this.#put(this.#stage(bytes, value));
  }

  async #put(item: number): Promise<void> {
    const l = this.#lockStore();
    if (l) await l;
    try {
      this.#push(item);
    } finally {
      this.#unlockStore();
    }
    this.#stored();
  }

  /** Takes the next item block if there is one; else the SEQ value to sleep on (negative-free). */
  #tryTake(): { item: number; seq: number } {
    checkNotTerminated();
    const i32 = this.i32;
    const seq = Atomics.load(i32, SEQ);
    const item = i32[LEN] > 0 ? this.#pop() : 0;
    return { item, seq };
  }

  #takeOut(item: number): unknown {
    const h = heap();
    const kl = h.dv.getUint32(item, true), n = h.dv.getUint32(item + 4, true);
    const at = item + ITEM_HEADER + kl;
    let v: unknown;
    try {
      v = decodeItem(h.u8.subarray(at, at + n));
    } finally {
      release(item);
    }
    return this.#counts.took(v);
  }

  /**
   * Takes the next stored item, waiting for one (`storeGet`/`storeGetSync`): one algorithm, two
   * drivers (see _atomics), the store lock included.
   */
  *#getWaits(deadline: number, signal?: AbortSignal): Waits<unknown> {
    const i32 = this.i32, repair = () => this.#repair();
    for (;;) {
      yield* mutexLockWaits(i32, SLOCK, repair, DEAD_STEP_GRACE_MS);
      let t;
      try {
        t = this.#tryTake();
      } finally {
        this.#unlockStore();
      }
      if (t.item) return this.#takeOut(t.item);
      if (this.#counts.eof()) return EOF;
      signal?.throwIfAborted();
      const left = remainingMs(deadline);
      if (left <= 0) return TIMEOUT;
      Atomics.add(i32, GET_WAITERS, 1);
      try {
        yield { i32, index: SEQ, value: t.seq, ms: Math.min(left, LIVENESS_SLICE_MS) };
      } finally {
        Atomics.sub(i32, GET_WAITERS, 1);
      }
    }
  }

  getSync(timeout: number | undefined): unknown {
    return runSync(this.#getWaits(deadlineOf(timeout)));
  }

  get(timeout: number | undefined, signal?: AbortSignal): Promise<unknown> {
    return runAsync(this.#getWaits(deadlineOf(timeout), signal));
  }

  /** No fast path: a get takes the store lock (see `get`). */
  poll(): unknown {
    return TIMEOUT;
  }

  wakeReaders(): void {
    Atomics.notify(this.i32, SEQ);
  }

  /** Nothing is lost with a dead producer: an item is in the store once its put returned. */
  reapDead(): number {
    return 0;
  }

  /** Never: a heap store keeps no held items. */
  readonly reapAgain = false;

  /** Nothing to drop: only a FIFO queue's consumers keep copies of their items (see `held.ts`). */
  taskDone(): void {}

  /** Frees the items still stored when the last handle anywhere is gone. */
  static free(off: number): void {
    const i32 = heap().i32, q = off >> 2;
    const arr = i32[q + ARR];
    if (!arr) return;
    const s = (arr >> 2) + 1, len = i32[q + LEN];
    for (let i = 0; i < len; i++) if (i32[s + i]) release(i32[s + i]);
    release(arr);
  }
}
