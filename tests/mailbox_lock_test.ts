// A mailbox's receive lock against a receiver terminated while it holds it.
import assert from "node:assert/strict";
import { alloc, heap, release } from "../lib/core/heap.ts";
import { Mailbox } from "../lib/actor/mailbox.ts";
import { TimeoutError } from "../lib/core/errors.ts";
import { receiveSpinningInMatch } from "./fixtures/mailbox_targets.ts";
import { starter, until } from "./_helpers.ts";

const start = starter(new URL("./fixtures/mailbox_targets.ts", import.meta.url));

Deno.test("a mailbox's receive lock is not taken over from a dead receiver still in its match: each message once", async () => {
  // A receiver terminated inside its `match` runs on (Deno stops it only at an await), the
  // receive lock held. Before, the next receive took the lock over at once, while the zombie was
  // still inside (here no message was lost, so the wait is what is checked). Now it waits until
  // the zombie meets its fence and lets go.
  const mb = new Mailbox<number>();
  for (const n of [1, 2, 3]) await mb.send(n);
  const ctl = alloc(4), i32 = heap().i32, c = ctl >> 2;
  Atomics.store(i32, c, 0);
  const zombie = start(receiveSpinningInMatch, mb, ctl, 600);
  try {
    assert.ok(await until(() => Atomics.load(i32, c) === 1), "never reached its match");
    zombie.terminate();
    await zombie.join(); // its thread still spins in `match`, the receive lock held
    let got: number | undefined;
    const three = mb.receive({ match: (x) => x === 3, timeout: 20_000 }).then((x) => got = x);
    await new Promise((r) => setTimeout(r, 200));
    if (Atomics.load(i32, c) === 1) {
      assert.equal(got, undefined, "the receive took the lock from a receiver still inside it");
    }
    assert.ok(await until(() => Atomics.load(i32, c) === 2), "the zombie never went on");
    assert.equal(await three, 3);
    const rest: number[] = [];
    for (;;) {
      try {
        rest.push(await mb.receive({ timeout: 0 }));
      } catch (e) {
        if (e instanceof TimeoutError) break;
        throw e;
      }
    }
    assert.deepEqual(rest.sort(), [1, 2], `the mailbox then gave ${JSON.stringify(rest)}`);
  } finally {
    if (zombie.isAlive()) zombie.terminate();
    await zombie.join();
    release(ctl);
  }
});
