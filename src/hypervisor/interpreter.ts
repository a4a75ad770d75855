/**
 * The dynamic loader of a dynamically linked program: the ELF its PT_INTERP names
 * (/lib64/ld-linux-x86-64.so.2), read through the guest's own file view and placed
 * where Linux's exec would put it, so that the loader can map the program's
 * libraries itself with the guest's syscalls.
 *
 *   USER_START  program   brk→ …        ← libraries (mmap, top-down)   [loader]  guard  stack
 *
 * The loader goes at the top of the mmap area, right below the stack's guard, as
 * Linux puts it at mmap_base: the program's break grows up towards it and the
 * libraries the loader maps go below it. It is found the same way a guest's open()
 * would find it (path-policy.ts): a loader outside the sandbox is not run, and the
 * guest could not read its libraries anyway.
 */
import fs from 'node:fs';
import { TskvmError, type ErrorCode } from '../errors.js';
import { parseElf, pageDown, type ElfImage, type ElfLimits } from '../elf/parse-elf.js';
import { errno as lastErrno, libc } from '../host/libc.js';
import { errnoName } from '../host/errno.js';
import { O } from '../syscalls/open-files/open-file.js';
import type { AllowedPath, PathPolicy } from '../syscalls/path-policy.js';

/**
 * Where a Linux system keeps its dynamic loader and shared libraries, and the loader's cache of
 * them: what a dynamically linked program needs to read before main() (read-only).
 */
export const SYSTEM_LIBRARY_PATHS = ['/lib', '/lib64', '/usr/lib', '/usr/lib64', '/usr/local/lib', '/etc/ld.so.cache'];

/** SYSTEM_LIBRARY_PATHS that exist here, as allowed paths (read-only, each at its own path). */
export function systemLibraryPaths(): AllowedPath[] {
  return SYSTEM_LIBRARY_PATHS.filter((path) => fs.existsSync(path)).map((path) => ({ real: path }));
}

/** ld.so is ~250 KiB; anything past this is not a loader, and reading it would only cost memory. */
export const MAX_INTERPRETER_BYTES = 64 << 20;

export interface Interpreter {
  image: ElfImage;
  file: Uint8Array;
}

const hex = (n: number): string => '0x' + n.toString(16);

/**
 * Reads and places the loader `program` names. `top` is the first address it may not reach (the
 * stack's guard), `limits.minAddress` the lowest it may use.
 */
export function loadInterpreter(program: ElfImage, paths: PathPolicy, limits: Pick<ElfLimits, 'minAddress'> & { top: number }, source: string): Interpreter {
  const path = program.interpreter!;
  const file = readInterpreter(path, paths, source);
  const bad = (cause: ErrorCode | 'TSKVM_ERR_ELF_DYNAMIC', why: string, details: Record<string, unknown> = {}): never => {
    throw new TskvmError('TSKVM_ERR_ELF_BAD_INTERPRETER', `${source} needs the dynamic loader ${path}, which ${why}`, { interpreter: path, cause, ...details });
  };
  const parse = (pieBase: number, minAddress: number, maxAddress: number): ElfImage => {
    try {
      return parseElf(file, { minAddress, maxAddress, pieBase }, path);
    } catch (e) {
      if (!(e instanceof TskvmError)) throw e;
      return bad(e.code, `cannot be loaded: ${e.message}`, { inner: e.details });
    }
  };
  // Its size and kind first, at bias 0, then where it goes.
  const probe = parse(0, 0, 2 ** 47);
  if (probe.interpreter !== null) {
    bad('TSKVM_ERR_ELF_DYNAMIC', `names a loader of its own (${probe.interpreter}); a loader must be statically linked`);
  }
  const span = probe.end - probe.start;
  const base = probe.kind === 'static-pie' ? pageDown(limits.top - span) - probe.start : 0;
  if (base < 0 || base + probe.start < limits.minAddress) {
    bad('TSKVM_ERR_ELF_TOO_LARGE', `needs ${span} bytes of memory, more than the guest has room for; give the program more memory (max memory)`, { span });
  }
  const image = parse(base, limits.minAddress, limits.top);
  if (image.start < program.end && program.start < image.end) {
    bad('TSKVM_ERR_ELF_SEGMENTS_OVERLAP',
      `would occupy [${hex(image.start)}, ${hex(image.end)}), overlapping the program's [${hex(program.start)}, ${hex(program.end)})`,
      { interpreterRange: [image.start, image.end], programRange: [program.start, program.end] });
  }
  return { image, file };
}

/** The loader's bytes, opened as the guest would open it: a regular file, within MAX_INTERPRETER_BYTES. */
function readInterpreter(path: string, paths: PathPolicy, source: string): Uint8Array {
  const notFound = (why: string, details: Record<string, unknown> = {}): never => {
    throw new TskvmError('TSKVM_ERR_ELF_INTERP_NOT_FOUND',
      `${source} is dynamically linked and needs its loader ${path}, which ${why}; allow the system's ` +
      'libraries (`tskvm run` does unless --no-system-libs; elsewhere add /lib, /lib64, /usr/lib and ' +
      '/etc/ld.so.cache to allowed_paths), or build the program with `gcc -static`', { interpreter: path, ...details });
  };
  const entry = paths.resolve(path, 'read');
  if (typeof entry === 'number') return notFound(`the program may not read (${errnoName(-entry)})`, { errno: -entry });
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO put there must not hang the start.
    fd = libc.openat(entry.dir, entry.name, O.RDONLY | O.NONBLOCK | O.CLOEXEC, 0) as number;
    if (fd < 0) return notFound(`cannot be opened (${errnoName(lastErrno())})`);
  } finally {
    entry.release();
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) {
      throw new TskvmError('TSKVM_ERR_ELF_BAD_INTERPRETER', `${source} needs the dynamic loader ${path}, which is not a regular file`,
        { interpreter: path, cause: 'TSKVM_ERR_ELF_NOT_ELF' });
    }
    if (st.size > MAX_INTERPRETER_BYTES) {
      throw new TskvmError('TSKVM_ERR_ELF_BAD_INTERPRETER',
        `${source} needs the dynamic loader ${path}, which is ${st.size} bytes, more than the ${MAX_INTERPRETER_BYTES} a loader may have`,
        { interpreter: path, cause: 'TSKVM_ERR_ELF_TOO_LARGE', size: st.size });
    }
    const bytes = Buffer.alloc(st.size);
    let got = 0;
    while (got < bytes.length) {
      const n = fs.readSync(fd, bytes, got, bytes.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return bytes.subarray(0, got);
  } finally {
    libc.close(fd);
  }
}
