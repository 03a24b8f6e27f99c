/**
 * Managers (Python's `multiprocessing.managers`): objects that live in a server and are used
 * from any worker, or from another program over TCP, through proxies.
 *
 * ```ts ignore
 * await using manager = await Manager();   // the server runs in its own (daemon) worker
 * const d = manager.dict<string, number>();
 * await d.set("k", 1);                     // every proxy method is a call to the server
 * ```
 *
 * **Values are copies.** A value read through a proxy is a copy in the reader's process;
 * changing it changes nothing in the server. This is Python's behaviour too, and the usual
 * surprise:
 *
 * ```ts ignore
 * const xs = await d.get("xs");   // a copy
 * xs.push(2);                     // changes the copy only
 * await d.set("xs", xs);          // assign it back: now the managed dict has it
 * ```
 *
 * To share a mutable value itself, store a proxy in the container (`await d.set("xs",
 * manager.list())`): a proxy read back out of a container still refers to the same object.
 *
 * **How it works.** A server holds the objects in a table, by id. Each process that uses a
 * server's proxies has one connection to it, shared by all its proxies: inside one program it
 * is a pair of rings in the shared heap (lib/core/ring.ts: a call is a few microseconds, no
 * `postMessage`); from another program it is a TCP socket using lib/connection/connection.ts's framing and
 * mutual HMAC challenge. Calls on one connection are multiplexed (a call waiting for a managed
 * lock does not hold up the others) and are dispatched in the order they were sent.
 *
 * A proxy is a registered handle, so it travels in `Process` args and inside queue items, pipe
 * messages and other managed containers, and works wherever it arrives. The server counts
 * references (Python's incref/decref): each proxy object holds one, a proxy in flight holds one
 * until it is rebuilt, and a client's references go when its connection drops, so an object is
 * freed once nothing refers to it.
 *
 * **Failure.** A client's connection drops when its worker dies (seen in the shared process
 * table), its program dies (the socket closes) or it calls `close()`. The server then releases
 * what that client held: its managed locks and semaphore permits (the next acquirer sees
 * `ownerDied`), its pending waits, its references. Over TCP, nothing is read before the HMAC
 * challenge passes both ways; frames have a size limit; bytes are only ever decoded as data
 * (only proxies may appear as handles, never code); a connection that breaks the protocol is
 * closed with the reason on stderr while the server goes on serving the others.
 *
 * **Python.** With `serializer: "pickle"`, what is spoken over TCP is CPython's own managers
 * protocol instead (lib/managers/python/): Python's `BaseManager`/`SyncManager` clients use the
 * server's registered classes and built-in types, and `connect()` reaches a Python manager
 * server's `dict`, `list`, `Queue`... through the usual proxies.
 *
 * @module
 */

import { optionsOf } from "../core/args.ts";
import { LIVENESS_SLICE_MS } from "../core/atomics.ts";
import { current } from "../core/context.ts";
import { alloc, heap, isAlive, nextId, release, retain } from "../core/heap.ts";
import { BUILTINS } from "./served/managed.ts";
import {
  type Caller,
  type Client,
  enterCall,
  type Forgetful,
  leaveCall,
  withCaller,
} from "./served/caller.ts";
import { ACQUIRED as SERVED_ACQUIRED, OWNER_DIED as SERVED_OWNER_DIED } from "./served/sync.ts";
import { type PyEntry, type PyHost, servePython } from "./python/server.ts";
import { pyCreateArgs, PyManagerClient, pyRequest } from "./python/client.ts";
import { EOF, Ring, TIMEOUT } from "../core/ring.ts";
import { callerModule, resolveTarget, type TargetRef } from "../core/target.ts";
import type { Connection, Serializer } from "../connection/connection.ts";
import { Pipe } from "../connection/pipe.ts";
import { DEFAULT_MAX_MESSAGE, wrapSocket } from "../connection/socket.ts";
import { answerChallenge, type AuthKey, deliverChallenge } from "../connection/auth.ts";
import type { Address } from "../connection/listener.ts";
import {
  EOFError,
  ProcessError,
  RemoteError,
  SerializationError,
  ValueError,
} from "../core/errors.ts";
import { Process } from "../process/process.ts";
import { Decoder, Encoder, registerHandle } from "../core/reduction.ts";
import type { CInput, CType, Typecode } from "../memory/sharedctypes.ts";
import type { Acquired } from "../sync/primitive.ts";
import { getIdent } from "../core/threading.ts";

export type { AuthKey } from "../connection/auth.ts";
export type { Address } from "../connection/listener.ts";

// ---------------------------------------------------------------------------------------------
// Protocol. Every message is a frame: a kind byte and a 32-bit call id, then the codec's bytes of
// its body. Requests: kind = op (CALL body [id, method, args, thread?]; CREATE [id, typeid,
// args]; INCREF/CLAIM/DECREF id; CANCEL call id; SHUTDOWN null); call id 0 asks for no reply.
// Replies: kind = status, body = the result, the error (ERR), or [name, message, stack]
// (REMOTE). Over TCP the server speaks first, after the handshake: HELLO, body = its id.
//
// The header is outside the codec so that a body that cannot be decoded (a handle whose module
// is not loaded on this side) fails that one call, not the whole connection.

const CALL = 1, CREATE = 2, INCREF = 3, CLAIM = 4, DECREF = 5, CANCEL = 6, SHUTDOWN = 7;
const HELLO = 8;
const OK = 0, ERR = 1, REMOTE = 2;
const FRAME_HEAD = 5;
/** How long a call may wait for its object's creation message (sent on another connection). */
const CREATION_WAIT_MS = 5000;
/** A server lets other work in (timers, other connections) after this many messages in a row. */
const FAIRNESS_BATCH = 256;

type ObjId = number | string;

/** The handle kind proxies register as; the only kind allowed on a TCP connection. */
const PROXY_KIND = "ManagerProxy";
const onlyProxies = (kind: string) => kind === PROXY_KIND;

// Encoding is re-entrant: a proxy's reduce sends a message of its own (an incref) while the
// message that carries the proxy is being encoded; nested encodes use their own encoder.
const localEncoder = new Encoder();
const netEncoder = new Encoder({ handles: onlyProxies });
const localDecoder = new Decoder();
const netDecoder = new Decoder({ handles: onlyProxies });
let encodeDepth = 0, decodeDepth = 0;
/** Set while encoding for, or decoding from, another program (proxies drop/ignore local parts). */
let netEncoding = 0, netDecoding = 0;
let scratch = new Uint8Array(4096);

/**
 * Encodes a frame. The bytes are valid until the next `frame()`: every transport copies them
 * before its `send` returns, and assembling them runs no user code, so one buffer serves all.
 */
function frame(kind: number, callId: number, body: unknown, network: boolean): Uint8Array {
  const nested = encodeDepth++ > 0;
  if (network) netEncoding++;
  let bytes: Uint8Array;
  try {
    const enc = nested
      ? new Encoder(network ? { handles: onlyProxies } : undefined)
      : network
      ? netEncoder
      : localEncoder;
    bytes = enc.encode(body, "message");
  } finally {
    encodeDepth--;
    if (network) netEncoding--;
  }
  const n = FRAME_HEAD + bytes.length;
  if (scratch.length < n) scratch = new Uint8Array(Math.max(n, scratch.length * 2));
  scratch[0] = kind;
  scratch[1] = callId & 0xff;
  scratch[2] = (callId >>> 8) & 0xff;
  scratch[3] = (callId >>> 16) & 0xff;
  scratch[4] = (callId >>> 24) & 0xff;
  scratch.set(bytes, FRAME_HEAD);
  return scratch.subarray(0, n);
}

/** A decoded frame; `error` when its body could not be decoded (then `body` is undefined). */
interface Frame {
  kind: number;
  callId: number;
  body: unknown;
  error?: unknown;
}

/** Decodes a frame (copying everything out: `b` may be shared memory reused right after). */
function unframe(b: Uint8Array, network: boolean): Frame {
  if (b.length < FRAME_HEAD + 1) {
    throw new SerializationError("message", `a frame of ${b.length} bytes is too short`);
  }
  const kind = b[0], callId = (b[1] | (b[2] << 8) | (b[3] << 16) | (b[4] << 24)) >>> 0;
  const nested = decodeDepth++ > 0;
  if (network) netDecoding++;
  try {
    const dec = nested
      ? new Decoder(network ? { handles: onlyProxies } : undefined)
      : network
      ? netDecoder
      : localDecoder;
    return { kind, callId, body: dec.decode(b.subarray(FRAME_HEAD)) };
  } catch (error) {
    return { kind, callId, body: undefined, error };
  } finally {
    decodeDepth--;
    if (network) netDecoding--;
  }
}

const unframeLocal = (b: Uint8Array): Frame => unframe(b, false);

function keyBytes(k: AuthKey): Uint8Array {
  if (typeof k === "string") return new TextEncoder().encode(k);
  if (k instanceof Uint8Array) return k;
  throw new TypeError(`authkey should be a Uint8Array or a string: got ${typeof k}`);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function randomId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...b)).replace(
    /[+/=]/g,
    (c) => c === "+" ? "-" : c === "/" ? "_" : "",
  );
}

// ---------------------------------------------------------------------------------------------
// Shared-heap layout of the local transport.
//
// Server block: [MAGIC, TAG, SERVER_SLOT, STATE] then the listen ring, on which a client posts
// the offset of a connection block it made. It is never freed (16 KiB per manager started): a
// proxy anywhere may still look at it, and must find "stopped" there, not someone else's data.
// Connection block: [MAGIC, CLIENT_SLOT, SERVER_CLOSED, CLIENT_CLOSED] then the request ring
// (client to server) and the reply ring; the client and the server hold a reference each.

const S_MAGIC = 0x6d677273, C_MAGIC = 0x6d677263; // "mgrs", "mgrc"
const MAGIC_W = 0, TAG_W = 1, SLOT_W = 2, STATE_W = 3;
const CLIENT_SLOT_W = 1, SERVER_CLOSED_W = 2, CLIENT_CLOSED_W = 3;
const HEAD = 64;
const LISTEN_RING = Ring.bytesFor(8 << 10);
const SERVER_BLOCK = HEAD + LISTEN_RING;
const CONN_BLOCK = (128 << 10) - 16;
const CONN_RING = ((CONN_BLOCK - HEAD) / 2) & ~7;

/** Where a local client finds a server: its block and the tag that proves it is still that one. */
interface LocalEndpoint {
  off: number;
  tag: number;
}

function serverBlockValid(ep: LocalEndpoint): boolean {
  const h = heap(), i32 = h.i32, w = ep.off >> 2;
  if (
    !Number.isInteger(ep.off) || ep.off <= 0 || ep.off % 16 ||
    ep.off + SERVER_BLOCK > h.sab.byteLength
  ) {
    return false;
  }
  return Atomics.load(i32, w + MAGIC_W) === S_MAGIC && Atomics.load(i32, w + TAG_W) === ep.tag &&
    Atomics.load(i32, w + STATE_W) === 0 && isAlive(Atomics.load(i32, w + SLOT_W));
}

// ---------------------------------------------------------------------------------------------
// Client side: transports

/** A frame from the server. */
type Incoming = Frame;

interface ClientTransport {
  /** Over TCP: values are encoded for another program. */
  readonly network: boolean;
  /** Sends one message; copies `bytes` before returning. Never throws for a broken peer. */
  send(bytes: Uint8Array): void;
  /** The next message, or EOF once the server is gone. */
  recv(): Promise<Incoming | typeof EOF>;
  close(): void;
}

/** A connection through rings in the shared heap, to a server in this program. */
class RingTransport implements ClientTransport {
  readonly network = false;
  readonly #off: number;
  readonly #i32: Int32Array;
  readonly #req: Ring;
  readonly #resp: Ring;
  readonly #serverSlot: number;
  /** The server block's header: its state says when a server that is still alive stops. */
  readonly #server: Int32Array;
  #closed = false;
  readonly #serverGone = (): boolean =>
    this.#closed || Atomics.load(this.#i32, SERVER_CLOSED_W) !== 0 ||
    Atomics.load(this.#server, STATE_W) !== 0 || !isAlive(this.#serverSlot);
  readonly #sendOpts = { broken: this.#serverGone };
  readonly #recvOpts = { eof: this.#serverGone, eofPollMs: LIVENESS_SLICE_MS };

  constructor(ep: LocalEndpoint) {
    if (!serverBlockValid(ep)) throw new EOFError("the manager's server is gone");
    const h = heap();
    this.#server = new Int32Array(h.sab, ep.off, HEAD >> 2);
    this.#serverSlot = Atomics.load(this.#server, SLOT_W);
    const off = this.#off = alloc(CONN_BLOCK);
    this.#i32 = new Int32Array(h.sab, off, HEAD >> 2);
    Ring.init(off + HEAD, CONN_RING);
    Ring.init(off + HEAD + CONN_RING, CONN_RING);
    Atomics.store(this.#i32, CLIENT_SLOT_W, h.slot);
    Atomics.store(this.#i32, MAGIC_W, C_MAGIC);
    this.#req = new Ring(off + HEAD, off);
    this.#resp = new Ring(off + HEAD + CONN_RING, off);
    retain(off); // the server's reference, taken now so the block outlives us until it attaches
    const hello = new Uint8Array(8);
    new DataView(hello.buffer).setInt32(0, off, true);
    new DataView(hello.buffer).setInt32(4, h.slot, true);
    void new Ring(ep.off + HEAD, ep.off).post(hello);
  }

  send(bytes: Uint8Array): void {
    if (this.#closed) return;
    void this.#req.post(bytes, this.#sendOpts);
  }

  recv(): Promise<Incoming | typeof EOF> {
    // No timeout is given, so TIMEOUT never comes back.
    return this.#resp.recv(unframeLocal, this.#recvOpts) as Promise<Frame | typeof EOF>;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    Atomics.store(this.#i32, CLIENT_CLOSED_W, 1);
    this.#req.wakeReaders(); // the server sees the close at once
    this.#resp.wakeReaders(); // and so does our own pending recv
    release(this.#off);
  }
}

/** A connection over TCP, to a server in any program. Connects in the background. */
class TcpTransport implements ClientTransport {
  readonly network = true;
  /** Resolves with the server's id once connected and authenticated. */
  readonly ready: Promise<string>;
  #conn: Connection<unknown> | null = null;
  #queue: Uint8Array[] = [];
  #error: Error | null = null;
  #closed = false;

  constructor(
    address: Required<Address>,
    authkey: Uint8Array,
    maxMessageSize: number,
    handshakeMs = HANDSHAKE_MS,
  ) {
    this.ready = (async () => {
      const sock = await Deno.connect({ hostname: address.hostname, port: address.port });
      const conn = wrapSocket(sock, { maxMessageSize });
      try {
        const hello = await withTimeout(handshakeMs, () => conn.close(), async () => {
          await answerChallenge(conn, authkey);
          await deliverChallenge(conn, authkey);
          // A server speaking CPython's protocol says nothing more: it waits for a request.
          return unframe(await conn.recvBytes(), true);
        }).catch((e) => {
          if (!(e instanceof EOFError) || !conn.closed) throw e;
          throw new EOFError(
            `${fmtAddress(address)} did not greet as a denomp manager within ${handshakeMs} ms ` +
              `(a Python manager, or one with serializer: "pickle"? connect with serializer: "pickle")`,
          );
        });
        if (hello.kind !== HELLO || typeof hello.body !== "string" || hello.body.length > 64) {
          throw new EOFError(`${fmtAddress(address)} did not greet as a denomp manager`);
        }
        if (this.#closed) throw new EOFError("the connection was closed");
        this.#conn = conn;
        for (const b of this.#queue) void conn.sendBytes(b).catch(() => {});
        this.#queue = [];
        return hello.body;
      } catch (e) {
        conn.close();
        throw e;
      }
    })();
    this.ready.catch((e) => (this.#error = e));
  }

  send(bytes: Uint8Array): void {
    if (this.#closed) return;
    if (this.#conn) void this.#conn.sendBytes(bytes).catch(() => {}); // a failure shows in recv
    else if (!this.#error) this.#queue.push(bytes.slice());
  }

  async recv(): Promise<Incoming | typeof EOF> {
    await this.ready;
    if (!this.#conn || this.#closed) return EOF;
    try {
      return unframe(await this.#conn.recvBytes(), true);
    } catch (e) {
      if (e instanceof EOFError || this.#closed) return EOF;
      throw e;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#conn?.close();
  }
}

/** A connection to a server running in this very isolate (`serveForever()`, or the server's own proxies). */
class LoopbackTransport implements ClientTransport {
  readonly network = false;
  #inbox: Frame[] = [];
  #wake: (() => void) | null = null;
  #closed = false;
  readonly #client: ClientRecord;

  constructor(readonly server: Server) {
    this.#client = server.attachLoopback((bytes) => {
      this.#inbox.push(unframe(bytes, false));
      this.#wake?.();
    });
  }

  send(bytes: Uint8Array): void {
    if (this.#closed || this.server.stopped) return;
    this.server.receive(this.#client, unframe(bytes, false));
  }

  async recv(): Promise<Incoming | typeof EOF> {
    while (!this.#inbox.length) {
      if (this.#closed || this.server.stopped) return EOF;
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = null;
    }
    return this.#inbox.shift()!;
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
}

// ---------------------------------------------------------------------------------------------
// Client side: one connection per (process, server), shared by every proxy of that server

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/** How a proxy reaches its server: by id, in this program (ring), or over TCP. */
interface Route {
  serverId: string;
  local?: LocalEndpoint;
  address?: Required<Address>;
  authkey?: Uint8Array;
  /** A Python manager server (CPython's protocol; its proxies stay in this process). */
  python?: true;
}

/** A process's connection to one server, as proxies use it. */
interface ManagerConn {
  readonly route: Route;
  readonly closed: boolean;
  /** An id for an object this client is about to create. */
  newId(): ObjId;
  /** Sends a message that gets no reply (create, references, cancel). */
  post(op: number, body: unknown): void;
  /** Sends a request and resolves with its reply. */
  request(op: number, body: unknown, signal?: AbortSignal): Promise<unknown>;
  /** A method call on object `id` (of type `typeid`). */
  call(
    id: ObjId,
    method: string,
    args: unknown[],
    thread?: number,
    signal?: AbortSignal,
    typeid?: string,
  ): Promise<unknown>;
  close(): void;
}

class ClientConn implements ManagerConn {
  readonly route: Route;
  readonly #t: ClientTransport;
  #pending = new Map<number, Pending>();
  #seq = 0;
  #reading = false;
  #closed = false;

  constructor(route: Route, t: ClientTransport) {
    this.route = route;
    this.#t = t;
  }

  get network(): boolean {
    return this.#t.network;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** A new object id: numbers inside a program (unique in its process tree), random strings over TCP. */
  newId(): ObjId {
    return this.#t.network ? randomId() : nextId();
  }

  /** Sends a message that gets no reply (create, references, cancel). */
  post(op: number, body: unknown): void {
    if (this.#closed) return;
    this.#t.send(frame(op, 0, body, this.#t.network));
  }

  /** Sends a request and resolves with its reply. `thread` for per-thread ownership (locks). */
  request(op: number, body: unknown, signal?: AbortSignal): Promise<unknown> {
    if (this.#closed) {
      return Promise.reject(new EOFError("the connection to the manager is closed"));
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    // Call ids wrap at 2^32 (never 0: that means "no reply").
    const callId = this.#seq = this.#seq === 0xffffffff ? 1 : this.#seq + 1;
    try {
      this.#t.send(frame(op, callId, body, this.#t.network));
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#wait(callId, signal);
  }

  /** The hot path: a method call on object `id`. */
  call(id: ObjId, method: string, args: unknown[], thread?: number, signal?: AbortSignal) {
    return this.request(
      CALL,
      thread === undefined ? [id, method, args] : [id, method, args, thread],
      signal,
    );
  }

  #wait(callId: number, signal?: AbortSignal): Promise<unknown> {
    let entry!: Pending;
    const p = new Promise<unknown>((resolve, reject) => {
      entry = { resolve, reject, signal };
      this.#pending.set(callId, entry);
    });
    if (signal) {
      // The server decides: a call that completes before the cancel arrives keeps its result.
      entry.onAbort = () => this.post(CANCEL, callId);
      signal.addEventListener("abort", entry.onAbort, { once: true });
    }
    if (!this.#reading) void this.#read();
    return p;
  }

  /** Reads replies while calls are pending, and only then: an idle connection keeps nothing alive. */
  async #read(): Promise<void> {
    this.#reading = true;
    try {
      while (this.#pending.size > 0 && !this.#closed) {
        const f = await this.#t.recv();
        if (f === EOF) {
          // A worker that was terminated is marked dead at once but stops a little later: it
          // has nobody to report to, and must not print errors from beyond the grave.
          if (!isAlive(heap().slot)) return;
          this.#fail(new EOFError("the manager's server closed the connection"));
          return;
        }
        this.#deliver(f);
      }
    } catch (e) {
      this.#fail(e);
    } finally {
      this.#reading = false;
    }
  }

  #deliver(f: Frame): void {
    const p = this.#pending.get(f.callId);
    if (!p) return;
    this.#pending.delete(f.callId);
    if (p.onAbort) p.signal!.removeEventListener("abort", p.onAbort);
    const value = f.body;
    if (f.error !== undefined) p.reject(f.error); // e.g. a handle whose module is not loaded here
    else if (f.kind === OK) p.resolve(value);
    else if (p.signal?.aborted) p.reject(p.signal.reason);
    else if (f.kind === ERR) p.reject(value);
    else if (Array.isArray(value)) {
      p.reject(new RemoteError(String(value[0]), String(value[1]), String(value[2] ?? "")));
    } else p.reject(new RemoteError("Error", String(value)));
  }

  #fail(e: unknown): void {
    this.#closed = true;
    this.#t.close();
    if (connections.get(this.route.serverId) === this) connections.delete(this.route.serverId);
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      if (p.onAbort) p.signal!.removeEventListener("abort", p.onAbort);
      p.reject(e);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#fail(new EOFError("the connection to the manager was closed"));
  }
}

/**
 * A connection to a Python manager server (`serializer: "pickle"`): denomp's proxy calls
 * translated to CPython's (lib/managers/python/). Python's `create` answers with the object's
 * id, so a proxy gets a local id at once and its calls wait for the real one.
 */
class PyClientConn implements ManagerConn {
  readonly #ids = new Map<ObjId, Promise<string>>();
  #seq = 0;

  constructor(readonly route: Route, readonly py: PyManagerClient) {}

  get closed(): boolean {
    return this.py.closed;
  }

  newId(): ObjId {
    return ++this.#seq;
  }

  post(op: number, body: unknown): void {
    if (op === CREATE) {
      const [id, typeid, args] = body as [ObjId, string, unknown[]];
      const [a, kwds] = pyCreateArgs(typeid, args);
      const ident = this.py.dispatch("create", [typeid, ...a], kwds).then((r) => {
        if (!Array.isArray(r) || typeof r[0] !== "string") {
          throw new ValueError("the Python manager's create() reply is not (id, exposed)");
        }
        return r[0];
      });
      ident.catch(() => {}); // reported by the proxy's calls
      this.#ids.set(id, ident);
    } else if (op === DECREF) {
      const ident = this.#ids.get(body as ObjId);
      this.#ids.delete(body as ObjId);
      ident?.then((i) => this.py.dispatch("decref", [i])).catch(() => {});
    }
    // INCREF and CLAIM do not come: these proxies are not sent anywhere (see the handle's reduce).
  }

  request(op: number): Promise<unknown> {
    if (op === SHUTDOWN) return this.py.dispatch("shutdown", []);
    return Promise.reject(new TypeError(`request ${op} has no Python counterpart`));
  }

  async call(
    id: ObjId,
    method: string,
    args: unknown[],
    _thread?: number,
    signal?: AbortSignal,
    typeid = "",
  ): Promise<unknown> {
    const ident = this.#ids.get(id);
    if (!ident) throw new EOFError("the proxy's object was released");
    const c = pyRequest(typeid, method, args);
    return this.py.call(await ident, c, signal);
  }

  close(): void {
    this.py.close();
  }
}

const connections = new Map<string, ManagerConn>();
/**
 * Servers this process is done with (`close()`, `shutdown()`): their proxies here fail at once
 * instead of quietly opening a new connection.
 */
const closedServers = new Set<string>();
/** Servers running in this isolate, by id: their proxies here use a loopback connection. */
const localServers = new Map<string, Server>();

/** This process's connection to a server, made on first use. */
function connectionFor(route: Route): ManagerConn {
  const c = connections.get(route.serverId);
  if (c && !c.closed) return c;
  if (route.python) throw new EOFError("the connection to the Python manager is closed");
  if (closedServers.has(route.serverId)) {
    throw new EOFError("the connection to the manager was closed (close() or shutdown())");
  }
  let t: ClientTransport;
  const here = localServers.get(route.serverId);
  if (here && !here.stopped) t = new LoopbackTransport(here);
  else if (route.local && serverBlockValid(route.local)) t = new RingTransport(route.local);
  else if (route.address) {
    const tcp = new TcpTransport(
      route.address,
      route.authkey ?? current().authkey,
      DEFAULT_MAX_MESSAGE,
    );
    t = tcp;
  } else throw new EOFError("the manager's server is gone (and has no network address)");
  const conn = new ClientConn(route, t);
  connections.set(route.serverId, conn);
  return conn;
}

// ---------------------------------------------------------------------------------------------
// Proxies

interface Core {
  route: Route;
  typeid: string;
  id: ObjId;
  conn: ManagerConn | null;
}

/** What a proxy reduces to. Local parts (`r`, `g`, `k`) are left out when sent to another program. */
interface ProxyDesc {
  /** Server id. */
  s: string;
  /** Type id. */
  t: string;
  /** Object id. */
  i: ObjId;
  /** Local endpoint: server block offset and tag. */
  r?: number;
  g?: number;
  /** TCP address. */
  a?: { hostname: string; port: number };
  /** The authkey, when it is not this process tree's default. */
  k?: Uint8Array;
}

let creatingCore: Core | null = null;
let coreOfTarget!: (p: BaseProxy) => Core;
const autoTargets = new WeakMap<object, BaseProxy>();

function coreOf(p: object): Core {
  return coreOfTarget(autoTargets.get(p) ?? (p as BaseProxy));
}

/** A call on the proxy's object; `thread` for calls whose ownership is per client-side thread. */
function invoke(
  p: BaseProxy,
  method: string,
  args: unknown[],
  thread?: number,
  signal?: AbortSignal,
): Promise<unknown> {
  const core = coreOfTarget(p);
  let conn = core.conn;
  if (!conn || conn.closed) {
    try {
      conn = core.conn = connectionFor(core.route);
    } catch (e) {
      return Promise.reject(e);
    }
  }
  return conn.call(core.id, method, args, thread, signal, core.typeid);
}

// Each live proxy object holds one reference on its server; it is dropped when the proxy is
// garbage-collected (on the connection it was taken on, if that is still open).
const proxyFinalizer = new FinalizationRegistry<{ serverId: string; id: ObjId }>((h) => {
  const c = connections.get(h.serverId);
  if (c && !c.closed) {
    try {
      c.post(DECREF, h.id);
    } catch { /* the process is going away */ }
  }
});

/**
 * The base class of every proxy: a handle on an object that lives in a manager's server. Every
 * method is a call to the server and returns a Promise. Proxies are made by a manager
 * (`manager.dict()`, `manager.create(typeid)`) and can be sent to other workers in `Process`
 * args or through queues, pipes and other managed containers.
 *
 * Values passed to and returned by a proxy are copies: mutating a value read out of a proxy
 * does not change the managed object — assign it back (see the module documentation).
 *
 * @example
 * ```ts
 * import { BaseProxy, Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * console.assert(manager.list() instanceof BaseProxy);
 * ```
 */
export class BaseProxy {
  #core: Core;

  /** Not for direct use: proxies come from a manager. */
  constructor() {
    if (!creatingCore) throw new TypeError("proxies are made by a manager (e.g. manager.dict())");
    this.#core = creatingCore;
    creatingCore = null;
  }

  static {
    coreOfTarget = (p) => p.#core;
  }

  /** A short description, like Python's repr. */
  toString(): string {
    const c = this.#core;
    return `<${this.constructor.name} of '${c.typeid}' object ${c.id} on manager ${c.route.serverId}>`;
  }
}

function makeProxy(core: Core): BaseProxy {
  const Cls = PROXY_CLASSES.get(core.typeid);
  creatingCore = core;
  try {
    if (Cls) return new Cls();
    const target = new AutoProxy();
    const p = new Proxy(target, autoHandler);
    autoTargets.set(p, target);
    return p;
  } finally {
    creatingCore = null;
  }
}

/** A new proxy holding a reference: `create` took it (the creator) or `claim` does (a rebuild). */
function adoptProxy(core: Core): BaseProxy {
  const p = makeProxy(core);
  // An AutoProxy's target lives exactly as long as the Proxy the user holds.
  proxyFinalizer.register(autoTargets.get(p) ?? p, { serverId: core.route.serverId, id: core.id });
  return p;
}

registerHandle<BaseProxy, ProxyDesc>({
  name: PROXY_KIND,
  module: import.meta.url,
  cls: BaseProxy,
  reduce(p) {
    const core = coreOf(p);
    if (core.route.python) {
      throw new TypeError(
        "a proxy of a Python manager's object cannot be sent: it works in the process that made it",
      );
    }
    // The copy in flight holds a reference until the process that rebuilds it claims it: the
    // sender may drop its own proxy before then. (On the same connection as anything the sender
    // does afterwards, so the server always sees the incref before the sender's decref.)
    try {
      let conn = core.conn;
      if (!conn || conn.closed) conn = core.conn = connectionFor(core.route);
      conn.post(INCREF, core.id);
    } catch {
      // The server is gone: the proxy still travels (as in Python), and its calls say so.
    }
    const d: ProxyDesc = { s: core.route.serverId, t: core.typeid, i: core.id };
    if (core.route.address) d.a = { ...core.route.address };
    if (netEncoding === 0) {
      if (core.route.local) (d.r = core.route.local.off), (d.g = core.route.local.tag);
      const key = core.route.authkey;
      if (key && !sameBytes(key, current().authkey)) d.k = key;
    }
    return d;
  },
  rebuild(d) {
    const route = routeOf(d);
    const core: Core = { route, typeid: d.t, id: d.i, conn: null };
    const p = adoptProxy(core);
    try {
      core.conn = connectionFor(route);
      core.conn.post(CLAIM, core.id);
    } catch {
      // The server is gone: the proxy still arrives, and its calls say so.
    }
    return p;
  },
});

/** Checks a received descriptor (it may come from another program) and makes its route. */
function routeOf(d: unknown): Route {
  const bad = (why: string) =>
    new SerializationError("proxy", `malformed proxy descriptor: ${why}`);
  if (d === null || typeof d !== "object") throw bad("not an object");
  const o = d as Record<string, unknown>;
  if (typeof o.s !== "string" || o.s.length > 64) throw bad("server id");
  if (typeof o.t !== "string" || o.t.length > 256) throw bad("type id");
  if (
    !(typeof o.i === "number" && Number.isSafeInteger(o.i)) &&
    !(typeof o.i === "string" && o.i.length <= 64)
  ) {
    throw bad("object id");
  }
  const route: Route = { serverId: o.s };
  if (o.a !== undefined) {
    const a = o.a as Record<string, unknown>;
    if (
      a === null || typeof a !== "object" || typeof a.hostname !== "string" ||
      typeof a.port !== "number" || !Number.isInteger(a.port) || a.port < 0 || a.port > 65535
    ) throw bad("address");
    route.address = { hostname: a.hostname, port: a.port };
  }
  // Local parts only from this program (another program's heap offsets mean nothing here).
  if (netDecoding === 0) {
    if (typeof o.r === "number" && typeof o.g === "number") route.local = { off: o.r, tag: o.g };
    if (o.k instanceof Uint8Array) route.authkey = o.k;
  }
  // A connection already open to that server knows the best way there (e.g. the address we
  // connected to, rather than the 0.0.0.0 the server bound).
  const known = connections.get(route.serverId);
  if (known && !known.closed) {
    if (known.route.address) route.address = known.route.address;
    route.authkey ??= known.route.authkey;
    route.local ??= known.route.local;
  }
  return route;
}

/**
 * The proxy of a registered class: any method name becomes a call to the server (which refuses
 * names that are not exposed with a `RemoteError`).
 */
class AutoProxy extends BaseProxy {}

const NOT_METHODS = new Set(["then", "toJSON", "catch", "finally"]);
const autoMethods = new WeakMap<object, Map<string, (...args: unknown[]) => Promise<unknown>>>();

const autoHandler: ProxyHandler<AutoProxy> = {
  get(target, prop) {
    if (typeof prop === "symbol" || prop in target) {
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" && prop !== "constructor" ? v.bind(target) : v;
    }
    // `then` must stay undefined, or `await proxy` would call the server.
    if (NOT_METHODS.has(prop)) return undefined;
    let methods = autoMethods.get(target);
    if (!methods) autoMethods.set(target, methods = new Map());
    let m = methods.get(prop);
    if (!m) methods.set(prop, m = (...args: unknown[]) => invoke(target, prop, args));
    return m;
  },
};

/**
 * The async view of a registered class `T`: each public method (not starting with `_`) becomes
 * a method returning a Promise of its result.
 *
 * @example
 * ```ts ignore
 * export class Counter {
 *   n = 0;
 *   inc(by: number) {
 *     return (this.n += by);
 *   }
 * }
 * const c: Proxied<Counter> = manager.create<Counter>("Counter");
 * const n: number = await c.inc(1);
 * ```
 */
export type Proxied<T> =
  & BaseProxy
  & {
    [
      K in keyof T as K extends `_${string}` ? never
        : T[K] extends (...args: never[]) => unknown ? K
        : never
    ]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;
  };

/**
 * The type of the factory method `BaseManager.register(typeid, C)` adds to a manager class, for
 * declaring it in TypeScript: `declare Counter: ProxyFactory<typeof Counter>;`.
 *
 * @example
 * ```ts ignore
 * class MyManager extends BaseManager {
 *   declare Counter: ProxyFactory<typeof Counter>;
 * }
 * MyManager.register("Counter", Counter);
 * ```
 */
export type ProxyFactory<C extends abstract new (...args: never[]) => unknown> = (
  ...args: ConstructorParameters<C>
) => Proxied<InstanceType<C>>;

// --- typed proxies of the built-in types ---------------------------------------------------

/**
 * Options of a proxy's blocking calls: `block: false` fails at once, `timeout` in ms, `signal`
 * cancels the wait in the server.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const q = manager.Queue<number>();
 * await q.get({ timeout: 10 }).catch((e) => console.assert(e.name === "Empty"));
 * ```
 */
export interface ProxyWaitOptions {
  /** `false`: do not wait (Python's `block=False`). */
  block?: boolean;
  /** Give up after this many milliseconds. */
  timeout?: number;
  /**
   * Cancels the wait in the server. A call that completed before the cancellation arrived
   * keeps its result.
   */
  signal?: AbortSignal;
}

/** The wait options to send to the server; `call` names the method for a wrong-shape error. */
function waitArgs(
  o: ProxyWaitOptions | undefined,
  call: string,
): { block?: boolean; timeout?: number } | undefined {
  if (o === undefined || o === null) return undefined;
  const method = call.slice(call.indexOf(".") + 1);
  optionsOf(
    o,
    call,
    `${method}({ timeout: 200 })` +
      (typeof o === "boolean" ? ` or ${method}({ block: ${o} })` : ""),
  );
  const out: { block?: boolean; timeout?: number } = {};
  if (o.block !== undefined) out.block = o.block;
  if (o.timeout !== undefined) out.timeout = o.timeout;
  return out;
}

/**
 * A proxy of a managed `dict` (`manager.dict()`): an insertion-ordered map whose keys may be of
 * any kind that can be sent (arrays work as Python's tuple keys).
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const d = manager.dict<string, number>();
 * await d.set("a", 1);
 * console.assert((await d.get("a")) === 1 && (await d.len()) === 1);
 * ```
 */
export class DictProxy<K = unknown, V = unknown> extends BaseProxy {
  /** The value of `key`, or `dflt` (default `undefined`) when it is missing. */
  get(key: K): Promise<V | undefined>;
  /** The value of `key`, or `dflt` when it is missing. */
  get<D>(key: K, dflt: D): Promise<V | D>;
  get(key: K, ...dflt: unknown[]): Promise<unknown> {
    return invoke(this, "get", [key, ...dflt]);
  }
  /** Sets `key` to (a copy of) `value`. */
  set(key: K, value: V): Promise<void> {
    return invoke(this, "set", [key, value]) as Promise<void>;
  }
  /** Deletes `key`; true if it was there. */
  delete(key: K): Promise<boolean> {
    return invoke(this, "delete", [key]) as Promise<boolean>;
  }
  /** Whether `key` is there (Python's `key in d`). */
  has(key: K): Promise<boolean> {
    return invoke(this, "has", [key]) as Promise<boolean>;
  }
  /** The keys, in insertion order. */
  keys(): Promise<K[]> {
    return invoke(this, "keys", []) as Promise<K[]>;
  }
  /** The values, in insertion order. */
  values(): Promise<V[]> {
    return invoke(this, "values", []) as Promise<V[]>;
  }
  /** The `[key, value]` pairs, in insertion order. */
  items(): Promise<[K, V][]> {
    return invoke(this, "items", []) as Promise<[K, V][]>;
  }
  /** Sets every pair of `other`: a Map, `[key, value]` pairs, a plain object or another dict proxy. */
  update(other: Map<K, V> | [K, V][] | Record<string, V> | DictProxy<K, V>): Promise<void> {
    return invoke(this, "update", [other]) as Promise<void>;
  }
  /** Removes `key` and returns its value; a missing key rejects with an error named `KeyError`. */
  pop(key: K): Promise<V>;
  /** Removes `key` and returns its value, or `dflt` when it is missing. */
  pop<D>(key: K, dflt: D): Promise<V | D>;
  pop(key: K, ...dflt: unknown[]): Promise<unknown> {
    return invoke(this, "pop", [key, ...dflt]);
  }
  /** The value of `key`; when it is missing, sets it to `dflt` first. */
  setdefault(key: K, dflt: V): Promise<V> {
    return invoke(this, "setdefault", [key, dflt]) as Promise<V>;
  }
  /** Removes everything. */
  clear(): Promise<void> {
    return invoke(this, "clear", []) as Promise<void>;
  }
  /** The number of keys (Python's `len(d)`). */
  len(): Promise<number> {
    return invoke(this, "len", []) as Promise<number>;
  }
  /** A copy of the whole dict. */
  copy(): Promise<Map<K, V>> {
    return invoke(this, "copy", []) as Promise<Map<K, V>>;
  }
}

/**
 * A proxy of a managed `list` (`manager.list()`), with Python's indexing: negative indices count
 * from the end, and an index out of range rejects with an error named `IndexError`.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const l = manager.list<number>([3, 1]);
 * await l.append(2);
 * await l.sort();
 * console.assert((await l.slice()).join() === "1,2,3" && (await l.get(-1)) === 3);
 * ```
 */
export class ListProxy<T = unknown> extends BaseProxy {
  /** The item at `i`. */
  get(i: number): Promise<T> {
    return invoke(this, "get", [i]) as Promise<T>;
  }
  /** Sets the item at `i`. */
  set(i: number, value: T): Promise<void> {
    return invoke(this, "set", [i, value]) as Promise<void>;
  }
  /** Appends `value`. */
  append(value: T): Promise<void> {
    return invoke(this, "append", [value]) as Promise<void>;
  }
  /** Appends every item of `values` (an array, or another list proxy). */
  extend(values: T[] | ListProxy<T>): Promise<void> {
    return invoke(this, "extend", [values]) as Promise<void>;
  }
  /** Inserts `value` before index `i`. */
  insert(i: number, value: T): Promise<void> {
    return invoke(this, "insert", [i, value]) as Promise<void>;
  }
  /** Removes and returns the item at `i` (default: the last). */
  pop(i?: number): Promise<T> {
    return invoke(this, "pop", i === undefined ? [] : [i]) as Promise<T>;
  }
  /** Removes the first item equal to `value` (`ValueError` if there is none). */
  remove(value: T): Promise<void> {
    return invoke(this, "remove", [value]) as Promise<void>;
  }
  /** The index of the first item equal to `value` in `[start, end)` (`ValueError` if none). */
  index(value: T, start?: number, end?: number): Promise<number> {
    const args: unknown[] = [value];
    if (start !== undefined || end !== undefined) args.push(start ?? 0);
    if (end !== undefined) args.push(end);
    return invoke(this, "index", args) as Promise<number>;
  }
  /** How many items equal `value`. */
  count(value: T): Promise<number> {
    return invoke(this, "count", [value]) as Promise<number>;
  }
  /** Sorts in place as Python does (numbers, strings, arrays element-wise; mixed kinds reject). */
  sort(options?: { reverse?: boolean }): Promise<void> {
    return invoke(this, "sort", options ? [{ reverse: options.reverse }] : []) as Promise<void>;
  }
  /** Reverses in place. */
  reverse(): Promise<void> {
    return invoke(this, "reverse", []) as Promise<void>;
  }
  /** The number of items. */
  len(): Promise<number> {
    return invoke(this, "len", []) as Promise<number>;
  }
  /** A copy of the items from `start` to `end` (as `Array.prototype.slice`; all by default). */
  slice(start?: number, end?: number): Promise<T[]> {
    const args = end !== undefined ? [start ?? 0, end] : start !== undefined ? [start] : [];
    return invoke(this, "slice", args) as Promise<T[]>;
  }
}

/**
 * A proxy of a managed `Namespace` (`manager.Namespace()`): named attributes, read and written
 * with `get`/`set` (Python's `ns.x` and `ns.x = v`).
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const ns = manager.Namespace<{ x: number }>({ x: 1 });
 * await ns.set("x", 2);
 * console.assert((await ns.get("x")) === 2);
 * ```
 */
export class NamespaceProxy<T extends Record<string, unknown> = Record<string, unknown>>
  extends BaseProxy {
  /** The attribute `name` (`undefined` when it is not set). */
  get<N extends keyof T & string>(name: N): Promise<T[N]> {
    return invoke(this, "get", [name]) as Promise<T[N]>;
  }
  /** Sets the attribute `name`. */
  set<N extends keyof T & string>(name: N, value: T[N]): Promise<void> {
    return invoke(this, "set", [name, value]) as Promise<void>;
  }
  /** Deletes the attribute `name`; true if it was set. */
  delete(name: keyof T & string): Promise<boolean> {
    return invoke(this, "delete", [name]) as Promise<boolean>;
  }
  /** Whether the attribute `name` is set. */
  has(name: keyof T & string): Promise<boolean> {
    return invoke(this, "has", [name]) as Promise<boolean>;
  }
  /** The attribute names. */
  keys(): Promise<(keyof T & string)[]> {
    return invoke(this, "keys", []) as Promise<(keyof T & string)[]>;
  }
  /** A copy of all attributes as a plain object. */
  toObject(): Promise<T> {
    return invoke(this, "toObject", []) as Promise<T>;
  }
}

/**
 * A proxy of a managed `Queue` (`manager.Queue()`, Python's `queue.Queue` in the server).
 * `get` rejects with `Empty` and `put` with `Full`, as a local queue's do.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const q = manager.Queue<string>();
 * await q.put("job");
 * console.assert((await q.get({ timeout: 1000 })) === "job");
 * ```
 */
export class QueueProxy<T = unknown> extends BaseProxy {
  /** Puts `item`, waiting for room when the queue is bounded and full (`Full` on timeout). */
  put(item: T, options?: ProxyWaitOptions): Promise<void> {
    return invoke(
      this,
      "put",
      [item, waitArgs(options, "QueueProxy.put")],
      undefined,
      options?.signal,
    ) as Promise<
      void
    >;
  }
  /** Gets an item, waiting for one (`Empty` on timeout or `block: false`). */
  get(options?: ProxyWaitOptions): Promise<T> {
    const a = waitArgs(options, "QueueProxy.get");
    return invoke(this, "get", a ? [a] : [], undefined, options?.signal) as Promise<T>;
  }
  /** `put(item, { block: false })`. */
  putNowait(item: T): Promise<void> {
    return invoke(this, "putNowait", [item]) as Promise<void>;
  }
  /** `get({ block: false })`. */
  getNowait(): Promise<T> {
    return invoke(this, "getNowait", []) as Promise<T>;
  }
  /** The number of items. */
  qsize(): Promise<number> {
    return invoke(this, "qsize", []) as Promise<number>;
  }
  /** Whether it is empty. */
  empty(): Promise<boolean> {
    return invoke(this, "empty", []) as Promise<boolean>;
  }
  /** Whether it is full. */
  full(): Promise<boolean> {
    return invoke(this, "full", []) as Promise<boolean>;
  }
}

/**
 * A proxy of a managed `JoinableQueue` (`manager.JoinableQueue()`).
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const q = manager.JoinableQueue<number>();
 * await q.put(1);
 * await q.get();
 * await q.taskDone();
 * await q.join(); // every item was taskDone()
 * ```
 */
export class JoinableQueueProxy<T = unknown> extends QueueProxy<T> {
  /** Marks one item as processed (`ValueError` when called more times than items were put). */
  taskDone(): Promise<void> {
    return invoke(this, "taskDone", []) as Promise<void>;
  }
  /** Resolves once every item put has been marked done. */
  join(options?: { signal?: AbortSignal }): Promise<void> {
    const { signal } = optionsOf(options, "JoinableQueueProxy.join", "join({ signal })");
    return invoke(this, "join", [], undefined, signal) as Promise<void>;
  }
}

/**
 * What a managed lock's successful `acquire()` resolves to: `release()` releases it in the
 * server; so does leaving a `using` / `await using` scope.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const lock = manager.Lock();
 * const held = await lock.acquire();
 * console.assert(held.ownerDied === false);
 * await held.release();
 * ```
 */
export interface ManagedAcquired extends Acquired, AsyncDisposable {
  /** Releases what was acquired (a call to the server). */
  release(): Promise<void>;
}

class ProxyHeld implements ManagedAcquired {
  readonly #release: () => Promise<void>;
  readonly ownerDied: boolean;
  constructor(release: () => Promise<void>, ownerDied: boolean) {
    this.#release = release;
    this.ownerDied = ownerDied;
  }
  release(): Promise<void> {
    return this.#release();
  }
  [Symbol.dispose](): void {
    // `using` cannot wait: the release is sent now (ahead of anything this process sends next).
    this.#release().catch((e) => console.error("denomp: releasing a managed lock failed:", e));
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.#release();
  }
}

function acquired(p: { release(): Promise<void> }, r: unknown): ManagedAcquired | false {
  if (r !== SERVED_ACQUIRED && r !== SERVED_OWNER_DIED) return false;
  return new ProxyHeld(() => p.release(), r === SERVED_OWNER_DIED);
}

/**
 * A proxy of a managed `Lock` (`manager.Lock()`). If the client holding it dies or
 * disconnects, the server releases it and the next `acquire` resolves with `ownerDied: true`.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const lock = manager.Lock();
 * {
 *   await using _ = await lock.acquire();
 *   console.assert(await lock.locked());
 * }
 * ```
 */
export class LockProxy extends BaseProxy {
  /** Acquires it; resolves to a guard whose dispose releases it. */
  acquire(
    options?: ProxyWaitOptions & { block?: true; timeout?: undefined },
  ): Promise<ManagedAcquired>;
  /** Acquires it; `false` on a `block: false` miss or a timeout. */
  acquire(options: ProxyWaitOptions): Promise<ManagedAcquired | false>;
  acquire(options?: ProxyWaitOptions): Promise<ManagedAcquired | false> {
    const a = waitArgs(options, `${this.constructor.name}.acquire`);
    return invoke(this, "acquire", a ? [a] : [], getIdent(), options?.signal).then((r) =>
      acquired(this, r)
    );
  }
  /** Releases it (`ValueError` if it is not held). */
  release(): Promise<void> {
    return invoke(this, "release", [], getIdent()) as Promise<void>;
  }
  /** Whether someone holds it. */
  locked(): Promise<boolean> {
    return invoke(this, "locked", []) as Promise<boolean>;
  }
}

/**
 * A proxy of a managed `RLock` (`manager.RLock()`): owned by one thread of one client, which may
 * acquire it again.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const lock = manager.RLock();
 * await lock.acquire();
 * await lock.acquire();
 * await lock.release();
 * await lock.release();
 * ```
 */
export class RLockProxy extends LockProxy {}

/**
 * A proxy of a managed `Semaphore` (`manager.Semaphore(n)`). Permits held by a client that dies
 * or disconnects are given back.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const sem = manager.Semaphore(2);
 * await sem.acquire();
 * console.assert((await sem.getValue()) === 1);
 * await sem.release();
 * ```
 */
export class SemaphoreProxy extends BaseProxy {
  /** Takes a permit, waiting for one. */
  acquire(
    options?: ProxyWaitOptions & { block?: true; timeout?: undefined },
  ): Promise<ManagedAcquired>;
  /** Takes a permit; `false` on a `block: false` miss or a timeout. */
  acquire(options: ProxyWaitOptions): Promise<ManagedAcquired | false>;
  acquire(options?: ProxyWaitOptions): Promise<ManagedAcquired | false> {
    const a = waitArgs(options, `${this.constructor.name}.acquire`);
    return invoke(this, "acquire", a ? [a] : [], undefined, options?.signal).then((r) =>
      acquired({ release: () => this.release() }, r)
    );
  }
  /** Gives back `n` permits (default 1). */
  release(n?: number): Promise<void> {
    return invoke(this, "release", n === undefined ? [] : [n]) as Promise<void>;
  }
  /** The number of permits available. */
  getValue(): Promise<number> {
    return invoke(this, "getValue", []) as Promise<number>;
  }
  /** Whether no permit is available. */
  locked(): Promise<boolean> {
    return invoke(this, "locked", []) as Promise<boolean>;
  }
}

/**
 * A proxy of a managed `BoundedSemaphore`: releasing past the initial value rejects with
 * `ValueError`.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const sem = manager.BoundedSemaphore(1);
 * await sem.release().catch((e) => console.assert(e.name === "ValueError"));
 * ```
 */
export class BoundedSemaphoreProxy extends SemaphoreProxy {}

/**
 * A proxy of a managed `Condition` (`manager.Condition(lock?)`, by default over a new managed
 * RLock). `waitFor` runs its predicate here, in the caller, as Python's proxy does.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const cond = manager.Condition();
 * await cond.acquire();
 * await cond.notifyAll();
 * console.assert((await cond.wait(10)) === false); // nobody notified within 10 ms
 * await cond.release();
 * ```
 */
export class ConditionProxy extends BaseProxy {
  /** Acquires the underlying lock. */
  acquire(
    options?: ProxyWaitOptions & { block?: true; timeout?: undefined },
  ): Promise<ManagedAcquired>;
  /** Acquires the underlying lock; `false` on a miss or timeout. */
  acquire(options: ProxyWaitOptions): Promise<ManagedAcquired | false>;
  acquire(options?: ProxyWaitOptions): Promise<ManagedAcquired | false> {
    const a = waitArgs(options, `${this.constructor.name}.acquire`);
    return invoke(this, "acquire", a ? [a] : [], getIdent(), options?.signal).then((r) =>
      acquired(this, r)
    );
  }
  /** Releases the underlying lock. */
  release(): Promise<void> {
    return invoke(this, "release", [], getIdent()) as Promise<void>;
  }
  /**
   * Releases the lock, waits until notified or `timeout` ms passed, re-acquires the lock;
   * true unless it timed out. Calling it without holding the lock rejects with `ValueError`.
   */
  wait(timeout?: number | { timeout?: number; signal?: AbortSignal }): Promise<boolean> {
    const o = typeof timeout === "object" && timeout !== null ? timeout : { timeout };
    const args = o.timeout === undefined ? [] : [o.timeout];
    return invoke(this, "wait", args, getIdent(), o.signal) as Promise<boolean>;
  }
  /** Waits until `predicate()` is truthy (checked here after each notification); returns its last value. */
  async waitFor<R>(predicate: () => R | Promise<R>, timeout?: number): Promise<R> {
    const end = timeout === undefined ? Infinity : performance.now() + timeout;
    let r = await predicate();
    while (!r) {
      const left = end - performance.now();
      if (left <= 0) break;
      await this.wait(left === Infinity ? undefined : left);
      r = await predicate();
    }
    return r;
  }
  /** Wakes up to `n` waiters (default 1). */
  notify(n?: number): Promise<void> {
    return invoke(this, "notify", n === undefined ? [] : [n], getIdent()) as Promise<void>;
  }
  /** Wakes every waiter. */
  notifyAll(): Promise<void> {
    return invoke(this, "notifyAll", [], getIdent()) as Promise<void>;
  }
}

/**
 * A proxy of a managed `Event` (`manager.Event()`).
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const ev = manager.Event();
 * await ev.set();
 * console.assert(await ev.wait(100));
 * ```
 */
export class EventProxy extends BaseProxy {
  /** Whether the flag is set. */
  isSet(): Promise<boolean> {
    return invoke(this, "isSet", []) as Promise<boolean>;
  }
  /** Sets the flag and wakes every waiter. */
  set(): Promise<void> {
    return invoke(this, "set", []) as Promise<void>;
  }
  /** Clears the flag. */
  clear(): Promise<void> {
    return invoke(this, "clear", []) as Promise<void>;
  }
  /** Waits until the flag is set or `timeout` ms passed; returns the flag. */
  wait(timeout?: number | { timeout?: number; signal?: AbortSignal }): Promise<boolean> {
    const o = typeof timeout === "object" && timeout !== null ? timeout : { timeout };
    return invoke(
      this,
      "wait",
      o.timeout === undefined ? [] : [o.timeout],
      undefined,
      o.signal,
    ) as Promise<
      boolean
    >;
  }
}

/**
 * A proxy of a managed `Barrier` (`manager.Barrier(parties, { timeout? })`). A party whose client
 * dies while waiting breaks the barrier (the others get `BrokenBarrierError`).
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const b = manager.Barrier(1);
 * console.assert((await b.wait()) === 0 && (await b.parties) === 1);
 * ```
 */
export class BarrierProxy extends BaseProxy {
  /** Waits for all parties; resolves with this party's arrival index (`BrokenBarrierError` if broken). */
  wait(timeout?: number | { timeout?: number; signal?: AbortSignal }): Promise<number> {
    const o = typeof timeout === "object" && timeout !== null ? timeout : { timeout };
    return invoke(
      this,
      "wait",
      o.timeout === undefined ? [] : [o.timeout],
      undefined,
      o.signal,
    ) as Promise<
      number
    >;
  }
  /** Breaks the waits in progress and makes the barrier usable again. */
  reset(): Promise<void> {
    return invoke(this, "reset", []) as Promise<void>;
  }
  /** Breaks the barrier. */
  abort(): Promise<void> {
    return invoke(this, "abort", []) as Promise<void>;
  }
  /** The number of parties (a call to the server). */
  get parties(): Promise<number> {
    return invoke(this, "parties", []) as Promise<number>;
  }
  /** How many parties are waiting (a call to the server). */
  get nWaiting(): Promise<number> {
    return invoke(this, "nWaiting", []) as Promise<number>;
  }
  /** Whether the barrier is broken (a call to the server). */
  get broken(): Promise<boolean> {
    return invoke(this, "broken", []) as Promise<boolean>;
  }
}

/**
 * A proxy of a managed `Value` (`manager.Value(typecode, value)`), checked by typecode as a
 * shared `Value` is.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const v = manager.Value("i", 1);
 * await v.set((await v.get()) + 1); // not atomic: hold a managed Lock around it when shared
 * ```
 */
export class ValueProxy<T extends Typecode = Typecode> extends BaseProxy {
  /** The value. */
  get(): Promise<CType<T>> {
    return invoke(this, "get", []) as Promise<CType<T>>;
  }
  /** Sets the value. */
  set(value: CInput<T>): Promise<void> {
    return invoke(this, "set", [value]) as Promise<void>;
  }
}

/**
 * A proxy of a managed `Array` (`manager.Array(typecode, values)`).
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const a = manager.Array("d", [1, 2]);
 * await a.set(0, 3.5);
 * console.assert((await a.slice()).join() === "3.5,2");
 * ```
 */
export class ArrayProxy<T extends Typecode = Typecode> extends BaseProxy {
  /** The number of elements. */
  len(): Promise<number> {
    return invoke(this, "len", []) as Promise<number>;
  }
  /** The element at `i` (negative counts from the end). */
  get(i: number): Promise<CType<T>> {
    return invoke(this, "get", [i]) as Promise<CType<T>>;
  }
  /** Sets the element at `i`. */
  set(i: number, value: CInput<T>): Promise<void> {
    return invoke(this, "set", [i, value]) as Promise<void>;
  }
  /** The elements from `start` to `end` (all by default). */
  slice(start?: number, end?: number): Promise<CType<T>[]> {
    const args = end !== undefined ? [start ?? 0, end] : start !== undefined ? [start] : [];
    return invoke(this, "slice", args) as Promise<CType<T>[]>;
  }
}

const PROXY_CLASSES = new Map<string, new () => BaseProxy>([
  ["dict", DictProxy],
  ["list", ListProxy],
  ["Namespace", NamespaceProxy],
  ["Queue", QueueProxy],
  ["JoinableQueue", JoinableQueueProxy],
  ["Lock", LockProxy],
  ["RLock", RLockProxy],
  ["Semaphore", SemaphoreProxy],
  ["BoundedSemaphore", BoundedSemaphoreProxy],
  ["Condition", ConditionProxy],
  ["Event", EventProxy],
  ["Barrier", BarrierProxy],
  ["Value", ValueProxy],
  ["Array", ArrayProxy],
]);

// ---------------------------------------------------------------------------------------------
// Server

/** A registered type as the server uses it: how to make one, and what may be called. */
interface Served {
  make: (...args: never[]) => object;
  exposed?: ReadonlySet<string>;
  builtin: boolean;
  isClass: boolean;
}

interface Entry {
  typeid: string;
  obj: object | null;
  /** Why creating it failed; calls then report this. */
  failed: [string, string, string] | null;
  exposed: ReadonlySet<string>;
  builtin: boolean;
  refs: number;
}

let clientCounter = 0;

/** One client connection as the server sees it. */
class ClientRecord implements Client {
  readonly id = ++clientCounter;
  dropped = false;
  readonly #gone = new AbortController();
  /** References this client holds, by object id. */
  readonly held = new Map<ObjId, number>();
  readonly touched = new Set<Forgetful>();
  /** Abort controllers of its calls that wait, by call id. */
  readonly calls = new Map<number, AbortController>();
  constructor(
    readonly name: string,
    readonly network: boolean,
    readonly send: (bytes: Uint8Array) => void,
  ) {}
  touch(obj: Forgetful): void {
    this.touched.add(obj);
  }
  get gone(): AbortSignal {
    return this.#gone.signal;
  }
  /** Marks it dropped: aborts its calls' waits. */
  drop(reason: Error): void {
    this.dropped = true;
    this.#gone.abort(reason);
    for (const c of this.calls.values()) c.abort(reason);
    this.calls.clear();
  }
}

/** The record of one served call (see `Caller` in _managed.ts). */
class CallContext implements Caller {
  constructor(
    readonly server: Server,
    public client: ClientRecord,
    public thread: number,
    readonly callId: number,
  ) {}
  signal(): AbortSignal {
    let c = this.client.calls.get(this.callId);
    if (!c) {
      c = new AbortController();
      if (this.client.dropped) c.abort(new EOFError("the client is gone"));
      this.client.calls.set(this.callId, c);
    }
    return c.signal;
  }
  resolve(value: unknown): unknown {
    return this.server.referent(value);
  }
}

/** What a server process is told at start. */
interface ServerConfig {
  name: string;
  serverId: string;
  address: Address | null;
  authkey: Uint8Array;
  maxMessageSize: number;
  handshakeTimeout: number;
  /** What TCP clients speak: denomp's protocol, or CPython's managers protocol ("pickle"). */
  serializer: Serializer;
  registry: [string, TargetRef | null, string[] | null][];
}

const HANDSHAKE_MS = 20_000;

function fmtAddress(a: { hostname: string; port: number }): string {
  return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}

async function withTimeout<R>(ms: number, onExpire: () => void, f: () => Promise<R>): Promise<R> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let expired = false;
  try {
    return await Promise.race([
      f(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          expired = true;
          onExpire();
          reject(new EOFError(`the handshake did not finish within ${ms} ms`));
        }, ms);
      }),
    ]);
  } catch (e) {
    if (expired) throw new EOFError(`the handshake did not finish within ${ms} ms`);
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/** Public methods of `obj`: functions on it or its prototypes (not Object's), not starting with `_`. */
function publicMethods(obj: object): Set<string> {
  const names = new Set<string>();
  for (let o: object | null = obj; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const k of Object.getOwnPropertyNames(o)) {
      if (k === "constructor" || k.startsWith("_") || names.has(k)) continue;
      const d = Object.getOwnPropertyDescriptor(o, k);
      if (d && typeof d.value === "function") names.add(k);
    }
  }
  return names;
}

function isClass(f: unknown): boolean {
  return typeof f === "function" && /^class[\s{]/.test(Function.prototype.toString.call(f));
}

function errorParts(e: unknown): [string, string, string] {
  if (e instanceof Error) return [e.name, e.message, e.stack ?? ""];
  return ["Error", String(e), ""];
}

/**
 * The server: the object table, the clients, and the loops that read their requests. Runs in
 * the manager's worker (`start()`), or in the caller's isolate (`serveForever()`).
 */
class Server implements PyHost {
  readonly config: ServerConfig;
  readonly #registry: Map<string, Served>;
  readonly #objects = new Map<ObjId, Entry>();
  /** Calls and claims waiting for an object whose creation has not arrived yet. */
  readonly #unborn = new Map<
    ObjId,
    { queue: (() => void)[]; timer: ReturnType<typeof setTimeout> }
  >();
  readonly #clients = new Set<ClientRecord>();
  readonly #block: number;
  readonly #i32: Int32Array;
  readonly tag: number;
  #listener: Deno.TcpListener | null = null;
  #sockets = new Set<Connection<unknown>>();
  #ringConns = new Set<{ i32: Int32Array; req: Ring; resp: Ring; off: number }>();
  stopped = false;
  /** Resolves once stopped and every loop of it has ended (nothing of it is left pending). */
  readonly done: Promise<void>;
  #finish!: () => void;
  readonly #tasks = new Set<Promise<void>>();

  constructor(config: ServerConfig, registry: Map<string, Served>) {
    this.config = config;
    this.#registry = registry;
    this.done = new Promise((r) => (this.#finish = r));
    const h = heap();
    this.#block = alloc(SERVER_BLOCK);
    this.#i32 = new Int32Array(h.sab, this.#block, HEAD >> 2);
    // A stale proxy (its server gone, the block reused) must not reach a new server: it checks this.
    this.tag = crypto.getRandomValues(new Int32Array(1))[0] | 1;
    Ring.init(this.#block + HEAD, LISTEN_RING);
    Atomics.store(this.#i32, TAG_W, this.tag);
    Atomics.store(this.#i32, SLOT_W, h.slot);
    Atomics.store(this.#i32, MAGIC_W, S_MAGIC);
    localServers.set(config.serverId, this);
    this.#track(this.#acceptLocal());
  }

  #track(p: Promise<void>): void {
    this.#tasks.add(p);
    void p.finally(() => this.#tasks.delete(p));
  }

  /** Where clients in this program find it. */
  get local(): LocalEndpoint {
    return { off: this.#block, tag: this.tag };
  }

  /** The TCP address, once listening. */
  get address(): Required<Address> | null {
    if (!this.#listener) return null;
    const a = this.#listener.addr as Deno.NetAddr;
    return { hostname: a.hostname, port: a.port };
  }

  // --- connections ---------------------------------------------------------------------------

  async #acceptLocal(): Promise<void> {
    const listen = new Ring(this.#block + HEAD);
    const eof = () => Atomics.load(this.#i32, STATE_W) !== 0;
    const decode = (b: Uint8Array) => [
      b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24),
      b[4] | (b[5] << 8) | (b[6] << 16) | (b[7] << 24),
    ];
    for (;;) {
      const m = await listen.recv(decode, { eof, eofPollMs: LIVENESS_SLICE_MS });
      if (m === EOF || this.stopped) break;
      const [off, slot] = m as number[];
      this.#track(this.#serveRing(off, slot));
    }
    this.#stop();
  }

  async #serveRing(off: number, slot: number): Promise<void> {
    const i32 = new Int32Array(heap().sab, off, HEAD >> 2);
    if (Atomics.load(i32, MAGIC_W) !== C_MAGIC) {
      console.error(`${this.config.name}: ignored a local connection request with a bad block`);
      return;
    }
    const req = new Ring(off + HEAD, off), resp = new Ring(off + HEAD + CONN_RING, off);
    const rc = { i32, req, resp, off };
    this.#ringConns.add(rc);
    const clientGone = () => Atomics.load(i32, CLIENT_CLOSED_W) !== 0 || !isAlive(slot);
    const eof = () => this.stopped || clientGone();
    const sendOpts = { broken: clientGone };
    const client = new ClientRecord(`worker slot ${slot}`, false, (bytes) => {
      void resp.post(bytes, sendOpts);
    });
    this.#clients.add(client);
    const opts = { eof, eofPollMs: LIVENESS_SLICE_MS };
    try {
      for (let n = 1;; n++) {
        const f = await req.recv(unframeLocal, opts);
        if (f === EOF || f === TIMEOUT) break;
        this.receive(client, f);
        if (n % FAIRNESS_BATCH === 0) await yieldTask();
      }
    } catch (e) {
      console.error(`${this.config.name}: closed the connection of ${client.name}: ${reason(e)}`);
    } finally {
      this.#drop(client);
      this.#ringConns.delete(rc);
      // A live client learns that its connection is closed. A dead one is not told: a worker
      // is marked dead as soon as it is terminated, and would otherwise report the closed
      // connection in the moment before it really stops.
      if (!clientGone()) {
        Atomics.store(i32, SERVER_CLOSED_W, 1);
        resp.wakeReaders();
      }
      release(off);
    }
  }

  /** Listens on TCP (synchronously, so `address` is known at once). */
  listen(address: Address): void {
    this.#listener = Deno.listen({ hostname: address.hostname ?? "127.0.0.1", port: address.port });
    this.#track(this.#acceptTcp(this.#listener));
  }

  async #acceptTcp(listener: Deno.TcpListener): Promise<void> {
    for (;;) {
      let sock: Deno.Conn;
      try {
        sock = await listener.accept();
      } catch (e) {
        if (!this.stopped) console.error(`${this.config.name}: stopped accepting: ${reason(e)}`);
        return;
      }
      this.#track(this.#serveSocket(sock));
    }
  }

  async #serveSocket(sock: Deno.Conn): Promise<void> {
    const ra = sock.remoteAddr as Deno.NetAddr;
    const peer = ra?.hostname ? fmtAddress(ra) : "a peer";
    const conn = wrapSocket(sock, { maxMessageSize: this.config.maxMessageSize });
    this.#sockets.add(conn);
    const key = this.config.authkey;
    let client: ClientRecord | null = null;
    try {
      try {
        await withTimeout(this.config.handshakeTimeout, () => conn.close(), async () => {
          await deliverChallenge(conn, key);
          await answerChallenge(conn, key);
        });
      } catch (e) {
        console.error(`${this.config.name}: refused ${peer}: ${reason(e)}`);
        return;
      }
      if (this.stopped) return;
      if (this.config.serializer === "pickle") return await servePython(conn, this, peer);
      await conn.sendBytes(frame(HELLO, 0, this.config.serverId, true));
      client = new ClientRecord(peer, true, (bytes) => {
        void conn.sendBytes(bytes).catch(() => {}); // a broken socket shows in the read loop
      });
      this.#clients.add(client);
      for (;;) {
        let bytes: Uint8Array;
        try {
          bytes = await conn.recvBytes();
        } catch (e) {
          // A hang-up is normal; anything else (an oversized frame: the socket layer has
          // already closed the connection) is logged below.
          if (e instanceof EOFError || this.stopped) break;
          throw e;
        }
        const f = unframe(bytes, true);
        // From another program, anything undecodable is a broken peer: drop it.
        if (f.error !== undefined) throw f.error;
        this.receive(client, f);
      }
    } catch (e) {
      if (!this.stopped) {
        console.error(`${this.config.name}: closed the connection from ${peer}: ${reason(e)}`);
      }
    } finally {
      conn.close();
      this.#sockets.delete(conn);
      if (client) this.#drop(client);
    }
  }

  /** The loopback client of this isolate's own proxies. */
  attachLoopback(deliver: (bytes: Uint8Array) => void): ClientRecord {
    const c = new ClientRecord("this isolate", false, deliver);
    this.#clients.add(c);
    return c;
  }

  /** A client is gone: abort its waits, release what it held, drop its references. */
  #drop(client: ClientRecord): void {
    if (client.dropped) return;
    this.#clients.delete(client);
    client.drop(new EOFError("the client is gone"));
    for (const obj of client.touched) {
      try {
        obj.forget(client);
      } catch (e) {
        console.error(
          `${this.config.name}: releasing what ${client.name} held failed: ${reason(e)}`,
        );
      }
    }
    client.touched.clear();
    for (const [id, n] of client.held) this.#decref(id, n);
    client.held.clear();
  }

  // --- requests ------------------------------------------------------------------------------

  /**
   * Handles one frame of `client`. A malformed request throws (the caller closes the
   * connection); a body that could not be decoded fails that call only.
   */
  receive(client: ClientRecord, f: Frame): void {
    if (this.stopped || client.dropped) return;
    const { kind: op, callId, body } = f;
    if (f.error !== undefined) {
      // Only from this program (other programs' undecodable frames close their connection).
      // The caller gets the codec's own error (a SerializationError naming the problem).
      if (f.error instanceof Error) return this.#reply(client, callId, ERR, f.error);
      return this.#reply(client, callId, REMOTE, errorParts(f.error));
    }
    switch (op) {
      case CALL: {
        if (!Array.isArray(body)) throw new ValueError("a call is malformed");
        const [id, method, args, thread] = body;
        if (!validId(id) || typeof method !== "string" || !Array.isArray(args)) {
          throw new ValueError("a call is malformed");
        }
        const t = typeof thread === "number" ? thread : 0;
        const e = this.#objects.get(id);
        if (e) return this.#call(client, callId, e, method, args, t); // the usual case
        return this.#whenBorn(
          id,
          (e) => this.#call(client, callId, e, method, args, t),
          () =>
            this.#reply(client, callId, REMOTE, [
              "LookupError",
              `no managed object with id ${JSON.stringify(id)} (it was released, or never created)`,
              "",
            ]),
        );
      }
      case CREATE: {
        if (!Array.isArray(body)) throw new ValueError("a create request is malformed");
        const [id, typeid, args] = body;
        if (!validId(id) || typeof typeid !== "string" || !Array.isArray(args)) {
          throw new ValueError("a create request is malformed");
        }
        return this.#create(client, callId, id, typeid, args);
      }
      case INCREF:
      case CLAIM:
      case DECREF: {
        const id = body;
        if (!validId(id)) throw new ValueError("a reference message is malformed");
        return this.#whenBorn(id, (e) => {
          if (op === CLAIM) client.held.set(id, (client.held.get(id) ?? 0) + 1);
          else if (op === INCREF) e.refs++;
          else {
            const n = client.held.get(id) ?? 0;
            if (n > 1) client.held.set(id, n - 1);
            else client.held.delete(id);
            this.#decref(id, 1);
          }
        }, () => {});
      }
      case CANCEL:
        if (typeof body === "number") {
          client.calls.get(body)?.abort(new DOMException("the call was cancelled", "AbortError"));
        }
        return;
      case SHUTDOWN:
        this.#reply(client, callId, OK, null);
        queueMicrotask(() => this.shutdown());
        return;
    }
    throw new ValueError(`unknown request kind ${op}`);
  }

  /** Runs `then` with the entry of `id`, at once or once its creation arrives (in order). */
  #whenBorn(id: ObjId, then: (e: Entry) => void, missing: () => void): void {
    const e = this.#objects.get(id);
    if (e) return then(e);
    let u = this.#unborn.get(id);
    if (!u) {
      const timer = setTimeout(() => {
        const w = this.#unborn.get(id);
        this.#unborn.delete(id);
        for (const f of w?.queue ?? []) f();
      }, CREATION_WAIT_MS);
      u = { queue: [], timer };
      this.#unborn.set(id, u);
    }
    // Each waiting step re-checks, so a step that found no object reports `missing`.
    u.queue.push(() => {
      const e2 = this.#objects.get(id);
      if (e2) then(e2);
      else missing();
    });
  }

  #create(client: ClientRecord, callId: number, id: ObjId, typeid: string, args: unknown[]): void {
    if (this.#objects.has(id)) {
      return this.#reply(client, callId, REMOTE, ["ValueError", `object id ${id} is taken`, ""]);
    }
    const entry = this.#build(client, typeid, args);
    this.#objects.set(id, entry);
    client.held.set(id, (client.held.get(id) ?? 0) + 1);
    if (entry.failed) this.#reply(client, callId, REMOTE, entry.failed);
    else this.#reply(client, callId, OK, null);
    const u = this.#unborn.get(id);
    if (u) {
      this.#unborn.delete(id);
      clearTimeout(u.timer);
      for (const f of u.queue) f();
    }
  }

  /** Makes the object of a create request (a failed entry when it cannot be made). */
  #build(client: ClientRecord, typeid: string, args: unknown[]): Entry {
    const spec = this.#registry.get(typeid) ?? builtinSpec(typeid);
    const entry: Entry = {
      typeid,
      obj: null,
      failed: null,
      exposed: spec?.exposed ?? new Set(),
      builtin: spec?.builtin ?? false,
      refs: 1,
    };
    if (!spec) {
      entry.failed = ["KeyError", `no type '${typeid}' is registered with the manager`, ""];
    } else {
      try {
        const ctx = new CallContext(this, client, 0, 0);
        entry.obj = withCaller(
          ctx,
          () =>
            spec.isClass
              ? new (spec.make as unknown as new (...a: unknown[]) => object)(...args)
              : (spec.make as (...a: unknown[]) => object)(...args),
        );
        if (
          entry.obj === null || (typeof entry.obj !== "object" && typeof entry.obj !== "function")
        ) {
          throw new TypeError(
            `the factory of '${typeid}' returned ${String(entry.obj)}, not an object`,
          );
        }
        if (!spec.exposed) entry.exposed = publicMethods(entry.obj);
      } catch (e) {
        const [name, message, stack] = errorParts(e);
        entry.failed = [name, `creating '${typeid}' failed: ${message}`, stack];
        entry.obj = null;
      }
    }
    return entry;
  }

  // --- CPython's managers protocol (lib/managers/python/ speaks it; this is the table's side) --
  // Python's clients count references per server (each incref/decref comes on a connection of
  // its own), so their objects are not held by any client record.

  get name(): string {
    return this.config.name;
  }

  pyClient(name: string): ClientRecord {
    const c = new ClientRecord(name, true, () => {});
    this.#clients.add(c);
    return c;
  }

  pyDrop(client: ClientRecord): void {
    this.#drop(client);
  }

  pyCreate(client: ClientRecord, typeid: string, makeArgs: unknown[]): [string, PyEntry] {
    const entry = this.#build(client, typeid, makeArgs);
    if (entry.failed) throw new RemoteError(entry.failed[0], entry.failed[1], entry.failed[2]);
    const id = randomId();
    this.#objects.set(id, entry);
    return [id, entry];
  }

  pyAdopt(typeid: string, obj: object): string {
    const id = randomId();
    this.#objects.set(id, {
      typeid,
      obj,
      failed: null,
      exposed: new Set(),
      builtin: true,
      refs: 1,
    });
    return id;
  }

  pyEntry(id: string): PyEntry | undefined {
    return this.#objects.get(id);
  }

  pyRef(id: string, delta: 1 | -1): void {
    const e = this.#objects.get(id);
    if (!e) throw new RemoteError("KeyError", `no managed object with id '${id}'`);
    if (delta > 0) e.refs++;
    else this.#decref(id, 1);
  }

  pyRun<R>(client: ClientRecord, callId: number, fn: () => R): R {
    const prev = enterCall(new CallContext(this, client, 0, callId));
    let r: R;
    try {
      r = fn();
    } finally {
      leaveCall(prev);
    }
    if (r instanceof Promise) void r.finally(() => client.calls.delete(callId)).catch(() => {});
    return r;
  }

  numberOfObjects(): number {
    return this.#objects.size;
  }

  #decref(id: ObjId, n: number): void {
    const e = this.#objects.get(id);
    if (!e) return;
    e.refs -= n;
    if (e.refs <= 0) this.#objects.delete(id);
  }

  #call(
    client: ClientRecord,
    callId: number,
    e: Entry,
    method: string,
    args: unknown[],
    thread: number,
  ): void {
    if (e.failed) return this.#reply(client, callId, REMOTE, e.failed);
    // Only names in the exposed set are ever looked up on the object: a request can reach
    // nothing else (no `constructor`, no `__proto__`, no private helpers).
    if (!e.exposed.has(method)) {
      return this.#reply(client, callId, REMOTE, [
        "AttributeError",
        `'${e.typeid}' object has no exposed method '${method}'`,
        "",
      ]);
    }
    const obj = e.obj as Record<string, unknown>;
    const fn = obj[method];
    if (typeof fn !== "function") {
      return this.#reply(client, callId, REMOTE, [
        "AttributeError",
        `'${e.typeid}' object's '${method}' is not a method`,
        "",
      ]);
    }
    let r: unknown;
    const prev = enterCall(new CallContext(this, client, thread, callId));
    try {
      r = fn.apply(obj, args);
    } catch (err) {
      return this.#fail(client, callId, e, err);
    } finally {
      leaveCall(prev);
    }
    if (r instanceof Promise) {
      r.then(
        (v) => this.#reply(client, callId, OK, v),
        (err) => this.#fail(client, callId, e, err),
      ).finally(() => client.calls.delete(callId));
    } else this.#reply(client, callId, OK, r);
  }

  /** Built-in types answer with their own errors (`Empty`, `ValueError`...), others with RemoteError. */
  #fail(client: ClientRecord, callId: number, e: Entry, err: unknown): void {
    if (e.builtin && err instanceof Error) this.#reply(client, callId, ERR, err);
    else this.#reply(client, callId, REMOTE, errorParts(err));
  }

  #reply(client: ClientRecord, callId: number, status: number, value: unknown): void {
    if (callId === 0 || client.dropped) return;
    let bytes: Uint8Array;
    try {
      bytes = frame(status, callId, value, client.network);
    } catch (err) {
      // The result cannot be sent (a function, a local handle to another program...).
      bytes = frame(REMOTE, callId, errorParts(err), client.network);
    }
    client.send(bytes);
  }

  /** The object a proxy of this server refers to; anything else as it is. */
  referent(value: unknown): unknown {
    if (
      value instanceof BaseProxy ||
      (value !== null && typeof value === "object" && autoTargets.has(value))
    ) {
      const core = coreOf(value as object);
      if (core.route.serverId === this.config.serverId) {
        return this.#objects.get(core.id)?.obj ?? value;
      }
    }
    return value;
  }

  // --- stopping ------------------------------------------------------------------------------

  /** Stops serving: every connection is closed, every waiting call ends. */
  shutdown(): void {
    if (Atomics.load(this.#i32, STATE_W) !== 0) return;
    Atomics.store(this.#i32, STATE_W, 1);
    new Ring(this.#block + HEAD).wakeReaders();
  }

  #stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.shutdown();
    this.#listener?.close();
    for (const c of this.#sockets) c.close();
    for (const rc of this.#ringConns) {
      Atomics.store(rc.i32, SERVER_CLOSED_W, 1);
      rc.resp.wakeReaders();
      rc.req.wakeReaders();
    }
    for (const c of [...this.#clients]) this.#drop(c);
    for (const u of this.#unborn.values()) clearTimeout(u.timer);
    this.#unborn.clear();
    this.#objects.clear();
    if (localServers.get(this.config.serverId) === this) localServers.delete(this.config.serverId);
    connections.get(this.config.serverId)?.close();
    if (localServers.size === 0 && channel) {
      channel.port1.close();
      channel.port2.close();
      channel = null;
    }
    // Done once every loop has seen the stop (no accept, read or wait of ours is left pending).
    void (async () => {
      while (this.#tasks.size) await Promise.allSettled([...this.#tasks]);
      this.#finish();
    })();
  }
}

let channel: MessageChannel | null = null;
const yielded: (() => void)[] = [];

/**
 * Lets other tasks run (timers, other connections' wake-ups). A connection whose client keeps
 * sending is served in a chain of microtasks that would otherwise starve them. Not
 * `setTimeout(0)`: it takes about 2 ms here, a MessageChannel message about 12 µs.
 */
function yieldTask(): Promise<void> {
  if (!channel) {
    channel = new MessageChannel();
    channel.port1.onmessage = () => yielded.shift()?.();
  }
  const p = new Promise<void>((r) => yielded.push(r));
  channel.port2.postMessage(null);
  return p;
}

function validId(id: unknown): id is ObjId {
  return (typeof id === "number" && Number.isSafeInteger(id)) ||
    (typeof id === "string" && id.length > 0 && id.length <= 64);
}

function builtinSpec(typeid: string): Served | undefined {
  const b = BUILTINS.get(typeid);
  return b && { make: b.make, exposed: new Set(b.exposed), builtin: true, isClass: false };
}

function reason(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** Hello from the server process to the manager that started it. */
type ServerHello =
  | { ok: true; off: number; tag: number; address: Required<Address> | null }
  | { ok: false; error: string };

/**
 * The manager server's process target (started by `BaseManager.start()`; not for direct use):
 * imports the registered types, starts serving, reports where, and serves until shut down.
 *
 * @example
 * ```ts ignore
 * // BaseManager.start() runs it as: new Process({ target: managerServer, args: [hello, config] })
 * ```
 */
export async function managerServer(
  helloConn: Connection<unknown>,
  serverConfig: unknown,
): Promise<void> {
  const hello = helloConn as Connection<ServerHello>, config = serverConfig as ServerConfig;
  let server: Server;
  try {
    // Clients may send any kind of handle at any time (a Queue stored in a dict...): every kind
    // must be registered before the first request, not in the background as other workers do.
    await import(MOD);
    const registry = new Map<string, Served>();
    for (const [typeid, ref, exposed] of config.registry) {
      let make: unknown = null;
      if (ref) {
        const ns = await import(ref.module) as Record<string, unknown>;
        make = ns[ref.name];
        if (typeof make !== "function") {
          throw new ProcessError(
            `'${ref.name}' (registered as '${typeid}') is not exported from ${ref.module}`,
          );
        }
      }
      if (make) registry.set(typeid, servedOf(make as (...a: never[]) => object, exposed));
    }
    server = new Server(config, registry);
    if (config.address) server.listen(config.address);
  } catch (e) {
    await hello.send({ ok: false, error: reason(e) });
    hello.close();
    return;
  }
  await hello.send({
    ok: true,
    off: server.local.off,
    tag: server.local.tag,
    address: server.address,
  });
  hello.close();
  await server.done;
}

const MOD = new URL("../../mod.ts", import.meta.url).href;

function servedOf(
  make: (...a: never[]) => object,
  exposed: readonly string[] | null | undefined,
): Served {
  return {
    make,
    exposed: exposed ? new Set(exposed) : undefined,
    builtin: false,
    isClass: isClass(make),
  };
}

// ---------------------------------------------------------------------------------------------
// Managers

/**
 * Options of {@link BaseManager.register}.
 *
 * @example
 * ```ts ignore
 * MyManager.register("Maths", Maths, { exposed: ["add"] }); // only add() may be called
 * ```
 */
export interface RegisterOptions {
  /**
   * The method names a proxy may call. Default: every public method of the object (functions
   * on it or its classes whose names do not start with `_`).
   */
  exposed?: readonly string[];
}

/**
 * Options of `new BaseManager(...)`.
 *
 * @example
 * ```ts
 * import { SyncManager } from "jsr:@denomp/multiprocessing";
 * const m = new SyncManager({
 *   address: { hostname: "127.0.0.1", port: 0 },
 *   authkey: "secret",
 *   maxMessageSize: 1 << 20,
 * });
 * console.assert(m.address === null); // until start() or serveForever()
 * ```
 */
export interface BaseManagerOptions {
  /**
   * The TCP address to serve on (`start()`, `serveForever()`) or to connect to (`connect()`).
   * Port 0 picks a free port (see {@link BaseManager.address}). Without it, `start()` serves
   * the workers of this program only.
   */
  address?: Address;
  /** The shared secret; default: this process tree's key (Python's `current_process().authkey`). */
  authkey?: AuthKey;
  /** The largest message accepted over TCP, in bytes (default 128 MiB); a peer over it is dropped. */
  maxMessageSize?: number;
  /**
   * Milliseconds a TCP peer has to pass the HMAC challenge (default 20,000); for `connect()`,
   * also to greet as a denomp manager.
   */
  handshakeTimeout?: number;
  /**
   * What is spoken over TCP: `"denomp"` (default: denomp's own protocol, for denomp peers), or
   * `"pickle"`: CPython's `multiprocessing.managers` protocol, so Python's `BaseManager` /
   * `SyncManager` clients use this server (its registered classes, `dict`, `list`,
   * `Namespace`, `Queue`, `Lock`, `Event`...), and `connect()` uses a Python manager server's
   * `dict`, `list`, `Queue`... through the usual proxies. See README "Managers across languages".
   */
  serializer?: Serializer;
}

interface Registration {
  callable?: (...args: never[]) => unknown;
  exposed?: readonly string[];
  caller?: string;
}

const registries = new WeakMap<object, Map<string, Registration>>();

function registryOf(cls: object): Map<string, Registration> {
  const out = new Map<string, Registration>();
  const chain: object[] = [];
  for (let c: object | null = cls; c && c !== Function.prototype; c = Object.getPrototypeOf(c)) {
    chain.push(c);
  }
  for (const c of chain.reverse()) for (const [k, v] of registries.get(c) ?? []) out.set(k, v);
  return out;
}

let managerCounter = 0;

type State = "initial" | "started" | "connected" | "serving" | "shutdown";

/**
 * A manager (Python's `BaseManager`): a server of registered types, and the client side that
 * creates objects there and hands out proxies.
 *
 * - `await m.start()` runs the server in a new daemon worker (with `address`, it also serves
 *   other programs over TCP); `await m.shutdown()` (or `await using`) stops it.
 * - `await m.serveForever()` runs the server in this isolate until a client shuts it down.
 * - `await m.connect()` connects to a server at `address` (another program, or machine);
 *   `m.close()` disconnects.
 *
 * Register a type with `BaseManager.register(typeid, Class)` (on a subclass, to keep it to that
 * subclass); the class must be exported from its module, since the server's worker imports it.
 * Then `m.create(typeid, ...args)` or `m[typeid](...args)` creates an object in the server and
 * returns its proxy at once (a constructor's error is reported by the first call on it).
 *
 * @example
 * ```ts ignore
 * // maths.ts
 * export class Maths {
 *   add(a: number, b: number) {
 *     return a + b;
 *   }
 * }
 * // server.ts
 * import { BaseManager } from "jsr:@denomp/multiprocessing";
 * import { Maths } from "./maths.ts";
 * class MathsManager extends BaseManager {}
 * MathsManager.register("Maths", Maths);
 * const m = new MathsManager({ address: { hostname: "0.0.0.0", port: 50000 }, authkey: "secret" });
 * await m.serveForever();
 * // client.ts (another program)
 * const c = new MathsManager({ address: { hostname: "server", port: 50000 }, authkey: "secret" });
 * await c.connect();
 * const maths = c.create<Maths>("Maths");
 * console.log(await maths.add(1, 2)); // 3
 * c.close();
 * ```
 */
export class BaseManager {
  #options: BaseManagerOptions;
  #authkey: Uint8Array;
  #state: State = "initial";
  #route: Route | null = null;
  #conn: ManagerConn | null = null;
  #process: Process | null = null;
  #server: Server | null = null;
  #address: Required<Address> | null = null;

  /** Prepares a manager; nothing runs until `start()`, `connect()` or `serveForever()`. */
  constructor(options?: BaseManagerOptions) {
    options = optionsOf(options, "BaseManager", "new BaseManager({ address, authkey })");
    this.#options = { ...options };
    this.#authkey = options.authkey === undefined ? current().authkey : keyBytes(options.authkey);
    const max = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE;
    if (!(max > 0) || max > 0xffffffff) {
      throw new ValueError(`maxMessageSize must be 1..2^32-1 bytes: current value is ${max}`);
    }
    const ser = options.serializer;
    if (ser !== undefined && ser !== "denomp" && ser !== "pickle") {
      throw new ValueError(
        `serializer must be "denomp" or "pickle": current value is ${JSON.stringify(ser)}`,
      );
    }
  }

  /**
   * Registers a type to serve: `callable` is an exported class (its instances are created with
   * `new`) or an exported function returning the object to serve (e.g. a shared singleton).
   * Without `callable`, only adds the `manager[typeid]()` method (for a client of a server that
   * registered it). Adds `typeid` as a method of this class's instances.
   */
  static register(
    typeid: string,
    callable?: ((...args: never[]) => unknown) | (abstract new (...args: never[]) => unknown),
    options?: RegisterOptions,
  ): void {
    options = optionsOf(options, "BaseManager.register", "register(typeid, callable, { exposed })");
    if (typeof typeid !== "string" || !/^[A-Za-z_$][\w$]*$/.test(typeid)) {
      throw new ValueError(`typeid must be an identifier: current value is ${String(typeid)}`);
    }
    if (BUILTINS.has(typeid)) throw new ValueError(`'${typeid}' is a built-in type of the manager`);
    const proto = this.prototype as unknown as Record<string, unknown>;
    if (typeid in proto && !registryOf(this).has(typeid)) {
      throw new ValueError(`'${typeid}' would hide the manager's own member '${typeid}'`);
    }
    if (callable !== undefined && typeof callable !== "function") {
      throw new TypeError(`the callable registered as '${typeid}' must be a class or a function`);
    }
    let own = registries.get(this);
    if (!own) registries.set(this, own = new Map());
    own.set(typeid, {
      callable: callable as ((...args: never[]) => unknown) | undefined,
      exposed: options.exposed ? [...options.exposed] : undefined,
      caller: callerModule(),
    });
    Object.defineProperty(this.prototype, typeid, {
      value: function (this: BaseManager, ...args: unknown[]) {
        return this.create(typeid, ...args);
      },
      configurable: true,
      writable: true,
    });
  }

  /** The TCP address served or connected to (with the port picked when 0 was asked), or null. */
  get address(): Required<Address> | null {
    return this.#address;
  }

  /** The authkey (bytes). */
  get authkey(): Uint8Array {
    return this.#authkey;
  }

  /**
   * Starts the server in a new daemon worker and connects to it. With `address`, the server
   * also listens there for other programs. Throws `ProcessError` if the server cannot start
   * (e.g. a registered class is not exported).
   */
  async start(): Promise<void> {
    this.#expect("initial", "start");
    const ctor = this.constructor as typeof BaseManager;
    const registry: ServerConfig["registry"] = [];
    for (const [typeid, r] of registryOf(ctor)) {
      if (!r.callable) continue;
      registry.push([
        typeid,
        resolveTarget(r.callable, undefined, r.caller),
        r.exposed ? [...r.exposed] : null,
      ]);
    }
    const config = this.#config(`${ctor.name}-${++managerCounter}`, registry);
    const [r, w] = Pipe<ServerHello>({ duplex: false });
    const p = new Process({
      target: managerServer,
      module: import.meta.url,
      args: [w, config],
      daemon: true,
      name: config.name,
    });
    this.#state = "started";
    try {
      p.start();
    } catch (e) {
      this.#state = "shutdown";
      w.close();
      r.close();
      throw e;
    }
    w.close();
    this.#process = p;
    let hello: ServerHello;
    try {
      hello = await r.recv();
    } catch {
      await p.join(1000);
      this.#state = "shutdown";
      throw new ProcessError(
        `the manager's server process exited at start (exit code ${p.exitCode})`,
      );
    } finally {
      r.close();
    }
    if (!hello.ok) {
      await p.join(1000);
      if (p.isAlive()) p.terminate();
      this.#state = "shutdown";
      throw new ProcessError(`the manager's server could not start: ${hello.error}`);
    }
    this.#address = hello.address;
    this.#route = {
      serverId: config.serverId,
      local: { off: hello.off, tag: hello.tag },
      address: hello.address ?? undefined,
      authkey: this.#authkey,
    };
  }

  /**
   * Connects to a server at `address` (mutual HMAC challenge with `authkey`). Throws
   * `AuthenticationError` when the keys differ, and the network's error when nobody listens.
   */
  async connect(): Promise<void> {
    this.#expect("initial", "connect");
    const a = this.#options.address;
    if (!a) throw new ValueError("connect() needs an address");
    const address = { hostname: a.hostname ?? "127.0.0.1", port: a.port };
    if (this.#options.serializer === "pickle") return this.#connectPython(address);
    const t = new TcpTransport(
      address,
      this.#authkey,
      this.#options.maxMessageSize ?? DEFAULT_MAX_MESSAGE,
      this.#options.handshakeTimeout ?? HANDSHAKE_MS,
    );
    const serverId = await t.ready.catch((e) => {
      t.close();
      throw e;
    });
    this.#address = address;
    this.#route = { serverId, address, authkey: this.#authkey };
    closedServers.delete(serverId);
    const old = connections.get(serverId);
    if (old && !old.closed) {
      t.close();
      this.#conn = old;
    } else {
      this.#conn = new ClientConn(this.#route, t);
      connections.set(serverId, this.#conn);
    }
    this.#state = "connected";
  }

  /** `connect()` to a server speaking CPython's protocol: a Python manager, or denomp's "pickle". */
  async #connectPython(address: Required<Address>): Promise<void> {
    const py = new PyManagerClient(address, this.#authkey, {
      maxMessageSize: this.#options.maxMessageSize ?? DEFAULT_MAX_MESSAGE,
      handshakeTimeout: this.#options.handshakeTimeout ?? HANDSHAKE_MS,
    });
    await py.dispatch("dummy", []); // as Python's connect(): the address and the authkey work
    this.#address = address;
    this.#route = {
      serverId: `python-${randomId()}`,
      address,
      authkey: this.#authkey,
      python: true,
    };
    this.#conn = new PyClientConn(this.#route, py);
    connections.set(this.#route.serverId, this.#conn);
    this.#state = "connected";
  }

  /**
   * Runs the server in this isolate until it is shut down (by `shutdown()`, or a client's), then
   * resolves. With `address` it listens there at once, so `address` is set as soon as this is
   * called; it also serves this program's workers, and this manager's own `create()`.
   */
  serveForever(): Promise<void> {
    this.#expect("initial", "serveForever");
    const ctor = this.constructor as typeof BaseManager;
    const registry = new Map<string, Served>();
    for (const [typeid, r] of registryOf(ctor)) {
      if (r.callable) {
        registry.set(typeid, servedOf(r.callable as (...a: never[]) => object, r.exposed));
      }
    }
    const config = this.#config(`${ctor.name}-${++managerCounter}`, []);
    const server = new Server(config, registry);
    try {
      if (config.address) server.listen(config.address);
    } catch (e) {
      server.shutdown();
      throw e;
    }
    this.#server = server;
    this.#address = server.address;
    this.#route = {
      serverId: config.serverId,
      local: server.local,
      address: server.address ?? undefined,
      authkey: this.#authkey,
    };
    this.#state = "serving";
    return server.done.then(() => {
      this.#state = "shutdown";
    });
  }

  #config(name: string, registry: ServerConfig["registry"]): ServerConfig {
    const a = this.#options.address;
    return {
      name,
      serverId: randomId(),
      address: a ? { hostname: a.hostname ?? "127.0.0.1", port: a.port } : null,
      authkey: this.#authkey,
      maxMessageSize: this.#options.maxMessageSize ?? DEFAULT_MAX_MESSAGE,
      handshakeTimeout: this.#options.handshakeTimeout ?? HANDSHAKE_MS,
      serializer: this.#options.serializer ?? "denomp",
      registry,
    };
  }

  #expect(state: State, what: string): void {
    if (this.#state !== state) {
      throw new ProcessError(
        `cannot ${what}(): the manager is ${
          this.#state === "initial" ? "not started" : this.#state
        }`,
      );
    }
  }

  #connection(): ManagerConn {
    if (this.#state === "initial") {
      throw new ProcessError("the manager is not started (call start() or connect())");
    }
    if (this.#state === "shutdown" || !this.#route) {
      throw new ProcessError("the manager is shut down");
    }
    if (!this.#conn || this.#conn.closed) this.#conn = connectionFor(this.#route);
    return this.#conn;
  }

  /**
   * Creates an object of the registered type `typeid` in the server with `args` and returns its
   * proxy (Python's `manager.typeid(*args)`). The proxy is usable at once; if the constructor
   * throws, the first call on the proxy rejects with that error as a `RemoteError`.
   */
  create<T = unknown>(typeid: string, ...args: unknown[]): Proxied<T> {
    return this.#make(typeid, args) as Proxied<T>;
  }

  /** Creates a built-in or registered object and its proxy (the creator's reference). */
  #make(typeid: string, args: unknown[]): BaseProxy {
    const conn = this.#connection();
    const id = conn.newId();
    conn.post(CREATE, [id, typeid, args]);
    return adoptProxy({ route: conn.route, typeid, id, conn });
  }

  /** @internal For SyncManager's typed factories. */
  protected makeProxy(typeid: string, args: unknown[]): BaseProxy {
    return this.#make(typeid, args);
  }

  /**
   * Stops the server: a started manager's worker (which is terminated if it does not exit within
   * a second), a `serveForever()` server, or — from a connected client — the remote server.
   * Proxies of the server stop working (their calls reject with `EOFError`).
   */
  async shutdown(): Promise<void> {
    switch (this.#state) {
      case "started": {
        this.#state = "shutdown";
        const conn = this.#conn;
        this.#conn = null;
        const ep = this.#route?.local;
        if (ep && serverBlockValid(ep)) {
          const i32 = heap().i32;
          Atomics.store(i32, (ep.off >> 2) + STATE_W, 1);
          new Ring(ep.off + HEAD).wakeReaders();
        }
        conn?.close();
        connections.get(this.#route!.serverId)?.close();
        closedServers.add(this.#route!.serverId);
        const p = this.#process!;
        await p.join(1000);
        if (p.isAlive()) {
          p.terminate();
          await p.join();
        }
        return;
      }
      case "serving":
        closedServers.add(this.#route!.serverId);
        this.#server!.shutdown();
        await this.#server!.done;
        return;
      case "connected": {
        const conn = this.#connection();
        await conn.request(SHUTDOWN, null).catch((e) => {
          if (!(e instanceof EOFError)) throw e;
        });
        this.close();
        return;
      }
      case "initial":
        throw new ProcessError("cannot shutdown(): the manager is not started");
    }
  }

  /**
   * Disconnects a connected client (its proxies' connection, in this process): the server
   * releases the managed locks it held. A started manager is shut down instead.
   */
  close(): void {
    if (this.#state === "started" || this.#state === "serving") {
      void this.shutdown();
      return;
    }
    if (this.#state !== "connected") return;
    this.#state = "shutdown";
    closedServers.add(this.#route!.serverId);
    this.#conn?.close();
    connections.get(this.#route!.serverId)?.close();
    this.#conn = null;
  }

  /** `await using manager = ...`: shuts a started or serving manager down; closes a client. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#state === "started" || this.#state === "serving") await this.shutdown();
    else this.close();
  }

  /** A short description, like Python's repr. */
  toString(): string {
    const a = this.#address ? ` address=${fmtAddress(this.#address)}` : "";
    return `<${this.constructor.name} ${this.#state}${a}>`;
  }
}

/**
 * A manager of Python's `SyncManager` types: `dict`, `list`, `Namespace`, `Queue`,
 * `JoinableQueue`, `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Condition`, `Event`,
 * `Barrier`, `Value`, `Array`. Usually made by {@link Manager}; construct it with an `address`
 * to serve or use them over TCP.
 *
 * @example
 * ```ts
 * import { SyncManager } from "jsr:@denomp/multiprocessing";
 * const m = new SyncManager({ address: { hostname: "127.0.0.1", port: 0 }, authkey: "secret" });
 * await m.start();
 * console.log(m.address); // { hostname: "127.0.0.1", port: ... } for other programs
 * const d = m.dict<string, number>();
 * await d.set("x", 1);
 * await m.shutdown();
 * ```
 */
export class SyncManager extends BaseManager {
  /** A managed dict (optionally filled from `init`). */
  dict<K = unknown, V = unknown>(init?: Map<K, V> | [K, V][] | Record<string, V>): DictProxy<K, V> {
    return this.makeProxy("dict", init === undefined ? [] : [init]) as DictProxy<K, V>;
  }
  /** A managed list (optionally filled from `init`). */
  list<T = unknown>(init?: Iterable<T>): ListProxy<T> {
    return this.makeProxy("list", init === undefined ? [] : [Array.from(init)]) as ListProxy<T>;
  }
  /** A managed Namespace (optionally with attributes from `init`). */
  Namespace<T extends Record<string, unknown> = Record<string, unknown>>(
    init?: Partial<T>,
  ): NamespaceProxy<T> {
    return this.makeProxy("Namespace", init === undefined ? [] : [init]) as NamespaceProxy<T>;
  }
  /** A managed Queue (`maxsize` 0: unbounded). */
  Queue<T = unknown>(maxsize = 0): QueueProxy<T> {
    return this.makeProxy("Queue", [checkInt("maxsize", maxsize)]) as QueueProxy<T>;
  }
  /** A managed JoinableQueue. */
  JoinableQueue<T = unknown>(maxsize = 0): JoinableQueueProxy<T> {
    return this.makeProxy("JoinableQueue", [checkInt("maxsize", maxsize)]) as JoinableQueueProxy<T>;
  }
  /** A managed Lock. */
  Lock(): LockProxy {
    return this.makeProxy("Lock", []) as LockProxy;
  }
  /** A managed RLock. */
  RLock(): RLockProxy {
    return this.makeProxy("RLock", []) as RLockProxy;
  }
  /** A managed Semaphore with `value` permits. */
  Semaphore(value = 1): SemaphoreProxy {
    return this.makeProxy("Semaphore", [checkPermits(value)]) as SemaphoreProxy;
  }
  /** A managed BoundedSemaphore with `value` permits. */
  BoundedSemaphore(value = 1): BoundedSemaphoreProxy {
    return this.makeProxy("BoundedSemaphore", [checkPermits(value)]) as BoundedSemaphoreProxy;
  }
  /** A managed Condition, over `lock` (a managed Lock/RLock of this manager) or a new RLock. */
  Condition(lock?: LockProxy): ConditionProxy {
    return this.makeProxy("Condition", lock === undefined ? [] : [lock]) as ConditionProxy;
  }
  /** A managed Event. */
  Event(): EventProxy {
    return this.makeProxy("Event", []) as EventProxy;
  }
  /** A managed Barrier for `parties` (no `action`: a function cannot be sent to the server). */
  Barrier(parties: number, options: { timeout?: number } = {}): BarrierProxy {
    if (!Number.isInteger(parties) || parties < 1) {
      throw new ValueError(`parties must be an integer >= 1: current value is ${parties}`);
    }
    return this.makeProxy("Barrier", [parties, { timeout: options.timeout }]) as BarrierProxy;
  }
  /** A managed Value of `typecode`. */
  Value<T extends Typecode>(typecode: T, value?: CInput<T>): ValueProxy<T> {
    return this.makeProxy("Value", [typecode, value]) as ValueProxy<T>;
  }
  /** A managed Array of `typecode`: a length (zero-filled) or the initial values. */
  Array<T extends Typecode>(
    typecode: T,
    sizeOrValues: number | Iterable<CInput<T>>,
  ): ArrayProxy<T> {
    const init = typeof sizeOrValues === "number" ? sizeOrValues : Array.from(sizeOrValues);
    return this.makeProxy("Array", [typecode, init]) as ArrayProxy<T>;
  }
}

function checkInt(name: string, v: number): number {
  if (!Number.isInteger(v)) {
    throw new TypeError(`${name} must be an integer: current value is ${v}`);
  }
  return v;
}

function checkPermits(v: number): number {
  if (!Number.isInteger(v) || v < 0) {
    throw new ValueError(`semaphore initial value must be >= 0: current value is ${v}`);
  }
  return v;
}

/**
 * Options of {@link Manager}.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager({ authkey: "for proxies only" });
 * ```
 */
export interface ManagerOptions {
  /** The authkey; default: this process tree's key. */
  authkey?: AuthKey;
}

/**
 * Starts a {@link SyncManager} whose server runs in its own (daemon) worker (Python's
 * `multiprocessing.Manager()`). `await using` shuts it down; if its parent dies first, the
 * server dies with it.
 *
 * @example
 * ```ts
 * import { Manager } from "jsr:@denomp/multiprocessing";
 * await using manager = await Manager();
 * const d = manager.dict<string, number[]>();
 * await d.set("xs", [1]);
 * const xs = (await d.get("xs"))!;
 * xs.push(2); // changes the local copy only, as in Python...
 * await d.set("xs", xs); // ...so assign it back
 * ```
 */
export async function Manager(options?: ManagerOptions): Promise<SyncManager> {
  const m = new SyncManager({
    authkey: optionsOf(options, "Manager", "Manager({ authkey })").authkey,
  });
  await m.start();
  return m;
}
