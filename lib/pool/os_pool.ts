/**
 * Isolation "process" for `Pool`: a pool worker that is a `deno` OS process. The pool itself is
 * unchanged: it writes task messages into the worker's task ring and reads result messages from
 * its result ring, in its own heap, exactly as for a thread worker. What this module adds is a
 * relay on each side of the socket, so that every rule of the pool (batching, windows, task
 * accounting after a death, cancelling, `maxTasksPerChild`, the initializer) is written once.
 *
 * - **Parent side** (in the pool's thread): reads each message of the worker's task ring and
 *   sends it as one frame; writes each result frame into the result ring and rings the pool's
 *   doorbell. A {@link Channel} writes all frames of a tick at once, and the child batches its
 *   results the same way: no message per task.
 * - **Child side** (the child's main thread): the real pool worker (`poolWorker`, unchanged) runs
 *   in a thread of the child, on rings in the child's own heap; the main thread moves task frames
 *   into its task ring and its results out to the socket. Keeping the main thread free is what
 *   lets it report a death exactly: a task that calls `Deno.exit` ends that thread, and the main
 *   thread sends every result written before it, then which task had started, then exits with
 *   its code.
 * - **Which tasks a death fails.** The pool fails the tasks up to the worker's `STARTED` word
 *   and queues the others again. Here the parent keeps that word: the task after the last
 *   result received, when more were sent (a worker runs its tasks one at a time, in order), or
 *   the exact number from the child's death frame when it could send one. A child killed from
 *   outside (`kill -9`, out of memory, a segfault) costs the task it was running (killed while
 *   idle, the task just sent to it, if any: whether it arrived cannot be known).
 * - **Cancelling.** The pool withdraws a task not begun by a cancel slot in the worker's block.
 *   The parent side, woken by the pool, tells the child, which claims a slot of its own (the
 *   same protocol, in its heap), so its worker skips the task. Told too late (the child had
 *   begun it: the parent's `STARTED` lags by one hop), the task runs there and its result is
 *   dropped on arrival. A result passing a slot frees it.
 * - **No work stealing** from such a worker (the pool skips it): its tasks not begun are in the
 *   child's heap, where the pool's compare-exchange on `STARTED` cannot reach them.
 * - **Handles** in a task's arguments (and the initializer's) cross as to an isolated `Process`:
 *   the pool encodes a task as for a thread worker (refusing, naming it, a handle that cannot
 *   cross: `adoptingEncoder`), and the parent side hands each task body holding handles to the
 *   server of the child's handles, which puts references in their place (`os_adopt.ts`; one
 *   round trip to a thread of this program, for such tasks only). A result holding a handle is
 *   replaced by a `SerializationError`: the child's own objects live in its memory.
 *
 * @module
 */

import { current, type ProcessInfo, setCurrent } from "../core/context.ts";
import { LIVENESS_SLICE_MS } from "../core/atomics.ts";
import { alloc, allocSlot, attachHeap, heap, inWorker } from "../core/heap.ts";
import {
  type Channel,
  exitNote,
  F_CANCEL,
  F_DEATH,
  F_RESULT,
  F_TASKS,
  type OsChild,
  registerBridge,
  type StartFrame,
} from "../process/os_spawn.ts";
import { EOF, Ring, TIMEOUT } from "../core/ring.ts";
import { SerializationError } from "../core/errors.ts";
import { SystemExit } from "../core/spawn.ts";
import {
  CANCEL,
  CANCEL_HINT,
  CANCEL_SLOTS,
  CODEC,
  COLUMN,
  CTL_BYTES,
  DEFINE_HEADER,
  Doorbell,
  OP_DEFINE,
  OP_IMPORT,
  OP_PAD,
  OP_TASK,
  putU32,
  R_COLUMN,
  R_ERR,
  R_OK,
  RESULT_HEADER,
  RESULT_RING_BYTES,
  STARTED,
  TASK_HEADER,
  TASK_RING_BYTES,
  u32,
  WORKER_BLOCK,
} from "./wire.ts";
import { poolWorker, type WorkerConfig } from "./worker.ts";
import { dumps, Encoder, holdsHandles, loads } from "../core/reduction.ts";
import { runExitHooks } from "../core/context.ts";
import { ServerCalls } from "../process/os_adopt.ts";

export { adoptingEncoder } from "../process/os_adopt.ts";
export { exitNote };

const WORKER = new URL("./worker.ts", import.meta.url).href;

// Registered whenever a pool can start a worker: pool.ts imports this module.
registerBridge(`${WORKER}#poolWorker`, { childModule: import.meta.url, attach: parentSide });

const copyOut = (b: Uint8Array): Uint8Array => b.slice();

/** The number of tasks in a task message. */
function countTasks(m: Uint8Array): number {
  let n = 0;
  for (let p = 0; p < m.length;) {
    const op = m[p];
    if (op === OP_TASK) {
      p += TASK_HEADER + u32(m, p + 12);
      n++;
    } else if (op === OP_DEFINE || op === OP_IMPORT) p += DEFINE_HEADER + u32(m, p + 5);
    else if (op === OP_PAD) p++;
    else break; // OP_STOP
  }
  return n;
}

/** Whether a task of message `m` has arguments holding handles (encoded by the codec). */
function holdsAny(m: Uint8Array): boolean {
  for (let p = 0; p < m.length;) {
    const op = m[p];
    if (op === OP_TASK) {
      const len = u32(m, p + 12);
      if (m[p + 2] === CODEC && holdsHandles(m.subarray(p + TASK_HEADER, p + TASK_HEADER + len))) {
        return true;
      }
      p += TASK_HEADER + len;
    } else if (op === OP_DEFINE || op === OP_IMPORT) p += DEFINE_HEADER + u32(m, p + 5);
    else if (op === OP_PAD) p++;
    else return false; // OP_STOP
  }
  return false;
}

/**
 * Message `m` as the child must get it: each task body holding handles encoded again by the
 * server of the child's handles (references in the handles' place), after an `OP_IMPORT` of the
 * modules that rebuild them; numeric columns padded to 8 again, as the writer does.
 */
async function adoptTasks(m: Uint8Array, server: ServerCalls): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const modules = new Set<string>();
  let size = 0;
  const add = (b: Uint8Array) => (parts.push(b), size += b.length);
  for (let p = 0; p < m.length;) {
    const op = m[p];
    if (op === OP_TASK) {
      const len = u32(m, p + 12), end = p + TASK_HEADER + len;
      let body = m.subarray(p + TASK_HEADER, end);
      if (m[p + 2] === COLUMN) {
        if (size & 7) add(new Uint8Array(8 - (size & 7))); // OP_PAD bytes
      } else if (holdsHandles(body)) {
        const [bytes, mods] = await server.adopt(body.slice());
        for (const u of mods) modules.add(u);
        body = bytes;
      }
      const head = m.slice(p, p + TASK_HEADER);
      putU32(head, 12, body.length);
      add(head);
      add(body);
      p = end;
    } else if (op === OP_DEFINE || op === OP_IMPORT) {
      const end = p + DEFINE_HEADER + u32(m, p + 5);
      add(m.subarray(p, end));
      p = end;
    } else if (op === OP_PAD) p++;
    else {
      add(m.subarray(p)); // OP_STOP
      break;
    }
  }
  const urls = dumps([...modules]);
  const imp = new Uint8Array(DEFINE_HEADER + urls.length);
  imp[0] = OP_IMPORT;
  putU32(imp, 5, urls.length);
  imp.set(urls, DEFINE_HEADER);
  const out = new Uint8Array(imp.length + size + 8);
  out.set(imp);
  // The import shifts what follows: pad so that the tasks keep their alignment mod 8.
  let at = imp.length;
  while (at & 7) out[at++] = OP_PAD;
  for (const b of parts) out.set(b, at), at += b.length;
  return out.subarray(0, at);
}

/**
 * The child has passed task `seq` (its result arrived): frees the pool's cancel slots of `seq`
 * and of the tasks before it (skipped by the child, or answered already). True when `seq`'s own
 * slot was held: it was withdrawn, its result is dropped.
 */
function passCancels(ctl: Int32Array, seq: number, told: Set<number>): boolean {
  if (Atomics.load(ctl, CANCEL_HINT) === 0) return false;
  let mine = false;
  for (let i = CANCEL; i < CANCEL + CANCEL_SLOTS; i++) {
    const v = Atomics.load(ctl, i);
    if (v === 0 || v > seq || Atomics.compareExchange(ctl, i, v, 0) !== v) continue;
    told.delete(v);
    if (v === seq) mine = true;
  }
  return mine;
}

/**
 * The child's side of `skip` in wire.ts, on its own rings: claims a cancel slot for `seq`, then
 * takes it back if the task has begun (the same store-then-load pair as the pool's).
 */
function skipHere(ctl: Int32Array, seq: number): void {
  for (let i = CANCEL; i < CANCEL + CANCEL_SLOTS; i++) {
    if (Atomics.compareExchange(ctl, i, 0, seq) !== 0) continue;
    Atomics.store(ctl, CANCEL_HINT, 1);
    if (Math.abs(Atomics.load(ctl, STARTED)) >= seq) Atomics.compareExchange(ctl, i, seq, 0);
    return;
  }
}

/** A result message holding handles, turned into the task's `SerializationError`. */
function refused(b: Uint8Array, enc: Encoder): Uint8Array {
  const err = new SerializationError(
    "result",
    `a handle cannot be sent back from a pool worker with isolation "process" (the child's objects live in its own memory; a handle given in the task's arguments is the parent's already)`,
  );
  const body = enc.encode(err, "error");
  const out = new Uint8Array(RESULT_HEADER + body.length);
  out.set(b.subarray(0, RESULT_HEADER));
  out[0] = R_ERR;
  out.set(body, RESULT_HEADER);
  return out;
}

/** The parent side of one isolated pool worker: its rings in this heap <-> the socket. */
function parentSide(ch: Channel, args: unknown[], child: OsChild): void {
  const cfg = args[0] as WorkerConfig;
  const sab = heap().sab;
  const ctl = new Int32Array(sab, cfg.block, CTL_BYTES >> 2);
  const tasks = new Ring(cfg.block + CTL_BYTES, cfg.block);
  const results = new Ring(cfg.block + CTL_BYTES + TASK_RING_BYTES, cfg.block);
  const bell = new Doorbell(cfg.bell);
  const ring = () => bell.ring();
  /** The largest message the result ring takes as one frame (as in Ring and ResultWriter). */
  const maxSingle = ((results.capacity >> 1) & ~3) - 4;
  const enc = new Encoder();
  const dead = () => child.exitCode !== null;
  const sendOptions = { broken: dead };
  const streamOptions = { broken: dead, onBegun: ring };
  /** Tasks sent to the child, and the number of the last one it answered. */
  let sent = 0, answered = 0, final = false;
  /** Tasks the child was told to skip (their cancel slots are still held). */
  const told = new Set<number>();
  const started = () => {
    if (final) return;
    // The child runs the task after the last one answered, unless it was told to skip it.
    let next = answered + 1;
    while (next <= sent && told.has(next)) next++;
    Atomics.store(ctl, STARTED, next <= sent ? next : answered);
  };
  // Tasks withdrawn while they wait in the child (the pool holds a cancel slot for each, and
  // notifies): the child is told to skip them, as a thread worker reads the slots itself.
  const tellCancels = () => {
    let list: number[] | undefined;
    for (let i = CANCEL; i < CANCEL + CANCEL_SLOTS; i++) {
      const v = Atomics.load(ctl, i);
      if (v > answered && v <= sent && !told.has(v)) told.add(v), (list ??= []).push(v);
    }
    if (list) {
      ch.send(F_CANCEL, dumps(list));
      started();
    }
  };
  ch.listen((type, b) => {
    if (type === F_RESULT) {
      const kind = b[0];
      if (kind === R_OK || kind === R_ERR || kind === R_COLUMN) {
        const seq = u32(b, 4);
        answered = seq;
        const withdrawn = passCancels(ctl, seq, told);
        started();
        if (withdrawn) return;
        if (kind !== R_COLUMN && holdsHandles(b.subarray(RESULT_HEADER))) b = refused(b, enc);
      }
      // As a thread worker's result writer does (see ResultWriter.#write), without blocking
      // this thread, which is also the pool's reader: a message that must wait for room is rung
      // for again once it is in; a streamed one when its first frame is out (`onBegun`).
      if (b.length <= maxSingle) {
        void results.post(b, sendOptions).then(ring);
        ring();
      } else {
        void results.post(b, streamOptions).then(ring);
      }
    } else if (type === F_DEATH) {
      // The child's own count: exact, where the estimate above may count one task too many.
      const [begun] = loads<[number, number | null]>(b);
      Atomics.store(ctl, STARTED, begun);
      final = true;
    }
  });
  // Stop reading the ring the moment the child is gone: the pool reuses its block soon after.
  const stop = new AbortController();
  void child.exited.then(() => stop.abort());
  /** The server of the child's handles, once a task held one. */
  let server: ServerCalls | undefined;
  void child.exited.then(() => server?.close());
  void (async () => {
    for (;;) {
      let m = await tasks.recv(copyOut, { eof: dead, signal: stop.signal });
      if (m === EOF || m === TIMEOUT || dead()) return;
      if (holdsAny(m)) {
        try {
          m = await adoptTasks(m, server ??= new ServerCalls(child.handleServer()));
        } catch (e) {
          if (dead()) return;
          // Not seen unless this program's own thread fails: the tasks sent cannot be skipped.
          console.error(`${child.pid}: the handles of a task could not be served:`, e);
          child.terminate(-9);
          return;
        }
        if (dead()) return;
      }
      sent += countTasks(m);
      started();
      ch.send(F_TASKS, m);
    }
  })().catch(() => {});
  void (async () => {
    while (!dead()) {
      const w = Atomics.waitAsync(ctl, CANCEL_HINT, Atomics.load(ctl, CANCEL_HINT), 1000);
      if (w.async) await w.value;
      if (!dead()) tellCancels();
    }
  })();
}

/**
 * The child side of an isolated pool worker (run by the child's main module instead of the
 * target): starts the real pool worker in a thread on rings in this process's heap and relays.
 * Resolves with the exit code of the process.
 *
 * @example
 * ```ts ignore
 * // In process/os_child.ts, for a start frame naming this module as its bridge:
 * Deno.exit(await childMain(channel, start));
 * ```
 */
export async function childMain(ch: Channel, start: StartFrame): Promise<number> {
  const block = alloc(WORKER_BLOCK);
  Ring.init(block + CTL_BYTES, TASK_RING_BYTES);
  Ring.init(block + CTL_BYTES + TASK_RING_BYTES, RESULT_RING_BYTES);
  const bellAt = alloc(Doorbell.BYTES);
  const sab = heap().sab;
  const ctl = new Int32Array(sab, block, CTL_BYTES >> 2);
  const tasks = new Ring(block + CTL_BYTES, block);
  const results = new Ring(block + CTL_BYTES + TASK_RING_BYTES, block);
  const bell = new Doorbell(bellAt);
  ch.listen((type, body) => {
    if (type === F_TASKS) void tasks.post(body);
    else if (type === F_CANCEL) { for (const seq of loads<number[]>(body)) skipHere(ctl, seq); }
  });
  // The parent is gone: so is this worker (whatever its thread is doing).
  void ch.closed.then(() => Deno.kill(Deno.pid, "SIGKILL"));
  let exited = false, code = 1;
  void runThread(start, block, bellAt).then((c) => {
    code = c;
    exited = true;
    bell.ring();
  });
  const out = (b: Uint8Array): true => {
    ch.send(F_RESULT, b);
    return true;
  };
  for (;;) {
    const seen = bell.count();
    let n = 0;
    for (;;) {
      if (results.tryRecv(out) !== TIMEOUT) {
        n++;
        continue;
      }
      // A message too large for one frame is streamed: read it whole.
      if (results.empty() || (await results.recv(out, { timeout: 0 })) === TIMEOUT) break;
      n++;
    }
    if (n) continue;
    if (exited) break;
    await bell.sleep(seen, LIVENESS_SLICE_MS);
  }
  ch.send(F_DEATH, dumps([Math.abs(Atomics.load(ctl, STARTED)), code]));
  await ch.drain();
  return code;
}

/**
 * What the child's pool thread is started with: its configuration still encoded (the handles
 * in `initargs` are proxies, which must be rebuilt in the thread that uses them), the modules
 * that rebuild them, and its rings' block and doorbell in this process's heap.
 */
interface ThreadStart {
  heap: SharedArrayBuffer;
  info: ProcessInfo;
  args: Uint8Array;
  preload: string[];
  block: number;
  bell: number;
}

/**
 * Runs the pool worker in a thread of this child and resolves with its exit code. A lean start,
 * not a `Process`: this thread only runs tasks (handles cannot reach it, so it never needs the
 * rest of the library, which a `Process` worker loads in the background, costing a fresh child
 * ~15 ms of compiling just when its first tasks arrive).
 */
function runThread(start: StartFrame, block: number, bell: number): Promise<number> {
  const name = start.info.name;
  const slot = allocSlot(heap().slot);
  const w = new Worker(import.meta.url, { type: "module", name });
  return new Promise<number>((resolve) => {
    w.onmessage = (e: MessageEvent<{ exit: number }>) => {
      w.terminate();
      resolve(e.data.exit);
    };
    w.onerror = (e) => {
      e.preventDefault();
      console.error(`Process ${name}: ${e.message}`);
      w.terminate();
      resolve(1);
    };
    // The task's view of itself: this child's name, parent and OS pid, with the thread's slot.
    const info = { ...current(), slot, daemon: true };
    const { args } = start.payload, preload = start.preload;
    w.postMessage({ heap: heap().sab, info, args, preload, block, bell } satisfies ThreadStart);
  });
}

/** The thread's side of {@link runThread}. */
function threadMain(): void {
  const scope = globalThis as unknown as {
    onmessage: ((e: MessageEvent<ThreadStart>) => void) | null;
    postMessage(data: unknown): void;
  };
  scope.onmessage = (e) => {
    scope.onmessage = null;
    const { heap: sab, info, args, preload, block, bell } = e.data;
    const name = info.name;
    attachHeap(sab, info.slot);
    setCurrent(info);
    // Deno.exit() in a thread ends only the thread and says nothing: unwind instead, so this
    // thread reports the code (and the main thread which task had started).
    Object.defineProperty(Deno, "exit", {
      value: (code = 0) => {
        throw new SystemExit(code);
      },
      configurable: true,
    });
    const report = (err: unknown) => {
      if (err instanceof SystemExit) return scope.postMessage({ exit: err.code });
      console.error(`Process ${name}:`, err);
      scope.postMessage({ exit: 1 });
    };
    addEventListener("error", (e) => {
      e.preventDefault();
      report(e.error ?? e.message);
    });
    addEventListener("unhandledrejection", (e) => {
      e.preventDefault();
      report(e.reason);
    });
    // Calls on the handles it was given that nobody awaited (a put) are answered first.
    Promise.all(preload.map((u) => import(u)))
      .then(() => poolWorker({ ...loads<[WorkerConfig]>(args)[0], block, bell }))
      .then(() => runExitHooks())
      .then(() => scope.postMessage({ exit: 0 }), report);
  };
}

// Started by runThread: the only worker that runs this module as its main module.
if (inWorker() && import.meta.main) threadMain();
