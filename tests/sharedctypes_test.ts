import assert from "node:assert/strict";
import { ValueError } from "../lib/core/errors.ts";
import { Process } from "../lib/process/process.ts";
import { dumps, loads } from "../lib/core/reduction.ts";
import {
  Array as SharedArray,
  RawArray,
  RawValue,
  type Typecode,
  Value,
} from "../lib/memory/sharedctypes.ts";
import { Event, Lock, RLock } from "../lib/sync/mod.ts";
import { writeForever } from "./fixtures/zombie_targets.ts";
import { increment, writeCtypes } from "./fixtures/sync_targets.ts";

async function run<A extends unknown[]>(target: (...a: A) => unknown, ...args: A) {
  const p = new Process({ target: target as (...a: unknown[]) => unknown, args });
  p.start();
  await p.join();
  return p;
}

Deno.test("Value: every typecode holds its range and rejects what does not fit", () => {
  const ranges: [Typecode, number, number][] = [
    ["b", -128, 127],
    ["B", 0, 255],
    ["h", -32768, 32767],
    ["H", 0, 65535],
    ["i", -(2 ** 31), 2 ** 31 - 1],
    ["I", 0, 2 ** 32 - 1],
    ["l", -(2 ** 31), 2 ** 31 - 1],
    ["L", 0, 2 ** 32 - 1],
  ];
  for (const [code, min, max] of ranges) {
    const v = new Value(code, max);
    assert.equal(v.value, max);
    v.value = min;
    assert.equal(v.value, min);
    assert.equal(v.typecode, code);
    assert.throws(() => (v.value = max + 1), RangeError, code);
    assert.throws(() => (v.value = min - 1), RangeError, code);
    assert.throws(() => (v.value = 1.5), TypeError, code);
    assert.throws(() => new Value(code, max + 1), /out of range/);
  }
  const q = new Value("q", -(2n ** 63n));
  assert.equal(q.value, -(2n ** 63n));
  q.value = 5; // an integral number is accepted
  assert.equal(q.value, 5n);
  assert.throws(() => (q.value = 2n ** 63n), RangeError);
  const Q = new Value("Q", 2n ** 64n - 1n);
  assert.equal(Q.value, 2n ** 64n - 1n);
  assert.throws(() => (Q.value = -1n), RangeError);
  assert.throws(() => (Q.value = 1.5), TypeError);
  const f = new Value("f", 0.1);
  assert.equal(f.value, Math.fround(0.1));
  const d = new Value("d", 0.1);
  assert.equal(d.value, 0.1);
  assert.throws(() => (d.value = "1" as unknown as number), TypeError);
  const c = new Value("c", "x");
  assert.equal(c.value, "x");
  c.value = "\xff";
  assert.equal(c.value, "\xff");
  assert.throws(() => (c.value = "ab"), TypeError);
  assert.throws(() => (c.value = "\u0100"), TypeError);
  assert.equal(new Value("c").value, "\0");
  assert.equal(new Value("i").value, 0);
  assert.equal(new Value("q").value, 0n);
});

Deno.test("Value/Array: an unknown typecode is a clear ValueError", () => {
  for (const bad of ["x", "u", "", "ii", 3]) {
    assert.throws(
      () => new Value(bad as Typecode, 0),
      (e) => e instanceof ValueError && /bad typecode \(must be b, B, h, H/.test(e.message),
    );
    assert.throws(() => new RawArray(bad as Typecode, 1), ValueError);
  }
});

Deno.test("Value: lock true (an RLock), false (none), or an existing lock", async () => {
  const v = new Value("i", 1);
  assert.ok(v.getLock() instanceof RLock);
  {
    using _ = await v.getLock().acquire();
    v.value += 1;
  }
  assert.equal(v.value, 2);
  const lock = new Lock();
  const shared = [new Value("d", 0, { lock }), new SharedArray("i", 2, { lock })];
  for (const s of shared) assert.equal(s.getLock(), lock);
  const raw = new Value("i", 0, { lock: false });
  assert.throws(() => raw.getLock(), ValueError);
  assert.throws(() => new Value("i", 0, { lock: 3 as unknown as boolean }), TypeError);
  assert.equal(String(new RawValue("h", -3)), "RawValue('h', -3)");
});

Deno.test("Array: sizes, initial values, get/set with negative indices, slices, iteration", () => {
  const a = new SharedArray("i", 4);
  assert.equal(a.length, 4);
  assert.deepEqual([...a], [0, 0, 0, 0]);
  a.set(0, 5);
  a.set(-1, 7);
  assert.deepEqual(a.slice(), [5, 0, 0, 7]);
  assert.deepEqual(a.slice(1, -1), [0, 0]);
  assert.deepEqual(a.slice(-2), [0, 7]);
  assert.equal(a.get(-4), 5);
  assert.throws(() => a.get(4), RangeError);
  assert.throws(() => a.get(-5), RangeError);
  assert.throws(() => a.set(0, 2 ** 31), RangeError);
  assert.throws(() => a.get(0.5), TypeError);
  const b = new RawArray("d", [0.5, 1.5]);
  assert.deepEqual([...b], [0.5, 1.5]);
  const c = new SharedArray("c", "hey");
  assert.equal(c.slice().join(""), "hey");
  const q = new RawArray("Q", [1n, 2n ** 64n - 1n]);
  assert.equal(q.get(1), 2n ** 64n - 1n);
  assert.throws(() => new RawArray("B", [1, 256]), /item 1: 256 is out of range/);
  assert.throws(() => new RawArray("i", -1), ValueError);
  assert.throws(() => new RawArray("i", {} as Iterable<number>), TypeError);
  assert.equal(new RawArray("b", 0).length, 0);
  assert.equal(String(new RawArray("h", [1, -2])), "RawArray('h', [1, -2])");
});

Deno.test("handles: Value, Array, RawValue, RawArray cross the codec onto the same memory", async () => {
  const v = new Value("i", 3), a = new SharedArray("d", [1, 2]);
  const rv = new RawValue("q", 9n), ra = new RawArray("c", "ab");
  const back = loads<{ v: Value<"i">; a: SharedArray<"d">; rv: RawValue<"q">; ra: RawArray<"c"> }>(
    dumps({ v, a, rv, ra }),
  );
  assert.ok(back.v instanceof Value && back.a instanceof SharedArray);
  assert.ok(back.rv instanceof RawValue && !(back.rv instanceof Value));
  assert.ok(back.ra instanceof RawArray && !(back.ra instanceof SharedArray));
  back.v.value = 4;
  back.a.set(1, 3.5);
  back.rv.value = 10n;
  back.ra.set(0, "z");
  assert.deepEqual([v.value, a.get(1), rv.value, ra.get(0)], [4, 3.5, 10n, "z"]);
  // The lock travels with the value: it is the same lock.
  await v.getLock().acquire();
  assert.ok(back.v.getLock().locked());
  back.v.getLock().release(); // same thread of the same process: its owner
  assert.ok(!v.getLock().locked());
  const unlocked = loads<Value<"i">>(dumps(new Value("i", 0, { lock: false })));
  assert.throws(() => unlocked.getLock(), ValueError);
});

Deno.test("workers: 2 x 100,000 locked increments end at exactly 200,000", async () => {
  for (const sync of [true, false]) {
    const v = new Value("i", 0);
    const ps = [0, 1].map(() => {
      const p = new Process({ target: increment, args: [v, 100_000, sync] });
      p.start();
      return p;
    });
    await Promise.all(ps.map((p) => p.join()));
    assert.deepEqual(ps.map((p) => p.exitCode), [0, 0]);
    assert.equal(v.value, 200_000, `sync=${sync}`);
  }
});

Deno.test("workers: typed values written in a worker are seen by the parent", async () => {
  const q = new Value("q", 2n ** 40n), d = new Value("d", 3), c = new Value("c", "a");
  const arr = new SharedArray("h", [1, -2, 3]), raw = new RawArray("B", 2);
  const p = await run(writeCtypes, q, d, c, arr, raw);
  assert.equal(p.exitCode, 0);
  assert.equal(q.value, 2n ** 41n);
  assert.equal(d.value, 0.75);
  assert.equal(c.value, "z");
  assert.deepEqual([...arr], [-1, 2, -3]);
  assert.deepEqual([...raw], [255, 0]);
});

Deno.test("Value and Array: options of the wrong shape are TypeErrors that show the right call", () => {
  // Python's Value("i", 0, lock=False) written positionally.
  assert.throws(
    () => new Value("i", 0, false as unknown as { lock: false }),
    (e) => e instanceof TypeError && /new Value\("i", 0, \{ lock: false \}\)/.test(e.message),
  );
  assert.throws(
    () => new SharedArray("i", 3, true as unknown as { lock: true }),
    (e) => e instanceof TypeError && /new Array\("i", 10, \{ lock: false \}\)/.test(e.message),
  );
  assert.equal(new Value("i", 1, { lock: false }).value, 1);
});

Deno.test("a worker terminated in a tight loop of Value writes stops writing (the fence holds in optimized code)", async () => {
  const v = new Value("d", 0, { lock: false }), started = new Event();
  const p = new Process({ target: writeForever, args: [v, started] });
  p.start();
  assert.ok(await started.wait(20_000));
  await new Promise((r) => setTimeout(r, 200)); // long enough to be optimized
  p.terminate();
  await p.join();
  await new Promise((r) => setTimeout(r, 100));
  const last = v.value;
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(last > 0);
  assert.equal(v.value, last, "the terminated worker still writes");
});
