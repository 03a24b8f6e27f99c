/**
 * The worker runtime: starting a child worker and running it, both sides of one small protocol.
 * `Process`, pool workers, actors and the manager server are all children started here, so
 * start-up, exit codes, crash detection and daemon lifecycle are written once.
 *
 * Protocol: the parent posts one start message (the shared heap, the child's slot and identity,
 * the target's module URL and export name, and the encoded arguments); the child posts one
 * `{ exit: code }` when it is done, after its `beforeExit` hooks ran. A child that dies without
 * saying so (an uncaught error) reaches the parent as an `error` event and exit code 1;
 * `terminate()`/`kill()` end it from outside with -15/-9. Whatever the cause, the parent marks
 * the child's slot dead in the shared process table, so locks it held are recoverable.
 *
 * Lifetime: a daemon child does not keep the program alive (its Worker is unref'd), a
 * non-daemon child does; nested workers die with their parent, so no worker outlives its parent.
 *
 * @module
 */

import { allocSlot, attachHeap, heap, isTerminatedError, markDead } from "./_heap.ts";
import {
  current,
  pidOfSlot,
  type ProcessInfo,
  runExitHooks,
  setBootstrapping,
  setCurrent,
} from "./_context.ts";
import type { TargetRef } from "./_target.ts";
import { ProcessError } from "./errors.ts";
import { loads } from "./reduction.ts";

/** How the child runs its target: call an exported function, or build an exported class and call `run()`. */
export type TargetKind = "function" | "class";

interface StartMessage {
  heap: SharedArrayBuffer;
  info: ProcessInfo;
  target: TargetRef;
  kind: TargetKind;
  /** The encoded arguments and, for a `Process` subclass, its own fields. */
  payload: { args: Uint8Array; fields?: Uint8Array };
  /** Modules that register the handle kinds found in the payload. */
  preload: string[];
}

/** What the parent needs to start a child. */
export interface ChildSpec {
  target: TargetRef;
  kind: TargetKind;
  payload: { args: Uint8Array; fields?: Uint8Array };
  /** Modules to import before decoding the payload (they register its handle kinds). */
  preload?: string[];
  name: string;
  daemon: boolean;
  identity: number[];
  permissions?: Deno.PermissionOptions;
}

const BOOTSTRAP = new URL("./_bootstrap.ts", import.meta.url);
const MOD = new URL("../mod.ts", import.meta.url).href;

// Deno's Worker has an internal, symbol-keyed ref/unref method (what node:worker_threads'
// unref() uses). Without it a daemon child would keep the program alive forever.
const refSymbol: symbol | undefined = Object.getOwnPropertySymbols(Worker.prototype).find((s) => {
  const f = (Worker.prototype as unknown as Record<symbol, unknown>)[s];
  return s.description === undefined && typeof f === "function" && /refCount/.test(String(f));
});

function setRef(w: Worker, ref: boolean): void {
  if (refSymbol) (w as unknown as Record<symbol, (r: boolean) => void>)[refSymbol](ref);
}

/** Permission options with every permission not named set to "inherit" (Deno's default is deny). */
function sandbox(p: Deno.PermissionOptions, module: string): Deno.PermissionOptions {
  if (p === "inherit" || p === "none") return p;
  const keys = ["env", "ffi", "net", "read", "run", "sys", "write", "import"] as const;
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = (p as Record<string, unknown>)[k] ?? "inherit";
  // The worker must still read its own code: the target's folder and denomp's.
  if (out.read !== "inherit" && out.read !== true) {
    const dirs = [module, import.meta.url].filter((u) => u.startsWith("file:")).map((u) =>
      new URL(".", u).pathname
    );
    out.read = [...(Array.isArray(out.read) ? out.read : []), ...dirs];
  }
  return out as Deno.PermissionOptions;
}

/** A child worker as its parent sees it. */
export class Child {
  /** The child's slot in the process table. */
  readonly slot: number;
  /** The child's pid (unique per run). */
  readonly pid: number;
  /** Resolves with the exit code once the child is gone. */
  readonly exited: Promise<number>;
  #worker: Worker;
  #code: number | null = null;
  #resolve!: (code: number) => void;

  constructor(spec: ChildSpec) {
    const parent = current();
    this.slot = allocSlot(heap().slot);
    this.pid = pidOfSlot(this.slot);
    this.exited = new Promise((r) => (this.#resolve = r));
    const options: WorkerOptions & { deno?: { permissions?: Deno.PermissionOptions } } = {
      type: "module",
      name: spec.name,
    };
    if (spec.permissions !== undefined) {
      options.deno = { permissions: sandbox(spec.permissions, spec.target.module) };
    }
    this.#worker = new Worker(BOOTSTRAP, options);
    this.#worker.onmessage = (e: MessageEvent<{ exit?: number }>) => {
      if (typeof e.data?.exit === "number") this.#finish(e.data.exit);
    };
    this.#worker.onerror = (e: ErrorEvent) => {
      // The child's own handlers report ordinary errors; this is a load failure (missing
      // module, syntax error) or a crash. Keep the parent alive, as Python does.
      e.preventDefault();
      if (this.#code === null) {
        console.error(`Process ${spec.name}: ${e.message}`);
        this.#finish(1);
      }
    };
    const start: StartMessage = {
      heap: heap().sab,
      info: {
        name: spec.name,
        pid: this.pid,
        slot: this.slot,
        daemon: spec.daemon,
        identity: spec.identity,
        authkey: parent.authkey,
        parent: { name: parent.name, pid: parent.pid },
      },
      target: spec.target,
      kind: spec.kind,
      payload: spec.payload,
      preload: spec.preload ?? [],
    };
    this.#worker.postMessage(start);
    // After the handlers are set: setting onmessage starts a message poll that is ref'd anew.
    if (spec.daemon) setRef(this.#worker, false);
  }

  /** The exit code, or null while the child runs. */
  get exitCode(): number | null {
    return this.#code;
  }

  /** Stops the child at once, recording `code` (-15 for terminate, -9 for kill). */
  terminate(code: number): void {
    if (this.#code === null) this.#finish(code);
  }

  #finish(code: number): void {
    if (this.#code !== null) return;
    this.#code = code;
    this.#worker.terminate();
    markDead(this.slot);
    this.#resolve(code);
  }
}

// ---------------------------------------------------------------------------------------------
// The child side.

let reported = false;

/** The worker's global scope, typed for the two members used here. */
const scope = globalThis as unknown as {
  postMessage(data: unknown): void;
  onmessage: ((e: MessageEvent<StartMessage>) => void) | null;
  close(): void;
};

function report(code: number): void {
  if (reported) return;
  reported = true;
  scope.postMessage({ exit: code });
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

/** Entry point of `_bootstrap.ts`: waits for the start message, then runs the target. */
export function workerMain(): void {
  scope.onmessage = (e: MessageEvent<StartMessage>) => {
    scope.onmessage = null;
    void runChild(e.data);
  };
}

function findExport(ns: Record<string, unknown>, target: TargetRef): unknown {
  if (target.name in ns) return ns[target.name];
  // `export { work as run }` or a default export whose function is named like the target.
  return Object.values(ns).find((v) => typeof v === "function" && v.name === target.name);
}

async function runChild(msg: StartMessage): Promise<void> {
  attachHeap(msg.heap, msg.info.slot);
  setCurrent(msg.info);
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
    setBootstrapping(true);
    const [ns] = await Promise.all([
      import(msg.target.module),
      ...msg.preload.map((m) => import(m)),
    ])
      .finally(() => setBootstrapping(false));
    void idleDelay(50).then(() => import(MOD)).catch(() => {});
    const fn = findExport(ns, msg.target);
    if (typeof fn !== "function") {
      throw new ProcessError(
        `target '${msg.target.name}' is not exported from ${msg.target.module}` +
          (fn === undefined
            ? " (export it so the worker can import it)"
            : ` (it is a ${typeof fn}, not a function)`),
      );
    }
    const args = loads<unknown[]>(msg.payload.args);
    const fields = msg.payload.fields
      ? loads<Record<string, unknown>>(msg.payload.fields)
      : undefined;
    if (msg.kind === "class") {
      const obj = Object.create(fn.prototype) as { run(): unknown };
      Object.assign(obj, fields);
      await adoptSelf(obj, msg.info, args);
      await obj.run();
    } else {
      await (fn as (...a: unknown[]) => unknown)(...args);
    }
    await runExitHooks();
    report(0);
  } catch (err) {
    try {
      await runExitHooks();
    } catch { /* the target's failure is what gets reported */ }
    fail(err);
  }
}

/**
 * Resolves after `ms`, or never if the worker ends first. Not `setTimeout`: a worker's first
 * timer costs ~3 ms (a third of a worker's start-up) and would keep the worker's loop alive;
 * a timed-out `Atomics.waitAsync` on a private word costs ~20 µs and keeps nothing alive.
 */
function idleDelay(ms: number): Promise<unknown> {
  const w = Atomics.waitAsync(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  return w.async ? w.value : Promise.resolve();
}

/** Hook for `process.ts`: makes a subclass instance rebuilt in its worker act as the current process. */
let adoptHook: ((obj: object, info: ProcessInfo, args: unknown[]) => unknown) | undefined;

/** Registers how a rebuilt `Process` subclass instance is made the current process (set by process.ts). */
export function setAdoptHook(
  hook: (obj: object, info: ProcessInfo, args: unknown[]) => unknown,
): void {
  adoptHook = hook;
}

async function adoptSelf(obj: object, info: ProcessInfo, args: unknown[]): Promise<void> {
  await adoptHook?.(obj, info, args);
}
