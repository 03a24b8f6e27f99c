/**
 * Calls, the reply path (`gen_server:call`): the caller's side — one reply ring per process,
 * read by a dispatcher that runs only while calls are pending — and the actor's side, which
 * writes each reply into its caller's ring. A call to an actor that stops fails once the reply
 * ring holds nothing more from it (the watcher tells), so no call to a dead actor ever hangs.
 *
 * @module
 */

import { encodeView } from "../core/reduction.ts";
import { alloc, heap, isAlive } from "../core/heap.ts";
import { deadlineOf, remainingMs } from "../core/atomics.ts";
import { Ring } from "../core/ring.ts";
import { TimeoutError, ValueError } from "../core/errors.ts";
import { type Box, decode, encodeAt } from "./block.ts";
import { ActorExited, type ExitReason } from "./exit.ts";
import { exitReasonOf, type Listener, watch } from "./watch.ts";
import { running } from "./self.ts";

/** Envelope kinds: what an actor's mailbox carries. */
export const CALL = 1, TELL = 2, ASK = 3, STOP = 4, KILL = 5, LINK = 6, UNLINK = 7;
/** Reply status. */
export const OK = 0, ERR = 1;
/** Reply ring size: replies are small; a large one streams through. */
const INBOX_BYTES = (64 << 10) - 16;

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  target: number;
  name: string;
  cleanup?: () => void;
}

let inbox: Ring | undefined;
let inboxOff = 0;
const pending = new Map<number, Pending>();
/** Actors that calls are pending on, with the watch that fails those calls if they stop. */
const targets = new Map<number, () => void>();
/** Actors seen stopped: their pending calls fail once the reply ring holds nothing more. */
const deadTargets = new Map<number, ExitReason>();
let dispatching = false;
let wake = new AbortController();
let nextCallId = 0;
const replyRings = new Map<number, Ring>();

function myInbox(): Ring {
  if (!inbox) {
    // Never freed: an actor may still hold this offset to reply to, and a reply written into a
    // block reused for something else would corrupt it. One small block per calling process.
    inboxOff = alloc(INBOX_BYTES);
    Ring.init(inboxOff, INBOX_BYTES);
    inbox = new Ring(inboxOff);
  }
  return inbox;
}

function settle(id: number, status: number, value: unknown): void {
  const p = pending.get(id);
  if (!p) return; // timed out or aborted meanwhile
  pending.delete(id);
  p.cleanup?.();
  if (status === OK) p.resolve(value);
  else p.reject(value);
}

function rejectDead(): void {
  if (!deadTargets.size) return;
  for (const [id, p] of pending) {
    const reason = deadTargets.get(p.target);
    if (reason !== undefined) settle(id, ERR, new ActorExited(p.name, reason));
  }
  deadTargets.clear();
}

async function dispatchLoop(): Promise<void> {
  dispatching = true;
  const ring = myInbox();
  try {
    while (pending.size) {
      let r: unknown;
      try {
        r = await ring.recv(decode, { signal: wake.signal });
      } catch (e) {
        if (!wake.signal.aborted) throw e;
        // Aborted with the ring empty: every reply sent before a target stopped has been read.
        wake = new AbortController();
        rejectDead();
        continue;
      }
      const [id, status, value] = r as [number, number, unknown];
      settle(id, status, value);
    }
  } catch (err) {
    console.error("denomp: the actor reply dispatcher failed:", err);
    for (const id of [...pending.keys()]) settle(id, ERR, err);
  } finally {
    dispatching = false;
    // Nothing is pending: what was learnt about stopped targets concerns no call any more (and
    // a block offset may be reused by a new actor).
    deadTargets.clear();
    if (wake.signal.aborted) wake = new AbortController();
  }
}

function onTargetStopped(off: number): Listener {
  return (reason) => {
    targets.delete(off);
    if (!dispatching) return; // no call pending anywhere
    deadTargets.set(off, reason);
    wake.abort();
  };
}

/**
 * Sends envelope `env` (its reply fields filled in here) to the actor of `box` and resolves with
 * the reply.
 */
export function request(
  box: Box,
  name: string,
  env: unknown[],
  at: number,
  root: string,
  options: { timeout?: number; signal?: AbortSignal } = {},
): Promise<unknown> {
  if (running()?.box.off === box.off) {
    return Promise.reject(
      new ValueError(
        `actor ${name} cannot call itself: it handles one message at a time, so it would wait forever`,
      ),
    );
  }
  if (box.stopped()) {
    return Promise.reject(new ActorExited(name, exitReasonOf(box)));
  }
  let bytes: Uint8Array;
  const id = ++nextCallId;
  try {
    options.signal?.throwIfAborted();
    myInbox();
    env[1] = id;
    env[2] = inboxOff;
    env[3] = heap().slot;
    // A link hands the actor a ref: an isolated actor's relay keeps its links (isolated.ts).
    bytes = encodeAt(env, at, root, env[0] === LINK || env[0] === UNLINK ? undefined : box);
  } catch (e) {
    return Promise.reject(e);
  }
  return new Promise((resolve, reject) => {
    const p: Pending = { resolve, reject, target: box.off, name };
    pending.set(id, p);
    if (!targets.has(box.off)) targets.set(box.off, watch(box, onTargetStopped(box.off)));
    if (options.timeout !== undefined || options.signal) {
      const deadline = deadlineOf(options.timeout);
      const signal = options.signal;
      const give = (err: unknown) => {
        if (!pending.delete(id)) return;
        p.cleanup?.();
        reject(err);
        if (!pending.size) wake.abort(); // let the dispatcher end
      };
      // The late reply finds no pending entry and is dropped by `settle`.
      const what = env[0] === CALL ? `${env[4]}()` : "ask()";
      const timer = deadline === Infinity ? undefined : setTimeout(
        () =>
          give(
            new TimeoutError(`actor ${name} did not reply to ${what} within ${options.timeout} ms`),
          ),
        remainingMs(deadline),
      );
      const onAbort = () => give(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      p.cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
    }
    void box.ring.post(bytes, box.postOpts);
    if (!dispatching) void dispatchLoop();
  });
}

/** Options of {@link ActorRef.callWith}. */
export interface CallOptions {
  /** Milliseconds to wait for the reply; then `TimeoutError` (the late reply is dropped). */
  timeout?: number;
  /** Aborts the wait for the reply (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** A message in an actor's mailbox: its kind first. */
export type Envelope = [number, ...unknown[]];
/** Where the reply to a call or ask goes. */
export type Reply = { id: number; inbox: number; slot: number; stashed?: boolean };

/** The actor's side: writes a reply into its caller's reply ring. */
export function sendReply(to: Reply, status: number, value: unknown): void {
  let bytes: Uint8Array;
  try {
    // An error being reported arrives even with fields that cannot be sent (the codec leaves
    // them out and says so in its stack); a result that cannot be sent is refused by its path.
    bytes = status === ERR
      ? encodeView([to.id, status, value], "reply", { reportError: true })
      : encodeAt([to.id, status, value], 2, "result");
  } catch (e) {
    bytes = encodeView([to.id, ERR, e], "reply");
  }
  let ring = replyRings.get(to.inbox);
  if (!ring) replyRings.set(to.inbox, ring = new Ring(to.inbox));
  void ring.post(bytes, { broken: () => !isAlive(to.slot) });
}
