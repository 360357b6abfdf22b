//! The one place where text from outside becomes text for people: server
//! replies, challenges and endpoint bodies go through [`Redactor::clean`]
//! before they reach an error, a log line or stdout.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

/// What masked text reads.
pub const REDACTED: &str = "<redacted>";

/// Forms shorter than this are not masked: they would mangle ordinary words.
pub const MIN_FORM_LEN: usize = 4;

/// At most this many characters of cleaned text are shown by [`Redactor::clean`].
pub const MAX_SHOWN: usize = 1000;

/// At most this many secrets are remembered (tokens are replaced hourly; a
/// long-running process keeps the newest).
const MAX_SECRETS: usize = 32;

/// Masks every form of the secrets it was given, and escapes control and
/// format characters, in text that came from outside.
///
/// A secret is masked as given; in base64 (standard and URL-safe, padded and
/// not) at each of the three byte alignments, so that it is found inside a
/// larger base64 payload such as an AUTH PLAIN or XOAUTH2 initial response;
/// percent-encoded (form `+` and RFC 3986 `%20` spaces, `~` literal or
/// `%7E`, upper- and lower-case hex); and as Rust's debug escape.
#[derive(Default)]
pub struct Redactor {
    secrets: Vec<Zeroizing<String>>,
    /// Every form of every secret, longest first.
    forms: Vec<Zeroizing<String>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// An empty redactor: it only escapes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Masks `secret` (and its encodings) from now on.
    pub fn protect(&mut self, secret: &str) {
        if secret.is_empty() || self.secrets.iter().any(|s| s.as_str() == secret) {
            return;
        }
        if self.secrets.len() >= MAX_SECRETS {
            self.secrets.remove(0);
        }
        self.secrets.push(Zeroizing::new(secret.to_owned()));
        self.rebuild();
    }

    /// Whether any secret is held.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    fn rebuild(&mut self) {
        let mut forms: Vec<Zeroizing<String>> = Vec::new();
        for secret in &self.secrets {
            for form in forms_of(secret) {
                if form.len() >= MIN_FORM_LEN && !forms.iter().any(|f| **f == *form) {
                    forms.push(form);
                }
            }
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        self.forms = forms;
    }

    /// `text` with every secret form masked, control and format characters
    /// escaped, cut to [`MAX_SHOWN`] characters.
    pub fn clean(&self, text: &str) -> String {
        self.clean_to(text, MAX_SHOWN)
    }

    /// [`Redactor::clean`] with a bound of `max_chars`.
    pub fn clean_to(&self, text: &str, max_chars: usize) -> String {
        let masked = self.mask(text);
        escape_controls(&masked, max_chars)
    }

    /// [`Redactor::clean`] of bytes that may not be UTF-8.
    pub fn clean_bytes(&self, bytes: &[u8]) -> String {
        self.clean(&String::from_utf8_lossy(bytes))
    }

    /// `text` with every secret form masked, nothing else changed.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), REDACTED);
            }
        }
        out
    }
}

/// Escapes C0 and C1 controls, DEL and the invisible format characters that
/// can reorder or hide text (U+200B..U+200F, U+202A..U+202E, U+2060..U+2069,
/// U+FEFF, U+061C), and cuts the result to `max_chars` characters.
pub fn escape_controls(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars + 16));
    for (shown, (i, c)) in text.char_indices().enumerate() {
        if shown >= max_chars {
            let _ = write!(out, "... ({} more bytes)", text.len() - i);
            break;
        }
        match c {
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() || is_format(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The invisible format characters that can disguise text: zero-width,
/// bidi overrides and isolates, BOM, the Arabic letter mark.
pub(crate) fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
            | '\u{061c}'
    )
}

/// Every form of `secret` a server or endpoint might echo.
fn forms_of(secret: &str) -> Vec<Zeroizing<String>> {
    let mut forms = vec![Zeroizing::new(secret.to_owned())];
    let bytes = secret.as_bytes();
    for engine in [&STANDARD, &URL_SAFE] {
        forms.push(Zeroizing::new(engine.encode(bytes)));
    }
    // Inside a larger payload the secret starts at any offset mod 3: the
    // whole 3-byte groups from each of the three offsets encode the same
    // wherever the payload places them.
    for offset in 0..3 {
        let rest = bytes.get(offset..).unwrap_or_default();
        let whole = &rest[..rest.len() / 3 * 3];
        if !whole.is_empty() {
            forms.push(Zeroizing::new(STANDARD_NO_PAD.encode(whole)));
            forms.push(Zeroizing::new(URL_SAFE_NO_PAD.encode(whole)));
        }
    }
    for space_plus in [true, false] {
        for tilde_literal in [true, false] {
            for star_literal in [true, false] {
                for lower in [false, true] {
                    forms.push(percent_encode(
                        secret,
                        space_plus,
                        tilde_literal,
                        star_literal,
                        lower,
                    ));
                }
            }
        }
    }
    forms.push(Zeroizing::new(secret.escape_debug().to_string()));
    forms
}

fn percent_encode(
    secret: &str,
    space_plus: bool,
    tilde_literal: bool,
    star_literal: bool,
    lower: bool,
) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(secret.len() * 3));
    for &b in secret.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => out.push(b as char),
            b'~' if tilde_literal => out.push('~'),
            b'*' if star_literal => out.push('*'),
            b' ' if space_plus => out.push('+'),
            _ if lower => {
                let _ = write!(out, "%{b:02x}");
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// `(scheme, user info, rest)` of a URL whose user info may hold a
/// password, for hiding it. Pasted passwords are often not percent-encoded,
/// so a `/`, `?` or `#` in one must not end the user info early: when the
/// text before the last `@` holds a `:`, all of it counts as user info
/// (over-hiding a URL whose path has an `@` is the safe mistake).
pub fn url_userinfo(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = match authority.rfind('@') {
        Some(at) if authority[..at].contains(':') => at,
        _ => rest.rfind('@').filter(|at| rest[..*at].contains(':'))?,
    };
    Some((scheme, &rest[..at], &rest[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t~pass word*";

    fn redactor() -> Redactor {
        let mut r = Redactor::new();
        r.protect(SECRET);
        r
    }

    #[test]
    fn raw_and_escaped() {
        let r = redactor();
        assert_eq!(
            r.clean(&format!("535 bad {SECRET}!")),
            "535 bad <redacted>!"
        );
        assert!(!r.clean(&format!("{:?}", SECRET)).contains("s3cr3t"));
    }

    #[test]
    fn base64_inside_payloads_at_every_alignment() {
        let r = redactor();
        for prefix in [
            "",
            "\0",
            "\0u",
            "\0user@example.com\0",
            "user=a\x01auth=Bearer ",
        ] {
            let payload = format!("{prefix}{SECRET}\x01\x01");
            for encoded in [STANDARD.encode(&payload), URL_SAFE_NO_PAD.encode(&payload)] {
                let shown = r.clean(&format!("535 5.7.8 echo {encoded}"));
                assert!(shown.contains(REDACTED), "{prefix:?}: {shown}");
                // What is left of the payload cannot hold 3 secret bytes in a row.
                let left: String = shown.replace(REDACTED, " ");
                for word in left.split_whitespace() {
                    for decoded in [STANDARD.decode(word), URL_SAFE_NO_PAD.decode(word)]
                        .into_iter()
                        .flatten()
                    {
                        assert!(
                            !String::from_utf8_lossy(&decoded).contains("s3c"),
                            "{prefix:?}: {shown}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn percent_encoded_in_both_tilde_forms() {
        let r = redactor();
        for echoed in [
            "s3cr3t%7Epass+word%2A",
            "s3cr3t~pass%20word*",
            "s3cr3t%7epass%20word%2a",
            "s3cr3t~pass+word%2A",
        ] {
            assert_eq!(r.clean(echoed), REDACTED, "{echoed}");
        }
    }

    #[test]
    fn controls_and_bidi_are_escaped_and_length_is_bounded() {
        let r = Redactor::new();
        assert_eq!(
            r.clean("a\u{1b}[2J\u{7}b\r\n\u{202e}c\u{85}"),
            "a\\u{1b}[2J\\u{7}b\\r\\n\\u{202e}c\\u{85}"
        );
        let long = "x".repeat(5000);
        let shown = r.clean(&long);
        assert!(shown.starts_with(&"x".repeat(MAX_SHOWN)));
        assert!(shown.ends_with("(4000 more bytes)"), "{shown}");
    }

    #[test]
    fn short_forms_and_duplicates() {
        let mut r = Redactor::new();
        r.protect("ab");
        assert_eq!(r.clean("ab cd"), "ab cd");
        r.protect(SECRET);
        r.protect(SECRET);
        assert_eq!(r.secrets.len(), 2);
        for i in 0..40 {
            r.protect(&format!("token-number-{i}"));
        }
        assert_eq!(r.secrets.len(), MAX_SECRETS);
        assert_eq!(r.clean("token-number-39"), REDACTED);
        assert!(format!("{r:?}").contains("secrets"));
    }
}
