// Actors with isolation "process": the actor runs in a deno OS process of its own (see
// lib/actor/isolated.ts). Every test ends with no child OS process left.
import assert from "node:assert/strict";
import { spawn } from "../lib/actor/spawn.ts";
import { link, monitor, unlink } from "../lib/actor/link.ts";
import { ActorExited } from "../lib/actor/exit.ts";
import type { ActorRef } from "../lib/actor/ref.ts";
import { Supervisor } from "../lib/actor/supervisor.ts";
import { whereis } from "../lib/actor/registry.ts";
import { Process } from "../lib/process/process.ts";
import { SharedMemory } from "../lib/memory/shared_memory.ts";
import { ProcessError, SerializationError, ValueError } from "../lib/core/errors.ts";
import { __testHooks } from "../lib/process/os_spawn.ts";
import { gone, TIMED_OUT, until, within } from "./_helpers.ts";
import { Box, callFromThread, killFromThread } from "./fixtures/isolation_actors.ts";

/** Checks that the actor of `ref` runs in an OS process of its own, whose pid is `ref.pid`. */
async function inOwnProcess(ref: ActorRef<Box>): Promise<void> {
  assert.notEqual(ref.pid, Deno.pid);
  assert.equal(await ref.call.where(), ref.pid);
}

/** Spawns an isolated `Box`, runs `body`, and makes sure its OS process is gone after. */
async function withActor(
  body: (ref: ActorRef<Box>) => Promise<void>,
  options: { maxMemoryMb?: number } = {},
): Promise<void> {
  const ref = await spawn(Box, { args: [5], isolation: "process", ...options });
  try {
    await inOwnProcess(ref);
    await body(ref);
  } finally {
    ref.kill();
    await __testHooks.gone();
  }
}

Deno.test("isolated actor: call, tell and ask round trips; it runs in its own OS process, ref.pid", async () => {
  await withActor(async (ref) => {
    assert.notEqual(ref.pid, Deno.pid);
    assert.equal(await ref.call.where(), ref.pid);
    assert.equal(await ref.call.inc(2), 7);
    await ref.tell({ add: 10 });
    assert.equal(await ref.ask({ total: true }), 17);
    // A crash in a call rejects with its error, as for a thread actor.
    await assert.rejects(ref.call.crash("no"), (e: Error) => e.name === "TypeError");
    assert.ok(await within(monitor(ref), 10_000) instanceof TypeError);
    await assert.rejects(ref.call.get(), ActorExited);
  });
});

Deno.test("isolated actor: a thread worker of the parent calls it through the ordinary ref", async () => {
  await withActor(async (ref) => {
    const p = new Process({ target: callFromThread, args: [ref, 3] });
    p.start();
    await p.join();
    assert.equal(p.exitCode, 0);
    assert.equal(await ref.call.get(), 8);
    assert.equal(await ref.stop(), "normal");
  });
});

Deno.test("isolated actor: registered under a name, found with whereis; the name is free once it stops", async () => {
  const ref = await spawn(Box, { name: "iso-box", register: true, isolation: "process" });
  try {
    await inOwnProcess(whereis<Box>("iso-box")!);
    assert.equal(await whereis<Box>("iso-box")!.call.inc(1), 1);
    assert.equal(await ref.stop(), "normal");
    assert.ok(await until(() => whereis("iso-box") === undefined, 5000));
  } finally {
    ref.kill();
    await __testHooks.gone();
  }
});

Deno.test("isolated actor: kill() stops a handler in while (true) {}; its OS process is gone within 1 s", async () => {
  await withActor(async (ref) => {
    const pid = ref.pid;
    const down = monitor(ref);
    const spinning = ref.call.spin();
    spinning.catch(() => {});
    assert.equal(await within(spinning, 300), TIMED_OUT); // it is burning its CPU
    const t0 = performance.now();
    assert.equal(ref.kill(), true);
    assert.ok(await until(() => gone(pid), 1000), "the OS process is gone within 1 s");
    assert.ok(performance.now() - t0 < 1000);
    assert.equal(await within(down, 5000), "killed");
    await assert.rejects(
      spinning,
      (e: unknown) => e instanceof ActorExited && e.reason === "killed",
    );
    assert.equal(ref.isAlive(), false);
  });
});

Deno.test("isolated actor: kill() from a thread worker that did not spawn it stops a runaway handler too", async () => {
  await withActor(async (ref) => {
    const pid = ref.pid;
    const down = monitor(ref);
    const spinning = ref.call.spin();
    spinning.catch(() => {});
    assert.equal(await within(spinning, 300), TIMED_OUT);
    const p = new Process({ target: killFromThread, args: [ref] });
    p.start();
    await p.join();
    assert.equal(p.exitCode, 0);
    assert.equal(await within(down, 5000), "killed");
    assert.ok(await until(() => gone(pid), 2000), "the OS process is gone");
  });
});

Deno.test("isolated actor: links work both ways with a thread actor; unlink undoes them", async () => {
  const thread = await spawn(Box), other = await spawn(Box);
  try {
    await withActor(async (iso) => {
      // The isolated actor crashes: the thread actor linked to it stops with its reason.
      await link(thread, iso);
      const threadDown = monitor(thread);
      await assert.rejects(iso.call.crash("iso"), TypeError);
      const r = await within(threadDown, 10_000);
      assert.ok(r instanceof TypeError && r.message === "iso", String(r));
    });
    await withActor(async (iso) => {
      // A thread actor crashes: the isolated actor linked to it stops with that reason.
      await link(iso, other);
      const isoDown = monitor(iso);
      await assert.rejects(other.call.crash("thread"), TypeError);
      const r = await within(isoDown, 10_000);
      assert.ok(r instanceof TypeError && r.message === "thread", String(r));
    });
    const third = await spawn(Box);
    await withActor(async (iso) => {
      await link(iso, third);
      await unlink(iso, third);
      await assert.rejects(third.call.crash("alone"), TypeError);
      assert.equal(await iso.call.inc(1), 6); // unlinked: it goes on
    });
  } finally {
    thread.kill();
    other.kill();
  }
});

Deno.test("isolated actor: a supervisor restarts a child killed with SIGKILL from outside", async () => {
  const sup = await new Supervisor({
    children: [{
      id: "box",
      start: () => spawn(Box, { args: [1], isolation: "process" }),
      shutdown: 300,
    }],
  }).start();
  try {
    const first = sup.get("box") as ActorRef<Box>;
    assert.equal(await first.call.inc(1), 2);
    const pid = first.pid;
    assert.notEqual(pid, Deno.pid);
    const down = monitor(first);
    Deno.kill(pid, "SIGKILL");
    assert.equal(await within(down, 10_000), "killed");
    assert.ok(
      await until(() => {
        const now = sup.get("box") as ActorRef<Box> | undefined;
        return now !== undefined && !now.equals(first);
      }),
    );
    const second = await sup.whenRunning("box", { timeout: 20_000 }) as ActorRef<Box>;
    assert.notEqual(second.pid, pid);
    assert.equal(await second.call.inc(1), 2); // a fresh instance
    // Its shutdown kills a runaway handler once the child's `shutdown` ms have passed.
    second.call.spin().catch(() => {});
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    assert.equal(await within(sup.stop(), 5000), "shutdown");
    assert.ok(await until(() => gone(second.pid), 1000), "its OS process is gone");
    assert.ok(performance.now() - t0 < 2000);
  } finally {
    await sup.stop();
    await __testHooks.gone();
  }
});

Deno.test("isolated actor: maxMemoryMb caps it; running out stops it with a reason naming the limit", async () => {
  await withActor(async (ref) => {
    const down = monitor(ref);
    await assert.rejects(
      ref.call.hog(),
      (e: unknown) => e instanceof ActorExited && /maxMemoryMb is 128/.test(String(e.message)),
    );
    const reason = await within(down, 20_000);
    assert.ok(reason instanceof ProcessError, String(reason));
    assert.match(reason.message, /ran out of memory: maxMemoryMb is 128/);
    // The parent lives on, and so do other actors.
    const other = await spawn(Box, { isolation: "process" });
    assert.equal(await other.call.inc(1), 1);
    await other.stop();
  }, { maxMemoryMb: 128 });
});

Deno.test("isolated actor: a message holding a SharedMemory is refused with a SerializationError naming it; bad options too", async () => {
  const shm = new SharedMemory({ size: 16 });
  try {
    await withActor(async (ref) => {
      assert.throws(
        () => void ref.tell({ add: 1, q: shm } as unknown as { add: number }),
        (e: unknown) =>
          e instanceof SerializationError && /SharedMemory/.test(e.message) &&
          /message\.q/.test(e.path),
      );
      await assert.rejects(
        ref.callWith({ timeout: 10_000 }).inc(shm as unknown as number),
        (e: unknown) => e instanceof SerializationError && /SharedMemory/.test(e.message),
      );
      assert.equal(await ref.call.get(), 5); // it goes on
    });
    await assert.rejects(
      spawn(Box, { maxMemoryMb: 128 }),
      (e: unknown) =>
        e instanceof ValueError && /maxMemoryMb needs isolation "process"/.test(e.message),
    );
    await assert.rejects(
      spawn(Box, { args: [shm as unknown as number], isolation: "process" }),
      (e: unknown) => e instanceof SerializationError && /SharedMemory/.test(e.message),
    );
  } finally {
    shm.close();
    await __testHooks.gone();
  }
});
