/*
 * req-randomwrite — for checking that resetting a request VM restores its memory exactly.
 * Any-method handler (register_func 3); the parameter is `arg`, else the URL's query.
 *
 *   /sum            200, text/plain: the 64-bit FNV-1a (16 lowercase hex digits, no newline) of the
 *                   16 MiB static arena, then the 4 MiB malloc'd buffer, then the globals
 *                   g_body_len and g_writes (8 bytes each, little-endian). Changes nothing.
 *   any other URL   "?seed,count" (default 1,1000): count pseudo-random bytes (xorshift64 from seed)
 *                   at pseudo-random offsets of arena + buffer are changed (each by adding 1..128, so
 *                   the byte really changes); g_body_len = the request body length; g_writes += 1.
 *                   200, text/plain "wrote=<count>" (no newline).
 *
 * main fills the first half of the arena and all of the buffer with a pattern, so the frozen state
 * has both written pages and never-touched (zero) pages. With ephemeral VMs, /sum must give the same
 * value after any writes as on a fresh fork.
 *
 * Natively: `req-randomwrite /sum '/w?7,100000' /sum` runs the URLs in turn in one process.
 */
#include <inttypes.h>

#include "common.h"

#define ARENA_SIZE (16u << 20)
#define BUF_SIZE (4u << 20)

static unsigned char arena[ARENA_SIZE];
static unsigned char *buffer; /* malloc(BUF_SIZE) in main */
static uint64_t g_body_len;
static uint64_t g_writes;

static uint64_t checksum(void)
{
	uint64_t h = fnv1a(FNV_INIT, arena, ARENA_SIZE);
	h = fnv1a(h, buffer, BUF_SIZE);
	h = fnv1a(h, &g_body_len, sizeof g_body_len);
	return fnv1a(h, &g_writes, sizeof g_writes);
}

static void random_writes(uint64_t seed, uint64_t count)
{
	uint64_t x = seed ? seed : 0x9e3779b97f4a7c15ULL; /* xorshift64 must not start at 0 */
	for (uint64_t i = 0; i < count; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t off = (x >> 8) % (ARENA_SIZE + BUF_SIZE);
		unsigned char *p = off < ARENA_SIZE ? &arena[off] : &buffer[off - ARENA_SIZE];
		*p += (unsigned char)(1 + ((x >> 56) & 0x7f));
	}
}

static void on_request(const struct kvm_request *r)
{
	char body[64];
	char path[64];
	if (strcmp(url_path(r->url, path, sizeof path), "/sum") == 0) {
		snprintf(body, sizeof body, "%016" PRIx64, checksum());
		respond_str(200, body);
		return;
	}
	unsigned long long seed = 1, count = 1000;
	const char *param = request_param(r->url, r->arg);
	if (*param)
		sscanf(param, "%llu,%llu", &seed, &count);
	random_writes(seed, count);
	g_body_len = r->content_len;
	g_writes++;
	snprintf(body, sizeof body, "wrote=%llu", count);
	respond_str(200, body);
}

int main(int argc, char **argv)
{
	buffer = malloc(BUF_SIZE);
	for (size_t i = 0; i < BUF_SIZE; i++)
		buffer[i] = (unsigned char)(i * 31 + 7);
	for (size_t i = 0; i < ARENA_SIZE / 2; i++)
		arena[i] = (unsigned char)(i * 17 + 3);

	if (native_mode()) {
		struct kvm_request req;
		for (int i = 1; i < argc || i == 1; i++) {
			native_request(&req, "GET", i < argc ? argv[i] : "/sum", NULL, 0);
			on_request(&req);
			putchar('\n');
		}
		return 0;
	}
	set_backend_request(on_request);
	wait_for_requests();
}
