// Mirrors the tutorial's threading.Timer program: `Timer(1, hello)` prints "hello, world" one
// second after start(). The tutorial's text adds that a timer can be cancelled before it fires,
// which the second timer shows.
//
// Look for: "hello, world" after about 1 s, and "the cancelled timer never fired".
import { Timer } from "../mod.ts";
import { scaled, stopwatch } from "./_util.ts";

const clock = stopwatch();

function hello() {
  console.log(`[${clock()} s] hello, world`);
}

if (import.meta.main) {
  const t = new Timer(scaled(1000), hello); // the interval is in milliseconds
  t.start(); // after 1 second, "hello, world" will be printed
  console.log(`[${clock()} s] timer started`);

  let fired = false;
  const late = new Timer(scaled(2000), () => (fired = true));
  late.start();
  late.cancel(); // before its 2 s are up: it never runs
  await t.join();
  await late.join();
  console.log(fired ? "the cancelled timer fired?!" : "the cancelled timer never fired");
}
