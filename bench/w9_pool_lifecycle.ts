// W9-pool-lifecycle (../shared/bench/WORKLOADS.md): 10 times, one after another, create
// `Pool(2)`, `map(square, range(16))`, close and join: what a short program that uses a pool
// pays. Variants: `warm` (2 spare workers ready when the first pool starts: lib/core/spares.ts, the
// default) and `cold` (`setSpares({ count: 0 })`: every worker created when asked), run
// alternately 3 times each; each line is the median. With spares, the first pool takes the 2
// ready ones; the next pools create theirs (a spare asked for arrives ~1 s later). Variants
// `first-pool` and `first-pool-cold` time one lifecycle only: what a program that has been
// running for a second pays for its first pool.
// Run: deno run -A --unstable-worker-options bench/w9_pool_lifecycle.ts [--variant warm,cold]
import { Pool } from "../lib/pool/pool.ts";
import { __testHooks, setSpares, spareOptions } from "../lib/core/spares.ts";
import { arg, emit } from "./_common.ts";
import { square } from "./tasks/square.ts";

const n = 10;
const rounds = 3;
const variants = arg("variant", "warm,cold,first-pool,first-pool-cold").split(",");
/** How many lifecycles a variant times: `first-pool` times one, the first of a program. */
const lifecyclesOf = (v: string) => v.startsWith("first-pool") ? 1 : n;
const expected = Array.from({ length: 16 }, (_, i) => i * i);

async function lifecycles(count = n): Promise<[number, boolean]> {
  let ok = true;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
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
    // The program "running for a second", as the goal puts it: 2 fresh spares ready.
    setSpares({ count: 0 });
    setSpares({ count: v.endsWith("cold") ? 0 : 2 });
    const t0 = performance.now();
    await new Promise((res) => setTimeout(res, 150));
    while (__testHooks.live() < spareOptions().count && performance.now() - t0 < 3000) {
      await new Promise((res) => setTimeout(res, 10));
    }
    const [ms, good] = await lifecycles(lifecyclesOf(v));
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
    n: lifecyclesOf(v),
    seconds: ms / 1000,
    rate: ms / lifecyclesOf(v),
    unit: "ms/lifecycle",
    ok,
  });
}
