/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous DNS through c-ares (libioucontext-dns, pkg-config
 * "ioucontext-dns"; a program that needs no DNS never links c-ares).
 *
 * Each reactor has one resolver (a c-ares channel), created on its first
 * lookup with iou_dns_options_init() defaults -- /etc/resolv.conf and
 * /etc/hosts -- or by iou_dns_configure(); it is destroyed with the reactor
 * or by iou_dns_close().  c-ares never blocks the thread: its sockets are
 * watched with io_uring poll requests and its timeouts live in the
 * reactor's timer heap.  Any number of fibers may resolve at once; at most
 * IOU_DNS_MAX_INFLIGHT queries are handed to c-ares at a time, the others
 * wait their turn in order, so that a storm of lookups cannot starve the
 * other fibers.
 *
 * Lookups are fiber-blocking calls like every operation: bounded by the
 * caller's deadline (-ETIMEDOUT), interrupted by fiber_cancel()
 * (-ECANCELED); called outside a fiber, they drive the reactor until done.
 * Failures of the lookup itself are IOU_EDNS_* codes (<ioucontext/error.h>),
 * named by iou_strerror().
 */
#ifndef IOUCONTEXT_DNS_H
#define IOUCONTEXT_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <ioucontext/error.h>

#ifdef __cplusplus
extern "C" {
#endif

struct reactor;
struct addrinfo;

/** Queries handed to c-ares at once per reactor; more wait in FIFO order. */
#define IOU_DNS_MAX_INFLIGHT 256

/**
 * struct iou_dns_options - how to build a reactor's resolver.
 */
struct iou_dns_options {
	/**
	 * Servers to ask, a comma-separated list of ADDR or ADDR:PORT, IPv6
	 * in brackets when a port follows ("127.0.0.1:5353,[::1]:53");
	 * NULL: those of /etc/resolv.conf.
	 */
	const char *servers;
	bool search;	/**< apply resolv.conf's search domains (default true) */
	/**
	 * Consult /etc/hosts before DNS (default true).  c-ares 1.18 reads the
	 * file again for every lookup, which costs more than the query
	 * itself on a fast local server: turn it off for bulk resolving.
	 */
	bool hosts_file;
	int timeout_ms; /**< first try's timeout; 0: c-ares's default (5 s) */
	int tries;	/**< tries per server; 0: c-ares's default (4) */
};

/** iou_dns_options_init() - defaults: resolv.conf servers, search on, hosts file on. */
void iou_dns_options_init(struct iou_dns_options *opts);

/**
 * iou_dns_configure() - (re)create @r's resolver with @opts.
 *
 * Never suspends.  Return: 0; -EBUSY if lookups are in progress;
 * IOU_EDNS_CONFIG for a malformed server list; -ENOMEM; -EPERM from
 * another thread than @r's owner; -EINVAL if @r or @opts is NULL.
 */
int iou_dns_configure(struct reactor *r, const struct iou_dns_options *opts);

/**
 * iou_dns_lookup() - resolve @name to addresses, like getaddrinfo(3).
 * @name:    a host name (or a numeric address, returned as is).
 * @service: a port number or service name to put in the addresses, or NULL.
 * @hints:   ai_family (AF_UNSPEC: A and AAAA, AF_INET, AF_INET6),
 *           ai_socktype, ai_protocol, ai_flags (AI_CANONNAME,
 *           AI_NUMERICSERV); or NULL for AF_UNSPEC, any socket type.
 * @out:     receives the list, in the order of the answer; free it with
 *           iou_dns_freeaddrinfo() (one call).  With AI_CANONNAME, the
 *           first entry's ai_canonname is the name the chain ends at.
 *
 * Suspends the calling fiber (outside a fiber: drives the reactor).
 *
 * Return: 0; what the servers answered: IOU_EDNS_NONAME (NXDOMAIN),
 * IOU_EDNS_NODATA, IOU_EDNS_SERVFAIL, IOU_EDNS_REFUSED, IOU_EDNS_FORMERR,
 * IOU_EDNS_NOTIMP, IOU_EDNS_BADRESP (a malformed answer); or that none did:
 * IOU_EDNS_TIMEOUT, IOU_EDNS_CONNREFUSED; IOU_EDNS_BADNAME for a name that
 * is not a valid domain name; IOU_EDNS_BADSERVICE for an unknown @service
 * or a port out of range; IOU_EDNS_CANCELLED if the resolver was closed (or
 * the reactor destroyed) meanwhile; IOU_EDNS_CONFIG if the default resolver
 * could not be created from /etc/resolv.conf; -EAFNOSUPPORT for a
 * @hints->ai_family other than AF_UNSPEC, AF_INET and AF_INET6;
 * -ETIMEDOUT (the caller's deadline), -ECANCELED; -EINVAL for NULL @r,
 * @name or @out; -EPERM from another thread; -ENOMEM.
 */
int iou_dns_lookup(struct reactor *r, const char *name, const char *service,
		   const struct addrinfo *hints, struct addrinfo **out);

/** iou_dns_freeaddrinfo() - free a list from iou_dns_lookup() (NULL is fine). */
void iou_dns_freeaddrinfo(struct addrinfo *list);

/**
 * iou_dns_reverse() - the name of an address (PTR lookup; /etc/hosts first).
 * @addr, @addrlen: an AF_INET or AF_INET6 socket address.
 * @name:   receives the name, NUL-terminated, without a trailing dot.
 * @len:    room in @name (NI_MAXHOST is always enough).
 *
 * Suspends like iou_dns_lookup().  Return: 0; the IOU_EDNS_* codes of
 * iou_dns_lookup() but IOU_EDNS_BADSERVICE; -ENOSPC if the name does not
 * fit; -EAFNOSUPPORT for another family; -EINVAL for NULL arguments, a zero
 * @len or a short @addrlen; -ETIMEDOUT, -ECANCELED, -EPERM, -ENOMEM.
 */
int iou_dns_reverse(struct reactor *r, const struct sockaddr *addr, socklen_t addrlen,
		    char *name, size_t len);

/**
 * iou_dns_close() - destroy @r's resolver now.
 *
 * Lookups in progress end with IOU_EDNS_CANCELLED; no c-ares callback runs
 * afterwards.  The next lookup creates a new resolver with default options.
 * Never suspends.  Return: 0 (also if there was none); -EPERM from another
 * thread; -EINVAL if @r is NULL.
 */
int iou_dns_close(struct reactor *r);

#ifdef __cplusplus
}
#endif

#endif
