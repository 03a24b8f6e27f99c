/**
 * The writer of task messages: encodes the pool's queued tasks into a worker's task ring, one
 * message of up to ~16 KiB per call, built in a stage and posted at once (`post` copies what it
 * cannot write now). A function is defined in a worker (`OP_DEFINE`) before its first task there;
 * the modules that register the handle kinds in a message are named first (`OP_IMPORT`). Tasks
 * whose items are all numbers are written as raw Float64 columns, 8-aligned in the message, not
 * through the codec (see `wire.ts`).
 *
 * @module
 */

import { type Encoder, withHandleModules } from "../core/reduction.ts";
import { ASSIGNED, type FnInfo, QUEUED, type Task } from "./jobs.ts";
import { type PoolState, TERMINATE } from "./state.ts";
import type { TaskHandler } from "./tasks.ts";
import {
  APPLY,
  chunkPath,
  CODEC,
  COLUMN,
  type Column,
  DEFINE_HEADER,
  LIST,
  OP_DEFINE,
  OP_IMPORT,
  OP_PAD,
  OP_STOP,
  OP_TASK,
  putU32,
  STARMAP,
  TASK_HEADER,
} from "./wire.ts";
import { detachAll } from "./worker.ts";
import type { WorkerHandle } from "./workers.ts";

/** A task message is posted once it is this large (a ring frame holds up to half the ring). */
const FLUSH_BYTES = 16 << 10;

/**
 * Writes tasks into a worker's ring: one message of up to ~16 KiB ({@link FLUSH_BYTES}) per
 * call, built in a stage and posted at once (`post` copies what it cannot write now).
 */
export class TaskWriter {
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
          this.#enc.encode(t.items(), t.mode === APPLY ? "args" : "chunk", LIST).slice()
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
            body = this.#enc.encode(t.items(), t.mode === APPLY ? "args" : "chunk", LIST);
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
