// File-system syscalls, called directly on a hand-built Process: guest memory is
// a plain ArrayBuffer (host addresses are never needed), files live in a temp dir.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignalState } from '../src/syscalls/signal-state.js';
import { GuestMemory, HostWindows } from '../src/paging/guest-memory.js';
import { GDT_ADDR, PDPT_ADDR, STUBS_ADDR, USER_START, VVAR_ADDR } from '../src/paging/layout.js';
import { E } from '../src/host/errno.js';
import { FileTable } from '../src/syscalls/fd-table.js';
import { BufferFile, EmptyFile, SinkFile } from '../src/syscalls/open-files/memory-file.js';
import type { OpenFile } from '../src/syscalls/open-files/open-file.js';
import { fsSyscalls } from '../src/syscalls/fs/index.js';
import { PathPolicy, type AllowedPath } from '../src/syscalls/path-policy.js';
import { Process } from '../src/syscalls/process.js';

/** The test guest's memory as one array (it is small: one host view). */
const bytesOf = (m: GuestMemory): Uint8Array => m.span(0, m.size);
const viewOf = (m: GuestMemory): DataView => {
  const b = bytesOf(m);
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
};

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_REMOVEDIR = 0x200;
const AT_EMPTY_PATH = 0x1000;
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_TRUNC = 0o1000;
const O_APPEND = 0o2000;
const O_NONBLOCK = 0o4000;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;
const F_DUPFD = 0;
const F_GETFD = 1;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const F_DUPFD_CLOEXEC = 1030;
const MEM_SIZE = 16 << 20;

const handlers = new Map(fsSyscalls.map((def) => [def.name, def.handler]));

/** A guest: a Process over fresh memory, a temp dir, and helpers to call syscalls with guest data. */
class Guest {
  readonly p: Process;
  readonly out: string[] = [];
  private next = USER_START;

  constructor(opts: { allowed: AllowedPath[]; cwd?: string; maxFiles?: number; stdin?: OpenFile; exe?: string }) {
    const stdout = new SinkFile((bytes) => { this.out.push(Buffer.from(bytes).toString()); });
    this.p = new Process({
      mem: new GuestMemory(HostWindows.over(new ArrayBuffer(MEM_SIZE))),
      files: new FileTable([opts.stdin ?? new EmptyFile(), stdout, new SinkFile(() => {})], opts.maxFiles),
      paths: new PathPolicy({ allowed: opts.allowed, cwd: opts.cwd, exe: { hostPath: opts.exe ?? process.execPath, guestPath: '/app/program' } }),
      mm: {} as never,
      signals: new SignalState(),
      argv: [],
      env: [],
      trace: null,
      warn: () => {},
    });
  }

  sys(name: string, ...args: number[]): number {
    const handler = handlers.get(name);
    if (!handler) throw new Error(`no syscall ${name}`);
    return handler(this.p, Float64Array.from(args));
  }

  /** Guest memory for `len` bytes (a bump allocator). */
  alloc(len: number): number {
    const addr = this.next;
    this.next += (len + 15) & ~15;
    return addr;
  }

  /** A NUL-terminated string in guest memory. */
  str(s: string): number {
    const bytes = Buffer.from(s + '\0');
    const addr = this.alloc(bytes.length);
    this.p.mem.put(addr, bytes);
    return addr;
  }

  bytes(data: string | Uint8Array): [number, number] {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const addr = this.alloc(bytes.length);
    this.p.mem.put(addr, bytes);
    return [addr, bytes.length];
  }

  text(addr: number, len: number): string {
    return Buffer.from(this.p.mem.read(addr, len)).toString();
  }

  open(path: string, flags: number, mode = 0o644): number {
    return this.sys('openat', AT_FDCWD, this.str(path), flags, mode);
  }

  write(fd: number, data: string): number {
    return this.sys('write', fd, ...this.bytes(data));
  }

  read(fd: number, len: number): string | number {
    const buf = this.alloc(len);
    const n = this.sys('read', fd, buf, len);
    return n < 0 ? n : this.text(buf, n);
  }

  /** getdents64 over the whole directory: [name, d_type, d_ino] per record. */
  listDir(fd: number, bufSize = 4096): Array<[string, number, bigint]> {
    const buf = this.alloc(bufSize);
    const entries: Array<[string, number, bigint]> = [];
    for (;;) {
      const n = this.sys('getdents64', fd, buf, bufSize);
      if (n <= 0) {
        if (n < 0) throw new Error(`getdents64: ${n}`);
        return entries;
      }
      for (let off = 0; off < n;) {
        const v = viewOf(this.p.mem);
        const reclen = v.getUint16(buf + off + 16, true);
        const name = this.p.mem.cString(buf + off + 19)!;
        entries.push([name, v.getUint8(buf + off + 18), v.getBigUint64(buf + off, true)]);
        off += reclen;
      }
    }
  }
}

function tempTree(t: Test): { dir: string; ro: string; rw: string } {
  const dir = fs.realpathSync(fs.mkdtempSync(join(tmpdir(), 'tskvm-fs-')));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ro = join(dir, 'ro');
  const rw = join(dir, 'rw');
  fs.mkdirSync(ro);
  fs.mkdirSync(rw);
  fs.writeFileSync(join(ro, 'hello.txt'), 'hello, world\n');
  fs.writeFileSync(join(dir, 'secret.txt'), 'secret\n');
  fs.symlinkSync('/etc/passwd', join(ro, 'to-passwd'));
  fs.symlinkSync('../secret.txt', join(ro, 'to-secret'));
  fs.symlinkSync('hello.txt', join(ro, 'to-hello'));
  fs.symlinkSync(dir, join(rw, 'to-parent'));
  return { dir, ro, rw };
}

function guestFor(t: Test, opts: { maxFiles?: number; stdin?: OpenFile } = {}): { g: Guest; dir: string; ro: string; rw: string } {
  const tree = tempTree(t);
  const g = new Guest({ allowed: [{ real: tree.ro }, { real: tree.rw, writable: true }], cwd: tree.rw, ...opts });
  return { g, ...tree };
}

t.test('open, write, read, seek and close a file in a writable directory', async (t) => {
  const { g, rw } = guestFor(t);
  const fd = g.open(join(rw, 'a.txt'), O_RDWR | O_CREAT | O_EXCL, 0o640);
  t.equal(fd, 3, 'lowest free fd');
  t.equal(g.write(fd, 'abcdef'), 6);
  t.equal(fs.readFileSync(join(rw, 'a.txt'), 'utf8'), 'abcdef', 'the bytes reached the host file');
  t.equal(fs.statSync(join(rw, 'a.txt')).mode & 0o777, 0o640 & ~0o022, 'created with mode & ~umask');
  t.equal(g.sys('lseek', fd, 0, 1), 6, 'SEEK_CUR reports the position');
  t.equal(g.sys('lseek', fd, 1, 0), 1, 'SEEK_SET');
  t.equal(g.read(fd, 3), 'bcd');
  t.equal(g.read(fd, 100), 'ef', 'short read at end of file');
  t.equal(g.read(fd, 100), '', 'then end of file');
  t.equal(g.sys('lseek', fd, -2, 2), 4, 'SEEK_END');
  t.equal(g.sys('lseek', fd, -10, 0), -E.EINVAL, 'negative position');
  t.equal(g.sys('lseek', fd, 0, 7), -E.EINVAL, 'bad whence');
  const buf = g.alloc(8);
  t.equal(g.sys('pread64', fd, buf, 3, 2), 3);
  t.equal(g.text(buf, 3), 'cde', 'pread at an offset');
  t.equal(g.sys('lseek', fd, 0, 1), 4, 'pread leaves the position alone');
  t.equal(g.sys('pwrite64', fd, ...g.bytes('XY'), 0), 2);
  t.equal(fs.readFileSync(join(rw, 'a.txt'), 'utf8'), 'XYcdef');
  t.equal(g.sys('pread64', fd, buf, 3, -1), -E.EINVAL, 'negative offset');
  t.equal(g.sys('ftruncate', fd, 2), 0);
  t.equal(fs.readFileSync(join(rw, 'a.txt'), 'utf8'), 'XY');
  t.equal(g.sys('close', fd), 0);
  t.equal(g.sys('close', fd), -E.EBADF, 'closing twice');
  t.equal(g.open(join(rw, 'a.txt'), O_WRONLY | O_CREAT | O_EXCL), -E.EEXIST, 'O_EXCL on an existing file');

  const app = g.open('a.txt', O_WRONLY | O_APPEND); // relative to the cwd
  t.equal(g.write(app, '123'), 3);
  t.equal(g.sys('pwrite64', app, ...g.bytes('!'), 0), 1, 'pwrite on O_APPEND appends, as on Linux');
  t.equal(fs.readFileSync(join(rw, 'a.txt'), 'utf8'), 'XY123!');
  t.equal(g.read(app, 1), -E.EBADF, 'reading a write-only fd');
  const ro = g.open('a.txt', O_RDONLY);
  t.equal(g.write(ro, 'x'), -E.EBADF, 'writing a read-only fd');
  t.equal(g.open('a.txt', O_WRONLY | O_TRUNC), 5);
  t.equal(fs.readFileSync(join(rw, 'a.txt'), 'utf8'), '', 'O_TRUNC');
  t.equal(g.open('missing', O_RDONLY), -E.ENOENT);
  t.equal(g.open('a.txt', 3), -E.EINVAL, 'access mode 3');
  t.equal(g.open('a.txt/', O_RDONLY), -E.ENOTDIR, 'trailing slash on a file');
  t.equal(g.open('new/', O_WRONLY | O_CREAT), -E.EISDIR, 'O_CREAT with a trailing slash');
  t.equal(g.open('a.txt', O_RDONLY | O_DIRECTORY), -E.ENOTDIR);
  t.equal(g.open('.', O_WRONLY), -E.EISDIR, 'a directory cannot be opened for writing');
});

t.test('paths outside the allowed roots are refused, escapes included', async (t) => {
  const { g, dir, ro, rw } = guestFor(t);
  t.equal(g.open('/etc/passwd', O_RDONLY), -E.ENOENT, 'a path no root covers does not exist');
  t.equal(g.open(join(dir, 'secret.txt'), O_RDONLY), -E.ENOENT, 'the parent of a root is not exposed');
  t.equal(g.open(`${ro}/../secret.txt`, O_RDONLY), -E.EACCES, '".." leading out of a root');
  t.equal(g.open('../secret.txt', O_RDONLY), -E.EACCES, '".." from the cwd');
  t.equal(g.open(join(ro, 'to-passwd'), O_RDONLY), -E.EACCES, 'absolute symlink out of a root');
  t.equal(g.open(join(ro, 'to-secret'), O_RDONLY), -E.EACCES, 'relative symlink out of a root');
  t.equal(g.open(join(rw, 'to-parent', 'secret.txt'), O_RDONLY), -E.EACCES, 'symlinked directory out of a root');
  t.equal(g.open(join(rw, 'to-parent', 'x'), O_WRONLY | O_CREAT), -E.EACCES, 'creating through an escaping symlink');
  t.notOk(fs.existsSync(join(dir, 'x')));
  t.ok(g.open(join(rw, 'to-parent', 'rw', 'x'), O_WRONLY | O_CREAT) >= 0, 'a symlink leading out and back in is fine');
  t.equal(g.sys('stat', g.str(join(ro, 'to-passwd')), g.alloc(144)), -E.EACCES, 'stat follows and refuses');
  t.equal(g.sys('lstat', g.str(join(ro, 'to-passwd')), g.alloc(144)), 0, 'lstat of the link itself is fine');
  const fd = g.open(join(ro, 'to-hello'), O_RDONLY);
  t.ok(fd >= 0, 'a symlink that stays inside works');
  t.equal(g.read(fd, 100), 'hello, world\n');

  // A dangling symlink inside a writable root must not let O_CREAT create its target outside.
  fs.symlinkSync(join(dir, 'created-outside'), join(rw, 'dangling'));
  t.equal(g.open(join(rw, 'dangling'), O_WRONLY | O_CREAT), -E.EACCES);
  t.notOk(fs.existsSync(join(dir, 'created-outside')), 'nothing was created outside');
  t.equal(g.sys('readlink', g.str('/proc/self/exe'), g.alloc(64), 64), '/app/program'.length);

  // Read-only roots.
  t.equal(g.open(join(ro, 'hello.txt'), O_WRONLY), -E.EROFS, 'writing in a read-only root');
  t.equal(g.open(join(ro, 'new.txt'), O_WRONLY | O_CREAT), -E.EROFS, 'creating in a read-only root');
  t.ok(g.open(join(ro, 'hello.txt'), O_RDONLY | O_CREAT) >= 0, 'O_CREAT of an existing file only reads it');
  t.equal(g.sys('unlink', g.str(join(ro, 'hello.txt'))), -E.EROFS);
  t.equal(g.sys('mkdir', g.str(join(ro, 'd')), 0o755), -E.EROFS);
  t.equal(g.sys('mkdir', g.str(ro), 0o755), -E.EEXIST, 'an existing entry is reported first (mkdir -p)');
  t.equal(g.sys('rename', g.str(join(ro, 'hello.txt')), g.str(join(rw, 'moved'))), -E.EROFS);
  t.equal(g.sys('chmod', g.str(join(ro, 'hello.txt')), 0o600), -E.EROFS);
  t.equal(g.sys('access', g.str(join(ro, 'hello.txt')), 2), -E.EROFS, 'access(W_OK)');
  t.equal(g.sys('access', g.str(join(ro, 'hello.txt')), 4), 0, 'access(R_OK)');
  t.equal(fs.readFileSync(join(ro, 'hello.txt'), 'utf8'), 'hello, world\n', 'untouched');
});

t.test('roots shown under another name', async (t) => {
  const { dir, ro, rw } = tempTree(t);
  fs.symlinkSync('/data/hello.txt', join(rw, 'abs-link'));
  fs.symlinkSync(join(ro, 'hello.txt'), join(rw, 'host-link'));
  const g = new Guest({ allowed: [{ real: ro, virtual: '/data' }, { real: rw, virtual: '/out', writable: true }], cwd: '/data' });
  const fd = g.open('hello.txt', O_RDONLY);
  t.equal(g.read(fd, 5), 'hello');
  t.equal(g.open(ro + '/hello.txt', O_RDONLY), -E.ENOENT, 'the host path is not the guest path');
  t.equal(g.open('/data/../out/new', O_WRONLY | O_CREAT), 4, '".." at the top of a root leaves it, as at a mount point');
  t.equal(g.open('/data/../secret.txt', O_RDONLY), -E.EACCES, 'into the part of the namespace no root covers: out of the view');
  t.equal(g.open('/nowhere/../secret.txt', O_RDONLY), -E.ENOENT, 'a path that never enters the view');
  t.equal(g.open('/out/../data/hello.txt', O_RDONLY), 5);
  t.ok(fs.existsSync(join(rw, 'new')));
  const buf = g.alloc(256);
  const n = g.sys('readlink', g.str('/out/abs-link'), buf, 256);
  t.equal(g.text(buf, n), '/data/hello.txt', 'a link\'s text as stored');
  t.equal(g.read(g.open('/out/abs-link', O_RDONLY), 5), 'hello', 'an absolute target is a guest path, as in a chroot');
  t.equal(g.open('/out/host-link', O_RDONLY), -E.EACCES, 'not a host path');
  t.equal(g.sys('symlink', g.str('/data/hello.txt'), g.str('/out/made-link')), 0);
  t.equal(fs.readlinkSync(join(rw, 'made-link')), '/data/hello.txt', 'the guest\'s text is stored as it is');
  t.equal(g.read(g.open('/out/made-link', O_RDONLY), 5), 'hello');
  t.equal(g.sys('chdir', g.str('/out')), 0);
  t.equal(g.text(buf, g.sys('getcwd', buf, 256) - 1), '/out');
  t.equal(g.open(join(dir, 'secret.txt'), O_RDONLY), -E.ENOENT);
});

t.test('prefix: false (a VMOD library\'s entry without prefix): the entry itself, nothing below it', async (t) => {
  const { ro } = tempTree(t);
  const exact = new Guest({ allowed: [{ real: ro, virtual: '/data', prefix: false }, { real: join(ro, 'hello.txt'), virtual: '/one.txt', prefix: false }] });
  t.ok(exact.open('/data', O_RDONLY | O_DIRECTORY) >= 0, 'the directory itself opens');
  t.equal(exact.open('/data/hello.txt', O_RDONLY), -E.ENOENT, 'a file below it is not in the view');
  t.equal(exact.open('/data/./hello.txt', O_RDONLY), -E.ENOENT, 'nor by another spelling');
  t.equal(exact.read(exact.open('/one.txt', O_RDONLY), 5), 'hello', 'a file entry is that file');
  const covering = new Guest({ allowed: [{ real: ro, virtual: '/data' }] });
  t.equal(covering.read(covering.open('/data/hello.txt', O_RDONLY), 5), 'hello', 'without prefix (tskvm\'s own format): a directory covers what is below it');
  const prefixed = new Guest({ allowed: [{ real: ro, virtual: '/data', prefix: true }] });
  t.equal(prefixed.read(prefixed.open('/data/hello.txt', O_RDONLY), 5), 'hello', 'prefix: true: everything below');
});

t.test('roots themselves, hard links between roots, roots nested in another on the host', async (t) => {
  const { dir, rw } = tempTree(t);
  const rw2 = join(dir, 'rw2');
  fs.mkdirSync(rw2);
  fs.writeFileSync(join(rw2, 'other.txt'), 'other');
  fs.mkdirSync(join(rw, 'sub', 'inner'), { recursive: true });
  fs.writeFileSync(join(rw, 'sub', 'inner', 'kept.txt'), 'kept');
  fs.writeFileSync(join(rw, 'file-root'), 'file root');
  const g = new Guest({
    allowed: [
      { real: rw, writable: true }, { real: rw2, writable: true },
      { real: join(rw, 'sub', 'inner'), virtual: '/inner' }, { real: join(rw, 'file-root'), virtual: '/file' },
    ],
    cwd: rw,
  });
  t.equal(g.sys('rmdir', g.str(rw2)), -E.EBUSY, 'a root is not removed, as a mount point');
  t.equal(g.sys('rename', g.str(rw2), g.str(join(rw, 'moved'))), -E.EBUSY, 'nor renamed');
  t.equal(g.sys('unlink', g.str('/file')), -E.EROFS, 'nor a file root (read-only, which is said first)');
  t.equal(g.sys('link', g.str(join(rw2, 'other.txt')), g.str('linked')), -E.EXDEV, 'no hard link from another writable root');
  t.equal(g.sys('link', g.str('sub/inner/kept.txt'), g.str('linked')), -E.EXDEV, 'nor from a read-only root inside this one on the host');
  t.equal(g.open('sub/inner/kept.txt', O_WRONLY), -E.EROFS, 'a read-only root reached through a writable one stays read-only');
  t.equal(g.open('file-root', O_WRONLY), -E.EROFS, 'a read-only file root too');
  t.equal(g.read(g.open('file-root', O_RDONLY), 4), 'file');
  t.equal(g.sys('rename', g.str('sub/inner'), g.str('elsewhere')), -E.EROFS, 'it is the read-only root there too');
  t.equal(g.sys('rename', g.str('sub'), g.str('sub2')), 0, 'a directory holding it can be renamed…');
  t.equal(g.open('sub2/inner/kept.txt', O_WRONLY), -E.EROFS, '…and the root is still recognised, by identity');
  t.equal(g.sys('chdir', g.str('sub2/inner')), 0);
  const buf = g.alloc(256);
  t.equal(g.text(buf, g.sys('getcwd', buf, 256) - 1), '/inner', 'under its own guest path');
  t.equal(fs.readFileSync(join(rw, 'sub2', 'inner', 'kept.txt'), 'utf8'), 'kept');
});

t.test('symlinks and ".." resolve as on Linux, one component at a time', async (t) => {
  const { g, rw } = guestFor(t);
  fs.mkdirSync(join(rw, 'b', 'c'), { recursive: true });
  fs.writeFileSync(join(rw, 'b', 'x'), 'in b');
  fs.symlinkSync('b/c', join(rw, 'a'));
  fs.symlinkSync('loop', join(rw, 'loop'));
  t.equal(g.read(g.open('a/../x', O_RDONLY), 10), 'in b', '".." after a symlink is the parent of where it led');
  t.equal(g.open(`${rw}/a/../../../secret.txt`, O_RDONLY), -E.EACCES, 'and out of the root from there is refused');
  t.equal(g.open('loop', O_RDONLY), -E.ELOOP);
  t.equal(g.open('b/x/y', O_RDONLY), -E.ENOTDIR, 'a file in the middle');
  const deep = Array(100).fill('n').join('/');
  fs.mkdirSync(join(rw, deep), { recursive: true });
  t.equal(g.read(g.open(`${deep}/${Array(100).fill('..').join('/')}/b/x`, O_RDONLY), 10), 'in b', 'a hundred directories down and back up');
  t.equal(g.sys('mkdir', g.str('a/made'), 0o755), 0, 'through a symlinked directory');
  t.ok(fs.statSync(join(rw, 'b', 'c', 'made')).isDirectory());
  const buf = g.alloc(256);
  t.equal(g.sys('chdir', g.str('a')), 0);
  t.equal(g.text(buf, g.sys('getcwd', buf, 256) - 1), join(rw, 'b', 'c'));
});

t.test('getdents64 lists a directory like the host, in the host order', async (t) => {
  const { g, rw } = guestFor(t);
  const names = Array.from({ length: 40 }, (_, i) => `file-${i}-${'x'.repeat(i)}`);
  for (const name of names) fs.writeFileSync(join(rw, name), '');
  fs.mkdirSync(join(rw, 'sub'));
  const fd = g.open(rw, O_RDONLY | O_DIRECTORY);
  t.ok(fd >= 0);
  const hostOrder: string[] = [];
  const dir = fs.opendirSync(rw);
  for (let d = dir.readSync(); d; d = dir.readSync()) hostOrder.push(d.name);
  dir.closeSync();

  const listed = g.listDir(fd, 256); // a small buffer: many calls, entries carried over
  t.same(listed.map(([name]) => name), ['.', '..', ...hostOrder], '. and .. first, then readdir(3) order');
  const byName = new Map(listed.map(([name, type, ino]) => [name, { type, ino }]));
  t.equal(byName.get('sub')?.type, 4, 'DT_DIR');
  t.equal(byName.get('to-parent')?.type, 10, 'DT_LNK');
  t.equal(byName.get('file-0-')?.type, 8, 'DT_REG');
  t.equal(byName.get('file-3-xxx')?.ino, fs.lstatSync(join(rw, 'file-3-xxx'), { bigint: true }).ino, 'd_ino');
  t.equal(byName.get('.')?.ino, fs.statSync(rw, { bigint: true }).ino);
  t.same(g.listDir(fd), [], 'then the end');

  t.equal(g.sys('lseek', fd, 0, 0), 0, 'rewind');
  t.same(g.listDir(fd).map(([name]) => name), listed.map(([name]) => name), 'the same listing again');
  t.equal(g.sys('lseek', fd, 5, 0), 5, 'seekdir to an entry');
  t.equal(g.listDir(fd)[0]![0], listed[5]![0]);
  t.equal(g.sys('lseek', fd, 0, 0), 0);
  t.equal(g.sys('getdents64', fd, g.alloc(16), 16), -E.EINVAL, 'a buffer too small for one record');
  t.equal(g.sys('getdents64', fd, 0, 4096), -E.EFAULT, 'a bad buffer');
  t.equal(g.read(fd, 10), -E.EISDIR, 'read on a directory');
  const file = g.open(join(rw, 'file-0-'), O_RDONLY);
  t.equal(g.sys('getdents64', file, g.alloc(4096), 4096), -E.ENOTDIR);

  // *at calls relative to a directory fd, and fchdir.
  const sub = g.open('sub', O_RDONLY | O_DIRECTORY);
  t.ok(g.sys('openat', sub, g.str('made'), O_WRONLY | O_CREAT, 0o600) >= 0);
  t.ok(fs.existsSync(join(rw, 'sub', 'made')), 'openat relative to a dirfd');
  t.equal(g.sys('openat', file, g.str('x'), O_RDONLY, 0), -E.ENOTDIR, 'a dirfd that is not a directory');
  t.equal(g.sys('openat', 99, g.str('x'), O_RDONLY, 0), -E.EBADF);
  t.equal(g.sys('fchdir', sub), 0);
  const buf = g.alloc(4096);
  t.equal(g.text(buf, g.sys('getcwd', buf, 4096) - 1), join(rw, 'sub'));
  t.equal(g.sys('unlinkat', AT_FDCWD, g.str('made'), 0), 0);
  t.equal(g.sys('unlinkat', fd, g.str('sub'), AT_REMOVEDIR), 0, 'rmdir via unlinkat relative to a dirfd');
  t.notOk(fs.existsSync(join(rw, 'sub')));
});

t.test('stat, lstat, fstat, newfstatat and statx fill the Linux structs', async (t) => {
  const { g, ro } = guestFor(t);
  const path = join(ro, 'hello.txt');
  const host = fs.statSync(path, { bigint: true });
  const buf = g.alloc(256);
  const v = viewOf(g.p.mem);
  t.equal(g.sys('stat', g.str(path), buf), 0);
  t.equal(v.getBigUint64(buf + 0, true), host.dev, 'st_dev');
  t.equal(v.getBigUint64(buf + 8, true), host.ino, 'st_ino');
  t.equal(v.getBigUint64(buf + 16, true), host.nlink, 'st_nlink');
  t.equal(v.getUint32(buf + 24, true), Number(host.mode), 'st_mode');
  t.equal(v.getUint32(buf + 28, true), Number(host.uid), 'st_uid');
  t.equal(v.getBigInt64(buf + 48, true), 13n, 'st_size');
  t.equal(v.getBigInt64(buf + 56, true), host.blksize, 'st_blksize');
  t.equal(v.getBigInt64(buf + 64, true), host.blocks, 'st_blocks');
  t.equal(v.getBigInt64(buf + 88, true) * 1_000_000_000n + v.getBigInt64(buf + 96, true), host.mtimeNs, 'st_mtim');

  t.equal(g.sys('lstat', g.str(join(ro, 'to-hello')), buf), 0);
  t.equal(v.getUint32(buf + 24, true) & 0o170000, 0o120000, 'lstat sees the link');
  t.equal(g.sys('newfstatat', AT_FDCWD, g.str(join(ro, 'to-hello')), buf, 0), 0);
  t.equal(v.getBigInt64(buf + 48, true), 13n, 'newfstatat follows');
  t.equal(g.sys('newfstatat', AT_FDCWD, g.str(join(ro, 'to-hello')), buf, AT_SYMLINK_NOFOLLOW), 0);
  t.equal(v.getUint32(buf + 24, true) & 0o170000, 0o120000, 'unless AT_SYMLINK_NOFOLLOW');
  t.equal(g.sys('newfstatat', AT_FDCWD, g.str(path), buf, 0x4), -E.EINVAL, 'unknown flag');

  const fd = g.open(path, O_RDONLY);
  v.setBigInt64(buf + 48, 0n, true);
  t.equal(g.sys('fstat', fd, buf), 0);
  t.equal(v.getBigInt64(buf + 48, true), 13n, 'fstat');
  t.equal(g.sys('newfstatat', fd, g.str(''), buf, AT_EMPTY_PATH), 0, 'AT_EMPTY_PATH stats the fd');
  t.equal(v.getBigUint64(buf + 8, true), host.ino);
  t.equal(g.sys('newfstatat', fd, g.str(''), buf, 0), -E.ENOENT, 'an empty path without AT_EMPTY_PATH');
  t.equal(g.sys('fstat', 1, buf), 0, 'fstat of a sink');
  t.equal(v.getUint32(buf + 24, true) & 0o170000, 0o010000, 'stdout is a FIFO, never a tty');

  t.equal(g.sys('statx', AT_FDCWD, g.str(path), 0, 0x7ff, buf), 0);
  t.equal(v.getUint32(buf + 0, true) & 0x7ff, 0x7ff, 'stx_mask: the basic stats');
  t.equal(v.getUint16(buf + 28, true), Number(host.mode), 'stx_mode');
  t.equal(v.getBigUint64(buf + 32, true), host.ino, 'stx_ino');
  t.equal(v.getBigUint64(buf + 40, true), 13n, 'stx_size');
  t.equal(v.getBigInt64(buf + 112, true) * 1_000_000_000n + BigInt(v.getUint32(buf + 120, true)), host.mtimeNs, 'stx_mtime');
  const dev = fs.statSync(path).dev;
  t.equal(v.getUint32(buf + 136, true), (dev >> 8) & 0xfff, 'stx_dev_major');
  t.equal(v.getUint32(buf + 140, true), dev & 0xff, 'stx_dev_minor');
  t.equal(g.sys('statx', AT_FDCWD, g.str(path), 0, 0x80000000, buf), -E.EINVAL, 'STATX__RESERVED');
  t.equal(g.sys('statx', fd, 0, AT_EMPTY_PATH, 0x7ff, buf), 0, 'NULL path with AT_EMPTY_PATH');
  t.equal(g.sys('stat', g.str(path), MEM_SIZE - 100), -E.EFAULT, 'a buffer running off guest memory');
});

t.test('dup, dup2, dup3, fcntl and close-on-exec', async (t) => {
  const { g, rw } = guestFor(t);
  const fd = g.open(join(rw, 'f'), O_RDWR | O_CREAT | O_CLOEXEC);
  t.equal(g.sys('fcntl', fd, F_GETFD, 0), 1, 'O_CLOEXEC sets FD_CLOEXEC');
  t.equal(g.sys('fcntl', fd, F_SETFD, 0), 0);
  t.equal(g.sys('fcntl', fd, F_GETFD, 0), 0);
  t.equal(g.sys('fcntl', fd, F_GETFL, 0) & 0o3, O_RDWR, 'F_GETFL access mode');
  const copy = g.sys('dup', fd);
  t.equal(copy, fd + 1);
  t.equal(g.sys('fcntl', copy, F_GETFD, 0), 0, 'dup clears close-on-exec');
  t.equal(g.write(fd, 'abc'), 3);
  t.equal(g.sys('lseek', copy, 0, 1), 3, 'dup shares the file position');
  t.equal(g.sys('close', fd), 0);
  t.equal(g.write(copy, 'd'), 1, 'the copy still works after the original is closed');
  t.equal(fs.readFileSync(join(rw, 'f'), 'utf8'), 'abcd');

  t.equal(g.sys('dup2', copy, 10), 10);
  t.equal(g.sys('dup2', copy, copy), copy, 'dup2 onto itself');
  t.equal(g.sys('dup2', 50, 11), -E.EBADF);
  t.equal(g.sys('dup2', copy, 5000), -E.EBADF, 'beyond the limit');
  t.equal(g.sys('dup3', copy, copy, 0), -E.EINVAL, 'dup3 onto itself');
  t.equal(g.sys('dup3', copy, 11, O_CLOEXEC), 11);
  t.equal(g.sys('fcntl', 11, F_GETFD, 0), 1);
  t.equal(g.sys('dup3', copy, 12, 1), -E.EINVAL, 'unknown dup3 flag');
  t.equal(g.sys('dup2', copy, 1), 1, 'dup2 over stdout');
  t.equal(g.write(1, 'e'), 1);
  t.equal(fs.readFileSync(join(rw, 'f'), 'utf8'), 'abcde', 'stdout now goes to the file');
  t.equal(g.sys('fcntl', copy, F_DUPFD, 20), 20);
  t.equal(g.sys('fcntl', copy, F_DUPFD_CLOEXEC, 20), 21);
  t.equal(g.sys('fcntl', 21, F_GETFD, 0), 1);
  t.equal(g.sys('fcntl', copy, F_DUPFD, 1 << 20), -E.EINVAL);
  t.equal(g.sys('fcntl', copy, F_SETFL, O_APPEND | O_NONBLOCK), 0);
  t.equal(g.sys('fcntl', copy, F_GETFL, 0) & (O_APPEND | O_NONBLOCK), O_APPEND | O_NONBLOCK, 'F_SETFL bookkeeping');
  t.equal(g.sys('fcntl', 10, F_GETFL, 0) & O_APPEND, O_APPEND, 'status flags are shared by dup\'d fds');
  t.equal(g.sys('lseek', copy, 0, 0), 0);
  t.equal(g.write(copy, 'f'), 1);
  t.equal(fs.readFileSync(join(rw, 'f'), 'utf8'), 'abcdef', 'O_APPEND set by F_SETFL appends');
  t.equal(g.sys('fcntl', copy, 9999, 0), -E.EINVAL);
  t.equal(g.sys('fcntl', 99, F_GETFD, 0), -E.EBADF);
  const lock = g.alloc(32);
  t.equal(g.sys('fcntl', copy, 5 /* F_GETLK */, lock), 0);
  t.equal(viewOf(g.p.mem).getInt16(lock, true), 2, 'F_GETLK: F_UNLCK, nothing conflicts');
  t.equal(g.sys('fcntl', copy, 6 /* F_SETLK */, lock), 0);
  t.equal(g.sys('ioctl', 1, 0x5401, g.alloc(64)), -E.ENOTTY, 'TCGETS: never a tty');
  t.equal(g.sys('ioctl', 0, 0x5413, g.alloc(8)), -E.ENOTTY, 'TIOCGWINSZ');
  t.equal(g.sys('ioctl', 99, 0x5401, 0), -E.EBADF);
  t.equal(g.sys('ioctl', copy, 0x5451 /* FIOCLEX */, 0), 0);
  t.equal(g.sys('fcntl', copy, F_GETFD, 0), 1);
});

t.test('pipe2: write then read, non-blocking, no seeking', async (t) => {
  const { g } = guestFor(t);
  const fds = g.alloc(8);
  t.equal(g.sys('pipe2', fds, O_NONBLOCK | O_CLOEXEC), 0);
  const [r, w] = [g.p.mem.i32(fds), g.p.mem.i32(fds + 4)];
  t.same([r, w], [3, 4]);
  t.equal(g.sys('fcntl', r, F_GETFD, 0), 1);
  t.equal(g.read(r, 10), -E.EAGAIN, 'empty non-blocking pipe');
  t.equal(g.write(w, 'through the pipe'), 16);
  const n = g.alloc(4);
  t.equal(g.sys('ioctl', r, 0x541b /* FIONREAD */, n), 0);
  t.equal(g.p.mem.i32(n), 16, 'FIONREAD');
  t.equal(g.read(r, 7), 'through');
  t.equal(g.read(r, 100), ' the pipe');
  t.equal(g.sys('lseek', r, 0, 0), -E.ESPIPE);
  t.equal(g.sys('pread64', r, g.alloc(4), 4, 0), -E.ESPIPE);
  t.equal(g.sys('fcntl', w, 1031 /* F_SETPIPE_SZ */, 2 << 20), -E.EPERM, 'past pipe-max-size (1 MiB): EPERM, as for an unprivileged process');
  t.equal(g.sys('fcntl', w, 1031, 1 << 20), 1 << 20, 'up to 1 MiB');
  t.equal(g.sys('fcntl', r, 1032 /* F_GETPIPE_SZ */, 0), 1 << 20);
  t.equal(g.read(w, 1), -E.EBADF, 'the write end does not read');
  t.equal(g.sys('fcntl', r, F_SETFL, 0), 0, 'back to blocking');
  t.equal(g.write(w, 'more'), 4);
  t.equal(g.read(r, 100), 'more', 'a blocking read of data that is there');
  t.equal(g.sys('close', w), 0);
  t.equal(g.read(r, 100), '', 'end of file once the writer is gone');
  t.equal(g.sys('pipe2', fds, 0x40), -E.EINVAL, 'unknown flag');
  t.equal(g.sys('pipe', 0), -E.EFAULT);

  // writev to a pipe is one write; readv from it scatters one read.
  t.equal(g.sys('pipe', fds), 0);
  const [r2, w2] = [g.p.mem.i32(fds), g.p.mem.i32(fds + 4)];
  const iov = g.alloc(32);
  const [a, alen] = g.bytes('hello ');
  const [b, blen] = g.bytes('world');
  g.p.mem.setU64(iov, a); g.p.mem.setU64(iov + 8, alen); g.p.mem.setU64(iov + 16, b); g.p.mem.setU64(iov + 24, blen);
  t.equal(g.sys('writev', w2, iov, 2), 11);
  const x = g.alloc(4);
  const y = g.alloc(64);
  g.p.mem.setU64(iov, x); g.p.mem.setU64(iov + 8, 4); g.p.mem.setU64(iov + 16, y); g.p.mem.setU64(iov + 24, 64);
  t.equal(g.sys('readv', r2, iov, 2), 11);
  t.equal(g.text(x, 4) + g.text(y, 7), 'hello world');
});

t.test('readv and writev', async (t) => {
  const { g, rw } = guestFor(t);
  const iov = g.alloc(16 * 3);
  const parts = ['one ', 'two ', 'three'].map((s) => g.bytes(s));
  parts.forEach(([addr, len], i) => { g.p.mem.setU64(iov + i * 16, addr); g.p.mem.setU64(iov + i * 16 + 8, len); });
  t.equal(g.sys('writev', 1, iov, 3), 13);
  t.same(g.out, ['one two three'], 'one write to a sink, as writev to a pipe is');
  const fd = g.open(join(rw, 'v'), O_RDWR | O_CREAT);
  t.equal(g.sys('writev', fd, iov, 3), 13);
  t.equal(g.sys('lseek', fd, 0, 0), 0);
  const bufs = [g.alloc(2), g.alloc(20)];
  g.p.mem.setU64(iov, bufs[0]!); g.p.mem.setU64(iov + 8, 2); g.p.mem.setU64(iov + 16, bufs[1]!); g.p.mem.setU64(iov + 24, 20);
  t.equal(g.sys('readv', fd, iov, 2), 13);
  t.equal(g.text(bufs[0]!, 2) + g.text(bufs[1]!, 11), 'one two three');
  t.equal(g.sys('preadv', fd, iov, 2, 4), 9, 'preadv at an offset');
  t.equal(g.text(bufs[0]!, 2), 'tw');
  t.equal(g.sys('readv', fd, iov, 1025), -E.EINVAL, 'more than IOV_MAX');
  t.equal(g.sys('readv', fd, iov, -1), -E.EINVAL);
  t.equal(g.sys('readv', fd, iov, 0), 0);
  t.equal(g.sys('readv', fd, 0, 2), -E.EFAULT, 'a bad iovec array');
  g.p.mem.setU64(iov + 8, -1);
  t.equal(g.sys('readv', fd, iov, 2), -E.EINVAL, 'a negative segment length');
  g.p.mem.setU64(iov, 0); g.p.mem.setU64(iov + 8, 10);
  t.equal(g.sys('readv', fd, iov, 2), -E.EFAULT, 'a bad segment');
});

t.test('bad pointers and lengths', async (t) => {
  const { g, ro } = guestFor(t);
  const fd = g.open(join(ro, 'hello.txt'), O_RDONLY);
  t.equal(g.sys('read', fd, 0, 10), -E.EFAULT, 'NULL buffer');
  t.equal(g.sys('read', fd, 100, 10), -E.EFAULT, 'the null page');
  t.equal(g.sys('read', fd, MEM_SIZE, 10), -E.EFAULT, 'just past guest memory');
  t.equal(g.sys('read', fd, 2 ** 40, 10), -E.EFAULT, 'far past guest memory');
  t.equal(g.sys('read', fd, USER_START, -1), -E.EFAULT, 'a size_t of 2^64-1');
  t.equal(g.sys('read', fd, 0, 0), 0, 'a zero-length read needs no buffer');
  t.equal(g.sys('read', 99, USER_START, 10), -E.EBADF, 'a bad fd is reported first');
  // The hypervisor's pages below user memory are not the guest's to have written for it.
  for (const [addr, what] of [[GDT_ADDR, 'the GDT'], [STUBS_ADDR, 'the syscall stub'], [PDPT_ADDR + 8, 'a page-table entry'], [VVAR_ADDR, 'the vvar page'], [USER_START - 4, 'the last system bytes']] as const) {
    t.equal(g.sys('read', fd, addr, 8), -E.EFAULT, `read into ${what}`);
    t.equal(g.sys('getcwd', addr, 64), -E.EFAULT, `getcwd into ${what}`);
    t.equal(g.sys('write', 1, addr, 8), -E.EFAULT, `write from ${what}`);
  }
  t.equal(g.sys('read', fd, MEM_SIZE - 4, 100), 4, 'a buffer running off the end gives a short read');
  t.equal(g.text(MEM_SIZE - 4, 4), 'hell');
  t.equal(g.sys('write', 1, 0, 5), -E.EFAULT);
  t.equal(g.sys('openat', AT_FDCWD, 0, O_RDONLY, 0), -E.EFAULT, 'NULL path');
  t.equal(g.sys('openat', AT_FDCWD, MEM_SIZE + 10, O_RDONLY, 0), -E.EFAULT, 'path past guest memory');
  const unterminated = MEM_SIZE - 8;
  g.p.mem.put(unterminated, Buffer.from('abcdefgh'));
  t.equal(g.sys('openat', AT_FDCWD, unterminated, O_RDONLY, 0), -E.EFAULT, 'a path running off guest memory');
  const long = g.str('a'.repeat(5000));
  t.equal(g.sys('openat', AT_FDCWD, long, O_RDONLY, 0), -E.ENAMETOOLONG);
  t.equal(g.sys('openat', AT_FDCWD, g.str(''), O_RDONLY, 0), -E.ENOENT, 'an empty path');
  t.equal(g.sys('fstat', fd, 8), -E.EFAULT);
  t.equal(g.sys('getcwd', 0, 4096), -E.EFAULT);
  t.equal(g.sys('readlink', g.str('/proc/self/exe'), 0, 64), -E.EFAULT);
  t.equal(g.sys('readlink', g.str('/proc/self/exe'), g.alloc(8), 0), -E.EINVAL, 'bufsiz 0');
});

t.test('getcwd, chdir and relative paths', async (t) => {
  const { g, ro, rw } = guestFor(t);
  const buf = g.alloc(4096);
  const cwd = (): string => g.text(buf, g.sys('getcwd', buf, 4096) - 1);
  t.equal(cwd(), rw);
  t.equal(g.sys('getcwd', buf, rw.length + 1), rw.length + 1, 'the length includes the NUL');
  t.equal(bytesOf(g.p.mem)[buf + rw.length], 0, 'NUL-terminated');
  t.equal(g.sys('getcwd', buf, rw.length), -E.ERANGE, 'one byte short');
  t.equal(g.sys('chdir', g.str(ro)), 0);
  t.equal(cwd(), ro);
  t.equal(g.read(g.open('hello.txt', O_RDONLY), 5), 'hello', 'relative to the new cwd');
  t.equal(g.sys('chdir', g.str('hello.txt')), -E.ENOTDIR);
  t.equal(g.sys('chdir', g.str('/etc')), -E.ENOENT);
  t.equal(g.sys('chdir', g.str('..')), -E.EACCES, 'out of a root');
  t.equal(cwd(), ro, 'a refused chdir leaves the cwd alone');
  t.equal(g.sys('chdir', g.str('../rw/to-parent')), -E.EACCES);
  fs.mkdirSync(join(rw, 'deep'));
  fs.symlinkSync('deep', join(rw, 'to-deep'));
  t.equal(g.sys('chdir', g.str(join(rw, 'to-deep'))), 0);
  t.equal(cwd(), join(rw, 'deep'), 'getcwd reports the directory, symlinks resolved, like Linux');
});

t.test('readlink', async (t) => {
  const { g, ro } = guestFor(t);
  const buf = g.alloc(64);
  bytesOf(g.p.mem).fill(0x55, buf, buf + 64);
  const n = g.sys('readlink', g.str('/proc/self/exe'), buf, 64);
  t.equal(g.text(buf, n), '/app/program', '/proc/self/exe is the program\'s guest path');
  t.equal(bytesOf(g.p.mem)[buf + n], 0x55, 'no NUL is added');
  t.equal(g.sys('readlink', g.str('/proc/self/exe'), buf, 4), 4, 'truncated to bufsiz');
  t.equal(g.text(buf, 4), '/app');
  t.equal(g.text(buf, g.sys('readlink', g.str(join(ro, 'to-passwd')), buf, 64)), '/etc/passwd', 'a link\'s text, even one pointing out');
  t.equal(g.text(buf, g.sys('readlinkat', AT_FDCWD, g.str(join(ro, 'to-hello')), buf, 64)), 'hello.txt');
  t.equal(g.sys('readlink', g.str(join(ro, 'hello.txt')), buf, 64), -E.EINVAL, 'not a link');
  t.equal(g.sys('readlink', g.str('/etc/passwd'), buf, 64), -E.ENOENT);
  const fd = g.open('/proc/self/exe', O_RDONLY);
  t.ok(fd >= 0, 'the program\'s own ELF is readable');
  t.equal(g.read(fd, 4), '\x7fELF');
  t.ok(g.open('/app/program', O_RDONLY) >= 0, 'at its guest path too');
  t.equal(g.open('/proc/self/exe', O_WRONLY), -E.ENOENT, 'but not writable');
});

t.test('mkdir, rename, unlink, rmdir, chmod, utimensat in a writable root', async (t) => {
  const { g, rw } = guestFor(t);
  g.p.umask = 0o027;
  t.equal(g.sys('mkdir', g.str('d'), 0o777), 0);
  t.equal(fs.statSync(join(rw, 'd')).mode & 0o777, 0o750, 'mode & ~umask');
  t.equal(g.sys('umask', 0o022), 0o027);
  t.equal(g.sys('mkdir', g.str('d'), 0o777), -E.EEXIST);
  t.equal(g.sys('mkdir', g.str('no/such'), 0o777), -E.ENOENT);
  fs.writeFileSync(join(rw, 'd', 'f'), 'x');
  t.equal(g.sys('rmdir', g.str('d')), -E.ENOTEMPTY);
  t.equal(g.sys('rmdir', g.str('d/.')), -E.EINVAL);
  t.equal(g.sys('rename', g.str('d/f'), g.str('g')), 0);
  t.equal(fs.readFileSync(join(rw, 'g'), 'utf8'), 'x');
  t.equal(g.sys('unlink', g.str('d')), -E.EISDIR);
  t.equal(g.sys('rmdir', g.str('d/')), 0);
  fs.writeFileSync(join(rw, 'h'), 'y');
  t.equal(g.sys('renameat2', AT_FDCWD, g.str('g'), AT_FDCWD, g.str('h'), 1 /* RENAME_NOREPLACE */), -E.EEXIST);
  t.equal(g.sys('renameat2', AT_FDCWD, g.str('g'), AT_FDCWD, g.str('h'), 2 /* RENAME_EXCHANGE */), 0);
  t.equal(fs.readFileSync(join(rw, 'g'), 'utf8'), 'y', 'exchanged');
  t.equal(g.sys('rename', g.str('g'), g.str('/etc/g')), -E.ENOENT, 'renaming out of the view');
  t.equal(g.sys('rename', g.str('g'), g.str('to-parent/g')), -E.EACCES, 'renaming through an escaping symlink');
  t.equal(g.sys('chmod', g.str('g'), 0o604), 0);
  t.equal(fs.statSync(join(rw, 'g')).mode & 0o777, 0o604);
  const times = g.alloc(32);
  g.p.mem.setU64(times, 1_000_000); g.p.mem.setU64(times + 8, 5);
  g.p.mem.setU64(times + 16, 2_000_000); g.p.mem.setU64(times + 24, 0x3ffffffe /* UTIME_OMIT */);
  const before = fs.statSync(join(rw, 'g'), { bigint: true });
  t.equal(g.sys('utimensat', AT_FDCWD, g.str('g'), times, 0), 0);
  const after = fs.statSync(join(rw, 'g'), { bigint: true });
  t.equal(after.atimeNs, 1_000_000_000_000_005n, 'atime set to the nanosecond');
  t.equal(after.mtimeNs, before.mtimeNs, 'UTIME_OMIT leaves mtime');
  g.p.mem.setU64(times + 8, 1_000_000_000);
  t.equal(g.sys('utimensat', AT_FDCWD, g.str('g'), times, 0), -E.EINVAL, 'tv_nsec out of range');
  t.equal(g.sys('unlink', g.str('g')), 0);
  t.equal(g.sys('unlink', g.str('g')), -E.ENOENT);
  t.equal(g.sys('access', g.str('h'), 6), 0);
  t.equal(g.sys('access', g.str('h'), 8), -E.EINVAL);
  t.equal(g.sys('faccessat2', AT_FDCWD, g.str('h'), 0, 0x4), -E.EINVAL);
  const fd = g.open('h', O_RDWR);
  t.equal(g.sys('fsync', fd), 0);
  t.equal(g.sys('fdatasync', fd), 0);
  t.equal(g.sys('fsync', 1), -E.EINVAL, 'fsync on a pipe-like file');
  t.equal(g.sys('fadvise64', fd, 0, 0, 2), 0);
  t.equal(g.sys('truncate', g.str('h'), 0), 0);
  t.equal(fs.statSync(join(rw, 'h')).size, 0);
});

t.test('sendfile and copy_file_range', async (t) => {
  const { g, ro, rw } = guestFor(t);
  const input = g.open(join(ro, 'hello.txt'), O_RDONLY);
  t.equal(g.sys('sendfile', 1, input, 0, 1 << 30), 13);
  t.same(g.out, ['hello, world\n']);
  t.equal(g.sys('sendfile', 1, input, 0, 100), 0, 'at end of file');
  const off = g.alloc(8);
  g.p.mem.setU64(off, 7);
  t.equal(g.sys('sendfile', 1, input, off, 5), 5);
  t.equal(g.p.mem.u64(off), 12, 'the offset argument advances');
  t.equal(g.out[1], 'world');
  const output = g.open(join(rw, 'copy'), O_WRONLY | O_CREAT);
  t.equal(g.sys('lseek', input, 0, 0), 0);
  t.equal(g.sys('copy_file_range', input, 0, output, 0, 100, 0), 13);
  t.equal(fs.readFileSync(join(rw, 'copy'), 'utf8'), 'hello, world\n');
  t.equal(g.sys('copy_file_range', input, 0, 1, 0, 100, 0), -E.EINVAL, 'not to a pipe');
});

t.test('EMFILE at the descriptor limit', async (t) => {
  const { g, ro } = guestFor(t, { maxFiles: 8 });
  const opened: number[] = [];
  for (let i = 0; i < 5; i++) opened.push(g.open(join(ro, 'hello.txt'), O_RDONLY));
  t.same(opened, [3, 4, 5, 6, 7]);
  t.equal(g.open(join(ro, 'hello.txt'), O_RDONLY), -E.EMFILE);
  t.equal(g.sys('dup', 3), -E.EMFILE);
  t.equal(g.sys('pipe', g.alloc(8)), -E.EMFILE);
  t.equal(g.sys('close', 5), 0);
  t.equal(g.sys('pipe', g.alloc(8)), -E.EMFILE, 'a pipe needs two free fds');
  t.equal(g.sys('dup', 3), 5, 'the freed fd is reused');
  t.equal(g.sys('dup2', 3, 8), -E.EBADF, 'dup2 past the limit');
});

t.test('snapshot and restore of the file table', async (t) => {
  const { g, ro, rw } = guestFor(t, { stdin: new BufferFile(Buffer.from('request body')) });
  const kept = g.open(join(ro, 'hello.txt'), O_RDONLY);
  t.equal(g.read(kept, 7), 'hello, ');
  const cwd = g.p.paths.snapshot();
  const snap = g.p.files.snapshot();

  // A request: reads on, opens, closes, dups over stdout.
  t.equal(g.read(kept, 5), 'world');
  t.equal(g.read(0, 7), 'request');
  const extra = g.open(join(rw, 'tmp'), O_WRONLY | O_CREAT);
  t.equal(g.sys('close', kept), 0);
  t.equal(g.sys('dup2', extra, 1), 1);
  t.equal(g.sys('fcntl', 0, F_SETFL, O_NONBLOCK), 0);
  t.equal(g.sys('chdir', g.str(ro)), 0);
  const extraFile = g.p.files.get(extra)!;

  g.p.files.restore(snap);
  g.p.paths.restore(cwd);
  t.same(g.p.files.openFds(), [0, 1, 2, kept], 'the same descriptors are open');
  t.equal(extraFile.refs, 0, 'a file opened by the request is closed');
  t.equal(g.read(kept, 5), 'world', 'the closed file is back, at its saved position');
  t.equal(g.read(0, 7), 'request', 'stdin is back at its saved position');
  t.equal(g.sys('fcntl', 0, F_GETFL, 0) & O_NONBLOCK, 0, 'status flags come back');
  t.equal(g.write(1, 'to the sink'), 11);
  t.same(g.out, ['to the sink'], 'stdout is the sink again');
  const buf = g.alloc(4096);
  t.equal(g.text(buf, g.sys('getcwd', buf, 4096) - 1), rw, 'the cwd comes back');

  g.p.files.restore(snap);
  t.equal(g.read(kept, 5), 'world', 'a snapshot can be restored again');
  g.p.files.discard(snap);
  const keptFile = g.p.files.get(kept)!;
  t.equal(keptFile.refs, 1, 'discarding leaves only the descriptor\'s reference');
  g.p.files.closeAll();
  t.same(g.p.files.openFds(), []);
  t.equal(keptFile.refs, 0);
});

t.test('poll and ppoll', async (t) => {
  const { g, ro } = guestFor(t);
  const POLLIN = 1;
  const POLLOUT = 4;
  const POLLHUP = 0x10;
  const POLLNVAL = 0x20;
  const pipe = g.alloc(8);
  t.equal(g.sys('pipe', pipe), 0);
  const [r, w] = [g.p.mem.i32(pipe), g.p.mem.i32(pipe + 4)];
  const file = g.open(join(ro, 'hello.txt'), O_RDONLY);
  const fds = g.alloc(8 * 5);
  const set = (i: number, fd: number, events: number): void => {
    g.p.mem.setI32(fds + i * 8, fd);
    viewOf(g.p.mem).setUint16(fds + i * 8 + 4, events, true);
    viewOf(g.p.mem).setUint16(fds + i * 8 + 6, 0xffff, true);
  };
  const revents = (i: number): number => viewOf(g.p.mem).getUint16(fds + i * 8 + 6, true);

  set(0, r, POLLIN);
  t.equal(g.sys('poll', fds, 1, 0), 0, 'an empty pipe is not readable');
  t.equal(revents(0), 0);
  const start = process.hrtime.bigint();
  t.equal(g.sys('poll', fds, 1, 30), 0, 'a timeout');
  t.ok(process.hrtime.bigint() - start >= 25_000_000n, 'waited for it');
  g.write(w, 'x');
  set(1, w, POLLOUT);
  set(2, file, POLLIN);
  set(3, 99, POLLIN);
  set(4, -1, POLLIN);
  t.equal(g.sys('poll', fds, 5, -1), 4);
  t.same([0, 1, 2, 3, 4].map(revents), [POLLIN, POLLOUT, POLLIN, POLLNVAL, 0], 'pipe, pipe, file, bad fd, ignored fd');
  t.equal(g.sys('close', w), 0);
  t.equal(g.read(r, 10), 'x');
  t.equal(g.sys('poll', fds, 1, -1), 1, 'a pipe with no writer left');
  t.equal(revents(0) & POLLHUP, POLLHUP);
  set(0, 1, POLLOUT);
  const ts = g.alloc(16);
  g.p.mem.setU64(ts, 0); g.p.mem.setU64(ts + 8, 0);
  t.equal(g.sys('ppoll', fds, 1, ts, 0, 8), 1, 'stdout (a sink) is writable');
  g.p.mem.setU64(ts + 8, 1_000_000_000);
  t.equal(g.sys('ppoll', fds, 1, ts, 0, 8), -E.EINVAL, 'a bad timespec');
  t.equal(g.sys('poll', 0, 2, 0), -E.EFAULT);
  t.equal(g.sys('poll', fds, 100000, 0), -E.EINVAL, 'more fds than the limit');
  t.equal(g.sys('poll', 0, 0, 1), 0, 'poll(NULL, 0, ms) sleeps');
});

t.test('select and pselect6: the ready fds back in the sets, the time left, Linux\'s errors', async (t) => {
  const { g, ro } = guestFor(t);
  const pipe = g.alloc(8);
  t.equal(g.sys('pipe', pipe), 0);
  const [r, w] = [g.p.mem.i32(pipe), g.p.mem.i32(pipe + 4)];
  const file = g.open(join(ro, 'hello.txt'), O_RDONLY);
  const nfds = Math.max(r, w, file) + 1;
  const readSet = g.alloc(128), writeSet = g.alloc(128), tv = g.alloc(16);
  const put = (set: number, ...fds: number[]): void => {
    g.p.mem.write(set, 128).fill(0);
    for (const fd of fds) bytesOf(g.p.mem)[set + (fd >> 3)]! |= 1 << (fd & 7);
  };
  const has = (set: number, fd: number): boolean => (bytesOf(g.p.mem)[set + (fd >> 3)]! & (1 << (fd & 7))) !== 0;
  put(readSet, r, file);
  put(writeSet, w);
  g.p.mem.setU64(tv, 0);
  g.p.mem.setU64(tv + 8, 20_000); // 20 ms
  t.equal(g.sys('select', nfds, readSet, writeSet, 0, tv), 2, 'the file is readable, the pipe writable; the empty pipe is not');
  t.same([has(readSet, r), has(readSet, file), has(writeSet, w)], [false, true, true], 'the sets hold the ready fds only');
  put(readSet, r);
  const start = process.hrtime.bigint();
  t.equal(g.sys('select', nfds, readSet, 0, 0, tv), 0, 'a timeout');
  t.ok(process.hrtime.bigint() - start >= 15_000_000n, 'waited for it');
  t.same([g.p.mem.i64(tv), g.p.mem.i64(tv + 8)], [0, 0], 'no time left');
  g.write(w, 'x');
  put(readSet, r);
  g.p.mem.setU64(tv, 0); g.p.mem.setU64(tv + 8, 0);
  t.equal(g.sys('pselect6', nfds, readSet, 0, 0, tv, 0), 1, 'pselect6 (a timespec): the pipe now readable');
  t.ok(has(readSet, r));
  put(readSet, 60);
  t.equal(g.sys('select', 61, readSet, 0, 0, tv), -E.EBADF, 'an fd that is not open');
  t.equal(g.sys('select', -1, 0, 0, 0, tv), -E.EINVAL, 'a negative nfds');
  t.equal(g.sys('select', 8, 0x1000, 0, 0, tv), -E.EFAULT, 'a set in the hypervisor\'s pages');
  g.p.mem.setU64(tv + 8, 1_000_000);
  t.equal(g.sys('select', 0, 0, 0, 0, tv), -E.EINVAL, 'tv_usec of a million');
});

t.test('symlink, link and chown', async (t) => {
  const { g, dir, ro, rw } = guestFor(t);
  t.equal(g.sys('symlink', g.str('target.txt'), g.str('ln')), 0);
  t.equal(fs.readlinkSync(join(rw, 'ln')), 'target.txt');
  fs.writeFileSync(join(rw, 'target.txt'), 'via link');
  t.equal(g.read(g.open('ln', O_RDONLY), 100), 'via link');
  t.equal(g.sys('symlink', g.str('/etc/passwd'), g.str('pw')), 0, 'any text can be stored…');
  t.equal(g.open('pw', O_RDONLY), -E.EACCES, '…but following it out is refused');
  t.equal(g.sys('symlinkat', g.str('x'), AT_FDCWD, g.str(join(ro, 'ln'))), -E.EROFS);
  t.equal(g.sys('symlink', g.str('x'), g.str(join(dir, 'ln'))), -E.ENOENT);
  t.equal(g.sys('symlink', g.str('x'), g.str('ln')), -E.EEXIST);

  t.equal(g.sys('link', g.str('target.txt'), g.str('hard')), 0);
  t.equal(fs.statSync(join(rw, 'hard')).nlink, 2);
  t.equal(g.sys('link', g.str(join(ro, 'hello.txt')), g.str('hard-ro')), -E.EXDEV, 'no writable name for a read-only file');
  t.equal(g.sys('linkat', AT_FDCWD, g.str('ln'), AT_FDCWD, g.str('hard-ln'), 0x400 /* AT_SYMLINK_FOLLOW */), 0);
  t.equal(fs.lstatSync(join(rw, 'hard-ln')).isFile(), true, 'AT_SYMLINK_FOLLOW links the target');
  t.equal(g.sys('linkat', AT_FDCWD, g.str('ln'), AT_FDCWD, g.str('hard-ln2'), 0), 0);
  t.equal(fs.lstatSync(join(rw, 'hard-ln2')).isSymbolicLink(), true, 'without it, the link itself');

  const uid = process.getuid!();
  const gid = process.getgid!();
  t.equal(g.sys('chown', g.str('target.txt'), -1, -1), 0, '-1 leaves the ids');
  t.equal(g.sys('chown', g.str('target.txt'), uid, gid), 0);
  t.equal(g.sys('fchown', g.open('target.txt', O_RDONLY), uid, -1), 0);
  t.equal(g.sys('lchown', g.str('ln'), uid, gid), 0);
  t.equal(g.sys('fchownat', AT_FDCWD, g.str('ln'), uid, gid, AT_SYMLINK_NOFOLLOW), 0);
  t.equal(g.sys('chown', g.str(join(ro, 'hello.txt')), uid, gid), -E.EROFS);
  t.equal(g.sys('fchown', g.open(join(ro, 'hello.txt'), O_RDONLY), uid, gid), -E.EROFS);
  t.equal(g.sys('fchown', 1, uid, gid), 0, 'stdout: nothing to change');
  t.equal(g.sys('chown', g.str('target.txt'), uid + 1, -1), -E.EPERM, 'another uid: EPERM, as for an unprivileged process');
  t.equal(g.sys('chown', g.str('target.txt'), -1, gid + 1), -E.EPERM, 'another gid: EPERM');
  t.equal(g.sys('fchown', g.open('target.txt', O_RDONLY), 0, 0), uid === 0 && gid === 0 ? 0 : -E.EPERM, 'root only when the host is root');
  t.equal(g.sys('chown', g.str('missing'), uid + 1, -1), -E.ENOENT, 'the path is checked first');
  t.equal(fs.statSync(join(rw, 'target.txt')).uid, uid, 'the owner never changed');
});

t.test('no setuid, setgid or sticky bit reaches the host', async (t) => {
  const { g, rw } = guestFor(t);
  g.sys('umask', 0);
  const fd = g.open('suid', O_WRONLY | O_CREAT, 0o4755);
  t.ok(fd >= 0);
  t.equal(fs.statSync(join(rw, 'suid')).mode & 0o7777, 0o755, 'open(O_CREAT, 04755) creates 0755');
  t.equal(g.sys('chmod', g.str('suid'), 0o6755), 0);
  t.equal(fs.statSync(join(rw, 'suid')).mode & 0o7777, 0o755, 'chmod 06755 sets 0755');
  t.equal(g.sys('fchmod', fd, 0o2777), 0);
  t.equal(fs.statSync(join(rw, 'suid')).mode & 0o7777, 0o777, 'fchmod 02777 sets 0777');
  t.equal(g.sys('mkdir', g.str('sticky'), 0o1777), 0);
  t.equal(fs.statSync(join(rw, 'sticky')).mode & 0o7777, 0o777, 'mkdir 01777 makes 0777');
});

t.test('directories above a root', async (t) => {
  const { g, dir, ro } = guestFor(t);
  const buf = g.alloc(144);
  for (const path of ['/', dir, `${ro}/..`]) {
    t.equal(g.sys('stat', g.str(path), buf), 0, `${path} is a directory to stat`);
    t.equal(viewOf(g.p.mem).getUint32(buf + 24, true), 0o040755);
    t.equal(viewOf(g.p.mem).getBigUint64(buf + 8, true), 1n, 'with nothing of the host\'s');
    t.equal(g.sys('mkdir', g.str(path), 0o755), -E.EEXIST, 'mkdir -p can walk through it');
  }
  t.equal(g.sys('mkdir', g.str(join(dir, 'new')), 0o755), -E.ENOENT, 'but nothing can be made there');
  t.equal(g.open(dir, O_RDONLY | O_DIRECTORY), -E.ENOENT, 'nor listed');
  t.equal(g.sys('stat', g.str(join(dir, 'secret.txt')), buf), -E.ENOENT, 'nor its other entries seen');
  t.equal(g.sys('stat', g.str('/etc'), buf), -E.ENOENT);
});

t.test('host writes into guest memory are recorded, as far as they go', async (t) => {
  const { g, ro } = guestFor(t);
  const pages: number[] = [];
  g.p.mem.onHostWrite = (first, count) => { for (let i = 0; i < count; i++) pages.push(first + i); };
  const buf = USER_START + 0x100000;
  const fd = g.open(join(ro, 'hello.txt'), O_RDONLY);
  pages.length = 0; // (the path string the test wrote)
  t.equal(g.sys('read', fd, buf, 64 * 1024), 13);
  t.same(pages, [buf / 4096], 'one page for 13 bytes, not 16 for the buffer offered');
  const dir = g.open(ro, O_RDONLY | O_DIRECTORY);
  pages.length = 0;
  const n = g.sys('getdents64', dir, buf, 64 * 1024);
  t.ok(n > 0 && n < 4096);
  t.same(pages, [buf / 4096], 'getdents64 records what it filled');
});
