/**
 * The pickles of CPython's manager protocol: the few Python classes it carries (`Token`,
 * `slice`, a Namespace's class, the exception classes a call may raise), each rebuilt by hand
 * from an allowlist, since lib/pickle/ executes nothing; and how denomp errors travel as
 * Python's exceptions.
 *
 * @module
 */

import { IndexError, KeyError } from "../../core/lookup_errors.ts";
import {
  BrokenBarrierError,
  Empty,
  Full,
  RemoteError,
  SerializationError,
  ValueError,
} from "../../core/errors.ts";
import { dumps, loads, type Reduced, tuple } from "../../pickle/pickle.ts";

// ---------------------------------------------------------------------------------------------
// Pickling: the few Python classes the protocol carries

/** `multiprocessing.managers.Token`: what identifies a served object to a Python proxy. */
export class Token {
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
export class PySlice {
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
export function exceptionOf(e: Error): Reduced | undefined {
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
export function pyDumps(value: unknown): Uint8Array {
  return dumps(value, { reduce: reducePy });
}

/** One message of the protocol, read with the protocol's globals. */
export function pyLoads(bytes: Uint8Array): unknown {
  return loads(bytes, { globals: PY_GLOBALS });
}

/** An error whose text is sent as `('#TRACEBACK', text)`: Python raises it as `RemoteError`. */
export function traceback(e: unknown): string {
  if (e instanceof RemoteError) return `${e.remoteName}: ${e.message}`;
  if (e instanceof Error) return `${e.stack ?? `${e.name}: ${e.message}`}`;
  return String(e);
}

export function attributeError(message: string): Error {
  const e = new Error(message);
  e.name = "AttributeError";
  return e;
}
