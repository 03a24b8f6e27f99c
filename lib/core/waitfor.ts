/**
 * The wait-for graph: who waits for which object, who holds it, and the cycles that make a
 * deadlock. One graph serves both detection modes: `snapshot().deadlocks` lists every cycle
 * when read, and an acquire of a deadlock-detecting lock checks, before each sleep, whether its
 * own wait closes one (then it throws `DeadlockError` instead of sleeping forever).
 *
 * The nodes are waiting threads, `(process slot, thread ident)`, read from the waiter records of
 * the process table (`observe.ts`). A waiter's edges go to the holders of what it waits for, as
 * its kind's inspector reads them from the object's words (a mutex names its holder's slot and
 * the holding thread's ident; a semaphore knows the processes holding permits, not the threads).
 * Each process that closes a cycle publishes its wait before checking, so of two processes
 * closing one at the same moment, at least one sees the other.
 *
 * @module
 */

import type { Sleep, WaitResult } from "./atomics.ts";
import { heap } from "./heap.ts";
import {
  beginWait,
  detectsDeadlock,
  endWait,
  type Kind,
  listObjects,
  listProcesses,
  type ObjectEntry,
  objectName,
  type ProcessEntry,
} from "./observe.ts";
import { DeadlockError } from "./errors.ts";
import { currentThread, getIdent, mainThread } from "./threading.ts";

/** A holder of an object: a process slot and a thread ident (0: any thread of that process). */
export interface Holder {
  slot: number;
  ident: number;
}

/** What an inspector reads from an object's live words. */
export interface Inspected {
  holders: Holder[];
  /**
   * False when a waiter does not wait for the holders (a Condition's waiter waits for a
   * notify, not for whoever holds its lock): no edges then.
   */
  blocking?: boolean;
  /** Kind-specific fields for the snapshot (`value`, `count`, `locked`, `depth`, ...). */
  state: Record<string, unknown>;
}

/** Readers of live state, one per kind, registered by the module that defines the kind. */
export const inspectors: Map<Kind, (off: number, entry: ObjectEntry) => Inspected> = new Map();

/** One step of a deadlock cycle, by name. */
export interface CycleStep {
  /** The process (or, outside its process's main thread, the `Thread`) that waits. */
  process: string;
  /** What it holds: what the previous step waits for. */
  holds: string;
  /** What it waits for: what the next step holds. */
  waitsFor: string;
}

interface Node {
  slot: number;
  ident: number;
  obj: number;
  name: string;
  seq: number;
  detect: boolean;
}

/** The display name of a thread: its name outside its process's main thread, else the process's. */
function partyName(p: ProcessEntry | undefined, slot: number, ident: number): string {
  if (!p) return `slot-${slot}`;
  const w = p.waiters.find((w) => w.ident === ident && w.thread);
  return w ? w.thread : p.name;
}

/** The waiting threads and the holders of what each waits for. */
export function waitGraph(
  processes: ProcessEntry[] = listProcesses(),
  objects: ObjectEntry[] = listObjects().objects,
): { nodes: Node[]; edges: number[][]; names: (off: number) => string } {
  const bySlot = new Map(processes.map((p) => [p.slot, p]));
  const byOff = new Map(objects.map((o) => [o.off, o]));
  const nodes: Node[] = [];
  for (const p of processes) {
    for (const w of p.waiters) {
      const name = partyName(p, p.slot, w.ident);
      nodes.push({ slot: p.slot, ident: w.ident, obj: w.obj, name, seq: w.seq, detect: w.detect });
    }
  }
  const holdersCache = new Map<number, Holder[]>();
  const holdersOf = (off: number): Holder[] => {
    let hs = holdersCache.get(off);
    if (!hs) {
      const o = byOff.get(off), inspect = o && inspectors.get(o.kind);
      let got: Inspected | undefined;
      try {
        got = o && inspect?.(off, o);
      } catch { /* freed while being read: no holders */ }
      hs = got && got.blocking !== false ? got.holders : [];
      holdersCache.set(off, hs);
    }
    return hs;
  };
  const edges = nodes.map((n) => {
    const out: number[] = [];
    for (const h of holdersOf(n.obj)) {
      nodes.forEach((m, j) => {
        if (m.slot === h.slot && (h.ident === 0 || m.ident === h.ident)) out.push(j);
      });
    }
    return out;
  });
  void bySlot;
  return { nodes, edges, names: (off) => byOff.get(off)?.name ?? objectName(off) };
}

/** The cycle as steps: each party, what it holds (what the previous waits for), what it waits for. */
function stepsOf(cycle: number[], nodes: Node[], names: (off: number) => string): CycleStep[] {
  return cycle.map((i, k) => ({
    process: nodes[i].name,
    holds: names(nodes[cycle[(k + cycle.length - 1) % cycle.length]].obj),
    waitsFor: names(nodes[i].obj),
  }));
}

/** Every simple cycle (at most `limit`), each starting at its lowest node. */
export function findCycles(
  graph: ReturnType<typeof waitGraph> = waitGraph(),
  limit = 100,
): CycleStep[][] {
  const { nodes, edges, names } = graph, out: CycleStep[][] = [];
  for (let start = 0; start < nodes.length && out.length < limit; start++) {
    const path = [start], onPath = new Set(path);
    const walk = (i: number): void => {
      for (const j of edges[i]) {
        if (out.length >= limit) return;
        if (j === start) out.push(stepsOf([...path], nodes, names));
        else if (j > start && !onPath.has(j) && path.length < 64) {
          path.push(j), onPath.add(j);
          walk(j);
          path.pop(), onPath.delete(j);
        }
      }
    };
    walk(start);
  }
  return out;
}

/**
 * The cycle through the waiting thread `(slot, ident)`, if its wait closes one and it is the
 * one to give up: of the members that detect deadlocks, the one that began waiting last (it
 * closed the cycle). So when two members see the cycle at once, exactly one gives up, and the
 * others get their locks once it lets go.
 */
export function cycleThrough(slot: number, ident: number): CycleStep[] | null {
  const g = waitGraph();
  const me = g.nodes.findIndex((n) => n.slot === slot && n.ident === ident);
  if (me < 0) return null;
  const seen = new Set<number>(), path: number[] = [];
  const walk = (i: number): boolean => {
    path.push(i);
    for (const j of g.edges[i]) {
      if (j === me) return true;
      if (!seen.has(j)) {
        seen.add(j);
        if (walk(j)) return true;
      }
    }
    path.pop();
    return false;
  };
  if (!walk(me)) return null;
  const victim = path.filter((i) => g.nodes[i].detect)
    .reduce((a, b) => (g.nodes[b].seq - g.nodes[a].seq > 0 ? b : a));
  return victim === me ? stepsOf(path, g.nodes, g.names) : null;
}

/** "a holds x and waits for y; b holds y and waits for x". */
export function describeCycle(cycle: readonly CycleStep[]): string {
  return cycle.map((s) => `${s.process} holds ${s.holds} and waits for ${s.waitsFor}`).join("; ");
}

/**
 * Wraps the slow path of an acquire or wait on the object of block `off`: before its first
 * sleep it records the wait (cleared when it ends), and for a deadlock-detecting lock it checks
 * before every sleep whether the wait closes a cycle, throwing `DeadlockError` if so. The fast
 * path never gets here: nothing is written unless the caller is about to sleep.
 */
export function* observed<R, Y extends Sleep | Promise<unknown>>(
  off: number,
  g: Generator<Y, R, WaitResult>,
  lock = false,
): Generator<Y, R, WaitResult> {
  const ident = getIdent(), t = currentThread();
  let rec = -2, detect = false, done = false;
  try {
    let step = g.next();
    while (!step.done) {
      if (rec === -2) {
        detect = lock && detectsDeadlock(off);
        rec = beginWait(off, ident, t === mainThread() ? undefined : t.name, detect);
      }
      if (detect && !(step.value instanceof Promise)) {
        const cycle = cycleThrough(heap().slot, ident);
        if (cycle) {
          throw new DeadlockError(`acquire() would deadlock: ${describeCycle(cycle)}`, cycle);
        }
      }
      let r: WaitResult;
      try {
        r = yield step.value;
      } catch (e) {
        step = g.throw(e);
        continue;
      }
      step = g.next(r);
    }
    done = true;
    return step.value;
  } finally {
    if (rec >= 0) endWait(rec);
    if (!done) g.return(undefined as R);
  }
}
