// The pool's doorbell and its result rings: no result is slept through (issues 24.1, 24.2).
import assert from "node:assert/strict";
import { keepAlive } from "../lib/core/atomics.ts";
import { alloc } from "../lib/core/heap.ts";
import { Pool } from "../lib/pool/pool.ts";
import { __testHooks, Doorbell } from "../lib/pool/wire.ts";
import { bytes, echoAfter, pauseRingers } from "./fixtures/pool_race_tasks.ts";

/** `p`, or a rejection after `ms` (a hang fails the test instead of stalling the suite). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

Deno.test("results too large for one frame arrive at once even when their first frame waits for room", async () => {
  // One worker (nobody else rings), 500 results of 120-420 KiB in a row: the result ring (~256 KiB)
  // often still holds the tail of the previous one when the next is posted, so its first frame
  // is published later by the worker's background writer.
  await using pool = new Pool({ processes: 1 });
  await pool.whenReady();
  const late = __testHooks.lateWakeups;
  let seed = 7;
  const sizes = Array.from({ length: 500 }, () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return 120_000 + Math.floor((seed / 2147483648) * 300_000);
  });
  const all = Promise.all(sizes.map((n, i) => pool.applyAsync(bytes, [n, i & 255])));
  const out = await within(all, 60_000, "500 large results");
  out.forEach((b, i) => {
    assert.equal(b.length, sizes[i]);
    assert.equal(b[b.length - 1], i & 255);
  });
  // Each was rung for: none waited for the doorbell's time limit (the backstop).
  assert.equal(__testHooks.lateWakeups - late, 0);
});

Deno.test("Doorbell: a ringer paused after seeing the sleeper leaves the flag of its next sleep up", async () => {
  const bell = new Doorbell(alloc(Doorbell.BYTES));
  assert.ok(bell.arm(bell.count())); // the sleeper is asleep
  let seen = -1;
  __testHooks.ringerSawSleeper = () => {
    // The ringer is paused here, having seen the flag. Meanwhile the sleeper wakes (another
    // ring), takes the results and arms its next sleep.
    seen = bell.count();
    assert.ok(bell.arm(seen));
  };
  try {
    bell.ring();
  } finally {
    __testHooks.ringerSawSleeper = null;
  }
  // The sleeper now waits, after the paused ringer went on; the next result must wake it.
  const slept = keepAlive(bell.wait(seen, 2000));
  bell.ring();
  assert.equal(await slept, "rung");
});

Deno.test("stress: ringers paused after seeing the sleeper, a sleeper slow to wait; nothing is slept through", async () => {
  // Widens both sides of the window: ringers pause after seeing the parent's flag, the parent
  // pauses between arming and waiting. A ringer that cleared the flag there would leave the
  // parent asleep with its flag down, and later results unrung (caught by lateWakeups).
  await using pool = new Pool({ processes: 2, initializer: pauseRingers });
  await pool.whenReady();
  const late = __testHooks.lateWakeups;
  __testHooks.sleeperArmed = () => {
    const end = performance.now() + 0.2;
    while (performance.now() < end) { /* the parent is slow to wait */ }
  };
  try {
    for (let round = 0; round < 10; round++) {
      const xs = Array.from({ length: 100 }, (_, i) => round * 100 + i);
      const got = await within(
        Promise.all(xs.map((x) => pool.applyAsync(echoAfter, [x, x % 3]))),
        30_000,
        `round ${round}`,
      );
      assert.deepEqual(got, xs);
    }
  } finally {
    __testHooks.sleeperArmed = null;
  }
  assert.equal(__testHooks.lateWakeups - late, 0);
});
