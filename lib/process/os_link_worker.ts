/**
 * Isolation "process", child side: the thread of a handle link (see `os_link.ts`). It owns the
 * socket to the server of the parent's handles and moves bytes only: it takes the frames its
 * isolate left in the outbox (`os_link_outbox.ts`), all that is there at once, and writes them
 * in one write; a reply goes back as a message (those of one tick in one), or, for the call whose
 * caller blocks, into the shared buffer the caller waits on. It decodes nothing, so it loads
 * nothing but the channel and the outbox.
 *
 * @module
 */

import { Channel, connectUnix, H_REPLY, putShared, S_REPLY } from "./os_channel.ts";
import { OutboxReader } from "./os_link_outbox.ts";

const scope = globalThis as unknown as {
  postMessage(data: unknown, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent) => void) | null;
};

let ch: Channel | null = null;
let sab: SharedArrayBuffer;
let i32: Int32Array;
let outbox: OutboxReader;
/** Frames taken before the socket was open, in order. */
const early: Uint8Array[] = [];
let broken = "";
/** Replies for the isolate, sent as one message at the end of the tick. */
let replies: Uint8Array[] = [];

/** Hands `reply` to the blocked caller: into the shared buffer. */
function toBlocked(reply: Uint8Array): void {
  putShared(sab, i32, reply, S_REPLY);
}

/** Fails the blocked call, if any, with the link's failure. */
function failBlocked(): void {
  const n = outbox.blocked;
  if (n && outbox.takeBlocked(n)) toBlocked(errorReply(broken));
}

/** Fails every call from now on, and the blocked one. */
function fail(why: string): void {
  broken ||= why;
  scope.postMessage({ broken });
  failBlocked();
}

/** A reply `[0][outcome 2][the text of a ProcessError]`, which the caller's side turns into one. */
function errorReply(message: string): Uint8Array {
  const text = new TextEncoder().encode(message);
  const out = new Uint8Array(5 + text.length);
  out[4] = 2;
  out.set(text, 5);
  return out;
}

function flushReplies(): void {
  const r = replies;
  replies = [];
  scope.postMessage(r, r.map((b) => b.buffer as ArrayBuffer));
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
    if (outbox.takeBlocked(n)) return toBlocked(body);
    if (replies.push(body) === 1) queueMicrotask(flushReplies);
  });
  void ch.closed.then(() => fail("the parent's handles are gone (the parent or its server ended)"));
  for (const frames of early.splice(0)) ch.sendFrames(frames);
}

/** Moves what the isolate puts into the outbox to the socket, for as long as the thread lives. */
async function pump(): Promise<void> {
  for (;;) {
    await outbox.ready();
    const frames = outbox.take();
    if (!frames) continue;
    if (broken) failBlocked();
    else if (!ch) early.push(frames);
    else ch.sendFrames(frames);
  }
}

scope.onmessage = (e: MessageEvent) => {
  const d = e.data;
  sab = d.sab;
  i32 = new Int32Array(sab, 0, 2);
  outbox = new OutboxReader(d.out);
  void connect(d.path);
  void pump();
};
