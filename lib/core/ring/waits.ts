/**
 * How the two sides of a ring wait for each other: a sleeper announces itself in a count and
 * sleeps on the word the other side moves; the other side notifies only when the count says
 * someone sleeps. Also the release of a ring's locks and the hooks tests pause races with.
 *
 * @module
 */

import { mutexRelease, type Waits } from "../atomics.ts";
import { heap } from "../heap.ts";
import { SPIN, W } from "./layout.ts";

/** Spins until `i32[idx] !== v`; true if it changed. */
export function spin(i32: Int32Array, idx: number, v: number, n = SPIN): boolean {
  for (let s = 0; s < n; s++) if (Atomics.load(i32, idx) !== v) return true;
  return false;
}

/** Releases the lock at `i32[idx]` if this process still owns it (see "Zombies" in ring.ts). */
export function unlock(i32: Int32Array, idx: number): void {
  const me = heap().slot;
  // Common case in one CAS: held by us with no flags (nobody waits), so no notify is due.
  if (Atomics.compareExchange(i32, idx, me, 0) === me) return;
  mutexRelease(i32, idx, me);
}

/**
 * Test-only hooks (not exported from mod.ts): called at points where a race used to hide
 * (a lost wake-up, a zombie's frames), so a test can pause one side there. `base` is the ring's; `sleepers` says who
 * sleeps: readers (waiting for `W`) or writers (waiting for `R`).
 */
export const __testHooks: {
  /** A sleeper has announced itself and re-checked its word; it is about to sleep. */
  beforeSleep?: (base: number, sleepers: Sleepers) => void;
  /** A notifier has stored its word and seen a sleeper announced; it is about to notify. */
  notifierLoaded?: (base: number, sleepers: Sleepers) => void;
  /** A writer has published one frame of a streamed message (more may follow in its loop). */
  framePublished?: (base: number) => void;
  /** A writer has passed its fence and is about to copy a frame of a streamed message in. */
  frameWriting?: (base: number) => void;
  /** A reader has copied a continuation frame out and is about to move `R` past it. */
  frameTaken?: (base: number) => void;
} = {};

/** Who sleeps on a ring word (for {@link __testHooks}). */
export type Sleepers = "readers" | "writers";

/**
 * Sleeps on `i32[index]` while it holds `value`, announced in the sleeper count `i32[count]`.
 * A count, and not a flag that the notifier clears: with a flag, a notifier that read a stale
 * "asleep" could clear it after a new sleeper had raised it, and the next notifier would skip
 * the notify (a sleeper lost for good). A sleeper adds itself before its re-check; it is taken
 * off by the notifier that wakes it (see {@link wake}), or by itself when it wakes otherwise
 * (timeout, the word had changed). A notifier never takes off more than it woke, so a sleeper
 * on its way to sleep stays counted. A sleeper that never wakes (a terminated worker), or one
 * woken by a notify from outside (an aborted wait elsewhere), leaves the count too high: the
 * cost is a needless notify per message, never a lost one.
 */
export function* sleepOn(
  base: number,
  i32: Int32Array,
  index: number,
  value: number,
  count: number,
  ms: number,
): Waits<void> {
  Atomics.add(i32, count, 1);
  let woken = false;
  try {
    if (Atomics.load(i32, index) !== value) return;
    __testHooks.beforeSleep?.(base, index === W ? "readers" : "writers");
    woken = (yield { i32, index, value, ms }) === "ok";
  } finally {
    if (!woken) Atomics.sub(i32, count, 1); // a notifier that woke us took us off (see `wake`)
  }
}

/**
 * Wakes the sleepers on `i32[index]` and takes them off the count `i32[count]`: exactly those
 * it woke (`Atomics.notify` says how many), never one that announced itself and is not asleep
 * yet, so the next notifier still sees that one. A notifier that woke nobody changes nothing.
 * Without this, every message published while a woken sleeper is on its way back (tens of
 * microseconds) would pay a notify of its own.
 */
export function wake(i32: Int32Array, index: number, count: number): void {
  const n = Atomics.notify(i32, index);
  if (n) Atomics.sub(i32, count, n);
}
