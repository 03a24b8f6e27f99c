/**
 * A denomp client of a Python manager server (`serializer: "pickle"`): a denomp proxy's calls
 * translated to the Python proxy's (`pyRequest`), and the connections a Python proxy would keep,
 * one request at a time.
 *
 * @module
 */

import { pyDumps, pyLoads, PySlice } from "./pickling.ts";
import type { Kwds } from "./types.ts";
import { ACQUIRED, TIMED_OUT } from "../../core/atomics.ts";
import type { Connection } from "../../connection/connection.ts";
import { wrapSocket } from "../../connection/socket.ts";
import { answerChallenge, deliverChallenge } from "../../connection/auth.ts";
import type { Address } from "../../connection/listener.ts";
import { EOFError, RemoteError, ValueError } from "../../core/errors.ts";
import { tuple } from "../../pickle/pickle.ts";

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
        result: (r) => (r === true ? ACQUIRED : TIMED_OUT),
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
