// deno-lint-ignore-file no-import-prefix
// Virtual actors (`cluster.actor(Class, key)`, lib/cluster/actors.ts and virtual.ts) against a
// real nats-server, with separate `deno` processes as nodes and callers. Skipped unless NATS_URL
// is set (scripts/nats.sh sets it).
import {
  assert,
  assertEquals,
  assertRejects,
  type Child,
  ignore,
  NATS_URL,
  startActorNode,
  startCaller,
  unique,
} from "./_harness.ts";
import { connectCluster } from "../../lib/cluster/mod.ts";
import { StoredState } from "../../lib/cluster/virtual.ts";
import { ValueError } from "../../lib/core/errors.ts";
import { Actor } from "../../lib/actor/actor.ts";
import { ActorExited } from "../../lib/actor/exit.ts";
import { askNode, CALL, frame, OK, RETRY, STOP } from "../../lib/cluster/actors.ts";
import { dumps } from "../../lib/core/reduction.ts";
import { Batched, Durable, Plain, Scratch, Tally } from "./fixtures/cluster_virtual.ts";
import { connect } from "npm:@nats-io/transport-node@3.4.0";
import { Kvm } from "npm:@nats-io/kv@3.4.0";

const ACTORS = new URL("./fixtures/cluster_virtual.ts", import.meta.url).pathname;
const startNode = (node: string, env: Record<string, string> = {}, flags: string[] = []) =>
  startActorNode(ACTORS, node, { env, flags });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test({
  name: "virtual actors: activated by the first call, deactivated when idle, state kept by persist",
  ignore,
  async fn() {
    const node = await startNode(unique("n"), {}, ["--idle-ms", "300"]);
    await using cluster = await connectCluster({ servers: NATS_URL });
    try {
      const key = unique("user");
      const ref = cluster.actor(Tally, key);
      assertEquals(ref.name, `Tally/${key}`);
      assertEquals(await ref.node(), undefined); // not activated yet
      assertEquals(await ref.call.inc(2), 2);
      assertEquals(await ref.call.inc(3), 5);
      const [k, pid] = await ref.call.where();
      assertEquals(k, key); // constructed as new Tally(key)
      assert(pid !== Deno.pid);
      assert((await ref.node())?.startsWith("n_"));
      assertEquals(await ref.call.restored(), 1);
      // Errors name the actor as `Class/key`; a bad method does not stop it.
      await assertRejects(
        () => (ref.call as unknown as { nope(): Promise<void> }).nope(),
        ValueError,
        `actor Tally/${key} has no method 'nope'`,
      );
      assertEquals(await ref.call.restored(), 1);
      // Idle for longer than Tally.idleMs (400 ms): deactivated, its record gone.
      await sleep(1_500);
      assertEquals(await ref.node(), undefined);
      // The next call activates it again, from the saved state.
      assertEquals(await ref.call.get(), 5);
      assertEquals(await ref.call.restored(), 2);
      // A failing call stops the activation without saving: the next one starts from the last
      // saved state (5), not from the failed call's change.
      await assertRejects(() => ref.call.incThenFail(100), RangeError, "failed after inc");
      assertEquals(await ref.call.get(), 5);
      assertEquals(await ref.call.restored(), 3);
      // stop() deactivates (saving); a stop of an inactive actor does not activate it.
      assertEquals(await ref.stop(), "normal");
      assertEquals(await ref.node(), undefined);
      assertEquals(await ref.stop(), "normal");
      assertEquals(await ref.node(), undefined);
      assertEquals(await ref.call.inc(1), 6);
      // Another client reaches the same activation.
      await using other = await connectCluster({ servers: NATS_URL });
      assertEquals(await other.actor(Tally, key).call.inc(1), 7);
      // tell and ask reach `receive`, as locally.
      await ref.tell(3);
      assertEquals(await ref.ask(10), 20);
      assertEquals(await ref.stop(), "normal");
      assertEquals(await ref.ask(1), 21); // an ask activates it too
      await ref.stop();
      await ref.tell(1); // and so does a tell
      const by = Date.now() + 5_000;
      while (await ref.call.get() !== 22 && Date.now() < by) await sleep(20);
      assertEquals(await ref.call.get(), 22);
      // Without persist/restore, a reactivation starts afresh.
      const scratch = cluster.actor(Scratch, key);
      assertEquals(await scratch.call.inc(1), 1);
      assertEquals(await scratch.call.inc(1), 2);
      await sleep(1_500);
      assertEquals(await scratch.call.inc(1), 1);
      // persistEvery = 200 ms: a deactivation saves what the timer has not saved yet.
      const batched = cluster.actor(Batched, key);
      assertEquals(await batched.call.inc(5), 5);
      assertEquals(await batched.stop(), "normal");
      assertEquals(await batched.call.get(), 5);
      assertEquals(await batched.call.restored(), 2);
      await batched.stop();
      // A class without `static idleMs` is deactivated after the node's --idle-ms.
      const plain = cluster.actor(Plain, key);
      assertEquals(await plain.call.inc(1), 1);
      assertEquals(await plain.call.inc(1), 2);
      await sleep(1_500);
      assertEquals(await plain.call.inc(1), 1);
      // Clear errors.
      await assertRejects(
        () => Promise.resolve().then(() => cluster.actor(Tally, "bad key!")),
        ValueError,
        "actor name",
      );
      class NotHosted extends Actor {
        x(): number {
          return 1;
        }
      }
      await assertRejects(() => cluster.actor(NotHosted, "k").call.x(), ValueError, "--actors");
      await ref.stop();
      await scratch.stop();
      await plain.stop();
    } finally {
      await node.stop("SIGTERM");
    }
  },
});

Deno.test({
  name: "virtual actors: concurrent first calls from two clients on two nodes make one activation",
  ignore,
  async fn() {
    // Each activation waits 300 ms after winning its record: the other node's activations of the
    // same key meet it there, and must see it as taken.
    const env = { DENOMP_TEST_ACTIVATION_DELAY_MS: "300" };
    const nodes = [await startNode(unique("n"), env), await startNode(unique("n"), env)];
    await using a = await connectCluster({ servers: NATS_URL });
    await using b = await connectCluster({ servers: NATS_URL });
    try {
      for (let round = 0; round < 5; round++) {
        const key = unique("race");
        const refs = [a.actor(Tally, key), b.actor(Tally, key)];
        const wheres = await Promise.all(
          Array.from({ length: 40 }, (_, i) => refs[i % 2].call.where()),
        );
        assertEquals(new Set(wheres.map(([, pid]) => pid)).size, 1);
        await Promise.all(Array.from({ length: 40 }, (_, i) => refs[i % 2].call.inc(1)));
        assertEquals(await refs[0].call.get(), 40);
        assertEquals(await refs[1].call.restored(), 1);
        await refs[0].stop();
      }
    } finally {
      for (const n of nodes) await n.stop("SIGTERM");
    }
  },
});

Deno.test({
  name:
    "virtual actors: a node killed with SIGKILL, its actors reactivated elsewhere, state intact",
  ignore,
  async fn() {
    const doomedName = unique("doomed");
    const doomed = await startNode(doomedName);
    await using cluster = await connectCluster({ servers: NATS_URL });
    let spare: Child | undefined;
    try {
      const prefix = unique("k");
      const refs = Array.from({ length: 20 }, (_, i) => cluster.actor(Batched, `${prefix}-${i}`));
      const plain = Array.from({ length: 20 }, (_, i) => cluster.actor(Durable, `${prefix}-${i}`));
      for (let i = 0; i < 20; i++) {
        assertEquals(await plain[i].call.inc(i), i);
        assertEquals(await refs[i].call.inc(i), i);
      }
      assertEquals(await plain[0].node(), doomedName);
      await sleep(800); // Batched saves at most every 200 ms
      spare = await startNode(unique("spare"));
      await doomed.stop("SIGKILL");
      const t0 = Date.now();
      // A call sent before the server has dropped the dead node's subscriptions reaches the dead
      // node and rejects (at most once, "noconnection"); `get` is safe to repeat, so retry it.
      const get = async (r: (typeof plain)[number]): Promise<number> => {
        for (let tries = 0;; tries++) {
          try {
            return await r.call.get();
          } catch (e) {
            if (tries >= 5 || !/noconnection|is gone/.test(String((e as Error).message))) throw e;
            await sleep(100);
          }
        }
      };
      const counts = await Promise.all(plain.map(get));
      const took = Date.now() - t0;
      assertEquals(counts, Array.from({ length: 20 }, (_, i) => i));
      assert(took < 5_000, `reactivation took ${took} ms`);
      assertEquals(await Promise.all(refs.map((r) => r.call.get())), counts);
      const pids = new Set(await Promise.all(plain.map(async (r) => (await r.call.where())[1])));
      assertEquals(pids.size, 1);
      assert((await plain[0].node())?.startsWith("spare_"));
      console.log(`20 actors reactivated after SIGKILL in ${took} ms`);
      await Promise.all([...refs, ...plain].map((r) => r.stop()));
    } finally {
      await doomed.stop();
      await spare?.stop("SIGTERM");
    }
  },
});

Deno.test({
  name: "virtual actors: a call that reaches an activation as it stops is sent again, not lost",
  ignore,
  async fn() {
    const node = await startNode(unique("n"));
    await using cluster = await connectCluster({ servers: NATS_URL });
    const nc = await connect({ servers: NATS_URL });
    try {
      const key = unique("stopping");
      const ref = cluster.actor(Tally, key);
      for (let round = 1; round <= 5; round++) {
        assertEquals(await ref.call.inc(1), 3 * round - 2); // activated
        // Both published in one tick: the server routes the call to the activation before the
        // node, handling the stop, unsubscribes; the node must answer it "retry" (it did not
        // run), not drop it. Raw requests: the ref's own recovery (a second later) is not this.
        const subject = `denomp.a.v.Tally.${key}`;
        const [stopped, called] = await Promise.all([
          nc.request(subject, frame(STOP, dumps("normal")), { timeout: 5_000 }),
          nc.request(subject, frame(CALL, dumps(["inc", [1]])), { timeout: 5_000 }),
        ]);
        assertEquals([stopped.data[0], called.data[0]], [OK, RETRY]);
        assertEquals(await ref.call.inc(1), 3 * round - 1);
        // The same through the ref: the call goes to the next activation.
        const [reason, n] = await Promise.all([
          ref.stop(),
          ref.callWith({ timeout: 5_000 }).inc(1),
        ]);
        assertEquals([reason, n], ["normal", 3 * round]);
        await ref.stop();
      }
    } finally {
      await nc.close();
      await node.stop("SIGTERM");
    }
  },
});

Deno.test({
  name: "virtual actors: a call lost on its way (no actor holds it) is sent again, once",
  ignore,
  async fn() {
    const node = await startNode(unique("n"));
    await using cluster = await connectCluster({ servers: NATS_URL });
    // A subscriber that swallows the first request on the actor's subject and answers nothing,
    // as a request lost on its way: the caller, finding no actor holding it, sends it again.
    const nc = await connect({ servers: NATS_URL });
    try {
      const key = unique("lost");
      let swallowed = 0;
      nc.subscribe(`denomp.a.v.Tally.${key}`, {
        queue: "denomp_virtual",
        max: 1,
        callback: () => void swallowed++,
      });
      await nc.flush();
      const ref = cluster.actor(Tally, key);
      const t0 = Date.now();
      assertEquals(await ref.callWith({ timeout: 10_000 }).inc(1), 1);
      assertEquals(swallowed, 1);
      assert(Date.now() - t0 >= 900, "sent again before the first check"); // (LIVENESS_MS)
      assertEquals(await ref.call.get(), 1); // ran once
      // Always swallowed: the call rejects, clearly, rather than waits for ever.
      const key2 = unique("lost");
      const sub = nc.subscribe(`denomp.a.v.Tally.${key2}`, { queue: "denomp_virtual" });
      await nc.flush();
      await assertRejects(
        () => cluster.actor(Tally, key2).callWith({ timeout: 20_000 }).inc(1),
        ActorExited,
        "was lost on its way 5 times (it did not run)",
      );
      sub.unsubscribe();
      await ref.stop();
    } finally {
      await nc.close();
      await node.stop("SIGTERM");
    }
  },
});

Deno.test({
  name: "virtual actors: a call running on a killed node rejects after another node takes over",
  ignore,
  async fn() {
    const doomedName = unique("doomed");
    const doomed = await startNode(doomedName);
    await using cluster = await connectCluster({ servers: NATS_URL });
    await using other = await connectCluster({ servers: NATS_URL });
    let spare: Child | undefined;
    try {
      const key = unique("taken");
      const ref = cluster.actor(Durable, key);
      assertEquals(await ref.call.inc(1), 1);
      assertEquals(await ref.node(), doomedName);
      spare = await startNode(unique("spare"));
      const t0 = Date.now();
      const napping = ref.callWith({ timeout: 30_000 }).nap(20_000);
      napping.catch(() => {});
      await sleep(100);
      await doomed.stop("SIGKILL");
      // The server drops the killed node's subscriptions a moment after its socket closed; a call
      // it still routes there is one the node may have run (rejected, not sent again).
      const probe = await connect({ servers: NATS_URL });
      for (let i = 0; i < 100 && !(await askNode(probe, doomedName, "")).gone; i++) await sleep(10);
      await probe.close();
      // Another client's call activates the actor on the spare node (taking the dead node's
      // record) before the napping call's first check: that call may have run, it must not be
      // sent again, and it must not wait for a reply that will never come.
      assertEquals(await other.actor(Durable, key).call.get(), 1);
      await assertRejects(() => napping, ActorExited, `its node '${doomedName}' is gone`);
      const took = Date.now() - t0;
      assert(took < 10_000, `rejected after ${took} ms`);
      await ref.stop();
    } finally {
      await doomed.stop();
      await spare?.stop("SIGTERM");
    }
  },
});

Deno.test({
  name: "virtual actors: calls pending on a node stopped by SIGTERM complete, the rest elsewhere",
  ignore,
  async fn() {
    const leaving = await startNode(unique("leaving"));
    await using cluster = await connectCluster({ servers: NATS_URL });
    let spare: Child | undefined;
    try {
      const key = unique("moved");
      const ref = cluster.actor(Durable, key);
      assertEquals(await ref.call.inc(1), 1);
      spare = await startNode(unique("spare"));
      // The nap is in hand when the node is told to stop: it finishes there, and so may the calls
      // queued behind it; those that reach it as it stops did not run: they go to the next
      // activation. None is lost, none runs twice.
      const napping = ref.callWith({ timeout: 20_000 }).nap(600);
      const incs = Array.from({ length: 5 }, () => ref.callWith({ timeout: 20_000 }).inc(1));
      await sleep(150);
      const stopped = leaving.stop("SIGTERM");
      const more = Array.from({ length: 5 }, () => ref.callWith({ timeout: 20_000 }).inc(1));
      assertEquals(await napping, 600);
      const counts = await Promise.all([...incs, ...more]);
      assertEquals(counts.toSorted((a, b) => a - b), Array.from({ length: 10 }, (_, i) => i + 2));
      await stopped;
      assertEquals(await ref.call.get(), 11);
      assert((await ref.node())?.startsWith("spare_"));
      await ref.stop();
    } finally {
      await leaving.stop();
      await spare?.stop("SIGTERM");
    }
  },
});

Deno.test({
  name: "virtual actors: of two activations' saves on one revision, only the first wins",
  ignore,
  async fn() {
    const nc = await connect({ servers: NATS_URL });
    try {
      const kv = await new Kvm(nc).create("denomp_actors", { history: 1 });
      const key = `s.Tally.${unique("cas")}`;
      const first = new Tally("x");
      first.inc(10);
      await new StoredState(kv, key, "Tally/x", first).save();
      const one = new Tally("x"), two = new Tally("x");
      const a = new StoredState(kv, key, "Tally/x", one);
      const b = new StoredState(kv, key, "Tally/x", two);
      await a.restore();
      await b.restore();
      one.inc(1);
      await a.save();
      two.inc(5);
      await assertRejects(() => b.save(), ValueError, "stale");
      // A read-only call writes nothing; the winner goes on saving on its revision.
      const rev = (await kv.get(key))!.revision;
      await a.save();
      assertEquals((await kv.get(key))!.revision, rev);
      one.inc(1);
      await a.save();
      const fresh = new Tally("x");
      await new StoredState(kv, key, "Tally/x", fresh).restore();
      assertEquals(fresh.get(), 12);
      await kv.purge(key);
    } finally {
      await nc.close();
    }
  },
});

Deno.test({
  name: "virtual actors: 10,000 calls from 4 caller processes to 100 virtual actors are exact",
  ignore,
  async fn() {
    const nodes = await Promise.all([1, 2, 3].map(() => startNode(unique("n"))));
    await using cluster = await connectCluster({ servers: NATS_URL });
    const prefix = unique("c");
    try {
      const t0 = Date.now();
      const callers = [1, 2, 3, 4].map(() => startCaller("virtual", prefix, 100, 2500));
      const outs = await Promise.all(callers.map(async (c) => {
        const status = await c.proc.status;
        const out = await c.out;
        assert(status.success, `caller failed: ${await c.err}`);
        return out.trim();
      }));
      const took = Date.now() - t0;
      assertEquals(outs, ["done 2500", "done 2500", "done 2500", "done 2500"]);
      const refs = Array.from({ length: 100 }, (_, i) => cluster.actor(Tally, `${prefix}-${i}`));
      const counts = await Promise.all(refs.map((r) => r.call.get()));
      assertEquals(counts, Array.from({ length: 100 }, () => 100));
      const pids = new Set(await Promise.all(refs.map(async (r) => (await r.call.where())[1])));
      assertEquals(pids.size, 3);
      console.log(`10,000 virtual calls (save after each) in ${took} ms incl. process start`);
      await Promise.all(refs.map((r) => r.stop()));
    } finally {
      for (const n of nodes) await n.stop("SIGTERM");
    }
  },
});
