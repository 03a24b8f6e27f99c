/**
 * Finding a target's module. A worker cannot receive a function, only the URL of a module and
 * the name of an export, so `new Process({ target: download })` must find the module that exports
 * `download` without being told (Python pickles functions by module and qualified name the same
 * way, and fails with "Can't pickle local object" when that is impossible).
 *
 * How: the stack at the call site names the user's module (the first frame outside denomp).
 * That module either exports the name itself, or imports it from another module; a light scan of
 * its source (imports and exports only) follows the chain, so a task imported from `tasks.ts`
 * into `main.ts` is found in `tasks.ts`. When the source cannot be read (a remote module), the
 * call site's module is used and the worker reports a clear error if the export is missing.
 *
 * @module
 */

import { ProcessError } from "./errors.ts";

/** Where a worker finds its target: a module URL and the name of an export. */
export interface TargetRef {
  /** Absolute module URL. */
  module: string;
  /** Export name; "default" for a default export. */
  name: string;
}

const LIB_DIR = new URL("..", import.meta.url).href;

/** The URL of the first module on the stack that is not part of denomp. */
export function callerModule(): string | undefined {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 60;
  const stack = new Error().stack ?? "";
  Error.stackTraceLimit = limit;
  for (const line of stack.split("\n").slice(1)) {
    const m = line.match(/((?:file|https?|data|jsr|npm):[^\s()]+?):\d+:\d+\)?\s*$/);
    if (!m) continue;
    const url = m[1];
    if (url.startsWith(LIB_DIR) || url.startsWith("ext:") || url.startsWith("node:")) continue;
    return url;
  }
  return undefined;
}

const sourceCache = new Map<string, string | null>();

function readSource(url: string): string | null {
  let src = sourceCache.get(url);
  if (src !== undefined) return src;
  try {
    src = url.startsWith("file:") ? Deno.readTextFileSync(new URL(url)) : null;
  } catch {
    src = null;
  }
  sourceCache.set(url, src);
  return src;
}

const escape = (s: string) => s.replace(/[$]/g, "\\$");

/** Lists `{ imported, local }` pairs of a brace list like `a, b as c, type d`. */
function bindings(list: string): { imported: string; local: string }[] {
  return list.split(",").map((s) => s.trim().replace(/^type\s+/, "")).filter(Boolean).map((s) => {
    const [imported, local] = s.split(/\s+as\s+/);
    return { imported: imported.trim(), local: (local ?? imported).trim() };
  });
}

/**
 * Where `name` (a binding visible in module `url`) is exported from: `url` itself when the
 * module exports it, the module it is imported from otherwise (followed), or null when the
 * module's source shows neither. `undefined` means the source could not be read.
 */
function locate(url: string, name: string, depth = 0): TargetRef | null | undefined {
  // The answer depends only on sources read once (readSource's cache): found once per target,
  // not at each start (~0.2 ms of regular expressions over the module's source).
  const key = `${depth}\n${url}\n${name}`;
  if (located.has(key)) return located.get(key);
  const found = locateIn(url, name, depth);
  located.set(key, found);
  return found;
}

const located = new Map<string, TargetRef | null | undefined>();

function locateIn(url: string, name: string, depth: number): TargetRef | null | undefined {
  const src = readSource(url);
  if (src === null) return undefined;
  if (depth > 8) return undefined;
  const n = escape(name);
  const declared = new RegExp(
    `^\\s*export\\s+(?:default\\s+)?(?:async\\s+)?(?:function\\s*\\*?|class|const|let|var)\\s+${n}\\b`,
    "m",
  );
  if (declared.test(src)) {
    const isDefault = new RegExp(
      `export\\s+default\\s+(?:async\\s+)?(?:function\\s*\\*?|class)\\s+${n}\\b`,
    )
      .test(src);
    return { module: url, name: isDefault ? "default" : name };
  }
  // export { a, b as c } [from "x"]
  for (
    const m of src.matchAll(/^\s*export\s*(?:type\s*)?\{([^}]*)\}\s*(?:from\s*["']([^"']+)["'])?/gm)
  ) {
    for (const b of bindings(m[1])) {
      if (b.local === name || b.imported === name) return { module: url, name: b.local };
    }
  }
  // import { a as b } from "x"; import b from "x"
  for (const m of src.matchAll(/^\s*import\s+(?:type\s+)?([^;]*?)\s*from\s*["']([^"']+)["']/gm)) {
    const clause = m[1], spec = m[2];
    if (!spec.startsWith(".") && !spec.startsWith("/") && !/^[a-z]+:/.test(spec)) continue;
    const target = new URL(spec, url).href;
    const brace = clause.match(/\{([^}]*)\}/);
    if (brace) {
      for (const b of bindings(brace[1])) {
        if (b.local === name) {
          return locate(target, b.imported, depth + 1) ?? { module: target, name: b.imported };
        }
      }
    }
    const def = clause.replace(/\{[^}]*\}/, "").split(",")[0].trim();
    if (def && !def.startsWith("*") && def === name) return { module: target, name: "default" };
    const ns = clause.match(/\*\s+as\s+([\w$]+)/);
    if (ns) {
      const found = locate(target, name, depth + 1);
      if (found) return found;
    }
  }
  // export * from "x"
  for (const m of src.matchAll(/^\s*export\s*\*\s*from\s*["']([^"']+)["']/gm)) {
    const found = locate(new URL(m[1], url).href, name, depth + 1);
    if (found) return found;
  }
  return null;
}

/**
 * Where each function or class given as a target was found, once found: where a function is
 * exported from does not depend on who starts it (the pool's `fnInfo` keeps its tasks' the same
 * way), and knowing it saves {@link callerModule}'s ~0.2 ms stack read at each later start.
 */
const found = new WeakMap<object, TargetRef>();

/**
 * The `caller` to give {@link resolveTarget} for `target` and `module`: read from the stack
 * ({@link callerModule}), except for a function or class given without a module and found
 * before, whose answer does not depend on it.
 */
export function callerFor(target: unknown, module?: string | URL): string | undefined {
  return module === undefined && typeof target === "function" && found.has(target)
    ? Deno.mainModule
    : callerModule();
}

/**
 * Resolves a target given as a function (or class), a `"./module.ts#name"` string, or a
 * function plus an explicit module URL, to the module and export a worker should load.
 * Throws {@link ProcessError} saying what to do when the target cannot be found.
 */
export function resolveTarget(
  target: string | ((...args: never[]) => unknown) | (abstract new (...args: never[]) => unknown),
  module?: string | URL,
  caller: string | undefined = callerModule(),
): TargetRef {
  if (typeof target === "string") {
    const hash = target.lastIndexOf("#");
    if (hash <= 0 || hash === target.length - 1) {
      throw new ProcessError(`target '${target}' must look like "./module.ts#exportName"`);
    }
    const base = module ? String(module) : caller ?? Deno.mainModule;
    return { module: new URL(target.slice(0, hash), base).href, name: target.slice(hash + 1) };
  }
  if (typeof target !== "function") {
    throw new ProcessError(
      `target must be an exported function, a class or "./module.ts#name": got ${typeof target}`,
    );
  }
  const name = target.name;
  if (!name || name === "anonymous" || name.startsWith("bound ")) {
    throw new ProcessError(
      `target is an anonymous function: a worker can only run a named function exported from a module ` +
        `(write \`export function work() {...}\` and pass \`target: work\`)`,
    );
  }
  if (module) return { module: new URL(String(module), caller ?? Deno.mainModule).href, name };
  const known = found.get(target);
  if (known) return known;
  const from = caller ?? Deno.mainModule;
  const ref = locate(from, name);
  if (ref) {
    found.set(target, ref);
    return ref;
  }
  if (ref === undefined) return { module: from, name };
  if (/^(async\s*)?(\([^)]*\)|[\w$]+)\s*=>/.test(String(target))) {
    throw new ProcessError(
      `target '${name}' is an anonymous (arrow) function that ${from} does not export: a worker can only ` +
        `run a function it can import, so export it (\`export function ${name}(...)\`)`,
    );
  }
  throw new ProcessError(
    `target '${name}' is not exported from ${from}: a worker imports the target's module, so the ` +
      `function must be exported (\`export function ${name}(...)\`) — like Python's "Can't pickle local object"`,
  );
}
