//! One encrypted value.
//!
//! # ENC value format (v1)
//!
//! ```text
//! ENC(v1:<base64url, no padding, of: key_id[4] || name_tag[4] || nonce[24] || ciphertext || tag[16]>)
//! ```
//!
//! * cipher: XChaCha20-Poly1305 as specified in draft-irtf-cfrg-xchacha
//!   (RFC 8439's ChaCha20-Poly1305 extended to a 192-bit nonce through
//!   HChaCha20); a fresh random nonce per value, so random nonces never
//!   realistically collide;
//! * `key_id`: first 4 bytes of SHA-256(`"mailgate-secrets/v1/key-id\0"` || key);
//! * `name_tag`: first 4 bytes of SHA-256(`"mailgate-secrets/v1/property\0"` || name);
//! * associated data: `"mailgate-secrets/v1\0"` || key_id || name_tag || property
//!   name (UTF-8): the value only decrypts under the property it was made for,
//!   and the header cannot be altered unnoticed;
//! * plaintext: the property's value as Java decodes it, in UTF-8.
//!
//! The key id and name tag only serve to tell *why* a value does not
//! decrypt (another key, another property, or altered). Base64url has no
//! `=`, `:`, `\` or whitespace, so the value needs no escaping in a
//! `.properties` file.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Location, Result};
use crate::key::{KEY_ID_LEN, SecretKey, hex_lower};

const PREFIX: &str = "ENC(";
const SUFFIX: &str = ")";
const VERSION: &str = "v1";
const NAME_TAG_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = KEY_ID_LEN + NAME_TAG_LEN;

/// True when `value` is an `ENC(...)` value (of any version; surrounding
/// whitespace ignored). Such a value is never encrypted again, so a plaintext
/// secret cannot itself have the form `ENC(...)`.
pub fn is_encrypted(value: &str) -> bool {
    let v = value.trim_matches(is_ascii_ws);
    v.len() >= PREFIX.len() + SUFFIX.len() && v.starts_with(PREFIX) && v.ends_with(SUFFIX)
}

/// True when `value` looks encrypted by another tool, so that it is neither
/// a plaintext secret nor a mailgate value: the RV&S server's
/// `encryptPassword`, Jasypt's `ENC(base64)` (an `ENC(...)` without
/// mailgate's `v1:`), a `{AES}...`/`{xor}...` prefix, or PTC's
/// `encrypted.<name>` reference. Such a value must not be sent as a password
/// nor encrypted again as if it were one.
pub fn looks_foreign_encrypted(value: &str) -> bool {
    let v = value.trim_matches(is_ascii_ws);
    if is_encrypted(v) {
        let inner = &v[PREFIX.len()..v.len() - SUFFIX.len()];
        // `v<digits>:` is mailgate's (a later version is an error of its own).
        let ours = inner.strip_prefix('v').is_some_and(|rest| {
            rest.split_once(':')
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        return !ours;
    }
    if let Some(rest) = v.strip_prefix('{')
        && let Some((tag, body)) = rest.split_once('}')
    {
        return (2..=16).contains(&tag.len())
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && body.len() >= 8;
    }
    v.len() > "encrypted.".len()
        && v.get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case("encrypted."))
}

fn is_ascii_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c' | '\r' | '\n')
}

fn name_tag(property: &str) -> [u8; NAME_TAG_LEN] {
    let mut h = Sha256::new();
    h.update(b"mailgate-secrets/v1/property\0");
    h.update(property.as_bytes());
    let d = h.finalize();
    let mut t = [0u8; NAME_TAG_LEN];
    t.copy_from_slice(&d[..NAME_TAG_LEN]);
    t
}

fn aad(header: &[u8], property: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(20 + header.len() + property.len());
    aad.extend_from_slice(b"mailgate-secrets/v1\0");
    aad.extend_from_slice(header);
    aad.extend_from_slice(property.as_bytes());
    aad
}

fn cipher(key: &SecretKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.bytes().into())
}

/// Encrypts `plaintext` for the property `property` with `key`, returning the
/// `ENC(v1:...)` text. Every call uses a fresh random nonce.
pub fn encrypt_value(key: &SecretKey, property: &str, plaintext: &str) -> Result<String> {
    let mut header = [0u8; HEADER_LEN];
    header[..KEY_ID_LEN].copy_from_slice(&key.id_bytes());
    header[KEY_ID_LEN..].copy_from_slice(&name_tag(property));
    let nonce = XNonce::try_generate().map_err(|_| Error::Random)?;
    let aad = aad(&header, property);
    let ct = cipher(key)
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext.as_bytes(),
                aad: &aad,
            },
        )
        // Only fails for inputs over 256 GiB.
        .map_err(|_| Error::Format {
            property: property.to_owned(),
            location: Location::default(),
            reason: "value too long to encrypt",
        })?;
    let mut blob = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ct.len());
    blob.extend_from_slice(&header);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ct);
    Ok(format!(
        "{PREFIX}{VERSION}:{}{SUFFIX}",
        URL_SAFE_NO_PAD.encode(&blob)
    ))
}

/// The parts of a well-formed v1 value.
pub(crate) struct Parsed {
    header: [u8; HEADER_LEN],
    nonce: XNonce,
    /// Ciphertext and tag.
    ct: Vec<u8>,
}

impl Parsed {
    pub(crate) fn key_id(&self) -> &[u8] {
        &self.header[..KEY_ID_LEN]
    }
}

/// Parses an `ENC(v1:...)` value without decrypting it.
pub(crate) fn parse(property: &str, value: &str) -> Result<Parsed> {
    let fmt = |reason| Error::Format {
        property: property.to_owned(),
        location: Location::default(),
        reason,
    };
    if !is_encrypted(value) {
        return Err(Error::NotEncrypted {
            property: property.to_owned(),
            location: Location::default(),
        });
    }
    let v = value.trim_matches(is_ascii_ws);
    let inner = &v[PREFIX.len()..v.len() - SUFFIX.len()];
    let (version, body) = inner
        .split_once(':')
        .ok_or_else(|| fmt("no version tag (expected ENC(v1:...))"))?;
    if version != VERSION {
        return Err(fmt("unsupported version tag (this build reads v1)"));
    }
    let blob = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| fmt("the payload is not base64url"))?;
    let too_short = || fmt("the payload is too short");
    let (header, rest) = blob
        .split_first_chunk::<HEADER_LEN>()
        .ok_or_else(too_short)?;
    let (nonce, ct) = rest
        .split_first_chunk::<NONCE_LEN>()
        .ok_or_else(too_short)?;
    if ct.len() < TAG_LEN {
        return Err(too_short());
    }
    Ok(Parsed {
        header: *header,
        nonce: XNonce::from(*nonce),
        ct: ct.to_vec(),
    })
}

/// Decrypts an `ENC(...)` value of the property `property`.
///
/// Errors: [`Error::NotEncrypted`] for a plaintext value,
/// [`Error::Format`] for a malformed one, [`Error::WrongKey`] when it was
/// encrypted with another key, [`Error::WrongProperty`] when it was encrypted
/// for another property, [`Error::Tampered`] when it was altered. No error
/// contains the value or the plaintext.
pub fn decrypt_value(key: &SecretKey, property: &str, value: &str) -> Result<SecretString> {
    let parsed = parse(property, value)?;
    decrypt_parsed(key, property, &parsed)
}

pub(crate) fn decrypt_parsed(
    key: &SecretKey,
    property: &str,
    parsed: &Parsed,
) -> Result<SecretString> {
    let header = &parsed.header;
    if header[..KEY_ID_LEN] != key.id_bytes() {
        return Err(Error::WrongKey {
            property: property.to_owned(),
            location: Location::default(),
            found: hex_lower(&header[..KEY_ID_LEN]),
            key: Box::new(key.name()),
        });
    }
    if header[KEY_ID_LEN..] != name_tag(property) {
        return Err(Error::WrongProperty {
            property: property.to_owned(),
            location: Location::default(),
        });
    }
    let aad = aad(header, property);
    let plain = Zeroizing::new(
        cipher(key)
            .decrypt(
                &parsed.nonce,
                Payload {
                    msg: &parsed.ct,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Tampered {
                property: property.to_owned(),
                location: Location::default(),
            })?,
    );
    let text = std::str::from_utf8(&plain).map_err(|_| Error::Format {
        property: property.to_owned(),
        location: Location::default(),
        reason: "the decrypted value is not UTF-8",
    })?;
    // `From<&str>` copies into an exact-size box; `plain` is zeroed on drop.
    Ok(SecretString::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn foreign_encrypted_values_are_told_apart() {
        for v in [
            "ENC(3q2+7w==)",
            " ENC(abc) ",
            "{AES}bXlzZWNyZXRwYXNzd29yZA==",
            "{xor}Lz4sLCgwLTs=",
            "encrypted.mksis.logging.emailfrom.password",
        ] {
            assert!(looks_foreign_encrypted(v), "{v}");
        }
        let ours = encrypt_value(&key(1), "p", "x").unwrap();
        for v in [
            ours.as_str(),
            "ENC(v2:abc)",
            "hunter2",
            "{short}",
            "{}abcdefghijk",
            "Pa55{word}more",
            "openssl+rand/base64+32=",
            "encrypted",
        ] {
            assert!(!looks_foreign_encrypted(v), "{v}");
        }
    }

    fn key(b: u8) -> SecretKey {
        SecretKey::from_bytes([b; 32])
    }

    #[test]
    fn round_trip_and_fresh_nonce() {
        let k = key(1);
        let a = encrypt_value(&k, "p", "s3cr=t é").unwrap();
        let b = encrypt_value(&k, "p", "s3cr=t é").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("ENC(v1:") && a.ends_with(')'));
        assert!(
            a[7..a.len() - 1]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(
            decrypt_value(&k, "p", &a).unwrap().expose_secret(),
            "s3cr=t é"
        );
        assert_eq!(
            decrypt_value(&k, "p", &format!("  {b} "))
                .unwrap()
                .expose_secret(),
            "s3cr=t é"
        );
    }

    #[test]
    fn empty_plaintext() {
        let k = key(1);
        let a = encrypt_value(&k, "p", "").unwrap();
        assert_eq!(decrypt_value(&k, "p", &a).unwrap().expose_secret(), "");
    }

    #[test]
    fn is_encrypted_cases() {
        assert!(is_encrypted("ENC(v1:abc)"));
        assert!(is_encrypted(" ENC(x) "));
        assert!(is_encrypted("ENC()"));
        assert!(!is_encrypted("ENC("));
        assert!(!is_encrypted("enc(v1:abc)"));
        assert!(!is_encrypted("secret"));
        assert!(!is_encrypted("xENC(v1:a)"));
        assert!(!is_encrypted(""));
    }

    #[test]
    fn errors() {
        let k = key(1);
        let v = encrypt_value(&k, "p", "hunter2").unwrap();
        assert!(matches!(
            decrypt_value(&key(2), "p", &v),
            Err(Error::WrongKey { .. })
        ));
        assert!(matches!(
            decrypt_value(&k, "q", &v),
            Err(Error::WrongProperty { .. })
        ));
        assert!(matches!(
            decrypt_value(&k, "p", "hunter2"),
            Err(Error::NotEncrypted { .. })
        ));
        assert!(matches!(
            decrypt_value(&k, "p", "ENC(v2:AAAA)"),
            Err(Error::Format { .. })
        ));
        assert!(matches!(
            decrypt_value(&k, "p", "ENC(hunter2)"),
            Err(Error::Format { .. })
        ));
        assert!(matches!(
            decrypt_value(&k, "p", "ENC(v1:***)"),
            Err(Error::Format { .. })
        ));
        assert!(matches!(
            decrypt_value(&k, "p", "ENC(v1:AAAA)"),
            Err(Error::Format { .. })
        ));
        // Flip one bit in every byte position past the header, in turn.
        let p = parse("p", &v).unwrap();
        let blob = [&p.header[..], &p.nonce[..], &p.ct[..]].concat();
        for i in HEADER_LEN..blob.len() {
            let mut b = blob.clone();
            b[i] ^= 0x01;
            let t = format!("ENC(v1:{})", URL_SAFE_NO_PAD.encode(&b));
            let e = decrypt_value(&k, "p", &t).unwrap_err();
            assert!(matches!(e, Error::Tampered { .. }), "byte {i}: {e}");
        }
        // Re-labelling the name tag still fails (it is in the AAD).
        let mut b = blob.clone();
        b[KEY_ID_LEN..HEADER_LEN].copy_from_slice(&name_tag("q"));
        let t = format!("ENC(v1:{})", URL_SAFE_NO_PAD.encode(&b));
        assert!(matches!(
            decrypt_value(&k, "q", &t),
            Err(Error::Tampered { .. })
        ));
    }

    #[test]
    fn error_text_has_no_value() {
        let k = key(1);
        let v = encrypt_value(&k, "p", "hunter2").unwrap();
        for e in [
            decrypt_value(&key(2), "p", &v).unwrap_err(),
            decrypt_value(&k, "q", &v).unwrap_err(),
            decrypt_value(&k, "p", "hunter2").unwrap_err(),
            decrypt_value(&k, "p", "ENC(hunter2)").unwrap_err(),
            decrypt_value(&k, "p", "ENC(hunter2:x)").unwrap_err(),
            decrypt_value(&k, "p", "ENC(v1:hunter2)").unwrap_err(),
        ] {
            let text = format!("{e} {e:?}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains(&v[7..20]), "{text}");
        }
    }
}
