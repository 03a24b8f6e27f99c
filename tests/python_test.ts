// Talking to real CPython (issue 17): every `python3` / `python3.x` found on PATH (3.8 or newer)
// runs tests/fixtures/py_peer.py against denomp's Listener and Client, both directions. A
// hand-made peer in that script speaks each handshake form (the legacy bare HMAC-MD5 of Python
// <= 3.11, and each `{digest}` CPython allows) whatever Python runs it. Without any python3 on
// PATH these tests are skipped with a message (CI installs Debian's python3: see .ci/run).

import assert from "node:assert/strict";
import { wrapSocket } from "../lib/connection/socket.ts";
import { answerChallenge, deliverChallenge, type Digest } from "../lib/connection/auth.ts";
import { Client, Listener } from "../lib/connection/listener.ts";
import { AuthenticationError, ValueError } from "../lib/core/errors.ts";
import * as pickle from "../lib/pickle/pickle.ts";
import { findPythons, type Python, PythonPeer, skipWithoutPython } from "./_python.ts";

const PEER = new URL("./fixtures/py_peer.py", import.meta.url).pathname;
const KEY = "the shared secret";
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

const pythons = await findPythons("python_test");
const noPython = skipWithoutPython(
  pythons,
  "python_test",
  "CPython interop",
  "the tests against CPython",
);
/** Runs the hand-made peer: any Python does; the newest found. */
const anyPython = pythons.at(-1);

/** A running py_peer.py. */
class Peer extends PythonPeer {
  constructor(python: Python, args: (string | number)[]) {
    super(python, PEER, args, 60_000);
  }

  /** Waits for the peer to exit; returns what it printed after the port line. */
  override async done(): Promise<string> {
    return (await super.done()).replace(/^port \d+\n/, "");
  }
}

/** A denomp Listener's peer: accepts it and runs the bytes exchange of py_peer.py. */
async function serveOne(listener: Listener): Promise<void> {
  const conn = await listener.accept();
  try {
    const got = dec(await conn.recvBytes());
    await conn.sendBytes(enc(`pong:${got}`));
  } finally {
    conn.close();
  }
}

/** The client side of the exchange: sends "ping", expects "pong:ping". */
async function pingOver(port: number, authkey: string): Promise<void> {
  const conn = await Client({ port }, { authkey });
  try {
    await conn.sendBytes(enc("ping"));
    assert.equal(dec(await conn.recvBytes()), "pong:ping");
  } finally {
    conn.close();
  }
}

for (const py of pythons) {
  Deno.test(`Python ${py.version}: its Client talks to a denomp Listener and denomp's Client to its Listener`, async () => {
    await using listener = new Listener({ authkey: KEY });
    const client = new Peer(py, ["connect", listener.address.port, KEY]);
    await serveOne(listener);
    assert.equal(await client.done(), "got pong:ping\n");

    const server = new Peer(py, ["listen", KEY, 1]);
    await pingOver(Number(await server.waitFor(/^port (\d+)$/m)), KEY);
    assert.equal(await server.done(), "served ping\n");
  });

  Deno.test(`Python ${py.version}: a wrong key is refused on both sides; each listener then serves the next good peer`, async () => {
    // Python's Client with a wrong key, then a good one, to one denomp Listener.
    await using listener = new Listener({ authkey: KEY });
    const wrong = new Peer(py, ["connect", listener.address.port, "not the key"]);
    await assert.rejects(listener.accept(), (e: Error) => {
      assert.ok(e instanceof AuthenticationError);
      assert.match(e.message, /^digest received was wrong/);
      return true;
    });
    assert.match(await wrong.done(), /^refused AuthenticationError: digest sent was rejected\n$/);
    const good = new Peer(py, ["connect", listener.address.port, KEY]);
    await serveOne(listener);
    assert.equal(await good.done(), "got pong:ping\n");

    // denomp's Client with a wrong key, then a good one, to one Python Listener.
    const server = new Peer(py, ["listen", KEY, 2]);
    const port = Number(await server.waitFor(/^port (\d+)$/m));
    await assert.rejects(Client({ port }, { authkey: "not the key" }), (e: Error) => {
      assert.ok(e instanceof AuthenticationError);
      assert.equal(e.message, "digest sent was rejected");
      return true;
    });
    await pingOver(port, KEY);
    assert.equal(
      await server.done(),
      "refused AuthenticationError: digest received was wrong\nserved ping\n",
    );
  });
}

for (const py of pythons) {
  Deno.test(`Python ${py.version}: serializer "pickle": send/recv interoperate with its Connection.send/recv, both directions`, async () => {
    // Its Client sends {"a": 1, "t": (1, 2)}; the reply's tuple is sent with pickle.tuple.
    await using listener = new Listener({ authkey: KEY, serializer: "pickle" });
    const client = new Peer(py, ["connect", listener.address.port, KEY, "pickle"]);
    const conn = await listener.accept();
    const got = await conn.recv();
    assert.deepEqual(got, { a: 1, t: [1, 2] }); // a tuple arrives as an array
    await conn.send({ got, t: pickle.tuple(3, 4) });
    conn.close();
    assert.equal(await client.done(), "got {'got': {'a': 1, 't': [1, 2]}, 't': (3, 4)}\n");

    // denomp's Client to its Listener.
    const server = new Peer(py, ["listen", KEY, 1, "pickle"]);
    const port = Number(await server.waitFor(/^port (\d+)$/m));
    const c = await Client({ port }, { authkey: KEY, serializer: "pickle" });
    await c.send({ a: 1, t: pickle.tuple(1, 2), big: 2n ** 70n });
    assert.deepEqual(await c.recv(), { got: { a: 1, t: [1, 2], big: 2n ** 70n }, t: [3, 4] });
    c.close();
    assert.equal(
      await server.done(),
      "served {'a': 1, 't': (1, 2), 'big': 1180591620717411303424}\n",
    );
  });
}

const FORMS = ["legacy", "md5", "sha256", "sha384", "sha3_256", "sha3_384"];

for (const form of FORMS) {
  Deno.test({
    name: `a hand-made Python peer whose handshake is ${form}: both directions`,
    ignore: noPython,
    async fn() {
      await using listener = new Listener({ authkey: KEY });
      const client = new Peer(anyPython!, ["hand-connect", listener.address.port, KEY, form]);
      await serveOne(listener);
      assert.equal(await client.done(), "got pong:ping\n");

      const server = new Peer(anyPython!, ["hand-listen", KEY, form]);
      await pingOver(Number(await server.waitFor(/^port (\d+)$/m)), KEY);
      assert.equal(await server.done(), "served ping\n");
    },
  });
}

Deno.test({
  name: "a legacy-MD5 peer with a wrong key is told the digest was wrong, both directions",
  ignore: noPython,
  async fn() {
    await using listener = new Listener({ authkey: KEY });
    const client = new Peer(anyPython!, ["hand-connect", listener.address.port, "nope", "legacy"]);
    await assert.rejects(listener.accept(), /^AuthenticationError: digest received was wrong/);
    assert.equal(await client.done(), "refused AuthenticationError: digest sent was rejected\n");

    const server = new Peer(anyPython!, ["hand-listen", "nope", "legacy"]);
    const port = Number(await server.waitFor(/^port (\d+)$/m));
    await assert.rejects(Client({ port }, { authkey: KEY }), /digest sent was rejected/);
    assert.equal(await server.done(), "refused AuthenticationError: digest received was wrong\n");
  },
});

Deno.test({
  name: "a peer using a digest CPython does not allow gets an error saying so, not 'wrong key'",
  ignore: noPython,
  async fn() {
    await using listener = new Listener({ authkey: KEY });
    const client = new Peer(anyPython!, ["hand-connect", listener.address.port, KEY, "blake2b"]);
    await assert.rejects(listener.accept(), (e: Error) => {
      assert.ok(e instanceof AuthenticationError);
      assert.match(
        e.message,
        /^unsupported digest: the peer's answer uses \{blake2b\}; supported: md5, sha256/,
      );
      return true;
    });
    assert.equal(await client.done(), "refused AuthenticationError: digest sent was rejected\n");

    const server = new Peer(anyPython!, ["hand-listen", KEY, "blake2b"]);
    const port = Number(await server.waitFor(/^port (\d+)$/m));
    await assert.rejects(Client({ port }, { authkey: KEY }), (e: Error) => {
      assert.ok(e instanceof AuthenticationError);
      assert.match(e.message, /^unsupported digest: the peer's challenge uses \{blake2b\}/);
      return true;
    });
    assert.match(await server.done(), /^refused /); // it sees the connection dropped
  },
});

Deno.test("denomp to denomp: deliverChallenge offers any digest CPython allows; an unknown one is a ValueError", async () => {
  const digests: Digest[] = ["md5", "sha256", "sha384", "sha3_256", "sha3_384"];
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    for (const digest of digests) {
      const [server, client] = await Promise.all([
        tcp.accept().then((s) => wrapSocket(s)),
        Deno.connect({ hostname: "127.0.0.1", port: (tcp.addr as Deno.NetAddr).port }).then((
          s,
        ) => wrapSocket(s)),
      ]);
      await Promise.all([deliverChallenge(server, KEY, digest), answerChallenge(client, KEY)]);
      await Promise.all([deliverChallenge(client, KEY, digest), answerChallenge(server, KEY)]);
      const wrong = await Promise.allSettled([
        deliverChallenge(server, KEY, digest),
        answerChallenge(client, "nope"),
      ]);
      assert.deepEqual(wrong.map((r) => r.status), ["rejected", "rejected"]);
      server.close();
      client.close();
    }
    const [server, client] = await Promise.all([
      tcp.accept().then((s) => wrapSocket(s)),
      Deno.connect({ hostname: "127.0.0.1", port: (tcp.addr as Deno.NetAddr).port }).then((s) =>
        wrapSocket(s)
      ),
    ]);
    await assert.rejects(
      deliverChallenge(server, KEY, "blake2b" as Digest),
      /ValueError: unsupported digest "blake2b": use one of md5, sha256, sha384, sha3_256, sha3_384/,
    );
    server.close();
    client.close();
  } finally {
    tcp.close();
  }
});

Deno.test('serializer: "pickle" is chosen per connection (denomp to denomp too); a bad value is a ValueError at once', async () => {
  await using listener = new Listener({ serializer: "pickle" });
  const [server, client] = await Promise.all([
    listener.accept(),
    Client(listener.address, { serializer: "pickle" }),
  ]);
  await client.send({ n: 1, s: new Set(["x"]) });
  const bytes = await (async () => {
    // What travels is a pickle: the peer's raw bytes start with PROTO 4.
    await client.send([1]);
    assert.deepEqual(await server.recv(), { n: 1, s: new Set(["x"]) });
    return await server.recvBytes();
  })();
  assert.deepEqual([bytes[0], bytes[1]], [0x80, 4]);
  assert.deepEqual(pickle.loads(bytes), [1]);
  server.close();
  client.close();
  assert.throws(
    () => new Listener({ serializer: "json" as "pickle" }),
    (e: Error) =>
      e instanceof ValueError && /serializer must be "denomp" or "pickle"/.test(e.message),
  );
  await assert.rejects(
    Client(listener.address, { serializer: "json" as "pickle" }),
    /ValueError: serializer must be "denomp" or "pickle": current value is "json"/,
  );
});

Deno.test("framing: Python's long form (-1, then an 8-byte length) is read; an oversized one is refused by its size", async () => {
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (tcp.addr as Deno.NetAddr).port;
  try {
    const [raw, conn] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port }),
      tcp.accept().then((s) => wrapSocket(s, { maxMessageSize: 1000 })),
    ]);
    // What CPython writes for a message over 2 GiB - 1, here with a short body; then a usual frame,
    // split at an awkward place; then a long-form header announcing 2^33 bytes.
    const long = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5, ...enc("hello")];
    await raw.write(new Uint8Array(long.slice(0, 7)));
    await raw.write(new Uint8Array([...long.slice(7), 0, 0, 0, 2, ...enc("ok")]));
    assert.equal(dec(await conn.recvBytes()), "hello");
    assert.equal(dec(await conn.recvBytes()), "ok");
    await raw.write(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 0, 0, 0, 0]));
    await assert.rejects(conn.recvBytes(), /message of 8589934592 bytes, over the limit of 1000/);
    raw.close();
    conn.close();
  } finally {
    tcp.close();
  }
});
