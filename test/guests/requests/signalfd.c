/*
 * req-signalfd — a signalfd made in main() (SIGUSR1 and SIGUSR2, non-blocking; both blocked), with
 * SIGUSR2 sent to the process before the freeze, used by requests. Each request reports what it sees,
 * or changes it, so a request that saw another's changes would answer differently.
 *
 *   /state    "ready=R read=S probe=P": R what poll finds (1: readable), S the signals one read takes
 *             (room for 4), P what a read takes after raise(SIGUSR1)
 *   /leave    raises SIGUSR1 and sends SIGUSR2 to the process, reads nothing: "left"
 *   /mask     sets the signalfd's mask to SIGALRM alone: "masked"
 *   /new      makes two more signalfds and leaves them open: "new"
 *   /wait     a blocking read of a new signalfd that nothing will make readable: never answers (a timeout)
 *
 * With SIGNALFD_KEEP=waiter in the environment, main() starts a second thread that blocks in a read
 * of a blocking signalfd of its own (SIGUSR1) when the program freezes; /waiter sends it SIGUSR1
 * (pthread_kill), then reads `done`, an eventfd the thread writes the signal it read to: "woken 10".
 * A fork's copy of the thread must wait on the fork's signalfd and see the fork's signals.
 *
 * Natively: `req-signalfd /state /leave /state` shows what a single process would see (the second
 * /state differs): the test compares each fork's /state with the first native one.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include "common.h"

static int sfd;
static int waiter_fd, done; /* SIGNALFD_KEEP=waiter */
static pthread_t waiter_thread;

static void *waiter(void *arg)
{
	(void)arg;
	for (;;) {
		struct signalfd_siginfo si;
		if (read(waiter_fd, &si, sizeof si) == sizeof si) {
			uint64_t v = si.ssi_signo;
			write(done, &v, 8);
		}
	}
	return NULL;
}

/* The signals one read takes, as "12,10", or "none" / "-errno". */
static void take(char *out, size_t size)
{
	struct signalfd_siginfo si[4];
	ssize_t r = read(sfd, si, sizeof si);
	if (r < 0) {
		snprintf(out, size, errno == EAGAIN ? "none" : "-%d", errno);
		return;
	}
	out[0] = 0;
	for (ssize_t i = 0; i < r / (ssize_t)sizeof si[0]; i++)
		snprintf(out + strlen(out), size - strlen(out), "%s%u", i ? "," : "", si[i].ssi_signo);
}

static void on_get(const char *url, const char *arg)
{
	(void)arg;
	char path[64], body[256];
	url_path(url, path, sizeof path);
	if (!strcmp(path, "/state")) {
		struct pollfd pfd = { .fd = sfd, .events = POLLIN };
		int ready = poll(&pfd, 1, 0);
		char got[64], probe[64];
		take(got, sizeof got);
		raise(SIGUSR1);
		take(probe, sizeof probe);
		snprintf(body, sizeof body, "ready=%d read=%s probe=%s", ready, got, probe);
		respond_str(200, body);
	} else if (!strcmp(path, "/leave")) {
		raise(SIGUSR1);
		kill(getpid(), SIGUSR2);
		respond_str(200, "left");
	} else if (!strcmp(path, "/mask")) {
		sigset_t alrm;
		sigemptyset(&alrm);
		sigaddset(&alrm, SIGALRM);
		respond_str(200, signalfd(sfd, &alrm, 0) == sfd ? "masked" : "mask failed");
	} else if (!strcmp(path, "/new")) {
		sigset_t mask;
		sigemptyset(&mask);
		sigaddset(&mask, SIGUSR1);
		int a = signalfd(-1, &mask, 0), b = signalfd(-1, &mask, SFD_NONBLOCK);
		respond_str(200, a >= 0 && b >= 0 ? "new" : "signalfd failed");
	} else if (!strcmp(path, "/wait")) {
		sigset_t mask;
		sigemptyset(&mask);
		sigaddset(&mask, SIGUSR1);
		int fd = signalfd(-1, &mask, 0);
		struct signalfd_siginfo si;
		snprintf(body, sizeof body, "read returned %zd", read(fd, &si, sizeof si));
		respond_str(200, body);
	} else if (!strcmp(path, "/waiter")) {
		uint64_t v = 0;
		pthread_kill(waiter_thread, SIGUSR1);
		read(done, &v, 8);
		snprintf(body, sizeof body, "woken %llu", (unsigned long long)v);
		respond_str(200, body);
	} else {
		respond_str(404, "no such path");
	}
}

int main(int argc, char **argv)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK);
	kill(getpid(), SIGUSR2);
	const char *keep = getenv("SIGNALFD_KEEP");
	if (keep && !strcmp(keep, "waiter")) {
		sigset_t usr1;
		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		waiter_fd = signalfd(-1, &usr1, 0);
		done = eventfd(0, 0);
		pthread_create(&waiter_thread, NULL, waiter, NULL);
		struct timespec settle = { 0, 50 * 1000 * 1000 };
		nanosleep(&settle, NULL); /* the thread reaches its read */
	}
	return serve_get(argc, argv, on_get, 1);
}
