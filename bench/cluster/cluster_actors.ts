// deno-lint-ignore-file no-import-prefix
// Cluster actor benchmarks (issue 20.6), JSON lines in the WORKLOADS.md format, on one loopback
// nats-server with one node process (`lib/cluster/cli.ts --actors bench/actors.ts`):
//   cluster-actor-call   `await ref.call.inc(1)` round trips from this process, p50/p99 in µs
//   nats-request         a raw NATS request/reply to an echo responder in another process, same
//                        server, same payload size: the floor the call is measured against
//                        (goal: call p50 ≤ 1.5x this p50; the two take turns, call by call)
//   cluster-actor-tell   `ref.tell(i)` to a sink actor, messages per second (checked with a call
//                        that follows the tells)
//   local-actor-call / local-actor-tell   the same with local actors (`spawn`, lib/actor/actor.ts)
//
//   NATS_URL=nats://127.0.0.1:4222 deno run -A --unstable-worker-options --lock=cluster.lock \
//     bench/cluster/cluster_actors.ts [--n-call 5000] [--n-tell 100000]
//
// Without NATS_URL it prints one line with `"ok": false, "error": "NATS_URL not set"`.
// `--echo SUBJECT` (internal) runs the echo responder of the raw request.
import { connect } from "npm:@nats-io/transport-node@3.4.0";
import { connectCluster } from "../../lib/cluster/mod.ts";
import { spawn } from "../../lib/actor/spawn.ts";
import { BenchCounter, BenchSink } from "../actors.ts";
import { arg, emit, since } from "../_common.ts";
import { dumps } from "../../lib/core/reduction.ts";

const N_CALL = Number(arg("n-call", "5000"));
const N_TELL = Number(arg("n-tell", "100000"));
const url = Deno.env.get("NATS_URL");

/** p50 and p99 of `samples` (ms), in µs. */
function percentiles(samples: number[]): { p50: number; p99: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] * 1000;
  return { p50: at(0.5), p99: at(0.99) };
}

/** One kind of round trip to time. */
interface CallSpec {
  workload: string;
  transport: string;
  once: () => Promise<unknown>;
  check: () => Promise<boolean>;
}

/**
 * Times `n` sequential round trips of each spec after a warm-up, taking turns (one of each, then
 * again), so that every spec sees the same machine load: on a busy machine, specs timed one after
 * the other differ by the load of the moment more than by their own cost. Emits one line per
 * spec; returns the p50s.
 */
async function timeCalls(specs: CallSpec[]): Promise<number[]> {
  for (let i = 0; i < 500; i++) for (const s of specs) await s.once();
  const samples = specs.map(() => new Array<number>(N_CALL));
  const spent = specs.map(() => 0);
  for (let i = 0; i < N_CALL; i++) {
    for (let k = 0; k < specs.length; k++) {
      const t = performance.now();
      await specs[k].once();
      spent[k] += samples[k][i] = performance.now() - t;
    }
  }
  const p50s: number[] = [];
  for (let k = 0; k < specs.length; k++) {
    const { p50, p99 } = percentiles(samples[k]);
    p50s.push(p50);
    emit({
      workload: specs[k].workload,
      n: N_CALL,
      seconds: spent[k] / 1000,
      rate: N_CALL / (spent[k] / 1000),
      unit: "calls/s",
      p50_us: Number(p50.toFixed(1)),
      p99_us: Number(p99.toFixed(1)),
      ok: await specs[k].check(),
      transport: specs[k].transport,
    });
  }
  return p50s;
}

/** Times `n` tells then one call that follows them; emits one line. */
async function timeTells(
  workload: string,
  transport: string,
  tell: (i: number) => Promise<void>,
  total: () => Promise<{ n: number; sum: number }>,
): Promise<void> {
  const before = await total();
  const t0 = performance.now();
  for (let i = 0; i < N_TELL; i++) {
    const sent = tell(i);
    if ((i & 1023) === 1023) await sent;
  }
  const after = await total();
  const s = since(t0);
  emit({
    workload,
    n: N_TELL,
    seconds: s,
    rate: N_TELL / s,
    unit: "msgs/s",
    ok: after.n - before.n === N_TELL &&
      after.sum - before.sum === (N_TELL * (N_TELL - 1)) / 2,
    transport,
  });
}

if (import.meta.main && Deno.args[0] === "--echo") {
  const nc = await connect({ servers: url! });
  nc.subscribe(Deno.args[1], {
    callback: (_e, m) => {
      m.respond(m.data);
    },
  });
  console.log("ready");
} else if (import.meta.main) {
  if (!url) {
    emit({
      workload: "cluster-actor-call",
      n: 0,
      seconds: 0,
      rate: 0,
      unit: "calls/s",
      ok: false,
      error: "NATS_URL not set",
    });
    Deno.exit(0);
  }
  const self = new URL(import.meta.url).pathname;
  const worker = new URL("../../lib/cluster/cli.ts", import.meta.url).pathname;
  const actors = new URL("../actors.ts", import.meta.url).pathname;
  const subject = `bench.echo.${crypto.randomUUID().slice(0, 8)}`;
  const node = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-worker-options", worker, "--servers", url, "--actors", actors],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const echo = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", self, "--echo", subject],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const cluster = await connectCluster({ servers: url });
  const nc = await connect({ servers: url });
  try {
    // The node and the echo responder are ready when they answer.
    let counter, sink;
    for (let i = 0;; i++) {
      try {
        counter = await cluster.spawn(BenchCounter);
        sink = await cluster.spawn(BenchSink);
        await nc.request(subject, "", { timeout: 1000 });
        break;
      } catch (e) {
        if (i > 100) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    // The raw request carries what a call to inc(1) carries: the frame of ["inc", [1]].
    const payload = new Uint8Array(dumps(["inc", [1]]).length + 1);
    let last = await counter.call.inc(0);
    const [raw, call] = await timeCalls([{
      workload: "nats-request",
      transport: "nats core loopback",
      once: () => nc.request(subject, payload, { timeout: 10_000 }),
      check: () => Promise.resolve(true),
    }, {
      workload: "cluster-actor-call",
      transport: "nats core loopback",
      once: async () => (last = await counter.call.inc(1)),
      check: async () => last === (await counter.call.inc(0)) && last === N_CALL + 500,
    }]);
    emit({
      workload: "cluster-actor-call-ratio",
      n: N_CALL,
      seconds: 0,
      rate: call / raw,
      unit: "x raw request p50 (goal <= 1.5)",
      ok: call / raw <= 1.5,
    });
    await timeTells(
      "cluster-actor-tell",
      "nats core loopback",
      (i) => sink.tell(i),
      () => sink.call.total(),
    );
    await counter.stop();
    await sink.stop();
    // Local actors, same classes.
    const lc = await spawn(BenchCounter), ls = await spawn(BenchSink);
    try {
      let l = 0;
      await timeCalls([{
        workload: "local-actor-call",
        transport: "shared memory",
        once: async () => (l = await lc.call.inc(1)),
        check: () => Promise.resolve(l === N_CALL + 500),
      }]);
      await timeTells(
        "local-actor-tell",
        "shared memory",
        (i) => ls.tell(i),
        () => ls.call.total(),
      );
    } finally {
      await lc.stop();
      await ls.stop();
    }
  } finally {
    await cluster.close();
    await nc.close();
    for (const p of [node, echo]) {
      p.kill("SIGTERM");
      await p.status;
    }
  }
}
