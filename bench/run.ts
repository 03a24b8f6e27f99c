// `deno task bench`: runs every benchmark program of this folder in a fresh `deno` process (so
// none inherits another's heap or workers) and prints their JSON lines (WORKLOADS.md format).
//
//   deno task bench                      # denomp only
//   deno task bench --peers              # also Python's multiprocessing and the raw Deno floor,
//                                        # then a table of ratios on stderr (same run, same machine)
//   deno task bench --only w2_queue,w5_pool
//
// bench/peer_*.ts are peers needing their own servers (see each file); they are run by hand.
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

for (const p of programs) {
  await run(Deno.execPath(), [
    "run",
    "-A",
    "--unstable-worker-options",
    new URL(`${p}.ts`, here).pathname,
  ]);
}

if (flag("--peers")) {
  const workloads = [...new Set(lines.map((l) => l.workload))].filter((w) => /^W\d/.test(w));
  try {
    await run("python3", [`${shared}/peers/python_mp_bench.py`, "--only", workloads.join(",")]);
  } catch (e) {
    console.error(`# python peer not run: ${e}`);
  }
  await run(Deno.execPath(), ["run", "-A", `${shared}/platform/run_floor.ts`]);
  summarize();
}

function summarize(): void {
  const lowerIsBetter = (unit: string) => /^(ms|µs|us)/.test(unit);
  const best = (sys: RegExp, w: string) => {
    const xs = lines.filter((l) =>
      sys.test(l.system) && l.workload === w && l.ok && l.rate !== null
    );
    if (!xs.length) return undefined;
    return xs.reduce((
      a,
      b,
    ) => (lowerIsBetter(a.unit) ? (b.rate! < a.rate! ? b : a) : (b.rate! > a.rate! ? b : a)));
  };
  console.error(
    "\nworkload          denomp            python            ratio   raw floor         ratio",
  );
  for (const w of [...new Set(lines.filter((l) => l.system === "denomp").map((l) => l.workload))]) {
    const d = best(/^denomp$/, w), py = best(/^python/, w), raw = best(/^deno-raw/, w);
    if (!d) continue;
    const ratio = (other?: Line) =>
      other
        ? (lowerIsBetter(d.unit) ? other.rate! / d.rate! : d.rate! / other.rate!).toFixed(2) + "x"
        : "-";
    const fmt = (l?: Line) => (l ? `${Number(l.rate).toPrecision(4)} ${l.unit}` : "-");
    console.error(
      `${w.padEnd(18)}${fmt(d).padEnd(18)}${fmt(py).padEnd(18)}${ratio(py).padEnd(8)}${
        fmt(raw).padEnd(18)
      }${ratio(raw)}`,
    );
  }
  console.error("(ratio > 1: denomp is better)");
}
