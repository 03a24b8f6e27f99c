/**
 * The roots of this process's supervision tree and their orderly shutdown: the actors and
 * supervisors started here that no supervisor owns. `spawn` and `Supervisor.start` register
 * what they start; a supervisor that takes a child over removes it (its shutdown is then the
 * supervisor's business). Shutdown stops the roots in reverse order of start, as OTP stops an
 * application's top supervisor, which stops its children in reverse order.
 *
 * Ctrl-C: in the main thread, while any root lives, SIGINT (and SIGTERM where the platform has
 * it) shuts the whole tree down in order, then exits with 130 (Python's bpo-8296: Ctrl-C must
 * never leave a program hanging on its children). A second signal exits at once. The listener
 * is added with the first root and removed with the last, so it never outlives the tree (Deno
 * 2.9's signal listeners do not keep the event loop alive, but a finished tree leaves nothing
 * behind either way).
 *
 * @module
 */

import { inWorker } from "./_heap.ts";

/** Something that can be stopped in order: an actor, a supervisor. */
export interface Stoppable {
  /** Stops it; resolves once it is stopped. `timeout`: how long an orderly stop may take. */
  stop(reason?: string | Error, options?: { timeout?: number }): Promise<unknown>;
}

const roots = new Set<Stoppable>();
const SIGNALS: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
/** How long one root actor may take to stop in order before it is killed. */
const ROOT_STOP_MS = 5000;
/** How long a signalled shutdown may take before the program exits anyway. */
const SHUTDOWN_LIMIT_MS = 10_000;
let installed = false;
let shuttingDown = false;

/** Registers a root (something started here that no supervisor owns). */
export function addRoot(r: Stoppable): void {
  roots.add(r);
  syncListener();
}

/** Removes a root: it stopped, or a supervisor took it over. */
export function removeRoot(r: Stoppable): void {
  if (roots.delete(r)) syncListener();
}

/** True while `r` is a root (no supervisor owns it). */
export function isRoot(r: Stoppable): boolean {
  return roots.has(r);
}

/** Stops every root of this process, in reverse order of start. */
export async function shutdownRoots(reason: string | Error = "shutdown"): Promise<void> {
  for (const r of [...roots].reverse()) {
    roots.delete(r);
    try {
      await r.stop(reason, { timeout: ROOT_STOP_MS });
    } catch (err) {
      console.error("denomp: error while shutting down:", err);
    }
  }
  syncListener();
}

function onSignal(): void {
  if (shuttingDown) Deno.exit(130);
  shuttingDown = true;
  const limit = setTimeout(() => Deno.exit(130), SHUTDOWN_LIMIT_MS);
  void shutdownRoots("shutdown").finally(() => {
    clearTimeout(limit);
    Deno.exit(130);
  });
}

function syncListener(): void {
  // Signals reach the main thread only; a worker's tree is shut down by its own stop.
  const want = roots.size > 0 && !inWorker();
  if (want === installed || shuttingDown) return;
  for (const sig of SIGNALS) {
    try {
      if (want) Deno.addSignalListener(sig, onSignal);
      else Deno.removeSignalListener(sig, onSignal);
    } catch { /* a platform without this signal */ }
  }
  installed = want;
}
