/**
 * The state of a queue shared by every handle class (one per handle object): the counts and the
 * waits on them, and the store its items wait in (see `store.ts`).
 *
 * Counters split by who writes them (see `layout.ts`): producers count `PUTS` (items reserved),
 * consumers count `GETS` (items taken) and `TASKS_DONE` (`taskDone`). `qsize()` is `PUTS - GETS`,
 * shared by all processes (outboxes included); `maxsize` backpressure waits on that count.
 * Items a dead producer never wrote leave it (`reap`).
 *
 * @module
 */

import {
  deadlineOf,
  LIVENESS_SLICE_MS,
  remainingMs,
  runAsync,
  runSync,
  type Waits,
} from "../core/atomics.ts";
import { alloc, DEATH_EPOCH_INDEX, heap } from "../core/heap.ts";
import { checkNotTerminated, EOF, type Ring, TIMEOUT } from "../core/ring.ts";
import { ValueError } from "../core/errors.ts";
import { encodeView } from "../core/reduction.ts";
import { compileSchema, type Schema } from "./typed.ts";
import {
  CLOSED,
  FIFO,
  FIFO_BLOCK,
  GETS,
  HEADER,
  JOIN_WAITERS,
  JOINABLE,
  KIND,
  type Kind,
  MAGIC,
  MAGIC_I,
  MAXSIZE,
  PUT_WAITERS,
  PUTS,
  SCHEMA,
  SCHEMA_LEN,
  TASKS_DONE,
} from "./layout.ts";
import { RingStore } from "./ring_store.ts";
import type { Store } from "./store.ts";
import { HeapStore } from "./heap_store.ts";
import { DecodeFailure } from "./items.ts";

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
  /** Where the items wait: a ring (FIFO) or heap blocks (LIFO, priority). */
  readonly store: Store;
  /** A FIFO queue's ring (a typed queue's batches go to it directly), else null. */
  readonly ring: Ring | null;
  /** Counts unfinished tasks (`taskDone`/`join`). */
  readonly joinable: boolean;
  /** Frees what the queue's block points to, when the last reference to it goes. */
  readonly beforeFree: ((off: number) => void) | undefined;
  /** A typed queue's compiled schema (see `typed.ts`), else null. */
  readonly schema: Schema | null;
  /** The death counter when `reap` last looked (-1: never). */
  #epoch = -1;

  constructor(off: number) {
    this.off = off;
    this.i32 = new Int32Array(heap().sab, off, HEADER >> 2);
    if (Atomics.load(this.i32, this.q + MAGIC_I) !== MAGIC) {
      throw new Error(`denomp: no queue at heap offset ${off}`);
    }
    this.kind = Atomics.load(this.i32, this.q + KIND) as Kind;
    this.maxsize = Atomics.load(this.i32, this.q + MAXSIZE);
    this.joinable = Atomics.load(this.i32, this.q + JOINABLE) !== 0;
    const text = Atomics.load(this.i32, this.q + SCHEMA);
    this.schema = text ? compileSchema(schemaText(text, this.i32[this.q + SCHEMA_LEN])) : null;
    if (this.kind === FIFO) {
      const store = new RingStore(off, this.i32, this, this.joinable, this.schema);
      this.store = store;
      this.ring = store.ring;
      this.beforeFree = RingStore.free;
    } else {
      this.store = new HeapStore(this.i32, this.kind, this);
      this.ring = null;
      this.beforeFree = HeapStore.free;
    }
  }

  static create(kind: Kind, maxsize: number, joinable: boolean, schema?: Schema): number {
    const off = alloc(kind === FIFO ? FIFO_BLOCK : HEADER, "queue");
    const i32 = heap().i32, q = off >> 2;
    if (kind === FIFO) RingStore.init(off, FIFO_BLOCK);
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
    const lost = this.store.reapDead();
    if (this.store.reapAgain) this.#epoch = -1; // a dead holder was still busy: again next time
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

  /**
   * Puts items a consumer took and could not deliver back at the end, past `maxsize` and after
   * `close()`: they were in the queue before (see PUT_BACK in core/handles.ts).
   */
  putBack(items: unknown[]): void {
    for (const item of items) {
      const bytes = this.schema ? this.schema.encode(item) : encodeView(item, "item");
      Atomics.add(this.i32, this.q + PUTS, 1);
      void this.store.put(bytes, item);
    }
  }

  /** Gives reserved places back (the queue closed before the items went in). */
  undoReserve(n = 1): void {
    Atomics.sub(this.i32, this.q + PUTS, n);
  }

  /**
   * Waits for room and reserves it (`reserve`/`reserveSync`, and a put's own wait, see
   * `Queue.#putWaits`): one algorithm, two drivers (see _atomics). Sleeps until a consumer takes
   * an item (GETS moves; it notifies when putters wait). False at the deadline.
   */
  *reserveWaits(deadline: number, signal?: AbortSignal): Waits<boolean> {
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
    return runAsync(this.reserveWaits(deadlineOf(timeout), signal));
  }

  reserveSync(timeout: number | undefined): boolean {
    return runSync(this.reserveWaits(deadlineOf(timeout)));
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
    // Done, but not a `taskDone` of this process: the copies it holds stay (see `Holders.drop`).
    if (this.joinable && this.unfinished() > 0) this.taskDone(false);
  };

  unfinished(): number {
    this.reap();
    return (Atomics.load(this.i32, this.q + PUTS) - Atomics.load(this.i32, this.q + TASKS_DONE)) |
      0;
  }

  wakeReaders(): void {
    this.store.wakeReaders();
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
      if (drop) this.store.taskDone();
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
}
