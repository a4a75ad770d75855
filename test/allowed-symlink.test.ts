// allowed_paths' `symlink` entries (`tskvm run --symlink LINK=TARGET`): the guest sees a symlink at
// LINK whose text is TARGET, followed through its own view. Compared with a native run on real
// symlinks; then what a hostile guest can do with one: point it out of every root, loop, or use it
// against a writable root.
import t from 'tap';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertSameOutcome, guestPath, kvmAvailable, runNative, runTskvm } from './helpers/differential.js';
import { parseLibrary } from '../src/server/library.js';
import { PathPolicy } from '../src/syscalls/path-policy.js';

const FLAVOURS = ['glibc', 'musl'];
const dir = mkdtempSync(join(tmpdir(), 'tskvm-symlink-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const links = (pairs: Array<[string, string]>): string[] => pairs.flatMap(([link, target]) => ['--symlink', `${link}=${target}`]);

t.test('a symlink entry reads as a real symlink does natively: lstat, fstatat NOFOLLOW, readlink, stat, open, chdir', async (t) => {
  if (!kvmAvailable(t)) return;
  // Natively: real symlinks in etc/. In the VM: only zone/ is shown, and etc/'s links are entries.
  const zone = join(dir, 'read', 'zone');
  const etc = join(dir, 'read', 'etc');
  mkdirSync(zone, { recursive: true });
  mkdirSync(etc);
  writeFileSync(join(zone, 'UTC'), 'TZif2 not really, but the bytes of a zone file\n');
  const pairs: Array<[string, string]> = [[join(etc, 'localtime'), join(zone, 'UTC')], [join(etc, 'relative'), '../zone/UTC'], [join(etc, 'zones'), zone], [join(etc, 'chain'), join(etc, 'localtime')]];
  for (const [link, target] of pairs) symlinkSync(target, link);
  const ops = [
    ...pairs.flatMap(([link]) => [`lstat:${link}`, `nofollow:${link}`, `readlink:${link}`, `stat:${link}`, `read:${link}`, `noread:${link}`]),
    `read:${join(etc, 'zones', 'UTC')}`, `lstat:${join(etc, 'zones', 'UTC')}`, `readlink:${join(etc, 'zones', 'UTC')}`, `chdir:${join(etc, 'zones')}`, `read:${join(etc, 'zones', '..', 'zone', 'UTC')}`,
  ];
  for (const f of FLAVOURS) {
    const native = runNative(guestPath(`pathops.${f}`), ops);
    t.match(native.stdout.toString(), `readlink ${join(etc, 'relative')}: ../zone/UTC\n`, `${f}: the native run sees the links`);
    const vm = runTskvm(guestPath(`pathops.${f}`), ops, { allow: [zone], extraFlags: links(pairs) });
    assertSameOutcome(t, vm, native, `${f}: pathops`);
    const files = [join(etc, 'localtime'), join(etc, 'relative')];
    assertSameOutcome(t, runTskvm(guestPath(`files.${f}`), files, { allow: [zone], extraFlags: links(pairs) }), runNative(guestPath(`files.${f}`), files), `${f}: files`);
  }
});

t.test('writing through a symlink entry to a writable root writes there, as natively', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const f of FLAVOURS) {
    const base = join(dir, `write-${f}`);
    const results: string[] = [];
    for (const run of ['native', 'vm']) {
      const w = join(base, 'w');
      rmSync(base, { recursive: true, force: true });
      mkdirSync(join(base, 'links'), { recursive: true });
      mkdirSync(w);
      const link = join(base, 'links', 'scratch');
      const ops = [`write:${link}/new.txt:hello`, `read:${join(w, 'new.txt')}`, `rename:${link}/new.txt:${link}/moved.txt`, `read:${link}/moved.txt`, `symlink:${link}/l:moved.txt`, `read:${link}/l`, `unlink:${link}/l`];
      if (run === 'native') {
        symlinkSync(w, link);
        results.push(runNative(guestPath(`pathops.${f}`), ops).stdout.toString());
      } else {
        results.push(runTskvm(guestPath(`pathops.${f}`), ops, { allowWrite: [w], extraFlags: links([[link, w]]) }).stdout.toString());
      }
      t.same(readdirSync(w), ['moved.txt'], `${f} ${run}: the file landed in the writable root`);
      t.equal(readFileSync(join(w, 'moved.txt'), 'utf8'), 'hello');
    }
    t.equal(results[1], results[0], `${f}: the same results`);
    t.match(results[0], /read .*\/moved\.txt: hello\n/);
  }
});

t.test('attacks: out of every root, loops, removing or replacing the link, the host symlink behind it', async (t) => {
  if (!kvmAvailable(t)) return;
  const base = join(dir, 'attack');
  const w = join(base, 'w');
  const secret = join(base, 'secret.txt');
  mkdirSync(w, { recursive: true });
  writeFileSync(secret, 'outside\n');
  writeFileSync(join(w, 'mine.txt'), 'mine\n');
  const ops = [
    'read:/x/passwd', 'readlink:/x/passwd', 'lstat:/x/passwd', 'stat:/x/passwd',
    `read:${w}/up`, `write:${w}/up:overwritten`,
    'read:/loop/a', 'read:/loop/self',
    `unlink:${w}/link`, `rename:${w}/link:${w}/taken`, `rename:${w}/mine.txt:${w}/link`, `symlink:${w}/link:/etc`, `excl:${w}/link`, `write:${w}/link:overwritten`,
    `read:${w}/to-w/mine.txt`, `write:${w}/to-w/via-link.txt:ok`,
  ];
  const pairs: Array<[string, string]> = [
    ['/x/passwd', '/etc/passwd'],
    [`${w}/up`, `../secret.txt`],
    ['/loop/a', '/loop/b'], ['/loop/b', '/loop/a'], ['/loop/self', 'self'],
    [`${w}/link`, secret],
    [`${w}/to-w`, w],
  ];
  const before = readFileSync('/etc/passwd');
  for (const f of FLAVOURS) {
    const vm = runTskvm(guestPath(`pathops.${f}`), ops, { allowWrite: [w], extraFlags: links(pairs) });
    const out = vm.stdout.toString();
    t.equal(vm.status, 0, `${f}: ${vm.stderr.toString()}`);
    const line = (prefix: string): string => out.split('\n').find((l) => l.startsWith(prefix)) ?? `(no line ${prefix})`;
    t.equal(line('read /x/passwd:'), 'read /x/passwd: error: Permission denied', `${f}: a link out of every root leads nowhere`);
    t.equal(line('readlink /x/passwd:'), 'readlink /x/passwd: /etc/passwd', `${f}: its text is what the configuration says`);
    t.equal(line('lstat /x/passwd:'), 'lstat /x/passwd: symlink size=11', `${f}: lstat shows the link`);
    t.equal(line('stat /x/passwd:'), 'stat /x/passwd: error: Permission denied');
    t.equal(line(`read ${w}/up:`), `read ${w}/up: error: Permission denied`, `${f}: a relative text leaving the writable root by ..`);
    t.equal(line(`write ${w}/up:`), `write ${w}/up: error: Permission denied`);
    // ELOOP: glibc and musl say it in their own words.
    t.match(line('read /loop/a:'), /^read \/loop\/a: error: (Too many levels of symbolic links|Symbolic link loop)$/, `${f}: two links pointing at each other`);
    t.match(line('read /loop/self:'), /^read \/loop\/self: error: (Too many levels of symbolic links|Symbolic link loop)$/, `${f}: a link to itself by a relative text`);
    for (const op of ['unlink', 'rename', 'symlink', 'excl']) {
      t.equal(line(`${op} ${w}/link:`), `${op} ${w}/link: error: Read-only file system`, `${f}: ${op} of the link in a writable root is refused`);
    }
    t.equal(line(`rename ${w}/mine.txt:`), `rename ${w}/mine.txt: error: Read-only file system`, `${f}: nothing is renamed over the link`);
    t.equal(line(`write ${w}/link:`), `write ${w}/link: error: Permission denied`, `${f}: writing through it reaches its target's view (none)`);
    t.equal(line(`read ${w}/to-w/mine.txt:`), `read ${w}/to-w/mine.txt: mine\n`.trimEnd(), `${f}: a link into the writable root reads it`);
    t.equal(line(`write ${w}/to-w/via-link.txt:`), `write ${w}/to-w/via-link.txt: written`);
    t.same(readdirSync(w).sort(), ['mine.txt', 'via-link.txt'], `${f}: the writable root holds what was written into it, and no link, nothing taken`);
    t.equal(readFileSync(secret, 'utf8'), 'outside\n', `${f}: the file outside is untouched`);
    rmSync(join(w, 'via-link.txt'));
  }
  t.same(readFileSync('/etc/passwd'), before);

});

t.test('the library takes "symlink"; a symlink entry is checked when the program starts', async (t) => {
  const lib = parseLibrary({ programs: { p: { filename: 'p', allowed_paths: [{ real: '/usr/share/zoneinfo/UTC', virtual: '/etc/localtime', symlink: true }, { real: 'data', symlink: false }] } } }, { baseDir: '/lib' });
  t.same(lib.programs.get('p')!.options.allowedPaths, [{ real: '/usr/share/zoneinfo/UTC', virtual: '/etc/localtime', symlink: true }, { real: '/lib/data', symlink: false }],
    'a symlink\'s real is its text, kept as written; a host path is made absolute');
  const rel = parseLibrary({ programs: { p: { filename: 'p', allowed_paths: [{ real: '../zone/UTC', virtual: '/etc/localtime', symlink: true }] } } }, { baseDir: '/lib' });
  t.same(rel.programs.get('p')!.options.allowedPaths, [{ real: '../zone/UTC', virtual: '/etc/localtime', symlink: true }], 'a relative text stays relative (to the link)');
  t.throws(() => parseLibrary({ programs: { p: { filename: 'p', allowed_paths: [{ real: '/x', virtual: '/y', symlink: 'yes' }] } } }, { baseDir: '/lib' }),
    { code: 'TSKVM_ERR_LIBRARY', message: /"prefix", "writable" and "symlink" must be true or false/ });
  const exe = { hostPath: '/bin/true', guestPath: '/bin/true' };
  const bad: Array<[object, RegExp]> = [
    [{ real: '/etc/passwd', symlink: true }, /needs "virtual"/],
    [{ real: '/etc/passwd', virtual: 'relative', symlink: true }, /must be absolute/],
    [{ real: '/x', virtual: '/x', symlink: true }, /points at itself/],
    [{ real: '/x', virtual: '/y', symlink: true, writable: true }, /cannot be writable/],
    [{ real: '/x', virtual: '/', symlink: true }, /cannot be "\/"/],
  ];
  for (const [entry, message] of bad) {
    t.throws(() => new PathPolicy({ allowed: [entry as never], exe }), { code: 'TSKVM_ERR_CONFIG_ALLOWED_PATH', message }, JSON.stringify(entry));
  }
  t.throws(() => new PathPolicy({ allowed: [{ real: '/x', virtual: '/y', symlink: true }, { real: '/z', virtual: '/y', symlink: true }], exe }), { message: /two symlinks at "\/y"/ });
  t.throws(() => new PathPolicy({ allowed: [{ real: '/x', virtual: '/tmp', symlink: true }, { real: '/tmp' }], exe }), { message: /both a symlink and a path shown from the host/ });
});

t.test('the directory of host symlinks behind the entries cannot be reached from a root that holds it', async (t) => {
  // In this process: the policy makes its host symlinks in tmpdir()/tskvm-links-<pid>, which a
  // writable root on tmpdir() holds. A guest that could change them would change what lstat and
  // readlink show every program of the process.
  const linkDir = join(tmpdir(), `tskvm-links-${process.pid}`);
  const policy = new PathPolicy({ allowed: [{ real: tmpdir(), writable: true }, { real: '/etc/passwd', virtual: '/x/passwd', symlink: true }], exe: { hostPath: '/bin/true', guestPath: '/bin/true' } });
  try {
    t.ok(lstatSync(linkDir).isDirectory(), 'the directory is there');
    t.same(Buffer.from(policy.readlink('/x/passwd') as Uint8Array).toString(), '/etc/passwd', 'readlink gives the text');
    const entries = readdirSync(linkDir);
    t.equal(entries.length >= 1, true, 'it holds the host symlink');
    for (const [guest, want, follow] of [[linkDir, 'write', false], [linkDir, 'stat', true], [join(linkDir, entries[0]!), 'write', false], [join(linkDir, entries[0]!), 'stat', false], [join(linkDir, 'new'), 'write', false]] as const) {
      t.equal(policy.resolve(guest, want, { followLast: follow }), -13, `${want} ${guest}${follow ? '' : ' (nofollow)'}: EACCES`);
    }
    const other = policy.resolve(join(tmpdir(), 'tskvm-not-the-links'), 'write', { followLast: false });
    t.not(other, -13, 'the rest of the writable root is as before');
    if (typeof other !== 'number') other.release();
  } finally {
    policy.close();
  }
  t.ok(existsSync(dir) && lstatSync(dir).isDirectory());
});
