import assert from "node:assert/strict";
import { serveDashboard } from "../lib/observe/dashboard.ts";
import { ValueError } from "../lib/core/errors.ts";
import { Lock } from "../lib/sync/mod.ts";

Deno.test("dashboard: /snapshot.json, /metrics (HELP and TYPE for every metric), /events, read-only", async () => {
  const lock = new Lock({ name: "dash-lock" });
  await lock.acquire();
  await using dash = await serveDashboard({ interval: 100 });
  assert.match(dash.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const get = (path: string, init?: RequestInit) => fetch(new URL(path, dash.url), init);

  const snap = await (await get("/snapshot.json")).json();
  assert.ok(snap.locks.some((l: { name: string }) => l.name === "dash-lock"));
  assert.ok(Array.isArray(snap.deadlocks) && Array.isArray(snap.pools));

  const text = await (await get("/metrics")).text();
  const typed = new Set<string>(), helped = new Set<string>();
  for (const line of text.trimEnd().split("\n")) {
    const m = line.match(/^# (HELP|TYPE) (\S+) /);
    if (m) (m[1] === "HELP" ? helped : typed).add(m[2]);
    else {
      const name = line.match(/^([a-z_]+)[{ ]/)![1];
      assert.ok(typed.has(name) && helped.has(name), `no HELP/TYPE before ${line}`);
      assert.ok(name.startsWith("denomp_"));
    }
  }
  for (
    const name of ["denomp_pool_tasks_completed_total", "denomp_queue_depth", "denomp_deadlocks"]
  ) {
    assert.ok(typed.has(name), name);
  }
  assert.match(text, /denomp_lock_holders\{lock="dash-lock",kind="Lock"\} 1/);

  const page = await (await get("/")).text();
  assert.match(page, /<html/);
  assert.ok(page.includes('"dash-lock"'), "the page inlines the current picture");

  const events = await get("/events");
  assert.equal(events.headers.get("content-type"), "text/event-stream");
  const reader = events.body!.getReader(), dec = new TextDecoder();
  let got = "";
  while (!got.includes("\n\n")) got += dec.decode((await reader.read()).value);
  assert.match(got, /^data: \{"time":/);
  await reader.cancel();

  const post = await get("/snapshot.json", { method: "DELETE" });
  await post.body?.cancel();
  assert.equal(post.status, 405);
  const missing = await get("/nothing");
  await missing.body?.cancel();
  assert.equal(missing.status, 404);
  lock.release();
});

Deno.test("dashboard: loopback by default; anywhere else only with a token, which is then required", async () => {
  await assert.rejects(() => serveDashboard({ hostname: "0.0.0.0" }), ValueError);
  await using dash = await serveDashboard({ hostname: "0.0.0.0", token: "s3cret" });
  const url = new URL(dash.url);
  assert.equal(url.searchParams.get("token"), "s3cret");
  url.hostname = "127.0.0.1";
  const ok = await fetch(new URL("/snapshot.json?token=s3cret", url));
  await ok.body?.cancel();
  assert.equal(ok.status, 200);
  const bearer = await fetch(new URL("/metrics", url), {
    headers: { authorization: "Bearer s3cret" },
  });
  await bearer.body?.cancel();
  assert.equal(bearer.status, 200);
  for (const bad of ["/snapshot.json", "/snapshot.json?token=wrong", "/?token=s3cre"]) {
    const r = await fetch(new URL(bad, url));
    await r.body?.cancel();
    assert.equal(r.status, 401, bad);
  }
});

// ---------------------------------------------------------------------------------------------
// In a real browser: headless Chromium (Debian's `chromium`), when installed.

const CHROMIUM = ["chromium", "chromium-browser", "google-chrome"].find((bin) => {
  try {
    return new Deno.Command(bin, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
});

/** Runs headless Chromium on `url` with `mode` (`--dump-dom`, `--screenshot=...`). */
async function chromium(url: string, ...mode: string[]): Promise<string> {
  const profile = await Deno.makeTempDir({ prefix: "denomp-chromium-" });
  try {
    const out = await new Deno.Command(CHROMIUM!, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--user-data-dir=${profile}`,
        "--window-size=1280,1100",
        ...mode,
        url,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout);
  } finally {
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

/** The text of the element carrying `attr` (and of the span with class `cls` inside it). */
function cell(dom: string, attr: string, cls: string): string {
  const row = dom.slice(dom.indexOf(attr));
  assert.ok(dom.includes(attr), `no ${attr} on the page`);
  return row.match(new RegExp(`class="${cls}">([^<]*)<`))![1];
}

Deno.test({
  name: "dashboard in headless Chromium: the deadlock cycle, a pool's counters moving; screenshot",
  ignore: CHROMIUM === undefined,
  async fn() {
    const program = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--unstable-worker-options",
        new URL("./fixtures/dashboard_program.ts", import.meta.url).pathname,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = program.stdout.pipeThrough(new TextDecoderStream()).getReader();
    try {
      let url = "";
      while (!url.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) assert.fail("the program ended before serving its dashboard");
        url += value;
      }
      url = url.trim();
      // Let the pool run a few tasks, so that the page has something moving.
      await new Promise((r) => setTimeout(r, 1500));
      const first = await chromium(url, "--dump-dom");
      assert.match(
        first,
        /<b>philosopher-1<\/b> holds <b>fork-1<\/b> and waits for <b>fork-2<\/b>; <b>philosopher-2<\/b> holds <b>fork-2<\/b> and waits for <b>fork-1<\/b>/,
      );
      assert.match(first, /<tr class="in-cycle" data-lock="fork-1">/);
      assert.ok(first.includes('data-queue="jobs"') && first.includes("counter"));
      const before = Number(cell(first, "data-pool=", "completed"));
      await new Promise((r) => setTimeout(r, 1500));
      const second = await chromium(url, "--dump-dom");
      const after = Number(cell(second, "data-pool=", "completed"));
      assert.ok(after > before, `completed: ${before} then ${after}`);
      // The README's screenshot (docs/dashboard.png) is taken again with DENOMP_UPDATE_DOCS=1,
      // after a few more seconds of chart history; otherwise into a temporary file, so that a
      // test run leaves the checkout as it was.
      const update = Deno.env.get("DENOMP_UPDATE_DOCS") === "1";
      if (update) await new Promise((r) => setTimeout(r, 5000));
      const shot = update
        ? new URL("../docs/dashboard.png", import.meta.url).pathname
        : await Deno.makeTempFile({ suffix: ".png" });
      try {
        await chromium(url, `--screenshot=${shot}`);
        assert.ok((await Deno.stat(shot)).size > 10_000);
      } finally {
        if (!update) await Deno.remove(shot).catch(() => {});
      }
    } finally {
      program.kill("SIGKILL");
      await lines.cancel().catch(() => {});
      await program.status;
    }
  },
});

Deno.test("deno task top prints a program's picture as a table (processes, locks, deadlocks)", async () => {
  const lock = new Lock({ name: "top-test-lock" });
  await lock.acquire();
  await using dash = await serveDashboard();
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      new URL("../scripts/top.ts", import.meta.url).pathname,
      dash.url,
      "--once",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  lock.release();
  const out = new TextDecoder().decode(r.stdout);
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  assert.match(out, /^PROCESSES$/m);
  assert.match(out, /MainProcess/);
  assert.match(out, /top-test-lock .*MainProcess/);
});
