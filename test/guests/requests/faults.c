/*
 * req-faults — one GET handler (register_func 1) that misbehaves in the way the URL path says (the
 * query is ignored), and an on_error handler (register_func 5). Bodies are text/plain, no trailing
 * newline:
 *
 *   /ok             200 "ok"
 *   /crash          writes to NULL
 *   /crash-onerror  writes to NULL, and on_error, seeing this URL, writes to NULL too
 *   /loop           spins forever (the request timeout must end it)
 *   /bomb           malloc(1 MiB) + memset, forever: runs into max_request_memory; when malloc returns
 *                   NULL it writes through the NULL pointer
 *   /status99       backend_response with status 99 (invalid)
 *   /status600      backend_response with status 600 (invalid)
 *   /bigheader      sys_http_append(RESP, "X-Big: " + 1 MiB of 'a'), then 200 "bigheader rc=<its result>"
 *   /flood          one write(1) of 64 MiB of newlines, then 200 "flooded"
 *   /ctype-crlf     200 with the content type "text/plain\r\nX-Injected: 1" (invalid)
 *   /ctype-ctl      200 with the content type "text/pl\x01ain" (invalid)
 *   /204-body       204 with a body "x" (a 204 has none)
 *   /304-body       304 with a body "x" (a 304 has none)
 *   /noresponse     the handler returns without responding
 *   /abort          abort() (SIGABRT: the guest's tgkill/rt_sigprocmask path)
 *   /warn-flood     compiles the invalid regex "(" 5 000 times (tskvm warns each time: the warnings
 *                   must be rate-limited), then 200 "warned"
 *   anything else   404 "not found"
 *
 * on_error(url, arg, exception) answers 503 "on_error:<exception>" (except for /crash-onerror).
 *
 * Natively: `req-faults URL` does the same in this process (so /crash dies of SIGSEGV); /bomb stops
 * after 64 MiB there, treating the next block as a NULL malloc.
 */
#include <signal.h>
#include "common.h"

#define MiB (1024 * 1024)

static volatile int *volatile null_pointer;

static int path_is(const char *url, const char *path)
{
	size_t n = strlen(path);
	return strncmp(url, path, n) == 0 && (url[n] == 0 || url[n] == '?');
}

static void bomb(void)
{
	for (int blocks = 0;; blocks++) {
		char *p = native && blocks >= 64 ? NULL : malloc(MiB);
		if (!p) {
			*null_pointer = 1;
			return;
		}
		memset(p, 0xbb, MiB);
	}
}

static void big_header(void)
{
	static const char key[] = "X-Big: ";
	size_t len = sizeof key - 1 + MiB;
	char *field = malloc(len);
	memcpy(field, key, sizeof key - 1);
	memset(field + sizeof key - 1, 'a', MiB);
	long rc = native ? 0 : sys_http_append(RESP, field, len);
	char body[64];
	snprintf(body, sizeof body, "bigheader rc=%ld", rc);
	respond_str(200, body);
}

static void on_get(const char *url, const char *arg)
{
	(void)arg;
	if (path_is(url, "/ok"))
		respond_str(200, "ok");
	else if (path_is(url, "/crash") || path_is(url, "/crash-onerror"))
		*null_pointer = 1;
	else if (path_is(url, "/loop"))
		for (;;)
			__asm__ volatile("");
	else if (path_is(url, "/bomb"))
		bomb();
	else if (path_is(url, "/status99"))
		respond_str(99, "status 99");
	else if (path_is(url, "/status600"))
		respond_str(600, "status 600");
	else if (path_is(url, "/bigheader"))
		big_header();
	else if (path_is(url, "/flood")) {
		size_t n = 64 * MiB;
		char *lines = malloc(n);
		if (lines) {
			memset(lines, '\n', n);
			ssize_t w = write(1, lines, n);
			(void)w;
			free(lines);
		}
		respond_str(200, "flooded");
	} else if (path_is(url, "/ctype-crlf"))
		respond(200, "text/plain\r\nX-Injected: 1", "x", 1, NULL);
	else if (path_is(url, "/ctype-ctl"))
		respond(200, "text/pl\x01ain", "x", 1, NULL);
	else if (path_is(url, "/204-body"))
		respond(204, "text/plain", "x", 1, NULL);
	else if (path_is(url, "/304-body"))
		respond(304, "text/plain", "x", 1, NULL);
	else if (path_is(url, "/noresponse"))
		return;
	else if (path_is(url, "/abort"))
		abort();
	else if (path_is(url, "/warn-flood")) {
		for (int i = 0; i < 5000; i++)
			sys_regex_compile("(", 1);
		respond_str(200, "warned");
	}
	else
		respond_str(404, "not found");
}

static void on_error(const char *url, const char *arg, const char *exception)
{
	(void)arg;
	if (path_is(url, "/crash-onerror"))
		*null_pointer = 1;
	char body[1024];
	snprintf(body, sizeof body, "on_error:%s", exception);
	respond_str(503, body);
}

int main(int argc, char **argv)
{
	if (native_mode()) {
		on_get(argc > 1 ? argv[1] : "/ok", "");
		putchar('\n');
		return 0;
	}
	set_backend_get(on_get);
	set_on_error(on_error);
	wait_for_requests();
}
