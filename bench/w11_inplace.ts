// W11-inplace (../shared/bench/WORKLOADS.md): a 1 GiB Float64Array in one SharedMemory (a big
// block: its own SharedArrayBuffer) transformed in place, x = 2x + 1 for every element, by
// cpuCount() pool workers (variant "pool": Pool.map over 4 ranges per worker, each task given
// the block itself and its range) and by the main thread alone (variant "thread"). Reported in
// GB/s of array (1 GB = 10^9 bytes); `rssMiB` is how much the process's resident memory grew
// from before the block was made to the end: about 1024 (the block, touched once), where a copy
// per worker would add a GiB each. Every round is checked: all elements equal 2^k - 1 after k.
// The block is made before the pool: a pool worker decodes its tasks synchronously, so a big
// block's buffer must have reached it before, as its start message brings it (lib/core/bigblock.ts).
//
//   deno run -A --unstable-worker-options bench/w11_inplace.ts [--variant thread,pool] [--gib 1]
import { Pool } from "../lib/pool/pool.ts";
import { cpuCount } from "../lib/process/process.ts";
import { SharedMemory } from "../lib/memory/shared_memory.ts";
import { arg, emit, rounds, since } from "./_common.ts";

/** The transform, over elements [from, to) of the block's Float64Array. */
export function transform(shm: SharedMemory, from: number, to: number): number {
  const b = shm.buf, a = new Float64Array(b.buffer, b.byteOffset, b.byteLength / 8);
  for (let i = from; i < to; i++) a[i] = a[i] * 2 + 1;
  return to - from;
}

/**
 * Compiles `transform` as it runs in a loop: its first calls over a whole range would otherwise
 * run in on-stack-replaced code, which measured 2-4 times slower here. On a scratch block.
 */
export function warmUp(): number {
  using scratch = new SharedMemory({ size: 1 << 16 });
  for (let k = 0; k < 500; k++) transform(scratch, 0, 1 << 13);
  return 1;
}

/** True when every element (sampled every 4099th, and the last) equals `want`. */
function check(a: Float64Array, want: number): boolean {
  for (let i = 0; i < a.length; i += 4099) if (a[i] !== want) return false;
  return a[a.length - 1] === want;
}

if (import.meta.main) {
  const bytes = Number(arg("gib", "1")) * 2 ** 30, n = bytes / 8;
  const workers = cpuCount();
  const rss0 = Deno.memoryUsage().rss;
  using shm = new SharedMemory({ size: bytes });
  const a = new Float64Array(shm.buf.buffer, 0, n);
  await using pool = new Pool({ processes: workers });
  await pool.whenReady();
  warmUp();
  await pool.map(warmUp, Array.from({ length: workers * 4 }, () => 0), { chunksize: 1 });
  const parts = workers * 4, step = Math.ceil(n / parts);
  const ranges = Array.from({ length: parts }, (_, k) => [k * step, Math.min(n, (k + 1) * step)]);
  let passes = 0;
  const rates: Record<string, number> = {};
  for (const { variant, warmUp } of rounds("thread,pool")) {
    const t0 = performance.now();
    let done = 0;
    if (variant === "pool") {
      const counts = await pool.starmap(transform, ranges.map(([f, t]) => [shm, f, t]));
      done = counts.reduce((x, y) => x + y, 0);
    } else {
      done = transform(shm, 0, n);
    }
    const s = since(t0);
    passes++;
    const ok = done === n && check(a, 2 ** passes - 1);
    if (warmUp) continue;
    rates[variant] = bytes / 1e9 / s;
    emit({
      workload: "W11-inplace",
      variant,
      n: bytes,
      seconds: s,
      rate: rates[variant],
      unit: "GB/s",
      ok,
      workers: variant === "pool" ? workers : 1,
      rssMiB: Math.round((Deno.memoryUsage().rss - rss0) / 2 ** 20),
      ...(variant === "pool" && rates.thread ? { speedup: rates.pool / rates.thread } : {}),
    });
  }
}
