// Mirrors the tutorial's "threading.Semaphore(num)" program: six threads share a Semaphore(2),
// so they run two at a time, 3 s per pair (pairs start at 0 s, 3 s and 6 s).
//
// The tutorial's docstring warns about an acquire() that is never released: the permit is lost,
// and once both are gone the later threads wait forever. The second part shows it, with a
// timeout so that nothing hangs: threads 0 and 1 run, threads 2 to 5 never get a permit.
//
// Look for: "at most 2 threads ran at once", then "permits leaked".
import { Semaphore, Thread } from "../mod.ts";
import { scaled, sleep, stopwatch } from "./_util.ts";

let running = 0, maxRunning = 0;
const clock = stopwatch();

async function fun(semaphore: Semaphore, num: number) {
  await semaphore.acquire(); // the counter goes down by one, or we wait for a release
  running++;
  maxRunning = Math.max(maxRunning, running);
  console.log(`[${clock()} s] Thread ${num} is running.`);
  await sleep(3000);
  running--;
  semaphore.release(); // the counter goes up by one
}

async function leaky(semaphore: Semaphore, num: number) {
  // Python would wait forever here once the permits are gone; a timeout ends the example.
  if (!(await semaphore.acquire({ timeout: scaled(10_000) }))) {
    console.log(`Thread ${num} gave up after 10 s: the permits leaked`);
    return;
  }
  console.log(`Thread ${num} is running.`);
  await sleep(3000);
  // The mistake: no semaphore.release(), so this permit is never given back.
}

if (import.meta.main) {
  const semaphore = new Semaphore(2);
  const threads = [];
  for (let num = 0; num < 6; num++) {
    const t = new Thread({ target: fun, args: [semaphore, num] });
    t.start();
    threads.push(t);
  }
  for (const t of threads) await t.join();
  console.log(`at most ${maxRunning} threads ran at once`);

  console.log("--- acquire() without release() ---");
  const leakySemaphore = new Semaphore(2);
  const leakyThreads = [];
  for (let num = 0; num < 6; num++) {
    const t = new Thread({ target: leaky, args: [leakySemaphore, num] });
    t.start();
    leakyThreads.push(t);
  }
  for (const t of leakyThreads) await t.join();
  console.log(`permits left: ${leakySemaphore.getValue()} of 2`);
}
