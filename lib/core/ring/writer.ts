/**
 * The writing side of a ring: frames out of a message (one frame, or a run of them for a message
 * larger than half the ring, or a batch of records), published by moving `W`; the write lock and
 * its takeover from a dead writer; and the background pump that writes this process's outbox.
 *
 * @module
 */

import {
  GUARDED,
  LIVENESS_SLICE_MS,
  mutexAcquireRecovering,
  mutexAcquireSync,
  mutexPark,
  mutexParkHeld,
  mutexResume,
  OWNER_DIED,
  runAsync,
  runSync,
  WAITERS,
} from "../atomics.ts";
import { ProcessError } from "../errors.ts";
import {
  checkNotTerminated,
  heap,
  isTerminatedError,
  release,
  retain,
  TERMINATED_MESSAGE,
} from "../heap.ts";
import * as layout from "./layout.ts";
import * as outbox from "./outbox.ts";
import { type Cursor, Outbox, type SendOptions, type SendStatus } from "./outbox.ts";
import { RingView } from "./view.ts";
import * as waits from "./waits.ts";

// What the hot paths use of the other parts, as this module's own constants: V8 folds a
// module's own `const`s into the code it compiles (a number, a known function to inline), but
// loads an imported binding at every use and checks it (measured: a few percent per message).
const {
  advance,
  bytesUsed,
  DONE,
  FIRST,
  LAST,
  NEED,
  offsetOf,
  pad4,
  PREFIX,
  R,
  READERS_ASLEEP,
  SKIP,
  SPIN,
  STREAM_SPIN,
  TABLE,
  W,
  WLOCK,
  WRITERS_ASLEEP,
  WSTATE,
} = layout;
const { __testHooks, sleepOn, spin, unlock, wake } = waits;
const { countUnbegun, cursorOf, outboxes, reapDead, releaseEntry } = outbox;

const OK: Promise<SendStatus> = Promise.resolve("ok");

/** How many frames the last {@link copyRun} stamped. */
let stamped = 0;

/**
 * Copies the records of a run (each a `u32` length then its bytes, padded to 4) from `src[from]`
 * on to `u8[at]`, as many as fit in `room` bytes, and turns their length words into frame
 * headers there; the end in `u8` of the last whole record copied (how many: `stamped`). One
 * copy of all that may fit, then one pass over the records: what lies past the last whole one
 * is in free space past `W`, written over later. One pass, not one to find the end and one to
 * stamp: a fresh producer runs both loops before V8 optimizes them, and compiled each. Apart
 * from `#writeFrames`: inside its own loop V8 compiled this one on the stack and threw that code
 * away at each exit (`--trace-deopt`: "exit from OSR'd inner loop", up to 15 times a W2 run).
 */
function copyRun(
  u8: Uint8Array,
  dv: DataView,
  at: number,
  src: Uint8Array,
  from: number,
  n: number,
  room: number,
): number {
  const stop = at + Math.min(room, n - from);
  u8.set(src.subarray(from, from + stop - at), at);
  let p = at, k = 0;
  for (; p + 4 <= stop; k++) {
    const len = dv.getUint32(p, true), size = 4 + pad4(len);
    if (p + size > stop) break;
    dv.setInt32(p, len | FIRST | LAST, true);
    p += size;
  }
  stamped = k;
  // No arithmetic after the loop: first run once V8 had compiled the loop (on the stack, in
  // its first call), it had no type feedback and deoptimized it (`--trace-deopt`).
  return p;
}

/**
 * The writer of the ring at `base`: what `Ring`'s sending methods run. Any number of writers, in
 * any processes, may write one ring; the write lock takes them in turn.
 *
 * @example
 * ```ts
 * import { alloc } from "../heap.ts";
 * import { Ring } from "../ring.ts";
 * import { RingWriter } from "./writer.ts";
 * const base = Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024));
 * console.assert(new RingWriter(base).sendSync(new Uint8Array(1)) === "ok");
 * ```
 */
export class RingWriter extends RingView {
  readonly #block: number;
  readonly #maxSingle: number;
  readonly #minFrame: number;
  readonly #maxFrame: number;

  /** See `Ring`'s constructor: the pump holds a reference to `block` while the outbox is busy. */
  constructor(base: number, block = 0) {
    super(base);
    this.#block = block;
    const cap = this.capacity;
    this.#maxSingle = ((cap >> 1) & ~3) - 4;
    this.#minFrame = Math.max(64, Math.min(4096, (cap >> 2) & ~3));
    // Streamed frames of at most a quarter ring: the reader copies one out while the writer
    // fills the next (one ring-sized frame would make them take turns).
    this.#maxFrame = Math.max(this.#minFrame, (cap >> 2) & ~3);
  }

  /** After taking the write lock over from a dead writer: its message is abandoned. */
  #recoverWriter(): void {
    Atomics.store(this.i32, WSTATE, 0);
    this.wakeReaders(); // a reader waiting mid-message sees the abandonment at once
  }

  /**
   * Moves `W` from `from` (as this writer last saw it) to `to`, publishing the bytes written
   * before it. A compare-exchange, as cheap as the store: if `W` moved meanwhile, another writer
   * took the lock over from this one (a zombie that passed its last check just before it was
   * marked dead), and this frame must not be published over that writer's.
   */
  #publish(from: number, to: number): void {
    const i32 = this.i32;
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
    const i32 = this.i32, cap = this.capacity, u8 = this.u8, dv = this.dv;
    let w = Atomics.load(i32, W), w0 = w;
    for (;;) {
      checkNotTerminated();
      const r = Atomics.load(i32, R);
      let free = cap - bytesUsed(w, r, cap), pos = offsetOf(w, cap);
      const tail = cap - pos;
      if (!c.started && c.n <= this.#maxSingle) {
        // One frame, contiguous: skip the tail first if it is too short.
        const need = 4 + pad4(c.n);
        if (need > tail) {
          if (free < tail + need) return (c.r = r), NEED;
          dv.setInt32(pos, SKIP, true);
          w = advance(w, tail, cap);
          pos = 0;
        } else if (free < need) return (c.r = r), NEED;
        u8.set(c.src, pos + 4);
        dv.setInt32(pos, c.n | FIRST | LAST, true);
        c.done = c.n;
        this.#publish(w0, advance(w, need, cap));
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
          w = advance(w, tail, cap);
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
        this.#publish(w0, advance(w, 4 + pad4(c.n), cap));
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
      __testHooks.frameWriting?.(this.base);
      u8.set(c.src.subarray(from, from + len - prefix), at + prefix);
      dv.setInt32(pos, len | (first ? FIRST : 0) | (last ? LAST : 0), true);
      c.done += len - prefix;
      w = advance(w, 4 + pad4(len), cap);
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
    const i32 = this.i32, cap = this.capacity, u8 = this.u8, dv = this.dv;
    const src = c.src, sdv = new DataView(src.buffer, src.byteOffset, src.length);
    for (;;) {
      checkNotTerminated();
      const w0 = Atomics.load(i32, W), r = Atomics.load(i32, R);
      const free = cap - bytesUsed(w0, r, cap), pos = offsetOf(w0, cap), tail = cap - pos;
      let w = w0, room = Math.min(free, tail), at = pos;
      const first = 4 + pad4(sdv.getUint32(c.done, true));
      if (first > room) {
        if (first > tail && free - tail >= first) {
          dv.setInt32(pos, SKIP, true); // published with the run after it
          w = advance(w, tail, cap);
          room = free - tail;
          at = 0;
        } else return (c.r = r), NEED;
      }
      const end = c.done + copyRun(u8, dv, at, src, c.done, c.n, room) - at, k = stamped;
      this.#publish(w0, advance(w, end - c.done, cap));
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
    if (c.frames && c.entry >= 0) Atomics.sub(this.i32, TABLE + 2 * c.entry + 1, c.frames - 1);
    this.#begun(c); // no longer waiting to begin: nobody is to reap it
  }

  /**
   * The message's first frame is out (or it was given up): it is no longer unbegun, and its
   * `onBegun` runs.
   */
  #begun(c: Cursor): void {
    if (c.entry >= 0) {
      Atomics.sub(this.i32, TABLE + 2 * c.entry + 1, 1);
      c.entry = -1;
    }
    const f = c.onBegun;
    if (f) {
      c.onBegun = undefined;
      f();
    }
  }

  /**
   * `#writeStep` with the write lock just taken (or resumed) by plain code: if it throws (a
   * zombie meeting its fence), the lock is given back before the error goes on. The lock is
   * guarded, so nobody takes it over from a dead holder that is not parked: a zombie that went
   * back to its event loop still holding it would stop every writer of the ring for good.
   */
  #stepOrUnlock(c: Cursor, ob?: Outbox): number {
    try {
      return this.#writeStep(c);
    } catch (e) {
      if (ob) ob.lockHeld = false;
      this.#unlockWrite();
      throw e;
    }
  }

  #lockWrite(sync: true): void;
  #lockWrite(sync: false): void | Promise<void>;
  #lockWrite(sync: boolean): void | Promise<void> {
    const i32 = this.i32, idx = WLOCK;
    if (Atomics.compareExchange(i32, idx, 0, heap().slot) === 0) return;
    if (sync) {
      if (mutexAcquireSync(i32, idx, undefined, GUARDED) === OWNER_DIED) this.#recoverWriter();
      return;
    }
    return mutexAcquireRecovering(i32, idx, () => this.#recoverWriter(), GUARDED);
  }

  #unlockWrite(): void {
    unlock(this.i32, WLOCK);
  }

  /** Blocks until the cursor's message is written (or `broken`). Write lock held. */
  #writeSync(c: Cursor, broken?: () => boolean): SendStatus {
    const i32 = this.i32, idx = R;
    while (this.#writeStep(c) === NEED) {
      if (spin(i32, idx, c.r, c.started ? STREAM_SPIN : SPIN)) continue;
      if (broken?.()) return this.#abandon(c), "broken";
      const ms = broken ? LIVENESS_SLICE_MS : Infinity;
      runSync(mutexPark(i32, WLOCK, sleepOn(this.base, i32, idx, c.r, WRITERS_ASLEEP, ms)));
    }
    return "ok";
  }

  #outbox(): Outbox {
    let ob = outboxes.get(this.base);
    if (!ob) outboxes.set(this.base, ob = new Outbox());
    return ob;
  }

  /** `Ring.post` (see there). */
  post(bytes: Uint8Array, options?: SendOptions): Promise<SendStatus> {
    return this.#post(bytes, false, options);
  }

  /** `Ring.postBorrowed` (see there). */
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
        if (Atomics.compareExchange(this.i32, WLOCK, 0, heap().slot) === 0) {
          if (this.#stepOrUnlock(c) === DONE) {
            this.#unlockWrite();
            return OK;
          }
          if (c.started) {
            // Part of a streamed message is out: keep the lock, let the pump write the rest.
            if (!borrowed) (c.src = bytes.slice(c.done)), (c.shift = c.done);
            const o = this.#outbox();
            o.lockHeld = true;
            mutexParkHeld(this.i32, WLOCK); // until the pump goes on with it
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
   * Writes queued messages while they fit, without waiting; keeps the write lock only in the
   * middle of a streamed message. True when the outbox is empty.
   */
  #flushSome(ob: Outbox): boolean {
    if (!ob.lockHeld) {
      if (Atomics.compareExchange(this.i32, WLOCK, 0, heap().slot) !== 0) return false;
      ob.lockHeld = true;
    } else mutexResume(this.i32, WLOCK);
    for (let e = ob.first(); e; e = ob.first()) {
      if (this.#stepOrUnlock(e.cursor, ob) === NEED) {
        if (!e.cursor.started) {
          ob.lockHeld = false;
          this.#unlockWrite();
        } else mutexParkHeld(this.i32, WLOCK); // until the pump goes on with it
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
    if (!cursor.started) cursor.entry = countUnbegun(this.i32, ob, cursor.frames || 1);
    let resolve!: (s: SendStatus) => void;
    const promise = new Promise<SendStatus>((r) => (resolve = r));
    ob.queue.push({ cursor, broken: options?.broken, resolve, promise });
    ob.pumping ??= this.#pump(ob);
    return promise;
  }

  /** The background writer of this process's outbox (Python's feeder thread). */
  async #pump(ob: Outbox): Promise<void> {
    if (this.#block) retain(this.#block);
    const i32 = this.i32, idx = R;
    try {
      await undefined; // let the caller finish its synchronous work first
      for (let e = ob.first(); e; e = ob.first()) {
        if (!ob.lockHeld) {
          await this.#lockWrite(false);
          ob.lockHeld = true;
          continue; // a sync send may have drained the outbox meanwhile
        }
        mutexResume(i32, WLOCK); // after an await: parked, or taken over if this worker died
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
        if (spin(i32, idx, c.r, c.started ? STREAM_SPIN : SPIN)) continue;
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
        // Mid-stream the lock is parked while asleep, and resumed at the top of the loop (a sync
        // send or a blocking reader of this thread may have gone on with it meanwhile).
        if (ob.lockHeld) mutexParkHeld(i32, WLOCK);
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
        if (!ob.dead) releaseEntry(this.i32, ob);
      }
      if (this.#block) release(this.#block);
    }
  }

  /** `Ring.sendSync` (see there). */
  sendSync(bytes: Uint8Array, options?: SendOptions): SendStatus {
    const c = cursorOf(bytes, options);
    try {
      return this.#sendSync(c, options);
    } catch (e) {
      if (!c.started) options?.onUnsent?.(c.frames || 1); // see `onUnsent`
      throw e;
    }
  }

  /** `Ring.maxRecord` (see there). */
  get maxRecord(): number {
    return this.#maxSingle;
  }

  /** `Ring.postFrames` (see there). */
  postFrames(records: Uint8Array, count: number, options?: SendOptions): Promise<SendStatus> {
    if (count <= 0) return OK;
    return this.#post(records, false, options, count);
  }

  /** `Ring.sendFramesSync` (see there). */
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
    // Our own queue goes first (continuing a message the pump began), keeping the order.
    const queued = ob !== undefined && (ob.size > 0 || ob.lockHeld) ? ob : undefined;
    if (queued?.lockHeld) mutexResume(this.i32, WLOCK);
    else {
      this.#lockWrite(true);
      if (queued) queued.lockHeld = true;
    }
    try {
      if (queued) {
        for (let e = queued.first(); e; e = queued.first()) {
          queued.shift();
          e.resolve(this.#writeSync(e.cursor, e.broken));
        }
      }
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
  helpOutbox(): boolean {
    const ob = outboxes.get(this.base);
    if (!ob?.size) return false;
    const size = ob.size, done = ob.first()!.cursor.done;
    this.#flushSome(ob);
    return ob.size !== size || (ob.size > 0 && ob.first()!.cursor.done !== done);
  }

  /** `Ring.detachOutbox` (see there). */
  detachOutbox(): void {
    const ob = outboxes.get(this.base);
    if (ob) ob.detached = true;
  }

  /** `Ring.pending` (see there). */
  pending(): number {
    return outboxes.get(this.base)?.size ?? 0;
  }

  /** `Ring.reapDead` (see there). */
  reapDead(): number {
    return reapDead(this.i32);
  }
}
