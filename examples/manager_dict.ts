// Mirrors the tutorial's "multiprocessing.Manager示例": a dict served by a manager process, shared
// by ten processes through proxies.
//
// 1. simple_test: each process sets d["name"] = its id. The dict really is shared: the main
//    process sees the last write.
// 2. The nested-mutation pitfall the tutorial explains: d.get("name") returns a copy, so changing
//    the list it returns (Python's `d['name'][0] = id`) changes nothing in the managed dict. The
//    fix: modify the copy and assign it back with d.set().
// 3. Read-modify-write from several processes at once: with the fix alone, processes overwrite
//    each other's changes. Doing it under a manager Lock keeps all ten.
//    (The tutorial's program joins only the last process; all of them are joined here.)
//
// Look for: "the mutation was lost: ["jiaojiao","xiaoxiao"]", "assigned back: [7,"xiaoxiao"]",
// and "under a lock: 10 of 10 ids kept".
import { type DictProxy, type LockProxy, Manager, Process } from "../mod.ts";

type Dict = DictProxy<string, unknown>;

export async function simpleTest(id: number, testDict: Dict) {
  await testDict.set("name", id);
  console.log(`process ${id} set name to ${await testDict.get("name")}`);
}

export async function complexTest(id: number, testDict: Dict) {
  await testDict.set("name", ["jiaojiao", "xiaoxiao"]);
  // The pitfall: this changes a copy that lives in this process only.
  (await testDict.get("name") as unknown[])[0] = id;
  console.log(`the mutation was lost: ${JSON.stringify(await testDict.get("name"))}`);
  // The fix: take the copy, change it, assign it back.
  const value = await testDict.get("name") as unknown[];
  value[0] = id;
  await testDict.set("name", value);
  console.log(`assigned back: ${JSON.stringify(await testDict.get("name"))}`);
}

export async function addId(id: number, testDict: Dict, lock: LockProxy | null) {
  const held = lock ? await lock.acquire() : null;
  try {
    const ids = await testDict.get("ids") as number[];
    ids.push(id);
    await testDict.set("ids", ids);
  } finally {
    await held?.release();
  }
}

async function runAll(target: (...args: never[]) => unknown, argsOf: (i: number) => unknown[]) {
  const ps = [];
  for (let i = 0; i < 10; i++) {
    const p = new Process({ target: target as (...args: unknown[]) => unknown, args: argsOf(i) });
    p.start();
    ps.push(p);
  }
  for (const p of ps) await p.join();
}

if (import.meta.main) {
  await using manager = await Manager(); // shut down at the end of the block, like `with`
  const testDict = manager.dict<string, unknown>();
  await testDict.set("name", "xiaoxiao");

  console.log("--- 1. ten processes set one key ---");
  await runAll(simpleTest, (i) => [i, testDict]);
  console.log(`main process sees name = ${await testDict.get("name")}`);

  console.log("--- 2. changing a value read from the dict ---");
  const p = new Process({ target: complexTest, args: [7, testDict] });
  p.start();
  await p.join();

  console.log("--- 3. ten processes append to one list ---");
  await testDict.set("ids", []);
  await runAll(addId, (i) => [i, testDict, null]);
  const unlocked = (await testDict.get("ids") as number[]).length;
  console.log(`without a lock: ${unlocked} of 10 ids kept`);
  await testDict.set("ids", []);
  const lock = manager.Lock();
  await runAll(addId, (i) => [i, testDict, lock]);
  const ids = (await testDict.get("ids") as number[]).sort((a, b) => a - b);
  console.log(`under a lock: ${ids.length} of 10 ids kept: ${JSON.stringify(ids)}`);
  console.log(`the dict: ${JSON.stringify(Object.fromEntries(await testDict.items()))}`);
}
