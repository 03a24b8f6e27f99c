// How pool errors read: one stack, printed once (issue 18.7); a pool started at a module's top
// level gets the `if (import.meta.main)` hint (issue 18.2).
import assert from "node:assert/strict";
import { Pool } from "../lib/pool/pool.ts";
import { RemoteError } from "../lib/core/errors.ts";
import { runProgram } from "./_program.ts";
import { fail } from "./fixtures/pool_tasks.ts";

const fixture = (name: string) => new URL(`./fixtures/${name}.ts`, import.meta.url).pathname;
const count = (s: string, part: string) => s.split(part).length - 1;

Deno.test("a task error shows its stack once: console.log(e) and e.cause", async () => {
  await using pool = new Pool({ processes: 1 });
  const e = await pool.apply(fail, ["boom"]).catch((e) => e);
  const shown = Deno.inspect(e);
  assert.equal(count(shown, "at fail"), 1, shown);
  assert.ok(!shown.includes("undefined"), shown); // no `[cause]: undefined`
  assert.ok(e.cause instanceof RemoteError);
  assert.match(e.cause.remoteStack, /at fail/); // kept, not printed again
  const cause = Deno.inspect(e.cause);
  assert.match(cause, /PoolWorker-/);
  assert.ok(!cause.includes("at fail") && !cause.includes("undefined"), cause);
});

Deno.test("an uncaught task error prints its stack once", async () => {
  const r = await runProgram(fixture("pool_uncaught"));
  assert.notEqual(r.code, 0);
  assert.equal(count(r.err, "at fail"), 1, r.err);
  assert.match(r.err, /TypeError: boom/);
});

Deno.test({
  name: "a pool started at a module's top level gets the `if (import.meta.main)` hint",
  fn: async () => {
    const r = await runProgram(fixture("pool_unguarded"));
    assert.notEqual(r.code, 0);
    assert.match(r.err, /if \(import\.meta\.main\)/);
    assert.doesNotMatch(r.err, /daemonic/);
  },
});
