import assert from "node:assert/strict";
import { ActorExited } from "../lib/actor/exit.ts";
import type { ActorRef } from "../lib/actor/ref.ts";
import { link, monitor, unlink } from "../lib/actor/link.ts";
import { Mailbox } from "../lib/actor/mailbox.ts";
import { spawn } from "../lib/actor/spawn.ts";
import {
  Full,
  ProcessError,
  SerializationError,
  TimeoutError,
  ValueError,
} from "../lib/core/errors.ts";
import { Process } from "../lib/process/process.ts";
import { Pool } from "../lib/pool/pool.ts";
import { __testHooks as sparesHooks, setSpares, spareOptions } from "../lib/core/spares.ts";
import {
  Counter,
  Forwarder,
  MailReader,
  Noisy,
  Recorder,
  Sink,
  Source,
  Thrower,
  Trapper,
} from "./fixtures/actor_targets.ts";
import { exitAfter, useRef } from "./fixtures/actor_procs.ts";
import { Parent } from "./fixtures/actor_nested.ts";
import { type ProgramResult, runProgram } from "./_program.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FIXTURE = new URL("./fixtures/actor_main.ts", import.meta.url).pathname;

function program(mode: string): Promise<ProgramResult> {
  return runProgram(FIXTURE, [mode]);
}

Deno.test("typed calls: constructor args, state survives between messages, names", async () => {
  const c = await spawn(Counter, { args: [10], name: "counter-a" });
  try {
    assert.equal(c.name, "counter-a");
    assert.equal(await c.call.inc(1), 11);
    assert.equal(await c.call.inc(4), 15);
    assert.equal(await c.call.get(), 15);
    assert.ok(c.isAlive());
    assert.notEqual(c.pid, Deno.pid);
    // A method the class does not have is refused without crashing the actor.
    const untyped = c.call as unknown as Record<string, () => Promise<unknown>>;
    await assert.rejects(() => untyped.nope(), ValueError);
    assert.equal(await c.call.get(), 15);
  } finally {
    assert.equal(await c.stop(), "normal");
  }
  assert.equal(c.isAlive(), false);
});

Deno.test("one message at a time, in arrival order; tell/ask go to receive()", async () => {
  const c = await spawn(Counter);
  const r = await spawn(Recorder);
  try {
    // Concurrent calls of an async method still run one after another.
    const t0 = performance.now();
    const results = await Promise.all([1, 2, 3, 4].map(() => c.call.slowInc(1, 40)));
    assert.deepEqual(results, [1, 2, 3, 4]);
    assert.ok(performance.now() - t0 >= 150, "the calls overlapped");
    for (let i = 0; i < 200; i++) void r.tell({ add: `m${i}` });
    const log = await r.ask({ log: true }) as string[];
    assert.deepEqual(log, Array.from({ length: 200 }, (_, i) => `m${i}`));
    assert.equal(await r.ask({ add: "x" }), 201);
  } finally {
    await Promise.all([c.stop(), r.stop()]);
  }
});

Deno.test("a method that throws: the caller gets the error, the actor stops with it", async () => {
  const c = await spawn(Counter);
  const down = monitor(c);
  // Calls queued behind the crash fail with ActorExited, never hang.
  const before = c.call.inc(1);
  const crash = c.call.crash("boom");
  const after = [c.call.inc(1), c.call.get()];
  assert.equal(await before, 1);
  await assert.rejects(crash, (e: Error) => e instanceof TypeError && e.message === "boom");
  for (const p of after) {
    await assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof ActorExited);
      assert.ok(e.reason instanceof TypeError && e.reason.message === "boom");
      return true;
    });
  }
  const reason = await down;
  assert.ok(reason instanceof TypeError && reason.message === "boom");
  assert.equal(c.isAlive(), false);
  await assert.rejects(() => c.call.get(), ActorExited);
});

Deno.test("a thrown error with a field that cannot be sent still reaches the caller and monitors", async () => {
  const t = await spawn(Thrower);
  const down = monitor(t);
  const isBoom = (e: unknown) => {
    assert.ok(e instanceof RangeError, String(e));
    assert.equal(e.message, "boom");
    assert.equal((e.cause as { orderId: number }).orderId, 42);
    assert.match(e.stack ?? "", /left out when sending this error: callback/);
    return true;
  };
  await assert.rejects(() => t.call.fail(), isBoom);
  isBoom(await down);
});

Deno.test("ask/call to a dead actor rejects with the reason; ask timeout; self-call", async () => {
  const c = await spawn(Counter);
  const hung = c.call.hang();
  await sleep(50);
  const t0 = performance.now();
  assert.ok(c.kill());
  await assert.rejects(hung, (e: unknown) => e instanceof ActorExited && e.reason === "killed");
  assert.ok(performance.now() - t0 < 2000, "the pending call was not failed promptly");
  assert.equal(await monitor(c), "killed");
  await assert.rejects(() => c.call.inc(1), ActorExited);

  const r = await spawn(Recorder);
  const f = await spawn(Forwarder);
  try {
    await assert.rejects(() => r.ask({ log: true }, { timeout: -1 }), ValueError);
    await assert.rejects(() => r.ask({ sleep: 300 }, { timeout: 30 }), TimeoutError);
    assert.deepEqual(await r.ask({ log: true }), []); // still alive, after the slow message
    const ac = new AbortController();
    const asked = r.ask({ sleep: 100 }, { signal: ac.signal });
    ac.abort(new Error("no longer needed"));
    await assert.rejects(asked, /no longer needed/);
    // An actor that calls itself would wait forever: refused (thrown, it crashes the actor).
    await assert.rejects(() => f.call.callSelf(), ValueError);
    assert.ok((await monitor(f)) instanceof ValueError);
  } finally {
    await r.stop();
    await f.stop();
  }
});

Deno.test("an ActorRef passes to actors, through mailboxes and to plain processes", async () => {
  const c = await spawn(Counter);
  const f = await spawn(Forwarder);
  try {
    assert.equal(await f.call.viaArg(c, 2), 2);
    await f.call.setTarget(c);
    assert.equal(await f.call.forward(3), 5);
    const me = await f.call.me();
    assert.ok(me.equals(f) && me.name === f.name);
    const mb = new Mailbox<ActorRef<Counter>>();
    await mb.send(c);
    const back = await mb.receive();
    assert.equal(await back.call.inc(1), 6);
    const out = new Mailbox<number>();
    const p = new Process({ target: useRef, args: [c, out] });
    p.start();
    assert.equal(await out.receive({ timeout: 10_000 }), 106);
    await p.join();
    assert.equal(p.exitCode, 0);
  } finally {
    await f.stop();
    await c.stop();
  }
  await assert.rejects(
    () => spawn(Counter, { args: [(() => 1) as unknown as number] }),
    SerializationError,
  );
});

Deno.test("Mailbox: selective receive keeps skipped messages in order, in any worker", async () => {
  const mb = new Mailbox<number>();
  for (const n of [1, 2, 3, 4, 5, 6]) await mb.send(n);
  assert.equal(mb.size(), 6);
  assert.equal(await mb.receive({ match: (n) => n > 4 }), 5);
  assert.equal(await mb.receive({ match: (n) => n % 2 === 0 }), 2);
  // A match that throws loses nothing.
  assert.throws(() =>
    mb.receiveSync({
      match: () => {
        throw new RangeError("bad match");
      },
    }), RangeError);
  assert.equal(mb.size(), 4);
  // Another worker sees the same queue, skipped messages included, in order.
  const reader = await spawn(MailReader, { args: [mb] });
  try {
    assert.equal(await reader.call.takeEven(), 4);
    assert.equal(await reader.call.takeEven(), 6);
    assert.equal(await reader.call.take(), 1);
    // A matching message that arrives while a selective receive waits is taken at once.
    const waiting = reader.call.takeEven();
    await sleep(100);
    await mb.send(7);
    await mb.send(8);
    assert.equal(await waiting, 8);
    assert.deepEqual([await mb.receive(), await mb.receive()], [3, 7]);
  } finally {
    await reader.stop();
  }
  await assert.rejects(() => mb.receive({ timeout: 20 }), TimeoutError);
  const ac = new AbortController();
  const aborted = mb.receive({ signal: ac.signal });
  ac.abort(new Error("stop waiting"));
  await assert.rejects(aborted, /stop waiting/);
  // Handles and rich values survive being skipped and kept.
  const mixed = new Mailbox<{ k: string; v: unknown }>();
  await mixed.send({ k: "map", v: new Map([[1, new Date(5)]]) });
  await mixed.send({ k: "box", v: mb });
  const box = await mixed.receive({ match: (m) => m.k === "box" });
  const map = await mixed.receive();
  assert.ok(box.v instanceof Mailbox);
  assert.equal(((map.v as Map<number, Date>).get(1))!.getTime(), 5);
});

Deno.test("Mailbox: bounded mailboxes apply backpressure on send", async () => {
  const mb = new Mailbox<string>({ maxsize: 2 });
  await mb.send("a");
  await mb.send("b");
  await assert.rejects(() => mb.send("c", { timeout: 20 }), Full);
  const third = mb.send("c");
  let sent = false;
  void third.then(() => (sent = true));
  await sleep(30);
  assert.equal(sent, false);
  assert.equal(await mb.receive(), "a");
  await third;
  assert.deepEqual([await mb.receive(), await mb.receive()], ["b", "c"]);
  assert.throws(() => new Mailbox({ maxsize: -1 }), ValueError);
});

Deno.test("monitor: normal, killed, crashed; a plain Process too", async () => {
  const a = await spawn(Counter);
  const down = monitor(a);
  assert.equal(await a.stop("normal"), "normal");
  assert.equal(await down, "normal");
  assert.equal(await monitor(a), "normal"); // already stopped: at once
  const b = await spawn(Counter);
  b.kill();
  assert.equal(await monitor(b), "killed");
  const p = new Process({ target: exitAfter, args: [10, 1] });
  p.start();
  const reason = await monitor(p);
  assert.ok(reason instanceof ProcessError && /code 1/.test(reason.message));
});

Deno.test("link: an abnormal exit stops the linked actor; trapExits turns it into onExit", async () => {
  const a = await spawn(Counter), b = await spawn(Counter), t = await spawn(Trapper);
  await link(a, b);
  await link(a, t);
  const bDown = monitor(b);
  await assert.rejects(() => a.call.crash("linked crash"), TypeError);
  const reason = await bDown;
  assert.ok(reason instanceof TypeError && reason.message === "linked crash");
  // The trapping actor survives and was told.
  let seen: string[] = [];
  for (let i = 0; i < 50 && !seen.length; i++) {
    seen = await t.call.seen();
    if (!seen.length) await sleep(20);
  }
  assert.deepEqual(seen, [`${a.name}:linked crash`]);
  // A normal stop does not propagate; unlink removes the link.
  const c = await spawn(Counter), d = await spawn(Counter), e = await spawn(Counter);
  await link(c, d);
  await link(c, e);
  await unlink(c, e);
  await c.stop();
  await sleep(100);
  assert.ok(d.isAlive());
  await link(d, e);
  await unlink(d, e);
  d.kill();
  await sleep(200);
  assert.ok(e.isAlive());
  await Promise.all([e.stop(), t.stop()]);
  await assert.rejects(() => link(a, t), ActorExited);
});

Deno.test("spawn: start failures reject with their error; bad classes are refused", async () => {
  await assert.rejects(
    () => spawn(Noisy, { args: ["x", true] }),
    (e: Error) => e instanceof RangeError && e.message === "x refused to start",
  );
  class Local extends Counter {}
  await assert.rejects(() => spawn(Local), ProcessError);
  await assert.rejects(() => spawn(Object as never), ValueError);
  // A class whose module fails to load in the worker (from a spare, its import is started ahead
  // of need, and fails where the class is imported for real): spawn rejects with its error.
  const broken = new URL("./fixtures/pool_broken_module.ts", import.meta.url);
  const spares = spareOptions();
  try {
    for (let i = 0; i < 2; i++) {
      setSpares({ count: 0 });
      setSpares({ count: 1 }); // a fresh spare, ready ~0.5-1 s later
      for (let t = 0; t < 300 && sparesHooks.live() < 1; t++) await sleep(10);
      await assert.rejects(() => spawn(Local, { module: broken }), /this module does not load/);
    }
  } finally {
    setSpares(spares);
  }
  const ok = await spawn(Counter);
  await ok.stop();
});

Deno.test("typed proxies: a wrong argument type fails deno check", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lib = new URL("../lib/actor/spawn.ts", import.meta.url).href;
    const fixtures = new URL("./fixtures/actor_targets.ts", import.meta.url).href;
    const source = (body: string) =>
      `import { spawn } from "${lib}";\nimport { Counter, Recorder } from "${fixtures}";\n` +
      `export async function f() {\n  const c = await spawn(Counter, { args: [1] });\n` +
      `  const r = await spawn(Recorder);\n${body}\n}\n`;
    const check = async (body: string) => {
      const file = `${dir}/t${Math.random().toString(36).slice(2)}.ts`;
      await Deno.writeTextFile(file, source(body));
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["check", "--quiet", file],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return { ok: r.success, err: new TextDecoder().decode(r.stderr) };
    };
    const [good, bad] = await Promise.all([
      check(
        `  const n: number = await c.call.inc(1);\n` +
          `  void r.tell({ add: "x" });\n  const l = await r.ask({ log: true });\n  void n, l;`,
      ),
      check(
        `  await c.call.inc("1");\n` + // a wrong argument type
          `  const s: string = await c.call.get();\n  void s;\n` + // a wrong result type
          `  void r.tell({ nope: 1 });\n` + // a message receive() does not take
          `  void c.tell(1);\n` + // Counter has no receive()
          `  await c.call.nope();`, // no such method
      ),
    ]);
    assert.ok(good.ok, good.err);
    assert.ok(!bad.ok);
    assert.match(bad.err, /TS2345/);
    assert.match(bad.err, /Found 5 errors/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("program end: daemon actors end with it, non-daemon actors are awaited", async () => {
  const d = await program("daemon");
  assert.equal(d.code, 0);
  assert.match(d.out, /pong daemon\nmain-end\n/);
  const n = await program("non-daemon");
  assert.equal(n.code, 0);
  assert.match(n.out, /pong worker\nmain-end\nstop worker normal\n/);
});

Deno.test("large arguments, replies and mailbox messages stream through", async () => {
  const r = await spawn(Recorder);
  const mb = new Mailbox<number | string>();
  const reader = await spawn(MailReader, { args: [mb as Mailbox<number>] });
  try {
    const big = "y".repeat(1_000_000);
    assert.equal(await r.ask({ add: big }), 1);
    const log = await r.call.entries();
    assert.equal(log[0].length, 1_000_000);
    // A large message skipped by a selective receive keeps its place.
    await mb.send("s".repeat(300_000));
    await mb.send(3);
    await mb.send(4);
    assert.equal(await reader.call.takeEven(), 4);
    assert.equal(((await mb.receive()) as string).length, 300_000);
    assert.equal(await mb.receive(), 3);
  } finally {
    await Promise.all([r.stop(), reader.stop()]);
  }
});

Deno.test("concurrent callers in several workers; stop with timeout; kill from elsewhere", async () => {
  const c = await spawn(Counter);
  const fs = await Promise.all([1, 2].map(() => spawn(Forwarder)));
  const burst = await Promise.all(Array.from({ length: 500 }, () => c.call.inc(1)));
  assert.deepEqual(burst, Array.from({ length: 500 }, (_, i) => i + 1));
  await Promise.all(fs.map(async (f) => {
    for (let i = 0; i < 200; i++) await f.call.viaArg(c, 1);
  }));
  assert.equal(await c.call.get(), 900);
  // A hung actor does not stop in order: with a timeout, its spawner kills it.
  void c.call.hang().catch(() => {});
  assert.equal(await c.stop("normal", { timeout: 100 }), "killed");
  // Another worker cannot terminate an actor's worker: the actor ends itself on request.
  const d = await spawn(Counter);
  assert.equal(await fs[0].call.killOther(d), true);
  assert.equal(await monitor(d), "killed");
  await Promise.all(fs.map((f) => f.stop()));
});

Deno.test("a non-daemon actor starts actors of its own; stopping it stops them after it", async () => {
  const log = new Mailbox<string>();
  const parent = await spawn(Parent, { args: [log], daemon: false });
  assert.equal(await parent.call.childLabel(), "child");
  await parent.stop();
  const lines = [];
  while (log.size()) lines.push(await log.receive());
  assert.deepEqual(lines, ["start child", "start parent", "stop parent", "stop child shutdown"]);
  await assert.rejects(() => spawn(Parent, { args: [log] }), /daemonic processes/);
});

Deno.test("tell throughput between two actors (smoke)", async () => {
  const sink = await spawn(Sink), source = await spawn(Source);
  try {
    assert.equal(await source.call.blast(sink, 20_000), 20_000);
  } finally {
    await Promise.all([sink.stop(), source.stop()]);
  }
});

Deno.test("an actor killed while busy in a handler stops silently when the handler returns", async () => {
  const r = await program("zombie");
  assert.match(r.out, /reason killed/);
  assert.match(r.out, /zombie-done/);
  assert.doesNotMatch(r.err, /crashed|terminated/);
});

Deno.test("an actor spawned with permissions 'none' starts: it may read denomp and its class's module only", async () => {
  const a = await spawn(Noisy, { args: ["sandboxed"], permissions: "none" });
  assert.equal(await a.call.ping(), "pong sandboxed");
  await a.stop();
});

Deno.test("options objects: a number or boolean where one belongs is a TypeError showing the right call", async () => {
  const mb = new Mailbox<number>();
  await assert.rejects(
    mb.receive(1000 as unknown as undefined),
    (e: Error) => e instanceof TypeError && /receive\(\{ timeout: 1000 \}\)/.test(e.message),
  );
  assert.throws(() => mb.receiveSync(0 as unknown as undefined), TypeError);
  await assert.rejects(mb.send(1, 50 as unknown as undefined), TypeError);
  assert.throws(() => mb.sendSync(1, true as unknown as undefined), TypeError);
  assert.throws(() => new Mailbox(10 as unknown as undefined), /new Mailbox\(\{ maxsize/);
  await assert.rejects(spawn(Noisy, "n" as unknown as undefined), TypeError);
  const a = await spawn(Noisy, { args: ["opts"] });
  await assert.rejects(a.ask(undefined as never, 100 as unknown as undefined), TypeError);
  assert.throws(() => monitor(a, false as unknown as undefined), TypeError);
  await assert.rejects(a.stop("normal", 5000 as unknown as undefined), TypeError);
  await assert.rejects(a.stop("normal", { timeout: -1 }), ValueError);
  assert.equal(await a.call.ping(), "pong opts"); // refused calls left it alone
  await a.stop("normal", { timeout: 5000 });
});

Deno.test("monitor of a stopped actor settles at once while a pool's death watch runs", async () => {
  const pool = new Pool({ processes: 1 });
  try {
    await pool.whenReady();
    const a = await spawn(Counter);
    assert.equal(await a.stop("normal"), "normal");
    await sleep(100); // the actors' watch has nothing left and leaves the death watcher
    const t0 = performance.now();
    const reason = await Promise.race([monitor(a), sleep(2_000).then(() => "timed out")]);
    assert.equal(reason, "normal");
    assert.ok(performance.now() - t0 < 1_000);
  } finally {
    pool.terminate();
    await pool.join();
  }
});
