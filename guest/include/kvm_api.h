/*
 * kvm_api.h — the tskvm guest request API (header-only), documented in docs/GUEST_ABI.md.
 *
 * Binary compatible with the guest API of the Varnish TinyKVM compute VMOD (kvm_api.h v1.0): same
 * hypercall numbers, calling convention and structure layouts, and the same function names, so a
 * program written for either builds against either header and runs on either host.
 *
 * How a program is structured: main() initialises (loads data, allocates, opens files it is allowed
 * to), registers its request handlers and calls wait_for_requests(). The VM is frozen there, and every
 * request runs the handler in a copy-on-write fork of that frozen VM. The handler ends the request with
 * backend_response*(); the host does not resume the guest after it.
 *
 *     #include "kvm_api.h"
 *
 *     static void on_get(const char *url, const char *arg)
 *     {
 *         http_append(RESP, "X-Hello: World");
 *         backend_response_str(200, "text/plain", "Hello World!\n");
 *     }
 *     int main(void)
 *     {
 *         set_backend_get(on_get);
 *         wait_for_requests();
 *     }
 *
 * The other style is an event loop: `struct kvm_request req; for (;;) { wait_for_requests_paused(&req);
 * ...respond... }` — the VM is frozen inside the call and each request resumes right after it, with
 * `req` filled in.
 *
 * Every API function is a tiny asm stub `mov $NR, %eax; out %eax, $0; ret`: the host sees the C
 * arguments in rdi, rsi, rdx, rcx, r8, r9 and answers in rax (rax:rdx for 16-byte structs). Outside a
 * VM, `out` in user mode is SIGSEGV, so a program that also runs natively tests kvm_is_sandboxed()
 * (KVM_NAME is set in the guest environment) before calling any of them.
 *
 * Everything the VMOD's header declares is here, with the same names and numbers. What tskvm does not
 * implement is declared too, each with what tskvm answers instead: multiprocessing, ActiveDNS,
 * sys_request, sockets.
 *
 * The stubs are emitted by a top-level asm block as weak symbols, so several .c files of one program
 * may include this header. Define KVM_API_ALREADY_DEFINED to leave them out (e.g. when another object
 * provides them).
 */
#ifndef TSKVM_KVM_API_H
#define TSKVM_KVM_API_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#define KVM_API_STATIC_ASSERT static_assert
#else
#define KVM_API_STATIC_ASSERT _Static_assert
#endif

/* ---------------------------------------------------------------------------------------------------
 * Structures (x86-64 SysV layout; the asserts below pin every offset of docs/GUEST_ABI.md)
 */

/* One request header field, the whole "Key: value" text. */
struct kvm_request_header {
	const char *field;
	uint32_t    field_colon; /* index of the ':' in field */
	uint32_t    field_len;   /* length of the whole field */
};

/* The request, as handler 3 and wait_for_requests_paused() see it. All strings are NUL-terminated
 * and their lengths are given as well. */
struct kvm_request {
	const char *method;
	const char *url;
	const char *arg;
	const char *content_type;
	uint16_t    method_len;
	uint16_t    url_len;
	uint16_t    arg_len;
	uint16_t    content_type_len;
	const uint8_t *content;   /* the body; may be NULL */
	size_t         content_len;
	const struct kvm_request_header *headers;
	uint16_t    num_headers;
	uint16_t    info_flags;   /* bit 0 (KVM_REQUEST_WARMUP): a warm-up request */
	uint32_t    reserved0;
	uint64_t    prng[2];      /* fresh random bytes for every request */
	uint64_t    reserved1[2];
};
#define KVM_REQUEST_WARMUP 0x1
/* A warm-up request (the `warmup` setting): run once, before the program is frozen, and what it leaves
 * is what every request starts from. Only handler 3 and the paused loop see the struct; a GET or POST
 * handler can tell a warm-up by its fields ("User-Agent: tinykvm" unless the setting changes them). */
#define IS_WARMUP_REQUEST(req) (((req)->info_flags & KVM_REQUEST_WARMUP) != 0)
/* The VMOD's older headers call the struct backend_request (its first 48 bytes, the same layout). */
#define backend_request kvm_request

/* A response header field, "Key: value". */
struct ResponseHeader {
	const char *field;
	size_t      field_len;
};

/* Optional last argument of sys_backend_response: extra headers and caching hints (seconds). */
struct BackendResponseExtra {
	const struct ResponseHeader *headers;
	uint16_t num_headers;
	bool     cached;
	float    ttl;
	float    grace;
	float    keep;
	uint64_t reserved[4];
};

/* get_meminfo(): memory limits and use, in bytes. */
struct meminfo {
	uint64_t max_memory;
	uint64_t max_reqmem;
	uint64_t reqmem_upper;
	uint64_t reqmem_current;
};

/* shared_memory_area(): the region shared by all VMs of the program, [ptr, end). The name is
 * TinyKVM's; returned by value in rax:rdx. */
struct shared_memory_info {
	uint64_t ptr;
	uint64_t end;
};

KVM_API_STATIC_ASSERT(sizeof(struct kvm_request_header) == 16, "kvm_request_header size");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request_header, field) == 0, "kvm_request_header.field");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request_header, field_colon) == 8, "kvm_request_header.field_colon");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request_header, field_len) == 12, "kvm_request_header.field_len");

KVM_API_STATIC_ASSERT(sizeof(struct kvm_request) == 104, "kvm_request size");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, method) == 0, "kvm_request.method");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, url) == 8, "kvm_request.url");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, arg) == 16, "kvm_request.arg");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, content_type) == 24, "kvm_request.content_type");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, method_len) == 32, "kvm_request.method_len");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, url_len) == 34, "kvm_request.url_len");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, arg_len) == 36, "kvm_request.arg_len");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, content_type_len) == 38, "kvm_request.content_type_len");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, content) == 40, "kvm_request.content");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, content_len) == 48, "kvm_request.content_len");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, headers) == 56, "kvm_request.headers");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, num_headers) == 64, "kvm_request.num_headers");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, info_flags) == 66, "kvm_request.info_flags");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, reserved0) == 68, "kvm_request.reserved0");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, prng) == 72, "kvm_request.prng");
KVM_API_STATIC_ASSERT(offsetof(struct kvm_request, reserved1) == 88, "kvm_request.reserved1");

KVM_API_STATIC_ASSERT(sizeof(struct ResponseHeader) == 16, "ResponseHeader size");
KVM_API_STATIC_ASSERT(offsetof(struct ResponseHeader, field) == 0, "ResponseHeader.field");
KVM_API_STATIC_ASSERT(offsetof(struct ResponseHeader, field_len) == 8, "ResponseHeader.field_len");

KVM_API_STATIC_ASSERT(sizeof(struct BackendResponseExtra) == 56, "BackendResponseExtra size");
KVM_API_STATIC_ASSERT(offsetof(struct BackendResponseExtra, headers) == 0, "BackendResponseExtra.headers");
KVM_API_STATIC_ASSERT(offsetof(struct BackendResponseExtra, num_headers) == 8, "BackendResponseExtra.num_headers");
KVM_API_STATIC_ASSERT(offsetof(struct BackendResponseExtra, cached) == 10, "BackendResponseExtra.cached");
KVM_API_STATIC_ASSERT(offsetof(struct BackendResponseExtra, ttl) == 12, "BackendResponseExtra.ttl");
KVM_API_STATIC_ASSERT(offsetof(struct BackendResponseExtra, grace) == 16, "BackendResponseExtra.grace");
KVM_API_STATIC_ASSERT(offsetof(struct BackendResponseExtra, keep) == 20, "BackendResponseExtra.keep");
KVM_API_STATIC_ASSERT(offsetof(struct BackendResponseExtra, reserved) == 24, "BackendResponseExtra.reserved");

KVM_API_STATIC_ASSERT(sizeof(struct meminfo) == 32, "meminfo size");
KVM_API_STATIC_ASSERT(offsetof(struct meminfo, max_memory) == 0, "meminfo.max_memory");
KVM_API_STATIC_ASSERT(offsetof(struct meminfo, max_reqmem) == 8, "meminfo.max_reqmem");
KVM_API_STATIC_ASSERT(offsetof(struct meminfo, reqmem_upper) == 16, "meminfo.reqmem_upper");
KVM_API_STATIC_ASSERT(offsetof(struct meminfo, reqmem_current) == 24, "meminfo.reqmem_current");

KVM_API_STATIC_ASSERT(sizeof(struct shared_memory_info) == 16, "shared_memory_info size");

/* ---------------------------------------------------------------------------------------------------
 * The hypercalls (each an asm stub at the end of this file)
 */

/* 0x10000: register a handler; only during main(). Use the typed set_*() helpers below. */
extern void register_func(int index, ...);

/* 0x10001: freeze the VM; from now on requests call the registered handlers. Never returns. */
extern void wait_for_requests(void) __attribute__((noreturn));

/* 0x10002: freeze the VM here; each request resumes right after this call with *req filled in, unless
 * a handler the program registered takes it: handler 3 any, GET one without a body, POST one with a
 * body (the VMOD's order). */
extern void wait_for_requests_paused(struct kvm_request *req);

/* 0x10005: caching hints for the response (Cache-Control), durations in milliseconds. */
extern long sys_set_cacheable(bool cached, long ttl_ms, long grace_ms, long keep_ms);

/* 0x10010: the response; ends the request (the host does not resume the guest). status must be
 * 200..599, otherwise the request fails. extra may be NULL. */
extern void sys_backend_response(int16_t status, const void *ctype, size_t ctype_len, const void *body,
                                 size_t body_len, const struct BackendResponseExtra *extra);

/* 0x10020 / 0x10021: add / set-or-replace a header field "Key: value" (where = REQ or RESP). A field
 * without ':' given to sys_http_set unsets that key. */
extern long sys_http_append(int where, const char *field, size_t len);
extern long sys_http_set(int where, const char *field, size_t len);

/* 0x10022: copy the whole "Key: value" field of key into out and return its length; 0 when absent or
 * when out is too small; with out == NULL, return the length needed. */
extern unsigned sys_http_find(int where, const char *key, size_t key_len, char *out, size_t out_len);

/* 0x10023: copy the request method and a NUL into out; returns its length without the NUL (0 if out
 * is too small for both, the length needed when out is NULL). */
extern unsigned long sys_http_method(char *out, size_t out_len);

/* 0x10700: the shared memory region (all zero when the program has none). */
extern struct shared_memory_info shared_memory_area(void);

/* 0x10703: choose ephemeral (1) or persistent (0) request VMs; only during main() and only when the
 * program's configuration has control_ephemeral. */
extern int sys_make_ephemeral(int ephemeral);

/* 0x10A00: memory limits and current use. */
extern void get_meminfo(struct meminfo *info);

/* 0x7F000: one line to the program's log. */
extern void sys_log(const char *buf, size_t len);

/* 0x7FDEB: 1 for a debug program, else 0. */
extern int sys_is_debug(void);

/* 0x7F7F7: a breakpoint for a remote debugger. No debugger attaches to a tskvm VM: it does nothing. */
extern void sys_breakpoint(void);

/* Which vCPU runs this code (always 0: one vCPU per VM), and which of its program's request VMs this is
 * (0 to concurrency - 1; 0 in main()), e.g. to index per-VM state kept in shared memory. They read
 * %gs:0 and %gs:4, no exit: GS base points at a block in the VM's vvar page until the program sets a
 * GS base of its own (arch_prctl(ARCH_SET_GS)). */
extern int vcpuid(void) __attribute__((const));
extern int vcpureqid(void) __attribute__((const));

/* 0x20000: an HTTP request made by the host. `url` is a full http(s) URL, which the host sends only to
 * origins the program's fetch_origins lists, or a path ("/..."): a self-request, served by the same
 * tskvm serve without a socket. A non-zero post_buffer/post_buflen makes it a POST (its Content-Type
 * from ctype/ctlen when fields is given). The response: status, ctype (with its NUL, ctlen counting
 * it), the body at content (the host maps memory for it when content is NULL, else at most
 * content_length bytes go into the guest's buffer), and, when headers_length >= 64, the header block
 * (into headers, or into memory the host maps when headers is NULL). Returns 0, or a negative libcurl
 * error number (-3 bad URL, -7 cannot connect, -9 origin not allowed, -23 body too large for the
 * buffer, -27 out of memory, -28 timed out: 8 s, or the request's deadline). fields and opts may be
 * NULL; without opts, redirects are followed. */
struct curl_op {
	uint32_t status;
	uint32_t post_buflen;
	const void *post_buffer;
	char *headers;
	uint32_t headers_length;
	uint32_t unused1;
	void *content;
	uint32_t content_length;
	uint32_t ctlen;
	char ctype[128];
};
#define CURL_FIELDS_COUNT 12u
struct curl_fields {
	const char *ptr[CURL_FIELDS_COUNT];
	uint16_t len[CURL_FIELDS_COUNT];
};
#define CURL_SETFIELD(f, idx, value) { (f).ptr[idx] = (value); (f).len[idx] = (uint16_t)__builtin_strlen(value); }
struct curl_options {
	const char *interface;
	const char *unused;
	int8_t follow_location;
	int8_t dummy_fetch;
	int8_t tcp_fast_open;
	int8_t dont_verify_host;
	uint32_t unused_opt5;
};
KVM_API_STATIC_ASSERT(sizeof(struct curl_op) == 176, "curl_op size");
KVM_API_STATIC_ASSERT(offsetof(struct curl_op, content) == 32, "curl_op.content");
KVM_API_STATIC_ASSERT(offsetof(struct curl_op, ctype) == 48, "curl_op.ctype");
KVM_API_STATIC_ASSERT(sizeof(struct curl_fields) == 120, "curl_fields size");
KVM_API_STATIC_ASSERT(sizeof(struct curl_options) == 24, "curl_options size");
extern long sys_fetch(const char *url, size_t url_len, struct curl_op *op, const struct curl_fields *fields,
                      const struct curl_options *opts);

/* Regular expressions, compiled and run by the host: PCRE2's syntax (8-bit: a byte is a character),
 * the part of it an engine that cannot backtrack can do. tskvm runs them in linear time, so no
 * pattern can stall the host; it refuses at compile time what needs backtracking (backreferences,
 * lookaround, atomic groups, possessive quantifiers, recursion, conditionals, \K, \G) and more than 9
 * capturing groups. The handles compiled in main() are there in every request; what a request
 * compiles or frees is undone when its VM is reset. docs/GUEST_ABI.md, "Regular expressions".
 *
 * 0x10030: a handle (0..63) for the pattern, len bytes (up to a NUL); the same handle for the same
 *   pattern. Negative when it does not compile: -EINVAL refused or malformed, -E2BIG longer than
 *   65535 bytes or too large a program, -EMFILE all 64 handles in use, -ENOMEM the VM's regexes
 *   would be too large together.
 * 0x10031: frees a handle. The VMOD's prototype is void; tskvm's rax is 0, or -EBADF for a handle
 *   with nothing behind it.
 * 0x10032: matches len bytes (at most 16 MiB): > 0 when the regex matches somewhere in them (1 + the
 *   number of the highest group that took part, as PCRE2 counts), -1 when it does not, -47 when the
 *   call ran out of steps (PCRE2's match limit), -EBADF for a bad handle.
 * 0x10033: Varnish's regsub: the NUL-terminated buf with its first match (every match with flags
 *   ALL = 0x1) replaced by subst, where \0 to \9 are the groups; buf itself when nothing matches.
 *   Copies the result and a NUL into dst as far as dstlen goes and returns the bytes copied,
 *   min(dstlen, length + 1): a result cut at dstlen has no NUL. buf and subst up to 1 MiB each, the
 *   result up to 1 MiB (-E2BIG past it, unless dstlen is smaller); -47 as above.
 * 0x10035: appends every header field of srchp (REQ or RESP) that matches to dsthp; returns how many
 *   (a full list takes no more, and those are not counted).
 * (0x10034 is not a call.) */
extern int sys_regex_compile(const char *pattern, size_t len);
extern void sys_regex_free(int rgx);
extern int sys_regex_match(int rgx, const char *subject, size_t len);
extern long sys_regex_subst(int rgx, const char *buf, const char *subst, char *dst, size_t dstlen, int flags);
extern int sys_regex_copyto(int rgx, int srchp, int dsthp);

/* 0x20001: the VMOD's self-request of a path, through Varnish. NOT IMPLEMENTED in tskvm: it answers
 * -ENOSYS (-38). sys_fetch of a path ("/...") is tskvm's self-request, with the same arguments. */
extern long sys_request(const char *url, size_t url_len, struct curl_op *op, const struct curl_fields *fields,
                        const struct curl_options *opts);

/* 0x10012: a streamed response. The status, content type and the response fields added so far go out
 * now; the body, content_length bytes (it must be known: 1 or more), is pulled from content_cb, which
 * the host calls in this VM, below the frame that began the stream (so arg may point into it), with
 * max (at most 64 KiB), the bytes written so far and the total; it returns 1 to max bytes. Returning
 * 0 bytes, crashing or taking more than 2 s fails the stream and the connection is cut. Never returns. */
struct streaming_content {
	const void *data;
	size_t len;
};
typedef struct streaming_content (*content_stream_func)(void *arg, size_t max, size_t written, size_t total);
extern void begin_streaming_response(int16_t status, const void *ctype, size_t ctype_len, size_t content_length,
                                     content_stream_func content_cb, const void *arg) __attribute__((noreturn));

/* The storage VM (config storage = true): the program's one long-lived VM, booted apart with
 * KVM_TYPE=storage and never reset, that request VMs call into one caller at a time.
 *   storage_callv(fn, n, bufs, dst, dst_len): the n buffers (at most 64, 16 MiB in all) are copied into
 *     the storage VM and fn(n, copies, dst_len) runs there within max_storage_time; what it gives to
 *     storage_return(data, len) is copied into dst, min(len, dst_len) bytes, and that count returned —
 *     or len itself when dst is NULL. -1 when fn faults, runs out of time, returns without
 *     storage_return, or when the caller is the storage VM itself; a fn not allowed by
 *     sys_storage_allow is never called, and the calling request fails.
 *   storage_return: fn then runs on to its end (1 s at most); storage_noreturn: it ends there. Outside
 *     a storage call either one fails the request.
 *   A failed call leaves the storage VM's memory as fn left it (its registers are put back).
 *   sys_storage_allow(fn): only in the storage VM's main(); with no call, every function is allowed.
 *   sys_storage_task(fn, data, len, 0, 0) queues fn(copy of data, len) (2 MiB at most) and returns 0;
 *     with a start or period (ms) it is a timer (at most 15), its id returned; -1 when refused.
 *     stop_storage_task(id): 1 stopped, 0 no such timer.
 *   The file "state" (getenv("KVM_STATE")) is readable by every VM and writable by the storage VM only.
 * sys_is_storage() is 1 in the storage VM, 0 elsewhere. Without storage the calls answer -1 (stop: 0). */
struct virtbuffer {
	const void *data;
	size_t len;
};
typedef void (*storage_func)(size_t n, struct virtbuffer buffers[], size_t result_len);
typedef void (*storage_task_func)(void *data, size_t len);
/* 0x10706 */ extern long sys_is_storage(void);
/* 0x10707 */ extern long sys_storage_allow(void (*fn)(void));
/* 0x10708 */ extern long storage_callv(storage_func fn, size_t n, const struct virtbuffer buffers[], void *dst,
                                        size_t dst_len);
/* 0x10709 */ extern long sys_storage_task(storage_task_func task, const void *data, size_t len, uint64_t start_ms,
                                           uint64_t period_ms);
/* 0x1070A */ extern long stop_storage_task(long id);
/* 0x10011 */ extern void storage_return(const void *data, size_t len);
/* 0x10013 */ extern void storage_noreturn(const void *data, size_t len) __attribute__((noreturn));

/* 0x10710–0x10713: more vCPUs for one request (the VMOD's `smp`). NOT IMPLEMENTED in tskvm, which gives
 * a VM one vCPU: each answers -ENOSYS (-38) and starts nothing, so a program that checks the result
 * does the work on its own vCPU. */
typedef void (*multiprocess_t)(void *arg);
typedef void (*multiprocess_array_t)(int vcpu, void *array, size_t element_size);
extern long multiprocess(size_t n, multiprocess_t func, void *arg);
extern long multiprocess_array(size_t n, multiprocess_array_t func, void *array, size_t element_size);
extern long multiprocess_clone(size_t n, void *stack_base, size_t stack_size);
extern long multiprocess_wait(void);

/* 0x10200–0x10203: Varnish's ActiveDNS (the VMOD's older headers). NOT IMPLEMENTED in tskvm: each
 * answers -ENOSYS (-38); sys_fetch resolves host names itself. */
enum adns_ipv_rule { ADNS_IPV_NONE = 0, ADNS_IPV_AUTO, ADNS_IPV_IPV4, ADNS_IPV_IPV6, ADNS_IPV_ALL };
enum adns_ttl_rule { ADNS_TTL_NONE = 0, ADNS_TTL_FORCE, ADNS_TTL_ABIDE, ADNS_TTL_MORETHAN, ADNS_TTL_LESSTHAN };
enum adns_port_rule { ADNS_PORT_NONE = 0, ADNS_PORT_ABIDE, ADNS_PORT_FORCE };
enum adns_mode_rule { ADNS_MODE_NONE = 0, ADNS_MODE_AUTO, ADNS_MODE_HOST, ADNS_MODE_DNS, ADNS_MODE_SRV };
enum adns_update_rule { ADNS_UPDATE_NONE = 0, ADNS_UPDATE_ALWAYS, ADNS_UPDATE_IGNORE_EMPTY, ADNS_UPDATE_IGNORE_ERROR };
enum adns_nsswitch_rule {
	ADNS_NSSWITCH_NONE = 0, ADNS_NSSWITCH_AUTO, ADNS_NSSWITCH_DNS_ONLY, ADNS_NSSWITCH_DNS_FIRST,
	ADNS_NSSWITCH_FILES_ONLY, ADNS_NSSWITCH_FILES_FIRST
};
union adns_rules {
	struct {
		uint8_t ipv, ttl, port, mode, update, nsswitch;
	} b;
	uint64_t reg;
};
#define ADNS_HASH_LEN 32u
struct adns {
	uint8_t  ipv;
	uint8_t  addrlen;      /* of address: IPv4, IPv6 or a host name */
	uint8_t  address[126];
	int8_t   touched;
	uint16_t priority;
	uint16_t weight;
	uint8_t  hash[ADNS_HASH_LEN];
};
extern int sys_adns_new(uint32_t key);
extern int sys_adns_free(int idx);
extern int sys_adns_config(int idx, const char *host, const char *service, long ttl, uint64_t rules);
extern int sys_adns_get(int idx, int entry, const struct adns *adns, size_t size);
static inline int adns_new(uint32_t key) { return sys_adns_new(key); }
static inline int adns_config(int idx, const char *host, const char *service, float ttl, const union adns_rules *rules)
{
	return sys_adns_config(idx, host, service, (long)(ttl * 1024), rules->reg);
}
static inline int adns_get(int idx, int entry, const struct adns *adns) { return sys_adns_get(idx, entry, adns, sizeof *adns); }
static inline int adns_get_count(int idx, int entry) { return sys_adns_get(idx, entry, NULL, 0); }

/* Sockets (the VMOD's `server` setting: a TCP server whose connections the program handles). tskvm
 * serves HTTP only: register_func refuses handlers 8–11 (-EINVAL) and accepts 12, which is never
 * called. */
static inline void set_socket_on_connect(int (*f)(int fd, const char *remote, const char *arg)) { register_func(8, f); }
static inline void set_socket_on_read(void (*f)(int fd, const uint8_t *data, size_t len)) { register_func(9, f); }
static inline void set_socket_on_writable(void (*f)(int fd)) { register_func(10, f); }
static inline void set_socket_on_disconnect(void (*f)(int fd, const char *reason)) { register_func(11, f); }
static inline void set_socket_prepare_for_pause(void (*f)(int fd)) { register_func(12, f); }
enum SocketEvent { SOCKET_CONNECT = 0, SOCKET_READ, SOCKET_WRITABLE, SOCKET_DISCONNECT };
struct kvm_socket_event {
	int fd;
	enum SocketEvent event;
	const char *remote;
	const char *arg;
	const uint8_t *data;
	size_t data_len;
};
/* The VMOD's is wait_for_requests_paused (0x10002) given a struct kvm_socket_event. In tskvm that call
 * freezes the program like wait_for_requests_paused and writes a 104-byte struct kvm_request over the
 * 40-byte event for every HTTP request, so a call to it does not compile here. */
extern void wait_for_socket_event_paused(struct kvm_socket_event *se)
	__attribute__((error("tskvm has no socket events: wait_for_socket_event_paused would receive HTTP requests")));

/* ---------------------------------------------------------------------------------------------------
 * Convenience wrappers (TinyKVM's names, plus a few short ones)
 */

/* True when running in a tskvm (or TinyKVM compute) VM; false natively. */
static inline bool kvm_is_sandboxed(void) { return getenv("KVM_NAME") != NULL; }
/* The environment variable `key` is `value`; false when it is unset (natively). */
static inline bool kvm_env_is(const char *key, const char *value)
{
	const char *v = getenv(key);
	return v != NULL && __builtin_strcmp(v, value) == 0;
}
/* The VMOD's names, all from the environment the host gives, as kvm_is_sandboxed(): natively all but
 * IS_LINUX_MAIN() are false, and none of them makes a hypercall. The VMOD's header tests argv[0] for a
 * '/' instead (in its VMs, and in tskvm's, argv[0] is the program's name without one); that test
 * would call a native program started through PATH sandboxed, and needs argv. IS_STORAGE() is
 * sys_is_storage() != 0 without the hypercall; IS_DEBUG() is always false in tskvm (KVM_DEBUG=0). */
#define IS_SANDBOXED_MAIN() kvm_is_sandboxed()
#define IS_LINUX_MAIN()     (!kvm_is_sandboxed())
#define IS_STORAGE()        kvm_env_is("KVM_TYPE", "storage")
#define IS_REQUEST()        kvm_env_is("KVM_TYPE", "request")
#define IS_DEBUG()          kvm_env_is("KVM_DEBUG", "1")

/* Handler registration. The handler is called on a fresh stack for every request: handler 3 for any
 * request, else GET for one without a body, else POST for one with a body (whatever the method). */
static inline void set_backend_get(void (*f)(const char *url, const char *arg)) { register_func(1, f); }
static inline void set_backend_post(void (*f)(const char *url, const char *arg, const char *content_type,
                                              const uint8_t *data, size_t len))
{
	register_func(2, f);
}
/* Any method; takes precedence over GET/POST handlers and over a paused loop. */
static inline void set_backend_request(void (*f)(const struct kvm_request *req)) { register_func(3, f); }
/* Called (with a ~1 s budget) when a request crashed, timed out or ran out of memory; may respond. */
static inline void set_on_error(void (*f)(const char *url, const char *arg, const char *exception))
{
	register_func(5, f);
}

/* Streaming POST: with a POST handler registered too, f is called before it for each piece of a
 * request's body in order (64 KiB at most each, off its offset) and must return len, having taken the
 * piece (else the request fails); the POST handler then gets a NULL body and the whole length. In
 * tskvm the pieces come from a body that has arrived whole. */
static inline void set_backend_stream_post(long (*f)(const char *url, const char *arg, const char *content_type,
                                                     const uint8_t *data, size_t len, size_t off))
{
	register_func(4, f);
}
/* Live update of a program with storage, in its storage VM: when a new program replaces it, on_live_update()
 * runs in the old storage VM and gives its state with storage_return(data, len); then on_live_restore(len)
 * runs in the new storage VM and names where the state goes with storage_return(dst, len) — the host copies
 * it there, and the function runs on to its end to take it in. If either fails, or the old one gives state
 * and the new one has no on_live_restore, the update fails and the old program keeps serving. */
static inline void set_on_live_update(void (*f)(void)) { register_func(6, f); }
static inline void set_on_live_restore(void (*f)(size_t len)) { register_func(7, f); }

/* Responses */
static inline void backend_response(int16_t status, const void *ctype, size_t ctype_len, const void *body,
                                    size_t body_len)
{
	sys_backend_response(status, ctype, ctype_len, body, body_len, NULL);
}
static inline void backend_response_str(int16_t status, const char *ctype, const char *body)
{
	sys_backend_response(status, ctype, __builtin_strlen(ctype), body, __builtin_strlen(body), NULL);
}
static inline void backend_response_extra(int16_t status, const void *ctype, size_t ctype_len, const void *body,
                                          size_t body_len, const struct BackendResponseExtra *extra)
{
	sys_backend_response(status, ctype, ctype_len, body, body_len, extra);
}
/* With an array of extra response headers and no caching hints, e.g.
 *   static const struct ResponseHeader h[] = { KVM_HEADER("X-A: 1"), KVM_HEADER("X-B: 2") };
 *   backend_response_headers(200, "text/plain", body, len, h, 2);                          */
#define KVM_HEADER(literal) { (literal), sizeof(literal) - 1 }
static inline void backend_response_headers(int16_t status, const char *ctype, const void *body, size_t body_len,
                                            const struct ResponseHeader *headers, uint16_t num_headers)
{
	struct BackendResponseExtra extra = { headers, num_headers, false, 0, 0, 0, { 0, 0, 0, 0 } };
	sys_backend_response(status, ctype, __builtin_strlen(ctype), body, body_len, &extra);
}

/* Header fields: `where` is REQ (the request) or RESP (the response). */
#define REQ      0
#define RESP     1
#define REQUEST  REQ
#define RESPONSE RESP
#define BEREQ    REQ
#define BERESP   RESP
#define HTTP_FMT_SIZE 4096u

static inline long http_append(int where, const char *field) { return sys_http_append(where, field, __builtin_strlen(field)); }
static inline long http_set(int where, const char *field) { return sys_http_set(where, field, __builtin_strlen(field)); }
/* Unset key (a field without ':'). */
static inline long http_unset(int where, const char *key, size_t len) { return sys_http_set(where, key, len); }
static inline long http_unset_str(int where, const char *key) { return sys_http_set(where, key, __builtin_strlen(key)); }
/* Copies the whole "Key: value" field into out; returns its length, 0 if absent or out too small. */
static inline unsigned http_find(int where, const char *key, char *out, size_t out_len)
{
	return sys_http_find(where, key, __builtin_strlen(key), out, out_len);
}
static inline unsigned http_find_strlen(int where, const char *key)
{
	return sys_http_find(where, key, __builtin_strlen(key), NULL, 0);
}
/* TinyKVM spellings */
static inline void http_append_str(int where, const char *field) { http_append(where, field); }
static inline void http_set_str(int where, const char *field) { http_set(where, field); }
static inline unsigned http_find_str(int where, const char *key, char *out, size_t out_len)
{
	return http_find(where, key, out, out_len);
}

/* Copies in memory the caller free()s (NULL only when malloc fails). The VMOD's go through fixed
 * buffers, 4 KiB for a field and 15 bytes for a method, and give "" for anything longer; these ask
 * the host for the length first and fit any. The VMOD's header defines HAS_BUILTIN_MALLOC where it
 * offers them; they always exist here. */
#define HAS_BUILTIN_MALLOC
/* The whole "Key: value" field of `key`, or "" when there is none. */
static inline const char *http_alloc_find(int where, const char *key)
{
	const size_t key_len = __builtin_strlen(key);
	const unsigned need = sys_http_find(where, key, key_len, NULL, 0);
	char *result = (char *)malloc((size_t)need + 1);
	if (result == NULL)
		return NULL;
	const unsigned len = need ? sys_http_find(where, key, key_len, result, (size_t)need + 1) : 0;
	result[len] = 0;
	return result;
}
/* The request's method. */
static inline const char *http_alloc_method(void)
{
	const unsigned long need = sys_http_method(NULL, 0);
	char *result = (char *)malloc(need + 1);
	if (result == NULL)
		return NULL;
	const unsigned long len = sys_http_method(result, need + 1);
	result[len] = 0;
	return result;
}

/* printf-style; fields longer than HTTP_FMT_SIZE - 1 are cut. */
__attribute__((format(printf, 2, 3))) static inline long http_appendf(int where, const char *fmt, ...)
{
	char buf[HTTP_FMT_SIZE];
	va_list ap;
	va_start(ap, fmt);
	int len = __builtin_vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (len < 0)
		return -1;
	return sys_http_append(where, buf, (size_t)len < sizeof buf ? (size_t)len : sizeof buf - 1);
}
__attribute__((format(printf, 2, 3))) static inline long http_setf(int where, const char *fmt, ...)
{
	char buf[HTTP_FMT_SIZE];
	va_list ap;
	va_start(ap, fmt);
	int len = __builtin_vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (len < 0)
		return -1;
	return sys_http_set(where, buf, (size_t)len < sizeof buf ? (size_t)len : sizeof buf - 1);
}

/* Storage, as the VMOD's header spells it (see "The storage VM" above). */
#define STORAGE_ALLOW(fn)  sys_storage_allow((void (*)(void))(fn))
static inline long storage_call(storage_func fn, const void *src, size_t len, void *dst, size_t dst_len)
{
	const struct virtbuffer buffer = { src, len };
	return storage_callv(fn, 1, &buffer, dst, dst_len);
}
static inline void storage_return_nothing(void) { storage_return(NULL, 0); }
static inline long storage_task(storage_task_func task, const void *data, size_t len)
{
	return sys_storage_task(task, data, len, 0, 0);
}
static inline long schedule_storage_task(storage_task_func task, const void *data, size_t len, float start, float period)
{
	return sys_storage_task(task, data, len, (uint64_t)(start * 1000), (uint64_t)(period * 1000));
}

/* Allocations in the shared region (shared_memory_area()), aligned (SHM_ALLOC_BYTES: 8), one after
 * the other; NULL once it is full, or when the program has no shared_memory. Where the next one goes
 * is kept in this translation unit's own memory, not in the region, so allocate in main(), before the
 * freeze: every request VM starts from there, and what a request allocates is forgotten at its VM's
 * reset (the next request gets the same bytes again), while what is written in the region stays. */
#define SHM_ALLOC_BYTES(n) internal_shm_alloc((n), 8)
#ifdef __cplusplus
#define SHM_ALLOC_TYPE(type) (type *)internal_shm_alloc(sizeof(type), alignof(type))
#define SHM_ALLOC(x)         (decltype(x) *)internal_shm_alloc(sizeof(x), alignof(x))
#else
#define SHM_ALLOC_TYPE(type) (type *)internal_shm_alloc(sizeof(type), _Alignof(type))
#define SHM_ALLOC(x)         (__typeof__(x) *)internal_shm_alloc(sizeof(x), _Alignof(x))
#endif
static inline void *internal_shm_alloc(size_t size, size_t align)
{
	static struct shared_memory_info free_part;
	if (free_part.ptr == 0)
		free_part = shared_memory_area();
	const uint64_t at = (free_part.ptr + (align - 1)) & ~(uint64_t)(align - 1);
	if (free_part.ptr == 0 || at + size > free_part.end || at + size < at)
		return NULL;
	free_part.ptr = at + size;
	return (void *)(uintptr_t)at;
}

/* Caching hints in seconds. */
static inline long set_cacheable(bool cached, float ttl, float grace, float keep)
{
	return sys_set_cacheable(cached, (long)(ttl * 1000), (long)(grace * 1000), (long)(keep * 1000));
}

/* Log lines */
static inline void kvm_log(const char *line) { sys_log(line, __builtin_strlen(line)); }
__attribute__((format(printf, 1, 2))) static inline void kvm_logf(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	int len = __builtin_vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (len >= 0)
		sys_log(buf, (size_t)len < sizeof buf ? (size_t)len : sizeof buf - 1);
}
#define vlogf kvm_logf /* TinyKVM's name; a longer line is cut here, the VMOD logs an error line instead */

/* Puts the bytes of file `filename` (a string literal, found as the assembler finds .incbin files:
 * from the compiler's working directory, or a -I directory) in the program's read-only data as
 * `char name[]`, followed by 4 zero bytes, and their count as `unsigned name_size`. No alignment is
 * guaranteed. */
#define EMBED_BINARY(name, filename)                                                                     \
	__asm__(".pushsection .rodata\n"                                                                   \
	        ".global " #name "\n" #name ":\n"                                                          \
	        "\t.incbin " #filename "\n" #name "_end:\n"                                                \
	        "\t.int 0\n"                                                                               \
	        ".global " #name "_size\n.type " #name "_size, @object\n.align 4\n" #name "_size:\n"       \
	        "\t.int " #name "_end - " #name "\n"                                                        \
	        ".popsection\n");                                                                          \
	extern char name[];                                                                              \
	extern unsigned name##_size;

/* A pointer as a plain void *, whatever it was (const, an integer address): the VMOD's way of saying
 * "this is guest memory I own". */
#define TRUST_ME(ptr) ((void *)(uintptr_t)(ptr))

/* ---------------------------------------------------------------------------------------------------
 * The asm stubs: `mov $NR, %eax; out %eax, $0; ret`. Weak, so that every translation unit of a program
 * may emit them and the linker keeps one copy.
 */
#ifndef KVM_API_ALREADY_DEFINED
#define KVM_API_STUB_BEGIN(name, nr)                                                                     \
	".p2align 4\n"                                                                                   \
	".globl " #name "\n"                                                                             \
	".weak " #name "\n"                                                                              \
	".type " #name ", @function\n" #name ":\n"                                                       \
	".cfi_startproc\n"                                                                               \
	"\tmov $" #nr ", %eax\n"                                                                         \
	"\tout %eax, $0\n"
#define KVM_API_STUB_END(name) ".cfi_endproc\n.size " #name ", . - " #name "\n"
#define KVM_API_STUB(name, nr) KVM_API_STUB_BEGIN(name, nr) "\tret\n" KVM_API_STUB_END(name)

__asm__(".pushsection .text\n"
	KVM_API_STUB(register_func, 0x10000)
	/* never returns: ud2 traps if the host ever resumed past it */
	KVM_API_STUB_BEGIN(wait_for_requests, 0x10001) "\tud2\n" KVM_API_STUB_END(wait_for_requests)
	KVM_API_STUB(wait_for_requests_paused, 0x10002)
	KVM_API_STUB(sys_set_cacheable, 0x10005)
	KVM_API_STUB(sys_backend_response, 0x10010)
	KVM_API_STUB(storage_return, 0x10011)
	KVM_API_STUB_BEGIN(begin_streaming_response, 0x10012) "\tud2\n" KVM_API_STUB_END(begin_streaming_response)
	KVM_API_STUB_BEGIN(storage_noreturn, 0x10013) "\tud2\n" KVM_API_STUB_END(storage_noreturn)
	KVM_API_STUB(sys_http_append, 0x10020)
	KVM_API_STUB(sys_http_set, 0x10021)
	KVM_API_STUB(sys_http_find, 0x10022)
	KVM_API_STUB(sys_http_method, 0x10023)
	KVM_API_STUB(sys_regex_compile, 0x10030)
	KVM_API_STUB(sys_regex_free, 0x10031)
	KVM_API_STUB(sys_regex_match, 0x10032)
	KVM_API_STUB(sys_regex_subst, 0x10033)
	KVM_API_STUB(sys_regex_copyto, 0x10035)
	KVM_API_STUB(sys_adns_new, 0x10200)
	KVM_API_STUB(sys_adns_free, 0x10201)
	KVM_API_STUB(sys_adns_config, 0x10202)
	KVM_API_STUB(sys_adns_get, 0x10203)
	KVM_API_STUB(shared_memory_area, 0x10700)
	KVM_API_STUB(sys_make_ephemeral, 0x10703)
	KVM_API_STUB(sys_is_storage, 0x10706)
	KVM_API_STUB(sys_storage_allow, 0x10707)
	KVM_API_STUB(storage_callv, 0x10708)
	KVM_API_STUB(sys_storage_task, 0x10709)
	KVM_API_STUB(stop_storage_task, 0x1070A)
	KVM_API_STUB(multiprocess, 0x10710)
	KVM_API_STUB(multiprocess_array, 0x10711)
	KVM_API_STUB(multiprocess_clone, 0x10712)
	KVM_API_STUB(multiprocess_wait, 0x10713)
	KVM_API_STUB(get_meminfo, 0x10A00)
	KVM_API_STUB(sys_log, 0x7F000)
	KVM_API_STUB(sys_is_debug, 0x7FDEB)
	KVM_API_STUB(sys_fetch, 0x20000)
	KVM_API_STUB(sys_request, 0x20001)
	KVM_API_STUB(sys_breakpoint, 0x7F7F7)
	/* no exit: the vCPU block GS base points at (see vcpuid above) */
	".p2align 4\n.globl vcpuid\n.weak vcpuid\n.type vcpuid, @function\nvcpuid:\n.cfi_startproc\n"
	"\tmov %gs:0, %eax\n\tret\n.cfi_endproc\n.size vcpuid, . - vcpuid\n"
	".p2align 4\n.globl vcpureqid\n.weak vcpureqid\n.type vcpureqid, @function\nvcpureqid:\n.cfi_startproc\n"
	"\tmov %gs:4, %eax\n\tret\n.cfi_endproc\n.size vcpureqid, . - vcpureqid\n"
	".popsection\n");

#undef KVM_API_STUB
#undef KVM_API_STUB_BEGIN
#undef KVM_API_STUB_END
#endif /* KVM_API_ALREADY_DEFINED */

#ifdef __cplusplus
}
#endif
#endif /* TSKVM_KVM_API_H */
