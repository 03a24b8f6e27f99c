/**
 * A message on its way into a ring, per process: the cursor of a message being written, the
 * outbox of messages waiting for room (Python's feeder thread, one per process and ring), and
 * `flushAll`, which waits for every outbox before a worker exits.
 *
 * @module
 */

import { beforeExit } from "../context.ts";

/** How a send ended: written into the ring, or given up because `broken()` said nobody reads. */
export type SendStatus = "ok" | "broken";

/** Options of {@link Ring.send}, {@link Ring.post} and {@link Ring.sendSync}. */
export interface SendOptions {
  /**
   * Called while the ring is full: true means no reader will ever drain it (e.g. every copy of a
   * pipe's reading end is closed). The send then gives up (a message already begun is
   * abandoned, and readers discard its part) and reports `"broken"`. Re-checked every
   * {@link LIVENESS_SLICE_MS} while waiting for room.
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
// room, and how many async reads of this process hold the read lock across an await. Entries
// exist only while non-idle, so a freed and reused block never meets stale state.

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
  /** Set by a NEED_ROOM step: the read position to wait on. */
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

export interface Entry {
  cursor: Cursor;
  broken?: () => boolean;
  resolve: (s: SendStatus) => void;
  promise: Promise<SendStatus>;
}

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

export const outboxes = new Map<number, Outbox>();
export const OK: Promise<SendStatus> = Promise.resolve("ok");

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
 * import { flushAll } from "./outbox.ts";
 * await flushAll(); // nothing pending: resolves at once
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
