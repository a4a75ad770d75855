/*
 * block.h — block_in(CALL): block in one system call that, in a single-threaded process with no
 * signal coming, never returns (an empty pipe whose write end the process holds, a full pipe whose
 * read end it holds, a sleep of ~31 000 years, poll and select with no timeout, pause, a futex wait
 * with a timeout of ~31 000 years). Shared by block.c (a plain program: `timeout 1 block CALL` exits
 * 124 natively, `tskvm run --timeout 1` must too) and requests/blocking.c (a request handler: the
 * request must end with a timeout at max_request_time).
 *
 * Returns only if the call returned (which is the failure the tests look for), with its result, or
 * -1000 for an unknown CALL. wait4 is the exception: with no child it returns -1 (ECHILD) at once,
 * natively and in tskvm, and is here to show it does not block.
 */
#ifndef BLOCK_H
#define BLOCK_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* linux/futex.h is not in musl's headers. */
#define BLOCK_FUTEX_WAIT_PRIVATE 128

#define BLOCK_CALLS "nanosleep clock_nanosleep clock_nanosleep_abs pause read readv write writev poll ppoll select pselect6 futex"

static long block_in(const char *call)
{
	static char big[1 << 20];
	static int futex_word;
	struct timespec forever = { .tv_sec = 1000000000000L, .tv_nsec = 0 };
	int fds[2];
	if (pipe(fds) != 0)
		return -errno;
	int r = fds[0], w = fds[1];
	struct iovec iov = { .iov_base = big, .iov_len = sizeof big };
	struct pollfd pfd = { .fd = r, .events = POLLIN };
	fd_set readable;
	FD_ZERO(&readable);
	FD_SET(r, &readable);

	if (!strcmp(call, "nanosleep"))
		return nanosleep(&forever, NULL);
	if (!strcmp(call, "clock_nanosleep"))
		return clock_nanosleep(CLOCK_MONOTONIC, 0, &forever, NULL);
	if (!strcmp(call, "clock_nanosleep_abs"))
		return clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &forever, NULL);
	if (!strcmp(call, "pause"))
		return pause();
	if (!strcmp(call, "read"))
		return read(r, big, 1);
	if (!strcmp(call, "readv"))
		return readv(r, &iov, 1);
	if (!strcmp(call, "write"))
		return write(w, big, sizeof big); /* more than a pipe holds (64 KiB) */
	if (!strcmp(call, "writev"))
		return writev(w, &iov, 1);
	if (!strcmp(call, "poll"))
		return poll(&pfd, 1, -1);
	if (!strcmp(call, "ppoll"))
		return ppoll(&pfd, 1, NULL, NULL);
	if (!strcmp(call, "select"))
		return select(r + 1, &readable, NULL, NULL, NULL);
	if (!strcmp(call, "pselect6"))
		return pselect(r + 1, &readable, NULL, NULL, NULL, NULL);
	if (!strcmp(call, "futex"))
		return syscall(SYS_futex, &futex_word, BLOCK_FUTEX_WAIT_PRIVATE, 0, &forever, NULL, 0);
	if (!strcmp(call, "wait4"))
		return wait4(-1, NULL, 0, NULL) == -1 && errno == ECHILD ? -ECHILD : -1;
	return -1000;
}

#endif
