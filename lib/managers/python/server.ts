/**
 * CPython's manager protocol (`multiprocessing/managers.py`), both ways — this module is the server
 * side, `client.ts` the client side: a denomp manager server
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
 * arguments (timeouts in seconds, keyword arguments); the served objects of `lib/managers/served/` have
 * denomp's names and milliseconds. `types.ts`'s `PY_TYPES` maps one to the other for each built-in
 * typeid, on the server side; `client.ts`'s `pyRequest` maps a denomp proxy's calls to Python's, on the
 * client side. A user-registered class is called by its own method names (Python's `AutoProxy`
 * gets them from `create`'s `exposed`), positional arguments only.
 *
 * Pickles are read by lib/pickle/pickle.ts, which executes nothing: the only globals it accepts here
 * are `multiprocessing.managers.Token`, `builtins.slice`, a Namespace's class and a fixed list of
 * exception classes, each rebuilt by hand (`pickling.ts`).
 *
 * @module
 */

import { attributeError, exceptionOf, pyDumps, pyLoads, Token, traceback } from "./pickling.ts";
import { AsProxy, type Kwds, PY_TYPES } from "./types.ts";
import type { Client } from "../served/caller.ts";
import { KeyError } from "../../core/lookup_errors.ts";
import type { Connection } from "../../connection/connection.ts";
import type { Address } from "../../connection/listener.ts";
import { EOFError, RemoteError, ValueError } from "../../core/errors.ts";
import { tuple } from "../../pickle/pickle.ts";

// ---------------------------------------------------------------------------------------------
// Server side

/** A served object, as the server's table holds it (lib/managers/server.ts's `Entry`). */
export interface PyEntry {
  typeid: string;
  obj: object | null;
  failed: [string, string, string] | null;
  exposed: ReadonlySet<string>;
  builtin: boolean;
}

/** What {@link servePython} needs of the manager's server (lib/managers/server.ts's `Server`). */
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
