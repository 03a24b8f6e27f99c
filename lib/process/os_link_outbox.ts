/**
 * Isolation "process", child side: the outbox of a handle link, the one road from an isolate of
 * an isolated child to the socket its link thread owns (see `os_link.ts`). Every call (awaited,
 * blocking, or not waited for), every cancel and every acknowledgement goes in here as a ready
 * frame, in the order it was made; the link thread takes all that is there at once and writes it
 * to the socket in one write. Why shared memory and not a message per call: appending is a copy
 * and, only when the link thread sleeps, a wake-up, where each worker message is a turn of the
 * link thread's event loop (bench/README.md has W2's figures); and one road keeps the calls in order (a put the child did not wait for reaches the
 * parent before the blocking call made after it, and an item's acknowledgement before anything
 * the child did with the item), which two roads did not.
 *
 * Layout of the (growable) shared buffer: {@link O_LOCK} (0 free, 1 taken, 2 taken with a
 * waiter), {@link O_LEN} (bytes of frames waiting), {@link O_SLEEP} (1 while the link thread
 * waits for frames), then the frames from {@link O_DATA}. The same structure carries the replies
 * back (an inbox: the link thread writes, the isolate reads).
 *
 * The lock is held for one copy. A thread terminated while it holds it (a termination runs no
 * `finally`) would leave it taken for ever: a thread that cannot take it for
 * {@link LOCK_DEAD_MS} gives up with a `ProcessError` instead of waiting for ever.
 *
 * @module
 */

import { ProcessError } from "../core/errors.ts";

/** How long the lock may stay taken before its holder counts as dead (it is held for a copy). */
export const LOCK_DEAD_MS = 3000;

/** Word indexes of the outbox header (see the module doc). */
export const O_LOCK = 0, O_LEN = 1, O_SLEEP = 2;
/** Where the frames start (bytes). */
export const O_DATA = 16;
/** Bytes of a frame's header: its body's length (u32) and its type (u8), as `Channel` frames. */
const HEAD = 5;

/** Takes the outbox's lock (a futex-style word: 2 means someone waits for it). */
function lock(i32: Int32Array): void {
  if (Atomics.compareExchange(i32, O_LOCK, 0, 1) === 0) return;
  const deadline = performance.now() + LOCK_DEAD_MS;
  while (Atomics.exchange(i32, O_LOCK, 2) !== 0) {
    if (Atomics.wait(i32, O_LOCK, 2, 5) === "timed-out" && performance.now() > deadline) {
      throw new ProcessError(
        `the outbox of the link to the parent's handles stayed locked for ${LOCK_DEAD_MS} ms: ` +
          "the thread that held it died, and the link is broken",
      );
    }
  }
}

function unlock(i32: Int32Array): void {
  if (Atomics.exchange(i32, O_LOCK, 0) === 2) Atomics.notify(i32, O_LOCK, 1);
}

/**
 * The writing side (the isolate that makes the calls).
 *
 * @example
 * ```ts
 * import { OutboxReader, OutboxWriter } from "./os_link_outbox.ts";
 * const w = new OutboxWriter();
 * w.append(1, new Uint8Array([7, 8]));
 * const frames = new OutboxReader(w.sab).take();
 * console.assert(frames?.length === 7 && frames[4] === 1);
 * ```
 */
export class OutboxWriter {
  /** The shared buffer (sent to the link thread once). */
  readonly sab: SharedArrayBuffer;
  readonly #i32: Int32Array;
  /** A view that follows the buffer as it grows. */
  readonly #u8: Uint8Array;

  readonly #wakeAlways: boolean;

  /**
   * Writes into `sab` (a new buffer when not given). `wakeAlways`: wake the reader at every
   * append, also when it did not say it sleeps (a reader that waits in more than one way at a
   * time, as an isolate does with its replies).
   */
  constructor(sab?: SharedArrayBuffer, wakeAlways = false) {
    this.sab = sab ?? new SharedArrayBuffer(O_DATA + (64 << 10), { maxByteLength: 1 << 30 });
    this.#i32 = new Int32Array(this.sab, 0, 4);
    this.#u8 = new Uint8Array(this.sab);
    this.#wakeAlways = wakeAlways;
  }

  /** Appends the frames `pre` (type, body), if any, then the frame `type`, `body`. */
  append(type: number, body: Uint8Array, pre?: [number, Uint8Array][]): void {
    const i32 = this.#i32;
    let need = HEAD + body.length;
    if (pre) { for (const [, b] of pre) need += HEAD + b.length; }
    lock(i32);
    try {
      const len = i32[O_LEN];
      if (O_DATA + len + need > this.sab.byteLength) {
        (this.sab as unknown as { grow(n: number): void }).grow(
          Math.min(Math.max(2 * this.sab.byteLength, O_DATA + len + need), 1 << 30),
        );
      }
      let at = O_DATA + len;
      if (pre) { for (const [t, b] of pre) at = this.#put(at, t, b); }
      this.#put(at, type, body);
      Atomics.store(i32, O_LEN, len + need);
    } finally {
      unlock(i32);
    }
    if (this.#wakeAlways || Atomics.load(i32, O_SLEEP)) Atomics.notify(i32, O_LEN);
  }

  #put(at: number, type: number, body: Uint8Array): number {
    const u8 = this.#u8, n = body.length;
    u8[at] = n & 0xff;
    u8[at + 1] = (n >>> 8) & 0xff;
    u8[at + 2] = (n >>> 16) & 0xff;
    u8[at + 3] = n >>> 24;
    u8[at + 4] = type;
    if (n > 32) u8.set(body, at + HEAD);
    else for (let i = 0; i < n; i++) u8[at + HEAD + i] = body[i];
    return at + HEAD + n;
  }
}

/**
 * The reading side (the link thread).
 *
 * @example
 * ```ts
 * import { OutboxReader, OutboxWriter } from "./os_link_outbox.ts";
 * const r = new OutboxReader(new OutboxWriter().sab);
 * console.assert(r.take() === null);
 * ```
 */
export class OutboxReader {
  readonly #sab: SharedArrayBuffer;
  readonly #i32: Int32Array;

  constructor(sab: SharedArrayBuffer) {
    this.#sab = sab;
    this.#i32 = new Int32Array(sab, 0, 4);
  }

  /** Takes every frame waiting (a copy of their bytes), or null when there is none. */
  take(): Uint8Array | null {
    const i32 = this.#i32;
    if (Atomics.load(i32, O_LEN) === 0) return null;
    lock(i32);
    try {
      const len = i32[O_LEN];
      const out = new Uint8Array(this.#sab, O_DATA, len).slice();
      Atomics.store(i32, O_LEN, 0);
      return out;
    } finally {
      unlock(i32);
    }
  }

  /**
   * Blocks this thread until frames are there or `ms` have passed (for a reader that cannot
   * await; its writer must wake always).
   */
  waitSync(ms: number): void {
    Atomics.wait(this.#i32, O_LEN, 0, ms);
  }

  /** Resolves once frames are there (at once when some are). */
  async ready(): Promise<void> {
    const i32 = this.#i32;
    while (Atomics.load(i32, O_LEN) === 0) {
      Atomics.store(i32, O_SLEEP, 1);
      const r = Atomics.waitAsync(i32, O_LEN, 0);
      if (r.async) await r.value;
      Atomics.store(i32, O_SLEEP, 0);
    }
  }
}
