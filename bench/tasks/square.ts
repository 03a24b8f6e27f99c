// The task of the cluster pool benchmarks (bench/cluster_pool.ts, bench/peer_bullmq.ts).

/** x²: a task small enough that the benchmark measures the transport, not the work. */
export function square(x: number): number {
  return x * x;
}
