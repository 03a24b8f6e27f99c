import assert from "node:assert/strict";
import {
  activeChildren,
  cpuCount,
  currentProcess,
  getPid,
  parentProcess,
  Process,
  ProcessError,
  SerializationError,
  ValueError,
} from "../mod.ts";
import {
  Counter,
  denoExit,
  exitWith,
  fail,
  fetchNet,
  noop,
  readFile,
  rejectLater,
  sleep,
  startChild,
  takeAny,
} from "./fixtures/proc_targets.ts";
import { StackToken } from "./fixtures/custom_kinds.ts";
import { NamedToken } from "./fixtures/named_kind.ts";
import { checkTokens } from "./fixtures/kind_targets.ts";
import { type ProgramResult, runProgram } from "./_program.ts";

const FIXTURE = new URL("./fixtures/proc_main.ts", import.meta.url).pathname;
const PERM_PROGRAM = new URL("./fixtures/perm_program.ts", import.meta.url).pathname;

async function run(
  target: (...a: never[]) => unknown,
  args: unknown[] = [],
  opts = {},
): Promise<Process> {
  const p = new Process({ target: target as (...a: unknown[]) => unknown, args, ...opts });
  p.start();
  await p.join();
  return p;
}

/** Runs the fixture program in a separate deno process and returns its output. */
function program(mode: string): Promise<ProgramResult> {
  return runProgram(FIXTURE, [mode]);
}

Deno.test("exit codes: 0, uncaught error 1, async rejection 1, exit(n), Deno.exit(n)", async () => {
  assert.equal((await run(noop)).exitCode, 0);
  assert.equal((await run(fail, ["boom"])).exitCode, 1);
  assert.equal((await run(rejectLater, ["late"])).exitCode, 1);
  assert.equal((await run(exitWith, [3])).exitCode, 3);
  assert.equal((await run(denoExit, [4])).exitCode, 4);
});

Deno.test("state before, during and after a run; pid, name, join timeout, terminate and kill", async () => {
  const p = new Process({ target: sleep, args: [30_000] });
  assert.equal(p.exitCode, null);
  assert.equal(p.pid, null);
  assert.equal(p.isAlive(), false);
  assert.match(p.name, /^Process-\d+$/);
  await assert.rejects(() => p.join(), ProcessError);
  p.start();
  assert.throws(() => p.start(), ProcessError);
  assert.ok(p.isAlive());
  assert.equal(typeof p.pid, "number");
  assert.notEqual(p.pid, getPid());
  const t0 = performance.now();
  await p.join(150);
  const waited = performance.now() - t0;
  assert.ok(waited >= 120, `join(150) returned after ${waited} ms`);
  assert.ok(p.isAlive(), "still running after a join timeout");
  assert.equal(p.exitCode, null);
  assert.throws(() => p.close(), ValueError);
  p.terminate();
  assert.equal(p.exitCode, -15);
  assert.equal(p.isAlive(), false);
  await p.join();
  p.close();
  assert.throws(() => p.start(), ValueError);

  const k = new Process({ target: sleep, args: [30_000], name: "victim" });
  k.start();
  assert.equal(k.name, "victim");
  k.kill();
  await k.join();
  assert.equal(k.exitCode, -9);
});

Deno.test("pids are unique and activeChildren lists running children only", async () => {
  const ps = Array.from({ length: 3 }, () => new Process({ target: sleep, args: [30_000] }));
  ps.forEach((p) => p.start());
  assert.equal(new Set(ps.map((p) => p.pid)).size, 3);
  assert.equal(activeChildren().length, 3);
  ps[0].terminate();
  assert.equal(activeChildren().length, 2);
  ps.forEach((p) => p.terminate());
  assert.equal(activeChildren().length, 0);
  await Promise.all(ps.map((p) => p.join()));
  assert.deepEqual(ps.map((p) => p.exitCode), [-15, -15, -15]);
});

Deno.test("the main process knows itself", () => {
  assert.equal(currentProcess().name, "MainProcess");
  assert.equal(currentProcess().pid, Deno.pid);
  assert.equal(parentProcess(), null);
  assert.ok(cpuCount() >= 1);
});

Deno.test("a subclass's fields are copied to the worker and run() runs there", async () => {
  const c = new Counter();
  c.count = 41;
  c.start();
  await c.join();
  assert.equal(c.exitCode, 0);
});

Deno.test("targets: anonymous and non-exported functions fail at start() with a clear error", () => {
  assert.throws(() => new Process({ target: () => 1 }).start(), (e: Error) => {
    assert.ok(e instanceof ProcessError);
    assert.match(e.message, /anonymous.*export/);
    return true;
  });
  function local(): void {}
  assert.throws(
    () => new Process({ target: local }).start(),
    /not exported.*export function local/,
  );
  assert.throws(() => new Process({ target: "./nohash.ts" }).start(), /#exportName/);
});

Deno.test("targets given as './module.ts#name' and as { target, module } run", async () => {
  const a = new Process({ target: "./fixtures/proc_targets.ts#noop" });
  a.start();
  await a.join();
  assert.equal(a.exitCode, 0);
  const b = new Process({
    target: exitWith,
    args: [7],
    module: new URL("./fixtures/proc_targets.ts", import.meta.url),
  });
  b.start();
  await b.join();
  assert.equal(b.exitCode, 7);
  const c = new Process({ target: "./fixtures/proc_targets.ts#missing" });
  c.start();
  await c.join();
  assert.equal(c.exitCode, 1);
});

Deno.test("arguments that cannot be sent throw SerializationError naming the path", () => {
  const p = new Process({ target: takeAny, args: [1, { callback: () => 1 }] });
  assert.throws(() => p.start(), (e: Error) => {
    assert.ok(e instanceof SerializationError);
    assert.equal(e.message, "args[1].callback: functions cannot be sent");
    return true;
  });
  class Point {
    x = 1;
  }
  assert.throws(
    () => new Process({ target: takeAny, args: [[new Point()]] }).start(),
    /args\[0\]\[0\]: an instance of Point/,
  );
  assert.throws(
    () => new Process({ target: takeAny, args: [new WeakMap()] }).start(),
    /args\[0\]: a WeakMap/,
  );
  assert.throws(
    () => new Process({ target: takeAny, args: [Symbol("s")] }).start(),
    /args\[0\]: symbols/,
  );
});

Deno.test("a daemon process cannot start children", async () => {
  const p = new Process({ target: startChild, daemon: true });
  p.start();
  await p.join();
  assert.equal(p.exitCode, 1);
});

Deno.test("permissions: a worker denied net fails inside with Deno's error; read still works", async () => {
  const denied = new Process({ target: fetchNet, permissions: { net: false } });
  denied.start();
  await denied.join();
  assert.equal(denied.exitCode, 1);
  const reader = new Process({ target: readFile, args: [FIXTURE], permissions: { net: false } });
  reader.start();
  await reader.join();
  assert.equal(reader.exitCode, 0);
});

Deno.test("program end: daemons are terminated, non-daemon children are awaited", async () => {
  const r = await program("daemon");
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /main-end/);
  assert.match(r.out, /non-daemon-done/);
  assert.doesNotMatch(r.out, /daemon-survived/);
});

Deno.test("targets defined in the main module and imported modules are found; values keep fidelity", async () => {
  const r = await program("main-target");
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /mainTask 42/);
  assert.match(r.out, /\{"m":\[\[1,2\]\]\}/);
  const n = await program("not-exported");
  assert.match(n.out, /ProcessError: target 'hidden' is not exported/);
});

Deno.test("no orphans: a grandchild dies with its terminated parent", async () => {
  const r = await program("orphan");
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /child-terminated/);
  assert.doesNotMatch(r.out, /grandchild-alive/);
});

Deno.test("an error in the target is printed on stderr with the process name", async () => {
  const r = await program("fail");
  assert.match(r.out, /code 1/);
  assert.match(r.err, /Process failer:\nError: kaboom\n\s+at fail/);
});

Deno.test("a process terminated while blocked in getSync stops silently when it wakes (a zombie, not a crash)", async () => {
  const r = await program("zombie");
  assert.match(r.out, /code -15/);
  assert.match(r.out, /zombie-done/);
  assert.doesNotMatch(r.err, /terminated|Process blocked/);
});

Deno.test("a module that starts a process at top level without the main guard fails fast, never forks forever", async () => {
  const r = await program("unguarded");
  assert.match(r.out, /child exit code 1/);
  assert.match(r.err, /if \(import\.meta\.main\)/);
});

Deno.test("a handle kind registered by a module the target's module does not import still reaches the worker", async () => {
  // One kind names its module (`HandleKind.module`), the other is found from the stack.
  const p = await run(checkTokens, [new StackToken(1), new NamedToken(2)]);
  assert.equal(p.exitCode, 0);
});

Deno.test("after close(), isAlive(), join(), terminate() and kill() throw ValueError; join(timeout) takes milliseconds", async () => {
  const p = new Process({ target: sleep, args: [30_000] });
  p.start();
  await assert.rejects(
    p.join({ timeout: 5 } as unknown as number),
    (e: Error) => e instanceof TypeError && /milliseconds/.test(e.message),
  );
  await assert.rejects(p.join("5" as unknown as number), TypeError);
  await assert.rejects(p.join(-1), ValueError);
  assert.ok(p.isAlive(), "a refused join() leaves the process alone");
  p.terminate();
  await p.join();
  p.close();
  p.close(); // idempotent
  const closed = (e: Error) => e instanceof ValueError && e.message === "process object is closed";
  assert.throws(() => p.isAlive(), closed);
  await assert.rejects(p.join(), closed);
  assert.throws(() => p.terminate(), closed);
  assert.throws(() => p.kill(), closed);
  assert.throws(() => p.start(), closed);
  // What it was still answers.
  assert.equal(p.exitCode, -15);
  assert.equal(typeof p.pid, "number");
  assert.match(String(p), /stopped exitcode=-15/);
  await p[Symbol.asyncDispose](); // disposing a closed process is a no-op
  assert.throws(() => new Process(5 as unknown as undefined), TypeError);
});

Deno.test("permissions: { read: false } and 'none' still start: the worker reads exactly denomp and its target's module", async () => {
  for (const permissions of [{ read: false }, "none"] as Deno.PermissionOptions[]) {
    assert.equal((await run(noop, [], { permissions })).exitCode, 0, JSON.stringify(permissions));
  }
  // Its own module is readable (it is loaded from there), a file beside it is not.
  const own = new URL("./fixtures/proc_targets.ts", import.meta.url).pathname;
  assert.equal((await run(readFile, [own], { permissions: { read: false } })).exitCode, 0);
  assert.equal((await run(readFile, [FIXTURE], { permissions: { read: false } })).exitCode, 1);
  assert.throws(
    () => new Process({ target: noop, permissions: "all" as Deno.PermissionOptions }).start(),
    /permissions must be "inherit", "none" or an object/,
  );
});

Deno.test("permissions without --unstable-worker-options: a ProcessError at start() naming the flag, not exit 70", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    // --no-config: the project's deno.json turns the flag on.
    args: ["run", "-A", "--no-config", PERM_PROGRAM],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.match(text, /^ProcessError: .*--unstable-worker-options/m);
  assert.match(text, /^plain 0$/m);
});

Deno.test("handles a process was given are freed once it has ended and the parent drops them", async () => {
  // The collector never runs at a worker's end: a child's references (a Value, a Lock, a Mailbox
  // in its arguments) were kept for good, 6 shared blocks per round here. Now they go as it ends,
  // whether its target returned (rounds 1 and 2) or threw (rounds 3 and 4).
  const program = new URL("./fixtures/handles_free_program.ts", import.meta.url).pathname;
  const r = await runProgram(program, [], { flags: ["--v8-flags=--expose-gc"] });
  assert.equal(r.code, 0, r.err);
  const { rounds } = JSON.parse(r.out.trim().split("\n").at(-1)!) as { rounds: number[] };
  assert.ok(rounds.every((n) => n <= rounds[0]), `blocks after each round: ${rounds.join(", ")}`);
});
