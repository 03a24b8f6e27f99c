/**
 * The server of a manager: the object table, the clients, and the loops that read their
 * requests. It holds the objects by id and counts references (Python's incref/decref): each
 * proxy object holds one, a proxy in flight holds one until it is rebuilt, and a client's
 * references go when its connection drops, so an object is freed once nothing refers to it.
 * When a client goes (its worker dies, its program dies, or it calls `close()`), the server
 * releases what it held: its managed locks and semaphore permits (the next acquirer sees
 * `ownerDied`), its pending waits, its references. A connection that breaks the protocol is
 * closed with the reason on stderr while the server goes on serving the others.
 *
 * @module
 */

import type { Connection, Serializer } from "../connection/connection.ts";
import type { Address } from "../connection/listener.ts";
import { EOFError, ProcessError, RemoteError, ValueError } from "../core/errors.ts";
import type { TargetRef } from "../core/target.ts";
import {
  type Caller,
  type Client,
  enterCall,
  type Forgetful,
  leaveCall,
  withCaller,
} from "./served/caller.ts";
import { BUILTINS } from "./served/managed.ts";
import type { PyEntry, PyHost } from "./python/server.ts";
import {
  CALL,
  CANCEL,
  CLAIM,
  CREATE,
  DECREF,
  ERR,
  errorParts,
  type Frame,
  frame,
  INCREF,
  type ObjId,
  OK,
  randomId,
  reason,
  REMOTE,
  type ServerEnd,
  SHUTDOWN,
  validId,
} from "./protocol.ts";
import { type LocalEndpoint, releaseYield, RingListener } from "./transports/ring.ts";
import { TcpListener } from "./transports/tcp.ts";
import { connections, localServers } from "./client.ts";
import { autoTargets, BaseProxy, coreOf } from "./proxy.ts";

/** How long a call may wait for its object's creation message (sent on another connection). */
const CREATION_WAIT_MS = 5000;

/** A registered type as the server uses it: how to make one, and what may be called. */
export interface Served {
  make: (...args: never[]) => object;
  exposed?: ReadonlySet<string>;
  builtin: boolean;
  isClass: boolean;
}

interface Entry {
  typeid: string;
  obj: object | null;
  /** Why creating it failed; calls then report this. */
  failed: [string, string, string] | null;
  exposed: ReadonlySet<string>;
  builtin: boolean;
  refs: number;
}

let clientCounter = 0;

/** One client connection as the server sees it. */
class ClientRecord implements Client {
  readonly id = ++clientCounter;
  dropped = false;
  readonly #gone = new AbortController();
  /** References this client holds, by object id. */
  readonly held = new Map<ObjId, number>();
  readonly touched = new Set<Forgetful>();
  /** Abort controllers of its calls that wait, by call id. */
  readonly calls = new Map<number, AbortController>();
  constructor(
    readonly name: string,
    readonly network: boolean,
    readonly send: (bytes: Uint8Array) => void,
  ) {}
  touch(obj: Forgetful): void {
    this.touched.add(obj);
  }
  get gone(): AbortSignal {
    return this.#gone.signal;
  }
  /** Marks it dropped: aborts its calls' waits. */
  drop(reason: Error): void {
    this.dropped = true;
    this.#gone.abort(reason);
    for (const c of this.calls.values()) c.abort(reason);
    this.calls.clear();
  }
}

/** The record of one served call (see `Caller` in lib/managers/served/caller.ts). */
class CallContext implements Caller {
  constructor(
    readonly server: Server,
    public client: ClientRecord,
    public thread: number,
    readonly callId: number,
  ) {}
  signal(): AbortSignal {
    let c = this.client.calls.get(this.callId);
    if (!c) {
      c = new AbortController();
      if (this.client.dropped) c.abort(new EOFError("the client is gone"));
      this.client.calls.set(this.callId, c);
    }
    return c.signal;
  }
  resolve(value: unknown): unknown {
    return this.server.referent(value);
  }
}

/** What a server process is told at start. */
export interface ServerConfig {
  name: string;
  serverId: string;
  address: Address | null;
  authkey: Uint8Array;
  maxMessageSize: number;
  handshakeTimeout: number;
  /** What TCP clients speak: denomp's protocol, or CPython's managers protocol ("pickle"). */
  serializer: Serializer;
  registry: [string, TargetRef | null, string[] | null][];
}

/** Public methods of `obj`: functions on it or its prototypes (not Object's), not starting with `_`. */
function publicMethods(obj: object): Set<string> {
  const names = new Set<string>();
  for (let o: object | null = obj; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const k of Object.getOwnPropertyNames(o)) {
      if (k === "constructor" || k.startsWith("_") || names.has(k)) continue;
      const d = Object.getOwnPropertyDescriptor(o, k);
      if (d && typeof d.value === "function") names.add(k);
    }
  }
  return names;
}

function isClass(f: unknown): boolean {
  return typeof f === "function" && /^class[\s{]/.test(Function.prototype.toString.call(f));
}

/**
 * The server: the object table, the clients, and the loops that read their requests. Runs in
 * the manager's worker (`start()`), or in the caller's isolate (`serveForever()`).
 */
export class Server implements ServerEnd<ClientRecord>, PyHost {
  readonly config: ServerConfig;
  readonly #registry: Map<string, Served>;
  readonly #objects = new Map<ObjId, Entry>();
  /** Calls and claims waiting for an object whose creation has not arrived yet. */
  readonly #unborn = new Map<
    ObjId,
    { queue: (() => void)[]; timer: ReturnType<typeof setTimeout> }
  >();
  readonly #clients = new Set<ClientRecord>();
  /** The server end of the ring transport: where clients in this program connect. */
  readonly #rings: RingListener<ClientRecord>;
  /** The server end of the TCP transport, once listening. */
  #tcp: TcpListener<ClientRecord> | null = null;
  stopped = false;
  /** Resolves once stopped and every loop of it has ended (nothing of it is left pending). */
  readonly done: Promise<void>;
  #finish!: () => void;
  readonly #tasks = new Set<Promise<void>>();

  constructor(config: ServerConfig, registry: Map<string, Served>) {
    this.config = config;
    this.#registry = registry;
    this.done = new Promise((r) => (this.#finish = r));
    this.#rings = new RingListener(this);
    localServers.set(config.serverId, this);
    // The ring listener stops when the server block says so (shutdown(), from any isolate).
    this.track(this.#rings.accept().then(() => this.#stop()));
  }

  /** Counts a loop of the server's in, so that `done` waits for it. */
  track(p: Promise<void>): void {
    this.#tasks.add(p);
    void p.finally(() => this.#tasks.delete(p));
  }

  /** Where clients in this program find it. */
  get local(): LocalEndpoint {
    return this.#rings.local;
  }

  /** The TCP address, once listening. */
  get address(): Required<Address> | null {
    return this.#tcp?.address ?? null;
  }

  /** Listens on TCP (synchronously, so `address` is known at once). */
  listen(address: Address): void {
    this.#tcp = new TcpListener(address, this, this.config);
  }

  // --- connections ---------------------------------------------------------------------------

  /** Records a new client connection; `send` delivers the server's frames to it. */
  open(name: string, network: boolean, send: (bytes: Uint8Array) => void): ClientRecord {
    const c = new ClientRecord(name, network, send);
    this.#clients.add(c);
    return c;
  }

  /** The loopback client of this isolate's own proxies. */
  attachLoopback(deliver: (bytes: Uint8Array) => void): ClientRecord {
    return this.open("this isolate", false, deliver);
  }

  /** A client is gone: abort its waits, release what it held, drop its references. */
  drop(client: ClientRecord): void {
    if (client.dropped) return;
    this.#clients.delete(client);
    client.drop(new EOFError("the client is gone"));
    for (const obj of client.touched) {
      try {
        obj.forget(client);
      } catch (e) {
        console.error(
          `${this.config.name}: releasing what ${client.name} held failed: ${reason(e)}`,
        );
      }
    }
    client.touched.clear();
    for (const [id, n] of client.held) this.#decref(id, n);
    client.held.clear();
  }

  // --- requests ------------------------------------------------------------------------------

  /**
   * Handles one frame of `client`. A malformed request throws (the caller closes the
   * connection); a body that could not be decoded fails that call only.
   */
  receive(client: ClientRecord, f: Frame): void {
    if (this.stopped || client.dropped) return;
    const { kind: op, callId, body } = f;
    if (f.error !== undefined) {
      // Only from this program (other programs' undecodable frames close their connection).
      // The caller gets the codec's own error (a SerializationError naming the problem).
      if (f.error instanceof Error) return this.#reply(client, callId, ERR, f.error);
      return this.#reply(client, callId, REMOTE, errorParts(f.error));
    }
    switch (op) {
      case CALL: {
        if (!Array.isArray(body)) throw new ValueError("a call is malformed");
        const [id, method, args, thread] = body;
        if (!validId(id) || typeof method !== "string" || !Array.isArray(args)) {
          throw new ValueError("a call is malformed");
        }
        const t = typeof thread === "number" ? thread : 0;
        const e = this.#objects.get(id);
        if (e) return this.#call(client, callId, e, method, args, t); // the usual case
        return this.#whenBorn(
          id,
          (e) => this.#call(client, callId, e, method, args, t),
          () =>
            this.#reply(client, callId, REMOTE, [
              "LookupError",
              `no managed object with id ${JSON.stringify(id)} (it was released, or never created)`,
              "",
            ]),
        );
      }
      case CREATE: {
        if (!Array.isArray(body)) throw new ValueError("a create request is malformed");
        const [id, typeid, args] = body;
        if (!validId(id) || typeof typeid !== "string" || !Array.isArray(args)) {
          throw new ValueError("a create request is malformed");
        }
        return this.#create(client, callId, id, typeid, args);
      }
      case INCREF:
      case CLAIM:
      case DECREF: {
        const id = body;
        if (!validId(id)) throw new ValueError("a reference message is malformed");
        return this.#whenBorn(id, (e) => {
          if (op === CLAIM) client.held.set(id, (client.held.get(id) ?? 0) + 1);
          else if (op === INCREF) e.refs++;
          else {
            const n = client.held.get(id) ?? 0;
            if (n > 1) client.held.set(id, n - 1);
            else client.held.delete(id);
            this.#decref(id, 1);
          }
        }, () => {});
      }
      case CANCEL:
        if (typeof body === "number") {
          client.calls.get(body)?.abort(new DOMException("the call was cancelled", "AbortError"));
        }
        return;
      case SHUTDOWN:
        this.#reply(client, callId, OK, null);
        queueMicrotask(() => this.shutdown());
        return;
    }
    throw new ValueError(`unknown request kind ${op}`);
  }

  /** Runs `then` with the entry of `id`, at once or once its creation arrives (in order). */
  #whenBorn(id: ObjId, then: (e: Entry) => void, missing: () => void): void {
    const e = this.#objects.get(id);
    if (e) return then(e);
    let u = this.#unborn.get(id);
    if (!u) {
      const timer = setTimeout(() => {
        const w = this.#unborn.get(id);
        this.#unborn.delete(id);
        for (const f of w?.queue ?? []) f();
      }, CREATION_WAIT_MS);
      u = { queue: [], timer };
      this.#unborn.set(id, u);
    }
    // Each waiting step re-checks, so a step that found no object reports `missing`.
    u.queue.push(() => {
      const e2 = this.#objects.get(id);
      if (e2) then(e2);
      else missing();
    });
  }

  #create(client: ClientRecord, callId: number, id: ObjId, typeid: string, args: unknown[]): void {
    if (this.#objects.has(id)) {
      return this.#reply(client, callId, REMOTE, ["ValueError", `object id ${id} is taken`, ""]);
    }
    const entry = this.#build(client, typeid, args);
    this.#objects.set(id, entry);
    client.held.set(id, (client.held.get(id) ?? 0) + 1);
    if (entry.failed) this.#reply(client, callId, REMOTE, entry.failed);
    else this.#reply(client, callId, OK, null);
    const u = this.#unborn.get(id);
    if (u) {
      this.#unborn.delete(id);
      clearTimeout(u.timer);
      for (const f of u.queue) f();
    }
  }

  /** Makes the object of a create request (a failed entry when it cannot be made). */
  #build(client: ClientRecord, typeid: string, args: unknown[]): Entry {
    const spec = this.#registry.get(typeid) ?? builtinSpec(typeid);
    const entry: Entry = {
      typeid,
      obj: null,
      failed: null,
      exposed: spec?.exposed ?? new Set(),
      builtin: spec?.builtin ?? false,
      refs: 1,
    };
    if (!spec) {
      entry.failed = ["KeyError", `no type '${typeid}' is registered with the manager`, ""];
    } else {
      try {
        const ctx = new CallContext(this, client, 0, 0);
        entry.obj = withCaller(
          ctx,
          () =>
            spec.isClass
              ? new (spec.make as unknown as new (...a: unknown[]) => object)(...args)
              : (spec.make as (...a: unknown[]) => object)(...args),
        );
        if (
          entry.obj === null || (typeof entry.obj !== "object" && typeof entry.obj !== "function")
        ) {
          throw new TypeError(
            `the factory of '${typeid}' returned ${String(entry.obj)}, not an object`,
          );
        }
        if (!spec.exposed) entry.exposed = publicMethods(entry.obj);
      } catch (e) {
        const [name, message, stack] = errorParts(e);
        entry.failed = [name, `creating '${typeid}' failed: ${message}`, stack];
        entry.obj = null;
      }
    }
    return entry;
  }

  // --- CPython's managers protocol (lib/managers/python/ speaks it; this is the table's side) --
  // Python's clients count references per server (each incref/decref comes on a connection of
  // its own), so their objects are not held by any client record.

  get name(): string {
    return this.config.name;
  }

  pyClient(name: string): ClientRecord {
    return this.open(name, true, () => {});
  }

  pyDrop(client: ClientRecord): void {
    this.drop(client);
  }

  pyCreate(client: ClientRecord, typeid: string, makeArgs: unknown[]): [string, PyEntry] {
    const entry = this.#build(client, typeid, makeArgs);
    if (entry.failed) throw new RemoteError(entry.failed[0], entry.failed[1], entry.failed[2]);
    const id = randomId();
    this.#objects.set(id, entry);
    return [id, entry];
  }

  pyAdopt(typeid: string, obj: object): string {
    const id = randomId();
    this.#objects.set(id, {
      typeid,
      obj,
      failed: null,
      exposed: new Set(),
      builtin: true,
      refs: 1,
    });
    return id;
  }

  pyEntry(id: string): PyEntry | undefined {
    return this.#objects.get(id);
  }

  pyRef(id: string, delta: 1 | -1): void {
    const e = this.#objects.get(id);
    if (!e) throw new RemoteError("KeyError", `no managed object with id '${id}'`);
    if (delta > 0) e.refs++;
    else this.#decref(id, 1);
  }

  pyRun<R>(client: ClientRecord, callId: number, fn: () => R): R {
    const prev = enterCall(new CallContext(this, client, 0, callId));
    let r: R;
    try {
      r = fn();
    } finally {
      leaveCall(prev);
    }
    if (r instanceof Promise) void r.finally(() => client.calls.delete(callId)).catch(() => {});
    return r;
  }

  numberOfObjects(): number {
    return this.#objects.size;
  }

  #decref(id: ObjId, n: number): void {
    const e = this.#objects.get(id);
    if (!e) return;
    e.refs -= n;
    if (e.refs <= 0) this.#objects.delete(id);
  }

  #call(
    client: ClientRecord,
    callId: number,
    e: Entry,
    method: string,
    args: unknown[],
    thread: number,
  ): void {
    if (e.failed) return this.#reply(client, callId, REMOTE, e.failed);
    // Only names in the exposed set are ever looked up on the object: a request can reach
    // nothing else (no `constructor`, no `__proto__`, no private helpers).
    if (!e.exposed.has(method)) {
      return this.#reply(client, callId, REMOTE, [
        "AttributeError",
        `'${e.typeid}' object has no exposed method '${method}'`,
        "",
      ]);
    }
    const obj = e.obj as Record<string, unknown>;
    const fn = obj[method];
    if (typeof fn !== "function") {
      return this.#reply(client, callId, REMOTE, [
        "AttributeError",
        `'${e.typeid}' object's '${method}' is not a method`,
        "",
      ]);
    }
    let r: unknown;
    const prev = enterCall(new CallContext(this, client, thread, callId));
    try {
      r = fn.apply(obj, args);
    } catch (err) {
      return this.#fail(client, callId, e, err);
    } finally {
      leaveCall(prev);
    }
    if (r instanceof Promise) {
      r.then(
        (v) => this.#reply(client, callId, OK, v),
        (err) => this.#fail(client, callId, e, err),
      ).finally(() => client.calls.delete(callId));
    } else this.#reply(client, callId, OK, r);
  }

  /** Built-in types answer with their own errors (`Empty`, `ValueError`...), others with RemoteError. */
  #fail(client: ClientRecord, callId: number, e: Entry, err: unknown): void {
    if (e.builtin && err instanceof Error) this.#reply(client, callId, ERR, err);
    else this.#reply(client, callId, REMOTE, errorParts(err));
  }

  #reply(client: ClientRecord, callId: number, status: number, value: unknown): void {
    if (callId === 0 || client.dropped) return;
    let bytes: Uint8Array;
    try {
      bytes = frame(status, callId, value, client.network);
    } catch (err) {
      // The result cannot be sent (a function, a local handle to another program...).
      bytes = frame(REMOTE, callId, errorParts(err), client.network);
    }
    client.send(bytes);
  }

  /** The object a proxy of this server refers to; anything else as it is. */
  referent(value: unknown): unknown {
    if (
      value instanceof BaseProxy ||
      (value !== null && typeof value === "object" && autoTargets.has(value))
    ) {
      const core = coreOf(value as object);
      if (core.route.serverId === this.config.serverId) {
        return this.#objects.get(core.id)?.obj ?? value;
      }
    }
    return value;
  }

  // --- stopping ------------------------------------------------------------------------------

  /** Stops serving: every connection is closed, every waiting call ends. */
  shutdown(): void {
    this.#rings.shutdown();
  }

  #stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.shutdown();
    this.#tcp?.close();
    this.#rings.close();
    for (const c of [...this.#clients]) this.drop(c);
    for (const u of this.#unborn.values()) clearTimeout(u.timer);
    this.#unborn.clear();
    this.#objects.clear();
    if (localServers.get(this.config.serverId) === this) localServers.delete(this.config.serverId);
    connections.get(this.config.serverId)?.close();
    if (localServers.size === 0) releaseYield();
    // Done once every loop has seen the stop (no accept, read or wait of ours is left pending).
    void (async () => {
      while (this.#tasks.size) await Promise.allSettled([...this.#tasks]);
      this.#finish();
    })();
  }
}

function builtinSpec(typeid: string): Served | undefined {
  const b = BUILTINS.get(typeid);
  return b && { make: b.make, exposed: new Set(b.exposed), builtin: true, isClass: false };
}

/** Hello from the server process to the manager that started it. */
export type ServerHello =
  | { ok: true; off: number; tag: number; address: Required<Address> | null }
  | { ok: false; error: string };

/**
 * The manager server's process target (started by `BaseManager.start()`; not for direct use):
 * imports the registered types, starts serving, reports where, and serves until shut down.
 *
 * @example
 * ```ts ignore
 * // BaseManager.start() runs it as: new Process({ target: managerServer, args: [hello, config] })
 * ```
 */
export async function managerServer(
  helloConn: Connection<unknown>,
  serverConfig: unknown,
): Promise<void> {
  const hello = helloConn as Connection<ServerHello>, config = serverConfig as ServerConfig;
  let server: Server;
  try {
    // Clients may send any kind of handle at any time (a Queue stored in a dict...): every kind
    // must be registered before the first request, not in the background as other workers do.
    await import(MOD);
    const registry = new Map<string, Served>();
    for (const [typeid, ref, exposed] of config.registry) {
      let make: unknown = null;
      if (ref) {
        const ns = await import(ref.module) as Record<string, unknown>;
        make = ns[ref.name];
        if (typeof make !== "function") {
          throw new ProcessError(
            `'${ref.name}' (registered as '${typeid}') is not exported from ${ref.module}`,
          );
        }
      }
      if (make) registry.set(typeid, servedOf(make as (...a: never[]) => object, exposed));
    }
    server = new Server(config, registry);
    if (config.address) server.listen(config.address);
  } catch (e) {
    await hello.send({ ok: false, error: reason(e) });
    hello.close();
    return;
  }
  await hello.send({
    ok: true,
    off: server.local.off,
    tag: server.local.tag,
    address: server.address,
  });
  hello.close();
  await server.done;
}

const MOD = new URL("../../mod.ts", import.meta.url).href;

export function servedOf(
  make: (...a: never[]) => object,
  exposed: readonly string[] | null | undefined,
): Served {
  return {
    make,
    exposed: exposed ? new Set(exposed) : undefined,
    builtin: false,
    isClass: isClass(make),
  };
}
