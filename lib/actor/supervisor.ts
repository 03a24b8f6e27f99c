/**
 * `Supervisor`: Erlang/OTP's supervisor for actors, plain processes and other supervisors.
 *
 * A supervisor starts its children in order, watches them, restarts them by its strategy when
 * they exit, and stops them in reverse order. A child spec is data — `id`, `start`, `restart`,
 * `shutdown` — and `start` may return anything that can be watched and stopped: an
 * {@link ActorRef}, a {@link Process}, another `Supervisor` (a nested tree), or any
 * {@link Supervisable}. The rules are OTP's:
 *
 * - `restart`: `permanent` children are always restarted, `transient` ones only after an
 *   abnormal exit (not `"normal"`/`"shutdown"`), `temporary` ones never (and are forgotten).
 * - `strategy`: `one_for_one` restarts the child that exited; `one_for_all` stops the others
 *   (in reverse order) and restarts them all (in order); `rest_for_one` does that for the
 *   children started after the one that exited.
 * - Restart intensity: more than `maxRestarts` restarts within `withinMs` and the supervisor
 *   gives up: it stops every child and exits with a {@link SupervisorError}, which its own
 *   supervisor sees as an abnormal exit (escalation). A child that fails to restart counts as
 *   another restart, so a child that cannot start ends in the same way.
 *
 * Crashes: a child that crashes is handled here, so it is reported here, once, as one line on
 * stderr naming the supervisor, the child's id and the error (`supervisor sup: child 'worker'
 * (actor Worker-1) crashed: Error: boom`); the actor itself prints nothing. The full report,
 * remote stack included, is the `reason` of the `exited` event given to `onEvent`, and
 * `verbose: true` prints it instead of the line. (A `Process` child prints its own report, as
 * any process does, and gets no second line.)
 *
 * Everything happens in the process that runs the supervisor: it is an object, not a worker
 * (its children are the workers). Its watches do not keep the program alive; await `join()`
 * to run until the tree stops. A top-level supervisor is part of the process's tree that Ctrl-C
 * shuts down in order.
 *
 * @module
 */

import { optionsOf } from "../core/args.ts";
import { addRoot, isRoot, removeRoot, type Stoppable } from "../core/lifecycle.ts";
import { deadlineOf, keepAlive, remainingMs } from "../core/atomics.ts";
import type { Actor } from "./actor.ts";
import { describe, type ExitReason, isNormalExit } from "./exit.ts";
import { monitor } from "./link.ts";
import { ActorRef, isRunning, markSupervised } from "./ref.ts";
import { TimeoutError, ValueError } from "../core/errors.ts";
import { localChanged, sections } from "../core/observe.ts";
import { Process } from "../process/process.ts";

/** How a supervisor restarts its children. */
export type Strategy = "one_for_one" | "one_for_all" | "rest_for_one";

/** When a child is restarted: always, after an abnormal exit only, or never. */
export type RestartType = "permanent" | "transient" | "temporary";

/**
 * Anything a supervisor can watch and stop besides actors, processes and supervisors: a pool,
 * a server, a group of workers.
 */
export interface Supervisable {
  /** Resolves with the reason once it has stopped, for whatever cause. */
  readonly exited: Promise<ExitReason>;
  /** Stops it (in order, within `timeout` milliseconds if given); resolves once it has stopped. */
  stop(reason?: ExitReason, options?: { timeout?: number }): Promise<unknown>;
}

/** What a child spec's `start` returns. */
export type ChildRef = ActorRef<Actor> | Process | Supervisor | Supervisable;

/** A child of a supervisor (OTP's child spec). */
export interface ChildSpec {
  /** Unique among the supervisor's children. */
  id: string;
  /** Starts the child: e.g. `() => spawn(Worker)` or `() => new Supervisor({...}).start()`. */
  start: () => ChildRef | Promise<ChildRef>;
  /** Default `"permanent"`. */
  restart?: RestartType;
  /**
   * Milliseconds an orderly stop may take before the child is killed; default 5000, and no
   * limit for a child supervisor (it stops its own children first).
   */
  shutdown?: number;
}

/** Something that happened in a supervisor, for logs (`onEvent`). */
export type SupervisorEvent =
  | { type: "started"; supervisor: string; id: string }
  | { type: "exited"; supervisor: string; id: string; reason: ExitReason }
  | { type: "restarted"; supervisor: string; id: string; reason: ExitReason }
  | { type: "start_failed"; supervisor: string; id: string; reason: ExitReason }
  | { type: "gave_up"; supervisor: string; id: string; reason: ExitReason }
  | { type: "stopped"; supervisor: string; reason: ExitReason };

/** Options of `new Supervisor(...)`. */
export interface SupervisorOptions {
  /** Default `"one_for_one"`. */
  strategy?: Strategy;
  /** Restarts allowed within `withinMs` before the supervisor gives up; default 3. */
  maxRestarts?: number;
  /** The window of the restart intensity, in ms; default 5000. */
  withinMs?: number;
  /** The children, started in this order and stopped in the reverse order. */
  children: ChildSpec[];
  /** A name for events and errors; default `Supervisor-N`. */
  name?: string;
  /** Told about starts, exits, restarts and the end of the supervisor. */
  onEvent?: (event: SupervisorEvent) => void;
  /**
   * Print each crash of a child in full (name, message and stack) on stderr instead of one
   * line. Default false.
   */
  verbose?: boolean;
}

/** Options of {@link Supervisor.whenRunning}. */
export interface WhenRunningOptions {
  /** Milliseconds to wait for the child to run; then a `TimeoutError`. Default: no limit. */
  timeout?: number;
  /** Aborts the wait (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * The reason a supervisor exits with when it gives up (restart intensity reached, or a child it
 * could not restart); `cause` is the last child exit reason.
 *
 * @example
 * ```ts
 * import { SupervisorError } from "jsr:@denomp/multiprocessing";
 * const e = new SupervisorError("sup", "reached max restart intensity");
 * console.assert(e.name === "SupervisorError" && e.supervisor === "sup");
 * ```
 */
export class SupervisorError extends Error {
  /** The supervisor's name. */
  readonly supervisor: string;
  /** Creates the error for supervisor `supervisor`. */
  constructor(supervisor: string, message: string, options?: { cause?: unknown }) {
    super(`supervisor ${supervisor}: ${message}`, options);
    Object.defineProperty(this, "name", {
      value: "SupervisorError",
      writable: true,
      configurable: true,
    });
    this.supervisor = supervisor;
  }
}

/** A child as the supervisor keeps it (OTP's `#child{}`): its spec and running instance. */
interface Child {
  spec: ChildSpec;
  ref: ChildRef | undefined;
  /** Why the child will never run again (a transient child that exited normally). */
  over?: string;
  /** Bumped whenever the running instance changes: stale exit events are ignored. */
  gen: number;
  cancel?: () => void;
}

type State = "initial" | "running" | "stopping" | "stopped";

let supervisorCount = 0;
/** The supervisors started in this isolate, for snapshot(). */
const live = new Set<WeakRef<Supervisor>>();
let describeSupervisor!: (s: Supervisor) => Record<string, unknown>;
sections.set("supervisors", () => {
  const out: Record<string, unknown>[] = [];
  for (const w of live) {
    const s = w.deref();
    if (!s) live.delete(w);
    else out.push(describeSupervisor(s));
    if (s && !s.isAlive()) live.delete(w); // listed once more after it stopped
  }
  return out;
});
const STRATEGIES = new Set(["one_for_one", "one_for_all", "rest_for_one"]);
const RESTARTS = new Set(["permanent", "transient", "temporary"]);

/** `Supervisable` children whose `exited` has resolved. */
const ended = new WeakSet<Supervisable>();

/** A waiter of `whenRunning`. */
interface Waiter {
  resolve: (ref: ChildRef) => void;
  reject: (err: unknown) => void;
}

/** The `whenRunning` calls waiting for a child's next start, by child id. */
class StartWaiters {
  #byId = new Map<string, Set<Waiter>>();

  /** Waits for child `id`'s next start; rejects with `late()` at `deadline`, or on `signal`. */
  wait(
    id: string,
    deadline: number,
    signal: AbortSignal | undefined,
    late: () => Error,
  ): Promise<ChildRef> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    const wait = new Promise<ChildRef>((resolve, reject) => {
      let set = this.#byId.get(id);
      if (!set) this.#byId.set(id, set = new Set());
      const w: Waiter = { resolve, reject };
      set.add(w);
      const give = (err: unknown) => {
        set.delete(w);
        if (!set.size && this.#byId.get(id) === set) this.#byId.delete(id);
        reject(err);
      };
      if (deadline !== Infinity) timer = setTimeout(() => give(late()), remainingMs(deadline));
      if (signal) {
        onAbort = () => give(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
      }
    });
    return keepAlive(wait.finally(() => {
      clearTimeout(timer);
      if (onAbort) signal!.removeEventListener("abort", onAbort);
    }));
  }

  /** Child `id` has started as `ref`: its waiters resolve with it. */
  started(id: string, ref: ChildRef): void {
    const set = this.#byId.get(id);
    this.#byId.delete(id);
    for (const w of set ?? []) w.resolve(ref);
  }

  /** Rejects the waiters of child `id` (of every child when undefined) with `error(id)`. */
  reject(error: (id: string) => Error, id?: string): void {
    for (const [key, set] of this.#byId) {
      if (id !== undefined && key !== id) continue;
      this.#byId.delete(key);
      for (const w of set) w.reject(error(key));
    }
  }
}

function isSupervisable(x: unknown): x is Supervisable {
  return typeof x === "object" && x !== null && typeof (x as Supervisable).stop === "function" &&
    (x as Supervisable).exited instanceof Promise;
}

/**
 * Checks the options of `new Supervisor` (OTP's `check_startspec`) and fills in the defaults.
 */
function checkOptions(
  options: SupervisorOptions,
): SupervisorOptions & Required<Omit<SupervisorOptions, "name" | "onEvent">> {
  const o = optionsOf(options, "new Supervisor", "new Supervisor({ children: [...] })");
  const { strategy = "one_for_one", maxRestarts = 3, withinMs = 5000, children } = o;
  if (!STRATEGIES.has(strategy)) {
    throw new ValueError(
      `strategy must be one_for_one, one_for_all or rest_for_one: current value is ${strategy}`,
    );
  }
  if (!Number.isInteger(maxRestarts) || maxRestarts < 0) {
    throw new ValueError(
      `maxRestarts must be a non-negative integer: current value is ${maxRestarts}`,
    );
  }
  if (!(withinMs > 0)) {
    throw new ValueError(`withinMs must be a positive number: current value is ${withinMs}`);
  }
  if (!Array.isArray(children)) throw new ValueError("children must be an array of child specs");
  const ids = new Set<string>();
  for (const c of children) {
    if (typeof c?.start !== "function") {
      throw new ValueError(`child '${c?.id}' needs a start function`);
    }
    if (ids.has(c.id)) throw new ValueError(`duplicate child id '${c.id}'`);
    if (c.restart !== undefined && !RESTARTS.has(c.restart)) {
      throw new ValueError(
        `child '${c.id}': restart must be permanent, transient or temporary: current value is ${c.restart}`,
      );
    }
    ids.add(c.id);
  }
  return { ...o, strategy, maxRestarts, withinMs, verbose: o.verbose === true };
}

/**
 * A supervisor (Erlang/OTP's): starts children in order, restarts them by its strategy, gives
 * up past the restart intensity, stops them in reverse order. See the module doc for the rules.
 *
 * @example
 * ```ts ignore
 * import { spawn, Supervisor } from "jsr:@denomp/multiprocessing";
 * import { Cache, Worker } from "./actors.ts";
 * const sup = await new Supervisor({
 *   strategy: "rest_for_one",
 *   children: [
 *     { id: "cache", start: () => spawn(Cache) },
 *     { id: "worker", start: () => spawn(Worker), restart: "transient" },
 *   ],
 *   onEvent: (e) => e.type === "restarted" && console.log(`restarted ${e.id}`),
 * }).start();
 * const cache = sup.get("cache") as ActorRef<Cache>;
 * await sup.stop();
 * ```
 */
export class Supervisor implements Supervisable {
  /** The supervisor's name. */
  readonly name: string;
  /** Resolves with the supervisor's exit reason once it has stopped (not keeping the program alive). */
  readonly exited: Promise<ExitReason>;
  #strategy: Strategy;
  #maxRestarts: number;
  #withinMs: number;
  #onEvent?: (e: SupervisorEvent) => void;
  #children: Child[];
  #state: State = "initial";
  #restarts: number[] = [];
  /** For snapshot(): restarts and the last exit reason of each child, by id. */
  #seen = new Map<string, { restarts: number; lastExit: string | null }>();
  #restartCount = 0;
  #ops: Promise<unknown> = Promise.resolve();
  #resolveExit!: (r: ExitReason) => void;
  #reason: ExitReason | undefined;
  #verbose: boolean;
  /** `whenRunning` calls waiting for a child's next start, by child id. */
  #waiters = new StartWaiters();
  /** Why each forgotten (temporary) child will not run again, by id. */
  #gone = new Map<string, string>();

  /** Prepares a supervisor; `start()` starts its children. */
  constructor(options: SupervisorOptions) {
    const { strategy, maxRestarts, withinMs, children, name, onEvent, verbose } = checkOptions(
      options,
    );
    this.name = name ?? `Supervisor-${++supervisorCount}`;
    this.#strategy = strategy;
    this.#maxRestarts = maxRestarts;
    this.#withinMs = withinMs;
    this.#onEvent = onEvent;
    this.#verbose = verbose;
    this.#children = children.map((spec) => ({ spec, ref: undefined, gen: 0 }));
    this.exited = new Promise((r) => (this.#resolveExit = r));
  }

  /**
   * Starts the children in order and resolves with the supervisor. If a child fails to start,
   * the ones already started are stopped in reverse order and this rejects with its error.
   *
   * @example
   * ```ts
   * import { Supervisor } from "jsr:@denomp/multiprocessing";
   * const sup = await new Supervisor({ children: [] }).start();
   * await sup.stop();
   * ```
   */
  async start(): Promise<this> {
    if (this.#state !== "initial") throw new ValueError(`supervisor ${this.name} already started`);
    this.#state = "running";
    live.add(new WeakRef(this));
    for (const child of this.#children) {
      try {
        await this.#startChild(child);
      } catch (err) {
        this.#setStopping();
        await this.#stopAll("shutdown");
        this.#finish(err instanceof Error ? err : new Error(String(err)));
        throw err;
      }
    }
    addRoot(this);
    return this;
  }

  /** True from `start()` until the supervisor has stopped. */
  isAlive(): boolean {
    return this.#state === "running" || this.#state === "stopping";
  }

  static {
    describeSupervisor = (s) => ({
      name: s.name,
      strategy: s.#strategy,
      state: s.#state,
      restarts: s.#restartCount,
      children: s.#children.map((child) => {
        const ref = s.#runningRef(child), seen = s.#seen.get(child.spec.id);
        return {
          id: child.spec.id,
          name: (ref as { name?: string } | undefined)?.name ?? null,
          kind: ref instanceof Supervisor ? "supervisor" : "worker",
          restart: child.spec.restart ?? "permanent",
          running: ref !== undefined,
          restarts: seen?.restarts ?? 0,
          lastExitReason: seen?.lastExit ?? null,
        };
      }),
    });
  }

  /** How many restarts the supervisor made in all. */
  get restartCount(): number {
    return this.#restartCount;
  }

  /**
   * The running child with `id` (its current instance: refs change across restarts), or
   * undefined while it is not running: from the moment it stops (a crashed child's stopped ref
   * is never returned) until it runs again. {@link whenRunning} waits for that.
   *
   * @example
   * ```ts ignore
   * const worker = sup.get("worker") as ActorRef<Worker>;
   * ```
   */
  get(id: string): ChildRef | undefined {
    const child = this.#children.find((s) => s.spec.id === id);
    return child && this.#runningRef(child);
  }

  /**
   * Resolves with child `id`'s running instance: at once if it runs, else at its next start
   * (after a crash, once restarted). Rejects with a `SupervisorError` when it will never run
   * again — no such child, a temporary child that exited, a transient one that exited
   * normally, or the supervisor stopping or giving up — with `TimeoutError` after `timeout`
   * milliseconds, and with the signal's reason when `signal` aborts.
   *
   * @example
   * ```ts
   * import { Supervisor, type Supervisable } from "jsr:@denomp/multiprocessing";
   * const child = (): Supervisable => ({ exited: new Promise(() => {}), stop: async () => {} });
   * const sup = await new Supervisor({ children: [{ id: "w", start: child }] }).start();
   * const w = await sup.whenRunning("w", { timeout: 1000 });
   * console.assert(w === sup.get("w"));
   * await sup.stop();
   * ```
   */
  whenRunning(id: string, options?: WhenRunningOptions): Promise<ChildRef> {
    const call = 'whenRunning("worker", { timeout: 5000 })';
    let o: WhenRunningOptions, deadline: number;
    try {
      o = optionsOf(options, "Supervisor.whenRunning", call);
      deadline = deadlineOf(o.timeout);
      o.signal?.throwIfAborted();
    } catch (e) {
      return Promise.reject(e);
    }
    const child = this.#children.find((s) => s.spec.id === id);
    const why = !child
      ? this.#gone.get(id) ?? "it is not a child of this supervisor"
      : child.over ?? (this.#state === "stopping" || this.#state === "stopped"
        ? `the supervisor is ${this.#state}`
        : undefined);
    if (why) return Promise.reject(this.#never(id, why));
    const ref = this.#runningRef(child!);
    if (ref) return Promise.resolve(ref);
    const late = () =>
      new TimeoutError(
        `supervisor ${this.name}: child '${id}' was not running within ${o.timeout} ms`,
      );
    return this.#waiters.wait(id, deadline, o.signal, late);
  }

  /**
   * The children in start order, with their running instance (Erlang's `which_children`).
   *
   * @example
   * ```ts ignore
   * for (const c of sup.whichChildren()) console.log(c.id, c.child !== undefined);
   * ```
   */
  whichChildren(): { id: string; child: ChildRef | undefined; restart: RestartType }[] {
    return this.#children.map((s) => ({
      id: s.spec.id,
      child: this.#runningRef(s),
      restart: s.spec.restart ?? "permanent",
    }));
  }

  /**
   * Stops the children in reverse order, then the supervisor; resolves with its exit reason.
   *
   * @example
   * ```ts ignore
   * await sup.stop(); // "shutdown"
   * ```
   */
  stop(reason: ExitReason = "shutdown", options?: { timeout?: number }): Promise<ExitReason> {
    optionsOf(options, "Supervisor.stop", 'stop("shutdown")'); // children have their own limits
    if (this.#state === "initial") this.#finish(reason);
    if (this.#state === "running") {
      this.#setStopping(); // from now on, exits are no longer restarted
      void this.#enqueue(async () => {
        await this.#stopAll("shutdown");
        this.#finish(reason);
      });
    }
    return keepAlive(this.exited);
  }

  /**
   * Resolves with the supervisor's exit reason once it has stopped, keeping the program alive
   * meanwhile: `await sup.join()` runs a supervision tree until it is stopped or gives up.
   *
   * @example
   * ```ts ignore
   * const reason = await sup.join();
   * ```
   */
  join(): Promise<ExitReason> {
    return keepAlive(this.exited);
  }

  /** `await using sup = await new Supervisor({...}).start()`: stops it. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** A short description. */
  toString(): string {
    return `<Supervisor ${this.name} ${this.#strategy} ${this.#state} children=${this.#children.length}>`;
  }

  // -------------------------------------------------------------------------------------------

  #emit(e: SupervisorEvent): void {
    if ("id" in e) {
      const seen = this.#seen.get(e.id) ?? { restarts: 0, lastExit: null };
      if (e.type === "restarted") seen.restarts++;
      else if (e.type !== "started") seen.lastExit = describe(e.reason);
      this.#seen.set(e.id, seen);
      localChanged(); // for snapshots taken in other isolates
    }
    try {
      this.#onEvent?.(e);
    } catch (err) {
      console.error(`supervisor ${this.name}: onEvent failed:`, err);
    }
  }

  /** Runs `fn` after every earlier operation: exits are handled one at a time, in order. */
  #enqueue(fn: () => Promise<void>): Promise<void> {
    const p = this.#ops.then(fn).catch((err) => {
      console.error(`supervisor ${this.name}: internal error:`, err);
    });
    this.#ops = p;
    return p;
  }

  /** The child's instance in `child` if it runs (a stopped one is not returned, see `get`). */
  #runningRef(child: Child): ChildRef | undefined {
    const ref = child.ref;
    if (!ref) return undefined;
    // The exit watch reports a stop a moment later: what stopped is not running meanwhile.
    const running = ref instanceof ActorRef
      ? isRunning(ref)
      : ref instanceof Process
      ? ref.exitCode === null
      : ref instanceof Supervisor
      ? ref.#state === "running"
      : !ended.has(ref);
    return running ? ref : undefined;
  }

  /** The error of a `whenRunning` for a child that will never run again. */
  #never(id: string, why: string): SupervisorError {
    return new SupervisorError(this.name, `child '${id}' will not run again: ${why}`);
  }

  /** Rejects the `whenRunning` calls for `id` (every child's when `id` is undefined). */
  #rejectWaiters(why: string, id?: string): void {
    this.#waiters.reject((key) => this.#never(key, why), id);
  }

  /** Drops a temporary child for good. */
  #forget(child: Child, why: string): void {
    this.#children = this.#children.filter((s) => s !== child);
    this.#gone.set(child.spec.id, why);
    this.#rejectWaiters(why, child.spec.id);
  }

  /** Leaves the running state: no more restarts, and no child will run again. */
  #setStopping(): void {
    this.#state = "stopping";
    this.#rejectWaiters("the supervisor is stopping");
  }

  /** Reports a child's crash on stderr, once: one line, or in full with `verbose`. */
  #reportCrash(id: string, ref: ChildRef, reason: ExitReason): void {
    if (!(reason instanceof Error) || ref instanceof Process) return; // a Process reports itself
    const who = ref instanceof ActorRef
      ? ` (actor ${ref.name})`
      : ref instanceof Supervisor
      ? ` (supervisor ${ref.name})`
      : "";
    const what = this.#verbose ? `\n${reason.stack ?? describe(reason)}` : ` ${describe(reason)}`;
    console.error(`supervisor ${this.name}: child '${id}'${who} crashed:${what}`);
  }

  #finish(reason: ExitReason): void {
    if (this.#state === "stopped") return;
    this.#state = "stopped";
    this.#rejectWaiters(`the supervisor stopped (${describe(reason)})`);
    this.#reason = reason;
    if (isRoot(this) && !isNormalExit(reason)) {
      // Nobody above to escalate to: say why the tree went down (OTP's supervisor report).
      console.error(`supervisor ${this.name} stopped: ${describe(reason)}`);
    }
    removeRoot(this);
    this.#emit({ type: "stopped", supervisor: this.name, reason });
    this.#resolveExit(reason);
  }

  async #startChild(child: Child): Promise<void> {
    let ref = await child.spec.start();
    if (ref instanceof Process && ref.pid === null) ref.start();
    if (
      !(ref instanceof ActorRef || ref instanceof Process || ref instanceof Supervisor ||
        isSupervisable(ref))
    ) {
      throw new ValueError(
        `child '${child.spec.id}': start() must return an ActorRef, a Process, a Supervisor or a Supervisable: got ${
          String(ref)
        }`,
      );
    }
    ref = ref as ChildRef;
    removeRoot(ref as unknown as Stoppable); // supervised now: we stop it, in order
    if (ref instanceof ActorRef) markSupervised(ref, true); // and we report its crashes
    if (this.#state !== "running") {
      // Stopped while the child was starting: it must not outlive us.
      await this.#stopRef(ref, "shutdown", child.spec.shutdown);
      throw new ValueError(`supervisor ${this.name} stopped while starting '${child.spec.id}'`);
    }
    child.ref = ref;
    const gen = ++child.gen;
    const ctl = new AbortController();
    child.cancel = () => ctl.abort();
    const onExit = (reason: ExitReason) => {
      if (child.gen !== gen || ctl.signal.aborted) return;
      void this.#enqueue(() => this.#childExited(child, gen, reason));
    };
    if (ref instanceof ActorRef || ref instanceof Process) {
      void monitor(ref, { keepAlive: false, signal: ctl.signal }).then(onExit);
    } else {
      const r = ref;
      void r.exited.then((reason) => {
        if (!(r instanceof Supervisor)) ended.add(r);
        onExit(reason);
      });
    }
    this.#emit({ type: "started", supervisor: this.name, id: child.spec.id });
    this.#waiters.started(child.spec.id, ref);
  }

  async #stopRef(ref: ChildRef, reason: ExitReason, shutdown?: number): Promise<void> {
    try {
      if (ref instanceof Process) {
        if (ref.exitCode !== null) return;
        ref.terminate(); // a plain process has no orderly stop
        await monitor(ref);
      } else if (ref instanceof Supervisor) {
        await ref.stop(reason);
      } else {
        const timeout = shutdown ?? 5000;
        await ref.stop(reason, { timeout: timeout === Infinity ? undefined : timeout });
      }
    } catch (err) {
      console.error(`supervisor ${this.name}: stopping a child failed:`, err);
    }
  }

  async #stopChild(child: Child, reason: ExitReason): Promise<void> {
    const ref = child.ref;
    if (!ref) return;
    child.gen++; // its exit is ours, not a failure
    child.cancel?.();
    child.ref = undefined;
    await this.#stopRef(ref, reason, child.spec.shutdown);
  }

  async #stopAll(reason: ExitReason): Promise<void> {
    for (const child of [...this.#children].reverse()) await this.#stopChild(child, reason);
  }

  /** Records a restart; false when that goes past the restart intensity. */
  #allowRestart(): boolean {
    const now = performance.now();
    this.#restarts = this.#restarts.filter((t) => now - t <= this.#withinMs);
    this.#restarts.push(now);
    return this.#restarts.length <= this.#maxRestarts;
  }

  async #childExited(child: Child, gen: number, reason: ExitReason): Promise<void> {
    if (this.#state !== "running" || child.gen !== gen) return;
    const ref = child.ref!;
    child.ref = undefined;
    child.cancel = undefined;
    const id = child.spec.id;
    this.#reportCrash(id, ref, reason);
    this.#emit({ type: "exited", supervisor: this.name, id, reason });
    const restart = child.spec.restart ?? "permanent";
    if (restart === "temporary") {
      this.#forget(child, `it is temporary and exited (${describe(reason)})`);
      return;
    }
    if (restart === "transient" && isNormalExit(reason)) {
      child.over = `it is transient and exited normally (${describe(reason)})`;
      return this.#rejectWaiters(child.over, id);
    }
    await this.#restart(child, reason);
  }

  async #restart(failed: Child, reason: ExitReason): Promise<void> {
    let cause = reason;
    for (;;) {
      if (!this.#allowRestart()) return await this.#giveUp(failed, cause);
      // The group: who is stopped and started again with the child that exited.
      const at = this.#children.indexOf(failed);
      const group = this.#strategy === "one_for_one"
        ? [failed]
        : this.#strategy === "one_for_all"
        ? [...this.#children]
        : this.#children.slice(at);
      const restart = new Set<Child>([failed]);
      for (const s of [...group].reverse()) {
        if (s === failed || !s.ref) continue;
        await this.#stopChild(s, "shutdown");
        // A temporary child is never restarted: stopped by a restart, it is forgotten.
        if (s.spec.restart === "temporary") {
          this.#forget(s, "it is temporary and was stopped by a restart");
        } else restart.add(s);
      }
      this.#restartCount++;
      let failedNow: Child | undefined;
      try {
        for (const s of this.#children) {
          if (!restart.has(s) || s.ref) continue;
          failedNow = s;
          await this.#startChild(s);
          this.#emit({
            type: "restarted",
            supervisor: this.name,
            id: s.spec.id,
            reason: s === failed ? cause : "shutdown",
          });
        }
        return;
      } catch (err) {
        if (this.#state !== "running") return;
        // A child that cannot be started counts as another restart (and failure).
        cause = err instanceof Error ? err : new Error(String(err));
        failed = failedNow ?? failed;
        this.#emit({
          type: "start_failed",
          supervisor: this.name,
          id: failed.spec.id,
          reason: cause,
        });
      }
    }
  }

  async #giveUp(child: Child, cause: ExitReason): Promise<void> {
    this.#emit({ type: "gave_up", supervisor: this.name, id: child.spec.id, reason: cause });
    this.#setStopping();
    await this.#stopAll("shutdown");
    this.#finish(
      new SupervisorError(
        this.name,
        `reached max restart intensity (${this.#maxRestarts} restarts within ${this.#withinMs} ms); ` +
          `last exit of '${child.spec.id}': ${describe(cause)}`,
        { cause },
      ),
    );
  }

  /** The exit reason once stopped (undefined before). */
  get reason(): ExitReason | undefined {
    return this.#reason;
  }
}
