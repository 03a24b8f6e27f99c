/**
 * The registry of handle kinds (`registerHandle`): how each handle class reduces to a plain
 * descriptor and rebuilds, by class and by name, and which module registered each kind, so that
 * a worker that has not loaded that module can import it before decoding (see `reduction.ts`).
 *
 * @module
 */

/**
 * How one kind of handle crosses a boundary: `reduce` turns a live object into a plain descriptor
 * (made of numbers, strings, booleans, arrays and plain objects); `rebuild` makes a live object
 * from it on the other side. `reduce` is called once per send: a handle that counts references
 * should take one there, and `rebuild` adopt it.
 */
export interface HandleKind<T extends object, D> {
  /** A name unique among handle kinds, e.g. `"Lock"`. */
  readonly name: string;
  /** The class whose instances (and subclasses' instances, unless registered themselves) this covers. */
  // deno-lint-ignore no-explicit-any
  readonly cls: abstract new (...args: any[]) => T;
  /** Live object to descriptor. */
  reduce(obj: T): D;
  /** Descriptor to live object. */
  rebuild(desc: D): T;
  /**
   * The module that registers the kind (its `import.meta.url`): a worker imports it before
   * decoding a message holding such a handle. Found from the call stack when left out, which
   * costs ~0.3 ms per registration (stack traces are source-mapped): the library passes it.
   */
  readonly module?: string;
  /**
   * Undoes a `reduce` whose message is not sent after all (its encoding failed further on, or
   * the error field holding it was left out): a kind whose `reduce` takes a reference releases
   * it here. Left out, nothing is undone.
   */
  discard?(desc: D): void;
}

// deno-lint-ignore no-explicit-any
export type AnyKind = HandleKind<any, any>;
export const kindsByName = new Map<string, AnyKind>();
const kindsByClass = new Map<unknown, AnyKind>();
const kindList: AnyKind[] = [];

/**
 * Registers a handle kind with the codec. Call it once, at module level, next to the class.
 *
 * @example
 * ```ts
 * import { dumps, loads, registerHandle } from "jsr:@denomp/multiprocessing";
 * class Token {
 *   constructor(readonly id: number) {}
 * }
 * registerHandle({ name: "Token", cls: Token, reduce: (t) => t.id, rebuild: (id: number) => new Token(id) });
 * const back = loads<Token>(dumps(new Token(7)));
 * console.assert(back instanceof Token && back.id === 7);
 * ```
 */
export function registerHandle<T extends object, D>(kind: HandleKind<T, D>): void {
  const old = kindsByName.get(kind.name);
  if (old && old.cls !== kind.cls) {
    throw new Error(`a handle kind named '${kind.name}' is already registered`);
  }
  kindsByName.set(kind.name, kind);
  kindsByClass.set(kind.cls, kind);
  if (!old) kindList.push(kind);
  const from = kind.module ?? registrant();
  if (from) moduleOfKind.set(kind.name, from);
}

/**
 * The method by which a FIFO queue takes back items a consumer took and could not deliver (an
 * isolated child that died holding them: process/os_agent.ts), past `maxsize` and after
 * `close()`, since they were in the queue before. Returns false when the queue's memory has
 * already been given back (closed and drained): the items then have nowhere to go. A symbol in
 * core because lib/process does not import lib/queues.
 */
export const PUT_BACK: unique symbol = Symbol("denomp.putBack");

/** Where each kind was registered: a worker imports these modules before decoding its arguments. */
export const moduleOfKind = new Map<string, string>();
export let kindSink: Set<string> | undefined;

function registrant(): string | undefined {
  for (const line of (new Error().stack ?? "").split("\n").slice(1)) {
    const m = line.match(/((?:file|https?|jsr|npm):[^\s()]+?):\d+:\d+\)?\s*$/);
    if (m && m[1] !== import.meta.url) return m[1];
  }
  return undefined;
}

/**
 * Runs `encode` and returns, with its result, the modules that registered the handle kinds it
 * encoded. A worker imports exactly those before decoding, instead of the whole library: start-up
 * time matters (W1-spawn), and most targets carry few kinds of handle.
 */
export function withHandleModules<T>(encode: () => T): { result: T; modules: string[] } {
  const outer = kindSink;
  const sink = (kindSink = new Set());
  try {
    const result = encode();
    const modules = new Set<string>();
    for (const k of sink) {
      const m = moduleOfKind.get(k);
      if (m) modules.add(m);
    }
    return { result, modules: [...modules] };
  } finally {
    kindSink = outer;
    if (outer) { for (const k of sink) outer.add(k); }
  }
}

export function kindOf(v: object): AnyKind | undefined {
  const exact = kindsByClass.get(v.constructor);
  if (exact) return exact;
  // Most specific registered superclass: the one registered last among matches is not reliable,
  // so pick the match whose prototype is nearest.
  let best: AnyKind | undefined, bestDepth = Infinity;
  for (const k of kindList) {
    if (!(v instanceof k.cls)) continue;
    let d = 0;
    for (
      let p = Object.getPrototypeOf(v);
      p && p !== k.cls.prototype;
      p = Object.getPrototypeOf(p)
    ) d++;
    if (d < bestDepth) (best = k), (bestDepth = d);
  }
  return best;
}
