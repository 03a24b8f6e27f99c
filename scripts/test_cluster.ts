// The last step of `deno task test`: the type check and the tests of the cluster layer
// (lib/cluster/), the only part of denomp that needs npm packages (the NATS client) and a server,
// and the JSR slow-types check of every export (`deno publish --dry-run`).
//
// Why a step of its own: the core library has no dependency, so the demo and the core tests must
// fetch nothing. The cluster's packages are pinned in cluster.lock (integrity-checked with
// --frozen) and fetched only here, only when a nats-server is there to test against: without
// NATS_URL (scripts/nats.sh start sets it; .ci/run does) the step says so and succeeds. The
// slow-types check runs here because it resolves every export, `./cluster` included, and so
// fetches the cluster's packages; that is also why deno.json turns lint's `no-slow-types` off.
// deno.json's `test.exclude` keeps lib/cluster/ and tests/cluster/ out of the core run (a
// `deno test` of both folders together resolves the npm packages); `--no-config` lets this step
// name them again (a config's exclude wins even over paths given on the command line).

const steps: string[][] = [
  ["publish", "--dry-run", "--allow-dirty", "--lock=cluster.lock", "--frozen"],
  [
    "check",
    "--lock=cluster.lock",
    "--frozen",
    "lib/cluster/",
    "tests/cluster/",
    "bench/cluster/cluster_pool.ts",
    "bench/cluster/cluster_actors.ts",
  ],
  [
    "test",
    "--no-config",
    "-A",
    "--unstable-worker-options",
    "--lock=cluster.lock",
    "--frozen",
    // console.assert throws, as in the core run, so a doc example's assertions are checked.
    "--preload=tests/_strict_assert.ts",
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
