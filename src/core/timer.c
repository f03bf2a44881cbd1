/* SPDX-License-Identifier: MIT */
/*
 * The userspace timer structure: a binary min-heap of deadlines ordered by
 * (deadline, insertion order).  Sleeps and deadlines live here; the kernel is
 * only ever asked to wake the reactor at the earliest one.  Insert and
 * removal are O(log n) and allocate only when the heap grows.
 */
#include <errno.h>
#include <stdlib.h>

#include "core.h"

static bool before(const struct iou__timer *a, const struct iou__timer *b)
{
	return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void place(struct iou__timer_heap *h, uint32_t i, struct iou__timer *t)
{
	h->v[i] = t;
	t->index = i;
}

static void sift_up(struct iou__timer_heap *h, uint32_t i)
{
	struct iou__timer *t = h->v[i];

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (!before(t, h->v[parent]))
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, t);
}

static void sift_down(struct iou__timer_heap *h, uint32_t i)
{
	struct iou__timer *t = h->v[i];

	for (;;) {
		uint32_t c = 2 * i + 1;

		if (c >= h->len)
			break;
		if (c + 1 < h->len && before(h->v[c + 1], h->v[c]))
			c++;
		if (!before(h->v[c], t))
			break;
		place(h, i, h->v[c]);
		i = c;
	}
	place(h, i, t);
}

int iou__timer_add(struct iou__timer_heap *h, struct iou__timer *t)
{
	if (h->len == h->cap) {
		uint32_t cap = h->cap ? h->cap * 2 : 64;
		struct iou__timer **v;

		if (cap <= h->cap)
			return -ENOMEM;
		v = realloc(h->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	t->seq = h->seq++;
	h->v[h->len] = t;
	t->index = h->len++;
	sift_up(h, t->index);
	return 0;
}

void iou__timer_del(struct iou__timer_heap *h, struct iou__timer *t)
{
	uint32_t i = t->index;
	struct iou__timer *last = h->v[--h->len];

	if (i == h->len)
		return;
	place(h, i, last);
	if (i > 0 && before(last, h->v[(i - 1) / 2]))
		sift_up(h, i);
	else
		sift_down(h, i);
}

void iou__timer_free(struct iou__timer_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->len = h->cap = 0;
}
