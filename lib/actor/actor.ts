/**
 * Actors (Erlang/OTP's processes and `gen_server`, Akka typed's actors): the {@link Actor} base
 * class a user's actor extends. An actor is a {@link Process} whose target is the actor loop
 * (`runtime.ts`); it imports the actor class's module, builds the instance and handles the
 * messages of its mailbox one at a time, in arrival order. The rest of the folder, along OTP's
 * lines: `mailbox.ts`, `self.ts` (the running actor), `link.ts` (monitors and links),
 * `call.ts` (the reply path), `ref.ts`, `runtime.ts` (the loop), `spawn.ts`, and
 * `supervisor.ts` beside them.
 *
 * @module
 */

import { ValueError } from "../core/errors.ts";
import type { ExitReason } from "./exit.ts";
import type { ActorRef } from "./ref.ts";
import { constructingRef, runningAs } from "./self.ts";
import { actorTimer, type TimerRef } from "./timers.ts";

// ---------------------------------------------------------------------------------------------
// Actor

/**
 * The base class of actors. Subclass it in a module that exports the subclass, and start it
 * with {@link spawn}: the instance lives in its own worker and handles one message at a time,
 * in arrival order, keeping its state between messages. Its public methods are called through
 * `ref.call`; raw messages sent with `tell`/`ask` go to `receive(msg)` if it has one.
 *
 * A method that throws crashes the actor (the caller's promise rejects with the error, the
 * actor stops with it as its reason, a supervisor may restart it): let it crash, as in Erlang.
 *
 * @example
 * ```ts ignore
 * import { Actor } from "jsr:@denomp/multiprocessing";
 * export class Counter extends Actor {
 *   count = 0;
 *   inc(n: number) {
 *     this.count += n;
 *   }
 *   get() {
 *     return this.count;
 *   }
 *   override onStop(reason: string | Error) {
 *     console.log(`counter stopped (${reason}) at ${this.count}`);
 *   }
 * }
 * ```
 */
export abstract class Actor {
  #self: ActorRef<Actor> | undefined = constructingRef();

  /**
   * When true, an abnormal exit of a linked actor does not stop this one: `onExit(from, reason)`
   * is called instead (Erlang's `trap_exit`). Set it as a field: `override trapExits = true`.
   */
  trapExits = false;

  /** A ref to this actor, to hand to others (only inside an actor started by `spawn`). */
  get self(): ActorRef<this> {
    if (!this.#self) throw new ValueError("this actor was not started with spawn()");
    return this.#self as unknown as ActorRef<this>;
  }

  /** Runs after the constructor, in the actor's worker, before any message; may be async. */
  onStart?(): unknown;

  /**
   * Runs when the actor stops, with the reason: stopped, shut down, a linked actor's exit, or
   * the error a handler crashed with (not when it is killed); may be async.
   */
  onStop?(reason: ExitReason): unknown;

  /** With `trapExits`: a linked actor stopped (for any reason, `"normal"` included). */
  onExit?(from: ActorRef<Actor>, reason: ExitReason): unknown;

  /**
   * Tells `msg` to this actor after `ms` milliseconds (Erlang's `send_after` to `self()`, Akka's
   * `startSingleTimer`). The timer belongs to the actor: it is cancelled when the actor stops.
   * `msg` is typed from the actor's `receive(msg)`.
   *
   * @example
   * ```ts ignore
   * export class Session extends Actor {
   *   override onStart() {
   *     this.sendAfter(30_000, "expire");
   *   }
   *   receive(msg: "expire") {
   *     void this.self.stop("normal");
   *   }
   * }
   * ```
   */
  sendAfter<M>(this: Actor & { receive(msg: M): unknown }, ms: number, msg: NoInfer<M>): TimerRef {
    return actorTimer(this.self as unknown as ActorRef<Actor>, ms, msg, false);
  }

  /**
   * Tells `msg` to this actor every `ms` milliseconds (Akka's `startTimerAtFixedRate`), until
   * the timer is cancelled or the actor stops.
   *
   * @example
   * ```ts ignore
   * export class Heartbeat extends Actor {
   *   beats = 0;
   *   override onStart() {
   *     this.every(1000, "beat");
   *   }
   *   receive(_: "beat") {
   *     this.beats++;
   *   }
   * }
   * ```
   */
  every<M>(this: Actor & { receive(msg: M): unknown }, ms: number, msg: NoInfer<M>): TimerRef {
    return actorTimer(this.self as unknown as ActorRef<Actor>, ms, msg, true);
  }
  /**
   * Switches the handler of this actor's next `tell`/`ask` messages to `handler` (Akka's
   * `Behaviors`/`become`, a `gen_statem` state); `become(null)` goes back to `receive`. The
   * handler runs with `this` as the actor and is typed from `receive(msg)`; what it returns is
   * the reply of an `ask`. It takes effect from the next message.
   *
   * @example
   * ```ts ignore
   * export class Light extends Actor {
   *   receive(msg: "toggle"): string {
   *     this.become(this.on);
   *     return "on";
   *   }
   *   on(_msg: "toggle"): string {
   *     this.become(null);
   *     return "off";
   *   }
   * }
   * ```
   */
  become<M>(
    this: Actor & { receive(msg: M): unknown },
    handler: ((msg: M) => unknown) | null,
  ): void {
    runningAs(this, "become").behavior = handler ?? undefined;
  }

  /**
   * Defers the message being handled (a `tell`, an `ask` or a `call`): it is not answered now,
   * and {@link Actor.unstashAll} hands it back later, before any newer message, in its original
   * order (Akka's `StashBuffer`, `gen_statem`'s `postpone`). A caller waiting on a stashed `ask`
   * or `call` gets its reply when the message is handled again.
   *
   * @example
   * ```ts ignore
   * receive(msg: Msg) {
   *   if (msg.kind !== "unlock") return this.stash(); // not now: after unlocking
   *   this.become(this.open);
   *   this.unstashAll();
   * }
   * ```
   */
  stash(): void {
    const run = runningAs(this, "stash");
    const cur = run.current;
    if (!cur) throw new ValueError("stash() defers the message being handled: there is none");
    (run.stash ??= []).push(cur.env);
    if (cur.to) cur.to.stashed = true; // answered when handled again, not now
    run.current = undefined;
  }

  /**
   * Hands every stashed message back, oldest first, to be handled before the mailbox's next
   * message (by the handler current then). Returns how many.
   *
   * @example
   * ```ts ignore
   * this.become(this.open);
   * this.unstashAll();
   * ```
   */
  unstashAll(): number {
    const run = runningAs(this, "unstashAll");
    const back = run.stash ?? [];
    run.stash = [];
    run.replay = [...back, ...(run.replay ?? [])];
    return back.length;
  }
}

/** A concrete actor class whose constructor takes `P`. */
export type ActorClass<A extends Actor, P extends unknown[]> = new (...args: P) => A;
