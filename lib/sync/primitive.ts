/**
 * What every synchronization primitive shares: the options it takes, the guard an acquire
 * returns, its block in the shared heap and the way a handle on it crosses to another process.
 *
 * A primitive is a few words in a block of the shared heap, and a handle crosses to a worker as
 * the block's offset: reduced with a reference taken for the message in flight (`share`), rebuilt
 * there on the same block (`attach`). Written once here so that the primitives of this folder
 * agree on it. Here too the steps every acquire takes, written once so that Lock, RLock and
 * Semaphore cannot drift apart: the checks before it (`acquireBegins`), what its result resolves
 * to (`Holds`), the rest of a mutex acquire that found the mutex taken (`mutexAcquireRest`), and
 * the slow path of a mutex acquire with the zombie fence after each sleep, which Lock, RLock,
 * Condition and Barrier all take; and how `snapshot()` reads a mutex's holder.
 *
 * @module
 */

import { Attaching } from "../core/attach.ts";
import {
  ACQUIRED,
  type AcquireResult,
  deadlineOf,
  MUST_SLEEP,
  mutexLocked,
  mutexOwner,
  mutexRelease,
  mutexTryNow,
  mutexWaits,
  ownerOf,
  runAsync,
  runSync,
  TIMED_OUT,
  type Waits,
} from "../core/atomics.ts";
import { ValueError } from "../core/errors.ts";
import { adopt, alloc, checkFence, checkNotTerminated, heap, retain } from "../core/heap.ts";
import { optionsOf } from "../core/args.ts";
import {
  DETECT_DEADLOCK,
  forgetObject,
  type Kind,
  objectName,
  registerObject,
} from "../core/observe.ts";
import { type Holder, observed } from "../core/waitfor.ts";

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
export class Held implements Acquired {
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
export function checkAcquireOptions(o: AcquireOptions, call: string): void {
  const name = call.slice(call.indexOf(".") + 1);
  optionsOf(
    o,
    call,
    (o as unknown) === false ? `${name}({ block: false })` : `${name}({ timeout: 200 })`,
  );
}

/**
 * The checks every `acquire()` makes before it touches the shared words: its options, its
 * signal (already aborted: rejected at once) and the zombie fence, on the handle's own
 * `fence` word (core/heap.ts `fenceView`). Kept small so that V8 inlines it into each
 * primitive's fast path.
 */
export function acquireBegins(
  o: AcquireOptions | undefined,
  call: string,
  fence: Int32Array,
): void {
  if (o !== undefined) {
    checkAcquireOptions(o, call);
    o.signal?.throwIfAborted();
  }
  checkFence(fence);
}

/** The same checks for an `acquireSync()`, which takes no signal. */
export function acquireSyncBegins(
  o: AcquireOptions | undefined,
  call: string,
  fence: Int32Array,
): void {
  if (o !== undefined) checkAcquireOptions(o, call);
  checkFence(fence);
}

/**
 * What a handle keeps of its acquires: whether the last one took over from a holder that died
 * (the handle's `ownerDied`), and the guard an ordinary acquire returns, one per handle so that
 * the hot path allocates nothing (a take-over, rare, gets a guard of its own).
 */
export class Holds {
  /** True when the last acquire through the handle took over from a holder that died. */
  ownerDied = false;
  #target: { release(): void };
  #held: Held;
  constructor(target: { release(): void }) {
    this.#target = target;
    this.#held = new Held(target, false);
  }

  /** The guard of an acquire that took nothing over (also a reentrant one). */
  get held(): Acquired {
    return this.#held;
  }

  /** What an acquire that took the lock at once resolves to (the hot path). */
  acquired(): Acquired {
    this.ownerDied = false;
    return this.#held;
  }

  /** What an acquire that ended with `r` resolves to: a guard, or `false` on a timeout. */
  took(r: AcquireResult): Acquired | false {
    if (r === TIMED_OUT) return false;
    if (r === ACQUIRED) {
      this.ownerDied = false;
      return this.#held;
    }
    this.ownerDied = true;
    return new Held(this.#target, true);
  }
}

/**
 * The deadline of an acquire. With `block: false` a timeout is ignored, as in Python's
 * `multiprocessing` (its `threading` raises instead): the call only tries.
 */
export function acquireDeadline(o: AcquireOptions | undefined): number {
  if (!o) return Infinity;
  if (o.block === false) return 0;
  return deadlineOf(o.timeout);
}

/** The deadline and signal of a `wait(timeout?: number | WaitOptions)`. */
export function waitArgs(
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
const attaching = new Attaching();

/** Builds a handle on an existing block (the codec's `rebuild`, which adopts the sent ref). */
export function attach<T>(off: number, make: () => T): T {
  return attaching.run(off, make);
}

/**
 * The block of a new handle: the one being attached, or a fresh zeroed one. Either way `self`
 * holds one reference, dropped when it is garbage-collected.
 */
export function block(
  self: object,
  bytes: number,
  kind: Kind,
  o?: ObjectOptions,
): { off: number; i32: Int32Array; fresh: boolean } {
  const attached = attaching.take();
  const fresh = attached === undefined;
  if (fresh) checkNotTerminated();
  // At least a 64-byte block (blocks are aligned to their size): a cache line of its own, so
  // that two busy primitives never slow each other down by sharing one.
  const off = fresh ? alloc(Math.max(bytes, LINE_BYTES)) : attached;
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

/** The options of a constructor that also has a positional form, checked. */
export function objectOptions<O extends ObjectOptions>(
  o: O | undefined,
  call: string,
): O | undefined {
  if (o === undefined) return undefined;
  o = optionsOf(o, call, `${call}({ name: "x" })`);
  if (o.name !== undefined && typeof o.name !== "string") {
    throw new TypeError(`${call}: name must be a string, got ${typeof o.name}`);
  }
  return o;
}

/** `, name='fork-1'` for toString(), when one was given. */
export function nameOf(off: number): string {
  const n = objectName(off, true);
  return n ? `, name='${n}'` : "";
}

/** Reduces a handle to its block offset, taking a reference for the message in flight. */
export function share(off: number): number {
  retain(off);
  return off;
}

/**
 * The rest of an `acquire()` of the robust mutex at `i32[index]` (Lock, RLock) whose first
 * compare-exchange found it taken: one more try or a short spin, then asleep, fenced. The result
 * at once when it did not sleep (so that the caller resolves without a generator), else its
 * promise.
 */
export function mutexAcquireRest(
  off: number,
  i32: Int32Array,
  index: number,
  me: number,
  o: AcquireOptions | undefined,
): AcquireResult | Promise<AcquireResult> {
  const deadline = acquireDeadline(o), now = mutexTryNow(i32, index, me, deadline);
  if (now !== MUST_SLEEP) return now;
  return runAsync(observed(off, mutexWaitsFenced(i32, index, me, deadline), true), o?.signal);
}

/**
 * The same for an `acquireSync()`, which blocks the thread, without the spin (see
 * `mutexTryNow`); `word` is the mutex as its first compare-exchange found it (see
 * {@link selfDeadlock}).
 */
export function mutexAcquireRestSync(
  off: number,
  i32: Int32Array,
  index: number,
  me: number,
  word: number,
  o: AcquireOptions | undefined,
): AcquireResult {
  const deadline = acquireDeadline(o);
  if (deadline === Infinity) selfDeadlock(word, me);
  const now = mutexTryNow(i32, index, me, deadline, false); // no spin: see mutexTryNow
  if (now !== MUST_SLEEP) return now;
  return runSync(observed(off, mutexWaitsFenced(i32, index, me, deadline), true));
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

/**
 * The slow path of a mutex acquire, passing the fence after each sleep: a process terminated
 * while it waited (a zombie, see core/heap.ts, "Zombies") stops there instead of taking the
 * mutex. It passes on what its wake-up brought, as it will not use it: the hand-over a
 * starvation-mode release reserved for the waiter it woke (else the mutex would stay reserved
 * until another waiter slept its way to it), or the wake-up itself (another sleeper re-checks
 * the word now).
 */
export function* mutexWaitsFenced(
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
// What snapshot() reads of each primitive: its live words, read by any process.

/** A fixed-length view of the `n` words of the block at `off`. */
export const words = (off: number, n: number) => new Int32Array(heap().sab, off, n);

/** The holder a mutex word names, with the thread that took it (word `thread`). */
export function mutexHolders(i32: Int32Array, mutex: number, thread: number): Holder[] {
  const slot = mutexOwner(i32, mutex);
  return slot ? [{ slot, ident: Atomics.load(i32, thread) }] : [];
}
