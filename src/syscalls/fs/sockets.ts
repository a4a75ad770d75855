/**
 * Sockets, as far as a guest without a network has them: socketpair(AF_UNIX) and the calls on its
 * ends (send, recv and their msghdr forms, shutdown, getsockname, getpeername, some socket options); reads and writes are
 * io.ts's. Data moves between the host socket and guest memory directly: a host struct msghdr whose
 * iovecs point into guest RAM, so datagram and SEQPACKET boundaries are the host's.
 *
 * The guest can name no socket (there is no bind or connect), so a datagram sent to an address is
 * refused (ENOENT for a path, ECONNREFUSED for an abstract name), and no address ever reaches the host. Control messages are not carried
 * (EINVAL): SCM_RIGHTS would hand host fds across.
 */
import { E } from '../../host/errno.js';
import { addressOf, errno as lastErrno, libc } from '../../host/libc.js';
import { mayPark } from '../deadline.js';
import { brokenPipe } from '../signal.js';
import { AF_UNIX, MSG_DONTWAIT, MSG_NOSIGNAL, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_SEQPACKET, SOCK_STREAM, SocketFile } from '../open-files/socket-file.js';
import type { Process } from '../process.js';
import type { SyscallDef } from '../syscall.js';
import { inGuest, installNew, int, ioLength, IOV_MAX, iovecSegments, uint } from './args.js';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_TYPE_MASK = 0xf;
const MSG_PEEK = 0x2;
const MSG_WAITALL = 0x100;
/** sizeof(struct msghdr) on x86-64, and its fields' offsets. */
const MSGHDR = { size: 56, name: 0, namelen: 8, iov: 16, iovlen: 24, control: 32, controllen: 40, flags: 48 } as const;
/** sizeof(struct sockaddr_storage): the largest address a call copies. */
const SOCKADDR_MAX = 128;
/** sizeof(struct cmsghdr): less control data than this holds no message. */
const CMSGHDR_SIZE = 16;
const SUN_PATH = 2;
const SOCKADDR_UN_SIZE = 110;

type Segment = { addr: number; len: number };

function socketFor(p: Process, fd: number): SocketFile | number {
  const file = p.files.get(fd);
  if (!file) return -E.EBADF;
  return file instanceof SocketFile ? file : -E.ENOTSOCK;
}

function socketpair(p: Process, domain: number, type: number, protocol: number, svAddr: number): number {
  if (type & ~SOCK_TYPE_MASK & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) return -E.EINVAL;
  // Internet sockets exist in Linux but come in no pairs; tskvm has no other family.
  if (domain === AF_INET || domain === AF_INET6) return -E.EOPNOTSUPP;
  if (domain !== AF_UNIX) return -E.EAFNOSUPPORT;
  if (!inGuest(p, svAddr, 8)) return -E.EFAULT;
  const pair = SocketFile.pair(type & SOCK_TYPE_MASK, type & SOCK_NONBLOCK, protocol);
  if (typeof pair === 'number') return pair;
  const cloexec = (type & SOCK_CLOEXEC) !== 0;
  const first = installNew(p, pair[0], cloexec);
  if (first < 0) {
    pair[1].close();
    return first;
  }
  const second = installNew(p, pair[1], cloexec);
  if (second < 0) {
    p.files.close(first);
    return second;
  }
  p.mem.setI32(svAddr, first);
  p.mem.setI32(svAddr + 4, second);
  return 0;
}

/**
 * Where a send may go: a socketpair's end is connected, so an address is refused as Linux refuses it
 * (a stream: EISCONN; a SEQPACKET socket ignores it), and a datagram to any address finds no socket.
 */
function destinationError(p: Process, sock: SocketFile, addr: number, len: number): number {
  if (addr === 0 || len === 0) return 0;
  if (len < 0 || len > SOCKADDR_MAX) return -E.EINVAL;
  if (!inGuest(p, addr, len)) return -E.EFAULT;
  if (sock.type === SOCK_STREAM) return -E.EISCONN;
  if (sock.type === SOCK_SEQPACKET) return 0;
  if (len <= SUN_PATH || len > SOCKADDR_UN_SIZE || p.mem.u16(addr) !== AF_UNIX) return -E.EINVAL;
  // A path names no socket the guest can see; an abstract name (a leading NUL) has no listener.
  return p.mem.u8(addr + SUN_PATH) === 0 ? -E.ECONNREFUSED : -E.ENOENT;
}

/**
 * Sends or receives through `segments` of guest memory: bytes moved, or -errno. A blocking send on a
 * stream sends it all, as does a receive with MSG_WAITALL (short at the end of the stream); either
 * goes on where the host stopped, waiting in between.
 */
function transfer(p: Process, sock: SocketFile, direction: 'send' | 'recv', segments: Segment[], flags: number): { n: number; flags: number } {
  const blocking = !sock.nonblocking && !(flags & MSG_DONTWAIT);
  const whole = blocking && sock.type === SOCK_STREAM && (direction === 'send' || (flags & MSG_WAITALL && !(flags & MSG_PEEK)));
  let done = 0;
  let rest = segments;
  for (;;) {
    const iov = Buffer.alloc(Math.max(1, rest.length) * 16);
    rest.forEach(({ addr, len }, i) => {
      iov.writeBigUInt64LE(p.mem.hostAddress(addr, len), i * 16);
      iov.writeBigUInt64LE(BigInt(len), i * 16 + 8);
    });
    const msg = Buffer.alloc(MSGHDR.size);
    msg.writeBigUInt64LE(addressOf(iov), MSGHDR.iov);
    msg.writeBigUInt64LE(BigInt(rest.length), MSGHDR.iovlen);
    // Once some has moved, a thread that would park must not: its call would run again and move it twice.
    const n = sock.transfer(direction, msg, done > 0 && mayPark() ? flags | MSG_DONTWAIT : flags);
    if (n < 0) return { n: done > 0 ? done : n, flags: 0 };
    if (direction === 'recv') recordReceived(p, rest, n);
    done += n;
    rest = advance(rest, n);
    if (!whole || n === 0 || rest.length === 0) return { n: done, flags: msg.readInt32LE(MSGHDR.flags) };
  }
}

/** The host wrote `n` bytes (or more, for a truncated datagram) across the segments. */
function recordReceived(p: Process, segments: Segment[], n: number): void {
  for (const { addr, len } of segments) {
    if (n <= 0) break;
    p.mem.recordWrite(addr, Math.min(len, n));
    n -= len;
  }
}

/** The segments after the first `n` bytes. */
function advance(segments: Segment[], n: number): Segment[] {
  const rest: Segment[] = [];
  for (const { addr, len } of segments) {
    if (n >= len) {
      n -= len;
      continue;
    }
    rest.push({ addr: addr + n, len: len - n });
    n = 0;
  }
  return rest;
}

/**
 * An address for the guest (Linux's move_addr_to_user): a socketpair's ends are unnamed, so after a
 * receive the address is empty (length 0); getsockname and getpeername give the host's answer.
 */
function putAddress(p: Process, addr: number, lenAddr: number, address: Uint8Array): number {
  if (!inGuest(p, lenAddr, 4)) return -E.EFAULT;
  const room = p.mem.i32(lenAddr);
  if (room < 0) return -E.EINVAL;
  const n = Math.min(room, address.length);
  if (n > 0) {
    if (!inGuest(p, addr, n)) return -E.EFAULT;
    p.mem.put(addr, address.subarray(0, n));
  }
  p.mem.setI32(lenAddr, address.length);
  return 0;
}

function sendto(p: Process, fd: number, buf: number, len: number, flags: number, addr: number, addrLen: number): number {
  const n = ioLength(p, buf, len);
  if (n < 0) return n;
  const sock = socketFor(p, fd);
  if (typeof sock === 'number') return sock;
  const refused = destinationError(p, sock, addr, addrLen);
  if (refused) return refused;
  return brokenPipe(p, transfer(p, sock, 'send', n > 0 ? [{ addr: buf, len: n }] : [], flags).n, (flags & MSG_NOSIGNAL) !== 0);
}

function recvfrom(p: Process, fd: number, buf: number, len: number, flags: number, addr: number, addrLenAddr: number): number {
  const n = ioLength(p, buf, len);
  if (n < 0) return n;
  const sock = socketFor(p, fd);
  if (typeof sock === 'number') return sock;
  const got = transfer(p, sock, 'recv', n > 0 ? [{ addr: buf, len: n }] : [], flags).n;
  if (got < 0 || addr === 0) return got;
  return putAddress(p, addr, addrLenAddr, new Uint8Array(0)) || got;
}

/** A guest struct msghdr's fields, with its iovecs checked (Linux's copy_msghdr_from_user and import_iovec). */
function guestMsghdr(p: Process, msgAddr: number): { name: number; nameLen: number; segments: Segment[]; control: number; controlLen: number } | number {
  if (!inGuest(p, msgAddr, MSGHDR.size)) return -E.EFAULT;
  const nameLen = p.mem.i32(msgAddr + MSGHDR.namelen);
  if (nameLen < 0) return -E.EINVAL;
  const iovAddr = p.mem.u64(msgAddr + MSGHDR.iov);
  const count = p.mem.u64(msgAddr + MSGHDR.iovlen);
  if (count > IOV_MAX) return -E.EMSGSIZE;
  if (count > 0 && !inGuest(p, iovAddr, count * 16)) return -E.EFAULT;
  const segments = iovecSegments(p, iovAddr, count);
  if (typeof segments === 'number') return segments;
  return {
    name: p.mem.u64(msgAddr + MSGHDR.name), nameLen: Math.min(nameLen, SOCKADDR_MAX), segments,
    control: p.mem.u64(msgAddr + MSGHDR.control), controlLen: p.mem.u64(msgAddr + MSGHDR.controllen),
  };
}

function sendmsg(p: Process, fd: number, msgAddr: number, flags: number): number {
  const sock = socketFor(p, fd);
  if (typeof sock === 'number') return sock;
  const msg = guestMsghdr(p, msgAddr);
  if (typeof msg === 'number') return msg;
  if (msg.control !== 0 && msg.controlLen >= CMSGHDR_SIZE) return -E.EINVAL;
  const refused = destinationError(p, sock, msg.name, msg.nameLen);
  if (refused) return refused;
  return brokenPipe(p, transfer(p, sock, 'send', msg.segments, flags).n, (flags & MSG_NOSIGNAL) !== 0);
}

function recvmsg(p: Process, fd: number, msgAddr: number, flags: number): number {
  const sock = socketFor(p, fd);
  if (typeof sock === 'number') return sock;
  const msg = guestMsghdr(p, msgAddr);
  if (typeof msg === 'number') return msg;
  const got = transfer(p, sock, 'recv', msg.segments, flags);
  if (got.n < 0) return got.n;
  if (msg.name !== 0) p.mem.setI32(msgAddr + MSGHDR.namelen, 0);
  p.mem.setU64(msgAddr + MSGHDR.controllen, 0);
  p.mem.setI32(msgAddr + MSGHDR.flags, got.flags);
  return got.n;
}

function sockName(p: Process, fd: number, addr: number, lenAddr: number, peer: boolean): number {
  const sock = socketFor(p, fd);
  if (typeof sock === 'number') return sock;
  const address = Buffer.alloc(SOCKADDR_MAX);
  const len = new Uint32Array([SOCKADDR_MAX]);
  if ((peer ? libc.getpeername : libc.getsockname)(sock.hostFd, address, len) < 0) return -lastErrno();
  return putAddress(p, addr, lenAddr, address.subarray(0, len[0]!));
}

const SOL_SOCKET = 1;
/**
 * The socket options a socket pair answers, all ints, asked of the host: its type, domain, protocol,
 * pending error, whether it listens, and its buffer sizes and low-water marks, which it may also
 * set (the host caps the sizes, whoever runs tskvm). Others are ENOPROTOOPT (SO_PASSCRED would bring
 * control messages, SO_PEERCRED the host's pid and uid).
 */
const SO_GET = new Set([3, 4, 7, 8, 18, 19, 30, 38, 39]); // TYPE ERROR SNDBUF RCVBUF RCVLOWAT SNDLOWAT ACCEPTCONN PROTOCOL DOMAIN
const SO_SET = new Set([7, 8, 18]); // SNDBUF RCVBUF RCVLOWAT

/** getsockopt(2) and setsockopt(2) at SOL_SOCKET; a socket pair has no options at other levels (EOPNOTSUPP). */
function sockopt(p: Process, fd: number, level: number, name: number, value: number, len: number, set: boolean): number {
  if (set && len < 0) return -E.EINVAL;
  const sock = socketFor(p, fd);
  if (typeof sock === 'number') return sock;
  if (level !== SOL_SOCKET) return -E.EOPNOTSUPP;
  if (set) {
    if (len < 4) return -E.EINVAL;
    if (!inGuest(p, value, 4)) return -E.EFAULT;
    if (!SO_SET.has(name)) return -E.ENOPROTOOPT;
    return libc.setsockopt(sock.hostFd, level, name, Buffer.from(p.mem.read(value, 4)), 4) < 0 ? -lastErrno() : 0;
  }
  if (!inGuest(p, len, 4)) return -E.EFAULT;
  const room = p.mem.i32(len);
  if (room < 0) return -E.EINVAL;
  if (!SO_GET.has(name)) return -E.ENOPROTOOPT;
  const answer = Buffer.alloc(4);
  if (libc.getsockopt(sock.hostFd, level, name, answer, new Uint32Array([4])) < 0) return -lastErrno();
  return putAddress(p, value, len, answer.subarray(0, Math.min(room, 4))) || 0;
}

function shutdown(p: Process, fd: number, how: number): number {
  const sock = socketFor(p, fd);
  if (typeof sock === 'number') return sock;
  return libc.shutdown(sock.hostFd, how) < 0 ? -lastErrno() : 0;
}

export const socketSyscalls: SyscallDef[] = [
  { nr: 53, name: 'socketpair', args: ['sockdomain', 'socktype', 'int', 'ptr'], handler: (p, a) => socketpair(p, int(a[0]!), int(a[1]!), int(a[2]!), a[3]!) },
  { nr: 44, name: 'sendto', args: ['fd', 'inbuf', 'size', 'msgflags', 'ptr', 'int'], handler: (p, a) => sendto(p, int(a[0]!), a[1]!, a[2]!, uint(a[3]!), a[4]!, int(a[5]!)) },
  { nr: 45, name: 'recvfrom', args: ['fd', 'outbuf', 'size', 'msgflags', 'ptr', 'ptr'], handler: (p, a) => recvfrom(p, int(a[0]!), a[1]!, a[2]!, uint(a[3]!), a[4]!, a[5]!) },
  { nr: 46, name: 'sendmsg', args: ['fd', 'ptr', 'msgflags'], handler: (p, a) => sendmsg(p, int(a[0]!), a[1]!, uint(a[2]!)) },
  { nr: 47, name: 'recvmsg', args: ['fd', 'ptr', 'msgflags'], handler: (p, a) => recvmsg(p, int(a[0]!), a[1]!, uint(a[2]!)) },
  { nr: 48, name: 'shutdown', args: ['fd', 'shuthow'], handler: (p, a) => shutdown(p, int(a[0]!), int(a[1]!)) },
  { nr: 55, name: 'getsockopt', args: ['fd', 'int', 'int', 'ptr', 'ptr'], handler: (p, a) => sockopt(p, int(a[0]!), int(a[1]!), int(a[2]!), a[3]!, a[4]!, false) },
  { nr: 54, name: 'setsockopt', args: ['fd', 'int', 'int', 'ptr', 'int'], handler: (p, a) => sockopt(p, int(a[0]!), int(a[1]!), int(a[2]!), a[3]!, int(a[4]!), true) },
  { nr: 51, name: 'getsockname', args: ['fd', 'ptr', 'ptr'], handler: (p, a) => sockName(p, int(a[0]!), a[1]!, a[2]!, false) },
  { nr: 52, name: 'getpeername', args: ['fd', 'ptr', 'ptr'], handler: (p, a) => sockName(p, int(a[0]!), a[1]!, a[2]!, true) },
];
