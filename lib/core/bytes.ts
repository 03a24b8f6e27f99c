/**
 * Byte helpers written once: comparing two byte strings (an encoded key or state against the
 * stored one, a challenge's answer).
 *
 * @module
 */

/**
 * Whether `a` and `b` hold the same bytes.
 *
 * @example
 * ```ts
 * import { sameBytes } from "./bytes.ts";
 * console.assert(sameBytes(new Uint8Array([1, 2]), Uint8Array.of(1, 2)));
 * console.assert(!sameBytes(new Uint8Array([1]), new Uint8Array([1, 0])));
 * ```
 */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
