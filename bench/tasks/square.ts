// The task of the cluster pool benchmarks (bench/cluster/cluster_pool.ts and peer_bullmq.ts).

/** x²: a task small enough that the benchmark measures the transport, not the work. */
export function square(x: number): number {
  return x * x;
}
