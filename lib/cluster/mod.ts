// deno-lint-ignore-file no-import-prefix
/**
 * Beyond one machine: queues, pools and shared dicts on NATS JetStream, with the local API.
 *
 * ```ts ignore
 * import { connectCluster } from "jsr:@denomp/multiprocessing/cluster";
 * await using cluster = await connectCluster({ servers: "nats://127.0.0.1:4222" });
 * const q = cluster.JoinableQueue<string>("jobs");   // any machine, same name, same queue
 * const d = cluster.dict<string, number>("scores");  // JetStream KV
 * const pool = cluster.Pool({ name: "crunch" });     // run by `deno run -A .../worker ...`
 * ```
 *
 * How each concept maps onto JetStream, and why:
 * - A queue is a **work-queue stream** (a message is stored until acknowledged) with one shared
 *   durable pull consumer: every `get`, on any machine, pulls from that consumer, so each item
 *   goes to one getter. `Queue.get` acknowledges at once; `JoinableQueue.get` leaves the item
 *   pending until `taskDone()` acknowledges it, while a heartbeat (`+WPI`) keeps it ours. When
 *   the getter dies the heartbeat stops, and the server redelivers the item after the ack wait:
 *   delivery is at least once. `join()` waits until the consumer has nothing pending nor
 *   unacknowledged, which counts every machine.
 * - `dict` is a **KV bucket**; keys of any sendable kind are encoded with the codec, and the
 *   bucket's per-key revisions give compare-and-set.
 * - A pool is a work-queue stream of tasks, pulled by worker processes (`runClusterWorker`,
 *   the `lib/cluster/worker.ts` command), and a stream of results with one consumer per caller.
 *   A worker publishes a result, then acknowledges the task, so a worker killed in between
 *   causes a redelivery and maybe a second result: callers drop results whose task id they
 *   already have. Task and result publishes carry a message id, so the server's duplicate window
 *   drops the copies a retried publish makes.
 *
 * Items, arguments and results are encoded with the library's one codec (lib/core/reduction.ts), so
 * they keep the fidelity of local queues (Map, Set, Date, BigInt, typed arrays, errors).
 *
 * This module is not exported by mod.ts: it is the only part of denomp that needs npm packages
 * (the NATS client), and users who never use NATS should not load them.
 *
 * @module
 */

// Pinned npm specifiers inline (see the file-level lint ignore at the top), not in deno.json's
// import map: the NATS client is a dependency of this module alone.
import {
  connect,
  headers as natsHeaders,
  type Msg,
  type MsgHdrs,
  nanos,
  type NatsConnection,
} from "npm:@nats-io/transport-node@3.4.0";
import {
  AckPolicy,
  type ConsumerMessages,
  DiscardPolicy,
  jetstream,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
  type JsMsg,
  RetentionPolicy,
  StorageType,
} from "npm:@nats-io/jetstream@3.4.0";
import { type KV, type KvEntry, Kvm } from "npm:@nats-io/kv@3.4.0";
import { Empty, Full, TimeoutError, ValueError } from "../core/errors.ts";
import { KeyError } from "../core/lookup_errors.ts";
import { dumps, loads } from "../core/reduction.ts";
import { type ExecResult, type ExecTask, runTask, type TaskKind } from "./_exec.ts";
import { Queue as LocalQueue } from "../queues/queues.ts";
import { Process } from "../process/process.ts";
import type { Actor, ActorClass } from "../actor/actor.ts";
import {
  type ActorClient,
  type ActorHost,
  ClusterActorRef,
  type ClusterSpawnOptions,
  hostActors,
  spawnOnCluster,
  virtualRef,
} from "./actors.ts";

export { ClusterActorRef, type ClusterSpawnOptions };

// ---------------------------------------------------------------------------------------------
// Options

/** TLS settings passed through to the NATS client (file paths or PEM text). */
export interface ClusterTlsOptions {
  /** CA certificate file to trust. */
  caFile?: string;
  /** CA certificate, PEM text. */
  ca?: string;
  /** Client certificate file (mutual TLS). */
  certFile?: string;
  /** Client certificate, PEM text. */
  cert?: string;
  /** Client key file (mutual TLS). */
  keyFile?: string;
  /** Client key, PEM text. */
  key?: string;
  /** Start TLS before the NATS handshake (the server must be configured for it). */
  handshakeFirst?: boolean;
  /** `false` accepts any server certificate: for tests only. */
  rejectUnauthorized?: boolean;
}

/** Options of {@link connectCluster}. Credentials are passed to the client and never logged. */
export interface ClusterOptions {
  /** One server URL or several, e.g. `"nats://127.0.0.1:4222"`. */
  servers: string | string[];
  /** User name, for user/password authentication. */
  user?: string;
  /** Password, for user/password authentication. */
  pass?: string;
  /** Token, for token authentication. */
  token?: string;
  /** TLS settings; `{}` requires TLS with the system's CAs. */
  tls?: ClusterTlsOptions;
  /** The connection's name, shown by the server's monitoring. */
  name?: string;
  /**
   * Milliseconds a delivered queue item or pool task may stay unacknowledged (with no heartbeat)
   * before the server redelivers it: how long after a consumer's death its work moves elsewhere.
   * Used when this client creates a queue or pool; default 30 000.
   */
  ackWait?: number;
  /** Milliseconds between reconnection attempts after the server went away; default 250. */
  reconnectTimeWait?: number;
}

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
// Helpers

const NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
const HDR_ID = "Denomp-Id", HDR_FN = "Denomp-Fn", HDR_KIND = "Denomp-Kind";
const HDR_REPLY = "Denomp-Reply", HDR_OK = "Denomp-Ok";
/** JetStream API error codes we act on. */
const ERR_MAX_MSGS = 10077, ERR_STREAM_NOT_FOUND = 10059;
const ERR_WRONG_LAST_SEQ = 10071, ERR_KEY_EXISTS = 10164;
const DEFAULT_ACK_WAIT = 30_000;

function checkName(what: string, name: string): string {
  if (typeof name !== "string" || !NAME_RE.test(name)) {
    throw new ValueError(
      `${what} name must be 1-64 letters, digits, '-' or '_': current value is ${
        JSON.stringify(name)
      }`,
    );
  }
  return name;
}

function checkMs(what: string, v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || Number.isNaN(v) || v < 0) {
    throw new ValueError(
      `'${what}' must be a non-negative number of milliseconds: current value is ${v}`,
    );
  }
  return v;
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

/** Sleeps `ms`, waking early (with a rejection) when `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError(signal!));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Decodes bytes received from the NATS client. They are a Node `Buffer`, whose `slice` is a view
 * rather than a copy, and the codec slices typed arrays out of its input: a plain `Uint8Array`
 * view over the same memory decodes correctly without copying.
 */
function decode<T>(data: Uint8Array): T {
  return loads<T>(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

const apiCode = (e: unknown): number | undefined =>
  e instanceof JetStreamApiError ? e.code : undefined;

/**
 * Whether a failed call may succeed when tried again: the server is restarting or JetStream is
 * not ready yet (timeouts, no responders, 503), as opposed to a refusal or a closed connection.
 */
function transient(e: unknown, nc: NatsConnection): boolean {
  if (nc.isClosed()) return false;
  if (e instanceof JetStreamApiError) return e.status === 503 || e.status === 408;
  const name = (e as Error)?.name ?? "";
  return /Timeout|NoResponders|Request|Connection|Disconnect/i.test(name) ||
    /timeout|no responders|disconnect/i.test(String((e as Error)?.message));
}

/** Runs `fn` again while it fails with a transient error, until `deadline` (epoch ms). */
async function retrying<T>(
  nc: NatsConnection,
  fn: () => Promise<T>,
  deadline: number,
  signal?: AbortSignal,
): Promise<T> {
  for (let delay = 50;; delay = Math.min(delay * 2, 1000)) {
    try {
      return await fn();
    } catch (e) {
      if (!transient(e, nc) || Date.now() + delay > deadline) throw e;
      await sleep(delay, signal);
    }
  }
}

/** Creates a stream, or leaves an existing one of that name as it is (its config wins). */
async function ensureStream(
  nc: NatsConnection,
  jsm: JetStreamManager,
  cfg: Parameters<JetStreamManager["streams"]["add"]>[0],
): Promise<void> {
  await retrying(nc, async () => {
    try {
      await jsm.streams.info(cfg.name);
    } catch (e) {
      if (apiCode(e) !== ERR_STREAM_NOT_FOUND) throw e;
      try {
        await jsm.streams.add(cfg);
      } catch (e2) {
        // Another client created it between our two calls: theirs is as good as ours.
        if (!(e2 instanceof JetStreamApiError) || e2.status !== 400) throw e2;
      }
    }
  }, Date.now() + 30_000);
}

type ConsumerCfg = Parameters<JetStreamManager["consumers"]["add"]>[1];

/**
 * Creates a durable consumer, or keeps an existing one; `ackWait` (ms), when given, is applied
 * to an existing consumer too. Returns the consumer's ack wait in milliseconds.
 */
async function ensureConsumer(
  nc: NatsConnection,
  jsm: JetStreamManager,
  stream: string,
  cfg: ConsumerCfg & { durable_name: string },
  ackWaitGiven: boolean,
): Promise<number> {
  return await retrying(nc, async () => {
    let info;
    try {
      info = await jsm.consumers.info(stream, cfg.durable_name);
    } catch {
      try {
        info = await jsm.consumers.add(stream, cfg);
      } catch {
        info = await jsm.consumers.info(stream, cfg.durable_name); // created meanwhile
      }
    }
    if (ackWaitGiven && cfg.ack_wait !== undefined && info.config.ack_wait !== cfg.ack_wait) {
      info = await jsm.consumers.update(stream, cfg.durable_name, { ack_wait: cfg.ack_wait });
    }
    return Math.max(1, Math.round((info.config.ack_wait ?? nanos(DEFAULT_ACK_WAIT)) / 1e6));
  }, Date.now() + 30_000);
}

/** Status code of a pull response: 0 for a message, 404/408/409... for "nothing" answers. */
function statusOf(m: Msg): number {
  const h = m.headers as MsgHdrs | undefined;
  return h && h.hasError ? h.code : h?.code && m.data.length === 0 ? h.code : 0;
}

/** The base URL for errors and logs: any `user:password@` part is cut, so no secret is printed. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@]*@/, "//***@");
}

// ---------------------------------------------------------------------------------------------
// Cluster

/** What every handle of a cluster shares: its connection and JetStream contexts. */
interface Ctx {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kvm: Kvm;
  ackWait: number;
  closing: AbortController;
  /** The bucket of closed queues' marks, opened on first use. */
  closedMarks?: Promise<KV>;
  /** Things to stop before the connection closes (pools' result consumers, heartbeats). */
  closers: Set<() => Promise<void> | void>;
  /** The actor registry bucket (lib/cluster/actors.ts), opened on first use. */
  actorRegistry(): Promise<KV>;
  /** The reply inbox of this client's actor calls, made on first use. */
  actorClient?: ActorClient;
}

/** Lets the worker side of this module reach a cluster's context without a public accessor. */
const clusterCtx = new WeakMap<Cluster, Ctx>();

// Deno's node:net (2.9) can still raise a read error on a socket that the NATS client has
// already destroyed, after the server refused it (wrong credentials): an uncaught ECONNRESET
// from inside node:net that would end the program although `connect` already rejected. For a
// short while after each connection attempt, such errors are dropped; any other error, and
// any ECONNRESET outside those windows, reaches the program as usual.
let resetGuards = 0;
function dropLateReset(ev: ErrorEvent): void {
  const e = ev.error as { code?: unknown; stack?: unknown } | null;
  if (e?.code === "ECONNRESET" && String(e.stack).includes("onStreamRead")) ev.preventDefault();
}
function guardLateResets(): () => void {
  if (resetGuards++ === 0) globalThis.addEventListener("error", dropLateReset);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const t = setTimeout(() => {
      if (--resetGuards === 0) globalThis.removeEventListener("error", dropLateReset);
    }, 2000);
    Deno.unrefTimer(t);
  };
}

/**
 * Connects to a NATS server (with JetStream enabled) and returns a {@link Cluster}: factories
 * for queues, pools and dicts shared by every program connected to the same servers.
 *
 * @example
 * ```ts ignore
 * import { connectCluster } from "./mod.ts";
 * await using cluster = await connectCluster({
 *   servers: "nats://127.0.0.1:4222",
 *   token: Deno.env.get("NATS_TOKEN"),
 * });
 * const q = cluster.Queue<number>("numbers");
 * await q.put(42);
 * console.log(await q.get()); // 42
 * ```
 */
export async function connectCluster(options: ClusterOptions): Promise<Cluster> {
  const ackWait = checkMs("ackWait", options.ackWait) ?? DEFAULT_ACK_WAIT;
  const servers = Array.isArray(options.servers) ? options.servers : [options.servers];
  let nc: NatsConnection;
  const release = guardLateResets();
  try {
    nc = await connect({
      servers,
      user: options.user,
      pass: options.pass,
      token: options.token,
      tls: options.tls,
      name: options.name ?? "denomp",
      // A cluster client outlives server restarts: work is durable on the server, so the client
      // keeps trying to come back instead of failing every pending call.
      maxReconnectAttempts: -1,
      reconnectTimeWait: checkMs("reconnectTimeWait", options.reconnectTimeWait) ?? 250,
    });
  } catch (e) {
    release();
    // The client's error does not carry credentials; the URL might (`nats://u:p@host`).
    throw new Error(
      `cannot connect to NATS at ${servers.map(redactUrl).join(", ")}: ${(e as Error).message}`,
      { cause: e },
    );
  }
  release();
  const kvm = new Kvm(nc);
  let registry: Promise<KV> | undefined;
  const ctx: Ctx = {
    nc,
    js: jetstream(nc),
    jsm: await jetstreamManager(nc),
    kvm,
    ackWait,
    closing: new AbortController(),
    closers: new Set(),
    actorRegistry: () =>
      registry ??= retrying(
        nc,
        () => kvm.create("denomp_actors", { history: 1 }),
        Date.now() + 30_000,
      ),
  };
  return new Cluster(ctx);
}

/**
 * A connection to a NATS JetStream cluster and the factories of its shared objects. Handles of
 * the same kind and name refer to the same object on every machine.
 *
 * @example
 * ```ts ignore
 * import { connectCluster } from "./mod.ts";
 * const cluster = await connectCluster({ servers: "nats://127.0.0.1:4222" });
 * const d = cluster.dict<string, number>("config");
 * await d.set("retries", 3);
 * await cluster.close();
 * ```
 */
export class Cluster implements AsyncDisposable {
  #ctx: Ctx;

  /** Use {@link connectCluster}. */
  constructor(ctx: Ctx) {
    this.#ctx = ctx;
    clusterCtx.set(this, ctx);
  }

  /**
   * A FIFO queue shared by every client that names it (Python's `multiprocessing.Queue`).
   *
   * @example
   * ```ts ignore
   * const q = cluster.Queue<{ url: string }>("downloads");
   * await q.put({ url: "https://example.com" });
   * const job = await q.get({ timeout: 1000 });
   * ```
   */
  Queue<T = unknown>(name: string, options: ClusterQueueOptions = {}): ClusterQueue<T> {
    return new ClusterQueue<T>(this.#ctx, checkName("queue", name), options, false);
  }

  /**
   * A queue whose items are acknowledged by `taskDone()`, with `join()` across all machines.
   * An item got by a consumer that dies before `taskDone()` is redelivered after the ack wait.
   *
   * @example
   * ```ts ignore
   * const q = cluster.JoinableQueue<number>("work");
   * await q.put(1);
   * const n = await q.get();
   * await q.taskDone();
   * await q.join();
   * ```
   */
  JoinableQueue<T = unknown>(
    name: string,
    options: ClusterQueueOptions = {},
  ): ClusterJoinableQueue<T> {
    return new ClusterJoinableQueue<T>(this.#ctx, checkName("queue", name), options);
  }

  /**
   * A dict on a JetStream KV bucket, with the Manager dict proxy's methods and compare-and-set.
   *
   * @example
   * ```ts ignore
   * const d = cluster.dict<string, number>("counters");
   * await d.modify("hits", (n = 0) => n + 1); // safe against concurrent writers
   * ```
   */
  dict<K = unknown, V = unknown>(
    name: string,
    options: ClusterDictOptions = {},
  ): ClusterDict<K, V> {
    return new ClusterDict<K, V>(this.#ctx, checkName("dict", name), options);
  }

  /**
   * A pool whose tasks run on worker processes started with the worker command
   * (`deno run -A lib/cluster/worker.ts --servers ... --pool NAME --module ./tasks.ts`).
   *
   * @example
   * ```ts ignore
   * import { square } from "./tasks.ts";
   * await using pool = cluster.Pool({ name: "squares" });
   * console.log(await pool.map(square, [1, 2, 3])); // [1, 4, 9]
   * ```
   */
  Pool(options: ClusterPoolOptions): ClusterPool {
    return new ClusterPool(this.#ctx, options);
  }

  /**
   * Starts an actor of class `cls` on a node that hosts it (a worker started with
   * `--actors <module exporting the class>`) and resolves with its ref. The name is registered
   * cluster-wide (JetStream KV): a name that is taken rejects with `ValueError`.
   *
   * @example
   * ```ts ignore
   * import { Counter } from "./actors.ts";
   * const ref = await cluster.spawn(Counter, { name: "counter-1", args: [10] });
   * console.log(await ref.call.inc(1)); // 11
   * ```
   */
  spawn<A extends Actor, P extends unknown[]>(
    cls: ActorClass<A, P>,
    options?: ClusterSpawnOptions<P>,
  ): Promise<ClusterActorRef<A>> {
    return spawnOnCluster(this.#ctx, cls, options);
  }

  /**
   * A ref to the actor named `name`, wherever it runs; typed by its class
   * (`cluster.ref<Counter>("counter-1")`). Nothing is checked until it is used: a call to a name
   * no actor has rejects with `ActorExited` (reason `"noproc"`).
   *
   * @example
   * ```ts ignore
   * import type { Counter } from "./actors.ts";
   * const ref = cluster.ref<Counter>("counter-1");
   * await ref.call.inc(1);
   * ```
   */
  ref<A extends Actor = Actor>(name: string): ClusterActorRef<A> {
    return new ClusterActorRef<A>(this.#ctx, name);
  }

  /**
   * A ref to the virtual actor of class `cls` with key `key` (1-64 letters, digits, '-', '_'):
   * valid before the actor exists. Its first call activates it on a node hosting the class (as
   * `new cls(key)`, then `restore(state)` with its saved state, if the class has `persist()` and
   * `restore(state)`); an actor idle for `static idleMs` milliseconds (default 300 000) is
   * deactivated and activated again by the next call. A persistent actor's state is saved to
   * the cluster's KV, with compare-and-set, after every call that changed it (or at most every
   * `static persistEvery` milliseconds), so it survives deactivation and its node's death.
   * One activation at a time, cluster-wide.
   *
   * @example
   * ```ts ignore
   * import { Account } from "./actors.ts";
   * const ref = cluster.actor(Account, "user-42");
   * await ref.call.deposit(10); // activates it on some node, or reaches its activation
   * ```
   */
  actor<A extends Actor>(
    cls: ActorClass<A, [key: string]> | ActorClass<A, []>,
    key: string,
  ): ClusterActorRef<A> {
    return virtualRef(this.#ctx, cls, key);
  }

  /** Whether {@link close} was called or the connection was lost for good. */
  get closed(): boolean {
    return this.#ctx.nc.isClosed();
  }

  /**
   * Stops this client's pools and heartbeats and closes the connection. Items got and not yet
   * `taskDone()` are redelivered to other consumers after the ack wait.
   *
   * @example
   * ```ts ignore
   * await cluster.close();
   * ```
   */
  async close(): Promise<void> {
    if (this.#ctx.nc.isClosed()) return;
    this.#ctx.closing.abort(new ValueError("the cluster connection is closed"));
    for (const c of [...this.#ctx.closers]) {
      try {
        await c();
      } catch { /* closing anyway */ }
    }
    await this.#ctx.nc.close();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Queues

/**
 * The KV bucket of closed queues' marks (key: queue name). A mark in the queue's own stream
 * would count against its `maxsize`, so a full queue could not be closed.
 */
function closedMarks(ctx: Ctx): Promise<KV> {
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
 * ```ts ignore
 * const q = cluster.Queue<Map<string, number>>("maps");
 * await q.put(new Map([["a", 1]]));
 * console.log((await q.get()).get("a")); // 1
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
   * @example
   * ```ts ignore
   * await q.put({ id: 1 }, { timeout: 5000 });
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
   * @example
   * ```ts ignore
   * await q.putNowait(1);
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
   * @example
   * ```ts ignore
   * const item = await q.get({ timeout: 1000 });
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
   * @example
   * ```ts ignore
   * try { await q.getNowait(); } catch (e) { if (!(e instanceof Empty)) throw e; }
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
   * ```ts ignore
   * console.log(await q.qsize());
   * ```
   */
  async qsize(): Promise<number> {
    return (await this.counts()).pending;
  }

  /**
   * Whether `qsize()` is 0.
   *
   * @example
   * ```ts ignore
   * if (await q.empty()) console.log("nothing to do");
   * ```
   */
  async empty(): Promise<boolean> {
    return (await this.qsize()) === 0;
  }

  /**
   * Whether the queue holds `maxsize` items (never, for an unbounded queue).
   *
   * @example
   * ```ts ignore
   * if (await q.full()) console.log("back off");
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
   * ```ts ignore
   * await q.close();
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
   * ```ts ignore
   * if (await q.isClosed()) console.log("no more items will come");
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
   * ```ts ignore
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
   * ```ts ignore
   * for await (const item of q) console.log(item);
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
 * ```ts ignore
 * const q = cluster.JoinableQueue<string>("emails");
 * const to = await q.get();
 * await send(to);
 * await q.taskDone();
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
   * @example
   * ```ts ignore
   * const job = await q.get();
   * try { await run(job); } finally { await q.taskDone(); }
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
   * ```ts ignore
   * console.log(await q.unfinished());
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
   * @example
   * ```ts ignore
   * await q.join({ timeout: 60_000 });
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

  /** Stops the heartbeat of unfinished items (they are redelivered after the ack wait). */
  override async close(): Promise<void> {
    await super.close();
  }
}

// ---------------------------------------------------------------------------------------------
// dict

/** Options of `cluster.dict`. */
export interface ClusterDictOptions {
  /** `"file"` (default) survives a server restart; `"memory"` does not. */
  storage?: "file" | "memory";
}

const b64url = (b: Uint8Array): string => {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};
const unb64url = (s: string): Uint8Array => {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
};

/** Anything `update` accepts: a plain object, a Map, or `[key, value]` pairs. */
export type DictUpdate<K, V> = Map<K, V> | Iterable<readonly [K, V]> | Record<string, V>;

/**
 * A dict on a JetStream KV bucket, shared by every client that names it: the Manager dict
 * proxy's methods (all async), plus `compareAndSet` and `modify` for safe concurrent updates.
 * Keys may be any sendable value (strings, numbers, arrays...); they are stored encoded, so
 * `1` and `"1"` are different keys. As with a manager proxy, changing a value read out of the
 * dict changes nothing until it is `set` back.
 *
 * @example
 * ```ts ignore
 * const d = cluster.dict<string, number[]>("lists");
 * await d.set("a", [1, 2]);
 * await d.compareAndSet("a", [1, 2], [1, 2, 3]); // true: nobody changed it meanwhile
 * ```
 */
export class ClusterDict<K = unknown, V = unknown> {
  readonly #ctx: Ctx;
  readonly #bucket: string;
  readonly #options: ClusterDictOptions;
  #kv?: Promise<KV>;
  /** The dict's name. */
  readonly name: string;

  /** Use `cluster.dict(name)`. */
  constructor(ctx: Ctx, name: string, options: ClusterDictOptions) {
    this.#ctx = ctx;
    this.name = name;
    this.#bucket = `denomp_d_${name}`;
    this.#options = options;
  }

  #open(): Promise<KV> {
    return this.#kv ??= retrying(this.#ctx.nc, () =>
      this.#ctx.kvm.create(this.#bucket, {
        history: 1,
        storage: this.#options.storage === "memory" ? StorageType.Memory : StorageType.File,
      }), Date.now() + 30_000);
  }

  #key(key: K): string {
    return b64url(dumps(key, "key"));
  }

  async #entry(key: K): Promise<KvEntry | null> {
    const kv = await this.#open();
    const e = await kv.get(this.#key(key));
    return e && e.operation === "PUT" ? e : null;
  }

  /**
   * The value of `key`, or `dflt` when the key is missing.
   *
   * @example
   * ```ts ignore
   * const n = await d.get("n", 0);
   * ```
   */
  async get(key: K, dflt?: V): Promise<V | undefined> {
    const e = await this.#entry(key);
    return e ? decode<V>(e.value) : dflt;
  }

  /**
   * Sets `key` to `value`.
   *
   * @example
   * ```ts ignore
   * await d.set("n", 1);
   * ```
   */
  async set(key: K, value: V): Promise<void> {
    const kv = await this.#open();
    await kv.put(this.#key(key), dumps(value, "value"));
  }

  /**
   * Removes `key`; resolves to whether it was there.
   *
   * @example
   * ```ts ignore
   * await d.delete("n");
   * ```
   */
  async delete(key: K): Promise<boolean> {
    const kv = await this.#open();
    const e = await this.#entry(key);
    if (!e) return false;
    await kv.delete(this.#key(key));
    return true;
  }

  /**
   * Whether `key` is in the dict.
   *
   * @example
   * ```ts ignore
   * if (await d.has("n")) console.log("set");
   * ```
   */
  async has(key: K): Promise<boolean> {
    return (await this.#entry(key)) !== null;
  }

  async #rawKeys(): Promise<string[]> {
    const kv = await this.#open();
    const out: string[] = [];
    for await (const k of await kv.keys()) out.push(k);
    return out;
  }

  /**
   * The keys (in no particular order).
   *
   * @example
   * ```ts ignore
   * for (const k of await d.keys()) console.log(k);
   * ```
   */
  async keys(): Promise<K[]> {
    return (await this.#rawKeys()).map((k) => loads<K>(unb64url(k)));
  }

  /**
   * `[key, value]` pairs.
   *
   * @example
   * ```ts ignore
   * for (const [k, v] of await d.items()) console.log(k, v);
   * ```
   */
  async items(): Promise<[K, V][]> {
    const kv = await this.#open();
    const raw = await this.#rawKeys();
    const entries = await Promise.all(raw.map((k) => kv.get(k)));
    const out: [K, V][] = [];
    entries.forEach((e, i) => {
      // A key deleted between the listing and the read is skipped, as if listed a moment later.
      if (e && e.operation === "PUT") out.push([loads<K>(unb64url(raw[i])), decode<V>(e.value)]);
    });
    return out;
  }

  /**
   * The values.
   *
   * @example
   * ```ts ignore
   * const total = (await d.values()).reduce((a, b) => a + b, 0);
   * ```
   */
  async values(): Promise<V[]> {
    return (await this.items()).map((e) => e[1]);
  }

  /**
   * Sets every pair of `other` (a plain object, a Map, or `[key, value]` pairs).
   *
   * @example
   * ```ts ignore
   * await d.update({ a: 1, b: 2 });
   * ```
   */
  async update(other: DictUpdate<K, V>): Promise<void> {
    let pairs: [K, V][];
    if (other instanceof Map) pairs = [...other];
    else if (Symbol.iterator in Object(other)) {
      pairs = [...(other as Iterable<readonly [K, V]>)].map((p, i) => {
        if (!Array.isArray(p) || p.length !== 2) {
          throw new ValueError(
            `dictionary update sequence element #${i} has length ${
              Array.isArray(p) ? p.length : "(not a pair)"
            }; 2 is required`,
          );
        }
        return [p[0], p[1]];
      });
    } else pairs = Object.entries(other as Record<string, V>) as unknown as [K, V][];
    await Promise.all(pairs.map(([k, v]) => this.set(k, v)));
  }

  /**
   * Removes `key` and returns its value; `dflt` when missing, or `KeyError` without a default.
   * Atomic: of two clients popping the same key, one gets the value.
   *
   * @example
   * ```ts ignore
   * const job = await d.pop("next", null);
   * ```
   */
  async pop(key: K, ...dflt: [V?]): Promise<V | undefined> {
    const kv = await this.#open();
    for (let i = 0; i < 100; i++) {
      const e = await this.#entry(key);
      if (!e) {
        if (dflt.length) return dflt[0];
        throw new KeyError(key);
      }
      try {
        await kv.delete(this.#key(key), { previousSeq: e.revision });
        return decode<V>(e.value);
      } catch (err) {
        if (apiCode(err) !== ERR_WRONG_LAST_SEQ) throw err; // changed meanwhile: read again
      }
    }
    throw new Error(`pop(${String(key)}) lost 100 races in a row on dict ${this.name}`);
  }

  /**
   * The value of `key`; when missing, sets it to `dflt` first (atomically) and returns that.
   *
   * @example
   * ```ts ignore
   * const list = await d.setdefault("xs", []);
   * ```
   */
  async setdefault(key: K, dflt?: V): Promise<V | undefined> {
    const kv = await this.#open();
    for (let i = 0; i < 100; i++) {
      const e = await this.#entry(key);
      if (e) return decode<V>(e.value);
      try {
        await kv.create(this.#key(key), dumps(dflt, "value"));
        return dflt;
      } catch (err) {
        const c = apiCode(err);
        if (c !== ERR_WRONG_LAST_SEQ && c !== ERR_KEY_EXISTS) throw err;
      }
    }
    throw new Error(`setdefault lost 100 races in a row on dict ${this.name}`);
  }

  /**
   * Removes every key.
   *
   * @example
   * ```ts ignore
   * await d.clear();
   * ```
   */
  async clear(): Promise<void> {
    await this.#open();
    // Purging the bucket's stream removes all keys at once and leaves no delete markers.
    await this.#ctx.jsm.streams.purge(`KV_${this.#bucket}`);
  }

  /**
   * The number of keys.
   *
   * @example
   * ```ts ignore
   * console.log(await d.len());
   * ```
   */
  async len(): Promise<number> {
    return (await this.#rawKeys()).length;
  }

  /**
   * A local copy of the whole dict.
   *
   * @example
   * ```ts ignore
   * const snapshot: Map<string, number> = await d.copy();
   * ```
   */
  async copy(): Promise<Map<K, V>> {
    return new Map(await this.items());
  }

  /**
   * Sets `key` to `value` only if it currently holds `expected` (compared by encoded bytes;
   * `undefined` means "missing"). Resolves to whether it was set. Atomic across all clients.
   *
   * @example
   * ```ts ignore
   * const ok = await d.compareAndSet("state", "idle", "busy");
   * ```
   */
  async compareAndSet(key: K, expected: V | undefined, value: V): Promise<boolean> {
    const kv = await this.#open();
    const e = await this.#entry(key);
    const k = this.#key(key);
    try {
      if (expected === undefined) {
        if (e) return false;
        await kv.create(k, dumps(value, "value"));
        return true;
      }
      if (!e || !sameBytes(e.value, dumps(expected, "expected"))) return false;
      // The revision makes the write conditional on nobody having written since our read.
      await kv.update(k, dumps(value, "value"), e.revision);
      return true;
    } catch (err) {
      const c = apiCode(err);
      if (c === ERR_WRONG_LAST_SEQ || c === ERR_KEY_EXISTS) return false;
      throw err;
    }
  }

  /**
   * Reads `key`, computes `fn(old)` and writes it if nobody wrote meanwhile, retrying otherwise
   * (optimistic concurrency): concurrent `modify` calls on any machines never lose an update.
   * Resolves to the value written. `fn` may run more than once, so it should have no side effects.
   *
   * @example
   * ```ts ignore
   * const hits = await d.modify("hits", (n = 0) => n + 1);
   * ```
   */
  async modify(
    key: K,
    fn: (old: V | undefined) => V,
    options: { retries?: number } = {},
  ): Promise<V> {
    const retries = options.retries ?? 1000;
    for (let i = 0; i <= retries; i++) {
      const kv = await this.#open();
      const e = await this.#entry(key);
      const next = fn(e ? decode<V>(e.value) : undefined);
      const k = this.#key(key);
      try {
        if (e) await kv.update(k, dumps(next, "value"), e.revision);
        else await kv.create(k, dumps(next, "value"));
        return next;
      } catch (err) {
        const c = apiCode(err);
        if (c !== ERR_WRONG_LAST_SEQ && c !== ERR_KEY_EXISTS) throw err;
        // Lost a race: back off a little at random so contenders spread out.
        if (i > 2) await sleep(Math.random() * Math.min(50, 2 ** i));
      }
    }
    throw new TimeoutError(`modify(${String(key)}) on dict ${this.name} lost ${retries + 1} races`);
  }

  /**
   * Deletes the dict's bucket from the server, for every client.
   *
   * @example
   * ```ts ignore
   * await d.destroy();
   * ```
   */
  async destroy(): Promise<void> {
    const kv = await this.#open();
    await kv.destroy();
    this.#kv = undefined;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

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
 * ```ts ignore
 * const r = pool.applyAsync(add, [1, 2]);
 * console.log(await r.get(5000)); // 3
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

  /** The result; throws the task's error, or `TimeoutError` after `timeout` ms. */
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

  /** Waits until the result is ready or `timeout` ms pass. */
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
class Gate {
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
 * ```ts ignore
 * import { fib } from "./tasks.ts";
 * await using pool = cluster.Pool({ name: "math" });
 * console.log(await pool.apply(fib, [20]));             // 6765
 * console.log(await pool.map(fib, [1, 2, 3, 4]));       // [1, 1, 2, 3]
 * for await (const x of pool.imap(fib, [5, 6])) console.log(x);
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
   * @example
   * ```ts ignore
   * const sum = await pool.apply(add, [1, 2]);
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
   * @example
   * ```ts ignore
   * const r = pool.applyAsync(add, [1, 2], { callback: (x) => console.log(x) });
   * await r.wait();
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
   * @example
   * ```ts ignore
   * const squares = await pool.map(square, [1, 2, 3]);
   * ```
   */
  async map<T, R>(
    fn: TaskFn<[T], R>,
    iterable: Iterable<T>,
    chunksize?: number,
  ): Promise<Awaited<R>[]> {
    const items = Array.from(iterable);
    const size = chunksize ?? Math.max(1, Math.ceil(items.length / 128));
    const out: Awaited<R>[] = [];
    for await (const chunk of this.#chunks<Awaited<R>>(fnName(fn), "map", items, size, true)) {
      for (const v of chunk) out.push(v);
    }
    return out;
  }

  /**
   * Like `map` for argument lists: `fn(...args)` for each.
   *
   * @example
   * ```ts ignore
   * const sums = await pool.starmap(add, [[1, 2], [3, 4]]);
   * ```
   */
  async starmap<A extends unknown[], R>(
    fn: TaskFn<A, R>,
    iterable: Iterable<A>,
    chunksize?: number,
  ): Promise<Awaited<R>[]> {
    const items = Array.from(iterable);
    const size = chunksize ?? Math.max(1, Math.ceil(items.length / 128));
    const out: Awaited<R>[] = [];
    for await (const chunk of this.#chunks<Awaited<R>>(fnName(fn), "starmap", items, size, true)) {
      for (const v of chunk) out.push(v);
    }
    return out;
  }

  /**
   * Yields `fn(item)` for every item, in order, as results arrive (`chunksize` items a task,
   * default 1).
   *
   * @example
   * ```ts ignore
   * for await (const x of pool.imap(square, [1, 2, 3])) console.log(x);
   * ```
   */
  async *imap<T, R>(
    fn: TaskFn<[T], R>,
    iterable: Iterable<T>,
    chunksize = 1,
  ): AsyncGenerator<Awaited<R>> {
    for await (
      const chunk of this.#chunks<Awaited<R>>(fnName(fn), "map", iterable, chunksize, true)
    ) {
      yield* chunk;
    }
  }

  /**
   * Like `imap`, yielding results in the order they finish.
   *
   * @example
   * ```ts ignore
   * for await (const x of pool.imapUnordered(square, [1, 2, 3])) console.log(x);
   * ```
   */
  async *imapUnordered<T, R>(
    fn: TaskFn<[T], R>,
    iterable: Iterable<T>,
    chunksize = 1,
  ): AsyncGenerator<Awaited<R>> {
    for await (
      const chunk of this.#chunks<Awaited<R>>(fnName(fn), "map", iterable, chunksize, false)
    ) {
      yield* chunk;
    }
  }

  /**
   * Stops the pool on this client: pending results reject with `ValueError`, and the result
   * consumer is removed from the server. Workers and other callers are not affected.
   *
   * @example
   * ```ts ignore
   * await pool.close();
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

const taskStream = (pool: string) => `DENOMP_P_${pool}`;
const taskSubject = (pool: string) => `denomp.p.${pool}`;
const resultStream = (pool: string) => `DENOMP_R_${pool}`;
const WORKER_CONSUMER = "workers";

/** Creates a pool's task and result streams and its workers' consumer; resolves to the ack wait. */
async function ensurePoolStreams(ctx: Ctx, pool: string, ackWait?: number): Promise<number> {
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

// ---------------------------------------------------------------------------------------------
// Pool: worker side

/** Options of {@link runClusterWorker} (the flags of `lib/cluster/worker.ts`). */
export interface ClusterWorkerOptions extends ClusterOptions {
  /** The pool to serve (with `module`); a worker serves a pool, hosts actors, or both. */
  pool?: string;
  /** URL or path (relative to the current directory) of the module exporting the tasks. */
  module?: string;
  /**
   * URLs or paths of modules whose exported `Actor` subclasses this worker hosts as a node of
   * the cluster's actors (`cluster.spawn`); only these classes ever run here.
   */
  actors?: string[];
  /** This node's id, for the actor registry and errors; default `<hostname>-<pid>`. */
  node?: string;
  /**
   * Milliseconds an idle virtual actor (`cluster.actor`) stays activated on this node, unless its
   * class says (`static idleMs`); default 300 000.
   */
  idleMs?: number;
  /**
   * Executor processes (Web Workers) running tasks in parallel; default `navigator.hardwareConcurrency`.
   * 0 runs tasks in this process's main thread, one at a time (for I/O-bound or tiny tasks).
   */
  processes?: number;
  /** Tasks held at once (running or queued here); default 64 per executor process (64 for 0). */
  prefetch?: number;
  /** Stops the worker: it finishes no more tasks and hands back the ones it holds. */
  signal?: AbortSignal;
  /** Where progress lines go; default `console.error`. Never given a credential. */
  log?: (line: string) => void;
}

/** Runs tasks one way or another: in Web Workers, or inline. */
interface Executor {
  run(fn: string, kind: TaskKind, payload: Uint8Array): Promise<{ ok: boolean; bytes: Uint8Array }>;
  stop(): Promise<void>;
}

async function inlineExecutor(moduleUrl: string): Promise<Executor> {
  const mod = await import(moduleUrl) as Record<string, unknown>;
  return { run: (fn, kind, payload) => runTask(mod, fn, kind, payload), stop: async () => {} };
}

/**
 * N executor processes sharing one local task queue (so the idle one takes the next task), and
 * one result queue read by a pump that settles tasks by sequence number.
 */
function processExecutor(
  moduleUrl: string,
  n: number,
  onCrash: (why: string) => void,
  onFatal: (why: string) => void,
): Executor {
  const tasks = new LocalQueue<ExecTask>();
  const results = new LocalQueue<ExecResult>();
  const waiting = new Map<number, (r: { ok: boolean; bytes: Uint8Array }) => void>();
  let seq = 0, stopping = false, quickDeaths = 0;
  const procs = new Set<Process>();
  const spawn = () => {
    const p = new Process({
      target: "./_exec.ts#execLoop",
      module: import.meta.url,
      args: [moduleUrl, tasks, results],
      daemon: true,
    });
    const started = Date.now();
    p.start();
    procs.add(p);
    p.join().then(() => {
      procs.delete(p);
      if (stopping) return;
      const why = `${p.name} exited with code ${p.exitCode}`;
      // An executor that dies right after its start cannot load the module (or crashes on
      // every task): respawning it forever would only spin, so the worker gives up.
      quickDeaths = Date.now() - started < 5_000 ? quickDeaths + 1 : 0;
      if (quickDeaths >= 3) return onFatal(`${why}, 3 times in a row within 5 s of starting`);
      // Which task it held is unknown, so the caller hands all held tasks back (duplicates are
      // dropped by task id) and the executor is replaced.
      onCrash(why);
      spawn();
    });
  };
  for (let i = 0; i < n; i++) spawn();
  const pump = (async () => {
    for await (const [s, ok, bytes] of results) {
      const w = waiting.get(s);
      waiting.delete(s);
      w?.({ ok, bytes });
    }
  })();
  return {
    run(fn, kind, payload) {
      const s = ++seq;
      return new Promise<{ ok: boolean; bytes: Uint8Array }>((resolve, reject) => {
        waiting.set(s, resolve);
        // A plain Uint8Array view: the NATS client hands out Node Buffers, which the codec
        // (rightly) refuses as an unregistered class.
        const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
        tasks.put([s, fn, kind, bytes]).catch((e) => {
          waiting.delete(s);
          reject(e);
        });
      });
    },
    async stop() {
      stopping = true;
      tasks.close();
      const all = [...procs];
      for (const p of all) p.terminate();
      await Promise.all(all.map((p) => p.join(5_000)));
      results.close();
      await pump;
    },
  };
}

/**
 * Serves a cluster pool's tasks until `signal` aborts (the worker command calls this). Tasks are
 * pulled `prefetch` at a time, run on local executor processes, their results published to
 * their callers, and only then acknowledged: a worker killed at any point loses no task.
 *
 * @example
 * ```ts ignore
 * import { runClusterWorker } from "./mod.ts";
 * const stop = new AbortController();
 * Deno.addSignalListener("SIGTERM", () => stop.abort());
 * await runClusterWorker({ servers: "nats://127.0.0.1:4222", pool: "math",
 *   module: "./tasks.ts", processes: 4, signal: stop.signal });
 * ```
 */
export async function runClusterWorker(options: ClusterWorkerOptions): Promise<void> {
  const log = options.log ?? ((line: string) => console.error(line));
  const actors = options.actors ?? [];
  if (options.pool === undefined && actors.length === 0) {
    throw new ValueError(
      "a worker serves a pool (pool and module), hosts actors (actors), or both",
    );
  }
  if (options.pool !== undefined && options.module === undefined) {
    throw new ValueError(`pool '${options.pool}' needs the module exporting its tasks`);
  }
  const node = checkName(
    "node",
    options.node ?? `${Deno.hostname().replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 48)}-${Deno.pid}`,
  );
  const toUrl = (m: string) => new URL(m, `file://${Deno.cwd()}/`).href;
  const cluster = await connectCluster(options);
  const ctx = clusterCtx.get(cluster)!;
  let host: ActorHost | undefined;
  try {
    if (actors.length) {
      host = await hostActors(ctx, {
        modules: actors.map(toUrl),
        node,
        log,
        idleMs: options.idleMs,
      });
    }
    if (options.pool !== undefined) {
      await servePool(ctx, options, checkName("pool", options.pool), toUrl(options.module!), log);
    } else if (!options.signal?.aborted) {
      await new Promise((resolve) => options.signal?.addEventListener("abort", resolve));
    }
  } finally {
    await host?.stop();
    await cluster.close();
  }
}

/** The pool half of {@link runClusterWorker}: pulls, runs and answers tasks until stopped. */
async function servePool(
  ctx: Ctx,
  options: ClusterWorkerOptions,
  pool: string,
  moduleUrl: string,
  log: (line: string) => void,
): Promise<void> {
  const processes = options.processes ?? navigator.hardwareConcurrency;
  const prefetch = options.prefetch ?? 64 * Math.max(1, processes);
  const { nc, js } = ctx;
  const held = new Set<JsMsg>();
  let messages: ConsumerMessages | undefined;
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  let executor: Executor | undefined;
  let fatal: Error | undefined;
  const handBack = () => {
    for (const m of held) m.nak();
    held.clear();
  };
  try {
    const ackWait = await ensurePoolStreams(ctx, pool, undefined);
    executor = processes > 0
      ? processExecutor(moduleUrl, processes, (why) => {
        log(`denomp worker: an executor died (${why}); handing back ${held.size} tasks`);
        handBack();
      }, (why) => {
        fatal = new Error(`executor processes keep dying: ${why}`);
        messages?.stop();
      })
      : await inlineExecutor(moduleUrl);
    const consumer = await js.consumers.get(taskStream(pool), WORKER_CONSUMER);
    messages = await consumer.consume({ max_messages: prefetch });
    // Held tasks stay ours while we live: "in progress" restarts the server's ack timer.
    heartbeat = setInterval(() => {
      for (const m of held) m.working();
    }, Math.max(50, Math.floor(ackWait / 3)));
    const gate = new Gate(prefetch);
    const onAbort = () => messages?.stop();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    log(
      `denomp worker: serving pool '${pool}' from ${moduleUrl} with ${processes} processes ` +
        `(servers ${
          (Array.isArray(options.servers) ? options.servers : [options.servers]).map(redactUrl)
            .join(", ")
        })`,
    );
    const exec = executor;
    for await (const m of messages) {
      if (options.signal?.aborted || fatal) {
        m.nak();
        continue;
      }
      await gate.enter();
      held.add(m);
      const h = m.headers;
      const id = h?.get(HDR_ID) ?? "", reply = h?.get(HDR_REPLY) ?? "";
      const fn = h?.get(HDR_FN) ?? "", kind = (h?.get(HDR_KIND) ?? "apply") as TaskKind;
      (async () => {
        try {
          if (!reply.startsWith(`denomp.r.${pool}.`)) {
            m.term(); // not a task of this protocol: never deliver it again
            return;
          }
          const out = await exec.run(fn, kind, m.data);
          if (!held.has(m)) return; // handed back meanwhile: its redelivery will answer
          const rh = natsHeaders();
          rh.set(HDR_ID, id);
          rh.set(HDR_OK, out.ok ? "1" : "0");
          await retrying(
            nc,
            () => js.publish(reply, out.bytes, { headers: rh, msgID: `r-${id}` }),
            Date.now() + 120_000,
          );
          // Result first, acknowledgement second: dying in between means a duplicate result
          // (dropped by the caller), never a lost one.
          if (held.delete(m)) m.ack();
        } catch (e) {
          if (held.delete(m)) m.nak(1000);
          log(`denomp worker: task ${id} handed back: ${(e as Error).message}`);
        } finally {
          gate.leave();
        }
      })();
    }
    options.signal?.removeEventListener("abort", onAbort);
    if (fatal) throw fatal;
  } finally {
    handBack();
    if (heartbeat !== undefined) clearInterval(heartbeat);
    await messages?.close();
    await executor?.stop();
  }
}
