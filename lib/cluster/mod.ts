/**
 * Beyond one machine: queues, pools and shared dicts on NATS JetStream, with the local API.
 *
 * ```ts
 * import { connectCluster } from "./mod.ts"; // "jsr:@denomp/multiprocessing/cluster"
 * await using cluster = await connectCluster({ servers: Deno.env.get("NATS_URL")! });
 * const id = crypto.randomUUID().slice(0, 8); // the examples' names are unique
 * const q = cluster.JoinableQueue<string>(`jobs-${id}`); // any machine, same name, same queue
 * const d = cluster.dict<string, number>(`scores-${id}`); // JetStream KV
 * const pool = cluster.Pool({ name: `crunch-${id}` }); // run by `deno run -A .../worker ...`
 * await q.put("job-1");
 * await d.set(await q.get(), 1);
 * await q.taskDone();
 * console.assert(await d.get("job-1") === 1);
 * await Promise.all([q.destroy(), d.destroy(), pool.close()]);
 * ```
 *
 * How each concept maps onto JetStream, and why:
 * - A queue is a **work-queue stream** (a message is stored until acknowledged) with one shared
 *   durable pull consumer: every `get`, on any machine, pulls from that consumer, so each item
 *   goes to one getter. `Queue.get` acknowledges at once; `JoinableQueue.get` leaves the item
 *   pending until `taskDone()` acknowledges it, while a heartbeat (`+WPI`) keeps it ours. When
 *   the getter dies the heartbeat stops, and the server redelivers the item after the ack wait:
 *   delivery is at least once. `join()` waits until the consumer has nothing pending nor
 *   unacknowledged, which counts every machine.
 * - `dict` is a **KV bucket**; keys of any sendable kind are encoded with the codec, and the
 *   bucket's per-key revisions give compare-and-set.
 * - A pool is a work-queue stream of tasks, pulled by worker processes (`runClusterWorker`,
 *   the `lib/cluster/cli.ts` command), and a stream of results with one consumer per caller.
 *   A worker publishes a result, then acknowledges the task, so a worker killed in between
 *   causes a redelivery and maybe a second result: callers drop results whose task id they
 *   already have. Task and result publishes carry a message id, so the server's duplicate window
 *   drops the copies a retried publish makes.
 *
 * Items, arguments and results are encoded with the library's one codec (lib/core/reduction.ts), so
 * they keep the fidelity of local queues (Map, Set, Date, BigInt, typed arrays, errors).
 *
 * Where each part lives: `cluster.ts` (connecting, `Cluster`), `queue.ts`, `dict.ts`, `pool.ts` (the
 * caller's side) and `worker.ts` (the worker's side, `runClusterWorker`; `cli.ts` is its command),
 * `exec.ts` (running one task), `actors.ts`, `actor_client.ts`, `actor_host.ts` and `virtual.ts`
 * (actors on the cluster), `watch.ts` (node heartbeats, monitors and links across nodes), `nats.ts`
 * (what they share, and the one module that names the NATS client's packages).
 *
 * This module is not exported by mod.ts: it is the only part of denomp that needs npm packages
 * (the NATS client), and users who never use NATS should not load them.
 *
 * @module
 */

export { Cluster, type ClusterOptions, type ClusterTlsOptions, connectCluster } from "./cluster.ts";
export {
  type ClusterGetOptions,
  ClusterJoinableQueue,
  type ClusterPutOptions,
  ClusterQueue,
  type ClusterQueueOptions,
} from "./queue.ts";
export { ClusterDict, type ClusterDictOptions, type DictUpdate } from "./dict.ts";
export {
  type ClusterApplyOptions,
  ClusterAsyncResult,
  ClusterPool,
  type ClusterPoolOptions,
  type TaskFn,
} from "./pool.ts";
export { type ClusterWorkerOptions, runClusterWorker } from "./worker.ts";
export { ClusterActorRef, type ClusterSpawnOptions } from "./actors.ts";
export { HEARTBEAT_MS, NODE_TIMEOUT_MS } from "./watch.ts";
export { redactUrl } from "./nats.ts";
// The actor types the cluster's signatures name, so that its docs are whole (the same as the root's).
export { Actor, type ActorClass } from "../actor/actor.ts";
export { type ExitReason } from "../actor/exit.ts";
export {
  type ActorMethods,
  ActorRef,
  type MessageOf,
  type RemoteMethod,
  type ReplyOf,
} from "../actor/ref.ts";
export { type CallOptions } from "../actor/call.ts";
export { type TimerRef } from "../actor/timers.ts";
