// Mirrors the tutorial's "_thread案例" (`_thread.start_new_thread`): two loops are started and
// the main code goes on without waiting, so "All done" is printed before either loop ends.
//
// The tutorial expected the loops to die with the main thread and was surprised they finished.
// A denomp Thread behaves like threading.Thread: a non-daemon thread keeps the program alive
// until it ends, so both loops finish (loop 2 first). To wait for a thread, join() it (see
// threads_vs_sequential.ts); for a thread that dies with its process, see daemon_thread.ts.
//
// Look for: "All done" printed first, then "End loop 2", then "End loop 1".
import { Thread } from "../mod.ts";
import { ctime, sleep, stopwatch } from "./_util.ts";

async function loop1() {
  const spent = stopwatch();
  console.log(`Start loop 1 at: ${ctime()}`);
  await sleep(4000);
  console.log(`End loop 1 at: ${ctime()} (spent ${spent()} s)`);
}

async function loop2() {
  const spent = stopwatch();
  console.log(`Start loop 2 at: ${ctime()}`);
  await sleep(2000);
  console.log(`End loop 2 at: ${ctime()} (spent ${spent()} s)`);
}

if (import.meta.main) {
  console.log(`Starting at: ${ctime()}`);
  new Thread({ target: loop1 }).start(); // _thread.start_new_thread(loop1, ())
  console.log("----------");
  new Thread({ target: loop2 }).start();
  console.log(`All done at: ${ctime()} (the loops are still running)`);
}
