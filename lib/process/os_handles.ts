/**
 * Isolation "process": the handles a program passes to an isolated child (a `deno` OS process).
 * Shared memory does not cross OS processes, so a handle crosses as a reference to the object
 * its parent owns: the parent's encoder puts a {@link HandleRef} (kind, number, the socket of
 * the server) in the handle's place, and the child rebuilds it as a proxy with the handle's API,
 * whose calls go over a socket to a thread of the parent that holds the real objects and runs
 * the calls on them (`os_agent.ts`; the child's side of the socket is `os_link.ts`).
 *
 * This module is both sides' one description of what crosses: which kinds, and for each, which
 * methods return a promise, which are their blocking `Sync` twins, which return at once, and
 * which properties are read (and written) remotely ({@link API}; the kinds of other folders,
 * mailboxes, actor refs and manager proxies, with what their proxies add, are in `os_kinds.ts`).
 * The server checks every call against it; the proxies are made from it. It also registers the one handle kind that carries
 * the references ({@link KIND}): in the child it rebuilds a proxy, in the server the real object.
 *
 * What cannot cross (a `SharedMemory` block: its bytes are this program's memory) is refused
 * when the child starts, naming the handle and why.
 *
 * @module
 */

import { registerHandle } from "../core/reduction.ts";
import { ProcessError, ValueError } from "../core/errors.ts";
import { call, callSync, getItem, getItems, itemsAhead, post } from "./os_link.ts";
import { MORE_API, PROXY_EXTRAS } from "./os_kinds.ts";

/** The name of the handle kind of a reference to an object served by an isolated child's parent. */
export const KIND = "IsolatedHandle";

/** What a kind of handle offers an isolated child. */
interface Api {
  /** Methods that return a promise (and, when `twins` says so, their blocking `...Sync` twins). */
  readonly async: readonly string[];
  /** The async methods that have a blocking `...Sync` twin. */
  readonly twins: readonly string[];
  /** Methods that return at once (run remotely while the caller blocks). */
  readonly now: readonly string[];
  /** Properties read remotely. */
  readonly get: readonly string[];
  /** Properties written remotely. */
  readonly set: readonly string[];
}

function api(a: Partial<Api>, base?: Api): Api {
  const join = (k: keyof Api) => [...(base?.[k] ?? []), ...(a[k] ?? [])];
  return {
    async: join("async"),
    twins: join("twins"),
    now: join("now"),
    get: join("get"),
    set: join("set"),
  };
}

const QUEUE = api({
  async: ["put", "get", "putMany", "getMany", "joinThread"],
  twins: ["put", "get", "putMany", "getMany"],
  now: ["putNowait", "getNowait", "qsize", "empty", "full", "close", "cancelJoinThread"],
  get: ["maxsize", "closed"],
});
const JOINABLE = api({ async: ["join"], twins: ["join"], now: ["taskDone"] }, QUEUE);
const LOCK = api({ async: ["acquire"], twins: ["acquire"], now: ["release", "locked"] });

/**
 * The kinds that cross to an isolated child, and their API there.
 *
 * @example
 * ```ts
 * import { API } from "./os_handles.ts";
 * console.assert(API.Queue.twins.includes("get")); // getSync
 * ```
 */
export const API: Readonly<Record<string, Api>> = {
  Queue: QUEUE,
  SimpleQueue: QUEUE,
  JoinableQueue: JOINABLE,
  LifoQueue: JOINABLE,
  PriorityQueue: JOINABLE,
  Lock: LOCK,
  RLock: LOCK,
  Semaphore: api({ now: ["getValue"] }, LOCK),
  BoundedSemaphore: api({ now: ["getValue"] }, LOCK),
  Event: api({ async: ["wait"], twins: ["wait"], now: ["isSet", "set", "clear"] }),
  Condition: api({ async: ["wait"], twins: ["wait"], now: ["notify", "notifyAll"] }, LOCK),
  Barrier: api({
    async: ["wait"],
    twins: ["wait"],
    now: ["reset", "abort"],
    get: ["broken", "parties", "nWaiting"],
  }),
  Value: api({ now: ["getLock"], get: ["value", "typecode"], set: ["value"] }),
  RawValue: api({ get: ["value", "typecode"], set: ["value"] }),
  Array: api({ now: ["get", "set", "slice", "getLock"], get: ["length", "typecode"] }),
  RawArray: api({ now: ["get", "set", "slice"], get: ["length", "typecode"] }),
  Connection: api({
    async: ["send", "recv", "sendBytes", "recvBytes", "poll"],
    twins: ["send", "recv", "sendBytes", "recvBytes", "poll"],
    now: ["close"],
    get: ["closed", "readable", "writable"],
  }),
  ...MORE_API, // Mailbox, ActorRef, manager proxies (os_kinds.ts)
};

/** Why a kind that is not in {@link API} cannot cross. */
const REFUSED: Record<string, string> = {
  SharedMemory:
    'its bytes are this program\'s memory, which another OS process cannot map (send a Value, an Array or a Queue, or use isolation "thread")',
  ShareableList:
    'it lives in a SharedMemory block, whose bytes another OS process cannot map (use isolation "thread")',
};

/**
 * The reason a handle of `kind` cannot be sent to an isolated child (for the codec's `handles`
 * option), or true when it can (it is then swapped for a {@link HandleRef} first).
 *
 * @example
 * ```ts
 * import { crossing } from "./os_handles.ts";
 * console.assert(/SharedMemory cannot be sent/.test(String(crossing("SharedMemory"))));
 * ```
 */
export function crossing(kind: string): true | string {
  if (kind === KIND || kind in API) return true;
  return `a ${kind} cannot be sent to a child with isolation "process": ${
    REFUSED[kind] ?? "this kind of handle is not served across OS processes"
  }`;
}

/**
 * A reference to an object its parent serves to an isolated child: what crosses in a handle's
 * place. In the child, the subclass made for its kind is the proxy (see {@link proxyClass}).
 *
 * @example
 * ```ts
 * import { HandleRef } from "./os_handles.ts";
 * console.assert(String(new HandleRef("Lock", 0, "/tmp/s")) === "<Lock served by the parent>");
 * ```
 */
export class HandleRef {
  /** Makes a reference to object `id` of kind `kind`, served at the Unix socket `path`. */
  constructor(readonly kind: string, readonly id: number, readonly path: string) {}

  /** A short description. */
  toString(): string {
    return `<${this.kind} served by the parent>`;
  }
}

/**
 * The objects one server serves, by number: a parent's encoder adds each handle it swaps for a
 * reference (the same handle twice, one number), and the server rebuilds references from it.
 *
 * @example
 * ```ts
 * import { HandleTable } from "./os_handles.ts";
 * const t = new HandleTable("/tmp/s");
 * const o = {};
 * console.assert(t.refOf(o, "Lock") === t.refOf(o, "Lock") && t.objects.length === 1);
 * ```
 */
export class HandleTable {
  /** The objects, by number. */
  readonly objects: object[];
  /** Their kinds. */
  readonly kinds: string[];
  #refs = new Map<object, HandleRef>();

  #path: string | (() => string);

  /**
   * A table for the server at `path` (or where `path()` says, asked when the first handle is
   * numbered), holding `objects` of `kinds` (numbered in order).
   */
  constructor(path: string | (() => string), objects: object[] = [], kinds: string[] = []) {
    this.#path = path;
    this.objects = objects;
    this.kinds = kinds;
    objects.forEach((o, i) => this.#refs.set(o, new HandleRef(kinds[i], i, this.path)));
  }

  /** The Unix socket of the server. */
  get path(): string {
    if (typeof this.#path === "function") this.#path = this.#path();
    return this.#path;
  }

  /** The reference that stands for `obj` (of kind `kind`), numbering it on first sight. */
  refOf(obj: object, kind: string): HandleRef {
    let r = this.#refs.get(obj);
    if (!r) {
      r = new HandleRef(kind, this.objects.push(obj) - 1, this.path);
      this.kinds.push(kind);
      this.#refs.set(obj, r);
    }
    return r;
  }

  /** The codec options of a channel to the child: handles swapped for references, the rest refused. */
  codec(): {
    handles: (kind: string) => boolean | string;
    swap: (obj: object, kind: string) => object | undefined;
  } {
    return {
      handles: crossing,
      swap: (obj, kind) => kind in API ? this.refOf(obj, kind) : undefined,
    };
  }
}

/** Set in the server's thread: references rebuild as the objects it serves. */
let served: HandleTable | undefined;

/**
 * Makes this thread the server of `table`: references it receives rebuild as the real objects.
 *
 * @example
 * ```ts ignore
 * serveTable(new HandleTable(path, objects));
 * ```
 */
export function serveTable(table: HandleTable): void {
  served = table;
}

// ---------------------------------------------------------------------------------------------
// Proxies (the child's side)

/** What a successful remote `acquire()` resolves to, as a local one does. */
class RemoteHeld implements Disposable {
  constructor(readonly ownerDied: boolean, readonly release: () => void) {}
  [Symbol.dispose](): void {
    this.release();
  }
}

/** The calls a proxy makes: through the link of its server's socket. */
type ProxyBase = HandleRef & { ownerDied: boolean };

function remote(this: ProxyBase, method: string, args: unknown[]): Promise<unknown> {
  return call(this.path, this.id, method, args);
}

/** Turns a remote acquire's result (`false` or whether its owner died) into the local shape. */
function held(p: ProxyBase, r: unknown): RemoteHeld | false {
  if (r === false) return false;
  p.ownerDied = r === "ownerDied";
  return new RemoteHeld(p.ownerDied, () => void callSync(p.path, p.id, "release", []));
}

const classes = new Map<string, new (kind: string, id: number, path: string) => HandleRef>();

/**
 * The kinds whose `get`s a child takes in batches (os_link.ts): FIFO queues without
 * `taskDone`. A LIFO or priority queue's next item may be one put after the batch was sent, and
 * a `JoinableQueue` keeps its own copies of the items a consumer holds.
 */
const BATCHED = new Set(["Queue", "SimpleQueue"]);

/**
 * The proxy class of `kind`: a {@link HandleRef} with the kind's API (see {@link API}).
 *
 * @example
 * ```ts
 * import { proxyClass } from "./os_handles.ts";
 * const Q = proxyClass("Queue");
 * console.assert(typeof Q.prototype.getSync === "function");
 * ```
 */
export function proxyClass(
  kind: string,
): new (kind: string, id: number, path: string) => HandleRef {
  const known = classes.get(kind);
  if (known) return known;
  const a = API[kind];
  if (!a) throw new ProcessError(`denomp: no proxy for a handle of kind ${kind}`);
  const C = class extends HandleRef {
    ownerDied = false;
  };
  Object.defineProperty(C, "name", { value: kind });
  const proto = C.prototype as unknown as Record<string | symbol, unknown>;
  for (const m of a.async) {
    proto[m] = m === "acquire"
      ? async function (this: ProxyBase, ...args: unknown[]) {
        return held(this, await remote.call(this, m, args));
      }
      : function (this: ProxyBase, ...args: unknown[]) {
        return remote.call(this, m, args);
      };
  }
  for (const m of a.twins) {
    proto[`${m}Sync`] = m === "acquire"
      ? function (this: ProxyBase, ...args: unknown[]) {
        return held(this, callSync(this.path, this.id, m, args));
      }
      : function (this: ProxyBase, ...args: unknown[]) {
        return callSync(this.path, this.id, m, args);
      };
  }
  for (const m of a.now) {
    proto[m] = function (this: ProxyBase, ...args: unknown[]) {
      return callSync(this.path, this.id, m, args);
    };
  }
  for (const p of new Set([...a.get, ...a.set])) {
    Object.defineProperty(proto, p, {
      get(this: ProxyBase) {
        if (!a.get.includes(p)) throw new ValueError(`${kind}.${p} cannot be read here`);
        return callSync(this.path, this.id, `.${p}`, []);
      },
      set: a.set.includes(p)
        ? function (this: ProxyBase, v: unknown) {
          callSync(this.path, this.id, `=${p}`, [v]);
        }
        : undefined,
    });
  }
  if (kind.endsWith("Queue")) {
    // A put on an unbounded queue cannot wait: it goes without waiting for its reply, as
    // Python's feeder thread sends it (a failure is thrown by the next call on the queue).
    const bounded = new WeakMap<object, boolean>();
    const isBounded = (q: ProxyBase) => {
      let b = bounded.get(q);
      if (b === undefined) {
        bounded.set(q, b = (callSync(q.path, q.id, ".maxsize", []) as number) > 0);
      }
      return b;
    };
    const [put, putSync, putNowait] = [proto.put, proto.putSync, proto.putNowait] as ((
      this: ProxyBase,
      ...a: unknown[]
    ) => unknown)[];
    proto.put = function (this: ProxyBase, ...args: unknown[]) {
      if (isBounded(this)) return put.apply(this, args);
      try {
        post(this.path, this.id, "put", args);
        return Promise.resolve();
      } catch (e) {
        return Promise.reject(e);
      }
    };
    proto.putSync = function (this: ProxyBase, ...args: unknown[]) {
      if (isBounded(this)) return putSync.apply(this, args);
      post(this.path, this.id, "put", args);
    };
    proto.putNowait = function (this: ProxyBase, ...args: unknown[]) {
      if (isBounded(this)) return putNowait.apply(this, args);
      post(this.path, this.id, "putNowait", args);
    };
    if (BATCHED.has(kind)) {
      // Gets take the items the server sent ahead first (os_link.ts); the sizes count them.
      proto.get = function (this: ProxyBase, ...args: unknown[]) {
        return getItem(this.path, this.id, "get", args, false);
      };
      proto.getSync = function (this: ProxyBase, ...args: unknown[]) {
        return getItem(this.path, this.id, "get", args, true);
      };
      proto.getNowait = function (this: ProxyBase) {
        return getItem(this.path, this.id, "getNowait", [], true);
      };
      proto.getMany = function (this: ProxyBase, ...args: unknown[]) {
        return getItems(this.path, this.id, args, false);
      };
      proto.getManySync = function (this: ProxyBase, ...args: unknown[]) {
        return getItems(this.path, this.id, args, true);
      };
      proto.qsize = function (this: ProxyBase) {
        return (callSync(this.path, this.id, "qsize", []) as number) +
          itemsAhead(this.path, this.id);
      };
      proto.empty = function (this: ProxyBase) {
        return (this as unknown as { qsize(): number }).qsize() === 0;
      };
    }
    // `for await` ends once the queue is closed and drained, as it does on the queue itself.
    proto[Symbol.asyncIterator] = async function* (this: ProxyBase) {
      for (;;) {
        try {
          yield await (this as unknown as { get(): Promise<unknown> }).get();
        } catch (e) {
          if (e instanceof ValueError && callSync(this.path, this.id, ".closed", [])) return;
          throw e;
        }
      }
    };
  }
  if (kind === "Condition") {
    // The predicate is a function: it runs here, between remote waits.
    proto.waitFor = async function (
      this: ProxyBase & { wait(t?: number): Promise<boolean> },
      predicate: () => unknown,
      timeout?: number,
    ) {
      const end = timeout === undefined ? Infinity : performance.now() + timeout;
      for (let r = predicate();; r = predicate()) {
        if (r) return r;
        const left = end - performance.now();
        if (left <= 0) return r;
        await this.wait(left === Infinity ? undefined : left);
      }
    };
  }
  if (kind === "Array" || kind === "RawArray") {
    proto[Symbol.iterator] = function (this: { slice(): unknown[] }) {
      return this.slice()[Symbol.iterator]();
    };
  }
  PROXY_EXTRAS[kind]?.proto?.(proto);
  classes.set(kind, C);
  return C;
}

registerHandle<HandleRef, [string, number, string]>({
  name: KIND,
  module: import.meta.url,
  cls: HandleRef,
  reduce: (r) => [r.kind, r.id, r.path],
  rebuild([kind, id, path]) {
    if (!served) {
      const p = new (proxyClass(kind))(kind, id, path);
      return (PROXY_EXTRAS[kind]?.wrap?.(p) ?? p) as HandleRef;
    }
    const obj = served.objects[id];
    if (path !== served.path || obj === undefined) {
      throw new ProcessError(`denomp: no ${kind} number ${id} is served here`);
    }
    return obj as HandleRef; // the real object: the kind only says how it crossed
  },
});
