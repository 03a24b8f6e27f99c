/**
 * {@link ActorRef}: a typed reference to a running actor (Akka typed's `ActorRef`, an Erlang
 * pid). `ref.call.method(...)` is typed from the actor's class; `tell`/`ask` carry raw messages
 * to `receive(msg)`. A ref is a handle: it travels in messages and `args` to any worker.
 *
 * @module
 */

import { deadlineOf, keepAlive, remainingMs } from "../core/atomics.ts";
import { adopt, heap, MAIN_SLOT, release, retain } from "../core/heap.ts";
import { optionsOf } from "../core/args.ts";
import { TimeoutError, ValueError } from "../core/errors.ts";
import { registerHandle } from "../core/reduction.ts";
import type { Actor } from "./actor.ts";
import {
  ACTOR,
  Box,
  encodeAt,
  freeBox,
  KIND_I,
  OS_PID,
  readReason,
  RUNNING,
  SLOT,
  STATE,
  SUPERVISED,
} from "./block.ts";
import { ASK, CALL, type CallOptions, KILL, request, STOP, TELL } from "./call.ts";
import type { ExitReason } from "./exit.ts";
import { running } from "./self.ts";
import { spawnedWorker, watch } from "./watch.ts";

// ---------------------------------------------------------------------------------------------
// Types

/** A method of an actor class as seen through `ref.call`: same arguments, async result. */
export type RemoteMethod<F> = F extends (...args: infer P) => infer R
  ? (...args: P) => Promise<Awaited<R>>
  : never;

/**
 * The public methods of actor class `A` (not those of {@link Actor} itself, nor `receive`),
 * each returning a promise of its result: the type of `ref.call`.
 */
export type ActorMethods<A> = {
  [
    K in keyof A as K extends keyof Actor | "receive" | "constructor" ? never
      : A[K] extends (...args: never[]) => unknown ? K
      : never
  ]: RemoteMethod<A[K]>;
};

/**
 * The message type of an actor's `receive(msg)`: `never` when it has none (so `tell` does not
 * compile), `unknown` for the base `Actor` (a ref of any actor).
 */
export type MessageOf<A> = A extends { receive(msg: infer M): unknown } ? M
  : Actor extends A ? unknown
  : never;

/** What an actor's `receive(msg)` returns, as `ask` resolves with it. */
export type ReplyOf<A> = A extends { receive(msg: never): infer R } ? Awaited<R>
  : Actor extends A ? unknown
  : never;

// ---------------------------------------------------------------------------------------------
// ActorRef

let refAttaching: { box: Box; name: string } | null = null;
let boxOfRef: (r: ActorRef<Actor>) => Box;

/**
 * A reference to a running actor, from {@link spawn}. `call` is typed from the actor's class:
 * each public method becomes an async method that runs in the actor's worker. `tell`/`ask`
 * send raw messages to the actor's `receive(msg)`. A ref can be passed to other actors and
 * workers (in `args`, or inside any message) and works there.
 *
 * @example
 * ```ts ignore
 * // counter.ts
 * import { Actor } from "jsr:@denomp/multiprocessing";
 * export class Counter extends Actor {
 *   count = 0;
 *   inc(n: number) {
 *     return (this.count += n);
 *   }
 * }
 * // main.ts
 * import { spawn } from "jsr:@denomp/multiprocessing";
 * import { Counter } from "./counter.ts";
 * const ref = await spawn(Counter);
 * console.log(await ref.call.inc(2)); // 2
 * await ref.stop();
 * ```
 */
// `out`: a ref of a subclass is a ref of its base class, and `this.self` (typed with the
// polymorphic `this`) is a ref of the actor's own class. TypeScript cannot prove it through the
// key-remapped `ActorMethods`, so the check of the annotation is silenced here (only here).
// @ts-expect-error: TS2636, ActorMethods<A> is covariant in A but not provably so
export class ActorRef<out A extends Actor = Actor> {
  #box: Box;
  #name: string;
  #call?: object;

  /** Refs come from {@link spawn} (or arrive in messages); they cannot be made directly. */
  constructor() {
    if (!refAttaching) throw new ValueError("an ActorRef comes from spawn(), not from new");
    this.#box = refAttaching.box;
    this.#name = refAttaching.name;
    refAttaching = null;
  }

  static {
    boxOfRef = (r) => r.#box;
  }

  /** The actor's name (`name` given to spawn, else `ClassName-N`). */
  get name(): string {
    return this.#name;
  }

  /** The pid of the actor's worker: its OS pid with isolation "process". */
  get pid(): number {
    const os = Atomics.load(this.#box.i32, OS_PID);
    if (os > 0) return os;
    return Deno.pid + Atomics.load(this.#box.i32, SLOT) - MAIN_SLOT;
  }

  /**
   * The actor's public methods, each as an async function that runs it in the actor and
   * resolves with its result. Rejects with the error the method threw (the actor then stops
   * with it, as a crashed `gen_server` does), or with {@link ActorExited} if the actor stopped.
   */
  get call(): ActorMethods<A> {
    return (this.#call ??= methodsOf(this.#box, this.#name)) as ActorMethods<A>;
  }

  /**
   * `ref.call` with a deadline (`gen_server:call`'s timeout) or an abort signal: a method that
   * has not replied within `timeout` milliseconds rejects with `TimeoutError` naming the actor
   * and the method. The method still runs in the actor; its late reply is dropped.
   *
   * @example
   * ```ts ignore
   * import { TimeoutError } from "jsr:@denomp/multiprocessing";
   * try {
   *   await ref.callWith({ timeout: 500 }).slowInc(1);
   * } catch (e) {
   *   console.assert(e instanceof TimeoutError); // "actor counter did not reply to slowInc() ..."
   * }
   * ```
   */
  callWith(options: CallOptions): ActorMethods<A> {
    optionsOf(options, "ActorRef.callWith", "callWith({ timeout: 500 })");
    return methodsOf(this.#box, this.#name, options) as ActorMethods<A>;
  }

  /** True until the actor has stopped. */
  isAlive(): boolean {
    return !this.#box.stopped();
  }

  /**
   * Sends `msg` to the actor's `receive(msg)` and does not wait for it to be handled (Erlang's
   * `!`). A message to a stopped actor is dropped. The promise resolves once the message is in
   * the mailbox: await it now and then for backpressure, or ignore it.
   *
   * @example
   * ```ts ignore
   * await ref.tell({ kind: "add", n: 1 });
   * ```
   */
  tell(msg: MessageOf<A>): Promise<void> {
    const ring = this.#box.ring;
    const r = ring.post(encodeAt([TELL, msg], 1, "message", this.#box), this.#box.postOpts);
    return ring.pending() ? r.then(noop) : RESOLVED;
  }

  /**
   * Sends `msg` to the actor's `receive(msg)` and resolves with what it returns. Rejects with
   * `TimeoutError` after `timeout` milliseconds, with {@link ActorExited} if the actor stops first.
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
      options = optionsOf(options, "ActorRef.ask", "ask(msg, { timeout: 1000 })");
    } catch (e) {
      return Promise.reject(e);
    }
    return request(this.#box, this.#name, [ASK, 0, 0, 0, msg], 4, "message", options) as Promise<
      ReplyOf<A>
    >;
  }

  /**
   * Stops the actor after the messages already queued (its `onStop(reason)` runs) and resolves
   * with the reason once it has stopped. With `timeout` (milliseconds), an actor that has not stopped in time
   * is killed if this process spawned it (else `TimeoutError`). Called by the actor on itself,
   * it stops after the current message and resolves at once.
   *
   * @example
   * ```ts ignore
   * await ref.stop(); // "normal"
   * ```
   */
  async stop(
    reason: ExitReason = "normal",
    options?: { timeout?: number },
  ): Promise<ExitReason> {
    options = optionsOf(options, "ActorRef.stop", 'stop("normal", { timeout: 5000 })');
    const deadline = deadlineOf(options.timeout); // checked before anything is sent
    const box = this.#box;
    if (box.stopped()) return readReason(box);
    void box.ring.post(encodeAt([STOP, reason], 1, "reason", box), box.postOpts);
    if (running()?.box.off === box.off) return reason;
    const done = new Promise<ExitReason>((resolve) => watch(box, resolve));
    if (deadline === Infinity) return await keepAlive(done);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((
      r,
    ) => (timer = setTimeout(() => r("late"), remainingMs(deadline))));
    const first = await keepAlive(Promise.race([done, late]));
    clearTimeout(timer);
    if (first !== "late") return first;
    if (!this.kill()) {
      throw new TimeoutError(`actor ${this.#name} did not stop within ${options.timeout} ms`);
    }
    return await keepAlive(done);
  }

  /**
   * Ends the actor at once, without `onStop` (Erlang's `exit(Pid, kill)`): its worker is
   * terminated if this process spawned it; otherwise the actor ends itself as soon as it reads
   * the request (after the message it is handling). Returns false if the actor had stopped.
   *
   * @example
   * ```ts ignore
   * ref.kill();
   * console.log(await monitor(ref)); // "killed"
   * ```
   */
  kill(): boolean {
    const box = this.#box;
    if (box.stopped()) return false;
    const worker = spawnedWorker(box.off);
    if (worker) worker.kill();
    else void box.ring.post(encodeAt([KILL], 0, "kill"), box.postOpts);
    return true;
  }

  /** True when both refs refer to the same actor. */
  equals(other: ActorRef<Actor>): boolean {
    return other instanceof ActorRef && boxOfRef(other).off === this.#box.off;
  }

  /** `await using ref = await spawn(...)`: stops the actor. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** A short description. */
  toString(): string {
    return `<ActorRef ${this.#name} ${this.isAlive() ? "running" : "stopped"}>`;
  }
}

const noop = () => {};
const RESOLVED: Promise<void> = Promise.resolve();

/**
 * Internal (names, groups): the offset of a ref's mailbox block, the actor's identity.
 *
 * @example
 * ```ts ignore
 * if (a.equals(b)) console.assert(actorOffset(a) === actorOffset(b));
 * ```
 */
export function actorOffset(ref: ActorRef<Actor>): number {
  return boxOfRef(ref).off;
}

/** Internal: the view of a ref's mailbox block. */
export function boxOf(ref: ActorRef<Actor>): Box {
  return boxOfRef(ref);
}

/** The proxy behind `ref.call` and `ref.callWith(options)`: one function per method name. */
function methodsOf(box: Box, name: string, options?: CallOptions): object {
  const fns = new Map<string, unknown>();
  return new Proxy({}, {
    get(_, method) {
      // `then`: an awaited `ref.call` must not look like a promise.
      if (typeof method !== "string" || method === "then") return undefined;
      let f = fns.get(method);
      if (!f) {
        f = (...args: unknown[]) =>
          request(box, name, [CALL, 0, 0, 0, method, args], 5, `${method}() args`, options);
        fns.set(method, f);
      }
      return f;
    },
  });
}

/** A ref of the actor of `box`; `adoptIt`: the ref holds a reference to the block. */
export function makeRef<A extends Actor>(box: Box, name: string, adoptIt: boolean): ActorRef<A> {
  refAttaching = { box, name };
  try {
    const ref = new ActorRef<A>();
    if (adoptIt) adopt(ref, box.off, freeBox);
    return ref;
  } finally {
    refAttaching = null;
  }
}

registerHandle<ActorRef<Actor>, [number, string]>({
  name: "ActorRef",
  module: import.meta.url,
  cls: ActorRef,
  reduce(r) {
    const off = boxOfRef(r).off;
    retain(off);
    return [off, r.name];
  },
  discard: ([off]) => release(off),
  rebuild([off, name]) {
    if (Atomics.load(heap().i32, (off >> 2) + KIND_I) !== ACTOR) {
      throw new Error(`denomp: heap offset ${off} holds no actor`);
    }
    return makeRef(new Box(off), name, true);
  },
});

/**
 * True while the actor of `ref` handles messages: false from the moment it starts to stop (a
 * crash, `stop()`, a kill), where `isAlive()` stays true until it has stopped.
 *
 * @example
 * ```ts
 * import { type ActorRef, isRunning } from "./ref.ts";
 * export const usable = (ref: ActorRef): boolean => isRunning(ref);
 * ```
 */
export function isRunning(ref: ActorRef<Actor>): boolean {
  const box = boxOfRef(ref);
  return Atomics.load(box.i32, STATE) === RUNNING && !box.stopped();
}

/**
 * Tells the actor of `ref` whether a supervisor watches it (for `supervisor.ts` and other
 * supervisors): a supervised actor does not print its crashes, its supervisor reports them.
 *
 * @example
 * ```ts
 * import { type ActorRef, markSupervised } from "./ref.ts";
 * export function adoptChild(ref: ActorRef): void {
 *   markSupervised(ref, true); // its crashes are now this supervisor's to report
 * }
 * ```
 */
export function markSupervised(ref: ActorRef<Actor>, supervised: boolean): void {
  Atomics.store(boxOfRef(ref).i32, SUPERVISED, supervised ? 1 : 0);
}
