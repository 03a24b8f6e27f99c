// Failure across nodes (issue 20.3, lib/cluster/watch.ts): node death found by heartbeats,
// monitors and links of cluster actors across nodes, and supervisors whose children are cluster
// actors, against a real nats-server with separate `deno` processes as nodes. Skipped unless
// NATS_URL is set (scripts/nats.sh sets it).
import {
  assert,
  assertEquals,
  assertRejects,
  type Child,
  ignore,
  NATS_URL,
  startActorNode,
  unique,
} from "./_harness.ts";
import { type ClusterActorRef, connectCluster } from "../../lib/cluster/mod.ts";
import { NODE_TIMEOUT_MS } from "../../lib/cluster/watch.ts";
import { monitor } from "../../lib/actor/link.ts";
import { Supervisor, type SupervisorEvent } from "../../lib/actor/supervisor.ts";
import { ActorExited } from "../../lib/actor/exit.ts";
import { Counter, Trapper } from "./fixtures/cluster_actors.ts";
import { Tally } from "./fixtures/cluster_virtual.ts";

const MODULES = [
  new URL("./fixtures/cluster_actors.ts", import.meta.url).pathname,
  new URL("./fixtures/cluster_virtual.ts", import.meta.url).pathname,
].join(",");
const startNode = (node: string) => startActorNode(MODULES, node);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves with `p`'s value, or "pending" if it has not settled within `ms`. */
const within = <T>(p: Promise<T>, ms: number): Promise<T | "pending"> =>
  Promise.race([p, sleep(ms).then(() => "pending" as const)]);

/** `p`, or a rejection naming the wait if it has not settled within the timeout + 3 s. */
const bounded = <T>(p: Promise<T>): Promise<T> =>
  within(p, NODE_TIMEOUT_MS + 3_000).then((v) => {
    if (v === "pending") throw new Error(`not settled within ${NODE_TIMEOUT_MS + 3_000} ms`);
    return v as T;
  });

/** Waits (at most `ms`) until `cond()` holds. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(20);
  }
}

Deno.test({
  name: "cluster failure: monitor of a cluster actor gets its reason, noproc, or noconnection",
  ignore,
  async fn() {
    const doomedName = unique("doomed");
    const doomed = await startNode(doomedName);
    await using cluster = await connectCluster({ servers: NATS_URL });
    let other: Child | undefined;
    try {
      // The actor's own reasons: a stop, a crash; an actor that had stopped already.
      const a = await cluster.spawn(Counter);
      const down = monitor(a);
      assertEquals(await within(down, 300), "pending");
      assertEquals(await a.stop(), "normal");
      assertEquals(await bounded(down), "normal");
      assertEquals(await bounded(monitor(a)), "normal"); // remembered by its node
      assertEquals(await bounded(monitor(cluster.ref(a.name))), "noproc"); // the name is free
      const b = await cluster.spawn(Counter);
      const crashed = monitor(b);
      await assertRejects(() => b.call.fail("boom"), RangeError);
      const reason = await bounded(crashed);
      assert(reason instanceof Error && reason.message === "boom", String(reason));
      assertEquals(await monitor(cluster.ref(unique("nobody"))), "noproc");
      // Its node killed: "noconnection", within about a second (the server dropped the node).
      const c = await cluster.spawn(Counter);
      other = await startNode(unique("other"));
      const lost = monitor(c);
      await sleep(200);
      const t0 = Date.now();
      await doomed.stop("SIGKILL");
      assertEquals(await bounded(lost), "noconnection");
      const took = Date.now() - t0;
      assert(took < NODE_TIMEOUT_MS + 1_000, `noconnection after ${took} ms`);
      assertEquals(await bounded(monitor(c)), "noconnection"); // its node is gone already
    } finally {
      await doomed.stop();
      await other?.stop("SIGTERM");
    }
  },
});

Deno.test({
  name: "cluster failure: a hung node (SIGSTOP) is gone after the heartbeat timeout, then fenced",
  ignore,
  async fn() {
    const hungName = unique("hung");
    const hung = await startNode(hungName);
    await using cluster = await connectCluster({ servers: NATS_URL });
    let spare: Child | undefined;
    try {
      const ref = await cluster.spawn(Counter, { name: unique("frozen") });
      assertEquals(await ref.call.inc(1), 1);
      spare = await startNode(unique("spare"));
      const lost = monitor(ref);
      await sleep(200);
      const t0 = Date.now();
      Deno.kill(hung.proc.pid, "SIGSTOP"); // its connection stays open: only silence tells
      // A call sent to it is not left waiting: no answer and no heartbeat mean its node is gone.
      const call = assertRejects(() => ref.call.inc(1), ActorExited, `'${hungName}' is gone`);
      assertEquals(await bounded(lost), "noconnection");
      const took = Date.now() - t0;
      assert(took >= NODE_TIMEOUT_MS - 500, `declared gone after ${took} ms only`);
      assert(took < NODE_TIMEOUT_MS + 2_000, `declared gone after ${took} ms`);
      assertEquals(((await bounded(call)) as ActorExited).reason, "noconnection");
      const callTook = Date.now() - t0;
      assert(callTook < NODE_TIMEOUT_MS + 2_000, `the call rejected after ${callTook} ms`);
      // The name is taken over by a live node (the hung one answers nothing, sends nothing).
      // The server still hands spawns and activations to the hung node half of the time: those
      // tries are sent again after the node timeout, so they all land on the live node.
      const t1 = Date.now();
      const [again, ...more] = await Promise.all([
        cluster.spawn(Counter, { name: ref.name, args: [10] }),
        ...Array.from({ length: 3 }, () => cluster.spawn(Counter)),
      ]);
      const keys = Array.from({ length: 3 }, () => unique("hung-tally"));
      assertEquals(
        await Promise.all(keys.map((k) => cluster.actor(Tally, k).call.inc(2))),
        [2, 2, 2],
      );
      const spent = Date.now() - t1;
      assert(spent < 3 * NODE_TIMEOUT_MS, `spawns and activations took ${spent} ms`);
      for (const r of [again, ...more]) assert((await r.node()) !== hungName, r.name);
      // Back from its pause, the hung node finds its actor taken over and stops it.
      Deno.kill(hung.proc.pid, "SIGCONT");
      await hung.waitFor("was taken over while this node was paused", 10_000);
      for (let i = 0; i < 20; i++) assertEquals(await again.call.inc(1), 11 + i);
      for (const r of [again, ...more]) await r.stop();
    } finally {
      try {
        Deno.kill(hung.proc.pid, "SIGCONT");
      } catch { /* exited */ }
      await hung.stop();
      await spare?.stop("SIGTERM");
    }
  },
});

/** Spawns Counters until one runs on each of `nodes`; returns one per node, in that order. */
async function onEach(
  cluster: Awaited<ReturnType<typeof connectCluster>>,
  nodes: string[],
  cls: typeof Counter | typeof Trapper = Counter,
): Promise<ClusterActorRef<Counter>[]> {
  const found = new Map<string, ClusterActorRef<Counter>>();
  const extra: ClusterActorRef<Counter>[] = [];
  for (let i = 0; i < 40 && found.size < nodes.length; i++) {
    const r = await cluster.spawn(cls as typeof Counter);
    const n = (await r.node())!;
    if (found.has(n) || !nodes.includes(n)) extra.push(r);
    else found.set(n, r);
  }
  for (const r of extra) await r.stop();
  return nodes.map((n) => found.get(n)!);
}

Deno.test({
  name: "cluster failure: links across nodes carry crashes, trapped exits and noconnection",
  ignore,
  async fn() {
    const names = [unique("left"), unique("right")];
    const nodes = [await startNode(names[0]), await startNode(names[1])];
    await using cluster = await connectCluster({ servers: NATS_URL });
    try {
      // A crash stops the actor linked to it, on the other node, with the same reason.
      const [a, b] = await onEach(cluster, names);
      await cluster.link(a, b);
      const bDown = monitor(b);
      await assertRejects(() => a.call.fail("boom"), RangeError);
      const reason = await bounded(bDown);
      assert(reason instanceof Error && reason.message === "boom", String(reason));
      // A normal stop does not; unlink undoes a link.
      const [c, d] = await onEach(cluster, names);
      await cluster.link(c, d);
      await c.stop();
      assertEquals(await d.call.inc(1), 1);
      const [e] = await onEach(cluster, [names[0]]);
      await cluster.link(d, e);
      await cluster.unlink(d, e);
      await assertRejects(() => e.call.fail("alone"), RangeError);
      await sleep(300);
      assertEquals(await d.call.inc(1), 2);
      // A trapping actor is told instead, and goes on.
      const [t] = await onEach(cluster, [names[1]], Trapper);
      const trapper = t as unknown as ClusterActorRef<Trapper>;
      await cluster.link(trapper, d);
      await assertRejects(() => d.call.fail("told"), RangeError);
      let seen: [string, string][] = [];
      for (let i = 0; i < 50 && !seen.length; i++) {
        seen = await trapper.call.seen();
        if (!seen.length) await sleep(50);
      }
      assertEquals(seen, [[d.name, "RangeError: told"]]);
      // Linking to an actor that stopped rejects, and the other gets the signal.
      const f = (await onEach(cluster, [names[0]]))[0];
      await assertRejects(() => cluster.link(f, a), ActorExited);
      const fReason = await bounded(monitor(f));
      assert(fReason instanceof Error && fReason.message === "boom", String(fReason));
      // Its node killed: the linked actor on the other node stops with "noconnection".
      const [x, y] = await onEach(cluster, names);
      await cluster.link(x, y);
      const yDown = monitor(y);
      await nodes[0].stop("SIGKILL");
      assertEquals(await bounded(yDown), "noconnection");
      await trapper.stop();
    } finally {
      for (const n of nodes) await n.stop("SIGTERM");
    }
  },
});

Deno.test({
  name:
    "cluster failure: a supervisor restarts the actors of a SIGKILLed node on another node within the heartbeat timeout + 1 s, virtual state intact",
  ignore,
  async fn() {
    const doomedName = unique("doomed");
    const doomed = await startNode(doomedName);
    await using cluster = await connectCluster({ servers: NATS_URL });
    let spare: Child | undefined;
    const events: SupervisorEvent[] = [];
    const prefix = unique("sup");
    const ids = ["a", "b", "c"];
    const sup = await new Supervisor({
      name: prefix,
      children: ids.map((id) => ({
        id,
        start: () => cluster.spawn(Counter, { name: `${prefix}-${id}` }),
      })),
      onEvent: (e) => events.push(e),
    }).start();
    try {
      // Everything starts on the doomed node (the only one), virtual actors with saved state too.
      const keys = ids.map((id) => unique(`tally-${id}`));
      for (const [i, key] of keys.entries()) {
        assertEquals(await cluster.actor(Tally, key).call.inc(i + 1), i + 1);
      }
      for (const id of ids) {
        const ref = sup.get(id) as ClusterActorRef<Counter>;
        assertEquals(await ref.call.inc(5), 5);
        assertEquals(await ref.node(), doomedName);
      }
      const spareName = unique("spare");
      spare = await startNode(spareName);
      const t0 = Date.now();
      await doomed.stop("SIGKILL");
      const restarted = () => events.filter((e) => e.type === "restarted").length;
      await until(() => restarted() === ids.length, NODE_TIMEOUT_MS + 1_000, "3 restarts");
      const took = Date.now() - t0;
      for (const e of events.filter((e) => e.type === "exited")) {
        assertEquals((e as { reason: unknown }).reason, "noconnection");
      }
      // Restarted on the live node, fresh (a supervisor restarts from the child spec).
      for (const id of ids) {
        const ref = await sup.whenRunning(id, { timeout: 5_000 }) as ClusterActorRef<Counter>;
        assertEquals(await ref.node(), spareName);
        assertEquals(await ref.call.inc(1), 1);
      }
      // The virtual actors come back on the live node with their saved state.
      for (const [i, key] of keys.entries()) {
        assertEquals(await cluster.actor(Tally, key).call.get(), i + 1);
      }
      assert(sup.isAlive());
      console.log(`restarted 3 actors ${took} ms after the SIGKILL`);
      // Same strategies as locally: one_for_all restarts the siblings of a crashed child too.
      const all = await new Supervisor({
        strategy: "one_for_all",
        children: ids.map((id) => ({
          id,
          start: () => cluster.spawn(Counter, { name: `${prefix}-all-${id}` }),
        })),
      }).start();
      const before = ids.map((id) => all.get(id));
      await assertRejects(() => (all.get("b") as ClusterActorRef<Counter>).call.fail("x"));
      await until(() => all.restartCount === 1 && ids.every((id) => all.get(id)), 5_000, "all");
      for (const [i, id] of ids.entries()) assert(all.get(id) !== before[i], id);
      await all.stop();
      // And the restart intensity: past maxRestarts within withinMs, the supervisor gives up.
      const brittle = await new Supervisor({
        maxRestarts: 1,
        children: [{ id: "x", start: () => cluster.spawn(Counter) }],
      }).start();
      for (let i = 0; i < 2; i++) {
        // The exit notice follows the call's rejection: wait for the restart before the next.
        await until(() => brittle.restartCount === i, 5_000, `restart ${i}`);
        const x = await brittle.whenRunning("x", { timeout: 5_000 }) as ClusterActorRef<Counter>;
        await assertRejects(() => x.call.fail(`crash ${i}`), RangeError);
      }
      const gaveUp = await bounded(brittle.exited);
      assert(gaveUp instanceof Error && gaveUp.name === "SupervisorError", String(gaveUp));
    } finally {
      await sup.stop();
      await doomed.stop();
      await spare?.stop("SIGTERM");
    }
  },
});
