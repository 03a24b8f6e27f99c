// W2-queue (../shared/bench/WORKLOADS.md): one producer process puts 200,000 items
// `{ i, s: "item-" + i }` on a Queue, one consumer process gets them all and checks the sum of
// `i`. The clock runs from starting both processes until the consumer's result arrives
// (process start-up included, as in python_mp_bench.py).
//
// Variants `process-isolation*` (issue 14: "W2-queue between the parent and an isolated
// child"): the queue lives in the parent, which serves it to the isolated child (a `deno` OS
// process) from a thread of its own over a Unix socket (lib/process/os_agent.ts).
// `process-isolation`: the parent puts (async, on its main thread), the child gets;
// `process-isolation-put`: the child puts, the parent gets; `-sync`: the child uses the blocking
// API (the parent's side stays async: its event loop serves the child's start);
// `process-isolation-2children`: producer and consumer are both isolated children (both OS
// processes, as both of python_mp_bench.py's are), the queue in the parent between them.
//
// Each timed round starts when the program's spare workers are ready (lib/core/spares.ts: the
// default 2, ready ~1 s after they were asked for; at most 3 s is waited): the two processes
// start as they do in a program that has been running for a second, the way Python's peer forks
// from a running interpreter. The line's `spares` field says how many were ready; `--cold` also
// skips the warm-up round, and `DENOMP_SPARES=0` gives the figure without spares.
//
// Variant `typed`: the same items and check through a typed queue (issue 23.2), its schema
// `{ i: "i32", s: "string" }`, in batches (`putManySync`/`getManySync`); the end is `close()`
// (a typed item cannot be `null`).
//
//   deno run -A bench/w2_queue.ts [--variant async,sync,typed,process-isolation,...] [--n 200000]
import { Process } from "../lib/process/process.ts";
import { Queue } from "../lib/queues/queues.ts";
import { schema } from "../lib/queues/typed.ts";
import { ValueError } from "../lib/core/errors.ts";
import { Yielder } from "../lib/core/yield.ts";
import { __testHooks, spareOptions } from "../lib/core/spares.ts";
import { arg, emit, rounds, since } from "./_common.ts";

type Item = { i: number; s: string } | null;

/** Producer: puts `n` items, then `null`. */
export async function w2Producer(q: Queue<Item>, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await q.put({ i, s: "item-" + i });
  await q.put(null);
}

/**
 * The parent's producer in the variants where the parent puts: `w2Producer`, letting one
 * macrotask pass every 1024 items (~15 µs each). Without it the loop, whose puts settle at once,
 * holds the parent's event loop until the last item, and the isolated child's start (its
 * connection is answered there) waits for the whole stream.
 */
async function w2ProducerYielding(q: Queue<Item>, n: number): Promise<void> {
  const y = new Yielder();
  for (let i = 0; i < n; i++) {
    await q.put({ i, s: "item-" + i });
    if ((i & 1023) === 1023) await y.yield();
  }
  await q.put(null);
  y.close();
}

/** Consumer: gets until `null`, reports `[count, sum]`. */
export async function w2Consumer(q: Queue<Item>, result: Queue<[number, number]>): Promise<void> {
  let count = 0, total = 0;
  for (;;) {
    const item = await q.get();
    if (item === null) break;
    count++;
    total += item.i;
  }
  await result.put([count, total]);
}

/** The same pair with the blocking (`Sync`) API, as CPU-bound worker code would use it. */
export function w2ProducerSync(q: Queue<Item>, n: number): void {
  for (let i = 0; i < n; i++) q.putSync({ i, s: "item-" + i });
  q.putSync(null);
}

/** Blocking consumer. */
export function w2ConsumerSync(q: Queue<Item>, result: Queue<[number, number]>): void {
  let count = 0, total = 0;
  for (let item = q.getSync(); item !== null; item = q.getSync()) {
    count++;
    total += item.i;
  }
  result.putSync([count, total]);
}

/** W2's item as a schema: the typed variant's queue carries `{ i, s }` records. */
export const w2Schema = schema({ i: "i32", s: "string" });
type TypedItem = { i: number; s: string };
/** Items per `putManySync` batch of the typed variant. */
const BATCH = 2048;

/**
 * The items `from` to `to` (excluded) into `batch`. The typed pair's per-item loops are small
 * functions of their own, called per batch: a loop nested in the producer's or consumer's main
 * loop was compiled by V8 on-stack for the inner loop and thrown away at each exit from it
 * (`--trace-deopt`: "exit from OSR'd inner loop", dozens of times a run), which in a 200,000-item
 * run costs more than the items.
 */
function fill(batch: TypedItem[], from: number, to: number): TypedItem[] {
  batch.length = 0;
  for (let i = from; i < to; i++) batch.push({ i, s: "item-" + i });
  return batch;
}

/** The sum of the items' `i`. */
function sumOf(items: TypedItem[]): number {
  let total = 0;
  for (const item of items) total += item.i;
  return total;
}

/** Typed producer: puts `n` items in batches, then closes the queue (the end). */
export function w2ProducerTyped(q: Queue<TypedItem>, n: number): void {
  const batch: TypedItem[] = [];
  for (let i = 0; i < n; i += BATCH) q.putManySync(fill(batch, i, Math.min(n, i + BATCH)));
  q.close();
}

/** Typed consumer: takes what is there until the queue is closed and drained. */
export function w2ConsumerTyped(q: Queue<TypedItem>, result: Queue<[number, number]>): void {
  let count = 0, total = 0;
  for (;;) {
    let items: TypedItem[];
    try {
      items = q.getManySync();
    } catch (e) {
      if (e instanceof ValueError) break; // closed and drained
      throw e;
    }
    count += items.length;
    total += sumOf(items);
  }
  result.putSync([count, total]);
}

/** Waits until the spare workers are ready (at most 3 s); how many are. */
async function sparesReady(): Promise<number> {
  const t0 = performance.now();
  while (__testHooks.live() < spareOptions().count && performance.now() - t0 < 3000) {
    await new Promise((r) => setTimeout(r, 10));
  }
  return __testHooks.live();
}

if (import.meta.main) {
  const n = Number(arg("n", "200000"));
  for (
    const { variant, warmUp } of rounds(
      "async,sync,typed,process-isolation,process-isolation-sync,process-isolation-put,process-isolation-put-sync,process-isolation-2children",
    )
  ) {
    const spares = warmUp ? 0 : await sparesReady();
    const result = new Queue<[number, number]>();
    const sync = variant.endsWith("sync"), typed = variant === "typed";
    const isolation = variant.startsWith("process-isolation") ? "process" : "thread";
    const tq = new Queue({ schema: w2Schema }), q = new Queue<Item>();
    const producer = sync ? w2ProducerSync : w2Producer;
    const consumer = sync ? w2ConsumerSync : w2Consumer;
    // Who runs in the parent (its main thread) rather than in a child, by variant.
    const inParent = variant.startsWith("process-isolation-put")
      ? "consumer"
      : variant.startsWith("process-isolation") && !variant.includes("2children")
      ? "producer"
      : "";
    const ps = typed
      ? [
        new Process({ target: w2ProducerTyped, args: [tq, n], daemon: true }),
        new Process({ target: w2ConsumerTyped, args: [tq, result], daemon: true }),
      ]
      : [
        ...(inParent === "producer"
          ? []
          : [new Process({ target: producer, args: [q, n], daemon: true, isolation })]),
        ...(inParent === "consumer"
          ? []
          : [new Process({ target: consumer, args: [q, result], daemon: true, isolation })]),
      ];
    const t0 = performance.now();
    for (const p of ps) p.start();
    // The parent's half is async code (its main thread serves the children's starts meanwhile).
    if (inParent === "producer") await w2ProducerYielding(q, n);
    if (inParent === "consumer") await w2Consumer(q, result);
    const [count, total] = await result.get();
    const s = since(t0);
    for (const p of ps) await p.join();
    const ok = count === n && total === n * (n - 1) / 2 && ps.every((p) => p.exitCode === 0);
    if (warmUp) continue;
    emit({
      workload: "W2-queue",
      variant,
      n,
      seconds: s,
      rate: n / s,
      unit: "items/s",
      ok,
      spares,
    });
  }
}
