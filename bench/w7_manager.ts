// W7-manager (../shared/bench/WORKLOADS.md): one process does 10,000 sets and 10,000 gets on a
// Manager dict proxy. Timed as ../shared/bench/peers/python_mp_bench.py times it: the Manager and
// the client process are started first, the client makes its first call (which opens its
// connection to the server) and says it is ready; the clock runs from "go" until the client's
// count of wrong values arrives. Then the dict is checked from here (length and sum).
//
//   deno run -A --unstable-worker-options bench/w7_manager.ts [--n 20000] [--runs 3]
import { arg, emit, since } from "./_common.ts";
import { type DictProxy, Manager } from "../lib/managers/managers.ts";
import { Process } from "../lib/process/process.ts";
import { Queue } from "../lib/queues/queues.ts";
import { Event, Semaphore } from "../lib/sync/mod.ts";

/** The client: `n` sets, then `n` gets, counting values that come back wrong. */
export async function w7Client(
  d: DictProxy<number, number>,
  n: number,
  ready: Semaphore,
  go: Event,
  result: Queue<number>,
): Promise<void> {
  await d.len(); // opens this worker's connection to the server: not timed (as in Python)
  ready.release();
  await go.wait();
  for (let k = 0; k < n; k++) await d.set(k, k);
  let wrong = 0;
  for (let k = 0; k < n; k++) if ((await d.get(k)) !== k) wrong++;
  await result.put(wrong);
}

if (import.meta.main) {
  const n = Number(arg("n", "20000")), runs = Number(arg("runs", "3"));
  const per = Math.max(1, Math.floor(n / 2));
  for (let run = 0; run < runs; run++) {
    await using manager = await Manager();
    const d = manager.dict<number, number>();
    const ready = new Semaphore(0), go = new Event(), result = new Queue<number>();
    const p = new Process({ target: w7Client, args: [d, per, ready, go, result], daemon: true });
    p.start();
    await ready.acquire();
    const t0 = performance.now();
    go.set();
    const wrong = await result.get();
    const s = since(t0);
    await p.join();
    const values = await d.values();
    const ok = wrong === 0 && values.length === per &&
      values.reduce((a, b) => a + b, 0) === per * (per - 1) / 2 && p.exitCode === 0;
    emit({
      workload: "W7-manager",
      n: 2 * per,
      seconds: s,
      rate: (2 * per) / s,
      unit: "ops/s",
      ok,
    });
  }
}
