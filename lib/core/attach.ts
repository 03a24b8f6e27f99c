/**
 * `Attaching`: how a handle's constructor is told to attach to an existing block instead of
 * making one. A handle class's public constructor makes a new object; the codec's `rebuild`
 * (and an attach by name) must build a handle on the block that was sent, through that same
 * constructor, without a public "attach" argument a user could misuse. So `rebuild` runs
 * `new X()` inside `attaching.run(off, ...)`, and the constructor takes the offset with
 * `attaching.take()`, which also clears it: a handle the constructor itself creates (a lock
 * inside a value) makes its own block. One instance per handle module, so that one module's
 * constructors never see another's offset.
 *
 * @module
 */

/** A value offered to the next constructor call that takes it (see the module doc). */
export class Attaching<T = number> {
  #value: T | undefined;

  /**
   * Runs `make` with `value` offered to the constructor it calls; cleared afterwards whether
   * or not it was taken.
   *
   * @example
   * ```ts
   * import { Attaching } from "./attach.ts";
   * const attaching = new Attaching();
   * class Handle {
   *   readonly off: number;
   *   constructor() {
   *     this.off = attaching.take() ?? 64; // 64: a fresh block, say
   *   }
   * }
   * console.assert(attaching.run(128, () => new Handle()).off === 128);
   * console.assert(new Handle().off === 64);
   * ```
   */
  run<R>(value: T, make: () => R): R {
    this.#value = value;
    try {
      return make();
    } finally {
      this.#value = undefined;
    }
  }

  /** The value offered, if any, once: later constructor calls see nothing. */
  take(): T | undefined {
    const v = this.#value;
    this.#value = undefined;
    return v;
  }

  /** Whether a value is offered (without taking it). */
  get offered(): boolean {
    return this.#value !== undefined;
  }
}
