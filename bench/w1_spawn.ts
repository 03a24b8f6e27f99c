// W1-spawn: start and join 20 processes whose target does nothing, one after another. Variants:
// `bare` (the target's module imports nothing) and `target-imports-library` (it imports mod.ts,
// as a program's own module usually does), and `process-isolation` (`bare` with each process a
// separate deno OS process: `isolation: "process"`).
// Run: deno run -A --unstable-worker-options bench/w1_spawn.ts
import { Process } from "../mod.ts";
import { noop } from "./tasks/noop.ts";
import { noopLib } from "./tasks/noop_lib.ts";
import { emit, since } from "./_common.ts";

const n = 20;
const variants = [
  ["bare", noop, "thread"],
  ["target-imports-library", noopLib, "thread"],
  ["process-isolation", noop, "process"],
] as const;
for (const [variant, target, isolation] of variants) {
  // One warm-up process: the first worker compiles the module graph (cached afterwards).
  const warm = new Process({ target, isolation });
  warm.start();
  await warm.join();

  let ok = true;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const p = new Process({ target, isolation });
    p.start();
    await p.join();
    ok &&= p.exitCode === 0;
  }
  const s = since(t0);
  emit({
    workload: "W1-spawn",
    variant,
    n,
    seconds: s,
    rate: (s * 1000) / n,
    unit: "ms/process",
    ok,
  });
}
