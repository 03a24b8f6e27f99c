// W1-spawn: start and join 20 processes whose target does nothing, one after another. Variants:
// `bare` (the target's module imports nothing) and `target-imports-library` (it imports mod.ts,
// as a program's own module usually does). And W1b-start-latency (denomp's own), the median of 5
// latencies, each with 2 fresh spares ready (~1 s after asking: the program has been running for
// a second), or after 150 ms without spares: `process`, from `Process.start()` to the target
// running, `first-timer`, from `Process.start()` to the target's first `setTimeout(0)` firing (a
// target that sleeps), and `actor-first-call`, from `spawn(Actor)` to its first answered call.
// Each variant runs with spare workers (lib/core/spares.ts, the default: 2) and without (`-cold`:
// `setSpares({ count: 0 })`), alternately, 3 rounds; each line is the median of its rounds. With
// spares, the 20 processes of W1-spawn take the 2 ready ones, then create workers (a spare
// asked for arrives ~1 s later). Variant `process-isolation`: `bare` with each process a separate
// deno OS process (`isolation: "process"`; spares do not apply to it).
// Run: deno run -A --unstable-worker-options bench/w1_spawn.ts [--variant bare,process]
import { type Isolation, Process } from "../mod.ts";
import { __testHooks, setSpares, spareOptions } from "../lib/core/spares.ts";
import { spawn } from "../lib/actor/spawn.ts";
import { RawValue } from "../lib/memory/sharedctypes.ts";
import { noop } from "./tasks/noop.ts";
import { noopLib } from "./tasks/noop_lib.ts";
import { stamp, stampAfterTimer } from "./tasks/stamp.ts";
import { Echo } from "./tasks/echo_actor.ts";
import { arg, emit } from "./_common.ts";

const n = 20;
const rounds = 3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => xs.sort((a, b) => a - b)[(xs.length - 1) >> 1];
const now = () => performance.timeOrigin + performance.now();

/**
 * With spares on, asks for fresh ones and waits until they are ready (~1 s: the program has been
 * running for a second; at most 3 s); without, pauses 150 ms.
 */
async function settle(): Promise<void> {
  if (spareOptions().count === 0) return void await sleep(150);
  setSpares({ count: 0 });
  setSpares({ count: 2 });
  const t0 = performance.now();
  while (__testHooks.live() < 2 && performance.now() - t0 < 3000) await sleep(10);
}

/** ms per process of `n` processes started and joined one after another; ok if all exit 0. */
async function sequential(target: () => void, isolation?: Isolation): Promise<[number, boolean]> {
  let ok = true;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const p = new Process({ target, isolation });
    p.start();
    await p.join();
    ok &&= p.exitCode === 0;
  }
  return [(performance.now() - t0) / n, ok];
}

async function startLatency(target: typeof stamp = stamp): Promise<[number, boolean]> {
  const at = new RawValue("d", 0);
  const times: number[] = [];
  let ok = true;
  for (let i = 0; i < 5; i++) {
    await settle();
    const t0 = now();
    const p = new Process({ target, args: [at] });
    p.start();
    await p.join();
    ok &&= p.exitCode === 0;
    times.push(at.value - t0);
  }
  return [median(times), ok];
}

async function firstCall(): Promise<[number, boolean]> {
  const times: number[] = [];
  let ok = true;
  for (let i = 0; i < 5; i++) {
    await settle();
    const t0 = now();
    const ref = await spawn(Echo);
    ok &&= (await ref.call.echo(i)) === i;
    times.push(now() - t0);
    await ref.stop();
  }
  return [median(times), ok];
}

const VARIANTS: Record<string, () => Promise<[number, boolean]>> = {
  "bare": () => sequential(noop),
  "target-imports-library": () => sequential(noopLib),
  "process-isolation": () => sequential(noop, "process"),
  "process": () => startLatency(),
  "first-timer": () => startLatency(stampAfterTimer),
  "actor-first-call": firstCall,
};
/** The latency variants (workload W1b-start-latency, ms each). */
const LATENCY = new Set(["process", "first-timer", "actor-first-call"]);
const variants = arg("variant", Object.keys(VARIANTS).join(",")).split(",");

// Warm-up: the first workers compile the module graph (cached afterwards); then a second of
// the program running, as the goals put it.
for (const v of variants) await VARIANTS[v]();
await sleep(1000);
const results: Record<string, { ms: number[]; ok: boolean }> = {};
for (let r = 0; r < rounds; r++) {
  for (const v of variants) {
    for (const cold of [false, true]) {
      setSpares({ count: cold ? 0 : 2 });
      await settle();
      const [ms, ok] = await VARIANTS[v]();
      const res = results[cold ? `${v}-cold` : v] ??= { ms: [], ok: true };
      res.ms.push(ms);
      res.ok &&= ok;
    }
  }
}
for (const [variant, { ms, ok }] of Object.entries(results)) {
  const rate = median(ms);
  const latency = LATENCY.has(variant.replace(/-cold$/, ""));
  emit({
    workload: latency ? "W1b-start-latency" : "W1-spawn",
    variant,
    n: latency ? 5 : n,
    seconds: latency ? rate / 1000 : rate * n / 1000,
    rate,
    unit: latency ? "ms" : "ms/process",
    ok,
  });
}
