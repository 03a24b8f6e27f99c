/**
 * The objects a manager server holds for `SyncManager`'s built-in types (Python's manager serves
 * `dict`, `list`, `threading.Lock`, `queue.Queue`, ...): {@link BUILTINS} names each typeid's
 * maker and exposed methods; the objects are `sync.ts`'s, `queue.ts`'s and `containers.ts`'s,
 * and who calls them is `caller.ts`'s. They live in the server's isolate and
 * are reached only through proxies (lib/managers/managers.ts), so they are plain in-isolate objects: a
 * `Map`, an array, promise-based waits.
 *
 * Why not the shared-memory primitives of lib/sync/ and lib/queues/ here: ownership. Every
 * client of a server is the same process to them (the server's), while a managed lock must know
 * which *client* holds it, to release it when that client's connection drops (a worker that
 * died, a program killed mid-call), and which client-side thread, for `RLock` and `Condition`.
 * So each call runs with a `Caller` (`caller.ts`): the client it comes from, the client-side thread
 * ident, and an abort signal that fires when the call is cancelled or the client goes away.
 *
 * Values are copies: a value read out of a served container is a copy in the reader's process,
 * and changing it changes nothing here (see the module doc of lib/managers/managers.ts).
 *
 * @module
 */

import { callerIfAny } from "./caller.ts";
import {
  ServedBarrier,
  ServedCondition,
  ServedEvent,
  ServedLock,
  ServedSemaphore,
} from "./sync.ts";
import { ServedQueue } from "./queue.ts";
import { ServedArray, ServedDict, ServedList, ServedNamespace, ServedValue } from "./containers.ts";
import type { Typecode } from "../../memory/sharedctypes.ts";

/** The built-in typeids a server serves: how to make each, and the methods its proxies call. */
export const BUILTINS: ReadonlyMap<
  string,
  { make: (...args: never[]) => object; exposed: readonly string[] }
> = new Map<string, { make: (...args: never[]) => object; exposed: readonly string[] }>([
  ["dict", {
    make: (init?: unknown) => new ServedDict(init),
    exposed: [
      "get",
      "set",
      "delete",
      "has",
      "keys",
      "values",
      "items",
      "update",
      "pop",
      "setdefault",
      "clear",
      "len",
      "copy",
    ],
  }],
  ["list", {
    make: (init?: unknown) => new ServedList(init),
    exposed: [
      "get",
      "set",
      "append",
      "extend",
      "insert",
      "pop",
      "remove",
      "index",
      "count",
      "sort",
      "reverse",
      "len",
      "slice",
    ],
  }],
  ["Namespace", {
    make: (init?: unknown) => new ServedNamespace(init),
    exposed: ["get", "set", "delete", "has", "keys", "toObject"],
  }],
  ["Queue", { make: (maxsize?: unknown) => new ServedQueue(maxsize), exposed: QUEUE() }],
  ["JoinableQueue", {
    make: (maxsize?: unknown) => new ServedQueue(maxsize),
    exposed: [...QUEUE(), "taskDone", "join"],
  }],
  ["Lock", { make: () => new ServedLock(false), exposed: ["acquire", "release", "locked"] }],
  ["RLock", { make: () => new ServedLock(true), exposed: ["acquire", "release", "locked"] }],
  ["Semaphore", {
    make: (v?: unknown) => new ServedSemaphore(v ?? 1, false),
    exposed: ["acquire", "release", "getValue", "locked"],
  }],
  ["BoundedSemaphore", {
    make: (v?: unknown) => new ServedSemaphore(v ?? 1, true),
    exposed: ["acquire", "release", "getValue", "locked"],
  }],
  ["Condition", {
    make: (lock?: unknown) => {
      const l = lock === undefined || lock === null ? undefined : callerIfAny()?.resolve(lock);
      if (l !== undefined && !(l instanceof ServedLock)) {
        throw new TypeError("a managed Condition takes a Lock or RLock of the same manager");
      }
      return new ServedCondition(l);
    },
    exposed: ["acquire", "release", "wait", "notify", "notifyAll"],
  }],
  ["Event", { make: () => new ServedEvent(), exposed: ["isSet", "set", "clear", "wait"] }],
  ["Barrier", {
    make: (parties: unknown, options?: { timeout?: number }) => new ServedBarrier(parties, options),
    exposed: ["wait", "reset", "abort", "parties", "nWaiting", "broken"],
  }],
  ["Value", {
    make: (tc: Typecode, v?: unknown) => new ServedValue(tc, v),
    exposed: ["get", "set", "typecode"],
  }],
  ["Array", {
    make: (tc: Typecode, xs: unknown) => new ServedArray(tc, xs),
    exposed: ["len", "get", "set", "slice", "typecode"],
  }],
]);

function QUEUE(): string[] {
  return ["put", "get", "putNowait", "getNowait", "qsize", "empty", "full"];
}
