/*
 * req-threads — threads in a request program.
 *
 * main() starts a helper thread that waits for jobs on a condition variable; it is alive when the
 * program freezes, so every request VM has it. Per request (GET):
 *   /sum?N       four threads made by the request each add a quarter of 1..N; the helper adds 1..N
 *                too; the answer is "threads 4 sum S helper H" (S and H both N(N+1)/2).
 *   /linger      starts a thread that waits forever, checks it exists (get_robust_list finds its tid)
 *                and answers "linger TID alive".
 *   /probe?TID   "TID alive" or "TID gone" (get_robust_list: ESRCH) — after a reset, a thread
 *                a request started is gone.
 * Natively: `req-threads URL...` handles each URL in one process.
 */
#include <errno.h>
#include <pthread.h>
#include <sys/syscall.h>

#include "common.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t job_ready = PTHREAD_COND_INITIALIZER, job_done = PTHREAD_COND_INITIALIZER;
static long job = -1, job_result;

static long sum_to(long from, long to)
{
	long s = 0;
	for (long i = from; i <= to; i++)
		s += i;
	return s;
}

static void *helper(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	for (;;) {
		while (job < 0)
			pthread_cond_wait(&job_ready, &lock);
		job_result = sum_to(1, job);
		job = -1;
		pthread_cond_broadcast(&job_done);
	}
	return NULL;
}

static long ask_helper(long n)
{
	pthread_mutex_lock(&lock);
	job = n;
	pthread_cond_signal(&job_ready);
	while (job >= 0)
		pthread_cond_wait(&job_done, &lock);
	long r = job_result;
	pthread_mutex_unlock(&lock);
	return r;
}

struct part { long from, to, sum; };

static void *add_part(void *arg)
{
	struct part *p = arg;
	p->sum = sum_to(p->from, p->to);
	return NULL;
}

static pthread_mutex_t never_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static volatile pid_t linger_tid;

static void *linger(void *arg)
{
	(void)arg;
	linger_tid = (pid_t)syscall(SYS_gettid);
	pthread_mutex_lock(&never_lock);
	for (;;)
		pthread_cond_wait(&never, &never_lock);
	return NULL;
}

static int alive(long tid)
{
	void *head;
	size_t len;
	return syscall(SYS_get_robust_list, tid, &head, &len) == 0;
}

static void on_get(const char *url, const char *arg)
{
	char path[64], body[128];
	const char *param = request_param(url, arg);
	url_path(url, path, sizeof path);
	if (strcmp(path, "/sum") == 0) {
		long n = atol(param);
		struct part parts[4];
		pthread_t t[4];
		for (int i = 0; i < 4; i++) {
			parts[i] = (struct part){ n * i / 4 + 1, n * (i + 1) / 4, 0 };
			if (pthread_create(&t[i], NULL, add_part, &parts[i]) != 0) {
				respond_str(500, "pthread_create failed");
				return;
			}
		}
		long s = 0;
		for (int i = 0; i < 4; i++) {
			pthread_join(t[i], NULL);
			s += parts[i].sum;
		}
		snprintf(body, sizeof body, "threads 4 sum %ld helper %ld\n", s, ask_helper(n));
	} else if (strcmp(path, "/linger") == 0) {
		pthread_t t;
		linger_tid = 0;
		pthread_create(&t, NULL, linger, NULL);
		while (linger_tid == 0)
			sched_yield();
		snprintf(body, sizeof body, "linger %d %s\n", (int)linger_tid, alive(linger_tid) ? "alive" : "gone");
	} else if (strcmp(path, "/probe") == 0) {
		snprintf(body, sizeof body, "%ld %s\n", atol(param), alive(atol(param)) ? "alive" : "gone");
	} else {
		respond_str(404, "unknown path\n");
		return;
	}
	respond_str(200, body);
}

int main(int argc, char **argv)
{
	pthread_t h;
	pthread_create(&h, NULL, helper, NULL);
	return serve_get(argc, argv, on_get, 0);
}
