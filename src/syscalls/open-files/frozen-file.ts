/**
 * Open files as plain data: a frozen program's files cross to the threads of request VMs, which
 * rebuild them here, each with its own host fds and positions.
 */
import { TskvmError } from '../../errors.js';
import { errno as lastErrno, libc } from '../../host/libc.js';
import { DirectoryFile } from './directory-file.js';
import { EpollFile, type WatchBudget } from './epoll-file.js';
import { EventFdFile, TimerFdFile, type EventFdState, type TimerFdState } from './event-files.js';
import { HostFile, StdioFile, type Positioning } from './host-file.js';
import { BufferFile, SinkFile } from './memory-file.js';
import { SignalFdFile } from './signal-file.js';
import type { OpenFile } from './open-file.js';

/**
 * An open file as plain data (structured-clonable), so the file table of a
 * frozen program can be rebuilt by request VMs on other threads. Host fds are
 * process-wide: a thawed file gets its own duplicate (F_DUPFD_CLOEXEC) and
 * keeps its own position, so forks never move each other's offsets.
 */
export type FrozenFile =
  | { type: 'host'; fd: number; flags: number; state: unknown; positioning: Positioning; guestPath: string | null; mutable: boolean; ownsFd: boolean; hostNonblocking: boolean }
  | { type: 'stdio'; fd: number }
  | { type: 'dir'; fd: number; guestPath: string; flags: number; mutable: boolean; state: unknown }
  | { type: 'buffer'; data: Uint8Array; state: unknown }
  | { type: 'sink'; name: string }
  | { type: 'eventfd'; flags: number; semaphore: boolean; state: EventFdState }
  | { type: 'timerfd'; flags: number; clock: number; state: TimerFdState }
  /** Its process binds it when thawed (process-state.ts). */
  | { type: 'signalfd'; flags: number; mask: bigint }
  /** Watches name files by their index in the frozen table. */
  | { type: 'epoll'; flags: number; watches: Array<{ fd: number; file: number; events: number; data: bigint }> };

const F_DUPFD_CLOEXEC = 1030;

function dupFd(fd: number): number {
  const copy = libc.fcntlInt(fd, F_DUPFD_CLOEXEC, 0) as number;
  if (copy < 0) throw new TskvmError('TSKVM_ERR_HOST_FD', `cannot duplicate host fd ${fd} for a request VM: errno ${lastErrno()}`);
  return copy;
}

/**
 * Rebuilds a frozen file; `sink` gives the writer for a named output, `watches` the table's budget
 * for epoll watches. An epoll set comes back empty: FileTable.thaw relinks it once every file exists.
 */
export function thawFile(f: FrozenFile, sink: (name: string) => (bytes: Uint8Array) => number | void, watches: WatchBudget): OpenFile {
  let file: OpenFile;
  switch (f.type) {
    case 'stdio': return new StdioFile(f.fd);
    case 'sink': return new SinkFile(sink(f.name), f.name);
    case 'eventfd': return EventFdFile.thaw(f);
    case 'timerfd': return TimerFdFile.thaw(f);
    case 'signalfd': return SignalFdFile.thaw(f);
    case 'epoll': return EpollFile.thaw(f, watches);
    case 'buffer': file = new BufferFile(f.data); break;
    case 'dir': file = new DirectoryFile(dupFd(f.fd), f.guestPath, f.flags, f.mutable); break;
    case 'host':
      file = new HostFile(f.ownsFd ? dupFd(f.fd) : f.fd, f.flags, {
        positioning: f.positioning, guestPath: f.guestPath, mutable: f.mutable, ownsFd: f.ownsFd, hostNonblocking: f.hostNonblocking,
      });
      break;
  }
  file.restoreState(f.state);
  return file;
}
