/**
 * The shared heap: one growable `SharedArrayBuffer` that the main thread creates and hands to
 * every worker at start-up. Every shared-memory handle (locks, queues, pipes, values, mailboxes)
 * lives in a block of this heap, so a handle's descriptor is only numbers (an offset and a few
 * parameters). That is what lets any handle cross any channel: `postMessage`, a Queue's byte ring,
 * a Pipe, a Mailbox; nothing needs a side channel for a `SharedArrayBuffer` or a `MessagePort`.
 * (Shared blocks of 64 MiB or more are the exception, with a buffer of their own: _bigblock.)
 *
 * The heap also holds the process table: one entry per process (slot) with its state and its
 * parent's slot, so any worker can tell whether the owner of a lock is still alive, including
 * the descendants of a worker that was terminated (their entries stay "alive", but an ancestor
 * is dead, and nested workers die with their parent). A death counter grows with every process
 * death and every actor stop; the death watcher (_deaths) waits on it.
 *
 * @module
 */

import { ProcessError } from "./errors.ts";

// Header, as Int32 indices.
const MAGIC_I = 0, ALLOC_LOCK_I = 1, BUMP_I = 2, NEXT_SLOT_I = 3, DEATH_EPOCH_I = 4, NEXT_ID_I = 5;
const FREE_HEADS_I = 16; // free-list heads for size classes 0..31 (block of 2^k bytes)
/** Live blocks per kind (see {@link BLOCK_KINDS}): a count and a byte total each. */
const KIND_COUNTS_I = 64;
const MAGIC = 0x646e6d70; // "dnmp"

/** Process table: `MAX_SLOTS` entries of two Int32s (state, parent slot), from byte 64 KiB. */
const TABLE_BYTE = 64 * 1024;
/** How many processes one run may start in all (slots are not reused, so pids stay unique). */
export const MAX_SLOTS: number = 1 << 20;
const DATA_BYTE = TABLE_BYTE + MAX_SLOTS * 8; // 8 MiB + 64 KiB
const INITIAL_BYTES = DATA_BYTE + (2 << 20);
/** The heap's limit: 1 GiB unless {@link setHeapLimit} said otherwise (a worker reads its heap's). */
let MAX_BYTES = 1 << 30;
/** The highest limit: offsets are stored in Int32 words. */
const HIGHEST_LIMIT = 2 ** 31 - 2 ** 16;
/** Block header: size class, reference count, kind, a spare word; data is 16-byte aligned. */
const BLOCK_HEADER = 16;
const MIN_CLASS = 5; // 32-byte blocks at least

/** The state of a process-table entry. */
export const SLOT_UNUSED = 0, SLOT_ALIVE = 1, SLOT_DEAD = 2;
/** The main thread's slot. */
export const MAIN_SLOT = 1;

/** Views over the heap, all length-tracking, so they follow `grow()` from any worker. */
export interface Heap {
  readonly sab: SharedArrayBuffer;
  readonly i32: Int32Array;
  readonly u8: Uint8Array;
  readonly f64: Float64Array;
  readonly dv: DataView;
  /** This isolate's process slot. */
  readonly slot: number;
}

let current: Heap | undefined;

function isWorker(): boolean {
  // deno-lint-ignore no-explicit-any
  const WGS = (globalThis as any).WorkerGlobalScope;
  return typeof WGS === "function" && globalThis instanceof WGS;
}

function views(sab: SharedArrayBuffer, slot: number): Heap {
  return {
    sab,
    i32: new Int32Array(sab),
    u8: new Uint8Array(sab),
    f64: new Float64Array(sab),
    dv: new DataView(sab),
    slot,
  };
}

function createHeap(): Heap {
  const sab = new SharedArrayBuffer(INITIAL_BYTES, { maxByteLength: MAX_BYTES });
  const h = views(sab, MAIN_SLOT);
  h.i32[MAGIC_I] = MAGIC;
  h.i32[BUMP_I] = DATA_BYTE;
  h.i32[NEXT_SLOT_I] = MAIN_SLOT + 1;
  h.i32[NEXT_ID_I] = 1;
  h.i32[TABLE_BYTE / 4 + MAIN_SLOT * 2] = SLOT_ALIVE;
  return h;
}

/**
 * This isolate's heap. The main thread creates it on first use; a worker started by denomp has
 * it attached by the bootstrap before any user code runs. A worker not started by denomp gets a
 * private heap (its handles then work only inside it).
 */
export function heap(): Heap {
  return current ??= createHeap();
}

/**
 * Sets the shared heap's limit in bytes (default 1 GiB, at most 2 GiB - 64 KiB: offsets are
 * 32-bit): the heap holds every lock, queue, pipe and value, and shared blocks under 64 MiB
 * (larger ones have their own memory). Call it in the main thread before anything shared is
 * made; the memory is reserved, not taken: the heap grows as it fills.
 *
 * @example
 * ```ts
 * import { heapLimit, setHeapLimit } from "jsr:@denomp/multiprocessing";
 * setHeapLimit(2 ** 31 - 2 ** 16); // before the first shared object
 * console.assert(heapLimit() === 2 ** 31 - 2 ** 16);
 * ```
 */
export function setHeapLimit(bytes: number): void {
  if (!Number.isInteger(bytes) || bytes < INITIAL_BYTES || bytes > HIGHEST_LIMIT) {
    throw new RangeError(
      `the shared heap's limit must be an integer from ${INITIAL_BYTES} to ${HIGHEST_LIMIT} ` +
        `bytes: current value is ${bytes}`,
    );
  }
  if (current && current.sab.maxByteLength !== bytes) {
    throw new Error(
      `denomp: the shared heap exists already (with a limit of ${current.sab.maxByteLength} ` +
        "bytes): call setHeapLimit() in the main thread before making any shared object",
    );
  }
  MAX_BYTES = bytes;
}

/**
 * The shared heap's limit in bytes (see {@link setHeapLimit}).
 *
 * @example
 * ```ts
 * import { heapLimit } from "jsr:@denomp/multiprocessing";
 * console.assert(heapLimit() >= 16 << 20);
 * ```
 */
export function heapLimit(): number {
  return MAX_BYTES;
}

/** Called by the worker bootstrap: adopt the parent's heap and this worker's slot. */
export function attachHeap(sab: SharedArrayBuffer, slot: number): Heap {
  const h = views(sab, slot);
  if (h.i32[MAGIC_I] !== MAGIC) {
    throw new Error("denomp: the shared heap handed to this worker is not valid");
  }
  MAX_BYTES = sab.maxByteLength; // the limit the main thread chose
  current = h;
  fenceWord = null; // should anything have passed the fence before
  return h;
}

/** True when this isolate is a worker (not the process's main thread). */
export function inWorker(): boolean {
  return isWorker();
}

/** A number unique in the whole process tree for this run (names like `Process-3`, ids). */
export function nextId(): number {
  return Atomics.add(heap().i32, NEXT_ID_I, 1);
}

// ---------------------------------------------------------------------------------------------
// Process table

/** Allocates a slot for a new child of `parent` and marks it alive. */
export function allocSlot(parent: number): number {
  const h = heap();
  const slot = Atomics.add(h.i32, NEXT_SLOT_I, 1);
  if (slot >= MAX_SLOTS) {
    throw new RangeError(`denomp: more than ${MAX_SLOTS} processes were started in this run`);
  }
  const e = TABLE_BYTE / 4 + slot * 2;
  Atomics.store(h.i32, e + 1, parent);
  Atomics.store(h.i32, e, SLOT_ALIVE);
  return slot;
}

/** Marks `slot` dead and wakes everybody who watches for deaths. */
export function markDead(slot: number): void {
  const h = heap();
  const e = TABLE_BYTE / 4 + slot * 2;
  if (Atomics.exchange(h.i32, e, SLOT_DEAD) === SLOT_DEAD) return;
  bumpDeaths();
  Atomics.notify(h.i32, e); // a child watching its parent's entry
}

/**
 * The message of the `ProcessError` a zombie meets (a worker marked dead while its thread still
 * runs: see _ring "Zombies") at its next operation on a shared object (a channel, a lock, a value).
 */
export const TERMINATED_MESSAGE =
  "this process was terminated: it may not change shared objects any more";

/**
 * True for that error: the code that meets it was killed, it did not crash. Its parent has
 * recorded the kill already, so nothing about it is worth printing.
 */
export function isTerminatedError(err: unknown): boolean {
  return err instanceof Error && err.name === "ProcessError" && err.message === TERMINATED_MESSAGE;
}

/** True when `slot` and all its ancestors are alive (nested workers die with their parent). */
export function isAlive(slot: number): boolean {
  const i32 = heap().i32;
  for (let s = slot, hops = 0; s > 0 && hops < 10_000; hops++) {
    const e = TABLE_BYTE / 4 + s * 2;
    if (Atomics.load(i32, e) !== SLOT_ALIVE) return false;
    s = Atomics.load(i32, e + 1);
  }
  return true;
}

// Zombies. Deno's `worker.terminate()` stops a worker only when it returns to its event loop: a
// worker busy in JS or looping in `Atomics.wait` (every `...Sync` call) keeps running, yet its
// parent marks it dead at once, and whatever it held is taken over. So every operation that
// changes a shared object (a channel, a lock, a value) first checks that this process is not
// marked dead, and a lock is released only by its current owner: a zombie stops at its next
// such operation without disturbing anyone.

/** The word the fence reads: this process's state, or (nested) one that always says "look". */
let fenceWord: Int32Array | null = null;

/**
 * The fence: throws `ProcessError(TERMINATED_MESSAGE)` when this process has been terminated
 * (marked dead in the process table, or an ancestor was: a terminated parent takes its
 * children with it) while its thread still runs.
 *
 * It sits on the hot path of every lock acquire and release and every Value write, so it is one
 * plain read, about a nanosecond: an `Atomics.load` costs ~5 ns here and its ordering buys
 * nothing (the kill may land just after any check; the atomic operation each caller does next
 * keeps the compiler from reusing the value), and anything more makes the function too big to
 * be inlined (a counter to walk the ancestors now and then tripled its cost). A nested worker,
 * whose own entry stays "alive" when an ancestor dies, walks its ancestors every time instead.
 *
 * @example
 * ```ts
 * import { checkNotTerminated } from "./heap.ts";
 * checkNotTerminated(); // the main thread is never terminated
 * ```
 */
export function checkNotTerminated(): void {
  checkFence(fenceWord ?? fenceWordOf());
}

/**
 * The word the fence reads, for a handle to keep ({@link checkFence}): a lock's acquire and
 * release, and a Value's write, then skip looking it up (the module variable, its null test),
 * which was most of the fence's cost on their ~10 ns fast paths. It is this process's own
 * process-table entry, so a handle keeps it for good: a handle is rebuilt, with the receiver's
 * word, in each process it reaches.
 *
 * @example
 * ```ts
 * import { checkFence, fenceView } from "./heap.ts";
 * const fence = fenceView();
 * checkFence(fence); // the main thread is never terminated
 * ```
 */
export function fenceView(): Int32Array {
  return fenceWord ?? fenceWordOf();
}

/**
 * {@link checkNotTerminated} on a word from {@link fenceView}.
 *
 * @example
 * ```ts
 * import { checkFence, fenceView } from "./heap.ts";
 * checkFence(fenceView());
 * ```
 */
export function checkFence(word: Int32Array): void {
  if (word[0] !== SLOT_ALIVE) checkLineage();
}

function checkLineage(): void {
  if (!isAlive(heap().slot)) throw new ProcessError(TERMINATED_MESSAGE);
}

function fenceWordOf(): Int32Array {
  const h = heap();
  if (parentSlot(h.slot) > MAIN_SLOT) return fenceWord = new Int32Array(1); // never "alive"
  return fenceWord = new Int32Array(h.sab, slotStateIndex(h.slot) * 4, 1);
}

/** The parent slot of `slot` (0 for the main thread). */
export function parentSlot(slot: number): number {
  return Atomics.load(heap().i32, TABLE_BYTE / 4 + slot * 2 + 1);
}

/** Index (into `heap().i32`) of the process-table state word of `slot`, to wait on it. */
export function slotStateIndex(slot: number): number {
  return TABLE_BYTE / 4 + slot * 2;
}

/**
 * Index of the death counter: it grows by one each time any process dies or any actor stops
 * ({@link bumpDeaths}); the death watcher (_deaths) waits on it.
 */
export const DEATH_EPOCH_INDEX: number = DEATH_EPOCH_I;

/**
 * Counts a death (a process's, or an actor's stop) and wakes every death watcher. The one place
 * that bumps the counter.
 */
export function bumpDeaths(): void {
  const i32 = heap().i32;
  Atomics.add(i32, DEATH_EPOCH_I, 1);
  Atomics.notify(i32, DEATH_EPOCH_I);
}

// ---------------------------------------------------------------------------------------------
// Allocator: power-of-two size classes with a free list each, under a robust spin lock
// (the critical sections are a handful of loads and stores, and the main thread cannot block).

/**
 * How long the holder of a lock whose critical sections are synchronous (the allocator's, a
 * LIFO or priority queue's store lock) must be seen dead before it is taken over (ms). Deno runs
 * a terminated worker's synchronous code on to its next await: a holder marked dead is still
 * inside (perhaps descheduled) and lets go at the end. Taken over at once, as before, it went
 * on writing the free lists or the bump pointer beside the new holder, and both got the same
 * block [queues_free_test "allocator"]; a zombie's push wrote over the next putter's item
 * [queues_store_test]. So the lock is waited for; the takeover stays only as a last
 * resort against a holder that truly never comes back, which no known way of dying leaves.
 */
export const DEAD_STEP_GRACE_MS = 2_000;

/** Test hooks: `inAlloc` runs inside `alloc`'s critical section, its block chosen, not taken. */
export const __allocHooks: { inAlloc: (() => void) | null } = { inAlloc: null };

function lockAlloc(i32: Int32Array, me: number): void {
  let dead = 0, deadSince = 0;
  for (let spins = 0;; spins++) {
    const owner = Atomics.compareExchange(i32, ALLOC_LOCK_I, 0, me);
    if (owner === 0) return;
    if ((spins & 0xfff) !== 0xfff || isAlive(owner)) continue;
    if (dead !== owner) {
      dead = owner; // seen dead from now on
      deadSince = performance.now();
    } else if (
      performance.now() - deadSince >= DEAD_STEP_GRACE_MS &&
      Atomics.compareExchange(i32, ALLOC_LOCK_I, owner, me) === owner
    ) return;
  }
}

/**
 * Frees the allocator lock only if `me` still holds it: a holder declared dead (a zombie still
 * running synchronous code) whose lock was taken over must not free the new holder's lock.
 */
function unlockAlloc(i32: Int32Array, me: number): void {
  Atomics.compareExchange(i32, ALLOC_LOCK_I, me, 0);
}

/**
 * What a block is for, so that a full heap can say what fills it. A fixed list (the index is
 * stored in the shared block header, read by every process); pass one to {@link alloc}.
 */
export const BLOCK_KINDS = [
  "other",
  "queue",
  "queue item",
  "lock",
  "value",
  "pipe",
  "pool",
  "actor",
  "manager",
  "shared memory",
] as const;

/** One of {@link BLOCK_KINDS}. */
export type BlockKind = typeof BLOCK_KINDS[number];

const kindIndex = new Map<string, number>(BLOCK_KINDS.map((k, i) => [k, i]));

function countBlock(i32: Int32Array, kind: number, bytes: number): void {
  Atomics.add(i32, KIND_COUNTS_I + 2 * kind, Math.sign(bytes));
  Atomics.add(i32, KIND_COUNTS_I + 2 * kind + 1, bytes >> 4); // in 16-byte units: fits int32
}

/**
 * Live blocks of the shared heap by kind: how many and their bytes (size classes, headers
 * included). For diagnostics: the "heap is full" error quotes it.
 *
 * @example
 * ```ts
 * import { alloc, heapUsage } from "./heap.ts";
 * alloc(100, "queue");
 * console.assert(heapUsage().queue.blocks >= 1);
 * ```
 */
export function heapUsage(): Record<BlockKind, { blocks: number; bytes: number }> {
  const i32 = heap().i32;
  const out = {} as Record<BlockKind, { blocks: number; bytes: number }>;
  BLOCK_KINDS.forEach((k, i) => {
    out[k] = {
      blocks: Atomics.load(i32, KIND_COUNTS_I + 2 * i),
      bytes: Atomics.load(i32, KIND_COUNTS_I + 2 * i + 1) * 16,
    };
  });
  return out;
}

function fullMessage(): string {
  const mib = (n: number) => `${(n / (1 << 20)).toFixed(1)} MiB`;
  const parts = Object.entries(heapUsage())
    .filter(([, u]) => u.blocks > 0)
    .sort((a, b) => b[1].bytes - a[1].bytes)
    .map(([k, u]) => `${u.blocks} ${k} block${u.blocks === 1 ? "" : "s"} (${mib(u.bytes)})`);
  return `denomp: the shared heap is full (${MAX_BYTES} bytes): it holds ${parts.join(", ")}. ` +
    "Handles free their memory when closed by every holder or garbage-collected";
}

function classOf(bytes: number): number {
  let k = MIN_CLASS;
  while ((1 << k) < bytes + BLOCK_HEADER) k++;
  return k;
}

/** The largest block the heap may hold (a size class of at most half the heap), less its header. */
function maxAlloc(): number {
  return 2 ** Math.floor(Math.log2(MAX_BYTES / 2)) - BLOCK_HEADER;
}

/**
 * Allocates a block of at least `bytes` bytes with a reference count of 1 and returns the byte
 * offset of its data (16-byte aligned). `kind` says what it is for (diagnostics only). Its
 * first `zeroed` bytes are zero (all of them by default): a ring's frames need no zeroing,
 * since a reader reads only what a writer published there, so a block that is a header and a
 * ring zeroes its headers only.
 */
export function alloc(bytes: number, kind: BlockKind = "other", zeroed = bytes): number {
  if (!(bytes >= 0) || bytes > maxAlloc()) {
    throw new RangeError(
      `denomp: cannot allocate ${bytes} bytes of shared memory (at most ${maxAlloc()})`,
    );
  }
  const h = heap(), i32 = h.i32, k = classOf(bytes), size = 1 << k;
  lockAlloc(i32, h.slot);
  let block: number, reused: boolean;
  try {
    block = i32[FREE_HEADS_I + k];
    reused = block !== 0;
    __allocHooks.inAlloc?.();
    if (reused) {
      i32[FREE_HEADS_I + k] = i32[(block + BLOCK_HEADER) >> 2];
    } else {
      // Align the bump pointer to min(size, 4 KiB) so large blocks start on page boundaries.
      const align = Math.min(size, 4096);
      block = (i32[BUMP_I] + align - 1) & ~(align - 1);
      const end = block + size;
      if (end > MAX_BYTES) throw new RangeError(fullMessage());
      if (end > h.sab.byteLength) {
        h.sab.grow(Math.min(MAX_BYTES, Math.max(end, h.sab.byteLength * 2)));
      }
      i32[BUMP_I] = end;
    }
  } finally {
    unlockAlloc(i32, h.slot);
  }
  // Memory past the bump pointer was never handed out: still zero, as a new or grown
  // SharedArrayBuffer is (filling shared memory costs ~0.6 µs per KiB: 0.1 ms for a mailbox).
  if (reused) {
    h.u8.fill(
      0,
      block + BLOCK_HEADER,
      block + BLOCK_HEADER + Math.min(zeroed, size - BLOCK_HEADER),
    );
  }
  const ki = kindIndex.get(kind) ?? 0;
  i32[block >> 2] = k;
  i32[(block >> 2) + 2] = ki;
  countBlock(i32, ki, size);
  Atomics.store(i32, (block >> 2) + 1, 1);
  return block + BLOCK_HEADER;
}

/** Adds a reference to the block whose data starts at `off`. */
export function retain(off: number): void {
  Atomics.add(heap().i32, ((off - BLOCK_HEADER) >> 2) + 1, 1);
}

/**
 * Adds a reference to the block at `off` only if it still has one (it is not freed, nor being
 * freed): for code that found the block by a name rather than through a reference it holds, and
 * which must not revive it. The block may have been freed and allocated again meanwhile, so
 * the caller checks afterwards that it is still the block it looked for (and releases it if not).
 */
export function tryRetain(off: number): boolean {
  const i32 = heap().i32, rc = ((off - BLOCK_HEADER) >> 2) + 1;
  for (let n = Atomics.load(i32, rc); n > 0; n = Atomics.load(i32, rc)) {
    if (Atomics.compareExchange(i32, rc, n, n + 1) === n) return true;
  }
  return false;
}

/**
 * Drops a reference; the block returns to its free list when none is left. `beforeFree` runs
 * first when this was the last reference (a structure frees the blocks it points to there:
 * nobody else can reach the block any more, and it is not yet reusable).
 */
export function release(off: number, beforeFree?: (off: number) => void): void {
  const h = heap(), i32 = h.i32, block = off - BLOCK_HEADER;
  const left = Atomics.sub(i32, (block >> 2) + 1, 1) - 1;
  if (left > 0) return;
  if (left < 0) throw new Error(`denomp: shared block at ${off} released too many times`);
  if (beforeFree) {
    try {
      beforeFree(off);
    } catch { /* the block itself must still be freed */ }
  }
  const k = i32[block >> 2];
  countBlock(i32, i32[(block >> 2) + 2], -(1 << k));
  lockAlloc(i32, h.slot);
  try {
    i32[off >> 2] = i32[FREE_HEADS_I + k];
    i32[FREE_HEADS_I + k] = block;
  } finally {
    unlockAlloc(i32, h.slot);
  }
}

/** The usable size in bytes of the block whose data starts at `off`. */
export function blockSize(off: number): number {
  return (1 << heap().i32[(off - BLOCK_HEADER) >> 2]) - BLOCK_HEADER;
}

/**
 * The references this isolate holds through {@link adopt}, by block: how many, and what frees
 * the block (the same function for every handle of a block: its kind's). A worker that ends
 * drops them ({@link releaseAdopted}), as the collector never runs at an isolate's end. Counted
 * per block, not per owner: a map entry per handle made passing a `Value` through a `Queue` and
 * back 20% slower, with a `WeakRef` each 53%.
 */
const adopted = new Map<number, { n: number; beforeFree?: (off: number) => void }>();

/** One fewer reference of `off` held through {@link adopt}; false if none was left. */
function unadopt(off: number): boolean {
  const a = adopted.get(off);
  if (!a) return false;
  if (--a.n === 0) adopted.delete(off);
  return true;
}

/** Holds each adoption's block offset; what frees the block is in {@link adopted}. */
const finalizer = new FinalizationRegistry<number>((off) => {
  const beforeFree = adopted.get(off)?.beforeFree;
  if (!unadopt(off)) return; // dropped already, as its worker ended
  try {
    release(off, beforeFree);
  } catch { /* the heap is gone with the process */ }
});

/**
 * Ties one reference of block `off` to the life of `owner`: when `owner` is garbage-collected,
 * the reference is dropped (with `beforeFree` as in {@link release}). Every live handle object
 * holds exactly one reference this way.
 */
export function adopt(owner: object, off: number, beforeFree?: (off: number) => void): void {
  const a = adopted.get(off);
  if (a) a.n++;
  else adopted.set(off, { n: 1, beforeFree });
  finalizer.register(owner, off, owner);
}

/**
 * Undoes {@link adopt} of block `off` for `owner`, which then holds no reference: for handles that
 * drop their reference early, e.g. `SharedMemory.close()`. Returns false if `owner` had adopted
 * nothing.
 */
export function disown(owner: object, off: number): boolean {
  if (!finalizer.unregister(owner)) return false;
  unadopt(off);
  return true;
}

/**
 * Drops every reference this isolate still holds through {@link adopt}: a worker's last step,
 * when its target has returned (or thrown) and its exit hooks have run. Without it, a handle
 * that a process received (a `Value`, a `Lock`, a `Mailbox` in its arguments) kept its block
 * forever once the process ended, the collector having never run there.
 */
export function releaseAdopted(): void {
  for (const [off, a] of adopted) {
    adopted.delete(off);
    for (let i = 0; i < a.n; i++) {
      try {
        release(off, a.beforeFree);
      } catch { /* one handle's failure must not keep the others' references */ }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Roots: process-tree-wide structures (the actor name registry, process groups) that every
// worker must find without being handed a handle. Their offsets live in spare header words.

/** Header words 6..15: one per root. */
const ROOTS_I = 6, MAX_ROOTS = 10;

/**
 * The block of root `index` (0..9), allocated zeroed with `bytes` bytes by whichever worker asks
 * first; every later caller, in any worker, gets the same offset. Never freed.
 *
 * @example
 * ```ts
 * import { sharedRoot, sharedRootIfAny } from "./heap.ts";
 * console.assert(sharedRootIfAny(9) === 0);
 * const off = sharedRoot(9, 64);
 * console.assert(sharedRoot(9, 64) === off && sharedRootIfAny(9) === off);
 * ```
 */
export function sharedRoot(index: number, bytes: number): number {
  if (!(index >= 0 && index < MAX_ROOTS)) throw new RangeError(`denomp: no heap root ${index}`);
  const i32 = heap().i32, at = ROOTS_I + index;
  const off = Atomics.load(i32, at);
  if (off) return off;
  const mine = alloc(bytes);
  // Two first users race: one block wins, the other goes back.
  const won = Atomics.compareExchange(i32, at, 0, mine);
  if (won === 0) return mine;
  release(mine);
  return won;
}

/**
 * The block of root `index` if some worker has allocated it, else 0 (allocates nothing).
 *
 * @example
 * ```ts
 * import { sharedRootIfAny } from "./heap.ts";
 * console.assert(sharedRootIfAny(8) === 0); // nobody asked for root 8
 * ```
 */
export function sharedRootIfAny(index: number): number {
  return Atomics.load(heap().i32, ROOTS_I + index);
}
