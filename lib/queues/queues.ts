/**
 * Queues shared by any number of producers and consumers in any workers (and the main thread):
 * `Queue`, `SimpleQueue`, `JoinableQueue` (Python's `multiprocessing` queues) and `LifoQueue`,
 * `PriorityQueue` (Python's `queue` module, here across workers too).
 *
 * Every queue lives in one block of the shared heap, so a queue handle is only an offset: it
 * passes to a worker in `args`, and through any Queue or Pipe, and works there.
 *
 * - `Queue`/`SimpleQueue`/`JoinableQueue` carry encoded items through a {@link Ring} (FIFO).
 *   As in Python, `put` on a queue with room never blocks: the item is encoded at once and
 *   written through to the ring, or (ring full) kept in this process's outbox, which a background
 *   pump writes out in order (Python's feeder thread). A worker flushes its outboxes before it
 *   reports its exit (`flushAll`).
 * - `LifoQueue`/`PriorityQueue` keep each encoded item in its own heap block and a shared array of
 *   block offsets — a stack, or a binary heap ordered by an order-preserving key of the item —
 *   under one robust lock. Every mutation records the entries it moves first, so a process killed
 *   inside the lock leaves a store the next one repairs (nothing lost, nothing duplicated).
 * - `qsize()` counts items put and not yet got (outboxes included), shared by all processes;
 *   `maxsize` backpressure waits on that count. Items a dead producer never wrote leave it.
 * - At-least-once for `JoinableQueue`: a consumer worker keeps a copy of each item it got in
 *   its own small ring (its "held" items) until `taskDone()`; when it dies, whoever next looks
 *   at the queue puts those items back for the next consumer (as the cluster queue does), so
 *   `join()` does not wait for a dead consumer. The main thread never dies and keeps no copy.
 *
 * @module
 */

import {
  deadlineOf,
  LIVENESS_SLICE_MS,
  mutexAcquireRecovering,
  mutexAcquireSync,
  mutexLockWaits,
  mutexRelease,
  OWNER_DIED,
  remainingMs,
  runAsync,
  runSync,
  type Waits,
} from "../core/atomics.ts";
import {
  adopt,
  alloc,
  DEATH_EPOCH_INDEX,
  disown,
  heap,
  isAlive,
  MAIN_SLOT,
  release,
  retain,
} from "../core/heap.ts";
import {
  checkNotTerminated,
  type Decode,
  EOF,
  flushAll as flushRings,
  Ring,
  TIMEOUT,
} from "../core/ring.ts";
import { optionsOf } from "../core/args.ts";
import { Empty, Full, SerializationError, ValueError } from "../core/errors.ts";
import { Encoder, loads, loadsAsync, registerHandle } from "../core/reduction.ts";
import { type Kind as ObjectKind, registerObject } from "../core/observe.ts";
import { inspectors } from "../core/waitfor.ts";
import { compileSchema, type Schema, type SchemaFor } from "./typed.ts";

// ---------------------------------------------------------------------------------------------
// Shared layout (Int32 words from the block's offset / 4)

// Counters split by who writes them, 128 bytes apart (a cache line and its prefetch pair), so a
// producer and a consumer on two cores do not bounce one line with two read-modify-writes per
// item: producers count PUTS (items reserved), consumers count GETS (items taken) and TASKS_DONE
// (`taskDone`). qsize is PUTS - GETS and the unfinished tasks PUTS - TASKS_DONE (int32
// differences, so wrap-around is fine). The read-mostly words sit between them.
const PUTS = 0; // producers' line
const CLOSED = 16, MAXSIZE = 17, KIND = 18, MAGIC_I = 19, JOINABLE = 20;
const GETS = 32, TASKS_DONE = 33, PUT_WAITERS = 34, JOIN_WAITERS = 35; // consumers' line
// Store (LIFO / priority) words.
const SLOCK = 48, LEN = 49, ARR = 50, PENDING = 51, POPPED = 52, SEQ = 53, GET_WAITERS = 54;
const NEXT_SEQ = 55;
/** Claimed entries of the holders table (read-mostly line). */
const HOLDERS = 21;
/** A typed queue's schema: the block holding its JSON text, and the text's length in bytes. */
const SCHEMA = 22, SCHEMA_LEN = 23;
/**
 * The holders table (see `Shared.#hold`): per consumer process, its slot (negated once dead and
 * being reaped), its held items' block, the slot of the process putting them back, and whether
 * their tasks were counted done.
 */
const HOLD_TABLE = 64, HOLD_ENTRIES = 32, HOLD_ENTRY = 4;
const HEADER = (HOLD_TABLE + HOLD_ENTRY * HOLD_ENTRIES) * 4;
/** Bytes of a consumer's held items: small items inline, larger ones as a pointer to a block. */
const HELD_BYTES = 8 << 10;
const HELD_HEAD = 0, HELD_TAIL = 1, HELD_USED = 2, HELD_DATA = 16;
const HELD_CAP = HELD_BYTES - HELD_DATA;
/** Items larger than this are kept in a block of their own. */
const HELD_INLINE = HELD_CAP >> 2;
/**
 * First word of a held message that points to a block (then offset, length). No encoded item
 * starts so: the codec's first byte is a small type tag.
 */
const HELD_PTR = 0xffffffff;
const MAGIC = 0x71756575; // "queu"

const FIFO = 1, LIFO = 2, PRIO = 3;
type Kind = typeof FIFO | typeof LIFO | typeof PRIO;

/** A FIFO queue's block: header and ring fill a 256 KiB size class exactly. */
const FIFO_BLOCK = (256 << 10) - 16;
/** Item blocks of the store: key length, payload length, key, payload. */
const ITEM_HEADER = 8;
/** Sort keys longer than this are cut (ties beyond it go by arrival order). */
const MAX_KEY = 1024;

/** Options of `put`/`putSync`. */
export interface PutOptions {
  /** `false`: throw `Full` at once when the queue is full. Default `true`. */
  block?: boolean;
  /** Milliseconds to wait for room before throwing `Full` (with `block`). Default: forever. */
  timeout?: number;
  /** Aborts the wait for room (rejects with the signal's reason). */
  signal?: AbortSignal;
  /**
   * `ArrayBuffer`s to move instead of leaving a copy with the sender: after `put`, each one is
   * detached (`byteLength` 0), as with `postMessage(value, [buf])`. Over shared memory the bytes
   * are still copied once into the queue; what "move" guarantees is that the sender no longer
   * has them (no aliasing, no second copy kept alive).
   */
  transfer?: ArrayBuffer[];
}

/** Options of `new Queue(options)`. */
export interface QueueOptions<T = unknown> {
  /** At most this many items (`0`, the default: unbounded; `put` then never waits). */
  maxsize?: number;
  /**
   * A typed queue: every item is a record of these fields, written field by field into the
   * queue's shared memory with no generic encoding (see `typed.ts`); an item that does not fit
   * is refused with a `SerializationError` naming the field. Use `schema({...})` from `typed.ts`
   * to have the item type inferred, or give it: `new Queue<{ i: number }>({ schema: { i: "i32"
   * } })`. A plain `Queue` only: a `JoinableQueue`, `LifoQueue` or `PriorityQueue` refuses it
   * (`ValueError`).
   */
  schema?: Schema<T> | SchemaFor<T>;
  /** Shown in `snapshot()` and the dashboard; default: the kind and creation site. */
  name?: string;
}

/** Options of `getMany`/`getManySync`. */
export interface GetManyOptions extends GetOptions {
  /** At most this many items (default: all that are there). */
  max?: number;
}

/** Options of `get`/`getSync`. */
export interface GetOptions {
  /** `false`: throw `Empty` at once when no item is there. Default `true`. */
  block?: boolean;
  /** Milliseconds to wait for an item before throwing `Empty` (with `block`). Default: forever. */
  timeout?: number;
  /** Aborts the wait (rejects with the signal's reason). */
  signal?: AbortSignal;
}

// ---------------------------------------------------------------------------------------------
// Helpers

let encoding = false;
const sharedEncoder = new Encoder();

/** Encodes with the shared encoder (its bytes are valid until the next encode). */
function encode(value: unknown): Uint8Array {
  if (encoding) return new Encoder().encode(value, "item").slice(); // a reduce() that puts
  encoding = true;
  try {
    return sharedEncoder.encode(value, "item");
  } finally {
    encoding = false;
  }
}

/** An item whose bytes did not decode: the reader gets `error`, the counts go on. */
class DecodeFailure {
  constructor(readonly error: unknown) {}
}

/** Decodes an item; a failure is returned (not thrown) so that the caller keeps the counts. */
const decodeItem = (payload: Uint8Array): unknown => {
  try {
    return loads(payload);
  } catch (e) {
    return new DecodeFailure(e);
  }
};
/**
 * For async receivers: like {@link decodeItem}, and may wait for a handle's module the worker
 * lacks (`import type` targets) or a big block's buffer; a failure is returned, not thrown.
 */
const decodeItemAsync = (payload: Uint8Array): unknown => {
  try {
    const v = loadsAsync(payload);
    return v instanceof Promise ? v.catch((e) => new DecodeFailure(e)) : v;
  } catch (e) {
    return new DecodeFailure(e);
  }
};

/** A typed queue's schema text, copied out of its block (TextDecoder refuses shared views). */
function schemaText(blk: number, len: number): string {
  return new TextDecoder().decode(heap().u8.slice(blk, blk + len));
}

/** `getMany`'s `max`: a positive integer, or all that are there. */
function maxOf(max: number | undefined): number {
  if (max === undefined || max === Infinity) return Infinity;
  if (typeof max !== "number" || !Number.isInteger(max) || max < 1) {
    throw new ValueError(`'max' must be a positive integer: current value is ${max}`);
  }
  return max;
}

/** A held message that points to a block: its offset, else 0. */
function heldBlock(b: Uint8Array): number {
  const dv = heap().dv; // `b` views the heap, so its byteOffset is a heap offset
  return b.length === 12 && dv.getUint32(b.byteOffset, true) === HELD_PTR
    ? dv.getUint32(b.byteOffset + 4, true)
    : 0;
}

/**
 * A consumer's copies of the items it got and has not marked done, oldest first: a byte ring in
 * a heap block of its own. No lock: only its owner touches it while alive (a zombie meets its
 * fence in `taskDone` first), and one reaper after its death. Records are an int32 length and
 * the bytes padded to 4; a length of -1 (or no room for one) means "go on at 0". `HEAD`,
 * `TAIL` and `USED` are stored last, so a record is in or out as a whole.
 */
class Held {
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  /** The data area as words: records start 4-aligned, so their lengths are words. */
  readonly #d32: Int32Array;

  constructor(off: number) {
    const sab = heap().sab;
    this.#i32 = new Int32Array(sab, off, 4);
    this.#u8 = new Uint8Array(sab, off + HELD_DATA, HELD_CAP);
    this.#d32 = new Int32Array(sab, off + HELD_DATA, HELD_CAP >> 2);
  }

  /** True when a record of `n` bytes would fit now. */
  fits(n: number): boolean {
    const need = 4 + ((n + 3) & ~3), tail = this.#i32[HELD_TAIL], used = this.#i32[HELD_USED];
    return tail + need > HELD_CAP
      ? used + (HELD_CAP - tail) + need <= HELD_CAP
      : used + need <= HELD_CAP;
  }

  /** Appends a copy of `bytes`; false (nothing kept) when too big or full. */
  push(bytes: Uint8Array): boolean {
    const need = 4 + ((bytes.length + 3) & ~3);
    if (bytes.length > HELD_INLINE) return false;
    const i32 = this.#i32;
    let tail = i32[HELD_TAIL], used = i32[HELD_USED];
    if (tail + need > HELD_CAP) {
      if (used + (HELD_CAP - tail) + need > HELD_CAP) return false;
      if (HELD_CAP - tail >= 4) this.#d32[tail >> 2] = -1;
      used += HELD_CAP - tail;
      tail = 0;
    }
    if (used + need > HELD_CAP) return false;
    const n = bytes.length;
    this.#d32[tail >> 2] = n;
    if (n > 32) this.#u8.set(bytes, tail + 4);
    else for (let i = 0, u8 = this.#u8, at = tail + 4; i < n; i++) u8[at + i] = bytes[i]; // cheaper
    i32[HELD_USED] = used + need;
    Atomics.store(i32, HELD_TAIL, tail + need); // publishes the record (and USED) to a reaper
    return true;
  }

  /** Removes the oldest record, if any; returns the block it points to, else 0. */
  drop(): number {
    const at = this.#next();
    if (at < 0) return 0;
    const d32 = this.#d32, n = d32[at >> 2];
    const blk = n === 12 && d32[(at >> 2) + 1] === (HELD_PTR | 0) ? d32[(at >> 2) + 2] : 0;
    this.#remove(at, n);
    return blk;
  }

  /** Where the oldest record starts, or -1 when there is none. */
  #next(): number {
    const i32 = this.#i32, head = i32[HELD_HEAD], used = i32[HELD_USED];
    if (used === 0) return -1;
    if (HELD_CAP - head < 4 || this.#d32[head >> 2] === -1) {
      i32[HELD_USED] = used - (HELD_CAP - head);
      return 0;
    }
    return head;
  }

  #remove(at: number, n: number): void {
    const i32 = this.#i32, size = 4 + ((n + 3) & ~3);
    i32[HELD_USED] -= size;
    Atomics.store(i32, HELD_HEAD, at + size === HELD_CAP ? 0 : at + size);
  }

  /** Calls `fn` with a view of each record's bytes, oldest first, changing nothing. */
  forEach(fn: (b: Uint8Array) => void): void {
    const d32 = this.#d32;
    let head = this.#i32[HELD_HEAD], used = this.#i32[HELD_USED];
    while (used > 0) {
      if (HELD_CAP - head < 4 || d32[head >> 2] === -1) {
        used -= HELD_CAP - head;
        head = 0;
        continue;
      }
      const n = d32[head >> 2], size = 4 + ((n + 3) & ~3);
      fn(this.#u8.subarray(head + 4, head + 4 + n));
      used -= size;
      head = head + size === HELD_CAP ? 0 : head + size;
    }
  }
}

/** A copy of the item bytes of a held record (its block, if any, stays). */
const copyHeld = (b: Uint8Array): Uint8Array => {
  const blk = heldBlock(b);
  return blk ? heap().u8.slice(blk, blk + heap().dv.getUint32(b.byteOffset + 8, true)) : b.slice();
};

/** Frees the block a held record points to, if any. */
const dropBlock = (b: Uint8Array): void => {
  const blk = heldBlock(b);
  if (blk) release(blk);
};

const DONE: Promise<void> = Promise.resolve();

/** Python's checks: a negative or non-numeric timeout is a ValueError. */
function timeoutOf(block: boolean | undefined, timeout: number | undefined): number | undefined {
  if (block === false) return 0;
  if (timeout === undefined || timeout === null) return undefined;
  if (typeof timeout !== "number" || Number.isNaN(timeout)) {
    throw new ValueError(`'timeout' must be a number of milliseconds: current value is ${timeout}`);
  }
  if (timeout < 0) {
    throw new ValueError(`'timeout' must be a non-negative number: current value is ${timeout}`);
  }
  return timeout;
}

function checkTransfer(list: ArrayBuffer[] | undefined): void {
  if (!list) return;
  const seen = new Set<ArrayBuffer>();
  list.forEach((b, i) => {
    if (!(b instanceof ArrayBuffer)) {
      throw new SerializationError(`transfer[${i}]`, "only ArrayBuffers can be transferred");
    }
    if (b.detached) throw new SerializationError(`transfer[${i}]`, "the ArrayBuffer is detached");
    if (seen.has(b)) throw new SerializationError(`transfer[${i}]`, "listed twice");
    seen.add(b);
  });
}

/** Detaches each listed buffer (its `transfer(0)` copy, empty, is dropped). */
function detach(list: ArrayBuffer[] | undefined): void {
  for (const b of list ?? []) b.transfer(0);
}

// ---------------------------------------------------------------------------------------------
// Order-preserving sort keys for PriorityQueue: comparing two keys byte by byte orders the items
// as Python orders tuples — element by element, shorter first on a tie. Where Python would raise
// TypeError (values of kinds that do not compare), kinds rank None < numbers < strings < bytes
// < dates < arrays < anything else, and items that tie go out in arrival order.

const K_END = 0x00, K_NONE = 0x01, K_NUM = 0x10, K_STR = 0x20, K_BYTES = 0x28, K_DATE = 0x30;
const K_ARRAY = 0x40, K_OTHER = 0x7f;

class KeyWriter {
  buf = new Uint8Array(64);
  n = 0;
  #f64 = new Float64Array(1);
  #u8 = new Uint8Array(this.#f64.buffer);
  full = false;

  byte(b: number): void {
    if (this.n >= MAX_KEY) {
      this.full = true;
      return;
    }
    if (this.n === this.buf.length) {
      const next = new Uint8Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.n++] = b;
  }

  number(x: number): void {
    this.byte(K_NUM);
    if (Number.isNaN(x)) x = Infinity; // NaN last (Python leaves it unordered)
    this.#f64[0] = x === 0 ? 0 : x; // -0 equals 0
    const u = this.#u8, neg = u[7] & 0x80;
    // Big-endian IEEE bits; negatives inverted, positives with the sign bit set.
    for (let i = 7; i >= 0; i--) this.byte(neg ? ~u[i] & 0xff : i === 7 ? u[i] | 0x80 : u[i]);
  }

  value(v: unknown, depth: number): boolean {
    if (this.full) return false;
    if (v === null || v === undefined) return this.byte(K_NONE), true;
    switch (typeof v) {
      case "number":
        return this.number(v), true;
      case "boolean":
        return this.number(v ? 1 : 0), true;
      case "bigint":
        return this.number(Number(v)), true;
      case "string": {
        this.byte(K_STR);
        for (const ch of v) {
          const cp = ch.codePointAt(0)! + 1; // 0 terminates
          this.byte(cp >> 16);
          this.byte((cp >> 8) & 0xff);
          this.byte(cp & 0xff);
        }
        this.byte(0), this.byte(0), this.byte(0);
        return true;
      }
    }
    if (v instanceof Date) {
      this.byte(K_DATE);
      const t = v.getTime();
      this.number(t);
      return true;
    }
    if (v instanceof Uint8Array) {
      this.byte(K_BYTES);
      for (const b of v) {
        if (b === 0) this.byte(0), this.byte(0xff);
        else this.byte(b);
        if (this.full) return false;
      }
      this.byte(0), this.byte(0);
      return true;
    }
    if (Array.isArray(v) && depth < 32) {
      this.byte(K_ARRAY);
      for (const x of v) if (!this.value(x, depth + 1)) return false;
      this.byte(K_END);
      return true;
    }
    this.byte(K_OTHER); // nothing after this compares
    return false;
  }
}

function sortKey(item: unknown): Uint8Array {
  const k = new KeyWriter();
  k.value(item, 0);
  return k.buf.subarray(0, k.n);
}

// ---------------------------------------------------------------------------------------------
// The queue state shared by every handle class (one per handle object).

/** Set by `rebuild` so the constructor attaches instead of allocating. */
let attaching = 0;
/** Set by subclass constructors: the kind of store to create, and whether items are tracked. */
let creatingKind: Kind = FIFO;
let creatingJoinable = false;
let stateOf: (q: Queue<unknown>) => Shared;
let releaseOf: (q: Queue<unknown>) => void;
let trackOf: <R>(q: Queue<unknown>, p: Promise<R>) => Promise<R>;

/**
 * The state every handle of this process takes on once it gave its memory back (see
 * `Queue.#release`): a closed, empty store, which behaves exactly as a closed, drained queue.
 */
let closedState: Shared | null = null;

function closedShared(): Shared {
  if (!closedState) {
    const off = Shared.create(LIFO, 0, true);
    Atomics.store(heap().i32, (off >> 2) + CLOSED, 1);
    closedState = new Shared(off);
  }
  return closedState;
}

class Shared {
  readonly off: number;
  /** Word index of the header in `i32` (0: `i32` is a fixed view of the header). */
  readonly q = 0;
  /**
   * A fixed-length view of the header: Atomics on the heap's length-tracking view cost about
   * twice as much, and these words are touched on every put and get.
   */
  readonly i32: Int32Array;
  readonly kind: Kind;
  readonly maxsize: number;
  readonly ring: Ring | null;
  /** Counts unfinished tasks (`taskDone`/`join`). */
  readonly joinable: boolean;
  /** Frees what the queue's block points to, when the last reference to it goes. */
  readonly beforeFree: ((off: number) => void) | undefined;
  /** Decodes items got from the ring (and keeps a copy when this process holds them). */
  readonly decode: Decode<unknown>;
  /** The same for async receivers (see {@link decodeItemAsync}). */
  readonly decodeAsync: Decode<unknown>;
  /** A typed queue's compiled schema (see `typed.ts`), else null. */
  readonly schema: Schema | null;
  /** The death counter when `reap` last looked (-1: never). */
  #epoch = -1;
  /** This handle's held items: undefined until the first get, null when not keeping copies. */
  #held: Held | null | undefined;

  constructor(off: number) {
    this.off = off;
    this.i32 = new Int32Array(heap().sab, off, HEADER >> 2);
    if (Atomics.load(this.i32, this.q + MAGIC_I) !== MAGIC) {
      throw new Error(`denomp: no queue at heap offset ${off}`);
    }
    this.kind = Atomics.load(this.i32, this.q + KIND) as Kind;
    this.maxsize = Atomics.load(this.i32, this.q + MAXSIZE);
    this.joinable = Atomics.load(this.i32, this.q + JOINABLE) !== 0;
    this.ring = this.kind === FIFO ? new Ring(off + HEADER, off) : null;
    this.beforeFree = this.ring ? Shared.freeFifo : Shared.freeStore;
    const text = Atomics.load(this.i32, this.q + SCHEMA);
    this.schema = text ? compileSchema(schemaText(text, this.i32[this.q + SCHEMA_LEN])) : null;
    const typed = this.schema,
      decodeTyped = (payload: Uint8Array): unknown => {
        try {
          return typed!.decode(payload);
        } catch (e) {
          return new DecodeFailure(e);
        }
      };
    const holds = this.joinable && this.ring !== null && heap().slot !== MAIN_SLOT;
    const holding = (decode: Decode<unknown>): Decode<unknown> => (payload, owned) => {
      const v = decode(payload, owned);
      // The copy is taken now, while `payload` still views the ring.
      if (!(v instanceof DecodeFailure)) this.#hold(payload);
      return v;
    };
    this.decode = typed ? decodeTyped : holds ? holding(decodeItem) : decodeItem;
    this.decodeAsync = typed ? decodeTyped : holds ? holding(decodeItemAsync) : decodeItemAsync;
  }

  // --- at-least-once for JoinableQueue consumers (see the module doc)

  /** Keeps a copy of an item this process got until its `taskDone`. */
  #hold(payload: Uint8Array): void {
    const held = this.#held === undefined ? (this.#held = this.#register()) : this.#held;
    if (!held) return;
    if (payload.length <= HELD_INLINE) {
      held.push(payload); // false when full (a consumer that never calls taskDone): no copy
      return;
    }
    if (!held.fits(12)) return;
    const blk = alloc(payload.length, "queue item"); // too big to keep inline: a block
    heap().u8.set(payload, blk);
    const ptr = new Uint8Array(new Uint32Array([HELD_PTR, blk, payload.length]).buffer);
    if (!held.push(ptr)) release(blk); // full (thousands held): this one goes uncopied
  }

  /** Claims an entry of the holders table for this process, with its held items' block. */
  #register(): Held | null {
    const i32 = this.i32, me = heap().slot;
    for (let i = 0; i < HOLD_ENTRIES; i++) {
      const e = this.q + HOLD_TABLE + HOLD_ENTRY * i;
      if (Atomics.compareExchange(i32, e, 0, me) !== 0) continue;
      Atomics.add(i32, this.q + HOLDERS, 1);
      const off = alloc(HELD_BYTES, "queue"); // if this throws, the entry is reaped when we die
      Atomics.store(i32, e + 1, off);
      return new Held(off);
    }
    return null; // more consumers than entries: this one keeps no copies (as in Python)
  }

  /** `taskDone` of this process: the oldest item it holds is done with. */
  #drop(): void {
    const blk = this.#held?.drop();
    if (blk) release(blk);
  }

  /**
   * Puts back the items that consumers now dead held. Each dead entry is claimed by one
   * reaper at a time, and freed only once every item it put back is written into the ring: a
   * reaper that dies first leaves the entry to the next one (who may put some items back twice:
   * at-least-once). Counts: each item put back is a put; the dead consumer's tasks are done
   * once (the `ACCOUNTED` word).
   */
  #reapHolders(): void {
    const i32 = this.i32, me = heap().slot;
    for (let i = 0; i < HOLD_ENTRIES; i++) {
      const e = this.q + HOLD_TABLE + HOLD_ENTRY * i, slot = Atomics.load(i32, e);
      if (slot === 0) continue;
      if (slot > 0 && (isAlive(slot) || Atomics.compareExchange(i32, e, slot, -slot) !== slot)) {
        continue;
      }
      const reaper = Atomics.load(i32, e + 2); // 0 counts as alive: its claimer is on its way
      if (reaper === me || (reaper && isAlive(reaper))) continue;
      if (Atomics.compareExchange(i32, e + 2, reaper, me) !== reaper) continue;
      this.#putBack(e);
    }
  }

  #putBack(e: number): void {
    const i32 = this.i32, off = Atomics.load(i32, e + 1);
    const items: Uint8Array[] = [];
    if (off) new Held(off).forEach((b) => items.push(copyHeld(b)));
    Atomics.add(i32, this.q + PUTS, items.length); // before TASKS_DONE: `join` never sees too few
    if (Atomics.compareExchange(i32, e + 3, 0, 1) === 0) {
      Atomics.add(i32, this.q + TASKS_DONE, items.length);
    }
    const sent = items.map((b) => this.ring!.post(b, this.sendOptions));
    void Promise.all(sent).then(() => {
      if (Atomics.load(i32, e + 2) !== heap().slot) return; // taken over: not ours to free
      if (off) {
        new Held(off).forEach(dropBlock);
        release(off);
      }
      for (const w of [1, 2, 3]) Atomics.store(i32, e + w, 0);
      Atomics.store(i32, e, 0);
      Atomics.sub(i32, this.q + HOLDERS, 1);
    });
  }

  /**
   * Frees what a FIFO queue's block points to when the last handle anywhere is gone: the held
   * items' blocks of its consumers and a dead reader's half-assembled item.
   */
  static freeFifo(off: number): void {
    Ring.dispose(off + HEADER);
    const i32 = heap().i32, q = off >> 2;
    if (i32[q + SCHEMA]) release(i32[q + SCHEMA]);
    for (let i = 0; i < HOLD_ENTRIES; i++) {
      const held = i32[q + HOLD_TABLE + HOLD_ENTRY * i + 1];
      if (held) {
        new Held(held).forEach(dropBlock);
        release(held);
      }
    }
  }

  static create(kind: Kind, maxsize: number, joinable: boolean, schema?: Schema): number {
    const off = alloc(kind === FIFO ? FIFO_BLOCK : HEADER, "queue");
    const i32 = heap().i32, q = off >> 2;
    if (kind === FIFO) Ring.init(off + HEADER, FIFO_BLOCK - HEADER);
    if (schema) {
      const text = new TextEncoder().encode(schema.text), blk = alloc(text.length, "queue");
      heap().u8.set(text, blk);
      i32[q + SCHEMA_LEN] = text.length;
      i32[q + SCHEMA] = blk; // published with MAGIC below
    }
    i32[q + KIND] = kind;
    i32[q + MAXSIZE] = maxsize;
    i32[q + JOINABLE] = joinable ? 1 : 0;
    Atomics.store(i32, q + MAGIC_I, MAGIC);
    return off;
  }

  get closed(): boolean {
    return Atomics.load(this.i32, this.q + CLOSED) !== 0;
  }

  count(): number {
    this.reap();
    return (Atomics.load(this.i32, this.q + PUTS) - Atomics.load(this.i32, this.q + GETS)) | 0;
  }

  /**
   * Items that producers now dead had put (counted in PUTS) but not yet written into the ring
   * (their outboxes died with them): they never arrive, so they leave the counts as if got and
   * done. Python would lose them too; what must not happen is a `qsize()` that stays above 0,
   * a `for await` that never ends after `close()`, a `join()` that never settles.
   */
  reap(): void {
    // Only when some process died since the last look (one load otherwise).
    const epoch = Atomics.load(heap().i32, DEATH_EPOCH_INDEX);
    if (epoch === this.#epoch) return;
    this.#epoch = epoch;
    if (Atomics.load(this.i32, this.q + HOLDERS)) this.#reapHolders();
    const lost = this.ring ? this.ring.reapDead() : 0;
    if (lost) this.gone(lost);
  }

  /** `n` items left the queue for good without reaching a consumer: got, and done. */
  gone(n: number): void {
    const i32 = this.i32, q = this.q;
    Atomics.add(i32, q + GETS, n);
    if (this.maxsize > 0 && Atomics.load(i32, q + PUT_WAITERS)) Atomics.notify(i32, q + GETS);
    if (this.joinable) {
      Atomics.add(i32, q + TASKS_DONE, n);
      if (Atomics.load(i32, q + JOIN_WAITERS)) Atomics.notify(i32, q + TASKS_DONE);
    }
    if (Atomics.load(i32, q + CLOSED)) this.wakeReaders();
  }

  /**
   * Passed to every ring write: a put that throws before its item reached the ring (a
   * terminated worker meeting its fence) gives its place back.
   */
  readonly sendOptions = { onUnsent: (n: number): void => this.undoReserve(n) };

  /**
   * After the ring gave `v` (an item, `TIMEOUT` or `EOF`): counts an item as got. An item that
   * did not decode is got and done (nobody will mark it done), and its error is thrown.
   */
  took(v: unknown): unknown {
    if (v === TIMEOUT || v === EOF) return v;
    if (v instanceof DecodeFailure) {
      this.discarded();
      throw v.error;
    }
    this.unreserve();
    return v;
  }

  /** Closed, and every item put has been got: nothing more can come. */
  readonly eof = (): boolean => {
    this.reap(); // a reader waiting on an empty queue gets a dead consumer's items back
    return Atomics.load(this.i32, this.q + CLOSED) !== 0 && this.count() === 0;
  };

  // --- the item count and maxsize

  /** Takes places for up to `n` items without waiting; returns how many (0 when full). */
  tryReserveUpTo(n: number): number {
    const i32 = this.i32, idx = this.q + PUTS, max = this.maxsize;
    if (max <= 0) return Atomics.add(i32, idx, n), n;
    for (;;) {
      const p = Atomics.load(i32, idx);
      const k = Math.min(n, max - ((p - Atomics.load(i32, this.q + GETS)) | 0));
      if (k <= 0) return 0;
      if (Atomics.compareExchange(i32, idx, p, (p + k) | 0) === p) return k;
    }
  }

  /** Takes a place for one item without waiting; false when full. */
  tryReserve(): boolean {
    const i32 = this.i32, idx = this.q + PUTS, max = this.maxsize;
    if (max <= 0) {
      Atomics.add(i32, idx, 1);
      return true;
    }
    for (;;) {
      // GETS only grows, so a stale one overstates the size: never too many, at worst a retry.
      const p = Atomics.load(i32, idx);
      if (((p - Atomics.load(i32, this.q + GETS)) | 0) >= max) return false;
      if (Atomics.compareExchange(i32, idx, p, (p + 1) | 0) === p) return true;
    }
  }

  /** Gives reserved places back (the queue closed before the items went in). */
  undoReserve(n = 1): void {
    Atomics.sub(this.i32, this.q + PUTS, n);
  }

  /**
   * Waits for room and reserves it (`reserve`/`reserveSync`): one algorithm, two drivers (see
   * _atomics). Sleeps until a consumer takes an item (GETS moves; it notifies when putters wait).
   */
  *#reserveWaits(deadline: number, signal?: AbortSignal): Waits<boolean> {
    const i32 = this.i32, idx = this.q + GETS;
    Atomics.add(i32, this.q + PUT_WAITERS, 1);
    try {
      for (;;) {
        if (this.tryReserve()) return true;
        if (this.closed) throw new ValueError("Queue is closed");
        signal?.throwIfAborted();
        const left = remainingMs(deadline);
        if (left <= 0) return false;
        const g = Atomics.load(i32, idx);
        if (((Atomics.load(i32, this.q + PUTS) - g) | 0) < this.maxsize) continue;
        yield { i32, index: idx, value: g, ms: Math.min(left, LIVENESS_SLICE_MS) };
      }
    } finally {
      Atomics.sub(i32, this.q + PUT_WAITERS, 1);
    }
  }

  reserve(timeout: number | undefined, signal?: AbortSignal): Promise<boolean> {
    return runAsync(this.#reserveWaits(deadlineOf(timeout), signal));
  }

  reserveSync(timeout: number | undefined): boolean {
    return runSync(this.#reserveWaits(deadlineOf(timeout)));
  }

  /** `n` items left the queue (got, or discarded torn). */
  readonly unreserve = (n = 1): void => {
    const i32 = this.i32, q = this.q;
    Atomics.add(i32, q + GETS, n);
    if (this.maxsize > 0 && Atomics.load(i32, q + PUT_WAITERS)) Atomics.notify(i32, q + GETS);
    // A reader asleep on a closed queue re-checks for the end (it also polls, so this is speed).
    if (Atomics.load(i32, q + CLOSED) && this.count() === 0) this.wakeReaders();
  };

  /** A torn item was discarded: it will never be got nor marked done. */
  readonly discarded = (): void => {
    this.unreserve();
    // Done, but not a `taskDone` of this process: the copies it holds stay (see `#drop`).
    if (this.joinable && this.unfinished() > 0) this.taskDone(false);
  };

  unfinished(): number {
    this.reap();
    return (Atomics.load(this.i32, this.q + PUTS) - Atomics.load(this.i32, this.q + TASKS_DONE)) |
      0;
  }

  wakeReaders(): void {
    if (this.ring) this.ring.wakeReaders();
    else Atomics.notify(this.i32, this.q + SEQ);
  }

  close(): void {
    Atomics.store(this.i32, this.q + CLOSED, 1);
    this.wakeReaders();
    Atomics.notify(this.i32, this.q + GETS); // putters waiting for room: they throw now
  }

  // --- JoinableQueue accounting

  /** Counts one task done; `drop`: it is this process's `taskDone` (its oldest copy goes). */
  taskDone(drop = true): void {
    checkNotTerminated(); // a zombie's held items were put back: its taskDone must not count
    const i32 = this.i32, idx = this.q + TASKS_DONE;
    for (;;) {
      const d = Atomics.load(i32, idx);
      const left = (Atomics.load(i32, this.q + PUTS) - d) | 0;
      if (left <= 0) throw new ValueError("task_done() called too many times");
      if (Atomics.compareExchange(i32, idx, d, (d + 1) | 0) !== d) continue;
      if (drop) this.#drop();
      // The last one: wake joiners (they sleep on TASKS_DONE). A put racing with this keeps them
      // waiting, as it should; they re-check PUTS when they wake.
      if (left === 1 && Atomics.load(i32, this.q + JOIN_WAITERS)) Atomics.notify(i32, idx);
      return;
    }
  }

  /** The TASKS_DONE value to sleep on while tasks are unfinished, or null when none is. */
  #joinWait(): number | null {
    this.reap();
    const i32 = this.i32, d = Atomics.load(i32, this.q + TASKS_DONE);
    return ((Atomics.load(i32, this.q + PUTS) - d) | 0) > 0 ? d : null;
  }

  /** Waits until every task is done (`join`/`joinSync`): one algorithm, two drivers. */
  *#joinWaits(): Waits<void> {
    const i32 = this.i32, idx = this.q + TASKS_DONE;
    Atomics.add(i32, this.q + JOIN_WAITERS, 1);
    try {
      for (let d = this.#joinWait(); d !== null; d = this.#joinWait()) {
        // Sliced: the notify comes only at "all done", and a put may move the goal meanwhile.
        yield { i32, index: idx, value: d, ms: LIVENESS_SLICE_MS };
      }
    } finally {
      Atomics.sub(i32, this.q + JOIN_WAITERS, 1);
    }
  }

  join(): Promise<void> {
    return runAsync(this.#joinWaits());
  }

  joinSync(): void {
    runSync(this.#joinWaits());
  }

  // --- the LIFO / priority store

  #slots(): number {
    return Atomics.load(this.i32, this.q + ARR); // block: [capacity, slot 0, slot 1, ...]
  }

  #lockStoreSync(): void {
    const i32 = this.i32, idx = this.q + SLOCK;
    if (Atomics.compareExchange(i32, idx, 0, heap().slot) === 0) return;
    if (mutexAcquireSync(i32, idx) === OWNER_DIED) this.#repair();
  }

  #lockStore(): void | Promise<void> {
    const i32 = this.i32, idx = this.q + SLOCK;
    if (Atomics.compareExchange(i32, idx, 0, heap().slot) === 0) return;
    return mutexAcquireRecovering(i32, idx, () => this.#repair());
  }

  #unlockStore(): void {
    // Only while we own it: a terminated-but-running worker's lock may have been taken over.
    const me = heap().slot, i32 = this.i32, idx = this.q + SLOCK;
    if (Atomics.compareExchange(i32, idx, me, 0) === me) return;
    mutexRelease(i32, idx, me);
  }

  /** Compares two item blocks by key (memcmp). */
  #cmp(a: number, b: number): number {
    const u8 = heap().u8, dv = heap().dv;
    const la = dv.getUint32(a, true), lb = dv.getUint32(b, true);
    const n = Math.min(la, lb);
    for (let i = 0; i < n; i++) {
      const d = u8[a + ITEM_HEADER + i] - u8[b + ITEM_HEADER + i];
      if (d) return d;
    }
    return la - lb;
  }

  /** Makes room for one more slot (store lock held). */
  #ensureSlot(len: number): number {
    const h32 = heap().i32;
    let arr = this.#slots();
    const cap = arr ? h32[arr >> 2] : 0;
    if (len + 1 <= cap) return arr;
    const ncap = Math.max(64, cap * 2);
    const next = alloc(4 + ncap * 4, "queue");
    h32[next >> 2] = ncap;
    if (arr) heap().u8.copyWithin(next + 4, arr + 4, arr + 4 + cap * 4);
    Atomics.store(this.i32, this.q + ARR, next); // the commit point: a crash before it leaks `next` only
    if (arr) release(arr);
    arr = next;
    return arr;
  }

  /** Pushes item block `item` (store lock held). */
  #push(item: number): void {
    checkNotTerminated(); // a terminated worker still running must not touch the store
    const i32 = this.i32, q = this.q, h32 = heap().i32;
    const len = i32[q + LEN];
    const s = (this.#ensureSlot(len) >> 2) + 1;
    Atomics.store(i32, q + PENDING, item); // written first: what a repair must not lose
    if (this.kind === LIFO) {
      h32[s + len] = item;
    } else {
      let i = len;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (this.#cmp(h32[s + p], item) <= 0) break;
        h32[s + i] = h32[s + p];
        i = p;
      }
      h32[s + i] = item;
    }
    Atomics.store(i32, q + LEN, len + 1);
    Atomics.store(i32, q + PENDING, 0);
  }

  /** Pops the next item block (store lock held, not empty). */
  #pop(): number {
    const i32 = this.i32, q = this.q, h32 = heap().i32;
    const len = i32[q + LEN], s = (this.#slots() >> 2) + 1, n = len - 1;
    if (this.kind === LIFO) {
      const top = h32[s + n];
      Atomics.store(i32, q + POPPED, top);
      h32[s + n] = 0;
      Atomics.store(i32, q + LEN, n);
      Atomics.store(i32, q + POPPED, 0);
      return top;
    }
    const top = h32[s], last = h32[s + n];
    Atomics.store(i32, q + POPPED, top);
    Atomics.store(i32, q + PENDING, last);
    if (n > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && this.#cmp(h32[s + c + 1], h32[s + c]) < 0) c++;
        if (this.#cmp(h32[s + c], last) >= 0) break;
        h32[s + i] = h32[s + c];
        i = c;
      }
      h32[s + i] = last;
    }
    h32[s + n] = 0;
    Atomics.store(i32, q + LEN, n);
    Atomics.store(i32, q + PENDING, 0);
    Atomics.store(i32, q + POPPED, 0);
    return top;
  }

  /**
   * The previous holder of the store lock died inside it: rebuild the stack or heap from every
   * entry it could have been moving (slots, the entry being inserted, and the one being removed,
   * which its dead taker never got). Duplicates left by a half-done sift collapse in the set.
   */
  #repair(): void {
    const i32 = this.i32, q = this.q, arr = this.#slots(), h32 = heap().i32;
    if (!arr) return;
    const s = (arr >> 2) + 1, cap = h32[arr >> 2];
    const len = Math.min(cap, i32[q + LEN] + 1);
    const set = new Set<number>();
    for (let i = 0; i < len; i++) if (h32[s + i]) set.add(h32[s + i]);
    for (const w of [PENDING, POPPED]) if (i32[q + w]) set.add(i32[q + w]);
    const items = [...set];
    if (this.kind === PRIO) items.sort((a, b) => this.#cmp(a, b)); // sorted is a valid heap
    for (let i = 0; i < cap; i++) h32[s + i] = i < items.length ? items[i] : 0;
    Atomics.store(i32, q + LEN, items.length);
    Atomics.store(i32, q + PENDING, 0);
    Atomics.store(i32, q + POPPED, 0);
  }

  /** Encodes an item into its own heap block (outside the lock). */
  makeItem(bytes: Uint8Array, key: Uint8Array | null): number {
    const kl = key ? key.length + 4 : 0;
    const off = alloc(ITEM_HEADER + kl + bytes.length, "queue item");
    const h = heap();
    h.dv.setUint32(off, kl, true);
    h.dv.setUint32(off + 4, bytes.length, true);
    if (key) {
      h.u8.set(key, off + ITEM_HEADER);
      // Arrival order breaks ties (big-endian, so it compares bytewise).
      h.dv.setUint32(off + ITEM_HEADER + key.length, Atomics.add(this.i32, this.q + NEXT_SEQ, 1));
    }
    h.u8.set(bytes, off + ITEM_HEADER + kl);
    return off;
  }

  #stored(): void {
    const i32 = this.i32, q = this.q;
    Atomics.add(i32, q + SEQ, 1);
    if (Atomics.load(i32, q + GET_WAITERS)) Atomics.notify(i32, q + SEQ);
  }

  storePutSync(item: number): void {
    this.#lockStoreSync();
    try {
      this.#push(item);
    } finally {
      this.#unlockStore();
    }
    this.#stored();
  }

  async storePut(item: number): Promise<void> {
    const l = this.#lockStore();
    if (l) await l;
    try {
      this.#push(item);
    } finally {
      this.#unlockStore();
    }
    this.#stored();
  }

  /** Takes the next item block if there is one; else the SEQ value to sleep on (negative-free). */
  #tryTake(): { item: number; seq: number } {
    checkNotTerminated();
    const i32 = this.i32, q = this.q;
    const seq = Atomics.load(i32, q + SEQ);
    const item = i32[q + LEN] > 0 ? this.#pop() : 0;
    return { item, seq };
  }

  #takeOut(item: number): unknown {
    const h = heap();
    const kl = h.dv.getUint32(item, true), n = h.dv.getUint32(item + 4, true);
    const at = item + ITEM_HEADER + kl;
    let v: unknown;
    try {
      v = decodeItem(h.u8.subarray(at, at + n));
    } finally {
      release(item);
    }
    return this.took(v);
  }

  /**
   * Takes the next stored item, waiting for one (`storeGet`/`storeGetSync`): one algorithm, two
   * drivers (see _atomics), the store lock included.
   */
  *#storeGetWaits(deadline: number, signal?: AbortSignal): Waits<unknown> {
    const i32 = this.i32, q = this.q, repair = () => this.#repair();
    for (;;) {
      yield* mutexLockWaits(i32, q + SLOCK, repair);
      let t;
      try {
        t = this.#tryTake();
      } finally {
        this.#unlockStore();
      }
      if (t.item) return this.#takeOut(t.item);
      if (this.eof()) return EOF;
      signal?.throwIfAborted();
      const left = remainingMs(deadline);
      if (left <= 0) return TIMEOUT;
      Atomics.add(i32, q + GET_WAITERS, 1);
      try {
        yield { i32, index: q + SEQ, value: t.seq, ms: Math.min(left, LIVENESS_SLICE_MS) };
      } finally {
        Atomics.sub(i32, q + GET_WAITERS, 1);
      }
    }
  }

  storeGetSync(timeout: number | undefined): unknown {
    return runSync(this.#storeGetWaits(deadlineOf(timeout)));
  }

  storeGet(timeout: number | undefined, signal?: AbortSignal): Promise<unknown> {
    return runAsync(this.#storeGetWaits(deadlineOf(timeout), signal));
  }

  /** Frees the items still stored when the last handle anywhere is gone. */
  static freeStore(off: number): void {
    const i32 = heap().i32, q = off >> 2;
    const arr = i32[q + ARR];
    if (!arr) return;
    const s = (arr >> 2) + 1, len = i32[q + LEN];
    for (let i = 0; i < len; i++) if (i32[s + i]) release(i32[s + i]);
    release(arr);
  }
}

// ---------------------------------------------------------------------------------------------
// The public classes

/**
 * A multi-producer, multi-consumer FIFO queue shared by workers (Python's
 * `multiprocessing.Queue`). Pass it to a worker in `args` or through another queue or pipe.
 *
 * @example
 * ```ts
 * import { Queue } from "jsr:@denomp/multiprocessing";
 * const q = new Queue<{ n: number }>();
 * await q.put({ n: 1 });
 * console.assert((await q.get()).n === 1);
 * q.putNowait({ n: 2 });
 * console.assert(q.qsize() === 1 && q.getNowait().n === 2);
 * ```
 */
export class Queue<T = unknown> implements AsyncIterable<T> {
  #s: Shared;
  readonly #off: number;
  readonly #maxsize: number;
  /** Async calls of this handle in flight: its memory must not go back under them. */
  #busy = 0;

  /**
   * Creates a queue holding at most `maxsize` items (`0`: unbounded; `put` then never waits),
   * or from options: `new Queue({ maxsize: 100, name: "jobs", schema })` (see {@link QueueOptions}).
   */
  constructor(options: number | QueueOptions<T> = 0) {
    const o = typeof options === "object" ? queueOptions(options) : { maxsize: options };
    const maxsize = o.maxsize ?? 0;
    const kind = creatingKind, joinable = creatingJoinable;
    creatingKind = FIFO;
    creatingJoinable = false;
    if (attaching) {
      const off = attaching;
      attaching = 0;
      this.#s = new Shared(off);
    } else {
      if (typeof maxsize !== "number" || !Number.isInteger(maxsize)) {
        throw new ValueError(`maxsize must be an integer: current value is ${maxsize}`);
      }
      if (o.schema !== undefined && (kind !== FIFO || joinable)) {
        throw new ValueError(
          "schema: typed queues are plain Queues (a JoinableQueue, LifoQueue or PriorityQueue " +
            "takes no schema)",
        );
      }
      const schema = o.schema === undefined ? undefined : compileSchema(o.schema as Schema);
      const off = Shared.create(kind, Math.max(0, Math.min(maxsize, 0x7fffffff)), joinable, schema);
      this.#s = new Shared(off);
      registerObject(objectKind(this, kind, joinable), off, o.name);
    }
    const s = this.#s;
    this.#off = s.off;
    this.#maxsize = s.maxsize;
    adopt(this, s.off, s.beforeFree);
  }

  static {
    stateOf = (q) => q.#s;
    releaseOf = (q) => q.#release();
    trackOf = (q, p) => q.#track(p);
  }

  /**
   * Gives this handle's reference to the queue's memory back as soon as nothing more can come
   * through it (closed, drained, every task done) and no async call of it is in flight, rather
   * than when the garbage collector finds the handle: a program that creates, uses and closes
   * queues in a loop then runs in constant memory (finalizers run too late for it). The memory
   * is freed when every holder has done so (or been collected). The handle then behaves as
   * before: closed and empty.
   */
  #release(): void {
    const s = this.#s;
    if (s === closedState || this.#busy || !s.closed || s.count() !== 0) return;
    if (s.joinable && s.unfinished() !== 0) return;
    this.#s = closedShared();
    disown(this);
    release(s.off, s.beforeFree);
  }

  /** Counts `p` as in flight on this handle (see `#release`). */
  #track<R>(p: Promise<R>): Promise<R> {
    this.#busy++;
    return p.finally(() => {
      this.#busy--;
      this.#release();
    });
  }

  /** The `maxsize` given at creation (0: unbounded). */
  get maxsize(): number {
    return this.#maxsize;
  }

  #encode(item: T, transfer: ArrayBuffer[] | undefined): Uint8Array {
    const s = this.#s;
    if (s.closed) throw new ValueError(`Queue is closed`);
    checkTransfer(transfer);
    if (!s.schema) return encode(item);
    const bytes = s.schema.encode(item);
    s.schema.checkSize(bytes, s.ring!.maxRecord);
    return bytes;
  }

  /** After `n` places were reserved: undo them if the queue closed meanwhile (see `close`). */
  #checkOpen(n = 1): void {
    if (this.#s.closed) {
      this.#s.undoReserve(n);
      throw new ValueError(`Queue is closed`);
    }
  }

  #stage(bytes: Uint8Array, item: T): Uint8Array | number {
    const s = this.#s;
    if (s.kind === FIFO) return bytes;
    return s.makeItem(bytes, s.kind === PRIO ? sortKey(item) : null);
  }

  /**
   * Puts `item` at the end of the queue. Waits while the queue is full (bounded queues only);
   * rejects with `Full` with `block: false` or after `timeout` ms, and `ValueError` once closed.
   * Items are encoded at once (later changes to `item` do not travel).
   */
  put(item: T, options?: PutOptions): Promise<void> {
    try {
      options = optionsOf(options, "Queue.put", "put(item, { timeout: 200 })");
      const timeout = timeoutOf(options.block, options.timeout);
      const s = this.#s;
      const bytes = this.#encode(item, options.transfer);
      if (!s.tryReserve()) {
        if (timeout === 0) throw new Full();
        // The shared encoder's buffer is reused while we wait.
        return this.#track(this.#putLater(item, bytes.slice(), timeout, options));
      }
      return this.#commit(item, bytes, options);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async #putLater(
    item: T,
    bytes: Uint8Array,
    timeout: number | undefined,
    o: PutOptions,
  ): Promise<void> {
    if (!(await this.#s.reserve(timeout, o.signal))) throw new Full();
    return this.#commit(item, bytes, o);
  }

  /** A place is reserved: hand the item over (never waits for a FIFO queue). */
  #commit(item: T, bytes: Uint8Array, options: PutOptions): Promise<void> {
    const s = this.#s;
    this.#checkOpen();
    const staged = this.#stage(bytes, item);
    detach(options.transfer);
    if (typeof staged === "number") return this.#track(s.storePut(staged));
    void s.ring!.post(staged, s.sendOptions);
    return DONE;
  }

  /** `put` for worker code that blocks its thread instead of awaiting. */
  putSync(item: T, options?: PutOptions): void {
    options = optionsOf(options, "Queue.putSync", "putSync(item, { timeout: 200 })");
    const timeout = timeoutOf(options.block, options.timeout);
    const s = this.#s;
    let bytes = this.#encode(item, options.transfer);
    if (!s.tryReserve()) {
      if (timeout === 0) throw new Full();
      bytes = bytes.slice();
      if (!s.reserveSync(timeout)) throw new Full();
    }
    this.#checkOpen();
    const staged = this.#stage(bytes, item);
    detach(options.transfer);
    if (typeof staged === "number") s.storePutSync(staged);
    else s.ring!.sendSync(staged, s.sendOptions);
  }

  /**
   * Puts without waiting: throws `Full` at once when the queue is full. Returns at once (the item
   * is written through, or queued in this process's outbox).
   */
  putNowait(item: T, options?: Omit<PutOptions, "block" | "timeout">): void {
    options = optionsOf(options, "Queue.putNowait", "putNowait(item, { transfer: [buf] })");
    const s = this.#s;
    const bytes = this.#encode(item, options.transfer);
    if (!s.tryReserve()) throw new Full();
    this.#checkOpen();
    const staged = this.#stage(bytes, item);
    detach(options.transfer);
    if (typeof staged === "number") {
      const p = s.storePut(staged);
      p.catch(() => {});
    } else void s.ring!.post(staged, s.sendOptions);
  }

  /** The item schema of a typed queue (see {@link QueueOptions.schema}), else `null`. */
  get schema(): Schema<T> | null {
    return this.#s.schema as Schema<T> | null;
  }

  /**
   * A batch put, written once for both drivers: yields the milliseconds left each time it must
   * wait for room, and is resumed with whether a place was reserved meanwhile. A typed queue
   * writes the records that have room as one run of frames (one lock, one publication, one
   * wake-up); every item is checked before any is put.
   */
  *#putMany(items: readonly T[], o: PutOptions, sync: boolean): Generator<number, void, boolean> {
    const timeout = timeoutOf(o.block, o.timeout), s = this.#s, ring = s.ring!;
    if (s.closed) throw new ValueError(`Queue is closed`);
    const batch = s.schema!.encodeMany(items, ring.maxRecord), starts = batch.starts;
    let bytes = batch.bytes;
    const n = starts.length, deadline = deadlineOf(timeout);
    // Without waiting, all or nothing.
    let k = s.tryReserveUpTo(n);
    if (k < n && timeout === 0) {
      s.undoReserve(k);
      throw new Full();
    }
    for (let i = 0, copied = false; i < n; i += k, k = 0) {
      if (k === 0) k = s.tryReserveUpTo(n - i);
      if (k === 0) {
        if (!copied) (bytes = bytes.slice()), (copied = true); // the buffer is reused meanwhile
        if (!(yield remainingMs(deadline))) {
          throw new Full(`queue is full: ${i} of the ${n} items were put`);
        }
        k = 1 + s.tryReserveUpTo(n - i - 1);
      }
      this.#checkOpen(k);
      const run = bytes.subarray(starts[i], i + k < n ? starts[i + k] : bytes.length);
      if (sync) ring.sendFramesSync(run, k, s.sendOptions);
      else void ring.postFrames(run, k, s.sendOptions);
    }
  }

  /**
   * Puts every item of `items`, in order, as `put` would one by one. On a typed queue (see
   * {@link QueueOptions.schema}) the batch is written into the queue's shared memory at once,
   * which is many times faster than single puts; every item is checked first (one that does not
   * fit refuses the batch with a `SerializationError` naming it, e.g. `items[3].tag`, and none
   * is put). With `block: false` all or none are put (`Full`); waiting for room, a `timeout`
   * (ms) that passes throws `Full` saying how many of the items were put.
   *
   * @example
   * ```ts
   * import { Queue } from "jsr:@denomp/multiprocessing";
   * import { schema } from "jsr:@denomp/multiprocessing";
   * const q = new Queue({ schema: schema({ i: "i32", tag: "string" }) });
   * await q.putMany([{ i: 1, tag: "a" }, { i: 2, tag: "b" }]);
   * const items = await q.getMany(); // { i: number; tag: string }[]
   * console.assert(items.length === 2 && items[1].tag === "b");
   * ```
   */
  putMany(items: readonly T[], options?: PutOptions): Promise<void> {
    try {
      options = optionsOf(options, "Queue.putMany", "putMany(items, { timeout: 200 })");
      const s = this.#s;
      if (!s.schema) return this.#track(this.#putEach(items, options));
      const g = this.#putMany(items, options, false), signal = options.signal;
      const r = g.next();
      if (r.done) return DONE;
      return this.#track((async () => {
        for (let ms = r.value;;) {
          const x = g.next(await s.reserve(ms, signal));
          if (x.done) return;
          ms = x.value;
        }
      })());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** `putMany` of an untyped queue: one `put` after the other. */
  async #putEach(items: readonly T[], options: PutOptions): Promise<void> {
    for (const item of items) await this.put(item, options);
  }

  /** `putMany` for worker code that blocks its thread instead of awaiting. */
  putManySync(items: readonly T[], options?: Omit<PutOptions, "signal">): void {
    options = optionsOf(options, "Queue.putManySync", "putManySync(items, { timeout: 200 })");
    const s = this.#s;
    if (!s.schema) {
      for (const item of items) this.putSync(item, options);
      return;
    }
    const g = this.#putMany(items, options, true);
    for (let r = g.next(); !r.done; r = g.next(s.reserveSync(r.value)));
  }

  /** A typed queue's records after the first: up to `max - got.length` more that are there. */
  #more(got: T[], max: number): T[] {
    const s = this.#s, schema = s.schema!;
    if (got.length >= max) return got;
    let n = 0;
    try {
      n = s.ring!.tryRecvMany(schema.decodeAt, max - got.length, got as unknown[]);
    } catch (e) {
      if (!got.length) {
        s.discarded(); // its record was consumed: it left the queue
        throw e;
      }
    }
    if (n) s.unreserve(n);
    return got;
  }

  /**
   * Removes and returns the items that are there (at most `max`), waiting for at least one as
   * `get` does (`Empty` with `block: false` or after `timeout` ms; `ValueError` when the queue
   * is closed and drained). On a typed queue they are taken in one go (one lock, one wake-up
   * for waiting writers); on others, one `get` after the other.
   */
  async getMany(options?: GetManyOptions): Promise<T[]> {
    options = optionsOf(options, "Queue.getMany", "getMany({ max: 100, timeout: 200 })");
    const max = maxOf(options.max);
    const got = this.#s.schema ? this.#more([], max) : [];
    return got.length ? got : this.#rest(await this.get(options), max);
  }

  /** `getMany` for worker code that blocks its thread instead of awaiting. */
  getManySync(options?: Omit<GetManyOptions, "signal">): T[] {
    options = optionsOf(options, "Queue.getManySync", "getManySync({ max: 100, timeout: 200 })");
    const max = maxOf(options.max);
    const got = this.#s.schema ? this.#more([], max) : [];
    return got.length ? got : this.#rest(this.getSync(options), max);
  }

  /**
   * After the first item of a `getMany` (got by waiting): the others that are there, up to
   * `max`: in one go on a typed queue, else one `getNowait` after the other.
   */
  #rest(first: T, max: number): T[] {
    if (this.#s.schema) return this.#more([first], max);
    const got = [first];
    while (got.length < max) {
      try {
        got.push(this.getNowait());
      } catch (e) {
        if (e instanceof Empty || e instanceof ValueError) break;
        throw e;
      }
    }
    return got;
  }

  #result(v: unknown): T {
    if (v === TIMEOUT) throw new Empty();
    if (v === EOF) {
      this.#release();
      throw new ValueError("Queue is closed");
    }
    return v as T;
  }

  /** Removes and returns the next item, or END once the queue is closed and drained. */
  #getRaw(timeout: number | undefined, signal?: AbortSignal): Promise<unknown> {
    const s = this.#s;
    if (s.kind !== FIFO) return s.storeGet(timeout, signal);
    return s.ring!.recv(s.decodeAsync, {
      timeout,
      signal,
      eof: s.eof,
      eofPollMs: LIVENESS_SLICE_MS,
      onDiscard: s.discarded,
      durable: true,
    }).then((v) => s.took(v));
  }

  /**
   * Removes and returns the next item, waiting for one. Rejects with `Empty` with `block: false`
   * or after `timeout` ms, and `ValueError` when the queue is closed and drained.
   */
  get(options?: GetOptions): Promise<T> {
    try {
      options = optionsOf(options, "Queue.get", "get({ timeout: 200 })");
      const timeout = timeoutOf(options.block, options.timeout);
      const s = this.#s, ring = s.ring;
      if (ring) {
        // Fast path: an item is there (or comes within a short spin): one settled promise, no
        // async machinery. A consumer faster than its producer lives on this path.
        let v = ring.tryRecv(s.decodeAsync);
        if (v === TIMEOUT && timeout !== 0 && ring.spinForData()) v = ring.tryRecv(s.decodeAsync);
        if (v !== TIMEOUT) {
          // A handle's module (or a big block's buffer) may still be on its way.
          return v instanceof Promise
            ? v.then((x) => s.took(x) as T)
            : Promise.resolve(s.took(v) as T);
        }
      }
      return this.#track(this.#getRaw(timeout, options.signal)).then((v) => this.#result(v));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** `get` for worker code that blocks its thread instead of awaiting. */
  getSync(options?: Omit<GetOptions, "signal">): T {
    options = optionsOf(options, "Queue.getSync", "getSync({ timeout: 200 })");
    const timeout = timeoutOf(options.block, options.timeout);
    const s = this.#s;
    if (s.kind !== FIFO) return this.#result(s.storeGetSync(timeout));
    const v = s.ring!.recvSync(s.decode, {
      timeout,
      eof: s.eof,
      eofPollMs: LIVENESS_SLICE_MS,
      onDiscard: s.discarded,
      durable: true,
    });
    return this.#result(s.took(v));
  }

  /** Removes and returns an item if one is there at once; else throws `Empty`. */
  getNowait(): T {
    return this.getSync({ block: false });
  }

  /** Items put and not yet got, in all processes (approximate while others put and get). */
  qsize(): number {
    return this.#s.count();
  }

  /** True when `qsize()` is 0. */
  empty(): boolean {
    return this.#s.count() === 0;
  }

  /** True when a bounded queue holds `maxsize` items. */
  full(): boolean {
    return this.#s.maxsize > 0 && this.#s.count() >= this.#s.maxsize;
  }

  /**
   * Closes the queue for every process: `put` then throws `ValueError`, items already put can
   * still be got, and `for await` loops (and waiting `get`s) end once it is drained.
   */
  close(): void {
    this.#s.close();
    this.#release();
  }

  /** True once `close()` was called in any process. */
  get closed(): boolean {
    return this.#s.closed;
  }

  /**
   * Waits until every item this process put is written into the queue's shared memory (Python's
   * `join_thread`; a worker does this on its own before it exits).
   */
  async joinThread(): Promise<void> {
    await flushRings();
  }

  /**
   * Lets this process exit without waiting for its unwritten items (Python's
   * `cancel_join_thread`); they may be lost.
   */
  cancelJoinThread(): void {
    this.#s.ring?.detachOutbox();
  }

  /** Iterates over items until the queue is closed and drained (in every process). */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const v = await this.#track(this.#getRaw(undefined));
      if (v === EOF) return this.#release();
      yield v as T;
    }
  }

  /** A short description, like Python's repr. */
  toString(): string {
    return `<${this.constructor.name} at ${this.#off} size=${this.qsize()}${
      this.closed ? " closed" : ""
    }>`;
  }
}

/**
 * A queue without `maxsize` (Python's `multiprocessing.SimpleQueue`): `put`, `get`, `empty`,
 * `close` (and the rest of `Queue`).
 *
 * @example
 * ```ts
 * import { SimpleQueue } from "jsr:@denomp/multiprocessing";
 * const q = new SimpleQueue<string>();
 * await q.put("a");
 * console.assert((await q.get()) === "a" && q.empty());
 * ```
 */
export class SimpleQueue<T = unknown> extends Queue<T> {
  /** Creates an unbounded queue (option: `name`). */
  constructor(options?: Pick<QueueOptions, "name">) {
    super(options ? { ...queueOptions(options), maxsize: 0 } : 0);
  }
}

/**
 * A `Queue` whose consumers report each item done (Python's `JoinableQueue`): `join()` resolves
 * when every item put has been marked done with `taskDone()`.
 *
 * @example
 * ```ts
 * import { JoinableQueue } from "jsr:@denomp/multiprocessing";
 * const q = new JoinableQueue<number>();
 * await q.put(1);
 * await q.get();
 * q.taskDone();
 * await q.join();
 * ```
 */
export class JoinableQueue<T = unknown> extends Queue<T> {
  /** Creates a queue holding at most `maxsize` items (`0`: unbounded), or from options. */
  constructor(maxsize: number | QueueOptions<T> = 0) {
    creatingJoinable = true;
    super(maxsize);
  }

  /** Marks one item got from the queue as done; throws `ValueError` when none is outstanding. */
  taskDone(): void {
    stateOf(this).taskDone();
    releaseOf(this);
  }

  /** Resolves when every item put has been marked done (may be called again later). */
  join(): Promise<void> {
    return trackOf(this, stateOf(this).join());
  }

  /** `join` for worker code that blocks its thread. */
  joinSync(): void {
    stateOf(this).joinSync();
    releaseOf(this);
  }
}

/**
 * A last-in, first-out queue shared by workers (Python's `queue.LifoQueue`, across processes),
 * with `taskDone`/`join`.
 *
 * @example
 * ```ts
 * import { LifoQueue } from "jsr:@denomp/multiprocessing";
 * const q = new LifoQueue<number>();
 * await q.put(1);
 * await q.put(2);
 * console.assert((await q.get()) === 2);
 * ```
 */
export class LifoQueue<T = unknown> extends JoinableQueue<T> {
  /** Creates a stack holding at most `maxsize` items (`0`: unbounded), or from options. */
  constructor(maxsize: number | QueueOptions<T> = 0) {
    creatingKind = LIFO;
    super(maxsize);
  }
}

/**
 * A queue that hands out the lowest item first (Python's `queue.PriorityQueue`, across
 * processes), with `taskDone`/`join`. Put `[priority, item]` pairs: they compare like Python
 * tuples, element by element (numbers, strings, dates, byte arrays and arrays of those); items
 * that compare equal, or hold values that do not compare (plain objects), go out in arrival
 * order instead of raising `TypeError` as Python would.
 *
 * @example
 * ```ts
 * import { PriorityQueue } from "jsr:@denomp/multiprocessing";
 * const q = new PriorityQueue<[number, string]>();
 * await q.put([5, "low"]);
 * await q.put([1, "high"]);
 * console.assert((await q.get())[1] === "high");
 * ```
 */
export class PriorityQueue<T = unknown> extends JoinableQueue<T> {
  /** Creates a priority queue holding at most `maxsize` items (`0`: unbounded), or from options. */
  constructor(maxsize: number | QueueOptions<T> = 0) {
    creatingKind = PRIO;
    super(maxsize);
  }
}

/**
 * Waits until every item this process put on any queue is written into shared memory. The
 * worker bootstrap awaits it before a worker reports its exit; call it at the end of a main
 * program that must not exit with items unwritten (denomp's exit hooks do it in workers).
 *
 * @example
 * ```ts
 * import { flushAll, Queue } from "jsr:@denomp/multiprocessing";
 * const q = new Queue<number>();
 * q.putNowait(1);
 * await flushAll();
 * ```
 */
export function flushAll(): Promise<void> {
  return flushRings();
}

// ---------------------------------------------------------------------------------------------
// Handle registration: a queue reduces to its heap offset (plus one in-flight reference).

function register<C extends Queue<unknown>>(
  name: string,
  cls: new () => C,
  kind: Kind,
): void {
  registerHandle<C, number>({
    name,
    module: import.meta.url,
    cls,
    reduce(q) {
      const s = stateOf(q);
      if (s === closedState) throw new ValueError(`${name} is closed and drained: nothing to send`);
      const off = s.off;
      retain(off); // the in-flight reference; the receiving handle adopts it
      return off;
    },
    rebuild(off) {
      const k = Atomics.load(heap().i32, (off >> 2) + KIND);
      if (k !== kind) throw new Error(`denomp: heap offset ${off} holds no ${name}`);
      attaching = off;
      creatingKind = kind;
      try {
        return new cls();
      } finally {
        attaching = 0;
        creatingKind = FIFO;
      }
    },
  });
}

register("Queue", Queue, FIFO);
register("SimpleQueue", SimpleQueue, FIFO);
register("JoinableQueue", JoinableQueue, FIFO);
register("LifoQueue", LifoQueue, LIFO);
register("PriorityQueue", PriorityQueue, PRIO);

// ---------------------------------------------------------------------------------------------
// Names and snapshot() (issue 16)

/** Options of `new Queue({ maxsize, name })` (and of the other queue classes). */
function queueOptions<T>(o: QueueOptions<T>): QueueOptions<T> {
  if (o === null || Array.isArray(o)) {
    throw new TypeError(
      'new Queue takes a maxsize or options: new Queue({ maxsize: 100, name: "jobs" })',
    );
  }
  if (o.name !== undefined && typeof o.name !== "string") {
    throw new TypeError(`new Queue: name must be a string, got ${typeof o.name}`);
  }
  return o;
}

function objectKind(q: object, kind: Kind, joinable: boolean): ObjectKind {
  if (kind === LIFO) return "LifoQueue";
  if (kind === PRIO) return "PriorityQueue";
  return q instanceof SimpleQueue ? "SimpleQueue" : joinable ? "JoinableQueue" : "Queue";
}

/**
 * What snapshot() reads of a queue: its live counters. Queues are unlisted lazily (a snapshot
 * drops the entry of a block that was freed), so the words are checked to be a queue's first.
 */
function inspectQueue(off: number) {
  const i32 = new Int32Array(heap().sab, off, HEADER >> 2);
  if (Atomics.load(i32, MAGIC_I) !== MAGIC) throw new Error("not a queue any more");
  const kind = Atomics.load(i32, KIND), puts = Atomics.load(i32, PUTS);
  const gets = Atomics.load(i32, GETS), joinable = Atomics.load(i32, JOINABLE) !== 0;
  return {
    holders: [],
    state: {
      depth: Math.max(0, (puts - gets) | 0),
      maxsize: Atomics.load(i32, MAXSIZE),
      puts,
      gets,
      // A FIFO queue's readers wait inside its ring, uncounted.
      waitingGetters: kind === FIFO ? null : Atomics.load(i32, GET_WAITERS),
      waitingPutters: Atomics.load(i32, PUT_WAITERS),
      ...(joinable ? { unfinished: Math.max(0, (puts - Atomics.load(i32, TASKS_DONE)) | 0) } : {}),
      closed: Atomics.load(i32, CLOSED) !== 0,
    },
  };
}
for (const k of ["Queue", "SimpleQueue", "JoinableQueue", "LifoQueue", "PriorityQueue"] as const) {
  inspectors.set(k, inspectQueue);
}
