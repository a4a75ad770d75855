/*
 * stdin — copies stdin to stdout with read/write in odd-sized chunks (1, 7, 13, 4093, 65537 bytes,
 * in turn; short writes are continued), then prints "stdin: N bytes" to stderr.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	static const size_t chunks[] = { 1, 7, 13, 4093, 65537 };
	static char buf[65537];
	long long total = 0;
	for (int i = 0;; i++) {
		ssize_t n = read(0, buf, chunks[i % 5]);
		if (n < 0) {
			perror("stdin: read");
			return 1;
		}
		if (n == 0)
			break;
		for (ssize_t done = 0; done < n;) {
			ssize_t w = write(1, buf + done, n - done);
			if (w < 0) {
				perror("stdin: write");
				return 1;
			}
			done += w;
		}
		total += n;
	}
	fprintf(stderr, "stdin: %lld bytes\n", total);
	return 0;
}
