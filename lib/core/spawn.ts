/**
 * The worker runtime: starting a child worker and running it, the two sides of one small
 * protocol; this file is the parent's side, child.ts the child's (a new worker loads only that).
 * `Process`, pool workers, actors and the manager server are all children started here, so
 * start-up, exit codes, crash detection and daemon lifecycle are written once.
 *
 * Protocol: the parent posts one start message (the shared heap, the child's slot and identity,
 * the target's module URL and export name, and the encoded arguments); the child posts one
 * `{ exit: code }` when it is done, after its `beforeExit` hooks ran. A spare (spares.ts) does
 * the same through the channel its warm-up message gave it. A child that dies without
 * saying so (an uncaught error) reaches the parent as an `error` event and exit code 1;
 * `terminate()`/`kill()` end it from outside with -15/-9. Whatever the cause, the parent marks
 * the child's slot dead in the shared process table, so locks it held are recoverable.
 *
 * Lifetime: a daemon child does not keep the program alive (its Worker is unref'd), a
 * non-daemon child does; nested workers die with their parent, so no worker outlives its parent.
 *
 * @module
 */

import { allocSlot, heap, markDead } from "./heap.ts";
import { recordExit, recordProcess } from "./observe.ts";
import { buffersForChild } from "./bigblock.ts";
import { current, pidOfSlot } from "./context.ts";
import { BOOTSTRAP, type ChildLink, spareOptions, takeSpare, workerLink } from "./spares.ts";
import type { TargetRef } from "./target.ts";
import { ProcessError } from "./errors.ts";
import type { StartMessage, TargetKind } from "./child.ts";
import { Encoder } from "./encoder.ts";
import { sameBytes } from "./bytes.ts";

export { setAdoptHook, SystemExit, type TargetKind } from "./child.ts";

/** What the parent needs to start a child. */
export interface ChildSpec {
  target: TargetRef;
  kind: TargetKind;
  payload: { args: Uint8Array; fields?: Uint8Array };
  /** Modules to import before decoding the payload (they register its handle kinds). */
  preload?: string[];
  /** Modules a child from a spare starts importing at once, not waited for (StartMessage's `ahead`). */
  ahead?: string[];
  name: string;
  daemon: boolean;
  identity: number[];
  permissions?: Deno.PermissionOptions;
}

const MOD = new URL("../../mod.ts", import.meta.url).href;

const ahead = new WeakMap<object, string[]>();

/**
 * Has the worker of process `p` (not started yet), if it is taken from a spare, start importing
 * `modules` as soon as it starts, not waited for: `spawn` names the actor class's module, whose import (~1 ms for a
 * module the worker has not loaded) then overlaps decoding the actor's arguments.
 */
export function importAhead(p: object, modules: string[]): void {
  ahead.set(p, modules);
}

/** The modules {@link importAhead} gave for process `p`, if any. */
export function aheadOf(p: object): string[] | undefined {
  return ahead.get(p);
}

const PERMISSIONS = ["env", "ffi", "net", "read", "run", "sys", "write", "import"] as const;
/** denomp's own code, which every worker loads: its `lib/` folder and `mod.ts`. */
const LIBRARY = [new URL("..", import.meta.url).href, MOD];

/**
 * The permissions a worker runs under, from what the caller asked: each permission not named is
 * inherited (Deno's default would deny it), and `"none"` denies everything. Least privilege,
 * plus what starting needs whatever was asked: a worker cannot start without loading denomp's
 * code (`lib/` and `mod.ts`) and `modules` (its target's module, an actor class's module), so
 * reading those files (importing them, for remote modules: their hosts) is always granted —
 * exactly those files, not their folders. Other modules that `modules` import must be granted
 * by the caller (`read: ["./helpers.ts"]`); Deno's error names the one missing.
 */
export function sandbox(
  p: Deno.PermissionOptions,
  modules: readonly string[],
): Deno.PermissionOptions {
  if (p === "inherit") return p;
  if (p !== "none" && (typeof p !== "object" || p === null || Array.isArray(p))) {
    throw new TypeError(
      `permissions must be "inherit", "none" or an object like { net: false }: got ${
        typeof p === "string" ? `"${p}"` : String(p)
      }`,
    );
  }
  const out: Record<string, unknown> = {};
  for (const k of PERMISSIONS) {
    out[k] = p === "none" ? false : (p as Record<string, unknown>)[k] ?? "inherit";
  }
  const files: URL[] = [], hosts: string[] = [];
  for (const m of [...LIBRARY, ...modules]) {
    const u = new URL(m);
    if (u.protocol === "file:") files.push(u);
    else if (u.protocol === "http:" || u.protocol === "https:") hosts.push(u.host);
  }
  out.read = widen(out.read, files);
  out.import = widen(out.import, hosts);
  return out as Deno.PermissionOptions;
}

/** A permission list that also allows `extra` (unchanged when it allows everything). */
function widen(v: unknown, extra: (string | URL)[]): unknown {
  if (v === "inherit" || v === true || !extra.length) return v;
  const had = Array.isArray(v) ? v as (string | URL)[] : [];
  const seen = new Set(had.map(String));
  return [...had, ...extra.filter((x) => !seen.has(String(x)))];
}

let workerOptionsOn: boolean | undefined | null = null;

/**
 * Whether `--unstable-worker-options` is on: true, false, or undefined when it cannot tell.
 * Deno exits the whole program with code 70 when a worker is given permissions without it, and
 * no API says whether it is on, so this reads what turns it on: the command line
 * (`/proc/self/cmdline`: Linux, and readable only under `--allow-all`, so it is read only then:
 * a permission query never prompts) and the `"unstable"` list of the configuration files Deno
 * may have used (the one `--config` names, else every `deno.json(c)` from the main module's
 * folder and the working folder up to the root; over-approximated on purpose: a false "on"
 * only means Deno's own exit, a false "off" would refuse a program that works).
 */
function workerOptionsFlag(): boolean | undefined {
  if (workerOptionsOn !== null) return workerOptionsOn;
  return workerOptionsOn = readWorkerOptionsFlag();
}

function readWorkerOptionsFlag(): boolean | undefined {
  const all = PERMISSIONS.every((name) => {
    try {
      return Deno.permissions.querySync({ name }).state === "granted";
    } catch {
      return false;
    }
  });
  if (!all || Deno.build.os !== "linux") return undefined;
  let argv: string[];
  try {
    argv = Deno.readTextFileSync("/proc/self/cmdline").split("\0");
  } catch {
    return undefined;
  }
  // A compiled program (not the deno CLI) has its flags built in: nothing to read.
  if (!/^deno(\.exe)?$/.test(argv[0]?.split(/[\\/]/).pop() ?? "")) return undefined;
  if (argv.includes("--unstable-worker-options")) return true;
  if (argv.includes("--no-config")) return false;
  const at = argv.findIndex((a) => a === "--config" || a === "-c");
  const named = at > 0
    ? argv[at + 1]
    : argv.find((a) => /^(--config|-c)=/.test(a))?.replace(/^[^=]*=/, "");
  const files: string[] = [];
  if (named) files.push(named);
  else {
    const dirs = [Deno.cwd()];
    if (Deno.mainModule.startsWith("file:")) dirs.push(new URL(".", Deno.mainModule).pathname);
    for (let dir of dirs) {
      for (;;) {
        files.push(`${dir}/deno.json`, `${dir}/deno.jsonc`);
        const up = dir.replace(/\/[^/]*\/?$/, "");
        if (up === dir || up === "") break;
        dir = up;
      }
    }
  }
  return files.some((f) => {
    try {
      return /"unstable"\s*:\s*\[[^\]]*"worker-options"/.test(Deno.readTextFileSync(f));
    } catch {
      return false;
    }
  });
}

function workerOptions(name: string, permissions?: Deno.PermissionOptions): WorkerOptions {
  const options: WorkerOptions & { deno?: { permissions?: Deno.PermissionOptions } } = {
    type: "module",
    name,
  };
  if (permissions !== undefined) options.deno = { permissions };
  return options;
}

let emptyArgs: Uint8Array | undefined;

/** How `[]` is encoded as a child's arguments. */
function noArgs(): Uint8Array {
  return emptyArgs ??= new Encoder().encode([], "args").slice();
}

/** A child worker as its parent sees it. */
export class Child {
  /** The child's slot in the process table. */
  readonly slot: number;
  /** The child's pid (unique per run). */
  readonly pid: number;
  /** Resolves with the exit code once the child is gone. */
  readonly exited: Promise<number>;
  #link: ChildLink;
  #code: number | null = null;
  #resolve!: (code: number) => void;

  constructor(spec: ChildSpec) {
    const parent = current();
    // Checked before anything is allocated: a refused start leaves nothing behind.
    const permissions = spec.permissions === undefined || spec.permissions === "inherit"
      ? undefined // the same as none given: no sandbox, no flag needed
      : sandbox(spec.permissions, [spec.target.module]);
    if (permissions !== undefined && workerOptionsFlag() === false) {
      throw new ProcessError(
        `the process ${spec.name} is given permissions, which needs Deno's --unstable-worker-options ` +
          `flag: run with \`deno run --unstable-worker-options ...\` (or add "unstable": ` +
          `["worker-options"] to deno.json), or start it without permissions`,
      );
    }
    this.slot = allocSlot(heap().slot);
    this.pid = pidOfSlot(this.slot);
    recordProcess(this.slot, spec.name, spec.daemon, spec.target.module, spec.target.name);
    this.exited = new Promise((r) => (this.#resolve = r));
    // A spare worker (spares.ts) inherits the program's permissions: only for a child that
    // asked for none.
    this.#link = (permissions === undefined ? takeSpare() : undefined) ??
      workerLink(new Worker(BOOTSTRAP, workerOptions(spec.name, permissions)));
    this.#link.listen((e: MessageEvent<{ exit?: number }>) => {
      if (typeof e.data?.exit === "number") this.#finish(e.data.exit);
    }, (e: ErrorEvent) => {
      // The child's own handlers report ordinary errors; this is a load failure (missing
      // module, syntax error) or a crash. Keep the parent alive, as Python does.
      e.preventDefault();
      if (this.#code === null) {
        console.error(`Process ${spec.name}: ${e.message}`);
        this.#finish(1);
      }
    });
    const start: StartMessage = {
      heap: heap().sab,
      info: {
        name: spec.name,
        pid: this.pid,
        slot: this.slot,
        daemon: spec.daemon,
        identity: spec.identity,
        authkey: parent.authkey,
        parent: { name: parent.name, pid: parent.pid },
      },
      target: spec.target,
      kind: spec.kind,
      payload: spec.payload,
      noArgs: !spec.payload.fields && sameBytes(spec.payload.args, noArgs()),
      preload: spec.preload ?? [],
      ahead: spec.ahead,
      buffers: buffersForChild(),
      spares: spareOptions(),
    };
    this.#link.postMessage(start);
    if (spec.daemon) this.#link.unref();
  }

  /** The exit code, or null while the child runs. */
  get exitCode(): number | null {
    return this.#code;
  }

  /** Stops the child at once, recording `code` (-15 for terminate, -9 for kill). */
  terminate(code: number): void {
    if (this.#code === null) this.#finish(code);
  }

  #finish(code: number): void {
    if (this.#code !== null) return;
    this.#code = code;
    this.#link.terminate();
    recordExit(this.slot, code);
    markDead(this.slot);
    this.#resolve(code);
  }
}
