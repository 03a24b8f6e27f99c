/**
 * Cluster queues (`cluster.Queue`, `cluster.JoinableQueue`): the local Queue's API on a JetStream
 * work-queue stream, shared by every client that names it.
 *
 * Each queue has one shared durable pull consumer: every `get`, on any machine, pulls from it, so
 * each item goes to one getter. `Queue.get` acknowledges at once; `JoinableQueue.get` leaves the
 * item unacknowledged until `taskDone()`, a heartbeat (`+WPI`) keeping it ours meanwhile, so the
 * items of a getter that dies are redelivered after the ack wait (delivery is at least once).
 * The size calls are async because the size lives on the server, and `close()` is a mark in a KV
 * bucket that every client reads.
 *
 * @module
 */

import {
  abortError,
  AckPolicy,
  apiCode,
  checkMs,
  decode,
  DiscardPolicy,
  ensureConsumer,
  ensureStream,
  ERR_MAX_MSGS,
  ERR_STREAM_NOT_FOUND,
  type KV,
  type Msg,
  nanos,
  RetentionPolicy,
  retrying,
  sleep,
  statusOf,
  StorageType,
  transient,
} from "./nats.ts";
import type { Ctx } from "./context.ts";
import { Empty, Full, TimeoutError, ValueError } from "../core/errors.ts";
import { dumps } from "../core/reduction.ts";

/** Options of `cluster.Queue` and `cluster.JoinableQueue`. */
export interface ClusterQueueOptions {
  /**
   * Most items the queue holds (put and not yet got, or, for a JoinableQueue, not yet done);
   * `put` then waits or throws `Full`. 0 (default): no limit. Applies when the queue is created.
   */
  maxsize?: number;
  /** Overrides the cluster's `ackWait` for this queue, when it is created by this call. */
  ackWait?: number;
  /** `"file"` (default) survives a server restart; `"memory"` is faster and does not. */
  storage?: "file" | "memory";
}

/** Options of `put`. */
export interface ClusterPutOptions {
  /** `false`: throw `Full` at once when the queue is full. Default `true`. */
  block?: boolean;
  /** Milliseconds to wait for room (or for the server) before throwing `Full`/`TimeoutError`. */
  timeout?: number;
  /** Aborts the wait. */
  signal?: AbortSignal;
}

/** Options of `get`. */
export interface ClusterGetOptions {
  /** `false`: throw `Empty` at once when no item is there. Default `true`. */
  block?: boolean;
  /** Milliseconds to wait for an item before throwing `Empty`. Default: forever. */
  timeout?: number;
  /** Aborts the wait. */
  signal?: AbortSignal;
}

// ---------------------------------------------------------------------------------------------
// Queues

/**
 * The KV bucket of closed queues' marks (key: queue name). A mark in the queue's own stream
 * would count against its `maxsize`, so a full queue could not be closed.
 *
 * @param ctx The cluster's context.
 * @returns The bucket, created on first use.
 */
export function closedMarks(ctx: Ctx): Promise<KV> {
  return ctx.closedMarks ??= retrying(
    ctx.nc,
    () => ctx.kvm.create("denomp_closed_queues", { history: 1 }),
    Date.now() + 30_000,
  );
}

const QUEUE_CONSUMER = "consumers";

/**
 * A queue on a JetStream work-queue stream, shared by every client that names it. Create it with
 * `cluster.Queue(name)`. The local Queue's API, except that the size calls are async (the size
 * lives on the server) and `close()` marks the queue closed for every client.
 *
 * @example
 * ```ts
 * import { connectCluster } from "./mod.ts";
 * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
 * // Same name, same queue, on any machine:
 * const q = cluster.Queue<Map<string, number>>(`doc-${crypto.randomUUID().slice(0, 8)}`);
 * await q.put(new Map([["a", 1]]));
 * console.assert((await q.get()).get("a") === 1); // a Map again: the codec keeps its kind
 * await q.destroy();
 * ```
 */
export class ClusterQueue<T = unknown> implements AsyncIterable<T> {
  readonly #ctx: Ctx;
  readonly #joinable: boolean;
  readonly #stream: string;
  readonly #subject: string;
  readonly #options: ClusterQueueOptions;
  #ready?: Promise<number>;
  #closedHere = false;
  #closedRemote = false;
  /** The queue's name. */
  readonly name: string;

  /** Use `cluster.Queue(name)`. */
  constructor(ctx: Ctx, name: string, options: ClusterQueueOptions, joinable: boolean) {
    this.#ctx = ctx;
    this.name = name;
    this.#joinable = joinable;
    this.#stream = `DENOMP_Q_${name}`;
    this.#subject = `denomp.q.${name}`;
    if (
      options.maxsize !== undefined && (!Number.isInteger(options.maxsize) || options.maxsize < 0)
    ) {
      throw new ValueError(
        `'maxsize' must be a non-negative integer: current value is ${options.maxsize}`,
      );
    }
    checkMs("ackWait", options.ackWait);
    this.#options = options;
  }

  /** Creates the stream and consumer on first use; resolves to the ack wait in ms. */
  protected ready(): Promise<number> {
    return this.#ready ??= (async () => {
      const { nc, jsm } = this.#ctx;
      await ensureStream(nc, jsm, {
        name: this.#stream,
        subjects: [this.#subject],
        retention: RetentionPolicy.Workqueue,
        storage: this.#options.storage === "memory" ? StorageType.Memory : StorageType.File,
        max_msgs: this.#options.maxsize || -1,
        discard: DiscardPolicy.New,
        // Retried puts carry a message id: copies within this window are dropped.
        duplicate_window: nanos(120_000),
      });
      return await ensureConsumer(nc, jsm, this.#stream, {
        durable_name: QUEUE_CONSUMER,
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(this.#options.ackWait ?? this.#ctx.ackWait),
        filter_subject: this.#subject,
        max_deliver: -1,
        max_ack_pending: -1,
        max_waiting: 4096,
      }, this.#options.ackWait !== undefined);
    })();
  }

  /** The maximum size given when the queue was created by this handle (0: unbounded). */
  get maxsize(): number {
    return this.#options.maxsize ?? 0;
  }

  /**
   * Puts `item` on the queue; resolves once the server has stored it. Throws `Full` when the
   * queue is at its `maxsize` and `block` is false or `timeout` passes.
   *
   * @param item Any sendable value.
   * @param options `block`, `timeout` (ms) and `signal`.
   * @throws {Full} When the queue is full and `block` is false or `timeout` passes.
   * @throws {TimeoutError} When the server is unreachable until `timeout` passes.
   * @throws {ValueError} When this handle closed the queue.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.Queue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await q.put(1, { timeout: 5000 });
   * console.assert(await q.qsize() === 1);
   * await q.destroy();
   * ```
   */
  async put(item: T, options: ClusterPutOptions = {}): Promise<void> {
    if (this.#closedHere) throw new ValueError(`Queue ${this.name} is closed`);
    const timeout = checkMs("timeout", options.timeout);
    const data = dumps(item, "item");
    await this.ready();
    const { nc, js } = this.#ctx;
    const deadline = options.block === false ? Date.now() : Date.now() + (timeout ?? 1e12);
    const msgID = crypto.randomUUID();
    for (let delay = 20;; delay = Math.min(delay * 2, 500)) {
      try {
        await js.publish(this.#subject, data, { msgID });
        return;
      } catch (e) {
        const full = apiCode(e) === ERR_MAX_MSGS;
        if (!full && !transient(e, nc)) throw e;
        if (Date.now() + delay > deadline) {
          if (full) throw new Full(`Queue ${this.name} is full`);
          if (timeout === undefined && options.block !== false) throw e;
          throw new TimeoutError(`put on Queue ${this.name} timed out: ${(e as Error).message}`, {
            cause: e,
          });
        }
        await sleep(delay, options.signal);
      }
    }
  }

  /**
   * Same as `put(item, { block: false })`.
   *
   * @param item Any sendable value.
   * @throws {Full} When the queue is full.
   *
   * @example
   * ```ts
   * import { Full } from "../../mod.ts";
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.Queue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`, { maxsize: 1 });
   * await q.putNowait(1);
   * const e = await q.putNowait(2).catch((e) => e); // no room, and no waiting for it
   * console.assert(e instanceof Full);
   * await q.destroy();
   * ```
   */
  putNowait(item: T): Promise<void> {
    return this.put(item, { block: false });
  }

  /**
   * Pulls one message: `waitMs` 0 asks the server to answer at once. Null when nothing came.
   * A raw pull request, rather than the client's `next()`, because that one cannot wait less
   * than a second nor answer at once, which `get({ block: false })` and short timeouts need.
   */
  async #pull(waitMs: number): Promise<Msg | null> {
    const { nc } = this.#ctx;
    const subject = `$JS.API.CONSUMER.MSG.NEXT.${this.#stream}.${QUEUE_CONSUMER}`;
    const body = waitMs <= 0
      ? { batch: 1, no_wait: true }
      : { batch: 1, expires: nanos(Math.max(waitMs, 10)) };
    // The server answers "408 timeout" when `expires` passes; our own timeout only guards
    // against a server that went away, so it is later. `noMux`: a delivered message names its
    // original subject, not the inbox, so the client's shared-inbox matching would miss it.
    const m = await nc.request(subject, JSON.stringify(body), {
      timeout: waitMs + 5_000,
      noMux: true,
    });
    const status = statusOf(m);
    if (status === 0) return m;
    if (status === 404 || status === 408 || status === 409) return null;
    throw new Error(`Queue ${this.name}: pull failed with status ${status}`);
  }

  /**
   * Removes and returns the next item; throws `Empty` when `block` is false and nothing is there,
   * or when `timeout` passes.
   *
   * @param options `block`, `timeout` (ms) and `signal`.
   * @returns The item.
   * @throws {Empty} When nothing came in time.
   * @throws The reason of `signal` when it aborts (`ValueError` when the cluster is closed).
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.Queue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await q.put(7);
   * console.assert(await q.get({ timeout: 1000 }) === 7);
   * await q.destroy();
   * ```
   */
  async get(options: ClusterGetOptions = {}): Promise<T> {
    const timeout = checkMs("timeout", options.timeout);
    const ackWait = await this.ready();
    const { nc, closing } = this.#ctx;
    const signal = options.signal;
    const deadline = options.block === false ? 0 : Date.now() + (timeout ?? 1e15);
    for (let delay = 50;;) {
      if (signal?.aborted) throw abortError(signal);
      if (closing.signal.aborted) throw abortError(closing.signal);
      const left = options.block === false ? 0 : Math.max(0, deadline - Date.now());
      let m: Msg | null;
      try {
        // Long waits are cut into slices so `signal` and `close()` are noticed.
        m = await this.#pull(Math.min(left, 5_000));
        delay = 50;
      } catch (e) {
        if (!transient(e, nc)) throw e;
        if (Date.now() + delay > deadline) throw new Empty(`Queue ${this.name} is empty`);
        await sleep(delay, signal);
        delay = Math.min(delay * 2, 1000);
        continue;
      }
      if (m) {
        if (signal?.aborted) {
          // Nobody takes the item any more: hand it back at once instead of after the ack wait.
          nc.publish(m.reply!, "-NAK");
          throw abortError(signal);
        }
        return await this.accept(m, ackWait);
      }
      if (Date.now() >= deadline) throw new Empty(`Queue ${this.name} is empty`);
    }
  }

  /**
   * What `get` does with a delivered message: the plain queue acknowledges it at once.
   * @ignore
   */
  protected async accept(m: Msg, _ackWait: number): Promise<T> {
    const item = decode<T>(m.data);
    // Acknowledged with a confirmation: once get() returns, no other client can get this item.
    await retrying(
      this.#ctx.nc,
      () => this.#ctx.nc.request(m.reply!, "+ACK", { timeout: 5_000 }),
      Date.now() + 30_000,
    );
    return item;
  }

  /**
   * Same as `get({ block: false })`.
   *
   * @throws {Empty} When no item is there.
   *
   * @example
   * ```ts
   * import { Empty } from "../../mod.ts";
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.Queue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * const e = await q.getNowait().catch((e) => e);
   * console.assert(e instanceof Empty);
   * await q.destroy();
   * ```
   */
  getNowait(): Promise<T> {
    return this.get({ block: false });
  }

  /** Consumer counts: items not yet delivered, and delivered but not acknowledged. */
  protected async counts(): Promise<{ pending: number; unacked: number }> {
    await this.ready();
    const { nc, jsm } = this.#ctx;
    const info = await retrying(
      nc,
      () => jsm.consumers.info(this.#stream, QUEUE_CONSUMER),
      Date.now() + 30_000,
    );
    return { pending: info.num_pending, unacked: info.num_ack_pending };
  }

  /**
   * The number of items put and not yet got, on every machine (approximate while others work).
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.Queue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await q.put(1);
   * await q.put(2);
   * console.assert(await q.qsize() === 2);
   * await q.destroy();
   * ```
   */
  async qsize(): Promise<number> {
    return (await this.counts()).pending;
  }

  /**
   * Whether `qsize()` is 0.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.Queue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * console.assert(await q.empty());
   * await q.put(1);
   * console.assert(!(await q.empty()));
   * await q.destroy();
   * ```
   */
  async empty(): Promise<boolean> {
    return (await this.qsize()) === 0;
  }

  /**
   * Whether the queue holds `maxsize` items (never, for an unbounded queue).
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.Queue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`, { maxsize: 1 });
   * console.assert(!(await q.full()));
   * await q.put(1);
   * console.assert(await q.full());
   * await q.destroy();
   * ```
   */
  async full(): Promise<boolean> {
    await this.ready();
    const info = await this.#ctx.jsm.streams.info(this.#stream);
    const max = info.config.max_msgs;
    return max > 0 && info.state.messages >= max;
  }

  /**
   * Marks the queue closed: this handle can put no more, and `for await` loops on every machine
   * end once the queue is drained.
   *
   * @example
   * ```ts
   * import { ValueError } from "../../mod.ts";
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.Queue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await q.close();
   * console.assert((await q.put(1).catch((e) => e)) instanceof ValueError);
   * await q.destroy();
   * ```
   */
  async close(): Promise<void> {
    this.#closedHere = true;
    await this.ready();
    const kv = await closedMarks(this.#ctx);
    await retrying(this.#ctx.nc, () => kv.put(this.name, "1"), Date.now() + 30_000);
    this.#closedRemote = true;
  }

  /**
   * Whether some client closed the queue.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.Queue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * const other = cluster.Queue<number>(q.name); // another handle, as another machine has
   * console.assert(!(await other.isClosed()));
   * await q.close();
   * console.assert(await other.isClosed());
   * await q.destroy();
   * ```
   */
  async isClosed(): Promise<boolean> {
    if (this.#closedRemote) return true;
    const e = await (await closedMarks(this.#ctx)).get(this.name);
    return this.#closedRemote = e?.operation === "PUT";
  }

  /**
   * Deletes the queue and its items from the server, for every client.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.Queue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await q.put(1);
   * await q.destroy(); // the item is gone too
   * console.assert(await q.empty()); // using it again makes a new, empty queue
   * await q.destroy();
   * ```
   */
  async destroy(): Promise<void> {
    const { jsm } = this.#ctx;
    try {
      await jsm.streams.delete(this.#stream);
    } catch (e) {
      if (apiCode(e) !== ERR_STREAM_NOT_FOUND) throw e;
    }
    await (await closedMarks(this.#ctx)).purge(this.name);
    this.#ready = undefined;
    this.#closedRemote = false;
  }

  /**
   * Yields items until the queue is closed (by any client) and drained.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.Queue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await q.put(1);
   * await q.put(2);
   * await q.close();
   * const got: number[] = [];
   * for await (const n of q) got.push(n); // ends once the queue is closed and drained
   * console.assert(got.join() === "1,2");
   * await q.destroy();
   * ```
   */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    while (!this.#ctx.closing.signal.aborted) {
      try {
        yield await this.get({ timeout: 500 });
      } catch (e) {
        if (!(e instanceof Empty)) throw e;
        if (await this.isClosed() && await this.empty()) return;
      }
    }
  }

  /** `ClusterQueue(name)`. */
  toString(): string {
    return `Cluster${this.#joinable ? "Joinable" : ""}Queue(${this.name})`;
  }
}

/**
 * A cluster queue whose items count as unfinished until `taskDone()` (Python's
 * `JoinableQueue`). Create it with `cluster.JoinableQueue(name)`.
 *
 * `get` leaves the item unacknowledged and keeps it alive with a heartbeat; `taskDone()`
 * acknowledges the oldest item this handle got and has not finished. If this process dies first,
 * the server redelivers its unfinished items after the ack wait. `join()` resolves when no item
 * is waiting or unfinished on any machine.
 *
 * @example
 * ```ts
 * import { connectCluster } from "./mod.ts";
 * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
 * const q = cluster.JoinableQueue<string>(`doc-${crypto.randomUUID().slice(0, 8)}`);
 * await q.put("ada@example.com");
 * const to = await q.get();
 * console.log(`sending to ${to}`); // the work: if this process dies here, the item comes back
 * await q.taskDone();
 * await q.join(); // nothing is waiting or unfinished, on any machine
 * await q.destroy();
 * ```
 */
export class ClusterJoinableQueue<T = unknown> extends ClusterQueue<T> {
  /** Delivered messages this handle has not finished, oldest first. */
  #unfinished: Msg[] = [];
  #heartbeat?: ReturnType<typeof setInterval>;
  #closer = () => this.#stopHeartbeat();
  readonly #ctx2: Ctx;

  /** Use `cluster.JoinableQueue(name)`. */
  constructor(ctx: Ctx, name: string, options: ClusterQueueOptions) {
    super(ctx, name, options, true);
    this.#ctx2 = ctx;
  }

  /**
   * Keeps the message unacknowledged, with a heartbeat, until `taskDone()`.
   * @ignore
   */
  protected override accept(m: Msg, ackWait: number): Promise<T> {
    let item: T;
    try {
      item = decode<T>(m.data);
    } catch (e) {
      this.#ctx2.nc.publish(m.reply!, "-NAK");
      return Promise.reject(e);
    }
    this.#unfinished.push(m);
    if (this.#heartbeat === undefined) {
      // "In progress" resets the server's ack timer; a third of the ack wait leaves room for
      // two lost heartbeats. It stops when this process dies, which is what redelivers.
      const every = Math.max(50, Math.floor(ackWait / 3));
      this.#heartbeat = setInterval(() => {
        for (const u of this.#unfinished) this.#ctx2.nc.publish(u.reply!, "+WPI");
      }, every);
      this.#ctx2.closers.add(this.#closer);
    }
    return Promise.resolve(item);
  }

  #stopHeartbeat(): void {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    this.#ctx2.closers.delete(this.#closer);
  }

  /**
   * Marks the oldest item this handle got as done (acknowledges it to the server). Throws
   * `ValueError` when this handle has no unfinished item.
   *
   * @throws {ValueError} When this handle has no unfinished item.
   *
   * @example
   * ```ts
   * import { ValueError } from "../../mod.ts";
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.JoinableQueue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await q.put(1);
   * const job = await q.get();
   * try {
   *   console.assert(job === 1);
   * } finally {
   *   await q.taskDone();
   * }
   * const e = await q.taskDone().catch((e) => e); // nothing left to finish
   * console.assert(e instanceof ValueError);
   * await q.destroy();
   * ```
   */
  async taskDone(): Promise<void> {
    const m = this.#unfinished.shift();
    if (!m) throw new ValueError("task_done() called too many times");
    if (this.#unfinished.length === 0) this.#stopHeartbeat();
    const { nc } = this.#ctx2;
    // Confirmed, so a join() anywhere that follows this call sees the item finished.
    await retrying(nc, () => nc.request(m.reply!, "+ACK", { timeout: 5_000 }), Date.now() + 30_000);
  }

  /**
   * The number of items put and not yet done, on every machine.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.JoinableQueue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await q.put(1);
   * await q.get();
   * console.assert(await q.qsize() === 0 && await q.unfinished() === 1); // got, not done
   * await q.taskDone();
   * console.assert(await q.unfinished() === 0);
   * await q.destroy();
   * ```
   */
  async unfinished(): Promise<number> {
    const c = await this.counts();
    return c.pending + c.unacked;
  }

  /**
   * Waits until every item put on the queue (by any client) was got and marked done. Throws
   * `TimeoutError` when `timeout` (ms) passes first.
   *
   * @param options `timeout` (ms) and `signal`.
   * @throws {TimeoutError} When items are still unfinished when `timeout` passes.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.JoinableQueue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await q.put(1);
   * const consumer = (async () => {
   *   await q.get();
   *   await q.taskDone();
   * })();
   * await q.join({ timeout: 60_000 }); // resolves once the consumer called taskDone()
   * await consumer;
   * await q.destroy();
   * ```
   */
  async join(options: { timeout?: number; signal?: AbortSignal } = {}): Promise<void> {
    const timeout = checkMs("timeout", options.timeout);
    const deadline = Date.now() + (timeout ?? 1e15);
    // Polling the consumer's counts: the server has no "all acknowledged" event, and a poll
    // every 50-200 ms costs one small request.
    for (let delay = 50;; delay = Math.min(delay * 2, 200)) {
      if ((await this.unfinished()) === 0) return;
      if (Date.now() + delay > deadline) {
        throw new TimeoutError(`join() on Queue ${this.name} timed out`);
      }
      await sleep(delay, options.signal);
    }
  }
}
