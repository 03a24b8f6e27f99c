// Queues give their memory back (issue 13.7): a queue closed and drained by its holders frees
// its heap block without waiting for the garbage collector; a full heap says what fills it.
import assert from "node:assert/strict";
import { alloc, heap, heapUsage, release } from "../lib/core/heap.ts";
import { JoinableQueue, LifoQueue, PriorityQueue, Queue } from "../lib/queues/queues.ts";
import { Pipe } from "../lib/connection/pipe.ts";
import { ValueError } from "../lib/core/errors.ts";
import { allocSpinning } from "./fixtures/alloc_targets.ts";
import { starter, until } from "./_helpers.ts";

Deno.test("10,000 create/use/close cycles of each queue kind run in constant shared memory", async () => {
  const before = heap().sab.byteLength;
  const blocks0 = heapUsage().queue.blocks;
  const kinds = [
    () => new Queue<number>(),
    () => new JoinableQueue<number>(),
    () => new LifoQueue<number>(),
    () => new PriorityQueue<number>(),
  ];
  for (const make of kinds) {
    for (let i = 0; i < 10_000; i++) {
      const q = make();
      await q.put(i);
      q.putNowait(i + 1);
      assert.equal(
        await q.get(),
        q instanceof LifoQueue && !(q instanceof PriorityQueue) ? i + 1 : i,
      );
      q.getNowait();
      if (q instanceof JoinableQueue) {
        q.taskDone();
        q.taskDone();
        await q.join();
      }
      q.close();
    }
    // At most a few blocks left over (the one closed state of this process, a held buffer).
    assert.ok(heapUsage().queue.blocks - blocks0 <= 3, JSON.stringify(heapUsage().queue));
  }
  assert.equal(heap().sab.byteLength, before, "the heap grew");
});

Deno.test("a queue closed while it still holds items is freed once drained, by get or for await", async () => {
  const blocks0 = heapUsage().queue.blocks;
  for (let i = 0; i < 2_000; i++) {
    const q = new Queue<number>();
    await q.put(1);
    await q.put(2);
    q.close();
    assert.equal(q.qsize(), 2);
    if (i % 2) {
      const got: number[] = [];
      for await (const x of q) got.push(x);
      assert.deepEqual(got, [1, 2]);
    } else {
      assert.equal(q.getSync(), 1);
      assert.equal(await q.get(), 2);
      await assert.rejects(q.get(), ValueError);
    }
  }
  assert.ok(heapUsage().queue.blocks - blocks0 <= 3, JSON.stringify(heapUsage().queue));
});

Deno.test("a queue that gave its memory back still behaves as closed and drained", async () => {
  const q = new JoinableQueue<number>(5);
  await q.put(1);
  await q.get();
  q.taskDone();
  q.close();
  assert.ok(q.closed && q.empty() && !q.full());
  assert.equal(q.qsize(), 0);
  assert.equal(q.maxsize, 5);
  await assert.rejects(q.put(2), ValueError);
  assert.throws(() => q.putNowait(2), ValueError);
  await assert.rejects(q.get(), /Queue is closed/);
  assert.throws(() => q.getSync(), /Queue is closed/);
  assert.throws(() => q.taskDone(), /too many times/);
  await q.join();
  assert.match(String(q), /JoinableQueue at \d+ size=0 closed/);
  const [a, b] = Pipe<unknown>();
  assert.throws(() => a.sendSync(q), /closed/);
  a.close();
  b.close();
});

Deno.test("a full heap says what fills it", () => {
  const q = new Queue<number>();
  // The largest block there is (512 MiB with its header), twice: the second cannot fit.
  const big = (512 << 20) - 16;
  const first = alloc(big);
  try {
    assert.throws(
      () => alloc(big),
      (e: Error) =>
        e instanceof RangeError && /shared heap is full/.test(e.message) &&
        /\d+ queue blocks? \([\d.]+ MiB\)/.test(e.message),
    );
  } finally {
    release(first);
    q.close();
  }
});

Deno.test("a reused block is zeroed where asked: all of it by default, a prefix when told", () => {
  // A size class nothing else in this process allocates, so that the freed block comes back.
  const h = heap(), size = 6 << 20;
  const dirty = (off: number) => h.u8.fill(7, off, off + size);
  const a = alloc(size);
  dirty(a);
  release(a);
  const b = alloc(size); // the same block, from its free list
  assert.equal(b, a);
  assert.ok(h.u8.subarray(b, b + size).every((x) => x === 0), "a reused block comes zeroed");
  dirty(b);
  release(b);
  const c = alloc(size, "other", 256); // a header of 256 bytes, then a ring's frames
  assert.equal(c, a);
  assert.ok(h.u8.subarray(c, c + 256).every((x) => x === 0), "its header is zeroed");
  assert.equal(h.u8[c + 4096], 7, "the rest is left as it was (a ring's frames need no zeroing)");
  release(c);
});

Deno.test("the allocator is not taken over from a dead holder still inside it: no block is handed out twice", async () => {
  // A worker terminated inside the allocator's critical section runs on (Deno stops it only at
  // an await), its block chosen and not yet taken. Before, the next allocation took the lock
  // over within microseconds and chose the same block: both got it.
  const start = starter(new URL("./fixtures/alloc_targets.ts", import.meta.url));
  const ctl = alloc(8), i32 = heap().i32, c = ctl >> 2, size = 3 << 20;
  Atomics.store(i32, c, 0);
  release(alloc(size)); // a free block of that size class: both would take it off its list
  const zombie = start(allocSpinning, ctl, size, 400);
  let mine = 0;
  try {
    assert.ok(await until(() => Atomics.load(i32, c) === 1), "never reached the allocator");
    zombie.terminate();
    await zombie.join(); // its thread still spins inside the allocator
    mine = alloc(size); // waits for it to leave
    assert.ok(await until(() => Atomics.load(i32, c) === 2), "the zombie never went on");
    const theirs = Atomics.load(i32, c + 1);
    assert.notEqual(mine, theirs, "the same block was handed out twice");
    release(theirs);
  } finally {
    if (mine) release(mine);
    if (zombie.isAlive()) zombie.terminate();
    await zombie.join();
    release(ctl);
  }
});
