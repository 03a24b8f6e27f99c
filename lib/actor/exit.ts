/**
 * Exit reasons: why an actor stopped (Erlang's exit reasons), and the error a call to a stopped
 * actor rejects with. Every other actor module speaks of exits in these terms, so they sit at the
 * bottom of the folder.
 *
 * @module
 */

import { ProcessError } from "../core/errors.ts";

/**
 * Why an actor stopped. By convention (Erlang's): `"normal"` (it was stopped, or chose to stop),
 * `"shutdown"` (its supervisor or the program shut it down), `"killed"` (its worker was
 * terminated), or the `Error` it crashed with. Any other string is a reason given to `stop()`.
 */
export type ExitReason = string | Error;

/**
 * True for the reasons a `transient` child is not restarted for: `"normal"` and `"shutdown"`.
 *
 * @example
 * ```ts
 * import { isNormalExit } from "jsr:@denomp/multiprocessing";
 * console.assert(isNormalExit("shutdown") && !isNormalExit(new Error("boom")));
 * ```
 */
export function isNormalExit(reason: ExitReason): boolean {
  return reason === "normal" || reason === "shutdown";
}

/** A one-line description of an exit reason. */
export function describe(reason: ExitReason): string {
  return typeof reason === "string" ? reason : `${reason.name}: ${reason.message}`;
}

/**
 * A call, ask or link whose actor stopped (or was stopped already) rejects with this error;
 * `reason` is why it stopped. A call whose own handler threw rejects with that error instead.
 *
 * @example
 * ```ts ignore
 * import { ActorExited, spawn } from "jsr:@denomp/multiprocessing";
 * import { Counter } from "./counter.ts";
 * const ref = await spawn(Counter);
 * await ref.stop();
 * try {
 *   await ref.call.get();
 * } catch (e) {
 *   console.assert(e instanceof ActorExited && e.reason === "normal");
 * }
 * ```
 */
export class ActorExited extends Error {
  /** Why the actor stopped. */
  readonly reason: ExitReason;
  /** The actor's name. */
  readonly actor: string;
  /** Creates the error for actor `actor` that stopped for `reason`. */
  constructor(actor: string, reason: ExitReason, message?: string) {
    super(message ?? `actor ${actor} exited: ${describe(reason)}`, {
      cause: reason instanceof Error ? reason : undefined,
    });
    Object.defineProperty(this, "name", {
      value: "ActorExited",
      writable: true,
      configurable: true,
    });
    this.actor = actor;
    this.reason = reason;
  }
}

/** The exit reason of a process from its exit code. */
export function reasonOfCode(code: number | null, what: string): ExitReason {
  return code === -9 || code === -15
    ? "killed"
    : code === 0 || code === null
    ? "normal"
    : new ProcessError(`${what} exited with code ${code}`);
}
