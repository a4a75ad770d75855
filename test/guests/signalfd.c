/*
 * signalfd — signalfd(2) and signalfd4(2), printing what each call returns and what each read finds
 * (signal, code, whether pid and uid are the process's; never a time), so the output natively and
 * under tskvm must be identical.
 *
 *   signalfd [PART...]   parts: read update errors poll timer threads restart (default: all of them)
 *   signalfd block       blocks forever in a read of a signalfd: `timeout 0.5 signalfd block` exits 124
 *                        natively, and so must tskvm
 *   signalfd orphan      the main thread exits (pthread_exit) while another waits in a read for the
 *                        SIGALRM of an itimer, which then ends the process
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* The hostile calls are meant: bad sizes and pointers. */
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wnonnull"
#pragma GCC diagnostic ignored "-Wpragmas"

#include "show.h"

static const char *code_name(int code)
{
	static char other[16];
	switch (code) {
	case SI_USER: return "SI_USER";
	case SI_TKILL: return "SI_TKILL";
	case SI_KERNEL: return "SI_KERNEL";
	case SI_TIMER: return "SI_TIMER";
	case SI_QUEUE: return "SI_QUEUE";
	}
	snprintf(other, sizeof other, "%d", code);
	return other;
}

/* One signalfd_siginfo, its deterministic fields. */
static void show_info(const struct signalfd_siginfo *si)
{
	printf("  signo %u errno %d code %s", si->ssi_signo, si->ssi_errno, code_name(si->ssi_code));
	if (si->ssi_code == SI_USER || si->ssi_code == SI_TKILL)
		printf(" pid %s uid %s", si->ssi_pid == (uint32_t)getpid() ? "self" : "other",
		       si->ssi_uid == (uint32_t)getuid() ? "self" : "other");
	else
		printf(" pid %u uid %u", si->ssi_pid, si->ssi_uid);
	printf("\n");
}

/* A read of `fd` into room for `n` records: its result, then each record. */
static void read_show(const char *what, int fd, int n)
{
	struct signalfd_siginfo si[4];
	memset(si, 0xa5, sizeof si);
	ssize_t r = read(fd, si, sizeof si[0] * (size_t)n);
	SHOW(what, r);
	for (ssize_t i = 0; r > 0 && i < r / (ssize_t)sizeof si[0]; i++)
		show_info(&si[i]);
}

static sigset_t set_of(int a, int b)
{
	sigset_t s;
	sigemptyset(&s);
	if (a)
		sigaddset(&s, a);
	if (b)
		sigaddset(&s, b);
	return s;
}

static void show_pending(const char *what)
{
	sigset_t p;
	sigpending(&p);
	printf("%s: USR1 %d USR2 %d ALRM %d WINCH %d\n", what, sigismember(&p, SIGUSR1), sigismember(&p, SIGUSR2),
	       sigismember(&p, SIGALRM), sigismember(&p, SIGWINCH));
}

static void tgkill_self(int sig)
{
	syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig);
}

static void part_read(void)
{
	puts("== read");
	sigset_t mask = set_of(SIGUSR1, SIGUSR2);
	int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	SHOW("signalfd(-1, USR1|USR2, NONBLOCK|CLOEXEC) >= 0", fd >= 0 ? 0 : -1);
	printf("F_GETFL %#o FD_CLOEXEC %d\n", fcntl(fd, F_GETFL) & (O_ACCMODE | O_NONBLOCK), fcntl(fd, F_GETFD));
	read_show("read empty", fd, 1);
	raise(SIGUSR1);
	read_show("read after raise(USR1)", fd, 1);
	kill(getpid(), SIGUSR2);
	read_show("read after kill(USR2)", fd, 1);
	tgkill_self(SIGUSR2);
	read_show("read after tgkill(USR2)", fd, 1);
	/* The thread's own first, then the process's, each lowest number first: USR2, then USR1. */
	kill(getpid(), SIGUSR1);
	tgkill_self(SIGUSR2);
	show_pending("both pending");
	read_show("read both into room for 4", fd, 4);
	show_pending("after");
	read_show("read empty again", fd, 4);
	/* A second instance of a pending standard signal is merged. */
	raise(SIGUSR1);
	raise(SIGUSR1);
	read_show("read after raise(USR1) twice", fd, 4);
	/* Room for one: the other stays pending. */
	raise(SIGUSR1);
	kill(getpid(), SIGUSR2);
	read_show("read one of two", fd, 1);
	read_show("read the other", fd, 1);
	/* Signals outside the mask are not read. */
	sigset_t alrm = set_of(SIGALRM, 0);
	sigprocmask(SIG_BLOCK, &alrm, NULL);
	raise(SIGALRM);
	read_show("read with only ALRM pending", fd, 1);
	show_pending("ALRM");
	struct timespec zero = { 0, 0 };
	SHOW("sigtimedwait(ALRM)", sigtimedwait(&alrm, NULL, &zero));
	sigprocmask(SIG_UNBLOCK, &alrm, NULL);
	/* An ignored signal that is blocked is still queued: a signalfd reads it. */
	sigset_t winch = set_of(SIGWINCH, 0);
	int wfd = signalfd(-1, &winch, SFD_NONBLOCK);
	raise(SIGWINCH);
	show_pending("WINCH raised");
	read_show("read WINCH (default: ignored)", wfd, 1);
	close(wfd);
	/* A blocking signalfd with a signal pending does not wait. */
	int b = signalfd(-1, &mask, 0);
	raise(SIGUSR2);
	read_show("blocking read with one pending", b, 2);
	SHOW("write", write(b, "12345678", 8));
	SHOW("lseek", lseek(b, 0, SEEK_CUR));
	fcntl(b, F_SETFL, O_NONBLOCK);
	read_show("read after F_SETFL O_NONBLOCK", b, 1);
	close(b);
	/* Short buffers. */
	struct signalfd_siginfo si;
	SHOW("read into 0 bytes", read(fd, &si, 0));
	SHOW("read into 127 bytes, nothing pending", read(fd, &si, 127));
	raise(SIGUSR1);
	SHOW("read into 127 bytes, USR1 pending", read(fd, &si, 127));
	SHOW("read into 8 bytes", read(fd, &si, 8));
	show_pending("still pending");
	/* A buffer outside user space: EFAULT before anything is taken. */
	SHOW("read into a kernel address", read(fd, (void *)-4096L, 128));
	show_pending("still pending");
	read_show("read", fd, 1);
	close(fd);
}

static void part_update(void)
{
	puts("== update");
	sigset_t mask = set_of(SIGUSR1, 0);
	int fd = signalfd(-1, &mask, SFD_NONBLOCK);
	raise(SIGUSR2);
	read_show("USR1 fd, USR2 pending", fd, 1);
	sigset_t usr2 = set_of(SIGUSR2, 0);
	SHOW("signalfd(fd, USR2) == fd", signalfd(fd, &usr2, 0) == fd ? 0 : -1);
	read_show("after the update", fd, 1);
	raise(SIGUSR1);
	read_show("USR1 pending, USR2 fd", fd, 1);
	/* The flags of an update are checked, never applied. */
	SHOW("signalfd4(fd, USR1, CLOEXEC) == fd", syscall(SYS_signalfd4, fd, &mask, 8, SFD_CLOEXEC) == fd ? 0 : -1);
	printf("FD_CLOEXEC %d\n", fcntl(fd, F_GETFD));
	read_show("back to USR1", fd, 1);
	/* The old syscall, with no flags. */
	SHOW("signalfd(fd, USR2) (syscall 282) == fd", syscall(SYS_signalfd, fd, &usr2, 8) == fd ? 0 : -1);
	raise(SIGUSR2);
	read_show("read", fd, 1);
	int old = syscall(SYS_signalfd, -1, &mask, 8);
	SHOW("signalfd(-1) (syscall 282) >= 0", old >= 0 ? 0 : -1);
	printf("F_GETFL %#o\n", fcntl(old, F_GETFL) & (O_ACCMODE | O_NONBLOCK));
	close(old);
	/* A full mask: SIGKILL and SIGSTOP are dropped from it, silently. */
	sigset_t all;
	sigfillset(&all);
	SHOW("signalfd(fd, all) == fd", signalfd(fd, &all, 0) == fd ? 0 : -1);
	raise(SIGUSR1);
	read_show("read with the full mask", fd, 1);
	close(fd);
}

static void part_errors(void)
{
	puts("== errors");
	sigset_t mask = set_of(SIGUSR1, 0);
	SHOW("signalfd4 size 4", syscall(SYS_signalfd4, -1, &mask, 4, 0));
	SHOW("signalfd4 size 16", syscall(SYS_signalfd4, -1, &mask, 16, 0));
	SHOW("signalfd4 size 0", syscall(SYS_signalfd4, -1, &mask, 0, 0));
	SHOW("signalfd4 size SIZE_MAX", syscall(SYS_signalfd4, -1, &mask, SIZE_MAX, 0));
	SHOW("signalfd4 size 1<<40", syscall(SYS_signalfd4, -1, &mask, 1UL << 40, 0));
	SHOW("signalfd size 4", syscall(SYS_signalfd, -1, &mask, 4));
	SHOW("signalfd4 flags 1", syscall(SYS_signalfd4, -1, &mask, 8, 1));
	SHOW("signalfd4 flags O_RDWR", syscall(SYS_signalfd4, -1, &mask, 8, O_RDWR));
	SHOW("signalfd4 flags -1", syscall(SYS_signalfd4, -1, &mask, 8, -1));
	SHOW("signalfd4 mask NULL", syscall(SYS_signalfd4, -1, NULL, 8, 0));
	SHOW("signalfd4 mask (void *)16", syscall(SYS_signalfd4, -1, (void *)16, 8, 0));
	SHOW("signalfd4 mask kernel address", syscall(SYS_signalfd4, -1, (void *)-4096L, 8, 0));
	SHOW("signalfd4 mask at the end of user space", syscall(SYS_signalfd4, -1, (void *)0x7ffffffffffcL, 8, 0));
	SHOW("signalfd mask NULL", syscall(SYS_signalfd, -1, NULL, 8));
	/* Linux's order: the size, then the mask, then the flags, then the fd. */
	SHOW("bad size and bad mask", syscall(SYS_signalfd4, -1, NULL, 4, 0));
	SHOW("bad mask and bad flags", syscall(SYS_signalfd4, -1, NULL, 8, 1));
	SHOW("bad flags and bad fd", syscall(SYS_signalfd4, 999, &mask, 8, 1));
	SHOW("fd 999 (not open)", syscall(SYS_signalfd4, 999, &mask, 8, 0));
	SHOW("fd -2", syscall(SYS_signalfd4, -2, &mask, 8, 0));
	SHOW("fd INT_MIN", syscall(SYS_signalfd4, (long)(int)0x80000000, &mask, 8, 0));
	SHOW("fd 0 (not a signalfd)", syscall(SYS_signalfd4, 0, &mask, 8, 0));
	int e = eventfd(0, 0);
	SHOW("an eventfd", syscall(SYS_signalfd4, e, &mask, 8, 0));
	close(e);
	/* The fd argument is an int: the upper half of the register is not looked at. */
	SHOW("fd -1 with upper bits >= 0", syscall(SYS_signalfd4, 0x1ffffffffL, &mask, 8, SFD_NONBLOCK) >= 0 ? 0 : -1);
}

static void part_poll(void)
{
	puts("== poll");
	sigset_t mask = set_of(SIGUSR1, SIGUSR2);
	int fd = signalfd(-1, &mask, SFD_NONBLOCK);
	struct pollfd pfd = { .fd = fd, .events = POLLIN | POLLOUT };
	SHOW("poll empty", poll(&pfd, 1, 0));
	printf("revents %#x\n", pfd.revents);
	raise(SIGWINCH); /* blocked, but not in the mask */
	SHOW("poll with another signal pending", poll(&pfd, 1, 0));
	sigset_t winch = set_of(SIGWINCH, 0);
	struct timespec zero = { 0, 0 };
	SHOW("sigtimedwait(WINCH)", sigtimedwait(&winch, NULL, &zero));
	raise(SIGUSR1);
	SHOW("poll with USR1 pending", poll(&pfd, 1, 0));
	printf("revents %#x\n", pfd.revents);
	fd_set rd, wr;
	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_SET(fd, &rd);
	FD_SET(fd, &wr);
	struct timeval tv = { 0, 0 };
	SHOW("select", select(fd + 1, &rd, &wr, NULL, &tv));
	printf("readable %d writable %d\n", FD_ISSET(fd, &rd), FD_ISSET(fd, &wr));

	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x5151 };
	SHOW("epoll_ctl ADD", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
	struct epoll_event out[2];
	memset(out, 0, sizeof out);
	SHOW("epoll_wait with USR1 pending", epoll_wait(ep, out, 2, 0));
	printf("events %#x data %#llx\n", out[0].events, (unsigned long long)out[0].data.u64);
	read_show("read", fd, 1);
	SHOW("poll after the read", poll(&pfd, 1, 0));
	SHOW("epoll_wait after the read", epoll_wait(ep, out, 2, 0));
	kill(getpid(), SIGUSR2);
	SHOW("epoll_wait after kill(USR2)", epoll_wait(ep, out, 2, 0));
	read_show("read", fd, 1);
	SHOW("epoll_wait empty", epoll_wait(ep, out, 2, 0));
	/* A signalfd in an epoll set that a second signalfd watches nothing of. */
	sigset_t other = set_of(SIGUSR2, 0);
	int fd2 = signalfd(-1, &other, SFD_NONBLOCK);
	ev.data.u64 = 0x5252;
	epoll_ctl(ep, EPOLL_CTL_ADD, fd2, &ev);
	raise(SIGUSR1);
	memset(out, 0, sizeof out);
	SHOW("epoll_wait, USR1 pending, two signalfds", epoll_wait(ep, out, 2, 0));
	printf("data %#llx\n", (unsigned long long)out[0].data.u64);
	read_show("read", fd, 1);
	close(fd2);
	close(ep);
	close(fd);
}

static void part_timer(void)
{
	puts("== timer");
	sigset_t alrm = set_of(SIGALRM, 0);
	sigprocmask(SIG_BLOCK, &alrm, NULL);
	int fd = signalfd(-1, &alrm, 0);
	struct itimerval it = { .it_value = { 0, 30 * 1000 } };
	SHOW("setitimer 30 ms", setitimer(ITIMER_REAL, &it, NULL));
	read_show("blocking read until SIGALRM", fd, 2);
	SHOW("setitimer 30 ms", setitimer(ITIMER_REAL, &it, NULL));
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	SHOW("poll until SIGALRM", poll(&pfd, 1, 5000));
	printf("revents %#x\n", pfd.revents);
	read_show("read", fd, 1);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 7 };
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	SHOW("setitimer 30 ms", setitimer(ITIMER_REAL, &it, NULL));
	SHOW("epoll_wait until SIGALRM", epoll_wait(ep, &ev, 1, -1));
	read_show("read", fd, 1);
	close(ep);
	/* A POSIX timer: its id, overrun and value. */
	timer_t id;
	struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGALRM };
	sev.sigev_value.sival_ptr = (void *)0x2a;
	SHOW("timer_create", timer_create(CLOCK_MONOTONIC, &sev, &id));
	struct itimerspec its = { .it_value = { 0, 30 * 1000 * 1000 } };
	SHOW("timer_settime 30 ms", timer_settime(id, 0, &its, NULL));
	struct signalfd_siginfo si;
	SHOW("blocking read until the timer", read(fd, &si, sizeof si));
	printf("  signo %u code %s tid is the timer %d overrun %u int %d ptr %#llx\n", si.ssi_signo, code_name(si.ssi_code),
	       si.ssi_tid == (uint32_t)(intptr_t)id, si.ssi_overrun, si.ssi_int, (unsigned long long)si.ssi_ptr);
	timer_delete(id);
	close(fd);
	sigprocmask(SIG_UNBLOCK, &alrm, NULL);
}

static int thread_fd;
static volatile int reader_ready;

/* Blocks in a read of thread_fd (the mask blocked, as main() blocked it before), twice. */
static void *reader(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2; i++) {
		struct signalfd_siginfo si;
		__atomic_store_n(&reader_ready, i + 1, __ATOMIC_SEQ_CST);
		ssize_t r = read(thread_fd, &si, sizeof si);
		printf("reader: read = %s\n", res(r));
		if (r == sizeof si)
			show_info(&si);
	}
	return NULL;
}

/* Blocks in poll on thread_fd, then reads what woke it. */
static void *poller(void *arg)
{
	(void)arg;
	struct pollfd pfd = { .fd = thread_fd, .events = POLLIN };
	__atomic_store_n(&reader_ready, 1, __ATOMIC_SEQ_CST);
	int n = poll(&pfd, 1, -1);
	printf("poller: poll = %s revents %#x\n", res(n), pfd.revents);
	struct signalfd_siginfo si;
	ssize_t r = read(thread_fd, &si, sizeof si);
	printf("poller: read = %s\n", res(r));
	if (r == sizeof si)
		show_info(&si);
	return NULL;
}

static void wait_ready(int value)
{
	while (__atomic_load_n(&reader_ready, __ATOMIC_SEQ_CST) < value)
		sched_yield();
	/* Long enough for it to be in its read: the output is the same if it is not, only the wait is not tested. */
	struct timespec t = { 0, 50 * 1000 * 1000 };
	nanosleep(&t, NULL);
}

static void part_threads(void)
{
	puts("== threads");
	sigset_t mask = set_of(SIGUSR1, SIGUSR2);
	thread_fd = signalfd(-1, &mask, 0);
	pthread_t t;
	reader_ready = 0;
	pthread_create(&t, NULL, reader, NULL);
	/* Each result is shown once the woken thread has shown what it read. */
	wait_ready(1);
	int r = pthread_kill(t, SIGUSR1);
	wait_ready(2);
	printf("pthread_kill(reader, USR1) = %d\n", r);
	r = kill(getpid(), SIGUSR2);
	pthread_join(t, NULL);
	SHOW("kill(getpid(), USR2)", r);
	reader_ready = 0;
	pthread_create(&t, NULL, poller, NULL);
	wait_ready(1);
	r = pthread_kill(t, SIGUSR2);
	pthread_join(t, NULL);
	printf("pthread_kill(poller, USR2) = %d\n", r);
	show_pending("after the threads");
	close(thread_fd);
}

/* Reads the itimer's SIGALRM, then ends the process: nothing else is left to run. */
static void *orphan(void *arg)
{
	struct signalfd_siginfo si;
	ssize_t r = read(*(int *)arg, &si, sizeof si);
	printf("orphan: read = %s\n", res(r));
	if (r == sizeof si)
		show_info(&si);
	exit(0);
}

static void run_orphan(void)
{
	sigset_t alrm = set_of(SIGALRM, 0);
	sigprocmask(SIG_BLOCK, &alrm, NULL);
	static int fd;
	fd = signalfd(-1, &alrm, 0);
	pthread_t t;
	pthread_create(&t, NULL, orphan, &fd);
	struct timespec settle = { 0, 20 * 1000 * 1000 };
	nanosleep(&settle, NULL); /* the thread reaches its read */
	struct itimerval it = { .it_value = { 0, 50 * 1000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	puts("main: pthread_exit");
	pthread_exit(NULL);
}

static volatile int handled;
static int restart_fd;

static void on_alarm(int sig)
{
	(void)sig;
	handled++;
	if (handled == 2)
		raise(SIGUSR1); /* blocked: pending for the restarted read to find */
}

/* A blocking read that a handled signal interrupts: EINTR, or restarted under SA_RESTART. */
static void part_restart(void)
{
	puts("== restart");
	sigset_t mask = set_of(SIGUSR1, 0);
	restart_fd = signalfd(-1, &mask, 0);
	struct sigaction sa = { .sa_handler = on_alarm };
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { .it_value = { 0, 30 * 1000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	read_show("blocking read, SIGALRM handled", restart_fd, 1);
	printf("handled %d\n", handled);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	read_show("blocking read, SIGALRM handled with SA_RESTART", restart_fd, 1);
	printf("handled %d\n", handled);
	signal(SIGALRM, SIG_DFL);
	close(restart_fd);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Every thread blocks what the signalfds read (threads inherit it). */
	sigset_t mask = set_of(SIGUSR1, SIGUSR2);
	sigaddset(&mask, SIGWINCH);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	if (argc > 1 && !strcmp(argv[1], "block")) {
		int fd = signalfd(-1, &mask, 0);
		struct signalfd_siginfo si;
		puts("blocking in read");
		ssize_t r = read(fd, &si, sizeof si);
		printf("read returned %zd\n", r);
		return 1;
	}
	if (argc > 1 && !strcmp(argv[1], "orphan"))
		run_orphan();
	static const struct { const char *name; void (*run)(void); } parts[] = {
		{ "read", part_read }, { "update", part_update }, { "errors", part_errors }, { "poll", part_poll },
		{ "timer", part_timer }, { "threads", part_threads }, { "restart", part_restart },
	};
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
		int wanted = argc < 2;
		for (int a = 1; a < argc; a++)
			wanted |= !strcmp(argv[a], parts[i].name);
		if (wanted)
			parts[i].run();
	}
	puts("== done");
	return 0;
}
