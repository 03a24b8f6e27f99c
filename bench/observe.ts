// The cost of watching (issue 16): W2-queue (async), W5-pool-map and W5b-pool-async, each run
// alternately
// without and with a dashboard whose page is open (one `snapshot()` a second, pushed over
// Server-Sent Events, as a browser tab would receive it), several times; the line reports the
// median rate of both and their ratio. The claim: watching costs at most 2%.
//
//   deno run -A --unstable-worker-options bench/observe.ts [--rounds 7] [--only W2,W5,W5b]
import { Pool } from "../lib/pool/pool.ts";
import { Process } from "../lib/process/process.ts";
import { Queue } from "../lib/queues/queues.ts";
import { serveDashboard } from "../lib/observe/dashboard.ts";
import { arg, emit, since } from "./_common.ts";
import { w2Consumer, w2Producer } from "./w2_queue.ts";
import { square } from "./w5_pool.ts";

type Item = { i: number; s: string } | null;

/** W2-queue, async: seconds for `n` items through a Queue between two processes. */
async function w2(n: number): Promise<number> {
  const q = new Queue<Item>({ name: "w2" }), result = new Queue<[number, number]>();
  const ps = [
    new Process({ target: w2Producer, args: [q, n], daemon: true }),
    new Process({ target: w2Consumer, args: [q, result], daemon: true }),
  ];
  const t0 = performance.now();
  for (const p of ps) p.start();
  const [count] = await result.get();
  const s = since(t0);
  for (const p of ps) await p.join();
  if (count !== n) throw new Error(`W2: ${count} items of ${n}`);
  return s;
}

/** W5b-pool-async: seconds for `n` applyAsync(square) with a callback, on a ready Pool(2). */
async function w5b(n: number): Promise<number> {
  await using pool = new Pool({ processes: 2, name: "w5b" });
  await pool.whenReady();
  const t0 = performance.now();
  let sum = 0;
  const done = Promise.withResolvers<void>();
  let left = n;
  for (let i = 0; i < n; i++) {
    pool.applyAsync(square, [i], {
      callback: (v) => {
        sum += v;
        if (--left === 0) done.resolve();
      },
    });
  }
  await done.promise;
  const s = since(t0);
  if (sum !== (n - 1) * n * (2 * n - 1) / 6) throw new Error("W5b: wrong sum");
  return s;
}

/** W5-pool-map: seconds for Pool(2).map(square, range(n)) (default chunks) on a ready pool. */
async function w5(n: number): Promise<number> {
  await using pool = new Pool({ processes: 2, name: "w5" });
  await pool.whenReady();
  const items = Array.from({ length: n }, (_, i) => i);
  const t0 = performance.now();
  const out = await pool.map(square, items);
  const s = since(t0);
  if (out.length !== n || out[n - 1] !== (n - 1) * (n - 1)) throw new Error("W5: wrong result");
  return s;
}

/** A dashboard with one page open on it: its event stream read as a browser would. */
async function watched(): Promise<AsyncDisposable> {
  const dash = await serveDashboard();
  const res = await fetch(new URL("/events", dash.url));
  const reader = res.body!.getReader();
  const reading = (async () => {
    while (!(await reader.read()).done) { /* a page renders it */ }
  })();
  return {
    async [Symbol.asyncDispose]() {
      await reader.cancel().catch(() => {});
      await reading.catch(() => {});
      await dash.close();
    },
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

if (import.meta.main) {
  const rounds = Number(arg("rounds", "7"));
  const only = arg("only", "W2,W5,W5b").split(",");
  const workloads: [string, number, (n: number) => Promise<number>, string][] = [
    ["W2", 200_000, w2, "items/s"],
    ["W5", 2_000_000, w5, "tasks/s"], // ~200 ms: long enough for a snapshot tick to land in it
    ["W5b", 50_000, w5b, "tasks/s"],
  ];
  for (const [name, n, run, unit] of workloads) {
    if (!only.includes(name)) continue;
    await run(n); // warm-up
    const plain: number[] = [], watching: number[] = [];
    for (let r = 0; r < rounds; r++) {
      // Alternated, so that both see the same machine.
      plain.push(n / await run(n));
      await using _ = await watched();
      watching.push(n / await run(n));
    }
    const [a, b] = [median(plain), median(watching)];
    emit({
      workload: `${name}-observed`,
      variant: "dashboard-open",
      n,
      seconds: n / b,
      rate: b,
      unit,
      ok: true,
      unwatched: Math.round(a),
      ratio: Number((b / a).toFixed(3)),
    });
  }
  Deno.exit(0);
}
