/**
 * `Future`: the outcome of a call that an executor runs later (Python's
 * `concurrent.futures.Future`), and waiting on many of them: `asCompleted` and `wait`, which
 * also take a pool's `AsyncResult`. The executors are in `futures.ts`, which exports all of this.
 *
 * Why a class of its own rather than a Promise: a Promise cannot say whether its work has started
 * (`running()`), cannot be withdrawn before it starts (`cancel()`), and cannot be asked for its
 * outcome with a timeout or without raising it (`exception()`). A Future is still thenable, so
 * `await future` works as with a Promise.
 *
 * Why waiters are plain callbacks: `asCompleted` over 10,000 futures must not cost a Promise and
 * a microtask hop per future per consumer. A future calls its waiters synchronously when it
 * settles; a Promise is made only for a caller who asks for one (`result()`, `then()`), so a
 * future that fails with nobody asking never reports an unhandled rejection (as in Python,
 * where an exception nobody retrieves is simply kept).
 *
 * @module
 */

import { Deque } from "../core/deque.ts";
import { deadlineOf, remainingMs } from "../core/atomics.ts";
import { optionsOf } from "../core/args.ts";
import { CancelledError, TimeoutError, ValueError } from "../core/errors.ts";
export { CancelledError };
import { AsyncResult } from "../pool/async_result.ts";

const PENDING = 0, RUNNING = 1, CANCELLED = 2, FINISHED = 3;
const STATE_NAMES = ["pending", "running", "cancelled", "finished"];

/** Called with the future once it is done (one function may watch many futures). */
type Waiter = (f: Future<unknown>) => void;

/**
 * What runs a future's call once an executor has handed it over (a pool's `AsyncResult`): the
 * future asks it whether the call has started and has it withdraw the call (see `delegate`).
 */
export interface FutureSource {
  /** Withdraws the call if it has not started; false once it has. */
  cancel(): boolean;
  /** Whether the call has started and is not done. */
  running(): boolean;
}

/**
 * For executors: makes `future`'s `cancel()` and `running()` ask `source` while the future is
 * pending, so that it stays pending (and cancellable) until a worker really starts its call. A
 * successful `source.cancel()` may report the withdrawn call's failure to the executor at once:
 * the future is marked cancelled before, so the executor sees `cancelled()` and drops it.
 *
 * @example
 * ```ts
 * import { delegate, Future } from "./future.ts";
 * const f = new Future();
 * let started = false;
 * delegate(f, { cancel: () => !started, running: () => started });
 * started = true;
 * console.assert(f.running() && !f.cancel() && !f.done());
 * ```
 */
export let delegate: (future: Future<unknown>, source: FutureSource) => void;

// Access to a Future's waiters for `watch` below (set in Future's static block).
let addWaiter: (f: Future<unknown>, w: Waiter) => boolean;
let removeWaiter: (f: Future<unknown>, w: Waiter) => void;
let failedNow: (f: Future<unknown>) => boolean;
/** Marks `f` as seen by `asCompleted` call number `by`; false if it was already (a duplicate). */
let firstSight: (f: Future<unknown>, by: number) => boolean;
/** Numbers the `asCompleted` calls, for `firstSight`. */
let asCompletedCalls = 0;

/**
 * The outcome of a call submitted to an executor (Python's `concurrent.futures.Future`): pending
 * until a worker starts it, then running, then finished (with a result or an exception), or
 * cancelled while it was still pending. Thenable: `await future` gives the result or throws.
 * Timeouts are in milliseconds.
 *
 * `setRunningOrNotifyCancel`, `setResult` and `setException` are for executors (and tests), as
 * in Python.
 *
 * @example
 * ```ts
 * import { Future } from "jsr:@denomp/multiprocessing";
 * const f = new Future<number>();
 * f.addDoneCallback((fut) => console.log("done:", fut.done()));
 * console.assert(f.setRunningOrNotifyCancel() && f.running());
 * f.setResult(42);
 * console.assert((await f.result()) === 42 && (await f.exception()) === null);
 * console.assert((await f) === 42);
 * ```
 */
export class Future<T = unknown> implements PromiseLike<T> {
  #state = PENDING;
  #ok = true;
  #value: unknown = undefined;
  /** Internal waiters and user callbacks (wrapped), called once, in order, when done. */
  #waiters: Waiter | Waiter[] | null = null;
  /** Made only when `then` is called (see the module doc). */
  #promise: Promise<T> | null = null;
  /** What runs the call, asked while the future is pending (see `delegate`). */
  #source: FutureSource | null = null;
  /** The `asCompleted` call that last took this future (its number), to skip duplicates. */
  #seenBy = 0;

  /**
   * Cancels the future if it is still pending (no worker has started it) and returns true; false
   * once it is running or finished. True again for a future already cancelled, as in Python. For
   * a `ProcessPoolExecutor`, the call is withdrawn from its pool (see `running()`).
   *
   * @example
   * ```ts
   * import { Future } from "jsr:@denomp/multiprocessing";
   * const f = new Future();
   * console.assert(f.cancel() && f.cancelled() && f.done());
   * ```
   */
  cancel(): boolean {
    if (this.#state === PENDING) {
      // Cancelled before the source withdraws the call: it may report the call's failure
      // (CancelledError) to the executor right away, which must find this future done.
      this.#state = CANCELLED;
      if (this.#source !== null && !this.#source.cancel()) {
        this.#state = PENDING; // it has started: nothing else happened
        return false;
      }
      this.#source = null;
      this.#notify();
    }
    return this.#state === CANCELLED;
  }

  /**
   * Whether the future was cancelled.
   *
   * @example
   * ```ts
   * import { Future } from "jsr:@denomp/multiprocessing";
   * console.assert(new Future().cancelled() === false);
   * ```
   */
  cancelled(): boolean {
    return this.#state === CANCELLED;
  }

  /**
   * Whether the call is running: from the moment a worker starts it until it finishes. For a
   * `ProcessPoolExecutor`, a call waiting in the pool's queue or in a worker's queue (behind the
   * call that worker is running) is still pending, and `cancel()` withdraws it.
   *
   * @example
   * ```ts
   * import { Future } from "jsr:@denomp/multiprocessing";
   * const f = new Future();
   * f.setRunningOrNotifyCancel();
   * console.assert(f.running() && !f.done());
   * ```
   */
  running(): boolean {
    if (this.#state === PENDING) return this.#source !== null && this.#source.running();
    return this.#state === RUNNING;
  }

  /**
   * Whether the future is finished or cancelled.
   *
   * @example
   * ```ts
   * import { Future } from "jsr:@denomp/multiprocessing";
   * const f = new Future();
   * f.setException(new Error("boom"));
   * console.assert(f.done());
   * ```
   */
  done(): boolean {
    return this.#state >= CANCELLED;
  }

  /**
   * The call's result; rejects with the call's error, with `CancelledError` if the future was
   * cancelled, or with `TimeoutError` when it is not done within `timeout` ms (the call goes on).
   *
   * @example
   * ```ts
   * import { Future } from "jsr:@denomp/multiprocessing";
   * import { TimeoutError } from "jsr:@denomp/multiprocessing";
   * const f = new Future<string>();
   * const e = await f.result(10).catch((e) => e);
   * console.assert(e instanceof TimeoutError);
   * f.setResult("ok");
   * console.assert((await f.result(10)) === "ok");
   * ```
   */
  result(timeout?: number): Promise<T> {
    return this.#outcome(timeout, true) as Promise<T>;
  }

  /**
   * The call's error, or `null` when it succeeded; rejects with `CancelledError` if the future
   * was cancelled, or with `TimeoutError` when it is not done within `timeout` ms.
   *
   * @example
   * ```ts
   * import { Future } from "jsr:@denomp/multiprocessing";
   * const f = new Future();
   * f.setException(new RangeError("bad"));
   * console.assert((await f.exception()) instanceof RangeError);
   * ```
   */
  exception(timeout?: number): Promise<unknown> {
    return this.#outcome(timeout, false);
  }

  /**
   * Calls `fn(future)` once the future is done (at once, synchronously, if it already is).
   * Callbacks run in the order they were added; one that throws is logged and ignored, as in
   * Python.
   *
   * @example
   * ```ts
   * import { Future } from "jsr:@denomp/multiprocessing";
   * const f = new Future<number>();
   * f.setResult(1);
   * let seen = 0;
   * f.addDoneCallback(() => seen++); // already done: called now
   * console.assert(seen === 1);
   * ```
   */
  addDoneCallback(fn: (future: Future<T>) => void): void {
    if (typeof fn !== "function") {
      throw new TypeError(`addDoneCallback() takes a function: got ${typeof fn}`);
    }
    const call = () => {
      try {
        fn(this);
      } catch (e) {
        console.error(`denomp: exception calling callback for ${this}:`, e);
      }
    };
    if (this.done()) call();
    else this.#addWaiter(call);
  }

  /**
   * Makes the future awaitable: `await future` gives the result or throws the error
   * (`CancelledError` if cancelled).
   *
   * @example
   * ```ts
   * import { Future } from "jsr:@denomp/multiprocessing";
   * const f = new Future<number>();
   * setTimeout(() => f.setResult(5), 1);
   * console.assert((await f) === 5);
   * ```
   */
  then<A = T, B = never>(
    onfulfilled?: ((value: T) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    this.#promise ??= this.result();
    return this.#promise.then(onfulfilled, onrejected);
  }

  /**
   * For executors: marks the future running and returns true, or returns false if it was
   * cancelled (the executor then drops the call). Throws `ValueError` if it is running or done.
   *
   * @example
   * ```ts
   * import { Future } from "jsr:@denomp/multiprocessing";
   * const f = new Future();
   * f.cancel();
   * console.assert(f.setRunningOrNotifyCancel() === false);
   * ```
   */
  setRunningOrNotifyCancel(): boolean {
    if (this.#state === CANCELLED) return false;
    if (this.#state !== PENDING) {
      throw new ValueError(`Future in unexpected state: ${this}`);
    }
    this.#state = RUNNING;
    return true;
  }

  /**
   * For executors: finishes the future with `value`. Throws `ValueError` (Python's
   * `InvalidStateError`) if it is already done.
   *
   * @example
   * ```ts
   * import { Future } from "jsr:@denomp/multiprocessing";
   * const f = new Future<number>();
   * f.setResult(3);
   * console.assert(f.done() && (await f) === 3);
   * ```
   */
  setResult(value: T): void {
    this.#finish(true, value);
  }

  /**
   * For executors: finishes the future with `error`. Throws `ValueError` (Python's
   * `InvalidStateError`) if it is already done.
   *
   * @example
   * ```ts
   * import { Future } from "jsr:@denomp/multiprocessing";
   * const f = new Future();
   * f.setException(new Error("no"));
   * console.assert((await f.exception()) instanceof Error);
   * ```
   */
  setException(error: unknown): void {
    this.#finish(false, error);
  }

  /**
   * A short description, like Python's repr.
   *
   * @example
   * ```ts
   * import { Future } from "jsr:@denomp/multiprocessing";
   * console.assert(String(new Future()) === "<Future state=pending>");
   * ```
   */
  toString(): string {
    const state = STATE_NAMES[this.running() ? RUNNING : this.#state];
    if (this.#state !== FINISHED) return `<Future state=${state}>`;
    const v = this.#value;
    const kind = v === null ? "null" : typeof v === "object" ? v.constructor?.name : typeof v;
    return `<Future state=finished ${this.#ok ? "returned" : "raised"} ${kind}>`;
  }

  #finish(ok: boolean, value: unknown): void {
    if (this.#state === CANCELLED || this.#state === FINISHED) {
      throw new ValueError(`InvalidStateError: ${this}`);
    }
    this.#state = FINISHED;
    this.#ok = ok;
    this.#value = value;
    this.#source = null;
    this.#notify();
  }

  /** One waiter is kept alone, not in an array (the common case: one consumer per future). */
  #addWaiter(w: Waiter): void {
    const ws = this.#waiters;
    if (ws === null) this.#waiters = w;
    else if (typeof ws === "function") this.#waiters = [ws, w];
    else ws.push(w);
  }

  #notify(): void {
    const ws = this.#waiters;
    this.#waiters = null;
    if (ws === null) return;
    if (typeof ws === "function") ws(this as Future<unknown>);
    else for (const w of ws) w(this as Future<unknown>);
  }

  /** The settled outcome as a Promise; `wantResult` false gives the error (or null) instead. */
  #outcome(timeout: number | undefined, wantResult: boolean): Promise<unknown> {
    let ms: number;
    try {
      ms = timeout === undefined ? Infinity : deadlineOf(timeout) - performance.now();
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.done()) return this.#settled(wantResult);
    if (ms <= 0) return Promise.reject(this.#timeout(timeout!));
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const w = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#addWaiter(w);
      if (ms !== Infinity) {
        timer = setTimeout(() => {
          removeWaiter(this, w);
          reject(this.#timeout(timeout!));
        }, ms);
      }
    }).then(() => this.#settled(wantResult));
  }

  #settled(wantResult: boolean): Promise<unknown> {
    if (this.#state === CANCELLED) return Promise.reject(new CancelledError());
    if (!wantResult) return Promise.resolve(this.#ok ? null : this.#value);
    return this.#ok ? Promise.resolve(this.#value) : Promise.reject(this.#value);
  }

  #timeout(timeout: number): TimeoutError {
    return new TimeoutError(`the future was not done within ${timeout} ms`);
  }

  static {
    addWaiter = (f, w) => {
      if (f.done()) return false;
      f.#addWaiter(w);
      return true;
    };
    removeWaiter = (f, w) => {
      const ws = f.#waiters;
      if (ws === w) f.#waiters = null;
      else if (Array.isArray(ws)) {
        const i = ws.indexOf(w);
        if (i >= 0) ws.splice(i, 1);
      }
    };
    failedNow = (f) => f.#state === FINISHED && !f.#ok;
    firstSight = (f, by) => f.#seenBy !== by && (f.#seenBy = by, true);
    delegate = (f, source) => {
      if (f.#state === PENDING) f.#source = source;
    };
  }
}

/**
 * What `asCompleted` and `wait` accept: an executor's `Future` or a pool's `AsyncResult`, of any
 * result type (only their completion is looked at).
 */
export type Waitable =
  | Future<unknown>
  | Pick<AsyncResult<unknown>, "ready" | "successful" | "wait">;

/**
 * The type of what `asCompleted` yields: the future (or `AsyncResult`) itself, typed without its
 * `then`. TypeScript types the element of a `for await` loop as the *awaited* value, which for a
 * thenable is its result; the loop does not await it (the object yielded is the future, so
 * `f.result()`, `===` and Map lookups work). Cast back with `f as F` where a `Future` is needed.
 */
export type Completed<F> = Omit<F, "then">;

/** Throws a `TypeError` naming what `fn` got when `x` is neither a Future nor an AsyncResult. */
function checkWaitable(x: unknown, fn: string): Future<unknown> | AsyncResult<unknown> {
  if (x instanceof Future || x instanceof AsyncResult) return x;
  const got = x === null ? "null" : typeof x === "object" ? x.constructor?.name : typeof x;
  throw new TypeError(`${fn}() takes Futures or AsyncResults: got ${got}`);
}

/** Whether `x` is done (finished or cancelled). */
function isDone(x: Waitable): boolean {
  return x instanceof Future ? x.done() : x.ready();
}

/** Whether `x` is done and failed (a cancelled future did not fail, as in Python). */
function hasFailed(x: Waitable): boolean {
  return x instanceof Future ? failedNow(x as Future<unknown>) : x.ready() && !x.successful();
}

/**
 * Calls `w` once when `x` is done (not at all if it already is: check `isDone` first), and
 * returns a function that withdraws `w`. A Future calls it synchronously as it settles; an
 * AsyncResult one microtask later (through its promise).
 */
function watch(x: Waitable, w: () => void): () => void {
  if (x instanceof Future) {
    const f = x as Future<unknown>;
    addWaiter(f, w);
    return () => removeWaiter(f, w);
  }
  let live = true;
  void x.wait().then(() => live && w()); // wait() never rejects
  return () => (live = false);
}

// ---------------------------------------------------------------------------------------------
// asCompleted, wait

/**
 * Yields each future (or `AsyncResult`) as it finishes — those already done first — (Python's
 * `as_completed`); duplicates are yielded once. Throws `TimeoutError` when `timeout` ms (from
 * this call) pass before all are done. Leaving the loop early stops watching the rest.
 *
 * @example
 * ```ts
 * import { asCompleted, ThreadPoolExecutor } from "jsr:@denomp/multiprocessing";
 * await using ex = new ThreadPoolExecutor();
 * const sleep = (ms: number) => new Promise((r) => setTimeout(() => r(ms), ms));
 * const order: unknown[] = [];
 * for await (const f of asCompleted([ex.submit(sleep, 30), ex.submit(sleep, 1)], 5000)) {
 *   order.push(await f.result());
 * }
 * console.assert(order.join() === "1,30");
 * ```
 */
export function asCompleted<F extends Waitable>(
  fs: Iterable<F>,
  timeout?: number,
): AsyncIterableIterator<Completed<F>> {
  return new AsCompleted(fs, timeout);
}

/**
 * A hand-written iterator, not an async generator: `yield f` in an async generator would await
 * the thenable future and yield its result instead of the future itself.
 */
class AsCompleted<F extends Waitable> implements AsyncIterableIterator<Completed<F>> {
  readonly #ready = new Deque<F>();
  /** Each future (or AsyncResult) once, in the input's order. */
  readonly #all: F[] = [];
  /** How many are not done yet. */
  #left = 0;
  /** Withdraws the watch of each AsyncResult (Futures are watched through `#onDone`). */
  readonly #unwatch: (() => void)[] = [];
  readonly #deadline: number;
  readonly #timeout: number | undefined;
  #wake: (() => void) | null = null;
  #closed = false;

  /** The one waiter of every Future watched (no closure per future: 10,000 may be watched). */
  readonly #onDone = (f: Future<unknown> | AsyncResult<unknown>): void => {
    if (this.#closed) return;
    this.#left--;
    this.#ready.push(f as F);
    const w = this.#wake;
    this.#wake = null;
    w?.();
  };

  constructor(fs: Iterable<F>, timeout: number | undefined) {
    this.#deadline = deadlineOf(timeout);
    this.#timeout = timeout;
    checkIterable(fs, "asCompleted");
    // Those done already first, in the input's order (a waiter is called only later, when its
    // future settles: never inside this loop), then the others as they finish. Duplicates are
    // skipped by a mark on each Future rather than a Set of them all: with 10,000 futures the
    // Set (its hashing and its growing tables) was two thirds of this loop's cost. Marking
    // is safe because no other asCompleted call runs in the middle: this loop is synchronous,
    // and it runs no code of the caller's (an iterable other than an array is read out first:
    // a generator could call asCompleted on the same futures).
    const all = this.#all, ready = this.#ready, onDone = this.#onDone;
    let others: Set<F> | null = null; // AsyncResults: no mark of ours, so a Set (rare)
    try {
      const list: readonly F[] = Array.isArray(fs) ? fs : Array.from(fs);
      const by = ++asCompletedCalls;
      for (let i = 0; i < list.length; i++) {
        const f = list[i];
        checkWaitable(f, "asCompleted");
        if (f instanceof Future) {
          if (!firstSight(f, by)) continue;
          all.push(f);
          if (!addWaiter(f, onDone)) ready.push(f);
          continue;
        }
        if ((others ??= new Set()).has(f)) continue;
        others.add(f);
        all.push(f);
        if ((f as AsyncResult<unknown>).ready()) ready.push(f);
        else this.#unwatch.push(watch(f, () => onDone(f as AsyncResult<unknown>)));
      }
    } catch (e) {
      // Not a future (or the iterable threw): watch nothing, as if never called.
      this.#left = 1;
      void this.return();
      throw e;
    }
    this.#left = all.length - ready.length;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<Completed<F>, undefined>> {
    if (this.#ready.length) {
      return Promise.resolve({ value: this.#ready.shift()!, done: false });
    }
    if (this.#left === 0 || this.#closed) return this.return();
    return this.#later();
  }

  async #later(): Promise<IteratorResult<Completed<F>, undefined>> {
    const ms = remainingMs(this.#deadline);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    if (ms > 0) {
      await new Promise<void>((resolve) => {
        const prev = this.#wake;
        this.#wake = () => {
          prev?.();
          resolve();
        };
        if (ms !== Infinity) timer = setTimeout(() => (timedOut = true, resolve()), ms);
      });
      clearTimeout(timer);
    } else timedOut = true;
    if (this.#ready.length || this.#left === 0) return this.next();
    if (!timedOut && !this.#closed) return this.#later();
    const left = this.#left;
    await this.return();
    throw new TimeoutError(
      `${left} (of ${this.#all.length}) futures unfinished after ${this.#timeout} ms`,
    );
  }

  return(): Promise<IteratorResult<Completed<F>, undefined>> {
    if (!this.#closed) {
      this.#closed = true;
      if (this.#left > 0) {
        for (const f of this.#all) if (f instanceof Future) removeWaiter(f, this.#onDone);
        for (const u of this.#unwatch) u();
        this.#left = 0;
      }
      // A `next()` waiting now (called before this `return()`) ends too.
      const w = this.#wake;
      this.#wake = null;
      w?.();
    }
    return Promise.resolve({ value: undefined, done: true });
  }
}

/** Throws a `TypeError` naming what `who` got when `fs` is not iterable. */
function checkIterable(fs: unknown, who: string): void {
  if (fs === null || typeof (fs as Iterable<unknown>)?.[Symbol.iterator] !== "function") {
    throw new TypeError(`${who}() takes an iterable of Futures: got ${typeof fs}`);
  }
}

function uniqueWaitables<F extends Waitable>(fs: Iterable<F>, who: string): Set<F> {
  checkIterable(fs, who);
  const all = new Set<F>();
  for (const f of fs) all.add(checkWaitable(f, who) as F);
  return all;
}

/** `wait` returns when any future finishes. */
export const FIRST_COMPLETED = "FIRST_COMPLETED";
/** `wait` returns when any future fails, or when all are done. */
export const FIRST_EXCEPTION = "FIRST_EXCEPTION";
/** `wait` returns when all futures are done (the default). */
export const ALL_COMPLETED = "ALL_COMPLETED";

/** Options of `wait`. */
export interface FuturesWaitOptions {
  /** Milliseconds after which `wait` resolves with what is done by then (no error). */
  timeout?: number;
  /** When to return: `"ALL_COMPLETED"` (default), `"FIRST_COMPLETED"` or `"FIRST_EXCEPTION"`. */
  returnWhen?: typeof FIRST_COMPLETED | typeof FIRST_EXCEPTION | typeof ALL_COMPLETED;
}

/** What `wait` resolves to: the futures done (finished or cancelled) and the others. */
export interface DoneAndNotDone<F> {
  /** The futures finished or cancelled. */
  done: Set<F>;
  /** The others. */
  notDone: Set<F>;
}

/**
 * Waits for futures (or `AsyncResult`s) and resolves to `{ done, notDone }` (Python's
 * `concurrent.futures.wait`): when all are done (`ALL_COMPLETED`, the default), the first is
 * (`FIRST_COMPLETED`), the first fails (`FIRST_EXCEPTION`; a cancelled future is no failure), or
 * `timeout` ms have passed — a timeout is no error: see `notDone`.
 *
 * @example
 * ```ts
 * import { ThreadPoolExecutor, wait } from "jsr:@denomp/multiprocessing";
 * await using ex = new ThreadPoolExecutor();
 * const slow = ex.submit(() => new Promise((r) => setTimeout(r, 200)));
 * const fast = ex.submit(() => "now");
 * const { done, notDone } = await wait([slow, fast], { returnWhen: "FIRST_COMPLETED" });
 * console.assert(done.has(fast) && notDone.has(slow));
 * ```
 */
export async function wait<F extends Waitable>(
  fs: Iterable<F>,
  options?: FuturesWaitOptions,
): Promise<DoneAndNotDone<F>> {
  const o = optionsOf(options, "wait", "wait(fs, { timeout: 5000, returnWhen: FIRST_COMPLETED })");
  const when = o.returnWhen ?? ALL_COMPLETED;
  if (when !== ALL_COMPLETED && when !== FIRST_COMPLETED && when !== FIRST_EXCEPTION) {
    throw new ValueError(
      `returnWhen must be "FIRST_COMPLETED", "FIRST_EXCEPTION" or "ALL_COMPLETED": ` +
        `current value is ${String(when)}`,
    );
  }
  const ms = remainingMs(deadlineOf(o.timeout));
  const all = uniqueWaitables(fs, "wait");
  const pending = new Set<F>();
  let failed = false;
  for (const f of all) {
    if (!isDone(f)) pending.add(f);
    else failed ||= hasFailed(f);
  }
  const met = () =>
    pending.size === 0 ||
    (when === FIRST_COMPLETED && pending.size < all.size) ||
    (when === FIRST_EXCEPTION && failed);
  if (!met() && ms > 0) {
    const unwatch: (() => void)[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      for (const f of pending) {
        unwatch.push(watch(f, () => {
          pending.delete(f);
          failed ||= hasFailed(f);
          if (met()) resolve();
        }));
      }
      if (ms !== Infinity) timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
    for (const u of unwatch) u();
  }
  const done = new Set<F>(), notDone = new Set<F>();
  for (const f of all) (isDone(f) ? done : notDone).add(f);
  return { done, notDone };
}
