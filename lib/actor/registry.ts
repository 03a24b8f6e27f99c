/**
 * Names for actors (Erlang's `register`/`whereis`, Akka's receptionist): any worker finds an
 * actor by the name it was registered under, without being handed its ref.
 *
 * The registry is one table in shared memory for the whole process tree (see `refmap.ts`), so
 * a name registered in one worker is found in every other at once. A name belongs to one
 * running actor; once that actor stops (for any reason, its worker terminated included) the
 * name is free again, and `whereis` never returns a dead ref: it checks the actor's liveness on
 * every lookup. `spawn(Cls, { name, register: true })` registers before the actor starts, so a
 * supervisor that restarts such a child registers the new instance under the same name: the
 * name outlives restarts, the refs do not.
 *
 * @module
 */

import { names } from "./refmap.ts";
import type { Actor } from "./actor.ts";
import { ActorRef } from "./ref.ts";
import { ValueError } from "../core/errors.ts";

function checkName(name: unknown, fn: string): asserts name is string {
  if (typeof name !== "string") {
    throw new TypeError(`${fn}() takes a name string: got ${typeof name} (${String(name)})`);
  }
  if (name === "") throw new ValueError(`${fn}(): a name cannot be empty`);
}

/**
 * Registers `ref` under `name` for every worker of the program (Erlang's `register/2`). Throws
 * `ValueError` if a running actor holds the name already (Erlang's `badarg`), or if `ref` has
 * stopped. Registering an actor under the name it holds already does nothing.
 *
 * @example
 * ```ts ignore
 * import { register, spawn, whereis } from "jsr:@denomp/multiprocessing";
 * import { Counter } from "./counter.ts";
 * const ref = await spawn(Counter);
 * register("counter", ref);
 * await whereis<Counter>("counter")?.call.inc(1); // from any worker
 * ```
 */
export function register<A extends Actor>(name: string, ref: ActorRef<A>): void {
  checkName(name, "register");
  if (!(ref instanceof ActorRef)) {
    throw new TypeError(`register() takes an ActorRef: got ${String(ref)}`);
  }
  names.add(name, ref as ActorRef<Actor>, true);
}

/**
 * The running actor registered under `name`, or `undefined` (Erlang's `whereis/1`). Never a
 * ref of an actor that has stopped. The type parameter says what the caller expects there; it
 * is not checked.
 *
 * @example
 * ```ts
 * import { whereis } from "jsr:@denomp/multiprocessing";
 * console.assert(whereis("nobody-has-this-name") === undefined);
 * ```
 */
export function whereis<A extends Actor = Actor>(name: string): ActorRef<A> | undefined {
  checkName(name, "whereis");
  return names.get(name)[0] as ActorRef<A> | undefined;
}

/**
 * Frees `name` (Erlang's `unregister/1`); the actor goes on running. Returns false if no running
 * actor held it.
 *
 * @example
 * ```ts
 * import { unregister } from "jsr:@denomp/multiprocessing";
 * console.assert(unregister("nobody-has-this-name") === false);
 * ```
 */
export function unregister(name: string): boolean {
  checkName(name, "unregister");
  const live = names.get(name).length > 0;
  names.remove(name);
  return live;
}

/**
 * The names held by running actors, in no particular order (Erlang's `registered/0`).
 *
 * @example
 * ```ts
 * import { registered } from "jsr:@denomp/multiprocessing";
 * console.assert(Array.isArray(registered()));
 * ```
 */
export function registered(): string[] {
  return names.keys();
}
