// `deno task top <url>`: the live view in a terminal, for machines without a browser. It reads
// `/snapshot.json` from a program's dashboard (`serveDashboard()`, or `deno task demo --observe`,
// which prints the URL) once a second and prints processes, pools, queues, locks, actors and
// any deadlock as a table.
//
//   deno task top http://127.0.0.1:PORT/ [--token SECRET] [--once]

import type { Snapshot } from "../lib/observe/snapshot.ts";

/** The picture as lines of text: one section per kind of object, deadlocks first. */
export function render(s: Snapshot): string[] {
  const out = [`denomp top - ${new Date(s.time).toISOString()}`];
  for (const cycle of s.deadlocks) {
    out.push(
      "DEADLOCK: " + cycle.map((c) => `${c.process} holds ${c.holds} and waits for ${c.waitsFor}`)
        .join("; "),
    );
  }
  const table = (title: string, rows: Record<string, unknown>[], cols: string[]) => {
    if (rows.length === 0) return;
    out.push("", title);
    const cells = [cols, ...rows.map((r) => cols.map((c) => show(r[c])))];
    const widths = cols.map((_, i) => Math.max(...cells.map((r) => String(r[i]).length)));
    for (const r of cells) out.push("  " + r.map((c, i) => String(c).padEnd(widths[i])).join("  "));
  };
  const rows = (xs: unknown[]) => xs as Record<string, unknown>[];
  table("PROCESSES", rows(s.processes), ["name", "pid", "state", "exitCode", "daemon", "running"]);
  table("POOLS", s.pools, ["name", "queued", "running", "completed", "failed", "utilization"]);
  table("QUEUES", s.queues, ["name", "kind", "depth", "maxsize", "puts", "gets", "unfinished"]);
  table("LOCKS", rows(s.locks), ["name", "kind", "holders", "waiters", "locked"]);
  table("ACTORS", s.actors, ["name", "state", "mailbox", "restarts", "supervisor"]);
  return out;
}

function show(v: unknown): string {
  if (v === undefined || v === null) return "-";
  if (Array.isArray(v)) return v.length ? v.join(",") : "-";
  if (typeof v === "number" && !Number.isInteger(v)) return v.toFixed(2);
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

if (import.meta.main) {
  const url = Deno.args.find((a) => /^https?:/.test(a));
  if (!url) {
    console.error(
      "usage: deno task top <url> [--token SECRET] [--once]\n" +
        "  <url>: a program's dashboard, as serveDashboard() returns it or " +
        "`deno task demo --observe` prints it",
    );
    Deno.exit(2);
  }
  const at = Deno.args.indexOf("--token");
  const headers: HeadersInit = at >= 0 ? { Authorization: `Bearer ${Deno.args[at + 1]}` } : {};
  const once = Deno.args.includes("--once");
  for (;;) {
    let text: string;
    try {
      const res = await fetch(new URL("snapshot.json", url), { headers });
      if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
      text = render(await res.json() as Snapshot).join("\n");
    } catch (e) {
      if (once) throw e;
      text = `denomp top: ${url} does not answer (${(e as Error).message}); trying again`;
    }
    // A fresh screen each time (ANSI: home, clear), unless printing once.
    console.log(once ? text : `\x1b[H\x1b[2J${text}`);
    if (once) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
}
