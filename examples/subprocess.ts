// Mirrors the tutorial's subprocess section: `os.system("df - Th")` runs an external program and
// returns its exit status. (The tutorial's command has a stray space, so df failed and the
// printed status was 1; `df -h` was meant.) Deno's counterpart of subprocess is Deno.Command;
// denomp's processes are workers running TypeScript, not external programs.
//
// Look for: the output of `df -h .` and "exit status 0", then "exit status" not 0 for the
// tutorial's mistyped command.
async function system(cmd: string, args: string[]): Promise<number> {
  try {
    const { code, stdout, stderr } = await new Deno.Command(cmd, { args }).output();
    const text = new TextDecoder().decode(code === 0 ? stdout : stderr).trimEnd();
    if (text) console.log(text);
    return code;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    console.log(`${cmd}: command not found`);
    return 127;
  }
}

if (import.meta.main) {
  console.log("$ df -h .");
  console.log(`exit status ${await system("df", ["-h", "."])}`);
  console.log("$ df - Th   (the tutorial's typo)");
  console.log(`exit status ${await system("df", ["-", "Th"])}`);
}
