// Cluster pool throughput: `cluster.Pool.map` of 10,000 small tasks (`square`) over 2 worker
// processes (`lib/cluster/cli.ts`) on a loopback NATS JetStream server, in tasks/s, next to
// the local Pool doing the same map over 2 processes. The clock runs around the map alone
// (workers are started and warmed up first). Variants: one task per message (`chunksize 1`,
// what BullMQ does per job, see bench/cluster/peer_bullmq.ts) and the default chunking.
//
//   NATS_URL=nats://127.0.0.1:4222 deno run -A --unstable-worker-options --lock=cluster.lock \
//     bench/cluster/cluster_pool.ts [--n 10000]
//
// Without NATS_URL it prints one line with `"ok": false, "error": "NATS_URL not set"`.
import { connectCluster } from "../../lib/cluster/mod.ts";
import { Pool } from "../../lib/pool/pool.ts";
import { emit, since } from "../_common.ts";
import { square } from "../tasks/square.ts";

const nArg = Deno.args.indexOf("--n");
const N = nArg >= 0 ? Number(Deno.args[nArg + 1]) : 10_000;
const url = Deno.env.get("NATS_URL");

function expectSquares(out: number[], n: number): boolean {
  return out.length === n && out.every((v, i) => v === i * i);
}

type MapFn = (f: typeof square, xs: number[], chunksize?: number) => Promise<number[]>;

/**
 * Warms `map` up (workers connected, code paths compiled), then times it once with one task per
 * message and once with the default chunking, emitting `<prefix>chunksize=1` and
 * `<prefix>default-chunks`.
 */
async function timeMaps(map: MapFn, prefix: string, transport: string): Promise<void> {
  const xs = Array.from({ length: N }, (_, i) => i);
  await map(square, xs.slice(0, 500), 1);
  for (const [variant, chunksize] of [["chunksize=1", 1], ["default-chunks", undefined]] as const) {
    const t0 = performance.now();
    const out = await map(square, xs, chunksize);
    const s = since(t0);
    emit({
      workload: "cluster-pool-map",
      variant: prefix + variant,
      n: N,
      seconds: s,
      rate: N / s,
      unit: "tasks/s",
      ok: expectSquares(out, N),
      workers: 2,
      transport,
    });
  }
}

if (import.meta.main) {
  if (!url) {
    emit({
      workload: "cluster-pool-map",
      n: 0,
      seconds: 0,
      rate: 0,
      unit: "tasks/s",
      ok: false,
      error: "NATS_URL not set",
    });
    Deno.exit(0);
  }
  const name = `bench_${crypto.randomUUID().slice(0, 8)}`;
  const worker = new URL("../../lib/cluster/cli.ts", import.meta.url).pathname;
  const tasks = new URL("../tasks/square.ts", import.meta.url).pathname;
  const workers = [0, 1].map(() =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--unstable-worker-options",
        worker,
        "--servers",
        url,
        "--pool",
        name,
        "--module",
        tasks,
        "--processes",
        "1",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn()
  );
  const cluster = await connectCluster({ servers: url });
  const pool = cluster.Pool({ name });
  try {
    await timeMaps((f, xs, c) => pool.map(f, xs, c), "", "nats-jetstream loopback");
  } finally {
    await pool.close();
    await cluster.close();
    for (const w of workers) {
      w.kill("SIGTERM");
      await w.status;
    }
  }
  // The local Pool, same map, same 2 processes.
  {
    const local = new Pool({ processes: 2 });
    try {
      await timeMaps((f, xs, c) => local.map(f, xs, c), "local-", "local Pool");
    } finally {
      local.terminate();
    }
  }
}
