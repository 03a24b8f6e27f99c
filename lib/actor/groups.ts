/**
 * Process groups (Erlang's `pg`): actors join named groups, and anyone, in any worker, lists a
 * group's members or tells a message to all of them.
 *
 * Groups live in one table in shared memory for the whole process tree (see `refmap.ts`), next
 * to the name registry. An actor that stops leaves its groups by itself: the process that
 * spawned it removes it when it sees it stop, and every lookup checks each member's liveness, so
 * `members` never lists a dead actor, even one whose worker was terminated. Unlike Erlang's `pg`,
 * joining twice does not make an actor a member twice: a group is a set, in order of joining.
 *
 * Exported from `mod.ts` as the namespace `pg` (`pg.join(...)`, `pg.members(...)`), as Erlang
 * writes `pg:join(...)`: `join` alone would read as a process join.
 *
 * @module
 */

import { groups } from "./refmap.ts";
import type { Actor } from "./actor.ts";
import { ActorRef } from "./ref.ts";

function checkGroup(group: unknown, fn: string): asserts group is string {
  if (typeof group !== "string" || group === "") {
    throw new TypeError(`${fn}() takes a group name (a non-empty string): got ${String(group)}`);
  }
}

function checkRef(ref: unknown, fn: string): asserts ref is ActorRef<Actor> {
  if (!(ref instanceof ActorRef)) throw new TypeError(`${fn}() takes an ActorRef: got ${ref}`);
}

/**
 * Adds `ref` to `group` (Erlang's `pg:join/2`); returns false if it was a member already.
 * Throws `ValueError` if the actor has stopped.
 *
 * @example
 * ```ts ignore
 * import { pg, spawn } from "jsr:@denomp/multiprocessing";
 * import { Worker } from "./worker.ts";
 * const w = await spawn(Worker);
 * pg.join("workers", w);
 * console.log(pg.members("workers").length); // 1
 * ```
 */
export function join<A extends Actor>(group: string, ref: ActorRef<A>): boolean {
  checkGroup(group, "join");
  checkRef(ref, "join");
  return groups.add(group, ref as ActorRef<Actor>, false);
}

/**
 * Removes `ref` from `group` (Erlang's `pg:leave/2`); returns false if it was no member.
 *
 * @example
 * ```ts ignore
 * pg.leave("workers", w);
 * ```
 */
export function leave<A extends Actor>(group: string, ref: ActorRef<A>): boolean {
  checkGroup(group, "leave");
  checkRef(ref, "leave");
  return groups.remove(group, ref as ActorRef<Actor>) > 0;
}

/**
 * The running members of `group`, in order of joining (Erlang's `pg:get_members/1`); empty for
 * a group nobody joined. The type parameter says what the caller expects there; it is not
 * checked.
 *
 * @example
 * ```ts
 * import { members } from "./groups.ts";
 * console.assert(members("nobody-joined-this").length === 0);
 * ```
 */
export function members<A extends Actor = Actor>(group: string): ActorRef<A>[] {
  checkGroup(group, "members");
  return groups.get(group) as ActorRef<A>[];
}

/**
 * Tells `msg` to every running member of `group`; resolves with how many it was sent to, once
 * it is in each member's mailbox (a member that stops meanwhile drops it, as `tell` does).
 *
 * @example
 * ```ts
 * import { broadcast } from "./groups.ts";
 * console.assert((await broadcast("nobody-joined-this", { kind: "ping" })) === 0);
 * ```
 */
export async function broadcast<M>(group: string, msg: M): Promise<number> {
  const refs = members<Actor>(group);
  await Promise.all(refs.map((r) => r.tell(msg)));
  return refs.length;
}

/**
 * The groups that have at least one running member, in no particular order (Erlang's
 * `pg:which_groups/0`).
 *
 * @example
 * ```ts
 * import { whichGroups } from "./groups.ts";
 * console.assert(Array.isArray(whichGroups()));
 * ```
 */
export function whichGroups(): string[] {
  return groups.keys();
}
