// A W1-spawn target in a module that imports the whole library, as a program's own module
// usually does (Python's spawn start method re-imports the main module the same way).
import "../../mod.ts";

/** Does nothing (W1-spawn, variant `target-imports-library`). */
export function noopLib(): void {}
