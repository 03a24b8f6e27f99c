/**
 * The error classes of denomp, named as in Python's `multiprocessing`, `threading` and `queue`.
 *
 * Every class sets `name` to its own class name, so errors keep their identity after crossing a
 * worker boundary (the codec rebuilds them by name).
 *
 * @module
 */

/** Options accepted by every denomp error constructor. */
export interface DenompErrorOptions {
  /** The underlying error, as in `new Error(message, { cause })`. */
  cause?: unknown;
}

function named<T extends Error>(self: T, name: string): T {
  Object.defineProperty(self, "name", {
    value: name,
    enumerable: false,
    writable: true,
    configurable: true,
  });
  return self;
}

/**
 * Raised by `get({ block: false })` or a timed-out `get` on an empty queue (Python's `queue.Empty`).
 *
 * @example
 * ```ts
 * import { Empty } from "jsr:@denomp/multiprocessing";
 * const e = new Empty("queue is empty");
 * console.assert(e instanceof Empty && e.name === "Empty");
 * ```
 */
export class Empty extends Error {
  /** Creates the error. */
  constructor(message = "queue is empty", options?: DenompErrorOptions) {
    super(message, options);
    named(this, "Empty");
  }
}

/**
 * Raised by `put({ block: false })` or a timed-out `put` on a full queue (Python's `queue.Full`).
 *
 * @example
 * ```ts
 * import { Full } from "jsr:@denomp/multiprocessing";
 * console.assert(new Full().name === "Full");
 * ```
 */
export class Full extends Error {
  /** Creates the error. */
  constructor(message = "queue is full", options?: DenompErrorOptions) {
    super(message, options);
    named(this, "Full");
  }
}

/**
 * Raised by `Connection.recv()` once the other end is closed and nothing is left to read.
 *
 * @example
 * ```ts
 * import { EOFError } from "jsr:@denomp/multiprocessing";
 * console.assert(new EOFError().name === "EOFError");
 * ```
 */
export class EOFError extends Error {
  /** Creates the error. */
  constructor(message = "the other end of the connection is closed", options?: DenompErrorOptions) {
    super(message, options);
    named(this, "EOFError");
  }
}

/**
 * Raised by `Connection.recvBytesInto()` when the buffer is too small; `message` is the
 * whole message that was received, so nothing is lost.
 *
 * @example
 * ```ts
 * import { BufferTooShort } from "jsr:@denomp/multiprocessing";
 * const e = new BufferTooShort(new Uint8Array([1, 2, 3]));
 * console.assert(e.bytes.length === 3);
 * ```
 */
export class BufferTooShort extends Error {
  /** The complete message that did not fit. */
  readonly bytes: Uint8Array;
  /** Creates the error, keeping the message bytes that did not fit. */
  constructor(bytes: Uint8Array, message?: string, options?: DenompErrorOptions) {
    super(message ?? `buffer too short for a message of ${bytes.length} bytes`, options);
    named(this, "BufferTooShort");
    this.bytes = bytes;
  }
}

/**
 * Raised when a blocking call runs out of time (`AsyncResult.get(timeout)`, a task `timeout`).
 *
 * @example
 * ```ts
 * import { TimeoutError } from "jsr:@denomp/multiprocessing";
 * console.assert(new TimeoutError().name === "TimeoutError");
 * ```
 */
export class TimeoutError extends Error {
  /** Creates the error. */
  constructor(message = "timed out", options?: DenompErrorOptions) {
    super(message, options);
    named(this, "TimeoutError");
  }
}

/**
 * Misuse of a process: starting it twice, a target that cannot be found in a worker, a daemon
 * starting children.
 *
 * @example
 * ```ts
 * import { ProcessError } from "jsr:@denomp/multiprocessing";
 * console.assert(new ProcessError("processes can only be started once").name === "ProcessError");
 * ```
 */
export class ProcessError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: DenompErrorOptions) {
    super(message, options);
    named(this, "ProcessError");
  }
}

/**
 * A peer failed the HMAC challenge of a `Listener`/`Client`/`BaseManager` connection.
 *
 * @example
 * ```ts
 * import { AuthenticationError } from "jsr:@denomp/multiprocessing";
 * console.assert(new AuthenticationError().name === "AuthenticationError");
 * ```
 */
export class AuthenticationError extends Error {
  /** Creates the error. */
  constructor(message = "digest received was wrong", options?: DenompErrorOptions) {
    super(message, options);
    named(this, "AuthenticationError");
  }
}

/**
 * Raised by `Barrier.wait()` when the barrier is broken by `abort()`, a timeout or `reset()`.
 *
 * @example
 * ```ts
 * import { BrokenBarrierError } from "jsr:@denomp/multiprocessing";
 * console.assert(new BrokenBarrierError().name === "BrokenBarrierError");
 * ```
 */
export class BrokenBarrierError extends Error {
  /** Creates the error. */
  constructor(message = "the barrier is broken", options?: DenompErrorOptions) {
    super(message, options);
    named(this, "BrokenBarrierError");
  }
}

/**
 * A deadlock-detecting `acquire()` would close a cycle in the wait-for graph: it would wait for
 * a lock whose holder waits, directly or through others, for one this thread holds. `cycle`
 * lists each party: the process (or thread), what it holds and what it waits for.
 *
 * @example
 * ```ts
 * import { DeadlockError } from "jsr:@denomp/multiprocessing";
 * const e = new DeadlockError("deadlock", [{ process: "a", holds: "x", waitsFor: "y" }]);
 * console.assert(e.name === "DeadlockError" && e.cycle.length === 1);
 * ```
 */
export class DeadlockError extends Error {
  /** The cycle, starting with the caller. */
  readonly cycle: readonly { process: string; holds: string; waitsFor: string }[];
  /** Creates the error. */
  constructor(
    message = "deadlock",
    cycle: readonly { process: string; holds: string; waitsFor: string }[] = [],
    options?: DenompErrorOptions,
  ) {
    super(message, options);
    this.cycle = cycle;
    named(this, "DeadlockError");
  }
}

/**
 * A pool worker died while running a task; the message names the worker and its exit code.
 *
 * @example
 * ```ts
 * import { BrokenPoolError } from "jsr:@denomp/multiprocessing";
 * console.assert(new BrokenPoolError("worker died").name === "BrokenPoolError");
 * ```
 */
export class BrokenPoolError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: DenompErrorOptions) {
    super(message, options);
    named(this, "BrokenPoolError");
  }
}

/**
 * An error thrown in another worker or program (a manager method, an actor). `remoteName`,
 * `message` and `remoteStack` are those of the original error.
 *
 * @example
 * ```ts
 * import { RemoteError } from "jsr:@denomp/multiprocessing";
 * const e = new RemoteError("TypeError", "x is not a function", "TypeError: x...\n    at f");
 * console.assert(e.remoteName === "TypeError");
 * ```
 */
export class RemoteError extends Error {
  /** The `name` of the original error. */
  readonly remoteName: string;
  /** The stack of the original error, as printed in the other worker. */
  readonly remoteStack: string;
  /** Creates the error from the remote error's parts. */
  constructor(remoteName: string, message: string, remoteStack = "", options?: DenompErrorOptions) {
    super(message, options);
    named(this, "RemoteError");
    this.remoteName = remoteName;
    // Not enumerable: the stack below already holds it, and console.log prints own enumerable
    // fields too (it would print the remote stack twice).
    this.remoteStack = remoteStack;
    Object.defineProperty(this, "remoteStack", { enumerable: false });
    if (remoteStack) {
      this.stack = `RemoteError (${remoteName}): ${message}\n--- remote ---\n${remoteStack}`;
    }
  }
}

/**
 * A value cannot cross a worker boundary. The message names the path inside the value, e.g.
 * `args[1].callback: functions cannot be sent`.
 *
 * @example
 * ```ts
 * import { SerializationError } from "jsr:@denomp/multiprocessing";
 * const e = new SerializationError("args[1].callback", "functions cannot be sent");
 * console.assert(e.message === "args[1].callback: functions cannot be sent");
 * ```
 */
export class SerializationError extends Error {
  /** Where in the value the problem is, e.g. `args[1].callback`. */
  readonly path: string;
  /** Creates the error for the value at `path`. */
  constructor(path: string, reason: string, options?: DenompErrorOptions) {
    super(`${path}: ${reason}`, options);
    named(this, "SerializationError");
    this.path = path;
  }
}

/**
 * Misuse of an API, with Python's wording where one exists, e.g.
 * `semaphore or lock released too many times`.
 *
 * @example
 * ```ts
 * import { ValueError } from "jsr:@denomp/multiprocessing";
 * console.assert(new ValueError("task_done() called too many times").name === "ValueError");
 * ```
 */
export class ValueError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: DenompErrorOptions) {
    super(message, options);
    named(this, "ValueError");
  }
}

/**
 * Raised by `Future.result()`/`exception()` of a cancelled future (Python's
 * `concurrent.futures.CancelledError`).
 *
 * @example
 * ```ts
 * import { CancelledError } from "jsr:@denomp/multiprocessing";
 * const e = new CancelledError();
 * console.assert(e instanceof CancelledError && e.name === "CancelledError");
 * ```
 */
export class CancelledError extends Error {
  /** Creates the error. */
  constructor(message = "the future was cancelled", options?: DenompErrorOptions) {
    super(message, options);
    named(this, "CancelledError");
  }
}

/** Every error class above by name, so the codec can rebuild them on the other side. */
export const ERROR_CLASSES: Readonly<Record<string, new (message: string) => Error>> = {
  Empty,
  Full,
  EOFError,
  TimeoutError,
  ProcessError,
  AuthenticationError,
  BrokenBarrierError,
  BrokenPoolError,
  ValueError,
  CancelledError,
  DeadlockError,
};
