/* SPDX-License-Identifier: MIT */
/*
 * Socket operations: socket, bind, listen, connect, accept and a multishot
 * accept loop that hands each connection to its own fiber, send and
 * receive (plain, with addresses, with msghdr), shutdown and socket
 * options.  The common rules of <ioucontext/io.h> apply (fiber-blocking,
 * -errno, deadline and cancel, FIFO submission).
 */
#ifndef IOUCONTEXT_NET_H
#define IOUCONTEXT_NET_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct reactor;
struct fiber_options;

/**
 * iou_socket() - create a socket, as socket(2).
 * @type: SOCK_STREAM, SOCK_DGRAM, ..., optionally | SOCK_CLOEXEC/SOCK_NONBLOCK.
 *
 * IORING_OP_SOCKET where the kernel has it (5.19+), socket(2) otherwise.
 * Return: the new descriptor, or -errno as socket(2).
 */
int iou_socket(struct reactor *r, int domain, int type, int protocol);

/**
 * iou_bind() - give @fd the local address @addr, as bind(2).
 *
 * IORING_OP_BIND where the kernel has it (6.11+), bind(2) otherwise (which
 * never blocks).  Return: 0, or -errno as bind(2); -EFAULT if @addr is NULL.
 */
int iou_bind(struct reactor *r, int fd, const struct sockaddr *addr, socklen_t addrlen);

/**
 * iou_listen() - mark @fd as accepting connections, as listen(2).
 *
 * IORING_OP_LISTEN where the kernel has it (6.11+), listen(2) otherwise.
 * Return: 0, or -errno as listen(2).
 */
int iou_listen(struct reactor *r, int fd, int backlog);

/**
 * iou_connect() - connect @fd to @addr, as connect(2) on a blocking socket.
 *
 * Return: 0, or -errno as connect(2) (-ECONNREFUSED, -ENETUNREACH, ...);
 * -EFAULT if @addr is NULL.
 */
int iou_connect(struct reactor *r, int fd, const struct sockaddr *addr, socklen_t addrlen);

/**
 * iou_accept() - wait for a connection on listening socket @fd.
 * @addr, @addrlen: receive the peer's address, as accept4(2); both may be
 *         NULL.
 * @flags: SOCK_CLOEXEC, SOCK_NONBLOCK for the new descriptor.
 *
 * Return: the connection's descriptor, or -errno as accept4(2).
 */
int iou_accept(struct reactor *r, int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);

/**
 * iou_accept_fn - handles one accepted connection in its own fiber.
 *
 * Owns @fd and must close it.  The fiber is detached: it ends when the
 * handler returns.
 */
typedef void iou_accept_fn(struct reactor *r, int fd, void *arg);

/**
 * iou_accept_each() - accept connections on @fd until stopped, running
 * @fn(@r, conn, @arg) in a new detached fiber for each.
 * @opts: how to spawn the handler fibers (stack size, name); may be NULL.
 *
 * Uses one multishot accept request (kernel 5.19+; single accepts
 * otherwise, or when the reactor was created with multishot off), so a
 * burst of connections costs one submission.  New descriptors are
 * SOCK_CLOEXEC.  Keeps going through per-connection failures: a peer that
 * gave up before being accepted is skipped; a handler fiber that cannot be
 * spawned (no memory) has its connection closed.  At the descriptor limit
 * (-EMFILE/-ENFILE) it keeps one spare descriptor to accept and close
 * pending connections at once (so clients are refused rather than left
 * hanging), and waits 50 ms before accepting again; it never spins.  The
 * caller blocks here for as long as it accepts; stop it with a deadline or
 * fiber_cancel(), or by shutting the socket down.  Connections the kernel
 * accepted before the stop took effect are still handed to new handler
 * fibers, never dropped: a server that is shutting down should have its
 * handlers check its own stop flag.
 *
 * Return: -ETIMEDOUT or -ECANCELED when stopped that way; otherwise the
 * -errno that makes accepting impossible (-EBADF, -EINVAL if @fd is not
 * listening, -ENOTSOCK, ...).  Never returns 0.
 */
int iou_accept_each(struct reactor *r, int fd, iou_accept_fn *fn, void *arg,
		    const struct fiber_options *opts);

/**
 * iou_refused_fn - told that iou_accept_each_with() refused connections.
 * @err: why: -EMFILE or -ENFILE (the descriptor limit: @n pending
 *       connections were accepted on the spare descriptor and closed at
 *       once; @n may be 0 when none could be), or the error of
 *       fiber_spawn_with() for the handler fiber, whose connection was
 *       closed (-ENOMEM: no memory or stack; -EINVAL: bad fiber options);
 *       @n is then 1.
 * @arg: iou_accept_each_with()'s @arg.
 *
 * Runs in the accept loop or in the reactor's completion processing, never
 * in a handler fiber: it must not suspend (no operations, no fiber_park());
 * count, log with a plain write(2), and return.  Called once per event, so
 * a program that logs should limit its own rate.
 */
typedef void iou_refused_fn(struct reactor *r, int err, unsigned n, void *arg);

/**
 * struct iou_accept_options - settings for iou_accept_each_with().
 */
struct iou_accept_options {
	const struct fiber_options *fiber; /**< handler fibers (stack, name); NULL: defaults */
	iou_refused_fn *refused;	   /**< told of refused connections; NULL: not told */
};

/**
 * iou_accept_each_with() - iou_accept_each() that also says when it refuses
 * connections.
 * @opts: the handler fibers' options and the @opts->refused callback; may be
 *        NULL (then it is iou_accept_each() with default fibers).
 *
 * Behaves as iou_accept_each() in every way; in addition @opts->refused, if
 * set, is called each time connections are refused at the descriptor limit
 * or closed because no handler fiber could be spawned, so that a server can
 * say so.
 *
 * Return: as iou_accept_each().
 */
int iou_accept_each_with(struct reactor *r, int fd, iou_accept_fn *fn, void *arg,
			 const struct iou_accept_options *opts);

/**
 * iou_send() - send up to @len bytes on connected socket @fd, as send(2).
 * @flags: MSG_* (MSG_NOSIGNAL is always added: a closed peer is -EPIPE,
 *         never SIGPIPE).
 *
 * Return: bytes sent, or -errno as send(2).
 */
ssize_t iou_send(struct reactor *r, int fd, const void *buf, size_t len, int flags);

/**
 * iou_recv() - receive up to @len bytes from socket @fd, as recv(2).
 *
 * Return: bytes received (0: the peer shut down its side), or -errno.
 */
ssize_t iou_recv(struct reactor *r, int fd, void *buf, size_t len, int flags);

/**
 * iou_sendto() - send a datagram to @addr (NULL: the connected peer).
 *
 * Return: bytes sent, or -errno as sendto(2).
 */
ssize_t iou_sendto(struct reactor *r, int fd, const void *buf, size_t len, int flags,
		   const struct sockaddr *addr, socklen_t addrlen);

/**
 * iou_recvfrom() - receive a datagram and the address it came from.
 * @addr, @addrlen: as recvfrom(2): *@addrlen is the room in @addr on entry
 *         and the address's real length on return; both may be NULL.
 *
 * Return: bytes received, or -errno as recvfrom(2).
 */
ssize_t iou_recvfrom(struct reactor *r, int fd, void *buf, size_t len, int flags,
		     struct sockaddr *addr, socklen_t *addrlen);

/**
 * iou_sendmsg() - send a message, as sendmsg(2) (MSG_NOSIGNAL added).
 *
 * Return: bytes sent, or -errno; -EFAULT if @msg is NULL.
 */
ssize_t iou_sendmsg(struct reactor *r, int fd, const struct msghdr *msg, int flags);

/**
 * iou_recvmsg() - receive a message, as recvmsg(2).
 *
 * On return @msg->msg_namelen holds the peer address's length (its bytes in
 * @msg->msg_name), @msg->msg_controllen and @msg->msg_flags are updated.
 * Return: bytes received, or -errno; -EFAULT if @msg is NULL.
 */
ssize_t iou_recvmsg(struct reactor *r, int fd, struct msghdr *msg, int flags);

/**
 * iou_shutdown() - shut down part of a full-duplex connection, as
 * shutdown(2) (SHUT_RD, SHUT_WR, SHUT_RDWR).
 *
 * Return: 0, or -errno as shutdown(2).
 */
int iou_shutdown(struct reactor *r, int fd, int how);

/**
 * iou_getsockopt() - read a socket option, as getsockopt(2).
 * @len: room in @val on entry, the option's length on return.
 *
 * Socket options never wait, so this is the plain system call; it takes @r
 * for uniformity and its checks (-EPERM, -ECANCELED do not apply: it never
 * suspends).  Return: 0, or -errno as getsockopt(2).
 */
int iou_getsockopt(struct reactor *r, int fd, int level, int name, void *val, socklen_t *len);

/** iou_setsockopt() - set a socket option, as setsockopt(2); never suspends. */
int iou_setsockopt(struct reactor *r, int fd, int level, int name, const void *val,
		   socklen_t len);

#ifdef __cplusplus
}
#endif

#endif
