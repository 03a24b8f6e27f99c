// W4-pipe (../shared/bench/WORKLOADS.md): ping-pong of a small object `{ seq }` over a duplex
// Pipe between main and one process, 20,000 round trips; µs per round trip. As in
// python_mp_bench.py the worker is started first and says "ready"; only the round trips are
// timed. Variants:
//   async       main awaits send/recv, the worker echoes with await recv()/send()
//   sync        main uses sendSync/recvSync (blocking the main thread), the worker too
//   async-main  main awaits, the worker echoes with recvSync/sendSync (CPU-bound worker style)
//
//   deno run -A bench/w4_pipe.ts [--variant async,sync,async-main] [--n 20000]
import type { Connection } from "../lib/connection/connection.ts";
import { Pipe } from "../lib/connection/pipe.ts";
import { Process } from "../lib/process/process.ts";
import { arg, emit, rounds, since } from "./_common.ts";

type Msg = { seq: number } | "ready" | null;

/** Echo with await. */
export async function w4Echo(c: Connection<Msg>): Promise<void> {
  await c.send("ready");
  for (;;) {
    const m = await c.recv();
    if (m === null) break;
    await c.send(m);
  }
  c.close();
}

/** Echo with the blocking API. */
export function w4EchoSync(c: Connection<Msg>): void {
  c.sendSync("ready");
  for (let m = c.recvSync(); m !== null; m = c.recvSync()) c.sendSync(m);
  c.close();
}

if (import.meta.main) {
  const n = Number(arg("n", "20000"));
  for (const { variant, warmUp } of rounds("async,sync,async-main")) {
    const [conn, child] = Pipe<Msg>();
    const p = new Process({ target: variant === "async" ? w4Echo : w4EchoSync, args: [child] });
    p.start();
    child.close(); // so a dead child reads as EOFError here, not as a hang
    if ((await conn.recv()) !== "ready") throw new Error("echo process sent no ready message");
    let wrong = 0;
    const t0 = performance.now();
    if (variant === "sync") {
      for (let k = 0; k < n; k++) {
        conn.sendSync({ seq: k });
        if ((conn.recvSync() as { seq: number }).seq !== k) wrong++;
      }
    } else {
      for (let k = 0; k < n; k++) {
        await conn.send({ seq: k });
        if (((await conn.recv()) as { seq: number }).seq !== k) wrong++;
      }
    }
    const s = since(t0);
    await conn.send(null);
    await p.join();
    conn.close();
    if (warmUp) continue;
    emit({
      workload: "W4-pipe",
      variant,
      n,
      seconds: s,
      rate: s * 1e6 / n,
      unit: "us/roundtrip",
      ok: wrong === 0 && p.exitCode === 0,
    });
  }
}
