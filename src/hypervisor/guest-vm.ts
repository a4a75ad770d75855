/**
 * Assembles a runnable VM around guest RAM: the hypervisor's system area in the
 * first 2 MiB (page tables, GDT/TSS/IDT, stubs), its memory slots, one vCPU in
 * its initial state. Used by the platform probe and by every Machine, so both
 * run exactly the same set-up.
 */
import { Kvm } from './kvm/system.js';
import { MemorySlots } from './memory-slots.js';
import type { Vm } from './kvm/vm.js';
import type { Vcpu } from './kvm/vcpu.js';
import { configureVcpu, type EntryState, type VcpuChoice } from './cpu-setup.js';
import { buildPageTables, type ExecutePolicy } from '../paging/page-tables.js';
import { writeDescriptorTables } from '../paging/descriptors.js';
import { writeStubs, type StubChoice } from '../paging/stubs.js';
import { writeVdso } from '../paging/vdso.js';
import { GuestClock } from './guest-clock.js';
import { USER_START } from '../paging/layout.js';
import type { GuestRam } from '../paging/guest-ram.js';

export interface GuestVm {
  vm: Vm;
  vcpu: Vcpu;
  /** The clock the vDSO reads; armed. */
  clock: GuestClock;
  /** Which pieces of guest memory KVM has (memory-slots.ts). */
  slots: MemorySlots;
  close(): void;
}

export function writeSystemArea(ram: GuestRam, stubs: StubChoice, exec: ExecutePolicy, holes: Array<[number, number]> = []): void {
  const bytes = ram.memory.span(0, USER_START);
  buildPageTables(bytes, ram.size, holes, exec, ram.memory.remaps);
  writeDescriptorTables(bytes);
  writeStubs(bytes, stubs);
  writeVdso(bytes);
}

/**
 * A VM over `ram` with one vCPU at `entry`, set up as the platform chose
 * (syscall entry, TR type). `dirtyLog`: track the pages the
 * guest writes in the main slot (request VMs, for their reset).
 */
export function createGuestVm(ram: GuestRam, entry: EntryState, opts: VcpuChoice & { dirtyLog?: boolean }): GuestVm {
  const kvm = Kvm.shared();
  const vm = kvm.createVm();
  let vcpu: Vcpu | undefined;
  let clock: GuestClock;
  let slots: MemorySlots;
  try {
    if (opts.dirtyLog) vm.enableManualDirtyLog();
    slots = new MemorySlots(vm, ram, opts.dirtyLog ?? false);
    slots.register();
    vcpu = vm.createVcpu(0);
    configureVcpu(vcpu, kvm, entry, opts);
    clock = new GuestClock(vm, vcpu, ram.memory.span(0, USER_START));
    clock.arm();
  } catch (e) {
    vcpu?.close();
    vm.close();
    throw e;
  }
  const v = vcpu;
  return { vm, vcpu: v, clock, slots, close: () => { v.close(); vm.close(); } };
}
