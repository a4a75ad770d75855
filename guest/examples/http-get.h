/*
 * http-get.h — a plain HTTP/1.0 GET over a socket, for what a program does natively where tskvm's
 * host would make the request (sys_fetch): the examples' native mode, and the native loop of
 * `tskvm bench` (guest/bench/loop-host.c). http:// to a numeric IPv4 host or localhost only, no
 * redirects; the body is malloc'd.
 */
#ifndef TSKVM_EXAMPLES_HTTP_GET_H
#define TSKVM_EXAMPLES_HTTP_GET_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct http_answer {
	int status;
	char ctype[128];
	char *body;
	size_t len;
};

/* 0 and the answer, or -1 (a URL it cannot take, no connection, no HTTP answer). */
static inline int http_get(const char *url, struct http_answer *a)
{
	char host[256], port[8] = "80";
	memset(a, 0, sizeof *a);
	if (strncmp(url, "http://", 7) != 0)
		return -1;
	const char *h = url + 7, *path = strchr(h, '/');
	size_t hlen = path ? (size_t)(path - h) : strlen(h);
	if (!path)
		path = "/";
	if (hlen == 0 || hlen >= sizeof host)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = 0;
	char *colon = strchr(host, ':');
	if (colon) {
		*colon = 0;
		snprintf(port, sizeof port, "%s", colon + 1);
	}
	/* Numeric IPv4 hosts (and localhost): a static binary has no name service to ask. */
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
	if (inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, &addr.sin_addr) != 1)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	char request[1024];
	int rlen = snprintf(request, sizeof request, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, host);
	if (rlen < 0 || (size_t)rlen >= sizeof request || write(fd, request, (size_t)rlen) != rlen) {
		close(fd);
		return -1;
	}
	size_t cap = 1 << 16, len = 0;
	char *raw = malloc(cap + 1);
	ssize_t got;
	while (raw && (got = read(fd, raw + len, cap - len)) > 0) {
		len += (size_t)got;
		if (len == cap)
			raw = realloc(raw, (cap *= 2) + 1);
	}
	close(fd);
	if (!raw)
		return -1;
	raw[len] = 0;
	char *end = strstr(raw, "\r\n\r\n");
	if (!end || sscanf(raw, "HTTP/%*d.%*d %d", &a->status) != 1) {
		free(raw);
		return -1;
	}
	*end = 0;
	for (char *line = strstr(raw, "\r\n"); line; line = strstr(line + 2, "\r\n"))
		if (strncasecmp(line + 2, "Content-Type:", 13) == 0)
			sscanf(line + 15, " %127[^\r]", a->ctype);
	a->len = len - (size_t)(end + 4 - raw);
	a->body = malloc(a->len + 1);
	if (a->body)
		memcpy(a->body, end + 4, a->len);
	free(raw);
	return a->body ? 0 : -1;
}

#endif
