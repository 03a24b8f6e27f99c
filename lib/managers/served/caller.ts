/**
 * Who calls a served object: the client a call comes from, its client-side thread, and an abort
 * signal for the call ({@link Caller}), set by the server around each served method
 * ({@link withCaller}) and read by the method before its first `await`.
 *
 * @module
 */

// ---------------------------------------------------------------------------------------------
// Who calls

/** What a served object may need to know about the client of a call. */
export interface Client {
  /** Unique among the clients of one server. */
  readonly id: number;
  /** Aborted when the client's connection drops. */
  readonly gone: AbortSignal;
  /** Notes that `obj` holds something on this client's behalf (see {@link Forgetful}). */
  touch(obj: Forgetful): void;
}

/** A served object that holds things for clients: told when a client's connection drops. */
export interface Forgetful {
  /** Releases whatever `client` held (its locks, permits); its waits are already aborted. */
  forget(client: Client): void;
}

/**
 * The call being served. One mutable record, valid during the synchronous part of a served
 * method only: a method reads what it needs from it before its first `await`.
 */
export interface Caller {
  /** The client. */
  client: Client;
  /** The client-side thread ident (`getIdent()` there), for RLock and Condition ownership. */
  thread: number;
  /** An abort signal for this call: cancelled by the client, or the client went away. */
  signal(): AbortSignal;
  /** The object a proxy of this same server refers to (other values are returned as they are). */
  resolve(value: unknown): unknown;
}

export let serving: Caller | undefined;

/** The call being served, if any (a served method may also be called directly, as a helper). */
export function callerIfAny(): Caller | undefined {
  return serving;
}

/** The call being served (throws outside one: a served method called directly). */
export function caller(): Caller {
  if (!serving) throw new Error("denomp: a managed object's method was called outside a server");
  return serving;
}

/** Makes `c` the call being served; returns the previous one for {@link leaveCall}. */
export function enterCall(c: Caller): Caller | undefined {
  const prev = serving;
  serving = c;
  return prev;
}

/** Ends the call entered last (a served method may itself call its server: calls nest). */
export function leaveCall(prev: Caller | undefined): void {
  serving = prev;
}

/** Runs `fn` as the call `c`. */
export function withCaller<T>(c: Caller, fn: () => T): T {
  const prev = enterCall(c);
  try {
    return fn();
  } finally {
    leaveCall(prev);
  }
}
