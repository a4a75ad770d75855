/*
 * req-clock — answers "REALTIME_NS MONOTONIC_NS TIME_S" as this fork reads its clocks (the vDSO),
 * after touching `arg` MiB of fresh memory (so that a small req_mem_limit_after_reset forces the
 * fork's full reset, which must re-arm its clock).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "common.h"

static void on_request(const struct kvm_request *req)
{
	size_t mib = strtoul(req->arg, NULL, 10);
	volatile char *p = mib ? malloc(mib << 20) : NULL; /* volatile: the writes are kept although unread */
	for (size_t at = 0; p && at < mib << 20; at += 4096) p[at] = 1;
	struct timespec r, m;
	clock_gettime(CLOCK_REALTIME, &r);
	clock_gettime(CLOCK_MONOTONIC, &m);
	char out[96];
	int n = snprintf(out, sizeof out, "%lld %lld %lld", r.tv_sec * 1000000000LL + r.tv_nsec,
	                 m.tv_sec * 1000000000LL + m.tv_nsec, (long long)time(NULL));
	respond(200, "text/plain", out, (size_t)n, NULL);
}

int main(void)
{
	set_backend_request(on_request);
	wait_for_requests();
}
