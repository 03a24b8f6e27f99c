/**
 * The framed socket of isolation "process": a parent and its `deno` OS child (and an isolated
 * child and the server of its handles, see `os_agent.ts`) talk through one of these. Its own
 * module so that a thread that only moves frames (the child's handle link) loads nothing else.
 *
 * @module
 */

/**
 * Frame types: hello (the child's token), start, a task message, a result message, a death, the
 * numbers of tasks to skip.
 *
 * @example
 * ```ts
 * import { F_HELLO, F_START } from "./os_channel.ts";
 * console.assert(new Set([F_HELLO, F_START]).size === 2);
 * ```
 */
export const F_HELLO = 1, F_START = 2, F_TASKS = 3, F_RESULT = 4, F_DEATH = 5, F_CANCEL = 6;
/**
 * Frame types of a handle link (an isolated child and the thread of its parent that serves its
 * handles, see `os_handles.ts`): a call, its reply, the cancel of a call, the acknowledgement of
 * items a child's `get` returned from the batch it was sent. A call's body is
 * `[u32 call number][u8 mode][u8 signal argument][encoded [object, method, args]]`, a reply's
 * `[u32 call number][u8 outcome][encoded value or error]` (outcome 1 ok, 0 failed, 3 a call not
 * waited for failed: the value is `[object, error]`), a cancel's `[u32 call number]`, an
 * acknowledgement's `[u32 object][u32 items]`.
 *
 * @example
 * ```ts
 * import { H_ACK, H_CALL, H_CANCEL, H_REPLY } from "./os_channel.ts";
 * console.assert(new Set([H_CALL, H_REPLY, H_CANCEL, H_ACK]).size === 4);
 * ```
 */
export const H_CALL = 1, H_REPLY = 2, H_CANCEL = 3, H_ACK = 4;
/** Inbox frames only (a link thread to its isolate): the link failed; the body is why (text). */
export const H_BROKEN = 5;
/** Call modes (the mode byte): the caller blocks its thread (informational: the server answers it as any call). */
export const M_SYNC = 1;
/** Call modes: an argument held an abort signal (its index is the call's next byte). */
export const M_SIGNAL = 2;
/** Call modes: nobody waits for the reply: the server answers only a failure. */
export const M_POST = 4;
/**
 * Call modes: a `getNowait` a child sends ahead of its `get`s while it still has items sent
 * ahead (with {@link M_BATCH}): an empty queue answers an empty batch.
 */
export const M_AHEAD = 16;
/**
 * Call modes: a `get` that may be answered with more items than one (an array: the first is the
 * get's, the others are sent ahead and held for the child until it acknowledges them).
 */
export const M_BATCH = 8;
/** Bytes before a call's encoded `[object, method, args]`. */
export const CALL_HEAD = 6;

/**
 * A call's frame body (a fresh buffer): its number `n` (u32), its mode (`M_*` bits, 0 for a
 * plain call awaited), `at` (with `M_SIGNAL`: the index of the argument that held an abort
 * signal), then the encoded `[object, method, args]`.
 */
export function callFrame(n: number, body: Uint8Array, mode = 0, at = 0): Uint8Array {
  const out = new Uint8Array(CALL_HEAD + body.length);
  new DataView(out.buffer).setUint32(0, n, true);
  out[4] = mode;
  out[5] = at;
  out.set(body, CALL_HEAD);
  return out;
}
const FRAME_HEADER = 5;

/**
 * A framed, batched, duplex channel over a socket: frames sent in one tick go out in one write,
 * in order; frames received are handed to the listener one by one.
 *
 * @example
 * ```ts ignore
 * const ch = new Channel(await Deno.connect({ transport: "unix", path }));
 * ch.listen((type, body) => console.log(type, body.length));
 * ch.send(F_HELLO, new TextEncoder().encode(token));
 * ```
 */
export class Channel {
  /** Frames received before anybody listens (kept, in order, for the first listener). */
  #backlog: [number, Uint8Array][] = [];
  #onFrame: (type: number, body: Uint8Array) => void = (type, body) =>
    void this.#backlog.push([type, body]);
  /** Resolves when the peer has closed (or the socket failed): every frame before is delivered. */
  readonly closed: Promise<void>;
  readonly #conn: Deno.Conn;
  #out: Uint8Array[] = [];
  #outBytes = 0;
  /** The write in progress (it takes every frame queued meanwhile too), or null. */
  #writing: Promise<void> | null = null;
  #dead = false;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.closed = this.#read();
  }

  /**
   * Hands each frame received from now on to `onFrame` (the body is the receiver's to keep),
   * after the frames that arrived while nobody listened.
   */
  listen(onFrame: ((type: number, body: Uint8Array) => void) | undefined): void {
    if (!onFrame) {
      this.#onFrame = (type, body) => void this.#backlog.push([type, body]);
      return;
    }
    this.#onFrame = onFrame;
    for (const [type, body] of this.#backlog.splice(0)) onFrame(type, body);
  }

  /** Queues a frame; it is written with every other frame of this tick. */
  send(type: number, body: Uint8Array): void {
    if (this.#dead) return;
    const f = new Uint8Array(FRAME_HEADER + body.length);
    new DataView(f.buffer).setUint32(0, body.length, true);
    f[4] = type;
    f.set(body, FRAME_HEADER);
    this.#out.push(f);
    this.#outBytes += f.length;
    // After this tick's other frames: one write for all of them.
    this.#writing ??= Promise.resolve().then(() => this.#flush());
  }

  /** Queues bytes that are whole frames already (an outbox's), written as {@link send}'s. */
  sendFrames(frames: Uint8Array): void {
    if (this.#dead) return;
    this.#out.push(frames);
    this.#outBytes += frames.length;
    this.#writing ??= Promise.resolve().then(() => this.#flush());
  }

  /** Resolves once every frame sent so far is written (or the socket failed). */
  async drain(): Promise<void> {
    await this.#writing;
  }

  /** Lets the program end while the socket is open (a daemon child). */
  unref(): void {
    this.#conn.unref();
  }

  /** Closes the socket. */
  close(): void {
    if (this.#dead) return;
    this.#dead = true;
    try {
      this.#conn.close();
    } catch { /* closed already */ }
  }

  async #flush(): Promise<void> {
    try {
      while (this.#out.length && !this.#dead) {
        const parts = this.#out, n = this.#outBytes;
        this.#out = [];
        this.#outBytes = 0;
        let buf = parts[0];
        if (parts.length > 1) {
          buf = new Uint8Array(n);
          let at = 0;
          for (const p of parts) buf.set(p, at), at += p.length;
        }
        for (let at = 0; at < buf.length;) at += await this.#conn.write(buf.subarray(at));
      }
    } catch {
      this.close();
    } finally {
      this.#writing = null;
    }
  }

  async #read(): Promise<void> {
    // Each frame is read into a buffer of its own size: every byte is copied once, however many
    // reads a large frame takes.
    const chunk = new Uint8Array(256 << 10);
    const head = new Uint8Array(FRAME_HEADER), headView = new DataView(head.buffer);
    let headFill = 0, type = 0, body: Uint8Array | null = null, bodyFill = 0;
    try {
      for (;;) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        for (let p = 0; p < n;) {
          if (body === null) {
            const take = Math.min(FRAME_HEADER - headFill, n - p);
            head.set(chunk.subarray(p, p + take), headFill);
            headFill += take;
            p += take;
            if (headFill < FRAME_HEADER) break;
            headFill = 0;
            type = head[4];
            body = new Uint8Array(headView.getUint32(0, true));
            bodyFill = 0;
          }
          const take = Math.min(body.length - bodyFill, n - p);
          body.set(chunk.subarray(p, p + take), bodyFill);
          bodyFill += take;
          p += take;
          if (bodyFill === body.length) {
            const b = body;
            body = null;
            this.#onFrame(type, b);
          }
        }
      }
    } catch {
      // A reset socket is a closed one.
    }
    this.close();
  }
}

/**
 * Connects to the Unix socket `path`, trying again while nobody listens there yet (the server of
 * a child's handles is a thread of its parent that may still be starting), for at most `ms`.
 *
 * @example
 * ```ts ignore
 * const ch = new Channel(await connectUnix(path));
 * ```
 */
export async function connectUnix(path: string, ms = 30_000): Promise<Deno.Conn> {
  const end = performance.now() + ms;
  for (;;) {
    try {
      return await Deno.connect({ transport: "unix", path });
    } catch (e) {
      const early = e instanceof Deno.errors.NotFound || e instanceof Deno.errors.ConnectionRefused;
      if (!early || performance.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}
