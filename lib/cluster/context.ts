/**
 * The context every handle of one cluster connection shares (`Ctx`): the connection, its
 * JetStream and KV contexts, and what closing must stop. Apart from `nats.ts` because it names
 * the actor layer's client, which itself stands on `nats.ts`.
 *
 * @module
 */

import type { JetStreamClient, JetStreamManager, KV, Kvm, NatsConnection } from "./nats.ts";
import type { ActorClient } from "./actor_client.ts";
import type { NodeWatch } from "./watch.ts";

/** What every handle of a cluster shares: its connection and JetStream contexts. */
export interface Ctx {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kvm: Kvm;
  ackWait: number;
  closing: AbortController;
  /** The bucket of closed queues' marks, opened on first use. */
  closedMarks?: Promise<KV>;
  /** Things to stop before the connection closes (pools' result consumers, heartbeats). */
  closers: Set<() => Promise<void> | void>;
  /** The actor registry bucket (lib/cluster/actors.ts), opened on first use. */
  actorRegistry(): Promise<KV>;
  /** The reply inbox of this client's actor calls, made on first use. */
  actorClient?: ActorClient;
  /** The watch of other nodes' heartbeats (lib/cluster/watch.ts), made on first use. */
  nodeWatch?: NodeWatch;
}

/** Lets the worker side of this module reach a cluster's context without a public accessor. */
export const clusterCtx = new WeakMap<object, Ctx>();
