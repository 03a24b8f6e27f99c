/**
 * The death watcher: one loop per isolate that waits on the heap's death counter (bumped by
 * `bumpDeaths` in _heap whenever a process dies or an actor stops) and calls every subscribed scan
 * on each bump. The pool notices its workers' deaths through it, the actors' exit watcher the
 * actors that stopped; one loop serves both, so a death wakes each isolate once.
 *
 * Why no keep-alive: the loop waits with a bare `Atomics.waitAsync` (not `waitAsync` from
 * _atomics), which does not keep the program alive: watching must not (a supervisor of daemon
 * actors, a pool of daemonic workers, end with the program). What the user awaits is kept alive
 * where it is awaited.
 *
 * A scan returns within how many milliseconds it wants to run again even without a death (the
 * loop waits for the soonest), or `false` once it has nothing left to watch (it is unsubscribed).
 * The loop starts with the first subscription and ends when none are left.
 *
 * @module
 */

import { DEATH_EPOCH_INDEX, heap } from "./heap.ts";

/**
 * Called on each death (and each {@link kick}): returns within how many ms it wants to run again
 * even without a death (`Infinity`: at the next death only), or `false` when it has nothing left
 * to watch (it is unsubscribed; {@link subscribe} it again to watch anew).
 */
export type DeathScan = () => number | false;

/** The subscribed scans of this isolate. */
const scans = new Set<DeathScan>();
let running = false;

async function loop(): Promise<void> {
  running = true;
  try {
    const i32 = heap().i32;
    while (scans.size) {
      const epoch = Atomics.load(i32, DEATH_EPOCH_INDEX);
      let ms = Infinity;
      for (const scan of scans) {
        const r = scan();
        if (r === false) scans.delete(scan);
        else if (r < ms) ms = r;
      }
      if (!scans.size) break;
      const r = Atomics.waitAsync(i32, DEATH_EPOCH_INDEX, epoch, ms === Infinity ? undefined : ms);
      if (r.async) await r.value;
    }
  } finally {
    running = false;
  }
}

/**
 * Calls `scan` now and on each death from now on, until it returns `false` (what it watches may
 * have died before it subscribed). Subscribing a scan already subscribed runs every scan once.
 */
export function subscribe(scan: DeathScan): void {
  scans.add(scan);
  kick();
}

/**
 * Runs every scan now (what was just added may have died already). It wakes the waiters on the
 * death counter in every isolate: a spurious wake-up elsewhere costs one scan.
 */
export function kick(): void {
  if (running) Atomics.notify(heap().i32, DEATH_EPOCH_INDEX);
  else if (scans.size) void loop();
}
