// Mirrors the tutorial's "死锁实例": func_1 takes lock_1 and then wants lock_2, func_2 takes
// lock_2 and then wants lock_1. Each waits for the lock the other holds, forever.
//
// This version never hangs, and shows denomp's two ways of finding a deadlock:
// 1. Watching: `snapshot().deadlocks` lists every cycle in the wait-for graph as soon as it
//    forms (the dashboard shows the same). The main thread sees it, reports it, and aborts the
//    threads' waits (every blocking call takes a `signal`), so they release what they hold.
// 2. Refusing: with `new Lock({ detectDeadlock: true })` (or `setDeadlockDetection(true)` for
//    every lock), the acquire that would close the cycle rejects with a `DeadlockError` naming
//    it, instead of waiting forever; its thread lets go, and the other one goes on.
// Then it runs the tutorial's fix: acquire locks in one global order (the tutorial says "by
// ascending object id"), so nobody ever holds the second lock while waiting for the first.
//
// Look for: "deadlock detected", "DeadlockError", then "fixed: both functions finished".
import { currentThread, DeadlockError, Lock, snapshot, Thread } from "../mod.ts";
import { scaled, sleep } from "./_util.ts";

const lock_1 = new Lock({ name: "lock_1" });
const lock_2 = new Lock({ name: "lock_2" });

async function func_1(signal: AbortSignal) {
  console.log("func_1 starting");
  await lock_1.acquire({ signal });
  console.log("func_1 acquired lock_1");
  await sleep(2000); // long enough for func_2 to take lock_2
  console.log("func_1 waits for lock_2");
  try {
    await lock_2.acquire({ signal });
  } catch (e) {
    console.log(`func_1 gave up waiting for lock_2 (${(e as Error).name})`);
    lock_1.release();
    return;
  }
  console.log("func_1 acquired lock_2");
  lock_2.release();
  lock_1.release();
  console.log("func_1 released both locks");
}

async function func_2(signal: AbortSignal) {
  console.log("func_2 starting");
  await lock_2.acquire({ signal });
  console.log("func_2 acquired lock_2");
  await sleep(4000);
  console.log("func_2 waits for lock_1");
  try {
    await lock_1.acquire({ signal });
  } catch (e) {
    console.log(`func_2 gave up waiting for lock_1 (${(e as Error).name})`);
    lock_2.release();
    return;
  }
  console.log("func_2 acquired lock_1");
  lock_1.release();
  lock_2.release();
  console.log("func_2 released both locks");
}

// ---- refusing: locks that detect deadlocks ----

const guarded_1 = new Lock({ name: "guarded_1", detectDeadlock: true });
const guarded_2 = new Lock({ name: "guarded_2", detectDeadlock: true });

/** Takes `first`, later `second`; a DeadlockError makes it let go of `first`. */
function careful(first: Lock, second: Lock, ms: number) {
  return async () => {
    const me = currentThread().name;
    await first.acquire();
    await sleep(ms);
    try {
      await second.acquire();
    } catch (e) {
      if (!(e instanceof DeadlockError)) throw e;
      console.log(`${me} refused: ${e.name}: ${e.message}`);
      first.release(); // the other thread can go on now
      return;
    }
    console.log(`${me} took both guarded locks`);
    second.release();
    first.release();
  };
}

// ---- the fix: one order for everybody ----

const rank = new Map([[lock_1, 1], [lock_2, 2]]); // the tutorial's "object id"

/** Acquires `locks` in ascending rank, whatever order the caller names them in. */
async function acquireInOrder(...locks: Lock[]) {
  const ordered = [...locks].sort((a, b) => rank.get(a)! - rank.get(b)!);
  for (const l of ordered) await l.acquire();
  return () => ordered.reverse().forEach((l) => l.release());
}

async function func_1Fixed() {
  const release = await acquireInOrder(lock_1, lock_2);
  console.log("func_1 holds lock_1 and lock_2");
  await sleep(2000);
  release();
  console.log("func_1 released both locks");
}

async function func_2Fixed() {
  const release = await acquireInOrder(lock_2, lock_1); // same order inside: lock_1 first
  console.log("func_2 holds lock_1 and lock_2");
  await sleep(4000);
  release();
  console.log("func_2 released both locks");
}

if (import.meta.main) {
  console.log("--- taking the locks in opposite orders ---");
  const stop = new AbortController();
  const t1 = new Thread({ name: "func_1", target: func_1, args: [stop.signal] });
  const t2 = new Thread({ name: "func_2", target: func_2, args: [stop.signal] });
  t1.start();
  t2.start();
  // Watching: the wait-for graph has a cycle as soon as func_2 waits for lock_1 (about 4 s).
  for (const end = performance.now() + scaled(20_000); performance.now() < end;) {
    const [cycle] = snapshot().deadlocks;
    if (cycle) {
      const who = cycle.map((s) => `${s.process} holds ${s.holds} and waits for ${s.waitsFor}`);
      console.log(`deadlock detected: ${who.join("; ")}`);
      break;
    }
    await sleep(100);
  }
  stop.abort(); // their acquire() calls reject, they release what they hold
  await t1.join();
  await t2.join();

  console.log("--- the same with locks that detect deadlocks ---");
  const g1 = new Thread({ name: "func_1", target: careful(guarded_1, guarded_2, 2000) });
  const g2 = new Thread({ name: "func_2", target: careful(guarded_2, guarded_1, 4000) });
  g1.start();
  g2.start();
  await g1.join();
  await g2.join();

  console.log("--- taking the locks in one order ---");
  const f1 = new Thread({ target: func_1Fixed });
  const f2 = new Thread({ target: func_2Fixed });
  f1.start();
  f2.start();
  await f1.join(scaled(20_000));
  await f2.join(scaled(20_000));
  console.log(
    f1.isAlive() || f2.isAlive() ? "still stuck?!" : "fixed: both functions finished, no deadlock",
  );
  console.log("All done");
}
