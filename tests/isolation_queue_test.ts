import assert from "node:assert/strict";
import { Process } from "../lib/process/process.ts";
import { Queue, SimpleQueue } from "../lib/queues/queues.ts";
import { __testHooks } from "../lib/process/os_spawn.ts";
import { range, sleep } from "./_helpers.ts";
import {
  drainThenTimeout,
  relayAsync,
  relaySync,
  relayUntil,
  takeSome,
  takeThenWait,
} from "./fixtures/isolation_queue_tasks.ts";
import { Event } from "../lib/sync/mod.ts";

/** Every item there is in `q` now (none is on its way). */
function drain(q: Queue<number>): number[] {
  const got: number[] = [];
  for (;;) {
    try {
      got.push(q.getNowait());
    } catch {
      return got;
    }
  }
}

/**
 * An isolated child relays items from `q` to `out` (getting them in batches); it is killed
 * mid-stream; then what it reported and what is left in `q` are each item once.
 */
async function killMidStream(
  target: typeof relaySync | typeof relayAsync,
  kill: (p: Process) => void,
  after: number,
  make: () => Queue<number> = () => new Queue<number>(),
): Promise<void> {
  // Enough that a loaded machine cannot relay them all before the kill lands.
  const n = 20_000, q = make(), out = new Queue<number>();
  for (const i of range(n)) await q.put(i);
  const p = new Process({ target, args: [q, out], isolation: "process" });
  p.start();
  const seen: number[] = [];
  while (seen.length < after) seen.push(await out.get({ timeout: 20_000 }));
  kill(p);
  await p.join(); // the server has put back what the child held
  seen.push(...drain(out));
  const left = drain(q);
  assert.ok(seen.length < n, `the child got only part of the stream (${seen.length} of ${n})`);
  assert.deepEqual([...seen, ...left].sort((a, b) => a - b), range(n));
}

Deno.test("isolation process: a getSync child killed with SIGKILL mid-stream: no item lost or doubled", async () => {
  // Killed at different points of the stream (batches end at 1, 3, 7, ... 511, 767, ...).
  for (let round = 0; round < 6; round++) {
    await killMidStream(relaySync, (p) => Deno.kill(p.pid!, "SIGKILL"), 300 + 97 * round);
  }
  await __testHooks.gone();
});

Deno.test("isolation process: a getSync child of a SimpleQueue killed with SIGKILL mid-stream: no item lost or doubled", async () => {
  for (let round = 0; round < 2; round++) {
    const kill = (p: Process) => Deno.kill(p.pid!, "SIGKILL");
    await killMidStream(relaySync, kill, 300 + 211 * round, () => new SimpleQueue<number>());
  }
  await __testHooks.gone();
});

Deno.test("isolation process: an async get child terminated mid-stream: no item lost or doubled", async () => {
  for (let round = 0; round < 6; round++) {
    await killMidStream(relayAsync, (p) => p.terminate(), 300 + 97 * round);
  }
  await __testHooks.gone();
});

/** A child takes 300 of 1000 items and exits: the items sent ahead to it go back to `q`. */
async function takeSomeOf(close: boolean): Promise<void> {
  const q = new Queue<number>(), out = new Queue<number>();
  for (const i of range(1000)) await q.put(i);
  if (close) q.close(); // no more puts; the items there are still to be got
  const p = new Process({ target: takeSome, args: [q, out, 300], isolation: "process" });
  p.start();
  await p.join();
  assert.equal(p.exitCode, 0);
  const seen = drain(out), left = drain(q);
  assert.equal(seen.length, 300);
  assert.deepEqual([...seen, ...left].sort((a, b) => a - b), range(1000));
  await __testHooks.gone();
}

Deno.test("isolation process: items sent ahead to a child that exits without getting them go back to the queue", async () => {
  await takeSomeOf(false);
});

Deno.test("isolation process: items sent ahead go back to a queue closed meanwhile", async () => {
  await takeSomeOf(true);
});

Deno.test("isolation process: items a child held go back to a bounded queue filled up meanwhile, at once", async () => {
  const q = new Queue<Uint8Array>({ maxsize: 100 }), out = new Queue<number>(), go = new Event();
  let put = 0;
  for (let i = 0; i < 100; i++, put++) await q.put(new Uint8Array([i]));
  const p = new Process({ target: takeThenWait, args: [q, out, 5, go], isolation: "process" });
  p.start();
  try {
    for (let i = 0; i < 5; i++) await out.get({ timeout: 20_000 });
    await sleep(300); // the items sent ahead are in the child
    for (;; put++) {
      try {
        q.putNowait(new Uint8Array([put]));
      } catch {
        break; // full again
      }
    }
    go.set();
    await p.join();
    let left = 0;
    while (q.qsize()) q.getNowait(), left++;
    assert.equal(5 + left, put, "every item the child did not get is back");
  } finally {
    go.set();
    await __testHooks.gone();
  }
});

Deno.test("isolation process: for await in an isolated child ends at close(); a get's timeout still works", async () => {
  const q = new Queue<number>(), empty = new Queue<number>(), out = new Queue<unknown>();
  const p = new Process({ target: drainThenTimeout, args: [q, empty, out], isolation: "process" });
  p.start();
  for (const i of range(2000)) await q.put(i);
  q.close();
  assert.deepEqual(await out.get({ timeout: 20_000 }), [2000, 1999 * 1000, "Empty"]);
  await p.join();
  assert.equal(p.exitCode, 0);
  await __testHooks.gone();
});

Deno.test("isolation process: big items are not sent ahead in bulk (a batch stays near 256 KiB)", async () => {
  const q = new Queue<Uint8Array>(), out = new Queue<number>(), go = new Event();
  for (let i = 0; i < 20; i++) await q.put(new Uint8Array(300 << 10));
  const p = new Process({ target: takeThenWait, args: [q, out, 5, go], isolation: "process" });
  p.start();
  for (let i = 0; i < 5; i++) assert.equal(await out.get({ timeout: 20_000 }), 300 << 10);
  // 5 got; at most one more may be on its way to the child.
  assert.ok(q.qsize() >= 14, `the child holds ${15 - q.qsize()} items it did not ask for`);
  go.set();
  await p.join();
  assert.equal(q.qsize(), 15); // what it held went back
  await __testHooks.gone();
});

Deno.test("isolation process: an item a child got but did not use before it was killed goes back (its get's own call carried no acknowledgement of it)", async () => {
  // Batches of 1, 2, 4 and 8 items: getting item 7, the first of a batch of 8, sends the call for
  // the next batch; the child then keeps item 7 without a call and is killed.
  const n = 100, q = new Queue<number>(), out = new Queue<number>();
  for (const i of range(n)) await q.put(i);
  const p = new Process({ target: relayUntil, args: [q, out, 7], isolation: "process" });
  p.start();
  const seen: number[] = [];
  while (seen.length < 7) seen.push(await out.get({ timeout: 20_000 }));
  await sleep(300); // it has item 7 now, and spins
  Deno.kill(p.pid!, "SIGKILL");
  await p.join();
  seen.push(...drain(out));
  assert.deepEqual(seen, range(7));
  assert.deepEqual(drain(q).sort((a, b) => a - b), range(n).slice(7));
  await __testHooks.gone();
});
