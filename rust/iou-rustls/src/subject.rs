// SPDX-License-Identifier: MIT
//
// The subject of an X.509 certificate as an RFC 4514 string, read with a
// small bounds-checked DER reader.  The input comes from the peer: every
// access is checked, nothing here can panic or read out of bounds, and
// anything malformed is simply None.

use std::fmt::Write;

/// A cursor over a run of DER elements.
struct Der<'a> {
    rest: &'a [u8],
}

/// One element: its tag, its contents, and the whole encoding (tag and
/// length included).
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
    whole: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element.  Only single-byte tags and definite lengths of up
    /// to four length bytes are accepted: nothing in a certificate needs
    /// more.
    fn read(&mut self) -> Option<Tlv<'a>> {
        let b = self.rest;
        let tag = *b.first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let first = *b.get(1)?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2usize)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let mut len: usize = 0;
            for byte in b.get(2..2 + n)? {
                len = len.checked_mul(256)?.checked_add(usize::from(*byte))?;
            }
            (len, 2 + n)
        };
        let end = header.checked_add(len)?;
        let whole = b.get(..end)?;
        let value = whole.get(header..)?;
        self.rest = b.get(end..)?;
        Some(Tlv { tag, value, whole })
    }

    /// The contents of the next element, which must have tag `tag`.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let tlv = self.read()?;
        if tlv.tag == tag {
            Some(tlv.value)
        } else {
            None
        }
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0; // [0] EXPLICIT Version

/// The subject of DER certificate `cert` in RFC 4514 form, or None if the
/// certificate cannot be parsed that far.
pub fn rfc4514(cert: &[u8]) -> Option<String> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    let certificate = Der::new(cert).expect(SEQUENCE)?;
    let tbs = Der::new(certificate).expect(SEQUENCE)?;
    // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber,
    //     signature, issuer, validity, subject, ... }
    let mut t = Der::new(tbs);
    let mut next = t.read()?;
    if next.tag == VERSION {
        next = t.read()?;
    }
    if next.tag != INTEGER {
        return None;
    }
    t.expect(SEQUENCE)?; // signature AlgorithmIdentifier
    t.expect(SEQUENCE)?; // issuer Name
    t.expect(SEQUENCE)?; // validity
    let subject = t.expect(SEQUENCE)?;
    name(subject)
}

/// Name ::= SEQUENCE OF RelativeDistinguishedName, each a SET OF
/// AttributeTypeAndValue; RFC 4514 lists the RDNs last first, joined by
/// ',', and the attributes of one RDN joined by '+'.
fn name(rdn_sequence: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    let mut seq = Der::new(rdn_sequence);
    while !seq.is_empty() {
        let mut set = Der::new(seq.expect(SET)?);
        let mut avas = Vec::new();
        while !set.is_empty() {
            let mut ava = Der::new(set.expect(SEQUENCE)?);
            let oid = ava.expect(OID)?;
            let value = ava.read()?;
            if !ava.is_empty() {
                return None;
            }
            avas.push(attribute(oid, &value)?);
        }
        if avas.is_empty() {
            return None;
        }
        rdns.push(avas.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// The RFC 4514 short names this shim prints; every other type is printed
/// as its dotted-decimal OID.
fn short_name(dotted: &str) -> Option<&'static str> {
    Some(match dotted {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// One "type=value".  As RFC 4514 (2.4) requires, a type printed as a
/// dotted OID gets its value as '#' and the hex of its DER encoding; so
/// does a known type whose value is not a character string we can decode.
fn attribute(oid: &[u8], value: &Tlv) -> Option<String> {
    let dotted = dotted_oid(oid)?;
    let mut out = String::new();
    match short_name(&dotted) {
        Some(short) => {
            out.push_str(short);
            out.push('=');
            match decode_string(value.tag, value.value) {
                Some(s) => escape_into(&mut out, &s),
                None => hex_into(&mut out, value.whole),
            }
        }
        None => {
            out.push_str(&dotted);
            out.push('=');
            hex_into(&mut out, value.whole);
        }
    }
    Some(out)
}

/// OID contents to dotted decimal; None if malformed.  Arcs may be as
/// large as 128 bits (UUID OIDs under 2.25).
fn dotted_oid(oid: &[u8]) -> Option<String> {
    if oid.is_empty() {
        return None;
    }
    let mut out = String::new();
    let mut arc: u128 = 0;
    let mut first = true;
    let mut pending = false;
    for &byte in oid {
        arc = arc.checked_mul(128)?.checked_add(u128::from(byte & 0x7f))?;
        pending = true;
        if byte & 0x80 != 0 {
            continue;
        }
        if first {
            let (x, y) = if arc < 40 {
                (0, arc)
            } else if arc < 80 {
                (1, arc - 40)
            } else {
                (2, arc - 80)
            };
            let _ = write!(out, "{}.{}", x, y);
            first = false;
        } else {
            let _ = write!(out, ".{}", arc);
        }
        arc = 0;
        pending = false;
    }
    if pending {
        return None; // the last sub-identifier was not terminated
    }
    Some(out)
}

/// The text of a DirectoryString-like value, or None if `tag` is not a
/// character string type or the bytes are not valid for it.
fn decode_string(tag: u8, v: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, and the ASCII subsets (Numeric, Printable, IA5,
        // Visible), which are read as UTF-8 too: certificates in the wild
        // put UTF-8 into PrintableString more often than one would hope.
        0x0c | 0x12 | 0x13 | 0x16 | 0x1a => std::str::from_utf8(v).ok().map(str::to_owned),
        // TeletexString: UTF-8 if it is, else Latin-1, as most readers do.
        0x14 => match std::str::from_utf8(v) {
            Ok(s) => Some(s.to_owned()),
            Err(_) => Some(v.iter().map(|&b| char::from(b)).collect()),
        },
        // BMPString: UTF-16BE.
        0x1e => {
            if v.len() % 2 != 0 {
                return None;
            }
            let units = v.chunks(2).map(|p| match p {
                [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                _ => 0xdc00, // unreachable: chunks of an even length
            });
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        // UniversalString: UCS-4BE.
        0x1c => {
            if v.len() % 4 != 0 {
                return None;
            }
            v.chunks(4)
                .map(|q| match q {
                    [a, b, c, d] => char::from_u32(u32::from_be_bytes([*a, *b, *c, *d])),
                    _ => None,
                })
                .collect()
        }
        _ => None,
    }
}

/// Append `s` escaped as RFC 4514 (2.4) asks: the specials , + " \ < > ;
/// always, '#' or ' ' at the start and ' ' at the end; control characters
/// (NUL included) as \XX, which the RFC allows and which keeps the string
/// printable.
fn escape_into(out: &mut String, s: &str) {
    let count = s.chars().count();
    for (i, ch) in s.chars().enumerate() {
        match ch {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(ch);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i + 1 == count => out.push_str("\\ "),
            '\u{0}'..='\u{1f}' | '\u{7f}' => {
                let _ = write!(out, "\\{:02X}", u32::from(ch));
            }
            _ => out.push(ch),
        }
    }
}

fn hex_into(out: &mut String, bytes: &[u8]) {
    out.push('#');
    for b in bytes {
        let _ = write!(out, "{:02x}", b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, v: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if v.len() < 128 {
            out.push(v.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(v);
        out
    }

    fn ava(oid: &[u8], tag: u8, val: &[u8]) -> Vec<u8> {
        let mut inner = tlv(OID, oid);
        inner.extend(tlv(tag, val));
        tlv(SET, &tlv(SEQUENCE, &inner))
    }

    fn cert_with_subject(rdns: &[Vec<u8>]) -> Vec<u8> {
        let subject = tlv(SEQUENCE, &rdns.concat());
        let mut tbs = tlv(VERSION, &tlv(INTEGER, &[2]));
        tbs.extend(tlv(INTEGER, &[1]));
        tbs.extend(tlv(SEQUENCE, &[]));
        tbs.extend(tlv(SEQUENCE, &[]));
        tbs.extend(tlv(SEQUENCE, &[]));
        tbs.extend(subject);
        tlv(SEQUENCE, &tlv(SEQUENCE, &tbs))
    }

    const CN: &[u8] = &[0x55, 4, 3];
    const O: &[u8] = &[0x55, 4, 10];

    #[test]
    fn order_and_escaping() {
        let c = cert_with_subject(&[ava(O, 0x0c, b"a,b+c"), ava(CN, 0x13, b" #x ")]);
        assert_eq!(rfc4514(&c).unwrap(), "CN=\\ #x\\ ,O=a\\,b\\+c");
        let c = cert_with_subject(&[ava(CN, 0x0c, b"#a\0\n")]);
        assert_eq!(rfc4514(&c).unwrap(), "CN=\\#a\\00\\0A");
    }

    #[test]
    fn unknown_and_binary() {
        let c = cert_with_subject(&[ava(&[0x55, 4, 5], 0x13, b"12")]);
        assert_eq!(rfc4514(&c).unwrap(), "2.5.4.5=#13023132");
        let c = cert_with_subject(&[ava(CN, 0x04, b"\x01")]);
        assert_eq!(rfc4514(&c).unwrap(), "CN=#040101");
        let c = cert_with_subject(&[ava(CN, 0x1e, &[0, b'h', 0x00, 0xe9])]);
        assert_eq!(rfc4514(&c).unwrap(), "CN=h\u{e9}");
    }

    #[test]
    fn truncations_never_panic() {
        let c = cert_with_subject(&[ava(O, 0x0c, b"x"), ava(CN, 0x0c, b"y")]);
        assert_eq!(rfc4514(&c).unwrap(), "CN=y,O=x");
        for n in 0..c.len() {
            let _ = rfc4514(&c[..n]);
            let mut d = c.clone();
            d[n] ^= 0xff;
            let _ = rfc4514(&d);
        }
        // Random multi-byte damage, deterministic.
        let mut x: u32 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as usize
        };
        for _ in 0..20000 {
            let mut d = c.clone();
            for _ in 0..1 + next() % 4 {
                let i = next() % d.len();
                d[i] = next() as u8;
            }
            let cut = next() % (d.len() + 1);
            let _ = rfc4514(&d[..cut]);
            let _ = rfc4514(&d);
        }
        assert!(rfc4514(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(dotted_oid(&[0x2a, 0x86]).is_none());
        assert_eq!(dotted_oid(&[0x2a, 0x86, 0x48]).unwrap(), "1.2.840");
    }
}
