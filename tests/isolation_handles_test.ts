import assert from "node:assert/strict";
import { Process } from "../lib/process/process.ts";
import { JoinableQueue, Queue, SimpleQueue } from "../lib/queues/queues.ts";
import {
  Barrier,
  BoundedSemaphore,
  Condition,
  Event,
  Lock,
  RLock,
  Semaphore,
} from "../lib/sync/mod.ts";
import { Array as SharedArray, Value } from "../lib/memory/sharedctypes.ts";
import { Pipe } from "../lib/connection/pipe.ts";
import { __testHooks } from "../lib/process/os_spawn.ts";
import { sleep } from "./_helpers.ts";
import {
  blockedGet,
  holdLock,
  produce,
  relayLock,
  sumOf,
  useHandles,
  useMore,
} from "./fixtures/isolation_handle_tasks.ts";

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
      "AbortError",
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

/** Runs `useMore` in a child of `isolation`; what it saw, and what the parent saw after. */
async function runUseMore(isolation: "thread" | "process"): Promise<unknown> {
  const [mine, theirs] = Pipe<string>();
  const h = {
    jq: new JoinableQueue<number>(),
    sq: new SimpleQueue<string>(),
    rlock: new RLock(),
    sem: new Semaphore(2),
    bsem: new BoundedSemaphore(1),
    cond: new Condition(),
    flag: new Value("i", 0),
    barrier: new Barrier(2),
    val: new Value("d", 1.5),
    arr: new SharedArray("i", [1, 2, 3]),
    conn: theirs,
  };
  const out = new Queue();
  const p = new Process({ target: useMore, args: [h, out], isolation });
  p.start();
  await h.jq.put(1);
  await h.jq.put(2);
  await h.jq.join();
  const fromChild = await h.sq.get({ timeout: 20_000 });
  await h.sq.put("from parent");
  const ping = await mine.recv();
  await mine.send("a");
  await mine.send("b");
  await h.barrier.wait(20_000);
  await h.cond.acquire();
  h.flag.value = 7;
  h.cond.notifyAll();
  h.cond.release();
  const seen = await out.get({ timeout: 20_000 });
  await p.join();
  assert.equal(p.exitCode, 0);
  return {
    seen,
    parent: [fromChild, ping, h.val.value, h.arr.slice(), h.rlock.locked(), h.sem.getValue()],
  };
}

Deno.test("isolation process: JoinableQueue, SimpleQueue, RLock, Semaphores, Condition, Barrier, Value, Array and a Pipe end work as with a thread child", async () => {
  const thread = await runUseMore("thread");
  const process = await runUseMore("process");
  assert.deepEqual(process, thread);
  assert.deepEqual(thread, {
    seen: [
      1,
      2,
      "ValueError",
      "from parent",
      true,
      false,
      false,
      0,
      2,
      "ValueError",
      1.5,
      3,
      2,
      [1, 9, 3],
      [1, 9, 3],
      "a",
      "b",
      false,
      "number",
      2,
      true,
    ],
    parent: ["from child", "ping", 2.5, [1, 9, 3], false, 2],
  });
  await __testHooks.gone();
});

Deno.test("isolation process: every item an isolated child put before it exited arrives (its server writes them out first)", async () => {
  // Items that fill the queue's channel many times over: most wait in its writer's batch while
  // the producer, which does not wait for its puts, has already exited.
  const q = new Queue<[number, string]>(), out = new Queue<number>();
  const n = 4000;
  const ps = [
    new Process({ target: produce, args: [q, n, "x".repeat(2000)], isolation: "process" }),
    new Process({ target: sumOf, args: [q, n, out], isolation: "process" }),
  ];
  for (const p of ps) p.start();
  assert.equal(await out.get({ timeout: 30_000 }), n * (n - 1) / 2);
  for (const p of ps) await p.join();
  assert.deepEqual(ps.map((p) => p.exitCode), [0, 0]);
  assert.equal(q.qsize(), 0);
  await __testHooks.gone();
});

Deno.test("isolation process: handles sent through a Queue cross both ways (a Lock got by the child, sent back, is the same lock)", async () => {
  const lock = new Lock(), q = new Queue<Lock | string>(), out = new Queue<unknown>();
  const p = new Process({ target: relayLock, args: [q, out], isolation: "process" });
  p.start();
  await q.put(lock);
  const [back, described] = await out.get({ timeout: 20_000 }) as [Lock, string];
  assert.ok(back instanceof Lock);
  assert.match(described, /Lock served by the parent/);
  assert.equal(lock.locked(), true);
  assert.equal(back.locked(), true);
  await q.put("go");
  assert.equal(await out.get({ timeout: 20_000 }), "released");
  assert.equal(lock.locked(), false);
  await p.join();
  assert.equal(p.exitCode, 0);
  await __testHooks.gone();
});

Deno.test("isolation process: a child blocked in getSync is woken by the parent's put; one killed while blocked takes no item", async () => {
  const q = new Queue<number>(), out = new Queue<number>();
  const start = async () => {
    const ready = new Event();
    const p = new Process({ target: blockedGet, args: [q, ready, out], isolation: "process" });
    p.start();
    assert.equal(await ready.wait(20_000), true);
    await sleep(100); // into getSync
    return p;
  };
  const woken = await start();
  await q.put(4);
  assert.equal(await out.get({ timeout: 20_000 }), 40);
  await woken.join();
  assert.equal(woken.exitCode, 0);
  const killed = await start();
  Deno.kill(killed.pid!, "SIGKILL");
  await killed.join();
  await q.put(5);
  assert.equal(await q.get({ timeout: 2000 }), 5);
  await __testHooks.gone();
});
