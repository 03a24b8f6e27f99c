/**
 * Isolation "process", child side: the main module of a child `deno` OS process
 * (`deno run ... os_child.ts <socket> <token> <parent pid> <"target" | "bridge">`). It connects to its parent, takes
 * its start frame, and runs the target as a thread worker's bootstrap does (see `core/spawn.ts`),
 * except that its exit code is the process's own: `Deno.exit(n)` is real here.
 *
 * It never outlives its parent: a watchdog kills the process (SIGKILL to itself) as soon
 * as its parent pid is no longer its parent, even while the main thread is busy in synchronous
 * code; the socket closing does the same.
 *
 * @module
 */

import { runExitHooks, setBootstrapping, setCurrent } from "../core/context.ts";
import { heap } from "../core/heap.ts";
import { Channel, F_HELLO, F_START, type StartFrame } from "./os_spawn.ts";
import { ProcessError } from "../core/errors.ts";
import { loads } from "../core/reduction.ts";

/** How often the parent pid is checked (ms; each check is one cheap system call). */
const WATCH_MS = 20;

/**
 * The watchdog of a child whose main thread runs user code: a thread of its own that polls the
 * parent pid, since the main thread may be busy in synchronous code for ever.
 */
const WATCHDOG = `
const parent = ${JSON.stringify(Deno.args[2] ?? "")};
setInterval(() => {
  if (String(Deno.ppid) !== parent) Deno.kill(Deno.pid, "SIGKILL");
}, ${WATCH_MS});
`;

/** Starts watching for the parent's death: from a thread, or (`here`) from this main thread. */
function watchParent(here: boolean): void {
  if (!here) {
    new Worker(
      URL.createObjectURL(new Blob([WATCHDOG], { type: "text/javascript" })),
      { type: "module", name: "denomp-watchdog" },
    );
    return;
  }
  const parent = Deno.args[2];
  const t = setInterval(() => {
    if (String(Deno.ppid) !== parent) die();
  }, WATCH_MS);
  Deno.unrefTimer(t);
}

function die(): never {
  Deno.kill(Deno.pid, "SIGKILL");
  Deno.exit(1);
}

function printFailure(name: string, err: unknown): void {
  const text = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
  console.error(`Process ${name}:\n${text}`);
}

async function main(): Promise<void> {
  const [path, token, parentPid, mode] = Deno.args;
  if (String(Deno.ppid) !== parentPid) die();
  // A bridge (a pool worker) runs user code in a thread of its own and keeps this one free, so
  // this one can watch; a target runs here, so a thread watches, started first thing (its start
  // then overlaps this one's, and a short-lived child does not wait for it at exit).
  watchParent(mode === "bridge");
  const conn = await Deno.connect({ transport: "unix", path });
  const ch = new Channel(conn);
  const start = await new Promise<StartFrame>((resolve) => {
    ch.listen((type, body) => {
      if (type !== F_START) return;
      // What comes next waits in the channel's backlog for the target's side to listen.
      ch.listen(undefined);
      resolve(loads<StartFrame>(body));
    });
    ch.send(F_HELLO, new TextEncoder().encode(token));
    // The parent is gone (or refused us): nothing will ever come.
    void ch.closed.then(die);
  });
  setCurrent({
    ...start.info,
    pid: Deno.pid,
    slot: heap().slot,
  });
  if (start.bridge) {
    await testDelay();
    const bridge = await import(start.bridge) as {
      childMain(ch: Channel, start: StartFrame): Promise<number>;
    };
    Deno.exit(await bridge.childMain(ch, start));
  }
  Deno.exit(await runTarget(start));
}

/**
 * Test-only: `DENOMP_TEST_CHILD_DELAY_MS` holds a child between its start frame and its target's
 * side listening, so a test can show that frames arriving then are kept, not lost.
 */
async function testDelay(): Promise<void> {
  let ms = 0;
  try {
    ms = Number(Deno.env.get("DENOMP_TEST_CHILD_DELAY_MS") ?? 0);
  } catch { /* no env permission: no delay */ }
  if (ms > 0) await new Promise((r) => setTimeout(r, ms));
}

/**
 * Whether `err` is the `SystemExit` that `exit(code)` throws (see core/spawn.ts), told by its name:
 * importing core/spawn.ts (and the spare workers it manages) would cost a short-lived child ~10 ms.
 */
function isSystemExit(err: unknown): err is Error & { code: number } {
  return err instanceof Error && err.name === "SystemExit" &&
    typeof (err as { code?: unknown }).code === "number";
}

function findExport(ns: Record<string, unknown>, name: string): unknown {
  if (name in ns) return ns[name];
  return Object.values(ns).find((v) => typeof v === "function" && v.name === name);
}

/** Runs a `Process` target; the exit code. */
async function runTarget(msg: StartFrame): Promise<number> {
  const fail = (err: unknown): number => {
    if (isSystemExit(err)) return err.code;
    printFailure(msg.info.name, err);
    return 1;
  };
  let failed: ((code: number) => void) | undefined;
  const failure = new Promise<number>((r) => (failed = r));
  addEventListener("error", (e) => {
    e.preventDefault();
    failed!(fail(e.error ?? e.message));
  });
  addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    failed!(fail(e.reason));
  });
  const run = async (): Promise<number> => {
    try {
      setBootstrapping(true);
      const [ns] = await Promise.all([
        import(msg.target.module),
        ...msg.preload.map((m) => import(m)),
      ]).finally(() => setBootstrapping(false));
      const fn = findExport(ns, msg.target.name);
      if (typeof fn !== "function") {
        throw new ProcessError(
          `target '${msg.target.name}' is not exported from ${msg.target.module}` +
            (fn === undefined
              ? " (export it so the child can import it)"
              : ` (it is a ${typeof fn}, not a function)`),
        );
      }
      const args = loads<unknown[]>(msg.payload.args);
      if (msg.kind === "class") {
        const obj = Object.create(fn.prototype) as { run(): unknown };
        Object.assign(obj, msg.payload.fields ? loads(msg.payload.fields) : {});
        await obj.run();
      } else {
        await (fn as (...a: unknown[]) => unknown)(...args);
      }
      await runExitHooks();
      return 0;
    } catch (err) {
      try {
        await runExitHooks();
      } catch { /* the target's failure is what gets reported */ }
      return fail(err);
    }
  };
  return await Promise.race([run(), failure]);
}

if (import.meta.main) await main();
