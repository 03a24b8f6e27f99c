// denomp's showcase: `deno task demo` (add `--short` for a quick run, as the test suite does).
//
// 1. Pool.map: a CPU-bound job (counting primes) split into chunks, first in the main thread,
//    then across every core, with a live progress bar on stderr and the speedup at the end.
// 2. A pipeline: the main process feeds jobs into a JoinableQueue, three daemon worker processes
//    take them, put their results on a second Queue and mark each job done; join() waits for all.
// 3. A Manager dict: four processes count the words of a text and merge their counts into one
//    dict served by a manager process, under a manager Lock.
// 4. A supervised actor: a Counter actor runs under a one_for_one Supervisor; it is killed, and
//    the supervisor starts a fresh one.
//
// Everything a worker runs is exported from this file, and the main program sits under
// `if (import.meta.main)`: each worker imports this module again, as Python's spawn does.
import {
  Actor,
  type ActorRef,
  cpuCount,
  currentProcess,
  type DictProxy,
  getPid,
  JoinableQueue,
  type LockProxy,
  Manager,
  monitor,
  Pool,
  Process,
  Queue,
  serveDashboard,
  spawn,
  Supervisor,
  Value,
} from "../mod.ts";

const SHORT = Deno.args.includes("--short");
/** `--observe`: serve the live view (`serveDashboard`) while the tour runs. */
const OBSERVE = Deno.args.includes("--observe");

// ---------------------------------------------------------------------------------------------
// 1. Pool.map with a progress bar

/** Chunks finished, in all workers: a shared int the main process reads to draw the bar. */
let progress: Value<"i"> | undefined;

/** Each pool worker runs this once (Python's `initializer`): keep the shared counter. */
export function initWorker(counter: Value<"i">) {
  progress = counter;
}

/** Counts the primes in [lo, hi) by trial division: deliberately CPU-bound. */
export function countPrimes([lo, hi]: [number, number]): number {
  let n = 0;
  for (let x = Math.max(lo, 2); x < hi; x++) {
    if (x < 4) {
      n++;
      continue;
    }
    if (x % 2 === 0) continue;
    let prime = true;
    for (let d = 3; d * d <= x; d += 2) {
      if (x % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) n++;
  }
  if (progress) {
    using _ = progress.getLock().acquireSync(); // blocking is fine in a CPU-bound worker
    progress.value += 1;
  }
  return n;
}

const encoder = new TextEncoder();
const live = Deno.stderr.isTerminal();

/** Draws a progress bar on stderr: redrawn in place on a terminal, one final line otherwise. */
function drawBar(label: string, done: number, total: number) {
  if (!live && done < total) return;
  const width = 32, filled = Math.round((done / total) * width);
  const line = `${label.padEnd(22)} [${"#".repeat(filled)}${".".repeat(width - filled)}] ` +
    `${done}/${total}`;
  Deno.stderr.writeSync(encoder.encode(live ? `\r\x1b[2K${line}` : `${line}\n`));
  if (live && done === total) Deno.stderr.writeSync(encoder.encode("\n"));
}

async function poolMap() {
  const limit = SHORT ? 1_000_000 : 16_000_000;
  const nChunks = SHORT ? 20 : 160;
  const step = limit / nChunks;
  const chunks = Array.from({ length: nChunks }, (_, i) => [i * step, (i + 1) * step]) as [
    number,
    number,
  ][];
  const cores = cpuCount();
  console.log(`Counting the primes below ${limit.toLocaleString("en")} in ${nChunks} chunks.`);

  let t0 = performance.now();
  let serialTotal = 0;
  for (const [i, chunk] of chunks.entries()) {
    serialTotal += countPrimes(chunk);
    drawBar("serial (1 core)", i + 1, nChunks);
  }
  const serialMs = performance.now() - t0;

  const counter = new Value("i", 0);
  await using pool = new Pool({ processes: cores, initializer: initWorker, initargs: [counter] });
  t0 = performance.now();
  await pool.whenReady(); // start-up is not part of the comparison
  const startupMs = performance.now() - t0;

  t0 = performance.now();
  const timer = setInterval(() => drawBar(`Pool.map (${cores} cores)`, counter.value, nChunks), 50);
  let parallelTotal: number;
  try {
    parallelTotal = (await pool.map(countPrimes, chunks, 1)).reduce((a, b) => a + b, 0);
  } finally {
    clearInterval(timer);
  }
  drawBar(`Pool.map (${cores} cores)`, nChunks, nChunks);
  const parallelMs = performance.now() - t0;

  console.log(`serial:   ${serialTotal.toLocaleString("en")} primes in ${fmt(serialMs)}`);
  console.log(
    `parallel: ${parallelTotal.toLocaleString("en")} primes in ${fmt(parallelMs)} on ${cores} ` +
      `workers (started in ${fmt(startupMs)})`,
  );
  if (parallelTotal !== serialTotal) {
    throw new Error("the parallel count differs from the serial one");
  }
  console.log(`speedup: ${(serialMs / parallelMs).toFixed(2)}x with ${cores} cores`);
}

function fmt(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

// ---------------------------------------------------------------------------------------------
// 2. A pipeline with a JoinableQueue

interface Job {
  id: number;
  text: string;
}
interface Done {
  id: number;
  worker: string;
  digest: string;
}

/** A pipeline stage: forever take a job, hash its text, pass the result on, mark the job done. */
export async function hashWorker(jobs: JoinableQueue<Job>, results: Queue<Done>) {
  for (;;) {
    const job = await jobs.get();
    const hash = await crypto.subtle.digest("SHA-256", encoder.encode(job.text));
    await new Promise((r) => setTimeout(r, 10 + Math.random() * 30)); // some I/O latency
    const digest = [...new Uint8Array(hash).slice(0, 4)]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    await results.put({ id: job.id, worker: currentProcess().name, digest });
    jobs.taskDone();
  }
}

async function pipeline() {
  const nJobs = SHORT ? 12 : 30;
  const jobs = new JoinableQueue<Job>(8); // bounded: the producer waits when workers lag
  const results = new Queue<Done>();
  const workers = ["hasher-1", "hasher-2", "hasher-3"].map((name) =>
    new Process({ target: hashWorker, args: [jobs, results], name, daemon: true })
  );
  for (const w of workers) w.start();
  const t0 = performance.now();
  for (let id = 0; id < nJobs; id++) await jobs.put({ id, text: `document number ${id}` });
  await jobs.join(); // every job put has been marked done
  const done: Done[] = [];
  for (let i = 0; i < nJobs; i++) done.push(await results.get());
  const perWorker = new Map<string, number>();
  for (const d of done) perWorker.set(d.worker, (perWorker.get(d.worker) ?? 0) + 1);
  console.log(`${nJobs} jobs through 3 worker processes in ${fmt(performance.now() - t0)}:`);
  for (const [w, n] of [...perWorker].sort()) console.log(`  ${w} did ${n}`);
  const first = done.sort((a, b) => a.id - b.id)[0];
  console.log(`job 0 hashed to ${first.digest} by ${first.worker}`);
  for (const w of workers) w.terminate(); // daemons would end with the program anyway
}

// ---------------------------------------------------------------------------------------------
// 3. A Manager dict

const TEXT = `Beautiful is better than ugly. Explicit is better than implicit.
Simple is better than complex. Complex is better than complicated.
Flat is better than nested. Sparse is better than dense.
Readability counts. Special cases are not special enough to break the rules.
Although practicality beats purity. Errors should never pass silently.
Unless explicitly silenced. In the face of ambiguity, refuse the temptation to guess.
There should be one and preferably only one obvious way to do it.
Now is better than never. Although never is often better than right now.`;

function words(text: string): string[] {
  return text.toLowerCase().match(/[a-z]+/g) ?? [];
}

/** Counts the words of `lines` and merges them into the shared dict, under the shared lock. */
export async function countWords(
  lines: string[],
  counts: DictProxy<string, number>,
  lock: LockProxy,
) {
  const mine = new Map<string, number>();
  for (const w of words(lines.join("\n"))) mine.set(w, (mine.get(w) ?? 0) + 1);
  await using _ = await lock.acquire(); // read-modify-write of the shared dict: one at a time
  for (const [w, n] of mine) await counts.set(w, (await counts.get(w, 0)) + n);
  console.log(`  process ${getPid()} merged ${mine.size} words from ${lines.length} lines`);
}

async function managerDict() {
  await using manager = await Manager();
  const counts = manager.dict<string, number>();
  const lock = manager.Lock();
  const lines = TEXT.split("\n");
  const ps = [0, 1, 2, 3].map((i) =>
    new Process({ target: countWords, args: [lines.filter((_, j) => j % 4 === i), counts, lock] })
  );
  for (const p of ps) p.start();
  for (const p of ps) await p.join();
  const top = (await counts.items()).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  console.log(`top words: ${top.slice(0, 5).map(([w, n]) => `${w}=${n}`).join(", ")}`);
  const total = top.reduce((a, [, n]) => a + n, 0);
  const expected = words(TEXT).length;
  console.log(
    `${total} words counted by 4 processes, ${expected} in the text: ` +
      (total === expected ? "they match" : "MISMATCH"),
  );
  if (total !== expected) throw new Error("the shared word count is wrong");
}

// ---------------------------------------------------------------------------------------------
// 4. A supervised actor

/** An actor: its state lives in its own worker; methods run one call at a time. */
export class Counter extends Actor {
  count = 0;
  inc(n: number) {
    return (this.count += n);
  }
  get() {
    return this.count;
  }
  pid() {
    return getPid();
  }
}

async function supervisedActor() {
  let restarted!: () => void;
  const wasRestarted = new Promise<void>((r) => (restarted = r));
  await using sup = await new Supervisor({
    strategy: "one_for_one",
    maxRestarts: 3,
    withinMs: 5000,
    children: [{ id: "counter", start: () => spawn(Counter, { name: "counter" }) }],
    onEvent(e) {
      if (e.type === "exited") console.log(`  supervisor: counter exited (${String(e.reason)})`);
      if (e.type === "restarted") {
        console.log("  supervisor: counter restarted");
        restarted();
      }
    },
  }).start();

  const ref = sup.get("counter") as ActorRef<Counter>;
  await ref.call.inc(5);
  console.log(`counter (pid ${await ref.call.pid()}) holds ${await ref.call.inc(2)}`);
  const t0 = performance.now();
  console.log("killing the counter's worker...");
  ref.kill();
  console.log(`monitor: the counter stopped: ${String(await monitor(ref))}`);
  await wasRestarted;
  const fresh = sup.get("counter") as ActorRef<Counter>;
  console.log(
    `a new counter (pid ${await fresh.call.pid()}) runs ${fmt(performance.now() - t0)} later, ` +
      `with a fresh state: ${await fresh.call.get()}`,
  );
  console.log(`it counts again: ${await fresh.call.inc(1)} (restarts: ${sup.restartCount})`);
}

// ---------------------------------------------------------------------------------------------

if (import.meta.main) {
  // A demo must never hang: give up loudly if something does.
  const watchdog = setTimeout(() => {
    console.error("demo: still running after 60 s, giving up");
    Deno.exit(1);
  }, 60_000);
  Deno.unrefTimer(watchdog);

  // The live view: open the URL in a browser, or `deno task top <url>` in another terminal.
  await using dash = OBSERVE ? await serveDashboard() : undefined;
  if (dash) console.log(`live view: ${dash.url} (or: deno task top ${dash.url})`);

  const t0 = performance.now();
  const sections: [string, () => Promise<void>][] = [
    ["Pool.map on every core", poolMap],
    ["A pipeline with a JoinableQueue", pipeline],
    ["A Manager dict shared by processes", managerDict],
    ["A supervised actor, killed and restarted", supervisedActor],
  ];
  for (const [i, [title, run]] of sections.entries()) {
    console.log(`\n== ${i + 1}/${sections.length} ${title} ==`);
    await run();
  }
  console.log(`\ndemo finished in ${fmt(performance.now() - t0)}`);
}
