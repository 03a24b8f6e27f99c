/**
 * The reading side of `lib/pickle/pickle.ts`: a loop over opcodes with a switch (CPython's
 * `_Unpickler`), building plain JavaScript values and executing nothing. The machine it runs on
 * (input, stack, marks, memo and their checked steps) is `machine.ts`'s; this module gives the
 * opcodes their meaning.
 *
 * Why it is safe against a hostile pickle:
 * - no recursion: nesting lives on an explicit stack, so depth cannot overflow the JS stack (the
 *   `MARK` nesting is bounded by `maxDepth` as well);
 * - every length an opcode claims is checked against the bytes left before anything is
 *   allocated, so a `BINBYTES8` claiming 2^60 bytes fails at once;
 * - a global is looked up only in {@link ALLOWLIST}, whose entries build values by hand; any
 *   other global, and every opcode that would call or construct something else, throws
 *   `SerializationError` naming the opcode and the global;
 * - an allowlisted global itself (and a `datetime.timezone`) is only ever an argument of
 *   `REDUCE`: it cannot end up inside the result.
 *
 * @module
 */

import { SerializationError } from "../core/errors.ts";
import * as op from "./ops.ts";
import { PickleFormatError } from "./ops.ts";
import { i32, PickleMachine, u32 } from "./machine.ts";
import { ALLOWLIST, dictOf, fail, Internal, isDict, PyGlobal, pyType, setKey } from "./globals.ts";

/**
 * Reads one pickle. One reader is reused from call to call (its arrays keep their capacity);
 * a call made while it is busy (from a setter on `Object.prototype`, say) gets its own.
 */
export function unpickle(
  data: Uint8Array,
  maxDepth: number,
  encoding: string,
  extra: Globals | null,
): unknown {
  const u = busy ? new Unpickler() : shared;
  busy = true;
  try {
    return u.load(data, maxDepth, encoding, extra);
  } finally {
    if (u === shared) busy = false;
  }
}

/** Builders of the globals a caller allows besides {@link ALLOWLIST}, by `module.name`. */
export type Globals = Readonly<Record<string, (args: unknown[]) => unknown>>;

/** The state of one `pickle.loads` call. */
class Unpickler extends PickleMachine {
  maxDepth = 1000;
  /** The caller's extra globals (`LoadsOptions.globals`). */
  extra: Globals | null = null;
  /** Objects the caller's builders made: the only ones `BUILD` may set state on. */
  built: Set<unknown> | null = null;
  /** A global was pushed: containers check that no `Internal` value gets into the result. */
  globals = false;
  /** Tuples holding an `Internal` (REDUCE arguments such as a datetime's tzinfo). */
  tainted: Set<unknown> | null = null;
  /**
   * How many argument items allowlisted calls may still consume. A real pickle spends at least a
   * byte on each item it passes to a call, so the input's size bounds the total; a pickle that
   * `GET`s one big list and calls `set()` on it over and over (a "pickle bomb") runs out.
   */
  budget = 0;

  load(data: Uint8Array, maxDepth: number, encoding: string, extra: Globals | null): unknown {
    this.extra = extra;
    this.data = data;
    this.maxDepth = maxDepth;
    this.encoding = encoding;
    this.budget = data.length + 64;
    try {
      return this.run();
    } catch (e) {
      const name = op.OPCODE_NAMES[this.data[this.opAt]] ?? "opcode";
      const where = `pickle byte ${this.opAt}`;
      if (e instanceof PickleFormatError) {
        throw new SerializationError(where, `${name}: ${e.message}`);
      }
      if (e instanceof SerializationError) throw e;
      throw new SerializationError(where, `${name}: ${(e as Error)?.message ?? e}`, { cause: e });
    } finally {
      // Drop every reference into the input and the result; keep the arrays' capacity.
      this.stack.length = this.marks.length = this.memo.length = 0;
      this.pos = this.opAt = this.fence = 0;
      this.memoMap =
        this.tainted =
        this.fetched =
        this.replaced =
        this.built =
        this.extra =
          null;
      this.globals = this.needsWalk = false;
      this.data = EMPTY;
    }
  }

  isInternal(v: unknown): boolean {
    return v instanceof Internal || (this.tainted !== null && this.tainted.has(v));
  }

  /** Refuses a value that must not get into the result (a bare global, a timezone). */
  check(v: unknown): void {
    if (this.isInternal(v)) {
      const what = v instanceof PyGlobal ? `the global ${v.qualname}` : `a ${pyType(v)}`;
      fail(`${what} can only be an argument of REDUCE here, not a value`);
    }
  }

  checkRange(from: number, to: number): void {
    for (let i = from; i < to; i++) this.check(this.stack[i]);
  }

  /**
   * `SETITEMS` of `stack[from, to)` into the dict at `stack[slot]` (a plain object until a key
   * is not a str: then it becomes a `Map`, see {@link toMap}).
   */
  setItems(slot: number, from: number, to: number): void {
    const s = this.stack;
    let d = s[slot];
    if (this.replaced !== null) d = this.replaced.get(d as object) ?? d;
    if ((to - from) % 2) fail("odd number of items for a dict");
    if (this.globals) this.checkRange(from, to);
    if (d instanceof Map) {
      for (let i = from; i < to; i += 2) d.set(s[i], s[i + 1]);
      return;
    }
    if (!isDict(d)) fail(`cannot set items on a ${pyType(d)}`);
    for (let i = from; i < to; i += 2) {
      const k = s[i];
      if (typeof k === "string") setKey(d, k, s[i + 1]);
      else {
        s[slot] = this.toMap(d);
        return this.setItems(slot, i, to);
      }
    }
  }

  refuse(opName: string, detail = ""): never {
    fail(
      `${opName}${detail} is refused: this codec builds plain data only and never calls or ` +
        `constructs anything (allowed globals: ${Object.keys(ALLOWLIST).join(", ")})`,
    );
  }

  global(module: string, name: string, opName: string): void {
    if (module === "__builtin__") module = "builtins"; // Python 2 name, as fix_imports reads it
    const qualname = `${module}.${name}`;
    const mine = this.extra !== null && Object.hasOwn(this.extra, qualname);
    const build = mine
      ? this.extra![qualname]
      : Object.hasOwn(ALLOWLIST, qualname)
      ? ALLOWLIST[qualname]
      : undefined;
    if (typeof build !== "function") this.refuse(`${opName} ${qualname}`);
    this.globals = true;
    this.stack.push(new PyGlobal(qualname, build, mine));
  }

  /** Calls an allowed global's builder, within the budget. */
  call(f: PyGlobal, args: unknown[]): unknown {
    for (const a of args) {
      this.budget -= typeof a === "string" || Array.isArray(a) || a instanceof Uint8Array
        ? a.length
        : 1;
    }
    if (this.budget < 0) {
      fail(
        `REDUCE ${f.qualname}: the calls' arguments add up to more than the pickle's ` +
          `size (the same value passed again and again: a pickle bomb?)`,
      );
    }
    if (f.extra) args.forEach((a) => this.check(a)); // the caller's code sees plain data only
    const v = f.build(args);
    if (f.extra && typeof v === "object" && v !== null) (this.built ??= new Set()).add(v);
    return v;
  }

  /**
   * `BUILD` on an object a caller's builder made: its `__setstate__(state)` if it has one, else
   * Python's default — a dict state (or the two dicts of a `(dict, slots)` state) is assigned.
   */
  setState(target: Record<string, unknown>, state: unknown): void {
    this.check(state);
    if (typeof target.__setstate__ === "function") {
      (target.__setstate__ as (s: unknown) => void)(state);
      return;
    }
    const parts = Array.isArray(state) && state.length === 2 ? state : [state];
    for (const part of parts) {
      if (part === null) continue;
      if (!isDict(part)) fail(`cannot set a ${pyType(part)} as the state of an object`);
      this.budget -= Object.keys(part).length; // the same big state BUILT again and again
      if (this.budget < 0) fail("the states set add up to more than the pickle's size");
      for (const k of Object.keys(part)) setKey(target, k, part[k]);
    }
  }

  run(): unknown {
    const d = this.data, n = d.length, s = this.stack;
    for (;;) {
      if (this.pos >= n) fail("the pickle ends without STOP");
      this.opAt = this.pos;
      const code = d[this.pos++];
      switch (code) {
        case op.PROTO: {
          this.need(1);
          const p = d[this.pos++];
          if (p > 5) fail(`unsupported protocol ${p} (this codec reads 0-5)`);
          break;
        }
        case op.FRAME:
          this.len(8); // checks the frame fits; its contents are read as ordinary opcodes
          break;
        case op.STOP: {
          let r = this.pop();
          if (this.globals) this.check(r);
          if (this.replaced !== null) r = this.replaced.get(r as object) ?? r;
          if (this.needsWalk) r = this.fixUp(r);
          return r;
        }
        case op.MARK:
          if (this.marks.length >= this.maxDepth) {
            fail(`MARKs nested deeper than maxDepth (${this.maxDepth})`);
          }
          this.marks.push(s.length);
          this.fence = s.length;
          break;
        case op.POP:
          if (s.length > this.fence) s.pop();
          else s.length = this.popMark();
          break;
        case op.POP_MARK:
          s.length = this.popMark();
          break;
        case op.DUP: {
          const t = this.top();
          if (isDict(t)) (this.fetched ??= new Set()).add(t);
          s.push(t);
          break;
        }
        case op.NONE:
          s.push(null);
          break;
        case op.NEWTRUE:
          s.push(true);
          break;
        case op.NEWFALSE:
          s.push(false);
          break;
        case op.BININT1:
          this.need(1);
          s.push(d[this.pos++]);
          break;
        case op.BININT2:
          this.need(2);
          s.push(d[this.pos] | (d[this.pos + 1] << 8));
          this.pos += 2;
          break;
        case op.BININT:
          this.need(4);
          s.push(i32(d, this.pos));
          this.pos += 4;
          break;
        case op.INT: {
          const t = this.lineText();
          s.push(t === "00" ? false : t === "01" ? true : op.parseIntText(t));
          break;
        }
        case op.LONG:
          s.push(op.parseIntText(this.lineText()));
          break;
        case op.LONG1:
        case op.LONG4: {
          const k = this.len(code === op.LONG1 ? 1 : 4, true);
          s.push(op.decodeLong(d, this.pos, this.pos + k));
          this.pos += k;
          break;
        }
        case op.FLOAT:
          s.push(op.parseFloatText(this.lineText()));
          break;
        case op.BINFLOAT:
          this.need(8);
          for (let i = 0; i < 8; i++) f64Bytes[FLIP ^ i] = d[this.pos + i];
          s.push(f64[0]);
          this.pos += 8;
          break;
        case op.SHORT_BINUNICODE: {
          const k = this.len(1);
          s.push(this.str(this.pos, this.pos + k));
          break;
        }
        case op.BINUNICODE:
        case op.BINUNICODE8: {
          const k = this.len(code === op.BINUNICODE ? 4 : 8);
          s.push(this.str(this.pos, this.pos + k));
          break;
        }
        case op.UNICODE: {
          const [a, b] = this.line();
          s.push(op.rawUnicodeEscapeDecode(d, a, b));
          break;
        }
        case op.STRING: {
          const [a, b] = this.line();
          const q = d[a];
          if (b - a < 2 || (q !== 0x27 && q !== 0x22) || d[b - 1] !== q) {
            fail("the STRING argument must be quoted");
          }
          s.push(this.str2(op.escapeDecode(d, a + 1, b - 1)));
          break;
        }
        case op.BINSTRING:
        case op.SHORT_BINSTRING:
          s.push(this.str2(this.bytes(this.len(code === op.BINSTRING ? 4 : 1, true))));
          break;
        case op.SHORT_BINBYTES:
          s.push(this.bytes(this.len(1)));
          break;
        case op.BINBYTES:
          s.push(this.bytes(this.len(4)));
          break;
        case op.BINBYTES8:
        case op.BYTEARRAY8:
          s.push(this.bytes(this.len(8)));
          break;
        case op.EMPTY_LIST:
        case op.EMPTY_TUPLE:
          s.push([]);
          break;
        case op.EMPTY_DICT:
          s.push({});
          break;
        case op.EMPTY_SET:
          s.push(new Set());
          break;
        case op.LIST:
        case op.TUPLE:
        case op.FROZENSET: {
          const k = this.popMark();
          if (this.globals && code !== op.TUPLE) this.checkRange(k, s.length);
          const items = s.splice(k);
          if (code === op.FROZENSET) s.push(new Set(items));
          else {
            if (this.globals && items.some((x) => this.isInternal(x))) {
              (this.tainted ??= new Set()).add(items);
            }
            s.push(items);
          }
          break;
        }
        case op.TUPLE1:
        case op.TUPLE2:
        case op.TUPLE3: {
          const k = code - op.TUPLE1 + 1;
          if (s.length - k < this.fence) fail("stack underflow");
          const items = s.splice(s.length - k);
          if (this.globals && items.some((x) => this.isInternal(x))) {
            (this.tainted ??= new Set()).add(items);
          }
          s.push(items);
          break;
        }
        case op.DICT: {
          const k = this.popMark();
          if ((s.length - k) % 2) fail("odd number of items for a dict");
          if (this.globals) this.checkRange(k, s.length);
          const dict = dictOf(s, k, s.length);
          s.length = k;
          s.push(dict);
          break;
        }
        case op.APPEND: {
          const x = this.pop();
          const list = this.top();
          if (!Array.isArray(list)) fail(`cannot append to a ${pyType(list)}`);
          if (this.globals) this.check(x);
          list.push(x);
          break;
        }
        case op.APPENDS: {
          const k = this.popMark();
          const list = this.below(k);
          if (!Array.isArray(list)) fail(`cannot append to a ${pyType(list)}`);
          if (this.globals) this.checkRange(k, s.length);
          for (let i = k; i < s.length; i++) list.push(s[i]);
          s.length = k;
          break;
        }
        case op.SETITEM: {
          if (s.length - 3 < this.fence) fail("stack underflow");
          this.setItems(s.length - 3, s.length - 2, s.length);
          s.length -= 2;
          break;
        }
        case op.SETITEMS: {
          const k = this.popMark();
          this.below(k);
          this.setItems(k - 1, k, s.length);
          s.length = k;
          break;
        }
        case op.ADDITEMS: {
          const k = this.popMark();
          const set = this.below(k);
          if (!(set instanceof Set)) fail(`cannot add items to a ${pyType(set)}`);
          if (this.globals) this.checkRange(k, s.length);
          for (let i = k; i < s.length; i++) set.add(s[i]);
          s.length = k;
          break;
        }
        case op.GET:
          this.memoGet(this.memoKey());
          break;
        case op.BINGET:
          this.need(1);
          this.memoGet(d[this.pos++]);
          break;
        case op.LONG_BINGET:
          this.need(4);
          this.memoGet(u32(d, this.pos));
          this.pos += 4;
          break;
        case op.PUT:
          this.memoPut(this.memoKey());
          break;
        case op.BINPUT:
          this.need(1);
          this.memoPut(d[this.pos++]);
          break;
        case op.LONG_BINPUT:
          this.need(4);
          this.memoPut(u32(d, this.pos));
          this.pos += 4;
          break;
        case op.MEMOIZE:
          this.memoPut(this.memoSize());
          break;
        case op.GLOBAL: {
          const module = this.lineText(), name = this.lineText();
          this.global(module, name, "GLOBAL");
          break;
        }
        case op.STACK_GLOBAL: {
          const name = this.pop(), module = this.pop();
          if (typeof name !== "string" || typeof module !== "string") {
            fail(`needs two str, got ${pyType(module)} and ${pyType(name)}`);
          }
          this.global(module, name, "STACK_GLOBAL");
          break;
        }
        case op.REDUCE: {
          const args = this.pop(), f = this.pop();
          if (!(f instanceof PyGlobal)) this.refuse(`REDUCE of a ${pyType(f)}`);
          if (!Array.isArray(args)) fail(`REDUCE ${f.qualname} needs a tuple of arguments`);
          s.push(this.call(f, args));
          break;
        }
        case op.NEWOBJ:
        case op.NEWOBJ_EX: {
          // cls.__new__(cls, *args): only for a class the caller allowed (and without keyword
          // arguments).
          const kwargs = code === op.NEWOBJ_EX ? this.pop() : null;
          const args = this.pop(), cls = this.pop();
          const what = cls instanceof PyGlobal ? ` of ${cls.qualname}` : ` of a ${pyType(cls)}`;
          if (!(cls instanceof PyGlobal && cls.extra)) this.refuse(op.OPCODE_NAMES[code], what);
          if (!Array.isArray(args)) fail(`${cls.qualname} needs a tuple of arguments`);
          if (kwargs !== null && !(isDict(kwargs) && Object.keys(kwargs).length === 0)) {
            this.refuse(`NEWOBJ_EX${what} with keyword arguments`);
          }
          s.push(this.call(cls, args));
          break;
        }
        case op.BUILD: {
          const state = this.pop(), target = this.top();
          if (this.built?.has(target)) {
            this.setState(target as Record<string, unknown>, state);
            break;
          }
          // OrderedDict's reduce may add an empty instance dict; anything else sets state.
          const empty = state === null || (isDict(state) && Object.keys(state).length === 0);
          if (!(empty && (isDict(target) || target instanceof Map))) {
            this.refuse(`BUILD on a ${pyType(target)}`, " (setting an object's state)");
          }
          break;
        }
        case op.INST: {
          const module = this.lineText(), name = this.lineText();
          this.refuse(`INST ${module}.${name}`);
          break;
        }
        case op.OBJ:
        case op.EXT1:
        case op.EXT2:
        case op.EXT4:
        case op.PERSID:
        case op.BINPERSID:
          this.refuse(op.OPCODE_NAMES[code]);
          break;
        case op.NEXT_BUFFER:
        case op.READONLY_BUFFER:
          fail("out-of-band buffers (protocol 5 buffer_callback) are not supported");
          break;
        default:
          fail(`unknown opcode 0x${code.toString(16).padStart(2, "0")}`);
      }
    }
  }
}

const EMPTY = new Uint8Array(0);
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
/** `7` where the platform is little-endian (all Deno targets): BINFLOAT is big-endian. */
const FLIP = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 7 : 0;
const shared = new Unpickler();
let busy = false;
