/**
 * `Process`: run an exported function (or a `Process` subclass's `run()`) in its own worker,
 * as Python's `multiprocessing.Process` runs it in a child process.
 *
 * @module
 */

import { optionsOf } from "../core/args.ts";
import { deadlineOf, keepAlive, remainingMs } from "../core/atomics.ts";
import { beforeExit, current, isBootstrapping, type ProcessInfo } from "../core/context.ts";
import { isAlive as slotAlive, parentSlot } from "../core/heap.ts";
import { aheadOf, Child, setAdoptHook, SystemExit, type TargetKind } from "../core/spawn.ts";
import { callerFor, callerModule, resolveTarget, type TargetRef } from "../core/target.ts";
import { ProcessError, ValueError } from "../core/errors.ts";
import { Encoder, withHandleModules } from "../core/reduction.ts";
import { checkIsolation, handleTable, isolatedEncoder, OsChild } from "./os_spawn.ts";

/** Where a child runs: a Web Worker of this process, or a `deno` OS process of its own. */
export type Isolation = "thread" | "process";

/** The options that choose and shape an isolated child (part of `Process` and `Pool` options). */
export interface IsolationOptions {
  /**
   * `"thread"` (default): a Web Worker; `"process"`: a separate `deno` OS process. Handles in
   * its arguments (a pool's task arguments and `initargs` too) cross with the same API, served
   * by a thread of this program; a `SharedMemory` cannot (a `SerializationError` names it).
   */
  isolation?: Isolation;
  /** With isolation `"process"` only: the child's V8 heap limit in MiB (`--max-old-space-size`). */
  maxMemoryMb?: number;
  /** With isolation `"process"` only: extra `deno run` flags for the child, after the inherited ones. */
  denoFlags?: string[];
}

/** Options of `new Process(...)`. */
export interface ProcessOptions<A extends unknown[] = unknown[]> extends IsolationOptions {
  /**
   * What to run: an exported function, or `"./module.ts#exportName"`. The module of a function
   * is found automatically; pass `module` when it cannot be (e.g. it is re-exported under
   * another name).
   */
  target?: ((...args: A) => unknown) | string;
  /** The module that exports `target` (usually `import.meta.url`); optional. */
  module?: string | URL;
  /** Arguments for the target; handles (queues, locks, pipes...) may be nested anywhere. */
  args?: A;
  /** The process name; default `Process-N` (`Process-N:M` for grandchildren), as in Python. */
  name?: string;
  /** A daemon process is terminated when its parent ends and may not start children. */
  daemon?: boolean;
  /**
   * Deno permissions for the worker (at most the parent's): `"none"`, or an object such as
   * `{ net: false, read: ["./data"] }` whose permissions not named are inherited. Least
   * privilege plus what starting needs: whatever is asked, the worker may read denomp's own
   * modules and its target's module file (the files only, not their folders); other modules
   * that the target's module imports must be named in `read`. Needs Deno's
   * `--unstable-worker-options` flag (or `"unstable": ["worker-options"]` in deno.json):
   * without it `start()` throws a `ProcessError` that says so (where it can tell: see README).
   */
  permissions?: Deno.PermissionOptions;
}

interface State {
  target?: ((...args: never[]) => unknown) | string;
  module?: string | URL;
  args: unknown[];
  name?: string;
  daemon?: boolean;
  permissions?: Deno.PermissionOptions;
  caller?: string;
  /** Python's `_identity`: the parent's identity plus this child's number. */
  identity: number[];
  child?: Child | OsChild;
  /** Set for isolation "process": the child is a `deno` OS process (see os_spawn.ts). */
  isolated?: IsolationOptions;
  closed: boolean;
  /** Set on the object that represents the current process (or its parent) inside a worker. */
  self?: ProcessInfo;
  /** For `parentProcess()`: the slot whose liveness `isAlive()` reports. */
  watchSlot?: number;
}

// Internal state lives outside the object, so a subclass's own fields (copied to its worker)
// are exactly the user's, and a rebuilt instance can be given state without its constructor.
const states = new WeakMap<Process, State>();
const st = (p: Process): State => states.get(p)!;

let childCounter = 0;
const children = new Set<Process>();

// A worker reports its exit only after its non-daemon children ended (Python joins them at exit).
beforeExit(async () => {
  // Not join(): a child that has just ended may be closed already (it leaves `children` a
  // moment later), and join() refuses a closed process object.
  for (const p of [...children]) if (!p.daemon) await keepAlive(st(p).child!.exited);
});

/** Python's check: a closed process object refuses to be used. */
function checkOpen(s: State): void {
  if (s.closed) throw new ValueError("process object is closed");
}

/** Whether `module` is a URL, or a string naming its scheme (not relative to a caller). */
function isAbsolute(module: string | URL | undefined): boolean {
  return module instanceof URL ||
    (typeof module === "string" && /^[a-z][a-z\d+.-]*:/i.test(module));
}

/**
 * A process: a worker running `target(...args)` or a subclass's `run()`.
 *
 * @example
 * ```ts ignore
 * // tasks.ts
 * export function greet(name: string) {
 *   console.log(`hello ${name}`);
 * }
 * // main.ts
 * import { Process } from "jsr:@denomp/multiprocessing";
 * import { greet } from "./tasks.ts";
 * if (import.meta.main) {
 *   const p = new Process({ target: greet, args: ["bob"] });
 *   p.start();
 *   await p.join();
 *   console.log(p.exitCode); // 0
 * }
 * ```
 */
export class Process<A extends unknown[] = unknown[]> {
  /** Prepares a process; nothing runs until `start()`. */
  constructor(options?: ProcessOptions<A>) {
    options = optionsOf(options, "new Process", "new Process({ target: work, args: [1] })");
    const isolated = checkIsolation(options, "Process") ? options : undefined;
    states.set(
      this,
      {
        target: options.target,
        module: options.module,
        args: options.args ?? [],
        name: options.name,
        daemon: options.daemon,
        permissions: options.permissions,
        // Reading the stack costs ~0.2 ms: not when run() is Process's own and an absolute
        // module is given (pool workers, actors), nor for a target found before (callerFor).
        caller: new.target !== Process
          ? callerModule()
          : isAbsolute(options.module)
          ? Deno.mainModule
          : callerFor(options.target, options.module),
        identity: [...current().identity, ++childCounter],
        closed: false,
        isolated,
      } satisfies State,
    );
  }

  /** The process name. */
  get name(): string {
    const s = st(this);
    return s.self?.name ?? (s.name ??= `Process-${s.identity.join(":")}`);
  }
  set name(v: string) {
    st(this).name = String(v);
  }

  /** Whether the process is daemonic (settable only before `start()`). */
  get daemon(): boolean {
    const s = st(this);
    return s.self?.daemon ?? s.daemon ?? current().daemon;
  }
  set daemon(v: boolean) {
    if (st(this).child) throw new ProcessError("cannot set daemon status of an active process");
    st(this).daemon = Boolean(v);
  }

  /** The pid (unique per run), or null before `start()`. */
  get pid(): number | null {
    const s = st(this);
    return s.self?.pid ?? s.child?.pid ?? null;
  }

  /** Same as `pid`, as in Python. */
  get ident(): number | null {
    return this.pid;
  }

  /**
   * null while running (or not started); 0 on success; 1 after an uncaught error; the code
   * given to `exit(n)`; -15 after `terminate()`, -9 after `kill()`.
   */
  get exitCode(): number | null {
    return st(this).child?.exitCode ?? null;
  }

  /** Starts the worker. Throws `ProcessError` if already started or if the target cannot run in a worker. */
  start(): void {
    const s = st(this);
    checkOpen(s);
    if (s.self) throw new ProcessError("cannot start the current process");
    if (s.child) throw new ProcessError("processes can only be started once");
    // The bootstrapping check comes first: a pool's workers are daemonic, so a Pool created at
    // a module's top level would otherwise get the daemon message instead of the hint.
    if (isBootstrapping()) {
      // The module was imported by a worker to find its target, and its top level starts a
      // process: without this check every worker would start another, forever.
      throw new ProcessError(
        "An attempt has been made to start a new process while a worker was importing its target's module. " +
          "Guard the parent's code with `if (import.meta.main) { ... }` (Python's `if __name__ == '__main__'`).",
      );
    }
    if (current().daemon) {
      throw new ProcessError("daemonic processes are not allowed to have children");
    }
    const ctor = this.constructor as typeof Process;
    const overridesRun = ctor !== Process && ctor.prototype.run !== Process.prototype.run;
    let target: TargetRef, kind: TargetKind;
    if (overridesRun) {
      target = resolveTarget(ctor, undefined, s.caller);
      kind = "class";
    } else {
      if (s.target === undefined) {
        throw new ProcessError("a Process needs a target (or a subclass overriding run())");
      }
      target = resolveTarget(s.target, s.module, s.caller);
      kind = "function";
    }
    const table = s.isolated ? handleTable() : undefined;
    const enc = table ? isolatedEncoder(table) : new Encoder();
    const { result: payload, modules: preload } = withHandleModules(() => ({
      args: enc.encode(s.args, "args").slice(),
      fields: kind === "class" ? enc.encode({ ...this }, "this").slice() : undefined,
    }));
    const name = this.name;
    const spec = {
      target,
      kind,
      payload,
      preload,
      ahead: aheadOf(this),
      name,
      daemon: this.daemon,
      identity: s.identity,
      permissions: s.permissions,
    };
    s.child = s.isolated ? new OsChild(spec, s.isolated, s.args, table) : new Child(spec);
    children.add(this);
    void s.child.exited.then(() => children.delete(this));
  }

  /**
   * The body of the process. The default calls the target with the arguments; subclasses
   * override it (their own fields are copied to the worker).
   */
  run(): unknown {
    const s = st(this);
    if (typeof s.target !== "function") {
      throw new ProcessError("run() has no target function to call here");
    }
    return (s.target as (...a: unknown[]) => unknown)(...s.args);
  }

  /**
   * Resolves when the process has ended, or after `timeout` milliseconds (then check
   * `exitCode`). `timeout` is a number (Python's `join(5)` is `join(5000)` here): anything else
   * is a `TypeError`, a negative one a `ValueError`. Throws `ValueError` once closed.
   */
  async join(timeout?: number): Promise<void> {
    const s = st(this);
    checkOpen(s);
    if (s.self) throw new ProcessError("a process cannot join itself");
    if (!s.child) throw new ProcessError("can only join a started process");
    const deadline = deadlineOf(timeout);
    // An isolated child's exit is recorded at once by terminate(); it has ended once the server
    // of its handles has put back what it held (`exited`).
    if (s.child.exitCode !== null && !s.isolated) return;
    if (deadline === Infinity) {
      await keepAlive(s.child.exited);
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      s.child.exited,
      new Promise((r) => (timer = setTimeout(r, remainingMs(deadline)))),
    ]);
    clearTimeout(timer);
  }

  /** True from `start()` until the worker has ended. Throws `ValueError` once closed. */
  isAlive(): boolean {
    const s = st(this);
    checkOpen(s);
    if (s.self) return s.watchSlot === undefined || slotAlive(s.watchSlot);
    return s.child !== undefined && s.child.exitCode === null;
  }

  /**
   * Stops the worker at once (Python's SIGTERM): `exitCode` becomes -15. Throws `ValueError`
   * once closed.
   */
  terminate(): void {
    const s = st(this);
    checkOpen(s);
    s.child?.terminate(-15);
  }

  /**
   * Stops the worker at once (Python's SIGKILL): `exitCode` becomes -9. Throws `ValueError`
   * once closed.
   */
  kill(): void {
    const s = st(this);
    checkOpen(s);
    s.child?.terminate(-9);
  }

  /**
   * Releases the process object; throws `ValueError` while it still runs. Afterwards, as in
   * Python, `start()`, `join()`, `isAlive()`, `terminate()` and `kill()` throw `ValueError`
   * ("process object is closed"); `name`, `pid` and `exitCode` still answer. Idempotent.
   */
  close(): void {
    const s = st(this);
    if (s.child && s.child.exitCode === null) {
      throw new ValueError(
        "Cannot close a process while it is still running. You should first call join() or terminate().",
      );
    }
    s.closed = true;
  }

  /** `await using p = ...`: joins, then closes. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (st(this).closed) return;
    if (st(this).child) await this.join();
    this.close();
  }

  /** A short description, like Python's repr. */
  toString(): string {
    const code = this.exitCode;
    const status = st(this).self
      ? "started"
      : !st(this).child
      ? "initial"
      : code === null
      ? "started"
      : `stopped exitcode=${code}`;
    return `<Process name='${this.name}' pid=${this.pid ?? "None"} ${status}${
      this.daemon ? " daemon" : ""
    }>`;
  }
}

function selfProcess(info: ProcessInfo, watchSlot?: number): Process {
  const p = Object.create(Process.prototype) as Process;
  states.set(
    p,
    {
      args: [],
      closed: false,
      self: info,
      watchSlot,
      identity: info.identity,
    } satisfies State,
  );
  return p;
}

let me: Process | undefined;

// A Process subclass rebuilt in its worker becomes that worker's current process.
setAdoptHook((obj, info, args) => {
  states.set(
    obj as Process,
    { args, closed: false, self: info, identity: info.identity } satisfies State,
  );
  me = obj as Process;
});

/**
 * The `Process` object of the code that calls it (`MainProcess` in the main thread).
 *
 * @example
 * ```ts
 * import { currentProcess } from "jsr:@denomp/multiprocessing";
 * console.log(currentProcess().name); // "MainProcess"
 * ```
 */
export function currentProcess(): Process {
  return me ??= selfProcess(current());
}

/**
 * The parent of the current process, or null in the main process.
 *
 * @example
 * ```ts
 * import { parentProcess } from "jsr:@denomp/multiprocessing";
 * console.assert(parentProcess() === null);
 * ```
 */
export function parentProcess(): Process | null {
  const info = current();
  if (!info.parent) return null;
  const ps = parentSlot(info.slot);
  return selfProcess({
    ...info,
    name: info.parent.name,
    pid: info.parent.pid,
    slot: ps,
    parent: null,
    identity: [],
  }, ps);
}

/**
 * The children of the current process that are still running.
 *
 * @example
 * ```ts
 * import { activeChildren } from "jsr:@denomp/multiprocessing";
 * console.log(activeChildren().length); // 0
 * ```
 */
export function activeChildren(): Process[] {
  return [...children].filter((p) => p.exitCode === null); // (isAlive() refuses a closed one)
}

/**
 * The number of logical CPUs (Python's `cpu_count()`).
 *
 * @example
 * ```ts
 * import { cpuCount } from "jsr:@denomp/multiprocessing";
 * console.assert(cpuCount() >= 1);
 * ```
 */
export function cpuCount(): number {
  return navigator.hardwareConcurrency || 1;
}

/**
 * The pid of the current process (in a worker, the parent's `p.pid` for it).
 *
 * @example
 * ```ts
 * import { getPid } from "jsr:@denomp/multiprocessing";
 * console.assert(getPid() === Deno.pid);
 * ```
 */
export function getPid(): number {
  return current().pid;
}

/**
 * The pid of the parent process (the OS parent's for the main process).
 *
 * @example
 * ```ts
 * import { getPpid } from "jsr:@denomp/multiprocessing";
 * console.assert(typeof getPpid() === "number");
 * ```
 */
export function getPpid(): number {
  return current().parent?.pid ?? Deno.ppid;
}

/**
 * Ends the current process with `code` (Python's `sys.exit`). In a worker it unwinds the
 * target, runs the exit hooks and reports `code` as the process's `exitCode`.
 *
 * @example
 * ```ts ignore
 * import { exit } from "jsr:@denomp/multiprocessing";
 * export function task() {
 *   exit(3); // the parent sees p.exitCode === 3
 * }
 * ```
 */
export function exit(code = 0): never {
  if (current().parent === null) Deno.exit(code);
  throw new SystemExit(code);
}
