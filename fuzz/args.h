/* SPDX-License-Identifier: MIT */
/*
 * The argument-parsing harness (fuzz-args.c) and its six wrappers,
 * args-<example>.c, each of which compiles one example program without its
 * main() (IOU_EXAMPLE_NO_MAIN) and runs its parse_args() on a command
 * line, checking what it returns and what it parsed.
 */
#ifndef IOU_FUZZ_ARGS_H
#define IOU_FUZZ_ARGS_H

/*
 * Each returns parse_args()'s result: -1 (go on and run) or the exit
 * status; the wrapper has checked it and freed what parsing allocated.
 * @argv is NULL-terminated, argv[0] the program's name; getopt has been
 * reset (optind = 0) by the caller.
 */
int fuzz_args_iou_cat(int argc, char **argv);
int fuzz_args_iou_dns(int argc, char **argv);
int fuzz_args_iou_port7(int argc, char **argv);
int fuzz_args_iou_timers(int argc, char **argv);
int fuzz_args_iou_tls(int argc, char **argv);
int fuzz_args_iou_tlsd(int argc, char **argv);

/* An example's exit status: 0, 1 (printing --help failed, out of memory) or 2 (usage). */
#define FUZZ_STATUS_OK(ret) ((ret) == 0 || (ret) == 1 || (ret) == 2)

#endif
