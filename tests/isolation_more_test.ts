import assert from "node:assert/strict";
import { Pool } from "../lib/pool/pool.ts";
import { Queue } from "../lib/queues/queues.ts";
import { Event, Lock } from "../lib/sync/mod.ts";
import { Value } from "../lib/memory/sharedctypes.ts";
import { SharedMemory } from "../lib/memory/shared_memory.ts";
import { SerializationError } from "../lib/core/errors.ts";
import { __testHooks } from "../lib/process/os_spawn.ts";
import {
  addOne,
  giveBack,
  keepQueue,
  putSquare,
  tellInit,
  waitFor,
} from "./fixtures/isolation_more_tasks.ts";

const TASKS = new URL("./fixtures/isolation_more_tasks.ts", import.meta.url).href;

/** Runs the handle tasks in a Pool(2) of `isolation`; what the parent saw. */
async function poolWithHandles(isolation: "thread" | "process"): Promise<unknown> {
  const q = new Queue<number>(), init = new Queue<string>(), lock = new Lock();
  const v = new Value("i", 0), ev = new Event();
  const pool = new Pool({
    processes: 2,
    isolation,
    initializer: keepQueue,
    initargs: [init],
    preload: [TASKS],
  });
  try {
    const mapped = await pool.starmap(putSquare, [[q, 1], [q, 2], [q, 3]]);
    const squares = [await q.get(), await q.get(), await q.get()].sort((a, b) => a - b);
    const counts = await pool.map(addOne, Array.from({ length: 6 }, () => ({ lock, v })), {
      chunksize: 1,
    });
    const waiting = pool.applyAsync(waitFor, [ev]);
    ev.set();
    const waited = await waiting.get(20_000);
    const tags = await pool.map(tellInit, ["a", "b"], { chunksize: 1 });
    const fromInit = [await init.get(), await init.get()].sort();
    return {
      mapped,
      squares,
      counts: counts.sort((a, b) => a - b),
      value: v.value,
      locked: lock.locked(),
      waited,
      tags,
      fromInit,
    };
  } finally {
    pool.terminate();
    await pool.join();
  }
}

Deno.test("isolation process: a Queue, Lock, Value and Event in Pool task args and initargs work as in a thread pool", async () => {
  const thread = await poolWithHandles("thread");
  const process = await poolWithHandles("process");
  assert.deepEqual(process, thread);
  assert.deepEqual(thread, {
    mapped: [1, 2, 3],
    squares: [1, 4, 9],
    counts: [1, 2, 3, 4, 5, 6],
    value: 6,
    locked: false,
    waited: true,
    tags: ["a", "b"],
    fromInit: ["a", "b"],
  });
  await __testHooks.gone();
});

Deno.test("isolation process: a pool task's SharedMemory arg and a handle result fail that task alone, naming them", async () => {
  const pool = new Pool({ processes: 1, isolation: "process", preload: [TASKS] });
  const shm = new SharedMemory({ size: 16 });
  try {
    await assert.rejects(
      pool.apply(giveBack, [shm]),
      (e) => e instanceof SerializationError && /SharedMemory/.test(e.message),
    );
    const q = new Queue<number>();
    await assert.rejects(
      pool.apply(giveBack, [q]),
      (e) => e instanceof SerializationError && /handle/.test(e.message),
    );
    assert.equal(await pool.apply(putSquare, [q, 4]), 4);
    assert.equal(await q.get({ timeout: 20_000 }), 16);
  } finally {
    shm.close();
    pool.terminate();
    await pool.join();
  }
  await __testHooks.gone();
});
