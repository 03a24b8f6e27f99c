/**
 * Pipes and connections (Python's `multiprocessing.connection`): `Pipe()` gives two connected
 * `Connection`s that work in any workers; `Listener`/`Client` open `Connection`s over TCP with
 * an optional shared `authkey` (a mutual HMAC challenge before any data, in every form CPython
 * 3.8 to 3.14 speaks: `{sha256}` and the other digests it allows, and the bare HMAC-MD5 of
 * Python 3.11 and older), so a denomp program and a Python program can talk.
 *
 * **Pipes** live in one block of the shared heap: a {@link Ring} per direction, and per end a
 * table of the processes holding a copy of it. A `Connection` sent to a worker (in `args` or
 * through a queue or pipe) is that worker's own copy of the end, as a file descriptor is after
 * a fork: `close()` closes the caller's copy only, and `recv()` throws `EOFError` once every copy
 * of the other end is closed — copies held by processes that died count as closed — and nothing
 * is left to read. A copy in flight (encoded in a message not yet received) counts as open.
 *
 * **Sockets** carry the same messages framed as Python frames them (a 4-byte big-endian length,
 * then the bytes), so `sendBytes`/`recvBytes` interoperate with Python's `Connection`; objects
 * use denomp's codec. Frames over `maxMessageSize` (and any frame over 256 bytes during the
 * handshake) make the receiving side drop the peer with a clear error.
 *
 * @module
 */

import { LIVENESS_SLICE_MS } from "../core/atomics.ts";
import { alloc, heap, release, retain } from "../core/heap.ts";
import { claimCopy, copyInFlight, dropCopy, endOpen, HOLDERS } from "./pipe_copies.ts";
import { EOF, Ring, type SendStatus } from "../core/ring.ts";
import {
  AuthenticationError,
  BufferTooShort,
  EOFError,
  SerializationError,
  ValueError,
} from "../core/errors.ts";
import { optionsOf } from "../core/args.ts";
import { Encoder, loads, loadsAsync, registerHandle } from "../core/reduction.ts";
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
type Decode<T> = (payload: Uint8Array, owned: boolean) => T;

interface Transport {
  readonly kind: "pipe" | "socket";
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
// Pipe layout (Int32 words from the block offset / 4)

const MAGIC_I = 0, DUPLEX = 1, MAGIC = 0x70697065; // "pipe"
/** The ends' copy tables (see _pipe_copies.ts) sit between the header words and HEADER. */
const HEADER = 2048;
const DUPLEX_BLOCK = (512 << 10) - 16;
const SIMPLEX_BLOCK = (256 << 10) - 16;

/** Where ring `i` (written by end `i`) starts, for a pipe block at `off`. */
function ringBase(off: number, duplex: boolean, i: number): number {
  if (!duplex) return off + HEADER;
  const half = ((DUPLEX_BLOCK - HEADER) / 2) & ~7;
  return off + HEADER + i * half;
}

function ringBytes(duplex: boolean): number {
  return duplex ? ((DUPLEX_BLOCK - HEADER) / 2) & ~7 : SIMPLEX_BLOCK - HEADER;
}

/** One process's copy of one end of a pipe. */
class PipeTransport implements Transport {
  readonly kind = "pipe";
  readonly off: number;
  readonly end: number;
  readonly duplex: boolean;
  readonly readable: boolean;
  readonly writable: boolean;
  /** Shared with the finalizer: a collected, unclosed copy is closed there. */
  readonly st: { closed: boolean };
  #in: Ring | null;
  #out: Ring | null;
  readonly #peerGone = (): boolean => !endOpen(this.off, 1 - this.end);
  readonly #eof = (): boolean => this.st.closed || !endOpen(this.off, 1 - this.end);

  constructor(off: number, end: number) {
    this.off = off;
    this.end = end;
    const i32 = heap().i32;
    if (Atomics.load(i32, (off >> 2) + MAGIC_I) !== MAGIC) {
      throw new Error(`denomp: no pipe at heap offset ${off}`);
    }
    this.duplex = Atomics.load(i32, (off >> 2) + DUPLEX) !== 0;
    // Ring i is written by end i. One-way: end 0 only reads, end 1 only writes (ring 1).
    this.readable = this.duplex || end === 0;
    this.writable = this.duplex || end === 1;
    this.#in = this.readable
      ? new Ring(ringBase(off, this.duplex, this.duplex ? 1 - end : 0), off)
      : null;
    this.#out = this.writable
      ? new Ring(ringBase(off, this.duplex, this.duplex ? end : 0), off)
      : null;
    this.st = { closed: false };
  }

  static create(duplex: boolean): number {
    const size = duplex ? DUPLEX_BLOCK : SIMPLEX_BLOCK;
    const off = alloc(size);
    const i32 = heap().i32;
    for (let i = 0; i < (duplex ? 2 : 1); i++) {
      Ring.init(ringBase(off, duplex, i), ringBytes(duplex));
    }
    i32[(off >> 2) + DUPLEX] = duplex ? 1 : 0;
    Atomics.store(i32, (off >> 2) + MAGIC_I, MAGIC);
    return off;
  }

  #status(s: SendStatus): void {
    if (s === "broken") throw new BrokenPipeError();
  }

  send(bytes: Uint8Array, borrowed = false): Promise<void> {
    if (this.#peerGone()) return Promise.reject(new BrokenPipeError());
    const o = { broken: this.#peerGone }, out = this.#out!;
    const p = borrowed ? out.postBorrowed(bytes, o) : out.post(bytes, o);
    return p.then((s) => this.#status(s));
  }

  sendSync(bytes: Uint8Array): void {
    if (this.#peerGone()) throw new BrokenPipeError();
    this.#status(this.#out!.sendSync(bytes, { broken: this.#peerGone }));
  }

  #result<T>(v: unknown): T {
    if (v === EOF) {
      if (this.st.closed) throw new OSError("handle is closed");
      throw new EOFError();
    }
    return v as T;
  }

  async recv<T>(decode: Decode<T>, alloc?: (total: number) => Uint8Array): Promise<T> {
    return this.#result(
      await this.#in!.recv(decode, { eof: this.#eof, eofPollMs: LIVENESS_SLICE_MS, alloc }),
    );
  }

  recvSync<T>(decode: Decode<T>, alloc?: (total: number) => Uint8Array): T {
    return this.#result(
      this.#in!.recvSync(decode, { eof: this.#eof, eofPollMs: LIVENESS_SLICE_MS, alloc }),
    );
  }

  poll(timeout: number): Promise<boolean> {
    return this.#in!.poll(timeout, this.#eof, LIVENESS_SLICE_MS);
  }

  pollSync(timeout: number): boolean {
    return this.#in!.pollSync(timeout, this.#eof, LIVENESS_SLICE_MS);
  }

  close(): void {
    if (this.st.closed) return;
    this.st.closed = true;
    closeCopy(this.off, this.end, this.duplex);
  }
}

/** Drops this process's copy of an end and wakes whoever waits on the other end. */
function closeCopy(off: number, end: number, duplex: boolean): void {
  dropCopy(off, end);
  const out = new Ring(ringBase(off, duplex, duplex ? end : 0));
  if (duplex || end === 1) out.wakeReaders(); // the peer's recv re-checks for EOF
  if (duplex || end === 0) {
    new Ring(ringBase(off, duplex, duplex ? 1 - end : 0)).wakeWriters(); // its send: broken?
  }
  // Our own pending recv (if any) sees `closed` and ends.
  if (duplex || end === 0) new Ring(ringBase(off, duplex, duplex ? 1 - end : 0)).wakeReaders();
}

const copyFinalizer = new FinalizationRegistry<
  { off: number; end: number; duplex: boolean; st: { closed: boolean } }
>((h) => {
  try {
    if (!h.st.closed) closeCopy(h.off, h.end, h.duplex);
    release(h.off);
  } catch { /* the heap is gone with the process */ }
});

// ---------------------------------------------------------------------------------------------
// Connection

let encoding = false;
const sharedEncoder = new Encoder();

function encode(value: unknown): Uint8Array {
  if (encoding) return new Encoder().encode(value, "obj").slice();
  encoding = true;
  try {
    return sharedEncoder.encode(value, "obj");
  } finally {
    encoding = false;
  }
}

const decodeObj = (b: Uint8Array): unknown => loads(b);

/**
 * How `send`/`recv` of a connection turn objects into a message's bytes and back: denomp's codec
 * (every channel's), or pickle for a socket talking to Python. Chosen once, when the connection
 * is made ({@link codecOf}); `decode` copies what it keeps (the transport may reuse the bytes).
 */
interface Codec {
  encode(value: unknown): Uint8Array;
  decode: Decode<unknown>;
  /** For async receivers: may wait (a handle's module to load, a big block's buffer to arrive). */
  decodeAsync: Decode<unknown>;
}

/** What `send`/`recv` of a socket connection speak (see {@link SocketOptions.serializer}). */
export type Serializer = "denomp" | "pickle";

const CODECS: Readonly<Record<Serializer, Codec>> = {
  denomp: { encode, decode: decodeObj, decodeAsync: (b) => loadsAsync(b) },
  pickle: {
    encode: (v) => pickle.dumps(v),
    decode: (b) => pickle.loads(b),
    decodeAsync: (b) => pickle.loads(b),
  },
};

/** The codec of a `serializer` option (checked): the one place a connection's codec is chosen. */
function codecOf(serializer: Serializer | undefined): Codec {
  if (serializer === undefined) return CODECS.denomp;
  if (!Object.hasOwn(CODECS, serializer)) {
    throw new ValueError(
      `serializer must be "denomp" or "pickle": current value is ${JSON.stringify(serializer)}`,
    );
  }
  return CODECS[serializer];
}

const decodeBytes = (b: Uint8Array, owned: boolean): Uint8Array => owned ? b : b.slice();

/** Bytes to send: a view, an `ArrayBuffer`, or any typed array / `DataView`. */
export type BytesLike = ArrayBuffer | ArrayBufferView;

function asBytes(buf: BytesLike): Uint8Array {
  if (buf instanceof Uint8Array) return buf;
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf instanceof ArrayBuffer) return new Uint8Array(buf);
  throw new TypeError(`expected bytes (an ArrayBuffer or a typed array): got ${typeof buf}`);
}

let creating: { t: Transport; codec: Codec } | null = null;
let transportOf: (c: Connection<unknown>) => Transport;

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
    transportOf = (c) => c.#t;
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
    return this.#t instanceof PipeTransport
      ? this.#t.st.closed
      : (this.#t as SocketTransport).closed;
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
    const t = this.#t;
    const what = t instanceof PipeTransport ? `pipe ${t.off} end ${t.end}` : "socket";
    return `<Connection ${what}${this.closed ? " closed" : ""}>`;
  }
}

function makeConnection<T>(t: Transport, codec: Codec = CODECS.denomp): Connection<T> {
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
  if (t === null || t === undefined) return Infinity;
  if (typeof t !== "number" || Number.isNaN(t)) {
    throw new ValueError(`timeout must be a number of milliseconds: current value is ${t}`);
  }
  return Math.max(0, t);
}

// ---------------------------------------------------------------------------------------------
// Pipe

/** Options of {@link Pipe}. */
export interface PipeOptions {
  /** `false`: the first connection only receives and the second only sends. Default `true`. */
  duplex?: boolean;
}

/**
 * Makes a pipe and returns its two ends (Python's `multiprocessing.Pipe`). With
 * `duplex: false`, the first end only receives and the second only sends.
 *
 * @example
 * ```ts
 * import { Pipe } from "jsr:@denomp/multiprocessing";
 * const [reader, writer] = Pipe<number>({ duplex: false });
 * await writer.send(42);
 * writer.close();
 * console.assert((await reader.recv()) === 42);
 * // every copy of the writing end is closed and nothing is left: EOFError
 * await reader.recv().catch((e) => console.assert(e.name === "EOFError"));
 * reader.close();
 * ```
 */
export function Pipe<T = unknown>(options?: PipeOptions): [Connection<T>, Connection<T>] {
  const duplex = optionsOf(options, "Pipe", "Pipe({ duplex: false })").duplex ?? true;
  const off = PipeTransport.create(duplex);
  retain(off); // one reference per end; `alloc` gave the first
  return [openEnd<T>(off, 0, false), openEnd<T>(off, 1, false)];
}

/** A Connection on end `end` of the pipe at `off`, adopting one block reference. */
function openEnd<T>(off: number, end: number, inFlight: boolean): Connection<T> {
  if (!claimCopy(off, end)) {
    throw new OSError(`more than ${HOLDERS} live processes hold copies of one end of a pipe`);
  }
  if (inFlight) copyInFlight(off, end, false); // after the claim: never seen nowhere
  const t = new PipeTransport(off, end);
  const c = makeConnection<T>(t);
  copyFinalizer.register(c, { off, end, duplex: t.duplex, st: t.st });
  return c;
}

registerHandle<Connection<unknown>, [number, number]>({
  name: "Connection",
  module: import.meta.url,
  cls: Connection,
  reduce(c) {
    const t = transportOf(c);
    if (!(t instanceof PipeTransport)) {
      throw new SerializationError(
        "connection",
        "a socket Connection cannot be sent to another worker (send a Pipe end, or connect there)",
      );
    }
    if (t.st.closed) throw new OSError("handle is closed: a closed Connection cannot be sent");
    // The copy in flight keeps the end open until a process rebuilds it.
    copyInFlight(t.off, t.end, true);
    retain(t.off);
    return [t.off, t.end];
  },
  discard([off, end]) {
    // The message was not sent: the copy is not in flight, and nobody will adopt its reference.
    copyInFlight(off, end, false);
    release(off);
  },
  rebuild([off, end]) {
    return openEnd(off, end, true);
  },
});

// ---------------------------------------------------------------------------------------------
// Sockets: framing

/** Default largest message a socket connection accepts (bytes). */
export const DEFAULT_MAX_MESSAGE = 128 << 20;
/** A frame header of -1 (as a signed 32-bit word): an 8-byte length follows (Python 3.3+). */
const LONG_FRAME = 0xffffffff;
/** Largest message accepted during the authentication handshake (as Python). */
const HANDSHAKE_MAX = 256;

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

class SocketTransport implements Transport {
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
function maxMessageOf(options: SocketOptions): number {
  const max = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE;
  if (typeof max !== "number") {
    throw new TypeError(`maxMessageSize must be a number of bytes: got ${typeof max}`);
  }
  if (!(max >= 0) || max > 0xffffffff) {
    throw new ValueError(`maxMessageSize must be 0..2^32-1 bytes: current value is ${max}`);
  }
  return max;
}

// ---------------------------------------------------------------------------------------------
// Authentication: CPython's deliver_challenge / answer_challenge, every form 3.8 to 3.14 speak.
//
// Python 3.12 added a `{digest}` prefix to the challenge and to the answer; 3.11 and older send a
// bare 20-byte challenge and answer any challenge with a bare 16-byte HMAC-MD5. The lengths tell
// the two apart (no prefixed message is 16 or 20 bytes long), so, as CPython 3.12+ does, a
// client answers a 20-byte challenge with bare HMAC-MD5, and a server offering `{sha256}`
// accepts a bare 16-byte HMAC-MD5 answer: an old peer cannot read the prefix, so it MACs the
// whole challenge, prefix included, with MD5. The MAC always covers the prefix, so a
// man-in-the-middle cannot swap the offered digest without breaking the answer.

const CHALLENGE = new TextEncoder().encode("#CHALLENGE#");
const WELCOME = new TextEncoder().encode("#WELCOME#");
const FAILURE = new TextEncoder().encode("#FAILURE#");
/** Random bytes after the `{digest}` prefix of a challenge (CPython 3.12+: 40, must be > 20). */
const MESSAGE_LENGTH = 40;
/** A challenge of this length is a legacy (<= 3.11) server's: HMAC-MD5, no prefix. */
const MD5ONLY_MESSAGE_LENGTH = 20;
/** An answer of this length is a legacy client's bare HMAC-MD5. */
const MD5_DIGEST_LENGTH = 16;

/** An HMAC digest of the handshake, as CPython names them (its `_ALLOWED_DIGESTS`). */
export type Digest = "md5" | "sha256" | "sha384" | "sha3_256" | "sha3_384";

/**
 * Each {@link Digest}'s `node:crypto` hash and MAC length in bytes (the `Record` type makes the
 * table and the type list the same names). Every check and MAC goes through this table.
 */
const DIGESTS: Readonly<Record<Digest, { hash: string; length: number }>> = {
  md5: { hash: "md5", length: 16 },
  sha256: { hash: "sha256", length: 32 },
  sha384: { hash: "sha384", length: 48 },
  sha3_256: { hash: "sha3-256", length: 32 },
  sha3_384: { hash: "sha3-384", length: 48 },
};

const DIGEST_NAMES = Object.keys(DIGESTS) as Digest[];
const SUPPORTED = `${DIGEST_NAMES.join(", ")}, or a legacy bare HMAC-MD5`;

/** A shared secret for `Listener`/`Client`: bytes, or a string (UTF-8). */
export type AuthKey = Uint8Array | string;

function keyBytes(k: AuthKey): Uint8Array {
  if (typeof k === "string") return new TextEncoder().encode(k);
  if (k instanceof Uint8Array) return k;
  throw new TypeError(`authkey should be a Uint8Array or a string: got ${typeof k}`);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), (o += p.length);
  return out;
}

function startsWith(b: Uint8Array, prefix: Uint8Array): boolean {
  return b.length >= prefix.length && prefix.every((x, i) => b[i] === x);
}

function tagOf(digest: Digest): Uint8Array {
  return new TextEncoder().encode(`{${digest}}`);
}

/**
 * `node:crypto` (WebCrypto has no MD5, which the legacy handshake needs), loaded by the first
 * handshake rather than on import: loading it costs ~15 ms, and every isolate that imports this
 * module (a worker handed a Pipe end, a program importing mod.ts) would pay it.
 */
let nodeCrypto: typeof import("node:crypto") | undefined;

async function loadCrypto(): Promise<void> {
  nodeCrypto ??= await import("node:crypto");
}

/** HMAC of `data` (after {@link loadCrypto}). */
function hmac(authkey: AuthKey, digest: Digest, data: Uint8Array): Uint8Array {
  return nodeCrypto!.createHmac(DIGESTS[digest].hash, keyBytes(authkey)).update(data).digest();
}

/**
 * Which digest a challenge or an answer uses, and its payload (CPython's
 * `_get_digest_name_and_payload`): `"legacy"` for a bare 16- or 20-byte message (HMAC-MD5),
 * else the `{digest}` prefix's. `what` names the message for the error: a prefix naming a digest
 * CPython does not allow, or no prefix at all, is refused with the reason (not "wrong key").
 */
function digestOf(message: Uint8Array, what: string): [Digest | "legacy", Uint8Array] {
  if (message.length === MD5ONLY_MESSAGE_LENGTH || message.length === MD5_DIGEST_LENGTH) {
    return ["legacy", message];
  }
  // Only the table's names are accepted (as CPython's); a longer printable name is still read,
  // so that the error can say which digest the peer wanted.
  const head = new TextDecoder().decode(message.subarray(0, 34));
  const m = /^\{([\x21-\x7c\x7e]{1,32})\}/.exec(head);
  if (!m) {
    throw new AuthenticationError(
      `protocol error: ${what} of ${message.length} bytes has no {digest} prefix ` +
        `(and is not a legacy 16/20-byte HMAC-MD5 one)`,
    );
  }
  if (!Object.hasOwn(DIGESTS, m[1])) {
    throw new AuthenticationError(
      `unsupported digest: ${what} uses {${m[1]}}; supported: ${SUPPORTED}`,
    );
  }
  return [m[1] as Digest, message.subarray(m[0].length)];
}

function socketOf(c: Connection<unknown>): SocketTransport {
  const t = transportOf(c);
  if (!(t instanceof SocketTransport)) throw new TypeError("expected a socket Connection");
  return t;
}

/** Receives one handshake message (at most 256 bytes); any failure is an AuthenticationError. */
async function recvHandshake(c: Connection<unknown>, step: string): Promise<Uint8Array> {
  const t = socketOf(c);
  try {
    return await t.withLimit(HANDSHAKE_MAX, () => t.recv(decodeBytes));
  } catch (e) {
    throw new AuthenticationError(
      `protocol error during authentication (${step}): ${(e as Error).message}`,
      { cause: e },
    );
  }
}

/** Checks a peer's answer to `message` (CPython 3.12+'s `_verify_challenge`). */
function verifyAnswer(authkey: AuthKey, message: Uint8Array, response: Uint8Array): void {
  const [found, mac] = digestOf(response, "the peer's answer");
  const digest = found === "legacy" ? "md5" : found;
  if (mac.length !== DIGESTS[digest].length) {
    throw new AuthenticationError(
      `the peer's ${digest} answer is ${mac.length} bytes long, not ${DIGESTS[digest].length}`,
    );
  }
  if (!nodeCrypto!.timingSafeEqual(hmac(authkey, digest, message), mac)) {
    throw new AuthenticationError("digest received was wrong");
  }
}

/**
 * The server side of the challenge (Python's `deliver_challenge`): sends a random challenge
 * offering `digest` (default `"sha256"`, as CPython 3.12+) and checks the peer's HMAC of it with
 * `authkey`. Any digest CPython allows is accepted in the answer, and so is the bare HMAC-MD5 of
 * Python 3.11 and older. Throws `AuthenticationError` (after telling the peer) when the answer is
 * wrong or uses a digest that is not supported (the message says which).
 *
 * @example
 * ```ts ignore
 * import { answerChallenge, deliverChallenge, wrapSocket } from "jsr:@denomp/multiprocessing";
 * const conn = wrapSocket(await listener.accept());
 * await deliverChallenge(conn, "secret");
 * await answerChallenge(conn, "secret");
 * ```
 */
export async function deliverChallenge(
  c: Connection<unknown>,
  authkey: AuthKey,
  digest: Digest = "sha256",
): Promise<void> {
  if (!Object.hasOwn(DIGESTS, digest)) {
    throw new ValueError(
      `unsupported digest ${JSON.stringify(digest)}: use one of ${DIGEST_NAMES.join(", ")}`,
    );
  }
  await loadCrypto();
  const message = concat(tagOf(digest), crypto.getRandomValues(new Uint8Array(MESSAGE_LENGTH)));
  await c.sendBytes(concat(CHALLENGE, message));
  const response = await recvHandshake(c, "waiting for the digest");
  try {
    verifyAnswer(authkey, message, response);
  } catch (e) {
    await c.sendBytes(FAILURE).catch(() => {});
    throw e;
  }
  await c.sendBytes(WELCOME);
}

/**
 * The client side of the challenge (Python's `answer_challenge`): answers the peer's challenge
 * with an HMAC under `authkey`, in the digest the challenge names (a legacy 20-byte challenge of
 * Python 3.11 and older gets a bare HMAC-MD5). Throws `AuthenticationError` when the peer rejects
 * the answer, or when its challenge names a digest that is not supported (the message says so).
 *
 * @example
 * ```ts ignore
 * import { answerChallenge, deliverChallenge, wrapSocket } from "jsr:@denomp/multiprocessing";
 * const conn = wrapSocket(await Deno.connect({ port: 6000 }));
 * await answerChallenge(conn, "secret");
 * await deliverChallenge(conn, "secret");
 * ```
 */
export async function answerChallenge(c: Connection<unknown>, authkey: AuthKey): Promise<void> {
  await loadCrypto();
  const challenge = await recvHandshake(c, "waiting for the challenge");
  if (!startsWith(challenge, CHALLENGE)) {
    throw new AuthenticationError("protocol error: expected a challenge");
  }
  const message = challenge.subarray(CHALLENGE.length);
  if (message.length < MD5ONLY_MESSAGE_LENGTH) {
    throw new AuthenticationError(`protocol error: challenge too short: ${message.length} bytes`);
  }
  const [digest] = digestOf(message, "the peer's challenge");
  await c.sendBytes(
    digest === "legacy"
      ? hmac(authkey, "md5", message)
      : concat(tagOf(digest), hmac(authkey, digest, message)),
  );
  const answer = await recvHandshake(c, "waiting for the verdict");
  if (answer.length !== WELCOME.length || !startsWith(answer, WELCOME)) {
    throw new AuthenticationError("digest sent was rejected");
  }
}

/** Runs `f` with a time limit; on expiry, closes `c` (which makes `f` fail) and rejects. */
async function within<R>(ms: number, c: Connection<unknown>, f: () => Promise<R>): Promise<R> {
  if (ms === Infinity) return f();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let expired = false;
  try {
    return await Promise.race([
      f(),
      new Promise<never>((_, reject) =>
        timer = setTimeout(() => {
          expired = true;
          c.close();
          reject(new AuthenticationError(`authentication did not finish within ${ms} ms`));
        }, ms)
      ),
    ]);
  } catch (e) {
    if (expired) throw new AuthenticationError(`authentication did not finish within ${ms} ms`);
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

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
  if (t === undefined) return 20_000;
  if (typeof t !== "number") {
    throw new TypeError(`handshakeTimeout must be a number of milliseconds: got ${typeof t}`);
  }
  if (!(t >= 0)) throw new ValueError(`handshakeTimeout must be >= 0 ms: current value is ${t}`);
  return t;
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
