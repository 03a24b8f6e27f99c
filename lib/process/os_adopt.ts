/**
 * Isolation "process": handles an isolated child meets after it started (in a pool task's
 * arguments, in a message to an isolated actor) handed to the server of its handles
 * (`os_agent.ts`), which numbers them and puts references in their place.
 *
 * Why the server does it, not the thread that sends: the server's table is the one numbering of
 * a child's objects (it also numbers the handles the child gets inside items it takes), so a
 * second numbering kept by the sender would collide with it. The sender encodes the value as
 * for a thread worker (handles as places in this program's shared memory, which the server, a
 * thread of this program, can decode); the server decodes it, which makes the real objects its
 * own, and encodes it again for the child. Each value costs one round trip to a thread of the
 * parent, paid only by values that hold handles.
 *
 * @module
 */

import { Encoder, encodeView, loads, loadsAsync, withHandleModules } from "../core/reduction.ts";
import { ProcessError } from "../core/errors.ts";
import { callFrame, Channel, connectUnix, H_CALL, H_REPLY } from "./os_channel.ts";
import { crossing } from "./os_handles.ts";

/** The server's method that re-encodes a value for its child (see {@link adopt}). */
export const ADOPT = "#adopt";

/**
 * The encoder of a sender whose values go to an isolated child by way of its server: handles of
 * the kinds served across OS processes are encoded as for a thread worker (the server swaps
 * them), the rest refused with a `SerializationError` naming it and why.
 *
 * @example
 * ```ts
 * import { adoptingEncoder } from "./os_adopt.ts";
 * import { loads } from "jsr:@denomp/multiprocessing";
 * console.assert(loads<number[]>(adoptingEncoder().encode([1, 2], "args"))[1] === 2);
 * ```
 */
export function adoptingEncoder(): Encoder {
  return new Encoder({ handles: crossing });
}

/**
 * The server's side of a call `[bytes, back]`: without `back`, `bytes` (a value encoded in this
 * program, handles as themselves) encoded again with `encoder` (the server's, which puts
 * references in the handles' place), and the modules the child's decoder needs for them; with
 * `back`, `bytes` from the child (references to objects the server serves) encoded again with
 * the real objects' own handles, for this program.
 *
 * @example
 * ```ts
 * import { adopt } from "./os_adopt.ts";
 * import { dumps, Encoder, loads } from "jsr:@denomp/multiprocessing";
 * const [bytes] = await adopt(new Encoder(), [dumps([1, "a"])]);
 * console.assert(loads<unknown[]>(bytes)[1] === "a");
 * ```
 */
export async function adopt(encoder: Encoder, args: unknown[]): Promise<[Uint8Array, string[]]> {
  const [bytes, back] = args as [Uint8Array, boolean?];
  // The modules of its handle kinds are loaded first: the server may not have met them yet.
  const value = await loadsAsync(bytes);
  const { result, modules } = withHandleModules(() =>
    (back ? encodeView(value, "value") : encoder.encode(value, "value")).slice()
  );
  return [result, modules];
}

/**
 * A thread of the parent calling the server of one isolated child's handles (its socket does
 * not keep the program alive).
 *
 * @example
 * ```ts ignore
 * const server = new ServerCalls(child.handleServer());
 * const [forChild, modules] = await server.adopt(bytes);
 * server.close();
 * ```
 */
export class ServerCalls {
  readonly #ch: Promise<Channel>;
  #next = 1;
  readonly #pending = new Map<number, [(v: unknown) => void, (e: unknown) => void]>();
  #broken: Error | null = null;

  /** Connects to the server listening at `path`. */
  constructor(path: string) {
    this.#ch = connectUnix(path).then((conn) => {
      const ch = new Channel(conn);
      ch.unref();
      ch.listen((type, body) => type === H_REPLY && this.#settle(body));
      void ch.closed.then(() => this.#fail(new ProcessError("the child's handle server ended")));
      return ch;
    });
    this.#ch.catch((e) => this.#fail(e));
  }

  /** `bytes` (encoded by {@link adoptingEncoder}) as the child must get them, and their modules. */
  async adopt(bytes: Uint8Array): Promise<[Uint8Array, string[]]> {
    return await this.#call(ADOPT, [bytes]) as [Uint8Array, string[]];
  }

  /** `bytes` from the child (holding references the server gave it) as this program reads them. */
  async back(bytes: Uint8Array): Promise<Uint8Array> {
    return (await this.#call(ADOPT, [bytes, true]) as [Uint8Array, string[]])[0];
  }

  /** Closes the socket (calls in flight fail). */
  close(): void {
    void this.#ch.then((ch) => ch.close(), () => {});
  }

  async #call(method: string, args: unknown[]): Promise<unknown> {
    if (this.#broken) throw this.#broken;
    const ch = await this.#ch;
    const n = this.#next++;
    const body = encodeView([-1, method, args], `${method}() arguments`);
    const p = new Promise((resolve, reject) => this.#pending.set(n, [resolve, reject]));
    ch.send(H_CALL, callFrame(n, body));
    return await p;
  }

  #settle(reply: Uint8Array): void {
    const n = new DataView(reply.buffer, reply.byteOffset).getUint32(0, true);
    const p = this.#pending.get(n);
    if (!p) return;
    this.#pending.delete(n);
    const value = loads(reply.subarray(5));
    if (reply[4] === 1) p[0](value);
    else p[1](value);
  }

  #fail(e: unknown): void {
    this.#broken ??= e instanceof Error ? e : new ProcessError(String(e));
    for (const [, reject] of this.#pending.values()) reject(this.#broken);
    this.#pending.clear();
  }
}
