// Mirrors the tutorial's two multiprocessing.Pipe programs:
//
// 1. "pipe实现生产者消费者模型": the main process sends 10 "red envelopes" into one end of a Pipe
//    and a consumer process receives them from the other. Each side closes the end it does not
//    use; once every copy of the sending end is closed and the pipe is drained, recv() throws
//    EOFError, which ends the consumer's loop. (Each process holds its own copy of an end, as in
//    Python: the consumer closing its copy of the sending end does not close the main's.)
// 2. "pipe示例": the items are sent before the consumer starts; its loop never ends on its own
//    (the main process keeps its copy of the sending end open), so after 5 s the main process
//    terminate()s it.
//
// Look for: 10 "consumer received" lines then "consumer got EOFError", and 10 "item N is
// received" lines then "consumer terminated (exit code -15)".
import { type Connection, EOFError, getPid, Pipe, Process } from "../mod.ts";
import { sleep } from "./_util.ts";

// ---- 1. EOFError ends the consumer ----

async function producer(seq: number[], pipe: [Connection<string>, Connection<string>]) {
  console.log("the producer starts");
  const [prd, con] = pipe;
  con.close(); // the producer does not receive
  for (const i of seq) {
    const s = `${getPid()} sends red envelope ${i}`;
    await prd.send(s);
    console.log(s);
  }
}

export async function consumer(pipe: [Connection<string>, Connection<string>]) {
  const [prd, con] = pipe;
  prd.close(); // the consumer does not send: close its copy, or recv() could never see EOF
  for (;;) {
    try {
      const rv = await con.recv();
      console.log(`consumer received: ${rv}`);
    } catch (e) {
      if (!(e instanceof EOFError)) throw e;
      console.log("consumer got EOFError: every sending end is closed, stopping");
      break;
    }
  }
}

async function eofEndsTheConsumer() {
  const seq = Array.from({ length: 10 }, (_, i) => i);
  const [pro, con] = Pipe<string>();
  const c = new Process({ target: consumer, args: [[pro, con]] });
  c.start();
  await producer(seq, [pro, con]);
  pro.close();
  con.close();
  await c.join();
  console.log(`consumer exit code ${c.exitCode}`);
}

// ---- 2. a consumer that never stops, terminated ----

export async function endlessConsumer(outputP: Connection<number>) {
  for (;;) {
    const item = await outputP.recv();
    console.log(`item ${item} is received`);
  }
}

async function terminateTheConsumer() {
  const [outputP, inputP] = Pipe<number>();
  for (let item = 0; item < 10; item++) await inputP.send(item); // the producer
  const consumerP = new Process({ target: endlessConsumer, args: [outputP] });
  consumerP.start();
  await sleep(5000);
  consumerP.terminate();
  await consumerP.join();
  console.log(`consumer terminated (exit code ${consumerP.exitCode})`);
  outputP.close();
  inputP.close();
}

if (import.meta.main) {
  console.log("--- 1. EOFError ends the consumer ---");
  await eofEndsTheConsumer();
  console.log("--- 2. terminate() ends the consumer ---");
  await terminateTheConsumer();
  console.log("program ends");
}
