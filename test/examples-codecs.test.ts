// The codec examples (guest/examples/{json-minify,zstd,gzip,markdown}.c) answer under tskvm exactly
// what they print natively for the same input — valid and broken inputs alike, the status code matching
// the native exit status — and what they produce is right: minified JSON parses to the same value,
// zstd round-trips through the program itself, gzip output gunzips to the input.
//
// Inputs: the small files in guest/examples/inputs/, literals here, and larger ones generated here
// deterministically (a 1 MiB Markdown-ish text, a ~1 MiB JSON document, 256 KiB of pseudo-random bytes).
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { request } from 'undici';
import { Program, startServer, type ProgramOptions, type ProgramResponse } from '../src/index.js';
import { kvmAvailable, repoRoot, runNative } from './helpers/differential.js';
import { prng } from './helpers/prng.js';

const examples = join(repoRoot, 'guest', 'examples');
const example = (name: string): string => join(examples, 'bin', name);
const input = (name: string): Buffer => readFileSync(join(examples, 'inputs', name));

// The programs' entries in guest/examples/library.json (in the "examples" group). The limits fit a
// 16 MiB body (the server's default limit): json-minify needs ~19 MiB of request memory for it, zstd
// 17 MiB at the default level and ~97 MiB at level 19 (which takes ~10 s natively), gzip ~25 MiB at
// level 12, markdown ~190–220 MiB (cmark's tree is about 12 times the document).
const LIBRARY_ENTRIES = {
  'json-minify': { filename: 'bin/json-minify', group: 'examples', max_memory: 64, max_request_memory: 48, max_request_time: 2 },
  zstd: { filename: 'bin/zstd', group: 'examples', arg_query: 'arg', max_memory: 256, max_request_memory: 192, max_request_time: 30 },
  gzip: { filename: 'bin/gzip', group: 'examples', arg_query: 'arg', max_memory: 96, max_request_memory: 64, max_request_time: 10 },
  markdown: { filename: 'bin/markdown', group: 'examples', arg_query: 'arg', max_memory: 320, max_request_memory: 256, max_request_time: 8 },
};
type Name = keyof typeof LIBRARY_ENTRIES;

async function load(name: Name): Promise<Program> {
  const e = LIBRARY_ENTRIES[name];
  const limits: ProgramOptions = { maxMemory: e.max_memory, maxRequestMemory: e.max_request_memory, maxRequestTime: e.max_request_time };
  return Program.load(example(name), { ...limits, concurrency: 1, onLog: () => {} });
}

// ---------------------------------------------------------------------------------------------------
// Deterministic inputs

const WORDS = ('the a of to and in is it that for on with as by at from this be are or an was which ' +
  'hypervisor guest memory request program fork copy write page table kernel syscall static linux ' +
  'compress decompress frame block window level entropy huffman literal match offset stream buffer ' +
  'markdown paragraph heading list quote code link emphasis strong table virtual machine native ' +
  'latency throughput benchmark ratio percentile queue worker thread snapshot restore reset freeze').split(' ');

/** `size` bytes of Markdown-ish English: headings, paragraphs with inline markup, lists, quotes, code. */
function markdownText(size: number, seed = 1): Buffer {
  const next = prng(seed);
  const word = (): string => WORDS[next() % WORDS.length]!;
  const sentence = (): string => {
    const words: string[] = [];
    for (let i = 0, n = 6 + (next() % 14); i < n; i++) {
      let w = word();
      switch (next() % 40) {
        case 0: w = `*${w}*`; break;
        case 1: w = `**${w}**`; break;
        case 2: w = `\`${w}()\``; break;
        case 3: w = `[${w}](https://example.org/${word()}/${next() % 1000})`; break;
        case 4: w = `${w} & ${word()}`; break;
        case 5: w = `"${w}"`; break;
      }
      words.push(w);
    }
    const s = words.join(' ');
    return s[0]!.toUpperCase() + s.slice(1) + (next() % 5 ? '.' : '?');
  };
  const parts: string[] = [];
  let length = 0;
  const add = (s: string): void => { parts.push(s); length += s.length; };
  for (let section = 1; length < size; section++) {
    add(`${'#'.repeat(1 + (next() % 3))} Section ${section}: ${word()} ${word()}\n\n`);
    for (let block = 0, n = 2 + (next() % 5); block < n; block++) {
      const kind = next() % 8;
      if (kind === 0) {
        for (let i = 0, m = 2 + (next() % 5); i < m; i++) add(`- ${sentence()}\n`);
      } else if (kind === 1) {
        for (let i = 0, m = 2 + (next() % 4); i < m; i++) add(`${i + 1}. ${sentence()}\n`);
      } else if (kind === 2) {
        add(`> ${sentence()}\n> ${sentence()}\n`);
      } else if (kind === 3) {
        add('```c\n');
        for (let i = 0, m = 2 + (next() % 6); i < m; i++) add(`\t${word()}_${word()}(${next() % 100}, "${word()}");\n`);
        add('```\n');
      } else {
        const lines: string[] = [];
        for (let i = 0, m = 2 + (next() % 6); i < m; i++) lines.push(sentence());
        add(lines.join(next() % 2 ? ' ' : '\n') + '\n');
      }
      add('\n');
    }
  }
  return Buffer.from(parts.join(''), 'latin1').subarray(0, size);
}

/** Pseudo-random bytes: incompressible. */
function randomBytes(size: number, seed = 7): Buffer {
  const next = prng(seed);
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE(next(), i);
  return b;
}

/** A JSON value of roughly `size` bytes when pretty-printed. */
function jsonDocument(size: number, seed = 3): unknown {
  const next = prng(seed);
  const items: unknown[] = [];
  for (let bytes = 0; bytes < size;) {
    const item = {
      id: next() % 1_000_000,
      name: `${WORDS[next() % WORDS.length]} ${WORDS[next() % WORDS.length]}`,
      score: (next() % 100_000) / 1000 - 50,
      tags: Array.from({ length: next() % 5 }, () => WORDS[next() % WORDS.length]),
      active: next() % 2 === 0,
      parent: next() % 3 === 0 ? null : { id: next() % 1000, path: `/a/b\\c "${next() % 10}"\t\u00e9\u{1F642}` },
    };
    bytes += JSON.stringify(item, null, 2).length + 4;
    items.push(item);
  }
  return { version: 1, items };
}

const text1M = markdownText(1 << 20);
const random256K = randomBytes(256 << 10);

// ---------------------------------------------------------------------------------------------------
// Comparing with the native program

/** Byte equality with a readable report: a text diff when small, lengths and first difference otherwise. */
function sameBytes(t: Test, actual: Buffer, expected: Buffer, label: string): void {
  if (actual.equals(expected)) {
    t.pass(label);
  } else if (actual.length + expected.length < 8192) {
    t.equal(actual.toString('latin1'), expected.toString('latin1'), label);
  } else {
    let at = 0;
    while (at < actual.length && at < expected.length && actual[at] === expected[at]) at++;
    t.fail(label, { actualLength: actual.length, expectedLength: expected.length, firstDifferenceAt: at });
  }
}

interface Case {
  body: Buffer | string;
  arg?: string;
  contentType?: string;
  /** The expected status; the native program exits 0 for 200 and 1 otherwise. */
  status?: number;
  label: string;
}

/** Sends the case to the program under tskvm and runs the native binary on the same input; they must agree. */
async function same(t: Test, program: Program, name: Name, c: Case): Promise<ProgramResponse> {
  const status = c.status ?? 200;
  const native = runNative(example(name), c.arg ? [c.arg] : [], { input: c.body });
  const res = await program.request({ method: 'POST', url: '/', body: c.body, arg: c.arg, contentType: c.contentType });
  t.equal(res.error, undefined, `${name} ${c.label}: no failure`);
  t.equal(res.status, status, `${name} ${c.label}: status ${status}`);
  t.equal(native.status, status === 200 ? 0 : 1, `${name} ${c.label}: native exit status`);
  t.equal(native.stderr.toString(), '', `${name} ${c.label}: nothing on native stderr`);
  sameBytes(t, res.body, native.stdout, `${name} ${c.label}: body equals the native stdout`);
  if (status !== 200) t.equal(res.contentType, 'text/plain', `${name} ${c.label}: error as text/plain`);
  return res;
}

// ---------------------------------------------------------------------------------------------------

t.test('json-minify', async (t) => {
  if (!kvmAvailable(t)) return;
  const program = await load('json-minify');
  t.teardown(() => program.close());

  const sample = input('json-minify-sample.json');
  const res = await same(t, program, 'json-minify', { body: sample, label: 'sample file' });
  t.equal(res.contentType, 'application/json');
  t.same(JSON.parse(res.body.toString()), JSON.parse(sample.toString()), 'the minified JSON has the same value');
  t.notOk(/\n/.test(res.body.toString()), 'no whitespace left outside strings');

  const doc = jsonDocument(1 << 20);
  const pretty = JSON.stringify(doc, null, 2);
  const prettyBytes = Buffer.from(pretty);
  t.ok(prettyBytes.length > 1 << 20, 'generated JSON of more than 1 MiB');
  const big = await same(t, program, 'json-minify', { body: pretty, label: 'generated 1 MiB document' });
  t.equal(big.body.toString(), JSON.stringify(doc), 'minified = JSON.stringify of the value');
  await same(t, program, 'json-minify', { body: JSON.stringify(doc), label: 'already minified' });

  for (const body of ['0', '-1.5E+7', '"x"', 'true', 'null', ' [ ] ', '{ }', '['.repeat(1000) + ']'.repeat(1000)]) {
    await same(t, program, 'json-minify', { body, label: `valid ${JSON.stringify(body.slice(0, 20))}` });
  }

  // Broken: [input, the error position the message must name]
  const broken: Array<[Buffer | string, string]> = [
    [input('json-minify-invalid.json'), 'at byte 87 (line 6, column 3): found \'}\''],
    ['', 'unexpected end of input, expected a value at byte 0 (line 1, column 1)'],
    ['   \n ', 'at byte 5 (line 2, column 2)'],
    ['{"a":1,}', 'expected a string key at byte 7 (line 1, column 8)'],
    ['[1,2', 'expected \',\' or \']\' at byte 4 (line 1, column 5)'],
    ['01', 'leading zero in a number at byte 1'],
    ['"\\ud800"', 'high surrogate not followed by a low surrogate at byte 1'],
    ['"\\q"', 'invalid escape in a string at byte 2'],
    ['"a\tb"', 'control character in a string (must be escaped) at byte 2 (line 1, column 3): found 0x09'],
    ['tru', 'unexpected end of input in a literal at byte 3'],
    ['{"a" 1}', 'expected \':\' at byte 5'],
    ['{\n  "a": [1,\n   2,, 3]}', 'expected a value at byte 18 (line 3, column 6): found \',\''],
    ['1 2', 'after the JSON value at byte 2'],
    ['[1e]', 'expected a digit in the exponent at byte 3'],
    ['{\'a\': 1}', 'expected a string key at byte 1 (line 1, column 2): found \'\'\''],
    ['[1, 2] // comment', 'after the JSON value at byte 7'],
    [Buffer.from([0x22, 0xff, 0x22]), 'invalid UTF-8 byte at byte 1 (line 1, column 2): found 0xff'],
    [Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]), 'invalid UTF-8 sequence at byte 2'],
    ['['.repeat(1001), 'nesting deeper than 1000 levels at byte 1000'],
    [pretty.slice(0, pretty.length - 10), 'unexpected end of input'],
    // a control byte wherever it lands (between tokens, in a string, number, literal or UTF-8 sequence)
    [Buffer.concat([prettyBytes.subarray(0, 500_000), Buffer.from([1]), prettyBytes.subarray(500_000)]), 'at byte 500000 (line '],
  ];
  for (const [body, where] of broken) {
    const label = `invalid ${JSON.stringify(body.toString('latin1').slice(0, 20))}`;
    const res = await same(t, program, 'json-minify', { body, status: 400, label });
    t.match(res.body.toString(), /^invalid JSON: .* at byte \d+ \(line \d+, column \d+\)(: found .*)?\n$/, `${label}: one line`);
    t.ok(res.body.toString().includes(where), `${label}: names the position (${where})`);
  }
});

t.test('zstd', async (t) => {
  if (!kvmAvailable(t)) return;
  const program = await load('zstd');
  t.teardown(() => program.close());

  const inputs: Array<[string, Buffer | string]> = [
    ['empty', ''], ['short', 'hello, hello, hello\n'], ['markdown sample', input('markdown-sample.md')],
    ['1 MiB text', text1M], ['256 KiB random', random256K],
  ];
  const frames: Buffer[] = [];
  for (const [what, body] of inputs) {
    for (const arg of ['', 'compress:1', 'compress:-5', 'compress:19']) {
      if (arg === 'compress:19' && what !== '1 MiB text' && what !== 'short') continue;
      const label = `${arg || 'compress'} of ${what}`;
      const res = await same(t, program, 'zstd', { body, arg: arg || undefined, label });
      t.equal(res.contentType, 'application/zstd');
      t.equal(res.body.readUInt32LE(0), 0xfd2fb528, `${label}: a zstd frame`);
      const back = await program.request({ method: 'POST', url: '/', body: res.body, arg: 'decompress' });
      t.equal(back.status, 200, `${label}: decompresses`);
      t.equal(back.contentType, 'application/octet-stream');
      sameBytes(t, back.body, Buffer.from(body), `${label}: round-trips through tskvm`);
      if (arg === '') frames.push(res.body);
    }
  }
  const text = (await program.request({ method: 'POST', url: '/', body: text1M })).body;
  t.ok(text.length < text1M.length / 2, `1 MiB of text compresses (${text.length} bytes)`);
  sameBytes(t, (await program.request({ method: 'POST', url: '/', body: text1M, arg: 'compress' })).body, text, 'the same output for the same input: no state kept between requests');

  // Decompression, valid and not
  await same(t, program, 'zstd', { body: frames[3]!, arg: 'decompress', label: 'decompress 1 MiB text' });
  await same(t, program, 'zstd', { body: Buffer.concat(frames), arg: 'decompress', label: 'decompress concatenated frames' });
  const corrupt = Buffer.from(frames[3]!);
  corrupt[corrupt.length - 1] ^= 0xff; // the content checksum
  const badBlock = Buffer.from(frames[3]!);
  for (let i = 100; i < 140; i++) badBlock[i] = 0xff;
  const garbage: Array<[string, Buffer | string, RegExp]> = [
    ['text', 'this is not zstd data\n', /^zstd: Unknown frame descriptor\n$/],
    ['random bytes', random256K.subarray(0, 4096), /^zstd: Unknown frame descriptor\n$/],
    ['empty', '', /^zstd: empty input/],
    ['truncated frame', frames[3]!.subarray(0, frames[3]!.length >> 1), /^zstd: truncated input/],
    ['frame header only', frames[3]!.subarray(0, 6), /^zstd: truncated input/],
    ['bad checksum', corrupt, /^zstd: Restored data doesn't match checksum\n$/],
    ['damaged block', badBlock, /^zstd: [A-Z].*\n$/],
    ['frame + garbage', Buffer.concat([frames[1]!, Buffer.from('trailing junk')]), /^zstd: Unknown frame descriptor\n$/],
  ];
  for (const [what, body, message] of garbage) {
    const res = await same(t, program, 'zstd', { body, arg: 'decompress', status: 400, label: `decompress ${what}` });
    t.match(res.body.toString(), message, `decompress ${what}: says why (${res.body.toString().trim()})`);
  }
  for (const arg of ['compress:23', 'compress:x', 'compress:', 'zip', 'Compress']) {
    const res = await same(t, program, 'zstd', { body: 'x', arg, status: 400, label: `arg ${JSON.stringify(arg)}` });
    t.match(res.body.toString(), /^zstd: (invalid level|unknown arg)/);
  }
});

t.test('gzip', async (t) => {
  if (!kvmAvailable(t)) return;
  const program = await load('gzip');
  t.teardown(() => program.close());

  const inputs: Array<[string, Buffer | string]> = [
    ['empty', ''], ['short', 'hello, hello, hello\n'], ['markdown sample', input('markdown-sample.md')],
    ['1 MiB text', text1M], ['256 KiB random', random256K],
  ];
  for (const [what, body] of inputs) {
    for (const arg of ['', '1', '0', '9', '12']) {
      if (arg === '12' && what === '256 KiB random') continue;
      const label = `level ${arg || 'default'} of ${what}`;
      const contentType = what === 'markdown sample' ? 'text/markdown; charset=utf-8' : undefined;
      const res = await same(t, program, 'gzip', { body, arg: arg || undefined, contentType, label });
      t.equal(res.headers['content-encoding'], 'gzip', `${label}: Content-Encoding: gzip`);
      t.equal(res.contentType, contentType ?? 'application/octet-stream', `${label}: the request's content type`);
      sameBytes(t, gunzipSync(res.body), Buffer.from(body), `${label}: gunzips to the input`);
    }
  }
  const six = (await program.request({ method: 'POST', url: '/', body: text1M })).body;
  const one = (await program.request({ method: 'POST', url: '/', body: text1M, arg: '1' })).body;
  const twelve = (await program.request({ method: 'POST', url: '/', body: text1M, arg: '12' })).body;
  t.ok(twelve.length < six.length && six.length < one.length && one.length < text1M.length / 2,
    `higher levels compress more: 1 → ${one.length}, 6 → ${six.length}, 12 → ${twelve.length} bytes`);
  for (const arg of ['13', '-1', 'x', '6x', ' 6']) {
    const res = await same(t, program, 'gzip', { body: 'x', arg, status: 400, label: `level ${JSON.stringify(arg)}` });
    t.match(res.body.toString(), /^gzip: invalid level .*, expected 0 to 12\n$/);
    t.equal(res.headers['content-encoding'], undefined, 'an error is not gzip-encoded');
  }
});

t.test('markdown', async (t) => {
  if (!kvmAvailable(t)) return;
  const program = await load('markdown');
  t.teardown(() => program.close());

  const sample = input('markdown-sample.md');
  for (const arg of ['', 'smart', 'sourcepos,hardbreaks', 'unsafe', 'nobreaks,smart,unsafe']) {
    const res = await same(t, program, 'markdown', { body: sample, arg: arg || undefined, label: `sample file ${arg}` });
    t.equal(res.contentType, 'text/html; charset=utf-8');
    const html = res.body.toString();
    t.match(html, /^<h1( data-sourcepos="1:1-1:16")?>tskvm examples<\/h1>\n/, 'a heading');
    t.equal(html.includes('<span class="x">'), arg.includes('unsafe'), 'raw HTML only when unsafe');
    t.equal(html.includes('javascript:'), arg.includes('unsafe'), 'javascript: links only when unsafe');
    t.equal(html.includes('“Smart”'), arg.includes('smart'), 'curly quotes only when smart');
  }
  const big = await same(t, program, 'markdown', { body: text1M, label: '1 MiB document' });
  t.ok(big.body.length > text1M.length, `1 MiB → ${big.body.length} bytes of HTML`);
  t.ok(big.body.includes('<h2>Section 2'), 'headings');
  t.ok(big.body.includes('<pre><code class="language-c">'), 'code blocks');
  await same(t, program, 'markdown', { body: text1M.subarray(0, 100 << 10), arg: 'smart', label: '100 KiB document' });
  // Broken or odd input still renders: empty, invalid UTF-8 (replaced by U+FFFD), NULs, binary data.
  const odd: Array<[string, Buffer | string]> = [
    ['empty', ''], ['no final newline', '# title'], ['invalid UTF-8', Buffer.from([0x2a, 0xff, 0xfe, 0x2a, 0x0a, 0xc3, 0x28])],
    ['NUL bytes', Buffer.from('a\0b\n\0')], ['random bytes', random256K.subarray(0, 64 << 10)],
    ['deep nesting', '> '.repeat(5000) + 'x\n' + '['.repeat(5000) + '*'.repeat(5000)],
  ];
  for (const [what, body] of odd) {
    const res = await same(t, program, 'markdown', { body, label: what });
    t.ok(Buffer.from(res.body.toString('utf8')).equals(res.body), `${what}: valid UTF-8 out`);
  }
  const replaced = await program.request({ method: 'POST', url: '/', body: Buffer.from([0x61, 0xff, 0x0a]) });
  t.equal(replaced.body.toString(), '<p>a\uFFFD</p>\n', 'invalid UTF-8 replaced by U+FFFD');
  const res = await same(t, program, 'markdown', { body: '# x', arg: 'smart,bogus', status: 400, label: 'unknown option' });
  t.equal(res.body.toString(), 'markdown: unknown option "bogus"\n');
});

t.test('served over HTTP with their library entries', async (t) => {
  if (!kvmAvailable(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-codecs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const programs = Object.fromEntries(Object.entries(LIBRARY_ENTRIES).map(([name, e]) => [name, { ...e, filename: example(name) }]));
  const library = join(dir, 'library.json');
  writeFileSync(library, JSON.stringify({ groups: { examples: { max_memory: 128, max_request_memory: 32, concurrency: 2, max_request_time: 4 } }, programs }));
  const server = await startServer({ library, listen: '127.0.0.1:0', accessLog: null });
  t.teardown(() => server.close());
  const post = async (path: string, body: Buffer | string, headers: Record<string, string> = {}) => {
    const res = await request(`${server.url}${path}`, { method: 'POST', body, headers });
    return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
  };

  const sample = input('json-minify-sample.json');
  const minified = await post('/json-minify/', sample, { 'content-type': 'application/json' });
  t.equal(minified.status, 200);
  t.equal(minified.body.toString(), runNative(example('json-minify'), [], { input: sample }).stdout.toString(), 'json-minify');
  const invalid = await post('/json-minify/', '[1, 2');
  t.equal(invalid.status, 400);
  t.equal(invalid.body.toString(), "invalid JSON: unexpected end of input, expected ',' or ']' at byte 5 (line 1, column 6)\n");

  const compressed = await post('/zstd/?arg=compress:5', text1M);
  t.equal(compressed.status, 200);
  t.equal(compressed.headers['content-type'], 'application/zstd');
  const restored = await post('/zstd/?arg=decompress', compressed.body);
  sameBytes(t, restored.body, text1M, 'zstd round trip over HTTP');
  t.equal((await post('/zstd/?arg=decompress', 'nope')).status, 400);

  const gz = await post('/gzip/?arg=9', text1M, { 'content-type': 'text/markdown' });
  t.equal(gz.status, 200);
  t.equal(gz.headers['content-encoding'], 'gzip', 'Content-Encoding reaches the client');
  t.equal(gz.headers['content-type'], 'text/markdown');
  sameBytes(t, gunzipSync(gz.body), text1M, 'gunzips to the input');

  const html = await post('/markdown/?arg=smart', '# "Hi" -- there\n');
  t.equal(html.status, 200);
  t.equal(html.headers['content-type'], 'text/html; charset=utf-8');
  t.equal(html.body.toString(), '<h1>“Hi” – there</h1>\n');
});
