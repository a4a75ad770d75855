/*
 * clock — reads every clock the vDSO serves, and one it does not, then sleeps and reads again:
 *   vdso ADDRESS                 AT_SYSINFO_EHDR
 *   realtime NS                  clock_gettime(CLOCK_REALTIME), ns
 *   timeofday US, time S         gettimeofday(), time()
 *   monotonic NS, coarse NS      clock_gettime(CLOCK_MONOTONIC), (CLOCK_MONOTONIC_COARSE)
 *   cputime ok                   clock_gettime(CLOCK_PROCESS_CPUTIME_ID): the vDSO's syscall fallback
 *   slept NS                     CLOCK_MONOTONIC across nanosleep(20 ms)
 *   steps N                      1000 monotonic reads in a row, how many went backwards (0)
 */
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/time.h>
#include <time.h>

static long long ns(clockid_t id)
{
	struct timespec ts;
	if (clock_gettime(id, &ts) != 0) return -1;
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(void)
{
	printf("vdso %#lx\n", getauxval(AT_SYSINFO_EHDR));
	printf("realtime %lld\n", ns(CLOCK_REALTIME));
	struct timeval tv;
	gettimeofday(&tv, NULL);
	printf("timeofday %lld\n", tv.tv_sec * 1000000LL + tv.tv_usec);
	printf("time %lld\n", (long long)time(NULL));
	long long before = ns(CLOCK_MONOTONIC);
	printf("monotonic %lld\n", before);
	printf("coarse %lld\n", ns(CLOCK_MONOTONIC_COARSE));
	printf("cputime %s\n", ns(CLOCK_PROCESS_CPUTIME_ID) >= 0 ? "ok" : "failed");
	struct timespec d = { 0, 20000000 };
	nanosleep(&d, NULL);
	printf("slept %lld\n", ns(CLOCK_MONOTONIC) - before);
	int back = 0;
	long long last = ns(CLOCK_MONOTONIC);
	for (int i = 0; i < 1000; i++) {
		long long now = ns(CLOCK_MONOTONIC);
		back += now < last;
		last = now;
	}
	printf("steps %d\n", back);
	return 0;
}
