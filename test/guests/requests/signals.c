/*
 * req-signals — signal state a request changes does not reach the next request; main()'s does.
 * main() installs a SIGUSR1 handler and arms a POSIX timer an hour away. Any-method handler
 * (register_func 3), text/plain, status 200:
 *
 *   /install   a SIGUSR2 handler, SIGTERM blocked, an alternate stack         ("installed")
 *   /pending   SIGUSR1 blocked and raised: pending when the request ends       ("pending")
 *   /arm       SIGALRM (default action: death) in 100 ms, and a POSIX timer    ("armed")
 *   /caught    SIGSEGV to a handler that jumps back                            ("caught 11")
 *   /state     waits 200 ms, then one line of what it finds:
 *              "usr2=<handler set> blocked=<mask has SIGTERM or SIGUSR1> pending=<any> itimer=<armed>
 *               altstack=<enabled> timers=<POSIX timers beyond main's> main_timer=<armed> main_handler=<runs>"
 */
#include "common.h"
#include <setjmp.h>
#include <signal.h>
#include <sys/time.h>
#include <time.h>

static volatile int main_hits;
static timer_t main_timer;
static sigjmp_buf jump;
static char alt[65536];

static void on_usr1(int sig) { (void)sig; main_hits++; }
static void on_usr2(int sig) { (void)sig; }
static void on_segv(int sig) { siglongjmp(jump, sig); }

static void on_request(const struct kvm_request *r)
{
	char buf[64];
	const char *path = url_path(r->url, buf, sizeof buf);
	if (!strcmp(path, "/install")) {
		signal(SIGUSR2, on_usr2);
		sigset_t s;
		sigemptyset(&s);
		sigaddset(&s, SIGTERM);
		sigprocmask(SIG_BLOCK, &s, NULL);
		stack_t ss = { .ss_sp = alt, .ss_size = sizeof alt };
		sigaltstack(&ss, NULL);
		respond_str(200, "installed");
	} else if (!strcmp(path, "/pending")) {
		sigset_t s;
		sigemptyset(&s);
		sigaddset(&s, SIGUSR1);
		sigprocmask(SIG_BLOCK, &s, NULL);
		raise(SIGUSR1);
		respond_str(200, "pending");
	} else if (!strcmp(path, "/arm")) {
		setitimer(ITIMER_REAL, &(struct itimerval){ .it_value = { 0, 100 * 1000 } }, NULL);
		timer_t t;
		struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGTERM };
		timer_create(CLOCK_MONOTONIC, &sev, &t);
		timer_settime(t, 0, &(struct itimerspec){ .it_value = { 0, 100 * 1000 * 1000 } }, NULL);
		respond_str(200, "armed");
	} else if (!strcmp(path, "/caught")) {
		signal(SIGSEGV, on_segv);
		int sig = sigsetjmp(jump, 1);
		if (sig == 0) *(volatile int *)(uintptr_t)r->url_len = 1; /* a small address: the null page */
		char out[32];
		snprintf(out, sizeof out, "caught %d", sig);
		respond_str(200, out);
	} else {
		nanosleep(&(struct timespec){ 0, 200 * 1000 * 1000 }, NULL);
		struct sigaction usr2;
		sigaction(SIGUSR2, NULL, &usr2);
		sigset_t blocked, pending;
		sigprocmask(SIG_SETMASK, NULL, &blocked);
		sigpending(&pending);
		struct itimerval it;
		getitimer(ITIMER_REAL, &it);
		stack_t ss;
		sigaltstack(NULL, &ss);
		/* timer ids are handed out from 0: main's is 0, a request's would be 1 */
		struct itimerspec other, mine;
		int others = timer_gettime((timer_t)(intptr_t)1, &other) == 0;
		timer_gettime(main_timer, &mine);
		int before = main_hits;
		raise(SIGUSR1);
		char out[256];
		snprintf(out, sizeof out, "usr2=%d blocked=%d pending=%d itimer=%d altstack=%d timers=%d main_timer=%d main_handler=%d",
			 usr2.sa_handler != SIG_DFL, sigismember(&blocked, SIGTERM) || sigismember(&blocked, SIGUSR1),
			 !sigisemptyset(&pending), it.it_value.tv_sec || it.it_value.tv_usec, !(ss.ss_flags & SS_DISABLE), others,
			 mine.it_value.tv_sec > 0, main_hits == before + 1);
		respond_str(200, out);
	}
}

int main(void)
{
	signal(SIGUSR1, on_usr1);
	struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1 };
	timer_create(CLOCK_MONOTONIC, &sev, &main_timer);
	timer_settime(main_timer, 0, &(struct itimerspec){ .it_value = { 3600, 0 } }, NULL);
	set_backend_request(on_request);
	wait_for_requests();
}
