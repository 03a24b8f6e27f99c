import assert from "node:assert/strict";
import { Process } from "../lib/process/process.ts";
import { Queue } from "../lib/queues/queues.ts";
import { Event } from "../lib/sync/event.ts";
import { Lock } from "../lib/sync/lock.ts";
import { __testHooks } from "../lib/process/os_spawn.ts";
import { holdLock, useHandles } from "./fixtures/isolation_handle_tasks.ts";

/** Runs `useHandles` in a child of `isolation`; what it saw. */
async function runUseHandles(isolation: "thread" | "process"): Promise<unknown> {
  const q = new Queue<number>(), lock = new Lock(), ev = new Event(), out = new Queue();
  const p = new Process({ target: useHandles, args: [q, lock, ev, out], isolation });
  p.start();
  await q.put(1);
  await q.put(2);
  ev.set();
  const seen = await out.get({ timeout: 20_000 });
  await p.join();
  assert.equal(p.exitCode, 0);
  const rest = [await q.get(), await q.get(), await q.get()];
  assert.equal(lock.locked(), false);
  return { seen, rest };
}

Deno.test("isolation process: a Queue, Lock and Event passed to an isolated child work as with a thread child", async () => {
  const thread = await runUseHandles("thread");
  const process = await runUseHandles("process");
  assert.deepEqual(process, thread);
  assert.deepEqual(thread, {
    seen: [
      true,
      true,
      1,
      2,
      0,
      true,
      "Empty",
      "Empty",
      true,
      false,
      false,
      true,
      false,
      false,
      false,
    ],
    rest: [10, 11, 12],
  });
  await __testHooks.gone();
});

Deno.test("isolation process: a child killed with SIGKILL while it holds a Lock: the parent acquires it within a second", async () => {
  const lock = new Lock(), ready = new Event();
  const p = new Process({ target: holdLock, args: [lock, ready], isolation: "process" });
  p.start();
  assert.equal(await ready.wait(20_000), true);
  assert.equal(lock.locked(), true);
  assert.equal(await lock.acquire({ timeout: 100 }), false);
  Deno.kill(p.pid!, "SIGKILL");
  const t0 = performance.now();
  const got = await lock.acquire({ timeout: 5000 });
  const ms = performance.now() - t0;
  assert.notEqual(got, false);
  assert.equal(lock.ownerDied, true);
  assert.ok(ms < 1000, `acquired after ${ms.toFixed(0)} ms`);
  lock.release();
  await p.join();
  assert.equal(p.exitCode, -9);
  await __testHooks.gone();
});
