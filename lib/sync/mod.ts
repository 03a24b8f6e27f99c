/**
 * Synchronization primitives (Python's `multiprocessing.synchronize` and `threading`): `Lock`,
 * `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition` and `Barrier`.
 *
 * Each primitive is a few words in a block of the shared heap, so one object works between the
 * Threads of an isolate, between workers, and between both mixed; a handle crosses to a worker
 * as the block's offset (in `Process` args, or inside any Queue/Pipe message). Waiting is
 * `Atomics.waitAsync` (the event loop keeps running) or, in the `...Sync` twins for CPU-bound
 * worker code, `Atomics.wait`; nothing polls with timers.
 *
 * Robustness: locks record the process slot of their holder. A waiter that finds that process
 * dead (terminated, crashed, or a descendant of a dead one) takes the lock over; the acquire
 * succeeds and `ownerDied` is true. Semaphores keep a small table of the permits each process
 * holds; a waiter that runs out of permits reclaims those of dead processes (see `Semaphore`).
 *
 * The rules the code follows, so that a take-over and a process that was declared dead but still
 * runs (a zombie: Deno cannot stop a worker inside synchronous code) never corrupt anything:
 * - The fence: every operation that changes shared state first calls `checkNotTerminated`
 *   (core/heap.ts; one plain read, so it sits on the hot paths too), and every wait algorithm
 *   calls it again after each sleep (for the mutexes: `mutexWaitsFenced`, primitive.ts). A
 *   zombie meets a `ProcessError` there, takes nothing it was waiting for, and leaves what it
 *   held to be taken over: a Condition waiter does not take its lock back nor unlink itself, a
 *   Barrier party neither counts itself out nor breaks the barrier. The one thing it gives back
 *   is what its wake-up brought: a mutex hand-over reserved for it, or a semaphore wake-up,
 *   which it passes on to another waiter.
 * - Ownership is checked in the same compare-exchange that releases: a lock is freed only by
 *   `mutexRelease(i32, i, owner)` against the holder seen (its own slot for RLock, Barrier and
 *   Condition; for Lock, which any process may release, the holder just read), never by "check,
 *   then release". A holder taken over in between keeps nothing, frees nothing.
 * - Who may clear what: a semaphore holder-table entry (a process's slot and how many permits it
 *   holds, in one word) is claimed, changed and freed by its process, and taken whole by a
 *   reclaimer once that process is dead: each by one compare-exchange against the entry seen,
 *   so a holder declared dead but still running changes nothing once its entry was taken, even
 *   if another process has claimed that entry since. An Event's flag is cleared only by
 *   `clear()`, and a waiter decides by the count of `set()`s, not by the flag, whether it was
 *   woken.
 * - A release takes the permit off its own account before giving it: a permit missing from the
 *   account was either never on it or reclaimed because this process was declared dead, and the
 *   fence tells which.
 *
 * Timeouts are in milliseconds everywhere; options objects are checked for their shape.
 *
 * One module each: `lock.ts` (`Lock`, `RLock`), `semaphore.ts` (`Semaphore`,
 * `BoundedSemaphore`), `event.ts`, `condition.ts`, `barrier.ts`; what they share (options, the
 * steps of an acquire and the guard it returns, a primitive's block and handle, the fenced mutex
 * wait) in `primitive.ts`. Importing this module registers the handle kinds and `snapshot()` readers of
 * all of them.
 *
 * @module
 */

export { Lock, RLock } from "./lock.ts";
export { BoundedSemaphore, Semaphore, type SemaphoreOptions } from "./semaphore.ts";
export { Event } from "./event.ts";
export { Condition, type ConditionOptions } from "./condition.ts";
export { Barrier, type BarrierOptions } from "./barrier.ts";
export type {
  Acquired,
  AcquireOptions,
  BlockingAcquireOptions,
  ObjectOptions,
  WaitOptions,
} from "./primitive.ts";
