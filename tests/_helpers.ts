// Small helpers the tests share: sleeping, polling for a condition, bounding a wait, starting a
// worker process on a target, and a ring of its own in the heap. Written once here so every test
// file waits and starts workers the same way.

import { alloc } from "../lib/core/heap.ts";
import { Ring } from "../lib/core/ring.ts";
import { Process } from "../lib/process/process.ts";

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `[0, 1, ..., n - 1]`. */
export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/**
 * Waits (polling every `everyMs` milliseconds) until `cond` holds; false after `ms` milliseconds
 * (generous defaults: the machine may be loaded).
 */
export async function until(cond: () => boolean, ms = 20_000, everyMs = 5): Promise<boolean> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) return false;
    await sleep(everyMs);
  }
  return true;
}

/** As {@link until}, but throws "condition not met in time" after `ms` milliseconds. */
export async function waitUntil(cond: () => boolean, ms = 10_000, everyMs = 5): Promise<void> {
  if (!await until(cond, ms, everyMs)) throw new Error("condition not met in time");
}

/** Whether OS process `pid` is gone (no entry, or a zombie nobody reaped). */
export function gone(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] === "Z";
  } catch {
    return true;
  }
}

/** What {@link within} gives when the time ran out. */
export const TIMED_OUT = Symbol("timed out");

/** `p`, or TIMED_OUT after `ms` milliseconds (a hang shows as a failure, not a stuck run). */
export function within<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let t: ReturnType<typeof setTimeout> | undefined;
  const timer = new Promise<typeof TIMED_OUT>((r) => (t = setTimeout(() => r(TIMED_OUT), ms)));
  return Promise.race([p, timer]).finally(() => clearTimeout(t));
}

/**
 * A `start(target, ...args)` that starts a worker process running `target(...args)`, `target`
 * being exported by `module` (the test's fixture module). The module is named because the
 * process would otherwise look for the target among the imports of its caller, this file.
 */
export function starter(
  module: URL,
): (target: (...a: never[]) => unknown, ...args: unknown[]) => Process {
  return (target, ...args) => {
    const p = new Process({ target: target as (...a: unknown[]) => unknown, module, args });
    p.start();
    return p;
  };
}

/** A ring of `capacity` bytes, on a block of its own in the heap. */
export function newRing(capacity: number): Ring {
  const bytes = Ring.bytesFor(capacity);
  return new Ring(Ring.init(alloc(bytes), bytes));
}
