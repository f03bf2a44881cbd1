// SPDX-License-Identifier: MIT
//
// Client and server configurations from PEM and ALPN wire format: loading
// roots, chains and keys, checking that a key is usable and matches its
// certificate, and the verifier that accepts anything (only for
// IOUR_INSECURE_NO_VERIFY).

use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::{
    NoClientSessionStorage, ServerCertVerified, ServerCertVerifier, WebPkiVerifier,
};
use rustls::server::{
    AllowAnyAnonymousOrAuthenticatedClient, AllowAnyAuthenticatedClient, NoClientAuth,
    NoServerSessionStorage,
};
use rustls::sign::SigningKey;
use rustls::{
    Certificate, ClientConfig, PrivateKey, RootCertStore, ServerConfig, ServerName, SignatureScheme,
};
use rustls_pemfile::Item;

use crate::error::{Fail, E_CONFIG};

pub const INSECURE_NO_VERIFY: u32 = 1 << 0;
pub const NO_RESUMPTION: u32 = 1 << 1;
pub const CLIENT_CERT_OPTIONAL: u32 = 1 << 2;

/// What a struct iour_client_config is.
pub struct Client {
    pub config: Arc<ClientConfig>,
    /// Certificates are not verified: an IP address is then an acceptable
    /// server name (nothing will be checked against it anyway).
    pub insecure: bool,
}

/// What a struct iour_server_config is.
pub struct Server {
    pub config: Arc<ServerConfig>,
}

fn config_fail(reason: impl Into<String>) -> Fail {
    Fail::new(E_CONFIG, reason)
}

/// ALPN protocols from wire format (each name preceded by its length).
fn alpn_list(wire: &[u8]) -> Result<Vec<Vec<u8>>, Fail> {
    // The list travels in an extension with a 16-bit length.
    if wire.len() > 0xffff - 2 {
        return Err(config_fail("ALPN list longer than 65533 bytes"));
    }
    let mut out = Vec::new();
    let mut rest = wire;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if len == 0 {
            return Err(config_fail(format!(
                "ALPN list: empty protocol name at byte {}",
                wire.len() - rest.len()
            )));
        }
        match tail.get(..len) {
            Some(name) => out.push(name.to_vec()),
            None => {
                return Err(config_fail(format!(
                    "ALPN list truncated: name at byte {} needs {} bytes, {} left",
                    wire.len() - rest.len(),
                    len,
                    tail.len()
                )))
            }
        }
        rest = tail.get(len..).unwrap_or(&[]);
    }
    Ok(out)
}

/// Every certificate (DER) of a PEM text.
fn pem_certs(pem: &[u8], what: &str) -> Result<Vec<Vec<u8>>, Fail> {
    rustls_pemfile::certs(&mut &pem[..])
        .map_err(|e| config_fail(format!("{}: bad PEM: {}", what, e)))
}

/// A trust store from PEM; certificates webpki cannot use are skipped, but
/// at least one must be usable.
fn root_store(pem: &[u8], what: &str) -> Result<RootCertStore, Fail> {
    let ders = pem_certs(pem, what)?;
    let mut store = RootCertStore::empty();
    let (usable, unusable) = store.add_parsable_certificates(&ders);
    if usable == 0 {
        return Err(config_fail(if ders.is_empty() {
            format!("{}: no usable CA certificate (no certificate found)", what)
        } else {
            format!(
                "{}: no usable CA certificate ({} found, {} unusable)",
                what,
                ders.len(),
                unusable
            )
        }));
    }
    Ok(store)
}

/// A certificate chain, leaf first.
fn chain(pem: &[u8], what: &str) -> Result<Vec<Certificate>, Fail> {
    let ders = pem_certs(pem, what)?;
    if ders.is_empty() {
        return Err(config_fail(format!("{}: no certificate found", what)));
    }
    Ok(ders.into_iter().map(Certificate).collect())
}

/// The first private key of a PEM text: PKCS#8 ("PRIVATE KEY"), PKCS#1
/// ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"); other sections
/// (certificates, parameters) are ignored.  rustls 0.20.8 itself accepts
/// all three: it tries RSA as PKCS#1 then PKCS#8, and wraps a SEC1 key in
/// PKCS#8 for P-256 and P-384 (sign.rs).
fn private_key(pem: &[u8], what: &str) -> Result<(PrivateKey, Arc<dyn SigningKey>), Fail> {
    let items = rustls_pemfile::read_all(&mut &pem[..])
        .map_err(|e| config_fail(format!("{}: bad PEM: {}", what, e)))?;
    let der = items
        .into_iter()
        .find_map(|item| match item {
            Item::PKCS8Key(k) | Item::RSAKey(k) | Item::ECKey(k) => Some(k),
            _ => None,
        })
        .ok_or_else(|| config_fail(format!("{}: no private key found", what)))?;
    let key = PrivateKey(der);
    let signing = rustls::sign::any_supported_type(&key).map_err(|_| {
        config_fail(format!(
            "{}: unusable private key (not RSA 2048-4096 bits, ECDSA P-256/P-384 or Ed25519)",
            what
        ))
    })?;
    Ok((key, signing))
}

/// Check that `key` belongs to certificate `leaf` by signing a message and
/// verifying the signature with the certificate's public key: rustls only
/// notices a mismatch in the first handshake.  A certificate webpki cannot
/// parse is let through (rustls peers will refuse it anyway, others may
/// not).
fn check_key_matches(leaf: &[u8], key: &dyn SigningKey, what: &str) -> Result<(), Fail> {
    use SignatureScheme as S;
    let cert = match webpki::EndEntityCert::try_from(leaf) {
        Ok(cert) => cert,
        Err(_) => return Ok(()),
    };
    let offered = [
        S::ED25519,
        S::ECDSA_NISTP256_SHA256,
        S::ECDSA_NISTP384_SHA384,
        S::RSA_PSS_SHA256,
    ];
    let signer = match key.choose_scheme(&offered) {
        Some(signer) => signer,
        None => return Ok(()),
    };
    let alg: &webpki::SignatureAlgorithm = match signer.scheme() {
        S::ED25519 => &webpki::ED25519,
        S::ECDSA_NISTP256_SHA256 => &webpki::ECDSA_P256_SHA256,
        S::ECDSA_NISTP384_SHA384 => &webpki::ECDSA_P384_SHA384,
        S::RSA_PSS_SHA256 => &webpki::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        _ => return Ok(()),
    };
    let msg = b"ioucontext: does this private key match its certificate?";
    let sig = signer
        .sign(msg)
        .map_err(|e| config_fail(format!("{}: the private key cannot sign: {}", what, e)))?;
    match cert.verify_signature(alg, msg, &sig) {
        Ok(()) => Ok(()),
        Err(webpki::Error::InvalidSignatureForPublicKey)
        | Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKey) => Err(config_fail(
            format!("{}: the private key does not match the certificate", what),
        )),
        Err(_) => Ok(()),
    }
}

/// Chain and key, checked against each other.
fn cert_and_key(
    chain_pem: &[u8],
    key_pem: &[u8],
    chain_what: &str,
    key_what: &str,
) -> Result<(Vec<Certificate>, PrivateKey), Fail> {
    let certs = chain(chain_pem, chain_what)?;
    let (key, signing) = private_key(key_pem, key_what)?;
    if let Some(leaf) = certs.first() {
        check_key_matches(&leaf.0, signing.as_ref(), key_what)?;
    }
    Ok((certs, key))
}

/// Accepts every server certificate (IOUR_INSECURE_NO_VERIFY).  The
/// handshake signature is still checked against the certificate's key (the
/// trait's default methods), so the server must hold the key of whatever
/// certificate it shows.
struct NoVerify;

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &Certificate,
        _intermediates: &[Certificate],
        _server_name: &ServerName,
        _scts: &mut dyn Iterator<Item = &[u8]>,
        _ocsp_response: &[u8],
        _now: SystemTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
}

pub fn client(
    roots_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    alpn: &[u8],
    flags: u32,
) -> Result<Client, Fail> {
    let alpn = alpn_list(alpn)?;
    let insecure = flags & INSECURE_NO_VERIFY != 0;
    let verifier: Arc<dyn ServerCertVerifier> = if insecure {
        Arc::new(NoVerify)
    } else {
        Arc::new(WebPkiVerifier::new(
            root_store(roots_pem, "CA certificates")?,
            None,
        ))
    };
    let builder = ClientConfig::builder()
        .with_safe_defaults()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (cert_pem.is_empty(), key_pem.is_empty()) {
        (true, true) => builder.with_no_client_auth(),
        (false, false) => {
            let (certs, key) = cert_and_key(cert_pem, key_pem, "client certificate", "client key")?;
            builder
                .with_single_cert(certs, key)
                .map_err(|e| config_fail(format!("client certificate: {}", e)))?
        }
        (false, true) => return Err(config_fail("client certificate given without its key")),
        (true, false) => return Err(config_fail("client key given without its certificate")),
    };
    config.alpn_protocols = alpn;
    if flags & NO_RESUMPTION != 0 {
        config.session_storage = Arc::new(NoClientSessionStorage {});
        config.enable_tickets = false;
    }
    Ok(Client {
        config: Arc::new(config),
        insecure,
    })
}

pub fn server(
    chain_pem: &[u8],
    key_pem: &[u8],
    client_roots_pem: &[u8],
    alpn: &[u8],
    flags: u32,
) -> Result<Server, Fail> {
    let alpn = alpn_list(alpn)?;
    let (certs, key) = cert_and_key(chain_pem, key_pem, "certificate chain", "private key")?;
    let verifier = if client_roots_pem.is_empty() {
        NoClientAuth::new()
    } else {
        let roots = root_store(client_roots_pem, "client CA certificates")?;
        if flags & CLIENT_CERT_OPTIONAL != 0 {
            AllowAnyAnonymousOrAuthenticatedClient::new(roots)
        } else {
            AllowAnyAuthenticatedClient::new(roots)
        }
    };
    let mut config = ServerConfig::builder()
        .with_safe_defaults()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| config_fail(format!("certificate chain: {}", e)))?;
    config.alpn_protocols = alpn;
    if flags & NO_RESUMPTION != 0 {
        // The default ticketer already produces no tickets.
        config.session_storage = Arc::new(NoServerSessionStorage {});
    }
    Ok(Server {
        config: Arc::new(config),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_wire() {
        assert_eq!(alpn_list(b"").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(
            alpn_list(b"\x02h2\x08http/1.1").unwrap(),
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(alpn_list(b"\x00").is_err());
        assert!(alpn_list(b"\x02h2\x00").is_err());
        assert!(alpn_list(b"\x03h2").is_err());
    }
}
