// W2-queue (../shared/bench/WORKLOADS.md): one producer process puts 200,000 items
// `{ i, s: "item-" + i }` on a Queue, one consumer process gets them all and checks the sum of
// `i`. The clock runs from starting both processes until the consumer's result arrives
// (process start-up included, as in python_mp_bench.py).
//
//   deno run -A bench/w2_queue.ts [--variant async,sync] [--n 200000]
import { Process } from "../lib/process.ts";
import { Queue } from "../lib/queues.ts";
import { arg, emit, rounds, since } from "./_common.ts";

type Item = { i: number; s: string } | null;

/** Producer: puts `n` items, then `null`. */
export async function w2Producer(q: Queue<Item>, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await q.put({ i, s: "item-" + i });
  await q.put(null);
}

/** Consumer: gets until `null`, reports `[count, sum]`. */
export async function w2Consumer(q: Queue<Item>, result: Queue<[number, number]>): Promise<void> {
  let count = 0, total = 0;
  for (;;) {
    const item = await q.get();
    if (item === null) break;
    count++;
    total += item.i;
  }
  await result.put([count, total]);
}

/** The same pair with the blocking (`Sync`) API, as CPU-bound worker code would use it. */
export function w2ProducerSync(q: Queue<Item>, n: number): void {
  for (let i = 0; i < n; i++) q.putSync({ i, s: "item-" + i });
  q.putSync(null);
}

/** Blocking consumer. */
export function w2ConsumerSync(q: Queue<Item>, result: Queue<[number, number]>): void {
  let count = 0, total = 0;
  for (let item = q.getSync(); item !== null; item = q.getSync()) {
    count++;
    total += item.i;
  }
  result.putSync([count, total]);
}

if (import.meta.main) {
  const n = Number(arg("n", "200000"));
  for (const { variant, warmUp } of rounds("async,sync")) {
    const q = new Queue<Item>(), result = new Queue<[number, number]>();
    const sync = variant === "sync";
    const ps = [
      new Process({ target: sync ? w2ProducerSync : w2Producer, args: [q, n], daemon: true }),
      new Process({ target: sync ? w2ConsumerSync : w2Consumer, args: [q, result], daemon: true }),
    ];
    const t0 = performance.now();
    for (const p of ps) p.start();
    const [count, total] = await result.get();
    const s = since(t0);
    for (const p of ps) await p.join();
    const ok = count === n && total === n * (n - 1) / 2 && ps.every((p) => p.exitCode === 0);
    if (warmUp) continue;
    emit({ workload: "W2-queue", variant, n, seconds: s, rate: n / s, unit: "items/s", ok });
  }
}
