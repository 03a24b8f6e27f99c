// AsyncResult.cancel() and running(): a task is withdrawn only if no worker has begun it, wherever
// it waits (the pool's queue, a worker's ring), also after work stealing moved tasks around.
import assert from "node:assert/strict";
import { Pool } from "../lib/pool/pool.ts";
import { __testHooks } from "../lib/pool/wire.ts";
import { CancelledError } from "../lib/core/errors.ts";
import { RawArray } from "../lib/memory/sharedctypes.ts";
import { sleepMs, square } from "./fixtures/pool_tasks.ts";
import { countRun } from "./fixtures/pool_race_tasks.ts";
import { range, sleep, waitUntil } from "./_helpers.ts";

/** Many instant tasks, one by one: the pool measures tiny durations and batches many per worker. */
async function warmUp(pool: Pool): Promise<void> {
  await pool.map(square, range(300), 1);
}

Deno.test("AsyncResult.cancel(): a task in the pool's queue is dropped at once, never runs, rejects with CancelledError", async () => {
  await using pool = new Pool({ processes: 1 });
  const runs = new RawArray("i", 4);
  const busy = pool.applyAsync(sleepMs, [300]);
  await waitUntil(() => busy.running(), 10_000, 2);
  // Durations unknown yet: one task per worker, so this one waits in the pool's queue.
  let failed: unknown = null;
  const queued = pool.applyAsync(countRun, [runs, 1, 0], { errorCallback: (e) => (failed = e) });
  await sleep(20);
  assert.equal(queued.running(), false);
  const skips = __testHooks.skips;
  assert.equal(queued.cancel(), true);
  assert.equal(__testHooks.skips, skips, "it was in a worker's ring: the test tests nothing");
  assert.ok(queued.ready() && !queued.successful());
  assert.ok(failed instanceof CancelledError); // at once, through errorCallback
  assert.equal(queued.cancel(), true); // again: still cancelled
  assert.equal(String(queued), "<AsyncResult cancelled>");
  await assert.rejects(queued.get(), CancelledError);
  assert.equal(await busy.get(10_000), "slept");
  assert.equal(await pool.apply(countRun, [runs, 2, 0], { timeout: 5000 }), 2);
  assert.equal(runs.get(1), 0, "the cancelled task ran");
});

Deno.test("AsyncResult.cancel(): a task in a worker's ring behind a running one is skipped by the worker", async () => {
  await using pool = new Pool({ processes: 1 });
  await warmUp(pool);
  const runs = new RawArray("i", 8);
  // One tick: the slow task and the three behind it go into the worker's ring in one message.
  const slow = pool.applyAsync(sleepMs, [400]);
  const behind = [1, 2, 3].map((i) => pool.applyAsync(countRun, [runs, i, 0]));
  await waitUntil(() => slow.running(), 10_000, 2);
  const skips = __testHooks.skips;
  assert.ok(behind.every((r) => !r.running() && !r.ready()));
  assert.equal(behind[1].cancel(), true);
  assert.equal(
    __testHooks.skips,
    skips + 1,
    "it was not in the worker's ring: the test tests nothing",
  );
  await assert.rejects(behind[1].get(), CancelledError);
  assert.equal(await behind[0].get(10_000), 1);
  assert.equal(await behind[2].get(10_000), 3);
  assert.equal(await slow.get(), "slept");
  assert.deepEqual([1, 2, 3].map((i) => runs.get(i)), [1, 0, 1]);
  // The skipped task holds no place in the worker's window.
  assert.equal(await pool.apply(square, [5], { timeout: 5000 }), 25);
});

Deno.test("AsyncResult: running() is false until a worker begins the task; cancel() is false from then on and it completes", async () => {
  await using pool = new Pool({ processes: 1 });
  const r = pool.applyAsync(sleepMs, [300]);
  assert.equal(r.running(), false); // not even handed out yet
  await waitUntil(() => r.running(), 10_000, 2);
  assert.equal(r.cancel(), false);
  assert.ok(r.running() && !r.ready());
  assert.equal(await r.get(10_000), "slept"); // it ran on: nothing was killed
  assert.equal(r.running(), false);
  assert.equal(r.cancel(), false); // ready
  // A map of one chunk can be cancelled; one of several chunks cannot (cancel() says false).
  const busy = pool.applyAsync(sleepMs, [300]);
  const one = pool.mapAsync(square, [1, 2, 3], { chunksize: 3 });
  const many = pool.mapAsync(square, [1, 2, 3], { chunksize: 1 });
  assert.equal(many.cancel(), false);
  assert.equal(one.cancel(), true);
  await assert.rejects(one.get(), CancelledError);
  assert.deepEqual(await many.get(10_000), [1, 4, 9]);
  assert.equal(await busy.get(10_000), "slept");
});

Deno.test("AsyncResult.cancel(): more tasks than a worker has cancel slots are all withdrawn, none runs", async () => {
  await using pool = new Pool({ processes: 1 });
  await warmUp(pool);
  const n = 60; // a worker has 15 cancel slots
  const runs = new RawArray("i", n);
  const slow = pool.applyAsync(sleepMs, [400]);
  const rs = range(n).map((i) => pool.applyAsync(countRun, [runs, i, 0]));
  await waitUntil(() => slow.running(), 10_000, 2);
  assert.deepEqual(rs.map((r) => r.cancel()), rs.map(() => true));
  for (const r of rs) await assert.rejects(r.get(), CancelledError);
  assert.equal(await slow.get(10_000), "slept");
  assert.equal(await pool.apply(square, [5], { timeout: 5000 }), 25);
  assert.deepEqual(range(n).filter((i) => runs.get(i) !== 0), [], "cancelled tasks ran");
});

Deno.test("AsyncResult.cancel() after work stealing: a running task whose queue was taken back is not cancellable", async () => {
  await using pool = new Pool({ processes: 2 });
  await warmUp(pool);
  const steals = __testHooks.steals;
  // One tick: each worker gets an even share, the slow task's worker holds fast ones behind it;
  // the other runs dry and takes them back.
  const slow = pool.applyAsync(sleepMs, [600]);
  const fast = range(9).map((i) => pool.applyAsync(square, [i]));
  await waitUntil(() => __testHooks.steals > steals && slow.running(), 10_000, 2);
  assert.equal(slow.cancel(), false, "a running task was reported withdrawn");
  assert.ok(slow.running());
  assert.deepEqual(await Promise.all(fast.map((r) => r.get(10_000))), range(9).map((i) => i * i));
  assert.equal(await slow.get(10_000), "slept");
});
