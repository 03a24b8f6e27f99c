/**
 * Spare workers: a few workers started ahead of need, with the worker runtime booted (and, once
 * idle for a moment, the whole library loaded), which
 * `Process.start()` (and so `Pool` and `spawn`) takes before creating a new one. Creating a Deno `Worker` and loading the library in it is most of a process's
 * start-up (~15–40 ms on a small machine); a spare turns that into posting one message, as
 * Python's fork and forkserver start from a process that is already running.
 *
 * Why this cannot change what a program sees:
 * - A spare runs nothing of the program's until it is taken: it has only imported denomp's own
 *   modules (the worker runtime, then `mod.ts`), whose top levels define things and touch no
 *   shared state. The start message then gives it its heap, slot, name and target exactly as a
 *   new worker gets them (`_spawn.ts`), so `getPid()`, names, daemon flags and exit codes are
 *   the same. Each spare serves one process and ends with it: workers are never reused.
 * - Spares are created without `permissions`, so they inherit the program's: only a process
 *   started without its own `permissions` takes one; one with permissions gets a new worker
 *   with exactly those.
 * - A spare is un-ref'd: it never keeps a program alive, so an idle program exits as fast as
 *   without spares. Its idle clock is an `Atomics.waitAsync` timeout, not a timer, for the same
 *   reason (and so that tests' op sanitizers see nothing pending).
 * - A spare not taken within `idleMs` (default 1000) of its creation or of the last take is
 *   ended, and spares are made again only when one is taken: once a program's last process,
 *   pool and actor have finished, no spare thread is left after ~`idleMs`.
 *
 * The main thread starts its spares when the library is loaded; a worker starts its own only
 * after it started a child (most workers never do). Configuration: `setSpares({ count, idleMs })`
 * (`count: 0` turns spares off and ends those alive) or the environment variable
 * `DENOMP_SPARES=<count>`, read once when the library loads if `env` access is granted; a
 * worker inherits its parent's setting.
 *
 * @module
 */

import { optionsOf } from "./_args.ts";
import { inWorker } from "./_heap.ts";

/** The module every denomp worker starts from. */
export const BOOTSTRAP: URL = new URL("./_bootstrap.ts", import.meta.url);

// Deno's Worker has an internal, symbol-keyed ref/unref method (what node:worker_threads'
// unref() uses). Without it a daemon child would keep the program alive forever.
const refSymbol: symbol | undefined = Object.getOwnPropertySymbols(Worker.prototype).find((s) => {
  const f = (Worker.prototype as unknown as Record<symbol, unknown>)[s];
  return s.description === undefined && typeof f === "function" && /refCount/.test(String(f));
});

/** Refs (keeps the program alive) or un-refs a worker; calls must pair up (a count). */
export function setRef(w: Worker, ref: boolean): void {
  if (refSymbol) (w as unknown as Record<symbol, (r: boolean) => void>)[refSymbol](ref);
}

/** How many spare workers are kept and for how long an idle one lives. */
export interface SpareOptions {
  /** Spare workers kept ready (default 2, `DENOMP_SPARES` if set); 0 turns spares off. */
  count?: number;
  /** A spare not taken for this many milliseconds is ended (default 1000). */
  idleMs?: number;
}

/** The message that tells a new worker it is a spare, and which modules to load meanwhile. */
export interface WarmMessage {
  warm: string[];
}

/**
 * What a spare loads once it has been idle for 50 ms (`WARM_AFTER_MS`, _spawn.ts): the whole
 * library (~10 ms of the spare's thread), so that a target whose module imports it, a pool's
 * workers and actors only compile the program's own modules when they start (~1 ms rather
 * than ~5–15). Not at once: a spare taken young (processes started one after another) would
 * pay for it while its target runs. Never the program's modules: their top-level code would
 * run before the process is started, and in a worker that may then run another target.
 */
const WARM = ["../mod.ts"].map((m) => new URL(m, import.meta.url).href);

interface Spare {
  worker: Worker;
  born: number;
}

const DEFAULT_COUNT = 2;
const DEFAULT_IDLE_MS = 1000;

// A worker's setting comes from its parent with its start message (none until then: a spare
// must not start spares).
const config: Required<SpareOptions> = {
  count: inWorker() ? 0 : envCount() ?? DEFAULT_COUNT,
  idleMs: DEFAULT_IDLE_MS,
};
const spares: Spare[] = [];
let lastTake = 0;
/** The reaper running (0: none); a new one (a changed `idleMs`) makes the old one stop. */
let reaper = 0;

function envCount(): number | undefined {
  try {
    if (
      Deno.permissions.querySync({ name: "env", variable: "DENOMP_SPARES" }).state !== "granted"
    ) {
      return undefined;
    }
    const v = Deno.env.get("DENOMP_SPARES");
    if (v === undefined || v.trim() === "") return undefined;
    const n = Number(v);
    if (Number.isInteger(n) && n >= 0) return n;
    console.error(`denomp: DENOMP_SPARES must be a whole number >= 0, got "${v}": ignored`);
  } catch { /* no env access: the default */ }
  return undefined;
}

/**
 * Sets how many spare workers are kept ready and how long an idle one lives (in milliseconds);
 * what is not given keeps its value. Missing spares are made soon after; `count: 0` turns spares
 * off and ends those alive at once (every process then creates its worker when started, as
 * without spares). Applies to this process and the processes it starts afterwards.
 *
 * @example
 * ```ts
 * import { setSpares, spareOptions } from "./_spares.ts";
 * setSpares({ count: 0 }); // no spare workers: each start creates its own
 * console.assert(spareOptions().count === 0);
 * setSpares({ count: 2, idleMs: 1000 }); // the defaults
 * ```
 */
export function setSpares(options?: SpareOptions): void {
  options = optionsOf(options, "setSpares", "setSpares({ count: 2, idleMs: 1000 })");
  const { count = config.count, idleMs = config.idleMs } = options;
  if (!Number.isInteger(count) || count < 0) {
    throw new RangeError(`setSpares: count must be a whole number >= 0, got ${count}`);
  }
  if (typeof idleMs !== "number" || !(idleMs >= 0)) {
    throw new RangeError(`setSpares: idleMs must be a number of milliseconds >= 0, got ${idleMs}`);
  }
  adoptSpareOptions({ count, idleMs });
  if (spares.length < count) void refillSoon();
}

/** Takes the parent's setting in a new worker (which makes no spares until it starts a child). */
export function adoptSpareOptions(options: Required<SpareOptions>): void {
  const sooner = options.idleMs < config.idleMs;
  config.count = options.count;
  config.idleMs = options.idleMs;
  while (spares.length > config.count) spares.pop()!.worker.terminate();
  if (sooner && spares.length) void reap(); // the running reaper sleeps until the old deadline
}

/**
 * The current setting (what a child inherits).
 *
 * @example
 * ```ts
 * import { spareOptions } from "./_spares.ts";
 * console.assert(spareOptions().idleMs >= 0);
 * ```
 */
export function spareOptions(): Required<SpareOptions> {
  return { ...config };
}

/**
 * A booted (or booting) spare worker for a process started without permissions, or undefined
 * when there is none; taking one starts a replacement in the background. The worker comes
 * un-ref'd and without handlers: the caller sets them and refs it as a new worker.
 */
export function takeSpare(): Worker | undefined {
  const s = spares.shift();
  lastTake = performance.now();
  if (config.count > 0) void refillSoon();
  return s?.worker;
}

/** Starts spares up to the configured count (the main thread calls it when it loads). */
export function refill(): void {
  while (spares.length < config.count) addSpare();
}

let refilling = false;
/** Children started by this thread that have not begun their target yet (see `childLoading`). */
let loading = 0;
/** How long a refill waits for loading children at most (one may load for long, or hang). */
const LOADING_WAIT_MS = 250;

/**
 * Notes that a child (from a spare or not) has been started and loads its modules; returns what
 * to call once it runs its target or has ended (idempotent). Spares are not made meanwhile.
 */
export function childLoading(): () => void {
  loading++;
  let done = false;
  return () => {
    if (!done) loading--;
    done = true;
  };
}

/**
 * How long after a take the spares are made again. Creating a worker blocks the creating thread
 * ~10 ms (longer while other threads start); the few milliseconds after a start are when the
 * caller waits for what it started (an actor's first answer, a pool's first results), and a
 * started process's first messages must not wait behind a new worker.
 */
const REFILL_AFTER_MS = 20;

/**
 * Makes spares again after a take: `REFILL_AFTER_MS` later, never inside the caller's
 * synchronous work (a pool starting its other workers), and one per turn of the event loop, so
 * that the messages and results of the processes just started are handled between them.
 */
async function refillSoon(): Promise<void> {
  if (refilling) return;
  refilling = true;
  try {
    await idleDelay(REFILL_AFTER_MS);
    while (spares.length < config.count) {
      // Not while a child is still loading its modules: a worker created meanwhile blocks this
      // thread several times longer (measured: 10 ms alone, up to 120 ms beside two pool workers
      // loading), and what the program waits for is that child.
      const t0 = performance.now();
      while (loading > 0 && performance.now() - t0 < LOADING_WAIT_MS) await idleDelay(2);
      if (spares.length >= config.count) break;
      addSpare();
      // A turn of the event loop (a 0 ms wait resolves at once; a timer would be ref'd).
      await idleDelay(1);
    }
  } finally {
    refilling = false;
  }
}

function addSpare(): void {
  const worker = new Worker(BOOTSTRAP, { type: "module", name: "denomp-spare" });
  const spare: Spare = { worker, born: performance.now() };
  // A spare that fails to load (a module unreadable, the program ending) is dropped; the
  // process that would have taken it gets a new worker and the same error a cold start gets.
  worker.onerror = (e) => {
    e.preventDefault();
    drop(spare);
  };
  worker.postMessage({ warm: WARM } satisfies WarmMessage);
  setRef(worker, false);
  spares.push(spare);
  if (!reaper) void reap();
}

function drop(spare: Spare): void {
  const i = spares.indexOf(spare);
  if (i >= 0) spares.splice(i, 1);
  spare.worker.terminate();
}

/** Ends spares idle for `idleMs`; runs while there are spares. */
async function reap(): Promise<void> {
  const me = ++reaper;
  try {
    while (spares.length && reaper === me) {
      const now = performance.now();
      let next = Infinity;
      for (const s of [...spares]) {
        const until = Math.max(s.born, lastTake) + config.idleMs;
        if (until <= now) drop(s);
        else next = Math.min(next, until);
      }
      if (next !== Infinity) await idleDelay(next - now);
    }
  } finally {
    if (reaper === me) reaper = 0;
  }
}

/**
 * Resolves after `ms`, or never if the worker ends first. Not `setTimeout`: a worker's first
 * timer costs ~3 ms (a third of a worker's start-up) and would keep the worker's loop alive;
 * a timed-out `Atomics.waitAsync` on a private word costs ~20 µs and keeps nothing alive.
 */
export function idleDelay(ms: number): Promise<unknown> {
  const w = Atomics.waitAsync(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  return w.async ? w.value : Promise.resolve();
}

/** For tests only (not exported from mod.ts): how many spares are alive. */
export const __testHooks = { live: (): number => spares.length };

/**
 * When the main thread makes its first spares, unasked: its first processes then start warm
 * too. Not at once: creating a worker blocks the main thread ~10 ms, which a program that ends
 * within this time (a script that imports the library for a queue) should not pay, and its top
 * level may still call `setSpares({ count: 0 })`.
 */
const PREWARM_AFTER_MS = 100;

if (!inWorker()) void idleDelay(PREWARM_AFTER_MS).then(() => spares.length || refill());
