/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness: iou_dns's reading of names from standard input (its
 * take_input() and end_line(), compiled from examples/iou_dns.c without
 * main()), checked against a plain model of what the usage says: lines
 * end at '\n'; white space around a name goes; blank lines are skipped;
 * a name longer than NAME_CAP bytes, or holding a NUL byte, fails as
 * invalid (and is still reported, as its first NAME_CAP bytes less any
 * white space that ends them).
 *
 * Input: one byte choosing the size of the reads the input arrives in
 * (a line is cut across reads as it comes), then standard input.
 */
#define IOU_EXAMPLE_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../examples/iou_dns.c"

#include "fuzz.h"

/* The model: where the next expected line starts in the input. */
static struct {
	const char *data;
	size_t size, pos;
	unsigned names; /* names taken so far */
} model;

/* The model's next name: trimmed line, its length (uncut) and whether it is bad. */
static bool model_next(const char **name, size_t *len, bool *bad)
{
	while (model.pos < model.size) {
		const char *start = model.data + model.pos, *end;
		const char *nl = memchr(start, '\n', model.size - model.pos);

		end = nl ? nl : model.data + model.size;
		model.pos = (size_t)(end - model.data) + 1;
		while (start < end && isspace((unsigned char)*start))
			start++;
		while (end > start && isspace((unsigned char)end[-1]))
			end--;
		if (start == end)
			continue;
		*name = start;
		*len = (size_t)(end - start);
		*bad = *len > NAME_CAP || memchr(start, '\0', *len);
		return true;
	}
	return false;
}

static int check_name(struct program *p, const char *name, size_t len, bool bad)
{
	const char *want;
	size_t want_len;
	bool want_bad;

	(void)p;
	FUZZ_CHECK(model_next(&want, &want_len, &want_bad), "name %u '%.*s' from nowhere",
		   model.names, (int)len, name);
	FUZZ_CHECK(bad == want_bad, "name %u: bad %d, want %d", model.names, bad, want_bad);
	FUZZ_CHECK(len >= 1 && len <= NAME_CAP, "name %u: length %zu", model.names, len);
	if (want_len > NAME_CAP) {
		/* Reported as its first NAME_CAP bytes, white space after them cut. */
		want_len = NAME_CAP;
		while (isspace((unsigned char)want[want_len - 1]))
			want_len--;
	}
	FUZZ_CHECK(len == want_len && memcmp(name, want, len) == 0,
		   "name %u: '%.*s' (%zu bytes), want '%.*s' (%zu)", model.names, (int)len, name,
		   len, (int)want_len, want, want_len);
	model.names++;
	return 0;
}

/* Sizes of the reads the input comes in. */
static const size_t reads[8] = { 1, 2, 3, 7, 64, 1000, 1025, READ_CHUNK };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct program p;
	const char *name;
	size_t chunk, len, off = 0;
	bool bad;

	if (size < 1)
		return 0;
	chunk = reads[data[0] & 7];
	memset(&p, 0, sizeof(p));
	model.data = (const char *)data + 1;
	model.size = size - 1;
	model.pos = 0;
	model.names = 0;
	while (off < size - 1) {
		size_t n = size - 1 - off < chunk ? size - 1 - off : chunk;

		FUZZ_CHECK(take_input(&p, (const char *)data + 1 + off, n, check_name) == 0,
			   "take_input failed");
		FUZZ_CHECK(p.line_len <= NAME_CAP, "line length %zu", p.line_len);
		off += n;
	}
	FUZZ_CHECK(end_line(&p, check_name) == 0, "end_line failed");
	FUZZ_CHECK(!model_next(&name, &len, &bad), "name %u '%.*s' never came", model.names,
		   (int)(len > 80 ? 80 : len), name);
	return 0;
}
