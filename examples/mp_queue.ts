// Mirrors the tutorial's "multiprocessing.Queue简单举例": a Queue(15) starts with "game start";
// five "put" processes each putNowait() 0, 1, 2 and five "out" processes each getNowait() three
// times, all at once. A put on a full queue raises Full and a get on an empty one raises Empty
// at once (no waiting), so each process may stop early; what is left in the queue is printed
// at the end. The outcome depends on timing, as in the tutorial.
//
// As in Python's spawn mode, the queue is made under `if (import.meta.main)` and passed to the
// children in `args`: a module-level `new Queue(15)` would make a new queue in every worker.
//
// Look for: "put N" / "got N" lines, possibly "put blocked: the queue is full" or "get blocked:
// the queue is empty", then "items left in q: <n>" with <n> = 16 - gets that succeeded.
import { Empty, Full, getPid, Process, Queue } from "../mod.ts";

export function put(q: Queue<number | string>, done: Queue<number>) {
  let n = 0;
  try {
    for (let i = 0; i < 3; i++) {
      q.putNowait(i);
      n++;
      console.log(`${getPid()} put ${i}`);
    }
  } catch (e) {
    if (!(e instanceof Full)) throw e;
    console.log(`${getPid()}: put blocked: the queue is full`);
  }
  done.putNowait(n);
}

export function out(q: Queue<number | string>, done: Queue<number>) {
  let n = 0;
  try {
    for (let i = 0; i < 3; i++) {
      const item = q.getNowait();
      n++;
      console.log(`${getPid()} got ${JSON.stringify(item)}`);
    }
  } catch (e) {
    if (!(e instanceof Empty)) throw e;
    console.log(`${getPid()}: get blocked: the queue is empty`);
  }
  done.putNowait(-n);
}

if (import.meta.main) {
  const start = performance.now();
  console.log("main program starts");
  const q = new Queue<number | string>(15);
  const done = new Queue<number>(); // each child reports how many it put (+) or got (-)
  await q.put("game start");
  const putL = [], outL = [];
  for (let i = 0; i < 5; i++) {
    const o = new Process({ target: out, args: [q, done] });
    const p = new Process({ target: put, args: [q, done] });
    p.start();
    o.start();
    putL.push(p);
    outL.push(o);
  }
  for (const p of putL) await p.join();
  for (const o of outL) await o.join();
  let puts = 1, gets = 0;
  for (let i = 0; i < 10; i++) {
    const n = await done.get();
    if (n >= 0) puts += n;
    else gets -= n;
  }
  console.log(`${puts} items put, ${gets} got`);
  console.log(`items left in q: ${q.qsize()} (expected ${puts - gets})`);
  console.log(`total time: ${((performance.now() - start) / 1000).toFixed(2)} s`);
}
