// Mirrors the tutorial's two download programs: first two 1 s "downloads" one after the other
// (2 s), then each in its own process with multiprocessing.Process (about 1 s, plus the start-up
// of the workers). Each download prints its pid and its parent's pid: the children's parent is
// the main process. (The tutorial's run in Jupyter printed nothing from the children; in a
// script it works.)
//
// Look for: two different child pids whose parent pid is the main pid, and "processes: total"
// shorter than "sequential: total".
import { getPid, getPpid, Process } from "../mod.ts";
import { sleep, stopwatch } from "./_util.ts";

export async function download(filename: string) {
  console.log(`pid ${getPid()}, parent ${getPpid()}: now downloading ${filename}`);
  await sleep(1000);
  console.log(`pid ${getPid()}: finished ${filename}`);
}

async function sequential() {
  const spent = stopwatch();
  await download("Legend of the White Snake");
  await download("Nezha");
  console.log(`sequential: total ${spent()} s`);
}

async function withProcesses() {
  const spent = stopwatch();
  const p1 = new Process({ target: download, args: ["Legend of the White Snake"] });
  const p2 = new Process({ target: download, args: ["Journey to the West"] });
  p1.start();
  p2.start();
  await p1.join();
  await p2.join();
  console.log(`processes: total ${spent()} s (exit codes ${p1.exitCode} and ${p2.exitCode})`);
}

if (import.meta.main) {
  console.log(`main process: pid ${getPid()}`);
  console.log("--- one after the other ---");
  await sequential();
  console.log("--- two processes ---");
  await withProcesses();
}
