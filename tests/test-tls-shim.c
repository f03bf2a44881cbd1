/* SPDX-License-Identifier: MIT */
/*
 * Tests of the rustls shim alone (rust/iou-rustls, iou_rustls.h), in memory:
 * a client and a server iour_conn pump ciphertext into each other with no
 * socket in between.  Covered: a TLS 1.3 handshake (version 0x0304, cipher
 * suite, the peer subject in RFC 4514 form, snprintf-style string results)
 * with configurations freed while their connections live; data both ways,
 * 1 MiB each way, with partial writes and feed back-pressure; close_notify
 * (read returns 0, later writes IOUR_E_CLOSED); EOF without close_notify
 * after the handshake and during it (IOUR_E_TRUNCATED, with the reason);
 * every certificate verdict (unknown issuer, wrong name, expired, not yet
 * valid, a CA used as a leaf) with the alert that reaches the server, and
 * the insecure client that accepts them; unusable server names; ALPN
 * agreed, not offered and refused (IOUR_E_NO_ALPN on both sides); client
 * certificates required, optional, missing (IOUR_E_NO_CERT) and verified;
 * garbage fed to either side (IOUR_E_PROTOCOL, sticky, with an alert for
 * the peer); configuration errors (empty PEM, no usable CA, no key, a key
 * that does not match its certificate, half a client identity, bad ALPN
 * lists); PKCS#8, PKCS#1 and SEC1 keys; the system CA bundle; and NULL
 * arguments refused.
 *
 * Fixtures: tests/fixtures/tls (made by make-certs.sh), found through
 * $IOU_TEST_SRCDIR or, failing that, next to this source file.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iou_rustls.h"

#include "harness.h"

/* ---- fixtures ----------------------------------------------------------- */

struct blob {
	uint8_t *p;
	size_t len;
};

/* The contents of fixture @name (exits the test program if unreadable). */
static struct blob fixture(const char *name)
{
	const char *src = getenv("IOU_TEST_SRCDIR");
	char path[4096];
	struct blob b = { NULL, 0 };
	FILE *fp;
	long size;

	if (src && *src) {
		snprintf(path, sizeof(path), "%s/tests/fixtures/tls/%s", src, name);
	} else {
		const char *slash = strrchr(__FILE__, '/');
		int dirlen = slash ? (int)(slash - __FILE__) : 1;

		snprintf(path, sizeof(path), "%.*s/fixtures/tls/%s", dirlen, slash ? __FILE__ : ".",
			 name);
	}
	fp = fopen(path, "rb");
	if (!fp || fseek(fp, 0, SEEK_END) || (size = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET)) {
		fprintf(stderr, "cannot read fixture %s\n", path);
		exit(1);
	}
	b.len = (size_t)size;
	b.p = malloc(b.len + 1);
	if (!b.p || fread(b.p, 1, b.len, fp) != b.len) {
		fprintf(stderr, "cannot read fixture %s\n", path);
		exit(1);
	}
	fclose(fp);
	return b;
}

static void blob_free(struct blob *b)
{
	free(b->p);
	b->p = NULL;
	b->len = 0;
}

#define WHY_LEN 256

/* A server from fixture names (client_roots may be NULL). */
static int server_config(const char *chain, const char *key, const char *client_roots,
			 const char *alpn, size_t alpn_len, uint32_t flags,
			 struct iour_server_config **out, char *why)
{
	struct blob c = fixture(chain), k = fixture(key), r = { NULL, 0 };
	int rc;

	if (client_roots)
		r = fixture(client_roots);
	rc = iour_server_config_new(c.p, c.len, k.p, k.len, r.p, r.len, (const uint8_t *)alpn,
				    alpn_len, flags, out, why, why ? WHY_LEN : 0);
	blob_free(&c);
	blob_free(&k);
	blob_free(&r);
	return rc;
}

/* A client from fixture names (cert and key may be NULL). */
static int client_config(const char *roots, const char *cert, const char *key, const char *alpn,
			 size_t alpn_len, uint32_t flags, struct iour_client_config **out,
			 char *why)
{
	struct blob r = { NULL, 0 }, c = { NULL, 0 }, k = { NULL, 0 };
	int rc;

	if (roots)
		r = fixture(roots);
	if (cert)
		c = fixture(cert);
	if (key)
		k = fixture(key);
	rc = iour_client_config_new(r.p, r.len, c.p, c.len, k.p, k.len, (const uint8_t *)alpn,
				    alpn_len, flags, out, why, why ? WHY_LEN : 0);
	blob_free(&r);
	blob_free(&c);
	blob_free(&k);
	return rc;
}

/* ---- pumping ------------------------------------------------------------ */

/* One end of the in-memory link and what it has seen. */
struct side {
	struct iour_conn *conn;
	uint8_t *rx; /* plaintext read so far */
	size_t rx_len;
	size_t rx_cap;
	long feed_err; /* first error iour_conn_feed returned, or 0 */
	long read_err; /* first error iour_conn_read returned (not AGAIN), or 0 */
	int read_eof;  /* iour_conn_read returned 0 */
	size_t sent;   /* ciphertext bytes taken from conn */
};

static void side_free(struct side *s)
{
	iour_conn_free(s->conn);
	free(s->rx);
	memset(s, 0, sizeof(*s));
}

/* Read every plaintext byte @s holds. */
static void drain(struct side *s)
{
	uint8_t buf[16384];

	for (;;) {
		long n = iour_conn_read(s->conn, buf, sizeof(buf));

		if (n > 0) {
			if (s->rx_len + (size_t)n > s->rx_cap) {
				s->rx_cap = (s->rx_len + (size_t)n) * 2;
				s->rx = realloc(s->rx, s->rx_cap);
				if (!s->rx)
					abort();
			}
			memcpy(s->rx + s->rx_len, buf, (size_t)n);
			s->rx_len += (size_t)n;
			continue;
		}
		if (n == 0)
			s->read_eof = 1;
		else if (n != IOUR_AGAIN && !s->read_err)
			s->read_err = n;
		return;
	}
}

/* Move what @from has for the peer into @to; return 1 if anything moved. */
static int transfer(struct side *from, struct side *to)
{
	uint8_t buf[5000];
	int moved = 0;

	while (iour_conn_wants_write(from->conn)) {
		long n = iour_conn_take(from->conn, buf, sizeof(buf)), off = 0;
		int stalls = 0;

		if (n <= 0)
			break;
		moved = 1;
		from->sent += (size_t)n;
		while (off < n && !to->feed_err) {
			long k = iour_conn_feed(to->conn, buf + off, (size_t)(n - off));

			if (k < 0) {
				to->feed_err = k;
			} else if (k == 0) {
				/* Back-pressure: rustls holds enough plaintext. */
				if (++stalls > 1)
					abort();
				drain(to);
			} else {
				stalls = 0;
				off += k;
			}
		}
	}
	return moved;
}

/* Exchange ciphertext until neither side has anything to send. */
static void pump(struct side *c, struct side *s)
{
	int rounds = 0;

	while (transfer(c, s) | transfer(s, c)) {
		if (++rounds > 100000)
			abort();
	}
	drain(c);
	drain(s);
}

/* Connections for @cc and @sc, handshaken by pumping. */
static int connect_pair(const struct iour_client_config *cc, const struct iour_server_config *sc,
			const char *name, struct side *c, struct side *s)
{
	char why[WHY_LEN];

	memset(c, 0, sizeof(*c));
	memset(s, 0, sizeof(*s));
	ASSERT_EQ(iour_client_conn_new(cc, name, &c->conn, why, sizeof(why)), 0);
	ASSERT_EQ(iour_server_conn_new(sc, &s->conn, why, sizeof(why)), 0);
	ASSERT_EQ(iour_conn_is_handshaking(c->conn), 1);
	ASSERT_EQ(iour_conn_is_handshaking(s->conn), 1);
	ASSERT_EQ(iour_conn_wants_write(c->conn), 1); /* the ClientHello */
	pump(c, s);
	return 0;
}

/* A client and server on the usual fixtures, handshake done. */
static int established(struct side *c, struct side *s)
{
	struct iour_client_config *cc;
	struct iour_server_config *sc;

	ASSERT_EQ(server_config("server-rsa.pem", "server-rsa.key", NULL, NULL, 0, 0, &sc, NULL),
		  0);
	ASSERT_EQ(client_config("ca.pem", NULL, NULL, NULL, 0, 0, &cc, NULL), 0);
	ASSERT_EQ(connect_pair(cc, sc, "localhost", c, s), 0);
	iour_client_config_free(cc);
	iour_server_config_free(sc);
	ASSERT_EQ(c->feed_err, 0);
	ASSERT_EQ(s->feed_err, 0);
	ASSERT_EQ(iour_conn_is_handshaking(c->conn), 0);
	ASSERT_EQ(iour_conn_is_handshaking(s->conn), 0);
	return 0;
}

/* Write all of @data into @from, pumping whenever rustls's buffer is full. */
static int send_all(struct side *from, struct side *to, const uint8_t *data, size_t len,
		    int *partial)
{
	size_t off = 0;

	while (off < len) {
		long n = iour_conn_write(from->conn, data + off, len - off);

		ASSERT_GE(n, 0);
		if ((size_t)n < len - off)
			*partial = 1;
		off += (size_t)n;
		if (from == to)
			continue;
		transfer(from, to);
		drain(to);
	}
	transfer(from, to);
	drain(to);
	return 0;
}

static char strbuf[1024];
#define SUITE(conn) (iour_conn_cipher_suite((conn), strbuf, sizeof(strbuf)), strbuf)
#define SUBJECT(conn) (iour_conn_peer_subject((conn), strbuf, sizeof(strbuf)), strbuf)
#define ALPN(conn) (iour_conn_alpn((conn), strbuf, sizeof(strbuf)), strbuf)
#define REASON(conn) (iour_conn_reason((conn), strbuf, sizeof(strbuf)), strbuf)

/* ---- tests -------------------------------------------------------------- */

static int test_handshake_tls13(void)
{
	struct side c, s;
	char small[5];

	if (established(&c, &s))
		return 1;
	ASSERT_EQ(iour_conn_protocol_version(c.conn), 0x0304);
	ASSERT_EQ(iour_conn_protocol_version(s.conn), 0x0304);
	ASSERT_STREQ(SUITE(c.conn), "TLS13_AES_256_GCM_SHA384");
	ASSERT_STREQ(SUITE(s.conn), "TLS13_AES_256_GCM_SHA384");
	ASSERT_STREQ(SUBJECT(c.conn), "CN=localhost,O=ioucontext test");
	ASSERT_EQ(iour_conn_peer_subject(c.conn, NULL, 0),
		  (int)strlen("CN=localhost,O=ioucontext test"));
	/* No client certificate, no ALPN, no failure: empty strings. */
	ASSERT_EQ(iour_conn_peer_subject(s.conn, strbuf, sizeof(strbuf)), 0);
	ASSERT_STREQ(strbuf, "");
	ASSERT_EQ(iour_conn_alpn(c.conn, strbuf, sizeof(strbuf)), 0);
	ASSERT_STREQ(strbuf, "");
	ASSERT_EQ(iour_conn_reason(c.conn, strbuf, sizeof(strbuf)), 0);
	/* snprintf semantics: full length back, truncated copy written. */
	ASSERT_EQ(iour_conn_cipher_suite(c.conn, NULL, 0), 24);
	memset(small, 'x', sizeof(small));
	ASSERT_EQ(iour_conn_cipher_suite(c.conn, small, sizeof(small)), 24);
	ASSERT_STREQ(small, "TLS1");
	small[0] = 'x';
	ASSERT_EQ(iour_conn_cipher_suite(c.conn, small, 1), 24);
	ASSERT_EQ(small[0], '\0');
	/* Nothing more to say, both want ciphertext. */
	ASSERT_EQ(iour_conn_wants_write(c.conn), 0);
	ASSERT_EQ(iour_conn_wants_write(s.conn), 0);
	ASSERT_EQ(iour_conn_wants_read(c.conn), 1);
	ASSERT_EQ(iour_conn_wants_read(s.conn), 1);
	ASSERT_EQ(iour_conn_read(c.conn, (uint8_t *)small, sizeof(small)), IOUR_AGAIN);
	side_free(&c);
	side_free(&s);
	return 0;
}

static int test_before_handshake(void)
{
	struct iour_client_config *cc;
	struct iour_server_config *sc;
	struct side c, s;
	uint8_t buf[64];

	ASSERT_EQ(server_config("server-rsa.pem", "server-rsa.key", NULL, NULL, 0, 0, &sc, NULL),
		  0);
	ASSERT_EQ(client_config("ca.pem", NULL, NULL, NULL, 0, 0, &cc, NULL), 0);
	memset(&c, 0, sizeof(c));
	memset(&s, 0, sizeof(s));
	ASSERT_EQ(iour_client_conn_new(cc, "localhost", &c.conn, NULL, 0), 0);
	ASSERT_EQ(iour_server_conn_new(sc, &s.conn, NULL, 0), 0);
	iour_client_config_free(cc);
	iour_server_config_free(sc);
	/* Nothing negotiated yet. */
	ASSERT_EQ(iour_conn_protocol_version(c.conn), 0);
	ASSERT_EQ(iour_conn_cipher_suite(c.conn, strbuf, sizeof(strbuf)), 0);
	ASSERT_EQ(iour_conn_peer_subject(c.conn, strbuf, sizeof(strbuf)), 0);
	ASSERT_EQ(iour_conn_read(c.conn, buf, sizeof(buf)), IOUR_AGAIN);
	ASSERT_EQ(iour_conn_read(s.conn, buf, sizeof(buf)), IOUR_AGAIN);
	/* Plaintext written early is buffered and sent after the handshake. */
	ASSERT_EQ(iour_conn_write(c.conn, (const uint8_t *)"early", 5), 5);
	pump(&c, &s);
	ASSERT_EQ(iour_conn_is_handshaking(c.conn), 0);
	ASSERT_EQ(s.rx_len, 5);
	ASSERT_TRUE(!memcmp(s.rx, "early", 5));
	side_free(&c);
	side_free(&s);
	return 0;
}

static uint8_t *pattern(size_t len, unsigned seed)
{
	uint8_t *p = malloc(len);
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
	return p;
}

static int test_data_both_ways(void)
{
	const size_t big = 1 << 20;
	uint8_t *up = pattern(big, 1), *down = pattern(big, 2);
	struct side c, s;
	int partial = 0;

	if (established(&c, &s))
		return 1;
	ASSERT_EQ(send_all(&c, &s, (const uint8_t *)"ping", 4, &partial), 0);
	ASSERT_EQ(s.rx_len, 4);
	ASSERT_TRUE(!memcmp(s.rx, "ping", 4));
	ASSERT_EQ(send_all(&s, &c, (const uint8_t *)"pong!", 5, &partial), 0);
	ASSERT_EQ(c.rx_len, 5);
	ASSERT_TRUE(!memcmp(c.rx, "pong!", 5));
	ASSERT_EQ(partial, 0);

	s.rx_len = c.rx_len = 0;
	ASSERT_EQ(send_all(&c, &s, up, big, &partial), 0);
	ASSERT_EQ(partial, 1); /* rustls buffers at most 64 KiB of records */
	ASSERT_EQ(send_all(&s, &c, down, big, &partial), 0);
	ASSERT_EQ(s.rx_len, big);
	ASSERT_EQ(c.rx_len, big);
	ASSERT_TRUE(!memcmp(s.rx, up, big));
	ASSERT_TRUE(!memcmp(c.rx, down, big));
	ASSERT_EQ(c.feed_err, 0);
	ASSERT_EQ(s.feed_err, 0);
	ASSERT_EQ(c.read_err, 0);
	ASSERT_EQ(s.read_err, 0);
	free(up);
	free(down);
	side_free(&c);
	side_free(&s);
	return 0;
}

/* Ciphertext for lots of plaintext fed at once: rustls stops taking it
 * once it holds more than 16 KiB of unread plaintext. */
static int test_feed_back_pressure(void)
{
	const size_t len = 60000;
	uint8_t *data = pattern(len, 3), *wire = malloc(1 << 17), out[4096];
	size_t wire_len = 0, got = 0, off = 0;
	struct side c, s;
	long n;

	if (established(&c, &s))
		return 1;
	ASSERT_EQ(iour_conn_write(s.conn, data, len), (long)len);
	while ((n = iour_conn_take(s.conn, wire + wire_len, (1 << 17) - wire_len)) > 0)
		wire_len += (size_t)n;
	ASSERT_GT(wire_len, len);
	ASSERT_EQ(iour_conn_wants_write(s.conn), 0);
	n = iour_conn_feed(c.conn, wire, wire_len);
	ASSERT_GT(n, 16384);
	ASSERT_LT(n, (long)wire_len);
	off = (size_t)n;
	ASSERT_EQ(iour_conn_wants_read(c.conn), 0); /* plaintext waits */
	ASSERT_EQ(iour_conn_feed(c.conn, wire + off, wire_len - off), 0);
	while (got < len) {
		n = iour_conn_read(c.conn, out, sizeof(out));
		if (n == IOUR_AGAIN) {
			ASSERT_LT(off, wire_len);
			n = iour_conn_feed(c.conn, wire + off, wire_len - off);
			ASSERT_GT(n, 0);
			off += (size_t)n;
			continue;
		}
		ASSERT_GT(n, 0);
		ASSERT_TRUE(!memcmp(out, data + got, (size_t)n));
		got += (size_t)n;
	}
	ASSERT_EQ(off, wire_len);
	ASSERT_EQ(iour_conn_read(c.conn, out, sizeof(out)), IOUR_AGAIN);
	free(data);
	free(wire);
	side_free(&c);
	side_free(&s);
	return 0;
}

static int test_close_notify(void)
{
	struct side c, s;
	int partial = 0;

	if (established(&c, &s))
		return 1;
	ASSERT_EQ(iour_conn_write(c.conn, (const uint8_t *)"last", 4), 4);
	iour_conn_close_notify(c.conn);
	iour_conn_close_notify(c.conn); /* once is enough; no second alert */
	ASSERT_EQ(iour_conn_write(c.conn, (const uint8_t *)"x", 1), IOUR_E_CLOSED);
	pump(&c, &s);
	ASSERT_EQ(s.rx_len, 4);
	ASSERT_EQ(s.read_eof, 1);
	ASSERT_EQ(s.read_err, 0);
	ASSERT_EQ(iour_conn_read(s.conn, (uint8_t *)strbuf, 16), 0);
	ASSERT_EQ(iour_conn_wants_read(s.conn), 0);
	/* Half-close: the server may still answer, and then close too. */
	ASSERT_EQ(send_all(&s, &c, (const uint8_t *)"bye", 3, &partial), 0);
	ASSERT_EQ(c.rx_len, 3);
	iour_conn_close_notify(s.conn);
	pump(&c, &s);
	ASSERT_EQ(c.read_eof, 1);
	ASSERT_EQ(c.read_err, 0);
	/* The transport ending after close_notify is a clean end. */
	ASSERT_EQ(iour_conn_feed(s.conn, NULL, 0), 0);
	ASSERT_EQ(iour_conn_read(s.conn, (uint8_t *)strbuf, 16), 0);
	side_free(&c);
	side_free(&s);
	return 0;
}

static int test_eof_without_close_notify(void)
{
	struct side c, s;
	uint8_t buf[64];

	if (established(&c, &s))
		return 1;
	ASSERT_EQ(iour_conn_write(s.conn, (const uint8_t *)"abc", 3), 3);
	ASSERT_EQ(transfer(&s, &c), 1);
	ASSERT_EQ(iour_conn_feed(c.conn, NULL, 0), 0);
	ASSERT_EQ(iour_conn_wants_read(c.conn), 0);
	/* Data before the EOF first, then the truncation. */
	ASSERT_EQ(iour_conn_read(c.conn, buf, sizeof(buf)), 3);
	ASSERT_EQ(iour_conn_read(c.conn, buf, sizeof(buf)), IOUR_E_TRUNCATED);
	ASSERT_EQ(iour_conn_read(c.conn, buf, sizeof(buf)), IOUR_E_TRUNCATED);
	ASSERT_STREQ(REASON(c.conn), "peer closed the connection without close_notify");
	/* Not sticky for writing: the peer may only have shut down its side. */
	ASSERT_EQ(iour_conn_write(c.conn, (const uint8_t *)"x", 1), 1);
	side_free(&c);
	side_free(&s);
	return 0;
}

/* A plaintext close_notify: warning (1), close_notify (0). */
static const uint8_t close_notify_alert[] = { 21, 3, 3, 0, 2, 1, 0 };

static int test_eof_mid_handshake(void)
{
	struct iour_client_config *cc;
	struct iour_server_config *sc;
	struct side c, s;
	uint8_t buf[4096];

	ASSERT_EQ(server_config("server-rsa.pem", "server-rsa.key", NULL, NULL, 0, 0, &sc, NULL),
		  0);
	ASSERT_EQ(client_config("ca.pem", NULL, NULL, NULL, 0, 0, &cc, NULL), 0);
	memset(&c, 0, sizeof(c));
	memset(&s, 0, sizeof(s));
	ASSERT_EQ(iour_client_conn_new(cc, "localhost", &c.conn, NULL, 0), 0);
	ASSERT_EQ(iour_server_conn_new(sc, &s.conn, NULL, 0), 0);
	/* ClientHello reaches the server; its answer never reaches the client. */
	ASSERT_EQ(transfer(&c, &s), 1);
	ASSERT_EQ(s.feed_err, 0);
	ASSERT_EQ(iour_conn_wants_write(s.conn), 1);
	ASSERT_EQ(iour_conn_feed(c.conn, NULL, 0), IOUR_E_TRUNCATED);
	ASSERT_STREQ(REASON(c.conn), "peer closed the connection during the handshake");
	ASSERT_EQ(iour_conn_read(c.conn, buf, sizeof(buf)), IOUR_E_TRUNCATED);
	ASSERT_EQ(iour_conn_feed(c.conn, (const uint8_t *)"x", 1), IOUR_E_TRUNCATED);
	ASSERT_EQ(iour_conn_is_handshaking(c.conn), 1);
	ASSERT_EQ(iour_conn_wants_read(c.conn), 0);
	/* The server side too, and a server that never saw a byte. */
	ASSERT_EQ(iour_conn_feed(s.conn, NULL, 0), IOUR_E_TRUNCATED);
	ASSERT_EQ(iour_conn_read(s.conn, buf, sizeof(buf)), IOUR_E_TRUNCATED);
	side_free(&s);
	ASSERT_EQ(iour_server_conn_new(sc, &s.conn, NULL, 0), 0);
	ASSERT_EQ(iour_conn_feed(s.conn, NULL, 0), IOUR_E_TRUNCATED);
	ASSERT_STREQ(REASON(s.conn), "peer closed the connection during the handshake");
	/* A close_notify alert instead of a ClientHello / ServerHello: the
	 * handshake can never end, which is a failure, not a clean close. */
	side_free(&s);
	ASSERT_EQ(iour_server_conn_new(sc, &s.conn, NULL, 0), 0);
	ASSERT_EQ(iour_conn_feed(s.conn, close_notify_alert, sizeof(close_notify_alert)),
		  IOUR_E_ALERT);
	ASSERT_STREQ(REASON(s.conn), "peer sent close_notify during the handshake");
	ASSERT_EQ(iour_conn_wants_read(s.conn), 0);
	side_free(&c);
	ASSERT_EQ(iour_client_conn_new(cc, "localhost", &c.conn, NULL, 0), 0);
	ASSERT_GT(iour_conn_take(c.conn, buf, sizeof(buf)), 0);
	ASSERT_EQ(iour_conn_feed(c.conn, close_notify_alert, sizeof(close_notify_alert)),
		  IOUR_E_ALERT);
	/* Half a record, then EOF. */
	side_free(&s);
	ASSERT_EQ(iour_server_conn_new(sc, &s.conn, NULL, 0), 0);
	ASSERT_EQ(iour_conn_feed(s.conn, (const uint8_t *)"\x16\x03\x01\x02\x00\x01", 6), 6);
	ASSERT_EQ(iour_conn_feed(s.conn, NULL, 0), IOUR_E_TRUNCATED);
	iour_client_config_free(cc);
	iour_server_config_free(sc);
	side_free(&c);
	side_free(&s);
	return 0;
}

/* A handshake of the ca.pem-trusting client with a server on @cert/@key
 * that the client must refuse with @code and @reason; the server then gets
 * the client's alert. */
static int expect_cert_failure(const char *cert, const char *key, const char *name, long code,
			       const char *reason)
{
	struct iour_client_config *cc, *insecure;
	struct iour_server_config *sc;
	struct side c, s;

	ASSERT_EQ(server_config(cert, key, NULL, NULL, 0, 0, &sc, NULL), 0);
	ASSERT_EQ(client_config("ca.pem", NULL, NULL, NULL, 0, 0, &cc, NULL), 0);
	ASSERT_EQ(connect_pair(cc, sc, name, &c, &s), 0);
	ASSERT_EQ(c.feed_err, code);
	ASSERT_STREQ(REASON(c.conn), reason);
	ASSERT_EQ(s.feed_err, IOUR_E_ALERT);
	ASSERT_EQ(strncmp(REASON(s.conn), "received fatal alert: ", 22), 0);
	/* Sticky. */
	ASSERT_EQ(iour_conn_feed(c.conn, (const uint8_t *)"x", 1), code);
	ASSERT_EQ(iour_conn_read(c.conn, (uint8_t *)strbuf, 8), code);
	ASSERT_EQ(iour_conn_write(c.conn, (const uint8_t *)"x", 1), code);
	ASSERT_EQ(iour_conn_wants_read(c.conn), 0);
	side_free(&c);
	side_free(&s);

	/* The insecure client lets the same certificate through. */
	ASSERT_EQ(
		client_config(NULL, NULL, NULL, NULL, 0, IOUR_INSECURE_NO_VERIFY, &insecure, NULL),
		0);
	ASSERT_EQ(connect_pair(insecure, sc, name, &c, &s), 0);
	ASSERT_EQ(c.feed_err, 0);
	ASSERT_EQ(s.feed_err, 0);
	ASSERT_EQ(iour_conn_is_handshaking(c.conn), 0);
	side_free(&c);
	side_free(&s);
	iour_client_config_free(insecure);
	iour_client_config_free(cc);
	iour_server_config_free(sc);
	return 0;
}

static int test_cert_failures(void)
{
	if (expect_cert_failure("untrusted.pem", "untrusted.key", "localhost",
				IOUR_E_CERT_UNKNOWN_ISSUER,
				"invalid peer certificate: UnknownIssuer"))
		return 1;
	if (expect_cert_failure("wrongname.pem", "wrongname.key", "localhost", IOUR_E_CERT_BAD_NAME,
				"invalid peer certificate: CertNotValidForName"))
		return 1;
	if (expect_cert_failure("server-rsa.pem", "server-rsa.key", "other.localhost",
				IOUR_E_CERT_BAD_NAME,
				"invalid peer certificate: CertNotValidForName"))
		return 1;
	if (expect_cert_failure("expired.pem", "expired.key", "localhost", IOUR_E_CERT_EXPIRED,
				"invalid peer certificate: CertExpired"))
		return 1;
	if (expect_cert_failure("notyet.pem", "notyet.key", "localhost", IOUR_E_CERT_NOT_YET_VALID,
				"invalid peer certificate: CertNotValidYet"))
		return 1;
	/* The CA's own certificate as a server's: webpki refuses a CA leaf. */
	if (expect_cert_failure("ca.pem", "ca.key", "localhost", IOUR_E_CERT_INVALID,
				"invalid peer certificate: CaUsedAsEndEntity"))
		return 1;
	return 0;
}

static int test_bad_server_names(void)
{
	static const char *const bad[] = { "127.0.0.1", "::1", "", "bad name!", "a..b", "-" };
	struct iour_client_config *cc, *insecure;
	struct iour_conn *conn = NULL;
	char why[WHY_LEN];

	ASSERT_EQ(client_config("ca.pem", NULL, NULL, NULL, 0, 0, &cc, NULL), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		conn = (struct iour_conn *)1;
		ASSERT_EQ(iour_client_conn_new(cc, bad[i], &conn, why, sizeof(why)),
			  IOUR_E_BAD_NAME);
		ASSERT_PTR_EQ(conn, NULL);
		ASSERT_GT(strlen(why), 0);
	}
	ASSERT_EQ(iour_client_conn_new(cc, "127.0.0.1", &conn, why, sizeof(why)), IOUR_E_BAD_NAME);
	ASSERT_TRUE(strstr(why, "IP address") != NULL);
	ASSERT_EQ(iour_client_conn_new(cc, "", &conn, why, sizeof(why)), IOUR_E_BAD_NAME);
	ASSERT_STREQ(why, "empty server name");
	ASSERT_EQ(iour_client_conn_new(cc, NULL, &conn, why, sizeof(why)), IOUR_E_BAD_NAME);
	ASSERT_EQ(iour_client_conn_new(cc, "\xff", &conn, NULL, 0), IOUR_E_BAD_NAME);
	/* Unverified, an address is a usable name (there is nothing to check). */
	ASSERT_EQ(
		client_config(NULL, NULL, NULL, NULL, 0, IOUR_INSECURE_NO_VERIFY, &insecure, NULL),
		0);
	ASSERT_EQ(iour_client_conn_new(insecure, "127.0.0.1", &conn, why, sizeof(why)), 0);
	iour_conn_free(conn);
	ASSERT_EQ(iour_client_conn_new(insecure, "", &conn, why, sizeof(why)), IOUR_E_BAD_NAME);
	iour_client_config_free(insecure);
	iour_client_config_free(cc);
	return 0;
}

static int test_alpn(void)
{
	static const char both[] = "\x02h2\x08http/1.1", http[] = "\x08http/1.1", h2[] = "\x02h2";
	struct iour_client_config *cc;
	struct iour_server_config *sc;
	struct side c, s;

	/* Agreed: the server's preference among what the client offers. */
	ASSERT_EQ(server_config("server-ec.pem", "server-ec.key", NULL, http, sizeof(http) - 1, 0,
				&sc, NULL),
		  0);
	ASSERT_EQ(client_config("ca.pem", NULL, NULL, both, sizeof(both) - 1, 0, &cc, NULL), 0);
	ASSERT_EQ(connect_pair(cc, sc, "localhost", &c, &s), 0);
	ASSERT_EQ(c.feed_err, 0);
	ASSERT_STREQ(ALPN(c.conn), "http/1.1");
	ASSERT_STREQ(ALPN(s.conn), "http/1.1");
	ASSERT_EQ(iour_conn_alpn(c.conn, NULL, 0), 8);
	side_free(&c);
	side_free(&s);
	iour_client_config_free(cc);

	/* A client that offers nothing still gets in, without a protocol. */
	ASSERT_EQ(client_config("ca.pem", NULL, NULL, NULL, 0, 0, &cc, NULL), 0);
	ASSERT_EQ(connect_pair(cc, sc, "localhost", &c, &s), 0);
	ASSERT_EQ(c.feed_err, 0);
	ASSERT_EQ(s.feed_err, 0);
	ASSERT_EQ(iour_conn_alpn(s.conn, strbuf, sizeof(strbuf)), 0);
	side_free(&c);
	side_free(&s);
	iour_client_config_free(cc);

	/* Nothing in common: refused by the server, and the client is told. */
	ASSERT_EQ(client_config("ca.pem", NULL, NULL, h2, sizeof(h2) - 1, 0, &cc, NULL), 0);
	ASSERT_EQ(connect_pair(cc, sc, "localhost", &c, &s), 0);
	ASSERT_EQ(s.feed_err, IOUR_E_NO_ALPN);
	ASSERT_STREQ(REASON(s.conn), "peer doesn't support any known protocol");
	ASSERT_EQ(c.feed_err, IOUR_E_NO_ALPN);
	ASSERT_STREQ(REASON(c.conn), "received fatal alert: NoApplicationProtocol");
	side_free(&c);
	side_free(&s);
	iour_client_config_free(cc);
	iour_server_config_free(sc);
	return 0;
}

static int test_client_certificates(void)
{
	struct iour_client_config *anon, *ident;
	struct iour_server_config *required, *optional;
	struct side c, s;

	ASSERT_EQ(server_config("server-rsa.pem", "server-rsa.key", "ca.pem", NULL, 0, 0, &required,
				NULL),
		  0);
	ASSERT_EQ(server_config("server-rsa.pem", "server-rsa.key", "ca.pem", NULL, 0,
				IOUR_CLIENT_CERT_OPTIONAL, &optional, NULL),
		  0);
	ASSERT_EQ(client_config("ca.pem", NULL, NULL, NULL, 0, 0, &anon, NULL), 0);
	ASSERT_EQ(client_config("ca.pem", "client.pem", "client.key", NULL, 0, 0, &ident, NULL), 0);

	/* Required and verified: the server sees who the client is. */
	ASSERT_EQ(connect_pair(ident, required, "localhost", &c, &s), 0);
	ASSERT_EQ(c.feed_err, 0);
	ASSERT_EQ(s.feed_err, 0);
	ASSERT_EQ(iour_conn_is_handshaking(s.conn), 0);
	ASSERT_STREQ(SUBJECT(s.conn), "CN=ioucontext test client,O=ioucontext test");
	side_free(&c);
	side_free(&s);

	/* Required and missing: IOUR_E_NO_CERT on the server; the client,
	 * whose TLS 1.3 handshake is over by then, reads the alert. */
	ASSERT_EQ(connect_pair(anon, required, "localhost", &c, &s), 0);
	ASSERT_EQ(s.feed_err, IOUR_E_NO_CERT);
	ASSERT_STREQ(REASON(s.conn), "peer sent no certificates");
	ASSERT_EQ(c.feed_err, IOUR_E_ALERT);
	ASSERT_STREQ(REASON(c.conn), "received fatal alert: CertificateRequired");
	side_free(&c);
	side_free(&s);

	/* Optional: both kinds of client get in. */
	ASSERT_EQ(connect_pair(anon, optional, "localhost", &c, &s), 0);
	ASSERT_EQ(s.feed_err, 0);
	ASSERT_EQ(c.feed_err, 0);
	ASSERT_EQ(iour_conn_peer_subject(s.conn, strbuf, sizeof(strbuf)), 0);
	side_free(&c);
	side_free(&s);
	ASSERT_EQ(connect_pair(ident, optional, "localhost", &c, &s), 0);
	ASSERT_EQ(s.feed_err, 0);
	ASSERT_STREQ(SUBJECT(s.conn), "CN=ioucontext test client,O=ioucontext test");
	side_free(&c);
	side_free(&s);

	iour_client_config_free(anon);
	iour_client_config_free(ident);
	iour_server_config_free(required);
	iour_server_config_free(optional);
	return 0;
}

/* The shim's own alert for input that is not TLS: fatal decode_error. */
static const uint8_t decode_error_alert[] = { 21, 3, 3, 0, 2, 2, 50 };

static int test_garbage(void)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	struct iour_client_config *cc;
	struct iour_server_config *sc;
	struct side c, s;
	uint8_t buf[4096];
	long n;

	ASSERT_EQ(server_config("server-rsa.pem", "server-rsa.key", NULL, NULL, 0, 0, &sc, NULL),
		  0);
	ASSERT_EQ(client_config("ca.pem", NULL, NULL, NULL, 0, 0, &cc, NULL), 0);
	memset(&c, 0, sizeof(c));
	memset(&s, 0, sizeof(s));

	/* A server fed an HTTP request. */
	ASSERT_EQ(iour_server_conn_new(sc, &s.conn, NULL, 0), 0);
	ASSERT_EQ(iour_conn_feed(s.conn, (const uint8_t *)http, sizeof(http) - 1), IOUR_E_PROTOCOL);
	ASSERT_STREQ(REASON(s.conn), "received corrupt message");
	ASSERT_EQ(iour_conn_wants_write(s.conn), 1);
	ASSERT_EQ(iour_conn_take(s.conn, buf, 3), 3); /* in pieces */
	n = iour_conn_take(s.conn, buf + 3, sizeof(buf) - 3);
	ASSERT_EQ(n + 3, (long)sizeof(decode_error_alert));
	ASSERT_TRUE(!memcmp(buf, decode_error_alert, sizeof(decode_error_alert)));
	ASSERT_EQ(iour_conn_wants_write(s.conn), 0);
	ASSERT_EQ(iour_conn_take(s.conn, buf, sizeof(buf)), 0);
	ASSERT_EQ(iour_conn_feed(s.conn, (const uint8_t *)http, 4), IOUR_E_PROTOCOL);
	ASSERT_EQ(iour_conn_read(s.conn, buf, sizeof(buf)), IOUR_E_PROTOCOL);
	ASSERT_EQ(iour_conn_write(s.conn, buf, 1), IOUR_E_PROTOCOL);
	ASSERT_EQ(iour_conn_feed(s.conn, NULL, 0), IOUR_E_PROTOCOL);
	side_free(&s);

	/* A client answered by an HTTP server: its ClientHello goes first. */
	ASSERT_EQ(iour_client_conn_new(cc, "localhost", &c.conn, NULL, 0), 0);
	n = iour_conn_take(c.conn, buf, sizeof(buf));
	ASSERT_GT(n, 0);
	ASSERT_EQ(buf[0], 22); /* handshake record */
	ASSERT_EQ(iour_conn_wants_write(c.conn), 0);
	ASSERT_EQ(iour_conn_feed(c.conn, (const uint8_t *)"HTTP/1.1 400 Bad Request\r\n", 26),
		  IOUR_E_PROTOCOL);
	ASSERT_EQ(iour_conn_wants_write(c.conn), 1);
	ASSERT_EQ(iour_conn_take(c.conn, buf, sizeof(buf)), (long)sizeof(decode_error_alert));
	ASSERT_TRUE(!memcmp(buf, decode_error_alert, sizeof(decode_error_alert)));
	side_free(&c);

	/* Well-framed records with nonsense inside: rustls's own alert. */
	ASSERT_EQ(iour_server_conn_new(sc, &s.conn, NULL, 0), 0);
	ASSERT_EQ(iour_conn_feed(
			  s.conn,
			  (const uint8_t *)"\x16\x03\x01\x00\x08\x01\x00\x00\x04\xde\xad\xbe\xef",
			  13),
		  IOUR_E_PROTOCOL);
	ASSERT_EQ(iour_conn_wants_write(s.conn), 1);
	n = iour_conn_take(s.conn, buf, sizeof(buf));
	ASSERT_EQ(n, 7);
	ASSERT_EQ(buf[0], 21); /* an alert */
	ASSERT_EQ(buf[5], 2);  /* fatal */
	side_free(&s);

	/* Garbage after the handshake: encrypted records that do not decrypt. */
	if (established(&c, &s))
		return 1;
	memcpy(buf, "\x17\x03\x03\x00\x20", 5);
	memset(buf + 5, 0xa5, 32);
	ASSERT_EQ(iour_conn_feed(c.conn, buf, 37), IOUR_E_PROTOCOL);
	ASSERT_STREQ(REASON(c.conn), "cannot decrypt peer's message");
	pump(&c, &s);
	ASSERT_EQ(s.feed_err, IOUR_E_ALERT);
	ASSERT_STREQ(REASON(s.conn), "received fatal alert: BadRecordMac");
	side_free(&c);
	side_free(&s);

	iour_client_config_free(cc);
	iour_server_config_free(sc);
	return 0;
}

static int test_config_errors(void)
{
	static const char junk_cert[] =
		"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
	struct blob ca = fixture("ca.pem"), cert = fixture("server-rsa.pem"),
		    key = fixture("server-rsa.key");
	struct iour_client_config *cc = (struct iour_client_config *)1;
	struct iour_server_config *sc = (struct iour_server_config *)1;
	char why[WHY_LEN];

	/* Client: no roots, unusable roots, not PEM. */
	ASSERT_EQ(iour_client_config_new(NULL, 0, NULL, 0, NULL, 0, NULL, 0, 0, &cc, why,
					 sizeof(why)),
		  IOUR_E_CONFIG);
	ASSERT_PTR_EQ(cc, NULL);
	ASSERT_TRUE(strstr(why, "no usable CA certificate") != NULL);
	ASSERT_EQ(iour_client_config_new((const uint8_t *)junk_cert, sizeof(junk_cert) - 1, NULL, 0,
					 NULL, 0, NULL, 0, 0, &cc, why, sizeof(why)),
		  IOUR_E_CONFIG);
	ASSERT_TRUE(strstr(why, "1 found, 1 unusable") != NULL);
	ASSERT_EQ(iour_client_config_new((const uint8_t *)"\xff\xfe\n", 3, NULL, 0, NULL, 0, NULL,
					 0, 0, &cc, NULL, 0),
		  IOUR_E_CONFIG);
	/* A key without its certificate, and the reverse. */
	ASSERT_EQ(iour_client_config_new(ca.p, ca.len, NULL, 0, key.p, key.len, NULL, 0, 0, &cc,
					 why, sizeof(why)),
		  IOUR_E_CONFIG);
	ASSERT_EQ(iour_client_config_new(ca.p, ca.len, cert.p, cert.len, NULL, 0, NULL, 0, 0, &cc,
					 why, sizeof(why)),
		  IOUR_E_CONFIG);
	/* Malformed ALPN lists: an empty name, a name cut short. */
	ASSERT_EQ(iour_client_config_new(ca.p, ca.len, NULL, 0, NULL, 0,
					 (const uint8_t *)"\x02h2\x00", 4, 0, &cc, why,
					 sizeof(why)),
		  IOUR_E_CONFIG);
	ASSERT_TRUE(strstr(why, "empty protocol name") != NULL);
	ASSERT_EQ(iour_client_config_new(ca.p, ca.len, NULL, 0, NULL, 0, (const uint8_t *)"\x05h2",
					 3, 0, &cc, why, sizeof(why)),
		  IOUR_E_CONFIG);
	ASSERT_TRUE(strstr(why, "truncated") != NULL);
	ASSERT_EQ(iour_server_config_new(cert.p, cert.len, key.p, key.len, NULL, 0,
					 (const uint8_t *)"\x00", 1, 0, &sc, why, sizeof(why)),
		  IOUR_E_CONFIG);
	ASSERT_PTR_EQ(sc, NULL);
	/* The insecure client needs no roots at all. */
	ASSERT_EQ(iour_client_config_new(NULL, 0, NULL, 0, NULL, 0, NULL, 0,
					 IOUR_INSECURE_NO_VERIFY, &cc, why, sizeof(why)),
		  0);
	iour_client_config_free(cc);

	/* Server: no chain, no key, a key in the chain's place, client roots
	 * that hold nothing usable. */
	ASSERT_EQ(iour_server_config_new(NULL, 0, key.p, key.len, NULL, 0, NULL, 0, 0, &sc, why,
					 sizeof(why)),
		  IOUR_E_CONFIG);
	ASSERT_TRUE(strstr(why, "no certificate") != NULL);
	ASSERT_EQ(iour_server_config_new(cert.p, cert.len, NULL, 0, NULL, 0, NULL, 0, 0, &sc, why,
					 sizeof(why)),
		  IOUR_E_CONFIG);
	ASSERT_TRUE(strstr(why, "no private key") != NULL);
	ASSERT_EQ(iour_server_config_new(cert.p, cert.len, cert.p, cert.len, NULL, 0, NULL, 0, 0,
					 &sc, why, sizeof(why)),
		  IOUR_E_CONFIG);
	ASSERT_TRUE(strstr(why, "no private key") != NULL);
	ASSERT_EQ(iour_server_config_new(key.p, key.len, key.p, key.len, NULL, 0, NULL, 0, 0, &sc,
					 why, sizeof(why)),
		  IOUR_E_CONFIG);
	ASSERT_EQ(iour_server_config_new(cert.p, cert.len, key.p, key.len,
					 (const uint8_t *)junk_cert, sizeof(junk_cert) - 1, NULL, 0,
					 0, &sc, why, sizeof(why)),
		  IOUR_E_CONFIG);
	ASSERT_TRUE(strstr(why, "client CA") != NULL);
	/* A key that is not the certificate's. */
	ASSERT_EQ(server_config("server-rsa.pem", "server-ec.key", NULL, NULL, 0, 0, &sc, why),
		  IOUR_E_CONFIG);
	ASSERT_TRUE(strstr(why, "does not match") != NULL);
	ASSERT_EQ(server_config("server-ec.pem", "expired.key", NULL, NULL, 0, 0, &sc, why),
		  IOUR_E_CONFIG);
	ASSERT_EQ(server_config("server-ec.pem", "rsa-pkcs1.key", NULL, NULL, 0, 0, &sc, why),
		  IOUR_E_CONFIG);
	ASSERT_EQ(client_config("ca.pem", "client.pem", "server-ec.key", NULL, 0, 0, &cc, why),
		  IOUR_E_CONFIG);
	/* A key PEM that is not a key at all. */
	ASSERT_EQ(
		iour_server_config_new(
			cert.p, cert.len,
			(const uint8_t
				 *)"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
			58, NULL, 0, NULL, 0, 0, &sc, why, sizeof(why)),
		IOUR_E_CONFIG);
	ASSERT_TRUE(strstr(why, "unusable private key") != NULL);
	/* why may be short: truncated, NUL-terminated. */
	memset(why, 'x', sizeof(why));
	ASSERT_EQ(iour_server_config_new(NULL, 0, key.p, key.len, NULL, 0, NULL, 0, 0, &sc, why, 8),
		  IOUR_E_CONFIG);
	ASSERT_EQ(strlen(why), 7);
	blob_free(&ca);
	blob_free(&cert);
	blob_free(&key);
	return 0;
}

/* Each key encoding, with its certificate, completes a handshake. */
static int test_key_formats(void)
{
	static const char *const pairs[][2] = {
		{ "server-rsa.pem", "server-rsa.key" },	  /* PKCS#8 RSA */
		{ "server-rsa.pem", "rsa-pkcs1.key" },	  /* PKCS#1 RSA */
		{ "server-ec.pem", "server-ec.key" },	  /* SEC1 P-256 */
		{ "server-chain.pem", "server-rsa.key" }, /* leaf + CA */
		{ "untrusted.pem", "untrusted.key" },	  /* PKCS#8 P-256 */
	};
	struct iour_client_config *cc;
	struct iour_server_config *sc;
	struct side c, s;

	ASSERT_EQ(client_config(NULL, NULL, NULL, NULL, 0,
				IOUR_INSECURE_NO_VERIFY | IOUR_NO_RESUMPTION, &cc, NULL),
		  0);
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		char why[WHY_LEN] = "";

		if (server_config(pairs[i][0], pairs[i][1], NULL, NULL, 0, IOUR_NO_RESUMPTION, &sc,
				  why))
			TEST_FAIL_AT("%s + %s: %s", pairs[i][0], pairs[i][1], why);
		ASSERT_EQ(connect_pair(cc, sc, "localhost", &c, &s), 0);
		ASSERT_EQ(c.feed_err, 0);
		ASSERT_EQ(s.feed_err, 0);
		ASSERT_EQ(iour_conn_is_handshaking(c.conn), 0);
		ASSERT_STREQ(SUBJECT(c.conn), "CN=localhost,O=ioucontext test");
		side_free(&c);
		side_free(&s);
		iour_server_config_free(sc);
	}
	iour_client_config_free(cc);
	return 0;
}

/* How many bytes the server sends in a handshake of @cc with @sc: a full
 * handshake carries the certificate (over 1000 bytes), a resumed one not. */
static long server_flight(const struct iour_client_config *cc, const struct iour_server_config *sc)
{
	struct side c, s;
	long sent;

	if (connect_pair(cc, sc, "localhost", &c, &s) || c.feed_err || s.feed_err ||
	    iour_conn_is_handshaking(c.conn))
		return -1;
	/* Resumed or not, the peer's certificate is known. */
	if (strcmp(SUBJECT(c.conn), "CN=localhost,O=ioucontext test"))
		return -1;
	sent = (long)s.sent;
	side_free(&c);
	side_free(&s);
	return sent;
}

static int test_resumption(void)
{
	struct iour_client_config *cc, *cc_once;
	struct iour_server_config *sc, *sc_once;

	ASSERT_EQ(client_config("ca.pem", NULL, NULL, NULL, 0, 0, &cc, NULL), 0);
	ASSERT_EQ(client_config("ca.pem", NULL, NULL, NULL, 0, IOUR_NO_RESUMPTION, &cc_once, NULL),
		  0);
	ASSERT_EQ(server_config("server-rsa.pem", "server-rsa.key", NULL, NULL, 0, 0, &sc, NULL),
		  0);
	ASSERT_EQ(server_config("server-rsa.pem", "server-rsa.key", NULL, NULL, 0,
				IOUR_NO_RESUMPTION, &sc_once, NULL),
		  0);
	/* By default the second handshake resumes the first one's session. */
	ASSERT_GT(server_flight(cc, sc), 1000);
	ASSERT_LT(server_flight(cc, sc), 1000);
	ASSERT_GE(server_flight(cc, sc), 0);
	/* IOUR_NO_RESUMPTION on either side: always full handshakes. */
	ASSERT_GT(server_flight(cc_once, sc), 1000);
	ASSERT_GT(server_flight(cc_once, sc), 1000);
	ASSERT_GT(server_flight(cc, sc_once), 1000);
	ASSERT_GT(server_flight(cc, sc_once), 1000);
	iour_client_config_free(cc);
	iour_client_config_free(cc_once);
	iour_server_config_free(sc);
	iour_server_config_free(sc_once);
	return 0;
}

static int test_system_roots(void)
{
	FILE *fp = fopen("/etc/ssl/certs/ca-certificates.crt", "rb");
	struct iour_client_config *cc;
	uint8_t *pem;
	char why[WHY_LEN];
	long size;
	int rc;

	if (!fp)
		return TEST_SKIP;
	fseek(fp, 0, SEEK_END);
	size = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	pem = malloc((size_t)size);
	ASSERT_EQ(fread(pem, 1, (size_t)size, fp), (size_t)size);
	fclose(fp);
	rc = iour_client_config_new(pem, (size_t)size, NULL, 0, NULL, 0, NULL, 0, 0, &cc, why,
				    sizeof(why));
	free(pem);
	if (rc)
		TEST_FAIL_AT("system bundle: %d %s", rc, why);
	iour_client_config_free(cc);
	return 0;
}

static int test_null_arguments(void)
{
	struct iour_client_config *cc;
	struct iour_server_config *sc;
	struct iour_conn *conn;
	struct side c, s;
	uint8_t buf[16];

	ASSERT_EQ(iour_client_config_new(NULL, 0, NULL, 0, NULL, 0, NULL, 0, 0, NULL, NULL, 0),
		  IOUR_E_INTERNAL);
	ASSERT_EQ(iour_client_config_new(NULL, 5, NULL, 0, NULL, 0, NULL, 0, 0, &cc, NULL, 0),
		  IOUR_E_INTERNAL);
	ASSERT_EQ(iour_server_config_new(NULL, 0, NULL, 0, NULL, 0, NULL, 0, 0, NULL, NULL, 0),
		  IOUR_E_INTERNAL);
	ASSERT_EQ(iour_server_config_new(NULL, 1, NULL, 0, NULL, 0, NULL, 0, 0, &sc, NULL, 0),
		  IOUR_E_INTERNAL);
	ASSERT_EQ(iour_client_conn_new(NULL, "localhost", &conn, NULL, 0), IOUR_E_INTERNAL);
	ASSERT_EQ(iour_server_conn_new(NULL, &conn, NULL, 0), IOUR_E_INTERNAL);
	ASSERT_LT(iour_conn_feed(NULL, buf, 1), 0);
	ASSERT_LT(iour_conn_feed(NULL, NULL, 0), 0);
	ASSERT_LT(iour_conn_take(NULL, buf, sizeof(buf)), 0);
	ASSERT_LT(iour_conn_read(NULL, buf, sizeof(buf)), 0);
	ASSERT_LT(iour_conn_write(NULL, buf, 1), 0);
	ASSERT_EQ(iour_conn_wants_write(NULL), 0);
	ASSERT_EQ(iour_conn_wants_read(NULL), 0);
	ASSERT_EQ(iour_conn_is_handshaking(NULL), 0);
	ASSERT_EQ(iour_conn_protocol_version(NULL), 0);
	ASSERT_EQ(iour_conn_cipher_suite(NULL, (char *)buf, sizeof(buf)), 0);
	ASSERT_EQ(iour_conn_alpn(NULL, NULL, 0), 0);
	ASSERT_EQ(iour_conn_peer_subject(NULL, NULL, 0), 0);
	ASSERT_EQ(iour_conn_reason(NULL, NULL, 0), 0);
	iour_conn_close_notify(NULL);
	iour_conn_free(NULL);
	iour_client_config_free(NULL);
	iour_server_config_free(NULL);

	/* On a live connection: NULL buffers with a length are refused,
	 * without a length they are empty. */
	if (established(&c, &s))
		return 1;
	ASSERT_EQ(iour_conn_feed(c.conn, NULL, 10), IOUR_E_INTERNAL);
	ASSERT_EQ(iour_conn_take(c.conn, NULL, 10), IOUR_E_INTERNAL);
	ASSERT_EQ(iour_conn_take(c.conn, NULL, 0), 0);
	ASSERT_EQ(iour_conn_read(c.conn, NULL, 10), IOUR_E_INTERNAL);
	ASSERT_EQ(iour_conn_read(c.conn, NULL, 0), 0);
	ASSERT_EQ(iour_conn_write(c.conn, NULL, 10), IOUR_E_INTERNAL);
	ASSERT_EQ(iour_conn_write(c.conn, NULL, 0), 0);
	/* None of that broke the connection. */
	ASSERT_EQ(iour_conn_write(c.conn, (const uint8_t *)"ok", 2), 2);
	pump(&c, &s);
	ASSERT_EQ(s.rx_len, 2);
	side_free(&c);
	side_free(&s);
	return 0;
}

TEST_MAIN(T(test_handshake_tls13), T(test_before_handshake), T(test_data_both_ways),
	  T(test_feed_back_pressure), T(test_close_notify), T(test_eof_without_close_notify),
	  T(test_eof_mid_handshake), T(test_cert_failures), T(test_bad_server_names), T(test_alpn),
	  T(test_client_certificates), T(test_garbage), T(test_config_errors), T(test_key_formats),
	  T(test_resumption), T(test_system_roots), T(test_null_arguments))
