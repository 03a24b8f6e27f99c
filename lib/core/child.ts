/**
 * The child side of the worker runtime (spawn.ts has the parent's): what a worker runs from
 * `bootstrap.ts` until its target has returned. Apart from spawn.ts so that a new worker loads
 * only what the child side needs: the parent side brings `observe.ts` and the start options,
 * ~2 ms of a bare worker's ~4 ms of start-up over a bare `new Worker()` (measured: 16.4 against
 * 18.5 ms per start and stop, the raw floor 14.6).
 *
 * @module
 */

import { attachHeap, heap, isAlive, isTerminatedError, releaseAdopted } from "./heap.ts";
import type { StartBuffer } from "./bigblock.ts";
import {
  current,
  type ProcessInfo,
  runExitHooks,
  setBootstrapping,
  setCurrent,
} from "./context.ts";
import { adoptSpareOptions, idleDelay, type SpareOptions, type WarmMessage } from "./spares.ts";
import type { TargetRef } from "./target.ts";
import { ProcessError } from "./errors.ts";

/** How the child runs its target: call an exported function, or build an exported class and call `run()`. */
export type TargetKind = "function" | "class";

/** The parent's one message to a child: everything it needs to run its target. */
export interface StartMessage {
  heap: SharedArrayBuffer;
  info: ProcessInfo;
  target: TargetRef;
  kind: TargetKind;
  /** The encoded arguments and, for a `Process` subclass, its own fields. */
  payload: { args: Uint8Array; fields?: Uint8Array };
  /** Set when the payload is no arguments and no fields: the child needs no codec to read it. */
  noArgs?: boolean;
  /** Modules that register the handle kinds found in the payload. */
  preload: string[];
  /**
   * Modules to start importing at once, not waited for (an actor class's module: its import
   * then overlaps decoding the arguments), by a worker taken from a spare (a new worker ignores
   * them). Their errors surface where they are imported for real.
   */
  ahead?: string[];
  /** The buffers of the big shared blocks the parent has (see _bigblock), if any. */
  buffers?: StartBuffer[];
  /** The parent's spare-worker setting, which the child inherits. */
  spares: Required<SpareOptions>;
}

const MOD = new URL("../../mod.ts", import.meta.url).href;
/**
 * The codec and the big blocks' buffers, imported only when a start message needs them: a new
 * worker whose target takes no arguments starts without them (5 modules and ~45 KB of source
 * for the codec, ~14 KB for the buffers: a worker importing child.ts's graph started and
 * answered in 19.3 ms before, 15.8 without them, a bare worker 13.7; medians of 15). A spare
 * has them loaded already, as has any worker whose target's module imports the library.
 */
const CODEC = new URL("./reduction.ts", import.meta.url).href;
const BIG_BLOCKS = new URL("./bigblock.ts", import.meta.url).href;
/**
 * How long a child runs before it loads the whole library in the background (a spare has it
 * already). Not sooner: loading it is ~20–50 ms of CPU, which a worker's first second is usually
 * busiest without (module loading, JIT). At 50 ms it landed in W6's timed runs of fresh workers:
 * contended Lock Sync / RLock async 11.8M / 4.4M increments/s against 13.5M / 6.1M without it
 * (medians of 75 runs each, interleaved, load ~1.2).
 */
const WARM_AFTER_MS = 1000;
/** What a spare runs once it has loaded the library (see warmup.ts). */
const WARMUP = new URL("./warmup.ts", import.meta.url).href;

let reported = false;

/** The worker's global scope, typed for the two members used here. */
const scope = globalThis as unknown as {
  postMessage(data: unknown): void;
  onmessage: ((e: MessageEvent<StartMessage | WarmMessage>) => void) | null;
  name: string;
  close(): void;
};

/** Where the child's messages go: its parent, or for a spare the parent's end of its channel. */
let parent: { postMessage(data: unknown): void } = scope;

function report(code: number): void {
  if (reported) return;
  reported = true;
  parent.postMessage({ exit: code });
}

/** Thrown by `exit(code)` inside a worker to unwind the target (Python's `SystemExit`). */
export class SystemExit extends Error {
  /** Creates the signal to exit with `code`. */
  constructor(readonly code: number) {
    super(`exit(${code})`);
    this.name = "SystemExit";
  }
}

function printFailure(err: unknown): void {
  const name = current().name;
  const text = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
  console.error(`Process ${name}:\n${text}`);
}

function fail(err: unknown): void {
  if (err instanceof SystemExit) return report(err.code);
  if (reported || isTerminatedError(err)) return; // a zombie: its parent reported the kill
  printFailure(err);
  report(1);
}

/** Entry point of `bootstrap.ts`: waits for the start message, then runs the target. */
export function workerMain(): void {
  const start = (msg: StartMessage) => {
    scope.onmessage = null;
    void runChild(msg);
  };
  scope.onmessage = (e: MessageEvent<StartMessage | WarmMessage>) => {
    if (!("warm" in e.data)) return start(e.data);
    // A spare (spares.ts): its start message comes through the port, its messages go back
    // there. It loads the library first, then says it is ready (to the zygote, which tells the
    // parent): a spare is handed out warm or not at all.
    const { warm, port, gate } = e.data;
    parent = port;
    port.onmessage = (m: MessageEvent<StartMessage>) => {
      port.onmessage = null;
      start(m.data);
    };
    // Then warmup.ts: the first import of a file and the codec's first run (~2 ms), which the
    // process given this spare would otherwise pay; then what the library registered.
    // All of it once the zygote says that a core is free (zygote.ts).
    void passGate(gate).then(() =>
      Promise.all(warm.map((m) => import(m).then((ns) => loaded.set(m, ns))))
    )
      .catch(() => {})
      .then(() => import(WARMUP)).then((m) => m.warmUp(), () => {})
      .then(runWarmUps)
      .then(() => scope.postMessage({ ready: true }));
  };
}

/**
 * Resolves once this spare has taken the gate's opening (zygote.ts): one spare at a time loads
 * the library, and only while a core is free. No gate (a parent without one): at once.
 */
async function passGate(gate: Int32Array | undefined): Promise<void> {
  if (!gate) return;
  while (Atomics.compareExchange(gate, 0, 1, 0) !== 1) {
    const w = Atomics.waitAsync(gate, 0, 0);
    if (w.async) await w.value;
  }
}

/**
 * The modules a spare loaded while it waited (its `warm` list: the library, the actor runtime,
 * the pool worker), by URL: a target there (an actor's, a pool worker's) is found without an
 * `import()`, which costs ~0.2 ms even for a module already loaded.
 */
const loaded = new Map<string, Record<string, unknown>>();

const warmUps: (() => void)[] = [];
let warmUpsRun = 0;

/**
 * Registers code a spare runs once it has loaded the library, before it says it is ready: the
 * first run of a function in a fresh isolate compiles it (V8 compiles lazily, and Deno's code
 * cache holds only what ran at a module's load), so a path a new process takes at once (an
 * actor's first message and reply) is run here on the spare's own time. It runs before the
 * spare has its heap: `heap()` then gives it a private one, which the start message's heap
 * replaces. So it must leave nothing behind that outlives it: no handle objects (their
 * finalizers would free offsets of the real heap) and nothing cached by heap offset.
 */
export function addWarmUp(fn: () => void): void {
  warmUps.push(fn);
}

function runWarmUps(): void {
  for (const fn of warmUps) {
    try {
      fn();
      warmUpsRun++;
    } catch { /* a warm-up only: the spare works without it */ }
  }
}

/** How many registered warm-ups this worker ran without error (a spare's, before it was taken). */
export function warmUpsDone(): number {
  return warmUpsRun;
}

/** Imports the target's module and the preloads, as the worker's bootstrapping. */
async function importTarget(msg: StartMessage): Promise<Record<string, unknown>> {
  setBootstrapping(true);
  try {
    const [ns] = await Promise.all([
      import(msg.target.module),
      ...msg.preload.map((m) => import(m)),
    ]);
    return ns;
  } finally {
    setBootstrapping(false);
  }
}

function findExport(ns: Record<string, unknown>, target: TargetRef): unknown {
  if (target.name in ns) return ns[target.name];
  // `export { work as run }` or a default export whose function is named like the target.
  return Object.values(ns).find((v) => typeof v === "function" && v.name === target.name);
}

async function runChild(msg: StartMessage): Promise<void> {
  attachHeap(msg.heap, msg.info.slot);
  setCurrent(msg.info);
  scope.name = msg.info.name; // a spare was created before its name was known
  adoptSpareOptions(msg.spares);
  addEventListener("error", (e) => {
    e.preventDefault();
    fail(e.error ?? e.message);
  });
  addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    fail(e.reason);
  });
  // Deno.exit() in a worker ends only the worker and tells the parent nothing: unwind instead,
  // so the exit hooks run and the code is reported.
  Object.defineProperty(Deno, "exit", {
    value: (code = 0) => {
      throw new SystemExit(code);
    },
    configurable: true,
  });
  try {
    // Only what the target and its arguments need is awaited: importing the whole library
    // would double a worker's start-up time. A worker that lives on loads the rest in the
    // background, so a handle of another kind arriving later through a channel finds its kind
    // registered (not at once: compiling it then would slow every short-lived worker down).
    const known = msg.preload.length ? undefined : loaded.get(msg.target.module);
    // Only with the target at hand: Deno loads one dynamic import's graph at a time, so one
    // started ahead of the target's import would hold it up.
    if (known) { for (const m of msg.ahead ?? []) import(m).catch(() => {}); }
    const ns: Record<string, unknown> = known ?? await importTarget(msg);
    void idleDelay(WARM_AFTER_MS).then(() => import(MOD)).catch(() => {});
    const fn = findExport(ns, msg.target);
    if (typeof fn !== "function") {
      throw new ProcessError(
        `target '${msg.target.name}' is not exported from ${msg.target.module}` +
          (fn === undefined
            ? " (export it so the worker can import it)"
            : ` (it is a ${typeof fn}, not a function)`),
      );
    }
    // A big shared block in the arguments finds its buffer in the start message; async all the
    // same, should the parent not have had it (see _bigblock).
    if (msg.buffers) {
      (await import(BIG_BLOCKS) as typeof import("./bigblock.ts")).adoptStartBuffers(msg.buffers);
    }
    let args: unknown[] = [], fields: Record<string, unknown> | undefined;
    if (!msg.noArgs) {
      const { loadsAsync } = await import(CODEC) as typeof import("./reduction.ts");
      args = await loadsAsync<unknown[]>(msg.payload.args);
      if (msg.payload.fields) {
        fields = await loadsAsync<Record<string, unknown>>(msg.payload.fields);
      }
    }
    if (msg.kind === "class") {
      const obj = Object.create(fn.prototype) as { run(): unknown };
      Object.assign(obj, fields);
      await adoptHook?.(obj, msg.info, args);
      await obj.run();
    } else {
      await (fn as (...a: unknown[]) => unknown)(...args);
    }
    await runExitHooks();
    dropReferences();
    report(0);
  } catch (err) {
    try {
      await runExitHooks();
    } catch { /* the target's failure is what gets reported */ }
    dropReferences();
    fail(err);
  }
}

/**
 * The child's handles die with it: their references go now, before the parent hears of the end
 * (so that its `join()` sees them gone). Not a terminated child's (a zombie running on to here):
 * after `terminate()`, nothing it does changes shared state.
 */
function dropReferences(): void {
  if (isAlive(heap().slot)) releaseAdopted();
}

/** Hook for `process.ts`: makes a subclass instance rebuilt in its worker act as the current process. */
let adoptHook: ((obj: object, info: ProcessInfo, args: unknown[]) => unknown) | undefined;

/** Registers how a rebuilt `Process` subclass instance is made the current process (set by process.ts). */
export function setAdoptHook(
  hook: (obj: object, info: ProcessInfo, args: unknown[]) => unknown,
): void {
  adoptHook = hook;
}
