// The last step of `deno task test`: the type check and the tests of the cluster layer
// (lib/cluster/), the only part of denomp that needs npm packages (the NATS client) and a server.
//
// Why a step of its own: the core library has no dependency, so the demo and the core tests must
// fetch nothing. The cluster's packages are pinned in cluster.lock (integrity-checked with
// --frozen) and fetched only here, only when a nats-server is there to test against: without
// NATS_URL (scripts/nats.sh start sets it; .ci/run does) the step says so and succeeds.

const steps: string[][] = [
  [
    "check",
    "--lock=cluster.lock",
    "--frozen",
    "lib/cluster/",
    "tests/cluster/",
    "bench/cluster/cluster_pool.ts",
  ],
  [
    "test",
    "-A",
    "--unstable-worker-options",
    "--lock=cluster.lock",
    "--frozen",
    "--doc",
    "tests/cluster/",
    "lib/cluster/",
  ],
];

if (import.meta.main) {
  if (!Deno.env.get("NATS_URL")) {
    console.log(
      'cluster tests skipped: NATS_URL is not set (eval "$(bash scripts/nats.sh start)" starts a ' +
        "server and sets it)",
    );
    Deno.exit(0);
  }
  const root = new URL("..", import.meta.url).pathname;
  for (const args of steps) {
    const { code } = await new Deno.Command(Deno.execPath(), {
      args,
      cwd: root,
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (code !== 0) Deno.exit(code);
  }
}
