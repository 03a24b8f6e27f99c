// JoinableQueue at-least-once (issue 13.11): an item taken by a consumer that dies before
// taskDone() goes back to the queue for the next consumer, so join() does not wait forever.
import assert from "node:assert/strict";
import type { Process } from "../lib/process/process.ts";
import { JoinableQueue, Queue } from "../lib/queues/queues.ts";
import { finishThenHold, getAndFinishSync, getAndHold } from "./fixtures/queue_counts_targets.ts";
import { starter, TIMED_OUT, within } from "./_helpers.ts";

const start = starter(new URL("./fixtures/queue_counts_targets.ts", import.meta.url));

Deno.test("items held by a consumer that dies before taskDone go back to the queue; join() settles", async () => {
  const q = new JoinableQueue<unknown>(), ready = new Queue<string>();
  const big = new Uint8Array(100_000).fill(9); // held as a block, not inline
  await q.put("small");
  await q.put(big);
  await q.put("third");
  const holder = start(getAndHold, q, ready, 2);
  let finisher: Process | null = null;
  try {
    assert.equal(await ready.get({ timeout: 20_000 }), "small");
    assert.equal(await ready.get({ timeout: 20_000 }), "bytes 100000");
    holder.terminate();
    await holder.join();
    // A second consumer (a worker) finishes everything, the two items got back included.
    const out = new Queue<unknown>();
    finisher = start(getAndFinishSync, q, out);
    const got: unknown[] = [];
    for (let i = 0; i < 3; i++) got.push(await out.get({ timeout: 20_000 }));
    const names = got.map((v) => typeof v === "string" ? v : `bytes ${(v as Uint8Array).length}`);
    assert.deepEqual(names.sort(), ["bytes 100000", "small", "third"]);
    assert.ok((got.find((v) => v instanceof Uint8Array) as Uint8Array).every((b) => b === 9));
    assert.notEqual(await within(q.join(), 10_000), TIMED_OUT, "join() waits for a dead consumer");
    assert.equal(q.qsize(), 0);
    await q.put(null);
    assert.equal(await out.get({ timeout: 20_000 }), null);
    await finisher.join();
    assert.equal(finisher.exitCode, 0);
    await q.join();
  } finally {
    for (const p of [holder, finisher]) {
      if (p?.isAlive()) p.terminate();
      await p?.join();
    }
  }
});

Deno.test("items a consumer marked done are not delivered again when it dies", async () => {
  const q = new JoinableQueue<unknown>(), out = new Queue<unknown>();
  const p = start(getAndFinishSync, q, out);
  try {
    for (const x of ["a", "b"]) await q.put(x);
    assert.deepEqual([await out.get({ timeout: 20_000 }), await out.get({ timeout: 20_000 })], [
      "a",
      "b",
    ]);
    await q.join();
    p.terminate();
    await p.join();
    assert.equal(q.qsize(), 0);
    await assert.rejects(q.get({ timeout: 300 }));
    await q.join();
  } finally {
    if (p.isAlive()) p.terminate();
    await p.join();
  }
});

Deno.test("after thousands of items done, exactly the items a dead consumer still held come back", async () => {
  const q = new JoinableQueue<unknown>(), ready = new Queue<string>();
  const n = 5_000, sizes = [1, 7, 300, 1500, 2100, 5000];
  for (let i = 0; i < n; i++) await q.put("x".repeat(sizes[i % sizes.length]));
  for (const x of ["h1", new Uint8Array(20_000), "h3"]) await q.put(x);
  const p = start(finishThenHold, q, ready, n, 3);
  try {
    assert.equal(await ready.get({ timeout: 30_000 }), "holding");
    assert.equal(q.qsize(), 0);
    p.terminate();
    await p.join();
    const back = [await q.get({ timeout: 5_000 }), await q.get({ timeout: 5_000 })];
    back.push(await q.get({ timeout: 5_000 }));
    assert.equal(back[0], "h1");
    assert.ok(back[1] instanceof Uint8Array && back[1].length === 20_000);
    assert.equal(back[2], "h3");
    await assert.rejects(q.get({ timeout: 300 }));
    for (let i = 0; i < 3; i++) q.taskDone();
    assert.notEqual(await within(q.join(), 5_000), TIMED_OUT);
  } finally {
    if (p.isAlive()) p.terminate();
    await p.join();
  }
});
