/* A program with OpenSSL linked in (statically by the tests), for
 * tlstrack's symbol resolution: "sleep" keeps it running. */
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *s = SSL_new(ctx);
	char buf[16];
	size_t n;

	printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
	if (argc > 5) { /* never: keeps the four functions linked in */
		SSL_read(s, buf, sizeof buf);
		SSL_write(s, "x", 1);
		SSL_read_ex(s, buf, sizeof buf, &n);
		SSL_write_ex(s, "x", 1, &n);
	}
	printf("ready\n");
	fflush(stdout);
	if (argc > 1 && strcmp(argv[1], "sleep") == 0)
		sleep(60);
	SSL_free(s);
	SSL_CTX_free(ctx);
	return 0;
}
