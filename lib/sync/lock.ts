/**
 * Synchronization primitives (Python's `multiprocessing.synchronize` and `threading`): `Lock`,
 * `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition` and `Barrier`.
 *
 * Each primitive is a few words in a block of the shared heap, so one object works between the
 * Threads of an isolate, between workers, and between both mixed; a handle crosses to a worker
 * as the block's offset (in `Process` args, or inside any Queue/Pipe message). Waiting is
 * `Atomics.waitAsync` (the event loop keeps running) or, in the `...Sync` twins for CPU-bound
 * worker code, `Atomics.wait`; nothing polls with timers.
 *
 * Robustness: locks record the process slot of their holder. A waiter that finds that process
 * dead (terminated, crashed, or a descendant of a dead one) takes the lock over; the acquire
 * succeeds and `ownerDied` is true. Semaphores keep a small table of the permits each process
 * holds; a waiter that runs out of permits reclaims those of dead processes (see `Semaphore`).
 *
 * The rules the code follows, so that a take-over and a process that was declared dead but still
 * runs (a zombie: Deno cannot stop a worker inside synchronous code) never corrupt anything:
 * - The fence: every operation that changes shared state first calls `checkNotTerminated`
 *   (_heap.ts; one plain read, so it sits on the hot paths too), and every wait algorithm calls
 *   it again after each sleep (`fenced`). A zombie meets a `ProcessError` there, takes nothing
 *   it was waiting for, and leaves what it held to be taken over: a Condition waiter does not
 *   take its lock back nor unlink itself, a Barrier party neither counts itself out nor breaks
 *   the barrier. The one thing it gives back is what its wake-up brought: a mutex hand-over
 *   reserved for it, or a semaphore wake-up, which it passes on to another waiter.
 * - Ownership is checked in the same compare-exchange that releases: a lock is freed only by
 *   `mutexRelease(i32, i, owner)` against the holder seen (its own slot for RLock, Barrier and
 *   Condition; for Lock, which any process may release, the holder just read), never by "check,
 *   then release". A holder taken over in between keeps nothing, frees nothing.
 * - Who may clear what: a semaphore holder-table entry (a process's slot and how many permits it
 *   holds, in one word) is claimed, changed and freed by its process, and taken whole by a
 *   reclaimer once that process is dead: each by one compare-exchange against the entry seen,
 *   so a holder declared dead but still running changes nothing once its entry was taken, even
 *   if another process has claimed that entry since. An Event's flag is cleared only by `clear()`, and a waiter decides
 *   by the count of `set()`s, not by the flag, whether it was woken.
 * - A release takes the permit off its own account before giving it: a permit missing from the
 *   account was either never on it or reclaimed because this process was declared dead, and the
 *   fence tells which.
 *
 * Timeouts are in milliseconds everywhere; options objects are checked for their shape.
 *
 * @module
 */

import {
  ACQUIRED,
  type AcquireResult,
  deadlineOf,
  LIVENESS_SLICE_MS,
  mutexLocked,
  mutexOwner,
  mutexRelease,
  mutexWaits,
  OWNER_DIED,
  ownerOf,
  remainingMs,
  runAsync,
  runSync,
  type Sleep,
  TIMED_OUT,
  type WaitResult,
  type Waits,
} from "../core/atomics.ts";
import {
  adopt,
  alloc,
  checkNotTerminated,
  heap,
  isAlive,
  isTerminatedError,
  nextId,
  release,
  retain,
} from "../core/heap.ts";
import { optionsOf } from "../core/args.ts";
import {
  DETECT_DEADLOCK,
  forgetObject,
  type Kind,
  objectName,
  registerObject,
} from "../core/observe.ts";
import { __testHooks } from "./hooks.ts";
import { type Holder, inspectors, observed } from "../core/waitfor.ts";
import { BrokenBarrierError, ValueError } from "../core/errors.ts";
import { registerHandle } from "../core/reduction.ts";
import { getIdent } from "../core/threading.ts";

// ---------------------------------------------------------------------------------------------
// Shared pieces

/** Options of `acquire()`: `block: false` fails at once; `timeout` in ms; `signal` aborts. */
export interface AcquireOptions {
  /**
   * `false`: take it only if it is free now (Python's `block=False`); a `timeout` is then
   * ignored, as in Python's `multiprocessing`. Default `true`.
   */
  block?: boolean;
  /** Give up (resolve `false`) after this many milliseconds (not seconds, as in Python). */
  timeout?: number;
  /** Abort the wait: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Options of an `acquire()` that cannot time out, so it resolves to an {@link Acquired}. */
export interface BlockingAcquireOptions extends AcquireOptions {
  /** Blocks until acquired. */
  block?: true;
  /** No timeout. */
  timeout?: undefined;
}

/** Options of `wait()`: `timeout` in ms; `signal` aborts the wait. */
export interface WaitOptions {
  /** Give up after this many milliseconds (not seconds, as in Python). */
  timeout?: number;
  /** Abort the wait: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * What a successful `acquire()` resolves to: a `Disposable` that releases what was acquired, so
 * `using _ = await lock.acquire();` holds the lock until the end of the scope.
 */
export interface Acquired extends Disposable {
  /** True when this acquire took over from a holder whose process died holding it. */
  readonly ownerDied: boolean;
  /**
   * Releases what was acquired: the same as the primitive's `release()` (so do not also let
   * `using` dispose it).
   */
  release(): void;
}

/**
 * The guard an acquire returns. It holds no state of its own, so each handle reuses one for
 * every ordinary acquire: the hot path allocates nothing.
 */
class Held implements Acquired {
  #target: { release(): void };
  readonly ownerDied: boolean;
  constructor(target: { release(): void }, ownerDied: boolean) {
    this.#target = target;
    this.ownerDied = ownerDied;
  }
  release(): void {
    this.#target.release();
  }
  [Symbol.dispose](): void {
    this.#target.release();
  }
}

/**
 * Checks the shape of an acquire's options (issue 18.1: `acquire(false)` or `acquire(5)`,
 * written for Python's positional `block`/`timeout`, would otherwise be ignored). Callers test
 * `options !== undefined` first: the hot path then pays nothing.
 */
function checkAcquireOptions(o: AcquireOptions, call: string): void {
  const name = call.slice(call.indexOf(".") + 1);
  optionsOf(
    o,
    call,
    (o as unknown) === false ? `${name}({ block: false })` : `${name}({ timeout: 200 })`,
  );
}

/**
 * The deadline of an acquire. With `block: false` a timeout is ignored, as in Python's
 * `multiprocessing` (its `threading` raises instead): the call only tries.
 */
function acquireDeadline(o: AcquireOptions | undefined): number {
  if (!o) return Infinity;
  if (o.block === false) return 0;
  return deadlineOf(o.timeout);
}

/** The deadline and signal of a `wait(timeout?: number | WaitOptions)`. */
function waitArgs(
  t: number | WaitOptions | undefined,
  call: string,
): [number, AbortSignal | undefined] {
  if (typeof t === "object" && t !== null) {
    const o = optionsOf(t, call, "wait(200) or wait({ timeout: 200 })");
    return [deadlineOf(o.timeout), o.signal];
  }
  return [deadlineOf(t), undefined]; // a number of ms, or a TypeError naming what it got
}

/** The smallest request that gets a 64-byte block (the heap adds a 16-byte header). */
const LINE_BYTES = 48;

/** The offset of the block a constructor should attach to instead of allocating (see attach). */
let attaching = 0;

/** Builds a handle on an existing block (the codec's `rebuild`, which adopts the sent ref). */
function attach<T>(off: number, make: () => T): T {
  attaching = off;
  try {
    return make();
  } finally {
    attaching = 0;
  }
}

/**
 * The block of a new handle: the one being attached, or a fresh zeroed one. Either way `self`
 * holds one reference, dropped when it is garbage-collected.
 */
function block(
  self: object,
  bytes: number,
  kind: Kind,
  o?: ObjectOptions,
): { off: number; i32: Int32Array; fresh: boolean } {
  const fresh = attaching === 0;
  if (fresh) checkNotTerminated();
  // At least a 64-byte block (blocks are aligned to their size): a cache line of its own, so
  // that two busy primitives never slow each other down by sharing one.
  const off = fresh ? alloc(Math.max(bytes, LINE_BYTES)) : attaching;
  attaching = 0;
  // Listed for snapshot() once, by its creator; unlisted when its last handle goes.
  if (fresh) registerObject(kind, off, o?.name, o?.detectDeadlock ? DETECT_DEADLOCK : 0);
  adopt(self, off, forgetObject);
  // A fixed-length view: Atomics on a length-tracking view of a growable buffer cost ~3x more.
  return { off, i32: new Int32Array(heap().sab, off, bytes >> 2), fresh };
}

/** The options object every primitive takes (see API.md "Options objects"). */
export interface ObjectOptions {
  /** Shown in `toString()`, errors and `snapshot()`; default: the kind and creation site. */
  name?: string;
  /**
   * (Locks and semaphores.) A blocked acquire that would close a cycle of waits rejects with
   * `DeadlockError` instead of waiting forever (see `setDeadlockDetection` for all locks).
   */
  detectDeadlock?: boolean;
}

/** Options of `new Semaphore({ value, name })` (and `BoundedSemaphore`). */
export interface SemaphoreOptions extends ObjectOptions {
  /** The number of permits (default 1). */
  value?: number;
}

/** Options of `new Condition({ lock, name })`. */
export interface ConditionOptions extends Pick<ObjectOptions, "name"> {
  /** The lock it is over (default: a new `RLock`). */
  lock?: Lock | RLock;
}

/** The options of a constructor that also has a positional form, checked. */
function objectOptions<O extends ObjectOptions>(o: O | undefined, call: string): O | undefined {
  if (o === undefined) return undefined;
  o = optionsOf(o, call, `${call}({ name: "x" })`);
  if (o.name !== undefined && typeof o.name !== "string") {
    throw new TypeError(`${call}: name must be a string, got ${typeof o.name}`);
  }
  return o;
}

/** `, name='fork-1'` for toString(), when one was given. */
function nameOf(off: number): string {
  const n = objectName(off, true);
  return n ? `, name='${n}'` : "";
}

/** Reduces a handle to its block offset, taking a reference for the message in flight. */
function share(off: number): number {
  retain(off);
  return off;
}

/**
 * The slow path of a mutex acquire, passing the fence after each sleep: a process terminated
 * while it waited (a zombie, see _heap "Zombies") stops there instead of taking the mutex. It
 * passes on what its wake-up brought, as it will not use it: the hand-over a starvation-mode
 * release reserved for the waiter it woke (else the mutex would stay reserved until another
 * waiter slept its way to it), or the wake-up itself (another sleeper re-checks the word now).
 */
function* mutexWaitsFenced(
  i32: Int32Array,
  index: number,
  me: number,
  deadline: number,
): Waits<AcquireResult> {
  const g = mutexWaits(i32, index, me, deadline);
  let step = g.next();
  while (!step.done) {
    const r = yield step.value;
    try {
      checkNotTerminated();
    } catch (e) {
      // Held by nobody yet locked: being handed over (owner 0 in the release's compare-exchange).
      if (mutexLocked(i32, index) && mutexOwner(i32, index) === 0) mutexRelease(i32, index, 0);
      else Atomics.notify(i32, index, 1);
      throw e;
    }
    step = g.next(r);
  }
  return step.value;
}

// ---------------------------------------------------------------------------------------------
// Lock

/**
 * Lock words: the robust futex mutex, and the ident of the thread that took it last (for
 * Condition's ownership check, valid while the mutex names this process). It is written by the
 * holder only, under the mutex, and only when it changes: the hot path stores nothing but the
 * mutex word, whose atomic operations order everything else.
 */
const L_MUTEX = 0, L_THREAD = 1;
let lockOf!: (l: Lock) => { off: number; i32: Int32Array };

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
  #held: Held = new Held(this, false);
  #ownerDied = false;

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
    return this.#ownerDied;
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
      if (options !== undefined) checkAcquireOptions(options, "Lock.acquire");
      options?.signal?.throwIfAborted();
      checkNotTerminated();
      const i32 = this.#i32, me = this.#slot;
      if (Atomics.compareExchange(i32, L_MUTEX, 0, me) === 0) {
        return Promise.resolve(this.#took(ACQUIRED));
      }
      const deadline = acquireDeadline(options);
      if (deadline === 0) {
        return Promise.resolve(this.#took(runSync(mutexWaits(i32, L_MUTEX, me, 0))));
      }
      if (spin(i32, L_MUTEX, me)) return Promise.resolve(this.#took(ACQUIRED));
      return runAsync(
        observed(this.#off, mutexWaitsFenced(i32, L_MUTEX, me, deadline), true),
        options?.signal,
      ).then((r) => this.#took(r));
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
    if (options !== undefined) checkAcquireOptions(options, "Lock.acquireSync");
    checkNotTerminated();
    const i32 = this.#i32, word = Atomics.compareExchange(i32, L_MUTEX, 0, this.#slot);
    if (word === 0) return this.#took(ACQUIRED);
    const deadline = acquireDeadline(options);
    if (deadline === 0) return this.#took(runSync(mutexWaits(i32, L_MUTEX, this.#slot, 0)));
    if (deadline === Infinity) selfDeadlock(word, this.#slot);
    if (spin(i32, L_MUTEX, this.#slot)) return this.#took(ACQUIRED);
    const waits = mutexWaitsFenced(i32, L_MUTEX, this.#slot, deadline);
    return this.#took(runSync(observed(this.#off, waits, true)));
  }

  #took(r: AcquireResult): Acquired | false {
    if (r === TIMED_OUT) return false;
    const me = getIdent();
    if (this.#i32[L_THREAD] !== me) this.#i32[L_THREAD] = me;
    if (r === ACQUIRED) {
      this.#ownerDied = false;
      return this.#held;
    }
    this.#ownerDied = true;
    return new Held(this, true);
  }

  /**
   * Releases the lock (any thread or process may, as in Python); `ValueError` (`semaphore or
   * lock released too many times`, multiprocessing's wording) if it is not locked.
   */
  release(): void {
    checkNotTerminated();
    const i32 = this.#i32;
    // Fast path: held by this process, nobody waiting. Anything else goes the long way.
    if (Atomics.compareExchange(i32, L_MUTEX, this.#slot, 0) === this.#slot) return;
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

/**
 * A blocking acquire of a lock that this isolate already holds can only end if another process
 * releases it: no other thread of this isolate runs while this one blocks. Python would hang
 * there (a thread re-acquiring its own Lock); here the mistake is easy to make from the main
 * thread, so it is reported instead.
 */
function selfDeadlock(word: number, slot: number): void {
  // `word` is the mutex as this thread found it: if this isolate held it then, it still does.
  if (ownerOf(word) !== slot) return;
  throw new ValueError(
    "acquireSync() would deadlock: this lock is held in this process, by this thread or by " +
      "another Thread that cannot run while this one blocks (use `await acquire()`, or a timeout)",
  );
}

/** Spins briefly for a free mutex before the async path (see SPIN in _atomics.ts). */
function spin(i32: Int32Array, index: number, me: number): boolean {
  for (let s = 0; s < 200; s++) {
    if (Atomics.load(i32, index) === 0 && Atomics.compareExchange(i32, index, 0, me) === 0) {
      return true;
    }
  }
  return false;
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
let rlockOf!: (l: RLock) => { off: number; i32: Int32Array };

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
  #held: Held = new Held(this, false);
  #ownerDied = false;

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
    return this.#ownerDied;
  }

  /** Acquires the lock (at once if the current thread owns it). */
  acquire(options?: BlockingAcquireOptions): Promise<Acquired>;
  /** Acquires the lock; `false` on a `block: false` miss or a timeout. */
  acquire(options: AcquireOptions): Promise<Acquired | false>;
  acquire(options?: AcquireOptions): Promise<Acquired | false> {
    try {
      if (options !== undefined) checkAcquireOptions(options, "RLock.acquire");
      options?.signal?.throwIfAborted();
      checkNotTerminated();
      const i32 = this.#i32, me = getIdent(), slot = this.#slot;
      const word = Atomics.compareExchange(i32, R_MUTEX, 0, slot);
      if (word === 0) return Promise.resolve(this.#took(ACQUIRED, me));
      if (ownerOf(word) === slot && i32[R_THREAD] === me) {
        i32[R_COUNT]++;
        return Promise.resolve(this.#held);
      }
      const deadline = acquireDeadline(options);
      if (deadline === 0) {
        return Promise.resolve(this.#took(runSync(mutexWaits(i32, R_MUTEX, slot, 0)), me));
      }
      if (spin(i32, R_MUTEX, slot)) return Promise.resolve(this.#took(ACQUIRED, me));
      return runAsync(
        observed(this.#off, mutexWaitsFenced(i32, R_MUTEX, slot, deadline), true),
        options?.signal,
      ).then((r) => this.#took(r, me));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Acquires the lock, blocking the thread (for CPU-bound code in a worker). */
  acquireSync(options?: BlockingAcquireOptions): Acquired;
  /** Acquires the lock, blocking the thread; `false` on a miss or timeout. */
  acquireSync(options: AcquireOptions): Acquired | false;
  acquireSync(options?: AcquireOptions): Acquired | false {
    if (options !== undefined) checkAcquireOptions(options, "RLock.acquireSync");
    checkNotTerminated();
    const i32 = this.#i32, me = getIdent(), slot = this.#slot;
    const word = Atomics.compareExchange(i32, R_MUTEX, 0, slot);
    if (word === 0) {
      if (i32[R_THREAD] !== me) i32[R_THREAD] = me;
      this.#ownerDied = false;
      return this.#held;
    }
    // Recursion: decided from the word just read, without touching the contended line again.
    if (ownerOf(word) === slot && i32[R_THREAD] === me) {
      i32[R_COUNT]++;
      return this.#held;
    }
    const deadline = acquireDeadline(options);
    if (deadline === 0) return this.#took(runSync(mutexWaits(i32, R_MUTEX, slot, 0)), me);
    if (deadline === Infinity) selfDeadlock(word, slot);
    if (spin(i32, R_MUTEX, slot)) return this.#took(ACQUIRED, me);
    const waits = mutexWaitsFenced(i32, R_MUTEX, slot, deadline);
    return this.#took(runSync(observed(this.#off, waits, true)), me);
  }

  /** True when thread `me` of this process holds the lock. */
  #mine(me: number): boolean {
    // Only this isolate can make the mutex name its slot, and it runs one thing at a time. So a
    // plain read is enough (and much cheaper than Atomics.load here): it cannot show this slot
    // unless this isolate holds the lock, because this isolate's own last write to the word is
    // either its acquire or its release.
    return ownerOf(this.#i32[R_MUTEX]) === this.#slot && this.#i32[R_THREAD] === me;
  }

  #took(r: AcquireResult, me: number): Acquired | false {
    if (r === TIMED_OUT) return false;
    const i32 = this.#i32;
    if (i32[R_THREAD] !== me) i32[R_THREAD] = me;
    if (r === ACQUIRED) {
      this.#ownerDied = false;
      return this.#held;
    }
    i32[R_COUNT] = 0; // the levels of the holder that died
    this.#ownerDied = true;
    return new Held(this, true);
  }

  /**
   * Releases one level of ownership; `ValueError` (`cannot release un-acquired lock`) unless the
   * current thread owns the lock.
   */
  release(): void {
    checkNotTerminated();
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
interface CondLock {
  owned(): boolean;
  /** Releases the lock completely; returns what `restore` needs to take it back. */
  releaseSave(): number;
  /** Takes the lock back (no timeout) and restores the recursion level. */
  restore(saved: number): Waits<void>;
}

function condLock(lock: Lock | RLock): CondLock {
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

// ---------------------------------------------------------------------------------------------
// Semaphore

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
let semOf!: (s: Semaphore) => { off: number; i32: Int32Array };

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
  #held: Held = new Held(this, false);
  #ownerDied = false;

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
    semOf = (s) => ({ off: s.#off, i32: s.#i32 });
  }

  /** True when the last acquire through this object took back permits of a dead process. */
  get ownerDied(): boolean {
    return this.#ownerDied;
  }

  /** Takes a permit, waiting for one if needed. */
  acquire(options?: BlockingAcquireOptions): Promise<Acquired>;
  /** Takes a permit; `false` on a `block: false` miss or a timeout. */
  acquire(options: AcquireOptions): Promise<Acquired | false>;
  acquire(options?: AcquireOptions): Promise<Acquired | false> {
    try {
      if (options !== undefined) checkAcquireOptions(options, "Semaphore.acquire");
      options?.signal?.throwIfAborted();
      checkNotTerminated();
      if (this.#take()) return Promise.resolve(this.#took(ACQUIRED));
      const deadline = acquireDeadline(options);
      if (deadline === 0) return Promise.resolve(this.#took(runSync(this.#waits(0))));
      const waits = observed(this.#off, this.#waits(deadline), true);
      return runAsync(waits, options?.signal).then((r) => this.#took(r));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Takes a permit, blocking the thread (for CPU-bound code in a worker). */
  acquireSync(options?: BlockingAcquireOptions): Acquired;
  /** Takes a permit, blocking the thread; `false` on a miss or timeout. */
  acquireSync(options: AcquireOptions): Acquired | false;
  acquireSync(options?: AcquireOptions): Acquired | false {
    if (options !== undefined) checkAcquireOptions(options, "Semaphore.acquireSync");
    checkNotTerminated();
    if (this.#take()) return this.#took(ACQUIRED);
    return this.#took(runSync(observed(this.#off, this.#waits(acquireDeadline(options)), true)));
  }

  #took(r: AcquireResult): Acquired | false {
    if (r === TIMED_OUT) return false;
    if (r === ACQUIRED) {
      this.#ownerDied = false;
      return this.#held;
    }
    this.#ownerDied = true;
    return new Held(this, true);
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
    checkNotTerminated();
    // Off this process's account first, then given. A permit missing from the account either
    // was never on it (a plain signal) or was taken back by a reclaimer after this process was
    // declared dead: the fence tells which, so that a zombie does not give it a second time.
    let off = 0;
    while (off < n && this.#account(-1)) off++;
    if (off < n) checkNotTerminated();
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

registerHandle<Semaphore, number>({
  name: "Semaphore",
  module: import.meta.url,
  cls: Semaphore,
  reduce: (s) => share(semOf(s).off),
  rebuild: (off) => attach(off, () => new Semaphore()),
});
registerHandle<BoundedSemaphore, number>({
  name: "BoundedSemaphore",
  module: import.meta.url,
  cls: BoundedSemaphore,
  reduce: (s) => share(semOf(s).off),
  rebuild: (off) => attach(off, () => new BoundedSemaphore()),
});

// ---------------------------------------------------------------------------------------------
// Event

/**
 * Event words: the flag, and a count of `set()`s, which waiters sleep on. A waiter returns true
 * once the count has moved since it began, even if a `clear()` followed at once (Python's
 * bpo-13502): otherwise it could wake, find the flag cleared, and wait on as if nothing
 * had happened.
 */
const E_FLAG = 0, E_SETS = 1;
let eventOf!: (e: Event) => number;

/**
 * An event flag (Python's `Event`): `wait()` waits until another thread or process calls
 * `set()`. Every waiter present at a `set()` returns `true`, even if `clear()` follows at once.
 *
 * Named `Event` as in Python; import it under another name where the DOM `Event` is needed.
 *
 * @example
 * ```ts
 * import { Event } from "jsr:@denomp/multiprocessing";
 * const ready = new Event();
 * setTimeout(() => ready.set(), 5);
 * console.assert(await ready.wait() === true);
 * ready.clear();
 * console.assert(await ready.wait(10) === false); // 10 ms
 * ```
 */
export class Event {
  #off: number;
  #i32: Int32Array;

  /** Creates a cleared event in shared memory (option: `name`). */
  constructor(options?: Pick<ObjectOptions, "name">) {
    const b = block(this, 8, "Event", objectOptions(options, "new Event"));
    this.#off = b.off;
    this.#i32 = b.i32;
  }

  static {
    eventOf = (e) => e.#off;
  }

  /** True when the flag is set. */
  isSet(): boolean {
    return Atomics.load(this.#i32, E_FLAG) !== 0;
  }

  /** Sets the flag and wakes every waiter. */
  set(): void {
    checkNotTerminated();
    const i32 = this.#i32;
    if (Atomics.exchange(i32, E_FLAG, 1) === 0) {
      Atomics.add(i32, E_SETS, 1);
      Atomics.notify(i32, E_SETS);
    }
  }

  /** Clears the flag. */
  clear(): void {
    checkNotTerminated();
    Atomics.store(this.#i32, E_FLAG, 0);
  }

  /**
   * Waits until the flag is set; resolves `true`, or `false` once `timeout` milliseconds have
   * passed with the flag still clear.
   */
  wait(timeout?: number | WaitOptions): Promise<boolean> {
    try {
      checkNotTerminated();
      if (this.isSet()) return Promise.resolve(true);
      const [deadline, signal] = waitArgs(timeout, "Event.wait");
      return runAsync(observed(this.#off, this.#waits(deadline)), signal);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Like `wait()` (`timeout` in milliseconds), blocking the thread (for CPU-bound code). */
  waitSync(timeout?: number): boolean {
    checkNotTerminated();
    if (this.isSet()) return true;
    return runSync(observed(this.#off, this.#waits(deadlineOf(timeout))));
  }

  *#waits(deadline: number): Waits<boolean> {
    const i32 = this.#i32, sets = Atomics.load(i32, E_SETS);
    for (;;) {
      if (Atomics.load(i32, E_FLAG) !== 0 || Atomics.load(i32, E_SETS) !== sets) return true;
      const left = remainingMs(deadline);
      if (left <= 0) return false;
      yield { i32, index: E_SETS, value: sets, ms: left };
      checkNotTerminated(); // a zombie woken here stops instead of acting on the event
    }
  }

  /** A short description, like Python's repr. */
  toString(): string {
    return `<Event(${this.isSet() ? "set" : "unset"}${nameOf(this.#off)})>`;
  }
}

registerHandle<Event, number>({
  name: "Event",
  module: import.meta.url,
  cls: Event,
  reduce: (e) => share(eventOf(e)),
  rebuild: (off) => attach(off, () => new Event()),
});

// ---------------------------------------------------------------------------------------------
// Condition

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
      // A zombie (see _heap "Zombies") neither takes the lock back nor touches the list: its
      // waiter block stays there for `notify`, which drops the blocks of dead waiters.
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

// ---------------------------------------------------------------------------------------------
// Barrier

/**
 * Barrier words: a mutex over the rest; the state; how many have arrived; a sequence number
 * bumped (and notified) at every change, which waiters sleep on; the parties; the default
 * timeout (ms, -1 none); the slot of the creating process, the barrier's id (to find its
 * action there) and whether it has one.
 */
const B_MUTEX = 0, B_STATE = 1, B_COUNT = 2, B_SEQ = 3, B_PARTIES = 4, B_TIMEOUT = 5;
const B_CREATOR = 6, B_ID = 7, B_HAS_ACTION = 8, B_BYTES = 36;
const FILLING = 0, DRAINING = 1, ACTION_WANTED = 2, ACTION_RUNNING = 3;
const RESETTING = -1, BROKEN = -2;
let barrierOf!: (b: Barrier) => number;
/** A barrier algorithm: it may also yield its action's promise (awaited by the async driver). */
type Steps<R> = Generator<Sleep | Promise<unknown>, R, WaitResult>;

/** Options of `new Barrier(parties, options)`. */
export interface BarrierOptions {
  /**
   * Called once per pass when the last party arrives, before any is released. It runs in the
   * process that created the barrier (so it may be a closure); if it throws, the barrier
   * breaks.
   */
  action?: () => unknown;
  /** The default timeout of `wait()`, in milliseconds. */
  timeout?: number;
  /** Shown in `toString()` and `snapshot()`; default: the creation site. */
  name?: string;
}

/** Actions of the barriers created in this isolate, by barrier id. */
const actions = new Map<number, () => unknown>();
const watched = new Set<number>();
const forgetAction = new FinalizationRegistry<number>((id) => {
  if (!watched.has(id)) actions.delete(id);
});

/**
 * A barrier for a fixed number of parties (Python's `Barrier`): each `wait()` blocks until
 * `parties` threads or processes are waiting, then all are released together, each with a
 * distinct arrival index in `0..parties-1`. `abort()`, a timeout or an action that throws breaks
 * it: every waiter, present and future, gets `BrokenBarrierError` until `reset()`.
 *
 * The `action` runs in the process that created the barrier: by the last party to arrive when
 * it is there, otherwise as soon as that process's event loop (or one of its threads waiting on
 * the barrier) notices. That process must stay alive while the barrier is used; if it dies, the
 * barrier breaks.
 *
 * @example
 * ```ts
 * import { Barrier } from "jsr:@denomp/multiprocessing";
 * import { Thread } from "jsr:@denomp/multiprocessing";
 * let passes = 0;
 * const barrier = new Barrier(3, { action: () => passes++ });
 * const indices: number[] = [];
 * const threads = [0, 1, 2].map(() =>
 *   new Thread({ target: async () => indices.push(await barrier.wait()) })
 * );
 * threads.forEach((t) => t.start());
 * for (const t of threads) await t.join();
 * console.assert(passes === 1 && indices.sort().join() === "0,1,2");
 * ```
 */
export class Barrier {
  #off: number;
  #i32: Int32Array;

  /** Creates a barrier for `parties` (an integer >= 1). */
  constructor(parties: number, options?: BarrierOptions) {
    if (!Number.isInteger(parties) || parties < 1 || parties > 0x7fffffff) {
      throw new ValueError(`parties must be an integer >= 1: current value is ${parties}`);
    }
    const { action, timeout, name } = optionsOf(
      options,
      "new Barrier",
      "new Barrier(2, { timeout: 200 })",
    );
    if (timeout !== undefined) deadlineOf(timeout); // validates
    if (action !== undefined && typeof action !== "function") {
      throw new TypeError("a Barrier's action must be a function");
    }
    if (name !== undefined && typeof name !== "string") {
      throw new TypeError(`new Barrier: name must be a string, got ${typeof name}`);
    }
    const b = block(this, B_BYTES, "Barrier", { name });
    this.#off = b.off;
    this.#i32 = b.i32;
    if (!b.fresh) return;
    const i32 = b.i32;
    i32[B_PARTIES] = parties;
    i32[B_TIMEOUT] = timeout === undefined || timeout > 0x7fffffff ? -1 : Math.ceil(timeout);
    i32[B_CREATOR] = heap().slot;
    i32[B_ID] = nextId();
    if (action) {
      i32[B_HAS_ACTION] = 1;
      actions.set(i32[B_ID], action);
      forgetAction.register(this, i32[B_ID]);
    }
  }

  static {
    barrierOf = (b) => {
      // The action runs here on behalf of other processes: watch for their requests for as
      // long as this process lives (a small leak per barrier with an action that was sent).
      const i32 = b.#i32, id = i32[B_ID];
      if (actions.has(id) && !watched.has(id)) {
        watched.add(id);
        retain(b.#off);
        void watchActions(new Int32Array(heap().sab, b.#off, B_BYTES >> 2), id);
      }
      return b.#off;
    };
  }

  /** The number of parties needed to pass. */
  get parties(): number {
    return this.#i32[B_PARTIES];
  }

  /** How many parties are waiting in the current pass. */
  get nWaiting(): number {
    const i32 = this.#i32;
    return Atomics.load(i32, B_STATE) === FILLING ? Atomics.load(i32, B_COUNT) : 0;
  }

  /** True when the barrier is broken. */
  get broken(): boolean {
    return Atomics.load(this.#i32, B_STATE) === BROKEN;
  }

  /**
   * Waits until all parties are waiting; resolves with this party's arrival index (0 for the
   * first). Rejects with `BrokenBarrierError` if the barrier is or becomes broken, or `timeout`
   * milliseconds (default: the barrier's) pass, which also breaks it for all.
   */
  wait(timeout?: number | WaitOptions): Promise<number> {
    try {
      const [deadline, signal] = this.#args(timeout);
      return runAsync(observed(this.#off, this.#waits(deadline, true)), signal);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Like `wait()`, blocking the thread (an async action is not awaited). */
  waitSync(timeout?: number): number {
    // With async = false the algorithm never yields a promise.
    return runSync(
      observed(this.#off, this.#waits(this.#args(timeout)[0], false) as Waits<number>),
    );
  }

  #args(timeout: number | WaitOptions | undefined): [number, AbortSignal | undefined] {
    checkNotTerminated();
    const o = typeof timeout === "object" && timeout !== null
      ? optionsOf(timeout, "Barrier.wait", "wait(200) or wait({ timeout: 200 })")
      : { timeout };
    const dflt = this.#i32[B_TIMEOUT];
    return [deadlineOf(o.timeout ?? (dflt < 0 ? undefined : dflt)), o.signal];
  }

  /** Resets the barrier to its initial state; parties waiting now get `BrokenBarrierError`. */
  reset(): void {
    checkNotTerminated();
    const i32 = this.#i32;
    lockSync(i32);
    try {
      const s = i32[B_STATE];
      if (i32[B_COUNT] > 0) {
        if (s !== DRAINING) i32[B_STATE] = RESETTING;
      } else {
        i32[B_STATE] = FILLING;
      }
      bump(i32);
    } finally {
      unlock(i32);
    }
  }

  /** Breaks the barrier: every waiter, present and future, gets `BrokenBarrierError`. */
  abort(): void {
    checkNotTerminated();
    const i32 = this.#i32;
    lockSync(i32);
    breakBarrier(i32);
    unlock(i32);
  }

  *#waits(deadline: number, async: boolean): Steps<number> {
    const i32 = this.#i32;
    yield* lockWaits(i32);
    try {
      // Wait for the previous pass to drain, or a reset to finish (Python's _enter); with more
      // threads than parties, also for the previous pass's action to have run.
      for (let s = i32[B_STATE]; s === DRAINING || s === RESETTING || s >= ACTION_WANTED;) {
        if (s === ACTION_WANTED && i32[B_CREATOR] === heap().slot) {
          i32[B_STATE] = ACTION_RUNNING;
          yield* runAction(i32, async);
        } else {
          yield* sleepUnlocked(i32, Infinity);
        }
        s = i32[B_STATE];
      }
      if (i32[B_STATE] === BROKEN) throw new BrokenBarrierError();
      const index = i32[B_COUNT]++;
      try {
        if (index + 1 === i32[B_PARTIES]) {
          yield* this.#pass(async);
        } else {
          yield* this.#await(deadline, async);
        }
        return index;
      } finally {
        // Python's _exit: the last party out lets the next pass fill. (A zombie stopped by the
        // fence holds no mutex here, and leaves everything as it is.)
        if (
          held(i32) && --i32[B_COUNT] === 0 &&
          (i32[B_STATE] === RESETTING || i32[B_STATE] === DRAINING)
        ) {
          i32[B_STATE] = FILLING;
          bump(i32);
        }
      }
    } finally {
      unlock(i32);
    }
  }

  /** The last party: run the action (here, or ask its creator), then release everybody. */
  *#pass(async: boolean): Steps<void> {
    const i32 = this.#i32;
    if (i32[B_CREATOR] === heap().slot || !i32[B_HAS_ACTION]) {
      i32[B_STATE] = ACTION_RUNNING;
      yield* runAction(i32, async);
      if (i32[B_STATE] !== DRAINING) throw new BrokenBarrierError();
      return;
    }
    i32[B_STATE] = ACTION_WANTED;
    bump(i32);
    yield* this.#await(Infinity, async);
  }

  /** Waits until the pass is released (or broken), taking care of action requests here. */
  *#await(deadline: number, async: boolean): Steps<void> {
    const i32 = this.#i32;
    for (;;) {
      const s = i32[B_STATE];
      if (s === DRAINING) return;
      if (s < 0) throw new BrokenBarrierError();
      if (s === ACTION_WANTED) {
        if (i32[B_CREATOR] === heap().slot) {
          i32[B_STATE] = ACTION_RUNNING;
          yield* runAction(i32, async);
          continue;
        }
        if (!isAlive(i32[B_CREATOR])) {
          breakBarrier(i32);
          continue;
        }
      }
      if (remainingMs(deadline) <= 0) {
        breakBarrier(i32);
        throw new BrokenBarrierError();
      }
      try {
        yield* sleepUnlocked(i32, deadline);
      } catch (e) {
        // An aborted party will not come: the others must not wait for it. (A zombie stopped
        // by the fence holds no mutex, and leaves the barrier as it is.)
        if (held(i32)) breakBarrier(i32);
        throw e;
      }
    }
  }

  /** A short description, like Python's repr. */
  toString(): string {
    return `<Barrier(parties=${this.parties}, waiting=${this.nWaiting}${
      this.broken ? ", broken" : ""
    }${nameOf(this.#off)})>`;
  }
}

function bump(i32: Int32Array): void {
  Atomics.add(i32, B_SEQ, 1);
  Atomics.notify(i32, B_SEQ);
}

function breakBarrier(i32: Int32Array): void {
  i32[B_STATE] = BROKEN;
  bump(i32);
}

/** Takes the barrier's mutex; a holder that died mid-update leaves it broken. */
function* lockWaits(i32: Int32Array): Waits<void> {
  const me = heap().slot;
  if (Atomics.compareExchange(i32, B_MUTEX, 0, me) === 0) return;
  if ((yield* mutexWaitsFenced(i32, B_MUTEX, me, Infinity)) === OWNER_DIED) breakBarrier(i32);
}

function lockSync(i32: Int32Array): void {
  runSync(lockWaits(i32));
}

/**
 * True when this process holds the barrier's mutex. No algorithm of this isolate holds it
 * across a sleep, so in synchronous code this means: the code running now holds it.
 */
function held(i32: Int32Array): boolean {
  return mutexOwner(i32, B_MUTEX) === heap().slot;
}

/** Releases the barrier's mutex if this process holds it (a zombie's taken-over one: not). */
function unlock(i32: Int32Array): void {
  mutexRelease(i32, B_MUTEX, heap().slot);
}

/**
 * Sleeps until the barrier changes (the mutex released meanwhile), at most until `deadline`,
 * in slices so that a dead creator with an action pending is noticed.
 */
function* sleepUnlocked(i32: Int32Array, deadline: number): Waits<void> {
  const seq = i32[B_SEQ];
  unlock(i32);
  let zombie = false;
  try {
    const ms = Math.min(remainingMs(deadline), LIVENESS_SLICE_MS);
    if (ms > 0) yield { i32, index: B_SEQ, value: seq, ms };
    checkNotTerminated();
  } catch (e) {
    zombie = isTerminatedError(e);
    throw e;
  } finally {
    // Even when aborted: the caller's finally blocks expect the mutex. Not a zombie.
    if (!zombie) yield* lockWaits(i32);
  }
}

/**
 * Runs the barrier's action (state ACTION_RUNNING, mutex held on entry and exit, released while
 * the action runs so that reset/abort stay quick), then releases the pass or breaks it.
 */
function* runAction(i32: Int32Array, async: boolean): Steps<void> {
  const action = actions.get(i32[B_ID]);
  let failed: unknown = null, threw = false;
  if (action) {
    unlock(i32);
    try {
      const r = action();
      if (r instanceof Promise) {
        if (async) yield r;
        else r.catch((e) => console.error("Barrier action failed:", e));
      }
    } catch (e) {
      failed = e;
      threw = true;
    }
    yield* lockWaits(i32);
  }
  if (i32[B_STATE] !== ACTION_RUNNING) return; // reset or aborted meanwhile
  if (threw) {
    breakBarrier(i32);
    throw failed;
  }
  i32[B_STATE] = DRAINING;
  bump(i32);
}

/** In the creator process: runs actions requested by last parties in other processes. */
async function watchActions(i32: Int32Array, id: number): Promise<void> {
  for (;;) {
    const seq = Atomics.load(i32, B_SEQ);
    if (Atomics.load(i32, B_STATE) === ACTION_WANTED) {
      try {
        await runAsync(claimAction(i32));
      } catch (e) {
        console.error(`Barrier action failed (barrier ${id}):`, e);
      }
      continue;
    }
    // Not kept alive: a program whose only pending work is this watch may end.
    const w = Atomics.waitAsync(i32, B_SEQ, seq);
    if (w.async) await w.value;
  }
}

function* claimAction(i32: Int32Array): Steps<void> {
  yield* lockWaits(i32);
  try {
    if (i32[B_STATE] !== ACTION_WANTED) return;
    i32[B_STATE] = ACTION_RUNNING;
    yield* runAction(i32, true);
  } finally {
    unlock(i32);
  }
}

registerHandle<Barrier, number>({
  name: "Barrier",
  module: import.meta.url,
  cls: Barrier,
  reduce: (b) => share(barrierOf(b)),
  rebuild: (off) => attach(off, () => new Barrier(1)),
});

// ---------------------------------------------------------------------------------------------
// What snapshot() reads of each primitive: its live words, read by any process.

const words = (off: number, n: number) => new Int32Array(heap().sab, off, n);

/** The holder a mutex word names, with the thread that took it (word `thread`). */
function mutexHolders(i32: Int32Array, mutex: number, thread: number): Holder[] {
  const slot = mutexOwner(i32, mutex);
  return slot ? [{ slot, ident: Atomics.load(i32, thread) }] : [];
}

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
inspectors.set("Event", (off) => ({
  holders: [],
  state: { set: Atomics.load(words(off, 1), E_FLAG) !== 0 },
}));
inspectors.set("Condition", (off) => {
  const lock = Atomics.load(words(off, 3), C_LOCK);
  // Lock and RLock both keep the mutex in word 0 and the holding thread in word 1.
  const holders = lock ? mutexHolders(words(lock, 2), 0, 1) : [];
  return { holders, blocking: false, state: { lock: lock ? objectName(lock) : "" } };
});
inspectors.set("Barrier", (off) => {
  const i32 = words(off, B_BYTES >> 2), state = Atomics.load(i32, B_STATE);
  return {
    holders: [],
    state: {
      parties: i32[B_PARTIES],
      waiting: state === FILLING ? Atomics.load(i32, B_COUNT) : 0,
      broken: state === BROKEN,
    },
  };
});
