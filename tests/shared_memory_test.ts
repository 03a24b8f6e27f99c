import assert from "node:assert/strict";
import { ValueError } from "../lib/core/errors.ts";
import { Process } from "../lib/process/process.ts";
import { dumps, loads } from "../lib/core/reduction.ts";
import { ShareableList, SharedMemory } from "../lib/memory/shared_memory.ts";
import { __testHooks } from "../lib/sync/hooks.ts";
import { touchShared } from "./fixtures/sync_targets.ts";

Deno.test("SharedMemory: a zeroed block of `size` bytes; attach by name; close", () => {
  const shm = new SharedMemory({ size: 100 });
  assert.equal(shm.size, 100);
  assert.equal(shm.buf.length, 100);
  assert.ok(shm.buf.every((b) => b === 0));
  shm.buf.set([1, 2, 3]);
  const other = new SharedMemory({ name: shm.name });
  assert.deepEqual([...other.buf.subarray(0, 3)], [1, 2, 3]);
  assert.equal(other.size, 100);
  assert.match(shm.name, /^psm_/);
  other.close();
  other.close(); // twice is fine
  assert.throws(() => other.buf, ValueError);
  assert.equal(shm.buf[0], 1); // the creator's view is unaffected
  shm.close();
});

Deno.test("SharedMemory: bad sizes and names are ValueErrors; unlink stops attaching", () => {
  for (const size of [0, -1, 1.5, undefined]) {
    assert.throws(() => new SharedMemory({ size }), ValueError);
  }
  assert.throws(() => new SharedMemory({ name: "psm_nope" }), /no SharedMemory named/);
  assert.throws(() => new SharedMemory({ name: "psm_1_0" }), ValueError);
  using shm = new SharedMemory({ size: 8 });
  assert.throws(() => new SharedMemory({ name: shm.name, size: 9 }), /fewer than 9/);
  shm.unlink();
  assert.throws(() => new SharedMemory({ name: shm.name }), ValueError);
  shm.buf[0] = 5; // still usable by those who have it
  assert.equal(shm.buf[0], 5);
});

Deno.test("SharedMemory: `using` closes at scope exit; handles share the bytes", () => {
  let name = "";
  let copy: SharedMemory;
  {
    using shm = new SharedMemory({ size: 4 });
    name = shm.name;
    copy = loads<SharedMemory>(dumps(shm));
    copy.buf[3] = 9;
    assert.equal(shm.buf[3], 9);
  }
  // The copy keeps the block alive and attachable.
  const again = new SharedMemory({ name });
  assert.equal(again.buf[3], 9);
  again.close();
  copy.close();
  assert.throws(() => dumps(copy), /closed/);
});

Deno.test("ShareableList: values, replacement, capacity, count/index, iteration", () => {
  const sl = new ShareableList([1, 2.5, "howdy", true, null, 7n, new Uint8Array([1, 2])]);
  assert.equal(sl.length, 7);
  assert.deepEqual([...sl], [1, 2.5, "howdy", true, null, 7n, new Uint8Array([1, 2])]);
  assert.equal(sl.get(-1) instanceof Uint8Array, true);
  sl.set(2, "hi");
  assert.equal(sl.get(2), "hi");
  sl.set(2, "8 bytes!"); // the room of "howdy" rounded up to 8
  assert.equal(sl.get(2), "8 bytes!");
  assert.throws(() => sl.set(2, "nine byte"), ValueError);
  sl.set(0, "abc"); // a number's 8 bytes can hold a short string
  assert.equal(sl.get(0), "abc");
  sl.set(4, 42);
  assert.equal(sl.count(42), 1);
  assert.equal(sl.index(true), 3);
  assert.throws(() => sl.index("absent"), ValueError);
  assert.throws(() => sl.get(7), RangeError);
  assert.throws(() => sl.set(0, {} as unknown as number), TypeError);
  assert.throws(() => new ShareableList([2n ** 64n]), RangeError);
  assert.equal(new ShareableList([]).length, 0);
  assert.equal(new ShareableList(["é€"]).get(0), "é€");
  assert.match(String(new ShareableList([1, "a"])), /^ShareableList\(\[1, "a"\], name='psm_/);
});

Deno.test("ShareableList: attach by name and through the codec", () => {
  const sl = new ShareableList([10, "x"]);
  const byName = new ShareableList(undefined, { name: sl.shm.name });
  byName.set(0, 11);
  const copy = loads<ShareableList>(dumps(sl));
  assert.ok(copy instanceof ShareableList);
  assert.deepEqual([...copy], [11, "x"]);
});

Deno.test("workers: SharedMemory and ShareableList are shared with a worker", async () => {
  const shm = new SharedMemory({ size: 300 }), list = new ShareableList([41, "from main......."]);
  const other = new SharedMemory({ size: 4 });
  const p = new Process({ target: touchShared, args: [shm, list, other.name] });
  p.start();
  await p.join();
  assert.equal(p.exitCode, 0);
  assert.equal(shm.buf[299], 299 & 0xff);
  assert.equal(list.get(0), 42);
  assert.equal(list.get(1), "from worker");
  assert.equal(other.buf[0], 99);
});

Deno.test("SharedMemory: attaching by name cannot revive a block freed after it was found", () => {
  const shm = new SharedMemory({ size: 8 });
  const name = shm.name;
  // Between finding the block and taking a reference, its last holder closes it.
  __testHooks.sharedMemoryAttach = () => {
    __testHooks.sharedMemoryAttach = undefined;
    shm.close();
  };
  try {
    assert.throws(() => new SharedMemory({ name }), /no SharedMemory named/);
  } finally {
    __testHooks.sharedMemoryAttach = undefined;
  }
  // The freed block is reused by the next allocation of its size, and not shared with anyone.
  const next = new SharedMemory({ size: 8 });
  assert.notEqual(next.name, name);
  assert.throws(() => new SharedMemory({ name }), /no SharedMemory named/);
  next.close();
});

Deno.test("SharedMemory: attaching by name does not take a block freed and reused meanwhile", () => {
  const shm = new SharedMemory({ size: 8 });
  const name = shm.name;
  let reused: SharedMemory | undefined;
  __testHooks.sharedMemoryAttach = () => {
    __testHooks.sharedMemoryAttach = undefined;
    shm.close();
    reused = new SharedMemory({ size: 8 }); // the same block, under another name
  };
  try {
    assert.throws(() => new SharedMemory({ name }), /no SharedMemory named/);
  } finally {
    __testHooks.sharedMemoryAttach = undefined;
  }
  assert.ok(reused);
  reused.buf[0] = 1;
  reused.close();
});

Deno.test("SharedMemory and ShareableList: options of the wrong shape are TypeErrors that show the right call", () => {
  assert.throws(
    () => new SharedMemory(16 as unknown as { size: number }),
    (e) => e instanceof TypeError && /new SharedMemory\(\{ size: 1024 \}\)/.test(e.message),
  );
  assert.throws(
    () => new ShareableList([1], "psm_x" as unknown as { name: string }),
    (e) => e instanceof TypeError && /\{ name \}/.test(e.message),
  );
});

Deno.test("SharedMemory.attach: attaches by name like the constructor; a bad name rejects", async () => {
  using shm = new SharedMemory({ size: 32 });
  shm.buf[31] = 8;
  using again = await SharedMemory.attach(shm.name);
  assert.equal(again.buf[31], 8);
  assert.equal(again.size, 32);
  await assert.rejects(() => SharedMemory.attach("psm_nope"), /no SharedMemory named 'psm_nope'/);
  await assert.rejects(
    // deno-lint-ignore no-explicit-any
    () => SharedMemory.attach({ name: shm.name } as any),
    /takes the block's name/,
  );
});
