// The figures issue 13 ("faults never wedge the program") asks for, each measured here rather
// than in a timed test (the tests check the behaviour with wide bounds):
// - F13-queue-churn: 100,000 create / put / get / close cycles of a `Queue` in a loop; the peak
//   RSS (sampled every 1,000 cycles) and the shared heap's queue blocks left at the end. Before
//   the fix the shared heap filled up ("the shared heap is full") after ~4,000 cycles.
// - F13-silent-peers: a `Listener` with 10 raw TCP peers connected that send nothing; the time
//   for a good client to connect and authenticate behind them (goal: under 100 ms). Before the
//   fix each silent peer held the next handshake for its 20 s timeout.
// - F13-slow-task: `Pool(2)` with 1,000 `apply` calls, one of them a 5 s busy loop; the time
//   until the 999 others are done (goal: under 1 s). Before the fix the tasks queued behind the
//   busy worker waited the full 5 s.
//
//   deno run -A --unstable-worker-options bench/faults.ts [--only F13-queue-churn,...]
import { Queue } from "../lib/queues/queues.ts";
import { heapUsage } from "../lib/core/heap.ts";
import { Client, Listener } from "../lib/connection/listener.ts";
import { Pool } from "../lib/pool/pool.ts";
import { emit, since } from "./_common.ts";

/** A pool task: `x` squared. */
export function square(x: number): number {
  return x * x;
}

/** A pool task: a busy loop of `ms` milliseconds (no await: the worker cannot be interrupted). */
export function spin(ms: number): number {
  const end = performance.now() + ms;
  let n = 0;
  while (performance.now() < end) n++;
  return n;
}

async function queueChurn(): Promise<void> {
  const cycles = 100_000, blocks0 = heapUsage().queue.blocks;
  const rss0 = Deno.memoryUsage().rss;
  let peak = rss0, ok = true;
  const t0 = performance.now();
  for (let i = 0; i < cycles; i++) {
    const q = new Queue<number>();
    await q.put(i);
    ok &&= (await q.get()) === i;
    q.close();
    if (i % 1000 === 0) peak = Math.max(peak, Deno.memoryUsage().rss);
  }
  const s = since(t0);
  const left = heapUsage().queue.blocks - blocks0;
  emit({
    workload: "F13-queue-churn",
    variant: "queue",
    n: cycles,
    seconds: s,
    rate: cycles / s,
    unit: "cycles/s",
    ok: ok && left <= 3,
    startRssMiB: Math.round(rss0 / 2 ** 20),
    peakRssMiB: Math.round(peak / 2 ** 20),
    queueBlocksLeft: left,
  });
}

async function silentPeers(): Promise<void> {
  const rounds = 5, times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    await using listener = new Listener({ authkey: "k3y", handshakeTimeout: 3000 });
    const first = listener.accept();
    const silent = await Promise.all(
      Array.from({ length: 10 }, () => Deno.connect(listener.address)),
    );
    await new Promise((r) => setTimeout(r, 100)); // the silent peers are surely taken first
    const t0 = performance.now();
    const [server, client] = await Promise.all([
      first,
      Client(listener.address, { authkey: "k3y" }),
    ]);
    times.push(performance.now() - t0);
    server.close();
    client.close();
    for (const c of silent) c.close();
  }
  const ms = times.sort((a, b) => a - b)[rounds >> 1];
  emit({
    workload: "F13-silent-peers",
    variant: "behind-10",
    n: rounds,
    seconds: ms / 1000,
    rate: 1000 / ms,
    unit: "connects/s",
    ok: ms < 100,
    msMedian: Number(ms.toFixed(2)),
    msMax: Number(times[rounds - 1].toFixed(2)),
  });
}

async function slowTask(): Promise<void> {
  await using pool = new Pool({ processes: 2 });
  await pool.whenReady();
  const t0 = performance.now();
  const slow = pool.apply(spin, [5000]);
  const fast = Array.from({ length: 999 }, (_, i) => pool.apply(square, [i]));
  const out = await Promise.all(fast);
  const s = since(t0);
  await slow;
  emit({
    workload: "F13-slow-task",
    variant: "999-behind-5s",
    n: 999,
    seconds: s,
    rate: 999 / s,
    unit: "tasks/s",
    ok: s < 1 && out.every((y, i) => y === i * i),
    msUntilOthersDone: Math.round(s * 1000),
    msWithSlow: Math.round(since(t0) * 1000),
  });
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--only");
  const only = i >= 0 ? Deno.args[i + 1].split(",") : null;
  const want = (w: string) => !only || only.includes(w);
  if (want("F13-queue-churn")) await queueChurn();
  if (want("F13-silent-peers")) await silentPeers();
  if (want("F13-slow-task")) await slowTask();
}
