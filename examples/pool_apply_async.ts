// Mirrors the tutorial's two Pool programs:
//
// 1. "异步非阻塞执行apply_async()": a Pool(4) runs 8 downloads of 1-3 s with applyAsync(), then
//    close() and join(). Four run at once, so the 8 downloads take about two rounds (4-6 s), not
//    the 8-24 s of running them one by one.
// 2. "apply_async中的callback回调函数": a Pool(3) runs 4 downloads that print 3 lines a second
//    and return { result: 1, info: "download complete!" }. Each result is handed to a callback
//    that runs in the main process (its pid is the main pid), as soon as that task is done.
//
// The pool runs the task in worker processes that import this module, so the task functions
// are exported and the main program sits under `if (import.meta.main)`.
//
// Look for: in part 1, at most 4 distinct worker pids and "downloads took"; in part 2, four
// "callback in pid <main pid>: got download complete!" lines, then "program ends".
import { getPid, getPpid, Pool } from "../mod.ts";
import { randint, sleep, stopwatch } from "./_util.ts";

export async function download(taskname: number) {
  console.log(`worker pid ${getPid()}: now downloading ${taskname}`);
  await sleep(randint(1, 3) * 1000);
}

async function runtask() {
  const spent = stopwatch();
  const pool = new Pool({ processes: 4 });
  for (let task = 0; task < 8; task++) pool.applyAsync(download, [task]);
  pool.close(); // no more tasks
  await pool.join(); // wait until the workers have done them all
  console.log(`downloads took ${spent()} s`);
}

export async function downloadFile(f: string) {
  console.log(`in the pool: pid = ${getPid()}, ppid = ${getPpid()}`);
  for (let i = 0; i < 3; i++) {
    console.log(`${f} --file-- ${i}`);
    await sleep(1000);
  }
  return { result: 1, info: "download complete!" };
}

/** Runs in the main process with what the task returned. */
function alterUser(msg: { result: number; info: string }) {
  console.log(`callback in pid ${getPid()}: got ${msg.info}`);
}

async function withCallback() {
  console.log(`main process: pid ${getPid()}`);
  const p = new Pool({ processes: 3 });
  for (const arg of ["1111", "2222", "3333", "4444"]) {
    p.applyAsync(downloadFile, [arg], { callback: alterUser });
  }
  p.close();
  await p.join();
  console.log("program ends");
}

if (import.meta.main) {
  console.log("--- 1. eight downloads on a Pool(4) ---");
  await runtask();
  console.log("--- 2. applyAsync with a callback ---");
  await withCallback();
}
