/* SPDX-License-Identifier: MIT */
/*
 * Time as ioucontext sees it: signed 64-bit nanoseconds on CLOCK_MONOTONIC.
 * Every deadline in the library is an absolute time on this clock; the two
 * named constants spell "never expire" and "do not block".
 */
#ifndef IOUCONTEXT_CLOCK_H
#define IOUCONTEXT_CLOCK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Nanoseconds in common units, for building relative times. */
#define IOU_NSEC INT64_C(1)
#define IOU_USEC INT64_C(1000)
#define IOU_MSEC INT64_C(1000000)
#define IOU_SEC INT64_C(1000000000)

/** A deadline that never expires. */
#define IOU_DEADLINE_NEVER INT64_MAX
/** A deadline that has always expired already: "do not block". */
#define IOU_DEADLINE_NOW INT64_C(0)

/**
 * iou_now() - the current CLOCK_MONOTONIC time in nanoseconds.
 *
 * Never suspends; makes no system call where the vDSO provides the clock
 * (all Linux architectures ioucontext supports).
 */
int64_t iou_now(void);

/**
 * iou_deadline_after() - the absolute deadline @ns nanoseconds from now.
 *
 * Saturates: a result that would overflow is IOU_DEADLINE_NEVER, and a
 * negative @ns gives a deadline in the past.
 */
int64_t iou_deadline_after(int64_t ns);

#ifdef __cplusplus
}
#endif

#endif
