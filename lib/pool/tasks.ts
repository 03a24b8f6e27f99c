/**
 * The pool's tasks: its queue, dispatch and the writer (CPython's task handler). Submissions go
 * to a pool-level queue; a dispatch pass (once per microtask tick, or every 64 submissions)
 * writes many tasks per ring message.
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
 *   started is written into the worker's cancel slots, which it checks before each task.
 *
 * @module
 */

import { deadlineOf } from "../core/atomics.ts";
import { type Encoder, withHandleModules } from "../core/reduction.ts";
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
import { CLOSE, type PoolState, TERMINATE } from "./state.ts";
import {
  __testHooks,
  APPLY,
  chunkPath,
  CODEC,
  COLUMN,
  type Column,
  DEFINE_HEADER,
  MAP,
  type Mode,
  OP_DEFINE,
  OP_IMPORT,
  OP_PAD,
  OP_STOP,
  OP_TASK,
  putU32,
  skip,
  STARMAP,
  STARTED,
  startedOf,
  TASK_HEADER,
} from "./wire.ts";
import { detachAll } from "./worker.ts";
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
/** A task message is posted once it is this large (a ring frame holds up to half the ring). */
const FLUSH_BYTES = 16 << 10;
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
    if (this.#pool.results.svc < 0) return INITIAL_WINDOW;
    return Math.max(
      MIN_WINDOW,
      Math.min(MAX_WINDOW, Math.ceil(LOOKAHEAD_US / (this.#pool.results.svc + 1))),
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
    const stuckMs = Math.max(replace ? REPLACE_STUCK_US : STUCK_US, 4 * this.#pool.results.svc) /
      1000;
    let victim: WorkerHandle | null = null, most = 0;
    for (const w of this.#workers.list) {
      if (w.dead) continue;
      const started = startedOf(w.ctl), waiting = w.assigned - started;
      // Progress is a change of STARTED while tasks wait (time spent idle does not count).
      if (started !== w.seenStarted || waiting === 0) {
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
      for (let i = w.head; i < w.fifo.length; i++) {
        this.#pool.results.complete(w.fifo[i], false, err);
      }
      w.fifo = [];
      w.head = w.skipped = 0;
    }
  }
}

/**
 * Writes tasks into a worker's ring: one message of up to ~16 KiB ({@link FLUSH_BYTES}) per
 * call, built in a stage and posted at once (`post` copies what it cannot write now).
 */
class TaskWriter {
  readonly #pool: PoolState;
  readonly #tasks: TaskHandler;
  readonly #enc: Encoder;
  #stage = new Uint8Array(FLUSH_BYTES * 2);
  /** The stage as Float64 values (numeric columns are written through it, 8-aligned). */
  #stageF64 = new Float64Array(this.#stage.buffer);

  constructor(pool: PoolState, tasks: TaskHandler, enc: Encoder) {
    this.#pool = pool;
    this.#tasks = tasks;
    this.#enc = enc;
  }

  /** Encodes tasks now (so that their buffers can be detached now). */
  preencode(tasks: Task[], list: ArrayBuffer[]): void {
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

  /** Writes up to `count` queued tasks into `w`'s ring as one message (~16 KiB at most). */
  send(w: WorkerHandle, count: number): number {
    const tasks = this.#tasks;
    let pos = 0, sent = 0;
    let preset: string[] | null = null;
    // One sink for the whole message: which modules register the handle kinds encoded in it.
    const { modules } = withHandleModules(() => {
      while (sent < count && tasks.qhead < tasks.queue.length) {
        const t = tasks.queue[tasks.qhead];
        // A task with a timeout goes only to an idle, ready worker, first in its message: it
        // starts at once, so its clock (started now) counts its running time only.
        if (t.clock !== null && t.state === QUEUED && (w.inflight() > 0 || !w.ready)) break;
        tasks.queue[tasks.qhead++] = undefined as unknown as Task;
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
            this.#pool.results.complete(
              t,
              false,
              t.mode === APPLY ? e : chunkPath(e, t.start, "iterable"),
            );
            if (this.#pool.phase === TERMINATE || w.dead) break;
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
    if (tasks.qhead === tasks.queue.length) {
      tasks.queue.length = 0;
      tasks.qhead = 0;
    } else if (tasks.qhead > 4096 && tasks.qhead * 2 > tasks.queue.length) {
      tasks.queue = tasks.queue.slice(tasks.qhead);
      tasks.qhead = 0;
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
  define(fn: FnInfo): void {
    if (this.#tasks.dispatching) return; // the pass in progress defines it with its tasks
    for (const w of this.#pool.workers.list) {
      if (w.known[fn.id] || w.dead || w.stopped) continue;
      const n = this.#writeDefine(w, 0, fn);
      w.post = w.taskRing.post(this.#stage.subarray(0, n), w.sendOptions);
    }
  }

  /** Tells `w` to exit once it has run what its ring holds. */
  stop(w: WorkerHandle): void {
    this.#stage[0] = OP_STOP;
    w.post = w.taskRing.post(this.#stage.subarray(0, 1), w.sendOptions);
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
}

/** Sum of `xs[0..n)`. */
function sum(xs: number[], n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += xs[i];
  return s;
}
