import assert from "node:assert/strict";
import { Pool } from "../lib/pool/pool.ts";
import { Queue } from "../lib/queues/queues.ts";
import { Event, Lock } from "../lib/sync/mod.ts";
import { Value } from "../lib/memory/sharedctypes.ts";
import { SharedMemory } from "../lib/memory/shared_memory.ts";
import { SerializationError } from "../lib/core/errors.ts";
import { __testHooks } from "../lib/process/os_spawn.ts";
import { spawn } from "../lib/actor/spawn.ts";
import { sleep, TIMED_OUT, within } from "./_helpers.ts";
import { Mailbox } from "../lib/actor/mailbox.ts";
import { Manager } from "../lib/managers/managers.ts";
import { Process } from "../lib/process/process.ts";
import { Listener } from "../lib/connection/listener.ts";
import {
  addOne,
  Caller,
  Counted,
  giveBack,
  Keeper,
  keepQueue,
  linkDies,
  putSquare,
  talkToListener,
  Tally,
  tellInit,
  useRefs,
  waitFor,
} from "./fixtures/isolation_more_tasks.ts";

const TASKS = new URL("./fixtures/isolation_more_tasks.ts", import.meta.url).href;

/** Runs the handle tasks in a Pool(2) of `isolation`; what the parent saw. */
async function poolWithHandles(isolation: "thread" | "process"): Promise<unknown> {
  const q = new Queue<number>(), init = new Queue<string>(), lock = new Lock();
  const v = new Value("i", 0), ev = new Event();
  const pool = new Pool({
    processes: 2,
    isolation,
    initializer: keepQueue,
    initargs: [init],
    preload: [TASKS],
  });
  try {
    const mapped = await pool.starmap(putSquare, [[q, 1], [q, 2], [q, 3]]);
    const squares = [await q.get(), await q.get(), await q.get()].sort((a, b) => a - b);
    const counts = await pool.map(addOne, Array.from({ length: 6 }, () => ({ lock, v })), {
      chunksize: 1,
    });
    const waiting = pool.applyAsync(waitFor, [ev]);
    ev.set();
    const waited = await waiting.get(20_000);
    const tags = await pool.map(tellInit, ["a", "b"], { chunksize: 1 });
    const fromInit = [await init.get(), await init.get()].sort();
    return {
      mapped,
      squares,
      counts: counts.sort((a, b) => a - b),
      value: v.value,
      locked: lock.locked(),
      waited,
      tags,
      fromInit,
    };
  } finally {
    pool.terminate();
    await pool.join();
  }
}

Deno.test("isolation process: a Queue, Lock, Value and Event in Pool task args and initargs work as in a thread pool", async () => {
  const thread = await poolWithHandles("thread");
  const process = await poolWithHandles("process");
  assert.deepEqual(process, thread);
  assert.deepEqual(thread, {
    mapped: [1, 2, 3],
    squares: [1, 4, 9],
    counts: [1, 2, 3, 4, 5, 6],
    value: 6,
    locked: false,
    waited: true,
    tags: ["a", "b"],
    fromInit: ["a", "b"],
  });
  await __testHooks.gone();
});

Deno.test("isolation process: a pool task's SharedMemory arg and a handle result fail that task alone, naming them", async () => {
  const pool = new Pool({ processes: 1, isolation: "process", preload: [TASKS] });
  const shm = new SharedMemory({ size: 16 });
  try {
    await assert.rejects(
      pool.apply(giveBack, [shm]),
      (e) => e instanceof SerializationError && /SharedMemory/.test(e.message),
    );
    const q = new Queue<number>();
    await assert.rejects(
      pool.apply(giveBack, [q]),
      (e) => e instanceof SerializationError && /handle/.test(e.message),
    );
    assert.equal(await pool.apply(putSquare, [q, 4]), 4);
    assert.equal(await q.get({ timeout: 20_000 }), 16);
  } finally {
    shm.close();
    pool.terminate();
    await pool.join();
  }
  await __testHooks.gone();
});

/** Runs an isolated `Keeper` (or a thread one) given handles; what the parent saw. */
async function actorWithHandles(isolation: "thread" | "process"): Promise<unknown> {
  const q = new Queue<string>(), lock = new Lock(), ev = new Event(), told = new Queue<string>();
  const ref = await spawn(Keeper, { args: [q, lock], isolation });
  try {
    const pushed = await ref.call.push("a");
    const got = await q.get({ timeout: 20_000 });
    const first = await ref.call.tryLock();
    const held = lock.locked();
    const waiting = ref.call.waitFor(ev);
    ev.set();
    const waited = await waiting;
    ref.tell({ q: told, x: "told" });
    const fromTell = await told.get({ timeout: 20_000 });
    // The queue it gives back is this program's own queue.
    const back = await ref.call.give();
    await back.put("via back");
    const same = await q.get({ timeout: 20_000 });
    let made = "";
    await ref.call.make().catch((e: Error) => (made = e.name));
    return {
      pushed,
      got,
      first,
      held,
      waited,
      fromTell,
      same,
      made,
      after: await ref.call.push("b"),
    };
  } finally {
    ref.kill();
    await __testHooks.gone();
  }
}

Deno.test("isolated actor: handles in its spawn args, its messages and its replies work as for a thread actor", async () => {
  const thread = await actorWithHandles("thread");
  const process = await actorWithHandles("process");
  assert.deepEqual(thread, {
    pushed: "a",
    got: "a",
    first: true,
    held: true,
    waited: true,
    fromTell: "told",
    same: "via back",
    made: "",
    after: "b",
  });
  // What a child makes lives in its memory: refused, naming it; the actor goes on.
  assert.deepEqual(process, { ...thread as object, made: "SerializationError" });
});

Deno.test("isolated actor: a SharedMemory in its spawn args or a message is refused, naming it", async () => {
  const shm = new SharedMemory({ size: 16 });
  try {
    await assert.rejects(
      spawn(Keeper, { args: [shm as unknown as Queue<string>, new Lock()], isolation: "process" }),
      (e) => e instanceof SerializationError && /SharedMemory cannot be sent/.test(e.message),
    );
    const ref = await spawn(Keeper, {
      args: [new Queue<string>(), new Lock()],
      isolation: "process",
    });
    try {
      assert.throws(
        () => ref.tell({ q: shm as unknown as Queue<string>, x: "x" }),
        (e) => e instanceof SerializationError && /message\.q/.test(e.path),
      );
      assert.equal(await ref.call.push("c"), "c");
    } finally {
      ref.kill();
    }
  } finally {
    shm.close();
    await __testHooks.gone();
  }
});

/** Gives an actor ref, a mailbox and a dict proxy to a child of `isolation`; what both saw. */
async function refsInChild(isolation: "thread" | "process"): Promise<unknown> {
  const ref = await spawn(Tally, { name: "tally" });
  await using manager = await Manager();
  const d = await manager.dict<string, number>();
  await d.set("parent", 1);
  const mb = new Mailbox<string>(), out = new Queue<unknown>();
  const p = new Process({ target: useRefs, args: [ref, mb, d, out], isolation });
  try {
    p.start();
    const fromChild = await mb.receive({ timeout: 20_000 });
    await mb.send("from parent");
    const seen = await out.get({ timeout: 20_000 });
    await p.join();
    return {
      seen,
      fromChild,
      code: p.exitCode,
      total: await ref.call.add(0),
      d: await d.get("child"),
    };
  } finally {
    await ref.stop();
  }
}

Deno.test("isolation process: an ActorRef (call, tell, ask), a Mailbox and a manager's dict proxy passed to an isolated child work as with a thread child", async () => {
  const expected = (matchError: string) => ({
    seen: [2, 5, 10, true, "tally", "from parent", matchError, 1, ["parent", "child"]],
    fromChild: "from child",
    code: 0,
    total: 10,
    d: 7,
  });
  // A thread child gets the TimeoutError of a match that never matched; a match function cannot
  // cross to the parent that holds the mailbox, so an isolated child gets a TypeError saying so.
  assert.deepEqual(await refsInChild("thread"), expected("TimeoutError"));
  assert.deepEqual(await refsInChild("process"), expected("TypeError"));
  await __testHooks.gone();
});

/** Tells a blocked actor of `isolation` more than its mailbox holds; how many tells had landed. */
async function flood(isolation: "thread" | "process"): Promise<[boolean, number]> {
  const ref = await spawn(Counted, { isolation });
  const ev = new Event(), n = 200, pad = "x".repeat(16 << 10); // 3.2 MB: far more than it holds
  try {
    const blocked = ref.call.block(ev);
    await sleep(100);
    let landed = 0;
    const tells = Array.from({ length: n }, () => ref.tell(pad).then(() => void landed++));
    await sleep(300);
    const waited = landed < n; // some sender waits for room, as for a thread actor
    ev.set();
    assert.equal(await blocked, true);
    assert.notEqual(await within(Promise.all(tells), 20_000), TIMED_OUT);
    return [waited, await ref.call.count()];
  } finally {
    ref.kill();
    await __testHooks.gone();
  }
}

Deno.test("isolated actor: its mailbox is bounded: a sender waits for room, as for a thread actor", async () => {
  assert.deepEqual(await flood("thread"), [true, 200]);
  assert.deepEqual(await flood("process"), [true, 200]);
});

Deno.test("isolation process: a blocking call whose link thread died (ended, or threw) fails, naming it, instead of waiting for ever", async () => {
  for (const how of ["kill", "throw"] as const) {
    const p = new Process({ target: linkDies, args: [new Lock(), how], isolation: "process" });
    p.start();
    try {
      assert.equal(await within(p.join(), 40_000), undefined);
      assert.equal(p.exitCode, 3, how);
    } finally {
      p.kill();
    }
  }
  await __testHooks.gone();
});

Deno.test("isolated actor: it calls, tells and asks the actors whose refs it was given (in its args, in a call)", async () => {
  const a = await spawn(Tally), b = await spawn(Tally);
  const caller = await spawn(Caller, { args: [a], isolation: "process" });
  try {
    assert.equal(await caller.call.forward(3), 3);
    assert.equal(await caller.call.forward(4), 7);
    assert.equal(await caller.call.via(b, 5), 5);
    assert.deepEqual([await a.call.add(0), await b.call.add(0)], [7, 5]);
  } finally {
    caller.kill();
    await a.stop();
    await b.stop();
    await __testHooks.gone();
  }
});

Deno.test("isolation process: a child connects to the parent's Listener with Client (authenticated), as a thread child does", async () => {
  for (const isolation of ["thread", "process"] as const) {
    await using listener = new Listener({ authkey: "s3cret" });
    const p = new Process({
      target: talkToListener,
      args: [listener.address, "s3cret"],
      isolation,
    });
    p.start();
    const conn = await listener.accept();
    const hello = await conn.recv() as { hello: string; pid: number };
    assert.equal(hello.hello, "from child");
    // A thread child shares the parent's OS pid; an isolated child has its own (p.pid).
    assert.equal(hello.pid === Deno.pid, isolation === "thread", isolation);
    await conn.send(new Map([["n", 42n]]));
    assert.deepEqual(await conn.recv(), ["echo", new Map([["n", 42n]])]);
    conn.close();
    await p.join();
    assert.equal(p.exitCode, 0, isolation);
  }
  await __testHooks.gone();
});

Deno.test("an outbox whose lock a dead thread kept fails the next append within seconds, not for ever", async () => {
  const { OutboxReader, OutboxWriter, LOCK_DEAD_MS, O_LEN, O_LOCK } = await import(
    "../lib/process/os_link_outbox.ts"
  );
  const w = new OutboxWriter();
  // What a link thread terminated inside take()'s copy leaves: the lock taken, nobody to free it.
  Atomics.store(new Int32Array(w.sab), O_LOCK, 1);
  const t0 = performance.now();
  assert.throws(
    () => w.append(1, new Uint8Array([1])),
    (e: Error) =>
      e.name === "ProcessError" && /stayed locked .* the thread that held it died/.test(e.message),
  );
  const waited = performance.now() - t0;
  assert.ok(
    waited >= LOCK_DEAD_MS - 50 && waited < LOCK_DEAD_MS + 5000,
    `gave up after ${waited} ms`,
  );
  Atomics.store(new Int32Array(w.sab), O_LEN, 1); // frames waiting: the reader needs the lock
  assert.throws(() => new OutboxReader(w.sab).take(), /stayed locked/);
});

Deno.test("isolation process pool: the handle server of a worker given a handle in a task answers its shutdown (not terminated after 2 s unanswered)", async () => {
  const before = __testHooks.agentsEndedLate();
  const pool = new Pool({ processes: 1, isolation: "process" });
  const q = new Queue<number>();
  assert.equal(await pool.apply(putSquare, [q, 3]), 3);
  assert.equal(await q.get({ timeout: 20_000 }), 9);
  pool.close();
  await pool.join();
  await __testHooks.gone();
  await sleep(2500); // past the 2 s after which an unanswered server is terminated
  assert.equal(__testHooks.agentsEndedLate(), before);
});
