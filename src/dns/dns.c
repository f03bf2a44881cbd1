/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous DNS on c-ares (<ioucontext/dns.h>), built on the public API
 * of the core only.
 *
 * One resolver per reactor, kept in a reactor_ext slot from the first
 * lookup until the reactor is torn down; its c-ares channel can be closed
 * and made again (iou_dns_close, iou_dns_configure) meanwhile.  c-ares
 * tells us which sockets it wants watched through its socket-state
 * callback: each gets a watcher fiber that waits with iou_poll() and hands
 * readiness to ares_process_fd().  Poll requests are level-triggered and
 * re-armed after every call, so data left in a socket (a TCP answer in
 * several segments) is processed at once, never after a timeout.  A timer
 * fiber sleeps until ares_timeout() says, in the reactor's timer heap.
 *
 * A lookup is a request record on the heap: the calling fiber parks until
 * the c-ares callback fills it in and unparks it.  If the caller gives up
 * (deadline, fiber_cancel()), the record is marked abandoned and the
 * callback, which c-ares still owes, frees it.  Nothing here ever suspends
 * inside a c-ares call or callback, so c-ares is never re-entered.
 *
 * At most IOU_DNS_MAX_INFLIGHT queries are in c-ares at once; later lookups
 * wait in FIFO order, so that one ares_process_fd() call (which handles
 * every answer already queued on a socket) stays short while other fibers
 * wait to run.
 */
#define _GNU_SOURCE
#include <ares.h>
#include <ares_nameser.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <threads.h>

#include <ioucontext/dns.h>
#include <ioucontext/ioucontext.h>

#define API __attribute__((visibility("default")))

struct engine;

/* One socket c-ares wants watched, and the fiber that watches it. */
struct watcher {
	struct engine *e;
	int fd;
	unsigned events;   /* POLLIN and/or POLLOUT */
	unsigned gen;	   /* the channel it belongs to */
	bool gone;	   /* c-ares no longer wants it: the fiber exits */
	struct fiber *f;   /* set when the fiber starts */
	struct watcher *next;
};

enum req_kind { REQ_FORWARD, REQ_REVERSE };

/* One lookup.  On the heap: it outlives a caller that gives up. */
struct req {
	struct engine *e;
	enum req_kind kind;
	struct fiber *f;	 /* the waiting fiber */
	bool done;		 /* the callback ran */
	bool abandoned;		 /* the caller left: the callback frees */
	bool queued;		 /* waiting for a turn in e->queue */
	bool admitted;		 /* its turn came */
	int status;		 /* ARES_* from the callback */
	struct ares_addrinfo *ai; /* forward result */
	char *name;		 /* reverse result */
	unsigned char addr[16];	 /* reverse: the address asked about */
	int addrlen, family;
	struct req *next;	 /* e->queue link */
};

struct engine {
	struct reactor *r;
	ares_channel chan;
	bool open;		  /* chan is valid */
	bool dying;		  /* the reactor is being torn down */
	unsigned gen;		  /* bumped each time a channel is made */
	struct iou_dns_options opts;
	char *servers;		  /* our copy of opts.servers */
	struct watcher *watchers; /* every watcher whose fiber has not exited */
	struct fiber *timer;	  /* the timer fiber once it runs */
	bool timer_alive;	  /* spawned and not yet exited */
	unsigned inflight;	  /* queries in c-ares */
	unsigned abandoned;	  /* of those, how many nobody waits for */
	struct req *queue_head, *queue_tail; /* lookups waiting for a turn */
};

static const char slot_key; /* our reactor_ext key: its address */
static once_flag lib_once = ONCE_FLAG_INIT;
static int lib_status;

static void lib_init(void)
{
	lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static int map_status(int status)
{
	switch (status) {
	case ARES_SUCCESS:
		return 0;
	case ARES_ENODATA:
		return IOU_EDNS_NODATA;
	case ARES_EFORMERR:
		return IOU_EDNS_FORMERR;
	case ARES_ESERVFAIL:
		return IOU_EDNS_SERVFAIL;
	case ARES_ENOTFOUND:
		return IOU_EDNS_NONAME;
	case ARES_ENOTIMP:
		return IOU_EDNS_NOTIMP;
	case ARES_EREFUSED:
		return IOU_EDNS_REFUSED;
	case ARES_EBADQUERY:
	case ARES_EBADNAME:
		return IOU_EDNS_BADNAME;
	case ARES_EBADFAMILY:
		return -EAFNOSUPPORT;
	case ARES_EBADRESP:
	case ARES_EOF:
		return IOU_EDNS_BADRESP;
	case ARES_ECONNREFUSED:
		return IOU_EDNS_CONNREFUSED;
	case ARES_ETIMEOUT:
		return IOU_EDNS_TIMEOUT;
	case ARES_ENOMEM:
		return -ENOMEM;
	case ARES_ECANCELLED:
	case ARES_EDESTRUCTION:
		return IOU_EDNS_CANCELLED;
	case ARES_ESERVICE:
		return IOU_EDNS_BADSERVICE;
	case ARES_EBADSTR:
		return IOU_EDNS_CONFIG;
	default:
		return IOU_EDNS_BADRESP;
	}
}

/* ---- turns: at most IOU_DNS_MAX_INFLIGHT queries in c-ares -------------- */

static void admit_next(struct engine *e)
{
	struct req *q = e->queue_head;

	if (!q || e->inflight >= IOU_DNS_MAX_INFLIGHT)
		return;
	e->queue_head = q->next;
	if (!e->queue_head)
		e->queue_tail = NULL;
	q->queued = false;
	q->admitted = true;
	e->inflight++; /* reserved for it */
	fiber_unpark(q->f);
}

static void unqueue(struct engine *e, struct req *q)
{
	struct req **pp = &e->queue_head, *prev = NULL;

	for (; *pp; prev = *pp, pp = &(*pp)->next) {
		if (*pp == q) {
			*pp = q->next;
			if (e->queue_tail == q)
				e->queue_tail = prev;
			break;
		}
	}
	q->queued = false;
}

/* A query left c-ares (answered, failed, or the channel went away). */
static void finished(struct req *q, int status)
{
	struct engine *e = q->e;

	e->inflight--;
	if (q->abandoned)
		e->abandoned--;
	if (!e->dying) {
		admit_next(e);
		/* Nothing left to time out: let the timer fiber end, and reactor_run() return. */
		if (e->inflight == 0 && e->timer)
			fiber_unpark(e->timer);
	}
	if (q->abandoned || e->dying) {
		if (q->ai)
			ares_freeaddrinfo(q->ai);
		free(q->name);
		free(q);
		return;
	}
	q->status = status;
	q->done = true;
	fiber_unpark(q->f);
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct req *q = arg;

	(void)timeouts;
	q->ai = res;
	finished(q, status);
}

/* A PTR answer: the first name in it. */
static void on_ptr(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct req *q = arg;
	struct hostent *h = NULL;

	(void)timeouts;
	if (status == ARES_SUCCESS) {
		status = ares_parse_ptr_reply(abuf, alen, q->addr, q->addrlen, q->family, &h);
		if (status == ARES_SUCCESS && h && h->h_name) {
			q->name = strdup(h->h_name);
			if (!q->name)
				status = ARES_ENOMEM;
		} else if (status == ARES_SUCCESS) {
			status = ARES_ENODATA;
		}
		if (h)
			ares_free_hostent(h);
	}
	finished(q, status);
}

/* ---- watching c-ares's sockets ------------------------------------------- */

static void *watch_main(void *arg)
{
	struct watcher *w = arg;
	struct engine *e = w->e;
	struct reactor *r = e->r;

	w->f = fiber_self(r);
	while (!w->gone && e->open && w->gen == e->gen) {
		int ev = iou_poll(r, w->fd, w->events);
		ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

		if (w->gone || !e->open || w->gen != e->gen)
			break;
		if (ev < 0) {
			if (ev == -ECANCELED || ev == -ETIMEDOUT)
				break;
			/* The descriptor is broken: let c-ares find out by reading. */
			ev = POLLERR;
		}
		if (ev & (POLLIN | POLLERR | POLLHUP))
			rfd = w->fd;
		if (ev & (POLLOUT | POLLERR | POLLHUP))
			wfd = w->fd;
		ares_process_fd(e->chan, rfd, wfd);
	}
	/* Unlink and free: only this fiber frees its record. */
	for (struct watcher **pp = &e->watchers; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	free(w);
	return NULL;
}

static void drop_watcher(struct watcher *w)
{
	w->gone = true;
	if (w->f)
		fiber_cancel(w->f);
}

/* c-ares's socket-state callback: never suspends. */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct engine *e = data;
	unsigned events = (readable ? POLLIN : 0) | (writable ? POLLOUT : 0);
	struct watcher *w;

	for (w = e->watchers; w; w = w->next)
		if (w->fd == fd && !w->gone && w->gen == e->gen)
			break;
	if (w && w->events == events)
		return;
	if (w)
		drop_watcher(w); /* a new one below watches the new events */
	if (!events || e->dying)
		return;
	w = calloc(1, sizeof(*w));
	if (!w)
		return; /* c-ares times the query out */
	*w = (struct watcher){ .e = e, .fd = fd, .events = events, .gen = e->gen, .next = e->watchers };
	if (fiber_spawn(e->r, watch_main, w, NULL) < 0) {
		free(w);
		return;
	}
	e->watchers = w;
}

/* ---- c-ares's timeouts ------------------------------------------------------ */

static void *timer_main(void *arg)
{
	struct engine *e = arg;
	struct reactor *r = e->r;

	/* Serves whichever channel is open: configure may replace it meanwhile. */
	e->timer = fiber_self(r);
	while (e->open && e->inflight > 0) {
		struct timeval tv, *tvp = ares_timeout(e->chan, NULL, &tv);
		int64_t until = IOU_DEADLINE_NEVER;
		int ret;

		if (tvp)
			until = iou_now() + tvp->tv_sec * IOU_SEC + tvp->tv_usec * IOU_USEC;
		ret = fiber_park(r, until);
		if (ret < 0)
			break;
		if (ret == 0 && e->open)
			ares_process_fd(e->chan, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	}
	e->timer = NULL;
	e->timer_alive = false;
	return NULL;
}

/* A query started: the timer must look at the new earliest timeout. */
static void kick_timer(struct engine *e)
{
	if (e->timer_alive) {
		if (e->timer)
			fiber_unpark(e->timer);
		return;
	}
	if (fiber_spawn(e->r, timer_main, e, NULL) == 0)
		e->timer_alive = true;
}

/* ---- the channel ------------------------------------------------------------ */

static int channel_open(struct engine *e)
{
	struct ares_options o;
	int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_FLAGS, ret;

	memset(&o, 0, sizeof(o));
	o.sock_state_cb = sock_state;
	o.sock_state_cb_data = e;
	/*
	 * NOCHECKRESP: c-ares 1.18 otherwise turns SERVFAIL, REFUSED and
	 * NOTIMP answers into "could not contact" once every server said so;
	 * with it, the first such answer is reported as what it is.
	 */
	o.flags = (e->opts.search ? 0 : ARES_FLAG_NOSEARCH) | ARES_FLAG_NOCHECKRESP;
	if (e->opts.timeout_ms > 0) {
		o.timeout = e->opts.timeout_ms;
		mask |= ARES_OPT_TIMEOUTMS;
	}
	if (e->opts.tries > 0) {
		o.tries = e->opts.tries;
		mask |= ARES_OPT_TRIES;
	}
	if (!e->opts.hosts_file) {
		o.lookups = (char *)"b"; /* DNS only */
		mask |= ARES_OPT_LOOKUPS;
	}
	e->gen++;
	ret = ares_init_options(&e->chan, &o, mask);
	if (ret != ARES_SUCCESS)
		return ret == ARES_ENOMEM ? -ENOMEM : IOU_EDNS_CONFIG;
	if (e->servers) {
		ret = ares_set_servers_ports_csv(e->chan, e->servers);
		if (ret != ARES_SUCCESS) {
			ares_destroy(e->chan);
			return ret == ARES_ENOMEM ? -ENOMEM : IOU_EDNS_CONFIG;
		}
	}
	e->open = true;
	return 0;
}

/* End the channel: every query's callback runs now, with EDESTRUCTION. */
static void channel_close(struct engine *e)
{
	if (!e->open)
		return;
	e->open = false;
	ares_destroy(e->chan);
	/* Lookups still waiting for a turn end too. */
	while (e->queue_head) {
		struct req *q = e->queue_head;

		e->queue_head = q->next;
		q->queued = false;
		if (e->dying) {
			free(q);
			continue;
		}
		q->status = ARES_EDESTRUCTION;
		q->done = true;
		fiber_unpark(q->f);
	}
	e->queue_tail = NULL;
	for (struct watcher *w = e->watchers; w; w = w->next)
		drop_watcher(w);
	if (e->timer)
		fiber_unpark(e->timer);
}

static void engine_fini(struct reactor *r, void *value)
{
	struct engine *e = value;

	(void)r;
	e->dying = true;
	channel_close(e);
	/* The fibers will never run again: free what they would have. */
	while (e->watchers) {
		struct watcher *w = e->watchers;

		e->watchers = w->next;
		free(w);
	}
	free(e->servers);
	free(e);
}

static int engine_get(struct reactor *r, struct engine **out)
{
	struct engine *e = reactor_ext_get(r, &slot_key);
	int ret;

	call_once(&lib_once, lib_init);
	if (lib_status != ARES_SUCCESS)
		return -ENOMEM;
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e)
			return -ENOMEM;
		e->r = r;
		iou_dns_options_init(&e->opts);
		ret = reactor_ext_set(r, &slot_key, e, engine_fini);
		if (ret < 0) {
			free(e);
			return ret;
		}
	}
	if (!e->open) {
		ret = channel_open(e);
		if (ret < 0)
			return ret;
	}
	*out = e;
	return 0;
}

/* ---- lookups ------------------------------------------------------------------ */

struct call {
	struct reactor *r;
	enum req_kind kind;
	const char *name, *service;
	const struct addrinfo *hints;
	const struct sockaddr *addr;
	socklen_t addrlen;
	struct req *q; /* on success: the finished record, owned by the caller */
	int64_t deadline;
	int ret;
};

static void start(struct engine *e, struct req *q, struct call *c)
{
	if (c->kind == REQ_FORWARD) {
		struct ares_addrinfo_hints h = { .ai_flags = ARES_AI_NOSORT };

		if (c->hints) {
			h.ai_family = c->hints->ai_family;
			h.ai_socktype = c->hints->ai_socktype;
			h.ai_protocol = c->hints->ai_protocol;
			if (c->hints->ai_flags & AI_CANONNAME)
				h.ai_flags |= ARES_AI_CANONNAME;
			if (c->hints->ai_flags & AI_NUMERICSERV)
				h.ai_flags |= ARES_AI_NUMERICSERV;
		}
		ares_getaddrinfo(e->chan, c->name, c->service, &h, on_addrinfo, q);
	} else {
		/* The PTR query itself: c-ares's gethostbyaddr reports every failure as "not found". */
		char qname[80];
		size_t n = 0;

		if (q->family == AF_INET) {
			for (int i = 3; i >= 0; i--)
				n += (size_t)snprintf(qname + n, sizeof(qname) - n, "%u.", q->addr[i]);
			snprintf(qname + n, sizeof(qname) - n, "in-addr.arpa");
		} else {
			for (int i = 15; i >= 0; i--)
				n += (size_t)snprintf(qname + n, sizeof(qname) - n, "%x.%x.",
						      q->addr[i] & 0xf, q->addr[i] >> 4);
			snprintf(qname + n, sizeof(qname) - n, "ip6.arpa");
		}
		ares_query(e->chan, qname, ns_c_in, ns_t_ptr, on_ptr, q);
	}
}

/* The hosts file's first name for an address, as c-ares would find it. */
static char *hosts_name(const struct req *q)
{
	FILE *fp = fopen("/etc/hosts", "re");
	char line[1024], *found = NULL;

	if (!fp)
		return NULL;
	while (!found && fgets(line, sizeof(line), fp)) {
		unsigned char bin[16];
		char *save, *addr = strtok_r(line, " \t\r\n", &save), *name;

		if (!addr || addr[0] == '#' || inet_pton(q->family, addr, bin) != 1 ||
		    memcmp(bin, q->addr, (size_t)q->addrlen))
			continue;
		name = strtok_r(NULL, " \t\r\n", &save);
		if (name && name[0] != '#')
			found = strdup(name);
	}
	fclose(fp);
	return found;
}

/* The lookup itself, in a fiber. */
static int lookup_in_fiber(struct call *c)
{
	struct reactor *r = c->r;
	struct engine *e;
	struct req *q;
	int ret;

	if (fiber_cancelled(r))
		return -ECANCELED;
	ret = engine_get(r, &e);
	if (ret < 0)
		return ret;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->e = e;
	q->kind = c->kind;
	q->f = fiber_self(r);
	if (c->kind == REQ_REVERSE) {
		q->family = c->addr->sa_family;
		if (q->family == AF_INET) {
			q->addrlen = 4;
			memcpy(q->addr, &((const struct sockaddr_in *)(const void *)c->addr)->sin_addr, 4);
		} else {
			q->addrlen = 16;
			memcpy(q->addr, &((const struct sockaddr_in6 *)(const void *)c->addr)->sin6_addr,
			       16);
		}
		if (e->opts.hosts_file) {
			q->name = hosts_name(q);
			if (q->name) {
				c->q = q;
				return 0;
			}
		}
	}
	if (e->inflight >= IOU_DNS_MAX_INFLIGHT || e->queue_head) {
		q->queued = true;
		if (e->queue_tail)
			e->queue_tail->next = q;
		else
			e->queue_head = q;
		e->queue_tail = q;
		while (!q->admitted && !q->done) {
			ret = fiber_park(r, IOU_DEADLINE_NEVER);
			if (ret < 0) {
				if (q->queued)
					unqueue(e, q);
				else if (q->admitted) {
					e->inflight--; /* give the reserved turn on */
					admit_next(e);
				}
				free(q);
				return ret;
			}
		}
		if (q->done) { /* the channel closed while it waited */
			ret = map_status(q->status);
			free(q);
			return ret;
		}
		if (!e->open) { /* admitted by the channel's last callbacks */
			e->inflight--;
			free(q);
			return IOU_EDNS_CANCELLED;
		}
	} else {
		e->inflight++;
	}
	/* The callback may run at once (hosts file, numeric name, bad input). */
	start(e, q, c);
	if (!q->done)
		kick_timer(e);
	while (!q->done) {
		ret = fiber_park(r, IOU_DEADLINE_NEVER);
		if (ret < 0 && !q->done) {
			q->abandoned = true; /* the callback will free it */
			e->abandoned++;
			return ret;
		}
	}
	ret = map_status(q->status);
	if (ret < 0) {
		if (q->ai)
			ares_freeaddrinfo(q->ai);
		free(q->name);
		free(q);
		return ret;
	}
	c->q = q;
	return 0;
}

static void *lookup_fiber(void *arg)
{
	struct call *c = arg;

	fiber_set_deadline(c->r, c->deadline);
	c->ret = lookup_in_fiber(c);
	return NULL;
}

/* From a fiber: look up here.  Outside: in a fiber, joined (driving the reactor). */
static int run(struct call *c)
{
	struct fiber *f;
	int ret;

	if (fiber_self(c->r))
		return lookup_in_fiber(c);
	c->deadline = fiber_deadline(c->r);
	ret = fiber_spawn(c->r, lookup_fiber, c, &f);
	if (ret < 0)
		return ret;
	ret = fiber_join(f, NULL);
	if (ret < 0) {
		/*
		 * Our own deadline or cancel ended the join: the lookup fiber
		 * must not outlive @c, which is on our stack.
		 */
		int64_t d = fiber_set_deadline(c->r, IOU_DEADLINE_NEVER);

		fiber_cancel(f);
		fiber_join(f, NULL);
		fiber_set_deadline(c->r, d);
		return c->q ? 0 : ret;
	}
	return c->ret;
}

static int check_reactor(struct reactor *r)
{
	if (!r)
		return -EINVAL;
	if (r != reactor_current())
		return -EPERM;
	return 0;
}

/*
 * Whether to pass on c-ares's node @n for a lookup of @family: c-ares 1.18
 * takes every A and AAAA record of an answer, whatever was asked, so an
 * answer to an AAAA query that holds A records (found by fuzz/) would give
 * IPv4 addresses to a caller who asked for IPv6 only.
 */
static bool wanted(const struct ares_addrinfo_node *n, int family)
{
	if (n->ai_family != AF_INET && n->ai_family != AF_INET6)
		return false;
	return family == AF_UNSPEC || n->ai_family == family;
}

/* One allocation holding the whole list, so that one free() releases it. */
static int convert(const struct ares_addrinfo *ai, int family, bool canon, struct addrinfo **out)
{
	const struct ares_addrinfo_node *n;
	const char *cname = NULL;
	size_t count = 0, size, clen = 0;
	struct addrinfo *list, *prev = NULL;
	char *p;

	for (n = ai->nodes; n; n = n->ai_next)
		count += wanted(n, family);
	if (count == 0)
		return IOU_EDNS_NODATA;
	if (canon) {
		cname = ai->name;
		for (const struct ares_addrinfo_cname *c = ai->cnames; c; c = c->next)
			if (c->name)
				cname = c->name;
		clen = cname ? strlen(cname) + 1 : 0;
	}
	size = count * (sizeof(struct addrinfo) + sizeof(struct sockaddr_storage)) + clen;
	list = calloc(1, size);
	if (!list)
		return -ENOMEM;
	p = (char *)(list + count);
	n = ai->nodes;
	for (size_t i = 0; i < count; i++, n = n->ai_next) {
		struct addrinfo *a = &list[i];
		socklen_t len;

		while (!wanted(n, family))
			n = n->ai_next;
		len = n->ai_addrlen;

		if (len > sizeof(struct sockaddr_storage))
			len = sizeof(struct sockaddr_storage);
		a->ai_flags = 0;
		a->ai_family = n->ai_family;
		a->ai_socktype = n->ai_socktype;
		a->ai_protocol = n->ai_protocol;
		a->ai_addrlen = len;
		a->ai_addr = (struct sockaddr *)p;
		memcpy(p, n->ai_addr, len);
		p += sizeof(struct sockaddr_storage);
		if (prev)
			prev->ai_next = a;
		prev = a;
	}
	if (clen) {
		memcpy(p, cname, clen);
		list[0].ai_canonname = p;
	}
	*out = list;
	return 0;
}

/* A port: 1 to 65535 in decimal digits only. */
static bool port_valid(const char *s, size_t n)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	return v >= 1 && v <= 65535;
}

static bool addr_valid(int family, const char *s, size_t n)
{
	char buf[INET6_ADDRSTRLEN];
	unsigned char bin[sizeof(struct in6_addr)];

	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(family, buf, bin) == 1;
}

/*
 * c-ares 1.18's parser accepts malformed lists ("[::1", "host:99999"): check
 * each entry ourselves.  Forms: V4, V4:PORT, V6, [V6], [V6]:PORT.
 */
static bool servers_valid(const char *list)
{
	while (*list) {
		size_t n = strcspn(list, ",");
		const char *s = list, *colon;

		if (n == 0)
			return false;
		if (s[0] == '[') {
			const char *close = memchr(s, ']', n);

			if (!close || !addr_valid(AF_INET6, s + 1, (size_t)(close - s - 1)))
				return false;
			if (close + 1 != s + n &&
			    (close[1] != ':' || !port_valid(close + 2, (size_t)(s + n - close - 2))))
				return false;
		} else if ((colon = memchr(s, ':', n)) && memchr(colon + 1, ':', (size_t)(s + n - colon - 1))) {
			if (!addr_valid(AF_INET6, s, n))
				return false;
		} else if (colon) {
			if (!addr_valid(AF_INET, s, (size_t)(colon - s)) ||
			    !port_valid(colon + 1, (size_t)(s + n - colon - 1)))
				return false;
		} else if (!addr_valid(AF_INET, s, n)) {
			return false;
		}
		list += n;
		if (*list == ',' && *++list == '\0')
			return false;
	}
	return true;
}

API void iou_dns_options_init(struct iou_dns_options *opts)
{
	if (!opts)
		return;
	memset(opts, 0, sizeof(*opts));
	opts->search = true;
	opts->hosts_file = true;
}

API int iou_dns_configure(struct reactor *r, const struct iou_dns_options *opts)
{
	struct engine *e;
	char *servers = NULL;
	int ret = check_reactor(r);

	if (ret < 0)
		return ret;
	if (!opts)
		return -EINVAL;
	ret = engine_get(r, &e);
	if (ret < 0 && ret != IOU_EDNS_CONFIG)
		return ret;
	e = reactor_ext_get(r, &slot_key);
	if (!e)
		return ret;
	/* Queries given up on only wait for c-ares: closing ends them. */
	if (e->inflight > e->abandoned || e->queue_head)
		return -EBUSY;
	if (opts->servers && !servers_valid(opts->servers))
		return IOU_EDNS_CONFIG;
	if (opts->servers) {
		servers = strdup(opts->servers);
		if (!servers)
			return -ENOMEM;
	}
	channel_close(e);
	free(e->servers);
	e->servers = servers;
	e->opts = *opts;
	e->opts.servers = servers;
	ret = channel_open(e);
	if (ret < 0) {
		/* Leave the defaults in place for the next lookup. */
		free(e->servers);
		e->servers = NULL;
		iou_dns_options_init(&e->opts);
	}
	return ret;
}

API int iou_dns_lookup(struct reactor *r, const char *name, const char *service,
		       const struct addrinfo *hints, struct addrinfo **out)
{
	struct call c = { .r = r, .kind = REQ_FORWARD, .name = name, .service = service,
			  .hints = hints };
	int ret = check_reactor(r);

	if (ret < 0)
		return ret;
	if (!name || !out)
		return -EINVAL;
	*out = NULL;
	/* c-ares 1.18 would say ARES_ENOTIMP, as if a server had. */
	if (hints && hints->ai_family != AF_UNSPEC && hints->ai_family != AF_INET &&
	    hints->ai_family != AF_INET6)
		return -EAFNOSUPPORT;
	if (service && service[0] >= '0' && service[0] <= '9' &&
	    strspn(service, "0123456789") == strlen(service) &&
	    !port_valid(service, strlen(service)) && strcmp(service, "0") != 0)
		return IOU_EDNS_BADSERVICE;
	ret = run(&c);
	if (ret < 0)
		return ret;
	ret = convert(c.q->ai, hints ? hints->ai_family : AF_UNSPEC,
		      hints && (hints->ai_flags & AI_CANONNAME), out);
	ares_freeaddrinfo(c.q->ai);
	free(c.q);
	return ret;
}

API void iou_dns_freeaddrinfo(struct addrinfo *list)
{
	free(list);
}

API int iou_dns_reverse(struct reactor *r, const struct sockaddr *addr, socklen_t addrlen,
			char *name, size_t len)
{
	struct call c = { .r = r, .kind = REQ_REVERSE, .addr = addr, .addrlen = addrlen };
	size_t n;
	int ret = check_reactor(r);

	if (ret < 0)
		return ret;
	if (!addr || !name || len == 0)
		return -EINVAL;
	if (addr->sa_family == AF_INET) {
		if (addrlen < sizeof(struct sockaddr_in))
			return -EINVAL;
	} else if (addr->sa_family == AF_INET6) {
		if (addrlen < sizeof(struct sockaddr_in6))
			return -EINVAL;
	} else {
		return -EAFNOSUPPORT;
	}
	ret = run(&c);
	if (ret < 0)
		return ret;
	n = strlen(c.q->name);
	while (n > 0 && c.q->name[n - 1] == '.')
		n--;
	if (n + 1 > len) {
		ret = -ENOSPC;
	} else {
		memcpy(name, c.q->name, n);
		name[n] = '\0';
	}
	free(c.q->name);
	free(c.q);
	return ret;
}

API int iou_dns_close(struct reactor *r)
{
	struct engine *e;
	int ret = check_reactor(r);

	if (ret < 0)
		return ret;
	e = reactor_ext_get(r, &slot_key);
	if (e) {
		channel_close(e);
		/* The next lookup's resolver has the defaults, as documented. */
		free(e->servers);
		e->servers = NULL;
		iou_dns_options_init(&e->opts);
	}
	return 0;
}
