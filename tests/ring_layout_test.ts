// Ring positions (core/ring/layout.ts): `advance`, `offsetOf` and `bytesUsed` at and around the
// wrap of both laps, written branch-light so that V8 has type feedback for the wrap before the
// ring first wraps.
import assert from "node:assert/strict";
import { advance, bytesUsed, offsetOf } from "../lib/core/ring/layout.ts";

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
