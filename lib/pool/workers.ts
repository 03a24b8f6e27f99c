/**
 * The pool's workers: start, watch, replace (CPython's worker handler). Each worker is a daemonic
 * {@link Process} whose target is `poolWorker` (`worker.ts`): one mechanism for start-up, crash
 * detection and replacement, shared with every other child. A death anywhere bumps the heap's
 * death counter; the pool subscribes to the death watcher that waits on it (_deaths, without
 * keeping the program alive) and notices its own workers' deaths at once. Once the dead worker's
 * result ring is drained, its tasks are settled: those up to its `STARTED` word were running (they
 * fail with `BrokenPoolError`), the later ones never started (they are queued again for another
 * worker). Nothing is lost, nothing runs twice, nothing waits forever.
 *
 * @module
 */

import { Deque } from "../core/deque.ts";
import { subscribe } from "../core/deaths.ts";
import { alloc, heap, release } from "../core/heap.ts";
import { Ring, type SendOptions, type SendStatus } from "../core/ring.ts";
import { BrokenPoolError } from "../core/errors.ts";
import { Process } from "../process/process.ts";
import { exitNote } from "./os_pool.ts";
import { ASSIGNED, QUEUED, type Task } from "./jobs.ts";
import { CLOSE, type PoolState, RUN, TERMINATE } from "./state.ts";
import { CTL_BYTES, RESULT_RING_BYTES, startedOf, TASK_RING_BYTES, WORKER_BLOCK } from "./wire.ts";
import { poolWorker, type WorkerConfig } from "./worker.ts";

/** The module of `poolWorker`, which each worker imports. */
const WORKER_MODULE = new URL("./worker.ts", import.meta.url).href;
/** Workers that die before they are ready this many times in a row break the pool. */
const MAX_START_FAILURES = 3;
/** A dead worker's block is reused only after this long (a terminated isolate stops within µs). */
const GRAVE_MS = 50;

let widCounter = 0;

/** A pool worker as the parent sees it: its process, its rings and the tasks it holds. */
export class WorkerHandle {
  readonly ctl: Int32Array;
  readonly taskRing: Ring;
  /** Tasks written to its ring, in order (settled ones may linger). */
  readonly fifo = new Deque<Task>();
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
    return this.fifo.length - this.skipped;
  }
}

/** Starts a pool's workers, notes their deaths, buries them and starts replacements. */
export class WorkerHandler {
  readonly #pool: PoolState;
  /** The doorbell's heap block (each worker rings it after a result). */
  readonly #bellBlock: number;
  readonly byId: Map<number, WorkerHandle> = new Map();
  /** The same workers in an array (the reader walks it on every wake-up). */
  list: WorkerHandle[] = [];
  /** Workers started and not dead. */
  live = 0;
  #startFailures = 0;
  /** Dead workers whose tasks are settled once their result rings are drained (see buryDead). */
  deadPending: WorkerHandle[] = [];
  #graveyard: { block: number; at: number }[] = [];
  #watching = false;

  constructor(pool: PoolState, bellBlock: number) {
    this.#pool = pool;
    this.#bellBlock = bellBlock;
  }

  /** Starts one worker. */
  spawn(): void {
    const pool = this.#pool;
    const block = alloc(WORKER_BLOCK);
    Ring.init(block + CTL_BYTES, TASK_RING_BYTES);
    Ring.init(block + CTL_BYTES + TASK_RING_BYTES, RESULT_RING_BYTES);
    const wid = ++widCounter;
    const config: WorkerConfig = {
      wid,
      block,
      bell: this.#bellBlock,
      initializer: pool.initializer,
      initargs: pool.initargs,
      preload: pool.preload,
      maxTasks: pool.maxTasks,
    };
    const proc = new Process<[WorkerConfig]>({
      target: poolWorker,
      module: WORKER_MODULE,
      args: [config],
      daemon: true,
      name: `PoolWorker-${wid}`,
      ...pool.isolated,
    });
    try {
      proc.start();
    } catch (e) {
      release(block);
      throw e;
    }
    const handle = new WorkerHandle(wid, block, proc);
    this.byId.set(wid, handle);
    this.list.push(handle);
    this.live++;
    this.#watch();
  }

  /** Starts replacements for workers that died or retired, as long as there is work for them. */
  replenish(): void {
    const pool = this.#pool;
    const want = pool.phase === RUN ||
      (pool.phase === CLOSE && (pool.tasks.queued() > 0 || pool.streams > 0));
    if (!want || this.live >= pool.processes || this.deadPending.length > 0) return;
    try {
      while (this.live < pool.processes) this.spawn();
    } catch (e) {
      pool.breakPool(new BrokenPoolError("a pool worker could not be started", { cause: e }));
    }
  }

  /**
   * Subscribes {@link #scan} to the death watcher (_deaths), which waits on the heap's death
   * counter (bumped by every process death) without keeping the program alive.
   */
  #watch(): void {
    if (this.#watching) return;
    this.#watching = true;
    subscribe(this.#scan);
  }

  /** Notes the deaths of this pool's workers, as long as the pool runs and has live workers. */
  readonly #scan = (): number | false => {
    if (this.#pool.phase === TERMINATE || this.live === 0) return (this.#watching = false);
    for (const w of this.byId.values()) {
      if (!w.dead && w.proc.exitCode !== null) this.noteDeath(w, false);
    }
    return this.live === 0 ? (this.#watching = false) : Infinity;
  };

  /** `w` died (or was terminated by the pool: `killed`); the reader buries it. */
  noteDeath(w: WorkerHandle, killed: boolean): void {
    if (w.dead) return;
    w.dead = true;
    w.killed = killed;
    this.live--;
    this.deadPending.push(w);
    w.taskRing.wakeWriters();
    const results = this.#pool.results;
    results.wake(); // the reader buries it once its result ring is drained
    results.kick();
  }

  /**
   * Settles the tasks of workers that died; runs with every result ring drained, so every result
   * they sent has been taken. Tasks up to the one each worker started fail; later ones go back
   * to the front of the queue.
   */
  buryDead(): void {
    const pool = this.#pool;
    const dead = this.deadPending;
    this.deadPending = [];
    const again: Task[] = [];
    for (const w of dead) {
      this.byId.delete(w.wid);
      this.list = this.list.filter((x) => x !== w);
      this.#graveyard.push({ block: w.block, at: performance.now() });
      const code = w.proc.exitCode;
      const started = startedOf(w.ctl);
      for (const t of w.fifo) {
        if (t.state !== ASSIGNED) continue;
        if (t.seq <= started) {
          pool.results.complete(
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
      w.fifo.clear();
      w.skipped = 0;
      // A worker that dies by itself before it is ready (its module or initializer crashes)
      // would be replaced forever: three in a row break the pool. Stopped from outside
      // (terminate()/kill()) is no failure to start.
      if (!w.ready && !w.killed && code !== -15 && code !== -9) this.#startFailures++;
    }
    if (pool.over()) return;
    if (again.length) pool.tasks.requeue(again);
    if (this.#startFailures >= MAX_START_FAILURES) {
      return pool.breakPool(
        new BrokenPoolError(
          `pool workers exited before they were ready ${this.#startFailures} times in a row ` +
            `(last: code ${dead[dead.length - 1].proc.exitCode})`,
        ),
      );
    }
    this.reap();
    pool.tasks.dispatch();
    pool.changed();
  }

  /** A worker is ready: a failure to start no longer counts. */
  started(): void {
    this.#startFailures = 0;
    this.reap();
  }

  /** Frees the blocks of workers dead for a while (a reused block must not meet a dying writer). */
  reap(): void {
    const now = performance.now();
    while (this.#graveyard.length && now - this.#graveyard[0].at > GRAVE_MS) {
      release(this.#graveyard.shift()!.block);
    }
  }

  /** Stops every worker at once (`terminate()`). */
  terminate(): void {
    for (const w of this.byId.values()) {
      if (!w.dead) {
        w.dead = w.killed = true;
        w.proc.terminate();
      }
      w.taskRing.wakeWriters(); // its pending posts see `broken` now rather than in 100 ms
    }
    this.live = 0;
    this.deadPending = [];
  }

  /**
   * After every worker has exited (`join()`): waits for the posts into their rings to give up
   * (see WorkerHandle.sendOptions), then passes every block to `adopt`, to be freed with the
   * pool object (the blocks of workers that died a moment ago must not meet a dying writer yet;
   * see reap).
   */
  async release(adopt: (block: number) => void): Promise<void> {
    await Promise.all([...this.byId.values()].map((w) => w.post));
    for (const w of this.byId.values()) adopt(w.block);
    for (const g of this.#graveyard) adopt(g.block);
    this.byId.clear();
    this.list = [];
    this.#graveyard = [];
  }
}
