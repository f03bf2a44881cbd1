/* SPDX-License-Identifier: MIT */
/*
 * TLS through rustls (libioucontext-tls, pkg-config "ioucontext-tls"; a
 * program that needs no TLS never links it, and building ioucontext without
 * TLS needs no Rust toolchain).
 *
 * A configuration (struct iou_tls_config) is made once from PEM files and
 * is immutable: any number of connections, in any thread, may share it.
 * A connection (struct iou_tls) runs TLS 1.2 or 1.3 over a socket that is
 * already connected (client) or accepted (server).  It belongs to one
 * reactor.  All its I/O goes through io_uring: ciphertext is received into
 * the connection's own buffer and fed to rustls, and what rustls produces
 * is sent from it; no call blocks the thread.
 *
 * Connection calls that wait (handshake, read, write, flush, shutdown) are
 * fiber-blocking calls like every operation, made from the thread of the
 * connection's reactor (from another thread they fail with -EPERM and
 * change nothing; -EINVAL for a NULL connection): bounded by the caller's
 * deadline (-ETIMEDOUT), interrupted by fiber_cancel() (-ECANCELED); called
 * outside any fiber, they drive the reactor until done.  An interrupted
 * read loses nothing and may be retried.  An interrupted flush, shutdown
 * or handshake leaves what it had not sent queued, to go out first on the
 * next call that sends.  An interrupted write has put an unknown part of
 * its buffer into the stream, so it ends writing for good: later writes
 * return the same error (reading may go on).  A socket error while sending
 * (-EPIPE, ...) also ends writing for good.
 *
 * Concurrency: one fiber may read while another writes on the same
 * connection (the usual full-duplex copy loops).  Two fibers reading (or
 * two writing) at once take turns, in order, as with an iou_mutex; outside
 * any fiber, waiting for a turn drives the reactor.
 *
 * Certificate verification and the host-name check are always on for
 * clients; only iou_tls_client_config_new_insecure_no_verify() turns them
 * off.  rustls (0.20) does not verify IP addresses as server names.
 *
 * Errors are -errno for the transport and files, or IOU_ETLS_* codes
 * (<ioucontext/error.h>) for TLS itself; iou_strerror() names them and
 * iou_tls_reason() gives rustls's full reason ("invalid peer certificate:
 * UnknownIssuer").  A peer that ends the transport without close_notify
 * is IOU_ETLS_TRUNCATED, never a clean end of stream.
 */
#ifndef IOUCONTEXT_TLS_H
#define IOUCONTEXT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <ioucontext/error.h>

#ifdef __cplusplus
extern "C" {
#endif

struct reactor;

/** An immutable client or server configuration, shareable across threads. */
struct iou_tls_config;

/** One TLS connection over a socket; used from its reactor's thread only. */
struct iou_tls;

/** The CA bundle clients trust by default (Debian's ca-certificates). */
#define IOU_TLS_DEFAULT_CAFILE "/etc/ssl/certs/ca-certificates.crt"

/** Room for any reason string, terminating NUL included (longer ones are cut). */
#define IOU_TLS_REASON_MAX 256

/**
 * struct iou_tls_client_options - what a client configuration is made from.
 */
struct iou_tls_client_options {
	const char *cafile;   /**< CAs to trust (PEM); NULL: IOU_TLS_DEFAULT_CAFILE */
	const char *certfile; /**< client certificate chain (PEM), or NULL */
	const char *keyfile;  /**< its private key (PEM); with certfile only */
	/** ALPN protocols to offer, in preference order, NULL-terminated; or NULL. */
	const char *const *alpn;
	/** No session resumption: every handshake is a full one. */
	bool no_resumption;
};

/** iou_tls_client_options_init() - defaults: system CAs, no client certificate, no ALPN. */
void iou_tls_client_options_init(struct iou_tls_client_options *opts);

/**
 * iou_tls_client_config_new() - make a client configuration.
 * @why, @why_len: optional buffer for the full reason of a failure (may be
 *                 NULL, 0), e.g. which file held no certificate.
 *
 * Reads the files with ordinary blocking system calls: meant for start-up.
 * The caller owns *@out and frees it with iou_tls_config_free().
 *
 * Return: 0; -errno if a file cannot be read (-ENOENT, -EACCES, ...;
 * -EFBIG for a file over 16 MiB, too large for PEM);
 * IOU_ETLS_CONFIG if a file holds no usable certificate or key, only one
 * of certfile and keyfile is given, or an ALPN name is empty or longer than
 * 255 bytes; -ENOMEM; -EINVAL if @opts or @out is NULL.
 */
int iou_tls_client_config_new(const struct iou_tls_client_options *opts,
			      struct iou_tls_config **out, char *why, size_t why_len);

/**
 * iou_tls_client_config_new_insecure_no_verify() - a client configuration
 * that accepts ANY server certificate, for any name.
 *
 * INSECURE: a man in the middle can read and change all traffic.  For
 * tests against servers with throw-away certificates only.  @opts->cafile
 * is ignored.  Returns as iou_tls_client_config_new().
 */
int iou_tls_client_config_new_insecure_no_verify(const struct iou_tls_client_options *opts,
						 struct iou_tls_config **out, char *why,
						 size_t why_len);

/**
 * struct iou_tls_server_options - what a server configuration is made from.
 */
struct iou_tls_server_options {
	const char *certfile; /**< certificate chain, leaf first (PEM); required */
	/** Its private key (PEM): PKCS#8, PKCS#1 RSA or SEC1 EC; required. */
	const char *keyfile;
	/** Ask clients for a certificate and verify it against these CAs (PEM); NULL: don't ask. */
	const char *client_cafile;
	/** With client_cafile: clients without a certificate are let in too. */
	bool client_cert_optional;
	/** ALPN protocols the server speaks, in preference order, NULL-terminated; or NULL. */
	const char *const *alpn;
	/** No session resumption (no session cache, no tickets). */
	bool no_resumption;
};

/** iou_tls_server_options_init() - defaults: no files, no client certificates, no ALPN. */
void iou_tls_server_options_init(struct iou_tls_server_options *opts);

/**
 * iou_tls_server_config_new() - make a server configuration.
 *
 * As iou_tls_client_config_new(): blocking file reads, caller owns *@out.
 * When the server has an ALPN list and a client offers protocols of which
 * none match, the handshake fails (IOU_ETLS_NO_ALPN).
 *
 * Return: 0; -errno for an unreadable file; IOU_ETLS_CONFIG for a missing
 * certfile/keyfile, a file with no certificate or usable key, or a bad
 * ALPN name; -ENOMEM; -EINVAL if @opts or @out is NULL.
 */
int iou_tls_server_config_new(const struct iou_tls_server_options *opts,
			      struct iou_tls_config **out, char *why, size_t why_len);

/**
 * iou_tls_config_free() - drop the caller's reference to @c (NULL is
 * ignored).  Connections made from it keep their own: it may be freed
 * while they live.
 */
void iou_tls_config_free(struct iou_tls_config *c);

/**
 * iou_tls_client_new() - a client connection over connected socket @fd.
 * @c:           a client configuration.
 * @server_name: the DNS name to send (SNI) and to verify the certificate
 *               against.
 *
 * No I/O yet: the handshake runs in iou_tls_handshake(), or in the first
 * read or write.  The connection borrows @fd: it never closes it.  The
 * caller owns *@out and ends it with iou_tls_close().
 *
 * Return: 0; IOU_ETLS_BAD_NAME if @server_name is empty, malformed or
 * (unless @c comes from iou_tls_client_config_new_insecure_no_verify(),
 * which verifies nothing) an IP address; -EINVAL if @c is not a client
 * configuration, @fd < 0, or an
 * argument is NULL; -ENOMEM; -EPERM from another thread than @r's owner.
 */
int iou_tls_client_new(struct reactor *r, const struct iou_tls_config *c, int fd,
		       const char *server_name, struct iou_tls **out);

/**
 * iou_tls_server_new() - a server connection over accepted socket @fd.
 *
 * As iou_tls_client_new().  Return: 0; -EINVAL if @c is not a server
 * configuration, @fd < 0, or an argument is NULL; -ENOMEM; -EPERM.
 */
int iou_tls_server_new(struct reactor *r, const struct iou_tls_config *c, int fd,
		       struct iou_tls **out);

/**
 * iou_tls_handshake() - run the handshake to its end (a no-op once done).
 *
 * Fiber-blocking; obeys deadline and cancellation.  A failed handshake
 * sends the peer an alert when it can, and the connection is then unusable.
 *
 * Return: 0; IOU_ETLS_* (e.g. IOU_ETLS_CERT_UNKNOWN_ISSUER,
 * IOU_ETLS_CERT_BAD_NAME, IOU_ETLS_PROTOCOL for a peer that does not speak
 * TLS, IOU_ETLS_TRUNCATED for one that closes mid-handshake); -errno from
 * the socket (-ECONNRESET, -EPIPE, ...); -ETIMEDOUT; -ECANCELED; -EINVAL
 * if @t is NULL; -EPERM from another thread.
 */
int iou_tls_handshake(struct iou_tls *t);

/**
 * iou_tls_read() - read up to @len bytes of plaintext.
 *
 * Fiber-blocking; returns as soon as some plaintext is there.  Runs the
 * handshake first if needed.
 *
 * Return: bytes read (> 0); 0 at the clean end of the stream (the peer's
 * close_notify; 0 again on later calls); IOU_ETLS_TRUNCATED if the
 * transport ended without close_notify; another IOU_ETLS_* code or -errno
 * from the socket; -ETIMEDOUT, -ECANCELED (nothing lost: retry if
 * wanted); -EINVAL if @t is NULL, or @buf is NULL with a non-zero @len;
 * -EPERM from another thread.  @len 0 returns 0 at once.
 */
ssize_t iou_tls_read(struct iou_tls *t, void *buf, size_t len);

/**
 * iou_tls_write() - write all @len bytes of plaintext, and send them.
 *
 * Fiber-blocking: returns once every byte has been encrypted and handed to
 * the socket.  Runs the handshake first if needed.
 *
 * Return: @len; IOU_ETLS_CLOSED after iou_tls_shutdown(); an IOU_ETLS_*
 * code; -errno from the socket (-EPIPE, -ECONNRESET, ...; sticky);
 * -ETIMEDOUT, -ECANCELED (part of @buf may have been sent: writing is
 * over for this connection, later writes return the same error);
 * -EINVAL if @t is NULL, or @buf is NULL with a non-zero @len; -EPERM
 * from another thread.
 */
ssize_t iou_tls_write(struct iou_tls *t, const void *buf, size_t len);

/**
 * iou_tls_flush() - send whatever rustls has queued (handshake messages,
 * alerts, tickets).  iou_tls_write() already flushes what it writes.
 *
 * Return: 0, or an error as iou_tls_write().
 */
int iou_tls_flush(struct iou_tls *t);

/**
 * iou_tls_shutdown() - send close_notify: the end of this side's stream.
 *
 * Later writes fail with IOU_ETLS_CLOSED; reading goes on until the peer's
 * own close_notify.  The socket itself is left open (shut its write half
 * with iou_shutdown() if the protocol wants that).  Calling it again is a
 * no-op returning 0.
 *
 * Return: 0, or an error as iou_tls_flush().
 */
int iou_tls_shutdown(struct iou_tls *t);

/**
 * iou_tls_close() - free @t (NULL is ignored), without any I/O: call
 * iou_tls_shutdown() first for a clean close.  Does not close the socket.
 * No other fiber may be inside a call on @t.
 *
 * Return: 0.
 */
int iou_tls_close(struct iou_tls *t);

/** iou_tls_version() - 0x0304 (TLS 1.3), 0x0303 (TLS 1.2), or 0 before the handshake. */
int iou_tls_version(const struct iou_tls *t);

/**
 * iou_tls_cipher_suite() - the negotiated suite's name, e.g.
 * "TLS13_AES_256_GCM_SHA384", or "" before the handshake.  Owned by @t.
 */
const char *iou_tls_cipher_suite(const struct iou_tls *t);

/** iou_tls_alpn() - the negotiated ALPN protocol, or NULL if none.  Owned by @t. */
const char *iou_tls_alpn(const struct iou_tls *t);

/**
 * iou_tls_peer_subject() - the subject of the peer's certificate, RFC 4514
 * style ("CN=localhost,O=Example"), into @buf (NUL-terminated, cut to fit).
 *
 * Return: the subject's full length (as snprintf); 0 if the peer sent no
 * certificate; IOU_ETLS_CERT_INVALID if it cannot be parsed; -EINVAL if
 * @t is NULL, or @buf is NULL with a non-zero @len.
 */
int iou_tls_peer_subject(const struct iou_tls *t, char *buf, size_t len);

/**
 * iou_tls_reason() - the full reason of the connection's last TLS failure
 * (e.g. "invalid peer certificate: CertExpired"), or "" if none.  Owned by
 * @t, valid until its next call.
 */
const char *iou_tls_reason(const struct iou_tls *t);

/** iou_tls_fd() - the socket the connection runs over (-EINVAL if @t is NULL). */
int iou_tls_fd(const struct iou_tls *t);

#ifdef __cplusplus
}
#endif

#endif
