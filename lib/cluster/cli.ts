/**
 * The worker command of a cluster pool: serves the tasks of `cluster.Pool({ name })` from any
 * machine that reaches the NATS servers.
 *
 * ```sh
 * deno run -A lib/cluster/cli.ts --servers nats://127.0.0.1:4222 --pool NAME \
 *   --module ./tasks.ts --processes 4
 * ```
 *
 * A worker may also (or only) host actors, as a node of `cluster.spawn`:
 *
 * ```sh
 * deno run -A lib/cluster/cli.ts --servers nats://127.0.0.1:4222 --actors ./actors.ts
 * ```
 *
 * Flags: `--servers` (comma-separated; default `$NATS_URL`), `--pool` and `--module`, and/or
 * `--actors` (comma-separated modules whose exported `Actor` subclasses this node hosts; no other
 * code runs here), `--node` (the node's id; default `<hostname>-<pid>`), `--idle-ms` (how long an
 * idle virtual actor stays activated here unless its class says; default 300 000),
 * `--processes` (executor Web Workers; 0 runs tasks in the main thread), `--prefetch`,
 * `--tls-ca`, `--tls-cert`, `--tls-key`. Credentials come from the environment only
 * (`NATS_USER` and `NATS_PASS`, or `NATS_TOKEN`), so they never show in a process list, and
 * they are never printed. SIGINT/SIGTERM stop the worker after handing its held tasks back.
 *
 * @module
 */

import { type ClusterTlsOptions, type ClusterWorkerOptions, runClusterWorker } from "./mod.ts";

/**
 * Parsed command line of the worker: the {@link ClusterWorkerOptions} the flags set (documented
 * there), with the servers as a list.
 */
export interface WorkerArgs extends
  Pick<
    ClusterWorkerOptions,
    "pool" | "module" | "actors" | "node" | "idleMs" | "processes" | "prefetch" | "tls"
  > {
  /** Server URLs. */
  servers: string[];
}

/**
 * Parses the worker's flags (`--name value` or `--name=value`); throws on a missing or unknown one.
 *
 * @example
 * ```ts
 * import { parseWorkerArgs } from "./cli.ts";
 * const a = parseWorkerArgs(["--servers", "nats://127.0.0.1:4222", "--pool", "p", "--module", "./t.ts"]);
 * console.assert(a.pool === "p" && a.servers.length === 1);
 * const n = parseWorkerArgs(["--actors", "./a.ts,./b.ts", "--idle-ms", "60000"], {
 *   NATS_URL: "nats://127.0.0.1:4222",
 * });
 * console.assert(n.actors?.length === 2 && n.pool === undefined && n.idleMs === 60000);
 * ```
 */
export function parseWorkerArgs(
  argv: string[],
  env: Record<string, string | undefined> = {},
): WorkerArgs {
  const flags = new Map<string, string>();
  const known = [
    "servers",
    "pool",
    "module",
    "processes",
    "prefetch",
    "actors",
    "node",
    "idle-ms",
    "tls-ca",
    "tls-cert",
    "tls-key",
  ];
  for (let i = 0; i < argv.length; i++) {
    const m = argv[i].match(/^--([a-z-]+)(?:=(.*))?$/);
    if (!m || !known.includes(m[1])) {
      throw new Error(`unknown argument '${argv[i]}' (flags: --${known.join(", --")})`);
    }
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new Error(`--${m[1]} needs a value`);
    flags.set(m[1], value);
  }
  const servers = flags.get("servers") ?? env.NATS_URL;
  if (!servers) throw new Error("--servers (or NATS_URL) is required");
  if (!flags.has("pool") && !flags.has("actors")) {
    throw new Error("--pool (with --module) or --actors is required");
  }
  if (flags.has("pool") !== flags.has("module")) {
    throw new Error("--pool and --module go together");
  }
  const int = (f: string) => {
    const v = flags.get(f);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) {
      throw new Error(`--${f} must be a non-negative integer: got '${v}'`);
    }
    return n;
  };
  const tls: ClusterTlsOptions = {};
  if (flags.has("tls-ca")) tls.caFile = flags.get("tls-ca");
  if (flags.has("tls-cert")) tls.certFile = flags.get("tls-cert");
  if (flags.has("tls-key")) tls.keyFile = flags.get("tls-key");
  return {
    servers: servers.split(",").map((s) => s.trim()).filter(Boolean),
    pool: flags.get("pool"),
    module: flags.get("module"),
    actors: flags.get("actors")?.split(",").map((s) => s.trim()).filter(Boolean),
    node: flags.get("node"),
    idleMs: int("idle-ms"),
    processes: int("processes"),
    prefetch: int("prefetch"),
    tls: Object.keys(tls).length ? tls : undefined,
  };
}

if (import.meta.main) {
  let args: WorkerArgs;
  try {
    args = parseWorkerArgs(Deno.args, Deno.env.toObject());
  } catch (e) {
    console.error(`denomp worker: ${(e as Error).message}`);
    Deno.exit(2);
  }
  const stop = new AbortController();
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => stop.abort());
  try {
    await runClusterWorker({
      ...args,
      user: Deno.env.get("NATS_USER"),
      pass: Deno.env.get("NATS_PASS"),
      token: Deno.env.get("NATS_TOKEN"),
      signal: stop.signal,
    });
  } catch (e) {
    console.error(`denomp worker: ${(e as Error).message}`);
    Deno.exit(1);
  }
  Deno.exit(0);
}
