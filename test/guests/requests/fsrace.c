/*
 * req-fsrace — races the file sandbox from two forks at once (test/fs-race.test.ts). The cwd is a
 * writable root holding d/ (a directory with victim and secret) and file. One request keeps swapping
 * d for a symlink out of the root; the other makes every path-taking syscall through d/ meanwhile.
 *
 *   /swap/G    arg = symlink targets, ':'-separated. Loops rename(d, d2), symlink(TARGET, d),
 *              unlink(d), rename(d2, d), then the same by exchanging d with a symlink l twice
 *              (renameat2 RENAME_EXCHANGE), cycling through the targets, until /attack/G is done (at
 *              most 120 s); answers "swaps=N".
 *   /attack/G  arg = rounds. Each round: open and openat with O_CREAT, chmod, chown, truncate,
 *              utimensat, access, mkdir, rmdir, symlink, link into and out of d, rename out of d and
 *              back, unlink, stat, lstat and open-and-read, all through d/. Answers
 *              "attempts=A leaks=L raced=R": A path-taking syscalls, L reads that saw the sentinel
 *              outside the root (a file of 777 bytes, or the text "sentinel"), R 1 when the swapper
 *              was running.
 *
 * The two forks meet in shared memory, which outlives requests, so each pair has a generation G: the
 * swapper says it runs G, the attacker waits for that (at most 10 s) and says when G is done.
 * Natively there is nothing to race: it says so.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "common.h"

struct meeting {
	volatile long swapping;
	volatile long done;
};

static struct meeting *meeting(void)
{
	struct shared_memory_info shm = shared_memory_area();
	if (shm.ptr == 0 || shm.end < shm.ptr + sizeof(struct meeting))
		return NULL;
	return (struct meeting *)(uintptr_t)shm.ptr;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void swap(long g, const char *targets, struct meeting *m)
{
	char list[1024];
	char *t[8];
	int n = 0;
	snprintf(list, sizeof list, "%s", targets);
	for (char *s = strtok(list, ":"); s && n < 8; s = strtok(NULL, ":"))
		t[n++] = s;
	long swaps = 0;
	m->swapping = g;
	for (double end = now() + 120; n > 0 && m->done != g && now() < end; swaps++) {
		const char *target = t[swaps % n];
		rename("d", "d2");
		symlink(target, "d");
		unlink("d");
		rename("d2", "d");
		/* The same swap in one syscall: d is a symlink from the first exchange to the second. */
		symlink(target, "l");
		syscall(SYS_renameat2, AT_FDCWD, "d", AT_FDCWD, "l", RENAME_EXCHANGE);
		syscall(SYS_renameat2, AT_FDCWD, "d", AT_FDCWD, "l", RENAME_EXCHANGE);
		unlink("l");
	}
	char body[64];
	snprintf(body, sizeof body, "swaps=%ld", swaps);
	respond_str(200, body);
}

static long attempts, leaks;

/* One path-taking syscall; its result passes through. */
#define TRY(call) (attempts++, (long)(call))

static void leaked_if_sentinel(const struct stat *st)
{
	if (st->st_size == 777)
		leaks++;
}

static void attack(long g, long rounds, struct meeting *m)
{
	for (double end = now() + 10; m->swapping != g && now() < end;)
		;
	int raced = m->swapping == g;
	static const struct timespec times[2] = {{1, 0}, {1, 0}};
	struct stat st;
	char buf[16];
	for (long i = 0; i < rounds; i++) {
		int fd = (int)TRY(open("d/victim", O_WRONLY | O_CREAT | O_APPEND, 0644));
		if (fd >= 0) {
			write(fd, "x", 1);
			close(fd);
		}
		fd = (int)TRY(openat(AT_FDCWD, "d/new", O_RDWR | O_CREAT | O_TRUNC, 0666));
		if (fd >= 0)
			close(fd);
		TRY(chmod("d/victim", 0700));
		TRY(chown("d/victim", (uid_t)-1, (gid_t)-1));
		TRY(truncate("d/victim", 1));
		TRY(utimensat(AT_FDCWD, "d/victim", times, 0));
		TRY(access("d/victim", W_OK));
		TRY(mkdir("d/newdir", 0755));
		TRY(rmdir("d/newdir"));
		TRY(symlink("victim", "d/sym"));
		TRY(link("file", "d/hard"));
		TRY(link("d/victim", "stolen"));
		if (TRY(rename("d/victim", "moved")) == 0)
			TRY(rename("moved", "d/victim"));
		TRY(unlink("d/sym"));
		TRY(unlink("d/hard"));
		TRY(unlink("d/new"));
		TRY(unlink("stolen"));
		if (TRY(stat("d/victim", &st)) == 0)
			leaked_if_sentinel(&st);
		if (TRY(lstat("d/secret", &st)) == 0)
			leaked_if_sentinel(&st);
		fd = (int)TRY(open("d/secret", O_RDONLY));
		if (fd >= 0) {
			ssize_t n = read(fd, buf, sizeof buf);
			if (n >= 8 && memcmp(buf, "sentinel", 8) == 0)
				leaks++;
			close(fd);
		}
	}
	m->done = g;
	char body[64];
	snprintf(body, sizeof body, "attempts=%ld leaks=%ld raced=%d", attempts, leaks, raced);
	respond_str(200, body);
}

static void on_get(const char *url, const char *arg)
{
	struct meeting *m = meeting();
	if (!m) {
		respond_str(500, "no shared memory");
		return;
	}
	if (strncmp(url, "/swap/", 6) == 0)
		swap(atol(url + 6), arg, m);
	else if (strncmp(url, "/attack/", 8) == 0)
		attack(atol(url + 8), atol(arg), m);
	else
		respond_str(404, "unknown");
}

int main(void)
{
	if (native_mode()) {
		puts("fsrace: nothing to race natively");
		return 0;
	}
	set_backend_get(on_get);
	wait_for_requests();
}
