// Pipes and connections: Python semantics (CPython _TestConnection, _TestPoll), per-process
// close and EOF, big messages, handles through pipes, and TCP with HMAC authentication between
// two separate deno processes.
import assert from "node:assert/strict";
import { BrokenPipeError, type Connection, OSError } from "../lib/connection/connection.ts";
import { Pipe } from "../lib/connection/pipe.ts";
import { Client, Listener } from "../lib/connection/listener.ts";
import { Process } from "../lib/process/process.ts";
import { Queue } from "../lib/queues/queues.ts";
import { AuthenticationError, BufferTooShort, EOFError, ValueError } from "../lib/core/errors.ts";
import {
  pipeCountUntilEof,
  pipeEcho,
  pipeEchoSync,
  pipeHandOff,
  pipeSend,
  pipeSendBig,
} from "./fixtures/queue_targets.ts";
import { handOffAndKeep } from "./fixtures/pipe_targets.ts";
import { __testHooks, endOpen } from "../lib/connection/pipe_copies.ts";
import { dumps, loads } from "../lib/core/reduction.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TCP_PEER = new URL("./fixtures/tcp_peer.ts", import.meta.url).pathname;

function start(target: (...a: never[]) => unknown, ...args: unknown[]): Process {
  const p = new Process({ target: target as (...a: unknown[]) => unknown, args });
  p.start();
  return p;
}

Deno.test("a duplex pipe carries objects both ways; messages never merge or split", async () => {
  const [a, b] = Pipe<unknown>();
  assert.ok(a.readable && a.writable && b.readable && b.writable);
  const msgs: unknown[] = [
    1,
    "two",
    { three: [3] },
    new Uint8Array(0),
    "",
    null,
    new Map([[1, 2]]),
  ];
  for (const m of msgs) await a.send(m);
  for (const m of msgs) assert.deepEqual(await b.recv(), m);
  await b.send("back");
  assert.equal(await a.recv(), "back");
  // Byte messages of many sizes, including empty ones, come out exactly as sent.
  const sizes = [0, 1, 7, 1000, 0, 70_000, 300_000, 3, 0];
  // (Not awaited one by one: a message bigger than the pipe waits for the reader, as in Python.)
  const sent = Promise.all(sizes.map((n) => a.sendBytes(new Uint8Array(n).fill(n & 255))));
  for (const n of sizes) {
    const got = await b.recvBytes();
    assert.equal(got.length, n);
    assert.ok(got.every((x) => x === (n & 255)));
  }
  await sent;
  a.close();
  b.close();
  assert.ok(a.closed && b.closed);
});

Deno.test("one-way pipes refuse the wrong direction; closed connections refuse everything", async () => {
  const [r, w] = Pipe<number>({ duplex: false });
  assert.ok(r.readable && !r.writable && !w.readable && w.writable);
  assert.throws(() => r.send(1), (e: Error) => e instanceof OSError && /read-only/.test(e.message));
  await assert.rejects(
    w.recv(),
    (e: Error) => e instanceof OSError && /write-only/.test(e.message),
  );
  await w.send(5);
  assert.equal(await r.recv(), 5);
  w.close();
  w.close(); // idempotent
  assert.throws(() => w.send(1), (e: Error) => e instanceof OSError && /closed/.test(e.message));
  await assert.rejects(r.recv(), EOFError);
  r.close();
  await assert.rejects(r.recv(), OSError);
});

Deno.test("sendBytes offset/size, recvBytes maxlength, recvBytesInto and BufferTooShort", async () => {
  const [a, b] = Pipe();
  const src = new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  await a.sendBytes(src, 2, 3);
  assert.deepEqual(await b.recvBytes(), new Uint8Array([2, 3, 4]));
  await a.sendBytes(src, 8);
  assert.deepEqual(await b.recvBytes(), new Uint8Array([8, 9]));
  await a.sendBytes(new Uint16Array([0x0102]).buffer);
  assert.equal((await b.recvBytes()).length, 2);
  await assert.rejects(a.sendBytes(src, -1), ValueError);
  await assert.rejects(a.sendBytes(src, 11), ValueError);
  await assert.rejects(a.sendBytes(src, 5, -1), ValueError);
  await assert.rejects(a.sendBytes(src, 5, 6), ValueError);

  await a.sendBytes(new Uint8Array([1, 2, 3]));
  const into = new Uint8Array(8);
  assert.equal(await b.recvBytesInto(into, 4), 3);
  assert.deepEqual(into, new Uint8Array([0, 0, 0, 0, 1, 2, 3, 0]));
  await a.sendBytes(new Uint8Array([9, 9, 9, 9, 9]));
  await assert.rejects(b.recvBytesInto(new Uint8Array(4)), (e: Error) => {
    assert.ok(e instanceof BufferTooShort);
    assert.deepEqual(e.bytes, new Uint8Array([9, 9, 9, 9, 9])); // the whole message, not lost
    return true;
  });
  // A message longer than the pipe streams in: assembled in place when it fits, whole otherwise.
  const long = new Uint8Array(700_000).map((_, i) => i & 255);
  let sent = a.sendBytes(long);
  const dst = new Uint8Array(800_000);
  assert.equal(await b.recvBytesInto(dst, 50_000), long.length);
  await sent;
  assert.deepEqual(dst.subarray(50_000, 750_000), long);
  sent = a.sendBytes(long);
  await assert.rejects(
    b.recvBytesInto(new Uint8Array(600_000)),
    (e: Error) =>
      e instanceof BufferTooShort && e.bytes.length === 700_000 &&
      e.bytes[699_999] === (699_999 & 255),
  );
  await sent;
  await assert.rejects(b.recvBytesInto(new Uint8Array(4), -1), ValueError);
  await assert.rejects(b.recvBytesInto(new Uint8Array(4), 5), ValueError);
  await assert.rejects(b.recvBytes(-1), ValueError);
  await a.sendBytes(new Uint8Array(10));
  await assert.rejects(
    b.recvBytes(5),
    (e: Error) => e instanceof OSError && /bad message length/.test(e.message),
  );
  a.close();
  b.close();
});

Deno.test("poll never consumes, sees empty messages, waits up to its timeout", async () => {
  const [a, b] = Pipe();
  assert.equal(await b.poll(), false);
  assert.equal(b.pollSync(0), false);
  let t0 = performance.now();
  assert.equal(await b.poll(100), false);
  assert.ok(performance.now() - t0 >= 90);
  await a.sendBytes(new Uint8Array(0));
  assert.equal(await b.poll(), true);
  assert.equal(await b.poll(), true); // still there
  assert.equal((await b.recvBytes()).length, 0);
  assert.equal(await b.poll(), false);
  t0 = performance.now();
  setTimeout(() => a.send("late"), 50);
  assert.equal(await b.poll(5000), true);
  assert.ok(performance.now() - t0 < 4000);
  assert.equal(await b.recv(), "late");
  a.close();
  assert.equal(await b.poll(), true); // EOF is readable, as in Python
  await assert.rejects(b.recv(), EOFError);
  b.close();
});

Deno.test("EOF once every copy of the other end is closed: a worker's copy counts until it exits", async () => {
  const [mine, theirs] = Pipe<number>();
  const p = start(pipeSend, theirs, 500);
  theirs.close(); // our copy only: the worker's copy keeps the end open
  let n = 0;
  try {
    for (;;) {
      assert.equal(await mine.recv(), n);
      n++;
    }
  } catch (e) {
    assert.ok(e instanceof EOFError, String(e));
  }
  assert.equal(n, 500);
  await p.join();
  mine.close();
});

Deno.test("EOF reaches a worker once the main process closes its only copy", async () => {
  const [mine, theirs] = Pipe<number>();
  const out = new Queue<number | string>();
  const p = start(pipeCountUntilEof, theirs, out);
  theirs.close();
  for (let i = 0; i < 100; i++) await mine.send(i);
  mine.close();
  assert.equal(await out.get({ timeout: 20_000 }), 100);
  await p.join();
});

Deno.test("a terminated worker's copy counts as closed", async () => {
  const [mine, theirs] = Pipe<unknown>();
  const p = start(pipeEcho, theirs);
  theirs.close();
  await mine.send(1);
  assert.equal(await mine.recv(), 1);
  p.terminate();
  await p.join();
  const t0 = performance.now();
  await assert.rejects(mine.recv(), EOFError);
  assert.ok(performance.now() - t0 < 5000);
  await assert.rejects(mine.send(2), BrokenPipeError);
  mine.close();
});

Deno.test("ping-pong with a worker, async in main and Sync in the worker", async () => {
  for (const target of [pipeEcho, pipeEchoSync]) {
    const [mine, theirs] = Pipe<unknown>();
    const p = start(target, theirs);
    theirs.close();
    for (let i = 0; i < 2000; i++) {
      await mine.send({ seq: i });
      assert.equal((await mine.recv() as { seq: number }).seq, i);
    }
    await mine.send(null);
    assert.equal(await mine.recv(), null);
    await p.join();
    assert.equal(p.exitCode, 0);
    mine.close();
  }
});

Deno.test("a 64 MiB byte message passes through a Pipe", async () => {
  const [mine, theirs] = Pipe();
  const p = start(pipeSendBig, theirs, 64);
  theirs.close();
  const big = await mine.recvBytes();
  assert.equal(big.length, 64 << 20);
  for (let i = 0; i < big.length; i += 4096) assert.equal(big[i], (i >> 12) & 255);
  await p.join();
  mine.close();
});

Deno.test("a Connection made in a worker travels through a pipe and works here", async () => {
  const [mine, theirs] = Pipe<unknown>();
  const p = start(pipeHandOff, theirs);
  theirs.close();
  const conn = await mine.recv() as Connection<string>;
  assert.equal(await conn.recv(), "hello from a pipe made in a worker");
  await p.join();
  await assert.rejects(conn.recv(), EOFError);
  conn.close();
  mine.close();
});

Deno.test("a copy moving between processes while the other end scans for EOF is never missed", async () => {
  // The worker makes the pipe and leaves: its copies stay in entry 0 of each end's table (dead).
  const [mine, theirs] = Pipe<unknown>();
  const p = start(handOffAndKeep, theirs);
  theirs.close();
  const a = await mine.recv() as Connection<string>;
  let b = await mine.recv() as Connection<string>; // entry 1 of end 1: entry 0 was live then
  await mine.send("held");
  await p.join();
  const off = Number(/pipe (\d+)/.exec(String(b))![1]);
  assert.ok(endOpen(off, 1));
  // While a scan of end 1 stands between entries 0 and 1, b moves (as a copy sent away and
  // received does): it lands in entry 0 (the dead worker's, taken over) and leaves entry 1. At
  // no instant is b closed, but the scan has passed its new place and finds its old one empty.
  let moved = false;
  __testHooks.scanning = (k) => {
    if (k !== 1 || moved) return;
    moved = true;
    const bytes = dumps(b); // in flight
    b.close(); // gone from entry 1
    b = loads(bytes) as Connection<string>; // claimed in entry 0, no longer in flight
  };
  try {
    assert.equal(endOpen(off, 1), true, "end 1 is open: b holds it");
  } finally {
    __testHooks.scanning = undefined;
  }
  assert.ok(moved);
  await b.send("still here");
  assert.equal(await a.recv(), "still here");
  b.close();
  await assert.rejects(a.recv(), EOFError);
  a.close();
  mine.close();
});

Deno.test("sending to a pipe whose other end is closed everywhere throws BrokenPipeError", async () => {
  const [a, b] = Pipe();
  b.close();
  await assert.rejects(a.send(1), BrokenPipeError);
  assert.throws(() => a.sendSync(1), BrokenPipeError);
  await using c = Pipe()[0];
  assert.ok(!c.closed);
  a.close();
});

Deno.test("Listener/Client in one process: authenticated round trip, wrong key fails on both sides", async () => {
  await using listener = new Listener({ authkey: "secret" });
  const [server, client] = await Promise.all([
    listener.accept(),
    Client(listener.address, { authkey: "secret" }),
  ]);
  await client.send({ hello: new Map([["world", 1n]]) });
  assert.deepEqual(await server.recv(), { hello: new Map([["world", 1n]]) });
  await server.sendBytes(new Uint8Array([1, 2, 3]));
  assert.deepEqual(await client.recvBytes(), new Uint8Array([1, 2, 3]));
  assert.equal(await client.poll(), false);
  client.close();
  await assert.rejects(server.recv(), EOFError);
  server.close();

  const results = await Promise.allSettled([
    listener.accept(),
    Client(listener.address, { authkey: "wrong" }),
  ]);
  for (const r of results) {
    assert.equal(r.status, "rejected");
    assert.ok((r as PromiseRejectedResult).reason instanceof AuthenticationError);
  }
});

/** Runs tests/fixtures/tcp_peer.ts as a separate deno process. */
function peer(...args: string[]) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", TCP_PEER, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output().then((r) => ({
    code: r.code,
    out: new TextDecoder().decode(r.stdout).trim(),
    err: new TextDecoder().decode(r.stderr).trim(),
  }));
}

Deno.test("TCP between two deno processes: mutual HMAC auth, data flows; a wrong key gets AuthenticationError on both sides", async () => {
  await using listener = new Listener({ authkey: new TextEncoder().encode("k3y") });
  const port = String(listener.address.port);

  const good = peer("client", port, "k3y");
  const conn = await listener.accept<unknown>();
  assert.deepEqual(await conn.recv(), { from: "peer", n: [1, 2, 3] });
  await conn.send("pong");
  assert.equal(await conn.recv(), "got pong");
  conn.close();
  const g = await good;
  assert.equal(g.code, 0, g.err);

  const bad = peer("client", port, "not-the-key");
  await assert.rejects(listener.accept(), AuthenticationError);
  const b = await bad;
  assert.equal(b.out, "AuthenticationError: digest sent was rejected");
});

Deno.test("TCP: a peer sending garbage or an oversized frame is dropped with a clear error; the listener keeps serving", async () => {
  await using authed = new Listener({ authkey: "k3y" });
  let port = String(authed.address.port);
  const garbage = peer("garbage", port);
  await assert.rejects(authed.accept(), AuthenticationError);
  await garbage;
  const ok = peer("client", port, "k3y");
  const conn = await authed.accept();
  assert.deepEqual(await conn.recv(), { from: "peer", n: [1, 2, 3] });
  await conn.send("pong");
  assert.equal(await conn.recv(), "got pong");
  conn.close();
  assert.equal((await ok).code, 0);

  await using open = new Listener({ maxMessageSize: 1 << 20 });
  port = String(open.address.port);
  const huge = peer("oversized", port);
  const victim = await open.accept();
  await assert.rejects(
    victim.recv(),
    (e: Error) => e instanceof OSError && /over the limit of 1048576/.test(e.message),
  );
  assert.ok(victim.closed);
  await huge;
  const next = peer("client", port, "");
  const c2 = await open.accept();
  assert.deepEqual(await c2.recv(), { from: "peer", n: [1, 2, 3] });
  await c2.send("pong");
  assert.equal(await c2.recv(), "got pong");
  c2.close();
  assert.equal((await next).code, 0);
});

Deno.test("a TCP Connection cannot be sent to a worker; socket connections have no Sync methods", async () => {
  await using listener = new Listener();
  const [s, c] = await Promise.all([listener.accept(), Client(listener.address)]);
  const q = new Queue<unknown>();
  await assert.rejects(q.put(c), /socket Connection cannot be sent/);
  assert.throws(() => c.recvSync(), ValueError);
  s.close();
  c.close();
  await sleep(0);
});

// ---------------------------------------------------------------------------------------------
// Listener: handshakes run concurrently, bounded in number, time and bytes (real TCP sockets).

/** A raw TCP peer of `listener` that connects and sends `bytes` (nothing: a silent peer). */
async function rawPeer(listener: Listener, bytes?: Uint8Array): Promise<Deno.Conn> {
  const conn = await Deno.connect(listener.address);
  if (bytes) await conn.write(bytes).catch(() => {});
  return conn;
}

/** Settles `accept()` as `"conn"`, or the refusal's message; closes the connection. */
function outcome(p: Promise<Connection>): Promise<string> {
  return p.then((c) => {
    c.close();
    return "conn";
  }, (e: Error) => {
    assert.ok(e instanceof AuthenticationError, `${e.name}: ${e.message}`);
    return e.message;
  });
}

Deno.test("Listener: a good client connects at once behind 10 silent peers; their refusals follow their timeout", async () => {
  await using listener = new Listener({ authkey: "k3y", handshakeTimeout: 3000 });
  const first = listener.accept();
  const silent = await Promise.all(Array.from({ length: 10 }, () => rawPeer(listener)));
  await sleep(100); // the silent peers are surely taken first
  const t0 = performance.now();
  const [server, client] = await Promise.all([
    first,
    Client(listener.address, { authkey: "k3y" }),
  ]);
  const ms = performance.now() - t0;
  assert.ok(ms < 1500, `the good client took ${ms.toFixed(0)} ms behind 10 silent peers`);
  await client.send("hello");
  assert.equal(await server.recv(), "hello");
  server.close();
  client.close();
  // Each silent peer is one refusal, once its time is up.
  const refusals = await Promise.all(silent.map(() => outcome(listener.accept())));
  for (const r of refusals) {
    assert.match(r, /did not finish within 3000 ms \(peer 127\.0\.0\.1:\d+\)/);
  }
  for (const s of silent) s.close();
});

Deno.test("Listener: garbage and an oversized handshake message are refused at once, each as one accept() result", async () => {
  await using listener = new Listener({ authkey: "k3y", handshakeTimeout: 3000 });
  const results = Array.from({ length: 4 }, () => outcome(listener.accept()));
  const silent = await rawPeer(listener);
  const garbage = await rawPeer(listener, new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
  // 257 bytes where the handshake allows 256: too many bytes, refused before they are read.
  const big = new Uint8Array(4 + 257);
  new DataView(big.buffer).setUint32(0, 257);
  const tooMany = await rawPeer(listener, big);
  const t0 = performance.now();
  const client = await Client(listener.address, { authkey: "k3y" });
  const ms = performance.now() - t0;
  assert.ok(ms < 1500, `the good client took ${ms.toFixed(0)} ms`);
  client.close();
  const got = await Promise.all(results);
  // The silent peer is refused last (its time runs out); the others as soon as they spoke.
  assert.match(got[3], /did not finish within 3000 ms/);
  assert.equal(got.filter((m) => m === "conn").length, 1);
  assert.equal(got.filter((m) => /over the limit of 256/.test(m)).length, 2, got.join("\n"));
  for (const s of [silent, garbage, tooMany]) s.close();
});

Deno.test("Listener: at most maxPendingHandshakes at once; the next peer waits for a free slot", async () => {
  await using listener = new Listener({
    authkey: "k3y",
    handshakeTimeout: 1500,
    maxPendingHandshakes: 2,
  });
  const results = Array.from({ length: 3 }, () => outcome(listener.accept()));
  const a = await rawPeer(listener); // times out at ~1500 ms
  await sleep(700);
  const b = await rawPeer(listener); // times out at ~2200 ms
  await sleep(100);
  const t0 = performance.now();
  const client = await Client(listener.address, { authkey: "k3y" }); // waits for a's slot
  const ms = performance.now() - t0;
  client.close();
  const got = await Promise.all(results);
  assert.match(got[0], /did not finish within 1500 ms/);
  assert.equal(got[1], "conn", got.join("\n"));
  assert.match(got[2], /did not finish within 1500 ms/);
  assert.ok(ms > 300, `the third peer got in after ${ms.toFixed(0)} ms: the bound is 2`);
  a.close();
  b.close();
});

Deno.test("Listener: close() rejects waiting accept() calls with OSError and drops peers in the handshake", async () => {
  const listener = new Listener({ authkey: "k3y" });
  const waiting = listener.accept();
  const silent = await rawPeer(listener);
  await sleep(100);
  listener.close();
  await assert.rejects(waiting, (e: Error) => e instanceof OSError && /closed/.test(e.message));
  await assert.rejects(listener.accept(), OSError);
  // The silent peer was disconnected: it reads the challenge, then the end of the stream.
  const buf = new Uint8Array(1024);
  let n: number | null = 0;
  while (n !== null) n = await silent.read(buf).catch(() => null);
  silent.close();
  assert.throws(() => new Listener({ maxPendingHandshakes: 0 }), ValueError);
  assert.throws(
    () => new Listener({ handshakeTimeout: "5" as unknown as number }),
    /handshakeTimeout must be a number of milliseconds/,
  );
  assert.throws(() => new Listener(5 as unknown as undefined), TypeError);
});
