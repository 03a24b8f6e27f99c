/**
 * Preloaded by `deno task test` (`--preload`): `console.assert` throws instead of printing, so a
 * doc example (and any test) whose `console.assert` is false fails rather than passing with an
 * "Assertion failed" line in its output. Examples keep `console.assert` because it needs no
 * import and reads as it does in a browser console.
 *
 * @module
 */

const original = console.assert;
console.assert = (condition?: boolean, ...data: unknown[]): void => {
  if (condition) return;
  original.call(console, condition, ...data);
  throw new Error(`console.assert failed${data.length ? `: ${data.map(String).join(" ")}` : ""}`);
};
