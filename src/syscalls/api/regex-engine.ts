/**
 * A regular-expression engine for guest patterns that cannot backtrack: a pattern is parsed into a
 * tree, compiled into a small NFA program, and run as a Pike VM (Thompson's construction, with
 * submatch tracking), so a match costs at most (program size × input length) steps whatever the
 * pattern — `(a*)*b` against 50 000 `a`s is linear, where a backtracking engine (PCRE, JavaScript's
 * RegExp) takes exponential time. Every run also has a step budget, and a pattern's program a size
 * limit, so no call can hold the host thread for long.
 *
 * The dialect is the part of PCRE2's (8-bit, not UTF: bytes are characters) that programs written for
 * the VMOD use: literals and escapes, `.`, classes with ranges, negation, `\d\w\s\h\v` and POSIX
 * names, `^ $ \A \z \Z \b \B`, capturing (also named) and non-capturing groups, `|`, the greedy and
 * lazy quantifiers `* + ? {m} {m,} {m,n}`, inline options `(?imsx-imsx)` and `(?i:…)`, `\Q…\E`,
 * comments `(?#…)`. What only a backtracker can do is refused when the pattern is compiled:
 * backreferences, lookaround, atomic groups, possessive quantifiers, recursion, conditionals, `\K`,
 * `\G`. At most 9 capturing groups, as Varnish's VRE_compile allows.
 *
 * Matching is leftmost-first, like PCRE: of the matches that start leftmost, the one PCRE's
 * backtracking order would find first, with the same captures. One known difference: a repeated group
 * that matches the empty string does not count as an iteration (ECMAScript's rule), where PCRE ends
 * the loop on it; only patterns like `(a|)*` can tell.
 */

/** Limits of a pattern and of one run. */
export const REGEX_ENGINE_LIMITS = {
  /** Instructions of a compiled program: bounds the work per input byte. */
  programSize: 20_000,
  /** Different byte sets (classes, literals) of a program, 256 bytes each in memory. */
  sets: 512,
  /** Group nesting depth (PCRE2's default parenthesis limit is 250). */
  nesting: 250,
  /** Capturing groups (Varnish's VRE_MAX_CAPTURES). */
  captures: 9,
  /** The largest count of a {m,n} quantifier (PCRE2's). */
  repeat: 65_535,
  /** Steps (thread visits) a run may take before it gives up (PCRE2's default match limit). */
  steps: 10_000_000,
} as const;

/** A pattern the engine cannot compile: a syntax error, something it refuses, or too large a program. */
export class RegexSyntaxError extends Error {
  constructor(message: string, readonly offset: number, readonly kind: 'syntax' | 'unsupported' | 'too-large') {
    super(`${message} at offset ${offset}`);
    this.name = 'RegexSyntaxError';
  }
}

/** A run used up its step budget; the answer is unknown (PCRE2 answers PCRE2_ERROR_MATCHLIMIT). */
export class RegexBudgetError extends Error {
  constructor() {
    super('the regex took more steps than a run may');
    this.name = 'RegexBudgetError';
  }
}

// ---------------------------------------------------------------------------------------------------
// The parse tree

const Assert = {
  /** ^ without m, \A */
  TextStart: 0,
  /** \z */
  TextEnd: 1,
  /** $ without m, \Z: at the end, or before a newline that ends the text */
  TextEndNewline: 2,
  /** ^ with m: at the start, or after a newline that does not end the text */
  LineStart: 3,
  /** $ with m: at the end or before any newline */
  LineEnd: 4,
  WordBoundary: 5,
  NotWordBoundary: 6,
} as const;
type Assert = (typeof Assert)[keyof typeof Assert];

type Node =
  | { t: 'set'; set: Uint8Array }
  | { t: 'cat'; items: Node[] }
  | { t: 'alt'; items: Node[] }
  | { t: 'rep'; node: Node; min: number; max: number; lazy: boolean }
  | { t: 'group'; index: number; node: Node }
  | { t: 'assert'; kind: Assert };

interface Flags {
  i: boolean;
  m: boolean;
  s: boolean;
  x: boolean;
}

const byteSet = (test: (b: number) => boolean): Uint8Array => {
  const set = new Uint8Array(256);
  for (let b = 0; b < 256; b++) set[b] = test(b) ? 1 : 0;
  return set;
};
const inRange = (b: number, lo: string, hi: string): boolean => b >= lo.charCodeAt(0) && b <= hi.charCodeAt(0);
const isDigit = (b: number): boolean => inRange(b, '0', '9');
const isUpper = (b: number): boolean => inRange(b, 'A', 'Z');
const isLower = (b: number): boolean => inRange(b, 'a', 'z');
const isAlpha = (b: number): boolean => isUpper(b) || isLower(b);
const isWord = (b: number): boolean => isAlpha(b) || isDigit(b) || b === 0x5f;
/** PCRE2's \s: space, \t \n \v \f \r. */
const isSpace = (b: number): boolean => b === 0x20 || (b >= 0x09 && b <= 0x0d);
/** PCRE2's \h and \v in 8-bit non-UTF mode. */
const isHSpace = (b: number): boolean => b === 0x09 || b === 0x20 || b === 0xa0;
const isVSpace = (b: number): boolean => (b >= 0x0a && b <= 0x0d) || b === 0x85;

const WORD = byteSet(isWord);

/** Class escapes (\d …) and POSIX classes ([:alpha:] …), as byte sets. */
const CLASS_ESCAPES: Record<string, (b: number) => boolean> = {
  d: isDigit, D: (b) => !isDigit(b), w: isWord, W: (b) => !isWord(b), s: isSpace, S: (b) => !isSpace(b),
  h: isHSpace, H: (b) => !isHSpace(b), v: isVSpace, V: (b) => !isVSpace(b),
};
const POSIX: Record<string, (b: number) => boolean> = {
  alpha: isAlpha, digit: isDigit, alnum: (b) => isAlpha(b) || isDigit(b), upper: isUpper, lower: isLower,
  space: isSpace, blank: (b) => b === 0x20 || b === 0x09, cntrl: (b) => b < 0x20 || b === 0x7f,
  print: (b) => b >= 0x20 && b < 0x7f, graph: (b) => b > 0x20 && b < 0x7f,
  punct: (b) => b > 0x20 && b < 0x7f && !isAlpha(b) && !isDigit(b), xdigit: (b) => isDigit(b) || inRange(b, 'a', 'f') || inRange(b, 'A', 'F'),
  word: isWord, ascii: (b) => b < 0x80,
};
/** Single-character escapes. */
const CHAR_ESCAPES: Record<string, number> = { a: 0x07, e: 0x1b, f: 0x0c, n: 0x0a, r: 0x0d, t: 0x09 };
/**
 * Escapes refused rather than misread: \G \K (match start), \R \X \C \N{…} \p \P \u \U \L \l
 * (sequences, Unicode), \g \k (backreferences), \o{…} (octal).
 */
const REFUSED_ESCAPES = new Set('GKRXCNpPuULlgko');

function foldCase(set: Uint8Array): void {
  for (let b = 0x41; b <= 0x5a; b++) {
    if (set[b] || set[b + 0x20]) set[b] = set[b + 0x20] = 1;
  }
}

class Parser {
  private pos = 0;
  private groups = 0;
  private depth = 0;

  constructor(private readonly src: Uint8Array) {}

  parse(): { node: Node; groups: number } {
    const node = this.alternation({ i: false, m: false, s: false, x: false });
    if (this.pos < this.src.length) this.fail(`unmatched ')'`);
    return { node, groups: this.groups };
  }

  private fail(message: string, kind: 'syntax' | 'unsupported' = 'syntax'): never {
    throw new RegexSyntaxError(message, this.pos, kind);
  }

  private refuse(what: string): never {
    this.fail(`${what} is not supported (it needs a backtracking engine)`, 'unsupported');
  }

  private peek(at = 0): number {
    return this.pos + at < this.src.length ? this.src[this.pos + at]! : -1;
  }

  private eat(ch: string): boolean {
    if (this.peek() === ch.charCodeAt(0)) {
      this.pos++;
      return true;
    }
    return false;
  }

  /** In extended mode (x), whitespace and #-comments between items are not part of the pattern. */
  private skipExtended(flags: Flags): void {
    if (!flags.x) return;
    for (;;) {
      const b = this.peek();
      if (isSpace(b)) this.pos++;
      else if (b === 0x23) {
        while (this.pos < this.src.length && this.src[this.pos] !== 0x0a) this.pos++;
      } else return;
    }
  }

  /**
   * a|b|c up to the closing ')' or the end. An option setting (?i) holds to the end of its group,
   * in the alternatives after it too, as in PCRE.
   */
  private alternation(outer: Flags): Node {
    const flags = { ...outer };
    const items: Node[] = [this.sequence(flags)];
    while (this.eat('|')) items.push(this.sequence(flags));
    return items.length === 1 ? items[0]! : { t: 'alt', items };
  }

  private sequence(flags: Flags): Node {
    const items: Node[] = [];
    for (;;) {
      this.skipExtended(flags);
      const b = this.peek();
      if (b < 0 || b === 0x7c /* | */ || b === 0x29 /* ) */) break;
      const atom = this.atom(flags);
      if (atom === null) continue;
      items.push(this.quantified(atom, flags));
    }
    return items.length === 1 ? items[0]! : { t: 'cat', items };
  }

  /** One item, or null for something that matches nothing and takes no quantifier (an option setting, a comment, \E). */
  private atom(flags: Flags): Node | null {
    const start = this.pos;
    const b = this.src[this.pos++]!;
    switch (b) {
      case 0x28: return this.group(flags);
      case 0x2e: return { t: 'set', set: flags.s ? byteSet(() => true) : byteSet((c) => c !== 0x0a) };
      case 0x5b: return { t: 'set', set: this.charClass(flags) };
      case 0x5e: return { t: 'assert', kind: flags.m ? Assert.LineStart : Assert.TextStart };
      case 0x24: return { t: 'assert', kind: flags.m ? Assert.LineEnd : Assert.TextEndNewline };
      case 0x5c: return this.escape(flags);
      case 0x2a: case 0x2b: case 0x3f:
        this.pos = start;
        return this.fail('quantifier does not follow a repeatable item');
      case 0x7b:
        if (this.quantifierAhead(start)) {
          this.pos = start;
          return this.fail('quantifier does not follow a repeatable item');
        }
        return this.literal(b, flags);
      default: return this.literal(b, flags);
    }
  }

  private literal(b: number, flags: Flags): Node {
    const set = new Uint8Array(256);
    set[b] = 1;
    if (flags.i) foldCase(set);
    return { t: 'set', set };
  }

  private group(flags: Flags): Node | null {
    let capture = true;
    let inner = flags;
    if (this.eat('?')) {
      const b = this.peek();
      if (b === 0x3a /* : */) {
        this.pos++;
        capture = false;
      } else if (b === 0x23 /* # */) {
        while (this.pos < this.src.length && this.src[this.pos] !== 0x29) this.pos++;
        if (!this.eat(')')) this.fail('missing ) after a comment');
        return null;
      } else if (b === 0x3d || b === 0x21) {
        this.refuse('lookahead (?= (?!');
      } else if (b === 0x3c && (this.peek(1) === 0x3d || this.peek(1) === 0x21)) {
        this.refuse('lookbehind (?<= (?<!');
      } else if (b === 0x3c || b === 0x27 || (b === 0x50 && this.peek(1) === 0x3c)) {
        // (?<name>…), (?'name'…), (?P<name>…): a capturing group; the name is not used
        this.pos += b === 0x50 ? 2 : 1;
        const close = b === 0x27 ? 0x27 : 0x3e;
        const nameStart = this.pos;
        while (this.pos < this.src.length && isWord(this.src[this.pos]!)) this.pos++;
        if (this.pos === nameStart || isDigit(this.src[nameStart]!) || this.peek() !== close) this.fail('bad group name');
        this.pos++;
      } else if (b === 0x50) {
        this.refuse('(?P=name) and (?P>name)');
      } else if (b === 0x3e) {
        this.refuse('an atomic group (?>');
      } else if (b === 0x7c) {
        this.refuse('a branch reset group (?|');
      } else if (b === 0x28) {
        this.refuse('a conditional group (?(');
      } else if (b === 0x52 || b === 0x26 || isDigit(b) || b === 0x2b || (b === 0x2d && isDigit(this.peek(1)))) {
        this.refuse('recursion and subroutine calls');
      } else {
        // Options: (?imsx-imsx) for the rest of this group, or (?imsx-imsx:…) for a group of its own.
        const set = { ...flags };
        let on = true;
        for (;;) {
          const c = this.src[this.pos++];
          if (c === undefined) this.fail('missing ) after options');
          if (c === 0x29 /* ) */) {
            Object.assign(flags, set);
            return null;
          }
          if (c === 0x3a /* : */) break;
          if (c === 0x2d /* - */ && on) on = false;
          else if (c === 0x69) set.i = on;
          else if (c === 0x6d) set.m = on;
          else if (c === 0x73) set.s = on;
          else if (c === 0x78) set.x = on;
          else {
            this.pos--;
            this.fail(`option (?${String.fromCharCode(c)}) is not supported`, 'unsupported');
          }
        }
        capture = false;
        inner = set;
      }
    }
    if (++this.depth > REGEX_ENGINE_LIMITS.nesting) this.fail(`groups nested more than ${REGEX_ENGINE_LIMITS.nesting} deep`, 'unsupported');
    const index = capture ? ++this.groups : 0;
    if (index > REGEX_ENGINE_LIMITS.captures) this.fail(`more than ${REGEX_ENGINE_LIMITS.captures} capturing groups (use (?:…) for the others)`, 'unsupported');
    const node = this.alternation(inner);
    if (!this.eat(')')) this.fail('missing )');
    this.depth--;
    return capture ? { t: 'group', index, node } : node;
  }

  /** After a backslash outside a class. */
  private escape(flags: Flags): Node | null {
    const b = this.src[this.pos++];
    if (b === undefined) this.fail('\\ at the end of the pattern');
    const c = String.fromCharCode(b);
    switch (c) {
      case 'b': return { t: 'assert', kind: Assert.WordBoundary };
      case 'B': return { t: 'assert', kind: Assert.NotWordBoundary };
      case 'A': return { t: 'assert', kind: Assert.TextStart };
      case 'z': return { t: 'assert', kind: Assert.TextEnd };
      case 'Z': return { t: 'assert', kind: Assert.TextEndNewline };
      case 'E': return null;
      case 'Q': {
        const items: Node[] = [];
        while (this.pos < this.src.length && !(this.src[this.pos] === 0x5c && this.src[this.pos + 1] === 0x45)) {
          items.push(this.literal(this.src[this.pos++]!, flags));
        }
        if (this.pos < this.src.length) this.pos += 2;
        // A quantifier after \Q…\E applies to the last character only, as in PCRE.
        if (items.length === 0) return null;
        const last = items.pop()!;
        if (items.length > 0) {
          const rest: Node = { t: 'cat', items };
          return { t: 'cat', items: [rest, this.quantified(last, flags)] };
        }
        return last;
      }
    }
    if (b === 0x4e /* N */ && this.peek() !== 0x7b) return { t: 'set', set: byteSet((x) => x !== 0x0a) };
    const set = this.escapeSet(b, flags);
    return { t: 'set', set };
  }

  /** An escape that stands for bytes, in a class or outside one (the backslash and b already read). */
  private escapeSet(b: number, flags: Flags): Uint8Array {
    const c = String.fromCharCode(b);
    const cls = CLASS_ESCAPES[c];
    if (cls) return byteSet(cls);
    const one = this.escapeByte(b);
    const set = new Uint8Array(256);
    set[one] = 1;
    if (flags.i) foldCase(set);
    return set;
  }

  /** The byte an escape stands for (the backslash and b already read). */
  private escapeByte(b: number): number {
    const c = String.fromCharCode(b);
    if (c in CHAR_ESCAPES) return CHAR_ESCAPES[c]!;
    if (c === 'x') return this.hexEscape();
    if (c === 'c') {
      const x = this.src[this.pos++];
      if (x === undefined || x < 0x20 || x > 0x7e) this.fail('\\c must be followed by a printable ASCII character');
      return (x >= 0x61 && x <= 0x7a ? x - 0x20 : x) ^ 0x40;
    }
    if (c === '0') {
      // \0 and up to two more octal digits
      let v = 0;
      for (let n = 0; n < 2 && inRange(this.peek(), '0', '7'); n++) v = v * 8 + (this.src[this.pos++]! - 0x30);
      return v;
    }
    if (inRange(b, '1', '9')) this.refuse(`a backreference \\${c}`);
    if (REFUSED_ESCAPES.has(c)) this.fail(`escape \\${c} is not supported`, 'unsupported');
    if (isAlpha(b) || isDigit(b)) this.fail(`unknown escape \\${c}`);
    return b;
  }

  private hexEscape(): number {
    let v = 0;
    if (this.eat('{')) {
      let n = 0;
      while (this.pos < this.src.length && this.src[this.pos] !== 0x7d) {
        const d = hexDigit(this.src[this.pos++]!);
        if (d < 0) this.fail('bad \\x{…}');
        v = v * 16 + d;
        if (v > 0xff) this.fail('a character above \\xff is not supported (patterns are bytes, not UTF-8)', 'unsupported');
        n++;
      }
      if (!this.eat('}') || n === 0) this.fail('bad \\x{…}');
      return v;
    }
    for (let n = 0; n < 2 && hexDigit(this.peek()) >= 0; n++) v = v * 16 + hexDigit(this.src[this.pos++]!);
    return v;
  }

  /** After '['. */
  private charClass(flags: Flags): Uint8Array {
    const set = new Uint8Array(256);
    const negate = this.eat('^');
    let first = true;
    for (;;) {
      if (this.pos >= this.src.length) this.fail('missing ] at the end of a class');
      const b = this.src[this.pos]!;
      if (b === 0x5d /* ] */ && !first) {
        this.pos++;
        break;
      }
      first = false;
      const lo = this.classItem(set);
      if (lo < 0) continue;
      // A range lo-hi, unless the '-' is last (then it is a literal).
      if (this.peek() === 0x2d && this.peek(1) !== 0x5d && this.peek(1) >= 0) {
        this.pos++;
        const hi = this.classItem(set);
        if (hi < 0) this.fail('invalid range in a character class');
        if (hi < lo) this.fail('range out of order in a character class');
        for (let x = lo; x <= hi; x++) set[x] = 1;
      } else {
        set[lo] = 1;
      }
    }
    if (flags.i) foldCase(set);
    if (negate) for (let x = 0; x < 256; x++) set[x] ^= 1;
    return set;
  }

  /** One byte of a class (returned), or a class escape or POSIX class merged into `set` (-1). */
  private classItem(set: Uint8Array): number {
    const b = this.src[this.pos++]!;
    if (b === 0x5b /* [ */ && (this.peek() === 0x3a || this.peek() === 0x2e || this.peek() === 0x3d)) {
      const end = this.posixEnd();
      if (end >= 0) {
        if (this.peek() !== 0x3a) this.fail('POSIX collating elements are not supported', 'unsupported');
        let name = Buffer.from(this.src.subarray(this.pos + 1, end)).toString('latin1');
        const negated = name.startsWith('^');
        if (negated) name = name.slice(1);
        const test = POSIX[name];
        if (!test) this.fail(`unknown POSIX class name [:${name}:]`);
        for (let x = 0; x < 256; x++) if (test(x) !== negated) set[x] = 1;
        this.pos = end + 2;
        return -1;
      }
    }
    if (b !== 0x5c) return b;
    const e = this.src[this.pos++];
    if (e === undefined) this.fail('\\ at the end of the pattern');
    const cls = CLASS_ESCAPES[String.fromCharCode(e)];
    if (cls) {
      for (let x = 0; x < 256; x++) if (cls(x)) set[x] = 1;
      // In PCRE2 a class escape cannot start or end a range.
      if (this.peek() === 0x2d && this.peek(1) !== 0x5d && this.peek(1) >= 0) this.fail('invalid range in a character class');
      return -1;
    }
    if (e === 0x62 /* \b: backspace in a class */) return 0x08;
    if (e === 0x45 /* \E */ || e === 0x51 /* \Q */) this.fail('\\Q…\\E in a class is not supported', 'unsupported');
    return this.escapeByte(e);
  }

  /**
   * The index of the ':' (or '.', '=') that closes a POSIX class started at this.pos, or -1. Names are
   * short: looking no further than a few bytes keeps a class full of "[:" linear.
   */
  private posixEnd(): number {
    const open = this.src[this.pos]!;
    for (let i = this.pos + 1; i < Math.min(this.src.length - 1, this.pos + 12); i++) {
      const b = this.src[i]!;
      if (b === 0x5d || b === 0x5c) return -1;
      if (b === open && this.src[i + 1] === 0x5d) return i;
    }
    return -1;
  }

  /** Whether a {m}, {m,} or {m,n} quantifier starts at `at` (the '{'); otherwise '{' is a literal, as in PCRE. */
  private quantifierAhead(at: number): boolean {
    return /^\{\d+(,\d*)?\}/.test(Buffer.from(this.src.subarray(at, at + 16)).toString('latin1'));
  }

  private quantified(atom: Node, flags: Flags): Node {
    let node = atom;
    for (;;) {
      this.skipExtended(flags);
      const start = this.pos;
      const b = this.peek();
      let min: number, max: number;
      if (b === 0x2a) [min, max] = [0, Infinity];
      else if (b === 0x2b) [min, max] = [1, Infinity];
      else if (b === 0x3f) [min, max] = [0, 1];
      else if (b === 0x7b && this.quantifierAhead(this.pos)) {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(Buffer.from(this.src.subarray(this.pos, this.pos + 16)).toString('latin1'))!;
        min = Number(m[1]);
        max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
        if (min > REGEX_ENGINE_LIMITS.repeat || (max !== Infinity && max > REGEX_ENGINE_LIMITS.repeat)) this.fail('number too big in {} quantifier');
        if (max < min) this.fail('numbers out of order in {} quantifier');
        this.pos += m[0].length - 1;
      } else {
        return node;
      }
      this.pos++;
      if (node !== atom) {
        this.pos = start;
        this.fail('quantifier does not follow a repeatable item');
      }
      if (node.t === 'assert') {
        this.pos = start;
        this.fail('a quantifier on an assertion is not supported', 'unsupported');
      }
      let lazy = false;
      if (this.eat('?')) lazy = true;
      else if (this.peek() === 0x2b) this.refuse('a possessive quantifier');
      node = { t: 'rep', node: atom, min, max, lazy };
    }
  }
}

function hexDigit(b: number): number {
  if (isDigit(b)) return b - 0x30;
  if (inRange(b, 'a', 'f')) return b - 0x61 + 10;
  if (inRange(b, 'A', 'F')) return b - 0x41 + 10;
  return -1;
}

// ---------------------------------------------------------------------------------------------------
// The program

const Op = {
  /** Consume one byte in sets[a]. */
  Set: 0,
  /** Go on at a, and (with lower priority) at b. */
  Split: 1,
  Jmp: 2,
  /** slots[a] = the position */
  Save: 3,
  /** Go on only if assertion a holds here. */
  Assert: 4,
  Match: 5,
} as const;
type Op = (typeof Op)[keyof typeof Op];

/** A compiled pattern. Immutable; one may be used from several VMs of a thread. */
export interface CompiledRegex {
  /** Capturing groups. */
  readonly groups: number;
  readonly size: number;
  /** @internal ops, a and b per instruction. */
  readonly ops: Int32Array;
  readonly a: Int32Array;
  readonly b: Int32Array;
  /** @internal the byte sets, 256 bytes each. */
  readonly sets: Uint8Array;
  /** Bytes a match can start with, or null when a match may be empty (every position is a candidate). */
  readonly first: Uint8Array | null;
  /** Every match starts at the start of the text (a leading ^ or \A without m). */
  readonly anchored: boolean;
}

class Emitter {
  readonly ops: number[] = [];
  readonly a: number[] = [];
  readonly b: number[] = [];
  readonly sets: Uint8Array[] = [];
  private readonly setIndex = new Map<string, number>();
  /** Nodes compiled, counting each copy of a repeat: a repeat of something that emits nothing, (?:){65535}, adds no instruction but still takes time. */
  private visits = 0;

  private tooLarge(what = `${REGEX_ENGINE_LIMITS.programSize} instructions`): never {
    throw new RegexSyntaxError(`the pattern compiles to more than ${what}`, 0, 'too-large');
  }

  emit(op: Op, a = 0, b = 0): number {
    if (this.ops.length >= REGEX_ENGINE_LIMITS.programSize) this.tooLarge();
    this.ops.push(op);
    this.a.push(a);
    this.b.push(b);
    return this.ops.length - 1;
  }

  set(set: Uint8Array): number {
    const key = Buffer.from(set).toString('latin1');
    let index = this.setIndex.get(key);
    if (index === undefined) {
      if (this.sets.length >= REGEX_ENGINE_LIMITS.sets) this.tooLarge(`${REGEX_ENGINE_LIMITS.sets} different character classes`);
      index = this.sets.length;
      this.sets.push(set);
      this.setIndex.set(key, index);
    }
    return index;
  }

  node(n: Node): void {
    if (++this.visits > 4 * REGEX_ENGINE_LIMITS.programSize) this.tooLarge();
    switch (n.t) {
      case 'set':
        this.emit(Op.Set, this.set(n.set));
        return;
      case 'cat':
        for (const item of n.items) this.node(item);
        return;
      case 'assert':
        this.emit(Op.Assert, n.kind);
        return;
      case 'group':
        this.emit(Op.Save, 2 * n.index);
        this.node(n.node);
        this.emit(Op.Save, 2 * n.index + 1);
        return;
      case 'alt': {
        const jumps: number[] = [];
        for (let i = 0; i < n.items.length; i++) {
          const last = i === n.items.length - 1;
          const split = last ? -1 : this.emit(Op.Split);
          if (split >= 0) this.a[split] = split + 1;
          this.node(n.items[i]!);
          if (!last) {
            jumps.push(this.emit(Op.Jmp));
            this.b[split] = this.ops.length;
          }
        }
        for (const j of jumps) this.a[j] = this.ops.length;
        return;
      }
      case 'rep':
        this.repeat(n.node, n.min, n.max, n.lazy);
    }
  }

  /** A split that prefers `first` (greedy) or `second` (lazy). */
  private split(lazy: boolean, more: number, done: number): number {
    return lazy ? this.emit(Op.Split, done, more) : this.emit(Op.Split, more, done);
  }

  private patch(at: number, lazy: boolean, more: number, done: number): void {
    this.a[at] = lazy ? done : more;
    this.b[at] = lazy ? more : done;
  }

  private repeat(body: Node, min: number, max: number, lazy: boolean): void {
    for (let i = 0; i < min - (max === Infinity && min > 0 ? 1 : 0); i++) this.node(body);
    if (max === Infinity) {
      if (min > 0) {
        // x+ : body, then back to it or on
        const top = this.ops.length;
        this.node(body);
        const s = this.split(lazy, top, 0);
        this.patch(s, lazy, top, this.ops.length);
      } else {
        const s = this.split(lazy, 0, 0);
        this.node(body);
        this.emit(Op.Jmp, s);
        this.patch(s, lazy, s + 1, this.ops.length);
      }
      return;
    }
    // x{0,k} nested: (x(x(x)?)?)? — each optional copy skips to the end.
    const skips: number[] = [];
    for (let i = min; i < max; i++) {
      skips.push(this.split(lazy, 0, 0));
      this.node(body);
    }
    for (const s of skips) this.patch(s, lazy, s + 1, this.ops.length);
  }
}

/** Compiles a pattern (bytes: latin1). Throws RegexSyntaxError. */
export function compileRegex(pattern: Uint8Array | string): CompiledRegex {
  const src = typeof pattern === 'string' ? Buffer.from(pattern, 'latin1') : pattern;
  const { node, groups } = new Parser(src).parse();
  const e = new Emitter();
  e.emit(Op.Save, 0);
  e.node(node);
  e.emit(Op.Save, 1);
  e.emit(Op.Match);
  const sets = new Uint8Array(e.sets.length * 256);
  e.sets.forEach((s, i) => sets.set(s, i * 256));
  const program = { ops: Int32Array.from(e.ops), a: Int32Array.from(e.a), b: Int32Array.from(e.b), sets };
  return { groups, size: e.ops.length, ...program, ...startInfo(program) };
}

/**
 * Where a match can start: the bytes its first consumed byte may be (null when it can be empty), and
 * whether every path passes a start-of-text assertion before it consumes anything.
 */
function startInfo(p: { ops: Int32Array; a: Int32Array; b: Int32Array; sets: Uint8Array }): { first: Uint8Array | null; anchored: boolean } {
  const first = new Uint8Array(256);
  let canBeEmpty = false;
  let anchored = true;
  // Two walks of the paths that consume nothing: the first goes through assertions, the second stops at \A.
  for (const stopAtStart of [false, true]) {
    const seen = new Uint8Array(p.ops.length);
    const stack = [0];
    while (stack.length > 0) {
      const pc = stack.pop()!;
      if (seen[pc]) continue;
      seen[pc] = 1;
      const op = p.ops[pc];
      if (op === Op.Set || op === Op.Match) {
        if (stopAtStart) anchored = false;
        else if (op === Op.Match) canBeEmpty = true;
        else for (let x = 0, at = p.a[pc]! * 256; x < 256; x++) first[x] |= p.sets[at + x]!;
      } else if (op === Op.Split) {
        stack.push(p.b[pc]!, p.a[pc]!);
      } else if (op === Op.Jmp) {
        stack.push(p.a[pc]!);
      } else if (!(stopAtStart && op === Op.Assert && p.a[pc] === Assert.TextStart)) {
        stack.push(pc + 1);
      }
    }
  }
  return { first: canBeEmpty ? null : first, anchored };
}

// ---------------------------------------------------------------------------------------------------
// The Pike VM

/** Steps a run (or a series of runs: a substitution) may still take. */
export interface RegexBudget {
  steps: number;
}

export interface ExecOptions {
  /** Where the search starts; assertions still see the bytes before it (PCRE's start offset). */
  start?: number;
  /** An empty match does not count (PCRE2_NOTEMPTY). */
  notEmpty?: boolean;
  /** Only whether there is a match: the first one found ends the run, its captures not final. */
  test?: boolean;
  budget?: RegexBudget;
}

/** A thread list: a sparse set of program counters, in priority order, each with its capture slots. */
interface ThreadList {
  size: number;
  dense: Int32Array;
  sparse: Int32Array;
  caps: Int32Array;
}

/** The runs' working memory, kept between runs (a thread runs one at a time) and grown as programs need. */
let lists: [ThreadList, ThreadList] | null = null;
let stackPc = new Int32Array(0);
let stackValue = new Int32Array(0);
let scratch = new Int32Array(0);
let listSize = 0;
let listSlots = 0;

function workspace(size: number, slots: number): [ThreadList, ThreadList] {
  if (!lists || size > listSize || slots > listSlots) {
    listSize = Math.max(size, listSize);
    listSlots = Math.max(slots, listSlots);
    const list = (): ThreadList => ({ size: 0, dense: new Int32Array(listSize), sparse: new Int32Array(listSize), caps: new Int32Array(listSize * listSlots) });
    lists = [list(), list()];
    stackPc = new Int32Array(listSize + 1);
    stackValue = new Int32Array(listSize + 1);
    scratch = new Int32Array(listSlots);
  }
  return lists;
}

function holds(kind: number, input: Uint8Array, pos: number): boolean {
  const len = input.length;
  switch (kind) {
    case Assert.TextStart: return pos === 0;
    case Assert.TextEnd: return pos === len;
    case Assert.TextEndNewline: return pos === len || (pos === len - 1 && input[pos] === 0x0a);
    case Assert.LineStart: return pos === 0 || (pos < len && input[pos - 1] === 0x0a);
    case Assert.LineEnd: return pos === len || input[pos] === 0x0a;
    default: {
      const before = pos > 0 && WORD[input[pos - 1]!] === 1;
      const after = pos < len && WORD[input[pos]!] === 1;
      return (before !== after) === (kind === Assert.WordBoundary);
    }
  }
}

/** The run in progress (one at a time per thread): module state, so the hot loop calls no closure. */
let runOps: Int32Array = new Int32Array(0);
let runA: Int32Array = new Int32Array(0);
let runB: Int32Array = new Int32Array(0);
let runInput: Uint8Array = new Uint8Array(0);
let runSlots = 0;
let runSteps = 0;

/**
 * Adds the thread at pc0 to `list`, with the threads it reaches without consuming a byte, in priority
 * order (a depth-first walk; a Save is undone when the walk backs out of it). Each pc enters a list
 * once per position: that is what makes the run linear.
 */
function addThread(list: ThreadList, pc0: number, pos: number, from: Int32Array | null, fromAt: number): void {
  const slots = runSlots;
  if (from) for (let k = 0; k < slots; k++) scratch[k] = from[fromAt + k]!;
  else scratch.fill(-1, 0, slots);
  const ops = runOps, a = runA, dense = list.dense, sparse = list.sparse;
  let sp = 0;
  stackPc[sp++] = pc0;
  while (sp > 0) {
    let pc = stackPc[--sp]!;
    if (pc < 0) {
      scratch[-pc - 1] = stackValue[sp]!;
      continue;
    }
    for (;;) {
      const at = sparse[pc]!;
      if (at < list.size && dense[at] === pc) break;
      sparse[pc] = list.size;
      dense[list.size++] = pc;
      runSteps++;
      const op = ops[pc]!;
      if (op === Op.Jmp) {
        pc = a[pc]!;
      } else if (op === Op.Split) {
        stackPc[sp++] = runB[pc]!;
        pc = a[pc]!;
      } else if (op === Op.Save) {
        const slot = a[pc]!;
        stackPc[sp] = -slot - 1;
        stackValue[sp++] = scratch[slot]!;
        scratch[slot] = pos;
        pc++;
      } else if (op === Op.Assert) {
        if (!holds(a[pc]!, runInput, pos)) break;
        pc++;
      } else {
        const base = (list.size - 1) * slots;
        const caps = list.caps;
        for (let k = 0; k < slots; k++) caps[base + k] = scratch[k]!;
        break;
      }
    }
  }
}

/**
 * Runs `re` over `input` from `start`: the capture slots of the leftmost-first match (2 per group,
 * group 0 the whole match; -1 for a group that took no part), or null when there is none. Throws
 * RegexBudgetError when the budget runs out first.
 */
export function execRegex(re: CompiledRegex, input: Uint8Array, options: ExecOptions = {}): Int32Array | null {
  const { ops, a, sets, first, anchored } = re;
  const slots = 2 * (re.groups + 1);
  const budget = options.budget ?? { steps: REGEX_ENGINE_LIMITS.steps };
  const notEmpty = options.notEmpty === true;
  const len = input.length;
  let [clist, nlist] = workspace(re.size, slots);
  runOps = ops;
  runA = a;
  runB = re.b;
  runInput = input;
  runSlots = slots;
  runSteps = 0;
  clist.size = 0;
  let matched: Int32Array | null = null;
  let pos = options.start ?? 0;
  for (;;) {
    if (matched === null && clist.size === 0) {
      // Nothing in flight: skip to where a match can start.
      if (anchored && pos > 0) break;
      if (first) {
        while (pos < len && first[input[pos]!] === 0) pos++;
        if (pos >= len) break;
      }
    }
    if (matched === null && !(anchored && pos > 0)) addThread(clist, 0, pos, null, 0);
    if (clist.size === 0) break;
    const byte = pos < len ? input[pos]! : -1;
    nlist.size = 0;
    const caps = clist.caps, dense = clist.dense, size = clist.size;
    runSteps += size;
    for (let i = 0; i < size; i++) {
      const pc = dense[i]!;
      const op = ops[pc];
      if (op === Op.Set) {
        if (byte >= 0 && sets[a[pc]! * 256 + byte] === 1) addThread(nlist, pc + 1, pos + 1, caps, i * slots);
      } else if (op === Op.Match) {
        if (notEmpty && caps[i * slots] === pos) continue;
        matched = caps.slice(i * slots, i * slots + slots);
        if (options.test) break;
        // Threads after this one have lower priority: they can only give a match PCRE would not choose.
        break;
      }
    }
    if (runSteps > budget.steps) {
      budget.steps = -1;
      throw new RegexBudgetError();
    }
    if (pos >= len || (matched !== null && options.test)) break;
    const swap = clist;
    clist = nlist;
    nlist = swap;
    pos++;
  }
  budget.steps -= runSteps;
  return matched;
}

/**
 * What pcre2_match returns for a match: 1 + the number of the highest group that took part.
 */
export function matchCount(slots: Int32Array): number {
  let k = slots.length / 2 - 1;
  while (k > 0 && slots[2 * k]! < 0) k--;
  return k + 1;
}

export interface Substitution {
  /** The text with the match (or every match) replaced; the subject itself when nothing matched. */
  output: Uint8Array;
  matched: boolean;
  /** The output reached `maxOutput` bytes and was cut there. */
  cut: boolean;
}

/**
 * Varnish's regsub (VRE_sub): the first match (every match with `all`, each after the previous one,
 * and not empty) replaced by `replacement`, in which \0 … \9 stand for the groups (nothing for a group
 * the pattern does not have, empty for one that took no part) and a backslash before anything else
 * stands for that character. Stops once the output holds `maxOutput` bytes.
 */
export function substituteRegex(re: CompiledRegex, subject: Uint8Array, replacement: Uint8Array, all: boolean, maxOutput: number, budget: RegexBudget = { steps: REGEX_ENGINE_LIMITS.steps }): Substitution {
  let m = execRegex(re, subject, { budget });
  if (!m) return { output: subject, matched: false, cut: false };
  // Pieces of the subject and the replacement, not copied until the end.
  const pieces: Uint8Array[] = [];
  let n = 0;
  const put = (bytes: Uint8Array): boolean => {
    const room = maxOutput - n;
    pieces.push(bytes.length > room ? bytes.subarray(0, room) : bytes);
    n += Math.min(room, bytes.length);
    return bytes.length <= room;
  };
  const substitute = (slots: Int32Array): boolean => {
    let from = 0;
    for (let i = 0; i < replacement.length - 1; i++) {
      if (replacement[i] !== 0x5c) continue;
      if (!put(replacement.subarray(from, i))) return false;
      const next = replacement[++i]!;
      // A backslash before anything but a digit stands for what follows it.
      from = i;
      if (!isDigit(next)) continue;
      from = i + 1;
      const g = next - 0x30;
      if (2 * g < slots.length && slots[2 * g]! >= 0 && !put(subject.subarray(slots[2 * g]!, slots[2 * g + 1]!))) return false;
    }
    return put(replacement.subarray(from));
  };
  let offset = 0;
  let complete = true;
  while (m) {
    complete = put(subject.subarray(offset, m[0]!)) && substitute(m);
    offset = m[1]!;
    if (!complete || !all) break;
    m = execRegex(re, subject, { start: offset, notEmpty: true, budget });
  }
  if (complete) complete = put(subject.subarray(offset));
  const output = new Uint8Array(n);
  let at = 0;
  for (const piece of pieces) {
    output.set(piece, at);
    at += piece.length;
  }
  return { output, matched: true, cut: !complete };
}
