/**
 * The handle codec: how values cross a worker boundary (CPython's `reduction.py`).
 *
 * One binary format carries every value denomp sends — process arguments, queue items, pipe
 * messages, pool tasks, manager calls, actor messages. It keeps structured-clone fidelity
 * (`Map`, `Set`, `Date`, `RegExp`, `BigInt`, typed arrays, `ArrayBuffer`, errors, cycles and
 * shared references) and adds **handles**: every handle class (queues, locks, connections, shared
 * memory, proxies, mailboxes) registers here once with `registerHandle`, saying how an instance
 * reduces to a small plain descriptor (numbers, strings) and how the descriptor rebuilds a live
 * object on the other side. Because handles reduce to plain data, any handle can travel inside
 * any message through any channel.
 *
 * What cannot cross throws {@link SerializationError} naming the path inside the value
 * (`args[1].callback: functions cannot be sent`): functions, symbols, `WeakMap`/`WeakSet`/
 * `WeakRef`, promises, instances of unregistered classes (which would arrive as plain objects
 * without their methods), and values nested more than 1000 objects deep. Nothing is ever
 * silently dropped, and encoding is all or nothing: the whole value is written, or nothing is.
 * That holds for an `Error`'s fields too (its own enumerable ones and `cause`), with one
 * exception: an error being *reported* (`encode(err, root, { reportError: true })`, as a pool
 * worker sends a task's throw) still arrives, without the fields that cannot be sent, and its
 * `stack` ends with a line naming them — the user's error says more than a SerializationError
 * about one of its fields would.
 *
 * Fidelity follows structuredClone: strings with lone surrogates, named properties of arrays,
 * holes, errors of any name (built as real errors: `Error.isError` holds).
 *
 * Handles whose module the receiving worker has not loaded (its code only did `import type`):
 * a message that holds handles starts with a table of their kinds and registering modules, read
 * before any handle is rebuilt. {@link loadsAsync} imports the missing modules and decodes;
 * {@link loads}, which cannot wait, throws a SerializationError naming `import type` as the
 * likely cause. The same split holds for a handle whose object needs something that only a
 * message brings (a big shared block's buffer, see _bigblock): its rebuild says so with
 * {@link pendingUntil}, `loadsAsync` waits for it, `loads` throws a SerializationError saying why.
 *
 * Where its parts live: `handles.ts` (the registry of handle kinds), `wire.ts` (the format's
 * tags and limits), `encoder.ts` and `decoder.ts`; this module is the codec's face: `dumps`,
 * `loads`, `loadsAsync`, and the parts re-exported.
 *
 * @module
 */

import { T_KINDS } from "./wire.ts";
import { type EncodeOptions, Encoder } from "./encoder.ts";
import { Decoder, MissingHandleModule, settleWaits } from "./decoder.ts";

// The codec's parts, re-exported: this module is its one face (dumps/loads and the classes).
export { type HandleKind, registerHandle, withHandleModules } from "./handles.ts";
export { type CodecOptions } from "./wire.ts";
export { type EncodeOptions, Encoder } from "./encoder.ts";
export { Decoder, pendingUntil } from "./decoder.ts";

const sharedEncoder = new Encoder();
const sharedDecoder = new Decoder();
// A handle's reduce/rebuild may itself encode or decode: nested calls get their own instance.
let encoding = 0, decoding = 0;

/**
 * Whether encoded `bytes` hold handles (a message with handles starts with the table of their
 * kinds): a relay that forwards messages to another program checks this without decoding.
 *
 * @example
 * ```ts
 * import { dumps, holdsHandles } from "./reduction.ts";
 * console.assert(!holdsHandles(dumps({ n: 1 })));
 * ```
 */
export function holdsHandles(bytes: Uint8Array): boolean {
  return bytes[0] === T_KINDS;
}

/**
 * Encodes `value` into a new `Uint8Array` (Python's `pickle.dumps`); `root` names the value in
 * error paths.
 *
 * @example
 * ```ts
 * import { dumps, loads } from "jsr:@denomp/multiprocessing";
 * console.assert(loads<number[]>(dumps([1, 2]))[1] === 2);
 * ```
 */
export function dumps(value: unknown, root = "value"): Uint8Array {
  return encodeView(value, root).slice();
}

/**
 * Encodes `value` into this isolate's reused buffer and returns a view of it, valid until the
 * next `encodeView` (a channel copies it into its ring at once). For the senders of every
 * channel: no allocation per message. A handle's `reduce` may itself send (an incref, a
 * message of its own) while a value is being encoded: a nested call gets an encoder of its own,
 * so the outer view stays intact.
 *
 * @example
 * ```ts
 * import { encodeView, loads } from "./reduction.ts";
 * const view = encodeView({ n: 1 }, "item");
 * console.assert(loads<{ n: number }>(view).n === 1);
 * ```
 */
export function encodeView(value: unknown, root: string, options?: EncodeOptions): Uint8Array {
  const e = encoding++ ? new Encoder() : sharedEncoder;
  try {
    return e.encode(value, root, options);
  } finally {
    encoding--;
  }
}

/**
 * Decodes bytes written by {@link dumps} or an {@link Encoder} (Python's `pickle.loads`).
 *
 * @example
 * ```ts
 * import { dumps, loads } from "jsr:@denomp/multiprocessing";
 * console.assert(loads<{ a: number }>(dumps({ a: 1 })).a === 1);
 * ```
 */
export function loads<T = unknown>(bytes: Uint8Array): T {
  const d = decoding++ ? new Decoder() : sharedDecoder;
  try {
    return d.decode(bytes) as T;
  } finally {
    decoding--;
  }
}

/**
 * {@link loads} for receivers that can wait: a message holding a handle whose module is not
 * loaded in this worker (its target only did `import type`) gets that module imported, then
 * decoded. Returns the value itself when nothing is missing (the hot path makes no promise); else
 * a promise, having copied `bytes` first, so the caller may reuse them as soon as this returns.
 * It imports only modules named by the message's sender, so use it on the library's in-program
 * channels, never on bytes from another program.
 *
 * @example
 * ```ts
 * import { dumps, loadsAsync } from "jsr:@denomp/multiprocessing";
 * const v = await loadsAsync<number[]>(dumps([1, 2]));
 * console.assert(v[1] === 2);
 * ```
 */
export function loadsAsync<T = unknown>(bytes: Uint8Array): T | Promise<T> {
  try {
    return loadsWaiting<T>(bytes);
  } catch (e) {
    if (!(e instanceof MissingHandleModule) || !e.modules.length) throw e;
    return importThenLoad<T>(bytes.slice(), e);
  }
}

/** {@link loads}, then (when rebuilds made promises) a promise of the value once they settle. */
function loadsWaiting<T>(bytes: Uint8Array): T | Promise<T> {
  return settleWaits(() => loads<T>(bytes));
}

async function importThenLoad<T>(bytes: Uint8Array, missing: MissingHandleModule): Promise<T> {
  const seen = new Set<string>();
  for (let e = missing;;) {
    const fresh = e.modules.filter((m) => !seen.has(m));
    // Each module imported at most once per message: one that registers nothing (or another
    // kind) ends the loop with the decoder's error rather than looping.
    if (!fresh.length) throw e;
    for (const m of fresh) seen.add(m);
    await Promise.all(fresh.map((m) => import(m)));
    try {
      return await loadsWaiting<T>(bytes);
    } catch (err) {
      if (!(err instanceof MissingHandleModule)) throw err;
      e = err;
    }
  }
}
