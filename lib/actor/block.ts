/**
 * The mailbox block: the words in the shared heap that a {@link Mailbox} and an actor are made
 * of, any number of views of one block ({@link Box}), and what is written there when an actor
 * stops.
 *
 * Protocol. An actor's mailbox block holds, besides the ring, its state (starting, running,
 * stopping, stopped), its worker's process slot and, once stopped, its encoded exit reason.
 * Whoever sees the actor stop reads the reason there, in any worker: the actor writes it itself
 * when it stops or crashes; when its worker is killed, the process that spawned it writes
 * `"killed"` (or the exit code).
 *
 * @module
 */

import { encodeView } from "../core/reduction.ts";
import { adoptingEncoder } from "../process/os_adopt.ts";
import { alloc, bumpDeaths, heap, isAlive, release } from "../core/heap.ts";
import { Ring } from "../core/ring.ts";
import { SerializationError } from "../core/errors.ts";
import { Encoder, loads } from "../core/reduction.ts";
import { forgetObject } from "../core/observe.ts";
import { inspectors } from "../core/waitfor.ts";
import { describe, type ExitReason } from "./exit.ts";

// ---------------------------------------------------------------------------------------------
// The mailbox block (Int32 words from offset / 4). The sender's and receiver's hot words sit on
// separate cache lines from each other and from the ring's own header.

/** Header word: the block's magic number, set last when it is created. */
export const MAGIC_I = 0;
/** Header word: {@link PLAIN} or {@link ACTOR}. */
export const KIND_I = 1;
/** Header word: the mailbox's bound (0: unbounded). */
export const MAXSIZE_I = 2;
/** Header word: messages queued and not yet received (sender's and receiver's hot word). */
export const COUNT = 16;
/** Header word: senders waiting for room in a bounded mailbox. */
export const PUT_WAITERS = 17;
// Selective receive: the receive lock and the save list (messages taken out of the ring that a
// `match` refused, oldest first). Each entry is its own heap block: [next, seq, length, -, bytes].
/** Header word: the receive lock (a mutex). */
export const RLOCK = 32;
/** Header word: the first entry of the save list. */
export const SAVE_HEAD = 33;
/** Header word: the last entry of the save list. */
export const SAVE_TAIL = 34;
/** Header word: how many entries the save list holds. */
export const SAVE_COUNT = 35;
/** Header word: the sequence number of the last saved entry (bumped by each save). */
export const SAVE_SEQ = 36;
// Actors only. SUPERVISED: 1 while a supervisor watches the actor (it reports the crashes).
/** Header word (actors): starting (0), {@link RUNNING}, {@link STOPPING} or {@link STOPPED}. */
export const STATE = 48;
/** Header word (actors): the process slot of the actor's worker. */
export const SLOT = 49;
/** Header word (actors): the heap block of the encoded exit reason, once stopped. */
export const REASON = 50;
/** Header word (actors): 1 while a supervisor watches the actor. */
export const SUPERVISED = 51;
/**
 * Header word (actors): 0 for a thread actor; for isolation "process" (see isolated.ts), -1
 * while its OS process starts, then its OS pid. Messages to such an actor refuse handles.
 */
export const OS_PID = 52;
/** Bytes of header before the ring. */
export const HEADER = 256;
const MAGIC = 0x6d626f78; // "mbox"
/** Block kind: a plain {@link Mailbox}. */
export const PLAIN = 1;
/** Block kind: an actor's mailbox. */
export const ACTOR = 2;
/** A mailbox block: header and ring fill a 128 KiB size class exactly. */
export const BLOCK = (128 << 10) - 16;
/** Bytes of a save-list entry's header: [next, seq, length, -]. */
export const ENTRY = 16;

// A new block is zeroed: state 0 is "starting".
/** Actor state: handling messages. */
export const RUNNING = 1;
/** Actor state: stopping (a crash, `stop()`, `onStop` running). */
export const STOPPING = 2;
/** Actor state: stopped, its reason recorded. */
export const STOPPED = 3;

/** A view of one mailbox block: header words and ring. Any number may refer to one block. */
export class Box {
  /** The block's heap offset: the mailbox's (or actor's) identity. */
  readonly off: number;
  /** The header words. */
  readonly i32: Int32Array;
  /** The ring the messages go through. */
  readonly ring: Ring;
  /** {@link PLAIN} or {@link ACTOR}. */
  readonly kind: number;
  /** The bound (0: unbounded). */
  readonly maxsize: number;
  /** For `post`: give up on a message once nobody will ever read it (a stopped actor). */
  readonly postOpts: { broken: () => boolean } | undefined;

  /** A view of the block at `off` (throws when none is there). */
  constructor(off: number) {
    this.off = off;
    this.i32 = new Int32Array(heap().sab, off, HEADER >> 2);
    if (Atomics.load(this.i32, MAGIC_I) !== MAGIC) {
      throw new Error(`denomp: no mailbox at heap offset ${off}`);
    }
    this.kind = this.i32[KIND_I];
    this.maxsize = this.i32[MAXSIZE_I];
    this.ring = new Ring(off + HEADER, off);
    this.postOpts = this.kind === ACTOR ? { broken: () => this.stopped() } : undefined;
  }

  /** Allocates and initializes a block; returns its offset. */
  static create(kind: number, maxsize: number): number {
    // Only the headers (the box's, the ring's) need zeroing: ~0.1 ms less per spawn.
    const off = alloc(BLOCK, "other", HEADER + Ring.bytesFor(0));
    Ring.init(off + HEADER, BLOCK - HEADER);
    const i32 = heap().i32, b = off >> 2;
    i32[b + KIND_I] = kind;
    i32[b + MAXSIZE_I] = maxsize;
    Atomics.store(i32, b + MAGIC_I, MAGIC);
    return off;
  }

  /** An actor that has stopped, or whose worker is gone. */
  stopped(): boolean {
    if (Atomics.load(this.i32, STATE) === STOPPED) return true;
    const slot = Atomics.load(this.i32, SLOT);
    return slot !== 0 && !isAlive(slot);
  }
}

/** Frees what a mailbox block points to, when its last reference goes. */
export function freeBox(off: number): void {
  forgetObject(off);
  Ring.dispose(off + HEADER); // a long message a dead receiver was reading
  const h = heap(), b = off >> 2;
  const r = h.i32[b + REASON];
  if (r) release(r);
  for (let e = h.i32[b + SAVE_HEAD], n = 0; e && n < 1 << 24; n++) {
    const next = h.i32[e >> 2];
    // Decode and drop: handles inside the message give back their references.
    try {
      loads(h.u8.slice(e + ENTRY, e + ENTRY + h.i32[(e >> 2) + 2]));
    } catch { /* a handle whose module is not loaded here: leaked, never reused */ }
    release(e);
    e = next;
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding: `encodeView` (the codec's reused buffer) returns a view that `Ring.post` copies at
// once (into the ring, or into the outbox), so the view is never kept past the call.
/** Decodes a message read from a ring. */
export const decode = (b: Uint8Array): unknown => loads(b);

let isoEncoder: Encoder | undefined;

/**
 * Encodes envelope `value` for the actor of `box`; a value that cannot be sent is named by its
 * path from `root`, the element at `at`. For an actor in an OS process of its own, a handle that
 * cannot cross OS processes (a `SharedMemory`) is refused, naming it (the others are handed to
 * the server of its handles by its relay, see isolated.ts).
 */
export function encodeAt(value: unknown[], at: number, root: string, box?: Box): Uint8Array {
  try {
    if (box && Atomics.load(box.i32, OS_PID) !== 0) {
      return (isoEncoder ??= adoptingEncoder()).encode(value, "env");
    }
    return encodeView(value, "env");
  } catch (e) {
    const prefix = `env[${at}]`;
    if (e instanceof SerializationError && e.path.startsWith(prefix)) {
      throw new SerializationError(
        root + e.path.slice(prefix.length),
        e.message.slice(e.path.length + 2),
      );
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Exit reasons, in the actor's block.

/** Why the actor of `box` stopped, as recorded in its block (`"killed"` when nothing is). */
export function readReason(box: Box): ExitReason {
  const r = Atomics.load(box.i32, REASON);
  if (!r) return "killed";
  const hp = heap(), len = hp.i32[r >> 2];
  try {
    const v = loads(hp.u8.subarray(r + 4, r + 4 + len));
    return typeof v === "string" || v instanceof Error ? v : String(v);
  } catch (e) {
    return e as Error;
  }
}

// What snapshot() reads of a mailbox or an actor: its live words.
const STATES = ["starting", "running", "stopping", "stopped"];
const inspectBox = (off: number) => {
  const box = new Box(off), i32 = box.i32, state = Atomics.load(i32, STATE);
  const depth = Math.max(0, Atomics.load(i32, COUNT)) + Atomics.load(i32, SAVE_COUNT);
  if (box.kind !== ACTOR) return { holders: [], state: { mailbox: depth, maxsize: box.maxsize } };
  const reason = state === STOPPED ? readReason(box) : null;
  return {
    holders: [],
    state: {
      mailbox: depth,
      state: STATES[state] ?? "starting",
      slot: Atomics.load(i32, SLOT),
      exitReason: reason === null ? null : describe(reason),
    },
  };
};
inspectors.set("Mailbox", inspectBox);
inspectors.set("Actor", inspectBox);

/** Records why the actor stopped (first writer wins) and marks it stopped, waking watchers. */
export function setStopped(box: Box, reason: ExitReason): void {
  if (Atomics.load(box.i32, STATE) === STOPPED) return;
  let bytes: Uint8Array;
  try {
    bytes = new Encoder().encode(reason, "reason", { reportError: true });
  } catch {
    bytes = new Encoder().encode(String(reason), "reason");
  }
  const blk = alloc(4 + bytes.length), hp = heap();
  hp.i32[blk >> 2] = bytes.length;
  hp.u8.set(bytes, blk + 4);
  if (Atomics.compareExchange(box.i32, REASON, 0, blk) !== 0) release(blk);
  Atomics.store(box.i32, STATE, STOPPED);
  Atomics.notify(box.i32, STATE);
  box.ring.wakeWriters(); // senders waiting for room give up
  bumpDeaths();
}
