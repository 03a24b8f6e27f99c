/**
 * The pool's results: the reader (CPython's result handler). Each worker writes one message per
 * task into its own result ring, before it starts the next task, then bumps the pool's
 * {@link Doorbell}, a shared counter the reader sleeps on when every ring is empty (a worker pays
 * `Atomics.notify` only when the reader says it sleeps). A result too large for one frame may
 * begin only later (no room yet, the worker's background writer publishes it): the bell is rung
 * when its first frame is published, never before, so the reader is not woken for a result not
 * yet there.
 *
 * Waiting costs nothing: the reader spins briefly, then sleeps in `Atomics.waitAsync`. An idle
 * pool has no reader running and burns no CPU; only pending tasks keep the program alive.
 * Results that are all numbers come back as Float64 columns, read through typed-array views.
 *
 * @module
 */

import { keepAlive, LIVENESS_SLICE_MS } from "../core/atomics.ts";
import { TIMEOUT } from "../core/ring.ts";
import { BrokenPoolError, RemoteError, SerializationError } from "../core/errors.ts";
import { Decoder } from "../core/reduction.ts";
import { AsyncResult, settle } from "./async_result.ts";
import { ASSIGNED, DONE, MapJob, type Task } from "./jobs.ts";
import { CLOSE, type PoolState, TERMINATE } from "./state.ts";
import type { TaskHandler } from "./tasks.ts";
import {
  __testHooks,
  APPLY,
  describe,
  Doorbell,
  R_COLUMN,
  R_ERR,
  R_INIT_FAILED,
  R_OK,
  R_READY,
  RESULT_HEADER,
  u32,
} from "./wire.ts";
import type { WorkerHandle, WorkerHandler } from "./workers.ts";

/** Loads of the doorbell before the parent sleeps (~1-5 µs: a busy worker's next result). */
const BELL_SPIN = 1000;
/**
 * The parent's doorbell sleep ends after this long even without a ring (ms). A backstop only:
 * every result is rung for, and `__testHooks.lateWakeups` counts the times it was needed.
 */
const BELL_SLICE_MS = LIVENESS_SLICE_MS;

/** Reads the workers' result rings and settles the tasks. */
export class ResultHandler {
  readonly #pool: PoolState;
  readonly #workers: WorkerHandler;
  readonly #tasks: TaskHandler;
  readonly #stats: PoolState["stats"];
  readonly #bell: Doorbell;
  readonly #dec = new Decoder();
  /** The worker whose result ring `#onMessage` is reading. */
  #from: WorkerHandle | null = null;
  /** The reader is running (`join()` waits for it to stop). */
  reading = false;
  /** Mean task duration (µs, moving average), -1 until known. */
  meanTaskUs = -1;

  /** The reader of `pool`, woken by the doorbell at heap block `bellBlock`. */
  constructor(pool: PoolState, bellBlock: number) {
    this.#pool = pool;
    this.#workers = pool.workers;
    this.#tasks = pool.tasks;
    this.#stats = pool.stats;
    this.#bell = new Doorbell(bellBlock);
  }

  #needReader(): boolean {
    if (this.#pool.phase === TERMINATE) return false;
    return this.#tasks.outstanding > 0 || this.#workers.deadPending.length > 0 ||
      this.#pool.readyWaiters.length > 0 || (this.#pool.phase === CLOSE && this.#workers.live > 0);
  }

  /** Starts the reader if there is anything to read or wait for. */
  kick(): void {
    if (!this.reading && this.#needReader()) {
      this.reading = true;
      // One keep-alive for the whole reading session (not one per sleep): pending tasks keep
      // the program alive, an idle pool does not.
      void keepAlive(this.#readLoop());
    }
  }

  /** Wakes the reader (from this thread: a death, terminate()). */
  wake(): void {
    this.#bell.ring();
  }

  async #readLoop(): Promise<void> {
    const bell = this.#bell;
    /** The last sleep ended by its time limit: results found now were not rung for. */
    let late = false;
    try {
      for (;;) {
        const seen = bell.count();
        // Read without yielding, and hand out more tasks before anything else runs: a result
        // settles a future whose `asCompleted` loop runs in microtasks, and an `await` here let
        // a layer of those run before the workers' rings were topped up.
        if (this.#drainNow() + (this.#streamed ? await this.#drainStreamed() : 0)) {
          if (late) __testHooks.lateWakeups++;
          late = false;
          this.#tasks.dispatch();
          await null; // then the settled results' microtasks run (an endless stream must not starve them)
          continue;
        }
        late = false;
        // Every ring is empty: whatever a dead worker sent has been read.
        if (this.#workers.deadPending.length > 0) {
          this.#workers.buryDead();
          continue;
        }
        if (!this.#needReader()) return;
        if (bell.spin(seen, BELL_SPIN)) continue; // a result is likely near
        // The sleep ends by the backstop, or when a steal check is due.
        const ms = Math.min(BELL_SLICE_MS, Math.max(0, this.#tasks.stealDue - performance.now()));
        if ((await bell.sleep(seen, ms)) === "timed-out") {
          late = ms === BELL_SLICE_MS;
          if (performance.now() >= this.#tasks.stealDue) {
            this.#tasks.stealDue = Infinity;
            this.#tasks.dispatch(); // a worker may be stuck in a task: see #steal
          }
        }
      }
    } catch (e) {
      // A bug, not a condition: fail everything rather than leave anybody waiting.
      this.#pool.breakPool(new BrokenPoolError("the pool's result reader failed", { cause: e }));
    } finally {
      this.reading = false;
      this.#from = null;
      this.#pool.changed();
      this.kick();
    }
  }

  /** A result ring holds a message too large for one frame (see {@link #drainStreamed}). */
  #streamed = false;

  /** Reads every one-frame message in every worker's result ring, without yielding; the number. */
  #drainNow(): number {
    let n = 0;
    for (const w of this.#workers.list) {
      const ring = w.resultRing;
      for (;;) {
        this.#from = w; // again for each: a callback may have used the pool in between
        if (ring.tryRecv(this.#onMessage) === TIMEOUT) break;
        n++;
      }
      if (!ring.empty()) this.#streamed = true;
    }
    return n;
  }

  /**
   * Reads the message that stopped {@link #drainNow} in each ring, too large for one frame and
   * streamed: whole (its writer is still writing it, or died and it is discarded). The
   * one-frame messages behind it are the next {@link #drainNow}'s.
   */
  async #drainStreamed(): Promise<number> {
    this.#streamed = false;
    let n = 0;
    for (const w of this.#workers.list) {
      if (w.resultRing.empty()) continue;
      this.#from = w;
      if ((await w.resultRing.recv(this.#onMessage, { timeout: 0 })) !== TIMEOUT) n++;
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
      this.meanTaskUs = this.meanTaskUs < 0 ? us : this.meanTaskUs * 0.9 + us * 0.1;
      let t = w.fifo.at(0);
      // Tasks before it were cancelled and skipped by the worker.
      while (t !== undefined && t.seq < seq) {
        if (t.skipped) w.skipped--;
        w.fifo.shift();
        t = w.fifo.at(0);
      }
      if (t === undefined || t.seq !== seq) return true;
      this.#stats.timed(us, t.at);
      w.fifo.shift();
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
      this.complete(t, ok, ok ? value : fromRemote(value, w.proc.name));
    } else if (kind === R_READY) {
      w.ready = true;
      this.#workers.started();
      if (this.#pool.allReady()) { for (const r of this.#pool.readyWaiters.splice(0)) r.resolve(); }
    } else if (kind === R_INIT_FAILED) {
      let cause: unknown;
      try {
        cause = fromRemote(this.#dec.decode(b.subarray(RESULT_HEADER)), w.proc.name);
      } catch (e) {
        cause = e;
      }
      const what = u32(b, 4) === 1 ? "preload import" : "initializer";
      this.#pool.breakPool(
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

  /** Records the outcome of `t` and passes it to its job. */
  complete(t: Task, ok: boolean, v: unknown): void {
    if (t.state === DONE) return;
    t.state = DONE;
    this.#tasks.outstanding--;
    this.#stats.count(t.mode === APPLY ? 1 : t.count, ok);
    this.settleJob(t, ok, v);
  }

  /** Passes the outcome of `t` to its job. */
  settleJob(t: Task, ok: boolean, v: unknown): void {
    const job = t.job;
    if (job instanceof AsyncResult) settle(job, ok, v);
    else if (job instanceof MapJob) {
      if (ok) {
        job.put(t.start, v as ArrayLike<unknown>);
        if (--job.left === 0) settle(job.result, true, job.out);
      } else {
        settle(job.result, false, v);
        for (const other of job.tasks) this.#tasks.cancel(other, false);
      }
    } else job.settle(t, ok, v);
  }
}

/**
 * The column of result message `b` (a view of shared memory, or of {@link scratch}). Valid only
 * while the message is being handled: jobs copy out what they keep.
 */
function readColumn(b: Uint8Array): Float64Array {
  const at = b.byteOffset + RESULT_HEADER, n = (b.length - RESULT_HEADER) >> 3;
  // Ring frames are 4-aligned: read in place when 8-aligned, else from a copy.
  if ((at & 7) === 0) return new Float64Array(b.buffer, at, n);
  if (scratch.length < n) scratch = new Float64Array(Math.max(n, scratch.length * 2));
  new Uint8Array(scratch.buffer, 0, n << 3).set(
    b.subarray(RESULT_HEADER, RESULT_HEADER + (n << 3)),
  );
  return scratch.subarray(0, n);
}

/**
 * Where an unaligned column is copied, kept from one message to the next: a new buffer per
 * message (half of them, as a frame falls) cost the parent of W5's first map ~0.17 ms of its
 * ~0.4 ms of reading columns (8 chunks of 12,500 results; 21 fresh pools, 3 runs).
 */
let scratch = new Float64Array(0);

const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);

/** The number at byte `at` of `b` (any alignment). */
function readNumber(b: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) F64_BYTES[i] = b[at + i];
  return F64[0];
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
