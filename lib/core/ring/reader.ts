/**
 * The reading side of a ring: takes frames off at `R` and decodes each message straight out of
 * shared memory, or assembles a streamed one (privately, or in a heap block recorded in the ring
 * when the read is durable); the rules for a message left torn by a dead writer or a dead
 * reader; and waiting for data or EOF, with or without the read lock (`poll`).
 *
 * @module
 */

import {
  deadlineOf,
  GUARDED,
  LIVENESS_SLICE_MS,
  mutexAcquire,
  mutexAcquireSync,
  mutexPark,
  remainingMs,
  runAsync,
  runSync,
  TIMED_OUT,
  type Waits,
} from "../atomics.ts";
import { alloc as heapAlloc, checkNotTerminated, heap, isAlive, release } from "../heap.ts";
import * as layout from "./layout.ts";
import { RingView } from "./view.ts";
import * as waits from "./waits.ts";
import type { RingWriter } from "./writer.ts";

// What the hot paths use of the other parts, as this module's own constants: V8 folds a
// module's own `const`s into the code it compiles (a number, a known function to inline), but
// loads an imported binding at every use and checks it (measured: a few percent per message).
const {
  advance,
  ASM_FILLED,
  ASM_NEXT_FILLED,
  ASM_NEXT_R,
  ASM_OFF,
  ASM_R,
  ASM_TOTAL,
  ASM_WRITER,
  bytesUsed,
  DONE,
  FIRST,
  LAST,
  LEN_MASK,
  NEED,
  offsetOf,
  pad4,
  PREFIX,
  R,
  READERS_ASLEEP,
  RLOCK,
  SKIP,
  SPIN,
  STREAM_SPIN,
  W,
  WRITERS_ASLEEP,
  WSTATE,
} = layout;
const { __testHooks, sleepOn, spin, unlock, wake } = waits;

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

// How many async reads of this process hold a ring's read lock across an await (by base; an
// entry exists only while non-zero, so a freed and reused block never meets stale state).
const asyncReads = new Map<number, number>();

function holdRead(base: number, d: number): void {
  const n = (asyncReads.get(base) ?? 0) + d;
  if (n) asyncReads.set(base, n);
  else asyncReads.delete(base);
}

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
 * True when the frame at `pos` (read position `r`, write position `w`) cannot be one a writer
 * published: unknown flag bits, longer than the data area after it, past `W`, or a first frame
 * too short for its prefix. Trusting such a length would move `R` past `W` and wreck the ring
 * for good; it can only come from a writer that wrote on after losing its lock.
 */
function badFrame(pos: number, hdr: number, w: number, r: number, cap: number): boolean {
  if (hdr & ~(LEN_MASK | FIRST | LAST)) return true;
  const size = 4 + pad4(hdr & LEN_MASK);
  if (pos + size > cap || size > bytesUsed(w, r, cap)) return true;
  return (hdr & (FIRST | LAST)) === FIRST && (hdr & LEN_MASK) < PREFIX;
}

/** Where `takeRun` stopped when a record's decode threw (it consumed that record). */
let failedAt = 0;

/**
 * `tryRecvMany`'s loop: decodes the whole records from `r` into `out` until `w`, `out` holds
 * `end` items, or a frame that is not a whole record (a SKIP among them); where it stopped. A
 * decode that throws is rethrown into an empty `out` only: with items got, the run ends before
 * that record, which stays for the next call to throw (the items got stay the caller's). Apart
 * from the class, and the SKIP at the ring's wrap left to the caller: V8 compiled the loop on the
 * stack inside the method and deoptimized at its end, and the SKIP's branch, first run at the first
 * wrap, had no type feedback and deoptimized the loop with the reader inlined in it
 * (`--trace-deopt`, 2-3 times per typed W2 consumer).
 */
function takeRun<T>(
  dv: DataView,
  u8: Uint8Array,
  cap: number,
  decode: DecodeAt<T>,
  end: number,
  out: T[],
  r: number,
  w: number,
): number {
  failedAt = r;
  while (out.length < end && r !== w) {
    const pos = offsetOf(r, cap), hdr = dv.getInt32(pos, true);
    if ((hdr & (FIRST | LAST)) !== (FIRST | LAST) || badFrame(pos, hdr, w, r, cap)) break;
    const len = hdr & LEN_MASK, next = advance(r, 4 + pad4(len), cap);
    let v: T;
    try {
      v = decode(u8, pos + 4, len);
    } catch (e) {
      if (out.length > 0) break;
      failedAt = next;
      throw e;
    }
    out.push(v);
    r = next;
  }
  return r;
}

/** Reads one record of `len` bytes at `data[at]` (see `Ring.tryRecvMany`). */
type DecodeAt<T> = (data: Uint8Array, at: number, len: number) => T;

/**
 * The reader of the ring at `base`: what `Ring`'s receiving methods run. Any number of readers,
 * in any processes, may read one ring; the read lock takes them in turn. `writer` is this
 * process's writer of the same ring, which a blocking reader helps along (see `#readWaits`).
 *
 * @example
 * ```ts
 * import { alloc } from "../heap.ts";
 * import { Ring } from "../ring.ts";
 * import { RingReader } from "./reader.ts";
 * import { RingWriter } from "./writer.ts";
 * const base = Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024));
 * const writer = new RingWriter(base);
 * writer.sendSync(new Uint8Array([5]));
 * console.assert(new RingReader(base, writer).recvSync((b) => b[0], {}) === 5);
 * ```
 */
export class RingReader extends RingView {
  readonly #writer: RingWriter;

  constructor(base: number, writer: RingWriter) {
    super(base);
    this.#writer = writer;
  }

  /** Takes what is there. DONE with `st.value`, or NEED (sleep on `st.w`). */
  #readStep(
    st: ReadState,
    decode: Decode<unknown>,
    onDiscard?: () => void,
    alloc?: (total: number) => Uint8Array,
  ): number {
    const i32 = this.i32, cap = this.capacity, dv = this.dv, u8 = this.u8;
    // An adopted assembly that was complete: its reader died after taking the last frame.
    if (st.shared && st.filled === st.total && this.#finish(st, decode, onDiscard)) return DONE;
    for (;;) {
      checkNotTerminated(); // per frame: a zombie must not take one more after a takeover
      const w = Atomics.load(i32, W);
      let r = Atomics.load(i32, R);
      if (w === r) return (st.w = w), NEED;
      let pos = offsetOf(r, cap);
      let hdr = dv.getInt32(pos, true);
      if (hdr === SKIP) {
        if (cap - pos > bytesUsed(w, r, cap)) {
          this.#corrupt(st, w, onDiscard);
          continue;
        }
        r = advance(r, cap - pos, cap);
        if (r === w) { // writers publish a SKIP with the frame after it; be safe anyway
          this.#consumed(r);
          continue;
        }
        pos = 0;
        hdr = dv.getInt32(0, true);
      }
      if (badFrame(pos, hdr, w, r, cap)) {
        this.#corrupt(st, w, onDiscard);
        continue;
      }
      const len = hdr & LEN_MASK, at = pos + 4;
      const next = advance(r, 4 + pad4(len), cap);
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
      __testHooks.frameTaken?.(this.base);
      this.#consumed(next);
      if (st.shared) this.#committed(next, st.filled);
      if (hdr & LAST && this.#finish(st, decode, onDiscard)) return DONE;
    }
  }

  /** The last frame of a streamed message is in: decode it (true), or discard it (false). */
  #finish(st: ReadState, decode: Decode<unknown>, onDiscard?: () => void): boolean {
    const whole = st.buf!, shared = st.shared;
    st.buf = null;
    st.shared = 0;
    // Received: the next reader must not get it again (cleared before it is decoded).
    if (shared) Atomics.store(this.i32, ASM_OFF, 0);
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

  /** Discards everything up to `w` (a bad frame: see `badFrame`) and any half message. */
  #corrupt(st: ReadState, w: number, onDiscard?: () => void): void {
    if (st.buf) this.#discard(st, onDiscard);
    else onDiscard?.();
    st.skipping = false;
    this.#consumed(w);
  }

  #consumed(r: number): void {
    const i32 = this.i32;
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
    Atomics.store(this.i32, ASM_OFF, 0);
    release(st.shared);
    st.shared = 0;
  }

  // A durable read's progress: `R` is the one commit point. Before moving it, the reader
  // records where it will be (`ASM_NEXT_*`); after, where it is (`ASM_R`, `ASM_FILLED`). A
  // reader that takes over finds `R` equal to one of the two and knows how much is assembled.
  #progress(next: number, filled: number): void {
    Atomics.store(this.i32, ASM_NEXT_R, next);
    Atomics.store(this.i32, ASM_NEXT_FILLED, filled);
  }

  #committed(r: number, filled: number): void {
    Atomics.store(this.i32, ASM_R, r);
    Atomics.store(this.i32, ASM_FILLED, filled);
  }

  /** Takes over the assembly a dead reader left in the ring (see `RecvOptions.durable`). */
  #adopt(st: ReadState, off: number): void {
    const i32 = this.i32, r = Atomics.load(i32, R);
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
   * Mid-message with nothing new: true when the message is torn (its writer is dead, or no
   * longer writing it) and was discarded.
   */
  #torn(st: ReadState, onDiscard?: () => void): boolean {
    const i32 = this.i32;
    const ws = Atomics.load(i32, WSTATE);
    if (ws === st.writer && isAlive(st.writer)) return false;
    // The writer's last frames were published before it stopped: look once more.
    if (Atomics.load(i32, W) !== st.w) return false;
    this.#discard(st, onDiscard);
    return true;
  }

  /** Nothing to read: EOF when `eof()` holds and the ring is still empty. */
  #atEof(st: ReadState, eof?: () => boolean): boolean {
    return eof !== undefined && eof() && Atomics.load(this.i32, W) === st.w;
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
    const off = Atomics.load(this.i32, ASM_OFF); // (read lock held) a dead reader's assembly
    if (off) this.#adopt(st, off);
    return st;
  }

  /** `Ring.recvSync` (see there). */
  recvSync<T>(decode: Decode<T>, o: RecvOptions): T | typeof TIMEOUT | typeof EOF {
    const deadline = deadlineOf(o.timeout);
    const i32 = this.i32, lock = RLOCK;
    if (asyncReads.has(this.base)) {
      if (o.timeout === 0) return TIMEOUT; // busy, as a non-blocking get would find it
      throw new Error(
        "denomp: a blocking (Sync) receive cannot run while this process awaits a receive on " +
          "the same channel: it would wait for itself",
      );
    }
    if (Atomics.compareExchange(i32, lock, 0, heap().slot) !== 0) {
      if (mutexAcquireSync(i32, lock, remainingMs(deadline), GUARDED) === TIMED_OUT) return TIMEOUT;
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
   * drivers (see atomics.ts). A blocking reader also helps this process's outbox along, as
   * nothing else runs on its thread meanwhile.
   */
  *#readWaits(
    st: ReadState,
    decode: Decode<unknown>,
    o: RecvOptions,
    deadline: number,
    blocking: boolean,
  ): Waits<unknown> {
    const i32 = this.i32;
    for (;;) {
      if (this.#readStep(st, decode, o.onDiscard, o.alloc) === DONE) return st.value;
      if (blocking && this.#writer.helpOutbox()) continue;
      if (spin(i32, W, st.w, st.buf ? STREAM_SPIN : SPIN)) continue;
      if (st.buf) {
        if (this.#torn(st, o.onDiscard)) continue;
        yield* mutexPark(
          i32,
          RLOCK,
          sleepOn(this.base, i32, W, st.w, READERS_ASLEEP, LIVENESS_SLICE_MS),
        );
        continue;
      }
      if (this.#atEof(st, o.eof)) return EOF;
      if (o.signal?.aborted) throw o.signal.reason;
      const left = remainingMs(deadline);
      if (left <= 0) return TIMEOUT;
      // `eofPollMs`: a close or a death wakes readers without changing `W` (see `wakeReaders`).
      // Asleep, the read lock is parked: taken over if this process is terminated meanwhile.
      const ms = Math.min(left, o.eofPollMs ?? Infinity);
      yield* mutexPark(i32, RLOCK, sleepOn(this.base, i32, W, st.w, READERS_ASLEEP, ms));
    }
  }

  /** `Ring.tryRecv` (see there). */
  tryRecv<T>(decode: Decode<T>): T | typeof TIMEOUT {
    const i32 = this.i32;
    const w = Atomics.load(i32, W);
    let r = Atomics.load(i32, R);
    if (w === r) return TIMEOUT;
    checkNotTerminated();
    if (Atomics.compareExchange(i32, RLOCK, 0, heap().slot) !== 0) return TIMEOUT;
    try {
      r = Atomics.load(i32, R); // another reader may have moved it before we locked
      const wNow = Atomics.load(i32, W);
      if (r === wNow) return TIMEOUT;
      let pos = offsetOf(r, this.capacity), hdr = this.dv.getInt32(pos, true);
      if (hdr === SKIP) {
        if (this.capacity - pos >= bytesUsed(wNow, r, this.capacity)) return TIMEOUT; // `recv` sorts it out
        r = advance(r, this.capacity - pos, this.capacity);
        pos = 0;
        hdr = this.dv.getInt32(0, true);
      }
      // Streamed, or a bad frame (see `badFrame`): `recv` deals with it.
      if ((hdr & (FIRST | LAST)) !== (FIRST | LAST) || badFrame(pos, hdr, wNow, r, this.capacity)) {
        return TIMEOUT;
      }
      const len = hdr & LEN_MASK;
      try {
        return decode(this.u8.subarray(pos + 4, pos + 4 + len), false);
      } finally {
        this.#consumed(advance(r, 4 + pad4(len), this.capacity));
      }
    } finally {
      unlock(i32, RLOCK);
    }
  }

  /** `Ring.tryRecvMany` (see there). */
  tryRecvMany<T>(decode: DecodeAt<T>, max: number, out: T[]): number {
    const i32 = this.i32, from = out.length;
    if (Atomics.load(i32, W) === Atomics.load(i32, R)) return 0;
    checkNotTerminated();
    if (Atomics.compareExchange(i32, RLOCK, 0, heap().slot) !== 0) return 0;
    let done = Atomics.load(i32, R);
    try {
      done = this.#takeMany(decode, from + max, out, done);
    } catch (e) {
      done = failedAt;
      throw e;
    } finally {
      if (done !== Atomics.load(i32, R)) this.#consumed(done);
      unlock(i32, RLOCK);
    }
    return out.length - from;
  }

  /** `tryRecvMany`'s runs of frames (see `takeRun`), and the SKIP frames between them. */
  #takeMany<T>(decode: DecodeAt<T>, end: number, out: T[], r: number): number {
    const cap = this.capacity, dv = this.dv, w = Atomics.load(this.i32, W);
    for (let at = r;;) {
      const done = takeRun(dv, this.u8, cap, decode, end, out, at, w);
      if (done === at && at !== r) return r; // nothing after the SKIP: `recv` sorts it out
      const pos = offsetOf(r = done, cap);
      if (r === w || out.length >= end || dv.getInt32(pos, true) !== SKIP) return r;
      if (cap - pos >= bytesUsed(w, r, cap)) return r; // a SKIP past `W`: as above
      at = advance(r, cap - pos, cap);
    }
  }

  /** `Ring.recv` (see there). */
  recv<T>(decode: Decode<T>, o: RecvOptions): Promise<T | typeof TIMEOUT | typeof EOF> {
    const i32 = this.i32, lock = RLOCK;
    try {
      if (Atomics.compareExchange(i32, lock, 0, heap().slot) === 0) {
        // Fast path: a message is there (or comes within the spin).
        const st = this.#newState(o.durable);
        let done = false;
        try {
          done = this.#readStep(st, decode as Decode<unknown>, o.onDiscard, o.alloc) === DONE ||
            (spin(i32, W, st.w) &&
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
    const i32 = this.i32, lock = RLOCK;
    if (!st) {
      for (;;) {
        const left = remainingMs(deadline);
        // Acquire in slices, so an abort is noticed while others hold the lock.
        const r = await mutexAcquire(
          i32,
          lock,
          o.signal ? Math.min(left, LIVENESS_SLICE_MS) : left,
          GUARDED,
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
    const i32 = this.i32;
    const w = Atomics.load(i32, W);
    if (w !== Atomics.load(i32, R)) return true;
    return eof !== undefined && eof() && Atomics.load(i32, W) === w;
  }

  /** `Ring.pollSync` (see there). */
  pollSync(timeout: number, eof?: () => boolean, eofPollMs?: number): boolean {
    return runSync(this.#pollWaits(timeout, eof, eofPollMs));
  }

  /** The wait algorithm of `poll`/`pollSync` (see "One algorithm, two drivers" in atomics.ts). */
  *#pollWaits(timeout: number, eof?: () => boolean, eofPollMs?: number): Waits<boolean> {
    const i32 = this.i32, deadline = deadlineOf(timeout);
    for (;;) {
      if (this.#pollNow(eof)) return true;
      const left = remainingMs(deadline);
      if (left <= 0) return false;
      const w = Atomics.load(i32, W);
      if (spin(i32, W, w)) continue;
      yield* sleepOn(this.base, i32, W, w, READERS_ASLEEP, Math.min(left, eofPollMs ?? Infinity));
    }
  }

  /** `Ring.poll` (see there). */
  poll(
    timeout: number,
    eof?: () => boolean,
    eofPollMs?: number,
    unref?: boolean,
  ): Promise<boolean> {
    return runAsync(this.#pollWaits(timeout, eof, eofPollMs), undefined, unref);
  }

  /** `Ring.empty` (see there). */
  empty(): boolean {
    return Atomics.load(this.i32, W) === Atomics.load(this.i32, R);
  }

  /** `Ring.spinForData` (see there). */
  spinForData(): boolean {
    const i32 = this.i32;
    for (let s = 0; s < SPIN; s++) {
      if (Atomics.load(i32, W) !== Atomics.load(i32, R)) return true;
    }
    return false;
  }
}
