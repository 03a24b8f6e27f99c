/**
 * The task runner of a cluster worker (see lib/cluster/mod.ts): runs one task message of a
 * `cluster.Pool` against the worker's `--module` and encodes the outcome.
 *
 * It lives apart from lib/cluster/mod.ts, and imports nothing from npm, because it is loaded inside
 * every executor Web Worker: keeping the NATS client out of those isolates saves each one the
 * client's load time and memory. The worker process's main thread is the only NATS client.
 *
 * @module
 */

import { SerializationError } from "../core/errors.ts";
import { dumps, loads } from "../core/reduction.ts";
// A value import, not `import type`: loading queues.ts registers the Queue handle with the codec,
// which an executor process needs before its arguments (two queues) can be decoded.
import { Queue } from "../queues/queues.ts";

/** What a task asks for: one call (`apply`), or one call per item of a chunk (`map`, `starmap`). */
export type TaskKind = "apply" | "map" | "starmap";

/** The outcome of a task: `ok` with the encoded value(s), or not with the encoded error. */
export interface TaskOutcome {
  /** Whether the task succeeded. */
  ok: boolean;
  /** `dumps` of the result (an array of results for a chunk) or of the error. */
  bytes: Uint8Array;
}

/** The outcome of a failed task: the error itself when it can be sent, its name and message otherwise. */
function failure(error: unknown): TaskOutcome {
  try {
    return { ok: false, bytes: dumps(error, "error") };
  } catch {
    const e = error instanceof Error ? error : new Error(String(error));
    const plain = new Error(e.message);
    plain.name = e.name;
    plain.stack = e.stack;
    return { ok: false, bytes: dumps(plain, "error") };
  }
}

/**
 * The codec's bytes of `error` for a reply: the error itself when it can be sent, else a plain
 * Error with its name, message and stack (cluster actors reply with this too).
 *
 * @param error What was thrown.
 * @returns Bytes that `loads` turns back into an error.
 *
 * @example
 * ```ts
 * import { encodeFailure } from "./exec.ts";
 * import { loads } from "../core/reduction.ts";
 * console.assert(loads<Error>(encodeFailure(new RangeError("x"))) instanceof RangeError);
 * ```
 */
export function encodeFailure(error: unknown): Uint8Array {
  return failure(error).bytes;
}

/**
 * Runs task `fn` of `mod` on the decoded `payload`: the argument list for `apply`, a chunk of
 * items for `map` (one argument each) and `starmap` (argument lists).
 *
 * @param mod The workers' `--module`, imported.
 * @param fn The name of the task's export.
 * @param kind How `payload` is laid out.
 * @param payload The encoded arguments or chunk.
 * @returns The outcome; a task's error (or an unknown `fn`) is an outcome too, never thrown.
 *
 * @example
 * ```ts
 * import { runTask } from "./exec.ts";
 * import { dumps, loads } from "../core/reduction.ts";
 * const mod = { double: (x: number) => 2 * x };
 * const out = await runTask(mod, "double", "map", dumps([1, 2]));
 * console.assert(out.ok && loads<number[]>(out.bytes)[1] === 4);
 * ```
 */
export async function runTask(
  mod: Record<string, unknown>,
  fn: string,
  kind: TaskKind,
  payload: Uint8Array,
): Promise<TaskOutcome> {
  const f = mod[fn];
  if (typeof f !== "function") {
    return failure(
      new TypeError(`task '${fn}' is not a function exported by the worker's --module`),
    );
  }
  let value: unknown;
  try {
    const input = loads<unknown[]>(payload);
    if (kind === "apply") {
      value = await f(...input);
    } else {
      const out = new Array(input.length);
      for (let i = 0; i < input.length; i++) {
        const r = kind === "map" ? f(input[i]) : f(...(input[i] as unknown[]));
        // Await only promises: a sync task pays no microtask per item.
        out[i] = r instanceof Promise ? await r : r;
      }
      value = out;
    }
  } catch (e) {
    return failure(e);
  }
  try {
    return { ok: true, bytes: dumps(value, "result") };
  } catch (e) {
    return failure(
      e instanceof SerializationError ? e : new SerializationError("result", String(e)),
    );
  }
}

/** Re-exported so that importing this module always brings the Queue handle kind along. */
export { Queue as ExecQueue };

/** A task sent to an executor process: sequence number, function name, kind, payload. */
export type ExecTask = [seq: number, fn: string, kind: TaskKind, payload: Uint8Array];
/** An executor's answer: sequence number, success, encoded outcome. */
export type ExecResult = [seq: number, ok: boolean, bytes: Uint8Array];

/**
 * The loop of one executor process of a cluster worker: imports `moduleUrl` once, then runs the
 * tasks of `tasks` one at a time and puts each outcome on `results`, until `tasks` is closed.
 *
 * @param moduleUrl The URL of the module exporting the tasks.
 * @param tasks The tasks to run, until it is closed.
 * @param results Where each outcome goes.
 *
 * @example
 * ```ts
 * import { type ExecResult, type ExecTask, execLoop } from "./exec.ts";
 * import { Queue } from "../queues/queues.ts";
 * import { dumps, loads } from "../core/reduction.ts";
 * const tasks = new Queue<ExecTask>(), results = new Queue<ExecResult>();
 * // A worker starts it as the target of each executor Process; here it runs in this thread.
 * const loop = execLoop(
 *   import.meta.resolve("../../tests/cluster/fixtures/cluster_tasks.ts"),
 *   tasks,
 *   results,
 * );
 * await tasks.put([1, "square", "apply", dumps([4])]);
 * const [seq, ok, bytes] = await results.get();
 * console.assert(seq === 1 && ok && loads(bytes) === 16);
 * tasks.close();
 * await loop;
 * ```
 */
export async function execLoop(
  moduleUrl: string,
  tasks: Queue<ExecTask>,
  results: Queue<ExecResult>,
): Promise<void> {
  const mod = await import(moduleUrl) as Record<string, unknown>;
  for await (const [seq, fn, kind, payload] of tasks) {
    const out = await runTask(mod, fn, kind, payload);
    await results.put([seq, out.ok, out.bytes]);
  }
}
