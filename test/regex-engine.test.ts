// The regex engine of the regex hypercalls (src/syscalls/api/regex-engine.ts): what it matches and
// captures is what JavaScript's RegExp (a backtracker with the same leftmost-first rules) finds, on a
// corpus and on random patterns, where the two dialects agree; PCRE's own rules where they differ;
// what it refuses; and patterns that take a backtracker exponential time finish here.
import t from 'tap';
import { compileRegex, execRegex, matchCount, REGEX_ENGINE_LIMITS, substituteRegex } from '../src/syscalls/api/regex-engine.js';
import { E } from '../src/host/errno.js';
import { RegexTable, REGEX_LIMITS } from '../src/syscalls/api/regex.js';
import { prng } from './helpers/prng.js';

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

/** What our engine finds: the groups' texts (undefined for one that took no part), or null. */
function ours(pattern: string, input: string, flags = ''): Array<string | undefined> | null {
  const re = compileRegex(flags ? `(?${flags})${pattern}` : pattern);
  const slots = execRegex(re, latin1(input));
  if (!slots) return null;
  return Array.from({ length: slots.length / 2 }, (_, k) => (slots[2 * k]! < 0 ? undefined : input.slice(slots[2 * k]!, slots[2 * k + 1]!)));
}

/** What RegExp finds, in the same form; with the match's index, to check it too. */
function theirs(pattern: string, input: string, flags = ''): Array<string | undefined> | null {
  const m = new RegExp(pattern, flags).exec(input);
  return m ? [...m] : null;
}

/**
 * Patterns and inputs on which PCRE2 and RegExp agree: no \r or \xa0 near '.' or '\s' (RegExp's '.'
 * skips \r, its \s takes \xa0), no newline at the end for '$', no group capturing inside a repeat
 * (RegExp resets those each iteration), no repeat of something that can match empty.
 */
const CORPUS: Array<[pattern: string, flags: string, inputs: string[]]> = [
  ['abc', '', ['abc', 'xabcx', 'ab', '', 'aabbcc']],
  ['a.c', '', ['abc', 'a\nc', 'a c', 'ac', 'a\x00c']],
  ['a.c', 's', ['a\nc', 'abc']],
  ['^abc$', '', ['abc', 'abcd', ' abc']],
  ['^$', '', ['', 'a']],
  ['^b', 'm', ['a\nb', 'b', 'ab']],
  ['a$', 'm', ['a\nb', 'ba', 'ab']],
  ['x*', '', ['', 'xxx', 'axx']],
  ['x+', '', ['', 'xxx', 'axx', 'ab']],
  ['x?y', '', ['y', 'xy', 'xxy', 'z']],
  ['ab*?c', '', ['ac', 'abbbc', 'abbb']],
  ['a{3}', '', ['aa', 'aaa', 'aaaaa']],
  ['a{2,}', '', ['a', 'aa', 'aaaaaa']],
  ['a{2,4}', '', ['a', 'aaa', 'aaaaaaa']],
  ['a{2,4}?', '', ['aaaaaaa']],
  ['a{,3}', '', ['a{,3}', 'aaa']],
  ['x{', '', ['x{', 'x']],
  ['a{1,2}b{2}', '', ['abb', 'aabbb', 'ab']],
  ['[abc]+', '', ['xxbcay', 'xyz']],
  ['[^abc]+', '', ['abcxyzabc', 'abc']],
  ['[a-z0-9_-]+', '', ['Hello-world_42!']],
  ['[a\\]b]+', '', ['x]ab]']],
  ['[.*+?]+', '', ['a.*+?b']],
  ['[\\d\\s]+', '', ['ab 12 3cd']],
  ['[^\\d]+', '', ['12ab34']],
  ['\\d+\\.\\d*', '', ['v1.25b', 'v1.', '.5']],
  ['\\w+@\\w+\\.com', '', ['mail joe@example.com now', 'joe@example.org']],
  ['\\W+', '', ['abc, def']],
  ['\\S+\\s+\\S+', '', ['  one \t two  ']],
  ['\\D+', '', ['12ab34']],
  ['\\bfoo\\b', '', ['foo', 'a foo b', 'foobar', 'barfoo', 'foo_']],
  ['\\Boo\\B', '', ['foo', 'fooo', 'oo']],
  ['cat|dog|bird', '', ['hotdog', 'birdcat', 'fish']],
  ['a|ab|abc', '', ['abc']],
  ['(a|ab)(c|bcd)(d*)', '', ['abcd']],
  ['(a+)(b+)?', '', ['aab', 'aa', 'b']],
  ['(?:ab)+', '', ['ababab', 'aba']],
  ['(?:a|b)+c', '', ['abbac', 'abab']],
  ['(\\w+)@(\\w+)\\.(com|org)', '', ['to: ann@site.org;']],
  ['(?<user>\\w+):(?<pass>\\w*)', '', ['u:p', 'u:', ':p']],
  ['^(\\d{1,3})\\.(\\d{1,3})\\.(\\d{1,3})\\.(\\d{1,3})$', '', ['192.168.1.10', '1.2.3', '1234.1.1.1']],
  ['^/api/v(\\d+)/(users|items)/(\\d+)$', '', ['/api/v2/users/42', '/api/v2/other/42', '/api/v10/items/7']],
  ['\\.(jpe?g|png|gif)$', '', ['/img/a.jpeg', '/img/a.png?x', '/a.gif']],
  ['\\.(JPE?G|PNG)$', 'i', ['/img/a.jpeg', '/IMG/A.PnG']],
  ['[A-Z]+', 'i', ['abcDEF1']],
  ['[^a-z]+', 'i', ['ABC123def']],
  ['x-forwarded-for', 'i', ['X-Forwarded-For: 1.2.3.4']],
  ['^(?:GET|HEAD)$', '', ['GET', 'POST', 'HEAD']],
  ['(a*?)(a*)', '', ['aaa']],
  ['(a+?)b', '', ['aaab']],
  ['(.*)/(.*)', '', ['a/b/c']],
  ['(.*?)/(.*)', '', ['a/b/c']],
  ['\\t\\n\\x41\\cJ', '', ['\t\nA\n']],
  ['\\/\\.\\*\\?\\+\\(\\)\\[\\]\\{\\}\\|\\^\\$\\\\', '', ['/.*?+()[]{}|^$\\']],
  ['\\x80[\\xc0-\\xff]+', '', ['a\x80\xc3\xa9b']],
  ['\\0', '', ['a\x00b']],
  ['(a)|(b)|(c)', '', ['c', 'b', 'a', 'd']],
  ['(a)(b)?', '', ['a', 'ab']],
  ['', '', ['', 'abc']],
  ['a||b', '', ['b', 'c']],
  ['()', '', ['x']],
  ['(?:)+a', '', ['a']],
];

t.test('matches and captures what RegExp finds, on a corpus', async (t) => {
  let cases = 0;
  for (const [pattern, flags, inputs] of CORPUS) {
    for (const input of inputs) {
      t.same(ours(pattern, input, flags), theirs(pattern, input, flags), `/${pattern}/${flags} on ${JSON.stringify(input)}`);
      cases++;
    }
  }
  t.ok(cases > 120, `${cases} cases`);
});

/**
 * A random pattern over a, b, c that stays where PCRE2 and RegExp agree: repeated items never
 * capture and never match empty.
 */
function randomPattern(next: () => number, depth: number): string {
  const pick = <T>(items: T[]): T => items[next() % items.length]!;
  const atom = (): string => pick(['a', 'b', 'c', '.', '[ab]', '[^a]', '\\w', 'a', 'b']);
  const quantifier = (): string => pick(['*', '+', '?', '{2}', '{1,3}', '{0,2}', '*?', '+?', '??', '{1,2}?']);
  const nonEmpty = (d: number): string => {
    const roll = next() % 6;
    if (d <= 0 || roll < 3) return atom();
    if (roll === 3) return `(?:${nonEmpty(d - 1)}${nonEmpty(d - 1)})`;
    if (roll === 4) return `(?:${nonEmpty(d - 1)}|${nonEmpty(d - 1)})`;
    return `(?:${atom()}+)`;
  };
  const item = (d: number): string => {
    const roll = next() % 8;
    if (roll < 3) return atom();
    if (roll < 5) return `${nonEmpty(d - 1)}${quantifier()}`;
    if (d <= 0) return atom();
    if (roll === 5) return `(${seq(d - 1)})`;
    if (roll === 6) return `(${seq(d - 1)}|${seq(d - 1)})`;
    return pick(['^', '$', '\\b', '\\B']);
  };
  const seq = (d: number): string => Array.from({ length: 1 + (next() % 3) }, () => item(d)).join('');
  return seq(depth);
}

t.test('matches and captures what RegExp finds, on 3000 random patterns', async (t) => {
  const next = prng(20_241_206);
  let compared = 0, matched = 0;
  const failures: string[] = [];
  for (let i = 0; i < 3000; i++) {
    let pattern = randomPattern(next, 3);
    // RegExp counts groups too; at most 9 are allowed here.
    if ((pattern.match(/\((?!\?)/g)?.length ?? 0) > REGEX_ENGINE_LIMITS.captures) pattern = pattern.replace(/\((?!\?)/g, '(?:');
    for (let j = 0; j < 4; j++) {
      const input = Array.from({ length: next() % 12 }, () => 'abcab '[next() % 6]).join('');
      const expected = theirs(pattern, input);
      const got = ours(pattern, input);
      compared++;
      if (expected) matched++;
      if (JSON.stringify(got) !== JSON.stringify(expected)) failures.push(`/${pattern}/ on ${JSON.stringify(input)}: ${JSON.stringify(got)}, RegExp ${JSON.stringify(expected)}`);
    }
  }
  t.same(failures.slice(0, 10), [], `${compared} comparisons, ${matched} of them matches: no difference`);
});

t.test("PCRE's rules where RegExp's differ", async (t) => {
  // Each expectation is what PCRE2 (8-bit, no options) answers.
  t.same(ours('a$', 'a\n'), ['a'], '$ matches before a newline that ends the text');
  t.same(ours('a\\z', 'a\n'), null, '\\z only at the very end');
  t.same(ours('a\\Z', 'a\n'), ['a'], '\\Z like $');
  t.same(ours('\\Aa', 'ba'), null, '\\A only at the start');
  t.same(ours('a.b', 'a\rb'), ['a\rb'], '. matches \\r (only \\n is a newline)');
  t.same(ours('\\s', '\xa0'), null, '\\s is ASCII: not \\xa0');
  t.same(ours('\\h+', ' \t\xa0x'), [' \t\xa0'], '\\h: space, tab and \\xa0');
  t.same(ours('\\v+', '\n\x0b\x0c\r\x85x'), ['\n\x0b\x0c\r\x85'], '\\v: vertical space, not the VT character only');
  t.same(ours('^b', 'a\nb', 'm'), ['b'], '^ with m after an inner newline');
  t.same(ours('(?m)^', 'a\n'), [''], '^ with m at the start');
  t.same(execRegex(compileRegex('(?m)^x?'), latin1('a\n'), { start: 2 }), null, 'but not after a newline that ends the text');
  t.same(ours('(?:(a)|b)+', 'ab'), ['ab', 'a'], 'a group in a repeat keeps its capture from an earlier iteration');
  t.same(ours('[]a]+', 'x]a]b'), [']a]'], '] first in a class is a literal');
  t.same(ours('[^]a]+', ']]abc'), ['bc']);
  t.same(ours('\\x{42}\\x4', 'B\x04'), ['B\x04'], '\\x{hh}, and \\x with one digit');
  t.same(ours('[[:alpha:]]+[[:digit:]]+', '--abc123--'), ['abc123'], 'POSIX classes');
  t.same(ours('[[:^space:]]+', '  ab  '), ['ab'], 'negated POSIX classes');
  t.same(ours('\\Qa.b*\\E+', 'a.b**'), ['a.b**'], '\\Q…\\E quotes, a quantifier after it takes its last character');
  t.same(ours('a(?i)b|c', 'C'), ['C'], '(?i) holds in later alternatives of its group');
  t.same(ours('(a(?i)b)c', 'aBc'), ['aBc', 'aB'], 'and to the end of its group only');
  t.same(ours('(a(?i)b)c', 'aBC'), null);
  t.same(ours('(?i:a)b', 'Ab'), ['Ab'], '(?i:…)');
  t.same(ours('(?i:a)b', 'AB'), null);
  t.same(ours('(?x) a b # comment\n c', 'abc'), ['abc'], '(?x): blanks and comments are not part of the pattern');
  t.same(ours('a(?#comment)b', 'ab'), ['ab'], '(?#…) comments');
  t.same(ours('[\\b]', '\b'), ['\b'], '\\b in a class is a backspace');
  t.same(ours('\\e\\a\\f', '\x1b\x07\x0c'), ['\x1b\x07\x0c'], '\\e \\a \\f');
  t.same(ours('\\0123', '\n3'), ['\n3'], '\\0 and up to two more octal digits');
  t.same(ours('é', 'É', 'i'), null, 'case folding is ASCII only (bytes, C locale)');
  t.same(ours('\\N+', 'ab\ncd'), ['ab'], '\\N: not a newline');
});

t.test('sys_regex_match counts as pcre2_match does: 1 + the highest group that took part', async (t) => {
  const count = (p: string, s: string): number | null => {
    const slots = execRegex(compileRegex(p), latin1(s));
    return slots && matchCount(slots);
  };
  t.equal(count('abc', 'abc'), 1);
  t.equal(count('(a)(b)?', 'a'), 2);
  t.equal(count('(a)(b)?', 'ab'), 3);
  t.equal(count('(a)|(b)', 'b'), 3);
  t.equal(count('x', 'abc'), null);
});

t.test('what it refuses, and why', async (t) => {
  const refused = (pattern: string, kind: string, what: RegExp | string): void => {
    t.throws(() => compileRegex(pattern), { name: 'RegexSyntaxError', kind, message: what }, `${JSON.stringify(pattern)}: ${kind}`);
  };
  for (const p of ['(a)\\1', 'a(?=b)', 'a(?!b)', '(?<=a)b', '(?<!a)b', '(?>a+)', 'a*+', 'a++', 'a?+', 'a{2}+', '(a)(?1)', '(?R)', '(?(1)a|b)', '(?|(a)|(b))', '\\k<n>', '\\g1', '(?P=n)']) {
    refused(p, 'unsupported', /not supported/);
  }
  for (const p of ['a\\K', '\\Ga', '\\R', '\\p{L}', '\\x{100}', '(?U)a', '[[.a.]]']) refused(p, 'unsupported', /not supported/);
  refused('(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)', 'unsupported', /more than 9 capturing groups/);
  refused('(?:'.repeat(300) + ')'.repeat(300), 'unsupported', /nested more than 250/);
  for (const p of ['(', ')', 'a)', '[a', '*a', 'a**', 'a{3,2}', 'a{70000}', '\\', '[z-a]', '\\y', '[[:nope:]]', '(?<1a>x)', '[\\d-z]', 'x|+', '^*']) {
    t.throws(() => compileRegex(p), { name: 'RegexSyntaxError' }, `${JSON.stringify(p)} is an error`);
  }
  t.throws(() => compileRegex('(?:a{1000}){1000}'), { name: 'RegexSyntaxError', kind: 'too-large' }, 'a program past the size limit');
  t.throws(() => compileRegex('(?:[a-z]{1,255}\\.){1,100}'), { name: 'RegexSyntaxError', kind: 'too-large' });
  t.throws(() => compileRegex('(?:(?:(?:){65535}){65535}){65535}'), { name: 'RegexSyntaxError', kind: 'too-large' }, 'repeats of nothing count too (they would take 2^48 steps to compile)');
  t.throws(() => compileRegex(`[${'[:'.repeat(32_000)}]`), { name: 'RegexSyntaxError' }, 'a class full of "[:" is read in linear time');
  t.ok(compileRegex('x'.repeat(19_000)), 'a long literal within the limit compiles');
  const hex = (b: number): string => `\\x${b.toString(16).padStart(2, '0')}`;
  const classes = (n: number): string => Array.from({ length: n }, (_, i) => `[${hex(i >> 7)}-${hex(128 + (i & 127))}]`).join('');
  t.ok(compileRegex(classes(REGEX_ENGINE_LIMITS.sets)), `${REGEX_ENGINE_LIMITS.sets} different classes compile`);
  t.throws(() => compileRegex(classes(REGEX_ENGINE_LIMITS.sets + 1)), { name: 'RegexSyntaxError', kind: 'too-large' }, 'one more does not');
  t.equal(compileRegex('(a)(b)(c)(d)(e)(f)(g)(h)(i)(?:j)(?<n>)'.replace('(?<n>)', '')).groups, 9, '9 groups, and non-capturing ones beside them');
});

t.test('patterns that make a backtracker take exponential time finish', async (t) => {
  const a50k = latin1('a'.repeat(50_000));
  t.equal(execRegex(compileRegex('(a*)*b'), a50k), null, '(a*)*b on 50 000 a');
  t.equal(execRegex(compileRegex('(a|a)+b'), a50k), null, '(a|a)+b');
  t.equal(execRegex(compileRegex('(a+)+$'), latin1('a'.repeat(50_000) + '!')), null, '(a+)+$ on a…!');
  t.equal(execRegex(compileRegex('^(\\w+\\s?)*$'), latin1('word '.repeat(10_000) + '!')), null, '^(\\w+\\s?)*$ on words and a !');
  const slots = execRegex(compileRegex('(x+x+)+y'), latin1('x'.repeat(20_000) + 'y'))!;
  t.same([slots[0], slots[1]], [0, 20_001], '(x+x+)+y finds its match too');
  t.equal(execRegex(compileRegex('(.*a){12}'), latin1('a'.repeat(5_000))) !== null, true, '(.*a){12}');
});

t.test('a run past its step budget stops with RegexBudgetError', async (t) => {
  const re = compileRegex('(?:a|b|c|d|e|f|g|h)*z');
  const input = latin1('abcdefgh'.repeat(200_000));
  t.throws(() => execRegex(re, input, { budget: { steps: 100_000 } }), { name: 'RegexBudgetError' }, 'a small budget runs out');
  const budget = { steps: 1_000 };
  t.equal(execRegex(compileRegex('b'), latin1('aaab'), { budget }) !== null, true);
  t.ok(budget.steps < 1_000 && budget.steps > 0, 'a run takes its steps from the budget it is given');
});

t.test('Varnish regsub: \\0–\\9, backslashes, the first match or all of them', async (t) => {
  const sub = (p: string, s: string, r: string, all: boolean, max = 1 << 20): string | null => {
    const out = substituteRegex(compileRegex(p), latin1(s), latin1(r), all, max);
    return out.cut ? null : Buffer.from(out.output).toString('latin1');
  };
  t.equal(sub(': .*', 'X-Value: 5', ': 666', false), 'X-Value: 666', "the VMOD's own test");
  t.equal(sub('o', 'foo boo', '0', false), 'f0o boo', 'the first match');
  t.equal(sub('o', 'foo boo', '0', true), 'f00 b00', 'all');
  t.equal(sub('(\\w+)@(\\w+)', 'a@b c@d', '\\2 at \\1', true), 'b at a d at c', 'groups');
  t.equal(sub('(\\w+)', 'ab', '[\\0|\\1|\\2|\\9]', false), '[ab|ab||]', '\\0 is the match; a group the pattern does not have is nothing');
  t.equal(sub('(a)|(b)', 'b', '<\\1\\2>', false), '<b>', 'a group that took no part is empty');
  t.equal(sub('a', 'a', '\\\\ \\n \\x', false), '\\ n x', 'a backslash before anything else gives that character');
  t.equal(sub('a', 'a', 'end\\', false), 'end\\', 'a backslash at the end stays');
  t.equal(sub('(a)', 'a', '\\10', false), 'a0', '\\10 is \\1 then 0');
  t.equal(sub('a', 'a', '\\1.', false), '.', 'a group the pattern does not have is nothing');
  t.equal(sub('x', 'abc', 'y', true), 'abc', 'no match: the text itself');
  t.equal(sub('a*', 'baaac', '<\\0>', true), '<>b<aaa>c', 'after the first, a match may not be empty');
  t.equal(sub('^a', 'aaa', 'b', true), 'baa', '^ matches only at the start, not where the next search starts');
  t.equal(sub('\\bx', 'xx x', 'y', true), 'yx y', '\\b sees the text before the search start');
  const cut = substituteRegex(compileRegex('a'), latin1('a'.repeat(100)), latin1('bbbb'), true, 50);
  t.same([cut.cut, cut.output.length], [true, 50], 'an output that reaches its limit is cut there');
  t.equal(sub('a', 'xay', 'bb', false, 4), 'xbby', 'and one that fits exactly is not');
  t.throws(() => substituteRegex(compileRegex('(?:a|b|c|d)*z'), latin1('abcd'.repeat(100_000)), latin1(''), true, 1 << 20, { steps: 10_000 }), { name: 'RegexBudgetError' });
});

t.test("a VM's table of handles: the VMOD's order, and its limits", async (t) => {
  const table = new RegexTable();
  t.same([table.compile('a'), table.compile('b'), table.compile('a')], [0, 1, 0], 'a new pattern appended; a known one gets its handle');
  t.equal(table.free(0), true);
  t.equal(table.free(0), false, 'freed already');
  t.equal(table.free(99), false, 'never given');
  t.equal(table.compile('c'), 2, 'appended while the table has room, not in the freed slot');
  const saved = table.snapshot();
  for (let i = 3; i < REGEX_LIMITS.regexes; i++) t.equal(table.compile(`p${i}`), i, `handle ${i}`);
  t.equal(table.compile('q'), 0, 'then the freed slot is taken');
  t.equal(table.compile('d'), -E.EMFILE, 'and with all 64 in use, none');
  table.free(5);
  t.equal(table.compile('d'), 5, 'and a free slot is taken');
  table.restore(saved);
  t.same(table.freeze(), [null, 'b', 'c'], 'restore puts the saved table back');
  const big = (ch: string): string => `${ch}{19000}`;
  const handles = ['e', 'f', 'g', 'h', 'i', 'j'].map((ch) => table.compile(big(ch)));
  t.same(handles, [3, 4, 5, 6, 7, -E.ENOMEM], `the table's programs together stay under ${REGEX_LIMITS.instructions} instructions`);
  const thawed = new RegexTable();
  thawed.thaw(structuredClone(table.freeze()));
  t.same(thawed.freeze(), table.freeze(), 'a frozen table thaws to the same handles');
  t.equal(thawed.get(3)?.size, table.get(3)?.size, 'compiled again');
});
