/* SPDX-License-Identifier: MIT */
/*
 * iou_dns: host(1)-style lookups on ioucontext and c-ares.  Each NAME
 * argument is resolved to its addresses (A and AAAA, or one family with -4
 * or -6), each IPv4 or IPv6 ADDRESS argument to its name (PTR), all at once,
 * one fiber per argument (up to 4096 at a time); the answers are printed in
 * the order of the arguments.  Without arguments, names are read from
 * standard input, one per line, and resolved by --workers fibers.  Both
 * modes share one bounded reorder window of N slots, each served by its own
 * worker fiber: name k goes to slot k mod N, whose worker resolves it, and a
 * printer fiber emits the slots in input order as they complete; the feeder
 * (the stdin reader, or a walk over the arguments) waits while its next slot
 * is still unprinted.  Memory thus stays bounded by the window, whatever the
 * input's length, and output streams as the input is read.  Reading
 * standard input, writing the answers and waiting for SIGINT and SIGTERM on
 * a signalfd all go through the library.
 *
 * Timeouts: --timeout SEC is a deadline (fiber_set_deadline()) on each
 * lookup, waiting in the resolver's queue and any TCP retry included.
 * Within it c-ares tries each server twice, for SEC/3 and then 2*SEC/3
 * (c-ares doubles the wait each round), so that one lost datagram is
 * retried in time.  On a stop (signal, write error) and at the end the
 * resolver is closed, so that queries c-ares still owes end at once.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
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

#define EXAMPLE_NAME "iou_dns"
#include "usage.h"
#include <ioucontext/dns.h>
#include <ioucontext/ioucontext.h>

/* Longest name taken from a line of input; longer ones fail as invalid. */
#define NAME_CAP 1024
/* Bytes asked of one read of standard input. */
#define READ_CHUNK ((size_t)64 << 10)
/* Output buffered before a write (a line never comes close). */
#define OUT_CAP ((size_t)64 << 10)
/* Room for the longest line we print: a name, a reason or a PTR name. */
#define LINE_CAP (NAME_CAP + NI_MAXHOST + 128)

#define DEFAULT_WORKERS 64
#define MAX_WORKERS 65536
/* Window for arguments unless --workers says otherwise. */
#define ARGS_WINDOW 4096
#define DEFAULT_TIMEOUT 10.0
/* Longest --server value list we build (each entry is normalised). */
#define SERVERS_CAP 4096

/* getopt_long's value for --version, which has no short form. */
#define OPT_VERSION 256

/* Where a slot of the reorder window is in its cycle. */
enum state {
	FREE,	/* printed (or never used): the reader may fill it */
	FILLED, /* holds a name: its worker resolves it */
	DONE,	/* holds an answer: the printer prints it when its turn comes */
};

/* One slot of the reorder window and the worker fiber that serves it. */
struct slot {
	struct program *prog; /* back pointer for the shared state */
	struct fiber *worker; /* joinable, so the handle stays valid for cancel/unpark */
	enum state state;     /* see enum state */
	const char *name;     /* the NAME or ADDRESS: into argv or into buf */
	bool bad;	      /* the input line was too long or held a NUL byte */
	bool reverse;	      /* name is an address literal: PTR lookup */
	int err;	      /* 0, or why the lookup failed (iou_strerror) */
	struct addrinfo *res; /* forward answer, owned until printed */
	char ptr[NI_MAXHOST]; /* reverse answer */
	char *buf;	      /* NAME_CAP + 1 bytes for the name, in stdin mode */
};

/* What the fibers share; lives in main. */
struct program {
	struct reactor *r;
	int family;	    /* AF_UNSPEC, or AF_INET / AF_INET6 for -4 / -6 */
	int64_t timeout_ns; /* per-lookup deadline; 0: none */
	char **names;	    /* NAME arguments, or NULL: read standard input */
	unsigned nnames;    /* how many */
	unsigned nslots;    /* window size */
	struct slot *slots;
	uint64_t next_seq;	 /* names handed out so far */
	uint64_t printed;	 /* names printed so far */
	bool eof;		 /* no more names come: next_seq is the total */
	bool stopping;		 /* a signal or a write error: everyone unwinds */
	bool reader_waiting;	 /* the reader is parked on a busy slot */
	bool printer_waiting;	 /* the printer is parked on an unfinished slot */
	struct fiber *reader;	 /* feeds the names to the slots */
	struct fiber *printer;	 /* prints answers in order */
	struct fiber *watcher;	 /* reads the signalfd */
	int sigfd;		 /* signalfd for SIGINT and SIGTERM */
	int signo;		 /* the signal that stopped us, or 0 */
	int status;		 /* exit status unless a signal stopped us */
	bool stdin_closed;	 /* fd 0 was closed when we started */
	bool stdout_closed;	 /* fd 1 was closed when we started */
	char *out;		 /* stdout buffer (OUT_CAP bytes) */
	size_t out_len;		 /* bytes in it */
	char line[NAME_CAP + 1]; /* the input line being assembled */
	size_t line_len;	 /* its length (capped at NAME_CAP) */
	bool line_long;		 /* it is longer than NAME_CAP */
};

static const char usage_text[] =
	"Usage: iou_dns [OPTION]... [NAME|ADDRESS]...\n"
	"Look up each NAME's addresses and each ADDRESS's name (PTR) through io_uring\n"
	"and c-ares, all at once, and print the answers in host(1)'s format in the\n"
	"order of the arguments:\n"
	"\n"
	"  NAME has address 192.0.2.1\n"
	"  NAME has IPv6 address 2001:db8::1\n"
	"  192.0.2.1 domain name pointer NAME.\n"
	"\n"
	"Failures go to standard error as \"Host NAME not found: REASON\".  With no\n"
	"argument, names (or addresses) are read from standard input, one per line,\n"
	"and the answers are printed in input order as they come, with at most\n"
	"--workers lookups in flight.\n"
	"\n"
	"  -s, --server=ADDR[:PORT]  ask this DNS server (an IPv6 address with a port\n"
	"                            as [ADDR]:PORT); repeat the option or separate\n"
	"                            servers by commas for several; default: those\n"
	"                            of /etc/resolv.conf\n"
	"  -t, --timeout=SEC         give up on a lookup after SEC seconds (fractions\n"
	"                            allowed; default 10; 0: no limit, c-ares's own\n"
	"                            retry schedule alone)\n"
	"  -4                        look up IPv4 addresses (A records) only\n"
	"  -6                        look up IPv6 addresses (AAAA records) only\n"
	"  -w, --workers=N           lookups in flight at once (1-65536; default: 64\n"
	"                            for standard input, one per argument up to\n"
	"                            4096 for arguments)\n"
	"  -h, --help                display this help and exit\n"
	"      --version             output version information and exit\n"
	"\n"
	"Within --timeout, c-ares tries each server twice: first for a third of\n"
	"SEC, then for the remaining two thirds.\n"
	"\n"
	"Exit status: 0 if every lookup succeeded, 1 if any failed (or output\n"
	"failed), 2 on a usage error, 128+N when stopped by signal N (INT, TERM).\n"
	"\n"
	"Example: iou_dns --server 127.0.0.1:5353 example.com 192.0.2.1\n";

/* ---- output ------------------------------------------------------------- */

/* Write out what stdout's buffer holds. */
static int flush_out(struct program *p)
{
	ssize_t ret;

	if (!p->out_len)
		return 0;
	if (p->stdout_closed) {
		p->out_len = 0;
		return -EBADF;
	}
	ret = iou_write_all(p->r, STDOUT_FILENO, p->out, p->out_len, NULL);
	p->out_len = 0;
	return ret < 0 ? (int)ret : 0;
}

/* Append one formatted line to stdout's buffer, writing it out when full. */
__attribute__((format(printf, 2, 3))) static int out_line(struct program *p, const char *fmt, ...)
{
	char line[LINE_CAP];
	va_list ap;
	int n, ret;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= sizeof(line)) { /* cannot happen with our caps; keep it a line */
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (p->out_len + (size_t)n > OUT_CAP && (ret = flush_out(p)) < 0)
		return ret;
	memcpy(p->out + p->out_len, line, (size_t)n);
	p->out_len += (size_t)n;
	return 0;
}

/*
 * One line on stderr.  Whatever stdout holds goes out first, so that a
 * terminal showing both sees the answers in order.
 */
__attribute__((format(printf, 2, 3))) static int err_line(struct program *p, const char *fmt, ...)
{
	char line[LINE_CAP];
	va_list ap;
	int n, ret;

	ret = flush_out(p);
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return ret;
	if ((size_t)n >= sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	iou_write_all(p->r, STDERR_FILENO, line, (size_t)n, NULL);
	return ret;
}

/* ---- stopping ----------------------------------------------------------- */

/*
 * Stop every fiber: each one's current or next blocking call fails with
 * -ECANCELED and it unwinds.  Cancelling the caller itself is allowed.
 * Closing the resolver ends the queries the workers abandon at once,
 * rather than when c-ares would time them out.
 */
static void stop_all(struct program *p)
{
	p->stopping = true;
	iou_dns_close(p->r);
	if (p->reader)
		fiber_cancel(p->reader);
	for (unsigned i = 0; i < p->nslots; i++) {
		if (p->slots[i].worker)
			fiber_cancel(p->slots[i].worker);
	}
	if (p->printer)
		fiber_cancel(p->printer);
	if (p->watcher)
		fiber_cancel(p->watcher);
}

static void *watcher(void *arg)
{
	struct program *p = arg;
	struct signalfd_siginfo si;

	if (example_read_signal(p->r, p->sigfd, &si) == (ssize_t)sizeof(si)) {
		p->signo = (int)si.ssi_signo;
		stop_all(p);
	}
	return NULL;
}

/* ---- lookups ------------------------------------------------------------ */

static struct slot *slot_of(struct program *p, uint64_t seq)
{
	return &p->slots[seq % p->nslots];
}

/* Resolve @s's name into @s->res or @s->ptr, or say why not in @s->err. */
static void resolve(struct program *p, struct slot *s)
{
	struct reactor *r = p->r;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct addrinfo hints = { .ai_family = p->family, .ai_socktype = SOCK_STREAM };

	s->res = NULL;
	s->ptr[0] = '\0';
	s->reverse = false;
	if (s->bad) {
		s->err = IOU_EDNS_BADNAME;
		return;
	}
	/*
	 * The deadline covers the whole lookup, waiting in the library's
	 * queue and any TCP retry included; it must not outlive it, or it
	 * would end our next fiber_park() too.
	 */
	fiber_set_deadline(r,
			   p->timeout_ns ? iou_deadline_after(p->timeout_ns) : IOU_DEADLINE_NEVER);
	if (inet_pton(AF_INET, s->name, &sin.sin_addr) == 1) {
		s->reverse = true;
		s->err = iou_dns_reverse(r, (struct sockaddr *)&sin, sizeof(sin), s->ptr,
					 sizeof(s->ptr));
	} else if (inet_pton(AF_INET6, s->name, &sin6.sin6_addr) == 1) {
		s->reverse = true;
		s->err = iou_dns_reverse(r, (struct sockaddr *)&sin6, sizeof(sin6), s->ptr,
					 sizeof(s->ptr));
	} else {
		s->err = iou_dns_lookup(r, s->name, NULL, &hints, &s->res);
		if (s->err < 0)
			s->res = NULL; /* never trust an out-parameter after failure */
	}
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
}

/* The body of slot @arg's worker: resolve each name put into the slot. */
static void *worker(void *arg)
{
	struct slot *s = arg;
	struct program *p = s->prog;

	for (;;) {
		while (s->state != FILLED) {
			/* A slot that holds an answer is the printer's now. */
			if (p->eof || p->stopping)
				return NULL;
			if (fiber_park(p->r, IOU_DEADLINE_NEVER) < 0)
				return NULL;
		}
		resolve(p, s);
		if (fiber_cancelled(p->r))
			return NULL; /* stopped: main frees what the slot holds */
		s->state = DONE;
		if (p->printer_waiting && s == slot_of(p, p->printed))
			fiber_unpark(p->printer);
	}
}

/* ---- printing ----------------------------------------------------------- */

/* True if @ai's address already appeared in the list before it. */
static bool seen_before(const struct addrinfo *list, const struct addrinfo *ai)
{
	for (const struct addrinfo *a = list; a != ai; a = a->ai_next) {
		if (a->ai_family == ai->ai_family && a->ai_addrlen == ai->ai_addrlen &&
		    memcmp(a->ai_addr, ai->ai_addr, ai->ai_addrlen) == 0)
			return true;
	}
	return false;
}

/* The host(1) lines for a forward answer; -ENODATA if it held no address. */
static int print_addresses(struct program *p, const struct slot *s)
{
	char text[INET6_ADDRSTRLEN];
	int lines = 0, ret;

	for (const struct addrinfo *ai = s->res; ai; ai = ai->ai_next) {
		const void *bytes;
		const char *what;

		if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
			bytes = &((const struct sockaddr_in *)ai->ai_addr)->sin_addr;
			what = "address";
		} else if (ai->ai_family == AF_INET6 &&
			   ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
			bytes = &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
			what = "IPv6 address";
		} else {
			continue;
		}
		if (seen_before(s->res, ai) || !inet_ntop(ai->ai_family, bytes, text, sizeof(text)))
			continue;
		if ((ret = out_line(p, "%s has %s %s\n", s->name, what, text)) < 0)
			return ret;
		lines++;
	}
	return lines ? 0 : -ENODATA;
}

/* Print @s's answer or its failure; -errno only if writing stdout failed. */
static int print_slot(struct program *p, struct slot *s)
{
	int err = s->err, ret = 0;

	if (!err && s->reverse)
		return out_line(p, "%s domain name pointer %s.\n", s->name, s->ptr);
	if (!err) {
		ret = print_addresses(p, s);
		if (ret != -ENODATA)
			return ret;
		err = IOU_EDNS_NODATA;
	}
	/* Our own deadline ran out: to the user that is the resolver timing out. */
	if (err == -ETIMEDOUT)
		err = IOU_EDNS_TIMEOUT;
	p->status = 1;
	return err_line(p, "Host %s not found: %s\n", s->name, iou_strerror(err));
}

/* Prints the slots in order as their answers arrive, then ends the watcher. */
static void *printer(void *arg)
{
	struct program *p = arg;
	int ret;

	while (!(p->eof && p->printed == p->next_seq)) {
		struct slot *s = slot_of(p, p->printed);

		if (s->state != DONE) {
			/*
			 * Nothing to print for a while, maybe: show what we
			 * have.  The write suspends us, so look again after it.
			 */
			if (p->out_len) {
				if ((ret = flush_out(p)) < 0)
					goto write_error;
				continue;
			}
			p->printer_waiting = true;
			ret = fiber_park(p->r, IOU_DEADLINE_NEVER);
			p->printer_waiting = false;
			if (ret < 0)
				return NULL; /* stopped */
			continue;
		}
		ret = print_slot(p, s);
		iou_dns_freeaddrinfo(s->res);
		s->res = NULL;
		s->state = FREE;
		p->printed++;
		if (ret < 0)
			goto write_error;
		if (p->reader_waiting)
			fiber_unpark(p->reader);
	}
	if ((ret = flush_out(p)) < 0)
		goto write_error;
	/* All done: release the resolver's sockets and fibers now. */
	iou_dns_close(p->r);
	fiber_cancel(p->watcher); /* nothing left to guard */
	return NULL;

write_error:
	if (ret != -ECANCELED) {
		char line[128];
		int n = snprintf(line, sizeof(line), "iou_dns: write error: %s\n",
				 iou_strerror(ret));

		iou_write_all(p->r, STDERR_FILENO, line, (size_t)n, NULL);
		p->status = 1;
	}
	stop_all(p);
	return NULL;
}

/* ---- reading standard input ---------------------------------------------- */

/*
 * One read that returns as soon as anything arrives (so names typed or
 * piped in slowly are resolved at once), waiting for readiness on an
 * O_NONBLOCK descriptor.
 */
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

/* The slot for the next name, once its previous name has been printed. */
static int claim_slot(struct program *p, struct slot **out)
{
	struct slot *s = slot_of(p, p->next_seq);
	int ret;

	while (s->state != FREE) {
		p->reader_waiting = true;
		ret = fiber_park(p->r, IOU_DEADLINE_NEVER);
		p->reader_waiting = false;
		if (ret < 0)
			return ret;
	}
	*out = s;
	return 0;
}

/* Hand the filled slot @s to its worker. */
static void hand_over(struct program *p, struct slot *s)
{
	s->state = FILLED;
	p->next_seq++;
	fiber_unpark(s->worker);
}

/*
 * What becomes of each name read from standard input: @len bytes at @name
 * (1 to NAME_CAP, trimmed), @bad if the line was longer than NAME_CAP or
 * held a NUL byte.  Returns 0 or -errno.
 */
typedef int name_fn(struct program *p, const char *name, size_t len, bool bad);

/* The program's name_fn: the name goes to the next slot's worker. */
static int submit_name(struct program *p, const char *name, size_t len, bool bad)
{
	struct slot *s;
	int ret;

	if ((ret = claim_slot(p, &s)) < 0)
		return ret;
	memcpy(s->buf, name, len);
	s->buf[len] = '\0';
	s->name = s->buf;
	s->bad = bad;
	hand_over(p, s);
	return 0;
}

/*
 * The line assembled so far is complete: hand its name to @fn.  Blank
 * lines are skipped; surrounding white space goes (take_input() already
 * dropped the leading part).
 */
static int end_line(struct program *p, name_fn *fn)
{
	char *end = p->line + p->line_len;
	bool bad = p->line_long;
	size_t len;

	while (end > p->line && isspace((unsigned char)end[-1]))
		end--;
	p->line_len = 0;
	p->line_long = false;
	len = (size_t)(end - p->line);
	if (len == 0)
		return 0;
	return fn(p, p->line, len, bad || memchr(p->line, '\0', len));
}

/*
 * Split a chunk of input into lines, handing each complete one to @fn.  A
 * line's leading white space is never stored, and past NAME_CAP bytes only
 * a byte that is not white space makes the line too long: so the cap
 * applies to the name itself, however much white space surrounds it.
 */
static int take_input(struct program *p, const char *data, size_t n, name_fn *fn)
{
	while (n > 0) {
		const char *nl = memchr(data, '\n', n);
		size_t part = nl ? (size_t)(nl - data) : n, used = part, room;
		const char *from = data;
		int ret;

		if (p->line_len == 0) {
			while (part > 0 && isspace((unsigned char)*from)) {
				from++;
				part--;
			}
		}
		room = NAME_CAP - p->line_len;
		if (part > room) {
			for (size_t i = room; i < part && !p->line_long; i++)
				p->line_long = !isspace((unsigned char)from[i]);
			part = room;
		}
		memcpy(p->line + p->line_len, from, part);
		p->line_len += part;
		if (!nl)
			return 0;
		if ((ret = end_line(p, fn)) < 0)
			return ret;
		data += used + 1;
		n -= used + 1;
	}
	return 0;
}

/* Feed the lines of standard input to the slots; 0 at its end, or -errno. */
static int feed_stdin(struct program *p)
{
	char *buf = malloc(READ_CHUNK);
	ssize_t n = -ENOMEM;

	while (buf) {
		n = p->stdin_closed ? -EBADF : read_some(p->r, STDIN_FILENO, buf, READ_CHUNK);
		if (n <= 0)
			break;
		if ((n = take_input(p, buf, (size_t)n, submit_name)) < 0)
			break;
	}
	free(buf);
	if (n == 0) /* a last line without a newline */
		n = end_line(p, submit_name);
	return (int)n;
}

/* Feed the arguments to the slots. */
static int feed_args(struct program *p)
{
	for (unsigned i = 0; i < p->nnames; i++) {
		struct slot *s;
		int ret = claim_slot(p, &s);

		if (ret < 0)
			return ret;
		s->name = p->names[i];
		s->bad = false;
		hand_over(p, s);
	}
	return 0;
}

static void *reader(void *arg)
{
	struct program *p = arg;
	int ret = p->names ? feed_args(p) : feed_stdin(p);

	if (ret < 0) {
		char line[128];
		int n;

		if (fiber_cancelled(p->r))
			return NULL; /* stopped */
		/*
		 * Straight to stderr: stdout's buffer is the printer's alone.
		 * The names read so far still get their answers.
		 */
		n = snprintf(line, sizeof(line), "iou_dns: standard input: %s\n",
			     iou_strerror(ret));
		iou_write_all(p->r, STDERR_FILENO, line, (size_t)n, NULL);
		p->status = 1;
	}
	/* The names fed so far are all there is: let everyone finish. */
	p->eof = true;
	for (unsigned i = 0; i < p->nslots; i++)
		fiber_unpark(p->slots[i].worker);
	fiber_unpark(p->printer);
	return NULL;
}

/* ---- options ------------------------------------------------------------ */

/*
 * Check one --server entry and append it to @list in a form the resolver
 * takes without guessing: "ADDR:PORT" or "[ADDR6]:PORT" (53 by default).
 */
static int add_server(char *list, const char *entry, size_t elen)
{
	char host[INET6_ADDRSTRLEN + 1], port[8] = "53", item[80];
	unsigned char bytes[sizeof(struct in6_addr)];
	const char *colon, *p = entry, *end = entry + elen;
	size_t hlen;
	bool six;

	if (elen == 0)
		return bad_usage("empty --server entry");
	if (*p == '[') {
		const char *close = memchr(p, ']', elen);

		if (!close || (size_t)(close - p - 1) >= sizeof(host))
			return bad_usage("bad --server '%.*s': '[' without ']'", (int)elen, entry);
		memcpy(host, p + 1, (size_t)(close - p - 1));
		host[close - p - 1] = '\0';
		colon = close + 1 < end ? close + 1 : NULL;
		if (colon && *colon != ':')
			return bad_usage("bad --server '%.*s': ':PORT' must follow ']'", (int)elen,
					 entry);
		six = true;
	} else {
		colon = memchr(p, ':', elen);
		/* Two colons: a bare IPv6 address, which takes no port. */
		if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1)))
			colon = NULL;
		hlen = colon ? (size_t)(colon - p) : elen;
		if (hlen >= sizeof(host))
			return bad_usage("bad --server '%.*s': not an IP address", (int)elen,
					 entry);
		memcpy(host, p, hlen);
		host[hlen] = '\0';
		six = strchr(host, ':') != NULL;
	}
	if (inet_pton(six ? AF_INET6 : AF_INET, host, bytes) != 1)
		return bad_usage("bad --server '%.*s': '%s' is not an IP%s address", (int)elen,
				 entry, host, six ? "v6" : "v4");
	if (colon) {
		size_t plen = (size_t)(end - colon - 1);
		unsigned long v = 0;

		if (plen == 0 || plen > 5)
			return bad_usage("bad --server '%.*s': bad port", (int)elen, entry);
		for (size_t i = 0; i < plen; i++) {
			if (!isdigit((unsigned char)colon[1 + i]))
				return bad_usage("bad --server '%.*s': bad port", (int)elen, entry);
			v = v * 10 + (unsigned long)(colon[1 + i] - '0');
		}
		if (v == 0 || v > 65535)
			return bad_usage("bad --server '%.*s': port out of range", (int)elen,
					 entry);
		snprintf(port, sizeof(port), "%lu", v);
	}
	snprintf(item, sizeof(item), six ? "[%s]:%s" : "%s:%s", host, port);
	if (strlen(list) + strlen(item) + 2 > SERVERS_CAP)
		return bad_usage("too many --server entries");
	if (*list)
		strcat(list, ",");
	strcat(list, item);
	return 0;
}

static int parse_servers(char *list, const char *arg)
{
	for (;;) {
		const char *comma = strchr(arg, ',');
		size_t len = comma ? (size_t)(comma - arg) : strlen(arg);
		int ret = add_server(list, arg, len);

		if (ret)
			return ret;
		if (!comma)
			return 0;
		arg = comma + 1;
	}
}

static int parse_workers(const char *s, unsigned *out)
{
	unsigned long v;

	if (parse_uint(s, MAX_WORKERS, &v) < 0 || v < 1)
		return bad_usage("--workers '%s' must be a number from 1 to %d", s, MAX_WORKERS);
	*out = (unsigned)v;
	return 0;
}

/*
 * The resolver's own retries fit within the per-lookup deadline: two tries
 * per server, the first waiting a third of it and the second (c-ares
 * doubles the wait each round) the other two thirds, so that one lost
 * datagram still gets a second chance.  The deadline itself stays the hard
 * bound, whatever c-ares does.
 */
static int configure(struct program *p, const char *servers, double timeout)
{
	struct iou_dns_options opts;

	iou_dns_options_init(&opts);
	if (*servers)
		opts.servers = servers;
	if (timeout > 0) {
		opts.tries = 2;
		opts.timeout_ms = (int)(timeout * 1000.0 / 3.0);
		if (opts.timeout_ms < 1)
			opts.timeout_ms = 1;
	}
	return iou_dns_configure(p->r, &opts);
}

/* ---- main --------------------------------------------------------------- */

/* Start the fibers; on failure, stop those already started. */
static int start(struct program *p)
{
	int ret;

	if ((ret = fiber_spawn(p->r, printer, p, &p->printer)) < 0 ||
	    (ret = fiber_spawn(p->r, watcher, p, &p->watcher)) < 0)
		goto fail;
	for (unsigned i = 0; i < p->nslots; i++) {
		if ((ret = fiber_spawn(p->r, worker, &p->slots[i], &p->slots[i].worker)) < 0)
			goto fail;
	}
	if ((ret = fiber_spawn(p->r, reader, p, &p->reader)) < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "iou_dns: cannot start a fiber: %s\n", iou_strerror(ret));
	stop_all(p);
	return ret;
}

/* Free the window with whatever answers a stop left unprinted. */
static void free_slots(struct program *p)
{
	for (unsigned i = 0; p->slots && i < p->nslots; i++) {
		iou_dns_freeaddrinfo(p->slots[i].res);
		free(p->slots[i].buf);
	}
	free(p->slots);
	p->slots = NULL;
}

static void join(struct fiber *f)
{
	if (f)
		fiber_join(f, NULL);
}

/* parse_args()'s value when the program should go on and run. */
#define ARGS_RUN (-1)

/*
 * The command line into @p (family, names, window size, per-lookup
 * deadline), the --server list into @servers (SERVERS_CAP bytes, zeroed by
 * the caller) and the --timeout into *@timeout.  Return: ARGS_RUN to go
 * on, or the exit status to end with now (0 after --help or --version, 1
 * if printing them failed, 2 on a usage error, its message printed).
 * Allocates nothing.
 */
static int parse_args(int argc, char **argv, struct program *p, char *servers, double *timeout)
{
	static const struct option longopts[] = { { "server", required_argument, NULL, 's' },
						  { "timeout", required_argument, NULL, 't' },
						  { "workers", required_argument, NULL, 'w' },
						  { "help", no_argument, NULL, 'h' },
						  { "version", no_argument, NULL, OPT_VERSION },
						  { NULL, 0, NULL, 0 } };
	unsigned workers = 0; /* not given */
	int opt, ret;

	opterr = 0; /* usage errors get one line of ours instead */
	while ((opt = getopt_long(argc, argv, ":s:t:w:46h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			if ((ret = parse_servers(servers, optarg)) != 0)
				return ret;
			break;
		case 't':
			if ((ret = parse_seconds("--timeout", optarg, timeout)) != 0)
				return ret;
			break;
		case 'w':
			if ((ret = parse_workers(optarg, &workers)) != 0)
				return ret;
			break;
		case '4':
		case '6':
			if (p->family != AF_UNSPEC &&
			    p->family != (opt == '4' ? AF_INET : AF_INET6))
				return bad_usage("-4 and -6 exclude each other");
			p->family = opt == '4' ? AF_INET : AF_INET6;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return fflush(stdout) ? 1 : 0;
		case OPT_VERSION:
			printf("iou_dns (ioucontext) %s\n", IOU_VERSION_STRING);
			return fflush(stdout) ? 1 : 0;
		case ':':
			return bad_usage("option '%s' needs an argument", argv[optind - 1]);
		default:
			if (optopt)
				return bad_usage("unknown option '-%c'", optopt);
			return bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc) {
		p->names = argv + optind;
		p->nnames = (unsigned)(argc - optind);
		if (!workers)
			workers = p->nnames < ARGS_WINDOW ? p->nnames : ARGS_WINDOW;
	} else if (!workers) {
		workers = DEFAULT_WORKERS;
	}
	p->nslots = workers;
	p->timeout_ns = *timeout > 0 ? llround(*timeout * 1e9) : 0;
	return ARGS_RUN;
}

#ifndef IOU_EXAMPLE_NO_MAIN
int main(int argc, char **argv)
{
	static char servers[SERVERS_CAP];
	struct program p = { .family = AF_UNSPEC, .sigfd = -1 };
	double timeout = DEFAULT_TIMEOUT;
	sigset_t sigs;
	int ret;

	if ((ret = parse_args(argc, argv, &p, servers, &timeout)) != ARGS_RUN)
		return ret;

	/*
	 * A closed stdin, stdout or stderr must stay an error, not become the
	 * next descriptor we create (reading names from our own signalfd, say):
	 * hold each such slot with /dev/null and remember which were closed.
	 */
	for (int fd = 0; fd < 3; fd++) {
		bool closed = fcntl(fd, F_GETFD) < 0;

		if (closed && open("/dev/null", O_RDWR) != fd)
			return 1;
		if (fd == STDIN_FILENO)
			p.stdin_closed = closed;
		else if (fd == STDOUT_FILENO)
			p.stdout_closed = closed;
	}

	/*
	 * Signals become readable on a signalfd.  They must be blocked before
	 * the reactor exists: fibers switch without touching the signal mask,
	 * and the library does not support changing it once fibers exist.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0 ||
	    (p.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		fprintf(stderr, "iou_dns: signalfd: %s\n", strerror(errno));
		return 1;
	}
	/* A vanished reader shows up as -EPIPE from the write, not as death. */
	signal(SIGPIPE, SIG_IGN);

	p.r = reactor_get();
	if (!p.r) {
		struct reactor *unused;

		ret = reactor_create(NULL, &unused);
		fprintf(stderr, "iou_dns: cannot create the reactor: %s\n", iou_strerror(ret));
		return 1;
	}
	if ((ret = configure(&p, servers, timeout)) < 0) {
		fprintf(stderr, "iou_dns: configuring the resolver: %s\n", iou_strerror(ret));
		reactor_destroy(p.r);
		return ret == IOU_EDNS_CONFIG ? 2 : 1;
	}
	p.slots = calloc(p.nslots, sizeof(*p.slots));
	p.out = malloc(OUT_CAP);
	for (unsigned i = 0; i < p.nslots && p.slots; i++) {
		p.slots[i].prog = &p;
		if (!p.names && !(p.slots[i].buf = malloc(NAME_CAP + 1)))
			free_slots(&p);
	}
	if (!p.slots || !p.out) {
		fprintf(stderr, "iou_dns: out of memory\n");
		free(p.out);
		reactor_destroy(p.r);
		return 1;
	}

	if (start(&p) < 0)
		p.status = 1;
	ret = reactor_run(p.r);
	if (ret < 0) {
		fprintf(stderr, "iou_dns: reactor_run: %s\n", iou_strerror(ret));
		p.status = 1;
	}
	join(p.reader);
	join(p.printer);
	join(p.watcher);
	for (unsigned i = 0; i < p.nslots; i++)
		join(p.slots[i].worker);
	free_slots(&p);
	iou_dns_close(p.r);
	iou_close(p.r, p.sigfd);
	reactor_destroy(p.r);
	free(p.out);
	return p.signo ? 128 + p.signo : p.status;
}
#endif
