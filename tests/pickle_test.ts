// The pickle codec (lib/pickle/pickle.ts): the JS <-> Python mapping, memo (shared references and
// cycles), refusals naming the opcode and the global, a fuzz of random and malicious pickles,
// and real CPython (every python3.x on PATH) reading our pickles and writing its own.
import assert from "node:assert/strict";
import { pickle, SerializationError } from "../mod.ts";

const { dumps, loads } = pickle;
const PEER = new URL("./fixtures/pickle_peer.py", import.meta.url).pathname;

/** Bytes from a Python-style byte string literal (latin-1). */
const b = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const rt = (v: unknown) => loads(dumps(v));

// ---------------------------------------------------------------------------------------------
// A description of a value after the mapping, computed the same way by tests/fixtures/
// pickle_peer.py: equal descriptions mean Python and JS hold the same value.

type Desc = unknown[];
const hex = (u: Uint8Array) => Array.from(u, (x) => x.toString(16).padStart(2, "0")).join("");
const asciiJson = (d: Desc) =>
  JSON.stringify(d).replace(
    /[\u0080-\uffff]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
  );

function desc(v: unknown, refs = new Map<unknown, number>()): Desc {
  if (v === null || v === undefined) return ["none"];
  if (typeof v === "boolean") return ["bool", v];
  if (typeof v === "bigint") return ["int", v.toString()];
  if (typeof v === "number") {
    if (Number.isInteger(v) && !Object.is(v, -0)) return ["int", BigInt(v).toString()];
    const dv = new DataView(new ArrayBuffer(8));
    dv.setFloat64(0, v);
    return ["float", hex(new Uint8Array(dv.buffer))];
  }
  if (typeof v === "string") return ["str", v];
  if (v instanceof Uint8Array) return ["bytes", hex(v)];
  if (v instanceof Date) return ["date", v.getTime()];
  const size = v instanceof Map || v instanceof Set
    ? v.size
    : Array.isArray(v)
    ? v.length
    : Object.keys(v as object).length;
  if (size > 0) {
    if (refs.has(v)) return ["ref", refs.get(v)];
    refs.set(v, refs.size);
  }
  if (Array.isArray(v)) return ["list", v.map((x) => desc(x, refs))];
  if (v instanceof Map) return ["dict", [...v].map(([k, x]) => [desc(k), desc(x, refs)])];
  if (v instanceof Set) return ["set", [...v].map((x) => asciiJson(desc(x))).sort()];
  return ["dict", Object.entries(v as object).map(([k, x]) => [["str", k], desc(x, refs)])];
}

// ---------------------------------------------------------------------------------------------
// Random values (seeded): every mapped type, shared references and cycles.

function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function generator(seed: number) {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: T[]): T => xs[int(xs.length)];
  const containers: object[] = [];
  let unique = 0;
  const str = (): string => {
    const alphabets = ["abcxyz_-", "héllo wörld", "日本語", "\u{1f600}\u{1f680}", "\ud800\udfffq"];
    const a = [...pick(alphabets)];
    const n = pick([0, 1, 5, 20, 90, 300]);
    let s = "";
    for (let i = 0; i < n; i++) s += pick(a);
    return s;
  };
  const scalar = (): unknown =>
    pick<() => unknown>([
      () => null,
      () => undefined,
      () => r() < 0.5,
      () => int(300) - 20,
      () => int(2 ** 31) * (r() < 0.5 ? -1 : 1),
      () => Math.floor(r() * Number.MAX_SAFE_INTEGER) * (r() < 0.5 ? -1 : 1),
      () =>
        BigInt(Math.floor(r() * 2 ** 50)) * 2n ** BigInt(10 + int(300)) * (r() < 0.5 ? -1n : 1n),
      () => (r() - 0.5) * 10 ** (int(40) - 20),
      () => pick([NaN, Infinity, -Infinity, -0, 5e-324, 1e300, 0.1]),
      str,
      () => Uint8Array.from({ length: pick([0, 3, 300]) }, () => int(256)),
      () =>
        new Date(
          Date.UTC(1 + int(9998), int(12), 1 + int(28), int(24), int(60), int(60), int(1000)),
        ),
    ])();
  // Hashable and distinct in Python too: no bools (True == 1), no small bigints (2n == 2).
  const key = (): unknown =>
    pick<() => unknown>([
      () => `k${unique++}${str()}`,
      () => unique++,
      () => unique++ + 0.5,
      () => [unique++, str()],
      () => null,
    ])();
  const value = (depth: number): unknown => {
    if (depth > 3 || r() < 0.45) return scalar();
    if (containers.length && r() < 0.08) return pick(containers); // shared reference
    const kind = int(4);
    if (kind === 0) {
      const a: unknown[] = [];
      containers.push(a);
      for (let i = int(6); i > 0; i--) a.push(r() < 0.05 ? a : value(depth + 1)); // maybe a cycle
      return a;
    }
    if (kind === 1) {
      const o: Record<string, unknown> = {};
      containers.push(o);
      for (let i = int(6); i > 0; i--) o[`k${str()}`] = r() < 0.05 ? o : value(depth + 1);
      return o;
    }
    if (kind === 2) {
      const m = new Map<unknown, unknown>();
      containers.push(m);
      for (let i = int(5); i > 0; i--) m.set(key(), value(depth + 1));
      return m;
    }
    const s = new Set<unknown>();
    for (let i = int(5); i > 0; i--) s.add(key());
    return s;
  };
  return () => value(0);
}

// ---------------------------------------------------------------------------------------------

Deno.test("pickle: scalars map as API.md says, both ways", () => {
  for (
    const v of [null, true, false, 0, 1, 255, 256, 65535, 65536, -1, -256, 2 ** 31 - 1, -(2 ** 31)]
  ) {
    assert.equal(rt(v), v);
  }
  // int <-> number when a safe integer, else bigint; a bigint that fits becomes a number.
  assert.equal(rt(Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER);
  assert.equal(rt(-Number.MAX_SAFE_INTEGER), -Number.MAX_SAFE_INTEGER);
  assert.equal(rt(2 ** 53), 2n ** 53n);
  assert.equal(rt(1e20), 100000000000000000000n);
  assert.equal(rt(5n), 5);
  assert.equal(rt(-(2n ** 200n) + 1n), -(2n ** 200n) + 1n);
  assert.equal(rt(2n ** 8000n), 2n ** 8000n); // LONG4
  // floats: NaN, infinities, -0 (kept as the float -0.0), subnormals.
  assert.ok(Number.isNaN(rt(NaN)));
  assert.equal(rt(Infinity), Infinity);
  assert.equal(rt(-Infinity), -Infinity);
  assert.ok(Object.is(rt(-0), -0));
  assert.equal(rt(5e-324), 5e-324);
  assert.equal(rt(0.1), 0.1);
  // strings: ASCII, non-ASCII, astral, lone surrogates (as Python's surrogatepass), lengths
  // around SHORT_BINUNICODE's 255 bytes.
  for (
    const s of [
      "",
      "a",
      "héllo",
      "日本",
      "\u{1f600}",
      "\ud800",
      "a\udc00b",
      "x".repeat(85),
      "é".repeat(86),
      "日".repeat(100),
      "y".repeat(70000),
      "\ud83d".repeat(90),
    ]
  ) {
    assert.equal(rt(s), s);
  }
  assert.deepEqual(rt(new Uint8Array([0, 1, 255])), new Uint8Array([0, 1, 255]));
  assert.equal(rt(undefined), null);
});

Deno.test("pickle: containers, keys and the other JS types", () => {
  assert.deepEqual(rt([1, "a", [2, [3]]]), [1, "a", [2, [3]]]);
  assert.deepEqual(rt({ a: 1, b: { c: [true] } }), { a: 1, b: { c: [true] } });
  // A Map whose keys are all str arrives as a plain object; any other key keeps it a Map.
  assert.deepEqual(rt(new Map([["a", 1]])), { a: 1 });
  const m = rt(
    new Map<unknown, unknown>([["a", 1], [2, "b"], [null, 3], [[1, [2]], "tuple"]]),
  ) as Map<unknown, unknown>;
  assert.ok(m instanceof Map);
  assert.deepEqual([...m.keys()].slice(0, 3), ["a", 2, null]);
  assert.deepEqual([...m.keys()][3], [1, [2]]); // a tuple key, nested tuple inside
  const s = rt(new Set([1, "a", new Set([2])])) as Set<unknown>;
  assert.ok(s instanceof Set && s.has(1) && s.has("a"));
  assert.deepEqual([...s][2], new Set([2])); // frozenset
  assert.deepEqual(rt({ ["__proto__"]: 1 }), JSON.parse('{"__proto__": 1}'));
  assert.equal(Object.getPrototypeOf(rt(JSON.parse('{"__proto__": {"x": 1}}'))), Object.prototype);
  const d = new Date(Date.UTC(2020, 0, 2, 3, 4, 5, 6));
  assert.deepEqual(rt(d), d);
  assert.deepEqual(rt(new Int16Array([-1, 2])), [-1, 2]);
  assert.deepEqual(rt(new Float64Array([0.5])), [0.5]);
  assert.deepEqual(rt(new BigInt64Array([-(2n ** 60n)])), [-(2n ** 60n)]);
  assert.deepEqual(rt(new Uint8Array([1, 2]).buffer), new Uint8Array([1, 2]));
  assert.deepEqual(rt(new DataView(new Uint8Array([1, 2, 3]).buffer, 1)), new Uint8Array([2, 3]));
  assert.deepEqual(rt(new Array(2)), [null, null]);
  // Batches of 1000 (APPENDS, SETITEMS, ADDITEMS) and a memo past 256 (LONG_BINGET).
  const big = Array.from({ length: 2500 }, (_, i) => ({ i }));
  assert.deepEqual(rt([big, big]), [big, big]);
  const obj = Object.fromEntries(big.map((_, i) => [`k${i}`, i]));
  assert.deepEqual(rt(obj), obj);
  const set = new Set(big.map((_, i) => i));
  assert.deepEqual(rt(set), set);
});

Deno.test("pickle: the exact bytes CPython writes for a W10 item", () => {
  // bytes(ForkingPickler.dumps({'i': 1, 'x': 0.5, 's': 'item-1', 'xs': [1, 2, 3]})) minus the
  // MEMOIZE after each str (we memoize containers only), with the FRAME length to match.
  const ours = dumps({ i: 1, x: 0.5, s: "item-1", xs: [1, 2, 3] });
  const expected = b(
    "\x80\x04\x95\x2f\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01iK\x01\x8c\x01xG?\xe0\x00\x00" +
      "\x00\x00\x00\x00\x8c\x01s\x8c\x06item-1\x8c\x02xs]\x94(K\x01K\x02K\x03eu.",
  );
  assert.deepEqual(ours, expected);
  assert.deepEqual(dumps(null, { protocol: 5 }).slice(0, 2), b("\x80\x05"));
});

Deno.test("pickle: shared references and cycles survive both ways", () => {
  const a: unknown[] = [1];
  a.push(a);
  const back = rt(a) as unknown[];
  assert.equal(back[1], back);
  const o: Record<string, unknown> = { x: 1 };
  o.self = o;
  const ob = rt(o) as Record<string, unknown>;
  assert.equal(ob.self, ob);
  const shared = { s: 1 };
  const pair = rt([shared, shared, new Map([[1, shared]])]) as [
    object,
    object,
    Map<number, object>,
  ];
  assert.equal(pair[0], pair[1]);
  assert.equal(pair[2].get(1), pair[0]);
  const bytes = new Uint8Array([7]);
  const bb = rt([bytes, bytes]) as Uint8Array[];
  assert.equal(bb[0], bb[1]);
  // A dict that turns into a Map (its key 1 is not a str) after a reference to it was taken:
  // CPython's pickle of `d = {}; d[1] = [d]`. Every reference is the Map.
  const cyc = loads(b("\x80\x04}\x94K\x01]\x94h\x00as.")) as Map<number, unknown[]>;
  assert.ok(cyc instanceof Map);
  assert.equal(cyc.get(1)![0], cyc);
  const m = new Map<unknown, unknown>();
  m.set(1, [m, { m }]);
  const mb = rt(m) as Map<number, [unknown, { m: unknown }]>;
  assert.ok(mb.get(1)![0] === mb && mb.get(1)![1].m === mb);
});

Deno.test("pickle: dumps refuses what Python cannot hold, naming the path", () => {
  const refuses = (v: unknown, re: RegExp, options?: pickle.DumpsOptions) =>
    assert.throws(
      () => dumps(v, options),
      (e) => e instanceof SerializationError && re.test(e.message),
    );
  refuses({ a: [1, () => 1] }, /^value\.a\[1\]: functions cannot be pickled/);
  refuses({ "a b": Symbol("s") }, /^value\["a b"\]: symbols cannot be pickled/);
  refuses([new (class Point {})()], /^value\[0\]: instances of Point cannot be pickled/);
  refuses(new Map([[{}, 1]]), /^value<Map entry 0>: a plain object cannot be a dict key/);
  refuses(new Set([new Map()]), /a Map cannot be a dict key or set member/);
  const cyclic: unknown[] = [];
  cyclic.push(cyclic);
  refuses(new Set([cyclic]), /an? array that contains itself cannot be a dict key/);
  refuses(new Date(NaN), /outside Python's datetime range/);
  refuses({ big: "x".repeat(1000) }, /larger than maxBytes \(100\)/, { maxBytes: 100 });
  // Deep nesting: a clear error, not a stack overflow.
  let deep: unknown = [];
  for (let i = 0; i < 100_000; i++) deep = [deep];
  refuses(deep, /nested deeper than maxDepth \(1000\)/);
  // With the limit lifted, the JS stack runs out: still a SerializationError, not a RangeError.
  refuses(deep, /nested too deeply for the JS stack/, { maxDepth: 200_000 });
  assert.throws(() => dumps(1, { protocol: 3 as 4 }), TypeError);
  // The shared writer is left clean after an error.
  assert.deepEqual(rt([1, 2]), [1, 2]);
});

/** Runs loads and returns its SerializationError's message (fails if anything else happens). */
function refusal(bytes: Uint8Array, options?: pickle.LoadsOptions): string {
  try {
    loads(bytes, options);
  } catch (e) {
    assert.ok(e instanceof SerializationError, `not a SerializationError: ${e}`);
    return e.message;
  }
  const text = JSON.stringify(new TextDecoder("latin1").decode(bytes.subarray(0, 80)));
  assert.fail(`loads accepted ${text}${bytes.length > 80 ? "..." : ""}`);
}

Deno.test("pickle: loads refuses globals and calls, naming the opcode and the global", () => {
  const cases: [string, RegExp][] = [
    ["cos\nsystem\n(S'echo hi'\ntR.", /^pickle byte 0: GLOBAL: GLOBAL os\.system is refused/],
    ["\x80\x04\x8c\x08builtins\x8c\x04eval\x93.", /STACK_GLOBAL builtins\.eval is refused/],
    ["\x80\x04\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.", /STACK_GLOBAL posix\.system/],
    ["])R.", /REDUCE of a list is refused/],
    ["c__builtin__\nset\n)\x81.", /NEWOBJ of builtins\.set is refused/],
    ["]}b.", /BUILD on a list .*is refused/],
    ["(i__main__\nFoo\n.", /INST __main__\.Foo is refused/],
    ["(c__builtin__\nset\no.", /OBJ is refused/],
    ["\x82\x01.", /EXT1 is refused/],
    ["P1\n.", /PERSID is refused/],
    ["N\x51.", /BINPERSID is refused/],
    ["\x80\x05\x97.", /NEXT_BUFFER: out-of-band buffers/],
    ["\x80\x05C\x01a\x98.", /READONLY_BUFFER: out-of-band buffers/],
    ["c__builtin__\nset\n.", /the global builtins\.set can only be an argument of REDUCE/],
    ["]c__builtin__\nset\na.", /APPEND: the global builtins\.set can only be/],
    ["c__builtin__\nset\n(I1\ntR.", /REDUCE builtins\.set\(int\): unexpected arguments/],
    ["c_codecs\nencode\n(Vx\nVrot13\ntR.", /encoding "rot13" is not supported/],
    [
      "\x80\x04\x8c\x08datetime\x8c\x08timezone\x93\x8c\x08datetime\x8c\x09timedelta\x93K\x00\x85R\x85R.",
      /a datetime\.timezone can only be an argument of REDUCE/,
    ],
  ];
  for (const [p, re] of cases) assert.match(refusal(b(p)), re, p);
});

Deno.test("pickle: loads reads every protocol's opcodes (hand-written pickles)", () => {
  const reads = (p: string, v: unknown, options?: pickle.LoadsOptions) =>
    assert.deepEqual(loads(b(p), options), v, p);
  // Protocol 0 text opcodes.
  reads("I01\n.", true);
  reads("I00\n.", false);
  reads("I-42\n.", -42);
  reads("L123456789012345678901234567890L\n.", 123456789012345678901234567890n);
  reads("F-1.5e-3\n.", -1.5e-3);
  reads("Fnan\n.", NaN);
  reads("F-inf\n.", -Infinity);
  reads("S'a\\'b\\n\\x41\\101'\n.", "a'b\nAA");
  reads('S"q"\n.', "q");
  reads("Va\\u00e9\\U0001f600\\\\u0041\xe9\n.", "aé\u{1f600}\\\\u0041é");
  const l = loads(b("(lp0\nI1\naI2\nag0\na.")) as unknown[]; // GET of the list itself
  assert.ok(l.length === 3 && l[0] === 1 && l[2] === l);
  reads("(dp0\nVa\np1\nI1\nsVb\nI2\ns.", { a: 1, b: 2 });
  reads("(I1\nI2\nd.", new Map([[1, 2]]));
  reads("(I1\nI2\nt.", [1, 2]);
  reads("(I1\nI2\nl.", [1, 2]);
  reads("I1\nI2\n0.", 1); // POP
  reads("I1\n(I2\nI3\n1.", 1); // POP_MARK
  const dup = loads(b("]2a.")) as unknown[]; // DUP
  assert.ok(dup.length === 1 && dup[0] === dup);
  // Python 2 str under each `encoding`.
  reads("U\x02\xc3\xa9.", "é", { encoding: "utf-8" });
  reads("U\x01\xe9.", "é", { encoding: "latin1" });
  reads("T\x01\x00\x00\x00\xe9.", new Uint8Array([0xe9]), { encoding: "bytes" });
  assert.match(refusal(b("U\x01\xe9.")), /not ASCII \(pass \{ encoding/);
  // Protocols 2-5.
  reads("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\xc0.", -(2n ** 70n));
  reads("\x80\x02\x8a\x00.", 0);
  reads("\x80\x02\x8a\x02\xff\x7f.", 32767);
  reads("\x80\x02\x8b\x01\x00\x00\x00\x80.", -128);
  reads("\x80\x02\x88\x89N\x87.", [true, false, null]);
  reads("\x80\x03C\x02abB\x01\x00\x00\x00c\x86.", [b("ab"), b("c")]);
  reads("\x80\x04\x8d\x01\x00\x00\x00\x00\x00\x00\x00z.", "z");
  reads("\x80\x04\x8e\x01\x00\x00\x00\x00\x00\x00\x00z.", b("z"));
  reads("\x80\x04\x8f(K\x01K\x02\x90.", new Set([1, 2]));
  reads("\x80\x04(K\x01\x91.", new Set([1]));
  reads("\x80\x05\x96\x01\x00\x00\x00\x00\x00\x00\x00z.", b("z"));
  reads("\x80\x04K\x07\x94r\xff\xff\xff\xff0j\xff\xff\xff\xff.", 7); // sparse memo keys
  reads("\x80\x04X\x03\x00\x00\x00\xed\xa0\x80.", "\ud800"); // surrogatepass
  reads("\x80\x04\x8c\x1babcdefghijklmnopqrstuvwx\xed\xb0\x80.", "abcdefghijklmnopqrstuvwx\udc00");
  assert.match(refusal(b("\x80\x04\x8c\x02\xc0\x80.")), /SHORT_BINUNICODE: invalid UTF-8/);
  assert.match(refusal(b("\x80\x04\x8c\x01\xff.")), /invalid UTF-8/);
});

Deno.test("pickle: malicious pickles get a clear error, at once, allocating nothing big", () => {
  const cases: [string, RegExp][] = [
    // Lengths claiming gigabytes, checked before anything is allocated.
    [
      "\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x40",
      /BINBYTES8: claims 4611686018427387904 bytes, only 0 left/,
    ],
    ["\x80\x05\x96\xff\xff\xff\xff\xff\xff\xff\x7fab", /BYTEARRAY8: claims \d+ bytes, only 2 left/],
    ["\x80\x04\x8d\x00\x00\x00\x00\x01\x00\x00\x00", /BINUNICODE8: claims 4294967296 bytes/],
    ["X\xff\xff\xff\xffabc", /BINUNICODE: claims 4294967295 bytes, only 3 left/],
    ["\x80\x02\x8b\xff\xff\xff\x7f\x01", /LONG4: claims 2147483647 bytes/],
    ["\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xffN.", /FRAME: claims \d+ bytes, only 2 left/],
    ["T\xff\xff\xff\xff.", /BINSTRING: negative length -1/],
    ["C\xffabc", /SHORT_BINBYTES: claims 255 bytes, only 3 left/],
    ["\x80\x02\x8b\xff\xff\xff\xff", /LONG4: negative length/],
    // Text arguments.
    ["I" + "9".repeat(5000) + "\n.", /INT: integer text has 5000 digits, more than 4300/],
    ["Iabc\n.", /INT: not an integer/],
    ["Fx\n.", /FLOAT: not a float/],
    ["I1", /INT: truncated: no end of line/],
    ["S'abc\n.", /STRING: the STRING argument must be quoted/],
    ["V\\u12\n.", /UNICODE: truncated \\uXXXX escape/],
    ["gx\n.", /GET: bad memo key "x"/],
    // Stack and memo misuse.
    ["h\x05.", /BINGET: memo key 5 was never stored/],
    ["a.", /APPEND: stack underflow/],
    ["(a.", /APPEND: stack underflow/],
    ["Ne.", /APPENDS: no MARK before it/],
    ["(Ne.", /APPENDS: stack underflow/],
    ["K\x01(K\x02e.", /APPENDS: cannot append to a int/],
    ["}(K\x01u.", /SETITEMS: odd number of items for a dict/],
    ["](K\x01K\x02u.", /SETITEMS: cannot set items on a list/],
    ["](K\x01\x90.", /ADDITEMS: cannot add items to a list/],
    ["N\x93.", /STACK_GLOBAL: stack underflow|STACK_GLOBAL: needs two str/],
    ["K\x01K\x02\x93.", /STACK_GLOBAL: needs two str, got int and int/],
    ["", /pickle byte 0: opcode: the pickle ends without STOP/],
    ["N", /the pickle ends without STOP/],
    [".", /STOP: stack underflow/],
    ["\xff", /unknown opcode 0xff/],
    ["\x80\x06N.", /PROTO: unsupported protocol 6/],
    ["(".repeat(2000) + ".", /MARK: MARKs nested deeper than maxDepth \(1000\)/],
  ];
  for (const [p, re] of cases) assert.match(refusal(b(p)), re, JSON.stringify(p.slice(0, 40)));

  // A pickle bomb: one list of 10,000 items, then set() of it called 100,000 times via the memo
  // (Python would build 10^9 set members); the calls' budget is the input's size.
  const bomb = "\x80\x04c__builtin__\nset\n\x94]\x94(" + "K\x01".repeat(10_000) + "e" +
    "h\x00h\x01\x85R0".repeat(100_000) + "N.";
  const t0 = performance.now();
  assert.match(refusal(b(bomb)), /REDUCE builtins\.set: the calls' arguments add up to more than/);
  assert.ok(performance.now() - t0 < 5000);

  // Deep nesting without MARKs: a million nested lists load (a loop, no recursion) ...
  const depth = 1_000_000;
  const deep = loads(b("]".repeat(depth) + "a".repeat(depth - 1) + ".")) as unknown[];
  let d = 0;
  for (let x = deep; x.length; x = x[0] as unknown[]) d++;
  assert.equal(d, depth - 1);
  // ... and writing them back is a clear error.
  assert.throws(() => dumps(deep), /nested deeper than maxDepth/);
});

Deno.test("pickle: fuzz — random and mutated pickles never crash, hang or escape as another error", () => {
  const r = rng(17);
  const int = (n: number) => Math.floor(r() * n);
  const next = generator(5);
  const valid = Array.from({ length: 200 }, () => dumps(next()));
  const opcodes = b(
    "()0125FIJKLMNPQRSTUVXabcdeghijlmopqrstu}]GBC\x80\x81\x82\x85\x86\x87\x88\x89" +
      "\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98.\n",
  );
  const t0 = performance.now();
  let errors = 0, values = 0;
  for (let i = 0; i < 20_000; i++) {
    let input: Uint8Array;
    const kind = i % 3;
    if (kind === 0) {
      // Random opcodes with random argument bytes.
      input = Uint8Array.from(
        { length: int(40) },
        () => r() < 0.6 ? opcodes[int(opcodes.length)] : int(256),
      );
    } else {
      // A valid pickle with bytes flipped, dropped or inserted.
      input = valid[int(valid.length)].slice();
      for (let k = 1 + int(3); k > 0; k--) {
        const at = int(input.length);
        const how = int(3);
        if (how === 0) input[at] = int(256);
        else if (how === 1) {
          input = Uint8Array.from([...input.subarray(0, at), ...input.subarray(at + 1)]);
        } else {input = Uint8Array.from([
            ...input.subarray(0, at),
            opcodes[int(opcodes.length)],
            ...input.subarray(at),
          ]);}
      }
      if (kind === 2) input = input.subarray(0, int(input.length + 1)); // truncated too
    }
    try {
      loads(input);
      values++;
    } catch (e) {
      if (!(e instanceof SerializationError)) {
        throw new Error(`loads(${JSON.stringify(Array.from(input))}) threw ${e}`);
      }
      assert.match(e.message, /^pickle byte \d+: /);
      errors++;
    }
  }
  assert.ok(errors > 1000 && values > 100, `${errors} errors, ${values} values`);
  assert.ok(performance.now() - t0 < 60_000, "the fuzz took over a minute");
});

// ---------------------------------------------------------------------------------------------
// Real CPython: every python3.x on PATH (the test is skipped, saying so, when there is none).

async function run(cmd: string, args: string[], stdin?: Uint8Array) {
  const child = new Deno.Command(cmd, { args, stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const w = child.stdin.getWriter();
  if (stdin) await w.write(stdin);
  await w.close();
  const out = await child.output();
  return {
    code: out.code,
    out: new TextDecoder().decode(out.stdout),
    err: new TextDecoder().decode(out.stderr),
  };
}

async function findPythons(): Promise<string[]> {
  const byVersion = new Map<string, string>();
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    let names: string[];
    try {
      names = [...Deno.readDirSync(dir || ".")].map((e) => e.name).filter((n) =>
        /^python3(\.\d+)?$/.test(n)
      );
    } catch {
      continue;
    }
    for (const name of names.sort()) {
      const path = `${dir}/${name}`;
      try {
        const r = await run(path, ["-c", "import sys; print(sys.version)"]);
        const version = r.out.split(" ")[0];
        if (r.code === 0 && !byVersion.has(version)) byVersion.set(version, `${path} (${version})`);
      } catch { /* not runnable */ }
    }
  }
  return [...byVersion.values()];
}

/** The executable of a `findPythons` entry. */
function exe(py: string): string {
  return py.split(" ")[0];
}

const pythons = await findPythons();
const decode64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
if (pythons.length === 0) {
  console.warn("pickle_test: no python3 on PATH: the CPython interop tests are skipped");
}

for (const py of pythons) {
  Deno.test({
    name: `pickle: ${py} loads 1,000 mixed values we pickle, and we load what it pickles back`,
    ignore: pythons.length === 0,
    fn: async () => {
      const next = generator(1);
      const values = Array.from({ length: 1000 }, () => next());
      const frames: Uint8Array[] = [];
      for (const v of values) {
        const p = dumps(v);
        const len = new Uint8Array(4);
        new DataView(len.buffer).setUint32(0, p.length);
        frames.push(len, p);
      }
      const input = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
      frames.reduce((at, f) => (input.set(f, at), at + f.length), 0);
      const r = await run(exe(py), [PEER, "echo"], input);
      assert.equal(r.code, 0, r.err);
      const { results } = JSON.parse(r.out) as {
        results: { desc?: Desc; pickles?: Record<string, string>; error?: string }[];
      };
      assert.equal(results.length, 1000);
      for (let i = 0; i < values.length; i++) {
        const want = desc(values[i]);
        const got = results[i];
        assert.equal(got.error, undefined, `value ${i}: Python failed: ${got.error}`);
        assert.deepEqual(got.desc, want, `value ${i}: Python sees another value`);
        for (const [protocol, p] of Object.entries(got.pickles!)) {
          assert.deepEqual(
            desc(loads(decode64(p))),
            want,
            `value ${i}, Python's protocol ${protocol}`,
          );
        }
      }
    },
  });

  Deno.test(`pickle: ${py}'s own values load right from every protocol 0-5`, async () => {
    const r = await run(exe(py), [PEER, "gen"]);
    assert.equal(r.code, 0, r.err);
    const { results } = JSON.parse(r.out) as {
      results: { name: string; desc: Desc; pickles: Record<string, string> }[];
    };
    const byName: Record<string, unknown[]> = {};
    for (const { name, desc: want, pickles } of results) {
      for (const [protocol, p] of Object.entries(pickles)) {
        const v = loads(decode64(p));
        assert.deepEqual(desc(v), want, `${name}, protocol ${protocol}`);
        (byName[name] ??= []).push(v);
      }
    }
    // The JS types, beyond what the description shows.
    for (const m of byName.intkeyed as Map<number, unknown[]>[]) {
      assert.ok(m instanceof Map && m.get(1)![0] === m);
    }
    for (const o of byName.selfdict as Record<string, unknown>[]) assert.equal(o.me, o);
    for (const o of byName.ordered) assert.deepEqual(o, { z: 1, a: 2 });
    for (const ds of byName.dates as Date[][]) assert.ok(ds.every((d) => d instanceof Date));
    for (const bs of byName.bytes as Uint8Array[][]) {
      assert.ok(bs.every((x) => x instanceof Uint8Array));
    }
    for (const [, , , , , , , set, frozen] of byName.containers as unknown[][]) {
      assert.ok(set instanceof Set && frozen instanceof Set);
    }
    for (const [a, c] of byName.memo as unknown[][]) assert.equal(a, c);
  });
}

// What a connection layer talking to Python managers needs: a class the caller allows
// (`globals`), and instances written as "call this global" (`reduce`).
class Token {
  typeid = "";
  address: unknown = null;
  id = "";
  __setstate__([typeid, address, id]: [string, unknown, string]) {
    Object.assign(this, { typeid, address, id });
  }
}
const managerGlobals = {
  "multiprocessing.managers.Token": () => new Token(),
  "builtins.KeyError": (args: unknown[]) =>
    Object.assign(new Error(String(args[0])), { name: "KeyError" }),
};
const reduceToken = (o: object) =>
  o instanceof Token
    ? {
      global: "multiprocessing.managers.Token",
      args: [],
      newobj: true,
      state: [o.typeid, o.address, o.id],
    }
    : undefined;

Deno.test("pickle: globals the caller allows, and instances written by reduce()", () => {
  // CPython 3.11: ForkingPickler.dumps(('#RETURN', Token('dict', ('127.0.0.1', 5000), '7f')))
  const fromPython = b(
    "\x80\x04\x95\x45\x00\x00\x00\x00\x00\x00\x00\x8c\x07#RETURN\x94\x8c\x18multiprocessing.managers" +
      "\x94\x8c\x05Token\x94\x93\x94)\x81\x94\x8c\x04dict\x94\x8c\x09127.0.0.1\x94M\x88\x13\x86\x94" +
      "\x8c\x027f\x94\x87\x94b\x86\x94.",
  );
  assert.match(refusal(fromPython), /STACK_GLOBAL multiprocessing\.managers\.Token is refused/);
  const [kind, token] = loads(fromPython, { globals: managerGlobals }) as [string, Token];
  assert.equal(kind, "#RETURN");
  assert.ok(token instanceof Token);
  assert.deepEqual([token.typeid, token.address, token.id], ["dict", ["127.0.0.1", 5000], "7f"]);
  const err = loads(b("\x80\x04\x8c\x08builtins\x8c\x08KeyError\x93\x8c\x01x\x85R."), {
    globals: managerGlobals,
  }) as Error;
  assert.ok(err instanceof Error && err.name === "KeyError" && err.message === "x");
  // An allowed global still cannot be a value, and NEWOBJ of a built-in one stays refused.
  assert.match(
    refusal(b("\x80\x04]\x8c\x08builtins\x8c\x08KeyError\x93a."), { globals: managerGlobals }),
    /the global builtins\.KeyError can only be an argument of REDUCE/,
  );
  // The caller's builders see plain data only ...
  assert.match(
    refusal(
      b("\x80\x04\x8c\x08builtins\x8c\x08KeyError\x93\x8c\x08builtins\x8c\x08KeyError\x93\x85R."),
      {
        globals: managerGlobals,
      },
    ),
    /REDUCE: the global builtins\.KeyError can only be an argument of REDUCE/,
  );
  // ... and a big state set again and again (a bomb through BUILD) runs out of budget.
  let keys = "";
  for (let i = 0; i < 1000; i++) keys += `\x8c\x04k${String(i).padStart(3, "0")}N`;
  const buildBomb = b(
    "\x80\x04\x8c\x01m\x8c\x03Obj\x93)R\x94}\x94(" + keys + "u00" + "h\x00h\x01b0".repeat(100_000) +
      "N.",
  );
  assert.match(
    refusal(buildBomb, { globals: { "m.Obj": () => ({}) } }),
    /BUILD: the states set add up/,
  );
  // Written back with reduce(), read again.
  const again = loads(dumps(["#RETURN", token], { reduce: reduceToken }), {
    globals: managerGlobals,
  }) as [
    string,
    Token,
  ];
  assert.deepEqual(again[1], token);
  assert.throws(() => dumps(token), /instances of Token cannot be pickled/);
});

for (const py of pythons) {
  Deno.test(`pickle: ${py} reads an instance written by reduce() as its own class`, async () => {
    const address = pickle.tuple("127.0.0.1", 5000); // Python's Client() wants a tuple here
    const t = Object.assign(new Token(), {
      typeid: "dict",
      address,
      id: "7f",
    });
    const code = "import pickle, sys; t = pickle.loads(sys.stdin.buffer.read()); " +
      "print(type(t).__name__, t.typeid, t.address, t.id)";
    const r = await run(exe(py), ["-c", code], dumps(t, { reduce: reduceToken }));
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), "Token dict ('127.0.0.1', 5000) 7f");
  });
}

Deno.test("pickle: Python's positional protocol argument is a TypeError showing the options call", () => {
  assert.throws(
    () => dumps(1, 5 as unknown as pickle.DumpsOptions),
    /pickle\.dumps\(\) takes an options object, not a number \(5\): write pickle\.dumps\(value, \{ protocol: 5 \}\)/,
  );
  assert.throws(
    () => loads(dumps(1), "latin1" as unknown as pickle.LoadsOptions),
    /pickle\.loads\(\) takes an options object/,
  );
  assert.throws(() => loads(new ArrayBuffer(1) as unknown as Uint8Array), /takes a Uint8Array/);
});

Deno.test("pickle: tuple() writes a Python tuple, memoized, and refuses a tuple inside itself", () => {
  const t = pickle.tuple(1, "a", [2]);
  assert.ok(Object.isFrozen(t));
  assert.deepEqual(dumps(pickle.tuple()).subarray(11), b(").")); // EMPTY_TUPLE
  assert.deepEqual(dumps(t).subarray(11), b("K\x01\x8c\x01a]\x94K\x02a\x87\x94."));
  assert.deepEqual(dumps(pickle.tuple(1, 2, 3, 4)).subarray(11), b("(K\x01K\x02K\x03K\x04t\x94."));
  const back = rt([t, t]) as unknown[][];
  assert.deepEqual(back[0], [1, "a", [2]]);
  assert.equal(back[0], back[1]); // shared through the memo
  // A cycle through a tuple: fine when the list comes first (it is in the memo by then) ...
  const list: unknown[] = [];
  list.push(pickle.tuple(list));
  const lb = rt(list) as unknown[][];
  assert.equal(lb[0][0], lb);
  // ... refused when the tuple does (Python's POP_MARK trick for that case is not done here).
  assert.throws(() => dumps(list[0]), /value\[0\]\[0\]: a tuple that contains itself/);
});
