/**
 * Isolation "process": the handle kinds of other folders (an actor's `Mailbox` and `ActorRef`, a
 * manager's proxies) as they cross to an isolated child, beside the kinds of `os_handles.ts`.
 * They are served the same way (the parent's thread for the child holds the real object and
 * runs the calls), and most of their API is plain methods, listed in {@link MORE_API}. What a
 * list cannot say is here:
 *
 * - `ref.call.method(...)` and `ref.callWith(options).method(...)` name the actor's method at
 *   run time: the child's proxy sends `#call` / `#callWith` with the name, and the server runs
 *   it on the real ref ({@link SERVE}).
 * - A manager proxy's methods are those of its managed type (an `AutoProxy` has any): the
 *   child's proxy is a JS `Proxy` that sends every method it is asked for as `#invoke`; the
 *   server runs it on the real proxy, whose call goes to the manager as any call of this
 *   program does (a manager with no TCP address is reachable from this program only).
 * - A `Mailbox.receive` with a `match` function cannot send the function: refused, naming it.
 *
 * This module imports nothing of the actor or manager folders (process/ may not): the server
 * meets the real objects as decoded values, and calls them by name.
 *
 * @module
 */

import { call } from "./os_link.ts";

/** The name of a manager proxy's handle kind (`PROXY_KIND` in managers/protocol.ts). */
const MANAGER_PROXY = "ManagerProxy";

const none: readonly string[] = [];

/**
 * The kinds this module adds, and their plain API there (the shape of `os_handles.ts`'s `API`).
 *
 * @example
 * ```ts
 * import { MORE_API } from "./os_kinds.ts";
 * console.assert(MORE_API.ActorRef.async.includes("tell"));
 * ```
 */
export const MORE_API = {
  Mailbox: {
    async: ["send", "receive"],
    twins: ["send", "receive"],
    now: ["size"],
    get: ["maxsize"],
    set: none,
  },
  ActorRef: {
    async: ["tell", "ask", "stop", "#call", "#callWith"],
    twins: none,
    now: ["isAlive", "kill", "equals"],
    get: ["name", "pid"],
    set: none,
  },
  [MANAGER_PROXY]: { async: ["#invoke"], twins: none, now: none, get: none, set: none },
} as const;

/** A child's proxy: where its server is and which object it is. */
interface Served {
  readonly path: string;
  readonly id: number;
}

/** `ref.call` / `ref.callWith(options)` of a child's actor ref proxy. */
function methodsOf(p: Served, options?: object): object {
  return new Proxy({}, {
    get(_, method) {
      // `then`: an awaited `ref.call` must not look like a promise.
      if (typeof method !== "string" || method === "then") return undefined;
      return (...args: unknown[]) =>
        options === undefined
          ? call(p.path, p.id, "#call", [method, args])
          : call(p.path, p.id, "#callWith", [options, method, args]);
    },
  });
}

function noMatch(kind: string, method: string, options: unknown): void {
  if (options && typeof (options as { match?: unknown }).match === "function") {
    throw new TypeError(
      `${kind}.${method}({ match }) in a child with isolation "process": a match function cannot be sent to the parent that holds the mailbox (receive without match, and choose here)`,
    );
  }
}

/**
 * What the proxy classes of these kinds add to the methods made from their API (run on the
 * prototype once), and, for a manager proxy, the object that stands for an instance.
 *
 * @example
 * ```ts
 * import { PROXY_EXTRAS } from "./os_kinds.ts";
 * console.assert(typeof PROXY_EXTRAS.ActorRef.proto === "function");
 * ```
 */
export const PROXY_EXTRAS: Record<
  string,
  { proto?: (proto: Record<string, unknown>) => void; wrap?: (p: Served) => object }
> = {
  ActorRef: {
    proto(proto) {
      Object.defineProperty(proto, "call", {
        get(this: Served) {
          return methodsOf(this);
        },
      });
      proto.callWith = function (this: Served, options: object) {
        return methodsOf(this, options ?? {});
      };
    },
  },
  Mailbox: {
    proto(proto) {
      const [receive, receiveSync] = [proto.receive, proto.receiveSync] as ((
        this: Served,
        ...a: unknown[]
      ) => unknown)[];
      proto.receive = function (this: Served, options?: unknown) {
        try {
          noMatch("Mailbox", "receive", options);
        } catch (e) {
          return Promise.reject(e);
        }
        return receive.call(this, ...(options === undefined ? [] : [options]));
      };
      proto.receiveSync = function (this: Served, options?: unknown) {
        noMatch("Mailbox", "receiveSync", options);
        return receiveSync.call(this, ...(options === undefined ? [] : [options]));
      };
    },
  },
  [MANAGER_PROXY]: {
    // Any method name is a call of the managed object (an AutoProxy's are not known here).
    wrap: (p) =>
      new Proxy(p, {
        get(target, key, receiver) {
          if (typeof key !== "string" || key in target || key === "then") {
            return Reflect.get(target, key, receiver);
          }
          return (...args: unknown[]) => call(target.path, target.id, "#invoke", [key, args]);
        },
      }),
  },
};

type Hook = (obj: Record<string, unknown>, args: unknown[]) => unknown;

const invoke = (obj: Record<string, unknown>, method: unknown, args: unknown): unknown => {
  const f = typeof method === "string" && !method.startsWith("#") ? obj[method] : undefined;
  if (typeof f !== "function" || !Array.isArray(args)) {
    throw new TypeError(`no method ${String(method)} to call here`);
  }
  return f.apply(obj, args);
};

/**
 * The server's side of the methods named at run time: how each runs on the real object.
 *
 * @example
 * ```ts
 * import { SERVE } from "./os_kinds.ts";
 * console.assert(typeof SERVE.ActorRef["#call"] === "function");
 * ```
 */
export const SERVE: Record<string, Record<string, Hook>> = {
  ActorRef: {
    "#call": (ref, [method, args]) => invoke(ref.call as Record<string, unknown>, method, args),
    "#callWith": (ref, [options, method, args]) =>
      invoke((ref.callWith as (o: unknown) => Record<string, unknown>)(options), method, args),
  },
  [MANAGER_PROXY]: { "#invoke": (p, [method, args]) => invoke(p, method, args) },
};
