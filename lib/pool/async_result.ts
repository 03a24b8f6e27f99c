/**
 * `AsyncResult`: the result of `applyAsync`, `mapAsync` or `starmapAsync` (Python's
 * `AsyncResult`). It is thenable, and makes its promise only when somebody awaits it: a result
 * nobody asks for costs no promise, and its failure is no unhandled rejection (as in Python, an
 * unread error is dropped). The pool settles it through module-level functions set in its static
 * block (`settle`, `newResult`...), which keep its state private to users.
 *
 * @module
 */

import { deadlineOf } from "../core/atomics.ts";
import { CancelledError, TimeoutError, ValueError } from "../core/errors.ts";

const PENDING = 0, FULFILLED = 1, REJECTED = 2;

// Pool-internal access to AsyncResult's private state (set in its static block).
/** Settles `r` (once: later calls do nothing). */
export let settle: <T>(r: AsyncResult<T>, ok: boolean, value: unknown) => void;
/** A new pending result. */
export let newResult: <T>(
  callback?: (value: T) => void,
  errorCallback?: (error: unknown) => void,
) => AsyncResult<T>;
/**
 * A new pending result that tells `relay(target, ok, value)` when it settles: how an executor's
 * `Future` follows its call with one function for all calls and no closure per call (10,000
 * quick calls paid for two closures and an options object each, see futures.ts).
 */
export let newRelayed: <T>(relay: Relay, target: object) => AsyncResult<T>;
/** Told once when a relayed result settles (see {@link newRelayed}). */
export type Relay = (target: object, ok: boolean, value: unknown) => void;
/** Runs `cleanup` when `r` settles (the timers and listeners of a signal or timeout). */
export let setCleanup: <T>(r: AsyncResult<T>, cleanup: () => void) => void;
/** Ties a result to its tasks and to who can withdraw them, for `cancel()` and `running()`. */
export let setWork: <T>(r: AsyncResult<T>, owner: Withdrawer, work: Work | Work[]) => void;

/** A task of a result, as the result sees it (`Task` in jobs.ts). */
export interface Work {
  /** Whether a worker has begun it and it is not done. */
  started(): boolean;
}

/** Who can take a task back before it starts: the pool's task handler (tasks.ts). */
export interface Withdrawer {
  /** Withdraws `t` if it has not started and marks it done; false once it has started or is done. */
  withdraw(t: Work): boolean;
}

/**
 * The result of `applyAsync`, `mapAsync` or `starmapAsync` (Python's `AsyncResult`). It is
 * thenable, so `await r` works; `get(timeout)` throws `TimeoutError` when the result is not
 * there in time (the task goes on).
 *
 * @example
 * ```ts
 * import { Pool } from "jsr:@denomp/multiprocessing";
 * // Task functions are exported: the workers import this module.
 * export function square(x: number): number {
 *   return x * x;
 * }
 * if (import.meta.main) {
 *   await using pool = new Pool({ processes: 2 });
 *   const r = pool.applyAsync(square, [7]);
 *   console.log(await r.get(1000), r.ready(), r.successful()); // 49 true true
 * }
 * ```
 */
export class AsyncResult<T> implements PromiseLike<T> {
  #state = PENDING;
  #value: unknown = undefined;
  #callback: ((value: T) => void) | undefined;
  #errorCallback: ((error: unknown) => void) | undefined;
  // The promise is made only when somebody awaits: a result nobody asks for costs no promise,
  // and its failure is no unhandled rejection (as in Python, an unread error is dropped).
  #promise: Promise<T> | null = null;
  #resolve: ((v: T) => void) | null = null;
  #reject: ((e: unknown) => void) | null = null;
  #cleanup: (() => void) | null = null;
  /** Its pool's task handler and its task(s) while it is pending (`cancel()`, `running()`). */
  #owner: Withdrawer | null = null;
  #work: Work | Work[] | null = null;
  #cancelled = false;
  /** See {@link newRelayed}. */
  #relay: Relay | null = null;
  #target: object | null = null;

  private constructor(
    callback?: (value: T) => void,
    errorCallback?: (error: unknown) => void,
  ) {
    this.#callback = callback;
    this.#errorCallback = errorCallback;
  }

  static {
    settle = <T>(r: AsyncResult<T>, ok: boolean, value: unknown) => r.#settle(ok, value);
    newResult = <T>(cb?: (value: T) => void, ecb?: (error: unknown) => void) =>
      new AsyncResult<T>(cb, ecb);
    newRelayed = <T>(relay: Relay, target: object) => {
      const r = new AsyncResult<T>();
      r.#relay = relay;
      r.#target = target;
      return r;
    };
    setCleanup = <T>(r: AsyncResult<T>, cleanup: () => void) => {
      r.#cleanup = cleanup;
    };
    setWork = <T>(r: AsyncResult<T>, owner: Withdrawer, work: Work | Work[]) => {
      if (r.#state !== PENDING) return;
      r.#owner = owner;
      r.#work = work;
    };
  }

  #settle(ok: boolean, value: unknown): void {
    if (this.#state !== PENDING) return;
    this.#state = ok ? FULFILLED : REJECTED;
    this.#value = value;
    this.#owner = this.#work = null;
    const cleanup = this.#cleanup;
    if (cleanup) {
      this.#cleanup = null;
      cleanup();
    }
    if (this.#promise) {
      if (ok) this.#resolve!(value as T);
      else this.#reject!(value);
      this.#resolve = this.#reject = null;
    }
    const relay = this.#relay;
    if (relay) {
      const target = this.#target!;
      this.#relay = this.#target = null;
      try {
        relay(target, ok, value);
      } catch (e) {
        reportError(e);
      }
      return;
    }
    const cb = ok ? this.#callback : this.#errorCallback;
    this.#callback = this.#errorCallback = undefined;
    if (cb) {
      // A throwing callback must not break the pool's dispatch loop; report it as the platform
      // reports a throwing event listener.
      try {
        (cb as (v: unknown) => void)(value);
      } catch (e) {
        reportError(e);
      }
    }
  }

  #promised(): Promise<T> {
    if (this.#promise) return this.#promise;
    if (this.#state === FULFILLED) return this.#promise = Promise.resolve(this.#value as T);
    if (this.#state === REJECTED) return this.#promise = Promise.reject(this.#value);
    return this.#promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /**
   * The result; rejects with the task's error, or with `TimeoutError` when it is not ready within
   * `timeout` ms (the task goes on, as in Python).
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * // Task functions are exported: the workers import this module.
   * export function slowTask(): Promise<string> {
   *   return new Promise((resolve) => setTimeout(() => resolve("done"), 1000));
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   const r = pool.applyAsync(slowTask, []);
   *   await r.get(10).catch((e) => console.log(e.name)); // "TimeoutError"
   * }
   * ```
   */
  async get(timeout?: number): Promise<T> {
    if (timeout !== undefined && this.#state === PENDING) {
      await this.wait(timeout);
      if (this.#state === PENDING) {
        throw new TimeoutError(`the result was not ready within ${timeout} ms`);
      }
    }
    return await this.#promised();
  }

  /**
   * Resolves once the result is ready (fulfilled or failed), or after `timeout` ms; never
   * rejects with the task's error.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * // Task functions are exported: the workers import this module.
   * export function square(x: number): number {
   *   return x * x;
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   const r = pool.applyAsync(square, [3]);
   *   await r.wait();
   *   console.log(r.ready()); // true
   * }
   * ```
   */
  async wait(timeout?: number): Promise<void> {
    if (this.#state !== PENDING) return;
    const done = this.#promised().then(noop, noop);
    if (timeout === undefined) return await done;
    const ms = deadlineOf(timeout) === Infinity ? undefined : timeout;
    if (ms === undefined) return await done;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Whether the task has finished (successfully or not).
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * // Task functions are exported: the workers import this module.
   * export function square(x: number): number {
   *   return x * x;
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   const r = pool.applyAsync(square, [3]);
   *   console.log(r.ready()); // false, most likely
   * }
   * ```
   */
  ready(): boolean {
    return this.#state !== PENDING;
  }

  /**
   * Whether the task succeeded; throws `ValueError` if it has not finished (as Python does).
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * // Task functions are exported: the workers import this module.
   * export function square(x: number): number {
   *   return x * x;
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   const r = pool.applyAsync(square, [3]);
   *   await r.wait();
   *   console.log(r.successful()); // true
   * }
   * ```
   */
  successful(): boolean {
    if (this.#state === PENDING) throw new ValueError(`${this} not ready`);
    return this.#state === FULFILLED;
  }

  /**
   * Withdraws the task if no worker has started it yet, and returns true: a queued task is
   * dropped, one already in a worker's queue is skipped by that worker (each task either starts
   * or is skipped, never both). The result then rejects with `CancelledError` (and
   * `errorCallback` gets it). Returns false once the task has started — it runs on, nothing is
   * stopped (to stop a running task, pass a `signal`, which replaces its worker) — or when the
   * result is ready. True again for a result already cancelled.
   *
   * Only a result of one task can be cancelled: `applyAsync`, or a `mapAsync`/`starmapAsync`
   * whose items make one chunk. For a map of several chunks it returns false (use `signal`).
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * // Task functions are exported: the workers import this module.
   * export function square(x: number): number {
   *   return x * x;
   * }
   * export function slowTask(): Promise<string> {
   *   return new Promise((resolve) => setTimeout(() => resolve("done"), 1000));
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 1 });
   *   const busy = pool.applyAsync(slowTask, []);
   *   await new Promise((r) => setTimeout(r, 100)); // slowTask starts
   *   const r = pool.applyAsync(square, [3]);
   *   console.log(r.cancel(), busy.cancel()); // true false (once slowTask has started)
   *   await r.get().catch((e) => console.log(e.name)); // "CancelledError"
   * }
   * ```
   */
  cancel(): boolean {
    if (this.#cancelled) return true;
    const work = this.#work;
    if (this.#state !== PENDING || work === null || Array.isArray(work)) return false;
    if (!this.#owner!.withdraw(work)) return false;
    this.#cancelled = true;
    this.#settle(false, new CancelledError("the task was cancelled before it started"));
    return true;
  }

  /**
   * Whether a worker has begun the task (or a chunk of the map) and the result is not ready yet.
   * False while the task waits in the pool's or a worker's queue, and once the result is ready.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * // Task functions are exported: the workers import this module.
   * export function slowTask(): Promise<string> {
   *   return new Promise((resolve) => setTimeout(() => resolve("done"), 1000));
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   const r = pool.applyAsync(slowTask, []);
   *   console.log(r.running()); // false: not started yet
   *   await new Promise((r) => setTimeout(r, 100));
   *   console.log(r.running()); // true: a worker runs it
   * }
   * ```
   */
  running(): boolean {
    const work = this.#work;
    if (this.#state !== PENDING || work === null) return false;
    return Array.isArray(work) ? work.some(started) : work.started();
  }

  /**
   * Makes the result awaitable: `await r` gives the value or throws the task's error.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * // Task functions are exported: the workers import this module.
   * export function square(x: number): number {
   *   return x * x;
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   console.log(await pool.applyAsync(square, [4])); // 16
   * }
   * ```
   */
  then<A = T, B = never>(
    onfulfilled?: ((value: T) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.#promised().then(onfulfilled, onrejected);
  }

  /**
   * A short description, like Python's repr.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * // Task functions are exported: the workers import this module.
   * export function square(x: number): number {
   *   return x * x;
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   console.log(String(pool.applyAsync(square, [4]))); // "<AsyncResult pending>"
   * }
   * ```
   */
  toString(): string {
    const state = this.#cancelled ? "cancelled" : ["pending", "fulfilled", "rejected"][this.#state];
    return `<AsyncResult ${state}>`;
  }
}

function noop(): void {}

const started = (w: Work): boolean => w.started();
