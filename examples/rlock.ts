// Mirrors the tutorial's "可重入锁（递归锁）示例---RLock": five threads each take an RLock (with a
// 1 s timeout), bump a shared counter, then take the same lock again inside and release it twice.
// The tutorial notes that with a plain Lock this fails: a Lock is not reentrant, so the inner
// acquire waits for the thread itself. The second part shows that, with a timeout instead of a
// hang.
//
// Look for: "Thread-N set num to 1" ... "5", then "Lock: the inner acquire timed out".
import { Lock, RLock, Thread } from "../mod.ts";
import { scaled, sleep } from "./_util.ts";

let num = 0;
const mutex = new RLock(); // with `new Lock()` the inner acquire below would never return

class MyThread extends Thread {
  override async run() {
    await sleep(1000);
    if (await mutex.acquire({ timeout: scaled(1000) })) {
      num += 1;
      console.log(`${this.name} set num to ${num}`);
      await mutex.acquire(); // the same thread again: an RLock just counts it
      mutex.release();
      mutex.release(); // as many releases as acquires
    }
  }
}

async function testing() {
  const threads = [];
  for (let i = 0; i < 5; i++) {
    const t = new MyThread();
    t.start();
    threads.push(t);
  }
  for (const t of threads) await t.join();
}

async function plainLock() {
  const lock = new Lock();
  await lock.acquire();
  // A Lock has no owner: this acquire waits for a release that only this thread could do.
  const again = await lock.acquire({ timeout: scaled(1000) });
  console.log(
    again ? "Lock: the inner acquire succeeded?!" : "Lock: the inner acquire timed out (deadlock)",
  );
  lock.release();
}

if (import.meta.main) {
  await testing();
  console.log(`RLock: num is ${num}, lock free again: ${!mutex.locked()}`);
  await plainLock();
}
