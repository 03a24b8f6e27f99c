/**
 * Isolation "process", parent side: the server of the handles a program passed to an isolated
 * child. It is a thread of the parent (a worker started as any child is, see `core/spawn.ts`)
 * holding its own copies of the handles, listening on a Unix socket the child's link connects to
 * (`os_link.ts`); it runs each call on the real object and sends back the result.
 *
 * Why a thread of its own, one per isolated child: it is the child's stand-in in this program's
 * shared memory. A lock the child acquires is held by this thread's process slot (an `RLock` by
 * its thread too), a queue's held items are its own, and so on; when the child's OS process
 * ends (it exits, crashes or is killed), its parent terminates this thread, so whatever the
 * child held is released or taken over exactly as for a dead thread worker (the next acquirer
 * sees `ownerDied`); a child that exits in order first asks it to write out what its channels'
 * writers still batch (`FLUSH`). It never blocks: every call runs the promise-returning method (a blocking
 * twin in the child waits for its reply there), so one call waiting for a lock does not hold up
 * another releasing it. Calls start in the order they arrive.
 *
 * @module
 */

import { Child, type ChildSpec } from "../core/spawn.ts";
import { current } from "../core/context.ts";
import { Encoder, loads, withHandleModules } from "../core/reduction.ts";
import { SerializationError, ValueError } from "../core/errors.ts";
import { Channel, H_CALL, H_CANCEL, H_REPLY, M_SIGNAL } from "./os_channel.ts";
import { API, HandleTable, serveTable } from "./os_handles.ts";
import { FLUSH } from "./os_link.ts";
import { flushAll } from "../core/ring.ts";
import { ADOPT, adopt } from "./os_adopt.ts";
import { SERVE } from "./os_kinds.ts";

/**
 * Starts the server of `table` for the isolated child named `name`: a daemon thread of this
 * program. Terminate it when the child ends.
 *
 * @example
 * ```ts ignore
 * const agent = startAgent(table, "Process-1");
 * void child.exited.then(() => agent.terminate(-9));
 * ```
 */
export function startAgent(table: HandleTable, name: string): Child {
  const { result: args, modules } = withHandleModules(() =>
    new Encoder().encode([table.path, table.objects, table.kinds], "handles").slice()
  );
  const spec: ChildSpec = {
    target: { module: import.meta.url, name: "serveHandles" },
    kind: "function",
    payload: { args },
    preload: modules,
    name: `${name} handles`,
    daemon: true,
    identity: [...current().identity, 0],
  };
  return new Child(spec);
}

/**
 * The server's body (in its own thread): listens at `path` and serves `objects` (of `kinds`) to
 * whoever connects (the threads of one isolated child). Runs until terminated.
 *
 * @example
 * ```ts ignore
 * await serveHandles(path, [queue, lock], ["Queue", "Lock"]);
 * ```
 */
export async function serveHandles(path: string, objects: object[], kinds: string[]) {
  const table = new HandleTable(path, objects, kinds);
  serveTable(table);
  const encoder = new Encoder(table.codec());
  const listener = Deno.listen({ transport: "unix", path });
  for await (const conn of listener) serve(new Channel(conn), table, encoder);
}

function serve(ch: Channel, table: HandleTable, encoder: Encoder): void {
  const aborts = new Map<number, AbortController>();
  const reply = (n: number, ok: boolean, value: unknown) => {
    let body: Uint8Array;
    try {
      body = encoder.encode(value, ok ? "result" : "error", { reportError: !ok });
    } catch (e) {
      ok = false;
      body = encoder.encode(e, "error", { reportError: true });
    }
    const out = new Uint8Array(5 + body.length);
    new DataView(out.buffer).setUint32(0, n, true);
    out[4] = ok ? 1 : 0;
    out.set(body, 5);
    ch.send(H_REPLY, out);
  };
  ch.listen((type, body) => {
    const n = new DataView(body.buffer, body.byteOffset).getUint32(0, true);
    if (type === H_CANCEL) return aborts.get(n)?.abort(new DOMException("aborted", "AbortError"));
    if (type !== H_CALL) return;
    const mode = body[4];
    let result: unknown;
    try {
      const [id, method, args] = loads<[number, string, unknown[]]>(body.subarray(5));
      if (mode & M_SIGNAL) {
        const c = new AbortController();
        aborts.set(n, c);
        const at = mode >> 2;
        args[at] = { ...(args[at] as object), signal: c.signal };
      }
      result = method === ADOPT ? adopt(encoder, args) : run(table, id, method, args);
    } catch (e) {
      aborts.delete(n);
      return reply(n, false, e);
    }
    if (!(result instanceof Promise)) return reply(n, true, result);
    result.then(
      (v) => (aborts.delete(n), reply(n, true, v)),
      (e) => (aborts.delete(n), reply(n, false, e)),
    );
  });
}

/** Runs one call on object `id`: a method of its kind's API, or a property read (`.p`) or write (`=p`). */
function run(table: HandleTable, id: number, method: string, args: unknown[]): unknown {
  if (method === FLUSH) return flushAll();
  const obj = table.objects[id] as Record<string, unknown>, kind = table.kinds[id];
  const api = API[kind];
  if (obj === undefined || !api) throw new ValueError(`no handle number ${id} is served here`);
  const prop = method.slice(1);
  if (method[0] === "." && api.get.includes(prop)) return obj[prop];
  if (method[0] === "=" && api.set.includes(prop)) return void (obj[prop] = args[0]);
  if (!api.async.includes(method) && !api.now.includes(method)) {
    throw new SerializationError("call", `a ${kind} has no method ${method} a child may call`);
  }
  const hook = SERVE[kind]?.[method]; // a method named at run time (os_kinds.ts)
  const r = hook ? hook(obj, args) : (obj[method] as (...a: unknown[]) => unknown).apply(obj, args);
  if (method !== "acquire") return r;
  // An acquire's guard stays here: the child gets whether it was acquired, and from a dead holder.
  const shape = (g: unknown) =>
    g === false ? false : (g as { ownerDied?: boolean }).ownerDied ? "ownerDied" : true;
  return r instanceof Promise ? r.then(shape) : shape(r);
}
