/**
 * Isolation "process" for actors, child side (see isolated.ts for the parent's): the main module
 * of an isolated actor's `deno` OS process runs {@link childMain} instead of the actor. It starts
 * the real actor runtime (runtime.ts, unchanged) in a thread of this process, on a mailbox in this
 * process's heap, and relays:
 *
 * - each envelope frame from the parent goes into that mailbox; a call's (or ask's) reply fields
 *   name the caller's reply ring in the parent's heap, which this process cannot reach, so they
 *   are swapped for a reply ring of this process and the caller remembered;
 * - each reply read from that ring goes back as a frame naming the caller's ring, after the
 *   actor's state when it changed (a caller told of a crash sees the actor stopping);
 * - when the actor stops, the replies it sent, then its reason; then the process ends with the
 *   code of the actor's thread.
 *
 * The main thread never runs user code, so a kill request (`ref.kill()` from a worker that did
 * not spawn the actor) is carried out here even while a handler loops for ever: the actor is
 * stopped as `"killed"` and the process ends.
 *
 * @module
 */

import { waitAsync } from "../core/atomics.ts";
import { current, setCurrent } from "../core/context.ts";
import { alloc, heap, MAIN_SLOT } from "../core/heap.ts";
import { Ring, TIMEOUT } from "../core/ring.ts";
import { Encoder, holdsHandles, loads, loadsAsync } from "../core/reduction.ts";
import type { Channel, StartFrame } from "../process/os_spawn.ts";
import { KIND } from "../process/os_handles.ts";
import { Process } from "../process/process.ts";
import { ACTOR, Box, decode, setStopped, SLOT, STATE, STOPPED, SUPERVISED } from "./block.ts";
import { ASK, CALL, type Envelope, ERR, KILL, LINK, request, UNLINK } from "./call.ts";
import type { ExitReason } from "./exit.ts";
import {
  F_ENV,
  F_LINK,
  F_PEER_EXIT,
  F_REPLY,
  F_STATE,
  F_STOPPED,
  F_SUPERVISED,
  F_TAKEN,
  F_UNLINK,
} from "./isolated.ts";
import { type ActorRef, boxOf, makeRef } from "./ref.ts";
import { type ActorInit, actorMain } from "./runtime.ts";
import { watch } from "./watch.ts";

const copyOut = (b: Uint8Array): Uint8Array => b.slice();

/** The relay's reply ring (replies are small; a large one streams through). */
const INBOX_BYTES = (64 << 10) - 16;
/** How long the actor's thread may take to end once it has stopped, before the process ends. */
const THREAD_GRACE_MS = 1000;

/**
 * The child side of an isolated actor (run by the child's main module instead of the target):
 * starts the actor in a thread and relays. Resolves with the exit code of the process.
 *
 * @example
 * ```ts ignore
 * // In process/os_child.ts, for a start frame naming this module as its bridge:
 * Deno.exit(await childMain(channel, start));
 * ```
 */
export async function childMain(ch: Channel, start: StartFrame): Promise<number> {
  const [init] = loads<[ActorInit]>(start.payload.args);
  // This thread only relays: it may start the actor's thread whatever the actor's daemon flag
  // (which concerns this OS process, and is the parent's business).
  setCurrent({ ...current(), daemon: false });
  const box = new Box(Box.create(ACTOR, 0));
  const inboxAt = alloc(INBOX_BYTES);
  Ring.init(inboxAt, INBOX_BYTES);
  const inbox = new Ring(inboxAt);
  /** Callers waiting for a reply, by the id given here: [their id, reply ring, slot]. */
  const callers = new Map<number, [number, number, number]>();
  let nextId = 0, state = 0, killed = false;
  // A reply may hold the handles the actor was given (references to objects its parent serves,
  // which the parent's relay turns back into them), not ones made here.
  const enc = new Encoder({
      handles: (kind) =>
        kind === KIND ||
        `a ${kind} made in an actor with isolation "process" cannot be sent out of it (its memory is its own; only the handles it was given can)`,
    }),
    plain = new Encoder();

  const syncState = () => {
    const s = Atomics.load(box.i32, STATE);
    if (s === state || s >= STOPPED) return;
    state = s;
    ch.send(F_STATE, Uint8Array.of(s));
  };
  const forward = (r: unknown) => {
    const [id, status, value] = r as [number, number, unknown];
    const c = callers.get(id);
    if (!c) return;
    callers.delete(id);
    syncState();
    let body: Uint8Array;
    try {
      body = status === ERR
        ? enc.encode([c[0], status, value], "reply", { reportError: true })
        : enc.encode([c[0], status, value], "result");
    } catch (e) {
      body = plain.encode([c[0], ERR, e], "reply", { reportError: true });
    }
    const frame = new Uint8Array(8 + body.length), dv = new DataView(frame.buffer);
    dv.setUint32(0, c[1], true);
    dv.setUint32(4, c[2], true);
    frame.set(body, 8);
    ch.send(F_REPLY, frame);
  };
  /**
   * Forwards a reply. One holding a handle made here (refused by `enc`, naming it) may be of a
   * kind whose module this thread has not loaded: it is loaded first.
   */
  const forwardBytes = async (b: Uint8Array) => {
    let r: unknown;
    try {
      r = await loadsAsync(b);
    } catch (e) {
      return console.error(`actor ${init.name}: a reply could not be read:`, e);
    }
    forward(r);
  };
  /** Forwards every reply in the ring now. */
  const pump = async () => {
    for (;;) {
      let n = 0;
      for (let b = inbox.tryRecv(copyOut); b !== TIMEOUT; b = inbox.tryRecv(copyOut)) {
        if (holdsHandles(b)) await forwardBytes(b);
        else forward(decode(b));
        n++;
      }
      if (inbox.empty()) return;
      const b = await inbox.recv(copyOut, { timeout: 0 }); // a streamed one
      if (typeof b !== "symbol") await forwardBytes(b);
      else if (!n) return;
    }
  };

  // Links: the parent keeps them (a ref cannot cross); here each peer has a stand-in actor of its
  // name that the actor is linked to, stopped with the peer's reason when the parent says so.
  const standIns = new Map<number, ActorRef>();
  const linkTo = (kind: number, peer: ActorRef) =>
    void request(box, init.name, [kind, 0, 0, 0, peer], 4, "peer").catch(() => {});
  const onLinkFrame = (type: number, b: Uint8Array) => {
    const [off, arg] = loads<[number, unknown]>(b);
    const peer = standIns.get(off);
    if (type === F_LINK && !peer) {
      const ref = makeRef(new Box(Box.create(ACTOR, 0)), String(arg), true);
      standIns.set(off, ref);
      linkTo(LINK, ref);
    } else if (peer) {
      standIns.delete(off);
      if (type === F_UNLINK) linkTo(UNLINK, peer);
      else setStopped(boxOf(peer), arg as ExitReason);
    }
  };

  /** Envelopes in the mailbox since the parent was last told (told once a tick). */
  let takenSince = 0;
  const taken = () => {
    if (takenSince++) return;
    queueMicrotask(() => {
      const body = new Uint8Array(4);
      new DataView(body.buffer).setUint32(0, takenSince, true);
      takenSince = 0;
      ch.send(F_TAKEN, body);
    });
  };
  ch.listen((type, b) => {
    if (type === F_SUPERVISED) return void Atomics.store(box.i32, SUPERVISED, b[0]);
    if (type === F_LINK || type === F_UNLINK || type === F_PEER_EXIT) return onLinkFrame(type, b);
    if (type !== F_ENV) return;
    const env = loads<Envelope>(b);
    if (env[0] === KILL) return void (taken(), killed = true, setStopped(box, "killed"));
    if (env[0] === CALL || env[0] === ASK) {
      callers.set(++nextId, [env[1] as number, env[2] as number, env[3] as number]);
      env[1] = nextId;
      env[2] = inboxAt;
      env[3] = heap().slot;
      b = plain.encode(env, "env");
    }
    // Counted once in the mailbox (or refused by a stopped actor): the parent's window moves.
    void box.ring.post(b, box.postOpts).then(taken, taken);
  });

  const p = new Process({
    target: actorMain,
    module: new URL("./runtime.ts", import.meta.url).href,
    args: [{ ...init, off: box.off } satisfies ActorInit],
    name: init.name,
    daemon: false,
  });
  try {
    p.start();
  } catch (err) {
    setStopped(box, err instanceof Error ? err : String(err));
  }
  if (p.pid !== null) Atomics.store(box.i32, SLOT, p.pid - Deno.pid + MAIN_SLOT);
  const stopped = new Promise<ExitReason>((r) => watch(box, r, { process: p, name: init.name }));

  // Replies, and the state as it changes, until the actor stops.
  let done = false;
  void (async () => {
    while (!done) {
      syncState();
      await pump();
      await inbox.poll(50);
    }
  })();
  void (async () => {
    while (!done) {
      const s = Atomics.load(box.i32, STATE);
      syncState();
      await waitAsync(box.i32, STATE, s, 1000);
    }
  })();
  const reason = await stopped;
  done = true;
  await pump(); // the replies it sent before it stopped
  let body: Uint8Array;
  try {
    body = plain.encode(reason, "reason", { reportError: true }).slice();
  } catch {
    body = plain.encode(String(reason), "reason").slice();
  }
  ch.send(F_STOPPED, body);
  await ch.drain();
  // Its thread ends at once, unless it is still busy (killed while running a handler).
  if (p.exitCode === null && !killed) {
    await Promise.race([p.join(), new Promise((r) => setTimeout(r, THREAD_GRACE_MS))]);
  }
  return p.exitCode ?? 1;
}
