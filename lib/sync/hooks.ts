/**
 * Test-only pause points of `semaphore.ts` and `shared_memory.ts`, not exported from `mod.ts`. A
 * race a few instructions wide cannot be hit on purpose from outside; a test sets a hook here to
 * run the other side of the race at exactly that point. Unset, each costs one property load, on
 * slow paths only.
 *
 * @module
 */

/** The hooks; a test sets one, and unsets it when done. */
export const __testHooks: {
  /**
   * Called by a Semaphore waiter reclaiming permits, between reading a holder-table entry that
   * names a dead process and taking that entry (with its count, by one compare-exchange).
   */
  semaphoreReclaim?: () => void;
  /**
   * Called by a process changing its own Semaphore holder-table entry (an acquire or a
   * release), between reading that entry and changing it.
   */
  semaphoreAccount?: () => void;
  /**
   * Called by `new SharedMemory({ name })` between finding the named block and taking a
   * reference to it.
   */
  sharedMemoryAttach?: () => void;
} = {};
