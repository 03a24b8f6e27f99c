// W5-pool-map, W5b-pool-async (../shared/bench/WORKLOADS.md) and W5c-pool-cpu:
// - W5-pool-map: Pool(2).map(square, range(100,000)) with the default chunking (Python's:
//   ceil(n / (4 * processes))), result checked; variant "chunk-1000" passes chunksize 1000, the
//   Node peers' batched shape.
// - W5b-pool-async: 10,000 applyAsync(square, [i]) with a callback, then close() and join(), all
//   results checked. Variant "futures-asCompleted": the same through a ProcessPoolExecutor(2):
//   10,000 submit(square, i), the results taken in an asCompleted loop, then shutdown(); its
//   rounds alternate with the callback variant's, so that both see the same machine (the goal:
//   within 10%). Both start the clock on a pool whose workers are ready and have run nothing
//   (`whenReady`). Each variant reports the median of 9 rounds, each on a fresh pool.
// - W5c-pool-cpu: 200 tasks of ~5 ms of arithmetic each, run serially in the main thread and
//   with Pool(cpuCount()) (chunksize 1), alternately, 3 times; the line reports the pool's
//   median tasks/s and the median speedup.
// Variant "process-isolation" of W5 and W5b: the same with Pool({ isolation: "process" }), each
// worker a separate deno OS process (the like-for-like comparison with Python's processes),
// which imports this module before it is ready (`preload`), as Python's children have the main
// module (fork: inherited; spawn: imported at start).
// As in the peers, the pool is started and its workers are ready before the clock starts.
//
//   deno run -A --unstable-worker-options bench/w5_pool.ts [--only W5-pool-map,W5b-pool-async]
import { asCompleted, ProcessPoolExecutor } from "../lib/futures/futures.ts";
import { Pool } from "../lib/pool/pool.ts";
import { cpuCount, type Isolation } from "../lib/process/process.ts";
import { emit, since } from "./_common.ts";

/** The W5 task. */
export function square(x: number): number {
  return x * x;
}

/** W5c: `n` rounds of integer arithmetic (an LCG), returned so that nothing is optimised away. */
export function crunch(n: number): number {
  let x = 1;
  for (let i = 0; i < n; i++) x = (Math.imul(x, 1103515245) + 12345) >>> 0;
  return x;
}

/** What an isolated pool imports before it is ready: this module (see the variant above). */
const isolated = (isolation?: Isolation) => isolation === "process" ? [import.meta.url] : undefined;

const sumSquares = (n: number) => ((n - 1) * n * (2 * n - 1)) / 6;

function checkSquares(out: number[], n: number): boolean {
  if (out.length !== n) return false;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    if (out[i] !== i * i) return false;
    sum += out[i];
  }
  return sum === sumSquares(n);
}

/** Rounds of W5, each on a fresh pool (its first map, as the Python peer times); the median. */
const W5_ROUNDS = 5;

async function w5(variant: string, chunksize?: number, isolation?: Isolation): Promise<void> {
  const n = 100_000;
  const items = Array.from({ length: n }, (_, i) => i);
  const times: number[] = [];
  let ok = true;
  for (let r = 0; r < W5_ROUNDS; r++) {
    await using pool = new Pool({ processes: 2, isolation, preload: isolated(isolation) });
    await pool.whenReady();
    const t0 = performance.now();
    const out = await pool.map(square, items, chunksize);
    times.push(since(t0));
    ok &&= checkSquares(out, n);
  }
  const s = times.sort((a, b) => a - b)[times.length >> 1];
  emit({
    workload: "W5-pool-map",
    variant,
    n,
    seconds: s,
    rate: n / s,
    unit: "tasks/s",
    ok,
    rounds: W5_ROUNDS,
  });
}

/** Rounds of W5b, each variant on a fresh pool; the medians. */
const W5B_ROUNDS = 9;

/** One W5b round through `applyAsync` with a callback: seconds, and whether all came back right. */
async function w5bCallback(n: number, isolation?: Isolation): Promise<[number, boolean]> {
  const pool = new Pool({ processes: 2, isolation, preload: isolated(isolation) });
  await pool.whenReady();
  const results: number[] = [];
  let errors = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    pool.applyAsync(square, [i], {
      callback: (r) => results.push(r),
      errorCallback: () => errors++,
    });
  }
  pool.close();
  await pool.join(); // every callback has run by then
  const s = since(t0);
  results.sort((a, b) => a - b);
  return [s, errors === 0 && checkSquares(results, n)];
}

/** One W5b round through `submit` and an `asCompleted` loop. */
async function w5bFutures(n: number): Promise<[number, boolean]> {
  const ex = new ProcessPoolExecutor({ maxWorkers: 2 });
  // Both workers ready before the clock starts, and no call made, exactly as for the callback
  // variant (`whenReady`). A warm-up call would not do: the pool paces how many calls it hands a
  // worker by the measured duration of the calls so far, and a first call (code not compiled
  // yet) measured 0.04-9 ms here against ~1 µs for a square, so the squares went out a few at a
  // time until the estimate came down: a different workload from the callback variant's.
  await ex.whenReady();
  const results: number[] = [];
  let errors = 0;
  const t0 = performance.now();
  const fs = [];
  for (let i = 0; i < n; i++) fs.push(ex.submit(square, i));
  for await (const f of asCompleted(fs)) {
    try {
      results.push(await f.result());
    } catch {
      errors++;
    }
  }
  await ex.shutdown();
  const s = since(t0);
  results.sort((a, b) => a - b);
  return [s, errors === 0 && checkSquares(results, n)];
}

/**
 * W5b's thread variants, `callback` and `futures-asCompleted`, in alternating rounds (which one
 * goes first alternates too): a single run of each measured mostly which one ran first in the
 * program (the parent's pool code compiled, the machine's state), e.g. 83k vs 192k tasks/s and
 * the other way round between two runs of the same code.
 */
async function w5b(): Promise<void> {
  const n = 10_000;
  const runs: Record<string, [number, boolean][]> = { callback: [], "futures-asCompleted": [] };
  for (let r = 0; r < W5B_ROUNDS; r++) {
    const order = r % 2 ? ["futures-asCompleted", "callback"] : ["callback", "futures-asCompleted"];
    for (const v of order) runs[v].push(await (v === "callback" ? w5bCallback(n) : w5bFutures(n)));
  }
  for (const [variant, rs] of Object.entries(runs)) emitW5b(variant, n, rs);
}

function emitW5b(variant: string, n: number, rs: [number, boolean][]): void {
  const s = rs.map(([t]) => t).sort((a, b) => a - b)[rs.length >> 1];
  emit({
    workload: "W5b-pool-async",
    variant,
    n,
    seconds: s,
    rate: n / s,
    unit: "tasks/s",
    ok: rs.every(([, ok]) => ok),
    rounds: rs.length,
  });
}

async function w5bIsolated(): Promise<void> {
  const n = 10_000, rs: [number, boolean][] = [];
  for (let r = 0; r < W5B_ROUNDS; r++) rs.push(await w5bCallback(n, "process"));
  emitW5b("process-isolation", n, rs);
}

async function w5c(): Promise<void> {
  const tasks = 200, processes = cpuCount(), rounds = 3;
  // Calibrate one task to ~5 ms in this thread (after warming the function up); the fastest of
  // a few timings, so that a moment of load elsewhere does not shrink the tasks.
  let n = 100_000;
  crunch(n);
  for (;;) {
    let ms = Infinity;
    for (let k = 0; k < 3; k++) {
      const t0 = performance.now();
      crunch(n);
      ms = Math.min(ms, performance.now() - t0);
    }
    if (ms > 2) {
      n = Math.round(n * 5 / ms);
      break;
    }
    n *= 4;
  }
  const expected = crunch(n);
  await using pool = new Pool({ processes });
  await pool.whenReady();
  const inputs = Array.from({ length: tasks }, () => n);
  // Serial and pooled runs alternate, so that both see the same machine; medians of each.
  const serial: number[] = [], pooled: number[] = [];
  let ok = true;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < tasks; i++) ok &&= crunch(n) === expected;
    serial.push(since(t0));
    const t1 = performance.now();
    const out = await pool.map(crunch, inputs, 1);
    pooled.push(since(t1));
    ok &&= out.length === tasks && out.every((x) => x === expected);
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1];
  const s = median(pooled), base = median(serial);
  emit({
    workload: "W5c-pool-cpu",
    variant: `${processes}-processes`,
    n: tasks,
    seconds: s,
    rate: tasks / s,
    unit: "tasks/s",
    ok,
    serialSeconds: Number(base.toPrecision(6)),
    speedup: Number((base / s).toFixed(2)),
    cpus: processes,
    msPerTask: Number((base * 1000 / tasks).toFixed(2)),
  });
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--only");
  const only = i >= 0 ? Deno.args[i + 1].split(",") : null;
  const want = (w: string) => !only || only.includes(w);
  if (want("W5-pool-map")) {
    await w5("default");
    await w5("chunk-1000", 1000);
    await w5("process-isolation", undefined, "process");
  }
  if (want("W5b-pool-async")) {
    await w5b();
    await w5bIsolated();
  }
  if (want("W5c-pool-cpu")) await w5c();
}
