/**
 * The layout of a queue's block in the shared heap: the header words (counters, the store's
 * words, the holders table) and the kinds of store.
 *
 * A queue is one block, so a handle is only its offset; every process reads the same words.
 *
 * @module
 */

// ---------------------------------------------------------------------------------------------
// Shared layout (Int32 words from the block's offset / 4)

// Counters split by who writes them, 128 bytes apart (a cache line and its prefetch pair), so a
// producer and a consumer on two cores do not bounce one line with two read-modify-writes per
// item: producers count PUTS (items reserved), consumers count GETS (items taken) and TASKS_DONE
// (`taskDone`). qsize is PUTS - GETS and the unfinished tasks PUTS - TASKS_DONE (int32
// differences, so wrap-around is fine). The read-mostly words sit between them.
export const PUTS = 0; // producers' line
export const CLOSED = 16, MAXSIZE = 17, KIND = 18, MAGIC_I = 19, JOINABLE = 20;
export const GETS = 32, TASKS_DONE = 33, PUT_WAITERS = 34, JOIN_WAITERS = 35; // consumers' line
// Store (LIFO / priority) words.
export const SLOCK = 48, LEN = 49, ARR = 50, PENDING = 51, POPPED = 52, SEQ = 53, GET_WAITERS = 54;
export const NEXT_SEQ = 55;
/** Claimed entries of the holders table (read-mostly line). */
export const HOLDERS = 21;
/** A typed queue's schema: the block holding its JSON text, and the text's length in bytes. */
export const SCHEMA = 22, SCHEMA_LEN = 23;
/**
 * The holders table (see `Holders` in held.ts): per consumer process, its slot (negated once
 * dead and being reaped), its held items' block, the slot of the process putting them back, and
 * whether their tasks were counted done.
 */
export const HOLD_TABLE = 64, HOLD_ENTRIES = 32, HOLD_ENTRY = 4;
export const HEADER = (HOLD_TABLE + HOLD_ENTRY * HOLD_ENTRIES) * 4;
export const MAGIC = 0x71756575; // "queu"

export const FIFO = 1, LIFO = 2, PRIO = 3;
export type Kind = typeof FIFO | typeof LIFO | typeof PRIO;

/** A FIFO queue's block: header and ring fill a 256 KiB size class exactly. */
export const FIFO_BLOCK = (256 << 10) - 16;
/** Item blocks of the store: key length, payload length, key, payload. */
export const ITEM_HEADER = 8;
