/*
 * markdown — renders the body, CommonMark, as HTML with libcmark. Invalid UTF-8 is replaced by
 * U+FFFD. Raw HTML and dangerous links (javascript:, vbscript:, file:, most data:) are left out
 * unless `arg` asks for "unsafe", as the body is untrusted. `arg` is a comma-separated list of
 * options (any order, may be empty):
 *   smart       straight quotes to curly, -- and --- to dashes, ... to an ellipsis
 *   sourcepos   data-sourcepos attributes on block elements
 *   hardbreaks  soft line breaks rendered as <br />
 *   nobreaks    soft line breaks rendered as spaces
 *   unsafe      raw HTML and every link kept as written
 *
 *   in tskvm:   any method, the body → 200 text/html; charset=utf-8; an unknown option → 400
 *               text/plain "markdown: unknown option \"…\"\n"
 *   natively:   markdown [OPTIONS] < in.md  → the same bytes on stdout; exit status 0, or 1 with
 *               the 400 message on stdout
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmark.h>
#include "kvm_api.h"
#include "native.h"
#include "heap.h"
#include "respond.h"

struct result {
	int    status;   /* 200, 400 or 500 */
	char  *out;
	size_t len;
};

static const struct { const char *name; int flag; } option_names[] = {
	{ "smart", CMARK_OPT_SMART },
	{ "sourcepos", CMARK_OPT_SOURCEPOS },
	{ "hardbreaks", CMARK_OPT_HARDBREAKS },
	{ "nobreaks", CMARK_OPT_NOBREAKS },
	{ "unsafe", CMARK_OPT_UNSAFE },
};

static struct result message(int status, const char *what, const char *name, size_t name_len)
{
	struct result r = { status, NULL, 0 };
	FILE *f = open_memstream(&r.out, &r.len);
	fprintf(f, "markdown: %s \"%.*s\"\n", what, (int)name_len, name);
	fclose(f);
	return r;
}

static struct result render(const char *arg, const char *in, size_t len)
{
	int options = CMARK_OPT_DEFAULT | CMARK_OPT_VALIDATE_UTF8;
	for (const char *p = arg ? arg : ""; *p;) {
		size_t n = strcspn(p, ",");
		if (n) {
			size_t i = 0, count = sizeof option_names / sizeof option_names[0];
			while (i < count && !(strlen(option_names[i].name) == n && memcmp(option_names[i].name, p, n) == 0)) i++;
			if (i == count) return message(400, "unknown option", p, n);
			options |= option_names[i].flag;
		}
		p += n;
		if (*p == ',') p++;
	}
	struct result r = { 200, cmark_markdown_to_html(in ? in : "", len, options), 0 };
	if (!r.out) return message(500, "cannot render", "", 0);
	r.len = strlen(r.out);
	return r;
}

static void on_request(const struct kvm_request *req)
{
	struct result r = render(req->arg, (const char *)req->content, req->content_len);
	respond_owned(r.status, r.status == 200 ? "text/html; charset=utf-8" : "text/plain", r.out, r.len, free, NULL);
}

int main(int argc, char **argv)
{
	if (!kvm_is_sandboxed()) {
		size_t len;
		char *in = read_all(0, &len);
		if (!in) { fputs("markdown: out of memory\n", stderr); return 2; }
		struct result r = render(argc > 1 ? argv[1] : "", in, len);
		fwrite(r.out, 1, r.len, stdout);
		return r.status == 200 ? 0 : 1;
	}
	/* Nothing to set up in cmark; one small document touches its code and the allocator before the
	 * freeze, so that requests start warm. cmark allocates a node per element: a heap grown once
	 * saves a brk per 128 KiB of them (heap.h). */
	reserve_heap(16 << 20);
	free(cmark_markdown_to_html("# warm\n\n*up* [x](/y)\n", 22, CMARK_OPT_DEFAULT));
	set_backend_request(on_request);
	wait_for_requests();
}
