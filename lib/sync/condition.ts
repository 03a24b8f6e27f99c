/**
 * Condition variables (Python's `Condition`): a FIFO of waiters in the shared heap, over a
 * `Lock` or an `RLock`.
 *
 * Why a list of waiter blocks rather than one word to sleep on: each waiter sleeps on its own
 * flag, so `notify(n)` wakes exactly the `n` oldest and no herd. The list changes only under the
 * condition's lock, so it needs no lock of its own. A waiter declared dead while it waited (a
 * zombie) neither takes its lock back nor unlinks itself; `notify` drops the blocks of dead
 * waiters.
 *
 * @module
 */

import { deadlineOf, remainingMs, runAsync, runSync, type Waits } from "../core/atomics.ts";
import {
  alloc,
  checkNotTerminated,
  heap,
  isAlive,
  isTerminatedError,
  release,
} from "../core/heap.ts";
import { objectName } from "../core/observe.ts";
import { ValueError } from "../core/errors.ts";
import { registerHandle } from "../core/reduction.ts";
import { inspectors, observed } from "../core/waitfor.ts";
import { type CondLock, condLock, Lock, lockOf, RLock, rlockOf } from "./lock.ts";
import {
  type Acquired,
  type AcquireOptions,
  attach,
  block,
  type BlockingAcquireOptions,
  checkAcquireOptions,
  mutexHolders,
  nameOf,
  type ObjectOptions,
  objectOptions,
  share,
  waitArgs,
  type WaitOptions,
  words,
} from "./primitive.ts";

/** Options of `new Condition({ lock, name })`. */
export interface ConditionOptions extends Pick<ObjectOptions, "name"> {
  /** The lock it is over (default: a new `RLock`). */
  lock?: Lock | RLock;
}

/**
 * Condition words: head and tail of a FIFO of waiter blocks (heap offsets), each waiter block
 * being [flag, next, slot]. The list changes only under the condition's lock, so it needs no
 * lock of its own; each waiter sleeps on its own flag, so `notify(n)` wakes exactly n waiters
 * (the oldest) and no herd.
 */
const C_HEAD = 0, C_TAIL = 1, C_LOCK = 2;
const W_FLAG = 0, W_NEXT = 1, W_SLOT = 2;
let condOf!: (c: Condition) => { off: number; lock: Lock | RLock };

/**
 * A condition variable (Python's `Condition`), over a `Lock` or `RLock` (a new `RLock` by
 * default). `wait`, `waitFor`, `notify` and `notifyAll` need the lock held by the current
 * thread, else they throw `ValueError`.
 *
 * @example
 * ```ts
 * import { Condition } from "jsr:@denomp/multiprocessing";
 * import { Thread } from "jsr:@denomp/multiprocessing";
 * const cond = new Condition();
 * const items: number[] = [];
 * const consumer = new Thread({ target: async () => {
 *   using _ = await cond.acquire();
 *   await cond.waitFor(() => items.length > 0);
 *   console.assert(items.shift() === 42);
 * } });
 * consumer.start();
 * {
 *   using _ = await cond.acquire();
 *   items.push(42);
 *   cond.notify();
 * }
 * await consumer.join();
 * ```
 */
export class Condition {
  #off: number;
  #i32: Int32Array;
  #lock: Lock | RLock;
  #ops: CondLock;

  /** Creates a condition over `lock` (default: a new `RLock`), or from options. */
  constructor(lock?: Lock | RLock | ConditionOptions) {
    let o: ConditionOptions | undefined;
    if (lock !== undefined && !(lock instanceof Lock) && !(lock instanceof RLock)) {
      if (typeof lock !== "object" || lock === null) {
        throw new TypeError("a Condition needs a Lock or an RLock");
      }
      o = objectOptions(lock, "new Condition");
      lock = o?.lock;
      if (lock !== undefined && !(lock instanceof Lock) && !(lock instanceof RLock)) {
        throw new TypeError("a Condition needs a Lock or an RLock");
      }
    }
    const b = block(this, 12, "Condition", o); // first: it consumes the block being attached
    this.#off = b.off;
    this.#i32 = b.i32;
    this.#lock = lock ?? new RLock(o?.name ? { name: `${o.name}.lock` } : undefined);
    this.#ops = condLock(this.#lock);
    // For snapshot(): which lock it is over.
    if (b.fresh) {
      b.i32[C_LOCK] = lock instanceof Lock ? lockOf(lock).off : rlockOf(this.#lock as RLock).off;
    }
  }

  static {
    condOf = (c) => ({ off: c.#off, lock: c.#lock });
  }

  /** Acquires the underlying lock. */
  acquire(options?: BlockingAcquireOptions): Promise<Acquired>;
  /** Acquires the underlying lock; `false` on a `block: false` miss or a timeout. */
  acquire(options: AcquireOptions): Promise<Acquired | false>;
  acquire(options?: AcquireOptions): Promise<Acquired | false> {
    try {
      if (options !== undefined) checkAcquireOptions(options, "Condition.acquire");
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#lock.acquire(options as AcquireOptions);
  }

  /** Acquires the underlying lock, blocking the thread. */
  acquireSync(options?: BlockingAcquireOptions): Acquired;
  /** Acquires the underlying lock, blocking the thread; `false` on a miss or timeout. */
  acquireSync(options: AcquireOptions): Acquired | false;
  acquireSync(options?: AcquireOptions): Acquired | false {
    if (options !== undefined) checkAcquireOptions(options, "Condition.acquireSync");
    return this.#lock.acquireSync(options as AcquireOptions);
  }

  /** Releases the underlying lock. */
  release(): void {
    this.#lock.release();
  }

  /**
   * Releases the lock, waits for a `notify` (or `timeout` milliseconds), takes the lock back.
   * Resolves `true` when notified, `false` on timeout.
   */
  wait(timeout?: number | WaitOptions): Promise<boolean> {
    try {
      const [deadline, signal] = waitArgs(timeout, "Condition.wait");
      checkNotTerminated();
      this.#check("wait on");
      return runAsync(observed(this.#off, this.#waits(deadline)), signal);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Like `wait()` (`timeout` in milliseconds), blocking the thread (for CPU-bound code). */
  waitSync(timeout?: number): boolean {
    const deadline = deadlineOf(timeout);
    checkNotTerminated();
    this.#check("wait on");
    return runSync(observed(this.#off, this.#waits(deadline)));
  }

  /**
   * Waits until `predicate()` is truthy (checked first, then after each wake-up) or `timeout`
   * milliseconds have passed; resolves with the predicate's last result.
   */
  async waitFor<T>(predicate: () => T | Promise<T>, timeout?: number): Promise<T> {
    const deadline = deadlineOf(timeout);
    let result = await predicate();
    while (!result) {
      const left = remainingMs(deadline);
      if (left <= 0) break;
      await this.wait(left === Infinity ? undefined : left);
      result = await predicate();
    }
    return result;
  }

  /** Like `waitFor()`, blocking the thread. */
  waitForSync<T>(predicate: () => T, timeout?: number): T {
    const deadline = deadlineOf(timeout);
    let result = predicate();
    while (!result) {
      const left = remainingMs(deadline);
      if (left <= 0) break;
      this.waitSync(left === Infinity ? undefined : left);
      result = predicate();
    }
    return result;
  }

  #check(what: string): void {
    if (!this.#ops.owned()) throw new ValueError(`cannot ${what} un-acquired lock`);
  }

  *#waits(deadline: number): Waits<boolean> {
    const h = heap(), w = alloc(12), wi = new Int32Array(h.sab, w, 3);
    wi[W_SLOT] = h.slot;
    this.#append(w);
    const saved = this.#ops.releaseSave();
    let notified = false, zombie = false;
    try {
      for (;;) {
        if (Atomics.load(wi, W_FLAG) !== 0) break;
        const left = remainingMs(deadline);
        if (left <= 0) break;
        yield { i32: wi, index: W_FLAG, value: 0, ms: left };
        checkNotTerminated();
      }
    } catch (e) {
      zombie = isTerminatedError(e);
      throw e;
    } finally {
      // A zombie (see core/heap.ts, "Zombies") neither takes the lock back nor touches the
      // list: its waiter block stays there for `notify`, which drops the blocks of dead waiters.
      if (!zombie) {
        // Also when aborted: the caller gets its lock back, and the list loses this waiter.
        yield* this.#ops.restore(saved);
        // Under the lock again: a notify that came after the timeout still counts as one.
        notified = Atomics.load(wi, W_FLAG) !== 0;
        if (!notified) this.#unlink(w);
        release(w);
      }
    }
    return notified;
  }

  #append(w: number): void {
    const i32 = this.#i32, heap32 = heap().i32;
    const tail = i32[C_TAIL];
    if (tail) heap32[(tail >> 2) + W_NEXT] = w;
    else i32[C_HEAD] = w;
    i32[C_TAIL] = w;
  }

  #unlink(w: number): void {
    const i32 = this.#i32, heap32 = heap().i32;
    let prev = 0;
    for (let cur = i32[C_HEAD]; cur; prev = cur, cur = heap32[(cur >> 2) + W_NEXT]) {
      if (cur !== w) continue;
      const next = heap32[(cur >> 2) + W_NEXT];
      if (prev) heap32[(prev >> 2) + W_NEXT] = next;
      else i32[C_HEAD] = next;
      if (i32[C_TAIL] === w) i32[C_TAIL] = prev;
      return;
    }
  }

  /** Wakes the `n` longest-waiting waiters (those still alive). */
  notify(n = 1): void {
    checkNotTerminated();
    this.#check("notify on");
    const i32 = this.#i32, heap32 = heap().i32;
    let woken = 0;
    while (woken < n && i32[C_HEAD]) {
      const w = i32[C_HEAD], wi = w >> 2;
      i32[C_HEAD] = heap32[wi + W_NEXT];
      if (!i32[C_HEAD]) i32[C_TAIL] = 0;
      heap32[wi + W_NEXT] = 0;
      if (!isAlive(heap32[wi + W_SLOT])) {
        release(w); // its process died waiting: drop the reference it held
        continue;
      }
      Atomics.store(heap32, wi + W_FLAG, 1);
      Atomics.notify(heap32, wi + W_FLAG, 1);
      woken++;
    }
  }

  /** Wakes every waiter. */
  notifyAll(): void {
    this.notify(Infinity);
  }

  /** A short description, like Python's repr. */
  toString(): string {
    return `<Condition(${this.#lock}${nameOf(this.#off)})>`;
  }
}

registerHandle<Condition, [number, Lock | RLock]>({
  name: "Condition",
  module: import.meta.url,
  cls: Condition,
  reduce: (c) => {
    const { off, lock } = condOf(c);
    return [share(off), lock];
  },
  rebuild: ([off, lock]) => attach(off, () => new Condition(lock)),
});

// What snapshot() reads of a condition: its live words, read by any process.

inspectors.set("Condition", (off) => {
  const lock = Atomics.load(words(off, 3), C_LOCK);
  // Lock and RLock both keep the mutex in word 0 and the holding thread in word 1.
  const holders = lock ? mutexHolders(words(lock, 2), 0, 1) : [];
  return { holders, blocking: false, state: { lock: lock ? objectName(lock) : "" } };
});
