/*
 * linkcheck — fetches a list of URLs with sys_fetch (the host makes the requests) and says what each
 * answered: a status page for other services, or for sibling programs of the same server.
 *
 *   POST, one URL per line (at most 32)   → 200 text/plain, a line per URL:
 *                                           "<status> <bytes> <content type> <url>\n", or "error <url>\n"
 *   GET                                   → the same for the comma-separated URLs of $CHECK
 * A URL is http(s)://… (the host fetches it only from the origins the program's fetch_origins lists)
 * or a path, a self-request served by the same tskvm serve.
 *
 *   natively:   linkcheck < urls   → the same report, fetched with a plain HTTP/1.0 client (http:// only)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "kvm_api.h"
#include "http-get.h"
#include "native.h"
#include "respond.h"

#define MAX_URLS 32

/* One URL's line of the report, appended at out + len; the new length. */
static size_t check(const char *url, size_t url_len, char *out, size_t len, size_t size)
{
	char copy[1024];
	int status = -1;
	size_t bytes = 0;
	char ctype[128] = "";
	if (url_len < sizeof copy) {
		memcpy(copy, url, url_len);
		copy[url_len] = 0;
		if (!kvm_is_sandboxed()) {
			struct http_answer a;
			if (http_get(copy, &a) == 0) {
				status = a.status, bytes = a.len;
				snprintf(ctype, sizeof ctype, "%s", a.ctype);
				free(a.body);
			}
		} else {
			struct curl_op op = { 0 };
			if (sys_fetch(copy, url_len, &op, NULL, NULL) == 0) {
				status = (int)op.status, bytes = op.content_length;
				snprintf(ctype, sizeof ctype, "%.*s", op.ctlen ? (int)op.ctlen - 1 : 0, op.ctype);
				if (op.content)
					munmap(op.content, op.content_length);
			}
		}
	}
	int n = status < 0 ? snprintf(out + len, size - len, "error %.*s\n", (int)url_len, url)
	                   : snprintf(out + len, size - len, "%d %zu %s %.*s\n", status, bytes, ctype[0] ? ctype : "-", (int)url_len, url);
	return n > 0 && (size_t)n < size - len ? len + (size_t)n : len;
}

/* The report on the URLs in list (separated by newlines or commas), into out; its length. */
static size_t report(const char *list, size_t list_len, char *out, size_t size)
{
	size_t len = 0;
	int urls = 0;
	for (size_t at = 0; at < list_len && urls < MAX_URLS;) {
		size_t end = at;
		while (end < list_len && list[end] != '\n' && list[end] != ',')
			end++;
		size_t n = end - at;
		while (n > 0 && (list[at + n - 1] == '\r' || list[at + n - 1] == ' '))
			n--;
		if (n > 0) {
			len = check(list + at, n, out, len, size);
			urls++;
		}
		at = end + 1;
	}
	return len;
}

static char out[MAX_URLS * 1300];

static void on_get(const char *url, const char *arg)
{
	(void)url; (void)arg;
	const char *list = getenv("CHECK");
	if (!list || !*list) {
		backend_response_str(400, "text/plain", "POST one URL per line, or set CHECK\n");
		return;
	}
	respond_owned(200, "text/plain", out, report(list, strlen(list), out, sizeof out), NULL, NULL);
}

static void on_post(const char *url, const char *arg, const char *ctype, const uint8_t *body, size_t len)
{
	(void)url; (void)arg; (void)ctype;
	respond_owned(200, "text/plain", out, report((const char *)body, len, out, sizeof out), NULL, NULL);
}

int main(void)
{
	if (!kvm_is_sandboxed()) {
		size_t len;
		char *urls = read_all(0, &len);
		if (!urls)
			return 1;
		fwrite(out, 1, report(urls, len, out, sizeof out), stdout);
		return 0;
	}
	set_backend_get(on_get);
	set_backend_post(on_post);
	wait_for_requests();
}
