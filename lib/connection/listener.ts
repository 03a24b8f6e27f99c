/**
 * `Listener` and `Client` (Python's `multiprocessing.connection`): a server socket whose `accept()`
 * returns authenticated `Connection`s, and the call that connects to one. Handshakes run
 * concurrently, bounded in number, time and bytes, so a peer that connects and says nothing never
 * delays another.
 *
 * @module
 */

import { checkTimeout } from "../core/args.ts";
import { AuthenticationError, ValueError } from "../core/errors.ts";
import { optionsOf } from "../core/args.ts";
import { codecOf, type Connection, OSError } from "./connection.ts";
import { maxMessageOf, type SocketOptions, wrapSocket } from "./socket.ts";
import { answerChallenge, type AuthKey, deliverChallenge, keyBytes, within } from "./auth.ts";

// ---------------------------------------------------------------------------------------------
// Listener / Client

/** A TCP address. */
export interface Address {
  /** Default `"127.0.0.1"`. */
  hostname?: string;
  /** `0` picks a free port (see `Listener.address`). */
  port: number;
}

/** Options of {@link Listener}. */
export interface ListenerOptions extends SocketOptions {
  /** Where to listen; default `{ hostname: "127.0.0.1", port: 0 }`. */
  address?: Address;
  /** When given, every peer must pass the mutual HMAC challenge before any data. */
  authkey?: AuthKey;
  /** Milliseconds a peer has to finish the handshake (default 20,000). */
  handshakeTimeout?: number;
  /**
   * How many peers may be in the handshake at once (default 32). Further peers wait in the
   * operating system's backlog until a handshake ends.
   */
  maxPendingHandshakes?: number;
}

/** What a finished handshake gives `accept()`: the peer's connection, or why it was refused. */
type Handshake = { conn: Connection<unknown> } | { error: Error };

/**
 * Accepts `Connection`s over TCP (Python's `multiprocessing.connection.Listener`). With an
 * `authkey`, each peer must pass a mutual HMAC challenge first: the listener offers HMAC-SHA256,
 * as CPython 3.12+ does, and accepts every answer CPython 3.8-3.14 gives (see
 * {@link deliverChallenge}), so Python's `Client` of any of those versions can connect.
 *
 * Handshakes run concurrently, so a peer that connects and says nothing never delays another:
 * `accept()` settles with the next handshake to *finish* — the authenticated `Connection`, or an
 * `AuthenticationError` for a peer that failed it (wrong key, garbage, too slow; that peer is
 * dropped and the listener goes on, as in Python, so an accept loop sees refusals). What an
 * unauthenticated peer can cost is bounded: at most `maxPendingHandshakes` at once, each for at
 * most `handshakeTimeout` ms, sending at most three messages of up to 256 bytes (a bigger one is
 * refused at once). Peers are taken from the operating system only while an `accept()` waits.
 *
 * @example
 * ```ts
 * import { Client, Listener } from "jsr:@denomp/multiprocessing";
 * await using listener = new Listener({ authkey: "secret" });
 * const [server, client] = await Promise.all([
 *   listener.accept(),
 *   Client(listener.address, { authkey: "secret" }),
 * ]);
 * await client.send({ hello: "world" });
 * console.assert(((await server.recv()) as { hello: string }).hello === "world");
 * client.close();
 * server.close();
 * ```
 */
export class Listener {
  #listener: Deno.TcpListener;
  #authkey?: AuthKey;
  #opts: ListenerOptions;
  #timeout: number;
  #maxPending: number;
  #closed = false;
  /** Sockets in the handshake (closed by `close()`). */
  #pending = new Set<Connection<unknown>>();
  /** Finished handshakes no `accept()` has taken yet, oldest first. */
  #done: Handshake[] = [];
  /** `accept()` calls waiting for a finished handshake, oldest first. */
  #waiters: { resolve: (c: Connection<unknown>) => void; reject: (e: Error) => void }[] = [];
  /** Whether an operating-system accept is under way (one at a time). */
  #accepting = false;

  /** Starts listening at once. */
  constructor(options?: ListenerOptions) {
    const o = optionsOf(options, "new Listener", 'new Listener({ authkey: "secret" })');
    this.#opts = o;
    this.#authkey = o.authkey;
    if (o.authkey !== undefined) keyBytes(o.authkey);
    this.#timeout = handshakeMs(o.handshakeTimeout);
    maxMessageOf(o); // checked now: sockets are wrapped later, off any caller's stack
    codecOf(o.serializer);
    const max = o.maxPendingHandshakes ?? 32;
    if (typeof max !== "number") {
      throw new TypeError(`maxPendingHandshakes must be a number: got ${typeof max}`);
    }
    if (!Number.isInteger(max) || max < 1) {
      throw new ValueError(`maxPendingHandshakes must be an integer >= 1: current value is ${max}`);
    }
    this.#maxPending = max;
    this.#listener = Deno.listen({
      hostname: o.address?.hostname ?? "127.0.0.1",
      port: o.address?.port ?? 0,
    });
  }

  /** The address listened on (with the port picked when 0 was asked). */
  get address(): Required<Address> {
    const a = this.#listener.addr as Deno.NetAddr;
    return { hostname: a.hostname, port: a.port };
  }

  /**
   * Resolves with the next peer to finish the handshake. Rejects with `AuthenticationError` for
   * a peer that failed the challenge, broke the protocol or took longer than `handshakeTimeout`
   * ms (it is disconnected; call `accept()` again for the next one), and with `OSError` once the
   * listener is closed. Concurrent calls are served in call order.
   */
  accept<T = unknown>(): Promise<Connection<T>> {
    if (this.#closed) return Promise.reject(new OSError("listener is closed"));
    const next = this.#done.shift();
    if (next) {
      return "conn" in next
        ? Promise.resolve(next.conn as Connection<T>)
        : Promise.reject(next.error);
    }
    return new Promise<Connection<T>>((resolve, reject) => {
      this.#waiters.push({ resolve: resolve as (c: Connection<unknown>) => void, reject });
      this.#pull();
    });
  }

  /**
   * Takes the next peer from the operating system while an `accept()` waits and fewer than
   * `maxPendingHandshakes` are under way. Demand-driven (not a loop started by the constructor)
   * so that a listener nobody accepts on leaves peers in the backlog, as Python's does.
   */
  #pull(): void {
    if (
      this.#accepting || this.#closed || this.#waiters.length === 0 ||
      this.#pending.size >= this.#maxPending
    ) return;
    this.#accepting = true;
    this.#listener.accept().then((sock) => {
      this.#accepting = false;
      if (this.#closed) return sock.close();
      this.#shake(sock);
      this.#pull();
    }, (e: Error) => {
      this.#accepting = false;
      if (this.#closed) return; // close() rejected the waiters already
      // The operating system refused (e.g. out of file descriptors): the oldest accept() hears.
      this.#settle({ error: new OSError(e.message, { cause: e }) });
      this.#pull();
    });
  }

  /** Runs one peer's handshake beside the others'; its outcome goes to the oldest waiter. */
  #shake(sock: Deno.Conn): void {
    const c = wrapSocket(sock, this.#opts);
    const key = this.#authkey;
    if (key === undefined) return this.#settle({ conn: c });
    const peer = describePeer(sock);
    this.#pending.add(c);
    within(this.#timeout, c, async () => {
      await deliverChallenge(c, key);
      await answerChallenge(c, key);
    }).then((): Handshake => ({ conn: c }), (e: Error): Handshake => {
      c.close();
      const error = e instanceof AuthenticationError
        ? e
        : new AuthenticationError(`peer dropped during authentication: ${e.message}`, { cause: e });
      error.message += ` (peer ${peer})`;
      return { error };
    }).then((r) => {
      this.#pending.delete(c);
      if (this.#closed) return "conn" in r ? r.conn.close() : undefined;
      this.#settle(r);
      this.#pull(); // a handshake slot is free again
    });
  }

  #settle(r: Handshake): void {
    const w = this.#waiters.shift();
    if (!w) this.#done.push(r);
    else if ("conn" in r) w.resolve(r.conn);
    else w.reject(r.error);
  }

  /**
   * Stops listening: pending `accept()` calls reject with `OSError`, peers still in the
   * handshake or accepted but not yet taken by `accept()` are disconnected. Connections already
   * returned by `accept()` stay open.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
    for (const c of this.#pending) c.close();
    this.#pending.clear();
    for (const r of this.#done.splice(0)) if ("conn" in r) r.conn.close();
    for (const w of this.#waiters.splice(0)) w.reject(new OSError("listener is closed"));
  }

  /** `await using listener = ...`: closes. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  /** `using listener = ...`: closes. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** `handshakeTimeout` checked: milliseconds, default 20,000. */
function handshakeMs(t: number | undefined): number {
  return checkTimeout(t, "handshakeTimeout") ?? 20_000;
}

function describePeer(sock: Deno.Conn): string {
  const a = sock.remoteAddr as Deno.NetAddr;
  return a.hostname === undefined ? String(a.transport) : `${a.hostname}:${a.port}`;
}

/** Options of {@link Client}. */
export interface ClientOptions extends SocketOptions {
  /** The listener's `authkey`: answer its challenge, then challenge it back. */
  authkey?: AuthKey;
  /** Milliseconds the handshake may take (default 20,000). */
  handshakeTimeout?: number;
}

/**
 * Connects to a {@link Listener} (Python's `multiprocessing.connection.Client`), or to Python's
 * `Listener` (any CPython 3.8-3.14; use `serializer: "pickle"` for `send`/`recv`). Throws
 * `AuthenticationError` when the keys differ (no data is exchanged).
 *
 * @example
 * ```ts ignore
 * import { Client } from "jsr:@denomp/multiprocessing";
 * import { tuple } from "../pickle/pickle.ts";
 * // Python: Listener(("127.0.0.1", 6000), authkey=b"secret")
 * const conn = await Client({ port: 6000 }, { authkey: "secret", serializer: "pickle" });
 * await conn.send({ job: "resize", size: tuple(640, 480) }); // Python gets a dict, a tuple
 * console.log(await conn.recv()); // a Python tuple arrives as an array
 * conn.close();
 * ```
 */
export async function Client<T = unknown>(
  address: Address,
  options?: ClientOptions,
): Promise<Connection<T>> {
  const o = optionsOf(options, "Client", 'Client(address, { authkey: "secret" })');
  if (o.authkey !== undefined) keyBytes(o.authkey);
  const timeout = handshakeMs(o.handshakeTimeout);
  maxMessageOf(o); // checked before connecting: a bad option makes no connection
  codecOf(o.serializer);
  const sock = await Deno.connect({
    hostname: address.hostname ?? "127.0.0.1",
    port: address.port,
  });
  const c = wrapSocket<T>(sock, o);
  const key = o.authkey;
  if (key === undefined) return c;
  try {
    await within(timeout, c, async () => {
      await answerChallenge(c, key);
      await deliverChallenge(c, key);
    });
    return c;
  } catch (e) {
    c.close();
    throw e;
  }
}
