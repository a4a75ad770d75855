/**
 * Copies a parsed ELF image into guest memory.
 *
 * Guest memory is identity-mapped, so loading is a byte copy per segment: no mmap of
 * the file, no page-table edits. The pages a segment touches are zeroed first,
 * because the memory may have held something else (a previous program, a reused
 * memfd); then each segment's file bytes are copied, and the rest of its memory
 * image (.bss) is left zero:
 *
 *   pageDown(vaddr)   vaddr         vaddr+filesz        vaddr+memsz   pageUp(…)
 *        |  zero  |  file bytes       |   zero (.bss)      |   zero   |
 *
 * Zeroing every page before copying any segment matters when two segments share a
 * page: zeroing the second's page must not wipe the first's tail.
 */
import { TskvmError } from '../errors.js';
import { pageDown, pageUp, type ElfImage } from './parse-elf.js';

/** `memory` views guest-physical memory from guest address 0. */
/** Guest memory from address 0, as loadSegments writes it: a Uint8Array, or an adapter over GuestMemory. */
export interface SegmentMemory {
  readonly length: number;
  fill(value: number, start: number, end: number): unknown;
  set(data: Uint8Array, offset: number): unknown;
}

export function loadSegments(image: ElfImage, file: Uint8Array, memory: SegmentMemory): void {
  for (const segment of image.segments) {
    const end = segment.vaddr + segment.memsz;
    if (!(Number.isSafeInteger(segment.vaddr) && segment.vaddr >= 0 && end <= memory.length)) {
      throw new TskvmError('TSKVM_ERR_ELF_TOO_LARGE',
        `the program's segment [0x${segment.vaddr.toString(16)}, 0x${end.toString(16)}) does not fit ` +
        `in the guest's ${memory.length} bytes of memory; give the program more memory (max memory)`,
        { vaddr: segment.vaddr, memsz: segment.memsz, memorySize: memory.length });
    }
    const fileEnd = segment.filesz === 0 ? 0 : segment.fileOffset + segment.filesz;
    if (!(segment.filesz <= segment.memsz && fileEnd <= file.length)) {
      throw new TskvmError('TSKVM_ERR_ELF_SEGMENT_OUTSIDE_FILE',
        `a segment takes ${segment.filesz} bytes from file offset ${segment.fileOffset} but the file has ` +
        `${file.length} bytes; load the same file that was parsed`,
        { fileOffset: segment.fileOffset, filesz: segment.filesz, size: file.length });
    }
  }
  for (const segment of image.segments) {
    memory.fill(0, pageDown(segment.vaddr), Math.min(pageUp(segment.vaddr + segment.memsz), memory.length));
  }
  for (const segment of image.segments) {
    memory.set(file.subarray(segment.fileOffset, segment.fileOffset + segment.filesz), segment.vaddr);
  }
}
