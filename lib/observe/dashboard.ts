/**
 * `serveDashboard()`: a live web page of the whole program — the process and supervision trees,
 * pools, queues, actors, locks and deadlocks — plus `/snapshot.json` and `/metrics`
 * (Prometheus).
 *
 * Why a page served from the program itself: a program stuck in a deadlock cannot be asked
 * anything, but its shared memory can still be read (see `snapshot.ts`), so the server answers
 * from any healthy isolate while the rest of the program is stuck. It is plain HTML, CSS, JS and
 * SVG in one string: no dependency, nothing to build. The page is sent with the current picture
 * inlined, so it shows everything at once; then a Server-Sent Events stream (`/events`) pushes a
 * new picture every second, and the page keeps the history its charts draw.
 *
 * Read-only: every route is a GET. Bound to the loopback interface by default; binding anywhere
 * else requires a `token`, which every request must then carry (`?token=` or
 * `Authorization: Bearer`).
 *
 * @module
 */

import { optionsOf } from "../core/args.ts";
import { ValueError } from "../core/errors.ts";
import { type Snapshot, snapshot } from "./snapshot.ts";

/** Options of {@link serveDashboard}. */
export interface DashboardOptions {
  /** The TCP port; default 0 (any free port: read `url`). */
  port?: number;
  /** The interface; default `"127.0.0.1"`. Any other than loopback requires `token`. */
  hostname?: string;
  /** A secret every request must carry (`?token=...` or `Authorization: Bearer ...`). */
  token?: string;
  /** Milliseconds between two pictures pushed to the page; default 1000. */
  interval?: number;
}

/** A running dashboard server: `await using` it, or `close()` it. */
export interface Dashboard extends AsyncDisposable {
  /** The page's address (with the token, when there is one). */
  readonly url: string;
  /** Stops serving: closes the live streams and the listener. */
  close(): Promise<void>;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|\[::1\]|localhost)$/;

/**
 * Serves a live page of the program (`/`), its picture as JSON (`/snapshot.json`) and its
 * metrics in Prometheus's text format (`/metrics`). Resolves once listening.
 *
 * @example
 * ```ts
 * import { serveDashboard } from "jsr:@denomp/multiprocessing";
 * await using dash = await serveDashboard();
 * const res = await fetch(new URL("/metrics", dash.url));
 * console.assert((await res.text()).includes("# TYPE denomp_processes gauge"));
 * ```
 */
export async function serveDashboard(options?: DashboardOptions): Promise<Dashboard> {
  const o = optionsOf(options, "serveDashboard", "serveDashboard({ port: 8080 })");
  const hostname = o.hostname ?? "127.0.0.1", port = o.port ?? 0, interval = o.interval ?? 1000;
  const token = o.token;
  if (token !== undefined && (typeof token !== "string" || token.length === 0)) {
    throw new TypeError("serveDashboard: token must be a non-empty string");
  }
  if (!LOOPBACK.test(hostname) && token === undefined) {
    throw new ValueError(
      `serveDashboard: binding to ${hostname} (not loopback) needs a token: ` +
        `serveDashboard({ hostname: "${hostname}", token: "a long secret" })`,
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ValueError(`serveDashboard: port must be an integer in 0..65535, got ${port}`);
  }
  if (!(interval >= 50)) {
    throw new ValueError(`serveDashboard: interval must be at least 50 ms, got ${interval}`);
  }
  const live = new Live(interval);
  const listening = Promise.withResolvers<Deno.NetAddr>();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { port, hostname, onListen: (addr) => listening.resolve(addr as Deno.NetAddr) },
      (req) => handle(req, token, live),
    );
  } catch (e) {
    live.stop();
    throw e;
  }
  const addr = await listening.promise;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const url = `http://${host}:${addr.port}/${token ? `?token=${encodeURIComponent(token)}` : ""}`;
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      live.stop();
      await server.shutdown();
    })();
  return { url, close, [Symbol.asyncDispose]: close };
}

/** How many pictures the charts look back (two minutes at one a second). */
const HISTORY = 120;

/** The series the page's charts draw: per pool and per queue, one number per picture. */
interface History {
  utilization: Record<string, number[]>;
  latency: Record<string, number[]>;
  depth: Record<string, number[]>;
}

/**
 * One picture every `interval` ms, shared by every open page (one `snapshot()` per interval
 * however many pages watch), and the recent history of what the charts draw, so that a page
 * opened now shows the last two minutes at once.
 */
class Live {
  readonly #clients = new Set<ReadableStreamDefaultController<Uint8Array>>();
  readonly #enc = new TextEncoder();
  readonly history: History = { utilization: {}, latency: {}, depth: {} };
  #timer: ReturnType<typeof setInterval>;

  constructor(interval: number) {
    this.#timer = setInterval(() => this.#tick(), interval);
  }

  /** The picture now, also recorded in the history. */
  picture(): Snapshot {
    const s = snapshot();
    const add = (series: Record<string, number[]>, key: string, v: number) => {
      const h = series[key] ??= [];
      h.push(v);
      if (h.length > HISTORY) h.shift();
    };
    for (const p of s.pools) {
      add(this.history.utilization, String(p.name), Number(p.utilization) || 0);
      add(this.history.latency, String(p.name), Number((p.runMs as { p99?: number })?.p99) || 0);
    }
    for (const q of s.queues) {
      add(this.history.depth, String(q.name), Number(q.depth ?? q.mailbox) || 0);
    }
    return s;
  }

  #tick(): void {
    const data = this.#enc.encode(`data: ${JSON.stringify(this.picture())}\n\n`);
    for (const c of this.#clients) {
      try {
        c.enqueue(data);
      } catch {
        this.#clients.delete(c); // closed by the page
      }
    }
  }

  /** A Server-Sent Events stream of the pictures, until the page or the server closes it. */
  events(): Response {
    let me: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        me = c;
        this.#clients.add(c);
        c.enqueue(this.#enc.encode(`data: ${JSON.stringify(snapshot())}\n\n`));
      },
      cancel: () => {
        this.#clients.delete(me);
      },
    });
    return new Response(body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
    });
  }

  /** Stops the pictures and closes every stream. */
  stop(): void {
    clearInterval(this.#timer);
    for (const c of this.#clients) {
      try {
        c.close();
      } catch { /* closed already */ }
    }
    this.#clients.clear();
  }
}

function authorized(req: Request, token: string | undefined): boolean {
  if (token === undefined) return true;
  const given = new URL(req.url).searchParams.get("token") ??
    req.headers.get("authorization")?.replace(/^Bearer\s+/i, "");
  if (given === null || given === undefined || given.length !== token.length) return false;
  let diff = 0; // compared in constant time
  for (let i = 0; i < token.length; i++) diff |= given.charCodeAt(i) ^ token.charCodeAt(i);
  return diff === 0;
}

function handle(req: Request, token: string | undefined, live: Live): Response {
  if (!authorized(req, token)) return new Response("a valid token is required\n", { status: 401 });
  if (req.method !== "GET" && req.method !== "HEAD") {
    return new Response("read-only\n", { status: 405, headers: { allow: "GET, HEAD" } });
  }
  const path = new URL(req.url).pathname;
  const headers = { "cache-control": "no-store" };
  switch (path) {
    case "/":
      return new Response(page(snapshot(), live.history, token), {
        headers: { ...headers, "content-type": "text/html; charset=utf-8" },
      });
    case "/snapshot.json":
      return Response.json(snapshot(), { headers });
    case "/metrics":
      return new Response(metrics(snapshot()), {
        headers: { ...headers, "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    case "/events":
      return live.events();
    default:
      return new Response("not found\n", { status: 404 });
  }
}

// ---------------------------------------------------------------------------------------------
// Prometheus

type Labels = Record<string, string>;
interface Family {
  help: string;
  type: "gauge" | "counter" | "summary";
  samples: [Labels, number][];
}

const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

/**
 * The snapshot in Prometheus's text format: every family has `# HELP` and `# TYPE` lines, even
 * with no sample now, so a scraper sees the whole set from the first scrape.
 *
 * @example
 * ```ts
 * import { metrics } from "./dashboard.ts";
 * import { snapshot } from "jsr:@denomp/multiprocessing";
 * console.assert(metrics(snapshot()).includes("# TYPE denomp_pool_tasks_completed_total counter"));
 * ```
 */
export function metrics(s: Snapshot): string {
  const f: Record<string, Family> = {};
  const fam = (name: string, type: Family["type"], help: string): [Labels, number][] => {
    const family: Family = { help, type, samples: [] };
    f[`denomp_${name}`] = family;
    return family.samples;
  };
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
  /**
   * Families that each read one numeric field of a record (`[field, name, type, help]`); the
   * function returned adds a record's samples. With `optional`, a record without the field (a
   * kind of queue that does not count it) gives none.
   */
  const byField = (
    optional: boolean,
    specs: readonly (readonly [string, string, Family["type"], string])[],
  ) => {
    const fams = specs.map(([field, name, type, help]) => [field, fam(name, type, help)] as const);
    return (labels: Labels, r: Record<string, unknown>) => {
      for (const [field, samples] of fams) {
        if (!optional || field in r) samples.push([labels, num(r[field])]);
      }
    };
  };

  const processes = fam("processes", "gauge", "Processes by state (running, stopped, dead).");
  for (const state of ["running", "stopped", "dead"]) {
    processes.push([{ state }, s.processes.filter((p) => p.state === state).length]);
  }
  const deadlocks = fam("deadlocks", "gauge", "Cycles in the wait-for graph now.");
  deadlocks.push([{}, s.deadlocks.length]);

  const held = fam("lock_holders", "gauge", "Processes or threads holding the lock.");
  const waiting = fam("lock_waiters", "gauge", "Processes or threads waiting for the lock.");
  const value = fam("semaphore_value", "gauge", "Permits available in the semaphore.");
  for (const l of s.locks) {
    const labels = { lock: l.name, kind: l.kind };
    held.push([labels, l.holders.length]);
    waiting.push([labels, l.waiters.length]);
    if (typeof l.value === "number") value.push([labels, l.value]);
  }

  const depth = fam("queue_depth", "gauge", "Items in the queue (messages in a mailbox).");
  const maxsize = fam("queue_maxsize", "gauge", "The queue's bound (0: unbounded).");
  const queueCounts = byField(true, [
    ["puts", "queue_puts_total", "counter", "Items put into the queue."],
    ["gets", "queue_gets_total", "counter", "Items taken from the queue."],
    ["waitingGetters", "queue_waiting_getters", "gauge", "Callers waiting in get()."],
    ["waitingPutters", "queue_waiting_putters", "gauge", "Callers waiting in put()."],
    ["unfinished", "queue_unfinished_tasks", "gauge", "A JoinableQueue's unfinished tasks."],
  ]);
  for (const q of s.queues) {
    const labels = { queue: String(q.name), kind: String(q.kind) };
    depth.push([labels, num(q.depth ?? q.mailbox)]);
    maxsize.push([labels, num(q.maxsize)]);
    queueCounts(labels, q);
  }

  const workers = fam("pool_workers", "gauge", "Pool workers by state (busy, idle).");
  const poolCounts = byField(false, [
    ["queued", "pool_tasks_queued", "gauge", "Tasks waiting for a pool worker."],
    ["running", "pool_tasks_running", "gauge", "Tasks running in the pool."],
    ["completed", "pool_tasks_completed_total", "counter", "Tasks the pool completed."],
    ["failed", "pool_tasks_failed_total", "counter", "Tasks that failed (threw)."],
    ["utilization", "pool_utilization", "gauge", "Share of pool workers busy now (0..1)."],
  ]);
  const wait = fam("pool_task_wait_seconds", "summary", "Time a task waited for a worker.");
  const run = fam("pool_task_run_seconds", "summary", "Time a task ran.");
  for (const p of s.pools) {
    const pool = String(p.name);
    const ws = (p.workers ?? []) as { busy?: boolean }[];
    workers.push([{ pool, state: "busy" }, ws.filter((w) => w.busy).length]);
    workers.push([{ pool, state: "idle" }, ws.filter((w) => !w.busy).length]);
    poolCounts({ pool }, p);
    for (const [family, ms] of [[wait, p.waitMs], [run, p.runMs]] as const) {
      const q = (ms ?? {}) as { p50?: number; p99?: number };
      family.push([{ pool, quantile: "0.5" }, num(q.p50) / 1000]);
      family.push([{ pool, quantile: "0.99" }, num(q.p99) / 1000]);
    }
  }

  const mailbox = fam("actor_mailbox_depth", "gauge", "Messages waiting in the actor's mailbox.");
  const restarts = fam(
    "actor_restarts_total",
    "counter",
    "Restarts of the actor's supervised child.",
  );
  const up = fam("actor_running", "gauge", "1 while the actor runs.");
  for (const a of s.actors) {
    const labels = { actor: String(a.name) };
    mailbox.push([labels, num(a.mailbox)]);
    restarts.push([labels, num(a.restarts)]);
    up.push([labels, a.state === "running" ? 1 : 0]);
  }
  const supRestarts = fam("supervisor_restarts_total", "counter", "Restarts the supervisor made.");
  for (const sup of s.supervisors) {
    supRestarts.push([{ supervisor: String(sup.name) }, num(sup.restarts)]);
  }

  let out = "";
  for (const [name, { help, type, samples }] of Object.entries(f)) {
    out += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
    for (const [labels, v] of samples) {
      const l = Object.entries(labels).map(([k, x]) => `${k}="${escape(x)}"`).join(",");
      out += `${name}${l ? `{${l}}` : ""} ${v}\n`;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The page

/** The page, with the current picture inlined (so it renders without waiting for the stream). */
function page(s: Snapshot, history: History, token: string | undefined): string {
  const initial = JSON.stringify({ snapshot: s, history }).replace(/</g, "\\u003c");
  const events = `/events${token ? `?token=${encodeURIComponent(token)}` : ""}`;
  // Function replacers: a "$&" in the data must stay as it is.
  return PAGE.replace("/*INITIAL*/null", () => initial)
    .replace("/*EVENTS*/", () => JSON.stringify(events));
}

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>denomp dashboard</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
:root{--bg:#0f1419;--panel:#171e26;--line:#2a3542;--text:#d7dee6;--dim:#8a96a3;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--accent:#58a6ff}
*{box-sizing:border-box}body{margin:0;font:13px/1.45 system-ui,sans-serif;background:var(--bg);color:var(--text)}
header{display:flex;gap:16px;align-items:baseline;padding:10px 16px;border-bottom:1px solid var(--line)}
header h1{font-size:16px;margin:0}header .dim{color:var(--dim)}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px;padding:12px}
section{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:10px 12px;min-width:0}
section h2{font-size:13px;margin:0 0 8px;text-transform:uppercase;letter-spacing:.05em;color:var(--dim)}
table{width:100%;border-collapse:collapse}td,th{padding:3px 6px;text-align:left;border-bottom:1px solid var(--line);white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:260px}
th{color:var(--dim);font-weight:normal}.num{text-align:right;font-variant-numeric:tabular-nums}
.tree{list-style:none;padding-left:14px;margin:0}.tree>li{margin:2px 0}
.state-running{color:var(--ok)}.state-stopped{color:var(--dim)}.state-dead{color:var(--bad)}
.badge{display:inline-block;padding:0 6px;border-radius:8px;background:var(--line);color:var(--text);font-size:11px}
.deadlock{border-color:var(--bad);background:#2a1416}.deadlock h2{color:var(--bad)}
tr.in-cycle td{color:var(--bad);font-weight:600}
#deadlocks:empty::after{content:"none";color:var(--dim)}
svg{display:block;width:100%;height:90px;background:#111820;border-radius:4px}
.legend span{margin-right:10px;font-size:11px}.bar{width:90px;height:8px;background:var(--line);border-radius:4px;overflow:hidden}.bar>i{display:block;height:100%;background:var(--accent)}
.empty{color:var(--dim)}.wide{grid-column:1/-1}section>div{overflow-x:auto}
h3{font-size:11px;font-weight:normal;color:var(--dim);margin:8px 0 2px}.charts{display:grid;grid-template-columns:1fr 1fr;gap:12px}
</style></head>
<body>
<header><h1>denomp</h1><span class="dim" id="time"></span><span class="badge" id="live">connecting…</span></header>
<main>
<section id="deadlock-panel"><h2>Deadlocks</h2><ol id="deadlocks"></ol></section>
<section><h2>Processes</h2><ul class="tree" id="processes"></ul></section>
<section><h2>Supervision</h2><div id="supervisors"></div></section>
<section class="wide"><h2>Pools</h2><div id="pools"></div>
<div class="charts"><div><h3>utilization</h3><svg id="pool-chart" viewBox="0 0 400 90" preserveAspectRatio="none"></svg><div class="legend" id="pool-legend"></div></div>
<div><h3>task run time p99 (ms)</h3><svg id="latency-chart" viewBox="0 0 400 90" preserveAspectRatio="none"></svg><div class="legend" id="latency-legend"></div></div></div></section>
<section><h2>Queues</h2><div id="queues"></div><h3>depth</h3><svg id="queue-chart" viewBox="0 0 400 90" preserveAspectRatio="none"></svg><div class="legend" id="queue-legend"></div></section>
<section><h2>Actors</h2><div id="actors"></div></section>
<section><h2>Locks</h2><div id="locks"></div></section>
</main>
<script>
"use strict";
const HISTORY = 120, COLORS = ["#58a6ff","#3fb950","#d29922","#f85149","#bc8cff","#39c5cf","#ff9bce","#a5d6ff"];
const initial = /*INITIAL*/null;
const history = { utilization: new Map(), latency: new Map(), depth: new Map() };
for (const k of Object.keys(history)) for (const [name, h] of Object.entries(initial ? initial.history[k] : {})) history[k].set(name, h);
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const ms = (v) => typeof v === "number" ? (v < 10 ? v.toFixed(2) : v.toFixed(0)) + " ms" : "–";
function table(rows, cols) {
  if (!rows.length) return '<p class="empty">none</p>';
  return "<table><tr>" + cols.map((c) => '<th class="' + (c.num ? "num" : "") + '">' + esc(c.h) + "</th>").join("") + "</tr>" +
    rows.map((r) => '<tr class="' + (r.cls || "") + '"' + (r.attrs || "") + ">" + cols.map((c) => '<td class="' + (c.num ? "num" : "") + '">' + c.f(r) + "</td>").join("") + "</tr>").join("") + "</table>";
}
function remember(map, key, value) {
  let h = map.get(key); if (!h) map.set(key, h = []);
  h.push(value); if (h.length > HISTORY) h.shift();
}
function chart(svg, legend, map, max) {
  let top = max || 1; for (const h of map.values()) for (const v of h) top = Math.max(top, v);
  let i = 0, paths = "", keys = "";
  for (const [k, h] of map) {
    const c = COLORS[i++ % COLORS.length];
    // The latest point at the right edge.
    const pts = h.map((v, j) => (400 * (HISTORY - h.length + j) / (HISTORY - 1)).toFixed(1) + "," + (88 - 84 * v / top).toFixed(1)).join(" ");
    paths += '<polyline fill="none" stroke="' + c + '" stroke-width="1.5" points="' + pts + '"/>';
    keys += '<span style="color:' + c + '">■ ' + esc(k) + "</span>";
  }
  svg.innerHTML = paths; legend.innerHTML = keys;
}
function render(s, record) {
  $("time").textContent = new Date(s.time).toLocaleTimeString();
  // Deadlocks first: they are what one looks for.
  const inCycle = new Set();
  $("deadlocks").innerHTML = s.deadlocks.map((c) => "<li>" + c.map((x) => {
    inCycle.add(x.holds); inCycle.add(x.waitsFor);
    return "<b>" + esc(x.process) + "</b> holds <b>" + esc(x.holds) + "</b> and waits for <b>" + esc(x.waitsFor) + "</b>";
  }).join("; ") + "</li>").join("");
  $("deadlock-panel").classList.toggle("deadlock", s.deadlocks.length > 0);
  // The process tree, by parent pid.
  const kids = new Map();
  for (const p of s.processes) { const k = kids.get(p.parent) || []; k.push(p); kids.set(p.parent, k); }
  const known = new Set(s.processes.map((p) => p.pid));
  const roots = s.processes.filter((p) => p.parent === null || !known.has(p.parent));
  const node = (p) => '<li data-pid="' + p.pid + '"><span class="state-' + p.state + '">●</span> <b>' + esc(p.name) + "</b> " +
    '<span class="dim">pid ' + p.pid + (p.target ? " · " + esc(p.target) : "") + (p.task ? " · task " + esc(p.task) : "") +
    (p.daemon ? " · daemon" : "") + (p.exitCode !== null ? " · exit " + p.exitCode : "") +
    (p.waitingFor.length ? " · waits for " + esc(p.waitingFor.join(", ")) : "") + "</span>" +
    ((kids.get(p.pid) || []).length ? '<ul class="tree">' + kids.get(p.pid).map(node).join("") + "</ul>" : "") + "</li>";
  $("processes").innerHTML = roots.map(node).join("");
  // Supervision trees: a child that is itself a supervisor nests.
  const sups = new Map(s.supervisors.map((x) => [x.name, x]));
  const nested = new Set(s.supervisors.flatMap((x) => x.children.filter((c) => sups.has(c.name)).map((c) => c.name)));
  const sup = (x) => "<li><b>" + esc(x.name) + '</b> <span class="badge">' + esc(x.strategy) + '</span> <span class="dim">' + esc(x.state) + " · " + x.restarts + " restarts</span>" +
    '<ul class="tree">' + x.children.map((c) => sups.has(c.name) ? sup(sups.get(c.name)) :
      '<li><span class="' + (c.running ? "state-running" : "state-stopped") + '">●</span> ' + esc(c.id) + ' <span class="dim">' + esc(c.name || "not running") + " · " + c.restarts + " restarts" +
      (c.lastExitReason ? " · last exit: " + esc(c.lastExitReason) : "") + "</span></li>").join("") + "</ul></li>";
  $("supervisors").innerHTML = s.supervisors.length ? '<ul class="tree">' + s.supervisors.filter((x) => !nested.has(x.name)).map(sup).join("") + "</ul>" : '<p class="empty">none</p>';
  // Pools.
  if (record) for (const p of s.pools) {
    remember(history.utilization, p.name, p.utilization || 0);
    remember(history.latency, p.name, (p.runMs && p.runMs.p99) || 0);
  }
  $("pools").innerHTML = table(s.pools.map((p) => ({ ...p, attrs: ' data-pool="' + esc(p.name) + '"' })), [
    { h: "pool", f: (p) => esc(p.name) },
    { h: "workers", f: (p) => (p.workers || []).map((w) => '<span title="' + esc(w.task || "idle") + '" class="' + (w.busy ? "state-running" : "state-stopped") + '">●</span>').join("") },
    { h: "utilization", f: (p) => '<div class="bar" title="' + Math.round(100 * (p.utilization || 0)) + '%"><i style="width:' + Math.round(100 * (p.utilization || 0)) + '%"></i></div>' },
    { h: "queued", num: 1, f: (p) => '<span class="queued">' + p.queued + "</span>" },
    { h: "running", num: 1, f: (p) => '<span class="running">' + p.running + "</span>" },
    { h: "completed", num: 1, f: (p) => '<span class="completed">' + p.completed + "</span>" },
    { h: "failed", num: 1, f: (p) => '<span class="failed">' + p.failed + "</span>" },
    { h: "wait p50 / p99", num: 1, f: (p) => ms(p.waitMs && p.waitMs.p50) + " / " + ms(p.waitMs && p.waitMs.p99) },
    { h: "run p50 / p99", num: 1, f: (p) => ms(p.runMs && p.runMs.p50) + " / " + ms(p.runMs && p.runMs.p99) },
  ]);
  chart($("pool-chart"), $("pool-legend"), history.utilization, 1);
  chart($("latency-chart"), $("latency-legend"), history.latency, 1);
  // Queues (mailboxes too).
  if (record) for (const q of s.queues) remember(history.depth, q.name, q.depth ?? q.mailbox ?? 0);
  $("queues").innerHTML = table(s.queues.map((q) => ({ ...q, attrs: ' data-queue="' + esc(q.name) + '"' })), [
    { h: "queue", f: (q) => esc(q.name) + ' <span class="dim">' + esc(q.kind) + "</span>" },
    { h: "depth", num: 1, f: (q) => '<span class="depth">' + (q.depth ?? q.mailbox ?? 0) + "</span>" + (q.maxsize ? " / " + q.maxsize : "") },
    { h: "puts", num: 1, f: (q) => q.puts ?? "–" },
    { h: "gets", num: 1, f: (q) => q.gets ?? "–" },
    { h: "waiting get/put", num: 1, f: (q) => (q.waitingGetters ?? "–") + " / " + (q.waitingPutters ?? "–") },
    { h: "unfinished", num: 1, f: (q) => q.unfinished ?? "–" },
  ]);
  chart($("queue-chart"), $("queue-legend"), history.depth, 1);
  // Actors.
  $("actors").innerHTML = table(s.actors, [
    { h: "actor", f: (a) => esc(a.name) },
    { h: "state", f: (a) => '<span class="state-' + (a.state === "running" ? "running" : "stopped") + '">' + esc(a.state) + "</span>" },
    { h: "mailbox", num: 1, f: (a) => a.mailbox },
    { h: "restarts", num: 1, f: (a) => a.restarts },
    { h: "supervisor", f: (a) => esc(a.supervisor || "") },
    { h: "last exit", f: (a) => esc(a.exitReason || "") },
  ]);
  // Locks: those in a deadlock cycle are highlighted.
  $("locks").innerHTML = table(s.locks.map((l) => ({ ...l, cls: inCycle.has(l.name) ? "in-cycle" : "", attrs: ' data-lock="' + esc(l.name) + '"' })), [
    { h: "name", f: (l) => esc(l.name) },
    { h: "kind", f: (l) => esc(l.kind) },
    { h: "holders", f: (l) => esc(l.holders.join(", ")) },
    { h: "waiters", f: (l) => esc(l.waiters.join(", ")) },
    { h: "state", f: (l) => esc(["locked", "count", "value", "set", "waiting", "broken"].filter((k) => k in l).map((k) => k + "=" + l[k]).join(" ")) },
  ]);
}
if (initial) render(initial.snapshot, false);
addEventListener("load", () => {
  const es = new EventSource(/*EVENTS*/);
  es.onopen = () => { $("live").textContent = "live"; };
  es.onerror = () => { $("live").textContent = "reconnecting…"; };
  es.onmessage = (e) => render(JSON.parse(e.data), true);
});
</script>
</body></html>
`;
