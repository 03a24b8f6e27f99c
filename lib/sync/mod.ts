/**
 * Synchronization primitives (Python's `multiprocessing.synchronize` and `threading`): `Lock`,
 * `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition` and `Barrier`, as exported to
 * users. Importing this module registers the handle kinds and `snapshot()` readers of all of
 * them.
 *
 * @module
 */

export {
  type Acquired,
  type AcquireOptions,
  Barrier,
  type BarrierOptions,
  type BlockingAcquireOptions,
  BoundedSemaphore,
  Condition,
  type ConditionOptions,
  Event,
  Lock,
  type ObjectOptions,
  RLock,
  Semaphore,
  type SemaphoreOptions,
  type WaitOptions,
} from "./lock.ts";
