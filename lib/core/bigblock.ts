/**
 * Big blocks: shared memory too large for the shared heap, each in a `SharedArrayBuffer` of its
 * own. A `SharedMemory` or an `Array` of {@link BIG_BLOCK_BYTES} or more lives in one, so its
 * size is bounded by what V8 allows ({@link MAX_BIG_BLOCK_BYTES}) and the machine's memory, not
 * by the heap's limit; and freeing it gives the memory back to the system, where the heap's size
 * classes would keep it for the heap.
 *
 * Its handle stays plain numbers like every other: a 16-byte record in the heap (magic, id, size)
 * whose reference count says how long the block lives. But the bytes themselves reach another
 * worker only as a `SharedArrayBuffer` passed by message, not through the channels' rings (those
 * carry bytes): a new worker gets the buffers its parent has in its start message, and any
 * other through one process-wide `BroadcastChannel`: a worker that rebuilds a handle whose
 * buffer it lacks asks for it by id, and every worker that has it answers. A worker holds a buffer from when it first has it (made it, got it at start or on
 * asking) until the block is freed, so it finds it again at once; the main thread holds every
 * live block's (a worker that makes one sends it there at once), so that a block whose creator
 * has gone can still be had. When the record's last reference goes, its releaser tells every
 * worker to let go, and the memory goes with the last object that still views it.
 *
 * An answer is a message, so only a receiver that can wait gets a buffer it lacks: the codec's
 * async decoding (`pendingUntil` in reduction.ts: `await q.get()`, a worker's start arguments)
 * and `await SharedMemory.attach(name)`. A `...Sync` receiver (and a Pool task's arguments,
 * which its worker decodes synchronously) gets a clear error instead, unless the buffer reached
 * its worker before (then it is found at once): so a Pool started after a block was made
 * has it in every worker.
 *
 * Freed memory: V8 frees a `SharedArrayBuffer`'s memory only when a garbage collection finds it
 * unreachable in every worker that had it, and it does not collect for the sake of buffers alone
 * (a program that makes little garbage may hold closed multi-GiB blocks for a while).
 *
 * @module
 */

import { alloc, heap, isTerminatedError, nextId, release } from "./heap.ts";
import { TimeoutError } from "./errors.ts";

/** Blocks of this many bytes or more get their own `SharedArrayBuffer` (64 MiB). */
export const BIG_BLOCK_BYTES: number = 64 << 20;
/**
 * V8's limit on one `SharedArrayBuffer` (2^53 - 1 bytes, `Number.MAX_SAFE_INTEGER`, measured
 * with Deno 2.9 / V8 15.0: `maxByteLength: 2 ** 53` is refused, `2 ** 45` accepted). In
 * practice the machine's memory is the limit: Linux refuses a mapping larger than its RAM and
 * swap (22 GiB worked and 24 GiB failed on a 24 GiB machine), which V8 reports as
 * "Array buffer allocation failed".
 */
export const MAX_BIG_BLOCK_BYTES: number = Number.MAX_SAFE_INTEGER;

/** Record layout (Int32 words): magic, id, size low 32 bits, size high bits. */
const MAGIC_BIG = 0x42696721; // "Big!"
const RECORD = 16;
/**
 * How long a receiver waits for a buffer before giving up (ms), and how often it asks again.
 * Tests shorten the wait.
 *
 * @example
 * ```ts
 * import { bigBlockTiming } from "./bigblock.ts";
 * console.assert(bigBlockTiming.waitMs === 30_000);
 * ```
 */
export const bigBlockTiming = { waitMs: 30_000, askEveryMs: 200 };

interface Msg {
  want?: number;
  give?: number;
  /** With `give`: the record's offset, for the main thread to check that it is still live. */
  off?: number;
  free?: number;
  sab?: SharedArrayBuffer;
}

/** The buffers this worker holds (the main thread: every live block's): id to buffer. */
const held = new Map<number, { off: number; sab: SharedArrayBuffer }>();
/** Receivers waiting for a buffer: id to their resolvers. */
const waiting = new Map<number, ((sab: SharedArrayBuffer) => void)[]>();

let channel: BroadcastChannel | undefined;
// Deno's BroadcastChannel has an internal, symbol-keyed ref/unref method (as Worker has, see
// _spawn): a listening channel would otherwise keep every program alive for ever. A receiver
// waiting for an answer keeps its worker alive with its timer.
const refSymbol = Object.getOwnPropertySymbols(BroadcastChannel.prototype)
  .find((s) => s.description === "refBroadcastChannel");

function isMain(): boolean {
  return heap().slot === 1;
}

function open(): BroadcastChannel {
  if (channel) return channel;
  channel = new BroadcastChannel("denomp:big-blocks");
  channel.onmessage = (e: MessageEvent<Msg>) => onMessage(e.data);
  if (refSymbol) (channel as unknown as Record<symbol, (r: boolean) => void>)[refSymbol](false);
  return channel;
}

function onMessage(m: Msg): void {
  if (m.give !== undefined && m.sab) {
    const id = m.give;
    // The main thread keeps every block; a worker, those it asked for.
    if (isMain() && !held.has(id) && m.off !== undefined && live(m.off, id)) {
      held.set(id, { off: m.off, sab: m.sab });
    }
    const ws = waiting.get(id);
    if (ws) {
      waiting.delete(id);
      for (const w of ws) w(m.sab);
    }
  } else if (m.want !== undefined) {
    const sab = local(m.want);
    if (sab) channel!.postMessage({ give: m.want, sab } satisfies Msg);
  } else if (m.free !== undefined) {
    held.delete(m.free);
  }
}

/** True while the record at `off` is block `id`'s (the main thread's check on a give). */
function live(off: number, id: number): boolean {
  const i32 = heap().i32;
  return off > 0 && off + RECORD <= i32.byteLength && isBig(off) && i32[(off >> 2) + 1] === id;
}

/** Holds block `id`'s buffer, listening for its freeing (and to answer who asks for it). */
function hold(id: number, off: number, sab: SharedArrayBuffer): void {
  open();
  held.set(id, { off, sab });
}

/** The buffer of block `id` if this worker has it. */
function local(id: number): SharedArrayBuffer | undefined {
  return held.get(id)?.sab;
}

// The main thread listens from the start: it is the keeper of every block.
if (isMainThread()) open();

function isMainThread(): boolean {
  // deno-lint-ignore no-explicit-any
  const WGS = (globalThis as any).WorkerGlobalScope;
  return !(typeof WGS === "function" && globalThis instanceof WGS);
}

/**
 * Creates a big block of `bytes` (zeroed) and returns its record's offset in the heap (holding
 * one reference) and its buffer. The main thread keeps the buffer until the block is freed.
 *
 * @example
 * ```ts
 * import { allocBig, bigSize, releaseBig } from "./bigblock.ts";
 * const { off, sab } = allocBig(64 << 20);
 * console.assert(sab.byteLength === 64 << 20 && bigSize(off) === 64 << 20);
 * releaseBig(off);
 * ```
 */
export function allocBig(bytes: number): { off: number; sab: SharedArrayBuffer } {
  if (!Number.isInteger(bytes) || bytes <= 0 || bytes > MAX_BIG_BLOCK_BYTES) {
    throw new RangeError(
      `denomp: a shared block's size must be an integer from 1 to 2^53 - 1 bytes (V8's limit): ` +
        `current value is ${bytes}`,
    );
  }
  let sab: SharedArrayBuffer;
  try {
    sab = new SharedArrayBuffer(bytes);
  } catch (e) {
    throw new RangeError(
      `denomp: cannot allocate a shared block of ${bytes} bytes (${gib(bytes)}): ${
        (e as Error).message
      } (the system refused the memory; V8 allows up to 2^53 - 1 bytes)`,
    );
  }
  const off = alloc(RECORD), i32 = heap().i32, id = nextId();
  i32[(off >> 2) + 1] = id;
  i32[(off >> 2) + 2] = bytes % 2 ** 32 | 0;
  i32[(off >> 2) + 3] = Math.floor(bytes / 2 ** 32);
  Atomics.store(i32, off >> 2, MAGIC_BIG);
  hold(id, off, sab);
  // To the keeper at once: the creator may end (and its objects go) before any receiver asks.
  if (!isMain()) open().postMessage({ give: id, off, sab } satisfies Msg);
  return { off, sab };
}

function gib(n: number): string {
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}

/** True when the heap block at `off` is a big block's record (live or unlinked). */
export function isBig(off: number): boolean {
  const m = Atomics.load(heap().i32, off >> 2);
  return m === MAGIC_BIG || m === -MAGIC_BIG;
}

/** The id of the big block at `off`. */
export function bigId(off: number): number {
  return heap().i32[(off >> 2) + 1];
}

/** The size in bytes of the big block at `off`. */
export function bigSize(off: number): number {
  const i32 = heap().i32;
  return (i32[(off >> 2) + 2] >>> 0) + i32[(off >> 2) + 3] * 2 ** 32;
}

/** Marks the record unlinked (attach by name refuses it) without freeing anything. */
export function unlinkBig(off: number): void {
  Atomics.compareExchange(heap().i32, off >> 2, MAGIC_BIG, -MAGIC_BIG);
}

/** True when `off` is a big block's record that may be attached by name. */
export function attachableBig(off: number): boolean {
  return Atomics.load(heap().i32, off >> 2) === MAGIC_BIG;
}

/** The buffer of the big block at `off` if it has reached this worker, else undefined. */
export function bigBuffer(off: number): SharedArrayBuffer | undefined {
  return local(bigId(off));
}

/**
 * The buffer of the big block at `off`: at once if this worker has it, else asked for (from the
 * main thread, or any worker holding it) and awaited, up to 30 s. The caller holds a reference,
 * so the block is live and some worker has its buffer (the main thread at least).
 */
export function bigBufferAsync(off: number): Promise<SharedArrayBuffer> {
  const id = bigId(off), have = local(id);
  if (have) return Promise.resolve(have);
  return new Promise<SharedArrayBuffer>((resolve, reject) => {
    const ch = open();
    const done = (sab: SharedArrayBuffer) => {
      clearInterval(timer);
      hold(id, off, sab);
      resolve(sab);
    };
    const list = waiting.get(id) ?? [];
    list.push(done);
    waiting.set(id, list);
    const t0 = Date.now();
    // Asked again now and then: a worker whose channel opened after the first question, or
    // a keeper that got the buffer just after it, answers the next one.
    const timer = setInterval(() => {
      if (Date.now() - t0 < bigBlockTiming.waitMs) {
        return ch.postMessage({ want: id } satisfies Msg);
      }
      clearInterval(timer);
      const ws = waiting.get(id)?.filter((w) => w !== done) ?? [];
      if (ws.length) waiting.set(id, ws);
      else waiting.delete(id);
      reject(
        new TimeoutError(
          `the buffer of shared block ${id} did not arrive within ${bigBlockTiming.waitMs} ms: ` +
            "the workers that hold it (the main thread at least) answer from their event " +
            "loop, which one busy in synchronous code all that time does not reach",
        ),
      );
    }, bigBlockTiming.askEveryMs);
    ch.postMessage({ want: id } satisfies Msg);
  });
}

/**
 * Drops a reference to the big block at `off`: the last one frees the record and tells every
 * worker to forget the buffer (the memory goes once no object views it).
 */
export function releaseBig(off: number): void {
  release(off, forget);
}

/** The `beforeFree` of a big block's record (for `adopt`). */
export function forget(off: number): void {
  const id = bigId(off);
  held.delete(id);
  Atomics.store(heap().i32, off >> 2, 0);
  try {
    open().postMessage({ free: id } satisfies Msg);
  } catch (e) {
    if (!isTerminatedError(e)) throw e;
  }
}

/**
 * For a start message: the buffers of the live big blocks this worker has (the main thread: all
 * of them), or undefined when there are none. A child started with a big block in its arguments
 * then finds it at once, without asking (which would wait for its parent's event loop).
 *
 * @example
 * ```ts
 * import { allocBig, buffersForChild, releaseBig } from "./bigblock.ts";
 * const { off } = allocBig(64 << 20);
 * console.assert(buffersForChild()!.length >= 1);
 * releaseBig(off);
 * ```
 */
export function buffersForChild(): StartBuffer[] | undefined {
  return held.size ? [...held].map(([id, { off, sab }]) => [id, off, sab]) : undefined;
}

/** A big block's buffer in a start message: its id, its record's offset, the buffer. */
export type StartBuffer = [id: number, off: number, sab: SharedArrayBuffer];

/**
 * In a new worker: takes the buffers of its start message (see {@link buffersForChild}) whose
 * blocks are still live. Listening first, then checking: a block freed before this worker
 * listened (its "free" message went by unheard) is not taken, one freed later is let go.
 *
 * @example
 * ```ts
 * import { adoptStartBuffers, allocBig, bigId, keptBlocks, releaseBig } from "./bigblock.ts";
 * const { off, sab } = allocBig(64 << 20), id = bigId(off);
 * releaseBig(off);
 * const before = keptBlocks();
 * adoptStartBuffers([[id, off, sab]]); // freed already: not taken
 * console.assert(keptBlocks() === before);
 * ```
 */
export function adoptStartBuffers(list: StartBuffer[]): void {
  open();
  for (const [id, off, sab] of list) if (live(off, id)) hold(id, off, sab);
}

/**
 * How many big blocks' buffers this worker holds (the main thread: every live block's). For
 * tests and diagnostics.
 *
 * @example
 * ```ts
 * import { allocBig, keptBlocks, releaseBig } from "./bigblock.ts";
 * const before = keptBlocks(), { off } = allocBig(64 << 20);
 * console.assert(keptBlocks() === before + 1);
 * releaseBig(off);
 * console.assert(keptBlocks() === before);
 * ```
 */
export function keptBlocks(): number {
  return held.size;
}

/**
 * The message of the error a receiver that cannot wait meets, for a block of `what`.
 *
 * @example
 * ```ts
 * import { notHereMessage } from "./bigblock.ts";
 * console.assert(notHereMessage("SharedMemory 'psm_1_2'").includes("await"));
 * ```
 */
export function notHereMessage(what: string): string {
  return `${what} is a big block (its own SharedArrayBuffer, for ${BIG_BLOCK_BYTES >> 20} MiB ` +
    "or more) whose buffer has not reached this worker yet, and a buffer arrives only by " +
    "message, which a synchronous receiver cannot wait for: receive it with the async API " +
    "(`await q.get()`, `await SharedMemory.attach(name)`), or pass it in the worker's args " +
    "(or make it before starting the worker, a Pool's too): a worker holds every buffer it " +
    "has had until the block is freed";
}
