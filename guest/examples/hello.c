/*
 * hello — the smallest program that serves requests, in the paused-loop style: main() initialises,
 * then loops on wait_for_requests_paused(); the VM is frozen at that call and every request resumes
 * a fresh copy of it right after the call.
 *
 *   in tskvm:   any request → 200 text/plain "Hello from tskvm: <METHOD> <URL>\n"
 *   natively:   hello [URL]  → the same text for GET URL (default /) on stdout
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kvm_api.h"

static char greeting[64];

static int answer(char *out, size_t size, const char *method, int method_len, const char *url, int url_len)
{
	return snprintf(out, size, "%s: %.*s %.*s\n", greeting, method_len, method, url_len, url);
}

int main(int argc, char **argv)
{
	/* Initialisation happens once, before the freeze: every request sees its result for free. */
	snprintf(greeting, sizeof greeting, "Hello from tskvm");
	char out[4096];
	if (!kvm_is_sandboxed()) {
		const char *url = argc > 1 ? argv[1] : "/";
		fwrite(out, 1, answer(out, sizeof out, "GET", 3, url, (int)strlen(url)), stdout);
		return 0;
	}
	for (;;) {
		struct kvm_request req;
		wait_for_requests_paused(&req);
		int n = answer(out, sizeof out, req.method, req.method_len, req.url, req.url_len);
		backend_response(200, "text/plain", 10, out, (size_t)n);
	}
}
