/**
 * `Vcpu` wraps a vCPU file descriptor and its `kvm_run` page.
 *
 * Registers travel through SYNC_REGS: the kernel copies the general registers
 * into the shared page at every exit (kvm_valid_regs) and loads them back at the
 * next KVM_RUN when we mark them dirty (kvm_dirty_regs). So reading or writing a
 * register is a typed-array access, never an ioctl (~2 µs each: docs/PLATFORMS.md, "What things cost").
 *
 *   kvm_run page:  [0] immediate_exit … [8] exit_reason … [32] exit data
 *                  [288] valid_regs [296] dirty_regs [304] kvm_regs (18 × u64)
 *                  [448] kvm_sregs …
 */
import { TskvmError } from '../../errors.js';
import {
  ioctls, KVM_SYNC_X86_REGS, msrs as msrLayout, regIndex, REGS_SIZE, run as runLayout, sregs as sregsLayout,
  xcrs as xcrsLayout, XSAVE_SIZE, type RegName,
} from './abi.js';
import { ioctl } from './ioctl.js';
import { decodeExit, describeExit, type VcpuExit } from './exit.js';
import { errno, libc, mapOrThrow, MAP_SHARED, PROT_READ, PROT_WRITE, viewOf, sysError } from '../../host/libc.js';
import type { Vm } from './vm.js';
import { constants } from 'node:os';

const INTERRUPTED: VcpuExit = { kind: 'interrupted' };

export class Vcpu {
  readonly vm: Vm;
  readonly fd: number;
  /** The kvm_run page as bytes (exit data is read from here). */
  readonly runView: DataView;
  readonly runBytes: Uint8Array;
  /** kvm_regs inside the run page as 32-bit words: register i is words 2i (low), 2i+1 (high). */
  readonly regs: Uint32Array;
  private readonly runPointer: unknown;
  private readonly runSize: number;
  private closed = false;

  constructor(vm: Vm, fd: number) {
    this.vm = vm;
    this.fd = fd;
    this.runSize = vm.kvm.vcpuMmapSize;
    const { pointer } = mapOrThrow(this.runSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 'the vCPU run page');
    this.runPointer = pointer;
    const buffer = viewOf(pointer, this.runSize);
    this.runView = new DataView(buffer);
    this.runBytes = new Uint8Array(buffer);
    this.regs = new Uint32Array(buffer, runLayout.syncRegs, REGS_SIZE / 4);
    this.runView.setBigUint64(runLayout.kvmValidRegs, BigInt(KVM_SYNC_X86_REGS), true);
  }

  /**
   * KVM_RUN: enter the guest until it exits, and say why it did (exit.ts); `interrupted` when a
   * signal (our timeout timer) ended the run.
   */
  run(): VcpuExit {
    this.exitCompleted = false;
    const rc = libc.ioctlInt(this.fd, ioctls.KVM_RUN, 0);
    if (rc < 0) {
      const err = errno();
      if (err === constants.errno.EINTR || err === constants.errno.EAGAIN) return INTERRUPTED;
      throw sysError('TSKVM_ERR_KVM_IOCTL', 'KVM_RUN', err, { ioctl: 'KVM_RUN' });
    }
    return decodeExit(this.runView.getUint32(runLayout.exitReason, true), this.runView);
  }

  /**
   * Finishes the instruction the guest exited on, without entering the guest.
   * KVM completes an `out` that exited to us (advancing rip past it) only at
   * the next KVM_RUN, so registers read right after such an exit still point
   * at the `out` on hardware KVM (PVM emulates the instruction and has already
   * moved on). KVM_RUN with immediate_exit performs the completion and returns
   * at once: what the KVM API asks for before a vCPU's state is saved.
   */
  completeExit(): void {
    if (this.exitCompleted) return; // nothing left to complete since the last one
    this.immediateExit = true;
    try {
      const exit = this.run();
      if (exit.kind !== 'interrupted') {
        throw new TskvmError('TSKVM_ERR_KVM_EXIT', `KVM_RUN with immediate_exit entered the guest and exited with ${describeExit(exit)}`, { ioctl: 'KVM_RUN' });
      }
      this.exitCompleted = true;
    } finally {
      this.immediateExit = false;
    }
  }

  /** Set by completeExit, cleared by the next KVM_RUN: a second completion would be an ioctl for nothing. */
  private exitCompleted = false;

  set immediateExit(on: boolean) {
    this.runBytes[runLayout.immediateExit] = on ? 1 : 0;
  }

  /** A register as a Number (exact below 2^53; addresses always are). */
  get(reg: RegName): number {
    const i = regIndex[reg] * 2;
    return this.regs[i]! + this.regs[i + 1]! * 0x1_0000_0000;
  }

  getBig(reg: RegName): bigint {
    const i = regIndex[reg] * 2;
    return BigInt(this.regs[i]!) | (BigInt(this.regs[i + 1]!) << 32n);
  }

  /** Sets a register from a Number (negative values in two's complement) and marks registers dirty. */
  set(reg: RegName, value: number): void {
    const i = regIndex[reg] * 2;
    if (value >= 0 && value <= 0xffff_ffff) {
      this.regs[i] = value;
      this.regs[i + 1] = 0;
    } else {
      const lo = value % 0x1_0000_0000;
      this.regs[i] = lo >>> 0;
      this.regs[i + 1] = Math.floor(value / 0x1_0000_0000) >>> 0;
    }
    this.markRegsDirty();
  }

  setBig(reg: RegName, value: bigint): void {
    const i = regIndex[reg] * 2;
    const v = BigInt.asUintN(64, value);
    this.regs[i] = Number(v & 0xffff_ffffn);
    this.regs[i + 1] = Number(v >> 32n);
    this.markRegsDirty();
  }

  markRegsDirty(): void {
    this.runBytes[runLayout.kvmDirtyRegs] = KVM_SYNC_X86_REGS;
  }

  /** Every general register, for error reports. */
  registerDump(): Record<RegName, bigint> {
    const out = {} as Record<RegName, bigint>;
    for (const name of Object.keys(regIndex) as RegName[]) out[name] = this.getBig(name);
    return out;
  }

  setCpuid(cpuid2: Uint8Array): void {
    ioctl(this.fd, 'KVM_SET_CPUID2', cpuid2);
  }

  getSregs(): Buffer {
    const b = Buffer.alloc(sregsLayout.size);
    ioctl(this.fd, 'KVM_GET_SREGS', b);
    return b;
  }

  setSregs(b: Buffer): void {
    ioctl(this.fd, 'KVM_SET_SREGS', b);
  }

  /** Full register block through the ioctl: set-up only, never on the hot path. */
  setRegs(values: Partial<Record<RegName, number | bigint>>): void {
    const b = Buffer.alloc(REGS_SIZE);
    for (const [name, value] of Object.entries(values)) {
      b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(value)), regIndex[name as RegName] * 8);
    }
    ioctl(this.fd, 'KVM_SET_REGS', b);
  }

  setMsrs(entries: Array<[number, bigint | number]>): void {
    this.msrIoctl('KVM_SET_MSRS', entries);
  }

  /** The MSRs' current values, in the order asked (the reset and its tests compare them). */
  getMsrs(indices: number[]): bigint[] {
    const b = this.msrIoctl('KVM_GET_MSRS', indices.map((index) => [index, 0]));
    return indices.map((_, i) => b.readBigUInt64LE(msrLayout.headerSize + i * msrLayout.entrySize + msrLayout.data));
  }

  private msrIoctl(name: 'KVM_SET_MSRS' | 'KVM_GET_MSRS', entries: Array<[number, bigint | number]>): Buffer {
    const b = Buffer.alloc(msrLayout.headerSize + entries.length * msrLayout.entrySize);
    b.writeUInt32LE(entries.length, 0);
    entries.forEach(([index, value], i) => {
      const at = msrLayout.headerSize + i * msrLayout.entrySize;
      b.writeUInt32LE(index, at + msrLayout.index);
      b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(value)), at + msrLayout.data);
    });
    const n = ioctl(this.fd, name, b);
    if (n !== entries.length) {
      const bad = entries[n]![0];
      throw new TskvmError('TSKVM_ERR_KVM_IOCTL', `${name} handled ${n} of ${entries.length} MSRs; MSR 0x${bad.toString(16)} was refused`, { ioctl: name });
    }
    return b;
  }

  /** KVM_GET_XSAVE: the x87/SSE/AVX registers and control words (MXCSR…). */
  getXsave(): Buffer {
    const b = Buffer.alloc(XSAVE_SIZE);
    ioctl(this.fd, 'KVM_GET_XSAVE', b);
    return b;
  }

  setXsave(b: Uint8Array): void {
    ioctl(this.fd, 'KVM_SET_XSAVE', b);
  }

  /** XCR0: which register states XSAVE manages (needed before the guest may use AVX). */
  setXcr0(value: bigint): void {
    const b = Buffer.alloc(xcrsLayout.size);
    b.writeUInt32LE(1, xcrsLayout.nrXcrs);
    b.writeUInt32LE(0, xcrsLayout.xcrs + xcrsLayout.xcr);
    b.writeBigUInt64LE(value, xcrsLayout.xcrs + xcrsLayout.value);
    ioctl(this.fd, 'KVM_SET_XCRS', b);
  }

  /**
   * KVM_SET_SIGNAL_MASK: the signal mask in force *while the guest runs*. With
   * our timeout signal blocked in the thread but open here, the timer can only
   * interrupt KVM_RUN, never JavaScript.
   */
  setSignalMask(sigset: bigint): void {
    const b = Buffer.alloc(4 + 8);
    b.writeUInt32LE(8, 0);
    b.writeBigUInt64LE(sigset, 4);
    ioctl(this.fd, 'KVM_SET_SIGNAL_MASK', b);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (libc.munmap(this.runPointer, this.runSize) < 0) throw sysError('TSKVM_ERR_HOST_MMAP', 'munmap of the vCPU run page');
    libc.close(this.fd);
  }
}
