// SPDX-License-Identifier: MIT
//
// Result codes of the C ABI (the IOUR_* values of iou_rustls.h) and the
// mapping from rustls's errors to them, with the reason text kept beside
// the code.

use std::os::raw::c_int;

use rustls::{AlertDescription, Error};

pub const E_OTHER: c_int = -11001;
pub const E_CONFIG: c_int = -11002;
pub const E_CERT_UNKNOWN_ISSUER: c_int = -11003;
pub const E_CERT_BAD_NAME: c_int = -11004;
pub const E_CERT_EXPIRED: c_int = -11005;
pub const E_CERT_NOT_YET_VALID: c_int = -11006;
pub const E_CERT_INVALID: c_int = -11007;
pub const E_NO_CERT: c_int = -11008;
pub const E_ALERT: c_int = -11009;
pub const E_PROTOCOL: c_int = -11010;
pub const E_INCOMPATIBLE: c_int = -11011;
pub const E_NO_ALPN: c_int = -11012;
pub const E_TRUNCATED: c_int = -11013;
pub const E_CLOSED: c_int = -11014;
pub const E_BAD_NAME: c_int = -11015;
pub const E_INTERNAL: c_int = -11016;
pub const AGAIN: c_int = -11998;

/// A failure on its way to C: the code and the full reason.
#[derive(Debug)]
pub struct Fail {
    pub code: c_int,
    pub reason: String,
}

impl Fail {
    pub fn new(code: c_int, reason: impl Into<String>) -> Self {
        Fail {
            code,
            reason: reason.into(),
        }
    }
}

/// The prefix rustls 0.20 (verify.rs, pki_error) puts before webpki's error
/// name inside Error::InvalidCertificateData.
const PKI_PREFIX: &str = "invalid peer certificate: ";

/// Map a rustls error to its code and reason.
///
/// The reason is rustls's Display text, except for webpki's verdicts, where
/// rustls's Display would say "invalid peer certificate contents: invalid
/// peer certificate: UnknownIssuer": the inner text alone is kept.
///
/// A fatal no_application_protocol alert from the peer is IOUR_E_NO_ALPN
/// rather than IOUR_E_ALERT, so that a client learns the same code as the
/// server that refused it; every other received alert is IOUR_E_ALERT.
pub fn from_rustls(e: &Error) -> Fail {
    let code = match e {
        Error::InvalidCertificateData(s) => match s.strip_prefix(PKI_PREFIX) {
            Some("UnknownIssuer") => E_CERT_UNKNOWN_ISSUER,
            Some("CertNotValidForName") => E_CERT_BAD_NAME,
            Some("CertExpired") => E_CERT_EXPIRED,
            Some("CertNotValidYet") => E_CERT_NOT_YET_VALID,
            _ => E_CERT_INVALID,
        },
        Error::InvalidCertificateEncoding
        | Error::InvalidCertificateSignatureType
        | Error::InvalidCertificateSignature
        | Error::InvalidSct(_) => E_CERT_INVALID,
        Error::NoCertificatesPresented => E_NO_CERT,
        Error::UnsupportedNameType => E_BAD_NAME,
        Error::AlertReceived(AlertDescription::NoApplicationProtocol) => E_NO_ALPN,
        Error::AlertReceived(_) => E_ALERT,
        Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. }
        | Error::CorruptMessage
        | Error::CorruptMessagePayload(_)
        | Error::DecryptError
        | Error::PeerMisbehavedError(_)
        | Error::PeerSentOversizedRecord => E_PROTOCOL,
        Error::PeerIncompatibleError(_) => E_INCOMPATIBLE,
        Error::NoApplicationProtocol => E_NO_ALPN,
        _ => E_OTHER,
    };
    let reason = match e {
        Error::InvalidCertificateData(s) if s.starts_with(PKI_PREFIX) => s.clone(),
        _ => e.to_string(),
    };
    Fail { code, reason }
}
