/**
 * `Connection` (Python's `multiprocessing.connection.Connection`): one end of a pipe or socket,
 * the same API over either transport. `Pipe()` (`pipe.ts`) gives two connected `Connection`s that
 * work in any workers; `Listener`/`Client` (`listener.ts`) open `Connection`s over TCP with an
 * optional shared `authkey` (`auth.ts`), so a denomp program and a Python program can talk.
 *
 * This module holds what both transports share: the `Transport` a connection reads and writes
 * through, the codecs (`send`/`recv` speak denomp's codec, or pickle on a socket talking to
 * Python), the checks of `sendBytes`/`recvBytesInto`'s arguments, and the errors.
 *
 * @module
 */

import { checkTimeout } from "../core/args.ts";
import { encodeView } from "../core/reduction.ts";
import { BufferTooShort, ValueError } from "../core/errors.ts";
import { loads, loadsAsync } from "../core/reduction.ts";
import * as pickle from "../pickle/pickle.ts";

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * An operating-system-level failure of a connection (Python's `OSError`): using a closed
 * connection, a message over the allowed length, a broken socket.
 *
 * @example
 * ```ts
 * import { OSError } from "jsr:@denomp/multiprocessing";
 * console.assert(new OSError("handle is closed").name === "OSError");
 * ```
 */
export class OSError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    Object.defineProperty(this, "name", {
      value: new.target.name,
      writable: true,
      configurable: true,
    });
  }
}

/**
 * Writing to a connection whose other end is closed everywhere (Python's `BrokenPipeError`).
 *
 * @example
 * ```ts
 * import { BrokenPipeError, OSError } from "jsr:@denomp/multiprocessing";
 * console.assert(new BrokenPipeError() instanceof OSError);
 * ```
 */
export class BrokenPipeError extends OSError {
  /** Creates the error. */
  constructor(message = "the other end of the pipe is closed", options?: { cause?: unknown }) {
    super(message, options);
  }
}

// ---------------------------------------------------------------------------------------------
// Transports: what a Connection reads and writes through.

/** A message decoder given to a transport; `owned` as in the ring's `Decode`. */
export type Decode<T> = (payload: Uint8Array, owned: boolean) => T;

/** One end's way of moving bytes: a pipe's rings (`pipe.ts`) or a socket (`socket.ts`). */
export interface Transport {
  readonly kind: "pipe" | "socket";
  /** True once this copy of the end was closed. */
  readonly closed: boolean;
  /** What `Connection.toString()` names: the pipe block and end, or "socket". */
  describe(): string;
  readonly readable: boolean;
  readonly writable: boolean;
  /** `borrowed`: the caller keeps `bytes` unchanged until the promise resolves (no copy). */
  send(bytes: Uint8Array, borrowed?: boolean): Promise<void>;
  sendSync(bytes: Uint8Array): void;
  /** `alloc`: where a pipe assembles a long message (see the ring's `RecvOptions.alloc`). */
  recv<T>(decode: Decode<T>, alloc?: (total: number) => Uint8Array): Promise<T>;
  recvSync<T>(decode: Decode<T>, alloc?: (total: number) => Uint8Array): T;
  poll(timeout: number): Promise<boolean>;
  pollSync(timeout: number): boolean;
  close(): void;
}

// ---------------------------------------------------------------------------------------------
// Connection

const encode = (value: unknown): Uint8Array => encodeView(value, "obj");

const decodeObj = (b: Uint8Array): unknown => loads(b);

/**
 * How `send`/`recv` of a connection turn objects into a message's bytes and back: denomp's codec
 * (every channel's), or pickle for a socket talking to Python. Chosen once, when the connection
 * is made ({@link codecOf}); `decode` copies what it keeps (the transport may reuse the bytes).
 */
export interface Codec {
  encode(value: unknown): Uint8Array;
  decode: Decode<unknown>;
  /** For async receivers: may wait (a handle's module to load, a big block's buffer to arrive). */
  decodeAsync: Decode<unknown>;
}

/** What `send`/`recv` of a socket connection speak (see {@link SocketOptions.serializer}). */
export type Serializer = "denomp" | "pickle";

export const CODECS: Readonly<Record<Serializer, Codec>> = {
  denomp: { encode, decode: decodeObj, decodeAsync: (b) => loadsAsync(b) },
  pickle: {
    encode: (v) => pickle.dumps(v),
    decode: (b) => pickle.loads(b),
    decodeAsync: (b) => pickle.loads(b),
  },
};

/** The codec of a `serializer` option (checked): the one place a connection's codec is chosen. */
export function codecOf(serializer: Serializer | undefined): Codec {
  if (serializer === undefined) return CODECS.denomp;
  if (!Object.hasOwn(CODECS, serializer)) {
    throw new ValueError(
      `serializer must be "denomp" or "pickle": current value is ${JSON.stringify(serializer)}`,
    );
  }
  return CODECS[serializer];
}

export const decodeBytes = (b: Uint8Array, owned: boolean): Uint8Array => owned ? b : b.slice();

/** Bytes to send: a view, an `ArrayBuffer`, or any typed array / `DataView`. */
export type BytesLike = ArrayBuffer | ArrayBufferView;

function asBytes(buf: BytesLike): Uint8Array {
  if (buf instanceof Uint8Array) return buf;
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf instanceof ArrayBuffer) return new Uint8Array(buf);
  throw new TypeError(`expected bytes (an ArrayBuffer or a typed array): got ${typeof buf}`);
}

let creating: { t: Transport; codec: Codec } | null = null;
let transportOfConnection: (c: Connection<unknown>) => Transport;

/** The transport under a connection, for the modules that send or authenticate one. */
export function transportOf(c: Connection<unknown>): Transport {
  return transportOfConnection(c);
}

/**
 * One end of a pipe or socket connection (Python's `multiprocessing.connection.Connection`).
 * Made by {@link Pipe}, {@link Listener.accept} and {@link Client}; a pipe's `Connection` can be
 * sent to other workers (each gets its own copy of the end).
 *
 * @example
 * ```ts
 * import { Pipe } from "jsr:@denomp/multiprocessing";
 * const [a, b] = Pipe<string>();
 * await a.send("hi");
 * console.assert((await b.poll()) && (await b.recv()) === "hi");
 * a.close();
 * b.close();
 * ```
 */
export class Connection<T = unknown> {
  #t: Transport;
  #codec: Codec;

  /** Not for direct use: connections come from `Pipe()`, `Listener.accept()` or `Client()`. */
  constructor() {
    if (!creating) {
      throw new TypeError("use Pipe(), Listener.accept() or Client() to make a Connection");
    }
    this.#t = creating.t;
    this.#codec = creating.codec;
    creating = null;
  }

  static {
    transportOfConnection = (c) => c.#t;
  }

  #check(write: boolean): Transport {
    const t = this.#t;
    if (this.closed) throw new OSError("handle is closed");
    if (write && !t.writable) throw new OSError("connection is read-only");
    if (!write && !t.readable) throw new OSError("connection is write-only");
    return t;
  }

  /** True once `close()` was called on this copy. */
  get closed(): boolean {
    return this.#t.closed;
  }

  /** Whether this end can receive. */
  get readable(): boolean {
    return this.#t.readable;
  }

  /** Whether this end can send. */
  get writable(): boolean {
    return this.#t.writable;
  }

  /**
   * Sends `obj` (encoded at once, so later changes to it do not travel). Resolves when it is in
   * the pipe (waiting while the pipe is full); rejects with `BrokenPipeError` when the other end
   * is closed everywhere. Throws at once for a closed or read-only connection and for values
   * that cannot be sent.
   */
  send(obj: T): Promise<void> {
    const t = this.#check(true);
    return t.send(this.#codec.encode(obj));
  }

  /** `send` that blocks the thread while the pipe is full (pipes only). */
  sendSync(obj: T): void {
    this.#check(true).sendSync(this.#codec.encode(obj));
  }

  /**
   * Receives the next object sent from the other end. Throws `EOFError` once every copy of the
   * other end is closed and nothing is left.
   */
  recv(): Promise<T> {
    try {
      return this.#check(false).recv(this.#codec.decodeAsync) as Promise<T>;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** `recv` that blocks the thread (pipes only; for worker code). */
  recvSync(): T {
    return this.#check(false).recvSync(this.#codec.decode) as T;
  }

  /**
   * Sends bytes as one message: `size` bytes of `buf` from byte `offset` (Python's
   * `send_bytes`). Resolves once all of it is copied into the pipe. As with `Deno.Conn.write`,
   * **keep `buf` unchanged until then**: a message larger than the free room is copied in as the
   * reader makes room, straight from `buf` (which saves a copy of every large message).
   */
  sendBytes(buf: BytesLike, offset = 0, size?: number): Promise<void> {
    try {
      return this.#check(true).send(slice(buf, offset, size), true);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** `sendBytes` that blocks the thread while the pipe is full (pipes only). */
  sendBytesSync(buf: BytesLike, offset = 0, size?: number): void {
    this.#check(true).sendSync(slice(buf, offset, size));
  }

  /**
   * Receives one byte message (Python's `recv_bytes`). With `maxlength`, a longer message is
   * dropped and the connection stops being readable (`OSError`), as in Python.
   */
  async recvBytes(maxlength?: number): Promise<Uint8Array> {
    const t = this.#check(false);
    checkMax(maxlength);
    return this.#limit(await t.recv(decodeBytes), maxlength);
  }

  /** `recvBytes` that blocks the thread (pipes only). */
  recvBytesSync(maxlength?: number): Uint8Array {
    const t = this.#check(false);
    checkMax(maxlength);
    return this.#limit(t.recvSync(decodeBytes), maxlength);
  }

  #limit(b: Uint8Array, maxlength?: number): Uint8Array {
    if (maxlength !== undefined && b.length > maxlength) {
      this.close();
      throw new OSError(`bad message length: ${b.length} bytes > maxlength ${maxlength}`);
    }
    return b;
  }

  /**
   * Receives one byte message into `buf` from byte `offset` and returns its length. When it does
   * not fit, throws `BufferTooShort` whose `bytes` is the whole message (nothing is lost).
   */
  async recvBytesInto(buf: BytesLike, offset = 0): Promise<number> {
    const t = this.#check(false);
    const dst = asBytes(buf);
    checkOffset(dst, offset);
    return intoResult(await t.recv(into(dst, offset), assembleIn(dst, offset)));
  }

  /** `recvBytesInto` that blocks the thread (pipes only). */
  recvBytesIntoSync(buf: BytesLike, offset = 0): number {
    const t = this.#check(false);
    const dst = asBytes(buf);
    checkOffset(dst, offset);
    return intoResult(t.recvSync(into(dst, offset), assembleIn(dst, offset)));
  }

  /**
   * Whether there is something to receive (a message, or the end of the stream), waiting up to
   * `timeout` milliseconds: `0` (the default, as in Python) does not wait; `null` or `Infinity` waits until
   * there is. Never consumes anything; sees empty messages.
   */
  poll(timeout: number | null = 0): Promise<boolean> {
    try {
      return this.#check(false).poll(pollTimeout(timeout));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** `poll` that blocks the thread (pipes only). */
  pollSync(timeout: number | null = 0): boolean {
    return this.#check(false).pollSync(pollTimeout(timeout));
  }

  /** Closes this copy of the end (other processes' copies stay open). Idempotent. */
  close(): void {
    this.#t.close();
  }

  /** `await using c = ...`: closes. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  /** `using c = ...`: closes. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** A short description, like Python's repr. */
  toString(): string {
    return `<Connection ${this.#t.describe()}${this.closed ? " closed" : ""}>`;
  }
}

/** A `Connection` over `t` (the one way to make one: its constructor is closed to users). */
export function makeConnection<T>(t: Transport, codec: Codec = CODECS.denomp): Connection<T> {
  creating = { t, codec };
  try {
    return new Connection<T>();
  } finally {
    creating = null;
  }
}

function slice(buf: BytesLike, offset: number, size?: number): Uint8Array {
  const b = asBytes(buf);
  if (!Number.isInteger(offset) || offset < 0) throw new ValueError("offset is negative");
  if (b.length < offset) throw new ValueError("buffer length < offset");
  if (size === undefined || size === null) size = b.length - offset;
  else if (!Number.isInteger(size) || size < 0) throw new ValueError("size is negative");
  else if (offset + size > b.length) throw new ValueError("buffer length < offset + size");
  return b.subarray(offset, offset + size);
}

function checkMax(maxlength?: number): void {
  if (maxlength !== undefined && maxlength !== null && !(maxlength >= 0)) {
    throw new ValueError("negative maxlength");
  }
}

function checkOffset(dst: Uint8Array, offset: number): void {
  if (!Number.isInteger(offset) || offset < 0) throw new ValueError("negative offset");
  if (offset > dst.length) throw new ValueError("offset too large");
}

function into(dst: Uint8Array, offset: number): Decode<number | BufferTooShort> {
  return (b, owned) => {
    if (offset + b.length > dst.length) return new BufferTooShort(owned ? b : b.slice());
    // A long message was assembled in place (see assembleIn): nothing to copy.
    if (b.buffer !== dst.buffer || b.byteOffset !== dst.byteOffset + offset) dst.set(b, offset);
    return b.length;
  };
}

/** A long message that fits is assembled straight into the caller's buffer. */
function assembleIn(dst: Uint8Array, offset: number): (total: number) => Uint8Array {
  return (total) =>
    offset + total <= dst.length ? dst.subarray(offset, offset + total) : new Uint8Array(total);
}

function intoResult(r: number | BufferTooShort): number {
  if (typeof r !== "number") throw r;
  return r;
}

function pollTimeout(t: number | null | undefined): number {
  // As Python's poll: a negative timeout polls once, not an error.
  if (typeof t === "number" && t < 0) return 0;
  return checkTimeout(t) ?? Infinity;
}
