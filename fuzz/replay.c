/* SPDX-License-Identifier: MIT */
/*
 * The replay program: a harness built without libFuzzer, run by CTest in
 * every normal build (fuzz-replay-<harness>) over the committed corpus and
 * crash inputs.  Each argument is a file or a directory, whose files are
 * fed in name order (those whose names start with '.' or are README* are
 * skipped), each once, to LLVMFuzzerTestOneInput().  A broken invariant or
 * a sanitizer report aborts; otherwise prints how many inputs ran, and
 * fails if that is none (a corpus that went missing).
 *
 *   fuzz-replay-<harness> DIR|FILE...
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Inputs larger than this are refused, as libFuzzer's -max_len would. */
#define REPLAY_MAX ((size_t)1 << 20)

static unsigned long replayed;

static int replay_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *buf, *input;
	size_t n;

	if (!fp) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	buf = malloc(REPLAY_MAX + 1);
	if (!buf) {
		fclose(fp);
		fprintf(stderr, "replay: out of memory\n");
		return -1;
	}
	n = fread(buf, 1, REPLAY_MAX + 1, fp);
	fclose(fp);
	if (n > REPLAY_MAX) {
		free(buf);
		fprintf(stderr, "replay: %s: larger than %zu bytes\n", path, REPLAY_MAX);
		return -1;
	}
	/* An exact-size copy, so that ASan sees reads past the input's end. */
	input = malloc(n ? n : 1);
	if (!input) {
		free(buf);
		fprintf(stderr, "replay: out of memory\n");
		return -1;
	}
	memcpy(input, buf, n);
	free(buf);
	LLVMFuzzerTestOneInput(input, n);
	free(input);
	replayed++;
	return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int skip(const struct dirent *d)
{
	return d->d_name[0] != '.' && strncmp(d->d_name, "README", 6) != 0;
}

static int replay_dir(const char *dir)
{
	struct dirent **names;
	int n = scandir(dir, &names, skip, by_name), status = 0;

	if (n < 0) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (replay_file(path) < 0)
			status = -1;
		free(names[i]);
	}
	free(names);
	return status;
}

int main(int argc, char **argv)
{
	int status = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			status = 1;
		} else if (S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : replay_file(argv[i])) {
			status = 1;
		}
	}
	printf("replay: %lu inputs\n", replayed);
	if (!replayed) {
		fprintf(stderr, "replay: no inputs found\n");
		status = 1;
	}
	return status;
}
