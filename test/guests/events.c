/*
 * events — epoll, eventfd, timerfd and socketpair, printing what each call returns (results and
 * errnos, never times), so the output natively and under tskvm must be identical.
 *
 *   events [PART...]   parts: eventfd timerfd epoll sockets hostile threads (default: all of them)
 *   events block CALL  blocks forever in CALL (epoll_wait, epoll_pwait, eventfd, timerfd, recv, recvmsg,
 *                      send): `timeout 0.5 events block CALL` exits 124 natively, and so must tskvm
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
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The hostile calls are meant: bad sizes and pointers. */
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wnonnull"
#pragma GCC diagnostic ignored "-Wpragmas"

#include "show.h"

static uint64_t u64;
/* An address no program may use: the null page (volatile, so the compiler does not warn of it). */
static void *volatile bad = (void *)16;

static void part_eventfd(void)
{
	puts("== eventfd");
	int e = eventfd(3, EFD_NONBLOCK);
	SHOW("eventfd(3, NONBLOCK) >= 0", e >= 0 ? 0 : -1);
	SHOW("read", read(e, &u64, 8));
	printf("value %llu\n", (unsigned long long)u64);
	SHOW("read empty", read(e, &u64, 8));
	u64 = 5;
	SHOW("write 5", write(e, &u64, 8));
	u64 = 7;
	SHOW("write 7", write(e, &u64, 8));
	SHOW("read short buffer", read(e, &u64, 4));
	SHOW("write short buffer", write(e, &u64, 4));
	u64 = UINT64_MAX;
	SHOW("write UINT64_MAX", write(e, &u64, 8));
	u64 = UINT64_MAX - 1 - 12;
	SHOW("write to the top", write(e, &u64, 8));
	u64 = 1;
	SHOW("write past the top", write(e, &u64, 8));
	uint64_t two[2];
	SHOW("read into 16 bytes", read(e, two, 16));
	printf("value %llu\n", (unsigned long long)two[0]);
	close(e);

	int s = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
	u64 = 0;
	SHOW("semaphore read", read(s, &u64, 8));
	printf("value %llu\n", (unsigned long long)u64);
	SHOW("semaphore read", read(s, &u64, 8));
	printf("value %llu\n", (unsigned long long)u64);
	SHOW("semaphore read empty", read(s, &u64, 8));
	struct pollfd pfd = { .fd = s, .events = POLLIN | POLLOUT };
	SHOW("poll empty semaphore", poll(&pfd, 1, 0));
	printf("revents %#x\n", pfd.revents);
	close(s);

	SHOW("eventfd2 bad flags", syscall(SYS_eventfd2, 0, 0x80));
	int b = eventfd(1, 0);
	SHOW("blocking read with a count", read(b, &u64, 8));
	int flags = fcntl(b, F_GETFL);
	printf("F_GETFL %#o\n", flags);
	fcntl(b, F_SETFL, flags | O_NONBLOCK);
	SHOW("read after F_SETFL O_NONBLOCK", read(b, &u64, 8));
	SHOW("lseek", lseek(b, 0, SEEK_SET));
	close(b);
}

static void part_timerfd(void)
{
	puts("== timerfd");
	int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	SHOW("timerfd_create >= 0", t >= 0 ? 0 : -1);
	SHOW("read disarmed", read(t, &u64, 8));
	struct itimerspec its = { .it_value = { 0, 20 * 1000 * 1000 } }, old;
	SHOW("settime one-shot 20 ms", timerfd_settime(t, 0, &its, &old));
	printf("old %ld.%09ld\n", (long)old.it_value.tv_sec, old.it_value.tv_nsec);
	SHOW("read before expiry", read(t, &u64, 8));
	struct pollfd pfd = { .fd = t, .events = POLLIN };
	SHOW("poll until expiry", poll(&pfd, 1, 5000));
	SHOW("read", read(t, &u64, 8));
	printf("expirations %llu\n", (unsigned long long)u64);
	SHOW("read again", read(t, &u64, 8));
	SHOW("read short", read(t, &u64, 7));

	its.it_value.tv_nsec = 5 * 1000 * 1000;
	its.it_interval.tv_nsec = 5 * 1000 * 1000;
	SHOW("settime interval 5 ms", timerfd_settime(t, 0, &its, NULL));
	struct timespec sleep = { 0, 30 * 1000 * 1000 };
	nanosleep(&sleep, NULL);
	SHOW("read", read(t, &u64, 8));
	printf("expirations >= 5: %d\n", u64 >= 5);
	struct itimerspec cur;
	SHOW("gettime", timerfd_gettime(t, &cur));
	printf("interval %ld.%09ld, armed %d\n", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec,
	       cur.it_value.tv_sec > 0 || cur.it_value.tv_nsec > 0);
	memset(&its, 0, sizeof its);
	SHOW("disarm", timerfd_settime(t, 0, &its, &old));
	printf("old interval %ld.%09ld\n", (long)old.it_interval.tv_sec, old.it_interval.tv_nsec);

	/* Absolute, in the past: expires at once. */
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	its.it_value.tv_sec = now.tv_sec - 1;
	SHOW("settime absolute, past", timerfd_settime(t, TFD_TIMER_ABSTIME, &its, NULL));
	SHOW("read", read(t, &u64, 8));
	printf("expirations %llu\n", (unsigned long long)u64);

	/* A blocking timerfd waits for its expiry. */
	int b = timerfd_create(CLOCK_REALTIME, 0);
	its.it_value.tv_sec = 0;
	its.it_value.tv_nsec = 10 * 1000 * 1000;
	timerfd_settime(b, 0, &its, NULL);
	SHOW("blocking read", read(b, &u64, 8));
	printf("expirations %llu\n", (unsigned long long)u64);
	close(b);

	SHOW("timerfd_create bad clock", timerfd_create(77, 0));
	SHOW("timerfd_create bad flags", timerfd_create(CLOCK_MONOTONIC, 0x10));
	SHOW("timerfd_create CLOCK_PROCESS_CPUTIME_ID", timerfd_create(CLOCK_PROCESS_CPUTIME_ID, 0));
	its.it_value.tv_nsec = 1000000000;
	SHOW("settime bad nsec", timerfd_settime(t, 0, &its, NULL));
	its.it_value.tv_nsec = 0;
	SHOW("settime bad flags", timerfd_settime(t, 0x100, &its, NULL));
	SHOW("settime bad new pointer", timerfd_settime(t, 0, bad, NULL));
	SHOW("settime bad old pointer", timerfd_settime(t, 0, &its, bad));
	SHOW("settime on stdin", timerfd_settime(0, 0, &its, NULL));
	SHOW("settime on a closed fd", timerfd_settime(999, 0, &its, NULL));
	SHOW("gettime bad pointer", timerfd_gettime(t, bad));
	SHOW("gettime on stdout", timerfd_gettime(1, &cur));
	SHOW("write", write(t, &u64, 8));
	close(t);
}

static void show_events(const char *what, int n, struct epoll_event *ev)
{
	printf("%s = %s:", what, res(n));
	/* Order by data, so the output does not depend on the host's ready-list order. */
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (ev[j].data.u64 < ev[i].data.u64) {
				struct epoll_event x = ev[i];
				ev[i] = ev[j];
				ev[j] = x;
			}
	for (int i = 0; i < n; i++)
		printf(" [%#llx %#x]", (unsigned long long)ev[i].data.u64, ev[i].events);
	putchar('\n');
}

static void part_epoll(void)
{
	puts("== epoll");
	struct epoll_event ev[8], e;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	SHOW("F_GETFD", fcntl(ep, F_GETFD));
	int p[2];
	pipe(p);
	int efd = eventfd(0, EFD_NONBLOCK);
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);

	e.events = EPOLLIN;
	e.data.u64 = 0x1111222233334444ULL;
	SHOW("add pipe (level)", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e));
	e.events = EPOLLIN | EPOLLET;
	e.data.u64 = 0xe7e7e7e7e7e7e7e7ULL;
	SHOW("add eventfd (edge)", epoll_ctl(ep, EPOLL_CTL_ADD, efd, &e));
	e.events = EPOLLIN | EPOLLONESHOT;
	e.data.u64 = 0x7;
	SHOW("add timerfd (oneshot)", epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &e));
	SHOW("add pipe again", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e));

	show_events("wait, nothing ready", epoll_wait(ep, ev, 8, 0), ev);
	show_events("wait 30 ms, nothing ready", epoll_wait(ep, ev, 8, 30), ev);

	write(p[1], "x", 1);
	u64 = 1;
	write(efd, &u64, 8);
	show_events("pipe and eventfd ready", epoll_wait(ep, ev, 8, -1), ev);
	show_events("again: level still, edge not", epoll_wait(ep, ev, 8, 0), ev);
	write(efd, &u64, 8);
	show_events("a new edge", epoll_wait(ep, ev, 8, 0), ev);
	show_events("maxevents 1", epoll_wait(ep, ev, 1, 0), ev);
	char c;
	read(p[0], &c, 1);
	show_events("pipe drained", epoll_wait(ep, ev, 8, 0), ev);

	struct itimerspec its = { .it_value = { 0, 10 * 1000 * 1000 }, .it_interval = { 0, 10 * 1000 * 1000 } };
	timerfd_settime(tfd, 0, &its, NULL);
	show_events("timer fires (oneshot)", epoll_wait(ep, ev, 8, 5000), ev);
	show_events("oneshot disabled", epoll_wait(ep, ev, 8, 40), ev);
	e.events = EPOLLIN | EPOLLONESHOT;
	e.data.u64 = 0x8;
	SHOW("mod re-arms", epoll_ctl(ep, EPOLL_CTL_MOD, tfd, &e));
	show_events("timer again", epoll_wait(ep, ev, 8, 5000), ev);
	SHOW("del timerfd", epoll_ctl(ep, EPOLL_CTL_DEL, tfd, NULL));
	SHOW("del timerfd again", epoll_ctl(ep, EPOLL_CTL_DEL, tfd, NULL));
	SHOW("mod timerfd", epoll_ctl(ep, EPOLL_CTL_MOD, tfd, &e));

	/* A closed fd whose file lives on in a dup stays in the set; closing the last one drops it. */
	int dup_fd = dup(p[0]);
	close(p[0]);
	write(p[1], "y", 1);
	show_events("closed, dup alive", epoll_wait(ep, ev, 8, 0), ev);
	SHOW("del by the dup", epoll_ctl(ep, EPOLL_CTL_DEL, dup_fd, NULL));
	SHOW("del by the closed fd", epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
	e.events = EPOLLIN;
	e.data.u64 = 0x2222;
	SHOW("add the dup", epoll_ctl(ep, EPOLL_CTL_ADD, dup_fd, &e));
	show_events("the old watch and the dup's", epoll_wait(ep, ev, 8, 0), ev);
	close(dup_fd);
	show_events("all closed", epoll_wait(ep, ev, 8, 0), ev);

	/* An epoll set in another, and the output side of a pipe. */
	int inner = epoll_create(1);
	e.events = EPOLLOUT;
	e.data.u64 = 0x3;
	SHOW("inner: add write end", epoll_ctl(inner, EPOLL_CTL_ADD, p[1], &e));
	e.events = EPOLLIN;
	e.data.u64 = 0x4;
	SHOW("add inner set", epoll_ctl(ep, EPOLL_CTL_ADD, inner, &e));
	SHOW("inner: add outer (a loop)", epoll_ctl(inner, EPOLL_CTL_ADD, ep, &e));
	show_events("outer sees inner ready", epoll_wait(ep, ev, 8, 0), ev);
	show_events("inner", epoll_wait(inner, ev, 8, 0), ev);
	struct pollfd pfd = { .fd = ep, .events = POLLIN };
	SHOW("poll on the set", poll(&pfd, 1, 0));
	e.events = EPOLLIN | EPOLLEXCLUSIVE;
	SHOW("exclusive on an epoll set", epoll_ctl(ep, EPOLL_CTL_ADD, efd, &e));
	SHOW("exclusive with oneshot", epoll_ctl(inner, EPOLL_CTL_ADD, efd, &(struct epoll_event){ .events = EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT }));
	SHOW("exclusive add", epoll_ctl(inner, EPOLL_CTL_ADD, efd, &(struct epoll_event){ .events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = 9 }));
	SHOW("exclusive mod", epoll_ctl(inner, EPOLL_CTL_MOD, efd, &(struct epoll_event){ .events = EPOLLIN }));
	close(inner);
	show_events("inner closed", epoll_wait(ep, ev, 8, 0), ev);

	sigset_t mask;
	sigemptyset(&mask);
	show_events("epoll_pwait", epoll_pwait(ep, ev, 8, 0, &mask), ev);
	struct timespec ts = { 0, 1000 * 1000 };
	u64 = 1;
	write(efd, &u64, 8);
	show_events("epoll_pwait2", (int)syscall(SYS_epoll_pwait2, ep, ev, 8, &ts, NULL, 8), ev);
	ts.tv_nsec = -1;
	show_events("epoll_pwait2 bad timeout", (int)syscall(SYS_epoll_pwait2, ep, ev, 8, &ts, NULL, 8), ev);
	SHOW("epoll_pwait bad sigsetsize", syscall(SYS_epoll_pwait, ep, ev, 8, 0, &mask, 4));
	close(ep);
	close(efd);
	close(tfd);
	close(p[1]);
}

static void part_sockets(void)
{
	puts("== sockets");
	int sv[2];
	char buf[64];
	SHOW("socketpair stream", socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	for (int i = 0; i < 3; i++) {
		SHOW("ping", write(sv[0], "ping", 4));
		SHOW("recv", recv(sv[1], buf, sizeof buf, 0));
		SHOW("pong", send(sv[1], "pong!", 5, 0));
		SHOW("read", read(sv[0], buf, sizeof buf));
	}
	send(sv[0], "ab", 2, 0);
	send(sv[0], "cd", 2, 0);
	SHOW("a stream joins sends", recv(sv[1], buf, sizeof buf, 0));
	SHOW("recv empty, MSG_DONTWAIT", recv(sv[1], buf, sizeof buf, MSG_DONTWAIT));
	send(sv[0], "peek", 4, 0);
	SHOW("MSG_PEEK", recv(sv[1], buf, sizeof buf, MSG_PEEK));
	SHOW("then recv", recv(sv[1], buf, sizeof buf, 0));
	printf("data %.4s\n", buf);
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof from;
	send(sv[1], "from", 4, 0);
	SHOW("recvfrom", recvfrom(sv[0], buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen));
	printf("address length %u\n", fromlen);
	SHOW("getsockname", getsockname(sv[0], (struct sockaddr *)&from, &(socklen_t){ sizeof from }));
	printf("family %d\n", from.ss_family);
	struct sockaddr_un to = { .sun_family = AF_UNIX, .sun_path = "/tmp/nowhere" };
	SHOW("sendto an address (stream)", sendto(sv[0], "x", 1, 0, (struct sockaddr *)&to, sizeof to));
	SHOW("shutdown write", shutdown(sv[0], SHUT_WR));
	SHOW("recv after peer shutdown", recv(sv[1], buf, sizeof buf, 0));
	SHOW("send after shutdown", send(sv[0], "x", 1, MSG_NOSIGNAL));
	SHOW("shutdown bad how", shutdown(sv[0], 7));
	close(sv[0]);
	SHOW("send to closed peer", send(sv[1], "x", 1, MSG_NOSIGNAL));
	close(sv[1]);

	for (int type = 0; type < 2; type++) {
		int t = type ? SOCK_SEQPACKET : SOCK_DGRAM;
		printf("-- %s\n", type ? "seqpacket" : "dgram");
		SHOW("socketpair", socketpair(AF_UNIX, t | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv));
		send(sv[0], "one", 3, 0);
		send(sv[0], "twotwo", 6, 0);
		send(sv[0], "", 0, 0);
		send(sv[0], "three", 5, 0);
		SHOW("recv one", recv(sv[1], buf, sizeof buf, 0));
		SHOW("recv two, truncated", recv(sv[1], buf, 3, 0));
		SHOW("recv empty message", recv(sv[1], buf, sizeof buf, 0));
		struct iovec iov[2] = { { buf, 2 }, { buf + 10, 10 } };
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2, .msg_name = &from, .msg_namelen = sizeof from };
		SHOW("recvmsg three", recvmsg(sv[1], &msg, 0));
		printf("%.2s|%.3s flags %#x namelen %u controllen %lu\n", buf, buf + 10, msg.msg_flags, msg.msg_namelen, (unsigned long)msg.msg_controllen);
		send(sv[0], "truncated", 9, 0);
		iov[0].iov_len = 4;
		msg.msg_iovlen = 1;
		SHOW("recvmsg truncated", recvmsg(sv[1], &msg, MSG_TRUNC));
		printf("flags %#x\n", msg.msg_flags);
		iov[0].iov_len = 5;
		iov[1].iov_len = 3;
		msg.msg_iovlen = 2;
		memcpy(buf, "hello", 5);
		memcpy(buf + 10, "abc", 3);
		msg.msg_name = NULL;
		SHOW("sendmsg gathers", sendmsg(sv[1], &msg, 0));
		SHOW("one message", recv(sv[0], buf + 20, sizeof buf - 20, 0));
		printf("%.8s\n", buf + 20);
		SHOW("recv empty", recv(sv[0], buf, sizeof buf, 0));
		SHOW("sendto an address", sendto(sv[0], "x", 1, 0, (struct sockaddr *)&to, sizeof to));
		struct sockaddr_un abstract = { .sun_family = AF_UNIX, .sun_path = "\0tskvm-test-nowhere" };
		SHOW("sendto an abstract address", sendto(sv[0], "x", 1, 0, (struct sockaddr *)&abstract, sizeof abstract));
		SHOW("sendto a bad address length", sendto(sv[0], "x", 1, 0, (struct sockaddr *)&to, 1));
		char control[32] = { 0 };
		msg.msg_control = control;
		msg.msg_controllen = 4;
		SHOW("sendmsg, control too short to hold one", sendmsg(sv[1], &msg, 0));
		recv(sv[0], buf, sizeof buf, 0);
		close(sv[0]);
		SHOW("send to closed peer", send(sv[1], "x", 1, MSG_NOSIGNAL));
		close(sv[1]);
	}

	/* Socket options. */
	int types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
	for (int i = 0; i < 3; i++) {
		int v = -1;
		socklen_t len = sizeof v;
		socketpair(AF_UNIX, types[i], 0, sv);
		SHOW("SO_TYPE", getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &v, &len));
		printf("type %d, len %u\n", v, len);
		getsockopt(sv[0], SOL_SOCKET, SO_DOMAIN, &v, &len);
		printf("domain %d\n", v);
		getsockopt(sv[0], SOL_SOCKET, SO_PROTOCOL, &v, &len);
		printf("protocol %d\n", v);
		close(sv[0]);
		close(sv[1]);
	}
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	int v = 0, got = 0;
	socklen_t len = sizeof v;
	SHOW("SO_ERROR", getsockopt(sv[0], SOL_SOCKET, SO_ERROR, &v, &len));
	printf("error %d\n", v);
	SHOW("SO_ACCEPTCONN", getsockopt(sv[0], SOL_SOCKET, SO_ACCEPTCONN, &v, &len));
	printf("accepting %d\n", v);
	v = 65536;
	SHOW("set SO_SNDBUF", setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof v));
	SHOW("get SO_SNDBUF", getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &got, &len));
	printf("sndbuf %d (twice what was set)\n", got);
	short two = 0;
	len = sizeof two;
	SHOW("SO_TYPE into 2 bytes", getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &two, &len));
	printf("type %d, len %u\n", two, len);
	len = (socklen_t)-1;
	SHOW("negative optlen", getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &v, &len));
	len = sizeof v;
	SHOW("bad optval", getsockopt(sv[0], SOL_SOCKET, SO_TYPE, bad, &len));
	SHOW("bad optlen", getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &v, bad));
	SHOW("unknown option", getsockopt(sv[0], SOL_SOCKET, 9999, &v, &len));
	SHOW("another level", getsockopt(sv[0], 6, 1, &v, &len));
	SHOW("set, short optlen", setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &v, 2));
	SHOW("set, negative optlen", setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &v, (socklen_t)-1));
	SHOW("set, bad optval", setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, bad, sizeof v));
	SHOW("set, unknown option", setsockopt(sv[0], SOL_SOCKET, 9999, &v, sizeof v));
	SHOW("set, another level", setsockopt(sv[0], 6, 1, &v, sizeof v));
	close(sv[0]);
	close(sv[1]);
	int pp[2];
	pipe(pp);
	SHOW("getsockopt on a pipe", getsockopt(pp[0], SOL_SOCKET, SO_TYPE, &v, &len));
	close(pp[0]);
	close(pp[1]);
	SHOW("getsockopt on a closed fd", getsockopt(99, SOL_SOCKET, SO_TYPE, &v, &len));

	SHOW("socketpair AF_INET6", socketpair(AF_INET6, SOCK_STREAM, 0, sv));
	SHOW("socketpair AF_INET", socketpair(AF_INET, SOCK_DGRAM, 0, sv));
	SHOW("socketpair family 200", socketpair(200, SOCK_STREAM, 0, sv));
	SHOW("socketpair bad type", socketpair(AF_UNIX, 9, 0, sv));
	SHOW("socketpair bad type flags", socketpair(AF_UNIX, SOCK_STREAM | 0x100, 0, sv));
	SHOW("socketpair bad protocol", socketpair(AF_UNIX, SOCK_STREAM, 6, sv));
	SHOW("socketpair bad pointer", socketpair(AF_UNIX, SOCK_STREAM, 0, bad));
	int p[2];
	pipe(p);
	SHOW("send on a pipe", send(p[1], "x", 1, 0));
	SHOW("recv on a closed fd", recv(99, buf, 1, 0));
	SHOW("shutdown a pipe", shutdown(p[0], SHUT_RDWR));
	close(p[0]);
	close(p[1]);
}

static void part_hostile(void)
{
	puts("== hostile");
	struct epoll_event e = { .events = EPOLLIN }, ev[4];
	int ep = epoll_create1(0);
	int efd = eventfd(0, 0);
	SHOW("epoll_create 0", epoll_create(0));
	SHOW("epoll_create -1", epoll_create(-1));
	SHOW("epoll_create1 bad flags", epoll_create1(1));
	SHOW("add itself", epoll_ctl(ep, EPOLL_CTL_ADD, ep, &e));
	SHOW("add a closed fd", epoll_ctl(ep, EPOLL_CTL_ADD, 99, &e));
	SHOW("on a closed epfd", epoll_ctl(99, EPOLL_CTL_ADD, efd, &e));
	SHOW("on an eventfd as epfd", epoll_ctl(efd, EPOLL_CTL_ADD, ep, &e));
	SHOW("bad op", epoll_ctl(ep, 9, efd, &e));
	SHOW("bad event pointer", epoll_ctl(ep, EPOLL_CTL_ADD, efd, bad));
	SHOW("del with a bad event pointer", epoll_ctl(ep, EPOLL_CTL_DEL, efd, bad));
	int file = open("/proc/self/exe", O_RDONLY);
	SHOW("add a regular file", epoll_ctl(ep, EPOLL_CTL_ADD, file, &e));
	close(file);
	SHOW("wait maxevents 0", epoll_wait(ep, ev, 0, 0));
	SHOW("wait maxevents -1", epoll_wait(ep, ev, -1, 0));
	SHOW("wait maxevents huge", epoll_wait(ep, ev, 0x7fffffff, 0));
	SHOW("wait, array beyond user space", epoll_wait(ep, (void *)0x7ffffffff000UL, 4096, 0));
	SHOW("wait on an eventfd", epoll_wait(efd, ev, 4, 0));
	SHOW("wait on a closed fd", epoll_wait(99, ev, 4, 0));
	SHOW("wait, NULL, nothing ready", epoll_wait(ep, NULL, 4, 0));
	e.data.u64 = 5;
	epoll_ctl(ep, EPOLL_CTL_ADD, efd, &e);
	u64 = 1;
	write(efd, &u64, 8);
	SHOW("wait, NULL, one ready", epoll_wait(ep, NULL, 4, 0));
	SHOW("wait, kernel address", epoll_wait(ep, (void *)0xffffffff80000000UL, 4, 0));
	SHOW("wait, negative timeout, ready", epoll_wait(ep, ev, 4, -7));
	SHOW("eventfd write, bad pointer", write(efd, bad, 8));
	SHOW("read on the epoll fd", read(ep, &u64, 8));
	SHOW("write on the epoll fd", write(ep, &u64, 8));
	/* Many watches, each its own dup. */
	int added = 0, first_error = 0;
	for (int i = 0; i < 300; i++) {
		int d = dup(efd);
		if (d < 0)
			break;
		e.data.u64 = (uint64_t)d;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, d, &e) == 0)
			added++;
		else if (!first_error)
			first_error = errno;
	}
	printf("dups added %d, first error %d\n", added, first_error);
	SHOW("wait 4 of them", epoll_wait(ep, ev, 4, 0));
	close(ep);
	close(efd);
}

/* The other thread of part_threads: wakes the main thread through each kind of object in turn. */
static int t_efd, t_sv[2], t_tfd;

static void *waker(void *arg)
{
	(void)arg;
	struct timespec pause = { 0, 20 * 1000 * 1000 };
	nanosleep(&pause, NULL);
	uint64_t one = 1;
	write(t_efd, &one, 8);
	nanosleep(&pause, NULL);
	send(t_sv[1], "wake", 4, 0);
	static char big[1 << 20];
	memset(big, 'z', sizeof big);
	nanosleep(&pause, NULL);
	/* More than the socket holds: the main thread's reads let it finish. A blocking send may return
	 * short (a signal can cut it natively; in tskvm a thread that would park after sending some does
	 * too), so it goes on as programs do. */
	for (size_t sent = 0; sent < sizeof big;) {
		ssize_t n = send(t_sv[1], big + sent, sizeof big - sent, 0);
		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	struct itimerspec soon = { .it_value = { 0, 20 * 1000 * 1000 } };
	timerfd_settime(t_tfd, 0, &soon, NULL);
	return NULL;
}

static void part_threads(void)
{
	puts("== threads");
	int ep = epoll_create1(0);
	t_efd = eventfd(0, 0);
	t_tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	socketpair(AF_UNIX, SOCK_STREAM, 0, t_sv);
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 42 }, ev;
	epoll_ctl(ep, EPOLL_CTL_ADD, t_efd, &e);
	pthread_t t;
	pthread_create(&t, NULL, waker, NULL);
	int n = epoll_wait(ep, &ev, 1, -1);
	printf("epoll_wait woken by the other thread: %d, data %llu\n", n, (unsigned long long)ev.data.u64);
	SHOW("read the eventfd", read(t_efd, &u64, 8));
	char buf[4096];
	SHOW("recv woken by the other thread", recv(t_sv[0], buf, 4, 0));
	size_t total = 0;
	ssize_t got;
	while (total < (1 << 20) && (got = recv(t_sv[0], buf, sizeof buf, 0)) > 0)
		total += (size_t)got;
	printf("received %zu bytes of a send larger than the buffer\n", total);
	SHOW("read the timerfd the other thread set", read(t_tfd, &u64, 8));
	printf("expirations %llu\n", (unsigned long long)u64);
	pthread_join(t, NULL);
	close(ep);
	close(t_efd);
	close(t_tfd);
	close(t_sv[0]);
	close(t_sv[1]);
}

static int block_in(const char *call)
{
	int ep = epoll_create1(0);
	int efd = eventfd(0, 0);
	int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	struct epoll_event e = { .events = EPOLLIN }, ev;
	epoll_ctl(ep, EPOLL_CTL_ADD, efd, &e);
	static char big[1 << 22];
	struct itimerspec its = { .it_value = { 1000000000L, 0 } };
	timerfd_settime(tfd, 0, &its, NULL);
	char c;
	struct iovec iov = { &c, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (!strcmp(call, "epoll_wait"))
		return epoll_wait(ep, &ev, 1, -1);
	if (!strcmp(call, "epoll_pwait"))
		return epoll_pwait(ep, &ev, 1, -1, NULL);
	if (!strcmp(call, "eventfd"))
		return read(efd, &u64, 8);
	if (!strcmp(call, "timerfd"))
		return read(tfd, &u64, 8);
	if (!strcmp(call, "recv"))
		return recv(sv[0], &c, 1, 0);
	if (!strcmp(call, "recvmsg"))
		return recvmsg(sv[0], &msg, MSG_WAITALL);
	if (!strcmp(call, "send"))
		return send(sv[0], big, sizeof big, 0); /* more than the socket buffers */
	return -1000;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 2 && !strcmp(argv[1], "block")) {
		printf("blocking in %s\n", argv[2]);
		int r = block_in(argv[2]);
		printf("%s returned %d\n", argv[2], r);
		return 2;
	}
	const char *all[] = { "eventfd", "timerfd", "epoll", "sockets", "hostile", "threads" };
	int n = argc > 1 ? argc - 1 : 6;
	for (int i = 0; i < n; i++) {
		const char *part = argc > 1 ? argv[i + 1] : all[i];
		if (!strcmp(part, "eventfd"))
			part_eventfd();
		else if (!strcmp(part, "timerfd"))
			part_timerfd();
		else if (!strcmp(part, "epoll"))
			part_epoll();
		else if (!strcmp(part, "sockets"))
			part_sockets();
		else if (!strcmp(part, "hostile"))
			part_hostile();
		else if (!strcmp(part, "threads"))
			part_threads();
		else
			return 1;
	}
	return 0;
}
