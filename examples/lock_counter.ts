// Mirrors the tutorial's "threading.Lock()" program: one thread adds 1 and another subtracts 1,
// 999,999 times each (range(1, 1000000)), on a shared `sum`; with the lock around each update,
// the result is 0.
//
// Without a lock, Python loses updates when the GIL switches threads between the read and the
// write of `sum += 1`. A JavaScript thread only switches at an `await`, so the race is made
// visible with one between the read and the write; the same code with the lock ends at 0.
//
// Look for: "without a lock: Done to <not 0>" and "with a lock: Done to 0".
import { Lock, Thread } from "../mod.ts";
import { ctime } from "./_util.ts";

let sum = 0;
const loopsum = 1_000_000;
const lock = new Lock();

/** A read and a write of `sum` with a thread switch between them, like `sum += delta` can be. */
async function update(delta: number) {
  const read = sum;
  await null; // another thread may run here
  sum = read + delta;
}

async function myAddUnlocked() {
  for (let i = 1; i < loopsum; i++) await update(+1);
}

async function myMinuUnlocked() {
  for (let i = 1; i < loopsum; i++) await update(-1);
}

async function myAdd() {
  for (let i = 1; i < loopsum; i++) {
    await lock.acquire();
    try {
      await update(+1);
    } finally {
      lock.release();
    }
  }
}

async function myMinu() {
  for (let i = 1; i < loopsum; i++) {
    using _ = await lock.acquire(); // the same, released at the end of the block
    await update(-1);
  }
}

async function run(label: string, add: () => Promise<void>, minu: () => Promise<void>) {
  sum = 0;
  const start = performance.now();
  console.log(`start at: ${ctime()}`);
  console.log(`starting from ${sum}`);
  const t1 = new Thread({ target: add });
  const t2 = new Thread({ target: minu });
  t1.start();
  t2.start();
  await t1.join();
  await t2.join();
  console.log(`${label}: Done to ${sum}`);
  console.log(`end at ${ctime()} (${Math.round(performance.now() - start)} ms)`);
}

if (import.meta.main) {
  await run("without a lock", myAddUnlocked, myMinuUnlocked);
  await run("with a lock", myAdd, myMinu);
}
