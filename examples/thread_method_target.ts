// Mirrors the tutorial's "threading.Thread()的工业写法": the target of a thread is a method of an
// object. LOOP one sleeps 3 s and LOOP two 1 s; both are joined, so "All done" comes after 3 s.
//
// JavaScript note: `obj.loop` alone loses its `this` (Python's `t.loop` is a bound method), so
// pass `obj.loop.bind(obj)` or an arrow function.
//
// Look for: both "Start loop" lines at once, then "All done" after about 3 s.
import { Thread } from "../mod.ts";
import { ctime, sleep, stopwatch } from "./_util.ts";

class ThreadFunc {
  constructor(readonly name: string) {}

  /** nloop: the name of the loop; nsec: how long it sleeps. */
  async loop(nloop: string, nsec: number) {
    console.log(`Start loop: ${nloop} at ${ctime()} (${this.name}, sleeping ${nsec} s)`);
    await sleep(nsec * 1000);
    console.log(`End loop: ${nloop} at ${ctime()}`);
  }
}

if (import.meta.main) {
  const spent = stopwatch();
  console.log(`Starting at: ${ctime()}`);
  const t = new ThreadFunc("loop");
  const t1 = new Thread({ target: t.loop.bind(t), args: ["LOOP one", 3] });
  // The tutorial's "more industrial" way: make the object right in the call.
  const t2 = new Thread({
    target: (nloop: string, nsec: number) => new ThreadFunc("loop").loop(nloop, nsec),
    args: ["LOOP two", 1],
  });
  t1.start();
  t2.start();
  await t1.join();
  await t2.join();
  console.log(`All done in ${spent()} s`);
}
