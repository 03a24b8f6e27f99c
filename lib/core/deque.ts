/**
 * `Deque`: a first-in-first-out list with O(1) `push` and `shift` (and `pop` at the back), for the
 * queues the library keeps in one isolate — a pool's tasks per worker and its task queue, an
 * executor's pending calls, `asCompleted`'s finished futures, a manager's served queue.
 *
 * Why not `Array.prototype.shift`: it moves every element, O(n) per call once V8's backing store
 * is large, so draining 100,000 queued tasks costs seconds. Here the front moves by an index;
 * the array is cleared when it empties and compacted once more than half of it (and over 1024
 * slots) is behind the front, so memory stays bounded by twice the live items. A taken slot is
 * cleared at once, so a consumed item is not kept alive.
 *
 * @module
 */

/** A FIFO list with O(1) `push`/`shift` (see the module doc). */
export class Deque<T> {
  #items: T[] = [];
  #head = 0;

  /**
   * How many items it holds.
   *
   * @example
   * ```ts
   * import { Deque } from "./deque.ts";
   * const d = new Deque<number>();
   * d.push(1);
   * d.push(2);
   * console.assert(d.length === 2);
   * console.assert(d.shift() === 1 && d.at(0) === 2);
   * ```
   */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Adds `item` at the back. */
  push(item: T): void {
    this.#items.push(item);
  }

  /** Takes the front item (`undefined` when empty). */
  shift(): T | undefined {
    const items = this.#items;
    if (this.#head === items.length) return undefined;
    const item = items[this.#head];
    items[this.#head++] = undefined as T;
    if (this.#head === items.length) {
      items.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Takes the back item (`undefined` when empty). */
  pop(): T | undefined {
    if (this.#head === this.#items.length) return undefined;
    const item = this.#items.pop();
    if (this.#head === this.#items.length) this.#items.length = this.#head = 0;
    return item;
  }

  /** The item `i` places from the front (`undefined` past the end), without taking it. */
  at(i: number): T | undefined {
    return i < this.length ? this.#items[this.#head + i] : undefined;
  }

  /** Empties it. */
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }

  /** The items, front first. */
  *[Symbol.iterator](): Iterator<T> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i];
  }
}
