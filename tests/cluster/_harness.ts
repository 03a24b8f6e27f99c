// What the cluster tests (tests/cluster/*_test.ts) share: the assertions they use, the NATS
// server they run against (skipped unless NATS_URL is set: scripts/nats.sh sets it), unique
// names so runs never meet, and child `deno` processes whose output is collected.
import nodeAssert from "node:assert/strict";

/** Asserts `cond` is truthy. */
export function assert(cond: unknown, message?: string): asserts cond {
  nodeAssert.ok(cond, message);
}

/** Asserts deep strict equality. */
export function assertEquals(actual: unknown, expected: unknown, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

/** Awaits `fn()`'s rejection and checks its class and message; returns the error. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  cls?: abstract new (...args: any[]) => Error,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    if (cls) assert(e instanceof cls, `expected ${cls.name}, got ${(e as Error)?.name}: ${e}`);
    if (includes) {
      assert(
        String((e as Error).message).includes(includes),
        `'${(e as Error).message}' lacks '${includes}'`,
      );
    }
    return e as Error;
  }
  throw new Error("expected a rejection");
}

/** The server the tests run against; empty when there is none. */
export const NATS_URL = Deno.env.get("NATS_URL") ?? "";
/** Every cluster test's `ignore`: without a server they are skipped. */
export const ignore = NATS_URL === "";
/** The checkout's root: the children's working directory. */
export const ROOT = new URL("../..", import.meta.url);
/** The cluster worker program (`lib/cluster/cli.ts`). */
export const WORKER = new URL("../../lib/cluster/cli.ts", import.meta.url).pathname;

/** `what` with a random suffix: a queue, pool or actor name no other run uses. */
export const unique = (what: string): string => `${what}_${crypto.randomUUID().slice(0, 8)}`;

/** A child `deno` process whose stdout and stderr are collected (so no stream is left open). */
export class Child {
  readonly proc: Deno.ChildProcess;
  readonly out: Promise<string>;
  readonly err: Promise<string>;
  /** Both streams, as they come (for `waitFor`). */
  #text = "";
  /** Stdout's lines so far (for `line`). */
  #lines: string[] = [];
  #onLine?: () => void;

  constructor(args: string[], env: Record<string, string> = {}) {
    this.proc = new Deno.Command(Deno.execPath(), {
      args,
      cwd: ROOT.pathname,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.out = this.#read(this.proc.stdout, true);
    this.err = this.#read(this.proc.stderr, false);
  }

  async #read(stream: ReadableStream<Uint8Array>, lines: boolean): Promise<string> {
    let all = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      all += chunk;
      this.#text += chunk;
      if (lines) {
        this.#lines = all.split("\n");
        this.#onLine?.();
      }
    }
    return all;
  }

  /** Waits (at most `ms` milliseconds) until the output (either stream) contains `text`. */
  async waitFor(text: string, ms = 30_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.#text.includes(text)) {
      if (Date.now() > deadline) throw new Error(`no '${text}' within ${ms} ms: ${this.#text}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Waits (at most `ms` milliseconds) for a stdout line starting with `prefix`. */
  async line(prefix: string, ms = 20_000): Promise<string> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const found = this.#lines.find((l) => l.startsWith(prefix));
      if (found) return found;
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.#onLine = () => {
          clearTimeout(t);
          r();
        };
      });
    }
    throw new Error(`no line '${prefix}...' within ${ms} ms; stderr: ${await this.err}`);
  }

  /** Kills (default SIGKILL) and waits for the exit; returns stderr. */
  async stop(signal: Deno.Signal = "SIGKILL"): Promise<string> {
    try {
      this.proc.kill(signal);
    } catch { /* exited already */ }
    await this.proc.status;
    await this.out;
    return await this.err;
  }
}

/**
 * Starts a cluster worker node hosting the actor classes of `actors` (a module path) and waits
 * until it serves them. `flags` are more worker flags (`--idle-ms 300`).
 */
export async function startActorNode(
  actors: string,
  node: string,
  options: { servers?: string; env?: Record<string, string>; flags?: string[] } = {},
): Promise<Child> {
  const servers = options.servers ?? NATS_URL;
  const c = new Child(
    ["run", "-A", WORKER, "--servers", servers, "--actors", actors, "--node", node].concat(
      options.flags ?? [],
    ),
    options.env,
  );
  await c.waitFor(`node '${node}' hosts actors`);
  return c;
}

/** A caller process (fixtures/cluster_caller.ts) making `calls` calls to `actors` actors. */
export function startCaller(
  kind: "ref" | "virtual",
  prefix: string,
  actors: number,
  calls: number,
) {
  return new Child([
    "run",
    "-A",
    new URL("./fixtures/cluster_caller.ts", import.meta.url).pathname,
    kind,
    NATS_URL,
    prefix,
    String(actors),
    String(calls),
  ]);
}
