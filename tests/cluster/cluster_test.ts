// The NATS JetStream cluster layer (lib/cluster/mod.ts) against a real nats-server, with separate
// `deno` processes as consumers and pool workers. Skipped unless NATS_URL is set (scripts/nats.sh
// sets it); the server-restart test starts a server of its own, so it needs `nats-server` on PATH.
import {
  assert,
  assertEquals,
  assertRejects,
  Child,
  ignore,
  NATS_URL,
  unique,
  WORKER,
} from "./_harness.ts";
import { connectCluster, runClusterWorker } from "../../lib/cluster/mod.ts";
import { Empty, ValueError } from "../../lib/core/errors.ts";
import { echo, fail, slowSquare, square, whoAmI } from "./fixtures/cluster_tasks.ts";

const TASKS = new URL("./fixtures/cluster_tasks.ts", import.meta.url).pathname;
const CONSUMER = new URL("./fixtures/cluster_consumer.ts", import.meta.url).pathname;
/** Short ack wait: how fast the work of a killed process moves elsewhere. */
const ACK_WAIT = 1_000;

function startWorker(
  servers: string,
  pool: string,
  processes = 1,
  env: Record<string, string> = {},
) {
  return new Child([
    "run",
    "-A",
    "--unstable-worker-options",
    WORKER,
    "--servers",
    servers,
    "--pool",
    pool,
    "--module",
    TASKS,
    "--processes",
    String(processes),
  ], env);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A nats-server of the test's own (JetStream, file storage, loopback), restartable on the same store. */
class OwnServer {
  readonly port: number;
  readonly dir: string;
  #proc?: Deno.ChildProcess;

  constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.#proc = new Deno.Command("nats-server", {
      args: ["-js", "-a", "127.0.0.1", "-p", String(this.port), "-sd", this.dir],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    for (let i = 0; i < 100; i++) {
      try {
        const c = await Deno.connect({ hostname: "127.0.0.1", port: this.port });
        c.close();
        return;
      } catch {
        await sleep(50);
      }
    }
    throw new Error(`nats-server did not listen on ${this.port}`);
  }

  async kill(): Promise<void> {
    this.#proc?.kill("SIGKILL");
    await this.#proc?.status;
    this.#proc = undefined;
  }
}

Deno.test({
  name: "cluster Queue: put/get keep the codec's fidelity; Empty at once or after the timeout",
  ignore,
  async fn() {
    await using cluster = await connectCluster({ servers: NATS_URL, ackWait: ACK_WAIT });
    const q = cluster.Queue<unknown>(unique("fidelity"));
    try {
      const item = {
        m: new Map<unknown, unknown>([[1n, new Date(5)]]),
        s: new Set(["a"]),
        b: new Uint8Array([1, 2, 3]),
        e: new RangeError("r"),
      };
      await q.put(item);
      await q.putNowait("second");
      assertEquals(await q.qsize(), 2);
      const got = await q.get() as typeof item;
      assertEquals(got.m.get(1n), new Date(5));
      assert(got.s.has("a") && got.b instanceof Uint8Array && got.b[2] === 3);
      assert(got.e instanceof RangeError && got.e.message === "r");
      assertEquals(await q.getNowait(), "second");
      assert(await q.empty());
      await assertRejects(() => q.getNowait(), Empty);
      const t = Date.now();
      await assertRejects(() => q.get({ timeout: 300 }), Empty);
      assert(Date.now() - t >= 250, "get({ timeout }) waited");
    } finally {
      await q.destroy();
    }
  },
});

Deno.test({
  name: "cluster Queue: maxsize makes put throw Full; close() ends for-await loops once drained",
  ignore,
  async fn() {
    await using cluster = await connectCluster({ servers: NATS_URL, ackWait: ACK_WAIT });
    const q = cluster.Queue<number>(unique("bounded"), { maxsize: 2 });
    try {
      await q.put(1);
      await q.put(2);
      assert(await q.full());
      await assertRejects(() => q.put(3, { block: false }), Error, "full");
      await assertRejects(() => q.put(3, { timeout: 200 }), Error, "full");
      await q.close();
      await assertRejects(() => q.put(4), ValueError);
      const seen: number[] = [];
      for await (const x of q) seen.push(x);
      assertEquals(seen, [1, 2]);
    } finally {
      await q.destroy();
    }
  },
});

Deno.test({
  name: "cluster JoinableQueue: two consumer processes share the items exactly; join() waits",
  ignore,
  async fn() {
    await using cluster = await connectCluster({ servers: NATS_URL, ackWait: ACK_WAIT });
    const name = unique("jobs"), outName = unique("done");
    const q = cluster.JoinableQueue<number>(name);
    const out = cluster.Queue<[number, number]>(outName);
    const consumers: Child[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        consumers.push(new Child(["run", "-A", CONSUMER, NATS_URL, name, "work", outName]));
      }
      // Both wait in get() before the first put, so both take items.
      for (const c of consumers) await c.line("READY");
      for (let i = 0; i < 60; i++) await q.put(i);
      await q.join({ timeout: 30_000 });
      assertEquals(await q.unfinished(), 0);
      const got: number[] = [];
      const pids = new Set<number>();
      for (let i = 0; i < 60; i++) {
        const [item, pid] = await out.get({ timeout: 5_000 });
        got.push(item);
        pids.add(pid);
      }
      assertEquals(got.sort((a, b) => a - b), Array.from({ length: 60 }, (_, i) => i));
      await assertRejects(() => out.getNowait(), Empty);
      for (const c of consumers) assertEquals((await c.proc.status).code, 0, await c.err);
      assertEquals(pids.size, 2, "both consumer processes took items");
    } finally {
      for (const c of consumers) await c.stop();
      await q.destroy();
      await out.destroy();
    }
  },
});

Deno.test({
  name: "cluster JoinableQueue: an item whose consumer is killed before taskDone() is redelivered",
  ignore,
  async fn() {
    await using cluster = await connectCluster({ servers: NATS_URL, ackWait: ACK_WAIT });
    const name = unique("redeliver");
    const q = cluster.JoinableQueue<number>(name, { ackWait: ACK_WAIT });
    const child = new Child(["run", "-A", CONSUMER, NATS_URL, name, "hang"]);
    try {
      await q.put(42);
      assertEquals(await child.line("GOT "), "GOT 42");
      // The consumer holds it (its heartbeat outlives several ack waits): nothing to get.
      await assertRejects(() => q.get({ timeout: ACK_WAIT * 2 }), Empty);
      await child.stop("SIGKILL");
      const t = Date.now();
      assertEquals(await q.get({ timeout: ACK_WAIT * 10 }), 42);
      assert(Date.now() - t < ACK_WAIT * 5, "redelivered after about one ack wait");
      assertEquals(await q.unfinished(), 1);
      await q.taskDone();
      await q.join({ timeout: 5_000 });
      await assertRejects(() => q.taskDone(), ValueError, "too many times");
    } finally {
      await child.stop();
      await q.destroy();
    }
  },
});

Deno.test({
  name:
    "cluster dict: the Manager dict proxy's methods, compare-and-set, atomic modify across clients",
  ignore,
  async fn() {
    await using a = await connectCluster({ servers: NATS_URL });
    await using b = await connectCluster({ servers: NATS_URL });
    const name = unique("dict");
    const d = a.dict<unknown, unknown>(name), d2 = b.dict<unknown, unknown>(name);
    try {
      await d.set("a", 1);
      await d.set(1, "one");
      await d.set([1, 2], new Set([3]));
      assertEquals(await d2.get("a"), 1);
      assertEquals(await d2.get(1), "one");
      assertEquals(await d2.get("1"), undefined, "1 and '1' are different keys");
      assertEquals(await d2.get([1, 2]), new Set([3]));
      assertEquals(await d2.get("missing", "dflt"), "dflt");
      assert(await d2.has("a") && !(await d2.has("b")));
      assertEquals(await d.len(), 3);
      assertEquals(new Set(await d.keys()).size, 3);
      await d.update({ x: 10, y: 20 });
      await d.update(new Map([["z", 30]]));
      await d.update([["w", 40]]);
      assertEquals(await d.len(), 7);
      assertEquals((await d.copy()).get("z"), 30);
      assertEquals((await d.items()).length, 7);
      assertEquals((await d.values()).filter((v) => typeof v === "number").sort(), [
        1,
        10,
        20,
        30,
        40,
      ]);
      assertEquals(await d.pop("x"), 10);
      assertEquals(await d.pop("x", "gone"), "gone");
      await assertRejects(() => d.pop("x"), Error, "'x'");
      assertEquals(await d.setdefault("s", 5), 5);
      assertEquals(await d2.setdefault("s", 6), 5);
      assert(await d.delete("s"));
      assert(!(await d.delete("s")));
      // compare-and-set: exactly one of two racing writers wins
      await d.set("state", "idle");
      const wins = await Promise.all([
        d.compareAndSet("state", "idle", "a"),
        d2.compareAndSet("state", "idle", "b"),
      ]);
      assertEquals(wins.filter(Boolean).length, 1);
      assertEquals(await d.get("state"), wins[0] ? "a" : "b");
      assert(await d.compareAndSet("new", undefined, 1), "undefined means missing");
      assert(!(await d.compareAndSet("new", undefined, 2)));
      // modify: 2 clients x 25 increments, none lost
      await Promise.all([
        ...Array.from({ length: 25 }, () => d.modify("n", (n) => ((n as number) ?? 0) + 1)),
        ...Array.from({ length: 25 }, () => d2.modify("n", (n) => ((n as number) ?? 0) + 1)),
      ]);
      assertEquals(await d.get("n"), 50);
      await d.clear();
      assertEquals(await d2.len(), 0);
    } finally {
      await d.destroy();
    }
  },
});

Deno.test({
  name: "cluster Pool: apply/applyAsync/map/imap over two worker processes give exact results",
  ignore,
  async fn() {
    await using cluster = await connectCluster({ servers: NATS_URL, ackWait: ACK_WAIT });
    const name = unique("pool");
    const workers = [startWorker(NATS_URL, name, 1), startWorker(NATS_URL, name, 1)];
    const pool = cluster.Pool({ name });
    try {
      assertEquals(await pool.apply(square, [7]), 49);
      const r = pool.applyAsync(square, [8]);
      assertEquals(await r.get(20_000), 64);
      assert(r.ready() && r.successful());
      const xs = Array.from({ length: 500 }, (_, i) => i);
      assertEquals(await pool.map(square, xs), xs.map((x) => x * x));
      assertEquals(await pool.map(square, xs, 1), xs.map((x) => x * x));
      assertEquals(await pool.starmap("add", [[1, 2], [3, 4]]), [3, 7]);
      const ordered: number[] = [];
      for await (const y of pool.imap(square, xs.slice(0, 50))) ordered.push(y);
      assertEquals(ordered, xs.slice(0, 50).map((x) => x * x));
      const unordered: number[] = [];
      for await (const y of pool.imapUnordered(square, xs.slice(0, 50), 3)) unordered.push(y);
      assertEquals(unordered.sort((a, b) => a - b), xs.slice(0, 50).map((x) => x * x));
      const value = new Map<unknown, unknown>([[1n, [new Date(1), new Set([2])]]]);
      assertEquals(await pool.apply(echo, [value]), value);
      const e = await assertRejects(() => pool.apply(fail, [3]), RangeError, "bad value 3");
      assertEquals(e.name, "RangeError");
      await assertRejects(() => pool.map(fail, [1, 2, 3]), RangeError);
      await assertRejects(() => pool.apply("nope", []), TypeError, "not a function");
      // both worker processes took part
      const pids = new Set(await pool.map(whoAmI, xs.slice(0, 200), 1));
      assertEquals(pids.size, 2);
    } finally {
      await pool.close();
      for (const w of workers) await w.stop("SIGTERM");
    }
  },
});

Deno.test({
  name: "cluster worker: a signal aborted before or while it starts stops it",
  ignore,
  async fn() {
    const pool = unique("abort_early");
    const options = { servers: NATS_URL, pool, module: TASKS, processes: 0, log: () => {} };
    await runClusterWorker({ ...options, signal: AbortSignal.abort() });
    const stop = new AbortController();
    const worker = runClusterWorker({ ...options, signal: stop.signal });
    stop.abort();
    await worker;
  },
});

Deno.test({
  name: "cluster Pool: a worker process killed mid-map loses nothing and duplicates nothing",
  ignore,
  async fn() {
    await using cluster = await connectCluster({ servers: NATS_URL, ackWait: ACK_WAIT });
    const name = unique("kill");
    const victim = startWorker(NATS_URL, name, 2);
    const survivor = startWorker(NATS_URL, name, 2);
    const pool = cluster.Pool({ name, ackWait: ACK_WAIT });
    try {
      const xs = Array.from({ length: 300 }, (_, i) => i);
      const got: number[] = [];
      let killed = false;
      for await (const y of pool.imap(slowSquare, xs, 1)) {
        got.push(y);
        if (got.length === 60) {
          await victim.stop("SIGKILL");
          killed = true;
        }
      }
      assert(killed);
      assertEquals(got, xs.map((x) => x * x), "every result once, in order");
    } finally {
      await pool.close();
      await victim.stop();
      await survivor.stop("SIGTERM");
    }
  },
});

Deno.test({
  name: "cluster Pool and JoinableQueue: a server restart mid-run (file storage) loses nothing",
  ignore,
  sanitizeOps: false, // the client's reconnect timers outlive a test that restarts its server
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "denomp-nats-" });
    const server = new OwnServer(freePort(), dir);
    await server.start();
    const cluster = await connectCluster({
      servers: server.url,
      ackWait: ACK_WAIT,
      reconnectTimeWait: 100,
    });
    const name = unique("restart");
    const workers = [startWorker(server.url, name, 1), startWorker(server.url, name, 1)];
    const pool = cluster.Pool({ name, ackWait: ACK_WAIT });
    const q = cluster.JoinableQueue<number>(unique("restartq"));
    try {
      for (let i = 0; i < 20; i++) await q.put(i);
      const xs = Array.from({ length: 200 }, (_, i) => i);
      const got: number[] = [];
      for await (const y of pool.imap(slowSquare, xs, 1)) {
        got.push(y);
        if (got.length === 50) {
          await server.kill();
          await sleep(300);
          await server.start();
        }
      }
      assertEquals(got, xs.map((x) => x * x));
      // the queue's items were stored on disk before the restart
      const items: number[] = [];
      for (let i = 0; i < 20; i++) {
        items.push(await q.get({ timeout: 10_000 }));
        await q.taskDone();
      }
      assertEquals(items, Array.from({ length: 20 }, (_, i) => i));
      await q.join({ timeout: 10_000 });
    } finally {
      await pool.close();
      for (const w of workers) await w.stop("SIGTERM");
      await cluster.close();
      await server.kill();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "cluster: credentials pass through and are never printed",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const token = `s3cret-${crypto.randomUUID()}`;
    const dir = await Deno.makeTempDir({ prefix: "denomp-nats-" });
    const port = freePort();
    const proc = new Deno.Command("nats-server", {
      args: ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dir, "--auth", token],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const url = `nats://127.0.0.1:${port}`;
    try {
      for (let i = 0; i < 100; i++) {
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port })).close();
          break;
        } catch {
          await sleep(50);
        }
      }
      const e = await assertRejects(() => connectCluster({ servers: url, token: "wrong" }));
      assert(!String((e as Error).message).includes(token));
      await using cluster = await connectCluster({ servers: url, token });
      const name = unique("auth");
      const w = startWorker(url, name, 0, { NATS_TOKEN: token });
      const pool = cluster.Pool({ name });
      try {
        assertEquals(await pool.apply(square, [3]), 9);
      } finally {
        await pool.close();
      }
      const log = await w.stop("SIGTERM");
      assert(log.includes("serving pool"), log);
      assert(!log.includes(token), "the worker printed the token");
      // a URL with credentials in it is printed without them
      const bad = startWorker(`nats://user:${token}@127.0.0.1:1`, name, 0);
      const badLog = await Promise.race([bad.err, sleep(15_000).then(() => bad.stop())]);
      await bad.stop();
      assert(!badLog.includes(token), badLog);
    } finally {
      proc.kill("SIGKILL");
      await proc.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
