// The actor toolkit of issue 22: calls with a deadline, names, timers, process groups and
// state machines (become/stash), each as Erlang and Akka users know them.
import assert from "node:assert/strict";
import { spawn } from "../lib/actor.ts";
import { TimeoutError } from "../lib/errors.ts";
import { Counter } from "./fixtures/actor_targets.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("callWith({ timeout }): TimeoutError names actor and method; the late reply is dropped", async () => {
  const c = await spawn(Counter, { name: "slowpoke" });
  try {
    const err = await c.callWith({ timeout: 50 }).slowInc(1, 400).then(
      () => assert.fail("the call did not time out"),
      (e) => e,
    );
    assert.ok(err instanceof TimeoutError, String(err));
    assert.match(err.message, /actor slowpoke did not reply to slowInc\(\) within 50 ms/);
    // The method still ran; its reply, arriving after the deadline, settles nothing: the next
    // calls get their own replies.
    assert.equal(await c.call.get(), 1);
    assert.equal(await c.callWith({ timeout: 5000 }).inc(2), 3);
    await sleep(20);
    assert.equal(await c.call.get(), 3);
    // The options object is checked: a number where it belongs is a TypeError.
    assert.throws(() => c.callWith(50 as unknown as { timeout: number }), TypeError);
  } finally {
    await c.stop();
  }
});
