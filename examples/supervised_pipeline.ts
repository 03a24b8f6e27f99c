// A supervised pipeline: a producer actor hands work items to a pool of worker actors and sends
// each result to an aggregator actor. A chaos monkey kills a random worker every second; the
// supervisor restarts it, the producer retries the item that died with it, and the aggregator
// still ends up with every item exactly once.
//
//   deno run -A --unstable-worker-options examples/supervised_pipeline.ts [seconds]
//
// Runs 3 seconds by default (or PIPELINE_SECONDS). The pool is a set of worker actors under a
// one_for_one Supervisor: denomp's Pool replaces its dead workers too, but offers no way to kill
// one from outside, which this demo is about. New workers reach the producer through a Mailbox,
// and each of the producer's lanes takes only its own update from it (selective receive).
//
// Look for: "killed worker-N", "restarted worker-N (killed)", and at the end "every item was
// processed exactly once".
import { Actor } from "../lib/actor/actor.ts";
import { ActorExited } from "../lib/actor/exit.ts";
import type { ActorRef } from "../lib/actor/ref.ts";
import { Mailbox } from "../lib/actor/mailbox.ts";
import { spawn } from "../lib/actor/spawn.ts";
import { Supervisor } from "../lib/actor/supervisor.ts";

const LANES = 3;

type Update = { lane: number; worker: ActorRef<Cruncher> };

/** Collects results; counts duplicates to prove there are none. */
export class Aggregator extends Actor {
  seen = new Set<number>();
  sum = 0;
  duplicates = 0;
  receive(msg: { item: number; result: number }): void {
    if (this.seen.has(msg.item)) this.duplicates++;
    else (this.seen.add(msg.item), (this.sum += msg.result));
  }
  summary(): { count: number; sum: number; duplicates: number } {
    return { count: this.seen.size, sum: this.sum, duplicates: this.duplicates };
  }
}

/** A worker: a few milliseconds of CPU per item. */
export class Cruncher extends Actor {
  work(item: number): number {
    let primes = 0;
    for (let n = 2; n < 20_000; n++) {
      let prime = true;
      for (let d = 2; d * d <= n; d++) if (n % d === 0) (prime = false), (d = n);
      if (prime) primes++;
    }
    return primes === 2262 ? item * 2 : -1;
  }
}

/** Feeds one lane per worker; a lane whose worker died waits for its replacement and retries. */
export class Producer extends Actor {
  constructor(
    readonly sink: ActorRef<Aggregator>,
    readonly updates: Mailbox<Update>,
    readonly workers: ActorRef<Cruncher>[],
  ) {
    super();
  }

  async run(ms: number): Promise<{ items: number; retries: number }> {
    const deadline = Date.now() + ms;
    const sent: Promise<void>[] = [];
    let next = 0, retries = 0;
    const lane = async (k: number) => {
      while (Date.now() < deadline) {
        const item = next++;
        for (;;) {
          try {
            const result = await this.workers[k].call.work(item);
            sent.push(this.sink.tell({ item, result }));
            break;
          } catch (e) {
            if (!(e instanceof ActorExited)) throw e;
            retries++;
            const u = await this.updates.receive({ match: (u) => u.lane === k, timeout: 10_000 });
            this.workers[k] = u.worker;
          }
        }
      }
    };
    await Promise.all(this.workers.map((_, k) => lane(k)));
    await Promise.all(sent); // every result is in the aggregator's mailbox
    return { items: next, retries };
  }
}

if (import.meta.main) {
  const seconds = Number(Deno.args[0] ?? Deno.env.get("PIPELINE_SECONDS") ?? 3);
  const updates = new Mailbox<Update>();
  const aggregator = await spawn(Aggregator, { name: "aggregator" });
  const pool: Supervisor = await new Supervisor({
    name: "workers",
    strategy: "one_for_one",
    maxRestarts: 20,
    withinMs: 5000,
    children: Array.from({ length: LANES }, (_, k) => ({
      id: `worker-${k}`,
      start: () => spawn(Cruncher),
    })),
    onEvent: (e) => {
      if (e.type !== "restarted") return;
      const reason = typeof e.reason === "string" ? e.reason : e.reason.message;
      console.log(`restarted ${e.id} (${reason})`);
      const worker = pool.get(e.id) as ActorRef<Cruncher>;
      void updates.send({ lane: Number(e.id.split("-")[1]), worker });
    },
  }).start();
  const workers = Array.from(
    { length: LANES },
    (_, k) => pool.get(`worker-${k}`) as ActorRef<Cruncher>,
  );
  const producer = await spawn(Producer, { args: [aggregator, updates, workers] });

  const monkey = setInterval(() => {
    const id = `worker-${Math.floor(Math.random() * LANES)}`;
    const w = pool.get(id) as ActorRef<Cruncher> | undefined;
    if (w?.kill()) console.log(`killed ${id}`);
  }, 1000);
  const { items, retries } = await producer.call.run(seconds * 1000);
  clearInterval(monkey);

  const s = await aggregator.call.summary();
  console.log(
    `${items} items produced, ${s.count} aggregated (${s.duplicates} duplicates), ` +
      `${retries} retried after their worker died, ${pool.restartCount} workers restarted`,
  );
  const exact = s.count === items && s.duplicates === 0 && s.sum === items * (items - 1);
  console.log(exact ? "every item was processed exactly once" : "ITEMS WERE LOST OR DUPLICATED");
  await producer.stop();
  await pool.stop();
  await aggregator.stop();
  if (!exact) Deno.exit(1);
}
