/**
 * Locks (Python's `multiprocessing.Lock` and `RLock`): a robust futex mutex in a block of the
 * shared heap, plain or reentrant, that works between the Threads of an isolate, between
 * workers, and between both mixed.
 *
 * Robustness: a lock records the process slot of its holder. A waiter that finds that process
 * dead (terminated, crashed, or a descendant of a dead one) takes the lock over; the acquire
 * succeeds and `ownerDied` is true. Ownership is checked in the same compare-exchange that
 * releases (see `mod.ts`, "The rules the code follows").
 *
 * Both live here because a reentrant lock is the same mutex with its owner's thread and
 * recursion count beside it, and because a `Condition` needs the same few operations of either
 * (Python's `_is_owned`, `_release_save`, `_acquire_restore`: `condLock`), which touch their
 * words.
 *
 * @module
 */

import {
  type AcquireResult,
  mutexLocked,
  mutexOwner,
  mutexRelease,
  OWNER_DIED,
  ownerOf,
  TIMED_OUT,
  type Waits,
} from "../core/atomics.ts";
import { checkFence, checkNotTerminated, fenceView, heap, SLOT_ALIVE } from "../core/heap.ts";
import { ValueError } from "../core/errors.ts";
import { registerHandle } from "../core/reduction.ts";
import { getIdent } from "../core/threading.ts";
import { inspectors } from "../core/waitfor.ts";
import {
  acquireBegins,
  type Acquired,
  type AcquireOptions,
  acquireSyncBegins,
  attach,
  block,
  type BlockingAcquireOptions,
  Holds,
  mutexAcquireRest,
  mutexAcquireRestSync,
  mutexHolders,
  mutexWaitsFenced,
  nameOf,
  type ObjectOptions,
  objectOptions,
  share,
  words,
} from "./primitive.ts";

/**
 * Lock words: the robust futex mutex, and the ident of the thread that took it last (for
 * Condition's ownership check, valid while the mutex names this process). It is written by the
 * holder only, under the mutex, and only when it changes: the hot path stores nothing but the
 * mutex word, whose atomic operations order everything else.
 */
const L_MUTEX = 0, L_THREAD = 1;
export let lockOf!: (l: Lock) => { off: number; i32: Int32Array };

/**
 * A mutual-exclusion lock (Python's `multiprocessing.Lock` / `threading.Lock`). Not reentrant:
 * acquiring it again from its holder waits (use {@link RLock} for that). Any thread or process
 * may release it, as in Python.
 *
 * Fairness: the lock goes to whoever asks first (cheap under short critical sections), but a
 * waiter kept out for more than a millisecond makes the next release hand it over, oldest
 * waiter first.
 *
 * Timeouts are in milliseconds; `acquire({ block: false, timeout })` ignores the timeout, as in
 * Python's `multiprocessing`.
 *
 * @example
 * ```ts
 * import { Lock } from "jsr:@denomp/multiprocessing";
 * const lock = new Lock();
 * {
 *   using _ = await lock.acquire();
 *   console.assert(lock.locked());
 * }
 * console.assert(!lock.locked());
 * console.assert((await lock.acquire({ block: false })) !== false);
 * console.assert(await lock.acquire({ timeout: 10 }) === false);
 * lock.release();
 * ```
 */
export class Lock {
  #off: number;
  #i32: Int32Array;
  #slot: number;
  #holds: Holds = new Holds(this);
  /** This process's fence word (core/heap.ts `fenceView`), read by every acquire and release. */
  #fence: Int32Array = fenceView();

  /** Creates an unlocked lock in shared memory (options: `name`, `detectDeadlock`). */
  constructor(options?: ObjectOptions) {
    const b = block(this, 8, "Lock", objectOptions(options, "new Lock"));
    this.#off = b.off;
    this.#i32 = b.i32;
    this.#slot = heap().slot;
  }

  static {
    lockOf = (l) => ({ off: l.#off, i32: l.#i32 });
  }

  /** True when the last acquire through this object took over from a holder that died. */
  get ownerDied(): boolean {
    return this.#holds.ownerDied;
  }

  /**
   * Acquires the lock. Resolves to an {@link Acquired} (release it, or let `using` dispose it),
   * or `false` on a `block: false` miss or a timeout.
   */
  acquire(options?: BlockingAcquireOptions): Promise<Acquired>;
  /** Acquires the lock; `false` on a `block: false` miss or a timeout. */
  acquire(options: AcquireOptions): Promise<Acquired | false>;
  acquire(options?: AcquireOptions): Promise<Acquired | false> {
    try {
      if (options !== undefined || this.#fence[0] !== SLOT_ALIVE) {
        acquireBegins(options, "Lock.acquire", this.#fence);
      }
      const i32 = this.#i32, me = this.#slot;
      if (Atomics.compareExchange(i32, L_MUTEX, 0, me) === 0) {
        tookThread(i32, L_THREAD, getIdent());
        return Promise.resolve(this.#holds.acquired());
      }
      const r = mutexAcquireRest(this.#off, i32, L_MUTEX, me, options);
      return typeof r === "number" ? Promise.resolve(this.#took(r)) : r.then((r) => this.#took(r));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Acquires the lock, blocking the thread (for CPU-bound code in a worker). Returns an
   * {@link Acquired}, or `false` on a `block: false` miss or a timeout.
   */
  acquireSync(options?: BlockingAcquireOptions): Acquired;
  /** Acquires the lock, blocking the thread; `false` on a miss or timeout. */
  acquireSync(options: AcquireOptions): Acquired | false;
  acquireSync(options?: AcquireOptions): Acquired | false {
    // The hot path is written out (no options, fence open, mutex free), here and in the other
    // three acquires: the helper is called only when there is something to check. Against the
    // helper called always, 2-3% more uncontended Sync acquire+release pairs (12 processes each,
    // interleaved); with the `#took` layers gone too, ~5% more than before.
    if (options !== undefined || this.#fence[0] !== SLOT_ALIVE) {
      acquireSyncBegins(options, "Lock.acquireSync", this.#fence);
    }
    const i32 = this.#i32, me = this.#slot, word = Atomics.compareExchange(i32, L_MUTEX, 0, me);
    if (word === 0) {
      tookThread(i32, L_THREAD, getIdent());
      return this.#holds.acquired();
    }
    return this.#took(mutexAcquireRestSync(this.#off, i32, L_MUTEX, me, word, options));
  }

  /** Notes the thread that took the lock (for Condition), then the guard. */
  #took(r: AcquireResult): Acquired | false {
    if (r !== TIMED_OUT) tookThread(this.#i32, L_THREAD, getIdent());
    return this.#holds.took(r);
  }

  /**
   * Releases the lock (any thread or process may, as in Python); `ValueError` (`semaphore or
   * lock released too many times`, multiprocessing's wording) if it is not locked.
   */
  release(): void {
    const i32 = this.#i32, slot = this.#slot;
    // Fast path: held by this process, nobody waiting. Anything else goes the long way.
    if (this.#fence[0] === SLOT_ALIVE && Atomics.compareExchange(i32, L_MUTEX, slot, 0) === slot) {
      return;
    }
    checkFence(this.#fence);
    for (;;) {
      const word = Atomics.load(i32, L_MUTEX);
      if (word === 0) throw new ValueError("semaphore or lock released too many times");
      // Released as the holder seen here, by one compare-exchange: should that holder be
      // declared dead and the lock taken over in between, the new holder keeps it.
      if (mutexRelease(i32, L_MUTEX, ownerOf(word))) return;
    }
  }

  /** True when some thread or process holds the lock. */
  locked(): boolean {
    return mutexLocked(this.#i32, L_MUTEX);
  }

  /** A short description, like Python's repr. */
  toString(): string {
    const state = this.locked() ? `owner=${mutexOwner(this.#i32, L_MUTEX)}` : "unlocked";
    return `<Lock(${state}${nameOf(this.#off)})>`;
  }
}

/** Notes `me` as the thread holding the lock: written only when it changes (see L_THREAD). */
function tookThread(i32: Int32Array, index: number, me: number): void {
  if (i32[index] !== me) i32[index] = me;
}

registerHandle<Lock, number>({
  name: "Lock",
  module: import.meta.url,
  cls: Lock,
  reduce: (l) => share(lockOf(l).off),
  rebuild: (off) => attach(off, () => new Lock()),
});

// ---------------------------------------------------------------------------------------------
// RLock

/**
 * RLock words: the mutex; the ident of the thread that took it last (unique per run; it is the
 * owner while the mutex names this process); the recursion levels beyond the first (0 whenever
 * the lock is free). The owner alone writes the last two, under the mutex and only when they
 * change, so a plain acquire/release stores nothing but the mutex word.
 */
const R_MUTEX = 0, R_THREAD = 1, R_COUNT = 2;
export let rlockOf!: (l: RLock) => { off: number; i32: Int32Array };

/**
 * A reentrant lock (Python's `RLock`): its owner, one thread of one process, may acquire it
 * again; it is free once released as many times. Only the owner may release it.
 *
 * @example
 * ```ts
 * import { RLock } from "jsr:@denomp/multiprocessing";
 * const lock = new RLock();
 * await lock.acquire();
 * await lock.acquire(); // the owner again: no wait
 * lock.release();
 * console.assert(lock.locked());
 * lock.release();
 * console.assert(!lock.locked());
 * ```
 */
export class RLock {
  #off: number;
  #i32: Int32Array;
  #slot: number;
  #holds: Holds = new Holds(this);
  /** This process's fence word (core/heap.ts `fenceView`), read by every acquire and release. */
  #fence: Int32Array = fenceView();

  /** Creates an unlocked reentrant lock in shared memory (options: `name`, `detectDeadlock`). */
  constructor(options?: ObjectOptions) {
    const b = block(this, 12, "RLock", objectOptions(options, "new RLock"));
    this.#off = b.off;
    this.#i32 = b.i32;
    this.#slot = heap().slot;
  }

  static {
    rlockOf = (l) => ({ off: l.#off, i32: l.#i32 });
  }

  /** True when the last acquire through this object took over from a holder that died. */
  get ownerDied(): boolean {
    return this.#holds.ownerDied;
  }

  /** Acquires the lock (at once if the current thread owns it). */
  acquire(options?: BlockingAcquireOptions): Promise<Acquired>;
  /** Acquires the lock; `false` on a `block: false` miss or a timeout. */
  acquire(options: AcquireOptions): Promise<Acquired | false>;
  acquire(options?: AcquireOptions): Promise<Acquired | false> {
    try {
      if (options !== undefined || this.#fence[0] !== SLOT_ALIVE) {
        acquireBegins(options, "RLock.acquire", this.#fence);
      }
      const i32 = this.#i32, me = getIdent(), slot = this.#slot;
      const word = Atomics.compareExchange(i32, R_MUTEX, 0, slot);
      if (word === 0) {
        tookThread(i32, R_THREAD, me);
        return Promise.resolve(this.#holds.acquired());
      }
      if (ownerOf(word) === slot && i32[R_THREAD] === me) {
        i32[R_COUNT]++;
        return Promise.resolve(this.#holds.held);
      }
      const r = mutexAcquireRest(this.#off, i32, R_MUTEX, slot, options);
      return typeof r === "number"
        ? Promise.resolve(this.#took(r, me))
        : r.then((r) => this.#took(r, me));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Acquires the lock, blocking the thread (for CPU-bound code in a worker). */
  acquireSync(options?: BlockingAcquireOptions): Acquired;
  /** Acquires the lock, blocking the thread; `false` on a miss or timeout. */
  acquireSync(options: AcquireOptions): Acquired | false;
  acquireSync(options?: AcquireOptions): Acquired | false {
    if (options !== undefined || this.#fence[0] !== SLOT_ALIVE) {
      acquireSyncBegins(options, "RLock.acquireSync", this.#fence);
    }
    const i32 = this.#i32, me = getIdent(), slot = this.#slot;
    const word = Atomics.compareExchange(i32, R_MUTEX, 0, slot);
    if (word === 0) {
      tookThread(i32, R_THREAD, me);
      return this.#holds.acquired();
    }
    // Recursion: decided from the word just read, without touching the contended line again.
    if (ownerOf(word) === slot && i32[R_THREAD] === me) {
      i32[R_COUNT]++;
      return this.#holds.held;
    }
    return this.#took(mutexAcquireRestSync(this.#off, i32, R_MUTEX, slot, word, options), me);
  }

  /** True when thread `me` of this process holds the lock. */
  #mine(me: number): boolean {
    // Only this isolate can make the mutex name its slot, and it runs one thing at a time. So a
    // plain read is enough (and much cheaper than Atomics.load here): it cannot show this slot
    // unless this isolate holds the lock, because this isolate's own last write to the word is
    // either its acquire or its release.
    return ownerOf(this.#i32[R_MUTEX]) === this.#slot && this.#i32[R_THREAD] === me;
  }

  /** Notes the owning thread (and drops the levels of a holder that died), then the guard. */
  #took(r: AcquireResult, me: number): Acquired | false {
    if (r !== TIMED_OUT) tookThread(this.#i32, R_THREAD, me);
    if (r === OWNER_DIED) this.#i32[R_COUNT] = 0; // the levels of the holder that died
    return this.#holds.took(r);
  }

  /**
   * Releases one level of ownership; `ValueError` (`cannot release un-acquired lock`) unless the
   * current thread owns the lock.
   */
  release(): void {
    checkFence(this.#fence);
    const i32 = this.#i32, slot = this.#slot;
    if (!this.#mine(getIdent())) throw new ValueError("cannot release un-acquired lock");
    const levels = i32[R_COUNT];
    if (levels > 0) {
      i32[R_COUNT] = levels - 1;
      return;
    }
    if (Atomics.compareExchange(i32, R_MUTEX, slot, 0) === slot) return;
    // Only as its owner: if this process was declared dead since the check above and the lock
    // taken over, the new owner keeps it (and this zombie meets the fence).
    if (!mutexRelease(i32, R_MUTEX, slot)) {
      checkNotTerminated();
      throw new ValueError("cannot release un-acquired lock");
    }
  }

  /** True when some thread holds the lock. */
  locked(): boolean {
    return mutexLocked(this.#i32, R_MUTEX);
  }

  /** A short description, like Python's repr. */
  toString(): string {
    const i32 = this.#i32;
    return this.locked()
      ? `<RLock(owner=${Atomics.load(i32, R_THREAD)}, count=${Atomics.load(i32, R_COUNT) + 1})>`
      : "<RLock(unlocked)>";
  }
}

registerHandle<RLock, number>({
  name: "RLock",
  module: import.meta.url,
  cls: RLock,
  reduce: (l) => share(rlockOf(l).off),
  rebuild: (off) => attach(off, () => new RLock()),
});

/** What a Condition needs from its lock (Python's `_is_owned`, `_release_save`, ...). */
export interface CondLock {
  owned(): boolean;
  /** Releases the lock completely; returns what `restore` needs to take it back. */
  releaseSave(): number;
  /** Takes the lock back (no timeout) and restores the recursion level. */
  restore(saved: number): Waits<void>;
}

export function condLock(lock: Lock | RLock): CondLock {
  if (lock instanceof RLock) {
    const { i32 } = rlockOf(lock);
    return {
      owned: () =>
        mutexOwner(i32, R_MUTEX) === heap().slot && Atomics.load(i32, R_THREAD) === getIdent(),
      releaseSave: () => {
        const levels = i32[R_COUNT] + 1;
        i32[R_COUNT] = 0;
        mutexRelease(i32, R_MUTEX, heap().slot);
        return levels;
      },
      restore: function* (levels) {
        yield* mutexWaitsFenced(i32, R_MUTEX, heap().slot, Infinity);
        i32[R_COUNT] = levels - 1;
        i32[R_THREAD] = getIdent();
      },
    };
  }
  const { i32 } = lockOf(lock);
  return {
    owned: () =>
      mutexOwner(i32, L_MUTEX) === heap().slot && Atomics.load(i32, L_THREAD) === getIdent(),
    releaseSave: () => {
      lock.release();
      return 1;
    },
    restore: function* () {
      yield* mutexWaitsFenced(i32, L_MUTEX, heap().slot, Infinity);
      i32[L_THREAD] = getIdent();
    },
  };
}

// What snapshot() reads of a lock: its live words, read by any process.

inspectors.set("Lock", (off) => {
  const i32 = words(off, 2);
  return { holders: mutexHolders(i32, L_MUTEX, L_THREAD), state: { locked: mutexLocked(i32, 0) } };
});
inspectors.set("RLock", (off) => {
  const i32 = words(off, 3), locked = mutexLocked(i32, R_MUTEX);
  return {
    holders: mutexHolders(i32, R_MUTEX, R_THREAD),
    state: { locked, count: locked ? Atomics.load(i32, R_COUNT) + 1 : 0 },
  };
});
