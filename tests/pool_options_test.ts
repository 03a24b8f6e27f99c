// Pool options: `preload` makes whenReady() cover the task module's import (issue 18.8); an
// options object where one belongs, else a TypeError showing the right call (issue 18.1).
import assert from "node:assert/strict";
import { Pool } from "../lib/pool/pool.ts";
import { BrokenPoolError } from "../lib/core/errors.ts";
import { square } from "./fixtures/pool_tasks.ts";
import { hello } from "./fixtures/pool_slow_module.ts"; // takes 1 s to load

Deno.test("preload: whenReady() covers importing the task module; the first task does not pay for it", async () => {
  const t0 = performance.now();
  await using pool = new Pool({ processes: 1, preload: ["./fixtures/pool_slow_module.ts"] });
  await pool.whenReady();
  const ready = performance.now() - t0;
  assert.ok(ready >= 900, `ready after ${ready.toFixed(0)} ms`);
  const t1 = performance.now();
  assert.equal(await pool.apply(hello), "hi");
  const first = performance.now() - t1;
  assert.ok(first < 700, `the first task took ${first.toFixed(0)} ms`);
});

Deno.test("preload: a module that fails to load breaks the pool, naming it", async () => {
  await using pool = new Pool({
    processes: 1,
    preload: [new URL("./fixtures/pool_broken_module.ts", import.meta.url)],
  });
  const err = await pool.whenReady().catch((e) => e);
  assert.ok(err instanceof BrokenPoolError, String(err));
  assert.match(err.message, /preload import .* failed: .*does not load/);
});

Deno.test("options objects: a number or boolean where one belongs is a TypeError showing the right call", async () => {
  // deno-lint-ignore no-explicit-any
  const anyPool = Pool as any;
  assert.throws(() => new anyPool(2), /new Pool\(\{ processes: 4 \}\)/);
  await using pool = new Pool({ processes: 1 });
  // deno-lint-ignore no-explicit-any
  const p = pool as any;
  await assert.rejects(p.apply(square, [2], 5000), /apply\(fn, args, \{ timeout: 5000 \}\)/);
  assert.throws(() => p.applyAsync(square, [2], 5000), TypeError);
  await assert.rejects(p.map(square, [1, 2], true), /map\(fn, items, \{ chunksize: 100 \}\)/);
  assert.throws(() => p.imap(square, [1, 2], "3"), TypeError);
  // A chunksize alone stays valid, and timeouts are milliseconds.
  assert.deepEqual(await pool.map(square, [1, 2, 3], 2), [1, 4, 9]);
  assert.deepEqual(await pool.map(square, [1, 2], { chunksize: 1, timeout: 5000 }), [1, 4]);
});
