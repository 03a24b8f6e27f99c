/**
 * `Decoder`: reads the codec's format back into values, rebuilding handles through their kinds;
 * and the waits a rebuild may need (`pendingUntil`), which only `loadsAsync` can honour.
 *
 * @module
 */

import { kindsByName } from "./handles.ts";
import {
  type CodecOptions,
  EMPTY,
  ERROR_PROTOS,
  F64,
  F64_BYTES,
  T_ABUF,
  T_ARRAY,
  T_ARRAY_PROPS,
  T_BIGINT,
  T_BOXED,
  T_DATE,
  T_DVIEW,
  T_ERROR,
  T_F64,
  T_FALSE,
  T_HANDLE,
  T_HOLE,
  T_INT,
  T_KINDS,
  T_MAP,
  T_NULL,
  T_OBJECT,
  T_REF,
  T_REGEXP,
  T_SET,
  T_STR16,
  T_STR8,
  T_TRUE,
  T_TYPED,
  T_UNDEF,
  T_UTF8,
  type Typed,
  TYPED_CTORS,
  utf8d,
} from "./wire.ts";
import { ERROR_CLASSES, SerializationError } from "./errors.ts";

/**
 * Decodes the binary format written by {@link Encoder}. Reading copies everything out of the
 * input, so the input may be shared memory that is reused right after.
 *
 * @example
 * ```ts
 * import { Decoder, Encoder } from "jsr:@denomp/multiprocessing";
 * const m = new Decoder().decode(new Encoder().encode(new Map([[1, 2n]]))) as Map<number, bigint>;
 * console.assert(m.get(1) === 2n);
 * ```
 */
export class Decoder {
  #allow: ((kind: string) => boolean | string) | undefined;
  // Numbers are read from the bytes directly rather than through a DataView: making a DataView
  // per message costs more than decoding a small item, above all over shared memory.
  #b: Uint8Array = new Uint8Array(0);
  #p = 0;
  #refs: unknown[] = [];

  /** Creates a decoder; `options.handles` restricts the handle kinds it rebuilds. */
  constructor(options?: CodecOptions) {
    this.#allow = options?.handles;
  }

  /** Decodes one value from `bytes` (which must hold exactly what one `encode` wrote). */
  decode(bytes: Uint8Array): unknown {
    this.#b = bytes;
    this.#p = 0;
    // No allocation here for `pendingUntil`: a mark into one shared list (this is the hot path).
    const mark = pendingReady.length;
    decodeDepth++;
    try {
      if (bytes[0] === T_KINDS) this.#kinds();
      const v = this.#value();
      if (pendingReady.length > mark && waitingDepth === 0) {
        throw new SerializationError("value", pendingWhy);
      }
      return v;
    } catch (e) {
      if (pendingReady.length > mark) pendingReady.length = mark;
      throw e;
    } finally {
      decodeDepth--;
      this.#refs.length = 0;
      this.#b = EMPTY;
    }
  }

  #u32(): number {
    return this.#i32() >>> 0;
  }

  /**
   * The message's table of handle kinds: every kind must be registered here before any handle
   * is rebuilt (a rebuild adopts the reference its message carried, so a decode must not stop
   * half-way through its handles and be tried again).
   */
  #kinds(): void {
    this.#p++;
    let missing: string[] | undefined, names: string[] | undefined;
    for (let n = this.#count(2); n > 0; n--) {
      const name = this.#str(), module = this.#str();
      if (kindsByName.has(name) || (this.#allow && this.#allow(name) !== true)) continue;
      (names ??= []).push(name);
      if (module) (missing ??= []).push(module);
    }
    if (names) throw new MissingHandleModule(names, missing ?? []);
  }

  /**
   * A length or count read from the input, checked against the bytes left (each element takes
   * at least `unit` bytes): corrupt or hostile input must fail fast, not loop or allocate for
   * billions of elements it does not contain.
   */
  #count(unit: number): number {
    const n = this.#u32();
    if (n * unit > this.#b.length - this.#p) {
      throw new SerializationError(
        "value",
        `corrupt message: a length of ${n} at byte ${this.#p - 4} runs past its end`,
      );
    }
    return n;
  }

  #i32(): number {
    const b = this.#b, p = this.#p;
    this.#p = p + 4;
    return b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24);
  }

  #f64(): number {
    const b = this.#b, p = this.#p;
    for (let i = 0; i < 8; i++) F64_BYTES[i] = b[p + i]; // little-endian, as written
    this.#p = p + 8;
    return F64[0];
  }

  #strBody(tag: number): string {
    const n = this.#count(tag === T_STR16 ? 2 : 1), b = this.#b;
    let p = this.#p;
    if (tag === T_STR8) {
      this.#p = p + n;
      if (n < 32) {
        let s = "";
        for (let i = 0; i < n; i++) s += String.fromCharCode(b[p++]);
        return s;
      }
      let s = "";
      for (let i = 0; i < n; i += 8192) {
        s += String.fromCharCode.apply(
          null,
          b.slice(p + i, p + Math.min(n, i + 8192)) as unknown as number[],
        );
      }
      return s;
    }
    if (tag === T_STR16) {
      let s = "";
      for (let i = 0; i < n; i++, p += 2) s += String.fromCharCode(b[p] | (b[p + 1] << 8));
      this.#p = p;
      return s;
    }
    // UTF-8: copy out first (TextDecoder refuses views of shared memory).
    this.#p = p + n;
    return utf8d.decode(b.slice(p, p + n));
  }

  #str(): string {
    return this.#strBody(this.#b[this.#p++]);
  }

  #value(): unknown {
    const tag = this.#b[this.#p++];
    switch (tag) {
      case T_INT:
        return this.#i32();
      case T_STR8:
      case T_STR16:
      case T_UTF8:
        return this.#strBody(tag);
      case T_OBJECT: {
        const o: Record<string, unknown> = {};
        this.#refs.push(o);
        return this.#props(o);
      }
      case T_UNDEF:
      case T_HOLE:
        return undefined;
      case T_NULL:
        return null;
      case T_TRUE:
        return true;
      case T_FALSE:
        return false;
      case T_F64:
        return this.#f64();
      case T_BIGINT: {
        const s = this.#str();
        return s.startsWith("-") ? -BigInt("0x" + s.slice(1)) : BigInt("0x" + s);
      }
      case T_ARRAY:
      case T_ARRAY_PROPS: {
        const n = this.#count(1), a = new Array(n);
        this.#refs.push(a);
        for (let i = 0; i < n; i++) {
          if (this.#b[this.#p] === T_HOLE) this.#p++;
          else a[i] = this.#value();
        }
        return tag === T_ARRAY ? a : this.#props(a as unknown as Record<string, unknown>);
      }
      case T_MAP: {
        const m = new Map();
        this.#refs.push(m);
        for (let n = this.#count(2); n > 0; n--) {
          const k = this.#value();
          m.set(k, this.#value());
        }
        return m;
      }
      case T_SET: {
        const s = new Set();
        this.#refs.push(s);
        for (let n = this.#count(1); n > 0; n--) s.add(this.#value());
        return s;
      }
      case T_DATE: {
        const d = new Date(this.#f64());
        this.#refs.push(d);
        return d;
      }
      case T_REGEXP: {
        const i = this.#refs.push(null) - 1;
        const src = this.#str();
        return (this.#refs[i] = new RegExp(src, this.#str()));
      }
      case T_ABUF: {
        const ab = this.#bytesOut().buffer;
        this.#refs.push(ab);
        return ab;
      }
      case T_TYPED: {
        const Ctor = TYPED_CTORS[this.#b[this.#p++]];
        const ab = this.#bytesOut().buffer as ArrayBuffer;
        const t: Typed = new (Ctor as new (b: ArrayBuffer) => Typed)(ab);
        this.#refs.push(t);
        return t;
      }
      case T_DVIEW: {
        const d = new DataView(this.#bytesOut().buffer);
        this.#refs.push(d);
        return d;
      }
      case T_ERROR:
        return this.#error();
      case T_REF:
        return this.#refs[this.#u32()];
      case T_HANDLE: {
        const i = this.#refs.push(null) - 1;
        const name = this.#str();
        const kind = kindsByName.get(name);
        const desc = this.#value();
        if (this.#allow && this.#allow(name) !== true) {
          throw new SerializationError("value", `a '${name}' handle cannot be received here`);
        }
        if (!kind) throw new MissingHandleModule([name], []);
        return (this.#refs[i] = kind.rebuild(desc));
      }
      case T_BOXED: {
        const i = this.#refs.push(null) - 1;
        return (this.#refs[i] = Object(this.#value()));
      }
    }
    throw new SerializationError(
      "value",
      `corrupt message: unknown tag ${tag} at byte ${this.#p - 1}`,
    );
  }

  /** Reads a count, then that many key/value pairs into `o`. */
  #props<O extends Record<string, unknown>>(o: O): O {
    for (let n = this.#count(2); n > 0; n--) {
      const k = this.#str();
      // An own "__proto__" key is data: assigning it would set the object's prototype.
      if (k === "__proto__") {
        Object.defineProperty(o, k, {
          value: this.#value(),
          writable: true,
          enumerable: true,
          configurable: true,
        });
      } else (o as Record<string, unknown>)[k] = this.#value();
    }
    return o;
  }

  #bytesOut(): Uint8Array {
    const n = this.#count(1);
    const out = this.#b.slice(this.#p, this.#p + n);
    this.#p += n;
    return out;
  }

  #error(): Error {
    const i = this.#refs.push(null) - 1;
    const name = this.#str(), message = this.#str(), stack = this.#str();
    // Own properties only: an error named `toString` or `constructor` is no class of ours.
    const Known = Object.hasOwn(ERROR_CLASSES, name)
      ? ERROR_CLASSES[name]
      : Object.hasOwn(globalThis, name) &&
          ERROR_PROTOS.has(
            (globalThis as unknown as Record<string, { prototype?: unknown } | undefined>)[name]
              ?.prototype,
          )
      ? (globalThis as unknown as Record<string, new (m: string) => Error>)[name]
      : Error;
    // A real error object (`Error.isError` holds, as after structuredClone) of the right class,
    // made without running that class's constructor (which may want other arguments).
    const e: Error = Reflect.construct(Error, [message], Known);
    Object.defineProperty(e, "name", { value: name, writable: true, configurable: true });
    Object.defineProperty(e, "stack", { value: stack, writable: true, configurable: true });
    this.#refs[i] = e;
    for (let n = this.#count(2); n > 0; n--) {
      const k = this.#str();
      Object.defineProperty(e, k, {
        value: this.#value(),
        writable: true,
        configurable: true,
        enumerable: k !== "cause",
      });
    }
    const left = this.#value();
    if (typeof left === "string") e.stack = `${stack}\n${left}`;
    return e;
  }
}

/**
 * A message holds handles of kinds not registered in this worker. `modules` are the modules that
 * registered them where the message was sent: {@link loadsAsync} imports them and decodes again.
 */
export class MissingHandleModule extends SerializationError {
  constructor(readonly kinds: string[], readonly modules: string[]) {
    const which = (kinds.length > 1 ? "handles of kinds " : "a handle of kind ") +
      kinds.map((k) => `'${k}'`).join(", ");
    const from = modules.length ? ` (registered by ${modules.join(", ")})` : "";
    super(
      "value",
      `${which} arrived but its module was not loaded in this worker${from}. ` +
        "The usual cause is a module that only does `import type { ... }` (erased at run time): " +
        `import the class for real (\`import { ${
          kinds[0]
        } } from "jsr:@denomp/multiprocessing"\`, ` +
        "or from its module), " +
        "or receive with the async API (`await q.get()`), which loads the module itself",
    );
  }
}

/**
 * The promises of {@link pendingUntil} of the decodes under way (each owns the part after its
 * mark), the reason of the last, and how deep in decodes and in {@link loadsAsync} this is.
 */
const pendingReady: Promise<unknown>[] = [];
let pendingWhy = "", decodeDepth = 0, waitingDepth = 0;

/**
 * For a handle kind's `rebuild` whose object becomes usable only once `ready` settles (a big
 * shared block, whose `SharedArrayBuffer` is still on its way from another worker):
 * {@link loadsAsync} waits for it before returning the value; {@link loads}, which cannot wait,
 * throws a SerializationError saying `whyNotSync`. Outside a decode it does nothing.
 *
 * @example
 * ```ts
 * import { dumps, loads, loadsAsync, pendingUntil, registerHandle } from "./reduction.ts";
 * class Later {
 *   ready = false;
 * }
 * registerHandle<Later, number>({
 *   name: "Later",
 *   module: import.meta.url,
 *   cls: Later,
 *   reduce: () => 0,
 *   rebuild: () => {
 *     const l = new Later();
 *     pendingUntil(Promise.resolve().then(() => (l.ready = true)), "Later needs await");
 *     return l;
 *   },
 * });
 * console.assert((await loadsAsync<Later>(dumps(new Later()))).ready);
 * try {
 *   loads(dumps(new Later()));
 * } catch (e) {
 *   console.assert((e as Error).message.includes("Later needs await"));
 * }
 * ```
 */
export function pendingUntil(ready: Promise<unknown>, whyNotSync: string): void {
  if (decodeDepth === 0) return;
  // A decode that fails (or cannot wait) drops the promise: its failure must not be unhandled.
  ready.catch(() => {});
  pendingReady.push(ready);
  pendingWhy = whyNotSync;
}

/**
 * Runs a decode `f` on behalf of {@link loadsAsync}: its value, or, when handles rebuilt in it
 * called {@link pendingUntil}, a promise of the value once their promises settle.
 */
export function settleWaits<T>(f: () => T): T | Promise<T> {
  const mark = pendingReady.length;
  waitingDepth++;
  try {
    const v = f();
    if (pendingReady.length === mark) return v;
    return Promise.all(pendingReady.splice(mark)).then(() => v);
  } finally {
    waitingDepth--;
  }
}
