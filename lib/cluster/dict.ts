/**
 * `cluster.dict(name)`: a dict shared by every client that names it, on a JetStream KV bucket —
 * the Manager dict proxy's methods, with keys of any sendable kind (encoded with the codec, then
 * base64url) and compare-and-set from the bucket's per-key revisions, so `setdefault`, `pop` and
 * `modify` are atomic across clients.
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
 * ```ts ignore
 * const d = cluster.dict<string, number[]>("lists");
 * await d.set("a", [1, 2]);
 * await d.compareAndSet("a", [1, 2], [1, 2, 3]); // true: nobody changed it meanwhile
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
   * @example
   * ```ts ignore
   * const n = await d.get("n", 0);
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
   * ```ts ignore
   * await d.set("n", 1);
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
   * ```ts ignore
   * await d.delete("n");
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
   * ```ts ignore
   * if (await d.has("n")) console.log("set");
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
   * ```ts ignore
   * for (const k of await d.keys()) console.log(k);
   * ```
   */
  async keys(): Promise<K[]> {
    return (await this.#rawKeys()).map((k) => loads<K>(unb64url(k)));
  }

  /**
   * `[key, value]` pairs.
   *
   * @example
   * ```ts ignore
   * for (const [k, v] of await d.items()) console.log(k, v);
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
   * ```ts ignore
   * const total = (await d.values()).reduce((a, b) => a + b, 0);
   * ```
   */
  async values(): Promise<V[]> {
    return (await this.items()).map((e) => e[1]);
  }

  /**
   * Sets every pair of `other` (a plain object, a Map, or `[key, value]` pairs).
   *
   * @example
   * ```ts ignore
   * await d.update({ a: 1, b: 2 });
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
   * @example
   * ```ts ignore
   * const job = await d.pop("next", null);
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
   * @example
   * ```ts ignore
   * const list = await d.setdefault("xs", []);
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
   * ```ts ignore
   * await d.clear();
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
   * ```ts ignore
   * console.log(await d.len());
   * ```
   */
  async len(): Promise<number> {
    return (await this.#rawKeys()).length;
  }

  /**
   * A local copy of the whole dict.
   *
   * @example
   * ```ts ignore
   * const snapshot: Map<string, number> = await d.copy();
   * ```
   */
  async copy(): Promise<Map<K, V>> {
    return new Map(await this.items());
  }

  /**
   * Sets `key` to `value` only if it currently holds `expected` (compared by encoded bytes;
   * `undefined` means "missing"). Resolves to whether it was set. Atomic across all clients.
   *
   * @example
   * ```ts ignore
   * const ok = await d.compareAndSet("state", "idle", "busy");
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
   * @example
   * ```ts ignore
   * const hits = await d.modify("hits", (n = 0) => n + 1);
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
   * ```ts ignore
   * await d.destroy();
   * ```
   */
  async destroy(): Promise<void> {
    const kv = await this.#open();
    await kv.destroy();
    this.#kv = undefined;
  }
}
