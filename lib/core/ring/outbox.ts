/**
 * A message on its way into a ring, per process: the cursor of a message being written, the
 * outbox of messages waiting for room (Python's feeder thread, one per process and ring), and
 * `flushAll`, which waits for every outbox before a worker exits.
 *
 * @module
 */

import { beforeExit } from "../context.ts";
import { checkNotTerminated, heap, isAlive, MAIN_SLOT } from "../heap.ts";
import { TABLE, TABLE_ENTRIES, TRACKED } from "./layout.ts";

/** How a send ended: written into the ring, or given up because `broken()` said nobody reads. */
export type SendStatus = "ok" | "broken";

/** Options of {@link Ring.send}, {@link Ring.post} and {@link Ring.sendSync}. */
export interface SendOptions {
  /**
   * Called while the ring is full: true means no reader will ever drain it (e.g. every copy of a
   * pipe's reading end is closed). The send then gives up (a message already begun is
   * abandoned, and readers discard its part) and reports `"broken"`. Re-checked every
   * `LIVENESS_SLICE_MS` (atomics.ts) while waiting for room.
   */
  broken?: () => boolean;
  /**
   * Called when the call throws before any part of the message reached the ring (this process
   * was terminated and meets its fence): whoever counted the message can take it back; `count`
   * is 1, or for a batch ({@link Ring.postFrames}) the records not yet written. Not
   * called for a message queued in the outbox (a dead process's queued messages are counted by
   * {@link Ring.reapDead}) nor for one begun (its reader discards it: `onDiscard`).
   */
  onUnsent?: (count: number) => void;
  /**
   * Called once, when the message's first frame is published (readers can see it begin): at
   * once for a message written in the call, later for one the outbox writes. A writer that rings
   * a doorbell of its own rings it here, not before `post` returns: a message that waited for
   * room is not in the ring yet, and a reader woken for it would find nothing and sleep again.
   */
  onBegun?: () => void;
}

// ---------------------------------------------------------------------------------------------
// Per-process state of a ring (keyed by its base offset): the outbox of messages waiting for
// room. Entries exist only while non-idle, so a freed and reused block never meets stale state.

/** A message being written: how much of it is out, and its count until it begins. */
export interface Cursor {
  /** Message bytes from index `shift` on (`src[0]` is byte `shift` of the message). */
  src: Uint8Array;
  shift: number;
  /** Total message length. */
  n: number;
  /** Bytes of the message written so far. */
  done: number;
  /** A streamed message whose first frame is out (the reader may hold part of it). */
  started: boolean;
  /** Set by a step that returned NEED: the read position to wait on. */
  r: number;
  /** The table entry counting this message until it begins (-1: not counted). */
  entry: number;
  /** `SendOptions.onBegun`, until it is called. */
  onBegun?: () => void;
  /**
   * A batch of records (see {@link Ring.postFrames}): how many are not yet written, else 0. Each
   * record is a whole message, so a batch is never "started": its records go out in runs.
   */
  frames: number;
}

/** A message waiting in an outbox, with the promise its sender holds. */
export interface Entry {
  cursor: Cursor;
  broken?: () => boolean;
  resolve: (s: SendStatus) => void;
  promise: Promise<SendStatus>;
}

/** This process's messages for one ring that wait for room, in order. */
export class Outbox {
  queue: Entry[] = [];
  head = 0;
  /** This process holds the ring's write lock on behalf of the outbox. */
  lockHeld = false;
  pumping: Promise<void> | null = null;
  /** `cancelJoinThread()`: `flushAll` does not wait for this outbox. */
  detached = false;
  /** Its entry in the ring's table of unbegun messages: -1 none yet, -2 the table was full. */
  entry = -1;
  /** This process was terminated while the outbox held messages: they are the reaper's. */
  dead = false;
  first(): Entry | undefined {
    return this.queue[this.head];
  }
  shift(): void {
    this.queue[this.head++] = undefined as unknown as Entry;
    if (this.head === this.queue.length) (this.queue.length = 0), (this.head = 0);
    else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }
  get size(): number {
    return this.queue.length - this.head;
  }
}

/** The outboxes of this process that hold messages, by the base of their ring. */
export const outboxes = new Map<number, Outbox>();

/** A cursor at the start of `bytes`. */
export function cursorOf(bytes: Uint8Array, options?: SendOptions): Cursor {
  return {
    src: bytes,
    shift: 0,
    n: bytes.length,
    done: 0,
    started: false,
    r: 0,
    entry: -1,
    onBegun: options?.onBegun,
    frames: 0,
  };
}

/**
 * Waits until every message this process has posted to any ring is written into its ring
 * (Python's feeder-thread join at exit). The worker bootstrap runs it before a worker reports
 * its exit; call it before ending a program whose queues must be fully delivered.
 *
 * @example
 * ```ts
 * import { alloc } from "../heap.ts";
 * import { flushAll, Ring } from "../ring.ts";
 * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
 * void ring.post(new Uint8Array(1));
 * await flushAll(); // resolves once this process's outboxes are written
 * console.assert(!ring.empty());
 * ```
 */
export async function flushAll(): Promise<void> {
  for (;;) {
    const busy = [...outboxes.values()].filter((o) => o.pumping && !o.detached);
    if (!busy.length) return;
    await Promise.all(busy.map((o) => o.pumping));
  }
}

beforeExit(flushAll);

// ---------------------------------------------------------------------------------------------
// Messages a dead process never began (see the module doc of ring.ts): counted in the ring's
// table under the process's slot. Only processes that may die count: the main thread never
// does, and pays nothing. `i32` is the ring's header.

/** Counts one more unbegun message of this process's outbox; returns the table entry. */ export function countUnbegun(
  i32: Int32Array,
  ob: Outbox,
  n: number,
): number {
  checkNotTerminated(); // a zombie must not claim an entry another process may get next
  if (ob.entry === -1) ob.entry = heap().slot === MAIN_SLOT ? -2 : claimEntry(i32);
  if (ob.entry >= 0) Atomics.add(i32, TABLE + 2 * ob.entry + 1, n);
  return ob.entry;
}

function claimEntry(i32: Int32Array): number {
  const me = heap().slot;
  for (let i = 0; i < TABLE_ENTRIES; i++) {
    if (Atomics.compareExchange(i32, TABLE + 2 * i, 0, me) === 0) {
      Atomics.add(i32, TRACKED, 1);
      return i;
    }
  }
  return -2; // full: this outbox goes uncounted (see the README's limits)
}

/** The outbox is empty and idle: give its entry back. */ export function releaseEntry(
  i32: Int32Array,
  ob: Outbox,
): void {
  const e = TABLE + 2 * ob.entry;
  if (ob.entry >= 0) {
    Atomics.store(i32, e + 1, 0);
    if (Atomics.compareExchange(i32, e, heap().slot, 0) === heap().slot) {
      Atomics.sub(i32, TRACKED, 1);
    }
  }
  ob.entry = -1;
}

/**
 * Counts the messages that processes now dead had queued in their outboxes and never began,
 * and forgets them: each is counted by exactly one caller, once. For a channel that keeps
 * totals of messages sent and not yet received (a `Queue`'s `qsize`): these never arrive.
 * One load when no outbox of a process that may die holds anything.

 * (`Ring.reapDead` with this ring's header as `i32`.)
 */
export function reapDead(i32: Int32Array): number {
  if (!Atomics.load(i32, TRACKED)) return 0;
  let lost = 0;
  for (let i = 0; i < TABLE_ENTRIES; i++) {
    const e = TABLE + 2 * i, slot = Atomics.load(i32, e);
    if (slot <= 0 || isAlive(slot)) continue;
    // Claim the entry for reaping (negative): owners only ever claim a free (0) entry.
    if (Atomics.compareExchange(i32, e, slot, -slot) !== slot) continue;
    lost += Atomics.exchange(i32, e + 1, 0);
    Atomics.store(i32, e, 0);
    Atomics.sub(i32, TRACKED, 1);
  }
  return lost;
}
