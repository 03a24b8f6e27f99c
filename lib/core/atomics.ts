/**
 * Waiting on shared words: the one place that calls `Atomics.wait` / `Atomics.waitAsync`, and the
 * robust futex mutex every shared-memory structure is built from (locks, queue rings, pipes).
 *
 * Why a keep-alive: a pending `Atomics.waitAsync` does not keep Deno's event loop alive, so a
 * main thread awaiting a lock held by a daemon worker would see the program end under it. While
 * any async wait is pending, one ref'd interval timer keeps the process running.
 *
 * Why generators: every blocking primitive needs a blocking twin (`acquireSync`) for CPU-bound
 * worker code and a non-blocking one (`acquire`) for everything else. Each algorithm is written
 * once as a generator that yields the sleeps it needs ({@link Sleep}); {@link runSync} performs
 * them with `Atomics.wait`, {@link runAsync} with `Atomics.waitAsync`. The steps before the first
 * sleep, where the fast paths are, are plain code shared by both ({@link mutexTryNow}): a
 * generator is only made once a wait may sleep.
 *
 * ## The protocol rules every shared-memory structure follows
 *
 * The code relies on the ECMAScript memory model only (every shared access that orders anything
 * is an `Atomics` operation, seq-cst; V8 compiles them to `stlr`/`ldar` on ARM64), never on
 * x86's ordering. A change that breaks one of these rules brings back a bug a test was written
 * for; the tests named in brackets fail without the rule.
 *
 * 1. **Publication.** Data is written first, then published by an atomic store (or
 *    compare-exchange) of the index that covers it (a ring's `W`, a queue's counts); a reader
 *    loads the index atomically before it reads the data. A reader never trusts a length it did
 *    not bound: a ring frame whose length would move `R` past `W`, or outside the data area, is
 *    dropped and counted as discarded, and the ring goes on [ring_frames_test].
 * 2. **Sleepers own their flags.** A word that says "somebody sleeps here" is either a count that
 *    each sleeper raises before its last re-check and lowers after waking (the rings: several
 *    sleepers per word), or a sleep number that only its one sleeper arms and that a notifier
 *    takes down by compare-exchange of the very number it saw (the pool's doorbell). A notifier
 *    never stores to a flag it loaded earlier: "load, then clear" lets a stale notifier clear a
 *    newer sleeper's flag, and the next publisher then wakes nobody [ring_wakeup_test,
 *    pool_doorbell_test]. Where a wake-up word is not changed by the event (close, EOF), the
 *    waiter sleeps in slices of {@link LIVENESS_SLICE_MS} and re-checks, and that is said there.
 * 3. **Ownership is checked in the releasing compare-exchange.** A lock is released by
 *    `mutexRelease(i32, i, owner)` or `compareExchange(i32, i, me, 0)`, never by "if owner is me,
 *    then release": between the two a waiter may have taken the lock over from a holder declared
 *    dead, and the plain release would free the new owner's lock (mutexes, ring and store locks,
 *    the allocator lock).
 * 4. **Recovery takes a whole record by one compare-exchange.** What a dead process held is taken
 *    by one compare-exchange against the whole record seen (a semaphore's holder entry is one
 *    word, slot and count: taken whole by the reclaimer, and changed by its own process only the
 *    same way), so two reclaimers, or a reclaimer and a holder declared dead but still running,
 *    never both use it; slots are never reused, so a stale exchange always fails [synchronize
 *    ABA and mid-release/mid-acquire tests]. A reference is added to a block found by name only
 *    if its count is not zero (a compare-exchange loop, `tryRetain`), then the block is validated
 *    again.
 * 5. **Zombies are fenced, per step.** A terminated worker may go on running synchronous code
 *    (Deno cannot stop it). Every operation that changes shared state first passes
 *    `checkNotTerminated` (one plain read of the caller's own process-table entry), and every
 *    wait re-checks it after each sleep; a streamed write checks it before every frame and
 *    publishes `W` by compare-exchange from the value it last saw, so a writer whose lock was
 *    taken over cannot interleave its frames with the new writer's [ring zombie-frame test,
 *    synchronize zombie tests]. A fenced step gives back what it had reserved (a queue place, a
 *    mutex hand-over or semaphore wake-up meant for it), and leaves what it held to be taken over.
 *    A ring's locks go further: they are taken over only from an owner parked in a wait or at
 *    its event loop ({@link mutexPark}), never from one still in the middle of a step
 *    [queues_midmessage "terminated in the middle of a read step" and "... write step" tests].
 * 6. **Every wait has a way out.** No untimed sleep waits on a word that only a dead process
 *    could change: waits are sliced by {@link LIVENESS_SLICE_MS} and re-check the liveness of
 *    whom they wait for; a blocking call also takes a `timeout`.
 *
 * @module
 */

import { checkTimeout } from "./args.ts";
import { heap, isAlive, TERMINATED_MESSAGE } from "./heap.ts";
import { ProcessError } from "./errors.ts";

/** The outcome of one wait on a shared word. */
export type WaitResult = "ok" | "not-equal" | "timed-out";

/** How long one sleep may last before a waiter re-checks that the owner it waits for lives. */
export const LIVENESS_SLICE_MS = 100;

/**
 * Absolute deadline (`performance.now()` based) for a timeout in ms; `Infinity` for none.
 * A negative timeout is a `ValueError`, as in Python (`timeout value must be a non-negative
 * number`).
 */
export function deadlineOf(timeout?: number | null): number {
  const t = checkTimeout(timeout);
  return t === undefined || t === Infinity ? Infinity : performance.now() + t;
}

/** Milliseconds left until `deadline` (never negative; `Infinity` stays). */
export function remainingMs(deadline: number): number {
  return deadline === Infinity ? Infinity : Math.max(0, deadline - performance.now());
}

let keepAliveCount = 0;
let keepAliveTimer: ReturnType<typeof setInterval> | undefined;

/** Keeps the event loop alive while `p` is pending. */
export async function keepAlive<T>(p: Promise<T>): Promise<T> {
  if (keepAliveCount++ === 0) keepAliveTimer = setInterval(() => {}, 1 << 30);
  try {
    return await p;
  } finally {
    if (--keepAliveCount === 0) clearInterval(keepAliveTimer);
  }
}

/**
 * Has Deno set up its timers now, and leaves no timer behind. A worker's first `setTimeout` or
 * `setInterval` loads them (Node's `node:timers` and what it needs), and {@link keepAlive} calls
 * `setInterval` at a worker's first asynchronous wait: a worker that says it is ready calls this
 * first, so that its first work does not pay for it.
 */
export function loadTimers(): void {
  clearInterval(setInterval(() => {}, 1 << 30));
}

/** Blocks the thread until `i32[index] !== value`, a notify, or `ms` pass. */
export function waitSync(i32: Int32Array, index: number, value: number, ms: number): WaitResult {
  return Atomics.wait(i32, index, value, ms === Infinity ? undefined : ms);
}

/** Awaits (without blocking the thread) until `i32[index] !== value`, a notify, or `ms` pass. */
export function waitAsync(
  i32: Int32Array,
  index: number,
  value: number,
  ms: number,
): Promise<WaitResult> | WaitResult {
  const r = Atomics.waitAsync(i32, index, value, ms === Infinity ? undefined : ms);
  return r.async ? keepAlive(r.value) : r.value;
}

// ---------------------------------------------------------------------------------------------
// One algorithm, two drivers.

/** A sleep requested by a wait algorithm: until `i32[index] !== value`, a notify, or `ms`. */
export interface Sleep {
  /** The words. */
  readonly i32: Int32Array;
  /** Which word. */
  readonly index: number;
  /** Sleep only while the word still holds this value. */
  readonly value: number;
  /** At most this long (`Infinity` for no limit). */
  readonly ms: number;
}

/** A wait algorithm: yields the sleeps it needs, is resumed with their outcome, returns `R`. */
export type Waits<R> = Generator<Sleep, R, WaitResult>;

/** Runs a wait algorithm, blocking the thread in `Atomics.wait` (for CPU-bound worker code). */
export function runSync<R>(g: Waits<R>): R {
  let step = g.next();
  while (!step.done) {
    const s = step.value;
    step = g.next(waitSync(s.i32, s.index, s.value, s.ms));
  }
  return step.value;
}

/**
 * Runs a wait algorithm without blocking the thread. If `signal` aborts, its reason is thrown
 * into the algorithm once (its `finally` blocks undo what it had done, and may still wait, e.g.
 * to take a lock back) and then out of the returned promise. An algorithm may also yield a
 * promise (user code it must await, e.g. a Barrier's action); its rejection is thrown into it.
 * With `unref`, its waits do not keep the program alive.
 */
export async function runAsync<R>(
  g: Generator<Sleep | Promise<unknown>, R, WaitResult>,
  signal?: AbortSignal,
  unref = false,
): Promise<R> {
  let step = g.next();
  while (!step.done) {
    const s = step.value;
    let res: WaitResult;
    try {
      if (s instanceof Promise) {
        await s;
        res = "ok";
      } else {
        signal?.throwIfAborted();
        const w = Atomics.waitAsync(s.i32, s.index, s.value, s.ms === Infinity ? undefined : s.ms);
        const p = w.async ? (signal ? abortable(w.value, s, signal) : w.value) : null;
        res = p ? await (unref ? p : keepAlive(p)) : w.value as WaitResult;
      }
    } catch (e) {
      signal = undefined;
      step = g.throw(e);
      continue;
    }
    step = g.next(res);
  }
  return step.value;
}

function abortable(p: Promise<WaitResult>, s: Sleep, signal: AbortSignal): Promise<WaitResult> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      // The abandoned waitAsync would otherwise swallow a `notify(…, 1)` meant for a live
      // waiter; waking every sleeper on the word costs them one spurious re-check instead.
      Atomics.notify(s.i32, s.index);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    p.then((r) => {
      signal.removeEventListener("abort", onAbort);
      resolve(r);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Robust futex mutex. The word is 0 when free, else the owner's process slot plus flags:
// - WAITERS: somebody may be asleep on it (so an uncontended release pays no notify);
// - STARVING: a waiter has waited longer than STARVE_MS: the next release hands the lock over
//   instead of freeing it (after Go's sync.Mutex starvation mode), so a holder looping
//   release/acquire cannot keep it forever while the others pay a ~20-50 µs wake-up each time;
// - HANDOFF: released in starvation mode and reserved for a waiter that has already slept (the
//   one `notify` woke, which is the oldest: waiters are woken in FIFO order); newcomers queue.
// Unlike Go, one hand-over ends starvation mode: here each one costs a kernel wake-up, and on a
// loaded machine every wait exceeds STARVE_MS, so a mode that persisted while recipients had
// waited long would turn the lock into a convoy paying a context switch per acquisition. Each
// starving waiter still gets the lock within about STARVE_MS plus a wake-up.
// A waiter that finds the owner's process dead takes the lock over and is told so (OWNER_DIED).
// - PARKED (a guarded mutex only: a ring's locks): its owner sleeps holding it, or has gone
//   back to its event loop with it (a writer's pump in the middle of a streamed message). A
//   terminated worker runs its synchronous code on to its next await (Deno cannot stop it
//   there), so an owner that is dead but not parked is still in the middle of a step: a waiter
//   that took over then would run the same step beside it (two readers taking one frame, a
//   reader moving `R` back under the one that adopted its half-read item, a writer copying its
//   frame over the new writer's: the soak test of queues_midmessage_test.ts lost an item in
//   about one run in fifty under load). So a guarded mutex is taken over only from a dead owner
//   that is parked (stopped at its await, or asleep for good); one that is not is waited for,
//   and it gives the lock back itself at its next fence. Resuming, an owner takes PARKED off by
//   compare-exchange: it finds its lock taken over exactly when it was, and stops (see
//   {@link mutexResume}). A lock that is never held across a sleep (a LIFO or priority queue's
//   store lock) is never parked: its waiters take over a dead owner only once it has been seen
//   dead for DEAD_STEP_GRACE_MS (2 s), a last resort against an owner that never comes back.
//   Both are a {@link Guard} given to the acquire.
// Without starvation, the lock is free for whoever comes first (barging): the fastest policy
// when the holder's critical section is short, which is the common case. A waiter that keeps
// losing that race to a holder looping on the lock backs off instead of flagging the word again
// at once (BACKOFF_MS).

/** Set in a mutex word when a waiter may be sleeping on it. */
export const WAITERS = 1 << 30;
const HANDOFF = 1 << 29;
const STARVING = 1 << 28;
/** Set in a guarded mutex's word while its owner sleeps holding it (see {@link mutexPark}). */
export const PARKED = 1 << 27;
const OWNER = (1 << 21) - 1; // slots are < 2^20 (MAX_SLOTS)
/** A waiter that has waited this long asks for hand-over (as Go's sync.Mutex does). */
const STARVE_MS = 1;
/** Results of a mutex acquire. */
export const TIMED_OUT = 0, ACQUIRED = 1, OWNER_DIED = 2;
/** `TIMED_OUT`, `ACQUIRED` or `OWNER_DIED`. */
export type AcquireResult = 0 | 1 | 2;
/**
 * Loads before sleeping: the holder is most likely running on another core and done within a
 * few hundred nanoseconds, while a sleep costs a kernel round trip of tens of microseconds.
 */
const SPIN = 200;

/**
 * How long a waiter naps when the mutex changed between its flagging the word and its sleep,
 * and is held again: a holder that releases and re-acquires in a loop (W6: two workers
 * incrementing one Value) changes the word every ~100 ns, so that the waiter's sleep returned
 * "not-equal" at once and it flagged the word again and again. Each of those compare-exchanges
 * took the lock's cache line from the holder and sent its next release down the slow path, with
 * an `Atomics.notify` that woke nobody (counted in one contended `await acquire()` run: ~1,000 to
 * 3,500 such sleeps a worker, 3 to 133 real ones). Napping instead, unflagged, on a word of its
 * own (the backoff of test-and-test-and-set locks, Anderson 1990), the waiter leaves the holder
 * running alone; starvation (STARVE_MS) still brings the lock round to it. A waiter whose sleep
 * found the mutex free takes it at once. W6 against c7aa146 (6 rounds interleaved, 2 cores),
 * RLock async / Lock Sync / RLock Sync: 0.68 / 1.23 / 1.10 without the nap; with naps of
 * 0.1 ms 1.12 / 1.31 / 1.37, 0.2 ms 1.10 / 1.45 / 1.26, 0.4 ms 1.15 / 1.34 / 1.29.
 */
const BACKOFF_MS = 0.2;
/** The nap itself: a sleep on a word nobody else sees, which ends by its timeout. */
const BACKOFF: Sleep = {
  i32: new Int32Array(new SharedArrayBuffer(4)),
  index: 0,
  value: 0,
  ms: BACKOFF_MS,
};

/** Takes the mutex at `i32[index]` if it is free. */
export function mutexTry(i32: Int32Array, index: number): boolean {
  return Atomics.compareExchange(i32, index, 0, heap().slot) === 0;
}

function spinTry(i32: Int32Array, index: number, me: number): boolean {
  for (let s = 0; s < SPIN; s++) {
    if (Atomics.load(i32, index) === 0 && Atomics.compareExchange(i32, index, 0, me) === 0) {
      return true;
    }
  }
  return false;
}

/** What {@link mutexTryNow} returns when the mutex can only be had by sleeping. */
export const MUST_SLEEP = -1;

/**
 * The steps of a mutex acquire that never sleep, after a first compare-exchange by the caller
 * found the mutex taken: with `deadline` 0 (a try) one more look at the word, which also takes
 * over from a dead owner; otherwise, with `spin`, a short spin ({@link SPIN}). Plain code shared
 * by both drivers, so that an acquire that does not sleep allocates no generator. Returns the
 * result, or {@link MUST_SLEEP}: then the caller runs {@link mutexWaits} (or a wrapper of it)
 * with its driver.
 *
 * A blocking acquire of a user's Lock passes `spin` false: while one thread spins on the word,
 * each of its loads pulls the lock's cache line away from the holder, so a holder that takes the
 * lock again and again (W6: two workers incrementing one Value) pays a cache miss on every
 * acquire and release. Sleeping at once leaves the holder running alone until it releases with
 * a waiter noted, as the raw futex floor and CPython's `sem_wait` do. On this 2-core VM,
 * contended W6 `Sync` with no spin ran 1.00 (Lock) and 1.17 (RLock) of c7aa146, with the spin
 * 0.67 and 0.87 (12 rounds interleaved, bench/README.md). An `await acquire()` keeps the spin:
 * its sleep costs an event-loop turn besides the wake-up, and no spin count measured better.
 */
export function mutexTryNow(
  i32: Int32Array,
  index: number,
  me: number,
  deadline: number,
  spin = true,
): AcquireResult | typeof MUST_SLEEP {
  if (deadline === 0) return runSync(mutexWaits(i32, index, me, 0)); // never sleeps
  return spin && spinTry(i32, index, me) ? ACQUIRED : MUST_SLEEP;
}

/**
 * When a mutex is taken over from a dead owner: `guard` 0 at once (a user's Lock: it is fenced,
 * see sync/primitive.ts), {@link GUARDED} only when parked (a ring's locks, see PARKED above),
 * or a number of ms: when parked, or once the owner has been seen dead that long
 * (`DEAD_STEP_GRACE_MS`, core/heap.ts: locks whose critical sections are synchronous).
 */
export type Guard = number;
/** The {@link Guard} of a ring's locks: taken over only from a dead owner that is parked. */
export const GUARDED: Guard = Infinity;

/**
 * The slow path of a mutex acquire as a wait algorithm (see {@link runSync}/{@link runAsync}):
 * `me` is the caller's slot, `deadline` from {@link deadlineOf}; `guard` says when a dead owner
 * is taken over (see {@link Guard}).
 */
export function* mutexWaits(
  i32: Int32Array,
  index: number,
  me: number,
  deadline: number,
  guard: Guard = 0,
): Waits<AcquireResult> {
  // Waiting time counts from here (Go: from the first block), but only a waiter that has
  // slept may claim starvation: one that is merely spinning in the slow path is not queued.
  let slept = false, dead = 0, deadSince = 0;
  const since = performance.now();
  for (;;) {
    const c = Atomics.load(i32, index);
    const starving = slept && performance.now() - since >= STARVE_MS;
    if (c === 0) {
      // Other sleepers may remain: one that slept keeps WAITERS set so that they get woken.
      if (Atomics.compareExchange(i32, index, 0, slept ? me | WAITERS : me) === 0) return ACQUIRED;
      continue;
    }
    if (c & HANDOFF) {
      if (slept) {
        if (Atomics.compareExchange(i32, index, c, me | WAITERS) === c) return ACQUIRED;
        continue;
      }
    } else if (!isAlive(c & OWNER)) {
      if (dead !== (c & OWNER)) {
        dead = c & OWNER;
        deadSince = performance.now();
      }
      if (guard === 0 || c & PARKED || performance.now() - deadSince >= guard) {
        const next = me | WAITERS | (c & STARVING);
        if (Atomics.compareExchange(i32, index, c, next) === c) return OWNER_DIED;
        continue;
      }
    }
    const want = c | WAITERS | (starving ? STARVING : 0);
    if (want !== c && Atomics.compareExchange(i32, index, c, want) !== c) continue;
    const left = remainingMs(deadline);
    if (left <= 0) return TIMED_OUT;
    const r = yield { i32, index, value: want, ms: Math.min(left, LIVENESS_SLICE_MS) };
    if (r !== "not-equal") slept = true;
    else if ((Atomics.load(i32, index) & OWNER) !== 0) {
      // Taken again before this waiter could sleep: back off (see BACKOFF_MS), then look again.
      yield BACKOFF;
      slept = true;
    }
  }
}

/**
 * Acquires the mutex without a timeout as a wait algorithm (for use inside another one with
 * `yield*`): at once when free, after a short spin, else asleep; calls `recover` first when its
 * last owner died holding it (taken over per `guard`, see {@link Guard}).
 */
export function* mutexLockWaits(
  i32: Int32Array,
  index: number,
  recover: () => void,
  guard: Guard = 0,
): Waits<void> {
  const me = heap().slot;
  if (Atomics.compareExchange(i32, index, 0, me) === 0 || spinTry(i32, index, me)) return;
  if ((yield* mutexWaits(i32, index, me, Infinity, guard)) === OWNER_DIED) recover();
}

/**
 * Acquires the mutex, blocking the thread; `TIMED_OUT` after `timeout` ms. `guard`: see
 * {@link mutexWaits}.
 */
export function mutexAcquireSync(
  i32: Int32Array,
  index: number,
  timeout?: number,
  guard: Guard = 0,
): AcquireResult {
  const me = heap().slot;
  if (Atomics.compareExchange(i32, index, 0, me) === 0 || spinTry(i32, index, me)) {
    return ACQUIRED;
  }
  return runSync(mutexWaits(i32, index, me, deadlineOf(timeout), guard));
}

/**
 * Acquires the mutex without blocking the thread; `TIMED_OUT` after `timeout` ms. `guard`: see
 * {@link mutexWaits}.
 */
export function mutexAcquire(
  i32: Int32Array,
  index: number,
  timeout?: number,
  guard: Guard = 0,
): AcquireResult | Promise<AcquireResult> {
  const me = heap().slot;
  if (Atomics.compareExchange(i32, index, 0, me) === 0 || spinTry(i32, index, me)) {
    return ACQUIRED;
  }
  return runAsync(mutexWaits(i32, index, me, deadlineOf(timeout), guard));
}

/**
 * Sleeps per `sleep` (a wait algorithm's) while holding the guarded mutex at `i32[index]`,
 * parked meanwhile ({@link mutexParkHeld}, then {@link mutexResume}).
 */
export function* mutexPark<R>(i32: Int32Array, index: number, sleep: Waits<R>): Waits<R> {
  mutexParkHeld(i32, index);
  try {
    return yield* sleep;
  } finally {
    mutexResume(i32, index);
  }
}

/**
 * Marks the guarded mutex at `i32[index]`, which this process holds, PARKED: this process is
 * about to sleep or to go back to its event loop with it, no step under way, so the lock may be
 * taken over if this process is terminated meanwhile. Call {@link mutexResume} before using it
 * again. (A zombie may park too: it is then taken over, and stops when it resumes.)
 */
export function mutexParkHeld(i32: Int32Array, index: number): void {
  markParked(i32, index, true);
}

/**
 * Before using a guarded mutex this process holds and may have parked: takes the mark off by
 * compare-exchange, which fails exactly when the lock was taken over meanwhile (its owner was
 * declared dead): then throws the zombie's `ProcessError`, nothing of the step begun.
 */
export function mutexResume(i32: Int32Array, index: number): void {
  const c = Atomics.load(i32, index);
  if ((c & OWNER) !== heap().slot) throw new ProcessError(TERMINATED_MESSAGE); // taken over
  if (c & PARKED) markParked(i32, index, false);
}

function markParked(i32: Int32Array, index: number, on: boolean): void {
  const me = heap().slot;
  for (;;) {
    const c = Atomics.load(i32, index);
    if ((c & OWNER) !== me) throw new ProcessError(TERMINATED_MESSAGE); // taken over
    const next = on ? c | PARKED : c & ~PARKED;
    if (Atomics.compareExchange(i32, index, c, next) === c) return;
  }
}

/**
 * Acquires the mutex without a timeout, calling `recover` first when its last owner died holding
 * it (the guarded state may be half-written). Settles at once when the lock is free.
 */
export function mutexAcquireRecovering(
  i32: Int32Array,
  index: number,
  recover: () => void,
  guard: Guard = 0,
): void | Promise<void> {
  const r = mutexAcquire(i32, index, undefined, guard);
  if (typeof r !== "number") {
    return r.then((x) => {
      if (x === OWNER_DIED) recover();
    });
  }
  if (r === OWNER_DIED) recover();
}

/**
 * Releases the mutex. Without `owner`, whoever holds it (a multiprocessing `Lock` may be released
 * by any process). With `owner`, only if that slot still holds it: the compare-exchange that
 * frees the word fails when somebody else owns it, so a holder that was declared dead and whose
 * lock was taken over (a zombie: a terminated worker still running synchronous code) cannot free
 * the new owner's lock. Returns false when the mutex was not released for that reason.
 *
 * The ownership check and the release are one compare-exchange on purpose: "check owner, then
 * release" as two steps lets a take-over happen in between (protocol rule 3, at the top).
 */
export function mutexRelease(i32: Int32Array, index: number, owner?: number): boolean {
  for (;;) {
    const c = Atomics.load(i32, index);
    if (owner !== undefined && (c & OWNER) !== owner) return false;
    if (!(c & WAITERS)) {
      if (Atomics.compareExchange(i32, index, c, 0) === c) return true;
    } else if (c & STARVING) {
      const h = HANDOFF | WAITERS | STARVING;
      if (Atomics.compareExchange(i32, index, c, h) !== c) continue;
      // Nobody asleep to take it: free it after all, then wake anyone who fell asleep on the
      // hand-over word in between (it would otherwise sleep through the change to 0).
      if (Atomics.notify(i32, index, 1) === 0 && Atomics.compareExchange(i32, index, h, 0) === h) {
        Atomics.notify(i32, index, 1);
      }
      return true;
    } else if (Atomics.compareExchange(i32, index, c, 0) === c) {
      Atomics.notify(i32, index, 1);
      return true;
    }
  }
}

/** The owner's slot in a mutex word read earlier (e.g. returned by a failed compareExchange). */
export function ownerOf(word: number): number {
  return word & OWNER;
}

/** The slot of the process holding the mutex, or 0 (also while it is being handed over). */
export function mutexOwner(i32: Int32Array, index: number): number {
  return Atomics.load(i32, index) & OWNER;
}

/** True when the mutex is held (or being handed over to a waiter). */
export function mutexLocked(i32: Int32Array, index: number): boolean {
  return Atomics.load(i32, index) !== 0;
}
