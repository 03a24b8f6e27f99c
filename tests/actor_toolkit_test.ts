// The actor toolkit of issue 22: calls with a deadline, names, timers, process groups and
// state machines (become/stash), each as Erlang and Akka users know them.
import assert from "node:assert/strict";
import { ActorExited } from "../lib/actor/exit.ts";
import { monitor } from "../lib/actor/link.ts";
import { Mailbox } from "../lib/actor/mailbox.ts";
import { spawn } from "../lib/actor/spawn.ts";
import { SerializationError, TimeoutError, ValueError } from "../lib/core/errors.ts";
import { Process } from "../lib/process/process.ts";
import { register, registered, unregister, whereis } from "../lib/actor/registry.ts";
import { Supervisor } from "../lib/actor/supervisor.ts";
import { Counter, Recorder } from "./fixtures/actor_targets.ts";
import { broadcast, join, leave, members, whichGroups } from "../lib/actor/groups.ts";
import {
  broadcastFrom,
  callByName,
  Gate,
  raceRegister,
  spawnRegistered,
  Ticker,
} from "./fixtures/toolkit_targets.ts";
import { cancelTimer, sendAfter } from "../lib/actor/timers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("callWith({ timeout }): TimeoutError names actor and method; the late reply is dropped", async () => {
  const c = await spawn(Counter, { name: "slowpoke" });
  try {
    const err = await c.callWith({ timeout: 50 }).slowInc(1, 400).then(
      () => assert.fail("the call did not time out"),
      (e) => e,
    );
    assert.ok(err instanceof TimeoutError, String(err));
    assert.match(err.message, /actor slowpoke did not reply to slowInc\(\) within 50 ms/);
    // The method still ran; its reply, arriving after the deadline, settles nothing: the next
    // calls get their own replies.
    assert.equal(await c.call.get(), 1);
    assert.equal(await c.callWith({ timeout: 5000 }).inc(2), 3);
    await sleep(20);
    assert.equal(await c.call.get(), 3);
    // The options object is checked: a number where it belongs is a TypeError.
    assert.throws(() => c.callWith(50 as unknown as { timeout: number }), TypeError);
  } finally {
    await c.stop();
  }
});

Deno.test("names: register/whereis/unregister; any worker finds an actor; a stopped actor's name is free", async () => {
  const a = await spawn(Counter, { name: "reg-a", register: true });
  const b = await spawn(Counter);
  try {
    assert.ok(whereis("reg-a")?.equals(a));
    assert.ok(registered().includes("reg-a"));
    // A taken name: ValueError naming it, for register and for spawn (which starts nothing).
    assert.throws(
      () => register("reg-a", b),
      (e) => e instanceof ValueError && /reg-a/.test(e.message),
    );
    await assert.rejects(() => spawn(Counter, { name: "reg-a", register: true }), ValueError);
    assert.throws(() => whereis(7 as unknown as string), TypeError);
    await assert.rejects(async () => await spawn(Counter, { register: true }), ValueError);
    // Another worker finds it by name.
    const out = new Mailbox<number | null>();
    const p = new Process({ target: callByName, args: ["reg-a", out] });
    p.start();
    assert.equal(await out.receive({ timeout: 10_000 }), 2);
    await p.join();
    // The same actor under a second name; unregister frees one name, the actor goes on.
    register("reg-b", b);
    register("reg-b", b); // already its name: nothing to do
    assert.equal(unregister("reg-b"), true);
    assert.equal(unregister("reg-b"), false);
    assert.equal(whereis("reg-b"), undefined);
    assert.ok(b.isAlive());
    // Stopped: the name is free, at once, and can go to another actor.
    await a.stop();
    assert.equal(whereis("reg-a"), undefined);
    assert.ok(!registered().includes("reg-a"));
    register("reg-a", b);
    assert.ok(whereis("reg-a")?.equals(b));
    assert.throws(() => register("reg-c", a), ValueError); // a stopped actor cannot take a name
  } finally {
    await a.stop();
    await b.stop();
  }
  assert.equal(whereis("reg-a"), undefined);
});

Deno.test("names: workers racing for one name: exactly one wins, the others get ValueError", async () => {
  const refs = await Promise.all([1, 2, 3, 4].map(() => spawn(Counter)));
  const go = new Mailbox<string>(), out = new Mailbox<string>();
  const procs = refs.map((r) =>
    new Process({ target: raceRegister, args: ["reg-race", r, go, out] })
  );
  try {
    for (const p of procs) p.start();
    for (const _ of procs) assert.equal(await out.receive({ timeout: 10_000 }), "ready");
    for (const _ of procs) await go.send("go");
    const results: string[] = [];
    for (const _ of procs) results.push(await out.receive({ timeout: 10_000 }));
    assert.deepEqual(results.sort(), ["ValueError", "ValueError", "ValueError", "won"]);
    const owner = whereis("reg-race");
    assert.ok(owner && refs.some((r) => r.equals(owner)));
    for (const p of procs) await p.join();
  } finally {
    await Promise.all(refs.map((r) => r.stop()));
  }
  assert.equal(whereis("reg-race"), undefined);
});

Deno.test("names: whereis checks liveness; an actor whose worker was terminated is never returned", async () => {
  const ready = new Mailbox<string>();
  const p = new Process({ target: spawnRegistered, args: ["reg-orphan", ready], daemon: false });
  p.start();
  try {
    assert.equal(await ready.receive({ timeout: 10_000 }), "ready");
    const ref = whereis<Counter>("reg-orphan");
    assert.ok(ref);
    assert.equal(await ref.call.inc(1), 41);
  } finally {
    // The process that spawned the actor dies with it: no stop path runs, nobody removes the
    // name; the lookup itself must see that the actor's worker is gone.
    p.terminate();
    await p.join();
  }
  assert.equal(whereis("reg-orphan"), undefined);
  assert.ok(!registered().includes("reg-orphan"));
});

Deno.test("names: a supervised child keeps its name across restarts", async () => {
  const events: string[] = [];
  const sup = await new Supervisor({
    children: [{ id: "w", start: () => spawn(Counter, { name: "reg-sup", register: true }) }],
    onEvent: (e) => events.push(e.type),
  }).start();
  try {
    const first = whereis<Counter>("reg-sup")!;
    assert.ok(first);
    await first.call.crash("boom").catch(() => {});
    const deadline = performance.now() + 10_000;
    while (!events.includes("restarted") && performance.now() < deadline) await sleep(10);
    const second = whereis<Counter>("reg-sup");
    assert.ok(second && !second.equals(first) && second.isAlive());
    assert.equal(await second.call.inc(5), 5);
    assert.equal(first.isAlive(), false);
  } finally {
    await sup.stop();
  }
  assert.equal(whereis("reg-sup"), undefined);
});

Deno.test("timers: sendAfter/every inside an actor, cancelTimer, and all cancelled when it stops", async () => {
  const out = new Mailbox<string>();
  const t = await spawn(Ticker, { args: [out] });
  try {
    await t.call.after(30, "once");
    await t.call.repeat(25, "tick");
    // Which comes first depends on the machine's load: take each by name.
    assert.equal(await out.receive({ timeout: 5000, match: (m) => m === "once" }), "once");
    assert.equal(await out.receive({ timeout: 5000, match: (m) => m === "tick" }), "tick");
    assert.equal(await out.receive({ timeout: 5000, match: (m) => m === "tick" }), "tick");
    // A zero interval is refused (it would flood the mailbox).
    await assert.rejects(() => t.call.badDelay(), ValueError);
    assert.ok((await monitor(t)) instanceof ValueError);
    while (out.size()) await out.receive(); // what it said before and while it stopped
  } catch (e) {
    await t.stop();
    throw e;
  }
  const t2 = await spawn(Ticker, { args: [out] });
  try {
    // Module-level sendAfter from the main thread, and its cancellation.
    const fired = sendAfter(20, t2, "from-main");
    const cancelled = sendAfter(20, t2, "never");
    assert.equal(cancelTimer(cancelled), true);
    assert.equal(cancelTimer(cancelled), false);
    // A message that could never be sent is refused at the call, not when the timer fires.
    assert.throws(() => sendAfter(10, t2, (() => 1) as unknown as string), SerializationError);
    assert.throws(() => sendAfter(-1, t2, "x"), ValueError);
    assert.equal(
      await out.receive({ timeout: 5000, match: (m) => m === "from-main" }),
      "from-main",
    );
    assert.equal(fired.active, false);
    assert.equal(cancelTimer(fired), false);
    await t2.call.repeat(10, "tock");
    await t2.call.after(60_000, "much later");
    assert.equal(await out.receive({ timeout: 5000, match: (m) => m === "tock" }), "tock");
  } finally {
    // The timers are cancelled before onStop runs (Akka: before postStop).
    await t2.stop();
  }
  assert.equal(
    await out.receive({ timeout: 5000, match: (m) => m.startsWith("stopping") }),
    "stopping with 0 active",
  );
  await sleep(50);
  const rest: string[] = [];
  while (out.size()) rest.push(await out.receive());
  assert.ok(!rest.includes("never"), String(rest));
});

Deno.test("groups: join/leave/members/broadcast; a group shrinks as its members stop, however they stop", async () => {
  const [a, b, c, d] = await Promise.all([1, 2, 3, 4].map(() => spawn(Recorder)));
  try {
    for (const r of [a, b, c, d]) assert.equal(join("grp", r), true);
    assert.equal(join("grp", b), false); // a set: a member joins once
    join("other", a);
    assert.deepEqual(members("grp").map((r) => r.name), [a, b, c, d].map((r) => r.name));
    assert.ok(whichGroups().includes("grp") && whichGroups().includes("other"));
    assert.equal(await broadcast("grp", { add: "hello" }), 4);
    for (const r of [a, b, c, d]) assert.deepEqual(await r.ask({ log: true }), ["hello"]);
    // From another worker.
    const out = new Mailbox<number>();
    const p = new Process({ target: broadcastFrom, args: ["grp", out] });
    p.start();
    assert.equal(await out.receive({ timeout: 10_000 }), 4);
    await p.join();
    assert.deepEqual(await d.ask({ log: true }), ["hello", "from a worker"]);
    // Leaving, stopping, crashing, being killed: each member leaves.
    assert.equal(leave("grp", a), true);
    assert.equal(leave("grp", a), false);
    assert.deepEqual(members("other").map((r) => r.name), [a.name]); // still in its other group
    await b.stop();
    assert.deepEqual(members("grp").map((r) => r.name), [c.name, d.name]);
    await assert.rejects(() => c.ask({ crash: "boom" }));
    await monitor(c);
    assert.deepEqual(members("grp").map((r) => r.name), [d.name]);
    d.kill();
    await monitor(d);
    assert.deepEqual(members("grp"), []);
    assert.equal(await broadcast("grp", { add: "nobody" }), 0);
    assert.ok(!whichGroups().includes("grp"));
    assert.throws(() => join("grp", b), ValueError); // a stopped actor joins nothing
    assert.throws(() => join("", a), TypeError);
  } finally {
    await Promise.all([a, b, c, d].map((r) => r.stop()));
  }
  assert.deepEqual(members("other"), []);
});

Deno.test("state machines: become switches the handler; stash defers tells, asks and calls, in order", async () => {
  const g = await spawn(Gate);
  try {
    for (let n = 1; n <= 5; n++) void g.tell({ n });
    const asked = g.ask({ n: 6 });
    const called = g.call.enter("x");
    void g.tell({ n: 7 });
    assert.equal(await g.ask("close"), "closed already"); // taken at once: not deferred
    const opened = g.ask("open");
    void g.tell({ n: 8 }); // newer than the stashed ones: handled after them
    assert.equal(await opened, 8); // 8 messages were waiting
    assert.equal(await asked, 6);
    assert.equal(await called, "x in");
    assert.equal(await g.ask({ n: 9 }), 9);
    assert.deepEqual(await g.call.getLog(), [
      "n1",
      "n2",
      "n3",
      "n4",
      "n5",
      "n6",
      "x",
      "n7",
      "n8",
      "n9",
    ]);
    assert.equal(await g.ask("open"), "open already");
    assert.equal(await g.ask("close"), "closed"); // become(null): back to receive
    void g.tell({ n: 10 });
    const late = g.ask({ n: 11 });
    await g.stop();
    // A stashed ask whose actor stops is not left hanging.
    await assert.rejects(() => late, ActorExited);
  } finally {
    await g.stop();
  }
  // Outside a running actor, these are misuse.
  assert.throws(() => new Gate().stash(), ValueError);
  assert.throws(() => new Gate().become(null), ValueError);
});
