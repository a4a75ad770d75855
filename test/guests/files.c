/*
 * files [--cwd] PATH... — for each PATH prints what the filesystem says about it: lstat/stat type,
 * permissions and size, readlink target, access(R_OK), and then either the size and FNV-1a checksum
 * of its contents (read in odd-sized chunks; lseek, pread and dup2 cross-checked) or, for a
 * directory, its entries sorted by name with each regular file's checksum (openat relative to the
 * directory fd). A failure prints `PATH: error: <strerror> (<call>)` and makes the exit status 1.
 * `--cwd` first prints getcwd().
 * Used for allowed reads, refused reads outside the allowed paths, `..` and symlink escapes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint32_t fnv1a(uint32_t h, const unsigned char *p, size_t n)
{
	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h;
}
#define FNV_INIT 2166136261u

static const char *type_name(mode_t m)
{
	return S_ISREG(m) ? "file" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "symlink" : S_ISCHR(m) ? "chardev"
	     : S_ISBLK(m) ? "blockdev" : S_ISFIFO(m) ? "fifo" : S_ISSOCK(m) ? "socket" : "unknown";
}

/* `PATH: error: <strerror> (<call that failed>)` */
static int fail(const char *path, const char *call)
{
	printf("%s: error: %s (%s)\n", path, strerror(errno), call);
	return 1;
}

/* Reads fd to its end in chunks of varying odd sizes; returns the byte count, -1 on error. */
static long long read_all(int fd, uint32_t *hash)
{
	static const size_t chunks[] = { 1, 7, 4093, 13, 65537 };
	static unsigned char buf[65537];
	long long total = 0;
	*hash = FNV_INIT;
	for (int i = 0;; i++) {
		ssize_t n = read(fd, buf, chunks[i % 5]);
		if (n < 0)
			return -1;
		if (n == 0)
			return total;
		*hash = fnv1a(*hash, buf, n);
		total += n;
	}
}

/* The contents of an open regular file, then lseek/pread/dup2 checked against them. */
static int show_file(const char *path, int fd)
{
	struct stat st;
	uint32_t hash, again;
	if (fstat(fd, &st) < 0)
		return fail(path, "fstat");
	long long size = read_all(fd, &hash);
	if (size < 0)
		return fail(path, "read");
	printf("%s: size=%lld fstat-size=%lld fnv1a=%08x\n", path, size, (long long)st.st_size, hash);

	off_t end = lseek(fd, 0, SEEK_END), mid = lseek(fd, size / 2, SEEK_SET);
	unsigned char head[16], tail[16];
	ssize_t nt = read(fd, tail, sizeof tail);
	ssize_t nh = pread(fd, head, sizeof head, 0);
	off_t after = lseek(fd, 0, SEEK_CUR); /* pread must not move the offset */
	printf("%s: lseek end=%lld mid=%lld read@mid=%zd fnv1a=%08x pread@0=%zd fnv1a=%08x offset=%lld\n",
	       path, (long long)end, (long long)mid, nt, fnv1a(FNV_INIT, tail, nt > 0 ? nt : 0),
	       nh, fnv1a(FNV_INIT, head, nh > 0 ? nh : 0), (long long)after);

	if (dup2(fd, 100) != 100)
		return fail(path, "dup2");
	lseek(100, 0, SEEK_SET); /* the duplicate shares the offset with fd */
	long long size2 = read_all(fd, &again);
	close(100);
	printf("%s: dup2 shares offset, reread %s\n", path,
	       size2 == size && again == hash ? "matches" : "DIFFERS");
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Directory entries sorted by name; each regular file is opened with openat(dirfd, name). */
static int show_dir(const char *path, int fd)
{
	DIR *d = fdopendir(fd);
	if (!d)
		return fail(path, "fdopendir");
	char *names[1024];
	int n = 0;
	struct dirent *e;
	errno = 0;
	while (n < 1024 && (e = readdir(d)))
		names[n++] = strdup(e->d_name);
	if (errno)
		return fail(path, "readdir");
	qsort(names, n, sizeof *names, by_name);
	printf("%s: %d entries\n", path, n);
	for (int i = 0; i < n; i++) {
		struct stat st;
		if (strcmp(names[i], ".") == 0 || strcmp(names[i], "..") == 0) {
			printf("  %s\n", names[i]); /* ".." may lie outside the allowed paths */
		} else if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			printf("  %s: fstatat error: %s\n", names[i], strerror(errno));
		} else if (S_ISREG(st.st_mode)) {
			uint32_t hash;
			int f = openat(dirfd(d), names[i], O_RDONLY | O_CLOEXEC);
			long long size = f < 0 ? -1 : read_all(f, &hash);
			if (size < 0)
				printf("  %s: file error: %s\n", names[i], strerror(errno));
			else
				printf("  %s: file size=%lld fnv1a=%08x\n", names[i], size, hash);
			if (f >= 0)
				close(f);
		} else {
			printf("  %s: %s\n", names[i], type_name(st.st_mode));
		}
		free(names[i]);
	}
	closedir(d);
	return 0;
}

static int show(const char *path)
{
	struct stat lst, st;
	if (lstat(path, &lst) < 0)
		return fail(path, "lstat");
	if (S_ISLNK(lst.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(path, target, sizeof target - 1);
		if (n < 0)
			return fail(path, "readlink");
		target[n] = 0;
		printf("%s: symlink -> %s\n", path, target);
	}
	if (stat(path, &st) < 0)
		return fail(path, "stat");
	printf("%s: %s mode=%04o", path, type_name(st.st_mode), st.st_mode & 07777);
	if (S_ISREG(st.st_mode))
		printf(" size=%lld", (long long)st.st_size);
	printf("\n");
	printf("%s: access(R_OK)=%s\n", path, access(path, R_OK) == 0 ? "ok" : strerror(errno));

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(path, "open");
	int r = S_ISDIR(st.st_mode) ? show_dir(path, fd) : show_file(path, fd);
	if (!S_ISDIR(st.st_mode))
		close(fd);
	return r;
}

int main(int argc, char **argv)
{
	int i = 1, failures = 0;
	if (i < argc && strcmp(argv[i], "--cwd") == 0) {
		char cwd[PATH_MAX];
		printf("cwd: %s\n", getcwd(cwd, sizeof cwd) ? cwd : strerror(errno));
		i++;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: files [--cwd] PATH...\n");
		return 2;
	}
	for (; i < argc; i++)
		failures += show(argv[i]);
	return failures ? 1 : 0;
}
