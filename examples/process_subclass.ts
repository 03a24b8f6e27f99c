// Mirrors the tutorial's "继承multiprocessing.Process()": a Process subclass that overrides run().
// Two of them are started and joined; each prints its own pid and its parent's.
//
// As in Python's spawn mode, the class must be importable by the worker: it is exported, and
// the main program's code sits under `if (import.meta.main)` (Python's `if __name__ ==
// "__main__"`), because every worker imports this module again.
//
// Look for: two "child starts >>> pid=..., ppid=<main pid>" lines, two "child ends", then
// "all done".
import { currentProcess, getPid, getPpid, Process } from "../mod.ts";
import { sleep } from "./_util.ts";

export class MyProcess extends Process {
  constructor() {
    super(); // multiprocessing.Process.__init__(self)
  }

  override async run() {
    console.log(`child starts >>> pid=${getPid()}, ppid=${getPpid()} (${currentProcess().name})`);
    await sleep(1000);
    console.log(`child ends >>> pid=${getPid()}`);
  }
}

if (import.meta.main) {
  console.log(`main process starts: pid=${getPid()}`);
  const p1 = new MyProcess();
  const p2 = new MyProcess();
  p1.start();
  p2.start();
  await p1.join();
  await p2.join();
  console.log(`all done (exit codes ${p1.exitCode}, ${p2.exitCode})`);
}
