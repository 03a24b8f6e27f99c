/**
 * What every part of the cluster layer shares: the NATS client's packages (named here alone),
 * names and headers, JetStream's error codes, and
 * the helpers that make a JetStream call survive a server restart (`retrying`, `ensureStream`,
 * `ensureConsumer`).
 *
 * @module
 */

// The NATS client's packages, pinned inline rather than in deno.json's import map: they are a
// dependency of lib/cluster/ alone, and this is the one module of it that names them.
// deno-lint-ignore-file no-import-prefix
import { checkTimeout } from "../core/args.ts";
import {
  connect,
  createInbox,
  headers as natsHeaders,
  nanos,
} from "npm:@nats-io/transport-node@3.4.0";
import type { Msg, MsgHdrs, NatsConnection, Subscription } from "npm:@nats-io/transport-node@3.4.0";
import {
  AckPolicy,
  DiscardPolicy,
  jetstream,
  JetStreamApiError,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "npm:@nats-io/jetstream@3.4.0";
import type {
  ConsumerMessages,
  JetStreamClient,
  JetStreamManager,
  JsMsg,
} from "npm:@nats-io/jetstream@3.4.0";
import { Kvm } from "npm:@nats-io/kv@3.4.0";
import type { KV, KvEntry } from "npm:@nats-io/kv@3.4.0";
import { ValueError } from "../core/errors.ts";
import { loads } from "../core/reduction.ts";

export {
  AckPolicy,
  connect,
  createInbox,
  DiscardPolicy,
  jetstream,
  JetStreamApiError,
  jetstreamManager,
  Kvm,
  nanos,
  natsHeaders,
  RetentionPolicy,
  StorageType,
};
export type {
  ConsumerMessages,
  JetStreamClient,
  JetStreamManager,
  JsMsg,
  KV,
  KvEntry,
  Msg,
  MsgHdrs,
  NatsConnection,
  Subscription,
};

// ---------------------------------------------------------------------------------------------
// Helpers

const NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const HDR_ID = "Denomp-Id", HDR_FN = "Denomp-Fn", HDR_KIND = "Denomp-Kind";
export const HDR_REPLY = "Denomp-Reply", HDR_OK = "Denomp-Ok";
/** JetStream API error codes we act on. */
export const ERR_MAX_MSGS = 10077, ERR_STREAM_NOT_FOUND = 10059;
export const ERR_WRONG_LAST_SEQ = 10071, ERR_KEY_EXISTS = 10164;
export const DEFAULT_ACK_WAIT = 30_000;

export function checkName(what: string, name: string): string {
  if (typeof name !== "string" || !NAME_RE.test(name)) {
    throw new ValueError(
      `${what} name must be 1-64 letters, digits, '-' or '_': current value is ${
        JSON.stringify(name)
      }`,
    );
  }
  return name;
}

export function checkMs(what: string, v: number | undefined): number | undefined {
  return checkTimeout(v, what);
}

export function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

/** Sleeps `ms`, waking early (with a rejection) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError(signal!));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Decodes bytes received from the NATS client. They are a Node `Buffer`, whose `slice` is a view
 * rather than a copy, and the codec slices typed arrays out of its input: a plain `Uint8Array`
 * view over the same memory decodes correctly without copying.
 */
export function decode<T>(data: Uint8Array): T {
  return loads<T>(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

export const apiCode = (e: unknown): number | undefined =>
  e instanceof JetStreamApiError ? e.code : undefined;

/**
 * Whether a failed call may succeed when tried again: the server is restarting or JetStream is
 * not ready yet (timeouts, no responders, 503), as opposed to a refusal or a closed connection.
 */
export function transient(e: unknown, nc: NatsConnection): boolean {
  if (nc.isClosed()) return false;
  if (e instanceof JetStreamApiError) return e.status === 503 || e.status === 408;
  const name = (e as Error)?.name ?? "";
  return /Timeout|NoResponders|Request|Connection|Disconnect/i.test(name) ||
    /timeout|no responders|disconnect/i.test(String((e as Error)?.message));
}

/** Runs `fn` again while it fails with a transient error, until `deadline` (epoch ms). */
export async function retrying<T>(
  nc: NatsConnection,
  fn: () => Promise<T>,
  deadline: number,
  signal?: AbortSignal,
): Promise<T> {
  for (let delay = 50;; delay = Math.min(delay * 2, 1000)) {
    try {
      return await fn();
    } catch (e) {
      if (!transient(e, nc) || Date.now() + delay > deadline) throw e;
      await sleep(delay, signal);
    }
  }
}

/** Creates a stream, or leaves an existing one of that name as it is (its config wins). */
export async function ensureStream(
  nc: NatsConnection,
  jsm: JetStreamManager,
  cfg: Parameters<JetStreamManager["streams"]["add"]>[0],
): Promise<void> {
  await retrying(nc, async () => {
    try {
      await jsm.streams.info(cfg.name);
    } catch (e) {
      if (apiCode(e) !== ERR_STREAM_NOT_FOUND) throw e;
      try {
        await jsm.streams.add(cfg);
      } catch (e2) {
        // Another client created it between our two calls: theirs is as good as ours.
        if (!(e2 instanceof JetStreamApiError) || e2.status !== 400) throw e2;
      }
    }
  }, Date.now() + 30_000);
}

type ConsumerCfg = Parameters<JetStreamManager["consumers"]["add"]>[1];

/**
 * Creates a durable consumer, or keeps an existing one; `ackWait` (ms), when given, is applied
 * to an existing consumer too. Returns the consumer's ack wait in milliseconds.
 */
export async function ensureConsumer(
  nc: NatsConnection,
  jsm: JetStreamManager,
  stream: string,
  cfg: ConsumerCfg & { durable_name: string },
  ackWaitGiven: boolean,
): Promise<number> {
  return await retrying(nc, async () => {
    let info;
    try {
      info = await jsm.consumers.info(stream, cfg.durable_name);
    } catch {
      try {
        info = await jsm.consumers.add(stream, cfg);
      } catch {
        info = await jsm.consumers.info(stream, cfg.durable_name); // created meanwhile
      }
    }
    if (ackWaitGiven && cfg.ack_wait !== undefined && info.config.ack_wait !== cfg.ack_wait) {
      info = await jsm.consumers.update(stream, cfg.durable_name, { ack_wait: cfg.ack_wait });
    }
    return Math.max(1, Math.round((info.config.ack_wait ?? nanos(DEFAULT_ACK_WAIT)) / 1e6));
  }, Date.now() + 30_000);
}

/** Status code of a pull response: 0 for a message, 404/408/409... for "nothing" answers. */
export function statusOf(m: Msg): number {
  const h = m.headers as MsgHdrs | undefined;
  return h && h.hasError ? h.code : h?.code && m.data.length === 0 ? h.code : 0;
}

/** The base URL for errors and logs: any `user:password@` part is cut, so no secret is printed. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@]*@/, "//***@");
}
