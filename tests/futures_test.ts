import assert from "node:assert/strict";
import {
  ALL_COMPLETED,
  asCompleted,
  BrokenProcessPool,
  CancelledError,
  FIRST_COMPLETED,
  FIRST_EXCEPTION,
  Future,
  ProcessPoolExecutor,
  ThreadPoolExecutor,
  wait,
} from "../lib/futures/futures.ts";
import { Pool } from "../lib/pool/pool.ts";
import { __testHooks } from "../lib/pool/wire.ts";
import { activeChildren } from "../lib/process/process.ts";
import { currentThread } from "../lib/core/threading.ts";
import { BrokenPoolError, ProcessError, TimeoutError, ValueError } from "../lib/core/errors.ts";
import {
  badInit,
  exitNow,
  fail,
  init,
  initState,
  pid,
  sleepMs,
  square,
  squareUnless13,
} from "./fixtures/pool_tasks.ts";
import { countRun } from "./fixtures/pool_race_tasks.ts";
import { RawArray } from "../lib/memory/sharedctypes.ts";
import { range, sleep, waitUntil } from "./_helpers.ts";

function notExported(x: number): number {
  return x;
}

// ---------------------------------------------------------------------------------------------
// Future on its own

Deno.test("Future: states, setResult/setException, result/exception, thenable, InvalidState", async () => {
  const f = new Future<number>();
  assert.ok(!f.done() && !f.running() && !f.cancelled());
  assert.equal(String(f), "<Future state=pending>");
  assert.ok(f.setRunningOrNotifyCancel());
  assert.ok(f.running() && !f.cancel()); // a running future cannot be cancelled
  assert.throws(() => f.setRunningOrNotifyCancel(), ValueError);
  f.setResult(7);
  assert.ok(f.done() && !f.running());
  assert.equal(await f.result(), 7);
  assert.equal(await f.exception(), null);
  assert.equal(await f, 7);
  assert.equal(String(f), "<Future state=finished returned number>");
  assert.throws(() => f.setResult(8), ValueError);
  assert.equal(f.cancel(), false);

  const g = new Future<number>();
  const boom = new RangeError("boom");
  g.setException(boom);
  assert.equal(await g.exception(), boom);
  await assert.rejects(g.result(), (e) => e === boom);
  await assert.rejects(Promise.resolve(g), (e) => e === boom);
  assert.throws(() => g.setException(boom), ValueError);
});

Deno.test("Future: result(timeout)/exception(timeout) throw TimeoutError; a cancelled one CancelledError", async () => {
  const f = new Future<string>();
  const t0 = performance.now();
  await assert.rejects(f.result(30), TimeoutError);
  await assert.rejects(f.exception(0), TimeoutError);
  assert.ok(performance.now() - t0 >= 25);
  await assert.rejects(f.result(-1), ValueError);
  const later = f.result(5000);
  setTimeout(() => f.setResult("late"), 10);
  assert.equal(await later, "late");

  const c = new Future();
  const waiting = c.result();
  assert.ok(c.cancel() && c.cancel() && c.cancelled() && c.done()); // true again once cancelled
  await assert.rejects(waiting, CancelledError);
  await assert.rejects(c.exception(), CancelledError);
  assert.equal(c.setRunningOrNotifyCancel(), false);
});

Deno.test("Future.addDoneCallback: once, in order, at once when already done; a throwing one is logged", () => {
  const f = new Future<number>();
  const calls: string[] = [];
  f.addDoneCallback((x) => calls.push(`a${x.done()}`));
  f.addDoneCallback(() => {
    throw new Error("callback failed");
  });
  f.addDoneCallback(() => calls.push("b"));
  const logged: unknown[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => logged.push(a.join(" "));
  try {
    f.setResult(1);
  } finally {
    console.error = orig;
  }
  assert.deepEqual(calls, ["atrue", "b"]);
  assert.equal(logged.length, 1);
  assert.match(String(logged[0]), /exception calling callback for <Future state=finished/);
  f.addDoneCallback(() => calls.push("late"));
  assert.deepEqual(calls, ["atrue", "b", "late"]);
  const c = new Future();
  let cancelledSeen = false;
  c.addDoneCallback((x) => (cancelledSeen = x.cancelled()));
  c.cancel();
  assert.ok(cancelledSeen);
  assert.throws(() => c.addDoneCallback(42 as unknown as () => void), TypeError);
});

// ---------------------------------------------------------------------------------------------
// ProcessPoolExecutor

Deno.test("ProcessPoolExecutor: submit returns Futures with results, errors, then; await using shuts down", async () => {
  let ex: ProcessPoolExecutor;
  {
    await using e = new ProcessPoolExecutor({ maxWorkers: 2 });
    ex = e;
    const f = ex.submit(square, 7);
    assert.equal(await f.result(10_000), 49);
    assert.equal(await f.exception(), null);
    assert.ok(f.done() && !f.running() && !f.cancelled());
    assert.equal(await ex.submit(square, 3), 9); // thenable
    const bad = ex.submit(fail, "no way");
    const err = await bad.exception(10_000);
    assert.ok(err instanceof TypeError);
    assert.equal((err as Error).message, "no way");
    await assert.rejects(bad.result(), TypeError);
    const many = range(50).map((i) => ex.submit(square, i));
    assert.deepEqual(await Promise.all(many.map((x) => x.result())), range(50).map((i) => i * i));
  }
  assert.throws(() => ex.submit(square, 1), /cannot schedule new futures after shutdown/);
  assert.throws(() => ex.submit(square, 1), ValueError);
  assert.equal(activeChildren().filter((p) => p.name.startsWith("PoolWorker-")).length, 0);
});

Deno.test("ProcessPoolExecutor: a future is pending until a worker starts its call; cancel() withdraws it from the pool", async () => {
  await using ex = new ProcessPoolExecutor({ maxWorkers: 1 });
  const fs = range(6).map(() => ex.submit(sleepMs, 300));
  // Every call is in the pool at once, and none has started yet: all pending, all cancellable.
  assert.deepEqual(fs.map((f) => f.running()), range(6).map(() => false));
  assert.match(String(ex), /running=0 pending=6/);
  await waitUntil(() => fs[0].running());
  assert.equal(String(fs[0]), "<Future state=running>");
  assert.match(String(ex), /running=1 pending=5/);
  assert.equal(fs[0].cancel(), false);
  assert.deepEqual(fs.slice(1).map((f) => f.running()), [false, false, false, false, false]);
  assert.equal(fs[4].cancel(), true);
  assert.ok(fs[4].cancelled() && fs[4].done() && !fs[4].running());
  await assert.rejects(fs[4].result(), CancelledError);
  // As calls finish, the next starts, skipping the cancelled one.
  assert.equal(await fs[0].result(10_000), "slept");
  await waitUntil(() => fs[1].running());
  assert.equal(fs[1].cancel(), false);
  assert.ok(!fs[2].running() && !fs[5].running());
  for (const i of [1, 2, 3, 5]) assert.equal(await fs[i].result(10_000), "slept");
  assert.ok(fs[4].cancelled());
});

Deno.test("ProcessPoolExecutor: a call queued in a worker behind a running one is still pending and cancellable", async () => {
  await using ex = new ProcessPoolExecutor({ maxWorkers: 1 });
  // Instant calls first: the pool then hands the worker many calls at a time.
  for await (const _ of ex.map(square, range(300))) { /* warm-up */ }
  const slow = ex.submit(sleepMs, 400);
  const behind = range(3).map((i) => ex.submit(square, i));
  await waitUntil(() => slow.running());
  const skips = __testHooks.skips;
  assert.ok(behind.every((f) => !f.running() && !f.done()));
  assert.equal(behind[1].cancel(), true);
  assert.equal(__testHooks.skips, skips + 1, "it was not in the worker's queue");
  assert.ok(behind[1].cancelled());
  assert.equal(slow.cancel(), false);
  assert.equal(await behind[0].result(10_000), 0);
  assert.equal(await behind[2].result(10_000), 4);
  assert.equal(await slow.result(10_000), "slept");
});

Deno.test("ProcessPoolExecutor.shutdown({ cancelFutures: true }) cancels the calls not started; the running one finishes", async () => {
  const ex = new ProcessPoolExecutor({ maxWorkers: 1 });
  const fs = range(8).map(() => ex.submit(sleepMs, 100));
  await waitUntil(() => fs[0].running());
  const t0 = performance.now();
  await ex.shutdown({ cancelFutures: true });
  const ms = performance.now() - t0;
  assert.deepEqual(fs.map((f) => f.cancelled()), [false, true, true, true, true, true, true, true]);
  assert.ok(fs.every((f) => f.done()));
  assert.equal(await fs[0].result(), "slept");
  assert.ok(ms < 7 * 100, `shutdown took ${ms} ms: it ran the cancelled calls`);
  assert.throws(() => ex.submit(square, 2), /cannot schedule new futures after shutdown/);
  await ex.shutdown(); // again: harmless
});

Deno.test("ProcessPoolExecutor.shutdown({ cancelFutures: true }): 100 calls queued in a worker behind a running one are all cancelled, none runs", async () => {
  const ex = new ProcessPoolExecutor({ maxWorkers: 1 });
  for await (const _ of ex.map(square, range(300))) { /* warm-up: many calls per message */ }
  const runs = new RawArray("i", 100);
  const slow = ex.submit(sleepMs, 400);
  const fs = range(100).map((i) => ex.submit(countRun, runs, i, 0));
  await waitUntil(() => slow.running());
  await ex.shutdown({ cancelFutures: true });
  assert.deepEqual(fs.filter((f) => !f.cancelled()).length, 0);
  assert.equal(await slow.result(), "slept");
  assert.deepEqual(range(100).filter((i) => runs.get(i) !== 0), [], "cancelled calls ran");
});

Deno.test("ProcessPoolExecutor.shutdown({ wait: false }) returns at once; the calls still finish", async () => {
  const ex = new ProcessPoolExecutor({ maxWorkers: 2 });
  const fs = range(6).map(() => ex.submit(sleepMs, 100));
  const t0 = performance.now();
  await ex.shutdown({ wait: false });
  assert.ok(performance.now() - t0 < 90);
  assert.ok(fs.some((f) => !f.done()));
  for (const f of fs) assert.equal(await f.result(10_000), "slept");
  await ex.shutdown(); // waits for the workers to exit
  assert.equal(activeChildren().filter((p) => p.name.startsWith("PoolWorker-")).length, 0);
});

Deno.test("ProcessPoolExecutor: a worker that dies fails only its future with BrokenProcessPool; the executor goes on", async () => {
  await using ex = new ProcessPoolExecutor({ maxWorkers: 2 });
  const first = await ex.submit(pid);
  const before = range(5).map((i) => ex.submit(square, i));
  const dying = ex.submit(exitNow, 3);
  const after = range(5).map((i) => ex.submit(square, 10 + i));
  const err = await dying.exception(10_000);
  assert.ok(err instanceof BrokenProcessPool && err instanceof BrokenPoolError, String(err));
  assert.match((err as Error).message, /exited with code 3 while running this task/);
  for (const [i, f] of [...before, ...after].entries()) {
    assert.equal(await f.result(10_000), i < 5 ? i * i : (i + 5) * (i + 5));
  }
  assert.equal(await ex.submit(square, 9).result(10_000), 81);
  assert.equal(typeof first, "number");
});

Deno.test("ProcessPoolExecutor: initializer, initargs and maxTasksPerChild reach the pool", async () => {
  await using ex = new ProcessPoolExecutor({
    maxWorkers: 2,
    initializer: init,
    initargs: ["exec"],
    maxTasksPerChild: 2,
  });
  const states = await Promise.all(range(8).map(() => ex.submit(initState).result(10_000)));
  for (const [, count, tag] of states) {
    assert.equal(count, 1);
    assert.equal(tag, "exec");
  }
  assert.ok(new Set(states.map((s) => s[0])).size >= 4, "workers were not replaced");
});

Deno.test("ProcessPoolExecutor: a failing initializer fails the futures and then submit; nothing hangs", async () => {
  const ex = new ProcessPoolExecutor({ maxWorkers: 2, initializer: badInit });
  const fs = range(6).map((i) => ex.submit(square, i));
  for (const f of fs) {
    const e = await f.exception(10_000);
    assert.ok(e instanceof BrokenPoolError, String(e));
  }
  await waitUntil(() => {
    try {
      ex.submit(square, 1);
      return false;
    } catch (e) {
      return e instanceof BrokenPoolError;
    }
  });
  await ex.shutdown();
});

Deno.test("ProcessPoolExecutor.whenReady: every worker is up before any call; a failed initializer rejects and breaks the executor", async () => {
  const workers = () => activeChildren().filter((p) => p.name.startsWith("PoolWorker-"));
  const ex = new ProcessPoolExecutor({ maxWorkers: 2, initializer: init, initargs: ["ready"] });
  await ex.whenReady();
  assert.equal(workers().length, 2);
  assert.equal(await ex.submit(square, 3).result(10_000), 9);
  await ex.shutdown();
  await assert.rejects(ex.whenReady(), /cannot schedule new futures after shutdown/);

  const bad = new ProcessPoolExecutor({ maxWorkers: 1, initializer: badInit });
  await assert.rejects(bad.whenReady(), BrokenProcessPool);
  assert.throws(() => bad.submit(square, 1), BrokenProcessPool); // at once: it is broken
  await bad.shutdown();
});

Deno.test("ProcessPoolExecutor: misuse is a clear error at once", async () => {
  assert.throws(
    () => new ProcessPoolExecutor({ maxWorkers: 0 }),
    /max_workers must be greater than 0/,
  );
  assert.throws(
    () => new ProcessPoolExecutor(4 as unknown as { maxWorkers: number }),
    /ProcessPoolExecutor\(\) takes an options object, not a number \(4\): write new ProcessPoolExecutor\(\{ maxWorkers: 4 \}\)/,
  );
  assert.throws(
    () => new ProcessPoolExecutor({ isolation: "fork" as "thread" }),
    /isolation must be "thread" or "process"/,
  );
  await using ex = new ProcessPoolExecutor({ maxWorkers: 1, isolation: "thread" });
  assert.equal(await ex.submit(square, 2), 4);
  assert.throws(() => ex.submit(notExported, 1), ProcessError);
  assert.throws(() => ex.submit(42 as unknown as () => void), TypeError);
  assert.throws(() => ex.map(square, [1], { chunksize: 0 }), /chunksize must be >= 1/);
  assert.throws(() => ex.map(square, [1], { timeout: -1 }), ValueError);
  assert.throws(() => ex.map(square, 5 as unknown as number[]), TypeError);
  await assert.rejects(
    ex.shutdown(false as unknown as { wait: boolean }),
    /shutdown\(\) takes an options object, not a boolean/,
  );
  assert.match(String(ex), /<ProcessPoolExecutor maxWorkers=1 running=0 pending=0>/);
});

Deno.test("ProcessPoolExecutor.map: input order, chunksize, the first error at its position, timeout", async () => {
  await using ex = new ProcessPoolExecutor({ maxWorkers: 2 });
  const out: number[] = [];
  for await (const y of ex.map(square, range(30))) out.push(y);
  assert.deepEqual(out, range(30).map((x) => x * x));
  const chunked: number[] = [];
  for await (const y of ex.map(square, range(103), { chunksize: 10 })) chunked.push(y);
  assert.deepEqual(chunked, range(103).map((x) => x * x));

  for (const chunksize of [1, 4]) {
    const seen: number[] = [];
    const err = await (async () => {
      for await (const y of ex.map(squareUnless13, range(20), { chunksize })) seen.push(y);
    })().catch((e) => e);
    assert.equal((err as Error).message, "unlucky 13");
    assert.deepEqual(seen, range(chunksize === 1 ? 13 : 12).map((x) => x * x));
  }

  const slow = ex.map(sleepMs, [10, 1500, 1500, 1500], { timeout: 300 });
  assert.deepEqual(await slow.next(), { value: "slept", done: false });
  await assert.rejects(slow.next(), /map\(\) results were not all ready within 300 ms/);
});

Deno.test("Executor.map: leaving the loop early cancels the calls not started", async () => {
  await using ex = new ThreadPoolExecutor({ maxWorkers: 1 });
  let calls = 0;
  const job = async (ms: number) => {
    calls++;
    await sleep(ms);
    return ms;
  };
  for await (const y of ex.map(job, range(10).map(() => 20))) {
    assert.equal(y, 20);
    break;
  }
  await ex.shutdown();
  assert.ok(calls <= 2, `${calls} calls ran`); // the one awaited, and maybe the next
});

Deno.test("ProcessPoolExecutor.map: leaving the loop early withdraws the chunks not started", async () => {
  const ex = new ProcessPoolExecutor({ maxWorkers: 1 });
  // Three chunks of two 300 ms calls: the first yields after ~600 ms, when the second has begun.
  for await (const y of ex.map(sleepMs, range(6).map(() => 300), { chunksize: 2 })) {
    assert.equal(y, "slept");
    break;
  }
  const t0 = performance.now();
  await ex.shutdown(); // waits for the second chunk only: the third was withdrawn
  const ms = performance.now() - t0;
  assert.ok(ms < 1000, `shutdown took ${ms.toFixed(0)} ms: the third chunk ran`);
});

// ---------------------------------------------------------------------------------------------
// asCompleted, wait

Deno.test("asCompleted yields futures as they finish (done ones first, duplicates once), AsyncResults too", async () => {
  await using ex = new ThreadPoolExecutor({ maxWorkers: 4 });
  const sleep = (ms: number) => new Promise<number>((r) => setTimeout(() => r(ms), ms));
  const done = new Future<number>();
  done.setResult(0);
  const fs = [ex.submit(sleep, 150), ex.submit(sleep, 10), ex.submit(sleep, 60), done];
  const order: number[] = [];
  for await (const f of asCompleted([...fs, fs[0]])) {
    assert.ok(f instanceof Future && f.done()); // the future itself, not its result
    order.push(await f.result());
  }
  assert.deepEqual(order, [0, 10, 60, 150]);

  await using pool = new Pool({ processes: 1 });
  const rs = [pool.applyAsync(sleepMs, [200]), pool.applyAsync(square, [4])];
  const got: unknown[] = [];
  for await (const r of asCompleted(rs, 10_000)) got.push(await r);
  assert.equal(got.length, 2);
  assert.ok(got.includes(16) && got.includes("slept"));
  assert.throws(
    () => asCompleted([1 as unknown as Future]),
    /takes Futures or AsyncResults: got number/,
  );
});

Deno.test("asCompleted: duplicates once in each of several loops over the same futures at once", async () => {
  // Duplicates are told apart by a mark each asCompleted call leaves on a Future: calls that
  // overlap must not see each other's marks.
  const fs = range(4).map(() => new Future<number>());
  fs[1].setResult(1);
  const a = asCompleted([fs[0], fs[1], fs[0], fs[2]]);
  const b = asCompleted([fs[2], fs[1], fs[3], fs[2], fs[1]]);
  const c = asCompleted([fs[1], fs[1]]);
  fs[0].setResult(0);
  fs[3].setResult(3);
  fs[2].setResult(2);
  const drain = async (it: AsyncIterable<Omit<Future<number>, "then">>) => {
    const out: number[] = [];
    for await (const f of it) out.push(await f.result());
    return out;
  };
  assert.deepEqual(await drain(a), [1, 0, 2]);
  assert.deepEqual(await drain(b), [1, 3, 2]);
  assert.deepEqual(await drain(c), [1]);
  // An iterable whose iteration calls asCompleted on the same futures (a generator) is read out
  // first: the inner call's marks do not hide the outer call's duplicates.
  const inner: AsyncIterableIterator<unknown>[] = [];
  function* gen() {
    for (const f of [fs[0], fs[1], fs[0]]) {
      inner.push(asCompleted([fs[0], fs[1]]));
      yield f;
    }
  }
  assert.deepEqual(await drain(asCompleted(gen())), [0, 1]);
  for (const it of inner) await it.return!();
  // A bad element throws at once; the futures before it are unaffected.
  const d = new Future<number>();
  assert.throws(() => asCompleted([d, null as unknown as Future]), /got null/);
  d.setResult(5);
  assert.deepEqual(await drain(asCompleted([d, d])), [5]);
});

Deno.test("ProcessPoolExecutor: after thousands of calls, toString counts and cancelFutures still see every pending call", async () => {
  // The executor sweeps its done calls from its list now and then: the sweep must keep the rest.
  const ex = new ProcessPoolExecutor({ maxWorkers: 1 });
  const quick = range(3000).map((i) => ex.submit(square, i));
  // One with an argument that cannot be sent fails inside the pool's batch, and is not pending.
  const unsendable = ex.submit(square as (x: unknown) => number, () => 1);
  for await (const _ of asCompleted([...quick, unsendable])) { /* all done */ }
  assert.equal((await unsendable.exception())?.constructor.name, "SerializationError");
  assert.match(String(ex), /running=0 pending=0>/);
  const slow = ex.submit(sleepMs, 300);
  const behind = range(2000).map((i) => ex.submit(square, i));
  await waitUntil(() => slow.running());
  assert.match(String(ex), /running=1 pending=2000>/);
  await ex.shutdown({ cancelFutures: true });
  assert.equal(behind.filter((f) => !f.cancelled()).length, 0);
  assert.equal(await slow.result(), "slept");
  assert.ok(quick.every((f) => f.done() && !f.cancelled()) && (await quick[7].result()) === 49);
});

Deno.test("asCompleted(fs, timeout) throws TimeoutError naming how many are unfinished; break stops watching", async () => {
  await using ex = new ThreadPoolExecutor({ maxWorkers: 4 });
  const sleep = (ms: number) => new Promise<number>((r) => setTimeout(() => r(ms), ms));
  const fs = [ex.submit(sleep, 1), ex.submit(sleep, 400), ex.submit(sleep, 500)];
  const seen: number[] = [];
  const err = await (async () => {
    for await (const f of asCompleted(fs, 100)) seen.push(await f.result());
  })().catch((e) => e);
  assert.ok(err instanceof TimeoutError, String(err));
  assert.match(err.message, /2 \(of 3\) futures unfinished/);
  assert.deepEqual(seen, [1]);
  for await (const _ of asCompleted(fs)) break;
  const it = asCompleted([fs[1], fs[2]]);
  const waiting = it.next(); // neither is done yet: it waits
  await it.return!();
  assert.deepEqual(await waiting, { value: undefined, done: true });
  await Promise.all(fs.map((f) => f.result()));
});

Deno.test("wait: ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, timeout; AsyncResults too", async () => {
  await using ex = new ThreadPoolExecutor({ maxWorkers: 4 });
  const sleep = (ms: number) => new Promise<number>((r) => setTimeout(() => r(ms), ms));
  const failSoon = async () => {
    await sleep(20);
    throw new Error("failed");
  };
  const a = ex.submit(sleep, 10), b = ex.submit(sleep, 300), c = ex.submit(failSoon);
  let r = await wait([a, b, c], { returnWhen: FIRST_COMPLETED });
  assert.ok(r.done.has(a) && r.notDone.has(b) && r.done.size + r.notDone.size === 3);
  r = await wait([a, b, c], { returnWhen: FIRST_EXCEPTION });
  assert.ok(r.done.has(c) && r.notDone.has(b));
  r = await wait([a, b, c], { timeout: 10 });
  assert.ok(r.notDone.has(b)); // a timeout is no error
  r = await wait([a, b, c], { returnWhen: ALL_COMPLETED });
  assert.equal(r.done.size, 3);
  assert.equal(r.notDone.size, 0);
  // FIRST_EXCEPTION with no failure waits for all; a cancelled future is no failure.
  const x = new Future<number>(), y = ex.submit(sleep, 50);
  x.cancel();
  r = await wait([x, y], { returnWhen: FIRST_EXCEPTION });
  assert.ok(r.done.has(x) && r.done.has(y));

  await using pool = new Pool({ processes: 1 });
  const slow = pool.applyAsync(sleepMs, [300]), quick = pool.applyAsync(fail, ["x"]);
  const p = await wait([slow, quick, y], { returnWhen: FIRST_EXCEPTION, timeout: 10_000 });
  assert.ok(p.done.has(quick) && p.done.has(y));
  await slow;

  await assert.rejects(
    wait([a], { returnWhen: "SOMETIMES" as typeof ALL_COMPLETED }),
    /returnWhen must be "FIRST_COMPLETED", "FIRST_EXCEPTION" or "ALL_COMPLETED"/,
  );
  await assert.rejects(wait([a], 5 as unknown as { timeout: number }), TypeError);
});

// ---------------------------------------------------------------------------------------------
// ThreadPoolExecutor

Deno.test("ThreadPoolExecutor: closures, at most maxWorkers at once, in named Threads, errors in the future", async () => {
  await using ex = new ThreadPoolExecutor({ maxWorkers: 3, threadNamePrefix: "tpe" });
  let now = 0, peak = 0;
  const names = new Set<string>();
  const job = async (i: number) => {
    now++;
    peak = Math.max(peak, now);
    names.add(currentThread().name);
    await sleep(20);
    now--;
    return i * 2;
  };
  const fs = range(12).map((i) => ex.submit(job, i));
  assert.deepEqual(await Promise.all(fs.map((f) => f.result())), range(12).map((i) => i * 2));
  assert.equal(peak, 3);
  assert.deepEqual([...names].sort(), ["tpe_0", "tpe_1", "tpe_2"]);
  const bad = ex.submit(() => {
    throw new SyntaxError("sync throw");
  });
  assert.ok((await bad.exception()) instanceof SyntaxError);
  const out: number[] = [];
  for await (const y of ex.map((x: number) => x + 1, [1, 2, 3], { chunksize: 2 })) out.push(y);
  assert.deepEqual(out, [2, 3, 4]);
  assert.match(String(ex), /<ThreadPoolExecutor maxWorkers=3 running=0 pending=0>/);
});

Deno.test("ThreadPoolExecutor: pending calls are cancellable; shutdown({ cancelFutures }) cancels them", async () => {
  const ex = new ThreadPoolExecutor({ maxWorkers: 1 });
  const fs = range(5).map(() => ex.submit(() => sleep(30).then(() => "ok")));
  await sleep(5);
  assert.ok(fs[0].running() && !fs[1].running());
  assert.equal(fs[0].cancel(), false);
  assert.equal(fs[1].cancel(), true);
  await ex.shutdown({ cancelFutures: true });
  assert.deepEqual(fs.map((f) => f.cancelled()), [false, true, true, true, true]);
  assert.equal(await fs[0].result(), "ok");
  assert.throws(() => ex.submit(() => 1), /cannot schedule new futures after shutdown/);
  assert.throws(() => new ThreadPoolExecutor({ maxWorkers: -1 }), ValueError);
  const dflt = new ThreadPoolExecutor();
  assert.match(String(dflt), /maxWorkers=\d+ /);
  await dflt.shutdown();
});
