/**
 * The shared byte channel under every denomp channel: `Queue`, `Pipe`/`Connection`, and (built
 * on the same API) pools, mailboxes and manager RPC. A `Ring` is a ring of frames in a block of
 * the shared heap. Any number of writers and readers in any workers share it; as in Python's
 * `multiprocessing.Queue` (one write lock, one read lock, an OS pipe between), writers are
 * serialised by one robust mutex and readers by another, so between the two locks the ring is
 * a plain single-producer / single-consumer ring (cf. `bench/platform/ring.ts`).
 *
 * - **Messages of any size.** A message that fits in half the ring is one frame and is decoded
 *   straight out of shared memory. A larger one is streamed as a run of frames (the first
 *   carries the total length and the writer's slot); the writer holds its lock for the whole
 *   run, so runs of different writers never interleave and the reader assembles it privately.
 * - **Nothing torn.** Frames are published whole (the write position moves after the bytes are
 *   in). A reader discards a half-assembled message when a new message starts (a writer took
 *   the lock over from a dead one), or when the ring is drained and the message's writer is dead
 *   or no longer writing it. A fresh reader skips continuation frames whose start it never saw
 *   (its predecessor died mid-message). `onDiscard` is told about each discarded message.
 * - **Nothing swallowed.** A reader moves the read position only after it has the message, so a
 *   reader terminated while waiting leaves every message in the ring; the next reader takes the
 *   dead reader's lock over (robust mutex) and goes on.
 * - **Cheap waits.** A side that must wait spins a little, then announces that it sleeps and
 *   sleeps in `Atomics.wait` (sync) or `Atomics.waitAsync` (async; never blocks the thread).
 *   The other side pays `Atomics.notify` only when a sleeper is announced, so the streaming path
 *   is a few loads and stores per message. An idle channel sleeps in the kernel: no core burns.
 *   The announcement is a count of sleepers that only sleepers change (see {@link sleepOn}).
 * - **Messages a dead process never began are counted.** A message waiting in a process's
 *   outbox is counted in the ring's table under that process's slot until its first frame is
 *   out. When the process dies, its outbox dies with it; {@link Ring.reapDead} hands the count
 *   of those messages to whoever keeps totals (a `Queue`'s `qsize`), once. A message begun and
 *   then torn is the reader's to count (`onDiscard`). A blocking send that throws before it
 *   began (a zombie meeting its fence) calls `onUnsent`.
 * - **Writes never block the caller's event loop.** `post` writes through when it can, else
 *   queues the message in a per-process outbox drained by a background pump in order (Python's
 *   feeder thread); `flushAll()` waits for every outbox (the worker bootstrap runs it before a
 *   worker reports its exit). `send`/`sendSync` are the same with a result to wait for.
 *
 * Layout at `base` (Int32 words; hot words of the two sides on separate cache lines):
 * `W`, `READERS_ASLEEP` | `R`, `WRITERS_ASLEEP` | `WLOCK`, `WSTATE` | `RLOCK` | `CAP`, `MAGIC`,
 * `TRACKED`, the `ASM_*` words of a durable reader's assembly | the table of unbegun messages (64 entries of slot and count), then `CAP` data
 * bytes. `W` and `R` run over `[0, 2*CAP)` so full and empty differ and `CAP`
 * need not be a power of two. A frame is an int32 header at a 4-aligned position — the payload
 * length in bits 0..27 with flags `FIRST` (bit 28) and `LAST` (bit 29), or `-1` for "the rest of
 * the data area is unused, go on at 0" — then the payload, padded to 4.
 *
 * @module
 */

import {
  deadlineOf,
  LIVENESS_SLICE_MS,
  mutexAcquire,
  mutexAcquireRecovering,
  mutexAcquireSync,
  OWNER_DIED,
  remainingMs,
  runAsync,
  runSync,
  TIMED_OUT,
  WAITERS,
  type Waits,
} from "./atomics.ts";
import {
  alloc as heapAlloc,
  checkNotTerminated,
  heap,
  isAlive,
  isTerminatedError,
  MAIN_SLOT,
  release,
  retain,
  TERMINATED_MESSAGE,
} from "./heap.ts";
import { ProcessError } from "./errors.ts";
import {
  ASM_FILLED,
  ASM_NEXT_FILLED,
  ASM_NEXT_R,
  ASM_OFF,
  ASM_R,
  ASM_TOTAL,
  ASM_WRITER,
  CAP,
  FIRST,
  HEADER,
  LAST,
  LEN_MASK,
  MAGIC,
  MAGIC_I,
  MAX_CAPACITY,
  MIN_CAPACITY,
  pad4,
  PREFIX,
  R,
  READERS_ASLEEP,
  RLOCK,
  SKIP,
  SPIN,
  STREAM_SPIN,
  TABLE,
  TABLE_ENTRIES,
  TRACKED,
  W,
  WLOCK,
  WRITERS_ASLEEP,
  WSTATE,
} from "./ring/layout.ts";
import { __testHooks, type Sleepers, sleepOn, unlock, wake } from "./ring/waits.ts";
import {
  type Cursor,
  cursorOf,
  flushAll,
  OK,
  Outbox,
  outboxes,
  type SendOptions,
  type SendStatus,
} from "./ring/outbox.ts";

export { __testHooks, flushAll, type SendOptions, type SendStatus, type Sleepers, SPIN };

/** A heap block for a durable assembly of `total` bytes, or 0 (heap full: a private buffer). */
function sharedBlock(total: number): number {
  try {
    return heapAlloc(total, "queue item");
  } catch {
    return 0;
  }
}

/** A result of {@link Ring.recv} when the timeout passed with no message. */
export const TIMEOUT: unique symbol = Symbol("denomp.ring.timeout");
/** A result of {@link Ring.recv} when the ring is empty and `eof()` said no more will come. */
export const EOF: unique symbol = Symbol("denomp.ring.eof");

/**
 * Turns a message's payload into a value. `owned` is true when `payload` is a private copy the
 * callee may keep; otherwise it is a view of shared memory, valid only during the call (copy
 * out what you keep — `Decoder.decode` does).
 */
export type Decode<T> = (payload: Uint8Array, owned: boolean) => T;

/** Options of {@link Ring.recv} and {@link Ring.recvSync}. */
export interface RecvOptions {
  /** Milliseconds to wait for a message to begin; `undefined` waits forever, 0 not at all. */
  timeout?: number;
  /** Aborts a wait for a message to begin (a message already begun is always read whole). */
  signal?: AbortSignal;
  /** Called while the ring is empty: true means nothing more will ever come (returns `EOF`). */
  eof?: () => boolean;
  /**
   * Re-check `eof` at least this often (ms) while asleep, for conditions that change without a
   * notify (a process dying). Without it, `eof` is re-checked when the ring is notified
   * ({@link Ring.wakeReaders}).
   */
  eofPollMs?: number;
  /** Called once for each torn message that is discarded (its writer died or gave up). */
  onDiscard?: () => void;
  /**
   * Assemble a streamed message in a heap block recorded in the ring, so that a reader killed in
   * the middle of it leaves it to the next reader, who goes on where it stopped, instead of
   * losing it: a message is either wholly received or left for the next reader. Costs a heap
   * block per streamed message (none for one-frame messages). Ignored with `alloc`.
   */
  durable?: boolean;
  /**
   * Where to assemble a streamed message of `total` bytes (default: a new `Uint8Array`). E.g.
   * `recvBytesInto` returns a view of the caller's buffer when it fits, saving a copy.
   */
  alloc?: (total: number) => Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Zombies (see _heap.ts): every step that touches a ring first passes the fence,
// checkNotTerminated, and a lock is released only by its current owner.

export { checkNotTerminated };

const asyncReads = new Map<number, number>();

function holdRead(base: number, d: number): void {
  const n = (asyncReads.get(base) ?? 0) + d;
  if (n) asyncReads.set(base, n);
  else asyncReads.delete(base);
}

// ---------------------------------------------------------------------------------------------

const NEED = 0, DONE = 1;

interface ReadState {
  /** `W` as last seen, to sleep on while nothing new is there. */
  w: number;
  /** A streamed message being assembled, its length so far, total and writer. */
  buf: Uint8Array | null;
  filled: number;
  total: number;
  writer: number;
  /** Skipping continuation frames of a message whose start this reader never saw. */
  skipping: boolean;
  value: unknown;
  /** `buf` is this heap block, recorded in the ring's `ASM_*` words (a durable read). */
  shared: number;
  durable: boolean;
}

/**
 * A ring of frames at byte offset `base` of the shared heap (see the module doc). A `Ring` object
 * is only a view: any number of them, in any processes, may refer to the same ring.
 *
 * @example
 * ```ts
 * import { alloc } from "./heap.ts";
 * import { Ring } from "./ring.ts";
 * const bytes = Ring.bytesFor(4096);
 * const ring = new Ring(Ring.init(alloc(bytes), bytes));
 * await ring.send(new Uint8Array([1, 2, 3]));
 * const got = ring.recvSync((b) => b.slice());
 * console.assert(got instanceof Uint8Array && got[2] === 3);
 * ```
 */
export class Ring {
  /** Byte offset of the ring in the shared heap. */
  readonly base: number;
  /** Bytes in the data area. */
  readonly capacity: number;
  readonly #block: number;
  // Fixed-length views of this ring's header and data: element access and Atomics on the
  // heap's length-tracking views cost 2-6x more, and a ring never moves.
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  readonly #dv: DataView;
  readonly #maxSingle: number;
  readonly #minFrame: number;
  readonly #maxFrame: number;

  /**
   * Bytes a ring with `capacity` data bytes occupies (header included).
   *
   * @example
   * ```ts
   * import { Ring } from "./ring.ts";
   * console.assert(Ring.bytesFor(1024) > 1024);
   * ```
   */
  static bytesFor(capacity: number): number {
    return HEADER + capacity;
  }

  /**
   * Lays a ring out in `bytes` zeroed bytes of the heap at `base` (16-aligned, e.g. from
   * `alloc`) and returns `base`. Its capacity is what is left after the header.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * console.assert(ring.capacity === 1024);
   * ```
   */
  static init(base: number, bytes: number): number {
    if (base % 8) throw new RangeError(`a ring must be 8-aligned: current offset is ${base}`);
    const cap = Math.min(MAX_CAPACITY, (bytes - HEADER) & ~7);
    if (cap < MIN_CAPACITY) {
      throw new RangeError(`a ring needs at least ${HEADER + MIN_CAPACITY} bytes: got ${bytes}`);
    }
    const i32 = heap().i32, b = base >> 2;
    Atomics.store(i32, b + CAP, cap);
    Atomics.store(i32, b + MAGIC_I, MAGIC);
    return base;
  }

  /**
   * Attaches to the ring at `base`. `block` is the heap block that contains it: while messages
   * of this process wait in the outbox, the pump holds a reference to it, so the ring outlives
   * the handle objects that posted them.
   */
  constructor(base: number, block = 0) {
    const sab = heap().sab;
    this.#i32 = new Int32Array(sab, base, HEADER >> 2);
    this.base = base;
    this.#block = block;
    if (Atomics.load(this.#i32, MAGIC_I) !== MAGIC) {
      throw new Error(`denomp: no ring at heap offset ${base}`);
    }
    const cap = this.capacity = Atomics.load(this.#i32, CAP);
    this.#u8 = new Uint8Array(sab, base + HEADER, cap);
    this.#dv = new DataView(sab, base + HEADER, cap);
    this.#maxSingle = ((cap >> 1) & ~3) - 4;
    this.#minFrame = Math.max(64, Math.min(4096, (cap >> 2) & ~3));
    // Streamed frames of at most a quarter ring: the reader copies one out while the writer
    // fills the next (one ring-sized frame would make them take turns).
    this.#maxFrame = Math.max(this.#minFrame, (cap >> 2) & ~3);
  }

  // -------------------------------------------------------------------------------------------
  // Positions

  #adv(p: number, n: number): number {
    p += n;
    return p >= 2 * this.capacity ? p - 2 * this.capacity : p;
  }

  #pos(p: number): number {
    return p >= this.capacity ? p - this.capacity : p;
  }

  #used(w: number, r: number): number {
    const d = w - r;
    return d < 0 ? d + 2 * this.capacity : d;
  }

  /** Spins until `i32[idx] !== v`; true if it changed. */
  #spin(idx: number, v: number, n = SPIN): boolean {
    const i32 = this.#i32;
    for (let s = 0; s < n; s++) if (Atomics.load(i32, idx) !== v) return true;
    return false;
  }

  // -------------------------------------------------------------------------------------------
  // State

  /**
   * True when no frame is in the ring (messages still in some process's outbox are not seen).
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * console.assert(ring.empty());
   * ```
   */
  empty(): boolean {
    return Atomics.load(this.#i32, W) === Atomics.load(this.#i32, R);
  }

  /**
   * Spins (for at most {@link SPIN} checks, tens of microseconds) until a frame is in the ring;
   * true if one came. For a receiver's fast path before it falls back to `recv`.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * console.assert(ring.spinForData() === false);
   * ```
   */
  spinForData(): boolean {
    const i32 = this.#i32;
    for (let s = 0; s < SPIN; s++) {
      if (Atomics.load(i32, W) !== Atomics.load(i32, R)) return true;
    }
    return false;
  }

  /**
   * Wakes every reader and poller asleep on this ring, so it re-checks its `eof` (call after
   * changing what `eof` looks at, e.g. closing).
   *
   * Only a hint: it wakes sleepers without changing `W`, the word they sleep on, so a reader
   * that checked `eof` just before the change and sleeps just after misses it. That is why a
   * reader with an `eof` that can change passes `eofPollMs` (queues and pipes: 100 ms), which
   * bounds the miss. Changing `W` instead would mean writing a frame, which needs the write
   * lock, and `close()` must not wait for a writer (nor can a death notice take a lock on the
   * dead process's behalf); a second word to sleep on would cost every message a load.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024))).wakeReaders();
   * ```
   */
  wakeReaders(): void {
    wake(this.#i32, W, READERS_ASLEEP);
  }

  /**
   * Wakes every writer asleep waiting for room, so it re-checks its `broken`.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024))).wakeWriters();
   * ```
   */
  wakeWriters(): void {
    wake(this.#i32, R, WRITERS_ASLEEP);
  }

  // -------------------------------------------------------------------------------------------
  // Writing (the caller holds the write lock)

  /** After taking the write lock over from a dead writer: its message is abandoned. */
  #recoverWriter(): void {
    Atomics.store(this.#i32, WSTATE, 0);
    this.wakeReaders(); // a reader waiting mid-message sees the abandonment at once
  }

  /**
   * Moves `W` from `from` (as this writer last saw it) to `to`, publishing the bytes written
   * before it. A compare-exchange, as cheap as the store: if `W` moved meanwhile, another writer
   * took the lock over from this one (a zombie that passed its last check just before it was
   * marked dead), and this frame must not be published over that writer's.
   */
  #publish(from: number, to: number): void {
    const i32 = this.#i32;
    if (Atomics.compareExchange(i32, W, from, to) !== from) {
      throw new ProcessError(TERMINATED_MESSAGE);
    }
    if (Atomics.load(i32, READERS_ASLEEP)) {
      __testHooks.notifierLoaded?.(this.base, "readers");
      wake(i32, W, READERS_ASLEEP);
    }
  }

  /**
   * Writes as much of the message as fits now. DONE, or NEED with `c.r` to wait on. Checks the
   * fence before every frame: a streamed message is many frames per call, and a zombie writing
   * on after its lock was taken over would interleave its frames with the new writer's.
   */
  #writeStep(c: Cursor): number {
    if (c.frames) return this.#writeFrames(c);
    const i32 = this.#i32, cap = this.capacity, u8 = this.#u8, dv = this.#dv;
    let w = Atomics.load(i32, W), w0 = w;
    for (;;) {
      checkNotTerminated();
      const r = Atomics.load(i32, R);
      let free = cap - this.#used(w, r), pos = this.#pos(w);
      const tail = cap - pos;
      if (!c.started && c.n <= this.#maxSingle) {
        // One frame, contiguous: skip the tail first if it is too short.
        const need = 4 + pad4(c.n);
        if (need > tail) {
          if (free < tail + need) return (c.r = r), NEED;
          dv.setInt32(pos, SKIP, true);
          w = this.#adv(w, tail);
          pos = 0;
        } else if (free < need) return (c.r = r), NEED;
        u8.set(c.src, pos + 4);
        dv.setInt32(pos, c.n | FIRST | LAST, true);
        c.done = c.n;
        this.#publish(w0, this.#adv(w, need));
        this.#begun(c);
        return DONE;
      }
      // Streamed: frames as large as the contiguous free space allows.
      const first = c.done === 0;
      const prefix = first ? PREFIX : 0;
      const want = 4 + prefix + (c.n - c.done);
      const minFrame = Math.min(want, this.#minFrame);
      if (Math.min(free, tail) < minFrame) {
        if (free > tail && free - tail >= minFrame) {
          dv.setInt32(pos, SKIP, true); // published with the next frame
          w = this.#adv(w, tail);
          continue;
        }
        return (c.r = r), NEED; // an unpublished SKIP is simply written again next time
      }
      free = Math.min(free, tail, this.#maxFrame);
      if (first && 4 + pad4(c.n) <= free) {
        // It all fits after all: one plain frame (a FIRST|LAST frame carries no prefix).
        u8.set(c.src.subarray(0 - c.shift, c.n - c.shift), pos + 4);
        dv.setInt32(pos, c.n | FIRST | LAST, true);
        c.done = c.n;
        this.#publish(w0, this.#adv(w, 4 + pad4(c.n)));
        this.#begun(c);
        return DONE;
      }
      const avail = (free - 4) & ~3;
      const rest = c.n - c.done + prefix;
      const last = rest <= avail;
      const len = last ? rest : avail;
      const at = pos + 4;
      if (first) {
        Atomics.store(i32, WSTATE, heap().slot); // before the first frame is visible
        c.started = true;
        dv.setUint32(at, c.n, true);
        dv.setUint32(at + 4, heap().slot, true);
      }
      const from = c.done - c.shift;
      u8.set(c.src.subarray(from, from + len - prefix), at + prefix);
      dv.setInt32(pos, len | (first ? FIRST : 0) | (last ? LAST : 0), true);
      c.done += len - prefix;
      w = this.#adv(w, 4 + pad4(len));
      this.#publish(w0, w);
      w0 = w;
      if (first) this.#begun(c);
      __testHooks.framePublished?.(this.base);
      if (last) {
        Atomics.store(i32, WSTATE, 0);
        return DONE;
      }
    }
  }

  /**
   * `#writeStep` for a batch of records: copies the whole records that fit in the contiguous
   * free space as one run, rewriting each length prefix into a frame header, and publishes the
   * run with one move of `W` (one wake-up). Goes on at 0 (a SKIP) when the next record does not
   * fit before the end of the data area. DONE, or NEED with `c.r` to wait on.
   */
  #writeFrames(c: Cursor): number {
    const i32 = this.#i32, cap = this.capacity, u8 = this.#u8, dv = this.#dv;
    const src = c.src, sdv = new DataView(src.buffer, src.byteOffset, src.length);
    for (;;) {
      checkNotTerminated();
      const w0 = Atomics.load(i32, W), r = Atomics.load(i32, R);
      const free = cap - this.#used(w0, r), pos = this.#pos(w0), tail = cap - pos;
      let w = w0, room = Math.min(free, tail), at = pos;
      const first = 4 + pad4(sdv.getUint32(c.done, true));
      if (first > room) {
        if (first > tail && free - tail >= first) {
          dv.setInt32(pos, SKIP, true); // published with the run after it
          w = this.#adv(w, tail);
          room = free - tail;
          at = 0;
        } else return (c.r = r), NEED;
      }
      let end = c.done, k = 0;
      while (end < c.n) {
        const size = 4 + pad4(sdv.getUint32(end, true));
        if (end - c.done + size > room) break;
        end += size;
        k++;
      }
      u8.set(src.subarray(c.done, end), at);
      for (let p = at, q = c.done; q < end;) {
        const len = sdv.getUint32(q, true);
        dv.setInt32(p, len | FIRST | LAST, true);
        p += 4 + pad4(len);
        q += 4 + pad4(len);
      }
      this.#publish(w0, this.#adv(w, end - c.done));
      c.done = end;
      c.frames -= k;
      if (c.entry >= 0) Atomics.sub(i32, TABLE + 2 * c.entry + 1, k);
      if (c.frames) continue; // the rest may fit after the wrap
      c.entry = -1;
      this.#begun(c);
      return DONE;
    }
  }

  /** Gives up a message (the readers are gone): readers discard what they got of it. */
  #abandon(c: Cursor): void {
    if (c.started && c.done < c.n) this.#recoverWriter();
    if (c.frames && c.entry >= 0) Atomics.sub(this.#i32, TABLE + 2 * c.entry + 1, c.frames - 1);
    this.#begun(c); // no longer waiting to begin: nobody is to reap it
  }

  // -------------------------------------------------------------------------------------------
  // Messages a dead process never began (see the module doc). Only processes that may die
  // count: the main thread never does, and pays nothing.

  /** Counts one more unbegun message of this process's outbox; returns the table entry. */
  #countUnbegun(ob: Outbox, n: number): number {
    checkNotTerminated(); // a zombie must not claim an entry another process may get next
    if (ob.entry === -1) ob.entry = heap().slot === MAIN_SLOT ? -2 : this.#claimEntry();
    if (ob.entry >= 0) Atomics.add(this.#i32, TABLE + 2 * ob.entry + 1, n);
    return ob.entry;
  }

  #claimEntry(): number {
    const i32 = this.#i32, me = heap().slot;
    for (let i = 0; i < TABLE_ENTRIES; i++) {
      if (Atomics.compareExchange(i32, TABLE + 2 * i, 0, me) === 0) {
        Atomics.add(i32, TRACKED, 1);
        return i;
      }
    }
    return -2; // full: this outbox goes uncounted (see the README's limits)
  }

  /**
   * The message's first frame is out (or it was given up): it is no longer unbegun, and its
   * `onBegun` runs.
   */
  #begun(c: Cursor): void {
    if (c.entry >= 0) {
      Atomics.sub(this.#i32, TABLE + 2 * c.entry + 1, 1);
      c.entry = -1;
    }
    const f = c.onBegun;
    if (f) {
      c.onBegun = undefined;
      f();
    }
  }

  /** The outbox is empty and idle: give its entry back. */
  #releaseEntry(ob: Outbox): void {
    const i32 = this.#i32, e = TABLE + 2 * ob.entry;
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
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * console.assert(ring.reapDead() === 0);
   * ```
   */
  reapDead(): number {
    const i32 = this.#i32;
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

  #lockWrite(sync: true): void;
  #lockWrite(sync: false): void | Promise<void>;
  #lockWrite(sync: boolean): void | Promise<void> {
    const i32 = this.#i32, idx = WLOCK;
    if (Atomics.compareExchange(i32, idx, 0, heap().slot) === 0) return;
    if (sync) {
      if (mutexAcquireSync(i32, idx) === OWNER_DIED) this.#recoverWriter();
      return;
    }
    return mutexAcquireRecovering(i32, idx, () => this.#recoverWriter());
  }

  #unlockWrite(): void {
    unlock(this.#i32, WLOCK);
  }

  /** Blocks until the cursor's message is written (or `broken`). Write lock held. */
  #writeSync(c: Cursor, broken?: () => boolean): SendStatus {
    const i32 = this.#i32, idx = R;
    while (this.#writeStep(c) === NEED) {
      if (this.#spin(idx, c.r, c.started ? STREAM_SPIN : SPIN)) continue;
      if (broken?.()) return this.#abandon(c), "broken";
      runSync(
        sleepOn(this.base, i32, idx, c.r, WRITERS_ASLEEP, broken ? LIVENESS_SLICE_MS : Infinity),
      );
    }
    return "ok";
  }

  #outbox(): Outbox {
    let ob = outboxes.get(this.base);
    if (!ob) outboxes.set(this.base, ob = new Outbox());
    return ob;
  }

  /**
   * Writes `bytes` as one message without ever blocking: written through at once when the write
   * lock is free and there is room, else (copied and) queued in this process's outbox, which a
   * background pump writes out in order. Resolves when the message is in the ring. Never rejects.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * void ring.post(new Uint8Array([7])); // fire and forget: order is kept
   * console.assert(ring.recvSync((b) => b[0]) === 7);
   * ```
   */
  post(bytes: Uint8Array, options?: SendOptions): Promise<SendStatus> {
    return this.#post(bytes, false, options);
  }

  /**
   * Like {@link Ring.post}, but `bytes` is not copied while the message waits for room: the
   * caller must leave it unchanged until the returned promise resolves (the contract of
   * `Deno.Conn.write`). Saves a copy per large message.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * const buf = new Uint8Array(4000); // streamed: bigger than the ring
   * const sent = ring.postBorrowed(buf);
   * console.assert(ring.recvSync((b) => b.length) === 4000 && (await sent) === "ok");
   * ```
   */
  postBorrowed(bytes: Uint8Array, options?: SendOptions): Promise<SendStatus> {
    return this.#post(bytes, true, options);
  }

  #post(
    bytes: Uint8Array,
    borrowed: boolean,
    options?: SendOptions,
    frames = 0,
  ): Promise<SendStatus> {
    const c = cursorOf(bytes, options);
    c.frames = frames;
    try {
      const ob = outboxes.get(this.base);
      // Messages queued earlier go first; write what fits of them now rather than waiting for
      // the pump, which needs a macrotask (a producer looping on `await put()` never yields one).
      if (ob === undefined || ob.size === 0 || this.#flushSome(ob)) {
        // Fast path: nothing of ours is queued, so writing now keeps the order.
        if (Atomics.compareExchange(this.#i32, WLOCK, 0, heap().slot) === 0) {
          if (this.#writeStep(c) === DONE) {
            this.#unlockWrite();
            return OK;
          }
          if (c.started) {
            // Part of a streamed message is out: keep the lock, let the pump write the rest.
            if (!borrowed) (c.src = bytes.slice(c.done)), (c.shift = c.done);
            const o = this.#outbox();
            o.lockHeld = true;
            return this.#enqueue(o, c, options);
          }
          this.#unlockWrite();
        }
      }
      if (!borrowed) c.src = bytes.slice();
      return this.#enqueue(ob ?? this.#outbox(), c, options);
    } catch (e) {
      // A zombie meeting its fence: nothing of the message is anywhere (see `onUnsent`).
      if (!c.started) options?.onUnsent?.(c.frames || 1);
      throw e;
    }
  }

  /**
   * Same as {@link Ring.post}; named for callers that await the result.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * console.assert((await ring.send(new Uint8Array(3))) === "ok");
   * ```
   */
  send(bytes: Uint8Array, options?: SendOptions): Promise<SendStatus> {
    return this.post(bytes, options);
  }

  /**
   * Writes queued messages while they fit, without waiting; keeps the write lock only in the
   * middle of a streamed message. True when the outbox is empty.
   */
  #flushSome(ob: Outbox): boolean {
    if (!ob.lockHeld) {
      if (Atomics.compareExchange(this.#i32, WLOCK, 0, heap().slot) !== 0) return false;
      ob.lockHeld = true;
    }
    for (let e = ob.first(); e; e = ob.first()) {
      if (this.#writeStep(e.cursor) === NEED) {
        if (!e.cursor.started) {
          ob.lockHeld = false;
          this.#unlockWrite();
        }
        return false;
      }
      ob.shift();
      e.resolve("ok");
    }
    ob.lockHeld = false;
    this.#unlockWrite();
    return true;
  }

  #enqueue(ob: Outbox, cursor: Cursor, options?: SendOptions): Promise<SendStatus> {
    if (!cursor.started) cursor.entry = this.#countUnbegun(ob, cursor.frames || 1);
    let resolve!: (s: SendStatus) => void;
    const promise = new Promise<SendStatus>((r) => (resolve = r));
    ob.queue.push({ cursor, broken: options?.broken, resolve, promise });
    ob.pumping ??= this.#pump(ob);
    return promise;
  }

  /** The background writer of this process's outbox (Python's feeder thread). */
  async #pump(ob: Outbox): Promise<void> {
    if (this.#block) retain(this.#block);
    const i32 = this.#i32, idx = R;
    try {
      await undefined; // let the caller finish its synchronous work first
      for (let e = ob.first(); e; e = ob.first()) {
        if (!ob.lockHeld) {
          await this.#lockWrite(false);
          ob.lockHeld = true;
          continue; // a sync send may have drained the outbox meanwhile
        }
        const c = e.cursor;
        if (this.#writeStep(c) === DONE) {
          ob.shift();
          e.resolve("ok");
          // Let other processes' writers in between messages when they wait.
          if (!ob.size || Atomics.load(i32, WLOCK) & WAITERS) {
            ob.lockHeld = false;
            this.#unlockWrite();
          }
          continue;
        }
        if (this.#spin(idx, c.r, c.started ? STREAM_SPIN : SPIN)) continue;
        if (e.broken?.()) {
          this.#abandon(c);
          ob.shift();
          e.resolve("broken");
          continue;
        }
        if (!c.started) {
          // Do not hold the lock while asleep: this thread may block in other code meanwhile,
          // and other processes' writers could use the room that appears. Mid-stream we must.
          ob.lockHeld = false;
          this.#unlockWrite();
        }
        const ms = e.broken ? LIVENESS_SLICE_MS : Infinity;
        await runAsync(sleepOn(this.base, i32, idx, c.r, WRITERS_ASLEEP, ms));
      }
    } catch (err) {
      // A zombie (this worker was terminated but still runs) just stops writing; anything else
      // is a bug, not a condition: report it. Either way, no sender is left waiting forever.
      if (!isTerminatedError(err)) {
        console.error("denomp: a channel's background writer failed:", err);
      } else ob.dead = true; // its unbegun messages stay counted for `reapDead`
      for (let e = ob.first(); e; e = ob.first()) {
        ob.shift();
        e.resolve("broken");
      }
    } finally {
      if (ob.lockHeld) {
        ob.lockHeld = false;
        this.#unlockWrite();
      }
      ob.pumping = null;
      if (!ob.size) {
        outboxes.delete(this.base);
        if (!ob.dead) this.#releaseEntry(ob);
      }
      if (this.#block) release(this.#block);
    }
  }

  /**
   * Writes `bytes` as one message, blocking the thread until it is in the ring (after whatever
   * this process queued before, which it writes first). For workers; on the main thread it
   * blocks the event loop.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * ring.sendSync(new Uint8Array([1]));
   * console.assert(ring.recvSync((b) => b[0]) === 1);
   * ```
   */
  sendSync(bytes: Uint8Array, options?: SendOptions): SendStatus {
    const c = cursorOf(bytes, options);
    try {
      return this.#sendSync(c, options);
    } catch (e) {
      if (!c.started) options?.onUnsent?.(c.frames || 1); // see `onUnsent`
      throw e;
    }
  }

  /**
   * The largest record a batch may hold ({@link Ring.postFrames}): a message that is one frame.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * console.assert(ring.maxRecord < ring.capacity / 2);
   * ```
   */
  get maxRecord(): number {
    return this.#maxSingle;
  }

  /**
   * Writes a batch of `count` messages at once, like {@link Ring.post} (never blocks; resolves
   * when all are in the ring). `records` holds them back to back, each a `u32` length (at most
   * {@link Ring.maxRecord}) and its bytes, padded to 4. The records that fit go in as one run of
   * frames under one lock, published by one move of `W` (one wake-up for the readers); each is
   * a message of its own to readers. Other writers may get in between runs, never inside one.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * const records = new Uint8Array([1, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0]);
   * await ring.postFrames(records, 2);
   * const got: number[] = [];
   * console.assert(ring.tryRecvMany((d, at) => d[at], 10, got) === 2 && got[1] === 8);
   * ```
   */
  postFrames(records: Uint8Array, count: number, options?: SendOptions): Promise<SendStatus> {
    if (count <= 0) return OK;
    return this.#post(records, false, options, count);
  }

  /**
   * {@link Ring.postFrames}, blocking the thread until every record is in the ring (as
   * {@link Ring.sendSync}).
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * ring.sendFramesSync(new Uint8Array([1, 0, 0, 0, 9, 0, 0, 0]), 1);
   * console.assert(ring.recvSync((b) => b[0]) === 9);
   * ```
   */
  sendFramesSync(records: Uint8Array, count: number, options?: SendOptions): SendStatus {
    if (count <= 0) return "ok";
    const c = cursorOf(records, options);
    c.frames = count;
    try {
      return this.#sendSync(c, options);
    } catch (e) {
      options?.onUnsent?.(c.frames); // the records not yet written
      throw e;
    }
  }

  #sendSync(c: Cursor, options?: SendOptions): SendStatus {
    const ob = outboxes.get(this.base);
    if (ob && (ob.size || ob.lockHeld)) {
      // Drain our own queue first (continuing a message the pump began), keeping the order.
      if (!ob.lockHeld) {
        this.#lockWrite(true);
        ob.lockHeld = true;
      }
      for (let e = ob.first(); e; e = ob.first()) {
        ob.shift();
        e.resolve(this.#writeSync(e.cursor, e.broken));
      }
    } else this.#lockWrite(true);
    try {
      return this.#writeSync(c, options?.broken);
    } finally {
      if (ob) ob.lockHeld = false;
      this.#unlockWrite();
    }
  }

  /**
   * A blocking reader of this process would wait forever for messages that this process's own
   * pump cannot write while the thread is blocked: write what fits of them now. True if it wrote.
   */
  #helpOutbox(): boolean {
    const ob = outboxes.get(this.base);
    if (!ob?.size) return false;
    const size = ob.size, done = ob.first()!.cursor.done;
    this.#flushSome(ob);
    return ob.size !== size || (ob.size > 0 && ob.first()!.cursor.done !== done);
  }

  /**
   * Marks this process's queued messages as not worth waiting for at exit (Python's
   * `cancel_join_thread`): `flushAll` then ignores them.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024))).detachOutbox();
   * ```
   */
  detachOutbox(): void {
    const ob = outboxes.get(this.base);
    if (ob) ob.detached = true;
  }

  /**
   * Messages of this process still waiting in its outbox for this ring.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * console.assert(ring.pending() === 0);
   * ```
   */
  pending(): number {
    return outboxes.get(this.base)?.size ?? 0;
  }

  // -------------------------------------------------------------------------------------------
  // Reading (the caller holds the read lock)

  /** Takes what is there. DONE with `st.value`, or NEED (sleep on `st.w`). */
  #readStep(
    st: ReadState,
    decode: Decode<unknown>,
    onDiscard?: () => void,
    alloc?: (total: number) => Uint8Array,
  ): number {
    const i32 = this.#i32, cap = this.capacity, dv = this.#dv, u8 = this.#u8;
    // An adopted assembly that was complete: its reader died after taking the last frame.
    if (st.shared && st.filled === st.total && this.#finish(st, decode, onDiscard)) return DONE;
    for (;;) {
      checkNotTerminated(); // per frame: a zombie must not take one more after a takeover
      const w = Atomics.load(i32, W);
      let r = Atomics.load(i32, R);
      if (w === r) return (st.w = w), NEED;
      let pos = this.#pos(r);
      let hdr = dv.getInt32(pos, true);
      if (hdr === SKIP) {
        if (cap - pos > this.#used(w, r)) {
          this.#corrupt(st, w, onDiscard);
          continue;
        }
        r = this.#adv(r, cap - pos);
        if (r === w) { // writers publish a SKIP with the frame after it; be safe anyway
          this.#consumed(r);
          continue;
        }
        pos = 0;
        hdr = dv.getInt32(0, true);
      }
      if (this.#badFrame(pos, hdr, w, r)) {
        this.#corrupt(st, w, onDiscard);
        continue;
      }
      const len = hdr & LEN_MASK, at = pos + 4;
      const next = this.#adv(r, 4 + pad4(len));
      if (hdr & FIRST) {
        if (st.buf) this.#discard(st, onDiscard); // its writer died; another took the lock over
        st.skipping = false;
        if (hdr & LAST) {
          try {
            st.value = decode(u8.subarray(at, at + len), false);
          } finally {
            this.#consumed(next);
          }
          return DONE;
        }
        const total = dv.getUint32(at, true);
        st.writer = dv.getUint32(at + 4, true);
        const shared = st.durable && !alloc ? sharedBlock(total) : 0;
        st.buf = shared
          ? new Uint8Array(heap().sab, shared, total)
          : alloc
          ? alloc(total)
          : new Uint8Array(total);
        st.buf.set(u8.subarray(at + PREFIX, at + len));
        st.filled = len - PREFIX;
        st.total = total;
        if (shared) {
          st.shared = shared;
          Atomics.store(i32, ASM_TOTAL, total);
          Atomics.store(i32, ASM_WRITER, st.writer);
          Atomics.store(i32, ASM_R, r);
          Atomics.store(i32, ASM_FILLED, 0);
          this.#progress(next, st.filled);
          Atomics.store(i32, ASM_OFF, shared);
        }
        this.#consumed(next);
        if (shared) this.#committed(next, st.filled);
        continue;
      }
      if (!st.buf) {
        // Continuation of a message whose start a dead reader took: not ours to deliver.
        if (!st.skipping) {
          st.skipping = true;
          onDiscard?.();
        }
        this.#consumed(next);
        continue;
      }
      if (st.filled + len > st.total) { // cannot happen with well-behaved writers
        this.#consumed(next);
        this.#discard(st, onDiscard);
        continue;
      }
      st.buf.set(u8.subarray(at, at + len), st.filled);
      st.filled += len;
      if (st.shared) this.#progress(next, st.filled);
      this.#consumed(next);
      if (st.shared) this.#committed(next, st.filled);
      if (hdr & LAST) {
        if (this.#finish(st, decode, onDiscard)) return DONE;
      }
    }
  }

  /** The last frame of a streamed message is in: decode it (true), or discard it (false). */
  #finish(st: ReadState, decode: Decode<unknown>, onDiscard?: () => void): boolean {
    const whole = st.buf!, shared = st.shared;
    st.buf = null;
    st.shared = 0;
    // Received: the next reader must not get it again (cleared before it is decoded).
    if (shared) Atomics.store(this.#i32, ASM_OFF, 0);
    try {
      if (st.filled !== st.total) {
        onDiscard?.();
        return false;
      }
      st.value = decode(whole, !shared);
      return true;
    } finally {
      if (shared) release(shared);
    }
  }

  /**
   * True when the frame at `pos` (read position `r`, write position `w`) cannot be one a writer
   * published: unknown flag bits, longer than the data area after it, past `W`, or a first frame
   * too short for its prefix. Trusting such a length would move `R` past `W` and wreck the ring
   * for good; it can only come from a writer that wrote on after losing its lock.
   */
  #badFrame(pos: number, hdr: number, w: number, r: number): boolean {
    if (hdr & ~(LEN_MASK | FIRST | LAST)) return true;
    const size = 4 + pad4(hdr & LEN_MASK);
    if (pos + size > this.capacity || size > this.#used(w, r)) return true;
    return (hdr & (FIRST | LAST)) === FIRST && (hdr & LEN_MASK) < PREFIX;
  }

  /** Discards everything up to `w` (a bad frame: see `#badFrame`) and any half message. */
  #corrupt(st: ReadState, w: number, onDiscard?: () => void): void {
    if (st.buf) this.#discard(st, onDiscard);
    else onDiscard?.();
    st.skipping = false;
    this.#consumed(w);
  }

  #consumed(r: number): void {
    const i32 = this.#i32;
    Atomics.store(i32, R, r); // frees the frame: decode has copied what it keeps
    if (Atomics.load(i32, WRITERS_ASLEEP)) {
      __testHooks.notifierLoaded?.(this.base, "writers");
      wake(i32, R, WRITERS_ASLEEP);
    }
  }

  #discard(st: ReadState, onDiscard?: () => void): void {
    st.buf = null;
    st.filled = st.total = 0;
    this.#dropShared(st);
    onDiscard?.();
  }

  #dropShared(st: ReadState): void {
    if (!st.shared) return;
    Atomics.store(this.#i32, ASM_OFF, 0);
    release(st.shared);
    st.shared = 0;
  }

  // A durable read's progress: `R` is the one commit point. Before moving it, the reader
  // records where it will be (`ASM_NEXT_*`); after, where it is (`ASM_R`, `ASM_FILLED`). A
  // reader that takes over finds `R` equal to one of the two and knows how much is assembled.

  #progress(next: number, filled: number): void {
    Atomics.store(this.#i32, ASM_NEXT_R, next);
    Atomics.store(this.#i32, ASM_NEXT_FILLED, filled);
  }

  #committed(r: number, filled: number): void {
    Atomics.store(this.#i32, ASM_R, r);
    Atomics.store(this.#i32, ASM_FILLED, filled);
  }

  /** Takes over the assembly a dead reader left in the ring (see `RecvOptions.durable`). */
  #adopt(st: ReadState, off: number): void {
    const i32 = this.#i32, r = Atomics.load(i32, R);
    const filled = r === Atomics.load(i32, ASM_NEXT_R)
      ? Atomics.load(i32, ASM_NEXT_FILLED)
      : r === Atomics.load(i32, ASM_R)
      ? Atomics.load(i32, ASM_FILLED)
      : 0;
    st.shared = off;
    if (filled <= 0) return this.#dropShared(st); // nothing taken from the ring yet
    st.total = Atomics.load(i32, ASM_TOTAL);
    st.writer = Atomics.load(i32, ASM_WRITER);
    st.buf = new Uint8Array(heap().sab, off, st.total);
    st.filled = filled;
    this.#committed(r, filled);
  }

  /**
   * Frees what a ring at `base` may still point to (a dead reader's assembly), when the block
   * that holds the ring is freed.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * Ring.dispose(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * ```
   */
  static dispose(base: number): void {
    const i32 = heap().i32, off = Atomics.exchange(i32, (base >> 2) + ASM_OFF, 0);
    if (off) release(off);
  }

  /**
   * Mid-message with nothing new: true when the message is torn (its writer is dead, or no
   * longer writing it) and was discarded.
   */
  #torn(st: ReadState, onDiscard?: () => void): boolean {
    const i32 = this.#i32;
    const ws = Atomics.load(i32, WSTATE);
    if (ws === st.writer && isAlive(st.writer)) return false;
    // The writer's last frames were published before it stopped: look once more.
    if (Atomics.load(i32, W) !== st.w) return false;
    this.#discard(st, onDiscard);
    return true;
  }

  /** Nothing to read: EOF when `eof()` holds and the ring is still empty. */
  #atEof(st: ReadState, eof?: () => boolean): boolean {
    return eof !== undefined && eof() && Atomics.load(this.#i32, W) === st.w;
  }

  #newState(durable = false): ReadState {
    const st: ReadState = {
      w: 0,
      buf: null,
      filled: 0,
      total: 0,
      writer: 0,
      skipping: false,
      value: undefined,
      shared: 0,
      durable,
    };
    const off = Atomics.load(this.#i32, ASM_OFF); // (read lock held) a dead reader's assembly
    if (off) this.#adopt(st, off);
    return st;
  }

  /**
   * Receives one message, blocking the thread: `decode(payload)`'s result, `TIMEOUT`, or `EOF`.
   * A message already begun is always read whole, whatever the timeout. For workers; throws
   * when an async `recv` of this process holds the ring (it could never finish).
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring, TIMEOUT } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * console.assert(ring.recvSync((b) => b.length, { timeout: 0 }) === TIMEOUT);
   * ```
   */
  recvSync<T>(decode: Decode<T>, o: RecvOptions = {}): T | typeof TIMEOUT | typeof EOF {
    const deadline = deadlineOf(o.timeout);
    const i32 = this.#i32, lock = RLOCK;
    if (asyncReads.has(this.base)) {
      if (o.timeout === 0) return TIMEOUT; // busy, as a non-blocking get would find it
      throw new Error(
        "denomp: a blocking (Sync) receive cannot run while this process awaits a receive on " +
          "the same channel: it would wait for itself",
      );
    }
    if (Atomics.compareExchange(i32, lock, 0, heap().slot) !== 0) {
      if (mutexAcquireSync(i32, lock, remainingMs(deadline)) === TIMED_OUT) return TIMEOUT;
    }
    try {
      const st = this.#newState(o.durable);
      // A message already there needs no wait algorithm (the common case of a busy channel).
      if (this.#readStep(st, decode as Decode<unknown>, o.onDiscard, o.alloc) === DONE) {
        return st.value as T;
      }
      return runSync(this.#readWaits(st, decode as Decode<unknown>, o, deadline, true)) as
        | T
        | typeof TIMEOUT
        | typeof EOF;
    } finally {
      unlock(i32, lock);
    }
  }

  /**
   * The read loop of `recvSync` and `recv` once the read lock is held: one algorithm, two
   * drivers (see _atomics). A blocking reader also helps this process's outbox along, as
   * nothing else runs on its thread meanwhile.
   */
  *#readWaits(
    st: ReadState,
    decode: Decode<unknown>,
    o: RecvOptions,
    deadline: number,
    blocking: boolean,
  ): Waits<unknown> {
    const i32 = this.#i32;
    for (;;) {
      if (this.#readStep(st, decode, o.onDiscard, o.alloc) === DONE) return st.value;
      if (blocking && this.#helpOutbox()) continue;
      if (this.#spin(W, st.w, st.buf ? STREAM_SPIN : SPIN)) continue;
      if (st.buf) {
        if (this.#torn(st, o.onDiscard)) continue;
        yield* sleepOn(this.base, i32, W, st.w, READERS_ASLEEP, LIVENESS_SLICE_MS);
        continue;
      }
      if (this.#atEof(st, o.eof)) return EOF;
      if (o.signal?.aborted) throw o.signal.reason;
      const left = remainingMs(deadline);
      if (left <= 0) return TIMEOUT;
      // `eofPollMs`: a close or a death wakes readers without changing `W` (see `wakeReaders`).
      yield* sleepOn(
        this.base,
        i32,
        W,
        st.w,
        READERS_ASLEEP,
        Math.min(left, o.eofPollMs ?? Infinity),
      );
    }
  }

  /**
   * Receives one message if a whole one-frame message is there right now and the read lock is
   * free; else returns `TIMEOUT` at once and changes nothing (the caller then uses `recv`). The
   * cheapest way to receive: no promise, no wait.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring, TIMEOUT } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * console.assert(ring.tryRecv((b) => b.length) === TIMEOUT);
   * void ring.post(new Uint8Array(2));
   * console.assert(ring.tryRecv((b) => b.length) === 2);
   * ```
   */
  tryRecv<T>(decode: Decode<T>): T | typeof TIMEOUT {
    const i32 = this.#i32;
    const w = Atomics.load(i32, W);
    let r = Atomics.load(i32, R);
    if (w === r) return TIMEOUT;
    checkNotTerminated();
    if (Atomics.compareExchange(i32, RLOCK, 0, heap().slot) !== 0) return TIMEOUT;
    try {
      r = Atomics.load(i32, R); // another reader may have moved it before we locked
      const wNow = Atomics.load(i32, W);
      if (r === wNow) return TIMEOUT;
      let pos = this.#pos(r), hdr = this.#dv.getInt32(pos, true);
      if (hdr === SKIP) {
        if (this.capacity - pos >= this.#used(wNow, r)) return TIMEOUT; // `recv` sorts it out
        r = this.#adv(r, this.capacity - pos);
        pos = 0;
        hdr = this.#dv.getInt32(0, true);
      }
      // Streamed, or a bad frame (see `#badFrame`): `recv` deals with it.
      if ((hdr & (FIRST | LAST)) !== (FIRST | LAST) || this.#badFrame(pos, hdr, wNow, r)) {
        return TIMEOUT;
      }
      const len = hdr & LEN_MASK;
      try {
        return decode(this.#u8.subarray(pos + 4, pos + 4 + len), false);
      } finally {
        this.#consumed(this.#adv(r, 4 + pad4(len)));
      }
    } finally {
      unlock(i32, RLOCK);
    }
  }

  /**
   * Receives up to `max` messages that are there right now, if the read lock is free, pushing
   * `decode(data, at, len)` of each onto `out` (`data` is the ring's data area, the payload its
   * `len` bytes at `at`: valid only during the call, as with {@link Decode}; no view per
   * message); returns how many (0: none there, or busy, or the next
   * is not a whole one-frame message: `recv` deals with it). Moves `R` once for them all (one
   * wake-up for waiting writers). A decode that throws ends the batch: the messages before it
   * are returned; if it is the first, it is consumed and the error thrown (as `tryRecv`).
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * ring.sendSync(new Uint8Array([1]));
   * ring.sendSync(new Uint8Array([2]));
   * const out: number[] = [];
   * console.assert(ring.tryRecvMany((d, at) => d[at], 10, out) === 2 && out[1] === 2);
   * ```
   */
  tryRecvMany<T>(
    decode: (data: Uint8Array, at: number, len: number) => T,
    max: number,
    out: T[],
  ): number {
    const i32 = this.#i32, cap = this.capacity, dv = this.#dv, u8 = this.#u8;
    if (Atomics.load(i32, W) === Atomics.load(i32, R)) return 0;
    checkNotTerminated();
    if (Atomics.compareExchange(i32, RLOCK, 0, heap().slot) !== 0) return 0;
    let got = 0, r = Atomics.load(i32, R), done = r;
    try {
      const w = Atomics.load(i32, W);
      while (got < max && r !== w) {
        let pos = this.#pos(r), hdr = dv.getInt32(pos, true);
        if (hdr === SKIP) {
          if (cap - pos >= this.#used(w, r)) break; // `recv` sorts it out
          r = this.#adv(r, cap - pos);
          pos = 0;
          hdr = dv.getInt32(0, true);
        }
        if ((hdr & (FIRST | LAST)) !== (FIRST | LAST) || this.#badFrame(pos, hdr, w, r)) break;
        const len = hdr & LEN_MASK, next = this.#adv(r, 4 + pad4(len));
        let v: T;
        try {
          v = decode(u8, pos + 4, len);
        } catch (e) {
          if (got === 0) done = next;
          if (got === 0) throw e;
          break;
        }
        out.push(v);
        got++;
        r = done = next;
      }
    } finally {
      if (done !== Atomics.load(i32, R)) this.#consumed(done);
      unlock(i32, RLOCK);
    }
    return got;
  }

  /**
   * Receives one message without blocking the thread: `decode(payload)`'s result, `TIMEOUT`,
   * or `EOF`. Completes synchronously inside the call when a message is there (the promise is
   * already settled), spins briefly, then awaits `Atomics.waitAsync`.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * void ring.post(new TextEncoder().encode("hi"));
   * console.assert((await ring.recv((b) => b.length)) === 2);
   * ```
   */
  recv<T>(decode: Decode<T>, o: RecvOptions = {}): Promise<T | typeof TIMEOUT | typeof EOF> {
    const i32 = this.#i32, lock = RLOCK;
    try {
      if (Atomics.compareExchange(i32, lock, 0, heap().slot) === 0) {
        // Fast path: a message is there (or comes within the spin).
        const st = this.#newState(o.durable);
        let done = false;
        try {
          done = this.#readStep(st, decode as Decode<unknown>, o.onDiscard, o.alloc) === DONE ||
            (this.#spin(W, st.w) &&
              this.#readStep(st, decode as Decode<unknown>, o.onDiscard, o.alloc) === DONE);
        } catch (e) {
          unlock(i32, lock);
          throw e;
        }
        if (done) {
          unlock(i32, lock);
          return Promise.resolve(st.value as T);
        }
        return this.#recvSlow(decode, o, deadlineOf(o.timeout), st);
      }
      return this.#recvSlow(decode, o, deadlineOf(o.timeout), null);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async #recvSlow<T>(
    decode: Decode<T>,
    o: RecvOptions,
    deadline: number,
    st: ReadState | null,
  ): Promise<T | typeof TIMEOUT | typeof EOF> {
    const i32 = this.#i32, lock = RLOCK;
    if (!st) {
      for (;;) {
        const left = remainingMs(deadline);
        // Acquire in slices, so an abort is noticed while others hold the lock.
        const r = await mutexAcquire(
          i32,
          lock,
          o.signal ? Math.min(left, LIVENESS_SLICE_MS) : left,
        );
        if (r !== TIMED_OUT) break;
        if (o.signal?.aborted) throw o.signal.reason;
        if (remainingMs(deadline) <= 0) return TIMEOUT;
      }
      st = this.#newState(o.durable);
    }
    holdRead(this.base, 1);
    const onAbort = () => this.wakeReaders();
    o.signal?.addEventListener("abort", onAbort);
    try {
      // The abort listener wakes the wait; the algorithm then sees `signal.aborted`.
      return await runAsync(
        this.#readWaits(st, decode as Decode<unknown>, o, deadline, false),
      ) as T | typeof TIMEOUT | typeof EOF;
    } finally {
      o.signal?.removeEventListener("abort", onAbort);
      holdRead(this.base, -1);
      unlock(i32, lock);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Polling (no lock: never consumes)

  #pollNow(eof?: () => boolean): boolean {
    const i32 = this.#i32;
    const w = Atomics.load(i32, W);
    if (w !== Atomics.load(i32, R)) return true;
    return eof !== undefined && eof() && Atomics.load(i32, W) === w;
  }

  /**
   * Whether a message (or EOF) is there to be received, waiting up to `timeout` ms
   * (`Infinity`: until there is). Never consumes; sees empty messages.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * void ring.post(new Uint8Array(0));
   * console.assert(ring.pollSync(0) && (await ring.poll(0)));
   * ```
   */
  pollSync(timeout: number, eof?: () => boolean, eofPollMs?: number): boolean {
    return runSync(this.#pollWaits(timeout, eof, eofPollMs));
  }

  /** The wait algorithm of `poll`/`pollSync` (see "One algorithm, two drivers" in _atomics). */
  *#pollWaits(timeout: number, eof?: () => boolean, eofPollMs?: number): Waits<boolean> {
    const i32 = this.#i32, deadline = deadlineOf(timeout);
    for (;;) {
      if (this.#pollNow(eof)) return true;
      const left = remainingMs(deadline);
      if (left <= 0) return false;
      const w = Atomics.load(i32, W);
      if (this.#spin(W, w)) continue;
      yield* sleepOn(this.base, i32, W, w, READERS_ASLEEP, Math.min(left, eofPollMs ?? Infinity));
    }
  }

  /**
   * The async twin of {@link Ring.pollSync}.
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * console.assert((await ring.poll(5)) === false);
   * ```
   */
  poll(timeout: number, eof?: () => boolean, eofPollMs?: number): Promise<boolean> {
    return runAsync(this.#pollWaits(timeout, eof, eofPollMs));
  }
}
