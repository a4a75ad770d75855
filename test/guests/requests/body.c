/*
 * req-body — POST handler (register_func 2) that answers (text/plain, status 200, no trailing newline)
 *
 *   len=<N> fnv=<64-bit FNV-1a of the body, 16 lowercase hex digits>
 *
 * A GET (no body) gets the same for the empty body: "len=0 fnv=cbf29ce484222325".
 * A GET whose URL ends in "/spin" never answers (a loop): the program has no on_error handler, so a
 * server answers such a request with its timeout status.
 * Natively: `req-body < FILE` prints the same line for stdin.
 */
#include <inttypes.h>

#include "common.h"

static void answer(const uint8_t *data, size_t len)
{
	char body[64];
	snprintf(body, sizeof body, "len=%zu fnv=%016" PRIx64, len, fnv1a(FNV_INIT, data, len));
	respond_str(200, body);
}

static void on_post(const char *url, const char *arg, const char *content_type, const uint8_t *data, size_t len)
{
	(void)url;
	(void)arg;
	(void)content_type;
	answer(data, len);
}

static void on_get(const char *url, const char *arg)
{
	(void)arg;
	size_t n = strlen(url);
	if (n >= 5 && strcmp(url + n - 5, "/spin") == 0)
		for (;;)
			__asm__ volatile("");
	answer(NULL, 0);
}

int main(void)
{
	if (native_mode()) {
		size_t len;
		uint8_t *data = read_stdin(&len);
		answer(data, len);
		putchar('\n');
		return 0;
	}
	set_backend_post(on_post);
	set_backend_get(on_get);
	wait_for_requests();
}
