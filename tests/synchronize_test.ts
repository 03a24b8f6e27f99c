import assert from "node:assert/strict";
import { Process } from "../lib/process/process.ts";
import { BrokenBarrierError, ValueError } from "../lib/core/errors.ts";
import { dumps, loads } from "../lib/core/reduction.ts";
import { RawArray, Value } from "../lib/memory/sharedctypes.ts";
import {
  type Acquired,
  Barrier,
  BoundedSemaphore,
  Condition,
  Event,
  Lock,
  RLock,
  Semaphore,
} from "../lib/sync/mod.ts";
import { Thread } from "../lib/core/threading.ts";
import { ACQUIRED, mutexWaits, WAITERS } from "../lib/core/atomics.ts";
import { Queue } from "../lib/queues/queues.ts";
import { alloc, heap, release as releaseBlock } from "../lib/core/heap.ts";
import { __testHooks } from "../lib/sync/hooks.ts";
import { Array as SharedArray } from "../lib/memory/sharedctypes.ts";
import { ShareableList, SharedMemory } from "../lib/memory/shared_memory.ts";
import {
  accountPaused,
  ATTEMPTS,
  DONE,
  DONE_IT,
  FENCED,
  semaphoreChurn,
  type Shared,
  takePermit,
  zombie,
  zombieWaits,
} from "./fixtures/zombie_targets.ts";
import {
  barrierBroken,
  barrierParty,
  condWaiter,
  condWaitFor,
  contend,
  crashHolding,
  fromQueue,
  holdLockAsleep,
  holdLockBlocked,
  incrementAsync,
  releaseForeign,
  releaseLock,
  setEvent,
  signal,
  takePermits,
  waitEvent,
} from "./fixtures/sync_targets.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function start<A extends unknown[]>(target: (...a: A) => unknown, ...args: A): Process {
  const p = new Process({ target: target as (...a: unknown[]) => unknown, args });
  p.start();
  return p;
}

/** Asserts that `fn` took about `timeout` ms: at least 0.8x, less than a generous bound. */
async function timed<T>(timeout: number, fn: () => T | Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await fn();
  const ms = performance.now() - t0;
  assert.ok(ms >= timeout * 0.8, `returned after ${ms.toFixed(1)} ms, expected ~${timeout}`);
  assert.ok(ms < timeout + 2000, `returned after ${ms.toFixed(1)} ms, expected ~${timeout}`);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Lock

Deno.test("Lock: acquire, block: false, timeout, release, locked", async () => {
  const lock = new Lock();
  assert.equal(lock.locked(), false);
  const held = await lock.acquire();
  assert.ok(held);
  assert.equal(held.ownerDied, false);
  assert.equal(lock.locked(), true);
  assert.equal(await lock.acquire({ block: false }), false);
  assert.equal(lock.acquireSync({ block: false }), false);
  assert.equal(await timed(100, () => lock.acquire({ timeout: 100 })), false);
  assert.equal(await timed(50, () => lock.acquireSync({ timeout: 50 })), false);
  lock.release();
  assert.equal(lock.locked(), false);
  assert.throws(
    () => lock.release(),
    (e) => e instanceof ValueError && e.message === "semaphore or lock released too many times",
  );
  assert.ok(lock.acquireSync({ timeout: 0 }));
  lock.release();
});

Deno.test("Lock: `using` releases at scope exit; the guard releases too", async () => {
  const lock = new Lock();
  {
    using _ = await lock.acquire();
    assert.ok(lock.locked());
  }
  assert.ok(!lock.locked());
  {
    using _ = lock.acquireSync();
    assert.ok(lock.locked());
  }
  assert.ok(!lock.locked());
  const g = await lock.acquire();
  assert.equal(g.ownerDied, false);
  g.release();
  assert.ok(!lock.locked());
  assert.throws(() => g.release(), /semaphore or lock released too many times/);
});

Deno.test("Lock: bad options are ValueErrors; an aborted acquire rejects", async () => {
  const lock = new Lock();
  await lock.acquire();
  await assert.rejects(lock.acquire({ timeout: -5 }), ValueError);
  assert.throws(() => lock.acquireSync({ timeout: -5 }), ValueError);
  const ac = new AbortController();
  const p = lock.acquire({ signal: ac.signal });
  setTimeout(() => ac.abort(new Error("stop")), 20);
  await assert.rejects(p, /stop/);
  await assert.rejects(lock.acquire({ signal: AbortSignal.abort() }));
  lock.release();
  // The aborted waiter is gone: the lock is free and works.
  assert.ok(await lock.acquire({ timeout: 100 }));
  lock.release();
});

Deno.test("Lock: threads interleaving at await are mutually excluded", async () => {
  const lock = new Lock();
  let inside = 0, maxInside = 0, total = 0;
  const threads = Array.from({ length: 5 }, () =>
    new Thread({
      target: async () => {
        for (let i = 0; i < 20; i++) {
          using _ = await lock.acquire();
          inside++;
          maxInside = Math.max(maxInside, inside);
          await sleep(0);
          total++;
          inside--;
        }
      },
    }));
  threads.forEach((t) => t.start());
  for (const t of threads) await t.join();
  assert.equal(maxInside, 1);
  assert.equal(total, 100);
});

Deno.test("Lock/RLock: a blocking acquireSync on a lock this isolate holds is reported", async () => {
  const lock = new Lock(), rlock = new RLock();
  await lock.acquire();
  assert.throws(() => lock.acquireSync(), /would deadlock/);
  assert.equal(lock.acquireSync({ timeout: 10 }), false); // with a timeout it just times out
  lock.release();
  const t = new Thread({ target: () => rlock.acquire() });
  t.start();
  await t.join();
  assert.throws(() => rlock.acquireSync(), /would deadlock/);
});

Deno.test("Lock: a waiter is woken by release, not by polling", async () => {
  const lock = new Lock();
  await lock.acquire();
  setTimeout(() => lock.release(), 30);
  const t0 = performance.now();
  assert.ok(await lock.acquire({ timeout: 5000 }));
  assert.ok(performance.now() - t0 < 1000);
  lock.release();
});

Deno.test("mutex: a waiter whose sleep found the lock taken again naps unflagged, then looks", () => {
  // The wait algorithm driven by hand. A holder looping release/acquire changes the word between
  // the waiter's flagging it and its sleep; flagging it again at once, over and over, took the
  // line from the holder and sent its releases down the slow path (see BACKOFF_MS).
  const i32 = new Int32Array(new SharedArrayBuffer(4)), holder = heap().slot;
  i32[0] = holder;
  const g = mutexWaits(i32, 0, holder, Infinity);
  let s = g.next();
  assert.ok(!s.done && s.value.i32 === i32 && s.value.value === (holder | WAITERS));
  i32[0] = holder; // released and taken again before the waiter slept: the flag is gone
  s = g.next("not-equal");
  assert.ok(!s.done && s.value.i32 !== i32, "it naps on a word of its own");
  assert.ok(s.value.ms > 0 && s.value.ms < 5);
  assert.equal(i32[0], holder, "and leaves the mutex word alone meanwhile");
  i32[0] = 0; // released while it napped
  assert.deepEqual(g.next("timed-out"), { done: true, value: ACQUIRED });
  assert.equal(i32[0], holder | WAITERS); // having slept, it keeps the flag for the others

  // Found free instead of taken again: no nap.
  i32[0] = holder;
  const h = mutexWaits(i32, 0, holder, Infinity);
  h.next();
  i32[0] = 0;
  assert.deepEqual(h.next("not-equal"), { done: true, value: ACQUIRED });
});

// ---------------------------------------------------------------------------------------------
// RLock

Deno.test("RLock: recursion counts; only the owning thread may release", async () => {
  const lock = new RLock();
  await lock.acquire();
  assert.ok(lock.acquireSync());
  assert.ok(await lock.acquire({ block: false }));
  lock.release();
  lock.release();
  assert.ok(lock.locked());
  // Another thread neither gets it nor may release it.
  let got: unknown, err: unknown;
  const t = new Thread({
    target: async () => {
      got = await lock.acquire({ block: false });
      try {
        lock.release();
      } catch (e) {
        err = e;
      }
    },
  });
  t.start();
  await t.join();
  assert.equal(got, false);
  assert.ok(err instanceof ValueError && /cannot release un-acquired lock/.test(err.message));
  lock.release();
  assert.ok(!lock.locked());
  assert.throws(() => lock.release(), /cannot release un-acquired lock/);
});

Deno.test("RLock: a thread waits until the owner released every level", async () => {
  const lock = new RLock();
  await lock.acquire();
  await lock.acquire();
  let acquiredAt = 0;
  const t = new Thread({
    target: async () => {
      await lock.acquire();
      acquiredAt = performance.now();
      lock.release();
    },
  });
  t.start();
  await sleep(20);
  lock.release();
  await sleep(20);
  assert.equal(acquiredAt, 0);
  const releasedAt = performance.now();
  lock.release();
  await t.join();
  assert.ok(acquiredAt >= releasedAt);
});

// ---------------------------------------------------------------------------------------------
// Semaphore

Deno.test("Semaphore: counts permits; block: false; timeout; release(n)", async () => {
  const sem = new Semaphore(2);
  assert.equal(sem.getValue(), 2);
  assert.ok(await sem.acquire());
  assert.ok(sem.acquireSync());
  assert.equal(sem.getValue(), 0);
  assert.ok(sem.locked());
  assert.equal(await sem.acquire({ block: false }), false);
  assert.equal(await timed(80, () => sem.acquire({ timeout: 80 })), false);
  sem.release(2);
  assert.equal(sem.getValue(), 2);
  sem.release(); // an unbounded semaphore may go above its initial value
  assert.equal(sem.getValue(), 3);
  assert.throws(() => new Semaphore(-1), ValueError);
  assert.throws(() => sem.release(0), ValueError);
  const zero = new Semaphore(0);
  setTimeout(() => zero.release(), 20);
  assert.ok(await zero.acquire({ timeout: 5000 }));
});

Deno.test("BoundedSemaphore: releasing past the initial value is a ValueError", async () => {
  const sem = new BoundedSemaphore(2);
  {
    using _ = await sem.acquire();
    assert.equal(sem.getValue(), 1);
  }
  assert.equal(sem.getValue(), 2);
  assert.throws(
    () => sem.release(),
    (e) => e instanceof ValueError && e.message === "semaphore or lock released too many times",
  );
  assert.equal(sem.getValue(), 2);
  assert.match(String(sem), /BoundedSemaphore\(value=2, maxvalue=2\)/);
});

Deno.test("Semaphore: one release wakes one waiter; the rest keep waiting", async () => {
  const sem = new Semaphore(0);
  let woken = 0;
  const threads = [0, 1, 2].map(() =>
    new Thread({ target: async () => (await sem.acquire({ timeout: 300 })) && woken++ })
  );
  threads.forEach((t) => t.start());
  await sleep(20);
  sem.release();
  await sleep(50);
  assert.equal(woken, 1);
  for (const t of threads) await t.join();
  assert.equal(woken, 1);
});

// ---------------------------------------------------------------------------------------------
// Event

Deno.test("Event: set, clear, isSet, wait with and without timeout", async () => {
  const ev = new Event();
  assert.equal(ev.isSet(), false);
  assert.equal(await timed(60, () => ev.wait(60)), false);
  assert.equal(ev.waitSync(0), false);
  setTimeout(() => ev.set(), 20);
  assert.equal(await ev.wait(), true);
  assert.equal(ev.waitSync(), true);
  ev.clear();
  assert.equal(ev.isSet(), false);
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 10);
  await assert.rejects(ev.wait({ signal: ac.signal }));
});

Deno.test("Event: waiters present at set() return true even if clear() follows at once (bpo-13502)", async () => {
  const ev = new Event();
  const waiting = [ev.wait(3000), ev.wait({ timeout: 3000 }), ev.wait(3000)];
  ev.set();
  ev.clear();
  assert.deepEqual(await Promise.all(waiting), [true, true, true]);
  assert.equal(ev.isSet(), false);
  assert.equal(await timed(30, () => ev.wait(30)), false); // a later wait waits for a later set
});

// ---------------------------------------------------------------------------------------------
// Condition

Deno.test("Condition: methods without the lock are ValueErrors", async () => {
  for (const cond of [new Condition(), new Condition(new Lock())]) {
    await assert.rejects(
      cond.wait(10),
      (e) => e instanceof ValueError && /un-acquired/.test(e.message),
    );
    assert.throws(() => cond.waitSync(10), ValueError);
    assert.throws(() => cond.notify(), ValueError);
    assert.throws(() => cond.notifyAll(), ValueError);
    // Held by another thread is not held by this one.
    const t = new Thread({ target: () => cond.acquire() });
    t.start();
    await t.join();
    assert.throws(() => cond.notify(), ValueError);
  }
});

Deno.test("Condition: notify(n) wakes exactly n waiters, oldest first; notifyAll the rest", async () => {
  const cond = new Condition();
  const order: number[] = [];
  const threads = [0, 1, 2, 3, 4].map((k) =>
    new Thread({
      target: async () => {
        using _ = await cond.acquire();
        if (await cond.wait(5000)) order.push(k);
      },
    })
  );
  for (const t of threads) {
    t.start();
    await sleep(5); // enqueue in order
  }
  {
    using _ = await cond.acquire();
    cond.notify(2);
  }
  await sleep(50);
  assert.deepEqual(order, [0, 1]);
  {
    using _ = await cond.acquire();
    cond.notifyAll();
  }
  for (const t of threads) await t.join();
  assert.deepEqual(order.sort(), [0, 1, 2, 3, 4]);
});

Deno.test("Condition: wait timeout returns false with the lock held again; waitFor", async () => {
  const lock = new RLock();
  const cond = new Condition(lock);
  await cond.acquire();
  await cond.acquire(); // recursion level 2, restored after the wait
  assert.equal(await timed(50, () => cond.wait(50)), false);
  assert.ok(lock.locked());
  lock.release();
  assert.ok(lock.locked()); // still one level
  let ready = false;
  setTimeout(async () => {
    using _ = await cond.acquire();
    ready = true;
    cond.notifyAll();
  }, 20);
  assert.equal(await cond.waitFor(() => ready, 5000), true);
  assert.equal(await cond.waitFor(() => false, 30), false);
  assert.equal(cond.waitForSync(() => 5), 5);
  cond.release();
  assert.ok(!lock.locked());
});

Deno.test("Condition: an aborted wait takes the lock back and leaves the queue", async () => {
  const cond = new Condition(new Lock());
  await cond.acquire();
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error("gave up")), 10);
  await assert.rejects(cond.wait({ signal: ac.signal }), /gave up/);
  // Held again by this thread: notify is allowed, and wakes the next real waiter.
  let woke = false;
  const t = new Thread({
    target: async () => {
      using _ = await cond.acquire();
      woke = await cond.wait(5000);
    },
  });
  t.start();
  cond.release();
  await sleep(20);
  {
    using _ = await cond.acquire();
    cond.notify(1);
  }
  await t.join();
  assert.ok(woke);
});

// ---------------------------------------------------------------------------------------------
// Barrier

Deno.test("Barrier: unique indices, action once per pass, reusable", async () => {
  let passes = 0;
  const barrier = new Barrier(3, { action: () => passes++ });
  assert.equal(barrier.parties, 3);
  const seen: number[][] = [[], [], []];
  const threads = [0, 1, 2].map(() =>
    new Thread({
      target: async () => {
        for (let p = 0; p < 3; p++) seen[p].push(await barrier.wait());
      },
    })
  );
  threads.forEach((t) => t.start());
  for (const t of threads) await t.join();
  assert.equal(passes, 3);
  for (const s of seen) assert.deepEqual(s.sort(), [0, 1, 2]);
  assert.equal(barrier.nWaiting, 0);
  assert.equal(barrier.broken, false);
});

Deno.test("Barrier: more threads than parties pass in groups, one action per group", async () => {
  let passes = 0;
  const barrier = new Barrier(3, {
    action: async () => {
      await sleep(5); // an async action is awaited before anyone is released
      passes++;
    },
  });
  const got: number[] = [];
  const threads = Array.from({ length: 9 }, () =>
    new Thread({
      target: async () => {
        await barrier.wait();
        got.push(passes);
      },
    }));
  threads.forEach((t) => t.start());
  for (const t of threads) await t.join();
  assert.equal(passes, 3);
  assert.deepEqual(got.sort(), [1, 1, 1, 2, 2, 2, 3, 3, 3]);
});

Deno.test("Barrier: abort, timeout and a failing action break it for all; reset repairs", async () => {
  const barrier = new Barrier(3);
  const a = barrier.wait();
  const b = barrier.wait();
  await sleep(10);
  assert.equal(barrier.nWaiting, 2);
  barrier.abort();
  await assert.rejects(a, BrokenBarrierError);
  await assert.rejects(b, BrokenBarrierError);
  assert.ok(barrier.broken);
  await assert.rejects(barrier.wait(), BrokenBarrierError);
  barrier.reset();
  assert.ok(!barrier.broken);

  const c = barrier.wait();
  await assert.rejects(timed(50, () => barrier.wait(50)), BrokenBarrierError);
  await assert.rejects(c, BrokenBarrierError);
  barrier.reset();

  const failing = new Barrier(2, {
    action: () => {
      throw new Error("action failed");
    },
  });
  const d = failing.wait();
  await assert.rejects(failing.wait(), /action failed/);
  await assert.rejects(d, BrokenBarrierError);
  assert.ok(failing.broken);

  const withDefault = new Barrier(2, { timeout: 40 });
  await assert.rejects(timed(40, () => withDefault.wait()), BrokenBarrierError);
  assert.throws(() => new Barrier(0), ValueError);
});

Deno.test("Barrier: reset while parties wait breaks their wait, then it is usable", async () => {
  const barrier = new Barrier(2);
  const a = barrier.wait();
  await sleep(10);
  barrier.reset();
  await assert.rejects(a, BrokenBarrierError);
  const [x, y] = await Promise.all([barrier.wait(), barrier.wait()]);
  assert.deepEqual([x, y].sort(), [0, 1]);
});

// ---------------------------------------------------------------------------------------------
// Handles

Deno.test("handles: every primitive survives the codec and refers to the same object", async () => {
  const lock = new Lock(), rlock = new RLock(), sem = new BoundedSemaphore(3), ev = new Event();
  const cond = new Condition(lock), barrier = new Barrier(2);
  const back = loads<Record<string, unknown>>(
    dumps({ lock, rlock, sem, ev, cond, nested: [{ barrier }] }),
  );
  const lock2 = back.lock as Lock;
  assert.ok(lock2 instanceof Lock && lock2 !== lock);
  await lock.acquire();
  assert.ok(lock2.locked());
  lock2.release(); // a Lock may be released through any handle
  assert.ok(!lock.locked());
  await rlock.acquire();
  assert.ok((back.rlock as RLock).locked());
  (back.rlock as RLock).release(); // same thread: allowed
  const sem2 = back.sem as BoundedSemaphore;
  assert.ok(sem2 instanceof BoundedSemaphore);
  await sem.acquire();
  assert.equal(sem2.getValue(), 2);
  sem2.release();
  assert.throws(() => sem2.release(), ValueError);
  (back.ev as Event).set();
  assert.ok(ev.isSet());
  const cond2 = back.cond as Condition;
  await cond2.acquire();
  assert.ok(lock.locked());
  cond2.release();
  const barrier2 = (back.nested as { barrier: Barrier }[])[0].barrier;
  const [i, j] = await Promise.all([barrier.wait(), barrier2.wait()]);
  assert.deepEqual([i, j].sort(), [0, 1]);
});

// ---------------------------------------------------------------------------------------------
// Across workers

Deno.test("workers: a Lock held by a terminated worker is taken over (ownerDied)", async () => {
  for (const target of [holdLockBlocked, holdLockAsleep]) {
    const lock = new Lock(), held = new Event();
    const p = start(target, lock, held);
    assert.ok(await held.wait(10_000));
    assert.equal(await lock.acquire({ block: false }), false);
    p.terminate();
    await p.join();
    const g = await lock.acquire({ timeout: 5000 });
    assert.ok(g, "the lock of a dead holder must be acquirable");
    assert.equal(g.ownerDied, true);
    assert.equal(lock.ownerDied, true);
    g.release();
    const again = await lock.acquire();
    assert.equal(again.ownerDied, false);
    again.release();
  }
});

Deno.test("workers: a waiter blocked on a dead holder's Lock wakes up (Sync path too)", async () => {
  const lock = new RLock(), held = new Event();
  const p = start(holdLockBlocked, lock, held);
  assert.ok(await held.wait(10_000));
  const waiting = lock.acquire({ timeout: 10_000 });
  setTimeout(() => p.kill(), 50);
  const g = await waiting;
  assert.ok(g && g.ownerDied);
  g.release();
  await p.join();
  assert.equal(p.exitCode, -9);

  const lock2 = new Lock();
  const p2 = start(crashHolding, lock2);
  await p2.join();
  assert.equal(p2.exitCode, 1);
  const g2 = lock2.acquireSync({ timeout: 5000 });
  assert.ok(g2 && g2.ownerDied);
  g2.release();
});

Deno.test("workers: two workers looping on one RLock with await acquire() lose no increment", async () => {
  // W6's shape: each takes the lock 100,000 times, started together, so that waiters keep
  // losing the race to a holder that takes it again at once, and back off (see BACKOFF_MS).
  const v = new Value("i", 0), warm = new Value("i", 0), n = 100_000;
  const ready = new Semaphore(0), go = new Event();
  const ps = [0, 1].map(() => start(incrementAsync, v, warm, n, ready, go));
  for (let i = 0; i < 2; i++) assert.ok(await ready.acquire({ timeout: 30_000 }));
  go.set();
  for (const p of ps) await p.join();
  assert.deepEqual(ps.map((p) => p.exitCode), [0, 0]);
  assert.equal(v.value, 2 * n);
});

Deno.test("workers: RLock ownership is per process; a Lock may be released by another", async () => {
  const rlock = new RLock(), out = new Value("i", -1);
  await rlock.acquire();
  const p = start(releaseForeign, rlock, out);
  await p.join();
  assert.equal(out.value, 1);
  assert.ok(rlock.locked());
  rlock.release();

  const lock = new Lock();
  await lock.acquire();
  const p2 = start(releaseLock, lock);
  await p2.join();
  assert.equal(p2.exitCode, 0);
  assert.ok(!lock.locked());
});

Deno.test("workers: permits held by a terminated worker are given back", async () => {
  const sem = new Semaphore(3), held = new Event();
  const p = start(takePermits, sem, 2, held);
  assert.ok(await held.wait(10_000));
  assert.equal(sem.getValue(), 1);
  await sem.acquire();
  assert.equal(await sem.acquire({ block: false }), false);
  p.terminate();
  await p.join();
  const g = await sem.acquire({ timeout: 5000 });
  assert.ok(g && g.ownerDied);
  assert.equal(sem.getValue(), 1);

  // A child's plain release (a signal) is not a permit it holds.
  const ready = new Semaphore(0);
  const p2 = start(signal, ready);
  await p2.join();
  assert.ok(await ready.acquire({ timeout: 5000 }));
});

Deno.test("workers: Event set in one process wakes waiters in others (Sync and async)", async () => {
  const ev = new Event(), a = new Value("i", 0), b = new Value("i", 0);
  const pa = start(waitEvent, ev, a, true), pb = start(waitEvent, ev, b, false);
  await sleep(100);
  const setter = start(setEvent, ev);
  assert.ok(await ev.wait(10_000));
  await Promise.all([pa.join(), pb.join(), setter.join()]);
  assert.deepEqual([a.value, b.value], [1, 1]);
});

Deno.test("workers: Condition notify(n) wakes exactly n waiting processes", async () => {
  const cond = new Condition(), waiting = new Semaphore(0), woken = new Value("i", 0);
  const ps = [0, 1, 2].map(() => start(condWaiter, cond, waiting, woken));
  for (let i = 0; i < 3; i++) assert.ok(await waiting.acquire({ timeout: 10_000 }));
  // Each waiter released `waiting` while holding the lock: once we hold it, all three wait.
  {
    using _ = await cond.acquire();
    cond.notify(2);
  }
  await sleep(300);
  assert.equal(woken.value, 2);
  {
    using _ = await cond.acquire();
    cond.notifyAll();
  }
  await Promise.all(ps.map((p) => p.join()));
  assert.equal(woken.value, 3);

  const flag = new Value("i", 0), out = new Value("i", 0);
  const p = start(condWaitFor, cond, flag, out);
  await sleep(100);
  {
    using _ = await cond.acquire();
    flag.value = 5;
    cond.notifyAll();
  }
  await p.join();
  assert.equal(out.value, 5);
});

Deno.test("workers: Barrier across processes; the action runs in its creator", async () => {
  for (const sync of [true, false]) {
    let passes = 0;
    const barrier = new Barrier(3, { action: () => passes++ });
    const indices = new RawArray("i", 3 * 4);
    const ps = [0, 1, 2].map((row) => start(barrierParty, barrier, indices, row, 4, sync));
    await Promise.all(ps.map((p) => p.join()));
    assert.deepEqual(ps.map((p) => p.exitCode), [0, 0, 0]);
    assert.equal(passes, 4, `sync=${sync}`);
    for (let pass = 0; pass < 4; pass++) {
      assert.deepEqual([0, 1, 2].map((r) => indices.get(r * 4 + pass)).sort(), [0, 1, 2]);
    }
  }
  // Main and workers mixed; abort from main breaks the workers' waits.
  const barrier = new Barrier(3), out = [new Value("i", -1), new Value("i", -1)];
  const ps = [
    start(barrierBroken, barrier, out[0], true),
    start(barrierBroken, barrier, out[1], false),
  ];
  for (let i = 0; i < 200 && barrier.nWaiting < 2; i++) await sleep(20);
  barrier.abort();
  await Promise.all(ps.map((p) => p.join()));
  assert.deepEqual(out.map((v) => v.value), [1, 1]);
});

Deno.test("workers: handles sent inside Queue items work in the receiving worker", async () => {
  const q = new Queue<{ v: Value<"i">; lock: Lock; n: number }>();
  const v = new Value("i", 0, { lock: false }), lock = new Lock();
  const ps = [0, 1].map(() => start(fromQueue, q));
  for (const _ of ps) await q.put({ v, lock, n: 10_000 });
  await Promise.all(ps.map((p) => p.join()));
  assert.deepEqual(ps.map((p) => p.exitCode), [0, 0]);
  assert.equal(v.value, 20_000);
  q.close();
});

Deno.test("workers: fairness: 4 workers contending for one Lock for 2 s each get >= 10%", async () => {
  const lock = new Lock(), counts = new RawArray("i", 4);
  const ready = new Semaphore(0), go = new Event();
  const ps = [0, 1, 2, 3].map((k) => start(contend, lock, counts, k, ready, go, 2000));
  for (let i = 0; i < 4; i++) assert.ok(await ready.acquire({ timeout: 20_000 }));
  go.set();
  await Promise.all(ps.map((p) => p.join()));
  const n = [...counts], total = n.reduce((a, b) => a + b, 0);
  const shares = n.map((x) => x / total);
  console.log(`acquisitions per worker: ${n.join(", ")} (total ${total})`);
  for (const s of shares) {
    assert.ok(
      s >= 0.1,
      `shares ${shares.map((x) => x.toFixed(3)).join(", ")}`,
    );
  }
});

// ---------------------------------------------------------------------------------------------
// Zombies: a worker terminated while busy in synchronous code keeps running (Deno cannot stop
// it there); once marked dead it must not change anything shared.

Deno.test("a zombie changes no shared state: locks, semaphores, events, values, barriers, shared memory", async () => {
  const s: Shared = {
    lock: new Lock(),
    rlock: new RLock(),
    ev: new Event(),
    ev2: new Event(),
    sem: new Semaphore(1),
    bsem: new BoundedSemaphore(1),
    v: new Value("i", 7),
    arr: new SharedArray("i", [7]),
    barrier: new Barrier(2),
    shm: new SharedMemory({ size: 8 }),
    sl: new ShareableList([7]),
    cond: new Condition(),
    free: new Lock(),
    rfree: new RLock(),
    kept: new Lock(),
    rkept: new RLock(),
    afree: new Lock(),
    arfree: new RLock(),
  };
  s.ev.set();
  const held = new Event(), go = new Event();
  const report = alloc(128), rep = new Int32Array(heap().sab, report, 32);
  const p = start(zombie, s, held, go, report);
  assert.ok(await held.wait(20_000), "the worker took the locks");
  p.terminate();
  await p.join();
  // What it held is taken over, as from any dead process.
  const l = await s.lock.acquire({ timeout: 5000 });
  const r = await s.rlock.acquire({ timeout: 5000 });
  const b = await s.bsem.acquire({ timeout: 5000 });
  assert.ok(l && l.ownerDied && r && r.ownerDied && b && b.ownerDied);
  go.set(); // the zombie, still spinning, now tries everything
  for (let t = 0; Atomics.load(rep, DONE) === 0 && t < 400; t++) await sleep(50);
  assert.equal(Atomics.load(rep, DONE), 1, "the zombie ran (it was not stopped in its loop)");
  const said = ["not reached", "fenced", "done it", "another error"];
  assert.deepEqual(
    ATTEMPTS.map(([name], k) => `${name}: ${said[rep[k]]}`),
    ATTEMPTS.map(([name]) => `${name}: fenced`),
  );
  // And indeed nothing changed.
  assert.equal(s.lock.locked(), true);
  assert.equal(s.rlock.locked(), true);
  assert.equal(s.ev.isSet(), true);
  assert.equal(s.ev2.isSet(), false);
  assert.equal(s.sem.getValue(), 1);
  assert.equal(s.bsem.getValue(), 0);
  assert.equal(s.v.value, 7);
  assert.equal(s.arr.get(0), 7);
  assert.equal(s.barrier.broken, false);
  assert.equal(new SharedMemory({ name: s.shm.name }).size, 8);
  assert.equal(s.sl.get(0), 7);
  for (const k of [s.free, s.rfree, s.afree, s.arfree]) {
    assert.equal(k.locked(), false, `${k} stays free`);
  }
  // Still held by the dead zombie: the next holder is told that its owner died.
  for (const k of [s.kept, s.rkept]) {
    const g = await k.acquire({ timeout: 5000 });
    assert.ok(g && g.ownerDied, `${k} was taken over from the zombie`);
    k.release();
  }
  s.lock.release();
  s.rlock.release();
  s.bsem.release(); // the permit taken back from the zombie: one release, no more
  assert.throws(() => s.bsem.release(), /released too many times/);
  releaseBlock(report);
});

for (const kind of ["lock", "semaphore", "condition", "barrier"] as const) {
  Deno.test(`a zombie woken in a ${kind} wait takes nothing and breaks nothing`, async () => {
    const cond = new Condition(new Lock());
    const s = {
      lock: new Lock(),
      sem: new Semaphore(0),
      cond,
      barrier: new Barrier(2),
    } as Partial<Shared> as Shared;
    if (kind === "lock") await s.lock.acquire();
    const held = new Event();
    const report = alloc(128), rep = new Int32Array(heap().sab, report, 32);
    const p = start(zombieWaits, kind, s, held, report);
    assert.ok(await held.wait(20_000));
    // Asleep in Atomics.wait by now, and (a lock waiter) past a liveness slice, so starving:
    // the release below hands the lock over to it.
    await sleep(250);
    p.terminate();
    await p.join();
    // Wake it: what it waited for becomes available (condition and barrier: their timeouts).
    if (kind === "lock") s.lock.release();
    if (kind === "semaphore") s.sem.release();
    for (let t = 0; Atomics.load(rep, DONE) === 0 && t < 400; t++) await sleep(50);
    assert.equal(Atomics.load(rep, DONE), 1, "the zombie woke");
    assert.equal(rep[0], FENCED);
    assert.equal(s.lock.locked(), false, "the lock was not taken");
    assert.equal(s.sem.getValue(), kind === "semaphore" ? 1 : 0, "the permit was not taken");
    assert.equal(await cond.acquire({ block: false }) !== false, true, "the lock came free");
    cond.release();
    assert.equal(s.barrier.broken, false, "the barrier was not broken");
    releaseBlock(report);
  });
}

// ---------------------------------------------------------------------------------------------
// Semaphore: taking back the permits of dead holders

Deno.test("Semaphore: a reclaimer that read a dead holder's entry does not take the permit of the live process that reclaimed that entry since (ABA)", async () => {
  const sem = new BoundedSemaphore(1);
  const x = start(takePermit, sem);
  await x.join(); // X died holding the permit, on its account
  assert.equal(sem.getValue(), 0);
  let inside: Acquired | false | undefined;
  __testHooks.semaphoreReclaim = () => {
    // Waiter R2 (below) has read the entry naming X and is paused there. Meanwhile R1 takes
    // X's permit back and keeps it, noting it on its own account in the entry X had.
    __testHooks.semaphoreReclaim = undefined;
    inside = sem.acquireSync({ timeout: 1000 });
  };
  try {
    const r2 = sem.acquireSync({ timeout: 200 });
    assert.ok(inside && inside.ownerDied, "R1 took X's permit back");
    assert.equal(r2, false, "R2 found no permit to take back");
  } finally {
    __testHooks.semaphoreReclaim = undefined;
  }
  assert.equal(sem.getValue(), 0);
  sem.release(); // R1's permit: one release, no more
  assert.throws(() => sem.release(), /released too many times/);
});

// A holder declared dead while it still runs (a zombie) pauses between reading its own entry and
// changing it; meanwhile its permits are taken back and this process claims the very entry for
// its own. With slot and count in separate words, the zombie went on to change this process's
// count: a release gave its permit a second time (and this process's own release then threw
// "released too many times"), an acquire left its permit on this process's account for good.
for (const step of ["release", "acquire"] as const) {
  Deno.test(`Semaphore: a holder declared dead in the middle of its ${step} changes no other process's account`, async () => {
    // W takes every permit: one, then (an acquire) the second.
    const n = step === "acquire" ? 2 : 1, sem = new BoundedSemaphore(n);
    const paused = new Event(), go = new Event();
    const report = alloc(128), rep = new Int32Array(heap().sab, report, 32);
    const w = start(accountPaused, step, sem, paused, go, report);
    // W has read its entry (naming it, one permit) and spins before changing it.
    assert.ok(await paused.wait(20_000), "W paused");
    w.terminate();
    await w.join();
    // This process takes W's permit back and notes it on its own account, in the entry W had.
    const mine = [await sem.acquire({ timeout: 5000 })];
    assert.ok(mine[0] && mine[0].ownerDied, "W's permit was taken back");
    go.set(); // the zombie goes on, from the entry it read
    for (let t = 0; Atomics.load(rep, DONE) === 0 && t < 400; t++) await sleep(50);
    assert.equal(Atomics.load(rep, DONE), 1, "the zombie went on");
    if (step === "release") {
      assert.equal(rep[0], FENCED, "the zombie's release was fenced: its permit was reclaimed");
    } else {
      // It took its second permit before it was declared dead: on an account of its own, so
      // that permit comes back too.
      assert.equal(rep[0], DONE_IT);
      mine.push(await sem.acquire({ timeout: 2000 }));
      assert.ok(mine[1] && mine[1].ownerDied, "the zombie's second permit was taken back");
    }
    assert.equal(sem.getValue(), 0, "the zombie gave nothing back");
    for (let i = 0; i < n; i++) sem.release(); // this process's permits: n releases, no more
    assert.throws(() => sem.release(), /released too many times/);
    releaseBlock(report);
  });
}

Deno.test("Semaphore stress: holders terminated mid-use, their permits reclaimed by racing waiters, none too many", async () => {
  const PERMITS = 2, sem = new BoundedSemaphore(PERMITS);
  const end = performance.now() + 3000;
  const ps: Process[] = [];
  const crashed: string[] = [];
  while (performance.now() < end) {
    while (ps.filter((p) => p.isAlive()).length < 6) {
      const p = new Process({ target: semaphoreChurn, args: [sem, 400] });
      p.start();
      ps.push(p);
    }
    await sleep(20 + Math.random() * 40);
    const alive = ps.filter((p) => p.isAlive());
    alive[Math.floor(Math.random() * alive.length)]?.terminate();
  }
  for (const p of ps) {
    await p.join();
    if (p.exitCode !== 0 && p.exitCode !== -15) crashed.push(`${p.name}: ${p.exitCode}`);
  }
  assert.deepEqual(crashed, [], "no worker failed (a release too many would throw)");
  // Every permit comes back (those of the dead by reclaim), and no more than the bound.
  const got = [];
  for (let i = 0; i < PERMITS; i++) got.push(await sem.acquire({ timeout: 5000 }));
  assert.ok(got.every((g) => g !== false));
  assert.equal(await sem.acquire({ block: false }), false);
  for (let i = 0; i < PERMITS; i++) sem.release();
  assert.throws(() => sem.release(), /released too many times/);
});

// ---------------------------------------------------------------------------------------------
// Python's behaviour where it differs between threading and multiprocessing: multiprocessing's

Deno.test("acquire({ block: false, timeout }) ignores the timeout, as multiprocessing does: false at once when taken", async () => {
  const lock = new Lock(), rlock = new RLock(), sem = new Semaphore(1);
  const cond = new Condition(new Lock());
  for (const l of [lock, rlock, sem, cond]) {
    const g = await l.acquire({ block: false, timeout: 5000 });
    assert.ok(g, `${l}: free, so taken`);
  }
  // Another thread (of this process) tries each: all are taken.
  const got: unknown[] = [];
  const t = new Thread({
    target: async () => {
      for (const l of [lock, rlock, sem, cond]) {
        for (
          const attempt of [
            () => l.acquire({ block: false, timeout: 5000 }),
            () => l.acquireSync({ block: false, timeout: 5000 }),
          ]
        ) {
          const t0 = performance.now();
          try {
            got.push(await attempt(), performance.now() - t0 < 2000);
          } catch (e) {
            got.push(String(e));
          }
        }
      }
    },
  });
  t.start();
  await t.join();
  assert.deepEqual(got, Array(8).fill([false, true]).flat());
  for (const l of [lock, rlock, sem, cond]) l.release();
});

Deno.test("options of the wrong shape are TypeErrors that show the right call (timeouts in ms)", async () => {
  const lock = new Lock(), rlock = new RLock(), sem = new Semaphore(1), cond = new Condition();
  // deno-lint-ignore no-explicit-any
  const any = (x: unknown) => x as any;
  const shows = (re: RegExp) => (e: unknown) => e instanceof TypeError && re.test(e.message);
  for (
    const [l, name] of [[lock, "Lock"], [rlock, "RLock"], [sem, "Semaphore"], [
      cond,
      "Condition",
    ]] as const
  ) {
    await assert.rejects(
      l.acquire(any(false)),
      shows(new RegExp(`${name}\\.acquire\\(\\) .*acquire\\(\\{ block: false \\}\\)`)),
    );
    await assert.rejects(
      l.acquire(any(5)),
      shows(/acquire\(\{ timeout: 200 \}\) \(timeouts are in milliseconds\)/),
    );
    assert.throws(() => l.acquireSync(any(true)), shows(/acquireSync\(\{ timeout: 200 \}\)/));
    assert.throws(() => l.acquireSync(any([5])), shows(/not an array/));
  }
  assert.equal(lock.locked() || rlock.locked() || sem.locked(), false, "nothing was taken");
  const ev = new Event(), barrier = new Barrier(2);
  await assert.rejects(ev.wait(any(true)), TypeError);
  await assert.rejects(ev.wait(any([5])), shows(/wait\(200\) or wait\(\{ timeout: 200 \}\)/));
  assert.throws(() => ev.waitSync(any("5")), TypeError);
  await assert.rejects(barrier.wait(any(true)), TypeError);
  await assert.rejects(barrier.wait(any([5])), shows(/Barrier\.wait\(\)/));
  assert.equal(barrier.broken, false);
  assert.throws(() => new Barrier(2, any(500)), shows(/new Barrier\(2, \{ timeout: 200 \}\)/));
});
