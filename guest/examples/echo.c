/*
 * echo — answers every request with a JSON description of it:
 *   {"method":"POST","url":"/x?y=1","arg":"","content_type":"text/plain",
 *    "headers":["Host: example.org", …],"body":"…"}
 * Strings are JSON-escaped byte by byte (bytes ≥ 0x80 and controls as \u00XX), so any body round-trips.
 *
 *   in tskvm:   any method (register_func 3) → 200 application/json
 *   natively:   echo [URL] < body  → the same JSON for POST URL (GET when stdin is empty) on stdout
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kvm_api.h"
#include "native.h"
#include "respond.h"

static void json_string(FILE *f, const char *s, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
		else if (c == '\n') fputs("\\n", f);
		else if (c < 0x20 || c >= 0x80) fprintf(f, "\\u%04x", c);
		else fputc(c, f);
	}
	fputc('"', f);
}

static size_t describe(char **out, const char *method, size_t method_len, const char *url, size_t url_len,
                       const char *arg, size_t arg_len, const char *ctype, size_t ctype_len,
                       const struct kvm_request_header *headers, unsigned num_headers, const uint8_t *body, size_t body_len)
{
	size_t size = 0;
	FILE *f = open_memstream(out, &size);
	fputs("{\"method\":", f); json_string(f, method, method_len);
	fputs(",\"url\":", f); json_string(f, url, url_len);
	fputs(",\"arg\":", f); json_string(f, arg, arg_len);
	fputs(",\"content_type\":", f); json_string(f, ctype, ctype_len);
	fputs(",\"headers\":[", f);
	for (unsigned i = 0; i < num_headers; i++) {
		if (i) fputc(',', f);
		json_string(f, headers[i].field, headers[i].field_len);
	}
	fputs("],\"body\":", f); json_string(f, (const char *)body, body_len);
	fputs("}\n", f);
	fclose(f);
	return size;
}

static void on_request(const struct kvm_request *r)
{
	char *out;
	size_t n = describe(&out, r->method, r->method_len, r->url, r->url_len, r->arg, r->arg_len, r->content_type,
	                    r->content_type_len, r->headers, r->num_headers, r->content, r->content_len);
	respond_owned(200, "application/json", out, n, free, NULL);
}

int main(int argc, char **argv)
{
	if (!kvm_is_sandboxed()) {
		size_t len;
		uint8_t *body = read_all(0, &len);
		const char *url = argc > 1 ? argv[1] : "/";
		const char *method = len ? "POST" : "GET";
		char *out;
		size_t n = describe(&out, method, strlen(method), url, strlen(url), "", 0, "", 0, NULL, 0, body, len);
		fwrite(out, 1, n, stdout);
		return 0;
	}
	set_backend_request(on_request);
	wait_for_requests();
}
