/**
 * Isolation "process", child side: the link from an isolate of an isolated child to the thread of
 * its parent that serves the handles it was given (`os_agent.ts`). The proxies of
 * `os_handles.ts` call through it.
 *
 * Why a helper thread does the socket I/O: the blocking twins (`getSync`, `acquireSync`, ...)
 * and the methods that return at once (`qsize()`, `locked()`) must answer while this thread
 * cannot run its event loop. So every call, blocking or not, goes to one thread of the link
 * (`os_link_worker.ts`) that owns the socket: a promise's reply comes back as a message, a
 * blocking call's is written into a shared buffer while this thread waits in `Atomics.wait`.
 * One thread, one socket: calls reach the server in the order they were made.
 *
 * @module
 */

import { Encoder, loads } from "../core/reduction.ts";
import { ProcessError } from "../core/errors.ts";
import { beforeExit } from "../core/context.ts";
import {
  Channel,
  connectUnix,
  H_CALL,
  H_CANCEL,
  H_REPLY,
  M_SIGNAL,
  M_SYNC,
  putShared,
  S_CALL,
  S_DATA,
  S_LEN,
  S_REPLY,
  S_STATE,
} from "./os_channel.ts";

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

/** The call that asks the server to write out what its channels' writers still hold. */
export const FLUSH = "#flush";

const WORKER = new URL("./os_link_worker.ts", import.meta.url);

/** The codec of calls: references to served objects cross, handles made in the child do not. */
const encoder = new Encoder({
  handles: (kind) =>
    kind === "IsolatedHandle" ||
    `a ${kind} made in a child with isolation "process" cannot be sent to its parent (only handles the parent passed can)`,
});

/** One link to one server: this thread's own socket, and the link thread's. */
class Link {
  readonly #path: string;
  #worker: Worker | null = null;
  #sab: SharedArrayBuffer | null = null;
  #i32: Int32Array | null = null;
  /** The link thread's heartbeat: a word it adds one to while it lives. */
  #beat: Int32Array | null = null;
  /** This thread's socket (for the calls it awaits), once connected. */
  #direct: Channel | null = null;
  /** Calls made before it was connected, in order (null once it is, or is connecting). */
  #early: Uint8Array[] | null = null;
  #next = 1;
  readonly #pending = new Map<number, [(v: unknown) => void, (e: unknown) => void]>();
  #broken: Error | null = null;
  /** Failures of calls nobody awaited ({@link post}), by object: its next call throws them. */
  readonly #deferred = new Map<number, unknown>();
  /** The calls nobody awaits, still in flight (the child waits for them before it exits). */
  readonly #posted = new Set<Promise<unknown>>();

  constructor(path: string) {
    this.#path = path;
    beforeExit(() => this.#finish());
  }

  /** The link thread, started on first use (a child that only awaits never needs it). */
  #thread(): Worker {
    if (this.#worker) return this.#worker;
    const sab = this.#sab = new SharedArrayBuffer(S_DATA + 4096, { maxByteLength: 1 << 30 });
    this.#i32 = new Int32Array(sab, 0, 2);
    const w = this.#worker = new Worker(WORKER, { type: "module", name: "denomp-handle-link" });
    this.#beat = new Int32Array(new SharedArrayBuffer(4));
    w.postMessage({ path: this.#path, sab, beat: this.#beat });
    w.onmessage = (e: MessageEvent<Uint8Array | { broken: string }>) => {
      const d = e.data;
      if (d instanceof Uint8Array) return this.#settle(d);
      this.#break(new ProcessError(d.broken));
    };
    w.onerror = (e) => {
      e.preventDefault();
      this.#break(new ProcessError(`the link to the parent's handles failed: ${e.message}`));
    };
    return w;
  }

  /** Sends a call on this thread's socket (connecting it first). */
  #sendDirect(body: Uint8Array): void {
    if (this.#direct) return this.#direct.send(H_CALL, body);
    if (this.#early) return void this.#early.push(body);
    this.#early = [body];
    connectUnix(this.#path).then((conn) => {
      const ch = this.#direct = new Channel(conn);
      ch.listen((type, reply) => type === H_REPLY && this.#settle(reply));
      void ch.closed.then(() =>
        this.#break(
          new ProcessError("the parent's handles are gone (the parent or its server ended)"),
        )
      );
      for (const b of this.#early!.splice(0)) ch.send(H_CALL, b);
      this.#early = null;
    }, (e) => {
      this.#break(
        new ProcessError(`cannot reach the parent's handles at ${this.#path}: ${e.message}`),
      );
    });
  }

  #break(err: Error): void {
    this.#broken ??= err;
    for (const [, reject] of this.#pending.values()) reject(this.#broken);
    this.#pending.clear();
  }

  /** The encoded call (a fresh buffer). */
  #encode(n: number, mode: number, id: number, method: string, args: unknown[]): Uint8Array {
    const body = encoder.encode([id, method, args], `${method}() arguments`);
    const out = new Uint8Array(5 + body.length);
    new DataView(out.buffer).setUint32(0, n, true);
    out[4] = mode;
    out.set(body, 5);
    return out;
  }

  /** Throws what a call on `id` nobody awaited failed with, once. */
  #checkDeferred(id: number): void {
    if (!this.#deferred.size || !this.#deferred.has(id)) return;
    const e = this.#deferred.get(id);
    this.#deferred.delete(id);
    throw e;
  }

  post(id: number, method: string, args: unknown[]): void {
    this.#checkDeferred(id);
    // Through the link thread: this thread may block next (a `Sync` call), and a call still
    // waiting in its own socket's batch would wait with it.
    const p = this.call(id, method, args, true);
    this.#posted.add(p);
    p.then(() => this.#posted.delete(p), (e) => {
      this.#posted.delete(p);
      this.#deferred.set(id, e);
    });
  }

  /**
   * Before the child exits: every call nobody awaited is answered, and the server has written
   * what it sent on the child's behalf into shared memory (a channel's writer may batch).
   */
  async #finish(): Promise<void> {
    while (this.#posted.size) await Promise.allSettled([...this.#posted]);
    if (!this.#broken) await this.call(-1, FLUSH, []).catch(() => {});
  }

  call(id: number, method: string, args: unknown[], viaThread = false): Promise<unknown> {
    if (this.#broken) return Promise.reject(this.#broken);
    try {
      this.#checkDeferred(id);
    } catch (e) {
      return Promise.reject(e);
    }
    let mode = 0, signal: AbortSignal | undefined;
    // An abort signal cannot cross: the call says which argument held one, and a cancel follows.
    const at = args.findIndex((a) => a !== null && typeof a === "object" && "signal" in a);
    if (at >= 0 && at < 64) {
      const { signal: s, ...rest } = args[at] as { signal?: AbortSignal };
      args = args.slice();
      args[at] = rest;
      if (s) {
        if (s.aborted) return Promise.reject(s.reason);
        signal = s;
        mode = M_SIGNAL | (at << 2);
      }
    }
    const n = this.#next++;
    let body: Uint8Array;
    try {
      body = this.#encode(n, mode, id, method, args);
    } catch (e) {
      return Promise.reject(e);
    }
    const p = new Promise<unknown>((resolve, reject) => this.#pending.set(n, [resolve, reject]));
    if (viaThread) this.#thread().postMessage(body, [body.buffer as ArrayBuffer]);
    else this.#sendDirect(body);
    if (signal) {
      const onAbort = () => {
        const c = new Uint8Array(4);
        new DataView(c.buffer).setUint32(0, n, true);
        this.#direct?.send(H_CANCEL, c);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      void p.finally(() => signal.removeEventListener("abort", onAbort)).catch(() => {});
    }
    return p;
  }

  killThread(): void {
    this.#thread().terminate();
  }

  breakThread(): void {
    this.#thread().postMessage({ throw: true });
  }

  callSync(id: number, method: string, args: unknown[]): unknown {
    if (this.#broken) throw this.#broken;
    this.#checkDeferred(id);
    const body = this.#encode(this.#next++, M_SYNC, id, method, args);
    this.#thread();
    const i32 = this.#i32!;
    putShared(this.#sab!, i32, body, S_CALL);
    // Waits for the reply while the link thread lives: one that died (its error, or ended) leaves
    // nobody to reply, and a thread busy in this wait cannot hear of it as a message.
    let beat = Atomics.load(this.#beat!, 0), alive = performance.now();
    for (let v; (v = Atomics.load(i32, S_STATE)) !== S_REPLY;) {
      Atomics.wait(i32, S_STATE, v, SLICE_MS);
      const b = Atomics.load(this.#beat!, 0), now = performance.now();
      if (b !== beat) (beat = b), (alive = now);
      else if (
        now - alive > (b ? DEAD_AFTER_MS : BOOT_MS) && Atomics.load(i32, S_STATE) !== S_REPLY
      ) {
        Atomics.store(i32, S_STATE, 0);
        this.#worker?.terminate();
        this.#break(
          new ProcessError(
            `the link to the parent's handles died (its thread has not run for ${DEAD_AFTER_MS} ms): ${method}() got no reply`,
          ),
        );
        throw this.#broken;
      }
    }
    const len = Atomics.load(i32, S_LEN);
    const reply = new Uint8Array(this.#sab!, S_DATA, len).slice();
    Atomics.store(i32, S_STATE, 0);
    return this.#outcome(reply);
  }

  /** A reply's value, or its error thrown. */
  #outcome(reply: Uint8Array): unknown {
    // The link thread's own failure (it decodes nothing): the text of a ProcessError.
    if (reply[4] === 2) throw new ProcessError(new TextDecoder().decode(reply.subarray(5)));
    const value = loads(reply.subarray(5));
    if (reply[4] !== 1) throw value;
    return value;
  }

  #settle(reply: Uint8Array): void {
    const n = new DataView(reply.buffer, reply.byteOffset).getUint32(0, true);
    const p = this.#pending.get(n);
    if (!p) return;
    this.#pending.delete(n);
    try {
      p[0](this.#outcome(reply));
    } catch (e) {
      p[1](e);
    }
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
 * const item = await call(ref.path, ref.id, "get", [{ timeout: 100 }]);
 * ```
 */
export function call(path: string, id: number, method: string, args: unknown[]): Promise<unknown> {
  return linkOf(path).call(id, method, args);
}

/**
 * {@link call} for a caller that does not wait for the reply (a put on an unbounded queue, as
 * Python's feeder thread does it): a failure is thrown by the next call on the same object, and
 * the child waits for every such call to be answered before it exits.
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
