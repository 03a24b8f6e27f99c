/**
 * The network transport: a connection over TCP, to a server in any program, using
 * lib/connection/socket.ts's framing and lib/connection/auth.ts's mutual HMAC challenge. Nothing
 * is read before the challenge passes both ways, and frames have a size limit; bytes are only ever decoded as data
 * (only proxies may appear as handles, never code).
 *
 * Both ends are here: {@link TcpTransport} is the client's, {@link TcpListener} the server's,
 * which also serves CPython's managers protocol when the server speaks it (`serializer:
 * "pickle"`, lib/managers/python/).
 *
 * @module
 */

import { answerChallenge, deliverChallenge } from "../../connection/auth.ts";
import type { Connection, Serializer } from "../../connection/connection.ts";
import type { Address } from "../../connection/listener.ts";
import { wrapSocket } from "../../connection/socket.ts";
import { EOFError } from "../../core/errors.ts";
import { EOF } from "../../core/ring.ts";
import { type PyHost, servePython } from "../python/server.ts";
import {
  type ClientTransport,
  fmtAddress,
  frame,
  HANDSHAKE_MS,
  HELLO,
  type Incoming,
  reason,
  type ServerEnd,
  unframe,
  withTimeout,
} from "../protocol.ts";

/** The client end: a connection over TCP, to a server in any program. Connects in the background. */
export class TcpTransport implements ClientTransport {
  readonly network = true;
  /** Resolves with the server's id once connected and authenticated. */
  readonly ready: Promise<string>;
  #conn: Connection<unknown> | null = null;
  #queue: Uint8Array[] = [];
  #error: Error | null = null;
  #closed = false;

  constructor(
    address: Required<Address>,
    authkey: Uint8Array,
    maxMessageSize: number,
    handshakeMs = HANDSHAKE_MS,
  ) {
    this.ready = (async () => {
      const sock = await Deno.connect({ hostname: address.hostname, port: address.port });
      const conn = wrapSocket(sock, { maxMessageSize });
      try {
        const hello = await withTimeout(handshakeMs, () => conn.close(), async () => {
          await answerChallenge(conn, authkey);
          await deliverChallenge(conn, authkey);
          // A server speaking CPython's protocol says nothing more: it waits for a request.
          return unframe(await conn.recvBytes(), true);
        }).catch((e) => {
          if (!(e instanceof EOFError) || !conn.closed) throw e;
          throw new EOFError(
            `${fmtAddress(address)} did not greet as a denomp manager within ${handshakeMs} ms ` +
              `(a Python manager, or one with serializer: "pickle"? connect with serializer: "pickle")`,
          );
        });
        if (hello.kind !== HELLO || typeof hello.body !== "string" || hello.body.length > 64) {
          throw new EOFError(`${fmtAddress(address)} did not greet as a denomp manager`);
        }
        if (this.#closed) throw new EOFError("the connection was closed");
        this.#conn = conn;
        for (const b of this.#queue) void conn.sendBytes(b).catch(() => {});
        this.#queue = [];
        return hello.body;
      } catch (e) {
        conn.close();
        throw e;
      }
    })();
    this.ready.catch((e) => (this.#error = e));
  }

  send(bytes: Uint8Array): void {
    if (this.#closed) return;
    if (this.#conn) void this.#conn.sendBytes(bytes).catch(() => {}); // a failure shows in recv
    else if (!this.#error) this.#queue.push(bytes.slice());
  }

  async recv(): Promise<Incoming | typeof EOF> {
    await this.ready;
    if (!this.#conn || this.#closed) return EOF;
    try {
      return unframe(await this.#conn.recvBytes(), true);
    } catch (e) {
      if (e instanceof EOFError || this.#closed) return EOF;
      throw e;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#conn?.close();
  }
}

/** What the server end of TCP needs to know (the server's config has it). */
export interface TcpServerOptions {
  /** Sent in HELLO: the id proxies name the server by. */
  serverId: string;
  authkey: Uint8Array;
  maxMessageSize: number;
  handshakeTimeout: number;
  /** What clients speak: denomp's protocol, or CPython's managers protocol ("pickle"). */
  serializer: Serializer;
}

/**
 * The server end: listens (synchronously, so `address` is known at once), authenticates each
 * peer, and reads its requests (`C`: the server's record of a client connection).
 */
export class TcpListener<C extends { readonly name: string }> {
  readonly #host: ServerEnd<C> & PyHost;
  readonly #options: TcpServerOptions;
  readonly #listener: Deno.TcpListener;
  readonly #sockets = new Set<Connection<unknown>>();

  constructor(address: Address, host: ServerEnd<C> & PyHost, options: TcpServerOptions) {
    this.#host = host;
    this.#options = options;
    this.#listener = Deno.listen({ hostname: address.hostname ?? "127.0.0.1", port: address.port });
    host.track(this.#accept(this.#listener));
  }

  /** The address listened on (with the port picked when 0 was asked). */
  get address(): Required<Address> {
    const a = this.#listener.addr as Deno.NetAddr;
    return { hostname: a.hostname, port: a.port };
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    for (;;) {
      let sock: Deno.Conn;
      try {
        sock = await listener.accept();
      } catch (e) {
        if (!this.#host.stopped) {
          console.error(`${this.#host.name}: stopped accepting: ${reason(e)}`);
        }
        return;
      }
      this.#host.track(this.#serve(sock));
    }
  }

  async #serve(sock: Deno.Conn): Promise<void> {
    const host = this.#host, options = this.#options;
    const ra = sock.remoteAddr as Deno.NetAddr;
    const peer = ra?.hostname ? fmtAddress(ra) : "a peer";
    const conn = wrapSocket(sock, { maxMessageSize: options.maxMessageSize });
    this.#sockets.add(conn);
    const key = options.authkey;
    let client: C | null = null;
    try {
      try {
        await withTimeout(options.handshakeTimeout, () => conn.close(), async () => {
          await deliverChallenge(conn, key);
          await answerChallenge(conn, key);
        });
      } catch (e) {
        console.error(`${host.name}: refused ${peer}: ${reason(e)}`);
        return;
      }
      if (host.stopped) return;
      if (options.serializer === "pickle") return await servePython(conn, host, peer);
      await conn.sendBytes(frame(HELLO, 0, options.serverId, true));
      client = host.open(peer, true, (bytes) => {
        void conn.sendBytes(bytes).catch(() => {}); // a broken socket shows in the read loop
      });
      for (;;) {
        let bytes: Uint8Array;
        try {
          bytes = await conn.recvBytes();
        } catch (e) {
          // A hang-up is normal; anything else (an oversized frame: the socket layer has
          // already closed the connection) is logged below.
          if (e instanceof EOFError || host.stopped) break;
          throw e;
        }
        const f = unframe(bytes, true);
        // From another program, anything undecodable is a broken peer: drop it.
        if (f.error !== undefined) throw f.error;
        host.receive(client, f);
      }
    } catch (e) {
      if (!host.stopped) {
        console.error(`${host.name}: closed the connection from ${peer}: ${reason(e)}`);
      }
    } finally {
      conn.close();
      this.#sockets.delete(conn);
      if (client) host.drop(client);
    }
  }

  /** Stops listening and closes every connection (the server has stopped). */
  close(): void {
    this.#listener.close();
    for (const c of this.#sockets) c.close();
  }
}
