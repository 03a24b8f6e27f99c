// Cluster actors (lib/cluster/actors.ts) against a real nats-server, with separate `deno` processes
// as nodes (`lib/cluster/cli.ts --actors`) and callers. Skipped unless NATS_URL is set
// (scripts/nats.sh sets it).
import {
  assert,
  assertEquals,
  assertRejects,
  Child,
  ignore,
  NATS_URL,
  startActorNode,
  startCaller,
  unique,
  WORKER,
} from "./_harness.ts";
import { connectCluster } from "../../lib/cluster/mod.ts";
import { ActorExited } from "../../lib/actor/exit.ts";
import { TimeoutError, ValueError } from "../../lib/core/errors.ts";
import { Counter } from "./fixtures/cluster_actors.ts";

const ACTORS = new URL("./fixtures/cluster_actors.ts", import.meta.url).pathname;
const startNode = (node: string, servers = NATS_URL, env: Record<string, string> = {}) =>
  startActorNode(ACTORS, node, { servers, env });

Deno.test({
  name: "cluster actors: spawn on a node, refs from other clients, call/tell/ask/stop",
  ignore,
  async fn() {
    const nodes = [await startNode(unique("n")), await startNode(unique("n"))];
    await using a = await connectCluster({ servers: NATS_URL });
    await using b = await connectCluster({ servers: NATS_URL });
    try {
      const name = unique("counter");
      const ref = await a.spawn(Counter, { name, args: [10] });
      assertEquals(await ref.call.inc(1), 11);
      // Another connection (another client) reaches the same actor by name, typed.
      const other = b.ref<Counter>(name);
      assertEquals(await other.call.inc(2), 13);
      assertEquals(await ref.call.get(), 13);
      const where = await other.node();
      assert(where !== undefined && where.startsWith("n_"), `node ${where}`);
      assert((await ref.call.pid()) !== Deno.pid);
      const value = new Map<unknown, unknown>([[1n, [new Date(1), new Set([2])]]]);
      assertEquals(await other.call.echo(value), value);
      // tell/ask: one message at a time, in arrival order per sender.
      // Some handlers are async (they wait `ms`), so later messages queue up behind them.
      for (let i = 0; i < 500; i++) {
        void other.tell({ kind: "push", n: i, ms: i % 50 === 0 ? 5 : 0 });
      }
      assertEquals(await other.ask({ kind: "log" }), Array.from({ length: 500 }, (_, i) => i));
      // A bad method is refused without stopping the actor.
      await assertRejects(
        () => (other.call as unknown as { nope(): Promise<void> }).nope(),
        ValueError,
        "has no method 'nope'",
      );
      // Only the class's own methods: not its constructor, hooks, or Object's methods.
      for (const m of ["constructor", "receive", "toString", "__proto__", "hasOwnProperty"]) {
        await assertRejects(
          () => (other.call as unknown as Record<string, () => Promise<void>>)[m](),
          ValueError,
          `has no method '${m}'`,
        );
      }
      assertEquals(await ref.call.get(), 13);
      await assertRejects(
        () => ref.callWith({ timeout: 100 }).slowInc(1, 2_000),
        TimeoutError,
        "slowInc()",
      );
      // A name is taken once, cluster-wide.
      await assertRejects(() => b.spawn(Counter, { name }), ValueError, "is taken");
      assertEquals(await other.stop(), "normal");
      const gone = await assertRejects(() => ref.call.get(), ActorExited);
      assertEquals((gone as ActorExited).reason, "normal");
      // The name is free again.
      const again = await b.spawn(Counter, { name, args: [1] });
      assertEquals(await again.call.inc(1), 2);
      await again.stop();
      // Spread over both nodes: 12 actors land on more than one.
      const many = await Promise.all(
        Array.from({ length: 12 }, (_, i) => a.spawn(Counter, { name: unique(`spread${i}`) })),
      );
      const pids = new Set(await Promise.all(many.map((r) => r.call.pid())));
      assertEquals(pids.size, 2);
      for (const r of many) await r.stop();
    } finally {
      for (const n of nodes) await n.stop("SIGTERM");
    }
  },
});

Deno.test({
  name: "cluster actors: clear errors for unknown names, unhosted classes and crashes",
  ignore,
  async fn() {
    const node = await startNode(unique("n"));
    await using cluster = await connectCluster({ servers: NATS_URL });
    try {
      const nobody = await assertRejects(
        () => cluster.ref<Counter>(unique("nobody")).call.get(),
        ActorExited,
        "no actor named",
      );
      assertEquals((nobody as ActorExited).reason, "noproc");
      const { Actor } = await import("../../lib/actor/actor.ts");
      class NotHosted extends Actor {}
      await assertRejects(() => cluster.spawn(NotHosted), ValueError, "--actors");
      await assertRejects(
        () => cluster.spawn(Counter, { name: "bad name!" }),
        ValueError,
        "actor name",
      );
      // A method that throws: the caller gets the error, the actor stops with it.
      const ref = await cluster.spawn(Counter);
      const e = await assertRejects(() => ref.call.fail("boom"), RangeError, "boom");
      assertEquals(e.name, "RangeError");
      const after = await assertRejects(() => ref.call.get(), ActorExited);
      assert((after as ActorExited).reason instanceof Error, String((after as ActorExited).reason));
      assert(String(((after as ActorExited).reason as Error).message).includes("boom"));
    } finally {
      await node.stop("SIGTERM");
    }
  },
});

Deno.test({
  name: "cluster actors: a call to an actor on a killed node rejects with ActorExited naming it",
  ignore,
  async fn() {
    const nodeName = unique("doomed");
    const doomed = await startNode(nodeName);
    await using cluster = await connectCluster({ servers: NATS_URL });
    let spare: Child | undefined;
    try {
      const ref = await cluster.spawn(Counter, { name: unique("victim") });
      assertEquals(await ref.call.inc(1), 1);
      // A call in flight when the node dies: rejected within seconds, not left hanging.
      const pending = ref.call.slowInc(1, 60_000);
      pending.catch(() => {});
      await new Promise((r) => setTimeout(r, 200));
      const t0 = Date.now();
      await doomed.stop("SIGKILL");
      const e = await assertRejects(() => pending, ActorExited, nodeName);
      assertEquals((e as ActorExited).reason, "noconnection");
      assert(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
      // A new call fails at once, naming the node.
      const t1 = Date.now();
      const e2 = await assertRejects(() => ref.call.get(), ActorExited, nodeName);
      assertEquals((e2 as ActorExited).reason, "noconnection");
      assert(Date.now() - t1 < 5_000, `took ${Date.now() - t1} ms`);
      await assertRejects(() => ref.stop(), ActorExited, nodeName);
      // The dead node's name is taken over by a spawn on a live node.
      spare = await startNode(unique("spare"));
      const back = await cluster.spawn(Counter, { name: ref.name, args: [5] });
      assertEquals(await ref.call.inc(1), 6);
      await back.stop();
    } finally {
      await doomed.stop();
      await spare?.stop("SIGTERM");
    }
  },
});

Deno.test({
  name: "cluster actors: 10,000 calls from 4 caller processes to 100 actors on 3 nodes are exact",
  ignore,
  async fn() {
    const nodes = await Promise.all([1, 2, 3].map(() => startNode(unique("n"))));
    await using cluster = await connectCluster({ servers: NATS_URL });
    const prefix = unique("c");
    try {
      const refs = await Promise.all(
        Array.from({ length: 100 }, (_, i) => cluster.spawn(Counter, { name: `${prefix}-${i}` })),
      );
      const callers = [1, 2, 3, 4].map(() => startCaller("ref", prefix, 100, 2500));
      const outs = await Promise.all(callers.map(async (c) => {
        const status = await c.proc.status;
        const out = await c.out;
        assert(status.success, `caller failed: ${await c.err}`);
        return out.trim();
      }));
      assertEquals(outs, ["done 2500", "done 2500", "done 2500", "done 2500"]);
      const counts = await Promise.all(refs.map((r) => r.call.get()));
      assertEquals(counts, Array.from({ length: 100 }, () => 100));
      const pids = new Set(await Promise.all(refs.map((r) => r.call.pid())));
      assertEquals(pids.size, 3);
      await Promise.all(refs.map((r) => r.stop()));
    } finally {
      for (const n of nodes) await n.stop("SIGTERM");
    }
  },
});

Deno.test({
  name: "cluster actors: a node's credentials come from its environment and are never printed",
  ignore,
  async fn() {
    const token = `s3cret-${crypto.randomUUID()}`;
    const dir = await Deno.makeTempDir({ prefix: "denomp-nats-" });
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    const server = new Deno.Command("nats-server", {
      args: ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dir, "--auth", token],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const url = `nats://127.0.0.1:${port}`;
    let node: Child | undefined;
    try {
      for (let i = 0; i < 100; i++) {
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port })).close();
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      // Without the token the node does not start, and says why without printing a secret.
      const refused = new Child(["run", "-A", WORKER, "--servers", url, "--actors", ACTORS]);
      const status = await refused.proc.status;
      const refusedLog = await refused.stop();
      assert(!status.success && refusedLog.includes("cannot connect"), refusedLog);
      node = await startNode(unique("auth"), url, { NATS_TOKEN: token });
      await using cluster = await connectCluster({ servers: url, token });
      const ref = await cluster.spawn(Counter, { args: [41] });
      assertEquals(await ref.call.inc(1), 42);
      await ref.stop();
      const log = await node.stop("SIGTERM");
      assert(!log.includes(token), "the node printed the token");
    } finally {
      await node?.stop();
      server.kill("SIGKILL");
      await server.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "cluster actors: a node stopped by SIGTERM finishes the call in hand and frees its names",
  ignore,
  async fn() {
    const node = await startNode(unique("n"));
    await using cluster = await connectCluster({ servers: NATS_URL });
    try {
      const ref = await cluster.spawn(Counter, { name: unique("graceful") });
      const inHand = ref.call.slowInc(1, 500);
      await new Promise((r) => setTimeout(r, 150));
      node.proc.kill("SIGTERM");
      assertEquals(await inHand, 1);
      assert((await node.proc.status).success);
      assertEquals(await ref.node(), undefined); // the registry forgot it
      await assertRejects(() => ref.call.get(), ActorExited, "not running");
    } finally {
      await node.stop();
    }
  },
});
