/**
 * The exit watcher: a scan of the death watcher (_deaths), which runs whenever a process dies or
 * an actor stops (the heap's death counter, which every process death and every actor stop
 * bumps), and tells the listeners of each watched actor that stopped why. Calls, monitors and
 * links of actors that stopped fail through it, so no call to a dead actor ever hangs.
 *
 * @module
 */

import { subscribe } from "../core/deaths.ts";
import { isAlive, parentSlot, release, retain } from "../core/heap.ts";
import type { Process } from "../process/process.ts";
import { type Box, freeBox, readReason, setStopped, SLOT, STATE, STOPPED } from "./block.ts";
import { type ExitReason, reasonOfCode } from "./exit.ts";

/** How long a watcher waits for the spawner to record why a killed actor's worker ended. */
const REASON_GRACE_MS = 250;

/** Told why a watched actor (or process) stopped. */
export type Listener = (reason: ExitReason) => void;

interface Watch {
  box: Box;
  listeners: Set<Listener>;
  /** Set in the process that spawned the actor: it records the reason of a killed worker. */
  local?: { process: Process; name: string };
  deadSince?: number;
}

/** Watched actors, by block offset. */
const watches = new Map<number, Watch>();
/** Watched plain processes (for supervisors of `Process` children). */
const procWatches = new Map<Process, Set<Listener>>();
/**
 * Blocks whose actor stopped while its worker still runs (flushing, exit hooks): the reference
 * the worker holds is dropped once it has really ended.
 */
const workerRefs = new Map<number, number>();

/** Why `w`'s actor stopped, or undefined while it runs. */
function stopReason(w: Watch): ExitReason | undefined {
  const box = w.box;
  if (Atomics.load(box.i32, STATE) === STOPPED) return readReason(box);
  const slot = Atomics.load(box.i32, SLOT);
  if (slot === 0 || isAlive(slot)) return undefined;
  if (w.local) {
    // Its worker ended without saying why: we started it, so we know how it ended.
    setStopped(box, reasonOfCode(w.local.process.exitCode, `actor ${w.local.name}`));
    return readReason(box);
  }
  // The spawner writes the reason just after the worker's death; give it a moment.
  if (!isAlive(parentSlot(slot))) return "killed";
  w.deadSince ??= performance.now();
  return performance.now() - w.deadSince > REASON_GRACE_MS ? "killed" : undefined;
}

function fire(listeners: Iterable<Listener>, reason: ExitReason): void {
  for (const fn of listeners) {
    try {
      fn(reason);
    } catch (err) {
      console.error("denomp: an exit listener failed:", err);
    }
  }
}

/** Checks every watch; returns how long the loop may sleep. */
function scanWatches(): number {
  let sleep = 1000;
  for (const [off, w] of watches) {
    const reason = stopReason(w);
    if (reason === undefined) {
      if (w.deadSince !== undefined) sleep = Math.min(sleep, 25);
      continue;
    }
    watches.delete(off);
    if (w.local) workerRefs.set(off, Atomics.load(w.box.i32, SLOT));
    fire(w.listeners, reason);
    release(off, freeBox); // the watch's own reference
  }
  for (const [p, listeners] of procWatches) {
    if (p.exitCode === null) continue;
    procWatches.delete(p);
    fire(listeners, reasonOfCode(p.exitCode, `process ${p.name}`));
  }
  for (const [off, slot] of workerRefs) {
    if (isAlive(slot)) continue;
    workerRefs.delete(off);
    release(off, freeBox); // the reference its worker held (see spawn)
  }
  return sleep;
}

function watchedCount(): number {
  return watches.size + procWatches.size + workerRefs.size;
}

/** The death watcher's scan: checks every watch while there are any. */
function scan(): number | false {
  if (!watchedCount()) return false;
  const ms = scanWatches();
  return watchedCount() ? ms : false;
}

function kick(): void {
  // Rescan now (what was just added may have stopped already): subscribing runs every scan of
  // every isolate once (a spurious wake-up elsewhere costs one scan), and is idempotent.
  subscribe(scan);
}

/** Calls `fn(reason)` once the actor of `box` stops. Returns a function that cancels it. */
export function watch(
  box: Box,
  fn: Listener,
  local?: { process: Process; name: string },
): () => void {
  let w = watches.get(box.off);
  if (!w) {
    retain(box.off); // the block (and its reason) stay while watched
    w = { box, listeners: new Set() };
    watches.set(box.off, w);
  }
  if (local) w.local = local;
  w.listeners.add(fn);
  kick();
  const entry = w;
  return () => {
    entry.listeners.delete(fn);
    if (!entry.listeners.size && !entry.local && watches.get(box.off) === entry) {
      watches.delete(box.off);
      release(box.off, freeBox);
    }
  };
}

/** Calls `fn(reason)` once process `p` (started) has ended. Returns a function that cancels it. */
export function watchProcess(p: Process, fn: Listener): () => void {
  let set = procWatches.get(p);
  if (!set) procWatches.set(p, set = new Set());
  set.add(fn);
  kick();
  return () => {
    set.delete(fn);
    if (!set.size && procWatches.get(p) === set) procWatches.delete(p);
  };
}

/** Why the actor of `box`, seen stopped, stopped (`"killed"` when nothing says otherwise). */
export function exitReasonOf(box: Box): ExitReason {
  const w = watches.get(box.off) ?? { box, listeners: new Set() };
  return stopReason(w) ?? "killed";
}

/** The worker of the actor at `off` when this process spawned it (it may kill it). */
export function spawnedWorker(off: number): Process | undefined {
  return watches.get(off)?.local?.process;
}
