/**
 * What a spare worker (spares.ts) does after loading the library and before it says it is
 * ready, so that the process it is given does not pay for it: a fresh isolate compiles each
 * function at its first call and sets up its module loader at its first import of a file.
 *
 * Measured in a spare with the library loaded (deno 2.9.6, 2 cores): the first import of a
 * program's module took ~1.3 ms and later ones ~0.4 ms, whichever module came first (importing
 * this file is that first import); an actor's arguments took ~0.6 ms to decode and its first
 * reply ~1.3 ms to handle, ~0.2 and ~0.5 ms once the codec had run once. Nothing here touches
 * shared state: the spare has no heap yet, and the codec's values are plain ones.
 *
 * It also sets the timers up (`loadTimers`): Deno loads them lazily (`setTimeout` is Node's,
 * from `node:timers` and the modules it needs) at a worker's first use of one, as a target's
 * `await sleep(...)`, a call with a timeout or any asynchronous wait makes (measured in a worker
 * with the library loaded, medians of 9: its first `setTimeout(0)` fired after 6.8 ms, 3.2 ms
 * once the globals had been read; in a bare worker, the first read of `setInterval` took ~8 ms).
 * It leaves no timer pending.
 *
 * @module
 */

import { loadTimers } from "./atomics.ts";
import { dumps, loads } from "./reduction.ts";

/**
 * A value shaped like a start message and its arguments, and nothing else. The codec's first
 * run compiles its functions; it also leaves type feedback at each of their branches, which the
 * process's own data then shares. With a wider sample (an Error, a Map, a Set, a Date, a bigint,
 * a Uint8Array besides) V8 optimized the codec for all of them: from a spare, W2's stream of
 * `{ i, s }` items ran 5–8% slower than with this sample or with none (10 interleaved rounds, 2
 * cores). This one keeps what the wide one saved: an actor's first call took 3.34 ms against
 * 3.32, a process's start 2.47 ms against 2.38 (medians of 4 runs).
 */
const SAMPLE = {
  off: 4096,
  target: { module: "file:///sample.ts", name: "Sample" },
  args: [1, -2.5, 2 ** 40, "text", true, false, null, undefined, [1, [2]], { a: 1, b: "c" }],
  name: "Sample-1",
};

let done = false;

/** Whether this worker ran {@link warmUp} (a spare did, before it was taken). */
export function warmedUp(): boolean {
  return done;
}

/**
 * Runs the codec over the sample, twice (V8 compiles some functions at their second call), and
 * has Deno set its timers up.
 */
export function warmUp(): void {
  done = true;
  loadTimers();
  try {
    for (let i = 0; i < 2; i++) loads(dumps(SAMPLE));
  } catch { /* a warm-up only: the spare works without it */ }
}
