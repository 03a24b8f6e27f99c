/**
 * Checks of an argument's shape, for the calls a Python user writes positionally.
 *
 * Why: Python's `q.get(True, 200)`, `lock.acquire(False)` or `p.join(5)` type-check in neither
 * direction at run time here: a boolean where an options object belongs is silently ignored, so
 * `get(true, 200)` waits for ever and `timeout: 5` meant as seconds becomes 5 ms. `deno check`
 * catches the first, but a JavaScript caller or an `any` does not. Every public method that takes
 * an options object passes it through {@link optionsOf} first, so a wrong shape is a `TypeError`
 * that shows the right call (in milliseconds) instead of a hang. Timeouts follow one rule
 * everywhere ({@link checkTimeout}).
 *
 * @module
 */

import { ValueError } from "./errors.ts";

/**
 * Returns `options` (or `{}` when it is `undefined`) if it is a plain options object; otherwise
 * throws a `TypeError` that names the call and shows its right form, e.g.
 * `Queue.get() takes an options object, not a boolean: write get({ timeout: 200 }) (milliseconds)`.
 *
 * @param options What the caller passed.
 * @param call The method, as the user writes it: `"Queue.get"`.
 * @param right The right call to show: `"get({ block: false })"`, `"get({ timeout: 200 })"`.
 */
export function optionsOf<T extends object>(
  options: T | undefined,
  call: string,
  right: string,
): T {
  if (options === undefined || options === null) return {} as T;
  if (typeof options === "object" && !Array.isArray(options)) return options;
  const got = Array.isArray(options) ? "an array" : `a ${typeof options} (${String(options)})`;
  throw new TypeError(
    `${call}() takes an options object, not ${got}: write ${right} ` +
      `(timeouts are in milliseconds)`,
  );
}

/**
 * A timeout (or any duration) argument checked by the library's one rule, Python's: `undefined`
 * and `null` mean none; anything but a number (or `NaN`) is a `TypeError`, a negative number a
 * `ValueError`, each naming the argument and the value.
 *
 * @param timeout What the caller passed, in milliseconds.
 * @param what The argument's name in the message: `"timeout"`, `"handshakeTimeout"`.
 * @returns The timeout, or `undefined` for none.
 *
 * @example
 * ```ts
 * import { checkTimeout } from "./args.ts";
 * console.assert(checkTimeout(undefined) === undefined && checkTimeout(5) === 5);
 * try {
 *   checkTimeout(-1);
 * } catch (e) {
 *   console.assert((e as Error).name === "ValueError");
 * }
 * ```
 */
export function checkTimeout(timeout: unknown, what = "timeout"): number | undefined {
  if (timeout === undefined || timeout === null) return undefined;
  if (typeof timeout !== "number" || Number.isNaN(timeout)) {
    throw new TypeError(
      `${what} must be a number of milliseconds: current value is ${String(timeout)}`,
    );
  }
  if (timeout < 0) {
    throw new ValueError(`'${what}' must be a non-negative number: current value is ${timeout}`);
  }
  return timeout;
}
