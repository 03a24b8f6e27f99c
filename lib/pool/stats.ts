/**
 * A pool's counters and latency histograms, for `snapshot().pools` and the dashboard.
 *
 * Why this shape: the pool's result path handles a task in about a microsecond, so what it adds
 * per task must be a few nanoseconds. Run times come free (every result carries the duration its
 * worker measured); a counter and a histogram bucket are a few adds. Wait times need the clock
 * at submission and at the result (a call into the runtime, ~0.5 µs each), so one task in
 * `SAMPLE` is timed. Percentiles come from log-spaced buckets (4 per octave, so within ~9%),
 * computed only when read.
 *
 * @module
 */

import { localChanged } from "../core/observe.ts";

/** The median and the 99th percentile (ms), null before any measure. */
export interface Quantiles {
  p50: number | null;
  p99: number | null;
}

/** One task in this many gets its queueing time measured. */
const SAMPLE = 16;
/** Buckets per octave, and octaves from 1 µs (2^0) to ~70 min (2^32 µs). */
const PER_OCTAVE = 4, BUCKETS = 32 * PER_OCTAVE;

/** A histogram of durations in µs, in log-spaced buckets. */
export class Histogram {
  readonly #counts = new Float64Array(BUCKETS);
  #n = 0;

  /** Adds one duration (µs). */
  add(us: number): void {
    const b = us < 1 ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log2(us) * PER_OCTAVE));
    this.#counts[b]++;
    this.#n++;
  }

  /** The `q` quantile (0..1) in ms, or null when empty. */
  quantileMs(q: number): number | null {
    if (this.#n === 0) return null;
    const want = q * this.#n;
    let seen = 0;
    for (let b = 0; b < BUCKETS; b++) {
      seen += this.#counts[b];
      // The bucket's geometric middle.
      if (seen >= want) return 2 ** ((b + 0.5) / PER_OCTAVE) / 1000;
    }
    return 2 ** (BUCKETS / PER_OCTAVE) / 1000;
  }

  /** Forgets every duration. */
  reset(): void {
    this.#counts.fill(0);
    this.#n = 0;
  }
}

/**
 * A pool's statistics (parent side).
 *
 * @example
 * ```ts
 * import { PoolStats } from "./stats.ts";
 * const s = new PoolStats();
 * s.count(1, true);
 * s.timed(1500, 0);
 * console.assert(s.completed === 1 && s.run.quantileMs(0.5)! > 1);
 * ```
 */
export class PoolStats {
  /** Tasks (items of a map) that completed, and that failed. */
  completed = 0;
  failed = 0;
  /** Run times, and (sampled) times from submission to start. */
  readonly run: Histogram = new Histogram();
  readonly wait: Histogram = new Histogram();
  /** Run time in all (µs), for utilization over an interval. */
  #runUs = 0;
  #sample = 0;
  #lastAt = performance.now();
  #lastRunUs = 0;

  /** Stats of a new pool (which other isolates will see in their snapshots). */
  constructor() {
    localChanged();
  }

  /**
   * At submission: a timestamp for one task in SAMPLE (every one of the first SAMPLE * 4 since
   * a reset, so a few tasks show a figure too), else 0 (not timed).
   */
  stamp(): number {
    const n = ++this.#sample;
    return n % SAMPLE === 0 || n <= SAMPLE * 4 ? performance.now() : 0;
  }

  /** A task of `items` items ended (completed, or failed). */
  count(items: number, ok: boolean): void {
    if (ok) this.completed += items;
    else this.failed += items;
    localChanged(); // for snapshots taken in other isolates
  }

  /** A worker's result: `us` the task's run time, `at` its stamp (0: not timed). */
  timed(us: number, at: number): void {
    if (us > 0) {
      this.run.add(us);
      this.#runUs += us;
    }
    if (at > 0) this.wait.add(Math.max(0, (performance.now() - at) * 1000 - us));
  }

  /** The latencies as the snapshot shows them: p50 and p99, in ms. */
  latencies(): { waitMs: Quantiles; runMs: Quantiles } {
    const q = (h: Histogram) => ({ p50: h.quantileMs(0.5), p99: h.quantileMs(0.99) });
    return { waitMs: q(this.wait), runMs: q(this.run) };
  }

  /**
   * Share of `workers` busy since the previous call (run time over wall time), or `busyNow`
   * for the first call.
   */
  utilization(workers: number, busyNow: number): number {
    const now = performance.now(), ms = now - this.#lastAt;
    const ran = (this.#runUs - this.#lastRunUs) / 1000;
    const first = this.#lastRunUs === 0 && ran === 0;
    this.#lastAt = now;
    this.#lastRunUs = this.#runUs;
    if (workers <= 0) return 0;
    if (first || ms < 1) return busyNow / workers;
    return Math.min(1, Math.max(busyNow / workers, ran / ms / workers));
  }

  /** Forgets the latencies (counters keep counting). */
  reset(): void {
    this.run.reset();
    this.wait.reset();
    this.#sample = 0;
  }
}
