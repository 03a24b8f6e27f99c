/**
 * denomp: Python's `multiprocessing`, `threading` and `queue` for Deno, on Web Workers.
 *
 * Processes, pools, queues, pipes, locks, shared memory, managers and actors, with the names a
 * Python user expects. See README.md for a tour.
 *
 * @module
 */

export * from "./lib/errors.ts";
export * from "./lib/process.ts";
export * from "./lib/threading.ts";
export * from "./lib/synchronize.ts";
export * from "./lib/sharedctypes.ts";
export * from "./lib/shared_memory.ts";
export { Decoder, dumps, Encoder, type HandleKind, loads, registerHandle } from "./lib/reduction.ts";
