// Managers across the languages (issue 17, item 4): with serializer "pickle", CPython's own
// multiprocessing.managers clients use a denomp manager server, and a denomp client uses a
// Python manager server. Every python3 / python3.x (3.8+) on PATH runs
// tests/fixtures/py_manager_peer.py; without one these tests are skipped with a message.

import assert from "node:assert/strict";
import { BaseManager, SyncManager } from "../lib/managers/managers.ts";
import { AuthenticationError, Empty, RemoteError } from "../lib/core/errors.ts";
import { findPythons, type Python, PythonPeer, skipWithoutPython } from "./_python.ts";

const PEER = new URL("./fixtures/py_manager_peer.py", import.meta.url).pathname;
const KEY = "the manager secret";

const pythons = await findPythons();
skipWithoutPython(
  pythons,
  "python_managers_test",
  "CPython managers",
  "the manager tests against CPython",
);

/** A running py_manager_peer.py. */
class Peer extends PythonPeer {
  constructor(python: Python, args: (string | number)[]) {
    super(python, PEER, args, 90_000);
  }
}

/** A class a Python client uses through the denomp server (AutoProxy: its own method names). */
class Counter {
  static made: Counter[] = [];
  constructor(public n: number) {
    Counter.made.push(this);
  }
  incr(by: number): number {
    return (this.n += by);
  }
  fail(why: string): never {
    throw new Error(why);
  }
}

class CounterManager extends SyncManager {}
CounterManager.register("Counter", Counter);

/** Serves a denomp manager speaking CPython's protocol, in this isolate. */
function serve(serializer?: "pickle") {
  const m = new CounterManager({
    address: { hostname: "127.0.0.1", port: 0 },
    authkey: KEY,
    serializer,
  });
  const done = m.serveForever();
  return { m, done, port: m.address!.port };
}

for (const py of pythons) {
  Deno.test(`Python ${py.version}: its BaseManager client uses a denomp server's Counter, dict, list, Namespace, Queue, Lock, Event`, async () => {
    Counter.made = [];
    const { m, done, port } = serve("pickle");
    try {
      const out = await new Peer(py, ["client", port, KEY]).done();
      const lines = out.trim().split("\n");
      assert.deepEqual(lines.filter((l) => !l.startsWith("ok ")), ["done"], out);
      assert.equal(lines.length, 30, out); // every check ran
      // The Counter lived here, in the denomp server.
      assert.equal(Counter.made.length, 1);
      assert.equal(Counter.made[0].n, 10);
    } finally {
      await m.shutdown();
      await done;
    }
  });

  Deno.test(`Python ${py.version}: a Python client killed in a denomp Queue's get() takes no item`, async () => {
    const { m, done, port } = serve("pickle");
    try {
      const out = await new Peer(py, ["hangup", port, KEY]).done();
      assert.equal(out, "ok the killed child's get took nothing\n");
    } finally {
      await m.shutdown();
      await done;
    }
  });

  Deno.test(`Python ${py.version}: a denomp client uses a Python SyncManager server's dict, list and Queue`, async () => {
    const server = new Peer(py, ["server", KEY]);
    const port = Number(await server.waitFor(/^port (\d+)$/m));
    const m = new SyncManager({
      address: { hostname: "127.0.0.1", port },
      authkey: KEY,
      serializer: "pickle",
    });
    await m.connect();
    try {
      const d = m.dict<unknown, unknown>({ a: 1 });
      await d.set("b", [1, 2]);
      await d.set(2, "int key");
      assert.equal(await d.get("a"), 1);
      assert.deepEqual(await d.get("b"), [1, 2]);
      assert.equal(await d.get("zz"), null);
      assert.equal(await d.get("zz", 0), 0);
      assert.equal(await d.has("a"), true);
      assert.equal(await d.len(), 3);
      assert.deepEqual(await d.keys(), ["a", "b", 2]);
      assert.deepEqual(await d.items(), [["a", 1], ["b", [1, 2]], [2, "int key"]]);
      assert.equal(await d.delete("a"), true);
      assert.equal(await d.delete("a"), false);
      await d.update({ x: 9 });
      assert.equal(await d.pop("x"), 9);
      await assert.rejects(d.pop("x"), (e: Error) => e.name === "KeyError");
      assert.deepEqual(await d.copy(), new Map<unknown, unknown>([["b", [1, 2]], [2, "int key"]]));

      const l = m.list<number | string>([3, 1, 2]);
      await l.append(4);
      await l.extend([5]);
      assert.equal(await l.get(-1), 5);
      assert.deepEqual(await l.slice(1, 3), [1, 2]);
      assert.equal(await l.len(), 5);
      await l.sort({ reverse: true });
      assert.deepEqual(await l.slice(), [5, 4, 3, 2, 1]);
      assert.equal(await l.pop(), 1);
      assert.equal(await l.index(3), 2);
      await l.set(0, "first");
      assert.equal(await l.get(0), "first");
      await assert.rejects(l.get(99), (e: Error) => e.name === "IndexError");

      const q = m.Queue<unknown>();
      await q.put("job");
      await q.putNowait({ n: 1 });
      assert.equal(await q.qsize(), 2);
      assert.equal(await q.get(), "job");
      assert.deepEqual(await q.get({ timeout: 5000 }), { n: 1 });
      await assert.rejects(q.get({ timeout: 50 }), Empty);
      await assert.rejects(q.getNowait(), Empty);
      // A call that waits does not hold up the others (each borrows its own connection).
      const waiting = q.get({ timeout: 30_000 });
      await new Promise((r) => setTimeout(r, 200));
      await q.put("late");
      assert.equal(await waiting, "late");

      const ns = m.Namespace<{ x: number; y?: string }>({ x: 1 });
      await ns.set("y", "two");
      assert.equal(await ns.get("x"), 1);
      assert.equal(await ns.has("y"), true);
      assert.deepEqual(await ns.toObject(), { x: 1, y: "two" });
      assert.equal(await ns.delete("x"), true);
      assert.equal(await ns.delete("x"), false);
      assert.deepEqual(await ns.keys(), ["y"]);

      const ev = m.Event();
      assert.equal(await ev.isSet(), false);
      assert.equal(await ev.wait(20), false);
      const woken = ev.wait(30_000);
      await ev.set();
      assert.equal(await woken, true);

      const lock = m.Lock();
      const held = await lock.acquire();
      assert.ok(held);
      assert.equal(await lock.acquire({ block: false }), false);
      assert.equal(await lock.acquire({ timeout: 20 }), false);
      await held.release();
      assert.ok(await lock.acquire({ block: false }));
      await lock.release();

      // An unknown typeid: the first call reports the Python server's error.
      await assert.rejects(
        (m.create("Nope") as unknown as { x(): Promise<unknown> }).x(),
        (e: Error) => e instanceof RemoteError && e.remoteName === "KeyError",
      );
    } finally {
      await m.shutdown();
    }
    await server.done();
  });

  Deno.test(`Python ${py.version}: managers refuse a wrong authkey both ways`, async () => {
    // Python's client with a wrong key to a denomp server.
    const { m, done, port } = serve("pickle");
    try {
      const out = await new Peer(py, ["client", port, "not the key"]).done();
      assert.match(out, /^refused AuthenticationError: digest sent was rejected\n$/);
    } finally {
      await m.shutdown();
      await done;
    }
    // denomp's client with a wrong key to a Python server; then a good one is served.
    const server = new Peer(py, ["server", KEY]);
    const pport = Number(await server.waitFor(/^port (\d+)$/m));
    const address = { hostname: "127.0.0.1", port: pport };
    const bad = new SyncManager({ address, authkey: "not the key", serializer: "pickle" });
    await assert.rejects(bad.connect(), AuthenticationError);
    const good = new SyncManager({ address, authkey: KEY, serializer: "pickle" });
    await good.connect();
    await good.shutdown();
    await server.done();
  });
}

Deno.test('managers: serializer "pickle" between denomp programs: a started server, a connected client', async () => {
  // Without Python: the server runs in its own worker (start()), the client is this isolate.
  const server = new SyncManager({
    address: { hostname: "127.0.0.1", port: 0 },
    authkey: KEY,
    serializer: "pickle",
  });
  await server.start();
  const client = new SyncManager({ address: server.address!, authkey: KEY, serializer: "pickle" });
  await client.connect();
  try {
    const d = client.dict<string, number[]>();
    await d.set("xs", [1, 2]);
    assert.deepEqual(await d.get("xs"), [1, 2]);
    const q = client.Queue<string>();
    const waiting = q.get({ timeout: 30_000 });
    await q.put("job");
    assert.equal(await waiting, "job");
    await assert.rejects(q.get({ block: false }), Empty);
    // A cancelled wait rejects with the signal's reason and closes its connection: the server
    // ends that wait, so the next item goes to the next get.
    const ac = new AbortController();
    const cancelled = q.get({ signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(cancelled, (e: Error) => e.name === "AbortError");
    await new Promise((r) => setTimeout(r, 500)); // the server sees the hang-up at once
    await q.put("next");
    assert.equal(await q.get({ timeout: 5000 }), "next");
    // A client speaking denomp's protocol to it is told what is wrong, instead of waiting.
    const plain = new SyncManager({
      address: server.address!,
      authkey: KEY,
      handshakeTimeout: 300,
    });
    await assert.rejects(plain.connect(), /serializer: "pickle"/);
  } finally {
    client.close();
    await server.shutdown();
  }
});

Deno.test("managers: a pickle client's shutdown() stops a serveForever() server speaking CPython's protocol", async () => {
  const { done, port } = serve("pickle");
  const client = new SyncManager({
    address: { hostname: "127.0.0.1", port },
    authkey: KEY,
    serializer: "pickle",
  });
  await client.connect();
  const l = client.list([1]);
  assert.equal(await l.len(), 1);
  await client.shutdown();
  await done; // the server stopped
  await assert.rejects(l.len(), /closed/);
});

Deno.test("managers: serializer is checked", () => {
  assert.throws(
    () => new BaseManager({ serializer: "json" as "pickle" }),
    /serializer must be "denomp" or "pickle": current value is "json"/,
  );
});
