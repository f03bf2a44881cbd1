/* SPDX-License-Identifier: MIT */
/*
 * Reactor options: the defaults, the environment variables that override
 * them (documented in <ioucontext/reactor.h>), and their validation.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <ioucontext/rstream.h>

#include "core.h"

#define MIN_STACK ((size_t)16 * 1024)
#define MAX_STACK ((size_t)1024 * 1024 * 1024)
#define MAX_ENTRIES 32768u

/* Parse a non-negative decimal with an optional K/M/G suffix; false if malformed. */
static bool parse_size(const char *s, unsigned long long *out)
{
	char *end;
	unsigned long long v, mul = 1;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return false;
	switch (*end) {
	case 'k': case 'K': mul = 1ULL << 10; end++; break;
	case 'm': case 'M': mul = 1ULL << 20; end++; break;
	case 'g': case 'G': mul = 1ULL << 30; end++; break;
	default: break;
	}
	if (*end != '\0' || v > ULLONG_MAX / mul)
		return false;
	*out = v * mul;
	return true;
}

/* "single_issuer,defer_taskrun" -> flags; false on an unknown word. */
static bool parse_ring_flags(const char *s, unsigned *out)
{
	static const struct {
		const char *name;
		unsigned flag;
	} words[] = {
		{ "single_issuer", IOU_RING_SINGLE_ISSUER },
		{ "defer_taskrun", IOU_RING_DEFER_TASKRUN },
		{ "coop_taskrun", IOU_RING_COOP_TASKRUN },
		{ "all", IOU_RING_ALL },
		{ "none", 0 },
	};
	unsigned flags = 0;

	while (*s) {
		size_t n = strcspn(s, ",");
		size_t i;

		for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
			if (strlen(words[i].name) == n && !strncmp(s, words[i].name, n))
				break;
		if (i == sizeof(words) / sizeof(words[0]))
			return false;
		flags |= words[i].flag;
		s += n;
		if (*s == ',')
			s++;
	}
	*out = flags;
	return true;
}

IOU_API void reactor_options_init(struct reactor_options *o)
{
	unsigned long long v;
	unsigned flags;
	const char *e;

	memset(o, 0, sizeof(*o));
	o->ring_entries = IOU_DEFAULT_RING_ENTRIES;
	o->stack_size = IOU_DEFAULT_STACK_SIZE;
	o->fiber_pool = IOU_DEFAULT_FIBER_POOL;
	o->ring_flags = IOU_RING_ALL;
	o->pin = true;
	o->multishot = true;
	o->bufring_count = IOU_DEFAULT_BUFRING_COUNT;
	o->bufring_size = IOU_DEFAULT_BUFRING_SIZE;
	o->file_slots = IOU_DEFAULT_FILE_SLOTS;

	if (parse_size(getenv("IOU_RING_ENTRIES"), &v) && v >= 1 && v <= MAX_ENTRIES)
		o->ring_entries = (unsigned)v;
	if (parse_size(getenv("IOU_STACK_SIZE"), &v) && v >= MIN_STACK && v <= MAX_STACK)
		o->stack_size = (size_t)v;
	if (parse_size(getenv("IOU_FIBER_POOL"), &v) && v <= UINT_MAX)
		o->fiber_pool = (unsigned)v;
	e = getenv("IOU_PIN");
	if (e && (!strcmp(e, "0") || !strcmp(e, "no") || !strcmp(e, "off")))
		o->pin = false;
	e = getenv("IOU_MULTISHOT");
	if (e && (!strcmp(e, "0") || !strcmp(e, "no") || !strcmp(e, "off")))
		o->multishot = false;
	if (parse_size(getenv("IOU_BUFRING_COUNT"), &v) && v >= 1 && v <= IOU_BUFRING_MAX_COUNT &&
	    !(v & (v - 1)))
		o->bufring_count = (unsigned)v;
	if (parse_size(getenv("IOU_BUFRING_SIZE"), &v) && v >= 1 && v <= IOU_BUFRING_MAX_SIZE)
		o->bufring_size = (size_t)v;
	if (parse_size(getenv("IOU_FILE_SLOTS"), &v) && v <= IOU_FILE_SLOTS_MAX)
		o->file_slots = (unsigned)v;
	e = getenv("IOU_RING_FLAGS");
	if (e && parse_ring_flags(e, &flags))
		o->ring_flags = flags;
}

int iou__options_check(const struct reactor_options *o)
{
	if (o->ring_entries < 1 || o->ring_entries > MAX_ENTRIES)
		return -EINVAL;
	if (o->stack_size < MIN_STACK || o->stack_size > MAX_STACK)
		return -EINVAL;
	if (o->ring_flags & ~IOU_RING_ALL)
		return -EINVAL;
	/* 0 picks the default, for option structs filled by hand. */
	if (o->bufring_count > IOU_BUFRING_MAX_COUNT || (o->bufring_count & (o->bufring_count - 1)))
		return -EINVAL;
	if (o->bufring_size > IOU_BUFRING_MAX_SIZE)
		return -EINVAL;
	if (o->file_slots > IOU_FILE_SLOTS_MAX)
		return -EINVAL;
	return 0;
}
