/* SPDX-License-Identifier: MIT */
/*
 * iou_cat: cat(1) on ioucontext.  Copies each input (files, "-" for stdin,
 * pipes, sockets, character devices, and UNIX stream socket paths, which
 * it connects to) to stdout in order, optionally stopping after -c bytes.
 * Every transfer goes through the library; the copy path is chosen per
 * (input, output) pair for speed: splice(2) straight through when either
 * side is a pipe, a regular file spliced through an internal pipe to any
 * other output, and otherwise reads and writes of large buffers with the
 * next read in flight (in its own fiber) while the previous chunk is
 * written.  SIGINT/SIGTERM/SIGHUP arrive on a signalfd read by a watcher
 * fiber, which cancels the copier: the tool stops at once, exit 128+signo.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "signals.h"
#include <ioucontext/ioucontext.h>

/*
 * Bytes asked of one splice.  A splice into a pipe moves at most what the
 * pipe has room for, so this matches the pipe size we ask for below.
 */
#define SPLICE_CHUNK ((size_t)1 << 20)
/* Pipe size asked for with F_SETPIPE_SZ (the unprivileged maximum by default). */
#define PIPE_SIZE (1 << 20)
/*
 * Read/write buffer size.  Two of them alternate: one is written while the
 * next chunk is read into the other.
 */
#define RW_CHUNK ((size_t)256 << 10)

#define NO_LIMIT UINT64_MAX

/* getopt_long's value for --version, which has no short form. */
#define OPT_VERSION 256

/* What a descriptor is, as far as choosing a copy path goes. */
enum kind {
	KIND_FILE,   /* regular file or block device: splice reads it from the page cache */
	KIND_PIPE,   /* FIFO: one side of every splice must be one */
	KIND_SOCKET, /* stream socket: splices to and from pipes */
	KIND_OTHER,  /* character device, tty, ...: splice may or may not work */
};

/* How copying one input ended. */
enum result {
	DONE,	   /* end of input, or the -c limit reached */
	IN_ERROR,  /* reading the input failed: report it, go on with the next */
	OUT_ERROR, /* writing stdout failed: report it, stop */
	STOPPED,   /* the copier was cancelled by a signal: stop silently */
};

/* One read-ahead of the read/write path, filled by its own fiber. */
struct readahead {
	struct reactor *r;
	int fd;	     /* input */
	void *buf;   /* where to read */
	size_t len;  /* how much to ask for */
	ssize_t got; /* result: bytes read or -errno */
};

/* Everything the copier and the signal watcher share; lives in main. */
struct cat {
	struct reactor *r;
	char **names;	       /* inputs from the command line ("-": stdin) */
	int nnames;	       /* how many; 0 means stdin alone */
	int out;	       /* stdout */
	bool closed[3];	       /* fd 0, 1, 2 were closed when we started */
	enum kind out_kind;    /* what stdout is */
	bool out_splice;       /* splicing into stdout may work (not O_APPEND, no -EINVAL yet) */
	uint64_t out_dev;      /* stdout's device and inode, for "input file is output file" */
	uint64_t out_ino;      /* (its inode) */
	bool out_isreg;	       /* stdout is a regular file */
	uint64_t limit;	       /* -c: stop after this many bytes of output; NO_LIMIT */
	uint64_t written;      /* bytes written to stdout so far */
	int pipe[2];	       /* internal pipe for file -> pipe -> stdout, or -1 */
	size_t pipe_size;      /* its capacity */
	unsigned char *buf[2]; /* read/write buffers (RW_CHUNK each), allocated on first use */
	struct readahead ra;   /* the read-ahead in flight; outlives a cancelled copier */
	struct fiber *copier;  /* copies every input in turn */
	struct fiber *watcher; /* reads the signalfd */
	int sigfd;	       /* signalfd for SIGINT, SIGTERM, SIGHUP */
	int signo;	       /* the signal that stopped us, or 0 */
	int status;	       /* exit status unless a signal stopped us */
};

static const char usage_text[] =
	"Usage: iou_cat [OPTION]... [FILE]...\n"
	"Concatenate FILE(s) to standard output, through io_uring.\n"
	"\n"
	"With no FILE, or when FILE is -, read standard input.  A FILE that is a\n"
	"UNIX stream socket is connected to and read until the peer closes it.\n"
	"\n"
	"  -c, --bytes=N   stop after N bytes of output; N may end in K, M, G, T\n"
	"                  (powers of 1024) or KB, MB, GB, TB (powers of 1000)\n"
	"  -u              (ignored; output is never buffered)\n"
	"  -h, --help      display this help and exit\n"
	"      --version   output version information and exit\n"
	"\n"
	"Exit status: 0 if all went well, 1 if an input or the output failed,\n"
	"2 on a usage error, 128+N when stopped by signal N (INT, TERM, HUP).\n"
	"\n"
	"Example: iou_cat -c 1G /dev/zero > /dev/null\n";

/* Print "iou_cat: NAME: WHY" through the ring, like everything else we write. */
static void complain(struct cat *c, const char *name, const char *why)
{
	char line[PATH_MAX + 128];
	int n = snprintf(line, sizeof(line), "iou_cat: %s: %s\n", name, why);

	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	iou_write_all(c->r, STDERR_FILENO, line, (size_t)n, NULL);
}

/* How many bytes the next transfer may move without passing the -c limit. */
static size_t room(const struct cat *c, size_t chunk)
{
	uint64_t left = c->limit - c->written;

	return left < chunk ? (size_t)left : chunk;
}

static enum kind kind_of(mode_t mode)
{
	if (S_ISREG(mode) || S_ISBLK(mode))
		return KIND_FILE;
	if (S_ISFIFO(mode))
		return KIND_PIPE;
	if (S_ISSOCK(mode))
		return KIND_SOCKET;
	return KIND_OTHER;
}

/*
 * A bigger pipe means fewer, larger splices and fewer wake-ups of whoever
 * is on the other end.  Failure (a pipe-user-pages limit) only costs speed.
 */
static size_t grow_pipe(int fd)
{
	int got;

	for (int size = PIPE_SIZE; size >= 64 * 1024; size /= 2) {
		got = fcntl(fd, F_SETPIPE_SZ, size);
		if (got >= size)
			return (size_t)got;
	}
	got = fcntl(fd, F_GETPIPE_SZ);
	return got > 0 ? (size_t)got : 64 * 1024;
}

/*
 * One read that returns as soon as anything arrives (so interactive input
 * flows line by line), waiting for readiness on an O_NONBLOCK descriptor.
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

static void *read_ahead(void *arg)
{
	struct readahead *ra = arg;

	ra->got = read_some(ra->r, ra->fd, ra->buf, ra->len);
	return NULL;
}

/*
 * Abandon a read-ahead: it stops at its next (or current) operation and
 * finishes on its own; reactor_run() in main waits for it, and ra and the
 * buffer live until then.
 */
static void drop_reader(struct fiber *f)
{
	if (f) {
		fiber_cancel(f);
		fiber_detach(f);
	}
}

static enum result failed(struct cat *c, enum result what, int *err, int why)
{
	*err = why;
	return fiber_cancelled(c->r) ? STOPPED : what;
}

static int alloc_buffers(struct cat *c)
{
	for (int i = 0; i < 2; i++) {
		if (!c->buf[i])
			c->buf[i] = aligned_alloc(4096, RW_CHUNK);
		if (!c->buf[i])
			return -ENOMEM;
	}
	return 0;
}

/*
 * The read/write path: each chunk is written while the next is being read
 * into the other buffer by a read-ahead fiber, so input and output overlap.
 * Reads never ask for more than the -c limit leaves.
 */
static enum result copy_rw(struct cat *c, int fd, int *err)
{
	struct reactor *r = c->r;
	size_t len = room(c, RW_CHUNK), moved;
	ssize_t got, ret;
	int cur = 0;

	if (!len)
		return DONE;
	if ((ret = alloc_buffers(c)) < 0)
		return failed(c, IN_ERROR, err, (int)ret);
	got = read_some(r, fd, c->buf[cur], len);
	while (got > 0) {
		uint64_t left = c->limit - c->written - (uint64_t)got;
		size_t next = left < RW_CHUNK ? (size_t)left : RW_CHUNK;
		struct fiber *f = NULL;

		if (next) {
			c->ra.r = r;
			c->ra.fd = fd;
			c->ra.buf = c->buf[!cur];
			c->ra.len = next;
			if (fiber_spawn(r, read_ahead, &c->ra, &f) < 0)
				f = NULL; /* no stack for it: read after writing instead */
		}
		ret = iou_write_all(r, c->out, c->buf[cur], (size_t)got, &moved);
		c->written += moved;
		if (ret < 0) {
			drop_reader(f);
			return failed(c, OUT_ERROR, err, (int)ret);
		}
		if (!next)
			return DONE;
		if (f) {
			ret = fiber_join(f, NULL);
			if (ret < 0) { /* only a cancel of ours can end the join early */
				drop_reader(f);
				return failed(c, IN_ERROR, err, (int)ret);
			}
			got = c->ra.got;
		} else {
			got = read_some(r, fd, c->buf[!cur], next);
		}
		cur = !cur;
	}
	if (got < 0)
		return failed(c, IN_ERROR, err, (int)got);
	return DONE;
}

/*
 * After -EAGAIN from a splice between O_NONBLOCK descriptors we cannot tell
 * which side was not ready: wait for the input, then for the output (each
 * returns at once if that side is ready).
 */
static int wait_both(struct cat *c, int fd)
{
	int ret = iou_poll(c->r, fd, POLLIN);

	if (ret < 0)
		return ret;
	ret = iou_poll(c->r, c->out, POLLOUT);
	return ret < 0 ? ret : 0;
}

/*
 * Either side is a pipe: splice straight from the input to stdout, no copy
 * through user space.  Whatever splice refuses (-EINVAL for files without
 * splice support) or fails on goes to the read/write path, which also says
 * which side failed, because a failed splice has moved nothing.
 */
static enum result copy_splice(struct cat *c, int fd, int *err)
{
	struct reactor *r = c->r;

	if (!c->out_splice)
		return copy_rw(c, fd, err);
	for (;;) {
		size_t len = room(c, SPLICE_CHUNK);
		ssize_t n;

		if (!len)
			return DONE;
		n = iou_splice(r, fd, -1, c->out, -1, len, 0);
		if (n > 0) {
			c->written += (uint64_t)n;
			continue;
		}
		if (n == 0)
			return DONE;
		if (fiber_cancelled(r))
			return STOPPED;
		if (n == -EINTR)
			continue;
		if (n == -EPIPE) /* only stdout can have lost its reader */
			return failed(c, OUT_ERROR, err, (int)n);
		if (n == -EAGAIN) {
			int ret = wait_both(c, fd);

			if (ret < 0)
				return failed(c, IN_ERROR, err, ret);
			continue;
		}
		return copy_rw(c, fd, err);
	}
}

/*
 * Empty @n bytes of the internal pipe into stdout: by splice while stdout
 * takes it, else through a buffer (e.g. an O_APPEND file, which splice
 * refuses with -EINVAL, found out only now that the bytes are in the pipe).
 */
static enum result drain(struct cat *c, size_t n, int *err)
{
	struct reactor *r = c->r;

	while (n > 0) {
		ssize_t m;
		size_t moved;

		if (c->out_splice) {
			m = iou_splice(r, c->pipe[0], -1, c->out, -1, n, 0);
			if (m > 0) {
				n -= (size_t)m;
				c->written += (uint64_t)m;
				continue;
			}
			if (fiber_cancelled(r))
				return STOPPED;
			if (m == -EINTR)
				continue;
			if (m == -EAGAIN) {
				m = iou_poll(r, c->out, POLLOUT);
				if (m < 0)
					return failed(c, OUT_ERROR, err, (int)m);
				continue;
			}
			if (m != -EINVAL)
				return failed(c, OUT_ERROR, err, m < 0 ? (int)m : -EIO);
			c->out_splice = false;
		}
		if ((m = alloc_buffers(c)) < 0)
			return failed(c, OUT_ERROR, err, (int)m);
		m = iou_read(r, c->pipe[0], c->buf[0], n < RW_CHUNK ? n : RW_CHUNK);
		if (m <= 0)
			return failed(c, OUT_ERROR, err, m < 0 ? (int)m : -EIO);
		n -= (size_t)m;
		m = iou_write_all(r, c->out, c->buf[0], (size_t)m, &moved);
		c->written += moved;
		if (m < 0)
			return failed(c, OUT_ERROR, err, (int)m);
	}
	return DONE;
}

/*
 * A regular file to stdout that is not a pipe (/dev/null, a file, a tty, a
 * socket): splice the file into an internal pipe (page references, no
 * copy) and the pipe into stdout.  Faster than read/write, which copies
 * every byte into user space and out again.
 */
static enum result copy_via_pipe(struct cat *c, int fd, int *err)
{
	struct reactor *r = c->r;

	if (c->pipe[0] < 0) {
		if (iou_pipe(r, c->pipe, O_CLOEXEC) < 0) {
			c->pipe[0] = c->pipe[1] = -1;
			return copy_rw(c, fd, err);
		}
		c->pipe_size = grow_pipe(c->pipe[1]);
	}
	for (;;) {
		size_t len = room(c, c->pipe_size);
		enum result res;
		ssize_t n;

		if (!len)
			return DONE;
		if (!c->out_splice)
			return copy_rw(c, fd, err);
		n = iou_splice(r, fd, -1, c->pipe[1], -1, len, 0);
		if (n == 0)
			return DONE;
		if (n < 0) {
			if (fiber_cancelled(r))
				return STOPPED;
			if (n == -EINTR)
				continue;
			/* The pipe is empty: read/write takes over and names the error. */
			return copy_rw(c, fd, err);
		}
		if ((res = drain(c, (size_t)n, err)) != DONE)
			return res;
	}
}

/*
 * Open a FILE argument: a path, or a UNIX stream socket path (open(2) says
 * -ENXIO for those), which we connect to.
 */
static int open_input(struct cat *c, const char *name)
{
	struct reactor *r = c->r;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct statx st;
	int fd, ret;

	fd = iou_open(r, name, O_RDONLY | O_CLOEXEC, 0);
	if (fd != -ENXIO)
		return fd;
	ret = iou_statx(r, AT_FDCWD, name, 0, STATX_TYPE, &st);
	if (ret < 0 || !S_ISSOCK(st.stx_mode))
		return fd;
	if (strlen(name) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	memcpy(addr.sun_path, name, strlen(name) + 1);
	fd = iou_socket(r, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	ret = iou_connect(r, fd, (struct sockaddr *)&addr, sizeof(addr));
	if (ret < 0) {
		iou_close(r, fd);
		return ret;
	}
	/* We only read: tell the peer, as a reader closing its write side would. */
	iou_shutdown(r, fd, SHUT_WR);
	return fd;
}

/* Copy one input to stdout by the path that suits the pair of kinds. */
static enum result copy_one(struct cat *c, const char *name, int fd, int *err)
{
	struct statx st;
	enum kind kind;
	int ret;

	ret = iou_statx(c->r, fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_INO | STATX_SIZE, &st);
	if (ret < 0)
		return failed(c, IN_ERROR, err, ret);
	kind = kind_of(st.stx_mode);
	/* As cat: copying a file onto its own end would only fill the disk. */
	if (c->out_isreg && S_ISREG(st.stx_mode) && st.stx_ino == c->out_ino &&
	    makedev(st.stx_dev_major, st.stx_dev_minor) == c->out_dev &&
	    lseek(fd, 0, SEEK_CUR) < (off_t)st.stx_size) {
		complain(c, name, "input file is output file");
		return failed(c, IN_ERROR, err, 0);
	}
	if (kind == KIND_PIPE)
		grow_pipe(fd);
	if (kind == KIND_PIPE || c->out_kind == KIND_PIPE)
		return copy_splice(c, fd, err);
	if (kind == KIND_FILE)
		return copy_via_pipe(c, fd, err);
	return copy_rw(c, fd, err);
}

/* Learn what stdout is, so that copy_one() can pick a path per input. */
static int probe_output(struct cat *c)
{
	struct statx st;
	int ret, fl;

	if (c->closed[STDOUT_FILENO])
		return -EBADF;
	ret = iou_statx(c->r, c->out, "", AT_EMPTY_PATH, STATX_TYPE | STATX_INO, &st);
	if (ret < 0)
		return ret;
	c->out_kind = kind_of(st.stx_mode);
	c->out_isreg = S_ISREG(st.stx_mode);
	c->out_dev = makedev(st.stx_dev_major, st.stx_dev_minor);
	c->out_ino = st.stx_ino;
	fl = fcntl(c->out, F_GETFL);
	/* splice(2) refuses O_APPEND outputs; a pipe ignores the flag. */
	c->out_splice = c->out_kind == KIND_PIPE || fl < 0 || !(fl & O_APPEND);
	if (c->out_kind == KIND_PIPE)
		grow_pipe(c->out);
	return 0;
}

static void *copier(void *arg)
{
	struct cat *c = arg;
	int ret, n = c->nnames ? c->nnames : 1;

	ret = probe_output(c);
	if (ret < 0) {
		if (!fiber_cancelled(c->r)) {
			complain(c, "standard output", strerror(-ret));
			c->status = 1;
		}
		n = 0;
	}
	for (int i = 0; i < n && c->written < c->limit; i++) {
		const char *name = c->nnames ? c->names[i] : "-";
		bool is_stdin = strcmp(name, "-") == 0;
		int fd = !is_stdin		 ? open_input(c, name) :
			 c->closed[STDIN_FILENO] ? -EBADF :
						   STDIN_FILENO;
		enum result res;
		int err = 0;

		if (fd < 0) {
			if (fiber_cancelled(c->r))
				break;
			complain(c, name, strerror(-fd));
			c->status = 1;
			continue;
		}
		res = copy_one(c, name, fd, &err);
		if (!is_stdin)
			iou_close(c->r, fd);
		if (res == STOPPED)
			break;
		if (res == IN_ERROR) {
			if (err) /* 0: already reported */
				complain(c, name, strerror(-err));
			c->status = 1;
		} else if (res == OUT_ERROR) {
			complain(c, "write error", strerror(-err));
			c->status = 1;
			break;
		}
	}
	/* Done: the watcher has nothing left to guard. */
	fiber_cancel(c->watcher);
	return NULL;
}

static void *watcher(void *arg)
{
	struct cat *c = arg;
	struct signalfd_siginfo si;

	if (example_read_signal(c->r, c->sigfd, &si) == (ssize_t)sizeof(si)) {
		c->signo = (int)si.ssi_signo;
		fiber_cancel(c->copier);
	}
	return NULL;
}

/* Parse a -c size: digits with an optional K/M/G/T (1024) or KB/MB/GB/TB (1000) suffix. */
static int parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "KMGT";
	unsigned long long v;
	uint64_t mult = 1;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	if (*end) {
		const char *u = strchr(units, end[0] & ~0x20);
		uint64_t base = 1024;

		if (!u || !end[0])
			return -EINVAL;
		if (strcmp(end + 1, "B") == 0)
			base = 1000;
		else if (end[1] && strcmp(end + 1, "iB") != 0)
			return -EINVAL;
		for (const char *p = units; p <= u; p++)
			mult *= base;
	}
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*out = (uint64_t)v * mult;
	return 0;
}

/* parse_args()'s value when the program should go on and run. */
#define ARGS_RUN (-1)

/*
 * The command line into @c: the -c limit and the FILE names (which stay in
 * @argv).  Return: ARGS_RUN to go on, or the exit status to end with now
 * (0 after --help or --version, 1 if printing them failed, 2 on a usage
 * error, its message printed).  Allocates nothing.
 */
static int parse_args(int argc, char **argv, struct cat *c)
{
	static const struct option longopts[] = { { "bytes", required_argument, NULL, 'c' },
						  { "help", no_argument, NULL, 'h' },
						  { "version", no_argument, NULL, OPT_VERSION },
						  { NULL, 0, NULL, 0 } };
	int opt;

	opterr = 0; /* usage errors get one line of ours instead */
	while ((opt = getopt_long(argc, argv, ":c:hu", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (parse_size(optarg, &c->limit) < 0) {
				fprintf(stderr, "iou_cat: invalid byte count '%s'\n", optarg);
				return 2;
			}
			break;
		case 'u':
			break;
		case 'h':
			fputs(usage_text, stdout);
			return fflush(stdout) ? 1 : 0;
		case OPT_VERSION:
			printf("iou_cat (ioucontext) %s\n", IOU_VERSION_STRING);
			return fflush(stdout) ? 1 : 0;
		case ':':
			fprintf(stderr, "iou_cat: option '%s' needs an argument (see --help)\n",
				argv[optind - 1]);
			return 2;
		default:
			/*
			 * optopt is 0 for a long option; argv[optind - 1] is not
			 * necessarily the bad short option's word ("-xu": optind
			 * stays on it while its cluster goes on).
			 */
			if (!optopt)
				fprintf(stderr, "iou_cat: bad option '%s' (see --help)\n",
					argv[optind - 1]);
			else
				fprintf(stderr, "iou_cat: invalid option -- '%c' (see --help)\n",
					optopt);
			return 2;
		}
	}
	c->names = argv + optind;
	c->nnames = argc - optind;
	return ARGS_RUN;
}

#ifndef IOU_EXAMPLE_NO_MAIN
int main(int argc, char **argv)
{
	struct cat c = { .limit = NO_LIMIT, .out = STDOUT_FILENO, .pipe = { -1, -1 } };
	sigset_t sigs;
	int ret;

	if ((ret = parse_args(argc, argv, &c)) != ARGS_RUN)
		return ret;

	/*
	 * A closed stdin, stdout or stderr must stay an error, not become the
	 * next descriptor we create (reading our own signalfd as "-", say):
	 * hold each such slot with /dev/null and remember it was closed.
	 */
	for (int fd = 0; fd < 3; fd++) {
		c.closed[fd] = fcntl(fd, F_GETFD) < 0;
		if (c.closed[fd] && open("/dev/null", O_RDWR) != fd)
			return 1;
	}

	/*
	 * Signals become readable on a signalfd.  They must be blocked before
	 * the reactor exists: fibers switch without touching the signal mask,
	 * and the library does not support changing it once fibers exist.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0) {
		perror("iou_cat: sigprocmask");
		return 1;
	}
	/* A vanished reader shows up as -EPIPE from the write, not as death. */
	signal(SIGPIPE, SIG_IGN);
	c.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (c.sigfd < 0) {
		perror("iou_cat: signalfd");
		return 1;
	}

	c.r = reactor_get();
	if (!c.r) {
		struct reactor *unused;

		ret = reactor_create(NULL, &unused);
		fprintf(stderr, "iou_cat: cannot create the reactor: %s\n", strerror(-ret));
		return 1;
	}
	if ((ret = fiber_spawn(c.r, copier, &c, &c.copier)) < 0 ||
	    (ret = fiber_spawn(c.r, watcher, &c, &c.watcher)) < 0) {
		fprintf(stderr, "iou_cat: cannot start: %s\n", strerror(-ret));
		return 1;
	}
	ret = reactor_run(c.r);
	if (ret < 0) {
		fprintf(stderr, "iou_cat: reactor_run: %s\n", strerror(-ret));
		c.status = 1;
	}
	fiber_join(c.copier, NULL);
	fiber_join(c.watcher, NULL);
	if (c.pipe[0] >= 0) {
		iou_close(c.r, c.pipe[0]);
		iou_close(c.r, c.pipe[1]);
	}
	iou_close(c.r, c.sigfd);
	reactor_destroy(c.r);
	free(c.buf[0]);
	free(c.buf[1]);
	return c.signo ? 128 + c.signo : c.status;
}
#endif
