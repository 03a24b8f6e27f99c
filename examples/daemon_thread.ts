// Mirrors the tutorial's "守护线程案例" and "非守护线程案例": the main thread starts a thread that
// sleeps 2 s, sleeps 1 s itself and ends. A daemon thread dies with it ("End fun" never
// printed); a non-daemon thread is waited for ("End fun" printed after "Main thread end").
//
// The tutorial could not see the difference in Jupyter. Each case runs here in its own process
// (a worker) whose target plays Python's main thread: when the target returns, the process
// waits for its non-daemon threads and ends, and its daemon threads end with it.
// (In the program's own main isolate a pending timer keeps Deno running, daemon or not, so
// this is the place where daemon threads behave exactly as in Python.)
//
// Look for: the daemon case has no "End fun"; the non-daemon case prints "End fun" last.
import { Process, Thread } from "../mod.ts";
import { sleep } from "./_util.ts";

async function fun() {
  console.log("Start fun");
  await sleep(2000);
  console.log("End fun");
}

export async function mainThread(daemon: boolean) {
  console.log("Main thread");
  const t1 = new Thread({ target: fun });
  t1.daemon = daemon; // t1.setDaemon(True); must be set before start()
  t1.start();
  await sleep(1000);
  console.log("Main thread end");
}

if (import.meta.main) {
  for (const daemon of [true, false]) {
    console.log(`--- ${daemon ? "daemon" : "non-daemon"} thread ---`);
    const p = new Process({ target: mainThread, args: [daemon] });
    p.start();
    await p.join();
  }
}
