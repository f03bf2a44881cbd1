/* SPDX-License-Identifier: MIT */
/*
 * Socket operations (<ioucontext/net.h>) and iou_accept_each(), the accept
 * loop that turns one multishot accept request into a fiber per connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ioucontext/fiber.h>
#include <ioucontext/io.h>
#include <ioucontext/net.h>

#include "op.h"

/* Gives up the CPU while at the descriptor limit. */
#define EMFILE_PAUSE (50 * IOU_MSEC)

IOU_API int iou_socket(struct reactor *r, int domain, int type, int protocol)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;

	if (r && !iou__has_op(r, IORING_OP_SOCKET)) {
		int ret = iou__check(r);

		return ret < 0 ? ret : iou__sys(socket(domain, type, protocol));
	}
	IOU__OP_BEGIN(r, IORING_OP_SOCKET, op, sqe);
	io_uring_prep_socket(sqe, domain, type, protocol, 0);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API int iou_bind(struct reactor *r, int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;

	if (fd < 0)
		return -EBADF;
	if (!addr)
		return -EFAULT;
	if (r && !iou__has_op(r, IOU__OP_BIND)) {
		int ret = iou__check(r);

		return ret < 0 ? ret : iou__sys(bind(fd, addr, addrlen));
	}
	IOU__OP_BEGIN(r, IOU__OP_BIND, op, sqe);
	io_uring_prep_rw(IOU__OP_BIND, sqe, fd, addr, 0, addrlen);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API int iou_listen(struct reactor *r, int fd, int backlog)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;

	if (fd < 0)
		return -EBADF;
	if (r && !iou__has_op(r, IOU__OP_LISTEN)) {
		int ret = iou__check(r);

		return ret < 0 ? ret : iou__sys(listen(fd, backlog));
	}
	IOU__OP_BEGIN(r, IOU__OP_LISTEN, op, sqe);
	io_uring_prep_rw(IOU__OP_LISTEN, sqe, fd, NULL, (unsigned)backlog, 0);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API int iou_connect(struct reactor *r, int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;

	if (fd < 0)
		return -EBADF;
	if (!addr)
		return -EFAULT;
	IOU__OP_BEGIN(r, IORING_OP_CONNECT, op, sqe);
	io_uring_prep_connect(sqe, fd, addr, addrlen);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API int iou_accept(struct reactor *r, int fd, struct sockaddr *addr, socklen_t *addrlen,
		       int flags)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	if (fd < 0)
		return -EBADF;
	if (addr && !addrlen)
		return -EFAULT;
	IOU__OP_BEGIN(r, IORING_OP_ACCEPT, op, sqe);
	io_uring_prep_accept(sqe, fd, addr, addrlen, flags);
	ret = IOU__OP_RUN(r, &op, sqe);
	if (ret >= 0 && addr) {
		iou__filled(addrlen, sizeof(*addrlen));
		iou__filled(addr, *addrlen);
	}
	return ret;
}

static ssize_t xfer(struct reactor *r, int opcode, int fd, const void *buf, size_t len,
		    int flags)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	if (fd < 0)
		return -EBADF;
	if (!buf && len)
		return -EFAULT;
	IOU__OP_BEGIN(r, opcode, op, sqe);
	io_uring_prep_rw(opcode, sqe, fd, buf, iou__clamp_len(len), 0);
	sqe->msg_flags = (unsigned)flags;
	ret = IOU__OP_RUN(r, &op, sqe);
	if (opcode == IORING_OP_RECV && ret > 0)
		iou__filled(buf, (size_t)ret);
	return ret;
}

IOU_API ssize_t iou_send(struct reactor *r, int fd, const void *buf, size_t len, int flags)
{
	return xfer(r, IORING_OP_SEND, fd, buf, len, flags | MSG_NOSIGNAL);
}

IOU_API ssize_t iou_recv(struct reactor *r, int fd, void *buf, size_t len, int flags)
{
	return xfer(r, IORING_OP_RECV, fd, buf, len, flags);
}

static ssize_t msg(struct reactor *r, int opcode, int fd, struct msghdr *m, int flags)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;
	int ret;

	if (fd < 0)
		return -EBADF;
	if (!m)
		return -EFAULT;
	IOU__OP_BEGIN(r, opcode, op, sqe);
	io_uring_prep_rw(opcode, sqe, fd, m, 1, 0);
	sqe->msg_flags = (unsigned)flags;
	ret = IOU__OP_RUN(r, &op, sqe);
	if (opcode == IORING_OP_RECVMSG && ret >= 0) {
		iou__filled(m, sizeof(*m));
		iou__filled_iov(m->msg_iov, m->msg_iovlen, (size_t)ret);
		if (m->msg_name)
			iou__filled(m->msg_name, m->msg_namelen);
		if (m->msg_control)
			iou__filled(m->msg_control, m->msg_controllen);
	}
	return ret;
}

IOU_API ssize_t iou_sendmsg(struct reactor *r, int fd, const struct msghdr *m, int flags)
{
	return msg(r, IORING_OP_SENDMSG, fd, (struct msghdr *)m, flags | MSG_NOSIGNAL);
}

IOU_API ssize_t iou_recvmsg(struct reactor *r, int fd, struct msghdr *m, int flags)
{
	return msg(r, IORING_OP_RECVMSG, fd, m, flags);
}

IOU_API ssize_t iou_sendto(struct reactor *r, int fd, const void *buf, size_t len, int flags,
			   const struct sockaddr *addr, socklen_t addrlen)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr m = {
		.msg_name = (void *)addr,
		.msg_namelen = addr ? addrlen : 0,
		.msg_iov = &iov,
		.msg_iovlen = 1,
	};

	if (!buf && len)
		return -EFAULT;
	return iou_sendmsg(r, fd, &m, flags);
}

IOU_API ssize_t iou_recvfrom(struct reactor *r, int fd, void *buf, size_t len, int flags,
			     struct sockaddr *addr, socklen_t *addrlen)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr m = {
		.msg_name = addrlen ? addr : NULL,
		.msg_namelen = addr && addrlen ? *addrlen : 0,
		.msg_iov = &iov,
		.msg_iovlen = 1,
	};
	ssize_t ret;

	if (!buf && len)
		return -EFAULT;
	if (addr && !addrlen)
		return -EFAULT;
	ret = msg(r, IORING_OP_RECVMSG, fd, &m, flags);
	if (ret >= 0 && addr && addrlen)
		*addrlen = m.msg_namelen;
	return ret;
}

IOU_API int iou_shutdown(struct reactor *r, int fd, int how)
{
	struct io_uring_sqe *sqe;
	struct iou__op op;

	if (fd < 0)
		return -EBADF;
	IOU__OP_BEGIN(r, IORING_OP_SHUTDOWN, op, sqe);
	io_uring_prep_shutdown(sqe, fd, how);
	return IOU__OP_RUN(r, &op, sqe);
}

IOU_API int iou_getsockopt(struct reactor *r, int fd, int level, int name, void *val,
			   socklen_t *len)
{
	if (!r)
		return -EINVAL;
	if (fd < 0)
		return -EBADF;
	if (!len || (!val && *len))
		return -EFAULT;
	return iou__sys(getsockopt(fd, level, name, val, len));
}

IOU_API int iou_setsockopt(struct reactor *r, int fd, int level, int name, const void *val,
			   socklen_t len)
{
	if (!r)
		return -EINVAL;
	if (fd < 0)
		return -EBADF;
	if (!val && len)
		return -EFAULT;
	return iou__sys(setsockopt(fd, level, name, val, len));
}

/* ---- iou_accept_each ---------------------------------------------------- */

/* The loop's state, on the caller's stack while the loop runs. */
struct acceptor {
	struct iou__op op; /* the (multishot) accept request */
	iou_accept_fn *fn;
	void *arg;
	const struct fiber_options *opts;
	iou_refused_fn *refused; /* told of refused connections, or NULL */
	unsigned accepted;	 /* connections handed out */
};

/* What a handler fiber needs; it frees this first thing. */
struct conn_start {
	iou_accept_fn *fn;
	void *arg;
	int fd;
};

static void *conn_main(void *p)
{
	struct conn_start c = *(struct conn_start *)p;

	free(p);
	c.fn(iou__self, c.fd, c.arg);
	return NULL;
}

static void hand_out(struct reactor *r, struct acceptor *a, int fd)
{
	struct conn_start *c;
	int ret;

	if (r->closing) {
		close(fd);
		return;
	}
	c = malloc(sizeof(*c));
	if (c)
		*c = (struct conn_start){ .fn = a->fn, .arg = a->arg, .fd = fd };
	ret = c ? fiber_spawn_with(r, a->opts, conn_main, c, NULL) : -ENOMEM;
	if (ret < 0) {
		free(c);
		close(fd);
		if (a->refused)
			a->refused(r, ret, 1, a->arg);
		return;
	}
	a->accepted++;
}

/* Each accepted connection gets its fiber right away, from the reaper. */
static void accept_complete(struct reactor *r, struct iou__op *op, const struct io_uring_cqe *cqe)
{
	struct acceptor *a = (struct acceptor *)((char *)op - offsetof(struct acceptor, op));

	if (cqe->res >= 0) {
		hand_out(r, a, cqe->res);
		if (op->state == IOU_OP_DONE)
			op->res = 0; /* the request ended: just arm it again */
	} else {
		op->res = cqe->res;
	}
	if (op->state == IOU_OP_DONE && !r->closing)
		iou__wake(r, &op->wait);
}

/*
 * At the descriptor limit (@err): free the spare descriptor, accept and
 * close what is pending (those clients see the connection closed, not a
 * hang), take the spare back, and tell the caller.  Returns the new spare
 * (or -1 if it could not be retaken).
 */
static int refuse_pending(struct reactor *r, struct acceptor *a, int fd, int spare, int err)
{
	int64_t old = fiber_set_deadline(r, IOU_DEADLINE_NOW);
	unsigned n = 0;

	if (spare >= 0)
		close(spare);
	for (int i = 0; i < 64; i++) {
		int c = iou_accept(r, fd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0)
			break;
		close(c);
		n++;
	}
	fiber_set_deadline(r, old);
	if (a->refused)
		a->refused(r, err, n, a->arg);
	return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

IOU_API int iou_accept_each(struct reactor *r, int fd, iou_accept_fn *fn, void *arg,
			    const struct fiber_options *opts)
{
	const struct iou_accept_options o = { .fiber = opts };

	return iou_accept_each_with(r, fd, fn, arg, &o);
}

IOU_API int iou_accept_each_with(struct reactor *r, int fd, iou_accept_fn *fn, void *arg,
				 const struct iou_accept_options *opts)
{
	struct acceptor a = { .fn = fn, .arg = arg };
	bool multishot;
	int spare, ret;

	if (!fn)
		return -EINVAL;
	if (fd < 0)
		return -EBADF;
	if (opts) {
		a.opts = opts->fiber;
		a.refused = opts->refused;
	}
	ret = iou__check(r);
	if (ret < 0)
		return ret;
	/* Before the spare below could take a closed @fd's number. */
	if (fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	multishot = r->multishot;
	spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	for (;;) {
		struct io_uring_sqe *sqe;
		unsigned before = a.accepted;

		ret = iou__op_begin(r, IORING_OP_ACCEPT, &a.op, &sqe);
		if (ret < 0)
			break;
		a.op.complete = accept_complete;
		if (multishot)
			io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
		else
			io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
		ret = iou__op_run(r, &a.op, sqe);
		if (ret >= 0 || ret == -ECONNABORTED || ret == -EINTR || ret == -EPROTO ||
		    ret == -ENOBUFS || ret == -ENOMEM)
			continue; /* one connection failed, or the request ended */
		if (ret == -EAGAIN) {
			/* An O_NONBLOCK listener: wait until a connection is there. */
			ret = iou_poll(r, fd, POLLIN);
			if (ret < 0)
				break;
			continue;
		}
		if (ret == -EMFILE || ret == -ENFILE) {
			spare = refuse_pending(r, &a, fd, spare, ret);
			ret = fiber_sleep(r, EMFILE_PAUSE);
			if (ret < 0)
				break;
			continue;
		}
		if (ret == -EINVAL && multishot && a.accepted == before) {
			/* Maybe a kernel without multishot accept: try single ones. */
			multishot = false;
			continue;
		}
		break;
	}
	if (spare >= 0)
		close(spare);
	return ret;
}
