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
import {
  CALL_HEAD,
  callFrame,
  Channel,
  connectUnix,
  H_ACK,
  H_CALL,
  H_CANCEL,
  H_REPLY,
  M_AHEAD,
  M_BATCH,
  M_POST,
  M_SIGNAL,
} from "./os_channel.ts";

/** What the server uses of a queue it sends items from (lib/process does not import lib/queues). */
interface Queue {
  qsize(): number;
  getNowait(): unknown;
  [PUT_BACK](items: unknown[]): boolean;
}
import { API, HandleTable, serveTable } from "./os_handles.ts";
import { FLUSH } from "./os_link.ts";
import { flushAll } from "../core/ring.ts";
import { PUT_BACK } from "../core/handles.ts";
import { ADOPT, adopt } from "./os_adopt.ts";
import { SERVE } from "./os_kinds.ts";

/**
 * Starts the server of `table` for the isolated child named `name`: a daemon thread of this
 * program, and this thread's connection to it. Returns what ends it once the child's OS process
 * is gone (see {@link endAgent}).
 *
 * @example
 * ```ts ignore
 * const end = startAgent(table, "Process-1");
 * void end(proc.status);
 * ```
 */
export function startAgent(
  table: HandleTable,
  name: string,
): (gone: Promise<unknown>) => Promise<void> {
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
  const agent = new Child(spec);
  // Connected now: the socket's file is removed with the parent's listener's folder once the
  // last isolated child is gone, which may be before this server is ended.
  const control = connectUnix(table.path).then((conn) => {
    const ch = new Channel(conn);
    ch.unref();
    return ch;
  }, () => null);
  return (gone) => endAgent(agent, control, gone);
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

/** The most items one batch `get` sends (the first and those sent ahead). */
export const AHEAD_MAX = 128;
/** The bytes a batch aims not to pass: a bigger one lowers the bound of the next ones. */
const BATCH_BYTES = 256 << 10;
/** A batch `get` that comes this soon (ms) after the last reply doubles the bound, up to the max. */
const BACK_TO_BACK_MS = 20;

/** The first item of a batch sent ahead that found the queue empty: none. */
const NONE = Symbol("none");

/**
 * The ends of this server's connections that have held items (each once they are put back),
 * which the shutdown waits for. Only those: the parent's own connection (`ServerCalls`) closes
 * only once the child has exited, after the shutdown.
 */
const ends = new Set<Promise<void>>();

function serve(ch: Channel, table: HandleTable, encoder: Encoder): void {
  const aborts = new Map<number, AbortController>();
  /** Items sent to the child and not acknowledged, by queue, oldest first. */
  const held = new Map<number, unknown[]>();
  /** The bound of a batch and when the last one was sent, by queue. */
  const pace = new Map<number, { k: number; cap: number; last: number }>();
  let open = true;
  /** Acknowledgements (queue, items) not counted yet: they wait for the frame after them. */
  const acks: number[] = [];
  /** Sends a reply; its size in bytes. */
  const reply = (n: number, outcome: number, value: unknown): number => {
    let body: Uint8Array;
    try {
      body = encoder.encode(value, outcome === 1 ? "result" : "error", {
        reportError: outcome !== 1,
      });
    } catch (e) {
      outcome = outcome === 3 ? 3 : 0;
      body = encoder.encode(outcome === 3 ? [(value as unknown[])[0], e] : e, "error", {
        reportError: true,
      });
    }
    const out = new Uint8Array(5 + body.length);
    new DataView(out.buffer).setUint32(0, n, true);
    out[4] = outcome;
    out.set(body, 5);
    ch.send(H_REPLY, out);
    return out.length;
  };
  const end = ch.closed.then(() => {
    open = false;
    for (const c of aborts.values()) c.abort(new DOMException("the child is gone", "AbortError"));
    for (const [id, items] of held) putBack(table.objects[id] as Queue, items.splice(0));
  });
  let waited = false;
  /** A batch get's first item came: the others there (up to the bound) go with it, held. */
  const batch = (n: number, id: number, first: unknown, ahead: boolean) => {
    const q = table.objects[id] as Queue;
    const items = first === NONE ? [] : [first];
    if (!open) return void putBack(q, items);
    const now = performance.now();
    let p = pace.get(id);
    if (!p) pace.set(id, p = { k: 1, cap: AHEAD_MAX, last: -Infinity });
    // Asked for ahead: the child is getting back to back.
    p.k = ahead || now - p.last <= BACK_TO_BACK_MS ? Math.min(2 * p.k, p.cap) : 1;
    for (let more = Math.min(p.k - items.length, q.qsize()); more > 0; more--) {
      try {
        items.push(q.getNowait());
      } catch {
        break; // taken by another consumer meanwhile
      }
    }
    let h = held.get(id);
    if (!h) held.set(id, h = []);
    if (!waited) {
      waited = true;
      ends.add(end);
      void end.then(() => ends.delete(end));
    }
    for (const v of items) h.push(v);
    const bytes = reply(n, 1, items);
    // Big items: as many as fit in BATCH_BYTES (at least one) from now on.
    if (bytes > BATCH_BYTES) p.cap = Math.max(1, Math.floor(items.length * BATCH_BYTES / bytes));
    p.last = performance.now();
  };
  ch.listen((type, body) => {
    const dv = new DataView(body.buffer, body.byteOffset);
    // An acknowledgement counts once the frame it was sent with is here whole: a child killed
    // in the middle of a write leaves the one without the other (the item comes back, and
    // what the child did with it through this server never arrived).
    if (type === H_ACK) return void acks.push(dv.getUint32(0, true), dv.getUint32(4, true));
    for (let i = 0; i < acks.length; i += 2) held.get(acks[i])?.splice(0, acks[i + 1]);
    acks.length = 0;
    const n = dv.getUint32(0, true);
    if (type === H_CANCEL) return aborts.get(n)?.abort(new DOMException("aborted", "AbortError"));
    if (type !== H_CALL) return;
    const mode = body[4];
    let result: unknown, id = -1;
    try {
      const [o, method, args] = loads<[number, string, unknown[]]>(body.subarray(CALL_HEAD));
      id = o;
      // A batch get is aborted when the child goes (its item would reach nobody); a getNowait
      // asked for ahead never waits, so it needs no signal.
      if (mode & M_SIGNAL || (mode & M_BATCH && method === "get")) {
        const c = new AbortController();
        aborts.set(n, c);
        const at = body[5];
        args[at] = { ...(args[at] as object), signal: c.signal };
      }
      result = method === ADOPT ? adopt(encoder, args) : run(table, id, method, args, end);
    } catch (e) {
      result = Promise.reject(e);
    }
    const done = (v: unknown) => {
      aborts.delete(n);
      if (mode & M_BATCH) batch(n, id, v, (mode & M_AHEAD) !== 0);
      else if (!(mode & M_POST)) reply(n, 1, v);
    };
    const failed = (e: unknown) => {
      aborts.delete(n);
      // Asked for ahead: whatever stopped it (an empty queue), the child's next get says.
      if (mode & M_AHEAD) done(NONE);
      else reply(n, mode & M_POST ? 3 : 0, mode & M_POST ? [id, e] : e);
    };
    if (result instanceof Promise) result.then(done, failed);
    else done(result);
  });
}

/**
 * Puts items a dead (or gone) child held back into their queue, at its end: also past `maxsize`
 * and after `close()` (they were in the queue before; see PUT_BACK).
 */
function putBack(q: Queue, items: unknown[]): void {
  if (items.length) q[PUT_BACK](items);
}

/**
 * Ends the server of an isolated child's handles once the child's OS process is gone
 * (`gone` resolved): through `control`, this thread's connection to it, it is asked to put back
 * what the child held (the child's sockets close with its process) and write out what its
 * queues' writers batch; then its thread is terminated (after 2 s without an answer too).
 *
 * @example
 * ```ts ignore
 * await endAgent(agent, control, proc.status);
 * ```
 */
async function endAgent(
  agent: Child,
  control: Promise<Channel | null>,
  gone: Promise<unknown>,
): Promise<void> {
  await gone;
  const ch = await control;
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (ch) {
    const body = new Encoder().encode([-1, BYE, []], "call");
    const call = callFrame(0, body);
    const answered = new Promise<void>((r) => ch.listen((type) => type === H_REPLY && r()));
    ch.send(H_CALL, call);
    const late = new Promise<void>((r) => {
      timer = setTimeout(r, 2000);
      Deno.unrefTimer(timer);
    });
    if (await Promise.race([answered.then(() => 0), ch.closed.then(() => 0), late.then(() => 1)])) {
      lateEnds++;
    }
    clearTimeout(timer);
    ch.close();
  }
  agent.terminate(-9);
}

/** Servers terminated because they did not answer {@link endAgent} within 2 s (for tests). */
let lateEnds = 0;

/** How many handle servers {@link endAgent} had to terminate unanswered (for tests). */
export function agentsEndedLate(): number {
  return lateEnds;
}

/** The call of {@link endAgent}. */
const BYE = "#bye";

/** Answers {@link endAgent} once every other connection has ended and the queues are written. */
async function bye(own: Promise<void>): Promise<void> {
  await Promise.all([...ends].filter((e) => e !== own));
  await flushAll();
}

/** Runs one call on object `id`: a method of its kind's API, or a property read (`.p`) or write (`=p`). */
function run(
  table: HandleTable,
  id: number,
  method: string,
  args: unknown[],
  self: Promise<void>,
): unknown {
  if (method === FLUSH) return flushAll();
  if (method === BYE) return bye(self);
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
