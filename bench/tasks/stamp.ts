// A target that says when it began (W1b-start-latency: variants `process` and `first-timer`).
import type { RawValue } from "../../lib/memory/sharedctypes.ts";

/** Stores the wall-clock time (ms, sub-ms precision) at which the target began. */
export function stamp(at: RawValue<"d">): void {
  at.value = performance.timeOrigin + performance.now();
}

/**
 * Stores the time at which its first timer, `setTimeout(0)`, fired (W1b, variant `first-timer`):
 * a target that sleeps or waits with a timeout pays for Deno loading its timers first.
 */
export async function stampAfterTimer(at: RawValue<"d">): Promise<void> {
  await new Promise((r) => setTimeout(r, 0));
  at.value = performance.timeOrigin + performance.now();
}
