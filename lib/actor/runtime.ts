/**
 * The actor's side: the loop run by its worker. {@link actorMain} imports the actor class's
 * module, builds the instance and handles the messages of its mailbox one at a time, in arrival
 * order, until it stops, and records why.
 *
 * @module
 */

import { alloc, isTerminatedError } from "../core/heap.ts";
import { addWarmUp } from "../core/child.ts";
import { shutdownRoots } from "../core/lifecycle.ts";
import { flushAll, Ring, TIMEOUT } from "../core/ring.ts";
import { ProcessError, ValueError } from "../core/errors.ts";
import { exit } from "../process/process.ts";
import { Actor } from "./actor.ts";
import {
  ACTOR,
  Box,
  decode,
  encodeAt,
  RUNNING,
  setStopped,
  STATE,
  STOPPING,
  SUPERVISED,
} from "./block.ts";
import {
  ASK,
  CALL,
  type Envelope,
  ERR,
  KILL,
  LINK,
  OK,
  type Reply,
  sendReply,
  STOP,
  TELL,
  UNLINK,
} from "./call.ts";
import { type ExitReason, isNormalExit } from "./exit.ts";
import { addLink, removeLink } from "./link.ts";
import { type ActorRef, makeRef } from "./ref.ts";
import { type Running, setConstructing, setRunning } from "./self.ts";
import { cancelOwnedTimers } from "./timers.ts";

/** What `spawn` hands to {@link actorMain}. */
export interface ActorInit {
  /** The actor's mailbox block. */
  off: number;
  /** The module URL and export name of the actor class. */
  target: { module: string; name: string };
  /** Constructor arguments. */
  args: unknown[];
  /** The actor's name. */
  name: string;
}

/**
 * How handling ended: `kill` skips `onStop`; `zombie` means this worker was terminated while its
 * thread was still running (see _ring "Zombies"): its parent has recorded the kill already, and it
 * stops at once without touching shared state.
 */
type Outcome = undefined | { reason: ExitReason; kill?: boolean; zombie?: boolean };

async function importClass(target: ActorInit["target"]): Promise<new (...a: unknown[]) => Actor> {
  const ns = await import(target.module) as Record<string, unknown>;
  const cls = ns[target.name] ??
    Object.values(ns).find((v) => typeof v === "function" && v.name === target.name);
  if (typeof cls !== "function" || !(cls.prototype instanceof Actor)) {
    throw new ProcessError(
      `'${target.name}' exported by ${target.module} is not a class extending Actor`,
    );
  }
  return cls as new (...a: unknown[]) => Actor;
}

function crash(run: Running, err: unknown, to: Reply | null): Outcome {
  if (isTerminatedError(err)) return { reason: "killed", zombie: true };
  // Stopping from now on, before the caller hears of the crash: whoever learns of it from the
  // reply sees the actor no longer running (a supervisor's `get` returns nothing for it).
  Atomics.store(run.box.i32, STATE, STOPPING);
  if (to) sendReply(to, ERR, err);
  const reason = err instanceof Error ? err : new Error(String(err));
  // A supervised crash is handled: its supervisor reports it (one line, or in full with
  // `verbose`), with the reason recorded here. Printed here too, it would be said twice.
  if (Atomics.load(run.box.i32, SUPERVISED) === 0) {
    const text = reason.stack ?? `${reason.name}: ${reason.message}`;
    console.error(`actor ${run.ref.name} crashed:\n${text}`);
  }
  return { reason };
}

/**

/** Runs a handler; replies to `to` if given. Sync when the handler is. */
function invoke(
  run: Running,
  fn: (...a: unknown[]) => unknown,
  args: unknown[],
  to: Reply | null,
): Outcome | Promise<Outcome> {
  let r: unknown;
  try {
    r = fn.apply(run.instance, args);
  } catch (e) {
    return crash(run, e, to);
  }
  if (
    r !== null && typeof r === "object" && typeof (r as PromiseLike<unknown>).then === "function"
  ) {
    return Promise.resolve(r).then((v) => {
      if (to && !to.stashed) sendReply(to, OK, v);
      return undefined;
    }, (e) => crash(run, e, to));
  }
  if (to && !to.stashed) sendReply(to, OK, r);
  return undefined;
}

const HOOKS = new Set(["constructor", "onStart", "onStop", "onExit", "receive", "self"]);
// The Actor base class's own tools are not remote methods either.
for (const m of ["sendAfter", "every", "become", "stash", "unstashAll"]) HOOKS.add(m);

function handle(run: Running, env: Envelope): Outcome | Promise<Outcome> {
  const inst = run.instance as unknown as Record<string, unknown>;
  switch (env[0]) {
    case TELL:
    case ASK: {
      const to = env[0] === ASK
        ? { id: env[1] as number, inbox: env[2] as number, slot: env[3] as number }
        : null;
      run.current = { env, to };
      const recv = run.behavior ?? inst.receive;
      if (typeof recv !== "function") {
        return crash(run, new ValueError(`actor ${run.ref.name} has no receive(msg) method`), to);
      }
      return invoke(run, recv as (...a: unknown[]) => unknown, [env[env[0] === ASK ? 4 : 1]], to);
    }
    case CALL: {
      const to = { id: env[1] as number, inbox: env[2] as number, slot: env[3] as number };
      run.current = { env, to };
      const method = env[4] as string, fn = inst[method];
      if (typeof fn !== "function" || HOOKS.has(method) || method.startsWith("#")) {
        // A bad method name cannot come from typed code: refuse it without crashing.
        sendReply(to, ERR, new ValueError(`actor ${run.ref.name} has no method '${method}'`));
        return undefined;
      }
      return invoke(run, fn as (...a: unknown[]) => unknown, env[5] as unknown[], to);
    }
    case STOP:
      return { reason: env[1] as ExitReason };
    case KILL:
      return { reason: "killed", kill: true };
    case LINK:
    case UNLINK: {
      const to = { id: env[1] as number, inbox: env[2] as number, slot: env[3] as number };
      if (env[0] === LINK) addLink(run, env[4] as ActorRef<Actor>);
      else removeLink(run, env[4] as ActorRef<Actor>);
      sendReply(to, OK, undefined);
      return undefined;
    }
  }
  return undefined;
}

/** Exit signals from linked actors: trapped ones become `onExit` calls, others stop us. */
async function handleSignals(run: Running): Promise<Outcome> {
  while (run.signals.length) {
    const { from, reason } = run.signals.shift()!;
    if (run.instance.trapExits) {
      const onExit = run.instance.onExit;
      if (typeof onExit !== "function") continue;
      const out = await invoke(run, onExit as (...a: unknown[]) => unknown, [from, reason], null);
      if (out) return out;
    } else if (reason !== "normal") {
      return { reason };
    }
  }
  return undefined;
}

const macrotask = () => new Promise<void>((r) => setTimeout(r, 0));

/**
 * How long an idle actor blocks its thread in `Atomics.wait` before it falls back to an async
 * wait. A blocked thread is woken by the sender's notify directly; an async wait is woken by a
 * helper thread that then queues a task for the event loop, two scheduling hops instead of one.
 * On a busy machine that makes a call round trip about a third faster (measured: 155 → 103 µs
 * with 2 cores oversubscribed). Only the actor's own thread blocks, only between messages, and
 * for at most this long: its timers and pending promise jobs are delayed by no more.
 */
const IDLE_BLOCK_MS = 2;

async function loop(run: Running): Promise<Outcome> {
  const ring = run.box.ring;
  let n = 0, since = performance.now();
  for (;;) {
    if (run.signals.length) {
      const out = await handleSignals(run);
      if (out) return out;
    }
    let env = (run.replay?.shift() ?? ring.tryRecv(decode)) as Envelope | typeof TIMEOUT;
    if (env === TIMEOUT) env = ring.recvSync(decode, { timeout: IDLE_BLOCK_MS }) as typeof env;
    if (env === TIMEOUT) {
      try {
        env = await ring.recv(decode, { signal: run.wake.signal }) as Envelope;
      } catch (e) {
        if (!run.wake.signal.aborted) throw e;
        run.wake = new AbortController();
        continue;
      }
      n = 0;
      since = performance.now();
    } else if (++n >= 256) {
      // A busy actor handles messages back to back without returning to its event loop: let
      // this worker's promise jobs (reply pumps, calls it made) run, and its timers now and then.
      n = 0;
      if (performance.now() - since > 20) {
        await macrotask();
        since = performance.now();
      } else await null;
    }
    let out = handle(run, env);
    if (out instanceof Promise) out = await out;
    run.current = undefined;
    if (out) return out;
  }
}

/**
 * The target of every actor's worker (internal: {@link spawn} starts it). Builds the actor,
 * handles its mailbox until it stops, and records why.
 */
export async function actorMain(init: ActorInit): Promise<void> {
  // Borrowed: the spawner holds this worker's reference to the block and drops it when the
  // worker has ended (a worker's own handles are never collected once it ends).
  const box = new Box(init.off);
  const ref = makeRef(box, init.name, false);
  let run: Running;
  try {
    const cls = await importClass(init.target);
    setConstructing(ref);
    let instance: Actor;
    try {
      instance = new cls(...init.args);
    } finally {
      setConstructing(undefined);
    }
    run = { box, ref, instance, links: new Map(), signals: [], wake: new AbortController() };
    setRunning(run);
    await instance.onStart?.();
  } catch (err) {
    // `spawn()` rejects with this error in the spawner; nothing to print here.
    setStopped(box, err instanceof Error ? err : new Error(String(err)));
    return exit(1);
  }
  Atomics.store(box.i32, STATE, RUNNING);
  Atomics.notify(box.i32, STATE);
  let out: Outcome;
  try {
    out = await loop(run);
  } catch (err) {
    out = crash(run, err, null); // a bug here, not in the actor: still stop cleanly
  }
  cancelOwnedTimers(); // a stopped actor's timers never fire
  if (out?.zombie) return;
  let reason = out!.reason;
  if (!out!.kill) {
    Atomics.store(box.i32, STATE, STOPPING);
    const hook = run.instance.onStop;
    if (typeof hook === "function") {
      try {
        await hook.call(run.instance, reason);
      } catch (err) {
        reason = crash(run, err, null)!.reason;
      }
    }
    await shutdownRoots("shutdown"); // actors and supervisors this actor started
  }
  for (const l of run.links.values()) l.unwatch();
  // Replies on their way out reach the reply rings before callers learn that we stopped.
  await flushAll();
  setStopped(box, reason);
  setRunning(null);
  if (out!.kill || !isNormalExit(reason)) exit(1);
}

/**
 * A spare worker's warm-up of the actor's side (see `addWarmUp` in core/child.ts): a mailbox
 * and its ref built, a call written into it and read, a reply written into a reply ring and
 * read, a tell handled, each twice, on the spare's private heap. Traced with a spare ready (deno
 * 2.9.6, 2 cores, other jobs running), medians of 11: from the arguments decoded to the first
 * reply sent 4.7–5.8 -> 3.2–3.4 ms, of which the first message's handling 0.87 -> 0.38 ms.
 * Nothing here outlives the warm-up: the blocks stay in the private heap, the ref adopts
 * nothing, and no cache keyed by offset is filled (`sendReply`'s rings are not).
 */
function warmUpActorSide(): void {
  const box = new Box(Box.create(ACTOR, 0));
  const ref = makeRef(box, "warm-up", false);
  // A tell to a stand-in instance: handle() and invoke() run without a reply to send.
  const instance = { receive: (x: unknown) => x } as unknown as Actor;
  const run: Running = {
    box,
    ref,
    instance,
    links: new Map(),
    signals: [],
    wake: new AbortController(),
  };
  const bytes = 4096;
  const reply = new Ring(Ring.init(alloc(bytes), bytes));
  for (let i = 0; i < 2; i++) {
    void box.ring.post(encodeAt([CALL, 1, 0, 0, "m", [i, "a"]], 5, "args", box), box.postOpts);
    box.ring.tryRecv(decode);
    box.ring.recvSync(decode, { timeout: 0 });
    void reply.post(encodeAt([1, OK, i], 2, "result"), { broken: () => false });
    reply.tryRecv(decode);
    void handle(run, [TELL, i]);
  }
}

addWarmUp(warmUpActorSide);
