// The peer of bench/cluster/cluster_pool.ts: BullMQ on a local Redis doing the same work — 10,000 jobs
// `square(x)` over 2 worker processes (concurrency 1 each, as the cluster workers run one task at a
// time per executor), added with `addBulk`, the clock running from the add until every job's
// result was seen by the producer (QueueEvents "completed"). Run manually:
//
//   apt-get install -y redis-server && redis-server --port 6390 --bind 127.0.0.1 --save '' &
//   REDIS_PORT=6390 deno run -A --node-modules-dir=auto --lock=bench/cluster/peer_bullmq.lock \
//     bench/cluster/peer_bullmq.ts [--n 10000]
//
// The worker processes are this same script with `--worker`.
// deno-lint-ignore-file no-import-prefix
import { Queue, QueueEvents, Worker } from "npm:bullmq@6.7.0";
// BullMQ 6 loads ioredis only when given connection options under CommonJS; here each queue,
// event listener and worker gets a client of its own (BullMQ needs separate blocking connections).
import { Redis } from "npm:ioredis@5.11.1";
import { emit, since } from "../_common.ts";
import { square } from "../tasks/square.ts";

const port = Number(Deno.env.get("REDIS_PORT") ?? 6379);
const connection = () => new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: null });
const nArg = Deno.args.indexOf("--n");
const N = nArg >= 0 ? Number(Deno.args[nArg + 1]) : 10_000;
const qArg = Deno.args.indexOf("--queue");

if (Deno.args.includes("--worker")) {
  const name = Deno.args[qArg + 1];
  const w = new Worker(name, (job) => Promise.resolve(square(job.data.x as number)), {
    connection: connection(),
    concurrency: 1,
  });
  Deno.addSignalListener("SIGTERM", async () => {
    await w.close();
    Deno.exit(0);
  });
  await new Promise(() => {}); // until SIGTERM
} else if (import.meta.main) {
  const name = `bench_${crypto.randomUUID().slice(0, 8)}`;
  const queue = new Queue(name, { connection: connection() });
  const events = new QueueEvents(name, { connection: connection() });
  await events.waitUntilReady();
  const workers = [0, 1].map(() =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--node-modules-dir=auto",
        new URL(import.meta.url).pathname,
        "--worker",
        "--queue",
        name,
      ],
      env: { REDIS_PORT: String(port) },
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn()
  );
  const run = async (n: number) => {
    const results = new Map<string, number>();
    let resolve!: () => void;
    const all = new Promise<void>((r) => (resolve = r));
    const onDone = ({ jobId, returnvalue }: { jobId: string; returnvalue: unknown }) => {
      results.set(jobId, Number(returnvalue));
      if (results.size === n) resolve();
    };
    events.on("completed", onDone);
    const jobs = await queue.addBulk(
      Array.from(
        { length: n },
        (_, i) => ({ name: "square", data: { x: i }, opts: { removeOnComplete: true } }),
      ),
    );
    await all;
    events.off("completed", onDone);
    return jobs.every((j, i) => results.get(j.id!) === i * i);
  };
  await run(500); // warm-up
  const t0 = performance.now();
  const ok = await run(N);
  const s = since(t0);
  emit({
    workload: "cluster-pool-map",
    variant: "bullmq-6.7.0",
    n: N,
    seconds: s,
    rate: N / s,
    unit: "tasks/s",
    ok,
    workers: 2,
    transport: "redis loopback",
  });
  for (const w of workers) {
    w.kill("SIGTERM");
    await w.status;
  }
  await events.close();
  await queue.obliterate({ force: true });
  await queue.close();
  Deno.exit(0);
}
