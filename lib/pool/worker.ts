/**
 * The worker side of `Pool`: the body of a pool worker (`poolWorker`, the target of its
 * `Process`), its task loop and its result writer, and `transfer` for task results. As piscina
 * keeps `worker.ts`, this is all a worker imports of the pool: it runs the initializer, then the
 * tasks of its ring one at a time, in ring order, and writes each result into its result ring
 * before it starts the next task, then rings the pool's doorbell (see `wire.ts`). That order is
 * what lets the parent tell, after a death, the task that was running from those not begun.
 * With its ring empty it spins briefly, then sleeps in `Atomics.waitAsync` (so its own timers and
 * channel pumps keep running).
 *
 * @module
 */

import { Yielder } from "../core/yield.ts";
import { loadTimers } from "../core/atomics.ts";
import { setBootstrapping } from "../core/context.ts";
import { heap, isAlive, SLOT_ALIVE, slotStateIndex } from "../core/heap.ts";
import { Ring, TIMEOUT } from "../core/ring.ts";
import { SystemExit } from "../core/child.ts";
import type { TargetRef } from "../core/target.ts";
import { ProcessError } from "../core/errors.ts";
import { Decoder, type EncodeOptions, Encoder } from "../core/reduction.ts";
import {
  APPLY,
  CANCEL,
  CANCEL_HINT,
  CANCEL_SLOTS,
  cancelled,
  chunkPath,
  CODEC,
  type Column,
  CTL_BYTES,
  DEFINE_HEADER,
  describe,
  Doorbell,
  LIST,
  MAP,
  type Mode,
  OP_DEFINE,
  OP_IMPORT,
  OP_PAD,
  OP_TASK,
  putU32,
  R_COLUMN,
  R_ERR,
  R_INIT_FAILED,
  R_OK,
  R_READY,
  RESULT_HEADER,
  STARTED,
  TASK_HEADER,
  TASK_RING_BYTES,
  u32,
} from "./wire.ts";

const pendingTransfer: ArrayBuffer[] = [];
/** Set in a pool worker: `transfer()` records buffers only there. */
let inPoolWorker = false;

/**
 * Marks `ArrayBuffer`s of a pool task's result to be moved rather than copied: after the result
 * is sent, each buffer in `list` is detached in the worker (`byteLength` 0), as with
 * `postMessage(value, [buf])`. The task returns `transfer(value, list)` in place of `value`.
 *
 * Over the pool's shared-memory rings the bytes are still copied once into the ring; what "move"
 * guarantees is ownership: the sender no longer has them (no aliasing, no second copy kept
 * alive). Arguments are moved with the `transfer` option of `apply`/`applyAsync`/`map`.
 *
 * @example
 * ```ts
 * // tasks.ts
 * import { transfer } from "jsr:@denomp/multiprocessing";
 * export function render(n: number) {
 *   const pixels = new Uint8Array(n);
 *   return transfer(pixels, [pixels.buffer]);
 * }
 * console.assert(render(4).byteLength === 4); // outside a pool worker, nothing is moved
 * ```
 */
export function transfer<T>(value: T, list: ArrayBuffer[]): T {
  if (inPoolWorker) { for (const b of list) pendingTransfer.push(b); }
  return value;
}

/** Detaches the moved buffers once their bytes are sent (both sides). */
export function detachAll(list: ArrayBuffer[]): void {
  for (const b of list) if (!b.detached) b.transfer();
}

/** What a pool worker is started with (its `Process` argument). */
export interface WorkerConfig {
  /** The worker's number in its pool's messages. */
  wid: number;
  /** Its heap block: control words, then its task ring. */
  block: number;
  /** The pool's doorbell (heap offset). */
  bell: number;
  /** Module URL and export name of the function run once before the first task. */
  initializer: { module: string; name: string } | null;
  /** Its arguments. */
  initargs: unknown[];
  /** Module URLs to import before it reports ready. */
  preload: string[];
  /** Exit after this many tasks (0: never). */
  maxTasks: number;
}

type AnyFn = (...args: unknown[]) => unknown;

/** The pool's façade, loaded by every worker before it is ready (see `work`). */
const POOL_MODULE = new URL("./pool.ts", import.meta.url).href;

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === "object" || typeof v === "function") &&
    typeof (v as PromiseLike<unknown>).then === "function";
}

/** Imports a task's module: it must not start processes at its top level (see Process.start). */
async function importModule(url: string): Promise<Record<string, unknown>> {
  setBootstrapping(true);
  try {
    return await import(url);
  } finally {
    setBootstrapping(false);
  }
}

async function importFunction(ref: TargetRef): Promise<AnyFn> {
  const ns = await importModule(ref.module);
  let fn = ns[ref.name];
  if (fn === undefined) {
    fn = Object.values(ns).find((v) => typeof v === "function" && v.name === ref.name);
  }
  if (typeof fn !== "function") {
    throw new ProcessError(
      `'${ref.name}' is not an exported function of ${ref.module} (a pool worker imports it)`,
    );
  }
  return fn as AnyFn;
}

/**
 * Sends results into this worker's result ring: one message per task, written before the next
 * task starts, then the pool's doorbell.
 */
class ResultWriter {
  readonly #ring: Ring;
  readonly #bell: Doorbell;
  readonly #ctl: Int32Array;
  readonly #enc = new Encoder();
  #stage = new Uint8Array(4096);
  #f64 = new Float64Array(this.#stage.buffer);

  /** The largest message the ring takes as one frame (half its capacity, as in Ring). */
  readonly #maxSingle: number;

  constructor(ring: Ring, bell: Doorbell, ctl: Int32Array) {
    this.#ring = ring;
    this.#bell = bell;
    this.#ctl = ctl;
    this.#maxSingle = ((ring.capacity >> 1) & ~3) - 4;
  }

  /** Rings the parent's doorbell (as `onBegun`: when a streamed result's first frame is out). */
  readonly #ringBell = (): void => this.#bell.ring();

  send(
    kind: number,
    seq: number,
    us: number,
    value: unknown,
    root = "result",
    start = 0,
  ): void | Promise<void> {
    if (kind === R_OK && typeof value === "number" && root === "result") {
      // A call's result that is a number (the common case) skips the codec.
      this.#head(R_COLUMN, seq, us, 8);
      this.#f64[RESULT_HEADER >> 3] = value;
      return this.#write(8);
    }
    let body: Uint8Array;
    try {
      // A chunk's results are an array the worker made: a list (see `EncodeOptions.list`).
      body = this.#enc.encode(
        value,
        root,
        kind !== R_OK ? REPORT : root === "chunk" ? LIST : undefined,
      );
    } catch (e) {
      // Unsendable result: the task fails with SerializationError and the worker goes on.
      kind = kind === R_OK ? R_ERR : kind;
      const err = root === "chunk" ? chunkPath(e, start, "result") : e;
      try {
        body = this.#enc.encode(err, "error");
      } catch {
        body = this.#enc.encode(new Error(describe(value)), "error");
      }
    }
    const b = this.#head(kind, seq, us, body.length);
    b.set(body, RESULT_HEADER);
    return this.#write(body.length);
  }

  /**
   * Room for a chunk's `n` results as a column, in the message about to be sent: the task loop
   * writes each result there as it is computed (see {@link ResultWriter.sendColumn}).
   */
  column(n: number): Float64Array {
    this.#head(R_COLUMN, 0, 0, n * 8);
    return new Float64Array(this.#stage.buffer, RESULT_HEADER, n);
  }

  /** Sends the `n` results written into `column(n)`. */
  sendColumn(seq: number, us: number, n: number): void | Promise<void> {
    this.#head(R_COLUMN, seq, us, n * 8);
    return this.#write(n * 8);
  }

  #head(kind: number, seq: number, us: number, bytes: number): Uint8Array {
    const n = RESULT_HEADER + bytes;
    if (n > this.#stage.length) {
      this.#stage = new Uint8Array(Math.max(n + 7, this.#stage.length * 2) & ~7);
      this.#f64 = new Float64Array(this.#stage.buffer);
    }
    const b = this.#stage;
    b[0] = kind;
    putU32(b, 4, seq);
    putU32(b, 8, us < 0xffffffff ? us : 0xffffffff);
    return b;
  }

  /**
   * Writes the message, then rings. Either way the result is in the ring before the worker
   * starts its next task, which is what lets the parent tell a finished task from a running one
   * after a death.
   */
  #write(bytes: number): void | Promise<void> {
    const msg = this.#stage.subarray(0, RESULT_HEADER + bytes);
    if (msg.length <= this.#maxSingle) {
      this.#ring.sendSync(msg);
      this.#bell.ring();
      return;
    }
    // Too large for one frame: it is streamed, and the parent must be reading while it is
    // written. `post` writes what fits now and hands the rest to this worker's background
    // writer, which may publish even the first frame only later (no room yet). The bell is rung
    // when the first frame is published: rung before, the parent would find nothing, sleep
    // again, and the background writer, its ring full, would wait for it for ever (issue 24).
    // Once begun, the ring's own reader/writer hand-off carries the rest.
    return this.#ring.post(msg, { onBegun: this.#ringBell }).then(() => {});
  }
}

const copyOut = (b: Uint8Array): Uint8Array => b.slice();
const yes = (): true => true;
/** How a worker encodes a task's error (see `EncodeOptions.reportError`). */
const REPORT: EncodeOptions = { reportError: true };

/** Stands for "the results are in the writer's column" in `TaskLoop.#finish`. */
const COLUMN_DONE: unique symbol = Symbol("column");

const forever = () => new Promise<never>(noop);

/**
 * The body of a pool worker (the target of its `Process`): runs the initializer, then tasks from
 * its ring until told to stop (or after `maxTasks`). Not for direct use; exported so that
 * workers can import it.
 *
 * @example
 * ```ts ignore
 * // Started by Pool, never by hand:
 * new Process({ target: poolWorker, args: [config], daemon: true }).start();
 * ```
 */
export async function poolWorker(cfg: WorkerConfig): Promise<void> {
  try {
    await work(cfg);
  } catch (e) {
    // Terminated: the thread runs on until its next turn of the event loop (Deno), and the
    // channels refuse a terminated process. Nothing to report: the pool has moved on.
    if (!isAlive(heap().slot)) await forever();
    throw e;
  }
}

async function work(cfg: WorkerConfig): Promise<void> {
  const out = new ResultWriter(
    new Ring(cfg.block + CTL_BYTES + TASK_RING_BYTES, cfg.block),
    new Doorbell(cfg.bell),
    new Int32Array(heap().sab, cfg.block, CTL_BYTES >> 2),
  );
  inPoolWorker = true;
  // The pool's parent side (pool.ts and its graph) is loaded before the worker says it is ready,
  // as it was when one file held both sides: a task module that also makes the pool (the usual
  // shape, as in Python: the task beside the `Pool` that maps it) would else load it during the
  // first task of the first map (W5, 100,000 tasks on a fresh pool: ~25% of the map's time).
  const facade = import(POOL_MODULE).catch(noop);
  for (const url of cfg.preload) {
    try {
      await importModule(url);
    } catch (e) {
      out.send(R_INIT_FAILED, 1, 0, e, "error");
      throw new SystemExit(1); // the parent reports it (BrokenPoolError with this cause)
    }
  }
  if (cfg.initializer) {
    try {
      const init = await importFunction(cfg.initializer);
      const r = init(...cfg.initargs);
      if (isThenable(r)) await r;
    } catch (e) {
      out.send(R_INIT_FAILED, 0, 0, e, "error");
      throw new SystemExit(1); // the parent reports it (BrokenPoolError with this cause)
    }
  }
  await facade;
  // Deno sets its timers up at a worker's first use of one (~8 ms of this thread here), and the
  // task loop's first wait uses one (`keepAlive`). Done after "ready", that landed in the first
  // map (W5: ~2.5 ms more of the last worker's CPU in a ~10 ms map, with 2 workers on 2 cores).
  loadTimers();
  out.send(R_READY, 0, 0, null);
  const loop = new TaskLoop(cfg, out);
  try {
    await loop.run();
  } finally {
    loop.close();
  }
}

/** A worker's task loop: one task at a time, in ring order, each result sent before the next. */
class TaskLoop {
  readonly #ctl: Int32Array;
  readonly #tasks: Ring;
  readonly #out: ResultWriter;
  readonly #dec = new Decoder();
  /** This worker's state word in the process table (a fixed view: read after every task). */
  readonly #self = new Int32Array(heap().sab, slotStateIndex(heap().slot) * 4, 1);
  /**
   * When the current task began. Tasks are timed from the end of the previous one (one clock
   * read per task: `performance.now()` is a call into the runtime), and from each wake-up.
   */
  #mark = 0;
  /** Tasks since `#mark`, how many to time together, and the last measure (µs per task). */
  #count = 0;
  #span = 1;
  #us = 0;
  /** The batch being run, and a Float64 view of all of it. */
  #batch: Uint8Array = new Uint8Array(0);
  #f64: Float64Array = new Float64Array(0);
  /** Functions by number (an Error when its module could not provide it). */
  readonly #fns: (AnyFn | Error)[] = [];
  #seq = 0;
  /** Tasks up to this number were taken back by the pool (see #withdrawn). */
  #recalled = 0;
  #left: number;
  #yielder = new Yielder();

  constructor(cfg: WorkerConfig, out: ResultWriter) {
    this.#ctl = new Int32Array(heap().sab, cfg.block, CTL_BYTES >> 2);
    this.#tasks = new Ring(cfg.block + CTL_BYTES, cfg.block);
    this.#out = out;
    this.#left = cfg.maxTasks > 0 ? cfg.maxTasks : Infinity;
  }

  close(): void {
    this.#yielder.close();
  }

  /** Returns when told to stop or after `maxTasks` tasks. */
  async run(): Promise<void> {
    let yielded = performance.now();
    for (;;) {
      let batch = this.#tasks.tryRecv(copyOut);
      if (batch === TIMEOUT) {
        batch = (await this.#tasks.recv(copyOut)) as Uint8Array;
        this.#restartClock();
      }
      // The batch is this worker's own copy at offset 0: numeric columns (8-aligned in it) are
      // read through one view of the whole batch, with no view per task.
      this.#batch = batch;
      this.#f64 = new Float64Array(batch.buffer, 0, batch.length >> 3);
      for (let p = 0; p < batch.length;) {
        const op = batch[p];
        if (op === OP_TASK) {
          const len = u32(batch, p + 12);
          const done = this.#task(
            batch[p + 1] as Mode,
            batch[p + 2] as Column,
            u32(batch, p + 4),
            u32(batch, p + 8),
            p + TASK_HEADER,
            len,
          );
          p += TASK_HEADER + len;
          if ((done === true ? done : await done) && --this.#left === 0) return;
        } else if (op === OP_DEFINE) {
          const id = u32(batch, p + 1), len = u32(batch, p + 5);
          const ref = this.#dec.decode(batch.subarray(p + DEFINE_HEADER, p + DEFINE_HEADER + len));
          p += DEFINE_HEADER + len;
          const [module, name] = ref as [string, string];
          try {
            this.#fns[id] = await importFunction({ module, name });
          } catch (e) {
            this.#fns[id] = e instanceof Error ? e : new Error(String(e));
          }
          this.#restartClock();
        } else if (op === OP_IMPORT) {
          const len = u32(batch, p + 5);
          const urls = this.#dec.decode(
            batch.subarray(p + DEFINE_HEADER, p + DEFINE_HEADER + len),
          ) as string[];
          p += DEFINE_HEADER + len;
          // A module that fails to load shows up as the task's decoding error, with its reason.
          await Promise.all(urls.map((u) => import(u).catch(noop)));
          this.#restartClock();
        } else if (op === OP_PAD) p++;
        else return; // OP_STOP
      }
      // A long run of tasks never waits in recv: give timers and channel pumps a turn.
      if (this.#mark - yielded > 20) {
        await this.#yielder.yield();
        this.#restartClock();
        yielded = this.#mark;
      }
    }
  }

  /**
   * The pool took back tasks (STARTED held `mark`, `-last`): task `seq` and the rest up to `last`
   * are skipped. Clears the mark (STARTED = `last`) and the cancel slots of those tasks.
   */
  #withdrawn(mark: number, seq: number): boolean {
    const ctl = this.#ctl;
    for (;;) {
      if (mark >= 0) throw new Error(`denomp: pool worker out of step (task ${seq}, ${mark})`);
      const last = -mark, was = Atomics.compareExchange(ctl, STARTED, mark, last);
      if (was === mark) {
        this.#recalled = last;
        for (let i = CANCEL; i < CANCEL + CANCEL_SLOTS; i++) {
          const x = Atomics.load(ctl, i);
          if (x >= seq && x <= last) Atomics.compareExchange(ctl, i, x, 0);
        }
        return true;
      }
      mark = was; // the pool took back more meanwhile
    }
  }

  #restartClock(): void {
    this.#mark = performance.now();
    this.#count = 0;
  }

  /**
   * The duration of the task that just ended (µs). Reading the clock is a call into the runtime
   * (~0.5 µs here), as long as a tiny task: tasks shorter than 20 µs are timed 32 at a time.
   */
  #clock(): number {
    if (++this.#count >= this.#span) {
      const now = performance.now();
      this.#us = (now - this.#mark) * 1000 / this.#count;
      this.#mark = now;
      this.#count = 0;
      this.#span = this.#us < 20 ? 32 : 1;
    }
    return this.#us;
  }

  /**
   * Runs one task (its arguments at `at`, `len` bytes, in the current batch) and sends its
   * result. Synchronous when the task is (no promise per task on the hot path); `true` once it
   * counts against `maxTasks`.
   */
  #task(
    mode: Mode,
    col: Column,
    id: number,
    start: number,
    at: number,
    len: number,
  ): true | Promise<true> {
    const seq = ++this.#seq, ctl = this.#ctl;
    if (seq <= this.#recalled) return true; // taken back by the pool (it counts them alike)
    // Before anything else: from here on, a death of this worker fails this task.
    const was = Atomics.compareExchange(ctl, STARTED, seq - 1, seq);
    if (was !== seq - 1 && this.#withdrawn(was, seq)) return true;
    if (Atomics.load(ctl, CANCEL_HINT) !== 0 && cancelled(ctl, seq)) return true;
    pendingTransfer.length = 0;
    let value: unknown;
    try {
      const fn = this.#fns[id];
      if (fn instanceof Error) throw fn;
      const f64 = this.#f64, base = at >> 3, n = len >> 3;
      if (mode === APPLY) {
        value = col === CODEC
          ? fn.apply(undefined, this.#dec.decode(this.#batch.subarray(at, at + len)) as unknown[])
          : n === 1
          ? fn(f64[base])
          : n === 2
          ? fn(f64[base], f64[base + 1])
          : fn.apply(undefined, f64.subarray(base, base + n) as unknown as unknown[]);
        if (isThenable(value)) return this.#settleLater(seq, value, mode, start);
      } else {
        const args: ArrayLike<unknown> = col === CODEC
          ? this.#dec.decode(this.#batch.subarray(at, at + len)) as unknown[]
          : f64.subarray(base, base + n);
        // Results go straight into the outgoing column while they are numbers; the first one
        // that is not turns the rest of the chunk into a plain array.
        const count = args.length, out = this.#out.column(count);
        for (let i = 0; i < count; i++) {
          const r = mode === MAP ? fn(args[i]) : fn.apply(undefined, args[i] as unknown[]);
          if (typeof r === "number") {
            out[i] = r;
            continue;
          }
          const res: unknown[] = Array.from(out.subarray(0, i));
          if (isThenable(r)) return this.#restLater(seq, fn, mode, args, res, i, r, start);
          res.push(r);
          for (i++; i < count; i++) {
            const r = mode === MAP ? fn(args[i]) : fn.apply(undefined, args[i] as unknown[]);
            if (isThenable(r)) return this.#restLater(seq, fn, mode, args, res, i, r, start);
            res.push(r);
          }
          return this.#finish(seq, true, res, mode, start);
        }
        return this.#finish(seq, true, COLUMN_DONE, mode, start, count);
      }
    } catch (e) {
      return this.#finish(seq, false, e, mode, start);
    }
    return this.#finish(seq, true, value, mode, start);
  }

  async #settleLater(
    seq: number,
    p: PromiseLike<unknown>,
    mode: Mode,
    start: number,
  ): Promise<true> {
    try {
      return await this.#finish(seq, true, await p, mode, start);
    } catch (e) {
      return await this.#finish(seq, false, e, mode, start);
    }
  }

  /** A chunk whose item `i` returned a promise: awaits it and every later item in turn. */
  async #restLater(
    seq: number,
    fn: AnyFn,
    mode: Mode,
    args: ArrayLike<unknown>,
    res: unknown[],
    i: number,
    first: PromiseLike<unknown>,
    start: number,
  ): Promise<true> {
    try {
      res[i] = await first;
      for (i++; i < args.length; i++) {
        const r = mode === MAP ? fn(args[i]) : fn.apply(undefined, args[i] as unknown[]);
        res[i] = isThenable(r) ? await r : r;
      }
    } catch (e) {
      return await this.#finish(seq, false, e, mode, start);
    }
    return await this.#finish(seq, true, res, mode, start);
  }

  #finish(
    seq: number,
    ok: boolean,
    value: unknown,
    mode: Mode,
    start: number,
    n = 0,
  ): true | Promise<true> {
    // `exit()` / `Deno.exit()` in a task ends the worker (Python's SystemExit is no Exception
    // either): the parent then fails this task with BrokenPoolError.
    if (!ok && value instanceof SystemExit) throw value;
    // Terminated while the task ran? Deno cannot stop an isolate busy in synchronous code
    // (worker.terminate() takes effect when it next yields), so a CPU-bound task runs to its end
    // after its pool gave up on it. Then touch nothing shared (the pool may have reused this
    // worker's block) and yield: the event loop ends the thread.
    if (Atomics.load(this.#self, 0) !== SLOT_ALIVE) return forever();
    const us = this.#clock();
    const sent = value === COLUMN_DONE ? this.#out.sendColumn(seq, us, n) : this.#out.send(
      ok ? R_OK : R_ERR,
      seq,
      us,
      value,
      mode === APPLY ? "result" : "chunk",
      start,
    );
    // The result's bytes are in the ring (or copied for the pump): moved buffers go now.
    if (pendingTransfer.length) {
      detachAll(pendingTransfer);
      pendingTransfer.length = 0;
    }
    return sent ? sent.then(yes) : true;
  }
}

function noop(): void {}
