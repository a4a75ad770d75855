/*
 * req-paused — the event-loop style: main loops on wait_for_requests_paused(&req) and answers each
 * request with (text/plain, status 200, no trailing newline)
 *
 *   paused:<method> <url> <count>
 *
 * where count is a static counter incremented per request: always 1 with ephemeral request VMs (each
 * request starts from the frozen state, where it is 0), 1, 2, 3… in one non-ephemeral VM.
 *
 * Natively: `req-paused [URL...]` handles each URL as a GET in one process (count goes 1, 2, …).
 */
#include "common.h"

static unsigned long count; /* global, not a local: in a non-ephemeral VM memory persists, registers do not */

static void handle(const struct kvm_request *req)
{
	char body[512];
	count++;
	int n = snprintf(body, sizeof body, "paused:%.*s %.*s %lu", req->method_len, req->method, req->url_len,
	                 req->url, count);
	respond(200, "text/plain", body, n < (int)sizeof body ? (size_t)n : sizeof body - 1, NULL);
}

int main(int argc, char **argv)
{
	struct kvm_request req;
	if (native_mode()) {
		for (int i = 1; i < argc || i == 1; i++) {
			native_request(&req, "GET", i < argc ? argv[i] : "/", NULL, 0);
			handle(&req);
			putchar('\n');
		}
		return 0;
	}
	for (;;) {
		wait_for_requests_paused(&req); /* frozen here; each request resumes here with req filled in */
		handle(&req);
	}
}
