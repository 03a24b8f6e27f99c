import assert from "node:assert/strict";
import { Process } from "../lib/process/process.ts";
import { JoinableQueue, LifoQueue, Queue, SimpleQueue } from "../lib/queues/queues.ts";
import {
  Barrier,
  BoundedSemaphore,
  Condition,
  Event,
  Lock,
  RLock,
  Semaphore,
} from "../lib/sync/mod.ts";
import { Thread } from "../lib/core/threading.ts";
import { DeadlockError } from "../lib/core/errors.ts";
import { setDeadlockDetection, type Snapshot, snapshot } from "../lib/observe/snapshot.ts";
import {
  parentOf,
  philosopher,
  poolAndSupervisorInside,
  snapshotHere,
} from "./fixtures/snapshot_targets.ts";
import type { ActorRef } from "../lib/actor/ref.ts";
import { Mailbox } from "../lib/actor/mailbox.ts";
import { spawn } from "../lib/actor/spawn.ts";
import { Supervisor } from "../lib/actor/supervisor.ts";
import { Counter } from "./fixtures/actor_targets.ts";
import { Pool } from "../lib/pool/pool.ts";
import { sleepMs, square } from "./fixtures/pool_tasks.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Takes snapshots until `ok` holds (or fails after `ms`). */
async function until(ok: (s: Snapshot) => boolean, ms = 20_000): Promise<Snapshot> {
  const end = Date.now() + ms;
  for (;;) {
    const s = snapshot();
    if (ok(s)) return s;
    if (Date.now() > end) assert.fail(`not seen in ${ms} ms: ${JSON.stringify(s, null, 1)}`);
    await sleep(20);
  }
}

Deno.test("objects take a name in an options object; unnamed ones are named by kind and site", () => {
  const named = [
    new Lock({ name: "l" }),
    new RLock({ name: "r" }),
    new Semaphore({ value: 3, name: "s" }),
    new BoundedSemaphore({ value: 2, name: "b" }),
    new Event({ name: "e" }),
    new Condition({ name: "c" }),
    new Barrier(2, { name: "bar" }),
  ];
  const unnamed = new Lock();
  const s = snapshot();
  for (const n of ["l", "r", "s", "b", "e", "c", "bar"]) {
    assert.ok(s.locks.some((l) => l.name === n), n);
  }
  assert.equal(s.locks.find((l) => l.name === "s")!.value, 3);
  assert.equal(s.locks.find((l) => l.name === "b")!.bound, 2);
  assert.ok(s.locks.some((l) => l.name === "c.lock" && l.kind === "RLock"));
  assert.match(String(named[0]), /name='l'/);
  assert.equal(String(unnamed), "<Lock(unlocked)>");
  assert.match(s.locks.at(-1)!.name, /^Lock@snapshot_test\.ts:\d+$/);
  assert.throws(() => new Lock({ name: 5 as unknown as string }), TypeError);
  assert.throws(() => new Lock(5 as unknown as object), TypeError);
  assert.equal(new Semaphore(4).getValue(), 4);
});

Deno.test("snapshot: holders, waiters and a deadlock between two threads", async () => {
  const a = new Lock({ name: "fork-1" }), b = new Lock({ name: "fork-2" });
  const stop = new AbortController();
  const diner = (first: Lock, second: Lock) => async () => {
    await first.acquire();
    await sleep(30);
    await second.acquire({ signal: stop.signal }).catch(() => {});
    first.release();
  };
  const t1 = new Thread({ name: "philosopher-1", target: diner(a, b) });
  const t2 = new Thread({ name: "philosopher-2", target: diner(b, a) });
  t1.start();
  t2.start();
  try {
    const s = await until((s) => s.deadlocks.length > 0);
    assert.deepEqual(s.deadlocks, [[
      { process: "philosopher-1", holds: "fork-1", waitsFor: "fork-2" },
      { process: "philosopher-2", holds: "fork-2", waitsFor: "fork-1" },
    ]]);
    const fork1 = s.locks.find((l) => l.name === "fork-1")!;
    assert.deepEqual([fork1.holders, fork1.waiters], [["philosopher-1"], ["philosopher-2"]]);
    assert.deepEqual(JSON.parse(JSON.stringify(s)), s); // plain JSON
  } finally {
    stop.abort();
    await t1.join();
    await t2.join();
  }
  assert.equal(snapshot().deadlocks.length, 0);
});

Deno.test("snapshot: a deadlock between two processes, their names and states", async () => {
  const a = new Lock({ name: "fork-1" }), b = new Lock({ name: "fork-2" });
  const met = new Barrier(2), out = new Queue<string>();
  const p1 = new Process({ target: philosopher, args: [a, b, met, out], name: "philosopher-1" });
  const p2 = new Process({ target: philosopher, args: [b, a, met, out], name: "philosopher-2" });
  p1.start();
  p2.start();
  try {
    const s = await until((s) => s.deadlocks.length > 0);
    assert.deepEqual(s.deadlocks[0].map((x) => x.process).sort(), [
      "philosopher-1",
      "philosopher-2",
    ]);
    assert.ok(s.deadlocks[0].some((x) => x.holds === "fork-1" && x.waitsFor === "fork-2"));
    const p = s.processes.find((p) => p.name === "philosopher-1")!;
    assert.equal(p.state, "running");
    assert.equal(p.pid, p1.pid);
    assert.equal(p.parent, s.processes[0].pid);
    assert.equal(p.target, "snapshot_targets.ts#philosopher");
    assert.deepEqual(p.waitingFor, ["fork-2"]);
    assert.equal(typeof p.startTime, "number");
  } finally {
    p1.terminate();
    p2.terminate();
    await p1.join();
    await p2.join();
  }
  const after = snapshot().processes.find((p) => p.pid === p1.pid)!;
  assert.deepEqual([after.state, after.exitCode], ["stopped", -15]);
  // Terminated while waiting: their waits are over, no cycle is left.
  assert.deepEqual(snapshot().deadlocks, []);
});

Deno.test("detectDeadlock: the acquire that closes a cycle throws DeadlockError naming it", async () => {
  const a = new Lock({ name: "fork-1", detectDeadlock: true });
  const b = new Lock({ name: "fork-2", detectDeadlock: true });
  const met = new Barrier(2), out = new Queue<string>();
  const p1 = new Process({ target: philosopher, args: [a, b, met, out], name: "philosopher-1" });
  const p2 = new Process({ target: philosopher, args: [b, a, met, out], name: "philosopher-2" });
  p1.start();
  p2.start();
  const results = [await out.get({ timeout: 20_000 }), await out.get({ timeout: 20_000 })];
  await p1.join();
  await p2.join();
  assert.equal(results.filter((r) => r === "acquired").length, 1, results.join("\n"));
  const err = results.find((r) => r !== "acquired")!;
  assert.match(err, /^DeadlockError: /);
  assert.match(err, /philosopher-\d holds fork-\d and waits for fork-\d; philosopher-\d holds/);
  out.close();
});

Deno.test("setDeadlockDetection: program-wide, for an async acquire too", async () => {
  const a = new Lock({ name: "x" }), b = new Lock({ name: "y" });
  setDeadlockDetection(true);
  const results: string[] = [];
  const party = (first: Lock, second: Lock, ms: number) => async () => {
    await first.acquire();
    await sleep(ms);
    try {
      await second.acquire({ timeout: 20_000 });
      results.push("acquired");
      second.release();
    } catch (e) {
      results.push(e instanceof DeadlockError ? e.cycle.map((s) => s.process).join() : `${e}`);
    }
    first.release();
  };
  const t1 = new Thread({ name: "t1", target: party(a, b, 30) });
  const t2 = new Thread({ name: "t2", target: party(b, a, 200) });
  try {
    t1.start();
    t2.start();
    await t1.join();
    await t2.join();
  } finally {
    setDeadlockDetection(false);
  }
  assert.deepEqual(results, ["t2,t1", "acquired"]);
});

Deno.test("snapshot sees every nesting level, from any worker", async () => {
  const stop = new Event({ name: "stop" }), out = new Queue<string>();
  const p = new Process({ target: parentOf, args: [stop], name: "parent" });
  p.start();
  try {
    const s = await until((s) => s.locks.find((l) => l.name === "stop")!.waiters.length === 2);
    const child = s.processes.find((x) => x.name === "parent")!;
    const grand = s.processes.find((x) => x.name === "grandchild")!;
    assert.equal(grand.parent, child.pid);
    assert.equal(child.parent, s.processes[0].pid);
    // The same picture from another worker.
    const q = new Process({ target: snapshotHere, args: [out] });
    q.start();
    const there = JSON.parse(await out.get({ timeout: 20_000 })) as Snapshot;
    await q.join();
    assert.ok(there.processes.some((x) => x.name === "grandchild"));
    assert.ok(there.locks.some((l) => l.name === "stop" && l.kind === "Event"));
    assert.deepEqual(
      there.locks.find((l) => l.name === "stop")!.waiters.sort(),
      ["grandchild", "parent"],
    );
  } finally {
    stop.set();
    await p.join();
    out.close();
  }
});

Deno.test("snapshot: actors (mailbox, state, restarts, exit reason), supervisors and mailboxes", async () => {
  const mb = new Mailbox<number>({ name: "inbox" });
  await mb.send(1);
  await mb.send(2);
  let n = 0;
  const sup = await new Supervisor({
    name: "root",
    children: [{ id: "counter", start: () => spawn(Counter, { name: `counter-${++n}` }) }],
  }).start();
  try {
    const first = sup.get("counter") as ActorRef<Counter>;
    await first.call.inc(1);
    await first.call.crash("boom").catch(() => {});
    await sup.whenRunning("counter", { timeout: 20_000 });
    const s = await until((s) =>
      s.actors.some((a) => a.name === "counter-2" && a.state === "running")
    );
    const crashed = s.actors.find((a) => a.name === "counter-1")!;
    assert.equal(crashed.state, "stopped");
    assert.match(String(crashed.exitReason), /TypeError: boom/);
    const now = s.actors.find((a) => a.name === "counter-2")!;
    assert.deepEqual([now.restarts, now.supervisor, now.process], [1, "root", "counter-2"]);
    assert.match(String(now.exitReason), /boom/); // the last exit of that child
    const root = s.supervisors.find((x) => x.name === "root")!;
    assert.equal(root.restarts, 1);
    assert.deepEqual(
      (root.children as { id: string; name: string }[]).map((c) => [c.id, c.name]),
      [["counter", "counter-2"]],
    );
    assert.deepEqual(
      s.queues.find((q) => q.name === "inbox"),
      { name: "inbox", kind: "Mailbox", mailbox: 2, maxsize: 0 },
    );
  } finally {
    await sup.stop();
  }
});

Deno.test("snapshot: pools (workers busy or idle, counters, utilization, p50/p99, resettable)", async () => {
  await using pool = new Pool({ processes: 2, name: "crunch" });
  await pool.whenReady();
  const squares = await pool.map(square, Array.from({ length: 100 }, (_, i) => i), 10);
  assert.equal(squares[9], 81);
  await pool.apply(sleepMs, [5]).catch(() => {});
  const slow = [pool.apply(sleepMs, [300]), pool.apply(sleepMs, [300]), pool.apply(sleepMs, [300])];
  const s = await until((s) => s.pools.find((p) => p.name === "crunch")?.running === 2);
  const p = s.pools.find((p) => p.name === "crunch")!;
  const workers = p.workers as { name: string; busy: boolean; task: string }[];
  assert.deepEqual(workers.map((w) => [w.busy, w.task]), [[true, "sleepMs"], [true, "sleepMs"]]);
  assert.equal(p.queued, 1);
  assert.equal(p.completed, 101);
  assert.equal(p.failed, 0);
  assert.ok((p.utilization as number) > 0 && (p.utilization as number) <= 1);
  const { waitMs, runMs } = p as unknown as Record<string, { p50: number; p99: number }>;
  assert.ok(runMs.p50 >= 0 && runMs.p99 >= runMs.p50 && waitMs.p50 >= 0, JSON.stringify(p));
  // The workers' current task shows in the process list too.
  assert.equal(s.processes.find((x) => x.name === workers[0].name)!.task, "sleepMs");
  await Promise.all(slow);
  pool.resetStats();
  const after = snapshot().pools.find((p) => p.name === "crunch")!;
  assert.deepEqual([after.completed, after.running, after.queued], [104, 0, 0]);
  assert.deepEqual(after.runMs, { p50: null, p99: null });
});

Deno.test("snapshot: queues (name, kind, depth, maxsize, puts, gets, waiting putters, unfinished)", async () => {
  const jobs = new Queue<number>({ name: "jobs", maxsize: 2 });
  const done = new JoinableQueue<string>({ name: "done" });
  const lifo = new LifoQueue<number>({ maxsize: 5, name: "stack" });
  const plain = new SimpleQueue<number>({ name: "plain" });
  await jobs.put(1);
  await jobs.put(2);
  const blocked = jobs.put(3); // waits for room
  await done.put("a");
  await done.put("b");
  await done.get();
  done.taskDone();
  await lifo.put(1);
  await plain.put(1);
  const s = await until((s) => s.queues.find((q) => q.name === "jobs")?.waitingPutters === 1);
  const q = (name: string) => s.queues.find((q) => q.name === name)!;
  assert.deepEqual(
    [q("jobs").kind, q("jobs").depth, q("jobs").maxsize, q("jobs").puts, q("jobs").gets],
    ["Queue", 2, 2, 2, 0],
  );
  assert.deepEqual([q("done").kind, q("done").depth, q("done").unfinished], [
    "JoinableQueue",
    1,
    1,
  ]);
  assert.deepEqual([q("stack").kind, q("stack").depth, q("stack").maxsize], ["LifoQueue", 1, 5]);
  assert.equal(q("plain").kind, "SimpleQueue");
  await jobs.get();
  await blocked;
  assert.throws(() => new Queue(null as unknown as number), TypeError);
  for (const x of [jobs, done, lifo, plain]) x.close();
});

Deno.test("snapshot: pools and supervisors of another worker show too (as they published them)", async () => {
  const stop = new Event();
  const p = new Process({ target: poolAndSupervisorInside, args: [stop], name: "nest" });
  p.start();
  try {
    const s = await until((s) =>
      s.pools.some((x) => x.name === "inner-pool" && x.completed === 10) &&
      s.supervisors.some((x) =>
        x.name === "inner-sup" && (x.children as { running: boolean }[])[0].running
      )
    );
    assert.equal(s.pools.find((x) => x.name === "inner-pool")!.process, "nest");
    const sup = s.supervisors.find((x) => x.name === "inner-sup")!;
    assert.equal(sup.process, "nest");
    assert.equal((sup.children as { name: string }[])[0].name, "inner-counter");
    assert.equal(s.actors.find((a) => a.name === "inner-counter")!.supervisor, "inner-sup");
  } finally {
    stop.set();
    await p.join();
  }
  assert.equal(p.exitCode, 0);
  assert.ok(!snapshot().pools.some((x) => x.name === "inner-pool")); // gone with its process
});
