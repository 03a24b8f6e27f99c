// Mirrors the tutorial's four threading.Event programs (friends at a hotpot dinner, "吃火锅",
// wait for the signal to start eating):
//
// 1. Two threads wait(); the main thread set()s the event after 1 s and both start eating.
// 2. The same with a Thread subclass (Myhuoguo) and three friends; set() after 0.2 s.
// 3. wait(timeout=0.1): the friends stop waiting after 0.1 s and start eating without the
//    signal, long before the main thread, which "overslept", says so at 3 s.
// 4. The event is set before the threads start: wait() does not block at all.
//
// Look for, in each part, whether "starts eating" comes after or before the main thread's line.
import { currentThread, Event, Thread } from "../mod.ts";
import { scaled, sleep } from "./_util.ts";

let event = new Event();
let waitTimeout: number | undefined;

async function chihuoguo(name: string) {
  console.log(`${currentThread().name} started`);
  console.log(`friend ${name} sits down at the table`);
  await sleep(1000);
  const signalled = await event.wait(waitTimeout); // false when the timeout passed first
  console.log(`${currentThread().name} ${signalled ? "got the signal" : "stopped waiting"}`);
  console.log(`friend ${name} starts eating`);
}

class Myhuoguo extends Thread {
  constructor(readonly people: string) {
    super();
  }

  override async run() {
    await chihuoguo(this.people);
    console.log(`thread ended: ${currentThread().name}`);
  }
}

async function part1() {
  console.log("--- 1. two threads wait for the signal ---");
  event = new Event();
  const t1 = new Thread({ target: chihuoguo, args: ["xiaoming"] });
  const t2 = new Thread({ target: chihuoguo, args: ["xiaobai"] });
  t1.start();
  t2.start();
  await sleep(1000);
  console.log("main thread: everybody can start eating");
  event.set();
  await t1.join();
  await t2.join();
}

async function part2() {
  console.log("--- 2. a Thread subclass ---");
  event = new Event();
  const threads = ["xb", "xh", "xc"].map((name) => new Myhuoguo(name));
  for (const t of threads) t.start();
  await sleep(200);
  console.log("main thread: everyone is here, let's eat");
  event.set();
  for (const t of threads) await t.join();
}

async function part3() {
  console.log("--- 3. wait(timeout=0.1) ---");
  event = new Event();
  waitTimeout = scaled(100);
  const t1 = new Thread({ target: chihuoguo, args: ["xiaoming"] });
  const t2 = new Thread({ target: chihuoguo, args: ["xiaobai"] });
  t1.start();
  t2.start();
  await sleep(3000);
  console.log("main thread (overslept): everybody can start eating");
  event.set();
  await t1.join();
  await t2.join();
  waitTimeout = undefined;
}

async function part4() {
  console.log("--- 4. set() before anyone waits ---");
  event = new Event();
  event.set(); // stays set until clear(): wait() returns at once
  const t1 = new Thread({ target: chihuoguo, args: ["xiaoming"] });
  const t2 = new Thread({ target: chihuoguo, args: ["xiaobai"] });
  t1.start();
  t2.start();
  await sleep(1000);
  console.log("main thread: everybody can start eating (the event was already set)");
  event.set();
  await t1.join();
  await t2.join();
}

if (import.meta.main) {
  await part1();
  await part2();
  await part3();
  await part4();
}
