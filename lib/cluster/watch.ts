/**
 * Failure across nodes: when a node is gone, and why an actor on another node stopped. Both sides
 * of the two protocols live here: the node's heartbeat and exit notices (actor_host.ts calls
 * {@link heartbeat} and {@link publishDown}), and the watcher's side, which monitors, links and
 * supervisors of cluster actors stand on ({@link watchActor}).
 *
 * - **Heartbeats.** A node publishes an empty message on `denomp.a.hb.<node>` every
 *   {@link HEARTBEAT_MS} (500 ms). A watcher of the node declares it gone when it sent none for
 *   {@link NODE_TIMEOUT_MS} (3 s: the stated timeout, for a node that hangs or is cut off), or
 *   sooner when a heartbeat is late and the server says nobody serves the node's control subject
 *   any more (a killed node's connection is dropped by the server at once: found within about a
 *   second). A watcher that is itself disconnected counts no silence meanwhile: every node would
 *   look gone from there.
 * - **Exit notices.** A node publishes `[node, reason]` on `denomp.a.down.<name>` when one of
 *   its spawned actors stops, after freeing its name (so a supervisor's restart finds it free).
 *   Core NATS, at most once, so a watcher subscribes first and then asks the node whether the
 *   actor still runs: an exit before the subscription is the node's remembered reason.
 *
 * What a watcher is told is Erlang's: the actor's own exit reason, `"noconnection"` when its node
 * is gone, `"noproc"` when no actor has the name.
 *
 * @module
 */

import type { NatsConnection, Subscription } from "./nats.ts";
import {
  type ActorCtx,
  askNode,
  bodyOf,
  type ClusterActorRef,
  controlOf,
  frame,
  LINK,
  lookup,
  sleep,
  UNLINK,
} from "./actors.ts";
import type { Actor } from "../actor/actor.ts";
import { describe, type ExitReason } from "../actor/exit.ts";
import { dumps } from "../core/reduction.ts";

/**
 * How often a node publishes its heartbeat, in milliseconds.
 *
 * @example
 * ```ts
 * import { HEARTBEAT_MS, NODE_TIMEOUT_MS } from "./mod.ts";
 * console.assert(NODE_TIMEOUT_MS / HEARTBEAT_MS === 6); // six heartbeats missed: gone
 * ```
 */
export const HEARTBEAT_MS = 500;
/**
 * A node that sent no heartbeat for this long (ms) is gone: the stated timeout. A monitor of
 * one of its actors then resolves with `"noconnection"`.
 *
 * @example
 * ```ts
 * import { NODE_TIMEOUT_MS } from "./mod.ts";
 * console.assert(NODE_TIMEOUT_MS === 3000);
 * ```
 */
export const NODE_TIMEOUT_MS = 3_000;

const heartbeatSubject = (node: string) => `denomp.a.hb.${node}`;
const downSubject = (name: string) => `denomp.a.down.${name}`;

/**
 * The node's side: publishes its heartbeat every {@link HEARTBEAT_MS} until the returned function
 * is called. `onPaused` is called when this node itself was stopped for longer than the timeout
 * (a long pause, SIGSTOP): other nodes may have declared it gone and taken its actors over.
 *
 * @example
 * ```ts ignore
 * const stop = heartbeat(nc, "node-1", () => fenceActors());
 * stop();
 * ```
 */
export function heartbeat(nc: NatsConnection, node: string, onPaused?: () => void): () => void {
  let last = Date.now();
  const beat = () => {
    const now = Date.now();
    if (now - last > NODE_TIMEOUT_MS) onPaused?.();
    last = now;
    try {
      nc.publish(heartbeatSubject(node));
    } catch { /* closing, or the server is away: the watchers see silence */ }
  };
  beat();
  const timer = setInterval(beat, HEARTBEAT_MS);
  return () => clearInterval(timer);
}

/**
 * Whether `node` sends a heartbeat within `ms` (two heartbeats' time by default): asked of a node
 * that did not answer a question, to tell a busy node from a hung or cut-off one.
 */
export async function heardOf(
  nc: NatsConnection,
  node: string,
  ms = HEARTBEAT_MS * 2,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let sub: Subscription | undefined;
  try {
    return await new Promise<boolean>((resolve) => {
      sub = nc.subscribe(heartbeatSubject(node), { max: 1, callback: () => resolve(true) });
      timer = setTimeout(() => resolve(false), ms);
    });
  } finally {
    clearTimeout(timer);
    sub?.unsubscribe();
  }
}

/** The node's side: tells the watchers of actor `name` that it stopped for `reason`. */
export function publishDown(
  nc: NatsConnection,
  node: string,
  name: string,
  reason: ExitReason,
): void {
  let body: Uint8Array;
  try {
    body = dumps([node, reason], "reason");
  } catch {
    body = dumps([node, new Error(describe(reason))], "reason"); // a reason the codec refuses
  }
  try {
    nc.publish(downSubject(name), frame(0, body));
  } catch { /* the connection is closing: watchers hear of the node instead */ }
}

/** A node being watched: when it was last heard of, and who wants to know it is gone. */
interface Watched {
  last: number;
  listeners: Set<() => void>;
  sub: Subscription;
  probing: boolean;
}

/**
 * The watcher's side of heartbeats, one per cluster connection (shared by all its monitors): one
 * subscription per watched node, and one timer.
 *
 * @example
 * ```ts ignore
 * const unwatch = nodeWatchOf(ctx).watch("node-1", () => console.log("node-1 is gone"));
 * unwatch();
 * ```
 */
export class NodeWatch {
  readonly #nc: NatsConnection;
  readonly #nodes = new Map<string, Watched>();
  #timer?: ReturnType<typeof setInterval>;
  #offline = false;

  /** Follows the connection's status: silence while it is down is not the nodes'. */
  constructor(nc: NatsConnection) {
    this.#nc = nc;
    (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") this.#offline = true;
        else if (s.type === "reconnect") this.#offline = false;
      }
    })().catch(() => {});
  }

  /** Calls `onGone` (once) when `node` is found gone; the returned function stops watching. */
  watch(node: string, onGone: () => void): () => void {
    let w = this.#nodes.get(node);
    if (!w) {
      const at: Watched = {
        last: Date.now(),
        listeners: new Set(),
        probing: false,
        sub: this.#nc.subscribe(heartbeatSubject(node), {
          callback: () => {
            at.last = Date.now();
          },
        }),
      };
      this.#nodes.set(node, w = at);
      if (this.#timer === undefined) {
        this.#timer = setInterval(() => this.#check(), HEARTBEAT_MS / 2);
        Deno.unrefTimer(this.#timer);
      }
    }
    const watched = w;
    watched.listeners.add(onGone);
    return () => {
      watched.listeners.delete(onGone);
      if (!watched.listeners.size) this.#drop(node, watched);
    };
  }

  /** Stops every watch (the connection is closing). */
  close(): void {
    for (const [node, w] of this.#nodes) this.#drop(node, w);
  }

  #drop(node: string, w: Watched): void {
    if (this.#nodes.get(node) !== w) return;
    this.#nodes.delete(node);
    w.sub.unsubscribe();
    if (!this.#nodes.size) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #gone(node: string, w: Watched): void {
    this.#drop(node, w);
    for (const f of [...w.listeners]) f();
  }

  #check(): void {
    const now = Date.now();
    if (this.#offline || this.#nc.isClosed()) {
      for (const w of this.#nodes.values()) w.last = now;
      return;
    }
    for (const [node, w] of this.#nodes) {
      const silent = now - w.last;
      if (silent > NODE_TIMEOUT_MS) this.#gone(node, w);
      else if (silent > HEARTBEAT_MS * 1.5 && !w.probing) {
        // Late: a killed node's control subject has no responder any more; a busy one's has.
        w.probing = true;
        askNode(this.#nc, node, "").then((a) => {
          w.probing = false;
          if (a.gone && this.#nodes.get(node) === w) this.#gone(node, w);
        });
      }
    }
  }
}

/** The connection's {@link NodeWatch}, made on first use. */
export function nodeWatchOf(ctx: ActorCtx): NodeWatch {
  if (!ctx.nodeWatch) {
    const w = ctx.nodeWatch = new NodeWatch(ctx.nc);
    ctx.closers.add(() => w.close());
  }
  return ctx.nodeWatch;
}

/**
 * Calls `onExit` once with the reason actor `name` (on `node`, or wherever the registry says)
 * stops: its own reason, `"noconnection"` when its node is gone, `"noproc"` when no actor has
 * the name. The returned function cancels the watch. Nothing is called if the connection closes.
 *
 * @example
 * ```ts ignore
 * const cancel = watchActor(ctx, "counter-1", undefined, (reason) => console.log(reason));
 * ```
 */
export function watchActor(
  ctx: ActorCtx,
  name: string,
  node: string | undefined,
  onExit: (reason: ExitReason) => void,
): () => void {
  const { nc } = ctx;
  let over = false;
  let unwatchNode: (() => void) | undefined;
  const end = () => {
    if (over) return;
    over = true;
    sub.unsubscribe();
    unwatchNode?.();
  };
  const fire = (reason: ExitReason) => {
    if (over) return;
    end();
    onExit(reason);
  };
  const sub = nc.subscribe(downSubject(name), {
    callback: (_err, m) => {
      let down: [string, ExitReason];
      try {
        down = bodyOf<[string, ExitReason]>(m.data);
      } catch {
        return;
      }
      // Another incarnation's exit (the name re-spawned elsewhere) is not this one's.
      if (node === undefined || down[0] === node) fire(down[1]);
    },
  });
  (async () => {
    await nc.flush(); // subscribed before asking: an exit from now on is heard
    if (over) return;
    node ??= (await lookup(ctx, name))?.node;
    if (over) return;
    if (node === undefined) return fire("noproc");
    const watching = nodeWatchOf(ctx).watch(node, () => fire("noconnection"));
    if (over) return watching();
    unwatchNode = watching;
    const a = await askNode(nc, node, name);
    if (a.gone) fire("noconnection");
    else if (!a.up) fire(a.reason ?? "noproc");
  })().catch(async () => {
    // The server is away for a moment: the node's heartbeats decide, once watched.
    while (!over && !nc.isClosed() && unwatchNode === undefined) {
      await sleep(HEARTBEAT_MS);
      try {
        node ??= (await lookup(ctx, name))?.node;
        if (node === undefined) return fire("noproc");
        if (!over) unwatchNode = nodeWatchOf(ctx).watch(node, () => fire("noconnection"));
      } catch { /* still away */ }
    }
  });
  return end;
}

/**
 * Links (`link: true`) or unlinks two cluster actors (`cluster.link` / `cluster.unlink`): each
 * actor's node watches the other actor, in the actor's own message order, as a local link. An
 * abnormal exit of one (any reason but `"normal"`; `"noconnection"` when its node is gone)
 * stops the other with the same reason, unless it traps exits (`trapExits = true`): then its
 * `onExit(from, reason)` runs on its node, `from` a ref to the actor that stopped. Rejects with
 * `ActorExited` if either is not running (the other then gets the exit signal).
 *
 * @example
 * ```ts ignore
 * await linkOnCluster(a, b, true);
 * ```
 */
export async function linkOnCluster(
  a: ClusterActorRef<Actor>,
  b: ClusterActorRef<Actor>,
  link: boolean,
): Promise<void> {
  if (a.name === b.name) return;
  const op = link ? LINK : UNLINK;
  await Promise.all([controlOf(a, op, b), controlOf(b, op, a)]);
}
