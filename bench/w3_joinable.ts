// W3-joinable (../shared/bench/WORKLOADS.md): main puts 100,000 items on a JoinableQueue, two
// consumer processes get each one and call taskDone, main join()s; items/s. As in
// python_mp_bench.py the consumers are started first and signal they are ready; the clock covers
// the puts and the join. Each consumer tallies count and sum locally and reports them after the
// clock stops (on a sentinel), and main checks them.
// Variants: async (consumers await get), sync (consumers use getSync).
//
//   deno run -A bench/w3_joinable.ts [--variant async,sync] [--n 100000]
import { Process } from "../lib/process/process.ts";
import { JoinableQueue, Queue } from "../lib/queues/queues.ts";
import { arg, emit, rounds, since } from "./_common.ts";

/** Consumer with await. */
export async function w3Consumer(
  q: JoinableQueue<number | null>,
  ready: Queue<string>,
  tally: Queue<[number, number]>,
): Promise<void> {
  await ready.put("ready");
  let count = 0, total = 0;
  for (;;) {
    const item = await q.get();
    if (item === null) break;
    count++;
    total += item;
    q.taskDone();
  }
  await tally.put([count, total]);
  q.taskDone();
}

/** Consumer with the blocking API. */
export function w3ConsumerSync(
  q: JoinableQueue<number | null>,
  ready: Queue<string>,
  tally: Queue<[number, number]>,
): void {
  ready.putSync("ready");
  let count = 0, total = 0;
  for (let item = q.getSync(); item !== null; item = q.getSync()) {
    count++;
    total += item;
    q.taskDone();
  }
  tally.putSync([count, total]);
  q.taskDone();
}

if (import.meta.main) {
  const n = Number(arg("n", "100000"));
  for (const { variant, warmUp } of rounds("async,sync")) {
    const q = new JoinableQueue<number | null>();
    const ready = new Queue<string>(), tally = new Queue<[number, number]>();
    const target = variant === "sync" ? w3ConsumerSync : w3Consumer;
    const ps = [0, 1].map(() => new Process({ target, args: [q, ready, tally], daemon: true }));
    for (const p of ps) p.start();
    for (const _ of ps) await ready.get();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await q.put(i);
    await q.join();
    const s = since(t0);
    for (const _ of ps) await q.put(null);
    let count = 0, total = 0;
    for (const _ of ps) {
      const [c, t] = await tally.get();
      count += c;
      total += t;
    }
    for (const p of ps) await p.join();
    const ok = count === n && total === n * (n - 1) / 2 && ps.every((p) => p.exitCode === 0);
    if (warmUp) continue;
    emit({ workload: "W3-joinable", variant, n, seconds: s, rate: n / s, unit: "items/s", ok });
  }
}
