/* SPDX-License-Identifier: MIT */
/*
 * DNS tests (libioucontext-dns) against a real server: the program starts
 * its own dnsmasq on a free loopback port, with records given on the
 * command line and in a hosts file of its own (skipped, exit 77, if
 * /usr/sbin/dnsmasq is missing), and kills it at exit.  Covered: A, AAAA
 * and both; numeric names; AI_CANONNAME through a CNAME chain; the service
 * and socket type put in every address; PTR lookups for IPv4 and IPv6 and
 * the exact size of the name buffer; NXDOMAIN, NODATA and REFUSED as their
 * IOU_EDNS_* codes with iou_strerror() text; 60 A records for one name,
 * which only TCP can carry; 10,000 concurrent lookups from as many fibers
 * (500 under valgrind) all answered right while a 1 ms ticker fiber
 * measures how late it runs; a server that never answers, bounded by the
 * fiber's deadline (-ETIMEDOUT) and by the resolver's own timeout
 * (IOU_EDNS_TIMEOUT); servers of the test's own that answer every rcode,
 * garbage, short packets, mismatched ids, replies from another port,
 * truncated records, compression loops and TC without TCP, each ending in
 * the documented code and never in a crash or a hang; fiber_cancel() mid
 * lookup and before it, and the resolver replaced while c-ares still holds
 * abandoned queries; iou_dns_close() and reactor_destroy() (and thread
 * exit) with lookups in flight and queued; the resolver closed and made
 * again in one fiber turn, its timeouts still kept; lookups outside any
 * fiber, including ones that time out, which must leave nothing running
 * that writes to the caller's stack; bad arguments, -EPERM from another
 * thread, malformed server lists and ports; and descriptors back to their
 * baseline once the resolver is closed.  Findings that do not stop a test
 * are recorded (EXPECT_*) and reported at its end, so one does not hide
 * the next.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

#include <ioucontext/dns.h>
#include <ioucontext/ioucontext.h>

#include "harness.h"

/* How long a test may wait for something that should happen at once. */
#define GUARD (10 * IOU_SEC * test_slowdown())

#ifndef DNSMASQ
#define DNSMASQ "/usr/sbin/dnsmasq"
#endif
/* Names h0.test ... in the hosts file, at 10.2.(i / 256).(i % 256). */
#define HOST_NAMES 1000
/* A records of many.test: 10.0.1.1 ... 10.0.1.60. */
#define MANY_RECORDS 60
/* Concurrent lookups of the storm test (fewer under valgrind). */
#define STORM_LOOKUPS 10000
#define STORM_LOOKUPS_VALGRIND 500
/* Lookups that exceed IOU_DNS_MAX_INFLIGHT, so that some wait their turn. */
#define PENDING_LOOKUPS (IOU_DNS_MAX_INFLIGHT + 44)

/* ---- helpers ------------------------------------------------------------ */

static double ms_since(int64_t t0)
{
	return (double)(iou_now() - t0) / (double)IOU_MSEC;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Name of an error code for the '#' lines. */
static const char *code_name(int err)
{
	switch (err) {
	case 0:
		return "0";
	case IOU_EDNS_NONAME:
		return "IOU_EDNS_NONAME";
	case IOU_EDNS_NODATA:
		return "IOU_EDNS_NODATA";
	case IOU_EDNS_SERVFAIL:
		return "IOU_EDNS_SERVFAIL";
	case IOU_EDNS_REFUSED:
		return "IOU_EDNS_REFUSED";
	case IOU_EDNS_TIMEOUT:
		return "IOU_EDNS_TIMEOUT";
	case IOU_EDNS_BADRESP:
		return "IOU_EDNS_BADRESP";
	case IOU_EDNS_CANCELLED:
		return "IOU_EDNS_CANCELLED";
	case IOU_EDNS_FORMERR:
		return "IOU_EDNS_FORMERR";
	case IOU_EDNS_NOTIMP:
		return "IOU_EDNS_NOTIMP";
	case IOU_EDNS_BADNAME:
		return "IOU_EDNS_BADNAME";
	case IOU_EDNS_CONNREFUSED:
		return "IOU_EDNS_CONNREFUSED";
	case IOU_EDNS_BADSERVICE:
		return "IOU_EDNS_BADSERVICE";
	case IOU_EDNS_CONFIG:
		return "IOU_EDNS_CONFIG";
	case -ETIMEDOUT:
		return "-ETIMEDOUT";
	case -ECANCELED:
		return "-ECANCELED";
	default:
		return iou_strerror(err);
	}
}

/*
 * Record a failure and go on (reported at the end of the test through the
 * harness's fiber-failure count), so that one finding does not hide the
 * next.
 */
#define EXPECT_EQ(a, b)                                                                            \
	do {                                                                                       \
		int a_ = (a), b_ = (b);                                                            \
		if (a_ != b_) {                                                                    \
			fprintf(stderr, "  %s:%d: EXPECT(%s == %s): %d (%s) vs %d (%s)\n",         \
				__FILE__, __LINE__, #a, #b, a_, code_name(a_), b_, code_name(b_)); \
			test_fiber_failures++;                                                     \
		}                                                                                  \
	} while (0)

#define EXPECT_TRUE(c)                                                                           \
	do {                                                                                     \
		if (!(c)) {                                                                      \
			fprintf(stderr, "  %s:%d: EXPECT_TRUE(%s) failed\n", __FILE__, __LINE__, \
				#c);                                                             \
			test_fiber_failures++;                                                   \
		}                                                                                \
	} while (0)

/* The address (and port) of @ai as text. */
static const char *ai_text(const struct addrinfo *ai, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";
	int port = -1;

	if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *s = (const void *)ai->ai_addr;

		inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
		port = ntohs(s->sin_port);
	} else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *s = (const void *)ai->ai_addr;

		inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
		port = ntohs(s->sin6_port);
	}
	snprintf(buf, len, "%s port %d", a, port);
	return buf;
}

/* Whether @ai holds the address @text (IPv4 or IPv6 notation). */
static bool ai_is(const struct addrinfo *ai, const char *text)
{
	unsigned char want[16];

	if (!ai->ai_addr)
		return false;
	if (ai->ai_family == AF_INET && ai->ai_addr->sa_family == AF_INET &&
	    ai->ai_addrlen == sizeof(struct sockaddr_in) && inet_pton(AF_INET, text, want) == 1)
		return !memcmp(&((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr,
			       want, 4);
	if (ai->ai_family == AF_INET6 && ai->ai_addr->sa_family == AF_INET6 &&
	    ai->ai_addrlen == sizeof(struct sockaddr_in6) && inet_pton(AF_INET6, text, want) == 1)
		return !memcmp(&((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr,
			       want, 16);
	return false;
}

static int ai_port(const struct addrinfo *ai)
{
	if (ai->ai_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_port);
	return ntohs(((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_port);
}

static int ai_count(const struct addrinfo *ai)
{
	int n = 0;

	for (; ai; ai = ai->ai_next)
		n++;
	return n;
}

/*
 * Check that @list holds exactly the addresses @want (each at least once,
 * nothing else), @per_addr entries for each when @per_addr > 0.
 */
static int expect_addrs(const struct addrinfo *list, const char *const *want, size_t nwant,
			int per_addr)
{
	char buf[80];

	for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
		size_t i;

		for (i = 0; i < nwant && !ai_is(ai, want[i]); i++)
			;
		if (i == nwant)
			TEST_FAIL_AT("unexpected address %s", ai_text(ai, buf, sizeof(buf)));
	}
	for (size_t i = 0; i < nwant; i++) {
		int seen = 0;

		for (const struct addrinfo *ai = list; ai; ai = ai->ai_next)
			seen += ai_is(ai, want[i]);
		if (!seen || (per_addr > 0 && seen != per_addr))
			TEST_FAIL_AT("address %s seen %d times", want[i], seen);
	}
	return 0;
}

/* iou_dns_lookup() with the common hints. */
static int lookup(struct reactor *r, const char *name, const char *service, int family,
		  int socktype, int flags, struct addrinfo **out)
{
	struct addrinfo hints;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = socktype;
	hints.ai_flags = flags;
	*out = NULL;
	return iou_dns_lookup(r, name, service, &hints, out);
}

/* iou_dns_reverse() of the numeric address @text. */
static int reverse(struct reactor *r, const char *text, char *name, size_t len)
{
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;

	memset(&s4, 0, sizeof(s4));
	memset(&s6, 0, sizeof(s6));
	if (inet_pton(AF_INET, text, &s4.sin_addr) == 1) {
		s4.sin_family = AF_INET;
		return iou_dns_reverse(r, (struct sockaddr *)&s4, sizeof(s4), name, len);
	}
	if (inet_pton(AF_INET6, text, &s6.sin6_addr) == 1) {
		s6.sin6_family = AF_INET6;
		return iou_dns_reverse(r, (struct sockaddr *)&s6, sizeof(s6), name, len);
	}
	return -EINVAL;
}

/* Point @r's resolver at 127.0.0.1:@port, search off. */
static int use_server(struct reactor *r, int port, int timeout_ms, int tries)
{
	struct iou_dns_options o;
	char servers[32];

	iou_dns_options_init(&o);
	/* On the stack on purpose: the resolver must not keep the pointer. */
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", port);
	o.servers = servers;
	o.search = false;
	o.timeout_ms = timeout_ms;
	o.tries = tries;
	return iou_dns_configure(r, &o);
}

/* A UDP socket on 127.0.0.1, port 0 (plain system calls); its port in *@port. */
static int udp_socket(int *port)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(fd, (struct sockaddr *)&a, &alen)) {
		int err = -errno;

		close(fd);
		return err;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

/* Datagrams waiting on @fd (read and dropped, without blocking). */
static int drain(int fd)
{
	unsigned char buf[512];
	int n = 0;

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
		n++;
	return n;
}

/* Drive the reactor from outside a fiber until *@count reaches @want or @limit. */
static void wait_count(struct reactor *r, const int *count, int want, int64_t limit)
{
	while (*count < want && iou_now() < limit)
		fiber_sleep(r, IOU_MSEC);
}

/*
 * Drive the reactor until @want lookups have started (valgrind is slow to
 * run them all), then a little longer, so that they wait in c-ares and in
 * the queue, their queries sent.
 */
static void settle(struct reactor *r, const int *started, int want)
{
	wait_count(r, started, want, iou_deadline_after(GUARD));
	fiber_sleep(r, 20 * IOU_MSEC);
}

/* ---- DNS messages -------------------------------------------------------- */

/* A query for @name (dotted, no trailing dot) of @qtype; its length or 0. */
static size_t dns_query(unsigned char *m, size_t cap, uint16_t id, const char *name, uint16_t qtype)
{
	size_t i = 12;

	if (cap < 12 + strlen(name) + 2 + 4)
		return 0;
	memset(m, 0, 12);
	m[0] = (unsigned char)(id >> 8);
	m[1] = (unsigned char)id;
	m[2] = 0x01; /* RD */
	m[5] = 1;    /* QDCOUNT */
	while (*name) {
		size_t l = strcspn(name, ".");

		if (l == 0 || l > 63)
			return 0;
		m[i++] = (unsigned char)l;
		memcpy(m + i, name, l);
		i += l;
		name += l;
		if (*name == '.')
			name++;
	}
	m[i++] = 0;
	m[i++] = (unsigned char)(qtype >> 8);
	m[i++] = (unsigned char)qtype;
	m[i++] = 0;
	m[i++] = 1; /* IN */
	return i;
}

/* End of the header and single question of @m, or 0 if it is not one. */
static size_t dns_question_end(const unsigned char *m, size_t len)
{
	size_t i = 12;

	if (len < 12 || m[4] != 0 || m[5] != 1)
		return 0;
	while (i < len && m[i]) {
		if (m[i] & 0xc0)
			return 0;
		i += 1 + m[i];
	}
	if (i >= len || i + 5 > len)
		return 0;
	return i + 5;
}

/* ---- the dnsmasq fixture ------------------------------------------------- */

static struct {
	pid_t pid;	/* dnsmasq, or 0 */
	int port;	/* where it listens */
	bool tried;	/* started once (successfully or not) */
	int status;	/* 0, or 1 if it could not be started */
	char dir[64];	/* mkdtemp directory with the hosts file and the log */
	char hosts[96]; /* the hosts file */
	char log[96];	/* dnsmasq's stderr */
} dm;

/* Remove the directory and its files (dnsmasq keeps what it has read). */
static void dnsmasq_tidy(void)
{
	if (dm.dir[0]) {
		unlink(dm.hosts);
		unlink(dm.log);
		rmdir(dm.dir);
		dm.dir[0] = 0;
	}
}

static void dnsmasq_stop(void)
{
	if (dm.pid > 0) {
		kill(dm.pid, SIGTERM);
		waitpid(dm.pid, NULL, 0);
		dm.pid = 0;
	}
	dnsmasq_tidy();
}

static void dnsmasq_print_log(void)
{
	char line[256];
	FILE *f = fopen(dm.log, "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "  dnsmasq: %s", line);
	fclose(f);
}

/* A port free for both UDP and TCP on 127.0.0.1 right now, or -errno. */
static int free_port(void)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		struct sockaddr_in a;
		int port, u, t, ok;

		u = udp_socket(&port);
		if (u < 0)
			return u;
		t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		memset(&a, 0, sizeof(a));
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a.sin_port = htons((uint16_t)port);
		ok = t >= 0 && bind(t, (struct sockaddr *)&a, sizeof(a)) == 0;
		if (t >= 0)
			close(t);
		close(u);
		if (ok)
			return port;
	}
	return -EADDRINUSE;
}

/*
 * Whether 127.0.0.1:@port answers A for the last name of the hosts file
 * within @ms (plain sockets): dnsmasq is up and has read the file.
 */
static bool dns_probe(int port, int ms)
{
	unsigned char q[64], a[512];
	struct sockaddr_in to;
	struct pollfd p;
	bool ok = false;
	char name[32];
	size_t qlen;

	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return false;
	snprintf(name, sizeof(name), "h%d.test", HOST_NAMES - 1);
	qlen = dns_query(q, sizeof(q), 0x4242, name, 1);
	memset(&to, 0, sizeof(to));
	to.sin_family = AF_INET;
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	to.sin_port = htons((uint16_t)port);
	p.fd = fd;
	p.events = POLLIN;
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0 &&
	    send(fd, q, qlen, 0) == (ssize_t)qlen && poll(&p, 1, ms) == 1) {
		ssize_t n = recv(fd, a, sizeof(a), 0);

		/* Same id, a response, NOERROR, one answer or more. */
		ok = n >= 12 && a[0] == 0x42 && a[1] == 0x42 && (a[2] & 0x80) &&
		     (a[3] & 0x0f) == 0 && (a[6] || a[7]);
	}
	close(fd);
	return ok;
}

static int dnsmasq_write_hosts(void)
{
	FILE *f = fopen(dm.hosts, "w");

	if (!f)
		return -errno;
	for (int i = 0; i < HOST_NAMES; i++)
		fprintf(f, "10.2.%d.%d h%d.test\n", i / 256, i % 256, i);
	if (fclose(f))
		return -errno;
	/* dnsmasq started as root reads it as "nobody". */
	chmod(dm.hosts, 0644);
	return 0;
}

/* Without dnsmasq there is nothing to test against: skip the program. */
__attribute__((constructor)) static void require_dnsmasq(void)
{
	if (access(DNSMASQ, X_OK)) {
		printf("1..0 # SKIP %s is missing (Debian package dnsmasq-base)\n", DNSMASQ);
		exit(TEST_SKIP);
	}
}

/* Fork and exec dnsmasq on @port; its pid, or -errno. */
static pid_t dnsmasq_spawn(int port)
{
	static char args[MANY_RECORDS + 32][128];
	char *argv[MANY_RECORDS + 33];
	static const char *const fixed[] = {
		DNSMASQ,
		"-k",
		"--listen-address=127.0.0.1",
		"--bind-interfaces",
		"--no-resolv",
		"--no-hosts",
		"--conf-file=/dev/null",
		"--pid-file=",
		"--log-facility=-",
		/* Authoritative for these: NXDOMAIN and NODATA, not REFUSED. */
		"--local=/test/",
		"--local=/in-addr.arpa/",
		"--local=/ip6.arpa/",
		/* Truncate UDP answers at 512 bytes even for EDNS clients. */
		"--edns-packet-max=512",
		"--host-record=www.test,192.0.2.1,2001:db8::1",
		"--host-record=v4.test,192.0.2.2",
		"--host-record=v6.test,2001:db8::2",
		"--cname=alias.test,mid.test",
		"--cname=mid.test,www.test",
		"--ptr-record=4.3.2.1.in-addr.arpa,ptr4.test",
	};
	struct passwd *pw;
	struct group *gr;
	size_t n = 0;
	pid_t parent = getpid(), pid;
	int log, null;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		snprintf(args[n++], sizeof(args[0]), "%s", fixed[i]);
	snprintf(args[n++], sizeof(args[0]), "--port=%d", port);
	/*
	 * Stay who we are: a change of credentials (root dnsmasq becomes
	 * "nobody") would clear the parent-death signal set below.
	 */
	pw = getpwuid(geteuid());
	gr = getgrgid(getegid());
	if (pw)
		snprintf(args[n++], sizeof(args[0]), "--user=%s", pw->pw_name);
	if (gr)
		snprintf(args[n++], sizeof(args[0]), "--group=%s", gr->gr_name);
	snprintf(args[n++], sizeof(args[0]), "--addn-hosts=%s", dm.hosts);
	/* Repeated --host-record for one name gives one A record each. */
	for (int i = 1; i <= MANY_RECORDS; i++)
		snprintf(args[n++], sizeof(args[0]), "--host-record=many.test,10.0.1.%d", i);
	for (size_t i = 0; i < n; i++)
		argv[i] = args[i];
	argv[n] = NULL;

	log = open(dm.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (log < 0 || null < 0) {
		int err = -errno;

		if (log >= 0)
			close(log);
		return err;
	}
	pid = fork();
	if (pid == 0) {
		cpu_set_t all;

		/* Die with the test, even if it crashes before its atexit. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		/* Not on the CPU the test's reactor may be pinned to. */
		CPU_ZERO(&all);
		for (int c = 0; c < CPU_SETSIZE; c++)
			CPU_SET(c, &all);
		sched_setaffinity(0, sizeof(all), &all);
		dup2(null, 0);
		dup2(log, 1);
		dup2(log, 2);
		execv(DNSMASQ, argv);
		_exit(127);
	}
	close(log);
	close(null);
	return pid < 0 ? -errno : pid;
}

/*
 * Start dnsmasq once for the whole program.  Return: 0, or 1 if it could
 * not be started.
 */
static int dnsmasq_start(void)
{
	if (dm.tried)
		return dm.status;
	dm.tried = true;
	dm.status = 1;
	snprintf(dm.dir, sizeof(dm.dir), "/tmp/iou-test-dns.XXXXXX");
	if (!mkdtemp(dm.dir)) {
		perror("mkdtemp");
		dm.dir[0] = 0;
		return 1;
	}
	chmod(dm.dir, 0755);
	snprintf(dm.hosts, sizeof(dm.hosts), "%s/hosts", dm.dir);
	snprintf(dm.log, sizeof(dm.log), "%s/dnsmasq.log", dm.dir);
	atexit(dnsmasq_stop);
	if (dnsmasq_write_hosts()) {
		perror("hosts file");
		return 1;
	}
	for (int attempt = 0; attempt < 5; attempt++) {
		int64_t t0 = iou_now(), limit = iou_deadline_after(GUARD);
		int port = free_port(), status;
		pid_t pid;

		if (port < 0)
			continue;
		pid = dnsmasq_spawn(port);
		if (pid < 0) {
			fprintf(stderr, "  cannot start dnsmasq: %s\n", strerror(-pid));
			return 1;
		}
		dm.pid = pid;
		while (iou_now() < limit) {
			if (waitpid(pid, &status, WNOHANG) == pid) {
				/* Most likely the port was taken meanwhile: another one. */
				fprintf(stderr, "  dnsmasq exited (status 0x%x) on port %d\n",
					status, port);
				dnsmasq_print_log();
				dm.pid = 0;
				break;
			}
			if (dns_probe(port, 50)) {
				dm.port = port;
				dm.status = 0;
				printf("# dnsmasq (pid %d) answering on 127.0.0.1:%d after %.1f ms\n",
				       (int)pid, port, ms_since(t0));
				/* Nothing left behind, even if the test crashes. */
				dnsmasq_tidy();
				return 0;
			}
		}
		if (dm.pid) {
			fprintf(stderr, "  dnsmasq does not answer on port %d\n", port);
			dnsmasq_print_log();
			dnsmasq_stop();
			return 1;
		}
	}
	return 1;
}

/* Start dnsmasq if needed and point @r's resolver at it. */
#define USE_DNSMASQ(r)                                        \
	do {                                                  \
		int rc_ = dnsmasq_start();                    \
		if (rc_)                                      \
			return rc_;                           \
		ASSERT_EQ(use_server((r), dm.port, 0, 0), 0); \
	} while (0)

/*
 * The thread's reactor with no resolver: each test starts afresh, whatever
 * the one before left in flight.
 */
static struct reactor *fresh_reactor(void)
{
	struct reactor *r = reactor_get();

	if (r) {
		iou_dns_close(r);
		/* Lookups a failed test left behind end now. */
		fiber_yield(r);
		fiber_yield(r);
	}
	return r;
}

/* ---- running a test body in a fiber ------------------------------------ */

typedef int test_body(struct reactor *r);

struct in_fiber {
	test_body *fn;
	int rc;
};

static void *in_fiber_main(void *arg)
{
	struct in_fiber *f = arg;

	f->rc = f->fn(reactor_get());
	return NULL;
}

static int run_in_fiber(test_body *fn)
{
	struct reactor *r = fresh_reactor();
	struct in_fiber f = { fn, -1 };
	struct fiber *h;

	ASSERT_TRUE(r != NULL);
	ASSERT_EQ(fiber_spawn(r, in_fiber_main, &f, &h), 0);
	ASSERT_EQ(fiber_join(h, NULL), 0);
	if (f.rc)
		return f.rc;
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* ---- arguments and configuration ----------------------------------------- */

struct foreign {
	struct reactor *r;
	int lookup, reverse, configure, close;
};

static int foreign_main(void *arg)
{
	struct foreign *f = arg;
	struct addrinfo *ai = NULL;
	struct iou_dns_options o;
	struct sockaddr_in s4;
	char name[64];

	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	s4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	iou_dns_options_init(&o);
	o.servers = "127.0.0.1";
	f->lookup = iou_dns_lookup(f->r, "www.test", NULL, NULL, &ai);
	iou_dns_freeaddrinfo(ai);
	f->reverse = iou_dns_reverse(f->r, (struct sockaddr *)&s4, sizeof(s4), name, sizeof(name));
	f->configure = iou_dns_configure(f->r, &o);
	f->close = iou_dns_close(f->r);
	return 0;
}

static int test_bad_arguments(void)
{
	struct reactor *r = fresh_reactor();
	struct addrinfo *ai = NULL;
	struct iou_dns_options o;
	struct sockaddr_un un;
	struct sockaddr_in s4;
	struct foreign fo = { 0 };
	char name[NI_MAXHOST];
	thrd_t t;
	int port, silent;
	static const char *const malformed[] = {
		"not-an-address", "127.0.0.1,bogus", "[::1",
		"[::1]:",	  "127.0.0.1:99999", "300.1.2.3",
	};

	ASSERT_TRUE(r != NULL);
	silent = udp_socket(&port);
	ASSERT_GE(silent, 0);
	ASSERT_EQ(use_server(r, port, 100, 1), 0);

	ASSERT_EQ(iou_dns_lookup(r, NULL, NULL, NULL, &ai), -EINVAL);
	ASSERT_EQ(iou_dns_lookup(r, "www.test", NULL, NULL, NULL), -EINVAL);
	ASSERT_EQ(iou_dns_lookup(NULL, "www.test", NULL, NULL, &ai), -EINVAL);
	ASSERT_PTR_EQ(ai, NULL);
	iou_dns_freeaddrinfo(NULL);
	/* A family that is neither AF_UNSPEC, AF_INET nor AF_INET6: no query. */
	ASSERT_EQ(lookup(r, "www.test", NULL, AF_UNIX, SOCK_STREAM, 0, &ai), -EAFNOSUPPORT);
	ASSERT_PTR_EQ(ai, NULL);
	ASSERT_EQ(lookup(r, "127.0.0.1", NULL, AF_UNIX, SOCK_STREAM, 0, &ai), -EAFNOSUPPORT);
	ASSERT_PTR_EQ(ai, NULL);

	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	s4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	strcpy(un.sun_path, "/tmp/nothing");
	ASSERT_EQ(iou_dns_reverse(r, (struct sockaddr *)&un, sizeof(un), name, sizeof(name)),
		  -EAFNOSUPPORT);
	ASSERT_EQ(iou_dns_reverse(r, (struct sockaddr *)&s4, sizeof(s4) - 1, name, sizeof(name)),
		  -EINVAL);
	ASSERT_EQ(iou_dns_reverse(r, NULL, sizeof(s4), name, sizeof(name)), -EINVAL);
	ASSERT_EQ(iou_dns_reverse(r, (struct sockaddr *)&s4, sizeof(s4), NULL, sizeof(name)),
		  -EINVAL);
	ASSERT_EQ(iou_dns_reverse(NULL, (struct sockaddr *)&s4, sizeof(s4), name, sizeof(name)),
		  -EINVAL);

	iou_dns_options_init(&o);
	ASSERT_TRUE(o.servers == NULL);
	ASSERT_TRUE(o.search);
	ASSERT_EQ(o.timeout_ms, 0);
	ASSERT_EQ(o.tries, 0);
	ASSERT_EQ(iou_dns_configure(NULL, &o), -EINVAL);
	ASSERT_EQ(iou_dns_configure(r, NULL), -EINVAL);
	ASSERT_EQ(iou_dns_close(NULL), -EINVAL);
	o.search = false;
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		int ret;

		o.servers = malformed[i];
		ret = iou_dns_configure(r, &o);
		if (ret != IOU_EDNS_CONFIG) {
			fprintf(stderr, "  servers \"%s\": %d (%s), want IOU_EDNS_CONFIG\n",
				malformed[i], ret, code_name(ret));
			test_fiber_failures++;
		}
	}
	/* A good list after bad ones; IPv6 with and without a port. */
	o.servers = "127.0.0.1:53,[::1]:5353,::1";
	ASSERT_EQ(iou_dns_configure(r, &o), 0);

	/* Another thread may not use this reactor's resolver. */
	fo.r = r;
	ASSERT_EQ(thrd_create(&t, foreign_main, &fo), thrd_success);
	ASSERT_EQ(thrd_join(t, NULL), thrd_success);
	ASSERT_EQ(fo.lookup, -EPERM);
	ASSERT_EQ(fo.reverse, -EPERM);
	ASSERT_EQ(fo.configure, -EPERM);
	ASSERT_EQ(fo.close, -EPERM);

	ASSERT_EQ(iou_dns_close(r), 0);
	ASSERT_EQ(iou_dns_close(r), 0);
	close(silent);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static int test_strerror(void)
{
	static const int codes[] = {
		IOU_EDNS_NONAME,  IOU_EDNS_NODATA,  IOU_EDNS_SERVFAIL,	  IOU_EDNS_REFUSED,
		IOU_EDNS_TIMEOUT, IOU_EDNS_BADRESP, IOU_EDNS_CANCELLED,	  IOU_EDNS_FORMERR,
		IOU_EDNS_NOTIMP,  IOU_EDNS_BADNAME, IOU_EDNS_CONNREFUSED, IOU_EDNS_BADSERVICE,
		IOU_EDNS_CONFIG,
	};
	size_t n = sizeof(codes) / sizeof(codes[0]);

	for (size_t i = 0; i < n; i++) {
		const char *s = iou_strerror(codes[i]);

		ASSERT_TRUE(IOU_IS_EDNS(codes[i]));
		ASSERT_TRUE(s && *s);
		if (!strncmp(s, "Unknown error", 13))
			TEST_FAIL_AT("iou_strerror(%d) = \"%s\"", codes[i], s);
		for (size_t j = 0; j < i; j++)
			if (!strcmp(s, iou_strerror(codes[j])))
				TEST_FAIL_AT("%d and %d share \"%s\"", codes[i], codes[j], s);
	}
	ASSERT_TRUE(!IOU_IS_EDNS(0) && !IOU_IS_EDNS(-ETIMEDOUT) && !IOU_IS_EDNS(-11001));
	ASSERT_TRUE(IOU_IS_EDNS(-10999) && !IOU_IS_EDNS(-10000));
	ASSERT_TRUE(!strncmp(iou_strerror(-10999), "Unknown error", 13));
	ASSERT_STREQ(iou_strerror(-ETIMEDOUT), strerror(ETIMEDOUT));
	printf("# iou_strerror(IOU_EDNS_NONAME) = \"%s\"\n", iou_strerror(IOU_EDNS_NONAME));
	return 0;
}

/* ---- answers from dnsmasq ----------------------------------------------- */

static int records_body(struct reactor *r)
{
	static const char *const www[] = { "192.0.2.1", "2001:db8::1" };
	struct addrinfo *ai;

	USE_DNSMASQ(r);

	ASSERT_EQ(lookup(r, "www.test", NULL, AF_INET, SOCK_STREAM, 0, &ai), 0);
	ASSERT_EQ(ai_count(ai), 1);
	ASSERT_EQ(ai->ai_family, AF_INET);
	ASSERT_EQ(ai->ai_socktype, SOCK_STREAM);
	ASSERT_TRUE(ai_is(ai, "192.0.2.1"));
	ASSERT_EQ(ai_port(ai), 0);
	ASSERT_PTR_EQ(ai->ai_canonname, NULL);
	iou_dns_freeaddrinfo(ai);

	ASSERT_EQ(lookup(r, "www.test", NULL, AF_INET6, SOCK_STREAM, 0, &ai), 0);
	ASSERT_EQ(ai_count(ai), 1);
	ASSERT_EQ(ai->ai_family, AF_INET6);
	ASSERT_TRUE(ai_is(ai, "2001:db8::1"));
	iou_dns_freeaddrinfo(ai);

	ASSERT_EQ(lookup(r, "www.test", NULL, AF_UNSPEC, SOCK_STREAM, 0, &ai), 0);
	ASSERT_EQ(ai_count(ai), 2);
	ASSERT_EQ(expect_addrs(ai, www, 2, 1), 0);
	iou_dns_freeaddrinfo(ai);

	/* No hints at all: both families, whatever the socket types. */
	ai = NULL;
	ASSERT_EQ(iou_dns_lookup(r, "www.test", NULL, NULL, &ai), 0);
	ASSERT_EQ(expect_addrs(ai, www, 2, 0), 0);
	iou_dns_freeaddrinfo(ai);

	/* Names are case-insensitive; a trailing dot is allowed. */
	ASSERT_EQ(lookup(r, "WWW.Test", NULL, AF_INET, SOCK_STREAM, 0, &ai), 0);
	ASSERT_EQ(expect_addrs(ai, www, 1, 1), 0);
	iou_dns_freeaddrinfo(ai);
	ASSERT_EQ(lookup(r, "www.test.", NULL, AF_INET, SOCK_STREAM, 0, &ai), 0);
	ASSERT_EQ(expect_addrs(ai, www, 1, 1), 0);
	iou_dns_freeaddrinfo(ai);

	/* Names of the hosts file and single-family names. */
	ASSERT_EQ(lookup(r, "h999.test", NULL, AF_INET, SOCK_STREAM, 0, &ai), 0);
	ASSERT_EQ(ai_count(ai), 1);
	ASSERT_TRUE(ai_is(ai, "10.2.3.231"));
	iou_dns_freeaddrinfo(ai);
	ASSERT_EQ(lookup(r, "v6.test", NULL, AF_UNSPEC, SOCK_STREAM, 0, &ai), 0);
	ASSERT_EQ(ai_count(ai), 1);
	ASSERT_TRUE(ai_is(ai, "2001:db8::2"));
	iou_dns_freeaddrinfo(ai);
	ASSERT_EQ(lookup(r, "v4.test", NULL, AF_UNSPEC, SOCK_STREAM, 0, &ai), 0);
	ASSERT_EQ(ai_count(ai), 1);
	ASSERT_TRUE(ai_is(ai, "192.0.2.2"));
	iou_dns_freeaddrinfo(ai);

	/* Numeric names come back as they are. */
	ASSERT_EQ(lookup(r, "192.0.2.77", "99", AF_UNSPEC, SOCK_DGRAM, 0, &ai), 0);
	ASSERT_EQ(ai_count(ai), 1);
	ASSERT_TRUE(ai_is(ai, "192.0.2.77"));
	ASSERT_EQ(ai_port(ai), 99);
	iou_dns_freeaddrinfo(ai);
	ASSERT_EQ(lookup(r, "2001:db8::77", NULL, AF_INET6, SOCK_STREAM, 0, &ai), 0);
	ASSERT_EQ(ai_count(ai), 1);
	ASSERT_TRUE(ai_is(ai, "2001:db8::77"));
	iou_dns_freeaddrinfo(ai);
	return 0;
}

static int test_records(void)
{
	return run_in_fiber(records_body);
}

static int canonname_body(struct reactor *r)
{
	static const char *const www[] = { "192.0.2.1", "2001:db8::1" };
	struct addrinfo *ai;

	USE_DNSMASQ(r);
	/* alias.test -> mid.test -> www.test */
	ASSERT_EQ(lookup(r, "alias.test", NULL, AF_INET, SOCK_STREAM, AI_CANONNAME, &ai), 0);
	ASSERT_EQ(ai_count(ai), 1);
	ASSERT_TRUE(ai_is(ai, "192.0.2.1"));
	ASSERT_STREQ(ai->ai_canonname, "www.test");
	iou_dns_freeaddrinfo(ai);

	ASSERT_EQ(lookup(r, "alias.test", NULL, AF_UNSPEC, SOCK_STREAM, AI_CANONNAME, &ai), 0);
	ASSERT_EQ(expect_addrs(ai, www, 2, 1), 0);
	ASSERT_STREQ(ai->ai_canonname, "www.test");
	iou_dns_freeaddrinfo(ai);

	ASSERT_EQ(lookup(r, "mid.test", NULL, AF_INET6, SOCK_STREAM, AI_CANONNAME, &ai), 0);
	ASSERT_EQ(ai_count(ai), 1);
	ASSERT_STREQ(ai->ai_canonname, "www.test");
	iou_dns_freeaddrinfo(ai);

	/* Without a CNAME the canonical name is the name itself. */
	ASSERT_EQ(lookup(r, "v4.test", NULL, AF_INET, SOCK_STREAM, AI_CANONNAME, &ai), 0);
	ASSERT_STREQ(ai->ai_canonname, "v4.test");
	iou_dns_freeaddrinfo(ai);

	/* Without AI_CANONNAME: none, as getaddrinfo(3). */
	ASSERT_EQ(lookup(r, "alias.test", NULL, AF_INET, SOCK_STREAM, 0, &ai), 0);
	ASSERT_TRUE(ai_is(ai, "192.0.2.1"));
	for (struct addrinfo *p = ai; p; p = p->ai_next)
		ASSERT_PTR_EQ(p->ai_canonname, NULL);
	iou_dns_freeaddrinfo(ai);
	return 0;
}

static int test_canonname_through_cnames(void)
{
	return run_in_fiber(canonname_body);
}

static int service_body(struct reactor *r)
{
	struct addrinfo *ai;
	struct servent *se;
	int ret;

	USE_DNSMASQ(r);
	ASSERT_EQ(lookup(r, "www.test", "8080", AF_UNSPEC, SOCK_STREAM, 0, &ai), 0);
	ASSERT_EQ(ai_count(ai), 2);
	for (struct addrinfo *p = ai; p; p = p->ai_next) {
		ASSERT_EQ(ai_port(p), 8080);
		ASSERT_EQ(p->ai_socktype, SOCK_STREAM);
		ASSERT_TRUE(p->ai_protocol == 0 || p->ai_protocol == IPPROTO_TCP);
		ASSERT_EQ(p->ai_addrlen, p->ai_family == AF_INET ? sizeof(struct sockaddr_in) :
								   sizeof(struct sockaddr_in6));
	}
	iou_dns_freeaddrinfo(ai);

	ASSERT_EQ(lookup(r, "www.test", "53", AF_INET, SOCK_DGRAM, AI_NUMERICSERV, &ai), 0);
	ASSERT_EQ(ai_count(ai), 1);
	ASSERT_EQ(ai_port(ai), 53);
	ASSERT_EQ(ai->ai_socktype, SOCK_DGRAM);
	ASSERT_TRUE(ai->ai_protocol == 0 || ai->ai_protocol == IPPROTO_UDP);
	iou_dns_freeaddrinfo(ai);

	/* A service name, if this system's services database knows it. */
	se = getservbyname("http", "tcp");
	if (se) {
		ASSERT_EQ(lookup(r, "www.test", "http", AF_INET6, SOCK_STREAM, 0, &ai), 0);
		ASSERT_EQ(ai_count(ai), 1);
		ASSERT_EQ(ai_port(ai), 80);
		iou_dns_freeaddrinfo(ai);
	}
	/* Not a port number: must not be taken modulo 65536. */
	ret = lookup(r, "www.test", "70000", AF_INET, SOCK_STREAM, 0, &ai);
	if (ret == 0)
		fprintf(stderr, "  service \"70000\" gave port %d\n", ai_port(ai));
	EXPECT_EQ(ret, IOU_EDNS_BADSERVICE);
	iou_dns_freeaddrinfo(ai);
	ret = lookup(r, "www.test", "no-such-service-here", AF_INET, SOCK_STREAM, 0, &ai);
	if (ret != IOU_EDNS_BADSERVICE) {
		fprintf(stderr, "  unknown service name: %d (%s), first port %d\n", ret,
			code_name(ret), ai ? ai_port(ai) : -1);
		iou_dns_freeaddrinfo(ai);
		ASSERT_EQ(ret, IOU_EDNS_BADSERVICE);
	}
	return 0;
}

static int test_service_and_socktype(void)
{
	return run_in_fiber(service_body);
}

static int reverse_body(struct reactor *r)
{
	char name[NI_MAXHOST];
	int ret;

	USE_DNSMASQ(r);
	/* An explicit PTR record, and those dnsmasq derives from host records. */
	ASSERT_EQ(reverse(r, "1.2.3.4", name, sizeof(name)), 0);
	ASSERT_STREQ(name, "ptr4.test");
	ASSERT_EQ(reverse(r, "192.0.2.1", name, sizeof(name)), 0);
	ASSERT_STREQ(name, "www.test");
	ASSERT_EQ(reverse(r, "2001:db8::1", name, sizeof(name)), 0);
	ASSERT_STREQ(name, "www.test");
	ASSERT_EQ(reverse(r, "10.2.0.7", name, sizeof(name)), 0);
	ASSERT_STREQ(name, "h7.test");
	ASSERT_EQ(reverse(r, "198.51.100.9", name, sizeof(name)), IOU_EDNS_NONAME);
	ASSERT_EQ(reverse(r, "2001:db8::99", name, sizeof(name)), IOU_EDNS_NONAME);

	/* "www.test" and its NUL take 9 bytes exactly. */
	memset(name, 'x', sizeof(name));
	ASSERT_EQ(reverse(r, "192.0.2.1", name, 9), 0);
	ASSERT_STREQ(name, "www.test");
	memset(name, 'x', sizeof(name));
	ASSERT_EQ(reverse(r, "192.0.2.1", name, 8), -ENOSPC);
	ASSERT_EQ(reverse(r, "192.0.2.1", name, 1), -ENOSPC);
	ret = reverse(r, "192.0.2.1", name, 0);
	ASSERT_TRUE(ret == -ENOSPC || ret == -EINVAL);
	ASSERT_EQ(name[0], 'x'); /* nothing written on failure */
	return 0;
}

static int test_reverse(void)
{
	return run_in_fiber(reverse_body);
}

static int negative_body(struct reactor *r)
{
	struct addrinfo *ai;
	int ret;

	USE_DNSMASQ(r);
	ret = lookup(r, "nx.test", NULL, AF_INET, SOCK_STREAM, 0, &ai);
	ASSERT_EQ(ret, IOU_EDNS_NONAME);
	ASSERT_PTR_EQ(ai, NULL);
	printf("# nx.test: %s \"%s\"\n", code_name(ret), iou_strerror(ret));
	ASSERT_EQ(lookup(r, "nx.test", NULL, AF_UNSPEC, SOCK_STREAM, 0, &ai), IOU_EDNS_NONAME);
	ASSERT_EQ(lookup(r, "deeper.nx.test", NULL, AF_INET6, 0, 0, &ai), IOU_EDNS_NONAME);

	/* The name exists, but has no record of the kind asked. */
	ret = lookup(r, "v4.test", NULL, AF_INET6, SOCK_STREAM, 0, &ai);
	printf("# v4.test AAAA: %s \"%s\"\n", code_name(ret), iou_strerror(ret));
	ASSERT_EQ(ret, IOU_EDNS_NODATA);
	ASSERT_PTR_EQ(ai, NULL);
	ASSERT_EQ(lookup(r, "v6.test", NULL, AF_INET, SOCK_STREAM, 0, &ai), IOU_EDNS_NODATA);

	/* dnsmasq refuses what it is not authoritative for (no upstream). */
	ret = lookup(r, "www.example", NULL, AF_INET, SOCK_STREAM, 0, &ai);
	printf("# www.example (REFUSED): %s\n", code_name(ret));
	EXPECT_EQ(ret, IOU_EDNS_REFUSED);

	/* Not a domain name: a label of 64 bytes. */
	ret = lookup(r, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.test",
		     NULL, AF_INET, SOCK_STREAM, 0, &ai);
	printf("# 64-byte label: %s\n", code_name(ret));
	ASSERT_EQ(ret, IOU_EDNS_BADNAME);

	/* The resolver still works after all that. */
	ASSERT_EQ(lookup(r, "www.test", NULL, AF_INET, SOCK_STREAM, 0, &ai), 0);
	ASSERT_TRUE(ai_is(ai, "192.0.2.1"));
	iou_dns_freeaddrinfo(ai);
	return 0;
}

static int test_nxdomain_nodata_refused(void)
{
	return run_in_fiber(negative_body);
}

static int many_body(struct reactor *r)
{
	char want[MANY_RECORDS][16];
	const char *wantp[MANY_RECORDS];
	struct addrinfo *ai;
	int64_t t0;

	USE_DNSMASQ(r);
	for (int i = 0; i < MANY_RECORDS; i++) {
		snprintf(want[i], sizeof(want[i]), "10.0.1.%d", i + 1);
		wantp[i] = want[i];
	}
	t0 = iou_now();
	ASSERT_EQ(lookup(r, "many.test", "443", AF_INET, SOCK_STREAM, 0, &ai), 0);
	printf("# many.test: %d A records in %.1f ms (UDP answers stop at 512 bytes)\n",
	       ai_count(ai), ms_since(t0));
	ASSERT_EQ(ai_count(ai), MANY_RECORDS);
	ASSERT_EQ(expect_addrs(ai, wantp, MANY_RECORDS, 1), 0);
	for (struct addrinfo *p = ai; p; p = p->ai_next)
		ASSERT_EQ(ai_port(p), 443);
	iou_dns_freeaddrinfo(ai);

	/* Again, on the connection c-ares may have kept. */
	ASSERT_EQ(lookup(r, "many.test", NULL, AF_UNSPEC, SOCK_STREAM, 0, &ai), 0);
	ASSERT_EQ(ai_count(ai), MANY_RECORDS);
	iou_dns_freeaddrinfo(ai);
	return 0;
}

static int test_many_records_over_tcp(void)
{
	return run_in_fiber(many_body);
}

/*
 * Find a line of /etc/hosts with an IPv4 address and a name other than
 * localhost (c-ares 1.18 treats that one specially): its first such name in
 * @name, its address in @addr.  Return: whether there is one.
 */
static bool etc_hosts_entry(char *name, size_t nlen, char *addr, size_t alen)
{
	char line[512];
	bool found = false;
	FILE *f = fopen("/etc/hosts", "r");
	struct in_addr in;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *save, *tok = strtok_r(line, " \t\n", &save);

		if (!tok || *tok == '#' || inet_pton(AF_INET, tok, &in) != 1)
			continue;
		snprintf(addr, alen, "%s", tok);
		while (!found && (tok = strtok_r(NULL, " \t\n", &save)) && *tok != '#') {
			if (strncmp(tok, "localhost", 9) && strlen(tok) < nlen) {
				snprintf(name, nlen, "%s", tok);
				found = true;
			}
		}
	}
	fclose(f);
	return found;
}

static int hosts_body(struct reactor *r)
{
	struct iou_dns_options o;
	struct addrinfo *ai = NULL;
	char servers[32], name[NI_MAXHOST], back[NI_MAXHOST], addr[INET_ADDRSTRLEN];
	int port, silent, ret;

	if (!etc_hosts_entry(name, sizeof(name), addr, sizeof(addr))) {
		printf("# /etc/hosts names no IPv4 host but localhost: skipping\n");
		return TEST_SKIP;
	}
	silent = udp_socket(&port);
	ASSERT_GE(silent, 0);
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", port);
	iou_dns_options_init(&o);
	ASSERT_TRUE(o.hosts_file);
	o.servers = servers;
	o.search = false;
	o.timeout_ms = 100;
	o.tries = 1;

	/* The hosts file answers first: the server hears nothing. */
	ASSERT_EQ(iou_dns_configure(r, &o), 0);
	ASSERT_EQ(lookup(r, name, NULL, AF_INET, SOCK_STREAM, 0, &ai), 0);
	ASSERT_TRUE(ai_is(ai, addr));
	iou_dns_freeaddrinfo(ai);
	ASSERT_EQ(lookup(r, "localhost", NULL, AF_INET, SOCK_STREAM, 0, &ai), 0);
	ASSERT_TRUE(ai_is(ai, "127.0.0.1"));
	iou_dns_freeaddrinfo(ai);
	ASSERT_EQ(reverse(r, addr, back, sizeof(back)), 0);
	ASSERT_EQ(drain(silent), 0);
	printf("# from /etc/hosts: %s is %s, %s is %s\n", name, addr, addr, back);

	/* Without it, the question goes to the (silent) server. */
	o.hosts_file = false;
	ASSERT_EQ(iou_dns_configure(r, &o), 0);
	ret = lookup(r, name, NULL, AF_INET, SOCK_STREAM, 0, &ai);
	iou_dns_freeaddrinfo(ai);
	printf("# %s, hosts_file off, silent server: %s\n", name, code_name(ret));
	EXPECT_EQ(ret, IOU_EDNS_TIMEOUT);
	ASSERT_EQ(drain(silent), 1);
	ASSERT_EQ(iou_dns_close(r), 0);
	close(silent);
	return 0;
}

static int test_hosts_file(void)
{
	return run_in_fiber(hosts_body);
}

static int test_outside_fiber(void)
{
	struct reactor *r = fresh_reactor();
	struct addrinfo *ai;
	char name[NI_MAXHOST];

	ASSERT_TRUE(r != NULL);
	ASSERT_PTR_EQ(fiber_self(r), NULL);
	USE_DNSMASQ(r);
	ASSERT_EQ(lookup(r, "alias.test", "25", AF_UNSPEC, SOCK_STREAM, AI_CANONNAME, &ai), 0);
	ASSERT_EQ(ai_count(ai), 2);
	ASSERT_STREQ(ai->ai_canonname, "www.test");
	ASSERT_EQ(ai_port(ai), 25);
	iou_dns_freeaddrinfo(ai);
	ASSERT_EQ(reverse(r, "2001:db8::1", name, sizeof(name)), 0);
	ASSERT_STREQ(name, "www.test");
	ASSERT_EQ(lookup(r, "nx.test", NULL, AF_INET, 0, 0, &ai), IOU_EDNS_NONAME);
	ASSERT_EQ(lookup(r, "many.test", NULL, AF_INET, SOCK_STREAM, 0, &ai), 0);
	ASSERT_EQ(ai_count(ai), MANY_RECORDS);
	iou_dns_freeaddrinfo(ai);
	return 0;
}

/* ---- a storm of lookups ------------------------------------------------- */

static struct {
	struct reactor *r;
	int n;		    /* lookups started */
	int done;	    /* lookups returned */
	int bad;	    /* wrong answers */
	bool over;	    /* all returned: the ticker stops */
	int64_t max_late;   /* the ticker's worst lateness */
	int64_t max_busy;   /* the most CPU the thread spent in one of its sleeps */
	int64_t ticks;	    /* ticks it made */
	int64_t first_tick; /* when it started */
	int64_t slowest;    /* the longest lookup, its wait for a turn included */
} storm;

static void *storm_lookup(void *arg)
{
	unsigned i = (unsigned)(uintptr_t)arg % HOST_NAMES;
	char name[32], want[16];
	struct addrinfo *ai = NULL;
	int64_t t0;
	int ret;

	snprintf(name, sizeof(name), "h%u.test", i);
	snprintf(want, sizeof(want), "10.2.%u.%u", i / 256, i % 256);
	t0 = iou_now();
	ret = lookup(storm.r, name, NULL, AF_INET, SOCK_STREAM, 0, &ai);
	t0 = iou_now() - t0;
	if (t0 > storm.slowest)
		storm.slowest = t0;
	if (ret || ai_count(ai) != 1 || !ai_is(ai, want)) {
		if (storm.bad++ < 5)
			fprintf(stderr, "  %s: %d (%s), %d addresses\n", name, ret, code_name(ret),
				ai_count(ai));
	}
	iou_dns_freeaddrinfo(ai);
	if (++storm.done == storm.n)
		storm.over = true;
	return NULL;
}

/* The calling thread's CPU time, in nanoseconds. */
static int64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * IOU_SEC + ts.tv_nsec;
}

/*
 * Ticks every millisecond and records how late it wakes, and how much CPU
 * the thread spent on other fibers meanwhile: the part of the lateness the
 * reactor is answerable for, whatever else the machine is running.
 */
static void *storm_ticker(void *arg)
{
	(void)arg;
	storm.first_tick = iou_now();
	while (!storm.over) {
		int64_t t0 = iou_now(), c0 = thread_cpu_ns(), late, busy;

		if (fiber_sleep(storm.r, IOU_MSEC))
			break;
		late = iou_now() - t0 - IOU_MSEC;
		busy = thread_cpu_ns() - c0;
		if (late > storm.max_late)
			storm.max_late = late;
		if (busy > storm.max_busy)
			storm.max_busy = busy;
		storm.ticks++;
	}
	return NULL;
}

static int test_storm(void)
{
	struct reactor *r = fresh_reactor();
	struct fiber_options fo = { .stack_size = 128 * 1024, .name = "lookup" };
	int n = test_max_fibers(RUNNING_ON_VALGRIND ? STORM_LOOKUPS_VALGRIND : STORM_LOOKUPS);
	int64_t t0, bound = 20 * IOU_MSEC * test_slowdown();
	struct fiber *ticker;
	double ms;

	ASSERT_EQ(dnsmasq_start(), 0);
	/*
	 * Bursts of IOU_DNS_MAX_INFLIGHT queries can overflow the server's
	 * socket buffer: retry a lost one after 500 ms, not c-ares's 5 s.
	 */
	ASSERT_EQ(use_server(r, dm.port, 500, 0), 0);
	memset(&storm, 0, sizeof(storm));
	storm.r = r;
	storm.n = n;
	t0 = iou_now();
	for (int i = 0; i < n; i++)
		ASSERT_EQ(fiber_spawn_with(r, &fo, storm_lookup, (void *)(uintptr_t)i, NULL), 0);
	/* Spawned last, so that it measures the lookups, not the spawning. */
	ASSERT_EQ(fiber_spawn(r, storm_ticker, NULL, &ticker), 0);
	wait_count(r, &storm.done, n, iou_deadline_after(6 * GUARD));
	ms = ms_since(t0);
	printf("# storm: %d lookups from %d fibers in %.0f ms (%.0f/s), %d wrong, slowest %.1f ms\n",
	       storm.done, n, ms, storm.done / (ms / 1000.0), storm.bad,
	       (double)storm.slowest / (double)IOU_MSEC);
	printf("# storm: 1 ms ticker from %.0f ms on made %lld ticks, max lateness %.3f ms, "
	       "max CPU spent on others during one tick %.3f ms (bound %lld ms)\n",
	       (double)(storm.first_tick - t0) / (double)IOU_MSEC, (long long)storm.ticks,
	       (double)storm.max_late / (double)IOU_MSEC,
	       (double)storm.max_busy / (double)IOU_MSEC, (long long)(bound / IOU_MSEC));
	ASSERT_EQ(storm.done, n);
	ASSERT_EQ(fiber_join(ticker, NULL), 0);
	ASSERT_EQ(storm.bad, 0);
	ASSERT_GT(storm.ticks, 0);
	/*
	 * The reactor must share the thread: the ticker waits for at most
	 * @bound of the thread's CPU spent on lookups.  Its wall-clock lateness
	 * is printed only: a loaded machine adds to it what no reactor controls.
	 */
	ASSERT_LT(storm.max_busy, bound);
	return 0;
}

/* ---- servers that do not answer ----------------------------------------- */

/*
 * Point @r's resolver at @port though lookups were abandoned (deadline,
 * cancel) with their queries still in c-ares: no lookup is in progress, so
 * iou_dns_configure() must not say -EBUSY.  (If it does, that is recorded,
 * and iou_dns_close() first lets the test go on.)
 */
static int replace_resolver(struct reactor *r, int port, int timeout_ms, int tries)
{
	int ret = use_server(r, port, timeout_ms, tries);

	if (ret == -EBUSY) {
		fprintf(stderr, "  iou_dns_configure: -EBUSY, yet every lookup has returned\n");
		test_fiber_failures++;
		ASSERT_EQ(iou_dns_close(r), 0);
		ret = use_server(r, port, timeout_ms, tries);
	}
	ASSERT_EQ(ret, 0);
	return 0;
}

static int deadline_body(struct reactor *r)
{
	struct addrinfo *ai = NULL;
	char name[NI_MAXHOST];
	int port, silent = udp_socket(&port);
	int64_t t0, old;
	double ms;

	ASSERT_GE(silent, 0);
	/* c-ares's own timeouts (5 s, 4 tries): the deadline comes first. */
	ASSERT_EQ(use_server(r, port, 0, 0), 0);
	old = fiber_set_deadline(r, iou_deadline_after(300 * IOU_MSEC));
	t0 = iou_now();
	ASSERT_EQ(lookup(r, "www.test", NULL, AF_UNSPEC, SOCK_STREAM, 0, &ai), -ETIMEDOUT);
	ms = ms_since(t0);
	ASSERT_PTR_EQ(ai, NULL);
	printf("# deadline 300 ms, silent server: -ETIMEDOUT after %.1f ms\n", ms);
	ASSERT_GE(ms, 290);
	ASSERT_LT(ms, 300 + 1000 * test_slowdown());
	ASSERT_GT(drain(silent), 0);

	fiber_set_deadline(r, iou_deadline_after(100 * IOU_MSEC));
	t0 = iou_now();
	ASSERT_EQ(reverse(r, "192.0.2.1", name, sizeof(name)), -ETIMEDOUT);
	ASSERT_GE(ms_since(t0), 90);
	ASSERT_LT(ms_since(t0), 100 + 1000 * test_slowdown());

	/* "Do not wait": fails at once. */
	fiber_set_deadline(r, IOU_DEADLINE_NOW);
	t0 = iou_now();
	ASSERT_EQ(lookup(r, "www.test", NULL, AF_INET, SOCK_STREAM, 0, &ai), -ETIMEDOUT);
	ASSERT_LT(ms_since(t0), 100 * test_slowdown());
	fiber_set_deadline(r, old);

	/*
	 * The abandoned queries are still c-ares's; the lookups that made
	 * them have returned, so the resolver may be replaced right away.
	 */
	ASSERT_EQ(dnsmasq_start(), 0);
	ASSERT_EQ(replace_resolver(r, dm.port, 0, 0), 0);
	ASSERT_EQ(lookup(r, "www.test", NULL, AF_INET, SOCK_STREAM, 0, &ai), 0);
	ASSERT_TRUE(ai_is(ai, "192.0.2.1"));
	iou_dns_freeaddrinfo(ai);
	close(silent);
	return 0;
}

static int test_deadline(void)
{
	return run_in_fiber(deadline_body);
}

/* A lookup from outside a fiber bounded by a deadline @ns from now. */
static __attribute__((noinline)) int lookup_with_deadline(struct reactor *r, int64_t ns)
{
	struct addrinfo *ai = NULL;
	int64_t old = fiber_set_deadline(r, iou_deadline_after(ns));
	int ret = lookup(r, "www.test", NULL, AF_INET, SOCK_STREAM, 0, &ai);

	fiber_set_deadline(r, old);
	iou_dns_freeaddrinfo(ai);
	return ret;
}

/*
 * Lay a zeroed frame where the last call's frames were and let every
 * runnable fiber run: nothing may write there once the call has returned.
 * Return: the offset of the first byte changed, or -1.
 */
static __attribute__((noinline)) int dead_frame_written(struct reactor *r)
{
	volatile unsigned char pad[16384];

	for (size_t i = 0; i < sizeof(pad); i++)
		pad[i] = 0;
	fiber_yield(r);
	fiber_yield(r);
	for (size_t i = 0; i < sizeof(pad); i++)
		if (pad[i])
			return (int)i;
	return -1;
}

static int test_deadline_outside_fiber(void)
{
	struct reactor *r = fresh_reactor();
	int port, silent, ret, written, maps0, maps1, late_writes = 0;
	int64_t t0;
	double ms;

	ASSERT_PTR_EQ(fiber_self(r), NULL);
	silent = udp_socket(&port);
	ASSERT_GE(silent, 0);
	/* The thread's own deadline applies outside fibers. */
	ASSERT_EQ(use_server(r, port, 0, 0), 0);
	t0 = iou_now();
	ret = lookup_with_deadline(r, 100 * IOU_MSEC);
	ms = ms_since(t0);
	written = dead_frame_written(r);
	printf("# outside a fiber, deadline 100 ms: %s after %.1f ms\n", code_name(ret), ms);
	ASSERT_EQ(ret, -ETIMEDOUT);
	ASSERT_GE(ms, 90);
	ASSERT_LT(ms, 100 + 1000 * test_slowdown());
	if (written >= 0) {
		fprintf(stderr,
			"  the lookup wrote into its caller's stack after returning "
			"(byte %d of the frame laid there)\n",
			written);
		test_fiber_failures++;
	}

	/* Timed-out lookups leave nothing behind (fibers and their stacks). */
	maps0 = test_count_maps();
	for (int i = 0; i < 20; i++) {
		EXPECT_EQ(lookup_with_deadline(r, 2 * IOU_MSEC), -ETIMEDOUT);
		/* Lay the frame at once, so that a late write cannot hit a live one. */
		late_writes += dead_frame_written(r) >= 0;
	}
	maps1 = test_count_maps();
	printf("# 20 timed-out lookups outside fibers: %d mappings before, %d after; %d wrote "
	       "into a dead frame\n",
	       maps0, maps1, late_writes);
	EXPECT_TRUE(late_writes == 0);
	EXPECT_TRUE(maps1 - maps0 < 10);
	ASSERT_EQ(iou_dns_close(r), 0);
	close(silent);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static int resolver_timeout_body(struct reactor *r)
{
	struct addrinfo *ai = NULL;
	char name[NI_MAXHOST];
	int port, silent = udp_socket(&port), ret, queries;
	int64_t t0;
	double ms;

	ASSERT_GE(silent, 0);
	ASSERT_EQ(use_server(r, port, 100, 1), 0);
	t0 = iou_now();
	ret = lookup(r, "www.test", NULL, AF_INET, SOCK_STREAM, 0, &ai);
	ms = ms_since(t0);
	printf("# timeout_ms=100 tries=1, silent server: %s after %.1f ms (\"%s\")\n",
	       code_name(ret), ms, iou_strerror(ret));
	ASSERT_EQ(ret, IOU_EDNS_TIMEOUT);
	ASSERT_PTR_EQ(ai, NULL);
	ASSERT_GE(ms, 90);
	ASSERT_LT(ms, 100 + 2000 * test_slowdown());

	t0 = iou_now();
	ASSERT_EQ(lookup(r, "www.test", NULL, AF_UNSPEC, SOCK_STREAM, 0, &ai), IOU_EDNS_TIMEOUT);
	ASSERT_LT(ms_since(t0), 100 + 2000 * test_slowdown());
	ret = reverse(r, "192.0.2.1", name, sizeof(name));
	printf("# PTR, same silent server: %s\n", code_name(ret));
	EXPECT_EQ(ret, IOU_EDNS_TIMEOUT);

	/* One try each: A; A and AAAA; PTR. */
	queries = drain(silent);
	printf("# queries the silent server received: %d\n", queries);
	ASSERT_EQ(queries, 4);
	ASSERT_EQ(iou_dns_close(r), 0);
	close(silent);
	return 0;
}

static int test_resolver_timeout(void)
{
	return run_in_fiber(resolver_timeout_body);
}

/* ---- servers that answer wrongly ---------------------------------------- */

enum evil_mode {
	EVIL_ANSWER,	 /* a good A record: 192.0.2.99 */
	EVIL_RCODE,	 /* the header with an rcode, no records */
	EVIL_GARBAGE,	 /* random bytes */
	EVIL_SHORT,	 /* 7 bytes: less than a header */
	EVIL_BADID,	 /* a good answer with another id */
	EVIL_OTHER_PORT, /* a good answer from another port */
	EVIL_CUT,	 /* ANCOUNT 1, the record cut after its type */
	EVIL_LOOP,	 /* the record's name a compression pointer to itself */
	EVIL_TC,	 /* TC set, and nobody listens on TCP */
};

/* Expectation: any IOU_EDNS_* code. */
#define ANY_EDNS 1

static const struct evil_case {
	const char *what;
	enum evil_mode mode;
	int rcode;
	int expect; /* 0, an IOU_EDNS_* code or ANY_EDNS */
} evil_cases[] = {
	{ "a good answer", EVIL_ANSWER, 0, 0 },
	{ "NOERROR, no records", EVIL_RCODE, 0, IOU_EDNS_NODATA },
	{ "FORMERR", EVIL_RCODE, 1, IOU_EDNS_FORMERR },
	{ "SERVFAIL", EVIL_RCODE, 2, IOU_EDNS_SERVFAIL },
	{ "NXDOMAIN", EVIL_RCODE, 3, IOU_EDNS_NONAME },
	{ "NOTIMP", EVIL_RCODE, 4, IOU_EDNS_NOTIMP },
	{ "REFUSED", EVIL_RCODE, 5, IOU_EDNS_REFUSED },
	{ "garbage", EVIL_GARBAGE, 0, ANY_EDNS },
	{ "7-byte reply", EVIL_SHORT, 0, ANY_EDNS },
	{ "mismatched id", EVIL_BADID, 0, ANY_EDNS },
	{ "reply from another port", EVIL_OTHER_PORT, 0, ANY_EDNS },
	{ "truncated record", EVIL_CUT, 0, IOU_EDNS_BADRESP },
	{ "compression loop", EVIL_LOOP, 0, IOU_EDNS_BADRESP },
	{ "TC, no TCP listener", EVIL_TC, 0, ANY_EDNS },
};

struct evil {
	struct reactor *r;
	int fd;	   /* the server's socket */
	int other; /* another socket, for EVIL_OTHER_PORT */
	const struct evil_case *c;
	int queries;   /* received */
	uint64_t seed; /* for EVIL_GARBAGE */
};

/* The reply to query @q of @qlen bytes in @a; its length, or 0 for none. */
static size_t evil_reply(struct evil *e, const unsigned char *q, size_t qlen, unsigned char *a,
			 size_t cap)
{
	static const unsigned char rr_a[] = { 0xc0, 0x0c, 0, 1, 0,   1, 0, 0,
					      0,    60,	  0, 4, 192, 0, 2, 99 };
	size_t end = dns_question_end(q, qlen), n;

	if (!end || end + 64 > cap)
		return 0;
	memcpy(a, q, end);
	a[2] = 0x80 | (q[2] & 0x01); /* QR; RD as asked */
	a[3] = 0x80;		     /* RA, NOERROR */
	memset(a + 6, 0, 6);	     /* no answer, authority or additional records */
	n = end;
	switch (e->c->mode) {
	case EVIL_ANSWER:
	case EVIL_BADID:
	case EVIL_OTHER_PORT:
	case EVIL_CUT:
		memcpy(a + n, rr_a, sizeof(rr_a));
		n += sizeof(rr_a);
		a[7] = 1;
		if (e->c->mode == EVIL_BADID) {
			a[0] ^= 0x5a;
			a[1] ^= 0xa5;
		}
		if (e->c->mode == EVIL_CUT)
			n -= sizeof(rr_a) - 4;
		break;
	case EVIL_RCODE:
		a[3] |= (unsigned char)e->c->rcode;
		break;
	case EVIL_GARBAGE:
		n = 48;
		for (size_t i = 0; i < n; i++)
			a[i] = (unsigned char)xorshift(&e->seed);
		break;
	case EVIL_SHORT:
		n = 7;
		break;
	case EVIL_LOOP:
		memcpy(a + n, rr_a, sizeof(rr_a));
		a[n] = (unsigned char)(0xc0 | (end >> 8));
		a[n + 1] = (unsigned char)end;
		n += sizeof(rr_a);
		a[7] = 1;
		break;
	case EVIL_TC:
		a[2] |= 0x02;
		break;
	}
	return n;
}

static void *evil_server(void *arg)
{
	struct evil *e = arg;
	unsigned char q[512], a[512];

	for (;;) {
		struct sockaddr_storage from;
		socklen_t flen = sizeof(from);
		ssize_t n =
			iou_recvfrom(e->r, e->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &flen);
		size_t len;

		if (n < 0)
			break; /* cancelled: the test is over */
		e->queries++;
		len = evil_reply(e, q, (size_t)n, a, sizeof(a));
		if (len)
			iou_sendto(e->r, e->c->mode == EVIL_OTHER_PORT ? e->other : e->fd, a, len,
				   0, (struct sockaddr *)&from, flen);
	}
	return NULL;
}

static int hostile_body(struct reactor *r)
{
	for (size_t i = 0; i < sizeof(evil_cases) / sizeof(evil_cases[0]); i++) {
		const struct evil_case *c = &evil_cases[i];
		struct evil e = { .r = r, .c = c, .seed = 0x1234567 + i };
		struct addrinfo *ai = NULL;
		struct fiber *srv;
		int port, other_port, ret;
		int64_t t0, old;
		double ms;

		e.fd = udp_socket(&port);
		e.other = udp_socket(&other_port);
		ASSERT_GE(e.fd, 0);
		ASSERT_GE(e.other, 0);
		ASSERT_EQ(fiber_spawn(r, evil_server, &e, &srv), 0);
		ASSERT_EQ(replace_resolver(r, port, 200, 1), 0);
		/*
		 * Let the last channel's timer fiber see that its channel is
		 * gone before this lookup starts (test_timeouts_after_reopen
		 * covers what happens otherwise).
		 */
		fiber_yield(r);
		/* Only a guard: c-ares gives up after 200 ms. */
		old = fiber_set_deadline(r, iou_deadline_after(2 * IOU_SEC * test_slowdown()));
		t0 = iou_now();
		ret = lookup(r, "evil.test", NULL, AF_INET, SOCK_STREAM, 0, &ai);
		ms = ms_since(t0);
		fiber_set_deadline(r, old);
		printf("# server sends %-24s -> %s after %.1f ms (%d queries)\n", c->what,
		       code_name(ret), ms, e.queries);
		ASSERT_GT(e.queries, 0);
		if (c->expect == 0) {
			EXPECT_EQ(ret, 0);
			EXPECT_TRUE(ret || (ai_count(ai) == 1 && ai_is(ai, "192.0.2.99")));
		} else if (c->expect == ANY_EDNS) {
			EXPECT_TRUE(IOU_IS_EDNS(ret));
			EXPECT_TRUE(ai == NULL);
		} else {
			EXPECT_EQ(ret, c->expect);
			EXPECT_TRUE(ai == NULL);
		}
		iou_dns_freeaddrinfo(ai);
		ASSERT_EQ(fiber_cancel(srv), 0);
		ASSERT_EQ(fiber_join(srv, NULL), 0);
		close(e.fd);
		close(e.other);
	}
	ASSERT_EQ(iou_dns_close(r), 0);
	return 0;
}

static int test_hostile_servers(void)
{
	return run_in_fiber(hostile_body);
}

/* ---- lookups interrupted ------------------------------------------------ */

/* Lookups of the cancel, close and teardown tests. */
static struct {
	struct reactor *r;
	int started, returned;
	int ret[PENDING_LOOKUPS];
} pend;

static void *pending_lookup(void *arg)
{
	int i = (int)(intptr_t)arg, ret;
	struct addrinfo *ai = NULL;
	char name[NI_MAXHOST];

	pend.started++;
	snprintf(name, sizeof(name), "p%d.test", i);
	/* A mix of A, A + AAAA and PTR. */
	if (i % 3 == 2) {
		ret = reverse(pend.r, "192.0.2.1", name, sizeof(name));
	} else {
		ret = lookup(pend.r, name, NULL, i % 3 ? AF_INET : AF_UNSPEC, SOCK_STREAM, 0, &ai);
		if (ai)
			ret = -EEXIST; /* a list with an error would leak */
		iou_dns_freeaddrinfo(ai);
	}
	pend.ret[i] = ret;
	pend.returned++;
	return NULL;
}

static void *cancel_self_then_lookup(void *arg)
{
	struct fiber *self = fiber_self(pend.r);

	(void)arg;
	fiber_cancel(self);
	return pending_lookup((void *)(intptr_t)0);
}

static int test_cancel(void)
{
	struct reactor *r = fresh_reactor();
	struct fiber *f[PENDING_LOOKUPS];
	struct addrinfo *ai;
	int port, silent = udp_socket(&port);
	int64_t t0;
	double ms;

	ASSERT_GE(silent, 0);
	memset(&pend, 0, sizeof(pend));
	pend.r = r;

	/* One lookup, cancelled while it waits for the server. */
	ASSERT_EQ(use_server(r, port, 0, 0), 0);
	ASSERT_EQ(fiber_spawn(r, pending_lookup, (void *)(intptr_t)0, &f[0]), 0);
	settle(r, &pend.started, 1);
	ASSERT_EQ(pend.started, 1);
	ASSERT_EQ(pend.returned, 0);
	ASSERT_GT(drain(silent), 0);
	t0 = iou_now();
	ASSERT_EQ(fiber_cancel(f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ms = ms_since(t0);
	printf("# cancelled lookup returned %s %.2f ms after fiber_cancel\n",
	       code_name(pend.ret[0]), ms);
	ASSERT_EQ(pend.ret[0], -ECANCELED);
	ASSERT_LT(ms, 50 * test_slowdown());

	/* Cancelled before it starts: fails at once, asks nobody. */
	memset(&pend, 0, sizeof(pend));
	pend.r = r;
	ASSERT_EQ(fiber_spawn(r, cancel_self_then_lookup, NULL, &f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(pend.ret[0], -ECANCELED);
	fiber_sleep(r, 5 * IOU_MSEC);
	ASSERT_EQ(drain(silent), 0);

	/* More than IOU_DNS_MAX_INFLIGHT: in c-ares and queued, all cancelled. */
	memset(&pend, 0, sizeof(pend));
	pend.r = r;
	for (int i = 0; i < PENDING_LOOKUPS; i++)
		ASSERT_EQ(fiber_spawn(r, pending_lookup, (void *)(intptr_t)i, &f[i]), 0);
	settle(r, &pend.started, PENDING_LOOKUPS);
	ASSERT_EQ(pend.started, PENDING_LOOKUPS);
	ASSERT_EQ(pend.returned, 0);
	t0 = iou_now();
	for (int i = 0; i < PENDING_LOOKUPS; i++)
		ASSERT_EQ(fiber_cancel(f[i]), 0);
	for (int i = 0; i < PENDING_LOOKUPS; i++)
		ASSERT_EQ(fiber_join(f[i], NULL), 0);
	ms = ms_since(t0);
	printf("# %d lookups (%d in flight at most) cancelled in %.2f ms\n", PENDING_LOOKUPS,
	       IOU_DNS_MAX_INFLIGHT, ms);
	for (int i = 0; i < PENDING_LOOKUPS; i++)
		if (pend.ret[i] != -ECANCELED)
			TEST_FAIL_AT("lookup %d: %d (%s)", i, pend.ret[i], code_name(pend.ret[i]));
	ASSERT_LT(ms, 200 * test_slowdown());

	/*
	 * A lookup abandoned while c-ares keeps its query: c-ares's timeout
	 * comes later, with nobody waiting, and the resolver carries on.
	 */
	ASSERT_EQ(replace_resolver(r, port, 100, 1), 0);
	memset(&pend, 0, sizeof(pend));
	pend.r = r;
	ASSERT_EQ(fiber_spawn(r, pending_lookup, (void *)(intptr_t)1, &f[0]), 0);
	settle(r, &pend.started, 1);
	ASSERT_EQ(fiber_cancel(f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(pend.ret[1], -ECANCELED);
	fiber_sleep(r, 300 * IOU_MSEC);
	ASSERT_EQ(lookup(r, "www.test", NULL, AF_INET, SOCK_STREAM, 0, &ai), IOU_EDNS_TIMEOUT);

	/* The resolver can be replaced at once, and works. */
	drain(silent);
	ASSERT_EQ(replace_resolver(r, port, 0, 0), 0);
	ASSERT_EQ(fiber_spawn(r, pending_lookup, (void *)(intptr_t)0, &f[0]), 0);
	fiber_sleep(r, 10 * IOU_MSEC);
	ASSERT_EQ(fiber_cancel(f[0]), 0);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(dnsmasq_start(), 0);
	ASSERT_EQ(replace_resolver(r, dm.port, 0, 0), 0);
	ASSERT_EQ(lookup(r, "www.test", NULL, AF_INET, SOCK_STREAM, 0, &ai), 0);
	ASSERT_TRUE(ai_is(ai, "192.0.2.1"));
	iou_dns_freeaddrinfo(ai);
	ASSERT_EQ(iou_dns_close(r), 0);
	close(silent);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

static void *closer(void *arg)
{
	(void)arg;
	FIBER_CHECK(iou_dns_close(pend.r) == 0);
	return NULL;
}

static int test_close_with_lookups_pending(void)
{
	struct reactor *r = fresh_reactor();
	struct addrinfo *ai;
	int port, silent = udp_socket(&port);

	ASSERT_GE(silent, 0);
	/* iou_dns_close() from outside a fiber, then from a fiber. */
	for (int from_fiber = 0; from_fiber < 2; from_fiber++) {
		int64_t t0;
		double ms;

		memset(&pend, 0, sizeof(pend));
		pend.r = r;
		ASSERT_EQ(use_server(r, port, 0, 0), 0);
		for (int i = 0; i < PENDING_LOOKUPS; i++)
			ASSERT_EQ(fiber_spawn(r, pending_lookup, (void *)(intptr_t)i, NULL), 0);
		settle(r, &pend.started, PENDING_LOOKUPS);
		ASSERT_EQ(pend.started, PENDING_LOOKUPS);
		ASSERT_EQ(pend.returned, 0);
		ASSERT_GT(drain(silent), 0);
		/* Lookups are in progress: the resolver cannot be replaced. */
		ASSERT_EQ(use_server(r, port, 0, 0), -EBUSY);
		t0 = iou_now();
		if (from_fiber)
			ASSERT_EQ(fiber_spawn(r, closer, NULL, NULL), 0);
		else
			ASSERT_EQ(iou_dns_close(r), 0);
		wait_count(r, &pend.returned, PENDING_LOOKUPS, iou_deadline_after(GUARD));
		ms = ms_since(t0);
		printf("# iou_dns_close (%s) ended %d lookups in %.2f ms\n",
		       from_fiber ? "in a fiber" : "outside fibers", pend.returned, ms);
		ASSERT_EQ(pend.returned, PENDING_LOOKUPS);
		for (int i = 0; i < PENDING_LOOKUPS; i++)
			if (pend.ret[i] != IOU_EDNS_CANCELLED)
				TEST_FAIL_AT("lookup %d: %d (%s)", i, pend.ret[i],
					     code_name(pend.ret[i]));
		ASSERT_LT(ms, 200 * test_slowdown());
		ASSERT_NO_FIBER_FAILURES();
	}
	ASSERT_EQ(iou_dns_close(r), 0);
	USE_DNSMASQ(r);
	ASSERT_EQ(lookup(r, "www.test", NULL, AF_INET, SOCK_STREAM, 0, &ai), 0);
	ASSERT_TRUE(ai_is(ai, "192.0.2.1"));
	iou_dns_freeaddrinfo(ai);
	ASSERT_EQ(iou_dns_close(r), 0);
	close(silent);
	return 0;
}

/*
 * The resolver closed and made again within one turn of a fiber, while its
 * timer fiber still waits for the old channel's timeout: the new channel's
 * timeouts must be kept all the same.
 */
static int reopen_body(struct reactor *r)
{
	struct addrinfo *ai = NULL;
	struct fiber *f;
	int port, silent = udp_socket(&port), ret;
	int64_t t0, old;
	double ms;

	ASSERT_GE(silent, 0);
	memset(&pend, 0, sizeof(pend));
	pend.r = r;
	ASSERT_EQ(use_server(r, port, 100, 1), 0);
	ASSERT_EQ(fiber_spawn(r, pending_lookup, (void *)(intptr_t)0, &f), 0);
	ASSERT_EQ(fiber_sleep(r, 20 * IOU_MSEC), 0);
	ASSERT_EQ(pend.started, 1);
	/* From here to the lookup, nothing lets another fiber run. */
	ASSERT_EQ(iou_dns_close(r), 0);
	ASSERT_EQ(use_server(r, port, 100, 1), 0);
	old = fiber_set_deadline(r, iou_deadline_after(IOU_SEC * test_slowdown() / 2));
	t0 = iou_now();
	ret = lookup(r, "www.test", NULL, AF_INET, SOCK_STREAM, 0, &ai);
	ms = ms_since(t0);
	fiber_set_deadline(r, old);
	iou_dns_freeaddrinfo(ai);
	printf("# resolver reopened in one turn, timeout_ms=100, silent server: %s after %.1f ms\n",
	       code_name(ret), ms);
	EXPECT_EQ(ret, IOU_EDNS_TIMEOUT);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	EXPECT_EQ(pend.ret[0], IOU_EDNS_CANCELLED);
	ASSERT_EQ(iou_dns_close(r), 0);
	close(silent);
	return 0;
}

static int test_timeouts_after_reopen(void)
{
	return run_in_fiber(reopen_body);
}

/*
 * iou_dns_close() forgets the configuration: the next lookup's resolver has
 * the defaults.  Told apart by the hosts file, which the configuration
 * turns off: a name /etc/hosts has then goes to the silent server and times
 * out, and after the close is answered from the file (no query leaves).
 */
static int close_defaults_body(struct reactor *r)
{
	struct iou_dns_options o;
	struct addrinfo *ai = NULL;
	char servers[32], name[NI_MAXHOST], addr[INET_ADDRSTRLEN];
	int port, silent, ret;

	if (!etc_hosts_entry(name, sizeof(name), addr, sizeof(addr))) {
		printf("# /etc/hosts names no IPv4 host but localhost: skipping\n");
		return TEST_SKIP;
	}
	silent = udp_socket(&port);
	ASSERT_GE(silent, 0);
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", port);
	iou_dns_options_init(&o);
	o.servers = servers;
	o.search = false;
	o.hosts_file = false;
	o.timeout_ms = 100;
	o.tries = 1;
	ASSERT_EQ(iou_dns_configure(r, &o), 0);
	ret = lookup(r, name, NULL, AF_INET, SOCK_STREAM, 0, &ai);
	iou_dns_freeaddrinfo(ai);
	EXPECT_EQ(ret, IOU_EDNS_TIMEOUT);
	ASSERT_EQ(iou_dns_close(r), 0);
	ret = lookup(r, name, NULL, AF_INET, SOCK_STREAM, 0, &ai);
	printf("# %s after iou_dns_close: %s (defaults: from /etc/hosts)\n", name, code_name(ret));
	EXPECT_EQ(ret, 0);
	EXPECT_TRUE(ret || ai_is(ai, addr));
	iou_dns_freeaddrinfo(ai);
	ASSERT_EQ(iou_dns_close(r), 0);
	close(silent);
	return 0;
}

static int test_close_restores_defaults(void)
{
	return run_in_fiber(close_defaults_body);
}

/* What the teardown thread saw. */
static struct {
	bool destroy;  /* reactor_destroy(), or leave it to thread exit */
	int create;    /* reactor_create() */
	int configure; /* iou_dns_configure() */
	int spawned;   /* fibers spawned */
	int queries;   /* queries the silent server received before teardown */
	int destroyed; /* reactor_destroy() */
} td;

static int teardown_thread(void *arg)
{
	struct reactor *r;
	struct pollfd p;
	int port, fd = udp_socket(&port);

	(void)arg;
	td.create = reactor_create(NULL, &r);
	if (fd < 0 || td.create)
		return 0;
	pend.r = r;
	td.configure = use_server(r, port, 0, 0);
	for (int i = 0; i < PENDING_LOOKUPS; i++)
		td.spawned += fiber_spawn(r, pending_lookup, (void *)(intptr_t)i, NULL) == 0;
	/* Each fiber runs once: the first queries go out, the rest queue. */
	fiber_yield(r);
	p.fd = fd;
	p.events = POLLIN;
	poll(&p, 1, (int)(GUARD / IOU_MSEC));
	td.queries = drain(fd);
	/* Once more, so that the resolver's polls are in the kernel too. */
	fiber_yield(r);
	if (td.destroy)
		td.destroyed = reactor_destroy(r);
	close(fd);
	return 0;
}

static int test_teardown_with_lookups_pending(void)
{
	int fds0 = test_count_fds();

	for (int destroy = 1; destroy >= 0; destroy--) {
		thrd_t t;

		memset(&pend, 0, sizeof(pend));
		memset(&td, 0, sizeof(td));
		td.destroy = destroy;
		ASSERT_EQ(thrd_create(&t, teardown_thread, NULL), thrd_success);
		ASSERT_EQ(thrd_join(t, NULL), thrd_success);
		printf("# teardown by %s: %d lookups started, %d queries sent, %d returned\n",
		       destroy ? "reactor_destroy" : "thread exit", pend.started, td.queries,
		       pend.returned);
		ASSERT_EQ(td.create, 0);
		ASSERT_EQ(td.configure, 0);
		ASSERT_EQ(td.spawned, PENDING_LOOKUPS);
		ASSERT_EQ(pend.started, PENDING_LOOKUPS);
		ASSERT_GT(td.queries, 0);
		ASSERT_EQ(td.destroyed, 0);
		/* Discarded fibers never run again: no lookup returned. */
		ASSERT_EQ(pend.returned, 0);
		ASSERT_EQ(test_count_fds(), fds0);
	}
	return 0;
}

/* ---- resources ------------------------------------------------------------ */

static int test_descriptors_back_to_baseline(void)
{
	struct reactor *r = fresh_reactor();
	struct addrinfo *ai;
	char name[NI_MAXHOST];
	int base, open_fds = 0, port, silent;

	ASSERT_TRUE(r != NULL);
	ASSERT_EQ(dnsmasq_start(), 0);
	ASSERT_EQ(iou_dns_close(r), 0);
	silent = udp_socket(&port);
	ASSERT_GE(silent, 0);
	base = test_count_fds();
	for (int round = 0; round < 3; round++) {
		USE_DNSMASQ(r);
		ASSERT_EQ(lookup(r, "www.test", NULL, AF_UNSPEC, SOCK_STREAM, 0, &ai), 0);
		iou_dns_freeaddrinfo(ai);
		ASSERT_EQ(lookup(r, "many.test", NULL, AF_INET, SOCK_STREAM, 0, &ai), 0);
		iou_dns_freeaddrinfo(ai);
		ASSERT_EQ(reverse(r, "2001:db8::1", name, sizeof(name)), 0);
		ASSERT_EQ(lookup(r, "nx.test", NULL, AF_INET, SOCK_STREAM, 0, &ai),
			  IOU_EDNS_NONAME);
		ASSERT_EQ(iou_dns_close(r), 0);
		ASSERT_EQ(test_count_fds(), base);

		/* Closed with queries outstanding, its sockets open. */
		memset(&pend, 0, sizeof(pend));
		pend.r = r;
		ASSERT_EQ(use_server(r, port, 0, 0), 0);
		for (int i = 0; i < 8; i++)
			ASSERT_EQ(fiber_spawn(r, pending_lookup, (void *)(intptr_t)i, NULL), 0);
		fiber_sleep(r, 20 * IOU_MSEC);
		open_fds = test_count_fds();
		ASSERT_GT(open_fds, base);
		ASSERT_EQ(iou_dns_close(r), 0);
		wait_count(r, &pend.returned, 8, iou_deadline_after(GUARD));
		ASSERT_EQ(pend.returned, 8);
		ASSERT_EQ(test_count_fds(), base);
	}
	printf("# descriptors: %d without a resolver, %d with queries outstanding\n", base,
	       open_fds);
	close(silent);
	return 0;
}

TEST_MAIN(T(test_strerror), T(test_bad_arguments), T(test_records),
	  T(test_canonname_through_cnames), T(test_service_and_socktype), T(test_reverse),
	  T(test_nxdomain_nodata_refused), T(test_many_records_over_tcp), T(test_hosts_file),
	  T(test_outside_fiber), T(test_deadline), T(test_deadline_outside_fiber),
	  T(test_resolver_timeout), T(test_hostile_servers), T(test_cancel),
	  T(test_close_with_lookups_pending), T(test_timeouts_after_reopen),
	  T(test_close_restores_defaults),
	  T(test_teardown_with_lookups_pending), T(test_storm),
	  T(test_descriptors_back_to_baseline))
