/**
 * Isolation "process" for actors, parent side: `spawn(Actor, { isolation: "process" })` runs the
 * actor in a `deno` OS process of its own, so a runaway handler can be stopped (a signal frees
 * its CPU at once), `maxMemoryMb` caps its heap, and its crash costs only itself.
 *
 * As for the isolated pool (see pool/os_pool.ts), the actor machinery is unchanged and a relay on
 * each side of the socket moves its own messages:
 *
 * - The actor's mailbox block ({@link Box}) stays in this program's heap: refs, calls, monitors,
 *   links of others to it, names and supervisors work on it as for a thread actor, from any
 *   worker of this program. Its `SLOT` word is the child's slot in this program's process table
 *   (the spawner's own until the child has connected), so its death is seen as a worker's.
 * - **Parent side** (here, in the spawner's thread): drains the mailbox and sends each envelope as
 *   a frame (a {@link Channel} writes the frames of one tick at once), at most a window ahead of
 *   the child's mailbox (the child says how many it took in, `F_TAKEN`): a sender waits for room
 *   in the parent's mailbox as for a thread actor's; writes each reply frame
 *   into the caller's reply ring (named by its offset in this heap: the child never writes
 *   here); mirrors the actor's state; records the stop reason the child reports with
 *   `setStopped`, after the replies sent before it.
 * - **Child side** (isolated_child.ts): the real actor runtime runs in a thread of the child on a
 *   mailbox in the child's heap; the child's main thread relays, so it stays free to report the
 *   stop and to end the process when the actor is killed while busy.
 * - **Deaths.** A child that ends without reporting a reason (SIGKILL from outside, out of
 *   memory) stops the actor with the reason its exit gives: `"killed"` for a signal, a
 *   `ProcessError` naming `maxMemoryMb` when it ran out of memory.
 * - **Handles** cross as to an isolated `Process` (`os_adopt.ts`): the sender's encoder
 *   (`encodeAt` sees the block's `OS_PID` word) refuses, naming it, one that cannot cross; the
 *   relay hands an envelope holding handles to the server of the child's handles, which puts
 *   references in their place (the envelopes behind it wait: order is kept), and a reply holding
 *   references back, which puts the real objects' handles in their place. A link's peer ref is
 *   kept here instead.
 *
 * @module
 */

import { isAlive } from "../core/heap.ts";
import { Deque } from "../core/deque.ts";
import { flushAll, Ring, TIMEOUT } from "../core/ring.ts";
import { ProcessError } from "../core/errors.ts";
import { dumps, Encoder, holdsHandles, loads } from "../core/reduction.ts";
import { ServerCalls } from "../process/os_adopt.ts";
import { type Channel, exitNote, type OsChild, registerBridge } from "../process/os_spawn.ts";
import type { Process } from "../process/process.ts";
import { Box, OS_PID, setStopped, SLOT, STATE, STOPPED, SUPERVISED } from "./block.ts";
import { ASK, CALL, type Envelope, ERR, LINK, OK, type Reply, sendReply, UNLINK } from "./call.ts";
import { type ExitReason, reasonOfCode } from "./exit.ts";
import { actorOffset, type ActorRef } from "./ref.ts";
import type { ActorInit } from "./runtime.ts";
import { watch, watchProcess } from "./watch.ts";

/** Parent to child: an envelope of the mailbox, as read from its ring. */
export const F_ENV = 16;
/** Child to parent: `[u32 reply ring][u32 caller's slot]` then the reply, as a ring holds it. */
export const F_REPLY = 17;
/** Child to parent: the actor's state word (running, stopping). */
export const F_STATE = 18;
/** Child to parent: the actor stopped; the body is its encoded reason. */
export const F_STOPPED = 19;
/** Parent to child: the actor's `SUPERVISED` word (a supervised actor does not print crashes). */
export const F_SUPERVISED = 20;
/** Parent to child: `[peer, name]`: the actor is linked to the peer actor (its block offset). */
export const F_LINK = 21;
/** Parent to child: `[peer]`: that link is removed. */
export const F_UNLINK = 22;
/** Parent to child: `[peer, reason]`: that linked peer stopped (an exit signal). */
export const F_PEER_EXIT = 23;
/** Child to parent: `[u32 n]`: n more envelopes are in the actor's mailbox there. */
export const F_TAKEN = 24;

/**
 * The envelopes on their way to the child (in the socket, or waiting for room in its mailbox):
 * at most this many, and this many bytes (one at least). The relay reads the parent's mailbox
 * no further meanwhile, so a sender waits for room there as it would for a thread actor.
 */
const WINDOW_MESSAGES = 64, WINDOW_BYTES = 1 << 20;

const RUNTIME = new URL("./runtime.ts", import.meta.url).href;

registerBridge(`${RUNTIME}#actorMain`, {
  childModule: new URL("./isolated_child.ts", import.meta.url).href,
  attach: parentSide,
});

/** How often an idle relay checks that its child still runs (its exit also ends the wait). */
const DEATH_POLL_MS = 250;

const copyOut = (b: Uint8Array): Uint8Array => b.slice();

/** Stop reasons reported by a child, being written after its replies (by block offset). */
const reporting = new Map<number, Promise<void>>();

/** The reason of an isolated actor whose OS process ended with `code` and said nothing. */
function reasonOfExit(code: number | null, pid: number | null, name: string): ExitReason {
  const reason = reasonOfCode(code, `actor ${name}`), note = exitNote(pid);
  return reason instanceof Error && note ? new ProcessError(reason.message + note) : reason;
}

/** Stops the actor of `box` for its OS process's exit, after any reason the child reported. */
function stopForExit(box: Box, code: number | null, pid: number | null, name: string): void {
  const reported = reporting.get(box.off) ?? Promise.resolve();
  void reported.then(() => {
    reporting.delete(box.off);
    setStopped(box, reasonOfExit(code, pid, name));
  });
}

/**
 * Marks the actor of `box` as isolated, its OS process `p` just started (by `spawn`), and stops
 * it when that process ends, whenever that is (even before it connected).
 *
 * @example
 * ```ts ignore
 * p.start();
 * isolatedStarted(box, p, name);
 * ```
 */
export function isolatedStarted(box: Box, p: Process, name: string): void {
  Atomics.store(box.i32, OS_PID, p.pid!);
  watchProcess(p, () => stopForExit(box, p.exitCode, p.pid, name));
}

/** The parent side of one isolated actor: its mailbox in this heap <-> the socket. */
function parentSide(ch: Channel, args: unknown[], child: OsChild): void {
  const init = args[0] as ActorInit;
  const box = new Box(init.off);
  // From now on the actor's liveness is the child's (see the module doc).
  Atomics.store(box.i32, SLOT, child.slot);
  // Runs before the exit watcher's scan: the reason names a memory limit where it applies.
  void child.exited.then((code) => stopForExit(box, code, child.pid, init.name));
  const rings = new Map<number, Ring>();
  /** The server of the child's handles, once a message or a reply held one. */
  let server: ServerCalls | undefined;
  const served = () => server ??= new ServerCalls(child.handleServer());
  void child.exited.then(() => server?.close());
  /** Replies holding handles, being turned back into this program's (the stop waits for them). */
  let replies: Promise<unknown> = Promise.resolve();
  const postReply = (at: number, slot: number, reply: Uint8Array) => {
    let ring = rings.get(at);
    if (!ring) rings.set(at, ring = new Ring(at));
    void ring.post(reply, { broken: () => !isAlive(slot) });
  };
  /** The sizes of the envelopes on their way to the child, oldest first, and their sum. */
  const flight = new Deque<number>();
  let flightBytes = 0;
  /** Wakes the relay waiting for room in the window. */
  let wake: (() => void) | null = null;
  ch.listen((type, b) => {
    if (type === F_TAKEN) {
      for (let n = new DataView(b.buffer, b.byteOffset).getUint32(0, true); n > 0; n--) {
        flightBytes -= flight.shift() ?? 0;
      }
      return wake?.();
    }
    if (type === F_REPLY) {
      const dv = new DataView(b.buffer, b.byteOffset, 8);
      const at = dv.getUint32(0, true), slot = dv.getUint32(4, true);
      const reply = b.subarray(8);
      if (!holdsHandles(reply)) return postReply(at, slot, reply);
      // A failure here is the child's death, which its caller sees as the actor's.
      replies = replies.then(() => served().back(reply.slice())).then(
        (r) => postReply(at, slot, r),
        () => {},
      );
    } else if (type === F_STATE) {
      if (Atomics.load(box.i32, STATE) === STOPPED) return;
      Atomics.store(box.i32, STATE, b[0]);
      Atomics.notify(box.i32, STATE);
    } else if (type === F_STOPPED) {
      const reason = loads<ExitReason>(b);
      // Replies on their way into their rings land before callers learn that it stopped.
      reporting.set(
        box.off,
        replies.then(() => flushAll()).then(() => setStopped(box, reason)),
      );
    }
  });
  let supervised = 0;
  /** The actor's links, kept here (a ref cannot cross): peer block offset -> unwatch. */
  const links = new Map<number, () => void>();
  const plain = new Encoder();
  void child.exited.then(() => {
    for (const unwatch of links.values()) unwatch();
    links.clear();
  });
  const sendNow = (m: Uint8Array) => {
    const s = Atomics.load(box.i32, SUPERVISED);
    if (s !== supervised) ch.send(F_SUPERVISED, Uint8Array.of(supervised = s));
    flight.push(m.length);
    flightBytes += m.length;
    ch.send(F_ENV, m);
  };
  /**
   * An envelope whose handles are with the server (null: none). The relay sends nothing while
   * there is one (`full()`), so envelopes keep their order.
   */
  let behind: Promise<void> | null = null;
  const send = (m: Uint8Array) => {
    if (!holdsHandles(m)) return sendNow(m);
    behind = handled(loads<Envelope>(m)).catch(() => {}).finally(() => {
      behind = null;
      wake?.();
    });
  };
  /** An envelope holding a handle: a link is kept here; anything else goes through the server. */
  const handled = async (env: Envelope) => {
    const kind = env[0];
    const to: Reply | null = kind === CALL || kind === ASK || kind === LINK || kind === UNLINK
      ? { id: env[1] as number, inbox: env[2] as number, slot: env[3] as number }
      : null;
    if (kind !== LINK && kind !== UNLINK) {
      try {
        // A copy: `plain` reuses its buffer, and another encode may run before `adopt` sends it.
        const [forChild] = await served().adopt(plain.encode(env, "message").slice());
        sendNow(forChild);
      } catch (e) {
        if (to && !dead()) sendReply(to, ERR, e);
      }
      return;
    }
    const peer = env[4] as ActorRef, off = actorOffset(peer);
    if (kind === LINK && !links.has(off) && off !== box.off) {
      links.set(
        off,
        watch(new Box(off), (reason) => {
          links.delete(off);
          ch.send(F_PEER_EXIT, plain.encode([off, reason], "signal", { reportError: true }));
        }),
      );
      ch.send(F_LINK, dumps([off, peer.name]));
    } else if (kind === UNLINK && links.has(off)) {
      links.get(off)!();
      links.delete(off);
      ch.send(F_UNLINK, dumps([off]));
    }
    sendReply(to!, OK, undefined);
  };
  const dead = () => child.exitCode !== null;
  // The window is full, or an envelope is with the server: nothing more is read meanwhile.
  const full = () =>
    behind !== null || flight.length >= WINDOW_MESSAGES ||
    (flight.length > 0 && flightBytes >= WINDOW_BYTES);
  void (async () => {
    while (!dead()) {
      // Everything queued goes in this tick's write.
      for (let m; !full() && (m = box.ring.tryRecv(copyOut)) !== TIMEOUT;) send(m);
      if (full()) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((r) => {
          wake = r;
          timer = setTimeout(r, DEATH_POLL_MS);
          Deno.unrefTimer(timer); // a daemon actor lets the program end
        });
        clearTimeout(timer); // woken early: no timer left behind per wake-up
        wake = null;
        continue;
      }
      if (!box.ring.empty()) {
        // A message too large for one frame is streamed: read it whole.
        const m = await box.ring.recv(copyOut, { timeout: 0 });
        if (m instanceof Uint8Array) send(m);
        continue;
      }
      // Not kept alive by this wait: a daemon actor lets the program end.
      await box.ring.poll(Infinity, dead, DEATH_POLL_MS, true);
    }
  })().catch(() => {});
}
