// Programs in .tar and .tar.xz archives, as the VMOD takes them: archives made by GNU tar and xz
// from the test guests, read by tskvm's own reader (the program, and the entry whose name ends in
// "storage"), served through a library and installed by live update; hostile archives each get
// their error, quickly, and the server keeps serving.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { request } from 'undici';
import { ARCHIVE_LIMITS, unpackProgram } from '../src/runtime/program-archive.js';
import { startServer, type RunningServer } from '../src/server/server.js';
import { guestPath, kvmAvailable } from './helpers/differential.js';

const work = mkdtempSync(join(tmpdir(), 'tskvm-archive-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

/** An archive made by GNU tar from `files` (name → bytes, or a symlink's target as { link }), in a directory of its own. */
function tar(files: Record<string, Buffer | string | { link: string }>, flags: string[] = []): Buffer {
  const dir = mkdtempSync(join(work, 'tree-'));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    if (typeof content === 'object' && 'link' in content) symlinkSync(content.link, join(dir, name));
    else writeFileSync(join(dir, name), content);
  }
  const r = spawnSync('tar', ['-C', dir, '-cf', '-', ...flags, ...Object.keys(files)], { maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`tar: ${r.stderr.toString()}`);
  return r.stdout;
}

function xz(bytes: Buffer, level = '-6'): Buffer {
  const r = spawnSync('xz', ['-c', level], { input: bytes, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`xz: ${r.stderr.toString()}`);
  return r.stdout;
}

const hello = readFileSync(guestPath('req-hello'));
const echo = readFileSync(guestPath('req-echo'));
const storageElf = readFileSync(guestPath('req-storage'));
/**
 * req-storage with its /get format changed to say CLEANUPS= (same length, same layout): /get is
 * answered by the storage VM, so the answer shows which ELF the storage VM runs.
 */
const storageMarked = ((): Buffer => {
  const copy = Buffer.from(storageElf);
  const at = copy.indexOf('cleanups=%');
  if (at < 0 || copy.indexOf('cleanups=%', at + 1) >= 0) throw new Error('req-storage should hold its /get format once');
  copy.write('CLEANUPS=', at, 'latin1');
  return copy;
})();

t.test('the reader: the program and the storage entry, in every tar format, plain and xz', async (t) => {
  const long = `${'d'.repeat(90)}/${'e'.repeat(60)}`;
  const cases: Array<[string, Buffer]> = [
    ['gnu', tar({ prog: hello, prog_storage: storageElf })],
    ['posix (pax)', tar({ 'bin/prog': hello, 'bin/storage': storageElf }, ['--format=posix'])],
    ['ustar with a prefix', tar({ [`${long}/prog`]: hello, [`${long}/my-storage`]: storageElf }, ['--format=ustar'])],
    ['gnu long names', tar({ [`${long}/${'p'.repeat(110)}`]: hello, [`${long}/${'s'.repeat(110)}storage`]: storageElf }, ['--format=gnu'])],
    ['pax long names', tar({ [`${long}/${'p'.repeat(110)}`]: hello, [`${long}/${'s'.repeat(110)}storage`]: storageElf }, ['--format=posix'])],
    ['with directories, an empty file and a symlink', tar({ 'a/README': '', 'a/prog': hello, 'a/link': { link: 'prog' }, 'a/x.storage': storageElf })],
  ];
  for (const [label, archive] of cases) {
    for (const [kind, bytes] of [['tar', archive], ['tar.xz', xz(archive)]] as const) {
      const files = await unpackProgram(bytes, `p.${kind}`);
      t.ok(Buffer.from(files.program).equals(hello), `${label}, ${kind}: the program`);
      t.ok(files.storage && Buffer.from(files.storage).equals(storageElf), `${label}, ${kind}: the storage program`);
    }
  }
  const alone = await unpackProgram(tar({ 'only-one': echo }), 'x.bin');
  t.ok(Buffer.from(alone.program).equals(echo) && alone.storage === undefined, 'told by its bytes, whatever its name: no storage entry, none');
  const elf = await unpackProgram(hello, 'prog.tar');
  t.equal(elf.program, hello, 'an ELF is the program, even named .tar');
});

t.test('hostile and broken archives: each its error, none a crash or a hang', async (t) => {
  const good = tar({ prog: hello });
  const withSize = (archive: Buffer, field: Buffer): Buffer => {
    const copy = Buffer.from(archive);
    field.copy(copy, 124);
    // The checksum as tar computes it, so that only the size is wrong.
    Buffer.alloc(8, ' ').copy(copy, 148);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += copy[i]!;
    Buffer.from(`${sum.toString(8).padStart(6, '0')}\0 `).copy(copy, 148);
    return copy;
  };
  const base256 = Buffer.alloc(12);
  base256[0] = 0x80;
  base256.writeUInt32BE(0xffffffff, 8);
  base256[7] = 0xff;
  const zeros = xz(Buffer.alloc(64 << 20));
  const bomb = Buffer.concat(Array.from({ length: Math.ceil(ARCHIVE_LIMITS.bytes / (64 << 20)) + 1 }, () => zeros));
  const sparse = join(work, 'sparse');
  writeFileSync(sparse, '');
  truncateSync(sparse, 1 << 20);
  const sparseTar = spawnSync('tar', ['-C', work, '--sparse', '--format=gnu', '-cf', '-', 'sparse']).stdout;
  const many = tar(Object.fromEntries(Array.from({ length: ARCHIVE_LIMITS.entries + 1 }, (_, i) => [`f${i}`, ''])));
  const cases: Array<[string, Buffer, string, RegExp]> = [
    ['cut inside an entry', good.subarray(0, 512 + 1000), 'TSKVM_ERR_ARCHIVE_MALFORMED', /"prog" says it has \d+ bytes, but the archive ends 1000 bytes after its header/],
    ['cut inside a header', good.subarray(0, 300), 'TSKVM_ERR_ARCHIVE_MALFORMED', /ends inside the header at byte 0/],
    ['no end-of-archive block', good.subarray(0, 512 + Math.ceil(hello.length / 512) * 512), 'TSKVM_ERR_ARCHIVE_MALFORMED', /ends without its end-of-archive block/],
    ['a wrong checksum', Buffer.concat([Buffer.from('X'), good.subarray(1)]), 'TSKVM_ERR_ARCHIVE_MALFORMED', /wrong checksum/],
    ['a declared size past the end', withSize(good, Buffer.from('00007777777\0')), 'TSKVM_ERR_ARCHIVE_MALFORMED', /says it has 2097151 bytes, but the archive ends/],
    ['a huge octal size', withSize(good, Buffer.from('77777777777\0')), 'TSKVM_ERR_ARCHIVE_TOO_LARGE', /says it has 8589934591 bytes, more than/],
    ['a huge base-256 size', withSize(good, base256), 'TSKVM_ERR_ARCHIVE_TOO_LARGE', /more than 536870912/],
    ['a size that is not a number', withSize(good, Buffer.from('12x45\0\0\0\0\0\0\0')), 'TSKVM_ERR_ARCHIVE_MALFORMED', /size of "prog" is not a number/],
    ['a name with ..', tar({ prog: hello }, ['-P', '--transform', 's,^,../../,']), 'TSKVM_ERR_ARCHIVE_MALFORMED', /"\.\.\/\.\.\/prog" has an absolute name or one with "\.\."/],
    ['an absolute name', tar({ prog: hello }, ['-P', '--transform', 's,^,/tmp/,']), 'TSKVM_ERR_ARCHIVE_MALFORMED', /"\/tmp\/prog" has an absolute name/],
    ['a sparse entry', sparseTar, 'TSKVM_ERR_ARCHIVE_MALFORMED', /type 'S', which tskvm does not read/],
    ['too many entries', many, 'TSKVM_ERR_ARCHIVE_TOO_LARGE', /more than 1024 entries/],
    ['no ELF inside', tar({ 'README.txt': 'hello\n' }), 'TSKVM_ERR_ARCHIVE_CONTENTS', /entry "README.txt" is not an ELF program/],
    ['nothing inside', tar({ 'empty': '', 'link': { link: '/bin/sh' } }), 'TSKVM_ERR_ARCHIVE_CONTENTS', /holds no program/],
    ['only a storage program', tar({ 'x_storage': storageElf }), 'TSKVM_ERR_ARCHIVE_CONTENTS', /holds no program .*"x_storage"/],
    ['two programs', tar({ a: hello, b: echo }), 'TSKVM_ERR_ARCHIVE_CONTENTS', /more than one program: "a", "b"/],
    ['two storage programs', tar({ a: hello, storage: storageElf, 'b/storage': storageElf }), 'TSKVM_ERR_ARCHIVE_CONTENTS', /more than one storage program/],
    ['an xz bomb', bomb, 'TSKVM_ERR_ARCHIVE_TOO_LARGE', /decompresses to more than 536870912 bytes/],
    ['a cut xz stream', xz(good).subarray(0, 4000), 'TSKVM_ERR_ARCHIVE_XZ', /xz could not decompress it: Unexpected end of input/],
    ['a corrupt xz stream', Buffer.concat([xz(good).subarray(0, 100), Buffer.alloc(4000, 0x55)]), 'TSKVM_ERR_ARCHIVE_XZ', /xz could not decompress it/],
    ['xz that is not a tar', xz(Buffer.from('just text, and more than sixty-four bytes of it, to look like a file\n')), 'TSKVM_ERR_ARCHIVE_MALFORMED', /ends inside the header at byte 0/],
  ];
  for (const [label, bytes, code, message] of cases) {
    const started = performance.now();
    await t.rejects(unpackProgram(bytes, 'p.tar'), { code, message }, label);
    t.ok(performance.now() - started < 20_000, `${label}: answered in ${(performance.now() - started).toFixed(0)} ms`);
  }
  await t.rejects(unpackProgram(good.subarray(0, 1000), 'p.elf'), { code: 'TSKVM_ERR_ARCHIVE_MALFORMED' }, 'a header whose checksum holds makes it a tar whatever its name');
  const notTar = await unpackProgram(Buffer.from('not an ELF at all'), 'p.elf');
  t.same(Buffer.from(notTar.program), Buffer.from('not an ELF at all'), 'neither ELF nor archive: handed on for the ELF parser to refuse');
});

const text = async (url: string, init: Parameters<typeof request>[1] = {}): Promise<{ status: number; text: string }> => {
  const res = await request(url, init);
  return { status: res.statusCode, text: await res.body.text() };
};

async function withServer(library: object, body: (s: RunningServer) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(work, 'lib-'));
  writeFileSync(join(dir, 'library.json'), JSON.stringify(library));
  const s = await startServer({ library: join(dir, 'library.json'), listen: '127.0.0.1:0', adminToken: 'secret', warn: () => {}, accessLog: () => {} });
  try {
    await body(s);
  } finally {
    await s.close();
  }
}

t.test('served from a library: a .tar with a storage program, a .tar.xz by file:// uri', async (t) => {
  if (!kvmAvailable(t)) return;
  const dir = mkdtempSync(join(work, 'served-'));
  writeFileSync(join(dir, 'counter.tar'), tar({ 'bin/counter': storageElf, 'bin/counter_storage': storageMarked }));
  writeFileSync(join(dir, 'hello.tar.xz'), xz(tar({ hello })));
  writeFileSync(join(dir, 'broken-storage.elf'), readFileSync(guestPath('hello.glibc')));
  await withServer({
    programs: {
      counter: { filename: join(dir, 'counter.tar'), storage: true, filename_storage: join(dir, 'broken-storage.elf') },
      hello: { uri: pathToFileURL(join(dir, 'hello.tar.xz')).href },
    },
    // req-storage answers by the whole path: it is reached by its Host.
    hosts: { 'counter.test': 'counter' },
  }, async (s) => {
    const counter = (path: string): ReturnType<typeof text> => text(`${s.url}${path}`, { headers: { host: 'counter.test' } });
    t.match(await text(`${s.url}/hello/x`), { status: 200, text: 'Hello World!\n' }, 'the program in the .tar.xz answers');
    t.match(await counter('/add?5'), { status: 200, text: 'counter=5 rc=8' }, 'the program in the .tar calls its storage VM');
    t.match(await counter('/get'), { status: 200, text: 'counter=5 CLEANUPS=0 after_noreturn=0 ticks=0 rc=8' },
      'the storage VM runs the archive\'s storage entry (its /get format), not filename_storage (a program that exits)');
  });
});

t.test('live update with an archive: X-LiveUpdate and the admin endpoint; a hostile one changes nothing', async (t) => {
  if (!kvmAvailable(t)) return;
  const dir = mkdtempSync(join(work, 'live-'));
  writeFileSync(join(dir, 'hello.elf'), hello);
  await withServer({ programs: { hello: { filename: join(dir, 'hello.elf'), key: 'k' } } }, async (s) => {
    const post = (body: Buffer): ReturnType<typeof text> => text(`${s.url}/hello/`, { method: 'POST', headers: { 'x-liveupdate': 'k' }, body });
    const admin = (body: Buffer): ReturnType<typeof text> => text(`${s.url}/__tskvm/update/hello`, { method: 'POST', headers: { authorization: 'Bearer secret' }, body });
    t.equal((await text(`${s.url}/hello/x`)).text, 'Hello World!\n');

    const update = xz(tar({ 'echo': echo }));
    t.match(await post(update), { status: 201, text: 'Update successful (stored)\n' });
    t.match((await text(`${s.url}/hello/x`)).text, /^method=GET\nurl=\/hello\/x\n/, 'the program from the .tar.xz answers');
    t.ok(readFileSync(join(dir, 'hello.elf')).equals(update), 'the archive is stored in filename as it came');

    const hostile: Array<[string, Buffer, RegExp]> = [
      ['a name with ..', tar({ prog: hello }, ['-P', '--transform', 's,^,../,']), /TSKVM_ERR_ARCHIVE_MALFORMED/],
      ['two programs', tar({ a: hello, b: echo }), /TSKVM_ERR_ARCHIVE_CONTENTS/],
      ['a cut .tar.xz', update.subarray(0, update.length >> 1), /TSKVM_ERR_ARCHIVE_XZ/],
    ];
    for (const [label, body, code] of hostile) {
      const r = await post(body);
      t.equal(r.status, 422, `${label}: 422`);
      t.match(r.text, code, `${label}: ${r.text.trim()}`);
    }
    t.ok(readFileSync(join(dir, 'hello.elf')).equals(update), 'failed updates leave the stored file alone');
    t.match((await text(`${s.url}/hello/x`)).text, /^method=GET\n/, 'and the running program serves');

    const byAdmin = await admin(tar({ 'hello': hello }));
    t.equal(byAdmin.status, 200, byAdmin.text);
    t.equal((await text(`${s.url}/hello/x`)).text, 'Hello World!\n', 'the admin endpoint installed the .tar\'s program');
    const refused = await admin(tar({ 'README': 'no program here\n' }));
    t.equal(refused.status, 422);
    t.match(JSON.parse(refused.text).error, /\[TSKVM_ERR_ARCHIVE_CONTENTS\].*"README" is not an ELF program/);
  });
  await withServer({ programs: { hello: { filename: join(dir, 'hello.elf'), key: 'k' } } }, async (s) => {
    t.match((await text(`${s.url}/hello/x`)).text, /^method=GET\n/, 'a restarted server reads the stored archive');
  });
});
