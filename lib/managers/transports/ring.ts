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
 * Both ends are here: {@link RingTransport} is the client's, {@link RingListener} the server's.
 *
 * @module
 */

import { Yielder } from "../../core/yield.ts";
import { LIVENESS_SLICE_MS } from "../../core/atomics.ts";
import { EOFError } from "../../core/errors.ts";
import { alloc, heap, isAlive, release, retain } from "../../core/heap.ts";
import { EOF, Ring, TIMEOUT } from "../../core/ring.ts";
import {
  type ClientTransport,
  type Frame,
  type Incoming,
  reason,
  type ServerEnd,
  unframeLocal,
} from "../protocol.ts";

const S_MAGIC = 0x6d677273, C_MAGIC = 0x6d677263; // "mgrs", "mgrc"
const MAGIC_W = 0, TAG_W = 1, SLOT_W = 2, STATE_W = 3;
const CLIENT_SLOT_W = 1, SERVER_CLOSED_W = 2, CLIENT_CLOSED_W = 3;
const HEAD = 64;
const LISTEN_RING = Ring.bytesFor(8 << 10);
const SERVER_BLOCK = HEAD + LISTEN_RING;
const CONN_BLOCK = (128 << 10) - 16;
const CONN_RING = ((CONN_BLOCK - HEAD) / 2) & ~7;

/** A server lets other work in (timers, other connections) after this many messages in a row. */
const FAIRNESS_BATCH = 256;

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

/** The client end: a connection through rings in the shared heap, to a server in this program. */
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

/** Marks the server block stopped and wakes its listener (from any isolate of the program). */
export function stopServerBlock(ep: LocalEndpoint): void {
  Atomics.store(heap().i32, (ep.off >> 2) + STATE_W, 1);
  new Ring(ep.off + HEAD).wakeReaders();
}

/** A connection as the server end holds it, to close it when the server stops. */
interface RingConn {
  i32: Int32Array;
  req: Ring;
  resp: Ring;
}

/**
 * The server end: the server block, where clients in this program find the server, and the
 * loops that accept their connections and read their requests (`C`: the server's record of a
 * client connection).
 */
export class RingListener<C extends { readonly name: string }> {
  readonly #host: ServerEnd<C>;
  readonly #block: number;
  readonly #i32: Int32Array;
  readonly #tag: number;
  readonly #conns = new Set<RingConn>();

  constructor(host: ServerEnd<C>) {
    this.#host = host;
    const h = heap();
    this.#block = alloc(SERVER_BLOCK);
    this.#i32 = new Int32Array(h.sab, this.#block, HEAD >> 2);
    // A stale proxy (its server gone, the block reused) must not reach a new server: it checks this.
    this.#tag = crypto.getRandomValues(new Int32Array(1))[0] | 1;
    Ring.init(this.#block + HEAD, LISTEN_RING);
    Atomics.store(this.#i32, TAG_W, this.#tag);
    Atomics.store(this.#i32, SLOT_W, h.slot);
    Atomics.store(this.#i32, MAGIC_W, S_MAGIC);
  }

  /** Where clients in this program find the server. */
  get local(): LocalEndpoint {
    return { off: this.#block, tag: this.#tag };
  }

  /** Accepts connections until the server block says stopped (see {@link shutdown}). */
  async accept(): Promise<void> {
    const listen = new Ring(this.#block + HEAD);
    const eof = () => Atomics.load(this.#i32, STATE_W) !== 0;
    const decode = (b: Uint8Array) => [
      b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24),
      b[4] | (b[5] << 8) | (b[6] << 16) | (b[7] << 24),
    ];
    for (;;) {
      const m = await listen.recv(decode, { eof, eofPollMs: LIVENESS_SLICE_MS });
      if (m === EOF || this.#host.stopped) break;
      const [off, slot] = m as number[];
      this.#host.track(this.#serve(off, slot));
    }
  }

  async #serve(off: number, slot: number): Promise<void> {
    const host = this.#host;
    const i32 = new Int32Array(heap().sab, off, HEAD >> 2);
    if (Atomics.load(i32, MAGIC_W) !== C_MAGIC) {
      console.error(`${host.name}: ignored a local connection request with a bad block`);
      return;
    }
    const req = new Ring(off + HEAD, off), resp = new Ring(off + HEAD + CONN_RING, off);
    const rc = { i32, req, resp };
    this.#conns.add(rc);
    const clientGone = () => Atomics.load(i32, CLIENT_CLOSED_W) !== 0 || !isAlive(slot);
    const eof = () => host.stopped || clientGone();
    const sendOpts = { broken: clientGone };
    const client = host.open(`worker slot ${slot}`, false, (bytes) => {
      void resp.post(bytes, sendOpts);
    });
    const opts = { eof, eofPollMs: LIVENESS_SLICE_MS };
    try {
      for (let n = 1;; n++) {
        const f = await req.recv(unframeLocal, opts);
        if (f === EOF || f === TIMEOUT) break;
        host.receive(client, f);
        if (n % FAIRNESS_BATCH === 0) await yieldTask();
      }
    } catch (e) {
      console.error(`${host.name}: closed the connection of ${client.name}: ${reason(e)}`);
    } finally {
      host.drop(client);
      this.#conns.delete(rc);
      // A live client learns that its connection is closed. A dead one is not told: a worker
      // is marked dead as soon as it is terminated, and would otherwise report the closed
      // connection in the moment before it really stops.
      if (!clientGone()) {
        Atomics.store(i32, SERVER_CLOSED_W, 1);
        resp.wakeReaders();
      }
      release(off);
    }
  }

  /** Marks the server stopped: its listener ends, and a proxy anywhere sees it. */
  shutdown(): void {
    if (Atomics.load(this.#i32, STATE_W) !== 0) return;
    stopServerBlock(this.local);
  }

  /** Closes every connection (the server has stopped): their clients and loops see it at once. */
  close(): void {
    for (const rc of this.#conns) {
      Atomics.store(rc.i32, SERVER_CLOSED_W, 1);
      rc.resp.wakeReaders();
      rc.req.wakeReaders();
    }
  }
}

/**
 * Lets other tasks run (timers, other connections' wake-ups) between the messages of a
 * connection whose client keeps sending, which would otherwise be served in a chain of
 * microtasks that starves them.
 */
const yielder = new Yielder();
const yieldTask = (): Promise<void> => yielder.yield();

/** Lets the isolate exit: closes the channel of {@link yieldTask} (no server is left here). */
export function releaseYield(): void {
  yielder.close();
}
