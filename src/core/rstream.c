/* SPDX-License-Identifier: MIT */
/*
 * Receive streams (<ioucontext/rstream.h>): rings of provided buffers
 * registered with the reactor's io_uring, and per socket one multishot
 * receive request whose completions queue the buffers the kernel filled,
 * in arrival order, for a reader that consumes them in place.
 *
 * Buffers are known by their id, their index in the ring's memory.  A
 * stream's queue is a list threaded through the ring's per-buffer array
 * (a buffer is in at most one queue at a time), so queueing allocates
 * nothing and no stream has a cap of its own.  A buffer whose bytes are
 * all consumed goes straight back into the ring: one store the kernel
 * sees.  The ring's @held counts the buffers sitting in streams' queues;
 * all the others are in the kernel's hands (in the ring, or in completions
 * not reaped yet).
 *
 * The request record (struct iou__op) lives in the stream; the reaper hands
 * each of its completions to on_completion() (the op's complete callback,
 * as for iou_accept_each()), which queues the buffer and wakes a parked
 * reader.  Nobody parks on the request itself: it is a "background"
 * request (r->background), in flight for as long as data may come, which
 * reactor_run() does not wait for.  When its last completion (no
 * IORING_CQE_F_MORE) is reaped the request has ended: 0 is end of stream,
 * a socket error is kept to be reported after the queued data, and
 * -ENOBUFS (the ring ran dry), -ECANCELED (our own pause) and the like are
 * not errors at all: the stream is simply re-armed when its reader needs
 * more -- only ever after that last completion, so that one request at a
 * time takes bytes from the socket and their order is kept.
 *
 * Fairness: a stream that holds the ring's limit of buffers (an eighth of
 * the ring) has its request cancelled through the reactor's cancel queue,
 * and re-armed once its reader has consumed down to half that.  That alone
 * lets eight streams whose readers do not read (a client that sends and
 * never reads its replies keeps an echo server's reader blocked in send)
 * hold the whole ring.  So a reader that needs data when every buffer of
 * the ring sits in some stream's queue first reclaims: every other stream
 * whose reader is not waiting for data has the bytes of its queued buffers
 * copied to a malloc'd spill area of its own, which its reader is served
 * from before any later buffer, and its request paused until the spill is
 * read; only buffers a reader is using (the bytes of its last peek) stay.
 * A stalled stream thus costs the heap what it had received, at most its
 * limit of buffers plus the burst that raced the pause, and the ring goes
 * back to the readers that read.  If nothing can be reclaimed, the reader
 * does not re-arm (the request would end at once with -ENOBUFS, and again,
 * spinning): it waits on the ring's starved list, and the next buffer to
 * come back wakes every starved reader to try again.
 *
 * Fallback, where the kernel has no buffer rings or no multishot receive
 * (the first request fails with -EINVAL before delivering anything), or the
 * reactor has multishot requests off: each stream owns one malloc'd buffer
 * of the ring's buffer size and a peek that finds it used up makes one
 * plain iou_recv() into it.  Same calls, same guarantees.
 *
 * Registered files: a stream takes a slot of the ring's file table
 * (files.c) at open and fills it with its socket by an
 * IORING_OP_FILES_UPDATE request queued ahead of the receive; once that
 * has succeeded, re-armed receives and forwards back to the same socket
 * name the slot.  Close empties the slot by another update and waits for
 * it (the table holds a reference on the socket: a socket closed by the
 * caller afterwards must really close).
 *
 * Teardown: a reactor going away drains every request (op.c) before
 * iou__rstreams_fini() frees the streams, unregisters the rings and unmaps
 * their memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ioucontext/net.h>
#include <ioucontext/rstream.h>

#include "op.h"

/* liburing 2.2 and older lack it; the kernel interface value is fixed. */
#ifndef IORING_RECV_MULTISHOT
#define IORING_RECV_MULTISHOT (1U << 1)
#endif

/* End of a queue.  Buffer ids are below IOU_BUFRING_MAX_COUNT (32768). */
#define NO_BUF UINT16_MAX
/* Buffers start on cache lines. */
#define BUF_ALIGN 64

/* What the ring knows of one buffer while a stream holds it. */
struct rxbuf {
	uint32_t len;  /* bytes the kernel put in it */
	uint16_t next; /* the next buffer in the same stream's queue, or NO_BUF */
	bool sending;  /* a forward's send reads from it: not the ring's until it ends */
};

struct iou_bufring {
	struct reactor *r;		/* owner */
	struct io_uring_buf_ring *ring; /* shared with the kernel; NULL: fallback */
	char *mem;			/* the buffers, @stride bytes apart */
	struct rxbuf *bufs;		/* [count], by buffer id */
	size_t ring_bytes, mem_bytes;	/* the two mappings' sizes */
	size_t stride;			/* @size rounded up to BUF_ALIGN */
	uint32_t size;			/* bytes per buffer */
	unsigned count;			/* buffers, a power of two */
	unsigned held;			/* buffers queued in streams (not the kernel's) */
	unsigned limit, low;		/* a stream's pause and resume marks */
	uint16_t bgid;			/* buffer group id (when registered) */
	unsigned nstreams;		/* open streams on this ring */
	struct iou_rstream *streams;	/* those streams (for teardown) */
	/* Streams whose readers wait for a buffer to come back, FIFO. */
	struct iou_rstream *starved_head, *starved_tail;
	struct iou_bufring *prev, *next; /* r->bufrings */
};

struct iou_rstream {
	struct iou__op op;	  /* the receive request (first: 8-aligned user_data) */
	struct reactor *r;	  /* owner */
	struct iou_bufring *br;	  /* where the kernel puts the bytes */
	int fd;			  /* the socket (not ours) */
	bool fallback;		  /* plain receives into @buf */
	bool armed;		  /* request in the ring or kernel, last completion not reaped */
	bool stopping;		  /* we asked the kernel to cancel it */
	bool eof;		  /* the peer shut down: 0 after the queued data */
	bool busy;		  /* a reader is in a peek or read that waits */
	bool starving;		  /* on br's starved list */
	int err;		  /* the socket's error, after the queued data; 0 if none */
	uint16_t head, tail;	  /* queued buffers, oldest first; NO_BUF when empty */
	unsigned held;		  /* buffers queued */
	uint32_t off;		  /* consumed bytes of the head buffer (fallback: of @buf) */
	/*
	 * Bytes reclaimed from the ring (see the file comment), delivered
	 * before the queued buffers -- after the head buffer if @head_first
	 * (the reader was using it when the rest was reclaimed).  Stays
	 * allocated until read, and the request stays paused until then.
	 */
	char *spill;
	size_t spill_len, spill_off;
	bool head_first;
	uint32_t blen;		  /* fallback: bytes in @buf */
	size_t peeked;		  /* bytes the last peek made consumable, less those consumed */
	uint64_t received;	  /* bytes the requests have delivered */
	char *buf;		  /* fallback: the stream's own buffer, or NULL */
	struct iou__wait *reader; /* the parked reader, or NULL */
	struct iou__wait *closer; /* a close waiting for the last completion, or NULL */
	struct iou_rstream *prev, *next;   /* br->streams */
	struct iou_rstream *sprev, *snext; /* br's starved list */
	/*
	 * The forward (iou_rstream_forward()): at most one send in flight,
	 * from a ring buffer (@bid) until a partial send moves the rest to
	 * @heap.  Sent from completion callbacks; nobody parks on it unless a
	 * forward, flush or close waits for it to end (@waiter).
	 */
	struct {
		struct iou__op op;	  /* the send */
		const char *p;		  /* its unsent bytes */
		uint32_t len;
		int fd;			  /* where they go */
		int err;		  /* the first failure: sticky */
		uint16_t bid;		  /* the ring buffer @p lies in, or NO_BUF */
		bool busy;		  /* a send in flight or staged */
		bool stopping;		  /* close cancelled it: do not send the rest */
		bool released;		  /* @bid left the queue: its end returns it */
		char *heap;		  /* malloc'd copy of what @p points into, or NULL */
		struct iou__wait *waiter; /* a call waiting for the send to end */
	} fw;
	/*
	 * The stream's slot in the registered-file table (files.c): filled
	 * by an IORING_OP_FILES_UPDATE at open, emptied by another at close
	 * (which waits for it, so that the socket is not kept open by the
	 * table after the close).  The receive and the forwards back to the
	 * same socket name the slot once the first update has succeeded.
	 */
	struct {
		struct iou__op op; /* the update in flight */
		int slot;	   /* or -1: none (any more) */
		int arg;	   /* the update's argument: the socket, or -1 to empty */
		bool on;	   /* the slot holds the socket */
		bool busy;	   /* an update in flight or staged */
	} fix;
};

#define stream_of(op) ((struct iou_rstream *)((char *)(op)-offsetof(struct iou_rstream, op)))
#define stream_of_fw(op) ((struct iou_rstream *)((char *)(op)-offsetof(struct iou_rstream, fw.op)))
#define stream_of_fix(op) ((struct iou_rstream *)((char *)(op)-offsetof(struct iou_rstream, fix.op)))

/* The checks every call makes on its reactor and object's owner. */
static int check(struct reactor *r, const struct reactor *owner)
{
	if (!r)
		return -EINVAL;
	if (r != iou__self || r->closing)
		return -EPERM;
	if (owner != r)
		return -EINVAL;
	return 0;
}

static inline char *buf_at(const struct iou_bufring *br, unsigned bid)
{
	return br->mem + (size_t)bid * br->stride;
}

/* ---- the starved list ------------------------------------------------------------- */

static void starve(struct iou_bufring *br, struct iou_rstream *s)
{
	if (s->starving)
		return;
	s->starving = true;
	s->snext = NULL;
	s->sprev = br->starved_tail;
	if (br->starved_tail)
		br->starved_tail->snext = s;
	else
		br->starved_head = s;
	br->starved_tail = s;
}

static void unstarve(struct iou_bufring *br, struct iou_rstream *s)
{
	if (!s->starving)
		return;
	if (s->sprev)
		s->sprev->snext = s->snext;
	else
		br->starved_head = s->snext;
	if (s->snext)
		s->snext->sprev = s->sprev;
	else
		br->starved_tail = s->sprev;
	s->sprev = s->snext = NULL;
	s->starving = false;
}

/* ---- buffers ----------------------------------------------------------------------- */

/* Hand buffer @bid back to the kernel: a store it sees, no system call. */
static void recycle(struct iou_bufring *br, unsigned bid)
{
	io_uring_buf_ring_add(br->ring, buf_at(br, bid), br->size, (unsigned short)bid,
			      io_uring_buf_ring_mask(br->count), 0);
	io_uring_buf_ring_advance(br->ring, 1);
}

/* Queue buffer @bid, holding @len bytes, on @s. */
static void enqueue(struct iou_bufring *br, struct iou_rstream *s, unsigned bid, uint32_t len)
{
	iou__filled(buf_at(br, bid), len);
	br->bufs[bid].len = len;
	br->bufs[bid].next = NO_BUF;
	if (s->tail == NO_BUF)
		s->head = (uint16_t)bid;
	else
		br->bufs[s->tail].next = (uint16_t)bid;
	s->tail = (uint16_t)bid;
	s->held++;
	br->held++;
	s->received += len;
}

/*
 * Give buffer @bid, which no stream queues any more, back to the ring; the
 * readers waiting for a buffer then try again (every one: which of them
 * has data waiting in its socket is unknown, and those that find the ring
 * dry again wait again).
 */
static void give_back(struct reactor *r, struct iou_bufring *br, unsigned bid)
{
	struct iou_rstream *w;

	br->held--;
	recycle(br, bid);
	while ((w = br->starved_head)) {
		unstarve(br, w);
		if (w->reader && !r->closing)
			iou__wake(r, w->reader);
	}
}

/*
 * Take @s's oldest buffer off its queue and give it back, unless a
 * forward's send still reads from it: then the send's end gives it back.
 */
static void release_head(struct reactor *r, struct iou_bufring *br, struct iou_rstream *s)
{
	unsigned bid = s->head;

	s->head = br->bufs[bid].next;
	if (s->head == NO_BUF)
		s->tail = NO_BUF;
	s->off = 0;
	s->head_first = false; /* the spill, if any, is next */
	s->held--;
	if (br->bufs[bid].sending)
		s->fw.released = true;
	else
		give_back(r, br, bid);
}

/* ---- the request ------------------------------------------------------------------- */

static void on_completion(struct reactor *r, struct iou__op *op, const struct io_uring_cqe *cqe);

/*
 * A request prepared on @fd names @s's slot of the registered-file table
 * instead, when @fd is @s's socket and the slot holds it.
 */
static void name_slot(const struct iou_rstream *s, struct io_uring_sqe *sqe, int fd)
{
	if (fd == s->fd && s->fix.on) {
		sqe->fd = s->fix.slot;
		sqe->flags |= IOSQE_FIXED_FILE;
	}
}

/* Submit (or stage) a multishot receive for @s; 0 or why it could not start. */
static int arm(struct reactor *r, struct iou_rstream *s)
{
	struct io_uring_sqe *sqe;
	int ret = iou__op_begin(r, IORING_OP_RECV, &s->op, &sqe);

	if (ret < 0)
		return ret;
	s->op.complete = on_completion;
	io_uring_prep_recv(sqe, s->fd, NULL, 0, 0);
	name_slot(s, sqe, s->fd);
	sqe->ioprio |= IORING_RECV_MULTISHOT;
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = s->br->bgid;
	iou__op_start(r, &s->op, sqe);
	s->armed = true;
	s->stopping = false;
	r->background++;
	return 0;
}

/* The request has ended (its last completion is reaped, or it never left the FIFO). */
static void disarmed(struct reactor *r, struct iou_rstream *s)
{
	s->armed = false;
	s->stopping = false;
	r->background--;
	if (s->closer && !r->closing)
		iou__wake(r, s->closer);
}

/*
 * Cancel @s's request without waiting: through the reactor's cancel queue
 * if it reached the ring, at once if it still waits in the FIFO.
 */
static void stop(struct reactor *r, struct iou_rstream *s)
{
	if (!s->armed || s->stopping)
		return;
	s->stopping = true;
	iou__interrupt(r, &s->op.wait, -ECANCELED);
	if (s->op.state == IOU_OP_DONE)
		disarmed(r, s);
}

/* Record how the request ended, from its last completion's result. */
static void ended(struct iou_rstream *s, int res)
{
	switch (res) {
	case 0:
		s->eof = true;
		break;
	case -ENOBUFS:	 /* the ring ran dry */
	case -ECANCELED: /* our pause or close */
	case -EINTR:
	case -EAGAIN:
	case -ENOMEM:
		break; /* nothing wrong with the socket: re-armed when needed */
	case -EINVAL:
		/* A kernel without multishot receive refuses the first request. */
		if (!s->received) {
			s->fallback = true;
			break;
		}
		/* fall through */
	default:
		if (res < 0 && !s->err)
			s->err = res;
		break;
	}
}

/* Every completion of a stream's request, from the reaper. */
static void on_completion(struct reactor *r, struct iou__op *op, const struct io_uring_cqe *cqe)
{
	struct iou_rstream *s = stream_of(op);
	struct iou_bufring *br = s->br;
	int res = cqe->res;

	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

		if (iou__unlikely(bid >= br->count))
			; /* not ours: cannot happen */
		else if (iou__likely(res > 0))
			enqueue(br, s, bid, (uint32_t)res);
		else
			recycle(br, bid);
	}
	if (op->state == IOU_OP_DONE) {
		/* A last completion that carries data ended the request some other way. */
		if (!(cqe->flags & IORING_CQE_F_BUFFER) || res <= 0)
			ended(s, res);
		disarmed(r, s);
	} else if (iou__unlikely(s->held >= br->limit) && !r->closing) {
		stop(r, s); /* a slow reader: leave the ring to the others */
	}
	if (s->reader && !r->closing)
		iou__wake(r, s->reader);
}

/* ---- reclaiming a dry ring ------------------------------------------------------- */

/*
 * Copy the bytes of @t's queued buffers to its spill area, give the
 * buffers back to the ring and pause @t's request.  The head buffer stays
 * if its reader is using it (bytes of the last peek not consumed yet); a
 * reader using its spill keeps everything (the spill cannot move).  Returns
 * how many buffers came back; 0 also when memory runs short (then @t just
 * keeps them).
 */
static unsigned spill(struct reactor *r, struct iou_bufring *br, struct iou_rstream *t)
{
	/* Bytes the reader is using, or a forward is sending, stay put. */
	bool keep = t->peeked > 0 || (t->held && br->bufs[t->head].sending);
	size_t old = t->spill ? t->spill_len - t->spill_off : 0;
	uint32_t skip = keep ? 0 : t->off;
	unsigned back = 0, first;
	size_t total = old, at;
	char *p;

	/* Nothing queued, or the reader is using its spill. */
	if (!t->held || (keep && t->spill && !t->head_first))
		return 0;
	first = keep ? br->bufs[t->head].next : t->head;
	if (first == NO_BUF)
		return 0;
	for (unsigned b = first, k = skip; b != NO_BUF; b = br->bufs[b].next, k = 0)
		total += br->bufs[b].len - k;
	p = malloc(total);
	if (!p)
		return 0;
	if (old)
		memcpy(p, t->spill + t->spill_off, old);
	at = old;
	for (unsigned b = first, k = skip; b != NO_BUF; k = 0) {
		unsigned next = br->bufs[b].next;

		memcpy(p + at, buf_at(br, b) + k, br->bufs[b].len - k);
		at += br->bufs[b].len - k;
		recycle(br, b);
		t->held--;
		br->held--;
		back++;
		b = next;
	}
	free(t->spill);
	t->spill = p;
	t->spill_len = total;
	t->spill_off = 0;
	if (keep) {
		br->bufs[t->head].next = NO_BUF;
		t->tail = t->head;
		t->head_first = true;
	} else {
		t->head = t->tail = NO_BUF;
		t->off = 0;
		t->head_first = false;
	}
	stop(r, t);
	return back;
}

/*
 * The ring is dry and @s's reader needs a buffer: take back the buffers
 * of every stream whose reader is not waiting for data (see the file
 * comment).  Those that wait hold nothing: they would have been woken.
 */
static void reclaim(struct reactor *r, struct iou_bufring *br, struct iou_rstream *s)
{
	for (struct iou_rstream *t = br->streams; t; t = t->next)
		if (t != s && !t->busy && !t->fallback)
			(void)spill(r, br, t);
}

/* ---- buffer rings ------------------------------------------------------------------ */

static size_t round_up(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

/* A buffer group id no other registered ring of @r uses. */
static int pick_bgid(struct reactor *r, uint16_t *out)
{
	for (unsigned tries = 0; tries <= UINT16_MAX; tries++) {
		uint16_t id = r->next_bgid++;
		const struct iou_bufring *b;

		for (b = r->bufrings; b; b = b->next)
			if (b->ring && b->bgid == id)
				break;
		if (!b) {
			*out = id;
			return 0;
		}
	}
	return -ENOSPC;
}

static void unmap(struct iou_bufring *br)
{
	if (br->ring)
		munmap(br->ring, br->ring_bytes);
	if (br->mem)
		munmap(br->mem, br->mem_bytes);
	free(br->bufs);
	br->ring = NULL;
	br->mem = NULL;
	br->bufs = NULL;
}

/* Map the buffers and the ring, register it and fill it with every buffer. */
static int ring_register(struct reactor *r, struct iou_bufring *br)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct io_uring_buf_reg reg;
	void *p;
	int ret;

	br->stride = round_up(br->size, BUF_ALIGN);
	br->ring_bytes = round_up(br->count * sizeof(struct io_uring_buf), page);
	br->mem_bytes = round_up(br->count * br->stride, page);
	br->bufs = calloc(br->count, sizeof(*br->bufs));
	if (!br->bufs)
		return -ENOMEM;
	/* The kernel wants the ring page-aligned; mmap'd memory is. */
	p = mmap(NULL, br->ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		unmap(br);
		return -ENOMEM;
	}
	br->ring = p;
	/* Pages become resident only as the kernel fills them. */
	p = mmap(NULL, br->mem_bytes, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		unmap(br);
		return -ENOMEM;
	}
	br->mem = p;
	ret = pick_bgid(r, &br->bgid);
	if (ret < 0) {
		unmap(br);
		return ret;
	}
	io_uring_buf_ring_init(br->ring);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)br->ring;
	reg.ring_entries = br->count;
	reg.bgid = br->bgid;
	ret = io_uring_register_buf_ring(&r->ring, &reg, 0);
	if (ret < 0) {
		unmap(br);
		return ret;
	}
	for (unsigned i = 0; i < br->count; i++)
		io_uring_buf_ring_add(br->ring, buf_at(br, i), br->size, (unsigned short)i,
				      io_uring_buf_ring_mask(br->count), (int)i);
	io_uring_buf_ring_advance(br->ring, (int)br->count);
	return 0;
}

static int ring_create(struct reactor *r, unsigned count, size_t size, struct iou_bufring **out)
{
	struct iou_bufring *br = calloc(1, sizeof(*br));
	int ret;

	if (!br)
		return -ENOMEM;
	br->r = r;
	br->count = count;
	br->size = (uint32_t)size;
	br->limit = IOU_RSTREAM_LIMIT(count);
	br->low = br->limit / 2;
	if (r->multishot && iou__has_op(r, IORING_OP_RECV)) {
		ret = ring_register(r, br);
		/* -EINVAL: a kernel without buffer rings (before 5.19): the fallback. */
		if (ret < 0 && ret != -EINVAL) {
			free(br);
			return ret;
		}
	}
	br->next = r->bufrings;
	if (r->bufrings)
		r->bufrings->prev = br;
	r->bufrings = br;
	*out = br;
	return 0;
}

static void ring_free(struct reactor *r, struct iou_bufring *br)
{
	if (br->ring)
		io_uring_unregister_buf_ring(&r->ring, br->bgid);
	unmap(br);
	if (br->prev)
		br->prev->next = br->next;
	else
		r->bufrings = br->next;
	if (br->next)
		br->next->prev = br->prev;
	if (r->bufring_default == br)
		r->bufring_default = NULL;
	free(br);
}

IOU_API int iou_bufring_create(struct reactor *r, unsigned count, size_t size,
			       struct iou_bufring **out)
{
	int ret = check(r, r);

	if (ret < 0)
		return ret;
	if (!out || !count || count > IOU_BUFRING_MAX_COUNT || (count & (count - 1)) || !size ||
	    size > IOU_BUFRING_MAX_SIZE)
		return -EINVAL;
	return ring_create(r, count, size, out);
}

IOU_API int iou_bufring_destroy(struct reactor *r, struct iou_bufring *br)
{
	int ret = check(r, br ? br->r : NULL);

	if (ret < 0)
		return ret;
	if (br->nstreams)
		return -EBUSY;
	ring_free(r, br);
	return 0;
}

void iou__rstreams_fini(struct reactor *r)
{
	while (r->bufrings) {
		struct iou_bufring *br = r->bufrings;
		struct iou_rstream *s;

		while ((s = br->streams)) {
			br->streams = s->next;
			free(s->buf);
			free(s->spill);
			free(s->fw.heap);
			free(s);
		}
		ring_free(r, br);
	}
}

/* ---- the registered-file slot ------------------------------------------------------ */

static void on_fixed(struct reactor *r, struct iou__op *op, const struct io_uring_cqe *cqe)
{
	struct iou_rstream *s = stream_of_fix(op);

	s->fix.busy = false;
	if (s->fix.arg >= 0 && cqe->res >= 0) {
		s->fix.on = true;
	} else {
		/* Emptied, or never filled (the slot stayed empty): free again. */
		s->fix.on = false;
		iou__file_slot_put(r, s->fix.slot);
		s->fix.slot = -1;
	}
	if (s->closer && !r->closing)
		iou__wake(r, s->closer);
}

/* Queue the update that puts @arg (the socket, or -1: nothing) in @s's slot. */
static void fix_update(struct reactor *r, struct iou_rstream *s, int arg)
{
	struct io_uring_sqe *sqe;

	s->fix.arg = arg;
	s->fix.busy = true;
	/* Not a request of the caller's: no cancel or deadline applies. */
	(void)iou__op_prepare(r, &s->fix.op, &sqe);
	s->fix.op.complete = on_fixed;
	io_uring_prep_files_update(sqe, &s->fix.arg, 1, s->fix.slot);
	iou__op_start(r, &s->fix.op, sqe);
}

/* Close: empty the slot, unless an update is still in flight (then its end does it). */
static void fix_clear(struct reactor *r, struct iou_rstream *s)
{
	if (s->fix.slot >= 0 && !s->fix.busy) {
		s->fix.on = false; /* nothing names it any more */
		fix_update(r, s, -1);
	}
}

/* ---- streams ----------------------------------------------------------------------- */

IOU_API int iou_rstream_open(struct reactor *r, int fd, struct iou_bufring *br,
			     struct iou_rstream **out)
{
	struct iou_rstream *s;
	int ret = check(r, br ? br->r : r);

	if (ret < 0)
		return ret;
	if (!out)
		return -EINVAL;
	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	if (!br) {
		if (!r->bufring_default) {
			ret = ring_create(r, r->bufring_count, r->bufring_size,
					  &r->bufring_default);
			if (ret < 0)
				return ret;
		}
		br = r->bufring_default;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->r = r;
	s->br = br;
	s->fd = fd;
	s->head = s->tail = NO_BUF;
	s->fw.bid = NO_BUF;
	s->fix.slot = -1;
	s->fallback = !br->ring;
	if (s->fallback) {
		s->buf = malloc(br->size);
		if (!s->buf) {
			free(s);
			return -ENOMEM;
		}
	}
	s->next = br->streams;
	if (br->streams)
		br->streams->prev = s;
	br->streams = s;
	br->nstreams++;
	if (!s->fallback) {
		/* The update goes first: it is done (or failed) when the data comes. */
		s->fix.slot = iou__file_slot_get(r);
		if (s->fix.slot >= 0)
			fix_update(r, s, fd);
		/* Start receiving now; a failure (a cancelled fiber) is retried by the first peek. */
		(void)arm(r, s);
	}
	*out = s;
	return 0;
}

/* A fiber is parked in a call on @s: the others get -EBUSY. */
static inline bool in_use(const struct iou_rstream *s)
{
	return s->busy || s->fw.waiter;
}

/* Park the reader until on_completion() or a returned buffer wakes it. */
static int wait_data(struct reactor *r, struct iou_rstream *s)
{
	struct iou__wait w = { 0 };
	int ret;

	s->reader = &w;
	s->busy = true;
	ret = iou__wait(r, &w);
	s->busy = false;
	s->reader = NULL;
	unstarve(s->br, s);
	return ret;
}

/* Fallback: one plain receive, waiting for the socket if it is O_NONBLOCK. */
static ssize_t fb_recv(struct reactor *r, struct iou_rstream *s, void *buf, size_t len)
{
	ssize_t n;

	s->busy = true;
	for (;;) {
		n = iou_recv(r, s->fd, buf, len, 0);
		/* Kernels before 6.x do not wait on O_NONBLOCK sockets themselves. */
		if (n != -EAGAIN)
			break;
		n = iou_poll(r, s->fd, POLLIN);
		if (n < 0)
			break;
	}
	s->busy = false;
	if (n == 0) {
		s->eof = true;
	} else if (n < 0) {
		switch (n) {
		case -ETIMEDOUT: /* the caller's wait ended, not the stream */
		case -ECANCELED:
		case -EINTR:
		case -ENOMEM:
		case -EPERM:
			break;
		default:
			s->err = (int)n;
			break;
		}
	}
	return n;
}

/* The bytes queued now, without waiting: their length, or 0. */
static ssize_t take(struct iou_rstream *s, const void **data)
{
	if (s->fallback) {
		if (s->off >= s->blen)
			return 0;
		*data = s->buf + s->off;
		s->peeked = s->blen - s->off;
	} else if (s->spill && !s->head_first) {
		*data = s->spill + s->spill_off;
		s->peeked = s->spill_len - s->spill_off;
	} else {
		if (!s->held)
			return 0;
		*data = buf_at(s->br, s->head) + s->off;
		s->peeked = s->br->bufs[s->head].len - s->off;
	}
	return (ssize_t)s->peeked;
}

/* How the stream ended, once its data is read: 0, -errno, or 1 if it has not. */
static int end_of(const struct iou_rstream *s)
{
	if (s->err)
		return s->err;
	return s->eof ? 0 : 1;
}

static ssize_t peek(struct reactor *r, struct iou_rstream *s, const void **data)
{
	for (;;) {
		ssize_t n = take(s, data);
		int ret;

		if (n > 0)
			return n;
		ret = end_of(s);
		if (ret <= 0)
			return ret;
		if (s->fallback) {
			if (!s->buf) {
				/* Became one when the kernel refused multishot receive. */
				s->buf = malloc(s->br->size);
				if (!s->buf)
					return -ENOMEM;
			}
			n = fb_recv(r, s, s->buf, s->br->size);
			if (n <= 0)
				return n;
			s->off = 0;
			s->blen = (uint32_t)n;
			continue;
		}
		if (!s->armed) {
			if (s->br->held >= s->br->count)
				reclaim(r, s->br, s);
			if (s->br->held < s->br->count) {
				ret = arm(r, s);
				if (ret < 0)
					return ret;
			} else {
				/* Every buffer waits in some stream: wait for one to come back. */
				starve(s->br, s);
			}
		}
		ret = wait_data(r, s);
		if (ret < 0)
			return ret;
	}
}

IOU_API ssize_t iou_rstream_peek(struct reactor *r, struct iou_rstream *s, const void **data)
{
	int ret = check(r, s ? s->r : NULL);

	if (ret < 0)
		return ret;
	if (!data)
		return -EINVAL;
	if (in_use(s))
		return -EBUSY;
	return peek(r, s, data);
}

IOU_API void iou_rstream_consume(struct iou_rstream *s, size_t n)
{
	struct iou_bufring *br;
	struct reactor *r;

	if (!s || s->r != iou__self)
		return;
	if (n > s->peeked)
		n = s->peeked;
	if (!n)
		return;
	r = s->r;
	br = s->br;
	s->peeked -= n;
	if (s->spill && !s->head_first) {
		s->spill_off += n;
		if (s->spill_off < s->spill_len)
			return;
		free(s->spill);
		s->spill = NULL;
		s->spill_len = s->spill_off = 0;
	} else {
		s->off += (uint32_t)n;
		if (s->fallback || s->off < br->bufs[s->head].len)
			return;
		release_head(r, br, s);
	}
	/*
	 * Paused, or ended by a dry ring: resume once down to the low mark,
	 * and never while a spill is unread (its bytes were reclaimed from a
	 * reader that was not reading: read-ahead waits until it does).
	 */
	if (!s->armed && s->held <= br->low && !s->spill && br->held < br->count &&
	    end_of(s) > 0 && !r->closing)
		(void)arm(r, s); /* a failure (cancelled fiber) is retried by the next peek */
}

IOU_API ssize_t iou_rstream_read(struct reactor *r, struct iou_rstream *s, void *buf, size_t len)
{
	const void *p;
	size_t got = 0;
	ssize_t n;
	int ret = check(r, s ? s->r : NULL);

	if (ret < 0)
		return ret;
	if (!buf && len)
		return -EFAULT;
	if (in_use(s))
		return -EBUSY;
	if (!len)
		return 0;
	if (len > IOU_IO_MAX)
		len = IOU_IO_MAX;
	/* Fallback with nothing buffered: receive straight into @buf. */
	if (s->fallback && s->off >= s->blen && end_of(s) > 0)
		return fb_recv(r, s, buf, len);
	n = peek(r, s, &p);
	while (n > 0) {
		size_t k = (size_t)n < len - got ? (size_t)n : len - got;

		memcpy((char *)buf + got, p, k);
		iou_rstream_consume(s, k);
		got += k;
		if (got == len)
			break;
		n = take(s, &p); /* what else is queued, without waiting */
	}
	/* The caller has seen what was copied, and that is consumed: nothing is peeked. */
	s->peeked = 0;
	return got ? (ssize_t)got : n;
}

/* ---- forwarding -------------------------------------------------------------------- */

static void on_sent(struct reactor *r, struct iou__op *op, const struct io_uring_cqe *cqe);

/* Put the forward's send (what @s->fw.p holds) in the ring; 0 or why it could not. */
static int fw_send(struct reactor *r, struct iou_rstream *s, int flags, bool checked)
{
	struct io_uring_sqe *sqe;
	int ret = checked ? iou__op_begin(r, IORING_OP_SEND, &s->fw.op, &sqe)
			  : iou__op_prepare(r, &s->fw.op, &sqe);

	if (ret < 0)
		return ret;
	s->fw.op.complete = on_sent;
	io_uring_prep_send(sqe, s->fw.fd, s->fw.p, s->fw.len, flags | MSG_NOSIGNAL);
	name_slot(s, sqe, s->fw.fd);
	iou__op_start(r, &s->fw.op, sqe);
	return 0;
}

/* The send no longer reads from its ring buffer: the ring may have it back. */
static void fw_unpin(struct reactor *r, struct iou_rstream *s)
{
	struct iou_bufring *br = s->br;
	unsigned bid = s->fw.bid;

	if (bid == NO_BUF)
		return;
	br->bufs[bid].sending = false;
	if (s->fw.released)
		give_back(r, br, bid);
	s->fw.bid = NO_BUF;
	s->fw.released = false;
}

/* The forward has ended with @err (0: every byte went out). */
static void fw_end(struct reactor *r, struct iou_rstream *s, int err)
{
	fw_unpin(r, s);
	free(s->fw.heap);
	s->fw.heap = NULL;
	s->fw.p = NULL;
	s->fw.len = 0;
	if (err && !s->fw.err)
		s->fw.err = err;
	s->fw.busy = false;
	if (s->fw.waiter && !r->closing)
		iou__wake(r, s->fw.waiter);
}

/*
 * Every completion of a forward's send, from the reaper.  A send that
 * left bytes behind met a peer that reads slowly (the first send does not
 * wait for room): the rest is copied off the ring, so that the slow peer
 * holds heap memory rather than a buffer other streams need, and sent by
 * a send that waits for room.
 */
static void on_sent(struct reactor *r, struct iou__op *op, const struct io_uring_cqe *cqe)
{
	struct iou_rstream *s = stream_of_fw(op);
	int res = cqe->res;

	if (res > 0) {
		s->fw.p += res;
		s->fw.len -= (uint32_t)res;
	}
	if (!s->fw.len) {
		fw_end(r, s, 0);
		return;
	}
	if (r->closing || s->fw.stopping || (res < 0 && res != -EAGAIN) || res == 0) {
		/* A stream send that takes nothing without an error: treat as broken. */
		fw_end(r, s, res < 0 ? res : -EPIPE);
		return;
	}
	if (s->fw.bid != NO_BUF) {
		char *h = malloc(s->fw.len);

		if (!h) {
			fw_end(r, s, -ENOMEM);
			return;
		}
		memcpy(h, s->fw.p, s->fw.len);
		fw_unpin(r, s);
		s->fw.heap = h;
		s->fw.p = h;
	}
	res = fw_send(r, s, 0, false);
	if (res < 0)
		fw_end(r, s, res);
}

/*
 * Wait until no forward of @s is in flight.  @hard: ignoring the caller's
 * deadline and cancellation (close).  Return: 0, -ETIMEDOUT, -ECANCELED,
 * or outside a fiber an error of driving the reactor.
 */
static int fw_wait(struct reactor *r, struct iou_rstream *s, bool hard)
{
	/* IOU_DEADLINE_NOW: fail at once, without a timer and a trip through the scheduler. */
	if (!hard && s->fw.busy) {
		struct fiber *f = r->current;

		if (f && f->cancelled)
			return -ECANCELED;
		if ((f ? f->deadline : r->deadline) == IOU_DEADLINE_NOW)
			return -ETIMEDOUT;
	}
	while (s->fw.busy) {
		struct iou__wait w = { .hard = hard };
		int ret;

		s->fw.waiter = &w;
		ret = iou__wait(r, &w);
		s->fw.waiter = NULL;
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Close: cancel the send in flight without waiting (see stop()). */
static void fw_stop(struct reactor *r, struct iou_rstream *s)
{
	if (!s->fw.busy || s->fw.stopping)
		return;
	s->fw.stopping = true;
	iou__interrupt(r, &s->fw.op.wait, -ECANCELED);
	/* Still in the FIFO: it never reached the kernel and ends now. */
	if (s->fw.op.state == IOU_OP_DONE)
		fw_end(r, s, -ECANCELED);
}

/*
 * Park a forward or flush behind the send in flight.  Not "busy": its
 * queued buffers may be reclaimed meanwhile (a client that does not read
 * its echo must not keep ring buffers), and fw.waiter keeps other callers
 * out.
 */
static int fw_await(struct reactor *r, struct iou_rstream *s)
{
	return s->fw.busy ? fw_wait(r, s, false) : 0;
}

IOU_API ssize_t iou_rstream_forward(struct reactor *r, struct iou_rstream *s, int fd, size_t n)
{
	const char *p;
	char *heap = NULL;
	uint16_t bid = NO_BUF;
	int ret = check(r, s ? s->r : NULL);

	if (ret < 0)
		return ret;
	if (fd < 0)
		return -EBADF;
	if (in_use(s))
		return -EBUSY;
	ret = fw_await(r, s);
	if (ret < 0)
		return ret;
	if (s->fw.err)
		return s->fw.err;
	if (n > s->peeked)
		n = s->peeked;
	if (n > IOU_IO_MAX)
		n = IOU_IO_MAX;
	if (!n)
		return 0;
	if (s->fallback) {
		p = s->buf + s->off;
	} else if (s->spill && !s->head_first) {
		p = s->spill + s->spill_off;
	} else {
		p = buf_at(s->br, s->head) + s->off;
		bid = s->head;
	}
	/*
	 * The fallback's buffer is reused by the next receive and a spill is
	 * freed or moved once read: the send gets a copy of those bytes.  A
	 * ring buffer is lent as it is, and comes back when the send ends.
	 */
	if (bid == NO_BUF) {
		heap = malloc(n);
		if (!heap)
			return -ENOMEM;
		memcpy(heap, p, n);
		p = heap;
	}
	s->fw.p = p;
	s->fw.len = (uint32_t)n;
	s->fw.fd = fd;
	ret = fw_send(r, s, MSG_DONTWAIT, true);
	if (ret < 0) {
		free(heap);
		s->fw.p = NULL;
		s->fw.len = 0;
		return ret;
	}
	s->fw.heap = heap;
	s->fw.bid = bid;
	s->fw.released = false;
	s->fw.stopping = false;
	s->fw.busy = true;
	if (bid != NO_BUF)
		s->br->bufs[bid].sending = true;
	iou_rstream_consume(s, n);
	return (ssize_t)n;
}

IOU_API int iou_rstream_flush(struct reactor *r, struct iou_rstream *s)
{
	int ret = check(r, s ? s->r : NULL);

	if (ret < 0)
		return ret;
	if (in_use(s))
		return -EBUSY;
	ret = fw_await(r, s);
	if (ret < 0)
		return ret;
	return s->fw.err;
}

IOU_API int iou_rstream_close(struct reactor *r, struct iou_rstream *s)
{
	struct iou_bufring *br;
	int ret = check(r, s ? s->r : NULL);

	if (ret < 0)
		return ret;
	if (in_use(s))
		return -EBUSY;
	br = s->br;
	/* The kernel must be done with every request before their records go. */
	stop(r, s);
	fw_stop(r, s);
	/* Nothing sends or receives again: empty the slot in the same submission. */
	fix_clear(r, s);
	while (s->fw.busy)
		(void)fw_wait(r, s, true);
	while (s->armed || s->fix.slot >= 0) {
		struct iou__wait w = { .hard = true };

		fix_clear(r, s); /* the filling update was in flight */
		s->closer = &w;
		iou__wait(r, &w);
		s->closer = NULL;
	}
	while (s->held)
		release_head(r, br, s);
	unstarve(br, s);
	if (s->prev)
		s->prev->next = s->next;
	else
		br->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	br->nstreams--;
	free(s->buf);
	free(s->spill);
	free(s);
	return 0;
}
