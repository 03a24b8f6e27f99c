/**
 * Managers (Python's `multiprocessing.managers`): objects that live in a server and are used
 * from any worker, or from another program over TCP, through proxies.
 *
 * ```ts ignore
 * await using manager = await Manager();   // the server runs in its own (daemon) worker
 * const d = manager.dict<string, number>();
 * await d.set("k", 1);                     // every proxy method is a call to the server
 * ```
 *
 * **Values are copies.** A value read through a proxy is a copy in the reader's process;
 * changing it changes nothing in the server. This is Python's behaviour too, and the usual
 * surprise:
 *
 * ```ts ignore
 * const xs = await d.get("xs");   // a copy
 * xs.push(2);                     // changes the copy only
 * await d.set("xs", xs);          // assign it back: now the managed dict has it
 * ```
 *
 * To share a mutable value itself, store a proxy in the container (`await d.set("xs",
 * manager.list())`): a proxy read back out of a container still refers to the same object.
 *
 * **How it works.** A server holds the objects in a table, by id. Each process that uses a
 * server's proxies has one connection to it, shared by all its proxies: inside one program it
 * is a pair of rings in the shared heap (lib/core/ring.ts: a call is a few microseconds, no
 * `postMessage`); from another program it is a TCP socket using lib/connection/socket.ts's
 * framing and lib/connection/auth.ts's mutual HMAC challenge. Calls on one connection are multiplexed (a call waiting for a managed
 * lock does not hold up the others) and are dispatched in the order they were sent.
 *
 * A proxy is a registered handle, so it travels in `Process` args and inside queue items, pipe
 * messages and other managed containers, and works wherever it arrives. The server counts
 * references (Python's incref/decref): each proxy object holds one, a proxy in flight holds one
 * until it is rebuilt, and a client's references go when its connection drops, so an object is
 * freed once nothing refers to it.
 *
 * **Failure.** A client's connection drops when its worker dies (seen in the shared process
 * table), its program dies (the socket closes) or it calls `close()`. The server then releases
 * what that client held: its managed locks and semaphore permits (the next acquirer sees
 * `ownerDied`), its pending waits, its references. Over TCP, nothing is read before the HMAC
 * challenge passes both ways; frames have a size limit; bytes are only ever decoded as data
 * (only proxies may appear as handles, never code); a connection that breaks the protocol is
 * closed with the reason on stderr while the server goes on serving the others.
 *
 * **Python.** With `serializer: "pickle"`, what is spoken over TCP is CPython's own managers
 * protocol instead (lib/managers/python/): Python's `BaseManager`/`SyncManager` clients use the
 * server's registered classes and built-in types, and `connect()` reaches a Python manager
 * server's `dict`, `list`, `Queue`... through the usual proxies.
 *
 * **Where things are.** This module is the manager (`BaseManager`, `SyncManager`, `Manager`)
 * and re-exports the public names of its neighbours in lib/managers/: `protocol.ts` (frames,
 * ops, the codec's network flags), `transports/` (ring, TCP, loopback: each with its client and
 * server end), `client.ts` (a process's connection to a server), `proxy.ts` (`BaseProxy`, how a
 * proxy travels, the proxy of a registered class), `typed_proxies.ts` (`DictProxy`...),
 * `server.ts` (the object table and the server process), `served/` (the objects a server
 * holds), `python/` (CPython's protocol).
 *
 * @module
 */

import { optionsOf } from "../core/args.ts";
import { current } from "../core/context.ts";
import { BUILTINS } from "./served/managed.ts";
import { PyManagerClient } from "./python/client.ts";
import { callerModule, resolveTarget } from "../core/target.ts";
import type { Serializer } from "../connection/connection.ts";
import { Pipe } from "../connection/pipe.ts";
import { DEFAULT_MAX_MESSAGE } from "../connection/socket.ts";
import type { AuthKey } from "../connection/auth.ts";
import type { Address } from "../connection/listener.ts";
import { EOFError, ProcessError, ValueError } from "../core/errors.ts";
import { Process } from "../process/process.ts";
import type { CInput, Typecode } from "../memory/sharedctypes.ts";
import { CREATE, fmtAddress, HANDSHAKE_MS, randomId, SHUTDOWN } from "./protocol.ts";
import { keyBytes } from "../connection/auth.ts";
import { serverBlockValid, stopServerBlock } from "./transports/ring.ts";
import { TcpTransport } from "./transports/tcp.ts";
import {
  ClientConn,
  closedServers,
  connectionFor,
  connections,
  type ManagerConn,
  PyClientConn,
  type Route,
} from "./client.ts";
import { adoptProxy, type BaseProxy, type Proxied } from "./proxy.ts";
import type {
  ArrayProxy,
  BarrierProxy,
  BoundedSemaphoreProxy,
  ConditionProxy,
  DictProxy,
  EventProxy,
  JoinableQueueProxy,
  ListProxy,
  LockProxy,
  NamespaceProxy,
  QueueProxy,
  RLockProxy,
  SemaphoreProxy,
  ValueProxy,
} from "./typed_proxies.ts";
import {
  managerServer,
  type Served,
  servedOf,
  Server,
  type ServerConfig,
  type ServerHello,
} from "./server.ts";

export { BaseProxy, type Proxied, type ProxyFactory } from "./proxy.ts";
export * from "./typed_proxies.ts";
export { managerServer } from "./server.ts";
export type { AuthKey } from "../connection/auth.ts";
export type { Address } from "../connection/listener.ts";

// ---------------------------------------------------------------------------------------------
// Managers

/**
 * Options of {@link BaseManager.register}.
 *
 * @example
 * ```ts ignore
 * MyManager.register("Maths", Maths, { exposed: ["add"] }); // only add() may be called
 * ```
 */
export interface RegisterOptions {
  /**
   * The method names a proxy may call. Default: every public method of the object (functions
   * on it or its classes whose names do not start with `_`).
   */
  exposed?: readonly string[];
}

/**
 * Options of `new BaseManager(...)`.
 *
 * @example
 * ```ts
 * import { SyncManager } from "jsr:@denomp/multiprocessing";
 * const m = new SyncManager({
 *   address: { hostname: "127.0.0.1", port: 0 },
 *   authkey: "secret",
 *   maxMessageSize: 1 << 20,
 * });
 * console.assert(m.address === null); // until start() or serveForever()
 * ```
 */
export interface BaseManagerOptions {
  /**
   * The TCP address to serve on (`start()`, `serveForever()`) or to connect to (`connect()`).
   * Port 0 picks a free port (see {@link BaseManager.address}). Without it, `start()` serves
   * the workers of this program only.
   */
  address?: Address;
  /** The shared secret; default: this process tree's key (Python's `current_process().authkey`). */
  authkey?: AuthKey;
  /** The largest message accepted over TCP, in bytes (default 128 MiB); a peer over it is dropped. */
  maxMessageSize?: number;
  /**
   * Milliseconds a TCP peer has to pass the HMAC challenge (default 20,000); for `connect()`,
   * also to greet as a denomp manager.
   */
  handshakeTimeout?: number;
  /**
   * What is spoken over TCP: `"denomp"` (default: denomp's own protocol, for denomp peers), or
   * `"pickle"`: CPython's `multiprocessing.managers` protocol, so Python's `BaseManager` /
   * `SyncManager` clients use this server (its registered classes, `dict`, `list`,
   * `Namespace`, `Queue`, `Lock`, `Event`...), and `connect()` uses a Python manager server's
   * `dict`, `list`, `Queue`... through the usual proxies. See README "Managers across languages".
   */
  serializer?: Serializer;
}

interface Registration {
  callable?: (...args: never[]) => unknown;
  exposed?: readonly string[];
  caller?: string;
}

const registries = new WeakMap<object, Map<string, Registration>>();

function registryOf(cls: object): Map<string, Registration> {
  const out = new Map<string, Registration>();
  const chain: object[] = [];
  for (let c: object | null = cls; c && c !== Function.prototype; c = Object.getPrototypeOf(c)) {
    chain.push(c);
  }
  for (const c of chain.reverse()) for (const [k, v] of registries.get(c) ?? []) out.set(k, v);
  return out;
}

let managerCounter = 0;

type State = "initial" | "started" | "connected" | "serving" | "shutdown";

/**
 * A manager (Python's `BaseManager`): a server of registered types, and the client side that
 * creates objects there and hands out proxies.
 *
 * - `await m.start()` runs the server in a new daemon worker (with `address`, it also serves
 *   other programs over TCP); `await m.shutdown()` (or `await using`) stops it.
 * - `await m.serveForever()` runs the server in this isolate until a client shuts it down.
 * - `await m.connect()` connects to a server at `address` (another program, or machine);
 *   `m.close()` disconnects.
 *
 * Register a type with `BaseManager.register(typeid, Class)` (on a subclass, to keep it to that
 * subclass); the class must be exported from its module, since the server's worker imports it.
 * Then `m.create(typeid, ...args)` or `m[typeid](...args)` creates an object in the server and
 * returns its proxy at once (a constructor's error is reported by the first call on it).
 *
 * @example
 * ```ts ignore
 * // maths.ts
 * export class Maths {
 *   add(a: number, b: number) {
 *     return a + b;
 *   }
 * }
 * // server.ts
 * import { BaseManager } from "jsr:@denomp/multiprocessing";
 * import { Maths } from "./maths.ts";
 * class MathsManager extends BaseManager {}
 * MathsManager.register("Maths", Maths);
 * const m = new MathsManager({ address: { hostname: "0.0.0.0", port: 50000 }, authkey: "secret" });
 * await m.serveForever();
 * // client.ts (another program)
 * const c = new MathsManager({ address: { hostname: "server", port: 50000 }, authkey: "secret" });
 * await c.connect();
 * const maths = c.create<Maths>("Maths");
 * console.log(await maths.add(1, 2)); // 3
 * c.close();
 * ```
 */
export class BaseManager {
  #options: BaseManagerOptions;
  #authkey: Uint8Array;
  #state: State = "initial";
  #route: Route | null = null;
  #conn: ManagerConn | null = null;
  #process: Process | null = null;
  #server: Server | null = null;
  #address: Required<Address> | null = null;

  /** Prepares a manager; nothing runs until `start()`, `connect()` or `serveForever()`. */
  constructor(options?: BaseManagerOptions) {
    options = optionsOf(options, "BaseManager", "new BaseManager({ address, authkey })");
    this.#options = { ...options };
    this.#authkey = options.authkey === undefined ? current().authkey : keyBytes(options.authkey);
    const max = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE;
    if (!(max > 0) || max > 0xffffffff) {
      throw new ValueError(`maxMessageSize must be 1..2^32-1 bytes: current value is ${max}`);
    }
    const ser = options.serializer;
    if (ser !== undefined && ser !== "denomp" && ser !== "pickle") {
      throw new ValueError(
        `serializer must be "denomp" or "pickle": current value is ${JSON.stringify(ser)}`,
      );
    }
  }

  /**
   * Registers a type to serve: `callable` is an exported class (its instances are created with
   * `new`) or an exported function returning the object to serve (e.g. a shared singleton).
   * Without `callable`, only adds the `manager[typeid]()` method (for a client of a server that
   * registered it). Adds `typeid` as a method of this class's instances.
   */
  static register(
    typeid: string,
    callable?: ((...args: never[]) => unknown) | (abstract new (...args: never[]) => unknown),
    options?: RegisterOptions,
  ): void {
    options = optionsOf(options, "BaseManager.register", "register(typeid, callable, { exposed })");
    if (typeof typeid !== "string" || !/^[A-Za-z_$][\w$]*$/.test(typeid)) {
      throw new ValueError(`typeid must be an identifier: current value is ${String(typeid)}`);
    }
    if (BUILTINS.has(typeid)) throw new ValueError(`'${typeid}' is a built-in type of the manager`);
    const proto = this.prototype as unknown as Record<string, unknown>;
    if (typeid in proto && !registryOf(this).has(typeid)) {
      throw new ValueError(`'${typeid}' would hide the manager's own member '${typeid}'`);
    }
    if (callable !== undefined && typeof callable !== "function") {
      throw new TypeError(`the callable registered as '${typeid}' must be a class or a function`);
    }
    let own = registries.get(this);
    if (!own) registries.set(this, own = new Map());
    own.set(typeid, {
      callable: callable as ((...args: never[]) => unknown) | undefined,
      exposed: options.exposed ? [...options.exposed] : undefined,
      caller: callerModule(),
    });
    Object.defineProperty(this.prototype, typeid, {
      value: function (this: BaseManager, ...args: unknown[]) {
        return this.create(typeid, ...args);
      },
      configurable: true,
      writable: true,
    });
  }

  /** The TCP address served or connected to (with the port picked when 0 was asked), or null. */
  get address(): Required<Address> | null {
    return this.#address;
  }

  /** The authkey (bytes). */
  get authkey(): Uint8Array {
    return this.#authkey;
  }

  /**
   * Starts the server in a new daemon worker and connects to it. With `address`, the server
   * also listens there for other programs. Throws `ProcessError` if the server cannot start
   * (e.g. a registered class is not exported).
   */
  async start(): Promise<void> {
    this.#expect("initial", "start");
    const ctor = this.constructor as typeof BaseManager;
    const registry: ServerConfig["registry"] = [];
    for (const [typeid, r] of registryOf(ctor)) {
      if (!r.callable) continue;
      registry.push([
        typeid,
        resolveTarget(r.callable, undefined, r.caller),
        r.exposed ? [...r.exposed] : null,
      ]);
    }
    const config = this.#config(`${ctor.name}-${++managerCounter}`, registry);
    const [r, w] = Pipe<ServerHello>({ duplex: false });
    const p = new Process({
      target: managerServer,
      module: import.meta.url,
      args: [w, config],
      daemon: true,
      name: config.name,
    });
    this.#state = "started";
    try {
      p.start();
    } catch (e) {
      this.#state = "shutdown";
      w.close();
      r.close();
      throw e;
    }
    w.close();
    this.#process = p;
    let hello: ServerHello;
    try {
      hello = await r.recv();
    } catch {
      await p.join(1000);
      this.#state = "shutdown";
      throw new ProcessError(
        `the manager's server process exited at start (exit code ${p.exitCode})`,
      );
    } finally {
      r.close();
    }
    if (!hello.ok) {
      await p.join(1000);
      if (p.isAlive()) p.terminate();
      this.#state = "shutdown";
      throw new ProcessError(`the manager's server could not start: ${hello.error}`);
    }
    this.#address = hello.address;
    this.#route = {
      serverId: config.serverId,
      local: { off: hello.off, tag: hello.tag },
      address: hello.address ?? undefined,
      authkey: this.#authkey,
    };
  }

  /**
   * Connects to a server at `address` (mutual HMAC challenge with `authkey`). Throws
   * `AuthenticationError` when the keys differ, and the network's error when nobody listens.
   */
  async connect(): Promise<void> {
    this.#expect("initial", "connect");
    const a = this.#options.address;
    if (!a) throw new ValueError("connect() needs an address");
    const address = { hostname: a.hostname ?? "127.0.0.1", port: a.port };
    if (this.#options.serializer === "pickle") return this.#connectPython(address);
    const t = new TcpTransport(
      address,
      this.#authkey,
      this.#options.maxMessageSize ?? DEFAULT_MAX_MESSAGE,
      this.#options.handshakeTimeout ?? HANDSHAKE_MS,
    );
    const serverId = await t.ready.catch((e) => {
      t.close();
      throw e;
    });
    this.#address = address;
    this.#route = { serverId, address, authkey: this.#authkey };
    closedServers.delete(serverId);
    const old = connections.get(serverId);
    if (old && !old.closed) {
      t.close();
      this.#conn = old;
    } else {
      this.#conn = new ClientConn(this.#route, t);
      connections.set(serverId, this.#conn);
    }
    this.#state = "connected";
  }

  /** `connect()` to a server speaking CPython's protocol: a Python manager, or denomp's "pickle". */
  async #connectPython(address: Required<Address>): Promise<void> {
    const py = new PyManagerClient(address, this.#authkey, {
      maxMessageSize: this.#options.maxMessageSize ?? DEFAULT_MAX_MESSAGE,
      handshakeTimeout: this.#options.handshakeTimeout ?? HANDSHAKE_MS,
    });
    await py.dispatch("dummy", []); // as Python's connect(): the address and the authkey work
    this.#address = address;
    this.#route = {
      serverId: `python-${randomId()}`,
      address,
      authkey: this.#authkey,
      python: true,
    };
    this.#conn = new PyClientConn(this.#route, py);
    connections.set(this.#route.serverId, this.#conn);
    this.#state = "connected";
  }

  /**
   * Runs the server in this isolate until it is shut down (by `shutdown()`, or a client's), then
   * resolves. With `address` it listens there at once, so `address` is set as soon as this is
   * called; it also serves this program's workers, and this manager's own `create()`.
   */
  serveForever(): Promise<void> {
    this.#expect("initial", "serveForever");
    const ctor = this.constructor as typeof BaseManager;
    const registry = new Map<string, Served>();
    for (const [typeid, r] of registryOf(ctor)) {
      if (r.callable) {
        registry.set(typeid, servedOf(r.callable as (...a: never[]) => object, r.exposed));
      }
    }
    const config = this.#config(`${ctor.name}-${++managerCounter}`, []);
    const server = new Server(config, registry);
    try {
      if (config.address) server.listen(config.address);
    } catch (e) {
      server.shutdown();
      throw e;
    }
    this.#server = server;
    this.#address = server.address;
    this.#route = {
      serverId: config.serverId,
      local: server.local,
      address: server.address ?? undefined,
      authkey: this.#authkey,
    };
    this.#state = "serving";
    return server.done.then(() => {
      this.#state = "shutdown";
    });
  }

  #config(name: string, registry: ServerConfig["registry"]): ServerConfig {
    const a = this.#options.address;
    return {
      name,
      serverId: randomId(),
      address: a ? { hostname: a.hostname ?? "127.0.0.1", port: a.port } : null,
      authkey: this.#authkey,
      maxMessageSize: this.#options.maxMessageSize ?? DEFAULT_MAX_MESSAGE,
      handshakeTimeout: this.#options.handshakeTimeout ?? HANDSHAKE_MS,
      serializer: this.#options.serializer ?? "denomp",
      registry,
    };
  }

  #expect(state: State, what: string): void {
    if (this.#state !== state) {
      throw new ProcessError(
        `cannot ${what}(): the manager is ${
          this.#state === "initial" ? "not started" : this.#state
        }`,
      );
    }
  }

  #connection(): ManagerConn {
    if (this.#state === "initial") {
      throw new ProcessError("the manager is not started (call start() or connect())");
    }
    if (this.#state === "shutdown" || !this.#route) {
      throw new ProcessError("the manager is shut down");
    }
    if (!this.#conn || this.#conn.closed) this.#conn = connectionFor(this.#route);
    return this.#conn;
  }

  /**
   * Creates an object of the registered type `typeid` in the server with `args` and returns its
   * proxy (Python's `manager.typeid(*args)`). The proxy is usable at once; if the constructor
   * throws, the first call on the proxy rejects with that error as a `RemoteError`.
   */
  create<T = unknown>(typeid: string, ...args: unknown[]): Proxied<T> {
    return this.#make(typeid, args) as Proxied<T>;
  }

  /** Creates a built-in or registered object and its proxy (the creator's reference). */
  #make(typeid: string, args: unknown[]): BaseProxy {
    const conn = this.#connection();
    const id = conn.newId();
    conn.post(CREATE, [id, typeid, args]);
    return adoptProxy({ route: conn.route, typeid, id, conn });
  }

  /** @internal For SyncManager's typed factories. */
  protected makeProxy(typeid: string, args: unknown[]): BaseProxy {
    return this.#make(typeid, args);
  }

  /**
   * Stops the server: a started manager's worker (which is terminated if it does not exit within
   * a second), a `serveForever()` server, or — from a connected client — the remote server.
   * Proxies of the server stop working (their calls reject with `EOFError`).
   */
  async shutdown(): Promise<void> {
    switch (this.#state) {
      case "started": {
        this.#state = "shutdown";
        const conn = this.#conn;
        this.#conn = null;
        const ep = this.#route?.local;
        if (ep && serverBlockValid(ep)) stopServerBlock(ep);
        conn?.close();
        connections.get(this.#route!.serverId)?.close();
        closedServers.add(this.#route!.serverId);
        const p = this.#process!;
        await p.join(1000);
        if (p.isAlive()) {
          p.terminate();
          await p.join();
        }
        return;
      }
      case "serving":
        closedServers.add(this.#route!.serverId);
        this.#server!.shutdown();
        await this.#server!.done;
        return;
      case "connected": {
        const conn = this.#connection();
        await conn.request(SHUTDOWN, null).catch((e) => {
          if (!(e instanceof EOFError)) throw e;
        });
        this.close();
        return;
      }
      case "initial":
        throw new ProcessError("cannot shutdown(): the manager is not started");
    }
  }

  /**
   * Disconnects a connected client (its proxies' connection, in this process): the server
   * releases the managed locks it held. A started manager is shut down instead.
   */
  close(): void {
    if (this.#state === "started" || this.#state === "serving") {
      void this.shutdown();
      return;
    }
    if (this.#state !== "connected") return;
    this.#state = "shutdown";
    closedServers.add(this.#route!.serverId);
    this.#conn?.close();
    connections.get(this.#route!.serverId)?.close();
    this.#conn = null;
  }

  /** `await using manager = ...`: shuts a started or serving manager down; closes a client. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#state === "started" || this.#state === "serving") await this.shutdown();
    else this.close();
  }

  /** A short description, like Python's repr. */
  toString(): string {
    const a = this.#address ? ` address=${fmtAddress(this.#address)}` : "";
    return `<${this.constructor.name} ${this.#state}${a}>`;
  }
}

/**
 * A manager of Python's `SyncManager` types: `dict`, `list`, `Namespace`, `Queue`,
 * `JoinableQueue`, `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Condition`, `Event`,
 * `Barrier`, `Value`, `Array`. Usually made by {@link Manager}; construct it with an `address`
 * to serve or use them over TCP.
 *
 * @example
 * ```ts
 * import { SyncManager } from "jsr:@denomp/multiprocessing";
 * const m = new SyncManager({ address: { hostname: "127.0.0.1", port: 0 }, authkey: "secret" });
 * await m.start();
 * console.log(m.address); // { hostname: "127.0.0.1", port: ... } for other programs
 * const d = m.dict<string, number>();
 * await d.set("x", 1);
 * await m.shutdown();
 * ```
 */
export class SyncManager extends BaseManager {
  /** A managed dict (optionally filled from `init`). */
  dict<K = unknown, V = unknown>(init?: Map<K, V> | [K, V][] | Record<string, V>): DictProxy<K, V> {
    return this.makeProxy("dict", init === undefined ? [] : [init]) as DictProxy<K, V>;
  }
  /** A managed list (optionally filled from `init`). */
  list<T = unknown>(init?: Iterable<T>): ListProxy<T> {
    return this.makeProxy("list", init === undefined ? [] : [Array.from(init)]) as ListProxy<T>;
  }
  /** A managed Namespace (optionally with attributes from `init`). */
  Namespace<T extends Record<string, unknown> = Record<string, unknown>>(
    init?: Partial<T>,
  ): NamespaceProxy<T> {
    return this.makeProxy("Namespace", init === undefined ? [] : [init]) as NamespaceProxy<T>;
  }
  /** A managed Queue (`maxsize` 0: unbounded). */
  Queue<T = unknown>(maxsize = 0): QueueProxy<T> {
    return this.makeProxy("Queue", [checkInt("maxsize", maxsize)]) as QueueProxy<T>;
  }
  /** A managed JoinableQueue. */
  JoinableQueue<T = unknown>(maxsize = 0): JoinableQueueProxy<T> {
    return this.makeProxy("JoinableQueue", [checkInt("maxsize", maxsize)]) as JoinableQueueProxy<T>;
  }
  /** A managed Lock. */
  Lock(): LockProxy {
    return this.makeProxy("Lock", []) as LockProxy;
  }
  /** A managed RLock. */
  RLock(): RLockProxy {
    return this.makeProxy("RLock", []) as RLockProxy;
  }
  /** A managed Semaphore with `value` permits. */
  Semaphore(value = 1): SemaphoreProxy {
    return this.makeProxy("Semaphore", [checkPermits(value)]) as SemaphoreProxy;
  }
  /** A managed BoundedSemaphore with `value` permits. */
  BoundedSemaphore(value = 1): BoundedSemaphoreProxy {
    return this.makeProxy("BoundedSemaphore", [checkPermits(value)]) as BoundedSemaphoreProxy;
  }
  /** A managed Condition, over `lock` (a managed Lock/RLock of this manager) or a new RLock. */
  Condition(lock?: LockProxy): ConditionProxy {
    return this.makeProxy("Condition", lock === undefined ? [] : [lock]) as ConditionProxy;
  }
  /** A managed Event. */
  Event(): EventProxy {
    return this.makeProxy("Event", []) as EventProxy;
  }
  /** A managed Barrier for `parties` (no `action`: a function cannot be sent to the server). */
  Barrier(parties: number, options: { timeout?: number } = {}): BarrierProxy {
    if (!Number.isInteger(parties) || parties < 1) {
      throw new ValueError(`parties must be an integer >= 1: current value is ${parties}`);
    }
    return this.makeProxy("Barrier", [parties, { timeout: options.timeout }]) as BarrierProxy;
  }
  /** A managed Value of `typecode`. */
  Value<T extends Typecode>(typecode: T, value?: CInput<T>): ValueProxy<T> {
    return this.makeProxy("Value", [typecode, value]) as ValueProxy<T>;
  }
  /** A managed Array of `typecode`: a length (zero-filled) or the initial values. */
  Array<T extends Typecode>(
    typecode: T,
    sizeOrValues: number | Iterable<CInput<T>>,
  ): ArrayProxy<T> {
    const init = typeof sizeOrValues === "number" ? sizeOrValues : Array.from(sizeOrValues);
    return this.makeProxy("Array", [typecode, init]) as ArrayProxy<T>;
  }
}

function checkInt(name: string, v: number): number {
  if (!Number.isInteger(v)) {
    throw new TypeError(`${name} must be an integer: current value is ${v}`);
  }
  return v;
}

function checkPermits(v: number): number {
  if (!Number.isInteger(v) || v < 0) {
    throw new ValueError(`semaphore initial value must be >= 0: current value is ${v}`);
  }
  return v;
}

/**
 * Options of {@link Manager}.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager({ authkey: "for proxies only" });
 * ```
 */
export interface ManagerOptions {
  /** The authkey; default: this process tree's key. */
  authkey?: AuthKey;
}

/**
 * Starts a {@link SyncManager} whose server runs in its own (daemon) worker (Python's
 * `multiprocessing.Manager()`). `await using` shuts it down; if its parent dies first, the
 * server dies with it.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const d = manager.dict<string, number[]>();
 * await d.set("xs", [1]);
 * const xs = (await d.get("xs"))!;
 * xs.push(2); // changes the local copy only, as in Python...
 * await d.set("xs", xs); // ...so assign it back
 * ```
 */
export async function Manager(options?: ManagerOptions): Promise<SyncManager> {
  const m = new SyncManager({
    authkey: optionsOf(options, "Manager", "Manager({ authkey })").authkey,
  });
  await m.start();
  return m;
}
