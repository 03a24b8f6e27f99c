// `deno task bench`: runs every benchmark program of this folder in a fresh `deno` process (so
// none inherits another's heap or workers) and prints their JSON lines (WORKLOADS.md format).
//
//   deno task bench                      # denomp only
//   deno task bench --peers              # also Python's multiprocessing and the raw Deno floor,
//                                        # then a table of ratios on stderr (same run, same machine)
//   deno task bench --only w2_queue,w5_pool
//
// bench/cluster/cluster_pool.ts runs too when NATS_URL is set (scripts/nats.sh starts a server);
// bench/cluster/peer_bullmq.ts needs a Redis and is run by hand (see the file).
// The peers live in ../shared/bench (beside the checkout); `--shared DIR` points elsewhere.

const here = new URL(".", import.meta.url);
const args = Deno.args;
const flag = (name: string) => args.includes(name);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const only = opt("--only")?.split(",");
const shared = opt("--shared") ?? new URL("../../shared/bench/", import.meta.url).pathname;

interface Line {
  system: string;
  workload: string;
  variant?: string;
  rate: number | null;
  unit: string;
  ok: boolean;
  [k: string]: unknown;
}
const lines: Line[] = [];

async function run(cmd: string, cmdArgs: string[], cwd?: string): Promise<void> {
  const out = await new Deno.Command(cmd, {
    args: cmdArgs,
    cwd,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  for (const l of new TextDecoder().decode(out.stdout).split("\n")) {
    if (!l.startsWith("{")) continue;
    console.log(l);
    try {
      lines.push(JSON.parse(l));
    } catch { /* not a result line */ }
  }
  if (out.code !== 0) console.error(`# ${cmd} ${cmdArgs.join(" ")} exited with ${out.code}`);
}

const programs = [...Deno.readDirSync(here)]
  .filter((e) =>
    e.isFile && e.name.endsWith(".ts") && !/^(_|peer_)/.test(e.name) && e.name !== "run.ts"
  )
  .map((e) => e.name.replace(/\.ts$/, ""))
  .filter((n) => !only || only.includes(n))
  .sort();

// The cluster bench alone needs npm packages (pinned in cluster.lock): only with a server to use.
if (Deno.env.get("NATS_URL") && (!only || only.includes("cluster_pool"))) {
  programs.push("cluster/cluster_pool");
}

for (const p of programs) {
  await run(Deno.execPath(), [
    "run",
    "-A",
    "--unstable-worker-options",
    ...(p.startsWith("cluster/") ? [`--lock=${new URL("../cluster.lock", here).pathname}`] : []),
    new URL(`${p}.ts`, here).pathname,
  ]);
}

/** The workloads the Python peer knows (WORKLOADS.md); denomp adds variants of its own. */
const PYTHON_WORKLOADS = [
  "W1-spawn",
  "W2-queue",
  "W3-joinable",
  "W4-pipe",
  "W5-pool-map",
  "W5b-pool-async",
  "W6-lock",
  "W7-manager",
  "W8-bytes",
  "W9-pool-lifecycle",
];
/**
 * The raw-floor variant that does the same work as denomp (a lock-free `Atomics.add` or a bare
 * counter without a message would not): the floor a library can approach, not a different job.
 */
const FLOOR_VARIANT: Record<string, string> = {
  "W1-spawn": "terminate",
  "W2-queue": "ring-json",
  "W4-pipe": "ring-json-spin-wait",
  "W5-pool-map": "chunk-1000",
  "W5b-pool-async": "per-task-promise",
  "W6-lock": "futex-2w",
  "W8-bytes": "sab-ring",
};

if (flag("--peers")) {
  const workloads = PYTHON_WORKLOADS.filter((w) => lines.some((l) => l.workload === w));
  try {
    if (workloads.length) {
      await run("python3", [`${shared}/peers/python_mp_bench.py`, "--only", workloads.join(",")]);
    }
    // Issue 2 compares W1 with both of Python's start methods (fork is the default above).
    if (workloads.includes("W1-spawn")) {
      await run("python3", [
        `${shared}/peers/python_mp_bench.py`,
        "--only",
        "W1-spawn",
        "--start-method",
        "spawn",
      ]);
    }
  } catch (e) {
    console.error(`# python peer not run: ${e}`);
  }
  await run(Deno.execPath(), ["run", "-A", `${shared}/platform/run_floor.ts`]);
  summarize();
}

function summarize(): void {
  const lowerIsBetter = (unit: string) => /^(ms|µs|us)/.test(unit);
  const median = (xs: Line[]) => {
    const v = xs.map((l) => l.rate!).sort((a, b) => a - b);
    return v.length ? v[(v.length - 1) >> 1] : undefined;
  };
  const good = (f: (l: Line) => boolean) => lines.filter((l) => l.ok && l.rate !== null && f(l));
  const ratio = (unit: string, ours: number, other?: number) =>
    other === undefined
      ? "-"
      : (lowerIsBetter(unit) ? other / ours : ours / other).toFixed(2) + "x";
  const num = (x?: number) => (x === undefined ? "-" : Number(x.toPrecision(4)).toString());
  const rows: string[][] = [[
    "workload",
    "variant",
    "unit",
    "denomp",
    "python(method)",
    "ratio",
    "raw floor",
    "ratio",
  ]];
  const seen = new Set<string>();
  for (const d of good((l) => l.system === "denomp")) {
    const key = `${d.workload}/${d.variant ?? ""}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const ours = median(
      good((l) => l.system === "denomp" && `${l.workload}/${l.variant ?? ""}` === key),
    )!;
    const py = good((l) => /^python/.test(l.system) && l.workload === d.workload);
    const pyCols = py.length
      ? py.map((l) => `${num(l.rate!)}(${l.start_method ?? "?"})`).join(" ")
      : "-";
    const best = lowerIsBetter(d.unit) ? Math.min : Math.max;
    const pyBest = py.length ? best(...py.map((l) => l.rate!)) : undefined;
    const fv = FLOOR_VARIANT[d.workload];
    const raw = fv
      ? median(
        good((l) => /^deno-raw/.test(l.system) && l.workload === d.workload && l.variant === fv),
      )
      : undefined;
    rows.push([
      d.workload,
      String(d.variant ?? ""),
      d.unit,
      num(ours),
      pyCols,
      ratio(d.unit, ours, pyBest),
      num(raw),
      ratio(d.unit, ours, raw),
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)) + 2);
  console.error("");
  for (const r of rows) {
    console.error(r.map((cell, c) => cell.padEnd(widths[c])).join("").trimEnd());
  }
  console.error(
    "(ratio > 1: denomp is better; python: its best start method; raw floor: the median of the " +
      "platform variant doing the same work, see FLOOR_VARIANT)",
  );
}
