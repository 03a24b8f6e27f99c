// A slow task delays only itself: tasks never wait behind a busy worker while another is idle
// (work stealing), and a task's timeout counts from when it starts (issue 13.4).
import assert from "node:assert/strict";
import { Pool } from "../lib/pool.ts";
import { TimeoutError } from "../lib/errors.ts";
import { sleepMs, square } from "./fixtures/pool_tasks.ts";

Deno.test("a slow task delays only itself: 999 fast tasks on 2 workers finish while it runs", async () => {
  await using pool = new Pool({ processes: 2 });
  await pool.whenReady();
  const t0 = performance.now();
  const fast: Promise<number>[] = [];
  let slow: Promise<string> | null = null;
  for (let i = 0; i < 1000; i++) {
    // In the middle, so that fast tasks are batched behind it in its worker's ring.
    if (i === 500) slow = pool.apply(sleepMs, [4000]);
    else fast.push(pool.apply(square, [i]));
  }
  const out = await Promise.all(fast);
  const ms = performance.now() - t0;
  assert.equal(out.length, 999);
  assert.equal(out[998], 999 * 999);
  assert.ok(ms < 2500, `the fast tasks took ${ms.toFixed(0)} ms`); // ~30 ms here
  assert.equal(await slow, "slept");
});

Deno.test("with a timeout on every task, only the slow one times out: none times out unstarted", async () => {
  await using pool = new Pool({ processes: 2 });
  await pool.whenReady();
  const results = Array.from(
    { length: 400 },
    (_, i) =>
      i === 100
        ? pool.apply(sleepMs, [20_000], { timeout: 1500 }).catch((e) => e)
        : pool.apply(square, [i], { timeout: 1500 }).catch((e) => e),
  );
  const out = await Promise.all(results);
  assert.ok(out[100] instanceof TimeoutError, String(out[100]));
  const failed = out.filter((x, i) => i !== 100 && x !== i * i);
  assert.deepEqual(failed, []);
});

Deno.test("a task's timeout counts from when it starts, not from when it was queued", async () => {
  await using pool = new Pool({ processes: 1 });
  await pool.whenReady();
  const first = pool.apply(sleepMs, [700]);
  // Queued behind `first` for ~700 ms, then runs 200 ms: within its 600 ms.
  const second = pool.apply(sleepMs, [200], { timeout: 600 }).catch((e) => e);
  assert.deepEqual(await Promise.all([first, second]), ["slept", "slept"]);
  // And it still counts: running past it fails.
  await assert.rejects(pool.apply(sleepMs, [5000], { timeout: 200 }), TimeoutError);
});
