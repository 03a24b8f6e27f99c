/**
 * A table in shared memory from string keys to actor refs that every worker reaches without
 * being handed anything: the one layer beneath the name registry (`registry.ts`, one ref per
 * name) and process groups (`groups.ts`, any number of refs per group).
 *
 * Why shared memory: a name registered in one worker must be found by any other at once, with
 * no process in the middle to ask (Erlang's registry is in the VM, not in a process). The table's
 * root is a heap root (`sharedRoot`), so a worker finds it from its heap alone.
 *
 * Layout. The root block holds a robust mutex and 256 bucket heads; each entry is its own heap
 * block: `[next, hash, actor, keyLen, descLen, key bytes, descriptor bytes]`, where `actor` is
 * the offset of the actor's mailbox block (its identity) and the descriptor is the ref encoded by
 * the handle codec. Encoding a ref takes a reference to its block, so an entry keeps the block
 * alive: its offset can never be reused by another actor while the entry points at it, and a
 * lookup can never mistake a new actor for a dead one. Dropping an entry decodes its descriptor
 * once, and the decoded ref gives that reference back when collected.
 *
 * Dead entries. An actor that stops leaves the table in two ways: the process that spawned it
 * removes its entries when it sees it stop (`forgetActor`, from spawn's watch), and every lookup
 * checks liveness (the actor's state and its worker's process-table slot) and drops dead entries
 * it meets, so a lookup never returns a dead ref, even when the actor's worker was terminated
 * without running its stop path and its spawner died with it.
 *
 * Every operation runs under the mutex, briefly (a walk of one bucket). Links change by single
 * stores (an entry is complete before it is linked), so a holder that dies mid-operation leaves
 * a consistent list; at worst one entry is leaked.
 *
 * @module
 */

import { mutexAcquireSync, mutexRelease, TIMED_OUT } from "../core/atomics.ts";
import { alloc, heap, release, retain, sharedRoot, sharedRootIfAny } from "../core/heap.ts";
import { checkNotTerminated } from "../core/ring.ts";
import type { Actor } from "./actor.ts";
import { actorOffset, type ActorRef } from "./ref.ts";
import { TimeoutError, ValueError } from "../core/errors.ts";
import { dumps, loads } from "../core/reduction.ts";

const BUCKETS = 256;
// Root block, Int32 words: the mutex, the number of entries, the bucket heads.
const LOCK = 0, COUNT = 1, HEADS = 16;
const ROOT_BYTES = (HEADS + BUCKETS) * 4;
// Entry block: Int32 words, then the key's UTF-8 bytes, then the descriptor.
const NEXT = 0, HASH = 1, ACTOR = 2, KLEN = 3, DLEN = 4, DATA = 20;
/** The lock is held for microseconds; waiting this long means something is badly wrong. */
const LOCK_TIMEOUT_MS = 10_000;

const utf8 = new TextEncoder();

/**
 * Test-only: `add` sleeps this many ms between its check of the key and the insert, so a test
 * can show that the lock makes check-and-insert one step for racing workers.
 */
export const __testHooks: { insertDelayMs: number } = { insertDelayMs: 0 };

/** FNV-1a over the key's bytes. */
function hashOf(key: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i], 0x01000193);
  return h | 0;
}

/** One entry met during a walk: where its link is, so it can be unlinked. */
interface Cursor {
  /** Index (in `heap().i32`) of the word that points at the entry. */
  link: number;
  entry: number;
}

/**
 * The table behind heap root `rootIndex` (see `sharedRoot`).
 *
 * @example
 * ```ts
 * import { names } from "./refmap.ts";
 * console.assert(names.get("nobody-has-this-name").length === 0);
 * ```
 */
export class RefTable {
  readonly #rootIndex: number;
  /** What the table holds, for errors: "name", "group". */
  readonly #what: string;

  constructor(rootIndex: number, what: string) {
    this.#rootIndex = rootIndex;
    this.#what = what;
  }

  #root(): number {
    return sharedRoot(this.#rootIndex, ROOT_BYTES);
  }

  /** Runs `fn` with the mutex held; `fn` gets the root's word index. */
  #locked<R>(fn: (r: number) => R): R {
    const root = this.#root(), i32 = heap().i32, r = root >> 2;
    if (mutexAcquireSync(i32, r + LOCK, LOCK_TIMEOUT_MS) === TIMED_OUT) {
      throw new TimeoutError(`the ${this.#what} table stayed locked for ${LOCK_TIMEOUT_MS} ms`);
    }
    try {
      // A zombie (terminated, its lock taken over) must not write into the table.
      checkNotTerminated();
      return fn(r);
    } finally {
      mutexRelease(i32, r + LOCK, heap().slot);
    }
  }

  /** Walks the entries of `key`'s bucket that hold `key` (lock held). */
  *#walk(r: number, key: Uint8Array, hash: number): Generator<Cursor> {
    const i32 = heap().i32, u8 = heap().u8;
    let link = r + HEADS + ((hash >>> 0) % BUCKETS);
    for (let e = i32[link], hops = 0; e && hops < 1 << 24; hops++) {
      const E = e >> 2, next = i32[E + NEXT];
      let same = i32[E + HASH] === hash && i32[E + KLEN] === key.length;
      for (let i = 0; same && i < key.length; i++) same = u8[e + DATA + i] === key[i];
      if (same) yield { link, entry: e };
      // The entry may have been unlinked by the consumer: then its link now holds `next`.
      if (i32[link] === e) link = E + NEXT;
      e = next;
    }
  }

  /** Unlinks an entry and gives back the reference it held (lock held). */
  #drop(r: number, c: Cursor): void {
    const i32 = heap().i32, E = c.entry >> 2;
    Atomics.store(i32, c.link, i32[E + NEXT]);
    Atomics.sub(i32, r + COUNT, 1);
    const start = c.entry + DATA + i32[E + KLEN];
    try {
      // Decoded once and dropped: the ref adopts the entry's reference and returns it when
      // collected (with the mailbox block's own clean-up).
      loads(heap().u8.slice(start, start + i32[E + DLEN]));
    } catch { /* cannot happen: ref.ts is loaded here */ }
    release(c.entry);
  }

  /** A new ref for the entry (its own reference), or null if the actor has stopped. */
  #ref(c: Cursor): ActorRef<Actor> | null {
    const i32 = heap().i32, E = c.entry >> 2;
    const start = c.entry + DATA + i32[E + KLEN];
    retain(i32[E + ACTOR]); // adopted by the decoded ref
    const ref = loads<ActorRef<Actor>>(heap().u8.slice(start, start + i32[E + DLEN]));
    return ref.isAlive() ? ref : null;
  }

  /** The live refs under `key`, oldest first; dead entries met are dropped. */
  get(key: string): ActorRef<Actor>[] {
    const k = utf8.encode(key), hash = hashOf(k);
    return this.#locked((r) => {
      const out: ActorRef<Actor>[] = [];
      for (const c of this.#walk(r, k, hash)) {
        const ref = this.#ref(c);
        if (ref) out.push(ref);
        else this.#drop(r, c);
      }
      return out;
    });
  }

  /**
   * Adds `ref` under `key`, after the refs already there. Returns false if it was there already.
   * With `unique`, a live actor already under `key` makes it throw `ValueError` instead.
   */
  add(key: string, ref: ActorRef<Actor>, unique: boolean): boolean {
    const k = utf8.encode(key), hash = hashOf(k), off = actorOffset(ref);
    return this.#locked((r) => {
      const i32 = heap().i32;
      let tail = r + HEADS + ((hash >>> 0) % BUCKETS);
      for (const c of this.#walk(r, k, hash)) {
        const other = this.#ref(c);
        if (!other) {
          this.#drop(r, c);
          continue;
        }
        if (actorOffset(other) === off) return false;
        if (unique) {
          throw new ValueError(
            `the ${this.#what} '${key}' is taken by the running actor ${other.name}`,
          );
        }
      }
      if (!ref.isAlive()) throw new ValueError(`actor ${ref.name} has stopped`);
      if (__testHooks.insertDelayMs) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, __testHooks.insertDelayMs);
      }
      while (i32[tail]) tail = (i32[tail] >> 2) + NEXT;
      const desc = dumps(ref); // takes the entry's reference to the mailbox block
      const e = alloc(DATA + k.length + desc.length), E = e >> 2;
      i32[E + HASH] = hash;
      i32[E + ACTOR] = off;
      i32[E + KLEN] = k.length;
      i32[E + DLEN] = desc.length;
      heap().u8.set(k, e + DATA);
      heap().u8.set(desc, e + DATA + k.length);
      Atomics.add(i32, r + COUNT, 1);
      Atomics.store(i32, tail, e); // complete before it is linked
      return true;
    });
  }

  /** Removes `ref` (any ref, if omitted) from `key`; returns how many entries went. */
  remove(key: string, ref?: ActorRef<Actor>): number {
    const k = utf8.encode(key), hash = hashOf(k);
    const off = ref === undefined ? 0 : actorOffset(ref);
    return this.#locked((r) => {
      let n = 0;
      for (const c of this.#walk(r, k, hash)) {
        if (off && heap().i32[(c.entry >> 2) + ACTOR] !== off) continue;
        this.#drop(r, c);
        n++;
      }
      return n;
    });
  }

  /** The keys that hold at least one live actor, each once. */
  keys(): string[] {
    const out = new Set<string>();
    const dec = new TextDecoder();
    this.#locked((r) => {
      const i32 = heap().i32, u8 = heap().u8;
      for (let b = 0; b < BUCKETS; b++) {
        let link = r + HEADS + b;
        for (let e = i32[link]; e;) {
          const E = e >> 2, next = i32[E + NEXT], c = { link, entry: e };
          const ref = this.#ref(c);
          if (ref) {
            out.add(dec.decode(u8.slice(e + DATA, e + DATA + i32[E + KLEN])));
            link = E + NEXT;
          } else this.#drop(r, c);
          e = next;
        }
      }
    });
    return [...out];
  }

  /**
   * Drops every entry of the actor whose mailbox block is at `off` (it has stopped). Cheap when
   * the table was never used or is empty: no lock, no walk.
   */
  forget(off: number): void {
    const root = sharedRootIfAny(this.#rootIndex);
    if (!root || Atomics.load(heap().i32, (root >> 2) + COUNT) <= 0) return;
    this.#locked((r) => {
      const i32 = heap().i32;
      for (let b = 0; b < BUCKETS; b++) {
        let link = r + HEADS + b;
        for (let e = i32[link]; e;) {
          const E = e >> 2, next = i32[E + NEXT];
          if (i32[E + ACTOR] === off) this.#drop(r, { link, entry: e });
          else link = E + NEXT;
          e = next;
        }
      }
    });
  }
}

/** The name registry's table (`registry.ts`). */
export const names: RefTable = new RefTable(0, "name");
/** The process groups' table (`groups.ts`). */
export const groups: RefTable = new RefTable(1, "group");

/**
 * Called when an actor is seen to stop: it leaves its names and groups at once.
 *
 * @example
 * ```ts
 * import { forgetActor } from "./refmap.ts";
 * forgetActor(0); // no actor there, and no table yet: nothing to do
 * ```
 */
export function forgetActor(off: number): void {
  names.forget(off);
  groups.forget(off);
}
