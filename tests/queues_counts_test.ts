// Queue counts stay true when items never arrive (issues 13.1, 13.2, 13.3): a terminated
// producer's unwritten items, a fenced putSync, an item that fails to decode.
import assert from "node:assert/strict";
import { JoinableQueue, PriorityQueue, Queue } from "../lib/queues/queues.ts";
import { Empty } from "../lib/core/errors.ts";
import { registerHandle } from "../lib/core/reduction.ts";
import { putManyThenFlush, putSyncForever } from "./fixtures/queue_counts_targets.ts";
import { sleep, starter, TIMED_OUT, until, within } from "./_helpers.ts";

const start = starter(new URL("./fixtures/queue_counts_targets.ts", import.meta.url));

for (const joinable of [false, true]) {
  const kind = joinable ? "JoinableQueue" : "Queue";
  Deno.test(`${kind}: a producer terminated with 100,000 putNowait items on their way leaves true counts; close() ends the consumers${joinable ? "; join() settles" : ""}`, async () => {
    const n = 100_000;
    const q = joinable ? new JoinableQueue<number>() : new Queue<number>();
    const ready = new Queue<string>();
    const p = start(putManyThenFlush, q, ready, n);
    try {
      assert.equal(await ready.get({ timeout: 30_000 }), "queued");
      assert.equal(q.qsize(), n); // all put, most still in the producer's outbox
      p.terminate();
      await p.join();
      q.close();
      let got = 0, wrong = 0;
      const drained = within(
        (async () => {
          for await (const x of q) {
            if (x !== got) wrong++;
            got++;
            if (q instanceof JoinableQueue) q.taskDone();
          }
        })(),
        20_000,
      );
      assert.notEqual(await drained, TIMED_OUT, `for await never ended (got ${got} items)`);
      assert.equal(wrong, 0, "items came out of order or corrupt");
      assert.ok(got > 0 && got < n, `got ${got}`);
      assert.equal(q.qsize(), 0);
      assert.ok(q.empty());
      if (q instanceof JoinableQueue) {
        assert.notEqual(await within(q.join(), 5_000), TIMED_OUT, "join() never settled");
      }
    } finally {
      if (p.isAlive()) p.terminate();
      await p.join();
    }
  });
}

Deno.test("a producer terminated while blocked in putSync leaves no phantom item in qsize", async () => {
  const q = new Queue<Uint8Array>();
  const p = start(putSyncForever, q, 8 << 10);
  try {
    // Wait until the ring is full and the producer is blocked in putSync.
    let last = -1;
    assert.ok(
      await until(
        () => {
          const n = q.qsize(), still = n > 0 && n === last;
          last = n;
          return still;
        },
        10_000,
        10,
      ),
    );
    await sleep(200);
    const inRing = q.qsize(); // the items in the ring, and the one being put
    p.terminate();
    await p.join();
    // Reading wakes the blocked (zombie) producer, which meets its fence: no more items.
    let got = 0;
    for (;;) {
      try {
        q.getSync({ timeout: 300 });
        got++;
      } catch (e) {
        if (e instanceof Empty) break;
        throw e;
      }
    }
    assert.ok(got >= inRing - 1 && got <= inRing, `got ${got} of ${inRing}`);
    assert.ok(await until(() => q.qsize() === 0, 3_000, 10), `qsize() stays ${q.qsize()}`);
  } finally {
    if (p.isAlive()) p.terminate();
    await p.join();
  }
});

/** An item that encodes but cannot be rebuilt on the receiving side. */
class Bomb {
  constructor(readonly armed: boolean) {}
}
registerHandle<Bomb, boolean>({
  name: "QueuesCountsTestBomb",
  cls: Bomb,
  reduce: (b) => b.armed,
  rebuild: (armed) => {
    if (armed) throw new Error("this item cannot be rebuilt");
    return new Bomb(false);
  },
});

Deno.test("an item that fails to decode costs that item only: its getter gets the error, counts and later items are intact", async () => {
  for (const make of [() => new JoinableQueue<unknown>(), () => new PriorityQueue<unknown>()]) {
    const q = make();
    const prio = q instanceof PriorityQueue;
    await q.put(prio ? [1, new Bomb(true)] : new Bomb(true));
    await q.put(prio ? [2, "after"] : "after");
    q.putSync(prio ? [3, new Bomb(true)] : new Bomb(true));
    await q.put(prio ? [4, new Uint8Array(300_000)] : new Uint8Array(300_000)); // streamed
    assert.equal(q.qsize(), 4);
    await assert.rejects(q.get(), /cannot be rebuilt/);
    assert.equal(q.qsize(), 3);
    const after = await q.get();
    assert.deepEqual(prio ? (after as unknown[])[1] : after, "after");
    q.taskDone();
    assert.throws(() => q.getSync(), /cannot be rebuilt/);
    assert.equal(q.qsize(), 1);
    const big = await q.get();
    assert.equal((prio ? (big as unknown[])[1] as Uint8Array : big as Uint8Array).length, 300_000);
    q.taskDone();
    assert.equal(q.qsize(), 0);
    // Every item is accounted for: the two that failed count as done.
    assert.notEqual(await within(q.join(), 2_000), TIMED_OUT, "join() waits for failed items");
    assert.throws(() => q.taskDone(), /too many times/);
  }
});

Deno.test("Python-style positional arguments are a TypeError that shows the right call", async () => {
  const q = new Queue<number>();
  const bad = (x: unknown) => x as never;
  await assert.rejects(
    q.get(bad(true)),
    /Queue\.get\(\) takes an options object.*get\(\{ timeout: 200 \}\)/,
  );
  await assert.rejects(q.put(1, bad(200)), /Queue\.put\(\) takes an options object, not a number/);
  assert.throws(() => q.getSync(bad(false)), TypeError);
  assert.throws(() => q.putSync(1, bad(true)), TypeError);
  assert.throws(() => q.putNowait(1, bad([1])), /not an array/);
  assert.equal(q.qsize(), 0); // nothing was put
});
