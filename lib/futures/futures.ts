/**
 * Python's `concurrent.futures` on top of denomp's pools: `ProcessPoolExecutor` runs exported
 * functions in pool workers, `ThreadPoolExecutor` runs any function in the calling isolate;
 * both hand back {@link Future}s, which `asCompleted` and `wait` watch (a pool's `AsyncResult`
 * too). Timeouts are in milliseconds.
 *
 * How it works, and why:
 * - **Every call goes to the pool at once, and stays cancellable until it starts.** CPython
 *   hands at most `max_workers + 1` calls to its workers at a time, so that the rest stay
 *   pending and cancellable; with calls of a few microseconds that window, not the work, sets
 *   the pace (the workers run dry once per `maxWorkers + 1` calls). A `ProcessPoolExecutor`
 *   hands each call to its {@link Pool} in `submit` (`applyAsync`, batched by the pool) and asks
 *   the pool's `AsyncResult` for `running()` and `cancel()`: the pool knows when a worker really
 *   begins a call, and withdraws one that has not begun wherever it waits (its own queue, or a
 *   worker's queue behind the call that worker is running; each call either starts or is
 *   skipped, never both). So a future is pending until a worker starts it — stricter than
 *   CPython, where a call in the window is "running".
 * - **Per call, less than `applyAsync` with a callback.** With calls of a microsecond, what the
 *   main thread does per call sets the pace (it also encodes, decodes and dispatches for both
 *   workers, on a machine with as many cores as workers). Each call costs a `Future` and the
 *   pool's own `AsyncResult`, which tells the executor's one `#settled` function about the future
 *   it stands for (the pool's internal `applyRelayed`): no closures nor options object per call,
 *   so `submit` costs about half of `applyAsync` with its two callbacks. The executor keeps its
 *   calls in a plain array swept of the done ones now and then, with a count of those pending,
 *   and `asCompleted` tells duplicates apart by a mark on each future (a `Set` added to and
 *   deleted from per call cost half as much again). What an `asCompleted` loop still pays per
 *   call is its own promise and `await` for `next()` and for `result()`, and a `shutdown()` that
 *   starts when the loop ends, where `close()` right after the callbacks' `applyAsync` calls lets
 *   the workers exit while the last results come in (W5b: 0.85–0.95 of the callback variant).
 * - **`whenReady()` rather than a warm-up call** (not in Python): the pool paces how many calls
 *   it hands a worker at once by the measured duration of the calls so far, and a first call
 *   (its code not compiled yet) measures tens to thousands of times slower than the next ones,
 *   so a batch of quick calls after it goes out a few at a time until the estimate comes down.
 * - **A worker's death fails one future.** The pool fails the task a dying worker was running
 *   with `BrokenPoolError` (exported here under Python's name, {@link BrokenProcessPool}) naming
 *   the worker and its exit code, re-runs the calls it had not started on another worker, and
 *   replaces it. The executor stays usable: unlike CPython's, it does not break as a whole. Only
 *   a pool that can no longer run anything (its initializer failed) breaks it: every pending
 *   future fails with that error and `submit` throws it.
 * - **Threads are `Thread`s.** A `ThreadPoolExecutor` starts up to `maxWorkers` denomp
 *   {@link Thread}s (so `currentThread()` and `local()` work in a call, as in Python), each taking
 *   calls from the executor's queue until it is empty. Like Python threads under the GIL, they
 *   interleave at `await`: a synchronous function runs to its end before anything else does.
 *
 * @module
 */

import { Deque } from "../core/deque.ts";
import { deadlineOf, remainingMs } from "../core/atomics.ts";
import { optionsOf } from "../core/args.ts";
import { delegate, Future, type FutureSource } from "./future.ts";
import { BrokenPoolError, TimeoutError, ValueError } from "../core/errors.ts";
import { applyRelayed, Pool, type PoolOptions } from "../pool/pool.ts";
import { cpuCount } from "../process/process.ts";
import { Thread } from "../core/threading.ts";

// The types the exports of this module refer to, for its documentation (mod.ts has them too).
export type { AsyncResult } from "../pool/async_result.ts";
export type { BrokenPoolError } from "../core/errors.ts";

export {
  ALL_COMPLETED,
  asCompleted,
  CancelledError,
  type Completed,
  type DoneAndNotDone,
  FIRST_COMPLETED,
  FIRST_EXCEPTION,
  Future,
  type FuturesWaitOptions,
  wait,
  type Waitable,
} from "./future.ts";

/**
 * Python's `concurrent.futures.process.BrokenProcessPool`: the same class as
 * {@link BrokenPoolError}, which fails the future of a call whose worker died (the executor goes
 * on), or every future when the pool's initializer failed.
 *
 * @example
 * ```ts
 * import { BrokenProcessPool } from "jsr:@denomp/multiprocessing";
 * import { BrokenPoolError } from "jsr:@denomp/multiprocessing";
 * console.assert(new BrokenPoolError("worker died") instanceof BrokenProcessPool);
 * ```
 */
export const BrokenProcessPool: typeof BrokenPoolError = BrokenPoolError;
/** The type of {@link BrokenProcessPool} errors. */
export type BrokenProcessPool = BrokenPoolError;

type AnyFn = (...args: never[]) => unknown;

/** Options of `Executor.map`. */
export interface ExecutorMapOptions {
  /** Milliseconds from the call after which the iteration throws `TimeoutError`. */
  timeout?: number;
  /**
   * Items per call handed to a process pool worker (default 1, as in Python); a large input
   * should use more. A `ThreadPoolExecutor` ignores it, as Python's does.
   */
  chunksize?: number;
}

/** Options of `Executor.shutdown`. */
export interface ShutdownOptions {
  /** Wait until every pending call has finished and the workers have exited (default true). */
  wait?: boolean;
  /** Cancel the calls that have not started (default false). */
  cancelFutures?: boolean;
}

/** A call waiting for a thread (ThreadPoolExecutor). */
interface WorkItem {
  readonly future: Future<unknown>;
  readonly fn: AnyFn;
  readonly args: unknown[];
  /** A chunk of a `map`: `args` are the items, the result is their results. */
  readonly chunk: boolean;
}

/** The calls an executor has not started yet, in order (Python's pending work items). */
class WorkQueue extends Deque<WorkItem> {
  get size(): number {
    return this.length;
  }

  /** Cancels every call in the queue and empties it. */
  cancelAll(): void {
    for (let item = this.shift(); item; item = this.shift()) item.future.cancel();
  }
}

/**
 * What both executors share (Python's `concurrent.futures.Executor`): `submit`, `map`,
 * `shutdown`, and `await using` (Python's `with`: shut down and wait).
 *
 * @example
 * ```ts
 * import { type Executor, ThreadPoolExecutor } from "jsr:@denomp/multiprocessing";
 * async function total(ex: Executor, xs: number[]): Promise<number> {
 *   let sum = 0;
 *   for await (const y of ex.map((x: number) => x * 2, xs)) sum += y;
 *   return sum;
 * }
 * await using ex = new ThreadPoolExecutor();
 * console.assert((await total(ex, [1, 2, 3])) === 12);
 * ```
 */
export abstract class Executor implements AsyncDisposable {
  /**
   * Schedules `fn(...args)` and returns its {@link Future} at once. Throws `ValueError` after
   * `shutdown()` (Python's `RuntimeError: cannot schedule new futures after shutdown`).
   */
  abstract submit<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): Future<Awaited<R>>;

  /**
   * Stops accepting calls; with `wait` (default true) resolves once every pending call has
   * finished and the workers have exited. `cancelFutures` cancels the calls not yet started.
   * Calling it again is harmless.
   */
  abstract shutdown(options?: ShutdownOptions): Promise<void>;

  /**
   * For a process pool: submits one call that maps `fn` over `items` (a chunk of `map`), or
   * returns null when this executor does not chunk.
   */
  protected submitChunk<T, R>(_fn: (item: T) => R, _items: T[]): Future<Awaited<R>[]> | null {
    return null;
  }

  /**
   * Submits `fn(item)` for every item now, and yields the results in input order (Python's
   * `Executor.map`); the first call that failed throws its error at its position. With `timeout`
   * (ms from this call) the iteration throws `TimeoutError` when a result is not ready in time.
   * Leaving the loop early (or an error) cancels the calls that have not started.
   *
   * @example
   * ```ts
   * import { ThreadPoolExecutor } from "jsr:@denomp/multiprocessing";
   * await using ex = new ThreadPoolExecutor({ maxWorkers: 2 });
   * const out: number[] = [];
   * for await (const y of ex.map(async (x: number) => x * x, [1, 2, 3])) out.push(y);
   * console.assert(out.join() === "1,4,9");
   * ```
   */
  map<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T>,
    options?: ExecutorMapOptions,
  ): AsyncGenerator<Awaited<R>, void, undefined> {
    const name = this.constructor.name;
    const o = optionsOf(
      options,
      `${name}.map`,
      "map(fn, items, { timeout: 5000, chunksize: 100 })",
    );
    const cs = o.chunksize ?? 1;
    if (!Number.isInteger(cs) || cs < 1) {
      throw new ValueError(`chunksize must be >= 1: current value is ${cs}`);
    }
    const deadline = deadlineOf(o.timeout);
    if (iterable === null || typeof (iterable as Iterable<T>)?.[Symbol.iterator] !== "function") {
      throw new TypeError(`${name}.map() takes an iterable of items: got ${typeof iterable}`);
    }
    const fs: Future<unknown>[] = [];
    let chunked = false, chunk: T[] = [];
    const flush = () => {
      const f = this.submitChunk(fn, chunk);
      if (f) {
        chunked = true;
        fs.push(f);
      } else for (const y of chunk) fs.push(this.submit(fn, y)); // this executor does not chunk
      chunk = [];
    };
    try {
      for (const x of iterable) {
        if (cs === 1) fs.push(this.submit(fn, x));
        else if (chunk.push(x) === cs) flush();
      }
      if (chunk.length) flush();
    } catch (e) {
      for (const f of fs) f.cancel();
      throw e;
    }
    return inOrder(fs, deadline, o.timeout, chunked) as AsyncGenerator<Awaited<R>, void, undefined>;
  }

  /**
   * `await using ex = new ...Executor()`: shuts down and waits at the end of the scope, as
   * Python's `with ... as ex:` does.
   *
   * @example
   * ```ts
   * import { ThreadPoolExecutor } from "jsr:@denomp/multiprocessing";
   * {
   *   await using ex = new ThreadPoolExecutor();
   *   ex.submit(() => 1);
   * } // every call has finished here
   * ```
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown({ wait: true });
  }
}

/** The results of `map`'s futures in order; cancels those not reached when it stops early. */
async function* inOrder(
  fs: Future<unknown>[],
  deadline: number,
  timeout: number | undefined,
  chunked: boolean,
): AsyncGenerator<unknown, void, undefined> {
  let i = 0;
  try {
    for (; i < fs.length; i++) {
      const f = fs[i];
      let v: unknown;
      if (deadline === Infinity) v = await f.result();
      else {
        try {
          v = await f.result(remainingMs(deadline));
        } catch (e) {
          if (!(e instanceof TimeoutError) || f.done()) throw e;
          throw new TimeoutError(`map() results were not all ready within ${timeout} ms`);
        }
      }
      if (!chunked) yield v;
      else for (const x of v as unknown[]) yield x;
    }
  } finally {
    for (; i < fs.length; i++) fs[i].cancel();
  }
}

function checkFn(fn: unknown, who: string): void {
  if (typeof fn !== "function") {
    throw new TypeError(`${who}.submit() takes a function: got ${typeof fn}`);
  }
}

const isThenable = (x: unknown): x is PromiseLike<unknown> =>
  x !== null && (typeof x === "object" || typeof x === "function") &&
  typeof (x as PromiseLike<unknown>).then === "function";

// ---------------------------------------------------------------------------------------------
// ProcessPoolExecutor

/** Options of `new ProcessPoolExecutor(...)`. */
export interface ProcessPoolExecutorOptions {
  /** Number of worker processes; default `cpuCount()`. */
  maxWorkers?: number;
  /** An exported function each worker runs once, before its first call. */
  initializer?: (...args: never[]) => unknown;
  /** Arguments of `initializer`. */
  initargs?: readonly unknown[];
  /** A worker is replaced after this many calls; default: never. */
  maxTasksPerChild?: number | null;
  /** `"thread"` (a Web Worker, the default) or `"process"` (a `deno` OS process), as for `Pool`. */
  isolation?: "thread" | "process";
}

/**
 * Runs exported functions in a {@link Pool} of worker processes (Python's
 * `concurrent.futures.ProcessPoolExecutor`). Every call goes to the pool at once; its future is
 * pending (and `cancel()` withdraws it) until a worker starts it. A worker that dies fails only
 * the future of the call it was running, with {@link BrokenProcessPool}; the executor goes on.
 *
 * @example
 * ```ts ignore
 * // main.ts
 * import { asCompleted, ProcessPoolExecutor } from "jsr:@denomp/multiprocessing";
 * export function square(x: number) {
 *   return x * x;
 * }
 * if (import.meta.main) {
 *   await using ex = new ProcessPoolExecutor({ maxWorkers: 2 });
 *   const fs = [1, 2, 3].map((x) => ex.submit(square, x));
 *   for await (const f of asCompleted(fs)) console.log(await f.result());
 *   for await (const y of ex.map(square, [4, 5])) console.log(y); // 16, 25
 * }
 * ```
 */
export class ProcessPoolExecutor extends Executor {
  readonly #pool: Pool;
  readonly #maxWorkers: number;
  /**
   * The futures submitted, for `shutdown({ cancelFutures: true })` and `toString`: those not done
   * yet, and done ones until the next sweep. An array swept now and then rather than a Set added
   * to and deleted from per call: 10,000 quick calls paid for the Set's hashing and its tables
   * growing and shrinking (see the module doc).
   */
  #calls: Future<unknown>[] = [];
  /** How many of `#calls` are not done (each call's callback or error callback lowers it). */
  #pending = 0;
  #shutdown = false;
  /** Set once the pool cannot run anything (its initializer failed). */
  #broken: Error | null = null;
  /** Settles once the pool is closed and joined (made by the first `shutdown`). */
  #closed: Promise<void> | null = null;

  /**
   * Starts the pool's workers. Throws `ValueError` when `maxWorkers` is not a positive integer
   * or `isolation` is not `"thread"` or `"process"`.
   *
   * @example
   * ```ts ignore
   * const ex = new ProcessPoolExecutor({ maxWorkers: 4, initializer: setup, initargs: ["db"] });
   * ```
   */
  constructor(options?: ProcessPoolExecutorOptions) {
    super();
    const o = optionsOf(
      options,
      "ProcessPoolExecutor",
      "new ProcessPoolExecutor({ maxWorkers: 4 })",
    );
    const n = o.maxWorkers ?? cpuCount();
    if (!Number.isInteger(n) || n < 1) {
      throw new ValueError(`max_workers must be greater than 0: current value is ${n}`);
    }
    if (o.isolation !== undefined && o.isolation !== "thread" && o.isolation !== "process") {
      throw new ValueError(
        `isolation must be "thread" or "process": current value is ${String(o.isolation)}`,
      );
    }
    const poolOptions: PoolOptions & Pick<ProcessPoolExecutorOptions, "isolation"> = {
      processes: n,
      initializer: o.initializer,
      initargs: o.initargs,
      maxTasksPerChild: o.maxTasksPerChild,
    };
    if (o.isolation !== undefined) poolOptions.isolation = o.isolation;
    this.#pool = new Pool(poolOptions);
    this.#maxWorkers = n;
  }

  /**
   * Schedules `fn(...args)` in a worker and returns its {@link Future}. `fn` must be exported
   * from a module (a `ProcessError` says so at once otherwise); `args` must be sendable (else
   * the future fails with `SerializationError`). Throws `ValueError` after `shutdown()`.
   *
   * @example
   * ```ts ignore
   * const f = ex.submit(square, 7);
   * console.log(await f.result(5000)); // 49
   * ```
   */
  submit<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): Future<Awaited<R>> {
    this.#checkOpen();
    checkFn(fn, "ProcessPoolExecutor");
    return this.#start(fn as AnyFn, args, false) as Future<Awaited<R>>;
  }

  /** Submits one call mapping `fn` over `items` (a chunk of `map`). */
  protected override submitChunk<T, R>(fn: (item: T) => R, items: T[]): Future<Awaited<R>[]> {
    this.#checkOpen();
    checkFn(fn, "ProcessPoolExecutor");
    return this.#start(fn as AnyFn, items, true) as Future<Awaited<R>[]>;
  }

  /**
   * Resolves once every worker has started and run the initializer (not in Python: a start-up
   * barrier, as `Pool.whenReady`, e.g. before timing). Rejects with {@link BrokenProcessPool} if
   * the initializer failed; the executor is broken then, as after a failed call.
   *
   * Why not a warm-up call instead: the pool paces how many calls it hands a worker at once by
   * the measured duration of the calls so far, and a first call (of code not compiled yet)
   * measures far slower than the thousandth; after it, quick calls go out a few at a time until
   * the estimate catches up.
   *
   * @example
   * ```ts ignore
   * const ex = new ProcessPoolExecutor({ maxWorkers: 2 });
   * await ex.whenReady();
   * const t0 = performance.now(); // the workers' start-up is not timed
   * ```
   */
  async whenReady(): Promise<void> {
    this.#checkOpen();
    try {
      await this.#pool.whenReady();
    } catch (e) {
      if (e instanceof BrokenPoolError) this.#broken = e;
      throw e;
    }
  }

  /**
   * Stops accepting calls. With `cancelFutures`, the calls no worker has started yet are
   * cancelled; the others run to their end. With `wait` (default true), resolves once they have
   * and the workers have exited.
   *
   * @example
   * ```ts ignore
   * const fs = inputs.map((x) => ex.submit(slowTask, x));
   * await ex.shutdown({ cancelFutures: true }); // the calls running now finish, the rest cancel
   * ```
   */
  async shutdown(options?: ShutdownOptions): Promise<void> {
    const o = optionsOf(options, "ProcessPoolExecutor.shutdown", "shutdown({ wait: false })");
    this.#shutdown = true;
    if (o.cancelFutures) { for (const f of this.#calls.slice()) f.cancel(); }
    if (this.#closed === null) {
      // The pool runs what it holds to its end, then its workers exit.
      this.#pool.close();
      this.#closed = this.#pool.join();
    }
    if (o.wait ?? true) await this.#closed;
  }

  /**
   * A short description, like Python's repr.
   *
   * @example
   * ```ts ignore
   * console.log(String(ex)); // "<ProcessPoolExecutor maxWorkers=2 running=0 pending=0>"
   * ```
   */
  override toString(): string {
    const state = this.#broken ? " broken" : this.#shutdown ? " shutdown" : "";
    let running = 0;
    for (const f of this.#calls) if (!f.done() && f.running()) running++;
    return `<ProcessPoolExecutor maxWorkers=${this.#maxWorkers}${state} running=${running} ` +
      `pending=${this.#pending - running}>`;
  }

  #checkOpen(): void {
    if (this.#broken) throw this.#broken;
    if (this.#shutdown) throw new ValueError("cannot schedule new futures after shutdown");
  }

  /** A call's result came back: its future follows it (one function for every call). */
  readonly #settled = (target: object, ok: boolean, value: unknown): void => {
    this.#pending--;
    const future = target as Future<unknown>;
    if (ok) future.setResult(value);
    // A call withdrawn by `future.cancel()` (CancelledError): the future is cancelled already.
    else if (!future.cancelled()) future.setException(value);
  };

  /** Hands a call (or a chunk of a map) to the pool; its future follows the pool's result. */
  #start(fn: AnyFn, args: unknown[], chunk: boolean): Future<unknown> {
    const future = new Future<unknown>();
    const f = fn as (...a: unknown[]) => unknown;
    let r: FutureSource;
    // The pool settles each call exactly once, through `#settled` (a withdrawn call too, with
    // CancelledError; an unsendable one maybe inside `applyAsync`): `#pending` counts the others.
    this.#pending++;
    try {
      r = chunk
        ? this.#pool.mapAsync(f, args, {
          chunksize: args.length,
          callback: (v) => this.#settled(future, true, v),
          errorCallback: (e) => this.#settled(future, false, e),
        })
        : applyRelayed(this.#pool, f, args, this.#settled, future);
    } catch (e) {
      this.#pending--;
      // The pool refused the call: it is broken (its initializer failed).
      if (e instanceof BrokenPoolError) {
        this.#broken = e;
        future.setException(e);
        return future;
      }
      throw e; // the function is not exported, or the like: at `submit`
    }
    delegate(future, r);
    // Once the done ones are more than half, drop them: a sweep drops more calls than it keeps,
    // and each call is dropped once, so sweeping costs O(1) per call.
    const calls = this.#calls;
    if (calls.push(future) > 2 * this.#pending + 1024) {
      this.#calls = calls.filter((f) => !f.done());
    }
    return future;
  }
}

// ---------------------------------------------------------------------------------------------
// ThreadPoolExecutor

/** Options of `new ThreadPoolExecutor(...)`. */
export interface ThreadPoolExecutorOptions {
  /** How many calls run at once; default `min(32, cpuCount() + 4)`, as in Python. */
  maxWorkers?: number;
  /** Names of the threads: `${prefix}_0`, ...; default `ThreadPoolExecutor-<n>`. */
  threadNamePrefix?: string;
}

let threadPoolCounter = 0;

/**
 * Runs functions — any function, closures included — concurrently in the calling isolate, at
 * most `maxWorkers` at a time (Python's `concurrent.futures.ThreadPoolExecutor`). Each call runs
 * in a denomp {@link Thread}: calls interleave at `await`, as Python threads do under the GIL.
 *
 * @example
 * ```ts
 * import { asCompleted, ThreadPoolExecutor } from "jsr:@denomp/multiprocessing";
 * await using ex = new ThreadPoolExecutor({ maxWorkers: 4 });
 * const fetchLength = async (s: string) => (await Promise.resolve(s)).length;
 * const fs = ["a", "bb", "ccc"].map((s) => ex.submit(fetchLength, s));
 * let total = 0;
 * for await (const f of asCompleted(fs)) total += await f.result();
 * console.assert(total === 6);
 * ```
 */
export class ThreadPoolExecutor extends Executor {
  readonly #maxWorkers: number;
  readonly #prefix: string;
  readonly #queue = new WorkQueue();
  readonly #threads = new Set<Thread>();
  /** Threads started that have not taken their first call yet. */
  #starting = 0;
  #running = 0;
  #shutdown = false;

  /**
   * Throws `ValueError` when `maxWorkers` is not a positive integer.
   *
   * @example
   * ```ts
   * import { ThreadPoolExecutor } from "jsr:@denomp/multiprocessing";
   * await using ex = new ThreadPoolExecutor({ maxWorkers: 8, threadNamePrefix: "fetch" });
   * ```
   */
  constructor(options?: ThreadPoolExecutorOptions) {
    super();
    const o = optionsOf(options, "ThreadPoolExecutor", "new ThreadPoolExecutor({ maxWorkers: 4 })");
    const n = o.maxWorkers ?? Math.min(32, cpuCount() + 4);
    if (!Number.isInteger(n) || n < 1) {
      throw new ValueError(`max_workers must be greater than 0: current value is ${n}`);
    }
    this.#maxWorkers = n;
    this.#prefix = o.threadNamePrefix ?? `ThreadPoolExecutor-${threadPoolCounter++}`;
  }

  /**
   * Schedules `fn(...args)` and returns its {@link Future}; an async `fn` finishes when its
   * promise settles. Throws `ValueError` after `shutdown()`.
   *
   * @example
   * ```ts
   * import { ThreadPoolExecutor } from "jsr:@denomp/multiprocessing";
   * await using ex = new ThreadPoolExecutor();
   * let hits = 0;
   * const f = ex.submit((n: number) => (hits += n), 2); // a closure
   * console.assert((await f.result()) === 2 && hits === 2);
   * ```
   */
  submit<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): Future<Awaited<R>> {
    if (this.#shutdown) throw new ValueError("cannot schedule new futures after shutdown");
    checkFn(fn, "ThreadPoolExecutor");
    const future = new Future<unknown>();
    this.#queue.push({ future, fn: fn as AnyFn, args, chunk: false });
    // A thread for each call no thread is about to take, up to maxWorkers (Python's
    // _adjust_thread_count); the threads end when the queue is empty, so none idles.
    if (this.#threads.size < this.#maxWorkers && this.#queue.size > this.#starting) {
      this.#startThread();
    }
    return future as Future<Awaited<R>>;
  }

  /**
   * Stops accepting calls; `cancelFutures` cancels those not started; with `wait` (default
   * true), resolves once every started call has finished.
   *
   * @example
   * ```ts
   * import { ThreadPoolExecutor } from "jsr:@denomp/multiprocessing";
   * const ex = new ThreadPoolExecutor({ maxWorkers: 1 });
   * const a = ex.submit(() => new Promise((r) => setTimeout(r, 5)));
   * const b = ex.submit(() => 2);
   * while (!a.running()) await new Promise((r) => setTimeout(r, 1)); // a thread took `a`
   * await ex.shutdown({ cancelFutures: true });
   * console.assert(a.done() && !a.cancelled() && b.cancelled());
   * ```
   */
  async shutdown(options?: ShutdownOptions): Promise<void> {
    const o = optionsOf(options, "ThreadPoolExecutor.shutdown", "shutdown({ wait: false })");
    this.#shutdown = true;
    if (o.cancelFutures) this.#queue.cancelAll();
    if (o.wait ?? true) {
      while (this.#threads.size > 0) await Promise.all([...this.#threads].map((t) => t.join()));
    }
  }

  /**
   * A short description, like Python's repr.
   *
   * @example
   * ```ts
   * import { ThreadPoolExecutor } from "jsr:@denomp/multiprocessing";
   * const ex = new ThreadPoolExecutor({ maxWorkers: 2 });
   * console.assert(String(ex) === "<ThreadPoolExecutor maxWorkers=2 running=0 pending=0>");
   * ```
   */
  override toString(): string {
    const state = this.#shutdown ? " shutdown" : "";
    return `<ThreadPoolExecutor maxWorkers=${this.#maxWorkers}${state} running=${this.#running} ` +
      `pending=${this.#queue.size}>`;
  }

  #startThread(): void {
    this.#starting++;
    const t: Thread = new Thread({
      name: `${this.#prefix}_${this.#threads.size}`,
      daemon: false,
      target: async () => {
        this.#starting--;
        try {
          for (let item = this.#queue.shift(); item; item = this.#queue.shift()) {
            if (!item.future.setRunningOrNotifyCancel()) continue;
            this.#running++;
            let ok = true, value: unknown;
            try {
              value = (item.fn as (...a: unknown[]) => unknown)(...item.args);
              if (isThenable(value)) value = await value;
            } catch (e) {
              ok = false;
              value = e;
            }
            this.#running--;
            if (ok) item.future.setResult(value);
            else item.future.setException(value);
          }
        } finally {
          this.#threads.delete(t);
        }
      },
    });
    this.#threads.add(t);
    t.start();
  }
}
