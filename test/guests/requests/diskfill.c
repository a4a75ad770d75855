/*
 * req-diskfill — fills the disk through a writable allowed path, to show the per-request write quota
 * (max_request_write). GET handler; the query is a guest path:
 *
 *   /fill?PATH   appends 1 MiB blocks to PATH (created) until a write fails or 1 GiB is written:
 *                200 "wrote=N errno=E" (E 0 when nothing failed; a short write counts what it wrote)
 *   /grow?PATH   ftruncate(PATH, 1 GiB): 200 "truncate=RC errno=E"
 *
 * Natively the same, with no quota but the file system's.
 */
#include <errno.h>
#include <fcntl.h>
#include "common.h"

#define MiB (1024 * 1024)

static char block[MiB];

static void on_get(const char *url, const char *arg)
{
	char body[128];
	const char *path = request_param(url, arg);
	int fd = open(path, O_CREAT | O_WRONLY | O_APPEND, 0644);
	if (fd < 0) {
		snprintf(body, sizeof body, "open errno=%d", errno);
		respond_str(500, body);
		return;
	}
	if (!strncmp(url, "/grow", 5)) {
		int rc = ftruncate(fd, 1024L * MiB);
		snprintf(body, sizeof body, "truncate=%d errno=%d", rc, rc ? errno : 0);
	} else {
		long wrote = 0;
		int err = 0;
		while (wrote < 1024L * MiB) {
			ssize_t n = write(fd, block, sizeof block);
			if (n < 0) {
				err = errno;
				break;
			}
			wrote += n;
		}
		snprintf(body, sizeof body, "wrote=%ld errno=%d", wrote, err);
	}
	close(fd);
	respond_str(200, body);
}

int main(int argc, char **argv)
{
	if (native_mode()) {
		on_get(argc > 1 ? argv[1] : "/fill?/tmp/diskfill", "");
		putchar('\n');
		return 0;
	}
	set_backend_get(on_get);
	wait_for_requests();
}
