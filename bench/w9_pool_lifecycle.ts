// W9-pool-lifecycle (../shared/bench/WORKLOADS.md): 10 times, one after another, create
// `Pool(2)`, `map(square, range(16))`, close and join: what a short program that uses a pool
// pays. Variants: `warm` (spare workers on, the default) and `cold` (`setSpares({ count: 0 })`:
// every worker created when asked), run alternately 3 times each; each line is the median.
// Run: deno run -A --unstable-worker-options bench/w9_pool_lifecycle.ts [--variant warm,cold]
import { Pool } from "../lib/pool.ts";
import { setSpares } from "../lib/_spares.ts";
import { arg, emit } from "./_common.ts";
import { square } from "./tasks/square.ts";

const n = 10;
const rounds = 3;
const variants = arg("variant", "warm,cold").split(",");
const expected = Array.from({ length: 16 }, (_, i) => i * i);

async function lifecycles(): Promise<[number, boolean]> {
  let ok = true;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const pool = new Pool({ processes: 2 });
    const out = await pool.map(square, Array.from({ length: 16 }, (_, i) => i));
    ok &&= JSON.stringify(out) === JSON.stringify(expected);
    pool.close();
    await pool.join();
  }
  return [performance.now() - t0, ok];
}

// One untimed lifecycle: the first workers compile the module graph (cached afterwards).
await lifecycles();
const times: Record<string, number[]> = {};
let ok = true;
for (let r = 0; r < rounds; r++) {
  for (const v of variants) {
    setSpares(v === "cold" ? { count: 0 } : {});
    // A second for the program to be "running", as the goal puts it (spares refilled).
    await new Promise((res) => setTimeout(res, 300));
    const [ms, good] = await lifecycles();
    (times[v] ??= []).push(ms);
    ok &&= good;
  }
}
for (const v of variants) {
  const sorted = times[v].sort((a, b) => a - b);
  const ms = sorted[(sorted.length - 1) >> 1];
  emit({
    workload: "W9-pool-lifecycle",
    variant: v,
    n,
    seconds: ms / 1000,
    rate: ms / n,
    unit: "ms/lifecycle",
    ok,
  });
}
