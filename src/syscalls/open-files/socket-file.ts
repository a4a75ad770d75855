/**
 * One end of a socketpair(2) (AF_UNIX: tskvm gives the guest no network): a host socket, always
 * non-blocking, whose blocking calls wait in waitReady, bounded by the run's deadline. Reads and
 * writes are HostFile's; send and receive take a host struct msghdr whose buffers are guest memory.
 */
import { errno as lastErrno, libc } from '../../host/libc.js';
import { HostFile } from './host-file.js';
import { O, type FileKind } from './open-file.js';

export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_SEQPACKET = 5;
export const SOCK_NONBLOCK = O.NONBLOCK;
export const SOCK_CLOEXEC = O.CLOEXEC;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
/**
 * The MSG_ flags passed on to the host (OOB, PEEK, DONTROUTE, TRUNC, DONTWAIT, EOR, WAITALL, NOSIGNAL,
 * MORE, CMSG_CLOEXEC); the others (the error queue, zero-copy) have no meaning for a socketpair.
 */
const MSG_KNOWN = 0x1 | 0x2 | 0x4 | 0x20 | 0x40 | 0x80 | 0x100 | 0x4000 | 0x8000 | 0x40000000;
const POLLIN = 0x1;
const POLLOUT = 0x4;

export class SocketFile extends HostFile {
  override readonly kind: FileKind = 'socket';

  private constructor(hostFd: number, flags: number, readonly type: number) {
    super(hostFd, flags, { positioning: 'stream', mutable: true, hostNonblocking: true });
  }

  /**
   * A connected AF_UNIX pair of `type` (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET; the host refuses
   * others as Linux does), or -errno. `flags`: O_NONBLOCK.
   */
  static pair(type: number, flags: number, protocol: number): [SocketFile, SocketFile] | number {
    const fds = new Int32Array(2);
    if ((libc.socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol, fds) as number) < 0) return -lastErrno();
    // SOCK_RAW is a datagram socket in AF_UNIX.
    if (type === SOCK_RAW) type = SOCK_DGRAM;
    const status = O.RDWR | (flags & O.NONBLOCK);
    return [new SocketFile(fds[0]!, status, type), new SocketFile(fds[1]!, status, type)];
  }

  /** Buffered messages cannot be shared by forks: a program must not be frozen with a socket open. */
  override freeze(): null {
    return null;
  }

  /**
   * sendmsg(2) or recvmsg(2) with a host msghdr: bytes, or -errno. Blocks (in waitReady) unless
   * O_NONBLOCK or MSG_DONTWAIT. The host never raises SIGPIPE (MSG_NOSIGNAL): a send to a closed
   * peer is EPIPE.
   */
  transfer(direction: 'send' | 'recv', msg: Buffer, flags: number): number {
    const nonblocking = this.nonblocking || (flags & MSG_DONTWAIT) !== 0;
    const hostFlags = (flags & MSG_KNOWN) | MSG_DONTWAIT | (direction === 'send' ? MSG_NOSIGNAL : 0);
    return this.untilReady(direction === 'send' ? POLLOUT : POLLIN, () => {
      const n = Number(direction === 'send' ? libc.sendmsg(this.hostFd, msg, hostFlags) : libc.recvmsg(this.hostFd, msg, hostFlags));
      return n < 0 ? -lastErrno() : n;
    }, nonblocking);
  }
}
