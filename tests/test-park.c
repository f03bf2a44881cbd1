/* SPDX-License-Identifier: MIT */
/*
 * The pieces libraries build on: fiber_park()/fiber_unpark() (a wake-up
 * before the park is kept, time and deadline and cancel end a park, FIFO
 * over many fibers, -EPERM outside a fiber), reactor_ext slots (set, get,
 * replace, remove, fini once at teardown), reactor_current(), and
 * iou_strerror() over errno values and the DNS range.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <threads.h>

#include <ioucontext/ioucontext.h>

#include "ops-harness.h"

static struct fiber *parked_fiber;
static int park_result;

static void *parker(void *arg)
{
	struct reactor *r = reactor_get();

	(void)arg;
	park_result = fiber_park(r, IOU_DEADLINE_NEVER);
	return NULL;
}

static void *unparker(void *arg)
{
	(void)arg;
	FIBER_CHECK(fiber_unpark(parked_fiber) == 0);
	return NULL;
}

static void *early_unpark(void *arg)
{
	struct reactor *r = reactor_get();

	(void)arg;
	/* Our own permit first: the park returns at once. */
	FIBER_CHECK(fiber_unpark(fiber_self(r)) == 0);
	FIBER_CHECK(fiber_park(r, IOU_DEADLINE_NEVER) == 1);
	/* No permit left: a park with a time limit runs out. */
	FIBER_CHECK(fiber_park(r, iou_deadline_after(5 * IOU_MSEC)) == 0);
	/* The deadline and cancellation end it like any wait. */
	fiber_set_deadline(r, iou_deadline_after(5 * IOU_MSEC));
	FIBER_CHECK(fiber_park(r, IOU_DEADLINE_NEVER) == -ETIMEDOUT);
	fiber_set_deadline(r, IOU_DEADLINE_NEVER);
	return NULL;
}

static int test_park_and_unpark(void)
{
	struct reactor *r = reactor_get();
	struct fiber *f;

	ASSERT_EQ(fiber_park(r, IOU_DEADLINE_NEVER), -EPERM); /* not a fiber */
	ASSERT_EQ(fiber_park(NULL, 0), -EINVAL);
	ASSERT_EQ(fiber_unpark(NULL), -EINVAL);
	park_result = 99;
	ASSERT_EQ(fiber_spawn(r, parker, NULL, &parked_fiber), 0);
	ASSERT_EQ(fiber_yield(r), 0); /* it parks */
	ASSERT_EQ(park_result, 99);
	ASSERT_EQ(fiber_spawn(r, unparker, NULL, NULL), 0);
	ASSERT_EQ(fiber_join(parked_fiber, NULL), 0);
	ASSERT_EQ(park_result, 1);
	ASSERT_EQ(fiber_spawn(r, early_unpark, NULL, &f), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	/* Cancel wakes a parked fiber with -ECANCELED. */
	park_result = 99;
	ASSERT_EQ(fiber_spawn(r, parker, NULL, &f), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	ASSERT_EQ(fiber_cancel(f), 0);
	ASSERT_EQ(fiber_join(f, NULL), 0);
	ASSERT_EQ(park_result, -ECANCELED);
	ASSERT_NO_FIBER_FAILURES();
	return 0;
}

#define MANY 1000
static struct fiber *many[MANY];
static int order[MANY], norder;

static void *park_then_record(void *arg)
{
	if (fiber_park(reactor_get(), IOU_DEADLINE_NEVER) == 1)
		order[norder++] = (int)(intptr_t)arg;
	return NULL;
}

static int test_unpark_order_is_wake_order(void)
{
	struct reactor *r = reactor_get();

	norder = 0;
	for (int i = 0; i < MANY; i++)
		ASSERT_EQ(fiber_spawn(r, park_then_record, (void *)(intptr_t)i, &many[i]), 0);
	ASSERT_EQ(fiber_yield(r), 0);
	/* Wake in reverse: they must run in the order they were woken. */
	for (int i = MANY - 1; i >= 0; i--)
		ASSERT_EQ(fiber_unpark(many[i]), 0);
	for (int i = 0; i < MANY; i++)
		ASSERT_EQ(fiber_join(many[i], NULL), 0);
	ASSERT_EQ(norder, MANY);
	for (int i = 0; i < MANY; i++)
		ASSERT_EQ(order[i], MANY - 1 - i);
	return 0;
}

/* ---- reactor_ext ----------------------------------------------------------- */

static const char key_a, key_b;
static int finis;
static struct reactor *fini_reactor;

static void count_fini(struct reactor *r, void *value)
{
	fini_reactor = r;
	finis += (int)(intptr_t)value;
}

static int ext_body(void)
{
	struct reactor *r;

	ASSERT_PTR_EQ(reactor_current(), NULL);
	ASSERT_EQ(reactor_create(NULL, &r), 0);
	ASSERT_PTR_EQ(reactor_current(), r);
	ASSERT_PTR_EQ(reactor_ext_get(r, &key_a), NULL);
	ASSERT_EQ(reactor_ext_set(r, &key_a, (void *)(intptr_t)1, count_fini), 0);
	ASSERT_EQ(reactor_ext_set(r, &key_b, (void *)(intptr_t)10, count_fini), 0);
	ASSERT_PTR_EQ(reactor_ext_get(r, &key_a), (void *)(intptr_t)1);
	ASSERT_PTR_EQ(reactor_ext_get(r, &key_b), (void *)(intptr_t)10);
	/* Replace, then remove: neither calls the fini. */
	ASSERT_EQ(reactor_ext_set(r, &key_a, (void *)(intptr_t)100, count_fini), 0);
	ASSERT_PTR_EQ(reactor_ext_get(r, &key_a), (void *)(intptr_t)100);
	ASSERT_EQ(reactor_ext_set(r, &key_b, NULL, NULL), 0);
	ASSERT_PTR_EQ(reactor_ext_get(r, &key_b), NULL);
	ASSERT_EQ(reactor_ext_set(NULL, &key_a, NULL, NULL), -EINVAL);
	ASSERT_EQ(reactor_ext_set(r, NULL, NULL, NULL), -EINVAL);
	finis = 0;
	ASSERT_EQ(reactor_destroy(r), 0);
	ASSERT_EQ(finis, 100); /* exactly the slot left, exactly once */
	ASSERT_PTR_EQ(fini_reactor, r);
	ASSERT_PTR_EQ(reactor_current(), NULL);
	return 0;
}

static int test_ext_slots(void)
{
	return test_in_thread(ext_body);
}

/* ---- iou_strerror ------------------------------------------------------------ */

static int test_strerror(void)
{
	ASSERT_STREQ(iou_strerror(0), "Success");
	ASSERT_STREQ(iou_strerror(-ENOENT), "No such file or directory");
	ASSERT_STREQ(iou_strerror(-ETIMEDOUT), "Connection timed out");
	ASSERT_STREQ(iou_strerror(IOU_EDNS_NONAME), "No such name");
	ASSERT_STREQ(iou_strerror(IOU_EDNS_TIMEOUT), "No DNS server answered in time");
	ASSERT_TRUE(IOU_IS_EDNS(IOU_EDNS_CANCELLED));
	ASSERT_TRUE(!IOU_IS_EDNS(-ECANCELED));
	for (int e = IOU_EDNS_NONAME; e >= IOU_EDNS_CONFIG; e--)
		ASSERT_TRUE(strncmp(iou_strerror(e), "Unknown error", 13) != 0);
	ASSERT_STREQ(iou_strerror(-10999), "Unknown error -10999");
	ASSERT_STREQ(iou_strerror(12345), "Unknown error 12345");
	return 0;
}

static const char *other_thread_text;

static int strerror_other_thread(void *arg)
{
	(void)arg;
	other_thread_text = iou_strerror(-4000);
	/* Known codes need no buffer: this one leaves the unknown text alone. */
	if (strcmp(iou_strerror(-ENOENT), "No such file or directory"))
		return 1;
	return strcmp(other_thread_text, "Unknown error -4000") != 0;
}

/*
 * The documented lifetimes: known codes are the same constant every time,
 * in every thread; an unknown code's text is the calling thread's own and
 * stays as it was until that thread's next call.
 */
static int test_strerror_lifetime(void)
{
	const char *known = iou_strerror(-EPIPE), *mine;
	thrd_t t;
	int rc = -1;

	mine = iou_strerror(-4095);
	ASSERT_STREQ(mine, "Unknown error -4095");
	ASSERT_EQ(thrd_create(&t, strerror_other_thread, NULL), thrd_success);
	ASSERT_EQ(thrd_join(t, &rc), thrd_success);
	ASSERT_EQ(rc, 0);
	ASSERT_TRUE(other_thread_text != mine);
	ASSERT_STREQ(mine, "Unknown error -4095"); /* another thread's calls left it */
	ASSERT_PTR_EQ(iou_strerror(-EPIPE), known);
	ASSERT_STREQ(mine, "Unknown error -4095");
	ASSERT_PTR_EQ(iou_strerror(99999), mine); /* the next unknown reuses it */
	ASSERT_STREQ(mine, "Unknown error 99999");
	return 0;
}

TEST_MAIN(T(test_park_and_unpark), T(test_unpark_order_is_wake_order), T(test_ext_slots),
	  T(test_strerror), T(test_strerror_lifetime))
