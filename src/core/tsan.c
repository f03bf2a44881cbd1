/* SPDX-License-Identifier: MIT */
/*
 * ThreadSanitizer builds only (IOU_SANITIZE=thread): C11 <threads.h> on top
 * of the pthread calls TSan intercepts.
 *
 * glibc implements thrd_create, mtx_lock, cnd_wait, call_once and friends
 * by calling its pthread internals directly, past the interceptors of the
 * TSan runtimes of gcc 12 and clang 14, which know no C11 thread function:
 * a thread made by thrd_create then starts without TSan state and crashes in
 * its first instrumented function, and a mutex taken with mtx_lock orders
 * nothing in TSan's eyes, so every access it protects is reported as a
 * race.  The library, its examples and its tests use C11 threads, so in
 * these builds the library exports the C11 names itself (see
 * libioucontext-tsan.map); being loaded before libc, it takes every call
 * in the process.  The types are glibc's pthread types under other names.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

#define SHIM __attribute__((visibility("default")))

_Static_assert(sizeof(thrd_t) == sizeof(pthread_t), "thrd_t is a pthread_t");
_Static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t), "mtx_t is a pthread_mutex_t");
_Static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t), "cnd_t is a pthread_cond_t");
_Static_assert(sizeof(once_flag) == sizeof(pthread_once_t), "once_flag is a pthread_once_t");

static int result(int err)
{
	switch (err) {
	case 0:
		return thrd_success;
	case ENOMEM:
		return thrd_nomem;
	case EBUSY:
		return thrd_busy;
	case ETIMEDOUT:
		return thrd_timedout;
	default:
		return thrd_error;
	}
}

struct start {
	thrd_start_t fn;
	void *arg;
};

static void *trampoline(void *p)
{
	struct start s = *(struct start *)p;

	free(p);
	return (void *)(intptr_t)s.fn(s.arg);
}

SHIM int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg)
{
	struct start *s = malloc(sizeof(*s));
	int err;

	if (!s)
		return thrd_nomem;
	s->fn = fn;
	s->arg = arg;
	err = pthread_create((pthread_t *)thr, NULL, trampoline, s);
	if (err)
		free(s);
	return result(err);
}

SHIM int thrd_join(thrd_t thr, int *res)
{
	void *ret;
	int err = pthread_join((pthread_t)thr, &ret);

	if (!err && res)
		*res = (int)(intptr_t)ret;
	return result(err);
}

SHIM int thrd_detach(thrd_t thr)
{
	return result(pthread_detach((pthread_t)thr));
}

SHIM int mtx_init(mtx_t *m, int type)
{
	pthread_mutexattr_t a;
	int err;

	pthread_mutexattr_init(&a);
	if (type & mtx_recursive)
		pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	err = pthread_mutex_init((pthread_mutex_t *)m, &a);
	pthread_mutexattr_destroy(&a);
	return result(err);
}

SHIM int mtx_lock(mtx_t *m)
{
	return result(pthread_mutex_lock((pthread_mutex_t *)m));
}

SHIM int mtx_trylock(mtx_t *m)
{
	return result(pthread_mutex_trylock((pthread_mutex_t *)m));
}

SHIM int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
	return result(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}

SHIM int mtx_unlock(mtx_t *m)
{
	return result(pthread_mutex_unlock((pthread_mutex_t *)m));
}

SHIM void mtx_destroy(mtx_t *m)
{
	pthread_mutex_destroy((pthread_mutex_t *)m);
}

SHIM int cnd_init(cnd_t *c)
{
	return result(pthread_cond_init((pthread_cond_t *)c, NULL));
}

SHIM int cnd_signal(cnd_t *c)
{
	return result(pthread_cond_signal((pthread_cond_t *)c));
}

SHIM int cnd_broadcast(cnd_t *c)
{
	return result(pthread_cond_broadcast((pthread_cond_t *)c));
}

SHIM int cnd_wait(cnd_t *c, mtx_t *m)
{
	return result(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

SHIM int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
	return result(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}

SHIM void cnd_destroy(cnd_t *c)
{
	pthread_cond_destroy((pthread_cond_t *)c);
}

SHIM void call_once(once_flag *flag, void (*fn)(void))
{
	pthread_once((pthread_once_t *)flag, fn);
}
