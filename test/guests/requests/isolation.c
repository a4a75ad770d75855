/*
 * req-isolation — stores a secret in every kind of guest memory (and opens a file), so that a later
 * request can show whether any of it survived. Any-method handler (register_func 3). The parameter is
 * `arg` when the host gives one, else the URL's query. URLs (compared without the query):
 *
 *   /write?SECRET   SECRET (up to 63 bytes, cut at '&', CR or LF) goes into: the global g_secret; the
 *                   heap block h (malloc'd in main); a new malloc(64) block h2; a new 4 KiB mmap; the
 *                   brk area grabbed in main (sbrk(4096)); a page newly grown with sbrk(4096); and a
 *                   4 KiB stack buffer of stack_probe(). It also opens /proc/self/exe and keeps the fd.
 *                   Body "written".
 *   /read           status 200, text/plain, exactly these lines, each ending "\n":
 *                     global=<g_secret, empty if never written>
 *                     heap=<h: "init" from main, or a secret>
 *                     heap2=<*h2, or "null" when h2 is NULL>
 *                     stack=<a secret found in stack_probe()'s uninitialised buffer, else empty>
 *                     mmap=<the /write mmap's content, or "null" when there is none>
 *                     mmapfresh=<"zero" | "dirty">  a new anonymous 4 KiB mmap (unmapped again) is all zero
 *                     brk=<the main sbrk(4096) area: "init", or a secret>
 *                     brkfresh=<"zero" | "dirty" | "fail">  a page newly grown with sbrk (given back) is all zero
 *                     fd=<"open" | "closed">  fcntl(F_GETFD) on the fd /write opened (fd 3 if this VM
 *                                             has no record of one; nothing is open at the freeze)
 *                   A fresh fork answers: global= heap=init heap2=null stack= mmap=null mmapfresh=zero
 *                   brk=init brkfresh=zero fd=closed. With ephemeral VMs that must hold after any /write;
 *                   in one non-ephemeral VM, after /write?S everything but mmapfresh/brkfresh shows S /
 *                   "open" (stack= shows S only if the host starts each handler at the same stack address).
 *   /crash          writes to NULL (a faulting request)
 *   anything else   404, "unknown url"
 *
 * Natively: `req-isolation /read '/write?abc' /read` runs the URLs in turn in one process.
 */
#include <fcntl.h>
#include <sys/mman.h>

#include "common.h"

#define SECRET_MAX 63

char g_secret[SECRET_MAX + 1];
char *h;         /* malloc(64) in main, "init" */
char *h2;        /* NULL at the freeze; /write: malloc(64) */
char *g_map;     /* NULL at the freeze; /write: mmap(4096) */
char *g_brk;     /* sbrk(4096) in main, "init" */
char *g_brk2;    /* NULL at the freeze; /write: sbrk(4096) */
int g_fd = -1;   /* -1 at the freeze; /write: open("/proc/self/exe") */
static volatile int *volatile null_pointer;

/*
 * Writes "S:<secret>\0" into the middle of a 4 KiB local buffer (write != NULL), or reports such a
 * string found there (the buffer is deliberately left uninitialised: it holds whatever an earlier
 * request left at this stack depth). Called straight from on_request in every request, so its frame
 * is always at the same address relative to the handler's stack; the middle of the buffer is far
 * from the frames of the small calls around it.
 */
static __attribute__((noinline, noclone)) void stack_probe(const char *write, char *out, size_t out_size)
{
	char buf[4096];
	char *slot = buf + sizeof buf / 2;
	__asm__ volatile("" : : "r"(buf) : "memory"); /* its contents count as known: no uninitialised read */
	if (write) {
		size_t n = strlen(write);
		slot[0] = 'S';
		slot[1] = ':';
		memcpy(slot + 2, write, n + 1);
		__asm__ volatile("" : : "r"(buf) : "memory"); /* the stores are not dead */
		return;
	}
	out[0] = 0;
	if (slot[0] == 'S' && slot[1] == ':' && memchr(slot + 2, 0, SECRET_MAX + 1)) {
		size_t n = strnlen(slot + 2, out_size - 1);
		memcpy(out, slot + 2, n);
		out[n] = 0;
	}
}

static int all_zero(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static void do_write(const char *param)
{
	char secret[SECRET_MAX + 1];
	size_t n = strcspn(param, "&\r\n");
	if (n > SECRET_MAX)
		n = SECRET_MAX;
	memcpy(secret, param, n);
	secret[n] = 0;

	memcpy(g_secret, secret, n + 1);
	memcpy(h, secret, n + 1);
	free(h2);
	h2 = malloc(64);
	memcpy(h2, secret, n + 1);
	if (!g_map) {
		g_map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (g_map == MAP_FAILED)
			g_map = NULL;
	}
	if (g_map)
		memcpy(g_map, secret, n + 1);
	memcpy(g_brk, secret, n + 1);
	if (!g_brk2) {
		g_brk2 = sbrk(4096);
		if (g_brk2 == (char *)-1)
			g_brk2 = NULL;
	}
	if (g_brk2)
		memcpy(g_brk2, secret, n + 1);
	if (g_fd < 0)
		g_fd = open("/proc/self/exe", O_RDONLY);
}

static void do_read(const char *stack_secret)
{
	/* All probes first, then the report (whose mallocs could move the break). */
	char *fresh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	const char *mmapfresh = fresh == MAP_FAILED ? "fail" : all_zero(fresh, 4096) ? "zero" : "dirty";
	if (fresh != MAP_FAILED)
		munmap(fresh, 4096);
	char *grown = sbrk(4096);
	const char *brkfresh = grown == (char *)-1 ? "fail" : all_zero(grown, 4096) ? "zero" : "dirty";
	if (grown != (char *)-1)
		sbrk(-4096);
	const char *fd = fcntl(g_fd >= 0 ? g_fd : 3, F_GETFD) >= 0 ? "open" : "closed";

	char body[1024];
	int len = snprintf(body, sizeof body,
	                   "global=%s\nheap=%s\nheap2=%s\nstack=%s\nmmap=%s\nmmapfresh=%s\nbrk=%s\nbrkfresh=%s\nfd=%s\n",
	                   g_secret, h, h2 ? h2 : "null", stack_secret, g_map ? g_map : "null", mmapfresh, g_brk,
	                   brkfresh, fd);
	respond(200, "text/plain", body, (size_t)len, NULL);
}

static int path_is(const char *url, const char *path)
{
	size_t n = strlen(path);
	return strncmp(url, path, n) == 0 && (url[n] == 0 || url[n] == '?');
}

static void on_request(const struct kvm_request *r)
{
	/* First thing, before any other call can overwrite that part of the stack. */
	char stack_secret[SECRET_MAX + 1];
	stack_probe(NULL, stack_secret, sizeof stack_secret);

	if (path_is(r->url, "/write")) {
		do_write(request_param(r->url, r->arg));
		stack_probe(g_secret, NULL, 0); /* last: nothing deep runs after it */
		respond(200, "text/plain", "written", 7, NULL);
	} else if (path_is(r->url, "/read")) {
		do_read(stack_secret);
	} else if (path_is(r->url, "/crash")) {
		*null_pointer = 1;
	} else {
		respond_str(404, "unknown url");
	}
}

int main(int argc, char **argv)
{
	h = malloc(64);
	strcpy(h, "init");
	g_brk = sbrk(4096);
	strcpy(g_brk, "init");

	if (native_mode()) {
		struct kvm_request r;
		for (int i = 1; i < argc || i == 1; i++) {
			native_request(&r, "GET", i < argc ? argv[i] : "/read", NULL, 0);
			on_request(&r);
			putchar('\n');
		}
		return 0;
	}
	set_backend_request(on_request);
	wait_for_requests();
}
