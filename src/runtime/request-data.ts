/**
 * How a request is laid out in a fork's memory (docs/GUEST_ABI.md, "Structures"):
 * one block the host maps for the request, holding
 *
 *   [struct kvm_request, 104 B][kvm_request_header × n, 16 B each]
 *   [method\0][url\0][arg\0][content type\0][header fields\0…][body][slack]
 *
 * The strings are NUL-terminated and their lengths given as well. The block is
 * an ordinary anonymous mapping in the process's address space (so the
 * guest's own mmaps never overlap it) and every byte of it is written by the
 * host, so the reset undoes it like any host write.
 */
import { fillRandom } from '../host/random.js';
import type { GuestMemory } from '../paging/guest-memory.js';
import { pageAlignUp } from '../paging/layout.js';

export interface RequestInput {
  method: string;
  url: string;
  arg?: string;
  contentType?: string;
  /** Whole `Key: value` fields. */
  headers?: string[];
  body?: Uint8Array;
  /** info_flags bit 0: a warm-up request. */
  warmup?: boolean;
  /** A self-request this deep (a program's sys_fetch of a path); absent for a client's request. */
  selfDepth?: number;
}

/** struct kvm_request (104 bytes). */
const KVM_REQUEST = {
  size: 104, method: 0, url: 8, arg: 16, contentType: 24,
  methodLen: 32, urlLen: 34, argLen: 36, contentTypeLen: 38,
  content: 40, contentLen: 48, headers: 56, numHeaders: 64, infoFlags: 66, prng: 72, reserved: 88,
} as const;
const HEADER_ENTRY = 16;
/** Room after the request for the text the host passes to on_error. */
const EXCEPTION_TEXT_MAX = 1024;

export interface PlacedRequest {
  /** The block: [start, start+size). */
  start: number;
  size: number;
  /** Address of the struct kvm_request inside the block. */
  struct: number;
  method: number;
  url: number;
  arg: number;
  contentType: number;
  body: number;
  bodyLength: number;
  /** Where on_error's exception text goes. */
  exceptionText: number;
}

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Why a request's method, url, arg or header fields cannot be laid out as struct kvm_request says (16-bit lengths, `Key: value` fields), or null. */
export function requestProblem(method: string, url: string, arg: string, headers: readonly unknown[]): string | null {
  for (const field of headers) {
    if (typeof field !== 'string' || !field.includes(':') || /[\r\n\0]/.test(field)) return `invalid header field ${JSON.stringify(field)} (expected "Key: value")`;
  }
  for (const [key, value] of [['method', method], ['url', url], ['arg', arg]] as const) {
    if (Buffer.byteLength(value, 'latin1') > 0xffff) return `${key} longer than 65535 bytes`;
  }
  return null;
}

/** Bytes `blockSize` needs for `input` (before page rounding). */
export function requestBlockSize(input: RequestInput): number {
  const fields = input.headers ?? [];
  let strings = 0;
  for (const s of [input.method, input.url, input.arg ?? '', input.contentType ?? '', ...fields]) strings += Buffer.byteLength(s, 'latin1') + 1;
  return pageAlignUp(KVM_REQUEST.size + fields.length * HEADER_ENTRY + strings + 16 + (input.body?.length ?? 0) + EXCEPTION_TEXT_MAX);
}

/** Writes the request into the block at `start` (size from requestBlockSize). */
export function placeRequest(mem: GuestMemory, start: number, size: number, input: RequestInput): PlacedRequest {
  const fields = input.headers ?? [];
  let at = start + KVM_REQUEST.size + fields.length * HEADER_ENTRY;
  const putString = (s: string): [number, number] => {
    const addr = at;
    const len = putCString(mem, addr, latin1(s));
    at += len + 1;
    return [addr, len];
  };
  const [method, methodLen] = putString(input.method);
  const [url, urlLen] = putString(input.url);
  const [arg, argLen] = putString(input.arg ?? '');
  const [contentType, contentTypeLen] = putString(input.contentType ?? '');
  const headerTable = start + KVM_REQUEST.size;
  fields.forEach((field, i) => {
    const [addr, len] = putString(field);
    const e = headerTable + i * HEADER_ENTRY;
    mem.setU64(e, addr);
    mem.setU32(e + 8, Math.max(0, field.indexOf(':')));
    mem.setU32(e + 12, len);
  });
  at = Math.ceil(at / 16) * 16; // not `& ~15`: guest addresses pass 2^31
  const body = input.body && input.body.length > 0 ? at : 0;
  if (body) mem.put(body, input.body!);
  at += input.body?.length ?? 0;

  const s = start;
  mem.setU64(s + KVM_REQUEST.method, method);
  mem.setU64(s + KVM_REQUEST.url, url);
  mem.setU64(s + KVM_REQUEST.arg, arg);
  mem.setU64(s + KVM_REQUEST.contentType, contentType);
  mem.setU16(s + KVM_REQUEST.methodLen, methodLen);
  mem.setU16(s + KVM_REQUEST.urlLen, urlLen);
  mem.setU16(s + KVM_REQUEST.argLen, argLen);
  mem.setU16(s + KVM_REQUEST.contentTypeLen, contentTypeLen);
  mem.setU64(s + KVM_REQUEST.content, body);
  mem.setU64(s + KVM_REQUEST.contentLen, input.body?.length ?? 0);
  mem.setU64(s + KVM_REQUEST.headers, fields.length ? headerTable : 0);
  mem.setU16(s + KVM_REQUEST.numHeaders, fields.length);
  mem.setU16(s + KVM_REQUEST.infoFlags, input.warmup ? 1 : 0);
  mem.setU32(s + KVM_REQUEST.infoFlags + 2, 0);
  // A fresh seed for the guest's PRNG every request: forks of one snapshot must not share random streams.
  fillRandom(mem.write(s + KVM_REQUEST.prng, 16));
  mem.write(s + KVM_REQUEST.reserved, 16).fill(0);
  return { start, size, struct: s, method, url, arg, contentType, body, bodyLength: input.body?.length ?? 0, exceptionText: at };
}

/** Copies the struct kvm_request of a placed request to `to` (wait_for_requests_paused's argument). */
export function copyRequestStruct(mem: GuestMemory, placed: PlacedRequest, to: number): void {
  mem.put(to, mem.read(placed.struct, KVM_REQUEST.size).slice());
}

/** Writes on_error's exception text (NUL-terminated, cut to fit) into the block's slack. */
export function placeExceptionText(mem: GuestMemory, placed: PlacedRequest, text: string): number {
  putCString(mem, placed.exceptionText, Buffer.from(text, 'utf8').subarray(0, EXCEPTION_TEXT_MAX - 1));
  return placed.exceptionText;
}

/** `bytes` and a NUL at `addr`; returns the length without the NUL. */
function putCString(mem: GuestMemory, addr: number, bytes: Uint8Array): number {
  const into = mem.write(addr, bytes.length + 1);
  into.set(bytes);
  into[bytes.length] = 0;
  return bytes.length;
}
