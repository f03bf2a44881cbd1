/* SPDX-License-Identifier: MIT */
/*
 * Errors.  Every call returns -errno on failure; the add-on libraries
 * return codes from reserved ranges beyond any errno value, so that one
 * int carries either kind and iou_strerror() names them all:
 *
 *   -1 ... -4095         -errno (Linux's errno values)
 *   -10001 ... -10999    DNS (libioucontext-dns): IOU_EDNS_*
 *   -11001 ... -11999    TLS (libioucontext-tls): reserved
 */
#ifndef IOUCONTEXT_ERROR_H
#define IOUCONTEXT_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/** DNS errors (see <ioucontext/dns.h>). */
enum iou_dns_error {
	IOU_EDNS_NONAME = -10001,      /**< no such name (NXDOMAIN) */
	IOU_EDNS_NODATA = -10002,      /**< the name has no record of the kind asked */
	IOU_EDNS_SERVFAIL = -10003,    /**< the server failed (SERVFAIL) */
	IOU_EDNS_REFUSED = -10004,     /**< the server refused the query */
	IOU_EDNS_TIMEOUT = -10005,     /**< no server answered (all tries timed out) */
	IOU_EDNS_BADRESP = -10006,     /**< a malformed or truncated response */
	IOU_EDNS_CANCELLED = -10007,   /**< the resolver was closed or its reactor destroyed */
	IOU_EDNS_FORMERR = -10008,     /**< the server could not parse the query */
	IOU_EDNS_NOTIMP = -10009,      /**< the server does not implement the query */
	IOU_EDNS_BADNAME = -10010,     /**< the name is not a valid domain name */
	IOU_EDNS_CONNREFUSED = -10011, /**< no server could be contacted (all refused) */
	IOU_EDNS_BADSERVICE = -10012,  /**< unknown service name */
	IOU_EDNS_CONFIG = -10013,      /**< bad resolver configuration (e.g. server list) */
};

/** True if @err is in the DNS range. */
#define IOU_IS_EDNS(err) ((err) <= -10001 && (err) >= -10999)

/**
 * iou_strerror() - a static, thread-safe description of @err, which may be
 * 0, a -errno value, or a code of a reserved range ("Unknown error N" for
 * anything else).  The string must not be freed or modified.
 */
const char *iou_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif
