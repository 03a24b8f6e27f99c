// Mirrors the tutorial's "事件方法的使用" (multiprocessing.Event): is_set() is False at first,
// wait() blocks while the flag is False, set() makes it True, clear() makes it False again.
//
// The tutorial's program calls e.wait() with nobody to call set(), so it blocks forever (its
// output stops at "look here!"). Here a child process sets the event after 1 s, and wait() in
// the main process returns. Then clear() and a wait(timeout) that runs out show the rest.
//
// Look for: "false", "look here!", "the child sets the event", "give me!!", then "after clear():
// false" and "wait(500 ms) returned false".
import { Event, Process } from "../mod.ts";
import { scaled, sleep } from "./_util.ts";

export async function setter(e: Event) {
  await sleep(1000);
  console.log("the child sets the event");
  e.set();
}

if (import.meta.main) {
  const e = new Event(); // an event object
  console.log(e.isSet()); // false at first
  console.log("look here!");
  const p = new Process({ target: setter, args: [e] });
  p.start();
  await e.wait(); // blocks while isSet() is false
  console.log("give me!!");
  console.log(`isSet(): ${e.isSet()}`);
  e.clear(); // back to false: wait() blocks again
  console.log(`after clear(): ${e.isSet()}`);
  console.log(`wait(500 ms) returned ${await e.wait(scaled(500))}`);
  await p.join();
}
