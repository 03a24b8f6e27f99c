// Mirrors the tutorial's "信号量举例" (多进程之信号量Semaphore): a KTV has 4 rooms, modelled by a
// Semaphore(4) shared by 13 processes, one per guest. Each guest takes a room, stays a random
// 0-3 s, and gives it back; at most 4 guests are inside at any time, the others wait at the door.
//
// To make that visible, the processes also count the rooms in use in a shared Value (updated
// under the Value's own lock) and keep the highest count seen. And the guests wait at the door
// (an Event) until the KTV opens, so that they all rush in at once rather than as their
// processes happen to start.
//
// Look for: 13 "userN got a KTV room" lines, "at most 4 of the 4 rooms were in use at once",
// and the closing "============>".
import { Event, Process, Semaphore, Value } from "../mod.ts";
import { randint, sleep } from "./_util.ts";

export async function goKtv(
  sem: Semaphore,
  user: string,
  inUse: Value<"i">,
  most: Value<"i">,
  open: Event,
) {
  await open.wait();
  await sem.acquire();
  {
    using _ = await inUse.getLock().acquire();
    inUse.value += 1;
    most.value = Math.max(most.value, inUse.value);
    console.log(`${user} got a KTV room (${inUse.value} of 4 in use)`);
  }
  await sleep(randint(0, 3) * 1000); // every guest stays a different time
  {
    using _ = await inUse.getLock().acquire();
    inUse.value -= 1;
  }
  sem.release();
}

if (import.meta.main) {
  const sem = new Semaphore(4);
  const inUse = new Value("i", 0);
  const most = new Value("i", 0);
  const open = new Event();
  const pL = [];
  for (let i = 0; i < 13; i++) {
    const p = new Process({ target: goKtv, args: [sem, `user${i}`, inUse, most, open] });
    p.start();
    pL.push(p);
  }
  await sleep(500); // the guests arrive
  console.log("the KTV opens");
  open.set();
  for (const p of pL) await p.join();
  console.log(`at most ${most.value} of the 4 rooms were in use at once`);
  console.log("============>");
}
