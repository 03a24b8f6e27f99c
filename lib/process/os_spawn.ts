/**
 * Isolation "process", parent side: a child that is a separate `deno` OS process, started with
 * `Deno.Command`, as `Child` in `core/spawn.ts` is a Web Worker. `Process` hands over to
 * {@link OsChild} when its options say `isolation: "process"`; the two have the same shape
 * (pid, exitCode, exited, terminate), so everything above them is written once.
 *
 * Why a separate OS process: crash isolation. A child that segfaults, runs out of memory (its
 * V8 heap is capped by `maxMemoryMb`), calls `Deno.exit` or is killed from a shell costs only
 * itself, and `terminate()` frees its CPU at once (a signal), which `Worker.terminate()` cannot
 * do to a thread busy in synchronous code.
 *
 * Transport: one Unix domain socket per parent (in a private temporary folder); each child
 * connects and says which child it is with a random token. Not stdin/stdout: the child's
 * `console.log` writes to fd 1, so stdout cannot be a framed channel. Frames are
 * `[u32 length][u8 type][body]`; a {@link Channel} gathers every frame sent in one tick into one
 * write, so a burst of results costs one system call, not one per task.
 *
 * Flags: the child runs `deno run` in the parent's working folder (so Deno finds the same
 * `deno.json` the parent found), with the parent's own module-resolution flags (`--config`,
 * `--import-map`, lock, node_modules, `--unstable-*`, `--v8-flags`) and partial permission lists
 * when this program may read them (`/proc/self/cmdline`, which Deno allows only with
 * `--allow-all`), always `--unstable-worker-options` and `--no-prompt`, the permissions described
 * at {@link permissionFlags}, the heap cap, then the `denoFlags` option.
 *
 * No orphans: a child kills itself when the socket closes, or when its parent's pid is no longer
 * its parent (polled every 20 ms from a thread that never runs user code: a watchdog thread in a
 * `Process` child, the main thread of a pool child), so even a child busy in synchronous code
 * notices a parent killed with SIGKILL. The parent's orderly exit (the end of its program, or
 * `Deno.exit`) kills the children still running: its non-daemon ones have been waited for, as
 * for threads, since a running child keeps the program alive unless it is a daemon.
 *
 * @module
 */

import { keepAlive } from "../core/atomics.ts";
import { allocSlot, heap, markDead } from "../core/heap.ts";
import { current } from "../core/context.ts";
import { recordExit, recordProcess } from "../core/observe.ts";
import type { ChildSpec } from "../core/spawn.ts";
import type { IsolationOptions } from "./process.ts";
import { ProcessError, ValueError } from "../core/errors.ts";
import { dumps, Encoder } from "../core/reduction.ts";
import { Channel, F_HELLO, F_START } from "./os_channel.ts";
import { HandleTable } from "./os_handles.ts";
import { agentsEndedLate, startAgent } from "./os_agent.ts";

export { Channel, F_CANCEL, F_DEATH, F_HELLO, F_RESULT, F_START, F_TASKS } from "./os_channel.ts";

/**
 * Validates the isolation options of `what` (`"Process"`, `"Pool"`): `ValueError` naming the
 * problem. Returns true when the child is an OS process.
 *
 * @example
 * ```ts
 * import { checkIsolation } from "./os_spawn.ts";
 * console.assert(checkIsolation({ isolation: "process", maxMemoryMb: 128 }, "Pool"));
 * console.assert(!checkIsolation({}, "Pool"));
 * ```
 */
export function checkIsolation(options: IsolationOptions, what: string): boolean {
  const iso = options.isolation ?? "thread";
  if (iso !== "thread" && iso !== "process") {
    throw new ValueError(
      `${what}: isolation must be "thread" or "process": current value is ${String(iso)}`,
    );
  }
  if (options.maxMemoryMb !== undefined) {
    if (iso !== "process") {
      throw new ValueError(
        `${what}: maxMemoryMb needs isolation "process" (threads share one V8 heap, so a thread's memory cannot be capped)`,
      );
    }
    const mb = options.maxMemoryMb;
    if (!Number.isInteger(mb) || mb < 16) {
      throw new ValueError(
        `${what}: maxMemoryMb must be an integer of at least 16: current value is ${mb}`,
      );
    }
  }
  if (options.denoFlags !== undefined) {
    if (iso !== "process") {
      throw new ValueError(`${what}: denoFlags needs isolation "process"`);
    }
    if (!Array.isArray(options.denoFlags) || options.denoFlags.some((f) => typeof f !== "string")) {
      throw new TypeError(`${what}: denoFlags must be an array of strings`);
    }
  }
  return iso === "process";
}

/**
 * An encoder for values sent to an isolated child. A handle (an offset into this program's
 * shared heap) means nothing there: the kinds that are served across OS processes (see
 * `os_handles.ts`) are numbered in `table` and cross as references, and the rest is refused
 * with a `SerializationError` naming it and why.
 *
 * @example
 * ```ts
 * import { isolatedEncoder } from "./os_spawn.ts";
 * import { HandleTable } from "./os_handles.ts";
 * import { loads } from "jsr:@denomp/multiprocessing";
 * const enc = isolatedEncoder(new HandleTable("/tmp/s"));
 * console.assert(loads<number[]>(enc.encode([1, 2], "args"))[1] === 2);
 * ```
 */
export function isolatedEncoder(table: HandleTable): Encoder {
  return new Encoder(table.codec());
}

let tables = 0;

/**
 * A table for the handles one isolated child is given: its server listens in this program's
 * private socket folder.
 *
 * @example
 * ```ts ignore
 * const table = handleTable();
 * const args = isolatedEncoder(table).encode([queue], "args");
 * ```
 */
export function handleTable(): HandleTable {
  return new HandleTable(() => {
    try {
      return `${listener().dir}/h${++tables}`;
    } catch (e) {
      throw cannotStart(e);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// The parent's listener

interface Listening {
  path: string;
  dir: string;
  waiting: Map<string, (ch: Channel) => void>;
  close(): void;
}
/** The listener, while some child lives (it is closed when the last one is gone). */
let listening: Listening | undefined;

function listener(): Listening {
  if (listening) return listening;
  const dir = Deno.makeTempDirSync({ prefix: "denomp-os-" });
  const path = `${dir}/s`;
  const l = Deno.listen({ transport: "unix", path });
  l.unref();
  const waiting = new Map<string, (ch: Channel) => void>();
  const close = () => {
    if (listening?.dir === dir) listening = undefined;
    try {
      l.close();
    } catch { /* closed */ }
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* gone */ }
  };
  listening = { path, dir, waiting, close };
  void (async () => {
    for await (const conn of l) {
      const ch = new Channel(conn);
      ch.listen((type, body) => {
        const token = type === F_HELLO ? new TextDecoder().decode(body) : "";
        const take = waiting.get(token);
        if (!take) return ch.close();
        waiting.delete(token);
        ch.listen(() => {});
        take(ch);
      });
    }
  })().catch(() => {});
  return listening;
}

// ---------------------------------------------------------------------------------------------
// Flags

const PERMISSIONS = ["read", "write", "net", "env", "sys", "run", "ffi", "import"] as const;
type PermName = typeof PERMISSIONS[number];

let parentArgs: string[] | null | undefined;

/** The parent's own `deno` flags (before its main module), or null when they cannot be read. */
function ownFlags(): string[] | null {
  if (parentArgs !== undefined) return parentArgs;
  try {
    const argv = Deno.readTextFileSync("/proc/self/cmdline").split("\0").filter((a) => a);
    // argv: deno <subcommand> flags... <script> args...: the flags end where Deno.args begin,
    // minus the script (or before the first non-flag).
    const end = argv.length - Deno.args.length;
    const flags: string[] = [];
    for (let i = 2; i < end; i++) {
      const a = argv[i];
      if (!a.startsWith("-")) break;
      flags.push(a);
      if (VALUE_FLAGS.has(a) && i + 1 < end) flags.push(argv[++i]);
    }
    parentArgs = flags;
  } catch {
    parentArgs = null;
  }
  return parentArgs;
}

/** Flags that take their value as the next argument. */
const VALUE_FLAGS = new Set(["-c", "--config", "--import-map", "--cert", "--location", "--seed"]);
/** Flags (or their `--flag=` forms) a child inherits: how modules resolve, and V8's settings. */
const INHERITED = [
  "-c",
  "--config",
  "--no-config",
  "--import-map",
  "--lock",
  "--no-lock",
  "--frozen",
  "--node-modules-dir",
  "--vendor",
  "--cached-only",
  "--no-remote",
  "--no-npm",
  "--cert",
  "--location",
  "--seed",
  "--unstable",
  "--v8-flags",
];

function inheritedFlags(): string[] {
  const own = ownFlags() ?? [];
  const out: string[] = [];
  for (let i = 0; i < own.length; i++) {
    const a = own[i], name = a.split("=")[0];
    if (!INHERITED.some((f) => name === f || name.startsWith("--unstable"))) continue;
    out.push(a);
    if (VALUE_FLAGS.has(a) && i + 1 < own.length) out.push(own[++i]);
  }
  return out;
}

const SHORT: Record<string, PermName> = {
  R: "read",
  W: "write",
  I: "import",
  N: "net",
  E: "env",
  S: "sys",
};

/** The parent's `--allow-X=list` / `--deny-X[=list]` flags for `name`. */
function ownPermissionFlags(name: PermName): { allow?: string; deny: string[] } {
  const own = ownFlags() ?? [];
  let allow: string | undefined;
  const deny: string[] = [];
  for (const flag of own) {
    // Deno's short forms: -R[=paths] is --allow-read[=paths], and so on.
    const short = /^-([RWINES])(=.*)?$/.exec(flag);
    const a = short ? `--allow-${SHORT[short[1]]}${short[2] ?? ""}` : flag;
    if (a.startsWith(`--allow-${name}=`)) allow = a;
    else if (a === `--deny-${name}` || a.startsWith(`--deny-${name}=`)) deny.push(a);
  }
  return { allow, deny };
}

const toPath = (v: string | URL): string =>
  v instanceof URL || /^file:/.test(String(v)) ? new URL(String(v)).pathname : String(v);

/**
 * The child's permission flags. As for thread workers: a permission not named is inherited
 * (the parent's grant, as `--allow-X` / its own `--allow-X=list`, and its `--deny-X` flags);
 * a named one is as given (`true`, `false`, or a list; at most the parent's, else
 * `ValueError`). The runtime's own needs are added: reading denomp's and the target's folders,
 * and the socket (Deno asks for read, write and net access to a Unix socket).
 *
 * @example
 * ```ts
 * import { permissionFlags } from "./os_spawn.ts";
 * const flags = permissionFlags({ net: false }, ["/lib/"], []);
 * console.assert(!flags.some((f) => f.startsWith("--allow-net")));
 * ```
 */
export function permissionFlags(
  p: Deno.PermissionOptions | undefined,
  needRead: string[],
  needWrite: string[],
  needNet: string[] = [],
): string[] {
  const flags: string[] = [];
  for (const name of PERMISSIONS) {
    const v = p === undefined || p === "inherit"
      ? "inherit"
      : p === "none"
      ? false
      : (p as Record<string, unknown>)[name] ?? "inherit";
    const need = name === "read"
      ? needRead
      : name === "write"
      ? needWrite
      : name === "net"
      ? needNet
      : [];
    let state: Deno.PermissionState;
    try {
      state = Deno.permissions.querySync({ name } as Deno.PermissionDescriptor).state;
    } catch {
      state = "prompt";
    }
    if (v === "inherit") {
      const own = ownPermissionFlags(name);
      if (state === "granted") flags.push(`--allow-${name}`);
      else if (own.allow) flags.push(need.length ? `${own.allow},${need.join(",")}` : own.allow);
      else if (need.length) flags.push(`--allow-${name}=${need.join(",")}`);
      flags.push(...own.deny);
      continue;
    }
    if (v === true) {
      if (state !== "granted") {
        throw new ValueError(
          `permissions.${name}: true is more than this process has (a child gets at most its parent's permissions)`,
        );
      }
      flags.push(`--allow-${name}`);
      continue;
    }
    const list = Array.isArray(v) ? v.map((x) => toPath(x as string | URL)) : [];
    if (Array.isArray(v)) {
      for (const x of list) {
        const desc = (name === "read" || name === "write" || name === "ffi"
          ? { name, path: x }
          : name === "net" || name === "import"
          ? { name, host: x }
          : name === "env"
          ? { name, variable: x }
          : name === "run"
          ? { name, command: x }
          : { name, kind: x }) as Deno.PermissionDescriptor;
        let ok = false;
        try {
          ok = Deno.permissions.querySync(desc).state === "granted";
        } catch {
          /* unknown: refuse */
        }
        if (!ok) {
          throw new ValueError(
            `permissions.${name}: '${x}' is more than this process has (a child gets at most its parent's permissions)`,
          );
        }
      }
    } else if (v !== false) {
      throw new ValueError(`permissions.${name} must be "inherit", a boolean or a list`);
    }
    const all = [...list, ...need];
    if (all.length) flags.push(`--allow-${name}=${all.join(",")}`);
  }
  return flags;
}

// ---------------------------------------------------------------------------------------------
// Bridges: targets whose parent side needs more than "start and wait" (a pool worker).

/**
 * The parent side of a target that talks with its parent after the start (a pool worker).
 *
 * @example
 * ```ts ignore
 * registerBridge(`${poolUrl}#poolWorker`, { childModule: import.meta.url, attach: parentSide });
 * ```
 */
export interface Bridge {
  /** The module whose `childMain(channel, start)` the child runs instead of the target. */
  readonly childModule: string;
  /** Starts the parent side once the child is connected; `args` are the target's arguments. */
  attach(ch: Channel, args: unknown[], child: OsChild): void;
}

const bridges = new Map<string, Bridge>();

/**
 * Registers the bridge of the target `module#name`.
 *
 * @example
 * ```ts ignore
 * registerBridge(`${poolUrl}#poolWorker`, { childModule: import.meta.url, attach: parentSide });
 * ```
 */
export function registerBridge(target: string, bridge: Bridge): void {
  bridges.set(target, bridge);
}

/**
 * What the child receives first.
 *
 * @example
 * ```ts ignore
 * const start = loads<StartFrame>(body);
 * console.log(start.info.name, start.target.name);
 * ```
 */
export interface StartFrame {
  info: {
    name: string;
    daemon: boolean;
    identity: number[];
    authkey: Uint8Array;
    parent: { name: string; pid: number };
  };
  target: { module: string; name: string };
  kind: "function" | "class";
  payload: { args: Uint8Array; fields?: Uint8Array };
  preload: string[];
  /** Set when a bridge runs the child: its module. */
  bridge?: string;
}

// ---------------------------------------------------------------------------------------------
// The child as its parent sees it

const CHILD_MAIN = new URL("./os_child.ts", import.meta.url);
const LIB_ROOT = new URL("../../mod.ts", import.meta.url).href;
const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGSEGV: 11,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};
/** Why children died, by OS pid, when their exit code alone does not say (out of memory). */
const reasons = new Map<number, string>();
/** Children whose OS process may still exist. */
const running = new Set<OsChild>();
const goneWaiters: (() => void)[] = [];

function forget(c: OsChild): void {
  running.delete(c);
  if (running.size) return;
  listening?.close();
  for (const r of goneWaiters.splice(0)) r();
}

// An orderly exit of this program ends its children: daemon ones are not waited for, and a
// child must not outlive its parent.
addEventListener("unload", () => {
  for (const c of running) c.terminate(-9);
  listening?.close();
});

/**
 * Test-only hooks (not exported from mod.ts).
 *
 * @example
 * ```ts
 * import { __testHooks } from "./os_spawn.ts";
 * await __testHooks.gone(); // no isolated child is running
 * ```
 */
export const __testHooks = {
  /** Resolves when no isolated child's OS process is left (tests end with no pending op). */
  gone(): Promise<void> {
    return running.size ? keepAlive(new Promise((r) => goneWaiters.push(r))) : Promise.resolve();
  },
  /** How many handle servers had to be terminated without answering their shutdown call. */
  agentsEndedLate,
};

/**
 * Why the isolated child with OS pid `pid` died, when its exit code does not say it (e.g.
 * `" (it ran out of memory: maxMemoryMb is 128)"`), or "".
 *
 * @example
 * ```ts
 * import { exitNote } from "./os_spawn.ts";
 * console.assert(exitNote(null) === "");
 * ```
 */
export function exitNote(pid: number | null): string {
  return pid === null ? "" : reasons.get(pid) ?? "";
}

/** Why a child could not be started (most likely: a permission this program lacks). */
function cannotStart(e: unknown): ProcessError {
  return new ProcessError(
    `cannot start a child with isolation "process": this program needs --allow-run (to start deno), ` +
      `and read, write and net access to a Unix socket in the temporary folder (--allow-read, ` +
      `--allow-write, --allow-net): ${e instanceof Error ? e.message : e}`,
    { cause: e },
  );
}

/**
 * An isolated child: a `deno` OS process running the target (or a bridge's child side).
 * `Process.start()` makes one for isolation `"process"`.
 *
 * @example
 * ```ts ignore
 * const child = new OsChild(spec, { isolation: "process", maxMemoryMb: 256 }, args);
 * console.log(child.pid, await child.exited);
 * ```
 */
export class OsChild {
  /** The child's slot in this program's process table (marked dead when it ends). */
  readonly slot: number;
  /** The child's OS pid. */
  readonly pid: number;
  /** Resolves with the exit code once the child is gone and every frame it sent is handled. */
  readonly exited: Promise<number>;
  #proc: Deno.ChildProcess;
  #code: number | null = null;
  #resolve!: (code: number) => void;
  #channel: Channel | null = null;
  #escalate: ReturnType<typeof setTimeout> | undefined;

  /** Ends the server of its handles (see `os_agent.ts`), if it has one. */
  #endAgent: ((gone: Promise<unknown>) => Promise<void>) | undefined;
  #table: HandleTable | undefined;
  #name: string;

  /**
   * Starts the child; `table` holds the handles its arguments refer to (their server, a thread
   * of this program, is started with it and ends with it).
   */
  constructor(
    spec: ChildSpec,
    options: IsolationOptions,
    args: unknown[],
    table?: HandleTable,
  ) {
    let l: Listening;
    try {
      l = listener();
    } catch (e) {
      throw cannotStart(e);
    }
    const token = crypto.randomUUID();
    const target = spec.target;
    const bridge = bridges.get(`${target.module}#${target.name}`);
    // What the runtime reads to boot: denomp's package (its lib/ and mod.ts, which targets
    // usually import), the target's folder, and the modules of the handle kinds it is sent.
    const dirs = [LIB_ROOT, target.module, ...(spec.preload ?? [])]
      .filter((u) => u.startsWith("file:"))
      .map((u) => new URL(".", u).pathname);
    // A bridge (a pool worker) may be given handles later, in its tasks: its server's socket
    // is granted from the start, and the server started on first need (`handleServer`).
    const sockets = table && (table.objects.length || bridge) ? [l.path, table.path] : [l.path];
    const flags = permissionFlags(
      spec.permissions,
      [...new Set([...dirs, ...sockets])],
      sockets,
      sockets.map((s) => `unix:${s}`),
    );
    const v8 = options.maxMemoryMb
      ? [`--v8-flags=--max-old-space-size=${options.maxMemoryMb}`]
      : [];
    let inherited = inheritedFlags();
    if (v8.length) {
      // One --v8-flags: the parent's own V8 flags and the heap cap together.
      const own = inherited.find((f) => f.startsWith("--v8-flags="));
      inherited = inherited.filter((f) => f !== own);
      if (own) v8[0] = `${own},--max-old-space-size=${options.maxMemoryMb}`;
    }
    const main = CHILD_MAIN.protocol === "file:" ? CHILD_MAIN.pathname : CHILD_MAIN.href;
    const cmdArgs = [
      "run",
      "--no-prompt",
      ...inherited,
      ...(inherited.some((f) => f.startsWith("--unstable-worker-options") || f === "--unstable")
        ? []
        : ["--unstable-worker-options"]),
      ...flags,
      ...v8,
      ...(options.denoFlags ?? []),
      main,
      l.path,
      token,
      String(Deno.pid),
      bridge ? "bridge" : "target",
    ];
    try {
      this.#proc = new Deno.Command(Deno.execPath(), {
        args: cmdArgs,
        stdin: "null",
        stdout: "inherit",
        stderr: "inherit",
      }).spawn();
    } catch (e) {
      if (running.size === 0) l.close();
      throw cannotStart(e);
    }
    this.pid = this.#proc.pid;
    this.#table = table;
    this.#name = spec.name;
    if (table?.objects.length) this.#endAgent = startAgent(table, spec.name);
    this.slot = allocSlot(heap().slot);
    recordProcess(this.slot, spec.name, spec.daemon, target.module, target.name);
    this.exited = new Promise((r) => (this.#resolve = r));
    running.add(this);
    if (spec.daemon) this.#proc.unref();
    const parent = current();
    const start: StartFrame = {
      info: {
        name: spec.name,
        daemon: spec.daemon,
        identity: spec.identity,
        authkey: parent.authkey,
        parent: { name: parent.name, pid: parent.pid },
      },
      target,
      kind: spec.kind,
      payload: spec.payload,
      preload: spec.preload ?? [],
      bridge: bridge?.childModule,
    };
    let connected: (ch: Channel | null) => void;
    const channel = new Promise<Channel | null>((r) => (connected = r));
    l.waiting.set(token, (ch) => {
      this.#channel = ch;
      if (spec.daemon) ch.unref();
      ch.send(F_START, dumps(start));
      bridge?.attach(ch, args, this);
      connected(ch);
    });
    void this.#proc.status.then(async (s) => {
      l.waiting.delete(token);
      connected(null);
      const ch = await channel;
      // Every frame the child sent before it died is handled before its death is.
      if (ch) await ch.closed;
      const code = s.signal ? -(SIGNALS[s.signal] ?? 1) : s.code;
      // V8 ends a process whose heap is full with a trap (or an abort).
      const note = options.maxMemoryMb && (code === -5 || code === -6)
        ? ` (it ran out of memory: maxMemoryMb is ${options.maxMemoryMb})`
        : s.signal
        ? ` (killed by ${s.signal})`
        : "";
      if (note) {
        reasons.set(this.pid, note);
        if (reasons.size > 1000) reasons.delete(reasons.keys().next().value!);
      }
      this.#finish(code);
      clearTimeout(this.#escalate);
      forget(this);
    });
  }

  /**
   * The Unix socket of the server of this child's handles, which is started now if it was not
   * (a pool worker given its first handle in a task). Throws `ProcessError` once the child ended.
   */
  handleServer(): string {
    if (!this.#table || this.#code !== null) {
      throw new ProcessError(`${this.#name} has ended: it cannot be given handles`);
    }
    this.#endAgent ??= startAgent(this.#table, this.#name);
    return this.#table.path;
  }

  /** The exit code, or null while the child runs. */
  get exitCode(): number | null {
    return this.#code;
  }

  /** Stops the child at once with SIGTERM (`code` -15) or SIGKILL (-9). */
  terminate(code: number): void {
    if (this.#code !== null) return;
    try {
      this.#proc.kill(code === -9 ? "SIGKILL" : "SIGTERM");
      // A child that handles SIGTERM itself and lingers is killed a second later.
      if (code !== -9) {
        const t = setTimeout(() => {
          try {
            this.#proc.kill("SIGKILL");
          } catch { /* gone */ }
        }, 1000);
        Deno.unrefTimer(t);
        this.#escalate = t;
      }
    } catch { /* gone already */ }
    this.#finish(code);
  }

  /** Records the exit: at once for terminate()/kill(), else once the OS process is gone. */
  #finish(code: number): void {
    if (this.#code !== null) return;
    this.#code = code;
    this.#channel?.close();
    recordExit(this.slot, code);
    markDead(this.slot);
    // The server of its handles ends with it (once its OS process is gone and the server has put
    // back the items it held): what the child held is released or taken over.
    if (!this.#endAgent) return this.#resolve(code);
    void this.#endAgent(this.#proc.status).catch(() => {}).then(() => this.#resolve(code));
  }
}
