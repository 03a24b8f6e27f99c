// Mirrors the tutorial's first two programs: "没有设置多线程时的运行代码" (loop1 sleeps 4 s, then
// loop2 sleeps 2 s: 6 s in all) and "threading.Thread创建多线程" (the same two loops in two
// Threads, started together and joined: 4 s in all, the time of the longer one).
//
// Look for: "Sequential: all done in 6.0x s" and "Threads: all done in 4.0x s". Sleeping does
// not hold the (single) JavaScript thread, just as time.sleep releases Python's GIL.
// Run: deno run -A examples/threads_vs_sequential.ts  (DENOMP_EXAMPLE_SCALE=0.05 for a quick run)
import { Thread } from "../mod.ts";
import { ctime, sleep, stopwatch } from "./_util.ts";

async function loop1(num?: string) {
  const spent = stopwatch();
  console.log(`Start loop 1 at: ${ctime()}`);
  await sleep(4000);
  if (num !== undefined) console.log(`hihiahihia ${num}`);
  console.log(`End loop 1 at: ${ctime()}`);
  console.log(`loop 1 spent ${spent()} seconds`);
}

async function loop2(num?: string) {
  const spent = stopwatch();
  console.log(`Start loop 2 at: ${ctime()}`);
  await sleep(2000);
  if (num !== undefined) console.log(`huhahuhahuha ${num}`);
  console.log(`End loop 2 at: ${ctime()}`);
  console.log(`loop 2 spent ${spent()} seconds`);
}

async function sequential() {
  const spent = stopwatch();
  console.log(`Starting at: ${ctime()}`);
  await loop1();
  await loop2();
  console.log(`Sequential: all done in ${spent()} s`);
}

async function withThreads() {
  const spent = stopwatch();
  console.log(`Starting at: ${ctime()}`);
  const t1 = new Thread({ target: loop1, args: ["pa"] });
  t1.start();
  const t2 = new Thread({ target: loop2, args: ["pia"] });
  t2.start();
  await t1.join();
  await t2.join();
  console.log(`Threads: all done in ${spent()} s`);
}

if (import.meta.main) {
  console.log("--- one after the other ---");
  await sequential();
  console.log("--- two threads ---");
  await withThreads();
}
