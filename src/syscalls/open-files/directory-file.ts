/**
 * An open directory: its listing is read from the host in pieces and handed out by position, so a
 * snapshot or a frozen program can bring back where a listing was.
 */
import fs from 'node:fs';
import { E, hostErrno } from '../../host/errno.js';
import { errno as lastErrno, libc } from '../../host/libc.js';
import type { FrozenFile } from './frozen-file.js';
import { fstatHost, O, OpenFile, SEEK_CUR, SEEK_SET, type FileKind, type FileStat } from './open-file.js';

const DT_DIR = 4;

interface DirEntry {
  name: Uint8Array;
  ino: bigint;
  type: number;
}

/**
 * An open directory. Entries come from getdents64 on the host, in the host's
 * order (so `find` lists what a native `find` lists, in the same order), after
 * "." and "..", as Linux returns them. The listing reads an fd of its own, opened
 * from the directory's fd (never by path, so a directory renamed or swapped since
 * is not another one). The position is the number of entries handed out: it is
 * each record's d_off, and lseek(fd, n, SEEK_SET) rewinds the listing and skips n
 * entries (rewinddir is lseek to 0).
 *
 *   struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
 *                            @0         @8         @16           @18         @19, NUL, pad to 8
 */
export class DirectoryFile extends OpenFile {
  readonly kind: FileKind = 'dir';
  override readonly hostFd: number;
  override readonly guestPath: string;
  override readonly mutable: boolean;
  /** The listing's own fd (O_RDONLY), opened on demand; -1 until then. */
  private listFd = -1;
  /** Records read from the host and not handed out yet (allocated by the first listing). */
  private host: Buffer | null = null;
  private hostUsed = 0;
  private hostAt = 0;
  private index = 0;
  /** An entry read from the host that did not fit in the last getdents buffer. */
  private pending: DirEntry | null = null;

  /** `hostFd` is an fd on the directory itself (fstat, *at bases). */
  constructor(hostFd: number, guestPath: string, flags: number, mutable: boolean) {
    super(flags);
    this.hostFd = hostFd;
    this.guestPath = guestPath;
    this.mutable = mutable;
  }
  override get seekable(): boolean {
    return true;
  }

  override readInto(): number { return -E.EISDIR; }
  override preadInto(): number { return -E.EISDIR; }
  override writeFrom(): number { return -E.EISDIR; }
  override pwriteFrom(): number { return -E.EISDIR; }

  override getdents(into: Uint8Array): number {
    const view = new DataView(into.buffer, into.byteOffset, into.byteLength);
    let used = 0;
    for (;;) {
      let entry: DirEntry | null;
      try {
        entry = this.nextEntry();
      } catch (error) {
        return used > 0 ? used : hostErrno(error);
      }
      if (!entry) break;
      const reclen = (19 + entry.name.length + 1 + 7) & ~7;
      if (used + reclen > into.length) {
        this.pending = entry;
        if (used === 0) return -E.EINVAL;
        break;
      }
      into.fill(0, used, used + reclen);
      view.setBigUint64(used, entry.ino, true);
      view.setBigInt64(used + 8, BigInt(this.index + 1), true);
      view.setUint16(used + 16, reclen, true);
      view.setUint8(used + 18, entry.type);
      into.set(entry.name, used + 19);
      used += reclen;
      this.index++;
    }
    return used;
  }

  override seek(offset: number, whence: number): number {
    if (whence === SEEK_CUR) offset += this.index;
    else if (whence !== SEEK_SET) return -E.EINVAL;
    if (offset < 0 || !Number.isSafeInteger(offset)) return -E.EINVAL;
    if (offset !== this.index) {
      try {
        if (offset < this.index) this.rewind();
        while (this.index < offset && this.nextEntry()) this.index++;
      } catch (error) {
        return hostErrno(error);
      }
    }
    return offset;
  }

  override stat(): FileStat | number {
    return fstatHost(this.hostFd);
  }

  override sync(): number {
    try {
      fs.fsyncSync(this.hostFd);
      return 0;
    } catch (error) {
      return hostErrno(error);
    }
  }

  override freeze(): FrozenFile {
    return { type: 'dir', fd: this.hostFd, guestPath: this.guestPath, flags: this.flags, mutable: this.mutable, state: this.index };
  }
  override saveState(): unknown {
    return this.index;
  }
  override restoreState(state: unknown): void {
    this.seek(state as number, SEEK_SET);
  }

  override close(): void {
    if (this.listFd >= 0) libc.close(this.listFd);
    this.listFd = -1;
    try {
      fs.closeSync(this.hostFd);
    } catch {
      // see HostFile.close
    }
  }

  private rewind(): void {
    if (this.listFd >= 0) libc.lseek(this.listFd, 0, SEEK_SET);
    this.hostUsed = this.hostAt = 0;
    this.pending = null;
    this.index = 0;
  }

  /** The entry at `index` (not yet counted as handed out), or null at the end. Throws a host error. */
  private nextEntry(): DirEntry | null {
    if (this.pending) {
      const entry = this.pending;
      this.pending = null;
      return entry;
    }
    if (this.index === 0) return { name: Buffer.from('.'), ino: fs.fstatSync(this.hostFd, { bigint: true }).ino, type: DT_DIR };
    if (this.index === 1) return { name: Buffer.from('..'), ino: this.parentIno(), type: DT_DIR };
    if (this.listFd < 0) this.listFd = hostCall(libc.openat(this.hostFd, '.', O.RDONLY | O.DIRECTORY | O.CLOEXEC, 0) as number, 'opendir');
    const host = (this.host ??= Buffer.alloc(8192));
    for (;;) {
      if (this.hostAt >= this.hostUsed) {
        this.hostUsed = hostCall(Number(libc.getdents64(this.listFd, host, host.length)), 'getdents64');
        this.hostAt = 0;
        if (this.hostUsed === 0) return null;
      }
      const at = this.hostAt;
      this.hostAt += host.readUInt16LE(at + 16);
      const name = host.subarray(at + 19, host.indexOf(0, at + 19));
      if (name.length === 1 && name[0] === 0x2e) continue; // "." and ".." were handed out first
      if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) continue;
      return { name: Buffer.from(name), ino: host.readBigUInt64LE(at), type: host[at + 18]! };
    }
  }

  /** The inode of the directory's parent on the host (for a root's top, the host's: only its number shows). */
  private parentIno(): bigint {
    const fd = hostCall(libc.openat(this.hostFd, '..', O.PATH | O.CLOEXEC, 0) as number, 'open ..');
    try {
      return fs.fstatSync(fd, { bigint: true }).ino;
    } finally {
      libc.close(fd);
    }
  }
}

/** A libc call's result, or a thrown error carrying its errno for hostErrno (as node:fs throws). */
function hostCall(result: number, what: string): number {
  if (result >= 0) return result;
  const errno = lastErrno();
  throw Object.assign(new Error(`${what}: errno ${errno}`), { errno: -errno });
}
