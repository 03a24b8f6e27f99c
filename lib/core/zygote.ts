/**
 * The zygote: a worker whose only job is to create spare workers (spares.ts), so that the
 * thread that starts processes never pays for creating them. Deno's `new Worker()` blocks the
 * calling thread until the new thread has built its isolate: ~10 ms alone, up to ~120 ms beside
 * workers that are loading modules (measured on 2 cores). Made on the starting thread, a spare
 * would stall that thread at a moment it does not choose (a pool's first results waiting behind
 * it); made here, it costs that thread one message.
 *
 * A spare made here is this worker's child, so it talks to the starting thread through a
 * `MessageChannel` whose one end is sent to it and the other to the starting thread; this
 * worker keeps the `Worker` object, to end it (`{ end: id }`) and to forward its `error` events
 * (`{ error: id, message }`) and its one message, that it has booted (`{ ready: id }`: through
 * this worker, whose channel to the starting thread can be un-ref'd, unlike a port's once it
 * has received a message). It must therefore live as long as any of them (spares.ts ends it
 * only when it has neither spares nor running children). Deno starts a worker made by a worker
 * 500 ms late (Deno 2.9.6: each worker has an inspector session with the main thread, and a
 * worker made while its parent has one first waits 500 ms for a debugger, in the inspector's
 * `wait_for_page_wait_for_debugger`): spares arrive 0.5–1 s after they are asked for, which is
 * why they are made ahead of need.
 *
 * @module
 */

/** What the starting thread asks. */
export type ZygoteRequest = { make: number; warm: string[] } | { end: number };

/** What the zygote answers: a new spare (with its end of the channel), or a spare's error. */
export type ZygoteReply =
  | { spare: number; port: MessagePort }
  | { ready: number }
  | { error: number; message: string };

const BOOTSTRAP = new URL("./bootstrap.ts", import.meta.url);

/** The worker's global scope, typed for the members used here. */
const scope = globalThis as unknown as {
  postMessage(data: ZygoteReply, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<ZygoteRequest>) => void) | null;
};

const workers = new Map<number, Worker>();
let ids = 0;

scope.onmessage = (e) => {
  const m = e.data;
  if ("end" in m) {
    workers.get(m.end)?.terminate();
    workers.delete(m.end);
    return;
  }
  for (let i = 0; i < m.make; i++) {
    const id = ++ids;
    const worker = new Worker(BOOTSTRAP, { type: "module", name: "denomp-spare" });
    const { port1, port2 } = new MessageChannel();
    // Its one message to this worker: booted (its others go through the channel).
    worker.onmessage = () => scope.postMessage({ ready: id });
    worker.onerror = (ev) => {
      ev.preventDefault(); // reported to the starting thread, which decides (as for a new worker)
      scope.postMessage({ error: id, message: ev.message });
    };
    worker.postMessage({ warm: m.warm, port: port2 }, [port2]);
    workers.set(id, worker);
    scope.postMessage({ spare: id, port: port1 }, [port1]);
  }
};
