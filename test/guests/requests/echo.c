/*
 * req-echo — any-method handler (register_func 3) that describes the request it got. Body
 * (text/plain, status 200), every line ending in "\n", strings printed by their _len fields:
 *
 *   method=<method>
 *   url=<url>
 *   arg=<arg>
 *   content_type=<content type>
 *   headers:
 *   <each request header field "Key: value", in the order the host gives them>
 *   body_len=<N>
 *   <the N raw body bytes>
 *
 * Response headers: "X-Echo: yes" (through BackendResponseExtra), and "X-Test-Echo: <value>" (through
 * sys_http_append on RESP) when the request has an X-Test header (found with sys_http_find on REQ;
 * <value> is what follows "X-Test:" minus leading spaces).
 *
 * Natively: `echo body | req-echo [URL]` — method POST when stdin has bytes, else GET; no headers.
 */
#include "common.h"

static void on_request(const struct kvm_request *r)
{
	char *out = NULL;
	size_t out_len = 0;
	FILE *f = open_memstream(&out, &out_len);
	fprintf(f, "method=%.*s\nurl=%.*s\narg=%.*s\ncontent_type=%.*s\nheaders:\n", r->method_len, r->method,
	        r->url_len, r->url, r->arg_len, r->arg, r->content_type_len, r->content_type);
	for (unsigned i = 0; i < r->num_headers; i++)
		fprintf(f, "%.*s\n", (int)r->headers[i].field_len, r->headers[i].field);
	fprintf(f, "body_len=%zu\n", r->content_len);
	if (r->content_len)
		fwrite(r->content, 1, r->content_len, f);
	fclose(f);

	if (!native) {
		char field[HTTP_FMT_SIZE];
		unsigned len = http_find(REQ, "X-Test", field, sizeof field - 1);
		if (len > 0) {
			field[len] = 0;
			const char *value = strchr(field, ':');
			value = value ? value + 1 : "";
			value += strspn(value, " \t");
			http_appendf(RESP, "X-Test-Echo: %s", value);
		}
	}
	static const struct ResponseHeader headers[] = { KVM_HEADER("X-Echo: yes") };
	const struct BackendResponseExtra extra = { .headers = headers, .num_headers = 1 };
	respond(200, "text/plain", out, out_len, &extra);
	free(out);
}

int main(int argc, char **argv)
{
	if (native_mode()) {
		size_t len = 0;
		uint8_t *body = isatty(0) ? NULL : read_stdin(&len);
		struct kvm_request r;
		native_request(&r, len ? "POST" : "GET", argc > 1 ? argv[1] : "/", body, len);
		on_request(&r);
		return 0;
	}
	set_backend_request(on_request);
	wait_for_requests();
}
