// Typed queues (issue 23.2): items written field by field from a schema, batches as one run of
// ring frames, every Queue guarantee kept (counts, close/EOF, maxsize), handles cross workers.
import assert from "node:assert/strict";
import { Process } from "../lib/process/process.ts";
import { JoinableQueue, Queue } from "../lib/queues/queues.ts";
import { Empty, Full, SerializationError, ValueError } from "../lib/core/errors.ts";
import { alloc } from "../lib/core/heap.ts";
import { Ring } from "../lib/core/ring.ts";
import { type ItemOf, schema } from "../lib/queues/typed.ts";
import { typedPutManyThenFlush, typedRelay, typedSchemaOf } from "./fixtures/typed_targets.ts";

const spec = {
  a: "i8",
  b: "u8",
  c: "i16",
  d: "u16",
  e: "i32",
  f: "u32",
  g: "f32",
  h: "f64",
  j: "i64",
  k: "u64",
  l: "bool",
  m: "string",
  n: "bytes",
  o: "f64[3]",
  p: "i16[2]",
} as const;
const every = schema(spec);
type Every = ItemOf<typeof spec>;

function item(x: number): Every {
  return {
    a: -128 + (x % 256),
    b: 255 - (x % 256),
    c: -32768 + x,
    d: 65535 - x,
    e: -2147483648 + x,
    f: 4294967295 - x,
    g: 0.5 + x,
    h: Math.PI * x,
    j: -(2n ** 63n) + BigInt(x),
    k: 2n ** 64n - 1n - BigInt(x),
    l: x % 2 === 0,
    m: x % 3 === 0 ? "é€𝄞-" + x : x % 3 === 1 ? "item-" + x : "x".repeat(100 + x),
    n: new Uint8Array([x & 255, 0, 255]),
    o: [x, -x, x / 3],
    p: [x - 5, x],
  };
}

Deno.test("typed queue: every field type round-trips through put/get and putMany/getMany", async () => {
  const q = new Queue({ schema: every });
  assert.equal(q.schema, every);
  await q.put(item(0));
  q.putSync(item(1));
  q.putNowait(item(2));
  assert.deepEqual(await q.get(), item(0));
  assert.deepEqual(q.getSync(), item(1));
  assert.deepEqual(q.getNowait(), item(2));
  const items = Array.from({ length: 50 }, (_, x) => item(x));
  await q.putMany(items);
  q.putManySync(items);
  assert.equal(q.qsize(), 100);
  assert.deepEqual(await q.getMany({ max: 50 }), items);
  assert.deepEqual(q.getManySync(), items);
  assert.equal(q.qsize(), 0);
  q.close();
});

Deno.test("typed queue: a wrong value is refused with a SerializationError naming the field", () => {
  const q = new Queue({ schema: every });
  const wrong: [keyof Every, unknown][] = [
    ["a", 128],
    ["b", -1],
    ["c", 1.5],
    ["d", 70000],
    ["e", 2 ** 31],
    ["f", "1"],
    ["g", 1n],
    ["h", null],
    ["j", 2n ** 63n],
    ["k", -1n],
    ["l", 1],
    ["m", 7],
    ["n", [1, 2]],
    ["o", [1, 2]],
    ["p", [1, 1e6]],
  ];
  for (const [field, v] of wrong) {
    const bad = { ...item(1), [field]: v } as Every;
    assert.throws(() => q.putSync(bad), (e: unknown) => {
      assert.ok(e instanceof SerializationError, `${field}: ${e}`);
      assert.ok(e.path.startsWith(`item.${field}`), e.path);
      return true;
    });
    // A batch is refused whole: nothing of it is put.
    assert.throws(() => q.putManySync([item(0), bad]), (e: unknown) => {
      assert.ok(e instanceof SerializationError && e.path.startsWith(`items[1].${field}`));
      return true;
    });
  }
  const { m: _, ...missing } = item(1);
  assert.throws(() => q.putSync(missing as Every), /item\.m: expected string: got undefined/);
  assert.throws(() => q.putSync({ ...item(1), z: 1 } as Every), /item\.z: not a field/);
  assert.throws(() => q.putSync(null as unknown as Every), SerializationError);
  assert.equal(q.qsize(), 0);
  assert.throws(() => new Queue({ schema: { x: "i33" } as never }), /field 'x': unknown type/);
  assert.throws(
    () => new JoinableQueue({ schema: every } as unknown as number),
    /JoinableQueue, LifoQueue or PriorityQueue takes no schema/,
  );
  q.close();
});

Deno.test("typed queue: a batch is written as each item alone would be, and refused as it", () => {
  // encodeMany writes a batch through its own generated loop: its records must be the bytes of
  // one-by-one encodes (numbers, ASCII and UTF-8 strings, a field written by its closure between
  // inline ones, strings long enough to grow the buffer mid-batch), and a batch that does not fit
  // must be refused with the error a single put gives, naming the item.
  const s = schema({ b: "bytes", t: "string", x: "i16", o: "f64[3]", u: "u32", m: "string" });
  const items = Array.from({ length: 40 }, (_, k) => ({
    b: new Uint8Array(k % 5).fill(k),
    t: k % 4 === 0 ? "é€𝄞-" + k : "w".repeat(k * 97),
    x: k % 2 ? -32768 + k : -0,
    o: [k, -k, k / 7],
    u: 4294967295 - k,
    m: k % 3 ? "item-" + k : "",
  }));
  const many = s.encodeMany(items, 1 << 20), bytes = many.bytes.slice(), starts = many.starts;
  items.forEach((it, k) => {
    const one = s.encode(it).slice(), at = starts[k];
    const len = new DataView(bytes.buffer).getUint32(at, true);
    assert.deepEqual(bytes.subarray(at + 4, at + 4 + len), one, `item ${k}`);
    assert.deepEqual(s.decodeAt(bytes, at + 4, len), { ...it, x: it.x + 0 }); // -0 reads as 0
    assert.equal(k + 1 < starts.length ? starts[k + 1] : bytes.length, (at + 4 + len + 3) & ~3);
  });
  const ok = items[1];
  const refused: [unknown, RegExp][] = [
    [{ ...ok, x: 32768 }, /items\[2\]\.x: expected i16/],
    [{ ...ok, u: -1 }, /items\[2\]\.u: expected u32/],
    [{ ...ok, u: NaN }, /items\[2\]\.u: expected u32/],
    [{ ...ok, x: 0.5 }, /items\[2\]\.x: expected i16/],
    [{ ...ok, t: 1 }, /items\[2\]\.t: expected string/],
    [{ ...ok, b: [1] }, /items\[2\]\.b: expected bytes/],
    [{ ...ok, o: [1, 2, "3"] }, /items\[2\]\.o: expected f64\[3\]/],
    [{ ...ok, z: 1 }, /items\[2\]\.z: not a field/],
    [7, /items\[2\]: expected an object/],
    [{ ...ok, t: "x".repeat(5000) }, /items\[2\]: encodes to \d+ bytes/],
  ];
  for (const [bad, message] of refused) {
    assert.throws(() => s.encodeMany([ok, ok, bad as typeof ok, 5 as never], 4096), (e) => {
      assert.ok(e instanceof SerializationError, String(e));
      assert.match(e.message, message);
      return true;
    });
  }
});

Deno.test("typed queue: counts, getMany max, maxsize (Full, all or nothing), close and EOF", async () => {
  const s = schema({ i: "u32" });
  const q = new Queue({ schema: s, maxsize: 10 });
  assert.throws(
    () => q.putManySync(Array.from({ length: 11 }, (_, i) => ({ i })), { block: false }),
    Full,
  );
  assert.equal(q.qsize(), 0);
  await assert.rejects(
    q.putMany(Array.from({ length: 15 }, (_, i) => ({ i })), { timeout: 50 }),
    /10 of the 15 items were put/,
  );
  assert.ok(q.full());
  assert.deepEqual((await q.getMany({ max: 3 })).map((x) => x.i), [0, 1, 2]);
  assert.equal(q.qsize(), 7);
  assert.throws(() => q.getManySync({ max: 0 }), /'max' must be a positive integer/);
  assert.equal(q.getManySync().length, 7);
  await assert.rejects(q.getMany({ block: false }), Empty);
  q.putManySync([{ i: 1 }, { i: 2 }]);
  q.close();
  await assert.rejects(q.putMany([{ i: 3 }]), ValueError);
  assert.deepEqual(q.getManySync().map((x) => x.i), [1, 2]);
  assert.throws(() => q.getManySync(), /Queue is closed/);
});

Deno.test("typed queue: two queues of one schema read in turn, by batch and one by one", async () => {
  // One compiled reader serves both rings (and single gets' views of one record): each read
  // must land on its own data, whichever was read before.
  const s = schema({ i: "i32", s: "string" }), a = new Queue({ schema: s });
  const b = new Queue({ schema: s });
  const items = (from: number) =>
    Array.from({ length: 30 }, (_, k) => ({ i: from + k, s: `v${from + k}` }));
  for (let round = 0; round < 3; round++) {
    a.putManySync(items(round * 100));
    b.putManySync(items(round * 100 + 50));
    assert.deepEqual(a.getSync(), items(round * 100)[0]);
    assert.deepEqual(b.getManySync({ max: 10 }), items(round * 100 + 50).slice(0, 10));
    assert.deepEqual(a.getManySync(), items(round * 100).slice(1));
    assert.deepEqual(await b.get(), items(round * 100 + 50)[10]);
    assert.deepEqual(b.getManySync(), items(round * 100 + 50).slice(11));
  }
  a.close();
  b.close();
});

Deno.test("typed queue: a record that fails to decode behind a getMany's first item costs that item only, an error for the next reader, with true counts", async () => {
  const q = new Queue({ schema: schema({ i: "u32" }) });
  // A record that cannot be decoded, as a corrupt one would be: item 99 throws on decode.
  const sch = q.schema! as unknown as {
    decodeAt: (d: Uint8Array, at: number, len: number) => { i: number };
  };
  const decodeAt = sch.decodeAt;
  sch.decodeAt = (d, at, len) => {
    const item = decodeAt(d, at, len);
    if (item.i === 99) throw new SerializationError("item", "a record of 4 bytes is corrupt");
    return item;
  };
  try {
    // getMany waits on an empty queue: its first item comes by get, the rest in one go behind it.
    const got = q.getMany({ max: 10 });
    q.putManySync([{ i: 1 }, { i: 99 }, { i: 2 }]);
    assert.deepEqual((await got).map((x) => x.i), [1]);
    assert.equal(q.qsize(), 2); // the bad record and item 2
    await assert.rejects(q.getMany(), /a record of 4 bytes is corrupt/);
    assert.equal(q.qsize(), 1);
    assert.deepEqual((await q.getMany()).map((x) => x.i), [2]);
    assert.equal(q.qsize(), 0);
    q.close();
    const rest = [];
    for await (const x of q) rest.push(x); // ends: the counts are true
    assert.deepEqual(rest, []);
  } finally {
    sch.decodeAt = decodeAt; // schemas are shared by text: the next test's must be whole
  }
});

Deno.test("typed queue: a batch that meets the end of the ring goes on at its start", () => {
  // 50 records of 20 bytes a batch in a 4 KiB ring: the 5th batch must wrap mid-batch without a
  // reader in between (it used to wait for one, for ever).
  const s = schema({ i: "i32", s: "string" });
  const bytes = Ring.bytesFor(4096), ring = new Ring(Ring.init(alloc(bytes), bytes));
  const items = Array.from({ length: 50 }, (_, i) => ({ i, s: "item-" + i }));
  for (let k = 0; k < 20; k++) {
    const batch = s.encodeMany(items, ring.maxRecord);
    assert.equal(ring.sendFramesSync(batch.bytes, 50, { broken: () => true }), "ok", `batch ${k}`);
    const out: { i: number; s: string }[] = [];
    while (out.length < 50 && ring.tryRecvMany(s.decodeAt, 1000, out));
    assert.deepEqual(out, items);
  }
  Ring.dispose(ring.base);
});

Deno.test("typed queue: handles cross to a worker with their schema; order and sum kept", async () => {
  const s = schema({ i: "i32", s: "string" });
  const q = new Queue({ schema: s }), back = new Queue({ schema: s });
  const p = new Process({ target: typedRelay, args: [q, back] });
  p.start();
  const n = 20_000;
  for (let i = 0; i < n; i += 1000) {
    await q.putMany(Array.from({ length: 1000 }, (_, k) => ({ i: i + k, s: "item-" + (i + k) })));
  }
  q.close();
  let next = 0;
  for (;;) {
    let got;
    try {
      got = await back.getMany({ timeout: 20_000 });
    } catch (e) {
      if (e instanceof ValueError) break;
      throw e;
    }
    for (const x of got) {
      assert.equal(x.i, next);
      assert.equal(x.s, "item-" + next++);
    }
  }
  assert.equal(next, n);
  await p.join();
  assert.equal(p.exitCode, 0);

  const one = new Queue({ schema: schema({ i: "i32" }) }), text = new Queue<string>();
  const p2 = new Process({ target: typedSchemaOf, args: [one, text] });
  p2.start();
  assert.equal(await text.get({ timeout: 20_000 }), '{"i":"i32"}');
  assert.deepEqual(await one.get({ timeout: 20_000 }), { i: 41 });
  await p2.join();
});

Deno.test("putMany/getMany on an untyped queue; new Queue({ maxsize }) takes options", async () => {
  const q = new Queue<{ n: number } | string>({ maxsize: 4 });
  assert.equal(q.maxsize, 4);
  assert.equal(q.schema, null);
  await q.putMany([{ n: 1 }, "two"]);
  q.putManySync(["three"]);
  assert.deepEqual(await q.getMany({ max: 2 }), [{ n: 1 }, "two"]);
  assert.deepEqual(q.getManySync(), ["three"]);
  assert.throws(() => q.getManySync({ block: false }), Empty);
  q.close();
});

Deno.test("typed queue: a producer terminated with batches on their way leaves true counts", async () => {
  // Its outbox holds whole batches: each counts its records not yet written (not one per batch),
  // so once it is dead the queue drains to qsize 0 and the reader meets the end.
  const n = 100_000;
  const q = new Queue({ schema: schema({ i: "u32" }) }), ready = new Queue<string>();
  const p = new Process({ target: typedPutManyThenFlush, args: [q, ready, n] });
  p.start();
  try {
    assert.equal(await ready.get({ timeout: 30_000 }), "queued");
    assert.equal(q.qsize(), n);
    p.terminate();
    await p.join();
    q.close();
    let got = 0;
    const deadline = performance.now() + 20_000;
    for (;;) {
      let items;
      try {
        items = await q.getMany({ timeout: Math.max(0, deadline - performance.now()) });
      } catch (e) {
        if (e instanceof ValueError) break;
        throw new Error(`the queue never ended (got ${got} items, qsize ${q.qsize()}): ${e}`);
      }
      for (const x of items) assert.equal(x.i, got++);
    }
    assert.ok(got > 0 && got < n, `got ${got}`);
    assert.equal(q.qsize(), 0);
  } finally {
    if (p.isAlive()) p.terminate();
    await p.join();
  }
});
