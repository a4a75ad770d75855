/**
 * The guest's file descriptors and the open files behind them.
 *
 *   fd table (per process)          open files (shared by dup'd fds)
 *   ┌────┬─────────┬─────────┐
 *   │ 0  │ cloexec │ ───────────────► StdioFile(host fd 0)   refs 1
 *   │ 1  │         │ ───────────┬───► StdioFile(host fd 1)   refs 2
 *   │ 2  │         │ ───────────┘     (dup2(1, 2))
 *   │ 3  │ cloexec │ ───────────────► HostFile(host fd 27, position 4096)
 *   └────┴─────────┴─────────┘
 *
 * An open file carries what Linux keeps in a `struct file`: status flags
 * (F_GETFL), the file position, the host resource. The close-on-exec flag belongs
 * to the descriptor. An open file's host fd is closed when its last reference goes
 * (a descriptor, or a snapshot kept for resetting request forks).
 *
 * The kinds of open file are in open-files/; this file keeps the table: which
 * descriptor holds which file, and its snapshot, restore, freeze and thaw.
 */
import { E } from '../host/errno.js';
import { TskvmError } from '../errors.js';
import { thawFile, type FrozenFile } from './open-files/frozen-file.js';
import type { WatchBudget } from './open-files/epoll-file.js';
import type { OpenFile } from './open-files/open-file.js';

interface Slot {
  file: OpenFile;
  cloexec: boolean;
}

interface SavedFile {
  flags: number;
  state: unknown;
}

export interface FrozenFileTable {
  /** Per descriptor: index into `files` and close-on-exec, or null for a free slot. */
  slots: Array<{ file: number; cloexec: boolean } | null>;
  files: FrozenFile[];
  maxFiles: number;
}

/** What FileTable.snapshot() saved: the descriptors and each open file's flags and state. Opaque. */
export class FileTableSnapshot {
  /** @internal */
  constructor(readonly slots: ReadonlyArray<Slot | undefined>, readonly files: ReadonlyMap<OpenFile, SavedFile>) {}
}

export class FileTable {
  readonly maxFiles: number;
  /**
   * The watches all the process's epoll sets hold, each a host fd: as many as it may have fds, which
   * is what a program needs when each watch names an fd of its own.
   */
  readonly watches: WatchBudget;
  private slots: (Slot | undefined)[] = [];

  /** `stdio`: the files for fds 0, 1, 2 (a thawed table starts empty). */
  constructor(stdio: [OpenFile, OpenFile, OpenFile] | [], maxFiles = 1024) {
    this.maxFiles = maxFiles;
    this.watches = { used: 0, max: maxFiles };
    stdio.forEach((file, fd) => this.place(fd, file, false));
  }

  get(fd: number): OpenFile | undefined {
    return fd >= 0 ? this.slots[fd]?.file : undefined;
  }

  /** Open descriptors, ascending. */
  openFds(): number[] {
    const fds: number[] = [];
    this.slots.forEach((slot, fd) => slot && fds.push(fd));
    return fds;
  }

  /** Puts `file` at the lowest free fd ≥ minFd: the fd, or -EMFILE. The caller closes a new file it could not install. */
  install(file: OpenFile, minFd = 0, cloexec = false): number {
    for (let fd = Math.max(0, minFd); fd < this.maxFiles; fd++) {
      if (!this.slots[fd]) {
        this.place(fd, file, cloexec);
        return fd;
      }
    }
    return -E.EMFILE;
  }

  close(fd: number): number {
    const slot = fd >= 0 ? this.slots[fd] : undefined;
    if (!slot) return -E.EBADF;
    this.slots[fd] = undefined;
    this.drop(slot.file);
    return 0;
  }

  dup(fd: number): number {
    const file = this.get(fd);
    return file ? this.install(file) : -E.EBADF;
  }

  /** dup2(2): newFd becomes a copy of oldFd, closing what it held; newFd == oldFd is a no-op. */
  dup2(oldFd: number, newFd: number): number {
    const file = this.get(oldFd);
    if (!file || newFd < 0 || newFd >= this.maxFiles) return -E.EBADF;
    if (oldFd !== newFd) this.place(newFd, file, false);
    return newFd;
  }

  /** dup3(2): like dup2, but equal fds are -EINVAL and close-on-exec is chosen. */
  dup3(oldFd: number, newFd: number, cloexec: boolean): number {
    if (oldFd === newFd) return this.get(oldFd) ? -E.EINVAL : -E.EBADF;
    const file = this.get(oldFd);
    if (!file || newFd < 0 || newFd >= this.maxFiles) return -E.EBADF;
    this.place(newFd, file, cloexec);
    return newFd;
  }

  isCloexec(fd: number): boolean {
    return this.slots[fd]?.cloexec ?? false;
  }

  setCloexec(fd: number, cloexec: boolean): number {
    const slot = fd >= 0 ? this.slots[fd] : undefined;
    if (!slot) return -E.EBADF;
    slot.cloexec = cloexec;
    return 0;
  }

  closeAll(): void {
    for (const fd of this.openFds()) this.close(fd);
  }

  /**
   * Saves which descriptors are open, with their flags and each open file's
   * state (position). The snapshot holds its own reference to every file, so a
   * request that closes one does not close its host fd; `discard` lets go.
   */
  snapshot(): FileTableSnapshot {
    const files = new Map<OpenFile, SavedFile>();
    const slots = this.slots.map((slot) => {
      if (!slot) return undefined;
      if (!files.has(slot.file)) {
        files.set(slot.file, { flags: slot.file.flags, state: slot.file.saveState() });
        slot.file.refs++;
      }
      return { ...slot };
    });
    return new FileTableSnapshot(slots, files);
  }

  /** Brings the table back to `snapshot`: files opened since are closed, closed ones come back. */
  restore(snapshot: FileTableSnapshot): void {
    const previous = this.slots;
    this.slots = snapshot.slots.map((slot) => {
      if (!slot) return undefined;
      slot.file.refs++;
      slot.file.descriptors++;
      return { ...slot };
    });
    for (const slot of previous) if (slot) this.drop(slot.file);
    for (const [file, saved] of snapshot.files) {
      file.flags = saved.flags;
      file.restoreState(saved.state);
    }
  }

  /** The table as plain data (see FrozenFile); throws naming the descriptor that cannot be frozen. */
  freeze(): FrozenFileTable {
    const index = new Map<OpenFile, number>();
    const firstFd: number[] = [];
    const slots = this.slots.map((slot, fd) => {
      if (!slot) return null;
      let i = index.get(slot.file);
      if (i === undefined) {
        i = firstFd.push(fd) - 1;
        index.set(slot.file, i);
      }
      return { file: i, cloexec: slot.cloexec };
    });
    // Indices first, so a file that names others (an epoll set) can name files after it.
    const files = [...index.keys()].map((file, i) => {
      const frozen = file.freeze((other) => index.get(other));
      if (!frozen) {
        throw new TskvmError('TSKVM_ERR_PROGRAM_FREEZE', `fd ${firstFd[i]} is a ${file.kind}, which request VMs cannot share; close it before wait_for_requests()`);
      }
      return frozen;
    });
    return { slots, files, maxFiles: this.maxFiles };
  }

  /** Fills this table, which must be empty, from a frozen one, with files of its own. */
  thaw(frozen: FrozenFileTable, sink: (name: string) => (bytes: Uint8Array) => number | void): void {
    if (this.slots.some(Boolean)) throw new TskvmError('TSKVM_ERR_INTERNAL', 'a file table is thawed only when empty');
    const files = frozen.files.map((f) => thawFile(f, sink, this.watches));
    files.forEach((file, i) => file.relink(frozen.files[i]!, files));
    frozen.slots.forEach((slot, fd) => slot && this.place(fd, files[slot.file]!, slot.cloexec));
  }

  /** Drops a snapshot's references (files no descriptor holds are closed). */
  discard(snapshot: FileTableSnapshot): void {
    for (const file of snapshot.files.keys()) this.release(file);
  }

  private place(fd: number, file: OpenFile, cloexec: boolean): void {
    file.refs++;
    file.descriptors++;
    const previous = this.slots[fd];
    this.slots[fd] = { file, cloexec };
    if (previous) this.drop(previous.file);
  }

  /** A descriptor lets go of `file`. */
  private drop(file: OpenFile): void {
    if (--file.descriptors === 0) file.unreachable();
    this.release(file);
  }

  private release(file: OpenFile): void {
    if (--file.refs === 0) file.close();
  }
}
