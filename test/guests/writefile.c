/*
 * writefile DIR [OUTSIDE] — exercises writes inside DIR (the directory given to --allow-write):
 * create (O_EXCL), write, append, pwrite, truncate, rename, mkdir/rmdir, unlink, each followed by
 * the resulting contents or errno; it removes everything it created, so DIR ends as it started.
 * With OUTSIDE, it also tries to create that file and prints the result (tskvm must refuse it;
 * a native run creates and removes it). Every failure prints `what: error: <strerror>`; the exit
 * status is 1 if a step that should succeed failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *dir;

static const char *in_dir(const char *name)
{
	static char buf[2][PATH_MAX];
	static int which;
	which ^= 1;
	if (snprintf(buf[which], PATH_MAX, "%s/%s", dir, name) >= PATH_MAX) {
		fprintf(stderr, "writefile: path too long\n");
		exit(2);
	}
	return buf[which];
}

/* Prints `what: ok` or `what: error: <strerror>` for a call's result. */
static int report(const char *what, long result)
{
	if (result < 0)
		printf("%s: error: %s\n", what, strerror(errno));
	else
		printf("%s: ok\n", what);
	return result < 0;
}

/* Prints bytes in double quotes, newlines as \n, so each result stays on one line. */
static void print_quoted(const char *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++)
		s[i] == '\n' ? fputs("\\n", stdout) : putchar(s[i]);
	putchar('"');
}

static void show(const char *name)
{
	char buf[256];
	struct stat st;
	int fd = open(in_dir(name), O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		printf("  %s: error: %s\n", name, strerror(errno));
		return;
	}
	ssize_t n = read(fd, buf, sizeof buf);
	close(fd);
	printf("  %s: mode=%04o size=%lld contents=", name, st.st_mode & 0777, (long long)st.st_size);
	print_quoted(buf, n > 0 ? n : 0);
	putchar('\n');
}

static void write_str(int fd, const char *s)
{
	ssize_t n = write(fd, s, strlen(s));
	printf("write ");
	print_quoted(s, strlen(s));
	printf(": %zd\n", n);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: writefile DIR [OUTSIDE]\n");
		return 2;
	}
	dir = argv[1];
	/* Leftovers of an interrupted run; silent, their errors do not matter. */
	unlink(in_dir("wf-a")), unlink(in_dir("wf-b")), unlink(in_dir("wf-sub/f")), rmdir(in_dir("wf-sub"));

	int fd = open(in_dir("wf-a"), O_WRONLY | O_CREAT | O_EXCL, 0600);
	int failures = report("create wf-a", fd);
	if (fd >= 0) {
		write_str(fd, "hello\n");
		close(fd);
	}
	show("wf-a");
	report("create wf-a again (O_EXCL)", open(in_dir("wf-a"), O_WRONLY | O_CREAT | O_EXCL, 0600));

	fd = open(in_dir("wf-a"), O_WRONLY | O_APPEND);
	failures += report("open wf-a O_APPEND", fd);
	if (fd >= 0) {
		lseek(fd, 0, SEEK_SET); /* O_APPEND writes at the end regardless */
		write_str(fd, "more\n");
		close(fd);
	}
	show("wf-a");

	fd = open(in_dir("wf-a"), O_RDWR);
	failures += report("open wf-a O_RDWR", fd);
	if (fd >= 0) {
		printf("pwrite at 1: %zd\n", pwrite(fd, "EL", 2, 1));
		failures += report("ftruncate 8", ftruncate(fd, 8));
		close(fd);
	}
	show("wf-a");

	failures += report("truncate wf-a 3", truncate(in_dir("wf-a"), 3));
	show("wf-a");

	fd = open(in_dir("wf-a"), O_WRONLY | O_TRUNC);
	failures += report("open wf-a O_TRUNC", fd);
	if (fd >= 0) {
		write_str(fd, "rewritten\n");
		close(fd);
	}
	show("wf-a");

	failures += report("rename wf-a -> wf-b", rename(in_dir("wf-a"), in_dir("wf-b")));
	show("wf-a");
	show("wf-b");

	failures += report("mkdir wf-sub", mkdir(in_dir("wf-sub"), 0700));
	fd = open(in_dir("wf-sub/f"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	failures += report("create wf-sub/f", fd);
	if (fd >= 0)
		close(fd);
	report("rmdir wf-sub (not empty)", rmdir(in_dir("wf-sub")));
	failures += report("unlink wf-sub/f", unlink(in_dir("wf-sub/f")));
	failures += report("rmdir wf-sub", rmdir(in_dir("wf-sub")));
	failures += report("unlink wf-b", unlink(in_dir("wf-b")));
	report("unlink wf-b again", unlink(in_dir("wf-b")));
	show("wf-b");

	if (argc > 2) {
		fd = open(argv[2], O_WRONLY | O_CREAT | O_EXCL, 0600);
		report("create OUTSIDE", fd);
		if (fd >= 0) {
			close(fd);
			unlink(argv[2]);
		}
	}
	printf("failures: %d\n", failures);
	return failures ? 1 : 0;
}
