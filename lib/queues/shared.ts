/**
 * The state of a queue shared by every handle class (one per handle object): the counts and
 * the waits on them, the store its items wait in (the ring of a FIFO queue, or the LIFO/priority
 * store), and the at-least-once holders table of a `JoinableQueue`.
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
import { alloc, DEATH_EPOCH_INDEX, heap, isAlive, MAIN_SLOT, release } from "../core/heap.ts";
import { checkNotTerminated, type Decode, EOF, Ring, TIMEOUT } from "../core/ring.ts";
import { ValueError } from "../core/errors.ts";
import { compileSchema, type Schema } from "./typed.ts";
import {
  ARR,
  CLOSED,
  FIFO,
  FIFO_BLOCK,
  GET_WAITERS,
  GETS,
  HEADER,
  HOLD_ENTRIES,
  HOLD_ENTRY,
  HOLD_TABLE,
  HOLDERS,
  ITEM_HEADER,
  JOIN_WAITERS,
  JOINABLE,
  KIND,
  type Kind,
  LEN,
  LIFO,
  MAGIC,
  MAGIC_I,
  MAXSIZE,
  NEXT_SEQ,
  PENDING,
  POPPED,
  PRIO,
  PUT_WAITERS,
  PUTS,
  SCHEMA,
  SCHEMA_LEN,
  SEQ,
  SLOCK,
  TASKS_DONE,
} from "./layout.ts";
import { copyHeld, dropBlock, Held, HELD_BYTES, HELD_INLINE, HELD_PTR } from "./held.ts";
import { DecodeFailure, decodeItem, decodeItemAsync } from "./items.ts";

/** A typed queue's schema text, copied out of its block (TextDecoder refuses shared views). */
function schemaText(blk: number, len: number): string {
  return new TextDecoder().decode(heap().u8.slice(blk, blk + len));
}

/** A queue's block as one handle sees it (see the module doc). */
export class Shared {
  readonly off: number;
  /** Word index of the header in `i32` (0: `i32` is a fixed view of the header). */
  readonly q = 0;
  /**
   * A fixed-length view of the header: Atomics on the heap's length-tracking view cost about
   * twice as much, and these words are touched on every put and get.
   */
  readonly i32: Int32Array;
  readonly kind: Kind;
  readonly maxsize: number;
  readonly ring: Ring | null;
  /** Counts unfinished tasks (`taskDone`/`join`). */
  readonly joinable: boolean;
  /** Frees what the queue's block points to, when the last reference to it goes. */
  readonly beforeFree: ((off: number) => void) | undefined;
  /** Decodes items got from the ring (and keeps a copy when this process holds them). */
  readonly decode: Decode<unknown>;
  /** The same for async receivers (see {@link decodeItemAsync}). */
  readonly decodeAsync: Decode<unknown>;
  /** A typed queue's compiled schema (see `typed.ts`), else null. */
  readonly schema: Schema | null;
  /** The death counter when `reap` last looked (-1: never). */
  #epoch = -1;
  /** This handle's held items: undefined until the first get, null when not keeping copies. */
  #held: Held | null | undefined;

  constructor(off: number) {
    this.off = off;
    this.i32 = new Int32Array(heap().sab, off, HEADER >> 2);
    if (Atomics.load(this.i32, this.q + MAGIC_I) !== MAGIC) {
      throw new Error(`denomp: no queue at heap offset ${off}`);
    }
    this.kind = Atomics.load(this.i32, this.q + KIND) as Kind;
    this.maxsize = Atomics.load(this.i32, this.q + MAXSIZE);
    this.joinable = Atomics.load(this.i32, this.q + JOINABLE) !== 0;
    this.ring = this.kind === FIFO ? new Ring(off + HEADER, off) : null;
    this.beforeFree = this.ring ? Shared.freeFifo : Shared.freeStore;
    const text = Atomics.load(this.i32, this.q + SCHEMA);
    this.schema = text ? compileSchema(schemaText(text, this.i32[this.q + SCHEMA_LEN])) : null;
    const typed = this.schema,
      decodeTyped = (payload: Uint8Array): unknown => {
        try {
          return typed!.decode(payload);
        } catch (e) {
          return new DecodeFailure(e);
        }
      };
    const holds = this.joinable && this.ring !== null && heap().slot !== MAIN_SLOT;
    const holding = (decode: Decode<unknown>): Decode<unknown> => (payload, owned) => {
      const v = decode(payload, owned);
      // The copy is taken now, while `payload` still views the ring.
      if (!(v instanceof DecodeFailure)) this.#hold(payload);
      return v;
    };
    this.decode = typed ? decodeTyped : holds ? holding(decodeItem) : decodeItem;
    this.decodeAsync = typed ? decodeTyped : holds ? holding(decodeItemAsync) : decodeItemAsync;
  }

  // --- at-least-once for JoinableQueue consumers (see the module doc)

  /** Keeps a copy of an item this process got until its `taskDone`. */
  #hold(payload: Uint8Array): void {
    const held = this.#held === undefined ? (this.#held = this.#register()) : this.#held;
    if (!held) return;
    if (payload.length <= HELD_INLINE) {
      held.push(payload); // false when full (a consumer that never calls taskDone): no copy
      return;
    }
    if (!held.fits(12)) return;
    const blk = alloc(payload.length, "queue item"); // too big to keep inline: a block
    heap().u8.set(payload, blk);
    const ptr = new Uint8Array(new Uint32Array([HELD_PTR, blk, payload.length]).buffer);
    if (!held.push(ptr)) release(blk); // full (thousands held): this one goes uncopied
  }

  /** Claims an entry of the holders table for this process, with its held items' block. */
  #register(): Held | null {
    const i32 = this.i32, me = heap().slot;
    for (let i = 0; i < HOLD_ENTRIES; i++) {
      const e = this.q + HOLD_TABLE + HOLD_ENTRY * i;
      if (Atomics.compareExchange(i32, e, 0, me) !== 0) continue;
      Atomics.add(i32, this.q + HOLDERS, 1);
      const off = alloc(HELD_BYTES, "queue"); // if this throws, the entry is reaped when we die
      Atomics.store(i32, e + 1, off);
      return new Held(off);
    }
    return null; // more consumers than entries: this one keeps no copies (as in Python)
  }

  /** `taskDone` of this process: the oldest item it holds is done with. */
  #drop(): void {
    const blk = this.#held?.drop();
    if (blk) release(blk);
  }

  /**
   * Puts back the items that consumers now dead held. Each dead entry is claimed by one
   * reaper at a time, and freed only once every item it put back is written into the ring: a
   * reaper that dies first leaves the entry to the next one (who may put some items back twice:
   * at-least-once). Counts: each item put back is a put; the dead consumer's tasks are done
   * once (the `ACCOUNTED` word).
   */
  #reapHolders(): void {
    const i32 = this.i32, me = heap().slot;
    for (let i = 0; i < HOLD_ENTRIES; i++) {
      const e = this.q + HOLD_TABLE + HOLD_ENTRY * i, slot = Atomics.load(i32, e);
      if (slot === 0) continue;
      if (slot > 0 && (isAlive(slot) || Atomics.compareExchange(i32, e, slot, -slot) !== slot)) {
        continue;
      }
      const reaper = Atomics.load(i32, e + 2); // 0 counts as alive: its claimer is on its way
      if (reaper === me || (reaper && isAlive(reaper))) continue;
      if (Atomics.compareExchange(i32, e + 2, reaper, me) !== reaper) continue;
      this.#putBack(e);
    }
  }

  #putBack(e: number): void {
    const i32 = this.i32, off = Atomics.load(i32, e + 1);
    const items: Uint8Array[] = [];
    if (off) new Held(off).forEach((b) => items.push(copyHeld(b)));
    Atomics.add(i32, this.q + PUTS, items.length); // before TASKS_DONE: `join` never sees too few
    if (Atomics.compareExchange(i32, e + 3, 0, 1) === 0) {
      Atomics.add(i32, this.q + TASKS_DONE, items.length);
    }
    const sent = items.map((b) => this.ring!.post(b, this.sendOptions));
    void Promise.all(sent).then(() => {
      if (Atomics.load(i32, e + 2) !== heap().slot) return; // taken over: not ours to free
      if (off) {
        new Held(off).forEach(dropBlock);
        release(off);
      }
      for (const w of [1, 2, 3]) Atomics.store(i32, e + w, 0);
      Atomics.store(i32, e, 0);
      Atomics.sub(i32, this.q + HOLDERS, 1);
    });
  }

  /**
   * Frees what a FIFO queue's block points to when the last handle anywhere is gone: the held
   * items' blocks of its consumers and a dead reader's half-assembled item.
   */
  static freeFifo(off: number): void {
    Ring.dispose(off + HEADER);
    const i32 = heap().i32, q = off >> 2;
    if (i32[q + SCHEMA]) release(i32[q + SCHEMA]);
    for (let i = 0; i < HOLD_ENTRIES; i++) {
      const held = i32[q + HOLD_TABLE + HOLD_ENTRY * i + 1];
      if (held) {
        new Held(held).forEach(dropBlock);
        release(held);
      }
    }
  }

  static create(kind: Kind, maxsize: number, joinable: boolean, schema?: Schema): number {
    const off = alloc(kind === FIFO ? FIFO_BLOCK : HEADER, "queue");
    const i32 = heap().i32, q = off >> 2;
    if (kind === FIFO) Ring.init(off + HEADER, FIFO_BLOCK - HEADER);
    if (schema) {
      const text = new TextEncoder().encode(schema.text), blk = alloc(text.length, "queue");
      heap().u8.set(text, blk);
      i32[q + SCHEMA_LEN] = text.length;
      i32[q + SCHEMA] = blk; // published with MAGIC below
    }
    i32[q + KIND] = kind;
    i32[q + MAXSIZE] = maxsize;
    i32[q + JOINABLE] = joinable ? 1 : 0;
    Atomics.store(i32, q + MAGIC_I, MAGIC);
    return off;
  }

  get closed(): boolean {
    return Atomics.load(this.i32, this.q + CLOSED) !== 0;
  }

  count(): number {
    this.reap();
    return (Atomics.load(this.i32, this.q + PUTS) - Atomics.load(this.i32, this.q + GETS)) | 0;
  }

  /**
   * Items that producers now dead had put (counted in PUTS) but not yet written into the ring
   * (their outboxes died with them): they never arrive, so they leave the counts as if got and
   * done. Python would lose them too; what must not happen is a `qsize()` that stays above 0,
   * a `for await` that never ends after `close()`, a `join()` that never settles.
   */
  reap(): void {
    // Only when some process died since the last look (one load otherwise).
    const epoch = Atomics.load(heap().i32, DEATH_EPOCH_INDEX);
    if (epoch === this.#epoch) return;
    this.#epoch = epoch;
    if (Atomics.load(this.i32, this.q + HOLDERS)) this.#reapHolders();
    const lost = this.ring ? this.ring.reapDead() : 0;
    if (lost) this.gone(lost);
  }

  /** `n` items left the queue for good without reaching a consumer: got, and done. */
  gone(n: number): void {
    const i32 = this.i32, q = this.q;
    Atomics.add(i32, q + GETS, n);
    if (this.maxsize > 0 && Atomics.load(i32, q + PUT_WAITERS)) Atomics.notify(i32, q + GETS);
    if (this.joinable) {
      Atomics.add(i32, q + TASKS_DONE, n);
      if (Atomics.load(i32, q + JOIN_WAITERS)) Atomics.notify(i32, q + TASKS_DONE);
    }
    if (Atomics.load(i32, q + CLOSED)) this.wakeReaders();
  }

  /**
   * Passed to every ring write: a put that throws before its item reached the ring (a
   * terminated worker meeting its fence) gives its place back.
   */
  readonly sendOptions = { onUnsent: (n: number): void => this.undoReserve(n) };

  /**
   * After the ring gave `v` (an item, `TIMEOUT` or `EOF`): counts an item as got. An item that
   * did not decode is got and done (nobody will mark it done), and its error is thrown.
   */
  took(v: unknown): unknown {
    if (v === TIMEOUT || v === EOF) return v;
    if (v instanceof DecodeFailure) {
      this.discarded();
      throw v.error;
    }
    this.unreserve();
    return v;
  }

  /** Closed, and every item put has been got: nothing more can come. */
  readonly eof = (): boolean => {
    this.reap(); // a reader waiting on an empty queue gets a dead consumer's items back
    return Atomics.load(this.i32, this.q + CLOSED) !== 0 && this.count() === 0;
  };

  // --- the item count and maxsize

  /** Takes places for up to `n` items without waiting; returns how many (0 when full). */
  tryReserveUpTo(n: number): number {
    const i32 = this.i32, idx = this.q + PUTS, max = this.maxsize;
    if (max <= 0) return Atomics.add(i32, idx, n), n;
    for (;;) {
      const p = Atomics.load(i32, idx);
      const k = Math.min(n, max - ((p - Atomics.load(i32, this.q + GETS)) | 0));
      if (k <= 0) return 0;
      if (Atomics.compareExchange(i32, idx, p, (p + k) | 0) === p) return k;
    }
  }

  /** Takes a place for one item without waiting; false when full. */
  tryReserve(): boolean {
    const i32 = this.i32, idx = this.q + PUTS, max = this.maxsize;
    if (max <= 0) {
      Atomics.add(i32, idx, 1);
      return true;
    }
    for (;;) {
      // GETS only grows, so a stale one overstates the size: never too many, at worst a retry.
      const p = Atomics.load(i32, idx);
      if (((p - Atomics.load(i32, this.q + GETS)) | 0) >= max) return false;
      if (Atomics.compareExchange(i32, idx, p, (p + 1) | 0) === p) return true;
    }
  }

  /** Gives reserved places back (the queue closed before the items went in). */
  undoReserve(n = 1): void {
    Atomics.sub(this.i32, this.q + PUTS, n);
  }

  /**
   * Waits for room and reserves it (`reserve`/`reserveSync`): one algorithm, two drivers (see
   * _atomics). Sleeps until a consumer takes an item (GETS moves; it notifies when putters wait).
   */
  *#reserveWaits(deadline: number, signal?: AbortSignal): Waits<boolean> {
    const i32 = this.i32, idx = this.q + GETS;
    Atomics.add(i32, this.q + PUT_WAITERS, 1);
    try {
      for (;;) {
        if (this.tryReserve()) return true;
        if (this.closed) throw new ValueError("Queue is closed");
        signal?.throwIfAborted();
        const left = remainingMs(deadline);
        if (left <= 0) return false;
        const g = Atomics.load(i32, idx);
        if (((Atomics.load(i32, this.q + PUTS) - g) | 0) < this.maxsize) continue;
        yield { i32, index: idx, value: g, ms: Math.min(left, LIVENESS_SLICE_MS) };
      }
    } finally {
      Atomics.sub(i32, this.q + PUT_WAITERS, 1);
    }
  }

  reserve(timeout: number | undefined, signal?: AbortSignal): Promise<boolean> {
    return runAsync(this.#reserveWaits(deadlineOf(timeout), signal));
  }

  reserveSync(timeout: number | undefined): boolean {
    return runSync(this.#reserveWaits(deadlineOf(timeout)));
  }

  /** `n` items left the queue (got, or discarded torn). */
  readonly unreserve = (n = 1): void => {
    const i32 = this.i32, q = this.q;
    Atomics.add(i32, q + GETS, n);
    if (this.maxsize > 0 && Atomics.load(i32, q + PUT_WAITERS)) Atomics.notify(i32, q + GETS);
    // A reader asleep on a closed queue re-checks for the end (it also polls, so this is speed).
    if (Atomics.load(i32, q + CLOSED) && this.count() === 0) this.wakeReaders();
  };

  /** A torn item was discarded: it will never be got nor marked done. */
  readonly discarded = (): void => {
    this.unreserve();
    // Done, but not a `taskDone` of this process: the copies it holds stay (see `#drop`).
    if (this.joinable && this.unfinished() > 0) this.taskDone(false);
  };

  unfinished(): number {
    this.reap();
    return (Atomics.load(this.i32, this.q + PUTS) - Atomics.load(this.i32, this.q + TASKS_DONE)) |
      0;
  }

  wakeReaders(): void {
    if (this.ring) this.ring.wakeReaders();
    else Atomics.notify(this.i32, this.q + SEQ);
  }

  close(): void {
    Atomics.store(this.i32, this.q + CLOSED, 1);
    this.wakeReaders();
    Atomics.notify(this.i32, this.q + GETS); // putters waiting for room: they throw now
  }

  // --- JoinableQueue accounting

  /** Counts one task done; `drop`: it is this process's `taskDone` (its oldest copy goes). */
  taskDone(drop = true): void {
    checkNotTerminated(); // a zombie's held items were put back: its taskDone must not count
    const i32 = this.i32, idx = this.q + TASKS_DONE;
    for (;;) {
      const d = Atomics.load(i32, idx);
      const left = (Atomics.load(i32, this.q + PUTS) - d) | 0;
      if (left <= 0) throw new ValueError("task_done() called too many times");
      if (Atomics.compareExchange(i32, idx, d, (d + 1) | 0) !== d) continue;
      if (drop) this.#drop();
      // The last one: wake joiners (they sleep on TASKS_DONE). A put racing with this keeps them
      // waiting, as it should; they re-check PUTS when they wake.
      if (left === 1 && Atomics.load(i32, this.q + JOIN_WAITERS)) Atomics.notify(i32, idx);
      return;
    }
  }

  /** The TASKS_DONE value to sleep on while tasks are unfinished, or null when none is. */
  #joinWait(): number | null {
    this.reap();
    const i32 = this.i32, d = Atomics.load(i32, this.q + TASKS_DONE);
    return ((Atomics.load(i32, this.q + PUTS) - d) | 0) > 0 ? d : null;
  }

  /** Waits until every task is done (`join`/`joinSync`): one algorithm, two drivers. */
  *#joinWaits(): Waits<void> {
    const i32 = this.i32, idx = this.q + TASKS_DONE;
    Atomics.add(i32, this.q + JOIN_WAITERS, 1);
    try {
      for (let d = this.#joinWait(); d !== null; d = this.#joinWait()) {
        // Sliced: the notify comes only at "all done", and a put may move the goal meanwhile.
        yield { i32, index: idx, value: d, ms: LIVENESS_SLICE_MS };
      }
    } finally {
      Atomics.sub(i32, this.q + JOIN_WAITERS, 1);
    }
  }

  join(): Promise<void> {
    return runAsync(this.#joinWaits());
  }

  joinSync(): void {
    runSync(this.#joinWaits());
  }

  // --- the LIFO / priority store

  #slots(): number {
    return Atomics.load(this.i32, this.q + ARR); // block: [capacity, slot 0, slot 1, ...]
  }

  #lockStoreSync(): void {
    const i32 = this.i32, idx = this.q + SLOCK;
    if (Atomics.compareExchange(i32, idx, 0, heap().slot) === 0) return;
    if (mutexAcquireSync(i32, idx) === OWNER_DIED) this.#repair();
  }

  #lockStore(): void | Promise<void> {
    const i32 = this.i32, idx = this.q + SLOCK;
    if (Atomics.compareExchange(i32, idx, 0, heap().slot) === 0) return;
    return mutexAcquireRecovering(i32, idx, () => this.#repair());
  }

  #unlockStore(): void {
    // Only while we own it: a terminated-but-running worker's lock may have been taken over.
    const me = heap().slot, i32 = this.i32, idx = this.q + SLOCK;
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
    Atomics.store(this.i32, this.q + ARR, next); // the commit point: a crash before it leaks `next` only
    if (arr) release(arr);
    arr = next;
    return arr;
  }

  /** Pushes item block `item` (store lock held). */
  #push(item: number): void {
    checkNotTerminated(); // a terminated worker still running must not touch the store
    const i32 = this.i32, q = this.q, h32 = heap().i32;
    const len = i32[q + LEN];
    const s = (this.#ensureSlot(len) >> 2) + 1;
    Atomics.store(i32, q + PENDING, item); // written first: what a repair must not lose
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
    Atomics.store(i32, q + LEN, len + 1);
    Atomics.store(i32, q + PENDING, 0);
  }

  /** Pops the next item block (store lock held, not empty). */
  #pop(): number {
    const i32 = this.i32, q = this.q, h32 = heap().i32;
    const len = i32[q + LEN], s = (this.#slots() >> 2) + 1, n = len - 1;
    if (this.kind === LIFO) {
      const top = h32[s + n];
      Atomics.store(i32, q + POPPED, top);
      h32[s + n] = 0;
      Atomics.store(i32, q + LEN, n);
      Atomics.store(i32, q + POPPED, 0);
      return top;
    }
    const top = h32[s], last = h32[s + n];
    Atomics.store(i32, q + POPPED, top);
    Atomics.store(i32, q + PENDING, last);
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
    Atomics.store(i32, q + LEN, n);
    Atomics.store(i32, q + PENDING, 0);
    Atomics.store(i32, q + POPPED, 0);
    return top;
  }

  /**
   * The previous holder of the store lock died inside it: rebuild the stack or heap from every
   * entry it could have been moving (slots, the entry being inserted, and the one being removed,
   * which its dead taker never got). Duplicates left by a half-done sift collapse in the set.
   */
  #repair(): void {
    const i32 = this.i32, q = this.q, arr = this.#slots(), h32 = heap().i32;
    if (!arr) return;
    const s = (arr >> 2) + 1, cap = h32[arr >> 2];
    const len = Math.min(cap, i32[q + LEN] + 1);
    const set = new Set<number>();
    for (let i = 0; i < len; i++) if (h32[s + i]) set.add(h32[s + i]);
    for (const w of [PENDING, POPPED]) if (i32[q + w]) set.add(i32[q + w]);
    const items = [...set];
    if (this.kind === PRIO) items.sort((a, b) => this.#cmp(a, b)); // sorted is a valid heap
    for (let i = 0; i < cap; i++) h32[s + i] = i < items.length ? items[i] : 0;
    Atomics.store(i32, q + LEN, items.length);
    Atomics.store(i32, q + PENDING, 0);
    Atomics.store(i32, q + POPPED, 0);
  }

  /** Encodes an item into its own heap block (outside the lock). */
  makeItem(bytes: Uint8Array, key: Uint8Array | null): number {
    const kl = key ? key.length + 4 : 0;
    const off = alloc(ITEM_HEADER + kl + bytes.length, "queue item");
    const h = heap();
    h.dv.setUint32(off, kl, true);
    h.dv.setUint32(off + 4, bytes.length, true);
    if (key) {
      h.u8.set(key, off + ITEM_HEADER);
      // Arrival order breaks ties (big-endian, so it compares bytewise).
      h.dv.setUint32(off + ITEM_HEADER + key.length, Atomics.add(this.i32, this.q + NEXT_SEQ, 1));
    }
    h.u8.set(bytes, off + ITEM_HEADER + kl);
    return off;
  }

  #stored(): void {
    const i32 = this.i32, q = this.q;
    Atomics.add(i32, q + SEQ, 1);
    if (Atomics.load(i32, q + GET_WAITERS)) Atomics.notify(i32, q + SEQ);
  }

  storePutSync(item: number): void {
    this.#lockStoreSync();
    try {
      this.#push(item);
    } finally {
      this.#unlockStore();
    }
    this.#stored();
  }

  async storePut(item: number): Promise<void> {
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
    const i32 = this.i32, q = this.q;
    const seq = Atomics.load(i32, q + SEQ);
    const item = i32[q + LEN] > 0 ? this.#pop() : 0;
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
    return this.took(v);
  }

  /**
   * Takes the next stored item, waiting for one (`storeGet`/`storeGetSync`): one algorithm, two
   * drivers (see _atomics), the store lock included.
   */
  *#storeGetWaits(deadline: number, signal?: AbortSignal): Waits<unknown> {
    const i32 = this.i32, q = this.q, repair = () => this.#repair();
    for (;;) {
      yield* mutexLockWaits(i32, q + SLOCK, repair);
      let t;
      try {
        t = this.#tryTake();
      } finally {
        this.#unlockStore();
      }
      if (t.item) return this.#takeOut(t.item);
      if (this.eof()) return EOF;
      signal?.throwIfAborted();
      const left = remainingMs(deadline);
      if (left <= 0) return TIMEOUT;
      Atomics.add(i32, q + GET_WAITERS, 1);
      try {
        yield { i32, index: q + SEQ, value: t.seq, ms: Math.min(left, LIVENESS_SLICE_MS) };
      } finally {
        Atomics.sub(i32, q + GET_WAITERS, 1);
      }
    }
  }

  storeGetSync(timeout: number | undefined): unknown {
    return runSync(this.#storeGetWaits(deadlineOf(timeout)));
  }

  storeGet(timeout: number | undefined, signal?: AbortSignal): Promise<unknown> {
    return runAsync(this.#storeGetWaits(deadlineOf(timeout), signal));
  }

  /** Frees the items still stored when the last handle anywhere is gone. */
  static freeStore(off: number): void {
    const i32 = heap().i32, q = off >> 2;
    const arr = i32[q + ARR];
    if (!arr) return;
    const s = (arr >> 2) + 1, len = i32[q + LEN];
    for (let i = 0; i < len; i++) if (i32[s + i]) release(i32[s + i]);
    release(arr);
  }
}
