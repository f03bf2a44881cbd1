/* SPDX-License-Identifier: MIT */
/*
 * Channels between reactors (struct iou_xchan): a ring of fixed-size items
 * and two FIFOs of parked callers, all under one short spinlock.  A caller
 * that must wait parks on a remote wait (struct iou__rwait, msg.c) linked
 * on the channel; whoever serves it -- a receiver making room, a sender
 * bringing an item, close -- moves the item straight into or out of the
 * waiter's own buffer under the lock and hands the waiter back to its
 * reactor through that reactor's wake queue.  So each side parks only its
 * own fiber, and an item in transit is always either in the ring, in the
 * sender's buffer or in the receiver's: never lost, never twice.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

struct iou_xchan {
	iou__spin lock;
	size_t item_size;
	size_t capacity;
	size_t head; /* ring index of the oldest item */
	size_t len;  /* items in the ring */
	bool closed;
	struct iou__rwait *send_head, *send_tail; /* senders, FIFO (data: their item) */
	struct iou__rwait *recv_head, *recv_tail; /* receivers, FIFO (data: their buffer) */
	_Alignas(16) unsigned char buf[];
};

static unsigned char *slot(struct iou_xchan *ch, size_t i)
{
	return ch->buf + ((ch->head + i) % ch->capacity) * ch->item_size;
}

static void q_push(struct iou__rwait **head, struct iou__rwait **tail, struct iou__rwait *rw)
{
	rw->next = NULL;
	rw->prev = *tail;
	if (*tail)
		(*tail)->next = rw;
	else
		*head = rw;
	*tail = rw;
}

static void q_unlink(struct iou__rwait **head, struct iou__rwait **tail, struct iou__rwait *rw)
{
	if (rw->prev)
		rw->prev->next = rw->next;
	else
		*head = rw->next;
	if (rw->next)
		rw->next->prev = rw->prev;
	else
		*tail = rw->prev;
	rw->prev = rw->next = NULL;
	rw->linked = false;
}

static void unlink_sender(struct iou__rwait *rw)
{
	struct iou_xchan *ch = rw->obj;

	q_unlink(&ch->send_head, &ch->send_tail, rw);
}

static void unlink_receiver(struct iou__rwait *rw)
{
	struct iou_xchan *ch = rw->obj;

	q_unlink(&ch->recv_head, &ch->recv_tail, rw);
}

/* The calling thread's reactor (made if need be), with its mailbox. */
static int caller(struct reactor **out)
{
	struct reactor *r = reactor_get();

	if (!r)
		return -ENOMEM;
	*out = r;
	return iou__mail_self(r);
}

/* A posted callback runs inside the driver: it must not park. */
static bool may_wait(const struct reactor *r)
{
	return r->current || !r->driving;
}

IOU_API int iou_xchan_create(size_t item_size, size_t capacity, struct iou_xchan **out)
{
	struct iou_xchan *ch;
	size_t bytes;

	if (!out || !item_size || (capacity && item_size > (SIZE_MAX - sizeof(*ch)) / capacity))
		return -EINVAL;
	bytes = sizeof(*ch) + item_size * capacity;
	ch = calloc(1, bytes);
	if (!ch)
		return -ENOMEM;
	atomic_init(&ch->lock.held, false);
	ch->item_size = item_size;
	ch->capacity = capacity;
	*out = ch;
	return 0;
}

IOU_API int iou_xchan_destroy(struct iou_xchan *ch)
{
	bool busy;

	if (!ch)
		return -EINVAL;
	iou__spin_lock(&ch->lock);
	busy = ch->send_head || ch->recv_head;
	iou__spin_unlock(&ch->lock);
	if (busy)
		return -EBUSY;
	free(ch);
	return 0;
}

/* Park @rw (prepared, linked by the caller under the lock, which is now released). */
static int park(struct reactor *r, struct iou__rwait *rw)
{
	int ret = iou__rwait_park(r, rw);

	iou__rwait_end(r, rw);
	return rw->served ? rw->res : ret;
}

static int xsend(struct iou_xchan *ch, const void *item, bool wait)
{
	struct reactor *r;
	struct iou__rwait rw, *w;
	int ret;

	if (!ch || !item)
		return -EINVAL;
	ret = caller(&r);
	if (ret < 0)
		return ret;
	iou__spin_lock(&ch->lock);
	if (ch->closed) {
		ret = -EPIPE;
	} else if ((w = ch->recv_head)) {
		/* A receiver waits, so the ring is empty: hand the item over. */
		q_unlink(&ch->recv_head, &ch->recv_tail, w);
		memcpy(w->data, item, ch->item_size);
		iou__rwake(r, w, 0);
		ret = 0;
	} else if (ch->len < ch->capacity) {
		memcpy(slot(ch, ch->len), item, ch->item_size);
		ch->len++;
		ret = 0;
	} else if (!wait || !may_wait(r)) {
		ret = -EAGAIN;
	} else {
		/* The mailbox exists (caller()): preparing allocates nothing. */
		iou__rwait_prepare(r, &rw, ch, &ch->lock, unlink_sender, (void *)item);
		q_push(&ch->send_head, &ch->send_tail, &rw);
		rw.linked = rw.pending = true;
		iou__spin_unlock(&ch->lock);
		return park(r, &rw);
	}
	iou__spin_unlock(&ch->lock);
	return ret;
}

static int xrecv(struct iou_xchan *ch, void *item, bool wait)
{
	struct reactor *r;
	struct iou__rwait rw, *w;
	int ret;

	if (!ch || !item)
		return -EINVAL;
	ret = caller(&r);
	if (ret < 0)
		return ret;
	iou__spin_lock(&ch->lock);
	if (ch->len) {
		memcpy(item, slot(ch, 0), ch->item_size);
		ch->head = (ch->head + 1) % ch->capacity;
		ch->len--;
		/* Room: the first waiting sender's item moves into the ring. */
		if ((w = ch->send_head)) {
			q_unlink(&ch->send_head, &ch->send_tail, w);
			memcpy(slot(ch, ch->len), w->data, ch->item_size);
			ch->len++;
			iou__rwake(r, w, 0);
		}
		ret = 0;
	} else if ((w = ch->send_head)) {
		/* Rendezvous: take it straight from the sender. */
		q_unlink(&ch->send_head, &ch->send_tail, w);
		memcpy(item, w->data, ch->item_size);
		iou__rwake(r, w, 0);
		ret = 0;
	} else if (ch->closed) {
		ret = -EPIPE;
	} else if (!wait || !may_wait(r)) {
		ret = -EAGAIN;
	} else {
		/* The mailbox exists (caller()): preparing allocates nothing. */
		iou__rwait_prepare(r, &rw, ch, &ch->lock, unlink_receiver, item);
		q_push(&ch->recv_head, &ch->recv_tail, &rw);
		rw.linked = rw.pending = true;
		iou__spin_unlock(&ch->lock);
		return park(r, &rw);
	}
	iou__spin_unlock(&ch->lock);
	return ret;
}

IOU_API int iou_xchan_send(struct iou_xchan *ch, const void *item)
{
	return xsend(ch, item, true);
}

IOU_API int iou_xchan_trysend(struct iou_xchan *ch, const void *item)
{
	return xsend(ch, item, false);
}

IOU_API int iou_xchan_recv(struct iou_xchan *ch, void *item)
{
	return xrecv(ch, item, true);
}

IOU_API int iou_xchan_tryrecv(struct iou_xchan *ch, void *item)
{
	return xrecv(ch, item, false);
}

IOU_API int iou_xchan_close(struct iou_xchan *ch)
{
	struct reactor *r;
	struct iou__rwait *w;
	int ret;

	if (!ch)
		return -EINVAL;
	ret = caller(&r);
	if (ret < 0)
		return ret;
	iou__spin_lock(&ch->lock);
	if (ch->closed) {
		iou__spin_unlock(&ch->lock);
		return -EPIPE;
	}
	ch->closed = true;
	while ((w = ch->recv_head)) {
		q_unlink(&ch->recv_head, &ch->recv_tail, w);
		iou__rwake(r, w, -EPIPE);
	}
	while ((w = ch->send_head)) {
		q_unlink(&ch->send_head, &ch->send_tail, w);
		iou__rwake(r, w, -EPIPE);
	}
	iou__spin_unlock(&ch->lock);
	return 0;
}

IOU_API int64_t iou_xchan_len(struct iou_xchan *ch)
{
	int64_t n;

	if (!ch)
		return -EINVAL;
	iou__spin_lock(&ch->lock);
	n = (int64_t)ch->len;
	iou__spin_unlock(&ch->lock);
	return n;
}
