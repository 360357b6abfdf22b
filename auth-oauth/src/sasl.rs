//! SASL encodings for bearer tokens: XOAUTH2 (Google, Microsoft) and
//! OAUTHBEARER (RFC 7628).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use serde_json::Value;

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
    pub fn initial_response(self, user: &str, token: &str) -> SecretString {
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

/// base64 of `user=USER\x01auth=Bearer TOKEN\x01\x01`.
pub fn xoauth2_initial_response(user: &str, token: &str) -> SecretString {
    let raw = SecretString::from(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
    encode(&raw)
}

/// base64 of the RFC 7628 GS2 header and `auth` pair:
/// `n,a=USER,\x01auth=Bearer TOKEN\x01\x01`, with `,` and `=` in the user
/// escaped as `=2C` and `=3D` (RFC 5801 saslname).
pub fn oauthbearer_initial_response(user: &str, token: &str) -> SecretString {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    let raw = SecretString::from(format!("n,a={user},\x01auth=Bearer {token}\x01\x01"));
    encode(&raw)
}

fn encode(raw: &SecretString) -> SecretString {
    use secrecy::ExposeSecret as _;
    SecretString::from(STANDARD.encode(raw.expose_secret().as_bytes()))
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
        let shown: String = shown
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect();
        return shown.trim().to_owned();
    };
    let mut parts = Vec::new();
    for field in ["status", "schemes", "scope"] {
        match json.get(field) {
            Some(Value::String(s)) => parts.push(format!("{field} {s}")),
            Some(Value::Number(n)) => parts.push(format!("{field} {n}")),
            _ => {}
        }
    }
    if parts.is_empty() {
        let mut all = json.to_string();
        all.truncate(200);
        return all;
    }
    parts.join(", ")
}

/// Whether `user` can go into the SASL message (no control characters, not blank).
pub fn valid_user(user: &str) -> bool {
    !user.trim().is_empty() && !user.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn decode(s: &SecretString) -> String {
        String::from_utf8(STANDARD.decode(s.expose_secret()).unwrap()).unwrap()
    }

    #[test]
    fn xoauth2_layout() {
        let r = xoauth2_initial_response("alm@example.com", "ya29.tok");
        assert_eq!(
            decode(&r),
            "user=alm@example.com\x01auth=Bearer ya29.tok\x01\x01"
        );
        // Google's documented example.
        assert_eq!(
            xoauth2_initial_response(
                "someuser@example.com",
                "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
            )
            .expose_secret(),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn oauthbearer_layout_and_escaping() {
        let r = oauthbearer_initial_response("a,b=c@example.com", "tok");
        assert_eq!(
            decode(&r),
            "n,a=a=2Cb=3Dc@example.com,\x01auth=Bearer tok\x01\x01"
        );
        // RFC 7628 §4.1 example, without host and port.
        let r = oauthbearer_initial_response(
            "user@example.com",
            "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        );
        assert_eq!(
            decode(&r),
            "n,a=user@example.com,\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
    }

    #[test]
    fn mechanism_dispatch() {
        assert_eq!(Mechanism::Xoauth2.name(), "XOAUTH2");
        assert_eq!(Mechanism::OAuthBearer.name(), "OAUTHBEARER");
        assert_eq!(Mechanism::Xoauth2.challenge_answer(), "");
        assert_eq!(Mechanism::OAuthBearer.challenge_answer(), "AQ==");
        assert_eq!(STANDARD.decode("AQ==").unwrap(), b"\x01");
        assert_eq!(
            decode(&Mechanism::OAuthBearer.initial_response("u", "t")),
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
    fn users() {
        assert!(valid_user("alm@example.com"));
        assert!(!valid_user(" "));
        assert!(!valid_user("a\x01b"));
        assert!(!valid_user("a\r\nb"));
    }
}
