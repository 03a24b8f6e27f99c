// Mirrors the tutorial's two `queue.Queue(maxsize=10)` programs: put 0..9, get some, check
// full() and qsize(), put "haha", then drain the queue while it is not empty. It also runs what
// the tutorial's text describes around them: a LifoQueue (a stack), a PriorityQueue (lowest
// first), and the non-blocking calls that raise Full and Empty.
//
// denomp has one family of queues for threads and processes alike, so `queue.Queue` and
// `multiprocessing.Queue` are both `Queue` here.
//
// Look for: "the size is : 8" then 2..9 and haha; "the size is : 0" then haha; the LIFO order
// 3 2 1; the priority order; "Full" and "Empty".
import { Empty, Full, LifoQueue, PriorityQueue, Queue } from "../mod.ts";

async function program(gets: number) {
  const q = new Queue<number | string>(10);
  for (let i = 0; i < 10; i++) await q.put(i);
  for (let i = 0; i < gets; i++) await q.get();
  console.log(q.full());
  console.log("the size is :", q.qsize());
  await q.put("haha");
  while (!q.empty()) console.log(await q.get());
}

if (import.meta.main) {
  console.log("--- Queue(maxsize=10), two gets ---");
  await program(2);
  console.log("--- Queue(maxsize=10), ten gets ---");
  await program(10);

  console.log("--- LifoQueue: last in, first out ---");
  const stack = new LifoQueue<number>();
  for (const i of [1, 2, 3]) await stack.put(i);
  const popped = [];
  while (!stack.empty()) popped.push(await stack.get());
  console.log("LIFO order:", popped.join(" "));

  console.log("--- PriorityQueue: lowest first ---");
  const jobs = new PriorityQueue<[number, string]>();
  await jobs.put([3, "write the report"]);
  await jobs.put([1, "fix the outage"]);
  await jobs.put([2, "answer the mail"]);
  while (!jobs.empty()) {
    const [priority, job] = await jobs.get();
    console.log(`priority ${priority}: ${job}`);
  }

  console.log("--- put/get without waiting ---");
  const small = new Queue<string>(1);
  small.putNowait("only one fits");
  try {
    small.putNowait("one too many"); // q.put_nowait(item) == q.put(item, block=False)
  } catch (e) {
    if (!(e instanceof Full)) throw e;
    console.log("putNowait on a full queue: Full");
  }
  try {
    await small.put("still too many", { timeout: 10 }); // waits 10 ms for room, then Full
  } catch (e) {
    if (!(e instanceof Full)) throw e;
    console.log("put with a timeout on a full queue: Full");
  }
  console.log(small.getNowait());
  try {
    small.getNowait(); // q.get_nowait() == q.get(block=False)
  } catch (e) {
    if (!(e instanceof Empty)) throw e;
    console.log("getNowait on an empty queue: Empty");
  }
}
