/**
 * Barriers (Python's `Barrier`): a fixed number of parties, threads or processes, wait for each
 * other at a few words of the shared heap, with an optional action run once per pass.
 *
 * Why the action runs in the process that created the barrier: it is a function, which cannot
 * cross to another worker, so a last party elsewhere asks for it (`ACTION_WANTED`) and the
 * creator runs it, from its event loop or from one of its threads waiting on the barrier. A
 * party declared dead while it waited (a zombie) neither counts itself out nor breaks the
 * barrier.
 *
 * @module
 */

import {
  deadlineOf,
  LIVENESS_SLICE_MS,
  mutexOwner,
  mutexRelease,
  OWNER_DIED,
  remainingMs,
  runAsync,
  runSync,
  type Sleep,
  type WaitResult,
  type Waits,
} from "../core/atomics.ts";
import {
  checkNotTerminated,
  heap,
  isAlive,
  isTerminatedError,
  nextId,
  retain,
} from "../core/heap.ts";
import { optionsOf } from "../core/args.ts";
import { BrokenBarrierError, ValueError } from "../core/errors.ts";
import { registerHandle } from "../core/reduction.ts";
import { inspectors, observed } from "../core/waitfor.ts";
import {
  attach,
  block,
  mutexWaitsFenced,
  nameOf,
  share,
  type WaitOptions,
  words,
} from "./primitive.ts";

/**
 * Barrier words: a mutex over the rest; the state; how many have arrived; a sequence number
 * bumped (and notified) at every change, which waiters sleep on; the parties; the default
 * timeout (ms, -1 none); the slot of the creating process, the barrier's id (to find its
 * action there) and whether it has one.
 */
const B_MUTEX = 0, B_STATE = 1, B_COUNT = 2, B_SEQ = 3, B_PARTIES = 4, B_TIMEOUT = 5;
const B_CREATOR = 6, B_ID = 7, B_HAS_ACTION = 8, B_BYTES = 36;
const FILLING = 0, DRAINING = 1, ACTION_WANTED = 2, ACTION_RUNNING = 3;
const RESETTING = -1, BROKEN = -2;
let barrierOf!: (b: Barrier) => number;
/** A barrier algorithm: it may also yield its action's promise (awaited by the async driver). */
type Steps<R> = Generator<Sleep | Promise<unknown>, R, WaitResult>;

/** Options of `new Barrier(parties, options)`. */
export interface BarrierOptions {
  /**
   * Called once per pass when the last party arrives, before any is released. It runs in the
   * process that created the barrier (so it may be a closure); if it throws, the barrier
   * breaks.
   */
  action?: () => unknown;
  /** The default timeout of `wait()`, in milliseconds. */
  timeout?: number;
  /** Shown in `toString()` and `snapshot()`; default: the creation site. */
  name?: string;
}

/** Actions of the barriers created in this isolate, by barrier id. */
const actions = new Map<number, () => unknown>();
const watched = new Set<number>();
const forgetAction = new FinalizationRegistry<number>((id) => {
  if (!watched.has(id)) actions.delete(id);
});

/**
 * A barrier for a fixed number of parties (Python's `Barrier`): each `wait()` blocks until
 * `parties` threads or processes are waiting, then all are released together, each with a
 * distinct arrival index in `0..parties-1`. `abort()`, a timeout or an action that throws breaks
 * it: every waiter, present and future, gets `BrokenBarrierError` until `reset()`.
 *
 * The `action` runs in the process that created the barrier: by the last party to arrive when
 * it is there, otherwise as soon as that process's event loop (or one of its threads waiting on
 * the barrier) notices. That process must stay alive while the barrier is used; if it dies, the
 * barrier breaks.
 *
 * @example
 * ```ts
 * import { Barrier } from "jsr:@denomp/multiprocessing";
 * import { Thread } from "jsr:@denomp/multiprocessing";
 * let passes = 0;
 * const barrier = new Barrier(3, { action: () => passes++ });
 * const indices: number[] = [];
 * const threads = [0, 1, 2].map(() =>
 *   new Thread({ target: async () => indices.push(await barrier.wait()) })
 * );
 * threads.forEach((t) => t.start());
 * for (const t of threads) await t.join();
 * console.assert(passes === 1 && indices.sort().join() === "0,1,2");
 * ```
 */
export class Barrier {
  #off: number;
  #i32: Int32Array;

  /** Creates a barrier for `parties` (an integer >= 1). */
  constructor(parties: number, options?: BarrierOptions) {
    if (!Number.isInteger(parties) || parties < 1 || parties > 0x7fffffff) {
      throw new ValueError(`parties must be an integer >= 1: current value is ${parties}`);
    }
    const { action, timeout, name } = optionsOf(
      options,
      "new Barrier",
      "new Barrier(2, { timeout: 200 })",
    );
    if (timeout !== undefined) deadlineOf(timeout); // validates
    if (action !== undefined && typeof action !== "function") {
      throw new TypeError("a Barrier's action must be a function");
    }
    if (name !== undefined && typeof name !== "string") {
      throw new TypeError(`new Barrier: name must be a string, got ${typeof name}`);
    }
    const b = block(this, B_BYTES, "Barrier", { name });
    this.#off = b.off;
    this.#i32 = b.i32;
    if (!b.fresh) return;
    const i32 = b.i32;
    i32[B_PARTIES] = parties;
    i32[B_TIMEOUT] = timeout === undefined || timeout > 0x7fffffff ? -1 : Math.ceil(timeout);
    i32[B_CREATOR] = heap().slot;
    i32[B_ID] = nextId();
    if (action) {
      i32[B_HAS_ACTION] = 1;
      actions.set(i32[B_ID], action);
      forgetAction.register(this, i32[B_ID]);
    }
  }

  static {
    barrierOf = (b) => {
      // The action runs here on behalf of other processes: watch for their requests for as
      // long as this process lives (a small leak per barrier with an action that was sent).
      const i32 = b.#i32, id = i32[B_ID];
      if (actions.has(id) && !watched.has(id)) {
        watched.add(id);
        retain(b.#off);
        void watchActions(new Int32Array(heap().sab, b.#off, B_BYTES >> 2), id);
      }
      return b.#off;
    };
  }

  /** The number of parties needed to pass. */
  get parties(): number {
    return this.#i32[B_PARTIES];
  }

  /** How many parties are waiting in the current pass. */
  get nWaiting(): number {
    const i32 = this.#i32;
    return Atomics.load(i32, B_STATE) === FILLING ? Atomics.load(i32, B_COUNT) : 0;
  }

  /** True when the barrier is broken. */
  get broken(): boolean {
    return Atomics.load(this.#i32, B_STATE) === BROKEN;
  }

  /**
   * Waits until all parties are waiting; resolves with this party's arrival index (0 for the
   * first). Rejects with `BrokenBarrierError` if the barrier is or becomes broken, or `timeout`
   * milliseconds (default: the barrier's) pass, which also breaks it for all.
   */
  wait(timeout?: number | WaitOptions): Promise<number> {
    try {
      const [deadline, signal] = this.#args(timeout);
      return runAsync(observed(this.#off, this.#waits(deadline, true)), signal);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Like `wait()`, blocking the thread (an async action is not awaited). */
  waitSync(timeout?: number): number {
    // With async = false the algorithm never yields a promise.
    return runSync(
      observed(this.#off, this.#waits(this.#args(timeout)[0], false) as Waits<number>),
    );
  }

  #args(timeout: number | WaitOptions | undefined): [number, AbortSignal | undefined] {
    checkNotTerminated();
    const o = typeof timeout === "object" && timeout !== null
      ? optionsOf(timeout, "Barrier.wait", "wait(200) or wait({ timeout: 200 })")
      : { timeout };
    const dflt = this.#i32[B_TIMEOUT];
    return [deadlineOf(o.timeout ?? (dflt < 0 ? undefined : dflt)), o.signal];
  }

  /** Resets the barrier to its initial state; parties waiting now get `BrokenBarrierError`. */
  reset(): void {
    checkNotTerminated();
    const i32 = this.#i32;
    lockSync(i32);
    try {
      const s = i32[B_STATE];
      if (i32[B_COUNT] > 0) {
        if (s !== DRAINING) i32[B_STATE] = RESETTING;
      } else {
        i32[B_STATE] = FILLING;
      }
      bump(i32);
    } finally {
      unlock(i32);
    }
  }

  /** Breaks the barrier: every waiter, present and future, gets `BrokenBarrierError`. */
  abort(): void {
    checkNotTerminated();
    const i32 = this.#i32;
    lockSync(i32);
    breakBarrier(i32);
    unlock(i32);
  }

  *#waits(deadline: number, async: boolean): Steps<number> {
    const i32 = this.#i32;
    yield* lockWaits(i32);
    try {
      // Wait for the previous pass to drain, or a reset to finish (Python's _enter); with more
      // threads than parties, also for the previous pass's action to have run.
      for (let s = i32[B_STATE]; s === DRAINING || s === RESETTING || s >= ACTION_WANTED;) {
        if (s === ACTION_WANTED && i32[B_CREATOR] === heap().slot) {
          i32[B_STATE] = ACTION_RUNNING;
          yield* runAction(i32, async);
        } else {
          yield* sleepUnlocked(i32, Infinity);
        }
        s = i32[B_STATE];
      }
      if (i32[B_STATE] === BROKEN) throw new BrokenBarrierError();
      const index = i32[B_COUNT]++;
      try {
        if (index + 1 === i32[B_PARTIES]) {
          yield* this.#pass(async);
        } else {
          yield* this.#await(deadline, async);
        }
        return index;
      } finally {
        // Python's _exit: the last party out lets the next pass fill. (A zombie stopped by the
        // fence holds no mutex here, and leaves everything as it is.)
        if (
          held(i32) && --i32[B_COUNT] === 0 &&
          (i32[B_STATE] === RESETTING || i32[B_STATE] === DRAINING)
        ) {
          i32[B_STATE] = FILLING;
          bump(i32);
        }
      }
    } finally {
      unlock(i32);
    }
  }

  /** The last party: run the action (here, or ask its creator), then release everybody. */
  *#pass(async: boolean): Steps<void> {
    const i32 = this.#i32;
    if (i32[B_CREATOR] === heap().slot || !i32[B_HAS_ACTION]) {
      i32[B_STATE] = ACTION_RUNNING;
      yield* runAction(i32, async);
      if (i32[B_STATE] !== DRAINING) throw new BrokenBarrierError();
      return;
    }
    i32[B_STATE] = ACTION_WANTED;
    bump(i32);
    yield* this.#await(Infinity, async);
  }

  /** Waits until the pass is released (or broken), taking care of action requests here. */
  *#await(deadline: number, async: boolean): Steps<void> {
    const i32 = this.#i32;
    for (;;) {
      const s = i32[B_STATE];
      if (s === DRAINING) return;
      if (s < 0) throw new BrokenBarrierError();
      if (s === ACTION_WANTED) {
        if (i32[B_CREATOR] === heap().slot) {
          i32[B_STATE] = ACTION_RUNNING;
          yield* runAction(i32, async);
          continue;
        }
        if (!isAlive(i32[B_CREATOR])) {
          breakBarrier(i32);
          continue;
        }
      }
      if (remainingMs(deadline) <= 0) {
        breakBarrier(i32);
        throw new BrokenBarrierError();
      }
      try {
        yield* sleepUnlocked(i32, deadline);
      } catch (e) {
        // An aborted party will not come: the others must not wait for it. (A zombie stopped
        // by the fence holds no mutex, and leaves the barrier as it is.)
        if (held(i32)) breakBarrier(i32);
        throw e;
      }
    }
  }

  /** A short description, like Python's repr. */
  toString(): string {
    return `<Barrier(parties=${this.parties}, waiting=${this.nWaiting}${
      this.broken ? ", broken" : ""
    }${nameOf(this.#off)})>`;
  }
}

function bump(i32: Int32Array): void {
  Atomics.add(i32, B_SEQ, 1);
  Atomics.notify(i32, B_SEQ);
}

function breakBarrier(i32: Int32Array): void {
  i32[B_STATE] = BROKEN;
  bump(i32);
}

/** Takes the barrier's mutex; a holder that died mid-update leaves it broken. */
function* lockWaits(i32: Int32Array): Waits<void> {
  const me = heap().slot;
  if (Atomics.compareExchange(i32, B_MUTEX, 0, me) === 0) return;
  if ((yield* mutexWaitsFenced(i32, B_MUTEX, me, Infinity)) === OWNER_DIED) breakBarrier(i32);
}

function lockSync(i32: Int32Array): void {
  runSync(lockWaits(i32));
}

/**
 * True when this process holds the barrier's mutex. No algorithm of this isolate holds it
 * across a sleep, so in synchronous code this means: the code running now holds it.
 */
function held(i32: Int32Array): boolean {
  return mutexOwner(i32, B_MUTEX) === heap().slot;
}

/** Releases the barrier's mutex if this process holds it (a zombie's taken-over one: not). */
function unlock(i32: Int32Array): void {
  mutexRelease(i32, B_MUTEX, heap().slot);
}

/**
 * Sleeps until the barrier changes (the mutex released meanwhile), at most until `deadline`,
 * in slices so that a dead creator with an action pending is noticed.
 */
function* sleepUnlocked(i32: Int32Array, deadline: number): Waits<void> {
  const seq = i32[B_SEQ];
  unlock(i32);
  let zombie = false;
  try {
    const ms = Math.min(remainingMs(deadline), LIVENESS_SLICE_MS);
    if (ms > 0) yield { i32, index: B_SEQ, value: seq, ms };
    checkNotTerminated();
  } catch (e) {
    zombie = isTerminatedError(e);
    throw e;
  } finally {
    // Even when aborted: the caller's finally blocks expect the mutex. Not a zombie.
    if (!zombie) yield* lockWaits(i32);
  }
}

/**
 * Runs the barrier's action (state ACTION_RUNNING, mutex held on entry and exit, released while
 * the action runs so that reset/abort stay quick), then releases the pass or breaks it.
 */
function* runAction(i32: Int32Array, async: boolean): Steps<void> {
  const action = actions.get(i32[B_ID]);
  let failed: unknown = null, threw = false;
  if (action) {
    unlock(i32);
    try {
      const r = action();
      if (r instanceof Promise) {
        if (async) yield r;
        else r.catch((e) => console.error("Barrier action failed:", e));
      }
    } catch (e) {
      failed = e;
      threw = true;
    }
    yield* lockWaits(i32);
  }
  if (i32[B_STATE] !== ACTION_RUNNING) return; // reset or aborted meanwhile
  if (threw) {
    breakBarrier(i32);
    throw failed;
  }
  i32[B_STATE] = DRAINING;
  bump(i32);
}

/** In the creator process: runs actions requested by last parties in other processes. */
async function watchActions(i32: Int32Array, id: number): Promise<void> {
  for (;;) {
    const seq = Atomics.load(i32, B_SEQ);
    if (Atomics.load(i32, B_STATE) === ACTION_WANTED) {
      try {
        await runAsync(claimAction(i32));
      } catch (e) {
        console.error(`Barrier action failed (barrier ${id}):`, e);
      }
      continue;
    }
    // Not kept alive: a program whose only pending work is this watch may end.
    const w = Atomics.waitAsync(i32, B_SEQ, seq);
    if (w.async) await w.value;
  }
}

function* claimAction(i32: Int32Array): Steps<void> {
  yield* lockWaits(i32);
  try {
    if (i32[B_STATE] !== ACTION_WANTED) return;
    i32[B_STATE] = ACTION_RUNNING;
    yield* runAction(i32, true);
  } finally {
    unlock(i32);
  }
}

registerHandle<Barrier, number>({
  name: "Barrier",
  module: import.meta.url,
  cls: Barrier,
  reduce: (b) => share(barrierOf(b)),
  rebuild: (off) => attach(off, () => new Barrier(1)),
});

// What snapshot() reads of a barrier: its live words, read by any process.

inspectors.set("Barrier", (off) => {
  const i32 = words(off, B_BYTES >> 2), state = Atomics.load(i32, B_STATE);
  return {
    holders: [],
    state: {
      parties: i32[B_PARTIES],
      waiting: state === FILLING ? Atomics.load(i32, B_COUNT) : 0,
      broken: state === BROKEN,
    },
  };
});
