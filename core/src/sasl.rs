//! SASL initial responses for the common mechanisms (RFC 4616 PLAIN, the
//! LOGIN draft, XOAUTH2, RFC 7628 OAUTHBEARER), so a strategy needs only
//! core to speak them. Every encoder returns a [`SecretString`]: the result
//! holds the credential and is zeroized when dropped.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret as _, SecretString};

/// base64 of `\0user\0password` (RFC 4616, no authorization identity).
///
/// Fails on a user with control characters or a password with NUL, which
/// would shift the fields.
pub fn plain(user: &str, password: &SecretString) -> Result<SecretString, SaslError> {
    if !valid_user(user) {
        return Err(SaslError::InvalidUser);
    }
    if password.expose_secret().contains('\0') {
        return Err(SaslError::InvalidPassword);
    }
    let raw = SecretString::from(format!("\0{user}\0{}", password.expose_secret()));
    Ok(encode(&raw))
}

/// The two answers of `AUTH LOGIN`: base64 of the user, then of the password.
pub fn login(user: &str, password: &SecretString) -> Result<(String, SecretString), SaslError> {
    if !valid_user(user) {
        return Err(SaslError::InvalidUser);
    }
    Ok((STANDARD.encode(user), encode(password)))
}

/// Why an initial response cannot be built. Its text never holds the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The user is blank or contains control characters.
    #[error("the SASL user is blank or contains control characters")]
    InvalidUser,
    /// The password holds a NUL, which PLAIN uses as its separator.
    #[error("the password contains a NUL character, which SASL PLAIN cannot carry")]
    InvalidPassword,
    /// The token is not an RFC 6750 `b64token`.
    #[error(
        "the access token is not an RFC 6750 bearer token (only A-Z a-z 0-9 - . _ ~ + / and trailing =)"
    )]
    InvalidToken,
}

fn check(user: &str, token: &str) -> Result<(), SaslError> {
    if !valid_user(user) {
        return Err(SaslError::InvalidUser);
    }
    if !valid_token(token) {
        return Err(SaslError::InvalidToken);
    }
    Ok(())
}

/// base64 of `user=USER\x01auth=Bearer TOKEN\x01\x01` (XOAUTH2).
///
/// Fails on a user or token that would break the message (see [`SaslError`]).
pub fn xoauth2(user: &str, token: &str) -> Result<SecretString, SaslError> {
    check(user, token)?;
    let raw = SecretString::from(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
    Ok(encode(&raw))
}

/// base64 of the RFC 7628 GS2 header and `auth` pair:
/// `n,a=USER,\x01auth=Bearer TOKEN\x01\x01`, with `,` and `=` in the user
/// escaped as `=2C` and `=3D` (RFC 5801 saslname).
///
/// Fails on a user or token that would break the message (see [`SaslError`]).
pub fn oauthbearer(user: &str, token: &str) -> Result<SecretString, SaslError> {
    check(user, token)?;
    let user = user.replace('=', "=3D").replace(',', "=2C");
    let raw = SecretString::from(format!("n,a={user},\x01auth=Bearer {token}\x01\x01"));
    Ok(encode(&raw))
}

fn encode(raw: &SecretString) -> SecretString {
    SecretString::from(STANDARD.encode(raw.expose_secret().as_bytes()))
}

/// Whether `user` can go into the SASL message (no control characters, not blank).
pub fn valid_user(user: &str) -> bool {
    !user.trim().is_empty() && !user.chars().any(char::is_control)
}

/// Whether `token` is an RFC 6750 §2.1 `b64token`:
/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// Nothing else (no space, no `\x01`, nothing outside printable ASCII) may
/// follow `auth=Bearer ` in the SASL message.
pub fn valid_token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn decode(s: &SecretString) -> String {
        String::from_utf8(STANDARD.decode(s.expose_secret()).unwrap()).unwrap()
    }

    #[test]
    fn plain_and_login_layout() {
        let pw = SecretString::from("hunter2".to_owned());
        assert_eq!(
            decode(&plain("alm@example.com", &pw).unwrap()),
            "\0alm@example.com\0hunter2"
        );
        let (user, password) = login("alm@example.com", &pw).unwrap();
        assert_eq!(user, "YWxtQGV4YW1wbGUuY29t");
        assert_eq!(password.expose_secret(), "aHVudGVyMg==");
        assert_eq!(plain("a\0b", &pw).unwrap_err(), SaslError::InvalidUser);
        let nul = SecretString::from("a\0b".to_owned());
        assert_eq!(plain("u", &nul).unwrap_err(), SaslError::InvalidPassword);
        assert!(login("", &pw).is_err());
    }

    #[test]
    fn xoauth2_layout() {
        let r = xoauth2("alm@example.com", "ya29.tok").unwrap();
        assert_eq!(
            decode(&r),
            "user=alm@example.com\x01auth=Bearer ya29.tok\x01\x01"
        );
        // Google's documented example.
        assert_eq!(
            xoauth2(
                "someuser@example.com",
                "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
            )
            .unwrap()
            .expose_secret(),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn oauthbearer_layout_and_escaping() {
        let r = oauthbearer("a,b=c@example.com", "tok").unwrap();
        assert_eq!(
            decode(&r),
            "n,a=a=2Cb=3Dc@example.com,\x01auth=Bearer tok\x01\x01"
        );
        // RFC 7628 §4.1 example, without host and port.
        let r = oauthbearer(
            "user@example.com",
            "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        )
        .unwrap();
        assert_eq!(
            decode(&r),
            "n,a=user@example.com,\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
    }

    #[test]
    fn users_and_tokens() {
        assert!(valid_user("alm@example.com"));
        assert!(!valid_user(" "));
        assert!(!valid_user("a\x01b"));
        assert!(!valid_user("a\r\nb"));
        for ok in [
            "ya29.tok",
            "eyJ0eXAiOiJKV1QifQ.eyJhIjoxfQ.sig-_~+/",
            "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        ] {
            assert!(valid_token(ok), "{ok}");
        }
        for bad in [
            "", "=", "a b", "a\x01b", "a\r\nb", "tök", "a=b", "a\tb", "a,b", "a\"b",
        ] {
            assert!(!valid_token(bad), "{bad:?}");
        }
        // The error's text never holds the token.
        let e = xoauth2("u", "secret token").unwrap_err();
        assert!(!e.to_string().contains("secret token"));
    }
}
