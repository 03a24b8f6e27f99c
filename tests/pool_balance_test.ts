// A slow task delays only itself: tasks never wait behind a busy worker while another is idle
// (work stealing), and a task's timeout counts from when it starts (issue 13.4).
import assert from "node:assert/strict";
import { Pool } from "../lib/pool/pool.ts";
import { __testHooks } from "../lib/pool/wire.ts";
import { TimeoutError } from "../lib/core/errors.ts";
import { RawArray } from "../lib/memory/sharedctypes.ts";
import { sleepMs, square } from "./fixtures/pool_tasks.ts";
import { countRun } from "./fixtures/pool_race_tasks.ts";

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

Deno.test("stress: with tasks taken back from busy workers again and again, each runs exactly once", async () => {
  await using pool = new Pool({ processes: 3 });
  await pool.whenReady();
  const n = 1500;
  const runs = new RawArray("i", n);
  const steals = __testHooks.steals;
  let seed = 11;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const out: Promise<number>[] = [];
  for (let i = 0; i < n; i++) {
    // Mostly instant, now and then one of 10-40 ms: fast tasks pile up behind it and are taken
    // back by whichever worker runs dry.
    const ms = rnd() < 0.02 ? 10 + 30 * rnd() : 0;
    out.push(pool.apply(countRun, [runs, i, ms]));
    if (i % 100 === 99) await delay(5); // submissions in waves, as results come in
  }
  assert.deepEqual(await Promise.all(out), Array.from({ length: n }, (_, i) => i));
  const twice = Array.from({ length: n }, (_, i) => i).filter((i) => runs.get(i) !== 1);
  assert.deepEqual(twice, []);
  assert.ok(__testHooks.steals > steals, "no task was ever taken back: the test tests nothing");
});

Deno.test("after close(), tasks queued behind a slow one still run elsewhere; join waits for all", async () => {
  await using pool = new Pool({ processes: 2 });
  await pool.whenReady();
  const t0 = performance.now();
  const fast: Promise<number>[] = [];
  let slow: Promise<string> | null = null;
  for (let i = 0; i < 300; i++) {
    if (i === 150) slow = pool.apply(sleepMs, [4000]);
    else fast.push(pool.apply(square, [i]));
  }
  pool.close();
  assert.equal((await Promise.all(fast)).length, 299);
  const ms = performance.now() - t0;
  assert.ok(ms < 2500, `the fast tasks took ${ms.toFixed(0)} ms`);
  await pool.join();
  assert.equal(await slow, "slept");
});
