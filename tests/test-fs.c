/* SPDX-License-Identifier: MIT */
/*
 * File-system operations (<ioucontext/fs.h>), each checked from the thread's
 * own context and again inside a fiber, in a fresh directory under a
 * mkdtemp directory in /tmp that is removed at exit: openat relative to a
 * directory descriptor, to AT_FDCWD (absolute and relative paths) and via
 * iou_open, with O_CREAT|O_EXCL, O_CLOEXEC and O_TMPFILE, and its errors;
 * close (twice: -EBADF), also of a descriptor an operation is still using;
 * fsync and fdatasync; statx of names, of descriptors with AT_EMPTY_PATH
 * and of symlinks; fallocate growing a file, with FALLOC_FL_KEEP_SIZE
 * keeping its size and punching holes; ftruncate growing and shrinking;
 * unlinkat of files and (AT_REMOVEDIR) directories; renameat with
 * RENAME_NOREPLACE and RENAME_EXCHANGE, across directories; mkdirat.  Then
 * the shared errors: a bad dirfd (-EBADF, while AT_FDCWD works), NULL paths
 * and a NULL statx buffer (-EFAULT), a NULL reactor (-EINVAL) and another
 * thread's reactor (-EPERM); and the cancellation rule: a fiber that
 * cancelled itself gets -ECANCELED from everything but iou_close, which
 * still closes (also past the caller's deadline).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <threads.h>
#include <unistd.h>

#include <ioucontext/ioucontext.h>

#include "ops-harness.h"

/* ---- helpers ------------------------------------------------------------- */

static char tmpdir[] = "/tmp/iou-test-fs-XXXXXX";
static bool have_tmpdir;

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

static void remove_tmpdir(void)
{
	if (have_tmpdir)
		nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * A new, empty directory for one run of a test body.  Its absolute path goes
 * to @path (PATH_MAX bytes); returns a descriptor for it, or -errno.
 */
static int fresh_dir(char *path)
{
	static unsigned serial;
	int fd;

	if (!have_tmpdir) {
		if (!mkdtemp(tmpdir))
			return -errno;
		have_tmpdir = true;
		atexit(remove_tmpdir);
		/* So that the modes asked for are the modes found. */
		umask(022);
	}
	snprintf(path, PATH_MAX, "%s/run%u", tmpdir, serial++);
	if (mkdir(path, 0700))
		return -errno;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Create @name in @dirfd holding @content (plain system calls); 0 or -errno. */
static int make_file(int dirfd, const char *name, const char *content)
{
	size_t len = strlen(content);
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	if (write(fd, content, len) != (ssize_t)len) {
		close(fd);
		return -EIO;
	}
	return close(fd) ? -errno : 0;
}

/* True if @name in @dirfd holds exactly @content. */
static bool file_is(int dirfd, const char *name, const char *content)
{
	char buf[256];
	size_t len = strlen(content);
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	return n == (ssize_t)len && !memcmp(buf, content, len);
}

static bool exists(int dirfd, const char *name)
{
	struct stat st;

	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* The size of @fd as iou_statx sees it, or -errno. */
static int64_t size_of(struct reactor *r, int fd)
{
	struct statx st;
	int ret;

	memset(&st, 0, sizeof(st));
	ret = iou_statx(r, fd, "", AT_EMPTY_PATH, STATX_SIZE, &st);
	return ret < 0 ? ret : (int64_t)st.stx_size;
}

static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

static bool fd_is_closed(int fd)
{
	return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}


/* ---- open and close ------------------------------------------------------ */

static int body_open_close(struct reactor *r)
{
	char dir_path[PATH_MAX], path[PATH_MAX + 16];
	struct stat a, b;
	int dir, fd, fd2, file_rel, file_at, cwd;

	dir = fresh_dir(dir_path);
	ASSERT_GE(dir, 0);

	/* Create relative to a directory descriptor. */
	fd = iou_openat(r, dir, "a", O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0640);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(fcntl(fd, F_GETFD), FD_CLOEXEC);
	ASSERT_EQ(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
	ASSERT_EQ(fstatat(dir, "a", &a, 0), 0);
	ASSERT_TRUE(S_ISREG(a.st_mode));
	ASSERT_EQ(a.st_mode & 07777, 0640);
	ASSERT_EQ(write(fd, "data", 4), 4);
	ASSERT_EQ(iou_openat(r, dir, "a", O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0640), -EEXIST);
	ASSERT_EQ(iou_openat(r, dir, "missing", O_RDONLY | O_CLOEXEC, 0), -ENOENT);
	ASSERT_EQ(iou_openat(r, dir, "a", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0), -ENOTDIR);
	/* A regular file is no directory to be relative to. */
	ASSERT_EQ(iou_openat(r, fd, "x", O_RDONLY | O_CLOEXEC, 0), -ENOTDIR);

	/* O_CLOEXEC is not added for you. */
	fd2 = iou_openat(r, dir, "a", O_RDONLY, 0);
	ASSERT_GE(fd2, 0);
	ASSERT_EQ(fcntl(fd2, F_GETFD), 0);
	ASSERT_EQ(iou_close(r, fd2), 0);

	/* AT_FDCWD with an absolute path, and iou_open. */
	snprintf(path, sizeof(path), "%s/a", dir_path);
	fd2 = iou_openat(r, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	ASSERT_GE(fd2, 0);
	ASSERT_EQ(fstat(fd2, &b), 0);
	ASSERT_EQ(b.st_ino, a.st_ino);
	ASSERT_EQ(iou_close(r, fd2), 0);
	fd2 = iou_open(r, path, O_RDONLY | O_CLOEXEC, 0);
	ASSERT_GE(fd2, 0);
	ASSERT_EQ(fstat(fd2, &b), 0);
	ASSERT_EQ(b.st_ino, a.st_ino);
	ASSERT_EQ(iou_close(r, fd2), 0);
	ASSERT_EQ(iou_open(r, "/nonexistent/iou-test", O_RDONLY | O_CLOEXEC, 0), -ENOENT);
	/* An absolute path ignores a valid dirfd. */
	fd2 = iou_openat(r, fd, path, O_RDONLY | O_CLOEXEC, 0);
	ASSERT_GE(fd2, 0);
	ASSERT_EQ(iou_close(r, fd2), 0);

	/* AT_FDCWD with a relative path follows the working directory. */
	cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_GE(cwd, 0);
	ASSERT_EQ(fchdir(dir), 0);
	file_rel = iou_open(r, "a", O_RDONLY | O_CLOEXEC, 0);
	file_at = iou_openat(r, AT_FDCWD, "a", O_RDONLY | O_CLOEXEC, 0);
	ASSERT_EQ(fchdir(cwd), 0);
	ASSERT_EQ(close(cwd), 0);
	ASSERT_GE(file_rel, 0);
	ASSERT_GE(file_at, 0);
	ASSERT_EQ(fstat(file_rel, &b), 0);
	ASSERT_EQ(b.st_ino, a.st_ino);
	ASSERT_EQ(fstat(file_at, &b), 0);
	ASSERT_EQ(b.st_ino, a.st_ino);
	ASSERT_EQ(iou_close(r, file_rel), 0);
	ASSERT_EQ(iou_close(r, file_at), 0);

	/* O_TMPFILE: an unnamed file in the directory, with the mode given. */
	fd2 = iou_openat(r, dir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd2 != -EOPNOTSUPP) {
		ASSERT_GE(fd2, 0);
		ASSERT_EQ(fstat(fd2, &b), 0);
		ASSERT_EQ(b.st_nlink, 0);
		ASSERT_EQ(b.st_mode & 07777, 0600);
		ASSERT_EQ(iou_close(r, fd2), 0);
	}

	/* Close: the descriptor goes; a second close is -EBADF. */
	ASSERT_EQ(iou_close(r, fd), 0);
	ASSERT_TRUE(fd_is_closed(fd));
	ASSERT_EQ(iou_close(r, fd), -EBADF);
	ASSERT_EQ(iou_close(r, -1), -EBADF);
	ASSERT_TRUE(file_is(dir, "a", "data"));

	/* A closed descriptor as dirfd: as openat(2). */
	ASSERT_EQ(iou_openat(r, fd, "a", O_RDONLY | O_CLOEXEC, 0), -EBADF);
	ASSERT_EQ(iou_close(r, dir), 0);
	return 0;
}

static int test_open_close(void)
{
	return in_both_contexts(body_open_close);
}

/* A fiber parked in a read of @fd. */
struct reader {
	int fd;
	char buf[8];
	ssize_t ret;
};

static void *reader_fiber(void *arg)
{
	struct reader *rd = arg;

	rd->ret = iou_read(reactor_get(), rd->fd, rd->buf, sizeof(rd->buf));
	return NULL;
}

/* fs.h: operations in flight on a closed descriptor keep their file. */
static int body_close_in_flight(struct reactor *r)
{
	struct reader rd = { .ret = 1 };
	struct fiber *f;
	int fds[2] = { -1, -1 };

	ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
	rd.fd = fds[0];
	ASSERT_EQ(fiber_spawn(r, reader_fiber, &rd, &f), 0);
	ASSERT_EQ(fiber_sleep(r, 5 * IOU_MSEC), 0);
	ASSERT_EQ(rd.ret, 1); /* parked */
	ASSERT_EQ(iou_close(r, fds[0]), 0);
	ASSERT_TRUE(fd_is_closed(fds[0]));
	/* The pipe still has its reader: the write goes through and is read. */
	ASSERT_EQ(write(fds[1], "x", 1), 1);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(rd.ret, 1);
	ASSERT_EQ(rd.buf[0], 'x');
	ASSERT_EQ(iou_close(r, fds[1]), 0);
	return 0;
}

static int test_close_in_flight(void)
{
	signal(SIGPIPE, SIG_IGN);
	return in_both_contexts(body_close_in_flight);
}

/* ---- fsync, fdatasync ---------------------------------------------------- */

static int body_sync(struct reactor *r)
{
	char dir_path[PATH_MAX];
	int dir, fd, fds[2] = { -1, -1 };

	dir = fresh_dir(dir_path);
	ASSERT_GE(dir, 0);
	fd = iou_openat(r, dir, "f", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(iou_pwrite(r, fd, "synced", 6, 0), 6);
	ASSERT_EQ(iou_fsync(r, fd), 0);
	ASSERT_EQ(iou_pwrite(r, fd, "again", 5, 6), 5);
	ASSERT_EQ(iou_fdatasync(r, fd), 0);
	ASSERT_TRUE(file_is(dir, "f", "syncedagain"));
	/* Directories can be synced too. */
	ASSERT_EQ(iou_fsync(r, dir), 0);
	ASSERT_EQ(iou_fdatasync(r, dir), 0);
	/* A pipe cannot: as fsync(2). */
	ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
	ASSERT_EQ(iou_fsync(r, fds[1]), -EINVAL);
	ASSERT_EQ(iou_fdatasync(r, fds[1]), -EINVAL);
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);

	ASSERT_EQ(iou_close(r, fd), 0);
	ASSERT_EQ(iou_fsync(r, fd), -EBADF);
	ASSERT_EQ(iou_fdatasync(r, fd), -EBADF);
	ASSERT_EQ(iou_fsync(r, -1), -EBADF);
	ASSERT_EQ(iou_fdatasync(r, -1), -EBADF);
	ASSERT_EQ(iou_close(r, dir), 0);
	return 0;
}

static int test_sync(void)
{
	return in_both_contexts(body_sync);
}

/* ---- statx --------------------------------------------------------------- */

static int body_statx(struct reactor *r)
{
	char dir_path[PATH_MAX], path[PATH_MAX + 16], data[1234];
	struct statx st, st2;
	int dir, fd;

	dir = fresh_dir(dir_path);
	ASSERT_GE(dir, 0);
	fd = iou_openat(r, dir, "f", O_CREAT | O_RDWR | O_CLOEXEC, 0640);
	ASSERT_GE(fd, 0);
	memset(data, 'd', sizeof(data));
	ASSERT_EQ(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));

	/* By name relative to the directory. */
	memset(&st, 0, sizeof(st));
	ASSERT_EQ(iou_statx(r, dir, "f", 0, STATX_BASIC_STATS, &st), 0);
	ASSERT_EQ(st.stx_mask & (STATX_TYPE | STATX_MODE | STATX_SIZE | STATX_INO),
		  STATX_TYPE | STATX_MODE | STATX_SIZE | STATX_INO);
	ASSERT_EQ(st.stx_size, sizeof(data));
	ASSERT_TRUE(S_ISREG(st.stx_mode));
	ASSERT_EQ(st.stx_mode & 07777, 0640);
	ASSERT_EQ(st.stx_nlink, 1);

	/* The descriptor itself, with AT_EMPTY_PATH. */
	memset(&st2, 0, sizeof(st2));
	ASSERT_EQ(iou_statx(r, fd, "", AT_EMPTY_PATH, STATX_SIZE | STATX_INO, &st2), 0);
	ASSERT_EQ(st2.stx_size, sizeof(data));
	ASSERT_EQ(st2.stx_ino, st.stx_ino);
	/* ...which sees the size change. */
	ASSERT_EQ(pwrite(fd, "x", 1, 5000), 1);
	ASSERT_EQ(iou_statx(r, fd, "", AT_EMPTY_PATH, STATX_SIZE, &st2), 0);
	ASSERT_EQ(st2.stx_size, 5001);
	/* An empty path without AT_EMPTY_PATH names nothing. */
	ASSERT_EQ(iou_statx(r, fd, "", 0, STATX_SIZE, &st2), -ENOENT);

	/* AT_FDCWD with an absolute path. */
	snprintf(path, sizeof(path), "%s/f", dir_path);
	memset(&st2, 0, sizeof(st2));
	ASSERT_EQ(iou_statx(r, AT_FDCWD, path, 0, STATX_INO, &st2), 0);
	ASSERT_EQ(st2.stx_ino, st.stx_ino);

	/* A directory, and a symlink followed or not. */
	memset(&st2, 0, sizeof(st2));
	ASSERT_EQ(iou_statx(r, dir, ".", 0, STATX_TYPE | STATX_MODE, &st2), 0);
	ASSERT_TRUE(S_ISDIR(st2.stx_mode));
	ASSERT_EQ(st2.stx_mode & 07777, 0700);
	ASSERT_EQ(symlinkat("f", dir, "l"), 0);
	ASSERT_EQ(iou_statx(r, dir, "l", AT_SYMLINK_NOFOLLOW, STATX_TYPE, &st2), 0);
	ASSERT_TRUE(S_ISLNK(st2.stx_mode));
	ASSERT_EQ(iou_statx(r, dir, "l", 0, STATX_TYPE | STATX_INO, &st2), 0);
	ASSERT_TRUE(S_ISREG(st2.stx_mode));
	ASSERT_EQ(st2.stx_ino, st.stx_ino);

	ASSERT_EQ(iou_statx(r, dir, "missing", 0, STATX_BASIC_STATS, &st2), -ENOENT);
	ASSERT_EQ(iou_statx(r, dir, "f", 0, STATX_BASIC_STATS, NULL), -EFAULT);
	ASSERT_EQ(iou_statx(r, fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, NULL), -EFAULT);
	ASSERT_EQ(iou_close(r, fd), 0);
	ASSERT_EQ(iou_statx(r, fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &st2), -EBADF);
	ASSERT_EQ(iou_close(r, dir), 0);
	return 0;
}

static int test_statx(void)
{
	return in_both_contexts(body_statx);
}

/* ---- fallocate ----------------------------------------------------------- */

static int body_fallocate(struct reactor *r)
{
	char dir_path[PATH_MAX], buf[4096];
	struct statx st;
	int dir, fd, ro, fds[2] = { -1, -1 };

	dir = fresh_dir(dir_path);
	ASSERT_GE(dir, 0);
	fd = iou_openat(r, dir, "f", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_GE(fd, 0);

	/* Mode 0 grows the file. */
	ASSERT_EQ(iou_fallocate(r, fd, 0, 0, 65536), 0);
	ASSERT_EQ(size_of(r, fd), 65536);
	/* FALLOC_FL_KEEP_SIZE allocates past the end without growing it. */
	ASSERT_EQ(iou_fallocate(r, fd, FALLOC_FL_KEEP_SIZE, 65536, 65536), 0);
	ASSERT_EQ(size_of(r, fd), 65536);
	memset(&st, 0, sizeof(st));
	ASSERT_EQ(iou_statx(r, fd, "", AT_EMPTY_PATH, STATX_SIZE | STATX_BLOCKS, &st), 0);
	ASSERT_GE(st.stx_blocks * 512, 131072);
	/* A range inside the file changes nothing of its size. */
	ASSERT_EQ(iou_fallocate(r, fd, 0, 4096, 4096), 0);
	ASSERT_EQ(size_of(r, fd), 65536);

	/* Punching a hole zeroes the range, size kept. */
	memset(buf, 'p', sizeof(buf));
	ASSERT_EQ(pwrite(fd, buf, sizeof(buf), 8192), (ssize_t)sizeof(buf));
	ASSERT_EQ(iou_fallocate(r, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8192, 4096), 0);
	ASSERT_EQ(size_of(r, fd), 65536);
	ASSERT_EQ(pread(fd, buf, sizeof(buf), 8192), (ssize_t)sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		ASSERT_EQ(buf[i], 0);
	/* ...and needs FALLOC_FL_KEEP_SIZE: as fallocate(2). */
	ASSERT_EQ(iou_fallocate(r, fd, FALLOC_FL_PUNCH_HOLE, 0, 4096), -EOPNOTSUPP);

	/* Errors as fallocate(2). */
	ASSERT_EQ(iou_fallocate(r, fd, 0, 0, 0), -EINVAL);
	ASSERT_EQ(iou_fallocate(r, fd, 0, 0, -1), -EINVAL);
	ASSERT_EQ(iou_fallocate(r, fd, 0, -1, 4096), -EINVAL);
	ro = iou_openat(r, dir, "f", O_RDONLY | O_CLOEXEC, 0);
	ASSERT_GE(ro, 0);
	ASSERT_EQ(iou_fallocate(r, ro, 0, 0, 4096), -EBADF);
	ASSERT_EQ(iou_close(r, ro), 0);
	ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
	ASSERT_EQ(iou_fallocate(r, fds[1], 0, 0, 4096), -ESPIPE);
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);
	ASSERT_EQ(iou_fallocate(r, -1, 0, 0, 4096), -EBADF);
	ASSERT_EQ(iou_close(r, fd), 0);
	ASSERT_EQ(iou_fallocate(r, fd, 0, 0, 4096), -EBADF);
	ASSERT_EQ(iou_close(r, dir), 0);
	return 0;
}

static int test_fallocate(void)
{
	return in_both_contexts(body_fallocate);
}

/* ---- ftruncate ----------------------------------------------------------- */

static int body_ftruncate(struct reactor *r)
{
	char dir_path[PATH_MAX], buf[10000];
	int dir, fd, ro, fds[2] = { -1, -1 };

	dir = fresh_dir(dir_path);
	ASSERT_GE(dir, 0);
	fd = iou_openat(r, dir, "f", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(write(fd, "0123456789abcdef", 16), 16);

	/* Grow: the new part reads as zeros. */
	ASSERT_EQ(iou_ftruncate(r, fd, 10000), 0);
	ASSERT_EQ(size_of(r, fd), 10000);
	memset(buf, 'x', sizeof(buf));
	ASSERT_EQ(pread(fd, buf, sizeof(buf), 0), 10000);
	ASSERT_EQ(memcmp(buf, "0123456789abcdef", 16), 0);
	for (size_t i = 16; i < sizeof(buf); i++)
		ASSERT_EQ(buf[i], 0);
	/* Shrink: the head stays. */
	ASSERT_EQ(iou_ftruncate(r, fd, 10), 0);
	ASSERT_EQ(size_of(r, fd), 10);
	ASSERT_TRUE(file_is(dir, "f", "0123456789"));
	ASSERT_EQ(iou_ftruncate(r, fd, 0), 0);
	ASSERT_EQ(size_of(r, fd), 0);

	ASSERT_EQ(iou_ftruncate(r, fd, -1), -EINVAL);
	ASSERT_EQ(iou_ftruncate(r, fd, INT64_MIN), -EINVAL);
	ASSERT_EQ(size_of(r, fd), 0);
	/* Not open for writing, or not a file: as ftruncate(2). */
	ro = iou_openat(r, dir, "f", O_RDONLY | O_CLOEXEC, 0);
	ASSERT_GE(ro, 0);
	ASSERT_EQ(iou_ftruncate(r, ro, 5), -EINVAL);
	ASSERT_EQ(iou_close(r, ro), 0);
	ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
	ASSERT_EQ(iou_ftruncate(r, fds[1], 5), -EINVAL);
	ASSERT_EQ(close(fds[0]), 0);
	ASSERT_EQ(close(fds[1]), 0);
	ASSERT_EQ(iou_ftruncate(r, -1, 5), -EBADF);
	ASSERT_EQ(iou_close(r, fd), 0);
	ASSERT_EQ(iou_ftruncate(r, fd, 5), -EBADF);
	ASSERT_EQ(iou_close(r, dir), 0);
	return 0;
}

static int test_ftruncate(void)
{
	return in_both_contexts(body_ftruncate);
}

/* ---- unlinkat, renameat, mkdirat ----------------------------------------- */

static int body_unlinkat(struct reactor *r)
{
	char dir_path[PATH_MAX], path[PATH_MAX + 16];
	int dir;

	dir = fresh_dir(dir_path);
	ASSERT_GE(dir, 0);

	/* A file. */
	ASSERT_EQ(make_file(dir, "f", "x"), 0);
	ASSERT_EQ(iou_unlinkat(r, dir, "f", 0), 0);
	ASSERT_TRUE(!exists(dir, "f"));
	ASSERT_EQ(iou_unlinkat(r, dir, "f", 0), -ENOENT);

	/* A directory needs AT_REMOVEDIR, and to be empty. */
	ASSERT_EQ(mkdirat(dir, "d", 0700), 0);
	ASSERT_EQ(iou_unlinkat(r, dir, "d", 0), -EISDIR);
	ASSERT_TRUE(exists(dir, "d"));
	ASSERT_EQ(make_file(dir, "d/inner", "y"), 0);
	ASSERT_EQ(iou_unlinkat(r, dir, "d", AT_REMOVEDIR), -ENOTEMPTY);
	ASSERT_EQ(iou_unlinkat(r, dir, "d/inner", 0), 0);
	ASSERT_EQ(iou_unlinkat(r, dir, "d", AT_REMOVEDIR), 0);
	ASSERT_TRUE(!exists(dir, "d"));
	ASSERT_EQ(iou_unlinkat(r, dir, "d", AT_REMOVEDIR), -ENOENT);

	/* AT_REMOVEDIR on a file; an unknown flag. */
	ASSERT_EQ(make_file(dir, "g", "z"), 0);
	ASSERT_EQ(iou_unlinkat(r, dir, "g", AT_REMOVEDIR), -ENOTDIR);
	ASSERT_EQ(iou_unlinkat(r, dir, "g", AT_SYMLINK_NOFOLLOW), -EINVAL);
	ASSERT_TRUE(exists(dir, "g"));

	/* AT_FDCWD with an absolute path. */
	snprintf(path, sizeof(path), "%s/g", dir_path);
	ASSERT_EQ(iou_unlinkat(r, AT_FDCWD, path, 0), 0);
	ASSERT_TRUE(!exists(dir, "g"));
	ASSERT_EQ(iou_close(r, dir), 0);
	return 0;
}

static int test_unlinkat(void)
{
	return in_both_contexts(body_unlinkat);
}

static int body_renameat(struct reactor *r)
{
	char dir_path[PATH_MAX], from[PATH_MAX + 16], to[PATH_MAX + 16];
	int dir, sub;

	dir = fresh_dir(dir_path);
	ASSERT_GE(dir, 0);

	/* A plain rename moves the name. */
	ASSERT_EQ(make_file(dir, "a", "A"), 0);
	ASSERT_EQ(iou_renameat(r, dir, "a", dir, "b", 0), 0);
	ASSERT_TRUE(!exists(dir, "a"));
	ASSERT_TRUE(file_is(dir, "b", "A"));
	ASSERT_EQ(iou_renameat(r, dir, "a", dir, "b", 0), -ENOENT);

	/* RENAME_NOREPLACE refuses an existing target; 0 replaces it. */
	ASSERT_EQ(make_file(dir, "c", "C"), 0);
	ASSERT_EQ(iou_renameat(r, dir, "b", dir, "c", RENAME_NOREPLACE), -EEXIST);
	ASSERT_TRUE(file_is(dir, "b", "A"));
	ASSERT_TRUE(file_is(dir, "c", "C"));
	ASSERT_EQ(iou_renameat(r, dir, "b", dir, "c", 0), 0);
	ASSERT_TRUE(!exists(dir, "b"));
	ASSERT_TRUE(file_is(dir, "c", "A"));
	ASSERT_EQ(iou_renameat(r, dir, "c", dir, "n", RENAME_NOREPLACE), 0);
	ASSERT_TRUE(file_is(dir, "n", "A"));

	/* RENAME_EXCHANGE swaps two names; both must exist. */
	ASSERT_EQ(make_file(dir, "x", "X"), 0);
	ASSERT_EQ(make_file(dir, "y", "Y"), 0);
	ASSERT_EQ(iou_renameat(r, dir, "x", dir, "y", RENAME_EXCHANGE), 0);
	ASSERT_TRUE(file_is(dir, "x", "Y"));
	ASSERT_TRUE(file_is(dir, "y", "X"));
	ASSERT_EQ(iou_renameat(r, dir, "x", dir, "none", RENAME_EXCHANGE), -ENOENT);
	ASSERT_EQ(iou_renameat(r, dir, "x", dir, "y", RENAME_EXCHANGE | RENAME_NOREPLACE), -EINVAL);

	/* Across directory descriptors, and with AT_FDCWD and absolute paths. */
	ASSERT_EQ(mkdirat(dir, "sub", 0700), 0);
	sub = iou_openat(r, dir, "sub", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	ASSERT_GE(sub, 0);
	ASSERT_EQ(iou_renameat(r, dir, "n", sub, "moved", 0), 0);
	ASSERT_TRUE(!exists(dir, "n"));
	ASSERT_TRUE(file_is(sub, "moved", "A"));
	snprintf(from, sizeof(from), "%s/sub/moved", dir_path);
	snprintf(to, sizeof(to), "%s/back", dir_path);
	ASSERT_EQ(iou_renameat(r, AT_FDCWD, from, AT_FDCWD, to, 0), 0);
	ASSERT_TRUE(file_is(dir, "back", "A"));
	ASSERT_TRUE(!exists(sub, "moved"));
	/* A directory into itself is refused, as rename(2). */
	ASSERT_EQ(iou_renameat(r, dir, "sub", sub, "inside", 0), -EINVAL);
	ASSERT_EQ(iou_close(r, sub), 0);
	ASSERT_EQ(iou_close(r, dir), 0);
	return 0;
}

static int test_renameat(void)
{
	return in_both_contexts(body_renameat);
}

static int body_mkdirat(struct reactor *r)
{
	char dir_path[PATH_MAX], path[PATH_MAX + 16];
	struct statx st;
	int dir, fd;

	dir = fresh_dir(dir_path);
	ASSERT_GE(dir, 0);
	ASSERT_EQ(iou_mkdirat(r, dir, "d", 0750), 0);
	memset(&st, 0, sizeof(st));
	ASSERT_EQ(iou_statx(r, dir, "d", 0, STATX_TYPE | STATX_MODE, &st), 0);
	ASSERT_TRUE(S_ISDIR(st.stx_mode));
	ASSERT_EQ(st.stx_mode & 07777, 0750);
	ASSERT_EQ(iou_mkdirat(r, dir, "d", 0750), -EEXIST);
	/* Usable at once. */
	fd = iou_openat(r, dir, "d/f", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(iou_close(r, fd), 0);
	ASSERT_EQ(iou_mkdirat(r, dir, "d/f", 0700), -EEXIST);
	ASSERT_EQ(iou_mkdirat(r, dir, "d/f/sub", 0700), -ENOTDIR);
	ASSERT_EQ(iou_mkdirat(r, dir, "missing/sub", 0700), -ENOENT);

	/* AT_FDCWD with an absolute path. */
	snprintf(path, sizeof(path), "%s/abs", dir_path);
	ASSERT_EQ(iou_mkdirat(r, AT_FDCWD, path, 0700), 0);
	ASSERT_EQ(iou_statx(r, dir, "abs", 0, STATX_TYPE, &st), 0);
	ASSERT_TRUE(S_ISDIR(st.stx_mode));
	ASSERT_EQ(iou_close(r, dir), 0);
	return 0;
}

static int test_mkdirat(void)
{
	return in_both_contexts(body_mkdirat);
}

/* ---- errors every call shares --------------------------------------------- */

static int body_bad_dirfd_and_paths(struct reactor *r)
{
	char dir_path[PATH_MAX], path[PATH_MAX + 16];
	struct statx st;
	int dir;

	dir = fresh_dir(dir_path);
	ASSERT_GE(dir, 0);
	ASSERT_EQ(make_file(dir, "f", "F"), 0);
	snprintf(path, sizeof(path), "%s/f", dir_path);
	memset(&st, 0, sizeof(st));

	/* A negative dirfd other than AT_FDCWD, even with an absolute path. */
	ASSERT_EQ(iou_openat(r, -5, "f", O_RDONLY | O_CLOEXEC, 0), -EBADF);
	ASSERT_EQ(iou_openat(r, -5, path, O_RDONLY | O_CLOEXEC, 0), -EBADF);
	ASSERT_EQ(iou_openat(r, INT_MIN, path, O_RDONLY | O_CLOEXEC, 0), -EBADF);
	ASSERT_EQ(iou_statx(r, -5, path, 0, STATX_SIZE, &st), -EBADF);
	ASSERT_EQ(iou_statx(r, -5, "", AT_EMPTY_PATH, STATX_SIZE, &st), -EBADF);
	ASSERT_EQ(iou_unlinkat(r, -5, path, 0), -EBADF);
	ASSERT_EQ(iou_renameat(r, -5, path, dir, "g", 0), -EBADF);
	ASSERT_EQ(iou_renameat(r, dir, "f", -5, "g", 0), -EBADF);
	ASSERT_EQ(iou_mkdirat(r, -5, "d", 0700), -EBADF);
	ASSERT_TRUE(file_is(dir, "f", "F"));
	ASSERT_TRUE(!exists(dir, "g"));
	ASSERT_TRUE(!exists(dir, "d"));

	/* AT_FDCWD is the one negative dirfd accepted. */
	ASSERT_EQ(iou_statx(r, AT_FDCWD, path, 0, STATX_SIZE, &st), 0);
	ASSERT_EQ(st.stx_size, 1);

	/* NULL paths, and a NULL statx buffer. */
	ASSERT_EQ(iou_openat(r, dir, NULL, O_RDONLY | O_CLOEXEC, 0), -EFAULT);
	ASSERT_EQ(iou_openat(r, AT_FDCWD, NULL, O_RDONLY | O_CLOEXEC, 0), -EFAULT);
	ASSERT_EQ(iou_open(r, NULL, O_RDONLY | O_CLOEXEC, 0), -EFAULT);
	ASSERT_EQ(iou_statx(r, dir, NULL, 0, STATX_SIZE, &st), -EFAULT);
	ASSERT_EQ(iou_statx(r, dir, "f", 0, STATX_SIZE, NULL), -EFAULT);
	ASSERT_EQ(iou_unlinkat(r, dir, NULL, 0), -EFAULT);
	ASSERT_EQ(iou_renameat(r, dir, NULL, dir, "g", 0), -EFAULT);
	ASSERT_EQ(iou_renameat(r, dir, "f", dir, NULL, 0), -EFAULT);
	ASSERT_EQ(iou_mkdirat(r, dir, NULL, 0700), -EFAULT);
	ASSERT_TRUE(file_is(dir, "f", "F"));
	ASSERT_EQ(iou_close(r, dir), 0);
	return 0;
}

static int test_bad_dirfd_and_paths(void)
{
	return in_both_contexts(body_bad_dirfd_and_paths);
}

/* Every call on reactor @bad, with otherwise valid arguments, must give @want. */
static int all_fail_on_reactor(struct reactor *bad, int want)
{
	char dir_path[PATH_MAX];
	struct statx st;
	int dir, fd;

	dir = fresh_dir(dir_path);
	ASSERT_GE(dir, 0);
	ASSERT_EQ(make_file(dir, "f", "F"), 0);
	fd = openat(dir, "f", O_RDWR | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	memset(&st, 0, sizeof(st));

	ASSERT_EQ(iou_openat(bad, dir, "f", O_RDONLY | O_CLOEXEC, 0), want);
	ASSERT_EQ(iou_openat(bad, dir, "new", O_CREAT | O_RDWR | O_CLOEXEC, 0600), want);
	ASSERT_EQ(iou_open(bad, dir_path, O_RDONLY | O_CLOEXEC, 0), want);
	ASSERT_EQ(iou_close(bad, fd), want);
	ASSERT_TRUE(fd_is_open(fd));
	ASSERT_EQ(iou_fsync(bad, fd), want);
	ASSERT_EQ(iou_fdatasync(bad, fd), want);
	ASSERT_EQ(iou_statx(bad, dir, "f", 0, STATX_SIZE, &st), want);
	ASSERT_EQ(iou_fallocate(bad, fd, 0, 0, 4096), want);
	ASSERT_EQ(iou_ftruncate(bad, fd, 0), want);
	ASSERT_EQ(iou_unlinkat(bad, dir, "f", 0), want);
	ASSERT_EQ(iou_renameat(bad, dir, "f", dir, "g", 0), want);
	ASSERT_EQ(iou_mkdirat(bad, dir, "d", 0700), want);

	/* Nothing happened. */
	ASSERT_TRUE(file_is(dir, "f", "F"));
	ASSERT_TRUE(!exists(dir, "new"));
	ASSERT_TRUE(!exists(dir, "g"));
	ASSERT_TRUE(!exists(dir, "d"));
	ASSERT_EQ(close(fd), 0);
	ASSERT_EQ(close(dir), 0);
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

/* ---- cancellation and deadlines ------------------------------------------ */

static int cancelled_body(struct reactor *r)
{
	char dir_path[PATH_MAX];
	struct statx st;
	int dir, fd, fd2;

	dir = fresh_dir(dir_path);
	ASSERT_GE(dir, 0);
	fd = iou_openat(r, dir, "f", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_GE(fd, 0);
	fd2 = dup(fd);
	ASSERT_GE(fd2, 0);

	ASSERT_EQ(fiber_cancel(fiber_self(r)), 0);
	ASSERT_TRUE(fiber_cancelled(r));
	/* Every call now fails at once... */
	memset(&st, 0, sizeof(st));
	ASSERT_EQ(iou_openat(r, dir, "f", O_RDONLY | O_CLOEXEC, 0), -ECANCELED);
	ASSERT_EQ(iou_open(r, dir_path, O_RDONLY | O_CLOEXEC, 0), -ECANCELED);
	ASSERT_EQ(iou_openat(r, dir, "new", O_CREAT | O_RDWR | O_CLOEXEC, 0600), -ECANCELED);
	ASSERT_EQ(iou_fsync(r, fd), -ECANCELED);
	ASSERT_EQ(iou_fdatasync(r, fd), -ECANCELED);
	ASSERT_EQ(iou_statx(r, fd, "", AT_EMPTY_PATH, STATX_SIZE, &st), -ECANCELED);
	ASSERT_EQ(iou_fallocate(r, fd, 0, 0, 4096), -ECANCELED);
	ASSERT_EQ(iou_ftruncate(r, fd, 100), -ECANCELED);
	ASSERT_EQ(iou_unlinkat(r, dir, "f", 0), -ECANCELED);
	ASSERT_EQ(iou_renameat(r, dir, "f", dir, "g", 0), -ECANCELED);
	ASSERT_EQ(iou_mkdirat(r, dir, "d", 0700), -ECANCELED);
	/* ...and did nothing. */
	ASSERT_TRUE(!exists(dir, "new"));
	ASSERT_TRUE(!exists(dir, "g"));
	ASSERT_TRUE(!exists(dir, "d"));
	ASSERT_TRUE(file_is(dir, "f", ""));

	/* iou_close still closes, once. */
	ASSERT_EQ(iou_close(r, fd), 0);
	ASSERT_TRUE(fd_is_closed(fd));
	ASSERT_EQ(iou_close(r, fd), -EBADF);
	ASSERT_EQ(iou_close(r, -1), -EBADF);
	ASSERT_EQ(iou_close(r, fd2), 0);
	ASSERT_TRUE(fd_is_closed(fd2));
	ASSERT_EQ(iou_close(r, dir), 0);
	ASSERT_TRUE(fd_is_closed(dir));
	return 0;
}

static void *cancelled_fiber(void *arg)
{
	*(int *)arg = cancelled_body(reactor_get());
	return NULL;
}

static int test_cancelled_fiber_still_closes(void)
{
	struct reactor *r = reactor_get();
	int rc = -1;

	ASSERT_EQ(fiber_spawn(r, cancelled_fiber, &rc, NULL), 0);
	ASSERT_EQ(reactor_run(r), 0);
	ASSERT_EQ(rc, 0);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

/* A deadline already passed does not stop iou_close either. */
static int body_close_past_deadline(struct reactor *r)
{
	char dir_path[PATH_MAX];
	int dir, fd;
	int64_t old;

	dir = fresh_dir(dir_path);
	ASSERT_GE(dir, 0);
	fd = openat(dir, "f", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_GE(fd, 0);
	old = fiber_set_deadline(r, IOU_DEADLINE_NOW);
	ASSERT_EQ(iou_close(r, fd), 0);
	ASSERT_TRUE(fd_is_closed(fd));
	ASSERT_EQ(iou_close(r, dir), 0);
	ASSERT_TRUE(fd_is_closed(dir));
	fiber_set_deadline(r, iou_now() - IOU_SEC);
	ASSERT_EQ(iou_close(r, fd), -EBADF);
	fiber_set_deadline(r, old);
	return 0;
}

static int test_close_past_deadline(void)
{
	return in_both_contexts(body_close_past_deadline);
}

TEST_MAIN(T(test_open_close), T(test_close_in_flight), T(test_sync), T(test_statx),
	  T(test_fallocate), T(test_ftruncate), T(test_unlinkat), T(test_renameat), T(test_mkdirat),
	  T(test_bad_dirfd_and_paths), T(test_null_reactor), T(test_foreign_reactor),
	  T(test_cancelled_fiber_still_closes), T(test_close_past_deadline))
