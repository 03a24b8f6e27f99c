/**
 * How a queue's items are decoded: a failure is returned instead of thrown, so that the counts
 * go on (items are encoded with the codec's reused encoder, `encodeView`).
 *
 * @module
 */

import { loads, loadsAsync } from "../core/reduction.ts";

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
