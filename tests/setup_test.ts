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
