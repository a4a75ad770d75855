/**
 * Every failure tskvm reports is a TskvmError with a stable `code` (`TSKVM_ERR_…`) that programs can
 * match on, and a message a person can act on. `details` carries structured context (guest address,
 * ioctl name, register dump…). The codes, all of them, are the keys of ERROR_CODES below: a code
 * that is not there does not compile.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

/** Each code and when it is given. */
export const ERROR_CODES = {
  // The machine: /dev/kvm and the host.
  TSKVM_ERR_KVM_MISSING: '/dev/kvm does not exist (no KVM on this machine)',
  TSKVM_ERR_KVM_PERMISSION: '/dev/kvm exists but this user may not open it',
  TSKVM_ERR_KVM_OPEN: '/dev/kvm could not be opened for another reason',
  TSKVM_ERR_KVM_API: 'the kernel speaks another KVM API version',
  TSKVM_ERR_KVM_CAPABILITY: 'the kernel lacks a KVM capability tskvm needs',
  TSKVM_ERR_KVM_IOCTL: 'a KVM ioctl failed (the message names it)',
  TSKVM_ERR_KVM_EXIT: 'KVM_RUN exited in a way no guest can cause (internal error, failed entry)',
  TSKVM_ERR_KVM_PROBE: 'the start-up probe of the platform saw something unexpected',
  TSKVM_ERR_HOST_MMAP: 'a host mmap failed',
  TSKVM_ERR_HOST_MEMORY: 'host memory for a VM could not be set up or given back',
  TSKVM_ERR_HOST_FD: 'a host file descriptor could not be duplicated for a request VM',
  TSKVM_ERR_HOST_SIGNAL: 'the request timer (signal, POSIX timer) could not be set up',
  TSKVM_ERR_INTERNAL: 'an exception in tskvm itself; the request failed and its fork was reset',
  // The program file.
  TSKVM_ERR_PROGRAM_NOT_FOUND: 'the program file cannot be read',
  TSKVM_ERR_PROGRAM_FETCH: 'a program or library URL could not be fetched',
  TSKVM_ERR_PROGRAM_CHECKSUM: "the program's bytes do not have the sha256 the library pins",
  TSKVM_ERR_ARCHIVE_MALFORMED: 'a program archive that is not a valid tar: a bad header or checksum, cut short, an entry type tskvm does not read, an absolute name or one with ".."',
  TSKVM_ERR_ARCHIVE_TOO_LARGE: "a program archive past a limit: its entries, an entry's size, a name's length, or what xz unpacks it to",
  TSKVM_ERR_ARCHIVE_CONTENTS: 'a program archive with no program, more than one, more than one storage program, or a program that is not an ELF',
  TSKVM_ERR_ARCHIVE_XZ: 'xz could not decompress a .tar.xz program: corrupt, cut short, over its memory or time limit, or xz is not installed',
  TSKVM_ERR_ELF_NOT_ELF: 'not an ELF file',
  TSKVM_ERR_ELF_MALFORMED: 'the ELF header is inconsistent',
  TSKVM_ERR_ELF_TRUNCATED: 'the file ends inside a header or segment',
  TSKVM_ERR_ELF_NOT_64BIT: 'a 32-bit ELF',
  TSKVM_ERR_ELF_NOT_X86_64: 'an ELF for another machine (the message names it)',
  TSKVM_ERR_ELF_NOT_EXECUTABLE: 'an ELF that is not an executable (an object file, a core dump)',
  TSKVM_ERR_ELF_NOT_LITTLE_ENDIAN: 'a big-endian ELF',
  TSKVM_ERR_ELF_BAD_INTERP: "a corrupt PT_INTERP (the dynamic loader's path): not NUL-ended, outside the file, not absolute",
  TSKVM_ERR_ELF_INTERP_NOT_FOUND: "the dynamic loader PT_INTERP names cannot be read in the program's file sandbox",
  TSKVM_ERR_ELF_BAD_INTERPRETER: 'the dynamic loader is not usable: not an ELF, itself dynamic, too large, or overlapping the program (details.cause: why)',
  TSKVM_ERR_ELF_BAD_PROGRAM_HEADERS: 'the program header table is out of range or malformed',
  TSKVM_ERR_ELF_NO_LOAD_SEGMENTS: 'no PT_LOAD segment',
  TSKVM_ERR_ELF_BAD_SEGMENT: 'a segment with impossible sizes, alignment or addresses',
  TSKVM_ERR_ELF_SEGMENTS_OVERLAP: 'two segments overlap in memory',
  TSKVM_ERR_ELF_SEGMENT_OUTSIDE_FILE: "a segment's bytes lie outside the file",
  TSKVM_ERR_ELF_ENTRY_OUTSIDE_SEGMENT: 'the entry point is in no executable segment',
  TSKVM_ERR_ELF_BAD_LIMITS: 'the ELF does not fit the limits given (memory, address space)',
  TSKVM_ERR_ELF_TOO_LARGE: 'the program does not fit in guest memory',
  TSKVM_ERR_ARGS_INVALID: 'an argument or environment string the guest cannot be given (a NUL inside)',
  TSKVM_ERR_ARGS_TOO_LARGE: 'arguments and environment do not fit on the initial stack',
  // Configuration.
  TSKVM_ERR_CONFIG: 'an invalid option',
  TSKVM_ERR_CONFIG_ALLOWED_PATH: 'an invalid allowed_paths entry',
  TSKVM_ERR_CONFIG_CWD: 'an invalid current_working_directory',
  TSKVM_ERR_LIBRARY: 'the library cannot be read, fetched or parsed, or has an invalid setting',
  TSKVM_ERR_LIBRARY_CHECKSUM: 'the library does not have the sha256 --library-sha256 pins',
  TSKVM_ERR_LIBRARY_UNTRUSTED: 'a library from plain http:// grants writable paths without a pin',
  // Starting a program.
  TSKVM_ERR_PROGRAM_INIT: 'the program exited or crashed before wait_for_requests()',
  TSKVM_ERR_PROGRAM_BOOT_TIMEOUT: 'the program did not reach wait_for_requests() within max_boot_time',
  TSKVM_ERR_PROGRAM_FREEZE: 'the program holds something forks cannot share when it freezes (a pipe)',
  TSKVM_ERR_PROGRAM_START: 'the server could not start the program (the message has why; retried later)',
  // A request: refused before it runs.
  TSKVM_ERR_REQUEST: 'an invalid request (no url, a bad header field, a field too long)',
  TSKVM_ERR_REQUEST_TOO_LARGE: 'the request body is larger than max_request_memory',
  TSKVM_ERR_QUEUE_FULL: 'max_queue requests already wait for a request VM',
  TSKVM_ERR_QUEUE_TIMEOUT: 'no request VM became free within queue_timeout',
  TSKVM_ERR_ABORTED: 'the request was cancelled (its client went away) before it ran',
  TSKVM_ERR_CLOSED: 'the program is closed or closing',
  TSKVM_ERR_WORKER_BUSY: "the worker thread was busy with other requests past the request's max_request_time",
  // A request: failed while it ran.
  TSKVM_ERR_GUEST_FAULT: 'the program crashed (CPU exception, signal, forbidden instruction)',
  TSKVM_ERR_GUEST_TIMEOUT: 'the request ran or waited past max_request_time',
  TSKVM_ERR_GUEST_EXIT: 'the program exited during a request',
  TSKVM_ERR_REQUEST_MEMORY: 'the request needed more than max_request_memory',
  TSKVM_ERR_NO_HANDLER: 'the program registered no handler for this kind of request',
  TSKVM_ERR_NO_RESPONSE: 'the handler returned without a response',
  TSKVM_ERR_BAD_RESPONSE: 'the response cannot be sent over HTTP (status, content type, header, body with 204/304)',
  TSKVM_ERR_LIVE_UPDATE: 'a live update could not hand the storage state over (on_live_update or on_live_restore failed, or the new program has no on_live_restore); the old program keeps serving',
  TSKVM_ERR_STREAM: 'a streamed response failed after its head was sent: its callback stalled, crashed or ran out of time (the connection is cut)',
  TSKVM_ERR_WORKER: 'the worker thread running the request died; the program keeps serving from new forks',
  TSKVM_ERR_WORKER_STUCK: 'the worker thread did not come back in time and was replaced',
  // Tools.
  TSKVM_ERR_BENCH: 'the benchmark harness could not run a case',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class TskvmError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'TskvmError';
    this.code = code;
    this.details = details;
  }
}

/** A program's bytes, or TSKVM_ERR_PROGRAM_NOT_FOUND naming the file and why. */
export async function readProgramFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    throw programNotReadable(path, e);
  }
}

/** readProgramFile, blocking: for the command line and Machine, which have nothing else to do. */
export function readProgramFileSync(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw programNotReadable(path, e);
  }
}

function programNotReadable(path: string, e: unknown): TskvmError {
  return new TskvmError('TSKVM_ERR_PROGRAM_NOT_FOUND', `cannot read program ${path}: ${(e as Error).message}`);
}
