import assert from "node:assert/strict";
import { Process } from "../lib/process/process.ts";
import { Pool } from "../lib/pool/pool.ts";
import { SharedMemory } from "../lib/memory/shared_memory.ts";
import { ProcessPoolExecutor } from "../lib/futures/futures.ts";
import {
  BrokenPoolError,
  SerializationError,
  TimeoutError,
  ValueError,
} from "../lib/core/errors.ts";
import { __testHooks } from "../lib/process/os_spawn.ts";
import { gone, range, sleep, TIMED_OUT, until, within } from "./_helpers.ts";
import {
  boom,
  echo,
  hog,
  init,
  initTag,
  makeQueue,
  note,
  nothing,
  pid,
  pidAfter,
  quit,
  record,
  slow,
  spin,
  square,
  squareOrExit,
  squareOrWait,
  whoami,
  Writer,
} from "./fixtures/isolation_tasks.ts";

/** Milliseconds until `pid` is gone (polled), or Infinity after `limit` ms. */
async function msUntilGone(pid: number, limit = 5000): Promise<number> {
  const t0 = performance.now();
  return await until(() => gone(pid), limit) ? performance.now() - t0 : Infinity;
}

Deno.test("isolation process: the target runs in its own deno OS process; p.pid is its pid", async () => {
  const file = await Deno.makeTempFile();
  try {
    const p = new Process({ target: note, args: [file, "hi"], isolation: "process" });
    p.start();
    assert.notEqual(p.pid, Deno.pid);
    await p.join();
    assert.equal(p.exitCode, 0);
    // The child's Deno.pid and getPid() are both the OS pid the parent sees.
    assert.equal(await Deno.readTextFile(file), `hi ${p.pid} ${p.pid}`);
  } finally {
    await Deno.remove(file);
    await __testHooks.gone();
  }
});

Deno.test("isolation process: a Process subclass runs its run() there, with its own fields", async () => {
  const file = await Deno.makeTempFile();
  try {
    const w = new Writer({ isolation: "process" });
    w.path = file;
    w.text = "from a subclass";
    w.start();
    await w.join();
    assert.equal(w.exitCode, 0);
    assert.equal(await Deno.readTextFile(file), `from a subclass ${w.pid}`);
  } finally {
    await Deno.remove(file);
    await __testHooks.gone();
  }
});

Deno.test("isolation process: exit codes (exit(n), Deno.exit(n), an uncaught error)", async () => {
  const codes = [];
  // deno-lint-ignore no-explicit-any
  const runs: [(...a: any[]) => unknown, unknown[]][] = [[quit, [4]], [quit, [5, true]], [
    boom,
    ["x"],
  ]];
  for (const [target, args] of runs) {
    const p = new Process({ target, args, isolation: "process" });
    p.start();
    await p.join();
    codes.push(p.exitCode);
  }
  assert.deepEqual(codes, [4, 5, 1]);
  await __testHooks.gone();
});

Deno.test("isolation process: terminate() and kill() stop a runaway loop; its OS process is gone within 1 s", async () => {
  for (const [stop, code] of [["terminate", -15], ["kill", -9]] as const) {
    const p = new Process({ target: spin, isolation: "process" });
    p.start();
    await sleep(300);
    assert.ok(!gone(p.pid!));
    p[stop]();
    assert.equal(p.exitCode, code);
    assert.ok((await msUntilGone(p.pid!)) < 1000, `${stop}: the child still runs after 1 s`);
    await p.join();
  }
  await __testHooks.gone();
});

Deno.test("isolation process: maxMemoryMb caps the child's heap: it ends non-zero, the parent lives on", async () => {
  const p = new Process({ target: hog, isolation: "process", maxMemoryMb: 128 });
  p.start();
  await p.join();
  assert.ok(p.exitCode !== 0 && p.exitCode !== null, `exit code ${p.exitCode}`);
  await __testHooks.gone();
});

Deno.test("isolation options: bad values are a ValueError naming why", () => {
  assert.throws(
    () => new Process({ target: spin, maxMemoryMb: 128 }),
    (e) => e instanceof ValueError && /maxMemoryMb needs isolation "process"/.test(e.message),
  );
  assert.throws(
    () => new Pool({ processes: 1, maxMemoryMb: 128 }),
    (e) => e instanceof ValueError && /maxMemoryMb needs isolation "process"/.test(e.message),
  );
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => new Process({ target: spin, isolation: "fork" as any }),
    (e) => e instanceof ValueError && /isolation must be "thread" or "process"/.test(e.message),
  );
});

Deno.test("isolation process: a SharedMemory in the arguments is refused at start(), naming it and why", async () => {
  const shm = new SharedMemory({ size: 16 });
  const p = new Process({
    target: note,
    args: [{ nested: [shm] } as unknown as string, "x"],
    isolation: "process",
  });
  assert.throws(
    () => p.start(),
    (e) =>
      e instanceof SerializationError &&
      /args\[0\]\.nested\[0\]: a SharedMemory cannot be sent/.test(e.message) &&
      /isolation "process"/.test(e.message) && /another OS process cannot map/.test(e.message),
  );
  assert.equal(p.pid, null);
  shm.close();
  await __testHooks.gone();
});

Deno.test("isolation process pool: results, batching of a big map, initializer", async () => {
  const pool = new Pool({
    processes: 2,
    isolation: "process",
    initializer: init,
    initargs: ["tagged"],
  });
  try {
    assert.deepEqual(await pool.map(square, range(10)), range(10).map((x) => x * x));
    const big = await pool.map(square, range(20_000));
    assert.equal(big[19_999], 19_999 ** 2);
    assert.equal(await pool.apply(initTag), "tagged");
    // Values and errors cross with the codec, as for threads.
    const m = new Map([[1, { when: new Date(0), tags: new Set(["a"]) }]]);
    assert.deepEqual(await pool.apply(echo, [m]), m);
    await assert.rejects(pool.apply(boom, ["remote failure"]), /remote failure/);
    // The pool's other ways of submitting go through the same rings.
    assert.deepEqual(await pool.starmap(slow, [[1, 0], [2, 0]]), [1, 2]);
    const seen = [];
    for await (const y of pool.imap(square, range(50), 7)) seen.push(y);
    assert.deepEqual(seen, range(50).map((x) => x * x));
    const unordered = [];
    for await (const y of pool.imapUnordered(square, range(20))) unordered.push(y);
    assert.deepEqual(unordered.sort((a, b) => a - b), range(20).map((x) => x * x));
    // Messages larger than a ring's frame are streamed, both ways.
    const bytes = new Uint8Array(700_000).map((_, i) => i % 251);
    const [a, b] = await Promise.all([pool.apply(echo, [bytes]), pool.apply(echo, [bytes])]);
    assert.deepEqual(a, bytes);
    assert.deepEqual(b, bytes);
    const pids = new Set(await Promise.all(range(4).map(() => pool.apply(pidAfter, [100]))));
    assert.ok(!pids.has(Deno.pid));
  } finally {
    await endPool(pool);
  }
});

Deno.test("isolation process pool: tasks sent while a child is still starting are kept for it", async () => {
  // The child waits 300 ms between its start frame and listening for tasks; the tasks (and the
  // function's definition) arrive in that window.
  Deno.env.set("DENOMP_TEST_CHILD_DELAY_MS", "300");
  const pool = new Pool({ processes: 1, isolation: "process" });
  Deno.env.delete("DENOMP_TEST_CHILD_DELAY_MS");
  try {
    const r = await within(pool.map(square, range(5), 1), 10_000);
    assert.notEqual(r, TIMED_OUT, "tasks sent early were lost");
    assert.deepEqual(r, [0, 1, 4, 9, 16]);
  } finally {
    await endPool(pool);
  }
});

/** Of 300 settled tasks, only task 150 failed, with a BrokenPoolError matching `why`. */
function onlyTask150Failed(settled: PromiseSettledResult<number>[], why: RegExp): void {
  const failed = settled.flatMap((r, i) => r.status === "rejected" ? [[i, r.reason]] : []);
  assert.equal(failed.length, 1);
  assert.equal(failed[0][0], 150);
  assert.ok(failed[0][1] instanceof BrokenPoolError);
  assert.match(String(failed[0][1]), why);
  settled.forEach((r, i) =>
    i !== 150 && assert.equal((r as PromiseFulfilledResult<number>).value, i * i)
  );
}

/** Ends an isolated pool and waits until its OS processes are gone. */
async function endPool(pool: Pool): Promise<void> {
  pool.terminate();
  await pool.join();
  await __testHooks.gone();
}

Deno.test("isolation process pool: a child calling Deno.exit fails only its task (300 tasks, 299 results)", async () => {
  const pool = new Pool({ processes: 2, isolation: "process" });
  try {
    const settled = await Promise.allSettled(
      range(300).map((i) => pool.apply(squareOrExit, [i, 150])),
    );
    onlyTask150Failed(settled, /exited with code 3 while running this task/);
  } finally {
    await endPool(pool);
  }
});

Deno.test("isolation process pool: a child killed with SIGKILL from outside fails only its task (299 results)", async () => {
  const file = await Deno.makeTempFile();
  const pool = new Pool({ processes: 2, isolation: "process" });
  try {
    const all = range(300).map((i) => pool.apply(squareOrWait, [i, 150, file]));
    let victim = 0;
    while (!victim) {
      await sleep(20);
      victim = Number(await Deno.readTextFile(file)) || 0;
    }
    Deno.kill(victim, "SIGKILL");
    onlyTask150Failed(
      await Promise.allSettled(all),
      /exited with code -9 while running this task \(killed by SIGKILL\)/,
    );
  } finally {
    pool.terminate();
    await pool.join();
    await Deno.remove(file);
    await __testHooks.gone();
  }
});

Deno.test("isolation process pool: a runaway task's timeout stops its OS process within 1 s; the next task runs", async () => {
  const pool = new Pool({ processes: 1, isolation: "process" });
  try {
    const first = await pool.apply(pid);
    await assert.rejects(pool.apply(spin, [], { timeout: 300 }), TimeoutError);
    assert.ok((await msUntilGone(first)) < 1000, "the runaway child still runs after 1 s");
    assert.equal(await pool.apply(square, [7]), 49);
    assert.notEqual(await pool.apply(pid), first);
  } finally {
    await endPool(pool);
  }
});

Deno.test("isolation process pool: a task's signal stops its OS process within 1 s; the pool goes on", async () => {
  const pool = new Pool({ processes: 1, isolation: "process" });
  try {
    const first = await pool.apply(pid);
    const ac = new AbortController();
    const running = pool.apply(spin, [], { signal: ac.signal });
    await sleep(300);
    ac.abort(new Error("stop it"));
    await assert.rejects(running, /stop it/);
    assert.ok((await msUntilGone(first)) < 1000, "the aborted task's child still runs after 1 s");
    assert.equal(await pool.apply(square, [6]), 36);
  } finally {
    await endPool(pool);
  }
});

Deno.test("isolation process pool: a task queued behind a slow one runs once (no task is taken back from a child)", async () => {
  const file = await Deno.makeTempFile();
  const pool = new Pool({ processes: 2, isolation: "process" });
  try {
    await pool.whenReady();
    // Fast tasks first, so that each child is given many at a time; then slow ones with fast
    // ones queued behind them while the other child runs dry.
    await Promise.all(range(200).map((i) => pool.apply(square, [i])));
    const all = range(60).map((i) => pool.apply(record, [file, i, i % 20 === 0 ? 300 : 0]));
    assert.deepEqual(await Promise.all(all), range(60));
    const lines = (await Deno.readTextFile(file)).trim().split("\n").map(Number);
    assert.deepEqual(lines.sort((a, b) => a - b), range(60), "a task ran twice or not at all");
  } finally {
    pool.terminate();
    await pool.join();
    await Deno.remove(file);
    await __testHooks.gone();
  }
});

Deno.test("isolation process pool: tasks withdrawn while they wait in a child are skipped there", async () => {
  const file = await Deno.makeTempFile();
  const pool = new Pool({ processes: 1, isolation: "process" });
  try {
    // Fast tasks first, so that the child is given many at a time.
    await Promise.all(range(300).map((i) => pool.apply(square, [i])));
    const child = await pool.apply(pid);
    const ac = new AbortController();
    const slowOne = pool.apply(record, [file, -1, 300]);
    const rest = range(10).map((i) =>
      pool.apply(record, [file, i], i % 2 ? { signal: ac.signal } : {})
    );
    await sleep(100);
    ac.abort(new Error("withdrawn"));
    const settled = await Promise.allSettled([slowOne, ...rest]);
    assert.deepEqual(
      settled.map((r) => r.status),
      ["fulfilled", ...range(10).map((i) => i % 2 ? "rejected" : "fulfilled")],
    );
    const lines = (await Deno.readTextFile(file)).trim().split("\n").map(Number);
    assert.deepEqual(lines, [-1, 0, 2, 4, 6, 8], "a withdrawn task ran in the child");
    assert.equal(await pool.apply(pid), child, "the child was replaced");
  } finally {
    pool.terminate();
    await pool.join();
    await Deno.remove(file);
    await __testHooks.gone();
  }
});

Deno.test("isolation process pool: running out of memory fails that task alone, naming the limit", async () => {
  const pool = new Pool({ processes: 1, isolation: "process", maxMemoryMb: 128 });
  try {
    await assert.rejects(
      pool.apply(hog),
      (e) =>
        e instanceof BrokenPoolError && /ran out of memory: maxMemoryMb is 128/.test(e.message),
    );
    assert.equal(await pool.apply(square, [5]), 25);
  } finally {
    await endPool(pool);
  }
});

Deno.test("isolation process pool: maxTasksPerChild replaces the OS process; a handle result is refused", async () => {
  const pool = new Pool({ processes: 1, isolation: "process", maxTasksPerChild: 2 });
  try {
    const pids = [];
    for (let i = 0; i < 4; i++) pids.push(await pool.apply(pid));
    assert.equal(new Set(pids).size, 2);
    assert.equal(await pool.apply(slow, [3, 1]), 3);
    await assert.rejects(
      pool.apply(makeQueue),
      (e) => e instanceof SerializationError && /a handle cannot be sent back/.test(e.message),
    );
    assert.equal(await pool.apply(slow, [4, 1]), 4);
  } finally {
    await endPool(pool);
  }
});

Deno.test("isolation process: a parent killed with SIGKILL leaves no child process behind", async () => {
  const parent = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-worker-options",
      new URL("./fixtures/isolation_orphan.ts", import.meta.url).pathname,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = parent.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  const pids: number[] = JSON.parse(text);
  assert.equal(pids.length, 3);
  parent.kill("SIGKILL");
  await parent.status;
  await reader.cancel();
  for (const p of pids) {
    assert.ok((await msUntilGone(p, 3000)) < 3000, `child ${p} outlived its parent`);
  }
});

/** Runs `deno run -A <flags> file` in `cwd`; its stdout once the first line is printed, and the child. */
async function startProgram(file: string, flags: string[] = [], cwd?: string) {
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-worker-options", ...flags, file],
    stdout: "piped",
    stderr: "inherit",
    cwd,
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  return { proc, reader, line: text.split("\n")[0] };
}

Deno.test("isolation process: the child knows its name, daemon flag, parent; denoFlags are added", async () => {
  const file = await Deno.makeTempFile();
  try {
    const p = new Process({
      target: whoami,
      args: [file],
      name: "worker-x",
      isolation: "process",
      denoFlags: ["--location=https://example.com/app/"],
    });
    p.start();
    await p.join();
    assert.equal(p.exitCode, 0);
    const me = JSON.parse(await Deno.readTextFile(file));
    assert.deepEqual(me, {
      name: "worker-x",
      daemon: false,
      pid: p.pid,
      parentPid: Deno.pid,
      location: "https://example.com/app/",
    });
  } finally {
    await Deno.remove(file);
    await __testHooks.gone();
  }
});

Deno.test("isolation process: permissions map to the child's flags (named as given, the rest inherited)", async () => {
  const file = await Deno.makeTempFile();
  try {
    const run = async (permissions?: Deno.PermissionOptions) => {
      const p = new Process({ target: note, args: [file, "p"], isolation: "process", permissions });
      p.start();
      await p.join();
      return p.exitCode;
    };
    assert.equal(await run(), 0);
    assert.equal(await run({ write: false }), 1);
    assert.equal(await run({ net: false }), 0);
    // With no permission at all, the child still boots (the reads it needs are granted).
    const bare = new Process({ target: nothing, isolation: "process", permissions: "none" });
    bare.start();
    await bare.join();
    assert.equal(bare.exitCode, 0);
  } finally {
    await Deno.remove(file);
    await __testHooks.gone();
  }
});

Deno.test("isolation process: the child runs with the parent's configuration (--config and its import map)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lib = new URL("../mod.ts", import.meta.url).href;
    await Deno.mkdir(`${dir}/aliased`);
    await Deno.writeTextFile(
      `${dir}/conf.json`,
      JSON.stringify({ imports: { "isolation-alias/": "./aliased/" } }),
    );
    await Deno.writeTextFile(
      `${dir}/aliased/helper.ts`,
      `export const word = "aliased";\n`,
    );
    // The target's module reaches a module only through the import map.
    await Deno.writeTextFile(
      `${dir}/task.ts`,
      `import { word } from "isolation-alias/helper.ts";
export function aliased(path: string) { Deno.writeTextFileSync(path, word); }
`,
    );
    await Deno.writeTextFile(
      `${dir}/main.ts`,
      `import { Process } from "${lib}";
import { aliased } from "./task.ts";
if (import.meta.main) {
  const p = new Process({ target: aliased, args: ["${dir}/out.txt"], isolation: "process" });
  p.start();
  await p.join();
  console.log(p.exitCode);
}
`,
    );
    // Run from another folder: the child finds the configuration only through the parent's flag.
    const { proc, reader, line } = await startProgram(`${dir}/main.ts`, [
      "--config",
      `${dir}/conf.json`,
    ], "/");
    await reader.cancel();
    await proc.status;
    assert.equal(line, "0");
    assert.equal(await Deno.readTextFile(`${dir}/out.txt`), "aliased");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("isolation process: a program's end does not wait for a daemon child, and ends it", async () => {
  const { proc, reader, line } = await startProgram(
    new URL("./fixtures/isolation_daemon.ts", import.meta.url).pathname,
  );
  const [child] = JSON.parse(line) as number[];
  await reader.cancel();
  const t0 = performance.now();
  const status = await proc.status;
  assert.equal(status.code, 0);
  assert.ok(performance.now() - t0 < 5000);
  assert.ok((await msUntilGone(child, 3000)) < 3000, "the daemon child outlived the program");
});

Deno.test("isolation process: ProcessPoolExecutor passes it to its pool", async () => {
  const ex = new ProcessPoolExecutor({ maxWorkers: 1, isolation: "process" });
  try {
    assert.equal(await ex.submit(square, 9).result(), 81);
    assert.notEqual(await ex.submit(pid).result(), Deno.pid);
  } finally {
    await ex.shutdown();
    await __testHooks.gone();
  }
});

Deno.test("isolation process: a program without --allow-run gets a ProcessError saying what it needs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lib = new URL("../mod.ts", import.meta.url).href;
    const tasks = new URL("./fixtures/isolation_tasks.ts", import.meta.url).href;
    await Deno.writeTextFile(
      `${dir}/main.ts`,
      `import { Process } from "${lib}";
import { nothing } from "${tasks}";
if (import.meta.main) {
  try {
    new Process({ target: nothing, isolation: "process" }).start();
    console.log("started");
  } catch (e) {
    console.log(String(e));
  }
}
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--allow-read", `${dir}/main.ts`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.match(text, /ProcessError: cannot start a child with isolation "process"/);
    assert.match(text, /--allow-run/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("isolation process: a program's end waits for its non-daemon children, as with threads", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lib = new URL("../mod.ts", import.meta.url).href;
    const tasks = new URL("./fixtures/isolation_tasks.ts", import.meta.url).href;
    await Deno.writeTextFile(
      `${dir}/main.ts`,
      `import { Process } from "${lib}";
import { record } from "${tasks}";
if (import.meta.main) {
  new Process({ target: record, args: ["${dir}/out.txt", 7, 400], isolation: "process" }).start();
}
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${dir}/main.ts`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0);
    assert.equal(await Deno.readTextFile(`${dir}/out.txt`), "7\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("isolation process: cancelling many calls already in a child (more than its cancel slots) runs none twice", async () => {
  const file = await Deno.makeTempFile();
  const ex = new ProcessPoolExecutor({ maxWorkers: 1, isolation: "process" });
  try {
    // Fast calls first: the pool then gives its worker many calls at a time, so the ones behind
    // the slow call are in the child when half of them are cancelled.
    await Promise.all(range(300).map((i) => ex.submit(square, i).result()));
    const first = ex.submit(record, file, -1, 300);
    const rest = range(100).map((i) => ex.submit(record, file, i));
    await sleep(100);
    for (let i = 0; i < 100; i += 2) rest[i].cancel();
    for (let i = 1; i < 100; i += 2) assert.equal(await rest[i].result(), i);
    assert.equal(await first.result(), -1);
    const lines = (await Deno.readTextFile(file)).trim().split("\n").map(Number);
    assert.equal(new Set(lines).size, lines.length, "a call ran twice");
  } finally {
    await ex.shutdown();
    await Deno.remove(file);
    await __testHooks.gone();
  }
});
