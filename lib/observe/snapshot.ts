/**
 * `snapshot()`: a plain, JSON-serialisable picture of the whole program — every process at
 * every nesting level, its locks, queues, pools, actors and supervisors, and every deadlock —
 * taken from any worker.
 *
 * Why it can see everything: objects and processes record themselves once in shared tables
 * (`core/observe.ts`), and waiters note what they wait for just before sleeping; a snapshot reads
 * those tables and the objects' live words. No process is asked anything, so a snapshot works
 * while every other worker is stuck, and costs nothing until it is taken.
 *
 * @module
 */

import { pidOfSlot } from "../core/context.ts";
import { heap, MAIN_SLOT } from "../core/heap.ts";
import {
  flushNames,
  type Kind,
  listObjects,
  listProcesses,
  localSections,
  LOCK_KINDS as LOCK_KIND_NAMES,
  type ProcessEntry,
  published,
  setDetectAll,
} from "../core/observe.ts";
import {
  type CycleStep,
  findCycles,
  type Inspected,
  inspectors,
  waitGraph,
} from "../core/waitfor.ts";

export type { CycleStep };
import "../sync/mod.ts"; // registers the inspectors of the locks
import "../actor/block.ts"; // and of mailboxes and actors
import "../pool/pool.ts"; // pools list themselves

/** One process (or worker) of the tree. */
export interface ProcessSnapshot {
  /** Its name (`MainProcess`, `Process-1`, a pool worker's or an actor's name). */
  name: string;
  /** Its pid (unique per run). */
  pid: number;
  /** The parent's pid, or null for the main process. */
  parent: number | null;
  /** `"running"`, `"stopped"` (it ended: see `exitCode`), or `"dead"` (an ancestor died). */
  state: "running" | "stopped" | "dead";
  /** null while it runs. */
  exitCode: number | null;
  /** Whether it is a daemon. */
  daemon: boolean;
  /** When it started (ms since the epoch), or null when unknown. */
  startTime: number | null;
  /** What it runs: `module.ts#function` (a pool worker also shows its current `task`). */
  target: string;
  /** The pool task it runs now, or "". */
  task: string;
  /** The objects its threads wait for now, by name. */
  waitingFor: string[];
}

/** One lock-like object: Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier. */
export interface LockSnapshot {
  /** The name given, or the kind and creation site (`Lock@main.ts:12`). */
  name: string;
  /** Its class. */
  kind: string;
  /** Who holds it, by process (or thread) name. */
  holders: string[];
  /** Who waits for it, by process (or thread) name. */
  waiters: string[];
  /** Whether a blocked acquire of it detects deadlocks. */
  detectDeadlock: boolean;
  /** Kind-specific: `locked`, `count` (RLock), `value` (semaphores), `set` (Event), ... */
  [field: string]: unknown;
}

/** A picture of the whole program, as plain JSON. */
export interface Snapshot {
  /** When it was taken (ms since the epoch). */
  time: number;
  /** Every process, the main one first. */
  processes: ProcessSnapshot[];
  /**
   * Pools: workers (busy or idle, and their task), queued, running, completed, failed,
   * utilization, task wait and run time p50/p99 (`waitMs`, `runMs`), and the `process` the pool
   * lives in (another isolate's pools as it last published them: at most ~500 ms ago).
   */
  pools: Record<string, unknown>[];
  /**
   * Queues and mailboxes: `name`, `kind`, `depth` (`mailbox` for a Mailbox), `maxsize`, `puts`,
   * `gets`, `waitingGetters` (null for a FIFO queue, whose readers wait uncounted),
   * `waitingPutters`, `unfinished` (joinable queues), `closed`.
   */
  queues: Record<string, unknown>[];
  /** Locks and the other synchronization primitives. */
  locks: LockSnapshot[];
  /**
   * Actors: `name`, the `process` it runs in, `state`, `mailbox` depth, `restarts` and
   * `supervisor` (when supervised), `exitReason` (why it, or the child it replaced, last exited).
   */
  actors: Record<string, unknown>[];
  /**
   * Supervisors: strategy, state, restarts, and their children (id, name, restarts, last exit
   * reason; a child supervisor nests by name): the supervision tree. Published as pools are.
   */
  supervisors: Record<string, unknown>[];
  /** Every cycle of the wait-for graph: each step is who holds what and waits for what. */
  deadlocks: CycleStep[][];
  /** Objects that could not be listed (the table was full). */
  unlisted: number;
}

const LOCK_KINDS: ReadonlySet<Kind> = new Set<Kind>(LOCK_KIND_NAMES);

/**
 * A plain, JSON-serialisable picture of the whole program: every process at every nesting
 * level, every pool, queue, lock, actor and supervisor, and every deadlock (a cycle in the
 * wait-for graph), from whichever worker calls it.
 *
 * @example
 * ```ts
 * import { Lock, snapshot } from "jsr:@denomp/multiprocessing";
 * const fork = new Lock({ name: "fork-1" });
 * await fork.acquire();
 * const s = snapshot();
 * const mine = s.locks.find((l) => l.name === "fork-1")!;
 * console.assert(mine.holders[0] === "MainProcess" && mine.locked === true);
 * console.assert(s.deadlocks.length === 0);
 * fork.release();
 * JSON.stringify(s); // plain JSON
 * ```
 */
export function snapshot(): Snapshot {
  flushNames();
  const procs = listProcesses();
  const { objects, dropped } = listObjects();
  const bySlot = new Map<number, ProcessEntry>(procs.map((p) => [p.slot, p]));
  const names = (slot: number) => bySlot.get(slot)?.name ?? `pid-${pidOfSlot(slot)}`;
  const party = (slot: number, ident: number) => {
    const p = bySlot.get(slot);
    const w = p?.waiters.find((w) => w.ident === ident && w.thread);
    return w ? w.thread : names(slot);
  };
  const objName = new Map(objects.map((o) => [o.off, o.name]));
  const waitersOf = new Map<number, string[]>();
  for (const p of procs) {
    for (const w of p.waiters) {
      const list = waitersOf.get(w.obj) ?? [];
      list.push(w.thread || p.name);
      waitersOf.set(w.obj, list);
    }
  }
  const processes = procs.map((p): ProcessSnapshot => ({
    name: p.name,
    pid: pidOfSlot(p.slot),
    parent: p.slot === MAIN_SLOT || !p.parent ? null : pidOfSlot(p.parent),
    state: p.alive ? "running" : p.exitCode !== null ? "stopped" : "dead",
    exitCode: p.exitCode,
    daemon: p.daemon,
    startTime: p.startTime,
    target: p.target,
    task: "",
    waitingFor: p.waiters.map((w) => objName.get(w.obj) ?? "?"),
  }));
  const locks: LockSnapshot[] = [];
  for (const o of objects) {
    if (!LOCK_KINDS.has(o.kind)) continue;
    let got: Inspected | undefined;
    try {
      got = inspectors.get(o.kind)?.(o.off, o);
    } catch {
      continue; // freed while being read
    }
    locks.push({
      ...got?.state,
      name: o.name,
      kind: o.kind,
      holders: [
        ...new Set(got?.holders.map((h) => h.ident ? party(h.slot, h.ident) : names(h.slot))),
      ],
      waiters: waitersOf.get(o.off) ?? [],
      detectDeadlock: (o.flags & 1) !== 0,
    });
  }
  // Pools and supervisors: this isolate's, read now, and those other isolates published (see
  // localChanged: as of at most half a second ago), each with the process it lives in.
  const here = localSections(), me = names(heap().slot);
  const pools: Record<string, unknown>[] = here.pools.map((p) => ({ ...p, process: me }));
  const supervisors: Record<string, unknown>[] = here.supervisors.map((s) => ({
    ...s,
    process: me,
  }));
  for (const { slot, sections } of published()) {
    for (const p of sections.pools ?? []) pools.push({ ...p, process: names(slot) });
    for (const s of sections.supervisors ?? []) supervisors.push({ ...s, process: names(slot) });
  }
  // What pool workers run now.
  for (const pool of pools) {
    for (const w of pool.workers as { name: string; task: string }[]) {
      const p = processes.find((p) => p.name === w.name && p.state === "running");
      if (p && !p.task) p.task = w.task;
    }
  }
  // Restarts and exit reasons of supervised actors, from the supervisors of this isolate.
  const supervised = new Map<string, [Record<string, unknown>, unknown]>();
  for (const sup of supervisors) {
    for (const c of sup.children as Record<string, unknown>[]) {
      if (typeof c.name === "string") supervised.set(c.name, [c, sup.name]);
    }
  }
  const actors: Record<string, unknown>[] = [], queues: Record<string, unknown>[] = [];
  for (const o of objects) {
    if (LOCK_KINDS.has(o.kind)) continue;
    let state: Record<string, unknown> | undefined;
    try {
      state = inspectors.get(o.kind)?.(o.off, o).state;
    } catch {
      continue; // freed while being read
    }
    if (o.kind === "Actor") {
      const { slot, ...rest } = state ?? {};
      const [sup, supName] = supervised.get(o.name) ?? [];
      actors.push({
        name: o.name,
        process: typeof slot === "number" && slot ? names(slot) : null,
        ...rest,
        restarts: sup?.restarts ?? 0,
        exitReason: rest.exitReason ?? sup?.lastExitReason ?? null,
        supervisor: supName ?? null,
      });
    } else if (o.kind !== "Pool") queues.push({ name: o.name, kind: o.kind, ...state });
  }
  return {
    time: Date.now(),
    processes,
    pools,
    queues,
    locks,
    actors,
    supervisors,
    deadlocks: findCycles(waitGraph(procs, objects)),
    unlisted: dropped,
  };
}

/**
 * Turns deadlock detection on (or off) for every lock and semaphore of the program, in every
 * worker: a blocked `acquire()` whose wait would close a cycle rejects (`acquireSync()` throws)
 * with `DeadlockError` naming the cycle, instead of waiting forever. One lock alone:
 * `new Lock({ detectDeadlock: true })`. Detection costs nothing on the fast path; a waiter
 * checks the wait-for graph before it sleeps.
 *
 * @example
 * ```ts
 * import { setDeadlockDetection } from "jsr:@denomp/multiprocessing";
 * setDeadlockDetection(true);
 * setDeadlockDetection(false);
 * ```
 */
export function setDeadlockDetection(enabled: boolean): void {
  setDetectAll(enabled);
}
