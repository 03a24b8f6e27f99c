// Mirrors the tutorial's "Pool+ Manager" program: a Pool(4) runs complex_test 20 times with
// applyAsync, each task getting a proxy of the same managed dict: a manager proxy can be passed
// to pool tasks (a plain object would be copied, and its changes lost). Each task applies the
// fix from manager_dict.ts: read the list, change the copy, assign it back. The tutorial's tasks
// all write the one key "name", so only the last write survives; here each task writes its own
// key, so the dict ends with all 20 entries (plus the initial "name").
//
// The tutorial never looks at the results, so a failing task would go unnoticed (Python's
// apply_async swallows the error until .get() is called). Here every AsyncResult is awaited:
// a task that threw would reject it.
//
// Look for: 20 "task N in pid P: name is now [N,"xiaoxiao"]" lines from at most 4 worker pids,
// "20 tasks done by 4 worker processes" and "the dict has 21 keys".
import { type DictProxy, getPid, Manager, Pool } from "../mod.ts";

export async function complexTest(id: number, testDict: DictProxy<string, unknown>) {
  await testDict.set(`name-${id}`, ["jiaojiao", "xiaoxiao"]);
  const value = await testDict.get(`name-${id}`) as unknown[];
  value[0] = id;
  await testDict.set(`name-${id}`, value);
  console.log(`task ${id} in pid ${getPid()}: name is now ${JSON.stringify(value)}`);
  return getPid();
}

if (import.meta.main) {
  const pool = new Pool({ processes: 4 });
  await using manager = await Manager();
  const testDict = manager.dict<string, unknown>();
  await testDict.set("name", "xiaoxiao");
  const results = [];
  for (let i = 0; i < 20; i++) results.push(pool.applyAsync(complexTest, [i, testDict]));
  pool.close();
  await pool.join();
  const pids = new Set<number>();
  for (const r of results) pids.add(await r.get()); // rethrows a task's error, if any
  console.log(`20 tasks done by ${pids.size} worker processes`);
  console.log(`the dict has ${await testDict.len()} keys`);
}
