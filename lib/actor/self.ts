/**
 * Self: the actor this worker runs, if any (Erlang's `self()`). Set by the actor loop while it
 * runs, read by the actor's own tools (`become`, `stash`) and by calls that must not wait on
 * their own actor.
 *
 * @module
 */

import { ValueError } from "../core/errors.ts";
import type { Actor } from "./actor.ts";
import type { Box } from "./block.ts";
import type { Envelope, Reply } from "./call.ts";
import type { ExitReason } from "./exit.ts";
import type { ActorRef } from "./ref.ts";

/** The state of the actor this worker runs. */
export interface Running {
  /** Its mailbox block. */
  box: Box;
  /** A ref to it (its `self`). */
  ref: ActorRef<Actor>;
  /** The instance of the actor class. */
  instance: Actor;
  /** Its links, by the peer's block offset. */
  links: Map<number, { ref: ActorRef<Actor>; unwatch: () => void }>;
  /** Exit signals from linked actors, handled before the next message. */
  signals: { from: ActorRef<Actor>; reason: ExitReason }[];
  /** Aborted to wake the loop from its wait for a message (an exit signal arrived). */
  wake: AbortController;
  /** Set by `become`: the handler of the next tell/ask messages instead of `receive`. */
  behavior?: (msg: never) => unknown;
  /** The message being handled, for `stash()`. */
  current?: { env: Envelope; to: Reply | null };
  /** Messages deferred by `stash()`, oldest first; `unstashAll()` moves them to `replay`. */
  stash?: Envelope[];
  /** Unstashed messages, handled before the mailbox's next one. */
  replay?: Envelope[];
}

let self: Running | null = null;
/** The ref of the actor being constructed here, for its `self` (set around its constructor). */
let constructing: ActorRef<Actor> | undefined;

/** The actor this worker runs, or null (outside an actor, or before it has started). */
export function running(): Running | null {
  return self;
}

/** Set by the actor loop once the actor has started, and cleared once it has stopped. */
export function setRunning(run: Running | null): void {
  self = run;
}

/** The ref of the actor whose constructor runs now, if any. */
export function constructingRef(): ActorRef<Actor> | undefined {
  return constructing;
}

/** Set by the actor loop around the actor's constructor. */
export function setConstructing(ref: ActorRef<Actor> | undefined): void {
  constructing = ref;
}

/** The running state of `actor`, which must be the actor of this worker, running. */
export function runningAs(actor: Actor, fn: string): Running {
  if (self?.instance !== actor) {
    throw new ValueError(`${fn}() works inside a running actor (from onStart or a handler)`);
  }
  return self;
}

/**
 * A ref to the actor running in this worker, or null outside an actor.
 *
 * @example
 * ```ts
 * import { currentActor } from "jsr:@denomp/multiprocessing";
 * console.assert(currentActor() === null); // the main thread is no actor
 * ```
 */
export function currentActor(): ActorRef<Actor> | null {
  return self?.ref ?? null;
}
