/* LD_PRELOAD shim for wrk (bench/hub_tls.py): present a device's client certificate on every TLS
 * connection, and make every reconnection a full handshake.
 *
 * wrk has no option for client certificates: each SSL object wrk creates gets the certificate chain and
 * key named by EDGELOOP_BENCH_CLIENT_CERT and EDGELOOP_BENCH_CLIENT_KEY (PEM files). wrk reuses an SSL
 * object across reconnects with SSL_clear, which keeps the session for resumption: the shim drops it, so
 * a reconnecting "cold device" pays a full handshake, as a device whose HTTP client keeps no TLS session.
 *
 *   gcc -shared -fPIC -O2 -o wrk_client_cert.so bench/wrk_client_cert.c -ldl -lssl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

SSL *SSL_new(SSL_CTX *ctx) {
    static SSL *(*real)(SSL_CTX *);
    if (!real) real = dlsym(RTLD_NEXT, "SSL_new");
    SSL *ssl = real(ctx);
    const char *cert = getenv("EDGELOOP_BENCH_CLIENT_CERT"), *key = getenv("EDGELOOP_BENCH_CLIENT_KEY");
    if (ssl && cert && key) {
        if (SSL_use_certificate_chain_file(ssl, cert) != 1 || SSL_use_PrivateKey_file(ssl, key, SSL_FILETYPE_PEM) != 1) {
            fprintf(stderr, "wrk_client_cert: cannot load %s / %s\n", cert, key);
            abort();
        }
    }
    return ssl;
}

int SSL_clear(SSL *ssl) {
    static int (*real)(SSL *);
    if (!real) real = dlsym(RTLD_NEXT, "SSL_clear");
    int result = real(ssl);
    SSL_set_session(ssl, NULL); /* no resumption: a full handshake on every reconnect */
    return result;
}
