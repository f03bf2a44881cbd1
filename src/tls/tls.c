/* SPDX-License-Identifier: MIT */
/*
 * TLS connections on rustls (<ioucontext/tls.h>), built on the public API
 * of the core and on the in-tree shim's C ABI (rust/iou-rustls).
 *
 * The "memory buffer" pattern: rustls never touches the socket.  A
 * connection receives ciphertext with iou_recv() into its own buffer and
 * feeds it to rustls; what rustls wants sent is taken into a second buffer
 * and sent with iou_send().  Both buffers keep their unused part across
 * calls, so an interrupted call loses nothing: bytes received but not yet
 * fed, and bytes taken but not yet sent, wait for the next call.
 *
 * Receiving and sending are two "turns", each an iou_mutex: held by one
 * fiber at a time and handed on in FIFO order.  A reader never waits for the send turn: if
 * a writer holds it, that writer sends whatever rustls has queued,
 * including what the reader's records produced (a KeyUpdate answer, an
 * alert), because it loops until rustls has nothing left.  So a reader
 * parked behind a writer that is itself blocked by a peer who waits for us
 * to read cannot happen.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ioucontext/ioucontext.h>
#include <ioucontext/tls.h>

#include "iou_rustls.h"

#define API __attribute__((visibility("default")))

/* The shim's codes are the public ones. */
_Static_assert(IOUR_E_OTHER == IOU_ETLS, "shim code");
_Static_assert(IOUR_E_CONFIG == IOU_ETLS_CONFIG, "shim code");
_Static_assert(IOUR_E_CERT_UNKNOWN_ISSUER == IOU_ETLS_CERT_UNKNOWN_ISSUER, "shim code");
_Static_assert(IOUR_E_CERT_BAD_NAME == IOU_ETLS_CERT_BAD_NAME, "shim code");
_Static_assert(IOUR_E_CERT_EXPIRED == IOU_ETLS_CERT_EXPIRED, "shim code");
_Static_assert(IOUR_E_CERT_NOT_YET_VALID == IOU_ETLS_CERT_NOT_YET_VALID, "shim code");
_Static_assert(IOUR_E_CERT_INVALID == IOU_ETLS_CERT_INVALID, "shim code");
_Static_assert(IOUR_E_NO_CERT == IOU_ETLS_NO_CERT, "shim code");
_Static_assert(IOUR_E_ALERT == IOU_ETLS_ALERT, "shim code");
_Static_assert(IOUR_E_PROTOCOL == IOU_ETLS_PROTOCOL, "shim code");
_Static_assert(IOUR_E_INCOMPATIBLE == IOU_ETLS_INCOMPATIBLE, "shim code");
_Static_assert(IOUR_E_NO_ALPN == IOU_ETLS_NO_ALPN, "shim code");
_Static_assert(IOUR_E_TRUNCATED == IOU_ETLS_TRUNCATED, "shim code");
_Static_assert(IOUR_E_CLOSED == IOU_ETLS_CLOSED, "shim code");
_Static_assert(IOUR_E_BAD_NAME == IOU_ETLS_BAD_NAME, "shim code");
_Static_assert(IOUR_E_INTERNAL == IOU_ETLS_INTERNAL, "shim code");

/*
 * Ciphertext buffers.  IN holds two full records, so one receive usually
 * brings whole records; OUT takes several records at once, so a 16 KiB
 * write (one record plus its header) goes out in one send.
 */
#define IN_SIZE (34 * 1024)
#define OUT_SIZE (64 * 1024)

/* Largest PEM file read: far beyond any real certificate bundle. */
#define PEM_MAX (16 * 1024 * 1024)

struct iou_tls_config {
	bool server;
	struct iour_client_config *client_cfg;
	struct iour_server_config *server_cfg;
};

struct iou_tls {
	struct reactor *r;
	struct iour_conn *c;
	int fd;
	int err;	  /* sticky: a TLS failure, or receiving failed */
	int werr;	  /* sticky: sending failed (reading may go on) */
	bool shut;	  /* close_notify queued */
	bool eof;	  /* the transport's end was fed to rustls */
	bool settled;	  /* handshake over and suite/alpn recorded */
	uint64_t fills;	  /* receives fed so far: lets a waiting reader see news */
	/* Receiving, sending: one fiber at a time each, FIFO. */
	struct iou_mutex rturn, wturn;
	size_t in_off, in_len;	 /* in[in_off, in_len): received, not yet fed */
	size_t out_off, out_len; /* out[out_off, out_len): taken, not yet sent */
	char suite[64];
	char alpn[256];
	bool has_alpn;
	char reason[IOU_TLS_REASON_MAX];
	unsigned char in[IN_SIZE];
	unsigned char out[OUT_SIZE];
};

/* ---------------------------------------------------------------------- */
/* Configurations */

/* Put "@a@b" into the caller's reason buffer, if any. */
static void say(char *why, size_t why_len, const char *a, const char *b)
{
	if (why && why_len)
		snprintf(why, why_len, "%s%s", a, b);
}

static void say_file(char *why, size_t why_len, const char *path, const char *what)
{
	if (why && why_len)
		snprintf(why, why_len, "%s: %s", path, what);
}

/* Read all of @path (for PEM); *@buf is malloc'd, NUL-terminated. */
static int read_file(const char *path, unsigned char **buf, size_t *len, char *why,
		     size_t why_len)
{
	unsigned char *p = NULL;
	size_t n = 0, cap = 0;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		say_file(why, why_len, path, strerror(-err));
		return err;
	}
	for (;;) {
		ssize_t m;

		if (cap - n < 4096 + 1) {
			unsigned char *q;

			if (cap >= PEM_MAX) {
				err = -EFBIG;
				say_file(why, why_len, path, "file too large for a PEM file");
				break;
			}
			cap = cap ? cap * 2 : 16384;
			q = realloc(p, cap);
			if (!q) {
				err = -ENOMEM;
				break;
			}
			p = q;
		}
		m = read(fd, p + n, cap - n - 1);
		if (m < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			say_file(why, why_len, path, strerror(-err));
			break;
		}
		if (m == 0)
			break;
		n += (size_t)m;
	}
	close(fd);
	if (err) {
		free(p);
		return err;
	}
	if (!p && !(p = malloc(1)))
		return -ENOMEM;
	p[n] = '\0';
	*buf = p;
	*len = n;
	return 0;
}

/* ALPN names to the wire format: each name after its length byte. */
static int alpn_wire(const char *const *alpn, unsigned char **out, size_t *len, char *why,
		     size_t why_len)
{
	size_t total = 0, off = 0;
	unsigned char *p;

	*out = NULL;
	*len = 0;
	if (!alpn)
		return 0;
	for (size_t i = 0; alpn[i]; i++) {
		size_t n = strlen(alpn[i]);

		if (n == 0 || n > 255) {
			say(why, why_len, n ? "ALPN protocol name longer than 255 bytes: " :
					      "empty ALPN protocol name", n ? alpn[i] : "");
			return IOU_ETLS_CONFIG;
		}
		total += 1 + n;
	}
	if (!total)
		return 0;
	p = malloc(total);
	if (!p)
		return -ENOMEM;
	for (size_t i = 0; alpn[i]; i++) {
		size_t n = strlen(alpn[i]);

		p[off++] = (unsigned char)n;
		memcpy(p + off, alpn[i], n);
		off += n;
	}
	*out = p;
	*len = total;
	return 0;
}

/* The PEM files a configuration is made from. */
struct pem {
	unsigned char *data[3];
	size_t len[3];
};

static int pem_load(struct pem *pem, const char *const paths[3], char *why, size_t why_len)
{
	memset(pem, 0, sizeof(*pem));
	for (int i = 0; i < 3; i++) {
		if (!paths[i])
			continue;
		int rc = read_file(paths[i], &pem->data[i], &pem->len[i], why, why_len);

		if (rc < 0)
			return rc;
	}
	return 0;
}

static void pem_free(struct pem *pem)
{
	for (int i = 0; i < 3; i++) {
		/* Private keys should not linger in freed memory. */
		if (pem->data[i])
			explicit_bzero(pem->data[i], pem->len[i]);
		free(pem->data[i]);
	}
}

API void iou_tls_client_options_init(struct iou_tls_client_options *opts)
{
	if (opts)
		memset(opts, 0, sizeof(*opts));
}

API void iou_tls_server_options_init(struct iou_tls_server_options *opts)
{
	if (opts)
		memset(opts, 0, sizeof(*opts));
}

static int client_config(const struct iou_tls_client_options *o, bool insecure,
			 struct iou_tls_config **out, char *why, size_t why_len)
{
	struct iou_tls_config *c = NULL;
	unsigned char *alpn = NULL;
	size_t alpn_len = 0;
	struct pem pem;
	uint32_t flags = 0;
	int rc;

	if (why && why_len)
		why[0] = '\0';
	if (!o || !out)
		return -EINVAL;
	*out = NULL;
	if (!o->certfile != !o->keyfile) {
		say(why, why_len, "a client certificate needs both certfile and keyfile", "");
		return IOU_ETLS_CONFIG;
	}
	const char *paths[3] = {
		insecure ? NULL : o->cafile ? o->cafile : IOU_TLS_DEFAULT_CAFILE,
		o->certfile,
		o->keyfile,
	};
	rc = pem_load(&pem, paths, why, why_len);
	if (rc == 0)
		rc = alpn_wire(o->alpn, &alpn, &alpn_len, why, why_len);
	if (rc == 0 && !(c = calloc(1, sizeof(*c))))
		rc = -ENOMEM;
	if (rc == 0) {
		flags |= insecure ? IOUR_INSECURE_NO_VERIFY : 0;
		flags |= o->no_resumption ? IOUR_NO_RESUMPTION : 0;
		rc = iour_client_config_new(pem.data[0], pem.len[0], pem.data[1], pem.len[1],
					    pem.data[2], pem.len[2], alpn, alpn_len, flags,
					    &c->client_cfg, why, why_len);
	}
	pem_free(&pem);
	free(alpn);
	if (rc < 0) {
		free(c);
		return rc;
	}
	*out = c;
	return 0;
}

API int iou_tls_client_config_new(const struct iou_tls_client_options *opts,
				  struct iou_tls_config **out, char *why, size_t why_len)
{
	return client_config(opts, false, out, why, why_len);
}

API int iou_tls_client_config_new_insecure_no_verify(const struct iou_tls_client_options *opts,
						     struct iou_tls_config **out, char *why,
						     size_t why_len)
{
	return client_config(opts, true, out, why, why_len);
}

API int iou_tls_server_config_new(const struct iou_tls_server_options *o,
				  struct iou_tls_config **out, char *why, size_t why_len)
{
	struct iou_tls_config *c = NULL;
	unsigned char *alpn = NULL;
	size_t alpn_len = 0;
	struct pem pem;
	uint32_t flags = 0;
	int rc;

	if (why && why_len)
		why[0] = '\0';
	if (!o || !out)
		return -EINVAL;
	*out = NULL;
	if (!o->certfile || !o->keyfile) {
		say(why, why_len, "a server needs a certfile and a keyfile", "");
		return IOU_ETLS_CONFIG;
	}
	const char *paths[3] = { o->certfile, o->keyfile, o->client_cafile };

	rc = pem_load(&pem, paths, why, why_len);
	if (rc == 0)
		rc = alpn_wire(o->alpn, &alpn, &alpn_len, why, why_len);
	if (rc == 0 && !(c = calloc(1, sizeof(*c))))
		rc = -ENOMEM;
	if (rc == 0) {
		c->server = true;
		flags |= o->client_cert_optional ? IOUR_CLIENT_CERT_OPTIONAL : 0;
		flags |= o->no_resumption ? IOUR_NO_RESUMPTION : 0;
		rc = iour_server_config_new(pem.data[0], pem.len[0], pem.data[1], pem.len[1],
					    pem.data[2], pem.len[2], alpn, alpn_len, flags,
					    &c->server_cfg, why, why_len);
	}
	pem_free(&pem);
	free(alpn);
	if (rc < 0) {
		free(c);
		return rc;
	}
	*out = c;
	return 0;
}

API void iou_tls_config_free(struct iou_tls_config *c)
{
	if (!c)
		return;
	if (c->server)
		iour_server_config_free(c->server_cfg);
	else
		iour_client_config_free(c->client_cfg);
	free(c);
}

/* ---------------------------------------------------------------------- */
/* Connections */

static int conn_new(struct reactor *r, const struct iou_tls_config *c, int fd,
		    const char *server_name, struct iou_tls **out)
{
	struct iou_tls *t;
	int rc;

	if (!r || !c || !out || fd < 0 || (!c->server && !server_name))
		return -EINVAL;
	*out = NULL;
	if (reactor_current() != r)
		return -EPERM;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->r = r;
	t->fd = fd;
	iou_mutex_init(&t->rturn);
	iou_mutex_init(&t->wturn);
	if (c->server)
		rc = iour_server_conn_new(c->server_cfg, &t->c, t->reason, sizeof(t->reason));
	else
		rc = iour_client_conn_new(c->client_cfg, server_name, &t->c, t->reason,
					  sizeof(t->reason));
	if (rc < 0) {
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

API int iou_tls_client_new(struct reactor *r, const struct iou_tls_config *c, int fd,
			   const char *server_name, struct iou_tls **out)
{
	if (c && c->server)
		return -EINVAL;
	return conn_new(r, c, fd, server_name, out);
}

API int iou_tls_server_new(struct reactor *r, const struct iou_tls_config *c, int fd,
			   struct iou_tls **out)
{
	if (c && !c->server)
		return -EINVAL;
	return conn_new(r, c, fd, NULL, out);
}

API int iou_tls_close(struct iou_tls *t)
{
	if (!t)
		return 0;
	iour_conn_free(t->c);
	iou_mutex_destroy(&t->rturn);
	iou_mutex_destroy(&t->wturn);
	explicit_bzero(t->in, sizeof(t->in));
	free(t);
	return 0;
}

/* --- failure ---------------------------------------------------------- */

static bool interrupted(int err)
{
	return err == -ETIMEDOUT || err == -ECANCELED;
}

static int send_out(struct iou_tls *t);

/*
 * Record a TLS failure (sticky) with rustls's reason, and send the alert
 * rustls queued for the peer if the send turn is free (best effort).
 */
static int tls_fail(struct iou_tls *t, int err)
{
	if (t->err)
		return t->err;
	t->err = err;
	if (IOU_IS_ETLS(err))
		iour_conn_reason(t->c, t->reason, sizeof(t->reason));
	if (!t->werr && iou_mutex_trylock(&t->wturn) == 0) {
		send_out(t);
		iou_mutex_unlock(&t->wturn);
	}
	return err;
}

/* --- sending ---------------------------------------------------------- */

/* Send what was taken, then what rustls has queued, until none is left. */
static int send_out(struct iou_tls *t)
{
	for (;;) {
		ssize_t n;

		if (t->out_off == t->out_len) {
			long m = iour_conn_take(t->c, t->out, OUT_SIZE);

			t->out_off = t->out_len = 0;
			if (m <= 0)
				return m < 0 ? (int)m : 0;
			t->out_len = (size_t)m;
		}
		n = iou_send(t->r, t->fd, t->out + t->out_off, t->out_len - t->out_off, 0);
		if (n < 0) {
			/* Interrupted: what is left goes with the next send. */
			if (!interrupted((int)n))
				t->werr = (int)n;
			return (int)n;
		}
		t->out_off += (size_t)n;
	}
}

static bool output_pending(const struct iou_tls *t)
{
	return t->out_off < t->out_len || iour_conn_wants_write(t->c);
}

/* Send everything pending, taking the send turn (waiting for it). */
static int flush(struct iou_tls *t)
{
	while (output_pending(t)) {
		int rc;

		if (t->werr)
			return t->werr;
		rc = iou_mutex_lock(&t->wturn);
		if (rc < 0)
			return rc;
		rc = send_out(t);
		iou_mutex_unlock(&t->wturn);
		if (rc < 0)
			return rc;
	}
	return t->werr;
}

/* Send what is pending if nobody holds the send turn; never waits for it. */
static int flush_if_free(struct iou_tls *t)
{
	int rc;

	if (t->werr || !output_pending(t) || iou_mutex_trylock(&t->wturn) != 0)
		return 0;
	rc = send_out(t);
	iou_mutex_unlock(&t->wturn);
	return rc;
}

/* --- receiving -------------------------------------------------------- */

/* Feed rustls what was received and not yet fed. */
static int feed(struct iou_tls *t)
{
	long n;

	if (t->in_off == t->in_len)
		return 0;
	n = iour_conn_feed(t->c, t->in + t->in_off, t->in_len - t->in_off);
	if (n < 0)
		return tls_fail(t, (int)n);
	t->in_off += (size_t)n;
	if (t->in_off == t->in_len)
		t->in_off = t->in_len = 0;
	return 0;
}

/*
 * Give rustls more ciphertext: what is left over, or a fresh receive.
 * Returns 0 once something was fed (or another reader fed something while
 * this one waited for its turn: the caller looks again).
 */
static int fill(struct iou_tls *t)
{
	uint64_t seen = t->fills;
	ssize_t n;
	int rc;

	if (t->in_off < t->in_len)
		return feed(t);
	if (t->eof)
		return tls_fail(t, IOU_ETLS_TRUNCATED);
	rc = iou_mutex_lock(&t->rturn);
	if (rc < 0)
		return rc;
	if (t->fills != seen || t->err) {
		iou_mutex_unlock(&t->rturn);
		return t->err;
	}
	n = iou_recv(t->r, t->fd, t->in, IN_SIZE, 0);
	if (n > 0) {
		t->in_off = 0;
		t->in_len = (size_t)n;
		t->fills++;
	}
	iou_mutex_unlock(&t->rturn);
	if (n < 0) {
		if (interrupted((int)n))
			return (int)n;
		if (!t->err)
			t->err = (int)n;
		return t->err;
	}
	if (n == 0) {
		long m;

		/* The transport ended: rustls decides whether that was clean. */
		t->eof = true;
		t->fills++;
		m = iour_conn_feed(t->c, NULL, 0);
		return m < 0 ? tls_fail(t, (int)m) : 0;
	}
	return feed(t);
}

/* --- the calls -------------------------------------------------------- */

/*
 * The checks of every connection call: from another thread it would bind
 * the turns to that thread's reactor and leave a sticky -EPERM behind.
 */
static int conn_check(const struct iou_tls *t)
{
	if (!t)
		return -EINVAL;
	return reactor_current() == t->r ? 0 : -EPERM;
}

/* Record what the handshake settled, once. */
static void settle(struct iou_tls *t)
{
	if (t->settled)
		return;
	t->settled = true;
	iour_conn_cipher_suite(t->c, t->suite, sizeof(t->suite));
	t->has_alpn = iour_conn_alpn(t->c, t->alpn, sizeof(t->alpn)) > 0;
}

API int iou_tls_handshake(struct iou_tls *t)
{
	int rc = conn_check(t);

	if (rc < 0)
		return rc;
	while (iour_conn_is_handshaking(t->c)) {
		if (t->err)
			return t->err;
		if (output_pending(t)) {
			rc = flush(t);
		} else if (iour_conn_wants_read(t->c)) {
			rc = fill(t);
		} else {
			snprintf(t->reason, sizeof(t->reason), "handshake stalled");
			t->err = IOU_ETLS_INTERNAL;
			rc = t->err;
		}
		if (rc < 0)
			return rc;
	}
	if (t->err)
		return t->err;
	settle(t);
	/* The last flight (client Finished, server tickets). */
	return flush(t);
}

API ssize_t iou_tls_read(struct iou_tls *t, void *buf, size_t len)
{
	int rc = conn_check(t);

	if (rc < 0)
		return rc;
	if (!buf && len)
		return -EINVAL;
	if (len == 0)
		return 0;
	if (iour_conn_is_handshaking(t->c)) {
		rc = iou_tls_handshake(t);
		if (rc < 0)
			return rc;
	}
	for (;;) {
		long n;

		/*
		 * A failure is sticky: plaintext that rustls decrypted from the
		 * records before the failing one is not handed out after the
		 * caller has been told of the failure (found by fuzz/).
		 */
		if (t->err)
			return t->err;
		n = iour_conn_read(t->c, buf, len > LONG_MAX ? LONG_MAX : len);
		if (n != IOUR_AGAIN) {
			if (n < 0)
				return tls_fail(t, (int)n);
			if (n > 0 && t->in_off < t->in_len) {
				/* Plaintext room again: feed what waited for it. */
				rc = feed(t);
				if (rc < 0 && !interrupted(rc))
					return n;
			}
			return n;
		}
		if (t->err)
			return t->err;
		/*
		 * Records may have queued answers (KeyUpdate, alerts).  A send
		 * failure is kept in werr for writers; reading goes on.
		 */
		flush_if_free(t);
		rc = fill(t);
		if (rc < 0)
			return rc;
	}
}

API ssize_t iou_tls_write(struct iou_tls *t, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t off = 0;
	int rc = conn_check(t);

	if (rc < 0)
		return rc;
	if (!buf && len)
		return -EINVAL;
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	if (iour_conn_is_handshaking(t->c)) {
		rc = iou_tls_handshake(t);
		if (rc < 0)
			return rc;
	}
	if (t->err)
		return t->err;
	if (t->werr)
		return t->werr;
	if (t->shut)
		return IOU_ETLS_CLOSED;
	while (off < len) {
		long n = iour_conn_write(t->c, p + off, len - off);

		if (n < 0)
			return tls_fail(t, (int)n);
		if (n == 0 && !output_pending(t)) {
			snprintf(t->reason, sizeof(t->reason), "rustls accepted no plaintext");
			return tls_fail(t, IOU_ETLS_INTERNAL);
		}
		off += (size_t)n;
		rc = flush(t);
		if (rc < 0) {
			/*
			 * Part of @buf is in the stream and the caller cannot
			 * know how much: writing more would corrupt its data.
			 */
			if (!t->werr)
				t->werr = rc;
			return rc;
		}
	}
	return (ssize_t)len;
}

API int iou_tls_flush(struct iou_tls *t)
{
	int rc = conn_check(t);

	return rc < 0 ? rc : flush(t);
}

API int iou_tls_shutdown(struct iou_tls *t)
{
	int rc = conn_check(t);

	if (rc < 0)
		return rc;
	if (!t->shut) {
		t->shut = true;
		iour_conn_close_notify(t->c);
	}
	return flush(t);
}

/* ---------------------------------------------------------------------- */
/* What was negotiated */

API int iou_tls_version(const struct iou_tls *t)
{
	return t ? iour_conn_protocol_version(t->c) : 0;
}

API const char *iou_tls_cipher_suite(const struct iou_tls *t)
{
	return t ? t->suite : "";
}

API const char *iou_tls_alpn(const struct iou_tls *t)
{
	return t && t->has_alpn ? t->alpn : NULL;
}

API int iou_tls_peer_subject(const struct iou_tls *t, char *buf, size_t len)
{
	if (!t || (!buf && len))
		return -EINVAL;
	return iour_conn_peer_subject(t->c, buf, len);
}

API const char *iou_tls_reason(const struct iou_tls *t)
{
	return t ? t->reason : "";
}

API int iou_tls_fd(const struct iou_tls *t)
{
	return t ? t->fd : -EINVAL;
}
