// Every number and struct offset in src/hypervisor/kvm/abi.ts, checked against
// the kernel's own header by compiling a C program that prints them.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as abi from '../src/hypervisor/kvm/abi.js';

const C_SOURCE = String.raw`
#include <stdio.h>
#include <stddef.h>
#include <linux/kvm.h>
#include <asm/kvm_para.h>
#define N(x) printf("%s %lu\n", #x, (unsigned long)(x))
#define O(s, f) printf("%s.%s %lu\n", #s, #f, (unsigned long)offsetof(struct s, f))
int main(void) {
  N(KVM_GET_API_VERSION); N(KVM_CREATE_VM); N(KVM_CHECK_EXTENSION); N(KVM_GET_VCPU_MMAP_SIZE);
  N(KVM_GET_SUPPORTED_CPUID); N(KVM_CREATE_VCPU); N(KVM_GET_DIRTY_LOG); N(KVM_SET_USER_MEMORY_REGION);
  N(KVM_ENABLE_CAP); N(KVM_CLEAR_DIRTY_LOG); N(KVM_GET_CLOCK); N(sizeof(struct kvm_clock_data)); O(kvm_clock_data, clock); N(MSR_KVM_SYSTEM_TIME_NEW); N(KVM_RUN); N(KVM_GET_REGS); N(KVM_SET_REGS); N(KVM_GET_SREGS);
  N(KVM_SET_SREGS); N(KVM_GET_MSRS); N(KVM_SET_MSRS); N(KVM_SET_SIGNAL_MASK); N(KVM_SET_CPUID2); N(KVM_SET_XCRS);
  N(KVM_GET_XSAVE); N(KVM_SET_XSAVE); N(sizeof(struct kvm_xsave));
  N(KVM_CAP_USER_MEMORY); N(KVM_CAP_EXT_CPUID); N(KVM_CAP_NR_MEMSLOTS); N(KVM_CAP_XCRS); N(KVM_CAP_SYNC_REGS);
  N(KVM_CAP_IMMEDIATE_EXIT); N(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
  N(KVM_EXIT_IO); N(KVM_EXIT_IO_OUT); N(KVM_EXIT_HLT); N(KVM_EXIT_MMIO); N(KVM_EXIT_SHUTDOWN); N(KVM_EXIT_FAIL_ENTRY); N(KVM_EXIT_INTR);
  N(KVM_EXIT_INTERNAL_ERROR); N(KVM_SYNC_X86_REGS); N(KVM_SYNC_X86_SREGS); N(KVM_MEM_LOG_DIRTY_PAGES);
  N(sizeof(struct kvm_userspace_memory_region)); O(kvm_userspace_memory_region, slot); O(kvm_userspace_memory_region, flags);
  O(kvm_userspace_memory_region, guest_phys_addr); O(kvm_userspace_memory_region, memory_size); O(kvm_userspace_memory_region, userspace_addr);
  N(sizeof(struct kvm_regs)); O(kvm_regs, rax); O(kvm_regs, rcx); O(kvm_regs, rdi); O(kvm_regs, rsp); O(kvm_regs, r10); O(kvm_regs, rip); O(kvm_regs, rflags);
  N(sizeof(struct kvm_segment)); O(kvm_segment, base); O(kvm_segment, limit); O(kvm_segment, selector); O(kvm_segment, type);
  O(kvm_segment, present); O(kvm_segment, dpl); O(kvm_segment, db); O(kvm_segment, s); O(kvm_segment, l); O(kvm_segment, g); O(kvm_segment, avl); O(kvm_segment, unusable);
  N(sizeof(struct kvm_sregs)); O(kvm_sregs, cs); O(kvm_sregs, ds); O(kvm_sregs, es); O(kvm_sregs, fs); O(kvm_sregs, gs); O(kvm_sregs, ss);
  O(kvm_sregs, tr); O(kvm_sregs, ldt); O(kvm_sregs, gdt); O(kvm_sregs, idt); O(kvm_sregs, cr0); O(kvm_sregs, cr2); O(kvm_sregs, cr3);
  O(kvm_sregs, cr4); O(kvm_sregs, cr8); O(kvm_sregs, efer); O(kvm_sregs, apic_base); O(kvm_sregs, interrupt_bitmap);
  O(kvm_run, immediate_exit); O(kvm_run, exit_reason); O(kvm_run, io.direction); O(kvm_run, io.size); O(kvm_run, io.port);
  O(kvm_run, io.count); O(kvm_run, io.data_offset); O(kvm_run, mmio.phys_addr); O(kvm_run, mmio.data); O(kvm_run, mmio.len);
  O(kvm_run, mmio.is_write); O(kvm_run, fail_entry.hardware_entry_failure_reason); O(kvm_run, internal.suberror);
  O(kvm_run, internal.ndata); O(kvm_run, internal.data); O(kvm_run, kvm_valid_regs); O(kvm_run, kvm_dirty_regs);
  O(kvm_run, s.regs.regs); O(kvm_run, s.regs.sregs);
  N(sizeof(struct kvm_cpuid2)); N(sizeof(struct kvm_cpuid_entry2)); O(kvm_cpuid_entry2, function); O(kvm_cpuid_entry2, index);
  O(kvm_cpuid_entry2, flags); O(kvm_cpuid_entry2, eax); O(kvm_cpuid_entry2, ebx); O(kvm_cpuid_entry2, ecx); O(kvm_cpuid_entry2, edx);
  N(sizeof(struct kvm_msrs)); N(sizeof(struct kvm_msr_entry)); O(kvm_msr_entry, index); O(kvm_msr_entry, data);
  N(sizeof(struct kvm_xcrs)); O(kvm_xcrs, nr_xcrs); O(kvm_xcrs, xcrs); N(sizeof(struct kvm_xcr)); O(kvm_xcr, xcr); O(kvm_xcr, value);
  N(sizeof(struct kvm_dirty_log)); O(kvm_dirty_log, slot); O(kvm_dirty_log, dirty_bitmap);
  N(sizeof(struct kvm_clear_dirty_log)); O(kvm_clear_dirty_log, slot); O(kvm_clear_dirty_log, num_pages); O(kvm_clear_dirty_log, first_page); O(kvm_clear_dirty_log, dirty_bitmap);
  N(sizeof(struct kvm_enable_cap)); O(kvm_enable_cap, cap); O(kvm_enable_cap, flags); O(kvm_enable_cap, args);
  N(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
  O(kvm_signal_mask, len); O(kvm_signal_mask, sigset);
  return 0;
}`;

const dir = mkdtempSync(join(tmpdir(), 'tskvm-abi-'));
writeFileSync(join(dir, 'abi.c'), C_SOURCE);
execFileSync('gcc', ['-o', join(dir, 'abi'), join(dir, 'abi.c')]);
const c = new Map(execFileSync(join(dir, 'abi'), { encoding: 'utf8' }).trim().split('\n').map((l) => {
  const at = l.lastIndexOf(' ');
  return [l.slice(0, at), Number(l.slice(at + 1))];
}));
const want = (name: string): number => {
  const v = c.get(name);
  if (v === undefined) throw new Error(`C program printed no ${name}`);
  return v;
};

t.test('ioctl numbers', async (t) => {
  for (const [name, value] of Object.entries(abi.ioctls)) t.equal(value, want(name), name);
});

t.test('capabilities, exit reasons, flags', async (t) => {
  for (const [name, value] of Object.entries(abi.caps)) t.equal(value, want(name), name);
  t.equal(abi.KVM_EXIT_IO, want('KVM_EXIT_IO'));
  t.equal(abi.KVM_EXIT_IO_OUT, want('KVM_EXIT_IO_OUT'));
  t.equal(abi.KVM_EXIT_HLT, want('KVM_EXIT_HLT'));
  t.equal(abi.KVM_EXIT_MMIO, want('KVM_EXIT_MMIO'));
  t.equal(abi.KVM_EXIT_SHUTDOWN, want('KVM_EXIT_SHUTDOWN'));
  t.equal(abi.KVM_EXIT_FAIL_ENTRY, want('KVM_EXIT_FAIL_ENTRY'));
  t.equal(abi.KVM_EXIT_INTR, want('KVM_EXIT_INTR'));
  t.equal(abi.KVM_EXIT_INTERNAL_ERROR, want('KVM_EXIT_INTERNAL_ERROR'));
  t.equal(abi.KVM_SYNC_X86_REGS, want('KVM_SYNC_X86_REGS'));
  t.equal(abi.KVM_SYNC_X86_SREGS, want('KVM_SYNC_X86_SREGS'));
  t.equal(abi.KVM_MEM_LOG_DIRTY_PAGES, want('KVM_MEM_LOG_DIRTY_PAGES'));
});

t.test('struct layouts', async (t) => {
  const m = abi.memoryRegion;
  t.equal(m.size, want('sizeof(struct kvm_userspace_memory_region)'));
  t.equal(m.slot, want('kvm_userspace_memory_region.slot'));
  t.equal(m.flags, want('kvm_userspace_memory_region.flags'));
  t.equal(m.guestPhysAddr, want('kvm_userspace_memory_region.guest_phys_addr'));
  t.equal(m.memorySize, want('kvm_userspace_memory_region.memory_size'));
  t.equal(m.userspaceAddr, want('kvm_userspace_memory_region.userspace_addr'));

  t.equal(abi.REGS_SIZE, want('sizeof(struct kvm_regs)'));
  for (const r of ['rax', 'rcx', 'rdi', 'rsp', 'r10', 'rip', 'rflags'] as const) t.equal(abi.regIndex[r] * 8, want(`kvm_regs.${r}`), r);

  const seg = abi.segment;
  t.equal(seg.size, want('sizeof(struct kvm_segment)'));
  for (const f of ['base', 'limit', 'selector', 'type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable'] as const) {
    t.equal(seg[f], want(`kvm_segment.${f}`), `kvm_segment.${f}`);
  }
  const s = abi.sregs;
  t.equal(s.size, want('sizeof(struct kvm_sregs)'));
  const sf = { cs: 'cs', ds: 'ds', es: 'es', fs: 'fs', gs: 'gs', ss: 'ss', tr: 'tr', ldt: 'ldt', gdt: 'gdt', idt: 'idt', cr0: 'cr0', cr2: 'cr2', cr3: 'cr3', cr4: 'cr4', cr8: 'cr8', efer: 'efer', apicBase: 'apic_base', interruptBitmap: 'interrupt_bitmap' } as const;
  for (const [ours, theirs] of Object.entries(sf)) t.equal(s[ours as keyof typeof sf], want(`kvm_sregs.${theirs}`), `kvm_sregs.${theirs}`);

  const r = abi.run;
  t.equal(r.immediateExit, want('kvm_run.immediate_exit'));
  t.equal(r.exitReason, want('kvm_run.exit_reason'));
  t.equal(r.io.direction, want('kvm_run.io.direction'));
  t.equal(r.io.size, want('kvm_run.io.size'));
  t.equal(r.io.port, want('kvm_run.io.port'));
  t.equal(r.io.count, want('kvm_run.io.count'));
  t.equal(r.io.dataOffset, want('kvm_run.io.data_offset'));
  t.equal(r.mmio.physAddr, want('kvm_run.mmio.phys_addr'));
  t.equal(r.mmio.data, want('kvm_run.mmio.data'));
  t.equal(r.mmio.len, want('kvm_run.mmio.len'));
  t.equal(r.mmio.isWrite, want('kvm_run.mmio.is_write'));
  t.equal(r.failEntry.hardwareEntryFailureReason, want('kvm_run.fail_entry.hardware_entry_failure_reason'));
  t.equal(r.internal.suberror, want('kvm_run.internal.suberror'));
  t.equal(r.internal.ndata, want('kvm_run.internal.ndata'));
  t.equal(r.internal.data, want('kvm_run.internal.data'));
  t.equal(r.kvmValidRegs, want('kvm_run.kvm_valid_regs'));
  t.equal(r.kvmDirtyRegs, want('kvm_run.kvm_dirty_regs'));
  t.equal(r.syncRegs, want('kvm_run.s.regs.regs'));
  t.equal(r.syncSregs, want('kvm_run.s.regs.sregs'));

  const cp = abi.cpuid;
  t.equal(cp.headerSize, want('sizeof(struct kvm_cpuid2)'));
  t.equal(cp.entrySize, want('sizeof(struct kvm_cpuid_entry2)'));
  for (const f of ['function', 'index', 'flags', 'eax', 'ebx', 'ecx', 'edx'] as const) t.equal(cp[f], want(`kvm_cpuid_entry2.${f}`), f);
  t.equal(abi.clockData.size, want('sizeof(struct kvm_clock_data)'));
  t.equal(abi.clockData.clock, want('kvm_clock_data.clock'));
  t.equal(abi.MSR.KVM_SYSTEM_TIME_NEW, want('MSR_KVM_SYSTEM_TIME_NEW'));
  t.equal(abi.msrs.headerSize, want('sizeof(struct kvm_msrs)'));
  t.equal(abi.msrs.entrySize, want('sizeof(struct kvm_msr_entry)'));
  t.equal(abi.msrs.index, want('kvm_msr_entry.index'));
  t.equal(abi.msrs.data, want('kvm_msr_entry.data'));
  t.equal(abi.xcrs.size, want('sizeof(struct kvm_xcrs)'));
  t.equal(abi.xcrs.nrXcrs, want('kvm_xcrs.nr_xcrs'));
  t.equal(abi.xcrs.xcrs, want('kvm_xcrs.xcrs'));
  t.equal(abi.xcrs.entrySize, want('sizeof(struct kvm_xcr)'));
  t.equal(abi.xcrs.xcr, want('kvm_xcr.xcr'));
  t.equal(abi.xcrs.value, want('kvm_xcr.value'));
  t.equal(abi.dirtyLog.size, want('sizeof(struct kvm_dirty_log)'));
  t.equal(abi.dirtyLog.slot, want('kvm_dirty_log.slot'));
  t.equal(abi.dirtyLog.bitmap, want('kvm_dirty_log.dirty_bitmap'));
  t.equal(abi.XSAVE_SIZE, want('sizeof(struct kvm_xsave)'));
  t.equal(abi.clearDirtyLog.size, want('sizeof(struct kvm_clear_dirty_log)'));
  t.equal(abi.clearDirtyLog.slot, want('kvm_clear_dirty_log.slot'));
  t.equal(abi.clearDirtyLog.numPages, want('kvm_clear_dirty_log.num_pages'));
  t.equal(abi.clearDirtyLog.firstPage, want('kvm_clear_dirty_log.first_page'));
  t.equal(abi.clearDirtyLog.bitmap, want('kvm_clear_dirty_log.dirty_bitmap'));
  t.equal(abi.enableCap.size, want('sizeof(struct kvm_enable_cap)'));
  t.equal(abi.enableCap.cap, want('kvm_enable_cap.cap'));
  t.equal(abi.enableCap.flags, want('kvm_enable_cap.flags'));
  t.equal(abi.enableCap.args, want('kvm_enable_cap.args'));
  t.equal(abi.KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, want('KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE'));
  t.equal(abi.signalMask.len, want('kvm_signal_mask.len'));
  t.equal(abi.signalMask.sigset, want('kvm_signal_mask.sigset'));
});
