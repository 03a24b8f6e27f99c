/**
 * The objects a manager server holds for `SyncManager`'s built-in types (Python's manager serves
 * `dict`, `list`, `threading.Lock`, `queue.Queue`, ...). They live in the server's isolate and
 * are reached only through proxies (lib/managers/managers.ts), so they are plain in-isolate objects: a
 * `Map`, an array, promise-based waits.
 *
 * Why not the shared-memory primitives of synchronize.ts / queues.ts here: ownership. Every
 * client of a server is the same process to them (the server's), while a managed lock must know
 * which *client* holds it, to release it when that client's connection drops (a worker that
 * died, a program killed mid-call), and which client-side thread, for `RLock` and `Condition`.
 * So each call runs with a {@link Caller}: the client it comes from, the client-side thread
 * ident, and an abort signal that fires when the call is cancelled or the client goes away.
 *
 * Values are copies: a value read out of a served container is a copy in the reader's process,
 * and changing it changes nothing here (see the module doc of lib/managers/managers.ts).
 *
 * @module
 */

import { BrokenBarrierError, Empty, Full, ValueError } from "../../core/errors.ts";
import { dumps } from "../../core/reduction.ts";
import { type CInput, RawArray, RawValue, type Typecode } from "../../memory/sharedctypes.ts";

// ---------------------------------------------------------------------------------------------
// Who calls

/** What a served object may need to know about the client of a call. */
export interface Client {
  /** Unique among the clients of one server. */
  readonly id: number;
  /** Aborted when the client's connection drops. */
  readonly gone: AbortSignal;
  /** Notes that `obj` holds something on this client's behalf (see {@link Forgetful}). */
  touch(obj: Forgetful): void;
}

/** A served object that holds things for clients: told when a client's connection drops. */
export interface Forgetful {
  /** Releases whatever `client` held (its locks, permits); its waits are already aborted. */
  forget(client: Client): void;
}

/**
 * The call being served. One mutable record, valid during the synchronous part of a served
 * method only: a method reads what it needs from it before its first `await`.
 */
export interface Caller {
  /** The client. */
  client: Client;
  /** The client-side thread ident (`getIdent()` there), for RLock and Condition ownership. */
  thread: number;
  /** An abort signal for this call: cancelled by the client, or the client went away. */
  signal(): AbortSignal;
  /** The object a proxy of this same server refers to (other values are returned as they are). */
  resolve(value: unknown): unknown;
}

let current: Caller | undefined;

/** The call being served (throws outside one: a served method called directly). */
export function caller(): Caller {
  if (!current) throw new Error("denomp: a managed object's method was called outside a server");
  return current;
}

/** Makes `c` the call being served; returns the previous one for {@link leaveCall}. */
export function enterCall(c: Caller): Caller | undefined {
  const prev = current;
  current = c;
  return prev;
}

/** Ends the call entered last (a served method may itself call its server: calls nest). */
export function leaveCall(prev: Caller | undefined): void {
  current = prev;
}

/** Runs `fn` as the call `c`. */
export function withCaller<T>(c: Caller, fn: () => T): T {
  const prev = enterCall(c);
  try {
    return fn();
  } finally {
    leaveCall(prev);
  }
}

/** Python's `KeyError` (a missing key), with Python's message: the key's repr. */
export class KeyError extends Error {
  /** The key that was missing (Python's `KeyError.args[0]`). */
  readonly key: unknown;
  /** Creates the error for `key`. */
  constructor(key: unknown) {
    super(typeof key === "string" ? `'${key}'` : String(key));
    this.name = "KeyError";
    this.key = key;
  }
}

/** Python's `IndexError` (an index out of range). */
export class IndexError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "IndexError";
  }
}

// ---------------------------------------------------------------------------------------------
// Waiting

/** One parked call. `grant` settles it (false if it had already ended: timeout, abort). */
class Waiter<T> {
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
function park<T>(
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
function timeoutOf(o: AcquireArgs | undefined): number | undefined {
  if (!o) return undefined;
  const t = o.timeout ?? undefined;
  if (o.block === false) {
    if (t !== undefined) throw new ValueError("can't specify a timeout for a non-blocking call");
    return 0;
  }
  return checkTimeout(t);
}

function checkTimeout(t: unknown): number | undefined {
  if (t === undefined || t === null) return undefined;
  if (typeof t !== "number" || Number.isNaN(t)) {
    throw new TypeError(`timeout must be a number of milliseconds: current value is ${String(t)}`);
  }
  if (t < 0) throw new ValueError(`'timeout' must be a non-negative number: current value is ${t}`);
  return t;
}

/** Results of a served acquire: missed / timed out, acquired, acquired from a dead holder. */
export const MISSED = 0, ACQUIRED = 1, OWNER_DIED = 2;
type Acquire = typeof MISSED | typeof ACQUIRED | typeof OWNER_DIED;

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
    if (timeout === 0) return MISSED;
    return park(this.#waiters, timeout, () => MISSED, c);
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
    w.arm(this.#waiters, undefined, c.signal(), () => MISSED);
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
 * connection drops are given back (as synchronize.ts's semaphore reclaims those of dead
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
    if (timeout === 0) return MISSED;
    return park(this.#waiters, timeout, () => MISSED, c);
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

// ---------------------------------------------------------------------------------------------
// Queue

/** Options of a served put/get, as the proxy sends them. */
export interface QueueArgs {
  block?: boolean;
  timeout?: number;
}

/** A served `Queue` / `JoinableQueue` (Python's `queue.Queue`, which has both). */
export class ServedQueue {
  #items: unknown[] = [];
  #head = 0;
  #getters: Waiter<unknown>[] = [];
  #putters: Waiter<void>[] = [];
  #pendingPuts = new Map<Waiter<void>, unknown>();
  #joiners: Waiter<void>[] = [];
  #unfinished = 0;
  readonly #maxsize: number;

  constructor(maxsize: unknown = 0) {
    if (typeof maxsize !== "number" || !Number.isInteger(maxsize)) {
      throw new TypeError(`maxsize must be an integer: current value is ${maxsize}`);
    }
    this.#maxsize = maxsize;
  }

  #size(): number {
    return this.#items.length - this.#head;
  }

  #push(item: unknown): void {
    this.#unfinished++;
    // A waiting getter takes the item at once (the queue is empty when getters wait).
    for (let w = this.#getters[0]; w; w = this.#getters[0]) if (w.grant(item)) return;
    this.#items.push(item);
  }

  #shift(): unknown {
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) (this.#items.length = 0), (this.#head = 0);
    else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    // Room now: the first waiting putter's item goes in.
    for (let w = this.#putters[0]; w; w = this.#putters[0]) {
      const pending = this.#pendingPuts.get(w);
      if (w.grant()) {
        this.#pendingPuts.delete(w);
        this.#push(pending);
        break;
      }
    }
    return item;
  }

  put(item: unknown, o?: QueueArgs): void | Promise<void> {
    const t = timeoutOf(o);
    if (this.#maxsize <= 0 || this.#size() < this.#maxsize) return this.#push(item);
    if (t === 0) throw new Full();
    const c = caller(), w = new Waiter<void>(c.client, c.thread);
    this.#pendingPuts.set(w, item);
    w.arm(this.#putters, t, c.signal(), () => {
      throw new Full();
    });
    return w.promise.finally(() => this.#pendingPuts.delete(w));
  }

  get(o?: QueueArgs): unknown {
    const t = timeoutOf(o);
    if (this.#size() > 0) return this.#shift();
    if (t === 0) throw new Empty();
    return park(this.#getters, t, () => {
      throw new Empty();
    });
  }

  putNowait(item: unknown): void | Promise<void> {
    return this.put(item, { block: false });
  }

  getNowait(): unknown {
    return this.get({ block: false });
  }

  qsize(): number {
    return this.#size();
  }

  empty(): boolean {
    return this.#size() === 0;
  }

  full(): boolean {
    return this.#maxsize > 0 && this.#size() >= this.#maxsize;
  }

  taskDone(): void {
    if (this.#unfinished <= 0) throw new ValueError("task_done() called too many times");
    if (--this.#unfinished === 0) { for (const w of [...this.#joiners]) w.grant(); }
  }

  join(): void | Promise<void> {
    if (this.#unfinished === 0) return;
    return park(this.#joiners, undefined, () => {});
  }
}

// ---------------------------------------------------------------------------------------------
// dict, list, Namespace, Value, Array

const latin1 = (b: Uint8Array): string => {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) {
    s += String.fromCharCode(...b.subarray(i, i + 8192));
  }
  return s;
};

/**
 * The Map key of a dict key. Keys arrive as copies, so an array key (Python's tuple) or an
 * object key would never be found again by identity: such keys are looked up by their encoded
 * form instead. Strings starting with NUL are escaped so they cannot collide with those.
 */
function keyOf(k: unknown): unknown {
  if (typeof k === "string") return k.charCodeAt(0) === 0 ? "\0" + k : k;
  if (k === null || typeof k !== "object") return k;
  return "\0o" + latin1(dumps(k));
}

/** A served `dict`: insertion-ordered, keys of any kind that can be sent. */
export class ServedDict {
  #m = new Map<unknown, [unknown, unknown]>();

  constructor(init?: unknown) {
    if (init !== undefined && init !== null) this.update(init);
  }

  get(key: unknown, dflt?: unknown): unknown {
    const e = this.#m.get(keyOf(key));
    return e ? e[1] : dflt;
  }

  set(key: unknown, value: unknown): void {
    const k = keyOf(key), e = this.#m.get(k);
    if (e) e[1] = value;
    else this.#m.set(k, [key, value]);
  }

  delete(key: unknown): boolean {
    return this.#m.delete(keyOf(key));
  }

  has(key: unknown): boolean {
    return this.#m.has(keyOf(key));
  }

  keys(): unknown[] {
    return Array.from(this.#m.values(), (e) => e[0]);
  }

  values(): unknown[] {
    return Array.from(this.#m.values(), (e) => e[1]);
  }

  items(): [unknown, unknown][] {
    return Array.from(this.#m.values(), (e) => [e[0], e[1]]);
  }

  update(other: unknown): void {
    const o = current ? current.resolve(other) : other;
    if (o instanceof ServedDict) {
      for (const [k, v] of o.items()) this.set(k, v);
    } else if (o instanceof Map) {
      for (const [k, v] of o) this.set(k, v);
    } else if (Array.isArray(o)) {
      o.forEach((pair, i) => {
        if (!Array.isArray(pair) || pair.length !== 2) {
          throw new ValueError(
            `dictionary update sequence element #${i} has length ${
              Array.isArray(pair) ? pair.length : "(not a pair)"
            }; 2 is required`,
          );
        }
        this.set(pair[0], pair[1]);
      });
    } else if (o !== null && typeof o === "object") {
      for (const [k, v] of Object.entries(o)) this.set(k, v);
    } else {
      throw new TypeError(`cannot update a dict from ${o === null ? "null" : typeof o}`);
    }
  }

  pop(key: unknown, ...dflt: unknown[]): unknown {
    const k = keyOf(key), e = this.#m.get(k);
    if (e) {
      this.#m.delete(k);
      return e[1];
    }
    if (dflt.length) return dflt[0];
    throw new KeyError(key);
  }

  setdefault(key: unknown, dflt?: unknown): unknown {
    const k = keyOf(key), e = this.#m.get(k);
    if (e) return e[1];
    this.#m.set(k, [key, dflt]);
    return dflt;
  }

  clear(): void {
    this.#m.clear();
  }

  len(): number {
    return this.#m.size;
  }

  copy(): Map<unknown, unknown> {
    return new Map(Array.from(this.#m.values(), (e) => [e[0], e[1]]));
  }
}

/** A served `list`, with Python's indexing (negative indices count from the end). */
export class ServedList {
  #a: unknown[];

  constructor(init?: unknown) {
    this.#a = init === undefined || init === null ? [] : iterate(init);
  }

  #index(i: unknown, what = "list index out of range"): number {
    if (typeof i !== "number" || !Number.isInteger(i)) {
      throw new TypeError(`list indices must be integers: current value is ${String(i)}`);
    }
    const j = i < 0 ? i + this.#a.length : i;
    if (j < 0 || j >= this.#a.length) throw new IndexError(what);
    return j;
  }

  get(i: number): unknown {
    return this.#a[this.#index(i)];
  }

  set(i: number, v: unknown): void {
    this.#a[this.#index(i, "list assignment index out of range")] = v;
  }

  append(v: unknown): void {
    this.#a.push(v);
  }

  extend(xs: unknown): void {
    const o = current ? current.resolve(xs) : xs;
    for (const x of o instanceof ServedList ? o.slice() : iterate(o)) this.#a.push(x);
  }

  insert(i: number, v: unknown): void {
    if (typeof i !== "number" || !Number.isInteger(i)) {
      throw new TypeError(`list indices must be integers: current value is ${String(i)}`);
    }
    const n = this.#a.length, j = i < 0 ? Math.max(0, i + n) : Math.min(i, n);
    this.#a.splice(j, 0, v);
  }

  pop(i = -1): unknown {
    if (this.#a.length === 0) throw new IndexError("pop from empty list");
    const j = this.#index(i, "pop index out of range");
    return this.#a.splice(j, 1)[0];
  }

  remove(v: unknown): void {
    const j = this.#a.findIndex((x) => equal(x, v));
    if (j < 0) throw new ValueError("list.remove(x): x not in list");
    this.#a.splice(j, 1);
  }

  index(v: unknown, start = 0, end?: number): number {
    const n = this.#a.length;
    const norm = (x: number) => (x < 0 ? Math.max(0, x + n) : Math.min(x, n));
    for (let j = norm(start), e = end === undefined ? n : norm(end); j < e; j++) {
      if (equal(this.#a[j], v)) return j;
    }
    throw new ValueError(`${describe(v)} is not in list`);
  }

  count(v: unknown): number {
    let n = 0;
    for (const x of this.#a) if (equal(x, v)) n++;
    return n;
  }

  sort(options?: { reverse?: boolean }): void {
    const sign = options?.reverse ? -1 : 1;
    this.#a.sort((x, y) => sign * compare(x, y));
  }

  reverse(): void {
    this.#a.reverse();
  }

  len(): number {
    return this.#a.length;
  }

  slice(start?: number, end?: number): unknown[] {
    return this.#a.slice(start, end);
  }
}

/** A served `Namespace`: named attributes. */
export class ServedNamespace {
  #m = new Map<string, unknown>();

  constructor(init?: unknown) {
    if (init !== undefined && init !== null) {
      if (typeof init !== "object") {
        throw new TypeError(`a Namespace is made from an object: got ${typeof init}`);
      }
      for (const [k, v] of Object.entries(init)) this.#m.set(k, v);
    }
  }

  get(name: string): unknown {
    return this.#m.get(String(name));
  }

  set(name: string, value: unknown): void {
    this.#m.set(String(name), value);
  }

  delete(name: string): boolean {
    return this.#m.delete(String(name));
  }

  has(name: string): boolean {
    return this.#m.has(String(name));
  }

  keys(): string[] {
    return [...this.#m.keys()];
  }

  toObject(): Record<string, unknown> {
    const o: Record<string, unknown> = {};
    for (const [k, v] of this.#m) {
      Object.defineProperty(o, k, {
        value: v,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return o;
  }
}

/** A served `Value`: one typed element, checked as sharedctypes checks it. */
export class ServedValue {
  #v: RawValue<Typecode>;

  constructor(typecode: Typecode, value?: unknown) {
    this.#v = new RawValue(typecode, value as CInput<Typecode>);
  }

  get(): unknown {
    return this.#v.value;
  }

  set(v: unknown): void {
    this.#v.value = v as CInput<Typecode>;
  }

  typecode(): Typecode {
    return this.#v.typecode;
  }
}

/** A served `Array` of one typecode. */
export class ServedArray {
  #a: RawArray<Typecode>;

  constructor(typecode: Typecode, sizeOrValues: unknown) {
    this.#a = new RawArray(typecode, sizeOrValues as number);
  }

  len(): number {
    return this.#a.length;
  }

  get(i: number): unknown {
    return this.#a.get(i);
  }

  set(i: number, v: unknown): void {
    this.#a.set(i, v as CInput<Typecode>);
  }

  slice(start?: number, end?: number): unknown[] {
    return this.#a.slice(start, end);
  }

  typecode(): Typecode {
    return this.#a.typecode;
  }
}

/** The built-in types every server serves, with the methods a proxy may call. */
export const BUILTINS: ReadonlyMap<
  string,
  { make: (...args: never[]) => object; exposed: readonly string[] }
> = new Map<string, { make: (...args: never[]) => object; exposed: readonly string[] }>([
  ["dict", {
    make: (init?: unknown) => new ServedDict(init),
    exposed: [
      "get",
      "set",
      "delete",
      "has",
      "keys",
      "values",
      "items",
      "update",
      "pop",
      "setdefault",
      "clear",
      "len",
      "copy",
    ],
  }],
  ["list", {
    make: (init?: unknown) => new ServedList(init),
    exposed: [
      "get",
      "set",
      "append",
      "extend",
      "insert",
      "pop",
      "remove",
      "index",
      "count",
      "sort",
      "reverse",
      "len",
      "slice",
    ],
  }],
  ["Namespace", {
    make: (init?: unknown) => new ServedNamespace(init),
    exposed: ["get", "set", "delete", "has", "keys", "toObject"],
  }],
  ["Queue", { make: (maxsize?: unknown) => new ServedQueue(maxsize), exposed: QUEUE() }],
  ["JoinableQueue", {
    make: (maxsize?: unknown) => new ServedQueue(maxsize),
    exposed: [...QUEUE(), "taskDone", "join"],
  }],
  ["Lock", { make: () => new ServedLock(false), exposed: ["acquire", "release", "locked"] }],
  ["RLock", { make: () => new ServedLock(true), exposed: ["acquire", "release", "locked"] }],
  ["Semaphore", {
    make: (v?: unknown) => new ServedSemaphore(v ?? 1, false),
    exposed: ["acquire", "release", "getValue", "locked"],
  }],
  ["BoundedSemaphore", {
    make: (v?: unknown) => new ServedSemaphore(v ?? 1, true),
    exposed: ["acquire", "release", "getValue", "locked"],
  }],
  ["Condition", {
    make: (lock?: unknown) => {
      const l = lock === undefined || lock === null ? undefined : current?.resolve(lock);
      if (l !== undefined && !(l instanceof ServedLock)) {
        throw new TypeError("a managed Condition takes a Lock or RLock of the same manager");
      }
      return new ServedCondition(l);
    },
    exposed: ["acquire", "release", "wait", "notify", "notifyAll"],
  }],
  ["Event", { make: () => new ServedEvent(), exposed: ["isSet", "set", "clear", "wait"] }],
  ["Barrier", {
    make: (parties: unknown, options?: { timeout?: number }) => new ServedBarrier(parties, options),
    exposed: ["wait", "reset", "abort", "parties", "nWaiting", "broken"],
  }],
  ["Value", {
    make: (tc: Typecode, v?: unknown) => new ServedValue(tc, v),
    exposed: ["get", "set", "typecode"],
  }],
  ["Array", {
    make: (tc: Typecode, xs: unknown) => new ServedArray(tc, xs),
    exposed: ["len", "get", "set", "slice", "typecode"],
  }],
]);

function QUEUE(): string[] {
  return ["put", "get", "putNowait", "getNowait", "qsize", "empty", "full"];
}

// ---------------------------------------------------------------------------------------------
// Python's == and < for list methods

function iterate(x: unknown): unknown[] {
  if (Array.isArray(x)) return [...x];
  if (typeof x === "string") return [...x];
  if (x !== null && typeof x === "object" && Symbol.iterator in x) {
    return Array.from(x as Iterable<unknown>);
  }
  throw new TypeError(`'${x === null ? "null" : typeof x}' object is not iterable`);
}

function describe(v: unknown): string {
  return typeof v === "string" ? `'${v}'` : typeof v === "bigint" ? `${v}` : String(v);
}

/** Python's `==` on values that arrived as copies: structural for containers. */
export function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  const ta = typeof a, tb = typeof b;
  if ((ta === "number" || ta === "bigint") && (tb === "number" || tb === "bigint")) {
    // deno-lint-ignore eqeqeq
    return a == b; // 1 == 1n, as Python's ints and floats compare
  }
  if (ta !== "object" || tb !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => equal(x, b[i]));
  }
  if (a instanceof Date) return b instanceof Date && a.getTime() === b.getTime();
  if (a instanceof Map) {
    if (!(b instanceof Map) || a.size !== b.size) return false;
    for (const [k, v] of a) {
      if (
        b.has(k) ? !equal(v, b.get(k)) : ![...b].some(([k2, v2]) => equal(k, k2) && equal(v, v2))
      ) {
        return false;
      }
    }
    return true;
  }
  if (a instanceof Set) {
    if (!(b instanceof Set) || a.size !== b.size) return false;
    for (const x of a) if (!b.has(x) && ![...b].some((y) => equal(x, y))) return false;
    return true;
  }
  if (ArrayBuffer.isView(a)) {
    if (!ArrayBuffer.isView(b) || a.constructor !== b.constructor) return false;
    const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  }
  const pa = Object.getPrototypeOf(a), pb = Object.getPrototypeOf(b);
  if ((pa === Object.prototype || pa === null) && (pb === Object.prototype || pb === null)) {
    const ka = Object.keys(a as object), kb = Object.keys(b as object);
    return ka.length === kb.length &&
      ka.every((k) =>
        Object.hasOwn(b as object, k) &&
        equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])
      );
  }
  return false;
}

function kind(v: unknown): string {
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") return "number";
  if (typeof v === "string") return "string";
  if (Array.isArray(v)) return "array";
  if (v instanceof Date) return "Date";
  return v === null
    ? "null"
    : v === undefined
    ? "undefined"
    : typeof v === "object"
    ? (v.constructor?.name ?? "object")
    : typeof v;
}

/** Python's `<` ordering: numbers, strings, arrays (element by element), Dates; else TypeError. */
export function compare(a: unknown, b: unknown): number {
  const ka = kind(a), kb = kind(b);
  if (ka !== kb || !["number", "string", "array", "Date"].includes(ka)) {
    throw new TypeError(`'<' not supported between instances of '${ka}' and '${kb}'`);
  }
  if (ka === "array") {
    const x = a as unknown[], y = b as unknown[];
    for (let i = 0; i < x.length && i < y.length; i++) {
      if (!equal(x[i], y[i])) return compare(x[i], y[i]);
    }
    return x.length - y.length;
  }
  const x = ka === "Date" ? (a as Date).getTime() : ka === "number" ? Number(a) : a;
  const y = kb === "Date" ? (b as Date).getTime() : kb === "number" ? Number(b) : b;
  if (typeof a === "bigint" || typeof b === "bigint") {
    // Mixed number/bigint compare exactly with < and > (typed as number only for the checker).
    const p = a as number, q = b as number;
    return p < q ? -1 : p > q ? 1 : 0;
  }
  return (x as number) < (y as number) ? -1 : (x as number) > (y as number) ? 1 : 0;
}
