// Ring positions (core/ring/layout.ts): `advance`, `offsetOf` and `bytesUsed` at and around the
// wrap of both laps, written branch-light so that V8 has type feedback for the wrap before the
// ring first wraps; and `tryRecvMany`'s decode errors, its loop being a method of its own.
import assert from "node:assert/strict";
import { advance, bytesUsed, offsetOf } from "../lib/core/ring/layout.ts";
import { Ring } from "../lib/core/ring.ts";
import { alloc } from "../lib/core/heap.ts";

Deno.test("ring layout: positions wrap at twice the capacity, offsets at the capacity", () => {
  for (const cap of [256, 1000, 1 << 20]) {
    for (const p of [0, 4, cap - 4, cap, cap + 4, 2 * cap - 4]) {
      for (const n of [0, 4, cap - p % cap]) {
        const q = p + n;
        assert.equal(
          advance(p, n, cap),
          q >= 2 * cap ? q - 2 * cap : q,
          `advance ${p} ${n} ${cap}`,
        );
      }
      assert.equal(offsetOf(p, cap), p >= cap ? p - cap : p, `offsetOf ${p} ${cap}`);
      for (const w of [0, 4, cap, 2 * cap - 4]) {
        const d = w - p;
        assert.equal(bytesUsed(w, p, cap), d < 0 ? d + 2 * cap : d, `bytesUsed ${w} ${p} ${cap}`);
      }
    }
  }
});

Deno.test("ring tryRecvMany: a record that fails to decode stops the batch before it, and is consumed and thrown only into an empty out", () => {
  const bytes = Ring.bytesFor(4096), ring = new Ring(Ring.init(alloc(bytes), bytes));
  for (const b of [1, 2, 99, 4]) ring.sendSync(new Uint8Array([b]));
  const decode = (d: Uint8Array, at: number) => {
    if (d[at] === 99) throw new Error("bad record");
    return d[at];
  };
  const out: number[] = [];
  assert.equal(ring.tryRecvMany(decode, 10, out), 2); // stops before the bad one
  assert.deepEqual(out, [1, 2]);
  // With items in `out` already (a getMany's first item), it is left for the next call...
  assert.equal(ring.tryRecvMany(decode, 10, out), 0);
  // ... which, with nothing got yet, consumes it and throws.
  assert.throws(() => ring.tryRecvMany(decode, 10, []), /bad record/);
  assert.equal(ring.tryRecvMany(decode, 10, out), 1);
  assert.deepEqual(out, [1, 2, 4]);
  assert.equal(ring.tryRecvMany(decode, 10, out), 0);
  Ring.dispose(ring.base);
});
