// Mirrors the tutorial's two threaded producer/consumer programs ("生产者消费者模型举例"):
//
// 1. A producer puts "No.<count>" every 0.5 s into a Queue(maxsize=5) and a consumer, Tom, takes
//    one every 1.5 s. The producer is faster, so the queue fills up and `put` waits for room:
//    the queue is the buffer that decouples them. The tutorial notes "这段代码停不下来" (it never
//    stops); here the main thread stops both after 8 s by aborting their waits.
// 2. Producer and Consumer subclasses of Thread around a queue that starts with 500 items:
//    two producers add 100 whenever it holds fewer than 1000, five consumers take 3 whenever it
//    holds more than 100. The tutorial's version is broken (bad indentation, start() commented
//    out); this one runs it for 3 s and then stops every thread with an Event.
//
// Look for: "queue is full" (the producer waits), "stopped after 8 s", "active threads: 8", and
// the final stock check "500 + produced - consumed = left".
import { activeCount, Event, Full, Queue, Thread } from "../mod.ts";
import { scaled, sleep } from "./_util.ts";

// ---- 1. one producer, one consumer, a bounded queue ----

async function producer(q: Queue<string>, signal: AbortSignal) {
  let count = 1;
  try {
    for (;;) {
      const item = `No.${count}`;
      try {
        q.putNowait(item);
      } catch (e) {
        if (!(e instanceof Full)) throw e;
        console.log(`queue is full (${q.qsize()} items): Producer waits for room`);
        await q.put(item, { signal }); // waits until Tom takes one (or we are stopped)
      }
      console.log(`Producer put ${item}`);
      await sleep(500);
      signal.throwIfAborted();
      for (let i = 0; i < 10; i++) count += i;
    }
  } catch (e) {
    if (!signal.aborted) throw e;
  }
}

async function consumer(name: string, q: Queue<string>, signal: AbortSignal) {
  try {
    for (;;) {
      console.log(`${name} get ${await q.get({ signal })}`);
      await sleep(1500);
      signal.throwIfAborted();
    }
  } catch (e) {
    if (!signal.aborted) throw e;
  }
}

async function oneProducerOneConsumer() {
  const q = new Queue<string>(5);
  const stop = new AbortController();
  const p = new Thread({ target: producer, args: [q, stop.signal] });
  const c = new Thread({ target: consumer, args: ["Tom", q, stop.signal] });
  p.start();
  c.start();
  await sleep(8000);
  stop.abort(); // wakes a put or get that is waiting, and ends both loops
  await p.join();
  await c.join();
  console.log(`stopped after 8 s with ${q.qsize()} items in the queue`);
}

// ---- 2. Thread subclasses, two producers, five consumers ----

let stock: Queue<string>;
const stopShop = new Event();
let produced = 0, consumed = 0;

class Producer extends Thread {
  override async run() {
    let count = 0;
    while (!stopShop.isSet()) {
      if (stock.qsize() < 1000) {
        for (let i = 0; i < 100; i++) {
          count += 1;
          await stock.put(`Producing${count}product`);
        }
        produced += 100;
        console.log(`${this.name} produced 100 (up to Producing${count}product)`);
      }
      await stopShop.wait(scaled(500)); // sleep 0.5 s, or less if told to stop
    }
  }
}

class Consumer extends Thread {
  override async run() {
    while (!stopShop.isSet()) {
      if (stock.qsize() > 100) {
        const got = [];
        for (let i = 0; i < 3; i++) got.push(await stock.get());
        consumed += 3;
        console.log(`${this.name} consumes ${got.join(", ")}`);
      }
      await stopShop.wait(scaled(1000));
    }
  }
}

async function subclasses() {
  stock = new Queue<string>();
  for (let i = 0; i < 500; i++) await stock.put(`initial product ${i}`);
  const threads: Thread[] = [];
  for (let i = 0; i < 2; i++) threads.push(new Producer());
  for (let i = 0; i < 5; i++) threads.push(new Consumer());
  for (const t of threads) t.start();
  console.log(`active threads: ${activeCount()}`); // 2 producers + 5 consumers + the main thread
  await sleep(3000);
  stopShop.set();
  for (const t of threads) await t.join();
  const left = stock.qsize();
  console.log(
    `stock check: 500 + ${produced} produced - ${consumed} consumed = ${left} left: ${
      500 + produced - consumed === left ? "ok" : "WRONG"
    }`,
  );
}

if (import.meta.main) {
  console.log("--- one producer, one consumer, Queue(maxsize=5) ---");
  await oneProducerOneConsumer();
  console.log("--- Producer and Consumer threads ---");
  await subclasses();
}
