/**
 * The local transport: a connection through a pair of rings in the shared heap, to a server in
 * this program (lib/core/ring.ts: a call is a few microseconds, no `postMessage`).
 *
 * Shared-heap layout. Server block: [MAGIC, TAG, SERVER_SLOT, STATE] then the listen ring, on
 * which a client posts the offset of a connection block it made. It is never freed (16 KiB per
 * manager started): a proxy anywhere may still look at it, and must find "stopped" there, not
 * someone else's data. Connection block: [MAGIC, CLIENT_SLOT, SERVER_CLOSED, CLIENT_CLOSED] then
 * the request ring (client to server) and the reply ring; the client and the server hold a
 * reference each.
 *
 * @module
 */

import { LIVENESS_SLICE_MS } from "../../core/atomics.ts";
import { EOFError } from "../../core/errors.ts";
import { alloc, heap, isAlive, release, retain } from "../../core/heap.ts";
import { type EOF, Ring } from "../../core/ring.ts";
import { type ClientTransport, type Frame, type Incoming, unframeLocal } from "../protocol.ts";

export const S_MAGIC = 0x6d677273, C_MAGIC = 0x6d677263; // "mgrs", "mgrc"
export const MAGIC_W = 0, TAG_W = 1, SLOT_W = 2, STATE_W = 3;
export const CLIENT_SLOT_W = 1, SERVER_CLOSED_W = 2, CLIENT_CLOSED_W = 3;
export const HEAD = 64;
export const LISTEN_RING = Ring.bytesFor(8 << 10);
export const SERVER_BLOCK = HEAD + LISTEN_RING;
export const CONN_BLOCK = (128 << 10) - 16;
export const CONN_RING = ((CONN_BLOCK - HEAD) / 2) & ~7;

/** Where a local client finds a server: its block and the tag that proves it is still that one. */
export interface LocalEndpoint {
  off: number;
  tag: number;
}

export function serverBlockValid(ep: LocalEndpoint): boolean {
  const h = heap(), i32 = h.i32, w = ep.off >> 2;
  if (
    !Number.isInteger(ep.off) || ep.off <= 0 || ep.off % 16 ||
    ep.off + SERVER_BLOCK > h.sab.byteLength
  ) {
    return false;
  }
  return Atomics.load(i32, w + MAGIC_W) === S_MAGIC && Atomics.load(i32, w + TAG_W) === ep.tag &&
    Atomics.load(i32, w + STATE_W) === 0 && isAlive(Atomics.load(i32, w + SLOT_W));
}

/** A connection through rings in the shared heap, to a server in this program. */
export class RingTransport implements ClientTransport {
  readonly network = false;
  readonly #off: number;
  readonly #i32: Int32Array;
  readonly #req: Ring;
  readonly #resp: Ring;
  readonly #serverSlot: number;
  /** The server block's header: its state says when a server that is still alive stops. */
  readonly #server: Int32Array;
  #closed = false;
  readonly #serverGone = (): boolean =>
    this.#closed || Atomics.load(this.#i32, SERVER_CLOSED_W) !== 0 ||
    Atomics.load(this.#server, STATE_W) !== 0 || !isAlive(this.#serverSlot);
  readonly #sendOpts = { broken: this.#serverGone };
  readonly #recvOpts = { eof: this.#serverGone, eofPollMs: LIVENESS_SLICE_MS };

  constructor(ep: LocalEndpoint) {
    if (!serverBlockValid(ep)) throw new EOFError("the manager's server is gone");
    const h = heap();
    this.#server = new Int32Array(h.sab, ep.off, HEAD >> 2);
    this.#serverSlot = Atomics.load(this.#server, SLOT_W);
    const off = this.#off = alloc(CONN_BLOCK);
    this.#i32 = new Int32Array(h.sab, off, HEAD >> 2);
    Ring.init(off + HEAD, CONN_RING);
    Ring.init(off + HEAD + CONN_RING, CONN_RING);
    Atomics.store(this.#i32, CLIENT_SLOT_W, h.slot);
    Atomics.store(this.#i32, MAGIC_W, C_MAGIC);
    this.#req = new Ring(off + HEAD, off);
    this.#resp = new Ring(off + HEAD + CONN_RING, off);
    retain(off); // the server's reference, taken now so the block outlives us until it attaches
    const hello = new Uint8Array(8);
    new DataView(hello.buffer).setInt32(0, off, true);
    new DataView(hello.buffer).setInt32(4, h.slot, true);
    void new Ring(ep.off + HEAD, ep.off).post(hello);
  }

  send(bytes: Uint8Array): void {
    if (this.#closed) return;
    void this.#req.post(bytes, this.#sendOpts);
  }

  recv(): Promise<Incoming | typeof EOF> {
    // No timeout is given, so TIMEOUT never comes back.
    return this.#resp.recv(unframeLocal, this.#recvOpts) as Promise<Frame | typeof EOF>;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    Atomics.store(this.#i32, CLIENT_CLOSED_W, 1);
    this.#req.wakeReaders(); // the server sees the close at once
    this.#resp.wakeReaders(); // and so does our own pending recv
    release(this.#off);
  }
}
