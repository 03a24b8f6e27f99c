/**
 * Python's `KeyError` and `IndexError` (its `LookupError` family), for the containers that behave
 * as Python's do: a manager's served `dict` and `list` and the cluster's dict raise them, and a
 * client rebuilds them by name. Not exported from `mod.ts`: a program tells them by `name`, as
 * it tells a remote error (`e.name === "KeyError"`).
 *
 * @module
 */

/** Python's `KeyError` (a missing key), with Python's message: the key's repr. */
export class KeyError extends Error {
  /** The key that was missing (Python's `KeyError.args[0]`). */
  readonly key: unknown;
  /** Creates the error for `key`. */
  constructor(key: unknown) {
    super(typeof key === "string" ? `'${key}'` : String(key));
    this.name = "KeyError";
    this.key = key;
  }
}

/** Python's `IndexError` (an index out of range). */
export class IndexError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "IndexError";
  }
}
