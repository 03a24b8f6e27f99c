/**
 * The worker's side of a cluster pool: `runClusterWorker`, which the worker command (cli.ts)
 * calls, pulls a pool's tasks, runs them on executor processes (exec.ts) or inline, publishes each
 * result and only then acknowledges its task; with `actors`, it also hosts cluster actors
 * (actor_host.ts).
 *
 * @module
 */

import {
  checkName,
  type ConsumerMessages,
  HDR_FN,
  HDR_ID,
  HDR_KIND,
  HDR_OK,
  HDR_REPLY,
  type JsMsg,
  natsHeaders,
  redactUrl,
  retrying,
} from "./nats.ts";
import { clusterCtx, type Ctx } from "./context.ts";
import { type ClusterOptions, connectCluster } from "./cluster.ts";
import { ensurePoolStreams, Gate, taskStream, WORKER_CONSUMER } from "./pool.ts";
import { ValueError } from "../core/errors.ts";
import { type ExecResult, type ExecTask, runTask, type TaskKind } from "./exec.ts";
import { Queue as LocalQueue } from "../queues/queues.ts";
import { Process } from "../process/process.ts";
import { type ActorHost, hostActors } from "./actor_host.ts";

// ---------------------------------------------------------------------------------------------
// Pool: worker side

/** Options of {@link runClusterWorker} (the flags of `lib/cluster/cli.ts`). */
export interface ClusterWorkerOptions extends ClusterOptions {
  /** The pool to serve (with `module`); a worker serves a pool, hosts actors, or both. */
  pool?: string;
  /** URL or path (relative to the current directory) of the module exporting the tasks. */
  module?: string;
  /**
   * URLs or paths of modules whose exported `Actor` subclasses this worker hosts as a node of
   * the cluster's actors (`cluster.spawn`); only these classes ever run here.
   */
  actors?: string[];
  /** This node's id, for the actor registry and errors; default `<hostname>-<pid>`. */
  node?: string;
  /**
   * Milliseconds an idle virtual actor (`cluster.actor`) stays activated on this node, unless its
   * class says (`static idleMs`); default 300 000.
   */
  idleMs?: number;
  /**
   * Executor processes (Web Workers) running tasks in parallel; default `navigator.hardwareConcurrency`.
   * 0 runs tasks in this process's main thread, one at a time (for I/O-bound or tiny tasks).
   */
  processes?: number;
  /** Tasks held at once (running or queued here); default 64 per executor process (64 for 0). */
  prefetch?: number;
  /** Stops the worker: it finishes no more tasks and hands back the ones it holds. */
  signal?: AbortSignal;
  /** Where progress lines go; default `console.error`. Never given a credential. */
  log?: (line: string) => void;
}

/** Runs tasks one way or another: in Web Workers, or inline. */
interface Executor {
  run(fn: string, kind: TaskKind, payload: Uint8Array): Promise<{ ok: boolean; bytes: Uint8Array }>;
  stop(): Promise<void>;
}

async function inlineExecutor(moduleUrl: string): Promise<Executor> {
  const mod = await import(moduleUrl) as Record<string, unknown>;
  return { run: (fn, kind, payload) => runTask(mod, fn, kind, payload), stop: async () => {} };
}

/**
 * N executor processes sharing one local task queue (so the idle one takes the next task), and
 * one result queue read by a pump that settles tasks by sequence number.
 */
function processExecutor(
  moduleUrl: string,
  n: number,
  onCrash: (why: string) => void,
  onFatal: (why: string) => void,
): Executor {
  const tasks = new LocalQueue<ExecTask>();
  const results = new LocalQueue<ExecResult>();
  const waiting = new Map<number, (r: { ok: boolean; bytes: Uint8Array }) => void>();
  let seq = 0, stopping = false, quickDeaths = 0;
  const procs = new Set<Process>();
  const spawn = () => {
    const p = new Process({
      target: "./exec.ts#execLoop",
      module: import.meta.url,
      args: [moduleUrl, tasks, results],
      daemon: true,
    });
    const started = Date.now();
    p.start();
    procs.add(p);
    p.join().then(() => {
      procs.delete(p);
      if (stopping) return;
      const why = `${p.name} exited with code ${p.exitCode}`;
      // An executor that dies right after its start cannot load the module (or crashes on
      // every task): respawning it forever would only spin, so the worker gives up.
      quickDeaths = Date.now() - started < 5_000 ? quickDeaths + 1 : 0;
      if (quickDeaths >= 3) return onFatal(`${why}, 3 times in a row within 5 s of starting`);
      // Which task it held is unknown, so the caller hands all held tasks back (duplicates are
      // dropped by task id) and the executor is replaced.
      onCrash(why);
      spawn();
    });
  };
  for (let i = 0; i < n; i++) spawn();
  const pump = (async () => {
    for await (const [s, ok, bytes] of results) {
      const w = waiting.get(s);
      waiting.delete(s);
      w?.({ ok, bytes });
    }
  })();
  return {
    run(fn, kind, payload) {
      const s = ++seq;
      return new Promise<{ ok: boolean; bytes: Uint8Array }>((resolve, reject) => {
        waiting.set(s, resolve);
        // A plain Uint8Array view: the NATS client hands out Node Buffers, which the codec
        // (rightly) refuses as an unregistered class.
        const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
        tasks.put([s, fn, kind, bytes]).catch((e) => {
          waiting.delete(s);
          reject(e);
        });
      });
    },
    async stop() {
      stopping = true;
      tasks.close();
      const all = [...procs];
      for (const p of all) p.terminate();
      await Promise.all(all.map((p) => p.join(5_000)));
      results.close();
      await pump;
    },
  };
}

/**
 * Serves a cluster pool's tasks until `signal` aborts (the worker command calls this). Tasks are
 * pulled `prefetch` at a time, run on local executor processes, their results published to
 * their callers, and only then acknowledged: a worker killed at any point loses no task.
 *
 * @param options The connection, the pool and `module` and/or `actors`, and how to run tasks.
 * @returns When `signal` aborts, once the tasks held are handed back.
 * @throws {ValueError} When neither a pool nor actors are given, or a pool has no `module`.
 * @throws {Error} When the executors cannot load the module (3 quick deaths in a row).
 *
 * @example
 * ```ts
 * import { connectCluster, runClusterWorker } from "./mod.ts";
 * import { square } from "../../tests/cluster/fixtures/cluster_tasks.ts";
 * const servers = Deno.env.get("NATS_URL")!, pool = `doc-${crypto.randomUUID().slice(0, 8)}`;
 * const stop = new AbortController();
 * const onTerm = () => stop.abort(); // SIGTERM: hand back the tasks held, then return
 * Deno.addSignalListener("SIGTERM", onTerm);
 * const worker = runClusterWorker({
 *   servers,
 *   pool,
 *   module: import.meta.resolve("../../tests/cluster/fixtures/cluster_tasks.ts"),
 *   processes: 2,
 *   signal: stop.signal,
 * });
 *
 * // A caller, here in the same process:
 * await using cluster = await connectCluster({ servers });
 * await using caller = cluster.Pool({ name: pool });
 * console.assert(await caller.apply(square, [7]) === 49);
 * await caller.close();
 * stop.abort();
 * await worker;
 * Deno.removeSignalListener("SIGTERM", onTerm);
 * ```
 */
export async function runClusterWorker(options: ClusterWorkerOptions): Promise<void> {
  const log = options.log ?? ((line: string) => console.error(line));
  const actors = options.actors ?? [];
  if (options.pool === undefined && actors.length === 0) {
    throw new ValueError(
      "a worker serves a pool (pool and module), hosts actors (actors), or both",
    );
  }
  if (options.pool !== undefined && options.module === undefined) {
    throw new ValueError(`pool '${options.pool}' needs the module exporting its tasks`);
  }
  const node = checkName(
    "node",
    options.node ?? `${Deno.hostname().replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 48)}-${Deno.pid}`,
  );
  const toUrl = (m: string) => new URL(m, `file://${Deno.cwd()}/`).href;
  const cluster = await connectCluster(options);
  const ctx = clusterCtx.get(cluster)!;
  let host: ActorHost | undefined;
  try {
    if (actors.length) {
      host = await hostActors(ctx, {
        modules: actors.map(toUrl),
        node,
        log,
        idleMs: options.idleMs,
      });
    }
    if (options.pool !== undefined) {
      await servePool(ctx, options, checkName("pool", options.pool), toUrl(options.module!), log);
    } else if (!options.signal?.aborted) {
      await new Promise((resolve) => options.signal?.addEventListener("abort", resolve));
    }
  } finally {
    await host?.stop();
    await cluster.close();
  }
}

/** The pool half of {@link runClusterWorker}: pulls, runs and answers tasks until stopped. */
async function servePool(
  ctx: Ctx,
  options: ClusterWorkerOptions,
  pool: string,
  moduleUrl: string,
  log: (line: string) => void,
): Promise<void> {
  const processes = options.processes ?? navigator.hardwareConcurrency;
  const prefetch = options.prefetch ?? 64 * Math.max(1, processes);
  const { nc, js } = ctx;
  const held = new Set<JsMsg>();
  let messages: ConsumerMessages | undefined;
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  let executor: Executor | undefined;
  let fatal: Error | undefined;
  const handBack = () => {
    for (const m of held) m.nak();
    held.clear();
  };
  try {
    const ackWait = await ensurePoolStreams(ctx, pool, undefined);
    executor = processes > 0
      ? processExecutor(moduleUrl, processes, (why) => {
        log(`denomp worker: an executor died (${why}); handing back ${held.size} tasks`);
        handBack();
      }, (why) => {
        fatal = new Error(`executor processes keep dying: ${why}`);
        messages?.stop();
      })
      : await inlineExecutor(moduleUrl);
    const consumer = await js.consumers.get(taskStream(pool), WORKER_CONSUMER);
    messages = await consumer.consume({ max_messages: prefetch });
    // Held tasks stay ours while we live: "in progress" restarts the server's ack timer.
    heartbeat = setInterval(() => {
      for (const m of held) m.working();
    }, Math.max(50, Math.floor(ackWait / 3)));
    const gate = new Gate(prefetch);
    const onAbort = () => messages?.stop();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    // An abort during the start fired no event: the loop below would serve forever.
    if (options.signal?.aborted) onAbort();
    log(
      `denomp worker: serving pool '${pool}' from ${moduleUrl} with ${processes} processes ` +
        `(servers ${
          (Array.isArray(options.servers) ? options.servers : [options.servers]).map(redactUrl)
            .join(", ")
        })`,
    );
    const exec = executor;
    for await (const m of messages) {
      if (options.signal?.aborted || fatal) {
        m.nak();
        continue;
      }
      await gate.enter();
      held.add(m);
      const h = m.headers;
      const id = h?.get(HDR_ID) ?? "", reply = h?.get(HDR_REPLY) ?? "";
      const fn = h?.get(HDR_FN) ?? "", kind = (h?.get(HDR_KIND) ?? "apply") as TaskKind;
      (async () => {
        try {
          if (!reply.startsWith(`denomp.r.${pool}.`)) {
            m.term(); // not a task of this protocol: never deliver it again
            return;
          }
          const out = await exec.run(fn, kind, m.data);
          if (!held.has(m)) return; // handed back meanwhile: its redelivery will answer
          const rh = natsHeaders();
          rh.set(HDR_ID, id);
          rh.set(HDR_OK, out.ok ? "1" : "0");
          await retrying(
            nc,
            () => js.publish(reply, out.bytes, { headers: rh, msgID: `r-${id}` }),
            Date.now() + 120_000,
          );
          // Result first, acknowledgement second: dying in between means a duplicate result
          // (dropped by the caller), never a lost one.
          if (held.delete(m)) m.ack();
        } catch (e) {
          if (held.delete(m)) m.nak(1000);
          log(`denomp worker: task ${id} handed back: ${(e as Error).message}`);
        } finally {
          gate.leave();
        }
      })();
    }
    options.signal?.removeEventListener("abort", onAbort);
    if (fatal) throw fatal;
  } finally {
    handBack();
    if (heartbeat !== undefined) clearInterval(heartbeat);
    await messages?.close();
    await executor?.stop();
  }
}
