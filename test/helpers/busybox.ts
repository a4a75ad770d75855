/**
 * BusyBox applet cases for differential tests: each runs `/bin/busybox ...args` natively and under
 * tskvm, and the two must agree byte for byte (stdout, stderr, exit status).
 *
 * Debian's `busybox-static` is a static, non-PIE (ET_EXEC) glibc binary. Every case here was checked
 * natively to be deterministic and to run in one process: no fork/clone/execve (tskvm cannot fork).
 * So `sh -c` scripts use shell builtins only — no pipelines, no command substitution `$(...)`, no
 * external commands, no here-documents (ash implements those with a pipe) or here-strings (ash does
 * not support `<<<`) — and no `find -exec`, `xargs`, `timeout`, `time`, `env CMD` or awk `system()`.
 * `yes` and `shuf` are left out (endless / random). Paths point into test/fixtures/tree, which a
 * case lists in `allow` for tskvm's --allow.
 */
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { repoRoot } from './differential.js';

export const BUSYBOX = '/bin/busybox';
/** A small directory tree (files, subdirectories, a dotfile, a relative symlink). */
export const FIXTURE_TREE = join(repoRoot, 'test', 'fixtures', 'tree');

export interface BusyboxCase {
  /** Unique test name. */
  name: string;
  /** Arguments to busybox, applet first. */
  args: string[];
  input?: string | Buffer;
  /** Paths tskvm must --allow for reading. */
  allow?: string[];
  /** The complete environment of both runs. */
  env?: Record<string, string>;
}

const tree = (path: string): string => join(FIXTURE_TREE, path);
const allowTree = [FIXTURE_TREE];

const WORDS = 'the quick brown fox\njumps over the lazy dog\nThe Quick Brown Fox\nthe end\n';
const NUMBERS = '10\n9\n100\n-3\n9\n42\n7\n';
const POEM = 'Roses are red,\nviolets are blue,\nsugar is sweet,\nand so are you.\n';
/** Every byte value, twice: binary input for od, hexdump, xxd, base64, gzip. */
const BYTES = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.alloc(256, 0x41)]);

export const busyboxCases: BusyboxCase[] = [
  // echo, printf, cat
  { name: 'echo', args: ['echo', 'hello,', 'world'] },
  { name: 'echo -n -e', args: ['echo', '-n', '-e', 'tab\there\\nnewline\\x41'] },
  { name: 'printf formats', args: ['printf', '%s=%d %05.2f %x %o |%-6s|%6s|\\n', 'x', '42', '3.14159', '255', '8', 'ab', 'cd'] },
  { name: 'printf reuses format', args: ['printf', '[%s:%s]\\n', 'a', 'b', 'c'] },
  { name: 'cat stdin', args: ['cat'], input: POEM },
  { name: 'cat stdin binary', args: ['cat'], input: BYTES },
  { name: 'cat -n file', args: ['cat', '-n', tree('a.txt')], allow: allowTree },
  { name: 'cat missing file', args: ['cat', tree('no-such-file')], allow: allowTree },

  // sh -c with builtins only
  { name: 'sh while loop', args: ['sh', '-c', 'i=0; while [ $i -lt 5 ]; do echo "i=$i"; i=$((i + 1)); done'] },
  { name: 'sh arithmetic', args: ['sh', '-c', 'a=7; echo $((a * 6)) $((a % 4)) $((2 ** 10)) $((0x10 + 010)) $((a > 3 ? 1 : 0)) $((-a / 2))'] },
  {
    name: 'sh case and functions',
    args: ['sh', '-c', 'kind() { case "$1" in [0-9]*) echo "number $1";; *.txt) echo "text $1";; *) echo "other $1";; esac; }; for w in 42 notes.txt zed; do kind "$w"; done'],
  },
  { name: 'sh parameter expansion', args: ['sh', '-c', 'x=hello.tar.gz; echo ${x%%.*} ${x#*.} ${#x} ${unset:-default} ${x/l/L}'] },
  { name: 'sh positional parameters', args: ['sh', '-c', 'set -- a "b c" d; echo $#; for p in "$@"; do echo "<$p>"; done; shift 2; echo "$@"', 'argv0'] },
  { name: 'sh read from stdin', args: ['sh', '-c', 'n=0; while read -r first rest; do n=$((n + 1)); echo "$n: [$rest] [$first]"; done; echo "lines: $n"'], input: WORDS },
  { name: 'sh read with IFS', args: ['sh', '-c', 'IFS=, read -r a b c; echo "$c/$b/$a"'], input: 'x,y,z\n' },
  { name: 'sh printf builtin', args: ['sh', '-c', 'for i in 1 2 3; do printf "%03d|%s\\n" $i "$HOME"; done'], env: { HOME: '/home/guest' } },
  { name: 'sh exit status', args: ['sh', '-c', 'false || echo recovered; true && exit 7'] },
  { name: 'sh set -u error', args: ['sh', '-c', 'set -u; echo "$nope"'] },
  { name: 'sh syntax error', args: ['sh', '-c', 'if then fi'] },
  { name: 'sh test builtin file checks', args: ['sh', '-c', `for p in ${tree('a.txt')} ${tree('sub')} ${tree('nothing')}; do if [ -d "$p" ]; then echo dir; elif [ -f "$p" ]; then echo file; else echo none; fi; done`], allow: allowTree },

  // checksums
  { name: 'sha256sum stdin', args: ['sha256sum'], input: 'abc' },
  { name: 'sha256sum files', args: ['sha256sum', tree('a.txt'), tree('words.txt'), tree('sub/deeper/bytes.bin')], allow: allowTree },
  { name: 'md5sum stdin', args: ['md5sum'], input: BYTES },
  { name: 'sha512sum file', args: ['sha512sum', tree('sub/data.csv')], allow: allowTree },
  { name: 'crc32', args: ['crc32', tree('words.txt')], allow: allowTree },

  // compression through stdin
  { name: 'gzip -c stdin', args: ['gzip', '-c'], input: POEM.repeat(50) },
  { name: 'gunzip -c stdin', args: ['gunzip', '-c'], input: gzipSync(Buffer.from(POEM.repeat(100))) },
  { name: 'gunzip corrupt input', args: ['gunzip', '-c'], input: Buffer.from('this is not gzip data\n') },
  { name: 'bzip2 -c stdin', args: ['bzip2', '-c'], input: WORDS.repeat(20) },

  // text processing
  { name: 'sort', args: ['sort'], input: WORDS },
  { name: 'sort -n file', args: ['sort', '-n', tree('numbers.txt')], allow: allowTree },
  { name: 'sort -r -u', args: ['sort', '-r', '-u'], input: NUMBERS },
  { name: 'sort -t -k', args: ['sort', '-t', ',', '-k', '2', '-n', tree('sub/data.csv')], allow: allowTree },
  { name: 'uniq -c', args: ['uniq', '-c'], input: 'a\na\nb\nc\nc\nc\na\n' },
  {
    name: 'awk sums a csv',
    args: ['awk', '-F,', 'NR > 1 { total += $2 * $3; n++ } END { printf "%d items, total %.2f\\n", n, total }', tree('sub/data.csv')],
    allow: allowTree,
  },
  { name: 'awk fields and functions', args: ['awk', '{ print NR ": " toupper(substr($1, 1, 1)) substr($1, 2), NF, length($0) }'], input: WORDS },
  // (Debian's busybox awk has no math functions: sqrt() etc. fail with "Math support is not compiled in".)
  { name: 'awk BEGIN arithmetic', args: ['awk', 'BEGIN { for (i = 1; i <= 5; i++) s += i * i; printf "%d %s %x %c|%5.2f\\n", s, substr("hypervisor", 6), 255, 65, 7 / 4 }'] },
  { name: 'sed substitute delete insert append', args: ['sed', '-e', 's/o/0/g', '-e', '/lazy/d', '-e', '1i header', '-e', '$a footer'], input: WORDS },
  { name: 'sed -n ranges', args: ['sed', '-n', '2,4p;$=', tree('a.txt')], allow: allowTree },
  { name: 'grep -c', args: ['grep', '-c', 'the', tree('words.txt')], allow: allowTree },
  { name: 'grep -i -n', args: ['grep', '-i', '-n', 'quick'], input: WORDS },
  { name: 'grep -v -E', args: ['grep', '-v', '-E', '^(the|The) '], input: WORDS },
  { name: 'grep no match', args: ['grep', 'zebra'], input: WORDS },
  { name: 'tr upper', args: ['tr', 'a-z', 'A-Z'], input: POEM },
  { name: 'tr -s', args: ['tr', '-s', ' ', '_'], input: 'a  b   c    d\n' },
  { name: 'cut fields', args: ['cut', '-d', ',', '-f', '1,3', tree('sub/data.csv')], allow: allowTree },
  { name: 'cut chars', args: ['cut', '-c', '2-5'], input: POEM },
  { name: 'head -n', args: ['head', '-n', '2', tree('a.txt')], allow: allowTree },
  { name: 'tail -n', args: ['tail', '-n', '2'], input: POEM },
  { name: 'tail -c', args: ['tail', '-c', '10', tree('words.txt')], allow: allowTree },
  { name: 'wc file', args: ['wc', tree('words.txt')], allow: allowTree },
  { name: 'wc -l -w -c stdin', args: ['wc', '-l', '-w', '-c'], input: POEM },
  { name: 'tac', args: ['tac'], input: POEM },
  { name: 'rev', args: ['rev'], input: POEM },
  { name: 'fold -w', args: ['fold', '-w', '10'], input: POEM },
  { name: 'nl', args: ['nl'], input: POEM },
  { name: 'paste -s', args: ['paste', '-s', '-d', '+', tree('numbers.txt')], allow: allowTree },
  { name: 'expand tabs', args: ['expand', '-t', '4'], input: 'a\tb\tc\n\tx\n' },
  { name: 'strings', args: ['strings', '-n', '6', tree('sub/deeper/bytes.bin')], allow: allowTree },

  // binary dumps and encodings
  { name: 'od -A x -t x1', args: ['od', '-A', 'x', '-t', 'x1', tree('sub/deeper/bytes.bin')], allow: allowTree },
  { name: 'od -c', args: ['od', '-c'], input: 'tab\tnl\n\x01\x7f' },
  { name: 'hexdump -C', args: ['hexdump', '-C'], input: BYTES },
  { name: 'xxd', args: ['xxd'], input: BYTES.subarray(0, 100) },
  { name: 'base64 encode', args: ['base64'], input: BYTES },
  { name: 'base64 -d', args: ['base64', '-d'], input: Buffer.from(POEM).toString('base64') + '\n' },

  // numbers, dates, strings
  { name: 'seq', args: ['seq', '1', '3', '20'] },
  { name: 'seq -s -w', args: ['seq', '-s', ',', '-w', '8', '12'] },
  { name: 'factor', args: ['factor', '360', '97', '1000000007', '600851475143'] },
  { name: 'expr arithmetic', args: ['expr', '6', '*', '7'] },
  { name: 'expr zero is false', args: ['expr', '3', '-', '3'] },
  { name: 'expr string ops', args: ['expr', 'length', 'hypervisor'] },
  { name: 'dc', args: ['dc', '-e', '2 64 ^ 1 - p 10 3 / p'] },
  { name: 'date fixed', args: ['date', '-u', '-d', '@1700000000', '+%F %T %a %j %s'] },
  { name: 'cal fixed month', args: ['cal', '2', '2024'] },
  { name: 'basename', args: ['basename', '/usr/lib/libc.so.6', '.6'] },
  { name: 'dirname', args: ['dirname', '/usr/lib/libc.so.6'] },

  // exit codes and test
  { name: 'true', args: ['true'] },
  { name: 'false', args: ['false'] },
  { name: 'test -gt', args: ['test', '3', '-gt', '2'] },
  { name: '[ string = ]', args: ['[', 'abc', '=', 'abd', ']'] },
  { name: 'test -f allowed file', args: ['test', '-f', tree('a.txt')], allow: allowTree },
  { name: 'unknown applet', args: ['no-such-applet'] },

  // files and directories (read-only)
  { name: 'find -name', args: ['find', FIXTURE_TREE, '-name', '*.txt'], allow: allowTree },
  { name: 'find -type d', args: ['find', FIXTURE_TREE, '-type', 'd'], allow: allowTree },
  { name: 'ls dir', args: ['ls', FIXTURE_TREE], allow: allowTree },
  { name: 'ls -a -1 -F', args: ['ls', '-a', '-1', '-F', tree('sub')], allow: allowTree },
  { name: 'ls -ln', args: ['ls', '-ln', tree('sub/deeper')], allow: allowTree, env: { TZ: 'UTC0' } },
  { name: 'stat -c', args: ['stat', '-c', '%n %s %F %a', tree('a.txt'), tree('sub'), tree('sub/link-to-a')], allow: allowTree },
  { name: 'readlink', args: ['readlink', tree('sub/link-to-a')], allow: allowTree },
  { name: 'cmp different', args: ['cmp', tree('a.txt'), tree('words.txt')], allow: allowTree },
  { name: 'cmp same through symlink', args: ['cmp', tree('a.txt'), tree('sub/link-to-a')], allow: allowTree },
  { name: 'diff -u', args: ['diff', '-u', tree('a.txt'), tree('numbers.txt')], allow: allowTree },
  { name: 'dd from stdin', args: ['dd', 'bs=3', 'count=2', 'status=none'], input: 'abcdefgh' },

  // environment
  { name: 'env prints the environment', args: ['env'], env: { A: '1', LONGER_NAME: 'with spaces and = sign', EMPTY: '' } },
  { name: 'sh sees the environment', args: ['sh', '-c', 'echo "$GREETING" "${HOME-unset}"'], env: { GREETING: 'hi there' } },
];
