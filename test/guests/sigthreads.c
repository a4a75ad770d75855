/*
 * sigthreads CASE — signals sent to the process (not to a thread) in a process with threads, as
 * Linux's complete_signal places them (test/threads.test.ts):
 *   sigwait   a thread waits in sigwait() for SIGUSR1, which every thread blocks; main sends it to
 *             the process with kill() three times
 *   timer     the same thread waits for SIGALRM from setitimer while main waits in pthread_join:
 *             every thread waits, and the timer's signal ends one wait
 *   pause     main blocks SIGUSR2, a thread that does not waits in pause(); kill() to the process
 *             interrupts that thread's pause, and its handler runs
 *   alarm     the same with SIGALRM from alarm-like setitimer: a timer's signal to the process goes
 *             to the thread that takes it
 *   spin      as pause, but main computes after kill() instead of joining at once: the other thread
 *             gets the CPU when main's time slice ends, and its handler runs before pause() returns
 *   timeout   sigtimedwait() in a thread for 30 ms with nothing sent: EAGAIN
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static sigset_t waitset;
static volatile int handled;
static void on_signal(int sig) { handled = sig; }

static void *waiter(void *arg)
{
	int rounds = *(int *)arg;
	for (int i = 0; i < rounds; i++) {
		int sig = 0;
		int r = sigwait(&waitset, &sig);
		printf("sigwait: r=%d sig=%d\n", r, sig);
	}
	return NULL;
}

static void *pauser(void *arg)
{
	(void)arg;
	sigset_t none;
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL); /* this thread takes what main blocks */
	int r = pause();
	printf("pause: r=%d errno=%s handled=%d\n", r, strerror(errno), handled);
	return NULL;
}

static void block(int sig)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void tick(int ms)
{
	struct itimerval t = { .it_value = { 0, ms * 1000 } };
	setitimer(ITIMER_REAL, &t, NULL);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	const char *c = argc > 1 ? argv[1] : "sigwait";
	pthread_t t;
	if (!strcmp(c, "sigwait") || !strcmp(c, "timer")) {
		int timer = !strcmp(c, "timer");
		int sig = timer ? SIGALRM : SIGUSR1;
		sigemptyset(&waitset);
		sigaddset(&waitset, sig);
		block(sig); /* the thread inherits the mask */
		int rounds = timer ? 2 : 3;
		pthread_create(&t, NULL, waiter, &rounds);
		for (int i = 0; i < rounds; i++) {
			usleep(20000);
			if (timer) tick(10);
			else kill(getpid(), sig);
		}
		pthread_join(t, NULL);
	} else if (!strcmp(c, "pause") || !strcmp(c, "alarm") || !strcmp(c, "spin")) {
		int sig = !strcmp(c, "alarm") ? SIGALRM : SIGUSR2;
		signal(sig, on_signal);
		block(sig);
		pthread_create(&t, NULL, pauser, NULL);
		usleep(20000);
		if (sig == SIGALRM) tick(10);
		else kill(getpid(), sig);
		if (!strcmp(c, "spin")) {
			/* 100 ms of computing, no system call (clock_gettime is the vDSO's) */
			struct timespec a, b;
			clock_gettime(CLOCK_MONOTONIC, &a);
			do clock_gettime(CLOCK_MONOTONIC, &b);
			while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < 100000000L);
		}
		pthread_join(t, NULL);
	} else if (!strcmp(c, "timeout")) {
		sigemptyset(&waitset);
		sigaddset(&waitset, SIGUSR1);
		block(SIGUSR1);
		signal(SIGUSR2, on_signal);
		struct timespec ts = { 0, 30 * 1000 * 1000 };
		int r = sigtimedwait(&waitset, NULL, &ts);
		printf("sigtimedwait alone: r=%d errno=%s\n", r, strerror(errno));
		pthread_create(&t, NULL, pauser, NULL); /* a second thread, parked in pause */
		usleep(10000);
		r = sigtimedwait(&waitset, NULL, &ts);
		printf("sigtimedwait beside a thread: r=%d errno=%s\n", r, strerror(errno));
		pthread_kill(t, SIGUSR2); /* ends the other thread's pause */
		pthread_join(t, NULL);
	} else {
		return 2;
	}
	puts("done");
	return 0;
}
