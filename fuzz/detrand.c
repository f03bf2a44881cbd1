/* SPDX-License-Identifier: MIT */
/*
 * Deterministic getrandom for the TLS harnesses (detrand.h): the wrapper
 * of syscall(2) that -Wl,--wrap=syscall points the statically linked
 * rustls shim at.  The stream is splitmix64 from a fixed seed.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>

#include "detrand.h"

#define SEED UINT64_C(0x696f75636f6e7478) /* "ioucontx" */

/* The linker's names for the real syscall() and for this wrapper. */
long __real_syscall(long number, ...);
long __wrap_syscall(long number, ...);

static uint64_t state = SEED;
static unsigned long calls;

void fuzz_detrand_reset(void)
{
	state = SEED;
}

unsigned long fuzz_detrand_calls(void)
{
	return calls;
}

static uint64_t next(void)
{
	uint64_t z = (state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/*
 * syscall() takes up to six arguments after the number; reading six is
 * what glibc's own syscall() does on x86-64 and other ABIs that pass them
 * in registers.
 */
long __wrap_syscall(long number, ...)
{
	long a[6];
	va_list ap;

	va_start(ap, number);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (number == SYS_getrandom) {
		unsigned char *buf = (unsigned char *)a[0];
		size_t len = (size_t)a[1];

		for (size_t off = 0; off < len; off += 8) {
			uint64_t v = next();

			memcpy(buf + off, &v, len - off < 8 ? len - off : 8);
		}
		calls++;
		return (long)len;
	}
	return __real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
