/**
 * The pool's shared memory: what the parent and its workers both read and write. A worker's heap
 * block (its control words, task ring and result ring), the messages on those rings, the cancel
 * slots and the recall mark on `STARTED`, and the pool's doorbell. The parent side (the pool) and
 * the worker side (`worker.ts`, and the relay of `os_pool.ts`) both import it, so that one change
 * to the layout touches one file.
 *
 * @module
 */

import { heap } from "../core/heap.ts";
import { SerializationError } from "../core/errors.ts";
import type { EncodeOptions } from "../core/reduction.ts";

/** Worker control block: Int32 words at the start of the worker's heap block. */
/**
 * Number of the task the worker has begun (its tasks are numbered 1, 2, ...), set by the worker
 * with a compare-exchange from the previous number. The parent takes back the tasks that have not
 * begun by a compare-exchange of the same word to `-last` (the number of the last task it
 * withdraws): whichever exchange comes first wins, so each task either ran or was withdrawn, never
 * both (see TaskHandler.#recall, TaskLoop.#withdrawn). `startedOf` reads it either way.
 */
export const STARTED = 0;
export const CANCEL_HINT = 16; // nonzero while some cancel slot may hold a task number
export const CANCEL = 17; // cancel slots: numbers of tasks the worker must skip (0 = free)
export const CANCEL_SLOTS = 15;
export const CTL_BYTES = 256;
/**
 * A worker's block: control words, its task ring (parent → worker) and its result ring (worker →
 * parent), filling the 512 KiB size class exactly. One writer per ring: the parent writes every
 * task ring, each worker only its own result ring, so no two processes contend for a lock. A
 * chunk of a big map (Python's default chunking makes 4 per worker) fits in one frame.
 */
export const WORKER_BLOCK = (512 << 10) - 16;
export const TASK_RING_BYTES = 256 << 10;
export const RESULT_RING_BYTES = WORKER_BLOCK - CTL_BYTES - TASK_RING_BYTES;

export const BELL = 0, BELL_ASLEEP = 16;

/**
 * Test-only hooks (not exported from mod.ts). `ringerSawSleeper` runs inside
 * {@link Doorbell.ring} at the exact point where a ringer has seen the sleeper's flag and not yet
 * notified; `sleeperArmed` inside {@link Doorbell.sleep} between `arm` and `wait`;
 * `lateWakeups` counts the parent's doorbell sleeps that ended by their time limit and then
 * found results (results that were not rung for: never expected); `steals` counts the times
 * tasks were taken back from a busy worker (see TaskHandler.#steal); `skips` the tasks in a worker's
 * ring that it was told to skip (cancelled before they started).
 */
export const __testHooks: {
  ringerSawSleeper: (() => void) | null;
  sleeperArmed: (() => void) | null;
  lateWakeups: number;
  steals: number;
  skips: number;
} = { ringerSawSleeper: null, sleeperArmed: null, lateWakeups: 0, steals: 0, skips: 0 };

/**
 * The pool's doorbell: a counter every worker bumps after each result it writes, and a flag the
 * parent raises before it sleeps on the counter. The parent waits on one word for all workers;
 * a worker pays `Atomics.notify` only when the parent sleeps, once per sleep: the flag holds the
 * number of the sleep, and the ringer that takes it down by a compare-exchange of that number
 * notifies. A ringer must never take down the flag of a later sleep: paused after it saw the
 * flag, it could otherwise clear it after the parent had woken and raised it again, and the next
 * ringer would see no sleeper and not notify (a lost wake-up). A ringer that loses the exchange
 * needs no notify: the winner's wakes the parent, or the parent woke by itself; either way it
 * loads the count after this ringer's bump, and so takes this ringer's result before it sleeps.
 *
 * @example
 * ```ts
 * import { alloc } from "../core/heap.ts";
 * import { Doorbell } from "./wire.ts";
 * const bell = new Doorbell(alloc(Doorbell.BYTES));
 * const seen = bell.count();
 * const slept = bell.sleep(seen, 1000);
 * bell.ring(); // from any process
 * console.assert((await slept) === "rung");
 * ```
 */
export class Doorbell {
  /** Bytes of a doorbell (a block of the heap, 16-aligned). */
  static readonly BYTES = 128;
  readonly #i32: Int32Array;
  /** The sleeper's number for its flag (never 0). */
  #sleeps = 0;

  /** The doorbell at heap offset `block` (zeroed). */
  constructor(block: number) {
    this.#i32 = new Int32Array(heap().sab, block, Doorbell.BYTES >> 2);
  }

  /** The count now: load it before looking for work, then sleep on it. */
  count(): number {
    return Atomics.load(this.#i32, BELL);
  }

  /** Spins up to `n` loads for the count to move from `seen`; true if it did. */
  spin(seen: number, n: number): boolean {
    const i32 = this.#i32;
    for (let s = 0; s < n; s++) if (Atomics.load(i32, BELL) !== seen) return true;
    return false;
  }

  /** Bumps the count and wakes the sleeper, if any (see the class doc). */
  ring(): void {
    const i32 = this.#i32;
    Atomics.add(i32, BELL, 1);
    const sleep = Atomics.load(i32, BELL_ASLEEP);
    if (sleep !== 0) {
      __testHooks.ringerSawSleeper?.();
      // Takes down the flag of the sleep it saw, never a later one's.
      if (Atomics.compareExchange(i32, BELL_ASLEEP, sleep, 0) === sleep) Atomics.notify(i32, BELL);
    }
  }

  /**
   * Sleeps (without blocking the thread) until the count moves from `seen`, or `ms`
   * milliseconds: "rung", or "timed-out". One sleeper at a time. The same as `arm`, then `wait`.
   */
  sleep(seen: number, ms: number): Promise<"rung" | "timed-out"> {
    if (this.arm(seen)) {
      __testHooks.sleeperArmed?.();
      return this.wait(seen, ms);
    }
    Atomics.store(this.#i32, BELL_ASLEEP, 0);
    return Promise.resolve("rung");
  }

  /**
   * The sleeper's first step: raises its flag, then looks at the count again; false when it has
   * moved from `seen` already (do not wait). A ringer bumps the count, then looks at the flag:
   * one of the two sees the other, so no ring is slept through.
   */
  arm(seen: number): boolean {
    this.#sleeps = (this.#sleeps % 0x7fffffff) + 1;
    Atomics.store(this.#i32, BELL_ASLEEP, this.#sleeps);
    return Atomics.load(this.#i32, BELL) === seen;
  }

  /** The sleeper's second step, after `arm(seen)`: waits, then lowers its flag. */
  async wait(seen: number, ms: number): Promise<"rung" | "timed-out"> {
    const i32 = this.#i32;
    try {
      const r = Atomics.waitAsync(i32, BELL, seen, ms);
      return (r.async ? await r.value : r.value) === "timed-out" ? "timed-out" : "rung";
    } finally {
      Atomics.store(i32, BELL_ASLEEP, 0);
    }
  }
}

/**
 * Ops in a task message (parent → worker); OP_PAD is one byte of padding. OP_IMPORT names the
 * modules that register the handle kinds (queues, locks...) in the tasks that follow: a worker
 * loads the rest of the library only in the background, so it imports those first.
 */
export const OP_PAD = 0, OP_DEFINE = 1, OP_TASK = 2, OP_STOP = 3, OP_IMPORT = 4;
/** op u8, mode u8, column u8, pad u8, fn u32, start u32, length u32: a multiple of 8. */
export const TASK_HEADER = 16;
export const DEFINE_HEADER = 9; // op u8, fn u32, length u32
/** Modes of a task: one call, or a chunk of `map` / `starmap`. */
export const APPLY = 0, MAP = 1, STARMAP = 2;
export type Mode = typeof APPLY | typeof MAP | typeof STARMAP;

/**
 * How a chunk's items (or results) travel: when every one is a number, as a raw column of
 * Float64 values, 8-aligned in the message and read through a typed-array view; otherwise
 * through the codec. A numeric map is the common case, and the codec's general per-value path
 * (a tag, a switch and a call per value) costs ~10x more, above all before V8 has optimised it,
 * which every new worker pays again. Checking, writing and computing share one loop on each side.
 */
export const CODEC = 0, COLUMN = 1;
export type Column = typeof CODEC | typeof COLUMN;

/** Kinds of a result message (worker → parent): kind u8, pad, task u32, µs u32, pad, body. */
export const R_OK = 1, R_ERR = 2, R_READY = 3, R_INIT_FAILED = 4, R_COLUMN = 5;
/** A multiple of 8, so that a column body is aligned in the writer's stage. */
export const RESULT_HEADER = 16;

/** The last task a worker has begun, or (a recall it has not seen yet) the last one withdrawn. */
export const startedOf = (ctl: Int32Array): number => Math.abs(Atomics.load(ctl, STARTED));

export const u32 = (b: Uint8Array, p: number): number =>
  (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;

export function putU32(b: Uint8Array, p: number, v: number): void {
  b[p] = v;
  b[p + 1] = v >>> 8;
  b[p + 2] = v >>> 16;
  b[p + 3] = v >>> 24;
}

// ---------------------------------------------------------------------------------------------
// Cancel slots (the pool claims one, the worker takes it before the task)

/** Claims a cancel slot of a worker for task `seq`. True when the worker will skip it. */
export function skip(ctl: Int32Array, seq: number): boolean {
  let slot = -1;
  for (let i = CANCEL; i < CANCEL + CANCEL_SLOTS; i++) {
    if (Atomics.compareExchange(ctl, i, 0, seq) === 0) {
      slot = i;
      break;
    }
  }
  if (slot < 0) return false; // no free slot: the task runs, its result is dropped
  Atomics.store(ctl, CANCEL_HINT, 1);
  // Store the slot, then load STARTED; the worker stores STARTED, then loads the slots. One of
  // the two sees the other's store: either the worker skips the task, or we see it started. A
  // recall mark `-last` counts as `last`: the tasks up to it that the worker still holds are
  // those it had begun (the others were taken back), those after it it has not begun.
  if (startedOf(ctl) < seq) {
    Atomics.notify(ctl, CANCEL_HINT); // an OS-process worker's relay waits here (os_pool.ts)
    return true;
  }
  // Started, or about to be: take the slot back. If the worker took it first, it skipped.
  return Atomics.compareExchange(ctl, slot, seq, 0) !== seq;
}

/** Takes the cancel slot holding `seq`, if any. */
export function cancelled(ctl: Int32Array, seq: number): boolean {
  for (let i = CANCEL; i < CANCEL + CANCEL_SLOTS; i++) {
    if (Atomics.load(ctl, i) === seq && Atomics.compareExchange(ctl, i, seq, 0) === seq) {
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Errors on the wire (both sides)

/**
 * How a chunk is encoded, its items by the parent and its results by the worker: as a list
 * (`EncodeOptions.list`), whose array's own named properties are not items.
 */
export const LIST: EncodeOptions = { list: true };

/** A chunk-relative serialization path (`chunk[3].x`) made absolute (`iterable[1003].x`). */
export function chunkPath(e: unknown, start: number, root: string): unknown {
  if (!(e instanceof SerializationError)) return e;
  const m = e.path.match(/^chunk\[(\d+)\](.*)$/);
  if (!m) return e;
  const reason = e.message.slice(e.path.length + 2);
  return new SerializationError(`${root}[${start + Number(m[1])}]${m[2]}`, reason);
}

export function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
