/**
 * Which host files a guest may name, and under which path it sees them.
 *
 * The guest sees a tree made only of the configured `allowed_paths` (docs/GUEST_ABI.md, "Configuration"),
 * each a *root*: a host directory or file (`real`), shown to the guest at
 * `virtual` (default: the same path), read-only unless `writable`. A root covers
 * itself and everything below it; `prefix` is accepted for compatibility and
 * means the same thing (matching is by whole path components, never by string
 * prefix, so `/data` never covers `/database`). The program's own ELF is readable
 * at its guest path and at `/proc/self/exe`.
 *
 * A guest path is resolved once, by tskvm, one component at a time beneath file
 * descriptors, and what a syscall acts on is the result — a directory fd and a
 * name in it — never a host path string. A program with two forks running at once
 * on a writable root can swap any directory for a symlink at any moment
 * (test/fs-race.test.ts); a string checked and then used again could lead out of
 * the root between the two, an fd cannot.
 *
 *   open("../out/x") with cwd /work/in:
 *
 *   "/" ─► work ─► in ─► .. ─► out ─────────► x
 *    │      │       │     │     │             │
 *    no root covers │    pops   a root: its   the entry: (fd of out, "x"); the syscall
 *    it: lexical    │    back   fd, opened    is openat(fd, "x", … | O_NOFOLLOW)
 *                   │    to     once (O_PATH)
 *                   openat(fd of work, "in", O_PATH | O_DIRECTORY | O_NOFOLLOW)
 *
 *  - Each step opens one name (never "." or "..", never with a "/") relative to
 *    the directory fd before it, without following a symlink. A symlink is read
 *    (readlinkat) and its target walked the same way; ".." goes back to the fd the
 *    walk came from, so no host ".." is ever taken, and nothing a concurrent
 *    rename or symlink does can move the walk outside the directories it opened.
 *  - The walk keeps the guest path of where it is (with symlinks resolved, as
 *    getcwd reports it). A name that makes it a root's `virtual` enters that
 *    root, as at a mount point; ".." at a root's top leaves it the same way.
 *    Outside every root the path is only a name: ".." and names there are
 *    lexical, no host directory stands behind them.
 *  - A directory opened inside a root whose host directory is also another root
 *    (roots nested on the host) belongs to that root: its writability, its guest
 *    path. It is recognised by identity (device and inode), so a rename cannot
 *    hide it.
 *  - The syscall then acts on the entry with an *at call relative to its
 *    directory, not following a symlink there (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`):
 *    a symlink swapped in since the walk is refused (ELOOP) or acted on itself,
 *    inside the root, never followed.
 *
 * Symlinks have the guest's meaning: an absolute target is a guest path, resolved
 * through the guest's view like any other (the guest stores and reads back the
 * text it gave). For a root shown at its own path this is the host's meaning too;
 * for a root shown under another name, `/x` in a link means the guest's `/x` — as
 * in a chroot — not the host's.
 *
 * An entry with `symlink` (the VMOD's) is a symlink the configuration adds to the
 * view: at `virtual` the guest sees a link whose text is `real` (`/etc/localtime`
 * → `/usr/share/zoneinfo/UTC`). The walk follows it as it follows any link, by
 * walking its text through the view, so it reaches only what some root shows and
 * adds no way out. For the calls that act on the link itself (lstat, readlink,
 * AT_SYMLINK_NOFOLLOW), the entry is a real host symlink with that text, which
 * tskvm makes in a directory of its own (linkDirectory) and never follows: the
 * calls act on it with NOFOLLOW like on any entry. It is read-only (EROFS to
 * remove, rename or replace it), even inside a writable root.
 *
 * Refusals, consistently:
 *   -ENOENT  the path never enters the guest's view (no root covers it): to the
 *            guest such files simply do not exist;
 *   -EACCES  the path enters the view and then leads out of it (".." past a
 *            root's top into no root, or a symlink to a path no root covers);
 *   -EROFS   a write (open for writing, create, remove, rename, chmod, utimes) in
 *            a root that is not `writable`, like a read-only bind mount;
 *   -EBUSY   removing or renaming a root itself, as for a mount point.
 *
 * Roots are opened (O_PATH) the first time the guest uses them, once per policy
 * (each fork has its own); close() lets them go. Known limits: guest paths that
 * are not valid UTF-8 cannot be named.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { E } from '../host/errno.js';
import { errno as lastErrno, libc } from '../host/libc.js';
import { TskvmError } from '../errors.js';
import { O } from './open-files/open-file.js';

export interface AllowedPath {
  /** Host path; for a `symlink`, the link's text (a guest path). */
  real: string;
  /** Path the guest sees (default: `real`); a `symlink` needs one. */
  virtual?: string;
  /**
   * true: everything under it. false: only the entry itself, nothing below it (the VMOD's meaning of an
   * entry without `prefix`, which its library format gets). Absent: a directory covers everything
   * under it, a file itself.
   */
  prefix?: boolean;
  writable?: boolean;
  /** `virtual` is a symlink to `real`, followed through the guest's view (see the header). */
  symlink?: boolean;
}

export type PathWant = 'read' | 'write' | 'stat';

export interface ResolveOptions {
  /** Follow a symlink in the last component (stat vs lstat). Default true. */
  followLast?: boolean;
  /** Guest directory a relative path starts from (an *at call's dirfd); default the cwd. */
  baseGuestDir?: string;
}

/**
 * What a guest path names: the entry `name` in the host directory `dir` (an fd).
 * `name` is "." for a directory itself (a root's top, or a path ending in ".."),
 * the file's name in its directory for a file root and the program. The caller
 * acts on it with *at calls that do not follow a symlink in `name`, then calls
 * release().
 */
export interface ResolvedPath {
  dir: number;
  name: string;
  /** The same entry as the guest names it, symlinks resolved (getcwd, *at bases). */
  guestPath: string;
  /** Whether the root holding it is writable. */
  writable: boolean;
  /** The root holding it: a hard link stays within one. */
  root: object;
  /** The entry is a root itself (or the program), which cannot be removed or renamed. */
  isRoot: boolean;
  /** Closes `dir` when the lookup opened it. */
  release(): void;
}

interface Root {
  real: string;
  virtual: string;
  writable: boolean;
  /** O_PATH fd on the directory, or on a file root's directory; undefined until first used, -errno if it failed. */
  fd?: number;
  /** "." for a directory root, else the file's name in `fd`. */
  name: string;
  directory: boolean;
  /** Device and inode of the root, `dev:ino`, for roots nested in another on the host. */
  id: string;
  /** Roots whose host path lies strictly inside this one's: directories met below must be checked against them. */
  inner: Root[];
  /** The directory of the host symlinks behind `symlink` entries, met inside a root: never entered (EACCES). */
  hidden?: true;
  /** `prefix: false`: the root is only itself; no name below it is in the view. */
  exact?: true;
}

/** A directory the walk stands in: an fd inside `root`, or a name outside every root (fd -1, root null). */
interface Frame {
  fd: number;
  owned: boolean;
  root: Root | null;
}

const PROC_SELF_EXE = '/proc/self/exe';
/** Linux gives up after 40 symlinks in one lookup. */
const MAX_SYMLINKS = 40;
const AT_FDCWD = -100;
const AT_EMPTY_PATH = 0x1000;
const X_OK = 1;
const LOOK = O.PATH | O.NOFOLLOW | O.CLOEXEC;
const OUTSIDE: Frame = { fd: -1, owned: false, root: null };

export class PathPolicy {
  private readonly roots: Root[];
  private readonly byVirtual = new Map<string, Root>();
  /** The `symlink` entries by guest path: their text, and the host symlink that stands for them (a file root). */
  private readonly links = new Map<string, { target: string; root: Root }>();
  /** The program's ELF, a read-only file root reached only by its guest path and /proc/self/exe. */
  private readonly exe: Root;
  private cwdPath: string;

  constructor(opts: { allowed: AllowedPath[]; cwd?: string; exe: { hostPath: string; guestPath: string } }) {
    const invalid = (entry: AllowedPath, why: string): TskvmError => new TskvmError('TSKVM_ERR_CONFIG_ALLOWED_PATH', `allowed_paths: ${why}`, { entry });
    const roots: Root[] = [];
    for (const entry of opts.allowed) {
      if (typeof entry.real !== 'string' || entry.real === '') throw invalid(entry, 'every entry needs a non-empty "real" host path');
      if (entry.symlink && entry.virtual === undefined) throw invalid(entry, `the symlink to "${entry.real}" needs "virtual", the path the guest sees it at`);
      const virtual = entry.virtual ?? path.resolve(entry.real);
      if (!virtual.startsWith('/')) throw invalid(entry, `virtual path "${virtual}" must be absolute`);
      const at = path.posix.normalize(virtual);
      if (!entry.symlink) {
        const root = makeRoot(hostRealpath(path.resolve(entry.real)), at, entry.writable === true);
        if (entry.prefix === false) root.exact = true;
        roots.push(root);
        continue;
      }
      if (at === '/') throw invalid(entry, 'a symlink cannot be "/"');
      if (entry.writable) throw invalid(entry, `the symlink at "${at}" cannot be writable: what is written through it goes to its target, as its target's root allows`);
      if (path.posix.normalize(entry.real) === at) throw invalid(entry, `the symlink at "${at}" points at itself`);
      if (this.links.has(at)) throw invalid(entry, `two symlinks at "${at}"`);
      this.links.set(at, { target: entry.real, root: linkRoot(entry.real, at) });
    }
    this.roots = roots;
    for (const root of this.roots) {
      if (this.links.has(root.virtual)) throw invalid({ real: root.real, virtual: root.virtual }, `"${root.virtual}" is both a symlink and a path shown from the host`);
    }
    const links = this.links.size > 0 ? linkDirectory() : null;
    for (const root of this.roots) {
      if (!this.byVirtual.has(root.virtual)) this.byVirtual.set(root.virtual, root);
      root.inner = this.roots.filter((other) => other.id !== root.id && other.id !== '' && root.directory && isWithin(other.real, root.real));
      // A guest that could change the host symlinks would change what lstat and readlink show every program.
      if (links && root.directory && isWithin(links.path, root.real)) root.inner.push(links.root);
    }
    this.exe = makeRoot(hostRealpath(path.resolve(opts.exe.hostPath)), path.posix.normalize(opts.exe.guestPath), false);
    const cwd = opts.cwd ?? '/';
    if (!cwd.startsWith('/')) {
      throw new TskvmError('TSKVM_ERR_CONFIG_CWD', `current_working_directory "${cwd}" must be an absolute path`, { cwd });
    }
    this.cwdPath = path.posix.normalize(cwd);
  }

  /** The guest's current directory, as getcwd reports it. */
  get cwd(): string {
    return this.cwdPath;
  }

  /**
   * The entry a guest path names, or a negative errno (see the header for which).
   * `want` is what the caller will do with it. The caller must release() it.
   */
  resolve(guestPath: string, want: PathWant, opts: ResolveOptions = {}): ResolvedPath | number {
    if (guestPath === '') return -E.ENOENT;
    const absolute = this.absolute(guestPath, opts.baseGuestDir);
    if (want !== 'write') {
      const lexical = path.posix.normalize(absolute);
      if (lexical === PROC_SELF_EXE || lexical === this.exe.virtual) return this.rootEntry(this.exe, this.exe.virtual);
    }
    // "dir/" and "dir/." name the directory itself: symlinks are followed to it
    // (except by calls that change the entry itself) and it must be a directory.
    const mustBeDir = /\/\.?$/.test(guestPath) || guestPath === '.';
    const followLast = (opts.followLast ?? true) || (mustBeDir && want !== 'write');
    const found = this.walk(absolute, followLast, want);
    if (typeof found === 'number') return found;
    if (want === 'write' && !found.writable) {
      found.release();
      return -E.EROFS;
    }
    if (mustBeDir) {
      const fd = libc.openat(found.dir, found.name, LOOK | O.DIRECTORY, 0) as number;
      const errno = fd < 0 ? lastErrno() : 0;
      if (fd >= 0) libc.close(fd);
      if (errno !== 0 && errno !== E.ENOENT) {
        found.release();
        return errno === E.ELOOP ? -E.ENOTDIR : -errno;
      }
    }
    return found;
  }

  /** chdir(2): the directory must be visible, a directory, and searchable. */
  chdir(guestDir: string, baseGuestDir?: string): number {
    const dir = this.resolve(guestDir, 'stat', { followLast: true, baseGuestDir });
    if (typeof dir === 'number') return dir;
    try {
      const fd = libc.openat(dir.dir, dir.name, LOOK | O.DIRECTORY, 0) as number;
      if (fd < 0) return -lastErrno();
      const searchable = libc.faccessat(fd, '', X_OK, AT_EMPTY_PATH) as number;
      const errno = lastErrno();
      libc.close(fd);
      if (searchable < 0) return -errno;
    } finally {
      dir.release();
    }
    this.cwdPath = dir.guestPath;
    return 0;
  }

  /** The program's own path as the guest sees it (what /proc/self/exe names). */
  get exeGuestPath(): string {
    return this.exe.virtual;
  }

  /** `guestPath` made absolute (from the cwd) and normalized, without resolving anything. */
  lexical(guestPath: string): string {
    return path.posix.normalize(this.absolute(guestPath, undefined));
  }

  /** readlink(2)'s answer: the link's bytes as the guest stored them, or the program's guest path for /proc/self/exe. */
  readlink(guestPath: string, opts: { baseGuestDir?: string } = {}): Uint8Array | number {
    if (path.posix.normalize(this.absolute(guestPath, opts.baseGuestDir)) === PROC_SELF_EXE) return Buffer.from(this.exe.virtual);
    const link = this.resolve(guestPath, 'stat', { followLast: false, baseGuestDir: opts.baseGuestDir });
    if (typeof link === 'number') return link;
    try {
      return readLink(link.dir, link.name);
    } finally {
      link.release();
    }
  }

  /**
   * Whether the path names a directory above a root (`/`, or `/srv` for a root at
   * `/srv/data`): it exists for certain but is not part of the view. mkdir answers
   * EEXIST for it, as `mkdir -p` needs, without revealing anything else.
   */
  isAboveRoot(guestPath: string, opts: { baseGuestDir?: string } = {}): boolean {
    const lexical = path.posix.normalize(this.absolute(guestPath, opts.baseGuestDir));
    const prefix = lexical === '/' ? '/' : lexical.replace(/\/$/, '') + '/';
    return [...this.roots, ...this.links.keys()].some((entry) => {
      const at = typeof entry === 'string' ? entry : entry.virtual;
      return at !== lexical && at.startsWith(prefix);
    });
  }

  /** For a request fork: the cwd is the only state that changes. */
  snapshot(): string {
    return this.cwdPath;
  }

  restore(cwd: string): void {
    this.cwdPath = cwd;
  }

  /** Closes the roots' fds (they open again if the policy is used after). */
  close(): void {
    for (const root of [...this.roots, ...[...this.links.values()].map((l) => l.root), this.exe]) {
      if (root.fd !== undefined && root.fd >= 0) libc.close(root.fd);
      root.fd = undefined;
    }
  }

  /** The guest path made absolute against `baseGuestDir` (an *at call's dirfd) or the cwd; not normalized. */
  private absolute(guestPath: string, baseGuestDir: string | undefined): string {
    return guestPath.startsWith('/') ? guestPath : `${baseGuestDir ?? this.cwdPath}/${guestPath}`;
  }

  /**
   * Walks an absolute guest path (see the header) to the entry it names. The
   * frames are the directories of each prefix of the guest path walked so far
   * (`here`), so ".." is a pop; a symlink's target is pushed in front of what is
   * left of the path.
   */
  private walk(absolute: string, followLast: boolean, want: PathWant): ResolvedPath | number {
    const frames: Frame[] = [this.frameAt('/')];
    const here: string[] = [];
    const pending = components(absolute).reverse();
    let links = 0;
    let entered = frames[0]!.root !== null;
    let keep: Frame | null = null; // the frame the result holds on to
    const restart = (target: string): number => {
      if (++links > MAX_SYMLINKS) return -E.ELOOP;
      if (target.startsWith('/')) {
        while (frames.length > 1) closeFrame(frames.pop()!);
        here.length = 0;
      }
      pending.push(...components(target).reverse());
      return 0;
    };
    try {
      while (pending.length > 0) {
        const name = pending.pop()!;
        const last = pending.length === 0;
        if (name === '..') {
          if (frames.length > 1) {
            closeFrame(frames.pop()!);
            here.pop();
          }
          const reopened = reopen(frames, here);
          if (reopened < 0) return reopened;
          continue;
        }
        const dir = frames[frames.length - 1]!;
        here.push(name);
        const guestPath = '/' + here.join('/');
        const link = this.links.get(guestPath);
        if (link) {
          entered = true;
          if (last && !followLast) return this.rootEntry(link.root, guestPath);
          here.pop();
          const failed = restart(link.target);
          if (failed < 0) return failed;
          continue;
        }
        const named = this.byVirtual.get(guestPath);
        if (named) {
          entered = true;
          if (last) return this.rootEntry(named, guestPath);
          if (!named.directory) return -E.ENOTDIR;
          const fd = rootFd(named);
          if (fd < 0) return fd;
          frames.push({ fd, owned: false, root: named });
          continue;
        }
        if (!dir.root) {
          frames.push(OUTSIDE);
          continue;
        }
        if (dir.root.exact) return -E.ENOENT;
        if (last && !followLast) {
          const nested = this.nestedRoot(dir.root, dir.fd, name);
          if (nested) return nested.hidden ? -E.EACCES : this.rootEntry(nested, nested.virtual);
          keep = dir;
          return this.entry(dir, name, guestPath);
        }
        if (!last) {
          const fd = libc.openat(dir.fd, name, LOOK | O.DIRECTORY, 0) as number;
          if (fd >= 0) {
            const nested = dir.root.inner.length > 0 ? this.nestedRoot(dir.root, fd, '') : undefined;
            if (!nested) {
              frames.push({ fd, owned: true, root: dir.root });
              evict(frames);
              continue;
            }
            libc.close(fd);
            if (nested.hidden) return -E.EACCES;
            here.pop();
            const failed = restart(nested.virtual + '/');
            if (failed < 0) return failed;
            continue;
          }
          const errno = lastErrno();
          if (errno !== E.ENOTDIR && errno !== E.ELOOP) return -errno;
        }
        // The last component to follow, or one that is not a directory: a symlink, or the end.
        const target = readLink(dir.fd, name);
        if (typeof target === 'number') {
          if (!last) return target === -E.EINVAL ? -E.ENOTDIR : target;
          if (target !== -E.EINVAL && target !== -E.ENOENT) return target;
          const nested = this.nestedRoot(dir.root, dir.fd, name);
          if (nested) return nested.hidden ? -E.EACCES : this.rootEntry(nested, nested.virtual);
          keep = dir;
          return this.entry(dir, name, guestPath);
        }
        if (target.length === 0) return -E.ENOENT;
        here.pop();
        const failed = restart(Buffer.from(target).toString('utf8'));
        if (failed < 0) return failed;
      }
      // The path ended on a directory itself (".", "..", a symlink to one), or outside every root.
      const dir = frames[frames.length - 1]!;
      const guestPath = '/' + here.join('/');
      if (!dir.root) {
        if (want !== 'write' && guestPath === this.exe.virtual) return this.rootEntry(this.exe, guestPath);
        return entered ? -E.EACCES : -E.ENOENT;
      }
      keep = dir;
      return this.entry(dir, '.', guestPath, !dir.owned);
    } finally {
      for (const frame of frames) if (frame !== keep) closeFrame(frame);
    }
  }

  /** The walk's first frame, for "/": a root shown at "/", else outside every root. */
  private frameAt(guestPath: string): Frame {
    const root = this.byVirtual.get(guestPath);
    if (!root?.directory) return OUTSIDE;
    const fd = rootFd(root);
    return fd < 0 ? OUTSIDE : { fd, owned: false, root };
  }

  private entry(dir: Frame, name: string, guestPath: string, isRoot = false): ResolvedPath {
    const root = dir.root!;
    return {
      dir: dir.fd, name, guestPath, writable: root.writable, root, isRoot,
      release: dir.owned ? () => { libc.close(dir.fd); } : () => {},
    };
  }

  /** A root itself as the entry a path names; -errno when its host file cannot be opened. */
  private rootEntry(root: Root, guestPath: string): ResolvedPath | number {
    const fd = rootFd(root);
    if (fd < 0) return fd;
    return this.entry({ fd, owned: false, root }, root.name, guestPath, true);
  }

  /**
   * The root nested in `root` on the host that the entry `name` of `dir` ("" for
   * `dir` itself) is, if any.
   */
  private nestedRoot(root: Root, dir: number, name: string): Root | undefined {
    if (root.inner.length === 0) return undefined;
    const fd = name === '' ? dir : (libc.openat(dir, name, LOOK, 0) as number);
    if (fd < 0) return undefined;
    try {
      const st = fs.fstatSync(fd);
      return root.inner.find((inner) => inner.id === `${st.dev}:${st.ino}`);
    } catch {
      return undefined;
    } finally {
      if (fd !== dir) libc.close(fd);
    }
  }
}

function makeRoot(real: string, virtual: string, writable: boolean): Root {
  const st = fs.statSync(real, { throwIfNoEntry: false });
  const directory = st?.isDirectory() ?? true;
  return {
    real, virtual, writable, directory, name: directory ? '.' : path.basename(real),
    id: st ? `${st.dev}:${st.ino}` : '', inner: [],
  };
}

/**
 * A `symlink` entry's stand-in: a file root on a host symlink with the entry's text, in
 * linkDirectory(), read-only. Links with the same text share one host symlink.
 */
function linkRoot(target: string, virtual: string): Root {
  const dir = linkDirectory().path;
  const name = createHash('sha256').update(target).digest('hex').slice(0, 32);
  try {
    fs.symlinkSync(target, path.join(dir, name));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  return { real: path.join(dir, name), virtual, writable: false, directory: false, name, id: '', inner: [] };
}

/**
 * The directory of the host symlinks behind `symlink` entries: one per process, shared by its
 * threads (so that each knows it by identity and hides it from every guest), private (0700, ours),
 * removed when the process exits. Nothing in it is ever followed by tskvm.
 */
const LINK_DIR = path.join(os.tmpdir(), `tskvm-links-${process.pid}`);
let linkDir: { path: string; root: Root } | undefined;

function linkDirectory(): { path: string; root: Root } {
  if (linkDir === undefined) {
    try {
      fs.mkdirSync(LINK_DIR, { mode: 0o700 });
    } catch (e) {
      // Another thread of this process made it; anything else there is not ours to use.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const st = fs.lstatSync(LINK_DIR);
    if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0) {
      throw new TskvmError('TSKVM_ERR_CONFIG_ALLOWED_PATH', `allowed_paths: ${LINK_DIR}, where tskvm keeps the symlinks of "symlink" entries, is not a private directory of this user`);
    }
    linkDir = { path: LINK_DIR, root: { real: LINK_DIR, virtual: '', writable: false, directory: true, name: '.', id: `${st.dev}:${st.ino}`, inner: [], hidden: true } };
  }
  return linkDir;
}
if (isMainThread) process.once('exit', () => fs.rmSync(LINK_DIR, { recursive: true, force: true }));

/** The root's fd, opened the first time it is needed (a root that cannot be opened: -errno, every time). */
function rootFd(root: Root): number {
  if (root.fd === undefined || root.fd < 0) {
    const fd = libc.openat(AT_FDCWD, root.directory ? root.real : path.dirname(root.real), LOOK | O.DIRECTORY, 0) as number;
    root.fd = fd < 0 ? -lastErrno() : fd;
  }
  return root.fd;
}

function closeFrame(frame: Frame): void {
  if (frame.owned && frame.fd >= 0) libc.close(frame.fd);
}

/**
 * A walk holds the fds of the last HELD_FDS directories it went through (a guest
 * path with thousands of components, or symlinks adding more, must not take as many
 * fds); one further up is evicted, and opened again by name if ".." comes back to it.
 */
const HELD_FDS = 64;
const EVICTED = -2;

function evict(frames: Frame[]): void {
  const old = frames[frames.length - 1 - HELD_FDS];
  if (old?.owned && old.fd >= 0) {
    libc.close(old.fd);
    old.fd = EVICTED;
  }
}

/** Opens the top frame again if it was evicted: by name, down from the nearest frame still held. 0 or -errno. */
function reopen(frames: Frame[], here: string[]): number {
  const top = frames.length - 1;
  if (frames[top]!.fd !== EVICTED) return 0;
  let held = top - 1;
  while (frames[held]!.fd === EVICTED) held--;
  let fd = frames[held]!.fd;
  for (let i = held + 1; i <= top; i++) {
    const next = libc.openat(fd, here[i - 1]!, LOOK | O.DIRECTORY, 0) as number;
    const errno = lastErrno();
    if (i > held + 1) libc.close(fd);
    if (next < 0) return -errno;
    fd = next;
  }
  frames[top]!.fd = fd;
  return 0;
}

/** A path's components, empty ones and "." left out. */
function components(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

const linkBuffer = Buffer.alloc(4096);

/** The text of the symlink `name` in `dir`: its bytes, or -errno (EINVAL: not a symlink). */
function readLink(dir: number, name: string): Uint8Array | number {
  const n = Number(libc.readlinkat(dir, name, linkBuffer, linkBuffer.length));
  return n < 0 ? -lastErrno() : Buffer.from(linkBuffer.subarray(0, n));
}

function isWithin(p: string, dir: string): boolean {
  return dir === '/' ? p.startsWith('/') : p === dir || p.startsWith(dir + '/');
}

/** realpath, or for a path that does not exist yet, its parent's realpath plus the name. */
function hostRealpath(p: string): string {
  try {
    return fs.realpathSync.native(p);
  } catch {
    try {
      return path.join(fs.realpathSync.native(path.dirname(p)), path.basename(p));
    } catch {
      return path.resolve(p);
    }
  }
}
