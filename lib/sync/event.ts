/**
 * Events (Python's `Event`): a flag in a block of the shared heap, which waiters sleep on until
 * another thread or process sets it.
 *
 * Why a count beside the flag: a waiter decides by the count of `set()`s, not by the flag,
 * whether it was woken, so a `set()` followed at once by `clear()` still wakes every waiter that
 * was present (Python's bpo-13502); and the flag is cleared only by `clear()`.
 *
 * @module
 */

import { deadlineOf, remainingMs, runAsync, runSync, type Waits } from "../core/atomics.ts";
import { checkNotTerminated } from "../core/heap.ts";
import { registerHandle } from "../core/reduction.ts";
import { inspectors, observed } from "../core/waitfor.ts";
import {
  attach,
  block,
  nameOf,
  type ObjectOptions,
  objectOptions,
  share,
  waitArgs,
  type WaitOptions,
  words,
} from "./primitive.ts";

/**
 * Event words: the flag, and a count of `set()`s, which waiters sleep on. A waiter returns true
 * once the count has moved since it began, even if a `clear()` followed at once (Python's
 * bpo-13502): otherwise it could wake, find the flag cleared, and wait on as if nothing
 * had happened.
 */
const E_FLAG = 0, E_SETS = 1;
let eventOf!: (e: Event) => number;

/**
 * An event flag (Python's `Event`): `wait()` waits until another thread or process calls
 * `set()`. Every waiter present at a `set()` returns `true`, even if `clear()` follows at once.
 *
 * Named `Event` as in Python; import it under another name where the DOM `Event` is needed.
 *
 * @example
 * ```ts
 * import { Event } from "jsr:@denomp/multiprocessing";
 * const ready = new Event();
 * setTimeout(() => ready.set(), 5);
 * console.assert(await ready.wait() === true);
 * ready.clear();
 * console.assert(await ready.wait(10) === false); // 10 ms
 * ```
 */
export class Event {
  #off: number;
  #i32: Int32Array;

  /** Creates a cleared event in shared memory (option: `name`). */
  constructor(options?: Pick<ObjectOptions, "name">) {
    const b = block(this, 8, "Event", objectOptions(options, "new Event"));
    this.#off = b.off;
    this.#i32 = b.i32;
  }

  static {
    eventOf = (e) => e.#off;
  }

  /** True when the flag is set. */
  isSet(): boolean {
    return Atomics.load(this.#i32, E_FLAG) !== 0;
  }

  /** Sets the flag and wakes every waiter. */
  set(): void {
    checkNotTerminated();
    const i32 = this.#i32;
    if (Atomics.exchange(i32, E_FLAG, 1) === 0) {
      Atomics.add(i32, E_SETS, 1);
      Atomics.notify(i32, E_SETS);
    }
  }

  /** Clears the flag. */
  clear(): void {
    checkNotTerminated();
    Atomics.store(this.#i32, E_FLAG, 0);
  }

  /**
   * Waits until the flag is set; resolves `true`, or `false` once `timeout` milliseconds have
   * passed with the flag still clear.
   */
  wait(timeout?: number | WaitOptions): Promise<boolean> {
    try {
      checkNotTerminated();
      if (this.isSet()) return Promise.resolve(true);
      const [deadline, signal] = waitArgs(timeout, "Event.wait");
      return runAsync(observed(this.#off, this.#waits(deadline)), signal);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Like `wait()` (`timeout` in milliseconds), blocking the thread (for CPU-bound code). */
  waitSync(timeout?: number): boolean {
    checkNotTerminated();
    if (this.isSet()) return true;
    return runSync(observed(this.#off, this.#waits(deadlineOf(timeout))));
  }

  *#waits(deadline: number): Waits<boolean> {
    const i32 = this.#i32, sets = Atomics.load(i32, E_SETS);
    for (;;) {
      if (Atomics.load(i32, E_FLAG) !== 0 || Atomics.load(i32, E_SETS) !== sets) return true;
      const left = remainingMs(deadline);
      if (left <= 0) return false;
      yield { i32, index: E_SETS, value: sets, ms: left };
      checkNotTerminated(); // a zombie woken here stops instead of acting on the event
    }
  }

  /** A short description, like Python's repr. */
  toString(): string {
    return `<Event(${this.isSet() ? "set" : "unset"}${nameOf(this.#off)})>`;
  }
}

registerHandle<Event, number>({
  name: "Event",
  module: import.meta.url,
  cls: Event,
  reduce: (e) => share(eventOf(e)),
  rebuild: (off) => attach(off, () => new Event()),
});

// What snapshot() reads of an event: its live words, read by any process.

inspectors.set("Event", (off) => ({
  holders: [],
  state: { set: Atomics.load(words(off, 1), E_FLAG) !== 0 },
}));
