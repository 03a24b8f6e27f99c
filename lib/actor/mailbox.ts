/**
 * {@link Mailbox}: a channel in a block of the shared heap that any worker may hold. `send`
 * writes into a {@link Ring} (a few µs, no `postMessage`); `receive` is Erlang's selective
 * receive: the first message `match` accepts is taken, the others stay queued in order.
 *
 * @module
 */

import { Attaching } from "../core/attach.ts";
import { encodeView } from "../core/reduction.ts";
import {
  ACQUIRED,
  deadlineOf,
  LIVENESS_SLICE_MS,
  mutexLocked,
  mutexOwner,
  mutexParkHeld,
  mutexRelease,
  mutexResume,
  mutexTry,
  mutexWaits,
  OWNER_DIED,
  remainingMs,
  runAsync,
  runSync,
  type Sleep,
  TIMED_OUT,
  type WaitResult,
  type Waits,
} from "../core/atomics.ts";
import { adopt, alloc, DEAD_STEP_GRACE_MS, heap, release, retain } from "../core/heap.ts";
import { EOF, type RecvOptions, TIMEOUT } from "../core/ring.ts";
import { optionsOf } from "../core/args.ts";
import { Full, TimeoutError, ValueError } from "../core/errors.ts";
import { loads, registerHandle } from "../core/reduction.ts";
import { registerObject } from "../core/observe.ts";
import {
  Box,
  COUNT,
  decode,
  ENTRY,
  freeBox,
  KIND_I,
  PLAIN,
  PUT_WAITERS,
  RLOCK,
  SAVE_COUNT,
  SAVE_HEAD,
  SAVE_SEQ,
  SAVE_TAIL,
} from "./block.ts";

/** Options of `new Mailbox()`. */
export interface MailboxOptions {
  /** At most this many messages queued; `send` then waits (backpressure). 0: unbounded. */
  maxsize?: number;
  /** Shown in `snapshot()`; default: the creation site. */
  name?: string;
}

/** Options of {@link Mailbox.receive}. */
export interface MailboxReceiveOptions<T> {
  /** Milliseconds to wait; throws `TimeoutError` after. 0 takes only what is there already. */
  timeout?: number;
  /** Selective receive: take the first message for which this is true; the others stay. */
  match?: (msg: T) => boolean;
  /** Aborts the wait (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** Options of {@link Mailbox.send}. */
export interface MailboxSendOptions {
  /** For a bounded mailbox: milliseconds to wait for room; throws `Full` after. */
  timeout?: number;
  /** Aborts the wait for room. */
  signal?: AbortSignal;
}

/** The block a Mailbox being rebuilt attaches to (see core/attach.ts). */
const attaching = new Attaching();
/** How a long message is read: what is there, durably (see `RecvOptions.durable`). */
const LONG: RecvOptions = { timeout: 0, durable: true };
let boxOfMailbox: (m: Mailbox<unknown>) => Box;

/**
 * A typed channel in shared memory that any worker may hold: pass it in `args` or inside any
 * message, and `send`/`receive` work there on the same mailbox. `receive` is selective, as in
 * Erlang: with `match`, the first queued message it accepts is taken and the others stay
 * queued, in order, for later receives (in this or any other worker).
 *
 * @example
 * ```ts
 * import { Mailbox } from "jsr:@denomp/multiprocessing";
 * const mb = new Mailbox<{ kind: string; n: number }>();
 * await mb.send({ kind: "low", n: 1 });
 * await mb.send({ kind: "high", n: 2 });
 * const urgent = await mb.receive({ match: (m) => m.kind === "high" });
 * console.assert(urgent.n === 2);
 * console.assert((await mb.receive()).n === 1); // the skipped message kept its place
 * ```
 */
export class Mailbox<T = unknown> {
  #box: Box;

  /** Creates a mailbox; `maxsize` bounds it (`send` then waits for room). */
  constructor(options?: MailboxOptions) {
    options = optionsOf(options, "new Mailbox", "new Mailbox({ maxsize: 100 })");
    const off = attaching.take();
    if (off !== undefined) {
      this.#box = new Box(off);
    } else {
      const max = options.maxsize ?? 0;
      if (!Number.isInteger(max) || max < 0) {
        throw new ValueError(`maxsize must be a non-negative integer: current value is ${max}`);
      }
      this.#box = new Box(Box.create(PLAIN, Math.min(max, 0x7fffffff)));
      registerObject("Mailbox", this.#box.off, options.name);
    }
    adopt(this, this.#box.off, freeBox);
  }

  static {
    boxOfMailbox = (m) => m.#box;
  }

  /** The bound given at creation (0: unbounded). */
  get maxsize(): number {
    return this.#box.maxsize;
  }

  /**
   * Messages queued and not yet received (including those a selective receive skipped).
   *
   * @example
   * ```ts
   * import { Mailbox } from "jsr:@denomp/multiprocessing";
   * const mb = new Mailbox<number>();
   * await mb.send(1);
   * console.assert(mb.size() === 1);
   * ```
   */
  size(): number {
    return Math.max(0, Atomics.load(this.#box.i32, COUNT));
  }

  /**
   * Queues `msg`. On a bounded mailbox that is full, waits for room (throws `Full` after
   * `timeout` milliseconds). Resolves once the message is queued (in order; a worker delivers what it
   * queued before it ends).
   *
   * @example
   * ```ts
   * import { Mailbox } from "jsr:@denomp/multiprocessing";
   * const mb = new Mailbox<string>({ maxsize: 1 });
   * await mb.send("a");
   * await mb.send("b", { timeout: 10 }).catch((e) => console.assert(e.name === "Full"));
   * ```
   */
  async send(msg: T, options?: MailboxSendOptions): Promise<void> {
    options = optionsOf(options, "Mailbox.send", "send(msg, { timeout: 1000 })");
    if (!this.#reserve()) {
      await runAsync(this.#roomWaits(deadlineOf(options.timeout), options.signal));
    }
    const bytes = this.#encodeReserved(msg);
    // Not awaited: a message larger than the ring would wait for a reader to stream it out.
    // Like Python's Queue.put, a send never waits for room in the channel, only for the bound;
    // this process's outbox keeps the order and is flushed before the worker ends.
    void this.#box.ring.post(bytes);
  }

  /**
   * The blocking twin of {@link Mailbox.send}, for CPU-bound code in a worker.
   *
   * @example
   * ```ts
   * import { Mailbox } from "jsr:@denomp/multiprocessing";
   * const mb = new Mailbox<number>();
   * mb.sendSync(7);
   * console.assert(mb.receiveSync() === 7);
   * ```
   */
  sendSync(msg: T, options?: { timeout?: number }): void {
    options = optionsOf(options, "Mailbox.sendSync", "sendSync(msg, { timeout: 1000 })");
    if (!this.#reserve()) runSync(this.#roomWaits(deadlineOf(options.timeout)));
    this.#box.ring.sendSync(this.#encodeReserved(msg));
  }

  /**
   * Waits until a place in a bounded mailbox is reserved (`Full` at the deadline): one
   * algorithm for `send` and `sendSync` (see _atomics). The signal is checked every slice.
   */
  *#roomWaits(deadline: number, signal?: AbortSignal): Waits<void> {
    const box = this.#box;
    Atomics.add(box.i32, PUT_WAITERS, 1);
    try {
      for (;;) {
        signal?.throwIfAborted();
        const left = remainingMs(deadline);
        if (left <= 0) throw new Full("mailbox is full");
        const c = Atomics.load(box.i32, COUNT);
        if (c < box.maxsize) {
          if (this.#reserve()) return;
          continue;
        }
        yield { i32: box.i32, index: COUNT, value: c, ms: Math.min(left, LIVENESS_SLICE_MS) };
      }
    } finally {
      Atomics.sub(box.i32, PUT_WAITERS, 1);
    }
  }

  /** Encodes a message whose place is reserved; gives the place back if it cannot be sent. */
  #encodeReserved(msg: T): Uint8Array {
    try {
      return encodeView(msg, "message");
    } catch (e) {
      this.#taken();
      throw e;
    }
  }

  #reserve(): boolean {
    const i32 = this.#box.i32, max = this.#box.maxsize;
    if (max <= 0) {
      Atomics.add(i32, COUNT, 1);
      return true;
    }
    for (;;) {
      const c = Atomics.load(i32, COUNT);
      if (c >= max) return false;
      if (Atomics.compareExchange(i32, COUNT, c, c + 1) === c) return true;
    }
  }

  #taken(): void {
    const i32 = this.#box.i32;
    Atomics.sub(i32, COUNT, 1);
    if (this.#box.maxsize > 0 && Atomics.load(i32, PUT_WAITERS)) Atomics.notify(i32, COUNT);
  }

  /**
   * Receives the first queued message (with `match`: the first one it accepts; the others
   * keep their places). Throws `TimeoutError` after `timeout` milliseconds.
   *
   * @example
   * ```ts
   * import { Mailbox } from "jsr:@denomp/multiprocessing";
   * const mb = new Mailbox<number>();
   * for (const n of [1, 2, 3, 4]) await mb.send(n);
   * console.assert((await mb.receive({ match: (n) => n % 2 === 0 })) === 2);
   * console.assert((await mb.receive({ match: (n) => n % 2 === 0 })) === 4);
   * console.assert((await mb.receive()) === 1 && (await mb.receive()) === 3);
   * ```
   */
  receive<U extends T>(
    options: MailboxReceiveOptions<T> & { match: (msg: T) => msg is U },
  ): Promise<U>;
  /** Receives the first queued message (with `match`: the first one it accepts). */
  receive(options?: MailboxReceiveOptions<T>): Promise<T>;
  async receive(options?: MailboxReceiveOptions<T>): Promise<T> {
    options = optionsOf(options, "Mailbox.receive", "receive({ timeout: 1000 })");
    const v = this.#takeFirst(options.match);
    if (v !== TIMEOUT) return this.#got(v);
    const deadline = deadlineOf(options.timeout);
    options.signal?.throwIfAborted();
    return await runAsync(this.#receiveWaits(options, deadline, false), options.signal);
  }

  /**
   * The blocking twin of {@link Mailbox.receive}, for CPU-bound code in a worker.
   *
   * @example
   * ```ts
   * import { Mailbox } from "jsr:@denomp/multiprocessing";
   * const mb = new Mailbox<string>();
   * mb.sendSync("x");
   * console.assert(mb.receiveSync({ timeout: 0 }) === "x");
   * ```
   */
  receiveSync(options?: { timeout?: number; match?: (msg: T) => boolean }): T {
    options = optionsOf(options, "Mailbox.receiveSync", "receiveSync({ timeout: 1000 })");
    const deadline = deadlineOf(options.timeout);
    const v = this.#takeFirst(options.match);
    if (v !== TIMEOUT) return this.#got(v);
    if (mutexOwner(this.#box.i32, RLOCK) === heap().slot) {
      // An async receive of this process holds the lock across an await: blocking the thread
      // here would wait for it forever.
      throw new ValueError(
        "receiveSync() cannot run while this process awaits a receive() on the same mailbox",
      );
    }
    return runSync(this.#receiveWaits(options, deadline, true) as Waits<T>);
  }

  /**
   * The fast path of both receives: with no `match` and nothing ever skipped here, the ring's
   * first message is the oldest, taken without the receive lock (`TIMEOUT` when there is none,
   * or when the slow path must decide).
   */
  #takeFirst(match: ((msg: T) => boolean) | undefined): unknown {
    const h = this.#box.i32;
    if (match || Atomics.load(h, SAVE_COUNT) !== 0 || mutexLocked(h, RLOCK)) return TIMEOUT;
    return this.#box.ring.tryRecv(decode);
  }

  /**
   * Selective receive, one algorithm for `receive` and `receiveSync` (see _atomics): take the
   * receive lock, look through the saved messages, then through the ring (saving what `match`
   * refuses), and wait for a new message if none was the one. The lock is waited for in
   * `Sleep`s either driver performs (an abort wakes the async one); the ring's own waits — a
   * long message read whole, the poll for a new one — run inline when `blocking`, else as
   * promises the async driver awaits.
   *
   * A receiver terminated while it holds the lock runs on to its next fence (Deno stops it only
   * at an await) and lets go then: the lock is taken over from it only while it is parked (in
   * the middle of reading a long message) or once it has been seen dead for 2 s (a `match` that
   * never returns). Taken over at once, as before, the next receiver ran beside it, both
   * scanning and saving [mailbox_lock_test checks the wait].
   */
  *#receiveWaits(
    o: MailboxReceiveOptions<T>,
    deadline: number,
    blocking: boolean,
  ): Generator<Sleep | Promise<unknown>, T, WaitResult> {
    const box = this.#box, h = box.i32, ring = box.ring, match = o.match, signal = o.signal;
    const me = heap().slot;
    const st = { seen: 0 }, read: { v: unknown } = { v: undefined };
    for (;;) {
      const r = mutexTry(h, RLOCK)
        ? ACQUIRED
        : yield* mutexWaits(h, RLOCK, me, deadline, DEAD_STEP_GRACE_MS);
      if (r === TIMED_OUT) throw this.#timedOut(o.timeout);
      let seq: number;
      try {
        if (r === OWNER_DIED) this.#repair();
        const found = this.#scanSaved(match, st);
        if (found) return this.#got(found.v);
        for (;;) {
          let v = ring.tryRecv(decode);
          if (v === TIMEOUT) {
            if (ring.empty()) break;
            // A long message: read it whole, durably (what a receiver that dies here took out
            // of the ring is finished by the next one). Parked meanwhile: a receiver that dies
            // here is taken over at once.
            mutexParkHeld(h, RLOCK);
            try {
              if (blocking) v = ring.recvSync(decode, LONG);
              else {
                yield ring.recv(decode, LONG).then((x) => (read.v = x));
                v = read.v;
              }
            } finally {
              mutexResume(h, RLOCK);
            }
            if (v === TIMEOUT || v === EOF) break;
          }
          if (this.#accept(match, v, st)) return this.#got(v);
        }
        seq = Atomics.load(h, SAVE_SEQ);
      } finally {
        mutexRelease(h, RLOCK, me); // not if taken over: a zombie must not free its new owner's
      }
      const left = remainingMs(deadline);
      if (left <= 0) throw this.#timedOut(o.timeout);
      // Wake on a new message, or on another receiver saving one we may want.
      const saved = () => Atomics.load(h, SAVE_SEQ) !== seq;
      if (blocking) ring.pollSync(left, saved, LIVENESS_SLICE_MS);
      else {
        // A promise is not aborted by the driver: with a signal, poll in slices and check it.
        yield ring.poll(
          signal ? Math.min(left, LIVENESS_SLICE_MS) : left,
          saved,
          LIVENESS_SLICE_MS,
        );
        signal?.throwIfAborted();
      }
    }
  }

  #timedOut(timeout?: number): TimeoutError {
    return new TimeoutError(`no matching message arrived within ${timeout} ms`);
  }

  #got(v: unknown): T {
    this.#taken();
    return v as T;
  }

  /** A message just taken out of the ring: true if it is the one; else it joins the save list. */
  #accept(match: ((m: T) => boolean) | undefined, v: unknown, st: { seen: number }): boolean {
    let ok: boolean;
    try {
      ok = !match || match(v as T);
    } catch (err) {
      this.#save(v);
      throw err;
    }
    if (!ok) st.seen = this.#save(v);
    return ok;
  }

  /**
   * Appends `v` to the save list (receive lock held) and returns its sequence number. The value
   * is encoded afresh: decoding it adopted the references of the handles inside it, and the
   * saved bytes need their own.
   */
  #save(v: unknown, replacing = 0, prev = 0): number {
    const box = this.#box, h = box.i32;
    const bytes = encodeView(v, "message");
    const e = alloc(ENTRY + bytes.length), E = e >> 2;
    const hp = heap();
    hp.u8.set(bytes, e + ENTRY);
    hp.i32[E + 2] = bytes.length;
    if (replacing) {
      // Same place, same sequence number, new bytes.
      const R = replacing >> 2;
      hp.i32[E + 1] = hp.i32[R + 1];
      hp.i32[E] = hp.i32[R];
      if (prev) Atomics.store(hp.i32, prev >> 2, e);
      else Atomics.store(h, SAVE_HEAD, e);
      if (Atomics.load(h, SAVE_TAIL) === replacing) Atomics.store(h, SAVE_TAIL, e);
      release(replacing);
      return hp.i32[E + 1];
    }
    const seq = Atomics.add(h, SAVE_SEQ, 1) + 1;
    hp.i32[E + 1] = seq;
    const tail = Atomics.load(h, SAVE_TAIL);
    if (tail) Atomics.store(hp.i32, tail >> 2, e);
    else Atomics.store(h, SAVE_HEAD, e);
    Atomics.store(h, SAVE_TAIL, e);
    Atomics.add(h, SAVE_COUNT, 1);
    box.ring.wakeReaders(); // a receiver elsewhere may be waiting for exactly this one
    return seq;
  }

  /** Looks through the saved messages this receive has not yet refused (receive lock held). */
  #scanSaved(
    match: ((m: T) => boolean) | undefined,
    st: { seen: number },
  ): { v: unknown } | null {
    const h = this.#box.i32;
    if (Atomics.load(h, SAVE_COUNT) === 0) return null;
    const hp = heap();
    let prev = 0;
    for (let e = Atomics.load(h, SAVE_HEAD); e;) {
      const E = e >> 2, next = hp.i32[E], seq = hp.i32[E + 1];
      if (seq > st.seen) {
        const v = loads(hp.u8.subarray(e + ENTRY, e + ENTRY + hp.i32[E + 2]));
        let ok: boolean;
        try {
          ok = !match || match(v as T);
        } catch (err) {
          this.#save(v, e, prev);
          throw err;
        }
        if (ok) {
          if (prev) Atomics.store(hp.i32, prev >> 2, next);
          else Atomics.store(h, SAVE_HEAD, next);
          if (Atomics.load(h, SAVE_TAIL) === e) Atomics.store(h, SAVE_TAIL, prev);
          Atomics.sub(h, SAVE_COUNT, 1);
          release(e);
          return { v };
        }
        st.seen = seq;
        e = (this.#save(v, e, prev), prev ? hp.i32[prev >> 2] : Atomics.load(h, SAVE_HEAD));
      }
      prev = e;
      e = next;
    }
    return null;
  }

  /** The previous holder of the receive lock died: make the save list consistent again. */
  #repair(): void {
    const h = this.#box.i32, i32 = heap().i32;
    let n = 0, last = 0;
    for (let e = Atomics.load(h, SAVE_HEAD); e && n < 1 << 24; e = i32[e >> 2]) (last = e), n++;
    Atomics.store(h, SAVE_TAIL, last);
    Atomics.store(h, SAVE_COUNT, n);
  }

  /** A short description. */
  toString(): string {
    return `<Mailbox at ${this.#box.off} size=${this.size()}>`;
  }
}

registerHandle<Mailbox<unknown>, number>({
  name: "Mailbox",
  module: import.meta.url,
  cls: Mailbox,
  reduce(m) {
    const off = boxOfMailbox(m).off;
    retain(off); // the in-flight reference; the rebuilt handle adopts it
    return off;
  },
  discard: (off) => release(off), // the message was not sent: nobody will adopt it
  rebuild(off) {
    if (Atomics.load(heap().i32, (off >> 2) + KIND_I) !== PLAIN) {
      throw new Error(`denomp: heap offset ${off} holds no Mailbox`);
    }
    return attaching.run(off, () => new Mailbox());
  },
});
