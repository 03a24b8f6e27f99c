/**
 * Connecting to the cluster: `connectCluster` and `Cluster`, the factories of the shared objects
 * (queues, dicts, pools, actors) of one NATS connection.
 *
 * The connection reconnects forever after the server went away, because the work is durable on
 * the server: a client that comes back finds its queues and pools where they were. Closing it
 * stops this client's pools and heartbeats, so the items it held go to others after the ack wait.
 *
 * @module
 */

import {
  checkMs,
  checkName,
  connect,
  DEFAULT_ACK_WAIT,
  jetstream,
  jetstreamManager,
  type KV,
  Kvm,
  type NatsConnection,
  redactUrl,
  retrying,
} from "./nats.ts";
import { clusterCtx, type Ctx } from "./context.ts";
import { ClusterJoinableQueue, ClusterQueue, type ClusterQueueOptions } from "./queue.ts";
import { ClusterDict, type ClusterDictOptions } from "./dict.ts";
import { ClusterPool, type ClusterPoolOptions } from "./pool.ts";
import { ValueError } from "../core/errors.ts";
import type { Actor, ActorClass } from "../actor/actor.ts";
import { ClusterActorRef, type ClusterSpawnOptions, spawnOnCluster, virtualRef } from "./actors.ts";
import { linkOnCluster } from "./watch.ts";

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
 * @param options The servers, credentials, TLS and timings.
 * @returns The connected {@link Cluster}.
 * @throws {Error} When no server can be reached or it refuses the credentials (the message names
 *   the servers with any password in their URLs redacted).
 * @throws {ValueError} When `ackWait` or `reconnectTimeWait` is negative.
 *
 * @example
 * ```ts
 * import { connectCluster } from "./mod.ts";
 * await using cluster = await connectCluster({
 *   servers: Deno.env.get("NATS_URL") ?? "nats://127.0.0.1:4222",
 *   token: Deno.env.get("NATS_TOKEN"), // undefined: no token
 * });
 * const q = cluster.Queue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
 * await q.put(42);
 * console.assert(await q.get() === 42);
 * await q.destroy();
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
 * ```ts
 * import { connectCluster } from "./mod.ts";
 * const cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
 * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
 * await d.set("retries", 3);
 * console.assert(await cluster.dict<string, number>(d.name).get("retries") === 3); // same name
 * await d.destroy();
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
   * @param name The queue's name, the same on every machine.
   * @param options `maxsize`, `ackWait` and `storage`, applied when this call creates the queue.
   * @throws {ValueError} When `name` is not 1-64 letters, digits, '-' or '_', or `maxsize` is not a
   *   non-negative integer.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.Queue<{ url: string }>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await q.put({ url: "https://example.com" });
   * const job = await q.get({ timeout: 1000 });
   * console.assert(job.url === "https://example.com");
   * await q.destroy();
   * ```
   */
  Queue<T = unknown>(name: string, options: ClusterQueueOptions = {}): ClusterQueue<T> {
    return new ClusterQueue<T>(this.#ctx, checkName("queue", name), options, false);
  }

  /**
   * A queue whose items are acknowledged by `taskDone()`, with `join()` across all machines.
   * An item got by a consumer that dies before `taskDone()` is redelivered after the ack wait.
   *
   * @param name The queue's name, the same on every machine.
   * @param options `maxsize`, `ackWait` and `storage`, applied when this call creates the queue.
   * @throws {ValueError} When `name` is not 1-64 letters, digits, '-' or '_', or `maxsize` is not a
   *   non-negative integer.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const q = cluster.JoinableQueue<number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await q.put(1);
   * const n = await q.get();
   * console.assert(n === 1);
   * await q.taskDone();
   * await q.join();
   * await q.destroy();
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
   * @param name The dict's name, the same on every machine.
   * @param options `storage`, applied when this call creates the dict.
   * @throws {ValueError} When `name` is not 1-64 letters, digits, '-' or '_'.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await d.modify("hits", (n = 0) => n + 1); // safe against concurrent writers
   * console.assert(await d.get("hits") === 1);
   * await d.destroy();
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
   * (`deno run -A lib/cluster/cli.ts --servers ... --pool NAME --module ./tasks.ts`).
   *
   * @param options The pool's `name` (the workers' `--pool`), `ackWait` and `window`.
   * @throws {ValueError} When `name` is not 1-64 letters, digits, '-' or '_'.
   *
   * @example
   * ```ts
   * import { connectCluster, runClusterWorker } from "./mod.ts";
   * import { square } from "../../tests/cluster/fixtures/cluster_tasks.ts";
   * const servers = Deno.env.get("NATS_URL")!, name = `doc-${crypto.randomUUID().slice(0, 8)}`;
   * // The worker command, on any machine: `cli.ts --servers ... --pool NAME --module ./tasks.ts`.
   * // For this example, a worker runs in this process instead, its tasks inline (`processes: 0`).
   * const stop = new AbortController();
   * const module = import.meta.resolve("../../tests/cluster/fixtures/cluster_tasks.ts");
   * const signal = stop.signal;
   * const worker = runClusterWorker({ servers, pool: name, module, processes: 0, signal });
   *
   * await using cluster = await connectCluster({ servers });
   * await using pool = cluster.Pool({ name });
   * console.assert((await pool.map(square, [1, 2, 3])).join() === "1,4,9");
   * await pool.close();
   * stop.abort();
   * await worker;
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
   * @param cls The actor's class, exported by a module the hosting nodes were given.
   * @param options The actor's registered `name` and its constructor's `args`.
   * @returns A ref to the started actor.
   * @throws {ValueError} When the name is taken.
   *
   * @example
   * ```ts
   * // Type-checked only: it needs a node hosting Counter (`cli.ts --actors ./actors.ts`).
   * import { connectCluster } from "./mod.ts";
   * import { Counter } from "../../tests/cluster/fixtures/cluster_actors.ts";
   * async function example() {
   *   await using cluster = await connectCluster({ servers: "nats://127.0.0.1:4222" });
   *   const ref = await cluster.spawn(Counter, { name: "counter-1", args: [10] });
   *   console.assert(await ref.call.inc(1) === 11);
   * }
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
   * @param name The name the actor was spawned with.
   *
   * @example
   * ```ts
   * // Type-checked only: it needs a node running the actor named "counter-1".
   * import { connectCluster } from "./mod.ts";
   * import type { Counter } from "../../tests/cluster/fixtures/cluster_actors.ts";
   * async function example() {
   *   await using cluster = await connectCluster({ servers: "nats://127.0.0.1:4222" });
   *   const ref = cluster.ref<Counter>("counter-1");
   *   await ref.call.inc(1);
   * }
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
   * @param cls The actor's class, hosted by some node.
   * @param key The activation's key, passed to the constructor.
   *
   * @example
   * ```ts
   * // Type-checked only: it needs a node hosting Tally (`cli.ts --actors ./actors.ts`).
   * import { connectCluster } from "./mod.ts";
   * import { Tally } from "../../tests/cluster/fixtures/cluster_virtual.ts";
   * async function example() {
   *   await using cluster = await connectCluster({ servers: "nats://127.0.0.1:4222" });
   *   const ref = cluster.actor(Tally, "user-42");
   *   await ref.call.inc(10); // activates it on some node, or reaches its activation
   * }
   * ```
   */
  actor<A extends Actor>(
    cls: ActorClass<A, [key: string]> | ActorClass<A, []>,
    key: string,
  ): ClusterActorRef<A> {
    return virtualRef(this.#ctx, cls, key);
  }

  /**
   * Links two cluster actors, on the same node or not (Erlang's `link`): when one stops
   * abnormally (any reason but `"normal"`), the other stops with the same reason, unless it
   * traps exits (`trapExits = true`): then its `onExit(from, reason)` runs on its node. A node
   * found gone (no heartbeat for 3 s, or its connection dropped) stops the actors linked to its
   * own with `"noconnection"`. Each actor's node keeps its side of the link, so the link holds
   * after this client is gone. Rejects with `ActorExited` if either had stopped (the other then
   * gets the exit signal); virtual actors cannot be linked (`ValueError`).
   *
   * @param a A spawned actor's ref.
   * @param b Another.
   *
   * @example
   * ```ts
   * // Type-checked only: it needs nodes hosting Counter (`cli.ts --actors ./actors.ts`).
   * import { connectCluster } from "./mod.ts";
   * import { monitor } from "../actor/link.ts"; // "jsr:@denomp/multiprocessing"
   * import { Counter } from "../../tests/cluster/fixtures/cluster_actors.ts";
   * async function example() {
   *   await using cluster = await connectCluster({ servers: "nats://127.0.0.1:4222" });
   *   const a = await cluster.spawn(Counter), b = await cluster.spawn(Counter);
   *   await cluster.link(a, b);
   *   await a.call.fail("boom").catch(() => {});
   *   console.log(await monitor(b)); // RangeError: boom
   * }
   * ```
   */
  link<A extends Actor, B extends Actor>(
    a: ClusterActorRef<A>,
    b: ClusterActorRef<B>,
  ): Promise<void> {
    return linkOnCluster(a as ClusterActorRef<Actor>, b as ClusterActorRef<Actor>, true);
  }

  /**
   * Removes a link made by {@link link}.
   *
   * @param a One of the linked actors.
   * @param b The other.
   *
   * @example
   * ```ts ignore
   * await cluster.unlink(a, b);
   * ```
   */
  unlink<A extends Actor, B extends Actor>(
    a: ClusterActorRef<A>,
    b: ClusterActorRef<B>,
  ): Promise<void> {
    return linkOnCluster(a as ClusterActorRef<Actor>, b as ClusterActorRef<Actor>, false);
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
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * const cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * await cluster.close();
   * console.assert(cluster.closed);
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
