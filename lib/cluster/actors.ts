/**
 * Actors beyond one machine: `cluster.spawn(Counter, { name })` starts an actor on a node (a
 * worker process started with `--actors ./actors.ts`), and `cluster.ref<Counter>(name)` reaches it
 * from any machine with the local ActorRef's surface (`call`, `callWith`, `tell`, `ask`, `stop`).
 *
 * How it maps onto NATS, and why:
 * - **Placement.** A node subscribes to `denomp.a.spawn.<Class>` in one queue group for every
 *   actor class its `--actors` modules export, so a spawn request reaches exactly one node that
 *   hosts the class (the server picks one at random), and no node is ever asked to run code it was
 *   not started with: the wire names a class, never a module. No node hosting the class means the
 *   server answers "no responders" at once, and `spawn` says which flag is missing.
 * - **Registry.** Names live in the JetStream KV bucket `denomp_actors` (name → node, class). A
 *   node claims a name with the bucket's create-if-absent, so two spawns of one name cannot both
 *   win; a name left behind by a node that died is taken over once that node is found gone.
 * - **Messages.** Each actor has its own subject, `denomp.a.x.<name>`, on core NATS (not
 *   JetStream): a call is one request and one reply, nothing is stored, and delivery is at most
 *   once. NATS keeps one connection's messages to one subscriber in order, and the node handles
 *   each actor's messages one at a time in arrival order: per sender, the local guarantee.
 * - **Never a hang.** A request to an actor nobody serves gets the server's "no responders" at
 *   once; then the registry and the node's control subject (`denomp.a.n.<node>`) tell why: no such
 *   actor, the actor exited (with its reason), or its node is gone (`ActorExited`, reason
 *   `"noconnection"`, naming the node). A call still pending after a second asks the node the
 *   same, every second, and whether the actor holds the request (queued or in hand): a node killed
 *   mid-call fails the call within about a second, even once another node has taken its actor
 *   over; a request no actor holds (lost on its way, or refused unrun by an activation that
 *   stopped) is sent again, which is still at most once, since an answer sent before the node's
 *   reaches the caller first. A stopping actor drains its subscription rather than unsubscribing:
 *   the NATS client would drop, unanswered, what the server had routed to it meanwhile.
 * - **Failure** (watch.ts): nodes send heartbeats; a node silent for 3 s, or dropped by the
 *   server, is gone. `ref.exited` (so `monitor(ref)` and a `Supervisor`) and `cluster.link` hear
 *   an actor's exit reason, or `"noconnection"`. A slow call's liveness question that a node
 *   neither answers nor backs with a heartbeat fails the call the same way. Spawns and
 *   activations are placed by the server; one not answered in a second goes to every node.
 * - Replies come back on one inbox subscription per client (`_INBOX.<id>.<n>`), not the NATS
 *   client's request helper: a call that gives up (timeout, abort, node gone) must drop its
 *   pending entry at once, which the helper's timer cannot.
 *
 * **Virtual actors** (`cluster.actor(Counter, "user-42")`, Orleans' idea): the ref is valid before
 * the actor exists. A call that finds nobody on the actor's subject (`denomp.a.v.<Class>.<key>`)
 * asks a node hosting the class to activate it; the node claims the activation record
 * (`v.<Class>.<key>` in the registry, with the node) with the same create / compare-and-set as a
 * spawned name, so one activation wins cluster-wide, and a record naming a dead node is taken
 * over. Losers answer "retry" and the caller calls again, with backoff, within the call's timeout
 * (30 s at most). An activation idle for `idleMs` is deactivated (its last state saved first, its
 * record deleted after); messages that reach it meanwhile did not run and are sent again, to the
 * next activation. State: a class with `persist()` and `restore(state)` is restored on
 * activation and saved after every call that changed it (lib/cluster/virtual.ts: bytes compared,
 * compare-and-set on the revision), before the caller gets its reply; `static persistEvery = ms`
 * saves at most every `ms` instead (changes since the last save are lost with a dead node). A
 * call that throws stops the activation without saving: the next one starts from the last save.
 *
 * Actors run in the node's main thread, each a queue of its messages: thousands fit in one node.
 * A handler that computes for long delays the node's other actors; give such work to a pool.
 *
 * @module
 */

import type { KV, Msg, NatsConnection } from "./nats.ts";
import { type ActorClient, clientOf, closedError } from "./actor_client.ts";
import { heardOf, NODE_TIMEOUT_MS, type NodeWatch, watchActor } from "./watch.ts";
import { Actor, type ActorClass } from "../actor/actor.ts";
import { ActorExited, type ExitReason } from "../actor/exit.ts";
import type { ActorMethods, MessageOf, ReplyOf } from "../actor/ref.ts";
import type { CallOptions } from "../actor/call.ts";
import { TimeoutError, ValueError } from "../core/errors.ts";
import { dumps, loads } from "../core/reduction.ts";
import { optionsOf } from "../core/args.ts";
import type { __testHooks } from "./virtual.ts";

/** What the actor layer needs of a cluster connection (mod.ts's context satisfies it). */
export interface ActorCtx {
  /** The connection. */
  nc: NatsConnection;
  /** The registry bucket, created on first use. */
  actorRegistry(): Promise<KV>;
  /** Things to stop before the connection closes. */
  closers: Set<() => Promise<void> | void>;
  /** This client's reply inbox for actor calls, made on first use. */
  actorClient?: ActorClient;
  /** This client's watch of other nodes' heartbeats (watch.ts), made on first use. */
  nodeWatch?: NodeWatch;
}

/** Options of `cluster.spawn`. */
export interface ClusterSpawnOptions<P extends unknown[]> {
  /** The actor's name on the cluster (1-64 letters, digits, '-', '_'); default `Class-<random>`. */
  name?: string;
  /** Constructor arguments, sent with the library's codec. */
  args?: P;
  /** Milliseconds to wait for a node to start the actor; default 30 000. */
  timeout?: number;
}

// Message frames: one op byte, then the codec's bytes. No NATS headers: parsing them would cost
// more than the whole frame of a small call.
export const CALL = 0, TELL = 1, ASK = 2, STOP = 3, LINK = 4, UNLINK = 5;
// Reply frames: one status byte, then the codec's bytes. RETRY: a virtual actor's message that
// did not run (its activation is stopping or starting): the caller sends it again.
export const OK = 0, ERR = 1, EXITED = 2, RETRY = 3;

const NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const CLASS_RE = /^[A-Za-z0-9_$]{1,128}$/;
export const SPAWN_GROUP = "denomp_nodes";
/** How long a call waits before it asks whether the actor's node is still there, and between asks. */
const LIVENESS_MS = 1_000;
/** The longest timer a NATS request or setTimeout takes. */
export const FOREVER = 2_147_483_647;
/** How long a stopping node lets each actor finish the message it is handling. */
export const SHUTDOWN_GRACE_MS = 5_000;
/** Exit reasons a node remembers for callers that arrive late (most recent ones). */
export const EXITS_KEPT = 4096;

export const actorSubject = (name: string) => `denomp.a.x.${name}`;
export const spawnSubject = (cls: string) => `denomp.a.spawn.${cls}`;
/** Every node hosting `cls` (no queue group): a spawn's later tries. */
export const spawnAllSubject = (cls: string) => `denomp.a.spawnall.${cls}`;
export const nodeSubject = (node: string) => `denomp.a.n.${node}`;
// A virtual actor is named by its class and key: its subject, its activation record's key in the
// registry and its state's key. Dots keep them apart from spawned actors' names (which have none).
export const virtualSubject = (cls: string, key: string) => `denomp.a.v.${cls}.${key}`;
export const virtualRecord = (cls: string, key: string) => `v.${cls}.${key}`;
export const virtualState = (cls: string, key: string) => `s.${cls}.${key}`;
/** How long an idle virtual actor stays activated, unless its class says (`static idleMs`). */
export const IDLE_MS = 300_000;
/** How long a call to a virtual actor waits for an activation, unless its timeout says. */
const ACTIVATE_MS = 30_000;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function checkActorName(name: string): string {
  if (typeof name !== "string" || !NAME_RE.test(name)) {
    throw new ValueError(
      `actor name must be 1-64 letters, digits, '-' or '_': current value is ${
        JSON.stringify(name)
      }`,
    );
  }
  return name;
}

/** A frame: `tag` then `body`. */
export function frame(tag: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 1);
  out[0] = tag;
  out.set(body, 1);
  return out;
}

/** The codec's part of a received frame, as a plain view (the client hands out Node Buffers). */
export function bodyOf<T>(data: Uint8Array): T {
  return loads<T>(new Uint8Array(data.buffer, data.byteOffset + 1, data.byteLength - 1));
}

const isNoResponders = (m: Msg): boolean => m.data.length === 0 && m.headers?.code === 503;
/** A request found held by no actor (see `#whereIs`): it is sent again. */
const LOST = Symbol("lost");
/** How many times one call is sent again after its request was lost, before it gives up. */
const LOST_TRIES = 5;

/**
 * What a node says of one actor: `up` (it hosts it), its exit reason, or nothing (unknown). Asked
 * about a request, an actor that is up says whether it `held` it (queued or in hand), and `from`,
 * the gone node whose registry record it took over, if any.
 */
type NodeAnswer = { gone: true } | {
  gone: false;
  up: boolean;
  /** It did not answer in time (too busy, or hung: its heartbeats tell). */
  silent?: boolean;
  reason?: ExitReason;
  held?: boolean;
  from?: string;
};

/** Asks node `node` about actor `name` (and the request answered on `inbox`) on its control subject. */
export async function askNode(
  nc: NatsConnection,
  node: string,
  name: string,
  inbox?: string,
): Promise<NodeAnswer> {
  let m: Msg;
  try {
    m = await nc.request(nodeSubject(node), inbox ? `${name} ${inbox}` : name, { timeout: 2_000 });
  } catch (e) {
    const err = e as Error & { isNoResponders?: () => boolean };
    if (err.isNoResponders?.() || err.name === "NoResponders") return { gone: true };
    // The node is there but too busy to answer (a handler hogs its thread): not gone.
    return { gone: false, up: true, silent: true };
  }
  if (m.data[0] === 1) {
    if (m.data.length < 2) return { gone: false, up: true };
    const from = new TextDecoder().decode(m.data.subarray(2));
    return { gone: false, up: true, held: m.data[1] === 1, from: from || undefined };
  }
  return m.data.length > 1
    ? { gone: false, up: false, reason: bodyOf<ExitReason>(m.data) }
    : { gone: false, up: false };
}

/** The registry entry of an actor (or a virtual actor's activation): its node and class. */
export interface Entry {
  node: string;
  cls: string;
  /** The spawn that started it (its tries share it: a try sent again finds it started). */
  spawn?: string;
}

export async function lookup(ctx: ActorCtx, key: string): Promise<Entry | undefined> {
  const kv = await ctx.actorRegistry();
  const e = await kv.get(key);
  if (!e || e.operation !== "PUT" || e.length === 0) return undefined;
  return e.json<Entry>();
}

/** Internal (watch.ts's `linkOnCluster`): sends LINK or UNLINK of `peer` to `ref`'s actor. */
export let controlOf: (
  ref: ClusterActorRef<Actor>,
  op: number,
  peer: ClusterActorRef<Actor>,
) => Promise<unknown>;

/**
 * A reference to an actor on the cluster, from `cluster.spawn` or `cluster.ref(name)`: the local
 * {@link ActorRef}'s surface (`call`, `callWith`, `tell`, `ask`, `stop`), typed from the actor's
 * class, over NATS request/reply. Holding one costs nothing on the server; it names the actor.
 *
 * Calls are at most once: a call whose node dies rejects with `ActorExited` (reason
 * `"noconnection"`, naming the node) and the method may or may not have run; retry if it is safe.
 *
 * @example
 * ```ts ignore
 * import { connectCluster } from "jsr:@denomp/multiprocessing/cluster";
 * import type { Counter } from "./actors.ts";
 * await using cluster = await connectCluster({ servers: "nats://127.0.0.1:4222" });
 * const ref = cluster.ref<Counter>("counter-1");
 * console.log(await ref.call.inc(1));
 * ```
 */
// `out`, as the local ActorRef: a ref of a subclass is a ref of its base class.
// @ts-expect-error: TS2636, ActorMethods<A> is covariant in A but not provably so
export class ClusterActorRef<out A extends Actor = Actor> {
  readonly #ctx: ActorCtx;
  readonly #subject: string;
  /** The registry key: the name, or a virtual actor's activation record. */
  readonly #key: string;
  /** A virtual actor's class and key (`cluster.actor`): a no-responders activates it. */
  readonly #virtual?: { cls: string; key: string };
  #node?: string;
  #call?: ActorMethods<A>;
  #registered?: { at: number; entry: Promise<Entry | undefined> };
  #exited?: Promise<ExitReason>;
  /** The actor's name on the cluster; `Class/key` for a virtual actor. */
  readonly name: string;

  /**
   * Use `cluster.spawn(...)`, `cluster.ref(name)` or `cluster.actor(Class, key)` (which passes
   * `virtual`).
   */
  constructor(ctx: ActorCtx, name: string, node?: string, virtual?: { cls: string; key: string }) {
    this.#ctx = ctx;
    if (virtual) {
      checkActorName(virtual.key);
      this.name = `${virtual.cls}/${virtual.key}`;
      this.#subject = virtualSubject(virtual.cls, virtual.key);
      this.#key = virtualRecord(virtual.cls, virtual.key);
      this.#virtual = virtual;
    } else {
      this.name = checkActorName(name);
      this.#subject = actorSubject(name);
      this.#key = name;
    }
    this.#node = node;
  }

  /**
   * The actor's public methods, each as an async function run by the actor on its node, one
   * message at a time. Rejects with the error the method threw (the actor then stops with it),
   * or with `ActorExited` when the actor is not running or its node is gone.
   */
  get call(): ActorMethods<A> {
    return this.#call ??= this.#methods(undefined);
  }

  /**
   * `ref.call` with a `timeout` in milliseconds (then `TimeoutError` naming the actor and
   * method; the method may still run) or an abort `signal`.
   *
   * @example
   * ```ts ignore
   * await ref.callWith({ timeout: 500 }).inc(1);
   * ```
   */
  callWith(options: CallOptions): ActorMethods<A> {
    optionsOf(options, "ClusterActorRef.callWith", "callWith({ timeout: 500 })");
    return this.#methods(options);
  }

  #methods(options: CallOptions | undefined): ActorMethods<A> {
    const fns = new Map<string, unknown>();
    return new Proxy({}, {
      get: (_, method) => {
        // `then`: an awaited `ref.call` must not look like a promise.
        if (typeof method !== "string" || method === "then") return undefined;
        let f = fns.get(method);
        if (!f) {
          f = (...args: unknown[]) =>
            this.#request(CALL, [method, args], `${method}() args`, `${method}()`, options);
          fns.set(method, f);
        }
        return f;
      },
    }) as ActorMethods<A>;
  }

  /**
   * Sends `msg` to the actor's `receive(msg)` without waiting for it to be handled. At most once:
   * a message to an actor that is not running is dropped, as locally.
   *
   * @example
   * ```ts ignore
   * await ref.tell({ kind: "add", n: 1 });
   * ```
   */
  tell(msg: MessageOf<A>): Promise<void> {
    if (this.#virtual) {
      // A virtual actor is activated by a request: the message goes as an ask whose reply is
      // dropped (at most once, as any tell).
      this.#request(ASK, msg, "message", "tell()", undefined).catch(() => {});
      return Promise.resolve();
    }
    try {
      this.#ctx.nc.publish(this.#subject, frame(TELL, dumps(msg, "message")));
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Sends `msg` to the actor's `receive(msg)` and resolves with what it returns; `timeout` in
   * milliseconds.
   *
   * @example
   * ```ts ignore
   * const total = await ref.ask({ kind: "total" }, { timeout: 1000 });
   * ```
   */
  ask(
    msg: MessageOf<A>,
    options?: { timeout?: number; signal?: AbortSignal },
  ): Promise<ReplyOf<A>> {
    try {
      options = optionsOf(options, "ClusterActorRef.ask", "ask(msg, { timeout: 1000 })");
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#request(ASK, msg, "message", "ask()", options) as Promise<ReplyOf<A>>;
  }

  /**
   * Stops the actor after the messages already queued (its `onStop(reason)` runs on its node) and
   * resolves with the reason. An actor that had stopped already resolves with the reason its node
   * remembers; an unknown name or a gone node rejects with `ActorExited`.
   *
   * @example
   * ```ts ignore
   * await ref.stop(); // "normal"
   * ```
   */
  async stop(reason: ExitReason = "normal", options?: { timeout?: number }): Promise<ExitReason> {
    options = optionsOf(options, "ClusterActorRef.stop", 'stop("normal", { timeout: 5000 })');
    try {
      return await this.#request(STOP, reason, "reason", "stop()", options) as ExitReason;
    } catch (e) {
      if (e instanceof ActorExited && e.reason !== "noproc" && e.reason !== "noconnection") {
        return e.reason;
      }
      throw e;
    }
  }

  /**
   * The node hosting the actor (from the registry), or undefined when no actor has that name.
   *
   * @example
   * ```ts ignore
   * console.log(await ref.node()); // "host-a-4242"
   * ```
   */
  async node(): Promise<string | undefined> {
    const e = await lookup(this.#ctx, this.#key);
    if (e) this.#node = e.node;
    return e?.node;
  }

  /**
   * Resolves with the reason the actor stops (as `monitor(ref)`, which uses it): its own exit
   * reason, `"noconnection"` when its node is gone (no heartbeat for 3 s, or its connection
   * dropped), `"noproc"` when no actor has the name. A ref from `cluster.spawn` watches that
   * actor: a later actor of the same name on another node is another one. With it, a
   * `Supervisor` takes a cluster actor as a child (`start: () => cluster.spawn(...)`). A virtual
   * actor has no lifetime to watch (deactivation is not an exit): its `exited` never settles.
   *
   * @example
   * ```ts ignore
   * const reason = await ref.exited; // "normal", an Error, "noconnection", ...
   * ```
   */
  get exited(): Promise<ExitReason> {
    return this.#exited ??= this.#virtual
      ? new Promise<never>(() => {})
      : new Promise((resolve) => watchActor(this.#ctx, this.name, this.#node, resolve));
  }

  static {
    controlOf = (ref, op, peer) => {
      if (ref.#virtual || peer.#virtual) {
        return Promise.reject(
          new ValueError(`virtual actors cannot be linked: ${ref.name}, ${peer.name}`),
        );
      }
      const label = op === LINK ? "link()" : "unlink()";
      return ref.#request(op, [peer.name, peer.#node], "peer", label, undefined);
    };
  }

  /**
   * The actor's registry entry, read after `since` (epoch ms). One read serves every call of
   * this ref pending at that moment: a thousand slow calls read it once, not a thousand times.
   */
  #registry(since: number): Promise<Entry | undefined> {
    const now = Date.now();
    const r = this.#registered;
    if (r && r.at >= since && now - r.at < LIVENESS_MS / 2) return r.entry;
    const entry = lookup(this.#ctx, this.#key);
    this.#registered = { at: now, entry };
    return entry;
  }

  /**
   * Where a request still unanswered (sent at `sentAt`, answered on `inbox`) is: with the actor
   * (undefined: wait on), LOST, or the error the call rejects with: the node that may have run
   * it is gone. LOST means no actor holds it and none will answer it: it was lost on its way,
   * or refused unrun by an activation that stopped. An answer sent before the node's (or before
   * the registry record's deletion) reaches this client first, so `waiting()` is checked after;
   * then sending the request again is still at most once.
   */
  async #whereIs(
    inbox: string,
    sentAt: number,
    label: string,
    again = false,
  ): Promise<ActorExited | typeof LOST | undefined> {
    // No record: no actor has it, and every one that had (its record deleted as it stopped, after
    // answering what it held) has answered. A node that dies leaves its records behind.
    const node = (await this.#registry(sentAt))?.node;
    if (node === undefined) return LOST;
    const a = await askNode(this.#ctx.nc, node, this.#key, inbox);
    const gone = (n: string) =>
      new ActorExited(
        this.name,
        "noconnection",
        `actor ${this.name} is unreachable: its node '${n}' is gone (${label} may or may not ` +
          `have run)`,
      );
    if (a.gone) {
      // Read just before it stopped? A node that stopped cleanly deleted the record first.
      return again ? gone(node) : await this.#whereIs(inbox, Date.now(), label, true);
    }
    if (!a.up) return LOST; // it answered all it held when its actor stopped
    // No answer, and no heartbeat either: a node hung or cut off (3 s of silence by now).
    if (a.silent && !await heardOf(this.#ctx.nc, node)) return gone(node);
    if (a.held !== false) return undefined; // held, or a node too busy (or too old) to say
    // Not there: unless it went to the node whose actor this one took over, which died with it.
    return a.from === undefined ? LOST : gone(a.from);
  }

  /** Why a request found nobody: the actor's exit, its node gone, or no such actor. */
  async #why(): Promise<ActorExited | "retry"> {
    const entry = await lookup(this.#ctx, this.name);
    const node = entry?.node ?? this.#node;
    if (node === undefined) {
      return new ActorExited(
        this.name,
        "noproc",
        `no actor named '${this.name}' is running on the cluster`,
      );
    }
    this.#node = node;
    const a = await askNode(this.#ctx.nc, node, this.name);
    if (a.gone) {
      if (!entry) {
        return new ActorExited(this.name, "noproc", `actor ${this.name} is not running`);
      }
      return new ActorExited(
        this.name,
        "noconnection",
        `actor ${this.name} is unreachable: its node '${node}' is gone`,
      );
    }
    if (a.up) return "retry"; // it started serving in between: the message reached no one
    if (a.reason !== undefined) return new ActorExited(this.name, a.reason);
    return new ActorExited(this.name, "noproc", `actor ${this.name} is not running`);
  }

  /** One request to the actor, settled by its reply, a deadline, an abort or its node's death. */
  async #request(
    op: number,
    payload: unknown,
    what: string,
    label: string,
    options: { timeout?: number; signal?: AbortSignal } | undefined,
  ): Promise<unknown> {
    const timeout = options?.timeout;
    if (timeout !== undefined && (typeof timeout !== "number" || !(timeout >= 0))) {
      throw new ValueError(
        `'timeout' must be a non-negative number of milliseconds: got ${timeout}`,
      );
    }
    const signal = options?.signal;
    if (signal?.aborted) throw signal.reason;
    const data = frame(op, dumps(payload, what));
    const client = clientOf(this.#ctx);
    // A virtual actor's call may wait for activations (and for one being stopped to end).
    const budget = Math.min(timeout ?? ACTIVATE_MS, ACTIVATE_MS);
    const activateBy = Date.now() + budget;
    let pause = 5;
    const again = async () => {
      if (Date.now() > activateBy) {
        throw new TimeoutError(
          `actor ${this.name} could not be activated within ${budget} ms`,
        );
      }
      await sleep(pause);
      pause = Math.min(pause * 2, 200);
    };
    let lost = 0;
    for (let attempt = 0;; attempt++) {
      const sentAt = Date.now();
      const { reply, inbox, waiting, cancel } = client.request(this.#subject, data);
      let timer: ReturnType<typeof setTimeout> | undefined;
      let probe: ReturnType<typeof setTimeout> | undefined;
      let onAbort: (() => void) | undefined;
      let settled = false;
      const gaveUp = new Promise<typeof LOST>((resolve, reject) => {
        if (timeout !== undefined) {
          timer = setTimeout(
            () =>
              reject(
                new TimeoutError(
                  `actor ${this.name} did not reply to ${label} within ${timeout} ms`,
                ),
              ),
            Math.min(timeout, FOREVER),
          );
        }
        if (signal) {
          onAbort = () => reject(signal.reason);
          signal.addEventListener("abort", onAbort, { once: true });
        }
        // A slow reply: does the actor still hold the request, is its node still there? A killed
        // node answers nothing, ever, and neither does anyone to a request lost on its way.
        const check = async () => {
          try {
            const where = await this.#whereIs(inbox, sentAt, label);
            if (!waiting()) return; // answered meanwhile
            if (where === LOST) return resolve(LOST);
            if (where) return reject(where);
          } catch {
            if (this.#ctx.nc.isClosed()) return reject(closedError());
            // The server is away for a moment: ask again later.
          }
          // Settled while the node was being asked: no further asking.
          if (!settled) probe = setTimeout(check, LIVENESS_MS);
        };
        probe = setTimeout(check, LIVENESS_MS);
      });
      let m: Msg | typeof LOST;
      try {
        m = await Promise.race([reply, gaveUp]);
      } finally {
        settled = true;
        cancel();
        clearTimeout(timer);
        clearTimeout(probe);
        if (onAbort) signal!.removeEventListener("abort", onAbort);
      }
      if (m === LOST) {
        if (++lost < LOST_TRIES) continue; // it did not run: sending it again is at most once
        throw new ActorExited(
          this.name,
          "noconnection",
          `actor ${this.name}: ${label} was lost on its way ${lost} times (it did not run)`,
        );
      }
      if (isNoResponders(m) && this.#virtual) {
        if (op === STOP) return "normal"; // not activated: nothing to stop
        if (!await this.#activate(activateBy)) await again();
        continue;
      }
      if (isNoResponders(m)) {
        const why = await this.#why();
        if (why === "retry" && attempt < 3) continue; // nobody got it: resending is still at most once
        throw why === "retry"
          ? new ActorExited(this.name, "noproc", `actor ${this.name} is not running`)
          : why;
      }
      const status = m.data[0];
      if (status === RETRY) {
        await again();
        continue;
      }
      const value = bodyOf<unknown>(m.data);
      if (status === OK) return value;
      if (status === EXITED) throw new ActorExited(this.name, value as ExitReason);
      throw value;
    }
  }

  /**
   * Asks a node hosting the class to activate this virtual actor; true once it is active (or
   * found active), false when another activation is in the way (the caller waits and retries).
   */
  async #activate(by: number): Promise<boolean> {
    const { cls, key } = this.#virtual!;
    let m: Msg;
    try {
      m = await place(this.#ctx, cls, dumps([key, [key], true], "key"), by);
    } catch (e) {
      if ((e as Error).name === "TimeoutError") {
        throw new TimeoutError(`no node activated actor ${this.name} in time`);
      }
      throw e;
    }
    const status = m.data[0];
    if (status === RETRY) return false;
    const value = bodyOf<unknown>(m.data);
    if (status !== OK) throw value;
    this.#node = value as string;
    return true;
  }

  /** A short description. */
  toString(): string {
    return `<ClusterActorRef ${this.name}>`;
  }
}

/** How long the first try of a spawn or activation waits for its node before asking them all. */
const FIRST_TRY_MS = 1_000;

/**
 * A spawn or activation request for class `cls`, answered by `by` (epoch ms) or a TimeoutError.
 * The first try goes to one node of the queue group, picked by the server at random, a hung node
 * included (its subscriptions stay until the server notices it): unanswered within a second, the
 * request goes to every node hosting the class, and the first answer wins. The registry's
 * create-if-absent lets one node start the actor; the others say where it runs (the spawn's id
 * matches) or answer "retry" (an activation).
 */
async function place(ctx: ActorCtx, cls: string, data: Uint8Array, by: number): Promise<Msg> {
  const client = clientOf(ctx);
  // Every try's answer counts, the first one's too: a slow node's answer is as good as any.
  const tries: ReturnType<ActorClient["request"]>[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    for (let attempt = 0;; attempt++) {
      const wait = Math.max(1, Math.min(by - Date.now(), attempt ? NODE_TIMEOUT_MS : FIRST_TRY_MS));
      tries.push(client.request(attempt ? spawnAllSubject(cls) : spawnSubject(cls), data));
      const m = await Promise.race([
        ...tries.map((t) => t.reply),
        new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), wait)),
      ]);
      clearTimeout(timer);
      if (m && isNoResponders(m)) throw noHost(cls);
      if (m) return m;
      if (Date.now() >= by) throw new TimeoutError(`no node answered within the timeout`);
    }
  } finally {
    clearTimeout(timer);
    for (const t of tries) t.cancel();
  }
}

const noHost = (cls: string) =>
  new ValueError(
    `no node hosts actor class '${cls}': start one with ` +
      `\`deno run -A .../cluster/cli.ts --actors <module exporting ${cls}>\``,
  );

/**
 * A ref to the virtual actor of class `cls` and `key` (`cluster.actor` calls this): valid before
 * the actor exists; its first call activates it on a node hosting the class.
 *
 * @example
 * ```ts ignore
 * const ref = virtualRef(ctx, Counter, "user-42");
 * await ref.call.inc(1);
 * ```
 */
export function virtualRef<A extends Actor>(
  ctx: ActorCtx,
  cls: ActorClass<A, [key: string]> | ActorClass<A, []>,
  key: string,
): ClusterActorRef<A> {
  if (typeof cls !== "function" || !(cls.prototype instanceof Actor)) {
    throw new ValueError(`cluster.actor() needs a class extending Actor: got ${String(cls)}`);
  }
  if (!CLASS_RE.test(cls.name)) {
    throw new ValueError(`cluster.actor(): class name '${cls.name}' cannot be sent`);
  }
  return new ClusterActorRef<A>(ctx, "", undefined, { cls: cls.name, key });
}

/**
 * Starts an actor of class `cls` on a node hosting it and resolves with its ref (`cluster.spawn`
 * calls this).
 *
 * @example
 * ```ts ignore
 * const ref = await spawnOnCluster(ctx, Counter, { name: "counter-1", args: [0] });
 * ```
 */
export async function spawnOnCluster<A extends Actor, P extends unknown[]>(
  ctx: ActorCtx,
  cls: ActorClass<A, P>,
  options?: ClusterSpawnOptions<P>,
): Promise<ClusterActorRef<A>> {
  options = optionsOf(options, "cluster.spawn", 'cluster.spawn(Counter, { name: "c1" })');
  if (typeof cls !== "function" || !(cls.prototype instanceof Actor)) {
    throw new ValueError(`cluster.spawn() needs a class extending Actor: got ${String(cls)}`);
  }
  if (!CLASS_RE.test(cls.name)) {
    throw new ValueError(`cluster.spawn(): class name '${cls.name}' cannot be sent`);
  }
  const name = checkActorName(options.name ?? `${cls.name}-${crypto.randomUUID().slice(0, 8)}`);
  const timeout = options.timeout ?? 30_000;
  // An id shared by this spawn's tries: a node that finds the actor started by an earlier try
  // (on a node slow to answer) says where instead of refusing the name.
  const data = dumps([name, options.args ?? [], false, crypto.randomUUID()], "spawn args");
  let m: Msg;
  try {
    m = await place(ctx, cls.name, data, Date.now() + timeout);
  } catch (e) {
    if ((e as Error).name === "TimeoutError") {
      throw new TimeoutError(`no node started actor ${name} within ${timeout} ms`);
    }
    throw e;
  }
  const status = m.data[0];
  const value = bodyOf<unknown>(m.data);
  if (status !== OK) throw value;
  return new ClusterActorRef<A>(ctx, name, value as string);
}
