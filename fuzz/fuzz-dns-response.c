/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness: libioucontext-dns (src/dns/dns.c over c-ares) fed
 * arbitrary bytes as a DNS server's answers.  The server is fake and in
 * this process, on 127.0.0.1: fibers of the harness's reactor answer on a
 * UDP socket and on a TCP listener of the same port (c-ares retries over
 * TCP when an answer says it was truncated).  The resolver asks only that
 * server (search off, no hosts file, one try, a short timeout); it is made
 * afresh for each input, so that no state carries over.
 *
 * Each query gets the fuzz bytes as its answer, with the query's ID put
 * into their first two bytes (c-ares drops answers to other IDs), and, as
 * a flag says, the query's question section put in after their 12-byte
 * header (c-ares drops answers to other questions).  A well-formed
 * follow-up answer (NXDOMAIN, SERVFAIL, REFUSED or truncated) comes right
 * after it, so that a lookup whose fuzz answer was dropped ends at once
 * instead of waiting for the timeout; only one flag combination leaves it
 * out, to reach the timeout path.
 *
 * Input: one flags byte, then the answer.  Flags: bits 0-2 the lookup
 * (enum lookup), bit 3 put the question in, bits 4-5 the follow-up (enum
 * follow_up; 3 is REFUSED, or none when bit 7 is set too), bit 6 answer
 * TCP queries with the fuzz bytes as well (otherwise with the follow-up
 * only).  Answers longer than MAX_ANSWER bytes are cut there (a UDP
 * datagram holds no more).
 *
 * Checks: a lookup ends in success or an error iou_strerror() names,
 * never in a stall; every address returned is well formed; a name returned
 * is terminated within its buffer.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ioucontext/dns.h>
#include <ioucontext/ioucontext.h>

#include "fuzz.h"

/* The name looked up (search is off: asked as it is). */
#define NAME "host.example"
/* c-ares's timeout per try, when no follow-up comes. */
#define TIMEOUT_MS 5
/* Longest answer sent (over UDP, and over TCP likewise). */
#define MAX_ANSWER 65000
/* Longest query taken (c-ares's are far shorter). */
#define MAX_QUERY 1024
/* TCP connections served at once (c-ares opens one per server). */
#define MAX_CONNS 4
/* Bound on any one input's lookup: reaching it means a stall. */
#define STALL (10 * IOU_SEC)

/* What is looked up (flags bits 0-2). */
enum lookup {
	LOOKUP_A,	    /* AF_INET */
	LOOKUP_AAAA,	    /* AF_INET6 */
	LOOKUP_ANY,	    /* AF_UNSPEC: A and AAAA */
	LOOKUP_A_CANON,	    /* AF_INET, AI_CANONNAME */
	LOOKUP_ANY_CANON,   /* AF_UNSPEC, AI_CANONNAME */
	LOOKUP_PTR4,	    /* iou_dns_reverse(192.0.2.1) */
	LOOKUP_PTR6,	    /* iou_dns_reverse(2001:db8::1) */
	LOOKUP_AAAA_SERVICE /* AF_INET6, AI_CANONNAME, service "443" */
};

/* The answer sent after the fuzz bytes (flags bits 4-5). */
enum follow_up {
	FOLLOW_NXDOMAIN,
	FOLLOW_SERVFAIL,
	FOLLOW_TRUNCATED, /* TC set: c-ares asks again over TCP */
	FOLLOW_REFUSED,	  /* or none, with bit 7 */
};

#define FLAG_QUESTION 0x08
#define FLAG_TCP_FUZZ 0x40
#define FLAG_NO_FOLLOW 0x80

static struct reactor *reactor;
static int udp_fd = -1, tcp_fd = -1;
static char servers[32]; /* "127.0.0.1:PORT" */

/* The input being run. */
static struct {
	const uint8_t *data;
	size_t size;
	uint8_t flags;
} cur;

/*
 * Answer buffers live here rather than on the fibers' stacks (LeakSanitizer
 * does not scan those, and they are too small for 64 KiB): one for UDP,
 * one per TCP connection.
 */
static uint8_t udp_out[2 * (MAX_ANSWER + MAX_QUERY)];
static struct conn {
	bool used;
	int fd;
	uint8_t out[2 * (2 + MAX_ANSWER + MAX_QUERY)];
} conns[MAX_CONNS];

/* The end of @q's question section (one question), or 0 if malformed. */
static size_t question_end(const uint8_t *q, size_t n)
{
	size_t off = 12;

	if (n < 12)
		return 0;
	for (;;) {
		if (off >= n || (q[off] & 0xc0))
			return 0;
		if (q[off] == 0)
			break;
		off += 1u + q[off];
	}
	off += 1 + 4; /* the root label, QTYPE, QCLASS */
	return off <= n ? off : 0;
}

/* The fuzz answer to query @q (question ending at @qend) into @out; its length. */
static size_t fuzz_answer(const uint8_t *q, size_t qend, uint8_t *out)
{
	size_t n = cur.size < MAX_ANSWER ? cur.size : MAX_ANSWER, len;

	if ((cur.flags & FLAG_QUESTION) && n >= 12) {
		memcpy(out, cur.data, 12);
		memcpy(out + 12, q + 12, qend - 12);
		memcpy(out + qend, cur.data + 12, n - 12);
		len = n + qend - 12;
	} else {
		memcpy(out, cur.data, n);
		len = n;
	}
	if (len >= 2)
		memcpy(out, q, 2); /* the query's ID */
	return len;
}

/* The follow-up answer to @q into @out; its length, 0 if none. */
static size_t follow_up(const uint8_t *q, size_t qend, uint8_t *out)
{
	enum follow_up kind = (enum follow_up)((cur.flags >> 4) & 3);
	static const uint8_t rcode[] = { 3, 2, 0, 5 };

	if (kind == FOLLOW_REFUSED && (cur.flags & FLAG_NO_FOLLOW))
		return 0;
	memcpy(out, q, qend);
	out[2] = (uint8_t)(0x80 | (q[2] & 0x01) | (kind == FOLLOW_TRUNCATED ? 0x02 : 0));
	out[3] = (uint8_t)(0x80 | rcode[kind]); /* RA, RCODE */
	memset(out + 4, 0, 8);
	out[5] = 1; /* QDCOUNT */
	return qend;
}

/* The fake server's UDP side: every query gets the fuzz answer and the follow-up. */
static void *udp_main(void *arg)
{
	uint8_t q[MAX_QUERY];

	(void)arg;
	for (;;) {
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		ssize_t n = iou_recvfrom(reactor, udp_fd, q, sizeof(q), 0, (struct sockaddr *)&from,
					 &fromlen);
		size_t qend, len, more;

		if (n == -ECANCELED)
			return NULL;
		if (n < 0 || !(qend = question_end(q, (size_t)n)))
			continue;
		len = fuzz_answer(q, qend, udp_out);
		more = follow_up(q, qend, udp_out + len);
		iou_sendto(reactor, udp_fd, udp_out, len, 0, (struct sockaddr *)&from, fromlen);
		if (more)
			iou_sendto(reactor, udp_fd, udp_out + len, more, 0,
				   (struct sockaddr *)&from, fromlen);
	}
}

/* Read exactly @len bytes; false at the end of the stream or on an error. */
static bool read_exact(int fd, uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = iou_recv(reactor, fd, buf, len, 0);

		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

/* One TCP connection: length-prefixed queries, each answered like UDP ones. */
static void *conn_main(void *arg)
{
	struct conn *c = arg;
	uint8_t q[MAX_QUERY], hdr[2];

	while (read_exact(c->fd, hdr, 2)) {
		size_t qlen = (size_t)hdr[0] << 8 | hdr[1], qend, len = 0, n;

		if (qlen > sizeof(q) || !read_exact(c->fd, q, qlen) ||
		    !(qend = question_end(q, qlen)))
			break;
		if (cur.flags & FLAG_TCP_FUZZ) {
			n = fuzz_answer(q, qend, c->out + 2);
			c->out[0] = (uint8_t)(n >> 8);
			c->out[1] = (uint8_t)n;
			len = 2 + n;
		}
		n = follow_up(q, qend, c->out + len + 2);
		if (n) {
			c->out[len] = (uint8_t)(n >> 8);
			c->out[len + 1] = (uint8_t)n;
			len += 2 + n;
		}
		if (len && iou_write_all(reactor, c->fd, c->out, len, NULL) < 0)
			break;
	}
	iou_close(reactor, c->fd);
	c->used = false;
	return NULL;
}

static void *accept_main(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = iou_accept(reactor, tcp_fd, NULL, NULL, SOCK_CLOEXEC);
		struct conn *c = NULL;
		struct fiber *f;

		if (fd == -ECANCELED)
			return NULL;
		if (fd < 0)
			continue;
		for (int i = 0; i < MAX_CONNS && !c; i++)
			if (!conns[i].used)
				c = &conns[i];
		if (!c) {
			iou_close(reactor, fd);
			continue;
		}
		c->used = true;
		c->fd = fd;
		if (fiber_spawn(reactor, conn_main, c, &f) < 0) {
			c->used = false;
			iou_close(reactor, fd);
			continue;
		}
		fiber_detach(f);
	}
}

/* The fake server: UDP and TCP on one port of 127.0.0.1, and its fibers. */
static void setup(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct fiber *f;
	int one = 1;

	signal(SIGPIPE, SIG_IGN);
	reactor = reactor_get();
	FUZZ_CHECK(reactor, "no reactor");
	/* UDP's port, then TCP on the same one (retried if that is taken). */
	for (int tries = 0; tcp_fd < 0; tries++) {
		FUZZ_CHECK(tries < 100, "no port free for both UDP and TCP");
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin.sin_port = 0;
		udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		FUZZ_CHECK(udp_fd >= 0, "socket: %m");
		FUZZ_CHECK(bind(udp_fd, (struct sockaddr *)&sin, sizeof(sin)) == 0, "bind: %m");
		FUZZ_CHECK(getsockname(udp_fd, (struct sockaddr *)&sin, &len) == 0,
			   "getsockname: %m");
		tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		FUZZ_CHECK(tcp_fd >= 0, "socket: %m");
		setsockopt(tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(tcp_fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(tcp_fd, 16)) {
			close(tcp_fd);
			close(udp_fd);
			tcp_fd = udp_fd = -1;
		}
	}
	snprintf(servers, sizeof(servers), "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
	FUZZ_CHECK(fiber_spawn(reactor, udp_main, NULL, &f) == 0, "fiber_spawn");
	fiber_detach(f);
	FUZZ_CHECK(fiber_spawn(reactor, accept_main, NULL, &f) == 0, "fiber_spawn");
	fiber_detach(f);
}

/* A lookup's result: success, or an error that is named and not a stall. */
static void check_result(int ret)
{
	const char *name;

	if (ret == 0)
		return;
	FUZZ_CHECK(ret < 0, "lookup returned %d", ret);
	FUZZ_CHECK(ret != -ETIMEDOUT, "lookup stalled until the deadline");
	name = iou_strerror(ret);
	FUZZ_CHECK(name && strncmp(name, "Unknown error", 13) != 0, "unnamed error %d", ret);
}

/* Every entry of a forward answer well formed. */
static void check_list(const struct addrinfo *list, int family, bool canon)
{
	FUZZ_CHECK(list, "success without addresses");
	for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
		FUZZ_CHECK(ai->ai_family == AF_INET || ai->ai_family == AF_INET6, "family %d",
			   ai->ai_family);
		FUZZ_CHECK(family == AF_UNSPEC || ai->ai_family == family, "family %d, asked %d",
			   ai->ai_family, family);
		FUZZ_CHECK(ai->ai_addr && ai->ai_addr->sa_family == ai->ai_family,
			   "address family");
		FUZZ_CHECK(ai->ai_addrlen == (ai->ai_family == AF_INET ?
						      sizeof(struct sockaddr_in) :
						      sizeof(struct sockaddr_in6)),
			   "address length %u", (unsigned)ai->ai_addrlen);
		FUZZ_CHECK(ai->ai_socktype == SOCK_STREAM, "socket type %d", ai->ai_socktype);
		FUZZ_CHECK(ai == list || !ai->ai_canonname,
			   "a canonical name past the first entry");
	}
	if (canon) {
		FUZZ_CHECK(list->ai_canonname, "no canonical name");
		FUZZ_CHECK(strlen(list->ai_canonname) < 1024, "canonical name of %zu bytes",
			   strlen(list->ai_canonname));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int families[8] = { AF_INET,   AF_INET6, AF_UNSPEC, AF_INET,
					 AF_UNSPEC, 0,	      0,	 AF_INET6 };
	enum lookup what;
	struct iou_dns_options o;
	int64_t old;
	int ret;

	if (!reactor)
		setup();
	if (size < 1)
		return 0;
	cur.flags = data[0];
	cur.data = data + 1;
	cur.size = size - 1;
	what = (enum lookup)(cur.flags & 7);

	iou_dns_options_init(&o);
	o.servers = servers;
	o.search = false;
	o.hosts_file = false;
	o.timeout_ms = TIMEOUT_MS;
	o.tries = 1;
	ret = iou_dns_configure(reactor, &o);
	FUZZ_CHECK(ret == 0, "iou_dns_configure: %s", iou_strerror(ret));

	old = fiber_set_deadline(reactor, iou_deadline_after(STALL));
	if (what == LOOKUP_PTR4 || what == LOOKUP_PTR6) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
		char name[NI_MAXHOST];

		inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr);
		inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr);
		memset(name, 0x55, sizeof(name));
		if (what == LOOKUP_PTR4)
			ret = iou_dns_reverse(reactor, (struct sockaddr *)&sin, sizeof(sin), name,
					      sizeof(name));
		else
			ret = iou_dns_reverse(reactor, (struct sockaddr *)&sin6, sizeof(sin6), name,
					      sizeof(name));
		check_result(ret);
		if (ret == 0)
			FUZZ_CHECK(strnlen(name, sizeof(name)) < sizeof(name),
				   "name not terminated");
	} else {
		bool canon = what == LOOKUP_A_CANON || what == LOOKUP_ANY_CANON ||
			     what == LOOKUP_AAAA_SERVICE;
		struct addrinfo hints = {
			.ai_family = families[what],
			.ai_socktype = SOCK_STREAM,
			.ai_flags = canon ? AI_CANONNAME : 0,
		};
		struct addrinfo *res = NULL;

		ret = iou_dns_lookup(reactor, NAME, what == LOOKUP_AAAA_SERVICE ? "443" : NULL,
				     &hints, &res);
		check_result(ret);
		if (ret == 0) {
			check_list(res, hints.ai_family, canon);
			iou_dns_freeaddrinfo(res);
		}
	}
	fiber_set_deadline(reactor, old);
	/* Its sockets close now; the TCP fibers see the end of their streams. */
	iou_dns_close(reactor);
	return 0;
}
