// Ring wake-ups (issue 24.2): a notifier must never lose a sleeper. The sleeper count replaced
// an "asleep" flag that notifiers cleared: a notifier holding a stale "asleep" could clear the
// flag a new sleeper had just raised, and the next notifier then skipped the notify for good.
import assert from "node:assert/strict";
import { alloc, heap } from "../lib/core/heap.ts";
import type { Process } from "../lib/process/process.ts";
import {
  A_ARRIVED,
  A_RELEASED,
  END,
  gatedReader,
  gatedWriter,
  GOT,
  LAST,
  R_ARRIVED,
  R_RELEASED,
  stressReader,
  stressWriter,
} from "./fixtures/ring_targets.ts";
import { newRing, sleep, starter, until } from "./_helpers.ts";

const start = starter(new URL("./fixtures/ring_targets.ts", import.meta.url));

Deno.test("a notifier that saw a sleeper and was delayed cannot hide a later sleeper from the next notifier", async () => {
  const ring = newRing(1024), ctl = alloc(64), i32 = heap().i32, c = ctl >> 2;
  const word = (i: number) => Atomics.load(i32, c + i);
  const release = (i: number, v: number) => {
    Atomics.store(i32, c + i, v);
    Atomics.notify(i32, c + i);
  };
  const reader = start(gatedReader, ring.base, ctl);
  let writer: Process | null = null;
  try {
    // The reader announces itself and stops just before it sleeps.
    assert.ok(await until(() => word(R_ARRIVED) >= 1), "the reader never got ready to sleep");
    // Writer A publishes message 1, sees the reader announced, and stops before it notifies.
    writer = start(gatedWriter, ring.base, ctl, 1);
    assert.ok(await until(() => word(A_ARRIVED) >= 1), "writer A never reached its notify");
    // The reader goes on: W moved, so it reads message 1 and gets ready to sleep again.
    release(R_RELEASED, 1);
    assert.ok(await until(() => word(GOT) >= 1 && word(R_ARRIVED) >= 2), "message 1 not read");
    // A goes on now (the old code cleared the flag the reader had just raised) and ends.
    release(A_RELEASED, 1);
    await writer.join();
    // The reader really sleeps; then writer B (this thread) publishes message 2.
    release(R_RELEASED, 1 << 30);
    await sleep(300);
    await ring.send(new Uint8Array([2]));
    const woke = await until(() => word(GOT) >= 2, 3_000);
    if (!woke) ring.wakeReaders(); // let the reader finish either way
    assert.ok(woke, "the reader slept through message 2: a lost wake-up");
    assert.equal(word(LAST), 2);
    await ring.send(new Uint8Array([END]));
    assert.ok(await until(() => word(LAST) === END));
    await reader.join();
    assert.equal(reader.exitCode, 0);
  } finally {
    release(R_RELEASED, 1 << 30);
    release(A_RELEASED, 1 << 30);
    for (const p of [reader, writer]) {
      if (p?.isAlive()) p.terminate();
      await p?.join();
    }
  }
});

Deno.test("stress: 3 writers and 3 readers (blocking and async) on a small ring never hang", async () => {
  // A 512-byte ring holds a few messages: writers and readers both sleep all the time, several
  // on each word, so every wake-up matters. Untimed waits: a lost one is a hang.
  for (const round of [0, 1]) {
    const ring = newRing(512), ctl = alloc(64), i32 = heap().i32, c = ctl >> 2;
    const n = 5_000, sync = (i: number) => (i + round) % 2 === 0;
    const ps = [0, 1, 2].flatMap((i) => [
      start(stressWriter, ring.base, n, 24 + 8 * i, sync(i)),
      start(stressReader, ring.base, ctl, n, !sync(i)),
    ]);
    try {
      const done = await until(() => Atomics.load(i32, c + GOT) === 3 * n, 30_000);
      assert.ok(done, `round ${round}: stuck after ${Atomics.load(i32, c + GOT)} of ${3 * n}`);
      for (const p of ps) {
        await p.join();
        assert.equal(p.exitCode, 0);
      }
      assert.ok(ring.empty());
    } finally {
      for (const p of ps) {
        if (p.isAlive()) p.terminate();
        await p.join();
      }
    }
  }
});
