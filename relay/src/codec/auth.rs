//! AUTH (RFC 4954): the command's checks, the `334` challenges, and the
//! SASL responses of PLAIN (RFC 4616) and LOGIN. Which mechanisms exist,
//! and what a response proves, is the server's: the codec hands it each
//! response decoded.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use zeroize::Zeroizing;

use super::line::Frame;
use super::reply::Answer;
use super::session::{Codec, Event, Mode};

/// Standard alphabet; padding optional (some clients omit it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A client's answer to a `334` challenge (or an initial response). Its
/// `Debug` shows the size of the data, never the data (credentials).
#[derive(Clone, PartialEq, Eq)]
pub enum SaslResponse {
    /// The decoded bytes (wiped when dropped).
    Data(Zeroizing<Vec<u8>>),
    /// `*`: the client cancels (RFC 4954 4).
    Cancel,
    /// Not base64, or not a line the codec takes (too long, bare LF,
    /// control characters).
    Invalid,
}

impl std::fmt::Debug for SaslResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaslResponse::Data(bytes) => write!(f, "Data(<{} bytes>)", bytes.len()),
            SaslResponse::Cancel => f.write_str("Cancel"),
            SaslResponse::Invalid => f.write_str("Invalid"),
        }
    }
}

/// Decodes one response line; `=` is the empty response.
pub fn decode(line: &str) -> SaslResponse {
    if line == "*" {
        return SaslResponse::Cancel;
    }
    if line == "=" {
        return SaslResponse::Data(Zeroizing::new(Vec::new()));
    }
    match BASE64.decode(line) {
        Ok(bytes) => SaslResponse::Data(Zeroizing::new(bytes)),
        Err(_) => SaslResponse::Invalid,
    }
}

/// The response a framed line gives.
pub(crate) fn response(frame: &Frame) -> SaslResponse {
    match frame {
        Frame::Text(line) => decode(line),
        _ => SaslResponse::Invalid,
    }
}

/// The three parts of a PLAIN response (`Debug` hides the password).
pub struct Plain {
    /// The authorization identity; empty when not given.
    pub authzid: String,
    /// The authentication identity (the user name); never empty.
    pub user: String,
    /// The password.
    pub password: Zeroizing<String>,
}

/// `authzid NUL authcid NUL passwd`, each UTF-8, the user not empty.
pub fn plain(bytes: &[u8]) -> Option<Plain> {
    let mut parts = bytes.split(|&b| b == 0);
    let authzid = parts.next()?;
    let user = parts.next()?;
    let password = parts.next()?;
    if parts.next().is_some() || user.is_empty() {
        return None;
    }
    Some(Plain {
        authzid: String::from_utf8(authzid.to_vec()).ok()?,
        user: String::from_utf8(user.to_vec()).ok()?,
        password: Zeroizing::new(String::from_utf8(password.to_vec()).ok()?),
    })
}

impl std::fmt::Debug for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plain")
            .field("authzid", &self.authzid)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Credentials taken from a response (`Debug` hides the password).
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A PLAIN response whose authorization identity, if any, is the user's
/// own (None otherwise: acting as another user is not supported).
pub fn parse_plain(bytes: &[u8]) -> Option<Credentials> {
    let plain = plain(bytes)?;
    if !plain.authzid.is_empty() && plain.authzid != plain.user {
        return None;
    }
    Some(Credentials {
        user: plain.user,
        password: plain.password,
    })
}

/// A user name or password of LOGIN: UTF-8 without NUL.
pub fn login_text(bytes: &[u8]) -> Option<Zeroizing<String>> {
    if bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes)
        .ok()
        .map(|s| Zeroizing::new(s.to_owned()))
}

impl Codec {
    /// AUTH: offered, after EHLO, over TLS if required, once, outside a
    /// transaction.
    pub(super) fn auth(&mut self, mechanism: &str, initial: Option<&str>) -> Event {
        let refusal = if self.config.extensions.auth.is_none() {
            Answer::AuthUnavailable
        } else if self.greeting != Some(true) {
            Answer::NeedEhlo
        } else if !self.auth_offered() {
            Answer::AuthNeedsTls
        } else if self.authenticated {
            Answer::AlreadyAuthenticated
        } else if self.envelope.is_some() {
            Answer::AuthInTransaction
        } else {
            return Event::Auth {
                mechanism: mechanism.to_owned(),
                initial: initial.map(decode),
            };
        };
        self.refuse(refusal)
    }

    /// Whether AUTH is offered now: mechanisms are set, and TLS is
    /// active or not required for AUTH.
    pub fn auth_offered(&self) -> bool {
        self.config.extensions.auth.is_some() && (self.tls || !self.config.require_tls_for_auth)
    }

    /// Sends `334 challenge`; the next line is the client's response
    /// ([`Event::SaslResponse`]), not a command.
    pub fn challenge(&mut self, challenge: &str) {
        self.out
            .extend_from_slice(format!("334 {challenge}\r\n").as_bytes());
        self.mode = Mode::Sasl;
    }

    /// The client authenticated (the server answered `235`).
    pub fn authenticated(&mut self) {
        self.authenticated = true;
    }

    /// Whether the client authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let shown = format!(
            "{:?} {:?} {:?}",
            decode("AHUAcA"),
            super::plain(b"\0u\0secret").unwrap(),
            parse_plain(b"\0u\0secret").unwrap()
        );
        assert!(
            !shown.contains("secret") && !shown.contains("112"),
            "{shown}"
        );
    }

    #[test]
    fn plain() {
        let c = parse_plain(b"\0user\0pass").unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("user", "pass"));
        assert!(parse_plain(b"user\0user\0pass").is_some());
        assert!(parse_plain(b"other\0user\0pass").is_none());
        assert!(parse_plain(b"\0\0pass").is_none());
        assert!(parse_plain(b"\0user").is_none());
        assert!(parse_plain(b"\0user\0pa\0ss").is_none());
        assert!(matches!(decode("*"), SaslResponse::Cancel));
        assert!(matches!(decode("=="), SaslResponse::Invalid));
        assert!(matches!(decode("AHUAcA"), SaslResponse::Data(d) if d.as_slice() == b"\0u\0p"));
        assert!(matches!(decode("="), SaslResponse::Data(d) if d.is_empty()));
    }
}
