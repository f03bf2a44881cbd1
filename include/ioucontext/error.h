/* SPDX-License-Identifier: MIT */
/*
 * Errors.  Every call returns -errno on failure; the add-on libraries
 * return codes from reserved ranges beyond any errno value, so that one
 * int carries either kind and iou_strerror() names them all:
 *
 *   -1 ... -4095         -errno (Linux's errno values)
 *   -10001 ... -10999    DNS (libioucontext-dns): IOU_EDNS_*
 *   -11001 ... -11999    TLS (libioucontext-tls): IOU_ETLS_*
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

/** TLS errors (see <ioucontext/tls.h>); iou_tls_reason() has the details. */
enum iou_tls_error {
	IOU_ETLS = -11001,		     /**< another TLS failure */
	IOU_ETLS_CONFIG = -11002,	     /**< bad PEM, missing certificate or key, bad ALPN */
	IOU_ETLS_CERT_UNKNOWN_ISSUER = -11003, /**< certificate not issued by a trusted CA */
	IOU_ETLS_CERT_BAD_NAME = -11004,     /**< certificate not valid for the server name */
	IOU_ETLS_CERT_EXPIRED = -11005,	     /**< certificate expired */
	IOU_ETLS_CERT_NOT_YET_VALID = -11006, /**< certificate not valid yet */
	IOU_ETLS_CERT_INVALID = -11007,	     /**< other certificate failure (encoding, signature, usage) */
	IOU_ETLS_NO_CERT = -11008,	     /**< the peer sent no certificate where one is required */
	IOU_ETLS_ALERT = -11009,	     /**< the peer sent a fatal alert */
	IOU_ETLS_PROTOCOL = -11010,	     /**< not TLS, or a corrupt or unexpected message */
	IOU_ETLS_INCOMPATIBLE = -11011,	     /**< no common protocol version, cipher suite or group */
	IOU_ETLS_NO_ALPN = -11012,	     /**< no application protocol (ALPN) in common */
	IOU_ETLS_TRUNCATED = -11013,	     /**< the peer closed the connection without close_notify */
	IOU_ETLS_CLOSED = -11014,	     /**< writing after iou_tls_shutdown() */
	IOU_ETLS_BAD_NAME = -11015,	     /**< server name unusable (empty, malformed, IP address) */
	IOU_ETLS_INTERNAL = -11016,	     /**< unexpected failure inside the TLS engine */
};

/** True if @err is in the TLS range. */
#define IOU_IS_ETLS(err) ((err) <= -11001 && (err) >= -11999)

/**
 * iou_strerror() - a description of @err, which may be 0, a -errno value,
 * or a code of a reserved range ("Unknown error N" for anything else).
 *
 * Any thread; never suspends.  The string must not be freed or modified.
 * For 0, a -errno value Linux names and a known IOU_EDNS_* or IOU_ETLS_*
 * code it is a constant that lives as long as the program.  For anything
 * else the "Unknown error N" text is built in a buffer of the calling
 * thread: it stays valid until the next iou_strerror() call in that thread
 * (from any fiber of it: copy the text before anything that may suspend)
 * or until the thread exits.
 */
const char *iou_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif
