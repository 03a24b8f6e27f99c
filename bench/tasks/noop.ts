// Targets for the benchmarks: workers import this module and call these by name.

/** Does nothing (W1-spawn). */
export function noop(): void {}
