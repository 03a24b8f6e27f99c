/**
 * Semaphores (Python's `Semaphore` and `BoundedSemaphore`): a count of permits in a block of the
 * shared heap, with a small table of the permits each process holds.
 *
 * Why the table: a waiter that runs out of permits reclaims those of dead processes, so a worker
 * that dies holding a permit does not shrink the semaphore for good. An entry is one word (slot
 * and count), claimed, changed and freed by its process and taken whole by a reclaimer once that
 * process is dead, each by one compare-exchange against the entry seen; a release takes the
 * permit off its own account before giving it (see `mod.ts`, "The rules the code follows").
 *
 * @module
 */

import {
  ACQUIRED,
  type AcquireResult,
  LIVENESS_SLICE_MS,
  OWNER_DIED,
  remainingMs,
  runAsync,
  runSync,
  TIMED_OUT,
  type Waits,
} from "../core/atomics.ts";
import {
  checkFence,
  checkNotTerminated,
  fenceView,
  heap,
  isAlive,
  isTerminatedError,
} from "../core/heap.ts";
import { ValueError } from "../core/errors.ts";
import { registerHandle } from "../core/reduction.ts";
import { type Holder, inspectors, observed } from "../core/waitfor.ts";
import { __testHooks } from "./hooks.ts";
import {
  acquireBegins,
  type Acquired,
  acquireDeadline,
  type AcquireOptions,
  acquireSyncBegins,
  attach,
  block,
  type BlockingAcquireOptions,
  Holds,
  nameOf,
  type ObjectOptions,
  objectOptions,
  share,
  words,
} from "./primitive.ts";

/** Options of `new Semaphore({ value, name })` (and `BoundedSemaphore`). */
export interface SemaphoreOptions extends ObjectOptions {
  /** The number of permits (default 1). */
  value?: number;
}

/**
 * Semaphore words: the value, how many wait, the bound (-1: none), then HOLDERS entries of one
 * word each, `slot << COUNT_BITS | permits`: which process holds how many permits (0: free), so
 * that permits of a dead process can be given back. Slot and count share one word so that every
 * change of an entry is one compare-exchange against the whole entry seen: with two words, a
 * holder declared dead but still running could check "this entry is mine", then change a count
 * that a reclaimer had taken and another process had claimed for its own since (issue 24).
 */
const S_VALUE = 0, S_WAITING = 1, S_BOUND = 2, S_TABLE = 4, HOLDERS = 16;
const S_BYTES = (S_TABLE + HOLDERS) * 4;
/** An entry's low bits count permits (at most COUNT_MAX per entry); slots fit the rest. */
const COUNT_BITS = 12, COUNT_MAX = (1 << COUNT_BITS) - 1;
const holderOf = (entry: number) => entry >>> COUNT_BITS;
let semOf!: (s: Semaphore) => number;

/**
 * A counting semaphore (Python's `Semaphore`): `acquire()` takes one of `value` permits,
 * waiting while there is none; `release()` gives one back.
 *
 * Dead holders: the semaphore notes how many permits each process took (for up to 16 processes
 * at a time) and a waiter that finds no permit takes back those of processes that have died
 * (that acquire then has `ownerDied === true`). A permit released by another process than the
 * one that took it counts as a plain release: the taker keeps it on its account, so if it then
 * dies, that permit is returned once too many. Best not to combine the two patterns with the
 * same semaphore.
 *
 * @example
 * ```ts
 * import { Semaphore } from "jsr:@denomp/multiprocessing";
 * const sem = new Semaphore(2);
 * await sem.acquire();
 * await sem.acquire();
 * console.assert(sem.getValue() === 0);
 * console.assert(await sem.acquire({ block: false }) === false);
 * sem.release();
 * console.assert(sem.getValue() === 1);
 * ```
 */
export class Semaphore {
  #off: number;
  #i32: Int32Array;
  #slot: number;
  /** Where this process's entry in the holder table was last seen (a hint). */
  #entry = S_TABLE;
  #holds: Holds = new Holds(this);
  /** This process's fence word (core/heap.ts `fenceView`), read by every acquire. */
  #fence: Int32Array = fenceView();

  /** Creates a semaphore with `value` permits (an integer >= 0), or from options. */
  constructor(value: number | SemaphoreOptions = 1) {
    const o = typeof value === "object" ? objectOptions(value, `new ${new.target.name}`) : {};
    if (typeof value === "object") value = (o as SemaphoreOptions).value ?? 1;
    if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
      throw new ValueError(`semaphore initial value must be >= 0: current value is ${value}`);
    }
    const kind = this instanceof BoundedSemaphore ? "BoundedSemaphore" : "Semaphore";
    const b = block(this, S_BYTES, kind, o);
    this.#off = b.off;
    this.#i32 = b.i32;
    this.#slot = heap().slot;
    if (b.fresh) {
      Atomics.store(b.i32, S_BOUND, this instanceof BoundedSemaphore ? value : -1);
      Atomics.store(b.i32, S_VALUE, value);
    }
  }

  static {
    semOf = (s) => s.#off;
  }

  /** True when the last acquire through this object took back permits of a dead process. */
  get ownerDied(): boolean {
    return this.#holds.ownerDied;
  }

  /** Takes a permit, waiting for one if needed. */
  acquire(options?: BlockingAcquireOptions): Promise<Acquired>;
  /** Takes a permit; `false` on a `block: false` miss or a timeout. */
  acquire(options: AcquireOptions): Promise<Acquired | false>;
  acquire(options?: AcquireOptions): Promise<Acquired | false> {
    try {
      acquireBegins(options, "Semaphore.acquire", this.#fence);
      const holds = this.#holds;
      if (this.#take()) return Promise.resolve(holds.took(ACQUIRED));
      const deadline = acquireDeadline(options);
      if (deadline === 0) return Promise.resolve(holds.took(runSync(this.#waits(0))));
      const waits = observed(this.#off, this.#waits(deadline), true);
      return runAsync(waits, options?.signal).then((r) => holds.took(r));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Takes a permit, blocking the thread (for CPU-bound code in a worker). */
  acquireSync(options?: BlockingAcquireOptions): Acquired;
  /** Takes a permit, blocking the thread; `false` on a miss or timeout. */
  acquireSync(options: AcquireOptions): Acquired | false;
  acquireSync(options?: AcquireOptions): Acquired | false {
    acquireSyncBegins(options, "Semaphore.acquireSync", this.#fence);
    if (this.#take()) return this.#holds.took(ACQUIRED);
    const waits = observed(this.#off, this.#waits(acquireDeadline(options)), true);
    return this.#holds.took(runSync(waits));
  }

  /** Takes a permit if there is one, and notes it on this process's account. */
  #take(): boolean {
    const i32 = this.#i32;
    // A plain read is only a guess; the compareExchange decides.
    for (let v = i32[S_VALUE]; v > 0; v = Atomics.load(i32, S_VALUE)) {
      if (Atomics.compareExchange(i32, S_VALUE, v, v - 1) === v) {
        this.#account(1);
        return true;
      }
    }
    return false;
  }

  /**
   * Notes `delta` permits on this process's account. Returns false when a release (-1) finds
   * nothing on account: a plain signal, or the account was reclaimed because this process was
   * declared dead. Each change is one compare-exchange against the entry seen (slot and count
   * together): only a reclaimer changes an entry of another process, and only once that
   * process is dead, so a failed exchange means a dead process's entry was taken meanwhile.
   */
  #account(delta: 1 | -1): boolean {
    const i32 = this.#i32, me = this.#slot;
    // An entry of this process that can take `delta` (the hint first, then the table).
    const full = delta > 0 ? COUNT_MAX : -1, hint = this.#entry;
    for (;;) {
      let e = hint, seen = Atomics.load(i32, hint), free = -1;
      // The entry this process freed last is most likely free still: claimed again without a
      // scan (a second entry of this process elsewhere would be harmless).
      if (seen === 0 && delta > 0) {
        e = -1;
        free = hint;
      } else if (seen === 0 || holderOf(seen) !== me || (seen & COUNT_MAX) === full) {
        e = -1;
        for (let k = S_TABLE; k < S_TABLE + HOLDERS && e < 0; k++) {
          const w = Atomics.load(i32, k);
          if (w !== 0 && holderOf(w) === me && (w & COUNT_MAX) !== full) e = k, seen = w;
          else if (w === 0 && free < 0) free = k;
        }
      }
      if (e >= 0) {
        __testHooks.semaphoreAccount?.();
        // The last permit frees the entry in the same exchange.
        const next = delta < 0 && (seen & COUNT_MAX) === 1 ? 0 : seen + delta;
        if (Atomics.compareExchange(i32, e, seen, next) === seen) {
          this.#entry = e;
          return true;
        }
        if (delta < 0) return false; // taken by a reclaimer: this process was declared dead
        continue;
      }
      // A full table leaves a permit untracked.
      if (delta < 0 || free < 0) return false;
      if (Atomics.compareExchange(i32, free, 0, (me << COUNT_BITS) | 1) === 0) {
        this.#entry = free;
        return true;
      }
    }
  }

  /** Takes back the permits of dead processes; returns how many. */
  #reclaim(): number {
    const i32 = this.#i32;
    let got = 0;
    for (let e = S_TABLE; e < S_TABLE + HOLDERS; e++) {
      const w = Atomics.load(i32, e);
      if (w === 0 || isAlive(holderOf(w))) continue;
      __testHooks.semaphoreReclaim?.();
      // Entry and count are taken in one exchange against the entry just read: if another
      // waiter took it meanwhile and a live process claimed it for its own, this fails (ABA).
      if (Atomics.compareExchange(i32, e, w, 0) !== w) continue;
      // Given at once, not summed over the table: a reclaimer stopped in between loses less.
      this.#give(w & COUNT_MAX, true);
      got += w & COUNT_MAX;
    }
    return got;
  }

  /**
   * Adds `n` permits and wakes as many waiters. Past the bound, permits given back by
   * `reclaimed` dead holders are capped; a release throws `ValueError`, as in Python.
   */
  #give(n: number, reclaimed: boolean): void {
    const i32 = this.#i32, bound = Atomics.load(i32, S_BOUND);
    for (;;) {
      const v = Atomics.load(i32, S_VALUE);
      let next = v + n;
      if (bound >= 0 && next > bound) {
        if (!reclaimed) throw new ValueError("semaphore or lock released too many times");
        next = bound;
      }
      if (Atomics.compareExchange(i32, S_VALUE, v, next) === v) break;
    }
    if (Atomics.load(i32, S_WAITING) > 0) Atomics.notify(i32, S_VALUE, n);
  }

  *#waits(deadline: number): Waits<AcquireResult> {
    const i32 = this.#i32;
    let died = false;
    Atomics.add(i32, S_WAITING, 1);
    try {
      for (;;) {
        checkNotTerminated(); // also after each sleep: a zombie must not take a permit
        if (this.#take()) return died ? OWNER_DIED : ACQUIRED;
        if (this.#reclaim() > 0) {
          died = true;
          continue;
        }
        const left = remainingMs(deadline);
        if (left <= 0) {
          // A release may have woken this waiter just as it gave up: pass the wake-up on.
          if (Atomics.load(i32, S_VALUE) > 0) Atomics.notify(i32, S_VALUE, 1);
          return TIMED_OUT;
        }
        yield { i32, index: S_VALUE, value: 0, ms: Math.min(left, LIVENESS_SLICE_MS) };
      }
    } catch (e) {
      // A zombie stopped by the fence passes on the wake-up it may have consumed.
      if (isTerminatedError(e) && Atomics.load(i32, S_VALUE) > 0) Atomics.notify(i32, S_VALUE, 1);
      throw e;
    } finally {
      Atomics.sub(i32, S_WAITING, 1);
    }
  }

  /**
   * Gives back `n` permits (default 1), waking as many waiters. A `BoundedSemaphore` throws
   * `ValueError` (`semaphore or lock released too many times`) past its initial value.
   */
  release(n = 1): void {
    if (!Number.isInteger(n) || n < 1) {
      throw new ValueError(`n must be an integer >= 1: current value is ${n}`);
    }
    checkFence(this.#fence);
    // Off this process's account first, then given. A permit missing from the account either
    // was never on it (a plain signal) or was taken back by a reclaimer after this process was
    // declared dead: the fence tells which, so that a zombie does not give it a second time.
    let off = 0;
    while (off < n && this.#account(-1)) off++;
    if (off < n) checkFence(this.#fence);
    try {
      this.#give(n, false);
    } catch (e) {
      while (off-- > 0) this.#account(1); // released too many times: nothing was released
      throw e;
    }
  }

  /** The number of permits available now. */
  getValue(): number {
    return Atomics.load(this.#i32, S_VALUE);
  }

  /** True when no permit is available (an `acquire()` would wait). */
  locked(): boolean {
    return this.getValue() === 0;
  }

  /** A short description, like Python's repr. */
  toString(): string {
    const bound = Atomics.load(this.#i32, S_BOUND);
    return `<${this.constructor.name}(value=${this.getValue()}${
      bound >= 0 ? `, maxvalue=${bound}` : ""
    }${nameOf(this.#off)})>`;
  }
}

/**
 * A semaphore that may not be released past its initial value (Python's `BoundedSemaphore`):
 * one release too many throws `ValueError` (`semaphore or lock released too many times`).
 *
 * @example
 * ```ts
 * import { BoundedSemaphore } from "jsr:@denomp/multiprocessing";
 * import { ValueError } from "jsr:@denomp/multiprocessing";
 * const sem = new BoundedSemaphore(1);
 * await sem.acquire();
 * sem.release();
 * try {
 *   sem.release();
 * } catch (e) {
 *   console.assert(e instanceof ValueError);
 * }
 * ```
 */
export class BoundedSemaphore extends Semaphore {
  /** Creates a bounded semaphore with `value` permits, at most `value` at any time. */
  constructor(value: number | SemaphoreOptions = 1) {
    super(value);
  }
}

for (
  const [name, cls] of [["Semaphore", Semaphore], ["BoundedSemaphore", BoundedSemaphore]] as const
) {
  registerHandle<Semaphore, number>({
    name,
    module: import.meta.url,
    cls,
    reduce: (s) => share(semOf(s)),
    rebuild: (off) => attach(off, () => new cls()),
  });
}

// What snapshot() reads of a semaphore: its live words, read by any process.

const semaphore = (off: number) => {
  const i32 = words(off, S_BYTES >> 2), holders: Holder[] = [];
  for (let e = S_TABLE; e < S_TABLE + HOLDERS; e++) {
    const w = Atomics.load(i32, e);
    const slot = holderOf(w); // a process past COUNT_MAX permits has several entries
    if (w !== 0 && !holders.some((h) => h.slot === slot)) holders.push({ slot, ident: 0 });
  }
  const bound = Atomics.load(i32, S_BOUND);
  return {
    holders,
    state: { value: Atomics.load(i32, S_VALUE), ...(bound >= 0 ? { bound } : {}) },
  };
};
inspectors.set("Semaphore", semaphore);
inspectors.set("BoundedSemaphore", semaphore);
