/**
 * The persisted state of one activation of a virtual actor (`cluster.actor(Counter, "user-42")`,
 * lib/cluster/actors.ts): read once when the activation starts, written back after the calls that
 * changed it, always with compare-and-set on the KV revision this activation last saw.
 *
 * Why compare-and-set: a node that was thought dead (a partition, a long pause) may still run an
 * activation while another node has activated the same actor. Both may run calls for a while,
 * but only one can write the state: the first write moves the revision on, and the other
 * activation's next write fails on it, so that activation stops and its calls are refused (the
 * callers retry and reach the winner). Two activations can never both win.
 *
 * Why compare bytes: "changed" is decided by encoding `persist()`'s result with the library's
 * codec and comparing with the bytes last stored; no dirty tracking in the actor's code, and a
 * read-only call costs one encode and no write.
 *
 * @module
 */

import type { KV } from "./nats.ts";
import type { Actor } from "../actor/actor.ts";
import { ValueError } from "../core/errors.ts";
import { dumps, loads } from "../core/reduction.ts";

/**
 * Test-only: `activationDelayMs` holds a node's activation between winning the registry record
 * and serving the actor's subject, so a test sees other nodes' activations meet that window.
 * Set by tests/cluster/fixtures/cluster_virtual.ts (loaded by the node); not exported by mod.ts.
 */
export const __testHooks: { activationDelayMs: number } = { activationDelayMs: 0 };

/** The opt-in hooks of a persistent virtual actor. */
export interface Persistent<S = unknown> {
  /** The state to keep, as a value the library's codec sends (plain data, Map, Date, ...). */
  persist(): S;
  /** Sets the state of a fresh instance from what `persist()` returned last time. */
  restore(state: S): void | Promise<void>;
}

/** When a persistent virtual actor is written back: after every call, or at most every `ms`. */
export type PersistEvery = "call" | number;

/** True when `a` has both hooks. */
export function isPersistent(a: Actor): a is Actor & Persistent {
  const r = a as unknown as Partial<Persistent>;
  return typeof r.persist === "function" && typeof r.restore === "function";
}

/**
 * The `persistEvery` a class declares (`static persistEvery = "call" | ms`), checked.
 *
 * @example
 * ```ts ignore
 * persistEveryOf(class { static persistEvery = 1000 }, "Counter"); // 1000
 * ```
 */
export function persistEveryOf(cls: unknown, clsName: string): PersistEvery {
  const v = (cls as { persistEvery?: unknown }).persistEvery;
  if (v === undefined || v === "call") return "call";
  if (typeof v === "number" && v >= 0 && Number.isFinite(v)) return v;
  throw new ValueError(
    `${clsName}.persistEvery must be "call" or a number of milliseconds: got ${String(v)}`,
  );
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * One activation's view of its actor's stored state: the revision it last read or wrote, and
 * those bytes. Internal to the node side of lib/cluster/actors.ts.
 *
 * @example
 * ```ts ignore
 * const state = new StoredState(kv, "s.Counter.user-42", "Counter/user-42", instance);
 * await state.restore();
 * instance.inc(1);
 * await state.save(); // one KV update, on the revision restore() read
 * ```
 */
export class StoredState {
  #revision = 0;
  #bytes?: Uint8Array;

  /** `key` is the state's KV key; `label` names the actor in errors. */
  constructor(
    readonly kv: KV,
    readonly key: string,
    readonly label: string,
    readonly instance: Actor & Persistent,
  ) {}

  /** Reads the stored state, if any, and hands it to the instance's `restore`. */
  async restore(): Promise<void> {
    const instance = this.instance;
    const e = await this.kv.get(this.key);
    if (!e || e.operation !== "PUT" || e.length === 0) return;
    // A copy: the client may reuse the buffer it handed out.
    const bytes = e.value.slice();
    this.#revision = e.revision;
    this.#bytes = bytes;
    await instance.restore(loads(bytes));
  }

  /**
   * Writes `persist()`'s result if its bytes differ from the stored ones, on the revision last
   * seen; throws ValueError when another activation wrote in between (this one is stale).
   */
  async save(): Promise<void> {
    const bytes = dumps(this.instance.persist(), `${this.label} persist() result`);
    if (this.#bytes && sameBytes(bytes, this.#bytes)) return;
    try {
      this.#revision = this.#revision === 0
        ? await this.kv.create(this.key, bytes)
        : await this.kv.update(this.key, bytes, this.#revision);
    } catch (e) {
      const msg = (e as Error)?.message ?? String(e);
      // JetStream's "wrong last sequence" (10071): the revision moved on since we saw it.
      if ((e as { code?: number })?.code !== 10071 && !/wrong last sequence/i.test(msg)) throw e;
      throw new ValueError(
        `actor ${this.label}: another activation saved its state first; this one is stale and ` +
          `stops (its last call's changes are not kept)`,
      );
    }
    this.#bytes = bytes;
  }
}
