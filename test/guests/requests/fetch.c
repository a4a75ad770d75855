/*
 * req-fetch — makes a sys_fetch per request and reports it. The request's parameter (arg, or the
 * query) is the URL to fetch; the last segment of the request's path says how:
 *
 *   /get     GET, no fields, no options (redirects followed); the host maps the body and the headers
 *   /post    POST "ping" with Content-Type text/x-ping and the field "X-From: guest"
 *   /small   GET into an 8-byte buffer of the guest's
 *   /nofollow GET with options: follow_location 0
 *   /self    GET of its own /self (with the same parameter): a self-request that never ends nesting
 *
 * Body (text/plain, 200): "rc=<rc> status=<status> ctype=<ctype> len=<content_length>\n" and, when rc
 * is 0, "body=<the body>\n" and "header=<the first header line>\n" (when there are headers).
 *   /boot    no fetch: what main() fetched from $FETCH_AT_START before wait_for_requests, reported the
 *            same way (rc=-1 status=0 when the variable is unset)
 *
 * Natively no hypercall is possible: prints "fetch: native mode" and exits 0.
 */
#include "common.h"

/* What main() fetched: kept in the frozen program, so every request sees it. */
static long boot_rc = -1;
static struct curl_op boot_op;

static void on_get(const char *url, const char *arg)
{
	char path[64], small[8];
	const char *target = request_param(url, arg);
	url_path(url, path, sizeof path);
	const char *how = strrchr(path, '/');
	struct curl_op op;
	memset(&op, 0, sizeof op);
	op.headers_length = 256; /* ask for the header block, in memory the host maps */
	struct curl_fields fields;
	memset(&fields, 0, sizeof fields);
	struct curl_options opts;
	memset(&opts, 0, sizeof opts);
	const struct curl_fields *f = NULL;
	const struct curl_options *o = NULL;
	char self[512];
	if (strcmp(how, "/post") == 0) {
		op.post_buffer = "ping";
		op.post_buflen = 4;
		memcpy(op.ctype, "text/x-ping", 11);
		op.ctlen = 11;
		CURL_SETFIELD(fields, 0, "X-From: guest");
		f = &fields;
	} else if (strcmp(how, "/small") == 0) {
		op.content = small;
		op.content_length = sizeof small;
	} else if (strcmp(how, "/nofollow") == 0) {
		o = &opts;
	} else if (strcmp(how, "/self") == 0) {
		snprintf(self, sizeof self, "/fetch/self?%s", target);
		target = self;
	}
	long rc;
	if (strcmp(how, "/boot") == 0) {
		rc = boot_rc;
		op = boot_op;
	} else {
		rc = sys_fetch(target, strlen(target), &op, f, o);
	}
	char *out = NULL;
	size_t out_len = 0;
	FILE *m = open_memstream(&out, &out_len);
	fprintf(m, "rc=%ld status=%u ctype=%.*s len=%u\n", rc, op.status, op.ctlen ? (int)op.ctlen - 1 : 0, op.ctype,
	        op.content_length);
	if (rc == 0) {
		fprintf(m, "body=%.*s\n", (int)op.content_length, (const char *)op.content);
		if (op.headers && op.headers_length)
			fprintf(m, "header=%.*s\n", (int)strcspn(op.headers, "\r\n"), op.headers);
	}
	fclose(m);
	respond(200, "text/plain", out, out_len, NULL);
	free(out);
}

int main(void)
{
	if (native_mode()) {
		puts("fetch: native mode");
		return 0;
	}
	const char *at_start = getenv("FETCH_AT_START");
	if (at_start)
		boot_rc = sys_fetch(at_start, strlen(at_start), &boot_op, NULL, NULL);
	set_backend_get(on_get);
	wait_for_requests();
}
