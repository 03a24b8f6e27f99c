import assert from "node:assert/strict";
import {
  BaseManager,
  BaseProxy,
  type DictProxy,
  type ListProxy,
  Manager,
  type ProxyFactory,
  SyncManager,
} from "../lib/managers/managers.ts";
import type { Connection } from "../lib/connection/connection.ts";
import { wrapSocket } from "../lib/connection/socket.ts";
import { answerChallenge, deliverChallenge } from "../lib/connection/auth.ts";
import {
  AuthenticationError,
  BrokenBarrierError,
  Empty,
  Full,
  RemoteError,
  ValueError,
} from "../lib/core/errors.ts";
import { Process } from "../lib/process/process.ts";
import { registerHandle } from "../lib/core/reduction.ts";
import { Queue } from "../lib/queues/queues.ts";
import { Event } from "../lib/sync/mod.ts";
import { Thread } from "../lib/core/threading.ts";
import {
  appendFromQueue,
  appendNested,
  appendTo,
  Counter,
  holdManagedLock,
  lockedIncrements,
  startAndCrash,
  TestManager,
} from "./fixtures/manager_targets.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function start<A extends unknown[]>(target: (...a: A) => unknown, ...args: A): Process {
  const p = new Process({ target: target as (...a: unknown[]) => unknown, args });
  p.start();
  return p;
}

async function rejects(p: Promise<unknown>, name: string, message?: RegExp): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof Error, `expected an Error, got ${e}`);
    assert.equal(e.name, name, `expected ${name}, got ${e.name}: ${e.message}`);
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected a rejection with ${name}`);
}

// ---------------------------------------------------------------------------------------------
// Built-in types

Deno.test("Manager: dict proxy methods, with Python's semantics", async () => {
  await using manager = await Manager();
  const d = manager.dict<unknown, unknown>([["a", 1]]);
  assert.ok(d instanceof BaseProxy);
  await d.set("b", { nested: [1, 2] });
  await d.set([1, 2], "tuple key"); // an array key works as Python's tuple key
  await d.set(3, "int key");
  assert.equal(await d.get("a"), 1);
  assert.deepEqual(await d.get("b"), { nested: [1, 2] });
  assert.equal(await d.get([1, 2]), "tuple key");
  assert.equal(await d.get("3"), undefined); // "3" and 3 are different keys
  assert.equal(await d.get("zz", "dflt"), "dflt");
  assert.equal(await d.has(3), true);
  assert.equal(await d.len(), 4);
  assert.deepEqual(await d.keys(), ["a", "b", [1, 2], 3]);
  assert.deepEqual((await d.items())[0], ["a", 1]);
  assert.equal(await d.pop("a"), 1);
  assert.equal(await d.pop("a", null), null);
  const e = await rejects(d.pop("a"), "KeyError", /'a'/);
  assert.ok(!(e instanceof RemoteError)); // built-in types report their own errors
  assert.equal(await d.setdefault("s", 5), 5);
  assert.equal(await d.setdefault("s", 6), 5);
  assert.equal(await d.delete("s"), true);
  assert.equal(await d.delete("s"), false);
  await d.update(new Map([["m", 1]]));
  await d.update({ o: 2 });
  await d.update([["p", 3]]);
  const other = manager.dict<string, number>({ q: 4 });
  await d.update(other as DictProxy<unknown, unknown>); // another proxy of the same manager
  const copy = await d.copy();
  assert.ok(copy instanceof Map);
  assert.deepEqual([...copy.keys()], ["b", [1, 2], 3, "m", "o", "p", "q"]);
  await d.clear();
  assert.equal(await d.len(), 0);
  // Values cannot be functions: the error names the path, and nothing is sent.
  await rejects(d.set("f", () => 1), "SerializationError", /message\[2\]\[1\]: functions/);
});

Deno.test("Manager: list proxy methods, with Python's indexing and ordering", async () => {
  await using manager = await Manager();
  const l = manager.list<number | string>([3, 1, 2]);
  await l.append(4);
  await l.extend([5, 6]);
  await l.insert(0, 0);
  await l.insert(-1, 5.5);
  assert.deepEqual(await l.slice(), [0, 3, 1, 2, 4, 5, 5.5, 6]);
  assert.equal(await l.get(-1), 6);
  await l.set(-1, 7);
  assert.equal(await l.pop(), 7);
  assert.equal(await l.pop(0), 0);
  assert.equal(await l.len(), 6);
  await l.remove(5.5);
  assert.equal(await l.index(4), 3);
  assert.equal(await l.count(1), 1);
  await l.sort();
  assert.deepEqual(await l.slice(), [1, 2, 3, 4, 5]);
  await l.sort({ reverse: true });
  await l.reverse();
  assert.deepEqual(await l.slice(1, -1), [2, 3, 4]);
  await rejects(l.get(10), "IndexError", /out of range/);
  await rejects(l.remove(42), "ValueError", /not in list/);
  await rejects(l.index(42), "ValueError", /42 is not in list/);
  await l.append("x");
  await rejects(l.sort(), "TypeError", /not supported between/);
  const nested = manager.list([[2, "b"], [1, "z"], [1, "a"]]);
  await nested.sort();
  assert.deepEqual(await nested.slice(), [[1, "a"], [1, "z"], [2, "b"]]);
  assert.equal(await nested.index([1, "z"]), 1); // structural equality, as Python's ==
  const empty = manager.list();
  await rejects(empty.pop(), "IndexError", /pop from empty list/);
});

Deno.test("Manager: Namespace, Value and Array proxies", async () => {
  await using manager = await Manager();
  const ns = manager.Namespace<{ x: number; y?: string; __proto__?: number }>({ x: 1 });
  await ns.set("y", "why");
  await ns.set("__proto__", 3); // just a name
  assert.equal(await ns.get("x"), 1);
  assert.equal(await ns.has("y"), true);
  assert.deepEqual(await ns.keys(), ["x", "y", "__proto__"]);
  assert.equal((await ns.toObject()).y, "why");
  assert.equal(await ns.delete("y"), true);
  assert.equal(await ns.get("y"), undefined);

  const v = manager.Value("i", 41);
  await v.set((await v.get()) + 1);
  assert.equal(await v.get(), 42);
  await rejects(v.set(2 ** 40), "RangeError", /out of range/);
  const big = manager.Value("q", 1n << 40n);
  assert.equal(await big.get(), 1n << 40n);

  const a = manager.Array("d", [1, 2, 3]);
  await a.set(-1, 3.5);
  assert.equal(await a.len(), 3);
  assert.equal(await a.get(0), 1);
  assert.deepEqual(await a.slice(), [1, 2, 3.5]);
  assert.deepEqual(await a.slice(1), [2, 3.5]);
  const zeros = manager.Array("B", 4);
  assert.deepEqual(await zeros.slice(), [0, 0, 0, 0]);
});

Deno.test("Manager: Queue and JoinableQueue proxies", async () => {
  await using manager = await Manager();
  const q = manager.Queue<number>(2);
  await q.put(1);
  await q.putNowait(2);
  assert.equal(await q.full(), true);
  await rejects(q.put(3, { block: false }), "Full");
  const e = await rejects(q.put(3, { timeout: 50 }), "Full");
  assert.ok(e instanceof Full);
  assert.equal(await q.qsize(), 2);
  assert.equal(await q.get(), 1);
  assert.equal(await q.getNowait(), 2);
  assert.equal(await q.empty(), true);
  assert.ok((await rejects(q.get({ timeout: 30 }), "Empty")) instanceof Empty);
  // A waiting get is served by a later put (calls on one connection are multiplexed).
  const waiting = q.get();
  await sleep(20);
  await q.put(7);
  assert.equal(await waiting, 7);
  // A full queue's waiting put goes in when room appears.
  await q.put(8);
  await q.put(9);
  const putting = q.put(10);
  assert.equal(await q.get(), 8);
  await putting;
  assert.deepEqual([await q.get(), await q.get()], [9, 10]);

  const jq = manager.JoinableQueue<string>();
  await jq.put("a");
  await jq.put("b");
  const joined = jq.join();
  let done = false;
  void joined.then(() => (done = true));
  await jq.get();
  await jq.taskDone();
  await sleep(20);
  assert.equal(done, false);
  await jq.get();
  await jq.taskDone();
  await joined;
  await rejects(jq.taskDone(), "ValueError", /called too many times/);
  // Items keep structured-clone fidelity.
  const rich = manager.Queue<unknown>();
  const item = { m: new Map([[1, new Set(["x"])]]), d: new Date(5), b: 2n ** 70n };
  await rich.put(item);
  assert.deepEqual(await rich.get(), item);
});

Deno.test("Manager: Lock, RLock, Semaphore and BoundedSemaphore proxies", async () => {
  await using manager = await Manager();
  const lock = manager.Lock();
  const g = await lock.acquire();
  assert.equal(g.ownerDied, false);
  assert.equal(await lock.locked(), true);
  assert.equal(await lock.acquire({ block: false }), false);
  assert.equal(await lock.acquire({ timeout: 30 }), false);
  await g.release();
  await rejects(lock.release(), "ValueError", /release unlocked lock/);
  {
    await using _ = await lock.acquire();
    assert.equal(await lock.locked(), true);
  }
  assert.equal(await lock.locked(), false);
  {
    using _ = await lock.acquire(); // sync dispose: the release is sent ahead of the next call
  }
  assert.equal(await lock.locked(), false);

  // RLock: owned by one thread; reentrant for it, foreign to the others.
  const rl = manager.RLock();
  await rl.acquire();
  await rl.acquire();
  let foreign: unknown;
  const t = new Thread({
    target: async () => {
      foreign = await rl.acquire({ block: false });
      await rl.release().catch((e: Error) => (foreign = `${foreign} ${e.name}`));
    },
  });
  t.start();
  await t.join();
  assert.equal(foreign, "false ValueError");
  await rl.release();
  assert.equal(await rl.locked(), true);
  await rl.release();
  assert.equal(await rl.locked(), false);

  const sem = manager.Semaphore(2);
  await sem.acquire();
  await sem.acquire();
  assert.equal(await sem.getValue(), 0);
  assert.equal(await sem.locked(), true);
  assert.equal(await sem.acquire({ timeout: 20 }), false);
  const waiter = sem.acquire();
  await sem.release();
  assert.ok(await waiter);
  await sem.release(2);
  assert.equal(await sem.getValue(), 2);

  const bs = manager.BoundedSemaphore(1);
  await rejects(bs.release(), "ValueError", /released too many times/);
  assert.throws(() => manager.Semaphore(-1), ValueError);

  // A signal cancels a wait in the server.
  const ac = new AbortController();
  await lock.acquire();
  const cancelled = lock.acquire({ signal: ac.signal });
  await sleep(20);
  ac.abort(new Error("no longer needed"));
  await assert.rejects(cancelled, /no longer needed/);
  await lock.release();
  assert.ok(await lock.acquire({ timeout: 1000 })); // the cancelled waiter did not take it
});

Deno.test("Manager: Event, Condition and Barrier proxies", async () => {
  await using manager = await Manager();
  const ev = manager.Event();
  assert.equal(await ev.isSet(), false);
  assert.equal(await ev.wait(20), false);
  const w = ev.wait();
  await ev.set();
  assert.equal(await w, true);
  await ev.clear();
  assert.equal(await ev.isSet(), false);

  const cond = manager.Condition();
  await rejects(cond.wait(10), "ValueError", /un-acquired lock/);
  await rejects(cond.notify(), "ValueError", /un-acquired lock/);
  let ready = false;
  const waiter = new Thread({
    target: async () => {
      await cond.acquire();
      const got = await cond.waitFor(() => ready, 5000);
      await cond.release();
      return got;
    },
  });
  waiter.start();
  await sleep(30);
  await cond.acquire();
  ready = true;
  await cond.notifyAll();
  await cond.release();
  await waiter.join();
  await cond.acquire();
  assert.equal(await cond.wait(20), false); // timed out, and holds the lock again
  await cond.release();
  // A Condition over a managed Lock of the same manager.
  const lock = manager.Lock();
  const c2 = manager.Condition(lock);
  await c2.acquire();
  assert.equal(await lock.locked(), true);
  await c2.release();

  const b = manager.Barrier(2);
  assert.equal(await b.parties, 2);
  const [i, j] = await Promise.all([b.wait(), b.wait()]);
  assert.deepEqual([i, j].sort(), [0, 1]);
  assert.equal(await b.nWaiting, 0);
  await rejects(b.wait(30), "BrokenBarrierError");
  assert.equal(await b.broken, true);
  assert.ok((await rejects(b.wait(), "BrokenBarrierError")) instanceof BrokenBarrierError);
  await b.reset();
  assert.equal(await b.broken, false);
  // A party that gives up (here: cancelled) breaks the barrier for the others.
  const ac = new AbortController();
  const first = b.wait({ signal: ac.signal });
  await sleep(20);
  ac.abort(new Error("gave up"));
  await assert.rejects(first, /gave up/);
  await rejects(b.wait(), "BrokenBarrierError");
  await b.reset();

  // A cancelled Condition.wait still takes its lock back before it rejects.
  await cond.acquire();
  const ac2 = new AbortController();
  const waiting = cond.wait({ signal: ac2.signal });
  await sleep(20);
  ac2.abort(new Error("cancelled"));
  await assert.rejects(waiting, /cancelled/);
  await cond.notify(); // allowed: the lock is held again
  await cond.release();
});

/** A handle kind only this test module registers: the manager's server never loads it. */
class Token {
  constructor(readonly id: number) {}
}
registerHandle({
  name: "TestOnlyToken",
  cls: Token,
  reduce: (t) => t.id,
  rebuild: (id: number) => new Token(id),
});

Deno.test("Manager: a value the server cannot decode fails that call only", async () => {
  await using manager = await Manager();
  const d = manager.dict<string, unknown>();
  await d.set("a", 1);
  await rejects(d.set("t", new Token(1)), "SerializationError", /handle of kind 'TestOnlyToken'/);
  assert.equal(await d.len(), 1); // the connection goes on
  // Shared-memory handles cross when their module is loaded there (mod.ts loads them all; this
  // server also imports the fixture module, which imports queues.ts): it holds a live Queue.
  await using tm = new TestManager();
  await tm.start();
  const d2 = tm.dict<string, Queue<number>>();
  const q = new Queue<number>();
  await d2.set("q", q);
  await (await d2.get("q"))!.put(5);
  assert.equal(await q.get(), 5);
});

Deno.test("Manager: a value read out of a proxy is a copy (the nested-mutation pitfall)", async () => {
  await using manager = await Manager();
  const d = manager.dict<string, string[]>();
  await d.set("name", ["jiaojiao", "xiaoxiao"]);
  const value = (await d.get("name"))!;
  value[0] = "changed"; // the local copy only...
  assert.deepEqual(await d.get("name"), ["jiaojiao", "xiaoxiao"]);
  await d.set("name", value); // ...so assign it back
  assert.deepEqual(await d.get("name"), ["changed", "xiaoxiao"]);
});

// ---------------------------------------------------------------------------------------------
// Workers

Deno.test("Manager: two workers count under a managed Lock (W7-like)", async () => {
  await using manager = await Manager();
  const lock = manager.Lock(), v = manager.Value("i", 0);
  const ps = [start(lockedIncrements, lock, v, 300), start(lockedIncrements, lock, v, 300)];
  for (const p of ps) await p.join();
  assert.deepEqual(ps.map((p) => p.exitCode), [0, 0]);
  assert.equal(await v.get(), 600);
});

Deno.test("Manager: proxies through a Queue and inside managed containers work in workers", async () => {
  await using manager = await Manager();
  const l = manager.list<string>();
  const q = new Queue<ListProxy<string>>();
  await q.put(l);
  const p1 = start(appendFromQueue, q, "via queue");
  await p1.join();
  assert.equal(p1.exitCode, 0);

  // A proxy stored in another managed container still refers to the same object
  // (CPython's _TestContainers), here and in a worker.
  const d = manager.dict<string, ListProxy<string>>();
  await d.set("inner", l);
  const inner = (await d.get("inner"))!;
  assert.ok(inner instanceof BaseProxy);
  await inner.append("via dict, here");
  const p2 = start(appendNested, d, "via dict, in a worker");
  await p2.join();
  assert.equal(p2.exitCode, 0);
  const outer = manager.list<unknown>([l]);
  await ((await outer.get(0)) as ListProxy<string>).append("via list");
  assert.deepEqual(await l.slice(), [
    "via queue",
    "via dict, here",
    "via dict, in a worker",
    "via list",
  ]);
  // The containers hold the object alive after our own proxy goes.
  assert.equal(await (await d.get("inner"))!.len(), 4);
});

Deno.test("Manager: a worker that dies holding a managed Lock does not block the others", async () => {
  await using manager = await Manager();
  const lock = manager.Lock(), never = manager.Event(), held = new Event();
  const p = start(holdManagedLock, lock, held, never);
  assert.ok(await held.wait(10_000));
  assert.equal(await lock.acquire({ block: false }), false);
  p.terminate(); // mid-call: its never.wait() is pending in the server
  await p.join();
  const g = await lock.acquire({ timeout: 5000 });
  assert.ok(g, "the dead worker's lock was not released");
  assert.equal(g.ownerDied, true);
  await g.release();
});

Deno.test("Manager: proxies fail with EOFError once the manager is shut down", async () => {
  const manager = await Manager();
  const d = manager.dict();
  await d.set("a", 1);
  await manager.shutdown();
  await rejects(d.get("a"), "EOFError");
  assert.throws(() => manager.dict(), /shut down/);
});

// ---------------------------------------------------------------------------------------------
// Registered types

Deno.test("BaseManager.register: public methods, exposed, RemoteError, factories", async () => {
  const m = new TestManager();
  await m.start();
  try {
    const c = m.Counter(5);
    assert.equal(await c.inc(), 6);
    assert.equal(await c.inc(4), 10);
    assert.equal(await m.create<Counter>("Counter").get(), 0);
    assert.equal(await c.later(10, "async result"), "async result");

    // A method's error arrives as RemoteError with the remote name, message and stack.
    const e = await rejects(c.fail("bad input"), "RemoteError", /bad input/);
    assert.ok(e instanceof RemoteError);
    assert.equal(e.remoteName, "TypeError");
    assert.match(e.remoteStack, /at Counter\.fail/);
    // Private (`_`) and unknown methods are refused.
    const hidden = c as unknown as { _secret(): Promise<string>; constructor(): Promise<void> };
    assert.equal(
      (await rejects(hidden._secret(), "RemoteError")).message.includes("_secret"),
      true,
    );
    const own = c as unknown as { toJSON?: unknown; nope(): Promise<unknown> };
    await rejects(own.nope(), "RemoteError", /no exposed method 'nope'/);
    assert.equal(own.toJSON, undefined);
    // `exposed` limits what may be called.
    const lim = m.Limited();
    assert.equal(await lim.a(), "a");
    await rejects(lim.b(), "RemoteError", /no exposed method 'b'/);
    // A constructor's error is reported by the first call.
    const broken = m.Counter(-1);
    const ce = await rejects(broken.get(), "RemoteError", /creating 'Counter' failed: start must/);
    assert.equal((ce as RemoteError).remoteName, "RangeError");
    // Unknown type ids are refused.
    await rejects(m.create<Counter>("Nope").get(), "RemoteError", /no type 'Nope'/);
    // A factory function: every call gives the same shared object.
    const b1 = m.board(), b2 = m.board();
    await b1.put("x", 1);
    assert.equal(await b2.take("x"), 1);
  } finally {
    await m.shutdown();
  }
  assert.throws(() => TestManager.register("dict", Counter), ValueError);
  assert.throws(() => TestManager.register("start", Counter), ValueError);
});

Deno.test("BaseManager: a registered class that is not exported fails at start()", async () => {
  class Local {
    f() {}
  }
  class LocalManager extends BaseManager {}
  LocalManager.register("Local", Local);
  const m = new LocalManager();
  await assert.rejects(m.start(), /not exported/);
});

// ---------------------------------------------------------------------------------------------
// TCP

Deno.test("BaseManager over TCP: start() on port 0, connect() with the key, wrong key refused", async () => {
  const server = new SyncManager({
    address: { hostname: "127.0.0.1", port: 0 },
    authkey: "s3cret",
  });
  await server.start();
  try {
    const { port } = server.address!;
    assert.ok(port > 0);
    const client = new SyncManager({ address: { hostname: "127.0.0.1", port }, authkey: "s3cret" });
    await client.connect();
    const d = client.dict<string, number>();
    await d.set("x", 1);
    const l = client.list<DictProxy<string, number>>([d]);
    const again = (await l.get(0)) as DictProxy<string, number>;
    assert.equal(await again.get("x"), 1); // a proxy sent over the network and back
    // The server's own proxies reach the same objects locally.
    const local = server.list<number>();
    await local.append(1);
    // A TCP client's proxy works in its workers too: they connect with the key it carries.
    const remote = client.list<string>();
    const p = start(appendTo, remote, "from a worker, over TCP");
    await p.join();
    assert.equal(p.exitCode, 0);
    assert.deepEqual(await remote.slice(), ["from a worker, over TCP"]);
    client.close();
    await rejects(d.get("x"), "EOFError");

    const wrong = new SyncManager({ address: { hostname: "127.0.0.1", port }, authkey: "guess" });
    const e = await rejects(wrong.connect(), "AuthenticationError");
    assert.ok(e instanceof AuthenticationError);
  } finally {
    await server.shutdown();
  }
});

Deno.test("serveForever(): a server in this isolate serves its workers and itself", async () => {
  const m = new TestManager();
  const served = m.serveForever();
  assert.equal(m.address, null); // no TCP address: this program only
  const l = m.list<string>();
  await l.append("here");
  const c = m.Counter(1);
  assert.equal(await c.inc(), 2);
  const p = start(appendTo, l, "from a worker");
  await p.join();
  assert.equal(p.exitCode, 0);
  assert.deepEqual(await l.slice(), ["here", "from a worker"]);
  await m.shutdown();
  await served;
  await rejects(l.len(), "EOFError");
});

/** Runs a fixture program, collecting its stderr, and reading its stdout's JSON lines. */
class Program {
  readonly child: Deno.ChildProcess;
  stderr = "";
  #lines: ReadableStreamDefaultReader<string>;
  #buf = "";
  #drain: Promise<void>;

  constructor(file: string, args: string[]) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--unstable-worker-options",
        new URL(file, import.meta.url).pathname,
        ...args,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#lines = this.child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const stderr = this.child.stderr;
    this.#drain = (async () => {
      for await (const chunk of stderr.pipeThrough(new TextDecoderStream())) {
        this.stderr += chunk;
      }
    })();
  }

  /** The next JSON line on stdout. */
  async next(): Promise<Record<string, unknown>> {
    for (;;) {
      const nl = this.#buf.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        if (line.startsWith("{")) return JSON.parse(line);
        continue;
      }
      const { value, done } = await this.#lines.read();
      if (done) throw new Error(`the program ended; stderr:\n${this.stderr}`);
      this.#buf += value;
    }
  }

  async end(): Promise<Deno.CommandStatus> {
    const status = await this.child.status;
    await this.#lines.cancel();
    await this.#drain;
    return status;
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  for (const end = performance.now() + ms; performance.now() < end; await sleep(20)) {
    if (cond()) return true;
  }
  return cond();
}

Deno.test("two programs on loopback: bad peers are dropped, a killed client's lock is released", async () => {
  const key = "loopback-key";
  const server = new Program("./fixtures/manager_server.ts", [key, String(1 << 20)]);
  try {
    const { port } = await server.next() as { port: number };
    const address = { hostname: "127.0.0.1", port };

    // A wrong key: AuthenticationError, and nothing is served.
    const wrong = new TestManager({ address, authkey: "not the key" });
    await rejects(wrong.connect(), "AuthenticationError");

    // Garbage bytes instead of the handshake: the server hangs up and logs why.
    {
      const sock = await Deno.connect(address);
      await sock.write(crypto.getRandomValues(new Uint8Array(300)));
      const buf = new Uint8Array(1024);
      while ((await sock.read(buf).catch(() => null)) !== null);
      sock.close();
    }
    // Past the handshake: an oversized frame, then a frame that is not a message.
    const authed = async (): Promise<Connection<unknown>> => {
      const c = wrapSocket(await Deno.connect(address));
      await answerChallenge(c, key);
      await deliverChallenge(c, key);
      await c.recvBytes(); // the server's hello
      return c;
    };
    {
      const c = await authed();
      await c.sendBytes(new Uint8Array(0)); // a valid empty frame is not a message...
      await rejects(c.recvBytes(), "EOFError"); // ...so the server hangs up
      c.close();
    }
    {
      // An oversized frame: announce 1 GiB to a server that accepts 1 MiB.
      const sock = await Deno.connect(address);
      const c = wrapSocket(sock);
      await answerChallenge(c, key);
      await deliverChallenge(c, key);
      await c.recvBytes();
      const header = new Uint8Array(4);
      new DataView(header.buffer).setUint32(0, 1 << 30);
      await sock.write(header);
      await rejects(c.recvBytes(), "EOFError");
      c.close();
    }
    {
      // A frame whose body is not valid codec bytes (a CALL, call id 1, then garbage).
      const c = await authed();
      await c.sendBytes(new Uint8Array([1, 1, 0, 0, 0, 250, 1, 2, 3]));
      await rejects(c.recvBytes(), "EOFError");
      c.close();
    }
    assert.ok(
      await waitFor(
        () =>
          /closed the connection from .*over the limit of 1048576/.test(server.stderr) &&
          /closed the connection from .*corrupt message/.test(server.stderr) &&
          /closed the connection from .*too short/.test(server.stderr),
        5000,
      ),
      server.stderr,
    );
    assert.match(server.stderr, /refused 127\.0\.0\.1:\d+: AuthenticationError/);

    // The server still serves: publish a managed Lock and Event on its board.
    const m = new TestManager({ address, authkey: key });
    await m.connect();
    const lock = m.Lock(), never = m.Event();
    const board = m.board();
    await board.put("lock", lock);
    await board.put("never", never);

    // A client-side manager class registers the type id only (Python's register(typeid)).
    class CounterClient extends SyncManager {
      declare Counter: ProxyFactory<typeof Counter>;
    }
    CounterClient.register("Counter");
    const cc = new CounterClient({ address, authkey: key });
    await cc.connect();
    assert.equal(await cc.Counter(41).inc(), 42);

    // Another program takes the lock, then is killed in the middle of a call.
    const client = new Program("./fixtures/manager_client.ts", [String(port), key]);
    const said = await client.next();
    assert.equal(said.locked, true);
    assert.equal(await lock.acquire({ block: false }), false);
    client.child.kill("SIGKILL");
    await client.end();
    const g = await lock.acquire({ timeout: 5000 });
    assert.ok(g, "the killed client's lock was not released");
    assert.equal(g.ownerDied, true);
    await g.release();

    // A client may shut the server down.
    await m.shutdown();
    assert.deepEqual(await server.next(), { stopped: true });
    assert.equal((await server.end()).code, 0);
  } finally {
    try {
      server.child.kill("SIGKILL");
    } catch { /* already gone */ }
    await server.end().catch(() => {});
  }
});

Deno.test("a manager started by a worker dies with it: its port is closed", async () => {
  const ports = new Queue<number>();
  const p = start(startAndCrash, ports);
  const port = await ports.get({ timeout: 20_000 });
  await p.join();
  assert.equal(p.exitCode, 1);
  let refused = false;
  for (let i = 0; i < 50 && !refused; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      await sleep(50);
    } catch {
      refused = true;
    }
  }
  assert.ok(refused, `port ${port} still accepts connections`);
});

Deno.test("a proxy given Python's positional block/timeout throws a TypeError with the right call", async () => {
  await using m = await Manager();
  const q = m.Queue<number>();
  const lock = m.Lock();
  // What a Python user writes: q.get(True, 200), lock.acquire(False). Both used to wait for ever.
  const get = q.get as unknown as (block: boolean, timeout: number) => Promise<number>;
  const acquire = lock.acquire as unknown as (block: boolean) => Promise<unknown>;
  await assert.rejects(() => Promise.resolve().then(() => get.call(q, true, 200)), {
    name: "TypeError",
    message: /QueueProxy\.get\(\) takes an options object.*get\(\{ timeout: 200 \}\).*milliseconds/,
  });
  await assert.rejects(() => Promise.resolve().then(() => acquire.call(lock, false)), {
    name: "TypeError",
    message: /acquire\(\{ block: false \}\)/,
  });
  await assert.rejects(() => Manager(5 as unknown as undefined), { name: "TypeError" });
});
