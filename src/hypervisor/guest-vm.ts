/**
 * Assembles a runnable VM around guest RAM: the hypervisor's system area in the
 * first 2 MiB (page tables, GDT/TSS/IDT, stubs), one memory slot, one vCPU in
 * its initial state. Used by the platform probe and by every Machine, so both
 * run exactly the same set-up.
 */
import { Kvm } from './kvm/system.js';
import { KVM_MEM_LOG_DIRTY_PAGES } from './kvm/abi.js';
import type { Vm } from './kvm/vm.js';
import type { Vcpu } from './kvm/vcpu.js';
import { configureVcpu, type EntryState, type VcpuChoice } from './cpu-setup.js';
import { buildPageTables, type ExecutePolicy } from '../paging/page-tables.js';
import { writeDescriptorTables } from '../paging/descriptors.js';
import { writeStubs, type StubChoice } from '../paging/stubs.js';
import { writeVdso } from '../paging/vdso.js';
import { GuestClock } from './guest-clock.js';
import type { GuestRam } from '../paging/guest-ram.js';

export interface GuestVm {
  vm: Vm;
  vcpu: Vcpu;
  /** The clock the vDSO reads; armed. */
  clock: GuestClock;
  close(): void;
}

export function writeSystemArea(ram: GuestRam, stubs: StubChoice, exec: ExecutePolicy, holes: Array<[number, number]> = []): void {
  const bytes = ram.memory.bytes;
  buildPageTables(bytes, ram.size, holes, exec);
  writeDescriptorTables(bytes);
  writeStubs(bytes, stubs);
  writeVdso(bytes);
}

/** Memory slots: 0 is the program's memory, 1 the shared region (GuestRam's layout). */
export const MAIN_SLOT = 0;
const SHARED_SLOT = 1;

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
  try {
    if (opts.dirtyLog) vm.enableManualDirtyLog();
    vm.setMemoryRegion(MAIN_SLOT, 0, ram.mainSize, ram.hostAddress, opts.dirtyLog ? KVM_MEM_LOG_DIRTY_PAGES : 0);
    if (ram.size > ram.mainSize) vm.setMemoryRegion(SHARED_SLOT, ram.mainSize, ram.size - ram.mainSize, ram.hostAddress + BigInt(ram.mainSize));
    vcpu = vm.createVcpu(0);
    configureVcpu(vcpu, kvm, entry, opts);
    clock = new GuestClock(vm, vcpu, ram.memory.bytes);
    clock.arm();
  } catch (e) {
    vcpu?.close();
    vm.close();
    throw e;
  }
  const v = vcpu;
  return { vm, vcpu: v, clock, close: () => { v.close(); vm.close(); } };
}
