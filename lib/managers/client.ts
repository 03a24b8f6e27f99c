/**
 * The client side of a manager: one connection per (process, server), shared by every proxy of
 * that server. Calls on it are multiplexed (a call waiting for a managed lock does not hold up
 * the others) and replies are matched to calls by call id; the connection is made on first use,
 * through the best transport there is: loopback to a server in this isolate, rings to one in
 * this program, TCP to one anywhere.
 *
 * @module
 */

import type { Address } from "../connection/listener.ts";
import { DEFAULT_MAX_MESSAGE } from "../connection/socket.ts";
import { current } from "../core/context.ts";
import { EOFError, RemoteError, ValueError } from "../core/errors.ts";
import { heap, isAlive, nextId } from "../core/heap.ts";
import { EOF } from "../core/ring.ts";
import { pyCreateArgs, type PyManagerClient, pyRequest } from "./python/client.ts";
import {
  CALL,
  CANCEL,
  type ClientTransport,
  CREATE,
  DECREF,
  ERR,
  type Frame,
  frame,
  type ObjId,
  OK,
  randomId,
  SHUTDOWN,
} from "./protocol.ts";
import { type LoopbackServer, LoopbackTransport } from "./transports/loopback.ts";
import { type LocalEndpoint, RingTransport, serverBlockValid } from "./transports/ring.ts";
import { TcpTransport } from "./transports/tcp.ts";

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/** How a proxy reaches its server: by id, in this program (ring), or over TCP. */
export interface Route {
  serverId: string;
  local?: LocalEndpoint;
  address?: Required<Address>;
  authkey?: Uint8Array;
  /** A Python manager server (CPython's protocol; its proxies stay in this process). */
  python?: true;
}

/** A process's connection to one server, as proxies use it. */
export interface ManagerConn {
  readonly route: Route;
  readonly closed: boolean;
  /** An id for an object this client is about to create. */
  newId(): ObjId;
  /** Sends a message that gets no reply (create, references, cancel). */
  post(op: number, body: unknown): void;
  /** Sends a request and resolves with its reply. */
  request(op: number, body: unknown, signal?: AbortSignal): Promise<unknown>;
  /** A method call on object `id` (of type `typeid`). */
  call(
    id: ObjId,
    method: string,
    args: unknown[],
    thread?: number,
    signal?: AbortSignal,
    typeid?: string,
  ): Promise<unknown>;
  close(): void;
}

/** A connection to a denomp server over one transport: its calls multiplexed by call id. */
export class ClientConn implements ManagerConn {
  readonly route: Route;
  readonly #t: ClientTransport;
  #pending = new Map<number, Pending>();
  #seq = 0;
  #reading = false;
  #closed = false;

  constructor(route: Route, t: ClientTransport) {
    this.route = route;
    this.#t = t;
  }

  get network(): boolean {
    return this.#t.network;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** A new object id: numbers inside a program (unique in its process tree), random strings over TCP. */
  newId(): ObjId {
    return this.#t.network ? randomId() : nextId();
  }

  /** Sends a message that gets no reply (create, references, cancel). */
  post(op: number, body: unknown): void {
    if (this.#closed) return;
    this.#t.send(frame(op, 0, body, this.#t.network));
  }

  /** Sends a request and resolves with its reply. `thread` for per-thread ownership (locks). */
  request(op: number, body: unknown, signal?: AbortSignal): Promise<unknown> {
    if (this.#closed) {
      return Promise.reject(new EOFError("the connection to the manager is closed"));
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    // Call ids wrap at 2^32 (never 0: that means "no reply").
    const callId = this.#seq = this.#seq === 0xffffffff ? 1 : this.#seq + 1;
    try {
      this.#t.send(frame(op, callId, body, this.#t.network));
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#wait(callId, signal);
  }

  /** The hot path: a method call on object `id`. */
  call(id: ObjId, method: string, args: unknown[], thread?: number, signal?: AbortSignal) {
    return this.request(
      CALL,
      thread === undefined ? [id, method, args] : [id, method, args, thread],
      signal,
    );
  }

  #wait(callId: number, signal?: AbortSignal): Promise<unknown> {
    let entry!: Pending;
    const p = new Promise<unknown>((resolve, reject) => {
      entry = { resolve, reject, signal };
      this.#pending.set(callId, entry);
    });
    if (signal) {
      // The server decides: a call that completes before the cancel arrives keeps its result.
      entry.onAbort = () => this.post(CANCEL, callId);
      signal.addEventListener("abort", entry.onAbort, { once: true });
    }
    if (!this.#reading) void this.#read();
    return p;
  }

  /** Reads replies while calls are pending, and only then: an idle connection keeps nothing alive. */
  async #read(): Promise<void> {
    this.#reading = true;
    try {
      while (this.#pending.size > 0 && !this.#closed) {
        const f = await this.#t.recv();
        if (f === EOF) {
          // A worker that was terminated is marked dead at once but stops a little later: it
          // has nobody to report to, and must not print errors from beyond the grave.
          if (!isAlive(heap().slot)) return;
          this.#fail(new EOFError("the manager's server closed the connection"));
          return;
        }
        this.#deliver(f);
      }
    } catch (e) {
      this.#fail(e);
    } finally {
      this.#reading = false;
    }
  }

  #deliver(f: Frame): void {
    const p = this.#pending.get(f.callId);
    if (!p) return;
    this.#pending.delete(f.callId);
    if (p.onAbort) p.signal!.removeEventListener("abort", p.onAbort);
    const value = f.body;
    if (f.error !== undefined) p.reject(f.error); // e.g. a handle whose module is not loaded here
    else if (f.kind === OK) p.resolve(value);
    else if (p.signal?.aborted) p.reject(p.signal.reason);
    else if (f.kind === ERR) p.reject(value);
    else if (Array.isArray(value)) {
      p.reject(new RemoteError(String(value[0]), String(value[1]), String(value[2] ?? "")));
    } else p.reject(new RemoteError("Error", String(value)));
  }

  #fail(e: unknown): void {
    this.#closed = true;
    this.#t.close();
    if (connections.get(this.route.serverId) === this) connections.delete(this.route.serverId);
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      if (p.onAbort) p.signal!.removeEventListener("abort", p.onAbort);
      p.reject(e);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#fail(new EOFError("the connection to the manager was closed"));
  }
}

/**
 * A connection to a Python manager server (`serializer: "pickle"`): denomp's proxy calls
 * translated to CPython's (lib/managers/python/). Python's `create` answers with the object's
 * id, so a proxy gets a local id at once and its calls wait for the real one.
 */
export class PyClientConn implements ManagerConn {
  readonly #ids = new Map<ObjId, Promise<string>>();
  #seq = 0;

  constructor(readonly route: Route, readonly py: PyManagerClient) {}

  get closed(): boolean {
    return this.py.closed;
  }

  newId(): ObjId {
    return ++this.#seq;
  }

  post(op: number, body: unknown): void {
    if (op === CREATE) {
      const [id, typeid, args] = body as [ObjId, string, unknown[]];
      const [a, kwds] = pyCreateArgs(typeid, args);
      const ident = this.py.dispatch("create", [typeid, ...a], kwds).then((r) => {
        if (!Array.isArray(r) || typeof r[0] !== "string") {
          throw new ValueError("the Python manager's create() reply is not (id, exposed)");
        }
        return r[0];
      });
      ident.catch(() => {}); // reported by the proxy's calls
      this.#ids.set(id, ident);
    } else if (op === DECREF) {
      const ident = this.#ids.get(body as ObjId);
      this.#ids.delete(body as ObjId);
      ident?.then((i) => this.py.dispatch("decref", [i])).catch(() => {});
    }
    // INCREF and CLAIM do not come: these proxies are not sent anywhere (see the handle's reduce).
  }

  request(op: number): Promise<unknown> {
    if (op === SHUTDOWN) return this.py.dispatch("shutdown", []);
    return Promise.reject(new TypeError(`request ${op} has no Python counterpart`));
  }

  async call(
    id: ObjId,
    method: string,
    args: unknown[],
    _thread?: number,
    signal?: AbortSignal,
    typeid = "",
  ): Promise<unknown> {
    const ident = this.#ids.get(id);
    if (!ident) throw new EOFError("the proxy's object was released");
    const c = pyRequest(typeid, method, args);
    return this.py.call(await ident, c, signal);
  }

  close(): void {
    this.py.close();
  }
}

export const connections = new Map<string, ManagerConn>();
/**
 * Servers this process is done with (`close()`, `shutdown()`): their proxies here fail at once
 * instead of quietly opening a new connection.
 */
export const closedServers = new Set<string>();
/** Servers running in this isolate, by id: their proxies here use a loopback connection. */
export const localServers = new Map<string, LoopbackServer>();

/** This process's connection to a server, made on first use. */
export function connectionFor(route: Route): ManagerConn {
  const c = connections.get(route.serverId);
  if (c && !c.closed) return c;
  if (route.python) throw new EOFError("the connection to the Python manager is closed");
  if (closedServers.has(route.serverId)) {
    throw new EOFError("the connection to the manager was closed (close() or shutdown())");
  }
  let t: ClientTransport;
  const here = localServers.get(route.serverId);
  if (here && !here.stopped) t = new LoopbackTransport(here);
  else if (route.local && serverBlockValid(route.local)) t = new RingTransport(route.local);
  else if (route.address) {
    const tcp = new TcpTransport(
      route.address,
      route.authkey ?? current().authkey,
      DEFAULT_MAX_MESSAGE,
    );
    t = tcp;
  } else throw new EOFError("the manager's server is gone (and has no network address)");
  const conn = new ClientConn(route, t);
  connections.set(route.serverId, conn);
  return conn;
}
