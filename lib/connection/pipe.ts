/**
 * `Pipe()`: two connected `Connection`s in one block of the shared heap.
 *
 * A pipe is a {@link Ring} per direction, and per end a table of the processes holding a copy of
 * it (`pipe_copies.ts`). A `Connection` sent to a worker (in `args` or through a queue or pipe) is
 * that worker's own copy of the end, as a file descriptor is after a fork: `close()` closes the
 * caller's copy only, and `recv()` throws `EOFError` once every copy of the other end is closed —
 * copies held by processes that died count as closed — and nothing is left to read. A copy in
 * flight (encoded in a message not yet received) counts as open.
 *
 * @module
 */

import { LIVENESS_SLICE_MS } from "../core/atomics.ts";
import { alloc, heap, release, retain } from "../core/heap.ts";
import { claimCopy, copyInFlight, dropCopy, endOpen, HOLDERS } from "./pipe_copies.ts";
import { EOF, Ring, type SendStatus } from "../core/ring.ts";
import { EOFError, SerializationError } from "../core/errors.ts";
import { optionsOf } from "../core/args.ts";
import { registerHandle } from "../core/reduction.ts";
import {
  BrokenPipeError,
  Connection,
  type Decode,
  makeConnection,
  OSError,
  type Transport,
  transportOf,
} from "./connection.ts";

// ---------------------------------------------------------------------------------------------
// Pipe layout (Int32 words from the block offset / 4)

const MAGIC_I = 0, DUPLEX = 1, MAGIC = 0x70697065; // "pipe"
/** The ends' copy tables (see pipe_copies.ts) sit between the header words and HEADER. */
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
export class PipeTransport implements Transport {
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

  get closed(): boolean {
    return this.st.closed;
  }

  describe(): string {
    return `pipe ${this.off} end ${this.end}`;
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
