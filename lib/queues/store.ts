/**
 * The storage interface behind `Queue`: where a queue's items wait between `put` and `get`. A
 * FIFO queue's items go through a ring (`RingStore`, Python's pipe and feeder thread); a LIFO or
 * priority queue's wait in heap blocks under a lock (`HeapStore`). The counts, `maxsize` and
 * `join` are the same for both and stay with the queue (`Shared`), so `Queue` says each thing
 * once and the store says how items go in and out.
 *
 * Why an interface and not a branch on the kind: the FIFO path is the hot one, and a handle's
 * store never changes, so each call site sees one class (monomorphic) and the interface costs a
 * call the JIT inlines; nothing is allocated per item for it.
 *
 * @module
 */

import type { SendOptions } from "../core/ring.ts";

/** What a store needs of the queue's counts (see `Shared`). */
export interface Counter {
  /**
   * After the store gave `v` (an item, `TIMEOUT` or `EOF`): counts an item as got; an item that
   * did not decode is counted got and done, and its error is thrown.
   */
  took(v: unknown): unknown;
  /** Closed, and every item put has been got: nothing more can come. */
  readonly eof: () => boolean;
  /** A torn item was discarded: it will never be got nor marked done. */
  readonly discarded: () => void;
  /** Passed to every ring write: a put whose item never reached the ring gives its place back. */
  readonly sendOptions: SendOptions;
}

/** Where a queue's items wait: a ring (FIFO) or heap blocks (LIFO, priority). */
export interface Store {
  /**
   * Hands over an item whose place is reserved: `bytes` its encoding (valid until the next
   * encode), `item` the value itself (a priority store takes its sort key from it). Returns
   * `undefined` when the item is handed over already (a FIFO store writes it through, or into
   * this process's outbox, and never waits), else a promise of it.
   */
  put(bytes: Uint8Array, item: unknown): Promise<void> | undefined;
  /** `put` for worker code that blocks its thread. */
  putSync(bytes: Uint8Array, item: unknown): void;
  /**
   * An item that is there now (or, with `spin`, comes within a short spin), not counted yet
   * (pass it to `Counter.took`), possibly as a promise of it; `TIMEOUT` when none is.
   */
  poll(spin: boolean): unknown;
  /** Takes the next item, waiting up to `timeout` ms: counted got, or `TIMEOUT` or `EOF`. */
  get(timeout: number | undefined, signal?: AbortSignal): Promise<unknown>;
  /** `get` for worker code that blocks its thread. */
  getSync(timeout: number | undefined): unknown;
  /** Wakes the readers waiting for an item, so that they re-check for the end. */
  wakeReaders(): void;
  /**
   * A process died since the last look: puts back what dead consumers held, and returns how
   * many items dead producers had put but never wrote (they leave the counts).
   */
  reapDead(): number;
  /** The last `reapDead` met a dead consumer still changing its held items: look again. */
  readonly reapAgain: boolean;
  /** This process's `taskDone`: the copy it kept of its oldest item goes (see `held.ts`). */
  taskDone(): void;
}
