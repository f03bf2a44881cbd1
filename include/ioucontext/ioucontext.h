/* SPDX-License-Identifier: MIT */
/*
 * ioucontext: cooperative multitasking on Linux io_uring.  This umbrella
 * header includes every public header of the core library.
 */
#ifndef IOUCONTEXT_IOUCONTEXT_H
#define IOUCONTEXT_IOUCONTEXT_H

#include <ioucontext/clock.h>
#include <ioucontext/error.h>
#include <ioucontext/fiber.h>
#include <ioucontext/fs.h>
#include <ioucontext/io.h>
#include <ioucontext/net.h>
#include <ioucontext/reactor.h>
#include <ioucontext/rstream.h>
#include <ioucontext/sync.h>
#include <ioucontext/thread.h>
#include <ioucontext/version.h>

#endif
