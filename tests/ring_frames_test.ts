// Ring frames (issue 24.3): a writer that lost its lock (a zombie: terminated, still running)
// must not write one more frame, and a reader must never trust a frame that would move R past W.
import assert from "node:assert/strict";
import { alloc, heap } from "../lib/core/heap.ts";
import { Ring, TIMEOUT } from "../lib/core/ring.ts";
import { Process } from "../lib/process/process.ts";
import {
  A_ARRIVED,
  A_RELEASED,
  gatedStreamWriter,
  GOT,
  LAST,
  postAfterSpin,
  writeQueuedAfterSpin,
} from "./fixtures/ring_targets.ts";
import { newRing, sleep, until } from "./_helpers.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("a writer terminated inside its streaming loop keeps the lock until its fence, and writes no frame after", async () => {
  const ring = newRing(16 << 10), ctl = alloc(64), i32 = heap().i32, c = ctl >> 2;
  const p = new Process({ target: gatedStreamWriter, args: [ring.base, ctl, 40 << 10, 7] });
  p.start();
  try {
    // It has published two frames of a 40 KiB message and stops inside its loop, holding the
    // write lock; it is then terminated (it goes on running: it is blocked in a sync call).
    assert.ok(await until(() => Atomics.load(i32, c + A_ARRIVED) >= 1), "writer never paused");
    p.terminate();
    await p.join();
    // A new writer waits: the dead one is in the middle of a step, not parked in a wait, and a
    // writer that took over now would write where the zombie goes on (before the write lock
    // was guarded, the zombie wrote its next frame over the new writer's and moved W back).
    const sent = ring.send(new TextEncoder().encode("after"));
    assert.equal(await Promise.race([sent, sleep(300).then(() => "waiting")]), "waiting");
    // The zombie goes on, meets its fence before its next frame, and gives the lock back.
    Atomics.store(i32, c + A_RELEASED, 1);
    Atomics.notify(i32, c + A_RELEASED);
    assert.equal(await Promise.race([sent, sleep(10_000).then(() => "still waiting")]), "ok");
    let discarded = 0;
    const got = ring.recvSync(text, { timeout: 2_000, onDiscard: () => discarded++ });
    assert.equal(got, "after");
    assert.equal(discarded, 1); // the zombie's half message
    assert.equal(ring.recvSync(text, { timeout: 0 }), TIMEOUT);
    assert.ok(ring.empty());
  } finally {
    Atomics.store(i32, c + A_RELEASED, 1 << 30);
    Atomics.notify(i32, c + A_RELEASED);
    if (p.isAlive()) p.terminate();
    await p.join();
  }
});

Deno.test("a reader drops a frame whose length would take it past W, and the ring goes on", async () => {
  const cap = 4096, ring = newRing(cap), u8 = heap().u8, dv = heap().dv;
  const data = ring.base + Ring.bytesFor(cap) - cap; // the data area follows the header
  for (const bad of [0x0fff_fff0, 100 | (1 << 28) | (1 << 29), 1 << 30 | 8]) {
    await ring.send(new TextEncoder().encode("victim!!"));
    const pos = u8.indexOf(0x76, data) - 4; // "v": the payload follows its 4-byte header
    dv.setInt32(pos, bad, true); // a length past W (or unknown flag bits)
    let discarded = 0;
    assert.equal(ring.recvSync(text, { timeout: 0, onDiscard: () => discarded++ }), TIMEOUT);
    assert.equal(discarded, 1);
    assert.ok(ring.empty(), "R stopped at W");
    u8.fill(0, data, data + cap);
    await ring.send(new TextEncoder().encode("next"));
    assert.equal(ring.tryRecv(text), "next");
  }
});

/** Nobody holds the ring's write lock: a new message goes in within `ms` and comes back out. */
async function assertWritable(ring: Ring, ms: number): Promise<void> {
  const sent = ring.send(new TextEncoder().encode("after"));
  assert.equal(await Promise.race([sent, sleep(ms).then(() => "stuck")]), "ok");
  assert.equal(ring.recvSync(text, { timeout: 1_000 }), "after");
}

Deno.test("a zombie whose post meets its fence gives the write lock back", async () => {
  // The post takes the free write lock, then its step meets the fence and throws. The lock is
  // guarded (taken over only from a parked holder), so a zombie that went back to its event
  // loop still holding it would stop every writer of the ring for good: it gives it back.
  const ring = newRing(4096), ctl = alloc(64), i32 = heap().i32, c = ctl >> 2;
  const p = new Process({ target: postAfterSpin, args: [ring.base, ctl, 300] });
  p.start();
  try {
    assert.ok(await until(() => Atomics.load(i32, c + A_ARRIVED) === 1), "never arrived");
    p.terminate();
    await p.join(); // it still spins, then posts
    assert.ok(await until(() => Atomics.load(i32, c + GOT) === 1), "the zombie never posted");
    await assertWritable(ring, 5_000);
  } finally {
    if (p.isAlive()) p.terminate();
    await p.join();
  }
});

for (const how of ["post", "sendSync"] as const) {
  Deno.test(`a zombie's ${how} that first writes its queued messages and meets its fence gives the write lock back`, async () => {
    // Its earlier posts did not fit: they wait in its outbox, and its write takes them first
    // (post: `#flushSome`; sendSync: its drain), the write lock taken by plain code. The first
    // step meets the fence; the lock must not stay with the zombie, which runs on (its locks
    // are reaped only once its thread ends).
    const ring = newRing(4096), ctl = alloc(64), i32 = heap().i32, c = ctl >> 2;
    const p = new Process({
      target: writeQueuedAfterSpin,
      args: [ring.base, ctl, 600, 100, how, 1200],
    });
    p.start();
    try {
      assert.ok(await until(() => Atomics.load(i32, c + A_ARRIVED) === 1), "never arrived");
      p.terminate();
      await p.join(); // it still spins, then writes
      // Room for its queued messages, so that its write step runs (and meets the fence).
      let before = 0;
      while (ring.recvSync(text, { timeout: 0 }) !== TIMEOUT) before++;
      assert.ok(before > 0 && before < 100, `${before} of its 100 messages were in the ring`);
      assert.equal(Atomics.load(i32, c + GOT), 0, "the zombie wrote before the ring had room");
      assert.ok(await until(() => Atomics.load(i32, c + GOT) === 1), "the zombie never wrote");
      assert.equal(ring.recvSync(text, { timeout: 0 }), TIMEOUT, "a fenced zombie wrote");
      await assertWritable(ring, 800); // before the zombie's thread ends and its locks are reaped
    } finally {
      if (p.isAlive()) p.terminate();
      await p.join();
      await until(() => Atomics.load(i32, c + LAST) === 1); // its thread done spinning
    }
  });
}
