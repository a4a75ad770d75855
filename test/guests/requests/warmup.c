/*
 * req-warmup — what warm-up requests leave for the requests after them. main_arguments: [STYLE]
 *
 *   STYLE  "request": set_backend_request; "get": set_backend_get; "paused": a loop on
 *          wait_for_requests_paused (the default)
 *
 * Every request, warm-up or not, is recorded in globals: how many requests the program has taken, how
 * many of them were warm-ups, and the last one's method, URL and User-Agent and X-Warm fields. Each is
 * answered 200, text/plain, with what the globals held before it:
 *
 *   <style> warmup=<1 for a warm-up, else 0> seen=<requests before> warm=<warm-ups before>
 *   last=<method> <url> ua=<User-Agent value> x=<X-Warm value>
 *
 * A handler with the struct kvm_request (request, paused) tells a warm-up by IS_WARMUP_REQUEST; a GET
 * handler cannot, and counts a request whose User-Agent is "tinykvm" (the field every warm-up
 * request carries) as one.
 *
 * Each warm-up also writes "warm-up <n>: <method> <url>" to stderr (the program's log).
 *
 * URL /crash dereferences NULL before answering; in the paused loop, URL /stuck spins after answering
 * instead of waiting for the next request.
 *
 * Natively: `req-warmup STYLE WARMUPS [URL...]` first takes WARMUPS warm-up requests "GET /" with the
 * field "User-Agent: tinykvm", the defaults of the warmup setting, and prints nothing for them (the host
 * drops warm-up answers); then each URL as a GET without fields, printing each answer and a newline.
 */
#include <fcntl.h>

#include "common.h"

static unsigned long seen, warm;
static char last[256] = "- -", last_ua[128], last_x[128];
static const char *style = "paused";

/* Natively, the fields of the request being handled (the host has them in a VM). */
static const char *native_fields[2];

/* The value of field `key` of the request, "" when absent. */
static const char *field_value(const char *key, char *buf, size_t size)
{
	size_t klen = strlen(key);
	buf[0] = 0;
	if (native) {
		for (size_t i = 0; i < 2; i++) {
			const char *f = native_fields[i];
			if (f && strncasecmp(f, key, klen) == 0 && f[klen] == ':')
				snprintf(buf, size, "%s", f + klen + 1);
		}
	} else {
		char field[HTTP_FMT_SIZE];
		unsigned n = http_find(REQ, key, field, sizeof field);
		if (n > klen && n < sizeof field)
			snprintf(buf, size, "%s", field + klen + 1);
	}
	char *v = buf;
	while (*v == ' ')
		v++;
	return v;
}

static void handle(int flag, const char *method, size_t method_len, const char *url)
{
	char body[1024], ua_buf[128], x_buf[128];
	const char *ua = field_value("User-Agent", ua_buf, sizeof ua_buf);
	const char *x = field_value("X-Warm", x_buf, sizeof x_buf);
	if (flag < 0)
		flag = strcmp(ua, "tinykvm") == 0;
	if (strncmp(url, "/crash", 6) == 0)
		*(volatile int *)0 = 1;
	int n = snprintf(body, sizeof body, "%s warmup=%d seen=%lu warm=%lu last=%s ua=%s x=%s", style, flag, seen, warm, last,
	                 last_ua, last_x);
	seen++;
	warm += flag;
	if (flag)
		fprintf(stderr, "warm-up %lu: %.*s %s\n", warm, (int)method_len, method, url);
	snprintf(last, sizeof last, "%.*s %s", (int)method_len, method, url);
	snprintf(last_ua, sizeof last_ua, "%s", ua);
	snprintf(last_x, sizeof last_x, "%s", x);
	respond(200, "text/plain", body, n < (int)sizeof body ? (size_t)n : sizeof body - 1, NULL);
}

static void on_request(const struct kvm_request *req)
{
	handle(IS_WARMUP_REQUEST(req) ? 1 : 0, req->method, req->method_len, req->url);
}

static void on_get(const char *url, const char *arg)
{
	(void)arg;
	char method[16];
	unsigned long len = native ? 3 : sys_http_method(method, sizeof method);
	handle(-1, native ? "GET" : method, len < sizeof method ? len : 0, url);
}

static void serve(const struct kvm_request *req)
{
	if (strcmp(style, "get") == 0)
		on_get(req->url, req->arg);
	else
		on_request(req);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		style = argv[1];
	struct kvm_request req;
	if (native_mode()) {
		int warmups = argc > 2 ? atoi(argv[2]) : 0;
		native_fields[0] = "User-Agent: tinykvm";
		/* The warm-up answers go nowhere, as the host drops them. */
		fflush(stdout);
		int out = dup(1), null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		for (int i = 0; i < warmups; i++) {
			native_request(&req, "GET", "/", NULL, 0);
			req.info_flags = KVM_REQUEST_WARMUP;
			serve(&req);
		}
		fflush(stdout);
		dup2(out, 1);
		native_fields[0] = NULL;
		for (int i = 3; i < argc; i++) {
			native_request(&req, "GET", argv[i], NULL, 0);
			serve(&req);
			putchar('\n');
		}
		return 0;
	}
	if (strcmp(style, "request") == 0) {
		set_backend_request(on_request);
		wait_for_requests();
	}
	if (strcmp(style, "get") == 0) {
		set_backend_get(on_get);
		wait_for_requests();
	}
	for (;;) {
		wait_for_requests_paused(&req);
		on_request(&req);
		if (strcmp(req.url, "/stuck") == 0)
			for (;;)
				;
	}
}
