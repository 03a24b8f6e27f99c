/**
 * The caller's side of a cluster pool (`cluster.Pool({ name })`): tasks published on a
 * work-queue stream that worker processes pull (worker.ts), results read from a stream with one
 * consumer per caller.
 *
 * A worker publishes a result, then acknowledges the task, so a worker killed in between causes
 * a redelivery and maybe a second result: the caller drops results whose task it already settled.
 * Task publishes are not awaited one at a time but through a window of in-flight publishes
 * (`Gate`), which is what makes a map of small tasks fast.
 *
 * @module
 */

import {
  AckPolicy,
  checkMs,
  checkName,
  type ConsumerMessages,
  decode,
  ensureConsumer,
  ensureStream,
  HDR_FN,
  HDR_ID,
  HDR_KIND,
  HDR_OK,
  HDR_REPLY,
  nanos,
  natsHeaders,
  RetentionPolicy,
  retrying,
  StorageType,
} from "./nats.ts";
import type { Ctx } from "./context.ts";
import { TimeoutError, ValueError } from "../core/errors.ts";
import { dumps } from "../core/reduction.ts";
import type { TaskKind } from "./exec.ts";

// ---------------------------------------------------------------------------------------------
// Pool: caller side

/** Options of `cluster.Pool`. */
export interface ClusterPoolOptions {
  /** The pool's name: workers started with `--pool NAME` run its tasks. */
  name: string;
  /** Overrides the cluster's `ackWait` for the pool's tasks (applied to the pool's consumer). */
  ackWait?: number;
  /** How many task publishes may await the server's acknowledgement at once; default 1024. */
  window?: number;
}

/** Options of `applyAsync`. */
export interface ClusterApplyOptions<R> {
  /** Called with the result on success. */
  callback?: (result: R) => void;
  /** Called with the error on failure. */
  errorCallback?: (error: unknown) => void;
}

/** A task function, or the name of an export of the workers' `--module`. */
// deno-lint-ignore no-explicit-any
export type TaskFn<A extends unknown[] = any[], R = unknown> = ((...args: A) => R) | string;

type Settle = (ok: boolean, bytes: Uint8Array) => void;

function fnName(fn: TaskFn): string {
  const name = typeof fn === "string" ? fn : fn?.name;
  if (typeof name !== "string" || !name || name === "anonymous" || name.startsWith("bound ")) {
    throw new ValueError(
      "a cluster task must be a named function exported by the workers' --module (or its name)",
    );
  }
  return name;
}

/**
 * The result of `applyAsync` (Python's `AsyncResult`): awaitable, with `get`, `wait`, `ready`,
 * `successful`.
 *
 * @example
 * ```ts
 * import { add } from "../../tests/cluster/fixtures/cluster_tasks.ts"; // workers' --module
 * import { examplePool } from "../../tests/cluster/fixtures/doc_pool.ts";
 * await using pool = await examplePool(); // a pool, and a worker serving it in this process
 * const r = pool.applyAsync(add, [1, 2]);
 * console.assert(await r.get(5000) === 3);
 * console.assert(r.ready() && r.successful());
 * ```
 */
export class ClusterAsyncResult<R> implements PromiseLike<R> {
  #promise: Promise<R>;
  #state: "pending" | "ok" | "error" = "pending";

  /** Made by `applyAsync`. */
  constructor(promise: Promise<R>) {
    this.#promise = promise;
    promise.then(() => (this.#state = "ok"), () => (this.#state = "error"));
  }

  /**
   * The result; throws the task's error, or `TimeoutError` after `timeout` ms.
   *
   * @param timeout Milliseconds to wait; default: forever.
   */
  async get(timeout?: number): Promise<R> {
    if (timeout === undefined) return await this.#promise;
    let t: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        this.#promise,
        new Promise<never>((_, reject) => {
          t = setTimeout(() => reject(new TimeoutError()), timeout);
        }),
      ]);
    } finally {
      clearTimeout(t);
    }
  }

  /**
   * Waits until the result is ready or `timeout` ms pass.
   *
   * @param timeout Milliseconds to wait; default: forever.
   */
  async wait(timeout?: number): Promise<void> {
    try {
      await this.get(timeout);
    } catch { /* ready() and get() tell */ }
  }

  /** Whether the task finished. */
  ready(): boolean {
    return this.#state !== "pending";
  }

  /** Whether the task finished without error; throws `ValueError` when not ready. */
  successful(): boolean {
    if (this.#state === "pending") throw new ValueError("result is not ready");
    return this.#state === "ok";
  }

  /** Makes the result awaitable. */
  then<A = R, B = never>(
    onfulfilled?: ((value: R) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.#promise.then(onfulfilled, onrejected);
  }
}

/** A counting gate for in-flight publishes. */
export class Gate {
  #free: number;
  #waiters: (() => void)[] = [];
  constructor(n: number) {
    this.#free = n;
  }
  async enter(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((r) => this.#waiters.push(r));
  }
  leave(): void {
    const w = this.#waiters.shift();
    if (w) w();
    else this.#free++;
  }
}

/**
 * A pool whose tasks run on worker processes anywhere (Python's `Pool`, across machines).
 * Create it with `cluster.Pool({ name })`; start workers with the worker command. Tasks name a
 * function exported by the workers' `--module`: pass the function itself (its name is used) or
 * the name. Results come back once each, in order for `map`/`imap`, even when a worker died and
 * its tasks were redelivered.
 *
 * @example
 * ```ts
 * import { connectCluster, runClusterWorker } from "./mod.ts";
 * import { add, square } from "../../tests/cluster/fixtures/cluster_tasks.ts";
 * const servers = Deno.env.get("NATS_URL")!, name = `doc-${crypto.randomUUID().slice(0, 8)}`;
 * // Workers run the worker command (`cli.ts --servers ... --pool NAME --module ./tasks.ts`) on
 * // any machines; for this example, one runs in this process, its tasks inline.
 * const stop = new AbortController();
 * const module = import.meta.resolve("../../tests/cluster/fixtures/cluster_tasks.ts");
 * const signal = stop.signal;
 * const worker = runClusterWorker({ servers, pool: name, module, processes: 0, signal });
 *
 * await using cluster = await connectCluster({ servers });
 * await using pool = cluster.Pool({ name });
 * console.assert(await pool.apply(add, [2, 3]) === 5);
 * console.assert((await pool.map(square, [1, 2, 3, 4])).join() === "1,4,9,16");
 * for await (const x of pool.imap(square, [5, 6])) console.log(x); // 25, then 36
 * await pool.close();
 * stop.abort();
 * await worker;
 * ```
 */
export class ClusterPool implements AsyncDisposable {
  readonly #ctx: Ctx;
  readonly #options: ClusterPoolOptions;
  readonly #clientId = crypto.randomUUID().replace(/-/g, "").slice(0, 20);
  readonly #pending = new Map<string, Settle>();
  readonly #gate: Gate;
  #seq = 0;
  #ready?: Promise<void>;
  #messages?: ConsumerMessages;
  #loop?: Promise<void>;
  #closed = false;
  #closer = () => this.close();
  /** The pool's name. */
  readonly name: string;

  /** Use `cluster.Pool({ name })`. */
  constructor(ctx: Ctx, options: ClusterPoolOptions) {
    this.#ctx = ctx;
    this.name = checkName("pool", options.name);
    checkMs("ackWait", options.ackWait);
    this.#options = options;
    this.#gate = new Gate(options.window ?? 1024);
  }

  get #resultSubject(): string {
    return `denomp.r.${this.name}.${this.#clientId}`;
  }

  #start(): Promise<void> {
    if (this.#closed) return Promise.reject(new ValueError("Pool not running"));
    return this.#ready ??= (async () => {
      const { nc, jsm, js } = this.#ctx;
      await ensurePoolStreams(this.#ctx, this.name, this.#options.ackWait);
      const durable = `c_${this.#clientId}`;
      await retrying(nc, () =>
        jsm.consumers.add(resultStream(this.name), {
          durable_name: durable,
          ack_policy: AckPolicy.Explicit,
          filter_subject: this.#resultSubject,
          max_ack_pending: -1,
          // A caller that vanished without close() leaves its consumer; the server drops it.
          inactive_threshold: nanos(3_600_000),
        }), Date.now() + 30_000);
      const consumer = await js.consumers.get(resultStream(this.name), durable);
      this.#messages = await consumer.consume({ max_messages: 2048 });
      this.#ctx.closers.add(this.#closer);
      this.#loop = (async () => {
        for await (const m of this.#messages!) {
          const id = m.headers?.get(HDR_ID) ?? "";
          const settle = this.#pending.get(id);
          // A result whose task is no longer pending is a copy from a redelivery: dropped.
          if (settle) {
            this.#pending.delete(id);
            settle(m.headers?.get(HDR_OK) === "1", m.data);
          }
          m.ack();
        }
      })();
    })();
  }

  /** Publishes one task; `settle` gets its result. */
  async #submit(fn: string, kind: TaskKind, payload: Uint8Array, settle: Settle): Promise<void> {
    await this.#start();
    const id = `${this.#clientId}.${++this.#seq}`;
    const h = natsHeaders();
    h.set(HDR_ID, id);
    h.set(HDR_FN, fn);
    h.set(HDR_KIND, kind);
    h.set(HDR_REPLY, this.#resultSubject);
    this.#pending.set(id, settle);
    await this.#gate.enter();
    const { nc, js } = this.#ctx;
    // Not awaited past the gate: many publishes are in flight at once, which is what makes a
    // map of small tasks fast. The id doubles as the message id, so a retry is not a 2nd task.
    retrying(
      nc,
      () => js.publish(taskSubject(this.name), payload, { headers: h, msgID: id }),
      Date.now() + 120_000,
    )
      .catch((e) => {
        if (this.#pending.delete(id)) settle(false, dumps(e, "error"));
      })
      .finally(() => this.#gate.leave());
  }

  #call<R>(fn: string, kind: TaskKind, payload: Uint8Array): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#submit(fn, kind, payload, (ok, bytes) => {
        let v: unknown;
        try {
          v = decode(bytes);
        } catch (e) {
          return reject(e);
        }
        if (ok) resolve(v as R);
        else reject(v);
      }).catch(reject);
    });
  }

  /**
   * Runs `fn(...args)` on a worker and resolves to its result.
   *
   * @param fn The task: a function exported by the workers' `--module`, or its name.
   * @param args Its arguments.
   * @throws {ValueError} When `fn` is anonymous (it must be a named export), or the pool was
   *   closed.
   * @throws Whatever the task threw (its class kept when it can be sent).
   *
   * @example
   * ```ts
   * import { add } from "../../tests/cluster/fixtures/cluster_tasks.ts"; // workers' --module
   * import { examplePool } from "../../tests/cluster/fixtures/doc_pool.ts";
   * await using pool = await examplePool(); // a pool, and a worker serving it in this process
   * const sum = await pool.apply(add, [1, 2]);
   * console.assert(sum === 3);
   * ```
   */
  apply<A extends unknown[], R>(
    fn: TaskFn<A, R>,
    args: A = [] as unknown as A,
  ): Promise<Awaited<R>> {
    return this.#call<Awaited<R>>(fnName(fn), "apply", dumps(args, "args"));
  }

  /**
   * Like `apply`, returning an {@link ClusterAsyncResult} at once.
   *
   * @param fn The task: a function exported by the workers' `--module`, or its name.
   * @param args Its arguments.
   * @param options `callback` and `errorCallback`.
   *
   * @example
   * ```ts
   * import { add } from "../../tests/cluster/fixtures/cluster_tasks.ts"; // workers' --module
   * import { examplePool } from "../../tests/cluster/fixtures/doc_pool.ts";
   * await using pool = await examplePool(); // a pool, and a worker serving it in this process
   * const r = pool.applyAsync(add, [1, 2], { callback: (x) => console.log(x) }); // logs 3
   * await r.wait();
   * console.assert(r.successful());
   * ```
   */
  applyAsync<A extends unknown[], R>(
    fn: TaskFn<A, R>,
    args: A = [] as unknown as A,
    options: ClusterApplyOptions<Awaited<R>> = {},
  ): ClusterAsyncResult<Awaited<R>> {
    const p = this.#call<Awaited<R>>(fnName(fn), "apply", dumps(args, "args"));
    p.then(options.callback, options.errorCallback);
    p.catch(() => {}); // the rejection is reported through the result, not as unhandled
    return new ClusterAsyncResult(p);
  }

  /**
   * Yields the results of each chunk of tasks: in order, or as they come.
   * At most `ahead` chunks are outstanding, so an endless iterable does not flood the server.
   */
  async *#chunks<R>(
    fn: string,
    kind: TaskKind,
    items: Iterable<unknown>,
    chunksize: number,
    ordered: boolean,
  ): AsyncGenerator<R[]> {
    if (!Number.isInteger(chunksize) || chunksize < 1) {
      throw new ValueError(`'chunksize' must be a positive integer: current value is ${chunksize}`);
    }
    const ahead = 4096;
    const inflight: Promise<R[]>[] = [];
    const done: (R[] | { error: unknown })[] = [];
    let wake: (() => void) | undefined;
    const it = items[Symbol.iterator]();
    let exhausted = false;
    const fill = () => {
      while (!exhausted && inflight.length < ahead) {
        const chunk: unknown[] = [];
        while (chunk.length < chunksize) {
          const r = it.next();
          if (r.done) {
            exhausted = true;
            break;
          }
          chunk.push(r.value);
        }
        if (chunk.length === 0) break;
        const p = this.#call<R[]>(fn, kind, dumps(chunk, "items"));
        // Observed when its turn comes; until then (or if an earlier chunk failed and the
        // caller stopped) its rejection must not count as unhandled.
        p.catch(() => {});
        inflight.push(p);
        if (!ordered) {
          p.then((v) => done.push(v), (error) => done.push({ error })).then(() => {
            inflight.splice(inflight.indexOf(p), 1);
            wake?.();
          });
        }
      }
    };
    fill();
    if (ordered) {
      while (inflight.length) {
        const p = inflight.shift()!;
        yield await p;
        fill();
      }
      return;
    }
    while (inflight.length || done.length) {
      if (!done.length) await new Promise<void>((r) => (wake = r));
      while (done.length) {
        const v = done.shift()!;
        if ("error" in v) throw v.error;
        yield v;
      }
      fill();
    }
  }

  /**
   * Runs `fn(item)` for every item on the workers and resolves to the results in order. Items go
   * `chunksize` to a task (default: about 128 tasks in all, so that many workers share them and
   * each message carries many small items).
   *
   * @param fn The task: a function exported by the workers' `--module`, or its name.
   * @param iterable The items, one argument each.
   * @param chunksize Items per task.
   * @throws The first error a task threw, in item order.
   *
   * @example
   * ```ts
   * import { square } from "../../tests/cluster/fixtures/cluster_tasks.ts"; // workers' --module
   * import { examplePool } from "../../tests/cluster/fixtures/doc_pool.ts";
   * await using pool = await examplePool(); // a pool, and a worker serving it in this process
   * const squares = await pool.map(square, [1, 2, 3]);
   * console.assert(squares.join() === "1,4,9");
   * ```
   */
  async map<T, R>(
    fn: TaskFn<[T], R>,
    iterable: Iterable<T>,
    chunksize?: number,
  ): Promise<Awaited<R>[]> {
    return await this.#all<Awaited<R>>(fnName(fn), "map", iterable, chunksize);
  }

  /**
   * Like `map` for argument lists: `fn(...args)` for each.
   *
   * @param fn The task: a function exported by the workers' `--module`, or its name.
   * @param iterable The argument lists.
   * @param chunksize Argument lists per task.
   *
   * @example
   * ```ts
   * import { add } from "../../tests/cluster/fixtures/cluster_tasks.ts"; // workers' --module
   * import { examplePool } from "../../tests/cluster/fixtures/doc_pool.ts";
   * await using pool = await examplePool(); // a pool, and a worker serving it in this process
   * const sums = await pool.starmap(add, [[1, 2], [3, 4]]);
   * console.assert(sums.join() === "3,7");
   * ```
   */
  async starmap<A extends unknown[], R>(
    fn: TaskFn<A, R>,
    iterable: Iterable<A>,
    chunksize?: number,
  ): Promise<Awaited<R>[]> {
    return await this.#all<Awaited<R>>(fnName(fn), "starmap", iterable, chunksize);
  }

  /** All the results of a `map` or `starmap`, in order (default chunks: ~128 of them). */
  async #all<R>(
    fn: string,
    kind: "map" | "starmap",
    iterable: Iterable<unknown>,
    chunksize: number | undefined,
  ): Promise<R[]> {
    const items = Array.from(iterable);
    const size = chunksize ?? Math.max(1, Math.ceil(items.length / 128));
    const out: R[] = [];
    for await (const chunk of this.#chunks<R>(fn, kind, items, size, true)) {
      for (const v of chunk) out.push(v);
    }
    return out;
  }

  /**
   * Yields `fn(item)` for every item, in order, as results arrive (`chunksize` items a task,
   * default 1).
   *
   * @param fn The task: a function exported by the workers' `--module`, or its name.
   * @param iterable The items (may be endless: at most 4096 tasks are in flight).
   * @param chunksize Items per task.
   *
   * @example
   * ```ts
   * import { square } from "../../tests/cluster/fixtures/cluster_tasks.ts"; // workers' --module
   * import { examplePool } from "../../tests/cluster/fixtures/doc_pool.ts";
   * await using pool = await examplePool(); // a pool, and a worker serving it in this process
   * const got: number[] = [];
   * for await (const x of pool.imap(square, [1, 2, 3])) got.push(x);
   * console.assert(got.join() === "1,4,9");
   * ```
   */
  async *imap<T, R>(
    fn: TaskFn<[T], R>,
    iterable: Iterable<T>,
    chunksize = 1,
  ): AsyncGenerator<Awaited<R>> {
    yield* this.#each<Awaited<R>>(fn, iterable, chunksize, true);
  }

  /**
   * Like `imap`, yielding results in the order they finish.
   *
   * @param fn The task: a function exported by the workers' `--module`, or its name.
   * @param iterable The items (may be endless: at most 4096 tasks are in flight).
   * @param chunksize Items per task.
   *
   * @example
   * ```ts
   * import { square } from "../../tests/cluster/fixtures/cluster_tasks.ts"; // workers' --module
   * import { examplePool } from "../../tests/cluster/fixtures/doc_pool.ts";
   * await using pool = await examplePool(); // a pool, and a worker serving it in this process
   * const got: number[] = [];
   * for await (const x of pool.imapUnordered(square, [1, 2, 3])) got.push(x);
   * console.assert(got.sort().join() === "1,4,9"); // in the order they finished
   * ```
   */
  async *imapUnordered<T, R>(
    fn: TaskFn<[T], R>,
    iterable: Iterable<T>,
    chunksize = 1,
  ): AsyncGenerator<Awaited<R>> {
    yield* this.#each<Awaited<R>>(fn, iterable, chunksize, false);
  }

  /** The results of an `imap` (`ordered`) or `imapUnordered`, one by one. */
  async *#each<R>(
    fn: TaskFn<never>,
    iterable: Iterable<unknown>,
    chunksize: number,
    ordered: boolean,
  ): AsyncGenerator<R> {
    for await (const chunk of this.#chunks<R>(fnName(fn), "map", iterable, chunksize, ordered)) {
      yield* chunk;
    }
  }

  /**
   * Stops the pool on this client: pending results reject with `ValueError`, and the result
   * consumer is removed from the server. Workers and other callers are not affected.
   *
   * @example
   * ```ts
   * import { ValueError } from "../../mod.ts";
   * import { add } from "../../tests/cluster/fixtures/cluster_tasks.ts"; // workers' --module
   * import { examplePool } from "../../tests/cluster/fixtures/doc_pool.ts";
   * await using pool = await examplePool(); // a pool, and a worker serving it in this process
   * await pool.close();
   * const late = await pool.apply(add, [1, 2]).catch((e) => e);
   * console.assert(late instanceof ValueError); // closed on this client
   * ```
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#ctx.closers.delete(this.#closer);
    const ready = this.#ready;
    if (!ready) return;
    try {
      await ready;
    } catch {
      return;
    }
    for (const [id, settle] of this.#pending) {
      this.#pending.delete(id);
      settle(false, dumps(new ValueError("Pool was closed before the task finished"), "error"));
    }
    await this.#messages?.close();
    await this.#loop;
    if (!this.#ctx.nc.isClosed()) {
      try {
        await this.#ctx.jsm.consumers.delete(resultStream(this.name), `c_${this.#clientId}`);
      } catch { /* gone already, or the server is away: its inactivity threshold cleans up */ }
    }
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

export const taskStream = (pool: string) => `DENOMP_P_${pool}`;
const taskSubject = (pool: string) => `denomp.p.${pool}`;
const resultStream = (pool: string) => `DENOMP_R_${pool}`;
export const WORKER_CONSUMER = "workers";

/**
 * Creates a pool's task and result streams and its workers' consumer; resolves to the ack wait.
 *
 * @param ctx The cluster's context.
 * @param pool The pool's name.
 * @param ackWait The workers' ack wait (ms), when the caller overrides the cluster's.
 */
export async function ensurePoolStreams(ctx: Ctx, pool: string, ackWait?: number): Promise<number> {
  const { nc, jsm } = ctx;
  await ensureStream(nc, jsm, {
    name: taskStream(pool),
    subjects: [taskSubject(pool)],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    duplicate_window: nanos(120_000),
  });
  await ensureStream(nc, jsm, {
    name: resultStream(pool),
    subjects: [`denomp.r.${pool}.*`],
    // Each caller's consumer filters its own subject, so a result is removed once its caller
    // acknowledges it; results for a caller that is gone expire after an hour.
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    max_age: nanos(3_600_000),
    duplicate_window: nanos(120_000),
  });
  return await ensureConsumer(nc, jsm, taskStream(pool), {
    durable_name: WORKER_CONSUMER,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(ackWait ?? ctx.ackWait),
    max_deliver: -1,
    max_ack_pending: -1,
  }, ackWait !== undefined);
}
