/**
 * Files that live in tskvm, with no host fd: where a server's or a test's output goes, and a request
 * body served as stdin. They cost no host resource, so request VMs can each have their own.
 */
import type { FrozenFile } from './frozen-file.js';
import { EMPTY, O, OpenFile, type FileKind, type FileStat } from './open-file.js';

const S_IFIFO = 0o010000;
let nextSyntheticIno = 1n;

/** A stat for files that live in tskvm: a FIFO owned by the host user, like a pipe. */
function pipeStat(ino: bigint, createdNs: bigint): FileStat {
  return {
    dev: 0xcn, ino, nlink: 1n, mode: BigInt(S_IFIFO | 0o600),
    uid: BigInt(process.getuid?.() ?? 0), gid: BigInt(process.getgid?.() ?? 0), rdev: 0n,
    size: 0n, blksize: 4096n, blocks: 0n,
    atimeNs: createdNs, mtimeNs: createdNs, ctimeNs: createdNs, birthtimeNs: 0n,
  };
}

/** Files with no host fd behind them: a write-only sink, a read-only buffer. */
abstract class MemoryFile extends OpenFile {
  private readonly ino = nextSyntheticIno++;
  private readonly createdNs = BigInt(Date.now()) * 1_000_000n;
  override stat(): FileStat | number {
    return pipeStat(this.ino, this.createdNs);
  }
  override close(): void {}
}

/**
 * Output collected by a callback (a server's stdout/stderr log, a test). The
 * callback gets a copy of each write; it may return a negative errno to refuse
 * it (e.g. -EFBIG past an output limit).
 */
export class SinkFile extends MemoryFile {
  readonly kind: FileKind = 'sink';
  /** Which output this is ('stdout', 'stderr'): a frozen sink is rebuilt from its name. */
  readonly name: string;
  private readonly onWrite: (bytes: Uint8Array) => number | void;

  constructor(onWrite: (bytes: Uint8Array) => number | void, name = 'output') {
    super(O.WRONLY);
    this.onWrite = onWrite;
    this.name = name;
  }

  override freeze(): FrozenFile {
    return { type: 'sink', name: this.name };
  }

  override writeFrom(from: Uint8Array): number {
    const result = this.onWrite(from.slice());
    return typeof result === 'number' && result < 0 ? result : from.length;
  }
}

/** Input served from a buffer (a request body as stdin); end of file after it. */
export class BufferFile extends MemoryFile {
  readonly kind: FileKind = 'buffer';
  private readonly data: Uint8Array;
  private position = 0;

  constructor(data: Uint8Array) {
    super(O.RDONLY);
    this.data = data;
  }

  override readInto(into: Uint8Array): number {
    const n = Math.min(into.length, this.data.length - this.position);
    into.set(this.data.subarray(this.position, this.position + n));
    this.position += n;
    return n;
  }

  override available(): number {
    return this.data.length - this.position;
  }
  override freeze(): FrozenFile {
    return { type: 'buffer', data: this.data.slice(), state: this.position };
  }
  override saveState(): unknown {
    return this.position;
  }
  override restoreState(state: unknown): void {
    this.position = state as number;
  }
}

/** stdin that is at end of file at once (like `< /dev/null`). */
export class EmptyFile extends BufferFile {
  constructor() {
    super(EMPTY);
  }
}
