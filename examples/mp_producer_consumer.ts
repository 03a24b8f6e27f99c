// Mirrors the tutorial's two multiprocessing.Queue producer/consumer programs ("消费者生产者模型"
// and "多生产者多消费者模型，发送结束信号是个麻烦"), and does what they were after:
//
// 1. One cook makes 10 dishes, one eater eats them. The tutorial's eater polls with get_nowait()
//    and quits at the first Empty: if it looks before the cook's first dish is there, it eats
//    nothing (which is what the tutorial's output shows). Its "other way" sends None as an
//    end signal; with a blocking get() that is the fix, and all 10 dishes are eaten.
// 2. Ten cooks and ten eaters: "sending the end signal is a hassle". The tutorial guesses with
//    sleeps and empty(), which can quit too early or wait too long. The fix: once every cook is
//    joined, the main process puts one end signal per eater. All 100 dishes are eaten.
//    (joinable_queue.ts shows the other fix, JoinableQueue.)
//
// Look for: "the polling eater ate N of 10" (N may be anything), "ate 10 of 10 dishes", and
// "100 dishes eaten in all".
import { Empty, getPid, Process, Queue } from "../mod.ts";
import { sleep } from "./_util.ts";

export async function producer(q: Queue<string | null>, j: number, dishes: number) {
  console.log(`cook ${j + 1} (pid ${getPid()}) starts cooking`);
  for (let i = 0; i < dishes; i++) await q.put(`dish ${i + 1} of cook ${j + 1}`);
}

/** The tutorial's eater: polls, and takes the first Empty as "no more dishes". */
export async function pollingConsumer(q: Queue<string | null>, eaten: Queue<number>) {
  let n = 0;
  for (;;) {
    await sleep(200);
    try {
      console.log(`${getPid()} ate ${q.getNowait()}`);
      n++;
    } catch (e) {
      if (!(e instanceof Empty)) throw e;
      break; // maybe the cook is just slow: this may end too early
    }
  }
  await eaten.put(n);
}

/** The fix: wait for dishes, stop at the end signal. */
export async function consumer(q: Queue<string | null>, eaten: Queue<number>) {
  let n = 0;
  for (;;) {
    const dish = await q.get();
    if (dish === null) break; // the end signal
    n++;
    if (n % 5 === 0) console.log(`eater ${getPid()} has eaten ${n} dishes (last: ${dish})`);
  }
  await eaten.put(n);
}

async function oneCookOneEater() {
  const q = new Queue<string | null>();
  const eaten = new Queue<number>();

  const p = new Process({ target: producer, args: [q, 0, 10] });
  const c = new Process({ target: pollingConsumer, args: [q, eaten] });
  p.start();
  c.start();
  await p.join();
  await c.join();
  console.log(`the polling eater ate ${await eaten.get()} of 10 dishes`);
  while (!q.empty()) await q.get(); // what it left

  const p2 = new Process({ target: producer, args: [q, 0, 10] });
  const c2 = new Process({ target: consumer, args: [q, eaten] });
  p2.start();
  c2.start();
  await p2.join();
  await q.put(null); // the cook is done: tell the eater
  await c2.join();
  console.log(`with an end signal the eater ate ${await eaten.get()} of 10 dishes`);
}

async function tenCooksTenEaters() {
  const q = new Queue<string | null>();
  const eaten = new Queue<number>();
  const cooks = [], eaters = [];
  for (let i = 0; i < 10; i++) {
    const p = new Process({ target: producer, args: [q, i, 10] });
    const c = new Process({ target: consumer, args: [q, eaten] });
    p.start();
    c.start();
    cooks.push(p);
    eaters.push(c);
  }
  for (const p of cooks) await p.join();
  for (let i = 0; i < eaters.length; i++) await q.put(null); // one end signal per eater
  for (const c of eaters) await c.join();
  let total = 0;
  for (let i = 0; i < eaters.length; i++) total += await eaten.get();
  console.log(`${total} dishes eaten in all`);
}

if (import.meta.main) {
  console.log("--- one cook, one eater ---");
  await oneCookOneEater();
  console.log("--- ten cooks, ten eaters ---");
  await tenCooksTenEaters();
  console.log("program ends");
}
