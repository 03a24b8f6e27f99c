/**
 * The shared heap: one growable `SharedArrayBuffer` that the main thread creates and hands to
 * every worker at start-up. Every shared-memory handle (locks, queues, pipes, values, mailboxes)
 * lives in a block of this heap, so a handle's descriptor is only numbers (an offset and a few
 * parameters). That is what lets any handle cross any channel: `postMessage`, a Queue's byte ring,
 * a Pipe, a Mailbox; nothing needs a side channel for a `SharedArrayBuffer` or a `MessagePort`.
 *
 * The heap also holds the process table: one entry per process (slot) with its state and its
 * parent's slot, so any worker can tell whether the owner of a lock is still alive, including
 * the descendants of a worker that was terminated (their entries stay "alive", but an ancestor
 * is dead, and nested workers die with their parent).
 *
 * @module
 */

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
const MAX_BYTES = 1 << 30;
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

/** Called by the worker bootstrap: adopt the parent's heap and this worker's slot. */
export function attachHeap(sab: SharedArrayBuffer, slot: number): Heap {
  const h = views(sab, slot);
  if (h.i32[MAGIC_I] !== MAGIC) {
    throw new Error("denomp: the shared heap handed to this worker is not valid");
  }
  current = h;
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
  Atomics.add(h.i32, DEATH_EPOCH_I, 1);
  Atomics.notify(h.i32, DEATH_EPOCH_I);
  Atomics.notify(h.i32, e); // a child watching its parent's entry
}

/**
 * The message of the `ProcessError` a zombie meets (a worker marked dead while its thread still
 * runs: see _ring "Zombies") at its next channel operation.
 */
export const TERMINATED_MESSAGE =
  "this process was terminated: it may not use shared channels any more";

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

/** The parent slot of `slot` (0 for the main thread). */
export function parentSlot(slot: number): number {
  return Atomics.load(heap().i32, TABLE_BYTE / 4 + slot * 2 + 1);
}

/** Index (into `heap().i32`) of the process-table state word of `slot`, to wait on it. */
export function slotStateIndex(slot: number): number {
  return TABLE_BYTE / 4 + slot * 2;
}

/** Index of the death counter: it grows by one each time any process dies. */
export const DEATH_EPOCH_INDEX: number = DEATH_EPOCH_I;

// ---------------------------------------------------------------------------------------------
// Allocator: power-of-two size classes with a free list each, under a robust spin lock
// (the critical sections are a handful of loads and stores, and the main thread cannot block).

function lockAlloc(i32: Int32Array, me: number): void {
  for (let spins = 0;; spins++) {
    const owner = Atomics.compareExchange(i32, ALLOC_LOCK_I, 0, me);
    if (owner === 0) return;
    // A holder that died inside the allocator would otherwise stop every allocation forever.
    if ((spins & 0xfff) === 0xfff && !isAlive(owner)) {
      if (Atomics.compareExchange(i32, ALLOC_LOCK_I, owner, me) === owner) return;
    }
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
 * import { alloc, heapUsage } from "./_heap.ts";
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

/**
 * Allocates a zeroed block of at least `bytes` bytes with a reference count of 1 and returns the
 * byte offset of its data (16-byte aligned). `kind` says what it is for (diagnostics only).
 */
export function alloc(bytes: number, kind: BlockKind = "other"): number {
  if (!(bytes >= 0) || bytes > MAX_BYTES / 2) {
    throw new RangeError(
      `denomp: cannot allocate ${bytes} bytes of shared memory (at most ${MAX_BYTES / 2})`,
    );
  }
  const h = heap(), i32 = h.i32, k = classOf(bytes), size = 1 << k;
  lockAlloc(i32, h.slot);
  let block: number;
  try {
    block = i32[FREE_HEADS_I + k];
    if (block !== 0) {
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
  h.u8.fill(0, block + BLOCK_HEADER, block + size);
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

const finalizer = new FinalizationRegistry<number | [number, (off: number) => void]>((held) => {
  try {
    if (typeof held === "number") release(held);
    else release(held[0], held[1]);
  } catch { /* the heap is gone with the process */ }
});

/**
 * Ties one reference of block `off` to the life of `owner`: when `owner` is garbage-collected,
 * the reference is dropped (with `beforeFree` as in {@link release}). Every live handle object
 * holds exactly one reference this way.
 */
export function adopt(owner: object, off: number, beforeFree?: (off: number) => void): void {
  finalizer.register(owner, beforeFree ? [off, beforeFree] : off, owner);
}

/**
 * Undoes {@link adopt} for `owner`, which then holds no reference: for handles that drop their
 * reference early, e.g. `SharedMemory.close()`. Returns false if `owner` had adopted nothing.
 */
export function disown(owner: object): boolean {
  return finalizer.unregister(owner);
}
