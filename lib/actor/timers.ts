/**
 * Timers that send a message to an actor (Erlang's `erlang:send_after/3` and `cancel_timer/1`,
 * Akka's `TimerScheduler`).
 *
 * {@link sendAfter} runs in the process that calls it: after `ms` milliseconds it tells `msg` to
 * the actor (dropped if the actor has stopped by then). Inside an actor, `this.sendAfter(ms, msg)`
 * and `this.every(ms, msg)` send to the actor itself and belong to it: they are all cancelled
 * when it stops, so a stopped actor leaves no timer behind and a restarted one starts with none
 * (Akka's rule). A timer is a plain `setTimeout`/`setInterval` of the worker that owns it: no
 * thread, no shared memory. The handle is a `TimerRef` (Erlang's name for it): `Timer` is Python's
 * `threading.Timer`, exported from `threading.ts`.
 *
 * @module
 */

import type { Actor } from "./actor.ts";
import type { ActorRef, MessageOf } from "./ref.ts";
import { ValueError } from "../core/errors.ts";
import { dumps, loads } from "../core/reduction.ts";

/** Timers owned by the actor that runs in this worker, cancelled when it stops. */
const owned = new Set<TimerRef>();

function checkMs(ms: unknown, fn: string, positive: boolean): asserts ms is number {
  if (typeof ms !== "number") {
    throw new TypeError(`${fn}() takes a delay in milliseconds: got ${typeof ms} (${String(ms)})`);
  }
  if (!Number.isFinite(ms) || ms < 0 || (positive && ms === 0)) {
    throw new ValueError(
      `${fn}(): the delay must be a ${positive ? "positive" : "non-negative"} number of ` +
        `milliseconds: current value is ${ms}`,
    );
  }
}

/**
 * Throws the codec's `SerializationError` now, at the call, for a message that could never be
 * sent, rather than when the timer fires, far from its cause. Decoding the bytes again gives
 * back the references that encoding took for handles inside the message.
 */
function checkSendable(msg: unknown): void {
  loads(dumps(msg, "message"));
}

/**
 * A pending timer from {@link sendAfter}, `actor.sendAfter` or `actor.every`. `cancel()` (or
 * {@link cancelTimer}) stops it.
 *
 * @example
 * ```ts ignore
 * const t = sendAfter(1000, ref, { kind: "tick" });
 * t.cancel(); // nothing is sent
 * ```
 */
export class TimerRef {
  #id: ReturnType<typeof setTimeout> | undefined;
  #repeat: boolean;

  /** Timers come from {@link sendAfter} or an actor's `sendAfter`/`every`. */
  constructor(ms: number, repeat: boolean, fire: () => void) {
    this.#repeat = repeat;
    const run = () => {
      if (!this.#repeat) this.#done();
      try {
        fire();
      } catch (err) {
        // Checked at the call, so unexpected (e.g. a getter that throws now): never drop silently.
        console.error("denomp: a timer could not send its message:", err);
      }
    };
    this.#id = repeat ? setInterval(run, ms) : setTimeout(run, ms);
  }

  /** True until the timer has fired (a one-shot timer) or been cancelled. */
  get active(): boolean {
    return this.#id !== undefined;
  }

  /** Cancels the timer; returns false if it had fired (one-shot) or was cancelled already. */
  cancel(): boolean {
    if (this.#id === undefined) return false;
    if (this.#repeat) clearInterval(this.#id);
    else clearTimeout(this.#id);
    this.#done();
    return true;
  }

  #done(): void {
    this.#id = undefined;
    owned.delete(this);
  }
}

/**
 * Tells `msg` to `ref` after `ms` milliseconds (Erlang's `erlang:send_after/3`). The timer runs
 * in this process (like `setTimeout`, a pending one keeps the program running, and it ends with
 * this process); the message is dropped if the actor has stopped by then. Returns the timer, to
 * cancel it.
 *
 * @example
 * ```ts ignore
 * import { cancelTimer, sendAfter } from "jsr:@denomp/multiprocessing";
 * const t = sendAfter(500, ref, { kind: "timeout" });
 * cancelTimer(t); // true: it had not fired
 * ```
 */
export function sendAfter<A extends Actor>(
  ms: number,
  ref: ActorRef<A>,
  msg: MessageOf<A>,
): TimerRef {
  checkMs(ms, "sendAfter", false);
  checkSendable(msg);
  return new TimerRef(ms, false, () => void ref.tell(msg));
}

/**
 * Cancels `timer` (Erlang's `erlang:cancel_timer/1`); returns false if it had fired or was
 * cancelled already.
 *
 * @example
 * ```ts
 * import { TimerRef, cancelTimer } from "jsr:@denomp/multiprocessing";
 * const t = new TimerRef(10_000, false, () => {});
 * console.assert(cancelTimer(t) && !cancelTimer(t));
 * ```
 */
export function cancelTimer(timer: TimerRef): boolean {
  if (!(timer instanceof TimerRef)) {
    throw new TypeError(`cancelTimer() takes a TimerRef: got ${timer}`);
  }
  return timer.cancel();
}

/**
 * Internal (the Actor base class): a timer owned by the actor running in this worker, telling
 * `msg` to `self` after `ms` milliseconds, or every `ms` milliseconds with `repeat`.
 */
export function actorTimer(
  self: ActorRef<Actor>,
  ms: number,
  msg: unknown,
  repeat: boolean,
): TimerRef {
  checkMs(ms, repeat ? "every" : "sendAfter", repeat);
  checkSendable(msg);
  const t = new TimerRef(ms, repeat, () => void self.tell(msg));
  owned.add(t);
  return t;
}

/** Internal (the actor loop): the actor stopped; none of its timers may fire any more. */
export function cancelOwnedTimers(): void {
  for (const t of [...owned]) t.cancel();
}
