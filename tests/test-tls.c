/* SPDX-License-Identifier: MIT */
/*
 * libioucontext-tls over real sockets: a client and a server connection in
 * fibers of one reactor (socketpair(2) streams), with the certificates of
 * tests/fixtures/tls.  Covers configurations and their errors, handshakes
 * in both TLS versions rustls offers, 1 MiB each way through full-duplex
 * reader/writer fibers, ALPN, client certificates, every certificate
 * failure with its reason, clean close versus truncation, peers that speak
 * plaintext, send garbage or close mid-handshake, deadlines and
 * cancellation (a read interrupted loses nothing), readers taking turns,
 * use from the thread's own context, and iou_strerror() for every code.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <threads.h>
#include <unistd.h>

#include <ioucontext/ioucontext.h>
#include <ioucontext/tls.h>

#include "harness.h"

static char fixture_dir[4096];

static const char *fx(const char *name)
{
	static char paths[8][4200];
	static int next;
	char *p = paths[next++ % 8];

	snprintf(p, sizeof(paths[0]), "%s/%s", fixture_dir, name);
	return p;
}

static int setup(void)
{
	const char *src = getenv("IOU_TEST_SRCDIR");

	snprintf(fixture_dir, sizeof(fixture_dir), "%s/tests/fixtures/tls", src ? src : ".");
	return access(fx("ca.pem"), R_OK) == 0 ? 0 : -1;
}

static int open_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < 1024; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

/* --- configurations -------------------------------------------------- */

static struct iou_tls_config *client_cfg(const char *ca, const char *const *alpn)
{
	struct iou_tls_client_options o;
	struct iou_tls_config *c = NULL;
	char why[IOU_TLS_REASON_MAX];

	iou_tls_client_options_init(&o);
	o.cafile = ca ? fx(ca) : NULL;
	o.alpn = alpn;
	if (iou_tls_client_config_new(&o, &c, why, sizeof(why)) < 0)
		fprintf(stderr, "  client config: %s\n", why);
	return c;
}

static struct iou_tls_config *server_cfg(const char *cert, const char *key,
					 const char *const *alpn, const char *client_ca)
{
	struct iou_tls_server_options o;
	struct iou_tls_config *c = NULL;
	char why[IOU_TLS_REASON_MAX];

	iou_tls_server_options_init(&o);
	o.certfile = fx(cert);
	o.keyfile = fx(key);
	o.alpn = alpn;
	o.client_cafile = client_ca ? fx(client_ca) : NULL;
	if (iou_tls_server_config_new(&o, &c, why, sizeof(why)) < 0)
		fprintf(stderr, "  server config: %s\n", why);
	return c;
}

static int test_config_errors(void)
{
	struct iou_tls_client_options co;
	struct iou_tls_server_options so;
	struct iou_tls_config *c = NULL;
	char why[IOU_TLS_REASON_MAX];
	const char *empty_alpn[] = { "h2", "", NULL };
	char longname[300];
	const char *long_alpn[] = { longname, NULL };

	iou_tls_client_options_init(&co);
	ASSERT_EQ(iou_tls_client_config_new(NULL, &c, NULL, 0), -EINVAL);
	ASSERT_EQ(iou_tls_client_config_new(&co, NULL, NULL, 0), -EINVAL);

	co.cafile = "/nonexistent/ca.pem";
	ASSERT_EQ(iou_tls_client_config_new(&co, &c, why, sizeof(why)), -ENOENT);
	ASSERT_TRUE(strstr(why, "/nonexistent/ca.pem") != NULL);
	ASSERT_PTR_EQ(c, NULL);

	co.cafile = "/dev/null"; /* no certificate in it */
	ASSERT_EQ(iou_tls_client_config_new(&co, &c, why, sizeof(why)), IOU_ETLS_CONFIG);
	ASSERT_TRUE(why[0] != '\0');

	co.cafile = fx("ca.pem");
	co.certfile = fx("client.pem"); /* without its key */
	ASSERT_EQ(iou_tls_client_config_new(&co, &c, why, sizeof(why)), IOU_ETLS_CONFIG);
	co.certfile = NULL;

	co.alpn = empty_alpn;
	ASSERT_EQ(iou_tls_client_config_new(&co, &c, why, sizeof(why)), IOU_ETLS_CONFIG);
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	co.alpn = long_alpn;
	ASSERT_EQ(iou_tls_client_config_new(&co, &c, why, sizeof(why)), IOU_ETLS_CONFIG);
	co.alpn = NULL;

	/* The system bundle loads by default. */
	co.cafile = NULL;
	if (access(IOU_TLS_DEFAULT_CAFILE, R_OK) == 0) {
		ASSERT_EQ(iou_tls_client_config_new(&co, &c, why, sizeof(why)), 0);
		iou_tls_config_free(c);
		c = NULL;
	}

	iou_tls_server_options_init(&so);
	ASSERT_EQ(iou_tls_server_config_new(&so, &c, why, sizeof(why)), IOU_ETLS_CONFIG);
	so.certfile = fx("server-rsa.pem");
	so.keyfile = fx("server-rsa.pem"); /* a certificate, not a key */
	ASSERT_EQ(iou_tls_server_config_new(&so, &c, why, sizeof(why)), IOU_ETLS_CONFIG);
	ASSERT_TRUE(why[0] != '\0');
	so.keyfile = fx("ca.pem.missing");
	ASSERT_EQ(iou_tls_server_config_new(&so, &c, why, sizeof(why)), -ENOENT);
	so.keyfile = fx("server-rsa.key");
	so.certfile = fx("server-rsa.key"); /* a key, not a certificate */
	ASSERT_EQ(iou_tls_server_config_new(&so, &c, why, sizeof(why)), IOU_ETLS_CONFIG);

	/* Every key form loads: PKCS#8 RSA, PKCS#1 RSA, SEC1 EC. */
	so.certfile = fx("server-rsa.pem");
	ASSERT_EQ(iou_tls_server_config_new(&so, &c, why, sizeof(why)), 0);
	iou_tls_config_free(c);
	so.keyfile = fx("rsa-pkcs1.key");
	ASSERT_EQ(iou_tls_server_config_new(&so, &c, why, sizeof(why)), 0);
	iou_tls_config_free(c);
	so.certfile = fx("server-ec.pem");
	so.keyfile = fx("server-ec.key");
	ASSERT_EQ(iou_tls_server_config_new(&so, &c, why, sizeof(why)), 0);

	/* A server configuration cannot make a client connection, and back. */
	{
		struct reactor *r = reactor_get();
		struct iou_tls_config *cc = client_cfg("ca.pem", NULL);
		struct iou_tls *t = NULL;
		int sv[2];

		ASSERT_TRUE(cc != NULL);
		ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		ASSERT_EQ(iou_tls_client_new(r, c, sv[0], "localhost", &t), -EINVAL);
		ASSERT_EQ(iou_tls_server_new(r, cc, sv[0], &t), -EINVAL);
		ASSERT_EQ(iou_tls_client_new(r, cc, -1, "localhost", &t), -EINVAL);
		ASSERT_EQ(iou_tls_client_new(r, cc, sv[0], NULL, &t), -EINVAL);
		ASSERT_EQ(iou_tls_client_new(NULL, cc, sv[0], "localhost", &t), -EINVAL);
		ASSERT_EQ(iou_tls_client_new(r, cc, sv[0], "127.0.0.1", &t), IOU_ETLS_BAD_NAME);
		ASSERT_EQ(iou_tls_client_new(r, cc, sv[0], "", &t), IOU_ETLS_BAD_NAME);
		ASSERT_PTR_EQ(t, NULL);
		ASSERT_EQ(iou_tls_handshake(NULL), -EINVAL);
		ASSERT_EQ(iou_tls_read(NULL, why, 1), -EINVAL);
		ASSERT_EQ(iou_tls_write(NULL, why, 1), -EINVAL);
		ASSERT_EQ(iou_tls_close(NULL), 0);
		close(sv[0]);
		close(sv[1]);
		iou_tls_config_free(cc);
	}
	iou_tls_config_free(c);
	iou_tls_config_free(NULL);
	return 0;
}

/* --- a client and a server in two fibers ----------------------------- */

struct side {
	struct iou_tls_config *cfg;
	const char *name;	/* client: server name */
	int fd;
	struct iou_tls *t;
	int hs;			/* handshake result */
	char reason[IOU_TLS_REASON_MAX];
	void (*after)(struct side *s); /* what to do once the handshake is over */
	int64_t deadline;	/* for the handshake, or IOU_DEADLINE_NEVER */
	long long result;	/* the after() hook's */
};

static void *side_main(void *arg)
{
	struct side *s = arg;
	struct reactor *r = reactor_get();
	int rc;

	if (s->name)
		rc = iou_tls_client_new(r, s->cfg, s->fd, s->name, &s->t);
	else
		rc = iou_tls_server_new(r, s->cfg, s->fd, &s->t);
	if (rc < 0) {
		s->hs = rc;
		return NULL;
	}
	fiber_set_deadline(r, s->deadline);
	s->hs = iou_tls_handshake(s->t);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	snprintf(s->reason, sizeof(s->reason), "%s", iou_tls_reason(s->t));
	if (s->after)
		s->after(s);
	return NULL;
}

/* Run client and server to the end of their hooks on a socketpair. */
static int run_pair(struct side *cl, struct side *sv)
{
	struct reactor *r = reactor_get();
	int fds[2];

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
	cl->fd = fds[0];
	sv->fd = fds[1];
	if (!cl->deadline)
		cl->deadline = IOU_DEADLINE_NEVER;
	if (!sv->deadline)
		sv->deadline = IOU_DEADLINE_NEVER;
	ASSERT_EQ(fiber_spawn(r, side_main, sv, NULL), 0);
	ASSERT_EQ(fiber_spawn(r, side_main, cl, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	return 0;
}

static void pair_end(struct side *cl, struct side *sv)
{
	iou_tls_close(cl->t);
	iou_tls_close(sv->t);
	close(cl->fd);
	close(sv->fd);
	cl->t = sv->t = NULL;
}

/* After the handshake: both shut down cleanly and read the peer's end. */
static void close_cleanly(struct side *s)
{
	char b[16];

	if (s->hs < 0)
		return;
	FIBER_CHECK(iou_tls_shutdown(s->t) == 0);
	s->result = iou_tls_read(s->t, b, sizeof(b));
	if (s->result == 0) {
		FIBER_CHECK(iou_tls_write(s->t, "x", 1) == IOU_ETLS_CLOSED);
		FIBER_CHECK(iou_tls_shutdown(s->t) == 0);
	} else {
		/* The peer refused us: that failure sticks. */
		FIBER_CHECK(s->result < 0 && iou_tls_write(s->t, "x", 1) == s->result);
	}
}

static int test_handshake_and_parameters(void)
{
	const char *alpn_c[] = { "h2", "http/1.1", NULL };
	const char *alpn_s[] = { "http/1.1", NULL };
	struct side cl = { .cfg = client_cfg("ca.pem", alpn_c), .name = "localhost",
			   .after = close_cleanly };
	struct side sv = { .cfg = server_cfg("server-rsa.pem", "server-rsa.key", alpn_s, NULL),
			   .after = close_cleanly };
	char subject[128];
	int fds = open_fds();

	ASSERT_TRUE(cl.cfg && sv.cfg);
	ASSERT_EQ(run_pair(&cl, &sv), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(cl.hs, 0);
	ASSERT_EQ(sv.hs, 0);
	ASSERT_EQ(cl.result, 0); /* each read the other's close_notify */
	ASSERT_EQ(sv.result, 0);
	ASSERT_EQ(iou_tls_version(cl.t), 0x0304);
	ASSERT_EQ(iou_tls_version(sv.t), 0x0304);
	ASSERT_TRUE(strncmp(iou_tls_cipher_suite(cl.t), "TLS13_", 6) == 0);
	ASSERT_STREQ(iou_tls_cipher_suite(cl.t), iou_tls_cipher_suite(sv.t));
	ASSERT_STREQ(iou_tls_alpn(cl.t), "http/1.1");
	ASSERT_STREQ(iou_tls_alpn(sv.t), "http/1.1");
	ASSERT_GT(iou_tls_peer_subject(cl.t, subject, sizeof(subject)), 0);
	ASSERT_TRUE(strstr(subject, "CN=localhost") != NULL);
	ASSERT_EQ(iou_tls_peer_subject(sv.t, subject, sizeof(subject)), 0); /* no client cert */
	ASSERT_STREQ(iou_tls_reason(cl.t), "");
	ASSERT_EQ(iou_tls_fd(cl.t), cl.fd);
	pair_end(&cl, &sv);
	/* The configurations may go before or after their connections. */
	iou_tls_config_free(cl.cfg);
	iou_tls_config_free(sv.cfg);
	ASSERT_EQ(open_fds(), fds);
	return 0;
}

static int test_ec_key_and_no_alpn_overlap(void)
{
	const char *alpn_c[] = { "h2", NULL };
	const char *alpn_s[] = { "imap", NULL };
	struct side cl = { .cfg = client_cfg("ca.pem", NULL), .name = "localhost",
			   .after = close_cleanly };
	struct side sv = { .cfg = server_cfg("server-ec.pem", "server-ec.key", NULL, NULL),
			   .after = close_cleanly };

	ASSERT_EQ(run_pair(&cl, &sv), 0);
	ASSERT_EQ(cl.hs, 0);
	ASSERT_EQ(sv.hs, 0);
	ASSERT_PTR_EQ(iou_tls_alpn(cl.t), NULL);
	pair_end(&cl, &sv);
	iou_tls_config_free(cl.cfg);
	iou_tls_config_free(sv.cfg);

	/* The server insists on its protocols: no overlap fails both sides. */
	cl = (struct side){ .cfg = client_cfg("ca.pem", alpn_c), .name = "localhost" };
	sv = (struct side){ .cfg = server_cfg("server-ec.pem", "server-ec.key", alpn_s, NULL) };
	ASSERT_EQ(run_pair(&cl, &sv), 0);
	ASSERT_EQ(sv.hs, IOU_ETLS_NO_ALPN);
	ASSERT_TRUE(cl.hs == IOU_ETLS_NO_ALPN || cl.hs == IOU_ETLS_ALERT);
	pair_end(&cl, &sv);
	iou_tls_config_free(cl.cfg);
	iou_tls_config_free(sv.cfg);
	return 0;
}

/* A certificate the client must refuse, with the code and reason. */
static int refused(const char *cert, const char *key, const char *name, int code,
		   const char *reason_part)
{
	struct side cl = { .cfg = client_cfg("ca.pem", NULL), .name = name };
	struct side sv = { .cfg = server_cfg(cert, key, NULL, NULL) };

	ASSERT_TRUE(cl.cfg && sv.cfg);
	ASSERT_EQ(run_pair(&cl, &sv), 0);
	if (cl.hs != code || !strstr(cl.reason, reason_part))
		TEST_FAIL_AT("%s as %s: %d \"%s\", expected %d \"...%s...\"", cert, name, cl.hs,
			     cl.reason, code, reason_part);
	/* The client told the server why. */
	ASSERT_TRUE(sv.hs == IOU_ETLS_ALERT || sv.hs == IOU_ETLS_TRUNCATED);
	pair_end(&cl, &sv);
	iou_tls_config_free(cl.cfg);
	iou_tls_config_free(sv.cfg);
	return 0;
}

static int test_certificate_failures(void)
{
	ASSERT_EQ(refused("untrusted.pem", "untrusted.key", "localhost",
			  IOU_ETLS_CERT_UNKNOWN_ISSUER, "UnknownIssuer"), 0);
	ASSERT_EQ(refused("wrongname.pem", "wrongname.key", "localhost", IOU_ETLS_CERT_BAD_NAME,
			  "CertNotValidForName"), 0);
	ASSERT_EQ(refused("server-rsa.pem", "server-rsa.key", "other.localhost",
			  IOU_ETLS_CERT_BAD_NAME, "CertNotValidForName"), 0);
	ASSERT_EQ(refused("expired.pem", "expired.key", "localhost", IOU_ETLS_CERT_EXPIRED,
			  "CertExpired"), 0);
	ASSERT_EQ(refused("notyet.pem", "notyet.key", "localhost", IOU_ETLS_CERT_NOT_YET_VALID,
			  "CertNotValidYet"), 0);
	return 0;
}

static int test_insecure_accepts_anything(void)
{
	struct iou_tls_client_options o;
	struct side cl = { .name = "some.other.name", .after = close_cleanly };
	struct side sv = { .cfg = server_cfg("untrusted.pem", "untrusted.key", NULL, NULL),
			   .after = close_cleanly };

	iou_tls_client_options_init(&o);
	ASSERT_EQ(iou_tls_client_config_new_insecure_no_verify(&o, &cl.cfg, NULL, 0), 0);
	ASSERT_EQ(run_pair(&cl, &sv), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(cl.hs, 0);
	ASSERT_EQ(sv.hs, 0);
	pair_end(&cl, &sv);
	/* Nothing is verified, so an IP address is an acceptable name here. */
	{
		struct iou_tls *t = NULL;
		int fds[2];

		ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
		ASSERT_EQ(iou_tls_client_new(reactor_get(), cl.cfg, fds[0], "127.0.0.1", &t), 0);
		iou_tls_close(t);
		close(fds[0]);
		close(fds[1]);
	}
	iou_tls_config_free(cl.cfg);
	iou_tls_config_free(sv.cfg);
	return 0;
}

static int test_client_certificates(void)
{
	struct iou_tls_client_options o;
	struct side cl, sv;
	char subject[128];

	/* Required and given. */
	iou_tls_client_options_init(&o);
	o.cafile = fx("ca.pem");
	o.certfile = fx("client.pem");
	o.keyfile = fx("client.key");
	cl = (struct side){ .name = "localhost", .after = close_cleanly };
	sv = (struct side){ .cfg = server_cfg("server-ec.pem", "server-ec.key", NULL, "ca.pem"),
			    .after = close_cleanly };
	ASSERT_EQ(iou_tls_client_config_new(&o, &cl.cfg, NULL, 0), 0);
	ASSERT_EQ(run_pair(&cl, &sv), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(cl.hs, 0);
	ASSERT_EQ(sv.hs, 0);
	ASSERT_GT(iou_tls_peer_subject(sv.t, subject, sizeof(subject)), 0);
	ASSERT_TRUE(strstr(subject, "CN=") != NULL);
	pair_end(&cl, &sv);
	iou_tls_config_free(cl.cfg);

	/* Required and missing: the server refuses. */
	cl = (struct side){ .cfg = client_cfg("ca.pem", NULL), .name = "localhost",
			    .after = close_cleanly };
	ASSERT_EQ(run_pair(&cl, &sv), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(sv.hs, IOU_ETLS_NO_CERT);
	/* TLS 1.3: the client finished first and learns it from the alert. */
	ASSERT_TRUE(cl.hs == IOU_ETLS_ALERT || cl.result == IOU_ETLS_ALERT);
	pair_end(&cl, &sv);
	iou_tls_config_free(cl.cfg);
	iou_tls_config_free(sv.cfg);
	return 0;
}

/* --- 1 MiB both ways, full duplex ------------------------------------- */

#define BULK (1 << 20)

struct duplex {
	struct iou_tls *t;
	unsigned char *out, *in;
	size_t got;
	int wrc, rrc;
};

static void *bulk_writer(void *arg)
{
	struct duplex *d = arg;
	size_t off = 0;

	/* Odd sizes, so records and writes do not line up. */
	while (off < BULK) {
		size_t n = BULK - off < 7777 ? BULK - off : 7777;
		ssize_t w = iou_tls_write(d->t, d->out + off, n);

		if (w != (ssize_t)n) {
			d->wrc = (int)w;
			return NULL;
		}
		off += n;
	}
	d->wrc = iou_tls_shutdown(d->t);
	return NULL;
}

static void *bulk_reader(void *arg)
{
	struct duplex *d = arg;

	for (;;) {
		ssize_t n = iou_tls_read(d->t, d->in + d->got, BULK + 1 - d->got);

		if (n <= 0) {
			d->rrc = (int)n;
			return NULL;
		}
		d->got += (size_t)n;
	}
}

static void duplex_run(struct side *s)
{
	struct reactor *r = reactor_get();
	struct duplex *d = (struct duplex *)(intptr_t)s->result;
	struct fiber *w, *rd;

	if (s->hs < 0)
		return;
	d->t = s->t;
	FIBER_CHECK(fiber_spawn(r, bulk_writer, d, &w) == 0);
	FIBER_CHECK(fiber_spawn(r, bulk_reader, d, &rd) == 0);
	fiber_join(w, NULL);
	fiber_join(rd, NULL);
}

static int test_bulk_full_duplex(void)
{
	struct side cl = { .cfg = client_cfg("ca.pem", NULL), .name = "localhost",
			   .after = duplex_run };
	struct side sv = { .cfg = server_cfg("server-rsa.pem", "server-rsa.key", NULL, NULL),
			   .after = duplex_run };
	struct duplex dc = { 0 }, ds = { 0 };

	dc.out = malloc(BULK);
	ds.out = malloc(BULK);
	dc.in = malloc(BULK + 1);
	ds.in = malloc(BULK + 1);
	ASSERT_TRUE(dc.out && ds.out && dc.in && ds.in);
	for (size_t i = 0; i < BULK; i++) {
		dc.out[i] = (unsigned char)(i * 7 + (i >> 11));
		ds.out[i] = (unsigned char)(i * 13 + (i >> 9) + 1);
	}
	cl.result = (intptr_t)&dc;
	sv.result = (intptr_t)&ds;
	ASSERT_EQ(run_pair(&cl, &sv), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(cl.hs, 0);
	ASSERT_EQ(sv.hs, 0);
	ASSERT_EQ(dc.wrc, 0);
	ASSERT_EQ(ds.wrc, 0);
	ASSERT_EQ(dc.rrc, 0); /* clean ends */
	ASSERT_EQ(ds.rrc, 0);
	ASSERT_EQ(dc.got, BULK);
	ASSERT_EQ(ds.got, BULK);
	ASSERT_TRUE(memcmp(dc.in, ds.out, BULK) == 0);
	ASSERT_TRUE(memcmp(ds.in, dc.out, BULK) == 0);
	pair_end(&cl, &sv);
	iou_tls_config_free(cl.cfg);
	iou_tls_config_free(sv.cfg);
	free(dc.out);
	free(ds.out);
	free(dc.in);
	free(ds.in);
	return 0;
}

/* --- endings ---------------------------------------------------------- */

/* Server: say hello, then end the transport without close_notify. */
static void hello_then_hangup(struct side *s)
{
	if (s->hs < 0)
		return;
	FIBER_CHECK(iou_tls_write(s->t, "hello", 5) == 5);
	shutdown(s->fd, SHUT_WR);
}

static void read_to_end(struct side *s)
{
	char b[64];
	ssize_t n;
	size_t got = 0;

	if (s->hs < 0)
		return;
	while ((n = iou_tls_read(s->t, b + got, sizeof(b) - got)) > 0)
		got += (size_t)n;
	s->result = n;
	FIBER_CHECK(got == 5 && memcmp(b, "hello", 5) == 0);
	/* The end is sticky. */
	FIBER_CHECK(iou_tls_read(s->t, b, sizeof(b)) == n);
}

static int test_truncation_versus_clean_end(void)
{
	struct side cl = { .cfg = client_cfg("ca.pem", NULL), .name = "localhost",
			   .after = read_to_end };
	struct side sv = { .cfg = server_cfg("server-rsa.pem", "server-rsa.key", NULL, NULL),
			   .after = hello_then_hangup };

	ASSERT_EQ(run_pair(&cl, &sv), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(cl.result, IOU_ETLS_TRUNCATED);
	ASSERT_TRUE(strlen(iou_tls_reason(cl.t)) > 0);
	pair_end(&cl, &sv);
	iou_tls_config_free(cl.cfg);
	iou_tls_config_free(sv.cfg);
	return 0;
}

/*
 * A raw peer in a fiber: optionally reads the other side's first flight,
 * sends @data, optionally reads to the end, then closes its end.
 */
struct raw_peer {
	int fd;
	const char *data;
	size_t len;
	bool listen_first;	 /* read once before sending (plays a server) */
	bool drain;		 /* read everything before closing */
	unsigned char first[8]; /* first bytes it received */
	ssize_t got;
};

static void raw_take(struct raw_peer *p, const unsigned char *b, ssize_t n)
{
	for (ssize_t i = 0; i < n && p->got < 8; i++)
		p->first[p->got++] = b[i];
	if (p->got >= 8)
		p->got += n;
}

static void *raw_peer_main(void *arg)
{
	struct raw_peer *p = arg;
	struct reactor *r = reactor_get();
	unsigned char b[4096];
	ssize_t n;

	if (p->listen_first && (n = iou_recv(r, p->fd, b, sizeof(b), 0)) > 0)
		raw_take(p, b, n);
	if (p->len)
		iou_send(r, p->fd, p->data, p->len, 0);
	while (p->drain && (n = iou_recv(r, p->fd, b, sizeof(b), 0)) > 0)
		raw_take(p, b, n);
	shutdown(p->fd, SHUT_RDWR);
	return NULL;
}

/* The TLS side's hook against raw peers: end the transport when done. */
static void hang_up(struct side *s)
{
	shutdown(s->fd, SHUT_RDWR);
}

/* Run a TLS side against a raw peer; return its handshake result. */
static int against_raw(struct side *s, struct raw_peer *p)
{
	struct reactor *r = reactor_get();
	int fds[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
		return -errno;
	s->fd = fds[0];
	p->fd = fds[1];
	s->after = hang_up;
	if (!s->deadline)
		s->deadline = IOU_DEADLINE_NEVER;
	fiber_spawn(r, raw_peer_main, p, NULL);
	fiber_spawn(r, side_main, s, NULL);
	reactor_run(r);
	iou_tls_close(s->t);
	s->t = NULL;
	close(fds[0]);
	close(fds[1]);
	return s->hs;
}

static int test_hostile_peers(void)
{
	static const char http[] = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
	static const char garbage[] = "\x16\x03\x01\x00\x05garbage that is no handshake at all";
	struct iou_tls_config *cc = client_cfg("ca.pem", NULL);
	struct iou_tls_config *sc = server_cfg("server-rsa.pem", "server-rsa.key", NULL, NULL);
	struct side s;
	struct raw_peer p;

	/* A server that answers in plaintext. */
	s = (struct side){ .cfg = cc, .name = "localhost" };
	p = (struct raw_peer){ .data = http, .len = sizeof(http) - 1, .listen_first = true,
			       .drain = true };
	ASSERT_EQ(against_raw(&s, &p), IOU_ETLS_PROTOCOL);
	ASSERT_TRUE(s.reason[0] != '\0');
	ASSERT_EQ(p.first[0], 0x16); /* it did get a ClientHello */

	/* A server that closes mid-handshake. */
	s = (struct side){ .cfg = cc, .name = "localhost" };
	p = (struct raw_peer){ .listen_first = true };
	ASSERT_EQ(against_raw(&s, &p), IOU_ETLS_TRUNCATED);

	/* A client that sends plaintext: the server refuses and sends an alert. */
	s = (struct side){ .cfg = sc };
	p = (struct raw_peer){ .data = "GET / HTTP/1.0\r\n\r\n", .len = 18, .drain = true };
	ASSERT_EQ(against_raw(&s, &p), IOU_ETLS_PROTOCOL);
	ASSERT_EQ(p.first[0], 0x15); /* an alert record */

	/* Garbage inside a handshake record. */
	s = (struct side){ .cfg = sc };
	p = (struct raw_peer){ .data = garbage, .len = sizeof(garbage) - 1, .drain = true };
	ASSERT_LT(against_raw(&s, &p), 0);
	ASSERT_TRUE(IOU_IS_ETLS(s.hs));

	/* A client that resets (closes) before saying anything. */
	s = (struct side){ .cfg = sc };
	p = (struct raw_peer){ .drain = false };
	ASSERT_EQ(against_raw(&s, &p), IOU_ETLS_TRUNCATED);

	/* A client that stalls: the handshake deadline ends it. */
	s = (struct side){ .cfg = sc, .deadline = iou_now() + 100 * IOU_MSEC };
	{
		/* The raw peer drains until we close: end it from here. */
		struct reactor *r = reactor_get();
		int fds[2];

		ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
		s.fd = fds[0];
		ASSERT_EQ(iou_send(r, fds[1], "\x16\x03\x01", 3, 0), 3);
		ASSERT_EQ(fiber_spawn(r, side_main, &s, NULL), 0);
		ASSERT_EQ(reactor_run(r), 0);
		ASSERT_EQ(s.hs, -ETIMEDOUT);
		iou_tls_close(s.t);
		close(fds[0]);
		close(fds[1]);
	}
	iou_tls_config_free(cc);
	iou_tls_config_free(sc);
	return 0;
}

/* --- deadlines, cancellation, turns ------------------------------------ */

struct slow {
	struct iou_tls *t;
	int rc1, rc2;
	char buf[16];
	ssize_t n;
};

/* Read with a short deadline (nothing comes), then read again for real. */
static void *deadline_reader(void *arg)
{
	struct slow *s = arg;
	struct reactor *r = reactor_get();

	fiber_set_deadline(r, iou_now() + 50 * IOU_MSEC);
	s->rc1 = (int)iou_tls_read(s->t, s->buf, sizeof(s->buf));
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	s->n = iou_tls_read(s->t, s->buf, sizeof(s->buf));
	return NULL;
}

static void late_writer(struct side *s)
{
	if (s->hs < 0)
		return;
	fiber_sleep(reactor_get(), 150 * IOU_MSEC);
	FIBER_CHECK(iou_tls_write(s->t, "late", 4) == 4);
	FIBER_CHECK(iou_tls_shutdown(s->t) == 0);
}

static void slow_reader_side(struct side *s)
{
	struct slow *sl = (struct slow *)(intptr_t)s->result;

	if (s->hs < 0)
		return;
	sl->t = s->t;
	deadline_reader(sl);
}

static int test_read_deadline_loses_nothing(void)
{
	struct slow sl = { 0 };
	struct side cl = { .cfg = client_cfg("ca.pem", NULL), .name = "localhost",
			   .after = slow_reader_side, .result = (intptr_t)&sl };
	struct side sv = { .cfg = server_cfg("server-ec.pem", "server-ec.key", NULL, NULL),
			   .after = late_writer };

	ASSERT_EQ(run_pair(&cl, &sv), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(sl.rc1, -ETIMEDOUT);
	ASSERT_EQ(sl.n, 4);
	ASSERT_TRUE(memcmp(sl.buf, "late", 4) == 0);
	pair_end(&cl, &sv);
	iou_tls_config_free(cl.cfg);
	iou_tls_config_free(sv.cfg);
	return 0;
}

/* A write cut short by its deadline ends writing, not reading. */
#define BIG (4 << 20)

static void big_write_with_deadline(struct side *s)
{
	struct reactor *r = reactor_get();
	unsigned char *big = malloc(BIG);
	char b[16];
	ssize_t n;

	if (s->hs < 0 || !big) {
		free(big);
		return;
	}
	memset(big, 'A', BIG);
	fiber_set_deadline(r, iou_now() + 100 * IOU_MSEC);
	FIBER_CHECK(iou_tls_write(s->t, big, BIG) == -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	free(big);
	FIBER_CHECK(iou_tls_write(s->t, "x", 1) == -ETIMEDOUT);
	FIBER_CHECK(iou_tls_flush(s->t) == -ETIMEDOUT);
	n = iou_tls_read(s->t, b, sizeof(b));
	FIBER_CHECK(n == 3 && memcmp(b, "bye", 3) == 0);
	FIBER_CHECK(iou_tls_read(s->t, b, sizeof(b)) == 0);
	shutdown(s->fd, SHUT_WR);
}

static void slow_drain(struct side *s)
{
	static unsigned char b[65536];
	ssize_t n;

	if (s->hs < 0)
		return;
	fiber_sleep(reactor_get(), 300 * IOU_MSEC);
	FIBER_CHECK(iou_tls_write(s->t, "bye", 3) == 3);
	FIBER_CHECK(iou_tls_shutdown(s->t) == 0);
	s->result = 0;
	while ((n = iou_tls_read(s->t, b, sizeof(b))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			FIBER_CHECK(b[i] == 'A');
		s->result += n;
	}
	/* The client never ended its stream cleanly. */
	FIBER_CHECK(n == IOU_ETLS_TRUNCATED);
}

static int test_interrupted_write_ends_writing(void)
{
	struct side cl = { .cfg = client_cfg("ca.pem", NULL), .name = "localhost",
			   .after = big_write_with_deadline };
	struct side sv = { .cfg = server_cfg("server-ec.pem", "server-ec.key", NULL, NULL),
			   .after = slow_drain };

	ASSERT_EQ(run_pair(&cl, &sv), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_GT(sv.result, 0);
	ASSERT_LT(sv.result, BIG);
	pair_end(&cl, &sv);
	iou_tls_config_free(cl.cfg);
	iou_tls_config_free(sv.cfg);
	return 0;
}

/* Two readers on one connection take turns; one is cancelled meanwhile. */
struct turns {
	struct iou_tls *t;
	char got[3][8];
	ssize_t n[3];
	struct fiber *f[3];
};

static struct turns *turns_ctx;

static void *turn_reader(void *arg)
{
	int i = (int)(intptr_t)arg;
	struct turns *tu = turns_ctx;

	tu->n[i] = iou_tls_read(tu->t, tu->got[i], 1);
	return NULL;
}

static void three_readers(struct side *s)
{
	struct reactor *r = reactor_get();
	struct turns *tu = turns_ctx;

	if (s->hs < 0)
		return;
	tu->t = s->t;
	for (int i = 0; i < 3; i++)
		FIBER_CHECK(fiber_spawn(r, turn_reader, (void *)(intptr_t)i, &tu->f[i]) == 0);
	fiber_yield(r); /* all three are waiting: one in recv, two for the turn */
	fiber_cancel(tu->f[1]);
	for (int i = 0; i < 3; i++)
		fiber_join(tu->f[i], NULL);
}

static void write_ab(struct side *s)
{
	if (s->hs < 0)
		return;
	fiber_sleep(reactor_get(), 50 * IOU_MSEC);
	FIBER_CHECK(iou_tls_write(s->t, "a", 1) == 1);
	fiber_sleep(reactor_get(), 20 * IOU_MSEC);
	FIBER_CHECK(iou_tls_write(s->t, "b", 1) == 1);
}

static int test_readers_take_turns(void)
{
	struct turns tu = { 0 };
	struct side cl = { .cfg = client_cfg("ca.pem", NULL), .name = "localhost",
			   .after = three_readers };
	struct side sv = { .cfg = server_cfg("server-ec.pem", "server-ec.key", NULL, NULL),
			   .after = write_ab };

	turns_ctx = &tu;
	ASSERT_EQ(run_pair(&cl, &sv), 0);
	ASSERT_NO_FIBER_FAILURES();
	ASSERT_EQ(tu.n[1], -ECANCELED);
	ASSERT_EQ(tu.n[0], 1);
	ASSERT_EQ(tu.n[2], 1);
	ASSERT_EQ(tu.got[0][0], 'a'); /* FIFO: the first reader got the first byte */
	ASSERT_EQ(tu.got[2][0], 'b');
	pair_end(&cl, &sv);
	iou_tls_config_free(cl.cfg);
	iou_tls_config_free(sv.cfg);
	return 0;
}

/* The client from the thread's own context, the server in a fiber. */
static void echo_once(struct side *s)
{
	char b[32];
	ssize_t n;

	if (s->hs < 0)
		return;
	n = iou_tls_read(s->t, b, sizeof(b));
	if (n > 0)
		FIBER_CHECK(iou_tls_write(s->t, b, (size_t)n) == n);
	FIBER_CHECK(iou_tls_shutdown(s->t) == 0);
}

/* Every connection call from a thread other than the connection's. */
struct foreign_tls {
	struct iou_tls *t;
	int handshake, read, write, flush, shutdown;
};

static int foreign_tls_main(void *arg)
{
	struct foreign_tls *x = arg;
	char b[8];

	x->handshake = iou_tls_handshake(x->t);
	x->read = (int)iou_tls_read(x->t, b, sizeof(b));
	x->write = (int)iou_tls_write(x->t, "x", 1);
	x->flush = iou_tls_flush(x->t);
	x->shutdown = iou_tls_shutdown(x->t);
	return 0;
}

static int test_from_thread_context(void)
{
	struct reactor *r = reactor_get();
	struct iou_tls_config *cc = client_cfg("ca.pem", NULL);
	struct side sv = { .cfg = server_cfg("server-rsa.pem", "server-rsa.key", NULL, NULL),
			   .after = echo_once, .deadline = IOU_DEADLINE_NEVER };
	struct iou_tls *t;
	char b[32];
	int fds[2];

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
	sv.fd = fds[1];
	ASSERT_EQ(fiber_spawn(r, side_main, &sv, NULL), 0);
	ASSERT_EQ(iou_tls_client_new(r, cc, fds[0], "localhost", &t), 0);
	/* Another thread is refused and changes nothing: the handshake still works. */
	{
		struct foreign_tls x = { .t = t };
		thrd_t th;

		ASSERT_EQ(thrd_create(&th, foreign_tls_main, &x), thrd_success);
		ASSERT_EQ(thrd_join(th, NULL), thrd_success);
		ASSERT_EQ(x.handshake, -EPERM);
		ASSERT_EQ(x.read, -EPERM);
		ASSERT_EQ(x.write, -EPERM);
		ASSERT_EQ(x.flush, -EPERM);
		ASSERT_EQ(x.shutdown, -EPERM);
	}
	ASSERT_EQ(iou_tls_handshake(t), 0);
	ASSERT_EQ(iou_tls_write(t, "ping", 4), 4);
	ASSERT_EQ(iou_tls_read(t, b, sizeof(b)), 4);
	ASSERT_TRUE(memcmp(b, "ping", 4) == 0);
	ASSERT_EQ(iou_tls_read(t, b, sizeof(b)), 0);
	ASSERT_EQ(iou_tls_shutdown(t), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(sv.hs, 0);
	ASSERT_NO_FIBER_FAILURES();
	iou_tls_close(t);
	iou_tls_close(sv.t);
	close(fds[0]);
	close(fds[1]);
	iou_tls_config_free(cc);
	iou_tls_config_free(sv.cfg);
	return 0;
}

static int test_strerror_names_every_code(void)
{
	for (int e = IOU_ETLS; e >= IOU_ETLS_INTERNAL; e--) {
		const char *s = iou_strerror(e);

		ASSERT_TRUE(IOU_IS_ETLS(e));
		if (strncmp(s, "Unknown error", 13) == 0)
			TEST_FAIL_AT("iou_strerror(%d) = \"%s\"", e, s);
	}
	ASSERT_TRUE(strncmp(iou_strerror(IOU_ETLS_INTERNAL - 1), "Unknown error", 13) == 0);
	ASSERT_STREQ(iou_strerror(IOU_ETLS_CERT_EXPIRED), "Certificate expired");
	return 0;
}

static int test_fixtures(void)
{
	if (setup() < 0) {
		fprintf(stderr, "  fixtures not found under %s\n", fixture_dir);
		return 1;
	}
	return 0;
}

TEST_MAIN(T(test_fixtures), T(test_strerror_names_every_code), T(test_config_errors),
	  T(test_handshake_and_parameters), T(test_ec_key_and_no_alpn_overlap),
	  T(test_certificate_failures), T(test_insecure_accepts_anything),
	  T(test_client_certificates), T(test_bulk_full_duplex),
	  T(test_truncation_versus_clean_end), T(test_hostile_peers),
	  T(test_read_deadline_loses_nothing),
	  T(test_interrupted_write_ends_writing), T(test_readers_take_turns),
	  T(test_from_thread_context))
