/**
 * CPython's manager protocol (`multiprocessing/managers.py`), both ways: a denomp manager server
 * created with `serializer: "pickle"` serves Python's `BaseManager`/`SyncManager` clients, and a
 * denomp client with `serializer: "pickle"` uses a Python manager server's dict, list, Queue...
 *
 * The protocol, as CPython speaks it over a `multiprocessing.connection` socket (after the HMAC
 * challenge both ways, each message one pickle):
 *
 * - Every connection starts with one request `(None, funcname, args, kwds)`, answered
 *   `('#RETURN', result)` or `('#TRACEBACK', text)`: `'create'` (`(typeid, *args)` →
 *   `(ident, exposed)`, the object holding one reference), `'incref'`/`'decref'` (`(ident,)`),
 *   `'dummy'` (what `connect()` sends), `'number_of_objects'`, `'debug_info'`, `'get_methods'`,
 *   `'shutdown'`. Python's client opens a new connection for each, so references are counted per
 *   server, not per connection, as CPython counts them.
 * - `'accept_connection'` (`(name,)`) turns the connection into a proxy connection: then
 *   `(ident, methodname, args, kwds)` requests, one at a time, each answered `('#RETURN', value)`,
 *   `('#ERROR', exception)` (the method raised), `('#TRACEBACK', text)` (anything else), or
 *   `('#PROXY', (exposed, Token))` for a method whose result is served as a new object (a dict's
 *   `__iter__` gives an `Iterator`). A Python proxy keeps one such connection per thread.
 *
 * Python calls methods by Python's names (`__getitem__`, `put_nowait`, `is_set`) with Python's
 * arguments (timeouts in seconds, keyword arguments); the served objects of lib/managers/served/managed.ts have
 * denomp's names and milliseconds. {@link PY_TYPES} maps one to the other for each built-in
 * typeid, on the server side; {@link pyRequest} maps a denomp proxy's calls to Python's, on the
 * client side. A user-registered class is called by its own method names (Python's `AutoProxy`
 * gets them from `create`'s `exposed`), positional arguments only.
 *
 * Pickles are read by lib/pickle/pickle.ts, which executes nothing: the only globals it accepts here
 * are `multiprocessing.managers.Token`, `builtins.slice`, a Namespace's class and a fixed list of
 * exception classes, each rebuilt by hand ({@link PY_GLOBALS}).
 *
 * @module
 */

import type { Client } from "./served/managed.ts";
import {
  ACQUIRED,
  IndexError,
  KeyError,
  MISSED,
  OWNER_DIED,
  type ServedArray,
  type ServedBarrier,
  type ServedCondition,
  type ServedDict,
  type ServedEvent,
  type ServedList,
  type ServedLock,
  type ServedNamespace,
  type ServedQueue,
  type ServedSemaphore,
  type ServedValue,
} from "./served/managed.ts";
import type { Connection } from "../connection/connection.ts";
import { wrapSocket } from "../connection/socket.ts";
import { answerChallenge, deliverChallenge } from "../connection/auth.ts";
import type { Address } from "../connection/listener.ts";
import {
  BrokenBarrierError,
  Empty,
  EOFError,
  Full,
  RemoteError,
  SerializationError,
  ValueError,
} from "../core/errors.ts";
import { dumps, loads, type Reduced, tuple } from "../pickle/pickle.ts";

// ---------------------------------------------------------------------------------------------
// Pickling: the few Python classes the protocol carries

/** `multiprocessing.managers.Token`: what identifies a served object to a Python proxy. */
class Token {
  /** Makes a token. */
  constructor(public typeid = "", public address: unknown = null, public id = "") {}
  /** Python's `Token.__setstate__`: the state is `(typeid, address, id)`. */
  __setstate__(state: unknown): void {
    if (!Array.isArray(state) || state.length !== 3) {
      throw new SerializationError("Token", "its state is not (typeid, address, id)");
    }
    [this.typeid, this.address, this.id] = state as [string, unknown, string];
  }
}

/** Python's `slice(start, stop, step)` (a list's `l[1:3]` sends one). */
class PySlice {
  /** Makes a slice; `null` is Python's None. */
  constructor(
    readonly start: number | null = null,
    readonly stop: number | null = null,
    readonly step: number | null = null,
  ) {}
}

/** Exceptions that cross as themselves: Python's class, and how each is rebuilt here. */
const EXCEPTIONS: Record<string, (args: unknown[]) => Error> = {
  "builtins.KeyError": (a) => new KeyError(a[0]),
  "builtins.IndexError": (a) => new IndexError(String(a[0] ?? "")),
  "builtins.ValueError": (a) => new ValueError(String(a[0] ?? "")),
  "builtins.TypeError": (a) => new TypeError(String(a[0] ?? "")),
  "queue.Empty": () => new Empty(),
  "_queue.Empty": () => new Empty(), // CPython's C queue module: what queue.Empty really is
  "queue.Full": () => new Full(),
  "threading.BrokenBarrierError": () => new BrokenBarrierError(),
};
/** Other exception classes a Python server may raise: read as `RemoteError` of that name. */
const REMOTE_EXCEPTIONS = [
  "Exception",
  "AttributeError",
  "RuntimeError",
  "StopIteration",
  "LookupError",
  "NameError",
  "ZeroDivisionError",
  "ArithmeticError",
  "OverflowError",
  "AssertionError",
  "NotImplementedError",
  "OSError",
  "EOFError",
  "PermissionError",
  "TimeoutError",
  "UnicodeError",
];

/** Globals a manager's pickles may name, each rebuilt by hand (nothing is looked up). */
const PY_GLOBALS: Readonly<Record<string, (args: unknown[]) => unknown>> = {
  "multiprocessing.managers.Token": () => new Token(),
  "multiprocessing.managers.Namespace": () => ({}),
  // A dict's keys(), values() and items() views: CPython's managers send them as lists.
  "builtins.list": (a) => (Array.isArray(a[0]) ? [...a[0]] : []),
  "builtins.slice": (a) => new PySlice(...(a as [number | null, number | null, number | null])),
  ...EXCEPTIONS,
  ...Object.fromEntries(
    REMOTE_EXCEPTIONS.map((n) => [
      `builtins.${n}`,
      (a: unknown[]) => new RemoteError(n, a.length ? String(a[0]) : ""),
    ]),
  ),
};

/** The Python class of an error raised by a served method, when Python has one. */
function exceptionOf(e: Error): Reduced | undefined {
  switch (e.name) {
    case "KeyError":
      return { global: "builtins.KeyError", args: [(e as KeyError).key ?? e.message] };
    case "Empty":
      return { global: "queue.Empty", args: [] };
    case "Full":
      return { global: "queue.Full", args: [] };
    case "BrokenBarrierError":
      return { global: "threading.BrokenBarrierError", args: [] };
    case "RangeError":
      return { global: "builtins.ValueError", args: [e.message] };
    case "IndexError":
    case "ValueError":
    case "TypeError":
    case "AttributeError":
    case "StopIteration":
    case "RuntimeError":
      return { global: `builtins.${e.name}`, args: e.message ? [e.message] : [] };
  }
  return undefined;
}

function reducePy(o: object): Reduced | undefined {
  if (o instanceof Token) {
    return {
      global: "multiprocessing.managers.Token",
      args: [],
      newobj: true,
      state: tuple(o.typeid, o.address, o.id),
    };
  }
  if (o instanceof PySlice) return { global: "builtins.slice", args: [o.start, o.stop, o.step] };
  if (o instanceof Error) return exceptionOf(o);
  return undefined;
}

/** One message of the protocol, as Python's `ForkingPickler.dumps` would write it. */
function pyDumps(value: unknown): Uint8Array {
  return dumps(value, { reduce: reducePy });
}

/** One message of the protocol, read with the protocol's globals. */
function pyLoads(bytes: Uint8Array): unknown {
  return loads(bytes, { globals: PY_GLOBALS });
}

/** An error whose text is sent as `('#TRACEBACK', text)`: Python raises it as `RemoteError`. */
function traceback(e: unknown): string {
  if (e instanceof RemoteError) return `${e.remoteName}: ${e.message}`;
  if (e instanceof Error) return `${e.stack ?? `${e.name}: ${e.message}`}`;
  return String(e);
}

function attributeError(message: string): Error {
  const e = new Error(message);
  e.name = "AttributeError";
  return e;
}

// ---------------------------------------------------------------------------------------------
// Python's calling convention

type Kwds = Record<string, unknown>;

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
class AsProxy {
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
const PY_TYPES: ReadonlyMap<string, PyType> = new Map<string, PyType>([
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

// ---------------------------------------------------------------------------------------------
// Server side

/** A served object, as the server's table holds it (lib/managers/managers.ts's `Entry`). */
export interface PyEntry {
  typeid: string;
  obj: object | null;
  failed: [string, string, string] | null;
  exposed: ReadonlySet<string>;
  builtin: boolean;
}

/** What {@link servePython} needs of the manager's server (lib/managers/managers.ts's `Server`). */
export interface PyHost {
  /** For messages. */
  readonly name: string;
  /** Where it listens (what `#PROXY` tokens carry). */
  readonly address: Required<Address> | null;
  /** Registers a client (a Python proxy connection): calls that wait are tied to it. */
  pyClient(name: string): Client;
  /** The client's connection is gone: release what it held, abort its waits. */
  pyDrop(client: Client): void;
  /** Creates `typeid` with `makeArgs` (one reference, counted per server); its id and entry. */
  pyCreate(client: Client, typeid: string, makeArgs: unknown[]): [string, PyEntry];
  /** Serves `obj` as `typeid` (a `#PROXY` result), with one reference; its id. */
  pyAdopt(typeid: string, obj: object): string;
  /** The entry of `id`. */
  pyEntry(id: string): PyEntry | undefined;
  /** Adds or drops one reference (an unknown id throws, as CPython's KeyError). */
  pyRef(id: string, delta: 1 | -1): void;
  /** Runs `fn` as call `callId` of `client` (what the served objects' `caller()` sees). */
  pyRun<R>(client: Client, callId: number, fn: () => R): R;
  /** The number of served objects. */
  numberOfObjects(): number;
  /** Stops the server. */
  shutdown(): void;
}

const REQUESTS = new Set([
  "shutdown",
  "create",
  "accept_connection",
  "get_methods",
  "debug_info",
  "number_of_objects",
  "dummy",
  "incref",
  "decref",
]);

function request(m: unknown): [unknown, string, unknown[], Kwds] {
  if (!Array.isArray(m) || m.length !== 4) throw new ValueError("a request is not a 4-tuple");
  const [ident, name, args, kwds] = m;
  if (!Array.isArray(args)) throw new ValueError("a request's args are not a tuple");
  if (kwds === null || typeof kwds !== "object" || Array.isArray(kwds) || kwds instanceof Map) {
    throw new ValueError("a request's kwds are not a dict of names");
  }
  return [ident, String(name), args, kwds as Kwds];
}

function isKwdsEmpty(k: Kwds): boolean {
  for (const _ in k) return false;
  return true;
}

/** The exposed names of an entry as a Python proxy sees them. */
function exposedOf(e: PyEntry): readonly string[] {
  return (e.builtin && PY_TYPES.get(e.typeid)?.exposed) || [...e.exposed];
}

/**
 * Serves one authenticated connection of a Python client (the HMAC challenge has passed both
 * ways): its request, then, for `accept_connection`, its proxy's calls until it hangs up.
 */
export async function servePython(
  conn: Connection<unknown>,
  host: PyHost,
  peer: string,
): Promise<void> {
  const send = (m: unknown) => conn.sendBytes(pyDumps(m));
  let first: [unknown, string, unknown[], Kwds];
  try {
    first = request(pyLoads(await conn.recvBytes()));
    if (!REQUESTS.has(first[1])) throw new ValueError(`'${first[1]}' unrecognized`);
  } catch (e) {
    if (e instanceof EOFError) return;
    await send(tuple("#TRACEBACK", traceback(e))).catch(() => {});
    return;
  }
  const [, name, args, kwds] = first;
  if (name === "accept_connection") {
    await send(tuple("#RETURN", null));
    return serveCalls(conn, host, `${peer} (${String(args[0] ?? "")})`);
  }
  let reply: unknown;
  try {
    reply = tuple("#RETURN", control(host, name, args, kwds, peer));
  } catch (e) {
    reply = tuple("#TRACEBACK", traceback(e));
  }
  await send(reply);
}

/** The one-request connections: create, incref, decref... */
function control(host: PyHost, name: string, args: unknown[], kwds: Kwds, peer: string): unknown {
  const id = () => {
    if (typeof args[0] !== "string") throw new TypeError("an object id is a str");
    return args[0];
  };
  switch (name) {
    case "dummy":
      return null;
    case "create": {
      const typeid = args[0];
      if (typeof typeid !== "string") throw new TypeError("create() needs a typeid (a str)");
      const py = PY_TYPES.get(typeid);
      let makeArgs = args.slice(1);
      if (py) makeArgs = py.create(makeArgs, kwds);
      else if (!isKwdsEmpty(kwds)) {
        throw new TypeError(`'${typeid}' is a JavaScript class: it takes no keyword arguments`);
      }
      const client = host.pyClient(`${peer} (create)`);
      try {
        const [ident, e] = host.pyCreate(client, typeid, makeArgs);
        return tuple(ident, tuple(...exposedOf(e)));
      } finally {
        host.pyDrop(client);
      }
    }
    case "incref":
      host.pyRef(id(), 1);
      return null;
    case "decref":
      host.pyRef(id(), -1);
      return null;
    case "get_methods": {
      const t = args[0];
      const e = t instanceof Token ? host.pyEntry(t.id) : undefined;
      if (!e) throw new KeyError(t instanceof Token ? t.id : t);
      return tuple(...exposedOf(e));
    }
    case "number_of_objects":
      return host.numberOfObjects();
    case "debug_info":
      return `${host.name}: ${host.numberOfObjects()} objects`;
    case "shutdown":
      queueMicrotask(() => host.shutdown());
      return null;
  }
  throw new ValueError(`'${name}' unrecognized`);
}

/** A proxy connection: `(ident, methodname, args, kwds)` calls, one at a time. */
async function serveCalls(conn: Connection<unknown>, host: PyHost, name: string): Promise<void> {
  const client = host.pyClient(name);
  let callId = 0;
  try {
    for (;;) {
      let bytes: Uint8Array;
      try {
        bytes = await conn.recvBytes();
      } catch (e) {
        if (e instanceof EOFError) return;
        throw e;
      }
      let reply: unknown;
      try {
        reply = await call(host, client, ++callId, pyLoads(bytes), conn);
      } catch (e) {
        if (e === HUNG_UP) return;
        reply = tuple("#TRACEBACK", traceback(e));
      }
      let out: Uint8Array;
      try {
        out = pyDumps(reply);
      } catch (e) {
        out = pyDumps(tuple("#UNSERIALIZABLE", traceback(e)));
      }
      await conn.sendBytes(out);
    }
  } finally {
    host.pyDrop(client);
  }
}

const HUNG_UP = Symbol("hung up");

/** One call: its reply, or throws for a `#TRACEBACK`. */
async function call(
  host: PyHost,
  client: Client,
  callId: number,
  message: unknown,
  conn: Connection<unknown>,
): Promise<unknown> {
  const [ident, method, args, kwds] = request(message);
  if (typeof ident !== "string") throw new KeyError(ident);
  const e = host.pyEntry(ident);
  if (!e) throw new KeyError(ident);
  if (e.failed) throw new RemoteError(e.failed[0], e.failed[1]);
  const obj = e.obj!;
  const py = e.builtin ? PY_TYPES.get(e.typeid) : undefined;
  let fn: (() => unknown) | null = null;
  if (py) {
    const m = Object.hasOwn(py.methods, method) ? py.methods[method] : undefined;
    if (m) fn = () => m(obj, args, kwds);
  } else if (e.exposed.has(method)) {
    const f = (obj as Record<string, unknown>)[method];
    if (typeof f === "function") {
      if (!isKwdsEmpty(kwds)) {
        throw new TypeError(`${method}() of a JavaScript object takes no keyword arguments`);
      }
      fn = () => f.apply(obj, args);
    }
  }
  if (!fn) {
    // CPython's fallbacks for names that are not exposed.
    if (method === "#GETVALUE") return tuple("#RETURN", py ? py.value(obj) : obj);
    if (method === "__str__" || method === "__repr__") {
      return tuple("#RETURN", `<${e.typeid} object ${ident} of ${host.name}>`);
    }
    throw attributeError(
      `method '${method}' of '${e.typeid}' object is not in exposed=${
        JSON.stringify(exposedOf(e))
      }`,
    );
  }
  let result: unknown;
  try {
    result = host.pyRun(client, callId, fn);
    if (result instanceof Promise) {
      // A call that waits (a Queue's get): Python sends nothing more on this connection until the
      // reply, so anything readable now is its hang-up, which must end the wait (and release what
      // it held) rather than leave it to take an item nobody will receive.
      const hangup = conn.poll(null).then(() => HUNG_UP, () => HUNG_UP);
      const r = await Promise.race([result, hangup]);
      if (r === HUNG_UP) throw HUNG_UP;
      result = r;
    }
  } catch (err) {
    if (err === HUNG_UP) throw err;
    if (err instanceof Error && exceptionOf(err)) return tuple("#ERROR", err);
    throw err;
  }
  if (result instanceof AsProxy) {
    const id = host.pyAdopt(result.typeid, result.obj);
    const a = host.address;
    const token = new Token(result.typeid, a ? tuple(a.hostname, a.port) : null, id);
    return tuple("#PROXY", tuple(tuple(...(PY_TYPES.get(result.typeid)?.exposed ?? [])), token));
  }
  return tuple("#RETURN", result);
}

// ---------------------------------------------------------------------------------------------
// Client side: a denomp client of a Python manager server

/** A denomp proxy's call as the Python proxy's call: method, args, kwds, and the result's fix. */
export interface PyCall {
  method: string;
  args: unknown[];
  kwds?: Kwds;
  /** Turns Python's result into what the denomp proxy returns. */
  result?: (r: unknown) => unknown;
  /** Turns Python's exception into a result (e.g. `delete` of a missing key: false). */
  error?: (e: unknown) => unknown;
}

type Translate = (args: unknown[]) => PyCall;

const same = (method: string): Translate => (args) => ({ method, args: trim(args) });
/** Python's optional positional arguments: trailing undefined ones left out. */
function trim(args: unknown[]): unknown[] {
  let n = args.length;
  while (n > 0 && args[n - 1] === undefined) n--;
  return args.slice(0, n);
}
const falseOn = (name: string) => (e: unknown) => {
  if (e instanceof Error && (e.name === name || (e as RemoteError).remoteName === name)) {
    return false;
  }
  throw e;
};
const toMap = (r: unknown) =>
  r instanceof Map ? r : new Map(Object.entries((r ?? {}) as Record<string, unknown>));
const attrs = (o: unknown) => (o ?? {}) as Record<string, unknown>;
const seconds = (t: number | undefined) => (t === undefined ? null : t / 1000);

/** `{ block, timeout }` (ms) as Python's `(block, timeout)` (seconds). */
function pyWait(o: unknown): unknown[] {
  const w = (o ?? {}) as { block?: boolean; timeout?: number };
  return [w.block !== false, w.block === false ? null : seconds(w.timeout)];
}

const QUEUE_CALLS: Record<string, Translate> = {
  put: ([item, o]) => ({ method: "put", args: [item, ...pyWait(o)] }),
  get: ([o]) => ({ method: "get", args: pyWait(o) }),
  putNowait: same("put_nowait"),
  getNowait: same("get_nowait"),
  qsize: same("qsize"),
  empty: same("empty"),
  full: same("full"),
  taskDone: same("task_done"),
  join: same("join"),
};

/** Per typeid of a Python server: denomp's proxy methods as Python's calls (client side). */
const CALLS: Record<string, Record<string, Translate>> = {
  dict: {
    get: same("get"),
    set: ([k, v]) => ({ method: "__setitem__", args: [k, v] }),
    delete: ([k]) => ({
      method: "__delitem__",
      args: [k],
      result: () => true,
      error: falseOn("KeyError"),
    }),
    has: ([k]) => ({ method: "__contains__", args: [k] }),
    keys: same("keys"),
    values: same("values"),
    items: same("items"),
    update: same("update"),
    pop: same("pop"),
    setdefault: same("setdefault"),
    clear: same("clear"),
    len: () => ({ method: "__len__", args: [] }),
    copy: () => ({ method: "copy", args: [], result: toMap }),
  },
  list: {
    get: ([i]) => ({ method: "__getitem__", args: [i] }),
    set: ([i, v]) => ({ method: "__setitem__", args: [i, v] }),
    append: same("append"),
    extend: same("extend"),
    insert: same("insert"),
    pop: same("pop"),
    remove: same("remove"),
    index: same("index"),
    count: same("count"),
    sort: ([o]) => ({
      method: "sort",
      args: [],
      kwds: { reverse: (o as { reverse?: boolean } | undefined)?.reverse === true },
    }),
    reverse: same("reverse"),
    len: () => ({ method: "__len__", args: [] }),
    slice: ([s, e]) => ({
      method: "__getitem__",
      args: [new PySlice((s as number | undefined) ?? null, (e as number | undefined) ?? null)],
    }),
  },
  Queue: QUEUE_CALLS,
  JoinableQueue: QUEUE_CALLS,
  Event: {
    isSet: same("is_set"),
    set: same("set"),
    clear: same("clear"),
    wait: ([t]) => ({ method: "wait", args: [seconds(t as number | undefined)] }),
  },
  Lock: {
    acquire: ([o]) => {
      const w = (o ?? {}) as { block?: boolean; timeout?: number };
      return {
        method: "acquire",
        args: w.block === false ? [false] : [true, w.timeout === undefined ? -1 : w.timeout / 1000],
        result: (r) => (r === true ? ACQUIRED : MISSED),
      };
    },
    release: same("release"),
  },
  Namespace: {
    get: ([n]) => ({
      method: "__getattribute__",
      args: [n],
      error: (e) => {
        if (falseOn("AttributeError")(e) === false) return undefined;
      },
    }),
    set: ([n, v]) => ({ method: "__setattr__", args: [n, v] }),
    // The rest read the whole Namespace (`_getvalue()`: its attributes, as a plain object).
    has: ([n]) => ({
      method: "#GETVALUE",
      args: [],
      result: (o) => Object.hasOwn(attrs(o), n as string),
    }),
    keys: () => ({ method: "#GETVALUE", args: [], result: (o) => Object.keys(attrs(o)) }),
    toObject: () => ({ method: "#GETVALUE", args: [], result: attrs }),
    delete: ([n]) => ({
      method: "__delattr__",
      args: [n],
      result: () => true,
      error: falseOn("AttributeError"),
    }),
  },
};

/** How a denomp proxy's call `method(...args)` on a `typeid` object goes to a Python server. */
export function pyRequest(typeid: string, method: string, args: unknown[]): PyCall {
  const t = Object.hasOwn(CALLS, typeid) ? CALLS[typeid] : undefined;
  if (!t) return { method, args }; // a user's class: its own method names
  const f = Object.hasOwn(t, method) ? t[method] : undefined;
  if (!f) {
    throw new TypeError(
      `'${method}' of a managed ${typeid} is not available from a Python manager server`,
    );
  }
  return f(args);
}

/** Python's `create` arguments of a denomp factory's (`manager.Namespace(init)` → keywords). */
export function pyCreateArgs(typeid: string, args: unknown[]): [unknown[], Kwds] {
  if (typeid === "Namespace") return [[], (args[0] ?? {}) as Kwds];
  return [trim(args), {}];
}

/** A Python error reply as the error a denomp proxy rejects with. */
function errorOf(kind: unknown, result: unknown): Error {
  if (kind === "#ERROR" && result instanceof Error) return result;
  if (kind === "#ERROR") return new RemoteError("Exception", String(result));
  const text = String(result);
  // The traceback's last line is "Name: message".
  const last = text.trimEnd().split("\n").at(-1) ?? "";
  const m = /^([\w.]+): ?(.*)$/.exec(last);
  return new RemoteError(m ? m[1] : "Error", m ? m[2] : last, text);
}

/** Idle proxy connections a {@link PyManagerClient} keeps for the next calls. */
const MAX_IDLE = 4;

/** Options of {@link PyManagerClient}. */
export interface PyClientOptions {
  maxMessageSize: number;
  handshakeTimeout: number;
}

/**
 * A client of a Python manager server. Python's server answers one request at a time per
 * connection (a thread each), so calls borrow an idle proxy connection (`accept_connection`)
 * or open one, and return it after the reply: calls that wait (a Queue's get) do not hold up
 * the others. Create, incref and decref each open a connection of their own, as Python's do.
 */
export class PyManagerClient {
  #idle: Connection<unknown>[] = [];
  #open = new Set<Connection<unknown>>();
  #closed = false;

  constructor(
    readonly address: Required<Address>,
    readonly authkey: Uint8Array,
    readonly options: PyClientOptions,
  ) {}

  get closed(): boolean {
    return this.#closed;
  }

  async #connect(): Promise<Connection<unknown>> {
    if (this.#closed) throw new EOFError("the connection to the manager is closed");
    const sock = await Deno.connect({ hostname: this.address.hostname, port: this.address.port });
    const conn = wrapSocket(sock, { maxMessageSize: this.options.maxMessageSize });
    this.#open.add(conn);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        (async () => {
          await answerChallenge(conn, this.authkey);
          await deliverChallenge(conn, this.authkey);
        })(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            conn.close();
            reject(
              new EOFError(
                `the handshake did not finish within ${this.options.handshakeTimeout} ms`,
              ),
            );
          }, this.options.handshakeTimeout);
        }),
      ]);
    } catch (e) {
      this.#drop(conn);
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return conn;
  }

  #drop(conn: Connection<unknown>): void {
    conn.close();
    this.#open.delete(conn);
  }

  async #exchange(conn: Connection<unknown>, message: unknown): Promise<[unknown, unknown]> {
    await conn.sendBytes(pyDumps(message));
    const reply = pyLoads(await conn.recvBytes());
    if (!Array.isArray(reply) || reply.length !== 2 || typeof reply[0] !== "string") {
      throw new ValueError("the Python manager's reply is not a (kind, result) pair");
    }
    return reply as [unknown, unknown];
  }

  /** One request on a connection of its own (CPython's `dispatch`): its `#RETURN` value. */
  async dispatch(name: string, args: unknown[], kwds: Kwds = {}): Promise<unknown> {
    const conn = await this.#connect();
    try {
      const [kind, result] = await this.#exchange(conn, tuple(null, name, tuple(...args), kwds));
      if (kind === "#RETURN") return result;
      throw errorOf(kind, result);
    } finally {
      this.#drop(conn);
    }
  }

  /** A method call on the object `ident`, on a proxy connection. */
  async call(ident: string, c: PyCall, signal?: AbortSignal): Promise<unknown> {
    signal?.throwIfAborted();
    let conn = this.#idle.pop();
    if (!conn) {
      conn = await this.#connect();
      try {
        const [kind, r] = await this.#exchange(
          conn,
          tuple(null, "accept_connection", tuple("denomp"), {}),
        );
        if (kind !== "#RETURN") throw errorOf(kind, r);
      } catch (e) {
        this.#drop(conn);
        throw e;
      }
    }
    const busy = conn;
    // A cancelled call closes its connection: the Python server's thread ends with it (what it
    // was waiting for may still happen there, as when a Python client is killed mid-call).
    const onAbort = () => this.#drop(busy);
    signal?.addEventListener("abort", onAbort, { once: true });
    let reply: [unknown, unknown];
    try {
      reply = await this.#exchange(busy, tuple(ident, c.method, tuple(...c.args), c.kwds ?? {}));
    } catch (e) {
      this.#drop(busy);
      if (signal?.aborted) throw signal.reason;
      if (this.#closed) throw new EOFError("the connection to the manager was closed");
      if (e instanceof EOFError) {
        throw new EOFError("the Python manager's server closed the connection");
      }
      throw e;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    // Each idle connection is a thread in the Python server: keep a few, not every one a burst
    // of concurrent calls opened.
    if (this.#closed || this.#idle.length >= MAX_IDLE) this.#drop(busy);
    else this.#idle.push(busy);
    const [kind, result] = reply;
    if (kind === "#RETURN") return c.result ? c.result(result) : result;
    if (kind === "#PROXY") {
      throw new TypeError(`'${c.method}' returns a managed object: not supported from denomp`);
    }
    const err = errorOf(kind, result);
    if (c.error) return c.error(err);
    throw err;
  }

  /** Closes every connection; pending calls reject with `EOFError`. */
  close(): void {
    this.#closed = true;
    for (const c of this.#open) c.close();
    this.#open.clear();
    this.#idle = [];
  }
}
