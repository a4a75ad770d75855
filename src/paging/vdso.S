/*
 * vdso.S — the code of tskvm's vDSO (src/paging/vdso.ts builds the ELF image around it). Guest
 * clock reads without a guest exit: CLOCK_REALTIME / CLOCK_MONOTONIC (and their _COARSE forms),
 * gettimeofday() and time() computed from the TSC and KVM's pvclock page, as Linux's own vDSO does
 * under kvmclock. Other clocks fall back to the clock_gettime syscall.
 *
 * The image is linked at 0 and loaded at VDSO_ADDR; the vvar page (VVAR_ADDR) is the page below it:
 *   0x00  struct pvclock_vcpu_time_info, kept by KVM (MSR_KVM_SYSTEM_TIME_NEW, set by the host):
 *         version (u32), tsc_timestamp (u64, +8), system_time (u64 ns, +16), tsc_to_system_mul (u32,
 *         +24), tsc_shift (s8, +28)
 *   0x40  seq (u32): tskvm's, changed whenever it rewrites the offsets
 *   0x48  realtime offset, 0x50 monotonic offset (u64 ns): host clock minus the VM's kvmclock
 *
 * Regenerate the bytes embedded in vdso.ts (test/vdso.test.ts checks that they match):
 *   gcc -c src/paging/vdso.S -o /tmp/vdso.o && ld -Ttext=0 --oformat binary -o /tmp/vdso.bin /tmp/vdso.o
 *   and take the bytes from offset 0x300 on.
 */
	.set PV_VERSION, 0
	.set PV_TSC, 8
	.set PV_SYS, 16
	.set PV_MUL, 24
	.set PV_SHIFT, 28
	.set SEQ, 0x40
	.set REAL_OFF, 0x48
	.set MONO_OFF, 0x50
	.text
image:			/* the image starts here: linked at 0 */
	.set VVAR, image - 0x1000	/* the vvar page, right below (a label, so that VVAR(%rip) is PC-relative) */
	.skip 0x300
/* now_ns: %r8 = the offset field to add (REAL_OFF or MONO_OFF) → %rax = that clock in ns.
 * pvclock: ns = system_time + (((tsc - tsc_timestamp) << shift) * mul) >> 32, retried while KVM or
 * the host changed the page under us. Clobbers rcx, rdx, r9–r11 (caller-saved). */
now_ns:
1:	mov VVAR+SEQ(%rip), %r10d
	mov VVAR+PV_VERSION(%rip), %r11d
	lfence
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	sub VVAR+PV_TSC(%rip), %rax
	movsbl VVAR+PV_SHIFT(%rip), %ecx
	test %ecx, %ecx
	js 2f
	shl %cl, %rax
	jmp 3f
2:	neg %ecx
	shr %cl, %rax
3:	mov VVAR+PV_MUL(%rip), %edx
	mul %rdx
	shrd $32, %rdx, %rax
	add VVAR+PV_SYS(%rip), %rax
	lea VVAR(%rip), %r9
	add (%r9,%r8), %rax
	cmp VVAR+PV_VERSION(%rip), %r11d
	jne 1b
	cmp VVAR+SEQ(%rip), %r10d
	jne 1b
	test $1, %r11d
	jnz 1b
	ret

	.p2align 4
/* int clock_gettime(clockid_t id, struct timespec *ts): 0, 5 realtime; 1, 6 monotonic; else the syscall */
clock_gettime:
	cmp $1, %edi
	je 1f
	cmp $6, %edi
	je 1f
	test %edi, %edi
	je 2f
	cmp $5, %edi
	je 2f
	mov $228, %eax
	syscall
	ret
1:	mov $MONO_OFF, %r8d
	jmp 3f
2:	mov $REAL_OFF, %r8d
3:	call now_ns
	xor %edx, %edx
	mov $1000000000, %ecx
	div %rcx
	mov %rax, (%rsi)
	mov %rdx, 8(%rsi)
	xor %eax, %eax
	ret

	.p2align 4
/* int gettimeofday(struct timeval *tv, struct timezone *tz): UTC, tz zeroed */
gettimeofday:
	test %rdi, %rdi
	jz 1f
	mov $REAL_OFF, %r8d
	call now_ns
	xor %edx, %edx
	mov $1000000000, %ecx
	div %rcx
	mov %rax, (%rdi)
	mov %rdx, %rax
	xor %edx, %edx
	mov $1000, %ecx
	div %rcx
	mov %rax, 8(%rdi)
1:	test %rsi, %rsi
	jz 2f
	movq $0, (%rsi)
2:	xor %eax, %eax
	ret

	.p2align 4
/* time_t time(time_t *t) */
time:
	mov $REAL_OFF, %r8d
	call now_ns
	xor %edx, %edx
	mov $1000000000, %ecx
	div %rcx
	test %rdi, %rdi
	jz 1f
	mov %rax, (%rdi)
1:	ret
end:
