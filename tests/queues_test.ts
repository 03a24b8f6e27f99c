// Queues across workers: Python semantics (CPython test_queue.py, _TestQueue), robustness
// (nothing lost, nothing torn), fidelity, handles inside items, any item size.
import assert from "node:assert/strict";
import { Process } from "../lib/process/process.ts";
import {
  flushAll,
  JoinableQueue,
  LifoQueue,
  PriorityQueue,
  Queue,
  SimpleQueue,
} from "../lib/queues/queues.ts";
import { Empty, Full, SerializationError, ValueError } from "../lib/core/errors.ts";
import {
  consume,
  consumeSync,
  drain,
  echo,
  getForever,
  getForeverSync,
  joinableWorker,
  produce,
  putBig,
  putPriorities,
  replyThrough,
} from "./fixtures/queue_targets.ts";

import { sleep, until } from "./_helpers.ts";

function start(target: (...a: never[]) => unknown, ...args: unknown[]): Process {
  const p = new Process({ target: target as (...a: unknown[]) => unknown, args });
  p.start();
  return p;
}

async function stop(...ps: Process[]): Promise<void> {
  for (const p of ps) {
    if (p.isAlive()) p.terminate();
    await p.join();
  }
}

Deno.test("FIFO order, putNowait/getNowait, qsize/empty/full", async () => {
  const q = new Queue<number>(3);
  assert.equal(q.maxsize, 3);
  assert.ok(q.empty() && !q.full() && q.qsize() === 0);
  await q.put(1);
  q.putNowait(2);
  q.putSync(3);
  assert.ok(q.full() && !q.empty());
  assert.equal(q.qsize(), 3);
  assert.throws(() => q.putNowait(4), Full);
  await assert.rejects(q.put(4, { block: false }), Full);
  assert.throws(() => q.putSync(4, { block: false }), Full);
  assert.equal(await q.get(), 1);
  assert.equal(q.getNowait(), 2);
  assert.equal(q.getSync(), 3);
  assert.throws(() => q.getNowait(), Empty);
  await assert.rejects(q.get({ block: false }), Empty);
  assert.ok(q.empty());
});

Deno.test("timeouts: Empty and Full after about the timeout; a negative timeout is a ValueError", async () => {
  const q = new Queue<number>(1);
  let t0 = performance.now();
  await assert.rejects(q.get({ timeout: 150 }), Empty);
  let dt = performance.now() - t0;
  assert.ok(dt >= 140 && dt < 3000, `get timed out after ${dt} ms`);
  t0 = performance.now();
  assert.throws(() => q.getSync({ timeout: 100 }), Empty);
  dt = performance.now() - t0;
  assert.ok(dt >= 90 && dt < 3000, `getSync timed out after ${dt} ms`);
  await q.put(1);
  t0 = performance.now();
  await assert.rejects(q.put(2, { timeout: 150 }), Full);
  dt = performance.now() - t0;
  assert.ok(dt >= 140 && dt < 3000, `put timed out after ${dt} ms`);
  assert.throws(() => q.putSync(2, { timeout: 50 }), Full);
  await assert.rejects(q.get({ timeout: -1 }), ValueError);
  await assert.rejects(q.put(2, { timeout: -1 }), ValueError);
  assert.throws(() => q.getSync({ timeout: -5 }), ValueError);
  // block: false ignores the timeout, as in Python.
  assert.equal(await q.get({ block: false, timeout: -1 }), 1);
});

Deno.test("maxsize backpressure: a put waits until a get makes room", async () => {
  const q = new Queue<number>(2);
  await q.put(1);
  await q.put(2);
  let done = false;
  const p = q.put(3).then(() => (done = true));
  await sleep(50);
  assert.equal(done, false);
  assert.equal(await q.get(), 1);
  await p;
  assert.equal(done, true);
  assert.deepEqual([await q.get(), await q.get()], [2, 3]);
});

Deno.test("an abort signal ends a waiting get", async () => {
  const q = new Queue<number>();
  const ac = new AbortController();
  const p = q.get({ signal: ac.signal });
  setTimeout(() => ac.abort(new Error("stop")), 30);
  await assert.rejects(p, /stop/);
  await q.put(7); // the aborted get consumed nothing
  assert.equal(await q.get(), 7);
});

Deno.test("close(): put throws, items already put can be got, for await ends when drained", async () => {
  const q = new Queue<number>();
  for (let i = 0; i < 5; i++) await q.put(i);
  q.close();
  assert.ok(q.closed);
  await assert.rejects(q.put(9), ValueError);
  assert.throws(() => q.putNowait(9), ValueError);
  const got: number[] = [];
  for await (const x of q) got.push(x);
  assert.deepEqual(got, [0, 1, 2, 3, 4]);
  await assert.rejects(q.get(), /Queue is closed/);
});

Deno.test("close() ends a for-await in another worker and wakes a waiting get", async () => {
  const q = new Queue<number>(), out = new Queue<number>();
  const p = start(drain, q, out);
  for (let i = 0; i < 1000; i++) await q.put(i);
  await sleep(100);
  q.close();
  assert.equal(await out.get({ timeout: 20_000 }), 1000);
  await p.join();
  assert.equal(p.exitCode, 0);
  const q2 = new Queue<number>();
  const waiting = q2.get();
  setTimeout(() => q2.close(), 30);
  await assert.rejects(waiting, ValueError);
});

Deno.test("SimpleQueue and JoinableQueue: taskDone too often is a ValueError; join can be called again", async () => {
  const s = new SimpleQueue<string>();
  await s.put("a");
  assert.equal(await s.get(), "a");
  assert.ok(s.empty());

  const q = new JoinableQueue<number>();
  await q.join(); // nothing put: returns at once
  assert.throws(
    () => q.taskDone(),
    (e: Error) => e instanceof ValueError && /too many times/.test(e.message),
  );
  await q.put(1);
  await q.put(2);
  let joined = false;
  const j = q.join().then(() => (joined = true));
  await q.get();
  q.taskDone();
  await sleep(30);
  assert.equal(joined, false);
  await q.get();
  q.taskDone();
  await j;
  await q.join();
  assert.throws(() => q.taskDone(), ValueError);
});

Deno.test("JoinableQueue across workers: join returns when consumers marked every item done", async () => {
  const q = new JoinableQueue<number>(), tally = new Queue<number>();
  const ps = [start(joinableWorker, q, tally), start(joinableWorker, q, tally)];
  try {
    for (let i = 0; i < 2000; i++) await q.put(i);
    await q.join();
    assert.equal(tally.qsize(), 2000);
    let sum = 0;
    for (let i = 0; i < 2000; i++) sum += await tally.get();
    assert.equal(sum, 1999 * 2000 / 2);
  } finally {
    await stop(...ps);
  }
});

Deno.test("LifoQueue is last-in first-out; PriorityQueue orders [priority, item] like Python tuples", async () => {
  const l = new LifoQueue<number>();
  for (const x of [1, 2, 3]) await l.put(x);
  assert.deepEqual([await l.get(), l.getNowait(), l.getSync()], [3, 2, 1]);
  assert.throws(() => l.getNowait(), Empty);

  const p = new PriorityQueue<unknown>();
  const items: unknown[] = [
    [3, "c"],
    [1, "b"],
    [1, "a"],
    [2, [1, 2]],
    [2, [1]],
    [-5.5, "neg"],
    [1n, "bigint one"],
    [10, "ten"],
    [2, [1, 2, 0]],
  ];
  for (const it of items) await p.put(it);
  const out: unknown[] = [];
  while (!p.empty()) out.push(await p.get());
  assert.deepEqual(out, [
    [-5.5, "neg"],
    [1, "a"],
    [1, "b"],
    [1n, "bigint one"],
    [2, [1]],
    [2, [1, 2]],
    [2, [1, 2, 0]],
    [3, "c"],
    [10, "ten"],
  ]);
  // Strings compare by code point; equal keys go out in arrival order.
  const s = new PriorityQueue<[number, { id: number }]>(2);
  await s.put([1, { id: 1 }]);
  await s.put([1, { id: 2 }]);
  assert.throws(() => s.putNowait([0, { id: 0 }]), Full);
  assert.deepEqual([(await s.get())[1].id, (await s.get())[1].id], [1, 2]);
  const lifo = new LifoQueue<number>(1);
  await lifo.put(1);
  await assert.rejects(lifo.put(2, { timeout: 30 }), Full);
});

Deno.test("PriorityQueue and LifoQueue are shared across workers", async () => {
  const p = new PriorityQueue<[number, string]>();
  const w = start(putPriorities, p, [5, 3, 9, 1]);
  await w.join();
  await p.put([4, "main"]);
  const got: number[] = [];
  for (let i = 0; i < 5; i++) got.push((await p.get())[0]);
  assert.deepEqual(got, [1, 3, 4, 5, 9]);
});

Deno.test("items keep structured-clone fidelity through a worker and back", async () => {
  const inq = new Queue<unknown>(), out = new Queue<unknown>();
  const p = start(echo, inq, out);
  try {
    const cyclic: Record<string, unknown> = { name: "root" };
    cyclic.self = cyclic;
    const shared = { s: 1 };
    const value = {
      map: new Map<unknown, unknown>([["k", 1], [2, new Set([1, "x"])]]),
      set: new Set([1, 2, 3]),
      date: new Date(1_700_000_000_000),
      big: 12345678901234567890n,
      re: /a+b/gi,
      u8: new Uint8Array([1, 2, 255]),
      f64: new Float64Array([1.5, -0, NaN]),
      nested: { deep: [[1, [2, [3, undefined, null]]]] },
      cyclic,
      twice: [shared, shared],
      str: "héllo ✓ 🎉",
      err: new RangeError("boom"),
    };
    await inq.put(value);
    const back = await out.get({ timeout: 20_000 }) as typeof value;
    assert.deepEqual(back.map, value.map);
    assert.deepEqual(back.set, value.set);
    assert.equal(back.date.getTime(), value.date.getTime());
    assert.equal(back.big, value.big);
    assert.ok(back.re instanceof RegExp && back.re.source === "a+b" && back.re.flags === "gi");
    assert.deepEqual(back.u8, value.u8);
    assert.ok(back.f64 instanceof Float64Array && Object.is(back.f64[1], -0) && isNaN(back.f64[2]));
    assert.deepEqual(back.nested, value.nested);
    assert.equal((back.cyclic as { self: unknown }).self, back.cyclic);
    assert.equal(back.twice[0], back.twice[1]);
    assert.equal(back.str, value.str);
    assert.ok(back.err instanceof RangeError && back.err.message === "boom");
    await inq.put(null);
    assert.equal(await out.get(), null);
    await p.join();
  } finally {
    await stop(p);
  }
});

Deno.test("an unsendable item throws SerializationError naming the path; nothing is put", async () => {
  const q = new Queue<unknown>();
  await assert.rejects(
    q.put({ callback() {} }),
    (e: Error) =>
      e instanceof SerializationError && e.message === "item.callback: functions cannot be sent",
  );
  assert.equal(q.qsize(), 0);
});

Deno.test("handles inside items: a Queue sent through a Queue works in the worker", async () => {
  const q = new Queue<{ reply: Queue<string>; msg: string }>();
  const reply = new Queue<string>();
  const p = start(replyThrough, q);
  await q.put({ reply, msg: "through a queue" });
  assert.equal(await reply.get({ timeout: 20_000 }), "through a queue");
  await p.join();
  assert.equal(p.exitCode, 0);
});

Deno.test("transfer: the sender's ArrayBuffer is detached and the item arrives whole", async () => {
  const q = new Queue<{ buf: ArrayBuffer }>();
  const buf = new Uint8Array([1, 2, 3, 4]).buffer;
  await q.put({ buf }, { transfer: [buf] });
  assert.equal(buf.byteLength, 0);
  assert.ok(buf.detached);
  assert.deepEqual(new Uint8Array((await q.get()).buf), new Uint8Array([1, 2, 3, 4]));
  await assert.rejects(q.put({ buf }, { transfer: [buf] }), SerializationError);
});

Deno.test("an unbounded put never waits: items beyond the ring wait in the outbox, in order", async () => {
  const q = new Queue<number>();
  const n = 60_000; // far more than the ring holds
  for (let i = 0; i < n; i++) await q.put(i);
  assert.equal(q.qsize(), n);
  for (let i = 0; i < n; i++) assert.equal(q.getSync(), i);
  await flushAll();
});

Deno.test("4 producers x 4 consumers x 50,000 items end with exactly the multiset put", async () => {
  const n = 50_000;
  const q = new Queue<[number, number] | null>(),
    out = new Queue<Record<number, [number, number]>>();
  const ps = [0, 1, 2, 3].map((id) => start(produce, q, id, n));
  const cs = [0, 1, 2, 3].map((i) => start(i % 2 ? consumeSync : consume, q, out));
  try {
    const total: Record<number, [number, number]> = {};
    for (let i = 0; i < 4; i++) {
      const r = await out.get({ timeout: 50_000 });
      for (const [k, [c, s]] of Object.entries(r)) {
        const t = total[+k] ??= [0, 0];
        t[0] += c;
        t[1] += s;
      }
    }
    for (const id of [0, 1, 2, 3]) assert.deepEqual(total[id], [n, n * (n - 1) / 2]);
    for (const p of [...ps, ...cs]) {
      await p.join();
      assert.equal(p.exitCode, 0);
    }
    assert.equal(q.qsize(), 0);
  } finally {
    await stop(...ps, ...cs);
  }
});

Deno.test("a consumer terminated while waiting in get does not swallow an item", async () => {
  // The Sync consumer is the hard case: Deno leaves a worker blocked in Atomics.wait running
  // after terminate(), so the channel itself must stop it from taking the item.
  for (const target of [getForever, getForeverSync, getForeverSync, getForeverSync]) {
    const q = new Queue<string>(), ready = new Queue<string>();
    const p = start(target, q, ready);
    assert.equal(await ready.get({ timeout: 20_000 }), "waiting");
    await sleep(200); // it is now asleep inside get(), holding the read lock
    p.terminate();
    await p.join();
    await q.put("survivor");
    assert.equal(await q.get({ timeout: 5_000 }), "survivor", target.name);
    assert.equal(ready.qsize(), 0);
  }
});

Deno.test("a producer terminated mid-put of a 64 MiB item leaves the queue usable, with no half item", async () => {
  const q = new Queue<Uint8Array | string>(), ready = new Queue<string>();
  const p = start(putBig, q, ready, 64);
  assert.equal(await ready.get({ timeout: 20_000 }), "putting");
  await sleep(500); // the item streams into the ring and stops there: nobody reads yet
  p.terminate();
  await p.join();
  await q.put("after");
  assert.equal(await q.get({ timeout: 5_000 }), "after");
  assert.throws(() => q.getNowait(), Empty);
  assert.equal(q.qsize(), 0);
  // The other way a torn item is noticed: no new item follows it, the reader finds the ring
  // drained mid-item and its writer dead.
  const q2 = new Queue<Uint8Array | string>(), ready2 = new Queue<string>();
  const p2 = start(putBig, q2, ready2, 64);
  assert.equal(await ready2.get({ timeout: 20_000 }), "putting");
  await sleep(500);
  p2.terminate();
  await p2.join();
  await assert.rejects(q2.get({ timeout: 300 }), Empty);
  assert.equal(q2.qsize(), 0);
  await q2.put("next");
  assert.equal(await q2.get(), "next");
});

Deno.test("a 64 MiB item passes through a Queue to a worker and back", async () => {
  const inq = new Queue<unknown>(), out = new Queue<unknown>();
  const p = start(echo, inq, out);
  try {
    const big = new Uint8Array(64 << 20);
    for (let i = 0; i < big.length; i += 4096) big[i] = (i >> 12) & 255;
    big[big.length - 1] = 42;
    await inq.put(big);
    const back = await out.get({ timeout: 50_000 }) as Uint8Array;
    assert.equal(back.length, big.length);
    for (let i = 0; i < big.length; i += 4096) assert.equal(back[i], (i >> 12) & 255);
    assert.equal(back[back.length - 1], 42);
    await inq.put(null);
    await out.get();
    await p.join();
  } finally {
    await stop(p);
  }
});

Deno.test("a worker's unwritten items are flushed before it reports its exit", async () => {
  // As in Python ("joining processes that use queues"): the worker's puts return at once, but it
  // only exits once its items are in the queue, so the parent reads before it joins.
  const q = new Queue<[number, number] | null>();
  const p = start(produce, q, 7, 30_000); // far more than the ring holds
  // Done putting (every item counted), still flushing into the full ring: not exited.
  assert.ok(await until(() => q.qsize() === 30_001), `qsize ${q.qsize()}, not 30001`);
  await sleep(100);
  assert.equal(p.exitCode, null);
  let sum = 0;
  for (let i = 0; i < 30_000; i++) {
    sum += ((await q.get({ timeout: 20_000 })) as [number, number])[1];
  }
  assert.equal(sum, 29_999 * 30_000 / 2);
  assert.equal(await q.get(), null);
  await p.join();
  assert.equal(p.exitCode, 0);
});

Deno.test("idle waiters sleep: workers blocked in get and getSync burn no core", async () => {
  const { cpuUsage } = await import("node:process");
  const q = new Queue<string>(), ready = new Queue<string>();
  const ps = [start(getForever, q, ready), start(getForeverSync, q, ready)];
  try {
    for (const _ of ps) assert.equal(await ready.get({ timeout: 20_000 }), "waiting");
    // Past the second at which a worker loads the rest of the library in the background
    // (core/child.ts, WARM_AFTER_MS): a one-off, not a waiter burning a core.
    await sleep(1300);
    const before = cpuUsage();
    const waiting = q.get({ timeout: 1000 }).catch((e) => e); // main waits too
    await sleep(1000);
    const used = cpuUsage(before);
    assert.ok(await waiting instanceof Empty);
    const ms = (used.user + used.system) / 1000;
    assert.ok(ms < 250, `three idle waiters used ${ms.toFixed(0)} ms of CPU in 1 s`);
  } finally {
    await stop(...ps);
  }
});
