/**
 * The loopback transport: a connection to a server running in this very isolate
 * (`serveForever()`, or the server's own proxies). Frames are handed over as decoded values,
 * with no ring and no socket in between.
 *
 * @module
 */

import { EOF } from "../../core/ring.ts";
import { type ClientTransport, type Frame, type Incoming, unframe } from "../protocol.ts";

/** A server as its loopback clients see it (`C`: its record of a client connection). */
export interface LoopbackServer<C = unknown> {
  readonly stopped: boolean;
  /** Records the loopback client; `deliver` gets the server's frames to it. */
  attachLoopback(deliver: (bytes: Uint8Array) => void): C;
  /** Handles one frame of `client`. */
  receive(client: C, f: Frame): void;
}

/** A connection to a server running in this very isolate (`serveForever()`, or the server's own proxies). */
export class LoopbackTransport<C> implements ClientTransport {
  readonly network = false;
  #inbox: Frame[] = [];
  #wake: (() => void) | null = null;
  #closed = false;
  readonly #client: C;

  constructor(readonly server: LoopbackServer<C>) {
    this.#client = server.attachLoopback((bytes) => {
      this.#inbox.push(unframe(bytes, false));
      this.#wake?.();
    });
  }

  send(bytes: Uint8Array): void {
    if (this.#closed || this.server.stopped) return;
    this.server.receive(this.#client, unframe(bytes, false));
  }

  async recv(): Promise<Incoming | typeof EOF> {
    while (!this.#inbox.length) {
      if (this.#closed || this.server.stopped) return EOF;
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = null;
    }
    return this.#inbox.shift()!;
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
}
