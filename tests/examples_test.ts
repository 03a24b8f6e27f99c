// Runs every program in examples/ as its own `deno run` process, with the tutorial's sleeps
// scaled down (DENOMP_EXAMPLE_SCALE), and checks its exit code and key output lines, so that an
// example can never silently rot. Two run at a time; each step reports one example.
import assert from "node:assert/strict";
import { type ProgramResult, runProgram } from "./_program.ts";

const EXAMPLES = new URL("../examples/", import.meta.url);
/** The default scale: the tutorial's 1 s sleeps take 50 ms. */
const SCALE = 0.05;
/** How many examples run at once (the suite must stay fast on 2 cores). */
const CONCURRENCY = 2;
/** An example that runs longer than this is taken as hung and killed. */
const TIMEOUT_MS = 45_000;

interface Case {
  file: string;
  /** Patterns that must all appear in stdout, in this order. */
  expect: (string | RegExp)[];
  /** Patterns that must not appear in stdout. */
  reject?: (string | RegExp)[];
  /** Further checks on the output (and on stderr). */
  check?: (out: string, err: string) => void;
  /** DENOMP_EXAMPLE_SCALE for this example (default {@link SCALE}). */
  scale?: number;
  /** Command-line arguments of the example. */
  args?: string[];
  /** Extra environment. */
  env?: Record<string, string>;
  /** Let the example write to stderr (the demo's progress bar). */
  stderr?: boolean;
}

/** All matches of `re` (which must be global) as numbers from its first group. */
function numbers(out: string, re: RegExp): number[] {
  return [...out.matchAll(re)].map((m) => Number(m[1]));
}

/** The first number captured by `re` in `out`. */
function number(out: string, re: RegExp): number {
  const m = out.match(re);
  assert.ok(m, `no match for ${re}`);
  return Number(m[1]);
}

function count(out: string, re: RegExp): number {
  return [...out.matchAll(re)].length;
}

const cases: Case[] = [
  {
    file: "threads_vs_sequential.ts",
    expect: ["--- one after the other ---", "--- two threads ---", "hihiahihia pa"],
    check(out) {
      const seq = number(out, /Sequential: all done in ([\d.]+) s/);
      const thr = number(out, /Threads: all done in ([\d.]+) s/);
      assert.ok(seq >= 5.9, `sequential took ${seq} s, expected about 6`);
      assert.ok(thr >= 3.9 && thr < seq - 0.5, `threads took ${thr} s, sequential ${seq} s`);
      // With threads, loop 2 (2 s) ends before loop 1 (4 s).
      const threaded = out.slice(out.indexOf("--- two threads ---"));
      assert.ok(threaded.indexOf("End loop 2") < threaded.indexOf("End loop 1"));
    },
  },
  {
    file: "start_new_thread.ts",
    expect: ["Starting at", "----------", "All done at", "End loop 2", "End loop 1"],
  },
  {
    file: "daemon_thread.ts",
    expect: [
      "--- daemon thread ---",
      "Main thread",
      "Start fun",
      "Main thread end",
      "--- non-daemon thread ---",
      "Main thread",
      "Start fun",
      "Main thread end",
      "End fun",
    ],
    check(out) {
      assert.equal(count(out, /End fun/g), 1, "only the non-daemon thread ends its function");
    },
  },
  {
    file: "semaphore.ts",
    expect: [
      "Thread 0 is running.",
      "at most 2 threads ran at once",
      "--- acquire() without release() ---",
      "Thread 2 gave up after 10 s: the permits leaked",
      "permits left: 0 of 2",
    ],
    check(out) {
      for (let i = 0; i < 6; i++) assert.match(out, new RegExp(`Thread ${i} is running\\.`));
      assert.equal(count(out, /gave up/g), 4);
    },
  },
  {
    file: "bounded_semaphore.ts",
    expect: [
      "Thread 3 is running.",
      "--- one release() too many ---",
      "ValueError: semaphore or lock released too many times",
      "BoundedSemaphore(3) value: 3",
      "Semaphore(3) after an extra release: value 4",
    ],
    check(out) {
      // Three run at once; the fourth waits for a release (3 s later).
      const starts = numbers(out, /\[([\d.]+) s\] Thread \d is running/g);
      assert.equal(starts.length, 4);
      assert.ok(starts[3] - starts[2] >= 2.5, `fourth start at ${starts[3]} s`);
    },
  },
  {
    file: "thread_subclass.ts",
    expect: [
      "the args for this class is 0",
      "the args for this class is 1",
      "the args for this class is 2",
      "the args for this class is 3",
      "main thread is done",
    ],
    check(out) {
      const s = number(out, /\(([\d.]+) s\)/);
      assert.ok(s >= 7.9, `four joined 2 s threads took ${s} s`);
    },
  },
  {
    file: "thread_method_target.ts",
    expect: ["Start loop: LOOP one", "Start loop: LOOP two", "End loop: LOOP two", "All done"],
    check(out) {
      // Concurrent: LOOP two (1 s) started second and ended first, and it all took 3 s, not 4.
      assert.ok(out.indexOf("End loop: LOOP two") < out.indexOf("End loop: LOOP one"));
      const s = number(out, /All done in ([\d.]+) s/);
      assert.ok(s >= 2.9, `took ${s} s, expected about 3`);
    },
  },
  {
    file: "lock_counter.ts",
    expect: [/without a lock: Done to -?[1-9]\d*/, "with a lock: Done to 0"],
  },
  {
    file: "rlock.ts",
    expect: [
      /Thread-\d+ set num to 1/,
      /Thread-\d+ set num to 5/,
      "RLock: num is 5, lock free again: true",
      "Lock: the inner acquire timed out (deadlock)",
    ],
  },
  {
    file: "queue_basics.ts",
    expect: [
      "false\nthe size is : 8\n2\n3\n4\n5\n6\n7\n8\n9\nhaha",
      "false\nthe size is : 0\nhaha",
      "LIFO order: 3 2 1",
      "priority 1: fix the outage\npriority 2: answer the mail\npriority 3: write the report",
      "putNowait on a full queue: Full",
      "put with a timeout on a full queue: Full",
      "getNowait on an empty queue: Empty",
    ],
  },
  {
    file: "producer_consumer_threads.ts",
    expect: [
      "Producer put No.1",
      "Tom get No.1",
      "Producer put No.46",
      "queue is full (5 items): Producer waits for room",
      /stopped after 8 s with \d items in the queue/,
      "active threads: 8",
      /produced 100/,
      /consumes Producing|consumes initial product/,
      /stock check: .* left: ok/,
    ],
  },
  {
    file: "deadlock.ts",
    expect: [
      "func_1 acquired lock_1",
      "func_2 acquired lock_2",
      "deadlock detected",
      "--- taking the locks in one order ---",
      "fixed: both functions finished, no deadlock",
      "All done",
    ],
    reject: ["func_1 acquired lock_2", "func_2 acquired lock_1"],
  },
  {
    file: "event.ts",
    expect: [
      "--- 1. two threads wait for the signal ---",
      "main thread: everybody can start eating",
      "got the signal",
      "--- 2. a Thread subclass ---",
      "main thread: everyone is here, let's eat",
      "friend xc starts eating",
      "thread ended: Thread-5",
      "--- 3. wait(timeout=0.1) ---",
      "stopped waiting",
      "friend xiaobai starts eating",
      "main thread (overslept)",
      "--- 4. set() before anyone waits ---",
      "got the signal",
    ],
    check(out) {
      const part3 = out.slice(out.indexOf("--- 3."), out.indexOf("--- 4."));
      assert.equal(count(part3, /stopped waiting/g), 2);
      assert.equal(count(part3, /got the signal/g), 0);
    },
  },
  {
    file: "condition.ts",
    expect: [
      "produced 1, now there are 5",
      "reached 5, stop producing",
      /Customer-\d bought 1, 4 left/,
      "the shop is closed, the producer goes home",
      "--- 2. four producers, five consumers ---",
      /production 10: producer\d made \d+/,
      /stock check: 1000 \+ \d+ - \d+ = \d+: ok/,
    ],
    check(out) {
      assert.match(out, /Customer-1 has no money left/);
      assert.match(out, /Customer-2 has no money left/);
      assert.equal(count(out, /^production \d+:/gm), 10);
      assert.equal(count(out, /goes home \(wanted/g), 5, "every consumer goes home");
    },
  },
  {
    file: "timer.ts",
    expect: ["timer started", "hello, world", "the cancelled timer never fired"],
    check(out) {
      const at = number(out, /\[([\d.]+) s\] hello, world/);
      assert.ok(at >= 0.9, `fired at ${at} s`);
    },
  },
  {
    file: "process_basics.ts",
    // Worker start-up is real time: run the sleeps long enough for the comparison to show.
    scale: 0.5,
    expect: [/main process: pid \d+/, "sequential: total", "processes: total"],
    check(out) {
      const main = number(out, /main process: pid (\d+)/);
      const part = out.slice(out.indexOf("--- two processes ---"));
      const children = [...part.matchAll(/pid (\d+), parent (\d+)/g)];
      assert.equal(children.length, 2);
      for (const [, pid, parent] of children) {
        assert.equal(Number(parent), main);
        assert.notEqual(Number(pid), main);
      }
      assert.notEqual(children[0][1], children[1][1]);
      const seq = number(out, /sequential: total ([\d.]+) s/);
      const par = number(out, /processes: total ([\d.]+) s/);
      assert.ok(par < seq, `processes ${par} s, sequential ${seq} s`);
      assert.match(out, /exit codes 0 and 0/);
    },
  },
  {
    file: "process_subclass.ts",
    expect: [
      "main process starts",
      "child starts >>>",
      "child ends >>>",
      "all done (exit codes 0, 0)",
    ],
    check(out) {
      const main = number(out, /main process starts: pid=(\d+)/);
      const ppids = numbers(out, /ppid=(\d+)/g);
      assert.deepEqual(ppids, [main, main]);
    },
  },
  {
    file: "subprocess.ts",
    expect: ["$ df -h .", "$ df - Th", /exit status [1-9]/],
  },
  {
    file: "module_names.ts",
    expect: [
      "multiprocessing.Process -> Process",
      "multiprocessing.active_children -> activeChildren",
      "threading.current_thread -> currentThread",
      /\d+ of 57 names have a denomp counterpart/,
    ],
    check(out) {
      // Every name API.md promises is exported by mod.ts.
      assert.doesNotMatch(out, /not in denomp yet/);
    },
  },
  {
    file: "process_lock.ts",
    expect: ["hello world 0", "hello world 9"],
    check(out) {
      const lines = out.trim().split("\n");
      assert.equal(lines.length, 20);
      // The two lines of each process are adjacent: the lock kept the others out.
      for (let i = 0; i < lines.length; i += 2) {
        const pid = lines[i].match(/^pid (\d+)$/)?.[1];
        assert.ok(pid, `expected a pid line, got ${lines[i]}`);
        assert.match(lines[i + 1], new RegExp(`^hello world \\d \\(pid ${pid}\\)$`));
      }
    },
  },
  {
    file: "mp_queue.ts",
    expect: ["main program starts", /\d+ items put, \d+ got/, /items left in q: \d+/],
    check(out) {
      const left = number(out, /items left in q: (\d+)/);
      const expected = number(out, /\(expected (\d+)\)/);
      assert.equal(left, expected);
    },
  },
  {
    file: "mp_producer_consumer.ts",
    expect: [
      "--- one cook, one eater ---",
      /the polling eater ate \d+ of 10 dishes/,
      "with an end signal the eater ate 10 of 10 dishes",
      "--- ten cooks, ten eaters ---",
      "100 dishes eaten in all",
      "program ends",
    ],
  },
  {
    file: "joinable_queue.ts",
    expect: [
      "main program starts",
      /producer \d done: everything was consumed/,
      "all 50 products consumed (0 left in the queue); main program ends",
    ],
    check(out) {
      assert.equal(count(out, /ate product \d+ of producer \d/g), 50);
      assert.equal(count(out, /producer \d done/g), 5);
      const last = out.lastIndexOf("ate product");
      assert.ok(last < out.indexOf("all 50 products consumed"));
    },
  },
  {
    file: "pipe.ts",
    // The consumer must start and read 10 items before terminate(): 5 s scaled to 1 s, so that a
    // worker start on a loaded machine (every example runs at once) does not miss it.
    scale: 0.2,
    expect: [
      "the producer starts",
      "consumer received: ",
      "consumer got EOFError",
      "consumer exit code 0",
      "item 0 is received",
      "item 9 is received",
      "consumer terminated (exit code -15)",
      "program ends",
    ],
    check(out) {
      assert.equal(count(out, /consumer received: \d+ sends red envelope \d/g), 10);
    },
  },
  {
    file: "semaphore_ktv.ts",
    expect: ["the KTV opens", /at most [1-4] of the 4 rooms were in use at once/, "============>"],
    check(out) {
      assert.equal(count(out, /user\d+ got a KTV room/g), 13);
      for (const n of numbers(out, /\((\d) of 4 in use\)/g)) assert.ok(n >= 1 && n <= 4);
    },
  },
  {
    file: "mp_event.ts",
    expect: [
      "false\nlook here!",
      "the child sets the event",
      "give me!!",
      "isSet(): true",
      "after clear(): false",
      "wait(500 ms) returned false",
    ],
  },
  {
    file: "pool_apply_async.ts",
    expect: [
      "--- 1. eight downloads on a Pool(4) ---",
      "downloads took",
      "--- 2. applyAsync with a callback ---",
      /main process: pid \d+/,
      "program ends",
    ],
    check(out) {
      const part1 = out.slice(0, out.indexOf("--- 2."));
      const pids = new Set(numbers(part1, /worker pid (\d+): now downloading/g));
      assert.equal(count(part1, /now downloading \d/g), 8);
      assert.ok(pids.size >= 1 && pids.size <= 4, `${pids.size} worker pids`);
      const main = number(out, /main process: pid (\d+)/);
      assert.deepEqual(numbers(out, /callback in pid (\d+): got download complete!/g), [
        main,
        main,
        main,
        main,
      ]);
      assert.equal(count(out, /--file-- 2/g), 4);
      assert.ok(out.lastIndexOf("callback in pid") < out.indexOf("program ends"));
    },
  },
  {
    file: "manager_dict.ts",
    expect: [
      "--- 1. ten processes set one key ---",
      /main process sees name = \d/,
      'the mutation was lost: ["jiaojiao","xiaoxiao"]',
      'assigned back: [7,"xiaoxiao"]',
      /without a lock: \d+ of 10 ids kept/,
      "under a lock: 10 of 10 ids kept: [0,1,2,3,4,5,6,7,8,9]",
      "the dict: ",
    ],
    check(out) {
      assert.equal(count(out, /process \d set name to \d/g), 10);
    },
  },
  {
    file: "pool_manager.ts",
    expect: [/20 tasks done by [1-4] worker processes/, "the dict has 21 keys"],
    check(out) {
      assert.equal(count(out, /task \d+ in pid \d+: name is now \[\d+,"xiaoxiao"\]/g), 20);
      for (let i = 0; i < 20; i++) {
        assert.match(out, new RegExp(`task ${i} in pid \\d+: name is now \\[${i},`));
      }
    },
  },
  {
    file: "demo.ts",
    // The plain `deno task demo` runs in setup_test.ts; here with the live view on.
    args: ["--short", "--observe"],
    stderr: true,
    expect: [
      /live view: http:\/\/127\.0\.0\.1:\d+\/ \(or: deno task top http/,
      "== 1/4 Pool.map on every core ==",
      /serial: +78,498 primes in/,
      /parallel: 78,498 primes in .* on \d+ workers/,
      /speedup: [\d.]+x with \d+ cores/,
      "== 2/4 A pipeline with a JoinableQueue ==",
      "12 jobs through 3 worker processes",
      "== 3/4 A Manager dict shared by processes ==",
      "top words: better=8, is=8, than=8",
      "90 words counted by 4 processes, 90 in the text: they match",
      "== 4/4 A supervised actor, killed and restarted ==",
      "counter (pid",
      "holds 7",
      "monitor: the counter stopped: killed",
      "with a fresh state: 0",
      "it counts again: 1 (restarts: 1)",
      "demo finished in",
    ],
    check(out, err) {
      assert.match(out, /supervisor: counter restarted/);
      assert.match(err, /Pool\.map \(\d+ cores\) +\[#+\] 20\/20/, "the progress bar");
      // The restarted counter runs in a new worker.
      const pids = numbers(out, /counter \(pid (\d+)\)/g);
      assert.equal(pids.length, 2);
      assert.notEqual(pids[0], pids[1]);
    },
  },
  {
    // Not a tutorial program: the actor engineer's example, run here so it cannot rot either.
    file: "supervised_pipeline.ts",
    args: ["1.5"],
    // A worker killed in the middle of a call may log its own crash on stderr.
    stderr: true,
    expect: [
      /killed worker-\d/,
      /restarted worker-\d \(killed\)/,
      "every item was processed exactly once",
    ],
  },
  {
    file: "as_completed.ts",
    scale: 0.1,
    expect: [
      "--- 1. ThreadPoolExecutor + asCompleted ---",
      // Fastest first: as each future completes, not in submission order.
      "'http://www.cnn.com/' page is 19000 bytes",
      "'http://www.bbc.co.uk/' page is 21000 bytes",
      "'http://europe.wsj.com/' page is 22000 bytes",
      "'http://nonexistant-subdomain.python.org/' generated an exception: getaddrinfo failed",
      "'http://www.foxnews.com/' page is 23000 bytes",
      "--- 2. ProcessPoolExecutor.map ---",
      "112272535095293 is prime: true",
      "112582705942171 is prime: true",
      "112272535095293 is prime: true",
      "115280095190773 is prime: true",
      "115797848077099 is prime: true",
      "1099726899285419 is prime: false",
    ],
    check(out) {
      const s = number(out, /all done in ([\d.]+) s/);
      assert.ok(s >= 2.9 && s < 8, `the loads took ${s} s: they did not run at once`);
    },
  },
  {
    file: "door_statem.ts",
    expect: [
      "the door is locked",
      "wrong code: wrong code",
      "right code: unlocked",
      "alice walked through",
      "bob walked through",
      "the door is open",
      "lock: locked",
      "passed: alice, bob, carol",
      'after stop, whereis("front-door") is undefined',
    ],
  },
];

/** Runs one example and collects its output; kills it if it hangs. */
function runExample(c: Case): Promise<ProgramResult> {
  return runProgram(new URL(c.file, EXAMPLES).pathname, c.args ?? [], {
    env: { DENOMP_EXAMPLE_SCALE: String(c.scale ?? SCALE), NO_COLOR: "1", ...c.env },
    timeoutMs: TIMEOUT_MS,
  });
}

/** Starts every run now, at most `limit` at a time; returns one promise per item, in order. */
function limited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R>[] {
  let active = 0;
  const waiting: (() => void)[] = [];
  return items.map(async (item) => {
    if (active >= limit) await new Promise<void>((r) => waiting.push(r));
    active++;
    try {
      return await fn(item);
    } finally {
      active--;
      waiting.shift()?.();
    }
  });
}

function checkOutput(c: Case, r: ProgramResult): void {
  const context = `\n--- stdout ---\n${r.out}\n--- stderr ---\n${r.err}`;
  assert.ok(!r.timedOut, `${c.file} did not finish in ${TIMEOUT_MS} ms${context}`);
  assert.equal(r.code, 0, `${c.file} exited with ${r.code}${context}`);
  if (!c.stderr) assert.equal(r.err, "", `${c.file} wrote to stderr${context}`);
  let at = 0;
  for (const p of c.expect) {
    const rest = r.out.slice(at);
    const m = typeof p === "string"
      ? (rest.includes(p) ? { index: rest.indexOf(p), length: p.length } : null)
      : (() => {
        const x = rest.match(p);
        return x ? { index: x.index!, length: x[0].length } : null;
      })();
    assert.ok(m, `${c.file}: expected ${p} (after offset ${at})${context}`);
    at += m.index + m.length;
  }
  for (const p of c.reject ?? []) {
    assert.ok(
      typeof p === "string" ? !r.out.includes(p) : !p.test(r.out),
      `${c.file}: unexpected ${p}${context}`,
    );
  }
  try {
    c.check?.(r.out, r.err);
  } catch (e) {
    (e as Error).message += context;
    throw e;
  }
}

Deno.test("every example in examples/ has a case here", async () => {
  const files = [];
  for await (const e of Deno.readDir(EXAMPLES)) {
    if (e.isFile && e.name.endsWith(".ts") && !e.name.startsWith("_")) files.push(e.name);
  }
  const covered = new Set(cases.map((c) => c.file));
  assert.deepEqual(files.filter((f) => !covered.has(f)).sort(), []);
});

Deno.test({
  name: "examples run and print what they show",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const runs = limited(cases, CONCURRENCY, runExample);
    for (const [i, c] of cases.entries()) {
      await t.step({
        name: c.file,
        sanitizeOps: false,
        sanitizeResources: false,
        async fn() {
          checkOutput(c, await runs[i]);
        },
      });
    }
    // A failed step must not leave runs behind.
    await Promise.allSettled(runs);
  },
});
