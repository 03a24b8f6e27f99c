/**
 * How a queue's items are encoded and decoded: one reusable encoder, and decoders that return a
 * failure instead of throwing so that the counts go on.
 *
 * @module
 */

import { Encoder, loads, loadsAsync } from "../core/reduction.ts";

let encoding = false;
const sharedEncoder = new Encoder();

/** Encodes with the shared encoder (its bytes are valid until the next encode). */
export function encode(value: unknown): Uint8Array {
  if (encoding) return new Encoder().encode(value, "item").slice(); // a reduce() that puts
  encoding = true;
  try {
    return sharedEncoder.encode(value, "item");
  } finally {
    encoding = false;
  }
}

/** An item whose bytes did not decode: the reader gets `error`, the counts go on. */
export class DecodeFailure {
  constructor(readonly error: unknown) {}
}

/** Decodes an item; a failure is returned (not thrown) so that the caller keeps the counts. */
export const decodeItem = (payload: Uint8Array): unknown => {
  try {
    return loads(payload);
  } catch (e) {
    return new DecodeFailure(e);
  }
};
/**
 * For async receivers: like {@link decodeItem}, and may wait for a handle's module the worker
 * lacks (`import type` targets) or a big block's buffer; a failure is returned, not thrown.
 */
export const decodeItemAsync = (payload: Uint8Array): unknown => {
  try {
    const v = loadsAsync(payload);
    return v instanceof Promise ? v.catch((e) => new DecodeFailure(e)) : v;
  } catch (e) {
    return new DecodeFailure(e);
  }
};
