/**
 * A program's file as the VMOD takes it (its lib/libkvm/archive.cpp): an ELF, or a tar archive, plain
 * or compressed with xz, that holds the program and maybe its storage program.
 *
 *   the bytes start with   it is
 *   \x7fELF                the program itself
 *   \xfd7zXZ\0             a .tar.xz: `xz -dc` (Debian's xz-utils) unpacks it, then as below
 *   a tar header           a .tar (a valid header checksum at byte 0, or a name ending in .tar,
 *                          .tar.xz or .txz, which makes a broken archive say so rather than
 *                          "not an ELF")
 *   anything else          handed on as an ELF, for parse-elf.ts to say what it is not
 *
 * In an archive, as in the VMOD, only entries with bytes count: the one whose name ends in
 * `storage` is the storage program, any other is the program. tskvm is stricter where the VMOD
 * would take the last of two: two storage entries are refused like two programs are.
 *
 * Archives come from anyone who can upload a program, so the reader trusts nothing: every header
 * is checksummed, every size is checked against what is there and against ARCHIVE_LIMITS, an entry
 * type it does not know is refused, and so is a name that is absolute or has a ".." (nothing is ever
 * written to disk by name, but a name like that is a sign of an archive made to attack something).
 * xz runs as a child process with a memory limit, a time limit, and is killed when its output
 * passes the size limit, so a small bomb costs at most that much.
 */
import { spawn } from 'node:child_process';
import { TskvmError } from '../errors.js';

export const ARCHIVE_LIMITS = {
  /** Bytes of the tar itself (what xz unpacks it to), and so of any entry: the largest program download. */
  bytes: 512 << 20,
  /** Headers, long-name and pax ones included. */
  entries: 1024,
  /** Bytes of an entry's name (a long name's or a pax path's), PATH_MAX. */
  name: 4096,
  /** Bytes of a pax extended header. */
  pax: 64 << 10,
  /** What xz may allocate to decompress (xz -9 needs 65 MiB). */
  xzMemory: '256MiB',
  xzSeconds: 60,
} as const;

export interface ProgramFiles {
  /** The program's ELF (the request program's, with storage). */
  program: Uint8Array;
  /** The storage program's ELF, from an archive entry whose name ends in `storage`. */
  storage?: Uint8Array;
}

const BLOCK = 512;
const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];
const XZ_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const ARCHIVE_NAME = /\.(tar|tar\.xz|txz)$/i;

/** The program (and storage program) in `file`; `source` names it in messages. */
export async function unpackProgram(file: Uint8Array, source: string): Promise<ProgramFiles> {
  if (startsWith(file, ELF_MAGIC)) return { program: file };
  if (startsWith(file, XZ_MAGIC)) return pickPrograms(readTar(await unxz(file, source), source), source);
  if (ARCHIVE_NAME.test(source) || (file.length >= BLOCK && checksumOk(file.subarray(0, BLOCK)))) return pickPrograms(readTar(file, source), source);
  return { program: file };
}

/** A regular file of a tar archive: its name and bytes (a view into the archive). */
export interface TarFile {
  name: string;
  data: Uint8Array;
}

/** The regular files of a tar archive (ustar, GNU long names, pax `path` and `size`), in order. */
export function readTar(tar: Uint8Array, source: string): TarFile[] {
  const malformed = (why: string): TskvmError => new TskvmError('TSKVM_ERR_ARCHIVE_MALFORMED', `${source} is not a valid tar archive: ${why}`);
  const files: TarFile[] = [];
  let at = 0;
  let headers = 0;
  // Set by a GNU long-name ('L') or pax ('x') header, for the entry that follows it.
  let longName: string | undefined;
  let paxPath: string | undefined;
  let paxSize: number | undefined;
  for (;;) {
    if (at + BLOCK > tar.length) throw malformed(at === tar.length ? 'it ends without its end-of-archive block' : `it ends inside the header at byte ${at}`);
    const header = tar.subarray(at, at + BLOCK);
    // The end: GNU tar writes two zero blocks and pads the record, none of which needs reading.
    if (header.every((b) => b === 0)) break;
    if (++headers > ARCHIVE_LIMITS.entries) throw tooLarge(source, `more than ${ARCHIVE_LIMITS.entries} entries`);
    if (!checksumOk(header)) throw malformed(`the header at byte ${at} has a wrong checksum`);
    const type = header[156] === 0 ? '0' : String.fromCharCode(header[156]!);
    // POSIX ustar ("ustar\0") may split a long name into a prefix; GNU's ("ustar  ") has times there.
    const ustar = text(header, 257, 6) === 'ustar';
    const prefix = ustar ? text(header, 345, 155) : '';
    const name = paxPath ?? longName ?? (prefix ? `${prefix}/` : '') + text(header, 0, 100);
    const size = paxSize ?? number(header, 124, 12, (): never => {
      throw malformed(`the size of ${JSON.stringify(name)} is not a number`);
    });
    if (size > ARCHIVE_LIMITS.bytes) throw tooLarge(source, `${JSON.stringify(name)} says it has ${size} bytes, more than ${ARCHIVE_LIMITS.bytes}`);
    const headerAt = at;
    const start = at + BLOCK;
    if (start + size > tar.length) throw malformed(`${JSON.stringify(name)} says it has ${size} bytes, but the archive ends ${tar.length - start} bytes after its header`);
    const data = tar.subarray(start, start + size);
    at = start + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'L') {
      if (size > ARCHIVE_LIMITS.name) throw tooLarge(source, `a long name of ${size} bytes`);
      longName = text(data, 0, data.length);
      continue;
    }
    if (type === 'x') {
      if (size > ARCHIVE_LIMITS.pax) throw tooLarge(source, `a pax header of ${size} bytes`);
      const pax = paxRecords(data, malformed, source);
      paxPath = pax.path ?? paxPath;
      paxSize = pax.size ?? paxSize;
      continue;
    }
    // A long link name, or pax settings for the whole archive: nothing a program is chosen by.
    if (type === 'K' || type === 'g') continue;
    longName = paxPath = paxSize = undefined;
    if (name === '') throw malformed(`the entry at byte ${headerAt} has no name`);
    if (name.startsWith('/') || name.split('/').includes('..')) throw malformed(`the entry ${JSON.stringify(name)} has an absolute name or one with ".."`);
    // Regular files ('7' is a contiguous one); links, devices, directories, FIFOs and volume labels hold no program.
    if (type === '0' || type === '7') files.push({ name, data });
    else if (!'123456V'.includes(type)) throw malformed(`the entry ${JSON.stringify(name)} has type '${type}', which tskvm does not read (files, links and directories only)`);
  }
  return files;
}

/** The VMOD's choice: of the entries with bytes, the one named …storage is the storage program, the other the program. */
function pickPrograms(files: TarFile[], source: string): ProgramFiles {
  const contents = (why: string): TskvmError => new TskvmError('TSKVM_ERR_ARCHIVE_CONTENTS', `${source}: ${why}`);
  const full = files.filter((f) => f.data.length > 0);
  const programs = full.filter((f) => !f.name.endsWith('storage'));
  const storages = full.filter((f) => f.name.endsWith('storage'));
  const names = (list: TarFile[]): string => list.map((f) => JSON.stringify(f.name)).join(', ');
  if (programs.length === 0) throw contents(`the archive holds no program (no file with bytes whose name does not end in "storage"${full.length ? `; it has ${names(full)}` : ''})`);
  if (programs.length > 1) throw contents(`the archive holds more than one program: ${names(programs)} (one, and maybe one whose name ends in "storage")`);
  if (storages.length > 1) throw contents(`the archive holds more than one storage program: ${names(storages)}`);
  const elf = (f: TarFile): Uint8Array => {
    if (!startsWith(f.data, ELF_MAGIC)) throw contents(`its entry ${JSON.stringify(f.name)} is not an ELF program`);
    // A copy: a view would carry the whole archive to the worker that boots it.
    return new Uint8Array(f.data);
  };
  return storages.length ? { program: elf(programs[0]!), storage: elf(storages[0]!) } : { program: elf(programs[0]!) };
}

/** `xz -dc`, bounded in memory, time and output. */
function unxz(input: Uint8Array, source: string): Promise<Buffer> {
  const xzError = (why: string): TskvmError => new TskvmError('TSKVM_ERR_ARCHIVE_XZ', `${source}: ${why}`);
  return new Promise((resolve, reject) => {
    const child = spawn('xz', ['--decompress', '--stdout', '--quiet', '--format=xz', `--memlimit-decompress=${ARCHIVE_LIMITS.xzMemory}`], { stdio: ['pipe', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let size = 0;
    let stderr = '';
    let settled = false;
    const settle = (error: TskvmError | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) {
        child.kill('SIGKILL');
        reject(error);
      } else {
        resolve(Buffer.concat(chunks, size));
      }
    };
    const timer = setTimeout(() => settle(xzError(`xz did not finish within ${ARCHIVE_LIMITS.xzSeconds} s`)), ARCHIVE_LIMITS.xzSeconds * 1000);
    child.on('error', (e) => settle(xzError(`cannot run xz (Debian's xz-utils) to decompress it: ${e.message}`)));
    child.stdout.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > ARCHIVE_LIMITS.bytes) settle(tooLarge(source, `it decompresses to more than ${ARCHIVE_LIMITS.bytes} bytes`));
      else chunks.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 1024) stderr += chunk.toString('utf8');
    });
    // xz stops reading a stream it found corrupt; its exit status says so, not the broken pipe.
    child.stdin.on('error', () => {});
    child.on('close', (code, signal) => {
      if (code === 0) settle(null);
      else settle(xzError(`xz could not decompress it: ${stderr.trim().replace(/^xz: \(stdin\): /, '') || `xz ended with ${code ?? signal}`}`));
    });
    child.stdin.end(input);
  });
}

function tooLarge(source: string, why: string): TskvmError {
  return new TskvmError('TSKVM_ERR_ARCHIVE_TOO_LARGE', `${source}: ${why}`);
}

function startsWith(bytes: Uint8Array, magic: number[]): boolean {
  return bytes.length >= magic.length && magic.every((b, i) => bytes[i] === b);
}

/** A header's checksum: the sum of its bytes with the checksum field as spaces (unsigned, or signed as old tars had it). */
function checksumOk(header: Uint8Array): boolean {
  const stored = number(header, 148, 8, () => null);
  if (stored === null) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : header[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

/** A NUL-terminated field as text. */
function text(bytes: Uint8Array, offset: number, length: number): string {
  const field = bytes.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return Buffer.from(field.subarray(0, end < 0 ? field.length : end)).toString('utf8');
}

/** A numeric field: octal digits ended by NUL or space, or GNU's base-256 (high bit set) for large values. */
function number<T>(bytes: Uint8Array, offset: number, length: number, bad: () => T): number | T {
  const field = bytes.subarray(offset, offset + length);
  if (field[0]! & 0x80) {
    let value = field[0]! & 0x7f;
    for (const b of field.subarray(1)) {
      value = value * 256 + b;
      // Past 2^53 a Number is no longer exact; anything that large is over every limit anyway.
      if (value > Number.MAX_SAFE_INTEGER) return Number.MAX_SAFE_INTEGER;
    }
    return value;
  }
  const digits = text(field, 0, field.length).replace(/^ +/, '').replace(/ +$/, '');
  return /^[0-7]+$/.test(digits) ? parseInt(digits, 8) : bad();
}

/** A pax extended header's `path` and `size` ("LEN key=value\n" records); other keys change nothing a program is chosen by. */
function paxRecords(data: Uint8Array, malformed: (why: string) => TskvmError, source: string): { path?: string; size?: number } {
  const out: { path?: string; size?: number } = {};
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const length = space > at ? Number(Buffer.from(data.subarray(at, space)).toString('latin1')) : NaN;
    if (!Number.isInteger(length) || length <= space - at || at + length > data.length || data[at + length - 1] !== 0x0a) throw malformed(`a pax header record at byte ${at} of its header is malformed`);
    const record = Buffer.from(data.subarray(space + 1, at + length - 1)).toString('utf8');
    const eq = record.indexOf('=');
    if (eq <= 0) throw malformed(`a pax header record has no key: ${JSON.stringify(record.slice(0, 40))}`);
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    if (key === 'path') {
      if (Buffer.byteLength(value) > ARCHIVE_LIMITS.name) throw tooLarge(source, `a pax path of ${Buffer.byteLength(value)} bytes`);
      out.path = value;
    } else if (key === 'size') {
      if (!/^[0-9]+$/.test(value)) throw malformed(`a pax size is not a number: ${JSON.stringify(value.slice(0, 40))}`);
      out.size = Number(value);
    }
    at += length;
  }
  return out;
}
