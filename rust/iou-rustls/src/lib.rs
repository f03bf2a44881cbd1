// SPDX-License-Identifier: MIT
//
// iou_rustls: the C ABI of iou_rustls.h over rustls 0.20.  This file owns
// the extern "C" functions and the connection object: ciphertext fed in and
// taken out through memory buffers, plaintext read and written, sticky
// errors, and the negotiated parameters.  config.rs builds configurations,
// error.rs maps rustls's errors to codes, subject.rs reads certificate
// subjects.
//
// Nothing may panic across the C boundary (the crate is built with
// panic = "abort" anyway): every pointer is checked, nothing indexes with
// a value a caller or peer controls, and every rustls failure becomes a
// code plus a reason.

#![deny(unsafe_op_in_unsafe_fn)]
// The C names of the opaque types.
#![allow(non_camel_case_types)]
// The safety contract of every extern fn is its documentation in iou_rustls.h.
#![allow(clippy::missing_safety_doc)]

mod config;
mod error;
mod subject;

use std::ffi::CStr;
use std::io::{self, Read, Write};
use std::os::raw::{c_char, c_int, c_long};
use std::ptr;

use rustls::{ClientConnection, Connection, ProtocolVersion, ServerConnection, ServerName};

use crate::error::*;

/// rustls 0.20 refuses read_tls once more than this much plaintext waits
/// to be read (conn.rs, DEFAULT_RECEIVED_PLAINTEXT_LIMIT).
const RECEIVED_PLAINTEXT_LIMIT: usize = 16 * 1024;

/// The fatal alert the shim queues itself when rustls gives up on input
/// that is not TLS at all and queues nothing (see iour_conn::fail_rustls):
/// a plaintext record (type 21, version 3.3, length 2) holding a fatal (2)
/// decode_error (50).
const DECODE_ERROR_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 50];

const TRUNCATED_REASON: &str = "peer closed the connection without close_notify";
const HANDSHAKE_EOF_REASON: &str = "peer closed the connection during the handshake";
const HANDSHAKE_CLOSE_REASON: &str = "peer sent close_notify during the handshake";

pub struct iour_client_config(config::Client);
pub struct iour_server_config(config::Server);

/// A connection and what the shim keeps beside rustls.
pub struct iour_conn {
    tls: Connection,
    /// The sticky error: 0, or the IOUR_E_* code every later feed, read and
    /// write returns.
    err: c_int,
    /// Text of the last failure (sticky or not), for iour_conn_reason.
    reason: String,
    /// Bytes the shim itself queued for the peer (an alert), sent after
    /// whatever rustls has pending; `extra_off` of them are taken.
    extra: Vec<u8>,
    extra_off: usize,
    /// EOF was fed; `eof_told` once rustls knows (it cannot be told while
    /// its plaintext buffer is over the limit).
    eof: bool,
    eof_told: bool,
    /// close_notify was queued: writes fail with IOUR_E_CLOSED.
    closed: bool,
}

/// Borrow C memory as a slice; None if it is NULL with a length.
unsafe fn slice<'a>(p: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        Some(&[])
    } else if p.is_null() || len > isize::MAX as usize {
        None
    } else {
        // SAFETY: the caller passes len readable bytes at p.
        Some(unsafe { std::slice::from_raw_parts(p, len) })
    }
}

unsafe fn slice_mut<'a>(p: *mut u8, len: usize) -> Option<&'a mut [u8]> {
    if len == 0 {
        Some(&mut [])
    } else if p.is_null() || len > isize::MAX as usize {
        None
    } else {
        // SAFETY: the caller passes len writable bytes at p.
        Some(unsafe { std::slice::from_raw_parts_mut(p, len) })
    }
}

/// snprintf-like output: copy what fits of `s` into buf (len bytes, NUL
/// included), and return the full length.
unsafe fn put(s: &[u8], buf: *mut c_char, len: usize) -> c_int {
    if !buf.is_null() && len > 0 {
        let n = s.len().min(len - 1);
        // SAFETY: buf has len >= n + 1 writable bytes.
        unsafe {
            ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    s.len().min(c_int::MAX as usize) as c_int
}

/// Report `f` through the optional why buffer; return its code.
unsafe fn fail_why(f: Fail, why: *mut c_char, why_len: usize) -> c_int {
    // SAFETY: forwarded from the caller's contract.
    unsafe { put(f.reason.as_bytes(), why, why_len) };
    f.code
}

fn clamp_len(len: usize) -> usize {
    len.min(c_long::MAX as usize)
}

impl iour_conn {
    fn new(tls: Connection) -> Self {
        iour_conn {
            tls,
            err: 0,
            reason: String::new(),
            extra: Vec::new(),
            extra_off: 0,
            eof: false,
            eof_told: false,
            closed: false,
        }
    }

    /// Make `code` sticky with `reason`; return the code.
    fn fail(&mut self, code: c_int, reason: &str) -> c_int {
        self.err = code;
        self.reason.clear();
        self.reason.push_str(reason);
        code
    }

    /// A rustls error from processing input: sticky.  rustls queues the
    /// right alert for nearly every failure, but not when the record layer
    /// itself cannot make sense of the bytes (CorruptMessage: not TLS at
    /// all); then, if no keys are in use yet (no version negotiated), the
    /// shim queues a plaintext decode_error alert, so that a peer speaking
    /// something else learns why the connection ends.
    fn fail_rustls(&mut self, e: &rustls::Error) -> c_int {
        if *e == rustls::Error::CorruptMessage && self.tls.protocol_version().is_none() {
            self.extra.extend_from_slice(&DECODE_ERROR_ALERT);
        }
        let f = from_rustls(e);
        self.fail(f.code, &f.reason)
    }

    /// Pass a fed EOF on to rustls, which refuses (read_tls errors) while
    /// over its plaintext limit: then this is tried again by later calls.
    fn tell_eof(&mut self) {
        if self.eof && !self.eof_told {
            let mut empty: &[u8] = &[];
            if let Ok(0) = self.tls.read_tls(&mut empty) {
                self.eof_told = true;
            }
        }
    }

    fn feed(&mut self, data: &[u8]) -> c_long {
        if self.err != 0 {
            return self.err.into();
        }
        if data.is_empty() {
            self.eof = true;
            self.tell_eof();
            if self.tls.is_handshaking() {
                return self.fail(E_TRUNCATED, HANDSHAKE_EOF_REASON).into();
            }
            return 0;
        }
        // The plaintext waiting now (process_new_packets is cheap when
        // nothing new has arrived).
        let mut plaintext = match self.tls.process_new_packets() {
            Ok(io) => io.plaintext_bytes_to_read(),
            Err(e) => return self.fail_rustls(&e).into(),
        };
        let data = &data[..clamp_len(data.len())];
        let mut used = 0usize;
        while used < data.len() {
            // Back-pressure: rustls would refuse this chunk.
            if plaintext > RECEIVED_PLAINTEXT_LIMIT {
                break;
            }
            let mut rest = data.get(used..).unwrap_or(&[]);
            match self.tls.read_tls(&mut rest) {
                // Cannot happen with bytes left (it would mean EOF to
                // rustls); stop rather than loop.
                Ok(0) => break,
                Ok(n) => used += n,
                Err(e) => {
                    // "received plaintext buffer full" is back-pressure;
                    // anything else (the deframer full, which processing
                    // every chunk prevents) is the shim's own fault.
                    if self.tls.plaintext_pending() {
                        break;
                    }
                    let reason = format!("rustls refused ciphertext: {}", e);
                    return self.fail(E_INTERNAL, &reason).into();
                }
            }
            match self.tls.process_new_packets() {
                Ok(io) => {
                    plaintext = io.plaintext_bytes_to_read();
                    // rustls takes this as a clean end of stream and then
                    // waits for nothing: the handshake could never finish.
                    if io.peer_has_closed() && self.tls.is_handshaking() {
                        return self.fail(E_ALERT, HANDSHAKE_CLOSE_REASON).into();
                    }
                }
                Err(e) => return self.fail_rustls(&e).into(),
            }
        }
        used as c_long
    }

    fn take(&mut self, out: &mut [u8]) -> c_long {
        let out_len = clamp_len(out.len());
        let mut n = 0usize;
        while n < out_len && self.tls.wants_write() {
            let mut window = match out.get_mut(n..out_len) {
                Some(w) => w,
                None => break,
            };
            match self.tls.write_tls(&mut window) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        if n < out_len && !self.tls.wants_write() {
            let pending = self.extra.get(self.extra_off..).unwrap_or(&[]);
            let k = pending.len().min(out_len - n);
            if let (Some(dst), Some(src)) = (out.get_mut(n..n + k), pending.get(..k)) {
                dst.copy_from_slice(src);
                self.extra_off += k;
                n += k;
            }
        }
        n as c_long
    }

    fn wants_write(&self) -> bool {
        self.tls.wants_write() || self.extra_off < self.extra.len()
    }

    fn read(&mut self, out: &mut [u8]) -> c_long {
        if out.is_empty() {
            return 0;
        }
        self.tell_eof();
        let len = clamp_len(out.len());
        let out = match out.get_mut(..len) {
            Some(o) => o,
            None => return E_INTERNAL.into(),
        };
        // Plaintext that arrived before a failure is still delivered.
        match self.tls.reader().read(out) {
            Ok(n) if n > 0 => n as c_long,
            _ if self.err != 0 => self.err.into(),
            Ok(_) => 0,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => AGAIN.into(),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                // Not sticky: writing may still make sense to a peer that
                // only shut down its sending side.
                let reason = if self.tls.is_handshaking() {
                    HANDSHAKE_EOF_REASON
                } else {
                    TRUNCATED_REASON
                };
                self.reason.clear();
                self.reason.push_str(reason);
                E_TRUNCATED.into()
            }
            Err(e) => {
                let reason = format!("reading plaintext: {}", e);
                self.fail(E_INTERNAL, &reason).into()
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> c_long {
        if self.err != 0 {
            return self.err.into();
        }
        if self.closed {
            self.reason.clear();
            self.reason.push_str("write after close_notify");
            return E_CLOSED.into();
        }
        let data = &data[..clamp_len(data.len())];
        match self.tls.writer().write(data) {
            Ok(n) => n as c_long,
            Err(e) => {
                let reason = format!("writing plaintext: {}", e);
                self.fail(E_INTERNAL, &reason).into()
            }
        }
    }
}

/// What the Connection enum lacks in rustls 0.20.
trait PlaintextPending {
    fn plaintext_pending(&mut self) -> bool;
}

impl PlaintextPending for Connection {
    /// True if plaintext waits to be read.  Asked only after read_tls
    /// failed, so process_new_packets has nothing new to do here.
    fn plaintext_pending(&mut self) -> bool {
        match self.process_new_packets() {
            Ok(io) => io.plaintext_bytes_to_read() > 0,
            Err(_) => false,
        }
    }
}

// ---- configurations --------------------------------------------------------

#[no_mangle]
pub unsafe extern "C" fn iour_client_config_new(
    roots_pem: *const u8,
    roots_len: usize,
    cert_pem: *const u8,
    cert_len: usize,
    key_pem: *const u8,
    key_len: usize,
    alpn: *const u8,
    alpn_len: usize,
    flags: u32,
    out: *mut *mut iour_client_config,
    why: *mut c_char,
    why_len: usize,
) -> c_int {
    // SAFETY (all blocks of this function): the C caller's contract.
    unsafe {
        if out.is_null() {
            return fail_why(Fail::new(E_INTERNAL, "NULL out pointer"), why, why_len);
        }
        *out = ptr::null_mut();
        let (roots, cert, key, alpn) = match (
            slice(roots_pem, roots_len),
            slice(cert_pem, cert_len),
            slice(key_pem, key_len),
            slice(alpn, alpn_len),
        ) {
            (Some(r), Some(c), Some(k), Some(a)) => (r, c, k, a),
            _ => {
                return fail_why(
                    Fail::new(E_INTERNAL, "NULL buffer with a length"),
                    why,
                    why_len,
                )
            }
        };
        match config::client(roots, cert, key, alpn, flags) {
            Ok(c) => {
                *out = Box::into_raw(Box::new(iour_client_config(c)));
                0
            }
            Err(f) => fail_why(f, why, why_len),
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_client_config_free(c: *mut iour_client_config) {
    if !c.is_null() {
        // SAFETY: c came from iour_client_config_new and is freed once.
        drop(unsafe { Box::from_raw(c) });
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_server_config_new(
    chain_pem: *const u8,
    chain_len: usize,
    key_pem: *const u8,
    key_len: usize,
    client_roots_pem: *const u8,
    client_roots_len: usize,
    alpn: *const u8,
    alpn_len: usize,
    flags: u32,
    out: *mut *mut iour_server_config,
    why: *mut c_char,
    why_len: usize,
) -> c_int {
    // SAFETY (all blocks of this function): the C caller's contract.
    unsafe {
        if out.is_null() {
            return fail_why(Fail::new(E_INTERNAL, "NULL out pointer"), why, why_len);
        }
        *out = ptr::null_mut();
        let (chain, key, roots, alpn) = match (
            slice(chain_pem, chain_len),
            slice(key_pem, key_len),
            slice(client_roots_pem, client_roots_len),
            slice(alpn, alpn_len),
        ) {
            (Some(c), Some(k), Some(r), Some(a)) => (c, k, r, a),
            _ => {
                return fail_why(
                    Fail::new(E_INTERNAL, "NULL buffer with a length"),
                    why,
                    why_len,
                )
            }
        };
        match config::server(chain, key, roots, alpn, flags) {
            Ok(c) => {
                *out = Box::into_raw(Box::new(iour_server_config(c)));
                0
            }
            Err(f) => fail_why(f, why, why_len),
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_server_config_free(c: *mut iour_server_config) {
    if !c.is_null() {
        // SAFETY: c came from iour_server_config_new and is freed once.
        drop(unsafe { Box::from_raw(c) });
    }
}

// ---- connections -----------------------------------------------------------

/// The server name for a client connection.  rustls 0.20 parses IP
/// addresses but webpki 0.22 cannot verify a certificate for one: refused
/// unless nothing is verified.
fn server_name(name: &CStr, insecure: bool) -> Result<ServerName, Fail> {
    let s = name
        .to_str()
        .map_err(|_| Fail::new(E_BAD_NAME, "server name is not valid UTF-8"))?;
    if s.is_empty() {
        return Err(Fail::new(E_BAD_NAME, "empty server name"));
    }
    let parsed = ServerName::try_from(s)
        .map_err(|_| Fail::new(E_BAD_NAME, format!("invalid server name {:?}", s)))?;
    if let ServerName::IpAddress(_) = parsed {
        if !insecure {
            return Err(Fail::new(
                E_BAD_NAME,
                format!(
                    "server name {:?} is an IP address: certificates can only be verified for DNS names",
                    s
                ),
            ));
        }
    }
    Ok(parsed)
}

#[no_mangle]
pub unsafe extern "C" fn iour_client_conn_new(
    c: *const iour_client_config,
    server_name_c: *const c_char,
    out: *mut *mut iour_conn,
    why: *mut c_char,
    why_len: usize,
) -> c_int {
    // SAFETY (all blocks of this function): the C caller's contract.
    unsafe {
        if out.is_null() || c.is_null() {
            return fail_why(Fail::new(E_INTERNAL, "NULL argument"), why, why_len);
        }
        *out = ptr::null_mut();
        if server_name_c.is_null() {
            return fail_why(Fail::new(E_BAD_NAME, "no server name"), why, why_len);
        }
        let cfg = &(*c).0;
        let name = match server_name(CStr::from_ptr(server_name_c), cfg.insecure) {
            Ok(n) => n,
            Err(f) => return fail_why(f, why, why_len),
        };
        match ClientConnection::new(cfg.config.clone(), name) {
            Ok(conn) => {
                *out = Box::into_raw(Box::new(iour_conn::new(Connection::Client(conn))));
                0
            }
            Err(e) => fail_why(from_rustls(&e), why, why_len),
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_server_conn_new(
    c: *const iour_server_config,
    out: *mut *mut iour_conn,
    why: *mut c_char,
    why_len: usize,
) -> c_int {
    // SAFETY (all blocks of this function): the C caller's contract.
    unsafe {
        if out.is_null() || c.is_null() {
            return fail_why(Fail::new(E_INTERNAL, "NULL argument"), why, why_len);
        }
        *out = ptr::null_mut();
        match ServerConnection::new((*c).0.config.clone()) {
            Ok(conn) => {
                *out = Box::into_raw(Box::new(iour_conn::new(Connection::Server(conn))));
                0
            }
            Err(e) => fail_why(from_rustls(&e), why, why_len),
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_free(c: *mut iour_conn) {
    if !c.is_null() {
        // SAFETY: c came from iour_*_conn_new and is freed once.
        drop(unsafe { Box::from_raw(c) });
    }
}

/// The connection behind a C pointer, or None if NULL.
unsafe fn conn<'a>(c: *mut iour_conn) -> Option<&'a mut iour_conn> {
    // SAFETY: a non-NULL c is a live connection used by one thread.
    unsafe { c.as_mut() }
}

unsafe fn conn_ref<'a>(c: *const iour_conn) -> Option<&'a iour_conn> {
    // SAFETY: as conn().
    unsafe { c.as_ref() }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_feed(c: *mut iour_conn, buf: *const u8, len: usize) -> c_long {
    // SAFETY: the C caller's contract.
    match unsafe { (conn(c), slice(buf, len)) } {
        (Some(c), Some(data)) => c.feed(data),
        _ => E_INTERNAL.into(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_take(c: *mut iour_conn, buf: *mut u8, len: usize) -> c_long {
    // SAFETY: the C caller's contract.
    match unsafe { (conn(c), slice_mut(buf, len)) } {
        (Some(c), Some(out)) => c.take(out),
        _ => E_INTERNAL.into(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_wants_write(c: *const iour_conn) -> c_int {
    // SAFETY: the C caller's contract.
    match unsafe { conn_ref(c) } {
        Some(c) => c.wants_write().into(),
        None => 0,
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_wants_read(c: *const iour_conn) -> c_int {
    // SAFETY: the C caller's contract.
    match unsafe { conn_ref(c) } {
        Some(c) => (c.err == 0 && !c.eof && c.tls.wants_read()).into(),
        None => 0,
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_is_handshaking(c: *const iour_conn) -> c_int {
    // SAFETY: the C caller's contract.
    match unsafe { conn_ref(c) } {
        Some(c) => c.tls.is_handshaking().into(),
        None => 0,
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_read(c: *mut iour_conn, buf: *mut u8, len: usize) -> c_long {
    // SAFETY: the C caller's contract.
    match unsafe { (conn(c), slice_mut(buf, len)) } {
        (Some(c), Some(out)) => c.read(out),
        _ => E_INTERNAL.into(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_write(c: *mut iour_conn, buf: *const u8, len: usize) -> c_long {
    // SAFETY: the C caller's contract.
    match unsafe { (conn(c), slice(buf, len)) } {
        (Some(c), Some(data)) => c.write(data),
        _ => E_INTERNAL.into(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_close_notify(c: *mut iour_conn) {
    // SAFETY: the C caller's contract.
    if let Some(c) = unsafe { conn(c) } {
        // Once only; and never after a fatal alert.
        if !c.closed && c.err == 0 {
            c.tls.send_close_notify();
        }
        c.closed = true;
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_protocol_version(c: *const iour_conn) -> c_int {
    // SAFETY: the C caller's contract.
    match unsafe { conn_ref(c) }.and_then(|c| c.tls.protocol_version()) {
        Some(ProtocolVersion::TLSv1_2) => 0x0303,
        Some(ProtocolVersion::TLSv1_3) => 0x0304,
        Some(v) => c_int::from(v.get_u16()),
        None => 0,
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_cipher_suite(
    c: *const iour_conn,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    // SAFETY: the C caller's contract.
    unsafe {
        let name = conn_ref(c)
            .and_then(|c| c.tls.negotiated_cipher_suite())
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        put(name.as_bytes(), buf, len)
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_alpn(
    c: *const iour_conn,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    // SAFETY: the C caller's contract.
    unsafe {
        let proto = conn_ref(c)
            .and_then(|c| c.tls.alpn_protocol())
            .unwrap_or(&[]);
        put(proto, buf, len)
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_peer_subject(
    c: *const iour_conn,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    // SAFETY: the C caller's contract.
    unsafe {
        let leaf = conn_ref(c)
            .and_then(|c| c.tls.peer_certificates())
            .and_then(|certs| certs.first());
        match leaf {
            None => put(b"", buf, len),
            Some(cert) => match subject::rfc4514(&cert.0) {
                Some(s) => put(s.as_bytes(), buf, len),
                None => {
                    put(b"", buf, len);
                    E_CERT_INVALID
                }
            },
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn iour_conn_reason(
    c: *const iour_conn,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    // SAFETY: the C caller's contract.
    unsafe {
        let reason = conn_ref(c).map(|c| c.reason.as_str()).unwrap_or("");
        put(reason.as_bytes(), buf, len)
    }
}
