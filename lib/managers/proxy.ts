/**
 * The proxy base: what every proxy is (a handle on an object in a manager's server, by server
 * id, type id and object id), how it travels (a registered handle kind: a copy in flight holds
 * a reference until the process that rebuilds it claims it), and the proxy of a registered
 * class, whose method names become calls to the server.
 *
 * @module
 */

import { current } from "../core/context.ts";
import { SerializationError } from "../core/errors.ts";
import { registerHandle } from "../core/reduction.ts";
import { connectionFor, connections, type ManagerConn, type Route } from "./client.ts";
import {
  CLAIM,
  DECREF,
  INCREF,
  netDecoding,
  netEncoding,
  type ObjId,
  PROXY_KIND,
} from "./protocol.ts";
import { sameBytes } from "../core/bytes.ts";

/** What a proxy is inside: its route, type and object id, and the connection it calls on. */
export interface Core {
  route: Route;
  typeid: string;
  id: ObjId;
  conn: ManagerConn | null;
}

/** What a proxy reduces to. Local parts (`r`, `g`, `k`) are left out when sent to another program. */
interface ProxyDesc {
  /** Server id. */
  s: string;
  /** Type id. */
  t: string;
  /** Object id. */
  i: ObjId;
  /** Local endpoint: server block offset and tag. */
  r?: number;
  g?: number;
  /** TCP address. */
  a?: { hostname: string; port: number };
  /** The authkey, when it is not this process tree's default. */
  k?: Uint8Array;
}

let creatingCore: Core | null = null;
let coreOfTarget!: (p: BaseProxy) => Core;
/** The AutoProxy behind each JS `Proxy` handed out for a registered class. */
export const autoTargets = new WeakMap<object, BaseProxy>();

/** The core of a proxy: a typed one, or the JS `Proxy` of an AutoProxy. */
export function coreOf(p: object): Core {
  return coreOfTarget(autoTargets.get(p) ?? (p as BaseProxy));
}

/** A call on the proxy's object; `thread` for calls whose ownership is per client-side thread. */
export function invoke(
  p: BaseProxy,
  method: string,
  args: unknown[],
  thread?: number,
  signal?: AbortSignal,
): Promise<unknown> {
  const core = coreOfTarget(p);
  let conn = core.conn;
  if (!conn || conn.closed) {
    try {
      conn = core.conn = connectionFor(core.route);
    } catch (e) {
      return Promise.reject(e);
    }
  }
  return conn.call(core.id, method, args, thread, signal, core.typeid);
}

// Each live proxy object holds one reference on its server; it is dropped when the proxy is
// garbage-collected (on the connection it was taken on, if that is still open).
const proxyFinalizer = new FinalizationRegistry<{ serverId: string; id: ObjId }>((h) => {
  const c = connections.get(h.serverId);
  if (c && !c.closed) {
    try {
      c.post(DECREF, h.id);
    } catch { /* the process is going away */ }
  }
});

/**
 * The base class of every proxy: a handle on an object that lives in a manager's server. Every
 * method is a call to the server and returns a Promise. Proxies are made by a manager
 * (`manager.dict()`, `manager.create(typeid)`) and can be sent to other workers in `Process`
 * args or through queues, pipes and other managed containers.
 *
 * Values passed to and returned by a proxy are copies: mutating a value read out of a proxy
 * does not change the managed object — assign it back (see the module documentation).
 *
 * @example
 * ```ts
 * import { BaseProxy, Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * console.assert(manager.list() instanceof BaseProxy);
 * ```
 */
export class BaseProxy {
  #core: Core;

  /** Not for direct use: proxies come from a manager. */
  constructor() {
    if (!creatingCore) throw new TypeError("proxies are made by a manager (e.g. manager.dict())");
    this.#core = creatingCore;
    creatingCore = null;
  }

  static {
    coreOfTarget = (p) => p.#core;
  }

  /** A short description, like Python's repr. */
  toString(): string {
    const c = this.#core;
    return `<${this.constructor.name} of '${c.typeid}' object ${c.id} on manager ${c.route.serverId}>`;
  }
}

/** The typed proxy class of each built-in type id (filled by lib/managers/typed_proxies.ts). */
export const PROXY_CLASSES = new Map<string, new () => BaseProxy>();

function makeProxy(core: Core): BaseProxy {
  const Cls = PROXY_CLASSES.get(core.typeid);
  creatingCore = core;
  try {
    if (Cls) return new Cls();
    const target = new AutoProxy();
    const p = new Proxy(target, autoHandler);
    autoTargets.set(p, target);
    return p;
  } finally {
    creatingCore = null;
  }
}

/** A new proxy holding a reference: `create` took it (the creator) or `claim` does (a rebuild). */
export function adoptProxy(core: Core): BaseProxy {
  const p = makeProxy(core);
  // An AutoProxy's target lives exactly as long as the Proxy the user holds.
  proxyFinalizer.register(autoTargets.get(p) ?? p, { serverId: core.route.serverId, id: core.id });
  return p;
}

registerHandle<BaseProxy, ProxyDesc>({
  name: PROXY_KIND,
  // The module that completes the proxies: a worker reviving a proxy needs the typed ones too.
  module: new URL("./typed_proxies.ts", import.meta.url).href,
  cls: BaseProxy,
  reduce(p) {
    const core = coreOf(p);
    if (core.route.python) {
      throw new TypeError(
        "a proxy of a Python manager's object cannot be sent: it works in the process that made it",
      );
    }
    // The copy in flight holds a reference until the process that rebuilds it claims it: the
    // sender may drop its own proxy before then. (On the same connection as anything the sender
    // does afterwards, so the server always sees the incref before the sender's decref.)
    try {
      let conn = core.conn;
      if (!conn || conn.closed) conn = core.conn = connectionFor(core.route);
      conn.post(INCREF, core.id);
    } catch {
      // The server is gone: the proxy still travels (as in Python), and its calls say so.
    }
    const d: ProxyDesc = { s: core.route.serverId, t: core.typeid, i: core.id };
    if (core.route.address) d.a = { ...core.route.address };
    if (netEncoding === 0) {
      if (core.route.local) (d.r = core.route.local.off), (d.g = core.route.local.tag);
      const key = core.route.authkey;
      if (key && !sameBytes(key, current().authkey)) d.k = key;
    }
    return d;
  },
  rebuild(d) {
    const route = routeOf(d);
    const core: Core = { route, typeid: d.t, id: d.i, conn: null };
    const p = adoptProxy(core);
    try {
      core.conn = connectionFor(route);
      core.conn.post(CLAIM, core.id);
    } catch {
      // The server is gone: the proxy still arrives, and its calls say so.
    }
    return p;
  },
});

/** Checks a received descriptor (it may come from another program) and makes its route. */
function routeOf(d: unknown): Route {
  const bad = (why: string) =>
    new SerializationError("proxy", `malformed proxy descriptor: ${why}`);
  if (d === null || typeof d !== "object") throw bad("not an object");
  const o = d as Record<string, unknown>;
  if (typeof o.s !== "string" || o.s.length > 64) throw bad("server id");
  if (typeof o.t !== "string" || o.t.length > 256) throw bad("type id");
  if (
    !(typeof o.i === "number" && Number.isSafeInteger(o.i)) &&
    !(typeof o.i === "string" && o.i.length <= 64)
  ) {
    throw bad("object id");
  }
  const route: Route = { serverId: o.s };
  if (o.a !== undefined) {
    const a = o.a as Record<string, unknown>;
    if (
      a === null || typeof a !== "object" || typeof a.hostname !== "string" ||
      typeof a.port !== "number" || !Number.isInteger(a.port) || a.port < 0 || a.port > 65535
    ) throw bad("address");
    route.address = { hostname: a.hostname, port: a.port };
  }
  // Local parts only from this program (another program's heap offsets mean nothing here).
  if (netDecoding === 0) {
    if (typeof o.r === "number" && typeof o.g === "number") route.local = { off: o.r, tag: o.g };
    if (o.k instanceof Uint8Array) route.authkey = o.k;
  }
  // A connection already open to that server knows the best way there (e.g. the address we
  // connected to, rather than the 0.0.0.0 the server bound).
  const known = connections.get(route.serverId);
  if (known && !known.closed) {
    if (known.route.address) route.address = known.route.address;
    route.authkey ??= known.route.authkey;
    route.local ??= known.route.local;
  }
  return route;
}

/**
 * The proxy of a registered class: any method name becomes a call to the server (which refuses
 * names that are not exposed with a `RemoteError`).
 */
class AutoProxy extends BaseProxy {}

const NOT_METHODS = new Set(["then", "toJSON", "catch", "finally"]);
const autoMethods = new WeakMap<object, Map<string, (...args: unknown[]) => Promise<unknown>>>();

const autoHandler: ProxyHandler<AutoProxy> = {
  get(target, prop) {
    if (typeof prop === "symbol" || prop in target) {
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" && prop !== "constructor" ? v.bind(target) : v;
    }
    // `then` must stay undefined, or `await proxy` would call the server.
    if (NOT_METHODS.has(prop)) return undefined;
    let methods = autoMethods.get(target);
    if (!methods) autoMethods.set(target, methods = new Map());
    let m = methods.get(prop);
    if (!m) methods.set(prop, m = (...args: unknown[]) => invoke(target, prop, args));
    return m;
  },
};

/**
 * The async view of a registered class `T`: each public method (not starting with `_`) becomes
 * a method returning a Promise of its result.
 *
 * @example
 * ```ts ignore
 * export class Counter {
 *   n = 0;
 *   inc(by: number) {
 *     return (this.n += by);
 *   }
 * }
 * const c: Proxied<Counter> = manager.create<Counter>("Counter");
 * const n: number = await c.inc(1);
 * ```
 */
export type Proxied<T> =
  & BaseProxy
  & {
    [
      K in keyof T as K extends `_${string}` ? never
        : T[K] extends (...args: never[]) => unknown ? K
        : never
    ]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;
  };

/**
 * The type of the factory method `BaseManager.register(typeid, C)` adds to a manager class, for
 * declaring it in TypeScript: `declare Counter: ProxyFactory<typeof Counter>;`.
 *
 * @example
 * ```ts ignore
 * class MyManager extends BaseManager {
 *   declare Counter: ProxyFactory<typeof Counter>;
 * }
 * MyManager.register("Counter", Counter);
 * ```
 */
export type ProxyFactory<C extends abstract new (...args: never[]) => unknown> = (
  ...args: ConstructorParameters<C>
) => Proxied<InstanceType<C>>;
