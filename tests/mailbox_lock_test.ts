// A mailbox's receive lock against a receiver terminated while it holds it: in its `match` (a
// zombie), or asleep in the middle of a long message.
import assert from "node:assert/strict";
import { alloc, DEAD_STEP_GRACE_MS, heap, release } from "../lib/core/heap.ts";
import { Mailbox } from "../lib/actor/mailbox.ts";
import { TimeoutError } from "../lib/core/errors.ts";
import {
  receiveSpinningInMatch,
  receiveUntilKilled,
  sendLongGated,
} from "./fixtures/mailbox_targets.ts";
import { A_ARRIVED, A_RELEASED, R_ARRIVED } from "./fixtures/ring_targets.ts";
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

Deno.test("a receiver killed in the middle of a long message: the next receive goes on at once and gets it whole", async () => {
  // The receiver sleeps with the receive lock parked, the message's first frame taken out of the
  // ring: the lock is taken over at once (not after the DEAD_STEP_GRACE_MS a `match` gets), and
  // the message, read durably, is finished by the next receiver rather than lost.
  const mb = new Mailbox<Uint8Array | number>();
  const ctl = alloc(32), i32 = heap().i32, c = ctl >> 2;
  for (let i = 0; i < 8; i++) Atomics.store(i32, c + i, 0);
  const sender = start(sendLongGated, mb, ctl, 300_000);
  let receiver: ReturnType<typeof start> | undefined;
  try {
    assert.ok(await until(() => Atomics.load(i32, c + A_ARRIVED) === 1), "no first frame");
    receiver = start(receiveUntilKilled, mb, ctl);
    assert.ok(await until(() => Atomics.load(i32, c + R_ARRIVED) === 1), "never mid-message");
    receiver.terminate();
    await receiver.join();
    Atomics.store(i32, c + A_RELEASED, 1); // the sender goes on with the rest, then sends 5
    Atomics.notify(i32, c + A_RELEASED);
    const t0 = performance.now();
    const long = await mb.receive({ timeout: 10_000 });
    const ms = performance.now() - t0;
    assert.ok(long instanceof Uint8Array, `the long message was lost: got ${long}`);
    assert.equal(long.length, 300_000);
    assert.ok(long.every((b) => b === 7), "the long message arrived torn");
    assert.ok(
      ms < DEAD_STEP_GRACE_MS - 500, // a takeover after the grace fails this (2026 ms without it)
      `the next receive waited ${ms.toFixed(0)} ms for the dead receiver's lock`,
    );
    assert.equal(await mb.receive({ timeout: 10_000 }), 5);
    await sender.join();
    assert.equal(sender.exitCode, 0);
    assert.equal(mb.size(), 0);
  } finally {
    Atomics.store(i32, c + A_RELEASED, 1);
    Atomics.notify(i32, c + A_RELEASED);
    if (receiver?.isAlive()) receiver.terminate();
    await receiver?.join();
    await sender.join();
    release(ctl);
  }
});
