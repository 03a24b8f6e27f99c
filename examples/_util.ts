// Helpers shared by the examples (not part of denomp).
//
// The tutorial sleeps for whole seconds. DENOMP_EXAMPLE_SCALE shrinks every sleep (0.05 runs an
// example 20 times faster), so the test suite can run them all quickly. The durations the
// examples print are in the tutorial's seconds: real time divided by the scale.

function readScale(): number {
  const raw = Deno.env.get("DENOMP_EXAMPLE_SCALE");
  const n = raw === undefined ? 1 : Number(raw);
  return Number.isFinite(n) && n > 0 ? n : 1;
}

/** The factor applied to every sleep (1 unless DENOMP_EXAMPLE_SCALE says otherwise). */
export const SCALE: number = readScale();

/** `ms` of tutorial time, in real milliseconds. */
export function scaled(ms: number): number {
  return ms * SCALE;
}

/** Python's `time.sleep(ms / 1000)`, scaled. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms * SCALE));
}

/** Starts a stopwatch; calling the result gives the tutorial seconds since, e.g. "4.01". */
export function stopwatch(): () => string {
  const start = performance.now();
  return () => ((performance.now() - start) / 1000 / SCALE).toFixed(2);
}

/** The wall-clock time as HH:MM:SS.mmm (the tutorial prints `time.ctime()`). */
export function ctime(): string {
  const d = new Date();
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${
    pad(d.getMilliseconds(), 3)
  }`;
}

/** Python's `random.randint(a, b)`: an integer from a to b, both included. */
export function randint(a: number, b: number): number {
  return a + Math.floor(Math.random() * (b - a + 1));
}
