/**
 * The network transport: a connection over TCP, to a server in any program, using
 * lib/connection/connection.ts's framing and mutual HMAC challenge. Nothing is read before the
 * challenge passes both ways, and frames have a size limit.
 *
 * @module
 */

import {
  type Address,
  answerChallenge,
  type Connection,
  deliverChallenge,
  wrapSocket,
} from "../../connection/connection.ts";
import { EOFError } from "../../core/errors.ts";
import { EOF } from "../../core/ring.ts";
import {
  type ClientTransport,
  fmtAddress,
  HANDSHAKE_MS,
  HELLO,
  type Incoming,
  unframe,
  withTimeout,
} from "../protocol.ts";

/** A connection over TCP, to a server in any program. Connects in the background. */
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
