/**
 * Actors: typed mailboxes, actors in their own workers, monitors and links (Erlang/OTP's
 * processes and `gen_server`, Akka typed's `ActorRef`).
 *
 * - {@link Mailbox}: a channel in a block of the shared heap that any worker may hold. `send`
 *   writes into a {@link Ring} (a few µs, no `postMessage`); `receive` is Erlang's selective
 *   receive: the first message `match` accepts is taken, the others stay queued in order.
 * - {@link Actor} / {@link spawn} / {@link ActorRef}: an actor is a {@link Process} whose target
 *   is {@link actorMain}; it imports the actor class's module, builds the instance and handles
 *   the messages of its mailbox one at a time, in arrival order. `ref.call.method(...)` is typed
 *   from the class; `tell`/`ask` carry raw messages to `receive(msg)`.
 * - {@link monitor} resolves with the reason an actor stopped; {@link link} ties two actors'
 *   lives together (an abnormal exit stops the other, unless it traps exits).
 *
 * Protocol. An actor's mailbox block holds, besides the ring, its state (starting, running,
 * stopping, stopped), its worker's process slot and, once stopped, its encoded exit reason.
 * Whoever sees the actor stop reads the reason there, in any worker: the actor writes it itself
 * when it stops or crashes; when its worker is killed, the process that spawned it writes
 * `"killed"` (or the exit code). Callers get replies through one reply ring per process, read by
 * a dispatcher that runs only while calls are pending; a per-process watcher wakes on the heap's
 * death counter (every process death and every actor stop bumps it) to fail the calls, monitors
 * and links of actors that stopped, so no call to a dead actor ever hangs.
 *
 * @module
 */

import {
  deadlineOf,
  keepAlive,
  LIVENESS_SLICE_MS,
  mutexAcquire,
  mutexAcquireSync,
  mutexLocked,
  mutexOwner,
  mutexRelease,
  OWNER_DIED,
  remainingMs,
  runAsync,
  runSync,
  TIMED_OUT,
  waitAsync,
  type Waits,
} from "../core/atomics.ts";
import {
  adopt,
  alloc,
  DEATH_EPOCH_INDEX,
  heap,
  isAlive,
  isTerminatedError,
  MAIN_SLOT,
  nextId,
  parentSlot,
  release,
  retain,
} from "../core/heap.ts";
import { addRoot, removeRoot, shutdownRoots } from "../core/lifecycle.ts";
import { EOF, flushAll, Ring, TIMEOUT } from "../core/ring.ts";
import { optionsOf } from "../core/args.ts";
import { sandbox } from "../core/spawn.ts";
import { callerModule, resolveTarget } from "../core/target.ts";
import {
  Full,
  ProcessError,
  SerializationError,
  TimeoutError,
  ValueError,
} from "../core/errors.ts";
import { exit, Process } from "../process/process.ts";
import { Encoder, loads, registerHandle } from "../core/reduction.ts";
import { forgetActor } from "./refmap.ts";
import { forgetObject, registerObject } from "../core/observe.ts";
import { inspectors } from "../core/waitfor.ts";
import { register } from "./registry.ts";
import { actorTimer, cancelOwnedTimers, type TimerRef } from "./timers.ts";

// ---------------------------------------------------------------------------------------------
// The mailbox block (Int32 words from offset / 4). The sender's and receiver's hot words sit on
// separate cache lines from each other and from the ring's own header.

const MAGIC_I = 0, KIND_I = 1, MAXSIZE_I = 2;
const COUNT = 16, PUT_WAITERS = 17;
// Selective receive: the receive lock and the save list (messages taken out of the ring that a
// `match` refused, oldest first). Each entry is its own heap block: [next, seq, length, -, bytes].
const RLOCK = 32, SAVE_HEAD = 33, SAVE_TAIL = 34, SAVE_COUNT = 35, SAVE_SEQ = 36;
// Actors only. SUPERVISED: 1 while a supervisor watches the actor (it reports the crashes).
const STATE = 48, SLOT = 49, REASON = 50, SUPERVISED = 51;
const HEADER = 256;
const MAGIC = 0x6d626f78; // "mbox"
const PLAIN = 1, ACTOR = 2;
/** A mailbox block: header and ring fill a 128 KiB size class exactly. */
const BLOCK = (128 << 10) - 16;
const ENTRY = 16;

// A new block is zeroed: state 0 is "starting".
const RUNNING = 1, STOPPING = 2, STOPPED = 3;
/** How long a watcher waits for the spawner to record why a killed actor's worker ended. */
const REASON_GRACE_MS = 250;

/**
 * Why an actor stopped. By convention (Erlang's): `"normal"` (it was stopped, or chose to stop),
 * `"shutdown"` (its supervisor or the program shut it down), `"killed"` (its worker was
 * terminated), or the `Error` it crashed with. Any other string is a reason given to `stop()`.
 */
export type ExitReason = string | Error;

/**
 * True for the reasons a `transient` child is not restarted for: `"normal"` and `"shutdown"`.
 *
 * @example
 * ```ts
 * import { isNormalExit } from "jsr:@denomp/multiprocessing";
 * console.assert(isNormalExit("shutdown") && !isNormalExit(new Error("boom")));
 * ```
 */
export function isNormalExit(reason: ExitReason): boolean {
  return reason === "normal" || reason === "shutdown";
}

function describe(reason: ExitReason): string {
  return typeof reason === "string" ? reason : `${reason.name}: ${reason.message}`;
}

/**
 * A call, ask or link whose actor stopped (or was stopped already) rejects with this error;
 * `reason` is why it stopped. A call whose own handler threw rejects with that error instead.
 *
 * @example
 * ```ts ignore
 * import { ActorExited, spawn } from "jsr:@denomp/multiprocessing";
 * import { Counter } from "./counter.ts";
 * const ref = await spawn(Counter);
 * await ref.stop();
 * try {
 *   await ref.call.get();
 * } catch (e) {
 *   console.assert(e instanceof ActorExited && e.reason === "normal");
 * }
 * ```
 */
export class ActorExited extends Error {
  /** Why the actor stopped. */
  readonly reason: ExitReason;
  /** The actor's name. */
  readonly actor: string;
  /** Creates the error for actor `actor` that stopped for `reason`. */
  constructor(actor: string, reason: ExitReason, message?: string) {
    super(message ?? `actor ${actor} exited: ${describe(reason)}`, {
      cause: reason instanceof Error ? reason : undefined,
    });
    Object.defineProperty(this, "name", {
      value: "ActorExited",
      writable: true,
      configurable: true,
    });
    this.actor = actor;
    this.reason = reason;
  }
}

/** A view of one mailbox block: header words and ring. Any number may refer to one block. */
class Box {
  readonly off: number;
  readonly i32: Int32Array;
  readonly ring: Ring;
  readonly kind: number;
  readonly maxsize: number;
  /** For `post`: give up on a message once nobody will ever read it (a stopped actor). */
  readonly postOpts: { broken: () => boolean } | undefined;

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

  static create(kind: number, maxsize: number): number {
    const off = alloc(BLOCK);
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
function freeBox(off: number): void {
  forgetObject(off);
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
// Encoding. One encoder per process: `encode` returns a view that `Ring.post` copies at once
// (into the ring, or into the outbox), so the view is never kept past the call.

const enc = new Encoder();
const decode = (b: Uint8Array): unknown => loads(b);

function encodeAt(value: unknown[], at: number, root: string): Uint8Array {
  try {
    return enc.encode(value, "env");
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
// Mailbox

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

let attaching = 0;
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
    if (attaching) {
      this.#box = new Box(attaching);
      attaching = 0;
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
      return enc.encode(msg, "message");
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
    const box = this.#box, h = box.i32, ring = box.ring, match = options.match;
    // Fast path: nothing was ever skipped here, so the ring's first message is the oldest.
    if (!match && Atomics.load(h, SAVE_COUNT) === 0 && !mutexLocked(h, RLOCK)) {
      const v = ring.tryRecv(decode);
      if (v !== TIMEOUT) return this.#got(v);
    }
    const deadline = deadlineOf(options.timeout), signal = options.signal;
    const st = { seen: 0 };
    for (;;) {
      signal?.throwIfAborted();
      const r = await mutexAcquire(
        h,
        RLOCK,
        signal ? Math.min(remainingMs(deadline), LIVENESS_SLICE_MS) : remainingMs(deadline),
      );
      if (r === TIMED_OUT) {
        if (remainingMs(deadline) <= 0) throw this.#timedOut(options.timeout);
        continue;
      }
      let seq: number;
      try {
        if (r === OWNER_DIED) this.#repair();
        const found = this.#scanSaved(match, st);
        if (found) return this.#got(found.v);
        for (;;) {
          let v = ring.tryRecv(decode);
          if (v === TIMEOUT) {
            if (ring.empty()) break;
            v = await ring.recv(decode, { timeout: 0 }); // a long message: read it whole
            if (v === TIMEOUT || v === EOF) break;
          }
          if (this.#accept(match, v, st)) return this.#got(v);
        }
        seq = Atomics.load(h, SAVE_SEQ);
      } finally {
        mutexRelease(h, RLOCK);
      }
      const left = remainingMs(deadline);
      if (left <= 0) throw this.#timedOut(options.timeout);
      // Wake on a new message, or on another receiver saving one we may want.
      await ring.poll(
        signal ? Math.min(left, LIVENESS_SLICE_MS) : left,
        () => Atomics.load(h, SAVE_SEQ) !== seq,
        LIVENESS_SLICE_MS,
      );
    }
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
    const box = this.#box, h = box.i32, ring = box.ring, match = options.match;
    const deadline = deadlineOf(options.timeout);
    const st = { seen: 0 };
    if (mutexOwner(h, RLOCK) === heap().slot) {
      // An async receive of this process holds the lock across an await: blocking the thread
      // here would wait for it forever.
      throw new ValueError(
        "receiveSync() cannot run while this process awaits a receive() on the same mailbox",
      );
    }
    for (;;) {
      const r = mutexAcquireSync(h, RLOCK, remainingMs(deadline));
      if (r === TIMED_OUT) throw this.#timedOut(options.timeout);
      let seq: number;
      try {
        if (r === OWNER_DIED) this.#repair();
        const found = this.#scanSaved(match, st);
        if (found) return this.#got(found.v);
        for (;;) {
          const v = ring.recvSync(decode, { timeout: 0 });
          if (v === TIMEOUT || v === EOF) break;
          if (this.#accept(match, v, st)) return this.#got(v);
        }
        seq = Atomics.load(h, SAVE_SEQ);
      } finally {
        mutexRelease(h, RLOCK);
      }
      const left = remainingMs(deadline);
      if (left <= 0) throw this.#timedOut(options.timeout);
      ring.pollSync(left, () => Atomics.load(h, SAVE_SEQ) !== seq, LIVENESS_SLICE_MS);
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
    const bytes = enc.encode(v, "message");
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
    attaching = off;
    try {
      return new Mailbox();
    } finally {
      attaching = 0;
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Exit reasons, in the actor's block.

function readReason(box: Box): ExitReason {
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

function bumpDeaths(): void {
  const i32 = heap().i32;
  Atomics.add(i32, DEATH_EPOCH_INDEX, 1);
  Atomics.notify(i32, DEATH_EPOCH_INDEX);
}

/** Records why the actor stopped (first writer wins) and marks it stopped, waking watchers. */
function setStopped(box: Box, reason: ExitReason): void {
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

// ---------------------------------------------------------------------------------------------
// The watcher: one loop per process that wakes whenever a process dies or an actor stops (the
// heap's death counter), and tells the listeners of each watched actor that stopped why.

type Listener = (reason: ExitReason) => void;

interface Watch {
  box: Box;
  listeners: Set<Listener>;
  /** Set in the process that spawned the actor: it records the reason of a killed worker. */
  local?: { process: Process; name: string };
  deadSince?: number;
}

/** Watched actors, by block offset. */
const watches = new Map<number, Watch>();
/** Watched plain processes (for supervisors of `Process` children). */
const procWatches = new Map<Process, Set<Listener>>();
/**
 * Blocks whose actor stopped while its worker still runs (flushing, exit hooks): the reference
 * the worker holds is dropped once it has really ended.
 */
const workerRefs = new Map<number, number>();
let watching = false;

/** The exit reason of a process from its exit code. */
function reasonOfCode(code: number | null, what: string): ExitReason {
  return code === -9 || code === -15
    ? "killed"
    : code === 0 || code === null
    ? "normal"
    : new ProcessError(`${what} exited with code ${code}`);
}

/** Why `w`'s actor stopped, or undefined while it runs. */
function stopReason(w: Watch): ExitReason | undefined {
  const box = w.box;
  if (Atomics.load(box.i32, STATE) === STOPPED) return readReason(box);
  const slot = Atomics.load(box.i32, SLOT);
  if (slot === 0 || isAlive(slot)) return undefined;
  if (w.local) {
    // Its worker ended without saying why: we started it, so we know how it ended.
    setStopped(box, reasonOfCode(w.local.process.exitCode, `actor ${w.local.name}`));
    return readReason(box);
  }
  // The spawner writes the reason just after the worker's death; give it a moment.
  if (!isAlive(parentSlot(slot))) return "killed";
  w.deadSince ??= performance.now();
  return performance.now() - w.deadSince > REASON_GRACE_MS ? "killed" : undefined;
}

function fire(listeners: Iterable<Listener>, reason: ExitReason): void {
  for (const fn of listeners) {
    try {
      fn(reason);
    } catch (err) {
      console.error("denomp: an exit listener failed:", err);
    }
  }
}

/** Checks every watch; returns how long the loop may sleep. */
function scanWatches(): number {
  let sleep = 1000;
  for (const [off, w] of watches) {
    const reason = stopReason(w);
    if (reason === undefined) {
      if (w.deadSince !== undefined) sleep = Math.min(sleep, 25);
      continue;
    }
    watches.delete(off);
    if (w.local) workerRefs.set(off, Atomics.load(w.box.i32, SLOT));
    fire(w.listeners, reason);
    release(off, freeBox); // the watch's own reference
  }
  for (const [p, listeners] of procWatches) {
    if (p.exitCode === null) continue;
    procWatches.delete(p);
    fire(listeners, reasonOfCode(p.exitCode, `process ${p.name}`));
  }
  for (const [off, slot] of workerRefs) {
    if (isAlive(slot)) continue;
    workerRefs.delete(off);
    release(off, freeBox); // the reference its worker held (see spawn)
  }
  return sleep;
}

function watchedCount(): number {
  return watches.size + procWatches.size + workerRefs.size;
}

async function watchLoop(): Promise<void> {
  if (watching) return;
  watching = true;
  try {
    const i32 = heap().i32;
    while (watchedCount()) {
      const epoch = Atomics.load(i32, DEATH_EPOCH_INDEX);
      const ms = scanWatches();
      if (!watchedCount()) break;
      // Not `waitAsync` from _atomics: watching must not keep the program alive (a supervisor
      // of daemon actors ends with the program). What the user awaits is kept alive there.
      const r = Atomics.waitAsync(i32, DEATH_EPOCH_INDEX, epoch, ms);
      if (r.async) await r.value;
    }
  } finally {
    watching = false;
  }
}

function kick(): void {
  // Rescan now (what was just added may have stopped already): a spurious wake-up elsewhere
  // costs one scan.
  if (watching) Atomics.notify(heap().i32, DEATH_EPOCH_INDEX);
  else void watchLoop();
}

/** Calls `fn(reason)` once the actor of `box` stops. Returns a function that cancels it. */
function watch(box: Box, fn: Listener, local?: Watch["local"]): () => void {
  let w = watches.get(box.off);
  if (!w) {
    retain(box.off); // the block (and its reason) stay while watched
    w = { box, listeners: new Set() };
    watches.set(box.off, w);
  }
  if (local) w.local = local;
  w.listeners.add(fn);
  kick();
  const entry = w;
  return () => {
    entry.listeners.delete(fn);
    if (!entry.listeners.size && !entry.local && watches.get(box.off) === entry) {
      watches.delete(box.off);
      release(box.off, freeBox);
    }
  };
}

/** Calls `fn(reason)` once process `p` (started) has ended. Returns a function that cancels it. */
function watchProcess(p: Process, fn: Listener): () => void {
  let set = procWatches.get(p);
  if (!set) procWatches.set(p, set = new Set());
  set.add(fn);
  kick();
  return () => {
    set.delete(fn);
    if (!set.size && procWatches.get(p) === set) procWatches.delete(p);
  };
}

// ---------------------------------------------------------------------------------------------
// Calls: one reply ring per process and a dispatcher that reads it while calls are pending.

const CALL = 1, TELL = 2, ASK = 3, STOP = 4, KILL = 5, LINK = 6, UNLINK = 7;
const OK = 0, ERR = 1;
/** Reply ring size: replies are small; a large one streams through. */
const INBOX_BYTES = (64 << 10) - 16;

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  target: number;
  name: string;
  cleanup?: () => void;
}

let inbox: Ring | undefined;
let inboxOff = 0;
const pending = new Map<number, Pending>();
/** Actors that calls are pending on, with the watch that fails those calls if they stop. */
const targets = new Map<number, () => void>();
/** Actors seen stopped: their pending calls fail once the reply ring holds nothing more. */
const deadTargets = new Map<number, ExitReason>();
let dispatching = false;
let wake = new AbortController();
let nextCallId = 0;
const replyRings = new Map<number, Ring>();

function myInbox(): Ring {
  if (!inbox) {
    // Never freed: an actor may still hold this offset to reply to, and a reply written into a
    // block reused for something else would corrupt it. One small block per calling process.
    inboxOff = alloc(INBOX_BYTES);
    Ring.init(inboxOff, INBOX_BYTES);
    inbox = new Ring(inboxOff);
  }
  return inbox;
}

function settle(id: number, status: number, value: unknown): void {
  const p = pending.get(id);
  if (!p) return; // timed out or aborted meanwhile
  pending.delete(id);
  p.cleanup?.();
  if (status === OK) p.resolve(value);
  else p.reject(value);
}

function rejectDead(): void {
  if (!deadTargets.size) return;
  for (const [id, p] of pending) {
    const reason = deadTargets.get(p.target);
    if (reason !== undefined) settle(id, ERR, new ActorExited(p.name, reason));
  }
  deadTargets.clear();
}

async function dispatchLoop(): Promise<void> {
  dispatching = true;
  const ring = myInbox();
  try {
    while (pending.size) {
      let r: unknown;
      try {
        r = await ring.recv(decode, { signal: wake.signal });
      } catch (e) {
        if (!wake.signal.aborted) throw e;
        // Aborted with the ring empty: every reply sent before a target stopped has been read.
        wake = new AbortController();
        rejectDead();
        continue;
      }
      const [id, status, value] = r as [number, number, unknown];
      settle(id, status, value);
    }
  } catch (err) {
    console.error("denomp: the actor reply dispatcher failed:", err);
    for (const id of [...pending.keys()]) settle(id, ERR, err);
  } finally {
    dispatching = false;
    // Nothing is pending: what was learnt about stopped targets concerns no call any more (and
    // a block offset may be reused by a new actor).
    deadTargets.clear();
    if (wake.signal.aborted) wake = new AbortController();
  }
}

function onTargetStopped(off: number): Listener {
  return (reason) => {
    targets.delete(off);
    if (!dispatching) return; // no call pending anywhere
    deadTargets.set(off, reason);
    wake.abort();
  };
}

function request(
  box: Box,
  name: string,
  env: unknown[],
  at: number,
  root: string,
  options: { timeout?: number; signal?: AbortSignal } = {},
): Promise<unknown> {
  if (running?.box.off === box.off) {
    return Promise.reject(
      new ValueError(
        `actor ${name} cannot call itself: it handles one message at a time, so it would wait forever`,
      ),
    );
  }
  if (box.stopped()) {
    const w = watches.get(box.off) ?? { box, listeners: new Set() };
    return Promise.reject(new ActorExited(name, stopReason(w) ?? "killed"));
  }
  let bytes: Uint8Array;
  const id = ++nextCallId;
  try {
    options.signal?.throwIfAborted();
    myInbox();
    env[1] = id;
    env[2] = inboxOff;
    env[3] = heap().slot;
    bytes = encodeAt(env, at, root);
  } catch (e) {
    return Promise.reject(e);
  }
  return new Promise((resolve, reject) => {
    const p: Pending = { resolve, reject, target: box.off, name };
    pending.set(id, p);
    if (!targets.has(box.off)) targets.set(box.off, watch(box, onTargetStopped(box.off)));
    if (options.timeout !== undefined || options.signal) {
      const deadline = deadlineOf(options.timeout);
      const signal = options.signal;
      const give = (err: unknown) => {
        if (!pending.delete(id)) return;
        p.cleanup?.();
        reject(err);
        if (!pending.size) wake.abort(); // let the dispatcher end
      };
      // The late reply finds no pending entry and is dropped by `settle`.
      const what = env[0] === CALL ? `${env[4]}()` : "ask()";
      const timer = deadline === Infinity ? undefined : setTimeout(
        () =>
          give(
            new TimeoutError(`actor ${name} did not reply to ${what} within ${options.timeout} ms`),
          ),
        remainingMs(deadline),
      );
      const onAbort = () => give(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      p.cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
    }
    void box.ring.post(bytes, box.postOpts);
    if (!dispatching) void dispatchLoop();
  });
}

// ---------------------------------------------------------------------------------------------
// Types

/** A method of an actor class as seen through `ref.call`: same arguments, async result. */
export type RemoteMethod<F> = F extends (...args: infer P) => infer R
  ? (...args: P) => Promise<Awaited<R>>
  : never;

/**
 * The public methods of actor class `A` (not those of {@link Actor} itself, nor `receive`),
 * each returning a promise of its result: the type of `ref.call`.
 */
export type ActorMethods<A> = {
  [
    K in keyof A as K extends keyof Actor | "receive" | "constructor" ? never
      : A[K] extends (...args: never[]) => unknown ? K
      : never
  ]: RemoteMethod<A[K]>;
};

/**
 * The message type of an actor's `receive(msg)`: `never` when it has none (so `tell` does not
 * compile), `unknown` for the base `Actor` (a ref of any actor).
 */
export type MessageOf<A> = A extends { receive(msg: infer M): unknown } ? M
  : Actor extends A ? unknown
  : never;

/** What an actor's `receive(msg)` returns, as `ask` resolves with it. */
export type ReplyOf<A> = A extends { receive(msg: never): infer R } ? Awaited<R>
  : Actor extends A ? unknown
  : never;

// ---------------------------------------------------------------------------------------------
// ActorRef

let refAttaching: { box: Box; name: string } | null = null;
let boxOfRef: (r: ActorRef<Actor>) => Box;

/**
 * A reference to a running actor, from {@link spawn}. `call` is typed from the actor's class:
 * each public method becomes an async method that runs in the actor's worker. `tell`/`ask`
 * send raw messages to the actor's `receive(msg)`. A ref can be passed to other actors and
 * workers (in `args`, or inside any message) and works there.
 *
 * @example
 * ```ts ignore
 * // counter.ts
 * import { Actor } from "jsr:@denomp/multiprocessing";
 * export class Counter extends Actor {
 *   count = 0;
 *   inc(n: number) {
 *     return (this.count += n);
 *   }
 * }
 * // main.ts
 * import { spawn } from "jsr:@denomp/multiprocessing";
 * import { Counter } from "./counter.ts";
 * const ref = await spawn(Counter);
 * console.log(await ref.call.inc(2)); // 2
 * await ref.stop();
 * ```
 */
// `out`: a ref of a subclass is a ref of its base class, and `this.self` (typed with the
// polymorphic `this`) is a ref of the actor's own class. TypeScript cannot prove it through the
// key-remapped `ActorMethods`, so the check of the annotation is silenced here (only here).
// @ts-expect-error: TS2636, ActorMethods<A> is covariant in A but not provably so
export class ActorRef<out A extends Actor = Actor> {
  #box: Box;
  #name: string;
  #call?: object;

  /** Refs come from {@link spawn} (or arrive in messages); they cannot be made directly. */
  constructor() {
    if (!refAttaching) throw new ValueError("an ActorRef comes from spawn(), not from new");
    this.#box = refAttaching.box;
    this.#name = refAttaching.name;
    refAttaching = null;
  }

  static {
    boxOfRef = (r) => r.#box;
  }

  /** The actor's name (`name` given to spawn, else `ClassName-N`). */
  get name(): string {
    return this.#name;
  }

  /** The pid of the actor's worker. */
  get pid(): number {
    return Deno.pid + Atomics.load(this.#box.i32, SLOT) - MAIN_SLOT;
  }

  /**
   * The actor's public methods, each as an async function that runs it in the actor and
   * resolves with its result. Rejects with the error the method threw (the actor then stops
   * with it, as a crashed `gen_server` does), or with {@link ActorExited} if the actor stopped.
   */
  get call(): ActorMethods<A> {
    return (this.#call ??= methodsOf(this.#box, this.#name)) as ActorMethods<A>;
  }

  /**
   * `ref.call` with a deadline (`gen_server:call`'s timeout) or an abort signal: a method that
   * has not replied within `timeout` milliseconds rejects with `TimeoutError` naming the actor
   * and the method. The method still runs in the actor; its late reply is dropped.
   *
   * @example
   * ```ts ignore
   * import { TimeoutError } from "jsr:@denomp/multiprocessing";
   * try {
   *   await ref.callWith({ timeout: 500 }).slowInc(1);
   * } catch (e) {
   *   console.assert(e instanceof TimeoutError); // "actor counter did not reply to slowInc() ..."
   * }
   * ```
   */
  callWith(options: CallOptions): ActorMethods<A> {
    optionsOf(options, "ActorRef.callWith", "callWith({ timeout: 500 })");
    return methodsOf(this.#box, this.#name, options) as ActorMethods<A>;
  }

  /** True until the actor has stopped. */
  isAlive(): boolean {
    return !this.#box.stopped();
  }

  /**
   * Sends `msg` to the actor's `receive(msg)` and does not wait for it to be handled (Erlang's
   * `!`). A message to a stopped actor is dropped. The promise resolves once the message is in
   * the mailbox: await it now and then for backpressure, or ignore it.
   *
   * @example
   * ```ts ignore
   * await ref.tell({ kind: "add", n: 1 });
   * ```
   */
  tell(msg: MessageOf<A>): Promise<void> {
    const ring = this.#box.ring;
    const r = ring.post(encodeAt([TELL, msg], 1, "message"), this.#box.postOpts);
    return ring.pending() ? r.then(noop) : RESOLVED;
  }

  /**
   * Sends `msg` to the actor's `receive(msg)` and resolves with what it returns. Rejects with
   * `TimeoutError` after `timeout` milliseconds, with {@link ActorExited} if the actor stops first.
   *
   * @example
   * ```ts ignore
   * const total = await ref.ask({ kind: "total" }, { timeout: 1000 });
   * ```
   */
  ask(
    msg: MessageOf<A>,
    options?: { timeout?: number; signal?: AbortSignal },
  ): Promise<ReplyOf<A>> {
    try {
      options = optionsOf(options, "ActorRef.ask", "ask(msg, { timeout: 1000 })");
    } catch (e) {
      return Promise.reject(e);
    }
    return request(this.#box, this.#name, [ASK, 0, 0, 0, msg], 4, "message", options) as Promise<
      ReplyOf<A>
    >;
  }

  /**
   * Stops the actor after the messages already queued (its `onStop(reason)` runs) and resolves
   * with the reason once it has stopped. With `timeout` (milliseconds), an actor that has not stopped in time
   * is killed if this process spawned it (else `TimeoutError`). Called by the actor on itself,
   * it stops after the current message and resolves at once.
   *
   * @example
   * ```ts ignore
   * await ref.stop(); // "normal"
   * ```
   */
  async stop(
    reason: ExitReason = "normal",
    options?: { timeout?: number },
  ): Promise<ExitReason> {
    options = optionsOf(options, "ActorRef.stop", 'stop("normal", { timeout: 5000 })');
    const deadline = deadlineOf(options.timeout); // checked before anything is sent
    const box = this.#box;
    if (box.stopped()) return readReason(box);
    void box.ring.post(encodeAt([STOP, reason], 1, "reason"), box.postOpts);
    if (running?.box.off === box.off) return reason;
    const done = new Promise<ExitReason>((resolve) => watch(box, resolve));
    if (deadline === Infinity) return await keepAlive(done);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((
      r,
    ) => (timer = setTimeout(() => r("late"), remainingMs(deadline))));
    const first = await keepAlive(Promise.race([done, late]));
    clearTimeout(timer);
    if (first !== "late") return first;
    if (!this.kill()) {
      throw new TimeoutError(`actor ${this.#name} did not stop within ${options.timeout} ms`);
    }
    return await keepAlive(done);
  }

  /**
   * Ends the actor at once, without `onStop` (Erlang's `exit(Pid, kill)`): its worker is
   * terminated if this process spawned it; otherwise the actor ends itself as soon as it reads
   * the request (after the message it is handling). Returns false if the actor had stopped.
   *
   * @example
   * ```ts ignore
   * ref.kill();
   * console.log(await monitor(ref)); // "killed"
   * ```
   */
  kill(): boolean {
    const box = this.#box;
    if (box.stopped()) return false;
    const local = watches.get(box.off)?.local;
    if (local) local.process.kill();
    else void box.ring.post(encodeAt([KILL], 0, "kill"), box.postOpts);
    return true;
  }

  /** True when both refs refer to the same actor. */
  equals(other: ActorRef<Actor>): boolean {
    return other instanceof ActorRef && boxOfRef(other).off === this.#box.off;
  }

  /** `await using ref = await spawn(...)`: stops the actor. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** A short description. */
  toString(): string {
    return `<ActorRef ${this.#name} ${this.isAlive() ? "running" : "stopped"}>`;
  }
}

const noop = () => {};
const RESOLVED: Promise<void> = Promise.resolve();

/**
 * Internal (names, groups): the offset of a ref's mailbox block, the actor's identity.
 *
 * @example
 * ```ts ignore
 * if (a.equals(b)) console.assert(actorOffset(a) === actorOffset(b));
 * ```
 */
export function actorOffset(ref: ActorRef<Actor>): number {
  return boxOfRef(ref).off;
}

/** Options of {@link ActorRef.callWith}. */
export interface CallOptions {
  /** Milliseconds to wait for the reply; then `TimeoutError` (the late reply is dropped). */
  timeout?: number;
  /** Aborts the wait for the reply (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** The proxy behind `ref.call` and `ref.callWith(options)`: one function per method name. */
function methodsOf(box: Box, name: string, options?: CallOptions): object {
  const fns = new Map<string, unknown>();
  return new Proxy({}, {
    get(_, method) {
      // `then`: an awaited `ref.call` must not look like a promise.
      if (typeof method !== "string" || method === "then") return undefined;
      let f = fns.get(method);
      if (!f) {
        f = (...args: unknown[]) =>
          request(box, name, [CALL, 0, 0, 0, method, args], 5, `${method}() args`, options);
        fns.set(method, f);
      }
      return f;
    },
  });
}

function makeRef<A extends Actor>(box: Box, name: string, adoptIt: boolean): ActorRef<A> {
  refAttaching = { box, name };
  try {
    const ref = new ActorRef<A>();
    if (adoptIt) adopt(ref, box.off, freeBox);
    return ref;
  } finally {
    refAttaching = null;
  }
}

registerHandle<ActorRef<Actor>, [number, string]>({
  name: "ActorRef",
  module: import.meta.url,
  cls: ActorRef,
  reduce(r) {
    const off = boxOfRef(r).off;
    retain(off);
    return [off, r.name];
  },
  discard: ([off]) => release(off),
  rebuild([off, name]) {
    if (Atomics.load(heap().i32, (off >> 2) + KIND_I) !== ACTOR) {
      throw new Error(`denomp: heap offset ${off} holds no actor`);
    }
    return makeRef(new Box(off), name, true);
  },
});

// ---------------------------------------------------------------------------------------------
// Actor

let constructing: ActorRef<Actor> | undefined;

/**
 * The base class of actors. Subclass it in a module that exports the subclass, and start it
 * with {@link spawn}: the instance lives in its own worker and handles one message at a time,
 * in arrival order, keeping its state between messages. Its public methods are called through
 * `ref.call`; raw messages sent with `tell`/`ask` go to `receive(msg)` if it has one.
 *
 * A method that throws crashes the actor (the caller's promise rejects with the error, the
 * actor stops with it as its reason, a supervisor may restart it): let it crash, as in Erlang.
 *
 * @example
 * ```ts ignore
 * import { Actor } from "jsr:@denomp/multiprocessing";
 * export class Counter extends Actor {
 *   count = 0;
 *   inc(n: number) {
 *     this.count += n;
 *   }
 *   get() {
 *     return this.count;
 *   }
 *   override onStop(reason: string | Error) {
 *     console.log(`counter stopped (${reason}) at ${this.count}`);
 *   }
 * }
 * ```
 */
export abstract class Actor {
  #self: ActorRef<Actor> | undefined = constructing;

  /**
   * When true, an abnormal exit of a linked actor does not stop this one: `onExit(from, reason)`
   * is called instead (Erlang's `trap_exit`). Set it as a field: `override trapExits = true`.
   */
  trapExits = false;

  /** A ref to this actor, to hand to others (only inside an actor started by `spawn`). */
  get self(): ActorRef<this> {
    if (!this.#self) throw new ValueError("this actor was not started with spawn()");
    return this.#self as unknown as ActorRef<this>;
  }

  /** Runs after the constructor, in the actor's worker, before any message; may be async. */
  onStart?(): unknown;

  /**
   * Runs when the actor stops, with the reason: stopped, shut down, a linked actor's exit, or
   * the error a handler crashed with (not when it is killed); may be async.
   */
  onStop?(reason: ExitReason): unknown;

  /** With `trapExits`: a linked actor stopped (for any reason, `"normal"` included). */
  onExit?(from: ActorRef<Actor>, reason: ExitReason): unknown;

  /**
   * Tells `msg` to this actor after `ms` milliseconds (Erlang's `send_after` to `self()`, Akka's
   * `startSingleTimer`). The timer belongs to the actor: it is cancelled when the actor stops.
   * `msg` is typed from the actor's `receive(msg)`.
   *
   * @example
   * ```ts ignore
   * export class Session extends Actor {
   *   override onStart() {
   *     this.sendAfter(30_000, "expire");
   *   }
   *   receive(msg: "expire") {
   *     void this.self.stop("normal");
   *   }
   * }
   * ```
   */
  sendAfter<M>(this: Actor & { receive(msg: M): unknown }, ms: number, msg: NoInfer<M>): TimerRef {
    return actorTimer(this.self as unknown as ActorRef<Actor>, ms, msg, false);
  }

  /**
   * Tells `msg` to this actor every `ms` milliseconds (Akka's `startTimerAtFixedRate`), until
   * the timer is cancelled or the actor stops.
   *
   * @example
   * ```ts ignore
   * export class Heartbeat extends Actor {
   *   beats = 0;
   *   override onStart() {
   *     this.every(1000, "beat");
   *   }
   *   receive(_: "beat") {
   *     this.beats++;
   *   }
   * }
   * ```
   */
  every<M>(this: Actor & { receive(msg: M): unknown }, ms: number, msg: NoInfer<M>): TimerRef {
    return actorTimer(this.self as unknown as ActorRef<Actor>, ms, msg, true);
  }
  /**
   * Switches the handler of this actor's next `tell`/`ask` messages to `handler` (Akka's
   * `Behaviors`/`become`, a `gen_statem` state); `become(null)` goes back to `receive`. The
   * handler runs with `this` as the actor and is typed from `receive(msg)`; what it returns is
   * the reply of an `ask`. It takes effect from the next message.
   *
   * @example
   * ```ts ignore
   * export class Light extends Actor {
   *   receive(msg: "toggle"): string {
   *     this.become(this.on);
   *     return "on";
   *   }
   *   on(_msg: "toggle"): string {
   *     this.become(null);
   *     return "off";
   *   }
   * }
   * ```
   */
  become<M>(
    this: Actor & { receive(msg: M): unknown },
    handler: ((msg: M) => unknown) | null,
  ): void {
    runningAs(this, "become").behavior = handler ?? undefined;
  }

  /**
   * Defers the message being handled (a `tell`, an `ask` or a `call`): it is not answered now,
   * and {@link Actor.unstashAll} hands it back later, before any newer message, in its original
   * order (Akka's `StashBuffer`, `gen_statem`'s `postpone`). A caller waiting on a stashed `ask`
   * or `call` gets its reply when the message is handled again.
   *
   * @example
   * ```ts ignore
   * receive(msg: Msg) {
   *   if (msg.kind !== "unlock") return this.stash(); // not now: after unlocking
   *   this.become(this.open);
   *   this.unstashAll();
   * }
   * ```
   */
  stash(): void {
    const run = runningAs(this, "stash");
    const cur = run.current;
    if (!cur) throw new ValueError("stash() defers the message being handled: there is none");
    (run.stash ??= []).push(cur.env);
    if (cur.to) cur.to.stashed = true; // answered when handled again, not now
    run.current = undefined;
  }

  /**
   * Hands every stashed message back, oldest first, to be handled before the mailbox's next
   * message (by the handler current then). Returns how many.
   *
   * @example
   * ```ts ignore
   * this.become(this.open);
   * this.unstashAll();
   * ```
   */
  unstashAll(): number {
    const run = runningAs(this, "unstashAll");
    const back = run.stash ?? [];
    run.stash = [];
    run.replay = [...back, ...(run.replay ?? [])];
    return back.length;
  }
}

/** A concrete actor class whose constructor takes `P`. */
export type ActorClass<A extends Actor, P extends unknown[]> = new (...args: P) => A;

// ---------------------------------------------------------------------------------------------
// The actor's side: the loop run by its worker.

interface Running {
  box: Box;
  ref: ActorRef<Actor>;
  instance: Actor;
  links: Map<number, { ref: ActorRef<Actor>; unwatch: () => void }>;
  /** Exit signals from linked actors, handled before the next message. */
  signals: { from: ActorRef<Actor>; reason: ExitReason }[];
  wake: AbortController;
  /** Set by `become`: the handler of the next tell/ask messages instead of `receive`. */
  behavior?: (msg: never) => unknown;
  /** The message being handled, for `stash()`. */
  current?: { env: Envelope; to: Reply | null };
  /** Messages deferred by `stash()`, oldest first; `unstashAll()` moves them to `replay`. */
  stash?: Envelope[];
  /** Unstashed messages, handled before the mailbox's next one. */
  replay?: Envelope[];
}

let running: Running | null = null;

/** The running state of `actor`, which must be the actor of this worker, running. */
function runningAs(actor: Actor, fn: string): Running {
  if (running?.instance !== actor) {
    throw new ValueError(`${fn}() works inside a running actor (from onStart or a handler)`);
  }
  return running;
}

/** What `spawn` hands to {@link actorMain}. */
export interface ActorInit {
  /** The actor's mailbox block. */
  off: number;
  /** The module URL and export name of the actor class. */
  target: { module: string; name: string };
  /** Constructor arguments. */
  args: unknown[];
  /** The actor's name. */
  name: string;
}

type Envelope = [number, ...unknown[]];
type Reply = { id: number; inbox: number; slot: number; stashed?: boolean };
/**
 * How handling ended: `kill` skips `onStop`; `zombie` means this worker was terminated while its
 * thread was still running (see _ring "Zombies"): its parent has recorded the kill already, and it
 * stops at once without touching shared state.
 */
type Outcome = undefined | { reason: ExitReason; kill?: boolean; zombie?: boolean };

async function importClass(target: ActorInit["target"]): Promise<new (...a: unknown[]) => Actor> {
  const ns = await import(target.module) as Record<string, unknown>;
  const cls = ns[target.name] ??
    Object.values(ns).find((v) => typeof v === "function" && v.name === target.name);
  if (typeof cls !== "function" || !(cls.prototype instanceof Actor)) {
    throw new ProcessError(
      `'${target.name}' exported by ${target.module} is not a class extending Actor`,
    );
  }
  return cls as new (...a: unknown[]) => Actor;
}

function sendReply(to: Reply, status: number, value: unknown): void {
  let bytes: Uint8Array;
  try {
    // An error being reported arrives even with fields that cannot be sent (the codec leaves
    // them out and says so in its stack); a result that cannot be sent is refused by its path.
    bytes = status === ERR
      ? enc.encode([to.id, status, value], "reply", { reportError: true })
      : encodeAt([to.id, status, value], 2, "result");
  } catch (e) {
    bytes = enc.encode([to.id, ERR, e], "reply");
  }
  let ring = replyRings.get(to.inbox);
  if (!ring) replyRings.set(to.inbox, ring = new Ring(to.inbox));
  void ring.post(bytes, { broken: () => !isAlive(to.slot) });
}

function crash(run: Running, err: unknown, to: Reply | null): Outcome {
  if (isTerminatedError(err)) return { reason: "killed", zombie: true };
  // Stopping from now on, before the caller hears of the crash: whoever learns of it from the
  // reply sees the actor no longer running (a supervisor's `get` returns nothing for it).
  Atomics.store(run.box.i32, STATE, STOPPING);
  if (to) sendReply(to, ERR, err);
  const reason = err instanceof Error ? err : new Error(String(err));
  // A supervised crash is handled: its supervisor reports it (one line, or in full with
  // `verbose`), with the reason recorded here. Printed here too, it would be said twice.
  if (Atomics.load(run.box.i32, SUPERVISED) === 0) {
    const text = reason.stack ?? `${reason.name}: ${reason.message}`;
    console.error(`actor ${run.ref.name} crashed:\n${text}`);
  }
  return { reason };
}

/**
 * True while the actor of `ref` handles messages: false from the moment it starts to stop (a
 * crash, `stop()`, a kill), where `isAlive()` stays true until it has stopped.
 *
 * @example
 * ```ts
 * import { type ActorRef, isRunning } from "./actor.ts";
 * export const usable = (ref: ActorRef): boolean => isRunning(ref);
 * ```
 */
export function isRunning(ref: ActorRef<Actor>): boolean {
  const box = boxOfRef(ref);
  return Atomics.load(box.i32, STATE) === RUNNING && !box.stopped();
}

/**
 * Tells the actor of `ref` whether a supervisor watches it (for `supervisor.ts` and other
 * supervisors): a supervised actor does not print its crashes, its supervisor reports them.
 *
 * @example
 * ```ts
 * import { type ActorRef, markSupervised } from "./actor.ts";
 * export function adoptChild(ref: ActorRef): void {
 *   markSupervised(ref, true); // its crashes are now this supervisor's to report
 * }
 * ```
 */
export function markSupervised(ref: ActorRef<Actor>, supervised: boolean): void {
  Atomics.store(boxOfRef(ref).i32, SUPERVISED, supervised ? 1 : 0);
}

/** Runs a handler; replies to `to` if given. Sync when the handler is. */
function invoke(
  run: Running,
  fn: (...a: unknown[]) => unknown,
  args: unknown[],
  to: Reply | null,
): Outcome | Promise<Outcome> {
  let r: unknown;
  try {
    r = fn.apply(run.instance, args);
  } catch (e) {
    return crash(run, e, to);
  }
  if (
    r !== null && typeof r === "object" && typeof (r as PromiseLike<unknown>).then === "function"
  ) {
    return Promise.resolve(r).then((v) => {
      if (to && !to.stashed) sendReply(to, OK, v);
      return undefined;
    }, (e) => crash(run, e, to));
  }
  if (to && !to.stashed) sendReply(to, OK, r);
  return undefined;
}

const HOOKS = new Set(["constructor", "onStart", "onStop", "onExit", "receive", "self"]);
// The Actor base class's own tools are not remote methods either.
for (const m of ["sendAfter", "every", "become", "stash", "unstashAll"]) HOOKS.add(m);

function handle(run: Running, env: Envelope): Outcome | Promise<Outcome> {
  const inst = run.instance as unknown as Record<string, unknown>;
  switch (env[0]) {
    case TELL:
    case ASK: {
      const to = env[0] === ASK
        ? { id: env[1] as number, inbox: env[2] as number, slot: env[3] as number }
        : null;
      run.current = { env, to };
      const recv = run.behavior ?? inst.receive;
      if (typeof recv !== "function") {
        return crash(run, new ValueError(`actor ${run.ref.name} has no receive(msg) method`), to);
      }
      return invoke(run, recv as (...a: unknown[]) => unknown, [env[env[0] === ASK ? 4 : 1]], to);
    }
    case CALL: {
      const to = { id: env[1] as number, inbox: env[2] as number, slot: env[3] as number };
      run.current = { env, to };
      const method = env[4] as string, fn = inst[method];
      if (typeof fn !== "function" || HOOKS.has(method) || method.startsWith("#")) {
        // A bad method name cannot come from typed code: refuse it without crashing.
        sendReply(to, ERR, new ValueError(`actor ${run.ref.name} has no method '${method}'`));
        return undefined;
      }
      return invoke(run, fn as (...a: unknown[]) => unknown, env[5] as unknown[], to);
    }
    case STOP:
      return { reason: env[1] as ExitReason };
    case KILL:
      return { reason: "killed", kill: true };
    case LINK:
    case UNLINK: {
      const to = { id: env[1] as number, inbox: env[2] as number, slot: env[3] as number };
      if (env[0] === LINK) addLink(run, env[4] as ActorRef<Actor>);
      else removeLink(run, env[4] as ActorRef<Actor>);
      sendReply(to, OK, undefined);
      return undefined;
    }
  }
  return undefined;
}

function addLink(run: Running, peer: ActorRef<Actor>): void {
  const off = boxOfRef(peer).off;
  if (run.links.has(off) || off === run.box.off) return;
  const unwatch = watch(boxOfRef(peer), (reason) => {
    run.links.delete(off);
    run.signals.push({ from: peer, reason });
    run.wake.abort();
  });
  run.links.set(off, { ref: peer, unwatch });
}

function removeLink(run: Running, peer: ActorRef<Actor>): void {
  const off = boxOfRef(peer).off;
  run.links.get(off)?.unwatch();
  run.links.delete(off);
}

/** Exit signals from linked actors: trapped ones become `onExit` calls, others stop us. */
async function handleSignals(run: Running): Promise<Outcome> {
  while (run.signals.length) {
    const { from, reason } = run.signals.shift()!;
    if (run.instance.trapExits) {
      const onExit = run.instance.onExit;
      if (typeof onExit !== "function") continue;
      const out = await invoke(run, onExit as (...a: unknown[]) => unknown, [from, reason], null);
      if (out) return out;
    } else if (reason !== "normal") {
      return { reason };
    }
  }
  return undefined;
}

const macrotask = () => new Promise<void>((r) => setTimeout(r, 0));

/**
 * How long an idle actor blocks its thread in `Atomics.wait` before it falls back to an async
 * wait. A blocked thread is woken by the sender's notify directly; an async wait is woken by a
 * helper thread that then queues a task for the event loop, two scheduling hops instead of one.
 * On a busy machine that makes a call round trip about a third faster (measured: 155 → 103 µs
 * with 2 cores oversubscribed). Only the actor's own thread blocks, only between messages, and
 * for at most this long: its timers and pending promise jobs are delayed by no more.
 */
const IDLE_BLOCK_MS = 2;

async function loop(run: Running): Promise<Outcome> {
  const ring = run.box.ring;
  let n = 0, since = performance.now();
  for (;;) {
    if (run.signals.length) {
      const out = await handleSignals(run);
      if (out) return out;
    }
    let env = (run.replay?.shift() ?? ring.tryRecv(decode)) as Envelope | typeof TIMEOUT;
    if (env === TIMEOUT) env = ring.recvSync(decode, { timeout: IDLE_BLOCK_MS }) as typeof env;
    if (env === TIMEOUT) {
      try {
        env = await ring.recv(decode, { signal: run.wake.signal }) as Envelope;
      } catch (e) {
        if (!run.wake.signal.aborted) throw e;
        run.wake = new AbortController();
        continue;
      }
      n = 0;
      since = performance.now();
    } else if (++n >= 256) {
      // A busy actor handles messages back to back without returning to its event loop: let
      // this worker's promise jobs (reply pumps, calls it made) run, and its timers now and then.
      n = 0;
      if (performance.now() - since > 20) {
        await macrotask();
        since = performance.now();
      } else await null;
    }
    let out = handle(run, env);
    if (out instanceof Promise) out = await out;
    run.current = undefined;
    if (out) return out;
  }
}

/**
 * The target of every actor's worker (internal: {@link spawn} starts it). Builds the actor,
 * handles its mailbox until it stops, and records why.
 */
export async function actorMain(init: ActorInit): Promise<void> {
  // Borrowed: the spawner holds this worker's reference to the block and drops it when the
  // worker has ended (a worker's own handles are never collected once it ends).
  const box = new Box(init.off);
  const ref = makeRef(box, init.name, false);
  let run: Running;
  try {
    const cls = await importClass(init.target);
    constructing = ref;
    let instance: Actor;
    try {
      instance = new cls(...init.args);
    } finally {
      constructing = undefined;
    }
    run = { box, ref, instance, links: new Map(), signals: [], wake: new AbortController() };
    running = run;
    await instance.onStart?.();
  } catch (err) {
    // `spawn()` rejects with this error in the spawner; nothing to print here.
    setStopped(box, err instanceof Error ? err : new Error(String(err)));
    return exit(1);
  }
  Atomics.store(box.i32, STATE, RUNNING);
  Atomics.notify(box.i32, STATE);
  let out: Outcome;
  try {
    out = await loop(run);
  } catch (err) {
    out = crash(run, err, null); // a bug here, not in the actor: still stop cleanly
  }
  cancelOwnedTimers(); // a stopped actor's timers never fire
  if (out?.zombie) return;
  let reason = out!.reason;
  if (!out!.kill) {
    Atomics.store(box.i32, STATE, STOPPING);
    const hook = run.instance.onStop;
    if (typeof hook === "function") {
      try {
        await hook.call(run.instance, reason);
      } catch (err) {
        reason = crash(run, err, null)!.reason;
      }
    }
    await shutdownRoots("shutdown"); // actors and supervisors this actor started
  }
  for (const l of run.links.values()) l.unwatch();
  // Replies on their way out reach the reply rings before callers learn that we stopped.
  await flushAll();
  setStopped(box, reason);
  running = null;
  if (out!.kill || !isNormalExit(reason)) exit(1);
}

// ---------------------------------------------------------------------------------------------
// spawn, monitor, link

/** Options of {@link spawn}. */
export interface SpawnOptions<P extends unknown[]> {
  /** Arguments of the actor class's constructor (handles may be nested anywhere). */
  args?: P;
  /** The actor's name (its worker's name too); default `ClassName-N`. */
  name?: string;
  /**
   * Default true: the actor ends with the program (daemon children are terminated at program
   * end). A non-daemon actor keeps the program alive until it is stopped, and may itself spawn
   * actors (a daemon process cannot start children).
   */
  daemon?: boolean;
  /**
   * Deno permissions for the actor's worker (at most the parent's), as `Process`'s
   * `permissions`: the worker may always read denomp's modules and the actor class's module.
   */
  permissions?: Deno.PermissionOptions;
  /** The module that exports the class, when it cannot be found automatically. */
  module?: string | URL;
  /**
   * Registers the actor under `name` before it starts (Erlang's `{local, Name}`): any worker
   * finds it with `whereis(name)`; the name is free again once it stops. A name held by a running
   * actor makes `spawn` throw `ValueError`. A supervisor's restart spawns it again: the new
   * instance takes the name over.
   */
  register?: boolean;
}

function slotOfPid(pid: number): number {
  return pid - Deno.pid + MAIN_SLOT;
}

/**
 * Starts an instance of `cls` (an exported subclass of {@link Actor}) in its own worker and
 * resolves with a typed ref once its constructor and `onStart` have run. Rejects with the error
 * they threw, if any.
 *
 * @example
 * ```ts ignore
 * import { spawn } from "jsr:@denomp/multiprocessing";
 * import { Counter } from "./counter.ts";
 * const ref = await spawn(Counter, { name: "counter" });
 * await ref.call.inc(1);
 * console.log(await ref.call.get()); // 1
 * await ref.stop();
 * ```
 */
export async function spawn<A extends Actor, P extends unknown[]>(
  cls: ActorClass<A, P>,
  options?: SpawnOptions<P>,
): Promise<ActorRef<A>> {
  options = optionsOf(options, "spawn", 'spawn(Worker, { args: [1], name: "w" })');
  const caller = callerModule();
  if (typeof cls !== "function" || !(cls.prototype instanceof Actor)) {
    throw new ValueError(`spawn() needs a class extending Actor: got ${String(cls)}`);
  }
  const target = resolveTarget(cls, options.module, caller);
  const name = options.name ?? `${cls.name}-${nextId()}`;
  const box = new Box(Box.create(ACTOR, 0));
  registerObject("Actor", box.off, name);
  const ref = makeRef<A>(box, name, true);
  // The worker imports the class's module too: it may read that file, whatever was asked.
  const permissions = options.permissions === undefined
    ? undefined
    : sandbox(options.permissions, [target.module]);
  if (options.register) {
    if (options.name === undefined) throw new ValueError("spawn({ register: true }) needs a name");
    // Until its worker starts, the actor lives and dies with us: a spawner killed right here
    // must not leave the name to an actor that will never run.
    Atomics.store(box.i32, SLOT, heap().slot);
    register(name, ref); // before the worker starts: a taken name starts nothing
  }
  const init: ActorInit = { off: box.off, target, args: options.args ?? [], name };
  const p = new Process({
    target: actorMain,
    module: import.meta.url,
    args: [init],
    name,
    daemon: options.daemon ?? true,
    permissions,
  });
  try {
    p.start();
  } catch (err) {
    setStopped(box, err instanceof Error ? err : String(err)); // frees the name, if any
    throw err;
  }
  retain(box.off); // the worker's reference, dropped by the watcher once the worker has ended
  Atomics.store(box.i32, SLOT, slotOfPid(p.pid!));
  watch(box, () => {
    removeRoot(ref);
    try {
      forgetActor(box.off); // its names and groups go at once
    } catch { /* a zombie may not touch the table; lookups check liveness anyway */ }
  }, { process: p, name });
  addRoot(ref);
  for (;;) {
    const s = Atomics.load(box.i32, STATE);
    if (s === RUNNING || s === STOPPING) return ref;
    if (s === STOPPED) {
      const reason = readReason(box);
      if (reason instanceof Error) throw reason;
      throw new ProcessError(`actor ${name} failed to start: ${reason}`);
    }
    await waitAsync(box.i32, STATE, s, 50);
  }
}

/** Options of {@link monitor}. */
export interface MonitorOptions {
  /** Cancels the monitor (Erlang's `demonitor`): the promise then never settles. */
  signal?: AbortSignal;
  /**
   * Default true: a pending monitor keeps the program alive, like any awaited operation. False
   * lets the program end meanwhile (a supervisor watches its children this way).
   */
  keepAlive?: boolean;
}

/**
 * Resolves with the reason `target` stops for (Erlang's monitor): for an actor, `"normal"`,
 * `"shutdown"`, `"killed"`, or the `Error` it crashed with; for a started `Process`, `"normal"`
 * (exit code 0), `"killed"` (terminated or killed) or a `ProcessError` naming the exit code.
 * Resolves at once if it has stopped already.
 *
 * @example
 * ```ts ignore
 * import { monitor, spawn } from "jsr:@denomp/multiprocessing";
 * import { Counter } from "./counter.ts";
 * const ref = await spawn(Counter);
 * const down = monitor(ref);
 * await ref.stop();
 * console.log(await down); // "normal"
 * ```
 */
export function monitor<A extends Actor>(
  target: ActorRef<A> | Process,
  options?: MonitorOptions,
): Promise<ExitReason> {
  options = optionsOf(options, "monitor", "monitor(ref, { keepAlive: false })");
  const signal = options.signal;
  const p = new Promise<ExitReason>((resolve) => {
    if (signal?.aborted) return;
    const cancel = target instanceof Process
      ? watchProcess(target, resolve)
      : watch(boxOfRef(target as ActorRef<Actor>), resolve);
    signal?.addEventListener("abort", cancel, { once: true });
  });
  return options.keepAlive === false ? p : keepAlive(p);
}

function linkOne(x: ActorRef<Actor>, peer: ActorRef<Actor>, kind: number): Promise<unknown> {
  const box = boxOfRef(x);
  if (running?.box.off === box.off) {
    if (kind === LINK) addLink(running, peer);
    else removeLink(running, peer);
    return RESOLVED;
  }
  return request(box, x.name, [kind, 0, 0, 0, peer], 4, "peer");
}

/**
 * Links two actors (Erlang's `link`): when one stops abnormally (any reason but `"normal"`), the
 * other stops with the same reason, unless it traps exits (`trapExits = true`), in which case
 * its `onExit(from, reason)` runs. Links are kept by the actors themselves, so they hold
 * whichever process made them. Rejects with {@link ActorExited} if either had stopped (the other
 * then gets the exit signal).
 *
 * @example
 * ```ts ignore
 * import { link, monitor, spawn } from "jsr:@denomp/multiprocessing";
 * import { Worker } from "./worker.ts";
 * const a = await spawn(Worker), b = await spawn(Worker);
 * await link(a, b);
 * await a.call.crash().catch(() => {});
 * console.log(await monitor(b)); // the Error a crashed with
 * ```
 */
export async function link<A extends Actor, B extends Actor>(
  a: ActorRef<A>,
  b: ActorRef<B>,
): Promise<void> {
  const x = a as ActorRef<Actor>, y = b as ActorRef<Actor>;
  if (x.equals(y)) return;
  await Promise.all([linkOne(x, y, LINK), linkOne(y, x, LINK)]);
}

/**
 * Removes a link made by {@link link}.
 *
 * @example
 * ```ts ignore
 * await unlink(a, b);
 * ```
 */
export async function unlink<A extends Actor, B extends Actor>(
  a: ActorRef<A>,
  b: ActorRef<B>,
): Promise<void> {
  const x = a as ActorRef<Actor>, y = b as ActorRef<Actor>;
  await Promise.all([linkOne(x, y, UNLINK), linkOne(y, x, UNLINK)]);
}

/**
 * Stops every actor and supervisor this process started and no supervisor owns, in reverse
 * order of start, each after its queued messages (what Ctrl-C does before exiting).
 *
 * @example
 * ```ts
 * import { shutdown } from "jsr:@denomp/multiprocessing";
 * await shutdown(); // nothing started: resolves at once
 * ```
 */
export function shutdown(reason: ExitReason = "shutdown"): Promise<void> {
  return shutdownRoots(reason);
}

/**
 * A ref to the actor running in this worker, or null outside an actor.
 *
 * @example
 * ```ts
 * import { currentActor } from "jsr:@denomp/multiprocessing";
 * console.assert(currentActor() === null); // the main thread is no actor
 * ```
 */
export function currentActor(): ActorRef<Actor> | null {
  return running?.ref ?? null;
}
