/**
 * What each side of a ring sees of it: fixed-length views of its header and data area, and the
 * wake-ups either side may send.
 *
 * @module
 */

import { heap } from "../heap.ts";
import { CAP, HEADER, MAGIC, MAGIC_I, R, READERS_ASLEEP, W, WRITERS_ASLEEP } from "./layout.ts";
import { wake } from "./waits.ts";

/**
 * A view of the ring at byte offset `base` of the shared heap: the common part of its writer
 * and its reader (`RingWriter`, `RingReader`).
 *
 * @example
 * ```ts
 * import { alloc } from "../heap.ts";
 * import { Ring } from "../ring.ts";
 * import { RingView } from "./view.ts";
 * const view = new RingView(Ring.init(alloc(Ring.bytesFor(1024)), Ring.bytesFor(1024)));
 * console.assert(view.capacity === 1024);
 * ```
 */
export class RingView {
  /** Byte offset of the ring in the shared heap. */
  readonly base: number;
  /** Bytes in the data area. */
  readonly capacity: number;
  // Fixed-length views of this ring's header and data: element access and Atomics on the
  // heap's length-tracking views cost 2-6x more, and a ring never moves.
  protected readonly i32: Int32Array;
  protected readonly u8: Uint8Array;
  protected readonly dv: DataView;

  /** Attaches to the ring at `base`; throws if none was laid out there (`Ring.init`). */
  constructor(base: number) {
    const sab = heap().sab;
    this.i32 = new Int32Array(sab, base, HEADER >> 2);
    this.base = base;
    if (Atomics.load(this.i32, MAGIC_I) !== MAGIC) {
      throw new Error(`denomp: no ring at heap offset ${base}`);
    }
    const cap = this.capacity = Atomics.load(this.i32, CAP);
    this.u8 = new Uint8Array(sab, base + HEADER, cap);
    this.dv = new DataView(sab, base + HEADER, cap);
  }

  /** `Ring.wakeReaders` (see there). */
  wakeReaders(): void {
    wake(this.i32, W, READERS_ASLEEP);
  }

  /** `Ring.wakeWriters` (see there). */
  wakeWriters(): void {
    wake(this.i32, R, WRITERS_ASLEEP);
  }
}
