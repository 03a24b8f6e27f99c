/**
 * Isolation "process", child side: the link from an isolate of an isolated child to the thread of
 * its parent that serves the handles it was given (`os_agent.ts`). The proxies of
 * `os_handles.ts` call through it.
 *
 * Why a helper thread does the socket I/O: the blocking twins (`getSync`, `acquireSync`, ...)
 * and the methods that return at once (`qsize()`, `locked()`) must answer while this thread
 * cannot run its event loop. So every call, blocking or not, goes through one outbox in shared
 * memory (`os_link_outbox.ts`) to one thread of the link (`os_link_worker.ts`) that owns the
 * socket: a promise's reply comes back as a message, a blocking call's is written into a shared
 * buffer while this thread waits in `Atomics.wait`. One road, one socket: calls reach the server
 * in the order they were made.
 *
 * Queues go faster than a round trip per item both ways, as Python's do:
 * - a put on an unbounded queue is not waited for (as Python's feeder thread sends it): the
 *   server answers only a failure, which the next call on the queue throws;
 * - a `get` may be answered with a batch: the server sends the items that are there, up to a
 *   bound that grows while this child gets back to back (`os_agent.ts`). The ones after the first
 *   wait here for the next `get`s; the server holds each until this child acknowledges that a
 *   `get` returned it, and puts back those it still holds when the child's socket closes (it
 *   died, was terminated, or exited without getting them). Acknowledgements go in the outbox
 *   before the next call, so whatever the child did through the parent with an item reaches the
 *   parent after the item's acknowledgement: an item is neither lost nor seen twice there.
 *
 * @module
 */

import { Encoder, loads } from "../core/reduction.ts";
import { ProcessError } from "../core/errors.ts";
import { beforeExit } from "../core/context.ts";
import {
  callFrame,
  H_ACK,
  H_BROKEN,
  H_CALL,
  H_CANCEL,
  M_AHEAD,
  M_BATCH,
  M_POST,
  M_SIGNAL,
  M_SYNC,
} from "./os_channel.ts";
import { OutboxReader, OutboxWriter } from "./os_link_outbox.ts";

/** How long one `Atomics.wait` of a blocking call lasts (it waits again until its reply is there). */
const SLICE_MS = 250;
/**
 * A blocking call whose link thread has not beaten for this long gives up: the thread is dead
 * (it beats every `BEAT_MS` of os_link_worker.ts, whatever it is doing), and its reply would
 * never come. Generous: a thread of a loaded machine may not run for a while.
 */
const DEAD_AFTER_MS = 3000;
/** {@link DEAD_AFTER_MS} for a link thread that has not beaten yet (it may still be starting). */
const BOOT_MS = 30_000;
/** A batch of at least this many items makes the next one be asked for ahead (see `#took`). */
const AHEAD_FROM = 8;
/** How many batches asked for ahead may be on their way at once, per queue. */
const AHEAD_CALLS = 2;

/** The call that asks the server to write out what its channels' writers still hold. */
export const FLUSH = "#flush";

const WORKER = new URL("./os_link_worker.ts", import.meta.url);

/** The codec of calls: references to served objects cross, handles made in the child do not. */
const encoder = new Encoder({
  handles: (kind) =>
    kind === "IsolatedHandle" ||
    `a ${kind} made in a child with isolation "process" cannot be sent to its parent (only handles the parent passed can)`,
});

/** How a call's reply is handed over: its value, or its error. */
type Settle = [(v: unknown) => void, (e: unknown) => void];

/** A `getNowait` sent ahead for a queue, not answered yet. */
interface Fetch {
  done: boolean;
  promise: Promise<void>;
}

/** One link to one server. */
class Link {
  readonly #path: string;
  #out: OutboxWriter | null = null;
  /** The replies, which the link thread writes into shared memory. */
  #in: OutboxReader | null = null;
  #worker: Worker | null = null;
  /** The link thread's heartbeat: a word it adds one to while it lives. */
  #beat = new Int32Array(new SharedArrayBuffer(4));
  #next = 1;
  readonly #pending = new Map<number, Settle>();
  #broken: Error | null = null;
  /** Failures of calls nobody awaited ({@link post}), by object: its next call throws them. */
  readonly #deferred = new Map<number, unknown>();
  /** Items sent ahead by the server, by queue, oldest first (see the module doc). */
  readonly #ahead = new Map<number, unknown[]>();
  /** The size of the last batch, by queue. */
  readonly #lastBatch = new Map<number, number>();
  /** The `getNowait`s sent ahead, by queue, oldest first. */
  readonly #fetching = new Map<number, Fetch[]>();
  /** Items `get` returned and the server was not told of yet, by queue. */
  readonly #acks = new Map<number, number>();

  constructor(path: string) {
    this.#path = path;
    beforeExit(() => this.#finish());
  }

  /** The outbox (and the link thread, started on first use). */
  #outbox(): OutboxWriter {
    if (this.#out) return this.#out;
    const out = this.#out = new OutboxWriter(), inbox = new OutboxWriter();
    this.#in = new OutboxReader(inbox.sab);
    const w = this.#worker = new Worker(WORKER, { type: "module", name: "denomp-handle-link" });
    w.postMessage({ path: this.#path, out: out.sab, inbox: inbox.sab, beat: this.#beat });
    w.onerror = (e) => {
      e.preventDefault();
      this.#break(new ProcessError(`the link to the parent's handles failed: ${e.message}`));
    };
    void this.#pumpIn();
    return out;
  }

  /** Hands the replies over as they come, while this thread runs its event loop. */
  async #pumpIn(): Promise<void> {
    for (const inbox = this.#in!;;) {
      await inbox.ready();
      this.#drain();
    }
  }

  /** Hands over every reply there is. */
  #drain(): void {
    const frames = this.#in!.take();
    if (!frames) return;
    const dv = new DataView(frames.buffer);
    for (let at = 0; at < frames.length;) {
      const len = dv.getUint32(at, true), type = frames[at + 4];
      const body = frames.subarray(at + 5, at + 5 + len);
      at += 5 + len;
      if (type === H_BROKEN) this.#break(new ProcessError(new TextDecoder().decode(body)));
      else this.#settle(body);
    }
  }

  /**
   * Blocks this thread, handing replies over, until `done()`, while the link thread lives: one
   * that died (its error, or ended) leaves nobody to reply, and a thread blocked here cannot hear
   * of it as a message. `what` names the call in the error.
   */
  #waitFor(done: () => boolean, what: string): void {
    let beat = Atomics.load(this.#beat, 0), alive = performance.now();
    for (;;) {
      this.#drain();
      if (done()) return;
      if (this.#broken) throw this.#broken;
      this.#in!.waitSync(SLICE_MS);
      const b = Atomics.load(this.#beat, 0), now = performance.now();
      if (b !== beat) (beat = b), (alive = now);
      else if (now - alive > (b ? DEAD_AFTER_MS : BOOT_MS)) {
        const limit = b ? DEAD_AFTER_MS : BOOT_MS;
        this.#drain();
        if (done()) return;
        this.#worker?.terminate();
        this.#break(
          new ProcessError(
            `the link to the parent's handles died (its thread has not run for ${limit} ms): ${what} got no reply`,
          ),
        );
        throw this.#broken;
      }
    }
  }

  killThread(): void {
    this.#outbox();
    this.#worker!.terminate();
  }

  breakThread(): void {
    this.#outbox();
    this.#worker!.postMessage({ throw: true });
  }

  /** Puts a frame into the outbox, after the acknowledgements not sent yet. */
  #send(type: number, body: Uint8Array): void {
    try {
      this.#append(type, body);
    } catch (e) {
      // An outbox whose lock a dead thread kept (os_link_outbox.ts): no call gets through now.
      if (e instanceof ProcessError) this.#break(e);
      throw e;
    }
  }

  #append(type: number, body: Uint8Array): void {
    const out = this.#outbox();
    if (!this.#acks.size) return out.append(type, body);
    const pre: [number, Uint8Array][] = [];
    for (const [id, n] of this.#acks) {
      const b = new Uint8Array(8), dv = new DataView(b.buffer);
      dv.setUint32(0, id, true);
      dv.setUint32(4, n, true);
      pre.push([H_ACK, b]);
    }
    this.#acks.clear();
    out.append(type, body, pre);
  }

  #break(err: Error): void {
    this.#broken ??= err;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const [, reject] of pending) reject(this.#broken);
  }

  /** The encoded call (a fresh buffer). */
  #encode(n: number, mode: number, id: number, method: string, args: unknown[], at = 0) {
    return callFrame(n, encoder.encode([id, method, args], `${method}() arguments`), mode, at);
  }

  /** Throws what a call on `id` nobody awaited failed with, once. */
  #checkDeferred(id: number): void {
    if (!this.#deferred.size || !this.#deferred.has(id)) return;
    const e = this.#deferred.get(id);
    this.#deferred.delete(id);
    throw e;
  }

  post(id: number, method: string, args: unknown[]): void {
    if (this.#broken) throw this.#broken;
    this.#checkDeferred(id);
    this.#send(H_CALL, this.#encode(this.#next++, M_POST, id, method, args));
  }

  /**
   * Before the child exits: the server has run every call nobody awaited, and written what it
   * sent on the child's behalf into shared memory (a channel's writer may batch).
   */
  async #finish(): Promise<void> {
    if (this.#out && !this.#broken) await this.call(-1, FLUSH, []).catch(() => {});
  }

  call(id: number, method: string, args: unknown[], batch = 0): Promise<unknown> {
    if (this.#broken) return Promise.reject(this.#broken);
    try {
      this.#checkDeferred(id);
    } catch (e) {
      return Promise.reject(e);
    }
    let mode = batch, signal: AbortSignal | undefined, at = 0;
    // An abort signal cannot cross: the call says which argument held one, and a cancel follows.
    const i = args.findIndex((a) => a !== null && typeof a === "object" && "signal" in a);
    if (i >= 0 && i < 256) {
      const { signal: s, ...rest } = args[i] as { signal?: AbortSignal };
      args = args.slice();
      args[i] = rest;
      if (s) {
        if (s.aborted) return Promise.reject(s.reason);
        signal = s;
        mode |= M_SIGNAL;
        at = i;
      }
    }
    const n = this.#next++;
    let body: Uint8Array;
    try {
      body = this.#encode(n, mode, id, method, args, at);
    } catch (e) {
      return Promise.reject(e);
    }
    const p = new Promise<unknown>((resolve, reject) => this.#pending.set(n, [resolve, reject]));
    this.#send(H_CALL, body);
    if (signal) {
      const onAbort = () => {
        const c = new Uint8Array(4);
        new DataView(c.buffer).setUint32(0, n, true);
        if (this.#pending.has(n)) this.#send(H_CANCEL, c);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      void p.finally(() => signal.removeEventListener("abort", onAbort)).catch(() => {});
    }
    return p;
  }

  callSync(id: number, method: string, args: unknown[], batch = 0): unknown {
    if (this.#broken) throw this.#broken;
    this.#checkDeferred(id);
    const n = this.#next++;
    const body = this.#encode(n, M_SYNC | batch, id, method, args);
    let done = false, ok = true, value: unknown;
    this.#pending.set(n, [(v) => {
      done = true;
      value = v;
    }, (e) => {
      done = true;
      ok = false;
      value = e;
    }]);
    this.#send(H_CALL, body);
    this.#waitFor(() => done, `${method}()`);
    if (!ok) throw value;
    return value;
  }

  /**
   * `get` (or `getNowait`) on queue `id`: the oldest item sent ahead, else a call whose reply
   * may bring more (see the module doc).
   */
  get(id: number, method: string, args: unknown[], sync: boolean): unknown {
    const ahead = this.#ahead.get(id);
    if (ahead?.length) {
      this.#checkDeferred(id);
      const v = this.#took(id, ahead);
      return sync ? v : Promise.resolve(v);
    }
    const f = this.#fetching.get(id)?.[0];
    if (f) {
      // Items asked for ahead are on their way: they come before any other.
      if (!sync) return f.promise.then(() => this.get(id, method, args, false));
      this.#waitFor(() => f.done, `${method}()`);
      return this.get(id, method, args, true);
    }
    if (sync) return this.#arrived(id, this.callSync(id, method, args, M_BATCH) as unknown[]);
    return this.call(id, method, args, M_BATCH).then((items) =>
      this.#arrived(id, items as unknown[])
    );
  }

  /** `getMany` on queue `id`: the items sent ahead when there are, else a call. */
  getMany(id: number, args: unknown[], sync: boolean): unknown {
    const ahead = this.#ahead.get(id);
    if (!ahead?.length) {
      const f = this.#fetching.get(id)?.[0];
      if (f && !sync) return f.promise.then(() => this.getMany(id, args, false));
      if (f) this.#waitFor(() => f.done, "getMany()");
      else return sync ? this.callSync(id, "getMany", args) : this.call(id, "getMany", args);
      return this.getMany(id, args, sync);
    }
    const max = (args[0] as { max?: number } | undefined)?.max ?? ahead.length;
    if (!Number.isInteger(max) || max < 1) {
      // The queue's own check says what is wrong.
      return sync ? this.callSync(id, "getMany", args) : this.call(id, "getMany", args);
    }
    const got = this.#took(id, ahead, Math.min(max, ahead.length)) as unknown[];
    return sync ? got : Promise.resolve(got);
  }

  /** The items sent ahead for queue `id` and not got yet. */
  aheadOf(id: number): number {
    return this.#ahead.get(id)?.length ?? 0;
  }

  /** A batch arrived: its items join those sent ahead; the oldest is the get's (order kept). */
  #arrived(id: number, items: unknown[]): unknown {
    return this.#took(id, this.#keep(id, items));
  }

  /** Adds `items` (a batch) to those sent ahead for queue `id`. */
  #keep(id: number, items: unknown[]): unknown[] {
    let ahead = this.#ahead.get(id);
    if (!ahead) this.#ahead.set(id, ahead = []);
    for (const v of items) ahead.push(v);
    this.#lastBatch.set(id, items.length);
    return ahead;
  }

  /**
   * The oldest item sent ahead (or the `many` oldest, in an array), acknowledged with the next
   * frame. Once the items left here are fewer than the last batch brought (of 8 or more), the
   * next one is asked for (a `getNowait`), so that it is on its way meanwhile: at most one batch
   * here and {@link AHEAD_CALLS} on their way.
   */
  #took(id: number, ahead: unknown[], many = 0): unknown {
    const v = many ? ahead.splice(0, many) : ahead.shift();
    const last = this.#lastBatch.get(id)!;
    if (last >= AHEAD_FROM && ahead.length < last && this.#fetchingOf(id) < AHEAD_CALLS) {
      this.#fetchAhead(id);
    }
    // Counted after that call went: its acknowledgement must not reach the server before the
    // caller has the item (a child killed then would lose it: acknowledged, and not used).
    this.#acks.set(id, (this.#acks.get(id) ?? 0) + (many || 1));
    return v;
  }

  #fetchAhead(id: number): void {
    const n = this.#next++;
    const f: Fetch = { done: false, promise: Promise.resolve() };
    f.promise = new Promise<void>((resolve) => {
      const end = () => {
        f.done = true;
        const list = this.#fetching.get(id)!;
        list.splice(list.indexOf(f), 1);
        if (!list.length) this.#fetching.delete(id);
        resolve();
      };
      this.#pending.set(n, [(items) => {
        this.#keep(id, items as unknown[]);
        end();
      }, end]);
    });
    const list = this.#fetching.get(id);
    if (list) list.push(f);
    else this.#fetching.set(id, [f]);
    this.#send(H_CALL, this.#encode(n, M_BATCH | M_AHEAD, id, "getNowait", []));
  }

  /** How many `getNowait`s sent ahead for queue `id` are on their way. */
  #fetchingOf(id: number): number {
    return this.#fetching.get(id)?.length ?? 0;
  }

  /** A reply's value, or its error thrown. */
  #outcome(reply: Uint8Array): unknown {
    const value = loads(reply.subarray(5));
    if (reply[4] !== 1) throw value;
    return value;
  }

  #settle(reply: Uint8Array): void {
    if (reply[4] === 3) {
      // A call nobody awaited failed: the next call on its object throws it.
      const [id, e] = loads<[number, unknown]>(reply.subarray(5));
      this.#deferred.set(id, e);
      return;
    }
    const n = new DataView(reply.buffer, reply.byteOffset).getUint32(0, true);
    const p = this.#pending.get(n);
    if (!p) return;
    this.#pending.delete(n);
    let v: unknown;
    try {
      v = this.#outcome(reply);
    } catch (e) {
      return p[1](e);
    }
    p[0](v);
  }
}

const links = new Map<string, Link>();

function linkOf(path: string): Link {
  let l = links.get(path);
  if (!l) links.set(path, l = new Link(path));
  return l;
}

/**
 * Calls `method(...args)` on object `id` of the server at `path`; its result (or error).
 *
 * @example
 * ```ts ignore
 * const ok = await call(ref.path, ref.id, "acquire", [{ timeout: 100 }]);
 * ```
 */
export function call(path: string, id: number, method: string, args: unknown[]): Promise<unknown> {
  return linkOf(path).call(id, method, args);
}

/**
 * {@link call} for a caller that does not wait for the reply (a put on an unbounded queue, as
 * Python's feeder thread does it): the server answers only a failure, which the next call on the
 * same object throws; before the child exits, the server has run every such call.
 *
 * @example
 * ```ts ignore
 * post(ref.path, ref.id, "put", [item]);
 * ```
 */
export function post(path: string, id: number, method: string, args: unknown[]): void {
  linkOf(path).post(id, method, args);
}

/**
 * {@link call}, blocking this thread until the reply: for the `Sync` twins and the methods that
 * return at once.
 *
 * @example
 * ```ts ignore
 * const n = callSync(ref.path, ref.id, "qsize", []) as number;
 * ```
 */
export function callSync(path: string, id: number, method: string, args: unknown[]): unknown {
  return linkOf(path).callSync(id, method, args);
}

/**
 * A queue's `get`/`getNowait` (`method`), blocking when `sync`: an item sent ahead when there is
 * one, else a call the server may answer with a batch (see the module doc).
 *
 * @example
 * ```ts ignore
 * const item = await getItem(ref.path, ref.id, "get", [{ timeout: 100 }], false);
 * ```
 */
export function getItem(
  path: string,
  id: number,
  method: string,
  args: unknown[],
  sync: boolean,
): unknown {
  return linkOf(path).get(id, method, args, sync);
}

/**
 * A queue's `getMany`, blocking when `sync`: the items sent ahead when there are, else a call.
 *
 * @example
 * ```ts ignore
 * const items = getItems(ref.path, ref.id, [{ max: 10 }], true) as unknown[];
 * ```
 */
export function getItems(path: string, id: number, args: unknown[], sync: boolean): unknown {
  return linkOf(path).getMany(id, args, sync);
}

/**
 * How many items the server sent ahead to this child for queue `id` and no `get` returned yet.
 *
 * @example
 * ```ts ignore
 * const size = (callSync(ref.path, ref.id, "qsize", []) as number) + itemsAhead(ref.path, ref.id);
 * ```
 */
export function itemsAhead(path: string, id: number): number {
  return links.get(path)?.aheadOf(id) ?? 0;
}

/**
 * Test-only hooks (not exported from mod.ts).
 *
 * @example
 * ```ts ignore
 * __testHooks.killThread(ref.path); // the next blocking call on ref fails, naming why
 * ```
 */
export const __testHooks = {
  /** Ends the link thread of the server at `path` (as a crash of it would). */
  killThread(path: string): void {
    linkOf(path).killThread();
  },
  /** Makes the link thread of the server at `path` throw (an error it does not handle). */
  breakThread(path: string): void {
    linkOf(path).breakThread();
  },
};
