// Mirrors the tutorial's "进程锁" program: ten processes share one Lock; each prints its pid and
// "hello world <i>" while holding it, so the two lines of one process are never split by
// another's. Like the tutorial, the main program does not join them: non-daemon processes are
// waited for before the program exits, as in Python.
//
// (A short sleep between the two lines makes a missing lock visible: without it, lines of
// different processes would interleave.)
//
// Look for: ten "pid N" lines, each directly followed by its "hello world i".
import { getPid, Lock, Process } from "../mod.ts";
import { sleep } from "./_util.ts";

export async function f(l: Lock, i: number) {
  await l.acquire();
  try {
    console.log(`pid ${getPid()}`);
    await sleep(50);
    console.log(`hello world ${i} (pid ${getPid()})`);
  } finally {
    l.release();
  }
}

if (import.meta.main) {
  const lock = new Lock();
  for (let num = 0; num < 10; num++) {
    new Process({ target: f, args: [lock, num] }).start();
  }
}
