/**
 * The codec's wire format: the tags, the typed-array and error classes it knows, its depth and
 * size limits, and the path of a value that cannot be sent (`item[0].cause.callback`) — what the
 * encoder and the decoder must agree on.
 *
 * @module
 */

// Tags of the format.
export const T_UNDEF = 0,
  T_NULL = 1,
  T_TRUE = 2,
  T_FALSE = 3,
  T_INT = 4,
  T_F64 = 5,
  T_STR8 = 6,
  T_STR16 = 7,
  T_UTF8 = 8,
  T_BIGINT = 9,
  T_ARRAY = 10,
  T_OBJECT = 11,
  T_MAP = 12,
  T_SET = 13,
  T_DATE = 14,
  T_REGEXP = 15,
  T_ABUF = 16,
  T_TYPED = 17,
  T_DVIEW = 18,
  T_ERROR = 19,
  T_REF = 20,
  T_HANDLE = 21,
  T_BOXED = 22,
  T_HOLE = 23,
  T_ARRAY_PROPS = 24,
  T_KINDS = 25;

export const TYPED_CTORS = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
] as const;
export type Typed = InstanceType<(typeof TYPED_CTORS)[number]>;
export const typedIndex = new Map<unknown, number>(TYPED_CTORS.map((c, i) => [c, i]));

export const ERROR_PROTOS = new Set<unknown>([
  Error.prototype,
  TypeError.prototype,
  RangeError.prototype,
  SyntaxError.prototype,
  ReferenceError.prototype,
  EvalError.prototype,
  URIError.prototype,
]);

/** Thrown inside the encoder; carries the path from the failing value up to the root. */
export class PathError extends Error {
  keys: string[] = [];
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** `root` and the keys from the root down, as `item[0].cause`; the middle of a very deep one cut. */
export function formatPath(root: string, keys: (string | number)[]): string {
  if (keys.length > 24) {
    const mid = `…(${keys.length - 16} more)…`;
    return root + keys.slice(0, 8).map(keyPath).join("") + mid +
      keys.slice(-8).map(keyPath).join("");
  }
  return root + keys.map(keyPath).join("");
}

export function isStackOverflow(e: unknown): boolean {
  return e instanceof RangeError && e.message.includes("call stack");
}

function keyPath(key: string | number): string {
  if (typeof key === "number") return `[${key}]`;
  if (key.startsWith("<")) return key; // already formatted (Map/Set entries)
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

export const utf8 = new TextEncoder();
export const utf8d = new TextDecoder();

/**
 * Options of an {@link Encoder} or {@link Decoder}. `handles` restricts which handle kinds may
 * cross: a channel to another program (a manager's TCP connection) allows only the kinds that
 * mean something there, since every other handle is an offset into this program's shared heap.
 */
export interface CodecOptions {
  /**
   * Called with a handle kind's name; false makes that handle a `SerializationError`, and a
   * string does too, with that string as the reason (say why the channel refuses it).
   */
  handles?: (kind: string) => boolean | string;
  /**
   * Encoder only: called with each handle and its kind's name before `handles` is; an object
   * returned is encoded in the handle's place (a stand-in the receiver rebuilds: isolation
   * "process" sends references to the objects its parent serves), undefined keeps the handle.
   */
  swap?: (handle: object, kind: string) => object | undefined;
}

export const EMPTY = new Uint8Array(0);
/**
 * How many objects deep a value may be. The encoder and decoder recurse (as structuredClone
 * does, which fails at a few thousand): past this a value is refused with its path, well before
 * any worker's stack runs out, instead of a bare `RangeError`.
 */
export const MAX_DEPTH = 1000;
/** How many objects per message an Encoder tracks in its small array before using a Map. */
export const FEW = 8;
export const F64 = new Float64Array(1);
export const F64_BYTES = new Uint8Array(F64.buffer);
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("denomp: the codec assumes a little-endian platform");
}
