/*
 * req-vecregs — checks that vector registers do not carry data from one request to the next.
 * Any-method handler (register_func 3), text/plain, status 200:
 *
 *   /write?S   loads the first 16 bytes of S into xmm15 and sets MXCSR's rounding to "toward zero"
 *              ("written")
 *   /read      "xmm15=<32 hex digits> mxcsr=<8 hex digits>" — what the request found on entry
 *
 * Nothing in this program or its libc uses xmm15, so a fresh fork shows the frozen program's value.
 * Natively: `req-vecregs '/write?secret' /read` runs both in one process (it shows the secret).
 */
#include "common.h"

static void on_request(const struct kvm_request *r)
{
	/* Read the registers first, before anything else can touch them. */
	unsigned char x[16];
	uint32_t mxcsr;
	__asm__ volatile("movdqu %%xmm15, %0\n\tstmxcsr %1" : "=m"(x), "=m"(mxcsr));
	const char *param = request_param(r->url, r->arg);
	if (r->url_len >= 6 && memcmp(r->url, "/write", 6) == 0) {
		unsigned char s[16] = { 0 };
		memcpy(s, param, strnlen(param, sizeof s));
		uint32_t rz = mxcsr | (3u << 13);
		__asm__ volatile("movdqu %0, %%xmm15\n\tldmxcsr %1" : : "m"(s), "m"(rz) : "xmm15");
		respond_str(200, "written");
		return;
	}
	char out[80];
	int n = 0;
	n += snprintf(out + n, sizeof out - n, "xmm15=");
	for (int i = 0; i < 16; i++) n += snprintf(out + n, sizeof out - n, "%02x", x[i]);
	snprintf(out + n, sizeof out - n, " mxcsr=%08x", mxcsr);
	respond_str(200, out);
}

int main(int argc, char **argv)
{
	if (native_mode()) {
		for (int i = 1; i < argc; i++) {
			struct kvm_request r;
			native_request(&r, "GET", argv[i], NULL, 0);
			on_request(&r);
			putchar('\n');
		}
		return 0;
	}
	set_backend_request(on_request);
	wait_for_requests();
}
