// Mirrors the tutorial's threading.Condition programs:
//
// 1. "多线程条件类示例": a Producer holds the condition's lock and makes one item a second until
//    there are 5, then notify()s and wait()s (releasing the lock while it waits). Two customers
//    with 3 coins each buy one item at a time; one that finds nothing notifies the producer and
//    waits. The tutorial's producer is a daemon that loops forever; a JavaScript task cannot be
//    killed from outside, so here the main thread closes the shop once both customers are done
//    and wakes the producer to let it leave.
// 2. "condition案例2" (the same as the program after it, with the start order swapped): 5 consumers
//    and 4 producers share a stock of 1000. Producers add a random 100-1000 and notifyAll(), ten
//    times in all; consumers take a random 100-1000, wait()ing while the stock is too small, and
//    go home once the ten productions are done and the stock cannot serve them.
//
// Look for: "Customer-1 has no money left" and "Customer-2 ..." in part 1; in part 2, ten
// "production" lines and the final "stock check ... ok".
import { Condition, currentThread, Thread } from "../mod.ts";
import { randint, sleep } from "./_util.ts";

// ---- 1. one producer, two customers ----

let num = 0;
let shopOpen = true;
const con = new Condition();

class Producer extends Thread {
  override async run() {
    await con.acquire();
    while (shopOpen) {
      num += 1;
      console.log(`produced 1, now there are ${num}`);
      await sleep(1000);
      if (num >= 5) {
        console.log("reached 5, stop producing");
        con.notify(); // wake a customer
        await con.wait(); // release the lock and wait; take it back when woken
      }
    }
    con.release();
    console.log("the shop is closed, the producer goes home");
  }
}

class Customer extends Thread {
  money = 3;

  override async run() {
    while (this.money > 0) {
      // The lock is taken per purchase, so that two customers can take turns.
      await con.acquire();
      if (num <= 0) {
        console.log(`sold out, ${currentThread().name} tells the producer`);
        con.notify();
        await con.wait();
      }
      this.money -= 1;
      num -= 1;
      console.log(`${currentThread().name} bought 1, ${num} left`);
      con.release();
      await sleep(1000);
    }
    console.log(`${currentThread().name} has no money left - going home`);
  }
}

async function oneProducerTwoCustomers() {
  const p = new Producer({ daemon: true });
  const c1 = new Customer({ name: "Customer-1" });
  const c2 = new Customer({ name: "Customer-2" });
  p.start();
  c1.start();
  c2.start();
  await c1.join();
  await c2.join();
  // Python simply exits here, killing the daemon producer. Ask it to leave instead.
  await con.acquire();
  shopOpen = false;
  con.notifyAll();
  con.release();
  await p.join();
}

// ---- 2. producers and consumers around a stock ----

let gProduct = 1000;
const gTotalTimes = 10;
let gTimes = 0;
let gProduced = 0, gConsumed = 0;
const gCondition = new Condition();

class StockProducer extends Thread {
  override async run() {
    for (;;) {
      await gCondition.acquire();
      const product = randint(100, 1000);
      if (gTimes >= gTotalTimes) {
        gCondition.release();
        break;
      }
      gProduct += product;
      gProduced += product;
      console.log(
        `production ${gTimes + 1}: ${currentThread().name} made ${product}, stock ${gProduct}`,
      );
      gTimes += 1;
      gCondition.notifyAll(); // wakes every waiting consumer; does not release the lock
      gCondition.release(); // so release it by hand
      await sleep(500);
    }
  }
}

class StockConsumer extends Thread {
  override async run() {
    for (;;) {
      await gCondition.acquire();
      const product = randint(100, 1000);
      while (gProduct < product) {
        if (gTimes >= gTotalTimes) {
          gCondition.release();
          console.log(`${currentThread().name} goes home (wanted ${product}, ${gProduct} left)`);
          return; // return, not break: leave both loops
        }
        console.log(`${currentThread().name} waits: stock ${gProduct} < ${product}`);
        await gCondition.wait();
      }
      gProduct -= product;
      gConsumed += product;
      console.log(`${currentThread()} took ${product}, ${gProduct} left`);
      gCondition.release();
      await sleep(500);
    }
  }
}

async function stock() {
  const threads: Thread[] = [];
  for (let i = 0; i < 5; i++) threads.push(new StockConsumer({ name: `consumer${i}` }));
  for (let i = 0; i < 4; i++) threads.push(new StockProducer({ name: `producer${i}` }));
  for (const t of threads) t.start();
  for (const t of threads) await t.join();
  console.log(
    `stock check: 1000 + ${gProduced} - ${gConsumed} = ${gProduct}: ${
      1000 + gProduced - gConsumed === gProduct ? "ok" : "WRONG"
    }`,
  );
}

if (import.meta.main) {
  console.log("--- 1. one producer, two customers ---");
  await oneProducerTwoCustomers();
  console.log("--- 2. four producers, five consumers ---");
  await stock();
}
