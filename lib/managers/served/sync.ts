/**
 * A manager's served `Lock`/`RLock`, `Semaphore`/`BoundedSemaphore`, `Event`, `Condition` and
 * `Barrier`: promise-based waits in the server's isolate, owned per client and client-side
 * thread, so that a client whose connection drops releases what it held.
 *
 * @module
 */

import { ACQUIRED, OWNER_DIED, TIMED_OUT } from "../../core/atomics.ts";
import { checkTimeout } from "../../core/args.ts";
import { type Caller, caller, type Client, type Forgetful } from "./caller.ts";
import { BrokenBarrierError, ValueError } from "../../core/errors.ts";

// ---------------------------------------------------------------------------------------------
// Waiting

/** One parked call. `grant` settles it (false if it had already ended: timeout, abort). */
export class Waiter<T> {
  settled = false;
  readonly promise: Promise<T>;
  #resolve!: (v: T) => void;
  #reject!: (e: unknown) => void;
  #cleanup: () => void = () => {};

  constructor(readonly client: Client, readonly thread: number) {
    this.promise = new Promise<T>((res, rej) => {
      this.#resolve = res;
      this.#reject = rej;
    });
  }

  /** Arms the timeout and the abort signal; `onTimeout` gives the result (or throws). */
  arm(list: Waiter<T>[], timeout: number | undefined, signal: AbortSignal, onTimeout: () => T) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const onAbort = () => this.fail(signal.reason);
    this.#cleanup = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      const i = list.indexOf(this);
      if (i >= 0) list.splice(i, 1);
    };
    list.push(this);
    if (signal.aborted) return this.fail(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    if (timeout !== undefined && timeout !== Infinity) {
      timer = setTimeout(() => {
        if (this.settled) return;
        try {
          this.grant(onTimeout());
        } catch (e) {
          this.fail(e);
        }
      }, timeout);
    }
  }

  grant(v: T): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.#cleanup();
    this.#resolve(v);
    return true;
  }

  fail(e: unknown): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.#cleanup();
    this.#reject(e);
    return true;
  }
}

/** Parks a call on `list` until granted, timed out (`onTimeout`) or aborted. */
export function park<T>(
  list: Waiter<T>[],
  timeout: number | undefined,
  onTimeout: () => T,
  c: Caller = caller(),
): Promise<T> {
  const w = new Waiter<T>(c.client, c.thread);
  w.arm(list, timeout, c.signal(), onTimeout);
  return w.promise;
}

/** Options of a served acquire, as the proxy sends them. */
export interface AcquireArgs {
  block?: boolean;
  timeout?: number;
}

/** Validates `{ block, timeout }` as Python does; returns the timeout (undefined: forever). */
export function timeoutOf(o: AcquireArgs | undefined): number | undefined {
  if (!o) return undefined;
  const t = o.timeout ?? undefined;
  if (o.block === false) {
    if (t !== undefined) throw new ValueError("can't specify a timeout for a non-blocking call");
    return 0;
  }
  return checkTimeout(t);
}

/** Results of a served acquire: the mutex protocol's own (timed out, acquired, from a dead holder). */
export { ACQUIRED, OWNER_DIED };
type Acquire = typeof TIMED_OUT | typeof ACQUIRED | typeof OWNER_DIED;

// ---------------------------------------------------------------------------------------------
// Lock and RLock

/**
 * A served `Lock` (`reentrant` false: any client may release it, as in Python) or `RLock` (one
 * client-side thread owns it; only it may release). Released waiters are served first come,
 * first served; a holder whose connection drops releases it, and the next acquirer is told
 * (`OWNER_DIED`).
 */
export class ServedLock implements Forgetful {
  #owner: Client | null = null;
  #thread = 0;
  #count = 0;
  #abandoned = false;
  #waiters: Waiter<Acquire>[] = [];

  constructor(readonly reentrant: boolean) {}

  acquire(o?: AcquireArgs): Acquire | Promise<Acquire> {
    const c = caller(), timeout = timeoutOf(o);
    if (this.#owner === null) return this.#take(c.client, c.thread, 1);
    if (this.reentrant && this.#owner === c.client && this.#thread === c.thread) {
      this.#count++;
      return ACQUIRED;
    }
    if (timeout === 0) return TIMED_OUT;
    return park(this.#waiters, timeout, () => TIMED_OUT, c);
  }

  #take(client: Client, thread: number, count: number): Acquire {
    this.#owner = client;
    this.#thread = thread;
    this.#count = count;
    client.touch(this);
    const died = this.#abandoned;
    this.#abandoned = false;
    return died ? OWNER_DIED : ACQUIRED;
  }

  release(): void {
    const c = caller();
    if (this.#owner === null) {
      throw new ValueError(
        this.reentrant ? "cannot release un-acquired lock" : "release unlocked lock",
      );
    }
    if (this.reentrant) {
      if (!this.owns(c.client, c.thread)) throw new ValueError("cannot release un-acquired lock");
      if (--this.#count > 0) return;
    }
    this.#handOver();
  }

  locked(): boolean {
    return this.#owner !== null;
  }

  /** Whether `client`'s `thread` holds it (Condition's ownership check). */
  owns(client: Client, thread: number): boolean {
    return this.#owner === client && this.#thread === thread;
  }

  /** Releases it completely and returns the recursion level, for `Condition.wait`. */
  releaseAll(): number {
    const n = this.#count;
    this.#handOver();
    return n;
  }

  /** Takes it back at recursion level `count` after `Condition.wait` (waits its turn). */
  reacquire(c: Caller, count: number): Promise<void> {
    if (this.#owner === null) {
      this.#take(c.client, c.thread, count);
      return Promise.resolve();
    }
    const w = new Waiter<Acquire>(c.client, c.thread);
    w.arm(this.#waiters, undefined, c.signal(), () => TIMED_OUT);
    return w.promise.then(() => {
      this.#count = count;
    });
  }

  /** Gives the lock to the first waiter still waiting, or frees it. */
  #handOver(): void {
    this.#owner = null;
    this.#count = 0;
    for (let w = this.#waiters[0]; w; w = this.#waiters[0]) {
      const r = this.#take(w.client, w.thread, 1);
      if (w.grant(r)) return;
      this.#owner = null; // (cannot happen: a settled waiter has left the list)
    }
  }

  forget(client: Client): void {
    if (this.#owner !== client) return;
    this.#abandoned = true;
    this.#handOver();
  }
}

// ---------------------------------------------------------------------------------------------
// Semaphore

/**
 * A served `Semaphore` (`bound` null) or `BoundedSemaphore`. Permits taken by a client whose
 * connection drops are given back (as lib/sync/semaphore.ts reclaims those of dead
 * processes); a release by a client holding no permit is a plain signal.
 */
export class ServedSemaphore implements Forgetful {
  #value: number;
  readonly #max: number;
  #held = new Map<Client, number>();
  #reclaimed = false;
  #waiters: Waiter<Acquire>[] = [];

  constructor(value: unknown, readonly bound: boolean) {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
      throw new ValueError(`semaphore initial value must be >= 0: current value is ${value}`);
    }
    this.#value = value;
    this.#max = bound ? value : Infinity;
  }

  acquire(o?: AcquireArgs): Acquire | Promise<Acquire> {
    const c = caller(), timeout = timeoutOf(o);
    if (this.#value > 0 && this.#waiters.length === 0) return this.#take(c.client);
    if (timeout === 0) return TIMED_OUT;
    return park(this.#waiters, timeout, () => TIMED_OUT, c);
  }

  #take(client: Client): Acquire {
    this.#value--;
    this.#held.set(client, (this.#held.get(client) ?? 0) + 1);
    client.touch(this);
    const died = this.#reclaimed;
    this.#reclaimed = false;
    return died ? OWNER_DIED : ACQUIRED;
  }

  release(n: unknown = 1): void {
    if (typeof n !== "number" || !Number.isInteger(n) || n < 1) {
      throw new ValueError(`n must be an integer >= 1: current value is ${n}`);
    }
    if (this.#value + n > this.#max) {
      throw new ValueError("semaphore or lock released too many times");
    }
    const client = caller().client, mine = this.#held.get(client) ?? 0;
    if (mine > n) this.#held.set(client, mine - n);
    else this.#held.delete(client);
    this.#give(n);
  }

  #give(n: number): void {
    this.#value = Math.min(this.#max, this.#value + n);
    for (let w = this.#waiters[0]; w && this.#value > 0; w = this.#waiters[0]) {
      const r = this.#take(w.client);
      if (!w.grant(r)) this.#value++;
    }
  }

  getValue(): number {
    return this.#value;
  }

  locked(): boolean {
    return this.#value === 0;
  }

  forget(client: Client): void {
    const n = this.#held.get(client);
    if (!n) return;
    this.#held.delete(client);
    this.#reclaimed = true;
    this.#give(n);
  }
}

// ---------------------------------------------------------------------------------------------
// Event, Condition, Barrier

/** A served `Event`. */
export class ServedEvent {
  #flag = false;
  #waiters: Waiter<boolean>[] = [];

  isSet(): boolean {
    return this.#flag;
  }

  set(): void {
    this.#flag = true;
    for (const w of [...this.#waiters]) w.grant(true);
  }

  clear(): void {
    this.#flag = false;
  }

  wait(timeout?: number): boolean | Promise<boolean> {
    const t = checkTimeout(timeout);
    if (this.#flag) return true;
    if (t === 0) return false;
    return park(this.#waiters, t, () => this.#flag);
  }
}

/** A served `Condition` over a served Lock or RLock (a new RLock by default, as in Python). */
export class ServedCondition implements Forgetful {
  #waiters: Waiter<boolean>[] = [];

  constructor(readonly lock: ServedLock = new ServedLock(true)) {}

  acquire(o?: AcquireArgs): Acquire | Promise<Acquire> {
    return this.lock.acquire(o);
  }

  release(): void {
    this.lock.release();
  }

  #check(c: Caller, what: string): void {
    if (!this.lock.owns(c.client, c.thread)) {
      throw new ValueError(`cannot ${what} un-acquired lock`);
    }
  }

  async wait(timeout?: number): Promise<boolean> {
    const c = caller(), t = checkTimeout(timeout);
    this.#check(c, "wait on");
    // Everything the wait needs from the caller record is read before the first await. The
    // lock is taken back even after a timeout or a cancelled wait (as Python does after a
    // timeout), so only the client's disconnection may interrupt that.
    const client = c.client, gone = client.gone;
    const saved: Caller = { client, thread: c.thread, signal: () => gone, resolve: (v) => v };
    const w = new Waiter<boolean>(client, c.thread);
    w.arm(this.#waiters, t, c.signal(), () => false);
    const levels = this.lock.releaseAll();
    try {
      return await w.promise;
    } finally {
      if (!gone.aborted) await this.lock.reacquire(saved, levels);
    }
  }

  notify(n: unknown = 1): void {
    this.#check(caller(), "notify on");
    if (typeof n !== "number" || !(n >= 0)) {
      throw new ValueError(`n must be a non-negative number: current value is ${n}`);
    }
    for (let k = 0; k < n && this.#waiters.length;) if (this.#waiters[0].grant(true)) k++;
  }

  notifyAll(): void {
    this.#check(caller(), "notify on");
    for (const w of [...this.#waiters]) w.grant(true);
  }

  forget(_client: Client): void {
    // The lock is the one that is held; its own forget() releases it.
  }
}

/**
 * A served `Barrier` (no `action`: a function cannot be sent). A party whose connection drops
 * while it waits breaks the barrier, as a timeout does: the others get `BrokenBarrierError`
 * instead of waiting for an arrival that will never come.
 */
export class ServedBarrier {
  #waiters: Waiter<number>[] = [];
  #count = 0;
  #broken = false;
  readonly #timeout: number | undefined;

  constructor(readonly partiesCount: unknown, options?: { timeout?: number }) {
    if (typeof partiesCount !== "number" || !Number.isInteger(partiesCount) || partiesCount < 1) {
      throw new ValueError(`parties must be an integer >= 1: current value is ${partiesCount}`);
    }
    this.#timeout = checkTimeout(options?.timeout);
  }

  wait(timeout?: number): number | Promise<number> {
    const c = caller();
    const t = timeout === undefined || timeout === null ? this.#timeout : checkTimeout(timeout);
    if (this.#broken) throw new BrokenBarrierError();
    const index = this.#count++;
    if (this.#count === this.partiesCount) {
      const ws = this.#waiters.splice(0);
      this.#count = 0;
      ws.forEach((w, i) => w.grant(i));
      return index;
    }
    // A party that stops waiting (timeout, cancelled, its client gone) breaks the barrier, so
    // the others do not wait for an arrival that will never come.
    return park(this.#waiters, t, () => {
      throw new BrokenBarrierError();
    }, c).catch((e) => {
      this.abort();
      throw e;
    });
  }

  reset(): void {
    const ws = this.#waiters.splice(0);
    this.#count = 0;
    this.#broken = false;
    for (const w of ws) w.fail(new BrokenBarrierError());
  }

  abort(): void {
    this.#broken = true;
    const ws = this.#waiters.splice(0);
    this.#count = 0;
    for (const w of ws) w.fail(new BrokenBarrierError());
  }

  parties(): number {
    return this.partiesCount as number;
  }

  nWaiting(): number {
    return this.#waiters.length;
  }

  broken(): boolean {
    return this.#broken;
  }
}
