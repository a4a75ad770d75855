/*
 * Keeps one KVM vCPU without an in-kernel local APIC alive for the life of the lane's VM.
 *
 * Why: KVM counts such vCPUs in a static key (kvm_has_noapic_vcpu), and each time the count goes
 * from 0 to 1 or back the kernel rewrites its own code: int3 patching, with IPIs to every CPU
 * that it waits for (smp_call_function_many_cond). tskvm creates its vCPUs without an in-kernel
 * APIC, so every tskvm process flips the key twice. Under QEMU 7.2's emulated SVM such an IPI
 * is sometimes never taken: one CPU waits for it forever with interrupts off, the other ends up
 * stuck too, and the whole VM stops (two processes that create and destroy VMs in a loop
 * wedged it within seconds; with this holder running, 2 x 1000 cycles passed). With the count
 * never back at 0, the key is flipped once, at start-up, and never again.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  int vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
  int vcpu = vm < 0 ? -1 : ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) {
    perror("kvm-hold");
    return 1;
  }
  for (;;) pause();
}
