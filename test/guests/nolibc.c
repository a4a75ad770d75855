/*
 * nolibc [ARG...] — no libc at all (-nostdlib -static, own _start): prints "hello from nolibc",
 * argc and each argv with raw write syscalls, then exit_group(0). The simplest ELF a loader meets:
 * no TLS, no auxv use, no IRELATIVE relocations.
 */

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  xor %ebp, %ebp\n"
        "  mov %rsp, %rdi\n"   /* argc, argv... as the kernel left them */
        "  and $-16, %rsp\n"   /* SysV ABI: 16-byte aligned before the call */
        "  call start_c\n"
        "  hlt\n");

static long sys3(long nr, long a, long b, long c)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "0"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return r;
}

static void put(const char *s)
{
	long n = 0;
	while (s[n])
		n++;
	sys3(1 /* write */, 1, (long)s, n);
}

__attribute__((used, noreturn)) void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	char digits[24], *d = digits + sizeof digits - 1;
	*d = 0;
	long n = argc;
	do
		*--d = (char)('0' + n % 10);
	while ((n /= 10) > 0);

	put("hello from nolibc\nargc=");
	put(d);
	put("\n");
	for (long i = 0; i < argc; i++) {
		put("argv: ");
		put(argv[i]);
		put("\n");
	}
	sys3(231 /* exit_group */, 0, 0, 0);
	for (;;)
		;
}
