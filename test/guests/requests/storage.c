/*
 * req-storage — a program with a storage VM (config storage = true). The same binary boots twice:
 * as the storage VM (sys_is_storage() = 1, KVM_TYPE=storage), which keeps a counter and allows the
 * functions below except `forbidden`, and as the request program, whose GET handler calls them.
 * Every answer is text/plain, status 200, one line "key=value ..." unless said otherwise.
 *
 *   /add?N        storage_call(add, N): the storage counter += N      "counter=<new value> rc=8"
 *   /shm          the shared-memory counter += 1 (atomic)              "shm=<new value>"
 *   /get          storage_call(get)                                    "counter=<value> cleanups=<c> after_noreturn=<a> ticks=<t> rc=8"
 *   /concat       storage_callv(concat, 3 buffers "ab" "cde" "f", dst 64)
 *                                                                      "concat=abcdef|n=3|reslen=64 rc=20"
 *   /cut          storage returns 26 bytes into a dst of 10            "cut=abcdefghij rc=10 null_rc=26"
 *                 (null_rc: the same call with dst NULL returns the length storage gave)
 *   /spin         a storage function that never ends                   "rc=-1"
 *   /crash        a storage function that dereferences NULL            "rc=-1"
 *   /noresult     a storage function that returns without storage_return   "rc=-1"
 *   /noreturn     storage_noreturn("nr", 2); the code after it never runs   "noreturn=nr rc=2"
 *   /cleanup      storage_return("ok", 2), then the function goes on and counts a cleanup
 *                                                                      "cleanup=ok rc=2"
 *   /forbidden    storage_call of a function not on the allow list: the request fails (500)
 *   /whoami       "request=<sys_is_storage()>,<KVM_TYPE> storage=<sys_is_storage()>,<KVM_TYPE> rc=<n>"
 *   /nested       a storage function that calls storage itself         "nested=-1 rc=8"
 *   /task?N       storage_task(task_add, N): queued, adds N later      "rc=0"
 *   /spin-task    storage_task(spin_task): a task that never ends       "rc=0"
 *   /schedule?MS  schedule_storage_task(tick, MS, MS): a periodic tick "id=<timer id>"
 *   /stop?ID      stop_storage_task(ID)                                "rc=<1 stopped, 0 unknown>"
 *   /add-then-crash  storage_call(add, 1), then the request dereferences NULL (it fails; the add stays)
 *   /big?N        storage_call(echo) of N bytes (each byte i % 251), back into a buffer of N:
 *                 "big rc=<rc> same=<1 if every byte came back>"
 *   /save         storage_call(save): the storage VM writes "<counter>\n" to the file `state`
 *                                                                      "saved=<bytes written> rc=8"
 *   /state        the request VM reads `state`                         "state=<its text, or the errno>"
 *   /write-state  the request VM opens `state` for writing             "write=<0, or the errno>"
 *
 * Hostile calls, each answering "rc=<what storage_callv returned>":
 *   /wild?ADDR     storage_callv of the function at ADDR (decimal): refused by the allow list, unless
 *                  the program runs with NO_ALLOW=1, when the storage VM runs whatever is there
 *   /bad-bufs      a virtbuffer array at an address outside guest memory
 *   /bad-data      one buffer whose data pointer is outside guest memory
 *   /many-bufs     65 buffers (the limit is 64)
 *   /huge-len      one buffer claiming 2^40 bytes
 *   /bad-dst       a result for a dst outside guest memory
 *   /bad-result    a storage function that gives storage_return a pointer outside its memory
 *   /cleanup-spin  a storage function that never ends after storage_return
 *
 * The storage VM starts its counter from the number in `state`, when the file holds one. On a live
 * update it hands the counter over as "counter=<value>" (on_live_update), and the new storage VM
 * takes it (on_live_restore); with the environment LIVE_RESTORE=crash the new one faults instead.
 *
 * Natively (KVM_NAME unset) it answers "native" to everything: storage needs the host.
 */
#include <errno.h>
#include <inttypes.h>

#include "common.h"

/* The storage VM's state. */
static uint64_t counter, cleanups, after_noreturn, ticks;

static void add(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)reslen;
	uint64_t by = 0;
	if (n == 1 && b[0].len == sizeof by)
		memcpy(&by, b[0].data, sizeof by);
	counter += by;
	storage_return(&counter, sizeof counter);
}

static void get(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)n; (void)b; (void)reslen;
	char text[160];
	int len = snprintf(text, sizeof text, "counter=%" PRIu64 " cleanups=%" PRIu64 " after_noreturn=%" PRIu64 " ticks=%" PRIu64,
	                   counter, cleanups, after_noreturn, ticks);
	storage_return(text, (size_t)len);
}

static void concat(size_t n, struct virtbuffer b[], size_t reslen)
{
	char text[64] = "";
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		memcpy(text + at, b[i].data, b[i].len);
		at += b[i].len;
	}
	at += (size_t)snprintf(text + at, sizeof text - at, "|n=%zu|reslen=%zu", n, reslen);
	storage_return(text, at);
}

static void alphabet(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)n; (void)b; (void)reslen;
	storage_return("abcdefghijklmnopqrstuvwxyz", 26);
}

static void spin(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)n; (void)b; (void)reslen;
	for (volatile int i = 0;; i++) {}
}

static void crash(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)n; (void)b; (void)reslen;
	*(volatile int *)0 = 1;
}

static void noresult(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)n; (void)b; (void)reslen;
}

static void noreturn_fn(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)n; (void)b; (void)reslen;
	storage_noreturn("nr", 2);
	after_noreturn++; /* never reached */
}

static void cleanup(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)n; (void)b; (void)reslen;
	storage_return("ok", 2);
	cleanups++;
}

static void forbidden(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)n; (void)b; (void)reslen;
	counter = 1000000;
	storage_return_nothing();
}

static void whoami(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)n; (void)b; (void)reslen;
	char text[64];
	const char *type = getenv("KVM_TYPE");
	int len = snprintf(text, sizeof text, "%ld,%s", sys_is_storage(), type ? type : "(none)");
	storage_return(text, (size_t)len);
}

static void nested(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)n; (void)b; (void)reslen;
	long rc = storage_call(get, NULL, 0, NULL, 0);
	storage_return(&rc, sizeof rc);
}

static void echo(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)reslen;
	storage_return(n == 1 ? b[0].data : NULL, n == 1 ? b[0].len : 0);
}

static void save(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)n; (void)b; (void)reslen;
	long written = -1;
	FILE *f = fopen(getenv("KVM_STATE"), "w");
	if (f) {
		written = fprintf(f, "%" PRIu64 "\n", counter);
		if (fclose(f) != 0)
			written = -errno;
	} else {
		written = -errno;
	}
	storage_return(&written, sizeof written);
}

static void bad_result(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)n; (void)b; (void)reslen;
	storage_return((const void *)0x7ffffffff000, 4096);
}

static void cleanup_spin(size_t n, struct virtbuffer b[], size_t reslen)
{
	(void)n; (void)b; (void)reslen;
	storage_return("x", 1);
	for (volatile int i = 0;; i++) {}
}

static void task_add(void *data, size_t len)
{
	uint64_t by = 0;
	if (len == sizeof by)
		memcpy(&by, data, sizeof by);
	counter += by;
}

static void spin_task(void *data, size_t len)
{
	(void)data; (void)len;
	for (volatile int i = 0;; i++) {}
}

static void tick(void *data, size_t len)
{
	(void)data; (void)len;
	ticks++;
}

static void on_live_update(void)
{
	char text[64];
	int len = snprintf(text, sizeof text, "counter=%" PRIu64, counter);
	storage_return(text, (size_t)len);
}

static void on_live_restore(size_t len)
{
	char text[64] = "";
	const char *mode = getenv("LIVE_RESTORE");
	if (mode && strcmp(mode, "crash") == 0)
		*(volatile int *)0 = 1;
	storage_return(text, len < sizeof text - 1 ? len : sizeof text - 1);
	/* Runs after the host copied the state in. */
	if (sscanf(text, "counter=%" SCNu64, &counter) != 1)
		counter = 999999;
}

static char out[512];

static void answer(void)
{
	respond_str(200, out);
}

static void on_get(const char *url, const char *arg)
{
	char path[64];
	const char *param = request_param(url, arg);
	snprintf(path, sizeof path, "%.*s", (int)strcspn(url, "?"), url);
	if (native) {
		respond_str(200, "native");
		return;
	}
	uint64_t value = 0;
	long rc;
	if (strcmp(path, "/add") == 0 || strcmp(path, "/add-then-crash") == 0) {
		uint64_t by = strcmp(path, "/add") == 0 ? strtoull(param, NULL, 10) : 1;
		rc = storage_call(add, &by, sizeof by, &value, sizeof value);
		if (strcmp(path, "/add-then-crash") == 0)
			*(volatile int *)0 = 1;
		snprintf(out, sizeof out, "counter=%" PRIu64 " rc=%ld", value, rc);
	} else if (strcmp(path, "/shm") == 0) {
		struct shared_memory_info shm = shared_memory_area();
		if (shm.end < shm.ptr + sizeof(uint64_t)) {
			respond_str(500, "no shared memory");
			return;
		}
		snprintf(out, sizeof out, "shm=%" PRIu64, __atomic_add_fetch((uint64_t *)(uintptr_t)shm.ptr, 1, __ATOMIC_SEQ_CST));
	} else if (strcmp(path, "/get") == 0) {
		char text[200] = "";
		rc = storage_call(get, NULL, 0, text, sizeof text - 1);
		snprintf(out, sizeof out, "%s rc=%ld", text, rc > 0 ? 8 : rc);
	} else if (strcmp(path, "/concat") == 0) {
		struct virtbuffer b[3] = { { "ab", 2 }, { "cde", 3 }, { "f", 1 } };
		char text[64] = "";
		rc = storage_callv(concat, 3, b, text, sizeof text);
		snprintf(out, sizeof out, "concat=%.*s rc=%ld", (int)(rc > 0 ? rc : 0), text, rc);
	} else if (strcmp(path, "/cut") == 0) {
		char text[16] = "";
		rc = storage_call(alphabet, NULL, 0, text, 10);
		long null_rc = storage_call(alphabet, NULL, 0, NULL, 0);
		snprintf(out, sizeof out, "cut=%.*s rc=%ld null_rc=%ld", (int)(rc > 0 ? rc : 0), text, rc, null_rc);
	} else if (strcmp(path, "/spin") == 0) {
		snprintf(out, sizeof out, "rc=%ld", storage_call(spin, NULL, 0, NULL, 0));
	} else if (strcmp(path, "/crash") == 0) {
		snprintf(out, sizeof out, "rc=%ld", storage_call(crash, NULL, 0, NULL, 0));
	} else if (strcmp(path, "/noresult") == 0) {
		snprintf(out, sizeof out, "rc=%ld", storage_call(noresult, NULL, 0, NULL, 0));
	} else if (strcmp(path, "/noreturn") == 0) {
		char text[8] = "";
		rc = storage_call(noreturn_fn, NULL, 0, text, sizeof text);
		snprintf(out, sizeof out, "noreturn=%.*s rc=%ld", (int)(rc > 0 ? rc : 0), text, rc);
	} else if (strcmp(path, "/cleanup") == 0) {
		char text[8] = "";
		rc = storage_call(cleanup, NULL, 0, text, sizeof text);
		snprintf(out, sizeof out, "cleanup=%.*s rc=%ld", (int)(rc > 0 ? rc : 0), text, rc);
	} else if (strcmp(path, "/forbidden") == 0) {
		rc = storage_call(forbidden, NULL, 0, NULL, 0);
		snprintf(out, sizeof out, "forbidden rc=%ld (the request should have failed)", rc);
	} else if (strcmp(path, "/whoami") == 0) {
		char text[64] = "";
		const char *type = getenv("KVM_TYPE");
		rc = storage_call(whoami, NULL, 0, text, sizeof text);
		snprintf(out, sizeof out, "request=%ld,%s storage=%.*s rc=%ld", sys_is_storage(), type ? type : "(none)", (int)(rc > 0 ? rc : 0), text, rc);
	} else if (strcmp(path, "/nested") == 0) {
		long inner = 0;
		rc = storage_call(nested, NULL, 0, &inner, sizeof inner);
		snprintf(out, sizeof out, "nested=%ld rc=%ld", inner, rc);
	} else if (strcmp(path, "/task") == 0) {
		uint64_t by = strtoull(param, NULL, 10);
		snprintf(out, sizeof out, "rc=%ld", storage_task(task_add, &by, sizeof by));
	} else if (strcmp(path, "/spin-task") == 0) {
		snprintf(out, sizeof out, "rc=%ld", storage_task(spin_task, NULL, 0));
	} else if (strcmp(path, "/schedule") == 0) {
		float seconds = (float)strtoull(param, NULL, 10) / 1000.0f;
		snprintf(out, sizeof out, "id=%ld", schedule_storage_task(tick, NULL, 0, seconds, seconds));
	} else if (strcmp(path, "/stop") == 0) {
		snprintf(out, sizeof out, "rc=%ld", stop_storage_task(strtol(param, NULL, 10)));
	} else if (strcmp(path, "/big") == 0) {
		size_t n = strtoull(param, NULL, 10);
		unsigned char *in = malloc(n ? n : 1), *back = malloc(n ? n : 1);
		for (size_t i = 0; i < n; i++) {
			in[i] = (unsigned char)(i % 251);
			back[i] = 0;
		}
		rc = storage_call(echo, in, n, back, n);
		snprintf(out, sizeof out, "big rc=%ld same=%d", rc, memcmp(in, back, n) == 0);
	} else if (strcmp(path, "/wild") == 0) {
		rc = storage_call((storage_func)(uintptr_t)strtoull(param, NULL, 10), NULL, 0, &value, sizeof value);
		snprintf(out, sizeof out, "rc=%ld", rc);
	} else if (strcmp(path, "/bad-bufs") == 0) {
		rc = storage_callv(get, 1, (const struct virtbuffer *)0x7ffffffff000, NULL, 0);
		snprintf(out, sizeof out, "rc=%ld", rc);
	} else if (strcmp(path, "/bad-data") == 0) {
		struct virtbuffer b = { (const void *)0x7ffffffff000, 16 };
		snprintf(out, sizeof out, "rc=%ld", storage_callv(get, 1, &b, NULL, 0));
	} else if (strcmp(path, "/many-bufs") == 0) {
		static struct virtbuffer b[65];
		snprintf(out, sizeof out, "rc=%ld", storage_callv(get, 65, b, NULL, 0));
	} else if (strcmp(path, "/huge-len") == 0) {
		struct virtbuffer b = { "x", 1ull << 40 };
		snprintf(out, sizeof out, "rc=%ld", storage_callv(get, 1, &b, NULL, 0));
	} else if (strcmp(path, "/bad-dst") == 0) {
		snprintf(out, sizeof out, "rc=%ld", storage_call(get, NULL, 0, (void *)0x7ffffffff000, 100));
	} else if (strcmp(path, "/bad-result") == 0) {
		char text[16];
		snprintf(out, sizeof out, "rc=%ld", storage_call(bad_result, NULL, 0, text, sizeof text));
	} else if (strcmp(path, "/cleanup-spin") == 0) {
		char text[16];
		snprintf(out, sizeof out, "rc=%ld", storage_call(cleanup_spin, NULL, 0, text, sizeof text));
	} else if (strcmp(path, "/save") == 0) {
		long written = 0;
		rc = storage_call(save, NULL, 0, &written, sizeof written);
		snprintf(out, sizeof out, "saved=%ld rc=%ld", written, rc);
	} else if (strcmp(path, "/state") == 0) {
		char text[64] = "";
		FILE *f = fopen(getenv("KVM_STATE"), "r");
		if (!f) {
			snprintf(out, sizeof out, "state=%s", strerror(errno));
		} else {
			size_t got = fread(text, 1, sizeof text - 1, f);
			fclose(f);
			snprintf(out, sizeof out, "state=%.*s", (int)got, text);
		}
	} else if (strcmp(path, "/write-state") == 0) {
		FILE *f = fopen(getenv("KVM_STATE"), "w");
		snprintf(out, sizeof out, "write=%s", f ? "0" : strerror(errno));
		if (f)
			fclose(f);
	} else {
		respond_str(404, "unknown");
		return;
	}
	answer();
}

int main(void)
{
	if (native_mode()) {
		puts("native");
		return 0;
	}
	if (sys_is_storage()) {
		static void (*const allowed[])(size_t, struct virtbuffer[], size_t) = {
			add, get, concat, alphabet, spin, crash, noresult, noreturn_fn, cleanup, whoami, nested, echo, save,
			bad_result, cleanup_spin,
		};
		FILE *state = fopen(getenv("KVM_STATE"), "r");
		if (state) {
			if (fscanf(state, "%" SCNu64, &counter) != 1)
				counter = 0;
			fclose(state);
		}
		const char *no_allow = getenv("NO_ALLOW");
		for (size_t i = 0; i < sizeof allowed / sizeof allowed[0] && !(no_allow && *no_allow == '1'); i++)
			STORAGE_ALLOW(allowed[i]);
		if (!(no_allow && *no_allow == '1')) {
			STORAGE_ALLOW(task_add);
			STORAGE_ALLOW(tick);
			STORAGE_ALLOW(spin_task);
		}
		set_on_live_update(on_live_update);
		set_on_live_restore(on_live_restore);
	}
	set_backend_get(on_get);
	wait_for_requests();
}
