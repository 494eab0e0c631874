/* An HTTPS client with OpenSSL linked in statically (the e2e test links it
 * with libssl.a and libcrypto.a): connects and handshakes, prints "ready",
 * waits for a line on stdin (the test's go-ahead, once the agent covers it),
 * then sends one GET with SSL_write and reads the answer with SSL_read.
 * Usage: client HOST PORT PATH */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s HOST PORT PATH\n", argv[0]);
		return 2;
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	if (fd < 0 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		perror("connect");
		return 1;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	char line[64];
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	char req[512];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n", argv[3],
			 argv[1], argv[2]);
	if (SSL_write(ssl, req, n) != n) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	char buf[4096];
	int total = 0, r;
	while ((r = SSL_read(ssl, buf + total, sizeof(buf) - 1 - total)) > 0) {
		total += r;
		if (total >= (int)sizeof(buf) - 1)
			break;
	}
	buf[total] = 0;
	char *eol = strstr(buf, "\r\n");
	if (eol)
		*eol = 0;
	printf("%s\n", buf);
	SSL_shutdown(ssl);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return 0;
}
