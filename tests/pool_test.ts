import assert from "node:assert/strict";
import { activeChildren, type Process } from "../lib/process/process.ts";
import { Pool } from "../lib/pool/pool.ts";
import { __testHooks as sparesHooks, setSpares, spareOptions } from "../lib/core/spares.ts";
import { AsyncResult } from "../lib/pool/async_result.ts";
import { Queue } from "../lib/queues/queues.ts";
import {
  BrokenPoolError,
  ProcessError,
  RemoteError,
  SerializationError,
  TimeoutError,
  ValueError,
} from "../lib/core/errors.ts";
import {
  add,
  badInit,
  byteLength,
  exitNow,
  fail,
  failAsync,
  failCustom,
  identity,
  init,
  initState,
  makeBytes,
  pid,
  pidAfter,
  putOn,
  sleepMs,
  spin,
  square,
  squareLater,
  squareUnless13,
  throwLater,
  timerReadMs,
  unsendableResult,
} from "./fixtures/pool_tasks.ts";

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The pool workers alive now (every other test's pool is terminated by then). */
function workers(): Process[] {
  return activeChildren().filter((p) => p.name.startsWith("PoolWorker-"));
}

/** Waits until `cond()` holds (polling), failing after `ms`. */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error("condition not met in time");
    await delay(5);
  }
}

Deno.test("apply, applyAsync, map, starmap and their async forms compute the right values", async () => {
  await using pool = new Pool({ processes: 2 });
  const nine: number = await pool.apply(square, [3]);
  assert.equal(nine, 9);
  assert.equal(await pool.apply(squareLater, [4]), 16); // an async task is awaited in the worker
  assert.equal(await pool.applyAsync(add, [2, 3]), 5); // thenable
  assert.deepEqual(await pool.map(square, range(100)), range(100).map((x) => x * x));
  assert.deepEqual(await pool.map(square, range(10), 3), range(10).map((x) => x * x));
  assert.deepEqual(await pool.map(squareLater, [1, 2, 3], { chunksize: 1 }), [1, 4, 9]);
  assert.deepEqual(await pool.map(square, new Set([5, 6])), [25, 36]); // any iterable
  async function* gen() {
    yield 7;
    yield 8;
  }
  assert.deepEqual(await pool.map(square, gen()), [49, 64]); // and async iterables
  assert.deepEqual(await pool.starmap(add, [[1, 2], [3, 4]]), [3, 7]);
  // Chunks far larger than a ring frame are streamed both ways; values of any kind.
  const big = range(300_000);
  assert.deepEqual(await pool.map(square, big, 100_000), big.map((x) => x * x));
  const words = range(2000).map((i) => ({ w: "w" + i, n: -0 }));
  assert.deepEqual(await pool.map(identity, words), words);
  assert.ok(Object.is((await pool.map(identity, [-0, NaN, 1.5]))[0], -0));
  assert.deepEqual(await pool.mapAsync(square, [2, 3]).get(), [4, 9]);
  assert.deepEqual(await pool.starmapAsync(add, [[5, 5]]), [10]);
  // Values keep structured-clone fidelity both ways.
  const v = { m: new Map([[1, new Date(5)]]), big: 2n ** 70n, s: new Set(["a"]) };
  assert.deepEqual(await pool.apply(identity, [v]), v);
  // Empty inputs give [] (and run nothing).
  assert.deepEqual(await pool.map(square, []), []);
  assert.deepEqual(await pool.starmap(add, []), []);
  assert.deepEqual(await pool.mapAsync(square, []).get(), []);
  const none: number[] = [];
  for await (const x of pool.imap(square, [])) none.push(x);
  assert.deepEqual(none, []);
});

Deno.test("an idle pool burns no CPU", async () => {
  if (Deno.build.os !== "linux") return;
  await using pool = new Pool({ processes: 2 });
  await pool.map(square, range(1000));
  await delay(50);
  // Spares are made and boot once (~30 ms of CPU, ~1 s after starts pause): not the pool's.
  const settling = () => sparesHooks.asked() > 0 || sparesHooks.live() < spareOptions().count;
  for (let i = 0; i < 500 && settling(); i++) await delay(10);
  const cpu = () => {
    const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
    return Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks (10 ms)
  };
  // The CPU count is the whole process's: work left over from earlier tests (a worker still
  // unwinding) can spoil one window, while a spinning pool would spoil every one (~100 ticks).
  let ticks = Infinity;
  for (let w = 0; w < 3 && ticks > 5; w++) {
    const c0 = cpu();
    await delay(500);
    ticks = cpu() - c0;
  }
  assert.ok(ticks <= 5, `${ticks * 10} ms of CPU in 500 ms of idling, three times over`);
});

Deno.test("a fresh pool worker has set Deno's timers up before it says it is ready", async () => {
  // Deno loads its timers at a worker's first use of one (~3-8 ms here), and the task loop's
  // first wait uses one: done after "ready", that landed in the first map. Fresh workers only (a
  // spare has run its warm-up). The first task reads `setInterval`: ~0.005 ms once loaded. The
  // median of three pools, so that one descheduling cannot fail it (nor one worker that had
  // happened to wait on something before it was ready, and loaded them then, pass it).
  const spares = spareOptions();
  setSpares({ count: 0 });
  try {
    const ms: number[] = [];
    for (let i = 0; i < 3; i++) {
      await using pool = new Pool({ processes: 1 });
      await pool.whenReady();
      ms.push(await pool.apply(timerReadMs));
    }
    const median = ms.sort((a, b) => a - b)[1];
    assert.ok(median < 0.5, `the first task's read of setInterval took ${ms.join(", ")} ms`);
  } finally {
    setSpares(spares);
  }
});

Deno.test("handles in a task's arguments (a Queue) arrive and work in the worker", async () => {
  await using pool = new Pool({ processes: 2 });
  await pool.whenReady(); // before the workers have loaded the rest of the library
  const q = new Queue<number>();
  assert.equal(await pool.apply(putOn, [q, 7]), 7);
  assert.deepEqual(await pool.starmap(putOn, [[q, 8], [q, 9]]), [8, 9]);
  const got = [await q.get({ timeout: 5000 }), await q.get({ timeout: 5000 })];
  got.push(await q.get({ timeout: 5000 }));
  assert.deepEqual(got.sort(), [7, 8, 9]);
});

Deno.test("AsyncResult: get(timeout), wait, ready, successful, callbacks", async () => {
  await using pool = new Pool({ processes: 1 });
  const slow = pool.applyAsync(sleepMs, [300]);
  assert.ok(slow instanceof AsyncResult);
  assert.equal(slow.ready(), false);
  assert.throws(() => slow.successful(), ValueError); // as in Python: not ready
  await assert.rejects(slow.get(20), TimeoutError);
  await slow.wait(10);
  assert.equal(slow.ready(), false);
  assert.equal(await slow.get(), "slept"); // the task went on after the timeout
  assert.equal(slow.ready(), true);
  assert.equal(slow.successful(), true);

  const seen: unknown[] = [];
  const ok = pool.applyAsync(square, [6], { callback: (v) => seen.push(["ok", v]) });
  const bad = pool.applyAsync(fail, ["no"], { errorCallback: (e) => seen.push(["err", e]) });
  await ok.wait();
  await bad.wait(); // wait never throws the task's error
  assert.equal(bad.successful(), false);
  await assert.rejects(bad.get(), TypeError);
  assert.deepEqual(seen[0], ["ok", 36]);
  assert.equal((seen[1] as [string, Error])[1].message, "no");
  const mr = pool.mapAsync(square, [1, 2], { callback: (xs) => seen.push(xs) });
  await mr;
  assert.deepEqual(seen[2], [1, 4]);
});

function local(): number {
  return 1;
}

Deno.test("misuse: ValueError for bad sizes, chunksize, use after close, join while running", async () => {
  assert.throws(() => new Pool({ processes: 0 }), ValueError);
  assert.throws(() => new Pool({ processes: -1 }), ValueError);
  assert.throws(() => new Pool({ maxTasksPerChild: 0 }), ValueError);
  assert.throws(() => new Pool({ maxTasksPerChild: 1.5 }), ValueError);
  const pool = new Pool({ processes: 1 });
  try {
    await assert.rejects(pool.join(), /Pool is still running/);
    await assert.rejects(pool.map(square, [1], 0), ValueError);
    // Functions a worker cannot import are refused at once, with the reason.
    assert.throws(() => pool.applyAsync(() => 1, []), ProcessError);
    assert.throws(() => pool.applyAsync(local, []), /not exported/);
    pool.close();
    assert.throws(() => pool.applyAsync(square, [1]), /Pool not running/);
    await assert.rejects(pool.apply(square, [1]), ValueError);
    await assert.rejects(pool.map(square, [1]), ValueError);
    assert.throws(() => pool.imap(square, [1]), ValueError);
    await pool.join();
  } finally {
    pool.terminate();
    await pool.join();
  }
});

Deno.test("task errors reject with the same name and message, the remote stack in .stack and .cause", async () => {
  await using pool = new Pool({ processes: 2 });
  const e1 = await pool.apply(fail, ["bad input"]).catch((e) => e);
  assert.ok(e1 instanceof TypeError);
  assert.equal(e1.name, "TypeError");
  assert.equal(e1.message, "bad input");
  assert.match(e1.stack!, /pool_tasks\.ts/); // where it was thrown, in the worker
  assert.ok(e1.cause instanceof RemoteError);
  assert.equal(e1.cause.remoteName, "TypeError");
  assert.match(e1.cause.remoteStack, /at fail .*pool_tasks\.ts/);

  const e2 = await pool.apply(failCustom, ["custom"]).catch((e) => e);
  assert.equal(e2.name, "CustomError");
  assert.equal(e2.message, "custom");
  assert.equal(e2.code, 42); // own fields travel too
  const e3 = await pool.apply(failAsync, ["later"]).catch((e) => e);
  assert.ok(e3 instanceof RangeError);
  assert.equal(e3.message, "later");
  // In a map, the first failing item rejects the whole map.
  await assert.rejects(pool.map(squareUnless13, range(30), 4), /unlucky 13/);
  const seen: number[] = [];
  await assert.rejects(async () => {
    for await (const y of pool.imap(squareUnless13, range(30))) seen.push(y);
  }, /unlucky 13/);
  assert.deepEqual(seen, range(13).map((x) => x * x)); // everything before it, in order
  assert.equal(await pool.apply(square, [2]), 4);
});

Deno.test("an error thrown by the input iterable surfaces; the pool stays usable", async () => {
  await using pool = new Pool({ processes: 2 });
  function* broken() {
    yield 1;
    yield 2;
    throw new SyntaxError("bad input stream");
  }
  assert.throws(() => pool.mapAsync(square, broken()), SyntaxError); // read at once, as in Python
  await assert.rejects(pool.map(square, broken()), SyntaxError);
  await assert.rejects(pool.starmap(add, broken() as Iterable<never>), SyntaxError);
  async function* brokenAsync() {
    yield 1;
    throw new SyntaxError("bad async stream");
  }
  await assert.rejects(pool.map(square, brokenAsync()), /bad async stream/);
  const got: number[] = [];
  await assert.rejects(async () => {
    for await (const y of pool.imap(square, broken())) got.push(y);
  }, SyntaxError);
  assert.deepEqual(got, [1, 4]); // results before the failure are yielded first
  assert.deepEqual(await pool.map(square, [3, 4]), [9, 16]);
});

Deno.test("unsendable arguments and results reject with SerializationError; no worker is lost", async () => {
  await using pool = new Pool({ processes: 2 });
  await pool.whenReady();
  const before = workers().map((p) => p.pid).sort();
  const e1 = await pool.apply(identity, [{ cb: () => 1 }]).catch((e) => e);
  assert.ok(e1 instanceof SerializationError);
  assert.equal(e1.message, "args[0].cb: functions cannot be sent");
  const e2 = await pool.map(identity, [1, 2, 3, Symbol("s")], 2).catch((e) => e);
  assert.ok(e2 instanceof SerializationError);
  assert.equal(e2.message, "iterable[3]: symbols cannot be sent");
  const e3 = await pool.apply(unsendableResult, []).catch((e) => e);
  assert.ok(e3 instanceof SerializationError);
  assert.equal(e3.message, "result.cb: functions cannot be sent");
  const e4 = await pool.map(identity, [1, 2, 3, 4, 5].map((i) => i === 5 ? () => i : i))
    .catch((e) => e);
  assert.ok(e4 instanceof SerializationError); // here the argument is the function
  // What is set on the iterable array itself is not an item: not sent, and no error.
  const words = Object.assign(["a", "b"], { f: () => 0 });
  assert.deepEqual(await pool.map(identity, words, 2), ["a", "b"]);
  // A callback that submits tasks while the pool is writing a batch (re-entrant dispatch).
  const extra: AsyncResult<number>[] = [];
  const first = pool.applyAsync(square, [2]);
  const bad = pool.applyAsync(identity, [Symbol("x")], {
    errorCallback: () => {
      for (let i = 0; i < 64; i++) extra.push(pool.applyAsync(square, [i]));
    },
  });
  const last = pool.applyAsync(square, [3]);
  await assert.rejects(bad.get(), SerializationError);
  assert.deepEqual([await first, await last], [4, 9]);
  assert.equal(extra.length, 64);
  assert.deepEqual(await Promise.all(extra), range(64).map((x) => x * x));
  assert.equal(await pool.apply(square, [5]), 25);
  assert.deepEqual(workers().map((p) => p.pid).sort(), before);
});

Deno.test("a worker that dies mid-task fails exactly that task with BrokenPoolError; it is replaced", async () => {
  await using pool = new Pool({ processes: 2 });
  await pool.whenReady();
  const before = new Set(workers().map((p) => p.pid));
  const others = range(40).map((i) => pool.applyAsync(pidAfter, [2, i]));
  const dying = pool.applyAsync(exitNow, [3]);
  const more = range(40).map((i) => pool.applyAsync(pidAfter, [2, 100 + i]));
  const err = await dying.get().catch((e) => e);
  assert.ok(err instanceof BrokenPoolError, String(err));
  assert.match(err.message, /pool worker 'PoolWorker-\d+' \(pid \d+\) exited with code 3/);
  for (const [i, r] of [...others, ...more].entries()) {
    const [, x] = await r.get(10_000);
    assert.equal(x, i < 40 ? i : 60 + i); // every other task completed
  }
  await until(() => workers().length === 2);
  const after = workers().map((p) => p.pid);
  assert.equal(after.filter((p) => !before.has(p)).length, 1); // one replacement
  assert.equal(await pool.apply(square, [9]), 81);
});

Deno.test("a worker terminated from outside fails its running task with its exit code", async () => {
  await using pool = new Pool({ processes: 1 });
  const victim = await pool.apply(pid, []);
  const running = pool.applyAsync(sleepMs, [30_000]);
  const queued = pool.applyAsync(square, [12]); // in the worker's ring, not started
  await delay(100);
  workers().find((p) => p.pid === victim)!.terminate();
  const err = await running.get().catch((e) => e);
  assert.ok(err instanceof BrokenPoolError);
  assert.match(err.message, /exited with code -15 while running this task/);
  assert.equal(await queued.get(10_000), 144); // re-run on the replacement, not failed
  assert.notEqual(await pool.apply(pid, []), victim);
});

Deno.test("a task that throws asynchronously after its result: the result arrives, the worker is replaced", async () => {
  await using pool = new Pool({ processes: 1 });
  const first = await pool.apply(pid, []);
  // The worker dies 300 ms after the result: the next task is surely running by then.
  assert.equal(await pool.apply(throwLater, [7, 300]), 7);
  const caught = await pool.apply(sleepMs, [2000]).catch((e) => e); // running when it dies
  assert.ok(caught instanceof BrokenPoolError);
  assert.match(caught.message, /exited with code 1/);
  assert.notEqual(await pool.apply(pid, []), first);
  assert.deepEqual(await pool.map(square, range(10)), range(10).map((x) => x * x));
});

Deno.test("maxTasksPerChild replaces workers after that many tasks (distinct pids)", async () => {
  await using pool = new Pool({ processes: 2, maxTasksPerChild: 2 });
  const out = await pool.map(pidAfter, range(12).map(() => 1), 1);
  const counts = new Map<number, number>();
  for (const [p] of out) counts.set(p, (counts.get(p) ?? 0) + 1);
  assert.ok(counts.size >= 6, `only ${counts.size} distinct workers`);
  for (const n of counts.values()) assert.ok(n <= 2);
});

Deno.test("initializer runs once per worker with initargs, replacements included", async () => {
  await using pool = new Pool({
    processes: 2,
    initializer: init,
    initargs: ["tagged"],
    maxTasksPerChild: 3,
  });
  const states = await pool.map(initState, range(20), 1);
  assert.ok(new Set(states.map((s) => s[0])).size >= 7);
  for (const [, count, tag] of states) {
    assert.equal(count, 1);
    assert.equal(tag, "tagged");
  }
});

Deno.test("a failing initializer breaks the pool: tasks reject with BrokenPoolError, nothing hangs", async () => {
  const pool = new Pool({ processes: 2, initializer: badInit });
  try {
    const err = await pool.apply(square, [1]).catch((e) => e);
    assert.ok(err instanceof BrokenPoolError, String(err));
    assert.match(err.message, /initializer .* failed: Error: initializer exploded/);
    assert.equal((err.cause as Error).message, "initializer exploded");
    await assert.rejects(pool.whenReady(), BrokenPoolError);
    assert.throws(() => pool.applyAsync(square, [1]), BrokenPoolError);
  } finally {
    pool.terminate();
    await pool.join();
  }
});

Deno.test("numeric results are copied out of the buffer they are read through: map and imap stay exact", async () => {
  // Columns of numbers are read in place, or through one buffer the reader reuses (a frame that
  // falls unaligned): a job that kept the view instead of copying would see later chunks.
  await using pool = new Pool({ processes: 2 });
  const n = 20_000, want = range(n).map((x) => x * x);
  assert.deepEqual(await pool.map(square, range(n), 1000), want);
  const ordered: number[] = [];
  for await (const y of pool.imap(square, range(n), { chunksize: 1000, buffersize: n })) {
    if (ordered.length === 0) await delay(50); // every chunk read meanwhile, waiting in the job
    ordered.push(y);
  }
  assert.deepEqual(ordered, want);
  const unordered: number[] = [];
  for await (const y of pool.imapUnordered(square, range(n), { chunksize: 1000, buffersize: n })) {
    if (unordered.length === 0) await delay(50);
    unordered.push(y);
  }
  assert.deepEqual(unordered.sort((a, b) => a - b), want);
});

Deno.test("imap is ordered, imapUnordered complete; an infinite input is read a bounded way ahead", async () => {
  await using pool = new Pool({ processes: 2 });
  const ordered: number[] = [];
  for await (const y of pool.imap(squareLater, range(50).reverse(), 3)) ordered.push(y);
  assert.deepEqual(ordered, range(50).reverse().map((x) => x * x));
  const unordered: number[] = [];
  for await (const y of pool.imapUnordered(square, range(50))) unordered.push(y);
  assert.deepEqual(unordered.sort((a, b) => a - b), range(50).map((x) => x * x));

  let pulled = 0, closed = false;
  function* naturals() {
    try {
      for (let i = 0;; i++) {
        pulled++;
        yield i;
      }
    } finally {
      closed = true;
    }
  }
  let last = -1;
  for await (const y of pool.imap(square, naturals(), { buffersize: 16 })) {
    last = y;
    if (y >= 10_000) break;
  }
  assert.equal(last, 10_000);
  assert.ok(pulled <= 101 + 16, `read ${pulled} items ahead`);
  assert.ok(closed, "the input iterator was closed");
  // Unordered over an async infinite source, early exit after a few.
  async function* ticks() {
    for (let i = 0;; i++) yield i;
  }
  let n = 0;
  for await (const _ of pool.imapUnordered(square, ticks(), 4)) if (++n === 20) break;
  assert.equal(n, 20);
  assert.equal(await pool.apply(square, [3]), 9); // the pool is fine afterwards
});

Deno.test("signal: a queued task is dropped at once, a running one's worker is replaced", async () => {
  await using pool = new Pool({ processes: 1 });
  const victim = await pool.apply(pid, []);
  const busy = pool.applyAsync(sleepMs, [1000]);
  const ac = new AbortController();
  const queued = pool.applyAsync(square, [5], { signal: ac.signal });
  const t0 = performance.now();
  ac.abort(new Error("not needed"));
  await assert.rejects(queued.get(), /not needed/);
  assert.ok(performance.now() - t0 < 500, "rejected at once, not after the busy task");
  assert.equal(await busy.get(), "slept"); // the worker was not touched
  assert.equal(await pool.apply(pid, []), victim);

  const ac2 = new AbortController();
  const running = pool.applyAsync(sleepMs, [30_000], { signal: ac2.signal });
  const after = pool.applyAsync(square, [6]);
  await delay(100);
  ac2.abort(); // default reason: an AbortError DOMException
  const err = await running.get().catch((e) => e);
  assert.equal(err.name, "AbortError");
  assert.equal(await after.get(10_000), 36); // re-queued on the replacement
  assert.notEqual(await pool.apply(pid, []), victim);

  const already = AbortSignal.abort(new Error("too late"));
  await assert.rejects(pool.apply(square, [1], { signal: already }), /too late/);
  // A map aborted midway rejects, and its unfinished chunks are withdrawn.
  const ac3 = new AbortController();
  const m = pool.map(sleepMs, range(20).map(() => 50), { chunksize: 1, signal: ac3.signal });
  setTimeout(() => ac3.abort(new Error("map aborted")), 80);
  await assert.rejects(m, /map aborted/);
  assert.equal(await pool.apply(square, [7]), 49);
});

Deno.test("slow tasks go one at a time: a short task never queues behind a long one", async () => {
  await using pool = new Pool({ processes: 2 });
  // Before any duration is known, and after slow ones were measured: one task per worker.
  for (const ms of [[400, 400, 5, 5], [400, 5, 5, 5]]) {
    const out = await Promise.all(ms.map((m, i) => pool.apply(pidAfter, [m, i])));
    const long = out.filter((_, i) => ms[i] === 400).map(([p]) => p);
    const short = out.filter((_, i) => ms[i] !== 400).map(([p]) => p);
    if (long.length === 2) assert.notEqual(long[0], long[1], "both long tasks went to one worker");
    else assert.ok(short.every((p) => p !== long[0]), "a short task waited behind the long one");
  }
});

Deno.test("tasks cancelled before they start never hold a worker's place", async () => {
  await using pool = new Pool({ processes: 1 });
  for (let i = 0; i < 20; i++) await pool.apply(spin, [0.5]); // ~0.5 ms tasks: a window of ~4
  const ac = new AbortController();
  const slow = pool.applyAsync(sleepMs, [100]);
  const doomed = [2, 3, 4].map((x) => pool.applyAsync(square, [x], { signal: ac.signal }));
  ac.abort(new Error("dropped"));
  for (const r of doomed) await assert.rejects(r.get(), /dropped/);
  assert.equal(await slow.get(), "slept");
  // The worker skipped the three; they must not count as work it still holds.
  assert.equal(await pool.apply(square, [5], { timeout: 5000 }), 25);
});

Deno.test("timeout: a task past its time rejects with TimeoutError and its worker is replaced", async () => {
  await using pool = new Pool({ processes: 1 });
  const victim = await pool.apply(pid, []);
  const t0 = performance.now();
  const err = await pool.apply(sleepMs, [30_000], { timeout: 150 }).catch((e) => e);
  assert.ok(err instanceof TimeoutError, String(err));
  assert.ok(performance.now() - t0 < 5000);
  assert.notEqual(await pool.apply(pid, []), victim);
  assert.equal(await pool.apply(square, [3], { timeout: 5000 }), 9); // in time: fine
  await assert.rejects(pool.apply(square, [3], { timeout: -1 }), ValueError);
  // A CPU-bound task past its time rejects just the same. (Deno 2.9 cannot stop a worker busy
  // in synchronous code: the abandoned thread finishes this task, then exits on its own.)
  const spun = await pool.apply(spin, [400], { timeout: 100 }).catch((e) => e);
  assert.ok(spun instanceof TimeoutError);
  assert.equal(await pool.apply(square, [4]), 16);
});

Deno.test("terminate() with 10,000 queued tasks returns promptly; they reject with BrokenPoolError", async () => {
  const pool = new Pool({ processes: 2 });
  const rs = range(10_000).map(() => pool.applyAsync(sleepMs, [10]));
  const mapped = pool.map(sleepMs, range(1000).map(() => 10), 1).catch((e) => e);
  await delay(30);
  const t0 = performance.now();
  pool.terminate();
  await pool.join();
  assert.ok(performance.now() - t0 < 1000, `terminate took ${performance.now() - t0} ms`);
  const errs = await Promise.all(rs.map((r) => r.get().catch((e) => e)));
  assert.ok(errs.every((e) => e === "slept" || e instanceof BrokenPoolError));
  assert.ok(errs.filter((e) => e instanceof BrokenPoolError).length > 9000);
  assert.ok((await mapped) instanceof BrokenPoolError);
  assert.equal(workers().length, 0);
  assert.throws(() => pool.applyAsync(square, [1]), ValueError);
});

Deno.test("transfer: moved argument buffers are detached; results moved with transfer() arrive", async () => {
  await using pool = new Pool({ processes: 1 });
  const buf = new Uint8Array(1 << 20).fill(7).buffer;
  assert.equal(await pool.apply(byteLength, [buf], { transfer: [buf] }), 1 << 20);
  assert.equal(buf.byteLength, 0); // moved: the sender no longer has it
  const kept = new ArrayBuffer(16);
  assert.equal(await pool.apply(byteLength, [kept]), 16);
  assert.equal(kept.byteLength, 16); // copied by default
  const big = await pool.apply(makeBytes, [3 << 20, 9]); // larger than the result ring
  assert.equal(big.length, 3 << 20);
  assert.ok(big.every((x) => x === 9));
  const bufs = [new ArrayBuffer(8), new ArrayBuffer(9)];
  assert.deepEqual(await pool.map(byteLength, bufs, { transfer: bufs }), [8, 9]);
  assert.ok(bufs.every((b) => b.detached));
});

Deno.test("close() then join() completes every task, imap iterations included; await using terminates", async () => {
  const pool = new Pool({ processes: 2 });
  const rs = range(200).map((i) => pool.applyAsync(square, [i]));
  const it = pool.imap(square, range(300));
  pool.close();
  const got: number[] = [];
  for await (const y of it) got.push(y);
  await pool.join();
  assert.deepEqual(await Promise.all(rs), range(200).map((x) => x * x));
  assert.deepEqual(got, range(300).map((x) => x * x));
  assert.equal(workers().length, 0);
  assert.equal(String(pool), "<Pool state=CLOSE pool_size=2>");
  {
    await using p2 = new Pool({ processes: 2 });
    await p2.whenReady();
    assert.equal(workers().length, 2);
  }
  assert.equal(workers().length, 0);
});
