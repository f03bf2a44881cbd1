/* SPDX-License-Identifier: MIT */
/*
 * What the example tools share for a clean stop on SIGINT/SIGTERM: the
 * signals are blocked before the reactor exists and read from a
 * non-blocking signalfd by a fiber.
 *
 * The fiber waits with a poll request and then reads in its own thread.  A
 * read request on a signalfd could be handed to an io_uring worker thread,
 * and a signalfd read there dequeues the signals of the worker, not of the
 * program: a stop signal could then be taken and lost.
 */
#ifndef IOU_EXAMPLES_SIGNALS_H
#define IOU_EXAMPLES_SIGNALS_H

#include <errno.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <ioucontext/ioucontext.h>

/* Wait for and take one signal from @fd (made with SFD_NONBLOCK). */
static inline ssize_t example_read_signal(struct reactor *r, int fd, struct signalfd_siginfo *si)
{
	for (;;) {
		ssize_t n = read(fd, si, sizeof(*si));
		int ret;

		if (n >= 0)
			return n;
		if (errno != EAGAIN)
			return -errno;
		ret = iou_poll(r, fd, POLLIN);
		if (ret < 0)
			return ret;
	}
}

#endif
