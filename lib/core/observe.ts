/**
 * What `snapshot()` reads: two tables in shared memory that make every lock, queue and process
 * of the whole process tree visible from any worker, without asking any of them.
 *
 * Why shared memory: a snapshot taken in one worker must see the locks another worker created
 * and who waits for them, including a worker stuck in `Atomics.wait` that could answer no
 * message. So every object records itself once, at creation, in the object table (its kind, its
 * block, its name), and every process has a record in the process table (its name, target,
 * start time, exit code, and what its threads wait for). A snapshot walks the tables and reads
 * the objects' live words: a mutex word already names its holder's slot, a semaphore keeps its
 * holders, a queue its counters. Nothing is collected until something reads it.
 *
 * Cost. Creating an object costs one table entry (and, when it has no name, a look at the
 * caller's stack frame, a few microseconds, for a name from its creation site). Acquiring or
 * waiting costs nothing on the fast path; a waiter about to sleep writes one small record
 * ("thread T of this process waits for object O") and clears it when done: a sleep costs tens
 * of microseconds, the record well under one.
 *
 * Object table (heap root 7): a header, then `CAPACITY` entries of 16 words: kind (0 free, -1
 * being written), the object's block offset, its creator's slot, its name (inline when short,
 * else in a UTF-8 block of its own), flags, an id. The object's block header
 * keeps the index of its entry (spare word 3), so the entry is found in O(1) from the block. A
 * full table leaves new objects
 * unlisted (counted in `dropped`), never failing their creation.
 *
 * Process table (heap root 8): a directory of pages of 256 records of 512 bytes, one record per
 * process slot: its flags, exit code, start time, name and target, then `WAITERS` waiter
 * records (object, thread, sequence number, thread name): one per thread of the process that
 * is asleep waiting (several async Threads of one isolate may wait at once). Strings are stored
 * inline, cut to fit, so that starting a process or waiting allocates nothing.
 *
 * Unlisting. A lock's handle unlists it when its block is freed (`beforeFree`); queues free
 * their memory on their own, so a reader drops an entry whose block has no reference left or
 * points at another entry.
 *
 * @module
 */

import {
  alloc,
  heap,
  isAlive,
  MAIN_SLOT,
  nextId,
  parentSlot,
  release,
  sharedRoot,
} from "./heap.ts";
import { sharedRootIfAny } from "./heap.ts";

/** The synchronization primitives among {@link KINDS}: a snapshot lists them as `locks`. */
export const LOCK_KINDS = [
  "Lock",
  "RLock",
  "Semaphore",
  "BoundedSemaphore",
  "Condition",
  "Event",
  "Barrier",
] as const;

/** The kinds of objects the table lists (their index + 1 is stored). */
export const KINDS = [
  ...LOCK_KINDS,
  "Queue",
  "SimpleQueue",
  "JoinableQueue",
  "LifoQueue",
  "PriorityQueue",
  "Pool",
  "Mailbox",
  "Actor",
] as const;
/** One of {@link KINDS}. */
export type Kind = typeof KINDS[number];

const OBJECTS_ROOT = 7, PROCESSES_ROOT = 8;

// Object table: header words, then entries of 16 words, the last 8 a name of up to 32 ASCII
// characters (longer ones have a heap block of their own).
const O_HIGH = 0, O_DROPPED = 1, O_DETECT_ALL = 2, O_LIVE = 3, O_HEADER = 16;
const CAPACITY = 8190, ENTRY = 16, INLINE_NAME = 32; // the table fits a 512 KiB block
const K_KIND = 0, K_OFF = 1, K_SLOT = 2, K_NAME = 3, K_NLEN = 4, K_FLAGS = 5, K_ID = 6;
const K_INLINE = 8;
const TABLE_BYTES = (O_HEADER + CAPACITY * ENTRY) * 4;
/** Entry flag: acquires of this lock detect deadlocks. */
export const DETECT_DEADLOCK = 1;
/** Entry flag: the name was given (not made from the creation site). */
const NAMED = 2;

// Process table: a directory of page offsets, then pages of 512-byte records: flags, exit code,
// lengths, the start time (a float64 in words 6-7), the name (up to 64 bytes) and target (96)
// inline, then WAITERS waiter records: object, thread ident, name length, sequence number,
// detects-deadlocks flag, and the thread's name (up to 24 bytes) inline.
const PAGE_SLOTS = 256, DIR_PAGES = 4096, P_HIGH = DIR_PAGES;
const RECORD = 128;
const P_FLAGS = 0, P_EXIT = 1, P_NLEN = 2, P_TLEN = 3, P_BLOB = 4, P_BLOBLEN = 5;
const P_START = 6, P_NAME = 8, P_TARGET = 24;
const NAME_BYTES = 64, TARGET_BYTES = 96;
const P_WAIT = 48, WAITERS = 8, WAITER = 10;
const W_OBJ = 0, W_IDENT = 1, W_NLEN = 2, W_SEQ = 3, W_DETECT = 4, W_NAME = 5;
const THREAD_BYTES = 20;
const F_DAEMON = 1, F_EXITED = 2, F_RECORDED = 4;

const utf8 = new TextEncoder(), fromUtf8 = new TextDecoder();

/** Copies `s` into a new heap block: `[offset, length]` (`[0, 0]` for ""). */
function writeString(s: string): [number, number] {
  const bytes = utf8.encode(s);
  if (bytes.length === 0) return [0, 0];
  const off = alloc(bytes.length);
  heap().u8.set(bytes, off);
  return [off, bytes.length];
}

/** Reads a string written by {@link writeString}. */
function readString(off: number, len: number): string {
  if (!off || len <= 0) return "";
  return fromUtf8.decode(heap().u8.slice(off, off + len));
}

// ---------------------------------------------------------------------------------------------
// Object table

/** Word index (in `heap().i32`) of spare header word 3 of the block whose data starts at `off`. */
const headerWord = (off: number) => ((off - 16) >> 2) + 3;

/**
 * Fixed-length views of the table, made once per isolate: Atomics and stores on the heap's
 * length-tracking views cost several times more.
 */
interface Table {
  sab: SharedArrayBuffer;
  i32: Int32Array;
  u8: Uint8Array;
}
let table: Table | undefined;

function tableOf(create: boolean): Table | undefined {
  const h = heap();
  if (table?.sab === h.sab) return table;
  const root = create ? sharedRoot(OBJECTS_ROOT, TABLE_BYTES) : sharedRootIfAny(OBJECTS_ROOT);
  if (!root) return undefined;
  return table = {
    sab: h.sab,
    i32: new Int32Array(h.sab, root, TABLE_BYTES >> 2),
    u8: new Uint8Array(h.sab, root, TABLE_BYTES),
  };
}

let cursor = 0;
/** How long after creating unnamed objects their creation sites are formatted (see `unnamed`). */
const NAME_DELAY_MS = 250;
// Call sites name local files by path, remote ones by URL.
const local = (u: URL) => u.protocol === "file:" ? decodeURIComponent(u.pathname) : u.href;
const LIB = local(new URL("..", import.meta.url));
const MOD = local(new URL("../../mod.ts", import.meta.url));

/** What `siteName` reads of one of V8's call sites. */
export interface CallSite {
  getFileName(): string | null;
  getLineNumber(): number | null;
}

// deno-lint-ignore no-explicit-any
const E = Error as any;

/**
 * Unnamed objects of this isolate whose creation site is not yet written as their name: the
 * stack is captured at creation (~3 µs) but read and formatted (~20 µs, source maps included)
 * only later, in a batch: when this isolate takes a snapshot, or on an idle timer that keeps
 * nothing alive. Until then other isolates see the name `Lock#<id>`.
 */
const unnamed = new Map<number, { off: number; kind: string; stack: { stack?: unknown } }>();
let nameTimer: ReturnType<typeof setTimeout> | undefined;

/** Writes the creation-site names of this isolate's unnamed objects (see `unnamed`). */
export function flushNames(): void {
  if (nameTimer !== undefined) clearTimeout(nameTimer);
  nameTimer = undefined;
  const t = tableOf(false);
  if (!t || unnamed.size === 0) return;
  const prepare = E.prepareStackTrace;
  try {
    E.prepareStackTrace = (_: unknown, cs: CallSite[]) => cs;
    for (const [e, u] of unnamed) {
      // Still the same object (not freed and reused meanwhile).
      if (Atomics.load(t.i32, e + K_OFF) !== u.off) continue;
      let sites: CallSite[] = [];
      try {
        sites = (u.stack.stack as CallSite[] | undefined) ?? [];
      } catch { /* no call sites: the kind alone */ }
      writeName(t, e, siteName(u.kind, sites));
    }
  } finally {
    E.prepareStackTrace = prepare;
    unnamed.clear();
  }
}

/**
 * `Lock@deadlock.ts:12`: the kind and the first call site outside denomp (V8's structured call
 * sites: formatting the stack as text would cost 4x more).
 */
export function siteName(kind: string, sites: CallSite[]): string {
  for (const c of sites) {
    const file = c.getFileName?.() ?? "";
    if (!file || file.startsWith(LIB) || file === MOD || file.startsWith("ext:")) continue;
    if (file.startsWith("file://") && local(new URL(file)).startsWith(LIB)) continue;
    return `${kind}@${file.slice(file.lastIndexOf("/") + 1)}:${c.getLineNumber?.() ?? 0}`;
  }
  return kind;
}

const KIND_INDEX = new Map<string, number>(KINDS.map((k, i) => [k, i + 1]));

/** Writes `name` into entry `e`: inline when it fits, else in a heap block of its own. */
function writeName(t: Table, e: number, name: string): void {
  let ascii = name.length <= INLINE_NAME;
  for (let i = 0; ascii && i < name.length; i++) ascii = name.charCodeAt(i) < 0x80;
  if (ascii) {
    const at = (e + K_INLINE) * 4;
    for (let i = 0; i < name.length; i++) t.u8[at + i] = name.charCodeAt(i);
    t.i32[e + K_NAME] = 0;
    t.i32[e + K_NLEN] = name.length;
  } else {
    [t.i32[e + K_NAME], t.i32[e + K_NLEN]] = writeString(name);
  }
}

function readName(t: Table, e: number): string {
  const off = t.i32[e + K_NAME], len = t.i32[e + K_NLEN];
  if (off) return readString(off, len);
  const at = (e + K_INLINE) * 4;
  return fromUtf8.decode(t.u8.slice(at, at + Math.min(len, INLINE_NAME)));
}

/**
 * Lists a new object: kind, block `off`, `name` (else one from the creation site), `flags`
 * ({@link DETECT_DEADLOCK}). Called once, by the creator.
 */
export function registerObject(kind: Kind, off: number, name: string | undefined, flags = 0): void {
  const t = tableOf(true)!, i32 = t.i32, hp = heap();
  hp.i32[headerWord(off)] = 0;
  // A full table: do not walk it all for nothing.
  if (Atomics.load(i32, O_LIVE) >= CAPACITY) {
    Atomics.add(i32, O_DROPPED, 1);
    return;
  }
  for (let n = 0; n < CAPACITY; n++) {
    const i = (cursor + n) % CAPACITY, e = O_HEADER + i * ENTRY;
    if (i32[e + K_KIND] !== 0 || Atomics.compareExchange(i32, e + K_KIND, 0, -1) !== 0) continue;
    Atomics.add(i32, O_LIVE, 1);
    i32[e + K_OFF] = off;
    i32[e + K_SLOT] = hp.slot;
    i32[e + K_FLAGS] = flags | (name === undefined ? 0 : NAMED);
    i32[e + K_ID] = i;
    if (name === undefined) {
      // The creation site, formatted later (see `unnamed`): `Lock#<id>` until then.
      const stack = {}, limit = E.stackTraceLimit;
      E.stackTraceLimit = 4; // enough to get past denomp: user code is at most 4 frames up
      E.captureStackTrace(stack, registerObject);
      E.stackTraceLimit = limit;
      unnamed.set(e, { off, kind, stack });
      if (nameTimer === undefined) {
        nameTimer = setTimeout(flushNames, NAME_DELAY_MS);
        Deno.unrefTimer(nameTimer);
      }
    }
    writeName(t, e, name ?? `${kind}#${i}`);
    // Linked from the block before the entry is complete: a reader never sees an entry whose
    // block does not point back at it unless that block was freed (see listObjects).
    Atomics.store(hp.i32, headerWord(off), i + 1);
    Atomics.store(i32, e + K_KIND, KIND_INDEX.get(kind)!);
    for (let hi = Atomics.load(i32, O_HIGH); hi < i + 1;) {
      const was = Atomics.compareExchange(i32, O_HIGH, hi, i + 1);
      if (was === hi) break;
      hi = was;
    }
    cursor = i + 1;
    return;
  }
  Atomics.add(i32, O_DROPPED, 1);
}

/** The entry (word index into the table) of the object of block `off`, or -1. */
function entryOf(t: Table, off: number): number {
  if (!off) return -1;
  const i = Atomics.load(heap().i32, headerWord(off)) - 1;
  if (i < 0 || i >= CAPACITY) return -1;
  const e = O_HEADER + i * ENTRY;
  return Atomics.load(t.i32, e + K_OFF) === off && Atomics.load(t.i32, e + K_KIND) > 0 ? e : -1;
}

/** Unlists the object of block `off`: a handle's `beforeFree` (its last reference is gone). */
export function forgetObject(off: number): void {
  const t = tableOf(false);
  const e = t ? entryOf(t, off) : -1;
  if (!t || e < 0) return;
  const i32 = t.i32, name = i32[e + K_NAME];
  Atomics.store(heap().i32, headerWord(off), 0);
  i32[e + K_NAME] = 0;
  i32[e + K_OFF] = 0;
  if (name) release(name);
  Atomics.store(i32, e + K_KIND, 0);
  Atomics.sub(i32, O_LIVE, 1);
}

/**
 * The name of the object of block `off` ("" when it is not listed; with `given`, also when its
 * name was made from its creation site).
 */
export function objectName(off: number, given = false): string {
  const t = tableOf(false);
  const e = t ? entryOf(t, off) : -1;
  if (!t || e < 0 || (given && !(Atomics.load(t.i32, e + K_FLAGS) & NAMED))) return "";
  return readName(t, e);
}

/** True when acquires of the lock at `off` detect deadlocks (its flag, or program-wide). */
export function detectsDeadlock(off: number): boolean {
  const t = tableOf(false);
  if (!t) return false;
  if (Atomics.load(t.i32, O_DETECT_ALL)) return true;
  const e = entryOf(t, off);
  return e >= 0 && (Atomics.load(t.i32, e + K_FLAGS) & DETECT_DEADLOCK) !== 0;
}

/** Turns deadlock detection on or off for every lock of the program, in every worker. */
export function setDetectAll(on: boolean): void {
  Atomics.store(tableOf(true)!.i32, O_DETECT_ALL, on ? 1 : 0);
}

/** One listed object, as a snapshot reads it. */
export interface ObjectEntry {
  kind: Kind;
  off: number;
  name: string;
  creator: number;
  flags: number;
  id: number;
}

/** Every listed object, and how many could not be listed (a full table). */
export function listObjects(): { objects: ObjectEntry[]; dropped: number } {
  const t = tableOf(false);
  if (!t) return { objects: [], dropped: 0 };
  const i32 = t.i32, high = Atomics.load(i32, O_HIGH);
  const objects: ObjectEntry[] = [];
  for (let i = 0; i < high; i++) {
    const e = O_HEADER + i * ENTRY, k = Atomics.load(i32, e + K_KIND);
    if (k <= 0) continue;
    // Objects freed without `forgetObject` (queues give their memory back on their own): their
    // block has no reference left, or now belongs to an object listed elsewhere. Dropped here.
    const off = i32[e + K_OFF], hw = headerWord(off), h32 = heap().i32;
    if (Atomics.load(h32, hw - 2) <= 0 || Atomics.load(h32, hw) !== i + 1) {
      if (Atomics.compareExchange(i32, e + K_KIND, k, -1) === k) {
        const name = i32[e + K_NAME];
        i32[e + K_NAME] = 0;
        i32[e + K_OFF] = 0;
        if (name) release(name);
        Atomics.store(i32, e + K_KIND, 0);
        Atomics.sub(i32, O_LIVE, 1);
      }
      continue;
    }
    const o: ObjectEntry = {
      kind: KINDS[k - 1],
      off: i32[e + K_OFF],
      name: readName(t, e),
      creator: i32[e + K_SLOT],
      flags: i32[e + K_FLAGS],
      id: i32[e + K_ID],
    };
    // Dropped while being read: skip it rather than show half of it.
    if (Atomics.load(i32, e + K_KIND) === k && i32[e + K_OFF] === o.off) objects.push(o);
  }
  return { objects, dropped: Atomics.load(i32, O_DROPPED) };
}

/** The parts of a snapshot that live in one isolate's memory: pools and supervisors. */
export type Section = "pools" | "supervisors";

/**
 * Readers of this isolate's pools and supervisors (objects of JS memory, not shared): each
 * module adds its own when loaded. Internal.
 */
export const sections: Map<Section, () => Record<string, unknown>[]> = new Map();

/**
 * Pools and supervisors live in the memory of the isolate that made them, so other isolates
 * cannot read them. Instead, each isolate publishes them (as JSON, in a heap block its process
 * record points at) when they change, at most every PUBLISH_MS, on a timer that keeps nothing
 * alive: another isolate's snapshot shows them as of then. A pool calls this after each task
 * (one comparison while a publication is pending).
 */
export function localChanged(): void {
  if (publishTimer !== undefined) return;
  publishTimer = setTimeout(publishLocal, PUBLISH_MS);
  Deno.unrefTimer(publishTimer);
}

const PUBLISH_MS = 500;
let publishTimer: ReturnType<typeof setTimeout> | undefined;

/** The sections of this isolate, read now. */
export function localSections(): Record<Section, Record<string, unknown>[]> {
  const read = (k: Section) => {
    try {
      return sections.get(k)?.() ?? [];
    } catch {
      return []; // a section that cannot be read now does not spoil the rest
    }
  };
  return { pools: read("pools"), supervisors: read("supervisors") };
}

function publishLocal(): void {
  publishTimer = undefined;
  const r = recordOf(heap().slot, true);
  if (r < 0) return;
  const bytes = utf8.encode(JSON.stringify(localSections()));
  const i32 = heap().i32, blk = alloc(bytes.length), old = Atomics.load(i32, r + P_BLOB);
  heap().u8.set(bytes, blk);
  // A reader checks that the pointer did not change while it copied (see `published`).
  Atomics.store(i32, r + P_BLOB, 0);
  Atomics.store(i32, r + P_BLOBLEN, bytes.length);
  Atomics.store(i32, r + P_BLOB, blk);
  if (old) release(old);
}

/** What the other live processes published (see `localChanged`), with their slots. */
export function published(): {
  slot: number;
  sections: Record<Section, Record<string, unknown>[]>;
}[] {
  const out: { slot: number; sections: Record<Section, Record<string, unknown>[]> }[] = [];
  const dir = sharedRootIfAny(PROCESSES_ROOT) >> 2;
  if (!dir) return out;
  const h = heap(), i32 = h.i32, high = Atomics.load(i32, dir + P_HIGH);
  for (let slot = MAIN_SLOT; slot <= high; slot++) {
    if (slot === h.slot) continue;
    const r = recordOf(slot, false);
    if (r < 0 || !Atomics.load(i32, r + P_BLOB) || !isAlive(slot)) continue;
    const blk = Atomics.load(i32, r + P_BLOB), len = Atomics.load(i32, r + P_BLOBLEN);
    const bytes = h.u8.slice(blk, blk + len);
    if (Atomics.load(i32, r + P_BLOB) !== blk) continue; // replaced while read: next time
    try {
      out.push({ slot, sections: JSON.parse(fromUtf8.decode(bytes)) });
    } catch { /* freed and reused while read: next time */ }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Process table

/**
 * Writes `text` into `bytes` words of the heap at word `at` (UTF-8, cut to fit); returns its
 * length in bytes. Inline, so that starting a process or waiting allocates nothing.
 */
function writeInline(at: number, bytes: number, text: string): number {
  const u8 = heap().u8, b = at * 4;
  let n = 0;
  for (; n < text.length && n < bytes; n++) {
    const c = text.charCodeAt(n);
    if (c >= 0x80) break;
    u8[b + n] = c;
  }
  if (n === text.length || n === bytes) return n;
  const enc = utf8.encode(text).subarray(0, bytes); // not ASCII: the slow way
  u8.set(enc, b);
  return enc.length;
}

function readInline(at: number, len: number): string {
  if (len <= 0) return "";
  const b = at * 4;
  return fromUtf8.decode(heap().u8.slice(b, b + len));
}

/** Word index (in `heap().i32`) of `slot`'s record, allocating its page when `create`; or -1. */
function recordOf(slot: number, create: boolean): number {
  const page = Math.floor(slot / PAGE_SLOTS);
  if (page >= DIR_PAGES || slot <= 0) return -1;
  const i32 = heap().i32;
  const dir = create
    ? sharedRoot(PROCESSES_ROOT, (DIR_PAGES + 16) * 4) >> 2
    : sharedRootIfAny(PROCESSES_ROOT) >> 2;
  if (!dir) return -1;
  let p = Atomics.load(i32, dir + page);
  if (!p) {
    if (!create) return -1;
    const mine = alloc(PAGE_SLOTS * RECORD * 4);
    p = Atomics.compareExchange(i32, dir + page, 0, mine);
    if (p) release(mine);
    else p = mine;
  }
  if (create) {
    for (let hi = Atomics.load(i32, dir + P_HIGH); hi < slot;) {
      const was = Atomics.compareExchange(i32, dir + P_HIGH, hi, slot);
      if (was === hi) break;
      hi = was;
    }
  }
  return (p >> 2) + (slot % PAGE_SLOTS) * RECORD;
}

/**
 * Records a process that starts (by its parent, before it runs): its name, whether it is a
 * daemon, and what it runs (`module.ts#export`).
 */
export function recordProcess(
  slot: number,
  name: string,
  daemon: boolean,
  module: string,
  target: string,
): void {
  const r = recordOf(slot, true);
  if (r < 0) return;
  const h = heap();
  if (h.slot === MAIN_SLOT) {
    const m = recordOf(MAIN_SLOT, true);
    if (!Atomics.load(h.i32, m + P_FLAGS)) {
      writeRecord(m, "MainProcess", false, "", performance.timeOrigin);
    }
  }
  const file = module.slice(module.lastIndexOf("/") + 1);
  writeRecord(r, name, daemon, target ? `${file}#${target}` : file, Date.now());
}

function writeRecord(r: number, name: string, daemon: boolean, target: string, start: number) {
  const h = heap(), i32 = h.i32;
  i32[r + P_NLEN] = writeInline(r + P_NAME, NAME_BYTES, name);
  i32[r + P_TLEN] = writeInline(r + P_TARGET, TARGET_BYTES, target);
  h.f64[(r + P_START) >> 1] = start;
  Atomics.store(i32, r + P_FLAGS, F_RECORDED | (daemon ? F_DAEMON : 0));
}

/** Records how a process ended (by its parent). */
export function recordExit(slot: number, code: number): void {
  const r = recordOf(slot, false);
  if (r < 0) return;
  const i32 = heap().i32;
  i32[r + P_EXIT] = code;
  Atomics.or(i32, r + P_FLAGS, F_EXITED);
  // What it published is of no use now (its pools and supervisors are gone with it).
  const blob = Atomics.exchange(i32, r + P_BLOB, 0);
  if (blob) release(blob);
}

/**
 * Notes that thread `ident` (named `threadName`, `undefined` for the process's main thread) of
 * this process is about to sleep waiting for the object of block `obj`, and whether that wait
 * detects deadlocks. Returns the waiter record to give to {@link endWait}, or -1 when all of
 * them are taken. A few stores: it runs only before a sleep.
 */
export function beginWait(
  obj: number,
  ident: number,
  threadName: string | undefined,
  detect: boolean,
): number {
  const r = recordOf(heap().slot, true);
  if (r < 0) return -1;
  const i32 = heap().i32;
  for (let w = r + P_WAIT; w < r + P_WAIT + WAITERS * WAITER; w += WAITER) {
    if (Atomics.compareExchange(i32, w + W_OBJ, 0, -1) !== 0) continue;
    i32[w + W_IDENT] = ident;
    i32[w + W_NLEN] = threadName === undefined
      ? 0
      : writeInline(w + W_NAME, THREAD_BYTES, threadName);
    i32[w + W_SEQ] = nextId();
    i32[w + W_DETECT] = detect ? 1 : 0;
    Atomics.store(i32, w + W_OBJ, obj);
    return w;
  }
  return -1;
}

/** Ends a wait noted by {@link beginWait}. */
export function endWait(w: number): void {
  if (w >= 0) Atomics.store(heap().i32, w + W_OBJ, 0);
}

/** One process, as a snapshot reads it. */
export interface ProcessEntry {
  slot: number;
  name: string;
  parent: number;
  daemon: boolean;
  alive: boolean;
  exitCode: number | null;
  target: string;
  startTime: number | null;
  /**
   * What its threads wait for: the object's block, the thread, its name ("" for the main
   * thread), when the wait began (a sequence number) and whether it detects deadlocks.
   */
  waiters: { obj: number; ident: number; thread: string; seq: number; detect: boolean }[];
}

/** How many ended processes a listing keeps (the latest): a program may start thousands. */
const KEEP_ENDED = 50;

/** Every recorded process that runs, and the latest ended ones, in slot order. */
export function listProcesses(): ProcessEntry[] {
  const out: ProcessEntry[] = [];
  const dir = sharedRootIfAny(PROCESSES_ROOT) >> 2;
  const high = dir ? Atomics.load(heap().i32, dir + P_HIGH) : MAIN_SLOT;
  let ended = 0;
  for (let slot = Math.max(high, MAIN_SLOT); slot >= MAIN_SLOT; slot--) {
    if (!isAlive(slot) && ended++ >= KEEP_ENDED) continue;
    const p = readProcess(slot);
    if (p) out.push(p);
  }
  return out.reverse();
}

/** The record of `slot` (the main process has one even if never written), or null. */
export function readProcess(slot: number): ProcessEntry | null {
  const r = recordOf(slot, false), h = heap(), i32 = h.i32;
  const flags = r < 0 ? 0 : Atomics.load(i32, r + P_FLAGS);
  const alive = isAlive(slot), waiters: ProcessEntry["waiters"] = [];
  // A process that died waiting (terminated) left its records: it waits for nothing now.
  if (r >= 0 && alive) {
    for (let w = r + P_WAIT; w < r + P_WAIT + WAITERS * WAITER; w += WAITER) {
      const obj = Atomics.load(i32, w + W_OBJ);
      if (obj <= 0) continue;
      waiters.push({
        obj,
        ident: i32[w + W_IDENT],
        thread: readInline(w + W_NAME, i32[w + W_NLEN]),
        seq: i32[w + W_SEQ],
        detect: i32[w + W_DETECT] !== 0,
      });
    }
  }
  const recorded = (flags & F_RECORDED) !== 0;
  // Not recorded, but threads of it wait (a worker not started by denomp's Child): kept.
  if (!recorded && slot !== MAIN_SLOT && waiters.length === 0) return null;
  return {
    slot,
    name: recorded
      ? readInline(r + P_NAME, i32[r + P_NLEN])
      : slot === MAIN_SLOT
      ? "MainProcess"
      : `slot-${slot}`,
    parent: parentSlot(slot),
    daemon: (flags & F_DAEMON) !== 0,
    alive,
    exitCode: flags & F_EXITED ? i32[r + P_EXIT] : null,
    target: recorded ? readInline(r + P_TARGET, i32[r + P_TLEN]) : "",
    startTime: recorded
      ? h.f64[(r + P_START) >> 1]
      : slot === MAIN_SLOT && h.slot === MAIN_SLOT
      ? performance.timeOrigin
      : null,
    waiters,
  };
}
