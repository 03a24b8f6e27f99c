/**
 * Spare workers: a few workers started ahead of need, with the worker runtime booted and the
 * whole library loaded, which `Process.start()` (and so `Pool` and
 * `spawn`) takes before creating a new one. Creating a Deno `Worker` and loading the library in
 * it is most of a process's start-up (~15–40 ms on a small machine); a spare turns that into
 * posting one message, as Python's forkserver starts from a process that is already running.
 *
 * Spares are made by a zygote worker (zygote.ts), not by the thread that starts processes:
 * `new Worker()` blocks its caller ~10–120 ms, which a spare made in the background must not do
 * to the program. Deno starts a worker made by a worker ~1 s late, so spares arrive about a
 * second after they are asked for: they serve a program that has been running for a second
 * (a burst of starts uses the spares there are, then creates workers as without spares).
 *
 * Why this cannot change what a program sees:
 * - A spare runs nothing of the program's until it is taken: it has only imported denomp's own
 *   modules (the worker runtime, then `mod.ts`), whose top levels define things and touch no
 *   shared state, and run their warm-ups (warmup.ts, `addWarmUp` in child.ts) on a private heap
 *   of its own, which leave nothing behind. The start message then gives it its heap, slot,
 *   name and target exactly as a new worker gets them (`spawn.ts`), so `getPid()`, names,
 *   daemon flags and exit codes are the same. Each spare serves one process and ends with it:
 *   workers are never reused.
 * - Spares are created without `permissions`, so they inherit the program's: only a process
 *   started without its own `permissions` takes one; one with permissions gets a new worker
 *   with exactly those.
 * - Spares and the zygote are un-ref'd: they never keep a program alive, so an idle program
 *   exits as fast as without spares; a started non-daemon child keeps it alive through its end
 *   of the channel, as a new worker would. The idle clock is an `Atomics.waitAsync` timeout,
 *   not a timer, for the same reason (and so that tests' op sanitizers see nothing pending).
 * - A spare not taken within `idleMs` (default 1000) of its arrival or of the last take is
 *   ended, and the zygote once it has had neither spares nor running children for `idleMs`:
 *   once a program's last process, pool and actor have finished, no thread of theirs is left
 *   after ~2 `idleMs`. Spares are asked for again only when one is taken, once starts have
 *   paused for 50 ms (see `REFILL_QUIET_MS`), and each is made, then loads the library, only
 *   on 50 ms ticks in which the program left a core mostly idle (the zygote's gate, zygote.ts).
 * - A spare's child is the zygote's child: it dies with the zygote, which lives while it runs,
 *   and both die with the thread that made them, as a new worker dies with its parent.
 *
 * The main thread asks for its spares 100 ms after the library loads (later while it starts
 * processes: see `PREWARM_QUIET_MS`); a worker only after it started a child (most workers
 * never do). Configuration: `setSpares({ count, idleMs })` (`count: 0` turns spares off, ends
 * those alive and calls off those asked for and not made yet) or the environment variable
 * `DENOMP_SPARES=<count>`, read once when the library loads if `env` access is granted; a
 * worker inherits its parent's setting.
 *
 * @module
 */

import { checkTimeout, optionsOf } from "./args.ts";
import { inWorker } from "./heap.ts";
import type { ZygoteReply, ZygoteRequest } from "./zygote.ts";

/** The module every denomp worker starts from. */
export const BOOTSTRAP: URL = new URL("./bootstrap.ts", import.meta.url);

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

/**
 * The message that tells a new worker it is a spare, which modules to load meanwhile, and the
 * port its start message comes through (and its own messages go to).
 */
export interface WarmMessage {
  warm: string[];
  port: MessagePort;
  /** The zygote's gate: the spare loads `warm` once it has taken the gate's opening (1 -> 0). */
  gate?: Int32Array;
}

/** How a parent talks to its child's worker: a `Worker` of its own, or a spare's channel. */
export interface ChildLink {
  postMessage(data: unknown): void;
  /** Sets the handlers; the child then keeps the program alive until `unref()`. */
  listen(onMessage: (e: MessageEvent) => void, onError: (e: ErrorEvent) => void): void;
  /** Lets the program end while the child runs (a daemon child). */
  unref(): void;
  terminate(): void;
}

/** The link to a worker created by the caller. */
export function workerLink(w: Worker): ChildLink {
  return {
    postMessage: (data) => w.postMessage(data),
    listen(onMessage, onError) {
      w.onmessage = onMessage;
      w.onerror = onError;
    },
    // After the handlers: setting onmessage starts a message poll that is ref'd anew.
    unref: () => setRef(w, false),
    terminate: () => w.terminate(),
  };
}

// The same for a MessagePort whose `onmessage` is set (what node:worker_threads' port.unref() uses).
const portRefSymbol = Object.getOwnPropertySymbols(MessagePort.prototype)
  .find((s) => s.description === "refMessagePort");

function setPortRef(port: MessagePort, ref: boolean): void {
  if (portRefSymbol) (port as unknown as Record<symbol, (r: boolean) => void>)[portRefSymbol](ref);
}

/**
 * What a spare loads before it says it is ready: the whole library (~10 ms of the spare's own
 * thread), so that a target whose module imports it, a pool's workers and actors only compile
 * the program's own modules when they start (~1 ms rather than ~5–15). Never the program's
 * modules: their top-level code would run before the process is started, and in a worker that
 * may then run another target.
 */
const WARM = ["../../mod.ts", "../actor/runtime.ts", "../pool/worker.ts"].map((m) =>
  new URL(m, import.meta.url).href
);

interface Spare {
  /** The zygote's number for it. */
  id: number;
  /** This end of its channel. */
  port: MessagePort;
  born: number;
}

const DEFAULT_COUNT = 2;
const DEFAULT_IDLE_MS = 1000;
const ZYGOTE = new URL("./zygote.ts", import.meta.url);

// A worker's setting comes from its parent with its start message (none until then: a spare
// must not start spares).
const config: Required<SpareOptions> = {
  count: inWorker() ? 0 : envCount() ?? DEFAULT_COUNT,
  idleMs: DEFAULT_IDLE_MS,
};
/** Spares ready to be taken, oldest first. */
const spares: Spare[] = [];
let lastTake = 0;
let zygote: Worker | null = null;
/** Spares asked of the zygote that have not arrived. */
let asked = 0;
/** Spares the zygote has made (for tests). */
let made = 0;
/** Spares made, not ready yet, by id. */
const waiting = new Map<number, Spare>();
/** The error handlers of the zygote's children that run a process, by id. */
const running = new Map<number, (e: ErrorEvent) => void>();
/** When the zygote last had neither spares, nor spares coming, nor running children. */
let emptySince = 0;
/** The reaper running (0: none); a new one (a shorter `idleMs`) makes the old one stop. */
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
 * what is not given keeps its value. Missing spares are asked for at once (they are ready ~1 s
 * later); `count: 0` turns spares off and ends those alive at once (every process then creates
 * its worker when started, as without spares). Applies to this process and the processes it
 * starts afterwards.
 *
 * @example
 * ```ts
 * import { setSpares, spareOptions } from "jsr:@denomp/multiprocessing";
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
  checkTimeout(idleMs, "setSpares: idleMs");
  adoptSpareOptions({ count, idleMs });
  if (count > 0) askSpares();
}

/** Takes the parent's setting in a new worker (which makes no spares until it starts a child). */
export function adoptSpareOptions(options: Required<SpareOptions>): void {
  const sooner = options.idleMs < config.idleMs;
  config.count = options.count;
  config.idleMs = options.idleMs;
  while (spares.length > config.count) end(spares.pop()!);
  // Spares asked for and not made yet (the zygote waits for a free core) are called off.
  const extra = spares.length + asked - config.count; // at most `asked`: spares <= count now
  if (extra > 0 && zygote) zygote.postMessage({ cancel: extra } satisfies ZygoteRequest);
  if (sooner && zygote) void reap(); // the running reaper sleeps until the old deadline
}

/**
 * The current setting (what a child inherits).
 *
 * @example
 * ```ts
 * import { spareOptions } from "jsr:@denomp/multiprocessing";
 * console.assert(spareOptions().idleMs >= 0);
 * ```
 */
export function spareOptions(): Required<SpareOptions> {
  return { ...config };
}

/**
 * A spare for a process started without permissions, or undefined when there is none; taking
 * one asks the zygote for a replacement. The link comes un-ref'd and without handlers: the
 * caller treats it as a new worker.
 */
export function takeSpare(): ChildLink | undefined {
  lastTake = performance.now();
  const s = spares.shift();
  if (config.count > 0 && !refilling) void refill();
  return s && spareLink(s);
}

/**
 * Spares are asked for again once no process has started for this long. A replacement is ready
 * only ~1 s after it is asked for, and making it costs ~30 ms of CPU (the zygote's `new Worker()`,
 * then the spare loading the library): asked for during a burst of starts, it would compete with
 * the burst's own workers for the cores and serve none of them (W1-spawn's 20 processes, W9's 10
 * pools: "warm" was no faster than "cold"). It also keeps creating the zygote again (after an
 * idle spell: it blocks this thread ~10 ms) out of `start()`.
 */
const REFILL_QUIET_MS = 50;
/**
 * The first spares, asked for unasked (see PREWARM_AFTER_MS), wait for a longer quiet: creating
 * the zygote and them costs ~30 ms of CPU, all of it at once, and a program that starts
 * processes from its first moments gets none of them in time anyway. W5 starts a pool about
 * every 50 ms: with the first ask 100 ms after load, the zygote and the first spares were made
 * inside its timed rounds. Its map (default chunks) ran at 0.74–0.91 of c7aa146, a tree without
 * spares, in four interleaved runs; with this quiet at 0.85–0.95 in three, as with spares off
 * (0.87–1.00).
 */
const PREWARM_QUIET_MS = 250;
let refilling = false;

async function refill(quietMs = REFILL_QUIET_MS): Promise<void> {
  refilling = true;
  try {
    for (
      let wait = lastTake + quietMs - performance.now();
      wait > 0;
      wait = lastTake + quietMs - performance.now()
    ) {
      await idleDelay(wait);
    }
  } finally {
    refilling = false;
  }
  askSpares();
}

/** Asks the zygote for the spares missing (created when first needed). */
function askSpares(): void {
  if (config.count === 0) return;
  const want = config.count - spares.length - asked;
  if (want <= 0) return;
  zygoteWorker().postMessage({ make: want, warm: WARM } satisfies ZygoteRequest);
  asked += want;
}

function spareLink(s: Spare): ChildLink {
  return {
    postMessage: (data) => s.port.postMessage(data),
    listen(onMessage, onError) {
      running.set(s.id, onError);
      s.port.onmessage = onMessage; // starts the port: ref'd, as a new worker is
    },
    unref() {
      // Deno's port starts ref'd but flagged un-ref'd: un-ref'ing it alone would do nothing.
      setPortRef(s.port, true);
      setPortRef(s.port, false);
    },
    terminate() {
      if (!running.delete(s.id)) return;
      end(s);
    },
  };
}

function end(s: Spare): void {
  s.port.close();
  zygote?.postMessage({ end: s.id } satisfies ZygoteRequest);
}

function zygoteWorker(): Worker {
  if (zygote) return zygote;
  const z = new Worker(ZYGOTE, { type: "module", name: "denomp-zygote" });
  z.onmessage = (e: MessageEvent<ZygoteReply>) => {
    const m = e.data;
    if ("cancelled" in m) {
      asked = Math.max(0, asked - m.cancelled);
      return askSpares(); // the count may have gone up again meanwhile
    }
    if ("spare" in m) {
      made++;
      // Not ready yet: a worker made by a worker runs ~1 s after it was made, and a start
      // message posted before then would wait that long.
      waiting.set(m.spare, { id: m.spare, port: m.port, born: 0 });
      return;
    }
    if ("ready" in m) {
      const s = waiting.get(m.ready);
      if (!s) return;
      waiting.delete(m.ready);
      asked = Math.max(0, asked - 1);
      if (spares.length >= config.count) return end(s); // turned down meanwhile
      s.born = performance.now();
      spares.push(s);
      return;
    }
    // A spare's `error` event: a taken one's is its process's (a crash, as for a new worker); a
    // spare that fails before (a module unreadable) is dropped, and a start gets a new worker.
    const onError = running.get(m.error);
    if (onError) return onError(new ErrorEvent("error", { message: m.message }));
    const i = spares.findIndex((s) => s.id === m.error);
    if (i >= 0) end(spares.splice(i, 1)[0]);
    const w = waiting.get(m.error);
    if (w) {
      waiting.delete(m.error);
      asked = Math.max(0, asked - 1);
      end(w);
    }
  };
  z.onerror = (e) => {
    e.preventDefault();
    endZygote(`the zygote worker failed: ${e.message}`);
  };
  setRef(z, false); // after onmessage, whose poll is ref'd anew
  zygote = z;
  emptySince = performance.now();
  if (!reaper) void reap();
  return z;
}

/** Ends the zygote and with it every spare and every process running in one. */
function endZygote(reason: string): void {
  const z = zygote;
  if (!z) return;
  zygote = null;
  asked = 0;
  for (const s of [...spares.splice(0), ...waiting.values()]) s.port.close();
  waiting.clear();
  const orphans = [...running.values()];
  running.clear();
  z.terminate();
  for (const onError of orphans) onError(new ErrorEvent("error", { message: reason }));
}

/**
 * Ends spares idle for `idleMs`, and the zygote once it has had nothing to do for `idleMs`;
 * runs while there is a zygote.
 */
async function reap(): Promise<void> {
  const me = ++reaper;
  try {
    while (zygote && reaper === me) {
      const now = performance.now();
      let next = now + config.idleMs;
      for (const s of [...spares]) {
        const until = Math.max(s.born, lastTake) + config.idleMs;
        if (until <= now) end(spares.splice(spares.indexOf(s), 1)[0]);
        else next = Math.min(next, until);
      }
      if (spares.length || asked || running.size) emptySince = now;
      else if (now - emptySince >= config.idleMs) endZygote("the zygote was idle");
      else next = Math.min(next, emptySince + config.idleMs);
      if (zygote) await idleDelay(Math.max(1, next - now));
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

/** For tests only (not exported from mod.ts): spares ready, and whether the zygote lives. */
export const __testHooks = {
  live: (): number => spares.length,
  /** Spares asked of the zygote that have not arrived. */
  asked: (): number => asked,
  zygote: (): boolean => zygote !== null,
  /** Spares the zygote has made so far. */
  made: (): number => made,
};

/**
 * When the main thread asks for its first spares, unasked: its first processes then start warm
 * too. Not at once: creating the zygote blocks the main thread ~10 ms, which a program that
 * ends within this time (a script that imports the library for a queue) should not pay, and its
 * top level may still call `setSpares({ count: 0 })`. Nor while it starts processes: then only
 * once it has started none for {@link PREWARM_QUIET_MS}.
 */
const PREWARM_AFTER_MS = 100;

if (!inWorker()) {
  void idleDelay(PREWARM_AFTER_MS).then(() => {
    if (config.count > 0 && !refilling) void refill(PREWARM_QUIET_MS);
  });
}
