/**
 * The caller's side of actor requests on the cluster: one reply inbox per cluster client
 * (`_INBOX.<id>.<n>`), not the NATS client's request helper, because a call that gives up
 * (timeout, abort, node gone) must drop its pending entry at once, which the helper's timer
 * cannot. Apart from actors.ts (the refs) so each file holds one concept.
 *
 * @module
 */

import { createInbox, type Msg, type NatsConnection, type Subscription } from "./nats.ts";
import { ValueError } from "../core/errors.ts";
import type { ActorCtx } from "./actors.ts";

/** A reply being waited for. */
interface Waiter {
  resolve(m: Msg): void;
  reject(e: unknown): void;
}

/** One request of {@link ActorClient.request}. */
interface Request {
  reply: Promise<Msg>;
  inbox: string;
  waiting(): boolean;
  cancel(): void;
}

/**
 * One reply inbox per cluster client: `_INBOX.<id>.<n>` for the n-th request, settled by the
 * subscription's callback. Internal; made by the first actor call of a cluster.
 *
 * @example
 * ```ts ignore
 * const client = new ActorClient(nc);
 * const { reply, cancel } = client.request("denomp.a.x.counter-1", bytes);
 * setTimeout(cancel, 1000); // a reply after this is dropped
 * const m = await reply;
 * ```
 */
export class ActorClient {
  readonly #nc: NatsConnection;
  readonly #inbox: string;
  readonly #sub: Subscription;
  readonly #waiting = new Map<string, Waiter>();
  #seq = 0;
  #closed = false;

  /** Subscribes the inbox. */
  constructor(nc: NatsConnection) {
    this.#nc = nc;
    this.#inbox = createInbox();
    const cut = this.#inbox.length + 1;
    this.#sub = nc.subscribe(`${this.#inbox}.*`, {
      callback: (_err, m) => {
        const token = m.subject.slice(cut);
        const w = this.#waiting.get(token);
        if (w) {
          this.#waiting.delete(token);
          w.resolve(m);
        }
      },
    });
  }

  /**
   * Publishes `data` to `subject` with a reply inbox; resolves with the reply (or the server's
   * "no responders" status). `inbox` is the request's reply subject; `waiting()` is false once
   * the reply came (or the wait was dropped); `cancel` drops the wait (the late reply, if any, is
   * ignored).
   */
  request(subject: string, data: Uint8Array): Request {
    const token = (++this.#seq).toString(36);
    const inbox = `${this.#inbox}.${token}`;
    const waiting = () => this.#waiting.has(token);
    const failed = (e: unknown) => ({ reply: Promise.reject(e), inbox, waiting, cancel: () => {} });
    if (this.#closed) return failed(closedError());
    const reply = new Promise<Msg>((resolve, reject) =>
      this.#waiting.set(token, { resolve, reject })
    );
    try {
      this.#nc.publish(subject, data, { reply: inbox });
    } catch (e) {
      this.#waiting.delete(token);
      return failed(e);
    }
    return { reply, inbox, waiting, cancel: () => this.#waiting.delete(token) };
  }

  /** Unsubscribes; calls still waiting reject (the cluster connection is closing). */
  close(): void {
    this.#closed = true;
    for (const w of this.#waiting.values()) w.reject(closedError());
    this.#waiting.clear();
    this.#sub.unsubscribe();
  }
}

export const closedError = () => new ValueError("the cluster connection is closed");

export function clientOf(ctx: ActorCtx): ActorClient {
  if (!ctx.actorClient) {
    const c = ctx.actorClient = new ActorClient(ctx.nc);
    ctx.closers.add(() => c.close());
  }
  return ctx.actorClient;
}
