import assert from "node:assert/strict";
import { alloc } from "../lib/core/heap.ts";
import { Pool } from "../lib/pool/pool.ts";
import { Process } from "../lib/process/process.ts";
import { runProgram } from "./_program.ts";
import { Queue } from "../lib/queues/queues.ts";
import { dumps, loads } from "../lib/core/reduction.ts";
import { SharedMemory } from "../lib/memory/shared_memory.ts";
import { Array as SharedArray } from "../lib/memory/sharedctypes.ts";
import { BIG_BLOCK_BYTES, keptBlocks } from "../lib/core/bigblock.ts";
import {
  addOne,
  addOneFromQueue,
  attachByName,
  fillRange,
  getSyncThenAsync,
  holdUntilFreed,
  makeAndSend,
  makeForChild,
  nobodyAnswers,
  viaGrandchild,
  writeFromQueue,
  writeLast,
} from "./fixtures/big_targets.ts";

const MiB = 1 << 20, GiB = 1 << 30;

Deno.test("big blocks: exactly 512 MiB works, and 1 GiB; attach by name in the same worker", () => {
  for (const size of [512 * MiB, GiB]) {
    using shm = new SharedMemory({ size });
    assert.equal(shm.size, size);
    assert.equal(shm.buf.length, size);
    shm.buf[size - 1] = 9;
    using again = new SharedMemory({ name: shm.name });
    assert.equal(again.buf[size - 1], 9);
    const copy = loads<SharedMemory>(dumps(shm)); // here the buffer is known: sync works
    assert.equal(copy.buf[size - 1], 9);
    copy.close();
  }
  assert.throws(() => new SharedMemory({ size: 2 ** 53 }), /from 1 to 2\^53 - 1 bytes/);
  assert.throws(
    () => new SharedMemory({ size: 2 ** 50 }),
    /cannot allocate a shared block .*\(1048576\.00 GiB\): .*the system refused/,
  );
  // Just under the threshold stays in the heap; at it, a block of its own.
  using small = new SharedMemory({ size: BIG_BLOCK_BYTES - 17 });
  using big = new SharedMemory({ size: BIG_BLOCK_BYTES - 16 });
  assert.equal(small.buf.buffer === big.buf.buffer, false);
  assert.equal(big.buf.byteOffset, 0);
});

Deno.test("big blocks: a 4 GiB block written by a child at its last byte, read by the parent", async () => {
  const size = 4 * GiB;
  using shm = new SharedMemory({ size });
  const p = new Process({ target: writeLast, args: [shm, 77] });
  p.start();
  await p.join();
  assert.equal(p.exitCode, 0);
  assert.equal(shm.buf[size - 1], 77);
});

Deno.test("big blocks: through a queue, an async get waits for the buffer", async () => {
  const q = new Queue<SharedMemory>(), out = new Queue<string>();
  const p = new Process({ target: writeFromQueue, args: [q, out] });
  p.start(); // before the block is made: its start message cannot bring it
  using shm = new SharedMemory({ size: 3 * GiB });
  await q.put(shm);
  assert.equal(await out.get({ timeout: 60_000 }), "done");
  await p.join();
  assert.equal(p.exitCode, 0);
  assert.equal(shm.buf[0], 1);
  assert.equal(shm.buf[shm.size - 1], 2);
});

Deno.test("big blocks: getSync of a buffer the worker never had is a clear error; once had, it works", async () => {
  const q = new Queue<SharedMemory>(), out = new Queue<string>();
  const p = new Process({ target: getSyncThenAsync, args: [q, out] });
  p.start(); // before the block is made: its start message cannot bring it
  using shm = new SharedMemory({ size: 128 * MiB });
  await q.put(shm);
  const msg = await out.get({ timeout: 60_000 });
  assert.match(msg, /SerializationError: .*big block .*a synchronous receiver cannot wait/);
  assert.match(msg, /await q\.get\(\)/);
  await q.put(shm);
  await q.put(shm);
  assert.equal(await out.get({ timeout: 60_000 }), "held");
  await p.join();
  assert.equal(p.exitCode, 0);
  assert.equal(shm.buf[shm.size - 1], 6);
});

Deno.test("big blocks: attach by name in a worker: sync says to wait, async attaches", async () => {
  const names = new Queue<string>(), out = new Queue<string>();
  const p = new Process({ target: attachByName, args: [names, out] });
  p.start();
  const before = keptBlocks();
  const shm = new SharedMemory({ size: 256 * MiB });
  await names.put(shm.name);
  const sync = await out.get({ timeout: 60_000 });
  await p.join();
  assert.equal(p.exitCode, 0);
  assert.match(sync, /has not reached this worker yet/);
  assert.equal(shm.buf[shm.size - 1], 3);
  shm.close(); // the last reference: the failed attach took none for good
  assert.equal(keptBlocks(), before);
});

Deno.test("big blocks: one made by a worker that has ended still reaches the parent", async () => {
  const q = new Queue<SharedMemory>();
  const size = 2 * GiB + 5; // over 32 bits of size
  const p = new Process({ target: makeAndSend, args: [q, size] });
  p.start();
  await p.join();
  assert.equal(p.exitCode, 0);
  using shm = await q.get({ timeout: 60_000 });
  assert.equal(shm.size, size);
  assert.equal(shm.buf[0], 4);
  assert.equal(shm.buf[size - 1], 5);
});

Deno.test("big blocks: the main thread keeps a buffer exactly while the block lives", async () => {
  const before = keptBlocks();
  const shm = new SharedMemory({ size: 256 * MiB });
  assert.equal(keptBlocks(), before + 1);
  const copy = loads<SharedMemory>(dumps(shm));
  shm.close();
  assert.equal(keptBlocks(), before + 1); // the copy still holds it
  copy.close();
  assert.equal(keptBlocks(), before);
  // Made in a worker, sent, closed there: kept here until the receiver's object is closed.
  const q = new Queue<SharedMemory>();
  const p = new Process({ target: makeAndSend, args: [q, 128 * MiB] });
  p.start();
  const got = await q.get({ timeout: 60_000 });
  await p.join();
  assert.equal(keptBlocks(), before + 1);
  got.close();
  assert.equal(keptBlocks(), before);
});

Deno.test("big blocks: a 1 GiB shared Array crosses to workers in args and through a queue", async () => {
  const n = GiB / 8;
  const q = new Queue<SharedArray<"d">>();
  const p2 = new Process({ target: addOneFromQueue, args: [q, 0, 1] });
  p2.start(); // before the array is made: it waits for its buffer
  const a = new SharedArray("d", n, { lock: false });
  assert.equal(a.length, n);
  a.set(n - 1, 41);
  const p1 = new Process({ target: addOne, args: [a, n - 2, n] });
  p1.start();
  await q.put(a);
  await Promise.all([p1.join(), p2.join()]);
  assert.equal(p1.exitCode, 0);
  assert.equal(p2.exitCode, 0);
  assert.equal(a.get(n - 1), 42);
  assert.equal(a.get(n - 2), 1);
  assert.equal(a.get(0), 1);
});

Deno.test("heap limit: setHeapLimit raises or lowers it, before the heap is made; workers follow", async () => {
  const program = new URL("./fixtures/heap_limit_program.ts", import.meta.url).pathname;
  const highest = 2 ** 31 - 2 ** 16;
  // 40 blocks of 32 MiB: 1.25 GiB, more than the default limit of 1 GiB.
  const high = await runProgram(program, [String(highest), "40"]);
  assert.match(high.out, /^made 40$/m, high.err);
  assert.match(high.out, new RegExp(`limit ${highest}, worker ${highest}`));
  assert.match(high.out, /too late: denomp: the shared heap exists already/);
  const low = await runProgram(program, [String(64 << 20), "40"]);
  assert.match(low.out, /failed after 1: denomp/, low.err);
  assert.match(low.out, new RegExp(`limit ${64 << 20}, worker ${64 << 20}`));
  const bad = await runProgram(program, [String(2 ** 31), "0"]);
  assert.match(
    bad.err,
    /limit must be an integer from \d+ to 2147418112 bytes: current value is 2147483648/,
  );
});

Deno.test("heap: a request over the largest block names the largest block it can make", () => {
  // The default 1 GiB heap's largest size class is 512 MiB, its header included.
  assert.throws(
    () => alloc(512 * MiB - 15),
    /cannot allocate 536870897 bytes .*at most 536870896\)/,
  );
});

Deno.test("big blocks: a message that fails to encode gives back the reference it took", () => {
  const before = keptBlocks();
  const shm = new SharedMemory({ size: 128 * MiB });
  const a = new SharedArray("B", 128 * MiB, { lock: false });
  assert.equal(keptBlocks(), before + 2);
  assert.throws(() => dumps([shm, a, () => {}]), /functions cannot be sent/);
  shm.close();
  assert.equal(keptBlocks(), before + 1);
  void a; // still alive: its block stays kept
});

Deno.test("big blocks: unlink stops attaching by name, the block lives on until closed", async () => {
  const before = keptBlocks();
  const shm = new SharedMemory({ size: 64 * MiB });
  shm.unlink();
  assert.throws(() => new SharedMemory({ name: shm.name }), /no SharedMemory named/);
  await assert.rejects(() => SharedMemory.attach(shm.name), /no SharedMemory named/);
  shm.buf[0] = 1;
  assert.equal(keptBlocks(), before + 1);
  shm.close();
  assert.equal(keptBlocks(), before);
});

Deno.test("big blocks: a Pool started after a block was made runs tasks that hold it", async () => {
  using shm = new SharedMemory({ size: 64 * MiB });
  {
    await using pool = new Pool({ processes: 2 });
    const n = await pool.starmap(fillRange, [[shm, 0, 32 * MiB], [shm, 32 * MiB, 64 * MiB]]);
    assert.deepEqual(n, [32 * MiB, 32 * MiB]);
  }
  assert.equal(shm.buf[0], 7);
  assert.equal(shm.buf[64 * MiB - 1], 7);
  // A pool started before: its workers decode tasks synchronously and cannot wait.
  await using early = new Pool({ processes: 1 });
  await early.whenReady();
  using later = new SharedMemory({ size: 64 * MiB });
  await assert.rejects(
    () => early.apply(fillRange, [later, 0, 1]),
    /has not reached this worker yet.*make it before starting the worker, a Pool's too/,
  );
});

Deno.test("big blocks: a worker lets go of a buffer once the block is freed", async () => {
  const out = new Queue<number>(), go = new Queue<string>();
  const shm = new SharedMemory({ size: 64 * MiB });
  const p = new Process({ target: holdUntilFreed, args: [shm, out, go] });
  p.start();
  const before = await out.get({ timeout: 60_000 });
  assert.ok(before >= 1);
  shm.close(); // the last reference: freed
  await go.put("freed");
  assert.equal(await out.get({ timeout: 60_000 }), before - 1);
  await p.join();
});

Deno.test("big blocks: nested workers pass them on, in args, both ways down the tree", async () => {
  using shm = new SharedMemory({ size: 600 * MiB }); // more than the heap could hold
  const p = new Process({ target: viaGrandchild, args: [shm, 55] });
  p.start();
  await p.join();
  assert.equal(p.exitCode, 0);
  assert.equal(shm.buf[shm.size - 1], 55);
  // Made in a worker, passed to its own child, then sent up here.
  const out = new Queue<SharedMemory>();
  const q = new Process({ target: makeForChild, args: [out, 66] });
  q.start();
  using got = await out.get({ timeout: 60_000 });
  await q.join();
  assert.equal(q.exitCode, 0);
  assert.equal(got.buf[got.size - 1], 66);
});

Deno.test("big blocks: a buffer nobody sends in time is a TimeoutError, and a dropped request harms nobody", async () => {
  const q = new Queue<SharedMemory>(), out = new Queue<string>();
  const p = new Process({ target: nobodyAnswers, args: [q, out] });
  p.start();
  using shm = new SharedMemory({ size: 64 * MiB });
  const block = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  // The main thread, the only holder, stays in synchronous code: it cannot answer.
  await q.put(shm);
  block(1500); // the worker's getSync fails, and its request times out
  assert.equal(await out.get({ timeout: 60_000 }), "sync: SerializationError");
  using other = new SharedMemory({ size: 64 * MiB }); // no answer to an old question fits it
  await q.put(other);
  block(1500); // the worker's async get times out
  const msg = await out.get({ timeout: 60_000 });
  assert.match(
    msg,
    /^async: TimeoutError: the buffer of shared block \d+ did not arrive within 300 ms/,
  );
  await p.join();
  assert.equal(p.exitCode, 0);
});
