/*
 * req-blocking — GET /CALL blocks forever in that system call (see ../block.h); it answers
 * 200 "CALL returned RC" only if the call came back. /ok answers 200 "ok". Natively:
 * `req-blocking /CALL`.
 */
#include "common.h"
#include "../block.h"

static void on_get(const char *url, const char *arg)
{
	(void)arg;
	char path[64], body[128];
	url_path(url, path, sizeof path);
	if (!strcmp(path, "/ok")) {
		respond_str(200, "ok");
		return;
	}
	long rc = block_in(path + 1);
	snprintf(body, sizeof body, "%s returned %ld", path + 1, rc);
	respond_str(rc == -1000 ? 404 : 200, body);
}

int main(int argc, char **argv)
{
	if (native_mode()) {
		on_get(argc > 1 ? argv[1] : "/ok", "");
		putchar('\n');
		return 0;
	}
	set_backend_get(on_get);
	wait_for_requests();
}
