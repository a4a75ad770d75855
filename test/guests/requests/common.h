/*
 * common.h — shared by the request test programs (requests/NAME.c), so that each binary also runs as a
 * plain program when KVM_NAME is unset ("native mode"):
 *
 *     bin/req-NAME [URL...]      (default URL "/"; the programs that take a body read it from stdin)
 *
 * handles each URL in turn in the same process (like a non-ephemeral VM: state carries over) and
 * prints each response body to stdout, and "status N, content type T, +header lines" to stderr.
 * In native mode no hypercall may be made (`out` in user mode is SIGSEGV), so handlers go through
 * respond() below and skip the header calls.
 */
#ifndef REQUESTS_COMMON_H
#define REQUESTS_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvm_api.h"

static int native; /* set by native_mode() in main */

static inline int native_mode(void)
{
	native = !kvm_is_sandboxed();
	return native;
}

/* The response: a hypercall in a VM (never returns there), or the body on stdout natively. */
static inline void respond(int16_t status, const char *ctype, const void *body, size_t len,
                           const struct BackendResponseExtra *extra)
{
	if (!native) {
		sys_backend_response(status, ctype, strlen(ctype), body, len, extra);
		return;
	}
	fprintf(stderr, "status %d, content type %s\n", status, ctype);
	for (uint16_t i = 0; extra && i < extra->num_headers; i++)
		fprintf(stderr, "+header %.*s\n", (int)extra->headers[i].field_len, extra->headers[i].field);
	fwrite(body, 1, len, stdout);
	fflush(stdout);
}

static inline void respond_str(int16_t status, const char *body)
{
	respond(status, "text/plain", body, strlen(body), NULL);
}

/* The request parameter: `arg` when the host gives one, else the URL's query (after '?'), else "". */
static inline const char *request_param(const char *url, const char *arg)
{
	if (arg && *arg)
		return arg;
	const char *q = url ? strchr(url, '?') : NULL;
	return q ? q + 1 : "";
}

/* The URL without its query, into buf. */
static inline const char *url_path(const char *url, char *buf, size_t size)
{
	size_t n = strcspn(url, "?");
	if (n >= size)
		n = size - 1;
	memcpy(buf, url, n);
	buf[n] = 0;
	return buf;
}

/* All of stdin (native mode), NUL-terminated; *len excludes the NUL. */
static inline uint8_t *read_stdin(size_t *len)
{
	size_t cap = 65536, n = 0;
	uint8_t *buf = malloc(cap + 1);
	ssize_t got;
	while (buf && (got = read(0, buf + n, cap - n)) > 0) {
		n += (size_t)got;
		if (n == cap)
			buf = realloc(buf, (cap *= 2) + 1);
	}
	if (!buf) {
		perror("read_stdin");
		exit(1);
	}
	buf[n] = 0;
	*len = n;
	return buf;
}

/* A request as the host would build it, for native mode: no headers, empty arg. */
static inline void native_request(struct kvm_request *r, const char *method, const char *url,
                                  const uint8_t *body, size_t len)
{
	memset(r, 0, sizeof *r);
	r->method = method;
	r->method_len = (uint16_t)strlen(method);
	r->url = url;
	r->url_len = (uint16_t)strlen(url);
	r->arg = "";
	r->content_type = len ? "application/octet-stream" : "";
	r->content_type_len = (uint16_t)strlen(r->content_type);
	r->content = len ? body : NULL;
	r->content_len = len;
}

/* 64-bit FNV-1a, the checksum the programs report (16 lowercase hex digits). */
#define FNV_INIT 0xcbf29ce484222325ULL
static inline uint64_t fnv1a(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

/*
 * The end of main() for a program with a GET handler: natively, the handler for each URL in argv in
 * turn (`newline`: a '\n' after each body); in a VM, the handler registered and the program frozen.
 */
static inline int serve_get(int argc, char **argv, void (*on_get)(const char *url, const char *arg), int newline)
{
	if (native_mode()) {
		for (int i = 1; i < argc; i++) {
			on_get(argv[i], "");
			if (newline)
				putchar('\n');
		}
		return 0;
	}
	set_backend_get(on_get);
	wait_for_requests();
	return 0;
}

#endif
