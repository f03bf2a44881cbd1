/* SPDX-License-Identifier: MIT */
/*
 * Proof that switching fibers makes no system call.  A child process warms
 * two fibers up, then installs a seccomp filter that traps every system call
 * except write and exit; the fibers then yield to each other 10,000 times
 * each, the fibers end and the reactor returns.  Any system call on that
 * path raises SIGSYS, whose handler names the call and exits with status 3.
 * A control child makes one deliberate call under the same filter to show
 * the trap fires.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ioucontext/ioucontext.h>

#include "harness.h"

#if defined(__x86_64__)
#define THIS_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define THIS_ARCH AUDIT_ARCH_AARCH64
#endif

#define YIELDS 10000

static void on_sigsys(int sig, siginfo_t *info, void *uctx)
{
	char msg[64] = "system call ";
	size_t n = strlen(msg);
	int nr = info->si_syscall;
	char digits[12];
	int k = 0;

	(void)sig;
	(void)uctx;
	do {
		digits[k++] = (char)('0' + nr % 10);
		nr /= 10;
	} while (nr && k < 11);
	while (k)
		msg[n++] = digits[--k];
	memcpy(msg + n, " made while fibers switched\n", 28);
	n += 28;
	syscall(SYS_write, 2, msg, n);
	syscall(SYS_exit_group, 3);
}

#ifdef THIS_ARCH
static int forbid_syscalls(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, THIS_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit_group, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	if (sigaction(SIGSYS, &sa, NULL))
		return -1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}
#endif

static int filtered, filter_failed;

static void *pingpong(void *arg)
{
	struct reactor *r = reactor_get();

	/* Warm-up: both fibers have been entered once before the filter. */
	fiber_yield(r);
	fiber_yield(r);
	if (arg && !filtered) {
		filter_failed = forbid_syscalls() != 0;
		filtered = 1;
	}
	for (int i = 0; i < YIELDS; i++)
		fiber_yield(r);
	return NULL;
}

static int run_child(bool control)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct reactor *r = reactor_get();

		if (!r)
			_exit(4);
		fiber_spawn(r, pingpong, (void *)1, NULL);
		fiber_spawn(r, pingpong, NULL, NULL);
		if (reactor_run(r) != 0)
			syscall(SYS_exit_group, 5);
		if (filter_failed)
			syscall(SYS_exit_group, 6);
		if (control)
			getppid(); /* must trap */
		syscall(SYS_exit_group, 0);
	}
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static int test_yield_makes_no_syscall(void)
{
	/*
	 * valgrind cannot run under a seccomp filter, and ASan's siglongjmp
	 * interceptor itself calls sigaltstack: the claim is about the
	 * uninstrumented library, which the default preset tests.
	 */
	if (RUNNING_ON_VALGRIND || IOU_TEST_ASAN)
		return TEST_SKIP;
	ASSERT_EQ(run_child(false), 0);
	return 0;
}

static int test_filter_catches_a_syscall(void)
{
	if (RUNNING_ON_VALGRIND)
		return TEST_SKIP;
	ASSERT_EQ(run_child(true), 3);
	return 0;
}

#ifdef THIS_ARCH
TEST_MAIN(T(test_yield_makes_no_syscall), T(test_filter_catches_a_syscall))
#else
int main(void)
{
	return TEST_SKIP;
}
#endif
