/**
 * Assembles a runnable VM around guest RAM: the hypervisor's system area in the
 * first 2 MiB (page tables, GDT/TSS/IDT, stubs), one memory slot, one vCPU in
 * its initial state. Used by the platform probe and by every Machine, so both
 * run exactly the same set-up.
 */
import { Kvm } from './kvm/system.js';
import type { Vm } from './kvm/vm.js';
import type { Vcpu } from './kvm/vcpu.js';
import { configureVcpu, type EntryState } from './cpu-setup.js';
import { buildPageTables } from '../paging/page-tables.js';
import { writeDescriptorTables } from '../paging/descriptors.js';
import { writeStubs, type SyscallEntryKind } from '../paging/stubs.js';
import type { GuestRam } from '../paging/guest-ram.js';

export interface GuestVm {
  vm: Vm;
  vcpu: Vcpu;
  close(): void;
}

export function writeSystemArea(ram: GuestRam, entryKind: SyscallEntryKind, holes: Array<[number, number]> = []): void {
  const bytes = ram.memory.bytes;
  buildPageTables(bytes, ram.size, holes);
  writeDescriptorTables(bytes);
  writeStubs(bytes, entryKind);
}

export function createGuestVm(ram: GuestRam, entry: EntryState): GuestVm {
  const kvm = Kvm.shared();
  const vm = kvm.createVm();
  let vcpu: Vcpu | undefined;
  try {
    vm.setMemoryRegion(0, 0, ram.size, ram.hostAddress);
    vcpu = vm.createVcpu(0);
    configureVcpu(vcpu, kvm, entry);
  } catch (e) {
    vcpu?.close();
    vm.close();
    throw e;
  }
  const v = vcpu;
  return { vm, vcpu: v, close: () => { v.close(); vm.close(); } };
}
