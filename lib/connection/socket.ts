/**
 * Connections over a TCP (or Unix) socket, framed as Python frames them (a 4-byte big-endian
 * length, then the bytes; a length of -1 announces an 8-byte one), so `sendBytes`/`recvBytes`
 * interoperate with Python's `Connection`; objects use denomp's codec, or pickle with
 * `serializer: "pickle"`. Frames over `maxMessageSize` (and any frame over 256 bytes during the
 * handshake) make the receiving side drop the peer with a clear error.
 *
 * @module
 */

import { EOFError, ValueError } from "../core/errors.ts";
import { optionsOf } from "../core/args.ts";
import {
  BrokenPipeError,
  codecOf,
  type Connection,
  type Decode,
  makeConnection,
  OSError,
  type Serializer,
  type Transport,
} from "./connection.ts";

// ---------------------------------------------------------------------------------------------
// Sockets: framing

/** Default largest message a socket connection accepts (bytes). */
export const DEFAULT_MAX_MESSAGE = 128 << 20;
/** A frame header of -1 (as a signed 32-bit word): an 8-byte length follows (Python 3.3+). */
const LONG_FRAME = 0xffffffff;
/** Largest message accepted during the authentication handshake (as Python). */
export const HANDSHAKE_MAX = 256;

/** Options of a socket connection. */
export interface SocketOptions {
  /**
   * The largest message accepted; a peer announcing a bigger one is disconnected with an
   * `OSError` naming both sizes. Default {@link DEFAULT_MAX_MESSAGE}.
   */
  maxMessageSize?: number;
  /**
   * What `send`/`recv` speak: `"denomp"` (the default: denomp's codec, for a denomp peer) or
   * `"pickle"`, to talk to Python: `send`/`recv` then interoperate with Python's
   * `Connection.send`/`recv` (values mapped as {@link pickle.dumps} / {@link pickle.loads} say;
   * a pickle naming anything but plain data is refused with `SerializationError`, never run).
   * A Python tuple arrives as an array; to send one, wrap the items in `pickle.tuple(1, 2)`
   * (a plain array arrives as a list). `sendBytes`/`recvBytes` are raw bytes either way.
   */
  serializer?: Serializer;
}

export class SocketTransport implements Transport {
  readonly kind = "socket";
  readonly readable = true;
  readonly writable = true;
  closed = false;
  #conn: Deno.Conn;
  #max: number;
  /** Received bytes not yet consumed: `#buf[#start..#end)`. */
  #buf = new Uint8Array(64 << 10);
  #start = 0;
  #end = 0;
  #eof = false;
  #reading: Promise<void> | null = null;
  #writing: Promise<void> = Promise.resolve();
  #error: Error | null = null;
  /** The length of the frame whose header `#frameHeader()` last read. */
  #frameBytes = 0;

  constructor(conn: Deno.Conn, max: number) {
    this.#conn = conn;
    this.#max = max;
  }

  describe(): string {
    return "socket";
  }

  /** Temporarily lowers the frame limit (the handshake). */
  withLimit<R>(max: number, f: () => Promise<R>): Promise<R> {
    const old = this.#max;
    this.#max = max;
    return f().finally(() => (this.#max = old));
  }

  #fill(): Promise<void> {
    return this.#reading ??= (async () => {
      if (this.#end === this.#buf.length) {
        // Full: move the unread bytes to the front, or grow when they fill most of it.
        const live = this.#end - this.#start;
        if (live * 2 > this.#buf.length) {
          const next = new Uint8Array(this.#buf.length * 2);
          next.set(this.#buf.subarray(this.#start, this.#end));
          this.#buf = next;
        } else this.#buf.copyWithin(0, this.#start, this.#end);
        this.#start = 0;
        this.#end = live;
      }
      try {
        const n = await this.#conn.read(this.#buf.subarray(this.#end));
        if (n === null) this.#eof = true;
        else this.#end += n;
      } catch (e) {
        if (this.closed) this.#eof = true;
        else this.#error = new OSError(`connection failed: ${(e as Error).message}`, { cause: e });
      } finally {
        this.#reading = null;
      }
    })();
  }

  /**
   * The next frame's header size (4, or 12 for Python's long form) once its header is in, else
   * -1; its length is then in `#frameBytes`. Throws for an oversized frame.
   */
  #frameHeader(): number {
    const live = this.#end - this.#start;
    if (live < 4) return -1;
    const b = this.#buf, s = this.#start;
    const u32 = (i: number) => ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
    let n = u32(s), header = 4;
    if (n === LONG_FRAME) {
      // Python's form for a message over 2 GiB - 1: -1, then the length in 8 bytes.
      if (live < 12) return -1;
      n = u32(s + 4) * 2 ** 32 + u32(s + 8);
      header = 12;
    }
    this.#frameBytes = n;
    if (n > this.#max) {
      const max = this.#max;
      this.close();
      throw new OSError(
        `peer announced a message of ${n} bytes, over the limit of ${max}: connection dropped`,
      );
    }
    return header;
  }

  async recv<T>(decode: Decode<T>): Promise<T> {
    for (;;) {
      if (this.#error) throw this.#error;
      if (this.closed) throw new OSError("handle is closed");
      const header = this.#frameHeader(), n = header < 0 ? -1 : this.#frameBytes;
      if (n >= 0 && this.#end - this.#start >= header + n) {
        const at = this.#start + header;
        this.#start = at + n;
        if (this.#start === this.#end) this.#start = this.#end = 0;
        return decode(this.#buf.subarray(at, at + n), false);
      }
      if (this.#eof) {
        if (this.#end === this.#start) throw new EOFError();
        throw new OSError("connection closed in the middle of a message");
      }
      if (n >= 0 && header + n > this.#buf.length - this.#start) {
        // Make the buffer big enough for the whole frame.
        const next = new Uint8Array(Math.max(header + n, this.#buf.length));
        next.set(this.#buf.subarray(this.#start, this.#end));
        this.#end -= this.#start;
        this.#start = 0;
        this.#buf = next;
      }
      await this.#fill();
    }
  }

  recvSync<T>(_decode: Decode<T>): T {
    throw new ValueError("a socket Connection has no blocking (Sync) methods: use recv()");
  }

  send(bytes: Uint8Array, borrowed = false): Promise<void> {
    if (this.closed) return Promise.reject(new OSError("handle is closed"));
    // Frames of concurrent sends must not interleave: chain the writes.
    const long = bytes.length > 0x7fffffff, header = long ? 12 : 4; // as Python frames them
    const frame = new Uint8Array(header + (bytes.length <= 65536 ? bytes.length : 0));
    const view = new DataView(frame.buffer);
    if (long) {
      view.setUint32(0, LONG_FRAME);
      view.setBigUint64(4, BigInt(bytes.length));
    } else view.setUint32(0, bytes.length);
    if (bytes.length <= 65536) frame.set(bytes, header);
    const body = bytes.length <= 65536 ? null : borrowed ? bytes : bytes.slice();
    const p = this.#writing.then(async () => {
      await writeAll(this.#conn, frame);
      if (body) await writeAll(this.#conn, body);
    });
    this.#writing = p.catch(() => {});
    return p.catch((e) => {
      throw this.closed ? new OSError("handle is closed") : new BrokenPipeError(
        `could not send on the socket: ${(e as Error).message}`,
        { cause: e },
      );
    });
  }

  sendSync(_bytes: Uint8Array): void {
    throw new ValueError("a socket Connection has no blocking (Sync) methods: use send()");
  }

  async poll(timeout: number): Promise<boolean> {
    if (this.#end > this.#start || this.#eof || this.#error) return true;
    if (timeout <= 0) {
      void this.#fill(); // start reading, so a later poll sees what arrived
      return false;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = timeout === Infinity
      ? null
      : new Promise<void>((r) => (timer = setTimeout(r, timeout)));
    try {
      for (;;) {
        if (this.#end > this.#start || this.#eof || this.#error) return true;
        const fill = this.#fill();
        if (late) {
          const first = await Promise.race([fill.then(() => "data"), late.then(() => "late")]);
          if (first === "late") return this.#end > this.#start || this.#eof;
        } else await fill;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  pollSync(_timeout: number): boolean {
    throw new ValueError("a socket Connection has no blocking (Sync) methods: use poll()");
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed by the peer's failure */ }
  }
}

async function writeAll(conn: Deno.Conn, b: Uint8Array): Promise<void> {
  for (let off = 0; off < b.length;) off += await conn.write(b.subarray(off));
}

/**
 * Wraps a connected TCP (or Unix) socket as a `Connection` using Python's framing, without any
 * handshake. For servers built on denomp's framing (e.g. remote managers): authenticate with
 * {@link deliverChallenge} / {@link answerChallenge}.
 *
 * @example
 * ```ts ignore
 * import { wrapSocket } from "jsr:@denomp/multiprocessing";
 * const conn = wrapSocket(await Deno.connect({ port: 6000 }), { maxMessageSize: 1 << 20 });
 * ```
 */
export function wrapSocket<T = unknown>(
  conn: Deno.Conn,
  options?: SocketOptions,
): Connection<T> {
  const o = optionsOf(options, "wrapSocket", "wrapSocket(conn, { maxMessageSize: 1 << 20 })");
  const codec = codecOf(o.serializer);
  return makeConnection<T>(new SocketTransport(conn, maxMessageOf(o)), codec);
}

/** `maxMessageSize` checked: bytes, default {@link DEFAULT_MAX_MESSAGE}. */
export function maxMessageOf(options: SocketOptions): number {
  const max = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE;
  if (typeof max !== "number") {
    throw new TypeError(`maxMessageSize must be a number of bytes: got ${typeof max}`);
  }
  if (!(max >= 0) || max > 0xffffffff) {
    throw new ValueError(`maxMessageSize must be 0..2^32-1 bytes: current value is ${max}`);
  }
  return max;
}
