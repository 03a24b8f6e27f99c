/**
 * The zygote: a worker whose only job is to create spare workers (spares.ts), so that the
 * thread that starts processes never pays for creating them. Deno's `new Worker()` blocks the
 * calling thread until the new thread has built its isolate: ~10 ms alone, up to ~120 ms beside
 * workers that are loading modules (measured on 2 cores). Made on the starting thread, a spare
 * would stall that thread at a moment it does not choose (a pool's first results waiting behind
 * it); made here, it costs that thread one message.
 *
 * A spare made here is this worker's child, so it talks to the starting thread through a
 * `MessageChannel` whose one end is sent to it and the other to the starting thread; this
 * worker keeps the `Worker` object, to end it (`{ end: id }`) and to forward its `error` events
 * (`{ error: id, message }`) and its one message, that it has booted (`{ ready: id }`: through
 * this worker, whose channel to the starting thread can be un-ref'd, unlike a port's once it
 * has received a message). It must therefore live as long as any of them (spares.ts ends it
 * only when it has neither spares nor running children). Deno starts a worker made by a worker
 * 500 ms late (Deno 2.9.6: each worker has an inspector session with the main thread, and a
 * worker made while its parent has one first waits 500 ms for a debugger, in the inspector's
 * `wait_for_page_wait_for_debugger`): spares arrive 0.5–1 s after they are asked for, which is
 * why they are made ahead of need.
 *
 * A spare is made, and later loads the library (~15–30 ms of CPU), only on ticks in which a
 * core was free: the program has left at least three quarters of a core idle over the last
 * {@link GATE_TICK_MS} (its CPU time, `process.cpuUsage()`, against the cores there are). Each
 * such tick does one thing: it makes one spare asked for (`new Worker()`: ~10 ms of this
 * thread and a few of the new one's), or else opens the gate at which made spares wait to load
 * the library, for one of them. A spare exists to save start-up time, which a program whose
 * children fill every core would pay for in their time instead:
 * - on 2 cores, replacement spares booted inside 2 of 10 of W6's 15–50 ms timed windows of two
 *   busy workers, 13–20 ms of CPU each (hence the gate);
 * - the replacements for W2's two processes were made 50 ms into its ~170 ms stream of two
 *   busy workers, before the gate covered making them: the stream ran at 0.91–0.92 of
 *   c7aa146 (a tree without spares) in interleaved runs, 0.95 with the making gated too.
 * A program that keeps every core busy gets its spares once it pauses; work that starts right
 * after an idle tick can still meet a spare's boot.
 *
 * @module
 */

import type { WarmMessage } from "./spares.ts";

/**
 * The gate of spares' boots (shared with each spare, see `passGate` in child.ts): 1 while one
 * spare may go, taken by that spare (0 again); shut again at the next busy tick.
 */
const gate = new Int32Array(new SharedArrayBuffer(4));
/** How often the gate keeper measures while spares are asked for or wait (ms). */
export const GATE_TICK_MS = 50;
/** Spares made that have not said they are ready (held back by Deno, at the gate, or loading). */
const booting = new Set<number>();
/** Spares asked for and not made yet (one is made per idle tick), by what each will load. */
const pending: string[][] = [];
let keeping = false;

/** The program's CPU time so far in µs (every thread), or NaN where there is no `process`. */
function cpuMicros(): number {
  try {
    const u = (globalThis as { process?: { cpuUsage(): { user: number; system: number } } })
      .process!.cpuUsage();
    return u.user + u.system;
  } catch {
    return NaN;
  }
}

/**
 * On each tick in which a core was mostly idle, makes one spare asked for or opens the gate for
 * one made; runs while spares are asked for or boot.
 */
async function keepGate(): Promise<void> {
  keeping = true;
  const cores = Math.max(1, navigator.hardwareConcurrency || 1);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  let cpu = cpuMicros(), at = performance.now();
  try {
    while (booting.size || pending.length) {
      const w = Atomics.waitAsync(nap, 0, 0, GATE_TICK_MS);
      if (w.async) await w.value;
      const nowCpu = cpuMicros(), now = performance.now(), span = now - at;
      // Idle core time over the interval, in ms. NaN (no measure): open, as without a gate.
      const idle = cores * span - (nowCpu - cpu) / 1000;
      cpu = nowCpu;
      at = now;
      // Open for this tick only: an opening no spare took is not used later, when busy.
      if (idle < 0.75 * span) Atomics.store(gate, 0, 0);
      else if (pending.length) makeOne(pending.shift()!);
      else if (Atomics.exchange(gate, 0, 1) === 0) Atomics.notify(gate, 0, 1);
    }
  } finally {
    Atomics.store(gate, 0, 0);
    keeping = false;
  }
}

/** What the starting thread asks: spares made, one ended, or those not made yet called off. */
export type ZygoteRequest = { make: number; warm: string[] } | { end: number } | {
  cancel: number;
};

/** What the zygote answers: a new spare (with its end of the channel), or a spare's error. */
export type ZygoteReply =
  | { spare: number; port: MessagePort }
  | { ready: number }
  | { cancelled: number }
  | { error: number; message: string };

const BOOTSTRAP = new URL("./bootstrap.ts", import.meta.url);

/** The worker's global scope, typed for the members used here. */
const scope = globalThis as unknown as {
  postMessage(data: ZygoteReply, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<ZygoteRequest>) => void) | null;
};

const workers = new Map<number, Worker>();
let ids = 0;

scope.onmessage = (e) => {
  const m = e.data;
  if ("end" in m) {
    workers.get(m.end)?.terminate();
    workers.delete(m.end);
    booting.delete(m.end);
    return;
  }
  if ("cancel" in m) {
    // Fewer spares wanted (`setSpares`): those not made yet are not made.
    scope.postMessage({ cancelled: pending.splice(0, m.cancel).length });
    return;
  }
  for (let i = 0; i < m.make; i++) pending.push(m.warm);
  if (!keeping) void keepGate();
};

/** Makes one spare (on an idle tick: see the module doc) that will load `warm`. */
function makeOne(warm: string[]): void {
  const id = ++ids;
  const worker = new Worker(BOOTSTRAP, { type: "module", name: "denomp-spare" });
  const { port1, port2 } = new MessageChannel();
  // Its one message to this worker: booted (its others go through the channel).
  worker.onmessage = () => {
    booting.delete(id);
    scope.postMessage({ ready: id });
  };
  worker.onerror = (ev) => {
    booting.delete(id);
    ev.preventDefault(); // reported to the starting thread, which decides (as for a new worker)
    scope.postMessage({ error: id, message: ev.message });
  };
  worker.postMessage({ warm, port: port2, gate } satisfies WarmMessage, [port2]);
  workers.set(id, worker);
  booting.add(id);
  scope.postMessage({ spare: id, port: port1 }, [port1]);
}
