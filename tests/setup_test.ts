// What the README's two commands need on a fresh machine: Deno and nothing else. The library has
// no runtime dependency; only the cluster layer (lib/cluster/) uses npm packages, and only a
// program that imports it fetches them.

import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("deno task demo fetches nothing: it runs with an empty module cache", async () => {
  const cache = await Deno.makeTempDir({ prefix: "denomp-empty-cache-" });
  try {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["task", "demo"],
      cwd: ROOT,
      env: { DENO_DIR: cache, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, err);
    assert.doesNotMatch(err, /Download|npm/, "the demo fetched packages");
    assert.match(new TextDecoder().decode(r.stdout), /demo finished in/);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("no module of the library outside lib/cluster/ imports an npm package", async () => {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "mod.ts"],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
  }).output();
  const info = JSON.parse(new TextDecoder().decode(r.stdout)) as {
    modules: { specifier: string }[];
  };
  const remote = info.modules.map((m) => m.specifier).filter((s) => !/^(file|node):/.test(s));
  assert.deepEqual(remote, []);
});

Deno.test("deno doc: examples import public names from the package, not from ./file.ts", async () => {
  const exported = new Set(
    (await import("../mod.ts").then((m) => Object.keys(m))).concat(
      // Types are not runtime exports: read them off `deno doc`.
      JSON.parse(
        new TextDecoder().decode(
          (await new Deno.Command(Deno.execPath(), {
            args: ["doc", "--json", "mod.ts"],
            cwd: ROOT,
            stdout: "piped",
          }).output()).stdout,
        ),
      ).nodes[new URL("../mod.ts", import.meta.url).href].symbols.map((s: { name: string }) =>
        s.name
      ),
    ),
  );
  const wrong: string[] = [];
  for (const name of libFiles()) {
    const src = Deno.readTextFileSync(new URL(`../lib/${name}`, import.meta.url));
    for (const m of src.matchAll(/^\s*\*\s*import\s*\{([^}]*)\}\s*from\s*"\.\.?\/[\w/]+\.ts";/gm)) {
      const names = m[1].split(",").map((n) => n.replace(/\btype\b/, "").trim()).filter(Boolean);
      if (names.every((n) => exported.has(n.split(" as ")[0].trim()))) {
        wrong.push(`${name}: ${m[0].trim()}`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});

/** Every module under `lib/` but the cluster's (which has its own export), as paths below it. */
function libFiles(dir = ""): string[] {
  const found: string[] = [];
  for (const e of Deno.readDirSync(new URL(`../lib/${dir}`, import.meta.url))) {
    if (e.isDirectory && `${dir}${e.name}` !== "cluster") {
      found.push(...libFiles(`${dir}${e.name}/`));
    } else if (e.isFile && e.name.endsWith(".ts")) found.push(`${dir}${e.name}`);
  }
  return found;
}
