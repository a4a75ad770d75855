/**
 * GDT, TSS and IDT, in the Linux selector layout. PVM requires user CS/SS to be
 * exactly Linux's __USER_CS (0x33) and __USER_DS (0x2b)
 * (docs/PLATFORMS.md, "What differs, and where tskvm's code cares").
 *
 *   GDT   0x08 kernel code32 (unused)  0x10 kernel code64  0x18 kernel data
 *         0x23 user code32   0x2b user data   0x33 user code64   0x40 TSS (16 bytes)
 *   STAR  = 0x23 << 48 | 0x10 << 32: syscall enters with CS 0x10, sysret returns to 0x33/0x2b
 *   TSS   rsp0 and IST1 = top of the exception stack; an I/O permission bitmap that
 *         lets ring 3 use exactly ports 0 (hypercalls) and 1 (the syscall stub), 32 bits wide:
 *         `out` from ring 3 is allowed by the bitmap, not by IOPL (PVM forces IOPL 0)
 *   IDT   vectors 0–31 → a 16-byte stub each (stubs.ts), ring-0 interrupt gates on IST1 (DPL 3 for #BP, #OF)
 */
import { EXCEPTION_STACK_TOP, GDT_ADDR, IDT_ADDR, PAGE, PORT_HYPERCALL, PORT_SYSCALL, TSS_ADDR } from './layout.js';
import { exceptionStubAddress } from './stubs.js';

export const SELECTOR = {
  KERNEL_CS: 0x10, KERNEL_DS: 0x18, USER_CS32: 0x23, USER_DS: 0x2b, USER_CS: 0x33, TSS: 0x40,
} as const;
export const GDT_LIMIT = 10 * 8 - 1;
export const IDT_LIMIT = 256 * 16 - 1;
const IO_BITMAP_OFFSET = 0x68;
const IO_BITMAP_BYTES = 32; // ports 0–255; higher ports lie beyond the TSS limit and always fault
export const TSS_LIMIT = IO_BITMAP_OFFSET + IO_BITMAP_BYTES; // + the terminating 0xff byte the CPU may read
export const STAR_VALUE = (BigInt(SELECTOR.USER_CS32) << 48n) | (BigInt(SELECTOR.KERNEL_CS) << 32n);

export function writeDescriptorTables(memory: Uint8Array): void {
  const view = new DataView(memory.buffer, memory.byteOffset, memory.byteLength);
  memory.fill(0, GDT_ADDR, IDT_ADDR + PAGE);

  // Access bytes carry the "accessed" bit already set, so the CPU never writes to the GDT.
  const gdt = [
    0n,
    0x00cf9b000000ffffn, // 0x08 kernel code32
    0x00af9b000000ffffn, // 0x10 kernel code64 (L=1)
    0x00cf93000000ffffn, // 0x18 kernel data
    0x00cffb000000ffffn, // 0x23 user code32
    0x00cff3000000ffffn, // 0x2b user data
    0x00affb000000ffffn, // 0x33 user code64 (L=1, DPL 3)
    0n,
  ];
  gdt.forEach((d, i) => view.setBigUint64(GDT_ADDR + i * 8, d, true));
  const tss = BigInt(TSS_ADDR);
  const tssLow = BigInt(TSS_LIMIT) | ((tss & 0xffffffn) << 16n) | (0x8bn << 40n) | (((tss >> 24n) & 0xffn) << 56n);
  view.setBigUint64(GDT_ADDR + 8 * 8, tssLow, true); // 0x40: 64-bit TSS, busy
  view.setBigUint64(GDT_ADDR + 9 * 8, tss >> 32n, true);

  view.setBigUint64(TSS_ADDR + 4, BigInt(EXCEPTION_STACK_TOP), true); // rsp0
  view.setBigUint64(TSS_ADDR + 0x24, BigInt(EXCEPTION_STACK_TOP), true); // ist1
  view.setUint16(TSS_ADDR + 0x66, IO_BITMAP_OFFSET, true);
  memory.fill(0xff, TSS_ADDR + IO_BITMAP_OFFSET, TSS_ADDR + TSS_LIMIT + 1);
  // A clear bit allows a port. `out %eax` is a 4-byte access, checked against the
  // bits of all four ports it touches: ports 0–3 and 1–4 for our two ports.
  memory[TSS_ADDR + IO_BITMAP_OFFSET] = 0xff & ~(0xf << PORT_HYPERCALL) & ~(0xf << PORT_SYSCALL);

  for (let vector = 0; vector < 32; vector++) {
    const offset = exceptionStubAddress(vector);
    const gate = IDT_ADDR + vector * 16;
    view.setUint16(gate, offset & 0xffff, true);
    view.setUint16(gate + 2, SELECTOR.KERNEL_CS, true);
    memory[gate + 4] = 1; // IST1
    // present, 64-bit interrupt gate; DPL 3 for #BP and #OF, as Linux, so that `int3` and `into`
    // from ring 3 raise them (SIGTRAP, SIGSEGV) rather than a #GP; DPL 0 for the rest (`int $n`: #GP)
    memory[gate + 5] = vector === 3 || vector === 4 ? 0xee : 0x8e;
    view.setUint16(gate + 6, (offset >>> 16) & 0xffff, true);
    view.setUint32(gate + 8, Math.floor(offset / 0x1_0000_0000), true);
  }
}
