// W10-pickle (../shared/bench/WORKLOADS.md): `pickle.dumps` + `pickle.loads` of 200,000 items
// `{ i, x: i * 0.5, s: "item-" + i, xs: [i, i + 1, i + 2] }`, the codec alone (no processes).
// As python_mp_bench.py does, 1,000 items are made up front and each round encodes and decodes
// all of them, so both sides time the codec and not the making of the items.
//
//   deno run -A bench/w10_pickle.ts [--n 200000] [--python [--shared ../shared/bench]]
//
// `--python` also runs the Python peer's W10 (`python_mp_bench.py --only W10-pickle`) in the
// same run and prints its line and the ratio (`deno task bench --peers` does the same for all).
import { dumps, loads } from "../lib/pickle/pickle.ts";
import { arg, emit, rounds, since } from "./_common.ts";

type Item = { i: number; x: number; s: string; xs: number[] };

/** Encodes and decodes `n` items (in rounds of the same 1,000); true if the last one matches. */
export function w10(n: number): boolean {
  const items: Item[] = [];
  for (let i = 0; i < 1000; i++) {
    items.push({ i, x: i * 0.5, s: "item-" + i, xs: [i, i + 1, i + 2] });
  }
  let back: Item | undefined;
  for (let k = 0; k < n / 1000; k++) {
    for (const it of items) back = loads(dumps(it)) as Item;
  }
  const last = items[items.length - 1];
  return back !== undefined && back.i === last.i && back.x === last.x && back.s === last.s &&
    back.xs.length === 3 && back.xs[2] === last.xs[2];
}

if (import.meta.main) {
  const n = Number(arg("n", "200000"));
  let lastRate = 0;
  for (const { variant, warmUp } of rounds("codec")) {
    const t0 = performance.now();
    const ok = w10(n);
    const s = since(t0);
    if (warmUp) continue;
    lastRate = n / s;
    emit({ workload: "W10-pickle", variant, n, seconds: s, rate: n / s, unit: "items/s", ok });
  }
  if (Deno.args.includes("--python")) {
    const shared = arg("shared", new URL("../../shared/bench/", import.meta.url).pathname);
    const out = await new Deno.Command("python3", {
      args: [
        `${shared}/peers/python_mp_bench.py`,
        "--only",
        "W10-pickle",
        "--scale",
        String(n / 200000),
      ],
      stdout: "piped",
    }).output();
    const line = new TextDecoder().decode(out.stdout).trim();
    console.log(line);
    const py = JSON.parse(line.split("\n").at(-1)!) as { rate: number };
    console.error(`# W10-pickle: denomp / Python = ${(lastRate / py.rate).toFixed(2)}`);
  }
}
