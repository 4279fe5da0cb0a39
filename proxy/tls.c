/* tls: warren-proxy's TLS sessions over OpenSSL (see tls.h). */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"

struct proxy_tls {
	pthread_mutex_t lock; /* guards context against a reload */
	SSL_CTX *context;
};

/* The first queued OpenSSL error as text, after what. */
static void tls__error(char *err, size_t err_len, const char *what, const char *file)
{
	char reason[256] = "unknown error";
	unsigned long code = ERR_get_error();

	if (code)
		ERR_error_string_n(code, reason, sizeof(reason));
	snprintf(err, err_len, "%s %s: %s", what, file, reason);
	ERR_clear_error();
}

/* A server context: TLS 1.2 and 1.3, no renegotiation, a peer's TCP close
 * read as an end (HTTP frames its own bodies), writes that may be partial
 * from a buffer that moves between retries (the loop compacts its
 * buffers), session buffers released while idle. NULL with err set. */
static SSL_CTX *tls__context(const char *cert_file, const char *key_file, char *err, size_t err_len)
{
	SSL_CTX *context = SSL_CTX_new(TLS_server_method());

	if (!context) {
		tls__error(err, err_len, "cannot make a TLS context for", cert_file);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
	SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(context, cert_file) != 1) {
		tls__error(err, err_len, "cannot load the certificate chain", cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(context, key_file, SSL_FILETYPE_PEM) != 1) {
		tls__error(err, err_len, "cannot load the private key", key_file);
		goto fail;
	}
	if (SSL_CTX_check_private_key(context) != 1) {
		tls__error(err, err_len, "the private key does not match the certificate in",
			   cert_file);
		goto fail;
	}
	return context;
fail:
	SSL_CTX_free(context);
	return NULL;
}

struct proxy_tls *proxy_tls__open(const char *cert_file, const char *key_file, char *err,
				  size_t err_len)
{
	struct proxy_tls *tls = calloc(1, sizeof(*tls));

	if (!tls) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	tls->context = tls__context(cert_file, key_file, err, err_len);
	if (!tls->context) {
		free(tls);
		return NULL;
	}
	pthread_mutex_init(&tls->lock, NULL);
	return tls;
}

int proxy_tls__reload(struct proxy_tls *tls, const char *cert_file, const char *key_file, char *err,
		      size_t err_len)
{
	SSL_CTX *fresh = tls__context(cert_file, key_file, err, err_len), *old;

	if (!fresh)
		return -1;
	pthread_mutex_lock(&tls->lock);
	old = tls->context;
	tls->context = fresh;
	pthread_mutex_unlock(&tls->lock);
	SSL_CTX_free(old); /* live sessions hold their own reference */
	return 0;
}

void proxy_tls__close(struct proxy_tls *tls)
{
	if (!tls)
		return;
	SSL_CTX_free(tls->context);
	pthread_mutex_destroy(&tls->lock);
	free(tls);
}

SSL *proxy_tls__accept(struct proxy_tls *tls, int fd)
{
	SSL *session;

	pthread_mutex_lock(&tls->lock);
	session = SSL_new(tls->context);
	pthread_mutex_unlock(&tls->lock);
	if (!session)
		return NULL;
	if (SSL_set_fd(session, fd) != 1) {
		SSL_free(session);
		return NULL;
	}
	SSL_set_accept_state(session);
	return session;
}

/* Maps the outcome of an SSL_read/SSL_write that returned n <= 0 onto
 * recv/send's: 0 at the end, -1 with errno. */
static ssize_t tls__outcome(SSL *session, int n)
{
	int saved = errno;

	switch (SSL_get_error(session, n)) {
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		errno = saved ? saved : ECONNRESET;
		return -1;
	default: /* a protocol error: bad handshake, bad record */
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

ssize_t proxy_tls__recv(SSL *session, void *buffer, size_t len)
{
	int n;

	if (len > INT32_MAX)
		len = INT32_MAX;
	ERR_clear_error();
	errno = 0;
	n = SSL_read(session, buffer, (int)len);
	return n > 0 ? n : tls__outcome(session, n);
}

ssize_t proxy_tls__send(SSL *session, const void *buffer, size_t len)
{
	int n;

	if (len > INT32_MAX)
		len = INT32_MAX;
	ERR_clear_error();
	errno = 0;
	n = SSL_write(session, buffer, (int)len);
	return n > 0 ? n : tls__outcome(session, n);
}

void proxy_tls__end(SSL *session)
{
	if (!session)
		return;
	if (SSL_is_init_finished(session)) {
		ERR_clear_error();
		SSL_shutdown(session); /* non-blocking: best effort */
	}
	ERR_clear_error();
	SSL_free(session);
}
