/*
 * req-attack — a request program that attacks its own sandbox, one attack per URL, so that a test can
 * check that each attack fails the way it would natively and that the next request on the same fork
 * sees exactly what a fresh fork sees. Any-method handler (register_func 3). URLs:
 *
 *   /state     200, one line: "cs=.. ds=.. es=.. fs=.. gs=.. ss=.. tls=.. global=.. gadget=.." — the
 *              segment selectors, a __thread variable read through FS (faults if FS's base is wrong),
 *              a global, and what gadget() returns (it changes if its code bytes were rewritten).
 *   /sysarea   200, "efault=N other=M": N calls that got EFAULT, M that did not, out of read, pread64,
 *              readv, getcwd, uname, fstat, pipe2, getrandom and clock_gettime (by syscall, never the
 *              vDSO) aimed at every page of the hypervisor's area (below 2 MiB) and at a range that runs
 *              from the last bytes below 2 MiB into user memory. Natively those addresses are unmapped:
 *              every call gets EFAULT there too.
 *   /offsets   200, "pread=.. preadv=.. sendfile=.. lseek=.. mmap=..": file offsets of 2^62, which the host
 *              cannot hold exactly (results as numbers or -errno; mmap "ok" or -errno), as natively.
 *   /sysarea-api  200, "efault=N other=M": the guest-API calls that write guest memory (sys_http_find
 *              of the request's X-Attack header, sys_http_method, get_meminfo) aimed at every page of
 *              the hypervisor's area.
 *   /compat    switches CS to the 32-bit user code selector (lretq to 0x23) and faults there (ud2):
 *              the next request must start in 64-bit mode again.
 *   /segments  loads FS and GS with the user data selector (base 0 from the GDT) and DS and ES with the
 *              null selector, then answers 200 "loaded" (nothing after the loads touches TLS).
 *   /stubjump  jumps into the ring-3 syscall stub (0x4000) with rax = getpid and rcx pointing just past
 *              the 0f 05 inside gadget()'s `mov` immediate, as if a `syscall` had been executed there:
 *              the stub returns to rcx and the request answers 200 "jumped".
 *   /in, /in1  `inb $0, %al` / `inl $1, %eax`: port I/O from ring 3 on the hypercall and syscall ports.
 *   /outport   `outb %al, $0x70`: another port.
 *   /execstack /execmmap /execheap /execbrk /execdata
 *              copy `mov $42, %eax; ret` onto the stack, into a new read-write anonymous mapping, into
 *              a 1 MiB malloc block (a mapping), a 64-byte one (the brk heap, next to the program) or a
 *              global array (the program's data, next to its code), and call it: 200 "ran=42" where
 *              that memory is executable, else a fault (natively SIGSEGV: all of them are no-execute).
 *   /sgdt      200 "gdt=<base>": where the GDT is, which a process should not learn (UMIP makes sgdt
 *              fault; Linux emulates it for processes, with a base that tells nothing)
 *   /int3 /int80 /sysenter /wrmsr /lgdt /cli /hlt /wrfsbase /ud2
 *              instructions a process may not use (or that trap), each in a request of its own.
 *   anything else  404
 *
 * Natively (`req-attack /state /sysarea`) the harmless URLs run in one process; the others kill it
 * with SIGSEGV, SIGTRAP or SIGILL as they kill the request here.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>

#include "common.h"

#define SYSTEM_AREA_END 0x200000UL
#define SYSCALL_STUB 0x4000UL

static __thread long tls_value = 0x7715;
static long global_value = 0x6106;

/* mov $0x90c3050f, %eax; ret — the immediate holds 0f 05 (a `syscall` if decoded from there) then c3. */
__asm__(".text\n"
        ".globl gadget\n"
        ".type gadget, @function\n"
        "gadget: .byte 0xb8, 0x0f, 0x05, 0xc3, 0x90, 0xc3\n"
        ".size gadget, 6\n");
extern unsigned gadget(void);
extern char gadget_bytes[] __asm__("gadget");

static unsigned selector(int which)
{
	unsigned short v = 0;
	switch (which) {
	case 0: __asm__ volatile("mov %%cs, %0" : "=r"(v)); break;
	case 1: __asm__ volatile("mov %%ds, %0" : "=r"(v)); break;
	case 2: __asm__ volatile("mov %%es, %0" : "=r"(v)); break;
	case 3: __asm__ volatile("mov %%fs, %0" : "=r"(v)); break;
	case 4: __asm__ volatile("mov %%gs, %0" : "=r"(v)); break;
	default: __asm__ volatile("mov %%ss, %0" : "=r"(v)); break;
	}
	return v;
}

static void do_state(void)
{
	char body[256];
	int n = snprintf(body, sizeof body, "cs=%x ds=%x es=%x fs=%x gs=%x ss=%x tls=%lx global=%lx gadget=%x",
	                 selector(0), selector(1), selector(2), selector(3), selector(4), selector(5),
	                 *(volatile long *)&tls_value, *(volatile long *)&global_value, gadget());
	respond(200, "text/plain", body, (size_t)n, NULL);
}

static int efault, other;

static void count(long r)
{
	if (r == -1 && errno == EFAULT)
		efault++;
	else
		other++;
}

/* Every call that writes (or reads) guest memory for the guest, aimed at [addr, addr+len). */
static void attack_range(unsigned long addr, size_t len, int pipe_r, int pipe_w, int file)
{
	void *p = (void *)addr;
	if (write(pipe_w, "XXXXXXXXXXXXXXXX", len) != (ssize_t)len)
		other++;
	count(syscall(SYS_read, pipe_r, p, len));
	char drain[16];
	while (read(pipe_r, drain, sizeof drain) > 0)
		;
	count(syscall(SYS_pread64, file, p, len, 0));
	struct iovec iov = {p, len};
	count(syscall(SYS_readv, file, &iov, 1));
	count(syscall(SYS_getcwd, p, 256)); /* room for any cwd: a short buffer is ERANGE before EFAULT */
	count(syscall(SYS_uname, p));
	count(syscall(SYS_fstat, file, p));
	count(syscall(SYS_pipe2, p, 0));
	count(syscall(SYS_getrandom, p, len, 0));
	count(syscall(SYS_clock_gettime, CLOCK_REALTIME, p));
	count(syscall(SYS_write, pipe_w, p, len)); /* the host reading it for the guest */
	while (read(pipe_r, drain, sizeof drain) > 0)
		;
}

static void do_sysarea(void)
{
	int fds[2];
	if (pipe2(fds, O_NONBLOCK) != 0) {
		respond_str(500, "pipe2 failed");
		return;
	}
	int file = open("/proc/self/exe", O_RDONLY);
	efault = other = 0;
	for (unsigned long page = 0x1000; page < SYSTEM_AREA_END; page += 0x1000)
		attack_range(page, 8, fds[0], fds[1], file);
	attack_range(0xa088, 8, fds[0], fds[1], file);          /* a page-table entry */
	attack_range(SYSTEM_AREA_END - 8, 16, fds[0], fds[1], file); /* from the system area into user memory */
	close(fds[0]);
	close(fds[1]);
	close(file);
	char body[64];
	int n = snprintf(body, sizeof body, "efault=%d other=%d", efault, other);
	respond(200, "text/plain", body, (size_t)n, NULL);
}

static long result(long r)
{
	return r < 0 ? -errno : r;
}

static void do_offsets(void)
{
	const long big = 1L << 62;
	char buf[8];
	int file = open("/proc/self/exe", O_RDONLY);
	int fds[2];
	if (file < 0 || pipe2(fds, O_NONBLOCK) != 0) {
		respond_str(500, "open failed");
		return;
	}
	struct iovec iov = {buf, sizeof buf};
	long pread_r = result(syscall(SYS_pread64, file, buf, sizeof buf, big));
	long preadv_r = result(syscall(SYS_preadv, file, &iov, 1, big, 0));
	off_t off = big;
	long sendfile_r = result(syscall(SYS_sendfile, fds[1], file, &off, 8));
	long lseek_r = result(syscall(SYS_lseek, file, big, SEEK_SET));
	void *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, file, big);
	long mmap_r = m == MAP_FAILED ? -errno : 0;
	if (m != MAP_FAILED)
		munmap(m, 4096);
	close(fds[0]);
	close(fds[1]);
	close(file);
	char body[128];
	int n = snprintf(body, sizeof body, "pread=%ld preadv=%ld sendfile=%ld lseek=%ld mmap=%s", pread_r, preadv_r,
	                 sendfile_r, lseek_r, mmap_r ? "fail" : "ok");
	respond(200, "text/plain", body, (size_t)n, NULL);
}

static const unsigned char RET42[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3};

static void run_code(void *at)
{
	memcpy(at, RET42, sizeof RET42);
	int (*fn)(void) = (int (*)(void))at;
	__asm__ volatile("" : : "r"(at) : "memory"); /* the copy happens before the call */
	char body[32];
	int n = snprintf(body, sizeof body, "ran=%d", fn());
	respond(200, "text/plain", body, (size_t)n, NULL);
}

static void do_exec(const char *what)
{
	if (strcmp(what, "stack") == 0) {
		unsigned char code[64] __attribute__((aligned(16)));
		run_code(code);
	} else if (strcmp(what, "mmap") == 0) {
		void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		run_code(m);
	} else if (strcmp(what, "brk") == 0) {
		run_code(malloc(64));
	} else if (strcmp(what, "data") == 0) {
		static unsigned char data[64] __attribute__((aligned(16)));
		run_code(data);
	} else {
		run_code(malloc(1 << 20));
	}
}

/* get_meminfo is void in kvm_api.h; the host's answer is in rax all the same. */
extern long get_meminfo_result(void *info) __asm__("get_meminfo");

static void do_sysarea_api(void)
{
	efault = other = 0;
	for (unsigned long page = 0x1000; page < SYSTEM_AREA_END; page += 0x1000) {
		char *p = (char *)page;
		long r1 = (int)sys_http_find(0 /* the request */, "x-attack", 8, p, 64); /* the test sends X-Attack */
		long r2 = (long)sys_http_method(p, 64);
		long r3 = get_meminfo_result(p);
		efault += (r1 == -EFAULT) + (r2 == -EFAULT) + (r3 == -EFAULT);
		other += (r1 != -EFAULT) + (r2 != -EFAULT) + (r3 != -EFAULT);
	}
	char body[64];
	int n = snprintf(body, sizeof body, "efault=%d other=%d", efault, other);
	respond(200, "text/plain", body, (size_t)n, NULL);
}

static void do_compat(void)
{
	__asm__ volatile("push $0x23\n\t"
	                 "lea 1f(%%rip), %%rax\n\t"
	                 "push %%rax\n\t"
	                 "lretq\n"
	                 "1:\n\t"
	                 ".byte 0x0f, 0x0b" /* ud2, in 32-bit code */
	                 : : : "rax", "memory");
}

static void do_segments(void)
{
	unsigned short data = (unsigned short)selector(5), null = 0;
	__asm__ volatile("mov %0, %%fs\n\tmov %0, %%gs\n\tmov %0, %%ds\n\tmov %1, %%es" : : "r"(data), "r"(null) : "memory");
	respond_str(200, "loaded");
}

static void do_stubjump(void)
{
	long rax = SYS_getpid;
	__asm__ volatile("sub $128, %%rsp\n\t"      /* step over the red zone */
	                 "lea 1f(%%rip), %%rdx\n\t"
	                 "push %%rdx\n\t"          /* gadget+3 is `ret`: it comes back to 1: */
	                 "lea gadget+3(%%rip), %%rcx\n\t"
	                 "mov %[stub], %%rdx\n\t"
	                 "jmp *%%rdx\n"
	                 "1:\n\t"
	                 "add $128, %%rsp"
	                 : "+a"(rax)
	                 : [stub] "i"(SYSCALL_STUB)
	                 : "rcx", "rdx", "r11", "memory");
	respond_str(200, "jumped");
}

static int path_is(const char *url, const char *path)
{
	size_t n = strlen(path);
	return strncmp(url, path, n) == 0 && (url[n] == 0 || url[n] == '?');
}

static void on_request(const struct kvm_request *r)
{
	const char *u = r->url;
	if (path_is(u, "/state")) {
		do_state();
		return;
	}
	if (path_is(u, "/sysarea")) {
		do_sysarea();
		return;
	}
	if (path_is(u, "/execstack") || path_is(u, "/execmmap") || path_is(u, "/execheap") || path_is(u, "/execbrk") ||
	    path_is(u, "/execdata")) {
		do_exec(u + 5);
		return;
	}
	if (path_is(u, "/sgdt")) {
		struct __attribute__((packed)) { unsigned short limit; unsigned long base; } gdtr = {0, 0};
		__asm__ volatile("sgdt %0" : "=m"(gdtr));
		char body[48];
		int n = snprintf(body, sizeof body, "gdt=%lx", gdtr.base);
		respond(200, "text/plain", body, (size_t)n, NULL);
		return;
	}
	if (path_is(u, "/sysarea-api")) {
		do_sysarea_api();
		return;
	}
	if (path_is(u, "/compat")) {
		do_compat();
		respond_str(200, "survived");
		return;
	}
	if (path_is(u, "/offsets")) {
		do_offsets();
		return;
	}
	if (path_is(u, "/segments")) {
		do_segments();
		return;
	}
	if (path_is(u, "/stubjump")) {
		do_stubjump();
		return;
	}
	/* The rest must never get past their instruction. */
	if (path_is(u, "/in"))
		__asm__ volatile("inb $0, %%al" : : : "rax");
	else if (path_is(u, "/in1"))
		__asm__ volatile("inl $1, %%eax" : : : "rax");
	else if (path_is(u, "/outport"))
		__asm__ volatile("outb %%al, $0x70" : : "a"(0));
	else if (path_is(u, "/int3"))
		__asm__ volatile("int3");
	else if (path_is(u, "/int80"))
		__asm__ volatile("int $0x80" : : "a"(SYS_getpid));
	else if (path_is(u, "/sysenter"))
		__asm__ volatile("sysenter");
	else if (path_is(u, "/wrmsr"))
		__asm__ volatile("wrmsr" : : "c"(0xc0000082), "a"(0x1000), "d"(0));
	else if (path_is(u, "/lgdt")) {
		struct __attribute__((packed)) { unsigned short limit; unsigned long base; } gdtr = {0xfff, 0x200000};
		__asm__ volatile("lgdt %0" : : "m"(gdtr));
	} else if (path_is(u, "/cli"))
		__asm__ volatile("cli");
	else if (path_is(u, "/hlt"))
		__asm__ volatile("hlt");
	else if (path_is(u, "/wrfsbase"))
		__asm__ volatile("wrfsbase %0\n\twrgsbase %0" : : "r"(0x1000UL));
	else if (path_is(u, "/ud2"))
		__asm__ volatile("ud2");
	else {
		respond_str(404, "unknown url");
		return;
	}
	respond_str(200, "survived");
}

int main(int argc, char **argv)
{
	(void)gadget_bytes;
	if (native_mode()) {
		struct kvm_request r;
		for (int i = 1; i < argc || i == 1; i++) {
			native_request(&r, "GET", i < argc ? argv[i] : "/state", NULL, 0);
			on_request(&r);
			putchar('\n');
		}
		return 0;
	}
	set_backend_request(on_request);
	wait_for_requests();
}
