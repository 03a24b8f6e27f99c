// Mirrors the tutorial's "threading.BoundedSemaphore(num)" program: four threads share a
// BoundedSemaphore(3), so three run at once and the fourth waits for a release. Its commented-out
// second release() is the point of the class: releasing past the initial value raises
// ValueError ("Semaphore released too many times" in Python), where a plain Semaphore would
// silently grow past it.
//
// Look for: "Thread 3 is running" 3 s after the others, then "ValueError: semaphore or lock
// released too many times", and a plain Semaphore's value growing to 4.
import { BoundedSemaphore, Semaphore, Thread, ValueError } from "../mod.ts";
import { sleep, stopwatch } from "./_util.ts";

const clock = stopwatch();

async function fun(semaphore: Semaphore, num: number) {
  await semaphore.acquire();
  console.log(`[${clock()} s] Thread ${num} is running.`);
  await sleep(3000);
  semaphore.release();
}

if (import.meta.main) {
  // At most 3 threads hold it, and releases cannot push it above 3.
  const semaphore = new BoundedSemaphore(3);
  const threads = [];
  for (let num = 0; num < 4; num++) {
    const t = new Thread({ target: fun, args: [semaphore, num] });
    t.start();
    threads.push(t);
  }
  for (const t of threads) await t.join();

  console.log("--- one release() too many ---");
  await semaphore.acquire();
  semaphore.release();
  try {
    semaphore.release(); // the second release of the tutorial's comment
  } catch (e) {
    if (!(e instanceof ValueError)) throw e;
    console.log(`${e.name}: ${e.message}`);
  }
  console.log(`BoundedSemaphore(3) value: ${semaphore.getValue()}`);

  const plain = new Semaphore(3);
  plain.release(); // no bound: this just adds a permit
  console.log(`Semaphore(3) after an extra release: value ${plain.getValue()}`);
}
