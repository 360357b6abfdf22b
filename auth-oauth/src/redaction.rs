//! Making token endpoint text safe to show: the client secret masked in
//! every encoding it may come back in, HTML and control characters dropped,
//! length bounded.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailgate_core::smtp::Redactor;
use secrecy::{ExposeSecret, SecretString};

/// At most this many characters of an endpoint's text go into an error.
pub const EXCERPT_LEN: usize = 120;

/// A form of the client secret shorter than this is not masked inside
/// endpoint text (that would mangle it): text containing it is withheld.
pub(crate) const MIN_MASK_LEN: usize = 4;

/// What replaces endpoint text that contains a form of a client secret too
/// short to mask.
pub(crate) const WITHHELD: &str = "(text withheld: it contains the client secret)";

/// Masks one client's secret in the text of its token endpoint.
pub(crate) struct SecretMask {
    client_id: String,
    secret: SecretString,
    redactor: Redactor,
}

impl fmt::Debug for SecretMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretMask")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl SecretMask {
    /// The mask for `secret`, sent with `client_id`.
    pub(crate) fn new(client_id: &str, secret: &SecretString) -> Self {
        Self {
            client_id: client_id.to_owned(),
            secret: secret.clone(),
            redactor: secret_redactor(client_id, secret.expose_secret()),
        }
    }

    /// Endpoint text made safe for an error: every form of the secret
    /// masked by core's [`Redactor`] (as configured, collapsed, raw and
    /// form-encoded HTTP Basic credentials; each raw, base64 at any
    /// alignment and percent-encoded with `~` either way), control characters
    /// and runs of whitespace collapsed, truncated to `limit` characters.
    ///
    /// A form shorter than [`MIN_MASK_LEN`] is not masked (that would mangle
    /// the text): text containing it is withheld altogether.
    pub(crate) fn clean(&self, text: &str, limit: usize) -> String {
        let short: Vec<String> = self
            .secret_forms()
            .into_iter()
            .filter(|f| f.chars().count() < MIN_MASK_LEN)
            .collect();
        let holds_short = |t: &str| short.iter().any(|f| t.contains(f.as_str()));
        // Masked before collapsing (a secret with runs of spaces) and after.
        let masked = self.redactor.mask(text);
        let masked = self.redactor.mask(&collapse(&masked));
        if holds_short(&masked) {
            return WITHHELD.to_owned();
        }
        truncate(&masked, limit)
    }

    /// A body for an error: tags stripped, [`clean`](Self::clean)ed to
    /// [`EXCERPT_LEN`], quoted.
    pub(crate) fn excerpt(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let text = if text.contains('<') {
            strip_tags(&text)
        } else {
            text.into_owned()
        };
        let cleaned = self.clean(&text, EXCERPT_LEN);
        if cleaned.is_empty() {
            "(no text)".to_owned()
        } else {
            format!("\"{cleaned}\"")
        }
    }

    /// The forms in which the client secret may come back in an endpoint's
    /// text: as configured, with whitespace collapsed, form-urlencoded (as
    /// sent with `client_secret_post`), base64 on its own, and the base64
    /// HTTP Basic credentials (`id:secret`, form-urlencoded as sent with
    /// `client_secret_basic`, and raw), with and without padding. Longest first.
    fn secret_forms(&self) -> Vec<String> {
        let secret = self.secret.expose_secret();
        if secret.is_empty() {
            return Vec::new();
        }
        let id = &self.client_id;
        let mut forms = vec![
            secret.to_owned(),
            collapse(secret),
            form_encode(secret),
            form_encode(secret).replace('+', "%20"),
        ];
        for raw in [
            secret.to_owned(),
            format!("{}:{}", form_encode(id), form_encode(secret)),
            format!("{id}:{secret}"),
        ] {
            let encoded = STANDARD.encode(raw);
            forms.push(encoded.trim_end_matches('=').to_owned());
            forms.push(encoded);
        }
        forms.retain(|f| !f.is_empty());
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        forms
    }
}

/// The redactor for one client's secret and its HTTP Basic credentials.
fn secret_redactor(client_id: &str, secret: &str) -> Redactor {
    let mut redactor = Redactor::new();
    if !secret.is_empty() {
        redactor.protect(secret);
        redactor.protect(&collapse(secret));
        redactor.protect(&format!(
            "{}:{}",
            form_encode(client_id),
            form_encode(secret)
        ));
        redactor.protect(&format!("{client_id}:{secret}"));
    }
    redactor
}

/// application/x-www-form-urlencoded, as RFC 6749 §2.3.1 asks for HTTP Basic.
/// Here because the mask must know exactly what the client sends.
pub(crate) fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Whether a body is an HTML page (a login or proxy page, not the API).
pub(crate) fn looks_like_html(content_type: &str, body: &[u8]) -> bool {
    let start = String::from_utf8_lossy(&body[..body.len().min(64)])
        .trim_start()
        .to_ascii_lowercase();
    content_type.to_ascii_lowercase().contains("html")
        || start.starts_with("<!doctype html")
        || start.starts_with("<html")
}

/// The media type of a `Content-Type`, cleaned, for a message.
pub(crate) fn describe_content_type(content_type: &str) -> String {
    let ct = content_type.split(';').next().unwrap_or_default().trim();
    if ct.is_empty() {
        "a body without content type".to_owned()
    } else {
        format!("`{}`", truncate(&collapse(ct), 60))
    }
}

/// Drops `<script>`/`<style>` blocks, comments and tags; decodes a few entities.
pub(crate) fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        let rest = &lower[i..];
        if rest.starts_with('<') {
            let skip_to = |end: &str| rest.find(end).map(|p| i + p + end.len());
            let next = if rest.starts_with("<script") {
                skip_to("</script>")
            } else if rest.starts_with("<style") {
                skip_to("</style>")
            } else if rest.starts_with("<!--") {
                skip_to("-->")
            } else {
                skip_to(">")
            };
            out.push(' ');
            match next {
                Some(n) => i = n,
                None => break,
            }
        } else {
            let end = rest.find('<').map_or(html.len(), |p| i + p);
            out.push_str(&html[i..end]);
            i = end;
        }
    }
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Control characters dropped, whitespace runs collapsed to one space.
pub(crate) fn collapse(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// At most `limit` characters (cut on a character boundary), `…` when cut.
pub(crate) fn truncate(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(secret: &str) -> SecretMask {
        SecretMask::new("my client", &SecretString::from(secret.to_owned()))
    }

    #[test]
    fn html_is_stripped() {
        let html = "<!DOCTYPE html><html><head><title>Sign in</title><style>p{x:1}</style>\
                    <script>var s='x';</script></head><body><!-- c --><p>Bad&nbsp;gateway &amp; more</p></body></html>";
        assert_eq!(collapse(&strip_tags(html)), "Sign in Bad gateway & more");
    }

    #[test]
    fn truncation_respects_chars() {
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c+/é"), "a+b%3Ac%2B%2F%C3%A9");
    }

    #[test]
    fn every_form_of_the_secret_is_masked() {
        let secret = "s3cr3t~Value+with/odd=chars&é  two";
        let m = mask(secret);
        let basic = STANDARD.encode(format!("my+client:{}", form_encode(secret)));
        let basic_raw = STANDARD.encode(format!("my client:{secret}"));
        for echoed in [
            secret.to_owned(),
            collapse(secret),
            form_encode(secret),
            form_encode(secret).replace('+', "%20"),
            // RFC 3986 style: `~` left literal, spaces as %20.
            form_encode(secret).replace('+', "%20").replace("%7E", "~"),
            form_encode(secret).replace("%7E", "~"),
            STANDARD.encode(secret),
            basic.clone(),
            basic.trim_end_matches('=').to_owned(),
            format!("Basic {basic_raw}"),
        ] {
            let text = format!("bad credentials [{echoed}] trace 1b2c");
            let cleaned = m.clean(&text, 400);
            assert!(cleaned.contains("<redacted>"), "{echoed}: {cleaned}");
            assert!(cleaned.starts_with("bad credentials ["), "{cleaned}");
            assert!(cleaned.ends_with("] trace 1b2c"), "{cleaned}");
            for form in m.secret_forms() {
                assert!(!cleaned.contains(&form), "{form} in {cleaned}");
            }
        }
    }

    #[test]
    fn a_short_secret_withholds_text_that_contains_it() {
        let m = mask("ab");
        assert_eq!(
            m.clean("invalid client secret", 100),
            "invalid client secret"
        );
        assert_eq!(m.clean("the secret sent was ab.", 100), WITHHELD);
        // Its longer forms (base64 Basic credentials) are masked as usual.
        let basic = STANDARD.encode("my+client:ab");
        assert_eq!(
            m.clean(&format!("header {basic} rejected"), 100),
            "header <redacted> rejected"
        );
        // An empty secret masks nothing.
        let m = mask("");
        assert_eq!(m.clean("nothing  to\r\nmask", 100), "nothing to mask");
    }
}
