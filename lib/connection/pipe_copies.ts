/**
 * Who holds a copy of each end of a pipe: the table behind per-process `close()` and `EOFError`
 * (see `connection.ts`). Per end, in the pipe's heap block: the number of copies in flight
 * (encoded in a message not yet received), a generation counter, and {@link HOLDERS} entries of
 * (process slot, open copies in that process). An end is open while some copy is in flight or
 * held by a live process; copies held by a process that died count as closed.
 *
 * Why a generation counter: the table is many words, read one at a time, while copies move
 * between processes. A copy always arrives at its new place before it leaves the old one (sent:
 * in flight, then closed by the sender; received: claimed, then no longer in flight), so at
 * every instant some word shows it; but a scan can read the new place before the copy arrives
 * and the old one after it left, and see no copy at all: a false `EOFError` or
 * `BrokenPipeError`. Every change bumps the counter after it is made, so such a scan sees the
 * counter change (the arrival's bump falls between the scan's first and last read) and scans
 * again. Only "closed" needs the check: closed is final (no copy left to send), and a copy seen
 * was open at that moment.
 *
 * @module
 */

import { heap, isAlive } from "../core/heap.ts";

/** Where the first end's words start in a pipe block (Int32 words), and each end's size. */
const END0 = 64, END_WORDS = 160;
/** Per end: copies in flight, the generation counter, then the holder entries. */
const INFLIGHT = 0, GEN = 1, ENTRIES = 16;
/** How many processes may hold copies of one end at once. */
export const HOLDERS = 64;

const endWord = (off: number, end: number) => (off >> 2) + END0 + end * END_WORDS;

/**
 * Test-only hooks (not exported from mod.ts): `scanning(k)` runs before a scan reads holder
 * entry `k`, so a test can move a copy at the exact point of the race.
 *
 * @example
 * ```ts
 * import { __testHooks } from "./pipe_copies.ts";
 * __testHooks.scanning = undefined; // no hook: the default
 * ```
 */
export const __testHooks: { scanning?: (entry: number) => void } = {};

function changed(i32: Int32Array, w: number): void {
  Atomics.add(i32, w + GEN, 1);
}

/**
 * Registers one more open copy of end `end` of the pipe at `off` in this process. Returns false
 * when {@link HOLDERS} live processes hold copies already.
 *
 * @example
 * ```ts
 * import { Pipe } from "jsr:@denomp/multiprocessing";
 * import { claimCopy, dropCopy, endOpen } from "./pipe_copies.ts";
 * const [a, b] = Pipe();
 * const off = Number(/pipe (\d+)/.exec(String(b))![1]);
 * console.assert(claimCopy(off, 1)); // a second copy of end 1 here
 * b.close();
 * console.assert(endOpen(off, 1)); // the second copy is still open
 * dropCopy(off, 1);
 * console.assert(!endOpen(off, 1));
 * a.close();
 * ```
 */
export function claimCopy(off: number, end: number): boolean {
  const i32 = heap().i32, me = heap().slot, w = endWord(off, end), e = w + ENTRIES;
  let free = -1;
  for (let k = 0; k < HOLDERS; k++) {
    const s = Atomics.load(i32, e + 2 * k);
    if (s === me) {
      Atomics.add(i32, e + 2 * k + 1, 1);
      changed(i32, w);
      return true;
    }
    if (free < 0 && (s === 0 || !isAlive(s))) free = k;
  }
  for (let k = free < 0 ? 0 : free; k < HOLDERS; k++) {
    const s = Atomics.load(i32, e + 2 * k);
    if (s !== 0 && isAlive(s)) continue;
    // A free entry, or a dead process's (its copies count as closed): take it over.
    if (Atomics.compareExchange(i32, e + 2 * k, s, me) !== s) continue;
    Atomics.store(i32, e + 2 * k + 1, 1);
    changed(i32, w);
    return true;
  }
  return false;
}

/**
 * Drops one open copy of end `end` held by this process.
 *
 * @example
 * ```ts
 * import { Pipe } from "jsr:@denomp/multiprocessing";
 * import { claimCopy, dropCopy } from "./pipe_copies.ts";
 * const [a, b] = Pipe();
 * const off = Number(/pipe (\d+)/.exec(String(b))![1]);
 * claimCopy(off, 1);
 * dropCopy(off, 1); // as if that copy was closed
 * a.close();
 * b.close();
 * ```
 */
export function dropCopy(off: number, end: number): void {
  const i32 = heap().i32, me = heap().slot, w = endWord(off, end), e = w + ENTRIES;
  for (let k = 0; k < HOLDERS; k++) {
    if (Atomics.load(i32, e + 2 * k) !== me) continue;
    if (Atomics.sub(i32, e + 2 * k + 1, 1) === 1) {
      Atomics.compareExchange(i32, e + 2 * k, me, 0);
    }
    changed(i32, w);
    return;
  }
}

/**
 * A copy of end `end` leaves in a message (`inFlight: true`, when it is encoded) or arrives
 * (`false`, when it is rebuilt, after {@link claimCopy}): it counts as open in between.
 *
 * @example
 * ```ts
 * import { Pipe } from "jsr:@denomp/multiprocessing";
 * import { copyInFlight, endOpen } from "./pipe_copies.ts";
 * const [a, b] = Pipe();
 * const off = Number(/pipe (\d+)/.exec(String(b))![1]);
 * copyInFlight(off, 1, true); // a copy is on its way somewhere
 * b.close();
 * console.assert(endOpen(off, 1));
 * copyInFlight(off, 1, false); // (it arrived and was claimed: here, dropped)
 * console.assert(!endOpen(off, 1));
 * a.close();
 * ```
 */
export function copyInFlight(off: number, end: number, inFlight: boolean): void {
  const i32 = heap().i32, w = endWord(off, end);
  if (inFlight) Atomics.add(i32, w + INFLIGHT, 1);
  else Atomics.sub(i32, w + INFLIGHT, 1);
  changed(i32, w);
}

/** Rescans allowed while copies keep moving; then the end is taken as open (asked again later). */
const MAX_SCANS = 100;

/**
 * True while some copy of end `end` is open: in a live process, or in flight.
 *
 * @example
 * ```ts
 * import { Pipe } from "jsr:@denomp/multiprocessing";
 * import { endOpen } from "./pipe_copies.ts";
 * const [a, b] = Pipe();
 * const off = Number(/pipe (\d+)/.exec(String(b))![1]);
 * console.assert(endOpen(off, 1));
 * b.close();
 * console.assert(!endOpen(off, 1)); // a's recv() would now throw EOFError
 * a.close();
 * ```
 */
export function endOpen(off: number, end: number): boolean {
  const i32 = heap().i32, w = endWord(off, end);
  for (let scan = 0; scan < MAX_SCANS; scan++) {
    const gen = Atomics.load(i32, w + GEN);
    if (anyCopy(i32, w)) return true;
    // Nothing seen: closed, unless a copy moved during the scan (see the module doc).
    if (Atomics.load(i32, w + GEN) === gen) return false;
  }
  return true;
}

function anyCopy(i32: Int32Array, w: number): boolean {
  if (Atomics.load(i32, w + INFLIGHT) > 0) return true;
  const hook = __testHooks.scanning;
  for (let k = 0; k < HOLDERS; k++) {
    hook?.(k);
    const s = Atomics.load(i32, w + ENTRIES + 2 * k);
    if (s !== 0 && Atomics.load(i32, w + ENTRIES + 2 * k + 1) > 0 && isAlive(s)) return true;
  }
  return false;
}
