/**
 * A signalfd(2): reads the process's pending signals of its mask as struct signalfd_siginfo, taking
 * them as rt_sigtimedwait takes them (signal.ts, takeWanted).
 *
 * The signals are tskvm's state, not the host's, but poll, select, epoll and a parked thread wait on
 * host fds: a signalfd has a host eventfd whose readability is kept equal to "a signal of the mask is
 * pending for the running thread". The signal code updates it whenever one may have come (a send, a
 * timer: SignalState.updateWatchers), and every wait updates it first, for the thread that waits
 * (Linux's signalfd_poll asks the same of the polling thread).
 *
 * A fork makes its own from the frozen mask; the process state brings the pending signals, so
 * there is nothing else to carry.
 */
import fs from 'node:fs';
import { TskvmError } from '../../errors.js';
import { E } from '../../host/errno.js';
import { errno as lastErrno, libc } from '../../host/libc.js';
import { ERESTARTSYS } from '../deadline.js';
import { SIG, SI, UNBLOCKABLE, type PendingWatcher, type SignalView } from '../signal-state.js';
import { takeWanted } from '../signal.js';
import type { FrozenFile } from './frozen-file.js';
import { HostFile } from './host-file.js';
import { O, type FileKind } from './open-file.js';

const SIGNALFD_SIGINFO_SIZE = 128;
const POLLIN = 0x1;
const SI_SIGIO = -5;
const SIGPOLL = 29;
const BUS_MCEERR_AR = 4, BUS_MCEERR_AO = 5;

/** siginfo_layout()'s cases that signalfd_copyinfo reads. */
type Layout = 'kill' | 'timer' | 'rt' | 'fault' | 'mceerr' | 'chld' | 'poll' | 'sys';

/** The highest si_code of each signal whose codes have their own union member (x86-64, NSIGILL…). */
const CODE_LIMITS: Record<number, [number, Layout]> = {
  [SIG.SIGILL]: [11, 'fault'], [SIG.SIGFPE]: [15, 'fault'], [SIG.SIGSEGV]: [10, 'fault'], [SIG.SIGBUS]: [5, 'fault'],
  [SIG.SIGTRAP]: [6, 'fault'], [SIG.SIGCHLD]: [6, 'chld'], [SIGPOLL]: [6, 'poll'], [SIG.SIGSYS]: [2, 'sys'],
};

/** Linux's siginfo_layout: which member of siginfo's union `code` filled. */
function layout(sig: number, code: number): Layout {
  if (code > SI.USER && code < SI.KERNEL) {
    const limit = CODE_LIMITS[sig];
    if (limit && code <= limit[0]) return sig === SIG.SIGBUS && code >= BUS_MCEERR_AR && code <= BUS_MCEERR_AO ? 'mceerr' : limit[1];
    return code <= 6 ? 'poll' : 'kill';
  }
  if (code === SI.TIMER) return 'timer';
  if (code === SI_SIGIO) return 'poll';
  return code < 0 ? 'rt' : 'kill';
}

/** struct signalfd_siginfo from a siginfo_t, field by field as Linux's signalfd_copyinfo. */
function signalfdSiginfo(info: Uint8Array, into: Uint8Array): void {
  const from = new DataView(info.buffer, info.byteOffset, info.byteLength);
  const to = new DataView(into.buffer, into.byteOffset, SIGNALFD_SIGINFO_SIZE);
  into.fill(0, 0, SIGNALFD_SIGINFO_SIZE);
  const signo = from.getInt32(0, true), code = from.getInt32(8, true);
  to.setUint32(0, signo, true); // ssi_signo
  to.setInt32(4, from.getInt32(4, true), true); // ssi_errno
  to.setInt32(8, code, true); // ssi_code
  const pidUid = (): void => {
    to.setUint32(12, from.getUint32(16, true), true); // ssi_pid
    to.setUint32(16, from.getUint32(20, true), true); // ssi_uid
  };
  const value = (): void => {
    to.setInt32(44, from.getInt32(24, true), true); // ssi_int
    to.setBigUint64(48, from.getBigUint64(24, true), true); // ssi_ptr
  };
  switch (layout(signo, code)) {
    case 'kill': pidUid(); break;
    case 'timer':
      to.setUint32(24, from.getUint32(16, true), true); // ssi_tid: the timer's id
      to.setUint32(32, from.getUint32(20, true), true); // ssi_overrun
      value();
      break;
    case 'rt': pidUid(); value(); break;
    case 'fault': to.setBigUint64(72, from.getBigUint64(16, true), true); break; // ssi_addr
    case 'mceerr':
      to.setBigUint64(72, from.getBigUint64(16, true), true);
      to.setUint16(80, from.getUint16(24, true), true); // ssi_addr_lsb
      break;
    case 'chld':
      pidUid();
      to.setInt32(40, from.getInt32(24, true), true); // ssi_status
      to.setBigUint64(56, from.getBigUint64(32, true), true); // ssi_utime
      to.setBigUint64(64, from.getBigUint64(40, true), true); // ssi_stime
      break;
    case 'poll':
      to.setUint32(28, from.getUint32(16, true), true); // ssi_band
      to.setInt32(20, from.getInt32(24, true), true); // ssi_fd
      break;
    case 'sys':
      to.setBigUint64(88, from.getBigUint64(16, true), true); // ssi_call_addr
      to.setInt32(84, from.getInt32(24, true), true); // ssi_syscall
      to.setUint32(96, from.getUint32(28, true), true); // ssi_arch
      break;
  }
}

export class SignalFdFile extends HostFile implements PendingWatcher {
  override readonly kind: FileKind = 'signalfd';
  /** The signals it reads (never SIGKILL or SIGSTOP). */
  mask: bigint;
  /** The process whose signals it reads; null for a thawed one until its process binds it. */
  private source: SignalView | null = null;
  /** Whether the host eventfd is readable now. */
  private level = false;

  private constructor(hostFd: number, flags: number, mask: bigint) {
    super(hostFd, flags, { positioning: 'stream', mutable: true, hostNonblocking: true });
    this.mask = mask & ~UNBLOCKABLE;
  }

  /** signalfd4(-1, …): a new signalfd reading `mask` of `source`'s signals, or -errno. `flags` may hold O_NONBLOCK. */
  static create(source: SignalView | null, mask: bigint, flags: number): SignalFdFile | number {
    const fd = libc.eventfd(0, O.NONBLOCK | O.CLOEXEC) as number;
    if (fd < 0) return -lastErrno();
    const file = new SignalFdFile(fd, O.RDWR | (flags & O.NONBLOCK), mask);
    if (source) file.bind(source);
    return file;
  }

  /** Linux's signalfd_poll: readable, never writable. */
  override get pollEvents(): number {
    return POLLIN;
  }

  /** Reads `source`'s signals from now on (a fork's process binds the signalfds it thawed). */
  bind(source: SignalView): void {
    this.source = source;
    source.signals.watchers.add(this);
    this.update();
  }

  /** signalfd4 on this fd: the new mask. */
  setMask(mask: bigint): void {
    this.mask = mask & ~UNBLOCKABLE;
    this.update();
  }

  /** Makes the host eventfd readable exactly when a signal of the mask is pending for the running thread. */
  update(): void {
    const s = this.source;
    const ready = s !== null && ((s.threadSignals.pending.set | s.signals.pending.set) & this.mask) !== 0n;
    if (ready === this.level) return;
    const value = Buffer.alloc(8);
    try {
      if (ready) {
        value.writeBigUInt64LE(1n);
        fs.writeSync(this.hostFd, value);
      } else {
        fs.readSync(this.hostFd, value);
      }
    } catch {
      // Not reachable for an eventfd of ours that only ever holds 0 or 1; the level is then as it was.
      return;
    }
    this.level = ready;
  }

  /**
   * As many signalfd_siginfo as fit and are pending (at least one: it waits for the first unless
   * O_NONBLOCK); EINVAL for a buffer too small for one.
   */
  override readInto(into: Uint8Array): number {
    const room = Math.floor(into.length / SIGNALFD_SIGINFO_SIZE);
    if (room === 0) return -E.EINVAL;
    const source = this.source;
    if (!source) return -E.EAGAIN;
    const n = this.untilReady(POLLIN, () => {
      let done = 0;
      for (let got = takeWanted(source, this.mask); got; got = done < room ? takeWanted(source, this.mask) : null) {
        signalfdSiginfo(got.info, into.subarray(done * SIGNALFD_SIGINFO_SIZE));
        done++;
      }
      this.update();
      return done > 0 ? done * SIGNALFD_SIGINFO_SIZE : -E.EAGAIN;
    });
    // A wait a signal ended is Linux's ERESTARTSYS: restarted under SA_RESTART.
    return n === -E.EINTR ? -ERESTARTSYS : n;
  }

  override writeFrom(): number {
    return -E.EINVAL;
  }

  /** Linux's noop_llseek: lseek succeeds and the position stays 0. */
  override seek(): number {
    return 0;
  }

  override saveState(): bigint {
    return this.mask;
  }

  override restoreState(state: unknown): void {
    if (typeof state === 'bigint' && state !== this.mask) this.setMask(state);
  }

  override freeze(): FrozenFile {
    return { type: 'signalfd', flags: this.flags, mask: this.mask };
  }

  static thaw(f: Extract<FrozenFile, { type: 'signalfd' }>): SignalFdFile {
    const file = SignalFdFile.create(null, f.mask, 0);
    if (typeof file === 'number') throw new TskvmError('TSKVM_ERR_HOST_FD', `cannot make a signalfd for a request VM: errno ${-file}`);
    file.flags = f.flags;
    return file;
  }

  override close(): void {
    this.source?.signals.watchers.delete(this);
    this.source = null;
    super.close();
  }
}
