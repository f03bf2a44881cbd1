/* SPDX-License-Identifier: MIT */
/*
 * bench-tls: a TLS load client built on OpenSSL (libssl) and plain blocking
 * or poll(2)-driven sockets, independent of ioucontext, so that the same
 * client measures iou_tlsd and its peer (socat OPENSSL-LISTEN ... PIPE) in
 * the same run.  bench/bench-tls.sh drives it.
 *
 *   --mode handshake  N threads, each looping: connect, full handshake
 *                     (certificate and host name verified; sessions are
 *                     never resumed), close_notify both ways, close.
 *                     Result: completed sessions per second.
 *   --mode echo       N connections, one thread each, each keeping up to
 *                     --window bytes in flight: writes of --size bytes
 *                     (16 KiB by default) while reading the echo back and
 *                     checking every byte.  Result: echoed MB/s (10^6
 *                     bytes received back per second, all connections).
 *
 * Every connection is set up before the clock starts; the timed window is
 * --seconds long.  Output: "tls <label>_<name> <value>" lines (see
 * bench.h), plus "#" commentary.  Server CPU comes from /proc/PID/stat
 * (utime+stime and its reaped children's, which counts socat's forks).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_CONNS 1024

struct options {
	const char *host, *port, *servername, *cafile, *label;
	enum {
		MODE_HANDSHAKE,
		MODE_ECHO
	} mode;
	int conns;
	double seconds;
	size_t size, window;
	long server_pid;
	bool tls12;
};

/* What the threads share. */
static struct options opt;
static SSL_CTX *ctx;
static struct addrinfo *target;
static atomic_int ready;     /* threads connected and waiting for the start */
static atomic_bool go;	     /* the timed window has begun */
static atomic_bool done;     /* the timed window is over */
static atomic_long failures; /* failed connections or handshakes */
static char negotiated[128]; /* protocol and cipher of one session */
static mtx_t negotiated_lock;

/* Per-thread results. */
struct worker {
	thrd_t thread;
	long long count; /* handshakes, or bytes echoed back */
	int index;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "bench-tls: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void note_session(SSL *ssl)
{
	mtx_lock(&negotiated_lock);
	if (!negotiated[0])
		snprintf(negotiated, sizeof(negotiated), "%s %s", SSL_get_version(ssl),
			 SSL_get_cipher_name(ssl));
	mtx_unlock(&negotiated_lock);
}

/* A connected TCP socket (blocking, 10 s receive bound), or -1. */
static int dial(void)
{
	int fd = socket(target->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	struct timeval tv = { .tv_sec = 10 };

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, target->ai_addr, target->ai_addrlen) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A verified session over @fd, or NULL. */
static SSL *handshake(int fd)
{
	SSL *ssl = SSL_new(ctx);

	if (!ssl)
		return NULL;
	if (!SSL_set_fd(ssl, fd) || !SSL_set_tlsext_host_name(ssl, opt.servername) ||
	    !SSL_set1_host(ssl, opt.servername) || SSL_connect(ssl) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

/* close_notify both ways: send ours, read until the server's. */
static void goodbye(SSL *ssl)
{
	char buf[4096];

	if (SSL_shutdown(ssl) == 0) {
		while (SSL_read(ssl, buf, sizeof(buf)) > 0)
			;
	}
}

static void wait_for_start(void)
{
	atomic_fetch_add(&ready, 1);
	while (!atomic_load(&go)) {
		struct timespec ts = { .tv_nsec = 200000 };

		nanosleep(&ts, NULL);
	}
}

static int handshake_loop(void *arg)
{
	struct worker *w = arg;

	wait_for_start();
	while (!atomic_load(&done)) {
		int fd = dial();
		SSL *ssl = fd >= 0 ? handshake(fd) : NULL;

		if (!ssl) {
			atomic_fetch_add(&failures, 1);
			ERR_clear_error();
		} else {
			note_session(ssl);
			goodbye(ssl);
			SSL_free(ssl);
			if (!atomic_load(&done))
				w->count++;
		}
		if (fd >= 0)
			close(fd);
	}
	return 0;
}

/* Wait until @fd is ready for what the last SSL call asked for. */
static bool await(int fd, short events)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	return poll(&pfd, 1, 10000) > 0;
}

static int echo_loop(void *arg)
{
	struct worker *w = arg;
	unsigned char *out = malloc(opt.size), *in = malloc(opt.size);
	size_t woff = 0, roff = 0;
	long long sent = 0, got = 0;
	int fd = dial();
	SSL *ssl = fd >= 0 ? handshake(fd) : NULL;

	if (!out || !in || !ssl) {
		atomic_fetch_add(&failures, 1);
		atomic_fetch_add(&ready, 1);
		goto out;
	}
	note_session(ssl);
	for (size_t i = 0; i < opt.size; i++)
		out[i] = (unsigned char)(i * 7 + (size_t)w->index * 13 + 1);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
	wait_for_start();
	while (!atomic_load(&done)) {
		short want = 0;
		bool progress = false;
		int n;

		if (sent - got < (long long)opt.window) {
			n = SSL_write(ssl, out + woff, (int)(opt.size - woff));
			if (n > 0) {
				woff = (woff + (size_t)n) % opt.size;
				sent += n;
				progress = true;
			} else {
				int e = SSL_get_error(ssl, n);

				if (e == SSL_ERROR_WANT_WRITE)
					want |= POLLOUT;
				else if (e == SSL_ERROR_WANT_READ)
					want |= POLLIN;
				else
					goto broken;
			}
		}
		n = SSL_read(ssl, in, (int)(opt.size - roff));
		if (n > 0) {
			if (memcmp(in, out + roff, (size_t)n) != 0) {
				fprintf(stderr, "bench-tls: echo differs from what was sent\n");
				goto broken;
			}
			roff = (roff + (size_t)n) % opt.size;
			got += n;
			progress = true;
		} else {
			int e = SSL_get_error(ssl, n);

			if (e == SSL_ERROR_WANT_READ)
				want |= POLLIN;
			else if (e == SSL_ERROR_WANT_WRITE)
				want |= POLLOUT;
			else
				goto broken;
		}
		if (!progress && !await(fd, want ? want : POLLIN))
			goto broken;
	}
	w->count = got;
	goto out;
broken:
	atomic_fetch_add(&failures, 1);
	ERR_clear_error();
out:
	if (ssl)
		SSL_free(ssl); /* no goodbye: the server sees a reset, which it must survive */
	if (fd >= 0)
		close(fd);
	free(out);
	free(in);
	return 0;
}

/*
 * Fields of /proc/@pid/stat: the parent's pid, and CPU clock ticks
 * (utime + stime, plus cutime + cstime, its reaped children's, if @reaped).
 */
static bool proc_stat(long pid, bool reaped, long *ppid, unsigned long long *ticks)
{
	char path[64], buf[2048], *p;
	unsigned long long ut, st;
	long long cut, cst;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (!p || !(p = strrchr(buf, ')')))
		return false;
	/* After the name: state (field 3), ppid (4), ... utime (14) to cstime (17). */
	if (sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", ppid,
		   &ut, &st, &cut, &cst) != 5)
		return false;
	*ticks = ut + st + (reaped ? (unsigned long long)cut + (unsigned long long)cst : 0);
	return true;
}

/*
 * CPU seconds used so far by server @pid: its threads, its reaped
 * children, and its live children (socat forks one per connection; their
 * time moves into the parent's cutime when they are reaped).  -1 if gone.
 */
static double proc_cpu(long pid)
{
	unsigned long long total, t;
	struct dirent *d;
	long ppid;
	DIR *dir;

	if (!proc_stat(pid, true, &ppid, &total))
		return -1;
	dir = opendir("/proc");
	while (dir && (d = readdir(dir))) {
		char *end;
		long child = strtol(d->d_name, &end, 10);

		if (*end == '\0' && child > 0 && child != pid &&
		    proc_stat(child, false, &ppid, &t) && ppid == pid)
			total += t;
	}
	if (dir)
		closedir(dir);
	return (double)total / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: bench-tls --port PORT [--host ADDR] [--servername NAME] [--cafile FILE]\n"
		"                 [--mode handshake|echo] [--conns N] [--seconds S] [--size BYTES]\n"
		"                 [--window BYTES] [--server-pid PID] [--label NAME] [--tls12]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "servername", required_argument, NULL, 'n' },
		{ "cafile", required_argument, NULL, 'c' },
		{ "mode", required_argument, NULL, 'm' },
		{ "conns", required_argument, NULL, 'N' },
		{ "seconds", required_argument, NULL, 's' },
		{ "size", required_argument, NULL, 'z' },
		{ "window", required_argument, NULL, 'w' },
		{ "server-pid", required_argument, NULL, 'P' },
		{ "label", required_argument, NULL, 'l' },
		{ "tls12", no_argument, NULL, '2' },
		{ NULL, 0, NULL, 0 },
	};
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct worker *workers;
	double t0, t1, c0, c1, s0 = -1, s1 = -1, elapsed;
	long long total = 0;
	int o;

	opt = (struct options){ .host = "127.0.0.1",
				.servername = "localhost",
				.label = "server",
				.mode = MODE_HANDSHAKE,
				.conns = 1,
				.seconds = 3,
				.size = 16384,
				.window = 256 * 1024 };
	while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (o) {
		case 'H':
			opt.host = optarg;
			break;
		case 'p':
			opt.port = optarg;
			break;
		case 'n':
			opt.servername = optarg;
			break;
		case 'c':
			opt.cafile = optarg;
			break;
		case 'l':
			opt.label = optarg;
			break;
		case '2':
			opt.tls12 = true;
			break;
		case 'm':
			if (!strcmp(optarg, "handshake"))
				opt.mode = MODE_HANDSHAKE;
			else if (!strcmp(optarg, "echo"))
				opt.mode = MODE_ECHO;
			else
				usage();
			break;
		case 'N':
			opt.conns = atoi(optarg);
			break;
		case 's':
			opt.seconds = atof(optarg);
			break;
		case 'z':
			opt.size = (size_t)atol(optarg);
			break;
		case 'w':
			opt.window = (size_t)atol(optarg);
			break;
		case 'P':
			opt.server_pid = atol(optarg);
			break;
		default:
			usage();
		}
	}
	if (!opt.port || optind != argc || opt.conns < 1 || opt.conns > MAX_CONNS ||
	    opt.seconds <= 0 || opt.size < 1 || opt.size > (1 << 24) || opt.window < opt.size)
		usage();
	signal(SIGPIPE, SIG_IGN);
	if (getaddrinfo(opt.host, opt.port, &hints, &target) != 0)
		die("cannot resolve the host");
	mtx_init(&negotiated_lock, mtx_plain);

	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		die("SSL_CTX_new");
	if (opt.cafile ? SSL_CTX_load_verify_locations(ctx, opt.cafile, NULL) != 1 :
			 SSL_CTX_set_default_verify_paths(ctx) != 1)
		die("cannot load the CA certificates");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* Every handshake a full one: no session is ever kept or offered. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (opt.tls12)
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);

	workers = calloc((size_t)opt.conns, sizeof(*workers));
	if (!workers)
		die("out of memory");
	for (int i = 0; i < opt.conns; i++) {
		workers[i].index = i;
		if (thrd_create(&workers[i].thread,
				opt.mode == MODE_ECHO ? echo_loop : handshake_loop,
				&workers[i]) != thrd_success)
			die("thrd_create");
	}
	while (atomic_load(&ready) < opt.conns) {
		struct timespec ts = { .tv_nsec = 1000000 };

		nanosleep(&ts, NULL);
	}
	if (opt.server_pid)
		s0 = proc_cpu(opt.server_pid);
	c0 = self_cpu();
	t0 = now_s();
	atomic_store(&go, true);
	while ((t1 = now_s()) < t0 + opt.seconds) {
		double left = t0 + opt.seconds - t1;
		struct timespec ts = { .tv_sec = (time_t)left,
				       .tv_nsec = (long)((left - (double)(time_t)left) * 1e9) };

		nanosleep(&ts, NULL);
	}
	atomic_store(&done, true);
	t1 = now_s();
	c1 = self_cpu();
	if (opt.server_pid)
		s1 = proc_cpu(opt.server_pid);
	elapsed = t1 - t0;
	for (int i = 0; i < opt.conns; i++) {
		thrd_join(workers[i].thread, NULL);
		total += workers[i].count;
	}

	printf("# %s: %s, %d connection%s, %.2f s, %s\n", opt.label,
	       opt.mode == MODE_ECHO ? "echo" : "handshakes", opt.conns, opt.conns == 1 ? "" : "s",
	       elapsed, negotiated[0] ? negotiated : "no session");
	if (opt.mode == MODE_ECHO)
		printf("tls %s_echo_mb_per_s %.1f\n", opt.label, (double)total / elapsed / 1e6);
	else
		printf("tls %s_handshakes_per_s %.1f\n", opt.label, (double)total / elapsed);
	printf("tls %s_client_cpu_pct %.0f\n", opt.label, (c1 - c0) / elapsed * 100);
	if (s0 >= 0 && s1 >= 0)
		printf("tls %s_server_cpu_pct %.0f\n", opt.label, (s1 - s0) / elapsed * 100);
	printf("tls %s_failures %ld\n", opt.label, atomic_load(&failures));
	freeaddrinfo(target);
	SSL_CTX_free(ctx);
	free(workers);
	return 0;
}
