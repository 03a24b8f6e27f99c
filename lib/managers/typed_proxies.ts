/**
 * The typed proxies of the built-in types of a `SyncManager` (Python's `DictProxy`,
 * `ListProxy`, `AcquirerProxy`...): `dict`, `list`, `Namespace`, `Queue`, `JoinableQueue`,
 * `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Condition`, `Event`, `Barrier`, `Value`,
 * `Array`, each method a call to the server's object (lib/managers/served/).
 *
 * @module
 */

import { optionsOf } from "../core/args.ts";
import { getIdent } from "../core/threading.ts";
import type { CInput, CType, Typecode } from "../memory/sharedctypes.ts";
import type { Acquired } from "../sync/primitive.ts";
import { BaseProxy, invoke, PROXY_CLASSES } from "./proxy.ts";
import { ACQUIRED as SERVED_ACQUIRED, OWNER_DIED as SERVED_OWNER_DIED } from "./served/sync.ts";

/**
 * Options of a proxy's blocking calls: `block: false` fails at once, `timeout` in ms, `signal`
 * cancels the wait in the server.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const q = manager.Queue<number>();
 * await q.get({ timeout: 10 }).catch((e) => console.assert(e.name === "Empty"));
 * ```
 */
export interface ProxyWaitOptions {
  /** `false`: do not wait (Python's `block=False`). */
  block?: boolean;
  /** Give up after this many milliseconds. */
  timeout?: number;
  /**
   * Cancels the wait in the server. A call that completed before the cancellation arrived
   * keeps its result.
   */
  signal?: AbortSignal;
}

/** The wait options to send to the server; `call` names the method for a wrong-shape error. */
function waitArgs(
  o: ProxyWaitOptions | undefined,
  call: string,
): { block?: boolean; timeout?: number } | undefined {
  if (o === undefined || o === null) return undefined;
  const method = call.slice(call.indexOf(".") + 1);
  optionsOf(
    o,
    call,
    `${method}({ timeout: 200 })` +
      (typeof o === "boolean" ? ` or ${method}({ block: ${o} })` : ""),
  );
  const out: { block?: boolean; timeout?: number } = {};
  if (o.block !== undefined) out.block = o.block;
  if (o.timeout !== undefined) out.timeout = o.timeout;
  return out;
}

/**
 * A proxy of a managed `dict` (`manager.dict()`): an insertion-ordered map whose keys may be of
 * any kind that can be sent (arrays work as Python's tuple keys).
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const d = manager.dict<string, number>();
 * await d.set("a", 1);
 * console.assert((await d.get("a")) === 1 && (await d.len()) === 1);
 * ```
 */
export class DictProxy<K = unknown, V = unknown> extends BaseProxy {
  /** The value of `key`, or `dflt` (default `undefined`) when it is missing. */
  get(key: K): Promise<V | undefined>;
  /** The value of `key`, or `dflt` when it is missing. */
  get<D>(key: K, dflt: D): Promise<V | D>;
  get(key: K, ...dflt: unknown[]): Promise<unknown> {
    return invoke(this, "get", [key, ...dflt]);
  }
  /** Sets `key` to (a copy of) `value`. */
  set(key: K, value: V): Promise<void> {
    return invoke(this, "set", [key, value]) as Promise<void>;
  }
  /** Deletes `key`; true if it was there. */
  delete(key: K): Promise<boolean> {
    return invoke(this, "delete", [key]) as Promise<boolean>;
  }
  /** Whether `key` is there (Python's `key in d`). */
  has(key: K): Promise<boolean> {
    return invoke(this, "has", [key]) as Promise<boolean>;
  }
  /** The keys, in insertion order. */
  keys(): Promise<K[]> {
    return invoke(this, "keys", []) as Promise<K[]>;
  }
  /** The values, in insertion order. */
  values(): Promise<V[]> {
    return invoke(this, "values", []) as Promise<V[]>;
  }
  /** The `[key, value]` pairs, in insertion order. */
  items(): Promise<[K, V][]> {
    return invoke(this, "items", []) as Promise<[K, V][]>;
  }
  /** Sets every pair of `other`: a Map, `[key, value]` pairs, a plain object or another dict proxy. */
  update(other: Map<K, V> | [K, V][] | Record<string, V> | DictProxy<K, V>): Promise<void> {
    return invoke(this, "update", [other]) as Promise<void>;
  }
  /** Removes `key` and returns its value; a missing key rejects with an error named `KeyError`. */
  pop(key: K): Promise<V>;
  /** Removes `key` and returns its value, or `dflt` when it is missing. */
  pop<D>(key: K, dflt: D): Promise<V | D>;
  pop(key: K, ...dflt: unknown[]): Promise<unknown> {
    return invoke(this, "pop", [key, ...dflt]);
  }
  /** The value of `key`; when it is missing, sets it to `dflt` first. */
  setdefault(key: K, dflt: V): Promise<V> {
    return invoke(this, "setdefault", [key, dflt]) as Promise<V>;
  }
  /** Removes everything. */
  clear(): Promise<void> {
    return invoke(this, "clear", []) as Promise<void>;
  }
  /** The number of keys (Python's `len(d)`). */
  len(): Promise<number> {
    return invoke(this, "len", []) as Promise<number>;
  }
  /** A copy of the whole dict. */
  copy(): Promise<Map<K, V>> {
    return invoke(this, "copy", []) as Promise<Map<K, V>>;
  }
}

/**
 * A proxy of a managed `list` (`manager.list()`), with Python's indexing: negative indices count
 * from the end, and an index out of range rejects with an error named `IndexError`.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const l = manager.list<number>([3, 1]);
 * await l.append(2);
 * await l.sort();
 * console.assert((await l.slice()).join() === "1,2,3" && (await l.get(-1)) === 3);
 * ```
 */
export class ListProxy<T = unknown> extends BaseProxy {
  /** The item at `i`. */
  get(i: number): Promise<T> {
    return invoke(this, "get", [i]) as Promise<T>;
  }
  /** Sets the item at `i`. */
  set(i: number, value: T): Promise<void> {
    return invoke(this, "set", [i, value]) as Promise<void>;
  }
  /** Appends `value`. */
  append(value: T): Promise<void> {
    return invoke(this, "append", [value]) as Promise<void>;
  }
  /** Appends every item of `values` (an array, or another list proxy). */
  extend(values: T[] | ListProxy<T>): Promise<void> {
    return invoke(this, "extend", [values]) as Promise<void>;
  }
  /** Inserts `value` before index `i`. */
  insert(i: number, value: T): Promise<void> {
    return invoke(this, "insert", [i, value]) as Promise<void>;
  }
  /** Removes and returns the item at `i` (default: the last). */
  pop(i?: number): Promise<T> {
    return invoke(this, "pop", i === undefined ? [] : [i]) as Promise<T>;
  }
  /** Removes the first item equal to `value` (`ValueError` if there is none). */
  remove(value: T): Promise<void> {
    return invoke(this, "remove", [value]) as Promise<void>;
  }
  /** The index of the first item equal to `value` in `[start, end)` (`ValueError` if none). */
  index(value: T, start?: number, end?: number): Promise<number> {
    const args: unknown[] = [value];
    if (start !== undefined || end !== undefined) args.push(start ?? 0);
    if (end !== undefined) args.push(end);
    return invoke(this, "index", args) as Promise<number>;
  }
  /** How many items equal `value`. */
  count(value: T): Promise<number> {
    return invoke(this, "count", [value]) as Promise<number>;
  }
  /** Sorts in place as Python does (numbers, strings, arrays element-wise; mixed kinds reject). */
  sort(options?: { reverse?: boolean }): Promise<void> {
    return invoke(this, "sort", options ? [{ reverse: options.reverse }] : []) as Promise<void>;
  }
  /** Reverses in place. */
  reverse(): Promise<void> {
    return invoke(this, "reverse", []) as Promise<void>;
  }
  /** The number of items. */
  len(): Promise<number> {
    return invoke(this, "len", []) as Promise<number>;
  }
  /** A copy of the items from `start` to `end` (as `Array.prototype.slice`; all by default). */
  slice(start?: number, end?: number): Promise<T[]> {
    const args = end !== undefined ? [start ?? 0, end] : start !== undefined ? [start] : [];
    return invoke(this, "slice", args) as Promise<T[]>;
  }
}

/**
 * A proxy of a managed `Namespace` (`manager.Namespace()`): named attributes, read and written
 * with `get`/`set` (Python's `ns.x` and `ns.x = v`).
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const ns = manager.Namespace<{ x: number }>({ x: 1 });
 * await ns.set("x", 2);
 * console.assert((await ns.get("x")) === 2);
 * ```
 */
export class NamespaceProxy<T extends Record<string, unknown> = Record<string, unknown>>
  extends BaseProxy {
  /** The attribute `name` (`undefined` when it is not set). */
  get<N extends keyof T & string>(name: N): Promise<T[N]> {
    return invoke(this, "get", [name]) as Promise<T[N]>;
  }
  /** Sets the attribute `name`. */
  set<N extends keyof T & string>(name: N, value: T[N]): Promise<void> {
    return invoke(this, "set", [name, value]) as Promise<void>;
  }
  /** Deletes the attribute `name`; true if it was set. */
  delete(name: keyof T & string): Promise<boolean> {
    return invoke(this, "delete", [name]) as Promise<boolean>;
  }
  /** Whether the attribute `name` is set. */
  has(name: keyof T & string): Promise<boolean> {
    return invoke(this, "has", [name]) as Promise<boolean>;
  }
  /** The attribute names. */
  keys(): Promise<(keyof T & string)[]> {
    return invoke(this, "keys", []) as Promise<(keyof T & string)[]>;
  }
  /** A copy of all attributes as a plain object. */
  toObject(): Promise<T> {
    return invoke(this, "toObject", []) as Promise<T>;
  }
}

/**
 * A proxy of a managed `Queue` (`manager.Queue()`, Python's `queue.Queue` in the server).
 * `get` rejects with `Empty` and `put` with `Full`, as a local queue's do.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const q = manager.Queue<string>();
 * await q.put("job");
 * console.assert((await q.get({ timeout: 1000 })) === "job");
 * ```
 */
export class QueueProxy<T = unknown> extends BaseProxy {
  /** Puts `item`, waiting for room when the queue is bounded and full (`Full` on timeout). */
  put(item: T, options?: ProxyWaitOptions): Promise<void> {
    return invoke(
      this,
      "put",
      [item, waitArgs(options, "QueueProxy.put")],
      undefined,
      options?.signal,
    ) as Promise<
      void
    >;
  }
  /** Gets an item, waiting for one (`Empty` on timeout or `block: false`). */
  get(options?: ProxyWaitOptions): Promise<T> {
    const a = waitArgs(options, "QueueProxy.get");
    return invoke(this, "get", a ? [a] : [], undefined, options?.signal) as Promise<T>;
  }
  /** `put(item, { block: false })`. */
  putNowait(item: T): Promise<void> {
    return invoke(this, "putNowait", [item]) as Promise<void>;
  }
  /** `get({ block: false })`. */
  getNowait(): Promise<T> {
    return invoke(this, "getNowait", []) as Promise<T>;
  }
  /** The number of items. */
  qsize(): Promise<number> {
    return invoke(this, "qsize", []) as Promise<number>;
  }
  /** Whether it is empty. */
  empty(): Promise<boolean> {
    return invoke(this, "empty", []) as Promise<boolean>;
  }
  /** Whether it is full. */
  full(): Promise<boolean> {
    return invoke(this, "full", []) as Promise<boolean>;
  }
}

/**
 * A proxy of a managed `JoinableQueue` (`manager.JoinableQueue()`).
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const q = manager.JoinableQueue<number>();
 * await q.put(1);
 * await q.get();
 * await q.taskDone();
 * await q.join(); // every item was taskDone()
 * ```
 */
export class JoinableQueueProxy<T = unknown> extends QueueProxy<T> {
  /** Marks one item as processed (`ValueError` when called more times than items were put). */
  taskDone(): Promise<void> {
    return invoke(this, "taskDone", []) as Promise<void>;
  }
  /** Resolves once every item put has been marked done. */
  join(options?: { signal?: AbortSignal }): Promise<void> {
    const { signal } = optionsOf(options, "JoinableQueueProxy.join", "join({ signal })");
    return invoke(this, "join", [], undefined, signal) as Promise<void>;
  }
}

/**
 * What a managed lock's successful `acquire()` resolves to: `release()` releases it in the
 * server; so does leaving a `using` / `await using` scope.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const lock = manager.Lock();
 * const held = await lock.acquire();
 * console.assert(held.ownerDied === false);
 * await held.release();
 * ```
 */
export interface ManagedAcquired extends Acquired, AsyncDisposable {
  /** Releases what was acquired (a call to the server). */
  release(): Promise<void>;
}

class ProxyHeld implements ManagedAcquired {
  readonly #release: () => Promise<void>;
  readonly ownerDied: boolean;
  constructor(release: () => Promise<void>, ownerDied: boolean) {
    this.#release = release;
    this.ownerDied = ownerDied;
  }
  release(): Promise<void> {
    return this.#release();
  }
  [Symbol.dispose](): void {
    // `using` cannot wait: the release is sent now (ahead of anything this process sends next).
    this.#release().catch((e) => console.error("denomp: releasing a managed lock failed:", e));
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.#release();
  }
}

function acquired(p: { release(): Promise<void> }, r: unknown): ManagedAcquired | false {
  if (r !== SERVED_ACQUIRED && r !== SERVED_OWNER_DIED) return false;
  return new ProxyHeld(() => p.release(), r === SERVED_OWNER_DIED);
}

/**
 * `acquire` through a proxy: of a lock owned by the calling thread of this client (Lock, RLock,
 * Condition: `ident` is the thread's), or of a semaphore's permit (no `ident`).
 */
function acquireCall(
  p: BaseProxy & { release(): Promise<void> },
  options: ProxyWaitOptions | undefined,
  ident?: number,
): Promise<ManagedAcquired | false> {
  const a = waitArgs(options, `${p.constructor.name}.acquire`);
  return invoke(p, "acquire", a ? [a] : [], ident, options?.signal).then((r) => acquired(p, r));
}

/** `wait(timeout?)` through a proxy (Condition: `ident` is the calling thread's; Event, Barrier). */
function waitCall<R>(
  p: BaseProxy,
  timeout: number | { timeout?: number; signal?: AbortSignal } | undefined,
  ident?: number,
): Promise<R> {
  const o = typeof timeout === "object" && timeout !== null ? timeout : { timeout };
  const args = o.timeout === undefined ? [] : [o.timeout];
  return invoke(p, "wait", args, ident, o.signal) as Promise<R>;
}

/**
 * A proxy of a managed `Lock` (`manager.Lock()`). If the client holding it dies or
 * disconnects, the server releases it and the next `acquire` resolves with `ownerDied: true`.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const lock = manager.Lock();
 * {
 *   await using _ = await lock.acquire();
 *   console.assert(await lock.locked());
 * }
 * ```
 */
export class LockProxy extends BaseProxy {
  /** Acquires it; resolves to a guard whose dispose releases it. */
  acquire(
    options?: ProxyWaitOptions & { block?: true; timeout?: undefined },
  ): Promise<ManagedAcquired>;
  /** Acquires it; `false` on a `block: false` miss or a timeout. */
  acquire(options: ProxyWaitOptions): Promise<ManagedAcquired | false>;
  acquire(options?: ProxyWaitOptions): Promise<ManagedAcquired | false> {
    return acquireCall(this, options, getIdent());
  }
  /** Releases it (`ValueError` if it is not held). */
  release(): Promise<void> {
    return invoke(this, "release", [], getIdent()) as Promise<void>;
  }
  /** Whether someone holds it. */
  locked(): Promise<boolean> {
    return invoke(this, "locked", []) as Promise<boolean>;
  }
}

/**
 * A proxy of a managed `RLock` (`manager.RLock()`): owned by one thread of one client, which may
 * acquire it again.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const lock = manager.RLock();
 * await lock.acquire();
 * await lock.acquire();
 * await lock.release();
 * await lock.release();
 * ```
 */
export class RLockProxy extends LockProxy {}

/**
 * A proxy of a managed `Semaphore` (`manager.Semaphore(n)`). Permits held by a client that dies
 * or disconnects are given back.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const sem = manager.Semaphore(2);
 * await sem.acquire();
 * console.assert((await sem.getValue()) === 1);
 * await sem.release();
 * ```
 */
export class SemaphoreProxy extends BaseProxy {
  /** Takes a permit, waiting for one. */
  acquire(
    options?: ProxyWaitOptions & { block?: true; timeout?: undefined },
  ): Promise<ManagedAcquired>;
  /** Takes a permit; `false` on a `block: false` miss or a timeout. */
  acquire(options: ProxyWaitOptions): Promise<ManagedAcquired | false>;
  acquire(options?: ProxyWaitOptions): Promise<ManagedAcquired | false> {
    return acquireCall(this, options);
  }
  /** Gives back `n` permits (default 1). */
  release(n?: number): Promise<void> {
    return invoke(this, "release", n === undefined ? [] : [n]) as Promise<void>;
  }
  /** The number of permits available. */
  getValue(): Promise<number> {
    return invoke(this, "getValue", []) as Promise<number>;
  }
  /** Whether no permit is available. */
  locked(): Promise<boolean> {
    return invoke(this, "locked", []) as Promise<boolean>;
  }
}

/**
 * A proxy of a managed `BoundedSemaphore`: releasing past the initial value rejects with
 * `ValueError`.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const sem = manager.BoundedSemaphore(1);
 * await sem.release().catch((e) => console.assert(e.name === "ValueError"));
 * ```
 */
export class BoundedSemaphoreProxy extends SemaphoreProxy {}

/**
 * A proxy of a managed `Condition` (`manager.Condition(lock?)`, by default over a new managed
 * RLock). `waitFor` runs its predicate here, in the caller, as Python's proxy does.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const cond = manager.Condition();
 * await cond.acquire();
 * await cond.notifyAll();
 * console.assert((await cond.wait(10)) === false); // nobody notified within 10 ms
 * await cond.release();
 * ```
 */
export class ConditionProxy extends BaseProxy {
  /** Acquires the underlying lock. */
  acquire(
    options?: ProxyWaitOptions & { block?: true; timeout?: undefined },
  ): Promise<ManagedAcquired>;
  /** Acquires the underlying lock; `false` on a miss or timeout. */
  acquire(options: ProxyWaitOptions): Promise<ManagedAcquired | false>;
  acquire(options?: ProxyWaitOptions): Promise<ManagedAcquired | false> {
    return acquireCall(this, options, getIdent());
  }
  /** Releases the underlying lock. */
  release(): Promise<void> {
    return invoke(this, "release", [], getIdent()) as Promise<void>;
  }
  /**
   * Releases the lock, waits until notified or `timeout` ms passed, re-acquires the lock;
   * true unless it timed out. Calling it without holding the lock rejects with `ValueError`.
   */
  wait(timeout?: number | { timeout?: number; signal?: AbortSignal }): Promise<boolean> {
    return waitCall(this, timeout, getIdent());
  }
  /** Waits until `predicate()` is truthy (checked here after each notification); returns its last value. */
  async waitFor<R>(predicate: () => R | Promise<R>, timeout?: number): Promise<R> {
    const end = timeout === undefined ? Infinity : performance.now() + timeout;
    let r = await predicate();
    while (!r) {
      const left = end - performance.now();
      if (left <= 0) break;
      await this.wait(left === Infinity ? undefined : left);
      r = await predicate();
    }
    return r;
  }
  /** Wakes up to `n` waiters (default 1). */
  notify(n?: number): Promise<void> {
    return invoke(this, "notify", n === undefined ? [] : [n], getIdent()) as Promise<void>;
  }
  /** Wakes every waiter. */
  notifyAll(): Promise<void> {
    return invoke(this, "notifyAll", [], getIdent()) as Promise<void>;
  }
}

/**
 * A proxy of a managed `Event` (`manager.Event()`).
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const ev = manager.Event();
 * await ev.set();
 * console.assert(await ev.wait(100));
 * ```
 */
export class EventProxy extends BaseProxy {
  /** Whether the flag is set. */
  isSet(): Promise<boolean> {
    return invoke(this, "isSet", []) as Promise<boolean>;
  }
  /** Sets the flag and wakes every waiter. */
  set(): Promise<void> {
    return invoke(this, "set", []) as Promise<void>;
  }
  /** Clears the flag. */
  clear(): Promise<void> {
    return invoke(this, "clear", []) as Promise<void>;
  }
  /** Waits until the flag is set or `timeout` ms passed; returns the flag. */
  wait(timeout?: number | { timeout?: number; signal?: AbortSignal }): Promise<boolean> {
    return waitCall(this, timeout);
  }
}

/**
 * A proxy of a managed `Barrier` (`manager.Barrier(parties, { timeout? })`). A party whose client
 * dies while waiting breaks the barrier (the others get `BrokenBarrierError`).
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const b = manager.Barrier(1);
 * console.assert((await b.wait()) === 0 && (await b.parties) === 1);
 * ```
 */
export class BarrierProxy extends BaseProxy {
  /** Waits for all parties; resolves with this party's arrival index (`BrokenBarrierError` if broken). */
  wait(timeout?: number | { timeout?: number; signal?: AbortSignal }): Promise<number> {
    return waitCall(this, timeout);
  }
  /** Breaks the waits in progress and makes the barrier usable again. */
  reset(): Promise<void> {
    return invoke(this, "reset", []) as Promise<void>;
  }
  /** Breaks the barrier. */
  abort(): Promise<void> {
    return invoke(this, "abort", []) as Promise<void>;
  }
  /** The number of parties (a call to the server). */
  get parties(): Promise<number> {
    return invoke(this, "parties", []) as Promise<number>;
  }
  /** How many parties are waiting (a call to the server). */
  get nWaiting(): Promise<number> {
    return invoke(this, "nWaiting", []) as Promise<number>;
  }
  /** Whether the barrier is broken (a call to the server). */
  get broken(): Promise<boolean> {
    return invoke(this, "broken", []) as Promise<boolean>;
  }
}

/**
 * A proxy of a managed `Value` (`manager.Value(typecode, value)`), checked by typecode as a
 * shared `Value` is.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const v = manager.Value("i", 1);
 * await v.set((await v.get()) + 1); // not atomic: hold a managed Lock around it when shared
 * ```
 */
export class ValueProxy<T extends Typecode = Typecode> extends BaseProxy {
  /** The value. */
  get(): Promise<CType<T>> {
    return invoke(this, "get", []) as Promise<CType<T>>;
  }
  /** Sets the value. */
  set(value: CInput<T>): Promise<void> {
    return invoke(this, "set", [value]) as Promise<void>;
  }
}

/**
 * A proxy of a managed `Array` (`manager.Array(typecode, values)`).
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const a = manager.Array("d", [1, 2]);
 * await a.set(0, 3.5);
 * console.assert((await a.slice()).join() === "3.5,2");
 * ```
 */
export class ArrayProxy<T extends Typecode = Typecode> extends BaseProxy {
  /** The number of elements. */
  len(): Promise<number> {
    return invoke(this, "len", []) as Promise<number>;
  }
  /** The element at `i` (negative counts from the end). */
  get(i: number): Promise<CType<T>> {
    return invoke(this, "get", [i]) as Promise<CType<T>>;
  }
  /** Sets the element at `i`. */
  set(i: number, value: CInput<T>): Promise<void> {
    return invoke(this, "set", [i, value]) as Promise<void>;
  }
  /** The elements from `start` to `end` (all by default). */
  slice(start?: number, end?: number): Promise<CType<T>[]> {
    const args = end !== undefined ? [start ?? 0, end] : start !== undefined ? [start] : [];
    return invoke(this, "slice", args) as Promise<CType<T>[]>;
  }
}

/** Each built-in type id's typed proxy (the proxy base makes these instead of an AutoProxy). */
const TYPED: [string, new () => BaseProxy][] = [
  ["dict", DictProxy],
  ["list", ListProxy],
  ["Namespace", NamespaceProxy],
  ["Queue", QueueProxy],
  ["JoinableQueue", JoinableQueueProxy],
  ["Lock", LockProxy],
  ["RLock", RLockProxy],
  ["Semaphore", SemaphoreProxy],
  ["BoundedSemaphore", BoundedSemaphoreProxy],
  ["Condition", ConditionProxy],
  ["Event", EventProxy],
  ["Barrier", BarrierProxy],
  ["Value", ValueProxy],
  ["Array", ArrayProxy],
];
for (const [typeid, cls] of TYPED) PROXY_CLASSES.set(typeid, cls);
