import assert from "node:assert/strict";
import { ValueError } from "../lib/core/errors.ts";
import { Process } from "../lib/process/process.ts";
import { Value } from "../lib/memory/sharedctypes.ts";
import { RLock } from "../lib/sync/mod.ts";
import {
  activeCount,
  currentThread,
  enumerate,
  getIdent,
  local,
  mainThread,
  setExcepthook,
  Thread,
  Timer,
} from "../lib/core/threading.ts";
import { lingeringThread, threadsInWorker } from "./fixtures/sync_targets.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function work(out: string[], s: string): void {
  out.push(s);
}

Deno.test("Thread: start, join, isAlive, ident, default name, results in shared memory", async () => {
  const out: string[] = [];
  const t = new Thread({ target: work, args: [out, "done"] });
  assert.match(t.name, /^Thread-\d+ \(work\)$/);
  assert.equal(t.ident, null);
  assert.equal(t.isAlive(), false);
  t.start();
  assert.equal(t.isAlive(), true);
  assert.equal(typeof t.ident, "number");
  assert.equal(out.length, 0); // it runs once the caller yields
  await t.join();
  assert.equal(t.isAlive(), false);
  assert.deepEqual(out, ["done"]);
  assert.match(String(t), /^<Thread\(Thread-\d+ \(work\), stopped \d+\)>$/);
  const named = new Thread({ name: "worker-1", target: () => {} });
  assert.equal(named.name, "worker-1");
  named.name = "renamed";
  assert.equal(named.name, "renamed");
});

Deno.test("Thread: misuse is a ValueError", async () => {
  const t = new Thread({ target: () => sleep(5) });
  await assert.rejects(t.join(), /cannot join thread before it is started/);
  t.start();
  assert.throws(() => t.start(), /threads can only be started once/);
  assert.throws(() => (t.daemon = true), ValueError);
  await t.join();
  let err: unknown;
  const self = new Thread({
    target: async () => {
      try {
        await currentThread().join();
      } catch (e) {
        err = e;
      }
    },
  });
  self.start();
  await self.join();
  assert.ok(err instanceof ValueError && /cannot join current thread/.test(err.message));
  await assert.rejects(new Thread().join(-1));
});

Deno.test("Thread: join(timeout) returns while the thread still runs", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const t = new Thread({ target: () => gate });
  t.start();
  const t0 = performance.now();
  await t.join(50);
  const ms = performance.now() - t0;
  assert.ok(ms >= 40 && ms < 2000, `${ms}`);
  assert.ok(t.isAlive());
  // The timeout is a number of milliseconds, checked even when the thread is already done.
  await assert.rejects(
    t.join({ timeout: 50 } as unknown as number),
    (e: Error) => e instanceof TypeError && /milliseconds/.test(e.message),
  );
  await assert.rejects(t.join(-1), ValueError);
  release();
  await t.join();
  assert.ok(!t.isAlive());
  await assert.rejects(t.join("5" as unknown as number), TypeError);
  assert.throws(() => new Thread(true as unknown as undefined), /new Thread\(\{ target/);
});

Deno.test("currentThread follows a thread across awaits and timers; mainThread outside", async () => {
  assert.equal(currentThread(), mainThread());
  assert.equal(mainThread().name, "MainThread");
  assert.equal(getIdent(), mainThread().ident);
  const seen: string[] = [];
  const threads = ["a", "b"].map((name) =>
    new Thread({
      name,
      target: async () => {
        seen.push(currentThread().name);
        await sleep(5);
        seen.push(currentThread().name);
        await new Promise<void>((r) => queueMicrotask(r));
        setTimeout(() => seen.push(`timer:${currentThread().name}`), 1);
        await sleep(10);
        assert.equal(getIdent(), currentThread().ident);
      },
    })
  );
  threads.forEach((t) => t.start());
  for (const t of threads) await t.join();
  assert.deepEqual(seen.filter((s) => s === "a").length, 2);
  assert.deepEqual(seen.filter((s) => s === "b").length, 2);
  assert.ok(seen.includes("timer:a") && seen.includes("timer:b"));
  assert.equal(currentThread(), mainThread());
  assert.notEqual(threads[0].ident, threads[1].ident);
});

Deno.test("enumerate and activeCount list the live threads, main first", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const t = new Thread({ target: () => gate });
  const before = activeCount();
  t.start();
  assert.equal(activeCount(), before + 1);
  assert.equal(enumerate()[0], mainThread());
  assert.ok(enumerate().includes(t));
  release();
  await t.join();
  assert.ok(!enumerate().includes(t));
  assert.equal(activeCount(), before);
});

Deno.test("Thread: subclass with run(); daemon flag inherited from the creating thread", async () => {
  class Squarer extends Thread {
    result = 0;
    constructor(readonly n: number) {
      super({ name: "squarer" });
    }
    override async run() {
      await sleep(1);
      this.result = this.n * this.n;
    }
  }
  const s = new Squarer(7);
  s.start();
  await s.join();
  assert.equal(s.result, 49);
  assert.equal(new Thread().daemon, false);
  let inner: Thread | undefined;
  const d = new Thread({ daemon: true, target: () => (inner = new Thread()) });
  d.start();
  await d.join();
  assert.equal(inner?.daemon, true);
});

Deno.test("Thread: an error in run() goes to the excepthook; join still resolves", async () => {
  const errors: [unknown, string][] = [];
  const previous = setExcepthook((e, t) => errors.push([e, t.name]));
  try {
    const t = new Thread({
      name: "boom",
      target: async () => {
        await sleep(1);
        throw new TypeError("bad");
      },
    });
    t.start();
    await t.join();
    assert.equal(errors.length, 1);
    assert.equal((errors[0][0] as Error).message, "bad");
    assert.equal(errors[0][1], "boom");
  } finally {
    setExcepthook(previous);
  }
});

Deno.test("Timer: fires after the interval; cancel() stops it", async () => {
  const fired: number[] = [];
  const t0 = performance.now();
  const t = new Timer(40, (x: number) => fired.push(x), [1]);
  t.start();
  await t.join();
  const ms = performance.now() - t0;
  assert.deepEqual(fired, [1]);
  assert.ok(ms >= 32 && ms < 2000, `${ms}`);
  const c = new Timer(10_000, () => fired.push(2));
  c.start();
  await sleep(5);
  c.cancel();
  await c.join();
  const early = new Timer(10, () => fired.push(3));
  early.cancel();
  early.start();
  await early.join();
  assert.deepEqual(fired, [1]);
  assert.throws(() => new Timer(-1, () => {}), ValueError);
});

Deno.test("local(): each thread sees its own values; init makes the first view", async () => {
  const data = local<{ n?: number }>();
  const counters = local(() => ({ hits: 0 }));
  data.n = 1;
  counters.hits++;
  const seen: unknown[] = [];
  const t = new Thread({
    target: async () => {
      seen.push(data.n, "n" in data, counters.hits);
      data.n = 2;
      await sleep(1);
      seen.push(data.n, Object.keys(data).join());
    },
  });
  t.start();
  await t.join();
  assert.deepEqual(seen, [undefined, false, 0, 2, "n"]);
  assert.equal(data.n, 1);
  assert.equal(counters.hits, 1);
  delete data.n;
  assert.equal("n" in data, false);
});

Deno.test("workers: threads of a worker share an RLock with the parent, owned per thread", async () => {
  const lock = new RLock(), counter = new Value("i", 0, { lock: false });
  const p = new Process({ target: threadsInWorker, args: [lock, counter, 50] });
  p.start();
  // The parent contends for the same lock meanwhile.
  for (let i = 0; i < 50; i++) {
    using _ = await lock.acquire();
    const v = counter.value;
    await sleep(0);
    counter.value = v + 1;
  }
  await p.join();
  assert.equal(p.exitCode, 0);
  assert.equal(counter.value, 200);
});

Deno.test("workers: a worker's exit waits for its non-daemon threads", async () => {
  const out = new Value("i", 0);
  const p = new Process({ target: lingeringThread, args: [out] });
  p.start();
  await p.join();
  assert.equal(p.exitCode, 0);
  assert.equal(out.value, 7);
});
