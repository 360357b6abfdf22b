//! SASL encodings for bearer tokens: XOAUTH2 (Google, Microsoft) and
//! OAUTHBEARER (RFC 7628).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailgate_core::sasl;
pub use mailgate_core::sasl::{SaslError, valid_token, valid_user};
use secrecy::SecretString;
use serde_json::Value;

use crate::redaction::{collapse, truncate};

/// At most this many characters of a challenge that is not the usual JSON are shown.
const CHALLENGE_LEN: usize = 200;

/// At most this many characters of one field of the challenge are shown.
const FIELD_LEN: usize = 100;

/// The SASL mechanism used with the token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mechanism {
    /// `XOAUTH2`: `user=U\x01auth=Bearer T\x01\x01` (the default).
    #[default]
    Xoauth2,
    /// `OAUTHBEARER` (RFC 7628): `n,a=U,\x01auth=Bearer T\x01\x01`.
    OAuthBearer,
}

impl Mechanism {
    /// The SASL name: `XOAUTH2` or `OAUTHBEARER`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Xoauth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The value of `mailgate.oauth.mechanism` that selects it.
    pub fn key_value(self) -> &'static str {
        match self {
            Mechanism::Xoauth2 => "xoauth2",
            Mechanism::OAuthBearer => "oauthbearer",
        }
    }

    /// The other mechanism (for hints when the server offers only that one).
    pub fn other(self) -> Self {
        match self {
            Mechanism::Xoauth2 => Mechanism::OAuthBearer,
            Mechanism::OAuthBearer => Mechanism::Xoauth2,
        }
    }

    /// The base64 initial client response for `user` and `token`.
    ///
    /// Fails if the user is blank or holds control characters ([`valid_user`])
    /// or the token is not an RFC 6750 `b64token` ([`valid_token`]): either
    /// would break the `\x01`-separated message.
    pub fn initial_response(self, user: &str, token: &str) -> Result<SecretString, SaslError> {
        match self {
            Mechanism::Xoauth2 => xoauth2_initial_response(user, token),
            Mechanism::OAuthBearer => oauthbearer_initial_response(user, token),
        }
    }

    /// The line that answers the server's `334` error challenge, so it sends
    /// its final reply: empty for XOAUTH2, base64 of `\x01` (`AQ==`) for
    /// OAUTHBEARER (RFC 7628 §3.2.3).
    pub fn challenge_answer(self) -> &'static str {
        match self {
            Mechanism::Xoauth2 => "",
            Mechanism::OAuthBearer => "AQ==",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// base64 of `user=USER\x01auth=Bearer TOKEN\x01\x01`; see [`sasl::xoauth2`].
pub fn xoauth2_initial_response(user: &str, token: &str) -> Result<SecretString, SaslError> {
    sasl::xoauth2(user, token)
}

/// base64 of `n,a=USER,\x01auth=Bearer TOKEN\x01\x01`; see [`sasl::oauthbearer`].
pub fn oauthbearer_initial_response(user: &str, token: &str) -> Result<SecretString, SaslError> {
    sasl::oauthbearer(user, token)
}

/// A readable summary of a `334` error challenge (base64 JSON such as
/// `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`),
/// e.g. `status 401, schemes bearer, scope https://mail.google.com/`.
/// Text that is not base64 JSON is returned cleaned and shortened.
pub fn describe_challenge(text: &str) -> String {
    let text = text.trim();
    let decoded = STANDARD
        .decode(text)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let json = decoded
        .as_deref()
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .filter(Value::is_object);
    let Some(json) = json else {
        let shown = decoded.unwrap_or_else(|| text.to_owned());
        return truncate(&collapse(&shown), CHALLENGE_LEN);
    };
    let mut parts = Vec::new();
    for field in ["status", "schemes", "scope"] {
        let value = match json.get(field) {
            Some(Value::String(s)) => collapse(s),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        parts.push(format!("{field} {}", truncate(&value, FIELD_LEN)));
    }
    if parts.is_empty() {
        return truncate(&collapse(&json.to_string()), CHALLENGE_LEN);
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn decode(s: &SecretString) -> String {
        String::from_utf8(STANDARD.decode(s.expose_secret()).unwrap()).unwrap()
    }

    #[test]
    fn mechanism_dispatch() {
        assert_eq!(Mechanism::Xoauth2.name(), "XOAUTH2");
        assert_eq!(Mechanism::OAuthBearer.name(), "OAUTHBEARER");
        assert_eq!(Mechanism::Xoauth2.challenge_answer(), "");
        assert_eq!(Mechanism::OAuthBearer.challenge_answer(), "AQ==");
        assert_eq!(STANDARD.decode("AQ==").unwrap(), b"\x01");
        assert_eq!(
            decode(&Mechanism::OAuthBearer.initial_response("u", "t").unwrap()),
            "n,a=u,\x01auth=Bearer t\x01\x01"
        );
    }

    #[test]
    fn challenge_is_decoded() {
        let c = STANDARD
            .encode(r#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#);
        assert_eq!(
            describe_challenge(&c),
            "status 401, schemes bearer, scope https://mail.google.com/"
        );
        let c = STANDARD.encode(r#"{"status":"invalid_token","scope":"s"}"#);
        assert_eq!(describe_challenge(&c), "status invalid_token, scope s");
        assert_eq!(describe_challenge("not base64!"), "not base64!");
    }

    #[test]
    fn challenge_with_long_multibyte_json_does_not_panic() {
        // No status/schemes/scope: the whole JSON is shown, shortened on a
        // character boundary (byte 200 falls inside a multi-byte character).
        let json = format!(r#"{{"x":"{}"}}"#, "é".repeat(300));
        let shown = describe_challenge(&STANDARD.encode(&json));
        assert!(shown.ends_with('…'), "{shown}");
        assert_eq!(shown.chars().count(), CHALLENGE_LEN + 1);
        for odd in ["a", "ab", "abc€"] {
            let json = format!(r#"{{"{}":"{}"}}"#, odd.repeat(70), "€".repeat(90));
            describe_challenge(&STANDARD.encode(json));
        }
        // Long or control-laden fields are cleaned and shortened too.
        let json = format!(r#"{{"status":"401\r\nX","scope":"{}"}}"#, "€".repeat(500));
        let shown = describe_challenge(&STANDARD.encode(json));
        assert!(shown.starts_with("status 401 X, scope €"), "{shown}");
        assert!(!shown.contains(['\r', '\n']), "{shown}");
        assert!(shown.chars().count() < 130, "{shown}");
        // Not base64 JSON: control characters collapsed, shortened.
        let shown = describe_challenge(&"ü\x01".repeat(400));
        assert!(!shown.contains('\x01') && shown.ends_with('…'), "{shown}");
    }

    #[test]
    fn initial_responses_validate_user_and_token() {
        for mech in [Mechanism::Xoauth2, Mechanism::OAuthBearer] {
            assert_eq!(
                mech.initial_response("a\x01b", "tok").unwrap_err(),
                SaslError::InvalidUser
            );
            assert_eq!(
                mech.initial_response(" ", "tok").unwrap_err(),
                SaslError::InvalidUser
            );
            assert_eq!(
                mech.initial_response("u", "tok\x01auth=Bearer x")
                    .unwrap_err(),
                SaslError::InvalidToken
            );
            assert_eq!(
                mech.initial_response("u", "").unwrap_err(),
                SaslError::InvalidToken
            );
        }
        assert_eq!(
            xoauth2_initial_response("u\r\n", "t").unwrap_err(),
            SaslError::InvalidUser
        );
        assert_eq!(
            oauthbearer_initial_response("u", "t t").unwrap_err(),
            SaslError::InvalidToken
        );
        // The error's text never holds the token.
        let e = xoauth2_initial_response("u", "secret token").unwrap_err();
        assert!(!e.to_string().contains("secret token"));
    }
}
