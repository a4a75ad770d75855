/*
 * req-fuzz — the guest half of the syscall fuzzer (test/fuzz/syscalls.ts). Any-method handler
 * (register_func 3); the parameter is `arg`, else the URL's query.
 *
 *   /run?SEED,COUNT   COUNT calls, each a Linux syscall (numbers 0–460 and a few that do not exist) or,
 *                     one time in ten, a guest-API hypercall (every one kvm_api.h has, and two it has not;
 *                     one in ten of them one that ends the request), with six
 *                     arguments each drawn, from a xorshift64 generator seeded with SEED, out of:
 *                     boundary integers (0, 1, -1, 2^31, 2^32, 2^53 ± 1, 2^63, 2^64 - 1, small numbers
 *                     for fds and flags) and pointers into every region (the null page, each part of
 *                     the hypervisor's area, a valid buffer, valid path strings, the last bytes before
 *                     an unmapped page, the shared region, past the end of memory). The same SEED makes
 *                     the same calls. Calls that block or end the program are left out (see SKIP).
 *                     200 "calls=COUNT" when all were made (a call may also end the request: a fault,
 *                     a response, a handler return).
 *   /check            200, the FNV-1a of the globals and the pool as main() left them (a fresh fork's
 *                     answer is the reference), then " fds=" and the fds 0–63 that are open.
 */
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>

#include "common.h"

#define POOL_SIZE (64u << 10)

static unsigned char pool[POOL_SIZE] __attribute__((aligned(4096)));
static uint64_t g_state = 0x5eed;
static char *g_heap;

/*
 * Left out: calls that end the process, and calls that block, whose deadline is not enforced yet. With
 * no pipe or socket made, read and write never block (stdin is empty, stdout a sink, files are files).
 */
static const int SKIP[] = {
	SYS_pipe, SYS_pipe2, SYS_socketpair, SYS_socket, SYS_eventfd, SYS_eventfd2, SYS_mknod, SYS_mknodat,
	SYS_pause, SYS_nanosleep, SYS_clock_nanosleep, SYS_poll, SYS_ppoll, SYS_select, SYS_pselect6,
	SYS_epoll_wait, SYS_epoll_pwait, SYS_epoll_pwait2, SYS_futex, SYS_wait4, SYS_waitid,
	SYS_exit, SYS_exit_group, SYS_kill, SYS_tkill, SYS_tgkill, SYS_rt_sigsuspend, SYS_rt_sigtimedwait,
	SYS_msgrcv, SYS_semop, SYS_semtimedop, SYS_mq_timedreceive, SYS_io_getevents, SYS_io_pgetevents,
	SYS_flock, SYS_rt_sigreturn,
};

static uint64_t next(void)
{
	g_state ^= g_state << 13;
	g_state ^= g_state >> 7;
	g_state ^= g_state << 17;
	return g_state;
}

static int skipped(long nr)
{
	for (size_t i = 0; i < sizeof SKIP / sizeof SKIP[0]; i++)
		if (SKIP[i] == nr)
			return 1;
	return 0;
}

static uint64_t shared_start, shared_end;

static uint64_t argument(void)
{
	static const uint64_t ints[] = {
		0, 1, 2, 3, 4, 5, 8, 16, 64, 4096, 0x7fffffff, 0x80000000ULL, 0xffffffffULL, 0x100000000ULL,
		(1ULL << 53) - 1, 1ULL << 53, (1ULL << 53) + 1, 1ULL << 62, 1ULL << 63, ~0ULL, ~0ULL - 1,
		(uint64_t)-4096, (uint64_t)-100 /* AT_FDCWD */,
	};
	static const uint64_t system[] = {
		0x0, 0x8, 0x1000, 0x2000, 0x3000, 0x4000, 0x40a0, 0x5000, 0x6ff8, 0x8000, 0x9000, 0xa088, 0xb000,
		0xf000, 0x10000, 0x1ffff8,
	};
	switch (next() % 8) {
	case 0:
	case 1:
		return ints[next() % (sizeof ints / sizeof ints[0])];
	case 2:
		return system[next() % (sizeof system / sizeof system[0])];
	case 3:
	case 4:
		return (uint64_t)(pool + next() % POOL_SIZE);
	case 5: /* a path string in the pool */
		return (uint64_t)(pool + 64 * (next() % 4));
	case 6: {
		static const uint64_t edges[] = {0x7fffffffffffULL, 0x800000000000ULL, 0x100000000ULL, 0x200000, 0x1fffff};
		uint64_t e = next() % 3;
		if (e == 0 && shared_end > shared_start)
			return shared_start + next() % (shared_end - shared_start);
		if (e == 1)
			return (uint64_t)g_heap + 4096 - 1 - next() % 16; /* near the end of a heap block */
		return edges[next() % (sizeof edges / sizeof edges[0])];
	}
	default:
		return next();
	}
}

static long raw_syscall(long nr, uint64_t a[6])
{
	register long r10 __asm__("r10") = (long)a[3];
	register long r8 __asm__("r8") = (long)a[4];
	register long r9 __asm__("r9") = (long)a[5];
	long ret;
	__asm__ volatile("syscall"
	                 : "=a"(ret)
	                 : "a"(nr), "D"(a[0]), "S"(a[1]), "d"(a[2]), "r"(r10), "r"(r8), "r"(r9)
	                 : "rcx", "r11", "memory");
	return ret;
}

static long raw_hypercall(long nr, uint64_t a[6])
{
	register long rcx __asm__("rcx") = (long)a[3];
	register long r8 __asm__("r8") = (long)a[4];
	register long r9 __asm__("r9") = (long)a[5];
	long ret;
	__asm__ volatile("out %%eax, $0"
	                 : "=a"(ret), "+r"(rcx), "+r"(r8), "+r"(r9)
	                 : "a"(nr), "D"(a[0]), "S"(a[1]), "d"(a[2])
	                 : "r10", "r11", "memory");
	return ret;
}

static void run(uint64_t seed, uint64_t count)
{
	g_state = seed ? seed : 1;
	for (uint64_t i = 0; i < count; i++) {
		long nr;
		int hyper = next() % 10 == 0;
		if (hyper) {
			/* Calls that end the request (a response, a handler return, a pause) one time in ten. */
			static const long api[] = {0x10000, 0x10005, 0x10020, 0x10021, 0x10022, 0x10023, 0x10030,
			                           0x10031, 0x10032, 0x10033, 0x10035, 0x10700, 0x10703, 0x10A00,
			                           0x7F000, 0x7FDEB, 0x10034, 0x10101};
			static const long ending[] = {0x10001, 0x10002, 0x10010, 0x7ffff};
			nr = next() % 10 == 0 ? ending[next() % 4] : api[next() % (sizeof api / sizeof api[0])];
		} else {
			uint64_t r = next() % 100;
			nr = r == 0 ? (long)next() : r == 1 ? 500 + (long)(next() % 500) : (long)(next() % 461);
			if (skipped(nr))
				continue;
		}
		uint64_t a[6];
		for (int j = 0; j < 6; j++)
			a[j] = argument();
		if (hyper)
			raw_hypercall(nr, a);
		else
			raw_syscall(nr, a);
	}
	char body[32];
	int n = snprintf(body, sizeof body, "calls=%llu", (unsigned long long)count);
	respond(200, "text/plain", body, (size_t)n, NULL);
}

static void check(void)
{
	uint64_t h = fnv1a(FNV_INIT, pool, POOL_SIZE);
	h = fnv1a(h, &g_state, sizeof g_state);
	h = fnv1a(h, g_heap, 4096);
	char body[512];
	int n = snprintf(body, sizeof body, "%016llx fds=", (unsigned long long)h);
	for (int fd = 0; fd < 64 && n < (int)sizeof body - 4; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n += snprintf(body + n, sizeof body - (size_t)n, "%d,", fd);
	respond(200, "text/plain", body, (size_t)n, NULL);
}

static void on_request(const struct kvm_request *r)
{
	const char *param = request_param(r->url, r->arg);
	if (strncmp(r->url, "/check", 6) == 0) {
		check();
		return;
	}
	unsigned long long seed = 1, count = 100;
	sscanf(param, "%llu,%llu", &seed, &count);
	run(seed, count);
}

int main(void)
{
	/* Path strings the fuzzer points at, then a pattern. */
	static const char *paths[] = {"/proc/self/exe", ".", "/", "/tmp/tskvm-fuzz"};
	for (size_t i = 4 * 64; i < POOL_SIZE; i++)
		pool[i] = (unsigned char)(i * 131);
	for (int i = 0; i < 4; i++)
		strcpy((char *)pool + 64 * i, paths[i]);
	g_heap = malloc(4096);
	memset(g_heap, 0x5a, 4096);
	if (native_mode()) {
		fprintf(stderr, "req-fuzz only runs in tskvm\n");
		return 1;
	}
	/*
	 * Event objects main() leaves open (fds 3-5), for the fuzzed calls' small fds to land on: every
	 * fork has its own, which its reset must put back. Non-blocking, so that reads and writes of them
	 * do not wait (unless a call clears O_NONBLOCK: then the request ends at its deadline).
	 */
	int efd = eventfd(1, EFD_NONBLOCK);
	timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 7 };
	epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
	struct shared_memory_info area = shared_memory_area();
	shared_start = (uint64_t)area.ptr;
	shared_end = (uint64_t)area.end;
	set_backend_request(on_request);
	wait_for_requests();
}
