/* A fake libssl with two versions of SSL_read, for tlstrack's tests: the
 * default one (SSL_read@@OSSL_2) must be probed, not SSL_read@OSSL_1 (the
 * test also swaps their symbol table entries). */
int ssl_read_new(void *s, void *b, int n) { return n + 2; }
int ssl_read_old(void *s, void *b, int n) { return n + 1; }
__asm__(".symver ssl_read_new,SSL_read@@OSSL_2");
__asm__(".symver ssl_read_old,SSL_read@OSSL_1");
int SSL_write(void *s, const void *b, int n) { return n + 3; }
