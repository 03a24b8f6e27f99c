/**
 * The shape of a ring in the shared heap: its header words, its frames and their flags, its size
 * limits, and how long a side spins before it sleeps. Both sides of a ring, and anything that
 * lays one out, read it through these numbers.
 *
 * Layout at `base` (Int32 words; hot words of the two sides on separate cache lines):
 * `W`, `READERS_ASLEEP` | `R`, `WRITERS_ASLEEP` | `WLOCK`, `WSTATE` | `RLOCK` | `CAP`, `MAGIC`,
 * `TRACKED`, the `ASM_*` words of a durable reader's assembly | the table of unbegun messages
 * (64 entries of slot and count), then `CAP` data bytes. `W` and `R` run over `[0, 2*CAP)` so
 * full and empty differ and `CAP` need not be a power of two. A frame is an int32 header at a
 * 4-aligned position — the payload length in bits 0..27 with flags `FIRST` (bit 28) and `LAST`
 * (bit 29), or `-1` for "the rest of the data area is unused, go on at 0" — then the payload,
 * padded to 4.
 *
 * @module
 */

// Word indices relative to base / 4.
export const W = 0, READERS_ASLEEP = 1;
export const R = 16, WRITERS_ASLEEP = 17;
export const WLOCK = 32, WSTATE = 33;
export const RLOCK = 48;
export const CAP = 64, MAGIC_I = 65, TRACKED = 66;
/** A durable reader's assembly of a streamed message (see `RecvOptions.durable`). */
export const ASM_OFF = 67, ASM_TOTAL = 68, ASM_WRITER = 69, ASM_R = 70, ASM_FILLED = 71;
export const ASM_NEXT_R = 72, ASM_NEXT_FILLED = 73;
/**
 * The unbegun-messages table (see "Messages a dead process never began" in ring.ts): slot, count.
 */
export const TABLE = 80, TABLE_ENTRIES = 64;
/** Bytes of the ring's header; the data area follows it. */
export const HEADER = (TABLE + 2 * TABLE_ENTRIES) * 4;
export const MAGIC = 0x72696e67; // "ring"

export const SKIP = -1;
export const LEN_MASK = (1 << 28) - 1;
export const FIRST = 1 << 28, LAST = 1 << 29;
/** Bytes the first frame of a streamed message carries before the data: total length, writer. */
export const PREFIX = 8;
/** The largest data area: frame lengths must fit in 28 bits. */
export const MAX_CAPACITY = 1 << 27;
export const MIN_CAPACITY = 256;

/**
 * How many times a side re-checks a shared word before it sleeps. About 10–30 µs here: longer
 * than a peer's typical turnaround (so ping-pong never pays a kernel wake-up, ~20 µs per hop),
 * short enough that a waiting side gives its core back quickly.
 */
export const SPIN = 4000;

/**
 * Checks before sleeping in the middle of a streamed message: the other side is then surely busy
 * copying a frame (tens of microseconds for 64 KiB into fresh memory), and an async wake-up on
 * the main thread costs more than that, so waiting a little longer awake pays.
 */
export const STREAM_SPIN = SPIN * 4;

export const pad4 = (n: number) => (n + 3) & ~3;

// Positions: `W` and `R` run over `[0, 2*cap)`; a position's byte in the data area is
// `offsetOf` it. Plain functions of the capacity, so both sides share them at no cost. Each does
// its arithmetic on every call, the wrap choosing only what is added: an operation first run
// at the ring's first wrap (after V8 has optimized its callers on the first lap) had no type
// feedback and deoptimized them there (`--trace-deopt`, a fresh typed W2 consumer and producer).

/** The position `n` bytes after `p`. */
export function advance(p: number, n: number, cap: number): number {
  p += n;
  const lap = 2 * cap;
  return p - (p >= lap ? lap : 0);
}

/** The offset in the data area of position `p`. */
export function offsetOf(p: number, cap: number): number {
  return p - (p >= cap ? cap : 0);
}

/** Bytes in the ring between the read position `r` and the write position `w`. */
export function bytesUsed(w: number, r: number, cap: number): number {
  const d = w - r, lap = 2 * cap;
  return d + (d < 0 ? lap : 0);
}

/** What a write or read step did: all of it, or it must wait for the other side. */
export const NEED = 0, DONE = 1;
