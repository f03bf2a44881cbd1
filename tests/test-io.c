/* SPDX-License-Identifier: MIT */
/*
 * Descriptor operations (<ioucontext/io.h>), each checked from the thread's
 * own context and again inside a fiber: read/write and their positioned and
 * vectored forms on pipes and on regular files in a mkdtemp directory (file
 * positions moved or left alone as documented, holes read as zeros);
 * read_all/write_all moving 1 MiB through a pipe against a fiber on the
 * other end working in odd-sized chunks, on blocking and O_NONBLOCK pipes,
 * stopping short at end of file and failing with -EPIPE (with *moved
 * exact) once the reader has gone; -EAGAIN from single calls on O_NONBLOCK
 * descriptors, as io.h promises; poll reporting POLLIN, POLLOUT, POLLHUP
 * and POLLERR; splice file->pipe->file byte for byte, with explicit offsets
 * and with the file position; tee leaving the source readable; pipe flags
 * (O_CLOEXEC, O_NONBLOCK, O_DIRECT) as fcntl sees them; eventfd counters
 * (semaphore mode, a writer waiting while the counter would overflow);
 * timerfd expirations; nop, also with more requests than ring slots; and
 * iou_cancel_fd ending every read parked on a descriptor, in the kernel or
 * still waiting for a ring slot (an 8-entry ring forces that).  Then the
 * errors every call shares: -EBADF for closed and negative descriptors,
 * -EFAULT for NULL buffers, -EINVAL for negative offsets and bad iovec
 * counts, -EINVAL for a NULL reactor and -EPERM for another thread's one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <threads.h>
#include <unistd.h>

#include <ioucontext/ioucontext.h>

#include "ops-harness.h"

#define MIB ((size_t)1 << 20)

/* Odd chunk sizes, so that no transfer lines up with the pipe's pages. */
static const size_t chunk_sizes[] = { 1, 4093, 65537, 12345, 7, 30011 };
#define NCHUNKS (sizeof(chunk_sizes) / sizeof(chunk_sizes[0]))

/* ---- helpers ------------------------------------------------------------- */

/* A byte pattern without short periods, so a misplaced chunk shows. */
static void fill_pattern(unsigned char *p, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u | 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (unsigned char)x;
	}
}

static char tmpdir[] = "/tmp/iou-test-io-XXXXXX";
static bool have_tmpdir;

static void remove_tmpdir(void)
{
	if (have_tmpdir)
		rmdir(tmpdir);
}

/*
 * A new, empty regular file opened O_RDWR, already unlinked so that nothing
 * is left behind; the directory itself goes at exit.  Return: fd or -errno.
 */
static int tmpfile_open(void)
{
	static unsigned serial;
	char path[sizeof(tmpdir) + 32];
	int fd;

	if (!have_tmpdir) {
		if (!mkdtemp(tmpdir))
			return -errno;
		have_tmpdir = true;
		atexit(remove_tmpdir);
	}
	snprintf(path, sizeof(path), "%s/f%u", tmpdir, serial++);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

static off_t position(int fd)
{
	return lseek(fd, 0, SEEK_CUR);
}

static off_t file_size(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : st.st_size;
}

static bool all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}


/* The other end of a pipe, run as a fiber by the tests below. */
struct peer {
	int fd;
	unsigned char *buf;
	size_t len;
	bool close_after; /* close @fd when done */
	ssize_t ret;	  /* result of the (last) call */
	size_t moved;	  /* what *moved said */
	int64_t done_at;  /* iou_now() when finished */
};

/* Write @len bytes in odd-sized chunks with iou_write_all(). */
static void *peer_write_chunks(void *arg)
{
	struct reactor *r = reactor_get();
	struct peer *p = arg;
	size_t off = 0;

	for (size_t i = 0; off < p->len; i++) {
		size_t n = chunk_sizes[i % NCHUNKS], moved = 0;

		if (n > p->len - off)
			n = p->len - off;
		p->ret = iou_write_all(r, p->fd, p->buf + off, n, &moved);
		FIBER_CHECK(p->ret == (ssize_t)n);
		FIBER_CHECK(moved == n);
		if (p->ret != (ssize_t)n)
			break;
		off += n;
	}
	p->moved = off;
	if (p->close_after)
		close(p->fd);
	return NULL;
}

/* Read @len bytes in odd-sized chunks with iou_read_all(). */
static void *peer_read_chunks(void *arg)
{
	struct reactor *r = reactor_get();
	struct peer *p = arg;
	size_t off = 0;

	for (size_t i = 0; off < p->len; i++) {
		size_t n = chunk_sizes[(i + 3) % NCHUNKS], moved = 0;

		if (n > p->len - off)
			n = p->len - off;
		p->ret = iou_read_all(r, p->fd, p->buf + off, n, &moved);
		FIBER_CHECK(p->ret == (ssize_t)n);
		FIBER_CHECK(moved == n);
		if (p->ret != (ssize_t)n)
			break;
		off += n;
	}
	p->moved = off;
	if (p->close_after)
		close(p->fd);
	return NULL;
}

/* One iou_write_all() of everything. */
static void *peer_write_all(void *arg)
{
	struct peer *p = arg;

	p->ret = iou_write_all(reactor_get(), p->fd, p->buf, p->len, &p->moved);
	p->done_at = iou_now();
	if (p->close_after)
		close(p->fd);
	return NULL;
}

/* One iou_read_all() of everything. */
static void *peer_read_all(void *arg)
{
	struct peer *p = arg;

	p->ret = iou_read_all(reactor_get(), p->fd, p->buf, p->len, &p->moved);
	p->done_at = iou_now();
	if (p->close_after)
		close(p->fd);
	return NULL;
}

/* One plain iou_read(). */
static void *peer_read(void *arg)
{
	struct peer *p = arg;

	p->ret = iou_read(reactor_get(), p->fd, p->buf, p->len);
	p->done_at = iou_now();
	return NULL;
}

/* After 10 ms, write @len bytes with iou_write() (or with @len 0, close @fd). */
static void *peer_late(void *arg)
{
	struct reactor *r = reactor_get();
	struct peer *p = arg;

	FIBER_CHECK(fiber_sleep(r, 10 * IOU_MSEC) == 0);
	p->done_at = iou_now();
	if (p->len)
		p->ret = iou_write(r, p->fd, p->buf, p->len);
	else
		p->ret = close(p->fd);
	return NULL;
}

/* ---- read and write ------------------------------------------------------ */

static int body_read_write_pipe(struct reactor *r)
{
	unsigned char buf[16];
	struct peer late = { .buf = (unsigned char *)"late", .len = 4 };
	struct fiber *f;
	int fds[2] = { -1, -1 };
	int64_t t0;

	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	ASSERT_EQ(iou_write(r, fds[1], "hello", 5), 5);
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(iou_read(r, fds[0], buf, sizeof(buf)), 5);
	ASSERT_EQ(memcmp(buf, "hello", 5), 0);

	/* A NULL buffer is fine with a zero length; nothing moves. */
	ASSERT_EQ(iou_write(r, fds[1], NULL, 0), 0);
	ASSERT_EQ(iou_write(r, fds[1], "xy", 2), 2);
	ASSERT_EQ(iou_read(r, fds[0], NULL, 0), 0);
	ASSERT_EQ(iou_read(r, fds[0], buf, 1), 1);
	ASSERT_EQ(buf[0], 'x');
	ASSERT_EQ(iou_read(r, fds[0], buf, sizeof(buf)), 1);
	ASSERT_EQ(buf[0], 'y');

	/* A read of an empty pipe waits; a fiber writes meanwhile. */
	late.fd = fds[1];
	ASSERT_EQ(fiber_spawn(r, peer_late, &late, &f), 0);
	t0 = iou_now();
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(iou_read(r, fds[0], buf, sizeof(buf)), 4);
	ASSERT_GE(iou_now() - t0, 10 * IOU_MSEC);
	ASSERT_EQ(memcmp(buf, "late", 4), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(late.ret, 4);

	/* Read on the write end, write on the read end: as read(2)/write(2). */
	ASSERT_EQ(iou_read(r, fds[1], buf, sizeof(buf)), -EBADF);
	ASSERT_EQ(iou_write(r, fds[0], "z", 1), -EBADF);

	/* End of file once the write end is closed. */
	ASSERT_EQ(close(fds[1]), 0);
	ASSERT_EQ(iou_read(r, fds[0], buf, sizeof(buf)), 0);
	ASSERT_EQ(close(fds[0]), 0);
	return 0;
}

static int test_read_write_pipe(void)
{
	return in_both_contexts(body_read_write_pipe);
}

static int body_read_write_file(struct reactor *r)
{
	const size_t big = 256 * 1024 + 3;
	unsigned char buf[32], *src, *dst;
	int fd = tmpfile_open();

	ASSERT_GE(fd, 0);
	/* iou_write/iou_read use and move the file position. */
	ASSERT_EQ(iou_write(r, fd, "0123456789", 10), 10);
	ASSERT_EQ(position(fd), 10);
	/* iou_pwrite/iou_pread leave it alone; the gap reads as zeros. */
	ASSERT_EQ(iou_pwrite(r, fd, "abc", 3, 100), 3);
	ASSERT_EQ(position(fd), 10);
	ASSERT_EQ(file_size(fd), 103);
	memset(buf, 0xff, sizeof(buf));
	ASSERT_EQ(iou_pread(r, fd, buf, 3, 100), 3);
	ASSERT_EQ(memcmp(buf, "abc", 3), 0);
	memset(buf, 0xff, sizeof(buf));
	ASSERT_EQ(iou_pread(r, fd, buf, 20, 10), 20);
	ASSERT_TRUE(all_bytes(buf, 20, 0));
	ASSERT_EQ(position(fd), 10);
	/* At and past the end of the file: 0. */
	ASSERT_EQ(iou_pread(r, fd, buf, sizeof(buf), 103), 0);
	ASSERT_EQ(iou_pread(r, fd, buf, sizeof(buf), 1 << 20), 0);
	/* A short read at the end. */
	ASSERT_EQ(iou_pread(r, fd, buf, sizeof(buf), 101), 2);
	ASSERT_EQ(memcmp(buf, "bc", 2), 0);

	ASSERT_EQ(lseek(fd, 2, SEEK_SET), 2);
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(iou_read(r, fd, buf, 4), 4);
	ASSERT_EQ(memcmp(buf, "2345", 4), 0);
	ASSERT_EQ(position(fd), 6);
	ASSERT_EQ(iou_write(r, fd, "XY", 2), 2);
	ASSERT_EQ(position(fd), 8);
	ASSERT_EQ(iou_pread(r, fd, buf, 10, 0), 10);
	ASSERT_EQ(memcmp(buf, "012345XY89", 10), 0);
	ASSERT_EQ(lseek(fd, 0, SEEK_END), 103);
	ASSERT_EQ(iou_read(r, fd, buf, sizeof(buf)), 0);

	/* A larger transfer at an odd offset comes back byte for byte. */
	src = malloc(big);
	dst = calloc(1, big);
	ASSERT_TRUE(src && dst);
	fill_pattern(src, big, 7);
	ASSERT_EQ(iou_pwrite(r, fd, src, big, 4097), (ssize_t)big);
	ASSERT_EQ(file_size(fd), 4097 + (off_t)big);
	ASSERT_EQ(iou_pread(r, fd, dst, big, 4097), (ssize_t)big);
	ASSERT_EQ(memcmp(src, dst, big), 0);
	free(src);
	free(dst);
	ASSERT_EQ(close(fd), 0);
	return 0;
}

static int test_read_write_file(void)
{
	return in_both_contexts(body_read_write_file);
}

/* ---- vectored ------------------------------------------------------------ */

static int body_vectored(struct reactor *r)
{
	char a[3], c[4], d[10], out[32];
	struct iovec wv[] = {
		{ .iov_base = "ab", .iov_len = 2 },
		{ .iov_base = NULL, .iov_len = 0 },
		{ .iov_base = "cdef", .iov_len = 4 },
		{ .iov_base = "g", .iov_len = 1 },
	};
	struct iovec rv[] = {
		{ .iov_base = a, .iov_len = sizeof(a) },
		{ .iov_base = NULL, .iov_len = 0 },
		{ .iov_base = c, .iov_len = sizeof(c) },
		{ .iov_base = d, .iov_len = sizeof(d) },
	};
	int fds[2] = { -1, -1 }, fd;

	/* Gather into a pipe, in iovec order, skipping the empty one. */
	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	ASSERT_EQ(iou_writev(r, fds[1], wv, 4), 7);
	memset(out, 0, sizeof(out));
	ASSERT_EQ(read(fds[0], out, sizeof(out)), 7);
	ASSERT_EQ(memcmp(out, "abcdefg", 7), 0);

	/* Scatter: fill each buffer in turn; the last one only partly. */
	ASSERT_EQ(write(fds[1], "0123456789", 10), 10);
	memset(a, '.', sizeof(a));
	memset(c, '.', sizeof(c));
	memset(d, '.', sizeof(d));
	ASSERT_EQ(iou_readv(r, fds[0], rv, 4), 10);
	ASSERT_EQ(memcmp(a, "012", 3), 0);
	ASSERT_EQ(memcmp(c, "3456", 4), 0);
	ASSERT_EQ(memcmp(d, "789.......", 10), 0);

	/* No buffers at all: nothing to move, also with a NULL array. */
	ASSERT_EQ(iou_writev(r, fds[1], wv, 0), 0);
	ASSERT_EQ(iou_readv(r, fds[0], NULL, 0), 0);
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);

	/* Positioned forms on a file: at the offset, position untouched. */
	fd = tmpfile_open();
	ASSERT_GE(fd, 0);
	ASSERT_EQ(iou_pwritev(r, fd, wv, 4, 1000), 7);
	ASSERT_EQ(position(fd), 0);
	ASSERT_EQ(file_size(fd), 1007);
	memset(a, '.', sizeof(a));
	memset(c, '.', sizeof(c));
	memset(d, '.', sizeof(d));
	ASSERT_EQ(iou_preadv(r, fd, rv, 4, 1001), 6);
	ASSERT_EQ(memcmp(a, "bcd", 3), 0);
	ASSERT_EQ(memcmp(c, "efg.", 4), 0);
	ASSERT_TRUE(all_bytes((unsigned char *)d, sizeof(d), '.'));
	ASSERT_EQ(position(fd), 0);
	ASSERT_EQ(iou_preadv(r, fd, rv, 4, 1007), 0);
	/* Plain forms use and move the position. */
	ASSERT_EQ(iou_writev(r, fd, wv, 4), 7);
	ASSERT_EQ(position(fd), 7);
	ASSERT_EQ(lseek(fd, 2, SEEK_SET), 2);
	memset(a, '.', sizeof(a));
	memset(c, '.', sizeof(c));
	ASSERT_EQ(iou_readv(r, fd, rv, 3), 7);
	ASSERT_EQ(memcmp(a, "cde", 3), 0);
	ASSERT_EQ(memcmp(c, "fg\0\0", 4), 0);
	ASSERT_EQ(position(fd), 9);
	ASSERT_EQ(close(fd), 0);
	return 0;
}

static int test_vectored(void)
{
	return in_both_contexts(body_vectored);
}

/* ---- read_all / write_all ------------------------------------------------ */

static int body_all_concurrent(struct reactor *r)
{
	unsigned char *src = malloc(MIB), *dst = calloc(1, MIB);
	struct peer p = { 0 };
	struct fiber *f;
	int fds[2] = { -1, -1 };
	size_t moved = 0;

	ASSERT_TRUE(src && dst);

	/* A fiber writes odd chunks; one read_all collects them all. */
	fill_pattern(src, MIB, 1);
	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	p = (struct peer){ .fd = fds[1], .buf = src, .len = MIB, .close_after = true };
	ASSERT_EQ(fiber_spawn(r, peer_write_chunks, &p, &f), 0);
	ASSERT_EQ(iou_read_all(r, fds[0], dst, MIB, &moved), (ssize_t)MIB);
	ASSERT_EQ(moved, MIB);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(p.moved, MIB);
	ASSERT_EQ(memcmp(src, dst, MIB), 0);
	/* The writer closed its end: nothing more, and *moved says so. */
	moved = 99;
	ASSERT_EQ(iou_read_all(r, fds[0], dst, 10, &moved), 0);
	ASSERT_EQ(moved, 0);
	ASSERT_EQ(close(fds[0]), 0);

	/* One write_all sends it all; a fiber reads odd chunks. */
	fill_pattern(src, MIB, 2);
	memset(dst, 0, MIB);
	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	p = (struct peer){ .fd = fds[0], .buf = dst, .len = MIB, .close_after = true };
	ASSERT_EQ(fiber_spawn(r, peer_read_chunks, &p, &f), 0);
	moved = 0;
	ASSERT_EQ(iou_write_all(r, fds[1], src, MIB, &moved), (ssize_t)MIB);
	ASSERT_EQ(moved, MIB);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(p.moved, MIB);
	ASSERT_EQ(memcmp(src, dst, MIB), 0);
	ASSERT_EQ(close(fds[1]), 0);

	/* Zero bytes: done at once, with or without @moved. */
	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	moved = 99;
	ASSERT_EQ(iou_read_all(r, fds[0], dst, 0, &moved), 0);
	ASSERT_EQ(moved, 0);
	ASSERT_EQ(iou_write_all(r, fds[1], NULL, 0, NULL), 0);
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);
	free(src);
	free(dst);
	return 0;
}

static int test_all_concurrent(void)
{
	return in_both_contexts(body_all_concurrent);
}

static int body_read_all_eof(struct reactor *r)
{
	unsigned char buf[100];
	int fds[2] = { -1, -1 };
	size_t moved = 99;

	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	ASSERT_EQ(write(fds[1], "0123456789", 10), 10);
	ASSERT_EQ(close(fds[1]), 0);
	memset(buf, 0, sizeof(buf));
	/* Short only because the file ended. */
	ASSERT_EQ(iou_read_all(r, fds[0], buf, sizeof(buf), &moved), 10);
	ASSERT_EQ(moved, 10);
	ASSERT_EQ(memcmp(buf, "0123456789", 10), 0);
	ASSERT_EQ(iou_read_all(r, fds[0], buf, sizeof(buf), NULL), 0);
	ASSERT_EQ(close(fds[0]), 0);

	/* The same on a regular file. */
	fds[0] = tmpfile_open();
	ASSERT_GE(fds[0], 0);
	ASSERT_EQ(pwrite(fds[0], "abcdefg", 7, 0), 7);
	moved = 99;
	ASSERT_EQ(iou_read_all(r, fds[0], buf, sizeof(buf), &moved), 7);
	ASSERT_EQ(moved, 7);
	ASSERT_EQ(memcmp(buf, "abcdefg", 7), 0);
	ASSERT_EQ(close(fds[0]), 0);
	return 0;
}

static int test_read_all_eof(void)
{
	return in_both_contexts(body_read_all_eof);
}

static int body_write_all_epipe(struct reactor *r)
{
	const size_t head = 100000;
	unsigned char *src = malloc(MIB), *dst = calloc(1, MIB);
	struct peer p;
	struct fiber *f;
	int fds[2] = { -1, -1 }, cap;
	size_t moved = 99;

	ASSERT_TRUE(src && dst);
	fill_pattern(src, MIB, 3);

	/* Reader gone before the first byte. */
	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(iou_write(r, fds[1], src, 10), -EPIPE);
	ASSERT_EQ(iou_write_all(r, fds[1], src, 1000, &moved), -EPIPE);
	ASSERT_EQ(moved, 0);
	ASSERT_EQ(close(fds[1]), 0);

	/* Reader leaves after 100000 bytes: what went in before is counted. */
	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	cap = fcntl(fds[1], F_GETPIPE_SZ);
	ASSERT_GT(cap, 0);
	p = (struct peer){ .fd = fds[0], .buf = dst, .len = head, .close_after = true };
	ASSERT_EQ(fiber_spawn(r, peer_read_all, &p, &f), 0);
	moved = 0;
	ASSERT_EQ(iou_write_all(r, fds[1], src, MIB, &moved), -EPIPE);
	ASSERT_GE(moved, head);
	ASSERT_LE(moved, head + (size_t)cap);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(p.ret, (ssize_t)head);
	ASSERT_EQ(p.moved, head);
	ASSERT_EQ(memcmp(src, dst, head), 0);
	ASSERT_EQ(close(fds[1]), 0);
	free(src);
	free(dst);
	return 0;
}

static int test_write_all_epipe(void)
{
	/* A write to a pipe without readers raises SIGPIPE as well. */
	signal(SIGPIPE, SIG_IGN);
	return in_both_contexts(body_write_all_epipe);
}

static int body_all_nonblocking(struct reactor *r)
{
	unsigned char *src = malloc(MIB), *dst = calloc(1, MIB);
	struct peer p;
	struct fiber *f;
	int fds[2] = { -1, -1 }, cap;
	size_t moved = 0, off = 0;

	ASSERT_TRUE(src && dst);
	fill_pattern(src, MIB, 4);
	ASSERT_EQ(iou_pipe(r, fds, O_NONBLOCK | O_CLOEXEC), 0);
	ASSERT_TRUE(fcntl(fds[0], F_GETFL) & O_NONBLOCK);
	ASSERT_TRUE(fcntl(fds[1], F_GETFL) & O_NONBLOCK);

	/* Exactly a pipe's worth in and out. */
	cap = fcntl(fds[1], F_GETPIPE_SZ);
	ASSERT_GT(cap, 0);
	ASSERT_LE(cap, MIB);
	ASSERT_EQ(iou_write_all(r, fds[1], src, (size_t)cap, &moved), cap);
	ASSERT_EQ(moved, (size_t)cap);
	ASSERT_EQ(iou_read_all(r, fds[0], dst, (size_t)cap, &moved), cap);
	ASSERT_EQ(moved, (size_t)cap);
	ASSERT_EQ(memcmp(src, dst, (size_t)cap), 0);

	/* 1 MiB with both ends waiting for each other now and then. */
	memset(dst, 0, MIB);
	p = (struct peer){ .fd = fds[1], .buf = src, .len = MIB };
	ASSERT_EQ(fiber_spawn(r, peer_write_all, &p, &f), 0);
	for (size_t i = 0; off < MIB; i++) {
		size_t n = chunk_sizes[i % NCHUNKS];

		if (n > MIB - off)
			n = MIB - off;
		moved = 0;
		ASSERT_EQ(iou_read_all(r, fds[0], dst + off, n, &moved), (ssize_t)n);
		ASSERT_EQ(moved, n);
		off += n;
	}
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(p.ret, (ssize_t)MIB);
	ASSERT_EQ(p.moved, MIB);
	ASSERT_EQ(memcmp(src, dst, MIB), 0);
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);
	free(src);
	free(dst);
	return 0;
}

static int test_all_nonblocking(void)
{
	return in_both_contexts(body_all_nonblocking);
}

/*
 * io.h: on an O_NONBLOCK descriptor with nothing ready, a call either fails
 * with -EAGAIN (older kernels honour the flag) or waits like a blocking one
 * (6.x kernels arm a poll regardless).  Either way nothing is consumed, and
 * with a deadline of "now" the caller never waits: -EAGAIN or -ETIMEDOUT.
 */
static int body_nonblocking_not_ready(struct reactor *r)
{
	const int64_t bound = IOU_DEADLINE_NOW;
	unsigned char buf[4096] = { 0 };
	int fds[2] = { -1, -1 }, efd, tfd, ev, tm;
	uint64_t v = 0;
	ssize_t rd, wr;

	ASSERT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
	fiber_set_deadline(r, bound);
	rd = iou_read(r, fds[0], buf, 10);
	while (write(fds[1], buf, sizeof(buf)) > 0)
		;
	fiber_set_deadline(r, bound);
	wr = iou_write(r, fds[1], buf, 1);
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);

	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ASSERT_GE(efd, 0);
	fiber_set_deadline(r, bound);
	ev = iou_eventfd_read(r, efd, &v);
	ASSERT_EQ(close(efd), 0);

	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	ASSERT_GE(tfd, 0);
	fiber_set_deadline(r, bound);
	tm = iou_timerfd_read(r, tfd, &v);
	ASSERT_EQ(close(tfd), 0);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);

	printf("# O_NONBLOCK, nothing ready: read %zd, write %zd, eventfd_read %d, "
	       "timerfd_read %d\n",
	       rd, wr, ev, tm);
	ASSERT_TRUE(rd == -EAGAIN || rd == -ETIMEDOUT);
	ASSERT_TRUE(wr == -EAGAIN || wr == -ETIMEDOUT);
	ASSERT_TRUE(ev == -EAGAIN || ev == -ETIMEDOUT);
	ASSERT_TRUE(tm == -EAGAIN || tm == -ETIMEDOUT);
	return 0;
}

static int test_nonblocking_not_ready(void)
{
	return in_both_contexts(body_nonblocking_not_ready);
}

/* ---- poll ---------------------------------------------------------------- */

static int body_poll(struct reactor *r)
{
	struct peer late = { .buf = (unsigned char *)"p", .len = 1 };
	struct fiber *f;
	int fds[2] = { -1, -1 }, ev;
	char c = 0;
	int64_t t0;

	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	/* Ready at once. */
	ev = iou_poll(r, fds[1], POLLOUT);
	ASSERT_GT(ev, 0);
	ASSERT_TRUE(ev & POLLOUT);
	ASSERT_EQ(write(fds[1], "x", 1), 1);
	ev = iou_poll(r, fds[0], POLLIN | POLLPRI);
	ASSERT_GT(ev, 0);
	ASSERT_TRUE(ev & POLLIN);
	ASSERT_EQ(read(fds[0], &c, 1), 1);

	/* Waits until a fiber writes. */
	late.fd = fds[1];
	ASSERT_EQ(fiber_spawn(r, peer_late, &late, &f), 0);
	t0 = iou_now();
	ev = iou_poll(r, fds[0], POLLIN);
	ASSERT_GE(iou_now() - t0, 10 * IOU_MSEC);
	ASSERT_TRUE(ev & POLLIN);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(late.ret, 1);
	ASSERT_EQ(read(fds[0], &c, 1), 1);
	ASSERT_EQ(c, 'p');

	/* Waits until a fiber closes the write end: POLLHUP. */
	late = (struct peer){ .fd = fds[1], .len = 0 };
	ASSERT_EQ(fiber_spawn(r, peer_late, &late, &f), 0);
	t0 = iou_now();
	ev = iou_poll(r, fds[0], POLLIN);
	ASSERT_GE(iou_now() - t0, 10 * IOU_MSEC);
	ASSERT_GT(ev, 0);
	ASSERT_TRUE(ev & POLLHUP);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(late.ret, 0);
	ASSERT_EQ(close(fds[0]), 0);

	/* A write end without readers: POLLERR. */
	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	ASSERT_EQ(close(fds[0]), 0);
	ev = iou_poll(r, fds[1], POLLOUT);
	ASSERT_GT(ev, 0);
	ASSERT_TRUE(ev & POLLERR);
	ASSERT_EQ(close(fds[1]), 0);
	return 0;
}

static int test_poll(void)
{
	return in_both_contexts(body_poll);
}

/* ---- splice and tee ------------------------------------------------------ */

static int body_splice(struct reactor *r)
{
	const size_t size = 200000;
	unsigned char *src = malloc(size), *dst = calloc(1, size);
	int fds[2] = { -1, -1 }, in = -1, out = -1;
	int64_t off = 0;
	ssize_t n;

	ASSERT_TRUE(src && dst);
	fill_pattern(src, size, 5);
	in = tmpfile_open();
	out = tmpfile_open();
	ASSERT_GE(in, 0);
	ASSERT_GE(out, 0);
	ASSERT_EQ(pwrite(in, src, size, 0), (ssize_t)size);
	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);

	/* File -> pipe from an explicit offset: the position stays. */
	ASSERT_EQ(lseek(in, 0, SEEK_SET), 0);
	ASSERT_EQ(iou_splice(r, in, 1000, fds[1], -1, 4096, 0), 4096);
	ASSERT_EQ(position(in), 0);
	ASSERT_EQ(iou_read_all(r, fds[0], dst, 4096, NULL), 4096);
	ASSERT_EQ(memcmp(dst, src + 1000, 4096), 0);

	/* File -> pipe from the file position, which moves. */
	ASSERT_EQ(lseek(in, 10, SEEK_SET), 10);
	ASSERT_EQ(iou_splice(r, in, -1, fds[1], -1, 100, SPLICE_F_MOVE), 100);
	ASSERT_EQ(position(in), 110);
	ASSERT_EQ(iou_read_all(r, fds[0], dst, 100, NULL), 100);
	ASSERT_EQ(memcmp(dst, src + 10, 100), 0);

	/* Pipe -> file at the file position. */
	ASSERT_EQ(write(fds[1], "xyz", 3), 3);
	ASSERT_EQ(iou_splice(r, fds[0], -1, out, -1, 3, 0), 3);
	ASSERT_EQ(position(out), 3);
	memset(dst, 0, 3);
	ASSERT_EQ(pread(out, dst, 3, 0), 3);
	ASSERT_EQ(memcmp(dst, "xyz", 3), 0);
	ASSERT_EQ(ftruncate(out, 0), 0);

	/* The whole file through the pipe into another at explicit offsets. */
	for (;;) {
		n = iou_splice(r, in, off, fds[1], -1, 65536, 0);
		ASSERT_GE(n, 0);
		if (n == 0)
			break;
		for (ssize_t left = n; left > 0;) {
			ssize_t m = iou_splice(r, fds[0], -1, out, off, (size_t)left, 0);

			ASSERT_GT(m, 0);
			left -= m;
			off += m;
		}
	}
	ASSERT_EQ(off, (int64_t)size);
	ASSERT_EQ(file_size(out), (off_t)size);
	memset(dst, 0, size);
	ASSERT_EQ(pread(out, dst, size, 0), (ssize_t)size);
	ASSERT_EQ(memcmp(src, dst, size), 0);
	/* At the end of the input: 0. */
	ASSERT_EQ(iou_splice(r, in, (int64_t)size, fds[1], -1, 100, 0), 0);

	/* Neither end a pipe: as splice(2). */
	ASSERT_EQ(iou_splice(r, in, 0, out, 0, 10, 0), -EINVAL);
	/* An empty pipe with SPLICE_F_NONBLOCK would block: -EAGAIN. */
	ASSERT_EQ(iou_splice(r, fds[0], -1, out, 0, 10, SPLICE_F_NONBLOCK), -EAGAIN);

	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);
	ASSERT_EQ(close(in), 0);
	ASSERT_EQ(close(out), 0);
	free(src);
	free(dst);
	return 0;
}

static int test_splice(void)
{
	return in_both_contexts(body_splice);
}

static int body_tee(struct reactor *r)
{
	int a[2] = { -1, -1 }, b[2] = { -1, -1 }, fd;
	char buf[16];

	ASSERT_EQ(iou_pipe(r, a, O_CLOEXEC), 0);
	ASSERT_EQ(iou_pipe(r, b, O_CLOEXEC), 0);
	ASSERT_EQ(write(a[1], "tee-data", 8), 8);
	ASSERT_EQ(iou_tee(r, a[0], b[1], 8, 0), 8);
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(iou_read(r, b[0], buf, sizeof(buf)), 8);
	ASSERT_EQ(memcmp(buf, "tee-data", 8), 0);
	/* Duplicated, not consumed: the source still holds it all. */
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(iou_tee(r, a[0], b[1], 3, 0), 3);
	ASSERT_EQ(iou_read(r, a[0], buf, sizeof(buf)), 8);
	ASSERT_EQ(memcmp(buf, "tee-data", 8), 0);
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(iou_read(r, b[0], buf, sizeof(buf)), 3);
	ASSERT_EQ(memcmp(buf, "tee", 3), 0);

	/* tee works on pipes only. */
	fd = tmpfile_open();
	ASSERT_GE(fd, 0);
	ASSERT_EQ(iou_tee(r, fd, b[1], 8, 0), -EINVAL);
	ASSERT_EQ(close(fd), 0);
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(close(a[i]), 0);
		ASSERT_EQ(close(b[i]), 0);
	}
	return 0;
}

static int test_tee(void)
{
	return in_both_contexts(body_tee);
}

/* ---- pipe ---------------------------------------------------------------- */

static int body_pipe_flags(struct reactor *r)
{
	int fds[2] = { -1, -1 };
	char buf[16];

	ASSERT_EQ(iou_pipe(r, fds, 0), 0);
	ASSERT_GE(fds[0], 0);
	ASSERT_GE(fds[1], 0);
	ASSERT_NE(fds[0], fds[1]);
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(fcntl(fds[i], F_GETFD), 0);
		ASSERT_EQ(fcntl(fds[i], F_GETFL) & (O_NONBLOCK | O_DIRECT), 0);
	}
	ASSERT_EQ(fcntl(fds[0], F_GETFL) & O_ACCMODE, O_RDONLY);
	ASSERT_EQ(fcntl(fds[1], F_GETFL) & O_ACCMODE, O_WRONLY);
	ASSERT_EQ(write(fds[1], "ab", 2), 2);
	ASSERT_EQ(read(fds[0], buf, sizeof(buf)), 2);
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);

	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(fcntl(fds[i], F_GETFD), FD_CLOEXEC);
		ASSERT_EQ(close(fds[i]), 0);
	}

	ASSERT_EQ(iou_pipe(r, fds, O_NONBLOCK), 0);
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(fcntl(fds[i], F_GETFD), 0);
		ASSERT_TRUE(fcntl(fds[i], F_GETFL) & O_NONBLOCK);
		ASSERT_EQ(close(fds[i]), 0);
	}

	/* O_DIRECT: packet mode, one write per read (the flag shows on the write end). */
	ASSERT_EQ(iou_pipe(r, fds, O_DIRECT | O_CLOEXEC), 0);
	ASSERT_TRUE(fcntl(fds[1], F_GETFL) & O_DIRECT);
	ASSERT_EQ(write(fds[1], "abc", 3), 3);
	ASSERT_EQ(write(fds[1], "de", 2), 2);
	ASSERT_EQ(iou_read(r, fds[0], buf, sizeof(buf)), 3);
	ASSERT_EQ(iou_read(r, fds[0], buf, sizeof(buf)), 2);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(close(fds[i]), 0);

	/* Errors as pipe2(2), and the array pointer. */
	ASSERT_EQ(iou_pipe(r, fds, O_APPEND), -EINVAL);
	ASSERT_EQ(iou_pipe(r, NULL, O_CLOEXEC), -EFAULT);
	return 0;
}

static int test_pipe_flags(void)
{
	return in_both_contexts(body_pipe_flags);
}

/* ---- eventfd and timerfd ------------------------------------------------- */

static void *peer_eventfd_read(void *arg)
{
	struct peer *p = arg;
	uint64_t v = 0;

	p->ret = iou_eventfd_read(reactor_get(), p->fd, &v);
	p->moved = (size_t)v;
	p->done_at = iou_now();
	return NULL;
}

static void *peer_eventfd_write_one(void *arg)
{
	struct peer *p = arg;

	p->ret = iou_eventfd_write(reactor_get(), p->fd, 1);
	p->done_at = iou_now();
	return NULL;
}

static int body_eventfd(struct reactor *r)
{
	struct peer p;
	struct fiber *f;
	uint64_t v = 0;
	int64_t t0;
	int efd;

	efd = eventfd(0, EFD_CLOEXEC);
	ASSERT_GE(efd, 0);
	/* Writes add up; a read takes the counter. */
	ASSERT_EQ(iou_eventfd_write(r, efd, 3), 0);
	ASSERT_EQ(iou_eventfd_write(r, efd, 4), 0);
	ASSERT_EQ(iou_eventfd_read(r, efd, &v), 0);
	ASSERT_EQ(v, 7);

	/* A reader waits for the counter to become non-zero. */
	p = (struct peer){ .fd = efd, .ret = 1 };
	ASSERT_EQ(fiber_spawn(r, peer_eventfd_read, &p, &f), 0);
	ASSERT_EQ(fiber_sleep(r, 10 * IOU_MSEC), 0);
	ASSERT_EQ(p.ret, 1); /* still waiting */
	t0 = iou_now();
	ASSERT_EQ(iou_eventfd_write(r, efd, 5), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(p.ret, 0);
	ASSERT_EQ(p.moved, 5);
	ASSERT_GE(p.done_at, t0);

	/* A writer waits while the counter would overflow. */
	ASSERT_EQ(iou_eventfd_write(r, efd, UINT64_MAX - 1), 0);
	p = (struct peer){ .fd = efd, .ret = 1 };
	ASSERT_EQ(fiber_spawn(r, peer_eventfd_write_one, &p, &f), 0);
	ASSERT_EQ(fiber_sleep(r, 10 * IOU_MSEC), 0);
	ASSERT_EQ(p.ret, 1); /* still waiting */
	t0 = iou_now();
	ASSERT_EQ(iou_eventfd_read(r, efd, &v), 0);
	ASSERT_TRUE(v == UINT64_MAX - 1);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(p.ret, 0);
	ASSERT_GE(p.done_at, t0);
	ASSERT_EQ(iou_eventfd_read(r, efd, &v), 0);
	ASSERT_EQ(v, 1);

	/* UINT64_MAX is not a value one may add. */
	ASSERT_EQ(iou_eventfd_write(r, efd, UINT64_MAX), -EINVAL);
	ASSERT_EQ(iou_eventfd_read(r, efd, NULL), -EFAULT);
	ASSERT_EQ(close(efd), 0);

	/* Semaphore mode: each read takes 1. */
	efd = eventfd(0, EFD_SEMAPHORE | EFD_CLOEXEC);
	ASSERT_GE(efd, 0);
	ASSERT_EQ(iou_eventfd_write(r, efd, 3), 0);
	for (int i = 0; i < 3; i++) {
		v = 0;
		ASSERT_EQ(iou_eventfd_read(r, efd, &v), 0);
		ASSERT_EQ(v, 1);
	}
	ASSERT_EQ(close(efd), 0);
	return 0;
}

static int test_eventfd(void)
{
	return in_both_contexts(body_eventfd);
}

static int body_timerfd(struct reactor *r)
{
	struct itimerspec once = { .it_value.tv_nsec = 10 * IOU_MSEC };
	struct itimerspec every = { .it_value.tv_nsec = 10 * IOU_MSEC,
				    .it_interval.tv_nsec = 10 * IOU_MSEC };
	uint64_t n = 0;
	int64_t t0, old;
	int tfd;

	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	ASSERT_GE(tfd, 0);

	/* One shot: one expiration, not early. */
	t0 = iou_now();
	ASSERT_EQ(timerfd_settime(tfd, 0, &once, NULL), 0);
	ASSERT_EQ(iou_timerfd_read(r, tfd, &n), 0);
	ASSERT_GE(iou_now() - t0, 10 * IOU_MSEC);
	ASSERT_EQ(n, 1);

	/* Periodic: expirations accumulate while nobody reads. */
	t0 = iou_now();
	ASSERT_EQ(timerfd_settime(tfd, 0, &every, NULL), 0);
	n = 0;
	ASSERT_EQ(iou_timerfd_read(r, tfd, &n), 0);
	ASSERT_GE(n, 1);
	ASSERT_EQ(fiber_sleep(r, 35 * IOU_MSEC), 0);
	n = 0;
	ASSERT_EQ(iou_timerfd_read(r, tfd, &n), 0);
	ASSERT_GE(n, 3);
	ASSERT_GE(iou_now() - t0, 40 * IOU_MSEC);

	/* Disarmed: the read waits until the deadline ends it. */
	ASSERT_EQ(timerfd_settime(tfd, 0, &(struct itimerspec){ 0 }, NULL), 0);
	t0 = iou_now();
	old = fiber_set_deadline(r, t0 + 20 * IOU_MSEC);
	ASSERT_EQ(iou_timerfd_read(r, tfd, &n), -ETIMEDOUT);
	ASSERT_GE(iou_now() - t0, 20 * IOU_MSEC);
	fiber_set_deadline(r, old);

	ASSERT_EQ(iou_timerfd_read(r, tfd, NULL), -EFAULT);
	ASSERT_EQ(close(tfd), 0);
	return 0;
}

static int test_timerfd(void)
{
	return in_both_contexts(body_timerfd);
}

/* ---- nop ----------------------------------------------------------------- */

static int body_nop(struct reactor *r)
{
	for (int i = 0; i < 10; i++)
		ASSERT_EQ(iou_nop(r), 0);
	return 0;
}

static int test_nop(void)
{
	return in_both_contexts(body_nop);
}

static int nops_ok;

static void *nop_thrice(void *arg)
{
	(void)arg;
	for (int i = 0; i < 3; i++)
		nops_ok += iou_nop(reactor_get()) == 0;
	return NULL;
}

/* More requests at once than the ring has slots: none is lost. */
static int body_nop_many(struct reactor *r)
{
	const struct fiber_options opts = { .stack_size = 64 * 1024 };
	unsigned n = 2 * reactor_ring_entries(r) + 7;
	struct fiber **f = calloc(n, sizeof(*f));

	ASSERT_TRUE(f != NULL);
	nops_ok = 0;
	for (unsigned i = 0; i < n; i++)
		ASSERT_EQ(fiber_spawn_with(r, &opts, nop_thrice, NULL, &f[i]), 0);
	/* The caller's own nop queues behind theirs and completes too. */
	ASSERT_EQ(iou_nop(r), 0);
	for (unsigned i = 0; i < n; i++)
		ASSERT_EQ(fiber_join(f[i], NULL), 0);
	ASSERT_EQ(nops_ok, 3 * n);
	free(f);
	return 0;
}

static int test_nop_many(void)
{
	return in_both_contexts(body_nop_many);
}

/*
 * Run @fn in both contexts on a reactor with an 8-entry ring, so that
 * requests made between two submissions overflow it and wait in the FIFO.
 */
static int with_small_ring(body_fn *fn)
{
	struct reactor_options opts;
	struct reactor *r;
	int rc;

	reactor_options_init(&opts);
	opts.ring_entries = 8;
	ASSERT_EQ(reactor_destroy(reactor_get()), 0);
	ASSERT_EQ(reactor_create(&opts, &r), 0);
	ASSERT_EQ(reactor_ring_entries(r), 8);
	rc = in_both_contexts(fn);
	ASSERT_EQ(reactor_destroy(r), 0);
	return rc;
}

static int test_nop_many_small_ring(void)
{
	return with_small_ring(body_nop_many);
}

/* ---- cancel_fd ----------------------------------------------------------- */

static int body_cancel_fd(struct reactor *r)
{
	unsigned char buf[4][16];
	struct peer p[4];
	struct fiber *f[4];
	int fds[2] = { -1, -1 };

	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	/* Nothing in flight: nothing cancelled. */
	ASSERT_EQ(iou_cancel_fd(r, fds[0]), 0);

	/* One reader parked in the kernel on an empty pipe. */
	memset(buf, 0, sizeof(buf));
	p[0] = (struct peer){ .fd = fds[0], .buf = buf[0], .len = sizeof(buf[0]), .ret = 1 };
	ASSERT_EQ(fiber_spawn(r, peer_read, &p[0], &f[0]), 0);
	ASSERT_EQ(fiber_sleep(r, 5 * IOU_MSEC), 0);
	ASSERT_EQ(p[0].ret, 1); /* still waiting */
	ASSERT_GE(iou_cancel_fd(r, fds[0]), 1);
	ASSERT_EQ(fiber_join(f[0], NULL), 0);
	ASSERT_EQ(p[0].ret, -ECANCELED);

	/* Several, just queued (not yet seen by the kernel): all of them. */
	for (int i = 0; i < 4; i++) {
		p[i] = (struct peer){ .fd = fds[0],
				      .buf = buf[i],
				      .len = sizeof(buf[i]),
				      .ret = 1 };
		ASSERT_EQ(fiber_spawn(r, peer_read, &p[i], &f[i]), 0);
	}
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_cancel_fd(r, fds[0]), 4);
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(fiber_join(f[i], NULL), 0);
		ASSERT_EQ(p[i].ret, -ECANCELED);
	}

	/* Nothing was consumed: data written now is all there. */
	ASSERT_EQ(write(fds[1], "after", 5), 5);
	ASSERT_EQ(iou_read(r, fds[0], buf[0], sizeof(buf[0])), 5);
	ASSERT_EQ(memcmp(buf[0], "after", 5), 0);
	ASSERT_TRUE(all_bytes(buf[1], sizeof(buf[1]), 0));
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);
	return 0;
}

static int test_cancel_fd(void)
{
	return in_both_contexts(body_cancel_fd);
}

/*
 * More readers than the ring holds: cancel_fd reaches every one, those in
 * the kernel and (inside a fiber, where nothing has been submitted yet)
 * those still waiting for a ring slot.
 */
static int body_cancel_fd_many(struct reactor *r)
{
	const struct fiber_options opts = { .stack_size = 64 * 1024 };
	unsigned n = reactor_ring_entries(r) + 50;
	struct peer *p = calloc(n, sizeof(*p));
	struct fiber **f = calloc(n, sizeof(*f));
	unsigned char *buf = calloc(n, 8);
	int fds[2] = { -1, -1 };

	ASSERT_TRUE(p && f && buf);
	ASSERT_EQ(iou_pipe(r, fds, O_CLOEXEC), 0);
	for (unsigned i = 0; i < n; i++) {
		p[i] = (struct peer){ .fd = fds[0], .buf = buf + 8 * i, .len = 8, .ret = 1 };
		ASSERT_EQ(fiber_spawn_with(r, &opts, peer_read, &p[i], &f[i]), 0);
	}
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(iou_cancel_fd(r, fds[0]), (int)n);
	for (unsigned i = 0; i < n; i++) {
		ASSERT_EQ(fiber_join(f[i], NULL), 0);
		ASSERT_EQ(p[i].ret, -ECANCELED);
	}
	ASSERT_TRUE(all_bytes(buf, 8 * (size_t)n, 0));
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);
	free(p);
	free(f);
	free(buf);
	return 0;
}

static int test_cancel_fd_many(void)
{
	return in_both_contexts(body_cancel_fd_many);
}

static int test_cancel_fd_many_small_ring(void)
{
	return with_small_ring(body_cancel_fd_many);
}

/* ---- errors every call shares --------------------------------------------- */

/* Every call on descriptor @fd (used for input and output alike) must give @want. */
static int all_fail_on_fd(struct reactor *r, int fd, int good, int want)
{
	unsigned char buf[8] = { 0 };
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	uint64_t v = 0;
	size_t moved = 99;

	ASSERT_EQ(iou_read(r, fd, buf, sizeof(buf)), want);
	ASSERT_EQ(iou_pread(r, fd, buf, sizeof(buf), 0), want);
	ASSERT_EQ(iou_write(r, fd, buf, sizeof(buf)), want);
	ASSERT_EQ(iou_pwrite(r, fd, buf, sizeof(buf), 0), want);
	ASSERT_EQ(iou_readv(r, fd, &iov, 1), want);
	ASSERT_EQ(iou_preadv(r, fd, &iov, 1, 0), want);
	ASSERT_EQ(iou_writev(r, fd, &iov, 1), want);
	ASSERT_EQ(iou_pwritev(r, fd, &iov, 1, 0), want);
	ASSERT_EQ(iou_read_all(r, fd, buf, sizeof(buf), &moved), want);
	ASSERT_EQ(moved, 0);
	moved = 99;
	ASSERT_EQ(iou_write_all(r, fd, buf, sizeof(buf), &moved), want);
	ASSERT_EQ(moved, 0);
	ASSERT_EQ(iou_poll(r, fd, POLLIN), want);
	ASSERT_EQ(iou_splice(r, fd, -1, good, -1, 8, 0), want);
	ASSERT_EQ(iou_splice(r, good, -1, fd, -1, 8, 0), want);
	ASSERT_EQ(iou_tee(r, fd, good, 8, 0), want);
	ASSERT_EQ(iou_tee(r, good, fd, 8, 0), want);
	ASSERT_EQ(iou_eventfd_read(r, fd, &v), want);
	ASSERT_EQ(iou_eventfd_write(r, fd, 1), want);
	ASSERT_EQ(iou_timerfd_read(r, fd, &v), want);
	ASSERT_EQ(iou_cancel_fd(r, fd), want);
	return 0;
}

static int body_bad_descriptors(struct reactor *r)
{
	int fds[2] = { -1, -1 }, closed[2] = { -1, -1 };

	ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
	ASSERT_EQ(pipe2(closed, O_CLOEXEC), 0);
	ASSERT_EQ(close(closed[0]), 0);
	ASSERT_EQ(close(closed[1]), 0);
	ASSERT_EQ(all_fail_on_fd(r, -1, fds[0], -EBADF), 0);
	ASSERT_EQ(all_fail_on_fd(r, INT_MIN, fds[0], -EBADF), 0);
	ASSERT_EQ(all_fail_on_fd(r, closed[0], fds[0], -EBADF), 0);
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);
	return 0;
}

static int test_bad_descriptors(void)
{
	return in_both_contexts(body_bad_descriptors);
}

static int body_bad_arguments(struct reactor *r)
{
	unsigned char buf[8] = { 0 };
	struct iovec iov[2] = { { .iov_base = buf, .iov_len = 4 },
				{ .iov_base = buf + 4, .iov_len = 4 } };
	int fds[2] = { -1, -1 }, fd = tmpfile_open();
	size_t moved = 99;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
	ASSERT_EQ(write(fds[1], "12345678", 8), 8);

	/* NULL buffer with a length. */
	ASSERT_EQ(iou_read(r, fds[0], NULL, 1), -EFAULT);
	ASSERT_EQ(iou_pread(r, fd, NULL, 1, 0), -EFAULT);
	ASSERT_EQ(iou_write(r, fds[1], NULL, 1), -EFAULT);
	ASSERT_EQ(iou_pwrite(r, fd, NULL, 1, 0), -EFAULT);
	ASSERT_EQ(iou_read_all(r, fds[0], NULL, 1, &moved), -EFAULT);
	ASSERT_EQ(moved, 0);
	moved = 99;
	ASSERT_EQ(iou_write_all(r, fds[1], NULL, 1, &moved), -EFAULT);
	ASSERT_EQ(moved, 0);

	/* Negative offsets. */
	ASSERT_EQ(iou_pread(r, fd, buf, 1, -1), -EINVAL);
	ASSERT_EQ(iou_pwrite(r, fd, buf, 1, -1), -EINVAL);
	ASSERT_EQ(iou_preadv(r, fd, iov, 2, -1), -EINVAL);
	ASSERT_EQ(iou_pwritev(r, fd, iov, 2, -1), -EINVAL);
	ASSERT_EQ(iou_pread(r, fd, buf, 1, INT64_MIN), -EINVAL);
	ASSERT_EQ(iou_pwritev(r, fd, iov, 2, INT64_MIN), -EINVAL);

	/* Bad iovec counts and arrays. */
	ASSERT_EQ(iou_readv(r, fds[0], iov, -1), -EINVAL);
	ASSERT_EQ(iou_writev(r, fds[1], iov, -1), -EINVAL);
	ASSERT_EQ(iou_preadv(r, fd, iov, -1, 0), -EINVAL);
	ASSERT_EQ(iou_pwritev(r, fd, iov, INT_MIN, 0), -EINVAL);
	ASSERT_EQ(iou_readv(r, fds[0], iov, IOV_MAX + 1), -EINVAL);
	ASSERT_EQ(iou_writev(r, fds[1], iov, IOV_MAX + 1), -EINVAL);
	ASSERT_EQ(iou_readv(r, fds[0], NULL, 1), -EFAULT);
	ASSERT_EQ(iou_preadv(r, fd, NULL, 2, 0), -EFAULT);
	ASSERT_EQ(iou_writev(r, fds[1], NULL, 1), -EFAULT);
	ASSERT_EQ(iou_pwritev(r, fd, NULL, 2, 0), -EFAULT);
	ASSERT_EQ(iou_cancel_fd(r, -1), -EBADF);

	/* None of that consumed or wrote anything. */
	ASSERT_EQ(file_size(fd), 0);
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(iou_read(r, fds[0], buf, sizeof(buf)), 8);
	ASSERT_EQ(memcmp(buf, "12345678", 8), 0);
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);
	ASSERT_EQ(close(fd), 0);
	return 0;
}

static int test_bad_arguments(void)
{
	return in_both_contexts(body_bad_arguments);
}

/* Every call on reactor @bad, with otherwise valid arguments, must give @want. */
static int all_fail_on_reactor(struct reactor *bad, int want)
{
	unsigned char buf[8] = { 0 };
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	int fds[2] = { -1, -1 }, more[2] = { -1, -1 }, efd;
	uint64_t v = 0;
	size_t moved = 99;

	ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
	efd = eventfd(1, EFD_CLOEXEC);
	ASSERT_GE(efd, 0);
	ASSERT_EQ(write(fds[1], "12345678", 8), 8);

	ASSERT_EQ(iou_nop(bad), want);
	ASSERT_EQ(iou_read(bad, fds[0], buf, sizeof(buf)), want);
	ASSERT_EQ(iou_pread(bad, fds[0], buf, sizeof(buf), 0), want);
	ASSERT_EQ(iou_write(bad, fds[1], buf, sizeof(buf)), want);
	ASSERT_EQ(iou_pwrite(bad, fds[1], buf, sizeof(buf), 0), want);
	ASSERT_EQ(iou_readv(bad, fds[0], &iov, 1), want);
	ASSERT_EQ(iou_preadv(bad, fds[0], &iov, 1, 0), want);
	ASSERT_EQ(iou_writev(bad, fds[1], &iov, 1), want);
	ASSERT_EQ(iou_pwritev(bad, fds[1], &iov, 1, 0), want);
	ASSERT_EQ(iou_read_all(bad, fds[0], buf, sizeof(buf), &moved), want);
	ASSERT_EQ(moved, 0);
	moved = 99;
	ASSERT_EQ(iou_write_all(bad, fds[1], buf, sizeof(buf), &moved), want);
	ASSERT_EQ(moved, 0);
	ASSERT_EQ(iou_poll(bad, fds[0], POLLIN), want);
	ASSERT_EQ(iou_splice(bad, fds[0], -1, fds[1], -1, 8, 0), want);
	ASSERT_EQ(iou_tee(bad, fds[0], fds[1], 8, 0), want);
	ASSERT_EQ(iou_pipe(bad, more, O_CLOEXEC), want);
	ASSERT_EQ(more[0], -1);
	ASSERT_EQ(iou_eventfd_read(bad, efd, &v), want);
	ASSERT_EQ(iou_eventfd_write(bad, efd, 1), want);
	ASSERT_EQ(iou_timerfd_read(bad, efd, &v), want);
	ASSERT_EQ(iou_cancel_fd(bad, fds[0]), want);

	/* Nothing happened: the pipe and the counter are as they were. */
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(read(fds[0], buf, sizeof(buf)), 8);
	ASSERT_EQ(memcmp(buf, "12345678", 8), 0);
	ASSERT_EQ(read(efd, &v, sizeof(v)), (ssize_t)sizeof(v));
	ASSERT_EQ(v, 1);
	ASSERT_EQ(close(efd), 0);
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);
	return 0;
}

static int body_null_reactor(struct reactor *r)
{
	(void)r;
	return all_fail_on_reactor(NULL, -EINVAL);
}

static int test_null_reactor(void)
{
	return in_both_contexts(body_null_reactor);
}

static struct reactor *foreign_r;

static int body_foreign_reactor(struct reactor *r)
{
	(void)r;
	return all_fail_on_reactor(foreign_r, -EPERM);
}

static int test_foreign_reactor(void)
{
	struct test_foreign fo;
	int rc;

	ASSERT_EQ(test_foreign_start(&fo), 0);
	foreign_r = fo.r;
	rc = foreign_r && foreign_r != reactor_get() ? in_both_contexts(body_foreign_reactor) : 1;
	foreign_r = NULL;
	ASSERT_EQ(test_foreign_stop(&fo), 0);
	ASSERT_EQ(rc, 0);
	return 0;
}

TEST_MAIN(T(test_read_write_pipe), T(test_read_write_file), T(test_vectored),
	  T(test_all_concurrent), T(test_read_all_eof), T(test_write_all_epipe),
	  T(test_all_nonblocking), T(test_nonblocking_not_ready), T(test_poll), T(test_splice),
	  T(test_tee), T(test_pipe_flags), T(test_eventfd), T(test_timerfd), T(test_nop),
	  T(test_nop_many), T(test_nop_many_small_ring), T(test_cancel_fd), T(test_cancel_fd_many),
	  T(test_cancel_fd_many_small_ring), T(test_bad_descriptors), T(test_bad_arguments),
	  T(test_null_reactor), T(test_foreign_reactor))
