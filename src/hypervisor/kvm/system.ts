/**
 * `Kvm` wraps the system file descriptor (/dev/kvm): API version and capability
 * checks, the CPUID the host supports, the size of a vCPU's shared run area, and
 * creating VMs. One per process, opened on first use.
 */
import { TskvmError } from '../../errors.js';
import { caps, KVM_API_VERSION, KVM_SYNC_X86_REGS } from './abi.js';
import { ioctl } from './ioctl.js';
import { errno, libc } from '../../host/libc.js';
import { errnoName } from '../../host/errno.js';
import { Vm } from './vm.js';
import { constants } from 'node:os';

const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;

export class Kvm {
  private static instance: Kvm | null = null;
  readonly fd: number;
  readonly vcpuMmapSize: number;
  private cpuidCache: Buffer | null = null;

  /** The process-wide /dev/kvm handle; throws a TskvmError a user can act on. */
  static shared(): Kvm {
    Kvm.instance ??= new Kvm('/dev/kvm');
    return Kvm.instance;
  }

  private constructor(path: string) {
    const fd = libc.open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) throw openError(path, errno());
    this.fd = fd;
    const version = ioctl(fd, 'KVM_GET_API_VERSION');
    if (version !== KVM_API_VERSION) {
      throw new TskvmError('TSKVM_ERR_KVM_API', `${path} speaks KVM API ${version}; tskvm needs ${KVM_API_VERSION}`);
    }
    this.require('KVM_CAP_USER_MEMORY', 'guest memory from host mappings');
    this.require('KVM_CAP_IMMEDIATE_EXIT', 'interrupting a running guest without races');
    if ((this.check('KVM_CAP_SYNC_REGS') & KVM_SYNC_X86_REGS) === 0) {
      throw new TskvmError('TSKVM_ERR_KVM_CAPABILITY', `${path} lacks KVM_CAP_SYNC_REGS (registers in the shared run page); this kernel is too old for tskvm`);
    }
    this.vcpuMmapSize = ioctl(fd, 'KVM_GET_VCPU_MMAP_SIZE');
  }

  check(cap: keyof typeof caps): number {
    return ioctl(this.fd, 'KVM_CHECK_EXTENSION', caps[cap]);
  }

  private require(cap: keyof typeof caps, why: string): void {
    if (this.check(cap) <= 0) throw new TskvmError('TSKVM_ERR_KVM_CAPABILITY', `/dev/kvm lacks ${cap} (${why}); tskvm cannot run on this kernel`);
  }

  /** struct kvm_cpuid2 with the host's supported leaves, ready for KVM_SET_CPUID2. */
  supportedCpuid(): Buffer {
    if (!this.cpuidCache) {
      const max = 256;
      const buf = Buffer.alloc(8 + max * 40);
      buf.writeUInt32LE(max, 0);
      ioctl(this.fd, 'KVM_GET_SUPPORTED_CPUID', buf);
      this.cpuidCache = buf.subarray(0, 8 + buf.readUInt32LE(0) * 40);
    }
    return this.cpuidCache;
  }

  /** One CPUID leaf as the guest will see it: [eax, ebx, ecx, edx], zeros when absent. */
  cpuidLeaf(fn: number, index = 0): [number, number, number, number] {
    const c = this.supportedCpuid();
    for (let at = 8; at < c.length; at += 40) {
      if (c.readUInt32LE(at) === fn && c.readUInt32LE(at + 4) === index) {
        return [c.readUInt32LE(at + 12), c.readUInt32LE(at + 16), c.readUInt32LE(at + 20), c.readUInt32LE(at + 24)];
      }
    }
    return [0, 0, 0, 0];
  }

  createVm(): Vm {
    return new Vm(this, ioctl(this.fd, 'KVM_CREATE_VM', 0));
  }
}

function openError(path: string, err: number): TskvmError {
  if (err === constants.errno.ENOENT) {
    return new TskvmError('TSKVM_ERR_KVM_MISSING',
      `${path} does not exist: KVM is not available on this machine. Load the kvm module (kvm_intel, kvm_amd or kvm_pvm) and enable virtualization for this host.`);
  }
  if (err === constants.errno.EACCES || err === constants.errno.EPERM) {
    return new TskvmError('TSKVM_ERR_KVM_PERMISSION',
      `permission denied opening ${path}: add your user to the kvm group (sudo usermod -aG kvm $USER, then log in again) or run as root.`);
  }
  return new TskvmError('TSKVM_ERR_KVM_OPEN', `cannot open ${path}: ${errnoName(err)} (${err})`, { errno: err });
}
