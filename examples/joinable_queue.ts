// Mirrors the tutorial's "JoinableQueue举例实现多生产者多消费者模型": 5 producers put 10 products
// each into one JoinableQueue and then join() it, which waits until every product put has been
// marked done; 5 daemon consumers get products forever and call taskDone() for each. The main
// process joins the producers only: when they return, everything was consumed, and the daemon
// consumers end with the main process. (Joining a consumer would wait forever, as the tutorial
// says. Its run failed with a SyntaxError from Jupyter, not from the program.)
//
// Look for: 50 "ate" lines, "producer N done" only after its products were eaten, and
// "all 50 products consumed" at the end; the program exits although the consumers loop forever.
import { getPid, JoinableQueue, Process } from "../mod.ts";

export async function producer(q: JoinableQueue<string>, j: number) {
  console.log(`producer ${j + 1} starts producing`);
  for (let i = 0; i < 10; i++) await q.put(`product ${i + 1} of producer ${j + 1}`);
  console.log(`producer ${j + 1} has put all its products`);
  await q.join(); // until every item put so far has been marked done
  console.log(`producer ${j + 1} done: everything was consumed`);
}

export async function consumer(q: JoinableQueue<string>) {
  for (;;) {
    const item = await q.get();
    console.log(`process ${getPid()} ate ${item}`);
    q.taskDone(); // tells join() this item is finished
  }
}

if (import.meta.main) {
  console.log("main program starts");
  const q = new JoinableQueue<string>();
  const producers = [];
  for (let i = 0; i < 5; i++) {
    const p = new Process({ target: producer, args: [q, i] });
    const c = new Process({ target: consumer, args: [q] });
    c.daemon = true; // set before start(); ends with the main process
    p.start();
    c.start();
    producers.push(p);
  }
  for (const p of producers) await p.join();
  // no c.join(): the consumers never return
  console.log(`all 50 products consumed (${q.qsize()} left in the queue); main program ends`);
}
