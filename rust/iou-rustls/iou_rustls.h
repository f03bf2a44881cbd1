/* SPDX-License-Identifier: MIT */
/*
 * The C ABI of the in-tree rustls shim (rust/iou-rustls): configurations,
 * connections driven through memory buffers, plaintext in and out, and the
 * negotiated parameters.  Internal to libioucontext-tls; not installed.
 *
 * Conventions.  Every function that can fail returns a negative code whose
 * values equal the public IOU_ETLS_* codes of <ioucontext/error.h> (src/tls
 * checks that at compile time), or IOUR_AGAIN, which only means "feed more
 * ciphertext" and never reaches a user.  No function panics across this
 * boundary.  A `why` buffer, when given (may be NULL with why_len 0), gets
 * the full reason of a failure, NUL-terminated, truncated to fit.
 * Pointers passed in are only borrowed for the call.  A NULL object, or a
 * NULL buffer with a non-zero length, is refused with IOUR_E_INTERNAL (no
 * sticky error); a NULL buffer with length 0 is an empty one.
 *
 * Threads: configurations are immutable and shareable; a connection may
 * be used by one thread at a time.
 *
 * Reasons are rustls's texts, e.g. "received fatal alert: BadCertificate",
 * except that certificate verdicts read "invalid peer certificate: X" with
 * X webpki's name for it (UnknownIssuer, CertNotValidForName, CertExpired,
 * CertNotValidYet, CaUsedAsEndEntity, ...), and the shim's own reasons.
 */
#ifndef IOU_RUSTLS_H
#define IOU_RUSTLS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Result codes (same values as the public IOU_ETLS_*). */
#define IOUR_E_OTHER -11001		/* any other TLS failure */
#define IOUR_E_CONFIG -11002		/* bad PEM, no certificate or key, unusable key */
#define IOUR_E_CERT_UNKNOWN_ISSUER -11003 /* chain does not lead to a trusted root */
#define IOUR_E_CERT_BAD_NAME -11004	/* certificate not valid for the server name */
#define IOUR_E_CERT_EXPIRED -11005	/* certificate expired */
#define IOUR_E_CERT_NOT_YET_VALID -11006 /* certificate not valid yet */
#define IOUR_E_CERT_INVALID -11007	/* other certificate failure (encoding, signature, usage) */
#define IOUR_E_NO_CERT -11008		/* peer sent no certificate where one is required */
#define IOUR_E_ALERT -11009		/* peer sent a fatal alert (or close_notify mid-handshake) */
#define IOUR_E_PROTOCOL -11010		/* not TLS, corrupt/unexpected message, decrypt failure */
#define IOUR_E_INCOMPATIBLE -11011	/* no common version, cipher suite or group */
#define IOUR_E_NO_ALPN -11012		/* no application protocol in common (either side) */
#define IOUR_E_TRUNCATED -11013		/* peer closed the transport without close_notify */
#define IOUR_E_CLOSED -11014		/* writing after close_notify was queued */
#define IOUR_E_BAD_NAME -11015		/* server name unusable (empty, IP address, malformed) */
#define IOUR_E_INTERNAL -11016		/* unexpected failure inside the shim; NULL arguments */
#define IOUR_AGAIN -11998		/* no plaintext yet / buffers full: not an error */

/* Configuration flags. */
#define IOUR_INSECURE_NO_VERIFY (1u << 0) /* client: accept any server certificate */
#define IOUR_NO_RESUMPTION (1u << 1)	 /* no session cache / tickets: full handshakes */
#define IOUR_CLIENT_CERT_OPTIONAL (1u << 2) /* server with client roots: anonymous clients allowed */

/* Opaque; configurations are immutable and may be shared between threads. */
struct iour_client_config;
struct iour_server_config;
struct iour_conn;

/*
 * A client configuration.  roots_pem: CA certificates in PEM (certificates
 * webpki cannot parse are skipped; none usable is IOUR_E_CONFIG unless
 * IOUR_INSECURE_NO_VERIFY, which ignores roots_pem); cert_pem/key_pem:
 * optional client certificate chain and key (both or neither; the key must
 * belong to the first certificate); alpn: protocols in wire format (each
 * name preceded by its length byte), may be empty; an empty name or a list
 * cut short is IOUR_E_CONFIG.  TLS 1.2 and 1.3.  IOUR_NO_RESUMPTION: no
 * session cache, no tickets.
 * Return: 0 and *out (free with iour_client_config_free); IOUR_E_CONFIG;
 * IOUR_E_INTERNAL for NULL arguments.  *out is NULL on failure.
 */
int iour_client_config_new(const uint8_t *roots_pem, size_t roots_len,
			   const uint8_t *cert_pem, size_t cert_len,
			   const uint8_t *key_pem, size_t key_len,
			   const uint8_t *alpn, size_t alpn_len, uint32_t flags,
			   struct iour_client_config **out, char *why, size_t why_len);
void iour_client_config_free(struct iour_client_config *c);

/*
 * A server configuration: certificate chain (leaf first) and private key in
 * PEM (PKCS#8, PKCS#1 RSA or SEC1 EC: RSA 2048-4096 bits, ECDSA P-256 or
 * P-384, Ed25519; the first key in key_pem is used, other sections are
 * ignored); client_roots_pem: if given (length > 0), client certificates
 * are required (or optional with IOUR_CLIENT_CERT_OPTIONAL) and verified
 * against these CAs.  A key that does not belong to the leaf certificate is
 * refused here (IOUR_E_CONFIG), not at the first handshake, unless webpki
 * cannot parse the leaf (then rustls peers will refuse it anyway).
 * Return: as iour_client_config_new().
 */
int iour_server_config_new(const uint8_t *chain_pem, size_t chain_len,
			   const uint8_t *key_pem, size_t key_len,
			   const uint8_t *client_roots_pem, size_t client_roots_len,
			   const uint8_t *alpn, size_t alpn_len, uint32_t flags,
			   struct iour_server_config **out, char *why, size_t why_len);
void iour_server_config_free(struct iour_server_config *c);

/*
 * A connection; holds its own reference to the configuration (which may be
 * freed at once).  server_name: a DNS name (SNI and the certificate check);
 * NULL, empty, not UTF-8, not a valid name, or an IP address is
 * IOUR_E_BAD_NAME.  With IOUR_INSECURE_NO_VERIFY an IP address is accepted
 * (no SNI is sent; nothing is checked against it).
 * Return: 0 and *out (free with iour_conn_free); IOUR_E_BAD_NAME;
 * IOUR_E_INTERNAL for NULL arguments.
 */
int iour_client_conn_new(const struct iour_client_config *c, const char *server_name,
			 struct iour_conn **out, char *why, size_t why_len);
int iour_server_conn_new(const struct iour_server_config *c, struct iour_conn **out,
			 char *why, size_t why_len);
void iour_conn_free(struct iour_conn *c);

/*
 * Ciphertext in: feed up to len bytes received from the peer (len 0: the
 * peer closed the transport) and process every complete record.
 * Return: bytes consumed (< len, possibly 0, when rustls holds more than
 * 16 KiB of unread plaintext: read some, then feed the rest), or a negative
 * code.  An error is sticky, and an alert for the peer may then be pending
 * (iour_conn_wants_write).  Input that is not TLS at all gets a fatal
 * decode_error alert (queued by the shim: rustls 0.20 queues none).
 * len 0 after the handshake returns 0 (iour_conn_read then tells whether
 * the end was clean); during the handshake it returns IOUR_E_TRUNCATED
 * ("peer closed the connection during the handshake"), sticky.  A
 * close_notify received during the handshake is IOUR_E_ALERT, sticky.
 */
long iour_conn_feed(struct iour_conn *c, const uint8_t *buf, size_t len);

/* Ciphertext out: copy up to len pending bytes; return the count (0: none). */
long iour_conn_take(struct iour_conn *c, uint8_t *buf, size_t len);

/* 1: iour_conn_take has bytes (records, alerts, close_notify). */
int iour_conn_wants_write(const struct iour_conn *c);
/* 1: rustls wants ciphertext; 0 while plaintext waits to be read, during
 * the handshake while output is pending, after close_notify or EOF from the
 * peer, and after a sticky error. */
int iour_conn_wants_read(const struct iour_conn *c);
/* 1 until the handshake ends (it stays 1 if the handshake failed). */
int iour_conn_is_handshaking(const struct iour_conn *c);

/*
 * Plaintext out of the connection.  Return: bytes (> 0); 0 once the peer's
 * close_notify has been read and every byte before it returned (and 0 for
 * len 0); IOUR_AGAIN if no plaintext is buffered yet; IOUR_E_TRUNCATED if
 * the transport ended (fed EOF) without close_notify, after every byte
 * before it ("peer closed the connection without close_notify"; not
 * sticky: writing still works, the peer may only have shut down its
 * sending side) or during the handshake; or the connection's sticky error,
 * once the plaintext that arrived before it has been read.
 */
long iour_conn_read(struct iour_conn *c, uint8_t *buf, size_t len);

/*
 * Plaintext into the connection (encrypted into the pending output; before
 * the handshake ends, buffered and sent when it does).
 * Return: bytes accepted, possibly < len when the output buffer is full
 * (rustls buffers 64 KiB: take and send, then write the rest; 0 only if
 * len is 0 or 64 KiB are pending); IOUR_E_CLOSED after close_notify; or the
 * sticky error.
 */
long iour_conn_write(struct iour_conn *c, const uint8_t *buf, size_t len);

/* Queue a close_notify alert (once; none after a sticky error: a fatal
 * alert went instead); later writes fail with IOUR_E_CLOSED. */
void iour_conn_close_notify(struct iour_conn *c);

/* 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3); 0 before the handshake settles it. */
int iour_conn_protocol_version(const struct iour_conn *c);

/*
 * Strings about the connection, NUL-terminated into buf (truncated to fit).
 * Return: the full length (like snprintf), 0 when there is none.
 *   cipher_suite: e.g. "TLS13_AES_256_GCM_SHA384"
 *   alpn:         the negotiated protocol
 *   peer_subject: subject of the peer's end-entity certificate in RFC 4514
 *                 order and form ("CN=localhost,O=Example Ltd"); 0 if the
 *                 peer sent none; negative (IOUR_E_CERT_INVALID, buf set
 *                 to "") if it cannot be parsed.  Types CN, C, L, ST, O,
 *                 OU, STREET, DC, UID and emailAddress by name, their
 *                 string values as UTF-8 escaped as RFC 4514 says (control
 *                 characters as \XX too); other types as dotted OIDs, and
 *                 their values (or values that are not character strings)
 *                 as '#' and the hex of the DER encoding (RFC 4514, 2.4).
 *   reason:       full text of the connection's last failure, e.g.
 *                 "invalid peer certificate: UnknownIssuer"
 * The ALPN protocol is copied as the peer sent it (it may hold any byte).
 * A NULL connection gives 0.
 */
int iour_conn_cipher_suite(const struct iour_conn *c, char *buf, size_t len);
int iour_conn_alpn(const struct iour_conn *c, char *buf, size_t len);
int iour_conn_peer_subject(const struct iour_conn *c, char *buf, size_t len);
int iour_conn_reason(const struct iour_conn *c, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
