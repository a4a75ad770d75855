/**
 * Event objects behind a host fd of the same kind: eventfd(2) and timerfd_create(2). The host object
 * does the counting and the timing, and its fd is what poll, select and epoll wait on; the host fd
 * is always non-blocking, and a guest read or write that must wait does so in waitReady, bounded by
 * the run's deadline.
 *
 * Neither can be shared by request VMs, so each fork makes its own from the frozen state (an
 * eventfd's counter; a timerfd's clock and timer, kept as the absolute time of its first pending
 * expiry, so every fork's timer runs on as the frozen one would have), and a fork's reset puts that
 * state back when a request changed it.
 */
import fs from 'node:fs';
import { TskvmError } from '../../errors.js';
import { E, hostErrno } from '../../host/errno.js';
import { errno as lastErrno, libc } from '../../host/libc.js';
import type { FrozenFile } from './frozen-file.js';
import { HostFile } from './host-file.js';
import { O, type FileKind } from './open-file.js';

const POLLIN = 0x1;
const POLLOUT = 0x4;
const EFD_SEMAPHORE = 1;
const TFD_TIMER_ABSTIME = 1;
const TFD_TIMER_CANCEL_ON_SET = 2;
const NS = 1_000_000_000n;

/** One line of /proc/self/fdinfo/FD ("ticks: 3"): the value after the colon, or undefined. */
function fdInfo(fd: number, field: string): string | undefined {
  const text = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  return text.split('\n').find((line) => line.startsWith(field + ':'))?.slice(field.length + 1).trim();
}

/** A host call on a non-blocking fd: its result, or -errno. */
function hostCall(call: () => number): number {
  try {
    return call();
  } catch (error) {
    return hostErrno(error);
  }
}

/** What an eventfd and a timerfd have in common: 8-byte host reads and writes, and a reset that undoes only what changed. */
abstract class HostEventFile extends HostFile {
  /** A read or write since the last saveState, which a reset must undo. */
  protected changed = false;

  protected constructor(hostFd: number, flags: number) {
    super(hostFd, flags, { positioning: 'stream', mutable: true, hostNonblocking: true });
  }

  /** Linux's noop_llseek: lseek succeeds and the position stays 0. */
  override seek(): number {
    return 0;
  }

  /** The 8-byte value a read returns or a write takes. */
  protected readU64(): bigint | number {
    const value = Buffer.alloc(8);
    const n = hostCall(() => fs.readSync(this.hostFd, value, 0, 8, null));
    return n < 0 ? n : value.readBigUInt64LE(0);
  }

  protected writeU64(count: bigint): number {
    const value = Buffer.alloc(8);
    value.writeBigUInt64LE(count);
    return hostCall(() => fs.writeSync(this.hostFd, value, 0, 8, null));
  }
}

export interface EventFdState {
  count: bigint;
}

/**
 * An eventfd. The host's counts in plain mode; EFD_SEMAPHORE is kept here (a semaphore read takes
 * the whole count and gives back all but one), so a reset can set the count in two host calls.
 */
export class EventFdFile extends HostEventFile {
  override readonly kind: FileKind = 'eventfd';

  private constructor(hostFd: number, flags: number, readonly semaphore: boolean) {
    super(hostFd, flags);
  }

  /** eventfd2(2): a new eventfd, or -errno. `flags` may hold O_NONBLOCK and EFD_SEMAPHORE. */
  static create(initval: number, flags: number): EventFdFile | number {
    const fd = libc.eventfd(0, O.NONBLOCK | O.CLOEXEC) as number;
    if (fd < 0) return -lastErrno();
    const file = new EventFdFile(fd, O.RDWR | (flags & O.NONBLOCK), (flags & EFD_SEMAPHORE) !== 0);
    if (initval > 0) file.writeU64(BigInt(initval));
    return file;
  }

  override readInto(into: Uint8Array): number {
    if (into.length < 8) return -E.EINVAL;
    return this.untilReady(POLLIN, () => {
      const count = this.readU64();
      if (typeof count === 'number') return count;
      this.changed = true;
      const value = this.semaphore ? 1n : count;
      if (count > value) this.writeU64(count - value);
      new DataView(into.buffer, into.byteOffset, 8).setBigUint64(0, value, true);
      return 8;
    });
  }

  override writeFrom(from: Uint8Array): number {
    if (from.length < 8) return -E.EINVAL;
    const value = new DataView(from.buffer, from.byteOffset, 8).getBigUint64(0, true);
    if (value === 0xffffffffffffffffn) return -E.EINVAL;
    return this.untilReady(POLLOUT, () => {
      const n = this.writeU64(value);
      if (n >= 0) this.changed = true;
      return n;
    });
  }

  /** The count, read without consuming it (a read and write-back would wake edge-triggered watchers). */
  private count(): bigint {
    return BigInt('0x' + (fdInfo(this.hostFd, 'eventfd-count') ?? '0'));
  }

  override saveState(): EventFdState {
    this.changed = false;
    return { count: this.count() };
  }

  override restoreState(state: unknown): void {
    if (!this.changed) return;
    this.readU64();
    const { count } = state as EventFdState;
    if (count > 0n) this.writeU64(count);
    this.changed = false;
  }

  override freeze(): FrozenFile {
    return { type: 'eventfd', flags: this.flags, semaphore: this.semaphore, state: this.saveState() };
  }

  static thaw(f: Extract<FrozenFile, { type: 'eventfd' }>): EventFdFile {
    const file = EventFdFile.create(0, f.semaphore ? EFD_SEMAPHORE : 0);
    if (typeof file === 'number') throw new TskvmError('TSKVM_ERR_HOST_FD', `cannot make an eventfd for a request VM: errno ${-file}`);
    file.flags = f.flags;
    file.changed = true;
    file.restoreState(f.state);
    return file;
  }
}

export interface TimerFdState {
  /** When the first unread expiry was, or the next will be, on the timer's clock (ns); 0: disarmed. */
  first: bigint;
  interval: bigint;
  /** TFD_TIMER_CANCEL_ON_SET, as the guest last set it. */
  cancelOnSet: boolean;
}

const CLOCK_REALTIME = 0;
const CLOCK_MONOTONIC = 1;
const CLOCK_BOOTTIME = 7;
const CLOCK_REALTIME_ALARM = 8;
const CLOCK_BOOTTIME_ALARM = 9;

/** A timerfd. */
export class TimerFdFile extends HostEventFile {
  override readonly kind: FileKind = 'timerfd';
  private cancelOnSet = false;

  private constructor(hostFd: number, flags: number, readonly clock: number) {
    super(hostFd, flags);
  }

  /**
   * timerfd_create(2): a new timerfd, or -errno. The alarm clocks would wake the host from suspend,
   * which only CAP_WAKE_ALARM may: EPERM, as for an unprivileged process, whoever runs tskvm.
   */
  static create(clock: number, flags: number): TimerFdFile | number {
    if (flags & ~(O.NONBLOCK | O.CLOEXEC)) return -E.EINVAL;
    if (clock === CLOCK_REALTIME_ALARM || clock === CLOCK_BOOTTIME_ALARM) return -E.EPERM;
    if (clock !== CLOCK_REALTIME && clock !== CLOCK_MONOTONIC && clock !== CLOCK_BOOTTIME) return -E.EINVAL;
    const fd = libc.timerfdCreate(clock, O.NONBLOCK | O.CLOEXEC) as number;
    if (fd < 0) return -lastErrno();
    return new TimerFdFile(fd, O.RDWR | (flags & O.NONBLOCK), clock);
  }

  override readInto(into: Uint8Array): number {
    if (into.length < 8) return -E.EINVAL;
    return this.untilReady(POLLIN, () => {
      const ticks = this.readU64();
      if (typeof ticks === 'number') return ticks;
      this.changed = true;
      new DataView(into.buffer, into.byteOffset, 8).setBigUint64(0, ticks, true);
      return 8;
    });
  }

  override writeFrom(): number {
    return -E.EINVAL;
  }

  /** timerfd_settime(2) with host copies of the guest's struct itimerspec: 0 or -errno. */
  settime(flags: number, value: Buffer, old: Buffer): number {
    if (flags & ~(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET)) return -E.EINVAL;
    const r = libc.timerfdSettime(this.hostFd, flags, value, old) as number;
    if (r < 0) return -lastErrno();
    this.changed = true;
    this.cancelOnSet = (flags & TFD_TIMER_CANCEL_ON_SET) !== 0;
    return 0;
  }

  gettime(into: Buffer): number {
    return libc.timerfdGettime(this.hostFd, into) < 0 ? -lastErrno() : 0;
  }

  override saveState(): TimerFdState {
    this.changed = false;
    const spec = Buffer.alloc(32);
    this.gettime(spec); // first, for a periodic timer's overruns to be counted in its ticks
    const interval = spec.readBigInt64LE(0) * NS + spec.readBigInt64LE(8);
    const left = spec.readBigInt64LE(16) * NS + spec.readBigInt64LE(24);
    const ticks = BigInt(fdInfo(this.hostFd, 'ticks') ?? '0');
    let first = 0n;
    if (ticks > 0n) first = interval > 0n ? this.now() + left - ticks * interval : 1n;
    else if (left > 0n) first = this.now() + left;
    return { first: first > 0n || ticks === 0n ? first : 1n, interval, cancelOnSet: this.cancelOnSet };
  }

  /**
   * Arms the timer at the absolute time of its first unread expiry: the host counts the expiries
   * since, as the frozen timer would have.
   */
  override restoreState(state: unknown): void {
    if (!this.changed) return;
    const s = state as TimerFdState;
    const spec = Buffer.alloc(32);
    spec.writeBigInt64LE(s.interval / NS, 0);
    spec.writeBigInt64LE(s.interval % NS, 8);
    spec.writeBigInt64LE(s.first / NS, 16);
    spec.writeBigInt64LE(s.first % NS, 24);
    libc.timerfdSettime(this.hostFd, TFD_TIMER_ABSTIME | (s.cancelOnSet ? TFD_TIMER_CANCEL_ON_SET : 0), spec, null);
    this.cancelOnSet = s.cancelOnSet;
    this.changed = false;
  }

  private now(): bigint {
    const ts = Buffer.alloc(16);
    libc.clockGettimeInto(this.clock, ts);
    return ts.readBigInt64LE(0) * NS + ts.readBigInt64LE(8);
  }

  override freeze(): FrozenFile {
    return { type: 'timerfd', flags: this.flags, clock: this.clock, state: this.saveState() };
  }

  static thaw(f: Extract<FrozenFile, { type: 'timerfd' }>): TimerFdFile {
    const file = TimerFdFile.create(f.clock, 0);
    if (typeof file === 'number') throw new TskvmError('TSKVM_ERR_HOST_FD', `cannot make a timerfd for a request VM: errno ${-file}`);
    file.flags = f.flags;
    file.changed = true;
    file.restoreState(f.state);
    return file;
  }
}
