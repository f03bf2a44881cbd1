/* SPDX-License-Identifier: MIT */
/*
 * The reactor's table of registered files: slots of the ring's sparse
 * file table that requests name with IOSQE_FIXED_FILE instead of a file
 * descriptor, so the kernel skips looking the descriptor up and taking
 * and dropping a reference on its file for every request (fget/fput, a
 * few per cent of an echo server's kernel time at 10,000 connections).
 *
 * The table is registered on first use, with as many slots as the
 * options ask for but never more than the process may have open files
 * (the kernel refuses more).  A kernel without sparse tables or without
 * IORING_OP_FILES_UPDATE, a refused registration, or a full table only
 * mean that callers go on naming descriptors.  Filling and clearing a slot
 * is the caller's business (an IORING_OP_FILES_UPDATE request, in order
 * with the requests that use it): this file only hands out slot numbers,
 * lowest first, and takes back those the kernel no longer uses.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "core.h"

/* Register the table: true if there is one. */
static bool table_create(struct reactor *r)
{
	struct rlimit rl;
	unsigned n = r->file_slots;

	if (!n || !iou__has_op(r, IORING_OP_FILES_UPDATE))
		return false;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < n)
		n = (unsigned)rl.rlim_cur;
	/* Kernels before 5.19 have no sparse tables: -EINVAL, -EFAULT or the like. */
	if (!n || io_uring_register_files_sparse(&r->ring, n) < 0)
		return false;
	r->files.size = n;
	return true;
}

int iou__file_slot_get(struct reactor *r)
{
	struct iou__files *t = &r->files;

	if (iou__unlikely(t->state == IOU__FILES_UNTRIED))
		t->state = table_create(r) ? IOU__FILES_ON : IOU__FILES_OFF;
	if (t->state != IOU__FILES_ON)
		return -1;
	if (t->nfree)
		return (int)t->free[--t->nfree];
	if (t->next < t->size) {
		/* Every slot below @next is handed out or free: room for all in @free. */
		if (t->next == t->cap) {
			unsigned cap = t->cap ? 2 * t->cap : 64;
			unsigned *p = realloc(t->free, cap * sizeof(*p));

			if (!p)
				return -1;
			t->free = p;
			t->cap = cap;
		}
		return (int)t->next++;
	}
	return -1;
}

void iou__file_slot_put(struct reactor *r, int slot)
{
	struct iou__files *t = &r->files;

	/* @free has room for every slot ever handed out (see above). */
	t->free[t->nfree++] = (unsigned)slot;
}

void iou__files_fini(struct reactor *r)
{
	free(r->files.free);
	r->files = (struct iou__files){ 0 };
}
