/**
 * Threads: concurrent tasks inside one isolate (Python's `threading`).
 *
 * A JavaScript isolate runs one piece of code at a time, so a `Thread` here is what a Python
 * thread is under the GIL: a task that shares memory with its creator and interleaves with the
 * others where it waits (at each `await`). Each Thread runs inside its own
 * `AsyncLocalStorage` context, which is how {@link currentThread} knows who is running across
 * awaits, timers and callbacks, and how an `RLock` knows which thread owns it. `node:async_hooks`
 * is loaded by the first `start()` of a process, not on import: every worker whose target module
 * imports the library would otherwise pay for it (~4 ms here) whether it starts threads or not.
 *
 * Thread idents are unique in the whole process tree of a run (they come from the shared heap's
 * id counter), so `(process, thread)` ownership needs only the ident.
 *
 * @module
 */

import type { AsyncLocalStorage } from "node:async_hooks";
import { optionsOf } from "./args.ts";
import { deadlineOf, keepAlive, remainingMs } from "./atomics.ts";
import { beforeExit } from "./context.ts";
import { nextId } from "./heap.ts";
import { ValueError } from "./errors.ts";

/** Options of `new Thread(...)`. */
export interface ThreadOptions<A extends unknown[] = unknown[]> {
  /** The function the thread runs (may be async); a subclass may override `run()` instead. */
  target?: (...args: A) => unknown;
  /** Arguments for `target`. */
  args?: A;
  /** The thread name; default `Thread-N (target)`, as in Python. */
  name?: string;
  /**
   * A daemon thread does not keep the program (or its worker) alive; a non-daemon one does,
   * and a worker's exit waits for its non-daemon threads, as Python's does.
   */
  daemon?: boolean;
}

/** The threads' context, once the first `start()` has loaded it. */
let context: AsyncLocalStorage<Thread> | undefined;
let loadingContext: Promise<AsyncLocalStorage<Thread>> | undefined;
/** Until a thread starts, every caller is the main thread: skip the context lookup. */
let threadsStarted = false;

function loadContext(): Promise<AsyncLocalStorage<Thread>> {
  return loadingContext ??= import("node:async_hooks").then((m) =>
    context = new m.AsyncLocalStorage<Thread>()
  );
}
let counter = 0;
let creatingMain = false;
let main: Thread | undefined;
let mainIdent = 0;
const active = new Set<Thread>();

/**
 * A concurrent task in the current isolate, with Python's `threading.Thread` interface.
 *
 * @example
 * ```ts
 * import { Thread } from "jsr:@denomp/multiprocessing";
 * const results: number[] = [];
 * const t = new Thread({ target: async (n: number) => results.push(n * 2), args: [21] });
 * t.start();
 * await t.join();
 * console.assert(results[0] === 42 && !t.isAlive());
 * ```
 *
 * @example Subclassing
 * ```ts
 * import { Thread } from "jsr:@denomp/multiprocessing";
 * class Greeter extends Thread {
 *   greeting = "";
 *   override async run() {
 *     this.greeting = `hello from ${this.name}`;
 *   }
 * }
 * const g = new Greeter({ name: "greeter" });
 * g.start();
 * await g.join();
 * console.assert(g.greeting === "hello from greeter");
 * ```
 */
export class Thread<A extends unknown[] = unknown[]> {
  // Not typed with A, so that a Thread<A> is a Thread (the context and registry hold any).
  #target: ((...args: never[]) => unknown) | undefined;
  #args: unknown[];
  #name: string;
  #daemon: boolean;
  #ident: number | null = null;
  #started = false;
  #stopped = false;
  #done: Promise<void>;
  #finish!: () => void;

  /** Prepares a thread; nothing runs until `start()`. */
  constructor(options?: ThreadOptions<A>) {
    options = optionsOf(options, "new Thread", "new Thread({ target: work, args: [1] })");
    this.#target = options.target;
    this.#args = options.args ?? [];
    this.#done = new Promise((r) => (this.#finish = r));
    if (creatingMain) {
      this.#name = "MainThread";
      this.#daemon = false;
      this.#ident = nextId();
      this.#started = true;
      return;
    }
    const n = ++counter;
    // An inline `target: () => ...` is named "target" by the language: not worth showing.
    const fn = options.target?.name === "target" ? "" : options.target?.name;
    this.#name = options.name !== undefined
      ? String(options.name)
      : `Thread-${n}${fn ? ` (${fn})` : ""}`;
    // As in Python, a thread inherits the daemon flag of the thread that creates it.
    this.#daemon = options.daemon ?? (main !== undefined && currentThread().daemon);
  }

  /** The thread's name (only descriptive; several threads may share one). */
  get name(): string {
    return this.#name;
  }
  set name(v: string) {
    this.#name = String(v);
  }

  /** Whether the thread is a daemon (settable only before `start()`). */
  get daemon(): boolean {
    return this.#daemon;
  }
  set daemon(v: boolean) {
    if (this.#started) throw new ValueError("cannot set daemon status of active thread");
    this.#daemon = Boolean(v);
  }

  /** A number unique in the whole run, set by `start()` (null before). */
  get ident(): number | null {
    return this.#ident;
  }

  /**
   * Starts the thread: `run()` begins on the next microtask, inside the thread's own context
   * (the first thread of a process begins once `node:async_hooks` is loaded, a few ms later).
   * Throws `ValueError` if called twice.
   */
  start(): void {
    if (this.#started) throw new ValueError("threads can only be started once");
    this.#started = true;
    this.#ident = nextId();
    threadsStarted = true;
    active.add(this);
    if (!this.#daemon) void keepAlive(this.#done);
    const run = (c: AsyncLocalStorage<Thread>) => c.run(this, () => void this.#bootstrap());
    const c = context;
    if (c) queueMicrotask(() => run(c));
    // Should the module fail to load, the thread still runs (seen as the main thread), not hang.
    else void loadContext().then(run, () => void this.#bootstrap());
  }

  async #bootstrap(): Promise<void> {
    try {
      await this.run();
    } catch (err) {
      excepthook(err, this);
    } finally {
      this.#stopped = true;
      active.delete(this);
      this.#finish();
    }
  }

  /** The thread's body: calls `target(...args)`. Subclasses override it. */
  run(): unknown {
    return (this.#target as ((...args: unknown[]) => unknown) | undefined)?.(...this.#args);
  }

  /**
   * Resolves when the thread has ended, or after `timeout` milliseconds (then check
   * `isAlive()`). `timeout` is a number (not an options object): anything else is a
   * `TypeError`, a negative one a `ValueError`. Joining a thread that was not started, or the
   * current thread, is a `ValueError`.
   */
  async join(timeout?: number): Promise<void> {
    if (!this.#started) throw new ValueError("cannot join thread before it is started");
    if (this === currentThread()) throw new ValueError("cannot join current thread");
    const deadline = deadlineOf(timeout);
    if (this.#stopped) return;
    if (deadline === Infinity) return await keepAlive(this.#done);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.#done,
        new Promise((r) => (timer = setTimeout(r, remainingMs(deadline)))),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** True from `start()` until `run()` has finished. */
  isAlive(): boolean {
    return this.#started && !this.#stopped;
  }

  /** A short description, like Python's repr. */
  toString(): string {
    const state = !this.#started ? "initial" : this.#stopped ? "stopped" : "started";
    const ident = this.#ident === null ? "" : ` ${this.#ident}`;
    return `<${this.constructor.name}(${this.#name}, ${state}${
      this.#daemon ? " daemon" : ""
    }${ident})>`;
  }
}

/** How an uncaught error in a thread is reported (Python's `threading.excepthook`). */
export type ExceptHook = (error: unknown, thread: Thread) => void;

let excepthook: ExceptHook = (error, thread) => {
  const text = error instanceof Error
    ? (error.stack ?? `${error.name}: ${error.message}`)
    : String(error);
  console.error(`Exception in thread ${thread.name}:\n${text}`);
};

/**
 * Replaces the handler of errors that escape a thread's `run()` (by default, printed to stderr
 * as Python prints `Exception in thread ...`); returns the previous one.
 *
 * @example
 * ```ts
 * import { setExcepthook, Thread } from "jsr:@denomp/multiprocessing";
 * const seen: unknown[] = [];
 * const previous = setExcepthook((e) => seen.push(e));
 * const t = new Thread({ target: () => { throw new Error("boom"); } });
 * t.start();
 * await t.join();
 * setExcepthook(previous);
 * console.assert((seen[0] as Error).message === "boom");
 * ```
 */
export function setExcepthook(hook: ExceptHook): ExceptHook {
  const previous = excepthook;
  excepthook = hook;
  return previous;
}

/**
 * The isolate's main thread: the code that runs outside every started `Thread` (each worker has
 * its own, named `MainThread` as in Python).
 *
 * @example
 * ```ts
 * import { currentThread, mainThread } from "jsr:@denomp/multiprocessing";
 * console.assert(currentThread() === mainThread() && mainThread().name === "MainThread");
 * ```
 */
export function mainThread(): Thread {
  if (main) return main;
  creatingMain = true;
  try {
    main = new Thread();
    mainIdent = main.ident as number;
    return main;
  } finally {
    creatingMain = false;
  }
}

/**
 * The `Thread` whose code is running.
 *
 * @example
 * ```ts
 * import { currentThread, Thread } from "jsr:@denomp/multiprocessing";
 * let seen = "";
 * const t = new Thread({ name: "worker", target: async () => {
 *   await new Promise((r) => setTimeout(r, 1));
 *   seen = currentThread().name; // still "worker" after the await
 * } });
 * t.start();
 * await t.join();
 * console.assert(seen === "worker");
 * ```
 */
export function currentThread(): Thread {
  return (threadsStarted && context?.getStore()) || mainThread();
}

/**
 * The ident of the current thread (Python's `threading.get_ident()`): unique in the whole run,
 * across workers too, so it identifies a (process, thread) pair.
 *
 * @example
 * ```ts
 * import { getIdent, mainThread } from "jsr:@denomp/multiprocessing";
 * console.assert(getIdent() === mainThread().ident);
 * ```
 */
export function getIdent(): number {
  // On every lock operation: keep it to a flag test in the common case.
  const t = threadsStarted ? context?.getStore() : undefined;
  return t ? t.ident as number : mainIdent || (mainThread().ident as number);
}

/**
 * The threads alive in this isolate, the main thread first.
 *
 * @example
 * ```ts
 * import { enumerate, mainThread } from "jsr:@denomp/multiprocessing";
 * console.assert(enumerate()[0] === mainThread());
 * ```
 */
export function enumerate(): Thread[] {
  return [mainThread(), ...active];
}

/**
 * How many threads are alive in this isolate, the main thread included.
 *
 * @example
 * ```ts
 * import { activeCount } from "jsr:@denomp/multiprocessing";
 * console.assert(activeCount() >= 1);
 * ```
 */
export function activeCount(): number {
  return active.size + 1;
}

// A worker's exit waits for its non-daemon threads, as Python's interpreter does at shutdown.
beforeExit(() => Promise.all([...active].filter((t) => !t.daemon).map((t) => t.join())));

/**
 * A thread that calls `fn(...args)` once `interval` ms have passed, unless cancelled first
 * (Python's `threading.Timer`).
 *
 * @example
 * ```ts
 * import { Timer } from "jsr:@denomp/multiprocessing";
 * let fired = 0;
 * const t = new Timer(10, (n: number) => (fired += n), [1]);
 * t.start();
 * await t.join();
 * const never = new Timer(10_000, () => (fired += 100));
 * never.start();
 * never.cancel();
 * await never.join();
 * console.assert(fired === 1);
 * ```
 */
export class Timer<A extends unknown[] = unknown[]> extends Thread<A> {
  #interval: number;
  #fn: (...args: A) => unknown;
  #fnArgs: A;
  #cancelled = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #wake: (() => void) | undefined;

  /** A timer for `fn(...args)` after `interval` ms; nothing runs until `start()`. */
  constructor(interval: number, fn: (...args: A) => unknown, args?: A) {
    super();
    if (!(interval >= 0)) {
      throw new ValueError(
        `'interval' must be a non-negative number: current value is ${interval}`,
      );
    }
    this.#interval = interval;
    this.#fn = fn;
    this.#fnArgs = args ?? ([] as unknown[] as A);
  }

  /** Stops the timer if its function has not run yet. */
  cancel(): void {
    this.#cancelled = true;
    clearTimeout(this.#timer);
    this.#wake?.();
  }

  /** Waits for the interval, then calls the function unless cancelled. */
  override async run(): Promise<void> {
    if (this.#cancelled) return;
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
      this.#timer = setTimeout(resolve, this.#interval);
    });
    this.#wake = undefined;
    if (!this.#cancelled) await this.#fn(...this.#fnArgs);
  }
}

/**
 * Thread-local data (Python's `threading.local()`): an object whose properties have a separate
 * value in each thread. `init`, if given, makes each thread's first view of it.
 *
 * @example
 * ```ts
 * import { local, Thread } from "jsr:@denomp/multiprocessing";
 * const data = local<{ n?: number }>();
 * data.n = 1;
 * const t = new Thread({ target: () => {
 *   console.assert(data.n === undefined);
 *   data.n = 2;
 * } });
 * t.start();
 * await t.join();
 * console.assert(data.n === 1);
 * ```
 */
export function local<T extends object = Record<string, unknown>>(init?: () => T): T {
  const perThread = new WeakMap<Thread, T>();
  const mine = (): T => {
    const t = currentThread();
    let o = perThread.get(t);
    if (!o) perThread.set(t, o = init ? init() : ({} as T));
    return o;
  };
  return new Proxy({} as T, {
    get: (_, k) => Reflect.get(mine(), k),
    set: (_, k, v) => Reflect.set(mine(), k, v),
    has: (_, k) => Reflect.has(mine(), k),
    deleteProperty: (_, k) => Reflect.deleteProperty(mine(), k),
    ownKeys: () => Reflect.ownKeys(mine()),
    getOwnPropertyDescriptor: (_, k) => {
      const d = Reflect.getOwnPropertyDescriptor(mine(), k);
      // The proxy target has no own properties: report them as configurable (Proxy invariant).
      return d && { ...d, configurable: true };
    },
    defineProperty: (_, k, d) => Reflect.defineProperty(mine(), k, d),
  });
}
