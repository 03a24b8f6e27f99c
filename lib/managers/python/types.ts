/**
 * Python's calling convention over the served objects: for each built-in typeid of
 * `SyncManager` (`dict`, `list`, `Queue`, `Lock`, ...), a table from Python's method names and
 * arguments (`__getitem__`, `put_nowait`, timeouts in seconds, keyword arguments) to the served
 * object's own (denomp's names, milliseconds), with Python's argument binding and errors.
 *
 * @module
 */

import { attributeError, PySlice } from "./pickling.ts";
import {
  ACQUIRED,
  OWNER_DIED,
  type ServedBarrier,
  type ServedCondition,
  type ServedEvent,
  type ServedLock,
  type ServedSemaphore,
} from "../served/sync.ts";
import type { ServedQueue } from "../served/queue.ts";
import type {
  ServedArray,
  ServedDict,
  ServedList,
  ServedNamespace,
  ServedValue,
} from "../served/containers.ts";
import { KeyError } from "../../core/lookup_errors.ts";
import { ValueError } from "../../core/errors.ts";
import { tuple } from "../../pickle/pickle.ts";

// ---------------------------------------------------------------------------------------------
// Python's calling convention

export type Kwds = Record<string, unknown>;

/**
 * Binds Python arguments (`args`, `kwds`) to the parameters `names` (`defaults` for the last
 * ones), as Python would; throws TypeError naming what does not fit.
 */
function bind(what: string, args: unknown[], kwds: Kwds, names: string[], defaults: unknown[]) {
  if (args.length > names.length) {
    throw new TypeError(`${what}() takes at most ${names.length} arguments (${args.length} given)`);
  }
  const out = names.map((_, i) => (i < args.length ? args[i] : UNSET));
  for (const [k, v] of Object.entries(kwds)) {
    const i = names.indexOf(k);
    if (i < 0) throw new TypeError(`${what}() got an unexpected keyword argument '${k}'`);
    if (out[i] !== UNSET) throw new TypeError(`${what}() got multiple values for argument '${k}'`);
    out[i] = v;
  }
  const first = names.length - defaults.length;
  return out.map((v, i) => {
    if (v !== UNSET) return v;
    if (i < first) throw new TypeError(`${what}() missing required argument: '${names[i]}'`);
    return defaults[i - first];
  });
}
const UNSET = Symbol("unset");

/** Python seconds (None: forever) to denomp's milliseconds (undefined: forever). */
function ms(seconds: unknown): number | undefined {
  if (seconds === null || seconds === undefined) return undefined;
  if (typeof seconds !== "number") {
    throw new TypeError(`timeout must be a number of seconds, not ${typeof seconds}`);
  }
  return seconds * 1000;
}

/** Python's `block`/`timeout` pair as a served wait's options. */
function waitOpts(block: unknown, timeout: unknown): { block?: boolean; timeout?: number } {
  return block === false ? { block: false } : { timeout: ms(timeout) };
}

/** A served acquire's result as Python's `True`/`False`. */
function asBool(r: unknown): boolean | Promise<boolean> {
  const f = (x: unknown) => x === ACQUIRED || x === OWNER_DIED;
  return r instanceof Promise ? r.then(f) : f(r);
}

/** A method result served as a new object (Python's `method_to_typeid`): sent as `#PROXY`. */
export class AsProxy {
  /** `obj` is to be served as `typeid`. */
  constructor(readonly typeid: string, readonly obj: object) {}
}

/** A served `Iterator` (what a dict's `__iter__` returns to a Python client). */
class PyIterator {
  #i = 0;
  constructor(readonly items: unknown[]) {}
  next(): unknown {
    if (this.#i >= this.items.length) {
      const e = new Error();
      e.name = "StopIteration";
      throw e;
    }
    return this.items[this.#i++];
  }
}

// deno-lint-ignore no-explicit-any
type Method<O = any> = (obj: O, args: unknown[], kwds: Kwds) => unknown;

/** How a Python client uses one built-in typeid of a denomp server. */
interface PyType {
  /** The method names its Python proxy may call (what `create` returns as `exposed`). */
  exposed: readonly string[];
  /** The arguments of lib/managers/served/managed.ts's `make` from Python's `(args, kwds)`. */
  create(args: unknown[], kwds: Kwds): unknown[];
  /** Python's methods, by name. */
  methods: Record<string, Method>;
  /** What `_getvalue()` returns (`'#GETVALUE'`). */
  value(obj: object): unknown;
}

function noArgs(what: string) {
  return (args: unknown[], kwds: Kwds) => bind(what, args, kwds, [], []);
}

/** `m` updated from a dict that arrived as a plain object or a Map (`d | other`). */
function merged(m: Map<unknown, unknown>, other: unknown): Map<unknown, unknown> {
  if (other instanceof Map) { for (const [k, v] of other) m.set(k, v); }
  else if (other !== null && typeof other === "object" && !Array.isArray(other)) {
    for (const [k, v] of Object.entries(other)) m.set(k, v);
  } else throw new TypeError("unsupported operand type(s) for |: a dict and a non-dict");
  return m;
}

/** A dict key as Python had it: an array key was a tuple (a list cannot be a key there). */
function asKey(k: unknown): unknown {
  return Array.isArray(k) ? tuple(...k.map(asKey)) : k;
}

const dictMethods: Record<string, Method<ServedDict>> = {
  __contains__: (d, [k]) => d.has(k),
  __delitem__: (d, [k]) => {
    if (!d.delete(k)) throw new KeyError(k);
  },
  __getitem__: (d, [k]) => {
    if (!d.has(k)) throw new KeyError(k);
    return d.get(k);
  },
  __iter__: (d) => new AsProxy("Iterator", new PyIterator(d.keys().map(asKey))),
  // Python 3.14's DictProxy also has `|`, `|=`, reversed() and fromkeys().
  __reversed__: (d) => new AsProxy("Iterator", new PyIterator(d.keys().map(asKey).reverse())),
  __or__: (d, [other]) => merged(d.copy(), other),
  __ror__: (d, [other]) => merged(merged(new Map(), other), d.copy()),
  __ior__: (d, [other]) => d.update(other),
  fromkeys: (_d, a, kw) => {
    const [keys, value] = bind("fromkeys", a, kw, ["iterable", "value"], [null]);
    if (!Array.isArray(keys)) throw new TypeError("fromkeys() takes a list or tuple of keys here");
    return new Map(keys.map((k) => [asKey(k), value]));
  },
  __len__: (d) => d.len(),
  __setitem__: (d, [k, v]) => d.set(k, v),
  clear: (d) => d.clear(),
  copy: (d) => d.copy(),
  get: (d, a, kw) => {
    const [k, dflt] = bind("get", a, kw, ["key", "default"], [null]);
    return d.has(k) ? d.get(k) : dflt;
  },
  items: (d) => d.items().map(([k, v]) => tuple(asKey(k), v)),
  keys: (d) => d.keys().map(asKey),
  pop: (d, a) => d.pop(a[0], ...a.slice(1, 2)),
  popitem: (d) => {
    const items = d.items();
    if (!items.length) throw new KeyError("popitem(): dictionary is empty");
    const [k, v] = items[items.length - 1];
    d.delete(k);
    return tuple(asKey(k), v);
  },
  setdefault: (d, a, kw) => {
    const [k, dflt] = bind("setdefault", a, kw, ["key", "default"], [null]);
    return d.setdefault(k, dflt);
  },
  update: (d, a, kw) => {
    if (a.length > 1) throw new TypeError(`update expected at most 1 argument, got ${a.length}`);
    if (a.length) d.update(a[0]);
    if (Object.keys(kw).length) d.update(kw);
  },
  values: (d) => d.values(),
};

/** A slice's bounds as `slice(start, end)`'s (served sequences take no step). */
function bounds(s: PySlice): [number | undefined, number | undefined] {
  if (s.step !== null && s.step !== 1) throw new ValueError("slices with a step are not supported");
  return [s.start ?? undefined, s.stop ?? undefined];
}

function repeat(xs: unknown[], n: unknown): unknown[] {
  if (typeof n !== "number" || !Number.isInteger(n)) {
    throw new TypeError(`can't multiply sequence by non-int of type '${typeof n}'`);
  }
  const out: unknown[] = [];
  for (let i = 0; i < n; i++) out.push(...xs);
  return out;
}

const listMethods: Record<string, Method<ServedList>> = {
  __add__: (l, [xs]) => {
    if (!Array.isArray(xs)) {
      throw new TypeError(`can only concatenate list (not "${typeof xs}") to list`);
    }
    return [...l.slice(), ...xs];
  },
  __contains__: (l, [v]) => l.count(v) > 0,
  __delitem__: (l, [i]) => {
    if (i instanceof PySlice) throw new TypeError("deleting a slice is not supported");
    l.pop(i as number);
  },
  __getitem__: (l, [i]) => (i instanceof PySlice ? l.slice(...bounds(i)) : l.get(i as number)),
  __len__: (l) => l.len(),
  __mul__: (l, [n]) => repeat(l.slice(), n),
  __rmul__: (l, [n]) => repeat(l.slice(), n),
  __imul__: (l, [n]) => {
    const xs = repeat(l.slice(), n);
    while (l.len()) l.pop();
    l.extend(xs);
  },
  __reversed__: (l) => l.slice().reverse(),
  __setitem__: (l, [i, v]) => {
    if (i instanceof PySlice) throw new TypeError("assigning a slice is not supported");
    l.set(i as number, v);
  },
  append: (l, [v]) => l.append(v),
  clear: (l) => { // Python 3.14's ListProxy has clear() and copy()
    while (l.len()) l.pop();
  },
  copy: (l) => l.slice(),
  count: (l, [v]) => l.count(v),
  extend: (l, [xs]) => l.extend(xs),
  index: (l, a) => l.index(a[0], (a[1] as number | undefined) ?? 0, a[2] as number | undefined),
  insert: (l, [i, v]) => l.insert(i as number, v),
  pop: (l, a) => l.pop((a[0] as number | undefined) ?? -1),
  remove: (l, [v]) => l.remove(v),
  reverse: (l) => l.reverse(),
  sort: (l, a, kw) => {
    const [key, reverse] = bind("sort", a, kw, ["key", "reverse"], [null, false]);
    if (key !== null) throw new TypeError("sort(key=...): a key function cannot be sent");
    l.sort({ reverse: reverse === true });
  },
};

const QUEUE = [
  "empty",
  "full",
  "get",
  "get_nowait",
  "join",
  "put",
  "put_nowait",
  "qsize",
  "task_done",
];
const queueMethods: Record<string, Method<ServedQueue>> = {
  empty: (q) => q.empty(),
  full: (q) => q.full(),
  get: (q, a, kw) => {
    const [block, timeout] = bind("get", a, kw, ["block", "timeout"], [true, null]);
    return q.get(waitOpts(block, timeout));
  },
  get_nowait: (q) => q.getNowait(),
  join: (q) => q.join(),
  put: (q, a, kw) => {
    const [item, block, timeout] = bind("put", a, kw, ["item", "block", "timeout"], [true, null]);
    return q.put(item, waitOpts(block, timeout));
  },
  put_nowait: (q, [item]) => q.putNowait(item),
  qsize: (q) => q.qsize(),
  task_done: (q) => q.taskDone(),
};

/** `acquire(blocking=True, timeout=-1)` of Python's Lock, RLock, Semaphore, Condition. */
const acquire: Method<ServedLock | ServedSemaphore | ServedCondition> = (l, a, kw) => {
  const [blocking, timeout] = bind("acquire", a, kw, ["blocking", "timeout"], [true, -1]);
  if (blocking === false && timeout !== -1) {
    throw new ValueError("can't specify a timeout for a non-blocking call");
  }
  const t = timeout === -1 || timeout === null ? undefined : ms(timeout);
  return asBool(l.acquire(blocking === false ? { block: false } : { timeout: t }));
};

const lockType = (reentrant: boolean): PyType => ({
  exposed: ["acquire", "release", "locked"],
  create: noArgs(reentrant ? "RLock" : "Lock"),
  methods: {
    acquire,
    release: (l: ServedLock) => l.release(),
    locked: (l: ServedLock) => l.locked(),
  },
  value: () => null,
});

const semaphoreType = (what: string): PyType => ({
  exposed: ["acquire", "release"],
  create: (a, kw) => bind(what, a, kw, ["value"], [1]),
  methods: {
    acquire,
    release: (s: ServedSemaphore, a, kw) => s.release(bind("release", a, kw, ["n"], [1])[0]),
  },
  value: () => null,
});

const queueType = (what: string): PyType => ({
  exposed: QUEUE,
  create: (a, kw) => bind(what, a, kw, ["maxsize"], [0]),
  methods: queueMethods,
  value: () => null,
});

/** The built-in typeids a Python client may use, by typeid (server side). */
export const PY_TYPES: ReadonlyMap<string, PyType> = new Map<string, PyType>([
  ["dict", {
    exposed: Object.keys(dictMethods),
    create: (a, kw) => {
      if (a.length > 1) throw new TypeError(`dict expected at most 1 argument, got ${a.length}`);
      const init = new Map<unknown, unknown>();
      const first = a[0];
      if (first instanceof Map) { for (const [k, v] of first) init.set(k, v); }
      else if (Array.isArray(first)) {
        for (const [k, v] of first as [unknown, unknown][]) init.set(k, v);
      } else if (first !== undefined && first !== null) {
        for (const [k, v] of Object.entries(first)) init.set(k, v);
      }
      for (const [k, v] of Object.entries(kw)) init.set(k, v);
      return [init];
    },
    methods: dictMethods,
    value: (d) => (d as ServedDict).copy(),
  }],
  ["list", {
    exposed: Object.keys(listMethods),
    create: (a, kw) => bind("list", a, kw, ["iterable"], [[]]),
    methods: listMethods,
    value: (l) => (l as ServedList).slice(),
  }],
  ["Namespace", {
    exposed: ["__getattribute__", "__setattr__", "__delattr__"],
    create: (a, kw) => {
      if (a.length) throw new TypeError("Namespace() takes keyword arguments only");
      return [kw];
    },
    methods: {
      __getattribute__: (ns: ServedNamespace, [name]) => {
        if (!ns.has(name as string)) {
          throw attributeError(`'Namespace' object has no attribute '${String(name)}'`);
        }
        return ns.get(name as string);
      },
      __setattr__: (ns: ServedNamespace, [name, v]) => ns.set(name as string, v),
      __delattr__: (ns: ServedNamespace, [name]) => {
        if (!ns.delete(name as string)) throw attributeError(String(name));
      },
    },
    value: (ns) => (ns as ServedNamespace).toObject(),
  }],
  ["Queue", queueType("Queue")],
  ["JoinableQueue", queueType("JoinableQueue")],
  ["Lock", lockType(false)],
  ["RLock", lockType(true)],
  ["Semaphore", semaphoreType("Semaphore")],
  ["BoundedSemaphore", semaphoreType("BoundedSemaphore")],
  ["Event", {
    exposed: ["is_set", "set", "clear", "wait"],
    create: noArgs("Event"),
    methods: {
      is_set: (e: ServedEvent) => e.isSet(),
      set: (e: ServedEvent) => e.set(),
      clear: (e: ServedEvent) => e.clear(),
      wait: (e: ServedEvent, a, kw) => e.wait(ms(bind("wait", a, kw, ["timeout"], [null])[0])),
    },
    value: () => null,
  }],
  ["Condition", {
    exposed: ["acquire", "release", "wait", "notify", "notify_all"],
    create: (a, kw) => {
      const [lock] = bind("Condition", a, kw, ["lock"], [null]);
      if (lock !== null) {
        throw new TypeError("a Condition over a given lock cannot be made from Python");
      }
      return [];
    },
    methods: {
      acquire,
      release: (c: ServedCondition) => c.release(),
      wait: (c: ServedCondition, a, kw) => c.wait(ms(bind("wait", a, kw, ["timeout"], [null])[0])),
      notify: (c: ServedCondition, a, kw) => c.notify(bind("notify", a, kw, ["n"], [1])[0]),
      notify_all: (c: ServedCondition) => c.notifyAll(),
    },
    value: () => null,
  }],
  ["Barrier", {
    exposed: ["__getattribute__", "wait", "abort", "reset"],
    create: (a, kw) => {
      const [parties, action, timeout] = bind("Barrier", a, kw, ["parties", "action", "timeout"], [
        null,
        null,
      ]);
      if (action !== null) throw new TypeError("a Barrier's action cannot be sent");
      return [parties, { timeout: ms(timeout) }];
    },
    methods: {
      __getattribute__: (b: ServedBarrier, [name]) => {
        if (name === "parties") return b.parties();
        if (name === "n_waiting") return b.nWaiting();
        if (name === "broken") return b.broken();
        throw attributeError(`'Barrier' object has no attribute '${String(name)}'`);
      },
      wait: (b: ServedBarrier, a, kw) => b.wait(ms(bind("wait", a, kw, ["timeout"], [null])[0])),
      abort: (b: ServedBarrier) => b.abort(),
      reset: (b: ServedBarrier) => b.reset(),
    },
    value: () => null,
  }],
  ["Value", {
    exposed: ["get", "set"],
    create: (a, kw) => bind("Value", a, kw, ["typecode", "value", "lock"], [0, true]).slice(0, 2),
    methods: {
      get: (v: ServedValue) => v.get(),
      set: (v: ServedValue, [x]) => v.set(x),
    },
    value: (v) => (v as ServedValue).get(),
  }],
  ["Array", {
    exposed: ["__len__", "__getitem__", "__setitem__"],
    create: (a, kw) => bind("Array", a, kw, ["typecode", "sequence", "lock"], [true]).slice(0, 2),
    methods: {
      __len__: (x: ServedArray) => x.len(),
      __getitem__: (x: ServedArray, [i]) =>
        i instanceof PySlice ? x.slice(...bounds(i)) : x.get(i as number),
      __setitem__: (x: ServedArray, [i, v]) => {
        if (i instanceof PySlice) throw new TypeError("assigning a slice is not supported");
        x.set(i as number, v);
      },
    },
    value: (x) => (x as ServedArray).slice(),
  }],
  ["Iterator", {
    exposed: ["__next__"],
    create: () => {
      throw new TypeError("an Iterator is only made by a dict's __iter__");
    },
    methods: { __next__: (it: PyIterator) => it.next() },
    value: (it) => (it as PyIterator).items,
  }],
]);
