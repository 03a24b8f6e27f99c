// The codec (lib/core/reduction.ts): all-or-nothing encoding, fidelity where structuredClone keeps
// something, errors that keep their cause, and handles whose module a worker has not loaded.
import assert from "node:assert/strict";
import { dumps, Encoder, loads, loadsAsync, registerHandle } from "../lib/core/reduction.ts";
import { RemoteError, SerializationError } from "../lib/core/errors.ts";
import { Queue } from "../lib/queues/queues.ts";
import { Event } from "../lib/sync/mod.ts";
import { Process } from "../lib/process/process.ts";
import { Pool } from "../lib/pool/pool.ts";
import { Pipe } from "../lib/connection/pipe.ts";
import {
  echo,
  getEventSync,
  setEventAsync,
  setEventFromPipe,
  throwPlain,
  throwUnsendable,
  throwWithCause,
} from "./fixtures/codec_targets.ts";

/** An Error holding a function one level down (the example). */
function badError(): Error {
  return new RangeError("boom", { cause: { callback: () => 1 } });
}

Deno.test("an Error with a function one level down is refused with its path, nothing written", () => {
  assert.throws(
    () => dumps([badError(), { k: "v" }], "item"),
    (e: unknown) =>
      e instanceof SerializationError && e.path === "item[0].cause.callback" &&
      e.message === "item[0].cause.callback: functions cannot be sent",
  );
  // An own field, too; and the encoder is whole again for the next value.
  const enc = new Encoder();
  assert.throws(
    () => enc.encode(Object.assign(new Error("x"), { f: { g: Symbol() } }), "item"),
    /item\.f\.g: symbols cannot be sent/,
  );
  const shared = { s: 1 };
  const back = loads<unknown[]>(enc.encode([shared, shared, { k: "v" }]).slice());
  assert.deepEqual(back, [{ s: 1 }, { s: 1 }, { k: "v" }]);
  assert.equal(back[0], back[1]);
});

Deno.test("a Queue put of such a value throws, leaves qsize at 0, and the next item arrives", async () => {
  const q = new Queue();
  try {
    await assert.rejects(() => q.put([badError()]), /item\[0\]\.cause\.callback: functions/);
    assert.throws(() => q.putSync([badError()]), SerializationError);
    assert.equal(q.qsize(), 0);
    await q.put({ k: "v" });
    assert.deepEqual(await q.get({ timeout: 5000 }), { k: "v" });
    q.close();
    const rest = [];
    for await (const x of q) rest.push(x); // ends: nothing half-put is pending
    assert.deepEqual(rest, []);
  } finally {
    q.close();
  }
});

Deno.test("reportError: an error's unsendable fields are left out (named in its stack), references intact", () => {
  const shared = { n: 1 };
  // More objects than the encoder's small table, so both kinds of reference bookkeeping roll back.
  const many = Array.from({ length: 12 }, (_, i) => ({ i }));
  const err = Object.assign(new TypeError("t"), {
    a: shared,
    bad: { many, x: shared, f: () => 0 },
    c: shared,
    d: many[3],
  });
  const bytes = new Encoder().encode([err, shared, { k: "v" }], "error", { reportError: true });
  const [e, s, tail] = loads<[TypeError & Record<string, unknown>, unknown, unknown]>(bytes);
  assert.ok(e instanceof TypeError && Error.isError(e));
  assert.deepEqual(Object.keys(e), ["a", "c", "d"]); // order kept, `bad` left out
  assert.equal(e.a, e.c);
  assert.equal(e.a, s);
  assert.deepEqual(e.d, { i: 3 });
  assert.deepEqual(tail, { k: "v" });
  assert.match(e.stack!, /left out when sending this error: bad\.f \(functions cannot be sent\)/);
  // A plain value is still refused in this mode.
  assert.throws(
    () => new Encoder().encode({ f: () => 0 }, "error", { reportError: true }),
    /error\.f: functions/,
  );
});

/** A handle kind whose reduce takes a reference, as the library's do, and whose discard gives it back. */
class Counted {
  static refs = 0;
}
registerHandle<Counted, number>({
  name: "test.Counted",
  cls: Counted,
  module: import.meta.url,
  reduce: () => ++Counted.refs,
  rebuild: () => (Counted.refs--, new Counted()),
  discard: () => void Counted.refs--,
});

Deno.test("a failed encode, or a field left out, gives back the references its handles took", () => {
  const h = new Counted();
  assert.throws(() => dumps([h, { f: () => 0 }]), /value\[1\]\.f: functions/);
  assert.equal(Counted.refs, 0);
  const err = Object.assign(new Error("e"), { keep: h, drop: { h, f: () => 0 } });
  const bytes = new Encoder().encode(err, "error", { reportError: true });
  assert.equal(Counted.refs, 1); // `keep` only
  const back = loads<Error & { keep: Counted }>(bytes);
  assert.ok(back.keep instanceof Counted && !("drop" in back));
  assert.equal(Counted.refs, 0);
});

Deno.test("a pool task's error keeps the user's cause; an unsendable field is left out, not a corrupt message", async () => {
  await using pool = new Pool({ processes: 1 });
  const e1 = await pool.apply(throwWithCause, [42]).catch((e) => e);
  assert.ok(e1 instanceof RangeError);
  assert.equal(e1.message, "boom");
  assert.deepEqual(e1.cause, { orderId: 42 });
  assert.match(e1.stack!, /at throwWithCause .*codec_targets\.ts/); // the remote stack
  const e2 = await pool.apply(throwPlain, []).catch((e) => e);
  assert.ok(e2 instanceof TypeError);
  assert.ok(e2.cause instanceof RemoteError); // no cause of its own: the remote one, as before
  assert.match(e2.cause.remoteStack, /at throwPlain/);
  const e3: RangeError & { code?: number } = await pool.apply(throwUnsendable, []).catch((e) => e);
  assert.ok(e3 instanceof RangeError, String(e3));
  assert.equal(e3.message, "bad");
  assert.equal(e3.code, 7);
  assert.match(e3.stack!, /cause\.callback \(functions cannot be sent\)/);
  assert.deepEqual(await pool.apply(echo, [{ k: "v" }]), { k: "v" }); // the worker goes on
});

Deno.test("long strings with lone surrogates arrive as structuredClone keeps them", () => {
  for (
    const s of [
      "x".repeat(70) + "\ud800",
      "\udc00" + "é".repeat(100),
      "😀".repeat(40) + "\ud83d",
      "y".repeat(65),
      "ü".repeat(200),
      "😀".repeat(100),
    ]
  ) {
    const back = loads<{ s: string }>(dumps({ [s]: s, s }));
    assert.equal(back.s, structuredClone(s));
    assert.equal(back.s, s);
    assert.deepEqual(Object.keys(back), [s, "s"]);
  }
});

Deno.test("errors named like Object.prototype members arrive as Errors of that name", () => {
  for (const name of ["toString", "hasOwnProperty", "constructor", "__proto__", "valueOf"]) {
    const e = new Error("m");
    e.name = name;
    const back = loads<Error>(dumps(e));
    assert.ok(back instanceof Error && Error.isError(back), name);
    assert.equal(back.name, name);
    assert.equal(back.message, "m");
    assert.equal(Object.getPrototypeOf(back), Error.prototype);
  }
  const r = loads<RangeError>(dumps(new RangeError("r")));
  assert.equal(Object.getPrototypeOf(r), RangeError.prototype);
});

Deno.test("named properties of arrays arrive, in order, with holes and references kept", () => {
  type Props = unknown[] & Record<string, unknown>;
  const a = Object.assign([1, , 3], { total: 4 }) as unknown as Props;
  a.self = a;
  a["4294967295"] = "not an index";
  const back = loads<Props[]>(dumps([a, a]))[0];
  assert.deepEqual(Object.keys(back), Object.keys(structuredClone(a) as Props));
  assert.equal(back.length, 3);
  assert.ok(!(1 in back));
  assert.equal(back.total, 4);
  assert.equal(back.self, back);
  assert.equal(back["4294967295"], "not an index");
  assert.throws(() => dumps(Object.assign([1], { f: () => 0 }), "item"), /item\.f: functions/);
});

Deno.test("a list (EncodeOptions.list) sends its items only; arrays inside it keep their named properties", () => {
  type Props = unknown[] & Record<string, unknown>;
  const inner = Object.assign([1], { total: 1 }) as unknown as Props;
  const list = Object.assign([inner, "b"], { note: "not an item", f: () => 0 });
  const back = loads<Props[]>(new Encoder().encode(list, "chunk", { list: true }));
  assert.deepEqual(Object.keys(back), ["0", "1"]);
  assert.equal(back[0].total, 1);
  // Without the option, as any value: the function is refused, by its path.
  assert.throws(() => new Encoder().encode(list, "chunk"), /chunk\.f: functions/);
  // The option covers the list itself, not a later call's value.
  const enc = new Encoder();
  enc.encode(list, "chunk", { list: true });
  assert.throws(() => enc.encode(list, "chunk"), /chunk\.f: functions/);
});

Deno.test("a value nested too deeply is refused with a SerializationError naming its path", () => {
  let v: unknown = 1;
  for (let i = 0; i < 10_000; i++) v = { a: v };
  assert.throws(
    () => dumps(v, "item"),
    (e: unknown) =>
      e instanceof SerializationError && e.path.startsWith("item.a.a") &&
      /nested more than 1000 objects deep/.test(e.message) && e.message.length < 300,
  );
  let ok: unknown = "leaf";
  for (let i = 0; i < 999; i++) ok = [ok];
  assert.deepEqual(loads(dumps(ok)), ok);
});

Deno.test("a handle whose module a worker has not loaded: async get loads it, getSync says why", async () => {
  const q = new Queue<Event>(), out = new Queue<string>();
  try {
    const ev = new Event();
    const a = new Process({ target: setEventAsync, args: [q, out] });
    a.start();
    await q.put(ev);
    assert.equal(await out.get({ timeout: 30_000 }), "set");
    assert.ok(ev.isSet());
    await a.join();
    assert.equal(a.exitCode, 0);

    const b = new Process({ target: getEventSync, args: [q, out] });
    b.start();
    await q.put(new Event());
    const msg = await out.get({ timeout: 30_000 });
    assert.match(
      msg,
      /^SerializationError: .*a handle of kind 'Event' arrived .*not loaded in this worker/,
    );
    assert.match(msg, /import type/);
    assert.match(msg, /event\.ts/); // the module to import
    await b.join();
  } finally {
    q.close();
    out.close();
  }
});

Deno.test("a handle whose module a worker has not loaded arrives through a Pipe's async recv", async () => {
  const [a, b] = Pipe<Event>();
  const out = new Queue<string>();
  try {
    const ev = new Event();
    const p = new Process({ target: setEventFromPipe, args: [b, out] });
    p.start();
    await a.send(ev);
    assert.equal(await out.get({ timeout: 30_000 }), "set");
    assert.ok(ev.isSet());
    await p.join();
    assert.equal(p.exitCode, 0);
  } finally {
    a.close();
    b.close();
    out.close();
  }
});

Deno.test("loadsAsync returns the value itself when nothing is missing; copies its input otherwise", async () => {
  const v = loadsAsync<{ a: number }>(dumps({ a: 1 }));
  assert.ok(!(v instanceof Promise));
  assert.deepEqual(v, { a: 1 });
  assert.deepEqual(await loadsAsync(dumps([1n, new Map([[1, "x"]])])), [1n, new Map([[1, "x"]])]);
});

Deno.test("a failed encode gives a Pipe end's in-flight copy back: the other end still sees EOF", async () => {
  const [a, b] = Pipe<unknown>();
  assert.throws(() => dumps([b, () => {}]), SerializationError);
  b.close();
  // A copy counted as in flight would keep the end open for ever: recv would wait, not end.
  const got = await Promise.race([
    a.recv().then(() => "a message", (e: Error) => e.name),
    new Promise((r) => setTimeout(() => r("still waiting"), 5_000)),
  ]);
  a.close();
  assert.equal(got, "EOFError");
});
