/*
 * spawn-loop — times a native program run as one process per request, the way a CGI-style server
 * would: posix_spawn with the request body as stdin, its whole stdout read through a pipe, and the
 * process reaped. The "native process per request" of `tskvm bench`.
 *
 *   spawn-loop REQUESTS WARMUP BODY-FILE REPORT-FILE PROGRAM [ARGS...]
 *
 * BODY-FILE may be /dev/null. With TSKVM_LOOP_CHECK=status in the environment, runs are compared by
 * exit status only (for a program whose output changes by design). The program gets a minimal environment (PATH only), so a tskvm example
 * takes its native path. The report (REPORT-FILE, one JSON object):
 *   {"requests":N,"ns":[per request],"exit":S,"bytes":B,"fnv1a":"…","mismatch":0}
 * The last run's stdout goes to stdout. Exit status 0, or 1 when a run's output or exit status
 * differed from the first run's (mismatch says which run), 2 for a spawn failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static __attribute__((noreturn)) void die(const char *what, int err)
{
	fprintf(stderr, "spawn-loop: %s: %s\n", what, strerror(err));
	exit(2);
}

struct run {
	int exit;      /* exit status, or 128+signal */
	size_t len;
	uint64_t hash; /* FNV-1a of stdout */
};

static char *output;
static size_t output_cap;

static struct run run_once(const char *body, char **argv)
{
	static char *env[] = { "PATH=/usr/local/bin:/usr/bin:/bin", NULL };
	int out[2];
	if (pipe2(out, O_CLOEXEC) != 0) die("pipe", errno);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, body, O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	pid_t pid;
	int err = posix_spawn(&pid, argv[0], &fa, NULL, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	close(out[1]);
	if (err) die(argv[0], err);

	struct run r = { 0, 0, 0xcbf29ce484222325ull };
	for (;;) {
		if (r.len == output_cap && !(output = realloc(output, output_cap = output_cap ? output_cap * 2 : 1 << 16)))
			die("output", ENOMEM);
		ssize_t got = read(out[0], output + r.len, output_cap - r.len);
		if (got < 0 && errno == EINTR) continue;
		if (got < 0) die("read", errno);
		if (got == 0) break;
		for (ssize_t i = 0; i < got; i++) r.hash = (r.hash ^ (unsigned char)output[r.len + i]) * 0x100000001b3ull;
		r.len += (size_t)got;
	}
	close(out[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) die("waitpid", errno);
	r.exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fputs("usage: spawn-loop REQUESTS WARMUP BODY-FILE REPORT-FILE PROGRAM [ARGS...]\n", stderr);
		return 2;
	}
	long requests = strtol(argv[1], NULL, 10), warmup = strtol(argv[2], NULL, 10);
	if (requests < 1 || warmup < 0) {
		fputs("spawn-loop: REQUESTS must be at least 1, WARMUP at least 0\n", stderr);
		return 2;
	}
	long long *ns = calloc((size_t)requests, sizeof *ns);
	const char *check = getenv("TSKVM_LOOP_CHECK");
	int status_only = check && strcmp(check, "status") == 0;
	struct run first = { 0 }, r = { 0 };
	long mismatch = 0;
	for (long i = 0; i < warmup + requests && !mismatch; i++) {
		long long t0 = now_ns();
		r = run_once(argv[3], argv + 5);
		if (i >= warmup) ns[i - warmup] = now_ns() - t0;
		if (i == 0) first = r;
		else if (r.exit != first.exit || (!status_only && (r.len != first.len || r.hash != first.hash))) mismatch = i + 1;
	}
	FILE *report = fopen(argv[4], "w");
	if (!report) die(argv[4], errno);
	fprintf(report, "{\"requests\":%ld,\"ns\":[", mismatch ? 0 : requests);
	for (long i = 0; !mismatch && i < requests; i++) fprintf(report, "%s%lld", i ? "," : "", ns[i]);
	fprintf(report, "],\"exit\":%d,\"bytes\":%zu,\"fnv1a\":\"%016llx\",\"mismatch\":%ld}\n", r.exit, r.len,
		(unsigned long long)r.hash, mismatch);
	fclose(report);
	fwrite(output, 1, r.len, stdout);
	return mismatch ? 1 : 0;
}
