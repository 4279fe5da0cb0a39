/* tls: warren-proxy's own TLS for public URLs (docs/transport-security.md,
 * "Public URLs over HTTPS"). One server context holds one certificate
 * chain, the `*.<domain>` wildcard; TLS 1.2 and 1.3 only, no
 * renegotiation. The context can be replaced at run time (certificate
 * renewal): connections keep the context they started with. Reads and
 * writes follow recv(2)/send(2)'s contract on a non-blocking socket, so
 * the event loop treats a TLS client like a plain one. */
#ifndef WARREN_PROXY_TLS_H
#define WARREN_PROXY_TLS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct ssl_st SSL;
struct proxy_tls;

/* Loads the PEM certificate chain and its private key (and checks that
 * they match). NULL with a message in err. */
struct proxy_tls *proxy_tls__open(const char *cert_file, const char *key_file, char *err,
				  size_t err_len);
/* Loads the files again into a new context that later connections use;
 * on failure the current one stays. 0, or -1 with a message in err. */
int proxy_tls__reload(struct proxy_tls *tls, const char *cert_file, const char *key_file, char *err,
		      size_t err_len);
void proxy_tls__close(struct proxy_tls *tls);

/* A server-side session on the accepted non-blocking socket fd (the
 * handshake runs inside the first reads and writes). NULL when out of
 * memory. */
SSL *proxy_tls__accept(struct proxy_tls *tls, int fd);
/* recv(2)'s contract: bytes read, 0 at the peer's close (close_notify or
 * a bare TCP close), -1 with errno EAGAIN when the socket has to become
 * readable or writable first, any other errno when the session is
 * broken (a failed handshake included). */
ssize_t proxy_tls__recv(SSL *session, void *buffer, size_t len);
/* send(2)'s contract (partial writes included), errno as above. */
ssize_t proxy_tls__send(SSL *session, const void *buffer, size_t len);
/* Sends close_notify if it can without waiting, then frees the session
 * (the socket stays open: the caller closes it). */
void proxy_tls__end(SSL *session);

#endif
