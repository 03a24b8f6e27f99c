/**
 * Waiting on shared words: the one place that calls `Atomics.wait` / `Atomics.waitAsync`, and the
 * robust futex mutex every shared-memory structure is built from (locks, queue rings, pipes).
 *
 * Why a keep-alive: a pending `Atomics.waitAsync` does not keep Deno's event loop alive, so a
 * main thread awaiting a lock held by a daemon worker would see the program end under it. While
 * any async wait is pending, one ref'd interval timer keeps the process running.
 *
 * @module
 */

import { heap, isAlive } from "./_heap.ts";

/** The outcome of one wait on a shared word. */
export type WaitResult = "ok" | "not-equal" | "timed-out";

/** How long one sleep may last before a waiter re-checks that the owner it waits for lives. */
export const LIVENESS_SLICE_MS = 100;

/** Absolute deadline (`performance.now()` based) for a timeout in ms; `Infinity` for none. */
export function deadlineOf(timeout?: number | null): number {
  if (timeout === undefined || timeout === null || timeout === Infinity) return Infinity;
  if (typeof timeout !== "number" || Number.isNaN(timeout)) {
    throw new TypeError(
      `timeout must be a number of milliseconds: current value is ${String(timeout)}`,
    );
  }
  if (timeout < 0) {
    throw new RangeError(`'timeout' must be a non-negative number: current value is ${timeout}`);
  }
  return performance.now() + timeout;
}

/** Milliseconds left until `deadline` (never negative; `Infinity` stays). */
export function remainingMs(deadline: number): number {
  return deadline === Infinity ? Infinity : Math.max(0, deadline - performance.now());
}

let keepAliveCount = 0;
let keepAliveTimer: ReturnType<typeof setInterval> | undefined;

/** Keeps the event loop alive while `p` is pending. */
export async function keepAlive<T>(p: Promise<T>): Promise<T> {
  if (keepAliveCount++ === 0) keepAliveTimer = setInterval(() => {}, 1 << 30);
  try {
    return await p;
  } finally {
    if (--keepAliveCount === 0) clearInterval(keepAliveTimer);
  }
}

/** Blocks the thread until `i32[index] !== value`, a notify, or `ms` pass. */
export function waitSync(i32: Int32Array, index: number, value: number, ms: number): WaitResult {
  return Atomics.wait(i32, index, value, ms === Infinity ? undefined : ms);
}

/** Awaits (without blocking the thread) until `i32[index] !== value`, a notify, or `ms` pass. */
export function waitAsync(
  i32: Int32Array,
  index: number,
  value: number,
  ms: number,
): Promise<WaitResult> | WaitResult {
  const r = Atomics.waitAsync(i32, index, value, ms === Infinity ? undefined : ms);
  return r.async ? keepAlive(r.value) : r.value;
}

// ---------------------------------------------------------------------------------------------
// Robust futex mutex. The word is 0 when free, else the owner's process slot, with WAITERS set
// when somebody may be asleep on it (so an uncontended release pays no notify). A waiter that
// finds the owner's process dead takes the lock over and is told so (OWNER_DIED).

/** Set in a mutex word when a waiter may be sleeping on it. */
export const WAITERS = 1 << 30;
const OWNER = WAITERS - 1;
/** Results of a mutex acquire. */
export const TIMED_OUT = 0, ACQUIRED = 1, OWNER_DIED = 2;
/** `TIMED_OUT`, `ACQUIRED` or `OWNER_DIED`. */
export type AcquireResult = 0 | 1 | 2;
const SPIN = 200;

/** Takes the mutex at `i32[index]` if it is free. */
export function mutexTry(i32: Int32Array, index: number): boolean {
  return Atomics.compareExchange(i32, index, 0, heap().slot) === 0;
}

/** One step of the slow path: returns a result, or the word value to sleep on. */
function contend(i32: Int32Array, index: number, me: number): AcquireResult | { sleepOn: number } {
  const c = Atomics.load(i32, index);
  if (c === 0) {
    return Atomics.compareExchange(i32, index, 0, me | WAITERS) === 0 ? ACQUIRED : { sleepOn: -1 };
  }
  const owner = c & OWNER;
  if (!isAlive(owner)) {
    return Atomics.compareExchange(i32, index, c, me | WAITERS) === c
      ? OWNER_DIED
      : { sleepOn: -1 };
  }
  if (!(c & WAITERS) && Atomics.compareExchange(i32, index, c, c | WAITERS) !== c) {
    return { sleepOn: -1 };
  }
  return { sleepOn: c | WAITERS };
}

function spinTry(i32: Int32Array, index: number, me: number): boolean {
  for (let s = 0; s < SPIN; s++) {
    if (Atomics.load(i32, index) === 0 && Atomics.compareExchange(i32, index, 0, me) === 0) {
      return true;
    }
  }
  return false;
}

/** Acquires the mutex, blocking the thread; `TIMED_OUT` after `timeout` ms. */
export function mutexAcquireSync(i32: Int32Array, index: number, timeout?: number): AcquireResult {
  const me = heap().slot;
  if (Atomics.compareExchange(i32, index, 0, me) === 0 || spinTry(i32, index, me)) return ACQUIRED;
  const deadline = deadlineOf(timeout);
  for (;;) {
    const r = contend(i32, index, me);
    if (typeof r === "number") return r;
    const left = remainingMs(deadline);
    if (left <= 0) return TIMED_OUT;
    if (r.sleepOn !== -1) waitSync(i32, index, r.sleepOn, Math.min(left, LIVENESS_SLICE_MS));
  }
}

/** Acquires the mutex without blocking the thread; `TIMED_OUT` after `timeout` ms. */
export function mutexAcquire(
  i32: Int32Array,
  index: number,
  timeout?: number,
): AcquireResult | Promise<AcquireResult> {
  const me = heap().slot;
  if (Atomics.compareExchange(i32, index, 0, me) === 0 || spinTry(i32, index, me)) return ACQUIRED;
  return mutexAcquireSlow(i32, index, me, deadlineOf(timeout));
}

async function mutexAcquireSlow(
  i32: Int32Array,
  index: number,
  me: number,
  deadline: number,
): Promise<AcquireResult> {
  for (;;) {
    const r = contend(i32, index, me);
    if (typeof r === "number") return r;
    const left = remainingMs(deadline);
    if (left <= 0) return TIMED_OUT;
    if (r.sleepOn !== -1) await waitAsync(i32, index, r.sleepOn, Math.min(left, LIVENESS_SLICE_MS));
  }
}

/** Releases the mutex (whoever holds it: checking ownership is the caller's business). */
export function mutexRelease(i32: Int32Array, index: number): void {
  if (Atomics.exchange(i32, index, 0) & WAITERS) Atomics.notify(i32, index, 1);
}

/** The slot of the process holding the mutex, or 0. */
export function mutexOwner(i32: Int32Array, index: number): number {
  return Atomics.load(i32, index) & OWNER;
}
