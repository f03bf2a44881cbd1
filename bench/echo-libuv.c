/* SPDX-License-Identifier: MIT */
/*
 * echo-libuv: the libuv peer of the echo benchmark.  One uv_default_loop
 * serves a uv_tcp_t listener and a uv_udp_t on the same port (the sockets
 * come from echo-peer.h and are adopted with uv_tcp_open/uv_udp_open).
 *
 * Every read lands in a 64 KiB block whose header holds the write (or UDP
 * send) request that echoes it, so one read costs no allocation beyond the
 * block, and blocks are recycled through a freelist of up to FREE_BLOCKS.
 * uv_try_write() sends at once when nothing is queued, so the block is
 * usually free again before the next read; what it cannot send goes to
 * uv_write(), which queues it and recycles the block in its callback;
 * a connection with more than WRITE_HIGH bytes queued (a client that sends
 * but does not read) stops reading until its queue is empty.  At end of
 * file the connection is shut down after its queued writes (uv_shutdown)
 * and then closed; any other error closes it at once.  At the descriptor
 * limit libuv itself accepts and drops pending connections with a reserved
 * descriptor, so the listener does not spin.  SIGINT/SIGTERM (uv_signal_t)
 * stop the loop.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define PEER_NAME "echo-libuv"
#include "echo-peer.h"

#define BLOCK_DATA 65536	/* one read; larger than any UDP payload */
#define FREE_BLOCKS 64		/* blocks kept for reuse */
#define WRITE_HIGH (128 * 1024) /* queued bytes that pause reading */

/* A read buffer and the request that echoes it. */
struct block {
	union {
		uv_write_t write;
		uv_udp_send_t send;
		struct block *next; /* in the freelist */
	} req;
	char data[BLOCK_DATA];
};

static uv_loop_t *loop;
static struct block *free_list;
static unsigned free_count;

static struct block *block_of(const char *data)
{
	return (struct block *)(void *)(data - offsetof(struct block, data));
}

static void block_put(struct block *b)
{
	if (free_count >= FREE_BLOCKS) {
		free(b);
		return;
	}
	b->req.next = free_list;
	free_list = b;
	free_count++;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct block *b = free_list;

	(void)h;
	(void)suggested;
	if (b) {
		free_list = b->req.next;
		free_count--;
	} else if (!(b = malloc(sizeof(*b)))) {
		*buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
		return;
	}
	*buf = uv_buf_init(b->data, BLOCK_DATA);
}

static void on_closed(uv_handle_t *h)
{
	free(h);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
	uv_stream_t *s = req->handle;

	block_put((struct block *)(void *)req);
	if (status < 0) {
		if (!uv_is_closing((uv_handle_t *)s))
			uv_close((uv_handle_t *)s, on_closed);
		return;
	}
	/* A paused reader (data == s) resumes once its queue is gone. */
	if (s->data && uv_stream_get_write_queue_size(s) == 0 && !uv_is_closing((uv_handle_t *)s)) {
		s->data = NULL;
		if (uv_read_start(s, on_alloc, on_read) < 0)
			uv_close((uv_handle_t *)s, on_closed);
	}
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	(void)status;
	if (!uv_is_closing((uv_handle_t *)req->handle))
		uv_close((uv_handle_t *)req->handle, on_closed);
	free(req);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct block *b = buf->base ? block_of(buf->base) : NULL;
	uv_shutdown_t *sd = NULL;

	if (n > 0) {
		uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
		int done = uv_try_write(s, &out, 1);

		/* Mostly all goes at once, and the block is free for the next read. */
		if (done == n) {
			block_put(b);
			return;
		}
		if (done > 0) {
			out.base += done;
			out.len -= (size_t)done;
		}
		if ((done < 0 && done != UV_EAGAIN) ||
		    uv_write(&b->req.write, s, &out, 1, on_written) < 0) {
			block_put(b);
			uv_close((uv_handle_t *)s, on_closed);
		} else if (uv_stream_get_write_queue_size(s) > WRITE_HIGH) {
			uv_read_stop(s);
			s->data = s;
		}
		return;
	}
	if (b)
		block_put(b);
	if (n == 0)
		return; /* EAGAIN */
	/* End of file: send back what is queued, then close; else close now. */
	uv_read_stop(s);
	if (n == UV_EOF && (sd = malloc(sizeof(*sd))) && uv_shutdown(sd, s, on_shutdown) == 0)
		return;
	if (n == UV_EOF)
		free(sd);
	uv_close((uv_handle_t *)s, on_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
	uv_tcp_t *c;

	if (status < 0 || !(c = malloc(sizeof(*c))))
		return; /* a libuv error (EMFILE is handled inside), or no memory */
	uv_tcp_init(loop, c);
	c->data = NULL;
	if (uv_accept(server, (uv_stream_t *)c) < 0) {
		uv_close((uv_handle_t *)c, on_closed);
		return;
	}
	uv_tcp_nodelay(c, 1);
	if (uv_read_start((uv_stream_t *)c, on_alloc, on_read) < 0)
		uv_close((uv_handle_t *)c, on_closed);
}

static void on_udp_sent(uv_udp_send_t *req, int status)
{
	(void)status;
	block_put((struct block *)(void *)req);
}

static void on_udp(uv_udp_t *u, ssize_t n, const uv_buf_t *buf, const struct sockaddr *addr,
		   unsigned flags)
{
	struct block *b = buf->base ? block_of(buf->base) : NULL;

	(void)flags;
	if (n >= 0 && addr) {
		uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);

		/* Send at once when nothing is queued; queue only on EAGAIN. */
		if (uv_udp_try_send(u, &out, 1, addr) == UV_EAGAIN &&
		    uv_udp_send(&b->req.send, u, &out, 1, addr, on_udp_sent) == 0)
			return;
	}
	if (b)
		block_put(b);
}

static void on_signal(uv_signal_t *h, int signum)
{
	(void)signum;
	uv_stop(h->loop);
}

int main(int argc, char **argv)
{
	static uv_tcp_t server;
	static uv_udp_t udp;
	static uv_signal_t sigint, sigterm;
	struct peer p;
	int err;

	peer_setup(argc, argv, &p, SOCK_NONBLOCK);
	loop = uv_default_loop();
	if ((err = uv_signal_init(loop, &sigint)) < 0 ||
	    (err = uv_signal_init(loop, &sigterm)) < 0 ||
	    (err = uv_signal_start(&sigint, on_signal, SIGINT)) < 0 ||
	    (err = uv_signal_start(&sigterm, on_signal, SIGTERM)) < 0 ||
	    (err = uv_tcp_init(loop, &server)) < 0 || (err = uv_tcp_open(&server, p.tcp)) < 0 ||
	    (err = uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection)) < 0 ||
	    (err = uv_udp_init(loop, &udp)) < 0 || (err = uv_udp_open(&udp, p.udp)) < 0 ||
	    (err = uv_udp_recv_start(&udp, on_alloc, on_udp)) < 0)
		peer_fail("libuv: %s", uv_strerror(err));
	peer_ready(&p);
	uv_run(loop, UV_RUN_DEFAULT);
	return 0;
}
