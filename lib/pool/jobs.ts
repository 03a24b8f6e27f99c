/**
 * The jobs of a pool, and the tasks they are cut into. A job is what a caller waits on: an
 * {@link AsyncResult} (`applyAsync`, one task), a {@link MapJob} (`map`/`starmap`: chunks fill
 * one array), a {@link StreamJob} (`imap`/`imapUnordered`: chunk results wait until the iterator
 * takes them). A {@link Task} is one unit of work sent to a worker (one call, or one chunk),
 * naming its function by number ({@link FnInfo}: resolved to module and export once per function,
 * defined once per worker).
 *
 * @module
 */

import { callerModule, resolveTarget, type TargetRef } from "../core/target.ts";
import { Encoder } from "../core/reduction.ts";
import type { AsyncResult } from "./async_result.ts";
import { type Mode, startedOf } from "./wire.ts";
import type { WorkerHandle } from "./workers.ts";

/** A task function: resolved once per function, defined once per worker. */
export interface FnInfo {
  /** Number of the function, the same in every pool and worker of this process. */
  readonly id: number;
  readonly ref: TargetRef;
  /** `[module, name]`, encoded: the body of an OP_DEFINE. */
  readonly define: Uint8Array;
}

const fnInfos = new WeakMap<object, FnInfo>();
let nextFnId = 1;

/** Finds the module and export of `fn` (once per function; `callerModule` reads the stack). */
export function fnInfo(fn: unknown, what = "fn"): FnInfo {
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

/** States of a task: in the pool's queue, in a worker's ring, settled (or dropped). */
export const QUEUED = 0, ASSIGNED = 1, DONE = 2;

/** One unit of work sent to a worker: one call, or one chunk of a map. */
export class Task {
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

  /**
   * Whether a worker has begun it and it is not done. A task in a worker's ring started once the
   * worker's STARTED word reached its number (its magnitude: a recall mark `-last` leaves in the
   * worker only tasks that had begun, and those written after the recall).
   */
  started(): boolean {
    return this.state === ASSIGNED && startedOf(this.worker!.ctl) >= this.seq;
  }

  /** What the codec encodes: the arguments, or the chunk's items. */
  items(): unknown[] {
    const p = this.payload;
    return this.from === 0 && this.count === p.length
      ? p
      : p.slice(this.from, this.from + this.count);
  }
}

/** `map`/`starmap`: chunks fill one array. */
export class MapJob {
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
export class StreamJob {
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

/** What a task's outcome goes to. */
export type Job = AsyncResult<unknown> | MapJob | StreamJob;

/** Whether `x` is a (sync) iterable. */
export function isIterable(x: unknown): x is Iterable<unknown> {
  return x != null && typeof (x as Iterable<unknown>)[Symbol.iterator] === "function";
}

/** An iterator of either kind, as `imap` reads its input. */
export interface AnyIterator {
  next(): IteratorResult<unknown> | Promise<IteratorResult<unknown>>;
  return?(): unknown;
}

/** The iterator of `x`, sync or async. */
export function openIterator(x: Iterable<unknown> | AsyncIterable<unknown>): AnyIterator {
  if (isIterable(x)) return x[Symbol.iterator]();
  if (x != null && typeof (x as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function") {
    return (x as AsyncIterable<unknown>)[Symbol.asyncIterator]();
  }
  throw new TypeError("iterable must be an Iterable or an AsyncIterable");
}
