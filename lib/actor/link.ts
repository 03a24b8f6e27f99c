/**
 * Monitors and links (Erlang's): {@link monitor} resolves with the reason an actor stopped;
 * {@link link} ties two actors' lives together (an abnormal exit stops the other, unless it
 * traps exits). Links are kept by the actors themselves: both sides of the protocol live here.
 *
 * @module
 */

import { keepAlive } from "../core/atomics.ts";
import { optionsOf } from "../core/args.ts";
import { Process } from "../process/process.ts";
import type { Actor } from "./actor.ts";
import { LINK, request, UNLINK } from "./call.ts";
import type { ExitReason } from "./exit.ts";
import { type ActorRef, boxOf } from "./ref.ts";
import { type Running, running } from "./self.ts";
import { watch, watchProcess } from "./watch.ts";

/** The actor's side of `link`: watches `peer`, whose exit becomes a signal to `run`. */
export function addLink(run: Running, peer: ActorRef<Actor>): void {
  const off = boxOf(peer).off;
  if (run.links.has(off) || off === run.box.off) return;
  const unwatch = watch(boxOf(peer), (reason) => {
    run.links.delete(off);
    run.signals.push({ from: peer, reason });
    run.wake.abort();
  });
  run.links.set(off, { ref: peer, unwatch });
}

/** The actor's side of `unlink`. */
export function removeLink(run: Running, peer: ActorRef<Actor>): void {
  const off = boxOf(peer).off;
  run.links.get(off)?.unwatch();
  run.links.delete(off);
}

/** Options of {@link monitor}. */
export interface MonitorOptions {
  /** Cancels the monitor (Erlang's `demonitor`): the promise then never settles. */
  signal?: AbortSignal;
  /**
   * Default true: a pending monitor keeps the program alive, like any awaited operation. False
   * lets the program end meanwhile (a supervisor watches its children this way).
   */
  keepAlive?: boolean;
}

/**
 * Anything else {@link monitor} watches: whatever tells when it stops with an `exited` promise
 * (a cluster actor's ref, a `Supervisor`, a `Supervisable`).
 *
 * @example
 * ```ts
 * import { monitor, Supervisor } from "jsr:@denomp/multiprocessing";
 * const sup = await new Supervisor({ children: [] }).start();
 * const down = monitor(sup);
 * await sup.stop();
 * console.assert(await down === "shutdown");
 * ```
 */
export interface Exiting {
  /** Resolves with the reason once it has stopped. */
  readonly exited: Promise<ExitReason>;
}

/**
 * Resolves with the reason `target` stops for (Erlang's monitor): for an actor, `"normal"`,
 * `"shutdown"`, `"killed"`, or the `Error` it crashed with; for a started `Process`, `"normal"`
 * (exit code 0), `"killed"` (terminated or killed) or a `ProcessError` naming the exit code; for
 * anything with an `exited` promise (a cluster actor's ref: `"noconnection"` when its node is
 * gone), what that resolves with. Resolves at once if it has stopped already.
 *
 * @example
 * ```ts ignore
 * import { monitor, spawn } from "jsr:@denomp/multiprocessing";
 * import { Counter } from "./counter.ts";
 * const ref = await spawn(Counter);
 * const down = monitor(ref);
 * await ref.stop();
 * console.log(await down); // "normal"
 * ```
 */
export function monitor<A extends Actor>(
  target: ActorRef<A> | Process | Exiting,
  options?: MonitorOptions,
): Promise<ExitReason> {
  options = optionsOf(options, "monitor", "monitor(ref, { keepAlive: false })");
  const signal = options.signal;
  const p = new Promise<ExitReason>((resolve) => {
    if (signal?.aborted) return;
    const cancel = target instanceof Process
      ? watchProcess(target, resolve)
      : "exited" in target
      ? exitedOf(target, resolve)
      : watch(boxOf(target as ActorRef<Actor>), resolve);
    signal?.addEventListener("abort", cancel, { once: true });
  });
  return options.keepAlive === false ? p : keepAlive(p);
}

/** Watches an {@link Exiting}: the returned function stops telling `resolve`. */
function exitedOf(target: Exiting, resolve: (r: ExitReason) => void): () => void {
  let on = true;
  void target.exited.then((r) => on && resolve(r));
  return () => on = false;
}

const RESOLVED: Promise<void> = Promise.resolve();

function linkOne(x: ActorRef<Actor>, peer: ActorRef<Actor>, kind: number): Promise<unknown> {
  const box = boxOf(x);
  const run = running();
  if (run?.box.off === box.off) {
    if (kind === LINK) addLink(run, peer);
    else removeLink(run, peer);
    return RESOLVED;
  }
  return request(box, x.name, [kind, 0, 0, 0, peer], 4, "peer");
}

/**
 * Links two actors (Erlang's `link`): when one stops abnormally (any reason but `"normal"`), the
 * other stops with the same reason, unless it traps exits (`trapExits = true`), in which case
 * its `onExit(from, reason)` runs. Links are kept by the actors themselves, so they hold
 * whichever process made them. Rejects with {@link ActorExited} if either had stopped (the other
 * then gets the exit signal).
 *
 * @example
 * ```ts ignore
 * import { link, monitor, spawn } from "jsr:@denomp/multiprocessing";
 * import { Worker } from "./worker.ts";
 * const a = await spawn(Worker), b = await spawn(Worker);
 * await link(a, b);
 * await a.call.crash().catch(() => {});
 * console.log(await monitor(b)); // the Error a crashed with
 * ```
 */
export async function link<A extends Actor, B extends Actor>(
  a: ActorRef<A>,
  b: ActorRef<B>,
): Promise<void> {
  const x = a as ActorRef<Actor>, y = b as ActorRef<Actor>;
  if (x.equals(y)) return;
  await Promise.all([linkOne(x, y, LINK), linkOne(y, x, LINK)]);
}

/**
 * Removes a link made by {@link link}.
 *
 * @example
 * ```ts ignore
 * await unlink(a, b);
 * ```
 */
export async function unlink<A extends Actor, B extends Actor>(
  a: ActorRef<A>,
  b: ActorRef<B>,
): Promise<void> {
  const x = a as ActorRef<Actor>, y = b as ActorRef<Actor>;
  await Promise.all([linkOne(x, y, UNLINK), linkOne(y, x, UNLINK)]);
}
