/**
 * Who am I: the identity of the process (isolate) this code runs in — its name, pid, slot in
 * the shared heap's process table, daemon flag, authkey and parent — plus the hooks that run
 * before a worker reports its exit (flushing queue feeders, joining non-daemon children).
 *
 * @module
 */

import { heap, MAIN_SLOT } from "./heap.ts";

/** What a process knows about itself. */
export interface ProcessInfo {
  /** `MainProcess`, `Process-1`, `Process-1:2`, or the name given. */
  name: string;
  /** Unique per run; the main thread's is the OS pid. */
  pid: number;
  /** Slot in the shared process table. */
  slot: number;
  /** Whether this process is daemonic. */
  daemon: boolean;
  /** Python's `_identity`: the child counters from the main process down to this one. */
  identity: number[];
  /** Shared secret for managers and listeners, inherited from the main process. */
  authkey: Uint8Array;
  /** The parent's name and pid, or null in the main process. */
  parent: { name: string; pid: number } | null;
}

let me: ProcessInfo | undefined;

/** The pid that goes with a process-table slot (the main thread's is the OS pid). */
export function pidOfSlot(slot: number): number {
  return Deno.pid + slot - MAIN_SLOT;
}

/** This process's identity. */
export function current(): ProcessInfo {
  return me ??= {
    name: "MainProcess",
    pid: pidOfSlot(heap().slot),
    slot: heap().slot,
    daemon: false,
    identity: [],
    authkey: crypto.getRandomValues(new Uint8Array(32)),
    parent: null,
  };
}

/** Called by the worker bootstrap before user code runs. */
export function setCurrent(info: ProcessInfo): void {
  me = info;
}

const exitHooks: (() => unknown)[] = [];

/**
 * Registers work a worker must finish before it reports its exit (Python's `atexit`-style
 * finalizers: flush a queue's feeder, join non-daemon children).
 */
export function beforeExit(hook: () => unknown): void {
  exitHooks.push(hook);
}

/** Runs every `beforeExit` hook, in registration order. */
export async function runExitHooks(): Promise<void> {
  for (const h of exitHooks) await h();
}

let bootstrapping = false;

/** True while a worker is importing its target's module (code there must not start processes). */
export function isBootstrapping(): boolean {
  return bootstrapping;
}

/** Set by the worker bootstrap around the import of the target's module. */
export function setBootstrapping(on: boolean): void {
  bootstrapping = on;
}
