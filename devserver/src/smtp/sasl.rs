//! Parsing of the OAuth SASL responses (XOAUTH2, RFC 7628 OAUTHBEARER) and
//! their error challenges; PLAIN and LOGIN are the codec's.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Standard alphabet; accepts input with or without padding.
pub(crate) const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(crate) fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A bearer token and the user it is presented for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BearerResponse {
    pub user: String,
    pub token: String,
}

/// `user=` user `^A` `auth=Bearer ` token `^A^A`.
pub(crate) fn parse_xoauth2(bytes: &[u8]) -> Option<BearerResponse> {
    let text = std::str::from_utf8(bytes).ok()?;
    let body = text.strip_suffix("\x01\x01")?;
    let mut user = None;
    let mut token = None;
    for field in body.split('\x01') {
        let (key, value) = field.split_once('=')?;
        match key {
            "user" => user = Some(value.to_owned()),
            "auth" => token = Some(bearer_token(value)?),
            _ => return None,
        }
    }
    Some(BearerResponse {
        user: user?,
        token: token?,
    })
}

/// RFC 7628: gs2-header `^A` *(key=value `^A`) `^A`.
pub(crate) fn parse_oauthbearer(bytes: &[u8]) -> Option<BearerResponse> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (gs2, rest) = text.split_once('\x01')?;
    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    let mut gs2_parts = gs2.split(',');
    let cbind = gs2_parts.next()?;
    let authzid = gs2_parts.next()?;
    if gs2_parts.next() != Some("") || gs2_parts.next().is_some() {
        return None;
    }
    if !(cbind == "n" || cbind == "y" || cbind.starts_with("p=")) {
        return None;
    }
    let user = if authzid.is_empty() {
        String::new()
    } else {
        unescape_saslname(authzid.strip_prefix("a=")?)?
    };
    let kvpairs = rest.strip_suffix('\x01')?;
    let mut token = None;
    if !kvpairs.is_empty() {
        for field in kvpairs.strip_suffix('\x01')?.split('\x01') {
            let (key, value) = field.split_once('=')?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
                return None;
            }
            if key == "auth" {
                token = Some(bearer_token(value)?);
            }
        }
    }
    Some(BearerResponse {
        user,
        token: token?,
    })
}

/// `Bearer <token>` (scheme case-insensitive).
fn bearer_token(value: &str) -> Option<String> {
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() {
        return None;
    }
    Some(token.to_owned())
}

/// RFC 5801 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn unescape_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3)?;
        match esc {
            "=2C" | "=2c" => out.push(','),
            "=3D" | "=3d" => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The JSON of the XOAUTH2 error challenge (as Gmail sends it).
pub(crate) fn xoauth2_error_challenge(scope: &str) -> String {
    let json = serde_json::json!({
        "status": "401",
        "schemes": "bearer",
        "scope": scope,
    });
    encode(json.to_string().as_bytes())
}

/// The JSON of the RFC 7628 section 3.2.2 error challenge.
pub(crate) fn oauthbearer_error_challenge(scope: &str) -> String {
    let json = serde_json::json!({
        "status": "invalid_token",
        "scope": scope,
    });
    encode(json.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PLAIN is the codec's now (`mailgate_relay::codec::plain`).
    #[test]
    fn plain() {
        use mailgate_relay::codec::plain as parse_plain;
        let p = parse_plain(b"\0alice\0pw").unwrap();
        assert_eq!(
            (p.authzid.as_str(), p.user.as_str(), p.password.as_str()),
            ("", "alice", "pw")
        );
        assert!(parse_plain(b"alice\0pw").is_none());
        assert!(parse_plain(b"\0\0pw").is_none());
        assert!(parse_plain(b"a\0b\0c\0d").is_none());
        assert!(parse_plain(&[0, 0xff, 0, 1]).is_none());
    }

    #[test]
    fn xoauth2() {
        assert_eq!(
            parse_xoauth2(b"user=a@b\x01auth=Bearer tok\x01\x01"),
            Some(BearerResponse {
                user: "a@b".into(),
                token: "tok".into()
            })
        );
        assert_eq!(parse_xoauth2(b"user=a@b\x01auth=Bearer tok\x01"), None);
        assert_eq!(parse_xoauth2(b"user=a@b\x01auth=Basic tok\x01\x01"), None);
        assert_eq!(parse_xoauth2(b"auth=Bearer tok\x01\x01"), None);
        assert_eq!(parse_xoauth2(b""), None);
    }

    #[test]
    fn oauthbearer() {
        let ok = parse_oauthbearer(
            b"n,a=us=2Cer=3D@x,\x01host=server.example.com\x01port=587\x01auth=Bearer vF9dft4qmT\x01\x01",
        );
        assert_eq!(
            ok,
            Some(BearerResponse {
                user: "us,er=@x".into(),
                token: "vF9dft4qmT".into()
            })
        );
        let no_user = parse_oauthbearer(b"n,,\x01auth=Bearer t\x01\x01").unwrap();
        assert_eq!(no_user.user, "");
        assert_eq!(parse_oauthbearer(b"n,a=x,\x01auth=Bearer t\x01"), None);
        assert_eq!(parse_oauthbearer(b"n,a=x,\x01\x01"), None);
        assert_eq!(parse_oauthbearer(b"q,a=x,\x01auth=Bearer t\x01\x01"), None);
        assert_eq!(parse_oauthbearer(b"n,a=x=,\x01auth=Bearer t\x01\x01"), None);
        assert_eq!(parse_oauthbearer(b"\x01"), None);
    }

    /// Responses are decoded by the codec (`mailgate_relay::codec::decode`).
    #[test]
    fn responses() {
        use mailgate_relay::codec::{SaslResponse, decode};
        let data = |r: SaslResponse| match r {
            SaslResponse::Data(d) => Some(d.to_vec()),
            _ => None,
        };
        assert_eq!(data(decode("=")), Some(vec![]));
        assert_eq!(data(decode("AQ==")), Some(vec![1]));
        assert_eq!(data(decode("AQ")), Some(vec![1]));
        assert_eq!(data(decode("!!")), None);
    }
}
