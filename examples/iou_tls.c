/* SPDX-License-Identifier: MIT */
/*
 * iou_tls: a TLS client that copies standard input to a server and what
 * the server sends to standard output, like "openssl s_client -quiet" but
 * with the server's certificate always verified.  HOST is resolved with
 * libioucontext-dns (c-ares); each address it gives is tried in order until
 * one connects.  --timeout bounds the lookup, each connect and the
 * handshake, each on its own.  The server name sent (SNI) and checked
 * against the certificate is --servername or else HOST, which must then be
 * a DNS name: rustls does not verify IP addresses.
 *
 * After the handshake two fibers copy at once: "up" reads standard input
 * and writes it to the TLS stream, and at end of input sends close_notify
 * right after the last byte (then shuts the socket's sending half, so that
 * servers that wait for end of file see it too); "down" reads the TLS
 * stream and writes standard output until the server's close_notify.
 * iou_tls ends when both have ended.  If the server ends its stream first,
 * iou_tls stops reading standard input (as s_client does) and answers with
 * its own close_notify.  A server that closes the connection without
 * close_notify has truncated the stream: that is a failure, never a clean
 * end.  Standard output carries the server's data only; messages go to
 * standard error, the reason of a failure as exactly one line (for a
 * certificate that fails verification, with rustls's own reason).
 *
 * SIGINT and SIGTERM arrive on a signalfd read by a watcher fiber, which
 * cancels whatever is running; an established session then still gets a
 * close_notify (bounded by one second) before iou_tls exits 128+signo.
 *
 * Exit status: 0 after a clean close, 1 on any failure, 2 on a usage
 * error, 128+N when stopped by signal N.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "signals.h"

#define EXAMPLE_NAME "iou_tls"
#include "usage.h"
#include <ioucontext/dns.h>
#include <ioucontext/ioucontext.h>
#include <ioucontext/tls.h>

#define DEFAULT_PORT "443"
#define DEFAULT_TIMEOUT 10.0
/* Plaintext moved per read, each way (rustls cuts it into 16 KiB records). */
#define CHUNK ((size_t)64 << 10)
/* ALPN protocols offered at most (each option may list several). */
/* How long a close_notify may take once a signal has asked us to stop. */
#define FAREWELL (1 * IOU_SEC)
/* Room for the one line that says why we failed. */
#define MSG_CAP 768

/* getopt_long's values for options without a short form. */
enum {
	OPT_CAFILE = 256,
	OPT_SERVERNAME,
	OPT_ALPN,
	OPT_TIMEOUT,
	OPT_CERT,
	OPT_KEY,
	OPT_VERSION,
};

/* Everything the fibers share; lives in main. */
struct program {
	struct reactor *r;
	char host[256];		/* HOST as given, without brackets */
	char port[8];		/* PORT, or DEFAULT_PORT */
	char label[280];	/* "HOST:PORT" ("[V6]:PORT") for messages */
	const char *servername; /* --servername, or host */
	int64_t timeout_ns;	/* lookup, connect, handshake bound; 0: none */
	double timeout_s;	/* the same, for messages */
	bool verbose;		/* -v: describe the session on stderr */
	struct iou_tls_config *cfg;

	int fd;		       /* the connected socket, or -1 */
	struct iou_tls *tls;   /* the session, or NULL */
	bool copying;	       /* up and down exist: a signal cancels them */
	bool up_reading;       /* up is waiting for standard input */
	bool up_broken;	       /* up was interrupted mid-write: no close_notify possible */
	bool up_done;	       /* up sent close_notify after the end of input */
	bool peer_done;	       /* the server's close_notify arrived */
	char *upbuf, *downbuf; /* CHUNK bytes each */

	struct fiber *session; /* resolves, connects, handshakes, waits for up and down */
	struct fiber *up, *down, *watcher;
	int sigfd;	    /* signalfd for SIGINT and SIGTERM */
	int signo;	    /* the signal that stopped us, or 0 */
	bool stdin_closed;  /* fd 0 was closed when we started */
	bool stdout_closed; /* fd 1 was closed when we started */
	int status;	    /* 0 or 1 */
	char msg[MSG_CAP];  /* the first failure, printed at the end */
};

static const char usage_text[] =
	"Usage: iou_tls [OPTION]... HOST[:PORT]\n"
	"Connect to HOST over TLS (port 443 by default), verify its certificate,\n"
	"then copy standard input to the server and the server's data to standard\n"
	"output until both have ended.  End of input sends close_notify.\n"
	"\n"
	"HOST is a DNS name or an IP address; an IPv6 address with a port is\n"
	"written [ADDR]:PORT.  Every address HOST resolves to is tried in turn.\n"
	"\n"
	"      --cafile FILE       trust the CA certificates in FILE (PEM) instead of\n"
	"                          the system's (" IOU_TLS_DEFAULT_CAFILE ")\n"
	"      --servername NAME   the name to send (SNI) and to verify the\n"
	"                          certificate against (default: HOST; required when\n"
	"                          HOST is an IP address, which rustls cannot verify)\n"
	"      --alpn PROTO        offer application protocol PROTO (ALPN); repeat\n"
	"                          the option or separate names by commas for several,\n"
	"                          in order of preference\n"
	"      --cert FILE         present this client certificate chain (PEM)\n"
	"      --key FILE          its private key (PEM), with --cert\n"
	"      --timeout SEC       bound the name lookup, each connect and the\n"
	"                          handshake to SEC seconds each (fractions allowed;\n"
	"                          default 10; 0: no limit)\n"
	"  -v, --verbose           describe the session on standard error (address,\n"
	"                          TLS version, cipher suite, ALPN, server subject)\n"
	"  -h, --help              display this help and exit\n"
	"      --version           output version information and exit\n"
	"\n"
	"Exit status: 0 after a clean close (both close_notify sent and received),\n"
	"1 on any failure (one line on standard error says why), 2 on a usage error,\n"
	"128+N when stopped by signal N (INT, TERM).\n"
	"\n"
	"Example: printf 'GET / HTTP/1.0\\r\\nHost: example.org\\r\\n\\r\\n' | iou_tls example.org\n";

/*
 * Record a failure.  Only the first is kept: it is the cause, what follows
 * (a cancelled partner, a broken stream) its consequence.  Printed by main.
 */
__attribute__((format(printf, 2, 3))) static void fail(struct program *p, const char *fmt, ...)
{
	va_list ap;

	p->status = 1;
	if (p->msg[0])
		return;
	va_start(ap, fmt);
	vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
	va_end(ap);
}

/* A TLS failure, with rustls's own words when they add to iou_strerror()'s. */
static void fail_tls(struct program *p, const char *what, int err)
{
	const char *why = p->tls ? iou_tls_reason(p->tls) : "";

	if (err == -ETIMEDOUT)
		fail(p, "iou_tls: %s: %s timed out after %g s", p->label, what, p->timeout_s);
	else if (IOU_IS_ETLS(err) && why[0])
		fail(p, "iou_tls: %s: %s failed: %s (%s)", p->label, what, iou_strerror(err), why);
	else
		fail(p, "iou_tls: %s: %s failed: %s", p->label, what, iou_strerror(err));
}

/* Limit the calling fiber's waits to the --timeout from now (or lift it). */
static void arm(struct program *p)
{
	fiber_set_deadline(p->r,
			   p->timeout_ns ? iou_deadline_after(p->timeout_ns) : IOU_DEADLINE_NEVER);
}

/* ---- connecting ------------------------------------------------------------- */

static void addr_text(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(buf, size, "(unprintable address)");
	else if (sa->sa_family == AF_INET6)
		snprintf(buf, size, "[%s]:%s", host, serv);
	else
		snprintf(buf, size, "%s:%s", host, serv);
}

/* Resolve HOST and connect to the first of its addresses that answers. */
static int connect_any(struct program *p)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *list;
	char where[NI_MAXHOST + NI_MAXSERV + 8] = "";
	int ret, tried = 0, last = 0, one = 1;

	arm(p);
	ret = iou_dns_lookup(p->r, p->host, p->port, &hints, &list);
	if (ret < 0) {
		if (ret == -ETIMEDOUT)
			fail(p, "iou_tls: %s: resolving %s timed out after %g s", p->label, p->host,
			     p->timeout_s);
		else if (ret != -ECANCELED)
			fail(p, "iou_tls: %s: cannot resolve %s: %s", p->label, p->host,
			     iou_strerror(ret));
		return ret;
	}
	for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
		int fd;

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		tried++;
		addr_text(ai->ai_addr, ai->ai_addrlen, where, sizeof(where));
		fd = iou_socket(p->r, ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			last = fd;
			continue;
		}
		arm(p);
		ret = iou_connect(p->r, fd, ai->ai_addr, ai->ai_addrlen);
		if (ret == 0) {
			/* Records go out as soon as they are made: interactive use. */
			iou_setsockopt(p->r, fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			p->fd = fd;
			if (p->verbose)
				fprintf(stderr, "iou_tls: connected to %s\n", where);
			iou_dns_freeaddrinfo(list);
			return 0;
		}
		iou_close(p->r, fd);
		last = ret;
		if (ret == -ECANCELED)
			break;
	}
	iou_dns_freeaddrinfo(list);
	if (last == -ECANCELED)
		return last;
	if (!tried)
		fail(p, "iou_tls: %s: %s has no IPv4 or IPv6 address", p->label, p->host);
	else if (last == -ETIMEDOUT)
		fail(p, "iou_tls: %s: cannot connect: %s: timed out after %g s%s", p->label, where,
		     p->timeout_s, tried > 1 ? " (every address tried)" : "");
	else
		fail(p, "iou_tls: %s: cannot connect: %s: %s%s", p->label, where,
		     iou_strerror(last), tried > 1 ? " (every address tried)" : "");
	return last ? last : -EHOSTUNREACH;
}

/* ---- copying ---------------------------------------------------------------- */

/* One read that returns as soon as anything arrives, O_NONBLOCK or not. */
static ssize_t read_some(struct reactor *r, int fd, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = iou_read(r, fd, buf, len);

		if (n == -EINTR)
			continue;
		if (n != -EAGAIN)
			return n;
		n = iou_poll(r, fd, POLLIN);
		if (n < 0)
			return n;
	}
}

/* Standard input to the TLS stream, then close_notify. */
static void *up(void *arg)
{
	struct program *p = arg;
	int ret;

	for (;;) {
		ssize_t n, w;

		p->up_reading = true;
		n = p->stdin_closed ? -EBADF : read_some(p->r, STDIN_FILENO, p->upbuf, CHUNK);
		p->up_reading = false;
		if (n < 0) {
			if (n == -ECANCELED && (p->peer_done || p->signo))
				return NULL;
			fail(p, "iou_tls: standard input: %s", iou_strerror((int)n));
			fiber_cancel(p->down);
			return NULL;
		}
		if (n == 0)
			break;
		w = iou_tls_write(p->tls, p->upbuf, (size_t)n);
		if (w < 0) {
			p->up_broken = true;
			/* The server had already said goodbye: nothing was owed. */
			if (p->peer_done || p->signo)
				return NULL;
			fail_tls(p, "sending", (int)w);
			fiber_cancel(p->down);
			return NULL;
		}
		if (p->peer_done)
			return NULL; /* the session answers with close_notify */
	}
	/* End of input: close_notify right after the last byte. */
	ret = iou_tls_shutdown(p->tls);

	if (ret < 0) {
		p->up_broken = true;
		if (!p->peer_done && !p->signo) {
			fail_tls(p, "sending close_notify", ret);
			fiber_cancel(p->down);
		}
		return NULL;
	}
	p->up_done = true;
	/* For servers that wait for end of file rather than for close_notify. */
	iou_shutdown(p->r, p->fd, SHUT_WR);
	return NULL;
}

/* The TLS stream to standard output, until the server's close_notify. */
static void *down(void *arg)
{
	struct program *p = arg;

	for (;;) {
		ssize_t n = iou_tls_read(p->tls, p->downbuf, CHUNK);

		if (n == 0) {
			p->peer_done = true;
			/* Stop reading input (a write in progress finishes first). */
			if (p->up_reading)
				fiber_cancel(p->up);
			return NULL;
		}
		if (n < 0) {
			if (n == -ECANCELED && p->signo)
				return NULL;
			if (n == IOU_ETLS_TRUNCATED)
				fail(p,
				     "iou_tls: %s: the server closed the connection without "
				     "close_notify (truncated)",
				     p->label);
			else if (n != -ECANCELED)
				fail_tls(p, "receiving", (int)n);
			fiber_cancel(p->up);
			return NULL;
		}
		if (p->stdout_closed)
			n = -EBADF;
		else
			n = iou_write_all(p->r, STDOUT_FILENO, p->downbuf, (size_t)n, NULL);
		if (n < 0) {
			if (n == -ECANCELED && p->signo)
				return NULL;
			if (n != -ECANCELED)
				fail(p, "iou_tls: standard output: %s", iou_strerror((int)n));
			fiber_cancel(p->up);
			return NULL;
		}
	}
}

/* ---- the session ------------------------------------------------------------ */

static const char *version_name(int v)
{
	switch (v) {
	case 0x0304:
		return "TLSv1.3";
	case 0x0303:
		return "TLSv1.2";
	default:
		return "TLS (unknown version)";
	}
}

static void describe(struct program *p)
{
	char subject[512];
	const char *alpn = iou_tls_alpn(p->tls);
	int n = iou_tls_peer_subject(p->tls, subject, sizeof(subject));

	if (n <= 0)
		snprintf(subject, sizeof(subject), "%s", n == 0 ? "(none)" : iou_strerror(n));
	fprintf(stderr, "iou_tls: %s, cipher %s, ALPN %s, server %s\n",
		version_name(iou_tls_version(p->tls)), iou_tls_cipher_suite(p->tls),
		alpn ? alpn : "none", subject);
}

static void *session(void *arg)
{
	struct program *p = arg;
	int ret;

	if (connect_any(p) < 0)
		goto out;
	ret = iou_tls_client_new(p->r, p->cfg, p->fd, p->servername, &p->tls);
	if (ret < 0) {
		p->tls = NULL;
		if (ret == IOU_ETLS_BAD_NAME)
			fail(p, "iou_tls: %s: '%s' cannot be used as a server name: %s", p->label,
			     p->servername, iou_strerror(ret));
		else
			fail(p, "iou_tls: %s: starting TLS: %s", p->label, iou_strerror(ret));
		goto out;
	}
	arm(p);
	ret = iou_tls_handshake(p->tls);
	fiber_set_deadline(p->r, IOU_DEADLINE_NEVER);
	if (ret < 0) {
		if (ret != -ECANCELED)
			fail_tls(p, "handshake", ret);
		goto out;
	}
	if (p->verbose)
		describe(p);

	if ((ret = fiber_spawn(p->r, down, p, &p->down)) < 0 ||
	    (ret = fiber_spawn(p->r, up, p, &p->up)) < 0) {
		fail(p, "iou_tls: cannot start a fiber: %s", iou_strerror(ret));
		if (p->down) {
			fiber_cancel(p->down);
			fiber_join(p->down, NULL);
			p->down = NULL;
		}
		goto out;
	}
	p->copying = true;
	fiber_join(p->down, NULL);
	fiber_join(p->up, NULL);
	p->up = p->down = NULL;
	p->copying = false;

	/*
	 * The server ended first, or a signal stopped us: our own close_notify
	 * is still owed (unless a write was cut short, which leaves half a
	 * record behind).  A courtesy: its failure changes nothing.
	 */
	if (!p->up_done && !p->up_broken && (p->peer_done || p->signo) && !p->status) {
		fiber_set_deadline(p->r, iou_deadline_after(FAREWELL));
		if (iou_tls_shutdown(p->tls) == 0)
			iou_shutdown(p->r, p->fd, SHUT_WR);
		fiber_set_deadline(p->r, IOU_DEADLINE_NEVER);
	}
out:
	iou_tls_close(p->tls);
	p->tls = NULL;
	if (p->fd >= 0)
		iou_close(p->r, p->fd);
	p->fd = -1;
	/* Nothing left to guard. */
	fiber_cancel(p->watcher);
	return NULL;
}

static void *watcher(void *arg)
{
	struct program *p = arg;
	struct signalfd_siginfo si;

	if (example_read_signal(p->r, p->sigfd, &si) != (ssize_t)sizeof(si))
		return NULL; /* cancelled: the session is over */
	p->signo = (int)si.ssi_signo;
	if (p->copying) {
		/* The session waits for these two, then says goodbye. */
		fiber_cancel(p->up);
		fiber_cancel(p->down);
	} else {
		fiber_cancel(p->session);
	}
	return NULL;
}

/* ---- options ------------------------------------------------------------ */

/* HOST, HOST:PORT, [V6] or [V6]:PORT, or a bare IPv6 address (no port). */
static int parse_target(struct program *p, const char *arg)
{
	const char *host = arg, *port = NULL, *end;
	size_t hlen;

	if (*arg == '[') {
		const char *close = strchr(arg, ']');

		if (!close)
			return bad_usage("'%s': '[' without ']'", arg);
		host = arg + 1;
		hlen = (size_t)(close - host);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return bad_usage("'%s': only ':PORT' may follow ']'", arg);
	} else {
		const char *colon = strchr(arg, ':');

		/* Two colons or more: a bare IPv6 address, which takes no port. */
		if (colon && !strchr(colon + 1, ':')) {
			hlen = (size_t)(colon - arg);
			port = colon + 1;
		} else {
			hlen = strlen(arg);
		}
	}
	if (hlen == 0)
		return bad_usage("'%s': no host name", arg);
	if (hlen >= sizeof(p->host))
		return bad_usage("'%.40s...': host name too long", arg);
	if (memchr(host, '/', hlen) || memchr(host, ' ', hlen))
		return bad_usage("'%s' is not a host name or address", arg);
	memcpy(p->host, host, hlen);
	p->host[hlen] = '\0';
	if (port) {
		unsigned long v = 0;

		end = port + strlen(port);
		if (port == end || end - port > 5)
			return bad_usage("'%s': bad port", arg);
		for (const char *c = port; c < end; c++) {
			if (*c < '0' || *c > '9')
				return bad_usage("'%s': bad port '%s' (a number is needed)", arg,
						 port);
			v = v * 10 + (unsigned long)(*c - '0');
		}
		if (v == 0 || v > 65535)
			return bad_usage("'%s': port %lu out of range 1-65535", arg, v);
		snprintf(p->port, sizeof(p->port), "%lu", v);
	} else {
		snprintf(p->port, sizeof(p->port), "%s", DEFAULT_PORT);
	}
	snprintf(p->label, sizeof(p->label), strchr(p->host, ':') ? "[%s]:%s" : "%s:%s", p->host,
		 p->port);
	return 0;
}

/* True if @host is an IPv4 or IPv6 literal (zone included). */
static bool ip_literal(const char *host)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST }, *res;

	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return false;
	freeaddrinfo(res);
	return true;
}

/* What the command line says besides what goes into struct program. */
struct args {
	const char *cafile, *certfile, *keyfile;
	const char *alpn[MAX_ALPN + 1]; /* NULL-terminated, into alpn_args */
	char *alpn_args[MAX_ALPN + 1];	/* the --alpn values, strdup'd */
	unsigned nalpn, nargs;
	double timeout; /* --timeout; set the default before parse_args() */
};

/* Free what parse_args() allocated, whatever it returned. */
static void free_args(struct args *a)
{
	for (unsigned i = 0; i < a->nargs; i++)
		free(a->alpn_args[i]);
	a->nargs = 0;
}

/* parse_args()'s value when the program should go on and run. */
#define ARGS_RUN (-1)

/*
 * The command line into @p (target, server name, -v, timeouts) and @a
 * (files, ALPN; free_args() frees it afterwards, whatever the return).
 * Return: ARGS_RUN to go on, or the exit status to end with now (0 after
 * --help or --version, 1 if printing them failed, 2 on a usage error, its
 * message printed).
 */
static int parse_args(int argc, char **argv, struct program *p, struct args *a)
{
	static const struct option longopts[] = {
		{ "cafile", required_argument, NULL, OPT_CAFILE },
		{ "servername", required_argument, NULL, OPT_SERVERNAME },
		{ "alpn", required_argument, NULL, OPT_ALPN },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	int opt, ret;

	opterr = 0; /* usage errors get one line of ours instead */
	while ((opt = getopt_long(argc, argv, ":vh", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_CAFILE:
			a->cafile = optarg;
			break;
		case OPT_SERVERNAME:
			if (!*optarg)
				return bad_usage("--servername must not be empty");
			p->servername = optarg;
			break;
		case OPT_ALPN:
			if (a->nargs == MAX_ALPN)
				return bad_usage("--alpn: more than %d protocols", MAX_ALPN);
			a->alpn_args[a->nargs] = strdup(optarg);
			if (!a->alpn_args[a->nargs])
				return bad_usage("out of memory");
			ret = add_alpn(a->alpn_args[a->nargs++], a->alpn, &a->nalpn);
			if (ret)
				return ret;
			break;
		case OPT_TIMEOUT:
			if ((ret = parse_seconds("--timeout", optarg, &a->timeout)) != 0)
				return ret;
			break;
		case OPT_CERT:
			a->certfile = optarg;
			break;
		case OPT_KEY:
			a->keyfile = optarg;
			break;
		case 'v':
			p->verbose = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return fflush(stdout) ? 1 : 0;
		case OPT_VERSION:
			printf("iou_tls (ioucontext) %s\n", IOU_VERSION_STRING);
			return fflush(stdout) ? 1 : 0;
		case ':':
			return bad_usage("option '%s' needs an argument", argv[optind - 1]);
		default:
			if (optopt)
				return bad_usage("unknown option '-%c'", optopt);
			return bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind == argc)
		return bad_usage("no HOST given");
	if (argc - optind > 1)
		return bad_usage("unexpected argument '%s'", argv[optind + 1]);
	if (!a->certfile != !a->keyfile)
		return bad_usage("--cert and --key go together");
	if (parse_target(p, argv[optind]) != 0)
		return 2;
	if (p->servername && ip_literal(p->servername)) {
		fprintf(stderr,
			"iou_tls: --servername %s: an IP address cannot be verified (rustls checks DNS "
			"names only): give the certificate's DNS name\n",
			p->servername);
		return 2;
	}
	if (!p->servername) {
		if (ip_literal(p->host)) {
			fprintf(stderr,
				"iou_tls: %s: an IP address cannot be verified (rustls checks DNS "
				"names only): give the certificate's name with --servername\n",
				p->host);
			return 2;
		}
		p->servername = p->host;
	}
	p->timeout_s = a->timeout;
	p->timeout_ns = a->timeout > 0 ? llround(a->timeout * 1e9) : 0;
	return ARGS_RUN;
}

/* ---- main --------------------------------------------------------------- */

#ifndef IOU_EXAMPLE_NO_MAIN
int main(int argc, char **argv)
{
	static struct program prog;
	struct program *p = &prog;
	struct args a = { .timeout = DEFAULT_TIMEOUT };
	struct iou_tls_client_options opts;
	char why[IOU_TLS_REASON_MAX];
	sigset_t sigs;
	int ret;

	p->fd = -1;
	p->sigfd = -1;
	if ((ret = parse_args(argc, argv, p, &a)) != ARGS_RUN)
		goto usage_out;

	/*
	 * A closed stdin or stdout must stay an error, not become the next
	 * descriptor we create (sending our own signalfd, say): hold each such
	 * slot with /dev/null and remember which were closed.
	 */
	for (int fd = 0; fd < 3; fd++) {
		bool closed = fcntl(fd, F_GETFD) < 0;

		if (closed && open("/dev/null", O_RDWR) != fd)
			return 1;
		if (fd == STDIN_FILENO)
			p->stdin_closed = closed;
		else if (fd == STDOUT_FILENO)
			p->stdout_closed = closed;
	}

	iou_tls_client_options_init(&opts);
	opts.cafile = a.cafile;
	opts.certfile = a.certfile;
	opts.keyfile = a.keyfile;
	opts.alpn = a.nalpn ? a.alpn : NULL;
	why[0] = '\0';
	ret = iou_tls_client_config_new(&opts, &p->cfg, why, sizeof(why));
	if (ret < 0) {
		/* The reason names the file and what was wrong with it. */
		fprintf(stderr, "iou_tls: cannot load the TLS configuration: %s\n",
			why[0] ? why : iou_strerror(ret));
		ret = 1;
		goto usage_out;
	}

	/*
	 * Signals become readable on a signalfd.  They must be blocked before
	 * the reactor exists: fibers switch without touching the signal mask.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0 ||
	    (p->sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		fprintf(stderr, "iou_tls: signalfd: %s\n", strerror(errno));
		ret = 1;
		goto config_out;
	}
	/* A vanished reader of our output is -EPIPE from the write, not death. */
	signal(SIGPIPE, SIG_IGN);

	p->r = reactor_get();
	p->upbuf = malloc(CHUNK);
	p->downbuf = malloc(CHUNK);
	if (!p->r || !p->upbuf || !p->downbuf) {
		struct reactor *unused;

		ret = p->r ? -ENOMEM : reactor_create(NULL, &unused);
		fprintf(stderr, "iou_tls: setting up: %s\n", iou_strerror(ret));
		ret = 1;
		goto reactor_out;
	}
	if ((ret = fiber_spawn(p->r, watcher, p, &p->watcher)) < 0 ||
	    (ret = fiber_spawn(p->r, session, p, &p->session)) < 0) {
		fprintf(stderr, "iou_tls: cannot start a fiber: %s\n", iou_strerror(ret));
		fiber_cancel(p->watcher);
		reactor_run(p->r);
		p->status = 1;
	} else {
		ret = reactor_run(p->r);
		if (ret < 0)
			fail(p, "iou_tls: reactor_run: %s", iou_strerror(ret));
		fiber_join(p->session, NULL);
	}
	if (p->watcher)
		fiber_join(p->watcher, NULL);
	if (p->msg[0] && !p->signo)
		fprintf(stderr, "%s\n", p->msg);
	ret = p->signo ? 128 + p->signo : p->status;
reactor_out:
	free(p->upbuf);
	free(p->downbuf);
	if (p->r) {
		iou_dns_close(p->r);
		reactor_destroy(p->r);
	}
	if (p->sigfd >= 0)
		close(p->sigfd);
config_out:
	iou_tls_config_free(p->cfg);
usage_out:
	free_args(&a);
	return ret;
}
#endif
