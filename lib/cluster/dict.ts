/**
 * The cluster dict (`cluster.dict`): the Manager dict proxy's methods on a JetStream KV bucket,
 * shared by every client that names it.
 *
 * Keys of any sendable kind are encoded with the codec (then base64url, which KV keys allow), so
 * `1` and `"1"` are different keys. The bucket's per-key revisions give compare-and-set, on which
 * `pop`, `setdefault` and `modify` retry instead of taking a lock: no client can leave a lock
 * held by dying.
 *
 * @module
 */

import { sameBytes } from "../core/bytes.ts";
import {
  apiCode,
  decode,
  ERR_KEY_EXISTS,
  ERR_WRONG_LAST_SEQ,
  type KV,
  type KvEntry,
  retrying,
  sleep,
  StorageType,
} from "./nats.ts";
import type { Ctx } from "./context.ts";
import { TimeoutError, ValueError } from "../core/errors.ts";
import { KeyError } from "../core/lookup_errors.ts";
import { dumps, loads } from "../core/reduction.ts";

// ---------------------------------------------------------------------------------------------
// dict

/** Options of `cluster.dict`. */
export interface ClusterDictOptions {
  /** `"file"` (default) survives a server restart; `"memory"` does not. */
  storage?: "file" | "memory";
}

const b64url = (b: Uint8Array): string => {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};
const unb64url = (s: string): Uint8Array => {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
};

/** Anything `update` accepts: a plain object, a Map, or `[key, value]` pairs. */
export type DictUpdate<K, V> = Map<K, V> | Iterable<readonly [K, V]> | Record<string, V>;

/**
 * A dict on a JetStream KV bucket, shared by every client that names it: the Manager dict
 * proxy's methods (all async), plus `compareAndSet` and `modify` for safe concurrent updates.
 * Keys may be any sendable value (strings, numbers, arrays...); they are stored encoded, so
 * `1` and `"1"` are different keys. As with a manager proxy, changing a value read out of the
 * dict changes nothing until it is `set` back.
 *
 * @example
 * ```ts
 * import { connectCluster } from "./mod.ts";
 * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
 * // Same name, same dict, on any machine:
 * const d = cluster.dict<string, number[]>(`doc-${crypto.randomUUID().slice(0, 8)}`);
 * await d.set("a", [1, 2]);
 * console.assert(await d.compareAndSet("a", [1, 2], [1, 2, 3])); // nobody changed it meanwhile
 * console.assert((await d.get("a"))?.length === 3);
 * await d.destroy();
 * ```
 */
export class ClusterDict<K = unknown, V = unknown> {
  readonly #ctx: Ctx;
  readonly #bucket: string;
  readonly #options: ClusterDictOptions;
  #kv?: Promise<KV>;
  /** The dict's name. */
  readonly name: string;

  /** Use `cluster.dict(name)`. */
  constructor(ctx: Ctx, name: string, options: ClusterDictOptions) {
    this.#ctx = ctx;
    this.name = name;
    this.#bucket = `denomp_d_${name}`;
    this.#options = options;
  }

  #open(): Promise<KV> {
    return this.#kv ??= retrying(this.#ctx.nc, () =>
      this.#ctx.kvm.create(this.#bucket, {
        history: 1,
        storage: this.#options.storage === "memory" ? StorageType.Memory : StorageType.File,
      }), Date.now() + 30_000);
  }

  #key(key: K): string {
    return b64url(dumps(key, "key"));
  }

  async #entry(key: K): Promise<KvEntry | null> {
    const kv = await this.#open();
    const e = await kv.get(this.#key(key));
    return e && e.operation === "PUT" ? e : null;
  }

  /**
   * The value of `key`, or `dflt` when the key is missing.
   *
   * @param key The key.
   * @param dflt What a missing key gives.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * console.assert(await d.get("n") === undefined);
   * console.assert(await d.get("n", 0) === 0);
   * await d.set("n", 5);
   * console.assert(await d.get("n", 0) === 5);
   * await d.destroy();
   * ```
   */
  async get(key: K, dflt?: V): Promise<V | undefined> {
    const e = await this.#entry(key);
    return e ? decode<V>(e.value) : dflt;
  }

  /**
   * Sets `key` to `value`.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await d.set("n", 1);
   * await d.set("n", 2);
   * console.assert(await d.get("n") === 2);
   * await d.destroy();
   * ```
   */
  async set(key: K, value: V): Promise<void> {
    const kv = await this.#open();
    await kv.put(this.#key(key), dumps(value, "value"));
  }

  /**
   * Removes `key`; resolves to whether it was there.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await d.set("n", 1);
   * console.assert(await d.delete("n"));
   * console.assert(!(await d.delete("n"))); // was not there any more
   * await d.destroy();
   * ```
   */
  async delete(key: K): Promise<boolean> {
    const kv = await this.#open();
    const e = await this.#entry(key);
    if (!e) return false;
    await kv.delete(this.#key(key));
    return true;
  }

  /**
   * Whether `key` is in the dict.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await d.set("n", 1);
   * console.assert(await d.has("n") && !(await d.has("m")));
   * await d.destroy();
   * ```
   */
  async has(key: K): Promise<boolean> {
    return (await this.#entry(key)) !== null;
  }

  async #rawKeys(): Promise<string[]> {
    const kv = await this.#open();
    const out: string[] = [];
    for await (const k of await kv.keys()) out.push(k);
    return out;
  }

  /**
   * The keys (in no particular order).
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await d.update({ a: 1, b: 2 });
   * console.assert((await d.keys()).sort().join() === "a,b");
   * await d.destroy();
   * ```
   */
  async keys(): Promise<K[]> {
    return (await this.#rawKeys()).map((k) => loads<K>(unb64url(k)));
  }

  /**
   * `[key, value]` pairs.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await d.set("a", 1);
   * for (const [k, v] of await d.items()) console.assert(k === "a" && v === 1);
   * await d.destroy();
   * ```
   */
  async items(): Promise<[K, V][]> {
    const kv = await this.#open();
    const raw = await this.#rawKeys();
    const entries = await Promise.all(raw.map((k) => kv.get(k)));
    const out: [K, V][] = [];
    entries.forEach((e, i) => {
      // A key deleted between the listing and the read is skipped, as if listed a moment later.
      if (e && e.operation === "PUT") out.push([loads<K>(unb64url(raw[i])), decode<V>(e.value)]);
    });
    return out;
  }

  /**
   * The values.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await d.update({ a: 1, b: 2 });
   * const total = (await d.values()).reduce((a, b) => a + b, 0);
   * console.assert(total === 3);
   * await d.destroy();
   * ```
   */
  async values(): Promise<V[]> {
    return (await this.items()).map((e) => e[1]);
  }

  /**
   * Sets every pair of `other` (a plain object, a Map, or `[key, value]` pairs).
   *
   * @throws {ValueError} When an element of a sequence is not a `[key, value]` pair.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await d.update({ a: 1, b: 2 });
   * await d.update(new Map([["c", 3]]));
   * await d.update([["d", 4]]);
   * console.assert(await d.len() === 4);
   * await d.destroy();
   * ```
   */
  async update(other: DictUpdate<K, V>): Promise<void> {
    let pairs: [K, V][];
    if (other instanceof Map) pairs = [...other];
    else if (Symbol.iterator in Object(other)) {
      pairs = [...(other as Iterable<readonly [K, V]>)].map((p, i) => {
        if (!Array.isArray(p) || p.length !== 2) {
          throw new ValueError(
            `dictionary update sequence element #${i} has length ${
              Array.isArray(p) ? p.length : "(not a pair)"
            }; 2 is required`,
          );
        }
        return [p[0], p[1]];
      });
    } else pairs = Object.entries(other as Record<string, V>) as unknown as [K, V][];
    await Promise.all(pairs.map(([k, v]) => this.set(k, v)));
  }

  /**
   * Removes `key` and returns its value; `dflt` when missing, or `KeyError` without a default.
   * Atomic: of two clients popping the same key, one gets the value.
   *
   * @param key The key.
   * @param dflt What a missing key gives instead of a `KeyError`.
   * @throws {KeyError} When the key is missing and no default is given.
   *
   * @example
   * ```ts
   * import { KeyError } from "../core/lookup_errors.ts";
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await d.set("next", 7);
   * console.assert(await d.pop("next") === 7);
   * console.assert(await d.pop("next", -1) === -1); // gone: the default
   * console.assert((await d.pop("next").catch((e) => e)) instanceof KeyError); // no default
   * await d.destroy();
   * ```
   */
  async pop(key: K, ...dflt: [V?]): Promise<V | undefined> {
    const kv = await this.#open();
    for (let i = 0; i < 100; i++) {
      const e = await this.#entry(key);
      if (!e) {
        if (dflt.length) return dflt[0];
        throw new KeyError(key);
      }
      try {
        await kv.delete(this.#key(key), { previousSeq: e.revision });
        return decode<V>(e.value);
      } catch (err) {
        if (apiCode(err) !== ERR_WRONG_LAST_SEQ) throw err; // changed meanwhile: read again
      }
    }
    throw new Error(`pop(${String(key)}) lost 100 races in a row on dict ${this.name}`);
  }

  /**
   * The value of `key`; when missing, sets it to `dflt` first (atomically) and returns that.
   *
   * @param key The key.
   * @param dflt The value a missing key is set to.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number[]>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * console.assert((await d.setdefault("xs", []))?.length === 0); // set, then returned
   * await d.set("xs", [1]);
   * console.assert((await d.setdefault("xs", []))?.length === 1); // there: returned as is
   * await d.destroy();
   * ```
   */
  async setdefault(key: K, dflt?: V): Promise<V | undefined> {
    const kv = await this.#open();
    for (let i = 0; i < 100; i++) {
      const e = await this.#entry(key);
      if (e) return decode<V>(e.value);
      try {
        await kv.create(this.#key(key), dumps(dflt, "value"));
        return dflt;
      } catch (err) {
        const c = apiCode(err);
        if (c !== ERR_WRONG_LAST_SEQ && c !== ERR_KEY_EXISTS) throw err;
      }
    }
    throw new Error(`setdefault lost 100 races in a row on dict ${this.name}`);
  }

  /**
   * Removes every key.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await d.update({ a: 1, b: 2 });
   * await d.clear();
   * console.assert(await d.len() === 0);
   * await d.destroy();
   * ```
   */
  async clear(): Promise<void> {
    await this.#open();
    // Purging the bucket's stream removes all keys at once and leaves no delete markers.
    await this.#ctx.jsm.streams.purge(`KV_${this.#bucket}`);
  }

  /**
   * The number of keys.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await d.update({ a: 1, b: 2 });
   * console.assert(await d.len() === 2);
   * await d.destroy();
   * ```
   */
  async len(): Promise<number> {
    return (await this.#rawKeys()).length;
  }

  /**
   * A local copy of the whole dict.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await d.set("a", 1);
   * const snapshot: Map<string, number> = await d.copy();
   * await d.set("a", 2); // the copy does not change
   * console.assert(snapshot.get("a") === 1);
   * await d.destroy();
   * ```
   */
  async copy(): Promise<Map<K, V>> {
    return new Map(await this.items());
  }

  /**
   * Sets `key` to `value` only if it currently holds `expected` (compared by encoded bytes;
   * `undefined` means "missing"). Resolves to whether it was set. Atomic across all clients.
   *
   * @param key The key.
   * @param expected The value it must hold (`undefined`: it must be missing).
   * @param value The new value.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, string>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * console.assert(await d.compareAndSet("state", undefined, "idle")); // was missing
   * console.assert(await d.compareAndSet("state", "idle", "busy"));
   * console.assert(!(await d.compareAndSet("state", "idle", "busy"))); // it is busy now
   * await d.destroy();
   * ```
   */
  async compareAndSet(key: K, expected: V | undefined, value: V): Promise<boolean> {
    const kv = await this.#open();
    const e = await this.#entry(key);
    const k = this.#key(key);
    try {
      if (expected === undefined) {
        if (e) return false;
        await kv.create(k, dumps(value, "value"));
        return true;
      }
      if (!e || !sameBytes(e.value, dumps(expected, "expected"))) return false;
      // The revision makes the write conditional on nobody having written since our read.
      await kv.update(k, dumps(value, "value"), e.revision);
      return true;
    } catch (err) {
      const c = apiCode(err);
      if (c === ERR_WRONG_LAST_SEQ || c === ERR_KEY_EXISTS) return false;
      throw err;
    }
  }

  /**
   * Reads `key`, computes `fn(old)` and writes it if nobody wrote meanwhile, retrying otherwise
   * (optimistic concurrency): concurrent `modify` calls on any machines never lose an update.
   * Resolves to the value written. `fn` may run more than once, so it should have no side effects.
   *
   * @param key The key.
   * @param fn The new value from the old one (`undefined` when missing).
   * @param options `retries`: the most times to retry after losing a race (default 1000).
   * @throws {TimeoutError} When every attempt lost a race.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * // Ten concurrent increments (from any machines): none is lost.
   * await Promise.all(Array.from({ length: 10 }, () => d.modify("hits", (n = 0) => n + 1)));
   * console.assert(await d.get("hits") === 10);
   * await d.destroy();
   * ```
   */
  async modify(
    key: K,
    fn: (old: V | undefined) => V,
    options: { retries?: number } = {},
  ): Promise<V> {
    const retries = options.retries ?? 1000;
    for (let i = 0; i <= retries; i++) {
      const kv = await this.#open();
      const e = await this.#entry(key);
      const next = fn(e ? decode<V>(e.value) : undefined);
      const k = this.#key(key);
      try {
        if (e) await kv.update(k, dumps(next, "value"), e.revision);
        else await kv.create(k, dumps(next, "value"));
        return next;
      } catch (err) {
        const c = apiCode(err);
        if (c !== ERR_WRONG_LAST_SEQ && c !== ERR_KEY_EXISTS) throw err;
        // Lost a race: back off a little at random so contenders spread out.
        if (i > 2) await sleep(Math.random() * Math.min(50, 2 ** i));
      }
    }
    throw new TimeoutError(`modify(${String(key)}) on dict ${this.name} lost ${retries + 1} races`);
  }

  /**
   * Deletes the dict's bucket from the server, for every client.
   *
   * @example
   * ```ts
   * import { connectCluster } from "./mod.ts";
   * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
   * const d = cluster.dict<string, number>(`doc-${crypto.randomUUID().slice(0, 8)}`);
   * await d.set("a", 1);
   * await d.destroy(); // the bucket and its keys, for every client
   * ```
   */
  async destroy(): Promise<void> {
    const kv = await this.#open();
    await kv.destroy();
    this.#kv = undefined;
  }
}
