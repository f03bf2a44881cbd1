/* SPDX-License-Identifier: MIT */
/*
 * The Boost.Context peer of bench-switch: the same ping-pong, measured the
 * same way (warm-up, BENCH_REPS repetitions, best reported, ns per switch
 * where one switch hands control from one side to the other).  Two flavours:
 * the raw assembly primitive jump_fcontext()/make_fcontext() from
 * boost/context/detail/fcontext.hpp ("boost_fcontext", what DESIGN.md §5
 * quotes and what the ioucontext target is compared against), and the
 * public boost::context::fiber built on it ("boost_fiber").
 *
 * jump_fcontext saves and restores MXCSR and the x87 control word.  Once
 * main has done floating-point arithmetic (computing a result sets the
 * sticky "inexact" flag) its MXCSR differs from the one frozen into the
 * peer, and every switch then loads a changed MXCSR, which costs ~50 ns
 * here.  Real fibers all doing arithmetic converge on equal values, so the
 * flags are cleared before each timed run to measure that steady state.
 *
 * Usage: boost-switch [N]   (N round trips per repetition, default 10M)
 */
#include <boost/context/detail/fcontext.hpp>
#include <boost/context/fiber.hpp>
#include <boost/version.hpp>

#include <cfenv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

namespace ctx = boost::context;

namespace
{

constexpr int reps = 5; // as BENCH_REPS in bench.h
constexpr std::size_t peer_stack_size = 64 * 1024;

long long now_ns()
{
	return std::chrono::duration_cast<std::chrono::nanoseconds>(
		       std::chrono::steady_clock::now().time_since_epoch())
		.count();
}

// The peer side: hands control straight back, forever.
void fcontext_body(ctx::detail::transfer_t t)
{
	for (;;)
		t = ctx::detail::jump_fcontext(t.fctx, nullptr);
}

// A suspended fcontext peer and the stack it runs on.
struct fcontext_peer {
	void *stack;
	ctx::detail::fcontext_t fctx;

	fcontext_peer() : stack(std::malloc(peer_stack_size))
	{
		if (!stack) {
			std::perror("malloc");
			std::exit(1);
		}
		// make_fcontext takes the top of the stack: it grows down.
		fctx = ctx::detail::make_fcontext(static_cast<char *>(stack) + peer_stack_size,
						  peer_stack_size, fcontext_body);
		fctx = ctx::detail::jump_fcontext(fctx, nullptr).fctx;
	}
};

// ns per switch: each side jumps n times.
double run_fcontext(fcontext_peer &p, long n)
{
	long long t0 = now_ns();

	for (long i = 0; i < n; i++)
		p.fctx = ctx::detail::jump_fcontext(p.fctx, nullptr).fctx;
	return double(now_ns() - t0) / (2.0 * double(n));
}

// ns per switch with boost::context::fiber: each resume() is a round trip.
double run_fiber(ctx::fiber &f, long n)
{
	long long t0 = now_ns();

	for (long i = 0; i < n; i++)
		f = std::move(f).resume();
	return double(now_ns() - t0) / (2.0 * double(n));
}

template <typename Run> void report(const char *name, long n, Run run)
{
	double best = 0;

	std::feclearexcept(FE_ALL_EXCEPT);
	run(n / 10 > 1000 ? n / 10 : 1000);
	std::printf("# %s:", name);
	for (int rep = 0; rep < reps; rep++) {
		std::feclearexcept(FE_ALL_EXCEPT);
		double ns = run(n);

		std::printf(" %.2f", ns);
		if (rep == 0 || ns < best)
			best = ns;
	}
	std::printf("\nswitch %s %.1f\n", name, best);
	std::fflush(stdout);
}

long parse_count(int argc, char **argv)
{
	if (argc < 2)
		return 10000000;
	char *end;
	double v = std::strtod(argv[1], &end);
	if (end != argv[1] && (*end == 'k' || *end == 'K'))
		v *= 1e3, end++;
	else if (end != argv[1] && (*end == 'm' || *end == 'M'))
		v *= 1e6, end++;
	if (end == argv[1] || *end != '\0' || v < 1 || v > 1e12) {
		std::fprintf(stderr, "%s: bad count '%s'\n", argv[0], argv[1]);
		std::exit(2);
	}
	return long(v);
}

} // namespace

int main(int argc, char **argv)
{
	long n = parse_count(argc, argv);

	std::printf("# boost-switch: %ld round trips x %d repetitions, best reported; "
		    "Boost %d.%d\n",
		    n, reps, BOOST_VERSION / 100000, BOOST_VERSION / 100 % 1000);

	// Both peers are made with clear flags, so that they match main's.
	std::feclearexcept(FE_ALL_EXCEPT);
	fcontext_peer p;
	ctx::fiber f{ std::allocator_arg, ctx::fixedsize_stack(peer_stack_size),
		      [](ctx::fiber &&caller) {
			      for (;;)
				      caller = std::move(caller).resume();
			      return std::move(caller);
		      } };
	f = std::move(f).resume();

	report("boost_fcontext", n, [&](long k) { return run_fcontext(p, k); });
	report("boost_fiber", n, [&](long k) { return run_fiber(f, k); });
	// Both peers stay suspended for good; the process simply ends.
	std::exit(0);
}
