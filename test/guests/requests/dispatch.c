/*
 * req-dispatch — shows which way the host sends each request in. main_arguments: [HANDLERS, STYLE]
 *
 *   HANDLERS  the handlers main registers, as letters: r = set_backend_request (3), g = set_backend_get (1),
 *             p = set_backend_post (2); "-" for none
 *   STYLE     "wait": main ends in wait_for_requests(); "paused": main loops on wait_for_requests_paused(&req)
 *
 * Every request is answered 200, text/plain:
 *
 *   <entry> <method> <url> body=<length> n=<count>
 *
 * entry being request, get, post or paused (which code took the request), and count a global counter
 * of the requests this VM took (1 in an ephemeral VM, where each request starts from the frozen state).
 *
 * Natively there is no host to choose: prints "dispatch: native mode" and exits 0.
 */
#include "common.h"

static unsigned long count;

static void answer(const char *entry, const char *method, size_t method_len, const char *url, size_t body_len)
{
	char body[512];
	count++;
	int n = snprintf(body, sizeof body, "%s %.*s %s body=%zu n=%lu", entry, (int)method_len, method, url, body_len, count);
	respond(200, "text/plain", body, n < (int)sizeof body ? (size_t)n : sizeof body - 1, NULL);
}

static void answer_call(const char *entry, const char *url, size_t body_len)
{
	char method[64];
	unsigned long len = sys_http_method(method, sizeof method);
	answer(entry, method, len < sizeof method ? len : 0, url, body_len);
}

static void on_request(const struct kvm_request *req)
{
	answer("request", req->method, req->method_len, req->url, req->content_len);
}

static void on_get(const char *url, const char *arg)
{
	(void)arg;
	answer_call("get", url, 0);
}

static void on_post(const char *url, const char *arg, const char *ctype, const uint8_t *data, size_t len)
{
	(void)arg, (void)ctype, (void)data;
	answer_call("post", url, len);
}

int main(int argc, char **argv)
{
	if (native_mode()) {
		puts("dispatch: native mode");
		return 0;
	}
	const char *handlers = argc > 1 ? argv[1] : "-";
	const int paused = argc > 2 && strcmp(argv[2], "paused") == 0;
	if (strchr(handlers, 'r'))
		set_backend_request(on_request);
	if (strchr(handlers, 'g'))
		set_backend_get(on_get);
	if (strchr(handlers, 'p'))
		set_backend_post(on_post);
	if (!paused)
		wait_for_requests();
	struct kvm_request req;
	for (;;) {
		wait_for_requests_paused(&req);
		answer("paused", req.method, req.method_len, req.url, req.content_len);
	}
}
