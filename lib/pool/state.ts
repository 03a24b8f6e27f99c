/**
 * What the pool's three handlers share: its lifecycle (running, closed, terminated, broken), its
 * settings, its counters, and the handlers themselves. CPython's `Pool` passes its handler threads
 * the pool object itself; here `Pool` is the public façade, and this is the object its
 * {@link WorkerHandler} (start, watch, replace), {@link TaskHandler} (queue, dispatch, writer)
 * and {@link ResultHandler} (reader) are given instead, so that none of them reaches into the
 * façade and the façade's API stays what users see.
 *
 * @module
 */

import { kick as kickDeaths } from "../core/deaths.ts";
import { BrokenPoolError, ValueError } from "../core/errors.ts";
import type { TargetRef } from "../core/target.ts";
import type { IsolationOptions } from "../process/process.ts";
import { PoolStats } from "./stats.ts";
import type { ResultHandler } from "./results.ts";
import type { TaskHandler } from "./tasks.ts";
import type { WorkerHandler } from "./workers.ts";

/** The phases of a pool, as in Python (`RUN`, `CLOSE`, `TERMINATE`). */
export const RUN = 0, CLOSE = 1, TERMINATE = 2;

/** A pool's shared state (see the module doc). */
export class PoolState {
  phase = RUN;
  /** Set when the pool cannot work any more (an initializer failed): every call throws it. */
  broken: Error | null = null;
  /** Active imap iterations (workers are not stopped while one may still submit). */
  streams = 0;
  /** Counters and latencies, for snapshot(). */
  readonly stats: PoolStats = new PoolStats();
  readyWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  changeWaiters: (() => void)[] = [];

  workers!: WorkerHandler;
  tasks!: TaskHandler;
  results!: ResultHandler;

  constructor(
    readonly processes: number,
    /** A worker is replaced after this many tasks (0: never). */
    readonly maxTasks: number,
    readonly initializer: TargetRef | null,
    readonly initargs: unknown[],
    readonly preload: string[],
    /** Isolation "process": what each worker's `Process` is given (see os_pool.ts). */
    readonly isolated: IsolationOptions | undefined,
  ) {}

  /** Terminated or broken: nothing is dispatched any more. */
  over(): boolean {
    return this.phase === TERMINATE || this.broken !== null;
  }

  /** Throws unless the pool accepts tasks. */
  checkRunning(): void {
    if (this.broken) throw this.broken;
    if (this.phase !== RUN) throw new ValueError("Pool not running");
  }

  /** Every worker is ready (and, while running, all of them are started). */
  allReady(): boolean {
    if (this.workers.live < this.processes && this.phase === RUN) return false;
    for (const w of this.workers.byId.values()) if (!w.dead && !w.ready) return false;
    return true;
  }

  /** Stops every worker at once (`Pool.terminate`): tasks not done fail with the reason. */
  terminate(): void {
    if (this.phase === TERMINATE) return;
    this.phase = TERMINATE;
    this.workers.terminate();
    const err = this.broken ??
      new BrokenPoolError("the pool was terminated before this task completed");
    this.tasks.failAll(err);
    for (const r of this.readyWaiters.splice(0)) r.reject(err);
    this.results.wake(); // the reader sees it has nothing left to do
    kickDeaths(); // and so does the death watcher
    this.changed();
  }

  /** The pool cannot work any more (an initializer failed): fail everything, stop the workers. */
  breakPool(err: Error): void {
    if (this.broken || this.phase === TERMINATE) return;
    this.broken = err;
    this.terminate();
  }

  /**
   * What `snapshot().pools` shows of the pool named `name`; null once it is gone (terminated,
   * or closed with nothing left to do, and its workers gone).
   */
  describe(name: string): Record<string, unknown> | null {
    const workers = this.workers.list.filter((w) => !w.dead).map((w) => {
      const t = w.fifo.length - w.skipped > 0 ? w.fifo.at(0) : undefined;
      return { name: w.proc.name, busy: t !== undefined, task: t ? t.fn.ref.name : "" };
    });
    // Gone: terminated, or closed with nothing left to do.
    if (this.phase === TERMINATE || (this.phase === CLOSE && this.tasks.outstanding === 0)) {
      if (!workers.length) return null;
    }
    const busy = workers.filter((w) => w.busy).length;
    return {
      name,
      state: this.broken ? "broken" : ["running", "closed", "terminated"][this.phase],
      processes: this.processes,
      workers,
      queued: Math.max(0, this.tasks.outstanding - busy),
      running: busy,
      completed: this.stats.completed,
      failed: this.stats.failed,
      utilization: this.stats.utilization(workers.length, busy),
      ...this.stats.latencies(),
    };
  }

  /** Wakes `join()` (a worker exited, the reader stopped). */
  changed(): void {
    for (const r of this.changeWaiters.splice(0)) r();
  }
}
