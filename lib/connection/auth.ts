/**
 * Authentication of a socket connection: CPython's `deliver_challenge` / `answer_challenge`, a
 * mutual HMAC challenge before any data, in every form CPython 3.8 to 3.14 speaks (`{sha256}` and
 * the other digests it allows, and the bare HMAC-MD5 of Python 3.11 and older).
 *
 * @module
 */

import { AuthenticationError, ValueError } from "../core/errors.ts";
import { type Connection, decodeBytes, transportOf } from "./connection.ts";
import { HANDSHAKE_MAX, SocketTransport } from "./socket.ts";

// ---------------------------------------------------------------------------------------------
// Authentication: CPython's deliver_challenge / answer_challenge, every form 3.8 to 3.14 speak.
//
// Python 3.12 added a `{digest}` prefix to the challenge and to the answer; 3.11 and older send a
// bare 20-byte challenge and answer any challenge with a bare 16-byte HMAC-MD5. The lengths tell
// the two apart (no prefixed message is 16 or 20 bytes long), so, as CPython 3.12+ does, a
// client answers a 20-byte challenge with bare HMAC-MD5, and a server offering `{sha256}`
// accepts a bare 16-byte HMAC-MD5 answer: an old peer cannot read the prefix, so it MACs the
// whole challenge, prefix included, with MD5. The MAC always covers the prefix, so a
// man-in-the-middle cannot swap the offered digest without breaking the answer.

const CHALLENGE = new TextEncoder().encode("#CHALLENGE#");
const WELCOME = new TextEncoder().encode("#WELCOME#");
const FAILURE = new TextEncoder().encode("#FAILURE#");
/** Random bytes after the `{digest}` prefix of a challenge (CPython 3.12+: 40, must be > 20). */
const MESSAGE_LENGTH = 40;
/** A challenge of this length is a legacy (<= 3.11) server's: HMAC-MD5, no prefix. */
const MD5ONLY_MESSAGE_LENGTH = 20;
/** An answer of this length is a legacy client's bare HMAC-MD5. */
const MD5_DIGEST_LENGTH = 16;

/** An HMAC digest of the handshake, as CPython names them (its `_ALLOWED_DIGESTS`). */
export type Digest = "md5" | "sha256" | "sha384" | "sha3_256" | "sha3_384";

/**
 * Each {@link Digest}'s `node:crypto` hash and MAC length in bytes (the `Record` type makes the
 * table and the type list the same names). Every check and MAC goes through this table.
 */
const DIGESTS: Readonly<Record<Digest, { hash: string; length: number }>> = {
  md5: { hash: "md5", length: 16 },
  sha256: { hash: "sha256", length: 32 },
  sha384: { hash: "sha384", length: 48 },
  sha3_256: { hash: "sha3-256", length: 32 },
  sha3_384: { hash: "sha3-384", length: 48 },
};

const DIGEST_NAMES = Object.keys(DIGESTS) as Digest[];
const SUPPORTED = `${DIGEST_NAMES.join(", ")}, or a legacy bare HMAC-MD5`;

/** A shared secret for `Listener`/`Client`: bytes, or a string (UTF-8). */
export type AuthKey = Uint8Array | string;

export function keyBytes(k: AuthKey): Uint8Array {
  if (typeof k === "string") return new TextEncoder().encode(k);
  if (k instanceof Uint8Array) return k;
  throw new TypeError(`authkey should be a Uint8Array or a string: got ${typeof k}`);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), (o += p.length);
  return out;
}

function startsWith(b: Uint8Array, prefix: Uint8Array): boolean {
  return b.length >= prefix.length && prefix.every((x, i) => b[i] === x);
}

function tagOf(digest: Digest): Uint8Array {
  return new TextEncoder().encode(`{${digest}}`);
}

/**
 * `node:crypto` (WebCrypto has no MD5, which the legacy handshake needs), loaded by the first
 * handshake rather than on import: loading it costs ~15 ms, and every isolate that imports this
 * module (a worker handed a Pipe end, a program importing mod.ts) would pay it.
 */
let nodeCrypto: typeof import("node:crypto") | undefined;

async function loadCrypto(): Promise<void> {
  nodeCrypto ??= await import("node:crypto");
}

/** HMAC of `data` (after {@link loadCrypto}). */
function hmac(authkey: AuthKey, digest: Digest, data: Uint8Array): Uint8Array {
  return nodeCrypto!.createHmac(DIGESTS[digest].hash, keyBytes(authkey)).update(data).digest();
}

/**
 * Which digest a challenge or an answer uses, and its payload (CPython's
 * `_get_digest_name_and_payload`): `"legacy"` for a bare 16- or 20-byte message (HMAC-MD5),
 * else the `{digest}` prefix's. `what` names the message for the error: a prefix naming a digest
 * CPython does not allow, or no prefix at all, is refused with the reason (not "wrong key").
 */
function digestOf(message: Uint8Array, what: string): [Digest | "legacy", Uint8Array] {
  if (message.length === MD5ONLY_MESSAGE_LENGTH || message.length === MD5_DIGEST_LENGTH) {
    return ["legacy", message];
  }
  // Only the table's names are accepted (as CPython's); a longer printable name is still read,
  // so that the error can say which digest the peer wanted.
  const head = new TextDecoder().decode(message.subarray(0, 34));
  const m = /^\{([\x21-\x7c\x7e]{1,32})\}/.exec(head);
  if (!m) {
    throw new AuthenticationError(
      `protocol error: ${what} of ${message.length} bytes has no {digest} prefix ` +
        `(and is not a legacy 16/20-byte HMAC-MD5 one)`,
    );
  }
  if (!Object.hasOwn(DIGESTS, m[1])) {
    throw new AuthenticationError(
      `unsupported digest: ${what} uses {${m[1]}}; supported: ${SUPPORTED}`,
    );
  }
  return [m[1] as Digest, message.subarray(m[0].length)];
}

function socketOf(c: Connection<unknown>): SocketTransport {
  const t = transportOf(c);
  if (!(t instanceof SocketTransport)) throw new TypeError("expected a socket Connection");
  return t;
}

/** Receives one handshake message (at most 256 bytes); any failure is an AuthenticationError. */
async function recvHandshake(c: Connection<unknown>, step: string): Promise<Uint8Array> {
  const t = socketOf(c);
  try {
    return await t.withLimit(HANDSHAKE_MAX, () => t.recv(decodeBytes));
  } catch (e) {
    throw new AuthenticationError(
      `protocol error during authentication (${step}): ${(e as Error).message}`,
      { cause: e },
    );
  }
}

/** Checks a peer's answer to `message` (CPython 3.12+'s `_verify_challenge`). */
function verifyAnswer(authkey: AuthKey, message: Uint8Array, response: Uint8Array): void {
  const [found, mac] = digestOf(response, "the peer's answer");
  const digest = found === "legacy" ? "md5" : found;
  if (mac.length !== DIGESTS[digest].length) {
    throw new AuthenticationError(
      `the peer's ${digest} answer is ${mac.length} bytes long, not ${DIGESTS[digest].length}`,
    );
  }
  if (!nodeCrypto!.timingSafeEqual(hmac(authkey, digest, message), mac)) {
    throw new AuthenticationError("digest received was wrong");
  }
}

/**
 * The server side of the challenge (Python's `deliver_challenge`): sends a random challenge
 * offering `digest` (default `"sha256"`, as CPython 3.12+) and checks the peer's HMAC of it with
 * `authkey`. Any digest CPython allows is accepted in the answer, and so is the bare HMAC-MD5 of
 * Python 3.11 and older. Throws `AuthenticationError` (after telling the peer) when the answer is
 * wrong or uses a digest that is not supported (the message says which).
 *
 * @example
 * ```ts ignore
 * import { answerChallenge, deliverChallenge, wrapSocket } from "jsr:@denomp/multiprocessing";
 * const conn = wrapSocket(await listener.accept());
 * await deliverChallenge(conn, "secret");
 * await answerChallenge(conn, "secret");
 * ```
 */
export async function deliverChallenge(
  c: Connection<unknown>,
  authkey: AuthKey,
  digest: Digest = "sha256",
): Promise<void> {
  if (!Object.hasOwn(DIGESTS, digest)) {
    throw new ValueError(
      `unsupported digest ${JSON.stringify(digest)}: use one of ${DIGEST_NAMES.join(", ")}`,
    );
  }
  await loadCrypto();
  const message = concat(tagOf(digest), crypto.getRandomValues(new Uint8Array(MESSAGE_LENGTH)));
  await c.sendBytes(concat(CHALLENGE, message));
  const response = await recvHandshake(c, "waiting for the digest");
  try {
    verifyAnswer(authkey, message, response);
  } catch (e) {
    await c.sendBytes(FAILURE).catch(() => {});
    throw e;
  }
  await c.sendBytes(WELCOME);
}

/**
 * The client side of the challenge (Python's `answer_challenge`): answers the peer's challenge
 * with an HMAC under `authkey`, in the digest the challenge names (a legacy 20-byte challenge of
 * Python 3.11 and older gets a bare HMAC-MD5). Throws `AuthenticationError` when the peer rejects
 * the answer, or when its challenge names a digest that is not supported (the message says so).
 *
 * @example
 * ```ts ignore
 * import { answerChallenge, deliverChallenge, wrapSocket } from "jsr:@denomp/multiprocessing";
 * const conn = wrapSocket(await Deno.connect({ port: 6000 }));
 * await answerChallenge(conn, "secret");
 * await deliverChallenge(conn, "secret");
 * ```
 */
export async function answerChallenge(c: Connection<unknown>, authkey: AuthKey): Promise<void> {
  await loadCrypto();
  const challenge = await recvHandshake(c, "waiting for the challenge");
  if (!startsWith(challenge, CHALLENGE)) {
    throw new AuthenticationError("protocol error: expected a challenge");
  }
  const message = challenge.subarray(CHALLENGE.length);
  if (message.length < MD5ONLY_MESSAGE_LENGTH) {
    throw new AuthenticationError(`protocol error: challenge too short: ${message.length} bytes`);
  }
  const [digest] = digestOf(message, "the peer's challenge");
  await c.sendBytes(
    digest === "legacy"
      ? hmac(authkey, "md5", message)
      : concat(tagOf(digest), hmac(authkey, digest, message)),
  );
  const answer = await recvHandshake(c, "waiting for the verdict");
  if (answer.length !== WELCOME.length || !startsWith(answer, WELCOME)) {
    throw new AuthenticationError("digest sent was rejected");
  }
}

/** Runs `f` with a time limit; on expiry, closes `c` (which makes `f` fail) and rejects. */
export async function within<R>(
  ms: number,
  c: Connection<unknown>,
  f: () => Promise<R>,
): Promise<R> {
  if (ms === Infinity) return f();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let expired = false;
  try {
    return await Promise.race([
      f(),
      new Promise<never>((_, reject) =>
        timer = setTimeout(() => {
          expired = true;
          c.close();
          reject(new AuthenticationError(`authentication did not finish within ${ms} ms`));
        }, ms)
      ),
    ]);
  } catch (e) {
    if (expired) throw new AuthenticationError(`authentication did not finish within ${ms} ms`);
    throw e;
  } finally {
    clearTimeout(timer);
  }
}
