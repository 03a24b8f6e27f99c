/**
 * `Yielder`: lets one macrotask pass — timers, I/O and other connections' wake-ups — in a loop
 * that would otherwise run as a chain of microtasks and starve them (a pool worker between
 * batches, a manager connection whose client keeps sending).
 *
 * Not `setTimeout(0)`: nested timers are clamped to 4 ms (2.3 ms on average, measured in a
 * worker on the 2-core VM); a message a MessageChannel sends to itself takes 12–17 µs there
 * (main thread and worker). The channel keeps the isolate alive while it is open, so its owner
 * closes it when done (`close()`), and it is opened again on the next `yield()`.
 *
 * @module
 */

/** Yields one macrotask at a time through a MessageChannel of its own. */
export class Yielder {
  #channel: MessageChannel | null = null;
  readonly #waiting: (() => void)[] = [];

  /**
   * Resolves after one macrotask.
   *
   * @example
   * ```ts
   * import { Yielder } from "./yield.ts";
   * const y = new Yielder();
   * let ticked = false;
   * setTimeout(() => (ticked = true), 0);
   * while (!ticked) await y.yield(); // a microtask loop would never see the timer
   * y.close();
   * ```
   */
  yield(): Promise<void> {
    if (!this.#channel) {
      this.#channel = new MessageChannel();
      this.#channel.port1.onmessage = () => this.#waiting.shift()?.();
    }
    const p = new Promise<void>((r) => this.#waiting.push(r));
    this.#channel.port2.postMessage(0);
    return p;
  }

  /** Closes the channel, so that it no longer keeps the isolate alive. */
  close(): void {
    if (!this.#channel) return;
    this.#channel.port1.close();
    this.#channel.port2.close();
    this.#channel = null;
  }
}
