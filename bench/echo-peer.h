/* SPDX-License-Identifier: MIT */
/*
 * What the echo peers (echo-epoll, echo-libuv, echo-uring) share: the
 * command line "[-a ADDR] [-p PORT] [-h]", the raised descriptor limit, the
 * TCP listening socket and the UDP socket on the same port, the one
 * "listening" line, fatal start-up errors (one line, exit 1) and the
 * blocked stop signals read through a signalfd.  Header-only; define
 * PEER_NAME (the program's name) before including it.
 */
#ifndef ECHO_PEER_H
#define ECHO_PEER_H

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef PEER_NAME
#error "define PEER_NAME before including echo-peer.h"
#endif

/* With -p 0, how often to pick a new port if UDP finds the TCP one taken. */
#define PEER_PORT_TRIES 16

/* The two sockets and how to name them in the "listening" line. */
struct peer {
	int tcp, udp;	       /* listening TCP socket, bound UDP socket */
	char host[NI_MAXHOST]; /* the bound address, numeric */
	unsigned port;	       /* the bound port (learned when -p 0) */
};

/* A start-up error: "NAME: reason" on stderr, exit status 1. */
__attribute__((noreturn, format(printf, 1, 2))) static inline void peer_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs(PEER_NAME ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

__attribute__((noreturn)) static inline void peer_help(void)
{
	fputs("usage: " PEER_NAME " [-a ADDR] [-p PORT] [-h]\n"
	      "Single-threaded echo server (RFC 862) on TCP and UDP on one port.\n"
	      "  -a ADDR  numeric IPv4 or IPv6 address (default 127.0.0.1)\n"
	      "  -p PORT  port (default 0: the kernel picks one)\n"
	      "Prints \"" PEER_NAME ": listening on ADDR port PORT\" when ready;\n"
	      "runs until SIGINT or SIGTERM, then exits 0.\n",
	      stdout);
	exit(0);
}

/* One socket of @type bound to @sa (and listening, for TCP), or -errno. */
static inline int peer_socket(const struct sockaddr *sa, socklen_t len, int type, int flags)
{
	int fd = socket(sa->sa_family, type | SOCK_CLOEXEC | flags, 0), one = 1;

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, sa, len) < 0 || (type == SOCK_STREAM && listen(fd, SOMAXCONN) < 0)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/*
 * Parse the command line, raise RLIMIT_NOFILE, ignore SIGPIPE, and open the
 * TCP and UDP sockets (with @sock_flags, e.g. SOCK_NONBLOCK) into @p.
 * Exits 2 on a usage error and 1 on any other error.
 */
static inline void peer_setup(int argc, char **argv, struct peer *p, int sock_flags)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_PASSIVE,
				  .ai_socktype = SOCK_STREAM };
	const char *addr = "127.0.0.1";
	struct sockaddr_storage ss;
	struct addrinfo *res;
	unsigned long port = 0;
	struct rlimit rl;
	socklen_t len;
	char *end;
	int c, err = 0;

	while ((c = getopt(argc, argv, ":a:p:h")) != -1) {
		switch (c) {
		case 'a':
			addr = optarg;
			break;
		case 'p':
			errno = 0;
			port = strtoul(optarg, &end, 10);
			if (*optarg < '0' || *optarg > '9' || *end || errno || port > 65535) {
				fprintf(stderr, PEER_NAME ": bad port '%s'\n", optarg);
				exit(2);
			}
			break;
		case 'h':
			peer_help();
		case ':':
			fprintf(stderr, PEER_NAME ": option '-%c' needs a value\n", optopt);
			exit(2);
		default:
			fprintf(stderr, PEER_NAME ": bad option '-%c' (see -h)\n", optopt);
			exit(2);
		}
	}
	if (optind != argc) {
		fprintf(stderr, PEER_NAME ": unexpected argument '%s' (see -h)\n", argv[optind]);
		exit(2);
	}
	if (getaddrinfo(addr, NULL, &hints, &res) != 0) {
		fprintf(stderr, PEER_NAME ": '%s' is not a numeric IPv4 or IPv6 address\n", addr);
		exit(2);
	}
	memcpy(&ss, res->ai_addr, res->ai_addrlen);
	len = res->ai_addrlen;
	freeaddrinfo(res);

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	/* A client that resets must cost an EPIPE, never the process. */
	signal(SIGPIPE, SIG_IGN);

	/* Port 0: TCP learns a port, UDP binds the same one (retry if taken). */
	for (int tries = 0; tries < PEER_PORT_TRIES; tries++) {
		struct sockaddr_storage bound;
		socklen_t blen = sizeof(bound);
		in_port_t *pp = ss.ss_family == AF_INET6 ?
					&((struct sockaddr_in6 *)&ss)->sin6_port :
					&((struct sockaddr_in *)&ss)->sin_port;

		*pp = htons((in_port_t)port);
		p->tcp = peer_socket((struct sockaddr *)&ss, len, SOCK_STREAM, sock_flags);
		if (p->tcp < 0)
			peer_fail("TCP %s port %lu: %s", addr, port, strerror(-p->tcp));
		if (getsockname(p->tcp, (struct sockaddr *)&bound, &blen) < 0)
			peer_fail("getsockname: %s", strerror(errno));
		*pp = ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port :
						 ((struct sockaddr_in *)&bound)->sin_port;
		p->port = ntohs(*pp);
		p->udp = peer_socket((struct sockaddr *)&ss, len, SOCK_DGRAM, sock_flags);
		if (p->udp >= 0)
			break;
		err = -p->udp;
		close(p->tcp);
		if (port != 0 || err != EADDRINUSE)
			break;
	}
	if (p->udp < 0)
		peer_fail("UDP %s port %u: %s", addr, p->port, strerror(err));
	if (getnameinfo((struct sockaddr *)&ss, len, p->host, sizeof(p->host), NULL, 0,
			NI_NUMERICHOST) != 0)
		snprintf(p->host, sizeof(p->host), "%s", addr);
}

/* The one line that says the server is ready. */
static inline void peer_ready(const struct peer *p)
{
	printf(PEER_NAME ": listening on %s port %u\n", p->host, p->port);
	fflush(stdout);
}

/* Block SIGINT and SIGTERM and return a non-blocking signalfd for them. */
static inline int peer_signalfd(void)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 ||
	    (fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
		peer_fail("signalfd: %s", strerror(errno));
	return fd;
}

#endif
