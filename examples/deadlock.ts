// Mirrors the tutorial's "死锁实例": func_1 takes lock_1 and then wants lock_2, func_2 takes
// lock_2 and then wants lock_1. Each waits for the lock the other holds, forever.
//
// This version never hangs. The main thread joins both threads with a timeout; when they are
// still alive past it, it reports the deadlock and aborts their waits (every blocking call takes
// a `signal`), so they give up and release what they hold. Then it runs the tutorial's fix:
// acquire locks in one global order (the tutorial says "by ascending object id"), so nobody
// ever holds the second lock while waiting for the first.
//
// Look for: "deadlock detected", then "fixed: both functions finished".
import { Lock, Thread } from "../mod.ts";
import { scaled, sleep } from "./_util.ts";

const lock_1 = new Lock();
const lock_2 = new Lock();

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
  const t1 = new Thread({ target: func_1, args: [stop.signal] });
  const t2 = new Thread({ target: func_2, args: [stop.signal] });
  t1.start();
  t2.start();
  await t1.join(scaled(8000)); // both should be done in about 4 s
  await t2.join(0);
  if (t1.isAlive() && t2.isAlive()) {
    console.log("deadlock detected: both threads are still waiting after 8 s");
    stop.abort(); // their acquire() calls reject, they release what they hold
  }
  await t1.join();
  await t2.join();

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
