/**
 * `Pool`: a pool of worker processes that runs tasks in parallel (Python's
 * `multiprocessing.Pool`), and never hangs: a worker that dies fails exactly the task it was
 * running, is replaced, and everything else completes.
 *
 * This module is the façade: the public API, its options and their checks. The work is done by
 * CPython's three roles, each in a module of its own, sharing a `PoolState` (`state.ts`):
 * - `workers.ts`: workers are `Process`es (daemonic, as in Python) whose target is `poolWorker`
 *   (`worker.ts`); start, watch, replace, and settle a dead worker's tasks exactly.
 * - `tasks.ts`: the pool-level queue, batching, work stealing, cancelling, and the writer of
 *   task messages into each worker's task ring.
 * - `results.ts`: the reader of the result rings, woken by the pool's doorbell.
 *
 * Why it works this way:
 * - **Shared-memory rings, not `postMessage`.** A message costs ~35 µs per hop through
 *   `postMessage` here; a `Ring` write is a few loads and stores. Each worker has a task ring
 *   (parent → worker) and a result ring (worker → parent), so no two processes ever contend for a
 *   ring's lock (the layout is in `wire.ts`).
 * - **Jobs and tasks.** A call becomes a job (`jobs.ts`; {@link AsyncResult} is the job of one
 *   call), cut into tasks: one call, or one chunk of a map.
 * - **Cancelling.** `AsyncResult.cancel()` withdraws a task that has not started: a task that has
 *   started runs on. A `signal` or `timeout` stops a running task by terminating its worker.
 *   (Deno 2.9 stops a worker busy in synchronous code only when that code returns: the task is
 *   rejected and the worker replaced at once, and the old thread exits, touching nothing shared,
 *   once the task's code returns.)
 * - **Moving buffers.** `transfer` (an option for arguments, a marker for results) detaches the
 *   sender's `ArrayBuffer`s once their bytes are in the ring: the rings copy, so "moved" means
 *   ownership passes (no aliasing, no second copy kept), as in `Queue.put(x, { transfer })`.
 *
 * @module
 */

import { optionsOf } from "../core/args.ts";
import { deadlineOf } from "../core/atomics.ts";
import { adopt, alloc } from "../core/heap.ts";
import { callerModule } from "../core/target.ts";
import { ValueError } from "../core/errors.ts";
import { Encoder } from "../core/reduction.ts";
import { cpuCount, type IsolationOptions } from "../process/process.ts";
import { checkIsolation } from "../process/os_spawn.ts";
import { sections } from "../core/observe.ts";
import { adoptingEncoder } from "./os_pool.ts";
import {
  type AsyncResult,
  newRelayed,
  newResult,
  type Relay,
  settle,
  setWork,
} from "./async_result.ts";
import { fnInfo, isIterable, openIterator, Task } from "./jobs.ts";
import { ResultHandler } from "./results.ts";
import { CLOSE, PoolState, RUN, TERMINATE } from "./state.ts";
import { TaskHandler } from "./tasks.ts";
import { APPLY, Doorbell, MAP, type Mode, STARMAP } from "./wire.ts";
import { WorkerHandler } from "./workers.ts";

/** Options of `new Pool(...)`. */
export interface PoolOptions extends IsolationOptions {
  /** Number of worker processes; default `cpuCount()`. */
  processes?: number;
  /** An exported function each worker runs once, before its first task. */
  initializer?: (...args: never[]) => unknown;
  /** Arguments of `initializer` (handles such as queues and locks may be nested anywhere). */
  initargs?: readonly unknown[];
  /** A worker is replaced after this many tasks (a chunk of a map counts as one); default: never. */
  maxTasksPerChild?: number | null;
  /**
   * Modules each worker imports before it reports ready, e.g. `[import.meta.url]` for the
   * module of your task functions: `whenReady()` then covers their loading too, and the first
   * `map` does not pay for it (~30 ms here). Relative specifiers resolve against the module that
   * creates the pool. A module that fails to load breaks the pool, as a failing initializer
   * does. Not in Python (its workers import the main module when they start).
   */
  preload?: readonly (string | URL)[];
  /** Shown in `toString()` and `snapshot()`; default `Pool-N`. */
  name?: string;
}

/** Options of a task: `apply`, `applyAsync`. */
export interface TaskOptions {
  /** Aborts the task: a queued one is dropped at once, a running one's worker is replaced. */
  signal?: AbortSignal;
  /**
   * Milliseconds the task may take, counted from when it starts running (for a map: from when
   * its first chunk does); past that it is aborted with `TimeoutError` and, if running, its
   * worker replaced. Time spent queued does not count: a task with a timeout is handed only to
   * an idle worker, so it starts at once (such tasks are not batched). Python's `Pool` has no
   * such option (there, `AsyncResult.get(timeout)` only stops waiting: here too).
   */
  timeout?: number;
  /** `ArrayBuffer`s in the arguments to move rather than copy: detached here once sent. */
  transfer?: ArrayBuffer[];
}

/** Options of `applyAsync`. */
export interface ApplyOptions<R> extends TaskOptions {
  /** Called with the result (Python's `callback`). */
  callback?: (value: R) => void;
  /** Called with the error when the task fails (Python's `error_callback`). */
  errorCallback?: (error: unknown) => void;
}

/** Options of `map`/`mapAsync`/`starmap`/`starmapAsync` (or pass the chunksize alone). */
export interface MapOptions<R> extends ApplyOptions<R> {
  /** Items per task; default `ceil(items / (4 * processes))`, as in Python. */
  chunksize?: number;
}

/** Options of `imap`/`imapUnordered` (or pass the chunksize alone). */
export interface IMapOptions {
  /** Items per task; default 1, as in Python. */
  chunksize?: number;
  /**
   * At most this many items are read from the input ahead of the consumer (in flight or waiting
   * to be taken); default 64 per worker. Python 3.14's `buffersize`, counted in items.
   */
  buffersize?: number;
  /** Aborts every task of the iteration; the iterator throws the signal's reason. */
  signal?: AbortSignal;
}

/** Default read-ahead of `imap` / `imapUnordered`, in items, per worker. */
const READ_AHEAD_PER_WORKER = 64;
type MapArg = number | MapOptions<unknown[]> | undefined;

let poolCount = 0;
/** The pools of this isolate, for snapshot(). */
const livePools = new Set<WeakRef<Pool>>();
let describePool!: (p: Pool) => Record<string, unknown> | null;

/**
 * `p.applyAsync(fn, args)` whose result tells `relay(target, ok, value)` when it settles (see
 * `newRelayed`): the executor's per-call path, with no options object nor closures per call.
 */
export let applyRelayed: (
  p: Pool,
  fn: (...args: unknown[]) => unknown,
  args: unknown[],
  relay: Relay,
  target: object,
) => AsyncResult<unknown>;

const NO_OPTIONS: ApplyOptions<unknown> = Object.freeze({});
sections.set("pools", () => {
  const out: Record<string, unknown>[] = [];
  for (const ref of livePools) {
    const p = ref.deref(), d = p && describePool(p);
    if (d) out.push(d);
    else livePools.delete(ref); // collected, or terminated and joined
  }
  return out;
});

/**
 * A pool of worker processes (Python's `multiprocessing.Pool`). Task functions must be exported
 * from a module (workers import it). `await using` terminates the pool at the end of the scope,
 * as Python's `with Pool() as p:` does.
 *
 * @example
 * ```ts
 * // main.ts
 * import { Pool } from "jsr:@denomp/multiprocessing";
 * export function square(x: number) {
 *   return x * x;
 * }
 * if (import.meta.main) {
 *   await using pool = new Pool({ processes: 4 });
 *   console.log(await pool.map(square, [1, 2, 3])); // [1, 4, 9]
 *   for await (const y of pool.imap(square, [4, 5])) console.log(y); // 16, 25
 * }
 * ```
 */
export class Pool {
  readonly #pool: PoolState;
  readonly #workers: WorkerHandler;
  readonly #tasks: TaskHandler;
  readonly #results: ResultHandler;
  /** For snapshot(): its name (counters and latencies are in its state's `stats`). */
  readonly #name: string;

  /**
   * Starts the worker processes. Throws `ValueError` when `processes` is less than 1 or
   * `maxTasksPerChild` is not a positive integer.
   */
  constructor(options?: PoolOptions) {
    options = optionsOf(options, "new Pool", "new Pool({ processes: 4 })");
    const processes = options.processes ?? cpuCount();
    if (!Number.isInteger(processes) || processes < 1) {
      throw new ValueError(`Number of processes must be at least 1: current value is ${processes}`);
    }
    const mt = options.maxTasksPerChild ?? null;
    if (mt !== null && (!Number.isInteger(mt) || mt <= 0)) {
      throw new ValueError(
        `maxTasksPerChild must be a positive int or null: current value is ${mt}`,
      );
    }
    if (options.initializer !== undefined && typeof options.initializer !== "function") {
      throw new TypeError("initializer must be a callable");
    }
    let isolated: IsolationOptions | undefined, enc = new Encoder();
    if (checkIsolation(options, "Pool")) {
      const { isolation, maxMemoryMb, denoFlags } = options;
      isolated = { isolation, maxMemoryMb, denoFlags };
      enc = adoptingEncoder();
    }
    this.#name = options.name ?? `Pool-${++poolCount}`;
    const initializer = options.initializer ? fnInfo(options.initializer, "initializer").ref : null;
    const initargs = [...(options.initargs ?? [])];
    const preload = options.preload ?? [];
    const base = preload.length ? callerModule() : undefined;
    const pool = this.#pool = new PoolState(
      processes,
      mt ?? 0,
      initializer,
      initargs,
      preload.map((m) => new URL(m, base).href),
      isolated,
    );
    const bellBlock = alloc(Doorbell.BYTES);
    // The doorbell lives as long as this object (workers never outlive a terminated pool).
    adopt(this, bellBlock);
    this.#workers = pool.workers = new WorkerHandler(pool, bellBlock);
    this.#tasks = pool.tasks = new TaskHandler(pool, enc);
    this.#results = pool.results = new ResultHandler(pool, bellBlock);
    livePools.add(new WeakRef(this));
    try {
      for (let i = 0; i < processes; i++) this.#workers.spawn();
    } catch (e) {
      this.terminate();
      throw e;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Public API

  /**
   * Runs `fn(...args)` in a worker and resolves with its result (Python's `apply`).
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * export function square(x: number): number {
   *   return x * x;
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   const n: number = await pool.apply(square, [3]);
   *   console.assert(n === 9);
   * }
   * ```
   */
  apply<A extends unknown[], R>(
    fn: (...args: A) => R,
    args: A = [] as unknown as A,
    options?: TaskOptions,
  ): Promise<Awaited<R>> {
    try {
      options = optionsOf(options, "Pool.apply", "apply(fn, args, { timeout: 5000 })");
      return this.applyAsync(fn, args, options).get();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Submits `fn(...args)` and returns its {@link AsyncResult} at once (Python's `apply_async`).
   * `callback`/`errorCallback` are called with the outcome; `signal` and `timeout` abort it.
   * Throws `ValueError` when the pool is not running.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * export function square(x: number): number {
   *   return x * x;
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   const r = pool.applyAsync(square, [7], {
   *     callback: (v) => console.log("got", v),
   *     timeout: 5000,
   *   });
   *   console.log(await r); // 49
   * }
   * ```
   */
  applyAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    args: A = [] as unknown as A,
    options?: ApplyOptions<Awaited<R>>,
  ): AsyncResult<Awaited<R>> {
    options = optionsOf(options, "Pool.applyAsync", "applyAsync(fn, args, { timeout: 5000 })");
    return this.#apply(fn, args, options, newResult(options.callback, options.errorCallback));
  }

  /** `applyAsync` once its options are read, settling `r`. */
  #apply<A extends unknown[], R>(
    fn: (...args: A) => R,
    args: A,
    options: ApplyOptions<Awaited<R>>,
    r: AsyncResult<Awaited<R>>,
  ): AsyncResult<Awaited<R>> {
    this.#pool.checkRunning();
    const info = fnInfo(fn);
    if (!Array.isArray(args)) throw new TypeError("args must be an array");
    this.#tasks.define(info);
    const t = new Task(r as AsyncResult<unknown>, info, APPLY, args, 0, args.length, 0);
    setWork(r, this.#tasks, t);
    if (options.transfer) this.#tasks.preencode([t], options.transfer);
    if (options.signal || options.timeout !== undefined) {
      if (!this.#tasks.arm(r, [t], options)) return r;
    }
    this.#tasks.submit(t);
    return r;
  }

  /**
   * Applies `fn` to every item, in chunks, and resolves with the results in order (Python's
   * `map`). Rejects with the first task error, or with the error the input iterable threw.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * export function square(x: number): number {
   *   return x * x;
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   console.log(await pool.map(square, [1, 2, 3])); // [1, 4, 9]
   * }
   * ```
   */
  async map<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | MapOptions<Awaited<R>[]>,
  ): Promise<Awaited<R>[]> {
    return await this.mapAsync(fn, iterable, mapOptions(chunksize, "Pool.map"));
  }

  /**
   * `map` returning an {@link AsyncResult} at once (Python's `map_async`). An error thrown by a
   * synchronous input iterable is thrown here, as in Python.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * export function square(x: number): number {
   *   return x * x;
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   const r = pool.mapAsync(square, [1, 2, 3], { callback: (xs) => console.log(xs) });
   *   await r.wait();
   * }
   * ```
   */
  mapAsync<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | MapOptions<Awaited<R>[]>,
  ): AsyncResult<Awaited<R>[]> {
    return this.#mapJob<Awaited<R>[]>(fn, MAP, iterable, chunksize as MapArg, "Pool.mapAsync");
  }

  /**
   * Like `map`, with each item spread as the arguments (Python's `starmap`).
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * export function add(a: number, b: number): number {
   *   return a + b;
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   console.log(await pool.starmap(add, [[1, 2], [3, 4]])); // [3, 7]
   * }
   * ```
   */
  async starmap<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A> | AsyncIterable<A>,
    chunksize?: number | MapOptions<Awaited<R>[]>,
  ): Promise<Awaited<R>[]> {
    return await this.starmapAsync(fn, iterable, mapOptions(chunksize, "Pool.starmap"));
  }

  /**
   * `starmap` returning an {@link AsyncResult} at once (Python's `starmap_async`).
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * export function add(a: number, b: number): number {
   *   return a + b;
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   const r = pool.starmapAsync(add, [[1, 2], [3, 4]]);
   *   console.log(await r); // [3, 7]
   * }
   * ```
   */
  starmapAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A> | AsyncIterable<A>,
    chunksize?: number | MapOptions<Awaited<R>[]>,
  ): AsyncResult<Awaited<R>[]> {
    const call = "Pool.starmapAsync";
    return this.#mapJob<Awaited<R>[]>(fn, STARMAP, iterable, chunksize as MapArg, call);
  }

  /**
   * Applies `fn` to each item lazily and yields the results in order (Python's `imap`). Reads
   * only a bounded number of items ahead (`buffersize`), so the input may be infinite; leaving
   * the loop early drops the tasks not yet started.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * export function square(x: number): number {
   *   return x * x;
   * }
   * function* naturals() {
   *   for (let i = 0;; i++) yield i;
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   for await (const y of pool.imap(square, naturals())) if (y > 100) break;
   * }
   * ```
   */
  imap<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | IMapOptions,
  ): AsyncGenerator<Awaited<R>, void, undefined> {
    return this.#stream<Awaited<R>>(fn, iterable, chunksize, true);
  }

  /**
   * Like `imap`, yielding results as they complete (Python's `imap_unordered`).
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * export function square(x: number): number {
   *   return x * x;
   * }
   * if (import.meta.main) {
   *   await using pool = new Pool({ processes: 2 });
   *   for await (const y of pool.imapUnordered(square, [1, 2, 3])) console.log(y);
   * }
   * ```
   */
  imapUnordered<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | IMapOptions,
  ): AsyncGenerator<Awaited<R>, void, undefined> {
    return this.#stream<Awaited<R>>(fn, iterable, chunksize, false);
  }

  /**
   * Resolves once every worker has started, imported the `preload` modules and run its
   * initializer (not in Python: a start-up barrier, e.g. before timing). Rejects with
   * `BrokenPoolError` if an initializer or a preload import failed. Without `preload`, the first
   * task of a function still pays for importing its module.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * const pool = new Pool({ processes: 2 });
   * await pool.whenReady();
   * pool.close();
   * await pool.join();
   * ```
   */
  whenReady(): Promise<void> {
    if (this.#pool.broken) return Promise.reject(this.#pool.broken);
    if (this.#pool.allReady()) return Promise.resolve();
    if (this.#pool.phase === TERMINATE) return Promise.reject(new ValueError("Pool not running"));
    return new Promise((resolve, reject) => {
      this.#pool.readyWaiters.push({ resolve, reject });
      this.#results.kick();
    });
  }

  /**
   * Accepts no more tasks; workers exit once every submitted task is done (Python's `close`).
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * const pool = new Pool({ processes: 1 });
   * pool.close();
   * await pool.join();
   * console.assert(String(pool) === "<Pool state=CLOSE pool_size=1>");
   * ```
   */
  close(): void {
    if (this.#pool.phase !== RUN) return;
    this.#pool.phase = CLOSE;
    this.#tasks.dispatch();
    this.#results.kick();
  }

  /**
   * Waits until every worker has exited; call `close()` or `terminate()` first (else
   * `ValueError`, as in Python). After `close()`, every submitted task is done by then, and so
   * is every `imap` iteration that was in progress.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * const pool = new Pool({ processes: 1 });
   * pool.close();
   * await pool.join(); // every worker has exited
   * ```
   */
  async join(): Promise<void> {
    if (this.#pool.phase === RUN) throw new ValueError("Pool is still running");
    const workers = this.#workers;
    while (workers.live > 0 || this.#results.reading || workers.deadPending.length > 0) {
      await new Promise<void>((r) => this.#pool.changeWaiters.push(r));
    }
    // Posts into the rings of workers that are gone give up (see WorkerHandle.sendOptions);
    // blocks of workers that died a moment ago are freed with this object.
    await workers.release((block) => adopt(this, block));
  }

  /**
   * Stops every worker at once (Python's `terminate`). Tasks not done reject with
   * `BrokenPoolError`; returns promptly however many are queued.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * const pool = new Pool({ processes: 1 });
   * pool.terminate();
   * await pool.join();
   * console.assert(String(pool) === "<Pool state=TERMINATE pool_size=1>");
   * ```
   */
  terminate(): void {
    this.#pool.terminate();
  }

  /**
   * `await using pool = new Pool()`: terminates the pool and waits for its workers, as
   * Python's `with Pool() as p:` does.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * export function square(x: number): number {
   *   return x * x;
   * }
   * if (import.meta.main) {
   *   {
   *     await using pool = new Pool();
   *     await pool.map(square, [1, 2]);
   *   } // terminated here
   * }
   * ```
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.terminate();
    await this.join();
  }

  /**
   * A short description, like Python's repr.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * await using pool = new Pool({ processes: 2 });
   * console.log(String(pool)); // "<Pool state=RUN pool_size=2>"
   * ```
   */
  toString(): string {
    const state = this.#pool.broken ? "BROKEN" : ["RUN", "CLOSE", "TERMINATE"][this.#pool.phase];
    return `<Pool state=${state} pool_size=${this.#pool.processes}>`;
  }

  /**
   * Forgets the task wait and run times measured so far (`snapshot().pools`: their p50/p99);
   * the counters keep counting.
   *
   * @example
   * ```ts
   * import { Pool } from "jsr:@denomp/multiprocessing";
   * await using pool = new Pool({ processes: 1 });
   * pool.resetStats(); // latencies from now on
   * ```
   */
  resetStats(): void {
    this.#pool.stats.reset();
  }

  static {
    describePool = (p) => p.#pool.describe(p.#name);
    applyRelayed = (p, fn, args, relay, target) =>
      p.#apply(fn, args, NO_OPTIONS, newRelayed(relay, target));
  }

  /** A `mapAsync` or `starmapAsync` (`call` names it in errors). */
  #mapJob<R>(
    fn: unknown,
    mode: Mode,
    iterable: Iterable<unknown> | AsyncIterable<unknown>,
    chunksize: MapArg,
    call: string,
  ): AsyncResult<R> {
    this.#pool.checkRunning();
    const o = mapOptions(chunksize, call), info = fnInfo(fn);
    if (o.chunksize !== undefined) checkChunksize(o.chunksize);
    if (o.timeout !== undefined) deadlineOf(o.timeout);
    const r = newResult<unknown[]>(o.callback, o.errorCallback);
    if (Array.isArray(iterable) || isIterable(iterable)) {
      // As in Python's map_async: the input is read now, and an error it throws is thrown here.
      const items = Array.isArray(iterable) ? iterable : Array.from(iterable as Iterable<unknown>);
      this.#tasks.startMap(r, info, mode, items, o);
    } else {
      // Until the input is read, close() must not stop the workers (as for an imap).
      this.#pool.streams++;
      collect(iterable as AsyncIterable<unknown>).then(
        (items) => this.#tasks.startMap(r, info, mode, items, o),
        (e) => settle(r, false, e),
      ).finally(() => {
        this.#pool.streams--;
        this.#tasks.dispatch();
      });
    }
    return r as AsyncResult<unknown> as AsyncResult<R>;
  }

  /** Checks the arguments of imap now (as Python does), then returns the lazy iteration. */
  #stream<R>(
    fn: unknown,
    iterable: Iterable<unknown> | AsyncIterable<unknown>,
    chunksize: number | IMapOptions | undefined,
    ordered: boolean,
  ): AsyncGenerator<R, void, undefined> {
    this.#pool.checkRunning();
    const info = fnInfo(fn);
    const o = mapOptions<IMapOptions>(chunksize, ordered ? "Pool.imap" : "Pool.imapUnordered");
    const cs = o.chunksize ?? 1;
    checkChunksize(cs);
    const b = o.buffersize ?? READ_AHEAD_PER_WORKER * this.#pool.processes;
    if (!Number.isInteger(b) || b < 1) {
      throw new ValueError(`buffersize must be a positive int: current value is ${b}`);
    }
    const src = openIterator(iterable);
    const results = this.#tasks.iterate(info, src, cs, Math.max(cs, b), ordered, o.signal);
    return results as AsyncGenerator<R, void, undefined>;
  }
}

/** The options of a map-like call, given as an options object or as the chunksize alone. */
function mapOptions<O extends { chunksize?: number }>(
  arg: number | O | undefined,
  call: string,
): O {
  if (typeof arg === "number") return { chunksize: arg } as O;
  const name = call.slice(call.indexOf(".") + 1);
  return optionsOf(arg, call, `${name}(fn, items, { chunksize: 100 })`);
}

function checkChunksize(cs: number): void {
  if (!Number.isInteger(cs) || cs < 1) {
    throw new ValueError(`Chunksize must be 1+, not ${cs}`);
  }
}

async function collect(it: AsyncIterable<unknown>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const x of it) out.push(x);
  return out;
}
