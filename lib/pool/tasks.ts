/**
 * The pool's tasks: its queue and their dispatch to the workers (CPython's task handler; the
 * writer of the messages is `writer.ts`). Submissions go to a pool-level queue; a dispatch pass
 * (once per microtask tick, or every 64 submissions) writes many tasks per ring message.
 *
 * - **Batching.** How many tasks a worker may hold (its window) follows the measured task
 *   duration: about 2 ms of work ahead, so fast tasks are batched by hundreds while slow ones stay
 *   in the pool's queue for whichever worker frees up first. Each function is resolved to module +
 *   export once (cached by identity) and defined once per worker; a task message then names it
 *   by number.
 * - **The pool knows what each worker holds.** Tasks are numbered per worker in the order they
 *   are written into its ring, and the worker stores the number of the task it starts in a shared
 *   word (`STARTED`) before running it (see wire.ts).
 * - **Work stealing.** When a worker runs dry while another is inside a task with more queued
 *   behind it, the pool takes back every task of that worker that has not started (one
 *   compare-exchange of its `STARTED` word: each task either started or was withdrawn, never
 *   both) and hands them out again; the busy worker gets no more until its task is done. So a
 *   slow or endless task delays only itself. A task with a timeout goes only to an idle worker,
 *   so its clock starts when it starts running.
 * - **Numbers travel raw.** Arguments that are all numbers (a numeric `map`, a call like
 *   `square(i)`) go as Float64 columns read through typed-array views, not through the general
 *   codec; anything else uses the codec (structured-clone fidelity, handles).
 * - **Cancelling.** A queued task is dropped at once. A task already in a worker's ring but not
 *   started is written into the worker's cancel slots, which it checks before each task (a
 *   Dekker-style pair of stores and loads decides who saw whom; see `skip` in wire.ts).
 *
 * @module
 */

import { deadlineOf } from "../core/atomics.ts";
import type { Encoder } from "../core/reduction.ts";
import { TimeoutError, ValueError } from "../core/errors.ts";
import { type AsyncResult, setCleanup, settle, setWork } from "./async_result.ts";
import {
  type AnyIterator,
  ASSIGNED,
  DONE,
  type FnInfo,
  MapJob,
  QUEUED,
  StreamJob,
  Task,
} from "./jobs.ts";
import { CLOSE, type PoolState } from "./state.ts";
import { __testHooks, MAP, type Mode, skip, STARTED, startedOf } from "./wire.ts";
import { TaskWriter } from "./writer.ts";
import type { WorkerHandle, WorkerHandler } from "./workers.ts";

/** A worker is given about this much work ahead (µs), from the measured task duration. */
const LOOKAHEAD_US = 2000;
/**
 * A worker inside one task for this long (µs), or 4 mean task durations if longer, with tasks
 * queued behind it, has those taken back by an idle worker (see TaskHandler.#steal).
 */
const STUCK_US = 2000;
/** The same after close(), when a new worker must start to take them (see TaskHandler.#steal). */
const REPLACE_STUCK_US = 250_000;
/**
 * Bounds of the per-worker window (tasks written to its ring and not yet returned). Tasks of
 * LOOKAHEAD_US or more go one at a time, as in Python's Pool: a second one queued behind a
 * slow task could wait there while another worker is idle.
 */
const MIN_WINDOW = 1, MAX_WINDOW = 1024;
/** The window before any task duration is known: one, so a first slow task stays balanced. */
const INITIAL_WINDOW = 1;
/** While `submit` calls pile up synchronously, dispatch every this many (workers start early). */
const EAGER_DISPATCH = 64;

type Settled = [boolean, unknown];

/** The pool-level queue and its dispatch into the workers' rings. */
export class TaskHandler {
  readonly #pool: PoolState;
  readonly #workers: WorkerHandler;
  readonly #writer: TaskWriter;
  readonly #stats: PoolState["stats"];
  /** Tasks waiting for a worker, from `qhead` on. */
  queue: Task[] = [];
  qhead = 0;
  /** Tasks QUEUED or ASSIGNED. */
  outstanding = 0;
  #flushQueued = false;
  /** A dispatch pass is writing into the stage (user callbacks may run inside it). */
  dispatching = false;
  /** When a steal check is due (a worker may be stuck in a task; see #steal); else Infinity. */
  stealDue = Infinity;

  constructor(pool: PoolState, enc: Encoder) {
    this.#pool = pool;
    this.#workers = pool.workers;
    this.#stats = pool.stats;
    this.#writer = new TaskWriter(pool, this, enc);
  }

  /** Tasks waiting in the queue (some may be cancelled). */
  queued(): number {
    return this.queue.length - this.qhead;
  }

  /** Defines `fn` in the workers now, unless the first one knows it (see TaskWriter.define). */
  define(fn: FnInfo): void {
    if (!this.#known(fn)) this.#writer.define(fn);
  }

  /** Encodes tasks now (so that their buffers can be detached now). */
  preencode(tasks: Task[], list: ArrayBuffer[]): void {
    this.#writer.preencode(tasks, list);
  }

  /** Puts tasks taken back from a worker at the front of the queue, in order. */
  requeue(back: Task[]): void {
    this.queue = back.concat(this.queue.slice(this.qhead));
    this.qhead = 0;
  }

  /** Whether the first worker knows `fn` (the cheap test before `define`). */
  #known(fn: FnInfo): boolean {
    const w = this.#workers.list[0];
    return w === undefined || w.known[fn.id] === true;
  }

  /** Queues `t` for the next dispatch pass (at once every {@link EAGER_DISPATCH} tasks). */
  submit(t: Task): void {
    if (this.#pool.over()) {
      t.state = DONE;
      this.#pool.results.settleJob(
        t,
        false,
        this.#pool.broken ?? new ValueError("Pool not running"),
      );
      return;
    }
    t.at = this.#stats.stamp();
    this.queue.push(t);
    this.outstanding++;
    if ((this.queue.length - this.qhead) % EAGER_DISPATCH === 0) this.dispatch();
    else this.schedule();
  }

  readonly #flush = (): void => {
    this.#flushQueued = false;
    this.dispatch();
  };

  /**
   * Wires `signal` and `timeout` to a job. False when the signal has already fired (the job is
   * then settled and must not be submitted).
   */
  arm<T>(
    result: AsyncResult<T>,
    tasks: Task[],
    o: { signal?: AbortSignal; timeout?: number },
  ): boolean {
    const { signal, timeout } = o;
    if (timeout !== undefined) deadlineOf(timeout); // validates
    if (signal?.aborted) {
      for (const t of tasks) t.state = DONE;
      settle(result, false, signal.reason);
      return false;
    }
    const abort = (reason: unknown) => {
      settle(result, false, reason); // at once, whatever the tasks are doing
      for (const t of tasks) this.cancel(t, true);
      this.dispatch();
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

  startMap(
    r: AsyncResult<unknown[]>,
    info: FnInfo,
    mode: Mode,
    items: unknown[],
    o: { chunksize?: number; transfer?: ArrayBuffer[]; signal?: AbortSignal; timeout?: number },
  ): void {
    const n = items.length;
    if (n === 0) return settle(r, true, []);
    this.define(info);
    const cs = o.chunksize ?? Math.ceil(n / (4 * this.#pool.processes));
    const job = new MapJob(r, n);
    for (let s = 0; s < n; s += cs) {
      // A range of the input, not a copy: a numeric chunk is written from it straight into the
      // message.
      job.tasks.push(new Task(job, info, mode, items, s, Math.min(cs, n - s), s));
    }
    job.left = job.tasks.length;
    setWork(r, this, job.tasks.length === 1 ? job.tasks[0] : job.tasks);
    try {
      if (o.transfer) this.#writer.preencode(job.tasks, o.transfer);
    } catch (e) {
      return settle(r, false, e);
    }
    if ((o.signal || o.timeout !== undefined) && !this.arm(r, job.tasks, o)) return;
    for (const t of job.tasks) this.submit(t);
  }

  async *iterate(
    info: FnInfo,
    src: AnyIterator,
    cs: number,
    limit: number,
    ordered: boolean,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<unknown, void, undefined> {
    const job = new StreamJob(ordered);
    signal?.throwIfAborted();
    this.define(info);
    let fed = 0, taken = 0, next = 0, exhausted = false, srcFailed = false;
    let srcError: unknown = undefined;
    const onAbort = () => {
      job.aborted = true;
      job.reason = signal!.reason;
      for (const t of job.live.values()) this.cancel(t, true);
      job.poke();
      this.dispatch();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#pool.streams++;
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
            this.submit(t);
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
      for (const t of job.live.values()) this.cancel(t, false);
      this.#pool.streams--;
      if (!exhausted) await src.return?.();
      this.dispatch();
    }
  }

  #window(): number {
    if (this.#pool.results.meanTaskUs < 0) return INITIAL_WINDOW;
    return Math.max(
      MIN_WINDOW,
      Math.min(MAX_WINDOW, Math.ceil(LOOKAHEAD_US / (this.#pool.results.meanTaskUs + 1))),
    );
  }

  /** How many tasks `w` may be given now (0 until it has worked off half its window). */
  #room(w: WorkerHandle, win: number): number {
    if (w.dead || w.stopped || (w.suspect && w.inflight() > 0)) return 0;
    const inflight = w.inflight();
    if (inflight > win >> 1) return 0;
    let room = win - inflight;
    if (this.#pool.maxTasks) room = Math.min(room, this.#pool.maxTasks - w.assigned);
    return room;
  }

  /** Hands queued tasks out now (see the module doc); again later if a pass is running. */
  dispatch(): void {
    if (this.#pool.over()) return;
    if (this.dispatching) {
      // Re-entered from a user callback (a task that failed to encode settles inside a pass):
      // the stage holds a message in the making, so run again once this pass is over.
      return this.schedule();
    }
    this.dispatching = true;
    try {
      this.#dispatchPass();
    } finally {
      this.dispatching = false;
    }
    this.#pool.results.kick();
  }

  /** Dispatches once this microtask tick is over. */
  schedule(): void {
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#flush);
    }
  }

  #dispatchPass(): void {
    // Cancelled tasks at the head go now (they must not hold off STOP or start workers).
    while (this.qhead < this.queue.length && this.queue[this.qhead].state !== QUEUED) {
      this.queue[this.qhead++] = undefined as unknown as Task;
    }
    // Start replacements, hand the queue out; then, while it is empty and a worker is idle,
    // take back the tasks that have not started from a stuck worker and hand those out.
    do {
      this.#workers.replenish();
      this.#handOut();
    } while (this.qhead === this.queue.length && this.#steal());
    if (this.#pool.over()) return;
    if (
      this.#pool.phase === CLOSE && this.qhead === this.queue.length && this.#pool.streams === 0
    ) {
      // Closed and nothing left to hand out: each worker exits after what its ring holds. (Tasks
      // stuck behind a slow one are still taken back then: a new worker starts for them.)
      for (const w of this.#workers.byId.values()) {
        if (w.dead || w.stopped) continue;
        w.stopped = true;
        this.#writer.stop(w);
      }
    }
  }

  /** Writes queued tasks into the rings of the workers with room. */
  #handOut(): void {
    const queued = this.queue.length - this.qhead;
    if (queued === 0) return;
    // Each worker with room gets an even share, so that a few big chunks do not all go to the
    // first one, handed out in rounds of one message (~16 KiB) each: every worker starts on
    // its first message while the next ones are being encoded.
    const win = this.#window();
    const open: WorkerHandle[] = [], quota: number[] = [];
    for (const w of this.#workers.byId.values()) {
      const room = this.#room(w, win);
      if (room > 0) open.push(w), quota.push(room);
    }
    for (let i = 0; i < open.length; i++) {
      quota[i] = Math.min(quota[i], Math.ceil((queued - sum(quota, i)) / (open.length - i)));
    }
    for (let busy = true; busy && this.qhead < this.queue.length;) {
      busy = false;
      for (let i = 0; i < open.length; i++) {
        if (quota[i] <= 0 || open[i].dead) continue;
        const sent = this.#writer.send(open[i], quota[i]);
        // Nothing sent: the next task has a timeout and this worker is not idle.
        quota[i] = sent > 0 ? quota[i] - sent : 0;
        if (this.#pool.over()) return;
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
    if (this.#pool.over() || this.#pool.isolated) return false;
    const win = this.#window();
    const idle = this.#workers.list.some((w) =>
      w.ready && w.inflight() === 0 && this.#room(w, win) > 0
    );
    // After close(), idle workers have stopped: a new one would start for the tasks taken back,
    // which is worth it only for a worker stuck far longer than a start takes.
    const replace = !idle && this.#pool.phase === CLOSE &&
      this.#workers.live < this.#pool.processes;
    if (!idle && !replace) return false;
    const now = performance.now();
    const stuckMs =
      Math.max(replace ? REPLACE_STUCK_US : STUCK_US, 4 * this.#pool.results.meanTaskUs) /
      1000;
    let victim: WorkerHandle | null = null, most = 0;
    for (const w of this.#workers.list) {
      if (w.dead) continue;
      const started = startedOf(w.ctl), waiting = w.assigned - started;
      // Progress is a change of STARTED while tasks wait (time spent idle does not count), and
      // a ready worker between tasks (none it holds begun or running) is not stuck either: it is
      // about to take them itself, a wake-up or a time slice away on a loaded machine (or in a
      // module import). Taking them would only move that wait to the idle worker, which must be
      // woken too, or hand them back to the same worker (it has room again, not `suspect`), a
      // new message and wake-up each time: W5-pool-map had ~0.7 such steals a map, now ~0.03.
      const between = w.ready && w.inflight() <= waiting;
      if (started !== w.seenStarted || waiting === 0 || between) {
        w.seenStarted = waiting === 0 ? -1 : started;
        w.seenAt = now;
      }
      if (waiting === 0) continue;
      if (now - w.seenAt < stuckMs) {
        this.stealDue = Math.min(this.stealDue, w.seenAt + stuckMs);
        continue;
      }
      if (waiting > most) most = waiting, victim = w;
    }
    if (victim === null) return false;
    const back = this.#recall(victim);
    if (back.length === 0) return false;
    __testHooks.steals++;
    victim.suspect = victim.inflight() > 0;
    this.requeue(back);
    return true;
  }

  /**
   * Takes back the tasks of `w` that have not started: one compare-exchange of its STARTED word
   * to `-last` (see STARTED), which the worker meets before its next task and then skips the
   * tasks up to `last`. Returns them, in order, ready to be queued again.
   */
  #recall(w: WorkerHandle): Task[] {
    // (Not from a worker that is an OS process: its tasks are in another heap; see os_pool.ts.)
    if (this.#pool.isolated) return [];
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
    while (w.fifo.length > 0) {
      const t = w.fifo.at(w.fifo.length - 1)!;
      if (t.seq <= begun) break;
      w.fifo.pop();
      if (t.skipped) w.skipped--;
      if (t.state !== ASSIGNED) continue; // cancelled meanwhile
      t.state = QUEUED;
      t.worker = null;
      t.seq = 0;
      back.push(t);
    }
    return back.reverse();
  }

  /**
   * Withdraws a task that is not done. Queued: dropped. In a worker's ring: skipped by the worker.
   * Running: left to finish (its result is dropped), or with `kill` its worker is terminated.
   */
  cancel(t: Task, kill: boolean): void {
    if (t.state === DONE) return;
    const was = t.state;
    t.state = DONE;
    this.outstanding--;
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
      this.#workers.noteDeath(w, true);
    }
  }

  /**
   * `AsyncResult.cancel()`: withdraws `t` if it has not started (see cancel) and marks it done;
   * false once it has started (it runs on) or is done.
   */
  withdraw(t: Task): boolean {
    if (t.state === ASSIGNED) {
      // (Its worker may be dead and not yet buried: the same tests tell whether it had begun
      // the task, which then fails with BrokenPoolError, or not, and then it is not queued again.)
      const w = t.worker!;
      if (skip(w.ctl, t.seq)) {
        t.skipped = true;
        w.skipped++;
        __testHooks.skips++;
      } else if (startedOf(w.ctl) >= t.seq || this.dispatching) return false;
      else {
        // Every cancel slot is taken (many cancels at once): take back all the worker has not
        // begun, as a steal does (no limit), and drop `t` from the queue. Not while a dispatch
        // pass writes a message (a callback run inside it): that message is not in the ring yet.
        const back = this.#recall(w);
        if (back.length) {
          this.requeue(back);
          this.schedule(); // to hand them out again
        }
        if (!back.includes(t)) return false; // it began first
      }
    } else if (t.state !== QUEUED) return false;
    t.state = DONE;
    this.outstanding--;
    // Room freed in a worker's window; after close(), maybe nothing left before STOP.
    this.schedule();
    return true;
  }

  failAll(err: Error): void {
    for (let i = this.qhead; i < this.queue.length; i++) {
      const t = this.queue[i];
      if (t && t.state !== DONE) this.#pool.results.complete(t, false, err);
    }
    this.queue = [];
    this.qhead = 0;
    for (const w of this.#workers.byId.values()) {
      for (const t of w.fifo) this.#pool.results.complete(t, false, err);
      w.fifo.clear();
      w.skipped = 0;
    }
  }
}

/** Sum of `xs[0..n)`. */
function sum(xs: number[], n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += xs[i];
  return s;
}
