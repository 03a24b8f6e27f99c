/**
 * The store of a FIFO queue (`Queue`, `SimpleQueue`, `JoinableQueue`): its encoded items go
 * through a {@link Ring} in the queue's block. As in Python, `put` on a queue with room never
 * blocks: the item is written through to the ring, or (ring full) kept in this process's outbox,
 * which a background pump writes out in order (Python's feeder thread). A worker flushes its
 * outboxes before it reports its exit (`flushAll`).
 *
 * A `JoinableQueue` consumer worker keeps a copy of each item it got until `taskDone()` (its
 * {@link Holders} entry), taken as the item is decoded, while its bytes still view the ring.
 *
 * @module
 */

import { heap, MAIN_SLOT, release } from "../core/heap.ts";
import { type Decode, Ring, TIMEOUT } from "../core/ring.ts";
import { LIVENESS_SLICE_MS } from "../core/atomics.ts";
import type { Schema } from "./typed.ts";
import { HEADER, HOLDERS, SCHEMA } from "./layout.ts";
import { Holders } from "./held.ts";
import { DecodeFailure, decodeItem, decodeItemAsync } from "./items.ts";
import type { Counter, Store } from "./store.ts";

/** A FIFO queue's items, in its ring (see the module doc). */
export class RingStore implements Store {
  readonly ring: Ring;
  /** A `JoinableQueue`'s holders table (at-least-once, see `held.ts`), else null. */
  readonly holders: Holders | null;
  /** Decodes items got from the ring (and keeps a copy when this process holds them). */
  readonly decode: Decode<unknown>;
  /** The same for async receivers (see {@link decodeItemAsync}). */
  readonly decodeAsync: Decode<unknown>;
  /** The queue's header (see `Shared.i32`). */
  readonly #i32: Int32Array;
  readonly #counts: Counter;

  constructor(
    off: number,
    i32: Int32Array,
    counts: Counter,
    joinable: boolean,
    typed: Schema | null,
  ) {
    this.ring = new Ring(off + HEADER, off);
    this.#i32 = i32;
    this.#counts = counts;
    this.holders = joinable ? new Holders(i32, this.ring, counts.sendOptions) : null;
    const decodeTyped = (payload: Uint8Array): unknown => {
      try {
        return typed!.decode(payload);
      } catch (e) {
        return new DecodeFailure(e);
      }
    };
    const holds = joinable && heap().slot !== MAIN_SLOT;
    const holding = (decode: Decode<unknown>): Decode<unknown> => (payload, owned) => {
      const v = decode(payload, owned);
      // The copy is taken now, while `payload` still views the ring.
      if (!(v instanceof DecodeFailure)) this.holders!.hold(payload);
      return v;
    };
    this.decode = typed ? decodeTyped : holds ? holding(decodeItem) : decodeItem;
    this.decodeAsync = typed ? decodeTyped : holds ? holding(decodeItemAsync) : decodeItemAsync;
  }

  /** Lays out an empty ring in a new queue block of `size` bytes. */
  static init(off: number, size: number): void {
    Ring.init(off + HEADER, size - HEADER);
  }

  /**
   * Frees what a FIFO queue's block points to when the last handle anywhere is gone: the held
   * items' blocks of its consumers and a dead reader's half-assembled item.
   */
  static free(off: number): void {
    Ring.dispose(off + HEADER);
    const i32 = heap().i32, q = off >> 2;
    if (i32[q + SCHEMA]) release(i32[q + SCHEMA]);
    Holders.free(off);
  }

  put(bytes: Uint8Array): undefined {
    void this.ring.post(bytes, this.#counts.sendOptions);
  }

  putSync(bytes: Uint8Array): void {
    this.ring.sendSync(bytes, this.#counts.sendOptions);
  }

  /**
   * Get's fast path: an item is there (or comes within a short spin): one settled promise, no
   * async machinery. A consumer faster than its producer lives on this path.
   */
  poll(spin: boolean): unknown {
    const ring = this.ring;
    const v = ring.tryRecv(this.decodeAsync);
    return v === TIMEOUT && spin && ring.spinForData() ? ring.tryRecv(this.decodeAsync) : v;
  }

  get(timeout: number | undefined, signal?: AbortSignal): Promise<unknown> {
    const counts = this.#counts;
    return this.ring.recv(this.decodeAsync, {
      timeout,
      signal,
      eof: counts.eof,
      eofPollMs: LIVENESS_SLICE_MS,
      onDiscard: counts.discarded,
      durable: true,
    }).then((v) => counts.took(v));
  }

  getSync(timeout: number | undefined): unknown {
    const counts = this.#counts;
    return counts.took(this.ring.recvSync(this.decode, {
      timeout,
      eof: counts.eof,
      eofPollMs: LIVENESS_SLICE_MS,
      onDiscard: counts.discarded,
      durable: true,
    }));
  }

  wakeReaders(): void {
    this.ring.wakeReaders();
  }

  reapDead(): number {
    this.reapAgain = Atomics.load(this.#i32, HOLDERS) !== 0 && this.holders !== null &&
      this.holders.reap();
    return this.ring.reapDead();
  }

  /** The last `reapDead` met a dead holder still busy (see `Holders.reap`): look again. */
  reapAgain = false;

  taskDone(): void {
    this.holders?.drop();
  }
}
