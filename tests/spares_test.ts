// Spare workers (lib/core/spares.ts): a process started from a spare is the same process a new
// worker would run; spares never keep a program alive and end when idle; `setSpares` and
// `DENOMP_SPARES` turn them off.
import assert from "node:assert/strict";
import { Event, Process, Queue } from "../mod.ts";
import { __testHooks, setSpares, spareOptions } from "../lib/core/spares.ts";
import { exitWith, sleep as sleepTarget } from "./fixtures/proc_targets.ts";
import { type Facts, facts, spinUntil, WarmFacts } from "./fixtures/spare_targets.ts";
import { spawn } from "../lib/actor/spawn.ts";
import { runProgram } from "./_program.ts";

const PROGRAM = new URL("./fixtures/spare_program.ts", import.meta.url).pathname;
const DEFAULTS = spareOptions();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sets `options` and waits until that many spares are alive and have had time to boot. */
async function spares(options: { count: number; idleMs?: number }): Promise<void> {
  setSpares({ idleMs: 10_000, ...options });
  for (let i = 0; i < 500 && __testHooks.live() < options.count; i++) await sleep(10);
  await sleep(300);
  assert.equal(__testHooks.live(), options.count);
}

async function runFacts(
  options: { name?: string; daemon?: boolean; permissions?: Deno.PermissionOptions },
  onStarted?: () => void,
): Promise<[Facts, Process]> {
  const q = new Queue<Facts>();
  const p = new Process({ target: facts, args: [q], ...options });
  p.start();
  onStarted?.();
  const f = await q.get({ timeout: 30_000 });
  await p.join();
  return [f, p];
}

/** Worker threads of this OS process (Linux: Deno names them `worker-N`), or -1 elsewhere. */
function workerThreads(): number {
  try {
    return [...Deno.readDirSync("/proc/self/task")]
      .filter((t) => /^worker-/.test(Deno.readTextFileSync(`/proc/self/task/${t.name}/comm`)))
      .length;
  } catch {
    return -1;
  }
}

Deno.test("a process started from a spare has its own name, pid, daemon flag and exit code", async () => {
  try {
    await spares({ count: 1 });
    let taken = -1;
    const [f, p] = await runFacts(
      { name: "from-spare", daemon: true },
      () => (taken = __testHooks.live()),
    );
    assert.equal(taken, 0, "start() took the spare");
    assert.equal(f.name, "from-spare");
    assert.equal(f.selfName, "from-spare", "the worker's self.name is the process's");
    assert.equal(f.pid, p.pid);
    assert.equal(f.daemon, true);
    assert.equal(p.exitCode, 0);
    assert.equal(f.warmedUp, true, "the spare ran its warm-up before it was taken");
    await spares({ count: 1 });
    const e = new Process({ target: exitWith, args: [3] });
    e.start();
    assert.equal(__testHooks.live(), 0);
    await e.join();
    assert.equal(e.exitCode, 3);
  } finally {
    setSpares(DEFAULTS);
  }
});

Deno.test("an actor from a spare ran the actor side's warm-up, and its calls use the program's heap", async () => {
  try {
    await spares({ count: 1 });
    const spawning = spawn(WarmFacts);
    // Read at once: a replacement could be ready by the time the spawn settles.
    assert.equal(__testHooks.live(), 0, "spawn took the spare");
    const ref = await spawning;
    // The warm-up ran on the spare's private heap (lib/actor/runtime.ts): nothing of it may be
    // left in the process given the spare, whose mailbox and replies are the program's.
    assert.ok((await ref.call.warmUps()) >= 1, "the spare ran the actor side's warm-up");
    const big = "x".repeat(200_000); // streamed through the rings in frames
    const small = await Promise.all(Array.from({ length: 50 }, (_, i) => ref.call.echo(i)));
    assert.deepEqual(small, Array.from({ length: 50 }, (_, i) => i));
    assert.equal(await ref.call.echo(big), big);
    assert.equal(await ref.stop(), "normal");
  } finally {
    setSpares(DEFAULTS);
  }
});

Deno.test("terminate() ends a process started from a spare, and its thread", async () => {
  try {
    await spares({ count: 1 });
    const p = new Process({
      target: sleepTarget,
      module: new URL("./fixtures/proc_targets.ts", import.meta.url),
      args: [60_000],
    });
    p.start();
    assert.equal(__testHooks.live(), 0, "start() took the spare");
    await spares({ count: 1 }); // its replacement: the threads are now the zygote's, p's, a spare's
    const before = workerThreads();
    p.terminate();
    await p.join();
    assert.equal(p.exitCode, -15);
    const t0 = performance.now();
    while (before >= 0 && workerThreads() >= before && performance.now() - t0 < 5000) {
      await sleep(20);
    }
    if (before >= 0) assert.ok(workerThreads() < before, "the process's thread has ended");
  } finally {
    setSpares(DEFAULTS);
  }
});

Deno.test("a process with its own permissions gets a new worker with exactly those, not a spare", async () => {
  try {
    await spares({ count: 1 });
    let left = -1;
    const [sandboxed] = await runFacts(
      { permissions: { net: false } },
      () => (left = __testHooks.live()),
    );
    assert.equal(left, 1, "the spare was not taken");
    assert.notEqual(sandboxed.net, "granted");
    assert.equal(sandboxed.warmedUp, false, "a new worker runs no warm-up");
    const [plain] = await runFacts({});
    assert.equal(plain.net, "granted", "a spare has the program's permissions");
  } finally {
    setSpares(DEFAULTS);
  }
});

Deno.test("spares are asked for again once starts pause, not during a burst of starts", async () => {
  try {
    await spares({ count: 2 });
    const burst: Process[] = [];
    for (let i = 0; i < 4; i++) {
      const p = new Process({ target: exitWith, args: [0] });
      p.start();
      burst.push(p);
      assert.equal(__testHooks.asked(), 0, `no spare asked for during the burst (start ${i})`);
    }
    assert.equal(__testHooks.live(), 0, "the burst took both spares");
    for (const p of burst) await p.join();
    for (let i = 0; i < 100 && __testHooks.asked() + __testHooks.live() < 2; i++) await sleep(10);
    assert.equal(__testHooks.asked() + __testHooks.live(), 2, "asked for once the starts paused");
  } finally {
    setSpares(DEFAULTS);
  }
});

/**
 * Spares off, then one process per core spinning until `stop` is set (pushed on `busy`, for the
 * test to join), all of them running.
 */
async function fillCores(stop: Event, busy: Process[]): Promise<void> {
  setSpares({ count: 0 });
  for (let i = 0; i < navigator.hardwareConcurrency; i++) {
    const p = new Process({ target: spinUntil, args: [stop], daemon: true });
    p.start();
    busy.push(p);
  }
  await sleep(200);
}

Deno.test("a spare is made and loads the library only while a core is free: not while the program's children fill them all", async () => {
  const stop = new Event();
  const busy: Process[] = [];
  try {
    await fillCores(stop, busy);
    setSpares({ count: 2, idleMs: 10_000 });
    // Without the gate both spares are ready 0.5-1 s after they are asked for.
    await sleep(2500);
    assert.equal(__testHooks.live(), 0, "no spare booted while every core was busy");
    assert.equal(__testHooks.asked(), 2, "both asked for, waiting");
    // Nor made: `new Worker()` costs ~10 ms of the zygote's thread and a few of the new one's.
    const threads = workerThreads();
    if (threads >= 0) {
      assert.equal(threads, busy.length + 1, "no spare's thread, the zygote's only");
    }
    stop.set();
    for (const p of busy) await p.join();
    const t0 = performance.now();
    while (__testHooks.live() < 2 && performance.now() - t0 < 5000) await sleep(20);
    assert.equal(__testHooks.live(), 2, "both booted once the cores were free");
  } finally {
    stop.set();
    for (const p of busy) await p.join();
    setSpares(DEFAULTS);
  }
});

Deno.test("setSpares({ count: 0 }) while spares wait for a free core: none is made once the cores are free", async () => {
  const stop = new Event();
  const busy: Process[] = [];
  try {
    await fillCores(stop, busy);
    const made = __testHooks.made();
    setSpares({ count: 2, idleMs: 10_000 });
    await sleep(300);
    assert.equal(__testHooks.made(), made, "none made while every core was busy");
    setSpares({ count: 0 });
    stop.set();
    for (const p of busy) await p.join();
    await sleep(1000); // idle ticks: spares still asked for would be made now
    assert.equal(__testHooks.made(), made, "a spare called off was made once the cores were free");
    assert.equal(__testHooks.asked(), 0);
    assert.equal(__testHooks.live(), 0);
  } finally {
    stop.set();
    for (const p of busy) await p.join();
    setSpares(DEFAULTS);
  }
});

Deno.test("an idle spare is ended after idleMs, then the zygote: no worker thread is left", async () => {
  try {
    setSpares({ count: 0 });
    await sleep(300);
    const before = workerThreads();
    await spares({ count: 2 });
    if (before >= 0) assert.ok(workerThreads() >= 2, "the spares' threads");
    setSpares({ idleMs: 300 });
    const t0 = performance.now();
    while (__testHooks.zygote() && performance.now() - t0 < 5000) await sleep(20);
    assert.equal(__testHooks.live(), 0);
    assert.equal(__testHooks.zygote(), false, "the zygote ends once idle too");
    // The threads themselves go a moment after terminate().
    while (before >= 0 && workerThreads() > before && performance.now() - t0 < 5000) {
      await sleep(20);
    }
    if (before >= 0) assert.ok(workerThreads() <= before, `${workerThreads()} > ${before} threads`);
  } finally {
    setSpares(DEFAULTS);
  }
});

Deno.test("setSpares({ count: 0 }) ends the spares and starts none, a count makes them; a child inherits the setting", async () => {
  try {
    await spares({ count: 2 });
    setSpares({ count: 0 });
    assert.equal(__testHooks.live(), 0);
    const [f] = await runFacts({});
    await sleep(50);
    assert.equal(__testHooks.live(), 0, "a start made no spares");
    assert.deepEqual(f.spares, { count: 0, idleMs: 10_000 });
    setSpares({ count: 3, idleMs: 777 });
    const [g] = await runFacts({});
    assert.deepEqual(g.spares, { count: 3, idleMs: 777 });
    setSpares({ count: 0 });
    setSpares({ count: 2, idleMs: 10_000 }); // made without waiting for a start
    for (let i = 0; i < 500 && __testHooks.live() < 2; i++) await sleep(10);
    assert.equal(__testHooks.live(), 2);
    assert.throws(() => setSpares({ count: -1 }), RangeError);
    assert.throws(() => setSpares({ count: 1.5 }), RangeError);
    assert.throws(() => setSpares({ idleMs: NaN }), /idleMs must be a number of milliseconds/);
    // @ts-expect-error: a count where the options belong
    assert.throws(() => setSpares(0), /setSpares\(\) takes an options object, not a number/);
  } finally {
    setSpares(DEFAULTS);
  }
});

Deno.test("spares never keep a program alive; a non-daemon process from a spare does", async () => {
  // The programs keep idle spares for a minute: alive, they would hold the program that long.
  const [idle, daemon, nondaemon] = await Promise.all(
    ["idle", "daemon", "nondaemon"].map((mode) =>
      runProgram(PROGRAM, [mode], { timeoutMs: 30_000 })
    ),
  );
  for (const r of [idle, daemon, nondaemon]) assert.equal(r.timedOut, false, r.err);
  assert.equal(idle.code, 0, idle.err);
  assert.match(idle.out, /main done, spares: 2/);
  assert.equal(daemon.code, 0, daemon.err);
  assert.match(daemon.out, /main done, spares: 1/, "the daemon process took a spare");
  assert.doesNotMatch(daemon.out, /child done/);
  assert.equal(nondaemon.code, 0, nondaemon.err);
  assert.match(nondaemon.out, /main done, spares: 1\nchild done/);
});

Deno.test("DENOMP_SPARES sets the count; 0 turns spares off", async () => {
  const [off, three, bad] = await Promise.all(
    ["0", "3", "x"].map((v) => runProgram(PROGRAM, ["options"], { env: { DENOMP_SPARES: v } })),
  );
  assert.equal(JSON.parse(off.out).count, 0, off.err);
  assert.equal(JSON.parse(three.out).count, 3, three.err);
  assert.equal(JSON.parse(bad.out).count, 2, bad.err);
  assert.match(bad.err, /DENOMP_SPARES must be a whole number/);
});

Deno.test("a new worker loads the child side of the runtime only: not spawn.ts, observe.ts nor the codec", async () => {
  const bootstrap = new URL("../lib/core/bootstrap.ts", import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", bootstrap.pathname],
    stdout: "piped",
    stderr: "null",
  }).output();
  const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string; dependencies?: { code?: { specifier: string } }[] }[];
  };
  // What a worker loads: the modules reached through imports of code (not `import type`).
  const bySpecifier = new Map(graph.modules.map((m) => [m.specifier, m]));
  const reached = new Set([bootstrap.href]);
  for (const s of reached) {
    for (const d of bySpecifier.get(s)?.dependencies ?? []) {
      if (d.code) reached.add(d.code.specifier);
    }
  }
  const loaded = [...reached].map((s) => s.replace(/^.*\/lib\//, "lib/"));
  assert.ok(loaded.includes("lib/core/child.ts"), loaded.join(", "));
  // The codec and the big blocks' buffers are imported when a start message needs them.
  for (
    const heavy of [
      "lib/core/spawn.ts",
      "lib/core/observe.ts",
      "lib/core/reduction.ts",
      "lib/core/decoder.ts",
      "lib/core/bigblock.ts",
    ]
  ) {
    assert.ok(!loaded.includes(heavy), `${heavy} is in the worker's start-up graph`);
  }
});
