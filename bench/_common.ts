// Helpers shared by the benchmark programs: one JSON line per result, in the format of
// ../shared/bench/WORKLOADS.md (system "denomp").

/** One benchmark result line. */
export interface BenchLine {
  workload: string;
  n: number;
  seconds: number;
  rate: number;
  unit: string;
  ok: boolean;
  variant?: string;
  [k: string]: unknown;
}

/** Prints one result line in the WORKLOADS.md format. */
export function emit(line: BenchLine): void {
  const round = (x: number) => Number(x.toPrecision(6));
  console.log(JSON.stringify({
    system: "denomp",
    ...line,
    seconds: round(line.seconds),
    rate: round(line.rate),
    runtime: `deno ${Deno.version.deno}`,
  }));
}

/** Seconds elapsed since `t0` (a `performance.now()` reading). */
export const since = (t0: number): number => (performance.now() - t0) / 1000;
