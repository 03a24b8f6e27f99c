/**
 * The layout's size budget (issue 15), run by `deno task test`: no module in `lib/` over 800
 * lines and no class over 500, so that each file stays one concept a reader keeps in mind.
 * Files still over it while the redesign lands are listed in `OVER_BUDGET` with their size at
 * the time; the check fails when one grows or when one is back under budget and still listed,
 * so the list only shrinks. It also holds the folders to their layers (`MAY_IMPORT`).
 *
 * ```sh
 * deno run --allow-read scripts/layout_check.ts
 * ```
 *
 * @module
 */

const MAX_FILE_LINES = 800;
const MAX_CLASS_LINES = 500;

/** Files and classes over budget today (path or `path#Class` → lines); empty once done. */
const OVER_BUDGET: Record<string, number> = {};

/**
 * What each folder of `lib/` may import besides itself: the layers of README "Layout". `core` is
 * the runtime everything stands on and imports nothing above it; nothing imports back up.
 */
const MAY_IMPORT: Record<string, readonly string[]> = {
  core: [],
  process: ["core"],
  sync: ["core"],
  queues: ["core"],
  pickle: ["core"],
  memory: ["core", "sync"],
  connection: ["core", "pickle"],
  pool: ["core", "process"],
  futures: ["core", "process", "pool"],
  actor: ["core", "process"],
  managers: ["core", "process", "sync", "memory", "connection", "pickle"],
  observe: ["core", "sync", "actor", "pool"],
  cluster: ["core", "process", "queues", "actor"],
};

const root = new URL("../lib/", import.meta.url);

/** The folders of `lib/` a module imports from (code only: examples in doc comments do not count). */
export function importedFolders(path: string, src: string): string[] {
  const folders = new Set<string>();
  const code = src.split("\n").filter((l) => !/^\s*(\*|\/\/)/.test(l)).join("\n");
  for (const m of code.matchAll(/(?:from|import)\s*\(?\s*"(\.\.?\/[^"]+)"/g)) {
    const target = new URL(m[1], new URL(path, root)).href;
    if (!target.startsWith(root.href)) folders.add("mod.ts");
    else folders.add(target.slice(root.href.length).split("/")[0]);
  }
  return [...folders];
}

/** Every `.ts` module below `lib/`, as paths relative to it. */
function modules(dir = ""): string[] {
  const found: string[] = [];
  for (const e of Deno.readDirSync(new URL(dir, root))) {
    if (e.isDirectory) found.push(...modules(`${dir}${e.name}/`));
    else if (e.isFile && e.name.endsWith(".ts")) found.push(`${dir}${e.name}`);
  }
  return found.sort();
}

/**
 * The classes of a module and their lengths in lines: braces counted outside comments, strings
 * and template literals (a brace in a regular expression literal would confuse it; none of
 * `lib/` has one inside a class).
 */
export function classes(src: string): { name: string; line: number; lines: number }[] {
  const found: { name: string; line: number; lines: number }[] = [];
  const open: { name: string; line: number; depth: number }[] = [];
  const templates: number[] = [];
  let pending: { name: string; line: number } | undefined;
  let depth = 0;
  let line = 1;
  let i = 0;
  const template = () => {
    // Inside a template literal: up to its end, or into a `${` substitution.
    while (i < src.length && src[i] !== "`") {
      if (src[i] === "\\") i++;
      else if (src[i] === "\n") line++;
      else if (src[i] === "$" && src[i + 1] === "{") {
        depth++;
        templates.push(depth);
        i += 2;
        return;
      }
      i++;
    }
    i++;
  };
  while (i < src.length) {
    const c = src[i];
    const d = src[i + 1];
    if (c === "\n") {
      line++;
      i++;
    } else if (c === "/" && d === "/") {
      while (i < src.length && src[i] !== "\n") i++;
    } else if (c === "/" && d === "*") {
      i += 2;
      while (i < src.length && !(src[i] === "*" && src[i + 1] === "/")) {
        if (src[i] === "\n") line++;
        i++;
      }
      i += 2;
    } else if (c === '"' || c === "'") {
      i++;
      while (i < src.length && src[i] !== c) i += src[i] === "\\" ? 2 : 1;
      i++;
    } else if (c === "`") {
      i++;
      template();
    } else if (c === "}" && templates.at(-1) === depth) {
      templates.pop();
      depth--;
      i++;
      template();
    } else if (c === "{") {
      depth++;
      if (pending) open.push({ ...pending, depth });
      pending = undefined;
      i++;
    } else if (c === "}") {
      if (open.at(-1)?.depth === depth) {
        const o = open.pop()!;
        found.push({ name: o.name, line: o.line, lines: line - o.line + 1 });
      }
      depth--;
      i++;
    } else {
      const m = /^class\s+([A-Za-z_$][\w$]*)/.exec(src.slice(i, i + 80));
      if (m && (i === 0 || /[\s(=,;]/.test(src[i - 1]))) {
        pending = { name: m[1], line };
        i += m[0].length;
      } else i++;
    }
  }
  return found;
}

if (import.meta.main) {
  const problems: string[] = [];
  const seen = new Set<string>();
  const judge = (key: string, lines: number, max: number) => {
    const allowed = OVER_BUDGET[key];
    if (allowed !== undefined) seen.add(key);
    if (lines <= max) {
      if (allowed !== undefined) {
        problems.push(`${key}: ${lines} lines, now within budget: drop it from OVER_BUDGET`);
      }
    } else if (allowed === undefined) {
      problems.push(`${key}: ${lines} lines (at most ${max})`);
    } else if (lines > allowed) {
      problems.push(
        `${key}: ${lines} lines, grown past the ${allowed} it was allowed while over budget`,
      );
    }
  };
  for (const path of modules()) {
    const src = Deno.readTextFileSync(new URL(path, root));
    const key = `lib/${path}`;
    judge(key, src.split("\n").length - (src.endsWith("\n") ? 1 : 0), MAX_FILE_LINES);
    for (const c of classes(src)) judge(`${key}#${c.name}`, c.lines, MAX_CLASS_LINES);
    const folder = path.split("/")[0];
    const allowed = MAY_IMPORT[folder];
    if (!allowed) problems.push(`${key}: lib/${folder}/ is not a folder of README "Layout"`);
    for (const f of importedFolders(path, src)) {
      if (f !== folder && !allowed?.includes(f)) {
        problems.push(
          `${key}: imports from ${
            f === "mod.ts" ? "mod.ts" : `lib/${f}/`
          }, which lib/${folder}/ may not`,
        );
      }
    }
  }
  for (const key of Object.keys(OVER_BUDGET)) {
    if (!seen.has(key)) problems.push(`${key}: listed in OVER_BUDGET but gone: drop it`);
  }
  if (problems.length) {
    console.error(
      `lib/ layout budget (files ≤ ${MAX_FILE_LINES} lines, classes ≤ ${MAX_CLASS_LINES}):`,
    );
    for (const p of problems) console.error(`  ${p}`);
    Deno.exit(1);
  }
  console.log(
    `lib/ layout budget: every module ≤ ${MAX_FILE_LINES} lines, every class ≤ ${MAX_CLASS_LINES}`,
  );
}
