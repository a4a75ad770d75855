/*
 * pathops OP:PATH[:ARG]... — one path syscall per argument, in order, each printing one line
 * `OP PATH: <result>` (or `OP PATH: error: <strerror>`), so that runs can be compared line by line:
 *
 *   lstat:P          lstat: the type, and the size of a regular file or a symlink
 *   nofollow:P       fstatat(AT_FDCWD, P, AT_SYMLINK_NOFOLLOW): the same
 *   stat:P           stat: the same, following symlinks
 *   readlink:P       readlink: the link's text
 *   read:P           open(O_RDONLY) and read: the bytes, up to 200 of them
 *   noread:P         open(O_RDONLY | O_NOFOLLOW): "opened" or the error (ELOOP for a symlink)
 *   write:P:TEXT     open(O_WRONLY | O_CREAT | O_TRUNC) and write TEXT
 *   excl:P           open(O_WRONLY | O_CREAT | O_EXCL)
 *   unlink:P         unlink
 *   rename:P:TO      rename P to TO
 *   symlink:P:TEXT   symlink(TEXT, P)
 *   chdir:P          chdir, then getcwd
 *
 * Used for allowed_paths' `symlink` entries beside real symlinks natively. Exit status: 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *type_name(mode_t m)
{
	return S_ISREG(m) ? "file" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "symlink" : "other";
}

static void show_stat(const char *op, const char *path, int r, const struct stat *st)
{
	if (r < 0) {
		printf("%s %s: error: %s\n", op, path, strerror(errno));
		return;
	}
	printf("%s %s: %s", op, path, type_name(st->st_mode));
	if (S_ISREG(st->st_mode) || S_ISLNK(st->st_mode))
		printf(" size=%lld", (long long)st->st_size);
	printf("\n");
}

static void result(const char *op, const char *path, int r, const char *ok)
{
	if (r < 0)
		printf("%s %s: error: %s\n", op, path, strerror(errno));
	else
		printf("%s %s: %s\n", op, path, ok);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		char *op = argv[i], *path = strchr(op, ':'), *arg = NULL;
		if (!path) {
			printf("%s: expected OP:PATH\n", op);
			continue;
		}
		*path++ = 0;
		if (strcmp(op, "write") == 0 || strcmp(op, "rename") == 0 || strcmp(op, "symlink") == 0) {
			arg = strchr(path, ':');
			if (arg)
				*arg++ = 0;
			else
				arg = "";
		}
		struct stat st;
		if (strcmp(op, "lstat") == 0) {
			show_stat(op, path, lstat(path, &st), &st);
		} else if (strcmp(op, "nofollow") == 0) {
			show_stat(op, path, fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW), &st);
		} else if (strcmp(op, "stat") == 0) {
			show_stat(op, path, stat(path, &st), &st);
		} else if (strcmp(op, "readlink") == 0) {
			char text[PATH_MAX];
			ssize_t n = readlink(path, text, sizeof text - 1);
			if (n >= 0)
				text[n] = 0;
			result(op, path, (int)n, text);
		} else if (strcmp(op, "read") == 0 || strcmp(op, "noread") == 0) {
			int nofollow = op[0] == 'n';
			int fd = open(path, O_RDONLY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
			char buf[201] = "";
			ssize_t n = fd < 0 || nofollow ? 0 : read(fd, buf, sizeof buf - 1);
			int saved = errno;
			if (fd >= 0)
				close(fd);
			errno = saved;
			if (n >= 0)
				buf[n] = 0;
			result(op, path, fd < 0 || n < 0 ? -1 : 0, nofollow ? "opened" : buf);
		} else if (strcmp(op, "write") == 0 || strcmp(op, "excl") == 0) {
			int excl = op[0] == 'e';
			int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (excl ? O_EXCL : O_TRUNC), 0644);
			ssize_t n = fd < 0 || excl ? 0 : write(fd, arg, strlen(arg));
			int saved = errno;
			if (fd >= 0)
				close(fd);
			errno = saved;
			result(op, path, fd < 0 || n < 0 ? -1 : 0, excl ? "created" : "written");
		} else if (strcmp(op, "unlink") == 0) {
			result(op, path, unlink(path), "removed");
		} else if (strcmp(op, "rename") == 0) {
			result(op, path, rename(path, arg), "renamed");
		} else if (strcmp(op, "symlink") == 0) {
			result(op, path, symlink(arg, path), "made");
		} else if (strcmp(op, "chdir") == 0) {
			char cwd[PATH_MAX] = "";
			int r = chdir(path);
			if (r == 0 && !getcwd(cwd, sizeof cwd))
				r = -1;
			result(op, path, r, cwd);
		} else {
			printf("%s %s: unknown operation\n", op, path);
		}
	}
	return 0;
}
