// The store lock of a LIFO or priority queue against a holder terminated inside it.
import assert from "node:assert/strict";
import { alloc, heap, release } from "../lib/core/heap.ts";
import { Empty } from "../lib/core/errors.ts";
import { LifoQueue } from "../lib/queues/queues.ts";
import { putSpinningInStore } from "./fixtures/store_targets.ts";
import { starter, until } from "./_helpers.ts";

const start = starter(new URL("./fixtures/store_targets.ts", import.meta.url));

Deno.test("a LIFO queue's store lock is not taken over from a dead holder still inside it: nothing lost or doubled", async () => {
  // A worker terminated in the middle of a push runs on (Deno stops it only at an await), the
  // store lock held. Before, the next put took the lock over at once, "repaired" the zombie's
  // pending push and pushed its own item; the zombie then finished its push with the length it
  // had read, writing over the new item's slot: the store gave [1] (checked without the fix).
  const q = new LifoQueue<number>();
  const ctl = alloc(4), i32 = heap().i32, c = ctl >> 2;
  Atomics.store(i32, c, 0);
  const zombie = start(putSpinningInStore, q, 1, ctl, 600);
  try {
    assert.ok(await until(() => Atomics.load(i32, c) === 1), "never reached the store");
    zombie.terminate();
    await zombie.join(); // its thread still spins inside the store lock
    let stored = false;
    const put = q.put(2).then(() => stored = true);
    await new Promise((r) => setTimeout(r, 200));
    if (Atomics.load(i32, c) === 1) {
      assert.equal(stored, false, "the put took the store lock from a holder still inside it");
    }
    assert.ok(await until(() => Atomics.load(i32, c) === 2), "the zombie never went on");
    await put;
    const got: number[] = [];
    for (;;) {
      try {
        got.push(q.getNowait());
      } catch (e) {
        if (e instanceof Empty) break;
        throw e;
      }
    }
    assert.deepEqual(got.sort(), [1, 2], `the store gave ${JSON.stringify(got)}`);
  } finally {
    if (zombie.isAlive()) zombie.terminate();
    await zombie.join();
    release(ctl);
    q.close();
  }
});
