/**
 * The shared byte channel under every denomp channel: `Queue`, `Pipe`/`Connection`, and (built
 * on the same API) pools, mailboxes and manager RPC. A `Ring` is a ring of frames in a block of
 * the shared heap. Any number of writers and readers in any workers share it; as in Python's
 * `multiprocessing.Queue` (one write lock, one read lock, an OS pipe between), writers are
 * serialised by one robust mutex and readers by another, so between the two locks the ring is
 * a plain single-producer / single-consumer ring.
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
 *   dead reader's lock over (robust mutex) and goes on. It takes it over only while the dead one
 *   is parked in a wait: one terminated in the middle of a step runs that step to its end
 *   (Deno stops a worker only at an await) and gives the lock back at its next fence, so the
 *   next reader does not take the frame it is taking (the zombie-reader test of
 *   queues_midmessage_test.ts). The write lock is taken over the same way, so a dead writer's
 *   frame is not copied over the new writer's (its zombie-writer test).
 * - **Cheap waits.** A side that must wait spins a little, then announces that it sleeps and
 *   sleeps in `Atomics.wait` (sync) or `Atomics.waitAsync` (async; never blocks the thread).
 *   The other side pays `Atomics.notify` only when a sleeper is announced, so the streaming path
 *   is a few loads and stores per message. An idle channel sleeps in the kernel: no core burns.
 *   The announcement is a count of sleepers that only sleepers change (see `sleepOn` in
 *   ring/waits.ts).
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
 * The parts, in `ring/`: `layout.ts` (the header words and the frame format), `waits.ts` (the
 * sleep and wake-up protocol), `view.ts` (what both sides see of a ring), `writer.ts` and
 * `reader.ts` (the two sides), `outbox.ts` (messages waiting for room, and the count of those a
 * dead process never began). `Ring` joins a writer and a reader of one ring.
 *
 * @module
 */

import { heap, release } from "./heap.ts";
import { ASM_OFF, CAP, HEADER, MAGIC, MAGIC_I, MAX_CAPACITY, MIN_CAPACITY } from "./ring/layout.ts";
import {
  type Decode,
  type EOF,
  type RecvOptions,
  RingReader,
  type TIMEOUT,
} from "./ring/reader.ts";
import { RingWriter } from "./ring/writer.ts";
import type { SendOptions, SendStatus } from "./ring/outbox.ts";

export { SPIN } from "./ring/layout.ts";
export { __testHooks, type Sleepers } from "./ring/waits.ts";
export { flushAll, type SendOptions, type SendStatus } from "./ring/outbox.ts";
export { type Decode, EOF, type RecvOptions, TIMEOUT } from "./ring/reader.ts";

// ---------------------------------------------------------------------------------------------
// Zombies (see heap.ts): every step that touches a ring first passes the fence,
// checkNotTerminated, and a lock is released only by its current owner.

export { checkNotTerminated } from "./heap.ts";

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
  readonly #writer: RingWriter;
  readonly #reader: RingReader;

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
   * Lays a ring out in `bytes` bytes of the heap at `base` (16-aligned, e.g. from `alloc`),
   * of which the header (`Ring.bytesFor(0)` bytes) must be zeroed (its frames need not be), and
   * returns `base`. Its capacity is what is left after the header.
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
    const writer = this.#writer = new RingWriter(base, block);
    this.#reader = new RingReader(base, writer);
    this.base = base;
    this.capacity = writer.capacity;
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
    return this.#reader.empty();
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
    return this.#reader.spinForData();
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
    this.#reader.wakeReaders();
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
    this.#reader.wakeWriters();
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
    return this.#writer.reapDead();
  }

  // -------------------------------------------------------------------------------------------
  // Writing (see ring/writer.ts)

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
    return this.#writer.post(bytes, options);
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
    return this.#writer.postBorrowed(bytes, options);
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
    return this.#writer.post(bytes, options);
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
    return this.#writer.sendSync(bytes, options);
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
    return this.#writer.maxRecord;
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
    return this.#writer.postFrames(records, count, options);
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
    return this.#writer.sendFramesSync(records, count, options);
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
    this.#writer.detachOutbox();
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
    return this.#writer.pending();
  }

  // -------------------------------------------------------------------------------------------
  // Reading (see ring/reader.ts)

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
    return this.#reader.recvSync(decode, o);
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
    return this.#reader.tryRecv(decode);
  }

  /**
   * Receives up to `max` messages that are there right now, if the read lock is free, pushing
   * `decode(data, at, len)` of each onto `out` (`data` is the ring's data area, the payload its
   * `len` bytes at `at`: valid only during the call, as with {@link Decode}; no view per
   * message); returns how many (0: none there, or busy, or the next
   * is not a whole one-frame message: `recv` deals with it). Moves `R` once for them all (one
   * wake-up for waiting writers). A decode that throws ends the batch: the messages before it
   * are returned; only when `out` was empty is the failed one consumed and its error thrown (as
   * `tryRecv`), so a caller holding items already never has to choose between them and the
   * error: the next call throws it.
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
    return this.#reader.tryRecvMany(decode, max, out);
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
    return this.#reader.recv(decode, o);
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
    return this.#reader.pollSync(timeout, eof, eofPollMs);
  }

  /**
   * The async twin of {@link Ring.pollSync}. With `unref`, the wait does not keep the program
   * alive (a relay that must not, e.g. a daemon actor's).
   *
   * @example
   * ```ts
   * import { alloc } from "./heap.ts";
   * import { Ring } from "./ring.ts";
   * const ring = new Ring(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
   * console.assert((await ring.poll(5)) === false);
   * ```
   */
  poll(timeout: number, eof?: () => boolean, eofMs?: number, unref?: boolean): Promise<boolean> {
    return this.#reader.poll(timeout, eof, eofMs, unref);
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
}
