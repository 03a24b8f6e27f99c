/**
 * Shared memory blocks (Python's `multiprocessing.shared_memory`): `SharedMemory`, a block of
 * bytes every worker can map, and `ShareableList`, a fixed-length list of simple values stored
 * in one.
 *
 * A block lives in the shared heap, or, from 64 MiB on, in a `SharedArrayBuffer` of its own
 * (a "big block", see _bigblock: up to what the machine's memory allows). Pass the object itself
 * to a worker (in `args` or through any Queue/Pipe) or, as in Python, its `name`:
 * `new SharedMemory({ name })` attaches to it. The memory is freed when every object referring
 * to it is closed or garbage-collected, so `unlink()` only stops new attachments by name.
 *
 * A big block's buffer reaches another worker only by message, so a worker that has not had it
 * yet must be able to wait: it arrives with the worker's `args`, with `await q.get()` (and the
 * other async receivers) and with `await SharedMemory.attach(name)`; a synchronous receiver
 * (`getSync`, a Pool task's arguments, `new SharedMemory({ name })`) gets an error saying so.
 *
 * A worker terminated while running synchronous code (a zombie, see _heap "Zombies") meets a
 * `ProcessError` at its next `SharedMemory` or `ShareableList` operation that would change
 * shared state; its writes through `buf`, a plain view, cannot be stopped.
 *
 * @module
 */

import { Attaching } from "../core/attach.ts";
import { optionsOf } from "../core/args.ts";
import { __testHooks } from "../sync/hooks.ts";
import {
  adopt,
  alloc,
  blockSize,
  checkNotTerminated,
  disown,
  heap,
  nextId,
  release,
  retain,
  tryRetain,
} from "../core/heap.ts";
import {
  allocBig,
  attachableBig,
  BIG_BLOCK_BYTES,
  bigBuffer,
  bigBufferAsync,
  bigSize,
  forget,
  isBig,
  notHereMessage,
  unlinkBig,
} from "../core/bigblock.ts";
import { ValueError } from "../core/errors.ts";
import { pendingUntil, registerHandle } from "../core/reduction.ts";

// The heap's limit bounds every shared object but the big blocks: set here, with shared memory.
export { heapLimit, setHeapLimit } from "../core/heap.ts";

/** Options of `new SharedMemory(...)`: a `size` to create a block, or a `name` to attach. */
export interface SharedMemoryOptions {
  /** The size in bytes of a new block (> 0). */
  size?: number;
  /** The name of an existing block (its `name`), to attach to it. */
  name?: string;
}

/**
 * Block layout: a 16-byte header (magic, id, size, 0) then the bytes. The magic and id let an
 * attach by name check that the block is still the one named (a freed block's first word is
 * overwritten by the free list, and a reused one gets a new id). A big block has the same
 * header in the heap (see _bigblock) and its bytes in a buffer of their own.
 */
const HEADER = 16, MAGIC = 0x73686d21; // "shm!"
let shmOf!: (s: SharedMemory) => number;
const attaching = new Attaching();

/**
 * A block of shared bytes (Python's `SharedMemory`).
 *
 * @example
 * ```ts
 * import { SharedMemory } from "jsr:@denomp/multiprocessing";
 * using shm = new SharedMemory({ size: 16 });
 * shm.buf[0] = 42;
 * using again = new SharedMemory({ name: shm.name }); // attach by name, as in Python
 * console.assert(again.buf[0] === 42 && again.size === 16);
 * ```
 */
export class SharedMemory {
  #off: number;
  #buf: Uint8Array | null;
  #size: number;
  #name: string;
  /** A big block rebuilt here before its buffer arrived: `buf` waits for it. */
  #arriving = false;

  /**
   * Creates a block of `size` bytes (zeroed), or attaches to the block called `name`. A block of
   * 64 MiB or more gets its own `SharedArrayBuffer`: its size is limited by the machine's memory
   * only (V8 allows 2^53 - 1 bytes). Attaching by name to such a block fails in a worker it has
   * not reached yet: use {@link SharedMemory.attach} there.
   */
  constructor(options: SharedMemoryOptions) {
    let off: number, sab: SharedArrayBuffer | undefined;
    const { size, name } = optionsOf(
      options,
      "new SharedMemory",
      "new SharedMemory({ size: 1024 }) or new SharedMemory({ name })",
    );
    const i32 = heap().i32;
    const attached = attaching.take();
    if (attached !== undefined) {
      off = attached;
    } else if (name !== undefined) {
      checkNotTerminated();
      off = attachByName(String(name));
    } else {
      checkNotTerminated();
      if (typeof size !== "number" || !Number.isInteger(size) || size <= 0) {
        throw new ValueError(
          `'size' must be a positive integer when creating a SharedMemory: current value is ${size}`,
        );
      }
      if (HEADER + size >= BIG_BLOCK_BYTES) {
        ({ off, sab } = allocBig(size));
      } else {
        off = alloc(HEADER + size);
        i32[(off >> 2) + 1] = nextId();
        i32[(off >> 2) + 2] = size;
        Atomics.store(i32, off >> 2, MAGIC);
      }
    }
    const big = isBig(off);
    adopt(this, off, big ? forget : undefined);
    this.#off = off;
    this.#size = big ? bigSize(off) : i32[(off >> 2) + 2];
    this.#name = `psm_${i32[(off >> 2) + 1].toString(36)}_${off.toString(36)}`;
    if (!big) this.#buf = new Uint8Array(heap().sab, off + HEADER, this.#size);
    else if ((sab ??= bigBuffer(off))) this.#buf = new Uint8Array(sab);
    else if (name !== undefined) {
      this.#buf = null; // give back the reference the attach took
      disown(this, off);
      release(off, forget);
      throw new ValueError(notHereMessage(`SharedMemory '${name}'`));
    } else {
      // Rebuilt by the codec: an async receiver waits for the buffer, a sync one fails.
      this.#buf = new Uint8Array(0);
      this.#arriving = true;
      pendingUntil(
        bigBufferAsync(off).then((b) => {
          if (this.#arriving) this.#buf = new Uint8Array(b);
          this.#arriving = false;
        }),
        notHereMessage(`SharedMemory '${this.#name}'`),
      );
    }
    if (name !== undefined && size !== undefined && size > this.#size) {
      this.close();
      throw new ValueError(`SharedMemory '${name}' has ${this.#size} bytes, fewer than ${size}`);
    }
  }

  /**
   * Attaches to the block called `name`, waiting (up to 30 s) for a big block's buffer to reach
   * this worker: the way to attach by name in a worker that may not have had it yet.
   *
   * @example
   * ```ts
   * import { SharedMemory } from "jsr:@denomp/multiprocessing";
   * using shm = new SharedMemory({ size: 64 << 20 }); // a big block
   * shm.buf[shm.size - 1] = 7;
   * using again = await SharedMemory.attach(shm.name);
   * console.assert(again.buf[again.size - 1] === 7);
   * ```
   */
  static async attach(name: string): Promise<SharedMemory> {
    if (typeof name !== "string") {
      throw new TypeError(
        `SharedMemory.attach() takes the block's name: current value is ${String(name)}`,
      );
    }
    checkNotTerminated();
    const off = attachByName(name);
    try {
      if (isBig(off)) await bigBufferAsync(off);
    } catch (e) {
      release(off, forget);
      throw e;
    }
    return attaching.run(off, () => new SharedMemory({}));
  }

  static {
    shmOf = (s) => {
      if (!s.#buf) throw new ValueError("cannot send a closed SharedMemory");
      return s.#off;
    };
  }

  /**
   * The bytes (a view into shared memory). Throws `ValueError` after `close()`, and for a big
   * block still on its way to this worker (received by a synchronous receiver).
   */
  get buf(): Uint8Array {
    if (!this.#buf) throw new ValueError("this SharedMemory is closed");
    if (this.#arriving) throw new ValueError(notHereMessage(`SharedMemory '${this.#name}'`));
    return this.#buf;
  }

  /** The size in bytes. */
  get size(): number {
    return this.#size;
  }

  /** A name that other code of this run can attach to with `new SharedMemory({ name })`. */
  get name(): string {
    return this.#name;
  }

  /** Drops this object's access (the memory is freed once no object refers to it). */
  close(): void {
    if (!this.#buf) return;
    checkNotTerminated();
    this.#buf = null;
    this.#arriving = false;
    disown(this, this.#off);
    release(this.#off, isBig(this.#off) ? forget : undefined);
  }

  /** Stops further attachments by name (the memory itself goes once all are closed). */
  unlink(): void {
    if (!this.#buf) throw new ValueError("this SharedMemory is closed");
    checkNotTerminated();
    if (isBig(this.#off)) unlinkBig(this.#off);
    else Atomics.store(heap().i32, this.#off >> 2, 0);
  }

  /** `using shm = new SharedMemory(...)` closes it at the end of the scope. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** A short description, like Python's repr. */
  toString(): string {
    return `SharedMemory('${this.#name}', size=${this.#size})`;
  }
}

/**
 * Finds the block called `name` and takes a reference to it. The reference is added only if
 * the block still has one (a reference added to a block being freed would revive it, and the
 * allocator would hand it out again while it is in use), and the block is checked again once
 * held: it may have been freed and reused, for anything, between the first check and the
 * reference.
 */
function attachByName(name: string): number {
  const m = /^psm_([0-9a-z]+)_([0-9a-z]+)$/.exec(name);
  if (m) {
    const id = parseInt(m[1], 36), off = parseInt(m[2], 36);
    if (named(off, id)) {
      __testHooks.sharedMemoryAttach?.();
      if (tryRetain(off)) {
        if (named(off, id)) return off; // still the block that was named
        release(off, isBig(off) ? forget : undefined); // freed and reused meanwhile
      }
    }
  }
  throw new ValueError(`no SharedMemory named '${name}' (closed, unlinked, or never created)`);
}

/** True when the block at `off` is a live SharedMemory (or big block) with this id. */
function named(off: number, id: number): boolean {
  const h = heap();
  if (!(off % 16 === 0 && off >= HEADER && off + HEADER <= h.sab.byteLength)) return false;
  if (attachableBig(off)) return h.i32[(off >> 2) + 1] === id && blockSize(off) >= HEADER;
  return Atomics.load(h.i32, off >> 2) === MAGIC && h.i32[(off >> 2) + 1] === id &&
    h.i32[(off >> 2) + 2] + HEADER <= blockSize(off);
}

registerHandle<SharedMemory, number>({
  name: "SharedMemory",
  module: import.meta.url,
  cls: SharedMemory,
  reduce: (s) => {
    const off = shmOf(s);
    retain(off);
    return off;
  },
  rebuild: (off) => {
    return attaching.run(off, () => new SharedMemory({}));
  },
  // A message not sent after all: its reference would keep the block (a big one: its
  // gigabytes, in the main thread) for the rest of the run.
  discard: (off) => release(off, isBig(off) ? forget : undefined),
});

// ---------------------------------------------------------------------------------------------
// ShareableList

/** What a `ShareableList` item may hold. */
export type ShareableItem = number | bigint | boolean | string | Uint8Array | null;

/**
 * Layout in the SharedMemory: [count: u32, 0: u32], then per item a slot of 16 bytes
 * (kind: u32, capacity: u32, data offset: u32, length: u32), then the data. Numbers, bigints
 * and booleans take 8 bytes; strings (UTF-8) and bytes get their length rounded up to 8, and may
 * later be replaced by anything that fits there (as in Python).
 */
const K_NULL = 0, K_NUMBER = 1, K_BIGINT = 2, K_BOOL = 3, K_STRING = 4, K_BYTES = 5;
const SLOT = 16, LIST_HEADER = 8;
const utf8 = new TextEncoder(), utf8d = new TextDecoder();
/** Set while the codec rebuilds a list: the constructor uses this SharedMemory. */
const attachingList = new Attaching<SharedMemory>();

function encodeItem(v: unknown, where: string): [number, Uint8Array | null] {
  if (v === null || v === undefined) return [K_NULL, null];
  switch (typeof v) {
    case "number":
      return [K_NUMBER, null];
    case "bigint":
      if (v < -(1n << 63n) || v >= 1n << 63n) {
        throw new RangeError(`${where}: ${v} does not fit in 64 bits`);
      }
      return [K_BIGINT, null];
    case "boolean":
      return [K_BOOL, null];
    case "string":
      return [K_STRING, utf8.encode(v)];
  }
  if (v instanceof Uint8Array) return [K_BYTES, v];
  throw new TypeError(
    `${where}: a ShareableList holds numbers, bigints, booleans, strings, Uint8Arrays and null`,
  );
}

/**
 * A fixed-length list of simple values in a `SharedMemory` (Python's `ShareableList`). Items
 * can be replaced; a string or byte item can grow only up to the room its first value took
 * (rounded up to 8 bytes), as in Python. Reads and writes are not locked.
 *
 * @example
 * ```ts
 * import { ShareableList } from "jsr:@denomp/multiprocessing";
 * const sl = new ShareableList([1, "howdy", true, null, 2n]);
 * sl.set(1, "hi");
 * console.assert(sl.get(1) === "hi" && sl.length === 5 && sl.index(true) === 2);
 * const again = new ShareableList(undefined, { name: sl.shm.name });
 * console.assert(again.get(4) === 2n);
 * ```
 */
export class ShareableList {
  #shm: SharedMemory;
  #dv: DataView;
  #length: number;

  /** A new list holding `values`, or (with `name`) the existing list in that SharedMemory. */
  constructor(values?: Iterable<ShareableItem>, options?: { name?: string }) {
    options = optionsOf(options, "new ShareableList", "new ShareableList(undefined, { name })");
    const attached = attachingList.take();
    if (attached) {
      this.#shm = attached;
    } else if (options.name !== undefined) {
      this.#shm = new SharedMemory({ name: options.name });
    } else {
      const items = Array.from(values ?? []);
      const enc = items.map((v, i) => encodeItem(v, `item ${i}`));
      let data = 0;
      for (const [, bytes] of enc) data += bytes ? Math.max(8, (bytes.length + 7) & ~7) : 8;
      const base = LIST_HEADER + SLOT * items.length;
      this.#shm = new SharedMemory({ size: base + data });
      const dv = view(this.#shm);
      dv.setUint32(0, items.length, true);
      let at = base;
      enc.forEach(([kind, bytes], i) => {
        const cap = bytes ? Math.max(8, (bytes.length + 7) & ~7) : 8;
        dv.setUint32(LIST_HEADER + i * SLOT + 4, cap, true);
        dv.setUint32(LIST_HEADER + i * SLOT + 8, at, true);
        at += cap;
        write(dv, i, kind, items[i], bytes);
      });
    }
    this.#dv = view(this.#shm);
    this.#length = this.#dv.getUint32(0, true);
  }

  /** The SharedMemory that holds the list (its `name` attaches to the list elsewhere). */
  get shm(): SharedMemory {
    return this.#shm;
  }

  /** The number of items. */
  get length(): number {
    return this.#length;
  }

  #slot(i: number): number {
    const n = this.#length;
    if (!Number.isInteger(i)) {
      throw new TypeError(`list indices must be integers: current value is ${i}`);
    }
    const j = i < 0 ? i + n : i;
    if (j < 0 || j >= n) throw new RangeError(`list index out of range: ${i} (length ${n})`);
    return j;
  }

  /** The item at `i` (negative counts from the end). */
  get(i: number): ShareableItem {
    return read(this.#dv, this.#slot(i));
  }

  /** Replaces the item at `i`; `ValueError` if a string or bytes exceeds the room it has. */
  set(i: number, v: ShareableItem): void {
    checkNotTerminated();
    const j = this.#slot(i), dv = this.#dv;
    const [kind, bytes] = encodeItem(v, `item ${j}`);
    const cap = dv.getUint32(LIST_HEADER + j * SLOT + 4, true);
    if (bytes && bytes.length > cap) {
      throw new ValueError(
        `item ${j}: ${bytes.length} bytes exceed the ${cap} bytes of storage it has`,
      );
    }
    write(dv, j, kind, v, bytes);
  }

  /** How many items equal `v` (`===`; bytes compare by content). */
  count(v: ShareableItem): number {
    let n = 0;
    for (const x of this) if (same(x, v)) n++;
    return n;
  }

  /** The index of the first item equal to `v`; `ValueError` if there is none. */
  index(v: ShareableItem): number {
    for (let i = 0; i < this.#length; i++) if (same(read(this.#dv, i), v)) return i;
    throw new ValueError(`${typeof v === "string" ? JSON.stringify(v) : String(v)} is not in list`);
  }

  /** Iterates over the items. */
  *[Symbol.iterator](): Iterator<ShareableItem> {
    for (let i = 0; i < this.#length; i++) yield read(this.#dv, i);
  }

  /** A short description, like Python's repr. */
  toString(): string {
    return `ShareableList([${
      [...this].map((x) => typeof x === "string" ? JSON.stringify(x) : String(x)).join(", ")
    }], name='${this.#shm.name}')`;
  }
}

function view(shm: SharedMemory): DataView {
  const b = shm.buf;
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function same(a: ShareableItem, b: ShareableItem): boolean {
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    return a.length === b.length && a.every((x, i) => x === b[i]);
  }
  return a === b || (Number.isNaN(a) && Number.isNaN(b));
}

function write(dv: DataView, i: number, kind: number, v: unknown, bytes: Uint8Array | null): void {
  const slot = LIST_HEADER + i * SLOT, at = dv.getUint32(slot + 8, true);
  switch (kind) {
    case K_NUMBER:
      dv.setFloat64(at, v as number, true);
      break;
    case K_BIGINT:
      dv.setBigInt64(at, v as bigint, true);
      break;
    case K_BOOL:
      dv.setUint8(at, v ? 1 : 0);
      break;
    case K_STRING:
    case K_BYTES:
      new Uint8Array(dv.buffer, dv.byteOffset + at, bytes!.length).set(bytes!);
      dv.setUint32(slot + 12, bytes!.length, true);
      break;
  }
  dv.setUint32(slot, kind, true);
}

function read(dv: DataView, i: number): ShareableItem {
  const slot = LIST_HEADER + i * SLOT, at = dv.getUint32(slot + 8, true);
  switch (dv.getUint32(slot, true)) {
    case K_NUMBER:
      return dv.getFloat64(at, true);
    case K_BIGINT:
      return dv.getBigInt64(at, true);
    case K_BOOL:
      return dv.getUint8(at) === 1;
    case K_STRING: {
      const len = dv.getUint32(slot + 12, true);
      // TextDecoder refuses views of shared memory: copy the bytes out first.
      return utf8d.decode(new Uint8Array(dv.buffer, dv.byteOffset + at, len).slice());
    }
    case K_BYTES: {
      const len = dv.getUint32(slot + 12, true);
      return new Uint8Array(dv.buffer, dv.byteOffset + at, len).slice();
    }
  }
  return null;
}

registerHandle<ShareableList, SharedMemory>({
  name: "ShareableList",
  module: import.meta.url,
  cls: ShareableList,
  reduce: (l) => l.shm,
  rebuild: (shm) => {
    return attachingList.run(shm, () => new ShareableList());
  },
});
