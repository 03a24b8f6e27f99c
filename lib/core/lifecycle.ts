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
 * A program that handles the signal itself owns it, as in Python, where a handler installed with
 * `signal.signal(SIGINT, ...)` replaces the `KeyboardInterrupt`: the library then neither stops
 * the tree nor exits (the program's handler may still need its actors, e.g. to save their
 * state, and decides when to stop them and exit). Deno has no API that lists a signal's
 * listeners, so this module wraps `Deno.addSignalListener` / `Deno.removeSignalListener` once,
 * when it loads, and counts the listeners added through them other than its own. Wrapping is
 * transparent (the originals do the work, with the same arguments and results) and sound for
 * every listener added after denomp is imported, which is every listener of the program's main
 * module, since imports are evaluated first, and for `node:process`'s `process.on("SIGINT")`,
 * which adds its listener through the same global (tested). Listeners it cannot see: ones added
 * before denomp was imported (by a module evaluated earlier).
 *
 * @module
 */

import { inWorker } from "./heap.ts";

/** Something that can be stopped in order: an actor, a supervisor. */
export interface Stoppable {
  /** Stops it; resolves once it is stopped. `timeout`: milliseconds an orderly stop may take. */
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

/** The library's listener for each signal (one each, so that it knows which one fired). */
const libraryListeners = new Map(SIGNALS.map((sig) => [sig, () => onSignal(sig)]));
/** The program's own listeners per signal (every listener but the library's). */
const ownListeners = new Map<Deno.Signal, Set<() => void>>();

/** Counts the program's own signal listeners (see the module doc for why a wrapper). */
function wrapSignalApi(): void {
  if (inWorker() || typeof Deno.addSignalListener !== "function") return;
  const add = Deno.addSignalListener, remove = Deno.removeSignalListener;
  Deno.addSignalListener = function addSignalListener(signal, handler): void {
    add(signal, handler); // throws for a bad signal or handler: nothing counted then
    if (libraryListeners.get(signal) === handler) return;
    let set = ownListeners.get(signal);
    if (!set) ownListeners.set(signal, set = new Set());
    set.add(handler); // a Set, as Deno keeps listeners: adding one twice counts once
  };
  Deno.removeSignalListener = function removeSignalListener(signal, handler): void {
    remove(signal, handler);
    ownListeners.get(signal)?.delete(handler);
  };
}
wrapSignalApi();

/** True while the program has a listener of its own for `signal`. */
function programHandles(signal: Deno.Signal): boolean {
  return (ownListeners.get(signal)?.size ?? 0) > 0;
}

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

function onSignal(signal: Deno.Signal): void {
  // A program with its own listener owns the signal (see the module doc).
  if (programHandles(signal)) return;
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
      if (want) Deno.addSignalListener(sig, libraryListeners.get(sig)!);
      else Deno.removeSignalListener(sig, libraryListeners.get(sig)!);
    } catch { /* a platform without this signal */ }
  }
  installed = want;
}
