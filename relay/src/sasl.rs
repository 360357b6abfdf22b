//! SASL responses of AUTH PLAIN (RFC 4616) and LOGIN.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use zeroize::Zeroizing;

/// Standard alphabet; padding optional (some clients omit it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A client's answer to a `334` challenge (or an initial response).
pub(crate) enum Response {
    /// The decoded bytes (wiped when dropped).
    Data(Zeroizing<Vec<u8>>),
    /// `*`: the client cancels (RFC 4954 4).
    Cancel,
    /// Not base64.
    Invalid,
}

/// Decodes one response line; `=` is the empty response.
pub(crate) fn decode(line: &str) -> Response {
    if line == "*" {
        return Response::Cancel;
    }
    if line == "=" {
        return Response::Data(Zeroizing::new(Vec::new()));
    }
    match BASE64.decode(line) {
        Ok(bytes) => Response::Data(Zeroizing::new(bytes)),
        Err(_) => Response::Invalid,
    }
}

/// Credentials taken from a response.
pub(crate) struct Credentials {
    pub user: String,
    pub password: Zeroizing<String>,
}

/// `authzid NUL authcid NUL passwd`; an authorization identity other than
/// the user's own is not supported (None).
pub(crate) fn parse_plain(bytes: &[u8]) -> Option<Credentials> {
    let mut parts = bytes.split(|&b| b == 0);
    let authzid = parts.next()?;
    let user = parts.next()?;
    let password = parts.next()?;
    if parts.next().is_some() || user.is_empty() {
        return None;
    }
    if !authzid.is_empty() && authzid != user {
        return None;
    }
    Some(Credentials {
        user: String::from_utf8(user.to_vec()).ok()?,
        password: Zeroizing::new(String::from_utf8(password.to_vec()).ok()?),
    })
}

/// A user name or password of LOGIN: UTF-8 without NUL.
pub(crate) fn login_text(bytes: &[u8]) -> Option<Zeroizing<String>> {
    if bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes)
        .ok()
        .map(|s| Zeroizing::new(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let c = parse_plain(b"\0user\0pass").unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("user", "pass"));
        assert!(parse_plain(b"user\0user\0pass").is_some());
        assert!(parse_plain(b"other\0user\0pass").is_none());
        assert!(parse_plain(b"\0\0pass").is_none());
        assert!(parse_plain(b"\0user").is_none());
        assert!(parse_plain(b"\0user\0pa\0ss").is_none());
        assert!(matches!(decode("*"), Response::Cancel));
        assert!(matches!(decode("=="), Response::Invalid));
        assert!(matches!(decode("AHUAcA"), Response::Data(d) if d.as_slice() == b"\0u\0p"));
        assert!(matches!(decode("="), Response::Data(d) if d.is_empty()));
    }
}
