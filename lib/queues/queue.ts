/**
 * The queue classes: `Queue`, `SimpleQueue`, `JoinableQueue` (Python's `multiprocessing`
 * queues) and `LifoQueue`, `PriorityQueue` (Python's `queue` module, here across workers too).
 *
 * A handle is thin: it checks arguments, encodes the item, takes a place in the counts
 * (`Shared`: `maxsize`, `qsize`, `join`) and hands the item to the queue's store (`store.ts`);
 * the subclasses only choose the store and whether tasks are counted. A handle gives its
 * reference to the queue's memory back as soon as nothing more can come through it
 * (`#release`), and its registration with the codec (`queues.ts`) lets it travel to workers.
 *
 * @module
 */

import {
  deadlineOf,
  remainingMs,
  runAsync,
  runSync,
  type Sleep,
  type WaitResult,
  type Waits,
} from "../core/atomics.ts";
import { adopt, disown, heap, release, retain } from "../core/heap.ts";
import { EOF, flushAll as flushRings, TIMEOUT } from "../core/ring.ts";
import { checkTimeout, optionsOf } from "../core/args.ts";
import { Attaching } from "../core/attach.ts";
import { encodeView } from "../core/reduction.ts";
import { PUT_BACK } from "../core/handles.ts";
import { Empty, Full, SerializationError, ValueError } from "../core/errors.ts";
import { type Kind as ObjectKind, registerObject } from "../core/observe.ts";
import { compileSchema, type Schema, type SchemaFor } from "./typed.ts";
import { CLOSED, FIFO, type Kind, LIFO, PRIO } from "./layout.ts";
import { Shared } from "./shared.ts";

/** Options of `put`/`putSync`. */
export interface PutOptions {
  /** `false`: throw `Full` at once when the queue is full. Default `true`. */
  block?: boolean;
  /** Milliseconds to wait for room before throwing `Full` (with `block`). Default: forever. */
  timeout?: number;
  /** Aborts the wait for room (rejects with the signal's reason). */
  signal?: AbortSignal;
  /**
   * `ArrayBuffer`s to move instead of leaving a copy with the sender: after `put`, each one is
   * detached (`byteLength` 0), as with `postMessage(value, [buf])`. Over shared memory the bytes
   * are still copied once into the queue; what "move" guarantees is that the sender no longer
   * has them (no aliasing, no second copy kept alive).
   */
  transfer?: ArrayBuffer[];
}

/** Options of `new Queue(options)`. */
export interface QueueOptions<T = unknown> {
  /** At most this many items (`0`, the default: unbounded; `put` then never waits). */
  maxsize?: number;
  /**
   * A typed queue: every item is a record of these fields, written field by field into the
   * queue's shared memory with no generic encoding (see `typed.ts`); an item that does not fit
   * is refused with a `SerializationError` naming the field. Use `schema({...})` from `typed.ts`
   * to have the item type inferred, or give it: `new Queue<{ i: number }>({ schema: { i: "i32"
   * } })`. A plain `Queue` only: a `JoinableQueue`, `LifoQueue` or `PriorityQueue` refuses it
   * (`ValueError`).
   */
  schema?: Schema<T> | SchemaFor<T>;
  /** Shown in `snapshot()` and the dashboard; default: the kind and creation site. */
  name?: string;
}

/** Options of `getMany`/`getManySync`. */
export interface GetManyOptions extends GetOptions {
  /** At most this many items (default: all that are there). */
  max?: number;
}

/** Options of `get`/`getSync`. */
export interface GetOptions {
  /** `false`: throw `Empty` at once when no item is there. Default `true`. */
  block?: boolean;
  /** Milliseconds to wait for an item before throwing `Empty` (with `block`). Default: forever. */
  timeout?: number;
  /** Aborts the wait (rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * An empty array that holds objects from the start: an empty `[]` holds small integers until
 * its first item, and the ring's batch loop that fills it (`tryRecvMany`) deoptimized at that
 * change, once per typed consumer (`--trace-deopt`: "not a Smi" at its `push`).
 */
function itemArray<T>(): T[] {
  const a: T[] = [null as T];
  a.length = 0;
  return a;
}

/** `getMany`'s `max`: a positive integer, or all that are there. */
function maxOf(max: number | undefined): number {
  if (max === undefined || max === Infinity) return Infinity;
  if (typeof max !== "number" || !Number.isInteger(max) || max < 1) {
    throw new ValueError(`'max' must be a positive integer: current value is ${max}`);
  }
  return max;
}

const DONE: Promise<void> = Promise.resolve();

/** The wait of a put or get: none with `block: false`, else the timeout (see `checkTimeout`). */
function timeoutOf(block: boolean | undefined, timeout: number | undefined): number | undefined {
  return block === false ? 0 : checkTimeout(timeout);
}

function checkTransfer(list: ArrayBuffer[] | undefined): void {
  if (!list) return;
  const seen = new Set<ArrayBuffer>();
  list.forEach((b, i) => {
    if (!(b instanceof ArrayBuffer)) {
      throw new SerializationError(`transfer[${i}]`, "only ArrayBuffers can be transferred");
    }
    if (b.detached) throw new SerializationError(`transfer[${i}]`, "the ArrayBuffer is detached");
    if (seen.has(b)) throw new SerializationError(`transfer[${i}]`, "listed twice");
    seen.add(b);
  });
}

/** Detaches each listed buffer (its `transfer(0)` copy, empty, is dropped). */
function detach(list: ArrayBuffer[] | undefined): void {
  for (const b of list ?? []) b.transfer(0);
}

/** Offered by `rebuild` so the constructor attaches instead of allocating. */
const attaching = new Attaching();
/** Set by subclass constructors: the kind of store to create, and whether items are tracked. */
let creatingKind: Kind = FIFO;
let creatingJoinable = false;
let stateOf: (q: Queue<unknown>) => Shared;
let releaseOf: (q: Queue<unknown>) => void;
let trackOf: <R>(q: Queue<unknown>, p: Promise<R>) => Promise<R>;

/**
 * The state every handle of this process takes on once it gave its memory back (see
 * `Queue.#release`): a closed, empty store, which behaves exactly as a closed, drained queue.
 */
let closedState: Shared | null = null;

function closedShared(): Shared {
  if (!closedState) {
    const off = Shared.create(LIFO, 0, true);
    Atomics.store(heap().i32, (off >> 2) + CLOSED, 1);
    closedState = new Shared(off);
  }
  return closedState;
}

/**
 * A handle's `reduce`: the heap offset of its queue, with one in-flight reference taken (the
 * receiving handle adopts it).
 */
export function reduceQueue(q: Queue<unknown>, name: string): number {
  const s = stateOf(q);
  if (s === closedState) throw new ValueError(`${name} is closed and drained: nothing to send`);
  const off = s.off;
  retain(off); // the in-flight reference; the receiving handle adopts it
  return off;
}

/** A handle's `rebuild`: a new `cls` handle attached to the queue of kind `kind` at `off`. */
export function attachQueue<C>(off: number, kind: Kind, cls: new () => C): C {
  creatingKind = kind;
  try {
    return attaching.run(off, () => new cls());
  } finally {
    creatingKind = FIFO;
  }
}

// ---------------------------------------------------------------------------------------------
// The public classes

/**
 * A multi-producer, multi-consumer FIFO queue shared by workers (Python's
 * `multiprocessing.Queue`). Pass it to a worker in `args` or through another queue or pipe.
 *
 * @example
 * ```ts
 * import { Queue } from "jsr:@denomp/multiprocessing";
 * const q = new Queue<{ n: number }>();
 * await q.put({ n: 1 });
 * console.assert((await q.get()).n === 1);
 * q.putNowait({ n: 2 });
 * console.assert(q.qsize() === 1 && q.getNowait().n === 2);
 * ```
 */
export class Queue<T = unknown> implements AsyncIterable<T> {
  #s: Shared;
  readonly #off: number;
  readonly #maxsize: number;
  /** Async calls of this handle in flight: its memory must not go back under them. */
  #busy = 0;

  /**
   * Creates a queue holding at most `maxsize` items (`0`: unbounded; `put` then never waits),
   * or from options: `new Queue({ maxsize: 100, name: "jobs", schema })` (see {@link QueueOptions}).
   */
  constructor(options: number | QueueOptions<T> = 0) {
    const o = typeof options === "object" ? queueOptions(options) : { maxsize: options };
    const maxsize = o.maxsize ?? 0;
    const kind = creatingKind, joinable = creatingJoinable;
    creatingKind = FIFO;
    creatingJoinable = false;
    const off = attaching.take();
    if (off !== undefined) {
      this.#s = new Shared(off);
    } else {
      if (typeof maxsize !== "number" || !Number.isInteger(maxsize)) {
        throw new ValueError(`maxsize must be an integer: current value is ${maxsize}`);
      }
      if (o.schema !== undefined && (kind !== FIFO || joinable)) {
        throw new ValueError(
          "schema: typed queues are plain Queues (a JoinableQueue, LifoQueue or PriorityQueue " +
            "takes no schema)",
        );
      }
      const schema = o.schema === undefined ? undefined : compileSchema(o.schema as Schema);
      const made = Shared.create(
        kind,
        Math.max(0, Math.min(maxsize, 0x7fffffff)),
        joinable,
        schema,
      );
      this.#s = new Shared(made);
      registerObject(objectKind(this, kind, joinable), made, o.name);
    }
    const s = this.#s;
    this.#off = s.off;
    this.#maxsize = s.maxsize;
    adopt(this, s.off, s.beforeFree);
  }

  static {
    stateOf = (q) => q.#s;
    releaseOf = (q) => q.#release();
    trackOf = (q, p) => q.#track(p);
  }

  /**
   * Gives this handle's reference to the queue's memory back as soon as nothing more can come
   * through it (closed, drained, every task done) and no async call of it is in flight, rather
   * than when the garbage collector finds the handle: a program that creates, uses and closes
   * queues in a loop then runs in constant memory (finalizers run too late for it). The memory
   * is freed when every holder has done so (or been collected). The handle then behaves as
   * before: closed and empty.
   */
  #release(): void {
    const s = this.#s;
    if (s === closedState || this.#busy || !s.closed || s.count() !== 0) return;
    if (s.joinable && s.unfinished() !== 0) return;
    this.#s = closedShared();
    disown(this, s.off);
    release(s.off, s.beforeFree);
  }

  /** Counts `p` as in flight on this handle (see `#release`). */
  #track<R>(p: Promise<R>): Promise<R> {
    this.#busy++;
    return p.finally(() => {
      this.#busy--;
      this.#release();
    });
  }

  /** The `maxsize` given at creation (0: unbounded). */
  get maxsize(): number {
    return this.#maxsize;
  }

  #encode(item: T, transfer: ArrayBuffer[] | undefined): Uint8Array {
    const s = this.#s;
    if (s.closed) throw new ValueError(`Queue is closed`);
    checkTransfer(transfer);
    if (!s.schema) return encodeView(item, "item");
    const bytes = s.schema.encode(item);
    s.schema.checkSize(bytes, s.ring!.maxRecord);
    return bytes;
  }

  /** After `n` places were reserved: undo them if the queue closed meanwhile (see `close`). */
  #checkOpen(n = 1): void {
    if (this.#s.closed) {
      this.#s.undoReserve(n);
      throw new ValueError(`Queue is closed`);
    }
  }

  /**
   * Puts `item` at the end of the queue. Waits while the queue is full (bounded queues only);
   * rejects with `Full` with `block: false` or after `timeout` ms, and `ValueError` once closed.
   * Items are encoded at once (later changes to `item` do not travel).
   */
  put(item: T, options?: PutOptions): Promise<void> {
    try {
      options = optionsOf(options, "Queue.put", "put(item, { timeout: 200 })");
      const timeout = timeoutOf(options.block, options.timeout);
      const r = this.#putNow(item, options.transfer, timeout, false);
      if (r === undefined) return DONE;
      if (r instanceof Promise) return this.#track(r);
      return this.#track(runAsync(this.#putWaits(item, r, timeout, options, false)));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** `put` for worker code that blocks its thread instead of awaiting. */
  putSync(item: T, options?: PutOptions): void {
    options = optionsOf(options, "Queue.putSync", "putSync(item, { timeout: 200 })");
    const timeout = timeoutOf(options.block, options.timeout);
    const r = this.#putNow(item, options.transfer, timeout, true);
    if (r instanceof Uint8Array) {
      runSync(this.#putWaits(item, r, timeout, options, true) as Waits<void>);
    }
  }

  /**
   * Puts without waiting: throws `Full` at once when the queue is full. Returns at once (the item
   * is written through, or queued in this process's outbox).
   */
  putNowait(item: T, options?: Omit<PutOptions, "block" | "timeout">): void {
    options = optionsOf(options, "Queue.putNowait", "putNowait(item, { transfer: [buf] })");
    const r = this.#putNow(item, options.transfer, 0, false);
    if (r instanceof Promise) r.catch(() => {});
  }

  /**
   * The start of every put (`put`, `putSync`, `putNowait`), plain code with no generator nor
   * closure, where the hot path is: checks and encodes the item and, when a place is free, hands
   * it over at once (`#commit`'s result). Else throws `Full` when `timeout` is 0, or returns a
   * copy of the item's bytes to wait with (the shared encoder's buffer is reused meanwhile).
   */
  #putNow(
    item: T,
    transfer: ArrayBuffer[] | undefined,
    timeout: number | undefined,
    blocking: boolean,
  ): Promise<void> | undefined | Uint8Array {
    const bytes = this.#encode(item, transfer);
    if (this.#s.tryReserve()) return this.#commit(item, bytes, transfer, blocking);
    if (timeout === 0) throw new Full();
    return bytes.slice();
  }

  /**
   * A put that must wait for room, one algorithm for `put` and `putSync` (see _atomics): waits
   * for a place (`Full` at the deadline; `ValueError` once closed; `put`'s signal is checked
   * every slice), then hands the item over. The async hand-over of a LIFO or priority store (which
   * takes the store lock) is a promise the async driver awaits.
   */
  *#putWaits(
    item: T,
    bytes: Uint8Array,
    timeout: number | undefined,
    o: PutOptions,
    blocking: boolean,
  ): Generator<Sleep | Promise<unknown>, void, WaitResult> {
    const signal = blocking ? undefined : o.signal; // `putSync` takes no signal
    if (!(yield* this.#s.reserveWaits(deadlineOf(timeout), signal))) throw new Full();
    const p = this.#commit(item, bytes, o.transfer, blocking);
    if (p) yield p;
  }

  /**
   * A place is reserved: hand the item over, blocking the thread or not. Returns `undefined`
   * when it is handed over (a FIFO store never waits), else a promise of it.
   */
  #commit(
    item: T,
    bytes: Uint8Array,
    transfer: ArrayBuffer[] | undefined,
    blocking: boolean,
  ): Promise<void> | undefined {
    this.#checkOpen();
    const store = this.#s.store;
    let p: Promise<void> | undefined;
    if (blocking) store.putSync(bytes, item);
    else p = store.put(bytes, item);
    detach(transfer);
    return p;
  }

  /** The item schema of a typed queue (see {@link QueueOptions.schema}), else `null`. */
  get schema(): Schema<T> | null {
    return this.#s.schema as Schema<T> | null;
  }

  /**
   * A batch put, written once for both drivers: yields the milliseconds left each time it must
   * wait for room, and is resumed with whether a place was reserved meanwhile. A typed queue
   * writes the records that have room as one run of frames (one lock, one publication, one
   * wake-up); every item is checked before any is put.
   */
  *#putMany(items: readonly T[], o: PutOptions, sync: boolean): Generator<number, void, boolean> {
    const timeout = timeoutOf(o.block, o.timeout), s = this.#s, ring = s.ring!;
    if (s.closed) throw new ValueError(`Queue is closed`);
    const batch = s.schema!.encodeMany(items, ring.maxRecord), starts = batch.starts;
    let bytes = batch.bytes;
    const n = starts.length, deadline = deadlineOf(timeout);
    // Without waiting, all or nothing.
    let k = s.tryReserveUpTo(n);
    if (k < n && timeout === 0) {
      s.undoReserve(k);
      throw new Full();
    }
    for (let i = 0, copied = false; i < n; i += k, k = 0) {
      if (k === 0) k = s.tryReserveUpTo(n - i);
      if (k === 0) {
        if (!copied) (bytes = bytes.slice()), (copied = true); // the buffer is reused meanwhile
        if (!(yield remainingMs(deadline))) {
          throw new Full(`queue is full: ${i} of the ${n} items were put`);
        }
        k = 1 + s.tryReserveUpTo(n - i - 1);
      }
      this.#checkOpen(k);
      const run = bytes.subarray(starts[i], i + k < n ? starts[i + k] : bytes.length);
      if (sync) ring.sendFramesSync(run, k, s.sendOptions);
      else void ring.postFrames(run, k, s.sendOptions);
    }
  }

  /**
   * Puts every item of `items`, in order, as `put` would one by one. On a typed queue (see
   * {@link QueueOptions.schema}) the batch is written into the queue's shared memory at once,
   * which is many times faster than single puts; every item is checked first (one that does not
   * fit refuses the batch with a `SerializationError` naming it, e.g. `items[3].tag`, and none
   * is put). With `block: false` all or none are put (`Full`); waiting for room, a `timeout`
   * (ms) that passes throws `Full` saying how many of the items were put.
   *
   * @example
   * ```ts
   * import { Queue } from "jsr:@denomp/multiprocessing";
   * import { schema } from "jsr:@denomp/multiprocessing";
   * const q = new Queue({ schema: schema({ i: "i32", tag: "string" }) });
   * await q.putMany([{ i: 1, tag: "a" }, { i: 2, tag: "b" }]);
   * const items = await q.getMany(); // { i: number; tag: string }[]
   * console.assert(items.length === 2 && items[1].tag === "b");
   * ```
   */
  putMany(items: readonly T[], options?: PutOptions): Promise<void> {
    try {
      options = optionsOf(options, "Queue.putMany", "putMany(items, { timeout: 200 })");
      const s = this.#s;
      if (!s.schema) return this.#track(this.#putEach(items, options));
      const g = this.#putMany(items, options, false), signal = options.signal;
      const r = g.next();
      if (r.done) return DONE;
      return this.#track((async () => {
        for (let ms = r.value;;) {
          const x = g.next(await s.reserve(ms, signal));
          if (x.done) return;
          ms = x.value;
        }
      })());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** `putMany` of an untyped queue: one `put` after the other. */
  async #putEach(items: readonly T[], options: PutOptions): Promise<void> {
    for (const item of items) await this.put(item, options);
  }

  /** `putMany` for worker code that blocks its thread instead of awaiting. */
  putManySync(items: readonly T[], options?: Omit<PutOptions, "signal">): void {
    options = optionsOf(options, "Queue.putManySync", "putManySync(items, { timeout: 200 })");
    const s = this.#s;
    if (!s.schema) {
      for (const item of items) this.putSync(item, options);
      return;
    }
    const g = this.#putMany(items, options, true);
    for (let r = g.next(); !r.done; r = g.next(s.reserveSync(r.value)));
  }

  /** A typed queue's records after the first: up to `max - got.length` more that are there. */
  #more(got: T[], max: number): T[] {
    const s = this.#s, schema = s.schema!;
    if (got.length >= max) return got;
    let n = 0;
    try {
      // Throws only when `got` is empty: with items got, a record that fails to decode is left
      // for the next call, which throws its error (an error for its reader, true counts).
      n = s.ring!.tryRecvMany(schema.decodeAt, max - got.length, got as unknown[]);
    } catch (e) {
      s.discarded(); // its record was consumed: it left the queue
      throw e;
    }
    if (n) s.unreserve(n);
    return got;
  }

  /**
   * Removes and returns the items that are there (at most `max`), waiting for at least one as
   * `get` does (`Empty` with `block: false` or after `timeout` ms; `ValueError` when the queue
   * is closed and drained). On a typed queue they are taken in one go (one lock, one wake-up
   * for waiting writers); on others, one `get` after the other.
   */
  async getMany(options?: GetManyOptions): Promise<T[]> {
    options = optionsOf(options, "Queue.getMany", "getMany({ max: 100, timeout: 200 })");
    const max = maxOf(options.max);
    const got = this.#s.schema ? this.#more(itemArray(), max) : [];
    return got.length ? got : this.#rest(await this.get(options), max);
  }

  /** `getMany` for worker code that blocks its thread instead of awaiting. */
  getManySync(options?: Omit<GetManyOptions, "signal">): T[] {
    options = optionsOf(options, "Queue.getManySync", "getManySync({ max: 100, timeout: 200 })");
    const max = maxOf(options.max);
    const got = this.#s.schema ? this.#more(itemArray(), max) : [];
    return got.length ? got : this.#rest(this.getSync(options), max);
  }

  /**
   * After the first item of a `getMany` (got by waiting): the others that are there, up to
   * `max`: in one go on a typed queue, else one `getNowait` after the other.
   */
  #rest(first: T, max: number): T[] {
    if (this.#s.schema) return this.#more([first], max);
    const got = [first];
    while (got.length < max) {
      try {
        got.push(this.getNowait());
      } catch (e) {
        if (e instanceof Empty || e instanceof ValueError) break;
        throw e;
      }
    }
    return got;
  }

  #result(v: unknown): T {
    if (v === TIMEOUT) throw new Empty();
    if (v === EOF) {
      this.#release();
      throw new ValueError("Queue is closed");
    }
    return v as T;
  }

  /** Removes and returns the next item, or END once the queue is closed and drained. */
  #getRaw(timeout: number | undefined, signal?: AbortSignal): Promise<unknown> {
    return this.#s.store.get(timeout, signal);
  }

  /**
   * Removes and returns the next item, waiting for one. Rejects with `Empty` with `block: false`
   * or after `timeout` ms, and `ValueError` when the queue is closed and drained.
   */
  get(options?: GetOptions): Promise<T> {
    try {
      options = optionsOf(options, "Queue.get", "get({ timeout: 200 })");
      const timeout = timeoutOf(options.block, options.timeout);
      const s = this.#s;
      // Fast path (see `Store.poll`): an item is there: one settled promise, no async machinery.
      const v = s.store.poll(timeout !== 0);
      if (v !== TIMEOUT) {
        // A handle's module (or a big block's buffer) may still be on its way.
        return v instanceof Promise
          ? v.then((x) => s.took(x) as T)
          : Promise.resolve(s.took(v) as T);
      }
      return this.#track(this.#getRaw(timeout, options.signal)).then((v) => this.#result(v));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** `get` for worker code that blocks its thread instead of awaiting. */
  getSync(options?: Omit<GetOptions, "signal">): T {
    options = optionsOf(options, "Queue.getSync", "getSync({ timeout: 200 })");
    const timeout = timeoutOf(options.block, options.timeout);
    return this.#result(this.#s.store.getSync(timeout));
  }

  /** Removes and returns an item if one is there at once; else throws `Empty`. */
  getNowait(): T {
    return this.getSync({ block: false });
  }

  /** Items put and not yet got, in all processes (approximate while others put and get). */
  qsize(): number {
    return this.#s.count();
  }

  /** True when `qsize()` is 0. */
  empty(): boolean {
    return this.#s.count() === 0;
  }

  /** True when a bounded queue holds `maxsize` items. */
  full(): boolean {
    return this.#s.maxsize > 0 && this.#s.count() >= this.#s.maxsize;
  }

  /**
   * Closes the queue for every process: `put` then throws `ValueError`, items already put can
   * still be got, and `for await` loops (and waiting `get`s) end once it is drained.
   */
  close(): void {
    this.#s.close();
    this.#release();
  }

  /** True once `close()` was called in any process. */
  get closed(): boolean {
    return this.#s.closed;
  }

  /**
   * Waits until every item this process put is written into the queue's shared memory (Python's
   * `join_thread`; a worker does this on its own before it exits).
   */
  async joinThread(): Promise<void> {
    await flushRings();
  }

  /**
   * Lets this process exit without waiting for its unwritten items (Python's
   * `cancel_join_thread`); they may be lost.
   */
  cancelJoinThread(): void {
    this.#s.ring?.detachOutbox();
  }

  /** Iterates over items until the queue is closed and drained (in every process). */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const v = await this.#track(this.#getRaw(undefined));
      if (v === EOF) return this.#release();
      yield v as T;
    }
  }

  /** A short description, like Python's repr. */
  toString(): string {
    return `<${this.constructor.name} at ${this.#off} size=${this.qsize()}${
      this.closed ? " closed" : ""
    }>`;
  }
}

// Internal (core/handles.ts, PUT_BACK), so not a member: out of the class's docs.
Object.defineProperty(Queue.prototype, PUT_BACK, {
  value(this: Queue<unknown>, items: unknown[]): boolean {
    const s = stateOf(this);
    return s !== closedState && (s.putBack(items), true);
  },
});

/**
 * A queue without `maxsize` (Python's `multiprocessing.SimpleQueue`): `put`, `get`, `empty`,
 * `close` (and the rest of `Queue`).
 *
 * @example
 * ```ts
 * import { SimpleQueue } from "jsr:@denomp/multiprocessing";
 * const q = new SimpleQueue<string>();
 * await q.put("a");
 * console.assert((await q.get()) === "a" && q.empty());
 * ```
 */
export class SimpleQueue<T = unknown> extends Queue<T> {
  /** Creates an unbounded queue (option: `name`). */
  constructor(options?: Pick<QueueOptions, "name">) {
    super(options ? { ...queueOptions(options), maxsize: 0 } : 0);
  }
}

/**
 * A `Queue` whose consumers report each item done (Python's `JoinableQueue`): `join()` resolves
 * when every item put has been marked done with `taskDone()`.
 *
 * @example
 * ```ts
 * import { JoinableQueue } from "jsr:@denomp/multiprocessing";
 * const q = new JoinableQueue<number>();
 * await q.put(1);
 * await q.get();
 * q.taskDone();
 * await q.join();
 * ```
 */
export class JoinableQueue<T = unknown> extends Queue<T> {
  /** Creates a queue holding at most `maxsize` items (`0`: unbounded), or from options. */
  constructor(maxsize: number | QueueOptions<T> = 0) {
    creatingJoinable = true;
    super(maxsize);
  }

  /** Marks one item got from the queue as done; throws `ValueError` when none is outstanding. */
  taskDone(): void {
    stateOf(this).taskDone();
    releaseOf(this);
  }

  /** Resolves when every item put has been marked done (may be called again later). */
  join(): Promise<void> {
    return trackOf(this, stateOf(this).join());
  }

  /** `join` for worker code that blocks its thread. */
  joinSync(): void {
    stateOf(this).joinSync();
    releaseOf(this);
  }
}

/**
 * A last-in, first-out queue shared by workers (Python's `queue.LifoQueue`, across processes),
 * with `taskDone`/`join`.
 *
 * @example
 * ```ts
 * import { LifoQueue } from "jsr:@denomp/multiprocessing";
 * const q = new LifoQueue<number>();
 * await q.put(1);
 * await q.put(2);
 * console.assert((await q.get()) === 2);
 * ```
 */
export class LifoQueue<T = unknown> extends JoinableQueue<T> {
  /** Creates a stack holding at most `maxsize` items (`0`: unbounded), or from options. */
  constructor(maxsize: number | QueueOptions<T> = 0) {
    creatingKind = LIFO;
    super(maxsize);
  }
}

/**
 * A queue that hands out the lowest item first (Python's `queue.PriorityQueue`, across
 * processes), with `taskDone`/`join`. Put `[priority, item]` pairs: they compare like Python
 * tuples, element by element (numbers, strings, dates, byte arrays and arrays of those); items
 * that compare equal, or hold values that do not compare (plain objects), go out in arrival
 * order instead of raising `TypeError` as Python would.
 *
 * @example
 * ```ts
 * import { PriorityQueue } from "jsr:@denomp/multiprocessing";
 * const q = new PriorityQueue<[number, string]>();
 * await q.put([5, "low"]);
 * await q.put([1, "high"]);
 * console.assert((await q.get())[1] === "high");
 * ```
 */
export class PriorityQueue<T = unknown> extends JoinableQueue<T> {
  /** Creates a priority queue holding at most `maxsize` items (`0`: unbounded), or from options. */
  constructor(maxsize: number | QueueOptions<T> = 0) {
    creatingKind = PRIO;
    super(maxsize);
  }
}

/**
 * Waits until every item this process put on any queue is written into shared memory. The
 * worker bootstrap awaits it before a worker reports its exit; call it at the end of a main
 * program that must not exit with items unwritten (denomp's exit hooks do it in workers).
 *
 * @example
 * ```ts
 * import { flushAll, Queue } from "jsr:@denomp/multiprocessing";
 * const q = new Queue<number>();
 * q.putNowait(1);
 * await flushAll();
 * ```
 */
export function flushAll(): Promise<void> {
  return flushRings();
}

// ---------------------------------------------------------------------------------------------
// Names and snapshot() (issue 16)

/** Options of `new Queue({ maxsize, name })` (and of the other queue classes). */
function queueOptions<T>(o: QueueOptions<T>): QueueOptions<T> {
  if (o === null || Array.isArray(o)) {
    throw new TypeError(
      'new Queue takes a maxsize or options: new Queue({ maxsize: 100, name: "jobs" })',
    );
  }
  if (o.name !== undefined && typeof o.name !== "string") {
    throw new TypeError(`new Queue: name must be a string, got ${typeof o.name}`);
  }
  return o;
}

function objectKind(q: object, kind: Kind, joinable: boolean): ObjectKind {
  if (kind === LIFO) return "LifoQueue";
  if (kind === PRIO) return "PriorityQueue";
  return q instanceof SimpleQueue ? "SimpleQueue" : joinable ? "JoinableQueue" : "Queue";
}
