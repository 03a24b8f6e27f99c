// A target that says when it began (W1-spawn, variant `start-latency`).
import type { RawValue } from "../../lib/memory/sharedctypes.ts";

/** Stores the wall-clock time (ms, sub-ms precision) at which the target began. */
export function stamp(at: RawValue<"d">): void {
  at.value = performance.timeOrigin + performance.now();
}
