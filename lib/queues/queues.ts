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
 * The classes are in `queue.ts`; the state their handles share (counts, reserve, join) in
 * `shared.ts`; the storage interface in `store.ts`, with its two stores, `ring_store.ts` (FIFO)
 * and `heap_store.ts` (LIFO, priority; sort keys in `sort_key.ts`); a consumer's held copies and
 * the holders table in `held.ts`; the block's words in `layout.ts`; the item codec in
 * `items.ts`. Importing this module registers the handle kinds and `snapshot()` readers of all
 * of them.
 *
 * @module
 */

import { heap } from "../core/heap.ts";
import { registerHandle } from "../core/reduction.ts";
import { inspectors } from "../core/waitfor.ts";
import {
  CLOSED,
  FIFO,
  GET_WAITERS,
  GETS,
  HEADER,
  JOINABLE,
  KIND,
  type Kind,
  LIFO,
  MAGIC,
  MAGIC_I,
  MAXSIZE,
  PRIO,
  PUT_WAITERS,
  PUTS,
  TASKS_DONE,
} from "./layout.ts";
import {
  attachQueue,
  JoinableQueue,
  LifoQueue,
  PriorityQueue,
  Queue,
  reduceQueue,
  SimpleQueue,
} from "./queue.ts";

export {
  flushAll,
  type GetManyOptions,
  type GetOptions,
  JoinableQueue,
  LifoQueue,
  PriorityQueue,
  type PutOptions,
  Queue,
  type QueueOptions,
  SimpleQueue,
} from "./queue.ts";

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
      return reduceQueue(q, name);
    },
    rebuild(off) {
      const k = Atomics.load(heap().i32, (off >> 2) + KIND);
      if (k !== kind) throw new Error(`denomp: heap offset ${off} holds no ${name}`);
      return attachQueue(off, kind, cls);
    },
  });
}

register("Queue", Queue, FIFO);
register("SimpleQueue", SimpleQueue, FIFO);
register("JoinableQueue", JoinableQueue, FIFO);
register("LifoQueue", LifoQueue, LIFO);
register("PriorityQueue", PriorityQueue, PRIO);

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
