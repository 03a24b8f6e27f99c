/**
 * `Pool`: a pool of worker processes that runs tasks in parallel (Python's
 * `multiprocessing.Pool`), and never hangs: a worker that dies fails exactly the task it was
 * running, is replaced, and everything else completes.
 *
 * How it works, and why:
 * - **Workers are `Process`es** (daemonic, as in Python) whose target is {@link poolWorker}
 *   below: one mechanism for start-up, crash detection and replacement, shared with every other
 *   child. A death anywhere bumps the heap's death counter; the pool waits on it (without keeping
 *   the program alive) and notices its own workers' deaths at once.
 * - **Shared-memory rings, not `postMessage`.** A message costs ~35 µs per hop through
 *   `postMessage` here; a {@link Ring} write is a few loads and stores. Each worker has a task
 *   ring (parent → worker) and a result ring (worker → parent), so no two processes ever contend
 *   for a ring's lock. After each result a worker bumps the pool's {@link Doorbell}, a shared
 *   counter the parent sleeps on when every ring is empty (it pays `Atomics.notify` only when
 *   the parent says it sleeps). A result too large for one frame may begin only later (no room
 *   yet, the worker's background writer publishes it): the bell is rung when its first frame is
 *   published (`onBegun`), never before, so the parent is not woken for a result not yet there.
 * - **The pool knows what each worker holds.** Tasks are numbered per worker in the order they
 *   are written into its ring, and the worker stores the number of the task it starts in a shared
 *   word (`STARTED`) before running it. Results go out one per task, before the next task starts.
 *   So when a worker dies, once its result ring is drained: the tasks numbered up to `STARTED`
 *   without a result were running (they fail with `BrokenPoolError`), the later ones never started
 *   (they are queued again for another worker). Nothing is lost, nothing runs twice, nothing
 *   waits forever.
 * - **Batching.** Submissions go to a pool-level queue; a dispatch pass (once per microtask tick,
 *   or every 64 submissions) writes many tasks per ring message. How many tasks a worker may hold
 *   (its window) follows the measured task duration: about 2 ms of work ahead, so fast tasks are
 *   batched by hundreds while slow ones stay in the pool's queue for whichever worker frees up
 *   first. Each function is resolved to module + export once (cached by identity) and defined
 *   once per worker; a task message then names it by number.
 * - **Work stealing.** When a worker runs dry while another is inside a task with more queued
 *   behind it, the pool takes back every task of that worker that has not started (one
 *   compare-exchange of its `STARTED` word: each task either started or was withdrawn, never
 *   both) and hands them out again; the busy worker gets no more until its task is done. So a
 *   slow or endless task delays only itself. A task with a timeout goes only to an idle worker,
 *   so its clock starts when it starts running.
 * - **Numbers travel raw.** Arguments and results that are all numbers (a numeric `map`, a call
 *   like `square(i)`) go as Float64 columns read through typed-array views, not through the
 *   general codec; anything else uses the codec (structured-clone fidelity, handles).
 * - **Waiting costs nothing.** Workers and the parent spin briefly, then sleep in
 *   `Atomics.waitAsync` (so a worker's own timers and channel pumps keep running). An idle pool
 *   has no reader running and burns no CPU; only pending tasks keep the program alive.
 * - **Cancelling.** A queued task is dropped at once. A task already in a worker's ring but not
 *   started is written into the worker's cancel slots, which it checks before each task (a
 *   Dekker-style pair of stores and loads decides who saw whom). `AsyncResult.cancel()` stops
 *   there: a task that has started runs on. A `signal` or `timeout` stops a running task by
 *   terminating its worker. (Deno 2.9 stops a worker busy in synchronous code only when that code
 *   returns: the task is rejected and the worker replaced at once, and the old thread exits,
 *   touching nothing shared, once the task's code returns.)
 * - **Moving buffers.** `transfer` (an option for arguments, a marker for results) detaches the
 *   sender's `ArrayBuffer`s once their bytes are in the ring: the rings copy, so "moved" means
 *   ownership passes (no aliasing, no second copy kept), as in `Queue.put(x, { transfer })`.
 *
 * @module
 */

import { optionsOf } from "../core/args.ts";
import { deadlineOf, keepAlive, LIVENESS_SLICE_MS } from "../core/atomics.ts";
import { adopt, alloc, DEATH_EPOCH_INDEX, heap, release } from "../core/heap.ts";
import { Ring, type SendOptions, type SendStatus, TIMEOUT } from "../core/ring.ts";
import { callerModule, resolveTarget, type TargetRef } from "../core/target.ts";
import {
  BrokenPoolError,
  CancelledError,
  RemoteError,
  SerializationError,
  TimeoutError,
  ValueError,
} from "../core/errors.ts";
import { cpuCount, type IsolationOptions, Process } from "../process/process.ts";
import { Decoder, Encoder, withHandleModules } from "../core/reduction.ts";
import { exitNote, isolatedEncoder } from "./os_pool.ts";
import { checkIsolation } from "../process/os_spawn.ts";
import { PoolStats } from "./stats.ts";
import { sections } from "../core/observe.ts";
import {
  __testHooks,
  APPLY,
  chunkPath,
  CODEC,
  COLUMN,
  type Column,
  CTL_BYTES,
  DEFINE_HEADER,
  describe,
  Doorbell,
  MAP,
  type Mode,
  OP_DEFINE,
  OP_IMPORT,
  OP_PAD,
  OP_STOP,
  OP_TASK,
  putU32,
  R_COLUMN,
  R_ERR,
  R_INIT_FAILED,
  R_OK,
  R_READY,
  RESULT_HEADER,
  RESULT_RING_BYTES,
  skip,
  STARMAP,
  STARTED,
  startedOf,
  TASK_HEADER,
  TASK_RING_BYTES,
  u32,
  WORKER_BLOCK,
} from "./wire.ts";
import { detachAll, poolWorker, type WorkerConfig } from "./worker.ts";

// ---------------------------------------------------------------------------------------------
// Wire format and shared layout (both sides)

/** Loads of the doorbell before the parent sleeps (~1-5 µs: a busy worker's next result). */
const BELL_SPIN = 1000;
/**
 * The parent's doorbell sleep ends after this long even without a ring (ms). A backstop only:
 * every result is rung for, and `__testHooks.lateWakeups` counts the times it was needed.
 */
const BELL_SLICE_MS = LIVENESS_SLICE_MS;

// ---------------------------------------------------------------------------------------------
// Tuning (parent side)

/** The module of `poolWorker`, which each worker imports. */
const WORKER_MODULE = new URL("./worker.ts", import.meta.url).href;
/** A worker is given about this much work ahead (µs), from the measured task duration. */
const LOOKAHEAD_US = 2000;
/**
 * A worker inside one task for this long (µs), or 4 mean task durations if longer, with tasks
 * queued behind it, has those taken back by an idle worker (see Pool.#steal).
 */
const STUCK_US = 2000;
/** The same after close(), when a new worker must start to take them (see Pool.#steal). */
const REPLACE_STUCK_US = 250_000;
/**
 * Bounds of the per-worker window (tasks written to its ring and not yet returned). Tasks of
 * LOOKAHEAD_US or more go one at a time, as in Python's Pool: a second one queued behind a
 * slow task could wait there while another worker is idle.
 */
const MIN_WINDOW = 1, MAX_WINDOW = 1024;
/** The window before any task duration is known: one, so a first slow task stays balanced. */
const INITIAL_WINDOW = 1;
/** A task message is posted once it is this large (a ring frame holds up to half the ring). */
const FLUSH_BYTES = 16 << 10;
/** While `submit` calls pile up synchronously, dispatch every this many (workers start early). */
const EAGER_DISPATCH = 64;
/** Workers that die before they are ready this many times in a row break the pool. */
const MAX_START_FAILURES = 3;
/** A dead worker's block is reused only after this long (a terminated isolate stops within µs). */
const GRAVE_MS = 50;
/** Default read-ahead of `imap` / `imapUnordered`, in items, per worker. */
const READ_AHEAD_PER_WORKER = 64;

// ---------------------------------------------------------------------------------------------
// Function references: resolved once per function, defined once per worker.

interface FnInfo {
  /** Number of the function, the same in every pool and worker of this process. */
  readonly id: number;
  readonly ref: TargetRef;
  /** `[module, name]`, encoded: the body of an OP_DEFINE. */
  readonly define: Uint8Array;
}

const fnInfos = new WeakMap<object, FnInfo>();
let nextFnId = 1;

/** Finds the module and export of `fn` (once per function; `callerModule` reads the stack). */
function fnInfo(fn: unknown, what = "fn"): FnInfo {
  if (typeof fn !== "function") {
    throw new TypeError(`${what} must be an exported function: got ${typeof fn}`);
  }
  let info = fnInfos.get(fn);
  if (!info) {
    const ref = resolveTarget(fn as (...a: never[]) => unknown, undefined, callerModule());
    info = { id: nextFnId++, ref, define: new Encoder().encode([ref.module, ref.name]).slice() };
    fnInfos.set(fn, info);
  }
  return info;
}

// ---------------------------------------------------------------------------------------------
// AsyncResult

const PENDING = 0, FULFILLED = 1, REJECTED = 2;

// Pool-internal access to AsyncResult's private state (set in its static block).
let settle: <T>(r: AsyncResult<T>, ok: boolean, value: unknown) => void;
let newResult: <T>(
  callback?: (value: T) => void,
  errorCallback?: (error: unknown) => void,
) => AsyncResult<T>;
let setCleanup: <T>(r: AsyncResult<T>, cleanup: () => void) => void;
/** Ties a result to its tasks, for `cancel()` and `running()`. */
let setWork: <T>(r: AsyncResult<T>, pool: Pool, work: Task | Task[]) => void;
/** `Pool.#withdraw` (set in Pool's static block). */
let withdraw: (pool: Pool, t: Task) => boolean;

/**
 * The result of `applyAsync`, `mapAsync` or `starmapAsync` (Python's `AsyncResult`). It is
 * thenable, so `await r` works; `get(timeout)` throws `TimeoutError` when the result is not
 * there in time (the task goes on).
 *
 * @example
 * ```ts ignore
 * import { Pool } from "jsr:@denomp/multiprocessing";
 * import { square } from "./tasks.ts";
 * await using pool = new Pool({ processes: 2 });
 * const r = pool.applyAsync(square, [7]);
 * console.log(await r.get(1000), r.ready(), r.successful()); // 49 true true
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
  /** Its pool and task(s) while it is pending (for `cancel()` and `running()`). */
  #pool: Pool | null = null;
  #work: Task | Task[] | null = null;
  #cancelled = false;

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
    setCleanup = <T>(r: AsyncResult<T>, cleanup: () => void) => {
      r.#cleanup = cleanup;
    };
    setWork = <T>(r: AsyncResult<T>, pool: Pool, work: Task | Task[]) => {
      if (r.#state !== PENDING) return;
      r.#pool = pool;
      r.#work = work;
    };
  }

  #settle(ok: boolean, value: unknown): void {
    if (this.#state !== PENDING) return;
    this.#state = ok ? FULFILLED : REJECTED;
    this.#value = value;
    this.#pool = this.#work = null;
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
   * ```ts ignore
   * const r = pool.applyAsync(slowTask, []);
   * await r.get(10).catch((e) => console.log(e.name)); // "TimeoutError"
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
   * ```ts ignore
   * const r = pool.applyAsync(square, [3]);
   * await r.wait();
   * console.log(r.ready()); // true
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
   * ```ts ignore
   * const r = pool.applyAsync(square, [3]);
   * console.log(r.ready()); // false, most likely
   * ```
   */
  ready(): boolean {
    return this.#state !== PENDING;
  }

  /**
   * Whether the task succeeded; throws `ValueError` if it has not finished (as Python does).
   *
   * @example
   * ```ts ignore
   * const r = pool.applyAsync(square, [3]);
   * await r.wait();
   * console.log(r.successful()); // true
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
   * ```ts ignore
   * const busy = pool.applyAsync(slowTask, []); // a pool of 1 process
   * const r = pool.applyAsync(square, [3]);
   * console.log(r.cancel(), busy.cancel()); // true false (once slowTask has started)
   * await r.get().catch((e) => console.log(e.name)); // "CancelledError"
   * ```
   */
  cancel(): boolean {
    if (this.#cancelled) return true;
    const work = this.#work;
    if (this.#state !== PENDING || work === null || Array.isArray(work)) return false;
    if (!withdraw(this.#pool!, work)) return false;
    this.#cancelled = true;
    this.#settle(false, new CancelledError("the task was cancelled before it started"));
    return true;
  }

  /**
   * Whether a worker has begun the task (or a chunk of the map) and the result is not ready yet.
   * False while the task waits in the pool's or a worker's queue, and once the result is ready.
   *
   * @example
   * ```ts ignore
   * const r = pool.applyAsync(slowTask, []);
   * console.log(r.running()); // false: not started yet
   * await new Promise((r) => setTimeout(r, 100));
   * console.log(r.running()); // true: a worker runs it
   * ```
   */
  running(): boolean {
    const work = this.#work;
    if (this.#state !== PENDING || work === null) return false;
    return Array.isArray(work) ? work.some(hasStarted) : hasStarted(work);
  }

  /**
   * Makes the result awaitable: `await r` gives the value or throws the task's error.
   *
   * @example
   * ```ts ignore
   * console.log(await pool.applyAsync(square, [4])); // 16
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
   * ```ts ignore
   * console.log(String(pool.applyAsync(square, [4]))); // "<AsyncResult pending>"
   * ```
   */
  toString(): string {
    const state = this.#cancelled ? "cancelled" : ["pending", "fulfilled", "rejected"][this.#state];
    return `<AsyncResult ${state}>`;
  }
}

function noop(): void {}

/**
 * Whether a worker has begun `t` and it is not done. A task in a worker's ring started once the
 * worker's STARTED word reached its number (its magnitude: a recall mark `-last` leaves in the
 * worker only tasks that had begun, and those written after the recall).
 */
function hasStarted(t: Task): boolean {
  return t.state === ASSIGNED && startedOf(t.worker!.ctl) >= t.seq;
}

// ---------------------------------------------------------------------------------------------
// Tasks and jobs (parent side)

const QUEUED = 0, ASSIGNED = 1, DONE = 2;

/** One unit of work sent to a worker: one call, or one chunk of a map. */
class Task {
  state = QUEUED;
  /** The worker holding it while ASSIGNED. */
  worker: WorkerHandle | null = null;
  /** Its number in that worker's sequence. */
  seq = 0;
  /** Cancelled before it started: its worker skips it and sends nothing back. */
  skipped = false;
  /** When it was submitted, for one task in a few (see PoolStats.stamp); else 0. */
  at = 0;
  constructor(
    readonly job: Job,
    readonly fn: FnInfo,
    readonly mode: Mode,
    /** The arguments (APPLY), or an array holding the chunk's items from `from` on. */
    readonly payload: unknown[],
    readonly from: number,
    /** Number of items of the chunk. */
    readonly count: number,
    /** Index of the chunk's first item in the whole input. */
    readonly start: number,
    /** Encoded up front (when buffers are moved), else encoded into the message at dispatch. */
    public bytes: Uint8Array | null = null,
  ) {}

  /** For `bytes`: the modules of the handle kinds in them. */
  modules: string[] | null = null;
  /**
   * Starts its job's timeout (idempotent), on the task's first hand-out. Set only for a job with
   * a timeout: such a task is handed only to an idle worker, so it starts running at once.
   */
  clock: (() => void) | null = null;

  /** What the codec encodes: the arguments, or the chunk's items. */
  items(): unknown[] {
    const p = this.payload;
    return this.from === 0 && this.count === p.length
      ? p
      : p.slice(this.from, this.from + this.count);
  }
}

/** `map`/`starmap`: chunks fill one array. */
class MapJob {
  readonly tasks: Task[] = [];
  /**
   * The results, filled in as chunks arrive (while others are still computing). Made with
   * `fill(0)`: `new Array(100_000)` filled out of order is a slow dictionary-mode array in V8,
   * and this one holds unboxed doubles as long as the results are numbers.
   */
  readonly out: unknown[];
  left = 0;
  constructor(readonly result: AsyncResult<unknown[]>, n: number) {
    // Made now, while the workers compute, not when the first result arrives.
    this.out = new Array(n).fill(0);
  }

  put(start: number, values: ArrayLike<unknown>): void {
    const out = this.out;
    for (let i = 0; i < values.length; i++) out[start + i] = values[i];
  }
}

/** `imap`/`imapUnordered`: chunk results wait here until the iterator takes them. */
class StreamJob {
  constructor(readonly ordered: boolean) {}
  /** Unsettled tasks by their first item's index. */
  readonly live = new Map<number, Task>();
  /** Settled chunks by first index: `[ok, values or error]`. */
  readonly ready = new Map<number, [boolean, unknown]>();
  /** First indexes in completion order (unordered iteration). */
  readonly order: number[] = [];
  wake: (() => void) | null = null;
  aborted = false;
  reason: unknown = undefined;

  settle(t: Task, ok: boolean, v: unknown): void {
    if (v instanceof Float64Array) v = Array.from(v); // a view of the message: copy it out
    this.live.delete(t.start);
    this.ready.set(t.start, [ok, v]);
    if (!this.ordered) this.order.push(t.start);
    this.poke();
  }

  poke(): void {
    const w = this.wake;
    if (w) {
      this.wake = null;
      w();
    }
  }
}

type Job = AsyncResult<unknown> | MapJob | StreamJob;

/** A pool worker as the parent sees it: its process, its rings and the tasks it holds. */
class WorkerHandle {
  readonly ctl: Int32Array;
  readonly taskRing: Ring;
  /** Tasks written to its ring, in order, from `head` on (settled ones may linger). */
  fifo: Task[] = [];
  head = 0;
  /** Tasks written to it in all (the last one's number). */
  assigned = 0;
  /**
   * Tasks in `fifo` it will skip (cancelled before they started). They leave `fifo` only when a
   * later result passes them, so they must not count against its window: a worker whose ring
   * held only skipped tasks would otherwise look full forever.
   */
  skipped = 0;
  /** Function numbers already defined in it. */
  readonly known: boolean[] = [];
  /** Handle modules it has been told to import. */
  readonly modules = new Set<string>();
  ready = false;
  stopped = false;
  dead = false;
  /**
   * Tasks were taken back from it while it ran one: it gets no more until a result of it arrives
   * (a slow or endless task must not collect new tasks behind it).
   */
  suspect = false;
  /** Its STARTED word as last seen by a steal check, and when that value was first seen. */
  seenStarted = -1;
  seenAt = 0;
  /** Terminated by the pool itself (a cancelled running task, or terminate()). */
  killed = false;
  /** The last post into its ring (join waits for the pump to finish or give up). */
  post: Promise<SendStatus> | null = null;
  readonly sendOptions: SendOptions;

  readonly resultRing: Ring;

  constructor(readonly wid: number, readonly block: number, readonly proc: Process) {
    this.ctl = new Int32Array(heap().sab, block, CTL_BYTES >> 2);
    this.taskRing = new Ring(block + CTL_BYTES, block);
    this.resultRing = new Ring(block + CTL_BYTES + TASK_RING_BYTES, block);
    // A dead worker's ring is drained by nobody: its pending posts give up.
    this.sendOptions = { broken: () => this.dead };
  }

  /** Tasks written to it and not yet returned (cancelled ones it will skip excepted). */
  inflight(): number {
    return this.fifo.length - this.head - this.skipped;
  }

  shift(): void {
    this.fifo[this.head++] = undefined as unknown as Task;
    if (this.head === this.fifo.length) {
      this.fifo.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.fifo.length) {
      this.fifo = this.fifo.slice(this.head);
      this.head = 0;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Pool

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

const RUN = 0, CLOSE = 1, TERMINATE = 2;
let widCounter = 0;

type Settled = [boolean, unknown];
type MapArg = number | MapOptions<unknown[]> | undefined;

let poolCount = 0;
/** The pools of this isolate, for snapshot(). */
const livePools = new Set<WeakRef<Pool>>();
let describePool!: (p: Pool) => Record<string, unknown> | null;
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
 * ```ts ignore
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
  readonly #processes: number;
  readonly #maxTasks: number;
  readonly #initializer: TargetRef | null;
  readonly #initargs: unknown[];
  readonly #preload: string[];
  #state = RUN;
  #broken: Error | null = null;

  readonly #workers = new Map<number, WorkerHandle>();
  /** The same workers in an array (the reader walks it on every wake-up). */
  #list: WorkerHandle[] = [];
  #live = 0;
  #startFailures = 0;
  #deadPending: WorkerHandle[] = [];
  #graveyard: { block: number; at: number }[] = [];

  #queue: Task[] = [];
  #qhead = 0;
  /** Tasks QUEUED or ASSIGNED. */
  #outstanding = 0;
  /** Active imap iterations (workers are not stopped while one may still submit). */
  #streams = 0;
  #flushQueued = false;
  /** A dispatch pass is writing into the stage (user callbacks may run inside it). */
  #dispatching = false;

  /** The doorbell (see Doorbell). */
  readonly #bellBlock: number;
  readonly #bell: Doorbell;
  /** The worker whose result ring `#onMessage` is reading. */
  #from: WorkerHandle | null = null;
  #reading = false;
  #watching = false;
  /** When a steal check is due (a worker may be stuck in a task; see #steal); else Infinity. */
  #stealDue = Infinity;
  /** Mean task duration (µs, moving average), -1 until known. */
  #svc = -1;

  #enc = new Encoder();
  readonly #dec = new Decoder();
  /** Isolation "process": what each worker's `Process` is given (see os_pool.ts). */
  #isolated: IsolationOptions | undefined;
  #stage = new Uint8Array(FLUSH_BYTES * 2);
  /** The stage as Float64 values (numeric columns are written through it, 8-aligned). */
  #stageF64 = new Float64Array(this.#stage.buffer);

  /** For snapshot(): its name, counters and latencies. */
  readonly #name: string;
  readonly #stats = new PoolStats();

  #readyWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  #changeWaiters: (() => void)[] = [];

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
    if (checkIsolation(options, "Pool")) {
      const { isolation, maxMemoryMb, denoFlags } = options;
      this.#isolated = { isolation, maxMemoryMb, denoFlags };
      this.#enc = isolatedEncoder();
    }
    this.#processes = processes;
    this.#maxTasks = mt ?? 0;
    this.#name = options.name ?? `Pool-${++poolCount}`;
    livePools.add(new WeakRef(this));
    this.#initializer = options.initializer ? fnInfo(options.initializer, "initializer").ref : null;
    this.#initargs = [...(options.initargs ?? [])];
    const preload = options.preload ?? [];
    const base = preload.length ? callerModule() : undefined;
    this.#preload = preload.map((m) => new URL(m, base).href);
    this.#bellBlock = alloc(Doorbell.BYTES);
    this.#bell = new Doorbell(this.#bellBlock);
    // The doorbell lives as long as this object (workers never outlive a terminated pool).
    adopt(this, this.#bellBlock);
    try {
      for (let i = 0; i < processes; i++) this.#spawn();
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
   * ```ts ignore
   * const n: number = await pool.apply(square, [3]); // 9
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
   * ```ts ignore
   * const r = pool.applyAsync(square, [7], { callback: (v) => console.log("got", v), timeout: 5000 });
   * console.log(await r); // 49
   * ```
   */
  applyAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    args: A = [] as unknown as A,
    options?: ApplyOptions<Awaited<R>>,
  ): AsyncResult<Awaited<R>> {
    options = optionsOf(options, "Pool.applyAsync", "applyAsync(fn, args, { timeout: 5000 })");
    this.#checkRunning();
    const info = fnInfo(fn);
    if (!Array.isArray(args)) throw new TypeError("args must be an array");
    if (!this.#known(info)) this.#define(info);
    const r = newResult<Awaited<R>>(options.callback, options.errorCallback);
    const t = new Task(r as AsyncResult<unknown>, info, APPLY, args, 0, args.length, 0);
    setWork(r, this, t);
    if (options.transfer) this.#preencode([t], options.transfer);
    if (options.signal || options.timeout !== undefined) {
      if (!this.#arm(r, [t], options)) return r;
    }
    this.#submit(t);
    return r;
  }

  /**
   * Applies `fn` to every item, in chunks, and resolves with the results in order (Python's
   * `map`). Rejects with the first task error, or with the error the input iterable threw.
   *
   * @example
   * ```ts ignore
   * console.log(await pool.map(square, [1, 2, 3])); // [1, 4, 9]
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
   * ```ts ignore
   * const r = pool.mapAsync(square, [1, 2, 3], { callback: (xs) => console.log(xs) });
   * await r.wait();
   * ```
   */
  mapAsync<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | MapOptions<Awaited<R>[]>,
  ): AsyncResult<Awaited<R>[]> {
    this.#checkRunning();
    const o = mapOptions(chunksize as MapArg, "Pool.mapAsync");
    return this.#mapJob(fnInfo(fn), MAP, iterable, o) as AsyncResult<
      Awaited<R>[]
    >;
  }

  /**
   * Like `map`, with each item spread as the arguments (Python's `starmap`).
   *
   * @example
   * ```ts ignore
   * console.log(await pool.starmap(add, [[1, 2], [3, 4]])); // [3, 7]
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
   * ```ts ignore
   * const r = pool.starmapAsync(add, [[1, 2], [3, 4]]);
   * console.log(await r); // [3, 7]
   * ```
   */
  starmapAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A> | AsyncIterable<A>,
    chunksize?: number | MapOptions<Awaited<R>[]>,
  ): AsyncResult<Awaited<R>[]> {
    this.#checkRunning();
    const o = mapOptions(chunksize as MapArg, "Pool.starmapAsync");
    return this.#mapJob(fnInfo(fn), STARMAP, iterable, o) as AsyncResult<
      Awaited<R>[]
    >;
  }

  /**
   * Applies `fn` to each item lazily and yields the results in order (Python's `imap`). Reads
   * only a bounded number of items ahead (`buffersize`), so the input may be infinite; leaving
   * the loop early drops the tasks not yet started.
   *
   * @example
   * ```ts ignore
   * function* naturals() {
   *   for (let i = 0;; i++) yield i;
   * }
   * for await (const y of pool.imap(square, naturals())) if (y > 100) break;
   * ```
   */
  imap<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | IMapOptions,
  ): AsyncGenerator<Awaited<R>, void, undefined> {
    this.#checkRunning();
    return this.#stream(fnInfo(fn), iterable, chunksize, true) as AsyncGenerator<
      Awaited<R>,
      void,
      undefined
    >;
  }

  /**
   * Like `imap`, yielding results as they complete (Python's `imap_unordered`).
   *
   * @example
   * ```ts ignore
   * for await (const y of pool.imapUnordered(square, [1, 2, 3])) console.log(y);
   * ```
   */
  imapUnordered<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | IMapOptions,
  ): AsyncGenerator<Awaited<R>, void, undefined> {
    this.#checkRunning();
    return this.#stream(fnInfo(fn), iterable, chunksize, false) as AsyncGenerator<
      Awaited<R>,
      void,
      undefined
    >;
  }

  /**
   * Resolves once every worker has started, imported the `preload` modules and run its
   * initializer (not in Python: a start-up barrier, e.g. before timing). Rejects with
   * `BrokenPoolError` if an initializer or a preload import failed. Without `preload`, the first
   * task of a function still pays for importing its module.
   *
   * @example
   * ```ts ignore
   * const pool = new Pool({ processes: 2 });
   * await pool.whenReady();
   * ```
   */
  whenReady(): Promise<void> {
    if (this.#broken) return Promise.reject(this.#broken);
    if (this.#allReady()) return Promise.resolve();
    if (this.#state === TERMINATE) return Promise.reject(new ValueError("Pool not running"));
    return new Promise((resolve, reject) => {
      this.#readyWaiters.push({ resolve, reject });
      this.#kick();
    });
  }

  /**
   * Accepts no more tasks; workers exit once every submitted task is done (Python's `close`).
   *
   * @example
   * ```ts ignore
   * pool.close();
   * await pool.join();
   * ```
   */
  close(): void {
    if (this.#state !== RUN) return;
    this.#state = CLOSE;
    this.#dispatch();
    this.#kick();
  }

  /**
   * Waits until every worker has exited; call `close()` or `terminate()` first (else
   * `ValueError`, as in Python). After `close()`, every submitted task is done by then, and so
   * is every `imap` iteration that was in progress.
   *
   * @example
   * ```ts ignore
   * pool.close();
   * await pool.join();
   * ```
   */
  async join(): Promise<void> {
    if (this.#state === RUN) throw new ValueError("Pool is still running");
    while (this.#live > 0 || this.#reading || this.#deadPending.length > 0) {
      await new Promise<void>((r) => this.#changeWaiters.push(r));
    }
    // Posts into the rings of workers that are gone give up (see WorkerHandle.sendOptions).
    await Promise.all([...this.#workers.values()].map((w) => w.post));
    for (const w of this.#workers.values()) this.#bury(w.block);
    this.#workers.clear();
    this.#list = [];
    // Blocks of workers that died a moment ago are freed with this object (see #reap).
    for (const g of this.#graveyard) adopt(this, g.block);
    this.#graveyard = [];
  }

  /**
   * Stops every worker at once (Python's `terminate`). Tasks not done reject with
   * `BrokenPoolError`; returns promptly however many are queued.
   *
   * @example
   * ```ts ignore
   * pool.terminate();
   * await pool.join();
   * ```
   */
  terminate(): void {
    if (this.#state === TERMINATE) return;
    this.#state = TERMINATE;
    for (const w of this.#workers.values()) {
      if (!w.dead) {
        w.dead = w.killed = true;
        w.proc.terminate();
      }
      w.taskRing.wakeWriters(); // its pending posts see `broken` now rather than in 100 ms
    }
    this.#live = 0;
    this.#deadPending = [];
    const err = this.#broken ??
      new BrokenPoolError("the pool was terminated before this task completed");
    this.#failAll(err);
    for (const r of this.#readyWaiters.splice(0)) r.reject(err);
    this.#wake(); // the reader sees it has nothing left to do
    Atomics.notify(heap().i32, DEATH_EPOCH_INDEX); // and so does the death watcher
    this.#changed();
  }

  /**
   * `await using pool = new Pool()`: terminates the pool and waits for its workers, as
   * Python's `with Pool() as p:` does.
   *
   * @example
   * ```ts ignore
   * {
   *   await using pool = new Pool();
   *   await pool.map(square, [1, 2]);
   * } // terminated here
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
   * ```ts ignore
   * console.log(String(new Pool({ processes: 2 }))); // "<Pool state=RUN pool_size=2>"
   * ```
   */
  toString(): string {
    const state = this.#broken ? "BROKEN" : ["RUN", "CLOSE", "TERMINATE"][this.#state];
    return `<Pool state=${state} pool_size=${this.#processes}>`;
  }

  /**
   * Forgets the task wait and run times measured so far (`snapshot().pools`: their p50/p99);
   * the counters keep counting.
   *
   * @example
   * ```ts ignore
   * pool.resetStats(); // latencies from now on
   * ```
   */
  resetStats(): void {
    this.#stats.reset();
  }

  static {
    describePool = (p) => {
      const workers = p.#list.filter((w) => !w.dead).map((w) => {
        const t = w.fifo.length - w.head - w.skipped > 0 ? w.fifo[w.head] : undefined;
        return { name: w.proc.name, busy: t !== undefined, task: t ? t.fn.ref.name : "" };
      });
      // Gone: terminated, or closed with nothing left to do.
      if (p.#state === TERMINATE || (p.#state === CLOSE && p.#outstanding === 0)) {
        if (!workers.length) return null;
      }
      const busy = workers.filter((w) => w.busy).length;
      return {
        name: p.#name,
        state: p.#broken ? "broken" : ["running", "closed", "terminated"][p.#state],
        processes: p.#processes,
        workers,
        queued: Math.max(0, p.#outstanding - busy),
        running: busy,
        completed: p.#stats.completed,
        failed: p.#stats.failed,
        utilization: p.#stats.utilization(workers.length, busy),
        ...p.#stats.latencies(),
      };
    };
  }

  // -------------------------------------------------------------------------------------------
  // Submission

  /** Whether the first worker knows `fn` (the cheap test before `#define`). */
  #known(fn: FnInfo): boolean {
    const w = this.#list[0];
    return w === undefined || w.known[fn.id] === true;
  }

  #checkRunning(): void {
    if (this.#broken) throw this.#broken;
    if (this.#state !== RUN) throw new ValueError("Pool not running");
  }

  #submit(t: Task): void {
    if (this.#state === TERMINATE || this.#broken) {
      t.state = DONE;
      this.#settleJob(t, false, this.#broken ?? new ValueError("Pool not running"));
      return;
    }
    t.at = this.#stats.stamp();
    this.#queue.push(t);
    this.#outstanding++;
    if ((this.#queue.length - this.#qhead) % EAGER_DISPATCH === 0) this.#dispatch();
    else this.#schedule();
  }

  readonly #flush = (): void => {
    this.#flushQueued = false;
    this.#dispatch();
  };

  /** Encodes tasks now (so that their buffers can be detached now). */
  #preencode(tasks: Task[], list: ArrayBuffer[]): void {
    for (const t of tasks) {
      try {
        const { result, modules } = withHandleModules(() =>
          this.#enc.encode(t.items(), t.mode === APPLY ? "args" : "chunk").slice()
        );
        t.bytes = result;
        t.modules = modules;
      } catch (e) {
        throw t.mode === APPLY ? e : chunkPath(e, t.start, "iterable");
      }
    }
    detachAll(list);
  }

  /**
   * Wires `signal` and `timeout` to a job. False when the signal has already fired (the job is
   * then settled and must not be submitted).
   */
  #arm<T>(result: AsyncResult<T>, tasks: Task[], o: TaskOptions): boolean {
    const { signal, timeout } = o;
    if (timeout !== undefined) deadlineOf(timeout); // validates
    if (signal?.aborted) {
      for (const t of tasks) t.state = DONE;
      settle(result, false, signal.reason);
      return false;
    }
    const abort = (reason: unknown) => {
      settle(result, false, reason); // at once, whatever the tasks are doing
      for (const t of tasks) this.#cancel(t, true);
      this.#dispatch();
    };
    const onAbort = () => abort(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let timer: ReturnType<typeof setTimeout> | undefined, over = false;
    if (timeout !== undefined) {
      // The clock starts when the first task is handed to a worker (see Task.clock).
      const clock = () => {
        if (timer !== undefined || over) return;
        timer = setTimeout(
          () => abort(new TimeoutError(`the task did not complete within ${timeout} ms`)),
          timeout,
        );
      };
      for (const t of tasks) t.clock = clock;
    }
    setCleanup(result, () => {
      over = true;
      signal?.removeEventListener("abort", onAbort);
      clearTimeout(timer);
    });
    return true;
  }

  #mapJob(
    info: FnInfo,
    mode: Mode,
    iterable: Iterable<unknown> | AsyncIterable<unknown>,
    o: MapOptions<unknown[]>,
  ): AsyncResult<unknown[]> {
    if (o.chunksize !== undefined) checkChunksize(o.chunksize);
    if (o.timeout !== undefined) deadlineOf(o.timeout);
    const r = newResult<unknown[]>(o.callback, o.errorCallback);
    if (Array.isArray(iterable) || isIterable(iterable)) {
      // As in Python's map_async: the input is read now, and an error it throws is thrown here.
      const items = Array.isArray(iterable) ? iterable : Array.from(iterable as Iterable<unknown>);
      this.#startMap(r, info, mode, items, o);
    } else {
      // Until the input is read, close() must not stop the workers (as for an imap).
      this.#streams++;
      collect(iterable as AsyncIterable<unknown>).then(
        (items) => this.#startMap(r, info, mode, items, o),
        (e) => settle(r, false, e),
      ).finally(() => {
        this.#streams--;
        this.#dispatch();
      });
    }
    return r;
  }

  #startMap(
    r: AsyncResult<unknown[]>,
    info: FnInfo,
    mode: Mode,
    items: unknown[],
    o: MapOptions<unknown[]>,
  ): void {
    const n = items.length;
    if (n === 0) return settle(r, true, []);
    if (!this.#known(info)) this.#define(info);
    const cs = o.chunksize ?? Math.ceil(n / (4 * this.#processes));
    const job = new MapJob(r, n);
    for (let s = 0; s < n; s += cs) {
      // A range of the input, not a copy: a numeric chunk is written from it straight into the
      // message.
      job.tasks.push(new Task(job, info, mode, items, s, Math.min(cs, n - s), s));
    }
    job.left = job.tasks.length;
    setWork(r, this, job.tasks.length === 1 ? job.tasks[0] : job.tasks);
    try {
      if (o.transfer) this.#preencode(job.tasks, o.transfer);
    } catch (e) {
      return settle(r, false, e);
    }
    if ((o.signal || o.timeout !== undefined) && !this.#arm(r, job.tasks, o)) return;
    for (const t of job.tasks) this.#submit(t);
  }

  /** Checks the arguments of imap now (as Python does), then returns the lazy iteration. */
  #stream(
    info: FnInfo,
    iterable: Iterable<unknown> | AsyncIterable<unknown>,
    chunksize: number | IMapOptions | undefined,
    ordered: boolean,
  ): AsyncGenerator<unknown, void, undefined> {
    const o = mapOptions<IMapOptions>(chunksize, ordered ? "Pool.imap" : "Pool.imapUnordered");
    const cs = o.chunksize ?? 1;
    checkChunksize(cs);
    const b = o.buffersize ?? READ_AHEAD_PER_WORKER * this.#processes;
    if (!Number.isInteger(b) || b < 1) {
      throw new ValueError(`buffersize must be a positive int: current value is ${b}`);
    }
    const src = openIterator(iterable);
    return this.#iterate(info, src, cs, Math.max(cs, b), ordered, o.signal);
  }

  async *#iterate(
    info: FnInfo,
    src: AnyIterator,
    cs: number,
    limit: number,
    ordered: boolean,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<unknown, void, undefined> {
    const job = new StreamJob(ordered);
    signal?.throwIfAborted();
    if (!this.#known(info)) this.#define(info);
    let fed = 0, taken = 0, next = 0, exhausted = false, srcFailed = false;
    let srcError: unknown = undefined;
    const onAbort = () => {
      job.aborted = true;
      job.reason = signal!.reason;
      for (const t of job.live.values()) this.#cancel(t, true);
      job.poke();
      this.#dispatch();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#streams++;
    try {
      for (;;) {
        if (job.aborted) throw job.reason;
        // Keep at most `limit` items read ahead of the consumer (in flight or not yet taken).
        while (!exhausted && fed - taken < limit) {
          const chunk: unknown[] = [];
          try {
            while (chunk.length < cs) {
              let step = src.next();
              if (step instanceof Promise) step = await step;
              if ((step as IteratorResult<unknown>).done) {
                exhausted = true;
                break;
              }
              chunk.push((step as IteratorResult<unknown>).value);
            }
          } catch (e) {
            exhausted = srcFailed = true;
            srcError = e;
          }
          if (chunk.length) {
            const t = new Task(job, info, MAP, chunk, 0, chunk.length, fed);
            fed += chunk.length;
            job.live.set(t.start, t);
            this.#submit(t);
          }
          if (job.aborted) throw job.reason;
        }
        const key = ordered ? (job.ready.has(next) ? next : undefined) : job.order.shift();
        if (key !== undefined) {
          const [ok, v] = job.ready.get(key) as Settled;
          job.ready.delete(key);
          if (!ok) throw v;
          const values = v as ArrayLike<unknown>;
          next = key + values.length;
          taken += values.length;
          for (let i = 0; i < values.length; i++) yield values[i];
          continue;
        }
        if (job.live.size === 0 && job.ready.size === 0) {
          if (srcFailed) throw srcError;
          if (exhausted) return;
          continue;
        }
        await new Promise<void>((r) => (job.wake = r));
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      // Leaving early: tasks not started are dropped (running ones finish, their result unused).
      for (const t of job.live.values()) this.#cancel(t, false);
      this.#streams--;
      if (!exhausted) await src.return?.();
      this.#dispatch();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Dispatch: the pool-level queue into the workers' rings

  #window(): number {
    if (this.#svc < 0) return INITIAL_WINDOW;
    return Math.max(MIN_WINDOW, Math.min(MAX_WINDOW, Math.ceil(LOOKAHEAD_US / (this.#svc + 1))));
  }

  /** How many tasks `w` may be given now (0 until it has worked off half its window). */
  #room(w: WorkerHandle, win: number): number {
    if (w.dead || w.stopped || (w.suspect && w.inflight() > 0)) return 0;
    const inflight = w.inflight();
    if (inflight > win >> 1) return 0;
    let room = win - inflight;
    if (this.#maxTasks) room = Math.min(room, this.#maxTasks - w.assigned);
    return room;
  }

  #dispatch(): void {
    if (this.#state === TERMINATE || this.#broken) return;
    if (this.#dispatching) {
      // Re-entered from a user callback (a task that failed to encode settles inside a pass):
      // the stage holds a message in the making, so run again once this pass is over.
      return this.#schedule();
    }
    this.#dispatching = true;
    try {
      this.#dispatchPass();
    } finally {
      this.#dispatching = false;
    }
    this.#kick();
  }

  #schedule(): void {
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#flush);
    }
  }

  #dispatchPass(): void {
    // Cancelled tasks at the head go now (they must not hold off STOP or start workers).
    while (this.#qhead < this.#queue.length && this.#queue[this.#qhead].state !== QUEUED) {
      this.#queue[this.#qhead++] = undefined as unknown as Task;
    }
    // Start replacements, hand the queue out; then, while it is empty and a worker is idle,
    // take back the tasks that have not started from a stuck worker and hand those out.
    do {
      this.#replenish();
      this.#handOut();
    } while (this.#qhead === this.#queue.length && this.#steal());
    if (this.#state === TERMINATE || this.#broken) return;
    if (this.#state === CLOSE && this.#qhead === this.#queue.length && this.#streams === 0) {
      // Closed and nothing left to hand out: each worker exits after what its ring holds. (Tasks
      // stuck behind a slow one are still taken back then: a new worker starts for them.)
      for (const w of this.#workers.values()) {
        if (w.dead || w.stopped) continue;
        w.stopped = true;
        this.#stage[0] = OP_STOP;
        w.post = w.taskRing.post(this.#stage.subarray(0, 1), w.sendOptions);
      }
    }
  }

  /** Writes queued tasks into the rings of the workers with room. */
  #handOut(): void {
    const queued = this.#queue.length - this.#qhead;
    if (queued === 0) return;
    // Each worker with room gets an even share, so that a few big chunks do not all go to the
    // first one, handed out in rounds of one message (~16 KiB) each: every worker starts on
    // its first message while the next ones are being encoded.
    const win = this.#window();
    const open: WorkerHandle[] = [], quota: number[] = [];
    for (const w of this.#workers.values()) {
      const room = this.#room(w, win);
      if (room > 0) open.push(w), quota.push(room);
    }
    for (let i = 0; i < open.length; i++) {
      quota[i] = Math.min(quota[i], Math.ceil((queued - sum(quota, i)) / (open.length - i)));
    }
    for (let busy = true; busy && this.#qhead < this.#queue.length;) {
      busy = false;
      for (let i = 0; i < open.length; i++) {
        if (quota[i] <= 0 || open[i].dead) continue;
        const sent = this.#send(open[i], quota[i]);
        // Nothing sent: the next task has a timeout and this worker is not idle.
        quota[i] = sent > 0 ? quota[i] - sent : 0;
        if (this.#state === TERMINATE || this.#broken) return;
        busy ||= quota[i] > 0;
      }
    }
  }

  /**
   * Work stealing: when a ready worker is idle, takes back every task that has not started from
   * a worker stuck for a while (in one task, or still starting), the one holding most, and
   * queues them again (in order, ahead of the rest). So a task never waits long behind a slow or
   * endless one while another worker could run it. True when it took any.
   *
   * "Stuck": its STARTED word has not moved for {@link STUCK_US} or 4 mean task durations while
   * tasks wait. A worker busy with a run of short tasks is left alone: taking all it holds would
   * only make the two hand the same tasks back and forth. The reader's sleep ends when a check
   * is due.
   */
  #steal(): boolean {
    if (this.#state === TERMINATE || this.#broken || this.#isolated) return false;
    const win = this.#window();
    const idle = this.#list.some((w) => w.ready && w.inflight() === 0 && this.#room(w, win) > 0);
    // After close(), idle workers have stopped: a new one would start for the tasks taken back,
    // which is worth it only for a worker stuck far longer than a start takes.
    const replace = !idle && this.#state === CLOSE && this.#live < this.#processes;
    if (!idle && !replace) return false;
    const now = performance.now();
    const stuckMs = Math.max(replace ? REPLACE_STUCK_US : STUCK_US, 4 * this.#svc) / 1000;
    let victim: WorkerHandle | null = null, most = 0;
    for (const w of this.#list) {
      if (w.dead) continue;
      const started = startedOf(w.ctl), waiting = w.assigned - started;
      // Progress is a change of STARTED while tasks wait (time spent idle does not count).
      if (started !== w.seenStarted || waiting === 0) {
        w.seenStarted = waiting === 0 ? -1 : started;
        w.seenAt = now;
      }
      if (waiting === 0) continue;
      if (now - w.seenAt < stuckMs) {
        this.#stealDue = Math.min(this.#stealDue, w.seenAt + stuckMs);
        continue;
      }
      if (waiting > most) most = waiting, victim = w;
    }
    if (victim === null) return false;
    const back = this.#recall(victim);
    if (back.length === 0) return false;
    __testHooks.steals++;
    victim.suspect = victim.inflight() > 0;
    this.#queue = back.concat(this.#queue.slice(this.#qhead));
    this.#qhead = 0;
    return true;
  }

  /**
   * Takes back the tasks of `w` that have not started: one compare-exchange of its STARTED word
   * to `-last` (see STARTED), which the worker meets before its next task and then skips the
   * tasks up to `last`. Returns them, in order, ready to be queued again.
   */
  #recall(w: WorkerHandle): Task[] {
    // (Not from a worker that is an OS process: its tasks are in another heap; see os_pool.ts.)
    if (this.#isolated) return [];
    const last = w.assigned;
    let seen = Atomics.load(w.ctl, STARTED);
    for (;;) {
      if (Math.abs(seen) >= last) return []; // every task it holds has begun
      const was = Atomics.compareExchange(w.ctl, STARTED, seen, -last);
      if (was === seen) break;
      seen = was; // it began another meanwhile
    }
    const begun = Math.abs(seen);
    const back: Task[] = [];
    while (w.fifo.length > w.head) {
      const t = w.fifo[w.fifo.length - 1];
      if (t.seq <= begun) break;
      w.fifo.pop();
      if (t.skipped) w.skipped--;
      if (t.state !== ASSIGNED) continue; // cancelled meanwhile
      t.state = QUEUED;
      t.worker = null;
      t.seq = 0;
      back.push(t);
    }
    if (w.fifo.length === w.head) {
      w.fifo.length = 0;
      w.head = 0;
    }
    return back.reverse();
  }

  /** Writes up to `count` queued tasks into `w`'s ring as one message (~16 KiB at most). */
  #send(w: WorkerHandle, count: number): number {
    let pos = 0, sent = 0;
    let preset: string[] | null = null;
    // One sink for the whole message: which modules register the handle kinds encoded in it.
    const { modules } = withHandleModules(() => {
      while (sent < count && this.#qhead < this.#queue.length) {
        const t = this.#queue[this.#qhead];
        // A task with a timeout goes only to an idle, ready worker, first in its message: it
        // starts at once, so its clock (started now) counts its running time only.
        if (t.clock !== null && t.state === QUEUED && (w.inflight() > 0 || !w.ready)) break;
        this.#queue[this.#qhead++] = undefined as unknown as Task;
        if (t.state !== QUEUED) continue;
        const fn = t.fn;
        if (!w.known[fn.id]) pos = this.#writeDefine(w, pos, fn);
        let body = t.bytes;
        if (t.modules) (preset ??= []).push(...t.modules);
        if (body === null && t.mode !== STARMAP) {
          const end = this.#column(pos, t);
          if (end > 0) {
            pos = end;
            this.#assign(w, t);
            sent++;
            if (pos >= FLUSH_BYTES) break;
            continue;
          }
        }
        if (body === null) {
          try {
            body = this.#enc.encode(t.items(), t.mode === APPLY ? "args" : "chunk");
          } catch (e) {
            // Unsendable arguments fail this task only; the worker never sees it.
            this.#complete(t, false, t.mode === APPLY ? e : chunkPath(e, t.start, "iterable"));
            if (this.#state === TERMINATE || w.dead) break;
            continue;
          }
        }
        pos = this.#reserve(pos, TASK_HEADER + body.length);
        this.#header(pos, t, CODEC, body.length);
        this.#stage.set(body, pos + TASK_HEADER);
        pos += TASK_HEADER + body.length;
        this.#assign(w, t);
        sent++;
        if (pos >= FLUSH_BYTES) break;
      }
    });
    if (this.#qhead === this.#queue.length) {
      this.#queue.length = 0;
      this.#qhead = 0;
    } else if (this.#qhead > 4096 && this.#qhead * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#qhead);
      this.#qhead = 0;
    }
    if (modules.length || preset) this.#sendImports(w, preset ? modules.concat(preset) : modules);
    // `post` copies what it cannot write at once, so the stage is free again after it.
    if (pos) w.post = w.taskRing.post(this.#stage.subarray(0, pos), w.sendOptions);
    return sent;
  }

  /** Tells `w` to import the modules it has not been told of yet, before the next message. */
  #sendImports(w: WorkerHandle, modules: string[]): void {
    const fresh = modules.filter((m) => !w.modules.has(m));
    if (!fresh.length) return;
    for (const m of fresh) w.modules.add(m);
    const body = this.#enc.encode(fresh);
    const msg = new Uint8Array(DEFINE_HEADER + body.length);
    msg[0] = OP_IMPORT;
    putU32(msg, 5, body.length);
    msg.set(body, DEFINE_HEADER);
    w.post = w.taskRing.post(msg, w.sendOptions);
  }

  /**
   * Writes task `t` at `pos` with its items as a numeric column, and returns where it ends; 0
   * when an item is not a number (nothing counts as written then).
   */
  #column(pos: number, t: Task): number {
    const n = t.count, xs = t.payload, from = t.from;
    pos = this.#reserve(pos, 8 + TASK_HEADER + n * 8);
    while (pos & 7) this.#stage[pos++] = OP_PAD;
    const col = this.#stageF64, at = (pos + TASK_HEADER) >> 3;
    for (let i = 0; i < n; i++) {
      const x = xs[from + i];
      if (typeof x !== "number") return 0;
      col[at + i] = x;
    }
    this.#header(pos, t, COLUMN, n * 8);
    return pos + TASK_HEADER + n * 8;
  }

  #writeDefine(w: WorkerHandle, pos: number, fn: FnInfo): number {
    pos = this.#reserve(pos, DEFINE_HEADER + fn.define.length);
    const b = this.#stage;
    b[pos] = OP_DEFINE;
    putU32(b, pos + 1, fn.id);
    putU32(b, pos + 5, fn.define.length);
    b.set(fn.define, pos + DEFINE_HEADER);
    w.known[fn.id] = true;
    return pos + DEFINE_HEADER + fn.define.length;
  }

  /**
   * Defines `fn` in every worker that does not know it yet, in a message of its own, now: each
   * worker imports its module while this thread is still encoding the tasks (rather than after
   * their first message arrives).
   */
  #define(fn: FnInfo): void {
    if (this.#dispatching) return; // the pass in progress defines it with its tasks
    for (const w of this.#list) {
      if (w.known[fn.id] || w.dead || w.stopped) continue;
      const n = this.#writeDefine(w, 0, fn);
      w.post = w.taskRing.post(this.#stage.subarray(0, n), w.sendOptions);
    }
  }

  #header(pos: number, t: Task, col: Column, length: number): void {
    const b = this.#stage;
    b[pos] = OP_TASK;
    b[pos + 1] = t.mode;
    b[pos + 2] = col;
    b[pos + 3] = 0;
    putU32(b, pos + 4, t.fn.id);
    putU32(b, pos + 8, t.start);
    putU32(b, pos + 12, length);
  }

  #assign(w: WorkerHandle, t: Task): void {
    t.state = ASSIGNED;
    t.worker = w;
    t.seq = ++w.assigned;
    w.fifo.push(t);
    if (t.clock !== null) t.clock();
  }

  /** Makes room for `n` more bytes at `pos` in the stage. */
  #reserve(pos: number, n: number): number {
    if (pos + n > this.#stage.length) {
      const bigger = new Uint8Array(Math.max(this.#stage.length * 2, pos + n + 7) & ~7);
      bigger.set(this.#stage.subarray(0, pos));
      this.#stage = bigger;
      this.#stageF64 = new Float64Array(bigger.buffer);
    }
    return pos;
  }

  // -------------------------------------------------------------------------------------------
  // Results

  #needReader(): boolean {
    if (this.#state === TERMINATE) return false;
    return this.#outstanding > 0 || this.#deadPending.length > 0 ||
      this.#readyWaiters.length > 0 || (this.#state === CLOSE && this.#live > 0);
  }

  #kick(): void {
    if (!this.#reading && this.#needReader()) {
      this.#reading = true;
      // One keep-alive for the whole reading session (not one per sleep): pending tasks keep
      // the program alive, an idle pool does not.
      void keepAlive(this.#readLoop());
    }
  }

  /** Wakes the reader (from this thread: a death, terminate()). */
  #wake(): void {
    this.#bell.ring();
  }

  async #readLoop(): Promise<void> {
    const bell = this.#bell;
    /** The last sleep ended by its time limit: results found now were not rung for. */
    let late = false;
    try {
      for (;;) {
        const seen = bell.count();
        if (await this.#drain()) {
          if (late) __testHooks.lateWakeups++;
          late = false;
          this.#dispatch();
          continue;
        }
        late = false;
        // Every ring is empty: whatever a dead worker sent has been read.
        if (this.#deadPending.length > 0) {
          this.#buryDead();
          continue;
        }
        if (!this.#needReader()) return;
        if (bell.spin(seen, BELL_SPIN)) continue; // a result is likely near
        // The sleep ends by the backstop, or when a steal check is due.
        const ms = Math.min(BELL_SLICE_MS, Math.max(0, this.#stealDue - performance.now()));
        if ((await bell.sleep(seen, ms)) === "timed-out") {
          late = ms === BELL_SLICE_MS;
          if (performance.now() >= this.#stealDue) {
            this.#stealDue = Infinity;
            this.#dispatch(); // a worker may be stuck in a task: see #steal
          }
        }
      }
    } catch (e) {
      // A bug, not a condition: fail everything rather than leave anybody waiting.
      this.#breakPool(new BrokenPoolError("the pool's result reader failed", { cause: e }));
    } finally {
      this.#reading = false;
      this.#from = null;
      this.#changed();
      this.#kick();
    }
  }

  /** Reads every message in every worker's result ring; the number read. */
  async #drain(): Promise<number> {
    let n = 0;
    for (const w of this.#list) {
      const ring = w.resultRing;
      for (;;) {
        this.#from = w;
        if (ring.tryRecv(this.#onMessage) !== TIMEOUT) {
          n++;
          continue;
        }
        if (ring.empty()) break;
        // A message too large for one frame is streamed: read it whole (its writer is still
        // writing it, or died and it is discarded).
        this.#from = w;
        if ((await ring.recv(this.#onMessage, { timeout: 0 })) === TIMEOUT) break;
        n++;
      }
    }
    return n;
  }

  readonly #onMessage = (b: Uint8Array): true => {
    const kind = b[0];
    const w = this.#from!;
    if (kind === R_OK || kind === R_ERR || kind === R_COLUMN) {
      w.suspect = false;
      const seq = u32(b, 4);
      const us = u32(b, 8);
      this.#svc = this.#svc < 0 ? us : this.#svc * 0.9 + us * 0.1;
      let t = w.fifo[w.head];
      // Tasks before it were cancelled and skipped by the worker.
      while (t !== undefined && t.seq < seq) {
        if (t.skipped) w.skipped--;
        w.shift();
        t = w.fifo[w.head];
      }
      if (t === undefined || t.seq !== seq) return true;
      this.#stats.timed(us, t.at);
      w.shift();
      if (t.state !== ASSIGNED) return true; // cancelled while it ran
      let ok = kind !== R_ERR, value: unknown;
      try {
        value = kind !== R_COLUMN
          ? this.#dec.decode(b.subarray(RESULT_HEADER))
          : t.mode === APPLY
          ? readNumber(b, RESULT_HEADER)
          : readColumn(b);
      } catch (e) {
        ok = false;
        value = e;
      }
      this.#complete(t, ok, ok ? value : fromRemote(value, w.proc.name));
    } else if (kind === R_READY) {
      w.ready = true;
      this.#startFailures = 0;
      this.#reap();
      if (this.#allReady()) { for (const r of this.#readyWaiters.splice(0)) r.resolve(); }
    } else if (kind === R_INIT_FAILED) {
      let cause: unknown;
      try {
        cause = fromRemote(this.#dec.decode(b.subarray(RESULT_HEADER)), w.proc.name);
      } catch (e) {
        cause = e;
      }
      const what = u32(b, 4) === 1 ? "preload import" : "initializer";
      this.#breakPool(
        new BrokenPoolError(
          `the ${what} of pool worker '${w.proc.name}' failed: ${describe(cause)}`,
          {
            cause,
          },
        ),
      );
    }
    return true;
  };

  #allReady(): boolean {
    if (this.#live < this.#processes && this.#state === RUN) return false;
    for (const w of this.#workers.values()) if (!w.dead && !w.ready) return false;
    return true;
  }

  /** Records the outcome of `t` and passes it to its job. */
  #complete(t: Task, ok: boolean, v: unknown): void {
    if (t.state === DONE) return;
    t.state = DONE;
    this.#outstanding--;
    this.#stats.count(t.mode === APPLY ? 1 : t.count, ok);
    this.#settleJob(t, ok, v);
  }

  #settleJob(t: Task, ok: boolean, v: unknown): void {
    const job = t.job;
    if (job instanceof AsyncResult) settle(job, ok, v);
    else if (job instanceof MapJob) {
      if (ok) {
        job.put(t.start, v as ArrayLike<unknown>);
        if (--job.left === 0) settle(job.result, true, job.out);
      } else {
        settle(job.result, false, v);
        for (const other of job.tasks) this.#cancel(other, false);
      }
    } else job.settle(t, ok, v);
  }

  /**
   * Withdraws a task that is not done. Queued: dropped. In a worker's ring: skipped by the worker.
   * Running: left to finish (its result is dropped), or with `kill` its worker is terminated.
   */
  #cancel(t: Task, kill: boolean): void {
    if (t.state === DONE) return;
    const was = t.state;
    t.state = DONE;
    this.#outstanding--;
    if (was !== ASSIGNED) return;
    const w = t.worker!;
    if (w.dead) return;
    if (skip(w.ctl, t.seq)) {
      t.skipped = true;
      w.skipped++;
      __testHooks.skips++;
      return;
    }
    if (kill) {
      w.proc.terminate();
      this.#noteDeath(w, true);
    }
  }

  /**
   * `AsyncResult.cancel()`: withdraws `t` if it has not started (see #cancel) and marks it done;
   * false once it has started (it runs on) or is done.
   */
  #withdraw(t: Task): boolean {
    if (t.state === ASSIGNED) {
      // (Its worker may be dead and not yet buried: the same tests tell whether it had begun
      // the task, which then fails with BrokenPoolError, or not, and then it is not queued again.)
      const w = t.worker!;
      if (skip(w.ctl, t.seq)) {
        t.skipped = true;
        w.skipped++;
        __testHooks.skips++;
      } else if (startedOf(w.ctl) >= t.seq || this.#dispatching) return false;
      else {
        // Every cancel slot is taken (many cancels at once): take back all the worker has not
        // begun, as a steal does (no limit), and drop `t` from the queue. Not while a dispatch
        // pass writes a message (a callback run inside it): that message is not in the ring yet.
        const back = this.#recall(w);
        if (back.length) {
          this.#queue = back.concat(this.#queue.slice(this.#qhead));
          this.#qhead = 0;
          this.#schedule(); // to hand them out again
        }
        if (!back.includes(t)) return false; // it began first
      }
    } else if (t.state !== QUEUED) return false;
    t.state = DONE;
    this.#outstanding--;
    // Room freed in a worker's window; after close(), maybe nothing left before STOP.
    this.#schedule();
    return true;
  }

  static {
    withdraw = (pool, t) => pool.#withdraw(t);
  }

  #failAll(err: Error): void {
    for (let i = this.#qhead; i < this.#queue.length; i++) {
      const t = this.#queue[i];
      if (t && t.state !== DONE) this.#complete(t, false, err);
    }
    this.#queue = [];
    this.#qhead = 0;
    for (const w of this.#workers.values()) {
      for (let i = w.head; i < w.fifo.length; i++) this.#complete(w.fifo[i], false, err);
      w.fifo = [];
      w.head = w.skipped = 0;
    }
  }

  /** The pool cannot work any more (an initializer failed): fail everything, stop the workers. */
  #breakPool(err: Error): void {
    if (this.#broken || this.#state === TERMINATE) return;
    this.#broken = err;
    this.terminate();
  }

  // -------------------------------------------------------------------------------------------
  // Workers: start, death, replacement

  #spawn(): void {
    const block = alloc(WORKER_BLOCK);
    Ring.init(block + CTL_BYTES, TASK_RING_BYTES);
    Ring.init(block + CTL_BYTES + TASK_RING_BYTES, RESULT_RING_BYTES);
    const wid = ++widCounter;
    const config: WorkerConfig = {
      wid,
      block,
      bell: this.#bellBlock,
      initializer: this.#initializer,
      initargs: this.#initargs,
      preload: this.#preload,
      maxTasks: this.#maxTasks,
    };
    const proc = new Process<[WorkerConfig]>({
      target: poolWorker,
      module: WORKER_MODULE,
      args: [config],
      daemon: true,
      name: `PoolWorker-${wid}`,
      ...this.#isolated,
    });
    try {
      proc.start();
    } catch (e) {
      release(block);
      throw e;
    }
    const handle = new WorkerHandle(wid, block, proc);
    this.#workers.set(wid, handle);
    this.#list.push(handle);
    this.#live++;
    void this.#watch();
  }

  /** Starts replacements for workers that died or retired, as long as there is work for them. */
  #replenish(): void {
    const want = this.#state === RUN ||
      (this.#state === CLOSE && (this.#qhead < this.#queue.length || this.#streams > 0));
    if (!want || this.#live >= this.#processes || this.#deadPending.length > 0) return;
    try {
      while (this.#live < this.#processes) this.#spawn();
    } catch (e) {
      this.#breakPool(new BrokenPoolError("a pool worker could not be started", { cause: e }));
    }
  }

  /**
   * Waits on the heap's death counter (bumped by every process death) without keeping the
   * program alive, and notes the deaths of this pool's workers.
   */
  async #watch(): Promise<void> {
    if (this.#watching) return;
    this.#watching = true;
    const i32 = heap().i32;
    try {
      while (this.#state !== TERMINATE && this.#live > 0) {
        const epoch = Atomics.load(i32, DEATH_EPOCH_INDEX);
        for (const w of this.#workers.values()) {
          if (!w.dead && w.proc.exitCode !== null) this.#noteDeath(w, false);
        }
        if (this.#live === 0) break;
        const r = Atomics.waitAsync(i32, DEATH_EPOCH_INDEX, epoch);
        if (r.async) await r.value;
      }
    } finally {
      this.#watching = false;
    }
  }

  #noteDeath(w: WorkerHandle, killed: boolean): void {
    if (w.dead) return;
    w.dead = true;
    w.killed = killed;
    this.#live--;
    this.#deadPending.push(w);
    w.taskRing.wakeWriters();
    this.#wake(); // the reader buries it once its result ring is drained
    this.#kick();
  }

  /**
   * Settles the tasks of workers that died; runs with every result ring drained, so every result
   * they sent has been taken. Tasks up to the one each worker started fail; later ones go back
   * to the front of the queue.
   */
  #buryDead(): void {
    const dead = this.#deadPending;
    this.#deadPending = [];
    const again: Task[] = [];
    for (const w of dead) {
      this.#workers.delete(w.wid);
      this.#list = this.#list.filter((x) => x !== w);
      this.#graveyard.push({ block: w.block, at: performance.now() });
      const code = w.proc.exitCode;
      const started = startedOf(w.ctl);
      for (let i = w.head; i < w.fifo.length; i++) {
        const t = w.fifo[i];
        if (t.state !== ASSIGNED) continue;
        if (t.seq <= started) {
          this.#complete(
            t,
            false,
            new BrokenPoolError(
              `pool worker '${w.proc.name}' (pid ${w.proc.pid}) exited with code ${code} ` +
                `while running this task${exitNote(w.proc.pid)}`,
            ),
          );
        } else {
          t.state = QUEUED;
          t.worker = null;
          t.seq = 0;
          again.push(t);
        }
      }
      w.fifo = [];
      w.head = w.skipped = 0;
      // A worker that dies by itself before it is ready (its module or initializer crashes)
      // would be replaced forever: three in a row break the pool. Stopped from outside
      // (terminate()/kill()) is no failure to start.
      if (!w.ready && !w.killed && code !== -15 && code !== -9) this.#startFailures++;
    }
    if (this.#state === TERMINATE || this.#broken) return;
    if (again.length) {
      this.#queue = again.concat(this.#queue.slice(this.#qhead));
      this.#qhead = 0;
    }
    if (this.#startFailures >= MAX_START_FAILURES) {
      return this.#breakPool(
        new BrokenPoolError(
          `pool workers exited before they were ready ${this.#startFailures} times in a row ` +
            `(last: code ${dead[dead.length - 1].proc.exitCode})`,
        ),
      );
    }
    this.#reap();
    this.#dispatch();
    this.#changed();
  }

  /** Frees the blocks of workers dead for a while (a reused block must not meet a dying writer). */
  #reap(): void {
    const now = performance.now();
    while (this.#graveyard.length && now - this.#graveyard[0].at > GRAVE_MS) {
      release(this.#graveyard.shift()!.block);
    }
  }

  #bury(block: number): void {
    this.#graveyard.push({ block, at: performance.now() });
  }

  #changed(): void {
    for (const r of this.#changeWaiters.splice(0)) r();
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers (parent side)

/**
 * The column of result message `b` (a view of shared memory). Valid only while the message is
 * being handled: jobs copy out what they keep.
 */
function readColumn(b: Uint8Array): Float64Array {
  const at = b.byteOffset + RESULT_HEADER, n = (b.length - RESULT_HEADER) >> 3;
  // Ring frames are 4-aligned: read in place when 8-aligned, else from a copy.
  if ((at & 7) === 0) return new Float64Array(b.buffer, at, n);
  return new Float64Array(b.slice(RESULT_HEADER).buffer);
}

const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);

/** The number at byte `at` of `b` (any alignment). */
function readNumber(b: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) F64_BYTES[i] = b[at + i];
  return F64[0];
}

/** Sum of `xs[0..n)`. */
function sum(xs: number[], n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += xs[i];
  return s;
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

function isIterable(x: unknown): x is Iterable<unknown> {
  return x != null && typeof (x as Iterable<unknown>)[Symbol.iterator] === "function";
}

async function collect(it: AsyncIterable<unknown>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const x of it) out.push(x);
  return out;
}

interface AnyIterator {
  next(): IteratorResult<unknown> | Promise<IteratorResult<unknown>>;
  return?(): unknown;
}

function openIterator(x: Iterable<unknown> | AsyncIterable<unknown>): AnyIterator {
  if (isIterable(x)) return x[Symbol.iterator]();
  if (x != null && typeof (x as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function") {
    return (x as AsyncIterable<unknown>)[Symbol.asyncIterator]();
  }
  throw new TypeError("iterable must be an Iterable or an AsyncIterable");
}

/**
 * An error from worker `worker`: same name, message, own fields and (remote) stack. One that had
 * no `cause` gets a `RemoteError` there, as Python chains a `RemoteTraceback`, and keeps its own
 * otherwise. The stack is printed once: it is the error's own, so the `RemoteError` prints as one
 * line naming the worker (its `remoteStack` is still there, just not printed again).
 */
function fromRemote(e: unknown, worker: string): unknown {
  if (!(e instanceof Error)) return e;
  let err = e;
  const path = (e as { path?: unknown }).path;
  if (
    e.name === "SerializationError" && !(e instanceof SerializationError) &&
    typeof path === "string"
  ) {
    err = new SerializationError(path, e.message.slice(path.length + 2));
    err.stack = e.stack;
    if (e.cause !== undefined) err.cause = e.cause;
  }
  if (err.cause !== undefined) return err;
  const remote = new RemoteError(e.name, e.message, e.stack ?? "");
  remote.stack = `RemoteError: raised in pool worker '${worker}' (its stack is the error's own)`;
  Object.defineProperty(err, "cause", {
    value: remote,
    writable: true,
    configurable: true,
    enumerable: false,
  });
  return err;
}
