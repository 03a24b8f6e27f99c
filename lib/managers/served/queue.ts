/**
 * A manager's served `Queue` (Python's `queue.Queue` behind a proxy): bounded, with blocking
 * `put`/`get` and their timeouts as waits in the server's isolate.
 *
 * @module
 */

import { Deque } from "../../core/deque.ts";
import { caller } from "./caller.ts";
import { park, timeoutOf, Waiter } from "./sync.ts";
import { Empty, Full, ValueError } from "../../core/errors.ts";

// ---------------------------------------------------------------------------------------------
// Queue

/** Options of a served put/get, as the proxy sends them. */
export interface QueueArgs {
  block?: boolean;
  timeout?: number;
}

/** A served `Queue` / `JoinableQueue` (Python's `queue.Queue`, which has both). */
export class ServedQueue {
  readonly #items = new Deque<unknown>();
  #getters: Waiter<unknown>[] = [];
  #putters: Waiter<void>[] = [];
  #pendingPuts = new Map<Waiter<void>, unknown>();
  #joiners: Waiter<void>[] = [];
  #unfinished = 0;
  readonly #maxsize: number;

  constructor(maxsize: unknown = 0) {
    if (typeof maxsize !== "number" || !Number.isInteger(maxsize)) {
      throw new TypeError(`maxsize must be an integer: current value is ${maxsize}`);
    }
    this.#maxsize = maxsize;
  }

  #size(): number {
    return this.#items.length;
  }

  #push(item: unknown): void {
    this.#unfinished++;
    // A waiting getter takes the item at once (the queue is empty when getters wait).
    for (let w = this.#getters[0]; w; w = this.#getters[0]) if (w.grant(item)) return;
    this.#items.push(item);
  }

  #shift(): unknown {
    const item = this.#items.shift();
    // Room now: the first waiting putter's item goes in.
    for (let w = this.#putters[0]; w; w = this.#putters[0]) {
      const pending = this.#pendingPuts.get(w);
      if (w.grant()) {
        this.#pendingPuts.delete(w);
        this.#push(pending);
        break;
      }
    }
    return item;
  }

  put(item: unknown, o?: QueueArgs): void | Promise<void> {
    const t = timeoutOf(o);
    if (this.#maxsize <= 0 || this.#size() < this.#maxsize) return this.#push(item);
    if (t === 0) throw new Full();
    const c = caller(), w = new Waiter<void>(c.client, c.thread);
    this.#pendingPuts.set(w, item);
    w.arm(this.#putters, t, c.signal(), () => {
      throw new Full();
    });
    return w.promise.finally(() => this.#pendingPuts.delete(w));
  }

  get(o?: QueueArgs): unknown {
    const t = timeoutOf(o);
    if (this.#size() > 0) return this.#shift();
    if (t === 0) throw new Empty();
    return park(this.#getters, t, () => {
      throw new Empty();
    });
  }

  putNowait(item: unknown): void | Promise<void> {
    return this.put(item, { block: false });
  }

  getNowait(): unknown {
    return this.get({ block: false });
  }

  qsize(): number {
    return this.#size();
  }

  empty(): boolean {
    return this.#size() === 0;
  }

  full(): boolean {
    return this.#maxsize > 0 && this.#size() >= this.#maxsize;
  }

  taskDone(): void {
    if (this.#unfinished <= 0) throw new ValueError("task_done() called too many times");
    if (--this.#unfinished === 0) { for (const w of [...this.#joiners]) w.grant(); }
  }

  join(): void | Promise<void> {
    if (this.#unfinished === 0) return;
    return park(this.#joiners, undefined, () => {});
  }
}
