/**
 * The managers' wire protocol: every message is a frame, a kind byte and a 32-bit call id, then
 * the codec's bytes of its body. Requests: kind = op (CALL body [id, method, args, thread?];
 * CREATE [id, typeid, args]; INCREF/CLAIM/DECREF id; CANCEL call id; SHUTDOWN null); call id 0
 * asks for no reply. Replies: kind = status, body = the result, the error (ERR), or [name,
 * message, stack] (REMOTE). Over TCP the server speaks first, after the handshake: HELLO, body =
 * its id.
 *
 * The header is outside the codec so that a body that cannot be decoded (a handle whose module
 * is not loaded on this side) fails that one call, not the whole connection. Bodies for another
 * program are encoded with only proxies allowed as handles, and `netEncoding`/`netDecoding` tell
 * a proxy's reduce and rebuild to leave out (or ignore) the parts that only mean something here.
 *
 * @module
 */

import { EOFError, SerializationError } from "../core/errors.ts";
import type { EOF } from "../core/ring.ts";
import { Decoder, Encoder } from "../core/reduction.ts";

/** Requests: a frame's kind byte from a client. */
export const CALL = 1, CREATE = 2, INCREF = 3, CLAIM = 4, DECREF = 5, CANCEL = 6, SHUTDOWN = 7;
/** The server's greeting over TCP (body: its id). */
export const HELLO = 8;
/** Reply statuses: a frame's kind byte from the server. */
export const OK = 0, ERR = 1, REMOTE = 2;
const FRAME_HEAD = 5;

/** A managed object's id: a number inside a program, a random string over TCP. */
export type ObjId = number | string;

/** The handle kind proxies register as; the only kind allowed on a TCP connection. */
export const PROXY_KIND = "ManagerProxy";
const onlyProxies = (kind: string) => kind === PROXY_KIND;

// Encoding is re-entrant: a proxy's reduce sends a message of its own (an incref) while the
// message that carries the proxy is being encoded; nested encodes use their own encoder.
const localEncoder = new Encoder();
const netEncoder = new Encoder({ handles: onlyProxies });
const localDecoder = new Decoder();
const netDecoder = new Decoder({ handles: onlyProxies });
let encodeDepth = 0, decodeDepth = 0;
/** Set while encoding for, or decoding from, another program (proxies drop/ignore local parts). */
export let netEncoding = 0, netDecoding = 0;
let scratch = new Uint8Array(4096);

/**
 * Encodes a frame. The bytes are valid until the next `frame()`: every transport copies them
 * before its `send` returns, and assembling them runs no user code, so one buffer serves all.
 */
export function frame(kind: number, callId: number, body: unknown, network: boolean): Uint8Array {
  const nested = encodeDepth++ > 0;
  if (network) netEncoding++;
  let bytes: Uint8Array;
  try {
    const enc = nested
      ? new Encoder(network ? { handles: onlyProxies } : undefined)
      : network
      ? netEncoder
      : localEncoder;
    bytes = enc.encode(body, "message");
  } finally {
    encodeDepth--;
    if (network) netEncoding--;
  }
  const n = FRAME_HEAD + bytes.length;
  if (scratch.length < n) scratch = new Uint8Array(Math.max(n, scratch.length * 2));
  scratch[0] = kind;
  scratch[1] = callId & 0xff;
  scratch[2] = (callId >>> 8) & 0xff;
  scratch[3] = (callId >>> 16) & 0xff;
  scratch[4] = (callId >>> 24) & 0xff;
  scratch.set(bytes, FRAME_HEAD);
  return scratch.subarray(0, n);
}

/** A decoded frame; `error` when its body could not be decoded (then `body` is undefined). */
export interface Frame {
  kind: number;
  callId: number;
  body: unknown;
  error?: unknown;
}

/** Decodes a frame (copying everything out: `b` may be shared memory reused right after). */
export function unframe(b: Uint8Array, network: boolean): Frame {
  if (b.length < FRAME_HEAD + 1) {
    throw new SerializationError("message", `a frame of ${b.length} bytes is too short`);
  }
  const kind = b[0], callId = (b[1] | (b[2] << 8) | (b[3] << 16) | (b[4] << 24)) >>> 0;
  const nested = decodeDepth++ > 0;
  if (network) netDecoding++;
  try {
    const dec = nested
      ? new Decoder(network ? { handles: onlyProxies } : undefined)
      : network
      ? netDecoder
      : localDecoder;
    return { kind, callId, body: dec.decode(b.subarray(FRAME_HEAD)) };
  } catch (error) {
    return { kind, callId, body: undefined, error };
  } finally {
    decodeDepth--;
    if (network) netDecoding--;
  }
}

export const unframeLocal = (b: Uint8Array): Frame => unframe(b, false);

/** 128 random bits, URL-safe base64: a server id, or an object id over TCP. */
export function randomId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...b)).replace(
    /[+/=]/g,
    (c) => c === "+" ? "-" : c === "/" ? "_" : "",
  );
}

/** A frame from the server. */
export type Incoming = Frame;

export interface ClientTransport {
  /** Over TCP: values are encoded for another program. */
  readonly network: boolean;
  /** Sends one message; copies `bytes` before returning. Never throws for a broken peer. */
  send(bytes: Uint8Array): void;
  /** The next message, or EOF once the server is gone. */
  recv(): Promise<Incoming | typeof EOF>;
  close(): void;
}

/**
 * A server as the transports' server ends see it (`C`: its record of a client connection): they
 * accept connections and read frames; the server answers through the `send` each client got.
 */
export interface ServerEnd<C extends { readonly name: string }> {
  /** The server's name, for its messages on stderr. */
  readonly name: string;
  readonly stopped: boolean;
  /** Records a new client connection; `send` delivers the server's frames to it. */
  open(name: string, network: boolean, send: (bytes: Uint8Array) => void): C;
  /**
   * Handles one frame of `client`. A malformed request throws (the caller closes the
   * connection); a body that could not be decoded fails that call only.
   */
  receive(client: C, f: Frame): void;
  /** A client is gone: abort its waits, release what it held, drop its references. */
  drop(client: C): void;
  /** Counts a loop in, so that the server is done only once it has ended. */
  track(p: Promise<void>): void;
}

// ---------------------------------------------------------------------------------------------
// Shared by both ends

/** How long a TCP peer has by default to pass the HMAC challenge (and, for a client, to greet). */
export const HANDSHAKE_MS = 20_000;

/** `host:port`, an IPv6 host in brackets. */
export function fmtAddress(a: { hostname: string; port: number }): string {
  return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}

/** Runs the handshake `f`; after `ms`, `onExpire` (which makes `f` fail) and an `EOFError`. */
export async function withTimeout<R>(
  ms: number,
  onExpire: () => void,
  f: () => Promise<R>,
): Promise<R> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let expired = false;
  try {
    return await Promise.race([
      f(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          expired = true;
          onExpire();
          reject(new EOFError(`the handshake did not finish within ${ms} ms`));
        }, ms);
      }),
    ]);
  } catch (e) {
    if (expired) throw new EOFError(`the handshake did not finish within ${ms} ms`);
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/** An error as `[name, message, stack]`: the body of a REMOTE reply. */
export function errorParts(e: unknown): [string, string, string] {
  if (e instanceof Error) return [e.name, e.message, e.stack ?? ""];
  return ["Error", String(e), ""];
}

/** Whether a received object id is one: a safe integer, or a string of 1 to 64 characters. */
export function validId(id: unknown): id is ObjId {
  return (typeof id === "number" && Number.isSafeInteger(id)) ||
    (typeof id === "string" && id.length > 0 && id.length <= 64);
}

/** An error in one line, for stderr. */
export function reason(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
