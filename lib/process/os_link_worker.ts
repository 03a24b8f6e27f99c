/**
 * Isolation "process", child side: the thread of a handle link (see `os_link.ts`). It owns the
 * socket to the server of the parent's handles and moves bytes only: calls from its isolate go
 * out as frames (those of one tick in one write); a reply goes back as a message, or, for a call
 * whose caller blocks, into the shared buffer the caller waits on. It decodes nothing, so it
 * loads nothing but the channel.
 *
 * @module
 */

import {
  Channel,
  connectUnix,
  H_CALL,
  H_REPLY,
  M_SYNC,
  putShared,
  S_CALL,
  S_DATA,
  S_LEN,
  S_REPLY,
  S_STATE,
} from "./os_channel.ts";

const scope = globalThis as unknown as {
  postMessage(data: unknown, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent) => void) | null;
};

let ch: Channel | null = null;
let sab: SharedArrayBuffer;
let i32: Int32Array;
/** Calls made before the socket was open, in order. */
const early: Uint8Array[] = [];
/** The blocking call in flight (its caller waits on the shared buffer), or 0. */
let blocked = 0;
let broken = "";

/** Hands `reply` to the blocked caller: into the shared buffer. */
function toBlocked(reply: Uint8Array): void {
  putShared(sab, i32, reply, S_REPLY);
}

/** Fails every call from now on, and the blocked one. */
function fail(why: string): void {
  broken ||= why;
  scope.postMessage({ broken });
  if (blocked) {
    blocked = 0;
    toBlocked(errorReply(broken));
  }
}

/** A reply `[0][ok 0][a ProcessError]`, encoded as the codec does (see reduction.ts). */
function errorReply(message: string): Uint8Array {
  // The link decodes nothing; the caller's side turns this marker into its ProcessError.
  const text = new TextEncoder().encode(message);
  const out = new Uint8Array(5 + text.length);
  out[4] = 2;
  out.set(text, 5);
  return out;
}

async function connect(path: string): Promise<void> {
  try {
    ch = new Channel(await connectUnix(path));
  } catch (e) {
    return fail(`cannot reach the parent's handles at ${path}: ${(e as Error).message}`);
  }
  ch.listen((type, body) => {
    if (type !== H_REPLY) return;
    const n = new DataView(body.buffer, body.byteOffset).getUint32(0, true);
    if (n === blocked) {
      blocked = 0;
      return toBlocked(body);
    }
    scope.postMessage(body, [body.buffer as ArrayBuffer]);
  });
  void ch.closed.then(() => fail("the parent's handles are gone (the parent or its server ended)"));
  for (const body of early.splice(0)) send(body);
}

function send(body: Uint8Array): void {
  if (body[4] & M_SYNC) blocked = new DataView(body.buffer, body.byteOffset).getUint32(0, true);
  if (broken) {
    if (blocked) fail(broken);
    return;
  }
  if (!ch) return void early.push(body);
  ch.send(H_CALL, body);
}

/**
 * Takes the blocking calls from the shared buffer as they come: a wake-up on a shared word
 * costs less than a message, and the caller is waiting for the reply.
 */
async function takeBlocking(): Promise<void> {
  for (;;) {
    const v = Atomics.load(i32, S_STATE);
    if (v === S_CALL) {
      const body = new Uint8Array(sab, S_DATA, Atomics.load(i32, S_LEN)).slice();
      Atomics.store(i32, S_STATE, 0);
      send(body);
      continue;
    }
    const r = Atomics.waitAsync(i32, S_STATE, v);
    if (r.async) await r.value;
  }
}

/** How often this thread beats (see `DEAD_AFTER_MS` in os_link.ts). */
const BEAT_MS = 100;

// An error of this thread fails the call waiting on it (and every later one), naming it.
addEventListener("error", (e) => {
  e.preventDefault();
  fail(`the link to the parent's handles failed: ${e.message}`);
});
addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  fail(`the link to the parent's handles failed: ${String(e.reason)}`);
});

scope.onmessage = (e: MessageEvent) => {
  const d = e.data;
  if (d instanceof Uint8Array) return send(d);
  if (d.throw) throw new Error("thrown for a test"); // see __testHooks in os_link.ts
  sab = d.sab;
  i32 = new Int32Array(sab, 0, 2);
  const beat = d.beat as Int32Array;
  setInterval(() => Atomics.add(beat, 0, 1), BEAT_MS);
  void connect(d.path);
  void takeBlocking();
};
