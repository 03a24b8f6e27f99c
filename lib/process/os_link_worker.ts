/**
 * Isolation "process", child side: the thread of a handle link (see `os_link.ts`). It owns the
 * socket to the server of the parent's handles and moves bytes only: it takes the frames its
 * isolate left in the outbox (`os_link_outbox.ts`), all that is there at once, and writes them
 * in one write; the replies it reads go into the inbox, the same structure the other way, which
 * the isolate reads whether it awaits (a wake-up of `Atomics.waitAsync`) or blocks (in
 * `Atomics.wait`). It decodes nothing, so it loads nothing but the channel and the outbox.
 *
 * @module
 */

import { Channel, connectUnix, H_BROKEN, H_REPLY } from "./os_channel.ts";
import { OutboxReader, OutboxWriter } from "./os_link_outbox.ts";

const scope = globalThis as unknown as { onmessage: ((e: MessageEvent) => void) | null };

let ch: Channel | null = null;
let outbox: OutboxReader;
let inbox: OutboxWriter;
/** Frames taken before the socket was open, in order. */
const early: Uint8Array[] = [];
let broken = false;

/** Fails every call from now on: the isolate is told why (calls taken later are dropped). */
function fail(why: string): void {
  if (broken) return;
  broken = true;
  inbox.append(H_BROKEN, new TextEncoder().encode(why));
}

async function connect(path: string): Promise<void> {
  try {
    ch = new Channel(await connectUnix(path));
  } catch (e) {
    return fail(`cannot reach the parent's handles at ${path}: ${(e as Error).message}`);
  }
  ch.listen((type, body) => type === H_REPLY && inbox.append(H_REPLY, body));
  void ch.closed.then(() => fail("the parent's handles are gone (the parent or its server ended)"));
  for (const frames of early.splice(0)) ch.sendFrames(frames);
}

/** Moves what the isolate puts into the outbox to the socket, for as long as the thread lives. */
async function pump(): Promise<void> {
  for (;;) {
    await outbox.ready();
    const frames = outbox.take();
    if (!frames || broken) continue;
    if (!ch) early.push(frames);
    else ch.sendFrames(frames);
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
  if (d.throw) throw new Error("thrown for a test"); // see __testHooks in os_link.ts
  const beat = d.beat as Int32Array;
  setInterval(() => Atomics.add(beat, 0, 1), BEAT_MS);
  outbox = new OutboxReader(d.out);
  inbox = new OutboxWriter(d.inbox, true);
  void connect(d.path);
  void pump();
};
