/**
 * Which host files a guest may name, and under which path it sees them.
 *
 * The guest sees a tree made only of the configured `allowed_paths` (GUEST_ABI.md),
 * each a *root*: a host directory or file (`real`), shown to the guest at
 * `virtual` (default: the same path), read-only unless `writable`. A root covers
 * itself and everything below it; `prefix` is accepted for compatibility and
 * means the same thing (matching is by whole path components, never by string
 * prefix, so `/data` never covers `/database`). The program's own ELF is readable
 * at its guest path and at `/proc/self/exe`.
 *
 * Resolving a guest path, e.g. `open("../out/x", …)` with cwd `/work/in`:
 *
 *   guest path ──absolute──► /work/out/x ──virtual→real──► /srv/w/out/x ──host realpath──► /srv/w/out/x
 *   (cwd or dirfd base)       (".." outside roots is         (the deepest root    (symlinks and ".." inside
 *                              collapsed in the guest's        the path enters)     the root followed by the
 *                              namespace: enterView)                                host kernel)
 *                                                                                      │
 *                                       inside an allowed real root (realpath'd once)? ┘
 *
 * The check is made on the host's answer, after every symlink and ".." has been
 * followed, so `/allowed/../etc/passwd` and `/allowed/link-to-etc` are refused.
 *
 * Refusals, consistently:
 *   -ENOENT  the path never enters the guest's view (no root covers it): to the
 *            guest such files simply do not exist;
 *   -EACCES  the path starts inside the view but resolves outside it (".." or a
 *            symlink escaping a root);
 *   -EROFS   a write (open for writing, create, remove, rename, chmod, utimes) in
 *            a root that is not `writable`, like a read-only bind mount.
 *
 * Known limits: a symlink is followed with the host's meaning of its target (an
 * absolute target names a host path, not a guest path); guest paths that are not
 * valid UTF-8 cannot be named; between our check and the host call a concurrent
 * writer of the same writable directory could swap a directory for a symlink
 * (opens pass O_NOFOLLOW, so the last component at least cannot be swapped).
 */
import fs from 'node:fs';
import path from 'node:path';
import { E, hostErrno } from './errno.js';
import { TskvmError } from '../errors.js';

export interface AllowedPath {
  /** Host path. */
  real: string;
  /** Path the guest sees (default: `real`). */
  virtual?: string;
  /** Everything under it (a directory root always covers everything under it). */
  prefix?: boolean;
  writable?: boolean;
}

export type PathWant = 'read' | 'write' | 'stat';

export interface ResolveOptions {
  /** Follow a symlink in the last component (stat vs lstat). Default true. */
  followLast?: boolean;
  /** Guest directory a relative path starts from (an *at call's dirfd); default the cwd. */
  baseGuestDir?: string;
}

export interface ResolvedPath {
  /** The host path to operate on: no symlink or ".." left in it (except a last component not followed). */
  hostPath: string;
  /** The same file as the guest names it (reverse-mapped), for getcwd and *at bases. */
  guestPath: string;
  /** Whether the root holding it is writable. */
  writable: boolean;
}

interface Root {
  real: string;
  virtual: string;
  writable: boolean;
}

const PROC_SELF_EXE = '/proc/self/exe';
/** Linux gives up after 40 symlinks in one lookup. */
const MAX_SYMLINKS = 40;

export class PathPolicy {
  private readonly roots: Root[];
  private readonly byVirtual = new Map<string, Root>();
  private readonly exe: { hostPath: string; guestPath: string };
  /** Some root is shown under another name, so host paths in answers need mapping back. */
  private readonly remapped: boolean;
  private cwdPath: string;

  constructor(opts: { allowed: AllowedPath[]; cwd?: string; exe: { hostPath: string; guestPath: string } }) {
    this.roots = opts.allowed.map((entry) => {
      if (typeof entry.real !== 'string' || entry.real === '') {
        throw new TskvmError('TSKVM_ERR_CONFIG_ALLOWED_PATH', 'allowed_paths: every entry needs a non-empty "real" host path', { entry });
      }
      const virtual = entry.virtual ?? path.resolve(entry.real);
      if (!virtual.startsWith('/')) {
        throw new TskvmError('TSKVM_ERR_CONFIG_ALLOWED_PATH', `allowed_paths: virtual path "${virtual}" must be absolute`, { entry });
      }
      return { real: hostRealpath(path.resolve(entry.real)), virtual: path.posix.normalize(virtual), writable: entry.writable === true };
    });
    for (const root of this.roots) if (!this.byVirtual.has(root.virtual)) this.byVirtual.set(root.virtual, root);
    this.remapped = this.roots.some((r) => r.real !== r.virtual);
    this.exe = { hostPath: hostRealpath(path.resolve(opts.exe.hostPath)), guestPath: path.posix.normalize(opts.exe.guestPath) };
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
   * Maps a guest path to the host file it names, or a negative errno (see the
   * header for which). `want` is what the caller will do with it.
   */
  resolve(guestPath: string, want: PathWant, opts: ResolveOptions = {}): ResolvedPath | number {
    if (guestPath === '') return -E.ENOENT;
    const absolute = this.absolute(guestPath, opts.baseGuestDir);
    if (want !== 'write') {
      const lexical = path.posix.normalize(absolute);
      if (lexical === PROC_SELF_EXE || lexical === this.exe.guestPath) return { ...this.exe, writable: false };
    }
    // "dir/" and "dir/." name the directory itself: symlinks are followed to it
    // (except by calls that change the entry itself) and it must be a directory.
    const mustBeDir = /\/\.?$/.test(guestPath) || guestPath === '.';
    const followLast = (opts.followLast ?? true) || (mustBeDir && want !== 'write');

    const entry = this.enterView(absolute.split('/').filter((c) => c !== '' && c !== '.'));
    if (!entry) return -E.ENOENT;
    const candidate = joinHost(entry.root.real, entry.rest);
    const hostPath = resolveOnHost(candidate, followLast, 0);
    if (typeof hostPath === 'number') return hostPath;

    const root = this.rootHolding(hostPath);
    if (!root) return hostPath === this.exe.hostPath && want !== 'write' ? { ...this.exe, writable: false } : -E.EACCES;
    if (want === 'write' && !root.writable) return -E.EROFS;
    if (mustBeDir) {
      try {
        if (!(followLast ? fs.statSync : fs.lstatSync)(hostPath).isDirectory()) return -E.ENOTDIR;
      } catch (error) {
        const errno = hostErrno(error);
        if (errno !== -E.ENOENT) return errno;
      }
    }
    return { hostPath, guestPath: this.toGuest(root, hostPath), writable: root.writable };
  }

  /** chdir(2): the directory must be visible, a directory, and searchable. */
  chdir(guestDir: string, baseGuestDir?: string): number {
    const dir = this.resolve(guestDir, 'stat', { followLast: true, baseGuestDir });
    if (typeof dir === 'number') return dir;
    try {
      if (!fs.statSync(dir.hostPath).isDirectory()) return -E.ENOTDIR;
      fs.accessSync(dir.hostPath, fs.constants.X_OK);
    } catch (error) {
      return hostErrno(error);
    }
    this.cwdPath = dir.guestPath;
    return 0;
  }

  /**
   * readlink(2)'s answer: the link's bytes, or the program's guest path for
   * /proc/self/exe. An absolute target inside a remapped root is shown under its
   * guest path.
   */
  readlink(guestPath: string, opts: { baseGuestDir?: string } = {}): Uint8Array | number {
    if (path.posix.normalize(this.absolute(guestPath, opts.baseGuestDir)) === PROC_SELF_EXE) return Buffer.from(this.exe.guestPath);
    const link = this.resolve(guestPath, 'stat', { followLast: false, baseGuestDir: opts.baseGuestDir });
    if (typeof link === 'number') return link;
    let target: Buffer;
    try {
      target = fs.readlinkSync(link.hostPath, { encoding: 'buffer' });
    } catch (error) {
      return hostErrno(error);
    }
    if (this.remapped && target[0] === 0x2f /* '/' */) {
      const text = target.toString('utf8');
      const root = this.rootHolding(text);
      if (root) return Buffer.from(this.toGuest(root, text));
    }
    return target;
  }

  /**
   * Whether the path names a directory above a root (`/`, or `/srv` for a root at
   * `/srv/data`): it exists for certain but is not part of the view. mkdir answers
   * EEXIST for it, as `mkdir -p` needs, without revealing anything else.
   */
  isAboveRoot(guestPath: string, opts: { baseGuestDir?: string } = {}): boolean {
    const lexical = path.posix.normalize(this.absolute(guestPath, opts.baseGuestDir));
    const prefix = lexical === '/' ? '/' : lexical.replace(/\/$/, '') + '/';
    return this.roots.some((root) => root.virtual !== lexical && root.virtual.startsWith(prefix));
  }

  /**
   * The text to store in a symlink the guest creates: an absolute target inside a
   * root shown under another name is stored as its host path, so the host
   * resolves it as the guest meant (readlink maps it back).
   */
  hostLinkTarget(target: string): string {
    if (!this.remapped || !target.startsWith('/')) return target;
    const entry = this.enterView(target.split('/').filter((c) => c !== '' && c !== '.'));
    return entry ? joinHost(entry.root.real, entry.rest) : target;
  }

  /** For a request fork: the cwd is the only state that changes. */
  snapshot(): string {
    return this.cwdPath;
  }

  restore(cwd: string): void {
    this.cwdPath = cwd;
  }

  /** The guest path made absolute against `baseGuestDir` (an *at call's dirfd) or the cwd; not normalized. */
  private absolute(guestPath: string, baseGuestDir: string | undefined): string {
    return guestPath.startsWith('/') ? guestPath : `${baseGuestDir ?? this.cwdPath}/${guestPath}`;
  }

  /**
   * Walks the guest path's components to the root it ends up in, and what lies
   * below that root for the host to resolve.
   *  - Outside every root, ".." is lexical: no host directory stands behind the
   *    parts of the guest's namespace that no root covers.
   *  - Inside a root, components (".." included) are left to the host, which
   *    knows the symlinks; a deeper root entered by name takes over.
   *  - ".." at the top of a root shown under another name leaves it in the guest's
   *    namespace, as at a mount point (`/data/../out` is `/out`). For a root shown
   *    at its own path the host's ".." means the same, and the check catches an escape.
   */
  private enterView(components: string[]): { root: Root; rest: string[] } | null {
    let stack: string[] = [];
    let root: Root | undefined;
    let rest: string[] = [];
    let depth = 0; // how far `rest` goes below the root's top, counted lexically
    let byName = true; // `stack` still names where root + rest leads (no ".." handed to the host yet)
    const enterByName = (): void => {
      const deeper = byName ? this.byVirtual.get('/' + stack.join('/')) : undefined;
      if (deeper) {
        root = deeper;
        rest = [];
        depth = 0;
      }
    };
    enterByName();
    for (const component of components) {
      if (!root) {
        if (component === '..') stack.pop();
        else stack.push(component);
      } else if (component !== '..') {
        rest.push(component);
        depth++;
        if (byName) stack.push(component);
      } else if (depth > 0 || root.real === root.virtual) {
        rest.push(component);
        depth = Math.max(0, depth - 1);
        byName = false;
      } else {
        stack = root.virtual.split('/').filter((c) => c !== '');
        stack.pop();
        root = undefined;
        byName = true;
      }
      enterByName();
    }
    return root ? { root, rest } : null;
  }

  /** The deepest root whose real path holds `hostPath`. */
  private rootHolding(hostPath: string): Root | undefined {
    let best: Root | undefined;
    for (const root of this.roots) {
      if (isWithin(hostPath, root.real) && (!best || root.real.length > best.real.length)) best = root;
    }
    return best;
  }

  private toGuest(root: Root, hostPath: string): string {
    const below = root.real === '/' ? hostPath : hostPath.slice(root.real.length);
    if (root.virtual === '/') return below || '/';
    return below === '/' ? root.virtual : root.virtual + below;
  }
}

function isWithin(p: string, dir: string): boolean {
  return dir === '/' ? p.startsWith('/') : p === dir || p.startsWith(dir + '/');
}

function joinHost(dir: string, components: string[]): string {
  if (components.length === 0) return dir;
  return (dir === '/' ? '' : dir) + '/' + components.join('/');
}

/** realpath, or for a path that does not exist yet, its parent's realpath plus the name. */
function hostRealpath(p: string): string {
  try {
    return fs.realpathSync.native(p);
  } catch {
    try {
      return joinHost(fs.realpathSync.native(path.dirname(p)), [path.basename(p)]);
    } catch {
      return path.resolve(p); // never matches a realpath result unless it really is one
    }
  }
}

/**
 * The host kernel's answer for `p`: the parent is realpath'd (symlinks and ".."
 * followed), then the last component is followed by hand when asked, so that a
 * last component that does not exist yet (O_CREAT, mkdir) still resolves, and a
 * dangling symlink is followed to where it would create the file.
 */
function resolveOnHost(p: string, followLast: boolean, depth: number): string | number {
  const slash = p.lastIndexOf('/');
  const name = p.slice(slash + 1);
  try {
    if (name === '' || name === '.' || name === '..') return fs.realpathSync.native(p);
    const parent = fs.realpathSync.native(slash === 0 ? '/' : p.slice(0, slash));
    const full = joinHost(parent, [name]);
    if (!followLast) return full;
    let isLink: boolean;
    try {
      isLink = fs.lstatSync(full).isSymbolicLink();
    } catch (error) {
      const errno = hostErrno(error);
      return errno === -E.ENOENT ? full : errno;
    }
    if (!isLink) return full;
    if (depth >= MAX_SYMLINKS) return -E.ELOOP;
    const target = fs.readlinkSync(full);
    return resolveOnHost(target.startsWith('/') ? target : `${parent === '/' ? '' : parent}/${target}`, true, depth + 1);
  } catch (error) {
    return hostErrno(error);
  }
}
