// Runs a program as a separate `deno` process, for tests of what happens at program end (and of
// what a program prints), which one process cannot observe of itself.

/** How a program ran: exit code, what it printed, how long it took, whether it was killed. */
export interface ProgramResult {
  code: number;
  out: string;
  err: string;
  ms: number;
  /** Killed after `timeoutMs`. */
  timedOut: boolean;
}

/**
 * Runs `deno run -A --unstable-worker-options [flags] file ...args`; kills it after `timeoutMs`.
 */
export async function runProgram(
  file: string,
  args: string[] = [],
  options: { env?: Record<string, string>; timeoutMs?: number; flags?: string[] } = {},
): Promise<ProgramResult> {
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-worker-options", ...options.flags ?? [], file, ...args],
    env: options.env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, options.timeoutMs ?? 60_000);
  const r = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return {
    code: r.code,
    out: dec.decode(r.stdout),
    err: dec.decode(r.stderr),
    ms: performance.now() - t0,
    timedOut,
  };
}
