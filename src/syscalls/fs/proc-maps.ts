/**
 * /proc/self/maps: the process's memory map, in Linux's format, made from the address-space
 * bookkeeping when the guest opens it. Runtimes read it to find their main thread's stack: glibc's
 * pthread_getattr_np does, and Rust's stack-overflow handler tells an overflow from another fault
 * by the guard page just below that stack.
 */
import { E } from '../../host/errno.js';
import { O } from '../open-files/open-file.js';
import { BufferFile } from '../open-files/memory-file.js';
import { Process } from '../process.js';
import { PROT_EXEC, PROT_READ, PROT_WRITE } from '../address-space.js';

/** The paths that name it: this process's, or one of its threads'. */
const MAPS_PATH = new RegExp(`^/proc/(self|thread-self|${Process.PID}|${Process.PID}/task/\\d+)/maps$`);

const hex = (n: number, width: number): string => n.toString(16).padStart(width, '0');

/** The map as Linux prints it: one line per mapping, the guard below the stack left out (Linux shows no gap). */
export function procMaps(p: Process): string {
  return p.mm.list().filter((m) => m.label !== 'guard').map((m) => {
    const perms = `${m.prot & PROT_READ ? 'r' : '-'}${m.prot & PROT_WRITE ? 'w' : '-'}${m.prot & PROT_EXEC ? 'x' : '-'}p`;
    const name = m.label === 'image' ? ` ${p.paths.exeGuestPath}` : m.label === 'stack' ? ' [stack]' : '';
    const line = `${hex(m.start, 8)}-${hex(m.end, 8)} ${perms} 00000000 00:00 0`;
    return name ? `${line.padEnd(73)}${name}\n` : `${line}\n`;
  }).join('');
}

/** An fd for /proc/self/maps when `path` names it (read-only: EACCES otherwise), or null for any other path. */
export function openProcFile(p: Process, path: string, flags: number): number | null {
  if (!path.startsWith('/proc/') && !p.paths.cwd.startsWith('/proc')) return null;
  if (!MAPS_PATH.test(p.paths.lexical(path))) return null;
  if ((flags & O.ACCMODE) !== O.RDONLY) return -E.EACCES; // as Linux, for a write open of maps
  return p.files.install(new BufferFile(Buffer.from(procMaps(p))), 0, (flags & O.CLOEXEC) !== 0);
}
