// The CPython side of the interop tests (tests/python_test.ts, tests/python_managers_test.ts):
// which Pythons are on PATH, the skip notice when there are none, and a running peer script
// whose stdout is collected as it comes. Written once so both files find the same Pythons.

import assert from "node:assert/strict";

/** One CPython found on PATH. */
export interface Python {
  exe: string;
  version: string;
}

/**
 * Every distinct CPython >= 3.8 on PATH (by version: `python3` is often one of the others). With
 * `warnAs`, each too-old Python is named in a warning prefixed by it.
 */
export async function findPythons(warnAs?: string): Promise<Python[]> {
  const found = new Map<string, Python>();
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").filter(Boolean)) {
    let names: string[];
    try {
      names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
        /^python3(\.\d+)?$/.test(n)
      ).sort();
    } catch {
      continue;
    }
    for (const name of names) {
      const exe = `${dir}/${name}`;
      try {
        const out = await new Deno.Command(exe, {
          args: ["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
          stdout: "piped",
          stderr: "null",
        }).output();
        if (!out.success) continue; // e.g. a pyenv shim for a version not selected
        const version = new TextDecoder().decode(out.stdout).trim();
        const [major, minor] = version.split(".").map(Number);
        if (major !== 3 || minor < 8) {
          if (warnAs) {
            console.warn(`${warnAs}: skipping ${exe} (${version}): CPython 3.8+ is the target`);
          }
          continue;
        }
        if (!found.has(version)) found.set(version, { exe, version });
      } catch { /* not runnable */ }
    }
  }
  return [...found.values()];
}

/**
 * Without any Python, warns (prefixed by `file`) and registers one ignored test named
 * `${title}: ...`, so the skip shows in the test report. Returns whether there is none.
 */
export function skipWithoutPython(
  pythons: Python[],
  file: string,
  title: string,
  what: string,
): boolean {
  if (pythons.length > 0) return false;
  const why = `no python3 on PATH: ${what} are SKIPPED (.ci/run installs Debian's python3)`;
  console.warn(`${file}: ${why}`);
  Deno.test({ name: `${title}: ${why}`, ignore: true, fn() {} });
  return true;
}

/** A running Python script (a test peer); its stdout is collected as it comes. */
export class PythonPeer {
  readonly child: Deno.ChildProcess;
  out = "";
  #reading: Promise<void>;
  #stderr: Promise<string>;
  #timer: ReturnType<typeof setTimeout>;

  /** Runs `script` with `args`; kills it after `killAfterMs` milliseconds. */
  constructor(python: Python, script: string, args: (string | number)[], killAfterMs: number) {
    const child = this.child = new Deno.Command(python.exe, {
      args: [script, ...args.map(String)],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // A generous bound for a loaded machine: a hung peer fails the test instead of hanging it.
    this.#timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    this.#reading = (async () => {
      for await (const s of child.stdout.pipeThrough(new TextDecoderStream())) this.out += s;
    })();
    this.#stderr = new Response(child.stderr).text();
  }

  /** Waits for a line matching `re` (with one group) and returns that group. */
  async waitFor(re: RegExp): Promise<string> {
    for (let i = 0; i < 6000; i++) {
      const m = re.exec(this.out);
      if (m) return m[1];
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`python peer never printed ${re}; printed ${JSON.stringify(this.out)}`);
  }

  /** Waits for the peer to exit (asserting it succeeded); returns its stdout. */
  async done(): Promise<string> {
    const status = await this.child.status;
    await this.#reading;
    const err = await this.#stderr;
    clearTimeout(this.#timer);
    assert.equal(status.code, 0, `python peer failed: ${err}\nstdout: ${this.out}`);
    return this.out;
  }
}
