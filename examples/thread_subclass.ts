// Mirrors the tutorial's "创建线程的第二种方法：继承threading.Thread()": a Thread subclass with its
// own constructor argument and run(). Each thread is started and joined before the next one is
// made, so the four 2 s runs take 8 s in all.
//
// Look for: "the args for this class is 0" ... "3", then "main thread is done" after 8 s.
import { Thread } from "../mod.ts";
import { ctime, sleep, stopwatch } from "./_util.ts";

class MyThread extends Thread {
  arg: number;

  constructor(arg: number) {
    super(); // super(MyThread, self).__init__()
    this.arg = arg;
  }

  // run() must be overridden: it is what start() runs.
  override async run() {
    await sleep(2000);
    console.log(`the args for this class is ${this.arg}`);
  }
}

if (import.meta.main) {
  const spent = stopwatch();
  console.log(ctime());
  for (let i = 0; i < 4; i++) {
    const t = new MyThread(i);
    t.start();
    await t.join();
  }
  console.log("main thread is done!!!!!!!!!");
  console.log(`${ctime()} (${spent()} s)`);
}
