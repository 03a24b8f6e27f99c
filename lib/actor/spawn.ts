/**
 * {@link spawn}: starts an actor in its own worker and returns its typed ref, and
 * {@link shutdown} of what this process started.
 *
 * @module
 */

import { waitAsync } from "../core/atomics.ts";
import { heap, MAIN_SLOT, nextId, retain } from "../core/heap.ts";
import { addRoot, removeRoot, shutdownRoots } from "../core/lifecycle.ts";
import { optionsOf } from "../core/args.ts";
import { importAhead, sandbox } from "../core/spawn.ts";
import { callerFor, resolveTarget } from "../core/target.ts";
import { ProcessError, ValueError } from "../core/errors.ts";
import { registerObject } from "../core/observe.ts";
import { checkIsolation } from "../process/os_spawn.ts";
import { type IsolationOptions, Process } from "../process/process.ts";
import { Actor, type ActorClass } from "./actor.ts";
import {
  ACTOR,
  Box,
  OS_PID,
  readReason,
  RUNNING,
  setStopped,
  SLOT,
  STATE,
  STOPPED,
  STOPPING,
} from "./block.ts";
import type { ExitReason } from "./exit.ts";
import { type ActorRef, makeRef } from "./ref.ts";
import { isolatedStarted } from "./isolated.ts";
import { forgetActor } from "./refmap.ts";
import { register } from "./registry.ts";
import { type ActorInit, actorMain } from "./runtime.ts";
import { watch } from "./watch.ts";

/**
 * Options of {@link spawn}. With `isolation: "process"` the actor runs in a `deno` OS process of
 * its own (see README "Isolation"): `kill()` stops even a handler looping for ever, `maxMemoryMb`
 * caps its heap, and its crash costs only itself; handles in its args and messages cross as to an
 * isolated `Process` (a `SharedMemory` is refused, naming it).
 */
export interface SpawnOptions<P extends unknown[]> extends IsolationOptions {
  /** Arguments of the actor class's constructor (handles may be nested anywhere). */
  args?: P;
  /** The actor's name (its worker's name too); default `ClassName-N`. */
  name?: string;
  /**
   * Default true: the actor ends with the program (daemon children are terminated at program
   * end). A non-daemon actor keeps the program alive until it is stopped, and may itself spawn
   * actors (a daemon process cannot start children).
   */
  daemon?: boolean;
  /**
   * Deno permissions for the actor's worker (at most the parent's), as `Process`'s
   * `permissions`: the worker may always read denomp's modules and the actor class's module.
   */
  permissions?: Deno.PermissionOptions;
  /** The module that exports the class, when it cannot be found automatically. */
  module?: string | URL;
  /**
   * Registers the actor under `name` before it starts (Erlang's `{local, Name}`): any worker
   * finds it with `whereis(name)`; the name is free again once it stops. A name held by a running
   * actor makes `spawn` throw `ValueError`. A supervisor's restart spawns it again: the new
   * instance takes the name over.
   */
  register?: boolean;
}

/** The module of the actor loop, which every actor's worker imports. */
const RUNTIME = new URL("./runtime.ts", import.meta.url).href;

function slotOfPid(pid: number): number {
  return pid - Deno.pid + MAIN_SLOT;
}

/**
 * Starts an instance of `cls` (an exported subclass of {@link Actor}) in its own worker and
 * resolves with a typed ref once its constructor and `onStart` have run. Rejects with the error
 * they threw, if any.
 *
 * @example
 * ```ts ignore
 * import { spawn } from "jsr:@denomp/multiprocessing";
 * import { Counter } from "./counter.ts";
 * const ref = await spawn(Counter, { name: "counter" });
 * await ref.call.inc(1);
 * console.log(await ref.call.get()); // 1
 * await ref.stop();
 * ```
 */
export async function spawn<A extends Actor, P extends unknown[]>(
  cls: ActorClass<A, P>,
  options?: SpawnOptions<P>,
): Promise<ActorRef<A>> {
  options = optionsOf(options, "spawn", 'spawn(Worker, { args: [1], name: "w" })');
  const caller = callerFor(cls, options.module);
  if (typeof cls !== "function" || !(cls.prototype instanceof Actor)) {
    throw new ValueError(`spawn() needs a class extending Actor: got ${String(cls)}`);
  }
  // Handles in the args of an isolated actor cross as to any isolated Process: its start()
  // refuses one that cannot (a SharedMemory), naming it.
  const isolated = checkIsolation(options, "spawn");
  const target = resolveTarget(cls, options.module, caller);
  const name = options.name ?? `${cls.name}-${nextId()}`;
  const box = new Box(Box.create(ACTOR, 0));
  registerObject("Actor", box.off, name);
  const ref = makeRef<A>(box, name, true);
  if (isolated) Atomics.store(box.i32, OS_PID, -1); // its messages are encoded for it from now on
  // The worker imports the class's module too: it may read that file, whatever was asked.
  const permissions = options.permissions === undefined
    ? undefined
    : sandbox(options.permissions, [target.module]);
  if (options.register) {
    if (options.name === undefined) throw new ValueError("spawn({ register: true }) needs a name");
    // Until its worker starts, the actor lives and dies with us: a spawner killed right here
    // must not leave the name to an actor that will never run.
    Atomics.store(box.i32, SLOT, heap().slot);
    register(name, ref); // before the worker starts: a taken name starts nothing
  }
  const init: ActorInit = { off: box.off, target, args: options.args ?? [], name };
  const p = new Process({
    target: actorMain,
    module: RUNTIME,
    args: [init],
    name,
    daemon: options.daemon ?? true,
    permissions,
    isolation: options.isolation,
    maxMemoryMb: options.maxMemoryMb,
    denoFlags: options.denoFlags,
  });
  importAhead(p, [target.module]);
  try {
    p.start();
  } catch (err) {
    setStopped(box, err instanceof Error ? err : String(err)); // frees the name, if any
    throw err;
  }
  retain(box.off); // the worker's reference, dropped by the watcher once the worker has ended
  // An isolated actor lives with its spawner until its OS process has connected (isolated.ts).
  Atomics.store(box.i32, SLOT, isolated ? heap().slot : slotOfPid(p.pid!));
  if (isolated) isolatedStarted(box, p, name);
  watch(box, () => {
    removeRoot(ref);
    try {
      forgetActor(box.off); // its names and groups go at once
    } catch { /* a zombie may not touch the table; lookups check liveness anyway */ }
  }, { process: p, name });
  addRoot(ref);
  for (;;) {
    const s = Atomics.load(box.i32, STATE);
    if (s === RUNNING || s === STOPPING) return ref;
    if (s === STOPPED) {
      const reason = readReason(box);
      if (reason instanceof Error) throw reason;
      throw new ProcessError(`actor ${name} failed to start: ${reason}`);
    }
    await waitAsync(box.i32, STATE, s, 50);
  }
}

/**
 * Stops every actor and supervisor this process started and no supervisor owns, in reverse
 * order of start, each after its queued messages (what Ctrl-C does before exiting).
 *
 * @example
 * ```ts
 * import { shutdown } from "jsr:@denomp/multiprocessing";
 * await shutdown(); // nothing started: resolves at once
 * ```
 */
export function shutdown(reason: ExitReason = "shutdown"): Promise<void> {
  return shutdownRoots(reason);
}
