/* SPDX-License-Identifier: MIT */
/*
 * echo-uring: the raw io_uring peer of the echo benchmark, the ceiling a
 * fiber runtime on io_uring can approach: one thread, one ring
 * (SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN where taken), liburing 2.3.
 *
 * A multishot accept; per connection a multishot recv taking buffers from
 * one provided buffer ring, and a FIFO of received buffers (linked through
 * bnext[]) of which only the head is being sent, so echoes never reorder.
 * A buffer goes back to the ring when all its bytes are sent.  A recv that
 * ends with ENOBUFS waits on the starved list for free buffers; one that
 * ends without error (cancelled, CQ overflow) is re-armed at once.  State
 * is indexed by descriptor, closed only when nothing of it is in flight,
 * so no CQE can name a reused one.  UDP: UDP_SLOTS recvmsg/sendmsg slots.
 * One io_uring_submit_and_wait() and one pass over the CQEs per loop.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PEER_NAME "echo-uring"
#include "echo-peer.h"

/*
 * The buffer ring: 1024 buffers of 32 KiB, 32 MiB.  The kernel takes them
 * in ring order, so the whole pool cycles through the caches: here 64 MiB
 * pools echoed 16 KiB x 4 pipelined ~25% slower than 16-32 MiB ones.  A
 * buffer holds two pipelined 16 KiB messages.  Loopback sends mostly
 * complete at once, so buffers come back within a loop or two (no ENOBUFS
 * at 10,000 busy connections); beyond, connections wait on the starved list.
 */
#define NBUF 1024
#define BUF_SIZE 32768
#define BGID 0
#define NO_BID 0xffff
#define CONN_HIGH 4 /* queued buffers (128 KiB) that pause a connection's recv */
#define CONN_LOW 1  /* ... and that resume it */
#define SQ_ENTRIES 4096
#define CQ_ENTRIES 65536 /* > 2 CQEs per connection for 10,000+ connections */
#define UDP_SLOTS 8
#define DGRAM_MAX 65536		    /* larger than any UDP payload */
#define ACCEPT_PAUSE_NS 100000000LL /* accept retry at the descriptor limit */

/* user_data: descriptor (or UDP slot) << 8 | op. */
enum op {
	OP_ACCEPT,
	OP_RECV,
	OP_SEND,
	OP_QUIET, /* cancel, close: only failures come, and are ignored */
	OP_UDP_RECV,
	OP_UDP_SEND,
	OP_SIGNAL,
	OP_TIMEOUT
};
#define UD(fd, op) ((uint64_t)(unsigned)(fd) << 8 | (op))

enum {			/* connection flags */
	C_RECV = 1,	/* a multishot recv is armed */
	C_CANCEL = 2,	/* ... and a cancel of it was sent */
	C_SEND = 4,	/* a send of the FIFO's head is in flight */
	C_DONE = 8,	/* end of file or error: no more reading */
	C_STARVED = 16, /* on the starved list, waiting for buffers */
};

struct conn {		     /* a TCP connection, indexed by its descriptor */
	uint16_t head, tail; /* FIFO of buffer ids to send back, NO_BID if empty */
	uint16_t queued;     /* buffers in the FIFO */
	uint8_t flags;	     /* C_* */
	uint32_t off;	     /* bytes of head already sent */
	int next_starved;    /* next descriptor on the starved list, or -1 */
};

struct dgram { /* a UDP slot: one datagram received, then sent back */
	struct msghdr msg;
	struct iovec iov;
	struct sockaddr_storage from;
	char data[DGRAM_MAX];
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;	     /* NBUF * BUF_SIZE bytes */
static uint16_t bnext[NBUF]; /* FIFO links, by buffer id */
static uint32_t blen[NBUF];  /* bytes received into each buffer */
static unsigned bufs_out;    /* buffers the kernel has handed to us */
static unsigned returns;     /* buffers added to the ring since the last advance */
static struct conn *conns;   /* one per possible descriptor (RLIMIT_NOFILE) */
static int starved_head = -1, starved_tail = -1;
static int listen_fd, udp_fd, sig_fd;
static struct dgram *dgrams;
static bool stop;

static struct io_uring_sqe *get_sqe(void)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&ring))) {
		int ret = io_uring_submit(&ring);

		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			peer_fail("io_uring_submit: %s", strerror(-ret));
	}
	return sqe;
}

static void buf_return(uint16_t bid)
{
	io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid,
			      io_uring_buf_ring_mask(NBUF), (int)returns++);
	bufs_out--;
}

static void arm_accept(void)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, UD(0, OP_ACCEPT));
}

static void arm_recv(int fd)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, UD(fd, OP_RECV));
	conns[fd].flags |= C_RECV;
}

static void cancel_recv(int fd)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_cancel64(sqe, UD(fd, OP_RECV), 0);
	io_uring_sqe_set_data64(sqe, UD(fd, OP_QUIET));
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	conns[fd].flags |= C_CANCEL;
}

static void send_head(int fd)
{
	struct conn *c = &conns[fd];
	struct io_uring_sqe *sqe = get_sqe();

	/* WAITALL: the kernel itself retries a short send on a stream socket. */
	io_uring_prep_send(sqe, fd, bufs + (size_t)c->head * BUF_SIZE + c->off,
			   blen[c->head] - c->off, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, UD(fd, OP_SEND));
	c->flags |= C_SEND;
}

/* Give back every queued buffer (no send may be in flight). */
static void drop_queue(struct conn *c)
{
	for (uint16_t bid = c->head; bid != NO_BID; bid = bnext[bid])
		buf_return(bid);
	c->head = c->tail = NO_BID;
	c->queued = 0;
	c->off = 0;
}

/* Close a finished connection once nothing of it is in flight. */
static void maybe_close(int fd)
{
	struct conn *c = &conns[fd];
	struct io_uring_sqe *sqe;

	if (!(c->flags & C_DONE) || c->flags & (C_RECV | C_SEND | C_STARVED))
		return; /* (and the FIFO is empty: it is never without a send) */
	sqe = get_sqe();
	io_uring_prep_close(sqe, fd);
	io_uring_sqe_set_data64(sqe, UD(fd, OP_QUIET));
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	c->flags = 0;
}

/* The client reset, or a send failed: no more reading. */
static void conn_fail(int fd)
{
	conns[fd].flags |= C_DONE;
	if ((conns[fd].flags & (C_RECV | C_CANCEL)) == C_RECV)
		cancel_recv(fd);
}

static void on_accept(int res, unsigned flags)
{
	if (res >= 0) {
		int one = 1;

		setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		conns[res] = (struct conn){ .head = NO_BID, .tail = NO_BID, .next_starved = -1 };
		arm_recv(res);
	}
	if (flags & IORING_CQE_F_MORE)
		return;
	if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
		/* Out of descriptors: serve who is here, try again later. */
		static struct __kernel_timespec delay = { .tv_nsec = ACCEPT_PAUSE_NS };
		struct io_uring_sqe *sqe = get_sqe();

		io_uring_prep_timeout(sqe, &delay, 0, 0);
		io_uring_sqe_set_data64(sqe, UD(0, OP_TIMEOUT));
		return;
	}
	arm_accept();
}

static void on_recv(int fd, int res, unsigned flags)
{
	struct conn *c = &conns[fd];

	if (!(flags & IORING_CQE_F_MORE))
		c->flags &= ~(C_RECV | C_CANCEL);
	if (flags & IORING_CQE_F_BUFFER) {
		uint16_t bid = (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT);

		bufs_out++;
		if (res <= 0 || c->flags & C_DONE) {
			buf_return(bid);
		} else {
			blen[bid] = (uint32_t)res;
			bnext[bid] = NO_BID;
			if (c->tail == NO_BID)
				c->head = bid;
			else
				bnext[c->tail] = bid;
			c->tail = bid;
			c->queued++;
			if (!(c->flags & C_SEND))
				send_head(fd);
			if (c->queued >= CONN_HIGH && (c->flags & (C_RECV | C_CANCEL)) == C_RECV)
				cancel_recv(fd); /* it sends but does not read: pause it */
		}
	}
	if (res == 0) {
		c->flags |= C_DONE; /* end of file: send back the queue, then close */
	} else if (res == -ENOBUFS && !(c->flags & (C_DONE | C_STARVED))) {
		c->flags |= C_STARVED;
		if (starved_tail < 0)
			starved_head = fd;
		else
			conns[starved_tail].next_starved = fd;
		starved_tail = fd;
	} else if (res < 0 && res != -ECANCELED && res != -ENOBUFS) {
		conn_fail(fd);
	} else if (!(c->flags & (C_RECV | C_DONE | C_STARVED)) && c->queued < CONN_HIGH) {
		arm_recv(fd); /* ended without error (cancelled, or CQ overflow) */
	}
	maybe_close(fd);
}

static void on_send(int fd, int res)
{
	struct conn *c = &conns[fd];
	uint16_t bid = c->head;

	c->flags &= ~C_SEND;
	if (res <= 0) { /* EPIPE, ECONNRESET, ... */
		drop_queue(c);
		conn_fail(fd);
	} else if ((c->off += (uint32_t)res) == blen[bid]) {
		c->head = bnext[bid];
		if (c->head == NO_BID)
			c->tail = NO_BID;
		c->queued--;
		c->off = 0;
		buf_return(bid);
	}
	if (c->head != NO_BID)
		send_head(fd); /* the next buffer, or the rest of a short send */
	if (!(c->flags & (C_RECV | C_DONE | C_STARVED)) && c->queued <= CONN_LOW)
		arm_recv(fd);
	maybe_close(fd);
}

/* Re-arm starved connections, one per free buffer; let failed ones close. */
static void feed_starved(void)
{
	unsigned budget = NBUF - bufs_out;

	while (starved_head >= 0 && (budget > 0 || conns[starved_head].flags & C_DONE)) {
		int fd = starved_head;
		struct conn *c = &conns[fd];

		starved_head = c->next_starved;
		if (starved_head < 0)
			starved_tail = -1;
		c->next_starved = -1;
		c->flags &= ~C_STARVED;
		if (!(c->flags & C_DONE) && c->queued < CONN_HIGH) {
			arm_recv(fd);
			budget--;
		}
		maybe_close(fd);
	}
}

static void udp_recv(unsigned i)
{
	struct dgram *d = &dgrams[i];
	struct io_uring_sqe *sqe = get_sqe();

	d->iov = (struct iovec){ d->data, DGRAM_MAX };
	d->msg = (struct msghdr){ .msg_name = &d->from,
				  .msg_namelen = sizeof(d->from),
				  .msg_iov = &d->iov,
				  .msg_iovlen = 1 };
	io_uring_prep_recvmsg(sqe, udp_fd, &d->msg, 0);
	io_uring_sqe_set_data64(sqe, UD(i, OP_UDP_RECV));
}

static void udp_send(unsigned i, int len)
{
	struct io_uring_sqe *sqe = get_sqe();

	dgrams[i].iov.iov_len = (size_t)len;
	io_uring_prep_sendmsg(sqe, udp_fd, &dgrams[i].msg, 0);
	io_uring_sqe_set_data64(sqe, UD(i, OP_UDP_SEND));
}

static void handle(const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	int id = (int)(ud >> 8);

	switch ((enum op)(ud & 0xff)) {
	case OP_ACCEPT:
		on_accept(cqe->res, cqe->flags);
		break;
	case OP_RECV:
		on_recv(id, cqe->res, cqe->flags);
		break;
	case OP_SEND:
		on_send(id, cqe->res);
		break;
	case OP_QUIET: /* a cancel whose recv had ended, or a failed close */
		break;
	case OP_UDP_RECV:
		if (cqe->res >= 0)
			udp_send((unsigned)id, cqe->res);
		else
			udp_recv((unsigned)id);
		break;
	case OP_UDP_SEND: /* a refused datagram is dropped, as UDP may */
		udp_recv((unsigned)id);
		break;
	case OP_SIGNAL:
		stop = true;
		break;
	case OP_TIMEOUT:
		arm_accept();
		break;
	}
}

static void setup_ring(void)
{
	static const unsigned tries[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	struct io_uring_params params;
	struct io_uring_buf_reg reg = { .ring_entries = NBUF, .bgid = BGID };
	struct rlimit rl;
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]) && ret == -EINVAL; i++) {
		memset(&params, 0, sizeof(params));
		params.flags = tries[i] | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
		params.cq_entries = CQ_ENTRIES;
		ret = io_uring_queue_init_params(SQ_ENTRIES, &ring, &params);
	}
	if (ret < 0)
		peer_fail("io_uring_queue_init: %s", strerror(-ret));
	io_uring_register_ring_fd(&ring); /* optional: saves an fd lookup per enter */

	/* liburing 2.3 has no io_uring_setup_buf_ring(): map the ring ourselves. */
	br = mmap(NULL, NBUF * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bufs = mmap(NULL, (size_t)NBUF * BUF_SIZE, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dgrams = calloc(UDP_SLOTS, sizeof(*dgrams));
	conns = calloc(getrlimit(RLIMIT_NOFILE, &rl) ? 65536 : rl.rlim_cur, sizeof(*conns));
	if (br == MAP_FAILED || bufs == MAP_FAILED || !dgrams || !conns)
		peer_fail("out of memory");
	reg.ring_addr = (uint64_t)(uintptr_t)br;
	ret = io_uring_register_buf_ring(&ring, &reg, 0);
	if (ret < 0)
		peer_fail("io_uring_register_buf_ring: %s", strerror(-ret));
	io_uring_buf_ring_init(br);
	for (unsigned i = 0; i < NBUF; i++)
		io_uring_buf_ring_add(br, bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (uint16_t)i,
				      io_uring_buf_ring_mask(NBUF), (int)i);
	io_uring_buf_ring_advance(br, NBUF);
}

int main(int argc, char **argv)
{
	struct io_uring_sqe *sqe;
	struct peer p;

	peer_setup(argc, argv, &p, 0);
	listen_fd = p.tcp;
	udp_fd = p.udp;
	sig_fd = peer_signalfd();
	setup_ring();
	arm_accept();
	for (unsigned i = 0; i < UDP_SLOTS; i++)
		udp_recv(i);
	sqe = get_sqe();
	io_uring_prep_poll_add(sqe, sig_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, UD(0, OP_SIGNAL));
	peer_ready(&p);

	while (!stop) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int ret;

		feed_starved();
		if (returns) { /* publish every buffer given back in the last batch */
			io_uring_buf_ring_advance(br, (int)returns);
			returns = 0;
		}
		ret = io_uring_submit_and_wait(&ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			peer_fail("io_uring_submit_and_wait: %s", strerror(-ret));
		io_uring_for_each_cqe (&ring, head, cqe) {
			handle(cqe);
			n++;
		}
		io_uring_cq_advance(&ring, n);
	}
	io_uring_queue_exit(&ring);
	return 0;
}
