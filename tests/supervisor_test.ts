import assert from "node:assert/strict";
import type { ActorRef } from "../lib/actor/ref.ts";
import { monitor } from "../lib/actor/link.ts";
import { Mailbox } from "../lib/actor/mailbox.ts";
import { spawn } from "../lib/actor/spawn.ts";
import { TimeoutError, ValueError } from "../lib/core/errors.ts";
import { Process } from "../lib/process/process.ts";
import {
  type ChildSpec,
  Supervisor,
  SupervisorError,
  type SupervisorEvent,
} from "../lib/actor/supervisor.ts";
import { Logged, Noisy } from "./fixtures/actor_targets.ts";
import { exitAfter, sleepLong } from "./fixtures/actor_procs.ts";
import { runProgram } from "./_program.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FIXTURE = new URL("./fixtures/actor_main.ts", import.meta.url).pathname;
const CRASH_PROGRAM = new URL("./fixtures/crash_program.ts", import.meta.url).pathname;
const SIGINT_PROGRAM = new URL("./fixtures/sigint_program.ts", import.meta.url).pathname;

/**
 * Runs `file` as its own deno process until it prints "ready", sends it a real SIGINT, and
 * returns how it ended: exit code, stdout, and the milliseconds from the signal to the exit.
 */
async function interrupt(file: string, ...args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-worker-options", file, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  const dec = new TextDecoder();
  let out = "";
  while (!out.includes("ready\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += dec.decode(value);
  }
  assert.match(out, /ready\n/);
  const t0 = performance.now();
  child.kill("SIGINT");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out += dec.decode(value);
  }
  const status = await child.status;
  await child.stderr.cancel();
  return { code: status.code, out, ms: performance.now() - t0 };
}

/** A supervision test bench: children that log their lives to one shared mailbox. */
function bench() {
  const log = new Mailbox<string>();
  const events: SupervisorEvent[] = [];
  return {
    log,
    events,
    child(id: string, restart?: ChildSpec["restart"]): ChildSpec {
      return { id, restart, start: () => spawn(Logged, { args: [id, log], name: `w-${id}` }) };
    },
    onEvent: (e: SupervisorEvent) => void events.push(e),
    /** Waits until the log holds `n` more lines, and returns them. */
    async take(n: number): Promise<string[]> {
      const out: string[] = [];
      while (out.length < n) out.push(await log.receive({ timeout: 10_000 }));
      return out;
    },
    async quiet(ms = 150): Promise<void> {
      await sleep(ms);
      assert.equal(log.size(), 0, "unexpected lines in the log");
    },
  };
}

const ref = (sup: Supervisor, id: string) => sup.get(id) as ActorRef<Logged>;

/** Waits until the supervisor runs a new instance of child `id` (other than `old`). */
async function restarted<T>(sup: Supervisor, id: string, old: T): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const now = sup.get(id) as T | undefined;
    if (now !== undefined && now !== old) return now;
    await sleep(10);
  }
  throw new Error(`child ${id} was not restarted`);
}

async function crash(r: ActorRef<Logged>): Promise<void> {
  await assert.rejects(() => r.call.crash(), /crashed on command/);
}

Deno.test("ordered start, reverse-order shutdown", async () => {
  const b = bench();
  const sup = await new Supervisor({ children: ["a", "b", "c"].map((id) => b.child(id)) }).start();
  assert.deepEqual(await b.take(3), ["start a", "start b", "start c"]);
  assert.deepEqual(sup.whichChildren().map((c) => c.id), ["a", "b", "c"]);
  assert.equal(await sup.stop(), "shutdown");
  assert.deepEqual(await b.take(3), ["stop c shutdown", "stop b shutdown", "stop a shutdown"]);
  assert.equal(sup.isAlive(), false);
  assert.equal(await sup.join(), "shutdown");
});

Deno.test("one_for_one restarts only the child that crashed; state starts afresh", async () => {
  const b = bench();
  const sup = await new Supervisor({
    strategy: "one_for_one",
    children: ["a", "b", "c"].map((id) => b.child(id)),
    onEvent: b.onEvent,
  }).start();
  await b.take(3);
  const [a0, b0, c0] = ["a", "b", "c"].map((id) => ref(sup, id));
  await crash(b0);
  assert.deepEqual(await b.take(2), ["stop b Error", "start b"]);
  await b.quiet();
  assert.ok(ref(sup, "a").equals(a0) && ref(sup, "c").equals(c0));
  assert.ok(!ref(sup, "b").equals(b0) && ref(sup, "b").isAlive());
  assert.equal(await ref(sup, "b").call.label_(), "b");
  const restarted = b.events.filter((e) => e.type === "restarted");
  assert.equal(restarted.length, 1);
  assert.equal(sup.restartCount, 1);
  await sup.stop();
  await b.take(3);
});

Deno.test("one_for_all stops the others in reverse order and restarts all in order", async () => {
  const b = bench();
  const sup = await new Supervisor({
    strategy: "one_for_all",
    children: ["a", "b", "c"].map((id) => b.child(id)),
  }).start();
  await b.take(3);
  const a0 = ref(sup, "a");
  await crash(ref(sup, "b"));
  assert.deepEqual(await b.take(6), [
    "stop b Error",
    "stop c shutdown",
    "stop a shutdown",
    "start a",
    "start b",
    "start c",
  ]);
  assert.ok(!ref(sup, "a").equals(a0));
  await sup.stop();
  await b.take(3);
});

Deno.test("rest_for_one restarts the child and those started after it", async () => {
  const b = bench();
  const sup = await new Supervisor({
    strategy: "rest_for_one",
    children: ["a", "b", "c", "d"].map((id) => b.child(id)),
  }).start();
  await b.take(4);
  const a0 = ref(sup, "a");
  ref(sup, "b").kill(); // killed: no onStop
  assert.deepEqual(await b.take(5), [
    "stop d shutdown",
    "stop c shutdown",
    "start b",
    "start c",
    "start d",
  ]);
  await b.quiet();
  assert.ok(ref(sup, "a").equals(a0));
  await sup.stop();
  await b.take(4);
});

Deno.test("restart types: permanent, transient and temporary", async () => {
  const b = bench();
  const sup = await new Supervisor({
    children: [
      b.child("perm", "permanent"),
      b.child("trans", "transient"),
      b.child("temp", "temporary"),
    ],
  }).start();
  await b.take(3);
  // A normal exit: permanent restarts, transient does not.
  const perm = ref(sup, "perm");
  await perm.stop("normal");
  assert.deepEqual(await b.take(2), ["stop perm normal", "start perm"]);
  await restarted(sup, "perm", perm);
  await ref(sup, "trans").stop("normal");
  assert.deepEqual(await b.take(1), ["stop trans normal"]);
  await b.quiet();
  assert.equal(sup.get("trans"), undefined);
  // A crash: temporary is not restarted and is forgotten.
  await crash(ref(sup, "temp"));
  assert.deepEqual(await b.take(1), ["stop temp Error"]);
  await b.quiet();
  assert.deepEqual(sup.whichChildren().map((c) => c.id), ["perm", "trans"]);
  await sup.stop();
  await b.take(1);
});

Deno.test("restart intensity: past maxRestarts within withinMs the supervisor gives up", async () => {
  const b = bench();
  const sup = await new Supervisor({
    name: "fragile",
    maxRestarts: 2,
    withinMs: 10_000,
    children: [b.child("a"), b.child("x")],
    onEvent: b.onEvent,
  }).start();
  await b.take(2);
  for (let i = 0; i < 2; i++) {
    const x = ref(sup, "x");
    await crash(x);
    assert.deepEqual(await b.take(2), ["stop x Error", "start x"]);
    await restarted(sup, "x", x);
  }
  await crash(ref(sup, "x"));
  const reason = await sup.join();
  assert.ok(reason instanceof SupervisorError, String(reason));
  assert.match(reason.message, /fragile.*max restart intensity.*'x'/);
  assert.deepEqual(await b.take(2), ["stop x Error", "stop a shutdown"]);
  assert.equal(sup.isAlive(), false);
  assert.deepEqual(b.events.map((e) => e.type).slice(-2), ["gave_up", "stopped"]);
});

Deno.test("escalation: a nested supervisor that gives up is restarted by its parent", async () => {
  const b = bench();
  const inner = () =>
    new Supervisor({
      name: "inner",
      maxRestarts: 1,
      children: [b.child("w")],
    }).start();
  const sup = await new Supervisor({
    name: "outer",
    children: [b.child("first"), { id: "inner", start: inner }, b.child("last")],
    onEvent: b.onEvent,
  }).start();
  assert.deepEqual(await b.take(3), ["start first", "start w", "start last"]);
  const in0 = sup.get("inner") as Supervisor;
  const w0 = in0.get("w") as ActorRef<Logged>;
  await crash(w0);
  assert.deepEqual(await b.take(2), ["stop w Error", "start w"]);
  await crash(await restarted(in0, "w", w0));
  // The inner supervisor gives up (stopping w), the outer one restarts it (one_for_one).
  assert.deepEqual(await b.take(2), ["stop w Error", "start w"]);
  assert.ok((await in0.join()) instanceof SupervisorError);
  const in1 = await restarted(sup, "inner", in0 as Supervisor);
  assert.ok(in1 !== in0 && in1.isAlive());
  const r = b.events.find((e) => e.type === "restarted");
  assert.ok(r?.type === "restarted" && r.id === "inner" && r.reason instanceof SupervisorError);
  await b.quiet();
  await sup.stop();
  assert.deepEqual(await b.take(3), [
    "stop last shutdown",
    "stop w shutdown",
    "stop first shutdown",
  ]);
});

Deno.test("plain Processes are supervised the same way", async () => {
  const events: SupervisorEvent[] = [];
  const sup = await new Supervisor({
    children: [
      // Exits with an error after 50 ms each time: restarted until the intensity is reached.
      { id: "flaky", start: () => new Process({ target: exitAfter, args: [50, 1] }) },
      // Ends normally: transient, so not restarted.
      {
        id: "once",
        restart: "transient",
        start: () => new Process({ target: exitAfter, args: [10, 0] }),
      },
      { id: "long", start: () => new Process({ target: sleepLong }) },
    ],
    maxRestarts: 3,
    withinMs: 10_000,
    onEvent: (e) => void events.push(e),
  }).start();
  const long = sup.get("long") as Process;
  const reason = await sup.join();
  assert.ok(reason instanceof SupervisorError);
  assert.equal(events.filter((e) => e.type === "restarted" && e.id === "flaky").length, 3);
  assert.equal(events.filter((e) => e.type === "restarted" && e.id === "once").length, 0);
  assert.equal(long.exitCode, -15); // stopped by the supervisor when it gave up
});

Deno.test("start failures: a child that cannot start stops the others and rejects", async () => {
  const b = bench();
  await assert.rejects(
    () =>
      new Supervisor({
        children: [
          b.child("a"),
          { id: "bad", start: () => spawn(Noisy, { args: ["bad", true] }) },
          b.child("never"),
        ],
      }).start(),
    RangeError,
  );
  assert.deepEqual(await b.take(2), ["start a", "stop a shutdown"]);
  assert.throws(() => new Supervisor({ children: [b.child("a"), b.child("a")] }), ValueError);
  assert.throws(
    () => new Supervisor({ strategy: "one_for_some" as "one_for_one", children: [] }),
    ValueError,
  );
  assert.throws(() => new Supervisor({ maxRestarts: -1, children: [] }), ValueError);
  const monitored = await spawn(Noisy, { args: ["m"] });
  const sup = await new Supervisor({ children: [{ id: "m", start: () => monitored }] }).start();
  const down = monitor(monitored);
  await sup.stop();
  assert.equal(await down, "shutdown");
});

Deno.test("Ctrl-C shuts a supervision tree down in order and exits promptly", async () => {
  const { code: status, out, ms } = await interrupt(FIXTURE, "tree");
  assert.ok(ms < 8000, `took ${ms} ms to exit`);
  assert.equal(status, 130);
  const stops = out.split("\n").filter((l) => l.startsWith("stop ") || l.startsWith("supervisor"));
  assert.deepEqual(stops, [
    "stop d shutdown",
    "stop c shutdown",
    "stop b shutdown",
    "supervisor inner stopped shutdown",
    "stop a shutdown",
    "supervisor root stopped shutdown",
  ]);
});

Deno.test("Ctrl-C in a program with its own SIGINT listener: the program's handler runs to its end", async () => {
  for (const mode of ["own", "node"]) {
    const r = await interrupt(SIGINT_PROGRAM, mode);
    // It saved for a second, asking a live actor, then stopped the tree and chose its exit code.
    assert.equal(r.code, 3, `${mode}: ${r.out}`);
    assert.match(r.out, /saving\nsaved \(pong a\)\nstop a shutdown\n/);
    assert.ok(r.ms >= 900, `${mode}: exited ${r.ms.toFixed(0)} ms after the signal`);
  }
  // A listener added and removed again leaves Ctrl-C to the library: the tree stops, 130.
  const removed = await interrupt(SIGINT_PROGRAM, "removed");
  assert.equal(removed.code, 130, removed.out);
  assert.match(removed.out, /stop a shutdown\n/);
  assert.doesNotMatch(removed.out, /never/);
});

Deno.test("get() returns nothing from a child's crash until it runs again; whenRunning() waits for that", async () => {
  const b = bench();
  const sup = await new Supervisor({ children: [b.child("a")] }).start();
  await b.take(1);
  const a0 = ref(sup, "a");
  assert.equal(await sup.whenRunning("a"), a0); // running: at once
  await crash(a0);
  // As soon as the caller hears of the crash, the stopped ref is no longer handed out.
  assert.equal(sup.get("a"), undefined);
  assert.equal(sup.whichChildren()[0].child, undefined);
  const a1 = await sup.whenRunning("a", { timeout: 10_000 }) as ActorRef<Logged>;
  assert.ok(!a1.equals(a0));
  assert.equal(await a1.call.label_(), "a");
  assert.equal(sup.get("a"), a1);
  assert.deepEqual(await b.take(2), ["stop a Error", "start a"]);
  await sup.stop();
  await b.take(1);
});

Deno.test("whenRunning() fails clearly for a child gone for good, a stopping supervisor, a timeout", async () => {
  const b = bench();
  const sup = await new Supervisor({
    children: [b.child("perm"), b.child("trans", "transient"), b.child("temp", "temporary")],
  }).start();
  await b.take(3);
  // Asked before the supervisor has handled the exits: the waits end when it has.
  const trans = ref(sup, "trans"), temp = ref(sup, "temp");
  await trans.stop("normal");
  await crash(temp);
  await assert.rejects(
    sup.whenRunning("trans"),
    (e: Error) =>
      e instanceof SupervisorError &&
      /child 'trans' will not run again: .*transient/.test(e.message),
  );
  await assert.rejects(sup.whenRunning("temp"), /child 'temp' will not run again: .*temporary/);
  await assert.rejects(sup.whenRunning("nope"), /not a child of this supervisor/);
  await assert.rejects(sup.whenRunning("perm", 5000 as unknown as undefined), TypeError);
  await assert.rejects(sup.whenRunning("perm", { timeout: -1 }), ValueError);
  await sup.stop();
  await b.take(1);
  await assert.rejects(sup.whenRunning("perm"), /will not run again: the supervisor is stopped/);
  // Not started yet: waits for the start, up to its timeout; a stop ends the wait.
  const idle = new Supervisor({ children: [b.child("x")] });
  const t0 = performance.now();
  await assert.rejects(idle.whenRunning("x", { timeout: 200 }), TimeoutError);
  assert.ok(performance.now() - t0 >= 150);
  const waiting = idle.whenRunning("x");
  const aborted = idle.whenRunning("x", { signal: AbortSignal.timeout(50) });
  await assert.rejects(aborted, (e: Error) => e.name === "TimeoutError");
  await idle.stop();
  await assert.rejects(waiting, /child 'x' will not run again: the supervisor stopped/);
});

Deno.test("a supervised crash is one line on stderr, once; verbose: true prints the full report", async () => {
  const line = await runProgram(CRASH_PROGRAM, ["line"]);
  assert.equal(line.code, 0, line.err);
  const lines = line.err.trim().split("\n");
  assert.deepEqual(lines, [
    "supervisor sup: child 'w' (actor worker) crashed: Error: w crashed on command",
    "supervisor sup: child 'w' (actor worker) crashed: Error: w crashed on command",
  ]);
  const verbose = await runProgram(CRASH_PROGRAM, ["verbose"]);
  assert.equal(verbose.code, 0, verbose.err);
  const reports = verbose.err.split("supervisor sup: child 'w' (actor worker) crashed:\n");
  assert.equal(reports.length, 3, verbose.err);
  for (const r of reports.slice(1)) {
    assert.match(r, /^Error: w crashed on command\n\s+at Logged\.crash/);
  }
  // No supervisor: the actor's own full report, as before.
  const alone = await runProgram(CRASH_PROGRAM, ["alone"]);
  assert.match(alone.err, /^actor Logged-\d+ crashed:\nError: a crashed on command\n\s+at /);
});
