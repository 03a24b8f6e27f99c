/**
 * The node side of actors on the cluster (`hostActors`, started by `runClusterWorker` with
 * `--actors`): a node hosts the `Actor` classes of the modules it was started with — no code
 * comes from the wire — spawns them on request (`cluster.spawn`), activates virtual actors on
 * their first call (one activation wins, by compare-and-set in the registry), deactivates idle
 * ones, and answers the questions a caller asks about a call with no reply (is it held here?).
 * A stopping actor drains its subscription, so a request that reached it late is answered
 * ("retry" or "exited"), never dropped.
 *
 * @module
 */

import type { Msg, Subscription } from "./nats.ts";
import {
  type ActorCtx,
  actorSubject,
  ASK,
  askNode,
  bodyOf,
  CALL,
  checkActorName,
  CLASS_RE,
  ClusterActorRef,
  type Entry,
  ERR,
  EXITED,
  EXITS_KEPT,
  FOREVER,
  frame,
  IDLE_MS,
  LINK,
  nodeSubject,
  OK,
  RETRY,
  SHUTDOWN_GRACE_MS,
  sleep,
  SPAWN_GROUP,
  spawnAllSubject,
  spawnSubject,
  STOP,
  TELL,
  UNLINK,
  virtualRecord,
  virtualState,
  virtualSubject,
} from "./actors.ts";
import { Actor } from "../actor/actor.ts";
import { ActorExited, type ExitReason } from "../actor/exit.ts";
import { ValueError } from "../core/errors.ts";
import { dumps, loads } from "../core/reduction.ts";
import { encodeFailure } from "./exec.ts";
import {
  __testHooks,
  isPersistent,
  type PersistEvery,
  persistEveryOf,
  StoredState,
} from "./virtual.ts";
import { heardOf, heartbeat, publishDown, watchActor } from "./watch.ts";

// ---------------------------------------------------------------------------------------------
// Node side

/** Options of {@link hostActors}. */
export interface HostActorsOptions {
  /** Module URLs whose exported `Actor` subclasses this node hosts. */
  modules: string[];
  /** This node's id (letters, digits, '-', '_'). */
  node: string;
  /** Where progress lines go. */
  log: (line: string) => void;
  /** Milliseconds an idle virtual actor stays activated, unless its class says; default 300 000. */
  idleMs?: number;
}

/** A node's actors, as {@link hostActors} returns them. */
export interface ActorHost {
  /** The node's id. */
  readonly node: string;
  /** The class names hosted. */
  readonly classes: string[];
  /** Stops every actor (`"shutdown"`), frees their names, and stops serving. */
  stop(): Promise<void>;
}

type Outcome = undefined | { reason: ExitReason };

/** What a virtual actor's activation keeps besides a spawned actor's. */
interface Activation {
  /** Its stored state, when the class has `persist()` and `restore(state)`. */
  state?: StoredState;
  every: PersistEvery;
  idleMs: number;
  /** Set by the `persistEvery` timer: the drain saves once the message in hand is done. */
  saveDue: boolean;
  saveTimer?: ReturnType<typeof setTimeout>;
  idleTimer?: ReturnType<typeof setTimeout>;
}

/** One actor living on this node: its instance and its queue of messages. */
class Hosted {
  readonly queue: Msg[] = [];
  /** The message being handled, until it is answered: with the queue, what this actor holds. */
  current?: Msg;
  busy = false;
  stopped = false;
  sub?: Subscription;
  /** The actors linked to this one (cluster.link), each with the cancel of its watch. */
  readonly links = new Map<string, () => void>();
  /** Exit signals of linked actors, handled between messages. */
  readonly signals: { from: string; reason: ExitReason }[] = [];

  constructor(
    readonly name: string,
    readonly instance: Actor,
    readonly methods: ReadonlySet<string>,
    readonly revision: number,
    /** The node found gone whose registry record this actor took over, if any. */
    readonly from: string | undefined,
    readonly virtual?: Activation,
    /** The name errors show: the name, or a virtual actor's `Class/key`. */
    readonly label = name,
  ) {}

  /** Whether the request answered on `reply` is queued here or being handled. */
  holds(reply: string): boolean {
    return this.current?.reply === reply || this.queue.some((m) => m.reply === reply);
  }
}

/** Thrown by a claim that finds the actor started by an earlier try of the same spawn. */
class Started extends Error {
  constructor(readonly node: string) {
    super(`started on node '${node}'`);
  }
}

/** The public methods of an actor class: those its prototypes define below `Actor`'s. */
function methodsOf(cls: new (...a: never[]) => Actor): Set<string> {
  const out = new Set<string>();
  for (let p = cls.prototype; p && p !== Actor.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) {
      const d = Object.getOwnPropertyDescriptor(p, k)!;
      if (typeof d.value === "function" && !HOOKS.has(k)) out.add(k);
    }
  }
  return out;
}
const HOOKS = new Set([
  "constructor",
  "onStart",
  "onStop",
  "onExit",
  "receive",
  "persist",
  "restore",
]);

/**
 * Stops a subscription without losing what is on its way to it. Not `unsubscribe()`: the client
 * forgets the subscription at once and silently drops every message the server routed to it
 * before it processed the UNSUB, so those callers would wait for a reply for ever (issue 20: an
 * idle virtual actor deactivating under load). Drained, the callback still gets them until the
 * server confirms, and answers them: RETRY (a virtual actor's, sent again to its next
 * activation), EXITED, or a stopping node's refusal.
 */
function closeSub(sub: Subscription): Promise<void> {
  return sub.drain().catch(() => {/* the connection is closing: its callers hear so */});
}

function replyTo(m: Msg, status: number, value: unknown): void {
  if (!m.reply) return;
  let body: Uint8Array;
  try {
    body = status === ERR ? encodeFailure(value) : dumps(value, "result");
  } catch (e) {
    status = ERR;
    body = encodeFailure(e);
  }
  m.respond(frame(status, body));
}

/**
 * Hosts the actor classes exported by `modules` on this node (the worker command's `--actors`):
 * answers spawn requests for them, runs each actor's messages one at a time, and answers other
 * clients' questions about its actors. Resolves once it serves.
 *
 * @example
 * ```ts ignore
 * const host = await hostActors(ctx, { modules: ["file:///app/actors.ts"], node: "a1", log });
 * await host.stop();
 * ```
 */
export async function hostActors(ctx: ActorCtx, options: HostActorsOptions): Promise<ActorHost> {
  const { nc } = ctx;
  const { node, log } = options;
  const classes = new Map<string, new (...a: unknown[]) => Actor>();
  for (const url of options.modules) {
    const mod = await import(url) as Record<string, unknown>;
    let found = 0;
    for (const [key, v] of Object.entries(mod)) {
      if (typeof v !== "function" || !(v.prototype instanceof Actor)) continue;
      const cls = v as new (...a: unknown[]) => Actor;
      // A subclass of another copy of `Actor` (a second denomp) fails the check above: the
      // module must import the same denomp as this worker.
      if (classes.has(key)) log(`denomp worker: actor class ${key} of ${url} hidden by another`);
      else classes.set(key, cls);
      found++;
    }
    if (!found) {
      throw new Error(
        `--actors ${url} exports no class extending Actor (of this denomp: ${
          new URL("../actor/actor.ts", import.meta.url).href
        })`,
      );
    }
  }
  if (options.idleMs !== undefined && !(options.idleMs > 0)) {
    throw new ValueError(`idleMs must be a positive number of milliseconds: got ${options.idleMs}`);
  }
  const kv = await ctx.actorRegistry();
  const hosted = new Map<string, Hosted>();
  /** Virtual actors being activated here, by record key: a second request waits for the first. */
  const activating = new Map<string, Promise<void>>();
  const exits = new Map<string, ExitReason>();
  const subs: Subscription[] = [];
  /** Subscriptions being drained: a stopping node answers what reaches them before it closes. */
  const draining = new Set<Promise<void>>();
  const release = (sub: Subscription) => {
    const p = closeSub(sub);
    draining.add(p);
    void p.then(() => draining.delete(p));
  };
  /** Until the subscriptions being drained are (a few seconds at most: the server may be away). */
  const drained = async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(draining),
      new Promise((r) => timer = setTimeout(r, SHUTDOWN_GRACE_MS)),
    ]);
    clearTimeout(timer);
  };
  let closing = false;

  /** Claims `name` in the registry: its revision, and the gone node it was taken from. */
  const claim = async (
    name: string,
    cls: string,
    spawn?: string,
  ): Promise<{ revision: number; from?: string }> => {
    const value = JSON.stringify({ node, cls, spawn } satisfies Entry);
    try {
      return { revision: await kv.create(name, value) };
    } catch (e) {
      const cur = await kv.get(name);
      if (!cur) throw e;
      let from: string | undefined;
      if (cur.operation === "PUT" && cur.length > 0) {
        const { node: owner, spawn: by } = cur.json<Entry>();
        const a = owner === node
          ? { gone: false as const, up: hosted.has(name) || activating.has(name) }
          : await askNode(nc, owner, name);
        // A node that neither answers nor sends heartbeats is gone (hung, or cut off).
        const gone = a.gone || (a.silent === true && !await heardOf(nc, owner));
        // This spawn's earlier try (sent again after a node that took it did not answer), started
        // or starting there (a start that fails deletes its record).
        if (!gone && spawn !== undefined && by === spawn) throw new Started(owner);
        if (!gone && a.up) {
          throw new ValueError(`actor name '${name}' is taken (running on node '${owner}')`);
        }
        if (gone) from = owner;
      }
      // Deleted, or left behind by a node that is gone or no longer runs it: ours, unless
      // another spawn takes it first (then this update fails on the revision).
      try {
        return { revision: await kv.update(name, value, cur.revision), from };
      } catch {
        const now = await kv.get(name).catch(() => null);
        const won = now?.operation === "PUT" && now.length > 0 ? now.json<Entry>() : undefined;
        if (spawn !== undefined && won?.spawn === spawn) throw new Started(won.node);
        throw new ValueError(`actor name '${name}' is taken`);
      }
    }
  };

  const finish = async (h: Hosted, reason: ExitReason, stopMsg?: Msg) => {
    if (h.stopped) {
      // Stopped meanwhile (the node shut it down while this handler ran): once is enough.
      if (stopMsg) replyTo(stopMsg, EXITED, exits.get(h.name) ?? reason);
      return;
    }
    h.stopped = true;
    if (h.sub) release(h.sub);
    for (const unwatch of h.links.values()) unwatch();
    h.links.clear();
    h.signals.length = 0;
    const v = h.virtual;
    if (v) {
      clearTimeout(v.saveTimer);
      clearTimeout(v.idleTimer);
      // Queued messages did not run: their callers send them again, to the next activation.
      for (const m of h.queue.splice(0)) replyTo(m, RETRY, null);
    } else {
      hosted.delete(h.name);
      exits.set(h.name, reason);
      if (exits.size > EXITS_KEPT) exits.delete(exits.keys().next().value!);
      // Queued calls and asks hear why; queued tells are dropped, as a stopped local actor's.
      for (const m of h.queue.splice(0)) replyTo(m, EXITED, reason);
    }
    try {
      await h.instance.onStop?.(reason);
    } catch (e) {
      log(`denomp worker: actor ${h.label}'s onStop failed: ${(e as Error)?.stack ?? e}`);
    }
    if (v) {
      // The last state is saved before the activation record goes: until then this node says
      // it hosts the actor, so no other node activates it from an older state. A crash keeps
      // what was saved before the failing call: the next activation starts from there.
      if (v.state && !(reason instanceof Error)) {
        try {
          await v.state.save();
        } catch (e) {
          log(`denomp worker: actor ${h.label}'s state not saved: ${(e as Error)?.message ?? e}`);
        }
      }
      hosted.delete(h.name);
    }
    try {
      await kv.delete(h.name, { previousSeq: h.revision });
    } catch { /* taken over already, or the server is away */ }
    // Monitors, links and supervisors of it hear why (its name is free again by now).
    if (!v) publishDown(nc, node, h.name, reason);
    if (stopMsg) replyTo(stopMsg, OK, reason);
  };

  const crash = (h: Hosted, e: unknown, m: Msg | null): Outcome => {
    if (m) replyTo(m, ERR, e);
    const reason = e instanceof Error ? e : new Error(String(e));
    log(`actor ${h.label} crashed:\n${reason.stack ?? `${reason.name}: ${reason.message}`}`);
    return { reason };
  };

  const invoke = (
    h: Hosted,
    fn: (...a: unknown[]) => unknown,
    args: unknown[],
    m: Msg | null,
  ): Outcome | Promise<Outcome> => {
    let r: unknown;
    try {
      r = fn.apply(h.instance, args);
    } catch (e) {
      return crash(h, e, m);
    }
    if (
      r !== null && typeof r === "object" && typeof (r as PromiseLike<unknown>).then === "function"
    ) {
      return Promise.resolve(r).then((v) => done(h, v, m), (e) => crash(h, e, m));
    }
    return done(h, r, m);
  };

  /** A handler's success: saves a persistent virtual actor's state first, then replies. */
  const done = (h: Hosted, value: unknown, m: Msg | null): Outcome | Promise<Outcome> => {
    const v = h.virtual;
    if (v?.state && v.every === "call") {
      // The reply waits for the save: a caller that got its answer knows the change is kept.
      return v.state.save().then(() => {
        if (m) replyTo(m, OK, value);
        return undefined;
      }, (e) => crash(h, e, m));
    }
    if (v?.state && v.saveTimer === undefined) {
      v.saveTimer = setTimeout(() => {
        v.saveTimer = undefined;
        v.saveDue = true;
        if (!h.busy) void drain(h);
      }, v.every as number);
    }
    if (m) replyTo(m, OK, value);
    return undefined;
  };

  const handle = (h: Hosted, m: Msg): Outcome | Promise<Outcome> => {
    const op = m.data[0];
    let body: unknown;
    try {
      body = bodyOf<unknown>(m.data);
    } catch (e) {
      replyTo(m, ERR, e); // undecodable: refused, the actor goes on
      return undefined;
    }
    const inst = h.instance as unknown as Record<string, unknown>;
    switch (op) {
      case CALL: {
        const [method, args] = body as [string, unknown[]];
        const fn = inst[method];
        if (!h.methods.has(method) || typeof fn !== "function" || !Array.isArray(args)) {
          replyTo(m, ERR, new ValueError(`actor ${h.label} has no method '${method}'`));
          return undefined;
        }
        return invoke(h, fn as (...a: unknown[]) => unknown, args, m);
      }
      case TELL:
      case ASK: {
        const to = op === ASK ? m : null;
        const recv = inst.receive;
        if (typeof recv !== "function") {
          return crash(h, new ValueError(`actor ${h.label} has no receive(msg) method`), to);
        }
        return invoke(h, recv as (...a: unknown[]) => unknown, [body], to);
      }
      case STOP:
        return { reason: body as ExitReason };
      case LINK:
      case UNLINK: {
        const [peer, peerNode] = body as [string, string | undefined];
        try {
          checkActorName(peer); // it names NATS subjects: a token, nothing else
          if (peerNode !== undefined) checkActorName(peerNode);
        } catch (e) {
          replyTo(m, ERR, e);
          return undefined;
        }
        if (op === UNLINK) h.links.get(peer)?.();
        if (op === UNLINK || h.links.has(peer) || peer === h.name) h.links.delete(peer);
        else {
          h.links.set(
            peer,
            watchActor(ctx, peer, peerNode, (reason) => {
              h.links.delete(peer);
              if (h.stopped) return;
              h.signals.push({ from: peer, reason });
              if (!h.busy) void drain(h);
            }),
          );
        }
        replyTo(m, OK, null);
        return undefined;
      }
    }
    replyTo(m, ERR, new ValueError(`actor ${h.label}: unknown message kind ${op}`));
    return undefined;
  };

  /** Exit signals of linked actors: trapped ones become `onExit` calls, others stop `h`. */
  const onSignals = async (h: Hosted): Promise<Outcome> => {
    while (h.signals.length) {
      const { from, reason } = h.signals.shift()!;
      if (h.instance.trapExits) {
        const onExit = h.instance.onExit;
        if (typeof onExit !== "function") continue;
        const fn = onExit as (...a: unknown[]) => unknown;
        let out = invoke(h, fn, [new ClusterActorRef(ctx, from), reason], null);
        if (out instanceof Promise) out = await out;
        if (out) return out;
      } else if (reason !== "normal") {
        return { reason };
      }
    }
    return undefined;
  };

  /** Handles `h`'s queued messages in order; awaits only handlers that return promises. */
  const drain = async (h: Hosted) => {
    h.busy = true;
    const v = h.virtual;
    if (v) clearTimeout(v.idleTimer);
    while ((h.queue.length || v?.saveDue || h.signals.length) && !h.stopped) {
      if (h.signals.length) {
        const out = await onSignals(h);
        if (out) await finish(h, out.reason);
        continue;
      }
      if (!h.queue.length) {
        // The `persistEvery` timer fired: save between messages, never inside a handler.
        v!.saveDue = false;
        try {
          await v!.state!.save();
        } catch (e) {
          await finish(h, crash(h, e, null)!.reason);
        }
        continue;
      }
      const m = h.current = h.queue.shift()!;
      let out = handle(h, m);
      if (out instanceof Promise) out = await out;
      if (out) {
        await finish(h, out.reason, m.data[0] === STOP ? m : undefined);
        break;
      }
      h.current = undefined;
    }
    h.current = undefined;
    h.busy = false;
    armIdle(h);
  };

  /** (Re)starts an idle virtual actor's deactivation timer; the next message stops it. */
  const armIdle = (h: Hosted) => {
    const v = h.virtual;
    if (!v || h.stopped || h.busy) return;
    clearTimeout(v.idleTimer);
    v.idleTimer = setTimeout(() => {
      if (!h.busy && !h.queue.length) void finish(h, "normal");
    }, Math.min(v.idleMs, FOREVER));
  };

  /**
   * Starts actor `name` (a spawned actor's name, or a virtual actor's record key) once the
   * registry says it is ours; serves its subject.
   */
  const start = async (
    name: string,
    clsName: string,
    args: unknown[],
    subject: string,
    virtual?: { key: string },
    spawn?: string,
  ) => {
    let revision = 0;
    try {
      const cls = classes.get(clsName)!;
      const claimed = await claim(name, clsName, spawn);
      revision = claimed.revision;
      if (__testHooks.activationDelayMs) await sleep(__testHooks.activationDelayMs);
      const instance = new cls(...args);
      let activation: Activation | undefined;
      if (virtual) {
        const c = cls as unknown as { idleMs?: unknown };
        const idleMs = c.idleMs ?? options.idleMs ?? IDLE_MS;
        if (typeof idleMs !== "number" || !(idleMs > 0)) {
          throw new ValueError(`${clsName}.idleMs must be a positive number of milliseconds`);
        }
        activation = { every: persistEveryOf(cls, clsName), idleMs, saveDue: false };
        if (typeof activation.every === "number") {
          activation.every = Math.min(activation.every, FOREVER);
        }
        if (isPersistent(instance)) {
          activation.state = new StoredState(
            kv,
            virtualState(clsName, virtual.key),
            `${clsName}/${virtual.key}`,
            instance,
          );
          await activation.state.restore();
        }
      }
      await instance.onStart?.();
      const label = virtual ? `${clsName}/${virtual.key}` : name;
      const h = new Hosted(
        name,
        instance,
        methodsOf(cls),
        revision,
        claimed.from,
        activation,
        label,
      );
      hosted.set(name, h);
      h.sub = nc.subscribe(subject, {
        // One queue group for a virtual actor's subject: should a node that was cut off come
        // back with a stale activation still subscribed, each message still runs once, and the
        // stale one stops at its first save (compare-and-set).
        queue: virtual ? "denomp_virtual" : undefined,
        callback: (_err, msg) => {
          if (h.stopped) {
            return replyTo(msg, virtual ? RETRY : EXITED, exits.get(name) ?? "normal");
          }
          h.queue.push(msg);
          if (!h.busy) void drain(h);
        },
      });
      await nc.flush(); // the server knows the subscription before the spawner calls
      armIdle(h); // (a message that came meanwhile has a drain running, which arms it after)
    } catch (e) {
      if (revision) {
        hosted.delete(name);
        try {
          await kv.delete(name, { previousSeq: revision });
        } catch { /* the server is away */ }
      }
      throw e;
    }
  };

  /**
   * After this node was paused past the heartbeat timeout, other nodes may have found it gone and
   * taken its actors over: the ones whose registry record is no longer this node's stop
   * (a virtual one without saving: the other activation's state wins).
   */
  const fence = async () => {
    for (const h of [...hosted.values()]) {
      try {
        const cur = await kv.get(h.name);
        if (h.stopped || (cur?.revision === h.revision && cur.operation === "PUT")) continue;
        log(`denomp worker: actor ${h.label} was taken over while this node was paused`);
        const why = `actor ${h.label}: its node '${node}' was paused and found gone`;
        await finish(h, h.virtual ? new ActorExited(h.label, "noconnection", why) : "noconnection");
      } catch { /* the server is away: fenced at the next pause, or by compare-and-set */ }
    }
  };

  const onSpawn = async (m: Msg, clsName: string) => {
    try {
      const [n, args, isVirtual, spawn] = loads<[string, unknown[], boolean?, string?]>(
        new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength),
      );
      if (closing) {
        // A virtual actor's caller asks again, and reaches a node that is not stopping.
        if (isVirtual) return replyTo(m, RETRY, null);
        throw new ValueError(`node '${node}' is stopping`);
      }
      const key = checkActorName(n);
      if (!isVirtual) {
        try {
          await start(key, clsName, args, actorSubject(key), undefined, spawn);
        } catch (e) {
          if (!(e instanceof Started)) throw e;
          // Another try is starting it (here or there): answer once it serves.
          const serving = async () => {
            const a = await askNode(nc, e.node, key);
            return a.gone || a.up;
          };
          for (let i = 0; i < 40 && !await serving(); i++) await sleep(50);
          return replyTo(m, OK, e.node);
        }
        return replyTo(m, OK, node);
      }
      const record = virtualRecord(clsName, key);
      // Being deactivated here: once its state is saved and its record gone, the caller's next
      // try activates it afresh.
      if (hosted.get(record)?.stopped) return replyTo(m, RETRY, null);
      if (!hosted.has(record)) {
        let p = activating.get(record);
        if (!p) {
          p = start(record, clsName, [key], virtualSubject(clsName, key), { key });
          activating.set(record, p);
          p.then(() => activating.delete(record), () => activating.delete(record));
        }
        try {
          await p;
        } catch (e) {
          // Active on another node (or still stopping here): the caller calls it again.
          if (e instanceof ValueError && /is taken/.test(e.message)) return replyTo(m, RETRY, null);
          throw e;
        }
      }
      replyTo(m, OK, node);
    } catch (e) {
      replyTo(m, ERR, e);
    }
  };

  // Questions about an actor: `<name>`, or `<name> <reply subject>` from a caller whose request
  // is slow. Up: [1], or [1, held] (held: that request is queued or in hand here) and the gone
  // node this actor's record was taken from, if any. Else [0], or [0, exit reason].
  subs.push(nc.subscribe(nodeSubject(node), {
    callback: (_err, m) => {
      const [name, reply] = new TextDecoder().decode(m.data).split(" ");
      const h = hosted.get(name);
      if (h && reply !== undefined) {
        const from = new TextEncoder().encode(h.from ?? "");
        const out = new Uint8Array(2 + from.length);
        out[0] = 1;
        out[1] = h.holds(reply) ? 1 : 0;
        out.set(from, 2);
        m.respond(out);
        return;
      }
      const reason = exits.get(name);
      m.respond(
        h || activating.has(name)
          ? new Uint8Array([1])
          : reason === undefined
          ? new Uint8Array([0])
          : frame(0, dumps(reason, "reason")),
      );
    },
  }));
  for (const clsName of classes.keys()) {
    if (!CLASS_RE.test(clsName)) {
      log(`denomp worker: actor class '${clsName}' not hosted: its name is not a NATS token`);
      continue;
    }
    subs.push(nc.subscribe(spawnSubject(clsName), {
      queue: SPAWN_GROUP,
      callback: (_err, m) => void onSpawn(m, clsName),
    }));
    subs.push(nc.subscribe(spawnAllSubject(clsName), {
      callback: (_err, m) => void onSpawn(m, clsName),
    }));
  }
  await nc.flush();
  const stopHeartbeat = heartbeat(nc, node, () => void fence());
  log(
    `denomp worker: node '${node}' hosts actors ${[...classes.keys()].join(", ")} from ${
      options.modules.join(", ")
    }`,
  );
  return {
    node,
    classes: [...classes.keys()],
    async stop() {
      closing = true;
      for (const s of subs.splice(1)) release(s); // no new spawns; still answer questions
      // Each actor finishes the message it is handling (for a few seconds at most: a node
      // being stopped must end), then stops with "shutdown"; queued calls hear so.
      const deadline = Date.now() + SHUTDOWN_GRACE_MS;
      await Promise.all([...hosted.values()].map(async (h) => {
        while (h.busy && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        if (!h.stopped) await finish(h, "shutdown");
      }));
      // What reached the actors' subscriptions meanwhile is answered before the connection
      // closes (it would be lost, its callers left to find out); then the questions stop.
      await drained();
      subs.splice(0).forEach(release);
      await drained();
      stopHeartbeat();
    },
  };
}
