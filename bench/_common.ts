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

/** The value of `--name` on the command line, or `dflt`. */
export function arg(name: string, dflt: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : dflt;
}

/** One round of a benchmark program: a variant, and whether it is the untimed warm-up. */
export interface Round {
  variant: string;
  warmUp: boolean;
}

/**
 * The rounds of a program: an untimed warm-up round of the first variant, then each variant of
 * `--variant` (default `dflt`) once, timed. Without the warm-up the first variant alone pays the
 * process's one-time costs (the first workers' start, compiling the channel code, the allocator
 * faulting in fresh pages for received buffers) and reads 20–50% slower than the same variant
 * run second; `--cold` skips it to see that figure.
 */
export function rounds(dflt: string): Round[] {
  const variants = arg("variant", dflt).split(",");
  const timed = variants.map((variant) => ({ variant, warmUp: false }));
  return Deno.args.includes("--cold") ? timed : [{ variant: variants[0], warmUp: true }, ...timed];
}
