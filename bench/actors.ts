// Actor benchmarks (issue 7), JSON lines in the WORKLOADS.md format:
//   A1-actor-call  `await ref.call.inc(1)` round trips, µs each: main → actor, main → an actor
//                  with isolation "process" (its ratio to the thread actor's), actor → actor
//   A2-actor-tell  `ref.tell(i)` from one actor to another, small messages per second (the
//                  sender awaits the send every 1024 messages, for backpressure; the count is
//                  checked with a call that follows the tells in the mailbox)
//   A3-whereis-call  `whereis(name)!.call.inc(1)` from main, µs each (the lookup alone too)
//   A4-broadcast     `broadcast(group, i)` to a group of 100 actors, deliveries per second
//                    (checked with a call to every member that follows the messages)
// and, unless --no-python, the goal ratio: the actor call round trip over Python's Pipe round
// trip (W4-pipe of ../shared/bench/peers/python_mp_bench.py, run now, on this machine).
// Goals: call ≤ 1/3 of Python's W4-pipe; tell ≥ 1,000,000 msgs/s.
//
//   deno run -A --unstable-worker-options bench/actors.ts [--n-call 20000] [--n-tell 1000000] [--no-python]
//     [--n-broadcast 2000] [--members 100] [--only A1,A2,A3,A4] [--no-isolation]
import { Actor } from "../lib/actor/actor.ts";
import type { ActorRef } from "../lib/actor/ref.ts";
import { spawn } from "../lib/actor/spawn.ts";
import { broadcast, join } from "../lib/actor/groups.ts";
import { whereis } from "../lib/actor/registry.ts";
import { arg, emit, since } from "./_common.ts";

/** The callee. */
export class BenchCounter extends Actor {
  n = 0;
  inc(d: number): number {
    return (this.n += d);
  }
}

/** Calls another actor `n` times; returns µs per round trip, timed inside the caller. */
export class BenchCaller extends Actor {
  async calls(c: ActorRef<BenchCounter>, n: number): Promise<{ us: number; last: number }> {
    let last = 0;
    for (let i = 0; i < 1000; i++) last = await c.call.inc(1); // warm up
    const t0 = performance.now();
    for (let i = 0; i < n; i++) last = await c.call.inc(1);
    return { us: (performance.now() - t0) * 1000 / n, last };
  }
}

/** Receives told messages. */
export class BenchSink extends Actor {
  n = 0;
  sum = 0;
  receive(i: number): void {
    this.n++;
    this.sum += i;
  }
  total(): { n: number; sum: number } {
    return { n: this.n, sum: this.sum };
  }
}

/** Tells `n` small messages to a sink; returns the seconds until the sink has handled them all. */
export class BenchSource extends Actor {
  async blast(
    sink: ActorRef<BenchSink>,
    n: number,
  ): Promise<{ s: number; n: number; sum: number }> {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const sent = sink.tell(i);
      if ((i & 1023) === 1023) await sent;
    }
    const total = await sink.call.total();
    return { s: (performance.now() - t0) / 1000, ...total };
  }
}

async function pythonW4(): Promise<number | null> {
  const script = new URL("../../shared/bench/peers/python_mp_bench.py", import.meta.url).pathname;
  try {
    const out = await new Deno.Command("python3", {
      args: [script, "--only", "W4-pipe"],
      stdout: "piped",
      stderr: "null",
    }).output();
    for (const l of new TextDecoder().decode(out.stdout).split("\n")) {
      if (!l.startsWith("{")) continue;
      const r = JSON.parse(l);
      if (r.workload === "W4-pipe" && r.ok) return r.rate as number;
    }
  } catch { /* no python here */ }
  return null;
}

/** A1 from the main thread: `n` round trips to `counter` after a warm-up; µs each. */
async function benchCall(counter: ActorRef<BenchCounter>, n: number, variant: string) {
  for (let i = 0; i < 1000; i++) await counter.call.inc(1);
  let last = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) last = await counter.call.inc(1);
  const s = since(t0);
  emit({
    workload: "A1-actor-call",
    variant,
    n,
    seconds: s,
    rate: s * 1e6 / n,
    unit: "us/roundtrip",
    ok: last === n + 1000,
  });
  return s * 1e6 / n;
}

/** A3: a registered actor found by name before each call, from the main thread. */
async function benchWhereis(n: number): Promise<void> {
  const counter = await spawn(BenchCounter, { name: "bench-counter", register: true });
  for (let i = 0; i < 1000; i++) await whereis<BenchCounter>("bench-counter")!.call.inc(1);
  let t0 = performance.now();
  let found = 0;
  for (let i = 0; i < n; i++) if (whereis("bench-counter")) found++;
  const lookup = since(t0);
  emit({
    workload: "A3-whereis-call",
    variant: "whereis-only",
    n,
    seconds: lookup,
    rate: lookup * 1e6 / n,
    unit: "us/lookup",
    ok: found === n,
  });
  let last = 0;
  t0 = performance.now();
  for (let i = 0; i < n; i++) last = await whereis<BenchCounter>("bench-counter")!.call.inc(1);
  const s = since(t0);
  emit({
    workload: "A3-whereis-call",
    variant: "main-actor",
    n,
    seconds: s,
    rate: s * 1e6 / n,
    unit: "us/roundtrip",
    ok: last === n + 1000,
  });
  await counter.stop();
}

/** A4: `rounds` broadcasts to a group of `size` sinks; deliveries per second. */
async function benchBroadcast(rounds: number, size: number): Promise<void> {
  const sinks = await Promise.all(Array.from({ length: size }, () => spawn(BenchSink)));
  for (const s of sinks) join("bench-group", s);
  for (let i = 0; i < 10; i++) await broadcast("bench-group", 0); // warm up
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) await broadcast("bench-group", i);
  const totals = await Promise.all(sinks.map((s) => s.call.total()));
  const s = since(t0);
  const want = rounds * (rounds - 1) / 2;
  emit({
    workload: "A4-broadcast",
    variant: `main-${size}-members`,
    n: rounds * size,
    seconds: s,
    rate: rounds * size / s,
    unit: "msgs/s",
    ok: totals.every((t) => t.n === rounds + 10 && t.sum === want),
    broadcasts_per_s: rounds / s,
  });
  await Promise.all(sinks.map((x) => x.stop()));
}

if (import.meta.main) {
  const nCall = Number(arg("n-call", "20000"));
  const nTell = Number(arg("n-tell", "1000000"));
  const only = new Set(arg("only", "A1,A2,A3,A4").split(","));

  if (only.has("A3")) await benchWhereis(nCall);
  if (only.has("A4")) {
    await benchBroadcast(Number(arg("n-broadcast", "2000")), Number(arg("members", "100")));
  }
  if (!only.has("A1") && !only.has("A2")) Deno.exit(0);

  // A1, main → actor: a thread actor, then (unless --no-isolation) one with isolation "process".
  const counter = await spawn(BenchCounter);
  const mainUs = await benchCall(counter, nCall, "main-actor");
  if (!Deno.args.includes("--no-isolation")) {
    const iso = await spawn(BenchCounter, { isolation: "process" });
    const isoUs = await benchCall(iso, nCall, "process-isolation");
    emit({
      workload: "A1-actor-call",
      variant: "process-isolation-ratio-to-main-actor",
      n: nCall,
      seconds: 0,
      rate: isoUs / mainUs,
      unit: "x",
      ok: true,
      thread_us: mainUs,
      process_us: isoUs,
    });
    await iso.stop();
  }

  // A1, actor → actor.
  const caller = await spawn(BenchCaller);
  const c2 = await spawn(BenchCounter);
  const r = await caller.call.calls(c2, nCall);
  emit({
    workload: "A1-actor-call",
    variant: "actor-actor",
    n: nCall,
    seconds: r.us * nCall / 1e6,
    rate: r.us,
    unit: "us/roundtrip",
    ok: r.last === nCall + 1000,
  });

  // A2, actor → actor.
  const sink = await spawn(BenchSink), source = await spawn(BenchSource);
  const t = await source.call.blast(sink, nTell);
  emit({
    workload: "A2-actor-tell",
    variant: "actor-actor",
    n: nTell,
    seconds: t.s,
    rate: nTell / t.s,
    unit: "msgs/s",
    ok: t.n === nTell && t.sum === nTell * (nTell - 1) / 2,
    goal: ">= 1000000",
  });
  await Promise.all([counter, caller, c2, sink, source].map((a) => a.stop()));

  if (!Deno.args.includes("--no-python")) {
    const py = await pythonW4();
    if (py !== null) {
      const best = Math.min(mainUs, r.us);
      emit({
        workload: "A1-actor-call",
        variant: "ratio-to-python-W4-pipe",
        n: nCall,
        seconds: 0,
        rate: best / py,
        unit: "x",
        ok: best / py <= 1 / 3,
        python_us: py,
        denomp_us: best,
        goal: "<= 0.333",
      });
    }
  }
}
