// W8-bytes (../shared/bench/WORKLOADS.md): 256 MiB through a Pipe as 1 MiB byte messages
// (sendBytes / recvBytes), then an empty one; the receiver checks count and length and replies.
// The worker is started first and says "ready"; the clock runs from the first send to the reply.
// Variants: async (main awaits sendBytes, worker awaits recvBytes), sync (both blocking).
//
//   deno run -A bench/w8_bytes.ts [--variant async,sync] [--n 256]
import type { Connection } from "../lib/connection/connection.ts";
import { Pipe } from "../lib/connection/pipe.ts";
import { Process } from "../lib/process/process.ts";
import { arg, emit, rounds, since } from "./_common.ts";

const MiB = 1 << 20;

/** Sink with await: counts messages and bytes until an empty one. */
export async function w8Sink(c: Connection<unknown>): Promise<void> {
  await c.send("ready");
  let count = 0, total = 0;
  for (;;) {
    const b = await c.recvBytes();
    if (b.length === 0) break;
    count++;
    total += b.length;
  }
  await c.send([count, total]);
  c.close();
}

/** Sink with the blocking API. */
export function w8SinkSync(c: Connection<unknown>): void {
  c.sendSync("ready");
  let count = 0, total = 0;
  for (let b = c.recvBytesSync(); b.length > 0; b = c.recvBytesSync()) {
    count++;
    total += b.length;
  }
  c.sendSync([count, total]);
  c.close();
}

if (import.meta.main) {
  const n = Number(arg("n", "256"));
  const payload = new Uint8Array(MiB).fill(0xa5);
  for (const { variant, warmUp } of rounds("async,sync")) {
    const [conn, child] = Pipe();
    const p = new Process({ target: variant === "sync" ? w8SinkSync : w8Sink, args: [child] });
    p.start();
    child.close();
    if ((await conn.recv()) !== "ready") throw new Error("sink process sent no ready message");
    const t0 = performance.now();
    let result: [number, number];
    if (variant === "sync") {
      for (let i = 0; i < n; i++) conn.sendBytesSync(payload);
      conn.sendBytesSync(new Uint8Array(0));
      result = conn.recvSync() as [number, number];
    } else {
      for (let i = 0; i < n; i++) await conn.sendBytes(payload);
      await conn.sendBytes(new Uint8Array(0));
      result = (await conn.recv()) as [number, number];
    }
    const s = since(t0);
    await p.join();
    conn.close();
    if (warmUp) continue;
    const [count, total] = result;
    emit({
      workload: "W8-bytes",
      variant,
      n,
      seconds: s,
      rate: n / s,
      unit: "MiB/s",
      ok: count === n && total === n * MiB && p.exitCode === 0,
    });
  }
}
