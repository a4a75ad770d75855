/*
 * req-events — event descriptors made in main() and used by requests: an eventfd (counter 5 at the
 * freeze), a semaphore eventfd (2), a timerfd armed in main() (a one-shot that expires 50 ms after
 * it is set) and an epoll set watching both eventfds and the timerfd. Each request reports what it
 * sees, then changes all of it, so a request that saw another's changes would answer differently.
 *
 *   /state     "count=C sem=S ready=R timer=T": the counter and semaphore read whole (then put
 *              back as they were, so /state itself changes nothing a later /state sees), R the
 *              watches epoll_wait reports (sorted data values), T the timer's expirations so far
 *              (waiting up to 1 s for the first, so 1)
 *   /mess      reads and writes everything, re-arms the timer far away, removes and adds watches,
 *              makes new eventfds, timerfds, epoll sets and socket pairs and leaves them open, then
 *              answers "messed"
 *   /wait      epoll_wait with no timeout on a new, empty set: never answers (a timeout)
 *   /sockets   a socketpair ping-pong within the request: "pong N"
 *   /ticks     the expirations of a 10 ms interval timer main() armed, read whole: every request
 *              counts from main(), so a later request reads more
 *   /watches?frozen, /watches?new
 *              adds watches to the set main() made, or to a new one, until one fails: each a
 *              different (fd, file) pair whose fd is closed at once (the watch stays, as its file
 *              lives on): "added N, then ERRNO" (each watch costs tskvm a host fd, so it bounds them)
 *
 * With EVENTS_KEEP=socket in the environment, main() also leaves a socket pair open, which no
 * request VM can share: the program must fail to load. With EVENTS_KEEP=waiter, main() starts a
 * second thread that waits in epoll_wait (on a set of its own, watching an eventfd `wake`) when the
 * program freezes; /waiter writes `wake`, then reads `done`, which that thread writes once woken:
 * "woken 1". A fork's copy of the thread must wait on the fork's set, not the frozen program's.
 *
 * Natively: `req-events /state /mess /state` shows what a single process would see (the second
 * /state differs): the test compares each fork's /state with the first native one.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include "common.h"

static int counter, semaphore, timer, ep, ticker;
static int wake, done, waitset; /* EVENTS_KEEP=waiter */

/* A second thread, parked in epoll_wait when main() freezes: it answers each wake with a done. */
static void *waiter(void *arg)
{
	(void)arg;
	for (;;) {
		struct epoll_event ev;
		uint64_t v;
		if (epoll_wait(waitset, &ev, 1, -1) == 1 && read(wake, &v, 8) == 8)
			write(done, &v, 8);
	}
	return NULL;
}

static void state(char *out, size_t size)
{
	uint64_t count = 0, sem = 0, ticks = 0, one;
	/* The whole counter, then put back. */
	if (read(counter, &count, 8) == 8 && count)
		write(counter, &count, 8);
	while (read(semaphore, &one, 8) == 8)
		sem += one;
	if (sem) {
		uint64_t back = sem;
		write(semaphore, &back, 8);
	}
	/* The timer expired 50 ms after main() set it: wait for that (without reading it) if need be. */
	struct pollfd pfd = { .fd = timer, .events = POLLIN };
	int expired = poll(&pfd, 1, 1000) == 1;
	struct epoll_event ev[8];
	int n = epoll_wait(ep, ev, 8, 0);
	uint64_t seen[8];
	for (int i = 0; i < n; i++)
		seen[i] = ev[i].data.u64;
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (seen[j] < seen[i]) {
				uint64_t x = seen[i];
				seen[i] = seen[j];
				seen[j] = x;
			}
	char ready[64] = "";
	for (int i = 0; i < n; i++)
		snprintf(ready + strlen(ready), sizeof ready - strlen(ready), "%s%llu", i ? "," : "", (unsigned long long)seen[i]);
	if (!expired || read(timer, &ticks, 8) != 8)
		ticks = 0;
	snprintf(out, size, "count=%llu sem=%llu ready=%s timer=%llu", (unsigned long long)count, (unsigned long long)sem,
	         n >= 0 ? ready : "error", (unsigned long long)ticks);
}

static void mess(void)
{
	uint64_t v = 1000;
	write(counter, &v, 8);
	read(semaphore, &v, 8);
	read(semaphore, &v, 8);
	struct itimerspec far = { .it_value = { 3600, 0 } };
	timerfd_settime(timer, 0, &far, NULL);
	epoll_ctl(ep, EPOLL_CTL_DEL, counter, NULL);
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 99 };
	int extra = eventfd(7, 0);
	epoll_ctl(ep, EPOLL_CTL_ADD, extra, &e);
	e.data.u64 = 98;
	epoll_ctl(ep, EPOLL_CTL_MOD, semaphore, &e);
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	write(sv[0], "left over", 9);
	epoll_create1(0);
	timerfd_create(CLOCK_MONOTONIC, 0);
	close(counter); /* comes back at the reset */
}

static void on_get(const char *url, const char *arg)
{
	(void)arg;
	char path[64], body[256];
	url_path(url, path, sizeof path);
	if (!strcmp(path, "/state")) {
		state(body, sizeof body);
		respond_str(200, body);
	} else if (!strcmp(path, "/mess")) {
		mess();
		respond_str(200, "messed");
	} else if (!strcmp(path, "/wait")) {
		struct epoll_event ev;
		int empty = epoll_create1(0);
		int n = epoll_wait(empty, &ev, 1, -1);
		snprintf(body, sizeof body, "epoll_wait returned %d", n);
		respond_str(200, body);
	} else if (!strcmp(path, "/waiter")) {
		uint64_t v = 1;
		write(wake, &v, 8);
		v = 0;
		read(done, &v, 8);
		snprintf(body, sizeof body, "woken %llu", (unsigned long long)v);
		respond_str(200, body);
	} else if (!strcmp(path, "/ticks")) {
		uint64_t ticks = 0;
		read(ticker, &ticks, 8);
		snprintf(body, sizeof body, "%llu", (unsigned long long)ticks);
		respond_str(200, body);
	} else if (!strcmp(path, "/watches")) {
		int set = strcmp(request_param(url, arg), "new") ? ep : epoll_create1(0);
		int files[2] = { eventfd(0, 0), eventfd(0, 0) };
		int added = 0, error = 0;
		for (int f = 0; f < 2 && !error; f++)
			for (int fd = 100; fd < 1000 && !error; fd++) {
				struct epoll_event e = { .events = EPOLLIN, .data.u64 = (uint64_t)fd };
				if (dup2(files[f], fd) != fd || epoll_ctl(set, EPOLL_CTL_ADD, fd, &e) != 0)
					error = errno;
				else
					added++;
				close(fd);
			}
		snprintf(body, sizeof body, "added %d, then %s", added, error == ENOSPC ? "ENOSPC" : error ? "another error" : "none");
		respond_str(200, body);
	} else if (!strcmp(path, "/sockets")) {
		int sv[2];
		char buf[16];
		int rounds = 0;
		socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv);
		for (int i = 0; i < 10; i++) {
			send(sv[0], "ping", 4, 0);
			if (recv(sv[1], buf, sizeof buf, 0) == 4 && send(sv[1], "pong", 4, 0) == 4 && recv(sv[0], buf, sizeof buf, 0) == 4)
				rounds++;
		}
		close(sv[0]);
		close(sv[1]);
		snprintf(body, sizeof body, "pong %d", rounds);
		respond_str(200, body);
	} else {
		respond_str(404, "no such path");
	}
}

int main(int argc, char **argv)
{
	counter = eventfd(5, EFD_NONBLOCK);
	semaphore = eventfd(2, EFD_NONBLOCK | EFD_SEMAPHORE);
	timer = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec soon = { .it_value = { 0, 50 * 1000 * 1000 } };
	timerfd_settime(timer, 0, &soon, NULL);
	ticker = timerfd_create(CLOCK_BOOTTIME, 0);
	struct itimerspec every = { .it_value = { 0, 10 * 1000 * 1000 }, .it_interval = { 0, 10 * 1000 * 1000 } };
	timerfd_settime(ticker, 0, &every, NULL);
	ep = epoll_create1(0);
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 1 };
	epoll_ctl(ep, EPOLL_CTL_ADD, counter, &e);
	e.data.u64 = 2;
	epoll_ctl(ep, EPOLL_CTL_ADD, semaphore, &e);
	e.data.u64 = 3;
	epoll_ctl(ep, EPOLL_CTL_ADD, timer, &e);
	const char *keep = getenv("EVENTS_KEEP");
	int sv[2];
	if (keep && !strcmp(keep, "socket"))
		socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	if (keep && !strcmp(keep, "waiter")) {
		wake = eventfd(0, 0);
		done = eventfd(0, 0);
		waitset = epoll_create1(0);
		struct epoll_event w = { .events = EPOLLIN };
		epoll_ctl(waitset, EPOLL_CTL_ADD, wake, &w);
		pthread_t t;
		pthread_create(&t, NULL, waiter, NULL);
		struct timespec settle = { 0, 50 * 1000 * 1000 };
		nanosleep(&settle, NULL); /* the thread reaches its epoll_wait */
	}
	return serve_get(argc, argv, on_get, 1);
}
